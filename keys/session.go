package keys

import (
	"context"
	"net/netip"

	"github.com/latchkeyhq/latchkey"
)

// ActorOf is the actor of a dashboard session: the key keyID of tenant,
// read from the store (not the cache, so a change made on another node
// counts at once) with its policy applied, as Authenticate would make it
// had the key been presented from ip. A session keeps the key's id, never its secret; each
// request rebuilds its actor here, so a key that is revoked, suspended,
// expired or rotated out ends its sessions at once; so does an address
// outside the key's IP allowlist. The key's limits are not consulted: a
// page view is not a use of the key. Errors: EUnauthenticated (no such
// key, or it is not active now), EForbidden (the address), EUnavailable.
func (s *Service) ActorOf(ctx context.Context, tenant, keyID string, ip netip.Addr) (*latchkey.Actor, error) {
	gone := latchkey.Errorf(latchkey.EUnauthenticated, "the session's key is no longer active: sign in again")
	if !latchkey.ValidID("key", keyID) {
		return nil, gone
	}
	var k *latchkey.Key
	err := s.store.View(ctx, func(tx Tx) error {
		byID, err := tx.Key(tenant, keyID)
		if err != nil {
			return err
		}
		// Read again by hash for the key's policy and owner record, and
		// judge the key by its effective settings, as a verification
		// would.
		withBound, err := tx.KeyByHash(byID.Hash)
		if err != nil {
			return err
		}
		k = &NewEntry(withBound).Key
		return nil
	})
	switch {
	case latchkey.ErrorCode(err) == latchkey.ENotFound:
		return nil, gone
	case err != nil:
		return nil, err
	}
	if k.StateAt(s.now()) != latchkey.StateActive {
		return nil, gone
	}
	if len(k.IPAllow) > 0 && (!ip.IsValid() || !latchkey.IPAllowed(k.IPAllow, ip)) {
		// The session moved to an address the key may not be used from.
		return nil, latchkey.Errorf(latchkey.EForbidden, "the session's key may not be used from this address")
	}
	return &latchkey.Actor{KeyID: k.ID, Tenant: k.Tenant, Scopes: k.Scopes, Resources: k.Resources, IP: ip}, nil
}
