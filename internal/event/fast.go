package event

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/dvrelay/dvrelay/internal/platform/jsonstring"
)

// The fast path reads the RemoteExecutionContext a webhook step posts for a Create or an Update
// in one pass over the bytes: it checks the syntax and the pre-scan's limits, makes the schema's
// and the checker's checks on the members it reads, normalizes the column values into a buffer
// as it meets them, and builds no tree. It takes on only the shapes it can vouch for: anything
// else (a plugin event, a trimmed context, a typed wrapper, a Delete, a value it does not know, a
// member in an unusual order, any problem at all) makes it decline, and Parse runs the full
// parser, which is the validator of record and names every failing field. FuzzFastPath holds the
// two to one verdict and, for what both accept, to the same canonical bytes.
//
// Why: building the tree, validating the envelope with gojsonschema, walking the tree for the
// checks and the normalizer, and encoding the result took some 110 µs of an event's CPU at 9 KB
// and 500 allocations, most of them garbage at once.

// fastReader is the state of one read. A method that finds something it does not take on sets
// declined and returns; every caller checks it.
type fastReader struct {
	b        []byte
	pos      int
	depth    int
	values   int
	declined bool
	// declinedAt is where it declined, for tests that ask why.
	declinedAt int
	// out holds the normalized values, end to end; the entries below slice it.
	out []byte
	// scratch holds a string's unescaped text while it is read.
	scratch []byte

	ctx          fastContext
	target       fastEntity
	haveTarget   bool
	postImages   []fastImage
	parameters   []fastEntry
	outputs      []fastEntry
	seenTopLevel uint32
}

// fastContext holds the envelope members dvrelay reads, as strings ("" when absent or null).
type fastContext struct {
	correlationID, initiatingUserID, userID, operationID, organizationID, requestID string
	primaryEntityID, primaryEntityName, messageName, operationCreatedOn             string
	owningExtensionID, owningExtensionName                                          string
	depth, stage                                                                    int
	mode                                                                            *int
	isInTransaction                                                                 *bool
	haveMessageName, haveOperationCreatedOn                                         bool
}

// fastEntry is one normalized key and value; str is the value as posted when it was a string,
// for the ChangedFields rules.
type fastEntry struct {
	key      string
	value    [2]int // start and end in out
	str      string
	isString bool
	// column is set for a column's value, which may be an array (a multi-select choice); a
	// parameter's array may be RelatedEntities, which the fast path leaves to the full parser.
	column bool
}

type fastEntity struct {
	id, logicalName string
	attributes      []fastEntry
	haveAttributes  bool
}

type fastImage struct {
	alias  string
	entity fastEntity
}

// fastParse reads body as a RemoteExecutionContext, or reports ok false when it declines. It
// reuses *buf for the normalized values; the returned event's raw values are slices of it.
func (p *Parser) fastParse(body []byte, h Hints, buf *[]byte) (Event, bool) {
	if h.SizeExceeded {
		return Event{}, false // trimmed
	}
	// A typed wrapper of a System primitive needs no test here: wherever the fast path reads a
	// value, a wrapper is an object where it takes none, or a typed value of a kind it declines.
	r := fastReader{b: body}
	if buf != nil {
		r.out = (*buf)[:0]
	}
	r.space()
	if !r.topObject() {
		return Event{}, false
	}
	r.space()
	if r.pos != len(r.b) {
		return Event{}, false
	}
	if buf != nil {
		*buf = r.out
	}
	return r.event(p, body, h)
}

func (r *fastReader) decline() bool {
	if !r.declined {
		r.declined, r.declinedAt = true, r.pos
	}
	return false
}

// Members of the envelope the fast path reads, as bits of seenTopLevel.
var fastTopLevel = []string{
	"BusinessUnitId", "CorrelationId", "Depth", "InitiatingUserId", "InputParameters", "IsInTransaction",
	"MessageName", "Mode", "OperationCreatedOn", "OperationId", "OrganizationId", "OutputParameters",
	"OwningExtension", "ParentContext", "PostEntityImages", "PreEntityImages", "PrimaryEntityId",
	"PrimaryEntityName", "RequestId", "Stage", "UserId", "EventName", "RecordId",
}

func (r *fastReader) topObject() bool {
	if !r.open('{') {
		return r.decline()
	}
	return r.members(func(key []byte) bool {
		if i := indexOf(fastTopLevel, key); i >= 0 {
			if r.seenTopLevel&(1<<i) != 0 {
				return r.decline() // a repeated member: which one counts is the full parser's to say
			}
			r.seenTopLevel |= 1 << i
		}
		c := &r.ctx
		switch string(key) {
		case "BusinessUnitId":
			var ignored string
			return r.nullableGUID(&ignored)
		case "CorrelationId":
			return r.nullableGUID(&c.correlationID)
		case "InitiatingUserId":
			return r.nullableGUID(&c.initiatingUserID)
		case "OperationId":
			return r.nullableGUID(&c.operationID)
		case "OrganizationId":
			return r.nullableGUID(&c.organizationID)
		case "PrimaryEntityId":
			return r.nullableGUID(&c.primaryEntityID)
		case "RequestId":
			return r.nullableGUID(&c.requestID)
		case "UserId":
			return r.nullableGUID(&c.userID)
		case "Depth":
			n, ok := r.smallInt()
			if !ok || n > 10000 {
				return r.decline()
			}
			c.depth = n
			return true
		case "Stage":
			n, ok := r.smallInt()
			if !ok || n != StagePreValidation && n != StagePreOperation && n != StagePostOperation {
				return r.decline()
			}
			c.stage = n
			return true
		case "Mode":
			n, ok := r.smallInt()
			if !ok || n != ModeSynchronous && n != ModeAsynchronous {
				return r.decline()
			}
			c.mode = &n
			return true
		case "IsInTransaction":
			b, ok := r.boolean()
			if !ok {
				return r.decline()
			}
			c.isInTransaction = &b
			return true
		case "MessageName":
			s, ok := r.plainString()
			if !ok || len(s) > 256 || !isMessageName(s) {
				return r.decline()
			}
			c.messageName, c.haveMessageName = s, true
			return true
		case "PrimaryEntityName":
			if r.null() {
				return true
			}
			s, ok := r.plainString()
			if !ok || !fastLogicalName(s) {
				return r.decline()
			}
			c.primaryEntityName = s
			return true
		case "OperationCreatedOn":
			s, ok := r.plainString()
			if !ok || !isOperationDate(s) {
				return r.decline()
			}
			c.operationCreatedOn, c.haveOperationCreatedOn = s, true
			return true
		case "OwningExtension":
			return r.owningExtension()
		case "ParentContext":
			if r.null() {
				return true
			}
			if r.peek() != '{' {
				return r.decline()
			}
			return r.skip()
		case "InputParameters":
			return r.list(r.inputParameter)
		case "OutputParameters":
			if r.null() {
				return true
			}
			return r.list(func() bool { return r.parameter(&r.outputs) })
		case "PostEntityImages", "PreEntityImages":
			if r.null() {
				return true
			}
			post := string(key) == "PostEntityImages"
			return r.list(func() bool { return r.image(post) })
		case "EventName", "RecordId":
			return r.decline() // perhaps a plugin event
		default:
			return r.skip()
		}
	})
}

// nullableGUID reads a GUID or null into dst ("" for null).
func (r *fastReader) nullableGUID(dst *string) bool {
	if r.null() {
		return true
	}
	s, ok := r.plainString()
	if !ok || !isGUID(s) {
		return r.decline()
	}
	*dst = s
	return true
}

func (r *fastReader) owningExtension() bool {
	if r.null() {
		return true
	}
	if !r.open('{') {
		return r.decline()
	}
	var seen [3]bool
	return r.members(func(key []byte) bool {
		switch string(key) {
		case "Id":
			if seen[0] {
				return r.decline()
			}
			seen[0] = true
			s, ok := r.plainString()
			if !ok || !isGUID(s) {
				return r.decline()
			}
			r.ctx.owningExtensionID = s
			return true
		case "LogicalName":
			if seen[1] {
				return r.decline()
			}
			seen[1] = true
			s, ok := r.plainString()
			if !ok || !fastLogicalName(s) {
				return r.decline()
			}
			return true
		case "Name":
			if seen[2] {
				return r.decline()
			}
			seen[2] = true
			if r.peek() != '"' {
				return r.skip() // not a string: no name, as the full parser reads it
			}
			s, ok := r.plainString()
			r.ctx.owningExtensionName = s
			return ok
		default:
			return r.skip()
		}
	})
}

// inputParameter reads {"key":…,"value":…} with the key first: the Target (an Entity) into
// target, any other parameter, if a plain value, into parameters.
func (r *fastReader) inputParameter() bool {
	return r.pair(func(key string) bool {
		if key == "EntityMoniker" && r.peek() == '{' {
			return r.decline() // its id may name the record (SetState): the full parser reads it
		}
		if key == "Target" {
			if r.haveTarget {
				return r.decline()
			}
			r.haveTarget = true
			return r.entity(&r.target, true)
		}
		return r.entry(fastEntry{key: key}, &r.parameters)
	})
}

// parameter reads an output parameter into into.
func (r *fastReader) parameter(into *[]fastEntry) bool {
	return r.pair(func(key string) bool { return r.entry(fastEntry{key: key}, into) })
}

// image reads {"key": alias, "value": Entity}; a post image is kept for the attributes.
func (r *fastReader) image(post bool) bool {
	var img fastImage
	if !r.pair(func(alias string) bool { img.alias = alias; return r.entity(&img.entity, false) }) {
		return false
	}
	if post {
		r.postImages = append(r.postImages, img)
	}
	return true
}

// entity reads an Entity: Attributes and LogicalName required, Id a GUID when present. A Target
// without Attributes is an EntityReference (a Delete): the fast path declines it.
func (r *fastReader) entity(e *fastEntity, target bool) bool {
	if !r.open('{') {
		return r.decline()
	}
	haveID, haveName := false, false
	ok := r.members(func(member []byte) bool {
		switch string(member) {
		case "Attributes":
			if e.haveAttributes {
				return r.decline()
			}
			e.haveAttributes = true
			if r.peek() == 'n' {
				return r.decline() // an array, not null
			}
			return r.list(func() bool { return r.attribute(e) })
		case "Id":
			if haveID {
				return r.decline()
			}
			haveID = true
			s, ok := r.plainString()
			if !ok || !isGUID(s) {
				return r.decline()
			}
			e.id = s
			return true
		case "LogicalName":
			if haveName {
				return r.decline()
			}
			haveName = true
			s, ok := r.plainString()
			if !ok || !fastLogicalName(s) {
				return r.decline()
			}
			e.logicalName = s
			return true
		default:
			return r.skip()
		}
	})
	return ok && e.haveAttributes && haveName || r.decline()
}

// attribute reads {"key": column, "value": value} with the key first.
func (r *fastReader) attribute(e *fastEntity) bool {
	return r.pair(func(column string) bool {
		if !fastLogicalName(column) {
			return r.decline()
		}
		return r.entry(fastEntry{key: column, column: true}, &e.attributes)
	})
}

// pair reads {"key": …, "value": …}, the shape of every Dataverse key-value pair, with the key
// first: readValue reads the value, given the key. Other members are skipped; a key that is not a
// plain string, a member seen twice, or a value before its key declines the body.
func (r *fastReader) pair(readValue func(key string) bool) bool {
	if !r.open('{') {
		return r.decline()
	}
	var key string
	haveKey, haveValue := false, false
	ok := r.members(func(member []byte) bool {
		switch string(member) {
		case "key":
			if haveKey || haveValue {
				return r.decline()
			}
			var ok bool
			key, ok = r.plainString()
			haveKey = ok
			return ok || r.decline()
		case "value":
			if !haveKey || haveValue {
				return r.decline()
			}
			haveValue = true
			return readValue(key)
		default:
			return r.skip()
		}
	})
	return ok && haveKey && haveValue || r.decline()
}

// entry reads a value into e, its plain form appended to out, and appends e to into.
func (r *fastReader) entry(e fastEntry, into *[]fastEntry) bool {
	start := len(r.out)
	if !r.columnValue(&e) {
		return false
	}
	e.value = [2]int{start, len(r.out)}
	*into = append(*into, e)
	return true
}

// columnValue reads a value and appends its plain form to out (see normalizer.value): a string
// (a /Date(…)/ one as RFC 3339 UTC), a number as written, true, false, null, the typed Money,
// OptionSetValue and EntityReference, and for a column an array of those. Anything else (a
// parameter's array, another typed value, an object without __type first) declines.
func (r *fastReader) columnValue(e *fastEntry) bool {
	switch r.peek() {
	case '"':
		b, ok := r.plainBytes()
		if !ok {
			return r.decline()
		}
		e.isString = true
		if e.key == "activityid" || e.key == "processid" {
			e.str = string(b) // the ChangedFields rules read these two values
		}
		if bytes.HasPrefix(b, []byte("/Date(")) {
			t, err := parseWCFDate(string(b))
			switch {
			case err == nil:
				r.out = jsonstring.Append(r.out, FormatTime(t))
				return true
			case !errors.Is(err, errNotWCFDate):
				return r.decline() // the full parser names the bad date
			}
		}
		r.out = jsonstring.Append(r.out, b)
		return true
	case '{':
		return r.typedValue()
	case '[':
		if !e.column {
			return r.decline()
		}
		// Each item as a column value; what an item is says nothing of the column's ChangedFields.
		r.out = append(r.out, '[')
		first := true
		ok := r.list(func() bool {
			if !first {
				r.out = append(r.out, ',')
			}
			first = false
			return r.columnValue(&fastEntry{column: true})
		})
		r.out = append(r.out, ']')
		return ok
	case 't', 'f':
		b, ok := r.boolean()
		if !ok {
			return r.decline()
		}
		r.out = append(r.out, boolText(b)...)
		return true
	case 'n':
		if !r.null() {
			return r.decline()
		}
		r.out = append(r.out, "null"...)
		return true
	default:
		num, ok := r.number()
		if !ok {
			return r.decline()
		}
		r.out = append(r.out, num...)
		return true
	}
}

func boolText(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// typedValue reads a typed column value whose __type comes first.
func (r *fastReader) typedValue() bool {
	if !r.open('{') {
		return r.decline()
	}
	r.space()
	key, ok := r.key()
	if !ok || string(key) != "__type" {
		return r.decline()
	}
	name, ok := r.plainBytes()
	if !ok {
		return r.decline()
	}
	kind, _, found := bytes.Cut(name, []byte(":"))
	if !found {
		return r.decline()
	}
	switch string(kind) {
	case typeMoney, typeOptionSetValue:
		var value []byte
		haveValue := false
		ok := r.moreMembers(func(member []byte) bool {
			if string(member) == "__type" {
				return r.decline() // a second __type: the full parser's decoder keeps the last
			}
			if string(member) != "Value" {
				return r.skip()
			}
			if haveValue {
				return r.decline()
			}
			haveValue = true
			var ok bool
			value, ok = r.number()
			return ok || r.decline()
		})
		if !ok || !haveValue || string(kind) == typeOptionSetValue && !isIntegerLiteral(value) {
			return r.decline()
		}
		r.out = append(r.out, value...)
		return true
	case typeEntityReference:
		var id, logical, name []byte
		var seen [3]bool
		hasName := false
		ok := r.moreMembers(func(member []byte) bool {
			switch string(member) {
			case "Id", "LogicalName":
				i := 0
				if string(member) == "LogicalName" {
					i = 1
				}
				if seen[i] {
					return r.decline()
				}
				seen[i] = true
				b, ok := r.plainBytes()
				if !ok || i == 0 && !isGUID(string(b)) || i == 1 && !fastLogicalName(string(b)) {
					return r.decline()
				}
				if i == 0 {
					id = b
				} else {
					logical = b
				}
				return true
			case "__type":
				return r.decline() // a second __type: the full parser's decoder keeps the last
			case "Name":
				if seen[2] {
					return r.decline()
				}
				seen[2] = true
				if r.null() {
					return true
				}
				var ok bool
				name, ok = r.plainBytes()
				hasName = ok
				return ok || r.decline()
			default:
				return r.skip()
			}
		})
		if !ok || !seen[0] || !seen[1] {
			return r.decline()
		}
		r.out = append(r.out, `{"id":"`...)
		for _, c := range id { // a GUID: hex digits and dashes
			if 'A' <= c && c <= 'F' {
				c += 'a' - 'A'
			}
			r.out = append(r.out, c)
		}
		r.out = append(r.out, `","logicalName":`...)
		r.out = jsonstring.Append(r.out, logical)
		r.out = append(r.out, `,"name":`...)
		if hasName {
			r.out = jsonstring.Append(r.out, name)
		} else {
			r.out = append(r.out, "null"...)
		}
		r.out = append(r.out, '}')
		return true
	default:
		return r.decline()
	}
}

// event assembles what was read, as parseRemote and recordData would.
func (r *fastReader) event(p *Parser, body []byte, h Hints) (Event, bool) {
	c := &r.ctx
	if !c.haveMessageName || !r.haveTarget || !r.target.haveAttributes {
		return Event{}, false
	}
	ev := Event{
		SchemaVersion:   SchemaVersion,
		CorrelationID:   strings.ToLower(firstID(c.correlationID)),
		EventName:       EventNameFor(c.primaryEntityName, c.messageName),
		Entity:          c.primaryEntityName,
		Message:         c.messageName,
		TriggeredBy:     strings.ToLower(firstID(c.initiatingUserID, c.userID)),
		OrganizationID:  strings.ToLower(firstID(c.organizationID)),
		Source:          SourceWebhook,
		Depth:           c.depth,
		Stage:           c.stage,
		Mode:            c.mode,
		IsInTransaction: c.isInTransaction,
		StepID:          strings.ToLower(c.owningExtensionID),
		StepName:        c.owningExtensionName,
	}
	ev.Timestamp = FormatTime(receivedAt(h))
	if c.haveOperationCreatedOn {
		t, err := parseOperationDate(c.operationCreatedOn)
		switch {
		case err == nil:
			ev.Timestamp = FormatTime(t)
		case !errors.Is(err, errNotReadable):
			return Event{}, false
		}
	}

	// The attributes: the chosen post image overlaid with the Target's, later duplicates winning.
	attrs := make(map[string]json.RawMessage, len(r.target.attributes))
	if i := slices.IndexFunc(r.postImages, func(img fastImage) bool { return img.alias == "PostImage" }); i >= 0 {
		r.putAll(attrs, r.postImages[i].entity.attributes)
	} else if len(r.postImages) > 0 {
		r.putAll(attrs, r.postImages[0].entity.attributes)
	}
	r.putAll(attrs, r.target.attributes)
	if len(attrs) > 0 {
		ev.Attributes = attrs
	}
	ev.ChangedFields = []string{}
	for _, a := range r.target.attributes {
		var value any
		if a.isString {
			value = a.str
		}
		if isChange(c.messageName, c.primaryEntityName, c.primaryEntityID, a.key, value) {
			ev.ChangedFields = append(ev.ChangedFields, a.key)
		}
	}
	slices.Sort(ev.ChangedFields)
	ev.ChangedFields = slices.Compact(ev.ChangedFields)
	if len(r.parameters) > 0 {
		ev.Parameters = make(map[string]json.RawMessage, len(r.parameters))
		r.putAll(ev.Parameters, r.parameters)
	}
	if len(r.outputs) > 0 {
		ev.OutputParameters = make(map[string]json.RawMessage, len(r.outputs))
		r.putAll(ev.OutputParameters, r.outputs)
	}
	if c.primaryEntityName == unboundEntity || c.primaryEntityName == "" {
		ev.Entity = r.target.logicalName
		ev.EventName = EventNameFor(ev.Entity, c.messageName)
	}
	ev.RecordID = strings.ToLower(firstID(r.target.id, c.primaryEntityID))

	operation := firstID(c.operationID, c.requestID, c.correlationID)
	if operation == "" {
		sum := sha256.Sum256(body)
		operation = "body " + hex.EncodeToString(sum[:])
	}
	ev.EventID = p.eventID("webhook", c.organizationID, operation, c.owningExtensionID, c.messageName, c.primaryEntityID)
	ev.CorrelationID = firstNonEmpty(ev.CorrelationID, ev.EventID)
	return ev, true
}

func (r *fastReader) putAll(into map[string]json.RawMessage, entries []fastEntry) {
	for _, e := range entries {
		into[e.key] = json.RawMessage(r.out[e.value[0]:e.value[1]:e.value[1]])
	}
}

// The syntax: a strict reader of RFC 8259 within the pre-scan's limits. It declines what the
// pre-scan would refuse and also some of what it would take (an exponent, invalid UTF-8 in a
// string it reads), which the full parser then reads.

func (r *fastReader) space() {
	for r.pos < len(r.b) {
		switch r.b[r.pos] {
		case ' ', '\t', '\r', '\n':
			r.pos++
		default:
			return
		}
	}
}

func (r *fastReader) peek() byte {
	r.space()
	if r.pos >= len(r.b) {
		return 0
	}
	return r.b[r.pos]
}

// count counts one more value against the body's limit.
func (r *fastReader) count() bool {
	r.values++
	return r.values <= maxValues || r.decline()
}

// open reads c ('{' or '[') as a new value one level deeper.
func (r *fastReader) open(c byte) bool {
	if r.peek() != c || !r.count() {
		return false
	}
	r.depth++
	if r.depth > maxDepth {
		return r.decline()
	}
	r.pos++
	return true
}

// members reads the members of an object whose '{' has been read, calling member for each with
// the position at its value, and the closing '}'.
func (r *fastReader) members(member func(key []byte) bool) bool {
	if r.peek() == '}' {
		r.pos++
		r.depth--
		return true
	}
	return r.membersFrom(1, member)
}

// moreMembers reads the rest of an object after its first member.
func (r *fastReader) moreMembers(member func(key []byte) bool) bool {
	switch r.peek() {
	case '}':
		r.pos++
		r.depth--
		return true
	case ',':
		r.pos++
		return r.membersFrom(2, member)
	}
	return r.decline()
}

// membersFrom reads the n-th member and the ones after it, and the closing '}'.
func (r *fastReader) membersFrom(n int, member func(key []byte) bool) bool {
	for ; ; n++ {
		if n > maxMembers {
			return r.decline()
		}
		key, ok := r.key()
		if !ok || !member(key) || r.declined {
			return r.decline()
		}
		switch r.peek() {
		case '}':
			r.pos++
			r.depth--
			return true
		case ',':
			r.pos++
		default:
			return r.decline()
		}
	}
}

// key reads a member name and its ':'. The name is a view of the body, or of scratch when it has
// escapes: valid until the next string is read.
func (r *fastReader) key() ([]byte, bool) {
	if r.peek() != '"' {
		return nil, r.decline()
	}
	raw, escaped, ok := r.rawString()
	if !ok {
		return nil, false
	}
	if r.peek() != ':' {
		return nil, r.decline()
	}
	r.pos++
	if !escaped {
		return raw, true
	}
	return r.unescape(raw)
}

func indexOf(names []string, key []byte) int {
	for i, name := range names {
		if name == string(key) {
			return i
		}
	}
	return -1
}

// list reads an array, calling item for each element, or null.
func (r *fastReader) list(item func() bool) bool {
	if r.null() {
		return true
	}
	if !r.open('[') {
		return r.decline()
	}
	if r.peek() == ']' {
		r.pos++
		r.depth--
		return true
	}
	for n := 1; ; n++ {
		if n > maxElements || !item() || r.declined {
			return r.decline()
		}
		switch r.peek() {
		case ']':
			r.pos++
			r.depth--
			return true
		case ',':
			r.pos++
		default:
			return r.decline()
		}
	}
}

// skip reads any value without keeping it.
func (r *fastReader) skip() bool {
	switch r.peek() {
	case '{':
		if !r.open('{') {
			return false
		}
		return r.members(func([]byte) bool { return r.skip() })
	case '[':
		return r.list(r.skip)
	case '"':
		if !r.count() {
			return false
		}
		_, _, ok := r.rawString()
		return ok
	case 't', 'f':
		_, ok := r.boolean()
		return ok || r.decline()
	case 'n':
		return r.null() || r.decline()
	default:
		_, ok := r.number()
		return ok || r.decline()
	}
}

// null reads null if it comes next.
func (r *fastReader) null() bool {
	if r.peek() != 'n' {
		return false
	}
	if !bytes.HasPrefix(r.b[r.pos:], []byte("null")) || !r.count() {
		return r.decline()
	}
	r.pos += 4
	return true
}

func (r *fastReader) boolean() (bool, bool) {
	switch {
	case r.peek() == 't' && bytes.HasPrefix(r.b[r.pos:], []byte("true")):
		r.pos += 4
		return true, r.count()
	case r.peek() == 'f' && bytes.HasPrefix(r.b[r.pos:], []byte("false")):
		r.pos += 5
		return false, r.count()
	}
	return false, false
}

// number reads a number literal without an exponent, at most maxNumberLength long.
func (r *fastReader) number() ([]byte, bool) {
	r.space()
	start := r.pos
	b := r.b
	if r.pos < len(b) && b[r.pos] == '-' {
		r.pos++
	}
	switch {
	case r.pos < len(b) && b[r.pos] == '0':
		r.pos++
	case r.pos < len(b) && '1' <= b[r.pos] && b[r.pos] <= '9':
		for r.pos < len(b) && '0' <= b[r.pos] && b[r.pos] <= '9' {
			r.pos++
		}
	default:
		return nil, false
	}
	if r.pos < len(b) && b[r.pos] == '.' {
		r.pos++
		digits := r.pos
		for r.pos < len(b) && '0' <= b[r.pos] && b[r.pos] <= '9' {
			r.pos++
		}
		if r.pos == digits {
			return nil, false
		}
	}
	if r.pos < len(b) && (b[r.pos] == 'e' || b[r.pos] == 'E') || r.pos-start > maxNumberLength {
		return nil, false
	}
	return b[start:r.pos], r.count()
}

// smallInt reads a number written as plain digits, below a million.
func (r *fastReader) smallInt() (int, bool) {
	num, ok := r.number()
	if !ok || len(num) > 6 || num[0] == '-' || bytes.IndexByte(num, '.') >= 0 {
		return 0, false
	}
	n := 0
	for _, c := range num {
		n = 10*n + int(c-'0')
	}
	return n, true
}

// rawString reads a string, returning its text between the quotes and whether it has escapes.
func (r *fastReader) rawString() ([]byte, bool, bool) {
	b := r.b
	pos := r.pos + 1
	start := pos
	escaped := false
	for pos < len(b) {
		c := b[pos]
		if c >= 0x20 && c != '"' && c != '\\' {
			pos++
			continue
		}
		switch {
		case c == '"':
			r.pos = pos + 1
			return b[start:pos], escaped, true
		case c == '\\' && pos+1 < len(b):
			escaped = true
			switch b[pos+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				pos += 2
			case 'u':
				if pos+6 > len(b) || !isHex4(b[pos+2:pos+6]) {
					return nil, false, r.decline()
				}
				pos += 6
			default:
				return nil, false, r.decline()
			}
		default:
			return nil, false, r.decline()
		}
	}
	return nil, false, r.decline()
}

// plainString reads a string value whose text is valid UTF-8, escapes undone.
func (r *fastReader) plainString() (string, bool) {
	b, ok := r.plainBytes()
	return string(b), ok
}

// plainBytes is plainString without the copy: a view of the body, or for a string with escapes a
// copy of its own, so it stays valid while the read goes on.
func (r *fastReader) plainBytes() ([]byte, bool) {
	if r.peek() != '"' || !r.count() {
		return nil, r.decline()
	}
	raw, escaped, ok := r.rawString()
	if !ok {
		return nil, false
	}
	if !escaped {
		if !utf8.Valid(raw) {
			return nil, r.decline()
		}
		return raw, true
	}
	b, ok := r.unescape(raw)
	return bytes.Clone(b), ok
}

// unescape undoes the escapes of a string's raw text into scratch; a lone surrogate or invalid
// UTF-8 declines, rather than be replaced as encoding/json would.
func (r *fastReader) unescape(raw []byte) ([]byte, bool) {
	out := r.scratch[:0]
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			out = append(out, c)
			i++
			continue
		}
		switch raw[i+1] {
		case 'u':
			rn := rune(hex4(raw[i+2 : i+6]))
			i += 6
			if 0xD800 <= rn && rn < 0xDC00 {
				if i+6 > len(raw) || raw[i] != '\\' || raw[i+1] != 'u' {
					return nil, r.decline()
				}
				lo := rune(hex4(raw[i+2 : i+6]))
				if lo < 0xDC00 || lo > 0xDFFF {
					return nil, r.decline()
				}
				rn = 0x10000 + (rn-0xD800)<<10 + (lo - 0xDC00)
				i += 6
			} else if 0xDC00 <= rn && rn <= 0xDFFF {
				return nil, r.decline()
			}
			out = utf8.AppendRune(out, rn)
			continue
		default:
			out = append(out, unescaped(raw[i+1]))
		}
		i += 2
	}
	r.scratch = out
	if !utf8.Valid(out) {
		return nil, r.decline()
	}
	return out, true
}

func hex4(b []byte) int {
	n := 0
	for _, c := range b {
		n <<= 4
		switch {
		case '0' <= c && c <= '9':
			n |= int(c - '0')
		case 'a' <= c && c <= 'f':
			n |= int(c-'a') + 10
		default:
			n |= int(c-'A') + 10
		}
	}
	return n
}

// isIntegerLiteral matches integerLiteral: -?(0|[1-9][0-9]{0,17}).
func isIntegerLiteral(b []byte) bool {
	b, _ = bytes.CutPrefix(b, []byte("-"))
	switch {
	case len(b) == 0 || len(b) > 18:
		return false
	case b[0] == '0':
		return len(b) == 1
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func fastLogicalName(s string) bool {
	return s != "" && len(s) <= maxLogicalNameLength && isLogicalNameText(s)
}

// isLogicalNameText matches patternLogicalName without a regular expression.
func isLogicalNameText(s string) bool {
	if s == "" || '0' <= s[0] && s[0] <= '9' {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// isMessageName matches patternMessageName.
func isMessageName(s string) bool {
	if s == "" || !('a' <= s[0] && s[0] <= 'z' || 'A' <= s[0] && s[0] <= 'Z') {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// isOperationDate matches patternOperationDate.
func isOperationDate(s string) bool {
	if rest, ok := strings.CutPrefix(s, "/Date("); ok {
		rest, _ = strings.CutPrefix(rest, "-")
		n := leadingDigits(rest)
		if n == 0 {
			return false
		}
		rest = rest[n:]
		if len(rest) >= 5 && (rest[0] == '+' || rest[0] == '-') && leadingDigits(rest[1:5]) == 4 {
			rest = rest[5:]
		}
		return rest == ")/"
	}
	if len(s) < 10 || leadingDigits(s[:4]) != 4 || s[4] != '-' || leadingDigits(s[5:7]) != 2 || s[7] != '-' || leadingDigits(s[8:10]) != 2 {
		return false
	}
	if len(s) == 10 {
		return true
	}
	if s[10] != 'T' && s[10] != 't' && s[10] != ' ' {
		return false
	}
	for i := 11; i < len(s); i++ {
		if !strings.ContainsRune("0123456789:.,+Zz-", rune(s[i])) {
			return false
		}
	}
	return true
}

func leadingDigits(s string) int {
	n := 0
	for n < len(s) && '0' <= s[n] && s[n] <= '9' {
		n++
	}
	return n
}
