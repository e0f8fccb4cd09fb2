package keys

import (
	"context"
	"strings"

	"github.com/latchkeyhq/latchkey"
)

// CreateTenant creates a tenant with its first admin key, which holds every
// tenant-level admin scope, and returns that key's plaintext once. Only the
// operator tenant may create tenants. Errors: EInvalid, EForbidden,
// EConflict (the id is taken).
func (s *Service) CreateTenant(ctx context.Context, actor *latchkey.Actor, id, name string) (*latchkey.Tenant, *latchkey.Key, latchkey.Token, error) {
	if err := requireOperator(actor); err != nil {
		return nil, nil, latchkey.Token{}, err
	}
	if !latchkey.ValidTenantID(id) {
		return nil, nil, latchkey.Token{}, latchkey.Errorf(latchkey.EInvalid, "id %.60q: use 1-63 of a-z, 0-9, '_' and '-', starting with a letter or digit", id)
	}
	if name == "" {
		name = id
	}
	if err := latchkey.ValidateText("name", name, latchkey.MaxNameLen, true); err != nil {
		return nil, nil, latchkey.Token{}, err
	}
	tok, err := latchkey.GenerateToken(latchkey.DefaultPrefix, s.rand)
	if err != nil {
		return nil, nil, latchkey.Token{}, err
	}
	now := s.now()
	t := &latchkey.Tenant{ID: id, Name: name, CreatedAt: now}
	k := s.newKey(tok, id, now)
	k.Name = "admin"
	k.Owner = id
	k.Scopes = latchkey.TenantAdminScopes
	err = s.store.Update(ctx, func(tx Tx) error {
		if err := tx.CreateTenant(t); err != nil {
			if latchkey.ErrorCode(err) == latchkey.EConflict {
				return latchkey.Errorf(latchkey.EConflict, "tenant %q exists", id)
			}
			return err
		}
		if err := tx.CreateKey(k); err != nil {
			return err
		}
		// In the operator's log, and as the first event of the new tenant's.
		if err := s.record(tx, latchkey.NewAuditEvent(actor, actor.Tenant, "tenant.created", k.ID, now, map[string]string{"tenant": id})); err != nil {
			return err
		}
		return s.record(tx, latchkey.NewAuditEvent(actor, id, "key.created", k.ID, now, map[string]string{"name": k.Name, "scopes": strings.Join(k.Scopes, ",")}))
	})
	if err != nil {
		return nil, nil, latchkey.Token{}, err
	}
	s.cache.invalidate(k.Hash)
	return t, k, tok, nil
}

// ListTenants lists tenants by id with a cursor for the next page. Only the
// operator tenant may list them. Errors: EInvalid, EForbidden.
func (s *Service) ListTenants(ctx context.Context, actor *latchkey.Actor, cursor string, limit int) ([]*latchkey.Tenant, string, error) {
	if err := requireOperator(actor); err != nil {
		return nil, "", err
	}
	after, err := latchkey.DecodeCursor(cursor)
	if err != nil {
		return nil, "", err
	}
	limit = latchkey.ClampLimit(limit)
	var ts []*latchkey.Tenant
	err = s.store.View(ctx, func(tx Tx) error {
		var err error
		ts, err = tx.Tenants(latchkey.Page{After: after, Limit: limit + 1})
		return err
	})
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(ts) > limit {
		ts = ts[:limit]
		next = latchkey.EncodeCursor(ts[limit-1].ID)
	}
	return ts, next, nil
}

func requireOperator(actor *latchkey.Actor) error {
	if actor.Tenant != latchkey.OperatorTenant || !latchkey.ScopesAllow(actor.Scopes, "tenants:admin") {
		return latchkey.Errorf(latchkey.EForbidden, "only the operator's root key may manage tenants")
	}
	return nil
}
