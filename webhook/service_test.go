package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/audit"
	"github.com/latchkeyhq/latchkey/internal/fakeclock"
	"github.com/latchkeyhq/latchkey/internal/servicetest"
	"github.com/latchkeyhq/latchkey/keyring"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/store/sqlite"
	"github.com/latchkeyhq/latchkey/webhook"
)

// withoutSealer runs the service with no keyring.
func withoutSealer() func(*webhook.ServiceOptions) {
	return func(o *webhook.ServiceOptions) {
		o.Sealer = nil
	}
}

func TestCreateWebhookShowsTheSecretOnceAndSealsIt(t *testing.T) {
	f := newCRUD(t)
	sealer := f.sealer
	ctx := context.Background()
	w, secret, err := f.hooks.CreateWebhook(ctx, f.admin, webhook.Params{URL: "https://hooks.example.com/in?token=abc", Events: []string{"key.revoked", "key.revoked", "key.created"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := latchkey.ParseWebhookSecret(secret); err != nil {
		t.Fatalf("secret is not a whsec_ secret: %v", err)
	}
	if !latchkey.ValidID("whk", w.ID) || w.Tenant != "acme" || !w.CreatedAt.Equal(t0) || strings.Join(w.Events, ",") != "key.revoked,key.created" {
		t.Fatalf("webhook = %+v", w)
	}
	got, err := f.hooks.GetWebhook(ctx, f.admin, w.ID)
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
	evs, err := f.audit.ListAudit(ctx, f.admin, latchkey.AuditFilter{Action: "webhook.created"})
	if err != nil || len(evs) != 1 {
		t.Fatalf("webhook.created events: %d, %v", len(evs), err)
	}
	e := evs[0]
	if e.Details["webhook_id"] != w.ID || e.Details["url"] != "https://hooks.example.com/in" || e.ActorKeyID != f.admin.KeyID {
		t.Fatalf("audit event = %+v (the URL's query must be left out)", e)
	}
}

func TestCreateWebhookValidates(t *testing.T) {
	f := newCRUD(t)
	ctx := context.Background()
	for name, p := range map[string]webhook.Params{
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
		if _, _, err := f.hooks.CreateWebhook(ctx, f.admin, p); latchkey.ErrorCode(err) != latchkey.EInvalid {
			t.Errorf("%s: %v, want invalid", name, err)
		}
	}
	ws, _, err := f.hooks.ListWebhooks(ctx, f.admin, "", 0)
	if err != nil || len(ws) != 0 {
		t.Fatalf("webhooks after refused creates: %d, %v", len(ws), err)
	}
}

func TestCreateWebhookWithoutSealerIsUnavailable(t *testing.T) {
	f := newCRUD(t, withoutSealer())
	_, _, err := f.hooks.CreateWebhook(context.Background(), f.admin, webhook.Params{URL: "https://example.com/x"})
	if latchkey.ErrorCode(err) != latchkey.EUnavailable {
		t.Fatalf("without a sealer: %v, want unavailable", err)
	}
}

func TestWebhooksAreTenantIsolated(t *testing.T) {
	f := newCRUD(t)
	ctx := context.Background()
	w, _, err := f.hooks.CreateWebhook(ctx, f.admin, webhook.Params{URL: "https://example.com/x"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.hooks.GetWebhook(ctx, f.other, w.ID); latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Errorf("another tenant's Get: %v, want not_found", err)
	}
	if err := f.hooks.DeleteWebhook(ctx, f.other, w.ID); latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Errorf("another tenant's Delete: %v, want not_found", err)
	}
	if _, _, err := f.hooks.ListDeliveries(ctx, f.other, w.ID, webhook.DeliveryListParams{}); latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Errorf("another tenant's deliveries: %v, want not_found", err)
	}
	if ws, _, _ := f.hooks.ListWebhooks(ctx, f.other, "", 0); len(ws) != 0 {
		t.Errorf("another tenant lists %d webhooks", len(ws))
	}
	for _, id := range []string{"whk_x", "key_" + w.ID[4:], ""} {
		if _, err := f.hooks.GetWebhook(ctx, f.admin, id); latchkey.ErrorCode(err) != latchkey.ENotFound {
			t.Errorf("Get(%q): %v, want not_found", id, err)
		}
	}
	if _, err := f.hooks.GetWebhook(ctx, f.admin, w.ID); err != nil {
		t.Fatalf("the owner's Get: %v", err)
	}
}

func TestDeleteWebhookIsAudited(t *testing.T) {
	f := newCRUD(t)
	ctx := context.Background()
	w, _, err := f.hooks.CreateWebhook(ctx, f.admin, webhook.Params{URL: "https://example.com/x"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.hooks.DeleteWebhook(ctx, f.admin, w.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.hooks.GetWebhook(ctx, f.admin, w.ID); latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Fatalf("Get after delete: %v", err)
	}
	if err := f.hooks.DeleteWebhook(ctx, f.admin, w.ID); latchkey.ErrorCode(err) != latchkey.ENotFound {
		t.Fatalf("second delete: %v", err)
	}
	evs, err := f.audit.ListAudit(ctx, f.admin, latchkey.AuditFilter{Action: "webhook.deleted"})
	if err != nil || len(evs) != 1 || evs[0].Details["webhook_id"] != w.ID || evs[0].Details["events"] != "*" {
		t.Fatalf("webhook.deleted events: %+v, %v", evs, err)
	}
	if v, err := f.audit.VerifyAudit(ctx, f.admin); err != nil || !v.OK {
		t.Fatalf("audit chain: %+v, %v", v, err)
	}
}

func TestListWebhooksPages(t *testing.T) {
	f := newCRUD(t)
	ctx := context.Background()
	for range 3 {
		if _, _, err := f.hooks.CreateWebhook(ctx, f.admin, webhook.Params{URL: "https://example.com/x"}); err != nil {
			t.Fatal(err)
		}
	}
	first, next, err := f.hooks.ListWebhooks(ctx, f.admin, "", 2)
	if err != nil || len(first) != 2 || next == "" {
		t.Fatalf("first page: %d, %q, %v", len(first), next, err)
	}
	rest, next2, err := f.hooks.ListWebhooks(ctx, f.admin, next, 2)
	if err != nil || len(rest) != 1 || next2 != "" || rest[0].ID <= first[1].ID {
		t.Fatalf("second page: %d, %q, %v", len(rest), next2, err)
	}
	if _, _, err := f.hooks.ListWebhooks(ctx, f.admin, "%%%", 2); latchkey.ErrorCode(err) != latchkey.EInvalid {
		t.Fatalf("bad cursor: %v", err)
	}
	if _, _, err := f.hooks.ListDeliveries(ctx, f.admin, first[0].ID, webhook.DeliveryListParams{Status: "lost"}); latchkey.ErrorCode(err) != latchkey.EInvalid {
		t.Fatalf("bad status filter: %v", err)
	}
}

// An operator's --webhook-allow-private lets webhooks point into the
// networks it names, and no others.
func TestCreateWebhookInAnAllowedPrivateNetwork(t *testing.T) {
	f := newCRUD(t, func(o *webhook.ServiceOptions) {
		o.Targets = latchkey.WebhookTargets{AllowPrivate: []netip.Prefix{netip.MustParsePrefix("10.1.2.0/24")}}
	})
	ctx := context.Background()
	if _, _, err := f.hooks.CreateWebhook(ctx, f.admin, webhook.Params{URL: "http://10.1.2.3:8080/in"}); err != nil {
		t.Fatalf("a webhook in the allowed 10.1.2.0/24: %v", err)
	}
	if _, _, err := f.hooks.CreateWebhook(ctx, f.admin, webhook.Params{URL: "http://10.1.3.3:8080/in"}); latchkey.ErrorCode(err) != latchkey.EInvalid {
		t.Fatalf("a webhook to 10.1.3.3 with only 10.1.2.0/24 allowed: %v, want invalid", err)
	}
}

// crud is the webhook service as the server wires it, beside the key
// service that authenticates the admins of two tenants and the audit
// service that reads what the changes recorded. No dispatcher runs on it:
// the URLs these tests register (private and metadata addresses among
// them) are only checked and stored, never dialled.
type crud struct {
	db     *sqlite.DB
	hooks  *webhook.Service
	audit  *audit.Service
	sealer latchkey.Sealer
	admin  *latchkey.Actor // tenant "acme" admin
	other  *latchkey.Actor // tenant "globex" admin
}

func newCRUD(t *testing.T, opts ...func(*webhook.ServiceOptions)) *crud {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "crud.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	master, err := keyring.GenerateMasterKey()
	if err != nil {
		t.Fatal(err)
	}
	kr, err := keyring.Open(ctx, latchkey.Narrow[keyring.Tx](db), master, keyring.Options{})
	if err != nil {
		t.Fatal(err)
	}
	clock := fakeclock.New(t0)
	o := webhook.ServiceOptions{Store: latchkey.Narrow[webhook.Tx](db), Sealer: kr, Now: clock.Now}
	for _, f := range opts {
		f(&o)
	}
	f := &crud{db: db, hooks: webhook.NewService(o), audit: audit.New(audit.Options{Store: latchkey.Narrow[audit.Tx](db), Now: clock.Now}), sealer: kr}
	ks := keys.New(keys.Options{Store: latchkey.Narrow[keys.Tx](db), Now: clock.Now})
	_, f.admin, f.other = servicetest.Admins(t, ks)
	return f
}

// brokenAudit is a store whose audit appends fail while fail is set, as a
// full disk or a lost database would make them.
type brokenAudit struct {
	latchkey.Store[webhook.Tx]
	fail atomic.Bool
}

func (b *brokenAudit) Update(ctx context.Context, fn func(webhook.Tx) error) error {
	return b.Store.Update(ctx, func(tx webhook.Tx) error { return fn(&brokenAuditTx{Tx: tx, b: b}) })
}

type brokenAuditTx struct {
	webhook.Tx
	b *brokenAudit
}

func (t *brokenAuditTx) AppendAudit(e *latchkey.AuditEvent) error {
	if t.b.fail.Load() {
		return latchkey.Errorf(latchkey.EUnavailable, "audit log unavailable")
	}
	return t.Tx.AppendAudit(e)
}

// Every change to a webhook records its audit event in its own
// transaction: when the event cannot be written the change fails and
// leaves nothing changed.
func TestWebhookChangeFailsWhenItsAuditEventCannotBeWritten(t *testing.T) {
	var store *brokenAudit
	f := newCRUD(t, func(o *webhook.ServiceOptions) {
		store = &brokenAudit{Store: o.Store}
		o.Store = store
	})
	ctx := context.Background()
	hook, _, err := f.hooks.CreateWebhook(ctx, f.admin, webhook.Params{URL: "https://hooks.example.com/in"})
	if err != nil {
		t.Fatal(err)
	}
	failed := &latchkey.Delivery{ID: latchkey.NewID("dlv", t0), WebhookID: hook.ID, EventID: "evt_x", Tenant: "acme",
		EventType: latchkey.EventKeyCreated, Status: latchkey.DeliveryFailed, Attempts: 5, CreatedAt: t0}
	if err := store.Store.Update(ctx, func(tx webhook.Tx) error { return tx.CreateDelivery(failed) }); err != nil {
		t.Fatal(err)
	}
	store.fail.Store(true)
	changes := map[string]func() error{
		"CreateWebhook": func() error {
			_, _, err := f.hooks.CreateWebhook(ctx, f.admin, webhook.Params{URL: "https://hooks.example.com/other"})
			return err
		},
		"DeleteWebhook": func() error { return f.hooks.DeleteWebhook(ctx, f.admin, hook.ID) },
		"RetryDelivery": func() error { _, err := f.hooks.RetryDelivery(ctx, f.admin, hook.ID, failed.ID); return err },
	}
	for name, c := range changes {
		t.Run(name, func(t *testing.T) {
			if err := c(); latchkey.ErrorCode(err) != latchkey.EUnavailable {
				t.Fatalf("change with a failing audit log: %v, want unavailable", err)
			}
		})
	}
	store.fail.Store(false)
	hooks, _, err := f.hooks.ListWebhooks(ctx, f.admin, "", 0)
	if err != nil || len(hooks) != 1 || hooks[0].ID != hook.ID {
		t.Fatalf("webhooks after failed changes: %d (%v), want only the first", len(hooks), err)
	}
	if ds, _, err := f.hooks.ListDeliveries(ctx, f.admin, hook.ID, webhook.DeliveryListParams{}); err != nil || len(ds) != 1 || ds[0].Status != latchkey.DeliveryFailed {
		t.Fatalf("the delivery after a failed retry: %+v, %v; want it still failed", ds, err)
	}
	evs, err := f.audit.ListAudit(ctx, f.admin, latchkey.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Action == "webhook.deleted" || e.Action == "webhook.redelivered" || e.Action == "webhook.created" && e.Details["webhook_id"] != hook.ID {
			t.Fatalf("an event of a failed change was kept: %+v", e)
		}
	}
}
