package ui

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// SessionTx is what the dashboard needs of a store transaction: its
// sessions, each found by the SHA-256 of the random token its cookie
// holds. store/sqlite and store/postgres implement it (store/storetest's
// sessions section proves them); the wiring hands New a
// latchkey.Narrow[ui.SessionTx] of the node's store. The methods take and
// return plain values, so a backend implements it without importing ui.
type SessionTx interface {
	// CreateSession stores a session of tenant's key keyID. Errors:
	// EConflict (the hash exists).
	CreateSession(hash [32]byte, tenant, keyID string, idleUntil, expiresAt time.Time) error
	// Session reads a session, expired or not. Errors: ENotFound.
	Session(hash [32]byte) (tenant, keyID string, idleUntil, expiresAt time.Time, err error)
	// TouchSession moves a session's idle end. Errors: ENotFound.
	TouchSession(hash [32]byte, idleUntil time.Time) error
	// DeleteSession removes a session; a missing one is not an error.
	DeleteSession(hash [32]byte) error
	// DeleteExpiredSessions removes the sessions whose idle or absolute
	// end is at or before now, and says how many.
	DeleteExpiredSessions(now time.Time) (int, error)
}

// SessionStore is the store of the dashboard's sessions: the database
// every node shares, so a session made on one node works on the others
// behind a load balancer.
type SessionStore = latchkey.Store[SessionTx]

// cookieName is the session cookie's name.
const cookieName = "latchkey_ui"

// session is a signed-in browser as one request sees it.
type session struct {
	hash  [32]byte
	csrf  string // the token every form of the session carries
	actor *latchkey.Actor
	// admin: the key holds keys:read (the dashboard); portal: it holds
	// self:manage (its owner's keys), owner is that owner.
	admin, portal bool
	owner         string
}

// newToken returns a fresh session token: 32 random bytes, base64url.
func newToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", latchkey.Errorf(latchkey.EUnavailable, "no randomness for a session")
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// tokenHash is what the store keeps of a token.
func tokenHash(token string) [32]byte { return sha256.Sum256([]byte(token)) }

// csrfToken is the session's CSRF token, derived from its secret token
// (an HMAC under it), so it needs no storage and is the same on every
// node; a page that shows it does not reveal the cookie.
func csrfToken(token string) string {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("latchkey ui csrf v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// setCookie writes the session cookie: HttpOnly, SameSite=Strict, Secure
// when the request came over TLS, limited to /ui/. It is a session cookie
// (no Max-Age): the store holds the expiry.
func setCookie(w http.ResponseWriter, r *http.Request, token string) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: token, Path: "/ui/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
}

// clearCookie tells the browser to drop the session cookie.
func clearCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/ui/", MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
}

// startSession stores a new session of actor's key and returns its token.
// Expired sessions are swept first: sign-ins are rare, so this keeps the
// table small without a background job on every node.
func (h *Handler) startSession(ctx context.Context, a *latchkey.Actor) (string, error) {
	token, err := newToken()
	if err != nil {
		return "", err
	}
	now := h.now()
	exp := now.Add(h.maxAge)
	idle := earlier(now.Add(h.idle), exp)
	err = h.sessions.Update(ctx, func(tx SessionTx) error {
		if _, err := tx.DeleteExpiredSessions(now); err != nil {
			return err
		}
		return tx.CreateSession(tokenHash(token), a.Tenant, a.KeyID, idle, exp)
	})
	if err != nil {
		return "", err
	}
	return token, nil
}

// errNoSession is the answer to a request without a live session.
var errNoSession = latchkey.Errorf(latchkey.EUnauthenticated, "sign in first")

// loadSession finds the request's session and rebuilds its actor from the
// key (keys.Service.ActorOf), so a key revoked or suspended since sign-in
// ends the session here. A session found expired, or whose key no longer
// works, is deleted. It moves the idle end on at most once a minute, so a
// busy page costs one write a minute, not one per view. Errors:
// EUnauthenticated (no session: sign in), EForbidden, EUnavailable.
func (h *Handler) loadSession(r *http.Request) (*session, error) {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" || len(c.Value) > 100 {
		return nil, errNoSession
	}
	hash := tokenHash(c.Value)
	ctx := r.Context()
	var tenant, keyID string
	var idle, exp time.Time
	err = h.sessions.View(ctx, func(tx SessionTx) (err error) {
		tenant, keyID, idle, exp, err = tx.Session(hash)
		return err
	})
	if latchkey.ErrorCode(err) == latchkey.ENotFound {
		return nil, errNoSession
	}
	if err != nil {
		return nil, err
	}
	now := h.now()
	if !now.Before(idle) || !now.Before(exp) {
		h.endSession(ctx, hash)
		return nil, errNoSession
	}
	ip := h.clientIP(r)
	a, err := h.keys.ActorOf(ctx, tenant, keyID, ip)
	if err != nil {
		if code := latchkey.ErrorCode(err); code == latchkey.EUnauthenticated || code == latchkey.EForbidden {
			h.endSession(ctx, hash)
			return nil, errNoSession
		}
		return nil, err
	}
	a.UserAgent = r.UserAgent()
	if next := earlier(now.Add(h.idle), exp); next.Sub(idle) >= time.Minute {
		err := h.sessions.Update(ctx, func(tx SessionTx) error { return tx.TouchSession(hash, next) })
		if err != nil && latchkey.ErrorCode(err) != latchkey.ENotFound {
			h.log.Warn("ui: touch session", "err", err)
		}
	}
	s := &session{hash: hash, csrf: csrfToken(c.Value), actor: a}
	s.admin = latchkey.ScopesAllow(a.Scopes, scopeAdmin)
	s.portal = latchkey.ScopesAllow(a.Scopes, scopePortal)
	if s.portal {
		s.owner = h.ownerOf(ctx, a)
		s.portal = s.owner != ""
	}
	return s, nil
}

// endSession deletes a session, logging (not returning) a failure: the
// caller is already answering that there is no session.
func (h *Handler) endSession(ctx context.Context, hash [32]byte) {
	if err := h.sessions.Update(ctx, func(tx SessionTx) error { return tx.DeleteSession(hash) }); err != nil {
		h.log.Warn("ui: delete session", "err", err)
	}
}

// csrfOK reports whether the form's token is the session's.
func csrfOK(s *session, r *http.Request) bool {
	got := r.PostFormValue("csrf")
	return got != "" && hmac.Equal([]byte(got), []byte(s.csrf))
}

// earlier is the earlier of two times.
func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
