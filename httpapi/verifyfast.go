package httpapi

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
)

// The fast path of POST /v1/keys/verify, dispatched in ServeHTTP before
// the mux as forward-auth is: no request context values, no
// status-capturing writer, the body read into a pooled buffer and decoded
// by hand (decodeVerifyFast, which FuzzDecodeVerifyFastMatchesJSON holds
// to decodeVerify), the answer encoded by hand into the same pooled
// buffer (appendVerify, held to encoding/json by
// TestVerifyAnswerMatchesEncodingJSON). A 200 writes no request log line
// at info level; every other answer is logged as on the other routes.

const (
	verifyPath    = "/v1/keys/verify"
	verifyPattern = "POST " + verifyPath
)

// verifyBodyCap is the pooled body buffer's size: a body with a
// Content-Length below it is read into the buffer; any other body
// (larger, chunked) is read by readBody, as on every route.
const verifyBodyCap = 4 << 10

type verifyBuf struct {
	body [verifyBodyCap]byte
	// named holds a request's named costs ("limits"): here rather than
	// on the handler's stack because the limiter, an interface, is handed
	// them, which escape analysis cannot see through.
	named [latchkey.MaxNamedCosts]latchkey.NamedCost
	out   []byte
}

var verifyBufs = sync.Pool{New: func() any { return &verifyBuf{out: make([]byte, 0, 1024)} }}

// serveVerify answers POST /v1/keys/verify. With logged (the fast path)
// it writes the request log line and tells the observer what it served
// itself; through the mux (a path the fast path does not take, such as an
// escaped one) ServeHTTP does both.
func (s *Server) serveVerify(w http.ResponseWriter, r *http.Request, id string, logged bool) {
	start := time.Now()
	var code string // the answer, for the observer; "" while no key is checked
	if s.obs != nil {
		defer func() {
			if code != "" {
				s.obs.Verified("verify", code, time.Since(start))
			}
		}()
	}
	if logged {
		s.setDeadlines(w)
	}
	vb := verifyBufs.Get().(*verifyBuf)
	// The request's strings point into vb.body, so it goes back to the
	// pool (cleared: it holds a key) only once the answer is written. The
	// key service keeps nothing of a request (a missing scope or resource
	// is cloned into the verdict).
	n := 0
	defer func() {
		clear(vb.body[:n])
		clear(vb.named[:])
		if cap(vb.out) <= 64<<10 {
			vb.out = vb.out[:0]
			verifyBufs.Put(vb)
		}
	}()
	var body []byte
	var err error
	if cl := r.ContentLength; cl > 0 && cl < verifyBodyCap && cl <= s.maxBody {
		n, err = readSmall(r.Body, vb.body[:])
		body = vb.body[:n]
	} else {
		body, err = readBody(w, r, s.maxBody)
	}
	if err != nil {
		s.verifyFailed(w, r, id, start, logged, err)
		return
	}
	var scopes [maxVerifyScopes]string
	req, err := decodeVerifyFast(body, &scopes, &vb.named)
	if err != nil {
		// The fast decoder refuses exactly what decodeVerify refuses
		// (FuzzDecodeVerifyFastMatchesJSON); decodeVerify says why.
		if req, err = decodeVerify(body); err != nil {
			s.verifyFailed(w, r, id, start, logged, err)
			return
		}
	}
	caller := s.clientIP(r)
	guarded := s.guardSubject(caller, keys.DetachAddr(req.IP))
	if !req.IP.IsValid() {
		req.IP = caller
	}
	if retry, blocked := s.blocked(guarded); blocked {
		code = CodeGuarded
		s.verifyFailed(w, r, id, start, logged, errGuarded(w, retry))
		return
	}
	v, err := s.svc.Verify(r.Context(), req)
	if err != nil {
		code = CodeError
		s.verifyFailed(w, r, id, start, logged, err)
		return
	}
	code = v.Code
	if codeStatus[v.Code] == http.StatusUnauthorized {
		s.failed(guarded)
	}
	vb.out = appendVerify(vb.out[:0], &v)
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(vb.out) // the client went away; nothing to do
	if !logged {
		return
	}
	if s.obs != nil {
		s.obs.Served(r.Method, verifyPattern, http.StatusOK)
	}
	if s.log.Enabled(r.Context(), slog.LevelDebug) {
		s.log.LogAttrs(r.Context(), slog.LevelDebug, "request", slog.String("request_id", id), slog.String("method", r.Method),
			slog.String("path", r.URL.Path), slog.Int("status", http.StatusOK), slog.Duration("duration", time.Since(start)))
	}
}

// verify answers POST /v1/keys/verify through the mux: 200 with a code for
// every well-formed request, whatever the key.
func (s *Server) verify(w http.ResponseWriter, r *http.Request) {
	s.serveVerify(w, r, requestID(r.Context()), false)
}

// verifyFailed answers a verify request that got no verdict as every
// route answers errors; on the fast path it also writes the request's log
// line at info level and tells the observer.
func (s *Server) verifyFailed(w http.ResponseWriter, r *http.Request, id string, start time.Time, logged bool, err error) {
	if !logged {
		s.writeError(w, r, err)
		return
	}
	r = r.WithContext(context.WithValue(r.Context(), requestIDKey, id))
	s.writeError(w, r, err)
	status := latchkey.HTTPStatus(latchkey.ErrorCode(err))
	attrs := append(logAttrs(r, status), slog.Duration("duration", time.Since(start)))
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
	if s.obs != nil {
		s.obs.Served(r.Method, verifyPattern, status)
	}
}

// readSmall reads a body whose Content-Length is below len(buf) (net/http
// stops the body there) to its end. Errors are readBody's.
func readSmall(body io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := body.Read(buf[n:])
		n += m
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, latchkey.Errorf(latchkey.EInvalid, "cannot read body: %s", clip(err.Error(), 80))
		}
	}
	return n, latchkey.Errorf(latchkey.EInvalid, "body is longer than its Content-Length")
}

// errNotFast is decodeVerifyFast's refusal of a body decodeJSON would
// refuse; decodeVerify then says why.
var errNotFast = errors.New("verify body refused")

// errSlowPath is decodeVerifyFast's answer to a body it leaves to
// decodeVerify, valid or not: one with a "request" field.
var errSlowPath = errors.New("verify body left to encoding/json")

// decodeVerifyFast is decodeVerify without reflection or allocation: it
// accepts exactly the bodies decodeVerify accepts, with the same result,
// and refuses the others (with errNotFast where encoding/json would have
// refused, else with finishVerify's error). The scopes go into buf, the
// named costs ("limits") into named. Strings without escapes point into
// data, which must outlive the request. A body with a "request" field
// (what a key's condition reads) is left to decodeVerify: errSlowPath.
//
// It follows encoding/json as decodeJSON configures it: one object and
// nothing but whitespace after it; unknown fields refused; field names
// matched exactly or case-folded as encoding/json folds them; a repeated
// field overrides the earlier one; null leaves a string as it was and
// clears the cost and the scopes; a null scope leaves whatever string the
// repeated field's earlier array had at its index; invalid UTF-8 and
// lone surrogates read as U+FFFD; a cost must be an integer literal that
// fits int64. The limits array follows the scopes' rules, its elements
// objects whose fields follow the top level's.
func decodeVerifyFast(data []byte, buf *[maxVerifyScopes]string, named *[latchkey.MaxNamedCosts]latchkey.NamedCost) (keys.VerifyRequest, error) {
	d := fastDecoder{data: data}
	var key, resource, ip string
	var cost int64
	var costSet bool
	nScopes := 0 // may exceed len(buf), which finishVerify then refuses
	nNamed := 0  // may exceed len(named), likewise
	d.space()
	if !d.byte('{') {
		return keys.VerifyRequest{}, errNotFast
	}
	d.space()
	if !d.byte('}') {
		for {
			name, ok := d.str()
			if !ok {
				return keys.VerifyRequest{}, errNotFast
			}
			d.space()
			if !d.byte(':') {
				return keys.VerifyRequest{}, errNotFast
			}
			d.space()
			switch {
			case foldedIs(name, "KEY"):
				ok = d.strOrNull(&key)
			case foldedIs(name, "RESOURCE"):
				ok = d.strOrNull(&resource)
			case foldedIs(name, "IP"):
				ok = d.strOrNull(&ip)
			case foldedIs(name, "COST"):
				if d.null() {
					cost, costSet = 0, false
				} else {
					cost, ok = d.int64()
					costSet = true
				}
			case foldedIs(name, "SCOPES"):
				nScopes, ok = d.scopes(buf)
			case foldedIs(name, "LIMITS"):
				nNamed, ok = d.namedCosts(named)
			case foldedIs(name, "REQUEST"):
				// The request a condition reads: rare, and a map of
				// headers; encoding/json (decodeVerify) reads it.
				return keys.VerifyRequest{}, errSlowPath
			default:
				ok = false // unknown field
			}
			if !ok {
				return keys.VerifyRequest{}, errNotFast
			}
			d.space()
			if d.byte('}') {
				break
			}
			if !d.byte(',') {
				return keys.VerifyRequest{}, errNotFast
			}
			d.space()
		}
	}
	d.space()
	if d.i != len(d.data) {
		return keys.VerifyRequest{}, errNotFast
	}
	var scopes []string
	if nScopes > len(buf) {
		// Too many: refused by finishVerify by their number alone.
		scopes = make([]string, nScopes)
	} else if nScopes > 0 {
		scopes = buf[:nScopes]
	}
	var costs []latchkey.NamedCost
	if nNamed > len(named) {
		costs = make([]latchkey.NamedCost, nNamed) // refused by their number
	} else if nNamed > 0 {
		costs = named[:nNamed]
	}
	return finishVerify(key, scopes, resource, ip, cost, costSet, costs)
}

type fastDecoder struct {
	data []byte
	i    int
}

func (d *fastDecoder) space() {
	for d.i < len(d.data) {
		switch d.data[d.i] {
		case ' ', '\t', '\r', '\n':
			d.i++
		default:
			return
		}
	}
}

// byte consumes c if it is next.
func (d *fastDecoder) byte(c byte) bool {
	if d.i < len(d.data) && d.data[d.i] == c {
		d.i++
		return true
	}
	return false
}

// null consumes the literal null if it is next.
func (d *fastDecoder) null() bool {
	if len(d.data)-d.i >= 4 && string(d.data[d.i:d.i+4]) == "null" {
		d.i += 4
		return true
	}
	return false
}

// strOrNull reads a string into *dst, or null, which leaves *dst as it is.
func (d *fastDecoder) strOrNull(dst *string) bool {
	if d.null() {
		return true
	}
	s, ok := d.str()
	if ok {
		*dst = s
	}
	return ok
}

// scopes reads the scopes array into buf as encoding/json decodes into a
// slice it decoded into before: null and [] start afresh, a string sets
// its index, a null element leaves it. It returns the array's length.
func (d *fastDecoder) scopes(buf *[maxVerifyScopes]string) (int, bool) {
	if d.null() {
		clear(buf[:])
		return 0, true
	}
	if !d.byte('[') {
		return 0, false
	}
	d.space()
	if d.byte(']') {
		clear(buf[:])
		return 0, true
	}
	n := 0
	for {
		if !d.null() {
			s, ok := d.str()
			if !ok {
				return 0, false
			}
			if n < len(buf) {
				buf[n] = s
			}
		}
		n++
		d.space()
		if d.byte(']') {
			return n, true
		}
		if !d.byte(',') {
			return 0, false
		}
		d.space()
	}
}

// namedCosts reads the limits array into buf as scopes reads the scopes:
// null and [] start afresh, an object sets the fields it names of the
// element at its index (as encoding/json decodes into an element it
// decoded before), a null element leaves it. It returns the array's
// length.
func (d *fastDecoder) namedCosts(buf *[latchkey.MaxNamedCosts]latchkey.NamedCost) (int, bool) {
	if d.null() {
		clear(buf[:])
		return 0, true
	}
	if !d.byte('[') {
		return 0, false
	}
	d.space()
	if d.byte(']') {
		clear(buf[:])
		return 0, true
	}
	n := 0
	for {
		var spare latchkey.NamedCost // past the buffer: refused by number
		el := &spare
		if n < len(buf) {
			el = &buf[n]
		}
		if !d.null() && !d.namedCost(el) {
			return 0, false
		}
		n++
		d.space()
		if d.byte(']') {
			return n, true
		}
		if !d.byte(',') {
			return 0, false
		}
		d.space()
	}
}

// namedCost reads one {"name": "…", "cost": N} object into el: fields
// matched as at the top level, null leaving a field as it is, unknown
// fields refused.
func (d *fastDecoder) namedCost(el *latchkey.NamedCost) bool {
	if !d.byte('{') {
		return false
	}
	d.space()
	if d.byte('}') {
		return true
	}
	for {
		name, ok := d.str()
		if !ok {
			return false
		}
		d.space()
		if !d.byte(':') {
			return false
		}
		d.space()
		switch {
		case foldedIs(name, "NAME"):
			ok = d.strOrNull(&el.Name)
		case foldedIs(name, "COST"):
			if !d.null() {
				el.Cost, ok = d.int64()
			}
		default:
			ok = false
		}
		if !ok {
			return false
		}
		d.space()
		if d.byte('}') {
			return true
		}
		if !d.byte(',') {
			return false
		}
		d.space()
	}
}

// int64 reads an integer literal as encoding/json reads one into an
// int64: a fraction or an exponent, or a value beyond int64, is refused.
func (d *fastDecoder) int64() (int64, bool) {
	neg := d.byte('-')
	start := d.i
	if d.byte('0') {
		// JSON allows no digits after a leading zero.
	} else {
		for d.i < len(d.data) && d.data[d.i] >= '0' && d.data[d.i] <= '9' {
			d.i++
		}
	}
	digits := d.data[start:d.i]
	if len(digits) == 0 || len(digits) > 19 {
		return 0, false
	}
	if d.i < len(d.data) {
		if c := d.data[d.i]; c == '.' || c == 'e' || c == 'E' {
			return 0, false
		}
	}
	var u uint64
	for _, c := range digits {
		u = u*10 + uint64(c-'0') // 19 digits cannot overflow a uint64
	}
	switch {
	case neg && u <= 1<<63:
		return int64(-u), true
	case !neg && u < 1<<63:
		return int64(u), true
	}
	return 0, false
}

// str reads a JSON string. One without escapes and of valid UTF-8 points
// into data; any other is unquoted into a new string as encoding/json
// unquotes it.
func (d *fastDecoder) str() (string, bool) {
	if !d.byte('"') {
		return "", false
	}
	start := d.i
	plain := true
	for d.i < len(d.data) {
		c := d.data[d.i]
		switch {
		case c == '"':
			raw := d.data[start:d.i]
			d.i++
			if plain && utf8.Valid(raw) {
				if len(raw) == 0 {
					return "", true
				}
				return unsafe.String(&raw[0], len(raw)), true
			}
			return unquoteJSON(raw), true
		case c < 0x20:
			return "", false
		case c == '\\':
			plain = false
			d.i++
			if d.i >= len(d.data) {
				return "", false
			}
			switch d.data[d.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				d.i++
			case 'u':
				if d.i+5 > len(d.data) {
					return "", false
				}
				for _, h := range d.data[d.i+1 : d.i+5] {
					if hexVal(h) < 0 {
						return "", false
					}
				}
				d.i += 5
			default:
				return "", false
			}
		default:
			d.i++
		}
	}
	return "", false
}

func hexVal(c byte) rune {
	switch {
	case c >= '0' && c <= '9':
		return rune(c - '0')
	case c >= 'a' && c <= 'f':
		return rune(c - 'a' + 10)
	case c >= 'A' && c <= 'F':
		return rune(c - 'A' + 10)
	}
	return -1
}

// getu4 reads \uXXXX at the start of s, or returns -1.
func getu4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		h := hexVal(c)
		if h < 0 {
			return -1
		}
		r = r<<4 | h
	}
	return r
}

// unquoteJSON unquotes the inside of a JSON string str has checked, as
// encoding/json does: escapes, surrogate pairs (a lone one is U+FFFD) and
// invalid UTF-8 (U+FFFD a byte).
func unquoteJSON(s []byte) string {
	b := make([]byte, 0, len(s)+2*utf8.UTFMax)
	for r := 0; r < len(s); {
		c := s[r]
		switch {
		case c == '\\':
			switch e := s[r+1]; e {
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				rr := getu4(s[r:])
				r += 6
				if utf16.IsSurrogate(rr) {
					if dec := utf16.DecodeRune(rr, getu4(s[r:])); dec != unicode.ReplacementChar {
						r += 6
						b = utf8.AppendRune(b, dec)
						continue
					}
					rr = unicode.ReplacementChar
				}
				b = utf8.AppendRune(b, rr)
				continue
			default: // " \ /
				b = append(b, e)
			}
			r += 2
		case c < utf8.RuneSelf:
			b = append(b, c)
			r++
		default:
			rr, size := utf8.DecodeRune(s[r:])
			b = utf8.AppendRune(b, rr)
			r += size
		}
	}
	return string(b)
}

// foldedIs reports whether name matches the field name upper (ASCII, upper
// case) as encoding/json matches names: ASCII letters upper-cased, any
// other rune folded to the smallest rune of its case-folding orbit, so
// that "KEY", "Key" and "\u212aey" (KELVIN SIGN) all name "key", while
// "\u0130p" (a dotted capital I) names nothing.
func foldedIs(name, upper string) bool {
	j := 0
	for _, r := range name {
		if r < utf8.RuneSelf {
			if 'a' <= r && r <= 'z' {
				r -= 'a' - 'A'
			}
		} else {
			r = foldRune(r)
		}
		if j >= len(upper) || r != rune(upper[j]) {
			return false
		}
		j++
	}
	return j == len(upper)
}

// foldRune returns the smallest rune of r's case-folding orbit, as
// encoding/json's does.
func foldRune(r rune) rune {
	for {
		r2 := unicode.SimpleFold(r)
		if r2 <= r {
			return r2
		}
		r = r2
	}
}

// appendIdentity appends the entry's identity fields as they follow "code"
// in a verify answer, as encoding/json encodes verifyIdentity (without HTML
// escaping, as writeJSON): each with its leading comma, omitting the empty
// ones. The meta is encoded once per entry (or once for every key of the
// same small meta) by the cache; the rest is copied from the key.
func appendIdentity(b []byte, e *keys.Entry) []byte {
	k := &e.Key
	b = appendStringField(b, `,"key_id":`, k.ID)
	b = appendStringField(b, `,"tenant":`, k.Tenant)
	b = appendStringField(b, `,"owner":`, k.Owner)
	b = appendStringField(b, `,"name":`, k.Name)
	b = appendStringField(b, `,"environment":`, k.Environment)
	b = appendStringList(b, `,"scopes":`, k.Scopes)
	b = appendStringList(b, `,"resources":`, k.Resources)
	if m := e.MetaJSON(); len(k.Meta) > 0 && m != nil {
		b = append(append(b, `,"meta":`...), m...)
	}
	if !k.ExpiresAt.IsZero() {
		b = append(b, `,"expires_at":"`...)
		b = k.ExpiresAt.AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	return b
}

func appendStringField(b []byte, field, s string) []byte {
	if s == "" {
		return b
	}
	return appendQuoted(append(b, field...), s)
}

// appendQuoted is appendJSONString with a fast path for what a key's
// fields mostly are, printable ASCII without '"' or '\\', checked eight
// bytes at a time, which needs no escaping.
func appendQuoted(b []byte, s string) []byte {
	if !plainASCII(s) {
		return appendJSONString(b, s)
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// plainASCII reports whether every byte of s is from 0x20 to 0x7f and
// neither '"' nor '\\'.
func plainASCII(s string) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(s); i += 8 {
		w := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		q, bs := w^(ones*'"'), w^(ones*'\\')
		// A byte below 0x20, a zero byte of q or bs, or a high bit.
		if (w-ones*0x20)&^w&highs != 0 || (q-ones)&^q&highs != 0 || (bs-ones)&^bs&highs != 0 || w&highs != 0 {
			return false
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

func appendStringList(b []byte, field string, l []string) []byte {
	if len(l) == 0 {
		return b
	}
	b = append(b, field...)
	for i, s := range l {
		if i == 0 {
			b = append(b, '[')
		} else {
			b = append(b, ',')
		}
		b = appendQuoted(b, s)
	}
	return append(b, ']')
}

// appendVerify appends the answer to v as writeJSON encoded it when the
// route built a VerifyResponse (verifyResponse in the tests): the fields in
// VerifyResponse's order, then a newline.
func appendVerify(b []byte, v *keys.Verdict) []byte {
	if v.Valid() {
		b = append(b, `{"valid":true,"code":`...)
	} else {
		b = append(b, `{"valid":false,"code":`...)
	}
	b = appendJSONString(b, v.Code)
	if v.Entry != nil {
		b = appendIdentity(b, v.Entry)
	}
	if v.Missing != "" {
		b = append(b, `,"missing":`...)
		b = appendJSONString(b, v.Missing)
	}
	a := &v.Admission
	b = appendLimit(b, `,"ratelimit":`, a.RateLimit)
	b = appendLimit(b, `,"quota":`, a.Quota)
	if a.LeaseID != "" {
		b = append(b, `,"lease_id":`...)
		b = appendJSONString(b, a.LeaseID)
	}
	if a.RetryAfter > 0 {
		b = append(b, `,"retry_after":`...)
		b = strconv.AppendInt(b, retrySeconds(a.RetryAfter), 10)
	}
	if a.Owner {
		b = append(b, `,"limited_by":"owner"`...)
	}
	return append(b, "}\n"...)
}

// appendLimit appends a limit as limitView and encoding/json show it:
// nothing without a limit, no reset_at without a reset.
func appendLimit(b []byte, field string, l latchkey.LimitState) []byte {
	if l.Limit == 0 {
		return b
	}
	b = append(b, field...)
	b = append(b, `{"limit":`...)
	b = strconv.AppendInt(b, l.Limit, 10)
	b = append(b, `,"remaining":`...)
	b = strconv.AppendInt(b, l.Remaining, 10)
	if !l.ResetAt.IsZero() {
		b = append(b, `,"reset_at":"`...)
		b = l.ResetAt.UTC().AppendFormat(b, time.RFC3339Nano)
		b = append(b, '"')
	}
	return append(b, '}')
}
