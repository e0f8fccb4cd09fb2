package sqlite

import (
	"database/sql"
	"github.com/latchkeyhq/latchkey"
	"time"
)

// UsageTotals sums a tenant's rows of a grain in [from, to) by key and code.
func (t *Tx) UsageTotals(tenant string, g latchkey.Grain, from, to time.Time) ([]latchkey.UsageTotal, error) {
	table, column, err := grainTable(g)
	if err != nil {
		return nil, err
	}
	rows, err := t.tx.QueryContext(t.ctx, `SELECT key_id, code, sum(count), min(`+column+`), max(`+column+`) FROM `+table+`
		WHERE tenant_id = ? AND `+column+` >= ? AND `+column+` < ?
		GROUP BY key_id, code ORDER BY key_id, code`, tenant, from.UnixMicro(), to.UnixMicro())
	if err != nil {
		return nil, fail(t.ctx, "usage totals", err)
	}
	defer rows.Close()
	out := []latchkey.UsageTotal{}
	for rows.Next() {
		var u latchkey.UsageTotal
		var first, last int64
		if err := rows.Scan(&u.KeyID, &u.Code, &u.Count, &first, &last); err != nil {
			return nil, fail(t.ctx, "usage totals", err)
		}
		u.First = fromMicros(sql.NullInt64{Int64: first, Valid: true})
		u.Last = fromMicros(sql.NullInt64{Int64: last, Valid: true})
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fail(t.ctx, "usage totals", err)
	}
	return out, nil
}

// NetworkTotals counts the distinct networks of each of a tenant's keys in
// [from, to). Network rows carry no tenant; the key's row says whose it is.
func (t *Tx) NetworkTotals(tenant string, g latchkey.Grain, from, to time.Time) ([]latchkey.NetworkTotal, error) {
	table, column := "usage_networks", "minute"
	if g == latchkey.GrainDay {
		table, column = "usage_network_days", "day"
	}
	rows, err := t.tx.QueryContext(t.ctx, `SELECT n.key_id, count(DISTINCT n.network) FROM `+table+` n
		JOIN keys k ON k.id = n.key_id
		WHERE k.tenant_id = ? AND n.`+column+` >= ? AND n.`+column+` < ? AND n.network <> 'other'
		GROUP BY n.key_id ORDER BY n.key_id`, tenant, from.UnixMicro(), to.UnixMicro())
	if err != nil {
		return nil, fail(t.ctx, "network totals", err)
	}
	defer rows.Close()
	out := []latchkey.NetworkTotal{}
	for rows.Next() {
		var n latchkey.NetworkTotal
		if err := rows.Scan(&n.KeyID, &n.Networks); err != nil {
			return nil, fail(t.ctx, "network totals", err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fail(t.ctx, "network totals", err)
	}
	return out, nil
}
