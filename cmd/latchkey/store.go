package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/store/postgres"
	"github.com/latchkeyhq/latchkey/store/sqlite"
)

// nodeStore is what a node needs of its database, whichever backend.
type nodeStore interface {
	keys.Store
	// KeyByHash is the verify path's transaction-free lookup
	// (latchkey.ReadKeyByHash).
	KeyByHash(ctx context.Context, hash [32]byte) (*latchkey.Key, error)
	// SetAuditAnchor makes every audit append sign its checkpoint.
	SetAuditAnchor(a latchkey.AuditSigner)
}

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
func openStore(ctx context.Context, cfg serverConfig, log *slog.Logger, lost *atomic.Bool) (nodeStore, error) {
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
		return db, nil
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
	return db, nil
}

// followChanges applies the changes other nodes commit to this node's
// caches, until the returned stop is called, when the store is shared
// (latchkey.ChangeFeed); a store of one node has none to follow.
func followChanges(st nodeStore, log *slog.Logger, apply ...func(latchkey.Change)) (stop func()) {
	feed, ok := st.(latchkey.ChangeFeed)
	if !ok {
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
