package config

import (
	"fmt"

	"github.com/dvrelay/dvrelay/functions/webhook"
)

// intakeBytes reads DVRELAY_MAX_BYTES_IN_FLIGHT, the bound on the bytes of the bodies the intake
// holds at once. Its default follows the body limit and the in-flight bound
// (webhook.DefaultMaxBytesInFlight), so raising either raises it in step.
func (r *reader) intakeBytes(c *Config) {
	const name = "DVRELAY_MAX_BYTES_IN_FLIGHT"
	c.MaxBytesInFlight = r.positiveInt64(name, webhook.DefaultMaxBytesInFlight(c.MaxBodyBytes, c.MaxInFlight))
	if c.MaxBytesInFlight < c.MaxBodyBytes {
		r.fail(name, fmt.Sprintf("must be at least DVRELAY_MAX_BODY_BYTES (%d): a body at the limit could never be taken", c.MaxBodyBytes))
	}
}
