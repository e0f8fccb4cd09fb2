package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/wire"
)

// errorBody is the shape of every non-2xx JSON response.
type errorBody = wire.ErrorBody

type errorDetail = wire.ErrorDetail

// writeError answers with err's code and caller-safe message. Errors that
// are not *latchkey.Error are internal: the caller sees a generic message and
// the request id, the log gets the detail.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := latchkey.ErrorCode(err)
	if code == latchkey.EInternal {
		s.log.ErrorContext(r.Context(), "request failed", "request_id", requestID(r.Context()), "method", r.Method, "path", logPath(r.URL.Path), "err", err)
	}
	if code == latchkey.EUnauthenticated {
		w.Header().Set("WWW-Authenticate", `Bearer realm="latchkey"`)
	}
	var d *keys.Denied
	if errors.As(err, &d) {
		s.deniedHeaders(w.Header(), d)
	}
	writeJSON(w, latchkey.HTTPStatus(code), errorBody{Error: errorDetail{
		Code:      code,
		Message:   latchkey.ErrorMessage(err),
		RequestID: requestID(r.Context()),
	}})
}

// deniedHeaders says why a route refused its key as forward-auth says it:
// the verify code in X-Latchkey-Code and, for a limit, Retry-After and the
// RateLimit headers.
func (s *Server) deniedHeaders(h http.Header, d *keys.Denied) {
	if v, ok := codeHeader[d.Code]; ok {
		h["X-Latchkey-Code"] = v
	}
	setLimitHeaders(h, d.Admission, s.now())
	if codeStatus[d.Code] == http.StatusTooManyRequests {
		setRetryAfter(h, d.Code, d.Admission.RetryAfter)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // the client went away; nothing to do
}

var jsonContentType = []string{"application/json"}

// decodeJSON reads exactly one JSON object from data into v, refusing
// unknown fields (a misspelt field is a mistake the caller wants to hear
// about) and trailing data. Errors are EInvalid and name the field.
func decodeJSON(data []byte, v any) error {
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) > 0 && t[0] != '{' {
		// null, a list or a scalar would decode as an empty object, or
		// fail with a message about Go types.
		return latchkey.Errorf(latchkey.EInvalid, "body must be a JSON object")
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return latchkey.Errorf(latchkey.EInvalid, "body must hold exactly one JSON object")
	}
	return nil
}

func jsonError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var le *latchkey.Error
	switch {
	case errors.Is(err, io.EOF):
		return latchkey.Errorf(latchkey.EInvalid, "body is empty; send a JSON object")
	case errors.As(err, &syn):
		return latchkey.Errorf(latchkey.EInvalid, "body is not valid JSON (at byte %d)", syn.Offset)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return latchkey.Errorf(latchkey.EInvalid, "body must be a JSON object")
		}
		return latchkey.Errorf(latchkey.EInvalid, "field %s: expected %s, got %s", typ.Field, typeName(typ.Type.String()), typ.Value)
	case errors.As(err, &le):
		return le
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return latchkey.Errorf(latchkey.EInvalid, "unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return latchkey.Errorf(latchkey.EInvalid, "body cannot be read as JSON: %s", clip(err.Error(), 120))
}

func typeName(t string) string {
	switch {
	case strings.HasPrefix(t, "[]"):
		return "an array"
	case strings.HasPrefix(t, "map["), strings.HasPrefix(t, "struct"):
		return "an object"
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "float"):
		return "a number"
	case t == "bool":
		return "true or false"
	}
	return "a string"
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// readBody reads the request body under the size limit. Errors: ETooLarge,
// EInvalid.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	b, err := io.ReadAll(r.Body)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, latchkey.Errorf(latchkey.ETooLarge, "body is larger than %d bytes", limit)
	}
	if err != nil {
		return nil, latchkey.Errorf(latchkey.EInvalid, "cannot read body: %s", clip(err.Error(), 80))
	}
	return b, nil
}

type ctxKey int

const requestIDKey ctxKey = 1

func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// logAttrs are the attributes every log line about a request carries.
func logAttrs(r *http.Request, status int) []slog.Attr {
	return []slog.Attr{
		slog.String("request_id", requestID(r.Context())),
		slog.String("method", r.Method),
		slog.String("path", logPath(r.URL.Path)),
		slog.Int("status", status),
	}
}

// logPath is a request path as logs may show it, with every place a key
// could be "[redacted]". Keys imported from other systems are any printable
// string of latchkey.MinForeignKeyLen characters or more (and may hold a
// '/'), so a pattern cannot tell one from a name; the rule errs on
// redacting instead. Segments that are words of the route table ("v1",
// "keys", "rotate"…) or ids (key_01H…, latchkey.NewID's form) are shown as
// they are and split the path into runs of the other segments; a run of
// MinForeignKeyLen characters or more, slashes included, has each of its
// segments replaced (a Latchkey key is longer than that too). So
// /v1/keys/key_01J…/usage and /keys/openai stay readable, while a key
// pasted where a name belongs, whole or cut by its own '/', never appears:
// a name of 16 characters or more is redacted too. The segments stay where
// they were. A path without anything to redact is returned as it is,
// without allocating.
func logPath(p string) string {
	if _, hit := redactPath(p, nil); !hit {
		return p
	}
	b, _ := redactPath(p, make([]byte, 0, len(p)+len(redacted)))
	return string(b)
}

// redactPath does logPath's work: with b nil it only reports whether any
// segment is to be redacted; otherwise it appends the logged form of p to
// b.
func redactPath(p string, b []byte) ([]byte, bool) {
	build, hit := b != nil, false
	runStart := -1 // offset in p of the current run's first segment
	start := 0
	for i := 0; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' {
			continue
		}
		seg := p[start:i]
		if knownSegment(seg) {
			if runStart >= 0 {
				b, hit = closeRun(p[runStart:start-1], b, hit)
				runStart = -1
				if build {
					b = append(b, '/')
				}
			}
			if build {
				b = append(b, seg...)
				if i < len(p) {
					b = append(b, '/')
				}
			}
		} else if runStart < 0 {
			runStart = start
		}
		start = i + 1
	}
	if runStart >= 0 {
		b, hit = closeRun(p[runStart:], b, hit)
	}
	return b, hit
}

// closeRun appends a run of unknown segments to b, each segment redacted
// when the run is long enough to be or hold a key, and says whether any
// run was redacted so far.
func closeRun(run string, b []byte, hit bool) ([]byte, bool) {
	if len(run) < latchkey.MinForeignKeyLen {
		if b != nil {
			b = append(b, run...)
		}
		return b, hit
	}
	if b == nil {
		return nil, true
	}
	start := 0
	for i := 0; i <= len(run); i++ {
		if i < len(run) && run[i] != '/' {
			continue
		}
		if i > start {
			b = append(b, redacted...)
		}
		if i < len(run) {
			b = append(b, '/')
		}
		start = i + 1
	}
	return b, true
}

// knownSegment reports whether a path segment is shown in logs as it is:
// a literal word of a route's pattern, or an id.
func knownSegment(s string) bool {
	if _, ok := routeWords[s]; ok {
		return true
	}
	return isID(s)
}

// isID reports whether s has the form of latchkey.NewID's ids: a kind of
// lowercase letters, '_' and 26 characters of Crockford's base32.
func isID(s string) bool {
	const body = 26
	if len(s) < body+2 || len(s) > body+9 || s[len(s)-body-1] != '_' {
		return false
	}
	for i := 0; i < len(s)-body-1; i++ {
		if s[i] < 'a' || s[i] > 'z' {
			return false
		}
	}
	for i := len(s) - body; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' && c != 'I' && c != 'L' && c != 'O' && c != 'U') {
			return false
		}
	}
	return true
}

// routeWords holds the literal segments of every route's pattern and of the
// routes dispatched outside the table (/v1/auth). It is filled by init:
// the route table refers to logPath through its handlers.
var routeWords map[string]struct{}

func init() {
	routeWords = map[string]struct{}{"v1": {}, "auth": {}}
	for _, rt := range Routes() {
		for seg := range strings.SplitSeq(rt.Pattern, "/") {
			if seg != "" && !strings.HasPrefix(seg, "{") {
				routeWords[seg] = struct{}{}
			}
		}
	}
}

const redacted = "[redacted]"
