package httpapi

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/secrets"
)

// secretBody is PUT /v1/secrets/{name}: a value, or a source reference
// with its refresh interval (a Go duration, "5m").
type secretBody struct {
	Value     *string           `json:"value"`
	Source    *string           `json:"source"`
	Refresh   *string           `json:"refresh"`
	ExpiresIn *int64            `json:"expires_in"`
	Meta      map[string]string `json:"meta"`
}

// decodePutSecret reads PUT /v1/secrets/{name}. Errors never show the
// value.
func decodePutSecret(data []byte) (secrets.SecretParams, error) {
	var b secretBody
	if err := decodeJSON(data, &b); err != nil {
		// A type error names the field and the JSON type, never the value
		// (jsonError quotes no input but a field name or unknown key).
		return secrets.SecretParams{}, err
	}
	var p secrets.SecretParams
	switch {
	case b.Value != nil && b.Source != nil:
		return secrets.SecretParams{}, latchkey.Errorf(latchkey.EInvalid, "give a value or a source, not both")
	case b.Source != nil:
		if *b.Source == "" {
			return secrets.SecretParams{}, latchkey.Errorf(latchkey.EInvalid, "source is empty")
		}
		p.Source = *b.Source
	case b.Value != nil:
		p.Value = *b.Value
	default:
		return secrets.SecretParams{}, latchkey.Errorf(latchkey.EInvalid, "value (or source) is missing")
	}
	if b.Refresh != nil {
		d, err := time.ParseDuration(*b.Refresh)
		if err != nil || d <= 0 {
			return secrets.SecretParams{}, latchkey.Errorf(latchkey.EInvalid, "refresh must be a duration such as \"30s\" or \"5m\"")
		}
		p.Refresh = d
	}
	p.ExpiresIn, p.Meta = b.ExpiresIn, b.Meta
	if err := p.Validate(); err != nil {
		// The caller gets nothing to log by mistake, the value least of all.
		return secrets.SecretParams{}, err
	}
	return p, nil
}

// parseSecretVersion reads ?version=N (absent: 0, the newest).
func parseSecretVersion(v string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 {
		return 0, latchkey.Errorf(latchkey.EInvalid, "version must be a whole number from 1")
	}
	return n, nil
}

func (s *Server) putSecret(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	body, err := readBody(w, r, s.maxBody)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	if err := latchkey.ValidateSecretName(name); err != nil {
		return err
	}
	p, err := decodePutSecret(body)
	clear(body)
	if err != nil {
		return err
	}
	sec, err := s.secrets.PutSecret(r.Context(), a, name, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, sec)
	return nil
}

func (s *Server) getSecret(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	v, err := parseSecretVersion(r.URL.Query().Get("version"))
	if err != nil {
		return err
	}
	sec, err := s.secrets.ReadSecret(r.Context(), a, r.PathValue("name"), v)
	if err != nil {
		return err
	}
	noStore(w)
	writeJSON(w, http.StatusOK, sec)
	return nil
}

func (s *Server) listSecrets(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	q := r.URL.Query()
	limit, err := queryLimit(q.Get("limit"))
	if err != nil {
		return err
	}
	list, next, err := s.secrets.ListSecrets(r.Context(), a, q.Get("cursor"), limit)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct {
		Secrets    []*latchkey.SecretInfo `json:"secrets"`
		NextCursor string                 `json:"next_cursor"`
	}{list, next})
	return nil
}

func (s *Server) secretVersions(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	vs, err := s.secrets.SecretVersions(r.Context(), a, r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct {
		Versions []*latchkey.Secret `json:"versions"`
	}{vs})
	return nil
}

func (s *Server) deleteSecret(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	if err := s.secrets.DeleteSecret(r.Context(), a, r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// noStore keeps answers holding secret values out of every cache on the
// way.
func noStore(w http.ResponseWriter) {
	w.Header()["Cache-Control"] = noStoreValue
}

var noStoreValue = []string{"no-store"}

// seed wraps the seed-contract routes (GET /keys/{provider}, GET
// /llm-keys): unless Config.SeedKeepAlive, they answer with Connection:
// close, errors included. fast-agent reuses one HTTP client across event
// loops, and a kept-alive connection from a finished loop breaks its next
// fetch (API.md).
func (s *Server) seed(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.seedKeepAlive {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
}

// seedKey answers GET /keys/{provider} with exactly {"api_key", "expires_in"}.
func (s *Server) seedKey(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	sec, err := s.secrets.ReadSecret(r.Context(), a, r.PathValue("provider"), 0)
	if err != nil {
		return err
	}
	noStore(w)
	writeJSON(w, http.StatusOK, struct {
		APIKey    string `json:"api_key"`
		ExpiresIn int64  `json:"expires_in"`
	}{sec.Value, sec.ExpiresIn})
	return nil
}

// seedKeys answers GET /llm-keys with {"<name>": "<value>", …} for every
// secret the key may read.
func (s *Server) seedKeys(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	secs, err := s.secrets.ReadSecrets(r.Context(), a)
	if err != nil {
		return err
	}
	m := make(map[string]string, len(secs))
	for _, sec := range secs {
		m[sec.Name] = sec.Value
	}
	noStore(w)
	writeJSON(w, http.StatusOK, m)
	return nil
}

// seedPath maps a seed route reached with a doubled leading slash
// ("//llm-keys", as mdcgen sends when its endpoint ends in '/') to the
// route itself, instead of ServeMux's redirect, which clients may not
// follow with their key. Other paths are returned unchanged.
func seedPath(p string) string {
	if len(p) < 2 || p[1] != '/' {
		return p
	}
	t := "/" + strings.TrimLeft(p, "/")
	if t == "/llm-keys" || strings.HasPrefix(t, "/keys/") {
		return t
	}
	return p
}
