package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
)

// admin authenticates the request's key, requires scope, and runs h with
// the actor; h's error becomes the response. The key is checked as verify
// checks it, limits included (keys.Service.Authenticate); its concurrency
// slot, if it has a limit on concurrency, is held until h returns.
func (s *Server) admin(scope string, h func(http.ResponseWriter, *http.Request, *latchkey.Actor) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip := s.clientIP(r)
		if retry, blocked := s.blocked(ip); blocked && !s.ownerKey(r.Context(), credential(r), ip) {
			s.writeError(w, r, errGuarded(w, retry))
			return
		}
		a, err := s.svc.Authenticate(r.Context(), credential(r), ip, scope)
		if latchkey.ErrorCode(err) == latchkey.EUnauthenticated {
			s.failed(ip)
		}
		if err == nil {
			defer s.svc.Done(a)
			if info, ok := r.Context().Value(requestInfoKey).(*requestInfo); ok {
				info.actor = a.KeyID
			}
			a.UserAgent = r.UserAgent()
			setLimitHeaders(w.Header(), a.Admission, s.now())
			err = h(w, r, a)
		}
		if err != nil {
			s.writeError(w, r, err)
		}
	})
}

// keyView is a key as the API shows it: with the state it has now.
func (s *Server) keyView(k *latchkey.Key) latchkey.Key {
	v := *k
	v.State = k.StateAt(s.now())
	return v
}

type keyWithSecret struct {
	latchkey.Key
	Plaintext string `json:"key"`
}

func (s *Server) createKey(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	return s.issueKey(w, r, func(p keys.CreateParams) (*latchkey.Key, latchkey.Token, error) {
		return s.svc.CreateKey(r.Context(), a, p)
	})
}

func (s *Server) deriveKey(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	return s.issueKey(w, r, func(p keys.CreateParams) (*latchkey.Key, latchkey.Token, error) {
		return s.svc.DeriveKey(r.Context(), a, r.PathValue("id"), p)
	})
}

// issueKey reads a key's settings, has issue mint it, and answers 201 with
// the plaintext, the only time it is shown.
func (s *Server) issueKey(w http.ResponseWriter, r *http.Request, issue func(keys.CreateParams) (*latchkey.Key, latchkey.Token, error)) error {
	body, err := readBody(w, r, s.maxBody)
	if err != nil {
		return err
	}
	p, err := decodeCreateKey(body)
	if err != nil {
		return err
	}
	k, tok, err := issue(p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, keyWithSecret{Key: s.keyView(k), Plaintext: tok.Reveal()})
	return nil
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	q := r.URL.Query()
	limit, err := queryLimit(q.Get("limit"))
	if err != nil {
		return err
	}
	ks, next, err := s.svc.ListKeys(r.Context(), a, keys.ListParams{
		Owner: q.Get("owner"), Environment: q.Get("environment"), Name: q.Get("name"),
		ParentID: q.Get("parent_id"), State: latchkey.State(q.Get("state")), Resource: q.Get("resource"),
		Cursor: q.Get("cursor"), Limit: limit,
	})
	if err != nil {
		return err
	}
	out := make([]latchkey.Key, len(ks))
	for i, k := range ks {
		out[i] = s.keyView(k)
	}
	writeJSON(w, http.StatusOK, struct {
		Keys       []latchkey.Key `json:"keys"`
		NextCursor string         `json:"next_cursor"`
	}{out, next})
	return nil
}

func queryLimit(v string) (int, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > latchkey.MaxListLimit {
		return 0, latchkey.Errorf(latchkey.EInvalid, "limit must be a whole number from 1 to %d", latchkey.MaxListLimit)
	}
	return n, nil
}

// keyWithQuota is the answer of GET /v1/keys/{id}: the key object and its
// quota as the next verification would find it.
type keyWithQuota struct {
	latchkey.Key
	QuotaUsage *Limit `json:"quota_usage,omitempty"`
}

func (s *Server) getKey(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	k, err := s.svc.GetKey(r.Context(), a, r.PathValue("id"))
	if err != nil {
		return err
	}
	v := keyWithQuota{Key: s.keyView(k)}
	l, ok, err := s.svc.KeyQuota(r.Context(), k)
	if err != nil {
		return err
	}
	if ok {
		v.QuotaUsage = limitView(l)
		if v.QuotaUsage == nil {
			// A balance of 0: limitView leaves out a zero limit, which
			// here is the key's setting.
			v.QuotaUsage = &Limit{}
		}
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (s *Server) updateKey(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	body, err := readBody(w, r, s.maxBody)
	if err != nil {
		return err
	}
	p, err := decodeUpdateKey(body)
	if err != nil {
		return err
	}
	return s.keyResult(w, http.StatusOK)(s.svc.UpdateKey(r.Context(), a, r.PathValue("id"), p))
}

func (s *Server) rotateKey(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	body, err := readBody(w, r, s.maxBody)
	if err != nil {
		return err
	}
	p, err := decodeRotate(body)
	if err != nil {
		return err
	}
	k, tok, err := s.svc.RotateKey(r.Context(), a, r.PathValue("id"), p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, keyWithSecret{Key: s.keyView(k), Plaintext: tok.Reveal()})
	return nil
}

func (s *Server) suspendKey(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	body, err := readBody(w, r, s.maxBody)
	if err != nil {
		return err
	}
	b, err := decodeSuspend(body)
	if err != nil {
		return err
	}
	return s.keyResult(w, http.StatusOK)(s.svc.SuspendKey(r.Context(), a, r.PathValue("id"), time.Duration(b.Duration), b.Reason))
}

func (s *Server) resumeKey(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	if err := s.readEmptyBody(w, r); err != nil {
		return err
	}
	return s.keyResult(w, http.StatusOK)(s.svc.ResumeKey(r.Context(), a, r.PathValue("id")))
}

func (s *Server) revokeKey(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	body, err := readBody(w, r, s.maxBody)
	if err != nil {
		return err
	}
	reason, err := decodeRevoke(body)
	if err != nil {
		return err
	}
	return s.keyResult(w, http.StatusOK)(s.svc.RevokeKey(r.Context(), a, r.PathValue("id"), reason))
}

// readEmptyBody reads the body of a route that takes none: empty or {}.
// Errors: EInvalid, ETooLarge.
func (s *Server) readEmptyBody(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r, s.maxBody)
	if err != nil {
		return err
	}
	return decodeEmpty(body)
}

// keyResult writes a service call's key, or passes its error on.
func (s *Server) keyResult(w http.ResponseWriter, status int) func(*latchkey.Key, error) error {
	return func(k *latchkey.Key, err error) error {
		if err != nil {
			return err
		}
		writeJSON(w, status, s.keyView(k))
		return nil
	}
}

func (s *Server) createTenant(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	body, err := readBody(w, r, s.maxBody)
	if err != nil {
		return err
	}
	b, err := decodeCreateTenant(body)
	if err != nil {
		return err
	}
	t, k, tok, err := s.svc.CreateTenant(r.Context(), a, b.ID, b.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, struct {
		Tenant *latchkey.Tenant `json:"tenant"`
		KeyID  string           `json:"key_id"`
		Key    string           `json:"key"`
	}{t, k.ID, tok.Reveal()})
	return nil
}

func (s *Server) listTenants(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	q := r.URL.Query()
	limit, err := queryLimit(q.Get("limit"))
	if err != nil {
		return err
	}
	ts, next, err := s.svc.ListTenants(r.Context(), a, q.Get("cursor"), limit)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct {
		Tenants    []*latchkey.Tenant `json:"tenants"`
		NextCursor string             `json:"next_cursor"`
	}{ts, next})
	return nil
}

// releaseLease ends a concurrency lease; the key that holds it or an admin
// key of its tenant may. 204 on success.
func (s *Server) releaseLease(w http.ResponseWriter, r *http.Request) {
	if err := s.readEmptyBody(w, r); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.svc.ReleaseLease(r.Context(), credential(r), s.clientIP(r), r.PathValue("id")); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// health answers the seed services' health contract.
func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "healthy"})
}

// healthz says the process is alive; it checks nothing else.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz says whether the store answers, for load balancers.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.svc.Ping(ctx); err != nil {
		// A lost database was logged once when the store noticed it; a
		// load balancer's every probe need not repeat it.
		if !errors.Is(err, latchkey.ErrStoreLost) {
			s.log.WarnContext(ctx, "store not ready", "request_id", requestID(ctx), "err", err)
		}
		// The store's own reason (a lost database file, say) when it gave
		// one; its messages name no path or secret.
		msg := "the store does not answer"
		if latchkey.ErrorCode(err) == latchkey.EUnavailable {
			msg = latchkey.ErrorMessage(err)
		}
		s.writeError(w, r, latchkey.Errorf(latchkey.EUnavailable, "%s", msg))
		return
	}
	// A tampered audit log does not take the node out of service (keys
	// still verify, revocations still take effect): it is degraded, and
	// says why without naming tenants (this route is unauthenticated).
	if t := s.auditTampered(); len(t) > 0 {
		writeJSON(w, http.StatusOK, map[string]any{"status": "degraded", "reasons": []map[string]string{{
			"code":    latchkey.AnomalyAuditTampered,
			"message": fmt.Sprintf("the audit log of %d tenant(s) was changed outside Latchkey: see their security events and latchkey audit verify", len(t)),
		}}})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// keyPath serves a /v1/keys/{id}… route only when {id} is meant as a key
// id ("key_…"): GET /v1/keys/export is a route that does not exist, not a
// key that does not, and says so.
func (s *Server) keyPath(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.PathValue("id"), "key_") {
			s.noRoute(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (s *Server) noRoute(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, r, latchkey.Errorf(latchkey.ENotFound, "no such route %s %.100s", r.Method, logPath(r.URL.Path)))
}

// auditTampered is what the audit service found tampered with; none
// without one.
func (s *Server) auditTampered() map[string]latchkey.AuditFinding {
	if s.audit == nil {
		return nil
	}
	return s.audit.AuditTampered()
}
