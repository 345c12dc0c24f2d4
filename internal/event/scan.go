package event

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// Limits the pre-scan puts on a body before any of it is decoded. They bound what the decoder,
// the schema validator and the normalizer can be made to do: without them a 1e999999 literal
// costs the validator an exact big.Rat of a million digits, and a value nested
// ten thousand arrays deep is walked level by level by every schema rule that applies to it.
// Real payloads sit far inside them: the captured Dataverse fixtures nest at most 13 levels,
// Dataverse writes decimals of at most 38 digits, an Attributes list holds at most a table's
// columns (hundreds; SQL Server allows 1,024 to a table), and Dataverse trims a webhook body to
// 256 KB.
const (
	maxDepth        = 64  // objects and arrays open at once, the body itself being level 1
	maxNumberLength = 64  // characters of one number literal
	maxExponent     = 308 // |exponent| of a number literal, as in float64's range
	maxElements     = 10000
	// maxValues bounds the values of the whole body (each member's value, each element, the body
	// itself): what decoding it may build. A real payload spends some 40 bytes a value, so a
	// 256 KB one holds fewer than 10,000.
	maxValues = 100000
	// maxMembers is twice maxElements because a canonical event's Attributes object unites a
	// post image and a Target of up to maxElements columns each.
	maxMembers = 2 * maxElements
)

// scanResult is what the pre-scan learned about a body.
type scanResult struct {
	// wellFormed is true when the body is exactly one JSON value, with only whitespace around it.
	wellFormed bool
	// object is true when that value is an object.
	object bool
	// plugin is true when the object has both an EventName and a RecordId member, the mark of the
	// compact plugin event (see Parse).
	plugin bool
	// problems are the values that break a limit, addressed by pointer; meaningful only when
	// wellFormed and object.
	problems problemList
}

// frame is one open object or array at a level the pointers can still name.
type frame struct {
	object bool
	count  int // members or elements met so far
	// keyStart and keyEnd delimit the raw text (between the quotes) of the current member's key.
	keyStart, keyEnd int
	// deepReported is set once a child container past maxDepth has been reported, so one deep
	// nest gives one problem.
	deepReported bool
}

// scanner checks JSON syntax (as encoding/json does: RFC 8259, invalid UTF-8 let through) and
// the limits in one pass over the bytes, building nothing. Its state is a fixed array of frames
// for the first maxDepth levels and a bit per level beyond, so its memory is small and its time
// linear in the body whatever the body holds.
type scanner struct {
	body   []byte
	pos    int
	depth  int
	values int
	frames [maxDepth]frame
	// deeper records, for levels past maxDepth, whether each is an object (bit set) or an array.
	deeper []uint64
	// topEventName and topRecordID are set when the body's object has those members.
	topEventName, topRecordID bool
	result                    scanResult
}

// prescan scans body once. See scanner.
func prescan(body []byte) scanResult {
	s := scanner{body: body}
	s.result.wellFormed = s.run()
	return s.result
}

func (s *scanner) run() bool {
	s.skipSpace()
	s.result.object = s.pos < len(s.body) && s.body[s.pos] == '{'
	for {
		opened, ok := s.value()
		if !ok {
			return false
		}
		if opened {
			continue // scan the first member or element of the container just opened
		}
		// After a value: close containers, or move on to the next member or element.
		for {
			s.skipSpace()
			if s.depth == 0 {
				return s.pos == len(s.body)
			}
			if s.pos >= len(s.body) {
				return false
			}
			c := s.body[s.pos]
			object := s.inObject()
			if (object && c == '}') || (!object && c == ']') {
				s.pos++
				s.pop()
				continue
			}
			if c != ',' {
				return false
			}
			s.pos++
			if object {
				if !s.member() {
					return false
				}
			} else {
				s.element()
			}
			break
		}
	}
}

// value scans one value. An object or array is only opened, up to its first member's or
// element's value (opened is true), and run carries on inside: nesting goes through run's loop,
// never through the Go stack.
func (s *scanner) value() (opened, ok bool) {
	s.skipSpace()
	if s.pos >= len(s.body) {
		return false, false
	}
	if s.values++; s.values == maxValues+1 {
		s.report(0, "has more than %d values", maxValues)
	}
	switch c := s.body[s.pos]; {
	case c == '{':
		s.pos++
		s.push(true)
		s.skipSpace()
		if s.pos < len(s.body) && s.body[s.pos] == '}' {
			s.pos++
			s.pop()
			return false, true
		}
		return true, s.member()
	case c == '[':
		s.pos++
		s.push(false)
		s.skipSpace()
		if s.pos < len(s.body) && s.body[s.pos] == ']' {
			s.pos++
			s.pop()
			return false, true
		}
		s.element()
		return true, true
	case c == '"':
		_, ok := s.str()
		return false, ok
	case c == '-' || (c >= '0' && c <= '9'):
		return false, s.number()
	case c == 't':
		return false, s.literal("true")
	case c == 'f':
		return false, s.literal("false")
	case c == 'n':
		return false, s.literal("null")
	default:
		return false, false
	}
}

func (s *scanner) push(object bool) {
	s.depth++
	if s.depth <= maxDepth {
		s.frames[s.depth-1] = frame{object: object}
		return
	}
	level := s.depth - maxDepth - 1
	if level/64 >= len(s.deeper) {
		s.deeper = append(s.deeper, 0)
	}
	if object {
		s.deeper[level/64] |= 1 << (level % 64)
	} else {
		s.deeper[level/64] &^= 1 << (level % 64)
	}
	if s.depth == maxDepth+1 {
		parent := &s.frames[maxDepth-1]
		if !parent.deepReported {
			parent.deepReported = true
			s.report(s.deepFrames(), "is nested deeper than %d levels", maxDepth)
		}
	}
}

func (s *scanner) pop() { s.depth-- }

func (s *scanner) inObject() bool {
	if s.depth <= maxDepth {
		return s.frames[s.depth-1].object
	}
	level := s.depth - maxDepth - 1
	return s.deeper[level/64]&(1<<(level%64)) != 0
}

// member scans a key and its colon, up to the member's value.
func (s *scanner) member() bool {
	s.skipSpace()
	if s.pos >= len(s.body) || s.body[s.pos] != '"' {
		return false
	}
	start := s.pos + 1
	raw, ok := s.str()
	if !ok {
		return false
	}
	s.skipSpace()
	if s.pos >= len(s.body) || s.body[s.pos] != ':' {
		return false
	}
	s.pos++
	if s.depth > maxDepth {
		return true
	}
	f := &s.frames[s.depth-1]
	f.count++
	f.keyStart, f.keyEnd = start, start+len(raw)
	if f.count == maxMembers+1 {
		s.report(s.depth-1, "has more than %d members", maxMembers)
	}
	if s.depth == 1 {
		key := raw
		if bytes.IndexByte(raw, '\\') >= 0 {
			key = []byte(unquote(string(raw)))
		}
		switch string(key) {
		case "EventName":
			s.topEventName = true
		case "RecordId":
			s.topRecordID = true
		}
		s.result.plugin = s.topEventName && s.topRecordID
	}
	return true
}

func (s *scanner) element() {
	if s.depth > maxDepth {
		return
	}
	f := &s.frames[s.depth-1]
	f.count++
	if f.count == maxElements+1 {
		s.report(s.depth-1, "has more than %d elements", maxElements)
	}
}

// str scans a string starting at its opening quote and returns its raw text (escapes intact).
func (s *scanner) str() ([]byte, bool) {
	body, pos := s.body, s.pos+1 // past the opening quote; locals keep the loop in registers
	start := pos
	for pos < len(body) {
		c := body[pos]
		if c >= 0x20 && c != '"' && c != '\\' {
			pos++
			continue
		}
		switch {
		case c == '"':
			s.pos = pos + 1
			return body[start:pos], true
		case c == '\\' && pos+1 < len(body):
			switch body[pos+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				pos += 2
			case 'u':
				if pos+6 > len(body) || !isHex4(body[pos+2:pos+6]) {
					return nil, false
				}
				pos += 6
			default:
				return nil, false
			}
		default: // a control character, or a backslash ending the body
			return nil, false
		}
	}
	return nil, false
}

func isHex4(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// number scans a number literal (RFC 8259 grammar) and checks its length and exponent.
func (s *scanner) number() bool {
	start := s.pos
	if s.body[s.pos] == '-' {
		s.pos++
	}
	switch {
	case s.pos < len(s.body) && s.body[s.pos] == '0':
		s.pos++
	case s.pos < len(s.body) && '1' <= s.body[s.pos] && s.body[s.pos] <= '9':
		s.digits()
	default:
		return false
	}
	if s.pos < len(s.body) && s.body[s.pos] == '.' {
		s.pos++
		if s.digits() == 0 {
			return false
		}
	}
	beyond := false
	if s.pos < len(s.body) && (s.body[s.pos] == 'e' || s.body[s.pos] == 'E') {
		s.pos++
		if s.pos < len(s.body) && (s.body[s.pos] == '+' || s.body[s.pos] == '-') {
			s.pos++
		}
		expStart := s.pos
		if s.digits() == 0 {
			return false
		}
		beyond = exponentBeyond(s.body[expStart:s.pos])
	}
	if s.depth > maxDepth {
		return true
	}
	switch {
	case s.pos-start > maxNumberLength:
		s.report(s.depth, "is a number longer than %d characters", maxNumberLength)
	case beyond:
		s.report(s.depth, "is a number with an exponent beyond ±%d", maxExponent)
	}
	return true
}

// exponentBeyond reports whether the decimal digits exceed maxExponent, leading zeros aside.
func exponentBeyond(digits []byte) bool {
	i := 0
	for i < len(digits)-1 && digits[i] == '0' {
		i++
	}
	digits = digits[i:]
	if len(digits) > 3 {
		return true
	}
	n, _ := strconv.Atoi(string(digits))
	return n > maxExponent
}

func (s *scanner) digits() int {
	body, pos := s.body, s.pos
	for pos < len(body) && '0' <= body[pos] && body[pos] <= '9' {
		pos++
	}
	n := pos - s.pos
	s.pos = pos
	return n
}

func (s *scanner) literal(word string) bool {
	if !bytes.HasPrefix(s.body[s.pos:], []byte(word)) {
		return false
	}
	s.pos += len(word)
	return true
}

func (s *scanner) skipSpace() {
	body, pos := s.body, s.pos
	for pos < len(body) && (body[pos] == ' ' || body[pos] == '\n' || body[pos] == '\r' || body[pos] == '\t') {
		pos++
	}
	s.pos = pos
}

// report records a problem at the value reached through the first n open frames, unless the
// body is not an object (Parse then says so instead). The pointer is built only for a problem
// that will be listed.
func (s *scanner) report(n int, detail string, args ...any) {
	if !s.result.object {
		return
	}
	if s.result.problems.full() {
		s.result.problems.stopped = true
		return
	}
	s.result.problems.add(FieldProblem{Pointer: s.pointer(n), Detail: fmt.Sprintf(detail, args...)})
}

// pointer names the value reached through the first n open frames.
func (s *scanner) pointer(n int) string {
	var b strings.Builder
	for _, f := range s.frames[:n] {
		b.WriteByte('/')
		if f.object {
			b.WriteString(escapePointerToken(unquote(string(s.body[f.keyStart:f.keyEnd]))))
		} else {
			b.WriteString(strconv.Itoa(f.count - 1))
		}
	}
	return b.String()
}

// deepFrames is how many open frames name the container that opens level maxDepth+1, counted
// to the member that holds it: trailing array indexes are dropped, so a nest of arrays is
// reported at the column whose value it is rather than sixty levels down.
func (s *scanner) deepFrames() int {
	n := maxDepth
	for n > 1 && !s.frames[n-1].object {
		n--
	}
	return n
}
