package webhook

import (
	"math/bits"
	"sync"
)

// bufferPool lends byte buffers by size class (powers of two from readChunk up), so the bodies
// read and the values parsed from them reuse the memory of the requests before instead of
// leaving it to the collector. A 256 KB body used to cost its buffer several times over (each
// growth of the read buffer, the tree, the encoded event) and the heap grew to match the garbage
// between two collections; reused, what a request holds is what it uses.
type bufferPool struct {
	classes [poolClasses]sync.Pool
}

const (
	minClassBits = 12 // readChunk
	poolClasses  = 12 // 4 KiB to 8 MiB; a larger buffer is allocated and dropped
)

// classOf is the class whose buffers hold n bytes, or -1 when none does.
func classOf(n int) int {
	if n <= 1<<minClassBits {
		return 0
	}
	c := bits.Len(uint(n-1)) - minClassBits
	if c >= poolClasses {
		return -1
	}
	return c
}

// get returns a buffer of length 0 and capacity at least n.
func (p *bufferPool) get(n int) []byte {
	c := classOf(n)
	if c < 0 {
		return make([]byte, 0, n)
	}
	if b, ok := p.classes[c].Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, 1<<(c+minClassBits))
}

// put takes a buffer back once nothing refers to it any more. Only a buffer whose capacity is
// exactly a class is kept, so get's promise holds.
func (p *bufferPool) put(b []byte) {
	n := cap(b)
	if n == 0 || n&(n-1) != 0 {
		return
	}
	if c := classOf(n); c >= 0 {
		b = b[:0]
		p.classes[c].Put(&b)
	}
}
