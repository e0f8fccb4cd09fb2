package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/client/admin"
)

// batchAnswer decodes a batch's answer strictly into the admin client's
// type, so that the client reads every field the server sends.
func batchAnswer(t *testing.T, r resp) admin.BatchResult {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("batch: %d %s", r.Status, r.Raw)
	}
	dec := json.NewDecoder(bytes.NewReader(r.Raw))
	dec.DisallowUnknownFields()
	var res admin.BatchResult
	if err := dec.Decode(&res); err != nil {
		t.Fatalf("the admin client does not read the answer: %v\n%s", err, r.Raw)
	}
	for _, it := range res.Results {
		registerKey(it.Key)
	}
	return res
}

func resultIDs(res admin.BatchResult) []string {
	var ids []string
	for _, it := range res.Results {
		ids = append(ids, it.ID)
	}
	slices.Sort(ids)
	return ids
}

// POST /v1/keys/batch: a dry run by filter changes nothing, the real run
// revokes exactly what it counted, a rotation by ids answers successors
// that verify, the key making the request is spared by a filter, and
// the requests it should not guess at are refused.
func TestBatchRoute(t *testing.T) {
	s := startServer(t)
	adm := s.mustTenant(t, "acme")
	ci1, ci1Key := s.mustCreate(t, adm, map[string]any{"owner": "ci"})
	ci2, ci2Key := s.mustCreate(t, adm, map[string]any{"owner": "ci"})
	keepID, keepKey := s.mustCreate(t, adm, map[string]any{"owner": "keep"})
	want := []string{ci1, ci2}
	slices.Sort(want)

	dry := batchAnswer(t, s.call(t, "POST", "/v1/keys/batch", adm, map[string]any{"op": "revoke", "filter": map[string]any{"owner": "ci"}, "dry_run": true}))
	if dry.Matched != 2 || !slices.Equal(resultIDs(dry), want) || dry.Failed() != 0 {
		t.Fatalf("dry run: %+v", dry)
	}
	if code := s.verifyCode(t, map[string]any{"key": ci1Key}); code != latchkey.CodeValid {
		t.Fatalf("after the dry run: %s", code)
	}
	res := batchAnswer(t, s.call(t, "POST", "/v1/keys/batch", adm, map[string]any{"op": "revoke", "filter": map[string]any{"owner": "ci"}, "reason": "ci cleanup"}))
	if res.Matched != 2 || !slices.Equal(resultIDs(res), want) || res.Failed() != 0 {
		t.Fatalf("revoke: %+v", res)
	}
	for _, k := range []string{ci1Key, ci2Key} {
		if code := s.verifyCode(t, map[string]any{"key": k}); code != latchkey.CodeRevoked {
			t.Fatalf("after the revoke: %s", code)
		}
	}
	if code := s.verifyCode(t, map[string]any{"key": keepKey}); code != latchkey.CodeValid {
		t.Fatalf("the key the filter did not match: %s", code)
	}

	rot := batchAnswer(t, s.call(t, "POST", "/v1/keys/batch", adm, map[string]any{"op": "rotate", "ids": []string{keepID, ci1}, "grace_period": "0s"}))
	if rot.Matched != 2 || len(rot.Results) != 2 {
		t.Fatalf("rotate: %+v", rot)
	}
	if it := rot.Results[0]; !it.OK || it.ID != keepID || it.Key == "" || it.SuccessorID == "" {
		t.Fatalf("rotate of an active key: %+v", it)
	}
	if it := rot.Results[1]; it.OK || it.ErrorCode != latchkey.EConflict || it.Key != "" {
		t.Fatalf("rotate of a revoked key: %+v", it)
	}
	if code := s.verifyCode(t, map[string]any{"key": rot.Results[0].Key}); code != latchkey.CodeValid {
		t.Fatalf("the successor: %s", code)
	}
	if code := s.verifyCode(t, map[string]any{"key": keepKey}); code != latchkey.CodeRevoked {
		t.Fatalf("the rotated key with no grace: %s", code)
	}

	// "all" spares the key making the request; it still works.
	all := batchAnswer(t, s.call(t, "POST", "/v1/keys/batch", adm, map[string]any{"op": "suspend", "filter": map[string]any{"all": true}}))
	self := slices.IndexFunc(all.Results, func(it admin.BatchItem) bool { return !it.OK })
	if all.Matched != 2 || all.Failed() != 1 || self < 0 || all.Results[self].ErrorCode != latchkey.EConflict {
		t.Fatalf("suspend all: %+v", all)
	}
	if code := s.verifyCode(t, map[string]any{"key": rot.Results[0].Key}); code != latchkey.CodeSuspended {
		t.Fatalf("after suspend all: %s", code)
	}
	if r := s.call(t, "GET", "/v1/keys/"+all.Results[self].ID, adm, nil); r.Status != http.StatusOK || r.str("state") != "active" {
		t.Fatalf("the key making the request: %d %s", r.Status, r.Raw)
	}

	for name, body := range map[string]any{
		"EmptyFilter":      map[string]any{"op": "revoke", "filter": map[string]any{}},
		"NoKeys":           map[string]any{"op": "revoke"},
		"IDsAndFilter":     map[string]any{"op": "revoke", "ids": []string{keepID}, "filter": map[string]any{"owner": "keep"}},
		"SetPolicyWithout": map[string]any{"op": "set_policy", "ids": []string{keepID}},
		"PolicyBadName":    map[string]any{"op": "set_policy", "ids": []string{keepID}, "policy": "Not A Name"},
		"PolicyForRevoke":  map[string]any{"op": "revoke", "ids": []string{keepID}, "policy": "production"},
		"PolicyFilterBad":  map[string]any{"op": "revoke", "filter": map[string]any{"policy": "Not A Name"}},
		"ZeroDuration":     map[string]any{"op": "suspend", "ids": []string{keepID}, "duration": "0s"},
		"UnknownField":     map[string]any{"op": "revoke", "ids": []string{keepID}, "reasn": "typo"},
		"NotAnObject":      "[]",
		"GraceForRevoke":   map[string]any{"op": "revoke", "ids": []string{keepID}, "grace_period": "1h"},
		"FilterAllAndMore": map[string]any{"op": "revoke", "filter": map[string]any{"all": true, "state": "active"}},
	} {
		t.Run(name, func(t *testing.T) {
			if r := s.call(t, "POST", "/v1/keys/batch", adm, body); r.Status != http.StatusBadRequest || r.errCode() != latchkey.EInvalid {
				t.Fatalf("%d %s", r.Status, r.Raw)
			}
		})
	}
	_, reader := s.mustCreate(t, adm, map[string]any{"scopes": []string{"keys:read"}})
	if r := s.call(t, "POST", "/v1/keys/batch", reader, map[string]any{"op": "revoke", "filter": map[string]any{"all": true}}); r.Status != http.StatusForbidden {
		t.Fatalf("batch with keys:read: %d %s", r.Status, r.Raw)
	}
}

// latchkey keys batch: a revoke by filter, dry run first, then for real;
// a rotation by ids prints its successors once; any key not changed
// makes it fail with conflict.
func TestCLIBatch(t *testing.T) {
	n := startCLINode(t)
	ci1, ci1Key := n.createKey(t, "--name", "ci one", "--owner", "ci", "--env", "staging")
	ci2, ci2Key := n.createKey(t, "--name", "ci two", "--owner", "ci", "--env", "staging")
	keepID, keepKey := n.createKey(t, "--name", "keep", "--owner", "ci", "--env", "production")

	r := n.ok(t, "keys", "batch", "revoke", "--owner", "ci", "--env", "staging", "--dry-run")
	for _, want := range []string{"Dry run", ci1, ci2, "would revoke", "2 key(s) matched"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("dry run lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, keepID) {
		t.Fatalf("dry run lists the production key:\n%s", r.stdout)
	}
	if code := n.verify(t, ci1Key); code != latchkey.CodeValid {
		t.Fatalf("after the dry run: %s", code)
	}

	r = n.ok(t, "keys", "batch", "revoke", "--owner", "ci", "--env", "staging", "--reason", "ci cleanup")
	if !strings.Contains(r.stdout, "2 key(s) matched, 2 revoked, 0 failed") {
		t.Fatalf("revoke:\n%s", r.stdout)
	}
	for _, k := range []string{ci1Key, ci2Key} {
		if code := n.verify(t, k); code != latchkey.CodeRevoked {
			t.Fatalf("after the revoke: %s", code)
		}
	}
	if code := n.verify(t, keepKey); code != latchkey.CodeValid {
		t.Fatalf("the production key: %s", code)
	}
	if k := n.okJSON(t, "keys", "show", ci1); k["state_reason"] != "ci cleanup" {
		t.Fatalf("reason: %v", k["state_reason"])
	}

	otherID, otherKey := n.createKey(t, "--name", "other", "--scopes", "data:read")
	r = n.ok(t, "keys", "batch", "rotate", keepID, otherID, "--grace", "0s")
	fresh := plaintexts(r.stdout)
	if len(fresh) != 2 || !strings.Contains(r.stdout, "shown once") {
		t.Fatalf("rotate printed %d keys:\n%s", len(fresh), r.stdout)
	}
	for _, k := range fresh {
		if k == keepKey || k == otherKey || strings.Count(r.stdout, k) != 1 {
			t.Fatalf("rotate printed an old key or a new one twice:\n%s", r.stdout)
		}
		if code := n.verify(t, k); code != latchkey.CodeValid {
			t.Fatalf("a successor: %s", code)
		}
	}
	if code := n.verify(t, otherKey); code != latchkey.CodeRevoked {
		t.Fatalf("a key rotated with --grace 0s: %s", code)
	}

	// The rotated keys cannot be rotated again: each fails, the command too.
	r = n.run(t, "keys", "batch", "rotate", keepID, otherID, "--json")
	if cliErrCode(r.err) != latchkey.EConflict || !strings.Contains(r.stdout, `"error_code": "conflict"`) {
		t.Fatalf("rotate of rotated keys: %v\n%s", r.err, r.stdout)
	}
	// --all takes in the key making the request, which is spared.
	r = n.run(t, "keys", "batch", "suspend", "--all", "--dry-run")
	if cliErrCode(r.err) != latchkey.EConflict || !strings.Contains(r.stdout, "FAILED") || !strings.Contains(r.stdout, "making this request") {
		t.Fatalf("suspend --all: %v\n%s", r.err, r.stdout)
	}
	for _, args := range [][]string{
		{"keys", "batch", "revoke"},
		{"keys", "batch", "revoke", keepID, "--owner", "ci"},
		{"keys", "batch", "resume", keepID, "--reason", "x"},
		{"keys", "batch", "set_policy", "--owner", "ci"},
		{"keys", "batch", "set_policy", "--owner", "ci", "--policy", "Not A Name"},
		{"keys", "batch", "revoke", "--owner", "ci", "--policy", "production"},
	} {
		if r := n.run(t, args...); cliErrCode(r.err) != latchkey.EInvalid {
			t.Errorf("latchkey %s: %v", strings.Join(args, " "), r.err)
		}
	}
}
