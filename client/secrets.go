package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// RouteStyle is how a broker is asked for a key.
type RouteStyle int

const (
	// PerProvider asks GET {EndpointURL}/{provider} and reads
	// {"api_key": "…", "expires_in": N} (fast-agent's dynamic keys). With
	// Latchkey, EndpointURL is the server's base URL followed by /keys.
	PerProvider RouteStyle = iota
	// LLMKeys asks GET {EndpointURL}/llm-keys once for every provider and
	// reads {"openai": "…", "anthropic": "…"} (mdcgen's provider). With
	// Latchkey, EndpointURL is the server's base URL.
	LLMKeys
)

func (r RouteStyle) String() string {
	if r == LLMKeys {
		return "llm-keys"
	}
	return "per-provider"
}

// Defaults of SecretsConfig.
const (
	DefaultCacheDuration = 30 * time.Minute
	DefaultTimeout       = 10 * time.Second
	DefaultMaxStale      = time.Hour
	DefaultRetryInterval = 5 * time.Second
)

// maxAnswer bounds what is read from a broker.
const maxAnswer = 1 << 20

// SecretsConfig configures Secrets. The first five fields are the seed
// clients' dynamic-key settings (endpoint_url, cache_duration, timeout,
// auth_token, headers); the zero value of every other field is a sensible
// default.
type SecretsConfig struct {
	// EndpointURL is the broker: for PerProvider the URL under which
	// /{provider} is asked (http://127.0.0.1:8080/keys for Latchkey), for
	// LLMKeys the URL under which /llm-keys is asked. Empty: no broker;
	// only the keys file and the environment are read.
	EndpointURL string
	// CacheDuration is how long a fetched key is used without asking again
	// when the broker's answer has no expires_in (default 30 min).
	CacheDuration time.Duration
	// Timeout bounds one request to the broker (default 10 s).
	Timeout time.Duration
	// AuthToken is sent as Authorization: Bearer (a Latchkey key holding
	// secrets:read).
	AuthToken string
	// Headers are added to every request to the broker.
	Headers map[string]string

	// Route is the broker's route style (default PerProvider).
	Route RouteStyle
	// MaxStale is how long past its cache lifetime a key may still be
	// served while the broker is unreachable or answers 5xx (default 1 h;
	// negative: never serve a stale key).
	MaxStale time.Duration
	// RetryInterval is how long after a failed request the broker is left
	// alone: meanwhile callers get the stale key or the fallbacks at once
	// instead of each waiting for a timeout (default 5 s).
	RetryInterval time.Duration
	// KeysFile is the fallback keys file: a JSON object of provider → key
	// (see docs/client.md). Empty: no file.
	KeysFile string
	// NoEnv turns off the last fallback, <PROVIDER>_API_KEY in the
	// environment.
	NoEnv bool
	// Getenv reads the environment (default os.Getenv).
	Getenv func(string) string
	// HTTPClient sends the requests (default: a client of its own). Its
	// Timeout, if shorter, also applies.
	HTTPClient *http.Client
	// Now is the clock (default time.Now); tests pass a fake one.
	Now func() time.Time
}

// Source says where a key came from.
type Source string

const (
	SourceBroker Source = "broker" // fetched, or cached and still fresh
	SourceStale  Source = "stale"  // cached, past its lifetime, broker down
	SourceConfig Source = "config" // the keys file
	SourceEnv    Source = "env"    // <PROVIDER>_API_KEY
)

// Secret is a key and where it came from.
type Secret struct {
	Value  string
	Source Source
	// FreshUntil is when a key from the broker will be asked for again
	// (zero for the keys file and the environment).
	FreshUntil time.Time
}

// String never shows the value.
func (s Secret) String() string { return "secret from " + string(s.Source) }

// Secrets fetches provider keys from a broker, with a cache and fallbacks.
// It is safe for concurrent use; one Secrets should live as long as the
// program, since its cache is what makes a key cheap to ask for.
type Secrets struct {
	cfg   SecretsConfig
	base  string
	http  *http.Client
	now   func() time.Time
	env   func(string) string
	mu    sync.RWMutex
	cache map[string]*entry // by provider; LLMKeys: one entry under ""
}

// entry is what is known of one fetch unit (a provider, or the whole
// llm-keys map). Guarded by Secrets.mu.
type entry struct {
	value      string            // PerProvider
	values     map[string]string // LLMKeys
	has        bool              // value/values hold a fetched answer
	freshUntil time.Time
	staleUntil time.Time

	retryAt time.Time // no new request before this, after a failure
	failure *fetchError

	flight *flight // the request in progress, shared by every caller
}

// flight is one request to the broker; done is closed when it has ended and
// the entry is updated.
type flight struct {
	done chan struct{}
}

// fetchError is a failed request: what to tell the user, and whether a
// stale key may stand in (transient) or no stale key may (denied, gone).
type fetchError struct {
	attempt   Attempt
	code      string
	requestID string
	transient bool // unreachable, timeout, 5xx: a stale key may be served
	final     bool // 401/403: nothing may be served, not even fallbacks
	drop      bool // 401/403/404: the cached key must never be served again
}

// NewSecrets checks cfg and returns a Secrets. Errors: CodeInvalid.
func NewSecrets(cfg SecretsConfig) (*Secrets, error) {
	s := &Secrets{cfg: cfg, cache: map[string]*entry{}, now: cfg.Now, env: cfg.Getenv, http: cfg.HTTPClient}
	if s.cfg.CacheDuration == 0 {
		s.cfg.CacheDuration = DefaultCacheDuration
	}
	if s.cfg.Timeout == 0 {
		s.cfg.Timeout = DefaultTimeout
	}
	if s.cfg.MaxStale == 0 {
		s.cfg.MaxStale = DefaultMaxStale
	}
	if s.cfg.RetryInterval == 0 {
		s.cfg.RetryInterval = DefaultRetryInterval
	}
	switch {
	case s.cfg.CacheDuration < 0:
		return nil, errorf(CodeInvalid, "cache_duration must be positive")
	case s.cfg.Timeout < 0:
		return nil, errorf(CodeInvalid, "timeout must be positive")
	case s.cfg.RetryInterval < 0:
		return nil, errorf(CodeInvalid, "retry interval must be positive")
	case s.cfg.Route != PerProvider && s.cfg.Route != LLMKeys:
		return nil, errorf(CodeInvalid, "route style must be PerProvider or LLMKeys")
	}
	if cfg.EndpointURL != "" {
		u, err := url.Parse(strings.TrimSpace(cfg.EndpointURL))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, errorf(CodeInvalid, "endpoint_url must be an http or https URL without query, such as http://127.0.0.1:8080/keys")
		}
		if u.User != nil {
			return nil, errorf(CodeInvalid, "endpoint_url must not hold credentials; use auth_token")
		}
		// mdcgen's users write the endpoint with a trailing slash; one slash
		// between the endpoint and the route is what is meant.
		s.base = strings.TrimRight(u.String(), "/")
	}
	for k := range cfg.Headers {
		if k == "" || strings.ContainsAny(k, " :\r\n\t") {
			return nil, errorf(CodeInvalid, "header name "+quoteBadName(k)+" is not valid")
		}
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.env == nil {
		s.env = os.Getenv
	}
	if s.http == nil {
		s.http = &http.Client{}
	}
	return s, nil
}

// Get returns the key for provider; see Lookup.
func (s *Secrets) Get(ctx context.Context, provider string) (string, error) {
	sec, err := s.Lookup(ctx, provider)
	return sec.Value, err
}

// Lookup returns the key for provider and where it came from. In order:
//
//  1. a cached key still within its lifetime (the broker's expires_in, else
//     CacheDuration);
//  2. the broker, asked once for all concurrent callers;
//  3. if the broker is unreachable, timed out or answered 5xx: the cached
//     key, up to MaxStale past its lifetime;
//  4. the keys file, then <PROVIDER>_API_KEY in the environment.
//
// A broker that refuses the credential (401) or the secret (403) ends the
// lookup with that error: no stale key and no fallback is served, because
// a revoked credential must stop the flow of secrets. A 404 (the broker has
// no such secret) drops the cached key and goes on to the fallbacks.
//
// Errors (never holding a key): CodeInvalid for a bad provider name;
// CodeUnauthenticated or CodeForbidden when the broker refused; otherwise,
// when every source failed, CodeUnavailable (broker down) or CodeNotFound,
// with Attempts and a message naming each source and how to fix it. If ctx
// ends first, its error; the request goes on for the other callers.
func (s *Secrets) Lookup(ctx context.Context, provider string) (Secret, error) {
	if !ValidProvider(provider) {
		return Secret{}, errorf(CodeInvalid, "provider name "+quoteName(provider)+" must be 1–128 letters, digits, '.', '_' or '-'")
	}
	if s.base == "" {
		return s.fallback(provider, nil, CodeNotFound)
	}
	unit := provider
	if s.cfg.Route == LLMKeys {
		unit = ""
	}
	now := s.now()
	// The hot path: a fresh cached key, under the read lock, allocating
	// nothing.
	s.mu.RLock()
	if e := s.cache[unit]; e != nil && e.has && now.Before(e.freshUntil) {
		sec, ok := e.secret(provider, SourceBroker)
		s.mu.RUnlock()
		if ok {
			return sec, nil
		}
		return s.fallback(provider, []Attempt{s.absent(provider)}, CodeNotFound)
	}
	s.mu.RUnlock()

	s.mu.Lock()
	e := s.cache[unit]
	if e == nil {
		e = &entry{}
		s.cache[unit] = e
	}
	switch {
	case e.has && now.Before(e.freshUntil):
		// Fetched while this caller waited for the lock.
		sec, ok := e.secret(provider, SourceBroker)
		s.mu.Unlock()
		if ok {
			return sec, nil
		}
		return s.fallback(provider, []Attempt{s.absent(provider)}, CodeNotFound)
	case e.flight == nil && e.failure != nil && now.Before(e.retryAt):
		// The broker failed a moment ago: do not make every caller wait
		// for it again.
		return s.afterFailure(provider, e, now) // unlocks
	}
	f := e.flight
	if f == nil {
		f = &flight{done: make(chan struct{})}
		e.flight = f
		go s.fetch(unit, e, f)
	}
	s.mu.Unlock()

	select {
	case <-f.done:
	case <-ctx.Done():
		return Secret{}, ctx.Err()
	}
	s.mu.Lock()
	if e.failure == nil {
		if !e.has {
			// Forgotten between the answer and now: ask again.
			s.mu.Unlock()
			return s.Lookup(ctx, provider)
		}
		sec, ok := e.secret(provider, SourceBroker)
		s.mu.Unlock()
		if ok {
			return sec, nil
		}
		return s.fallback(provider, []Attempt{s.absent(provider)}, CodeNotFound)
	}
	return s.afterFailure(provider, e, s.now()) // unlocks
}

// secret reads provider's key from a fetched entry.
func (e *entry) secret(provider string, src Source) (Secret, bool) {
	if e.values != nil {
		v, ok := e.values[provider]
		return Secret{Value: v, Source: src, FreshUntil: e.freshUntil}, ok && v != ""
	}
	return Secret{Value: e.value, Source: src, FreshUntil: e.freshUntil}, e.value != ""
}

// afterFailure decides what a caller gets after the broker failed: the
// error (denied), a stale key (transient failure, within MaxStale), or the
// fallbacks. It is called with s.mu held and releases it.
func (s *Secrets) afterFailure(provider string, e *entry, now time.Time) (Secret, error) {
	fe := e.failure
	if fe.final {
		s.mu.Unlock()
		return Secret{}, &Error{Code: fe.code, Message: "secret " + quoteName(provider) + ": " + fe.attempt.Problem + " — " + fe.attempt.Fix, RequestID: fe.requestID, Attempts: []Attempt{fe.attempt}}
	}
	attempts := []Attempt{fe.attempt}
	if fe.transient && e.has {
		if s.cfg.MaxStale > 0 && now.Before(e.staleUntil) {
			sec, ok := e.secret(provider, SourceStale)
			s.mu.Unlock()
			if ok {
				return sec, nil
			}
			return s.fallback(provider, append(attempts, s.absent(provider)), fe.code)
		}
		attempts = append(attempts, Attempt{Source: "cache", Problem: "the last key fetched is past max_stale (" + s.cfg.MaxStale.String() + ")", Fix: "bring the broker back, or raise max_stale"})
	}
	s.mu.Unlock()
	return s.fallback(provider, attempts, fe.code)
}

// absent is the attempt for a provider missing from a fetched answer.
func (s *Secrets) absent(provider string) Attempt {
	return Attempt{Source: "broker", Where: s.base + "/llm-keys", Problem: "the answer has no key for " + quoteName(provider), Fix: "store it in the broker (latchkey secrets put " + provider + ") and give the auth token the right to read it"}
}

// fetch asks the broker and records the answer in e. It runs apart from
// any caller, with its own timeout, so a caller that gives up does not
// cancel the request for the others.
func (s *Secrets) fetch(unit string, e *entry, f *flight) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	value, values, expiresIn, fe := s.request(ctx, unit)
	now := s.now()
	s.mu.Lock()
	defer func() {
		e.flight = nil
		s.mu.Unlock()
		close(f.done)
	}()
	if fe != nil {
		e.failure = fe
		e.retryAt = now.Add(s.cfg.RetryInterval)
		if fe.drop {
			// Denied or gone: what was cached must never be served again.
			e.has, e.value, e.values = false, "", nil
		}
		return
	}
	life := s.cfg.CacheDuration
	if expiresIn > 0 {
		life = expiresIn
	}
	e.failure = nil
	e.has, e.value, e.values = true, value, values
	e.freshUntil = now.Add(life)
	e.staleUntil = e.freshUntil.Add(max(s.cfg.MaxStale, 0))
}

// request sends one request to the broker for unit.
func (s *Secrets) request(ctx context.Context, unit string) (value string, values map[string]string, expiresIn time.Duration, fe *fetchError) {
	u := s.base + "/llm-keys"
	if s.cfg.Route == PerProvider {
		u = s.base + "/" + url.PathEscape(unit)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", nil, 0, &fetchError{code: CodeInvalid, attempt: Attempt{Source: "broker", Where: u, Problem: "cannot build the request", Fix: "check endpoint_url"}}
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)
	for k, v := range s.cfg.Headers {
		req.Header.Set(k, v)
	}
	if s.cfg.AuthToken != "" {
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(s.cfg.AuthToken))
	}
	res, err := s.http.Do(req)
	if err != nil {
		return "", nil, 0, &fetchError{code: CodeUnavailable, transient: true, attempt: Attempt{Source: "broker", Where: u, Problem: transportProblem(err, s.cfg.Timeout), Fix: "check endpoint_url and that the broker is running"}}
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, maxAnswer))
	if err != nil {
		return "", nil, 0, &fetchError{code: CodeUnavailable, transient: true, attempt: Attempt{Source: "broker", Where: u, Problem: "the answer broke off: " + transportProblem(err, s.cfg.Timeout), Fix: "check the broker and the network"}}
	}
	if res.StatusCode != http.StatusOK {
		return "", nil, 0, brokerError(u, unit, res, raw)
	}
	if s.cfg.Route == LLMKeys {
		values, err := parseKeyMap(raw)
		if err != nil {
			return "", nil, 0, malformed(u, `{"openai": "…", …}`)
		}
		return "", values, 0, nil
	}
	value, expiresIn, err = parseKeyAnswer(raw)
	if err != nil {
		return "", nil, 0, malformed(u, `{"api_key": "…", "expires_in": N}`)
	}
	return value, nil, expiresIn, nil
}

func malformed(u, shape string) *fetchError {
	return &fetchError{code: CodeUnavailable, attempt: Attempt{Source: "broker", Where: u, Problem: "the answer is not " + shape, Fix: "check that endpoint_url and the route style point at the broker's key route"}}
}

// brokerError explains a non-200 answer.
func brokerError(u, unit string, res *http.Response, raw []byte) *fetchError {
	e := responseError(res, raw)
	fe := &fetchError{code: e.Code, requestID: e.RequestID, attempt: Attempt{Source: "broker", Where: u}}
	answered := "the broker answered " + strconv.Itoa(res.StatusCode) + " " + e.Code
	if e.Message != "" {
		answered += " (" + e.Message + ")"
	}
	if e.RequestID != "" {
		answered += ", request_id " + e.RequestID
	}
	fe.attempt.Problem = answered
	name := unit
	if name == "" {
		name = "NAME"
	}
	switch {
	case res.StatusCode == http.StatusUnauthorized:
		fe.code, fe.final, fe.drop = CodeUnauthenticated, true, true
		fe.attempt.Fix = "auth_token is missing, wrong, expired, suspended or revoked: set a valid key"
	case res.StatusCode == http.StatusForbidden:
		fe.code, fe.final, fe.drop = CodeForbidden, true, true
		fe.attempt.Fix = "give the auth token's key the scope secrets:read and the resource secret:" + name
	case res.StatusCode == http.StatusNotFound:
		fe.code, fe.drop = CodeNotFound, true
		fe.attempt.Fix = "store it in the broker (latchkey secrets put " + name + "), or check endpoint_url"
	case res.StatusCode >= 500:
		fe.code, fe.transient = CodeUnavailable, true
		fe.attempt.Fix = "retry later; the broker's log has the request_id"
	case res.StatusCode == http.StatusTooManyRequests:
		fe.code = CodeRateLimited
		fe.attempt.Fix = "ask less often (raise cache_duration)"
		if e.RetryAfter > 0 {
			fe.attempt.Fix += ", or wait " + e.RetryAfter.String()
		}
	default:
		fe.attempt.Fix = "check endpoint_url, headers and the route style"
	}
	return fe
}

// transportProblem describes a request that got no answer, without the
// request line that *url.Error adds.
func transportProblem(err error, timeout time.Duration) string {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return "no answer within " + timeout.String()
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return "connection refused"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return clip(err.Error(), 200)
}

// keyAnswer is the per-provider route's answer. ExpiresIn is a number of
// seconds; fast-agent needs it to be a number.
type keyAnswer struct {
	APIKey    *string  `json:"api_key"`
	ExpiresIn *float64 `json:"expires_in"`
}

// maxExpiresIn caps a broker's expires_in, so a huge number cannot
// overflow a time.
const maxExpiresIn = 366 * 24 * time.Hour

// parseKeyAnswer reads {"api_key": "…", "expires_in": N}. expires_in is
// optional; absent, zero or negative, it is 0 (use the cache duration).
// Errors never quote the body.
func parseKeyAnswer(raw []byte) (string, time.Duration, error) {
	var a keyAnswer
	if err := json.Unmarshal(raw, &a); err != nil || a.APIKey == nil || *a.APIKey == "" {
		return "", 0, errorf(CodeInvalid, `answer is not {"api_key": "…"}`)
	}
	var d time.Duration
	if a.ExpiresIn != nil && *a.ExpiresIn > 0 {
		if *a.ExpiresIn >= maxExpiresIn.Seconds() {
			d = maxExpiresIn
		} else {
			d = time.Duration(*a.ExpiresIn * float64(time.Second))
		}
	}
	return *a.APIKey, d, nil
}

// parseKeyMap reads {"openai": "…", …}. Entries that are empty or not
// strings are left out (mdcgen's sample server answers "" for a provider
// it has no key for). Errors never quote the body.
func parseKeyMap(raw []byte) (map[string]string, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, errorf(CodeInvalid, "answer is not a JSON object")
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		var s string
		if json.Unmarshal(v, &s) == nil && s != "" {
			out[k] = s
		}
	}
	return out, nil
}

// fallback reads the keys file and the environment after the broker could
// not give the key; attempts holds what happened so far, code the error
// code if nothing works.
func (s *Secrets) fallback(provider string, attempts []Attempt, code string) (Secret, error) {
	if s.cfg.KeysFile != "" {
		v, a := s.fromFile(provider)
		if v != "" {
			return Secret{Value: v, Source: SourceConfig}, nil
		}
		attempts = append(attempts, a)
	}
	if !s.cfg.NoEnv {
		name := EnvName(provider)
		if v := strings.TrimSpace(s.env(name)); v != "" {
			return Secret{Value: v, Source: SourceEnv}, nil
		}
		attempts = append(attempts, Attempt{Source: "env", Where: name, Problem: "not set", Fix: "export " + name})
	}
	if len(attempts) == 0 {
		attempts = append(attempts, Attempt{Source: "config", Problem: "no broker, keys file or environment fallback is configured", Fix: "set endpoint_url, a keys file, or allow the environment"})
	}
	msg := make([]string, len(attempts))
	for i, a := range attempts {
		msg[i] = a.String()
	}
	return Secret{}, &Error{
		Code:     code,
		Message:  "no key for " + quoteName(provider) + " from any source: " + strings.Join(msg, "; "),
		Attempts: attempts,
	}
}

// fromFile reads provider's key from the keys file; the file is read at
// each fallback, so fixing it takes effect without a restart.
func (s *Secrets) fromFile(provider string) (string, Attempt) {
	a := Attempt{Source: "config", Where: s.cfg.KeysFile}
	data, err := os.ReadFile(s.cfg.KeysFile)
	switch {
	case errors.Is(err, os.ErrNotExist):
		a.Problem, a.Fix = "the file does not exist", `create it with {"`+provider+`": "<key>"}`
		return "", a
	case err != nil:
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		a.Problem, a.Fix = "cannot read it: "+err.Error(), "check the path and its permissions"
		return "", a
	}
	keys, err := parseKeysFile(data)
	if err != nil {
		a.Problem, a.Fix = "it is not valid: "+ErrorMessage(err), `write a JSON object such as {"`+provider+`": "<key>"}`
		return "", a
	}
	if v := keys[provider]; v != "" {
		return v, a
	}
	a.Problem, a.Fix = "no entry for "+quoteName(provider), `add "`+provider+`": "<key>"`
	return "", a
}

// Forget drops what is cached for provider (with LLMKeys: for every
// provider), so the next lookup asks the broker: for instance after the
// provider rejected the key.
func (s *Secrets) Forget(provider string) {
	unit := provider
	if s.cfg.Route == LLMKeys {
		unit = ""
	}
	s.mu.Lock()
	if e := s.cache[unit]; e != nil {
		e.has, e.value, e.values, e.failure = false, "", nil, nil
		e.retryAt = time.Time{}
	}
	s.mu.Unlock()
}

// ErrorMessage returns the message of err without its code.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	if err == nil {
		return ""
	}
	return err.Error()
}

const userAgent = "latchkey-go-client/1"
