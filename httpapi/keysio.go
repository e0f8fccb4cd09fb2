package httpapi

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
)

// exportKeys streams every key of the tenant as JSON lines (keys.ExportedKey:
// configuration and hash, never a plaintext), page by page.
func (s *Server) exportKeys(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	if err := s.readEmptyBody(w, r); err != nil {
		return err
	}
	rc := http.NewResponseController(w)
	var enc *json.Encoder
	err := s.svc.ExportKeys(r.Context(), a, func(k *latchkey.Key) error {
		if enc == nil {
			w.Header().Set("Content-Type", "application/x-ndjson")
			enc = json.NewEncoder(w)
			enc.SetEscapeHTML(false)
		}
		// A long export keeps its connection as long as it makes progress.
		_ = rc.SetWriteDeadline(time.Now().Add(s.timeout))
		return enc.Encode(keys.NewExportedKey(k))
	})
	switch {
	case err != nil && enc == nil:
		return err
	case err != nil:
		// Headers are out; the truncated stream is all we can say.
		s.log.ErrorContext(r.Context(), "key export failed midway", "request_id", requestID(r.Context()), "err", err)
	case enc == nil:
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
	}
	return nil
}

// decodeImportQuery reads an import's format and the settings of the keys
// it creates from the query string. Errors: EInvalid.
func decodeImportQuery(q url.Values) (keys.ImportParams, error) {
	p := keys.ImportParams{Format: q.Get("format")}
	if p.Format == "" {
		p.Format = keys.ImportPlain
	}
	var ok bool
	if p.Format, ok = keys.ImportFormat(p.Format); !ok {
		return p, latchkey.Errorf(latchkey.EInvalid, "format must be jsonl, plaintext, sha256 or env")
	}
	for name := range q {
		switch name {
		case "format", "name", "owner", "environment", "scopes":
		default:
			return p, latchkey.Errorf(latchkey.EInvalid, "unknown parameter %.40q: use format, name, owner, environment, scopes", name)
		}
		if len(q[name]) > 1 {
			return p, latchkey.Errorf(latchkey.EInvalid, "parameter %.40q is given twice", name)
		}
	}
	if p.Format == keys.ImportEnv && q.Has("owner") {
		return p, latchkey.Errorf(latchkey.EInvalid, "an env import takes each key's owner from its client id")
	}
	if p.Format == keys.ImportJSONL && len(q) > 1 {
		return p, latchkey.Errorf(latchkey.EInvalid, "a jsonl import takes every setting from its lines")
	}
	str := func(name string) *string {
		if !q.Has(name) {
			return nil
		}
		v := q.Get(name)
		return &v
	}
	p.Name, p.Owner, p.Environment = str("name"), str("owner"), str("environment")
	if q.Has("scopes") {
		sc := []string{}
		for _, v := range strings.Split(q.Get("scopes"), ",") {
			if v = strings.TrimSpace(v); v != "" {
				sc = append(sc, v)
			}
		}
		p.Scopes = &sc
	}
	return p, nil
}

// importKeys reads the body as a stream (it may be far larger than
// --max-body: only a line is bounded, keys.MaxImportLine) and imports it
// batch by batch.
func (s *Server) importKeys(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	p, err := decodeImportQuery(r.URL.Query())
	if err != nil {
		return err
	}
	rc := http.NewResponseController(w)
	extend := func() {
		_ = rc.SetReadDeadline(time.Now().Add(s.timeout))
		_ = rc.SetWriteDeadline(time.Now().Add(s.timeout))
	}
	body := &progressReader{r: r.Body, extend: extend}
	// Writing a batch reads nothing for seconds: each batch gets the
	// whole timeout, the last one included.
	p.Progress = extend
	res, err := s.svc.ImportKeys(r.Context(), a, body, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// progressReader extends the request's deadlines while the body keeps
// arriving, so that a large import is bounded by its idle time rather
// than by its length.
type progressReader struct {
	r      io.Reader
	extend func()
	last   time.Time
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		if now := time.Now(); now.Sub(p.last) > time.Second {
			p.last = now
			p.extend()
		}
	}
	return n, err
}
