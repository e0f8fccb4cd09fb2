package main

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// The crash campaign (docs/reliability.md): LATCHKEY_CAMPAIGN_ROUNDS
// rounds (5 here, 50 in scripts/campaign crash --long) of a server process
// under mixed write load — creates, updates, revokes, verifications and a
// credit balance spent from several connections — killed with SIGKILL at a
// random moment, then restarted on the same database. A client-side ledger
// holds every write the server acknowledged; after each restart:
//
//   - no acknowledged write is lost (each created key exists, with its
//     last acknowledged name or one whose update was in flight);
//   - no key whose revocation was acknowledged verifies, then or ever;
//   - no credit balance is overspent: a key with N credits is admitted at
//     most N times in total across every round.

// ledgerKey is one key a worker created, as the server acknowledged it.
type ledgerKey struct {
	id, key string
	name    string // the last acknowledged name
	// inflight is a name sent when the server died: it may or may not
	// have been written.
	inflight      string
	revoked       bool // the revocation was acknowledged
	revokePending bool // a revocation was sent when the server died
}

type crashLedger struct {
	mu   sync.Mutex
	keys []*ledgerKey
}

func (l *crashLedger) add(k *ledgerKey) {
	l.mu.Lock()
	l.keys = append(l.keys, k)
	l.mu.Unlock()
}

func (l *crashLedger) snapshot() []*ledgerKey {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*ledgerKey(nil), l.keys...)
}

// crashStats counts what the campaign did, for its report line.
type crashStats struct {
	creates, updates, revokes, verifies, creditValid atomic.Int64
	revokedVerifying, unexpected                     atomic.Int64
}

func TestCampaignCrash(t *testing.T) {
	rounds := campaignInt(t, "ROUNDS", 5)
	workers := campaignInt(t, "WORKERS", 4)
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("LATCHKEY_CAMPAIGN_SEED"); v != "" {
		fmt.Sscan(v, &seed)
	}
	// Each credit key's balance: small, so that balances run out (and
	// new ones are issued) during the campaign.
	credits := int64(campaignInt(t, "CREDITS", 10))
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("crash campaign: %d rounds, %d workers, seed %d", rounds, workers, seed)

	dir, err := os.MkdirTemp(e2eRoot, "campaign-crash-")
	if err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "latchkey.db")
	// The campaign verifies revoked keys on purpose, hundreds a minute
	// from 127.0.0.1: the brute-force guard would block it.
	const flags = " --guard-threshold 0"
	url, root, proc := startChildArgs(t, dir, db, 0, flags)
	registerKey(root)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 2 * workers}}
	ts := &testServer{URL: url, Root: root}
	admin := ts.mustTenant(t, "acme")
	// Two credit keys, spent in turn; a new pair when both run dry, so
	// every round spends credits.
	type creditKey struct {
		key       string
		valid     atomic.Int64 // VALID answers across all rounds
		exhausted atomic.Bool  // answered QUOTA_EXCEEDED
	}
	var credit []*creditKey
	newCredit := func() {
		for range 2 {
			_, k := ts.mustCreate(t, admin, map[string]any{"name": "credits", "quota": map[string]any{"remaining": credits}})
			credit = append(credit, &creditKey{key: k})
		}
	}
	newCredit()
	proc.kill()

	ledgers := make([]*crashLedger, workers)
	for i := range ledgers {
		ledgers[i] = &crashLedger{}
	}
	var st crashStats
	fail := func(format string, args ...any) {
		st.unexpected.Add(1)
		t.Errorf(format, args...)
	}

	for round := 1; round <= rounds && !t.Failed(); round++ {
		url, _, proc := startChildArgs(t, dir, db, round, flags)
		ts.URL = url
		// Check the last round's ledger against what this process serves.
		checkLedger(t, client, url, admin, ledgers, round == rounds || round%10 == 0, rng, &st)
		if credit[len(credit)-1].exhausted.Load() && credit[len(credit)-2].exhausted.Load() {
			newCredit()
		}
		creditPair := credit[len(credit)-2:]

		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range workers {
			wrng := rand.New(rand.NewPCG(rng.Uint64(), uint64(w)))
			wg.Go(func() { crashWorker(client, url, admin, ledgers[w], wrng, stop, &st, round, w, fail) })
		}
		for i, c := range creditPair {
			body := map[string]any{"key": c.key}
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					r, err := callErr(client, "POST", url+"/v1/keys/verify", "", body)
					if err != nil {
						return // the server is gone: the answer never came
					}
					switch code := r.str("code"); {
					case r.Status != 200:
						fail("credit verify %d: %d %s", i, r.Status, r.Raw)
						return
					case code == latchkey.CodeValid:
						c.valid.Add(1)
						st.creditValid.Add(1)
					case code == latchkey.CodeQuotaExceeded:
						c.exhausted.Store(true)
						return
					default:
						fail("credit verify %d: %s", i, code)
						return
					}
				}
			})
		}
		// Kill at a random moment of the load.
		time.Sleep(time.Duration(200+rng.IntN(800)) * time.Millisecond)
		proc.kill()
		close(stop)
		wg.Wait()
		client.CloseIdleConnections()
		for _, c := range credit {
			if n := c.valid.Load(); n > credits {
				t.Fatalf("round %d: a key with %d credits was admitted %d times", round, credits, n)
			}
		}
	}
	// The last check, of every key, on a fresh process.
	url, _, proc = startChildArgs(t, dir, db, rounds+1, flags)
	defer proc.kill()
	checkLedger(t, client, url, admin, ledgers, true, rng, &st)
	var keys int
	for _, l := range ledgers {
		keys += len(l.snapshot())
	}
	// Overspending fails the round it happens in; a crash may forfeit
	// credits reserved but not yet spent, which is allowed and counted.
	var spent, forfeited int64
	exhausted := 0
	for _, c := range credit {
		spent = max(spent, c.valid.Load())
		if c.exhausted.Load() {
			exhausted++
			forfeited += credits - c.valid.Load()
		}
	}
	campaignReport(t, "crash", "rounds=%d kills=%d keys=%d creates=%d updates=%d revokes=%d verifies=%d credit_valid=%d credit_keys=%d exhausted=%d max_admitted_per_key=%d/%d forfeited_by_crashes=%d lost=%d revoked_verifying=%d unexpected=%d seed=%d",
		rounds, rounds, keys, st.creates.Load(), st.updates.Load(), st.revokes.Load(), st.verifies.Load(), st.creditValid.Load(), len(credit), exhausted, spent, credits, forfeited,
		0, st.revokedVerifying.Load(), st.unexpected.Load(), seed)
}

// crashWorker runs one connection's share of the mixed load until the
// server dies or stop is closed. It touches only its own ledger's keys,
// one request at a time, so each key's acknowledged state is exact.
func crashWorker(c *http.Client, url, admin string, l *crashLedger, rng *rand.Rand, stop <-chan struct{}, st *crashStats, round, w int, fail func(string, ...any)) {
	var live []*ledgerKey
	for _, k := range l.snapshot() {
		if !k.revoked && !k.revokePending {
			live = append(live, k)
		}
	}
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		op := rng.IntN(10)
		if len(live) == 0 {
			op = 0
		}
		switch {
		case op < 3: // create
			name := fmt.Sprintf("r%d-w%d-%d", round, w, n)
			r, err := callErr(c, "POST", url+"/v1/keys", admin, map[string]any{"name": name, "scopes": []string{"data:read"}})
			if err != nil {
				return // unacknowledged: it may or may not exist
			}
			if r.Status != http.StatusCreated {
				fail("create: %d %s", r.Status, r.Raw)
				return
			}
			k := &ledgerKey{id: r.str("id"), key: r.str("key"), name: name}
			l.add(k)
			live = append(live, k)
			st.creates.Add(1)
		case op < 4: // revoke, then the key must not verify
			i := rng.IntN(len(live))
			k := live[i]
			k.revokePending = true
			r, err := callErr(c, "POST", url+"/v1/keys/"+k.id+"/revoke", admin, nil)
			if err != nil {
				return
			}
			if r.Status != http.StatusOK {
				fail("revoke %s: %d %s", k.id, r.Status, r.Raw)
				return
			}
			k.revoked, k.revokePending = true, false
			live = append(live[:i], live[i+1:]...)
			st.revokes.Add(1)
			v, err := callErr(c, "POST", url+"/v1/keys/verify", "", map[string]any{"key": k.key})
			if err != nil {
				return
			}
			if v.str("code") != latchkey.CodeRevoked {
				st.revokedVerifying.Add(1)
				fail("key %s verifies %s right after its revocation was acknowledged", k.id, v.str("code"))
			}
		case op < 6: // update
			k := live[rng.IntN(len(live))]
			name := fmt.Sprintf("r%d-w%d-%d-renamed", round, w, n)
			k.inflight = name
			r, err := callErr(c, "PATCH", url+"/v1/keys/"+k.id, admin, map[string]any{"name": name})
			if err != nil {
				return
			}
			if r.Status != http.StatusOK {
				fail("update %s: %d %s", k.id, r.Status, r.Raw)
				return
			}
			k.name, k.inflight = name, ""
			st.updates.Add(1)
		default: // verify a live key
			k := live[rng.IntN(len(live))]
			v, err := callErr(c, "POST", url+"/v1/keys/verify", "", map[string]any{"key": k.key, "scopes": []string{"data:read"}})
			if err != nil {
				return
			}
			if v.str("code") != latchkey.CodeValid {
				fail("live key %s verifies %s (%d)", k.id, v.str("code"), v.Status)
				return
			}
			st.verifies.Add(1)
		}
	}
}

// checkLedger compares what a restarted server serves with the ledger:
// every key when all is set, else the keys of the last round's work and a
// sample of older ones. An in-flight (unacknowledged) change may have
// landed or not; it is settled here to what the server says.
func checkLedger(t *testing.T, c *http.Client, url, admin string, ledgers []*crashLedger, all bool, rng *rand.Rand, st *crashStats) {
	t.Helper()
	var check []*ledgerKey
	for _, l := range ledgers {
		ks := l.snapshot()
		for i, k := range ks {
			if all || i >= len(ks)-40 || k.inflight != "" || k.revokePending || rng.IntN(10) == 0 {
				check = append(check, k)
			}
		}
	}
	for _, k := range check {
		g, err := callErr(c, "GET", url+"/v1/keys/"+k.id, admin, nil)
		if err != nil {
			t.Fatal(err)
		}
		if g.Status != http.StatusOK {
			t.Fatalf("acknowledged key %s lost after SIGKILL: %d %s", k.id, g.Status, g.Raw)
		}
		switch name := g.str("name"); {
		case name == k.name:
		case k.inflight != "" && name == k.inflight:
			k.name = name
		default:
			t.Fatalf("key %s is named %q after SIGKILL; acknowledged %q (in flight %q)", k.id, name, k.name, k.inflight)
		}
		k.inflight = ""
		state := g.str("state")
		switch {
		case k.revoked && state != "revoked":
			t.Fatalf("key %s: acknowledged revocation lost after SIGKILL: state %s", k.id, state)
		case k.revokePending:
			k.revoked, k.revokePending = state == "revoked", false
		case !k.revoked && state != "active":
			t.Fatalf("key %s: state %s after SIGKILL, want active", k.id, state)
		}
		v, err := callErr(c, "POST", url+"/v1/keys/verify", "", map[string]any{"key": k.key, "scopes": []string{"data:read"}})
		if err != nil {
			t.Fatal(err)
		}
		want := latchkey.CodeValid
		if k.revoked {
			want = latchkey.CodeRevoked
		}
		if got := v.str("code"); got != want {
			if k.revoked {
				st.revokedVerifying.Add(1)
			}
			t.Fatalf("key %s verifies %s after SIGKILL, want %s", k.id, got, want)
		}
	}
}
