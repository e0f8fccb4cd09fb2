package httpapi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/audit"
	"github.com/latchkeyhq/latchkey/httpapi"
	"github.com/latchkeyhq/latchkey/keyring"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/secrets"
	"github.com/latchkeyhq/latchkey/store/sqlite"
)

// failingWrites is a store whose write transactions fail while fail is
// set, as a full disk would make them.
type failingWrites struct {
	keys.Store
	fail atomic.Bool
}

func (s *failingWrites) Update(ctx context.Context, fn func(keys.Tx) error) error {
	if s.fail.Load() {
		return latchkey.Errorf(latchkey.EUnavailable, "disk full")
	}
	return s.Store.Update(ctx, fn)
}

// GET /keys/{provider} answers 503 unavailable, without the value, when the
// audit log cannot take its read; it answers again once the log can, and
// the chain then holds the reads answered before and verifies.
func TestSeedKeyUnavailableWhenReadsCannotBeAudited(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	master, _ := keyring.GenerateMasterKey()
	kr, err := keyring.Open(ctx, latchkey.Narrow[keyring.Tx](db), master, keyring.Options{})
	if err != nil {
		t.Fatal(err)
	}
	store := &failingWrites{Store: latchkey.Narrow[keys.Tx](db)}
	sec := secrets.New(secrets.Options{Store: latchkey.Narrow[secrets.Tx](store), Sealer: kr, ReadAuditInterval: time.Hour})
	svc := keys.New(keys.Options{Store: store})
	aud := audit.New(audit.Options{Store: latchkey.Narrow[audit.Tx](store), BeforeRead: sec.FlushReadAudits})
	t.Cleanup(func() { sec.Close(ctx); aud.Close(ctx) })
	root, _, _, err := svc.Bootstrap(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	actor, err := svc.Authenticate(ctx, root.Reveal(), netip.Addr{}, "")
	if err != nil {
		t.Fatal(err)
	}
	const value = "sk-proj-seed-unavailable-0123"
	if _, err := sec.PutSecret(ctx, actor, "openai", secrets.SecretParams{Value: value}); err != nil {
		t.Fatal(err)
	}
	srv := httpapi.New(httpapi.Config{Keys: svc, Secrets: sec, Audit: aud, Keyring: kr})
	get := func(path string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", path, nil)
		req.RemoteAddr = "127.0.0.1:5555"
		req.Header.Set("Authorization", "Bearer "+root.Reveal())
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		return rec
	}
	if r := get("/keys/openai"); r.Code != 200 || !strings.Contains(r.Body.String(), value) {
		t.Fatalf("GET /keys/openai: %d %s", r.Code, r.Body)
	}
	store.fail.Store(true)
	if err := sec.FlushReadAudits(ctx); latchkey.ErrorCode(err) != latchkey.EUnavailable {
		t.Fatalf("flush with failing writes: %v", err)
	}
	for _, path := range []string{"/keys/openai", "/llm-keys", "/v1/secrets/openai"} {
		r := get(path)
		if r.Code != http.StatusServiceUnavailable || !strings.Contains(r.Body.String(), `"unavailable"`) || strings.Contains(r.Body.String(), value) {
			t.Fatalf("GET %s while reads cannot be audited: %d %s", path, r.Code, r.Body)
		}
	}
	store.fail.Store(false)
	if err := sec.FlushReadAudits(ctx); err != nil {
		t.Fatal(err)
	}
	if r := get("/keys/openai"); r.Code != 200 {
		t.Fatalf("GET /keys/openai after the audit log recovered: %d %s", r.Code, r.Body)
	}
	a := get("/v1/audit")
	if n := strings.Count(a.Body.String(), `"action":"secret.read"`); n != 2 {
		t.Fatalf("%d secret.read events, want 2 (one per flush): %s", n, a.Body)
	}
	if v := get("/v1/audit/verify"); v.Code != 200 || !strings.Contains(v.Body.String(), `"ok":true`) {
		t.Fatalf("verify: %d %s", v.Code, v.Body)
	}
}
