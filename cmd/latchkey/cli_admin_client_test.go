package main

import (
	"bytes"
	"context"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/client/admin"
	"github.com/latchkeyhq/latchkey/wire"
)

// TestCLIAdminClientAgainstANode drives the typed admin client the CLI
// uses against a real node, reading the envelopes the server builds around
// its records (a new tenant and key with their plaintexts, a key with its
// quota usage, the lists, a verification, the audit log) by the fields the
// CLI reads, so that a field name that drifts on either side fails here.
func TestCLIAdminClientAgainstANode(t *testing.T) {
	n := startCLINode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	root, err := admin.New(n.URL, n.Root, admin.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}

	nt, err := root.CreateTenant(ctx, "acme", "Acme Inc.")
	if err != nil || nt.Tenant.ID != "acme" || nt.Tenant.Name != "Acme Inc." || nt.KeyID == "" || nt.Key == "" {
		t.Fatalf("CreateTenant = %+v, %v", nt, err)
	}
	if _, err := latchkey.ParseToken(nt.Key); err != nil {
		t.Fatalf("the tenant's first key does not parse: %v", err)
	}
	if tl, err := root.ListTenants(ctx, admin.Page{}); err != nil || !slices.ContainsFunc(tl.Tenants, func(x latchkey.Tenant) bool { return x.ID == "acme" }) {
		t.Fatalf("ListTenants = %+v, %v", tl, err)
	}

	c, err := admin.New(n.URL, nt.Key)
	if err != nil {
		t.Fatal(err)
	}
	k, err := c.CreateKey(ctx, admin.KeyParams{KeySettings: admin.KeySettings{
		Name: new("e2e"), Scopes: []string{"data:read"}, Quota: &latchkey.Quota{Limit: 10, Period: "daily"},
	}})
	if err != nil || k.ID == "" || k.Name != "e2e" || k.Tenant != "acme" || k.Plaintext == "" {
		t.Fatalf("CreateKey = %+v, %v", k, err)
	}
	v, err := c.VerifyKey(ctx, admin.VerifyRequest{Key: k.Plaintext, Scopes: []string{"data:read"}})
	if err != nil || !v.Valid || v.Code != wire.CodeValid || v.KeyID != k.ID || v.Quota == nil || v.Quota.Remaining != 9 {
		t.Fatalf("VerifyKey = %+v, %v", v, err)
	}
	d, err := c.GetKey(ctx, k.ID)
	if err != nil || d.ID != k.ID || d.QuotaUsage == nil || d.QuotaUsage.Limit != 10 || d.QuotaUsage.Remaining != 9 {
		t.Fatalf("GetKey = %+v (quota usage %+v), %v", d, d.QuotaUsage, err)
	}
	l, err := c.ListKeys(ctx, admin.KeyFilter{Name: "e2e", Page: admin.Page{Limit: 1}})
	if err != nil || len(l.Keys) != 1 || l.Keys[0].ID != k.ID || l.NextCursor != "" {
		t.Fatalf("ListKeys = %+v, %v", l, err)
	}
	r, err := c.RotateKey(ctx, k.ID, admin.RotateParams{Grace: new(time.Hour)})
	if err != nil || r.RotatedFrom != k.ID || r.Plaintext == "" || r.Plaintext == k.Plaintext {
		t.Fatalf("RotateKey = %+v, %v", r, err)
	}
	if old, err := c.GetKey(ctx, k.ID); err != nil || old.GraceUntil.IsZero() {
		t.Fatalf("the rotated key = %+v, %v", old, err)
	}
	if _, err := c.GetKey(ctx, "key_00000000000000000000000000"); admin.ErrorCode(err) != wire.ENotFound {
		t.Fatalf("GetKey of no key: %v, want not_found", err)
	}

	value := secretValue("sk-admin-client-")
	if s, err := c.PutSecret(ctx, "openai", admin.SecretParams{Value: value, ExpiresIn: time.Minute}); err != nil || s.Version != 1 || s.ExpiresIn != 60 || s.Value != "" {
		t.Fatalf("PutSecret = %+v, %v", s, err)
	}
	if s, err := c.GetSecret(ctx, "openai", 0); err != nil || s.Value != value {
		t.Fatalf("GetSecret: %v", err)
	}
	if sl, err := c.ListSecrets(ctx, admin.Page{}); err != nil || len(sl.Secrets) != 1 || sl.Secrets[0].Name != "openai" || sl.Secrets[0].Versions != 1 {
		t.Fatalf("ListSecrets = %+v, %v", sl, err)
	}
	if vs, err := c.SecretVersions(ctx, "openai"); err != nil || len(vs) != 1 || vs[0].CreatedBy != nt.KeyID {
		t.Fatalf("SecretVersions = %+v, %v", vs, err)
	}
	if err := c.DeleteSecret(ctx, "openai"); err != nil {
		t.Fatal(err)
	}

	p, err := c.ListAudit(ctx, admin.AuditFilter{Action: "key.rotated"})
	if err != nil || len(p.Events) != 1 || p.Events[0].TargetKeyID != k.ID || p.Events[0].ActorKeyID != nt.KeyID {
		t.Fatalf("ListAudit = %+v, %v", p, err)
	}
	if vd, err := c.VerifyAudit(ctx); err != nil || !vd.OK || vd.Events == 0 {
		t.Fatalf("VerifyAudit = %+v, %v", vd, err)
	}

	// Export every key, then import the export again, both streamed: the
	// keys are all there already.
	body, err := c.ExportKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	export, err := io.ReadAll(body)
	body.Close()
	if err != nil || bytes.Count(export, []byte("\n")) != 3 { // the tenant's admin key, k and its successor
		t.Fatalf("ExportKeys read %q, %v", export, err)
	}
	res, err := c.ImportKeys(ctx, bytes.NewReader(export), admin.ImportParams{Format: admin.ImportJSONL})
	if err != nil || res.Imported != 0 || res.Skipped != 3 || res.Invalid != 0 {
		t.Fatalf("ImportKeys = %+v, %v", res, err)
	}
}
