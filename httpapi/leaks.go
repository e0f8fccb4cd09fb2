package httpapi

import (
	"context"
	"net/http"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/leaks"
)

// LeakConfig configures the routes that take reports of leaked keys.
type LeakConfig struct {
	// Verifier checks the signature of GitHub's secret-scanning partner
	// alerts (package leaks' *Verifier, from --leak-report-keys); without
	// one, POST /v1/leaks/github answers not_found.
	Verifier LeakVerifier
	// Action is what a reported live key gets: keys.LeakRevoke (default)
	// or keys.LeakSuspend (--leak-action), for both routes.
	Action keys.LeakAction
}

// LeakVerifier checks a partner alert's signature over its raw body.
// Errors: EUnauthenticated (missing, unknown or wrong), EUnavailable (the
// public keys cannot be had).
type LeakVerifier interface {
	Verify(ctx context.Context, keyID, signature string, body []byte) error
}

// githubLeaks answers POST /v1/leaks/github: a secret-scanning partner
// alert. It takes no admin key; the signature is the credential, and it
// is checked over the raw body (bounded by --max-body) before any of the
// body is parsed, so a forged or tampered report changes nothing. Each
// reported token that is a live key is revoked (or suspended); the answer
// is GitHub's token analysis, naming each token by its SHA-256. A
// refused signature counts against the client's network like a bad key.
func (s *Server) githubLeaks(w http.ResponseWriter, r *http.Request) {
	if err := s.serveGitHubLeaks(w, r); err != nil {
		s.writeError(w, r, err)
	}
}

func (s *Server) serveGitHubLeaks(w http.ResponseWriter, r *http.Request) error {
	ip := s.clientIP(r)
	if retry, blocked := s.blocked(ip); blocked {
		return errGuarded(w, retry)
	}
	if latchkey.OrNil(s.leaks.Verifier) == nil {
		return latchkey.Errorf(latchkey.ENotFound, "this server takes no leak reports (start it with --leak-report-keys)")
	}
	body, err := readBody(w, r, s.maxBody)
	if err != nil {
		return err
	}
	err = s.leaks.Verifier.Verify(r.Context(), r.Header.Get(leaks.HeaderKeyID), r.Header.Get(leaks.HeaderSignature), body)
	if err != nil {
		if latchkey.ErrorCode(err) == latchkey.EUnauthenticated {
			s.failed(ip)
		}
		return err
	}
	matches, err := leaks.ParseReport(body)
	if err != nil {
		return err
	}
	out := make([]leaks.Analysis, 0, len(matches))
	for _, m := range matches {
		res, err := s.svc.ReportLeak(r.Context(), nil, keys.LeakReport{Token: m.Token, URL: m.URL, Source: m.Source, Type: m.Type,
			Reporter: "github", Action: s.leaks.Action})
		if err != nil {
			// GitHub sends the report again; what was done is not redone.
			return err
		}
		s.logLeak(r, "github", res, m.URL)
		out = append(out, leaks.Analyze(m, res.Ours()))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// logLeak logs what a report did, by key id: never the token.
func (s *Server) logLeak(r *http.Request, reporter string, res keys.LeakResult, url string) {
	if res.Key == nil {
		s.log.InfoContext(r.Context(), "leak report names no key of ours", "request_id", requestID(r.Context()), "reporter", reporter)
		return
	}
	s.log.WarnContext(r.Context(), "leaked key reported", "request_id", requestID(r.Context()), "reporter", reporter,
		"outcome", res.Outcome, "tenant", res.Key.Tenant, "key_id", res.Key.ID, "url", clip(url, 200))
}

// MaxLeakTokens bounds the tokens of one POST /v1/leaks.
const MaxLeakTokens = 1000

// leakRequest is the body of POST /v1/leaks.
type leakRequest struct {
	Tokens []string `json:"tokens"`
	URL    string   `json:"url"`
	Source string   `json:"source"`
}

// decodeLeaks reads POST /v1/leaks. Errors: EInvalid.
func decodeLeaks(data []byte) (leakRequest, error) {
	var b leakRequest
	if err := decodeJSON(data, &b); err != nil {
		return leakRequest{}, err
	}
	if len(b.Tokens) == 0 {
		return leakRequest{}, latchkey.Errorf(latchkey.EInvalid, "tokens: list at least one key")
	}
	if len(b.Tokens) > MaxLeakTokens {
		return leakRequest{}, latchkey.Errorf(latchkey.EInvalid, "tokens: at most %d keys a request", MaxLeakTokens)
	}
	if len(b.URL) > leaks.MaxURLLen {
		return leakRequest{}, latchkey.Errorf(latchkey.EInvalid, "url: at most %d bytes", leaks.MaxURLLen)
	}
	if len(b.Source) > leaks.MaxFieldLen {
		return leakRequest{}, latchkey.Errorf(latchkey.EInvalid, "source: at most %d bytes", leaks.MaxFieldLen)
	}
	return b, nil
}

// LeakOutcome is one entry of POST /v1/leaks's answer: the key's display
// start (never the key) and what the report did to it. KeyID is set when
// the token is a key of the caller's tenant.
type LeakOutcome struct {
	Start   string `json:"start"`
	Outcome string `json:"outcome"`
	KeyID   string `json:"key_id,omitempty"`
}

// reportLeaks answers POST /v1/leaks: a tenant admin (keys:write) reports
// keys found leaked (latchkey scan --revoke). Each token that is a live
// key of the caller's tenant is revoked (or suspended) as a GitHub report
// would; a key of another tenant is "unknown" and untouched. Results are
// in the order of tokens.
func (s *Server) reportLeaks(w http.ResponseWriter, r *http.Request, a *latchkey.Actor) error {
	body, err := readBody(w, r, s.maxBody)
	if err != nil {
		return err
	}
	req, err := decodeLeaks(body)
	if err != nil {
		return err
	}
	source := req.Source
	if source == "" {
		source = "scan"
	}
	out := make([]LeakOutcome, 0, len(req.Tokens))
	for _, t := range req.Tokens {
		res, err := s.svc.ReportLeak(r.Context(), a, keys.LeakReport{Token: t, URL: req.URL, Source: source, Reporter: "scan", Action: s.leaks.Action})
		if err != nil {
			return err
		}
		s.logLeak(r, "scan", res, req.URL)
		o := LeakOutcome{Outcome: res.Outcome}
		if tok, err := latchkey.ParseToken(t); err == nil {
			o.Start = tok.Start()
		}
		if res.Key != nil {
			o.KeyID = res.Key.ID
		}
		out = append(out, o)
	}
	writeJSON(w, http.StatusOK, struct {
		Results []LeakOutcome `json:"results"`
	}{out})
	return nil
}
