package event

import (
	"encoding/hex"
	"hash/crc32"
)

// PropCanonical is the application property the intake puts on every event it queues: the
// CRC-32C of the message body, in hex. A body that still matches it is the canonical event the
// intake itself wrote and checked, so the worker decodes it without checking it again
// (DecodeMarked). Anything else, a RemoteExecutionContext Dataverse posted straight to the queue,
// a message without the property, a body changed since (an edited resubmit), is checked in full.
//
// The mark is a checksum, not a signature: whoever may send to the queue could forge it, as they
// could send any canonical event. It says which bytes were checked, not who sent them.
const PropCanonical = "DvrelayCanonical"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CanonicalSum is the value of PropCanonical for body.
func CanonicalSum(body []byte) string {
	var sum [4]byte
	v := crc32.Checksum(body, castagnoli)
	sum[0], sum[1], sum[2], sum[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
	return hex.EncodeToString(sum[:])
}

// Marked reports whether props carry PropCanonical and it matches body.
func Marked(body []byte, props map[string]any) bool {
	sum, ok := props[PropCanonical].(string)
	return ok && sum == CanonicalSum(body)
}

// DecodeMarked decodes a canonical event the intake wrote (see PropCanonical): the pre-scan that
// keeps the decoder safe, then one decode, without the schema and the checks DecodeCanonical
// runs. A body that does not read as an event is handed to DecodeCanonical, which says why.
func (p *Parser) DecodeMarked(body []byte) (Event, error) {
	if err := prescanned(body, func(scanResult) string { return KindCanonicalEvent }); err != nil {
		return p.DecodeCanonical(body)
	}
	cb := decodeCanonicalBody(body)
	if len(cb.repeated) > 0 {
		return p.DecodeCanonical(body)
	}
	ev, err := cb.event()
	if err != nil {
		return p.DecodeCanonical(body)
	}
	return ev, nil
}
