package httpapi

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/latchkeyhq/latchkey"
)

// seedKeyPattern is the route GET /keys/{provider} is registered and
// counted under.
const seedKeyPattern = "GET /keys/{provider}"

// seedProvider returns the provider of a GET /keys/{provider} request that
// the fast path may answer: a path /keys/<name> where name is a valid
// secret name, given without escapes. Anything else (another method, a
// name that cannot exist, an escaped path) goes through the mux, which
// answers it as before.
func seedProvider(r *http.Request) (string, bool) {
	if r.Method != http.MethodGet || r.URL.RawPath != "" {
		return "", false
	}
	name, ok := strings.CutPrefix(r.URL.Path, "/keys/")
	if !ok || latchkey.ValidateSecretName(name) != nil {
		return "", false
	}
	return name, true
}

// seedKeyFast answers GET /keys/{provider} as seedKey does behind s.seed
// and s.admin, without the general path's per-request allocations: no
// request context values, no status-capturing writer, the answer encoded
// by hand into a pooled buffer. Like forward-auth, a successful read
// writes no request log line at info level (it is in the audit log, and
// at debug level in the request log); failures are logged as on every
// other route.
func (s *Server) seedKeyFast(w http.ResponseWriter, r *http.Request, id, provider string) {
	h := w.Header()
	if !s.seedKeepAlive {
		h["Connection"] = connectionClose
	}
	if r.ContentLength != 0 {
		s.setDeadlines(w)
	}
	ip := s.clientIP(r)
	var err error
	var actorID string
	if retry, blocked := s.blocked(ip); blocked && !s.ownerKey(r.Context(), credential(r), ip) {
		err = errGuarded(w, retry)
	} else {
		var a latchkey.Actor
		err = s.svc.AuthenticateInto(r.Context(), credential(r), ip, "secrets:read", &a)
		if latchkey.ErrorCode(err) == latchkey.EUnauthenticated {
			s.failed(ip)
		}
		if err == nil {
			actorID = a.KeyID
			a.UserAgent = r.UserAgent()
			setLimitHeaders(h, a.Admission, s.now())
			sec, rerr := s.secrets.ReadSecret(r.Context(), &a, provider, 0)
			if rerr == nil {
				defer s.svc.Done(&a)
				s.writeSeedKey(w, sec.Value, sec.ExpiresIn)
				if s.obs != nil {
					s.obs.Served(r.Method, seedKeyPattern, http.StatusOK)
				}
				if s.log.Enabled(r.Context(), slog.LevelDebug) {
					s.log.LogAttrs(r.Context(), slog.LevelDebug, "request", slog.String("request_id", id), slog.String("method", r.Method),
						slog.String("path", logPath(r.URL.Path)), slog.Int("status", http.StatusOK), slog.String("actor_key_id", actorID))
				}
				return
			}
			s.svc.Done(&a)
			err = rerr
		}
	}
	// The error path is the general one: the request id in the context
	// for writeError, and the request's log line.
	r = r.WithContext(context.WithValue(r.Context(), requestIDKey, id))
	s.writeError(w, r, err)
	status := latchkey.HTTPStatus(latchkey.ErrorCode(err))
	attrs := logAttrs(r, status)
	if actorID != "" {
		attrs = append(attrs, slog.String("actor_key_id", actorID))
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
	if s.obs != nil {
		s.obs.Served(r.Method, seedKeyPattern, status)
	}
}

var connectionClose = []string{"close"}

// seedBufs holds the buffers answers are encoded into; the value is
// cleared from a buffer before it goes back.
var seedBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// writeSeedKey writes {"api_key": value, "expires_in": n}, as
// encoding/json would (without HTML escaping, as writeJSON), with
// Cache-Control: no-store.
func (s *Server) writeSeedKey(w http.ResponseWriter, value string, expiresIn int64) {
	h := w.Header()
	h["Cache-Control"] = noStoreValue
	h["Content-Type"] = jsonContentType
	bp := seedBufs.Get().(*[]byte)
	b := appendSeedKey((*bp)[:0], value, expiresIn)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b) // the client went away; nothing to do
	clear(b)
	if cap(b) <= 64<<10+512 {
		*bp = b[:0]
		seedBufs.Put(bp)
	}
}

func appendSeedKey(b []byte, value string, expiresIn int64) []byte {
	b = append(b, `{"api_key":`...)
	b = appendJSONString(b, value)
	b = append(b, `,"expires_in":`...)
	b = strconv.AppendInt(b, expiresIn, 10)
	return append(b, "}\n"...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string, escaped as encoding/json
// escapes it with HTML escaping off: quotes, backslashes, control
// characters, U+2028 and U+2029, and invalid UTF-8 as U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
