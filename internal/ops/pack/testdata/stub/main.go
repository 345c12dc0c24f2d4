// Command stub stands in for the handler in the packaging tests: Build compiles it with the
// same settings as the real handler, in seconds instead of minutes.
package main

func main() {}
