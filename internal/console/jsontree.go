package console

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
)

// node is one value of a JSON document, in its own order, for the folded view of a body.
type node struct {
	Key      string // the member's name, or "" in an array or at the top
	Kind     string // object, array, string, number, bool, null
	Text     string // a scalar's text
	Children []*node
	Open     bool // shown unfolded
}

// Bounds of the folded view: a body past them is shown as text (it is bounded by the intake).
const (
	maxTreeDepth = 32
	maxTreeNodes = 5000
)

var errTooBig = errors.New("too deep or too large to fold")

// jsonTree reads body as a tree, keeping members in their order. The first two levels are open.
func jsonTree(body []byte) (*node, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	count := 0
	root, err := readNode(dec, "", 0, &count)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data")
	}
	return root, nil
}

func readNode(dec *json.Decoder, key string, depth int, count *int) (*node, error) {
	*count++
	if depth > maxTreeDepth || *count > maxTreeNodes {
		return nil, errTooBig
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	n := &node{Key: key, Open: depth < 2}
	switch t := tok.(type) {
	case json.Delim:
		if t == '{' {
			n.Kind = "object"
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				name, _ := k.(string)
				child, err := readNode(dec, name, depth+1, count)
				if err != nil {
					return nil, err
				}
				n.Children = append(n.Children, child)
			}
		} else {
			n.Kind = "array"
			for dec.More() {
				child, err := readNode(dec, "", depth+1, count)
				if err != nil {
					return nil, err
				}
				n.Children = append(n.Children, child)
			}
		}
		if _, err := dec.Token(); err != nil { // the closing delimiter
			return nil, err
		}
	case string:
		n.Kind, n.Text = "string", t
	case json.Number:
		n.Kind, n.Text = "number", t.String()
	case bool:
		n.Kind, n.Text = "bool", map[bool]string{true: "true", false: "false"}[t]
	case nil:
		n.Kind, n.Text = "null", "null"
	}
	return n, nil
}

// prettyJSON is body indented, or as it is when it is not JSON.
func prettyJSON(body []byte) string {
	var b bytes.Buffer
	if json.Indent(&b, body, "", "  ") == nil {
		return b.String()
	}
	return strings.ToValidUTF8(string(body), "\uFFFD")
}
