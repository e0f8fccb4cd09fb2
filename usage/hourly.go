package usage

import (
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// maxHourly bounds the keys whose current hour the recorder sums for
// key.used events; beyond it a key's hour is not summed (its usage rows
// are still exact).
const maxHourly = 100_000

// hourUse is one key's verifications in one UTC hour, as this recorder
// counted them, until its key.used audit event is written.
type hourUse struct {
	tenant string
	hour   int64 // unix seconds of the hour's start
	counts [len(Codes)]int64
	nets   map[string]int64 // at most MaxNetworks, then OtherNetwork
	last   int64            // unix nanoseconds of the newest verification
}

// addHourly adds a flushed bucket to its key's hour and returns the
// key.used event of the key's previous hour if the bucket starts a new one.
func (r *Recorder) addHourly(keyID string, minute int64, bk *bucket) *latchkey.AuditEvent {
	hour := minute - minute%3600
	u := r.hours[keyID]
	var done *latchkey.AuditEvent
	if u != nil && u.hour < hour {
		done = usedEvent(keyID, u)
		u = nil
	}
	if u == nil {
		if len(r.hours) >= maxHourly {
			return done
		}
		u = &hourUse{tenant: bk.tenant, hour: hour, nets: map[string]int64{}}
		r.hours[keyID] = u
	}
	if u.hour > hour {
		// A late bucket of an hour already written: its rows count in
		// usage; the audit summary of that hour is closed.
		return done
	}
	for ci, n := range bk.counts {
		u.counts[ci] += n
	}
	for _, nc := range bk.nets[:bk.nnets] {
		u.addNet(nc.net.String(), nc.count)
	}
	if bk.overflow > 0 {
		u.addNet(OtherNetwork, bk.overflow)
	}
	u.last = max(u.last, bk.last)
	return done
}

func (u *hourUse) addNet(n string, c int64) {
	if _, ok := u.nets[n]; !ok && len(u.nets) >= MaxNetworks {
		n = OtherNetwork
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
	var out []*latchkey.AuditEvent
	for id, u := range r.hours {
		if all || u.hour < current {
			out = append(out, usedEvent(id, u))
			delete(r.hours, id)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TargetKeyID < out[j].TargetKeyID })
	return out
}

// usedEvent is the key.used audit event summing a key's hour: its
// verifications by code, how many were valid and denied, and the client
// networks they came from.
func usedEvent(keyID string, u *hourUse) *latchkey.AuditEvent {
	var total, valid int64
	var codes []string
	for ci, n := range u.counts {
		if n == 0 {
			continue
		}
		total += n
		if Codes[ci] == latchkey.CodeValid {
			valid = n
		}
		codes = append(codes, Codes[ci]+"="+strconv.FormatInt(n, 10))
	}
	nets := make([]string, 0, len(u.nets))
	for n, c := range u.nets {
		nets = append(nets, n+"="+strconv.FormatInt(c, 10))
	}
	sort.Strings(nets)
	return &latchkey.AuditEvent{
		At: time.Unix(0, u.last).UTC(), Tenant: u.tenant, Action: "key.used", TargetKeyID: keyID,
		Result: latchkey.ResultSuccess,
		Details: map[string]string{
			"hour":     time.Unix(u.hour, 0).UTC().Format(time.RFC3339),
			"total":    strconv.FormatInt(total, 10),
			"valid":    strconv.FormatInt(valid, 10),
			"denied":   strconv.FormatInt(total-valid, 10),
			"codes":    strings.Join(codes, ","),
			"networks": strings.Join(nets, ","),
		},
	}
}
