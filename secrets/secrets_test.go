package secrets_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/secrets"
)

func TestSecretVersionsAndReads(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s1 := f.put(t, f.admin, "openai", "sk-one-value-0001")
	ttl := int64(1800)
	s2, err := f.svc.PutSecret(ctx, f.admin, "openai", secrets.SecretParams{Value: "sk-two-value-0002", ExpiresIn: &ttl, Meta: map[string]string{"owner": "ml"}})
	if err != nil {
		t.Fatal(err)
	}
	if s1.Version != 1 || s2.Version != 2 || s1.ExpiresIn != 3600 || s2.ExpiresIn != 1800 || s2.CreatedBy != f.admin.KeyID {
		t.Fatalf("written: %+v, %+v", s1, s2)
	}
	got, err := f.svc.ReadSecret(ctx, f.admin, "openai", 0)
	if err != nil || got.Value != "sk-two-value-0002" || got.Version != 2 || got.ExpiresIn != 1800 || got.Meta["owner"] != "ml" {
		t.Fatalf("latest = %+v, %v", got, err)
	}
	if got, err := f.svc.ReadSecret(ctx, f.admin, "openai", 1); err != nil || got.Value != "sk-one-value-0001" {
		t.Fatalf("version 1 = %+v, %v", got, err)
	}
	if _, err := f.svc.ReadSecret(ctx, f.admin, "openai", 3); latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Fatalf("version 3: %v, want not_found", err)
	}
	vs, err := f.svc.SecretVersions(ctx, f.admin, "openai")
	if err != nil || len(vs) != 2 || vs[0].Version != 2 || vs[0].Value != "" {
		t.Fatalf("versions = %+v, %v", vs, err)
	}
	list, next, err := f.svc.ListSecrets(ctx, f.admin, "", 0)
	if err != nil || next != "" || len(list) != 1 || list[0].Name != "openai" || list[0].Version != 2 || list[0].Versions != 2 {
		t.Fatalf("list = %+v, %q, %v", list, next, err)
	}
}

func TestSecretParamsAreValidated(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	zero, big := int64(0), int64(secrets.MaxSecretExpiresIn+1)
	for name, p := range map[string]secrets.SecretParams{
		"empty value":     {},
		"huge value":      {Value: strings.Repeat("x", secrets.MaxSecretValue+1)},
		"binary value":    {Value: "\xff\xfe"},
		"zero expires_in": {Value: "v", ExpiresIn: &zero},
		"long expires_in": {Value: "v", ExpiresIn: &big},
		"empty meta key":  {Value: "v", Meta: map[string]string{"": "x"}},
	} {
		if _, err := f.svc.PutSecret(ctx, f.admin, "openai", p); latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Errorf("%s: %v, want invalid", name, err)
		}
	}
	for _, bad := range []string{"OpenAI", "my service", "-x", ""} {
		if _, err := f.svc.PutSecret(ctx, f.admin, bad, secrets.SecretParams{Value: "v"}); latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Errorf("name %q: %v, want invalid", bad, err)
		}
	}
	if _, err := f.svc.ReadSecret(ctx, f.admin, "Not A Name", 0); latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Errorf("read an impossible name: %v, want not_found", err)
	}
}

// Reading needs the resource secret:<name> (or a pattern covering it); a
// key restricted to other resources is refused, and another tenant never
// sees the secret at all.
func TestSecretReadNeedsItsResource(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.put(t, f.admin, "openai", "sk-openai-value")
	f.put(t, f.admin, "anthropic", "sk-ant-value")
	only := f.reader(t, []string{"secrets:read"}, []string{"secret:openai"})
	all := f.reader(t, []string{"secrets:read"}, []string{"secret:*"})
	unrelated := f.reader(t, []string{"secrets:read"}, []string{"agent:x"})
	if _, err := f.svc.ReadSecret(ctx, only, "openai", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.ReadSecret(ctx, only, "anthropic", 0); latchkey.ErrorCode(err) != latchkey.EForbidden {
		t.Fatalf("read outside the key's resources: %v, want forbidden", err)
	}
	if _, err := f.svc.ReadSecret(ctx, unrelated, "openai", 0); latchkey.ErrorCode(err) != latchkey.EForbidden {
		t.Fatalf("read with unrelated resources: %v, want forbidden", err)
	}
	if _, err := f.svc.ReadSecret(ctx, all, "anthropic", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.ReadSecret(ctx, f.other, "openai", 0); latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Fatalf("another tenant's read: %v, want not_found", err)
	}
	got, err := f.svc.ReadSecrets(ctx, only)
	if err != nil || len(got) != 1 || got[0].Name != "openai" || got[0].Value != "sk-openai-value" {
		t.Fatalf("ReadSecrets for a key limited to openai = %+v, %v", got, err)
	}
	if got, err := f.svc.ReadSecrets(ctx, f.other); err != nil || len(got) != 0 {
		t.Fatalf("ReadSecrets for another tenant = %+v, %v", got, err)
	}
	// Lists and versions show a limited key only what it may read.
	if l, _, err := f.svc.ListSecrets(ctx, only, "", 0); err != nil || len(l) != 1 || l[0].Name != "openai" {
		t.Fatalf("list for a key limited to openai = %+v, %v", l, err)
	}
	if _, err := f.svc.SecretVersions(ctx, only, "anthropic"); latchkey.ErrorCode(err) != latchkey.EForbidden {
		t.Fatalf("versions outside the key's resources: %v, want forbidden", err)
	}
}

// Pages of a filtered list are full and the cursor walks them all.
func TestSecretListPagesThroughFilteredNames(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var want []string
	for i := range 12 {
		name := string(rune('a'+i)) + "-service"
		f.put(t, f.admin, name, "v")
		if i%3 != 1 {
			want = append(want, name)
		}
	}
	var allowed []string
	for _, n := range want {
		allowed = append(allowed, "secret:"+n)
	}
	r := f.reader(t, []string{"secrets:read"}, allowed)
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		l, next, err := f.svc.ListSecrets(ctx, r, cursor, 3)
		if err != nil {
			t.Fatal(err)
		}
		if next != "" && len(l) != 3 {
			t.Fatalf("a page before the last holds %d, want 3", len(l))
		}
		for _, s := range l {
			got = append(got, s.Name)
		}
		if next == "" {
			break
		}
		if pages > 10 {
			t.Fatal("the cursor does not end")
		}
		cursor = next
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("listed %v, want %v", got, want)
	}
}

// Every read is audited with the reader's key id and the version, never
// the value; writes and deletes too.
func TestSecretAccessIsAuditedWithoutValues(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	value := "sk-audited-value-7f3a9c"
	f.put(t, f.admin, "openai", value)
	r := f.reader(t, []string{"secrets:read"}, []string{"secret:openai"})
	if _, err := f.svc.ReadSecret(ctx, r, "openai", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.ReadSecrets(ctx, r); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.ReadSecret(ctx, r, "anthropic", 0); latchkey.ErrorCode(err) != latchkey.EForbidden {
		t.Fatalf("read outside the key's resources: %v", err)
	}
	if err := f.svc.DeleteSecret(ctx, f.admin, "openai"); err != nil {
		t.Fatal(err)
	}
	evs, err := f.audit.ListAudit(ctx, f.admin, latchkey.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var reads, denied, writes, deletes int
	for _, e := range evs {
		js, _ := json.Marshal(e)
		if strings.Contains(string(js), value) {
			t.Fatalf("audit event holds the secret value: %s", js)
		}
		switch e.Action {
		case "secret.read":
			if e.Result == "denied" {
				denied++
				if e.ActorKeyID != r.KeyID || e.Details["secret"] != "anthropic" {
					t.Fatalf("denied read event %+v", e)
				}
				continue
			}
			reads += readsIn(e)
			if e.ActorKeyID != r.KeyID || e.Details["secret"] != "openai" || e.Details["version"] != "1" {
				t.Fatalf("read event %+v", e)
			}
		case "secret.written":
			writes++
		case "secret.deleted":
			deletes++
		}
	}
	if reads != 2 || denied != 1 || writes != 1 || deletes != 1 {
		t.Fatalf("audited %d reads, %d refused, %d writes, %d deletes; want 2, 1, 1, 1", reads, denied, writes, deletes)
	}
	if v, err := f.audit.VerifyAudit(ctx, f.admin); err != nil || !v.OK {
		t.Fatalf("chain after secret events: %+v, %v", v, err)
	}
}

func TestSecretKeepsTheLastNVersions(t *testing.T) {
	f := newFixture(t, func(o *setup) { o.Versions = 3 })
	ctx := context.Background()
	for i := range 5 {
		f.put(t, f.admin, "openai", "value-"+string(rune('a'+i)))
	}
	vs, err := f.svc.SecretVersions(ctx, f.admin, "openai")
	if err != nil || len(vs) != 3 || vs[0].Version != 5 || vs[2].Version != 3 {
		t.Fatalf("versions = %+v, %v; want 5, 4, 3", vs, err)
	}
	if _, err := f.svc.ReadSecret(ctx, f.admin, "openai", 2); latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Fatalf("pruned version: %v, want not_found", err)
	}
	if got, err := f.svc.ReadSecret(ctx, f.admin, "openai", 3); err != nil || got.Value != "value-c" {
		t.Fatalf("version 3 = %+v, %v", got, err)
	}
}

func TestSecretDeleteThenPutNeverReusesAVersion(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.put(t, f.admin, "openai", "old")
	if err := f.svc.DeleteSecret(ctx, f.admin, "openai"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.ReadSecret(ctx, f.admin, "openai", 0); latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Fatalf("read after delete: %v, want not_found", err)
	}
	if err := f.svc.DeleteSecret(ctx, f.admin, "openai"); latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Fatalf("delete twice: %v, want not_found", err)
	}
	if err := f.svc.DeleteSecret(ctx, f.other, "openai"); latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Fatalf("delete in another tenant: %v, want not_found", err)
	}
	if s := f.put(t, f.admin, "openai", "new"); s.Version != 2 {
		t.Fatalf("version after delete: %d, want 2", s.Version)
	}
}

// A sealed value copied into another secret's row (as someone with write
// access to the database might) does not open there.
func TestSecretCopiedToAnotherRowDoesNotOpen(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.put(t, f.admin, "openai", "sk-the-openai-value")
	f.put(t, f.admin, "anthropic", "sk-the-anthropic-value")
	err := latchkey.Narrow[secrets.Tx](f.db).Update(ctx, func(tx secrets.Tx) error {
		src, err := tx.Secret("acme", "openai", 1)
		if err != nil {
			return err
		}
		v := *src
		v.Name, v.Version = "anthropic", 2
		return tx.PutSecret(&v)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := f.svc.ReadSecret(ctx, f.admin, "anthropic", 0); err == nil || latchkey.ErrorCode(err) != latchkey.EInternal {
		t.Fatalf("moved ciphertext read = %+v, %v; want an internal error", got, err)
	}
	if got, err := f.svc.ReadSecret(ctx, f.admin, "anthropic", 1); err != nil || got.Value != "sk-the-anthropic-value" {
		t.Fatalf("the untouched version = %+v, %v", got, err)
	}
}

func BenchmarkReadSecret(b *testing.B) {
	f := newFixture(b)
	ctx := context.Background()
	if _, err := f.svc.PutSecret(ctx, f.admin, "openai", secrets.SecretParams{Value: "sk-proj-0123456789abcdef"}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.svc.ReadSecret(ctx, f.admin, "openai", 0); err != nil {
			b.Fatal(err)
		}
	}
}

// A write of a secret records its event in its own transaction: when the
// event cannot be written the write fails and leaves the secret as it was.
// (Reads are audited through a queue written in batches: see
// TestSecretReadFailsWhenItsAuditEventCannotBeWritten.)
func TestSecretWriteFailsWhenItsAuditEventCannotBeWritten(t *testing.T) {
	var store *brokenAudit
	f := newFixture(t, func(o *setup) {
		store = &brokenAudit{Store: o.Store}
		o.Store = store
	})
	ctx := context.Background()
	f.put(t, f.admin, "openai", "sk-audit-test-value")
	store.fail.Store(true)
	writes := map[string]func() error{
		"PutSecret": func() error {
			_, err := f.svc.PutSecret(ctx, f.admin, "openai", secrets.SecretParams{Value: "sk-audit-test-value-2"})
			return err
		},
		"DeleteSecret": func() error { return f.svc.DeleteSecret(ctx, f.admin, "openai") },
	}
	for name, w := range writes {
		t.Run(name, func(t *testing.T) {
			if err := w(); latchkey.ErrorCode(err) != latchkey.EUnavailable {
				t.Fatalf("write with a failing audit log: %v, want unavailable", err)
			}
		})
	}
	store.fail.Store(false)
	if vs, err := f.svc.SecretVersions(ctx, f.admin, "openai"); err != nil || len(vs) != 1 {
		t.Fatalf("secret after failed writes: %v versions, %v; want the one", len(vs), err)
	}
	if got := readValue(t, f.svc, f.admin, "openai", 0); got != "sk-audit-test-value" {
		t.Fatalf("value after failed writes: %q", got)
	}
	evs, err := f.audit.ListAudit(ctx, f.admin, latchkey.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Action == "secret.deleted" || e.Action == "secret.written" && e.Details["version"] != "1" {
			t.Fatalf("an event of a failed write was kept: %+v", e)
		}
	}
}
