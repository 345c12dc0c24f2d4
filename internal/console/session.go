package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"sync"
	"time"
)

// cookieName is the session cookie. It carries a random token and nothing else; what the
// session may do is kept here, in memory, so a stolen page holds no secret.
const cookieName = "dvrelay_console"

// Session bounds: a support shift, and how many sessions one process keeps before it drops the
// oldest (each sign-in page visit makes one).
const (
	sessionTTL  = 8 * time.Hour
	maxSessions = 10_000
)

// session is one browser's visit: signed in or not, with the CSRF token its forms carry and a
// message to show on the next page.
type session struct {
	token    string
	csrf     string
	signedIn bool
	expires  time.Time
	flash    string
}

type sessions struct {
	mu  sync.Mutex
	all map[string]*session
	now func() time.Time
}

func newSessions(now func() time.Time) *sessions {
	return &sessions{all: map[string]*session{}, now: now}
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand panics rather than return an error)
	return base64.RawURLEncoding.EncodeToString(b)
}

// get is the live session the request's cookie names, or nil.
func (s *sessions) get(r *http.Request) *session {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.all[c.Value]
	if !ok {
		return nil
	}
	if s.now().After(ss.expires) {
		delete(s.all, c.Value)
		return nil
	}
	cp := *ss
	return &cp
}

// start makes a new session (signed in or not), sets its cookie on w and returns it. A sign-in
// always starts a new one, so a token seen before signing in is worth nothing after.
func (s *sessions) start(w http.ResponseWriter, r *http.Request, signedIn bool) *session {
	ss := &session{token: randomToken(), csrf: randomToken(), signedIn: signedIn, expires: s.now().Add(sessionTTL)}
	s.mu.Lock()
	if len(s.all) >= maxSessions {
		s.dropOldest()
	}
	s.all[ss.token] = ss
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: ss.token, Path: "/console/", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: r.TLS != nil, MaxAge: int(sessionTTL.Seconds()),
	})
	cp := *ss
	return &cp
}

func (s *sessions) dropOldest() {
	var oldest *session
	for _, ss := range s.all {
		if oldest == nil || ss.expires.Before(oldest.expires) {
			oldest = ss
		}
	}
	if oldest != nil {
		delete(s.all, oldest.token)
	}
}

// end forgets the session and clears its cookie.
func (s *sessions) end(w http.ResponseWriter, r *http.Request, token string) {
	s.mu.Lock()
	delete(s.all, token)
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/console/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil, MaxAge: -1})
}

// setFlash keeps msg for the session's next page.
func (s *sessions) setFlash(token, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss, ok := s.all[token]; ok {
		ss.flash = msg
	}
}

// takeFlash returns the session's message once.
func (s *sessions) takeFlash(token string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.all[token]
	if !ok {
		return ""
	}
	msg := ss.flash
	ss.flash = ""
	return msg
}

// validCSRF reports whether the form's token is the session's, in constant time.
func validCSRF(ss *session, r *http.Request) bool {
	got := r.PostFormValue("csrf")
	return ss != nil && got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(ss.csrf)) == 1
}
