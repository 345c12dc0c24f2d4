package event

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// buildTree decodes a body the pre-scan has accepted (one well-formed JSON object within the
// limits) into the value encoding/json's Decoder with UseNumber gives: objects as
// map[string]any (a repeated name keeps its last value), arrays as []any, strings with escapes
// undone and invalid UTF-8 replaced by U+FFFD, numbers as json.Number, true, false and nil.
// FuzzBuildTree holds it to encoding/json on every body the pre-scan accepts.
//
// Why not encoding/json: decoding into interface values went through its reflection-driven
// decoder, which scans every byte twice (once to find the value's end, once to build it) and
// copies every string; it was a quarter of the CPU `handler serve` spends on an event. The
// pre-scan has already checked the syntax and bounded the depth, so this walks the bytes once,
// recursing at most maxDepth levels, and takes every string without an escape as a slice of
// one copy of the body.
func buildTree(body []byte) map[string]any {
	t := treeBuilder{src: string(body)}
	t.space()
	top, _ := t.value().(map[string]any)
	return top
}

// treeBuilder holds the position in the body's one string copy.
type treeBuilder struct {
	src string
	pos int
}

func (t *treeBuilder) value() any {
	switch c := t.src[t.pos]; c {
	case '{':
		t.pos++
		return t.object()
	case '[':
		t.pos++
		return t.array()
	case '"':
		return t.str()
	case 't':
		t.pos += len("true")
		return true
	case 'f':
		t.pos += len("false")
		return false
	case 'n':
		t.pos += len("null")
		return nil
	default:
		return t.number()
	}
}

func (t *treeBuilder) object() map[string]any {
	o := make(map[string]any)
	t.members(func(key string) { o[key] = t.value() })
	return o
}

// members reads an object's members, the '{' already read, through the closing '}'. For each it
// calls member with the builder at the start of the value; member must read or skip the value.
func (t *treeBuilder) members(member func(key string)) {
	t.space()
	if t.src[t.pos] == '}' {
		t.pos++
		return
	}
	for {
		t.space()
		key := t.str()
		t.space()
		t.pos++ // ':'
		t.space()
		member(key)
		t.space()
		c := t.src[t.pos]
		t.pos++
		if c == '}' {
			return
		}
	}
}

func (t *treeBuilder) array() []any {
	a := []any{}
	t.space()
	if t.src[t.pos] == ']' {
		t.pos++
		return a
	}
	for {
		t.space()
		a = append(a, t.value())
		t.space()
		c := t.src[t.pos]
		t.pos++
		if c == ']' {
			return a
		}
	}
}

// str reads a string from its opening quote. Without escapes and with valid UTF-8 (nearly every
// string Dataverse writes) it is a slice of the body's copy; otherwise it is unquoted.
func (t *treeBuilder) str() string {
	start := t.pos + 1
	pos := start
	escaped, ascii := false, true
	for {
		c := t.src[pos]
		if c == '"' {
			break
		}
		if c == '\\' {
			escaped = true
			pos += 2 // the escaped character; a \u's four digits are plain bytes to this loop
			continue
		}
		if c >= utf8.RuneSelf {
			ascii = false
		}
		pos++
	}
	t.pos = pos + 1
	raw := t.src[start:pos]
	if !escaped && (ascii || utf8.ValidString(raw)) {
		return raw
	}
	return unquote(raw)
}

func (t *treeBuilder) number() json.Number {
	start := t.pos
	for t.pos < len(t.src) {
		switch c := t.src[t.pos]; {
		case '0' <= c && c <= '9', c == '-', c == '+', c == '.', c == 'e', c == 'E':
			t.pos++
			continue
		}
		break
	}
	return json.Number(t.src[start:t.pos])
}

func (t *treeBuilder) space() {
	for t.pos < len(t.src) {
		switch t.src[t.pos] {
		case ' ', '\n', '\r', '\t':
			t.pos++
			continue
		}
		return
	}
}

// unquote returns the text of a well-formed string's raw contents (between the quotes) as
// encoding/json decodes it; the tree builder and the pre-scan's pointers both read strings
// through it. Text without escapes is returned as it is; the escapes Dataverse writes
// ("\/Date(…)\/") are undone here; a \u escape or invalid UTF-8 is left to encoding/json itself,
// whose handling of surrogate pairs and bad bytes is the rule every other reader of the body
// follows.
func unquote(raw string) string {
	if !strings.Contains(raw, `\u`) && utf8.ValidString(raw) {
		if !strings.Contains(raw, `\`) {
			return raw
		}
		b := make([]byte, 0, len(raw))
		for i := 0; i < len(raw); i++ {
			c := raw[i]
			if c == '\\' {
				i++
				c = unescaped(raw[i])
			}
			b = append(b, c)
		}
		return string(b)
	}
	var s string
	quoted := make([]byte, 0, len(raw)+2)
	quoted = append(append(append(quoted, '"'), raw...), '"')
	if err := json.Unmarshal(quoted, &s); err != nil {
		return raw // unreachable for a body the pre-scan accepted
	}
	return s
}

// unescaped is the character a one-letter escape stands for; the pre-scan admitted only
// " \ / b f n r t after a backslash besides u.
func unescaped(c byte) byte {
	switch c {
	case 'b':
		return '\b'
	case 'f':
		return '\f'
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	default: // '"', '\\', '/'
		return c
	}
}
