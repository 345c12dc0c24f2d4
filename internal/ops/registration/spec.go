// Package registration registers dvrelay's intake as a Dataverse webhook through the Web API:
// the serviceendpoint (contract 8, JSON), the sdkmessageprocessingstep that posts to it
// (PostOperation, asynchronous) and the step's images. Every record is found by its natural
// key before anything is written, so running a registration again changes nothing, a changed
// setting updates the record in place, and a dry run reports what would change without
// writing. Secrets (the webhook secret, the function key) are sent but never reported.
package registration

import (
	"encoding/xml"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/dvrelay/dvrelay/internal/event"
	"github.com/dvrelay/dvrelay/internal/platform/oneline"
)

// Auth is how Dataverse proves itself to the intake.
type Auth string

const (
	// AuthHeader sends the shared secret in a header (serviceendpoint authtype 5, HttpHeader):
	// the DVRELAY_WEBHOOK_SECRET the intake checks, under DVRELAY_WEBHOOK_SECRET_HEADER. A
	// function key goes beside it as x-functions-key, never into the URL: serviceendpoint.url
	// is readable by anyone who can read endpoints and travels in solution exports, while
	// authvalue is write-only.
	AuthHeader Auth = "header"
	// AuthWebhookKey sends the Functions key as ?code= (authtype 4, WebhookKey).
	AuthWebhookKey Auth = "webhookkey"
)

// FunctionKeyHeader is the header the Functions host reads a function key from.
const FunctionKeyHeader = "x-functions-key"

// serviceendpoint.authtype values.
const (
	authTypeWebhookKey = 4
	authTypeHTTPHeader = 5
)

// ImageType is sdkmessageprocessingstepimage.imagetype.
type ImageType int

const (
	PreImage  ImageType = 0
	PostImage ImageType = 1
)

// Alias is the image's entityalias and name: the key the image has in the webhook body's
// PreEntityImages or PostEntityImages.
func (t ImageType) Alias() string {
	if t == PreImage {
		return "PreImage"
	}
	return "PostImage"
}

func (t ImageType) String() string {
	if t == PreImage {
		return "pre"
	}
	return "post"
}

// Image is one entity image on the step: the record before (pre) or after (post) the
// operation, with the listed columns or, when Attributes is empty, all of them.
type Image struct {
	Type       ImageType
	Attributes []string
}

// ParseImage reads the --image flag: pre, post, pre:col1,col2 or post:col1,col2.
func ParseImage(s string) (Image, error) {
	kind, cols, hasCols := strings.Cut(strings.TrimSpace(s), ":")
	var img Image
	switch strings.ToLower(kind) {
	case "pre":
		img.Type = PreImage
	case "post":
		img.Type = PostImage
	default:
		return Image{}, fmt.Errorf("--image %q: say pre or post, optionally with columns (pre:name,estimatedvalue)", s)
	}
	if hasCols {
		img.Attributes = SplitColumns(cols)
		if len(img.Attributes) == 0 {
			return Image{}, fmt.Errorf("--image %q: no columns after the colon; leave the colon out for all columns", s)
		}
	}
	return img, nil
}

// SplitColumns reads a comma-separated list of column logical names, trimmed and lower-cased.
func SplitColumns(s string) []string {
	var out []string
	for _, c := range strings.Split(s, ",") {
		if c = strings.ToLower(strings.TrimSpace(c)); c != "" {
			out = append(out, c)
		}
	}
	return out
}

// imageRule says which images a message takes and the message parameter they are taken from
// (sdkmessageprocessingstepimage.messagepropertyname): the record the message acts on.
type imageRule struct {
	name      string // as Dataverse spells the message
	property  string
	pre, post bool
}

// imageRules are the messages dvrelay registers images for. Create takes Id (Dataverse
// rejects Target there, 0x8004416b) and has nothing before it; Delete leaves nothing after it;
// SetState and SetStateDynamicEntity name their record EntityMoniker.
var imageRules = []imageRule{
	{"Create", "Id", false, true},
	{"Update", "Target", true, true},
	{"Delete", "Target", true, false},
	{"Assign", "Target", true, true},
	{"SetState", "EntityMoniker", true, true},
	{"SetStateDynamicEntity", "EntityMoniker", true, true},
}

func imageMessage(message string) (imageRule, bool) {
	for _, r := range imageRules {
		if strings.EqualFold(r.name, message) {
			return r, true
		}
	}
	return imageRule{}, false
}

func imageMessageNames() string {
	names := make([]string, len(imageRules))
	for i, r := range imageRules {
		names[i] = r.name
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// Spec is one registration: the intake at FunctionURL is told about Message on Entity.
type Spec struct {
	// Name names the serviceendpoint; the step is named "<Name>: <Message> of <Entity>". One
	// endpoint may carry steps for several tables and messages.
	Name string
	// FunctionURL is the intake, e.g. https://<app>.azurewebsites.net/api/dataverse/webhook. A
	// ?code=<key> on it is taken as the function key and never stored in the endpoint's url.
	FunctionURL string
	Entity      string // table logical name, e.g. opportunity
	Message     string // e.g. Create, Update, Delete (as Dataverse spells it)
	// Attributes are the step's filtering attributes (Update only): the step fires only when
	// one of them is in the update. Empty: every update.
	Attributes []string
	Images     []Image
	Rank       int // execution order among steps on the same message; 1 is usual

	Auth         Auth
	SecretHeader string // AuthHeader: the header name
	Secret       string // AuthHeader: the secret value
	// FunctionKey is the Functions key: authvalue itself with AuthWebhookKey, the
	// x-functions-key setting with AuthHeader. Empty means the code parameter of FunctionURL;
	// with AuthHeader it may be absent (handler serve needs none).
	FunctionKey string
	// Solution is the unique name of an unmanaged solution the records created go into
	// (MSCRM.SolutionUniqueName), so that they move with solution-based ALM. Empty: none.
	Solution string
	// Prune removes what an existing registration has and this run does not mention: a
	// dvrelay image not given, filtering attributes when none are given. Without it a rerun
	// keeps them, so two runs that each name one thing do not undo each other.
	Prune bool

	// RotateSecret writes the secret or key to an existing endpoint. Dataverse never returns
	// it, so a rerun cannot tell whether it changed; it is written on create, when the auth
	// type changes and when this is set.
	RotateSecret bool
}

// StepName is the name the step is registered under.
func (s Spec) StepName() string {
	return s.Name + ": " + s.Message + " of " + s.Entity
}

// SpecError lists what is wrong with a Spec, one problem a line, each naming its flag.
type SpecError struct{ Problems []string }

func (e *SpecError) Error() string { return strings.Join(e.Problems, "\n") }

var (
	messageName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,255}$`)
	// solutionName is a solution's uniquename: letters, digits and underscores.
	solutionName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,64}$`)
	// headerName is an RFC 9110 token.
	headerName = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
)

// Check reports every problem with the spec together, as a *SpecError.
func (s Spec) Check() error {
	var p []string
	bad := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }

	if strings.TrimSpace(s.Name) == "" {
		bad("--name: must not be empty")
	} else if n := len(s.StepName()); n > 256 {
		bad("--name: too long: the step name %q would be %d characters, Dataverse allows 256", s.StepName(), n)
	}
	if !event.IsLogicalName(s.Entity) {
		bad("--entity %q: give the table's logical name, lower case (e.g. opportunity)", s.Entity)
	}
	if !messageName.MatchString(s.Message) {
		bad("--message %q: give a message name such as Create, Update or Delete", s.Message)
	}
	if s.Rank < 1 {
		bad("--rank %d: must be 1 or more", s.Rank)
	}
	for _, a := range s.Attributes {
		if !event.IsLogicalName(a) {
			bad("--attributes: %q is not a column logical name", a)
		}
	}
	if s.Solution != "" && !solutionName.MatchString(s.Solution) {
		bad("--solution %q: give the solution's unique name (letters, digits and _), not its display name", s.Solution)
	}
	isMessage := func(m string) bool { return strings.EqualFold(s.Message, m) }
	if len(s.Attributes) > 0 && !isMessage("Update") {
		bad("--attributes: filtering attributes apply to Update only, not %s; leave the flag out", s.Message)
	}
	seen := map[ImageType]bool{}
	for _, img := range s.Images {
		if seen[img.Type] {
			bad("--image: %s given twice; give one --image pre and one --image post at most", img.Type)
		}
		seen[img.Type] = true
		for _, a := range img.Attributes {
			if !event.IsLogicalName(a) {
				bad("--image %s: %q is not a column logical name", img.Type, a)
			}
		}
		rule, ok := imageMessage(s.Message)
		switch {
		case !ok:
			bad("--image: images are registered for %s only, not %s", imageMessageNames(), s.Message)
		case img.Type == PreImage && !rule.pre:
			bad("--image pre: a %s has no record before it; use --image post", rule.name)
		case img.Type == PostImage && !rule.post:
			bad("--image post: a %s leaves no record after it; use --image pre", rule.name)
		}
	}
	p = append(p, s.checkEndpoint()...)
	if len(p) > 0 {
		return &SpecError{Problems: p}
	}
	return nil
}

func (s Spec) checkEndpoint() []string {
	var p []string
	bad := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	u, err := url.Parse(s.FunctionURL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return []string{fmt.Sprintf("--function-url %q: give the intake's full URL, e.g. https://<app>.azurewebsites.net/api/dataverse/webhook", RedactURL(s.FunctionURL))}
	}
	if port := u.Port(); port != "" && port != "443" && port != "80" {
		bad("--function-url: port %s: Dataverse posts only to ports 443 and 80", port)
	}
	if u.User != nil || u.Fragment != "" {
		bad("--function-url: leave out user information and #fragment")
	}
	if u.Scheme == "http" {
		bad("--function-url: use https; Dataverse would send the secret in clear text")
	}
	code := u.Query().Get("code")
	switch s.Auth {
	case AuthHeader:
		if s.Secret == "" {
			bad("--auth header: DVRELAY_WEBHOOK_SECRET is not set; set it to the secret the intake checks, or use --auth webhookkey")
		}
		if !headerName.MatchString(s.SecretHeader) {
			bad("--auth header: DVRELAY_WEBHOOK_SECRET_HEADER %q is not a header name", s.SecretHeader)
		}
		if s.FunctionKey != "" && code != "" && s.FunctionKey != code {
			bad("--function-key and the ?code= of --function-url differ; give one")
		}
		if strings.EqualFold(s.SecretHeader, FunctionKeyHeader) {
			bad("--auth header: DVRELAY_WEBHOOK_SECRET_HEADER %q is the header the Functions host reads the function key from; choose another name", s.SecretHeader)
		}
	case AuthWebhookKey:
		switch {
		case s.FunctionKey == "" && code == "":
			bad("--auth webhookkey: no function key: pass --function-key (az functionapp function keys list … prints it)")
		case s.FunctionKey != "" && code != "" && s.FunctionKey != code:
			bad("--function-key and the ?code= of --function-url differ; give one")
		}
	default:
		bad("--auth %q: say header or webhookkey", string(s.Auth))
	}
	return p
}

// endpointURL is the url the serviceendpoint gets: the intake without its code parameter.
// A WebhookKey endpoint has Dataverse append ?code=<key> itself; a HttpHeader endpoint sends
// the key as x-functions-key. Either way the key stays out of the readable url column.
func (s Spec) endpointURL() string {
	return withoutCode(s.FunctionURL)
}

func withoutCode(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || !u.Query().Has("code") {
		return raw
	}
	q := u.Query()
	q.Del("code")
	u.RawQuery = q.Encode()
	return u.String()
}

func (s Spec) authType() int {
	if s.Auth == AuthWebhookKey {
		return authTypeWebhookKey
	}
	return authTypeHTTPHeader
}

// functionKey is the key given by --function-key or as the ?code= of --function-url.
func (s Spec) functionKey() string {
	if s.FunctionKey != "" {
		return s.FunctionKey
	}
	return codeOf(s.FunctionURL)
}

// authValue is what serviceendpoint.authvalue gets: the key itself for WebhookKey; for
// HttpHeader the settings list of headers Dataverse sends, the secret and, when there is one,
// the function key: <settings><setting name="…" value="…" /></settings>.
func (s Spec) authValue() string {
	if s.Auth == AuthWebhookKey {
		return s.functionKey()
	}
	var b strings.Builder
	b.WriteString("<settings>")
	setting := func(name, value string) {
		b.WriteString(`<setting name="`)
		_ = xml.EscapeText(&b, []byte(name))
		b.WriteString(`" value="`)
		_ = xml.EscapeText(&b, []byte(value))
		b.WriteString(`" />`)
	}
	setting(s.SecretHeader, s.Secret)
	if key := s.functionKey(); key != "" {
		setting(FunctionKeyHeader, key)
	}
	b.WriteString("</settings>")
	return b.String()
}

// secrets are the values no report or error may show.
func (s Spec) secrets() []string {
	var out []string
	for _, v := range []string{s.Secret, s.FunctionKey, codeOf(s.FunctionURL)} {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

func codeOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Query().Get("code")
}

// RedactURL is a URL as it may be printed (oneline.URL): the function key in ?code= and every
// other query value hidden.
func RedactURL(raw string) string { return oneline.URL(raw) }

// Redacted stands in for a secret in everything printed.
const Redacted = "<redacted>"

// normalizeColumns lower-cases, de-duplicates and sorts a column list, so the order a person
// typed does not count as a change.
func normalizeColumns(cols []string) []string {
	out := make([]string, 0, len(cols))
	for _, c := range cols {
		out = append(out, strings.ToLower(strings.TrimSpace(c)))
	}
	slices.Sort(out)
	return slices.Compact(out)
}
