// Package console is the support console: pages in the browser over the support operations
// (internal/support), served by `handler serve` at /console/ on an address of its own. Pages are
// rendered on the server with html/template, so every value that came from an event is escaped
// and they read without JavaScript; charts are SVG drawn here. Sign-in takes the support
// secret, the session lives in an HttpOnly SameSite=Strict cookie, every state-changing form
// carries a CSRF token, and the Content-Security-Policy allows no inline script.
package console

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/dvrelay/dvrelay/internal/platform/httpauth"
	"github.com/dvrelay/dvrelay/internal/support"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config is what the console shows and how it guards it.
type Config struct {
	Support *support.Service
	// Auth holds the support secret (the one the admin routes accept). Without a secret the
	// console opens with a button, which config allows on loopback only.
	Auth *httpauth.Authorizer
	// DataverseURL links a record to its form in Dataverse when set.
	DataverseURL string
	// Backend names the queue backend, for the notices of what it cannot show.
	Backend string
	Log     *slog.Logger
	Now     func() time.Time
}

// Server serves the console's pages.
type Server struct {
	cfg      Config
	pages    map[string]*template.Template
	sessions *sessions
}

// pageNames are the templates, each rendered inside layout.html.
var pageNames = []string{"overview", "deadletters", "preview", "event", "record", "signin", "message"}

// New parses the pages.
func New(cfg Config) (*Server, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Auth == nil {
		cfg.Auth = httpauth.New("")
	}
	s := &Server{cfg: cfg, pages: map[string]*template.Template{}, sessions: newSessions(cfg.Now)}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs(cfg.Now)).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: parse page %s: %w", name, err)
		}
		s.pages[name] = t
	}
	return s, nil
}

// Handler serves the console under /console/; / sends the browser there.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /console/static/", http.StripPrefix("/console/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /console/signin", s.signinPage)
	mux.HandleFunc("POST /console/signin", s.signin)
	mux.Handle("POST /console/signout", s.mutating(s.signout))
	mux.Handle("GET /console/{$}", s.signedIn(s.overview))
	mux.Handle("GET /console/deadletters", s.signedIn(s.deadLetters))
	mux.Handle("GET /console/deadletters/preview", s.signedIn(s.preview))
	mux.Handle("POST /console/deadletters/resubmit", s.mutating(s.resubmit))
	mux.Handle("POST /console/deadletters/purge", s.mutating(s.purge))
	mux.Handle("GET /console/event", s.signedIn(s.event))
	mux.Handle("GET /console/record", s.signedIn(s.record))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/console/", http.StatusSeeOther)
	})
	return secureHeaders(mux)
}

// contentSecurityPolicy allows the console's own files and nothing else: no inline script, no
// inline style, no frames, forms only to itself.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// pageHandler is a page for a signed-in session.
type pageHandler func(w http.ResponseWriter, r *http.Request, ss *session)

// signedIn serves next to a signed-in session and sends anyone else to sign in.
func (s *Server) signedIn(next pageHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ss := s.sessions.get(r)
		if ss == nil || !ss.signedIn {
			http.Redirect(w, r, "/console/signin", http.StatusSeeOther)
			return
		}
		next(w, r, ss)
	})
}

// mutating serves next only to a signed-in session whose form carries its CSRF token. Anything
// else is refused with 403 and changes nothing.
func (s *Server) mutating(next pageHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		ss := s.sessions.get(r)
		switch {
		case ss == nil || !ss.signedIn:
			s.refuse(w, r, "You are not signed in (or your session ended). Sign in again, then repeat what you were doing.")
		case !validCSRF(ss, r):
			s.refuse(w, r, "This form is not one the console gave you, or it is from an earlier session. Open the page again and repeat.")
		default:
			next(w, r, ss)
		}
	})
}

func (s *Server) refuse(w http.ResponseWriter, r *http.Request, why string) {
	s.cfg.Log.WarnContext(r.Context(), "console: refused a state-changing request", slog.String("path", r.URL.Path),
		slog.String("from", r.RemoteAddr))
	s.render(w, r, http.StatusForbidden, "message", nil, pageData{Title: "Refused", Nav: "signin", Message: why})
}

// pageData is what every page gets; Page holds the page's own data.
type pageData struct {
	Title   string
	Nav     string
	Query   string
	CSRF    string
	Flash   string
	Message string
	Backend string
	Page    any
}

// render writes page name; when rendering fails the status is 500 and nothing half-written goes out.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, ss *session, d pageData) {
	if ss != nil {
		d.CSRF = ss.csrf
		if ss.signedIn {
			d.Flash = s.sessions.takeFlash(ss.token)
		}
	}
	d.Backend = s.cfg.Backend
	var b bytes.Buffer
	if err := s.pages[name].ExecuteTemplate(&b, "layout.html", d); err != nil {
		s.cfg.Log.ErrorContext(r.Context(), "console: render", slog.String("page", name), slog.String("error", err.Error()))
		http.Error(w, "the page could not be rendered; the log says why", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// failed answers a page whose data could not be read.
func (s *Server) failed(w http.ResponseWriter, r *http.Request, ss *session, what string, err error) {
	s.cfg.Log.ErrorContext(r.Context(), "console: "+what, slog.String("error", err.Error()))
	status := http.StatusServiceUnavailable
	if errors.Is(err, context.Canceled) {
		status = http.StatusRequestTimeout
	}
	s.render(w, r, status, "message", ss, pageData{Title: "Unavailable",
		Message: "The queue could not be read just now (" + what + "). The handler's log says why; try again in a moment."})
}

func (s *Server) signinPage(w http.ResponseWriter, r *http.Request) {
	ss := s.sessions.get(r)
	if ss != nil && ss.signedIn {
		http.Redirect(w, r, "/console/", http.StatusSeeOther)
		return
	}
	if ss == nil {
		ss = s.sessions.start(w, r, false)
	}
	s.render(w, r, http.StatusOK, "signin", ss, pageData{Title: "Sign in", Nav: "signin", Page: signinData{Open: !s.cfg.Auth.Required()}})
}

type signinData struct {
	Open  bool // no secret is set
	Wrong bool
}

// signin checks the support secret with the same authorizer the admin routes use, and starts a
// new, signed-in session.
func (s *Server) signin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	ss := s.sessions.get(r)
	if ss == nil || !validCSRF(ss, r) {
		s.refuse(w, r, "This sign-in form has expired. Open the sign-in page again.")
		return
	}
	h := http.Header{}
	h.Set(s.cfg.Auth.Header(), r.PostFormValue("secret"))
	if !s.cfg.Auth.Allows(h) {
		s.cfg.Log.WarnContext(r.Context(), "console: sign-in refused", slog.String("from", r.RemoteAddr))
		time.Sleep(300 * time.Millisecond) // slows guessing; the secret is compared in constant time
		s.render(w, r, http.StatusUnauthorized, "signin", ss, pageData{Title: "Sign in", Nav: "signin",
			Page: signinData{Open: !s.cfg.Auth.Required(), Wrong: true}})
		return
	}
	s.sessions.end(w, r, ss.token)
	s.sessions.start(w, r, true)
	s.cfg.Log.InfoContext(r.Context(), "console: signed in", slog.String("from", r.RemoteAddr))
	http.Redirect(w, r, "/console/", http.StatusSeeOther)
}

func (s *Server) signout(w http.ResponseWriter, r *http.Request, ss *session) {
	s.sessions.end(w, r, ss.token)
	http.Redirect(w, r, "/console/signin", http.StatusSeeOther)
}

// origin is who asked, for the audit line.
func origin(r *http.Request) support.Origin {
	return support.Origin("console " + r.RemoteAddr)
}

func trimmed(r *http.Request, name string) string {
	return strings.TrimSpace(r.FormValue(name))
}
