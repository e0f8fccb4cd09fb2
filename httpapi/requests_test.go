package httpapi

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
)

// Every request decoder must, for any input, either succeed or fail with an
// invalid error: never panic, never another code.
func checkDecode(t *testing.T, err error) {
	t.Helper()
	if err != nil && latchkey.ErrorCode(err) != latchkey.EInvalid {
		t.Fatalf("decoder error %v has code %s, want invalid", err, latchkey.ErrorCode(err))
	}
}

var bodySeeds = []string{
	``, `{}`, `null`, `[]`, `{"name": "x"}`, `{"name": 1}`, `{"a": 1}`, `{"name": "x"} {}`,
	`{"name": "n", "owner": "o", "environment": "production", "scopes": ["read", "data:write"], "resources": ["agent:*"], "meta": {"k": [1, {"x": null}]}, "ip_allow": ["10.0.0.0/8"], "expires_at": "2030-01-01T00:00:00Z", "prefix": "sk_live"}`,
	`{"expires_at": null}`, `{"expires_at": "tomorrow"}`, `{"expires_in": "30d"}`, `{"expires_in": 30}`,
	`{"grace_period": "1h", "expires_in": "90d"}`, `{"duration": "2h", "reason": "r"}`, `{"reason": "leaked"}`,
	`{"id": "acme", "name": "Acme"}`, `{"key": "lk_x", "scopes": ["data:read"], "resource": "agent:a", "cost": 3, "ip": "10.0.0.1"}`,
	`{"key": "k", "cost": -1}`, `{"key": "k", "ip": "nope"}`, `{"key": "k", "scopes": ["Bad Scope"]}`,
	`{"key": "lk_0123456789abcdefghijklmnop", "scopes": ["data:read"], "cost": "1"}`, `{"key": "lk_0123456789abcdefghijklmnop", "bogus": 1}`,
	`{"key": "lk_0123456789abcdefghijklmnop", "cost": -1}`, `{"key": "lk_0123456789abcdefghijklmnop", "ip": "10.0.0.300"}`,
	`{"ratelimits": [{"name": "burst", "limit": 10, "window": "1s"}], "quota": {"limit": 10, "period": "30d"}, "max_concurrent": 3, "lease_ttl": "30s"}`,
	`{"quota": null}`, `{"quota": {"remaining": 5}}`, `{"quota": {"bogus": 1}}`, `{"quota": 7}`,
	`{"time_windows": [{"days": ["mon"], "start": "09:00", "end": "17:00", "tz": "Europe/Berlin"}], "countries": ["DE"]}`,
	`{"url": "https://hooks.example.com/in", "events": ["key.revoked", "key.expiring"]}`, `{"url": "http://127.0.0.1:9/x"}`,
	`{"url": "ftp://x"}`, `{"url": "https://h/", "events": ["key.*"]}`, `{"url": "https://h/", "events": null}`, `{"url": 7}`,
	`{"name": "k", "policy": "production"}`, `{"policy": ""}`, `{"policy": 1}`,
	`{"key": "k", "limits": [{"name": "tokens", "cost": 1200}]}`, `{"key": "k", "limits": [{"name": "", "cost": 1}]}`,
	`{"name": "svc", "description": "d", "scopes": ["read"], "ratelimits": [{"name": "tokens", "limit": 10, "window": "1h", "apply": "on_request"}], "quota": {"limit": 5, "period": "30d"}, "uses": 3, "max_concurrent": 2, "expires_after": "90d"}`,
	`{"name": "svc", "quota": null}`, `{"expires_after": "soon"}`, `{"expires_after": "0s"}`, `{"description": null}`,
	`{"ratelimits": [{"limit": 100, "window": "1m"}], "quota": {"limit": 1000, "period": "monthly"}, "meta": {"plan": "pro"}}`, `{"meta": null}`,
}

func FuzzDecodeCreateKey(f *testing.F) {
	for _, s := range bodySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodeCreateKey(b)
		checkDecoded(t, b, decodeCreateKey, createKeyJSON, p, err)
	})
}

func FuzzDecodeUpdateKey(f *testing.F) {
	for _, s := range bodySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		// (Both expires_at and expires_in decode; the service refuses them
		// together.)
		p, err := decodeUpdateKey(b)
		checkDecoded(t, b, decodeUpdateKey, updateKeyJSON, p, err)
	})
}

func FuzzDecodeRotate(f *testing.F) {
	for _, s := range bodySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodeRotate(b)
		checkDecoded(t, b, decodeRotate, rotateJSON, p, err)
	})
}

func FuzzDecodeSuspend(f *testing.F) {
	for _, s := range bodySeeds {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"duration": "0s"}`))
	f.Add([]byte(`{"duration": "0"}`))
	f.Add([]byte(`{"duration": null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeSuspend(b)
		checkDecoded(t, b, decodeSuspend, suspendJSON, s, err)
		if err == nil && s.Duration < 0 {
			t.Fatalf("accepted a negative duration: %+v", s)
		}
		// A zero duration is refused, never read as "until resumed".
		var probe struct{ Duration *string }
		if err == nil && json.Unmarshal(b, &probe) == nil && probe.Duration != nil && s.Duration == 0 {
			t.Fatalf("accepted duration %q as 0 (until resumed)", *probe.Duration)
		}
	})
}

func TestDecodeSuspendRefusesZero(t *testing.T) {
	for _, b := range []string{`{"duration": "0s"}`, `{"duration": "0"}`, `{"duration": "0h0m"}`} {
		if _, err := decodeSuspend([]byte(b)); latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Errorf("decodeSuspend(%s) = %v, want invalid", b, err)
		}
	}
	if s, err := decodeSuspend([]byte(`{"reason": "r"}`)); err != nil || s.Duration != 0 {
		t.Fatalf("no duration: %+v %v", s, err)
	}
}

// FuzzDecodeEmpty: a route that takes no body accepts nothing, blanks or
// an empty object, and refuses everything else as invalid.
func FuzzDecodeEmpty(f *testing.F) {
	for _, s := range append(bodySeeds, " ", "\n", "{ }", "garbage", "{}{}") {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := decodeEmpty(b)
		checkDecode(t, err)
		if err != nil || blank(b) {
			return
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(b, &m) != nil || m == nil || len(m) != 0 {
			t.Fatalf("decodeEmpty accepted %q", b)
		}
	})
}

// FuzzLogPath: logPath keeps every segment in its place; the route words
// and ids are shown as they are, and any run of other segments between them
// long enough to be a key (latchkey.MinForeignKeyLen, slashes included) is
// redacted segment by segment; a path without such a run is logged as it
// is. So no key, Latchkey's or foreign, whole or cut by its own '/',
// appears in a logged path.
func FuzzLogPath(f *testing.F) {
	tok, _ := latchkey.GenerateToken("lk", nil)
	key := tok.Reveal()
	for _, s := range []string{"/v1/keys/" + key, "/" + key, "/v1/keys/" + key + "/usage", key, "/a//b/", "", "/", "/v1/keys/key_01",
		"/keys/Xq3-vB9_tR2mK8wLpZ0aYc5nHs7dEf4gJi6uOk1lMzQ", "/keys/Ab3dEf9hIj/kLm0pQ", "/v1/keys/key_01JEBENCH0000000000000000/usage"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got := logPath(p)
		in, out := strings.Split(p, "/"), strings.Split(got, "/")
		if len(in) != len(out) {
			t.Fatalf("logPath(%q) = %q changed the segments", p, got)
		}
		changed := false
		for i := 0; i < len(in); {
			if knownSegment(in[i]) {
				if out[i] != in[i] {
					t.Fatalf("logPath(%q) = %q changed the known segment %q", p, got, in[i])
				}
				i++
				continue
			}
			j := i
			for j < len(in) && !knownSegment(in[j]) {
				j++
			}
			run := strings.Join(in[i:j], "/")
			for k := i; k < j; k++ {
				switch {
				case len(run) < latchkey.MinForeignKeyLen && out[k] != in[k]:
					t.Fatalf("logPath(%q) = %q changed %q, in a run too short for a key", p, got, in[k])
				case len(run) >= latchkey.MinForeignKeyLen && in[k] != "" && out[k] != redacted:
					t.Fatalf("logPath(%q) = %q kept %q, in a run as long as a key", p, got, in[k])
				case len(run) >= latchkey.MinForeignKeyLen && in[k] == "" && out[k] != "":
					t.Fatalf("logPath(%q) = %q filled an empty segment", p, got)
				}
			}
			changed = changed || len(run) >= latchkey.MinForeignKeyLen
			i = j
		}
		if !changed && got != p {
			t.Fatalf("logPath(%q) = %q changed a path with nothing to redact", p, got)
		}
		for seg := range strings.SplitSeq(got, "/") {
			if _, err := latchkey.ParseToken(seg); err == nil {
				t.Fatalf("logPath(%q) = %q keeps a key", p, got)
			}
		}
	})
}

// TestLogPathRedactsAnyKeyAndKeepsRouteWordsAndIDs: what a log line shows
// of the paths a client could put a key in, and of ordinary paths.
func TestLogPathRedactsAnyKeyAndKeepsRouteWordsAndIDs(t *testing.T) {
	tok, _ := latchkey.GenerateToken("lk", nil)
	own := tok.Reveal()
	foreign := "Xq3-vB9_tR2mK8wLpZ0aYc5nHs7dEf4gJi6uOk1lMzQ" // secrets.token_urlsafe(32)
	id := latchkey.NewID("key", time.Unix(1_700_000_000, 0))
	for _, c := range []struct{ in, want string }{
		{"/v1/keys/" + id + "/usage", "/v1/keys/" + id + "/usage"},
		{"/v1/keys/" + id, "/v1/keys/" + id},
		{"/keys/openai", "/keys/openai"},
		{"/v1/secrets/openai/versions", "/v1/secrets/openai/versions"},
		{"/v1/keys/verify", "/v1/keys/verify"},
		{"/", "/"},
		{"/keys/" + foreign, "/keys/[redacted]"},
		{"/v1/keys/" + foreign + "/rotate", "/v1/keys/[redacted]/rotate"},
		{"/" + foreign, "/[redacted]"},
		{"/v1/keys/" + own, "/v1/keys/[redacted]"},
		// A base64 key holds '/': its pieces are short, the run is not.
		{"/keys/q3Zk8Lm/Xw2+Pn4Rt==", "/keys/[redacted]/[redacted]"},
		{"/keys/" + foreign[:15], "/keys/" + foreign[:15]},
		{"/keys/" + foreign[:16], "/keys/[redacted]"},
	} {
		if got := logPath(c.in); got != c.want {
			t.Errorf("logPath(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func FuzzDecodeRevoke(f *testing.F) {
	for _, s := range bodySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		reason, err := decodeRevoke(b)
		checkDecoded(t, b, decodeRevoke, revokeJSON, reason, err)
	})
}

func FuzzDecodeCreateTenant(f *testing.F) {
	for _, s := range bodySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodeCreateTenant(b)
		checkDecoded(t, b, decodeCreateTenant, tenantJSON, p, err)
	})
}

func FuzzDecodeVerify(f *testing.F) {
	for _, s := range bodySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := decodeVerify(b)
		checkDecoded(t, b, decodeVerify, verifyJSON, req, err)
		if err == nil && (req.Cost < 0 || req.Cost > 1_000_000_000 || checkVerifyTarget(req.Scopes, req.Resource) != nil || req.IP.Is4In6()) {
			t.Fatalf("accepted out-of-range request %+v", req)
		}
	})
}

func FuzzDecodeCreatePolicy(f *testing.F) {
	for _, s := range bodySeeds {
		f.Add([]byte(s))
	}
	decode := func(b []byte) (createdPolicy, error) {
		name, p, err := decodeCreatePolicy(b)
		return createdPolicy{name, p}, err
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decode(b)
		checkDecoded(t, b, decode, createPolicyJSON, c, err)
		if err == nil && (c.name == "" || c.p.ClearQuota) {
			t.Fatalf("accepted %+v", c)
		}
	})
}

func FuzzDecodeUpdatePolicy(f *testing.F) {
	for _, s := range bodySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodeUpdatePolicy(b)
		checkDecoded(t, b, decodeUpdatePolicy, updatePolicyJSON, p, err)
	})
}

func FuzzDecodePutOwner(f *testing.F) {
	for _, s := range bodySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodePutOwner(b)
		checkDecoded(t, b, decodePutOwner, ownerJSON, p, err)
	})
}

func FuzzQueryParam(f *testing.F) {
	f.Add("scope=data:read&resource=agent%3Ax&proxy=nginx", "scope")
	f.Add("a=%zz&scope=+", "scope")
	f.Fuzz(func(t *testing.T, raw, name string) {
		_ = queryParam(raw, name)
		var buf [8]string
		for _, s := range splitScopes(raw, buf[:0]) {
			if s == "" {
				t.Fatal("splitScopes returned a blank scope")
			}
		}
	})
}

func TestDecodeCreateKeyReadsEveryField(t *testing.T) {
	p, err := decodeCreateKey([]byte(bodySeeds[8]))
	if err != nil {
		t.Fatal(err)
	}
	if *p.Name != "n" || *p.Owner != "o" || *p.Environment != "production" || len(*p.Scopes) != 2 ||
		len(*p.Resources) != 1 || len(*p.IPAllow) != 1 || p.ExpiresAt == nil || p.Prefix != "sk_live" || (*p.Meta)["k"] == nil {
		t.Fatalf("decoded %+v", p)
	}
	u, err := decodeUpdateKey([]byte(`{"expires_at": null}`))
	if err != nil || u.ExpiresAt == nil || !u.ExpiresAt.IsZero() {
		t.Fatalf("null expires_at must mean 'remove the expiry': %+v %v", u, err)
	}
	u, err = decodeUpdateKey([]byte(`{"name": "x"}`))
	if err != nil || u.ExpiresAt != nil || u.Scopes != nil {
		t.Fatalf("absent fields must stay unchanged: %+v %v", u, err)
	}
}

func TestClientIP(t *testing.T) {
	trusted, _ := ParseTrustedProxies("10.0.0.0/8, 192.0.2.1")
	s := &Server{trusted: trusted}
	tests := []struct {
		name   string
		remote string
		xff    []string
		real   string
		want   string
	}{
		{"DirectClient", "203.0.113.5:1234", nil, "", "203.0.113.5"},
		{"UntrustedPeerCannotClaimAnAddress", "203.0.113.5:1234", []string{"198.51.100.1"}, "198.51.100.2", "203.0.113.5"},
		{"TrustedProxyForwards", "10.0.0.2:80", []string{"198.51.100.1"}, "", "198.51.100.1"},
		{"RightmostUntrustedHopWins", "10.0.0.2:80", []string{"6.6.6.6, 198.51.100.1, 10.1.1.1"}, "", "198.51.100.1"},
		{"SeveralHeaderLines", "10.0.0.2:80", []string{"6.6.6.6", "198.51.100.1"}, "", "198.51.100.1"},
		{"GarbageStopsTheWalk", "10.0.0.2:80", []string{"198.51.100.1, junk, 10.2.2.2"}, "", "10.2.2.2"},
		{"RealIPFromTrustedProxy", "192.0.2.1:80", nil, "198.51.100.7", "198.51.100.7"},
		{"IPv6Peer", "[2001:db8::1]:443", nil, "", "2001:db8::1"},
		{"MappedPeer", "[::ffff:203.0.113.5]:443", nil, "", "203.0.113.5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: tt.remote, Header: http.Header{}}
			if tt.xff != nil {
				r.Header["X-Forwarded-For"] = tt.xff
			}
			if tt.real != "" {
				r.Header.Set("X-Real-IP", tt.real)
			}
			if got := s.clientIP(r); got != netip.MustParseAddr(tt.want) {
				t.Fatalf("clientIP = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestCredentialHeaders(t *testing.T) {
	for name, h := range map[string]http.Header{
		"Bearer":          {"Authorization": {"Bearer k1"}},
		"LowerCaseBearer": {"Authorization": {"bearer k1"}},
		"XAPIKey":         {"X-Api-Key": {" k1 "}},
	} {
		if got := credential(&http.Request{Header: h}); got != "k1" {
			t.Errorf("%s: credential = %q", name, got)
		}
	}
	if got := credential(&http.Request{Header: http.Header{"Authorization": {"Basic abc"}}}); got != "" {
		t.Errorf("Basic auth taken as a key: %q", got)
	}
}

// FuzzListFilters feeds arbitrary queries to the audit and security-event
// filters: they either accept or answer invalid, never anything else.
func FuzzListFilters(f *testing.F) {
	f.Add("since=2026-01-02T15:04:05Z&until=2026-02-01T00:00:00.5Z&kind=new_network&limit=10")
	f.Add("after=12&action=key.created&key_id=key_X&result=success")
	f.Add("since=yesterday&limit=-1&after=%zz")
	f.Fuzz(func(t *testing.T, raw string) {
		q, _ := url.ParseQuery(raw)
		if _, err := auditFilter(q); err != nil && latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Fatalf("auditFilter(%q): %v", raw, err)
		}
		sf, err := securityFilter(q)
		if err != nil && latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Fatalf("securityFilter(%q): %v", raw, err)
		}
		if err == nil && sf.Limit < 0 {
			t.Fatalf("securityFilter(%q) accepted limit %d", raw, sf.Limit)
		}
	})
}

func FuzzDecodeCreateWebhook(f *testing.F) {
	for _, s := range bodySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodeCreateWebhook(b)
		checkDecoded(t, b, decodeCreateWebhook, webhookJSON, p, err)
		if err == nil && (latchkey.ValidateWebhookURL(p.URL) != nil || p.Events == nil) {
			t.Fatalf("accepted %+v", p)
		}
	})
}

func FuzzDecodeImportQuery(f *testing.F) {
	for _, s := range []string{"", "format=env", "format=plain&owner=o&scopes=a:b,c:d&name=n&environment=prod", "format=jsonl&owner=x", "format=env&owner=o", "format=csv", "bogus=1", "owner=a&owner=b", "scopes=,,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		p, err := decodeImportQuery(q)
		checkDecode(t, err)
		if err == nil && (!keys.ValidImportFormat(p.Format) || p.Format == keys.ImportEnv && p.Owner != nil) {
			t.Fatalf("%q decoded to %+v", raw, p)
		}
	})
}
