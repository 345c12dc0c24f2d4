package webhook

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// readChunk is the least a body's buffer grows by: small, so a body still arriving holds little
// more than what has arrived.
const readChunk = 4 << 10

// byteBound counts the bytes of request bodies the intake holds, read or being read, against
// MaxBytesInFlight.
type byteBound struct {
	limit int64
	used  atomic.Int64
}

// take reserves n more bytes for a request that holds own, or reports false when that would pass
// the limit. A request that holds every byte held may always take more: one read with a limit
// past the bound (the Functions envelope, whose escapes can make it six times its body) would
// otherwise never succeed.
func (b *byteBound) take(n, own int64) bool {
	for {
		used := b.used.Load()
		if used+n > b.limit && used != own {
			return false
		}
		if b.used.CompareAndSwap(used, used+n) {
			return true
		}
	}
}

func (b *byteBound) give(n int64) { b.used.Add(-n) }

// free is what could be taken now.
func (b *byteBound) free() int64 { return b.limit - b.used.Load() }

// Body is a request body read under the intake's bound on bytes in flight. Its bytes count until
// Release, which the transport calls once the request is answered (safe to call more than once).
type Body struct {
	Bytes []byte
	// TooLarge is set when the body went past the limit it was read with; Bytes is then nil.
	TooLarge bool

	bound *byteBound
	held  int64
	once  sync.Once
	// pool and buf: the pooled buffer Bytes is a slice of, returned by Release.
	pool *bufferPool
	buf  []byte
}

// Release gives the body's bytes back to the bound, and its buffer to the intake's pool: the
// caller must not use Bytes after it.
func (b *Body) Release() {
	b.once.Do(func() {
		b.bound.give(b.held)
		if b.pool != nil && b.buf != nil {
			b.pool.put(b.buf)
		}
		b.Bytes, b.buf = nil, nil
	})
}

// ReadBody reads a body of at most limit bytes (MaxBodyBytes for a raw request), declared
// long (-1 when unknown), under the intake's bound on bytes in flight. The bytes count as they
// arrive, by the buffer that holds them, so a slow sender holds only what it has sent. When the
// bound is reached before the body is whole, ReadBody stops and returns an *Error of kind
// KindOverloaded: the transport answers it 503 with Retry-After at once (Handle does, given it as
// Request.ReadErr). Any other error is the body's own (the client went away or stalled). The
// caller releases the Body however ReadBody ended.
//
// The buffer is the intake's to lend (see bufferPool): each growth takes a buffer of the next
// size class and gives the last one back, so neither the growth nor the body leaves garbage.
func (in *Intake) ReadBody(r io.Reader, declared, limit int64) (*Body, error) {
	body := &Body{bound: in.bytes, pool: in.buffers}
	if r == nil || declared == 0 {
		return body, nil
	}
	if declared > limit {
		body.TooLarge = true
		return body, nil
	}
	most := limit + 1 // one byte past the limit tells a body that goes on
	if declared > 0 {
		most = declared
	}
	var buf []byte
	for {
		if len(buf) == cap(buf) {
			grown := min(max(2*int64(cap(buf)), readChunk), most)
			if grown <= int64(cap(buf)) { // a declared length fully read
				break
			}
			if !in.bytes.take(grown-int64(cap(buf)), body.held) {
				return body, in.errBytesOverloaded()
			}
			body.held += grown - int64(cap(buf))
			// The capacity is limited to grown, so the reads count against the bound as before.
			pooled := in.buffers.get(int(grown))
			next := pooled[:len(buf):grown]
			copy(next, buf)
			if body.buf != nil {
				in.buffers.put(body.buf)
			}
			body.buf, buf = pooled, next
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return body, fmt.Errorf("read body: %w", err)
		}
	}
	if int64(len(buf)) > limit {
		body.TooLarge = true
		return body, nil
	}
	body.Bytes = buf
	return body, nil
}

func (in *Intake) errBytesOverloaded() error {
	return &Error{Kind: KindOverloaded, Detail: fmt.Sprintf(
		"the intake is holding its limit of %d bytes of requests; retry later", in.cfg.MaxBytesInFlight)}
}
