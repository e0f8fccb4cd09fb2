package secrets

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/latchkeyhq/latchkey"
)

// Limits on what a secret holds.
const (
	MaxSecretValue     = 64 << 10
	MaxSecretMeta      = 32
	maxSecretMetaKey   = 64
	maxSecretMetaValue = 1024
	// MaxSecretExpiresIn bounds expires_in: a year.
	MaxSecretExpiresIn = 365 * 24 * 3600
)

// SecretParams is what PutSecret stores: a Value, or a Source reference
// read when the secret is (docs/secrets.md, "Secret sources").
type SecretParams struct {
	Value string
	// Source is a reference ("env:NAME", "file:/path", "exec:/program
	// arg…") stored instead of a value; Refresh is how long a value read
	// from it is used before it is read again (0: DefaultSourceRefresh).
	Source  string
	Refresh time.Duration
	// ExpiresIn is how long, in seconds, clients may cache the value; nil
	// keeps the newest version's, or, for a new secret, takes the
	// service's default (Options.ExpiresIn).
	ExpiresIn *int64
	Meta      map[string]string
}

// Validate checks the parameters; errors are EInvalid and never show the
// value.
func (p *SecretParams) Validate() error {
	if p.Source != "" {
		if p.Value != "" {
			return latchkey.Errorf(latchkey.EInvalid, "give a value or a source, not both")
		}
		if _, err := ParseSource(p.Source); err != nil {
			return err
		}
		if p.Refresh != 0 && (p.Refresh < MinSourceRefresh || p.Refresh > MaxSourceRefresh) {
			return latchkey.Errorf(latchkey.EInvalid, "refresh must be from %v to %v", MinSourceRefresh, MaxSourceRefresh)
		}
	} else {
		if p.Refresh != 0 {
			return latchkey.Errorf(latchkey.EInvalid, "refresh is for a source; a value is stored as it is")
		}
		if p.Value == "" {
			return latchkey.Errorf(latchkey.EInvalid, "value is empty")
		}
		if len(p.Value) > MaxSecretValue {
			return latchkey.Errorf(latchkey.EInvalid, "value is longer than %d bytes", MaxSecretValue)
		}
		if !utf8.ValidString(p.Value) {
			return latchkey.Errorf(latchkey.EInvalid, "value is not UTF-8 text")
		}
	}
	if p.ExpiresIn != nil && (*p.ExpiresIn < 1 || *p.ExpiresIn > MaxSecretExpiresIn) {
		return latchkey.Errorf(latchkey.EInvalid, "expires_in must be from 1 to %d seconds", MaxSecretExpiresIn)
	}
	if len(p.Meta) > MaxSecretMeta {
		return latchkey.Errorf(latchkey.EInvalid, "meta holds more than %d entries", MaxSecretMeta)
	}
	for k, v := range p.Meta {
		if k == MetaSource || k == MetaRefresh {
			return latchkey.Errorf(latchkey.EInvalid, "meta %q is set by the server; give the source and refresh fields instead", k)
		}
		if k == "" || len(k) > maxSecretMetaKey || !utf8.ValidString(k) {
			return latchkey.Errorf(latchkey.EInvalid, "meta key %.70q must be 1 to %d bytes of UTF-8", k, maxSecretMetaKey)
		}
		if len(v) > maxSecretMetaValue || !utf8.ValidString(v) {
			return latchkey.Errorf(latchkey.EInvalid, "meta %.70q: the value must be at most %d bytes of UTF-8", k, maxSecretMetaValue)
		}
	}
	return nil
}

func (s *Service) needSealer() error {
	if s.sealer == nil {
		return fmt.Errorf("secrets: secrets need a keyring (Options.Sealer)")
	}
	return nil
}

func secretNotFound(name string) error {
	return latchkey.Errorf(latchkey.ENotFound, "no secret %.70q in this tenant", name)
}

// readableName validates a name given to read a secret: a name that cannot
// exist is not found, as an unknown one is.
func readableName(name string) error {
	if latchkey.ValidateSecretName(name) != nil {
		return secretNotFound(name)
	}
	return nil
}

// mayRead reports the error for a key that may not read the secret: its
// resources must cover "secret:<name>".
func mayRead(actor *latchkey.Actor, name string) error {
	if !latchkey.ResourcesAllow(actor.Resources, latchkey.SecretResource(name)) {
		return latchkey.Errorf(latchkey.EForbidden, "API key %s may not read secret %s (resource %s)", actor.KeyID, name, latchkey.SecretResource(name))
	}
	return nil
}

func secretView(v *latchkey.SecretVersion) *latchkey.Secret {
	return &latchkey.Secret{Name: v.Name, Version: v.Version, ExpiresIn: v.ExpiresIn, Meta: v.Meta, CreatedAt: v.CreatedAt, CreatedBy: v.CreatedBy}
}

// PutSecret stores a new version of the actor's tenant's secret, sealed by
// the keyring, keeps the newest Options.Versions versions, and
// audits secret.written in the same transaction. A version written from a
// source seals the reference, never a value; the reference must be within
// Options.SourceAllow. Errors: EInvalid, EForbidden (a source the
// operator does not allow).
func (s *Service) PutSecret(ctx context.Context, actor *latchkey.Actor, name string, p SecretParams) (*latchkey.Secret, error) {
	if err := latchkey.ValidateSecretName(name); err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if err := s.needSealer(); err != nil {
		return nil, err
	}
	ttl := s.ttl
	if p.ExpiresIn != nil {
		ttl = *p.ExpiresIn
	}
	meta := make(map[string]string, len(p.Meta)+2)
	for k, v := range p.Meta {
		meta[k] = v
	}
	payload := []byte(p.Value)
	var kind string
	if p.Source != "" {
		src, err := ParseSource(p.Source)
		if err != nil {
			return nil, err
		}
		if err := s.allow.Check(src); err != nil {
			return nil, err
		}
		refresh := p.Refresh
		if refresh == 0 {
			refresh = DefaultSourceRefresh
		}
		payload, kind = sealSource(src.Ref, refresh), src.Kind
		meta[MetaSource], meta[MetaRefresh] = src.Ref, formatRefresh(refresh)
	}
	defer clear(payload)
	now := s.now()
	var v *latchkey.SecretVersion
	err := s.store.Update(ctx, func(tx Tx) error {
		n, err := tx.NextSecretVersion(actor.Tenant, name)
		if err != nil {
			return err
		}
		ttl := ttl // per attempt: the store may run this function again
		if p.ExpiresIn == nil {
			// A new version keeps the expires_in of the one before.
			switch prev, err := tx.Secret(actor.Tenant, name, 0); {
			case err == nil:
				ttl = prev.ExpiresIn
			case latchkey.ErrorCode(err) != latchkey.ENotFound:
				return err
			}
		}
		ct, err := s.sealer.Seal(latchkey.SecretAAD(actor.Tenant, name, n), payload)
		if err != nil {
			return err
		}
		v = &latchkey.SecretVersion{Tenant: actor.Tenant, Name: name, Version: n, Ciphertext: ct, ExpiresIn: ttl, Meta: meta, CreatedAt: now, CreatedBy: actor.KeyID}
		if err := tx.PutSecret(v); err != nil {
			return err
		}
		pruned, err := tx.PruneSecretVersions(actor.Tenant, name, s.keep)
		if err != nil {
			return err
		}
		details := map[string]string{"secret": name, "version": strconv.FormatInt(n, 10)}
		if pruned > 0 {
			details["pruned_versions"] = strconv.FormatInt(pruned, 10)
		}
		if kind != "" {
			details["source"] = kind
		}
		return tx.AppendAudit(latchkey.NewAuditEvent(actor, actor.Tenant, "secret.written", "", now, details))
	})
	// After the commit (or a failure, when forgetting costs only a read):
	// the next read on this node loads the new version.
	s.forget(actor.Tenant, name)
	if err != nil {
		return nil, err
	}
	return secretView(v), nil
}

// ReadSecret returns a version of a secret with its value (the newest when
// version is 0). The actor's key must be allowed the resource
// "secret:<name>". Every read is audited as secret.read with the reader's
// key id and the version: the value is returned only once its event is
// queued for the audit log, and the queue is written every
// Options.ReadAuditInterval. A refused read is audited too, with result
// "denied". The value comes from the secret cache when it holds it
// (Options.CacheTTL). The returned Secret is shared with other
// readers and must not be modified. A version written from a source is
// answered with the value read from it, kept for the shorter of its
// refresh interval and Options.CacheTTL. Errors: ENotFound, EForbidden,
// EUnavailable (the audit queue is full, or the source failed).
func (s *Service) ReadSecret(ctx context.Context, actor *latchkey.Actor, name string, version int64) (*latchkey.Secret, error) {
	if err := mayRead(actor, name); err != nil {
		s.auditDenied(ctx, actor, name)
		return nil, err
	}
	if err := readableName(name); err != nil {
		return nil, err
	}
	if version < 0 {
		return nil, latchkey.Errorf(latchkey.EInvalid, "version must be a positive number")
	}
	if err := s.needSealer(); err != nil {
		return nil, err
	}
	now := s.now()
	sec := s.secrets.get(actor.Tenant, name, version, now)
	if sec == nil {
		gen := s.secrets.generation()
		var v *latchkey.SecretVersion
		tenant := actor.Tenant // the closure must not capture actor, which then stays on its caller's stack
		err := s.store.View(ctx, func(tx Tx) error {
			var err error
			v, err = tx.Secret(tenant, name, version)
			return err
		})
		if latchkey.ErrorCode(err) == latchkey.ENotFound && version == 0 {
			return nil, secretNotFound(name)
		}
		if err != nil {
			return nil, err
		}
		var refresh time.Duration
		if sec, refresh, err = s.openSecret(ctx, v); err != nil {
			return nil, err
		}
		if refresh > 0 {
			s.secrets.putTTL(actor.Tenant, sec, version, gen, now, min(s.secrets.ttl, refresh))
		} else {
			s.secrets.put(actor.Tenant, sec, version, gen, now)
		}
	}
	if !readerAllowed(sec, actor) {
		s.auditDenied(ctx, actor, name)
		return nil, secretNotFound(name)
	}
	if err := s.reads.add(readRecord{at: now, readKey: readKey{tenant: actor.Tenant, actor: actor.KeyID, ip: actor.IP,
		userAgent: actor.UserAgent, name: sec.Name, version: sec.Version, source: sourceKind(sec.Meta)}}); err != nil {
		return nil, err
	}
	return sec, nil
}

// readerAllowed reports whether actor may read sec's value: any key its
// scopes and resources allow, unless the version names its one reader
// (latchkey.SecretMetaReader: a rotated key's successor, for the key the
// rotation names), which is then the only key that reads it.
func readerAllowed(sec *latchkey.Secret, actor *latchkey.Actor) bool {
	r := sec.Meta[latchkey.SecretMetaReader]
	return r == "" || r == actor.KeyID
}

// resultDenied marks the audit event of a read a key was refused.
const resultDenied = "denied"

// auditDenied queues the event of a refused read of a secret the actor
// may not read, so a key probing for secrets shows in the log. The
// refusal stands even if the event cannot be queued; that is logged.
func (s *Service) auditDenied(ctx context.Context, actor *latchkey.Actor, name string) {
	if latchkey.ValidateSecretName(name) != nil {
		return // not a name a secret can have: nothing was near a secret
	}
	r := readRecord{at: s.now(), readKey: readKey{tenant: actor.Tenant, actor: actor.KeyID, ip: actor.IP, userAgent: actor.UserAgent, name: name, denied: true}}
	if err := s.reads.add(r); err != nil {
		s.log.WarnContext(ctx, "auditing a refused secret read failed", "actor_key_id", actor.KeyID, "secret", name, "err", err)
	}
}

// openSecret opens a version's sealed payload: its value, or the source
// it names, which is then read (refresh is its refresh interval, 0 for a
// stored value). A source that fails is EUnavailable; why is logged
// (never a value) and not told to the caller, who might be any reader.
func (s *Service) openSecret(ctx context.Context, v *latchkey.SecretVersion) (sec *latchkey.Secret, refresh time.Duration, err error) {
	p, err := s.sealer.Open(latchkey.SecretAAD(v.Tenant, v.Name, v.Version), v.Ciphertext)
	if err != nil {
		return nil, 0, fmt.Errorf("secrets: secret %s/%s version %d does not open: %w", v.Tenant, v.Name, v.Version, err)
	}
	defer clear(p)
	out := secretView(v)
	rec, isSource, err := openSource(v, p)
	if err != nil {
		return nil, 0, err
	}
	if !isSource {
		out.Value = string(p)
		return out, 0, nil
	}
	refresh = time.Duration(rec.Refresh) * time.Millisecond
	if refresh <= 0 {
		refresh = DefaultSourceRefresh
	}
	src, err := ParseSource(rec.Ref)
	if err == nil {
		out.Value, err = s.sources.read(sourceKey{v.Tenant, v.Name, v.Version}, src, refresh, s.now())
	}
	if err != nil {
		kind, _, _ := strings.Cut(rec.Ref, ":")
		s.log.WarnContext(ctx, "a secret's source failed", "tenant", v.Tenant, "secret", v.Name, "version", v.Version, "source", rec.Ref, "err", err)
		return nil, refresh, latchkey.Errorf(latchkey.EUnavailable, "secret %s: its %s source is unavailable (the server's log says why)", v.Name, kind)
	}
	return out, refresh, nil
}

// sourceKind is the kind of source a version's meta names ("env",
// "file", "exec"), "" for a stored value: what a read's audit event says
// it came from.
func sourceKind(meta map[string]string) string {
	ref := meta[MetaSource]
	if ref == "" {
		return ""
	}
	kind, _, _ := strings.Cut(ref, ":")
	switch kind {
	case SourceEnv, SourceFile, SourceExec:
		return kind
	}
	return ""
}

// ReadSecrets returns the newest version, with its value, of every secret
// of the actor's tenant that the actor's key may read, ordered by name.
// Each is audited as secret.read, as by ReadSecret: the values are
// returned only once every event is queued. Errors: EUnavailable (the
// audit queue is full, or a readable secret's source failed: then no
// value is returned, so that clients fall back as for a broker that is
// down).
func (s *Service) ReadSecrets(ctx context.Context, actor *latchkey.Actor) ([]*latchkey.Secret, error) {
	if err := s.needSealer(); err != nil {
		return nil, err
	}
	now := s.now()
	var vs []*latchkey.SecretVersion
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		vs, err = tx.LatestSecrets(actor.Tenant)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := []*latchkey.Secret{}
	var recs []readRecord
	for _, v := range vs {
		if mayRead(actor, v.Name) != nil {
			continue
		}
		if r := v.Meta[latchkey.SecretMetaReader]; r != "" && r != actor.KeyID {
			continue
		}
		sec, _, err := s.openSecret(ctx, v)
		if err != nil {
			return nil, err
		}
		out = append(out, sec)
		recs = append(recs, readRecord{at: now, readKey: readKey{tenant: actor.Tenant, actor: actor.KeyID, ip: actor.IP,
			userAgent: actor.UserAgent, name: v.Name, version: v.Version, source: sourceKind(v.Meta)}})
	}
	if err := s.reads.add(recs...); err != nil {
		return nil, err
	}
	return out, nil
}

// ListSecrets lists the actor's tenant's secrets by name, without values:
// those the actor's key may read (resource "secret:<name>"), so a key
// limited to some secrets does not learn the others' names. cursor
// continues a previous page; next is "" on the last page.
func (s *Service) ListSecrets(ctx context.Context, actor *latchkey.Actor, cursor string, limit int) (list []*latchkey.SecretInfo, next string, err error) {
	after, err := latchkey.DecodeCursor(cursor)
	if err != nil {
		return nil, "", err
	}
	limit = latchkey.ClampLimit(limit)
	err = s.store.View(ctx, func(tx Tx) error {
		list = []*latchkey.SecretInfo{}
		// Read pages until limit+1 names the key may see are found (the
		// extra one says there is a next page) or the names run out.
		for len(list) <= limit {
			page, err := tx.Secrets(actor.Tenant, latchkey.Page{After: after, Limit: limit + 1})
			if err != nil {
				return err
			}
			for _, si := range page {
				after = si.Name
				if mayRead(actor, si.Name) == nil {
					list = append(list, si)
				}
			}
			if len(page) <= limit {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	if len(list) > limit {
		list = list[:limit]
		next = latchkey.EncodeCursor(list[limit-1].Name)
	}
	return list, next, nil
}

// SecretVersions lists the kept versions of a secret, newest first,
// without values; the key must be allowed the secret's resource. Errors:
// ENotFound, EForbidden.
func (s *Service) SecretVersions(ctx context.Context, actor *latchkey.Actor, name string) ([]*latchkey.Secret, error) {
	if err := mayRead(actor, name); err != nil {
		return nil, err
	}
	if err := readableName(name); err != nil {
		return nil, err
	}
	var vs []*latchkey.SecretVersion
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		vs, err = tx.SecretVersions(actor.Tenant, name)
		return err
	})
	if latchkey.ErrorCode(err) == latchkey.ENotFound {
		return nil, secretNotFound(name)
	}
	if err != nil {
		return nil, err
	}
	out := make([]*latchkey.Secret, len(vs))
	for i, v := range vs {
		out[i] = secretView(v)
	}
	return out, nil
}

// DeleteSecret deletes every version of a secret and audits
// secret.deleted in the same transaction. Its version numbers are never
// reused. Errors: ENotFound.
func (s *Service) DeleteSecret(ctx context.Context, actor *latchkey.Actor, name string) error {
	if err := readableName(name); err != nil {
		return err
	}
	now := s.now()
	err := s.store.Update(ctx, func(tx Tx) error {
		if err := tx.DeleteSecret(actor.Tenant, name); err != nil {
			if latchkey.ErrorCode(err) == latchkey.ENotFound {
				return secretNotFound(name)
			}
			return err
		}
		return tx.AppendAudit(latchkey.NewAuditEvent(actor, actor.Tenant, "secret.deleted", "", now, map[string]string{"secret": name}))
	})
	s.forget(actor.Tenant, name)
	return err
}
