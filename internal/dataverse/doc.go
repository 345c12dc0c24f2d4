// Package dataverse is a small client for the Dataverse Web API: just what the worker needs to
// write columns back onto a record. It authenticates with an azcore.TokenCredential, resolves
// an entity's set name from metadata once, and never creates a record by accident
// (every PATCH carries If-Match: *).
package dataverse
