package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/usage"
)

func init() {
	moreTests = append(moreTests, []conformanceTest{
		{"UsageTotalsSumByKeyAndCode", testUsageTotals},
		{"NetworkTotalsCountDistinctNetworks", testNetworkTotals},
	}...)
}

func usageTotals(t *testing.T, s keys.Store, tenant string, from, to time.Time) []latchkey.UsageTotal {
	t.Helper()
	return usageTotalsAt(t, s, tenant, latchkey.GrainMinute, from, to)
}

func usageTotalsAt(t *testing.T, s keys.Store, tenant string, g latchkey.Grain, from, to time.Time) []latchkey.UsageTotal {
	t.Helper()
	var out []latchkey.UsageTotal
	view(t, aud(s), func(tx auditTx) (err error) {
		out, err = tx.UsageTotals(tenant, g, from, to)
		return err
	})
	return out
}

func networkTotals(t *testing.T, s keys.Store, tenant string, from, to time.Time) []latchkey.NetworkTotal {
	t.Helper()
	return networkTotalsAt(t, s, tenant, latchkey.GrainMinute, from, to)
}

func networkTotalsAt(t *testing.T, s keys.Store, tenant string, g latchkey.Grain, from, to time.Time) []latchkey.NetworkTotal {
	t.Helper()
	var out []latchkey.NetworkTotal
	view(t, aud(s), func(tx auditTx) (err error) {
		out, err = tx.NetworkTotals(tenant, g, from, to)
		return err
	})
	return out
}

func testUsageTotals(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme", "beta")
	createKeys(t, s, key("acme", "key_1"), key("acme", "key_2"), key("beta", "key_9"))
	row := func(tenant, id string, m int, code string, n int64) latchkey.UsageRow {
		return latchkey.UsageRow{KeyID: id, Tenant: tenant, Minute: minute(m), Code: code, Count: n}
	}
	update(t, use(s), func(tx usage.Tx) error {
		return tx.AddUsage([]latchkey.UsageRow{
			row("acme", "key_1", -1, "VALID", 100), // before the window
			row("acme", "key_1", 0, "VALID", 3),
			row("acme", "key_1", 0, "REVOKED", 1),
			row("acme", "key_1", 5, "VALID", 4),
			row("acme", "key_1", 9, "REVOKED", 2),
			row("acme", "key_1", 10, "VALID", 100), // at the window's end: outside
			row("acme", "key_2", 3, "INSUFFICIENT_SCOPE", 7),
			row("beta", "key_9", 2, "VALID", 50), // another tenant's
		})
	})
	if got := usageTotals(t, s, "acme", minute(20), minute(30)); got == nil || len(got) != 0 {
		t.Fatalf("UsageTotals of an empty window = %#v, want an empty list", got)
	}
	got := usageTotals(t, s, "acme", minute(0), minute(10))
	want := []latchkey.UsageTotal{
		{KeyID: "key_1", Code: "REVOKED", Count: 3, First: minute(0), Last: minute(9)},
		{KeyID: "key_1", Code: "VALID", Count: 7, First: minute(0), Last: minute(5)},
		{KeyID: "key_2", Code: "INSUFFICIENT_SCOPE", Count: 7, First: minute(3), Last: minute(3)},
	}
	if len(got) != len(want) {
		t.Fatalf("UsageTotals = %+v, want %+v", got, want)
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.KeyID != w.KeyID || g.Code != w.Code || g.Count != w.Count || !g.First.Equal(w.First) || !g.Last.Equal(w.Last) ||
			g.First.Location() != time.UTC || g.Last.Location() != time.UTC {
			t.Errorf("UsageTotals[%d] = %+v, want %+v", i, g, w)
		}
	}
	if got := usageTotals(t, s, "nobody", minute(-100), minute(100)); len(got) != 0 {
		t.Errorf("UsageTotals of an unknown tenant = %+v", got)
	}
	// The day roll-up holds every row of acme's keys on that UTC day.
	day := minute(0).Truncate(24 * time.Hour)
	daily := usageTotalsAt(t, s, "acme", latchkey.GrainDay, day, day.Add(24*time.Hour))
	if fmt.Sprint(len(daily)) != "3" || daily[1].Count != 207 || !daily[1].First.Equal(day) || !daily[1].Last.Equal(day) {
		t.Errorf("daily UsageTotals = %+v, want key_1 VALID 207 on %v", daily, day)
	}
}

func testNetworkTotals(t *testing.T, s keys.Store) {
	createTenants(t, s, "acme", "beta")
	createKeys(t, s, key("acme", "key_1"), key("acme", "key_2"), key("acme", "key_3"), key("beta", "key_9"))
	net := func(id string, m int, network string, n int64) latchkey.UsageNetwork {
		return latchkey.UsageNetwork{KeyID: id, Minute: minute(m), Network: network, Count: n}
	}
	update(t, use(s), func(tx usage.Tx) error {
		return tx.AddUsageNetworks([]latchkey.UsageNetwork{
			net("key_1", 0, "192.0.2.0/24", 5),
			net("key_1", 1, "192.0.2.0/24", 5), // the same network again
			net("key_1", 2, "2001:db8:1::/48", 1),
			net("key_1", 2, "other", 9),            // not a network of its own
			net("key_1", 12, "198.51.100.0/24", 1), // after the window
			net("key_2", 4, "other", 3),
			net("key_3", 8, "203.0.113.0/24", 2),
			net("key_9", 1, "10.0.0.0/24", 1), // another tenant's
		})
	})
	got := networkTotals(t, s, "acme", minute(0), minute(10))
	if fmt.Sprint(got) != fmt.Sprint([]latchkey.NetworkTotal{{KeyID: "key_1", Networks: 2}, {KeyID: "key_3", Networks: 1}}) {
		t.Errorf("NetworkTotals = %+v, want key_1: 2, key_3: 1", got)
	}
	if got := networkTotals(t, s, "beta", minute(0), minute(10)); fmt.Sprint(got) != fmt.Sprint([]latchkey.NetworkTotal{{KeyID: "key_9", Networks: 1}}) {
		t.Errorf("NetworkTotals of beta = %+v", got)
	}
	if got := networkTotals(t, s, "acme", minute(20), minute(30)); got == nil || len(got) != 0 {
		t.Errorf("NetworkTotals of an empty window = %#v, want an empty list", got)
	}
	day := minute(0).Truncate(24 * time.Hour)
	got = networkTotalsAt(t, s, "acme", latchkey.GrainDay, day, day.Add(24*time.Hour))
	if fmt.Sprint(got) != fmt.Sprint([]latchkey.NetworkTotal{{KeyID: "key_1", Networks: 3}, {KeyID: "key_3", Networks: 1}}) {
		t.Errorf("daily NetworkTotals = %+v, want key_1: 3, key_3: 1", got)
	}
}
