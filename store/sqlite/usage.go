package sqlite

import (
	"database/sql"
	"fmt"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// Usage is written by the batch: each statement below reads up to a few
// hundred rows from one JSON array (json_each), so a flush of n keys runs
// a handful of statements rather than eight per key. Measured with
// BenchmarkFlush10k (10,000 keys' first minute): the CPU is about the same
// either way (60 µs a key, nearly all of it SQLite inserting about a dozen
// B-tree entries: three usage tables and their indexes, two network
// tables, the key's row), but a statement per row made 100 Go allocations
// a key and the batch makes 8, which the verify path no longer pays for
// in garbage collection. The statements are prepared once per pool
// (stmts).

// usageUpsert adds each row's count to its row of a usage table, keyed by
// the time column taken from the row's field at (0 minute, 1 hour, 2 day).
func usageUpsert(table, column string, at int) string {
	return `INSERT INTO ` + table + ` (key_id, tenant_id, ` + column + `, code, count)
		SELECT ` + usageRow.textSQL(0) + `, ` + usageRow.textSQL(1) + `, ` + usageRow.intSQL(at) + `, ` + usageRow.textSQL(2) + `, ` + usageRow.intSQL(3) + `
		FROM json_each(?) AS j WHERE true
		ON CONFLICT (key_id, ` + column + `, code) DO UPDATE SET count = ` + table + `.count + excluded.count`
}

// networkUpsert is usageUpsert for network rows (time fields 0 minute, 1
// day).
func networkUpsert(table, column string, at int) string {
	return `INSERT INTO ` + table + ` (key_id, ` + column + `, network, count)
		SELECT ` + usageRow.textSQL(0) + `, ` + usageRow.intSQL(at) + `, ` + usageRow.textSQL(1) + `, ` + usageRow.intSQL(2) + `
		FROM json_each(?) AS j WHERE true
		ON CONFLICT (key_id, ` + column + `, network) DO UPDATE SET count = ` + table + `.count + excluded.count`
}

// usageRow is a usage row (key id, tenant, code; minute, hour, day,
// count), a network row (key id, network; minute, day, count) or a last
// use (key id; at), the unused fields empty or 0.
var usageRow = rowShape{texts: 3, ints: 4}

// AddUsage adds each row's count to its (key, minute, code) row and to its
// hour's and day's roll-up rows.
func (t *Tx) AddUsage(rows []latchkey.UsageRow) error {
	return t.upsertRows("add usage", len(rows), func(i int) ([3]string, [4]int64) {
		r := rows[i]
		m := r.Minute.Truncate(time.Minute)
		return [3]string{r.KeyID, r.Tenant, r.Code},
			[4]int64{m.UnixMicro(), m.Truncate(time.Hour).UnixMicro(), m.Truncate(24 * time.Hour).UnixMicro(), r.Count}
	}, t.stmts.usageMinute, t.stmts.usageHour, t.stmts.usageDay)
}

// AddUsageNetworks adds each row's count to its (key, minute, network) row
// and to its day's roll-up row.
func (t *Tx) AddUsageNetworks(rows []latchkey.UsageNetwork) error {
	return t.upsertRows("add usage networks", len(rows), func(i int) ([3]string, [4]int64) {
		r := rows[i]
		m := r.Minute.Truncate(time.Minute)
		return [3]string{r.KeyID, r.Network, ""},
			[4]int64{m.UnixMicro(), m.Truncate(24 * time.Hour).UnixMicro(), r.Count, 0}
	}, t.stmts.networkMinute, t.stmts.networkDay)
}

// upsertRows writes n rows, as row gives each, in one JSON array, and runs
// each of the statements over it.
func (t *Tx) upsertRows(what string, n int, row func(i int) ([3]string, [4]int64), stmts ...*sql.Stmt) error {
	if n == 0 {
		return nil
	}
	arg, err := rowsArg(n, row)
	if err != nil {
		return fail(t.ctx, what, err)
	}
	for _, st := range stmts {
		if _, err := t.tx.StmtContext(t.ctx, st).ExecContext(t.ctx, arg); err != nil {
			return fail(t.ctx, what, err)
		}
	}
	return nil
}

// rowsArg is the JSON array of n rows, as row gives each: the argument
// of a statement that reads them with json_each.
func rowsArg(n int, row func(i int) ([3]string, [4]int64)) (string, error) {
	buf := make([]byte, 0, n*(usageRow.head()+48))
	buf = append(buf, '[')
	for i := range n {
		if i > 0 {
			buf = append(buf, ',')
		}
		texts, ints := row(i)
		var err error
		if buf, err = usageRow.appendRow(buf, texts[:], ints[:]); err != nil {
			return "", err
		}
	}
	return string(append(buf, ']')), nil
}

var (
	// lastUsedGetQuery reads the keys of rows of (key id; at, in unix
	// microseconds): each one's index in the array, last use and creation.
	lastUsedGetQuery = `SELECT j.key, k.last_used_at, k.created_at
		FROM json_each(?) AS j JOIN keys AS k ON k.id = ` + usageRow.textSQL(0)
	// lastUsedSetQuery moves each key's last_used_at forward to its at.
	lastUsedSetQuery = `UPDATE keys SET last_used_at = u.at
		FROM (SELECT ` + usageRow.textSQL(0) + ` AS id, ` + usageRow.intSQL(0) + ` AS at FROM json_each(?) AS j) AS u
		WHERE keys.id = u.id AND (keys.last_used_at IS NULL OR keys.last_used_at < u.at)`
)

const (
	// networkHistoryQuery is prepared once per pool (NetworkHistory runs
	// for every new network of every key a usage flush writes): parsing it
	// took longer than running it.
	networkHistoryQuery = `SELECT
		EXISTS (SELECT 1 FROM usage_networks WHERE key_id = ?1 AND network = ?2),
		EXISTS (SELECT 1 FROM usage_networks WHERE key_id = ?1)`
)

// SetLastUsed moves each key's last_used_at forward to its At and sets its
// Before to what it was (the key's creation time if it was never used, the
// zero time for a missing key). Two statements for all of them: one reads,
// one writes.
func (t *Tx) SetLastUsed(uses []latchkey.LastUsed) error {
	if len(uses) == 0 {
		return nil
	}
	for i := range uses {
		uses[i].Before = time.Time{}
	}
	arg, err := rowsArg(len(uses), func(i int) ([3]string, [4]int64) {
		return [3]string{uses[i].KeyID}, [4]int64{uses[i].At.UnixMicro()}
	})
	if err != nil {
		return fail(t.ctx, "set last used", err)
	}
	rows, err := t.tx.StmtContext(t.ctx, t.stmts.lastUsedGet).QueryContext(t.ctx, arg)
	if err != nil {
		return fail(t.ctx, "set last used", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			i             int
			last, created sql.NullInt64
		)
		if err := rows.Scan(&i, &last, &created); err != nil {
			return fail(t.ctx, "set last used", err)
		}
		if i < 0 || i >= len(uses) {
			return fail(t.ctx, "set last used", fmt.Errorf("row %d of %d", i, len(uses)))
		}
		if last.Valid {
			uses[i].Before = fromMicros(last)
		} else {
			uses[i].Before = fromMicros(created)
		}
	}
	if err := rows.Err(); err != nil {
		return fail(t.ctx, "set last used", err)
	}
	rows.Close()
	if _, err := t.tx.StmtContext(t.ctx, t.stmts.lastUsedSet).ExecContext(t.ctx, arg); err != nil {
		return fail(t.ctx, "set last used", err)
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
	rows, err := t.tx.QueryContext(t.ctx, `SELECT `+column+`, code, count FROM `+table+`
		WHERE tenant_id = ? AND key_id = ? AND `+column+` >= ? AND `+column+` < ?
		ORDER BY `+column+`, code`, tenant, keyID, from.UnixMicro(), to.UnixMicro())
	if err != nil {
		return nil, fail(t.ctx, "usage", err)
	}
	defer rows.Close()
	out := []latchkey.UsageRow{}
	for rows.Next() {
		r := latchkey.UsageRow{KeyID: keyID, Tenant: tenant}
		var start int64
		if err := rows.Scan(&start, &r.Code, &r.Count); err != nil {
			return nil, fail(t.ctx, "usage", err)
		}
		r.Minute = fromMicros(sql.NullInt64{Int64: start, Valid: true})
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fail(t.ctx, "usage", err)
	}
	return out, nil
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
	rows, err := t.tx.QueryContext(t.ctx, `SELECT `+column+`, network, count FROM `+table+`
		WHERE key_id = ? AND `+column+` >= ? AND `+column+` < ?
		AND EXISTS (SELECT 1 FROM keys WHERE keys.id = `+table+`.key_id AND keys.tenant_id = ?)
		ORDER BY `+column+`, network`, keyID, from.UnixMicro(), to.UnixMicro(), tenant)
	if err != nil {
		return nil, fail(t.ctx, "usage networks", err)
	}
	defer rows.Close()
	out := []latchkey.UsageNetwork{}
	for rows.Next() {
		r := latchkey.UsageNetwork{KeyID: keyID}
		var start int64
		if err := rows.Scan(&start, &r.Network, &r.Count); err != nil {
			return nil, fail(t.ctx, "usage networks", err)
		}
		r.Minute = fromMicros(sql.NullInt64{Int64: start, Valid: true})
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fail(t.ctx, "usage networks", err)
	}
	return out, nil
}

// PruneUsage deletes the rows of the grain that start before before:
// minute and minute-network rows, hour rows, or day and day-network rows.
func (t *Tx) PruneUsage(g latchkey.Grain, before time.Time) (int64, error) {
	var qs []string
	switch g {
	case latchkey.GrainMinute:
		qs = []string{`DELETE FROM usage_minutes WHERE minute < ?`, `DELETE FROM usage_networks WHERE minute < ?`}
	case latchkey.GrainHour:
		qs = []string{`DELETE FROM usage_hours WHERE hour < ?`}
	case latchkey.GrainDay:
		qs = []string{`DELETE FROM usage_days WHERE day < ?`, `DELETE FROM usage_network_days WHERE day < ?`}
	default:
		return 0, latchkey.Errorf(latchkey.EInvalid, "usage grain %q: use minute, hour or day", g)
	}
	var total int64
	for _, q := range qs {
		res, err := t.tx.ExecContext(t.ctx, q, before.UnixMicro())
		if err != nil {
			return 0, fail(t.ctx, "prune usage", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return 0, fail(t.ctx, "prune usage", err)
		}
		total += n
	}
	return total, nil
}

// NetworkHistory reports whether a key was used from network, and at all.
func (t *Tx) NetworkHistory(keyID, network string) (seenThis, seenAny bool, err error) {
	err = t.tx.StmtContext(t.ctx, t.stmts.networkHistory).QueryRowContext(t.ctx, keyID, network).Scan(&seenThis, &seenAny)
	if err != nil {
		return false, false, fail(t.ctx, "network history", err)
	}
	return seenThis, seenAny, nil
}
