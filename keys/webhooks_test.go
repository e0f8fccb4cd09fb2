package keys_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
)

// withoutSealer runs the service with no keyring.
func withoutSealer() func(*keys.Options) {
	return func(o *keys.Options) {
		o.Sealer = nil
	}
}

func TestCreateWebhookShowsTheSecretOnceAndSealsIt(t *testing.T) {
	f := newFixture(t)
	sealer := f.sealer
	ctx := context.Background()
	w, secret, err := f.svc.CreateWebhook(ctx, f.admin, keys.WebhookParams{URL: "https://hooks.example.com/in?token=abc", Events: []string{"key.revoked", "key.revoked", "key.created"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := latchkey.ParseWebhookSecret(secret); err != nil {
		t.Fatalf("secret is not a whsec_ secret: %v", err)
	}
	if !latchkey.ValidID("whk", w.ID) || w.Tenant != "acme" || !w.CreatedAt.Equal(t0) || strings.Join(w.Events, ",") != "key.revoked,key.created" {
		t.Fatalf("webhook = %+v", w)
	}
	got, err := f.svc.GetWebhook(ctx, f.admin, w.ID)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(got.SealedSecret, []byte(secret)) || bytes.Contains(got.SealedSecret, []byte(strings.TrimPrefix(secret, "whsec_"))) {
		t.Fatal("the stored secret holds the plaintext")
	}
	plain, err := sealer.Open(latchkey.WebhookSecretAAD("acme", w.ID), got.SealedSecret)
	if err != nil || string(plain) != secret {
		t.Fatalf("the sealed secret does not open to the one shown: %v", err)
	}
	if _, err := sealer.Open(latchkey.WebhookSecretAAD("globex", w.ID), got.SealedSecret); err == nil {
		t.Fatal("the sealed secret opens under another tenant's aad")
	}
	js, _ := json.Marshal(got)
	if bytes.Contains(js, []byte("secret")) || bytes.Contains(js, []byte(secret)) {
		t.Fatalf("a webhook's JSON shows its secret: %s", js)
	}
	evs, err := f.audit.ListAudit(ctx, f.admin, keys.AuditFilter{Action: "webhook.created"})
	if err != nil || len(evs) != 1 {
		t.Fatalf("webhook.created events: %d, %v", len(evs), err)
	}
	e := evs[0]
	if e.Details["webhook_id"] != w.ID || e.Details["url"] != "https://hooks.example.com/in" || e.ActorKeyID != f.admin.KeyID {
		t.Fatalf("audit event = %+v (the URL's query must be left out)", e)
	}
}

func TestCreateWebhookValidates(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for name, p := range map[string]keys.WebhookParams{
		"no url":        {},
		"relative url":  {URL: "/hook"},
		"ftp url":       {URL: "ftp://example.com/x"},
		"password":      {URL: "https://u:p@example.com/x"},
		"unknown event": {URL: "https://example.com/x", Events: []string{"key.deleted"}},
		"loopback":      {URL: "http://127.0.0.1:8080/x"},
		"private":       {URL: "http://10.0.0.5/x"},
		"metadata":      {URL: "http://169.254.169.254/latest/meta-data/"},
		"mapped":        {URL: "http://[::ffff:192.168.0.1]/x"},
		"localhost":     {URL: "http://localhost/x"},
		"port 0":        {URL: "https://example.com:0/x"},
		"port 65536":    {URL: "https://example.com:65536/x"},
	} {
		if _, _, err := f.svc.CreateWebhook(ctx, f.admin, p); latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Errorf("%s: %v, want invalid", name, err)
		}
	}
	ws, _, err := f.svc.ListWebhooks(ctx, f.admin, "", 0)
	if err != nil || len(ws) != 0 {
		t.Fatalf("webhooks after refused creates: %d, %v", len(ws), err)
	}
}

func TestCreateWebhookWithoutSealerIsUnavailable(t *testing.T) {
	f := newFixture(t, withoutSealer())
	_, _, err := f.svc.CreateWebhook(context.Background(), f.admin, keys.WebhookParams{URL: "https://example.com/x"})
	if latchkey.ErrorCode(err) != latchkey.EUnavailable {
		t.Fatalf("without a sealer: %v, want unavailable", err)
	}
}

func TestWebhooksAreTenantIsolated(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	w, _, err := f.svc.CreateWebhook(ctx, f.admin, keys.WebhookParams{URL: "https://example.com/x"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.GetWebhook(ctx, f.other, w.ID); latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Errorf("another tenant's Get: %v, want not_found", err)
	}
	if err := f.svc.DeleteWebhook(ctx, f.other, w.ID); latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Errorf("another tenant's Delete: %v, want not_found", err)
	}
	if _, _, err := f.svc.ListDeliveries(ctx, f.other, w.ID, keys.DeliveryListParams{}); latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Errorf("another tenant's deliveries: %v, want not_found", err)
	}
	if ws, _, _ := f.svc.ListWebhooks(ctx, f.other, "", 0); len(ws) != 0 {
		t.Errorf("another tenant lists %d webhooks", len(ws))
	}
	for _, id := range []string{"whk_x", "key_" + w.ID[4:], ""} {
		if _, err := f.svc.GetWebhook(ctx, f.admin, id); latchkey.ErrorCode(err) != latchkey.ENotFound {
			t.Errorf("Get(%q): %v, want not_found", id, err)
		}
	}
	if _, err := f.svc.GetWebhook(ctx, f.admin, w.ID); err != nil {
		t.Fatalf("the owner's Get: %v", err)
	}
}

func TestDeleteWebhookIsAudited(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	w, _, err := f.svc.CreateWebhook(ctx, f.admin, keys.WebhookParams{URL: "https://example.com/x"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.svc.DeleteWebhook(ctx, f.admin, w.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.GetWebhook(ctx, f.admin, w.ID); latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Fatalf("Get after delete: %v", err)
	}
	if err := f.svc.DeleteWebhook(ctx, f.admin, w.ID); latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Fatalf("second delete: %v", err)
	}
	evs, err := f.audit.ListAudit(ctx, f.admin, keys.AuditFilter{Action: "webhook.deleted"})
	if err != nil || len(evs) != 1 || evs[0].Details["webhook_id"] != w.ID || evs[0].Details["events"] != "*" {
		t.Fatalf("webhook.deleted events: %+v, %v", evs, err)
	}
	if v, err := f.audit.VerifyAudit(ctx, f.admin); err != nil || !v.OK {
		t.Fatalf("audit chain: %+v, %v", v, err)
	}
}

func TestListWebhooksPages(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for range 3 {
		if _, _, err := f.svc.CreateWebhook(ctx, f.admin, keys.WebhookParams{URL: "https://example.com/x"}); err != nil {
			t.Fatal(err)
		}
	}
	first, next, err := f.svc.ListWebhooks(ctx, f.admin, "", 2)
	if err != nil || len(first) != 2 || next == "" {
		t.Fatalf("first page: %d, %q, %v", len(first), next, err)
	}
	rest, next2, err := f.svc.ListWebhooks(ctx, f.admin, next, 2)
	if err != nil || len(rest) != 1 || next2 != "" || rest[0].ID <= first[1].ID {
		t.Fatalf("second page: %d, %q, %v", len(rest), next2, err)
	}
	if _, _, err := f.svc.ListWebhooks(ctx, f.admin, "%%%", 2); latchkey.ErrorCode(err) != latchkey.EInvalid {
		t.Fatalf("bad cursor: %v", err)
	}
	if _, _, err := f.svc.ListDeliveries(ctx, f.admin, first[0].ID, keys.DeliveryListParams{Status: "lost"}); latchkey.ErrorCode(err) != latchkey.EInvalid {
		t.Fatalf("bad status filter: %v", err)
	}
}

// An operator's --webhook-allow-private lets webhooks point into the
// networks it names, and no others.
func TestCreateWebhookInAnAllowedPrivateNetwork(t *testing.T) {
	f := newFixture(t, func(o *keys.Options) {
		o.WebhookTargets = latchkey.WebhookTargets{AllowPrivate: []netip.Prefix{netip.MustParsePrefix("10.1.2.0/24")}}
	})
	ctx := context.Background()
	if _, _, err := f.svc.CreateWebhook(ctx, f.admin, keys.WebhookParams{URL: "http://10.1.2.3:8080/in"}); err != nil {
		t.Fatalf("a webhook in the allowed 10.1.2.0/24: %v", err)
	}
	if _, _, err := f.svc.CreateWebhook(ctx, f.admin, keys.WebhookParams{URL: "http://10.1.3.3:8080/in"}); latchkey.ErrorCode(err) != latchkey.EInvalid {
		t.Fatalf("a webhook to 10.1.3.3 with only 10.1.2.0/24 allowed: %v, want invalid", err)
	}
}
