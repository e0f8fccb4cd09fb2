package usage

import (
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// maxHourly bounds the keys, over all tenants, whose current hour the
// recorder sums for key.used events; beyond it a key's hour is not summed
// (its usage rows are still exact).
const maxHourly = 1_000_000

// usedPerEvent bounds the keys one key.used event lists; a tenant's hour
// with more keys is several events ("part" 1/n, 2/n, …).
const usedPerEvent = 1000

// tenantHour is one tenant's verifications in one UTC hour, as this
// recorder counted them, until its key.used audit events are written.
// Per key it keeps two counters, in the map's entry itself (no slice
// beside it: 8 bytes and a slice's growth less per active key).
type tenantHour struct {
	hour   int64 // unix seconds of the hour's start
	counts [len(Codes)]int64
	nets   map[network]int64 // at most MaxNetworks; the rest in other
	other  int64
	last   int64 // unix nanoseconds of the newest verification
	keys   map[string]keyHour
}

// keyHour is one key's valid and denied verifications in the hour.
type keyHour struct {
	valid, denied uint32
}

// addHourly adds a flushed bucket to its tenant's hour and returns the
// key.used events of the tenant's previous hour if the bucket starts a new
// one.
func (r *Recorder) addHourly(keyID string, minute int64, bk *bucket) []*latchkey.AuditEvent {
	hour := minute - minute%3600
	u := r.hours[bk.tenant]
	var done []*latchkey.AuditEvent
	if u != nil && u.hour < hour {
		done = usedEvents(bk.tenant, u)
		r.hourKeys -= len(u.keys)
		u = nil
		delete(r.hours, bk.tenant)
	}
	if u == nil {
		u = &tenantHour{hour: hour, nets: map[network]int64{}, keys: map[string]keyHour{}}
		r.hours[bk.tenant] = u
	}
	if u.hour > hour {
		// A late bucket of an hour already written: its rows count in
		// usage; the audit summary of that hour is closed.
		return done
	}
	kh, ok := u.keys[keyID]
	if !ok {
		if r.hourKeys >= maxHourly {
			return done
		}
		r.hourKeys++
	}
	for ci, n := range bk.counts {
		u.counts[ci] += int64(n)
		if ci == 0 {
			kh.valid += n
		} else {
			kh.denied += n
		}
	}
	u.keys[keyID] = kh
	for j := range int(bk.nnets) {
		nc := bk.net(j)
		u.addNet(nc.net, int64(nc.count))
	}
	u.other += int64(bk.overflow)
	u.last = max(u.last, bk.last)
	return done
}

func (u *tenantHour) addNet(n network, c int64) {
	if _, ok := u.nets[n]; !ok && len(u.nets) >= MaxNetworks {
		u.other += c
		return
	}
	u.nets[n] += c
}

// dueHourly returns the key.used events of the hours that ended before
// now (all of them when the recorder is closing) and forgets those hours.
func (r *Recorder) dueHourly(now time.Time, all bool) []*latchkey.AuditEvent {
	current := now.Unix() - now.Unix()%3600
	if !all && current <= r.sweptHour {
		return nil
	}
	r.sweptHour = current
	tenants := make([]string, 0, len(r.hours))
	for t, u := range r.hours {
		if all || u.hour < current {
			tenants = append(tenants, t)
		}
	}
	sort.Strings(tenants)
	var out []*latchkey.AuditEvent
	for _, t := range tenants {
		u := r.hours[t]
		out = append(out, usedEvents(t, u)...)
		r.hourKeys -= len(u.keys)
		delete(r.hours, t)
	}
	return out
}

// usedEvents are the key.used audit events summing a tenant's hour: one
// per usedPerEvent keys, in key id order, each with "keys" (a JSON object
// of key id → {"valid": n, "denied": n}), "hour" and "part" ("i/n"); the
// first part also carries the tenant's totals: "key_count", "total",
// "valid", "denied", "codes" and "networks".
func usedEvents(tenant string, u *tenantHour) []*latchkey.AuditEvent {
	ids := make([]string, 0, len(u.keys))
	for id := range u.keys {
		ids = append(ids, id)
	}
	if len(ids) == 0 {
		return nil
	}
	sort.Strings(ids)
	var total, valid int64
	var codes []string
	for ci, n := range u.counts {
		if n == 0 {
			continue
		}
		total += n
		if ci == 0 {
			valid = n
		}
		codes = append(codes, Codes[ci]+"="+strconv.FormatInt(n, 10))
	}
	nets := make([]string, 0, len(u.nets)+1)
	for n, c := range u.nets {
		nets = append(nets, n.String()+"="+strconv.FormatInt(c, 10))
	}
	sort.Strings(nets)
	if u.other > 0 {
		nets = append(nets, OtherNetwork+"="+strconv.FormatInt(u.other, 10))
	}
	parts := (len(ids) + usedPerEvent - 1) / usedPerEvent
	hour := time.Unix(u.hour, 0).UTC().Format(time.RFC3339)
	at := time.Unix(0, u.last).UTC()
	out := make([]*latchkey.AuditEvent, 0, parts)
	for p := range parts {
		part := ids[p*usedPerEvent : min(len(ids), (p+1)*usedPerEvent)]
		var b strings.Builder
		b.WriteByte('{')
		for i, id := range part {
			kh := u.keys[id]
			if i > 0 {
				b.WriteByte(',')
			}
			q, _ := json.Marshal(id)
			b.Write(q)
			b.WriteString(`:{"valid":`)
			b.WriteString(strconv.FormatUint(uint64(kh.valid), 10))
			b.WriteString(`,"denied":`)
			b.WriteString(strconv.FormatUint(uint64(kh.denied), 10))
			b.WriteByte('}')
		}
		b.WriteByte('}')
		d := map[string]string{
			"hour": hour,
			"part": strconv.Itoa(p+1) + "/" + strconv.Itoa(parts),
			"keys": b.String(),
		}
		if p == 0 {
			d["key_count"] = strconv.Itoa(len(ids))
			d["total"] = strconv.FormatInt(total, 10)
			d["valid"] = strconv.FormatInt(valid, 10)
			d["denied"] = strconv.FormatInt(total-valid, 10)
			d["codes"] = strings.Join(codes, ",")
			d["networks"] = strings.Join(nets, ",")
		}
		out = append(out, &latchkey.AuditEvent{
			At: at, Tenant: tenant, Action: "key.used", Result: latchkey.ResultSuccess, Details: d,
		})
	}
	return out
}
