package latchkey

import (
	"context"
	"encoding/hex"
	"strings"
)

// Change tells the nodes of a cluster about a committed change that they
// may hold in memory: a key's cache entry, "no such key" answers, a
// secret's opened versions. A store shared by several nodes (PostgreSQL)
// sends one in the transaction of the change, so that it arrives only if
// the change commits; each node then drops what it holds, at once, rather
// than when its cache's TTL passes.
type Change struct {
	Kind ChangeKind
	// Hash is the changed key's SHA-256 (ChangeKey).
	Hash [32]byte
	// Tenant and Name name the changed secret (ChangeSecret), policy
	// (ChangePolicy) or owner (ChangeOwner).
	Tenant, Name string
}

// ChangeKind says what a Change is about.
type ChangeKind uint8

const (
	// ChangeKey: the key with Hash was created, changed or revoked; drop
	// anything cached about the hash, known or unknown.
	ChangeKey ChangeKind = iota + 1
	// ChangeNewKeys: keys were created in bulk (an import); drop every
	// cached "no such key" answer.
	ChangeNewKeys
	// ChangeSecret: a version of Tenant's secret Name was written or the
	// secret deleted; drop its opened versions.
	ChangeSecret
	// ChangeReset: changes may have been missed (the node's connection to
	// the feed was lost); drop everything cached.
	ChangeReset
	// ChangePolicy: Tenant's policy Name was written or deleted; drop the
	// cached keys that name it.
	ChangePolicy
	// ChangeOwner: the record of Tenant's owner Name was written or
	// deleted; drop the cached keys of that owner and the limiter's shared
	// state of the owner.
	ChangeOwner
)

// ChangeFeed is a store that tells every node of the changes committed by
// any of them (the PostgreSQL backend, through LISTEN/NOTIFY).
type ChangeFeed interface {
	// Follow calls apply with each change committed from now until ctx
	// ends, in commit order, from one goroutine. When it loses the feed
	// it calls apply with ChangeReset once it has it back, as a node that
	// may have missed changes must forget what it holds. It returns when
	// ctx ends.
	Follow(ctx context.Context, apply func(Change)) error
}

// MaxChangePayload bounds an encoded change: PostgreSQL's NOTIFY payload
// limit is 8000 bytes, and a secret's tenant and name are far shorter.
const MaxChangePayload = 512

// Payload encodes c for a notification: "k:<64 hex digits>", "n", "s:<tenant>:<name>",
// "p:<tenant>:<policy>", "o:<tenant>:<owner>"
// or "r". Tenant ids and secret names hold no ':'.
func (c Change) Payload() string {
	switch c.Kind {
	case ChangeKey:
		return "k:" + hex.EncodeToString(c.Hash[:])
	case ChangeNewKeys:
		return "n"
	case ChangeSecret:
		return "s:" + c.Tenant + ":" + c.Name
	case ChangeReset:
		return "r"
	case ChangePolicy:
		return "p:" + c.Tenant + ":" + c.Name
	case ChangeOwner:
		return "o:" + c.Tenant + ":" + c.Name
	}
	return ""
}

// ParseChange decodes a Payload; EInvalid for anything else (a node
// answers that by forgetting everything: see ChangeReset).
func ParseChange(p string) (Change, error) {
	if len(p) > MaxChangePayload {
		return Change{}, Errorf(EInvalid, "change payload longer than %d bytes", MaxChangePayload)
	}
	switch {
	case p == "n":
		return Change{Kind: ChangeNewKeys}, nil
	case p == "r":
		return Change{Kind: ChangeReset}, nil
	case strings.HasPrefix(p, "k:"):
		var c Change
		if len(p) != 2+64 || strings.ToLower(p[2:]) != p[2:] {
			return Change{}, Errorf(EInvalid, "a key change names a SHA-256 in 64 lower-case hex digits")
		}
		if _, err := hex.Decode(c.Hash[:], []byte(p[2:])); err != nil {
			return Change{}, Errorf(EInvalid, "a key change names a SHA-256 in 64 lower-case hex digits")
		}
		c.Kind = ChangeKey
		return c, nil
	case strings.HasPrefix(p, "s:"):
		tenant, name, ok := strings.Cut(p[2:], ":")
		if !ok || !ValidTenantID(tenant) || ValidateSecretName(name) != nil {
			return Change{}, Errorf(EInvalid, "a secret change names a tenant id and a secret name")
		}
		return Change{Kind: ChangeSecret, Tenant: tenant, Name: name}, nil
	case strings.HasPrefix(p, "p:"):
		tenant, name, ok := strings.Cut(p[2:], ":")
		if !ok || !ValidTenantID(tenant) || !ValidPolicyName(name) {
			return Change{}, Errorf(EInvalid, "a policy change names a tenant id and a policy name")
		}
		return Change{Kind: ChangePolicy, Tenant: tenant, Name: name}, nil
	case strings.HasPrefix(p, "o:"):
		// An owner id may hold ':'; a tenant id never does.
		tenant, owner, ok := strings.Cut(p[2:], ":")
		if !ok || !ValidTenantID(tenant) || ValidateText("owner", owner, MaxNameLen, true) != nil {
			return Change{}, Errorf(EInvalid, "an owner change names a tenant id and an owner")
		}
		return Change{Kind: ChangeOwner, Tenant: tenant, Name: owner}, nil
	}
	return Change{}, Errorf(EInvalid, "unknown change payload")
}
