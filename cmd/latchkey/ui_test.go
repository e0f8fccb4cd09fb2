package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/internal/testenv"
	keyusage "github.com/latchkeyhq/latchkey/usage"
)

// chromiumPath is where Debian's chromium package (scripts/test.sh)
// puts the browser.
const chromiumPath = "/usr/bin/chromium"

// TestUIInChromium drives the dashboard and the portal of a real server
// in a real Chromium, one browser for every step: sign in, create a key
// and read its plaintext from the page, verify it through the API,
// revoke it in the page and see verification fail, a form posted without
// its CSRF token refused, sign-out, and a portal user who edits the URL
// to another owner's key. It opens the audit log, its chain status and
// the policies too. Every page it sees but the creation result
// goes to the leak check (no issued key in any of them). With
// LATCHKEY_SCREENSHOTS=1 it writes the screenshots docs/screenshots keeps.
func TestUIInChromium(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		testenv.Require(t, "chromium (apt-get install -y chromium)")
	}
	var rec *keyusage.Recorder
	ts := startServer(t, func(_ *serverConfig, h *serverHooks) { h.Usage = func(r *keyusage.Recorder) { rec = r } })
	admin := ts.mustTenant(t, "acme")
	registerKey(admin)
	billingID, billing := ts.mustCreate(t, admin, map[string]any{"name": "billing-service", "owner": "payments", "environment": "production",
		"scopes": []string{"invoices:read", "invoices:write"}, "resources": []string{"agent:billing"}, "expires_in": "5d"})
	registerKey(billing)
	for _, n := range []string{"search-indexer", "report-generator", "support-bot"} {
		_, k := ts.mustCreate(t, admin, map[string]any{"name": n, "owner": "platform", "environment": "staging", "scopes": []string{"data:read"}})
		registerKey(k)
	}
	_, self := ts.mustCreate(t, admin, map[string]any{"name": "alice-portal", "owner": "alice", "scopes": []string{"self:manage"}})
	registerKey(self)
	_, aliceApp := ts.mustCreate(t, admin, map[string]any{"name": "alice-app", "owner": "alice", "scopes": []string{"orders:read"}})
	registerKey(aliceApp)
	bobID, bob := ts.mustCreate(t, admin, map[string]any{"name": "bob-app", "owner": "bob", "scopes": []string{"orders:read"}})
	registerKey(bob)
	// Traffic for the charts, spread over a few hours: mostly valid, some
	// denied for a scope the key lacks.
	for h := range 6 {
		for i := range 3 + 2*h {
			body := map[string]any{"key": billing}
			if i%4 == 3 {
				body["scopes"] = []string{"admin:all"}
			}
			ts.verifyCode(t, body)
		}
		ts.Clock.Advance(time.Hour)
	}
	if err := rec.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}

	ctx := browserContext(t)
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	read := func(what string, a chromedp.Action[string]) string {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		v, err := chromedp.Run(sctx, a)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
	// scan hands the page's HTML to the leak check.
	scan := func(name string) {
		t.Helper()
		registerOutput("ui page "+name, []byte(read("read "+name, chromedp.OuterHTML(chromedp.CSS("html")))))
	}
	shots := os.Getenv("LATCHKEY_SCREENSHOTS") == "1"
	shot := func(name string) {
		t.Helper()
		if !shots {
			return
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "screenshots", name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The JavaScript confirm dialogs are accepted, as a user would.
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range dialogs {
			if err != nil {
				return
			}
			chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()

	// GET / leads to the sign-in page.
	step("open", chromedp.EmulateViewport(1200, 820), chromedp.Navigate(ts.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#key")))
	if loc := read("location", chromedp.Location()); loc != ts.URL+"/ui/login" {
		t.Fatalf("GET / ended at %s, want the sign-in page", loc)
	}
	scan("login")
	step("sign in", chromedp.SendKeys(chromedp.CSS("#key"), admin), chromedp.Submit(chromedp.CSS("#key")),
		chromedp.WaitVisible(chromedp.CSS("#count-active")))
	if n := read("active count", chromedp.Text(chromedp.CSS("#count-active"))); n != "8" {
		t.Errorf("overview counts %s active keys, want 8", n)
	}
	scan("overview")
	shot("overview")
	step("key list", chromedp.Navigate(ts.URL+"/ui/keys"), chromedp.WaitVisible(chromedp.CSS("table.keys")))
	scan("keys")
	shot("keys")
	step("key detail", chromedp.Navigate(ts.URL+"/ui/keys/"+billingID), chromedp.WaitVisible(chromedp.CSS("figure.chart svg")))
	scan("key detail")
	shot("key-detail")
	// The audit log (with its chain intact) and the policies render.
	step("audit log", chromedp.Navigate(ts.URL+"/ui/audit"), chromedp.WaitVisible(chromedp.CSS("table.events")))
	scan("audit")
	shot("audit")
	step("audit chain", chromedp.Navigate(ts.URL+"/ui/audit/verify"), chromedp.WaitVisible(chromedp.CSS("#chain-status")))
	if st := read("chain status", chromedp.Evaluate[string](`document.getElementById("chain-status").dataset.status`)); st != "intact" {
		t.Errorf("the audit chain shows %q, want intact", st)
	}
	step("policies", chromedp.Navigate(ts.URL+"/ui/policies"), chromedp.WaitVisible(chromedp.CSS("main table .badge.preset")))
	scan("policies")

	// Create a key; its plaintext is on the result page only.
	step("create", chromedp.Navigate(ts.URL+"/ui/keys/new"), chromedp.WaitVisible(chromedp.CSS("#n-name")),
		chromedp.SendKeys(chromedp.CSS("#n-name"), "checkout-web"), chromedp.SendKeys(chromedp.CSS("#n-owner"), "shop"),
		chromedp.SendKeys(chromedp.CSS("#n-scopes"), "orders:read orders:write"), chromedp.SendKeys(chromedp.CSS("#n-exp"), "90d"),
		chromedp.Submit(chromedp.CSS("#n-name")), chromedp.WaitVisible(chromedp.CSS("#plaintext")))
	plain := read("plaintext", chromedp.Value(chromedp.CSS("#plaintext")))
	registerKey(plain)
	shot("create-result")
	if code := ts.verifyCode(t, map[string]any{"key": plain, "scopes": []string{"orders:write"}}); code != latchkey.CodeValid {
		t.Fatalf("the key the page showed verifies as %s, want VALID", code)
	}
	id := read("key id", chromedp.Text(chromedp.CSS(".secret code")))

	// Revoke it on its page (the script's confirm dialog is accepted).
	step("revoke", chromedp.Navigate(ts.URL+"/ui/keys/"+id), chromedp.WaitVisible(chromedp.CSS("#a-reason")),
		chromedp.SendKeys(chromedp.CSS("#a-reason"), "test"), chromedp.Click(chromedp.CSS(`form[action$="/revoke"] button`)),
		chromedp.WaitVisible(chromedp.CSS("h1 .badge.revoked")))
	scan("revoked key")
	if code := ts.verifyCode(t, map[string]any{"key": plain}); code != latchkey.CodeRevoked {
		t.Fatalf("after the page's revoke the key verifies as %s, want REVOKED", code)
	}

	// A form posted without its CSRF token is refused.
	step("open the form", chromedp.Navigate(ts.URL+"/ui/keys/new"), chromedp.WaitVisible(chromedp.CSS("#n-name")))
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(function(){ var f = document.querySelector("form.stack input[name=csrf]"); f.remove(); return true; })()`)); err != nil {
		t.Fatalf("remove the token: %v", err)
	}
	step("post without token", chromedp.SendKeys(chromedp.CSS("#n-name"), "sneaky"), chromedp.Submit(chromedp.CSS("#n-name")),
		chromedp.WaitVisible(chromedp.CSS("p.error")))
	if h := read("refusal", chromedp.Text(chromedp.CSS("h1"))); !strings.HasPrefix(h, "403") {
		t.Fatalf("a form without its token answered %q, want 403", h)
	}
	scan("csrf refusal")

	// Sign out: the session ends, a page asks for sign-in again.
	step("sign out", chromedp.Navigate(ts.URL+"/ui/"), chromedp.WaitVisible(chromedp.CSS(".signout button")),
		chromedp.Click(chromedp.CSS(".signout button")), chromedp.WaitVisible(chromedp.CSS("#key")),
		chromedp.Navigate(ts.URL+"/ui/keys"), chromedp.WaitVisible(chromedp.CSS("#key")))
	if loc := read("location", chromedp.Location()); loc != ts.URL+"/ui/login" {
		t.Fatalf("after sign-out /ui/keys ended at %s, want the sign-in page", loc)
	}

	// The portal: alice sees her keys, and bob's key is not found.
	step("portal sign in", chromedp.SendKeys(chromedp.CSS("#key"), self), chromedp.Submit(chromedp.CSS("#key")),
		chromedp.WaitVisible(chromedp.CSS("table.keys")))
	html := read("portal", chromedp.OuterHTML(chromedp.CSS("table.keys")))
	if !strings.Contains(html, "alice-app") || strings.Contains(html, "bob-app") {
		t.Errorf("the portal's list: alice-app shown %v, bob-app shown %v; want true, false", strings.Contains(html, "alice-app"), strings.Contains(html, "bob-app"))
	}
	scan("portal")
	shot("portal")
	if shots {
		step("phone width", chromedp.EmulateViewport(390, 780))
		shot("portal-phone")
		step("desktop width", chromedp.EmulateViewport(1200, 820))
	}
	step("portal edits the URL", chromedp.Navigate(ts.URL+"/ui/portal/keys/"+bobID), chromedp.WaitVisible(chromedp.CSS("p.error")))
	if h := read("not found", chromedp.Text(chromedp.CSS("h1"))); !strings.HasPrefix(h, "404") {
		t.Fatalf("the portal showed another owner's key: %q, want 404", h)
	}
	scan("portal 404")
}

// browserContext starts one headless Chromium for the test, with the
// flags docs/TESTING asks for and a fresh profile, stopped when the test
// ends.
func browserContext(t *testing.T) context.Context {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.NoFirstRun, chromedp.UserDataDir(t.TempDir()))
	deadline, stop := context.WithTimeout(context.Background(), 2*time.Minute)
	actx, cancelAlloc := chromedp.NewExecAllocator(deadline, opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc(); stop() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}
