package keys_test

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/internal/fakeclock"
	"github.com/latchkeyhq/latchkey/keyring"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/secrets"
	"github.com/latchkeyhq/latchkey/store/sqlite"
)

// rotationSetup is two key services on one store (two servers sharing a
// database), a secret service as the broker, and tenant acme's admin.
type rotationSetup struct {
	a, b    *keys.Service
	secrets *secrets.Service
	clock   *fakeclock.Clock
	admin   *latchkey.Actor
}

func newRotationSetup(t *testing.T) *rotationSetup {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "rot.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clock := fakeclock.New(t0)
	master, err := keyring.GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	kr, err := keyring.Open(ctx, latchkey.Narrow[keyring.Tx](db), master, keyring.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sec := secrets.New(secrets.Options{Store: latchkey.Narrow[secrets.Tx](db), Sealer: kr, Now: clock.Now})
	t.Cleanup(func() { sec.Close(context.Background()) })
	onSecret := func(tenant, name string) {
		sec.Apply(latchkey.Change{Kind: latchkey.ChangeSecret, Tenant: tenant, Name: name})
	}
	newSvc := func() *keys.Service {
		return keys.New(keys.Options{Store: latchkey.Narrow[keys.Tx](db), Now: clock.Now, Sealer: kr, OnSecret: onSecret})
	}
	r := &rotationSetup{a: newSvc(), b: newSvc(), secrets: sec, clock: clock}
	root, _, _, err := r.a.Bootstrap(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	op, err := r.a.Authenticate(ctx, root.Reveal(), netip.Addr{}, "tenants:admin")
	if err != nil {
		t.Fatal(err)
	}
	_, _, tok, err := r.a.CreateTenant(ctx, op, "acme", "")
	if err != nil {
		t.Fatal(err)
	}
	if r.admin, err = r.a.Authenticate(ctx, tok.Reveal(), netip.Addr{}, "keys:write"); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rotationSetup) create(t *testing.T, name string, scopes, resources []string) (*latchkey.Key, string) {
	t.Helper()
	k, tok, err := r.a.CreateKey(context.Background(), r.admin, keys.CreateParams{Settings: keys.Settings{Name: &name, Scopes: &scopes, Resources: &resources}})
	if err != nil {
		t.Fatal(err)
	}
	return k, tok.Reveal()
}

func (r *rotationSetup) code(t *testing.T, svc *keys.Service, key string) string {
	t.Helper()
	v, err := svc.Verify(context.Background(), keys.VerifyRequest{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	return v.Code
}

// At the interval a successor exists, both keys work during the grace,
// the old one stops after it; the successor's plaintext is readable
// through the broker by the chosen key only; and two servers sharing the
// store rotate once.
func TestScheduledRotation(t *testing.T) {
	r := newRotationSetup(t)
	ctx := context.Background()
	agent, oldPlain := r.create(t, "Billing Agent", []string{"data:read"}, nil)
	reader, readerPlain := r.create(t, "deployer", []string{"secrets:read"}, []string{"secret:key-billing-agent"})
	_, otherPlain := r.create(t, "other", []string{"secrets:read"}, nil) // may read every secret, but not this one
	grace := 2 * time.Hour
	rot, err := r.a.SetRotation(ctx, r.admin, agent.ID, keys.RotationParams{Interval: 30 * 24 * time.Hour, Grace: &grace, Reader: reader.ID})
	if err != nil {
		t.Fatal(err)
	}
	if rot.Secret != "key-billing-agent" || !rot.NextAt.Equal(t0.Add(30*24*time.Hour)) {
		t.Fatalf("rotation %+v", rot)
	}

	// Not due yet: nothing happens.
	r.clock.Advance(30*24*time.Hour - time.Second)
	if n, err := r.a.RotateDue(ctx); err != nil || n != 0 {
		t.Fatalf("before the interval: %d rotated, %v", n, err)
	}
	// Due: the two servers race; one rotates.
	r.clock.Advance(time.Second)
	done := make(chan int, 2)
	for _, svc := range []*keys.Service{r.a, r.b} {
		go func() {
			n, err := svc.RotateDue(ctx)
			if err != nil {
				t.Error(err)
			}
			done <- n
		}()
	}
	if total := <-done + <-done; total != 1 {
		t.Fatalf("two servers rotated %d times, want once", total)
	}
	again, err := r.a.GetRotation(ctx, r.admin, agent.ID)
	if latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Fatalf("the schedule still names the old key: %+v, %v", again, err)
	}
	old, err := r.a.GetKey(ctx, r.admin, agent.ID)
	if err != nil || old.RotatedTo == "" {
		t.Fatalf("old key after the rotation: %+v, %v", old, err)
	}
	rot, err = r.a.GetRotation(ctx, r.admin, old.RotatedTo)
	if err != nil || rot.KeyID != old.RotatedTo || !rot.NextAt.Equal(t0.Add(60*24*time.Hour)) {
		t.Fatalf("schedule after the rotation: %+v, %v", rot, err)
	}

	// The successor, through the broker, for the chosen key only.
	readerActor, err := r.a.Authenticate(ctx, readerPlain, netip.Addr{}, "secrets:read")
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.secrets.ReadSecret(ctx, readerActor, "key-billing-agent", 0)
	if err != nil {
		t.Fatalf("the reader cannot fetch the successor: %v", err)
	}
	newPlain := got.Value
	otherActor, err := r.a.Authenticate(ctx, otherPlain, netip.Addr{}, "secrets:read")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.secrets.ReadSecret(ctx, otherActor, "key-billing-agent", 0); latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Fatalf("another key read the successor: %v", err)
	}
	if all, err := r.secrets.ReadSecrets(ctx, otherActor); err != nil || len(all) != 0 {
		t.Fatalf("another key's secret listing holds %d values, %v", len(all), err)
	}

	// Both work during the grace, on both servers; the old stops after.
	for _, svc := range []*keys.Service{r.a, r.b} {
		if c := r.code(t, svc, oldPlain); c != latchkey.CodeValid {
			t.Fatalf("old key in its grace: %s", c)
		}
		if c := r.code(t, svc, newPlain); c != latchkey.CodeValid {
			t.Fatalf("successor: %s", c)
		}
	}
	r.clock.Advance(grace)
	if c := r.code(t, r.b, oldPlain); c != latchkey.CodeRevoked {
		t.Fatalf("old key after the grace: %s", c)
	}
	if c := r.code(t, r.b, newPlain); c != latchkey.CodeValid {
		t.Fatalf("successor after the grace: %s", c)
	}

	// The next interval rotates the successor, into the next version.
	r.clock.Advance(30 * 24 * time.Hour)
	if n, err := r.b.RotateDue(ctx); err != nil || n != 1 {
		t.Fatalf("second rotation: %d, %v", n, err)
	}
	next, err := r.secrets.ReadSecret(ctx, readerActor, "key-billing-agent", 0)
	if err != nil || next.Value == newPlain || next.Version != 2 {
		t.Fatalf("second successor: version %d, %v", next.Version, err)
	}
}

// A schedule whose key was revoked is dropped at its due time, and the
// bounds and conflicts of a schedule are refused.
func TestRotationScheduleRules(t *testing.T) {
	r := newRotationSetup(t)
	ctx := context.Background()
	k, _ := r.create(t, "svc", []string{"data:read"}, nil)
	reader, _ := r.create(t, "no-secrets", []string{"data:read"}, nil)
	day := 24 * time.Hour
	for _, p := range []keys.RotationParams{
		{Interval: time.Minute},
		{Interval: day, Grace: ptr(time.Second)},
		{Interval: day, Grace: ptr(2 * day)},
		{Interval: day, Secret: "Not A Name"},
		{Interval: day, Reader: reader.ID}, // may not read the secret
		{Interval: day, Reader: "key_01ARZ3NDEKTSV4RRFFQ69G5FAV"},
	} {
		if _, err := r.a.SetRotation(ctx, r.admin, k.ID, p); latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Errorf("SetRotation(%+v) = %v, want invalid", p, err)
		}
	}
	if _, err := r.a.SetRotation(ctx, r.admin, k.ID, keys.RotationParams{Interval: day, Secret: "shared"}); err != nil {
		t.Fatal(err)
	}
	k2, _ := r.create(t, "svc2", []string{"data:read"}, nil)
	if _, err := r.a.SetRotation(ctx, r.admin, k2.ID, keys.RotationParams{Interval: day, Secret: "shared"}); latchkey.ErrorCode(err) != latchkey.EConflict {
		t.Fatalf("a second rotation into one secret: %v", err)
	}
	if _, err := r.a.RevokeKey(ctx, r.admin, k.ID, "gone"); err != nil {
		t.Fatal(err)
	}
	r.clock.Advance(day)
	if n, err := r.a.RotateDue(ctx); err != nil || n != 0 {
		t.Fatalf("due schedule of a revoked key: %d rotated, %v", n, err)
	}
	if _, err := r.a.GetRotation(ctx, r.admin, k.ID); latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Fatalf("the schedule of a revoked key stayed: %v", err)
	}
	if err := r.a.DeleteRotation(ctx, r.admin, k2.ID); latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Fatalf("DeleteRotation without a schedule: %v", err)
	}
}

// Rotating a scheduled key by hand moves its schedule to the successor,
// due one interval later.
func TestManualRotationMovesTheSchedule(t *testing.T) {
	r := newRotationSetup(t)
	ctx := context.Background()
	k, _ := r.create(t, "svc", []string{"data:read"}, nil)
	if _, err := r.a.SetRotation(ctx, r.admin, k.ID, keys.RotationParams{Interval: 7 * 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	r.clock.Advance(24 * time.Hour)
	succ, _, err := r.a.RotateKey(ctx, r.admin, k.ID, keys.RotateParams{})
	if err != nil {
		t.Fatal(err)
	}
	rot, err := r.a.GetRotation(ctx, r.admin, succ.ID)
	if err != nil || !rot.NextAt.Equal(t0.Add(8*24*time.Hour)) {
		t.Fatalf("schedule after a manual rotation: %+v, %v", rot, err)
	}
}
