package storetest

import (
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/ui"
)

func init() {
	moreTests = append(moreTests, []conformanceTest{
		{"SessionRoundTrips", testSessionRoundTrip},
		{"SessionDuplicateHashConflicts", testSessionDuplicate},
		{"SessionTouchMovesIdleEnd", testSessionTouch},
		{"SessionDeleteIsIdempotent", testSessionDelete},
		{"SessionsExpiredAreSwept", testSessionsExpired},
		{"SessionCreateRollsBack", testSessionRollback},
	}...)
}

// sess is the dashboard's view of a store: transactions of its own
// contract, as the server wires it.
func sess(s keys.Store) latchkey.Store[ui.SessionTx] { return latchkey.Narrow[ui.SessionTx](s) }

func sessionHash(name string) [32]byte { return sha256.Sum256([]byte("session " + name)) }

type storedSession struct {
	tenant, keyID   string
	idle, expiresAt time.Time
}

// readSession reads a session in a View; ok is false when it is not
// found, and any other error fails the test.
func readSession(t *testing.T, s keys.Store, h [32]byte) (storedSession, bool) {
	t.Helper()
	var got storedSession
	err := sess(s).View(t.Context(), func(tx ui.SessionTx) (err error) {
		got.tenant, got.keyID, got.idle, got.expiresAt, err = tx.Session(h)
		return err
	})
	if latchkey.ErrorCode(err) == latchkey.ENotFound {
		return got, false
	}
	if err != nil {
		t.Fatalf("Session: %v", err)
	}
	return got, true
}

func createSession(t *testing.T, s keys.Store, h [32]byte, tenant, keyID string, idle, exp time.Time) {
	t.Helper()
	update(t, sess(s), func(tx ui.SessionTx) error { return tx.CreateSession(h, tenant, keyID, idle, exp) })
}

func testSessionRoundTrip(t *testing.T, s keys.Store) {
	h := sessionHash("a")
	idle := t0.Add(30*time.Minute + 7*time.Microsecond)
	exp := t0.In(time.FixedZone("x", 3600)).Add(12 * time.Hour)
	createSession(t, s, h, "acme", "key_a", idle, exp)
	got, ok := readSession(t, s, h)
	if !ok {
		t.Fatal("the session just created is not found")
	}
	want := storedSession{"acme", "key_a", idle.UTC(), exp.UTC()}
	if got.tenant != want.tenant || got.keyID != want.keyID || !got.idle.Equal(want.idle) || !got.expiresAt.Equal(want.expiresAt) ||
		got.idle.Location() != time.UTC || got.expiresAt.Location() != time.UTC {
		t.Errorf("Session = %+v, want %+v in UTC to the microsecond", got, want)
	}
	if _, ok := readSession(t, s, sessionHash("other")); ok {
		t.Error("a session that was never created is found")
	}
}

func testSessionDuplicate(t *testing.T, s keys.Store) {
	h := sessionHash("a")
	createSession(t, s, h, "acme", "key_a", t0.Add(time.Hour), t0.Add(2*time.Hour))
	err := sess(s).Update(t.Context(), func(tx ui.SessionTx) error {
		return tx.CreateSession(h, "globex", "key_b", t0.Add(time.Hour), t0.Add(2*time.Hour))
	})
	if latchkey.ErrorCode(err) != latchkey.EConflict {
		t.Fatalf("CreateSession with a stored hash: %v, want conflict", err)
	}
	if got, _ := readSession(t, s, h); got.keyID != "key_a" {
		t.Errorf("the conflicting create changed the session to %+v", got)
	}
}

func testSessionTouch(t *testing.T, s keys.Store) {
	h := sessionHash("a")
	createSession(t, s, h, "acme", "key_a", t0.Add(time.Minute), t0.Add(2*time.Hour))
	createSession(t, s, sessionHash("b"), "acme", "key_a", t0.Add(time.Minute), t0.Add(2*time.Hour))
	update(t, sess(s), func(tx ui.SessionTx) error { return tx.TouchSession(h, t0.Add(time.Hour)) })
	if got, _ := readSession(t, s, h); !got.idle.Equal(t0.Add(time.Hour)) || !got.expiresAt.Equal(t0.Add(2*time.Hour)) {
		t.Errorf("after TouchSession: idle %v, expires %v; want the idle end moved only", got.idle, got.expiresAt)
	}
	if got, _ := readSession(t, s, sessionHash("b")); !got.idle.Equal(t0.Add(time.Minute)) {
		t.Errorf("TouchSession moved another session's idle end to %v", got.idle)
	}
	err := sess(s).Update(t.Context(), func(tx ui.SessionTx) error { return tx.TouchSession(sessionHash("gone"), t0) })
	if latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Errorf("TouchSession of a missing session: %v, want not_found", err)
	}
}

func testSessionDelete(t *testing.T, s keys.Store) {
	h := sessionHash("a")
	createSession(t, s, h, "acme", "key_a", t0.Add(time.Hour), t0.Add(2*time.Hour))
	createSession(t, s, sessionHash("b"), "acme", "key_a", t0.Add(time.Hour), t0.Add(2*time.Hour))
	for range 2 {
		update(t, sess(s), func(tx ui.SessionTx) error { return tx.DeleteSession(h) })
	}
	if _, ok := readSession(t, s, h); ok {
		t.Error("a deleted session is still found")
	}
	if _, ok := readSession(t, s, sessionHash("b")); !ok {
		t.Error("deleting one session took another")
	}
}

func testSessionsExpired(t *testing.T, s keys.Store) {
	createSession(t, s, sessionHash("idle"), "acme", "key_a", t0, t0.Add(time.Hour)) // idle end reached
	createSession(t, s, sessionHash("old"), "acme", "key_a", t0.Add(time.Hour), t0)  // absolute end reached
	createSession(t, s, sessionHash("live"), "globex", "key_b", t0.Add(time.Second), t0.Add(time.Hour))
	var n int
	update(t, sess(s), func(tx ui.SessionTx) (err error) {
		n, err = tx.DeleteExpiredSessions(t0)
		return err
	})
	if n != 2 {
		t.Errorf("DeleteExpiredSessions = %d, want 2", n)
	}
	for name, want := range map[string]bool{"idle": false, "old": false, "live": true} {
		if _, ok := readSession(t, s, sessionHash(name)); ok != want {
			t.Errorf("session %s found = %v after the sweep, want %v", name, ok, want)
		}
	}
}

func testSessionRollback(t *testing.T, s keys.Store) {
	h := sessionHash("a")
	err := sess(s).Update(t.Context(), func(tx ui.SessionTx) error {
		if err := tx.CreateSession(h, "acme", "key_a", t0.Add(time.Hour), t0.Add(2*time.Hour)); err != nil {
			return err
		}
		return errSessionRollback
	})
	if err != errSessionRollback {
		t.Fatalf("Update = %v, want the function's error", err)
	}
	if _, ok := readSession(t, s, h); ok {
		t.Error("a session of a rolled-back transaction was kept")
	}
}

var errSessionRollback = errors.New("roll back")
