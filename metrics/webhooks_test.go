package metrics_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/metrics"
	"github.com/latchkeyhq/latchkey/webhook"
)

type fakeWebhooks struct {
	st    webhook.Stats
	depth int64
	err   error
}

func (f *fakeWebhooks) Stats() webhook.Stats { return f.st }
func (f *fakeWebhooks) OutboxDepth(context.Context) (int64, error) {
	return f.depth, f.err
}

func TestWebhookFigures(t *testing.T) {
	src := &fakeWebhooks{st: webhook.Stats{Delivered: 7, Retried: 3, Failed: 1}, depth: 4}
	m := metrics.New(metrics.Options{Webhooks: src})
	scrape := func() string {
		w := httptest.NewRecorder()
		m.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
		return w.Body.String()
	}
	fams := parse(t, scrape())
	for result, want := range map[string]float64{"delivered": 7, "retry": 3, "failed": 1} {
		if got := value(t, fams, "latchkey_webhook_deliveries_total", "result", result); got != want {
			t.Errorf("deliveries{result=%s} = %v, want %v", result, got, want)
		}
	}
	if got := value(t, fams, "latchkey_webhook_outbox_depth"); got != 4 {
		t.Errorf("outbox depth = %v, want 4", got)
	}
	// The depth is read at each scrape.
	src.depth = 0
	if got := value(t, parse(t, scrape()), "latchkey_webhook_outbox_depth"); got != 0 {
		t.Errorf("outbox depth after draining = %v", got)
	}
	// A store that does not answer costs the gauge, not the scrape.
	src.err = latchkey.Errorf(latchkey.EUnavailable, "down")
	text := scrape()
	if strings.Contains(text, "latchkey_webhook_outbox_depth ") || !strings.Contains(text, `latchkey_webhook_deliveries_total{result="delivered"} 7`) {
		t.Errorf("scrape with the store down:\n%s", grep(text, "latchkey_webhook"))
	}
}
