package webhook

import (
	"context"
	"encoding/json"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// expiringPage is how many keys one scan transaction looks at.
const expiringPage = 500

// Expiring is the data of a key.expiring event.
type Expiring struct {
	ExpiresAt   time.Time `json:"expires_at"`
	DaysLeft    int       `json:"days_left"`
	Name        string    `json:"name"`
	Owner       string    `json:"owner,omitempty"`
	Environment string    `json:"environment,omitempty"`
}

// ScanExpiring appends a key.expiring event for every key, of any tenant,
// that expires within ExpiringDays and has not had one for its current
// expiry (a key whose expiry is moved gets a new one). Revoked and
// rotated-out keys are left alone. It returns how many events it appended.
func (d *Dispatcher) ScanExpiring(ctx context.Context) (int, error) {
	now := d.now()
	f := latchkey.ExpiringFilter{From: now, To: now.Add(time.Duration(d.o.ExpiringDays) * 24 * time.Hour), Limit: expiringPage}
	total := 0
	for {
		var page []*latchkey.Key
		n := 0
		err := d.o.Store.Update(ctx, func(tx Tx) error {
			n = 0
			var err error
			if page, err = tx.ExpiringKeys(f); err != nil {
				return err
			}
			for _, k := range page {
				told, err := toldExpiring(tx, k)
				if err != nil {
					return err
				}
				if told {
					continue
				}
				data := Expiring{
					ExpiresAt: k.ExpiresAt, DaysLeft: int(k.ExpiresAt.Sub(now) / (24 * time.Hour)),
					Name: k.Name, Owner: k.Owner, Environment: k.Environment,
				}
				if err := tx.AppendEvent(latchkey.NewEvent(k.Tenant, latchkey.EventKeyExpiring, k.ID, now, data)); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		total += n
		if len(page) < expiringPage || ctx.Err() != nil {
			break
		}
		last := page[len(page)-1]
		f.AfterExpires, f.AfterID = last.ExpiresAt, last.ID
	}
	if total > 0 {
		d.Wake()
	}
	return total, nil
}

// toldExpiring reports whether k already has a key.expiring event for its
// current ExpiresAt.
func toldExpiring(tx Tx, k *latchkey.Key) (bool, error) {
	evs, err := tx.Events(k.Tenant, latchkey.EventFilter{Type: latchkey.EventKeyExpiring, KeyID: k.ID})
	if err != nil {
		return false, err
	}
	for _, e := range evs {
		var x struct {
			ExpiresAt time.Time `json:"expires_at"`
		}
		if json.Unmarshal(e.Data, &x) == nil && x.ExpiresAt.Equal(k.ExpiresAt) {
			return true, nil
		}
	}
	return false, nil
}
