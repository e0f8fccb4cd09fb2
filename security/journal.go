package security

import "time"

// journal records what one flush's checks changed in the monitor's memory
// (networks known, each key's newest minute, findings raised), so that a
// flush whose transaction does not commit leaves no trace there: a
// rolled-back flush, or one the store runs again after a serialization
// conflict (PostgreSQL), would otherwise count a minute twice or keep a
// finding from being raised when its event was never stored.
//
// Each map is either changed entry by entry, each change noted with what
// was there before, or replaced whole when it is full (Remember): then the
// map held before is kept, and later changes in the new one need no notes,
// since undoing drops the new map.
type journal struct {
	active bool

	known      map[string]struct{} // the map before a replacement
	knownAdded []string

	minutes    map[string]*minuteSeen
	minutesNew []string
	minutesOld []savedMinute
	touched    map[*minuteSeen]bool // saved or created in this attempt

	fired    map[string]time.Time
	firedOld []savedFired
}

type savedMinute struct {
	p *minuteSeen
	v minuteSeen
}

type savedFired struct {
	id      string
	at      time.Time
	existed bool
}

// begin starts the journal of a flush attempt, first undoing an attempt
// that never committed (the store is running the transaction again).
func (m *Monitor) begin() {
	if m.j.active {
		m.undo()
	}
	m.j = journal{active: true, touched: map[*minuteSeen]bool{}}
}

// FlushDone is told whether the transaction of the last ObserveFlush
// committed (latchkey.FlushObserver); what a flush that did not commit
// changed in memory is undone.
func (m *Monitor) FlushDone(committed bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.j.active {
		return
	}
	if !committed {
		m.undo()
	}
	m.j = journal{}
}

// undo puts the maps back as they were when the attempt began.
func (m *Monitor) undo() {
	j := &m.j
	if j.known != nil {
		m.known = j.known
	}
	for _, id := range j.knownAdded {
		delete(m.known, id)
	}
	if j.minutes != nil {
		m.minutes = j.minutes
	}
	for _, id := range j.minutesNew {
		delete(m.minutes, id)
	}
	for i := len(j.minutesOld) - 1; i >= 0; i-- {
		*j.minutesOld[i].p = j.minutesOld[i].v
	}
	if j.fired != nil {
		m.fired = j.fired
	}
	for i := len(j.firedOld) - 1; i >= 0; i-- {
		s := j.firedOld[i]
		if s.existed {
			m.fired[s.id] = s.at
		} else {
			delete(m.fired, s.id)
		}
	}
	*j = journal{}
}

// addKnown notes that the key has been seen from a network (id), making
// room first when the map is full.
func (m *Monitor) addKnown(id string) {
	if len(m.known) >= m.o.Remember {
		if m.j.active && m.j.known == nil {
			m.j.known = m.known
		}
		m.known = map[string]struct{}{}
	}
	if m.j.active && m.j.known == nil {
		m.j.knownAdded = append(m.j.knownAdded, id)
	}
	m.known[id] = struct{}{}
}

// newMinute starts tracking a key's newest minute.
func (m *Monitor) newMinute(id string, minute time.Time) *minuteSeen {
	if len(m.minutes) >= m.o.Remember {
		if m.j.active && m.j.minutes == nil {
			m.j.minutes = m.minutes
		}
		m.minutes = map[string]*minuteSeen{}
	}
	ms := &minuteSeen{minute: minute}
	if m.j.active {
		m.j.touched[ms] = true
		if m.j.minutes == nil {
			m.j.minutesNew = append(m.j.minutesNew, id)
		}
	}
	m.minutes[id] = ms
	return ms
}

// saveMinute notes ms's value before the attempt changes it.
func (m *Monitor) saveMinute(ms *minuteSeen) {
	if !m.j.active || m.j.touched[ms] {
		return
	}
	m.j.touched[ms] = true
	m.j.minutesOld = append(m.j.minutesOld, savedMinute{p: ms, v: *ms})
}

// raise reports whether a finding may be raised now, and notes that it was.
func (m *Monitor) raise(id string, now time.Time) bool {
	if at, ok := m.fired[id]; ok && now.Sub(at) < m.o.Repeat {
		return false
	}
	if len(m.fired) >= m.o.Remember {
		// Keep the findings still within Repeat, in a new map.
		kept := make(map[string]time.Time, len(m.fired))
		for k, at := range m.fired {
			if now.Sub(at) < m.o.Repeat {
				kept[k] = at
			}
		}
		if len(kept) >= m.o.Remember {
			clear(kept)
		}
		if m.j.active && m.j.fired == nil {
			m.j.fired = m.fired
		}
		m.fired = kept
	}
	if m.j.active && m.j.fired == nil {
		at, existed := m.fired[id]
		m.j.firedOld = append(m.j.firedOld, savedFired{id: id, at: at, existed: existed})
	}
	m.fired[id] = now
	return true
}
