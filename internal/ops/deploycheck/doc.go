// Package deploycheck holds only tests: they read the deployment files (infra/, host.json, the
// function.json files, local.settings.json, README.md, docs/settings.md) and the handler's own
// setting names, and fail, naming the file, when a queue name, a setting name or a route differs
// between them.
package deploycheck
