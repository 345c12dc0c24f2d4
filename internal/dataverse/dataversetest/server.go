// Package dataversetest is a stateful double of the Dataverse Web API for tests anywhere in the
// repository: an httptest.Server holding tables of records that answers the requests
// internal/dataverse sends, the way Dataverse documents them (OData-EntityId on create, 404
// with {"error":{"code":"0x80040217",…}} for a missing record, 429 with Retry-After under
// service protection limits), and records every request so a test can assert what was sent.
//
// It understands a deliberate subset of OData; anything else gets a 400 whose message starts
// with "dataversetest:" and names what is missing, so a test never passes by accident:
//
//   - GET <set>, with $filter (comparisons "<column> eq <literal>" joined by "and"; literals
//     'text', a GUID, a whole or decimal number, a date-time such as 2026-11-01T00:00:00Z,
//     true, false, null; text compares without regard to case, as Dataverse's collation does;
//     "<column> ge <literal>" for numbers and date-times), $select, $top and $orderby;
//   - GET <set>(<id>) with $select;
//   - POST <set> (Prefer: return=representation answers 201 with the record);
//   - PATCH <set>(<id>) (with If-Match: * a missing record is 404; without If-Match an upsert);
//   - DELETE <set>(<id>);
//   - GET EntityDefinitions(LogicalName='<name>') for EntitySetName;
//   - GET EntityDefinitions(LogicalName='<name>')/Attributes, a collection of
//     {"LogicalName":…,"MetadataId":…} for the primary key and the table's declared Columns.
//
// Lookups are written as "<navigation>@odata.bind": "/<set>(<id>)" and read back as
// "_<lookup>_value"; the bound record must exist, as in Dataverse.
//
// Annotations are seeded as columns named "<column>@<annotation>", e.g.
// "_regardingobjectid_value@Microsoft.Dynamics.CRM.lookuplogicalname": "opportunity". As in the
// Web API, a read returns them beside their column (selected or not left out by $select) only
// when its Prefer header asks with odata.include-annotations="<names>" ("*", a name, or a
// prefix ending in "*").
package dataversetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/google/uuid"
)

// APIPath is the Web API root the double serves, as the client uses it.
const APIPath = "/api/data/v9.2/"

// Dataverse error codes the double answers with.
const (
	CodeObjectDoesNotExist = "0x80040217" // record (or table) not found
	CodeDuplicateKey       = "0x80040237" // create with an id that exists
	CodeRequestsLimit      = "0x80072322" // service protection: number of requests
	CodeQuerySyntax        = "0x80060888" // bad or unsupported query
	CodeResourceNotFound   = "0x8006088a" // unknown entity set
	CodeUndeclaredProperty = "0x80048d19" // e.g. a PascalCase navigation property in @odata.bind
	CodeVersionMismatch    = "0x80060882" // If-Match etag differs
)

// Table declares one table the double holds.
type Table struct {
	LogicalName string // opportunity
	EntitySet   string // opportunities
	PrimaryKey  string // opportunityid; empty means LogicalName + "id"
	// WriteOnly columns are stored but never returned, like serviceendpoint.authvalue. A test
	// reads them with Record or Records.
	WriteOnly []string
	// Columns are the column logical names the table's metadata lists (besides PrimaryKey),
	// as EntityDefinitions(LogicalName=…)/Attributes answers them. A table that declares none
	// answers that request with a dataversetest error.
	Columns []string
}

// RegistrationTables are the tables a webhook registration touches.
func RegistrationTables() []Table {
	return []Table{
		{LogicalName: "sdkmessage", EntitySet: "sdkmessages"},
		{LogicalName: "sdkmessagefilter", EntitySet: "sdkmessagefilters"},
		{LogicalName: "serviceendpoint", EntitySet: "serviceendpoints", WriteOnly: []string{"authvalue"}},
		{LogicalName: "sdkmessageprocessingstep", EntitySet: "sdkmessageprocessingsteps"},
		{LogicalName: "sdkmessageprocessingstepimage", EntitySet: "sdkmessageprocessingstepimages"},
		{LogicalName: "solution", EntitySet: "solutions"},
	}
}

// Request is one request the double received.
type Request struct {
	Method   string
	Path     string     // e.g. /api/data/v9.2/serviceendpoints(…)
	RawQuery string     // as sent, e.g. $filter=name%20eq%20'Update'
	Query    url.Values // decoded
	Header   http.Header
	Body     []byte
}

// IsWrite reports whether the request asked for a change (POST, PATCH, PUT or DELETE).
func (r Request) IsWrite() bool {
	switch r.Method {
	case http.MethodPost, http.MethodPatch, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

func (r Request) String() string {
	if r.RawQuery != "" {
		return r.Method + " " + r.Path + "?" + r.RawQuery
	}
	return r.Method + " " + r.Path
}

// Server is the double. Its methods are safe for concurrent use.
type Server struct {
	tb  testing.TB
	srv *httptest.Server

	mu         sync.Mutex
	tables     map[string]*table // by entity set
	logical    map[string]*table // by logical name
	requests   []Request
	throttled  int
	retryAfter time.Duration
	failures   int
	failure    *apiError
	pageSize   int
	token      string
	version    int64
}

type table struct {
	Table
	writeOnly map[string]bool
	order     []string // ids in insertion order, the default result order
	records   map[string]map[string]any
	versions  map[string]int64
}

// NewServer starts a double holding the given tables (empty), closed when the test ends.
func NewServer(tb testing.TB, tables ...Table) *Server {
	tb.Helper()
	s := &Server{tb: tb, tables: map[string]*table{}, logical: map[string]*table{}}
	for _, t := range tables {
		s.AddTable(t)
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	tb.Cleanup(s.srv.Close)
	return s
}

// URL is the environment URL to give dataverse.NewClient (http on loopback).
func (s *Server) URL() string { return s.srv.URL }

// Client is an HTTP client for the double.
func (s *Server) Client() *http.Client { return s.srv.Client() }

// AddTable declares another table.
func (s *Server) AddTable(t Table) {
	if t.LogicalName == "" || t.EntitySet == "" {
		s.tb.Fatalf("dataversetest: a table needs a LogicalName and an EntitySet: %+v", t)
	}
	if t.PrimaryKey == "" {
		t.PrimaryKey = t.LogicalName + "id"
	}
	tt := &table{Table: t, writeOnly: map[string]bool{}, records: map[string]map[string]any{}, versions: map[string]int64{}}
	for _, c := range t.WriteOnly {
		tt.writeOnly[c] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tables[t.EntitySet] = tt
	s.logical[t.LogicalName] = tt
}

// RequireToken makes the double answer 401 to any request whose Authorization is not
// "Bearer <token>".
func (s *Server) RequireToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.token = token
}

// Seed stores a record as is (columns by their read names, lookups as "_<lookup>_value") and
// returns its id: the record's primary key when set, a new GUID otherwise. Seeding sends no
// request, so it does not show in Requests. Annotations may be seeded under their Web API
// names ("_parentaccountid_value@Microsoft.Dynamics.CRM.lookuplogicalname": "account");
// they are returned with their column, and only to a request whose Prefer header asks for
// odata.include-annotations, as Dataverse does.
func (s *Server) Seed(entitySet string, record map[string]any) string {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tables[entitySet]
	if !ok {
		s.tb.Fatalf("dataversetest: Seed into undeclared entity set %q", entitySet)
	}
	rec, err := normalize(record)
	if err != nil {
		s.tb.Fatalf("dataversetest: Seed %s: %v", entitySet, err)
	}
	id := uuid.NewString()
	if v, ok := rec[t.PrimaryKey].(string); ok {
		parsed, err := uuid.Parse(v)
		if err != nil {
			s.tb.Fatalf("dataversetest: Seed %s: %s %q is not a GUID", entitySet, t.PrimaryKey, v)
		}
		id = parsed.String()
	}
	if _, dup := t.records[id]; dup {
		s.tb.Fatalf("dataversetest: Seed %s: id %s exists", entitySet, id)
	}
	rec[t.PrimaryKey] = id
	s.put(t, id, rec)
	return id
}

// Records returns copies of every record of a table, in insertion order, write-only columns
// included.
func (s *Server) Records(entitySet string) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tables[entitySet]
	if !ok {
		return nil
	}
	out := make([]map[string]any, 0, len(t.order))
	for _, id := range t.order {
		out = append(out, clone(t.records[id]))
	}
	return out
}

// Record returns a copy of one record, write-only columns included.
func (s *Server) Record(entitySet, id string) (map[string]any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tables[entitySet]
	if !ok {
		return nil, false
	}
	rec, ok := t.records[strings.ToLower(id)]
	if !ok {
		return nil, false
	}
	return clone(rec), true
}

// Throttle answers the next n requests with 429 Too Many Requests, Retry-After in whole
// seconds (rounded up) and the service protection error body. They are still recorded.
func (s *Server) Throttle(n int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.throttled, s.retryAfter = n, retryAfter
}

// Fail answers the next n requests (after any Throttle) with status and Dataverse's error body
// {"error":{"code":code,"message":message}}, e.g. 403 with "0x80040220" for a missing
// privilege, or 500 for an outage. They are still recorded.
func (s *Server) Fail(n, status int, code, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures, s.failure = n, &apiError{status: status, code: code, message: message}
}

// SetPageSize makes collection answers hold at most n records, with @odata.nextLink to the
// rest, as Dataverse does above its page size (5,000) or odata.maxpagesize. Zero turns it off.
func (s *Server) SetPageSize(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pageSize = n
}

// Requests returns every request received so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Writes returns the requests that asked for a change (POST, PATCH, PUT, DELETE).
func (s *Server) Writes() []Request {
	var out []Request
	for _, r := range s.Requests() {
		if r.IsWrite() {
			out = append(out, r)
		}
	}
	return out
}

// ResetRequests forgets the requests received so far, so a test can look at one run alone.
func (s *Server) ResetRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
}

// StaticCredential is an azcore.TokenCredential that hands out one token, valid for an hour,
// for building a dataverse.Client against the double.
type StaticCredential struct{ Token string }

// GetToken returns the token.
func (c StaticCredential) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: c.Token, ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// apiError is an answer in Dataverse's error shape.
type apiError struct {
	status  int
	code    string
	message string
}

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

func unsupported(format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, CodeQuerySyntax, "dataversetest: "+format, args...)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, Request{
		Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Query: r.URL.Query(), Header: r.Header.Clone(), Body: body,
	})
	if s.throttled > 0 {
		s.throttled--
		w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(s.retryAfter.Seconds())), 10))
		writeError(w, errorf(http.StatusTooManyRequests, CodeRequestsLimit,
			"Number of requests exceeded the limit of 6000 over time window of 300 seconds."))
		return
	}
	if s.failures > 0 {
		s.failures--
		writeError(w, s.failure)
		return
	}
	if s.token != "" && r.Header.Get("Authorization") != "Bearer "+s.token {
		w.Header().Set("WWW-Authenticate", "Bearer")
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	status, header, out, apiErr := s.handle(r, body)
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}
	for k, v := range header {
		w.Header()[k] = v
	}
	w.Header().Set("OData-Version", "4.0")
	if out == nil {
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Type", "application/json; odata.metadata=minimal")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(out)
}

func writeError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": e.code, "message": e.message}})
}

var (
	entityDefinition = regexp.MustCompile(`^EntityDefinitions\(LogicalName='([^']*)'\)$`)
	entityAttributes = regexp.MustCompile(`^EntityDefinitions\(LogicalName='([^']*)'\)/Attributes$`)
	recordSegment    = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)\(([^()]*)\)$`)
	setSegment       = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// handle answers one request; s.mu is held.
func (s *Server) handle(r *http.Request, body []byte) (int, http.Header, any, *apiError) {
	if !strings.HasPrefix(r.URL.Path, APIPath) {
		return 0, nil, nil, errorf(http.StatusNotFound, CodeResourceNotFound, "dataversetest: only %s is served, not %s", APIPath, r.URL.Path)
	}
	resource := strings.TrimPrefix(r.URL.Path, APIPath)
	if m := entityDefinition.FindStringSubmatch(resource); m != nil && r.Method == http.MethodGet {
		t, ok := s.logical[m[1]]
		if !ok {
			return 0, nil, nil, errorf(http.StatusNotFound, CodeObjectDoesNotExist, "Could not find an entity with name %s", m[1])
		}
		return http.StatusOK, nil, map[string]any{
			"LogicalName": t.LogicalName, "EntitySetName": t.EntitySet, "PrimaryIdAttribute": t.PrimaryKey,
		}, nil
	}
	if m := entityAttributes.FindStringSubmatch(resource); m != nil && r.Method == http.MethodGet {
		t, ok := s.logical[m[1]]
		if !ok {
			return 0, nil, nil, errorf(http.StatusNotFound, CodeObjectDoesNotExist, "Could not find an entity with name %s", m[1])
		}
		if len(t.Columns) == 0 {
			return 0, nil, nil, unsupported("table %s declares no Columns to list as its Attributes", t.LogicalName)
		}
		var attrs []map[string]any
		for _, c := range append([]string{t.PrimaryKey}, t.Columns...) {
			// A metadata id that stays the same for the same column, as Dataverse's does.
			id := uuid.NewSHA1(uuid.NameSpaceOID, []byte(t.LogicalName+"."+c)).String()
			attrs = append(attrs, map[string]any{"LogicalName": c, "MetadataId": id})
		}
		return http.StatusOK, nil, map[string]any{
			"@odata.context": s.srv.URL + APIPath + "$metadata#EntityDefinitions('" + t.LogicalName + "')/Attributes",
			"value":          attrs,
		}, nil
	}
	if strings.Contains(resource, "/") {
		return 0, nil, nil, unsupported("paths with more than one segment (%s) are not supported", resource)
	}
	if setSegment.MatchString(resource) {
		t, apiErr := s.table(resource)
		if apiErr != nil {
			return 0, nil, nil, apiErr
		}
		switch r.Method {
		case http.MethodGet:
			return s.query(t, r)
		case http.MethodPost:
			return s.create(t, r, body)
		default:
			return 0, nil, nil, errorf(http.StatusMethodNotAllowed, CodeQuerySyntax, "%s is not allowed on a collection", r.Method)
		}
	}
	m := recordSegment.FindStringSubmatch(resource)
	if m == nil {
		return 0, nil, nil, unsupported("cannot read the path %q", resource)
	}
	t, apiErr := s.table(m[1])
	if apiErr != nil {
		return 0, nil, nil, apiErr
	}
	parsed, err := uuid.Parse(m[2])
	if err != nil {
		return 0, nil, nil, unsupported("record key %q is not a GUID (alternate keys are not supported)", m[2])
	}
	id := parsed.String()
	switch r.Method {
	case http.MethodGet:
		return s.retrieve(t, id, r)
	case http.MethodPatch:
		return s.update(t, id, r, body)
	case http.MethodDelete:
		if _, ok := t.records[id]; !ok {
			return 0, nil, nil, notFound(t, id)
		}
		s.remove(t, id)
		return http.StatusNoContent, nil, nil, nil
	default:
		return 0, nil, nil, errorf(http.StatusMethodNotAllowed, CodeQuerySyntax, "%s is not supported on a record", r.Method)
	}
}

func (s *Server) table(set string) (*table, *apiError) {
	t, ok := s.tables[set]
	if !ok {
		return nil, errorf(http.StatusNotFound, CodeResourceNotFound, "Resource not found for the segment '%s'.", set)
	}
	return t, nil
}

func notFound(t *table, id string) *apiError {
	return errorf(http.StatusNotFound, CodeObjectDoesNotExist, "%s With Id = %s Does Not Exist", t.LogicalName, id)
}

// query answers GET <set>.
func (s *Server) query(t *table, r *http.Request) (int, http.Header, any, *apiError) {
	q := r.URL.Query()
	for k := range q {
		switch k {
		case "$filter", "$select", "$top", "$orderby", "$skiptoken":
		default:
			return 0, nil, nil, unsupported("the query option %s is not supported (only $filter, $select, $top, $orderby)", k)
		}
	}
	conds, apiErr := parseFilter(q.Get("$filter"))
	if apiErr != nil {
		return 0, nil, nil, apiErr
	}
	var matched []map[string]any
	for _, id := range t.order {
		rec := t.records[id]
		if matches(rec, conds) {
			matched = append(matched, rec)
		}
	}
	if ob := q.Get("$orderby"); ob != "" {
		if apiErr := orderBy(matched, ob); apiErr != nil {
			return 0, nil, nil, apiErr
		}
	}
	if top := q.Get("$top"); top != "" {
		n, err := strconv.Atoi(top)
		if err != nil || n < 0 {
			return 0, nil, nil, errorf(http.StatusBadRequest, CodeQuerySyntax, "Invalid value for $top: %q", top)
		}
		matched = matched[:min(n, len(matched))]
	}
	skip := 0
	if tok := q.Get("$skiptoken"); tok != "" {
		n, err := strconv.Atoi(tok)
		if err != nil || n < 0 || n > len(matched) {
			return 0, nil, nil, errorf(http.StatusBadRequest, CodeQuerySyntax, "Invalid $skiptoken %q", tok)
		}
		skip = n
	}
	matched = matched[skip:]
	out := map[string]any{"@odata.context": s.srv.URL + APIPath + "$metadata#" + t.EntitySet}
	if s.pageSize > 0 && len(matched) > s.pageSize && q.Get("$top") == "" {
		matched = matched[:s.pageSize]
		next := url.Values{}
		for k, v := range q {
			next[k] = v
		}
		next.Set("$skiptoken", strconv.Itoa(skip+s.pageSize))
		out["@odata.nextLink"] = s.srv.URL + r.URL.Path + "?" + strings.ReplaceAll(next.Encode(), "+", "%20")
	}
	sel := selection(q.Get("$select"))
	value := make([]map[string]any, 0, len(matched))
	for _, rec := range matched {
		value = append(value, s.render(t, rec, sel, requestedAnnotations(r)))
	}
	out["value"] = value
	return http.StatusOK, nil, out, nil
}

// retrieve answers GET <set>(<id>).
func (s *Server) retrieve(t *table, id string, r *http.Request) (int, http.Header, any, *apiError) {
	q := r.URL.Query()
	for k := range q {
		if k != "$select" {
			return 0, nil, nil, unsupported("the query option %s is not supported on a single record (only $select)", k)
		}
	}
	rec, ok := t.records[id]
	if !ok {
		return 0, nil, nil, notFound(t, id)
	}
	out := s.render(t, rec, selection(q.Get("$select")), requestedAnnotations(r))
	out["@odata.context"] = s.srv.URL + APIPath + "$metadata#" + t.EntitySet + "/$entity"
	return http.StatusOK, nil, out, nil
}

// create answers POST <set>.
func (s *Server) create(t *table, r *http.Request, body []byte) (int, http.Header, any, *apiError) {
	cols, apiErr := s.decodeWrite(body)
	if apiErr != nil {
		return 0, nil, nil, apiErr
	}
	id := uuid.NewString()
	if v, ok := cols[t.PrimaryKey]; ok {
		str, _ := v.(string)
		parsed, err := uuid.Parse(str)
		if err != nil {
			return 0, nil, nil, errorf(http.StatusBadRequest, CodeQuerySyntax, "%s is not a GUID", t.PrimaryKey)
		}
		id = parsed.String()
		if _, dup := t.records[id]; dup {
			return 0, nil, nil, errorf(http.StatusPreconditionFailed, CodeDuplicateKey, "Cannot insert duplicate key.")
		}
	}
	cols[t.PrimaryKey] = id
	s.put(t, id, cols)
	header := http.Header{}
	header.Set("OData-EntityId", s.srv.URL+APIPath+t.EntitySet+"("+id+")")
	if strings.Contains(r.Header.Get("Prefer"), "return=representation") {
		return http.StatusCreated, header, s.render(t, t.records[id], nil, requestedAnnotations(r)), nil
	}
	return http.StatusNoContent, header, nil, nil
}

// update answers PATCH <set>(<id>): an update, or an upsert when no If-Match prevents it.
func (s *Server) update(t *table, id string, r *http.Request, body []byte) (int, http.Header, any, *apiError) {
	cols, apiErr := s.decodeWrite(body)
	if apiErr != nil {
		return 0, nil, nil, apiErr
	}
	rec, exists := t.records[id]
	ifMatch, ifNoneMatch := r.Header.Get("If-Match"), r.Header.Get("If-None-Match")
	switch {
	case !exists && ifMatch != "":
		return 0, nil, nil, notFound(t, id)
	case exists && ifNoneMatch == "*":
		return 0, nil, nil, errorf(http.StatusPreconditionFailed, CodeDuplicateKey, "A record with matching key values already exists.")
	case exists && ifMatch != "" && ifMatch != "*" && ifMatch != etag(t.versions[id]):
		return 0, nil, nil, errorf(http.StatusPreconditionFailed, CodeVersionMismatch, "The version of the existing record doesn't match the RowVersion property provided.")
	}
	if !exists {
		rec = map[string]any{t.PrimaryKey: id}
	}
	delete(cols, t.PrimaryKey)
	for k, v := range cols {
		rec[k] = v
	}
	s.put(t, id, rec)
	return http.StatusNoContent, nil, nil, nil
}

// navigationToLookup names the lookup column a navigation property sets where the two differ
// (polymorphic lookups); otherwise <navigation> sets _<navigation>_value.
var navigationToLookup = map[string]string{
	"eventhandler_serviceendpoint": "eventhandler",
	"eventhandler_plugintype":      "eventhandler",
}

var bindTarget = regexp.MustCompile(`(?:^|/api/data/v9\.2)/?([A-Za-z_][A-Za-z0-9_]*)\(([^()]*)\)$`)

// decodeWrite reads a create or update body into stored columns; s.mu is held.
func (s *Server) decodeWrite(body []byte) (map[string]any, *apiError) {
	var raw map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil || raw == nil {
		return nil, errorf(http.StatusBadRequest, CodeQuerySyntax, "The request body is not a JSON object.")
	}
	cols := map[string]any{}
	for k, v := range raw {
		nav, isBind := strings.CutSuffix(k, "@odata.bind")
		switch {
		case isBind:
			if nav != strings.ToLower(nav) {
				return nil, errorf(http.StatusBadRequest, CodeUndeclaredProperty,
					"An undeclared property '%s' which only has property annotations in the payload but no property value was found in the payload.", nav)
			}
			ref, _ := v.(string)
			m := bindTarget.FindStringSubmatch(ref)
			if m == nil {
				return nil, errorf(http.StatusBadRequest, CodeQuerySyntax, "The @odata.bind value %q is not a record reference such as /accounts(<id>).", ref)
			}
			target, apiErr := s.table(m[1])
			if apiErr != nil {
				return nil, apiErr
			}
			parsed, err := uuid.Parse(m[2])
			if err != nil {
				return nil, errorf(http.StatusBadRequest, CodeQuerySyntax, "The @odata.bind key %q is not a GUID.", m[2])
			}
			if _, ok := target.records[parsed.String()]; !ok {
				return nil, notFound(target, parsed.String())
			}
			lookup := nav
			if l, ok := navigationToLookup[nav]; ok {
				lookup = l
			}
			cols["_"+lookup+"_value"] = parsed.String()
		case strings.Contains(k, "@"):
			// Other instance annotations carry nothing to store.
		default:
			cols[k] = v
		}
	}
	return cols, nil
}

func (s *Server) put(t *table, id string, rec map[string]any) {
	if _, ok := t.records[id]; !ok {
		t.order = append(t.order, id)
	}
	s.version++
	t.records[id] = rec
	t.versions[id] = s.version
}

func (s *Server) remove(t *table, id string) {
	delete(t.records, id)
	delete(t.versions, id)
	for i, v := range t.order {
		if v == id {
			t.order = append(t.order[:i], t.order[i+1:]...)
			break
		}
	}
}

func etag(version int64) string { return `W/"` + strconv.FormatInt(version, 10) + `"` }

// render is a record as the Web API returns it: write-only columns left out, only the selected
// columns (null when unset) plus the primary key when sel is not nil, and an etag.
func (s *Server) render(t *table, rec map[string]any, sel []string, wanted annotations) map[string]any {
	out := map[string]any{"@odata.etag": etag(t.versions[fmt.Sprint(rec[t.PrimaryKey])])}
	if sel == nil {
		for k, v := range rec {
			column, annotation, isAnnotation := strings.Cut(k, "@")
			if t.writeOnly[column] || (isAnnotation && !wanted.has(annotation)) {
				continue
			}
			out[k] = v
		}
		return out
	}
	out[t.PrimaryKey] = rec[t.PrimaryKey]
	for _, c := range sel {
		if t.writeOnly[c] {
			continue
		}
		out[c] = rec[c]
		for k, v := range rec {
			if annotation, ok := strings.CutPrefix(k, c+"@"); ok && wanted.has(annotation) {
				out[k] = v
			}
		}
	}
	return out
}

// annotations are the names a request's Prefer: odata.include-annotations="…" asks for.
type annotations []string

var includeAnnotations = regexp.MustCompile(`odata\.include-annotations="([^"]*)"`)

func requestedAnnotations(r *http.Request) annotations {
	m := includeAnnotations.FindStringSubmatch(r.Header.Get("Prefer"))
	if m == nil {
		return nil
	}
	var names annotations
	for _, n := range strings.Split(m[1], ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	return names
}

func (a annotations) has(name string) bool {
	for _, n := range a {
		if prefix, wildcard := strings.CutSuffix(n, "*"); n == name || (wildcard && strings.HasPrefix(name, prefix)) {
			return true
		}
	}
	return false
}

func selection(sel string) []string {
	if sel == "" {
		return nil
	}
	var cols []string
	for _, c := range strings.Split(sel, ",") {
		if c = strings.TrimSpace(c); c != "" {
			cols = append(cols, c)
		}
	}
	return cols
}

// condition is one "<column> eq|ge <literal>" of a $filter.
type condition struct {
	column string
	ge     bool // ge instead of eq
	value  any  // string, json.Number, time.Time, bool or nil
}

var (
	filterCondition = regexp.MustCompile(`^\s*([A-Za-z_][A-Za-z0-9_]*)\s+(eq|ge)\s+('(?:[^']|'')*'|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|` + dateTimeLiteral + `|-?[0-9]+(?:\.[0-9]+)?|true|false|null)\s*$`)
	filterAnd       = regexp.MustCompile(`\s+and\s+`)
)

// dateTimeLiteral is an OData DateTimeOffset literal, written without quotes.
const dateTimeLiteral = `[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?(?:Z|[+-][0-9]{2}:[0-9]{2})`

var dateTime = regexp.MustCompile(`^` + dateTimeLiteral + `$`)

func parseFilter(f string) ([]condition, *apiError) {
	if strings.TrimSpace(f) == "" {
		return nil, nil
	}
	// Split on " and " outside quoted strings.
	var parts []string
	var b strings.Builder
	inQuote := false
	for i := 0; i < len(f); i++ {
		ch := f[i]
		if ch == '\'' {
			inQuote = !inQuote
		}
		if !inQuote {
			if loc := filterAnd.FindStringIndex(f[i:]); loc != nil && loc[0] == 0 {
				parts = append(parts, b.String())
				b.Reset()
				i += loc[1] - 1
				continue
			}
		}
		b.WriteByte(ch)
	}
	parts = append(parts, b.String())
	conds := make([]condition, 0, len(parts))
	for _, p := range parts {
		m := filterCondition.FindStringSubmatch(p)
		if m == nil {
			return nil, unsupported("cannot read %q in $filter: only <column> eq <'text'|guid|number|date-time|true|false|null> and <column> ge <number|date-time>, joined by 'and', are supported", strings.TrimSpace(p))
		}
		lit := m[3]
		var v any
		switch {
		case dateTime.MatchString(lit):
			t, err := time.Parse(time.RFC3339Nano, lit)
			if err != nil {
				return nil, unsupported("cannot read the date-time %s in $filter: %v", lit, err)
			}
			v = t
		case strings.HasPrefix(lit, "'"):
			v = strings.ReplaceAll(lit[1:len(lit)-1], "''", "'")
		case lit == "true", lit == "false":
			v = lit == "true"
		case lit == "null":
			v = nil
		case strings.Count(lit, "-") == 4 && len(lit) == 36:
			v = strings.ToLower(lit)
		default:
			v = json.Number(lit)
		}
		c := condition{column: m[1], ge: m[2] == "ge", value: v}
		switch v.(type) {
		case json.Number, time.Time:
		default:
			if c.ge {
				return nil, unsupported("cannot read %q in $filter: ge compares numbers and date-times only", strings.TrimSpace(p))
			}
		}
		conds = append(conds, c)
	}
	return conds, nil
}

func matches(rec map[string]any, conds []condition) bool {
	for _, c := range conds {
		if c.ge && !atLeast(rec[c.column], c.value) || !c.ge && !equal(rec[c.column], c.value) {
			return false
		}
	}
	return true
}

func equal(have, want any) bool {
	switch w := want.(type) {
	case nil:
		return have == nil
	case string:
		h, ok := have.(string)
		return ok && strings.EqualFold(h, w)
	case bool:
		h, ok := have.(bool)
		return ok && h == w
	case json.Number:
		h, ok := have.(json.Number)
		if !ok {
			return false
		}
		hf, err1 := h.Float64()
		wf, err2 := w.Float64()
		return err1 == nil && err2 == nil && hf == wf
	case time.Time:
		h, ok := storedTime(have)
		return ok && h.Equal(w)
	}
	return false
}

// atLeast is "have ge want" for a number or a date-time; a value of another type, or none,
// never matches, as null never does in OData.
func atLeast(have, want any) bool {
	switch w := want.(type) {
	case json.Number:
		h, ok := have.(json.Number)
		if !ok {
			return false
		}
		hf, err1 := h.Float64()
		wf, err2 := w.Float64()
		return err1 == nil && err2 == nil && hf >= wf
	case time.Time:
		h, ok := storedTime(have)
		return ok && !h.Before(w)
	}
	return false
}

// storedTime reads a date-time column, stored as the Web API writes it (2026-11-01T10:00:00Z).
func storedTime(v any) (time.Time, bool) {
	s, ok := v.(string)
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}

func orderBy(recs []map[string]any, spec string) *apiError {
	type key struct {
		column string
		desc   bool
	}
	var keys []key
	for _, part := range strings.Split(spec, ",") {
		f := strings.Fields(part)
		if len(f) == 0 || len(f) > 2 || (len(f) == 2 && f[1] != "asc" && f[1] != "desc") {
			return unsupported("cannot read %q in $orderby", part)
		}
		keys = append(keys, key{column: f[0], desc: len(f) == 2 && f[1] == "desc"})
	}
	sort.SliceStable(recs, func(i, j int) bool {
		for _, k := range keys {
			c := compare(recs[i][k.column], recs[j][k.column])
			if c != 0 {
				return (c < 0) != k.desc
			}
		}
		return false
	})
	return nil
}

// compare orders nulls first, then numbers, then text (dates in ISO 8601 order as text).
func compare(a, b any) int {
	rank := func(v any) int {
		switch v.(type) {
		case nil:
			return 0
		case json.Number:
			return 1
		default:
			return 2
		}
	}
	if ra, rb := rank(a), rank(b); ra != rb {
		return ra - rb
	}
	if an, ok := a.(json.Number); ok {
		af, _ := an.Float64()
		bf, _ := b.(json.Number).Float64()
		switch {
		case af < bf:
			return -1
		case af > bf:
			return 1
		}
		return 0
	}
	return strings.Compare(fmt.Sprint(a), fmt.Sprint(b))
}

// normalize passes a Go value through JSON so seeded and posted records hold the same types.
func normalize(rec map[string]any) (map[string]any, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	var out map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		return nil, err
	}
	if out == nil {
		out = map[string]any{}
	}
	return out, nil
}

func clone(rec map[string]any) map[string]any {
	out, _ := normalize(rec)
	return out
}
