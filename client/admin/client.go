package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/latchkeyhq/latchkey/wire"
)

// DefaultTimeout bounds one call (request and whole answer) unless
// WithTimeout says otherwise.
const DefaultTimeout = 30 * time.Second

// MaxAnswer bounds the answer a call reads (a page of 1000 keys is a few
// MiB), so that a wrong base URL cannot exhaust memory. Streams (ExportKeys,
// ExportAudit) are not bounded: their caller reads them.
const MaxAnswer = 64 << 20

// Client calls one Latchkey server's admin API with one admin key. It is
// safe for concurrent use.
type Client struct {
	base      string
	key       string
	http      *http.Client
	timeout   time.Duration
	userAgent string
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sends the requests with hc (its transport's TLS settings,
// proxies, …) instead of a client of its own. Streams use hc's transport
// without hc's Timeout, which would cut them off.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc != nil {
			c.http = hc
		}
	}
}

// WithTimeout bounds each call, from sending the request to reading the
// whole answer (default DefaultTimeout). For ExportKeys and ExportAudit it
// bounds only the wait for the answer to start; ImportKeys has none, since
// the server answers only when it has read the whole upload.
func WithTimeout(d time.Duration) Option {
	return func(c *Client) {
		if d > 0 {
			c.timeout = d
		}
	}
}

// WithUserAgent sets the User-Agent of every request (default
// "latchkey-admin-go").
func WithUserAgent(ua string) Option {
	return func(c *Client) {
		if ua != "" {
			c.userAgent = ua
		}
	}
}

// New returns a client for the server at baseURL (http or https, with an
// optional path prefix when the server sits behind a proxy under one)
// that authenticates with the admin key key. key may be empty for a
// client that only verifies keys (VerifyKey never sends it). Errors:
// *Error with Code invalid, naming neither the key nor the URL's user
// part.
func New(baseURL, key string, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimSpace(baseURL))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, &Error{Code: wire.EInvalid, Message: "the server URL must be an http or https base URL without a user, query or fragment, such as http://127.0.0.1:8080"}
	}
	if strings.ContainsFunc(key, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return nil, &Error{Code: wire.EInvalid, Message: "the admin key holds a control character (a stray newline?)"}
	}
	c := &Client{
		base:      strings.TrimRight(u.String(), "/"),
		key:       key,
		http:      &http.Client{},
		timeout:   DefaultTimeout,
		userAgent: "latchkey-admin-go",
	}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// BaseURL is the server's base URL as the client uses it (no trailing
// slash).
func (c *Client) BaseURL() string { return c.base }

// CallOption changes one call.
type CallOption func(*callConfig)

type callConfig struct {
	raw *[]byte
}

func callOptions(opts []CallOption) callConfig {
	var cc callConfig
	for _, o := range opts {
		o(&cc)
	}
	return cc
}

// Raw stores in *dst the body of the call's 2xx answer exactly as the
// server sent it (nil for an answer without one), alongside the typed
// answer the method returns. The CLI prints it for --json, so that its
// output is the server's own JSON, fields a newer server added included.
func Raw(dst *[]byte) CallOption { return func(cc *callConfig) { cc.raw = dst } }

// request is one call to make.
type request struct {
	method string
	path   string // escaped, from the base URL on
	query  url.Values
	body   any      // marshalled to JSON; nil: no body
	noKey  bool     // leave out the admin key (verify)
	hide   []string // values sent that no error may show (a secret, a key)
}

// call sends r and decodes a 2xx answer into out (when not nil).
func (c *Client) call(ctx context.Context, r request, out any, opts []CallOption) error {
	cc := callOptions(opts)
	var body io.Reader
	if r.body != nil {
		b, err := json.Marshal(r.body)
		if err != nil {
			return &Error{Code: wire.EInvalid, Message: r.method + " " + r.path + ": the request cannot be encoded as JSON"}
		}
		body = bytes.NewReader(b)
	}
	cctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := c.newRequest(cctx, r, body)
	if err != nil {
		return err
	}
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	res, err := c.http.Do(req)
	if err != nil {
		return c.transportError(ctx, cctx, r, 0, err)
	}
	defer res.Body.Close()
	return c.answer(ctx, cctx, r, res, out, cc)
}

// do makes the call r and decodes its answer into a new T.
func do[T any](ctx context.Context, c *Client, r request, opts []CallOption) (*T, error) {
	var out T
	if err := c.call(ctx, r, &out, opts); err != nil {
		return nil, err
	}
	return &out, nil
}

// send posts body (of contentType) without a client-side time limit on
// the whole call (the server may take long over it; ctx ends it) and
// decodes the answer into a new T: the calls whose body is not a JSON
// value built here (an import, a manifest, a large batch).
func send[T any](ctx context.Context, c *Client, r request, body io.Reader, contentType string, opts []CallOption) (*T, error) {
	res, err := c.stream(ctx, r, body, contentType, 0)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	var out T
	if err := c.answer(ctx, ctx, r, res, &out, callOptions(opts)); err != nil {
		return nil, err
	}
	return &out, nil
}

// answer reads res, the answer to r, whole: a non-2xx one into an *Error,
// a 2xx one into out (when not nil) and cc's Raw.
func (c *Client) answer(ctx, cctx context.Context, r request, res *http.Response, out any, cc callConfig) error {
	raw, err := readAnswer(res.Body)
	if err != nil {
		if errors.Is(err, errTooLarge) {
			return &Error{Code: wire.EInternal, Status: res.StatusCode, Message: r.method + " " + r.path + ": the answer is larger than this client reads"}
		}
		return c.transportError(ctx, cctx, r, res.StatusCode, err)
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return c.responseError(res, raw, r.hide)
	}
	if cc.raw != nil {
		*cc.raw = raw
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return &Error{Code: wire.EInternal, Status: res.StatusCode, Message: r.method + " " + r.path + ": the answer is not the JSON this client expects"}
		}
	}
	return nil
}

// stream sends r with body read as it goes and returns the 2xx answer for
// the caller to read and close. It has no overall time limit;
// headerTimeout (0: none) bounds the wait for the answer's headers once
// the body is sent.
func (c *Client) stream(ctx context.Context, r request, body io.Reader, contentType string, headerTimeout time.Duration) (*http.Response, error) {
	req, err := c.newRequest(ctx, r, body)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	// A transport of its own for the header timeout; its connection is
	// closed with the answer, so that none lingers after the stream.
	hc := *c.http
	hc.Timeout = 0
	done := func() {}
	if t, ok := transportOf(c.http); ok {
		t = t.Clone()
		t.ResponseHeaderTimeout = headerTimeout
		hc.Transport, done = t, t.CloseIdleConnections
	}
	res, err := hc.Do(req)
	if err != nil {
		done()
		return nil, c.transportError(ctx, ctx, r, 0, err)
	}
	res.Body = &closeThen{ReadCloser: res.Body, then: done}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		defer res.Body.Close()
		raw, err := readAnswer(res.Body)
		if err != nil && !errors.Is(err, errTooLarge) {
			return nil, c.transportError(ctx, ctx, r, res.StatusCode, err)
		}
		return nil, c.responseError(res, raw, r.hide)
	}
	return res, nil
}

// closeThen is an answer's body that runs then once it is closed.
type closeThen struct {
	io.ReadCloser
	then func()
	once sync.Once
}

func (b *closeThen) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.then)
	return err
}

// transportOf is the *http.Transport hc sends with, if it is one.
func transportOf(hc *http.Client) (*http.Transport, bool) {
	if hc.Transport == nil {
		t, ok := http.DefaultTransport.(*http.Transport)
		return t, ok
	}
	t, ok := hc.Transport.(*http.Transport)
	return t, ok
}

func (c *Client) newRequest(ctx context.Context, r request, body io.Reader) (*http.Request, error) {
	u := c.base + r.path
	if len(r.query) > 0 {
		u += "?" + r.query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u, body)
	if err != nil {
		return nil, &Error{Code: wire.EInvalid, Message: r.method + " " + r.path + ": the request cannot be built"}
	}
	req.Header.Set("User-Agent", c.userAgent)
	if c.key != "" && !r.noKey {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	return req, nil
}

var errTooLarge = errors.New("answer too large")

// readAnswer reads a whole answer of at most MaxAnswer bytes.
func readAnswer(r io.Reader) ([]byte, error) {
	raw, err := io.ReadAll(io.LimitReader(r, MaxAnswer+1))
	if err != nil {
		return nil, err
	}
	if len(raw) > MaxAnswer {
		return nil, errTooLarge
	}
	return raw, nil
}

// transportError explains a call that got no complete answer. When the
// caller's ctx ended, that is the answer; the call's own deadline (cctx)
// running out is a timeout.
func (c *Client) transportError(ctx, cctx context.Context, r request, status int, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	timeout := cctx.Err() != nil || errors.Is(err, context.DeadlineExceeded)
	var te interface{ Timeout() bool }
	if errors.As(err, &te) && te.Timeout() {
		timeout = true
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // its URL would repeat ours, query included
	}
	return &TransportError{Method: r.method, URL: c.base + r.path, Status: status, Timeout: timeout, Err: err}
}

// responseError turns a non-2xx answer into an *Error: the server's code
// and message when the body is the API's error shape, else the code
// wire.CodeForStatus gives the status (a proxy in between may answer with
// a page of its own, whose text is not kept).
func (c *Client) responseError(res *http.Response, raw []byte, hide []string) *Error {
	e := &Error{Status: res.StatusCode, RequestID: res.Header.Get("X-Request-Id"), RetryAfter: wire.ParseRetryAfter(res.Header.Get("Retry-After"))}
	var body wire.ErrorBody
	if json.Unmarshal(raw, &body) == nil && body.Error.Code != "" {
		e.Code, e.Message = body.Error.Code, clip(body.Error.Message, 500)
		if body.Error.RequestID != "" {
			e.RequestID = body.Error.RequestID
		}
		if !wire.KnownCode(e.Code) {
			e.Code = wire.CodeForStatus(res.StatusCode)
		}
	} else {
		e.Code = wire.CodeForStatus(res.StatusCode)
		e.Message = "the server answered " + res.Status
	}
	e.Message = redact(e.Message, append(hide, c.key))
	e.RequestID = clip(redact(e.RequestID, append(hide, c.key)), 100)
	return e
}

// redact replaces every sensitive string in s, so that a server or proxy
// that echoes the request cannot put the key into an error.
func redact(s string, sensitive []string) string {
	for _, v := range sensitive {
		if len(v) >= 4 && strings.Contains(s, v) {
			s = strings.ReplaceAll(s, v, "[redacted]")
		}
	}
	return s
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// esc escapes one path segment: an id with a slash or a question mark
// stays one segment.
func esc(s string) string { return url.PathEscape(s) }

// Page selects a page of a list: from Cursor (a previous page's
// NextCursor; "" for the first), Limit items (0: the server's default,
// 100; at most 1000).
type Page struct {
	Cursor string
	Limit  int
}

func (p Page) query(q url.Values) url.Values {
	if q == nil {
		q = url.Values{}
	}
	if p.Cursor != "" {
		q.Set("cursor", p.Cursor)
	}
	if p.Limit > 0 {
		q.Set("limit", itoa(int64(p.Limit)))
	}
	return q
}

func setIf(q url.Values, name, v string) {
	if v != "" {
		q.Set(name, v)
	}
}

func setTime(q url.Values, name string, t time.Time) {
	if !t.IsZero() {
		q.Set(name, t.UTC().Format(time.RFC3339Nano))
	}
}
