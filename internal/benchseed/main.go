// Command benchseed fills a Latchkey SQLite database with many keys for
// scripts/bench, far faster than one POST /v1/keys each, and writes their
// plaintexts to a file for wrk, one a line.
//
//	benchseed -db bench.db -n 1000000 -keys keys.txt [-tenant operator] [-scopes data:read]
//	benchseed -n 100000 -keys keys.txt          (no -db: only write new keys, e.g. to import)
//
// The keys go in through the store package itself (sqlite.Open runs the real
// migrations; the transaction's batch insert ImportKeys where the store has
// one, else keys.Tx.CreateKey per key), many to a transaction, so they are
// exactly the rows the server reads: the server started on the database
// afterwards verifies every plaintext in the file. The tenant must exist
// (start the server on the database once first: it creates the operator
// tenant), and the server must not be running while this writes.
//
// Seeded keys are inserted without key.created audit events: they stand for
// keys that already exist, and a million chained events would measure the
// audit log, not the verify path.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/store/sqlite"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "benchseed:", err)
		os.Exit(1)
	}
}

type options struct {
	db, keysFile, tenant, prefix string
	scopes                       []string
	n, batch                     int
}

func run(args []string, log io.Writer) error {
	fs := flag.NewFlagSet("benchseed", flag.ContinueOnError)
	var o options
	var scopes string
	fs.StringVar(&o.db, "db", "", "SQLite database to add the keys to (empty: only write the plaintexts)")
	fs.StringVar(&o.keysFile, "keys", "", "file to write the plaintext keys to, one a line (required)")
	fs.IntVar(&o.n, "n", 1000, "number of keys")
	fs.StringVar(&o.tenant, "tenant", latchkey.OperatorTenant, "tenant that owns the keys")
	fs.StringVar(&scopes, "scopes", "data:read", "comma-separated scopes of every key")
	fs.StringVar(&o.prefix, "prefix", latchkey.DefaultPrefix, "key prefix")
	fs.IntVar(&o.batch, "batch", 20000, "keys per transaction")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case o.keysFile == "":
		return errors.New("-keys is required")
	case o.n < 1:
		return errors.New("-n must be at least 1")
	case o.batch < 1:
		return errors.New("-batch must be at least 1")
	case !latchkey.ValidPrefix(o.prefix):
		return fmt.Errorf("-prefix %q is not a valid key prefix", o.prefix)
	}
	for _, s := range strings.Split(scopes, ",") {
		if s = strings.TrimSpace(s); s != "" {
			o.scopes = append(o.scopes, s)
		}
	}
	start := time.Now()
	if err := seed(context.Background(), o, log); err != nil {
		return err
	}
	d := time.Since(start)
	fmt.Fprintf(log, "benchseed: %d keys in %.1fs (%.0f keys/s)\n", o.n, d.Seconds(), float64(o.n)/d.Seconds())
	return nil
}

// batchInserter is a store transaction that inserts many keys per
// statement (the key import's ImportKeys: it skips keys whose hash is
// stored and says how many it inserted). A store without it gets one
// CreateKey per key, several times slower.
type batchInserter interface {
	ImportKeys(ks []*latchkey.Key) (int, error)
}

// batch is one transaction's worth of keys, generated off the writer's
// goroutine.
type batch struct {
	keys   []*latchkey.Key
	plains []string
	err    error
}

func seed(ctx context.Context, o options, log io.Writer) (err error) {
	out, err := os.OpenFile(o.keysFile, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	w := bufio.NewWriterSize(out, 1<<20)

	var db keys.Store // the SQLite database, as the key service sees it
	if o.db != "" {
		var raw *sqlite.DB
		if raw, err = sqlite.Open(ctx, o.db); err != nil {
			return err
		}
		db = latchkey.Narrow[keys.Tx](raw)
		defer func() {
			if cerr := db.Close(); err == nil {
				err = cerr
			}
		}()
		if err := db.View(ctx, func(tx keys.Tx) error {
			_, err := tx.Tenant(o.tenant)
			return err
		}); err != nil {
			return fmt.Errorf("tenant %q: %w (start the server on the database once, so that it creates the operator tenant)", o.tenant, err)
		}
	}

	// Generating a key (32 random bytes, base62, SHA-256) costs about as
	// much as inserting it, so workers generate the batches in order while
	// this goroutine writes them.
	sizes := make(chan int)
	go func() {
		defer close(sizes)
		for left := o.n; left > 0; left -= o.batch {
			sizes <- min(left, o.batch)
		}
	}()
	workers := max(1, runtime.GOMAXPROCS(0))
	type job struct {
		size int
		done chan batch
	}
	jobs := make(chan job, workers)
	ordered := make(chan chan batch, workers)
	go func() {
		defer close(ordered)
		defer close(jobs)
		for size := range sizes {
			j := job{size: size, done: make(chan batch, 1)}
			jobs <- j
			ordered <- j.done
		}
	}()
	for range workers {
		go func() {
			for j := range jobs {
				j.done <- generate(o, j.size)
			}
		}()
	}

	written, start := 0, time.Now()
	for done := range ordered {
		b := <-done
		if b.err != nil {
			// Drain so the generator goroutines finish.
			for d := range ordered {
				<-d
			}
			return b.err
		}
		if db != nil {
			if err := db.Update(ctx, func(tx keys.Tx) error {
				if bi, ok := tx.(batchInserter); ok {
					n, err := bi.ImportKeys(b.keys)
					if err == nil && n != len(b.keys) {
						err = fmt.Errorf("the store inserted %d of %d new keys", n, len(b.keys))
					}
					return err
				}
				for _, k := range b.keys {
					if err := tx.CreateKey(k); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				for d := range ordered {
					<-d
				}
				return err
			}
		}
		for _, p := range b.plains {
			w.WriteString(p)
			w.WriteByte('\n')
		}
		// A line per 100,000 keys: a million take minutes on a slow store.
		before := written
		written += len(b.keys)
		if written/100000 > before/100000 && written < o.n {
			fmt.Fprintf(log, "benchseed: %d of %d keys (%.0f keys/s)\n", written, o.n, float64(written)/time.Since(start).Seconds())
		}
	}
	return w.Flush()
}

// generate makes size new keys as keys.Service.CreateKey would, active,
// with o's scopes and no limits.
func generate(o options, size int) batch {
	b := batch{keys: make([]*latchkey.Key, size), plains: make([]string, size)}
	r := bufio.NewReaderSize(rand.Reader, 32*size)
	now := time.Now().UTC().Truncate(time.Microsecond)
	for i := range size {
		tok, err := latchkey.GenerateToken(o.prefix, r)
		if err != nil {
			b.err = err
			return b
		}
		b.plains[i] = tok.Reveal()
		b.keys[i] = &latchkey.Key{
			ID:          latchkey.NewID("key", now),
			Tenant:      o.tenant,
			Name:        "bench",
			Owner:       "bench",
			Environment: "bench",
			Prefix:      tok.Prefix(),
			Start:       tok.Start(),
			Hash:        tok.Hash(),
			Scopes:      append([]string{}, o.scopes...),
			Resources:   []string{},
			Meta:        map[string]any{},
			IPAllow:     []netip.Prefix{},
			Countries:   []string{},
			State:       latchkey.StateActive,
			CreatedAt:   now,
			UpdatedAt:   now,
		}
	}
	return b
}
