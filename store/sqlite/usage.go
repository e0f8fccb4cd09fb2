package sqlite

import (
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

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
		SELECT ` + rowText(0) + `, ` + rowText(1) + `, ` + rowInt(at) + `, ` + rowText(2) + `, ` + rowInt(3) + `
		FROM json_each(?) AS j WHERE true
		ON CONFLICT (key_id, ` + column + `, code) DO UPDATE SET count = ` + table + `.count + excluded.count`
}

// networkUpsert is usageUpsert for network rows (time fields 0 minute, 1
// day).
func networkUpsert(table, column string, at int) string {
	return `INSERT INTO ` + table + ` (key_id, ` + column + `, network, count)
		SELECT ` + rowText(0) + `, ` + rowInt(at) + `, ` + rowText(1) + `, ` + rowInt(2) + `
		FROM json_each(?) AS j WHERE true
		ON CONFLICT (key_id, ` + column + `, network) DO UPDATE SET count = ` + table + `.count + excluded.count`
}

// A row is one JSON string (cut with substr, which costs a third of what
// ->> on an array per row does): three digits of length for each of up to
// three text fields, then four integers of 20 characters, then the texts.
const (
	rowTexts   = 3
	rowInts    = 4
	rowIntLen  = 20
	rowTextMax = 999
	rowHead    = 3*rowTexts + rowInts*rowIntLen
)

// rowInt is the SQL for integer field i of a row.
func rowInt(i int) string {
	return "CAST(substr(j.value, " + strconv.Itoa(3*rowTexts+1+i*rowIntLen) + ", " + strconv.Itoa(rowIntLen) + ") AS INTEGER)"
}

// rowText is the SQL for text field i of a row.
func rowText(i int) string {
	off := strconv.Itoa(rowHead + 1)
	for k := range i {
		off += " + " + rowLen(k)
	}
	return "substr(j.value, " + off + ", " + rowLen(i) + ")"
}

func rowLen(i int) string {
	return "CAST(substr(j.value, " + strconv.Itoa(3*i+1) + ", 3) AS INTEGER)"
}

// appendRow appends a row of texts and ints as rowText and rowInt read it,
// or fails if a text is not UTF-8 or over rowTextMax characters.
func appendRow(buf []byte, texts [rowTexts]string, ints [rowInts]int64) ([]byte, error) {
	buf = append(buf, '"')
	for _, s := range texts {
		if !utf8.ValidString(s) {
			return buf, errRowField
		}
		n := utf8.RuneCountInString(s)
		if n > rowTextMax {
			return buf, errRowField
		}
		buf = append(buf, byte('0'+n/100), byte('0'+n/10%10), byte('0'+n%10))
	}
	for _, v := range ints {
		var d [rowIntLen]byte
		b := strconv.AppendInt(d[:0], v, 10)
		for range rowIntLen - len(b) {
			buf = append(buf, '0')
		}
		if v < 0 {
			return buf, errRowField
		}
		buf = append(buf, b...)
	}
	for _, s := range texts {
		buf = appendJSONStringBody(buf, s)
	}
	return append(buf, '"'), nil
}

// errRowField refuses what a row cannot carry: a text that is not UTF-8
// (JSON text cannot hold it as it is) or over rowTextMax characters, a
// negative integer. Ids, codes and networks are ASCII, times after 1970
// and counts positive: this is a guard, not a path.
var errRowField = errors.New("sqlite: a usage row holds a field a row cannot carry")

// AddUsage adds each row's count to its (key, minute, code) row and to its
// hour's and day's roll-up rows.
func (t *tx) AddUsage(rows []latchkey.UsageRow) error {
	return t.upsertRows("add usage", len(rows), func(i int) ([rowTexts]string, [rowInts]int64) {
		r := rows[i]
		m := r.Minute.Truncate(time.Minute)
		return [rowTexts]string{r.KeyID, r.Tenant, r.Code},
			[rowInts]int64{m.UnixMicro(), m.Truncate(time.Hour).UnixMicro(), m.Truncate(24 * time.Hour).UnixMicro(), r.Count}
	}, t.stmts.usageMinute, t.stmts.usageHour, t.stmts.usageDay)
}

// AddUsageNetworks adds each row's count to its (key, minute, network) row
// and to its day's roll-up row.
func (t *tx) AddUsageNetworks(rows []latchkey.UsageNetwork) error {
	return t.upsertRows("add usage networks", len(rows), func(i int) ([rowTexts]string, [rowInts]int64) {
		r := rows[i]
		m := r.Minute.Truncate(time.Minute)
		return [rowTexts]string{r.KeyID, r.Network, ""},
			[rowInts]int64{m.UnixMicro(), m.Truncate(24 * time.Hour).UnixMicro(), r.Count, 0}
	}, t.stmts.networkMinute, t.stmts.networkDay)
}

// upsertRows writes n rows, as row gives each, in one JSON array, and runs
// each of the statements over it.
func (t *tx) upsertRows(what string, n int, row func(i int) ([rowTexts]string, [rowInts]int64), stmts ...*sql.Stmt) error {
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
func rowsArg(n int, row func(i int) ([rowTexts]string, [rowInts]int64)) (string, error) {
	buf := make([]byte, 0, n*(rowHead+48))
	buf = append(buf, '[')
	for i := range n {
		if i > 0 {
			buf = append(buf, ',')
		}
		texts, ints := row(i)
		var err error
		if buf, err = appendRow(buf, texts, ints); err != nil {
			return "", err
		}
	}
	return string(append(buf, ']')), nil
}

var (
	// lastUsedGetQuery reads the keys of rows of (key id; at, in unix
	// microseconds): each one's index in the array, last use and creation.
	lastUsedGetQuery = `SELECT j.key, k.last_used_at, k.created_at
		FROM json_each(?) AS j JOIN keys AS k ON k.id = ` + rowText(0)
	// lastUsedSetQuery moves each key's last_used_at forward to its at.
	lastUsedSetQuery = `UPDATE keys SET last_used_at = u.at
		FROM (SELECT ` + rowText(0) + ` AS id, ` + rowInt(0) + ` AS at FROM json_each(?) AS j) AS u
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
func (t *tx) SetLastUsed(uses []latchkey.LastUsed) error {
	if len(uses) == 0 {
		return nil
	}
	for i := range uses {
		uses[i].Before = time.Time{}
	}
	arg, err := rowsArg(len(uses), func(i int) ([rowTexts]string, [rowInts]int64) {
		return [rowTexts]string{uses[i].KeyID}, [rowInts]int64{uses[i].At.UnixMicro()}
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
func (t *tx) Usage(tenant, keyID string, from, to time.Time) ([]latchkey.UsageRow, error) {
	return t.UsageRollup(tenant, keyID, latchkey.GrainMinute, from, to)
}

// UsageRollup returns a key's rows of the grain whose start is in
// [from, to), by start then code.
func (t *tx) UsageRollup(tenant, keyID string, g latchkey.Grain, from, to time.Time) ([]latchkey.UsageRow, error) {
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
func (t *tx) UsageNetworks(tenant, keyID string, from, to time.Time) ([]latchkey.UsageNetwork, error) {
	return t.usageNetworks("usage_networks", "minute", tenant, keyID, from, to)
}

// UsageNetworkDays returns a key's daily network rows in [from, to).
func (t *tx) UsageNetworkDays(tenant, keyID string, from, to time.Time) ([]latchkey.UsageNetwork, error) {
	return t.usageNetworks("usage_network_days", "day", tenant, keyID, from, to)
}

func (t *tx) usageNetworks(table, column, tenant, keyID string, from, to time.Time) ([]latchkey.UsageNetwork, error) {
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
func (t *tx) PruneUsage(g latchkey.Grain, before time.Time) (int64, error) {
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
func (t *tx) NetworkHistory(keyID, network string) (seenThis, seenAny bool, err error) {
	err = t.tx.StmtContext(t.ctx, t.stmts.networkHistory).QueryRowContext(t.ctx, keyID, network).Scan(&seenThis, &seenAny)
	if err != nil {
		return false, false, fail(t.ctx, "network history", err)
	}
	return seenThis, seenAny, nil
}
