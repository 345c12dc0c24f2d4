package outbound

// NonRetriable marks a refused redirect for azcore's retry policy (its errorinfo.NonRetriable),
// which the token requests of every azidentity credential go through: the endpoint answers the
// same on every try, so the credential fails at once instead of trying again for seconds.
func (*RedirectError) NonRetriable() {}
