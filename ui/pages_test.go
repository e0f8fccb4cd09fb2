package ui_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
)

var rowID = regexp.MustCompile(`name="id" value="(key_[0-9A-Z]+)"`)

// rows lists the ids of the keys a list page shows.
func rows(body string) []string {
	var ids []string
	for _, m := range rowID.FindAllStringSubmatch(body, -1) {
		ids = append(ids, m[1])
	}
	return ids
}

var nextLink = regexp.MustCompile(`href="([^"]+)" rel="next"`)

func TestKeyListPagesAndFilters(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	for i := range 60 {
		owner := []string{"red", "blue"}[i%2]
		name := fmt.Sprintf("k%02d", i)
		p := keys.CreateParams{}
		p.Name, p.Owner = &name, &owner
		if i%3 == 0 {
			res := []string{"agent:support"}
			p.Resources = &res
		} else {
			res := []string{"agent:billing"}
			p.Resources = &res
		}
		if _, _, err := f.keys.CreateKey(context.Background(), f.admin, p); err != nil {
			t.Fatal(err)
		}
	}
	b := f.browser()
	b.signIn(f.adminKey)
	_, _, body := b.get("/ui/keys")
	first := rows(body)
	if len(first) != 50 {
		t.Fatalf("first page shows %d keys, want 50", len(first))
	}
	m := nextLink.FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no link to the next page")
	}
	_, _, body = b.get(strings.ReplaceAll(m[1], "&amp;", "&"))
	second := rows(body)
	if len(second) != 11 { // 60 keys and the admin's own
		t.Fatalf("second page shows %d keys, want 11", len(second))
	}
	if nextLink.MatchString(body) {
		t.Error("the last page links to a next one")
	}
	for _, id := range second {
		for _, seen := range first {
			if id == seen {
				t.Errorf("key %s is on both pages", id)
			}
		}
	}
	tests := []struct {
		query string
		want  int
	}{
		{"owner=red", 30},
		{"owner=red&agent=support", 10},
		{"agent=support", 21}, // and the admin key, which covers the whole tenant
		{"state=revoked", 0},
		{"name=k07", 1},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			code, _, body := b.get("/ui/keys?" + tt.query)
			if got := len(rows(body)); code != http.StatusOK || got != tt.want {
				t.Fatalf("GET /ui/keys?%s = %d with %d keys, want 200 with %d", tt.query, code, got, tt.want)
			}
		})
	}
	if code, _, _ := b.get("/ui/keys?state=bogus"); code != http.StatusBadRequest {
		t.Errorf("an unknown state filter = %d, want 400", code)
	}
}

func TestChangesAskFirst(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	k1, _ := f.createKey("one", "ops")
	k2, _ := f.createKey("two", "ops")
	b := f.browser()
	b.signIn(f.adminKey)
	token := b.csrf()
	state := func(id string) latchkey.State {
		k, err := f.keys.GetKey(context.Background(), f.admin, id)
		if err != nil {
			t.Fatal(err)
		}
		return k.StateAt(f.clock.Now())
	}
	// Without confirm=yes each change shows its confirmation page and
	// changes nothing.
	for _, path := range []string{"/ui/keys/" + k1.ID + "/revoke", "/ui/keys/" + k1.ID + "/suspend", "/ui/keys/" + k1.ID + "/rotate"} {
		code, _, body := b.post(path, url.Values{"csrf": {token}, "reason": {"why"}})
		if code != http.StatusOK || !strings.Contains(body, `name="confirm" value="yes"`) || !strings.Contains(body, `name="reason" value="why"`) && !strings.HasSuffix(path, "rotate") {
			t.Fatalf("POST %s without confirm = %d, want the confirmation page carrying the form", path, code)
		}
	}
	if s := state(k1.ID); s != latchkey.StateActive {
		t.Fatalf("key after unconfirmed posts is %s, want active", s)
	}
	// Suspend, then resume, confirmed.
	if code, loc, _ := b.post("/ui/keys/"+k1.ID+"/suspend", url.Values{"csrf": {token}, "confirm": {"yes"}}); code != http.StatusSeeOther || loc != "/ui/keys/"+k1.ID {
		t.Fatalf("suspend = %d → %q", code, loc)
	}
	if s := state(k1.ID); s != latchkey.StateSuspended {
		t.Fatalf("key after suspend is %s", s)
	}
	b.post("/ui/keys/"+k1.ID+"/resume", url.Values{"csrf": {token}, "confirm": {"yes"}})
	if s := state(k1.ID); s != latchkey.StateActive {
		t.Fatalf("key after resume is %s", s)
	}
	// Bulk: confirmation first, then both keys.
	form := url.Values{"csrf": {token}, "op": {"revoke"}, "id": {k1.ID, k2.ID}}
	if code, _, body := b.post("/ui/keys/batch", form); code != http.StatusOK || !strings.Contains(body, `value="`+k2.ID+`"`) {
		t.Fatalf("bulk without confirm = %d, want the confirmation page", code)
	}
	if state(k1.ID) != latchkey.StateActive {
		t.Fatal("an unconfirmed bulk revoke changed a key")
	}
	form.Set("confirm", "yes")
	if code, _, _ := b.post("/ui/keys/batch", form); code != http.StatusOK {
		t.Fatalf("bulk revoke = %d", code)
	}
	if state(k1.ID) != latchkey.StateRevoked || state(k2.ID) != latchkey.StateRevoked {
		t.Fatalf("after the bulk revoke: %s, %s; want both revoked", state(k1.ID), state(k2.ID))
	}
}

func TestReadOnlyAdminCannotChangeKeys(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	target, _ := f.createKey("target", "ops")
	_, reader := f.createKey("reader", "ops", "keys:read")
	b := f.browser()
	b.signIn(reader)
	_, _, body := b.get("/ui/keys")
	token := csrfField.FindStringSubmatch(body)[1]
	tests := []struct {
		method, path string
		wantCode     int
	}{
		{"GET", "/ui/keys/" + target.ID, http.StatusOK},
		{"GET", "/ui/keys/new", http.StatusForbidden},
		{"POST", "/ui/keys/new", http.StatusForbidden},
		{"POST", "/ui/keys/" + target.ID + "/revoke", http.StatusForbidden},
		{"POST", "/ui/keys/" + target.ID + "/derive", http.StatusForbidden},
		{"POST", "/ui/keys/batch", http.StatusForbidden},
	}
	for _, tt := range tests {
		var code int
		if tt.method == "GET" {
			code, _, _ = b.get(tt.path)
		} else {
			code, _, _ = b.post(tt.path, url.Values{"csrf": {token}, "confirm": {"yes"}, "name": {"x"}, "op": {"revoke"}, "id": {target.ID}})
		}
		if code != tt.wantCode {
			t.Errorf("%s %s = %d, want %d", tt.method, tt.path, code, tt.wantCode)
		}
	}
	if k, _ := f.keys.GetKey(context.Background(), f.admin, target.ID); k.State != latchkey.StateActive {
		t.Errorf("a read-only admin changed the key to %s", k.State)
	}
}
