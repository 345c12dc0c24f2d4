package event

import (
	"bytes"
	"strings"
)

// A .NET serializer that meets a primitive where its contract says object may write it as a
// typed wrapper: {"__type":"Guid:#System","__value":"3570e963-…"}, {"__type":"DateTime:#System",
// "__value":"/Date(1731053106000)/"}. Such a value means what its __value means, so Parse
// unwraps it, wherever it is, before anything checks the body: the schemas and the checks see
// the wire form Dataverse itself writes.

// systemPrimitives are the System types whose wrappers are unwrapped: those a context carries
// as plain JSON on the wire.
var systemPrimitives = []string{
	"Guid", "DateTime", "DateTimeOffset", "String", "Boolean",
	"Byte", "SByte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "Single", "Double", "Decimal",
}

// wrapperNamespace is in every wrapper's __type; a body without it has nothing to unwrap, which
// spares every ordinary payload the walk. '#' is rare in a body, so the search is a fast byte
// scan (a search for "__value" stops at every quote).
var wrapperNamespace = []byte(`:#System`)

// unwrapSystemValues replaces, in place, every typed wrapper of a System primitive in the
// decoded body with its __value. A wrapper is an object of exactly the two members __type and
// __value; any other object with a __type is a typed value the checks read as such.
func unwrapSystemValues(body []byte, top map[string]any) {
	if !bytes.Contains(body, wrapperNamespace) {
		return
	}
	for k, v := range top {
		top[k] = unwrapped(v)
	}
}

func unwrapped(v any) any {
	switch v := v.(type) {
	case map[string]any:
		if inner, ok := systemValue(v); ok {
			return unwrapped(inner)
		}
		for k, item := range v {
			v[k] = unwrapped(item)
		}
	case []any:
		for i, item := range v {
			v[i] = unwrapped(item)
		}
	}
	return v
}

// systemValue returns the __value of a typed wrapper of a System primitive.
func systemValue(o map[string]any) (any, bool) {
	if len(o) != 2 {
		return nil, false
	}
	name, ok := o["__type"].(string)
	if !ok {
		return nil, false
	}
	value, ok := o["__value"]
	if !ok {
		return nil, false
	}
	typeName, namespace, found := strings.Cut(name, ":")
	if !found || namespace != "#System" {
		return nil, false
	}
	for _, p := range systemPrimitives {
		if typeName == p {
			return value, true
		}
	}
	return nil, false
}
