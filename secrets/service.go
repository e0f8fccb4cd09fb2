// Package secrets is the secret broker: it keeps upstream provider keys
// (OpenAI, Anthropic, …) sealed by the keyring, serves them to callers
// whose keys may read them, keeps the newest versions, and audits every
// write and read. Reads are served from an in-memory cache and their
// audit events are written in batches (docs/secrets.md).
package secrets

import (
	"context"
	"log/slog"
	"time"

	"github.com/latchkeyhq/latchkey"
)

// Options configures a Service. Zero values take the documented defaults.
type Options struct {
	// Store keeps the sealed versions and the audit log.
	Store latchkey.Store[Tx]
	// Sealer seals the values for storage (package keyring). Without one,
	// storing or reading a secret fails.
	Sealer latchkey.Sealer
	// Now is the clock (default time.Now). Tests inject a fake one.
	Now    func() time.Time
	Logger *slog.Logger
	// Versions is how many versions of a secret are kept (default 10);
	// older ones are deleted when a new one is written.
	Versions int
	// ExpiresIn is the expires_in, in seconds, of a secret written
	// without one (default 3600): how long clients are told to cache it.
	ExpiresIn int64
	// CacheSize bounds the opened secret versions kept in memory (default
	// 10,000) and CacheTTL how long one is trusted without reading the
	// store again (default 5s): how long a change made on another node may
	// take to be seen here. A change made on this node is seen at once.
	CacheSize int
	CacheTTL  time.Duration
	// ReadAuditInterval is how often the secret.read audit events of
	// secret reads are written, in one transaction (default 1s), and
	// ReadAuditQueue how many may wait (default 10,000); a read that finds
	// the queue full fails with EUnavailable. A flush also starts when the
	// queue is half full.
	ReadAuditInterval time.Duration
	ReadAuditQueue    int
	// SourceAllow is what secret sources may reach
	// (--secret-source-allow); nil allows none, so a secret can then only
	// hold a value.
	SourceAllow *SourceAllow
	// LookupEnv reads the environment for env: sources (default
	// os.LookupEnv) and ExecTimeout bounds one run of an exec: source's
	// program (default 10s).
	LookupEnv   func(string) (string, bool)
	ExecTimeout time.Duration
}

// Service stores, serves and audits the tenants' secrets.
type Service struct {
	store   latchkey.Store[Tx]
	sealer  latchkey.Sealer
	clock   func() time.Time
	log     *slog.Logger
	keep    int
	ttl     int64
	secrets *secretCache
	reads   *readAudits
	allow   *SourceAllow
	sources *sourceReader
}

// New returns a Service. Close it after the HTTP server has drained.
func New(o Options) *Service {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Versions <= 0 {
		o.Versions = 10
	}
	if o.ExpiresIn <= 0 {
		o.ExpiresIn = 3600
	}
	if o.CacheSize <= 0 {
		o.CacheSize = 10_000
	}
	if o.CacheTTL <= 0 {
		o.CacheTTL = 5 * time.Second
	}
	if o.ReadAuditInterval <= 0 {
		o.ReadAuditInterval = time.Second
	}
	if o.ReadAuditQueue <= 0 {
		o.ReadAuditQueue = 10_000
	}
	if o.LookupEnv == nil {
		o.LookupEnv = lookupEnv
	}
	if o.ExecTimeout <= 0 {
		o.ExecTimeout = DefaultExecTimeout
	}
	s := &Service{
		store:   o.Store,
		sealer:  o.Sealer,
		clock:   o.Now,
		log:     o.Logger,
		keep:    o.Versions,
		ttl:     o.ExpiresIn,
		secrets: newSecretCache(o.CacheSize, o.CacheTTL),
		allow:   o.SourceAllow,
		sources: newSourceReader(o.SourceAllow, o.LookupEnv, o.ExecTimeout),
	}
	s.reads = newReadAudits(s, o.ReadAuditQueue, o.ReadAuditInterval)
	return s
}

// FlushReadAudits writes the queued secret.read audit events now, in one
// transaction; they stay queued if it fails. The audit log's readers call
// it first, so that what they show includes every answered read.
func (s *Service) FlushReadAudits(ctx context.Context) error {
	if s.reads.queued() == 0 {
		return nil
	}
	return s.reads.flush(ctx)
}

// Close refuses further secret reads and writes the queued secret.read
// audit events. Call it after the HTTP server has drained, so that every
// answered read is in the audit log.
func (s *Service) Close(ctx context.Context) error { return s.reads.close(ctx) }

// now is the clock in the store's resolution, so that what a caller is told
// equals what a later read returns.
func (s *Service) now() time.Time { return s.clock().UTC().Truncate(time.Microsecond) }

// Apply drops what the change makes stale in this node's secret cache: a
// secret's opened versions, or all of them after a reset. Key changes are
// the key service's.
func (s *Service) Apply(c latchkey.Change) {
	switch c.Kind {
	case latchkey.ChangeSecret:
		s.forget(c.Tenant, c.Name)
	case latchkey.ChangeReset:
		s.secrets.clear()
		s.sources.clear()
	}
}

// forget drops a secret's opened versions and the values read from their
// sources, so that the next read loads them afresh.
func (s *Service) forget(tenant, name string) {
	s.secrets.invalidate(tenant, name)
	s.sources.forget(tenant, name)
}
