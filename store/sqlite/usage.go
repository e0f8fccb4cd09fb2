package sqlite

import (
	"database/sql"
	"errors"
	"time"

	"github.com/latchkeyhq/latchkey/keys"
)

// AddUsage adds each row's count to its (key, minute, code) row.
func (t *tx) AddUsage(rows []keys.UsageRow) error {
	if len(rows) == 0 {
		return nil
	}
	st, err := t.tx.PrepareContext(t.ctx, `INSERT INTO usage_minutes (key_id, tenant_id, minute, code, count)
		VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (key_id, minute, code) DO UPDATE SET count = usage_minutes.count + excluded.count`)
	if err != nil {
		return fail(t.ctx, "add usage", err)
	}
	defer st.Close()
	for _, r := range rows {
		if _, err := st.ExecContext(t.ctx, r.KeyID, r.Tenant, r.Minute.UnixMicro(), r.Code, r.Count); err != nil {
			return fail(t.ctx, "add usage", err)
		}
	}
	return nil
}

// AddUsageNetworks adds each row's count to its (key, minute, network) row.
func (t *tx) AddUsageNetworks(rows []keys.UsageNetwork) error {
	if len(rows) == 0 {
		return nil
	}
	st, err := t.tx.PrepareContext(t.ctx, `INSERT INTO usage_networks (key_id, minute, network, count)
		VALUES (?, ?, ?, ?)
		ON CONFLICT (key_id, minute, network) DO UPDATE SET count = usage_networks.count + excluded.count`)
	if err != nil {
		return fail(t.ctx, "add usage networks", err)
	}
	defer st.Close()
	for _, r := range rows {
		if _, err := st.ExecContext(t.ctx, r.KeyID, r.Minute.UnixMicro(), r.Network, r.Count); err != nil {
			return fail(t.ctx, "add usage networks", err)
		}
	}
	return nil
}

// SetLastUsed moves a key's last_used_at forward to at and returns what it
// was before (the key's creation time if it was never used).
func (t *tx) SetLastUsed(keyID string, at time.Time) (time.Time, error) {
	var last, created sql.NullInt64
	err := t.tx.QueryRowContext(t.ctx, `SELECT last_used_at, created_at FROM keys WHERE id = ?`, keyID).Scan(&last, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fail(t.ctx, "set last used", err)
	}
	if last.Valid && last.Int64 >= at.UnixMicro() {
		return fromMicros(last), nil
	}
	if _, err := t.tx.ExecContext(t.ctx, `UPDATE keys SET last_used_at = ? WHERE id = ?`, at.UnixMicro(), keyID); err != nil {
		return time.Time{}, fail(t.ctx, "set last used", err)
	}
	if last.Valid {
		return fromMicros(last), nil
	}
	return fromMicros(created), nil
}

// Usage returns a key's minute rows in [from, to), by minute then code.
func (t *tx) Usage(tenant, keyID string, from, to time.Time) ([]keys.UsageRow, error) {
	rows, err := t.tx.QueryContext(t.ctx, `SELECT minute, code, count FROM usage_minutes
		WHERE tenant_id = ? AND key_id = ? AND minute >= ? AND minute < ?
		ORDER BY minute, code`, tenant, keyID, from.UnixMicro(), to.UnixMicro())
	if err != nil {
		return nil, fail(t.ctx, "usage", err)
	}
	defer rows.Close()
	out := []keys.UsageRow{}
	for rows.Next() {
		r := keys.UsageRow{KeyID: keyID, Tenant: tenant}
		var minute int64
		if err := rows.Scan(&minute, &r.Code, &r.Count); err != nil {
			return nil, fail(t.ctx, "usage", err)
		}
		r.Minute = fromMicros(sql.NullInt64{Int64: minute, Valid: true})
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
	rows, err := t.tx.QueryContext(t.ctx, `SELECT minute, network, count FROM usage_networks
		WHERE key_id = ? AND minute >= ? AND minute < ?
		AND EXISTS (SELECT 1 FROM keys WHERE keys.id = usage_networks.key_id AND keys.tenant_id = ?)
		ORDER BY minute, network`, keyID, from.UnixMicro(), to.UnixMicro(), tenant)
	if err != nil {
		return nil, fail(t.ctx, "usage networks", err)
	}
	defer rows.Close()
	out := []keys.UsageNetwork{}
	for rows.Next() {
		r := keys.UsageNetwork{KeyID: keyID}
		var minute int64
		if err := rows.Scan(&minute, &r.Network, &r.Count); err != nil {
			return nil, fail(t.ctx, "usage networks", err)
		}
		r.Minute = fromMicros(sql.NullInt64{Int64: minute, Valid: true})
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fail(t.ctx, "usage networks", err)
	}
	return out, nil
}

// PruneUsage deletes the minute and network rows before before.
func (t *tx) PruneUsage(before time.Time) (int64, error) {
	var total int64
	for _, q := range []string{
		`DELETE FROM usage_minutes WHERE minute < ?`,
		`DELETE FROM usage_networks WHERE minute < ?`,
	} {
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
	err = t.tx.QueryRowContext(t.ctx, `SELECT
		EXISTS (SELECT 1 FROM usage_networks WHERE key_id = ?1 AND network = ?2),
		EXISTS (SELECT 1 FROM usage_networks WHERE key_id = ?1)`, keyID, network).Scan(&seenThis, &seenAny)
	if err != nil {
		return false, false, fail(t.ctx, "network history", err)
	}
	return seenThis, seenAny, nil
}
