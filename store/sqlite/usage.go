package sqlite

import (
	"database/sql"
	"errors"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
)

// usageUpsert and networkUpsert add a count to a usage row of a table and
// its time column; their statements are prepared once per pool (stmts), as
// a usage flush runs them for every key it writes.
func usageUpsert(table, column string) string {
	return `INSERT INTO ` + table + ` (key_id, tenant_id, ` + column + `, code, count)
		VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (key_id, ` + column + `, code) DO UPDATE SET count = ` + table + `.count + excluded.count`
}

func networkUpsert(table, column string) string {
	return `INSERT INTO ` + table + ` (key_id, ` + column + `, network, count)
		VALUES (?, ?, ?, ?)
		ON CONFLICT (key_id, ` + column + `, network) DO UPDATE SET count = ` + table + `.count + excluded.count`
}

// AddUsage adds each row's count to its (key, minute, code) row and to its
// hour's and day's roll-up rows.
func (t *tx) AddUsage(rows []keys.UsageRow) error {
	if len(rows) == 0 {
		return nil
	}
	for _, q := range []struct {
		stmt  *sql.Stmt
		grain time.Duration
	}{{t.stmts.usageMinute, time.Minute}, {t.stmts.usageHour, time.Hour}, {t.stmts.usageDay, 24 * time.Hour}} {
		st := t.tx.StmtContext(t.ctx, q.stmt)
		for _, r := range rows {
			if _, err := st.ExecContext(t.ctx, r.KeyID, r.Tenant, r.Minute.Truncate(q.grain).UnixMicro(), r.Code, r.Count); err != nil {
				return fail(t.ctx, "add usage", err)
			}
		}
	}
	return nil
}

// AddUsageNetworks adds each row's count to its (key, minute, network) row
// and to its day's roll-up row.
func (t *tx) AddUsageNetworks(rows []keys.UsageNetwork) error {
	if len(rows) == 0 {
		return nil
	}
	for _, q := range []struct {
		stmt  *sql.Stmt
		grain time.Duration
	}{{t.stmts.networkMinute, time.Minute}, {t.stmts.networkDay, 24 * time.Hour}} {
		st := t.tx.StmtContext(t.ctx, q.stmt)
		for _, r := range rows {
			if _, err := st.ExecContext(t.ctx, r.KeyID, r.Minute.Truncate(q.grain).UnixMicro(), r.Network, r.Count); err != nil {
				return fail(t.ctx, "add usage networks", err)
			}
		}
	}
	return nil
}

const (
	lastUsedGetQuery = `SELECT last_used_at, created_at FROM keys WHERE id = ?`
	lastUsedSetQuery = `UPDATE keys SET last_used_at = ? WHERE id = ?`
	// networkHistoryQuery is prepared once per pool (NetworkHistory runs
	// for every new network of every key a usage flush writes): parsing it
	// took longer than running it.
	networkHistoryQuery = `SELECT
		EXISTS (SELECT 1 FROM usage_networks WHERE key_id = ?1 AND network = ?2),
		EXISTS (SELECT 1 FROM usage_networks WHERE key_id = ?1)`
)

// SetLastUsed moves a key's last_used_at forward to at and returns what it
// was before (the key's creation time if it was never used).
// Its statements are prepared once per pool: a usage flush calls it once
// per key it writes.
func (t *tx) SetLastUsed(keyID string, at time.Time) (time.Time, error) {
	var last, created sql.NullInt64
	err := t.tx.StmtContext(t.ctx, t.stmts.lastUsedGet).QueryRowContext(t.ctx, keyID).Scan(&last, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fail(t.ctx, "set last used", err)
	}
	if last.Valid && last.Int64 >= at.UnixMicro() {
		return fromMicros(last), nil
	}
	if _, err := t.tx.StmtContext(t.ctx, t.stmts.lastUsedSet).ExecContext(t.ctx, at.UnixMicro(), keyID); err != nil {
		return time.Time{}, fail(t.ctx, "set last used", err)
	}
	if last.Valid {
		return fromMicros(last), nil
	}
	return fromMicros(created), nil
}

// grainTable names the table and time column of a grain's usage rows.
func grainTable(g keys.Grain) (table, column string, err error) {
	switch g {
	case keys.GrainMinute:
		return "usage_minutes", "minute", nil
	case keys.GrainHour:
		return "usage_hours", "hour", nil
	case keys.GrainDay:
		return "usage_days", "day", nil
	}
	return "", "", latchkey.Errorf(latchkey.EInvalid, "usage grain %q: use minute, hour or day", g)
}

// Usage returns a key's minute rows in [from, to), by minute then code.
func (t *tx) Usage(tenant, keyID string, from, to time.Time) ([]keys.UsageRow, error) {
	return t.UsageRollup(tenant, keyID, keys.GrainMinute, from, to)
}

// UsageRollup returns a key's rows of the grain whose start is in
// [from, to), by start then code.
func (t *tx) UsageRollup(tenant, keyID string, g keys.Grain, from, to time.Time) ([]keys.UsageRow, error) {
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
	out := []keys.UsageRow{}
	for rows.Next() {
		r := keys.UsageRow{KeyID: keyID, Tenant: tenant}
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
func (t *tx) UsageNetworks(tenant, keyID string, from, to time.Time) ([]keys.UsageNetwork, error) {
	return t.usageNetworks("usage_networks", "minute", tenant, keyID, from, to)
}

// UsageNetworkDays returns a key's daily network rows in [from, to).
func (t *tx) UsageNetworkDays(tenant, keyID string, from, to time.Time) ([]keys.UsageNetwork, error) {
	return t.usageNetworks("usage_network_days", "day", tenant, keyID, from, to)
}

func (t *tx) usageNetworks(table, column, tenant, keyID string, from, to time.Time) ([]keys.UsageNetwork, error) {
	rows, err := t.tx.QueryContext(t.ctx, `SELECT `+column+`, network, count FROM `+table+`
		WHERE key_id = ? AND `+column+` >= ? AND `+column+` < ?
		AND EXISTS (SELECT 1 FROM keys WHERE keys.id = `+table+`.key_id AND keys.tenant_id = ?)
		ORDER BY `+column+`, network`, keyID, from.UnixMicro(), to.UnixMicro(), tenant)
	if err != nil {
		return nil, fail(t.ctx, "usage networks", err)
	}
	defer rows.Close()
	out := []keys.UsageNetwork{}
	for rows.Next() {
		r := keys.UsageNetwork{KeyID: keyID}
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
func (t *tx) PruneUsage(g keys.Grain, before time.Time) (int64, error) {
	var qs []string
	switch g {
	case keys.GrainMinute:
		qs = []string{`DELETE FROM usage_minutes WHERE minute < ?`, `DELETE FROM usage_networks WHERE minute < ?`}
	case keys.GrainHour:
		qs = []string{`DELETE FROM usage_hours WHERE hour < ?`}
	case keys.GrainDay:
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
func (t *tx) NetworkHistory(keyID, network string) (seenThis, seenAny bool, err error) {
	err = t.tx.StmtContext(t.ctx, t.stmts.networkHistory).QueryRowContext(t.ctx, keyID, network).Scan(&seenThis, &seenAny)
	if err != nil {
		return false, false, fail(t.ctx, "network history", err)
	}
	return seenThis, seenAny, nil
}
