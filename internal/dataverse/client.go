package dataverse

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/dvrelay/dvrelay/internal/event"
	"github.com/dvrelay/dvrelay/internal/platform/outbound"
	"github.com/dvrelay/dvrelay/internal/platform/retry"
	"github.com/google/uuid"
)

// apiPath is the Web API version every request uses.
const apiPath = "/api/data/v9.2/"

// requestTimeout bounds one Web API call when the caller's context does not bound it sooner.
const requestTimeout = 30 * time.Second

// Client talks to one Dataverse environment. It is safe for concurrent use; build one per
// process.
//
// Requests go through an azcore pipeline: its bearer token policy signs every request with a
// token for <environment>/.default, reuses it until shortly before it expires (one refresh for
// a burst of calls), and drops it after a 401 so that the next try signs in again. The pipeline
// makes one try per call: whether and when to try again is the caller's, decided by the one
// classifier and back-off of internal/platform/retry (the worker's quick tries and schedule, an
// operator command's Retry), so that a long Retry-After never holds a delivery in process.
type Client struct {
	base string // https://org.crm.dynamics.com, no trailing slash
	pl   runtime.Pipeline
	now  func() time.Time

	setsMu sync.RWMutex
	sets   map[string]string // logical name → entity set name
}

// Options tune a Client. The zero value is fine.
type Options struct {
	// HTTPClient sends the requests; nil means outbound.NewClient with a 30 s timeout. Per-call
	// deadlines come from the context. A client given here must refuse redirects as
	// outbound.NewClient's does: a followed redirect carries the bearer token elsewhere.
	HTTPClient *http.Client
	// Now is the clock, for Retry-After dates; nil means time.Now.
	Now func() time.Time
	// Concurrency is the most calls made at once (the worker's concurrency), for the default
	// client's connection pool; zero means the outbound default. Unused with HTTPClient.
	Concurrency int
}

// NewClient returns a client for the environment at environmentURL, the root URL that
// internal/config checked (config.DataverseURL: https, or http on a loopback address for a
// local double, and no path). It only takes the URL apart; the rules live in config.
func NewClient(environmentURL string, cred azcore.TokenCredential, opts *Options) (*Client, error) {
	u, err := url.Parse(environmentURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("dataverse: environment URL %q is not an absolute http(s) URL", environmentURL)
	}
	if cred == nil {
		return nil, errors.New("dataverse: a token credential is required")
	}
	if opts == nil {
		opts = &Options{}
	}
	base := u.Scheme + "://" + u.Host
	httpClient := opts.HTTPClient
	if httpClient == nil {
		httpClient = outbound.NewClient(outbound.Options{Timeout: requestTimeout, MaxResponseBytes: maxBody, Concurrency: opts.Concurrency})
	}
	scope := base + "/.default"
	bearer := runtime.NewBearerTokenPolicy(tokenSource{cred: cred, scope: scope}, []string{scope}, &policy.BearerTokenOptions{
		// config allows http only on a loopback address, where local doubles listen.
		InsecureAllowCredentialWithHTTP: u.Scheme == "http",
	})
	c := &Client{
		base: base,
		pl: runtime.NewPipeline("dvrelay-dataverse", "", runtime.PipelineOptions{PerRetry: []policy.Policy{bearer}}, &policy.ClientOptions{
			Transport: httpClient,
			Retry:     policy.RetryOptions{MaxRetries: -1}, // one try: see Client
			Telemetry: policy.TelemetryOptions{Disabled: true},
		}),
		now:  time.Now,
		sets: make(map[string]string),
	}
	if opts.Now != nil {
		c.now = opts.Now
	}
	return c, nil
}

// tokenSource is the credential as the bearer policy sees it: a refused token becomes a
// *TokenError, which names the status and code but not the endpoint's answer, and every failure
// names the scope it was for.
type tokenSource struct {
	cred  azcore.TokenCredential
	scope string
}

func (t tokenSource) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	tok, err := t.cred.GetToken(ctx, opts)
	if err != nil {
		return tok, fmt.Errorf("token for %s: %w", t.scope, tokenError(err))
	}
	return tok, nil
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
	if !event.IsLogicalName(entity) {
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
// every time, so the retry classifier reports it permanent; nothing was sent.
var ErrInvalidInput = retry.NewPermanent("dataverse: invalid input")

// ErrInvalidResponse reports a 2xx answer whose body is not what the Web API documents (or is
// larger than the client reads). The same request gets the same answer, so the retry
// classifier reports it permanent.
var ErrInvalidResponse = retry.NewPermanent("dataverse: invalid response")

// newRequest builds a Web API request; the pipeline adds the bearer token when it is sent.
func (c *Client) newRequest(ctx context.Context, method, target string, body []byte) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, target, nil)
	if err != nil {
		return nil, err
	}
	if body != nil {
		// Seekable, so the pipeline sends it as it is instead of copying it.
		req.Body = streaming.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
	}
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
	preq, err := runtime.NewRequestFromRequest(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", req.Method, err)
	}
	// The answer is read here, up to maxBody, rather than by the pipeline in full.
	runtime.SkipBodyDownload(preq)
	resp, err := c.pl.Do(preq)
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
	return nil, nil, errorFromResponse(resp, body, c.now())
}
