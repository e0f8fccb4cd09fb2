package postgres

import (
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/latchkeyhq/latchkey"
)

// A usage flush is written by the batch: each table's rows go in one
// statement that reads them from arrays (unnest), sums the rows that land
// on one row of the table (the minutes of one hour, say; ON CONFLICT DO
// UPDATE may touch a row only once a statement), and adds them to what is
// stored; and the statements of a flush go to the server together (a pgx
// batch), so a flush of n keys costs one round trip, not one per row. The
// rows are written in key order, so that two nodes flushing at once take
// their row locks in the same order instead of deadlocking.

// usageUpsert is the statement adding rows to a usage table, keyed by its
// time column: parameters key ids, tenants, times, codes and counts.
func usageUpsert(table, column string) string {
	return `INSERT INTO ` + table + ` (key_id, tenant_id, ` + column + `, code, count)
		SELECT key_id, min(tenant_id), at, code, sum(count)
		FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::bigint[]) AS u(key_id, tenant_id, at, code, count)
		GROUP BY key_id, at, code ORDER BY key_id, at, code
		ON CONFLICT (key_id, ` + column + `, code) DO UPDATE SET count = ` + table + `.count + excluded.count`
}

// networkUpsert is usageUpsert for network rows: parameters key ids,
// times, networks and counts.
func networkUpsert(table, column string) string {
	return `INSERT INTO ` + table + ` (key_id, ` + column + `, network, count)
		SELECT key_id, at, network, sum(count)
		FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::bigint[]) AS u(key_id, at, network, count)
		GROUP BY key_id, at, network ORDER BY key_id, at, network
		ON CONFLICT (key_id, ` + column + `, network) DO UPDATE SET count = ` + table + `.count + excluded.count`
}

var (
	usageMinuteUpsert   = usageUpsert("usage_minutes", "minute")
	usageHourUpsert     = usageUpsert("usage_hours", "hour")
	usageDayUpsert      = usageUpsert("usage_days", "day")
	networkMinuteUpsert = networkUpsert("usage_networks", "minute")
	networkDayUpsert    = networkUpsert("usage_network_days", "day")
)

// batch sends the statements of b together and reads each one's result.
func (t *Tx) batch(op string, b *pgx.Batch) error {
	br := t.tx.SendBatch(t.ctx, b)
	for range b.Len() {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return t.fail(op, err)
		}
	}
	if err := br.Close(); err != nil {
		return t.fail(op, err)
	}
	return nil
}

// AddUsage adds each row's count to its (key, minute, code) row and to its
// UTC hour's and day's roll-up rows.
func (t *Tx) AddUsage(rows []latchkey.UsageRow) error {
	if len(rows) == 0 {
		return nil
	}
	n := len(rows)
	ids, tenants, codes := make([]string, n), make([]string, n), make([]string, n)
	minutes, hours, days := make([]time.Time, n), make([]time.Time, n), make([]time.Time, n)
	counts := make([]int64, n)
	for i, r := range rows {
		m := r.Minute.UTC().Truncate(time.Minute)
		ids[i], tenants[i], codes[i], counts[i] = r.KeyID, r.Tenant, r.Code, r.Count
		minutes[i], hours[i], days[i] = m, m.Truncate(time.Hour), m.Truncate(24*time.Hour)
	}
	b := &pgx.Batch{}
	b.Queue(usageMinuteUpsert, ids, tenants, minutes, codes, counts)
	b.Queue(usageHourUpsert, ids, tenants, hours, codes, counts)
	b.Queue(usageDayUpsert, ids, tenants, days, codes, counts)
	return t.batch("add usage", b)
}

// AddUsageNetworks adds each row's count to its (key, minute, network) row
// and to its UTC day's roll-up row.
func (t *Tx) AddUsageNetworks(rows []latchkey.UsageNetwork) error {
	if len(rows) == 0 {
		return nil
	}
	n := len(rows)
	ids, networks := make([]string, n), make([]string, n)
	minutes, days := make([]time.Time, n), make([]time.Time, n)
	counts := make([]int64, n)
	for i, r := range rows {
		m := r.Minute.UTC().Truncate(time.Minute)
		ids[i], networks[i], counts[i] = r.KeyID, r.Network, r.Count
		minutes[i], days[i] = m, m.Truncate(24*time.Hour)
	}
	b := &pgx.Batch{}
	b.Queue(networkMinuteUpsert, ids, minutes, networks, counts)
	b.Queue(networkDayUpsert, ids, days, networks, counts)
	return t.batch("add usage networks", b)
}

// SetLastUsed moves each key's last_used_at forward to its At and sets its
// Before to what it was (the key's creation time if it was never used, the
// zero time for a missing key). Two statements for all of them, sent
// together: one reads, one writes.
func (t *Tx) SetLastUsed(uses []latchkey.LastUsed) error {
	if len(uses) == 0 {
		return nil
	}
	ids, ats := make([]string, len(uses)), make([]time.Time, len(uses))
	for i := range uses {
		uses[i].Before = time.Time{}
		ids[i], ats[i] = uses[i].KeyID, uses[i].At
	}
	b := &pgx.Batch{}
	b.Queue(`SELECT u.i, k.last_used_at, k.created_at
		FROM unnest($1::text[]) WITH ORDINALITY AS u(id, i) JOIN keys AS k ON k.id = u.id`, ids)
	b.Queue(`UPDATE keys SET last_used_at = u.at
		FROM (SELECT id, max(at) AS at FROM unnest($1::text[], $2::timestamptz[]) AS u(id, at) GROUP BY id ORDER BY id) AS u
		WHERE keys.id = u.id AND (keys.last_used_at IS NULL OR keys.last_used_at < u.at)`, ids, ats)
	br := t.tx.SendBatch(t.ctx, b)
	defer br.Close()
	rows, err := br.Query()
	if err != nil {
		return t.fail("set last used", err)
	}
	for rows.Next() {
		var i int64
		var last, created pgtype.Timestamptz
		if err := rows.Scan(&i, &last, &created); err != nil {
			rows.Close()
			return t.fail("set last used", err)
		}
		if i < 1 || i > int64(len(uses)) {
			rows.Close()
			return t.fail("set last used", fmt.Errorf("row %d of %d", i, len(uses)))
		}
		if last.Valid {
			uses[i-1].Before = fromTS(last)
		} else {
			uses[i-1].Before = fromTS(created)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return t.fail("set last used", err)
	}
	if _, err := br.Exec(); err != nil {
		return t.fail("set last used", err)
	}
	if err := br.Close(); err != nil {
		return t.fail("set last used", err)
	}
	return nil
}

// grainTable names the table and time column of a grain's usage rows.
func grainTable(g latchkey.Grain) (table, column string, err error) {
	switch g {
	case latchkey.GrainMinute:
		return "usage_minutes", "minute", nil
	case latchkey.GrainHour:
		return "usage_hours", "hour", nil
	case latchkey.GrainDay:
		return "usage_days", "day", nil
	}
	return "", "", latchkey.Errorf(latchkey.EInvalid, "usage grain %q: use minute, hour or day", g)
}

// Usage returns a key's minute rows in [from, to), by minute then code.
func (t *Tx) Usage(tenant, keyID string, from, to time.Time) ([]latchkey.UsageRow, error) {
	return t.UsageRollup(tenant, keyID, latchkey.GrainMinute, from, to)
}

// UsageRollup returns a key's rows of the grain whose start is in
// [from, to), by start then code.
func (t *Tx) UsageRollup(tenant, keyID string, g latchkey.Grain, from, to time.Time) ([]latchkey.UsageRow, error) {
	table, column, err := grainTable(g)
	if err != nil {
		return nil, err
	}
	return collect(t, "usage", `SELECT `+column+`, code, count FROM `+table+`
		WHERE tenant_id = $1 AND key_id = $2 AND `+column+` >= $3 AND `+column+` < $4
		ORDER BY `+column+`, code`, func(r pgx.Rows) (latchkey.UsageRow, error) {
		u := latchkey.UsageRow{KeyID: keyID, Tenant: tenant}
		var start pgtype.Timestamptz
		err := r.Scan(&start, &u.Code, &u.Count)
		u.Minute = fromTS(start)
		return u, err
	}, tenant, keyID, from, to)
}

// UsageNetworks returns a key's network rows in [from, to), by minute then
// network; the key must belong to the tenant.
func (t *Tx) UsageNetworks(tenant, keyID string, from, to time.Time) ([]latchkey.UsageNetwork, error) {
	return t.usageNetworks("usage_networks", "minute", tenant, keyID, from, to)
}

// UsageNetworkDays returns a key's daily network rows in [from, to).
func (t *Tx) UsageNetworkDays(tenant, keyID string, from, to time.Time) ([]latchkey.UsageNetwork, error) {
	return t.usageNetworks("usage_network_days", "day", tenant, keyID, from, to)
}

func (t *Tx) usageNetworks(table, column, tenant, keyID string, from, to time.Time) ([]latchkey.UsageNetwork, error) {
	return collect(t, "usage networks", `SELECT `+column+`, network, count FROM `+table+`
		WHERE key_id = $1 AND `+column+` >= $2 AND `+column+` < $3
		AND EXISTS (SELECT 1 FROM keys WHERE keys.id = `+table+`.key_id AND keys.tenant_id = $4)
		ORDER BY `+column+`, network`, func(r pgx.Rows) (latchkey.UsageNetwork, error) {
		u := latchkey.UsageNetwork{KeyID: keyID}
		var start pgtype.Timestamptz
		err := r.Scan(&start, &u.Network, &u.Count)
		u.Minute = fromTS(start)
		return u, err
	}, keyID, from, to, tenant)
}

// PruneUsage deletes the rows of the grain that start before before:
// minute and minute-network rows, hour rows, or day and day-network rows.
func (t *Tx) PruneUsage(g latchkey.Grain, before time.Time) (int64, error) {
	var qs []string
	switch g {
	case latchkey.GrainMinute:
		qs = []string{`DELETE FROM usage_minutes WHERE minute < $1`, `DELETE FROM usage_networks WHERE minute < $1`}
	case latchkey.GrainHour:
		qs = []string{`DELETE FROM usage_hours WHERE hour < $1`}
	case latchkey.GrainDay:
		qs = []string{`DELETE FROM usage_days WHERE day < $1`, `DELETE FROM usage_network_days WHERE day < $1`}
	default:
		return 0, latchkey.Errorf(latchkey.EInvalid, "usage grain %q: use minute, hour or day", g)
	}
	var total int64
	for _, q := range qs {
		tag, err := t.exec("prune usage", q, before)
		if err != nil {
			return 0, err
		}
		total += tag.RowsAffected()
	}
	return total, nil
}

// NetworkHistory reports whether a key was used from network, and at all.
func (t *Tx) NetworkHistory(keyID, network string) (seenThis, seenAny bool, err error) {
	err = t.tx.QueryRow(t.ctx, `SELECT
		EXISTS (SELECT 1 FROM usage_networks WHERE key_id = $1 AND network = $2),
		EXISTS (SELECT 1 FROM usage_networks WHERE key_id = $1)`, keyID, network).Scan(&seenThis, &seenAny)
	if err != nil {
		return false, false, t.fail("network history", err)
	}
	return seenThis, seenAny, nil
}

// UsageTotals sums a tenant's rows of a grain in [from, to) by key and code.
func (t *Tx) UsageTotals(tenant string, g latchkey.Grain, from, to time.Time) ([]latchkey.UsageTotal, error) {
	table, column, err := grainTable(g)
	if err != nil {
		return nil, err
	}
	return collect(t, "usage totals", `SELECT key_id, code, sum(count)::bigint, min(`+column+`), max(`+column+`) FROM `+table+`
		WHERE tenant_id = $1 AND `+column+` >= $2 AND `+column+` < $3
		GROUP BY key_id, code ORDER BY key_id, code`, func(r pgx.Rows) (latchkey.UsageTotal, error) {
		var u latchkey.UsageTotal
		var first, last pgtype.Timestamptz
		err := r.Scan(&u.KeyID, &u.Code, &u.Count, &first, &last)
		u.First, u.Last = fromTS(first), fromTS(last)
		return u, err
	}, tenant, from, to)
}

// NetworkTotals counts the distinct networks of each of a tenant's keys in
// [from, to). Network rows carry no tenant; the key's row says whose it is.
func (t *Tx) NetworkTotals(tenant string, g latchkey.Grain, from, to time.Time) ([]latchkey.NetworkTotal, error) {
	table, column := "usage_networks", "minute"
	if g == latchkey.GrainDay {
		table, column = "usage_network_days", "day"
	}
	return collect(t, "network totals", `SELECT n.key_id, count(DISTINCT n.network) FROM `+table+` n
		JOIN keys k ON k.id = n.key_id
		WHERE k.tenant_id = $1 AND n.`+column+` >= $2 AND n.`+column+` < $3 AND n.network <> 'other'
		GROUP BY n.key_id ORDER BY n.key_id`, func(r pgx.Rows) (latchkey.NetworkTotal, error) {
		var n latchkey.NetworkTotal
		err := r.Scan(&n.KeyID, &n.Networks)
		return n, err
	}, tenant, from, to)
}
