package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/dvrelay/dvrelay/internal/config"
	"github.com/dvrelay/dvrelay/internal/dataverse"
	"github.com/dvrelay/dvrelay/internal/ops/registration"
)

// operatorDeps are what the registration commands take from the machine they run on; tests
// swap them for doubles.
type operatorDeps struct {
	credential func(dataverse.OperatorIdentity) (azcore.TokenCredential, error)
	httpClient *http.Client // nil: the Web API client's default
	sleep      func(context.Context, time.Duration) error
	// interactive is true when a person can answer a device code prompt.
	interactive bool
}

func machineDeps() operatorDeps {
	fi, err := os.Stdin.Stat()
	return operatorDeps{
		credential:  dataverse.NewOperatorCredential,
		interactive: err == nil && fi.Mode()&os.ModeCharDevice != 0,
	}
}

func runRegister(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	return registerCommand(ctx, args, lookup, stdout, stderr, machineDeps())
}

func runUnregister(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	return unregisterCommand(ctx, args, lookup, stdout, stderr, machineDeps())
}

func runRegistrations(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	return registrationsCommand(ctx, args, lookup, stdout, stderr, machineDeps())
}

// operatorFlags are the flags every registration command shares.
type operatorFlags struct {
	dataverseURL    *string
	managedIdentity *bool
}

func addOperatorFlags(fs *flag.FlagSet) operatorFlags {
	return operatorFlags{
		dataverseURL:    fs.String("dataverse-url", "", "environment URL, https://<org>.crm.dynamics.com (default $DATAVERSE_URL)"),
		managedIdentity: fs.Bool("managed-identity", false, "sign in with this machine's managed identity (AZURE_CLIENT_ID names a user-assigned one); automatic where IDENTITY_ENDPOINT is set"),
	}
}

// parseFlags parses args; a non-negative code means stop with it.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) int {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "handler %s: unexpected argument %q (flags only; see 'handler %s -h')\n", fs.Name(), fs.Arg(0), fs.Name())
		return 2
	}
	return -1
}

// webAPI signs in and builds the Web API client. Errors are configuration problems (exit 2).
func (d operatorDeps) webAPI(cfg config.Config, of operatorFlags, stderr io.Writer) (*dataverse.Client, error) {
	envURL := cfg.DataverseURL // checked by config.Load
	if *of.dataverseURL != "" {
		root, err := config.CheckDataverseURL(*of.dataverseURL)
		if err != nil {
			return nil, fmt.Errorf("--dataverse-url: %w", err)
		}
		envURL = root
	}
	if envURL == "" {
		return nil, errors.New("--dataverse-url is required (e.g. https://contoso.crm.dynamics.com), or set DATAVERSE_URL")
	}
	cred, err := d.credential(operatorIdentity(cfg, *of.managedIdentity, d.interactive, stderr))
	if err != nil {
		return nil, fmt.Errorf("sign-in: %w", err)
	}
	client, err := dataverse.NewClient(envURL, signIn{cred}, &dataverse.Options{HTTPClient: d.httpClient})
	if err != nil {
		return nil, fmt.Errorf("dataverse client: %w", err)
	}
	return client, nil
}

// retry is how an operator command waits when Dataverse limits requests: as long as it asks,
// saying so on stderr.
func (d operatorDeps) retry(cmd string, stderr io.Writer) dataverse.Retry {
	return dataverse.Retry{
		Sleep: d.sleep,
		OnWait: func(wait time.Duration, cause error) {
			if dvErr := (*dataverse.Error)(nil); errors.As(cause, &dvErr) && dvErr.Status == http.StatusTooManyRequests {
				fmt.Fprintf(stderr, "handler %s: Dataverse is limiting requests (%v); waiting %s as it asked\n", cmd, cause, wait)
				return
			}
			fmt.Fprintf(stderr, "handler %s: %v; trying again in %s\n", cmd, cause, wait)
		},
	}
}

// registrar signs in and builds the registration client. Errors are configuration problems (exit 2).
func (d operatorDeps) registrar(cmd string, cfg config.Config, of operatorFlags, stderr io.Writer) (*registration.Registrar, error) {
	client, err := d.webAPI(cfg, of, stderr)
	if err != nil {
		return nil, err
	}
	retry := d.retry(cmd, stderr)
	return registration.New(client, registration.Options{Sleep: retry.Sleep, OnWait: retry.OnWait}), nil
}

// operatorIdentity gathers who the operator signs in as, from the same settings the worker's
// credential uses.
func operatorIdentity(cfg config.Config, managedIdentity, interactive bool, stderr io.Writer) dataverse.OperatorIdentity {
	id := dataverse.OperatorIdentity{
		TenantID:        cfg.AzureTenantID,
		ClientID:        cfg.AzureClientID,
		ClientSecret:    cfg.AzureClientSecret,
		ManagedIdentity: managedIdentity || cfg.IdentityEndpoint != "",
	}
	if interactive {
		id.DeviceCodePrompt = func(_ context.Context, m azidentity.DeviceCodeMessage) error {
			fmt.Fprintln(stderr, m.Message)
			return nil
		}
	}
	return id
}

// signIn marks a failed token request so the error line can say how to sign in.
type signIn struct{ azcore.TokenCredential }

type signInError struct{ err error }

func (e *signInError) Error() string { return e.err.Error() }
func (e *signInError) Unwrap() error { return e.err }

func (s signIn) GetToken(ctx context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	tok, err := s.TokenCredential.GetToken(ctx, o)
	if err != nil {
		return tok, &signInError{err}
	}
	return tok, nil
}

// webAPIFailure is the error line for a failed Web API run, with what to do about it. Dataverse's
// own message is shown: it names the missing privilege or the bad value.
func webAPIFailure(cmd string, err error) string {
	var b strings.Builder
	fmt.Fprintf(&b, "handler %s: %v\n", cmd, err)
	var sie *signInError
	var dvErr *dataverse.Error
	switch {
	case errors.As(err, &sie):
		b.WriteString("  sign in with 'az login' ('az login --tenant <tenant id>' for another tenant), or set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET for an app registration that has an application user in the environment\n")
	case errors.As(err, &dvErr):
		if dvErr.Message != "" {
			fmt.Fprintf(&b, "  Dataverse says: %s\n", dvErr.Message)
		}
		switch dvErr.Status {
		case http.StatusUnauthorized:
			b.WriteString("  the token was refused: sign in to the tenant this environment belongs to, with an identity that has a user (or application user) in it\n")
		case http.StatusForbidden:
			b.WriteString("  the signed-in identity lacks a privilege: give its user or application user the System Administrator (or System Customizer) security role in this environment\n")
		}
	}
	return b.String()
}

// imageFlag collects --image, which may be given once for pre and once for post.
type imageFlag []registration.Image

func (f *imageFlag) String() string { return "" }

func (f *imageFlag) Set(v string) error {
	img, err := registration.ParseImage(v)
	if err != nil {
		return err
	}
	*f = append(*f, img)
	return nil
}

// registerCommand is `handler register`: create or update the webhook, its step and images.
func registerCommand(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer, deps operatorDeps) int {
	fs := flag.NewFlagSet("register", flag.ContinueOnError)
	fs.SetOutput(stderr)
	of := addOperatorFlags(fs)
	functionURL := fs.String("function-url", "", "the intake URL, https://<app>.azurewebsites.net/api/dataverse/webhook (required); a ?code=<function key> on it is read as --function-key")
	entity := fs.String("entity", "", "table logical name, e.g. opportunity (required)")
	message := fs.String("message", "", "message, e.g. Create, Update, Delete (required)")
	attributes := fs.String("attributes", "", "Update only: comma-separated columns whose change fires the step, e.g. estimatedvalue,statuscode")
	var images imageFlag
	fs.Var(&images, "image", "entity image: pre or post, optionally with columns (pre:name,estimatedvalue); once per kind")
	auth := fs.String("auth", "", "header (DVRELAY_WEBHOOK_SECRET in DVRELAY_WEBHOOK_SECRET_HEADER, the function key as x-functions-key) or webhookkey (the function key as ?code=); default header when DVRELAY_WEBHOOK_SECRET is set")
	functionKey := fs.String("function-key", "", "the function key; sent in the write-only authvalue (as x-functions-key with --auth header), never in the endpoint's readable url")
	name := fs.String("name", "dvrelay", "webhook endpoint name; the step is named '<name>: <message> of <entity>'")
	rank := fs.Int("rank", 1, "step execution order among steps on the same message")
	solution := fs.String("solution", "", "unique name of an unmanaged solution the created records go into (MSCRM.SolutionUniqueName), for solution-based ALM")
	prune := fs.Bool("prune", false, "remove what the registration has and this run does not mention (an --image not given; filtering attributes when --attributes is not given); without it they are kept")
	rotate := fs.Bool("rotate-secret", false, "write the secret or key to an existing endpoint (Dataverse never returns it, so a rerun cannot compare it)")
	dryRun := fs.Bool("dry-run", false, "print what would be created or changed, and change nothing")
	if code := parseFlags(fs, args, stderr); code >= 0 {
		return code
	}
	var missing []string
	for _, f := range []struct{ name, value string }{{"--function-url", *functionURL}, {"--entity", *entity}, {"--message", *message}} {
		if strings.TrimSpace(f.value) == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		fmt.Fprintf(stderr, "handler register: %s required, e.g. --function-url https://<app>.azurewebsites.net/api/dataverse/webhook --entity opportunity --message Update\n", strings.Join(missing, ", "))
		return 2
	}

	cfg, err := config.Load(lookup)
	if err != nil {
		fmt.Fprintf(stderr, "handler register: configuration:\n%v\n", err)
		return 2
	}
	spec := registration.Spec{
		Name: strings.TrimSpace(*name), FunctionURL: strings.TrimSpace(*functionURL),
		Entity: strings.TrimSpace(*entity), Message: strings.TrimSpace(*message),
		Attributes: registration.SplitColumns(*attributes), Images: images, Rank: *rank,
		Auth: registration.Auth(strings.ToLower(*auth)), SecretHeader: cfg.SecretHeader,
		FunctionKey: strings.TrimSpace(*functionKey), RotateSecret: *rotate,
		Solution: strings.TrimSpace(*solution), Prune: *prune,
	}
	if len(cfg.WebhookSecrets) > 0 {
		spec.Secret = cfg.WebhookSecrets[0] // the first is the one in use; others are being rotated out
	}
	if spec.Auth == "" {
		// With a secret the intake checks it on every post, so Dataverse must send it: header
		// auth, the function key (if any) beside it. Without one, the function key is the auth.
		spec.Auth = registration.AuthWebhookKey
		if spec.Secret != "" {
			spec.Auth = registration.AuthHeader
		}
	}
	if err := spec.Check(); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(stderr, "handler register: %s\n", line)
		}
		return 2
	}
	if spec.Auth == registration.AuthHeader && spec.FunctionKey == "" && !strings.Contains(spec.FunctionURL, "code=") {
		fmt.Fprintln(stderr, "handler register: note: no --function-key; a Function App answers 401 without it (handler serve needs none), unless an existing registration has one")
	}

	reg, err := deps.registrar("register", cfg, of, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "handler register: %v\n", err)
		return 2
	}
	changes, err := reg.Register(ctx, spec, *dryRun)
	for _, c := range changes {
		fmt.Fprintln(stdout, c)
		if c.EntitySet == "sdkmessageprocessingsteps" && strings.EqualFold(spec.Message, "Update") && len(spec.Attributes) == 0 &&
			(c.Action == registration.Create || spec.Prune) {
			fmt.Fprintf(stderr, "handler register: note: no --attributes, so the step fires on every update of %s, the worker's own write-backs included; list the columns it should react to\n", spec.Entity)
		}
	}
	if err != nil {
		var se *registration.SpecError
		if errors.As(err, &se) {
			fmt.Fprintf(stderr, "handler register: %v\n", err)
			return 2
		}
		fmt.Fprint(stderr, webAPIFailure("register", err))
		return 1
	}
	if *dryRun {
		fmt.Fprintln(stdout, "dry run: nothing was changed")
	}
	return 0
}

// unregisterCommand is `handler unregister`: remove the endpoint, its steps and images.
func unregisterCommand(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer, deps operatorDeps) int {
	fs := flag.NewFlagSet("unregister", flag.ContinueOnError)
	fs.SetOutput(stderr)
	of := addOperatorFlags(fs)
	name := fs.String("name", "", "the webhook endpoint name given to register ('dvrelay' unless one was chosen) (required)")
	dryRun := fs.Bool("dry-run", false, "print what would be deleted, and delete nothing")
	if code := parseFlags(fs, args, stderr); code >= 0 {
		return code
	}
	if strings.TrimSpace(*name) == "" {
		fmt.Fprintln(stderr, "handler unregister: --name is required: the endpoint name given to register ('dvrelay' unless you chose one); 'handler registrations --function-url …' lists them")
		return 2
	}
	cfg, err := config.Load(lookup)
	if err != nil {
		fmt.Fprintf(stderr, "handler unregister: configuration:\n%v\n", err)
		return 2
	}
	reg, err := deps.registrar("unregister", cfg, of, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "handler unregister: %v\n", err)
		return 2
	}
	changes, err := reg.Unregister(ctx, strings.TrimSpace(*name), *dryRun)
	for _, c := range changes {
		fmt.Fprintln(stdout, c)
	}
	if err != nil {
		fmt.Fprint(stderr, webAPIFailure("unregister", err))
		return 1
	}
	switch {
	case len(changes) == 0:
		fmt.Fprintf(stdout, "no webhook endpoint named %q: nothing to remove\n", *name)
	case *dryRun:
		fmt.Fprintln(stdout, "dry run: nothing was changed")
	}
	return 0
}

// registrationsCommand is `handler registrations`: the steps that post to an intake URL.
func registrationsCommand(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer, deps operatorDeps) int {
	fs := flag.NewFlagSet("registrations", flag.ContinueOnError)
	fs.SetOutput(stderr)
	of := addOperatorFlags(fs)
	functionURL := fs.String("function-url", "", "the intake URL the steps post to (required; its ?code= is ignored)")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if code := parseFlags(fs, args, stderr); code >= 0 {
		return code
	}
	if strings.TrimSpace(*functionURL) == "" {
		fmt.Fprintln(stderr, "handler registrations: --function-url is required, e.g. https://<app>.azurewebsites.net/api/dataverse/webhook")
		return 2
	}
	cfg, err := config.Load(lookup)
	if err != nil {
		fmt.Fprintf(stderr, "handler registrations: configuration:\n%v\n", err)
		return 2
	}
	reg, err := deps.registrar("registrations", cfg, of, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "handler registrations: %v\n", err)
		return 2
	}
	regs, err := reg.List(ctx, strings.TrimSpace(*functionURL))
	if err != nil {
		var se *registration.SpecError
		if errors.As(err, &se) {
			fmt.Fprintf(stderr, "handler registrations: %v\n", err)
			return 2
		}
		fmt.Fprint(stderr, webAPIFailure("registrations", err))
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		_ = enc.Encode(regs)
		return 0
	}
	if len(regs) == 0 {
		fmt.Fprintf(stdout, "no webhook endpoint posts to %s\n", registration.RedactURL(*functionURL))
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENDPOINT\tAUTH\tSTEP\tMESSAGE\tTABLE\tSTAGE/MODE\tFILTERING ATTRIBUTES\tIMAGES\tSTATE")
	for _, r := range regs {
		if r.Step == "" {
			fmt.Fprintf(tw, "%s\t%s\t(no steps)\t\t\t\t\t\t\n", r.Endpoint, r.Auth)
			continue
		}
		state, mode := "enabled", "async"
		if !r.Enabled {
			state = "disabled"
		}
		if r.Mode == 0 {
			mode = "sync"
		}
		filtering := r.FilteringAttributes
		if filtering == "" {
			filtering = "(every column)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d/%s\t%s\t%s\t%s\n", r.Endpoint, r.Auth, r.Step, r.Message, r.Entity,
			r.Stage, mode, filtering, strings.Join(r.Images, "; "), state)
	}
	_ = tw.Flush()
	return 0
}
