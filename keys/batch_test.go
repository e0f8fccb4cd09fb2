package keys_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
)

// batchItems indexes a batch's results by key id.
func batchItems(t *testing.T, res keys.BatchResult) map[string]keys.BatchItem {
	t.Helper()
	m := map[string]keys.BatchItem{}
	for _, it := range res.Results {
		if _, dup := m[it.ID]; dup {
			t.Fatalf("key %s has two results", it.ID)
		}
		m[it.ID] = it
	}
	return m
}

func wantVerify(t *testing.T, f *fixture, key, code string) {
	t.Helper()
	if v := f.verify(t, key); v.Code != code {
		t.Fatalf("verify = %s, want %s", v.Code, code)
	}
}

func TestBatchRevokeByIDs(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a, aKey := f.create(t, keys.CreateParams{})
	b, bKey := f.create(t, keys.CreateParams{})
	_, cKey := f.create(t, keys.CreateParams{})
	missing := latchkey.NewID("key", t0)
	res, err := f.svc.BatchKeys(ctx, f.admin, keys.BatchParams{Op: keys.BatchRevoke, IDs: []string{a.ID, missing, b.ID, "not-an-id"}, Reason: "leaked"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Matched != 2 || len(res.Results) != 4 {
		t.Fatalf("matched %d, %d results, want 2 and 4: %+v", res.Matched, len(res.Results), res.Results)
	}
	// Results follow the ids given.
	for i, want := range []struct {
		id   string
		code string
	}{{a.ID, ""}, {missing, latchkey.ENotFound}, {b.ID, ""}, {"not-an-id", latchkey.ENotFound}} {
		it := res.Results[i]
		if it.ID != want.id || it.OK != (want.code == "") || it.Code != want.code {
			t.Errorf("result %d = %+v, want id %s code %q", i, it, want.id, want.code)
		}
	}
	wantVerify(t, f, aKey, latchkey.CodeRevoked)
	wantVerify(t, f, bKey, latchkey.CodeRevoked)
	wantVerify(t, f, cKey, latchkey.CodeValid)
	if k, err := f.svc.GetKey(ctx, f.admin, a.ID); err != nil || k.StateReason != "leaked" {
		t.Fatalf("revoked key's reason: %v %v", k, err)
	}
}

func TestBatchByFilterWithDryRunFirst(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	p1, p1Key := f.create(t, keys.CreateParams{Settings: keys.Settings{Owner: ptr("alice"), Environment: ptr("prod")}})
	p2, p2Key := f.create(t, keys.CreateParams{Settings: keys.Settings{Owner: ptr("alice"), Environment: ptr("prod"), Resources: &[]string{"agent:bot"}}})
	_, devKey := f.create(t, keys.CreateParams{Settings: keys.Settings{Owner: ptr("alice"), Environment: ptr("dev")}})
	_, bobKey := f.create(t, keys.CreateParams{Settings: keys.Settings{Owner: ptr("bob"), Environment: ptr("prod")}})
	other, _ := f.create(t, keys.CreateParams{Settings: keys.Settings{Owner: ptr("alice"), Environment: ptr("prod"), Resources: &[]string{"agent:other"}}})
	gone, _ := f.create(t, keys.CreateParams{Settings: keys.Settings{Owner: ptr("alice"), Environment: ptr("prod")}})
	if _, err := f.svc.RevokeKey(ctx, f.admin, gone.ID, ""); err != nil {
		t.Fatal(err)
	}
	filter := &keys.BatchFilter{Owner: "alice", Environment: "prod"}

	// The dry run counts what the filter matches (not the revoked key) and
	// changes nothing.
	dry, err := f.svc.BatchKeys(ctx, f.admin, keys.BatchParams{Op: keys.BatchSuspend, Filter: filter, DryRun: true, Duration: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	items := batchItems(t, dry)
	if dry.Matched != 3 || len(items) != 3 || !items[p1.ID].OK || !items[p2.ID].OK || !items[other.ID].OK {
		t.Fatalf("dry run: %+v", dry)
	}
	wantVerify(t, f, p1Key, latchkey.CodeValid)
	wantVerify(t, f, p2Key, latchkey.CodeValid)

	// For real, the resource narrows it: keys for agent:bot or for every
	// resource.
	filter.Resource = "agent:bot"
	res, err := f.svc.BatchKeys(ctx, f.admin, keys.BatchParams{Op: keys.BatchSuspend, Filter: filter, Duration: 2 * time.Hour, Reason: "incident"})
	if err != nil {
		t.Fatal(err)
	}
	items = batchItems(t, res)
	if res.Matched != 2 || len(items) != 2 || !items[p1.ID].OK || !items[p2.ID].OK {
		t.Fatalf("suspend by filter: %+v", res)
	}
	wantVerify(t, f, p1Key, latchkey.CodeSuspended)
	wantVerify(t, f, p2Key, latchkey.CodeSuspended)
	wantVerify(t, f, devKey, latchkey.CodeValid)
	wantVerify(t, f, bobKey, latchkey.CodeValid)
	if k, err := f.svc.GetKey(ctx, f.admin, p1.ID); err != nil || !k.SuspendedUntil.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("suspended until %v (%v), want %v", k.SuspendedUntil, err, t0.Add(2*time.Hour))
	}

	// By state: the suspended ones, resumed.
	res, err = f.svc.BatchKeys(ctx, f.admin, keys.BatchParams{Op: keys.BatchResume, Filter: &keys.BatchFilter{State: latchkey.StateSuspended}})
	if err != nil {
		t.Fatal(err)
	}
	items = batchItems(t, res)
	if res.Matched != 2 || len(items) != 2 || !items[p1.ID].OK || !items[p2.ID].OK {
		t.Fatalf("resume by state: %+v", res)
	}
	wantVerify(t, f, p1Key, latchkey.CodeValid)

	// A filter asking for revoked keys finds them.
	res, err = f.svc.BatchKeys(ctx, f.admin, keys.BatchParams{Op: keys.BatchRevoke, Filter: &keys.BatchFilter{State: latchkey.StateRevoked}, DryRun: true})
	if err != nil || res.Matched != 1 || res.Results[0].ID != gone.ID {
		t.Fatalf("revoked keys by state: %+v %v", res, err)
	}
}

func TestBatchKeyFailureDoesNotStopTheOthers(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	revoked, _ := f.create(t, keys.CreateParams{})
	a, aKey := f.create(t, keys.CreateParams{})
	b, bKey := f.create(t, keys.CreateParams{})
	if _, err := f.svc.RevokeKey(ctx, f.admin, revoked.ID, ""); err != nil {
		t.Fatal(err)
	}
	res, err := f.svc.BatchKeys(ctx, f.admin, keys.BatchParams{Op: keys.BatchSuspend, IDs: []string{a.ID, revoked.ID, b.ID}})
	if err != nil {
		t.Fatal(err)
	}
	items := batchItems(t, res)
	if res.Matched != 3 || !items[a.ID].OK || !items[b.ID].OK {
		t.Fatalf("suspend: %+v", res)
	}
	if it := items[revoked.ID]; it.OK || it.Code != latchkey.EConflict || it.Error == "" {
		t.Fatalf("suspend of a revoked key: %+v", it)
	}
	wantVerify(t, f, aKey, latchkey.CodeSuspended)
	wantVerify(t, f, bKey, latchkey.CodeSuspended)

	// A suspended key cannot be rotated; the active one still is.
	if _, err := f.svc.ResumeKey(ctx, f.admin, b.ID); err != nil {
		t.Fatal(err)
	}
	res, err = f.svc.BatchKeys(ctx, f.admin, keys.BatchParams{Op: keys.BatchRotate, IDs: []string{a.ID, b.ID}})
	if err != nil {
		t.Fatal(err)
	}
	if it := res.Results[0]; it.OK || it.Code != latchkey.EConflict || it.Key != "" {
		t.Fatalf("rotate of a suspended key: %+v", it)
	}
	if it := res.Results[1]; !it.OK || it.Key == "" {
		t.Fatalf("rotate of an active key: %+v", it)
	}
}

func TestBatchRotateReturnsSuccessorsThatVerify(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a, aKey := f.create(t, keys.CreateParams{Settings: keys.Settings{Scopes: &[]string{"data:read"}}})
	b, bKey := f.create(t, keys.CreateParams{Settings: keys.Settings{Scopes: &[]string{"data:read"}}})
	zero := time.Duration(0)
	res, err := f.svc.BatchKeys(ctx, f.admin, keys.BatchParams{Op: keys.BatchRotate, IDs: []string{a.ID, b.ID}, Grace: &zero})
	if err != nil {
		t.Fatal(err)
	}
	if res.Matched != 2 {
		t.Fatalf("rotate: %+v", res)
	}
	for i, old := range []*latchkey.Key{a, b} {
		it := res.Results[i]
		if !it.OK || it.ID != old.ID || it.Key == "" || it.SuccessorID == "" {
			t.Fatalf("rotate %s: %+v", old.ID, it)
		}
		v := f.verify(t, it.Key, "data:read")
		if v.Code != latchkey.CodeValid || v.Entry.Key.ID != it.SuccessorID {
			t.Fatalf("successor of %s: %s", old.ID, v.Code)
		}
		k, err := f.svc.GetKey(ctx, f.admin, old.ID)
		if err != nil || k.RotatedTo != it.SuccessorID {
			t.Fatalf("old key %s rotated to %q (%v), want %s", old.ID, k.RotatedTo, err, it.SuccessorID)
		}
	}
	// With no grace period the old keys stop at once.
	wantVerify(t, f, aKey, latchkey.CodeRevoked)
	wantVerify(t, f, bKey, latchkey.CodeRevoked)

	// A dry run mints nothing.
	res, err = f.svc.BatchKeys(ctx, f.admin, keys.BatchParams{Op: keys.BatchRotate, IDs: []string{res.Results[0].SuccessorID}, DryRun: true})
	if err != nil || res.Matched != 1 || !res.Results[0].OK || res.Results[0].Key != "" {
		t.Fatalf("dry run of a rotation: %+v %v", res, err)
	}
}

// The key making the request is left out of a filter's revoke, suspend
// and rotate (a conflict in its result); named in ids, it is changed.
// Another tenant's keys are never reached.
func TestBatchFilterSparesTheKeyMakingTheRequest(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, aKey := f.create(t, keys.CreateParams{})
	_, bKey := f.create(t, keys.CreateParams{})
	_, theirs, err := f.svc.CreateKey(ctx, f.other, keys.CreateParams{Settings: keys.Settings{Name: ptr("globex key")}})
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range []string{keys.BatchSuspend, keys.BatchRotate, keys.BatchRevoke} {
		res, err := f.svc.BatchKeys(ctx, f.admin, keys.BatchParams{Op: op, Filter: &keys.BatchFilter{All: true}, DryRun: op != keys.BatchRevoke})
		if err != nil {
			t.Fatal(err)
		}
		items := batchItems(t, res)
		if res.Matched != 3 || len(items) != 3 {
			t.Fatalf("%s all: %+v", op, res)
		}
		if it := items[f.admin.KeyID]; it.OK || it.Code != latchkey.EConflict {
			t.Fatalf("%s all: the key making the request: %+v", op, it)
		}
	}
	wantVerify(t, f, aKey, latchkey.CodeRevoked)
	wantVerify(t, f, bKey, latchkey.CodeRevoked)
	wantVerify(t, f, theirs.Reveal(), latchkey.CodeValid)
	self, err := f.svc.GetKey(ctx, f.admin, f.admin.KeyID)
	if err != nil || self.State != latchkey.StateActive {
		t.Fatalf("the admin key after revoke all: %v %v", self, err)
	}

	// Named in ids, the key making the request is changed.
	res, err := f.svc.BatchKeys(ctx, f.admin, keys.BatchParams{Op: keys.BatchSuspend, IDs: []string{f.admin.KeyID}})
	if err != nil || !res.Results[0].OK {
		t.Fatalf("suspend self by id: %+v %v", res, err)
	}
	if self, err = f.svc.GetKey(ctx, f.admin, f.admin.KeyID); err != nil || self.State != latchkey.StateSuspended {
		t.Fatalf("the admin key after suspending itself by id: %v %v", self, err)
	}
}

func TestBatchRefusesWhatItShouldNotGuess(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	k, key := f.create(t, keys.CreateParams{Settings: keys.Settings{Owner: ptr("alice")}})
	hour := time.Hour
	ids := []string{k.ID}
	tests := []struct {
		name string
		p    keys.BatchParams
	}{
		{"EmptyFilter", keys.BatchParams{Op: keys.BatchRevoke, Filter: &keys.BatchFilter{}}},
		{"AllWithAField", keys.BatchParams{Op: keys.BatchRevoke, Filter: &keys.BatchFilter{All: true, Owner: "alice"}}},
		{"IDsAndFilter", keys.BatchParams{Op: keys.BatchRevoke, IDs: ids, Filter: &keys.BatchFilter{Owner: "alice"}}},
		{"NoKeys", keys.BatchParams{Op: keys.BatchRevoke}},
		{"EmptyIDs", keys.BatchParams{Op: keys.BatchRevoke, IDs: []string{}}},
		{"NoOp", keys.BatchParams{IDs: ids}},
		{"UnknownOp", keys.BatchParams{Op: "delete", IDs: ids}},
		{"SetPolicyWithoutPolicy", keys.BatchParams{Op: keys.BatchSetPolicy, IDs: ids}},
		{"SetPolicyBadName", keys.BatchParams{Op: keys.BatchSetPolicy, IDs: ids, Policy: ptr("Not A Name")}},
		{"PolicyForRevoke", keys.BatchParams{Op: keys.BatchRevoke, IDs: ids, Policy: ptr("production")}},
		{"ReasonForResume", keys.BatchParams{Op: keys.BatchResume, IDs: ids, Reason: "x"}},
		{"DurationForRevoke", keys.BatchParams{Op: keys.BatchRevoke, IDs: ids, Duration: hour}},
		{"GraceForSuspend", keys.BatchParams{Op: keys.BatchSuspend, IDs: ids, Grace: &hour}},
		{"NegativeGrace", keys.BatchParams{Op: keys.BatchRotate, IDs: ids, Grace: ptr(-hour)}},
		{"DuplicateID", keys.BatchParams{Op: keys.BatchRevoke, IDs: []string{k.ID, k.ID}}},
		{"BadState", keys.BatchParams{Op: keys.BatchRevoke, Filter: &keys.BatchFilter{State: "gone"}}},
		{"BadResource", keys.BatchParams{Op: keys.BatchRevoke, Filter: &keys.BatchFilter{Resource: "no spaces allowed"}}},
		{"ControlCharInReason", keys.BatchParams{Op: keys.BatchRevoke, IDs: ids, Reason: "a\x00b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.svc.BatchKeys(ctx, f.admin, tt.p)
			wantCode(t, err, latchkey.EInvalid)
		})
	}
	wantVerify(t, f, key, latchkey.CodeValid)
}

func TestBatchLimit(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ids := make([]string, keys.MaxBatchKeys+1)
	for i := range ids {
		ids[i] = latchkey.NewID("key", t0)
	}
	_, err := f.svc.BatchKeys(ctx, f.admin, keys.BatchParams{Op: keys.BatchRevoke, IDs: ids})
	wantCode(t, err, latchkey.EInvalid)
	if _, err := f.svc.BatchKeys(ctx, f.admin, keys.BatchParams{Op: keys.BatchRevoke, IDs: ids[:keys.MaxBatchKeys], DryRun: true}); err != nil {
		t.Fatalf("%d ids: %v", keys.MaxBatchKeys, err)
	}

	// A filter matching more is refused whole, and changes nothing.
	var lines strings.Builder
	for range keys.MaxBatchKeys + 1 {
		var h [32]byte
		rand.Read(h[:])
		lines.WriteString(hex.EncodeToString(h[:]) + "\n")
	}
	im, err := f.svc.ImportKeys(ctx, f.admin, strings.NewReader(lines.String()), keys.ImportParams{Format: keys.ImportSHA256, Settings: keys.Settings{Owner: ptr("bulk")}})
	if err != nil || im.Imported != keys.MaxBatchKeys+1 {
		t.Fatalf("import: %+v %v", im, err)
	}
	_, err = f.svc.BatchKeys(ctx, f.admin, keys.BatchParams{Op: keys.BatchRevoke, Filter: &keys.BatchFilter{Owner: "bulk"}})
	wantCode(t, err, latchkey.EInvalid)
	ks, _, err := f.svc.ListKeys(ctx, f.admin, keys.ListParams{Owner: "bulk", State: latchkey.StateRevoked})
	if err != nil || len(ks) != 0 {
		t.Fatalf("%d keys revoked by a refused batch (%v)", len(ks), err)
	}
}
