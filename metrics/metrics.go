// Package metrics exposes a node's figures in the Prometheus text format,
// from a registry of its own (never the global default one): the Go
// runtime and process collectors, and every Latchkey figure under the
// latchkey_ prefix.
//
// What the server answers reaches it through the httpapi.Observer methods
// Verified and Served. Verified runs on the forward-auth hot path, so its
// series are resolved once, in New: recording a verification is an atomic
// add on a counter and a histogram observation, with no lookup by label and
// no allocation. Figures that other packages already keep (the key cache,
// the brute-force guard) are read when Prometheus scrapes, by a collector,
// so they cost nothing per request.
//
// No label carries a key, a key id, a tenant or an owner: labels are
// verify codes, route patterns, methods and statuses, all from fixed sets.
package metrics

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/latchkeyhq/latchkey"
)

// Options say where the figures read at scrape time come from.
type Options struct {
	// Keys is the key service (*keys.Service), for the cache and
	// store-read figures; nil leaves them out.
	Keys KeySource
	// Guard is the brute-force guard (*guard.Guard); nil, or a nil
	// pointer (no guard), leaves its figures out.
	Guard GuardSource
	// Now is the clock the guard is given by the server, for the number
	// of networks blocked now (default time.Now).
	Now func() time.Time
	// Webhooks is the webhook dispatcher, for the outbox depth and the
	// attempt outcomes; nil leaves them out.
	Webhooks WebhookSource
}

// KeySource is what the key service (*keys.Service) tells at scrape time.
type KeySource interface {
	CacheStats() latchkey.CacheStats
	StoreReads() uint64
}

// GuardSource is what the brute-force guard (*guard.Guard) tells at scrape
// time.
type GuardSource interface {
	Stats(now time.Time) latchkey.GuardStats
}

// WebhookSource is what the webhook dispatcher (*webhook.Dispatcher) tells
// at scrape time.
type WebhookSource interface {
	Stats() latchkey.WebhookStats
	OutboxDepth(ctx context.Context) (int64, error)
}

// Codes returns every code latchkey_verifications_total is broken down
// by, each present from the start: the verify codes, then GUARDED (the
// brute-force guard refused the client's network) and ERROR (the store
// could not be read), as httpapi reports them.
func Codes() []string { return slices.Clone(codes[:]) }

// The two outcomes only httpapi reports (httpapi.CodeGuarded and
// httpapi.CodeError; this package does not import httpapi).
const (
	codeGuarded = "GUARDED"
	codeError   = "ERROR"
)

// codes are the verify codes and then those two, in the order of codeIndex.
var codes = append(latchkey.VerifyCodes[:len(latchkey.VerifyCodes):len(latchkey.VerifyCodes)], codeGuarded, codeError)

// codeIndex returns the index of code in codes, or -1.
func codeIndex(code string) int {
	if i := latchkey.VerifyCodeIndex(code); i >= 0 {
		return i
	}
	switch code {
	case codeGuarded:
		return len(latchkey.VerifyCodes)
	case codeError:
		return len(latchkey.VerifyCodes) + 1
	}
	return -1
}

// verifyBuckets are the upper bounds of latchkey_verify_duration_seconds:
// a cached key is answered in about a microsecond, a store read in tens of
// microseconds, so the buckets run from 10µs to 100ms.
var verifyBuckets = []float64{
	10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6,
	1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3,
}

// Metrics holds a node's registry and the series its request paths
// record into. It implements httpapi.Observer.
type Metrics struct {
	reg *prometheus.Registry

	byCode   *prometheus.CounterVec
	verified [len(latchkey.VerifyCodes) + 2]prometheus.Counter // pre-resolved, by codeIndex

	took       *prometheus.HistogramVec
	tookVerify prometheus.Observer // route="verify"
	tookAuth   prometheus.Observer // route="auth"

	requests *prometheus.CounterVec
}

// New returns Metrics with a registry of its own.
func New(o Options) *Metrics {
	if o.Now == nil {
		o.Now = time.Now
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		byCode: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "latchkey_verifications_total",
			Help: "Verifications answered by POST /v1/keys/verify and GET /v1/auth, by verify code; GUARDED: refused by the brute-force guard; ERROR: the store could not be read.",
		}, []string{"code"}),
		took: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "latchkey_verify_duration_seconds",
			Help:    "Time the verify handlers took, by route: verify (POST /v1/keys/verify) or auth (forward-auth).",
			Buckets: verifyBuckets,
		}, []string{"route"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "latchkey_http_requests_total",
			Help: "Requests answered outside forward-auth, by method, route pattern and status.",
		}, []string{"method", "route", "status"}),
	}
	for i, c := range codes {
		m.verified[i] = m.byCode.WithLabelValues(c)
	}
	m.tookVerify = m.took.WithLabelValues("verify")
	m.tookAuth = m.took.WithLabelValues("auth")
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.byCode, m.took, m.requests,
		newSources(o),
	)
	return m
}

// Registry is the registry everything is registered in, for more
// collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Verified records one verification: route is "verify" or "auth", code one
// of Codes. It does not allocate for those; an unknown code or route still
// counts, through a slower lookup by label.
func (m *Metrics) Verified(route, code string, took time.Duration) {
	if i := codeIndex(code); i >= 0 {
		m.verified[i].Inc()
	} else {
		m.byCode.WithLabelValues(code).Inc()
	}
	switch route {
	case "auth":
		m.tookAuth.Observe(took.Seconds())
	case "verify":
		m.tookVerify.Observe(took.Seconds())
	default:
		m.took.WithLabelValues(route).Observe(took.Seconds())
	}
}

// Served records a request answered outside forward-auth. The route label
// is the path of the ServeMux pattern that matched ("/v1/keys/{id}", never
// the path asked for, whose ids would make a series each), or "unmatched";
// methods outside the standard ones are "OTHER".
func (m *Metrics) Served(method, pattern string, status int) {
	m.requests.WithLabelValues(methodLabel(method), routeLabel(pattern), statusLabel(status)).Inc()
}

// statusLabels are the labels of the statuses the API answers, so that
// counting a request does not format its status.
var statusLabels = func() map[int]string {
	m := make(map[int]string)
	for _, c := range []int{200, 201, 204, 301, 302, 304, 307, 308, 400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 500, 502, 503, 504} {
		m[c] = strconv.Itoa(c)
	}
	return m
}()

func statusLabel(status int) string {
	if l, ok := statusLabels[status]; ok {
		return l
	}
	return strconv.Itoa(status)
}

func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return method
	}
	return "OTHER"
}

// routeLabel drops the method (and host) of a pattern such as
// "GET /v1/keys/{id}", which the method label already carries.
func routeLabel(pattern string) string {
	if _, path, ok := strings.Cut(pattern, " "); ok {
		pattern = strings.TrimLeft(path, " \t")
	}
	if i := strings.IndexByte(pattern, '/'); i > 0 {
		pattern = pattern[i:] // a host pattern: keep the path
	}
	if pattern == "" {
		return "unmatched"
	}
	return pattern
}

// sources collects, at scrape time, the figures other packages keep.
type sources struct {
	keys     KeySource
	guard    GuardSource
	webhooks WebhookSource
	now      func() time.Time

	cacheHits, cacheMisses, cacheEntries, storeReads *prometheus.Desc
	guardBlocked, guardBlocks, guardTracked          *prometheus.Desc
	outboxDepth, webhookResults                      *prometheus.Desc
}

func newSources(o Options) *sources {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &sources{
		keys:     latchkey.OrNil(o.Keys),
		guard:    latchkey.OrNil(o.Guard),
		webhooks: latchkey.OrNil(o.Webhooks),
		now:      o.Now,

		cacheHits:    d("latchkey_key_cache_hits_total", "Key lookups answered from the cache: a cached key, or a hash remembered as unknown."),
		cacheMisses:  d("latchkey_key_cache_misses_total", "Key lookups that had to read the store."),
		cacheEntries: d("latchkey_key_cache_entries", "Entries in the key cache: positive (keys) and negative (hashes remembered as unknown).", "kind"),
		storeReads:   d("latchkey_store_reads_total", "Store reads made to look a key up (verification and admin authentication)."),
		guardBlocked: d("latchkey_guard_blocked_networks", "Client networks the brute-force guard blocks now."),
		guardBlocks:  d("latchkey_guard_blocks_total", "Client networks blocked by the brute-force guard since the start."),
		guardTracked: d("latchkey_guard_tracked_networks", "Client networks whose failed key checks the brute-force guard holds in memory."),
		outboxDepth:  d("latchkey_webhook_outbox_depth", "Webhook deliveries pending (waiting for their first attempt or a retry), all tenants, read from the store at scrape."),
		webhookResults: d("latchkey_webhook_deliveries_total", "Webhook delivery attempts made by this node, by result: delivered (2xx), retry (failed, to be tried again), failed (failed, and given up).",
			"result"),
	}
}

func (c *sources) Describe(ch chan<- *prometheus.Desc) {
	if c.keys != nil {
		ch <- c.cacheHits
		ch <- c.cacheMisses
		ch <- c.cacheEntries
		ch <- c.storeReads
	}
	if c.guard != nil {
		ch <- c.guardBlocked
		ch <- c.guardBlocks
		ch <- c.guardTracked
	}
	if c.webhooks != nil {
		ch <- c.outboxDepth
		ch <- c.webhookResults
	}
}

func (c *sources) Collect(ch chan<- prometheus.Metric) {
	if c.keys != nil {
		st := c.keys.CacheStats()
		ch <- prometheus.MustNewConstMetric(c.cacheHits, prometheus.CounterValue, float64(st.Hits))
		ch <- prometheus.MustNewConstMetric(c.cacheMisses, prometheus.CounterValue, float64(st.Misses))
		ch <- prometheus.MustNewConstMetric(c.cacheEntries, prometheus.GaugeValue, float64(st.Keys), "positive")
		ch <- prometheus.MustNewConstMetric(c.cacheEntries, prometheus.GaugeValue, float64(st.Unknown), "negative")
		ch <- prometheus.MustNewConstMetric(c.storeReads, prometheus.CounterValue, float64(c.keys.StoreReads()))
	}
	if c.guard != nil {
		st := c.guard.Stats(c.now())
		ch <- prometheus.MustNewConstMetric(c.guardBlocked, prometheus.GaugeValue, float64(st.Blocked))
		ch <- prometheus.MustNewConstMetric(c.guardBlocks, prometheus.CounterValue, float64(st.BlocksTotal))
		ch <- prometheus.MustNewConstMetric(c.guardTracked, prometheus.GaugeValue, float64(st.Tracked))
	}
	if c.webhooks != nil {
		st := c.webhooks.Stats()
		ch <- prometheus.MustNewConstMetric(c.webhookResults, prometheus.CounterValue, float64(st.Delivered), "delivered")
		ch <- prometheus.MustNewConstMetric(c.webhookResults, prometheus.CounterValue, float64(st.Retried), "retry")
		ch <- prometheus.MustNewConstMetric(c.webhookResults, prometheus.CounterValue, float64(st.Failed), "failed")
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		n, err := c.webhooks.OutboxDepth(ctx)
		cancel()
		if err != nil {
			// The scrape reports the error; the other figures still go out.
			ch <- prometheus.NewInvalidMetric(c.outboxDepth, err)
		} else {
			ch <- prometheus.MustNewConstMetric(c.outboxDepth, prometheus.GaugeValue, float64(n))
		}
	}
}
