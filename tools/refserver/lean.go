package main

import (
	"sync"
	"time"

	"github.com/dvrelay/dvrelay/internal/event"
)

// R3 is the floor of a durable, validating intake on this machine: the intake's own parse (one
// pass over the bytes for a Create or an Update, the full parser for anything else), its checks
// and its canonical bytes, appended with the group commit and fsynced before the 202; no HTTP
// pipeline beyond net/http's, no queue, no worker. It shares dvrelay's parser on purpose: what
// dvrelay ÷ R3 shows is what everything around the parse costs (admission, the queue, the
// worker), and the parse's own cost is measured apart, against the full parser, by the
// internal/event benchmarks. A plainer parse (encoding/json into structs of only the members the
// intake reads) spent twice the CPU per event of the whole of R3, so it was a yardstick dvrelay
// had already passed.
type lean struct {
	parser *event.Parser
	bufs   sync.Pool // *[]byte, for the parsed values
}

func newLean() (*lean, error) {
	p, err := event.NewParser()
	if err != nil {
		return nil, err
	}
	return &lean{parser: p}, nil
}

// canonical checks a posted body and returns its canonical event.
func (l *lean) canonical(body []byte, now time.Time) ([]byte, error) {
	buf, _ := l.bufs.Get().(*[]byte)
	if buf == nil {
		buf = new([]byte)
	}
	defer l.bufs.Put(buf)
	ev, err := l.parser.ParseBuffered(body, event.Hints{ReceivedAt: now}, buf)
	if err != nil {
		return nil, err
	}
	return event.AppendCanonical(make([]byte, 0, len(*buf)+1024), &ev)
}
