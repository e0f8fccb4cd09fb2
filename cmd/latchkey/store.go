package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/audit"
	"github.com/latchkeyhq/latchkey/keyring"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/secrets"
	"github.com/latchkeyhq/latchkey/store/postgres"
	"github.com/latchkeyhq/latchkey/store/sqlite"
	keyusage "github.com/latchkeyhq/latchkey/usage"
	"github.com/latchkeyhq/latchkey/webhook"
)

// nodeTx is a backend's transaction as the node's parts see it: every
// contract one of them is narrowed to (latchkey.Narrow). Each backend's
// own transaction type implements it.
type nodeTx interface {
	keys.Tx
	secrets.Tx
	audit.Tx
	webhook.Tx
	keyusage.Tx
	keyring.Tx
	latchkey.FlushTx
	latchkey.QuotaStore
}

var (
	_ nodeTx = (*sqlite.Tx)(nil)
	_ nodeTx = (*postgres.Tx)(nil)
)

// nodeStore is what a node needs of its database, whichever backend: its
// transactions as nodeTx, with the verify path's transaction-free lookup,
// Ping and Close kept (latchkey.DB), and the backend's audit anchor and
// change feed.
type nodeStore struct {
	latchkey.DB[nodeTx]
	anchor interface{ SetAuditAnchor(latchkey.AuditSigner) }
	// feed is the changes other nodes commit; nil for a database of one
	// node.
	feed latchkey.ChangeFeed
}

// SetAuditAnchor makes every audit append sign its checkpoint.
func (s *nodeStore) SetAuditAnchor(a latchkey.AuditSigner) { s.anchor.SetAuditAnchor(a) }

// isPostgres reports whether --db names a PostgreSQL database rather than
// a SQLite file.
func isPostgres(db string) bool {
	return strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://")
}

// shownDB is --db as logs and errors may show it: a PostgreSQL URL without
// its password (and query, which may hold one), a file path as it is.
func shownDB(db string) string {
	if !isPostgres(db) {
		return db
	}
	u, err := url.Parse(db)
	if err != nil {
		return "postgres://…"
	}
	if u.User != nil {
		u.User = url.User(u.User.Username())
	}
	u.RawQuery, u.Fragment = "", ""
	return u.String()
}

// openStore opens --db: a postgres:// URL is a database several nodes
// share (the master key must then be given, the same on every node), any
// other value a SQLite file, watched so that a file deleted or replaced
// under the server is noticed (lost is set, and it is logged once).
func openStore(ctx context.Context, cfg serverConfig, log *slog.Logger, lost *atomic.Bool) (*nodeStore, error) {
	if isPostgres(cfg.DB) {
		if cfg.MasterKey == "" && cfg.MasterKeyFile == "" {
			return nil, latchkey.Errorf(latchkey.EInvalid, "--db %s: nodes sharing a PostgreSQL database need the same master key: set LATCHKEY_MASTER_KEY or --master-key-file", shownDB(cfg.DB))
		}
		if cfg.Init {
			return nil, latchkey.Errorf(latchkey.EInvalid, "--init starts a new SQLite database; a PostgreSQL database is created by its administrator")
		}
		db, err := postgres.Open(ctx, cfg.DB, postgres.Options{})
		if err != nil {
			return nil, fmt.Errorf("open database %s: %w", shownDB(cfg.DB), err)
		}
		log.Info("keys are stored in PostgreSQL; changes reach every node through LISTEN/NOTIFY", "db", shownDB(cfg.DB))
		return &nodeStore{DB: latchkey.Narrow[nodeTx](db), anchor: db, feed: db}, nil
	}
	if err := checkDatabaseNotLost(cfg, log); err != nil {
		return nil, err
	}
	db, err := sqlite.Open(ctx, cfg.DB)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", cfg.DB, err)
	}
	db.Watch(dbCheckInterval, func(err error) {
		lost.Store(true)
		log.Error(msgDatabaseLost, "db", cfg.DB, "err", err)
	})
	return &nodeStore{DB: latchkey.Narrow[nodeTx](db), anchor: db}, nil
}

// followChanges applies the changes other nodes commit to this node's
// caches, until the returned stop is called, when the store is shared (it
// has a latchkey.ChangeFeed); a store of one node has none to follow.
func followChanges(st *nodeStore, log *slog.Logger, apply ...func(latchkey.Change)) (stop func()) {
	feed := st.feed
	if feed == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := feed.Follow(ctx, func(c latchkey.Change) {
			for _, a := range apply {
				a(c)
			}
		})
		if err != nil && ctx.Err() == nil {
			log.Error("following other nodes' changes stopped; caches now heal by their TTL only", "err", err)
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
