package dataverse

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/dvrelay/dvrelay/internal/platform/outbound"
	"github.com/google/uuid"
)

// apiPath is the Web API version every request uses.
const apiPath = "/api/data/v9.2/"

// requestTimeout bounds one Web API call when the caller's context does not bound it sooner.
const requestTimeout = 30 * time.Second

// tokenSlack is how long before its expiry a cached token is replaced, so a request never leaves
// with a token that expires on the way.
const tokenSlack = 5 * time.Minute

// logicalName is the shape of a Dataverse table logical name. Checking it keeps caller input
// from reshaping the metadata URL.
var logicalName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,127}$`)

// Client talks to one Dataverse environment. It is safe for concurrent use; build one per
// process.
type Client struct {
	base  string // https://org.crm.dynamics.com, no trailing slash
	scope string // base + "/.default"
	http  *http.Client
	cred  azcore.TokenCredential
	now   func() time.Time

	// tokenLock (a one-slot semaphore) guards token and serialises refreshes; unlike a mutex,
	// a caller waiting for it can give up when its own context ends.
	tokenLock chan struct{}
	token     azcore.AccessToken

	setsMu sync.RWMutex
	sets   map[string]string // logical name → entity set name
}

// Options tune a Client. The zero value is fine.
type Options struct {
	// HTTPClient sends the requests; nil means outbound.NewClient with a 30 s timeout. Per-call
	// deadlines come from the context. A client given here must refuse redirects as
	// outbound.NewClient's does: a followed redirect carries the bearer token elsewhere.
	HTTPClient *http.Client
	// Now is the clock, for Retry-After dates and token expiry; nil means time.Now.
	Now func() time.Time
	// Concurrency is the most calls made at once (the worker's concurrency), for the default
	// client's connection pool; zero means the outbound default. Unused with HTTPClient.
	Concurrency int
}

// NewClient returns a client for the environment at environmentURL (the DATAVERSE_URL setting,
// e.g. https://contoso.crm.dynamics.com). The URL must be https; plain http is accepted only
// for a loopback host, which is what local test doubles listen on.
func NewClient(environmentURL string, cred azcore.TokenCredential, opts *Options) (*Client, error) {
	base, err := checkEnvironmentURL(environmentURL)
	if err != nil {
		return nil, err
	}
	if cred == nil {
		return nil, errors.New("dataverse: a token credential is required")
	}
	concurrency := 0
	if opts != nil {
		concurrency = opts.Concurrency
	}
	c := &Client{
		base:  base,
		scope: base + "/.default",
		http:  outbound.NewClient(outbound.Options{Timeout: requestTimeout, MaxResponseBytes: maxBody, Concurrency: concurrency}),
		cred:  cred,
		now:   time.Now,
		sets:  make(map[string]string),

		tokenLock: make(chan struct{}, 1),
	}
	if opts != nil {
		if opts.HTTPClient != nil {
			c.http = opts.HTTPClient
		}
		if opts.Now != nil {
			c.now = opts.Now
		}
	}
	return c, nil
}

func checkEnvironmentURL(raw string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return "", fmt.Errorf("DATAVERSE_URL: %q is not a URL: %w", raw, err)
	}
	if u.Host == "" {
		return "", fmt.Errorf("DATAVERSE_URL: %q has no host (e.g. https://contoso.crm.dynamics.com)", raw)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return "", fmt.Errorf("DATAVERSE_URL: %q must use https (plain http is only allowed on a loopback address)", raw)
		}
	default:
		return "", fmt.Errorf("DATAVERSE_URL: %q must use https", raw)
	}
	if p := strings.TrimRight(u.Path, "/"); p != "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("DATAVERSE_URL: %q must be the environment root, without a path or query", raw)
	}
	return u.Scheme + "://" + u.Host, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// RequestIDs are the ids a caller wants carried on its Web API requests, so that Dataverse-side
// traces and any proxy in between can correlate and deduplicate.
type RequestIDs struct {
	IdempotencyKey string // sent as Idempotency-Key; the event id
	CorrelationID  string // sent as X-Correlation-ID
	Traceparent    string // sent as traceparent (W3C Trace Context), for the end-to-end trace
}

type requestIDsKey struct{}

// WithRequestIDs returns a context whose Web API requests carry ids. They travel in the context
// because they describe the unit of work, not the update itself.
func WithRequestIDs(ctx context.Context, ids RequestIDs) context.Context {
	return context.WithValue(ctx, requestIDsKey{}, ids)
}

type solutionKey struct{}

// WithSolution returns a context whose creates (POST) add the new record to the unmanaged
// solution with this unique name (the MSCRM.SolutionUniqueName header), so that what is created
// moves with the solution from one environment to the next. Updates are left as they are:
// the header adds only new records.
func WithSolution(ctx context.Context, uniqueName string) context.Context {
	return context.WithValue(ctx, solutionKey{}, uniqueName)
}

type annotationsKey struct{}

// WithAnnotations returns a context whose Web API requests ask for the named annotations
// (Prefer: odata.include-annotations="<names>"). Reads then carry them beside each column as
// "<column>@<annotation>", e.g. "_parentaccountid_value@Microsoft.Dynamics.CRM.lookuplogicalname"
// (the table a lookup points to) or "...@OData.Community.Display.V1.FormattedValue" (a lookup's
// name). Names are fixed by the caller's code, never taken from input; "*" asks for all.
func WithAnnotations(ctx context.Context, names ...string) context.Context {
	return context.WithValue(ctx, annotationsKey{}, strings.Join(names, ","))
}

// Annotation names a reader of lookups asks for with WithAnnotations.
const (
	AnnotationLookupLogicalName = "Microsoft.Dynamics.CRM.lookuplogicalname"
	AnnotationFormattedValue    = "OData.Community.Display.V1.FormattedValue"
)

// Update sets columns on an existing record: PATCH <set>(<id>) with If-Match: *, so a record
// that was deleted yields a 404 *Error instead of being re-created. Values use the Web API
// formats (money and decimals as numbers, choices as integers, lookups via @odata.bind keys).
func (c *Client) Update(ctx context.Context, entity, id string, columns map[string]any) error {
	recordID, err := uuid.Parse(id)
	if err != nil {
		// The id is not quoted: it comes from the event, and error text ends up in logs.
		return fmt.Errorf("dataverse update %s: record id is not a GUID: %w", entity, ErrInvalidInput)
	}
	if len(columns) == 0 {
		return fmt.Errorf("dataverse update %s(%s): no columns to set: %w", entity, recordID, ErrInvalidInput)
	}
	set, err := c.EntitySetName(ctx, entity)
	if err != nil {
		return fmt.Errorf("dataverse update %s(%s): %w", entity, recordID, err)
	}
	body, err := json.Marshal(columns)
	if err != nil {
		return fmt.Errorf("dataverse update %s(%s): encode columns: %w: %w", entity, recordID, ErrInvalidInput, err)
	}
	req, err := c.newRequest(ctx, http.MethodPatch, c.base+apiPath+set+"("+recordID.String()+")", body)
	if err != nil {
		return fmt.Errorf("dataverse update %s(%s): %w", entity, recordID, err)
	}
	req.Header.Set("If-Match", "*")
	if _, err := c.do(req); err != nil {
		return fmt.Errorf("dataverse update %s(%s): %w", entity, recordID, err)
	}
	return nil
}

// EntitySetName maps a table's logical name (opportunity) to the set name its URLs use
// (opportunities), asking the metadata endpoint the first time and remembering the answer for
// the life of the client.
func (c *Client) EntitySetName(ctx context.Context, entity string) (string, error) {
	if !logicalName.MatchString(entity) {
		return "", fmt.Errorf("entity %q is not a Dataverse logical name: %w", entity, ErrInvalidInput)
	}
	c.setsMu.RLock()
	set, ok := c.sets[entity]
	c.setsMu.RUnlock()
	if ok {
		return set, nil
	}
	req, err := c.newRequest(ctx, http.MethodGet, c.base+apiPath+"EntityDefinitions(LogicalName='"+entity+"')?$select=EntitySetName", nil)
	if err != nil {
		return "", fmt.Errorf("entity set of %s: %w", entity, err)
	}
	body, err := c.do(req)
	if err != nil {
		return "", fmt.Errorf("entity set of %s: %w", entity, err)
	}
	var def struct {
		EntitySetName string `json:"EntitySetName"`
	}
	if err := json.Unmarshal(body, &def); err != nil || def.EntitySetName == "" {
		return "", fmt.Errorf("entity set of %s: %w", entity, ErrInvalidResponse)
	}
	// Concurrent first lookups may both fetch; they store the same answer.
	c.setsMu.Lock()
	c.sets[entity] = def.EntitySetName
	c.setsMu.Unlock()
	return def.EntitySetName, nil
}

// ErrInvalidInput reports arguments no request can be built from (a record id that is not a
// GUID, a table name that is not a logical name, no columns). The same input fails the same way
// every time, so callers can treat it as permanent; nothing was sent.
var ErrInvalidInput = errors.New("dataverse: invalid input")

// ErrInvalidResponse reports a 2xx answer whose body is not what the Web API documents.
var ErrInvalidResponse = errors.New("dataverse: invalid response")

func (c *Client) newRequest(ctx context.Context, method, target string, body []byte) (*http.Request, error) {
	token, err := c.accessToken(ctx)
	if err != nil {
		return nil, err
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("OData-MaxVersion", "4.0")
	req.Header.Set("OData-Version", "4.0")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if name, ok := ctx.Value(solutionKey{}).(string); ok && name != "" && method == http.MethodPost {
		req.Header.Set("MSCRM.SolutionUniqueName", name)
	}
	if names, ok := ctx.Value(annotationsKey{}).(string); ok && names != "" {
		req.Header.Set("Prefer", `odata.include-annotations="`+names+`"`)
	}
	if ids, ok := ctx.Value(requestIDsKey{}).(RequestIDs); ok {
		if ids.IdempotencyKey != "" {
			req.Header.Set("Idempotency-Key", ids.IdempotencyKey)
		}
		if ids.CorrelationID != "" {
			req.Header.Set("X-Correlation-ID", ids.CorrelationID)
		}
		if ids.Traceparent != "" {
			req.Header.Set("traceparent", ids.Traceparent)
		}
	}
	return req, nil
}

// do sends req and returns the body of a 2xx answer, or an *Error. A redirect is refused by
// the outbound client and comes back as an *outbound.RedirectError.
func (c *Client) do(req *http.Request) ([]byte, error) {
	_, body, err := c.doResponse(req)
	return body, err
}

// doResponse is do for callers that also need the answer's headers (Create reads
// OData-EntityId). Every request of the client goes through it, so the one outbound policy and
// the read bound apply to all of them.
func (c *Client) doResponse(req *http.Request) (http.Header, []byte, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		// *url.Error repeats the whole URL; the callers already name the record.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, nil, fmt.Errorf("%s: %w", req.Method, err)
	}
	defer resp.Body.Close()
	body, truncated, err := outbound.ReadLimited(resp.Body, maxBody)
	if err != nil {
		return nil, nil, fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if truncated {
			return nil, nil, fmt.Errorf("%w: answer larger than %d bytes", ErrInvalidResponse, maxBody)
		}
		return resp.Header, body, nil
	}
	if resp.StatusCode == http.StatusUnauthorized {
		c.forgetToken(req)
	}
	return nil, nil, errorFromResponse(resp, body, c.now())
}

// forgetToken drops the cached token after a 401 for req, which may have been revoked early,
// so that the next request fetches a fresh one. Only the token req carried is dropped, not one
// another caller fetched since; a caller whose context ends first leaves the cache as it is.
func (c *Client) forgetToken(req *http.Request) {
	select {
	case c.tokenLock <- struct{}{}:
	case <-req.Context().Done():
		return
	}
	defer func() { <-c.tokenLock }()
	if "Bearer "+c.token.Token == req.Header.Get("Authorization") {
		c.token = azcore.AccessToken{}
	}
}

// accessToken returns a token for the environment, reusing one until shortly before it expires.
// The credentials cache too; this keeps any credential from being asked on every request, and
// serialises refreshes so a burst of calls triggers one token request. A caller queued behind a
// slow refresh (an identity endpoint retrying) leaves when its own context ends.
func (c *Client) accessToken(ctx context.Context) (string, error) {
	select {
	case c.tokenLock <- struct{}{}:
	case <-ctx.Done():
		return "", fmt.Errorf("token for %s: %w", c.scope, ctx.Err())
	}
	defer func() { <-c.tokenLock }()
	if c.token.Token != "" && c.now().Add(tokenSlack).Before(c.token.ExpiresOn) {
		return c.token.Token, nil
	}
	tok, err := c.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{c.scope}})
	if err != nil {
		return "", fmt.Errorf("token for %s: %w", c.scope, tokenError(err))
	}
	c.token = tok
	return tok.Token, nil
}
