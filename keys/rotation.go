package keys

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// Bounds of an automatic rotation.
const (
	// MinRotationInterval keeps a schedule from rotating faster than
	// holders can follow.
	MinRotationInterval = time.Hour
	// MinRotationGrace leaves a holder time to fetch its successor
	// through the broker before the old key stops.
	MinRotationGrace = time.Minute
	// DefaultRotationGrace is the grace of a schedule that names none.
	DefaultRotationGrace = 24 * time.Hour
	// dueBatch bounds the rotations one RotateDue reads at once.
	dueBatch = 100
)

// metaRotation is the meta field of a secret version a rotation wrote:
// the rotation's id.
const metaRotation = "rotation"

// dropRotation deletes k's rotation schedule, if it has one.
func dropRotation(tx Tx, k *latchkey.Key) error {
	rot, err := tx.RotationOfKey(k.Tenant, k.ID)
	switch {
	case latchkey.ErrorCode(err) == latchkey.ENotFound:
		return nil
	case err != nil:
		return err
	}
	return tx.DeleteRotation(rot.Tenant, rot.ID)
}

// RotationParams configure a key's automatic rotation.
type RotationParams struct {
	// Interval is the time between rotations (at least an hour).
	Interval time.Duration
	// Grace is how long a rotated key keeps working (nil: one day; at
	// least a minute, at most the interval).
	Grace *time.Duration
	// Secret names the secret each successor is sealed as (default
	// "key-" and the key's name in lower case, e.g. key-billing-agent).
	Secret string
	// Reader is the key id that alone may read the secret ("": any key
	// whose scopes and resources reach it). It must be a key of the
	// tenant that may read the secret.
	Reader string
}

// SecretNameFor is the default secret of a key's rotation: "key-" and
// the key's name in lower case, runs of anything but letters and digits
// as one '-' (a secret name is [a-z0-9_-], so that it works as a route
// segment and an environment variable).
func SecretNameFor(keyName string) string {
	var b strings.Builder
	b.WriteString("key-")
	dash := false
	for _, r := range strings.ToLower(keyName) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > len("key-") {
			b.WriteByte('-')
			dash = true
		}
	}
	name := strings.TrimRight(b.String(), "-")
	if len(name) > latchkey.MaxSecretName {
		name = strings.TrimRight(name[:latchkey.MaxSecretName], "-")
	}
	if name == "key" {
		name = "key-unnamed"
	}
	return name
}

// SetRotation makes key id rotate every p.Interval, or changes its
// schedule; the next rotation is due one interval from now. Each
// rotation seals the successor's plaintext as the secret p.Secret, in
// the rotation's transaction, for p.Reader to fetch through the broker.
// Errors: EInvalid, ENotFound, EConflict (the key is not active, or the
// secret name belongs to another rotation), EUnavailable (no keyring).
func (s *Service) SetRotation(ctx context.Context, actor *latchkey.Actor, id string, p RotationParams) (*latchkey.Rotation, error) {
	if s.sealer == nil {
		return nil, latchkey.Errorf(latchkey.EUnavailable, "this server has no keyring to seal rotated keys with")
	}
	if p.Interval < MinRotationInterval || p.Interval > latchkey.MaxDuration {
		return nil, latchkey.Errorf(latchkey.EInvalid, "interval must be from 1h to 100y")
	}
	grace := DefaultRotationGrace
	if p.Grace != nil {
		grace = *p.Grace
	}
	if grace < MinRotationGrace || grace > p.Interval {
		return nil, latchkey.Errorf(latchkey.EInvalid, "grace_period must be from 1m to the interval (the holder needs time to fetch its successor)")
	}
	if p.Secret != "" {
		if err := latchkey.ValidateSecretName(p.Secret); err != nil {
			return nil, err
		}
	}
	if !latchkey.ValidID("key", id) {
		return nil, latchkey.KeyNotFound(id)
	}
	now := s.now()
	var out *latchkey.Rotation
	err := s.store.Update(ctx, func(tx Tx) error {
		k, err := tx.Key(actor.Tenant, id)
		if err != nil {
			return err
		}
		if st := k.StateAt(now); st != latchkey.StateActive || k.RotatedTo != "" {
			return latchkey.Errorf(latchkey.EConflict, "key %s is %s or rotated; only an active key can rotate on a schedule", k.ID, st)
		}
		secret := p.Secret
		if secret == "" {
			secret = SecretNameFor(k.Name)
		}
		if p.Reader != "" {
			r, err := tx.Key(actor.Tenant, p.Reader)
			if latchkey.ErrorCode(err) == latchkey.ENotFound {
				return latchkey.Errorf(latchkey.EInvalid, "reader %s is not a key of this tenant", p.Reader)
			}
			if err != nil {
				return err
			}
			if !latchkey.ScopesAllow(r.Scopes, "secrets:read") || !latchkey.ResourcesAllow(r.Resources, latchkey.SecretResource(secret)) {
				return latchkey.Errorf(latchkey.EInvalid, "reader %s may not read secret %s: it needs secrets:read and the resource %s", r.ID, secret, latchkey.SecretResource(secret))
			}
		}
		rot, err := tx.RotationOfKey(actor.Tenant, k.ID)
		switch {
		case latchkey.ErrorCode(err) == latchkey.ENotFound:
			rot = &latchkey.Rotation{ID: latchkey.NewID("rot", now), Tenant: actor.Tenant, KeyID: k.ID, CreatedAt: now}
		case err != nil:
			return err
		}
		if rot.Secret != secret {
			// A secret of that name that no rotation wrote: sealing
			// successors into it would bury its value.
			v, err := tx.Secret(actor.Tenant, secret, 0)
			switch {
			case latchkey.ErrorCode(err) == latchkey.ENotFound:
			case err != nil:
				return err
			case v.Meta[metaRotation] == "":
				return latchkey.Errorf(latchkey.EConflict, "secret %s exists already; name another with secret", secret)
			}
		}
		rot.Interval, rot.Grace = latchkey.Duration(p.Interval), latchkey.Duration(grace)
		rot.Secret, rot.Reader = secret, p.Reader
		rot.NextAt, rot.UpdatedAt = now.Add(p.Interval), now
		if err := tx.PutRotation(rot); err != nil {
			return err
		}
		out = rot
		return s.record(tx, latchkey.NewAuditEvent(actor, actor.Tenant, "key.rotation_set", k.ID, now, map[string]string{
			"rotation": rot.ID, "interval": rot.Interval.String(), "grace_period": rot.Grace.String(), "secret": secret, "reader": p.Reader}))
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// GetRotation returns key id's rotation. Errors: ENotFound.
func (s *Service) GetRotation(ctx context.Context, actor *latchkey.Actor, id string) (*latchkey.Rotation, error) {
	if !latchkey.ValidID("key", id) {
		return nil, latchkey.KeyNotFound(id)
	}
	var out *latchkey.Rotation
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		out, err = tx.RotationOfKey(actor.Tenant, id)
		return err
	})
	if latchkey.ErrorCode(err) == latchkey.ENotFound {
		return nil, latchkey.Errorf(latchkey.ENotFound, "key %s has no rotation schedule", id)
	}
	return out, err
}

// DeleteRotation stops key id's automatic rotation. Errors: ENotFound.
func (s *Service) DeleteRotation(ctx context.Context, actor *latchkey.Actor, id string) error {
	if !latchkey.ValidID("key", id) {
		return latchkey.KeyNotFound(id)
	}
	now := s.now()
	return s.store.Update(ctx, func(tx Tx) error {
		rot, err := tx.RotationOfKey(actor.Tenant, id)
		if latchkey.ErrorCode(err) == latchkey.ENotFound {
			return latchkey.Errorf(latchkey.ENotFound, "key %s has no rotation schedule", id)
		}
		if err != nil {
			return err
		}
		if err := tx.DeleteRotation(actor.Tenant, rot.ID); err != nil {
			return err
		}
		return s.record(tx, latchkey.NewAuditEvent(actor, actor.Tenant, "key.rotation_removed", id, now, map[string]string{"rotation": rot.ID}))
	})
}

// RotateDue runs the rotations that are due and returns how many keys it
// rotated. Every node may call it (cmd/latchkey does every few seconds):
// each rotation runs in its own transaction that reads its schedule
// again and rotates only if it is still due, so a rotation happens once
// however many nodes race for it. A schedule whose key is no longer
// active (revoked, expired, suspended, rotated by hand) is removed.
func (s *Service) RotateDue(ctx context.Context) (int, error) {
	if s.sealer == nil {
		return 0, nil
	}
	var due []*latchkey.Rotation
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		due, err = tx.DueRotations(s.now(), dueBatch)
		return err
	})
	if err != nil {
		return 0, err
	}
	// One rotation that fails (its store write, its sealing) must not
	// hold up the others: each is tried, and tried again at the next
	// call.
	n := 0
	var errs []error
	for _, r := range due {
		rotated, err := s.rotateScheduled(ctx, r)
		if err != nil {
			errs = append(errs, fmt.Errorf("rotation %s of key %s: %w", r.ID, r.KeyID, err))
			continue
		}
		if rotated {
			n++
		}
	}
	return n, errors.Join(errs...)
}

// rotateScheduled runs one due rotation (see RotateDue).
func (s *Service) rotateScheduled(ctx context.Context, due *latchkey.Rotation) (bool, error) {
	if s.limiter != nil {
		// The successor inherits what the old key consumed; persist it first.
		if err := s.limiter.Flush(ctx); err != nil {
			return false, err
		}
	}
	// The schedule's own id acts: the audit log says which rotation did it.
	actor := &latchkey.Actor{Tenant: due.Tenant, KeyID: due.ID}
	var succ *latchkey.Key
	var secret string
	_, err := s.change(ctx, actor, due.KeyID, "key.rotated", func(tx Tx, old *latchkey.Key, now time.Time) ([]*latchkey.Key, error) {
		// A store may run this again after a conflict (PostgreSQL's
		// SERIALIZABLE retry): only what the last run set counts.
		succ, secret = nil, ""
		rot, err := tx.Rotation(due.Tenant, due.ID)
		if latchkey.ErrorCode(err) == latchkey.ENotFound {
			return nil, nil // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		if rot.KeyID != old.ID || rot.NextAt.After(now) {
			return nil, nil // another node rotated it first
		}
		if old.StateAt(now) != latchkey.StateActive || old.RotatedTo != "" {
			return nil, dropRotation(tx, old)
		}
		var tok latchkey.Token
		var changed []*latchkey.Key
		succ, tok, changed, err = s.rotateIn(tx, old, now, time.Duration(rot.Grace), nil)
		if err != nil {
			return nil, err
		}
		if err := s.sealSuccessor(tx, rot, succ, tok, now); err != nil {
			return nil, err
		}
		rot.KeyID, rot.UpdatedAt = succ.ID, now
		// The next one interval from this one, or from now when the
		// node was down for longer than an interval (one catch-up, not a
		// burst).
		rot.NextAt = rot.NextAt.Add(time.Duration(rot.Interval))
		if !rot.NextAt.After(now) {
			rot.NextAt = now.Add(time.Duration(rot.Interval))
		}
		if err := tx.PutRotation(rot); err != nil {
			return nil, err
		}
		secret = rot.Secret
		return changed, nil
	}, func() map[string]string {
		return map[string]string{"successor": succ.ID, "rotation": due.ID, "secret": secret,
			"grace_until": succ.CreatedAt.Add(time.Duration(due.Grace)).Format(time.RFC3339)}
	})
	if err != nil {
		return false, err
	}
	if succ == nil {
		return false, nil
	}
	s.cache.invalidate(succ.Hash)
	if s.onSecret != nil {
		s.onSecret(due.Tenant, secret)
	}
	return true, nil
}

// sealSuccessor stores succ's plaintext as the next version of the
// rotation's secret, sealed, in the rotation's transaction: if the
// rotation commits, the holder can fetch its successor; if not, neither
// exists. Clients are told to cache it for at most half the grace, so
// they fetch the next successor while the old key still works.
func (s *Service) sealSuccessor(tx Tx, rot *latchkey.Rotation, succ *latchkey.Key, tok latchkey.Token, now time.Time) error {
	n, err := tx.NextSecretVersion(rot.Tenant, rot.Secret)
	if err != nil {
		return err
	}
	plain := []byte(tok.Reveal())
	ct, err := s.sealer.Seal(latchkey.SecretAAD(rot.Tenant, rot.Secret, n), plain)
	clear(plain)
	if err != nil {
		return err
	}
	cache := max(int64(time.Duration(rot.Grace)/time.Second/2), 60)
	meta := map[string]string{metaRotation: rot.ID, "key_id": succ.ID}
	if rot.Reader != "" {
		meta[latchkey.SecretMetaReader] = rot.Reader
	}
	return tx.PutSecret(&latchkey.SecretVersion{Tenant: rot.Tenant, Name: rot.Secret, Version: n, Ciphertext: ct,
		ExpiresIn: cache, Meta: meta, CreatedAt: now, CreatedBy: rot.ID})
}
