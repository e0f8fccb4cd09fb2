// Package security watches key usage for anomalies and records them as
// security.anomaly events (which webhooks deliver and GET
// /v1/security-events lists), plus key.quota_exhausted events.
//
// Most checks ride the usage recorder's flush (Monitor implements
// latchkey.FlushObserver): they see the key minutes a flush writes, aggregated,
// inside the flush's transaction, so the verify path pays nothing for
// them, and their cost follows what the flush writes — about one look per
// active key and minute, never one per key and second. Each check's work
// is proportional to the rows it is given (map lookups, no scans of the
// whole flush per key). Failed-auth bursts come from the brute-force guard instead
// (Monitor.GuardBlocked), because a failed check found no key.
//
// What each node remembers (networks already known, a minute's count per
// key, findings already raised) is in memory and bounded; with several
// nodes, a spike is judged on the verifications one node saw.
package security

import (
	"context"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// Options configures a Monitor. Zero values take the defaults.
type Options struct {
	// Store is where guard findings are written (flush findings use the
	// flush's transaction).
	Store latchkey.Store[latchkey.FlushTx]
	// Dormancy is how long a key must go unused for its next use to be an
	// anomaly (default 30 days; negative turns the check off).
	Dormancy time.Duration
	// SpikeFactor and SpikeMin: a key's verifications in one minute are a
	// spike when they number at least SpikeMin (default 100) and more than
	// SpikeFactor (default 10) times its average per minute over the
	// SpikeBaseline before (default 1h; an average below 1 counts as 1).
	// A negative SpikeMin turns the check off.
	SpikeFactor   float64
	SpikeMin      int64
	SpikeBaseline time.Duration
	// NoNewNetworks turns the new-network check off.
	NoNewNetworks bool
	// Repeat is how long a finding about one key (and network) is not
	// raised again (default 1h).
	Repeat time.Duration
	// Remember bounds the (key, network) pairs known to be old news
	// (default 100,000); beyond it the store is asked again.
	Remember int
	Now      func() time.Time
	Logger   *slog.Logger
}

// Monitor runs the security checks.
type Monitor struct {
	o Options

	mu      sync.Mutex
	known   map[string]struct{}    // keyID + " " + network
	minutes map[string]*minuteSeen // keyID → its newest minute
	fired   map[string]time.Time   // kind + " " + keyID (+ network) → when raised
	j       journal                // what the flush being observed changed

	blocks chan block
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
}

type minuteSeen struct {
	minute  time.Time
	count   int64
	checked int64 // count at the last baseline check
}

type block struct {
	network  netip.Prefix
	at       time.Time
	failures int
}

// New returns a Monitor and starts the writer of guard findings; Close
// stops it.
func New(o Options) *Monitor {
	if o.Dormancy == 0 {
		o.Dormancy = 30 * 24 * time.Hour
	}
	if o.SpikeFactor <= 0 {
		o.SpikeFactor = 10
	}
	if o.SpikeMin == 0 {
		o.SpikeMin = 100
	}
	if o.SpikeBaseline <= 0 {
		o.SpikeBaseline = time.Hour
	}
	if o.Repeat <= 0 {
		o.Repeat = time.Hour
	}
	if o.Remember <= 0 {
		o.Remember = 100_000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Monitor{
		o:       o,
		known:   map[string]struct{}{},
		minutes: map[string]*minuteSeen{},
		fired:   map[string]time.Time{},
		blocks:  make(chan block, 256),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go m.run()
	return m
}

var _ latchkey.FlushObserver = (*Monitor)(nil)

// ObserveFlush runs the usage checks on one flush.
// What it changes in memory is undone unless FlushDone(true) follows.
func (m *Monitor) ObserveFlush(tx latchkey.FlushTx, f *latchkey.UsageFlush) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.begin()
	var out []*latchkey.Event
	for _, lu := range f.LastUsed {
		if e := m.dormant(lu); e != nil {
			out = append(out, e)
		}
	}
	es, err := m.newNetworks(tx, f)
	if err != nil {
		return err
	}
	out = append(out, es...)
	es, err = m.spikes(tx, f)
	if err != nil {
		return err
	}
	out = append(out, es...)
	es, err = m.keyFindings(tx, f)
	if err != nil {
		return err
	}
	out = append(out, es...)
	for _, e := range out {
		if err := tx.AppendEvent(e); err != nil {
			return err
		}
	}
	return nil
}

func anomaly(tenant, keyID string, at time.Time, a latchkey.Anomaly) *latchkey.Event {
	return latchkey.NewEvent(tenant, latchkey.EventSecurityAnomaly, keyID, at, a)
}

func (m *Monitor) dormant(lu latchkey.LastUse) *latchkey.Event {
	if m.o.Dormancy < 0 || lu.Before.IsZero() {
		return nil
	}
	idle := lu.At.Sub(lu.Before)
	if idle < m.o.Dormancy {
		return nil
	}
	days := strconv.FormatInt(int64(idle/(24*time.Hour)), 10)
	return anomaly(lu.Tenant, lu.KeyID, lu.At, latchkey.Anomaly{
		Kind:     latchkey.AnomalyDormantKeyUsed,
		Severity: latchkey.SeverityMedium,
		Summary:  "key " + lu.KeyID + " was used after " + days + " days without use",
		Details: map[string]string{
			"idle_days":   days,
			"unused_from": lu.Before.UTC().Format(time.RFC3339),
			"dormancy":    latchkey.FormatDuration(m.o.Dormancy),
		},
	})
}

// newNetworks raises an anomaly for each network a key with history had
// never been used from. It runs before the flush's rows are added, so the
// store holds only earlier use.
func (m *Monitor) newNetworks(tx latchkey.FlushTx, f *latchkey.UsageFlush) ([]*latchkey.Event, error) {
	if m.o.NoNewNetworks {
		return nil, nil
	}
	var out []*latchkey.Event
	seen := map[string]bool{}
	for _, n := range f.Networks {
		if n.Network == latchkey.OtherNetwork {
			continue
		}
		id := n.KeyID + " " + n.Network
		if seen[id] {
			continue
		}
		seen[id] = true
		if _, ok := m.known[id]; ok {
			continue
		}
		this, anyNet, err := tx.NetworkHistory(n.KeyID, n.Network)
		if err != nil {
			return nil, err
		}
		m.addKnown(id)
		if this || !anyNet {
			continue
		}
		tenant := f.Tenants[n.KeyID]
		at := n.Minute
		out = append(out, anomaly(tenant, n.KeyID, at, latchkey.Anomaly{
			Kind:     latchkey.AnomalyNewNetwork,
			Severity: latchkey.SeverityMedium,
			Network:  n.Network,
			Summary:  "key " + n.KeyID + " was used from " + n.Network + ", a network it had not been used from",
			Details:  map[string]string{"verifications": strconv.FormatInt(n.Count, 10)},
		}))
	}
	return out, nil
}

// spikes adds the flush's counts to each key's count of its newest minute
// and compares a count that passed SpikeMin with the key's baseline.
func (m *Monitor) spikes(tx latchkey.FlushTx, f *latchkey.UsageFlush) ([]*latchkey.Event, error) {
	if m.o.SpikeMin < 0 {
		return nil, nil
	}
	touched := map[string]*minuteSeen{}
	for _, u := range f.Usage {
		ms := m.minutes[u.KeyID]
		switch {
		case ms == nil:
			ms = m.newMinute(u.KeyID, u.Minute)
		case u.Minute.Before(ms.minute):
			continue // a late row of an older minute
		case u.Minute.After(ms.minute):
			m.saveMinute(ms)
			*ms = minuteSeen{minute: u.Minute}
		default:
			m.saveMinute(ms)
		}
		ms.count += u.Count
		touched[u.KeyID] = ms
	}
	var out []*latchkey.Event
	for id, ms := range touched {
		if ms.count < m.o.SpikeMin || ms.count < 2*ms.checked {
			continue
		}
		ms.checked = ms.count
		tenant := f.Tenants[id]
		rows, err := tx.Usage(tenant, id, ms.minute.Add(-m.o.SpikeBaseline), ms.minute)
		if err != nil {
			return nil, err
		}
		var sum int64
		for _, r := range rows {
			sum += r.Count
		}
		avg := max(float64(sum)/m.o.SpikeBaseline.Minutes(), 1)
		if float64(ms.count) <= m.o.SpikeFactor*avg || !m.raise(latchkey.AnomalyUsageSpike+" "+id, ms.minute) {
			continue
		}
		out = append(out, anomaly(tenant, id, ms.minute, latchkey.Anomaly{
			Kind:     latchkey.AnomalyUsageSpike,
			Severity: latchkey.SeverityMedium,
			Summary:  "key " + id + " was verified " + strconv.FormatInt(ms.count, 10) + " times in a minute, against a baseline of " + strconv.FormatFloat(avg, 'f', 1, 64) + " per minute",
			Details: map[string]string{
				"minute":           ms.minute.UTC().Format(time.RFC3339),
				"count":            strconv.FormatInt(ms.count, 10),
				"baseline_per_min": strconv.FormatFloat(avg, 'f', 2, 64),
				"baseline_window":  latchkey.FormatDuration(m.o.SpikeBaseline),
				"factor":           strconv.FormatFloat(m.o.SpikeFactor, 'f', -1, 64),
				"minimum_per_min":  strconv.FormatInt(m.o.SpikeMin, 10),
			},
		}))
	}
	return out, nil
}

// keyFindings reads the keys whose verifications ended REVOKED or
// QUOTA_EXCEEDED: a rotated-out key presented after its grace is an
// anomaly, and a key that ran out of quota raises key.quota_exhausted once
// per quota period (or credit top-up).
func (m *Monitor) keyFindings(tx latchkey.FlushTx, f *latchkey.UsageFlush) ([]*latchkey.Event, error) {
	type finding struct {
		revoked, quota bool
		count          int64
		minute         time.Time
	}
	found := map[string]*finding{}
	var order []string
	for _, u := range f.Usage {
		if u.Code != latchkey.CodeRevoked && u.Code != latchkey.CodeQuotaExceeded {
			continue
		}
		fd := found[u.KeyID]
		if fd == nil {
			fd = &finding{}
			found[u.KeyID] = fd
			order = append(order, u.KeyID)
		}
		if u.Code == latchkey.CodeRevoked {
			fd.revoked = true
			fd.count += u.Count
		} else {
			fd.quota = true
		}
		if u.Minute.After(fd.minute) {
			fd.minute = u.Minute
		}
	}
	var out []*latchkey.Event
	for _, id := range order {
		fd := found[id]
		tenant := f.Tenants[id]
		k, err := tx.Key(tenant, id)
		if latchkey.ErrorCode(err) == latchkey.ENotFound {
			continue
		}
		if err != nil {
			return nil, err
		}
		at := fd.minute
		if lu := f.LastAt(id); !lu.IsZero() {
			at = lu
		}
		if fd.revoked && k.RotatedTo != "" && k.State != latchkey.StateRevoked && !k.GraceUntil.IsZero() &&
			!at.Before(k.GraceUntil) && m.raise(latchkey.AnomalyRotatedKeyUsed+" "+id, at) {
			out = append(out, anomaly(tenant, id, at, latchkey.Anomaly{
				Kind:     latchkey.AnomalyRotatedKeyUsed,
				Severity: latchkey.SeverityHigh,
				Summary:  "key " + id + " was presented after it was rotated out and its grace period ended",
				Details: map[string]string{
					"rotated_to":    k.RotatedTo,
					"grace_until":   k.GraceUntil.UTC().Format(time.RFC3339),
					"verifications": strconv.FormatInt(fd.count, 10),
				},
			}))
		}
		if fd.quota && k.Quota != nil {
			e, err := quotaExhausted(tx, k, at)
			if err != nil {
				return nil, err
			}
			if e != nil {
				out = append(out, e)
			}
		}
	}
	return out, nil
}

// quotaExhausted returns the key.quota_exhausted event of k, unless one was
// raised already in the current period (periodic quotas) or since the key
// was last changed (credit balances, which a change tops up).
func quotaExhausted(tx latchkey.FlushTx, k *latchkey.Key, at time.Time) (*latchkey.Event, error) {
	since := k.UpdatedAt
	data := map[string]string{}
	if k.Quota.IsCredit() {
		data["kind"] = "credit"
	} else {
		start, err := latchkey.QuotaPeriodStart(k.Quota.Period, k.CreatedAt, at)
		if err != nil {
			return nil, err
		}
		since = start
		data["kind"] = "periodic"
		data["limit"] = strconv.FormatInt(k.Quota.Limit, 10)
		data["period"] = k.Quota.Period
		data["period_start"] = start.UTC().Format(time.RFC3339)
		data["resets_at"] = latchkey.QuotaPeriodEnd(k.Quota.Period, start).UTC().Format(time.RFC3339)
	}
	prior, err := tx.Events(k.Tenant, latchkey.EventFilter{KeyID: k.ID, Type: latchkey.EventKeyQuotaExhausted, Since: since, Limit: 1})
	if err != nil || len(prior) > 0 {
		return nil, err
	}
	return latchkey.NewEvent(k.Tenant, latchkey.EventKeyQuotaExhausted, k.ID, at, data), nil
}

// GuardBlocked is told when the brute-force guard starts holding a client
// network back. It does not wait: the finding is written to the operator
// tenant's events by a background writer (and dropped, with a log line, if
// 256 are already waiting).
func (m *Monitor) GuardBlocked(network netip.Prefix, failures int, at time.Time) {
	select {
	case m.blocks <- block{network: network, at: at, failures: failures}:
	default:
		m.o.Logger.Warn("security: dropped a failed-auth burst finding; the writer is behind", "network", network.String())
	}
}

func (m *Monitor) run() {
	defer close(m.done)
	for {
		select {
		case <-m.stop:
			for {
				select {
				case b := <-m.blocks:
					m.writeBlock(b)
				default:
					return
				}
			}
		case b := <-m.blocks:
			m.writeBlock(b)
		}
	}
}

func (m *Monitor) writeBlock(b block) {
	m.mu.Lock()
	ok := m.raise(latchkey.AnomalyFailedAuthBurst+" "+b.network.String(), b.at)
	m.mu.Unlock()
	if !ok || m.o.Store == nil {
		return
	}
	e := anomaly(latchkey.OperatorTenant, "", b.at, latchkey.Anomaly{
		Kind:     latchkey.AnomalyFailedAuthBurst,
		Severity: latchkey.SeverityHigh,
		Network:  b.network.String(),
		Summary:  "network " + b.network.String() + " presented " + strconv.Itoa(b.failures) + " unknown or malformed keys and was blocked",
		Details:  map[string]string{"failures": strconv.Itoa(b.failures)},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.o.Store.Update(ctx, func(tx latchkey.FlushTx) error { return tx.AppendEvent(e) }); err != nil {
		m.o.Logger.Warn("security: writing a failed-auth burst finding failed", "network", b.network.String(), "err", err)
	}
}

// Close writes the findings still waiting and stops the writer.
func (m *Monitor) Close() {
	m.once.Do(func() { close(m.stop) })
	<-m.done
}
