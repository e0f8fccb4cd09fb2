package keys_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
	"github.com/latchkeyhq/latchkey/store/sqlite"
)

// chachaReader feeds GenerateToken fast, seeded randomness: the benchmark
// mints many keys and needs no secrecy.
type chachaReader struct{ r *rand.ChaCha8 }

func (c chachaReader) Read(p []byte) (int, error) { return c.r.Read(p) }

// missFixture is a SQLite file holding many keys, and their plaintexts.
type missFixture struct {
	db   *sqlite.DB
	keys []string
}

// openMissStore builds a SQLite file of n keys, inserted directly in
// batches.
func openMissStore(b *testing.B, n int) missFixture {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "keys.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	src := chachaReader{rand.NewChaCha8([32]byte{1})}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	plain := make([]string, n)
	const batch = 10_000
	for start := 0; start < n; start += batch {
		err := db.Update(ctx, func(tx *sqlite.Tx) error {
			if start == 0 {
				if err := tx.CreateTenant(&latchkey.Tenant{ID: "acme", Name: "Acme", CreatedAt: at}); err != nil {
					return err
				}
			}
			for i := start; i < min(n, start+batch); i++ {
				tok, err := latchkey.GenerateToken("", src)
				if err != nil {
					return err
				}
				plain[i] = tok.Reveal()
				k := &latchkey.Key{
					ID: "key_" + strconv.Itoa(i), Tenant: "acme", Name: "agent", Owner: "agent-" + strconv.Itoa(i),
					Environment: "production", Prefix: tok.Prefix(), Start: tok.Start(), Hash: tok.Hash(),
					Scopes: []string{"data:read", "agent:activate"}, State: latchkey.StateActive,
					CreatedAt: at, UpdatedAt: at,
				}
				if err := tx.CreateKey(k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	return missFixture{db: db, keys: plain}
}

// BenchmarkVerifyMisses verifies keys in turn from a SQLite file of
// LATCHKEY_BENCH_KEYS keys (default 20,000; the figure is
// 1,000,000) with a cache of a tenth of them: all of them in turn
// ("AllActive": every verification a miss), and a twentieth, cached
// before the clock starts ("WorkingSetFits"). ns/op is per verification:
// 1e9 / ns/op is the req/s the verify path allows, before HTTP;
// cpu-ns/op is the CPU time each took, steadier on a shared machine.
func BenchmarkVerifyMisses(b *testing.B) {
	n := 20_000
	if s := os.Getenv("LATCHKEY_BENCH_KEYS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	f := openMissStore(b, n)
	for _, c := range []struct {
		name   string
		active int
	}{{"AllActive", n}, {"WorkingSetFits", n / 20}} {
		svc := keys.New(keys.Options{Store: latchkey.Narrow[keys.Tx](f.db), CacheSize: n / 10})
		ctx := context.Background()
		for _, par := range []bool{false, true} {
			name := fmt.Sprintf("%s/%dkeys/serial", c.name, n)
			if par {
				name = fmt.Sprintf("%s/%dkeys/parallel", c.name, n)
			}
			b.Run(name, func(b *testing.B) {
				var next atomic.Int64
				if c.active < n {
					// The working set is cached before the clock starts.
					for i := range c.active {
						if _, err := svc.Verify(ctx, keys.VerifyRequest{Key: f.keys[i]}); err != nil {
							b.Fatal(err)
						}
					}
				}
				reads := svc.StoreReads()
				cpu := cpuTime()
				b.ReportAllocs()
				b.ResetTimer()
				verify := func() {
					i := int(next.Add(1)) % c.active
					v, err := svc.Verify(ctx, keys.VerifyRequest{Key: f.keys[i], Scopes: []string{"data:read"}})
					if err != nil || v.Code != latchkey.CodeValid {
						b.Fatal(v.Code, err)
					}
				}
				if par {
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							verify()
						}
					})
				} else {
					for b.Loop() {
						verify()
					}
				}
				b.ReportMetric(float64(svc.StoreReads()-reads)/float64(b.N), "reads/op")
				if used := cpuTime() - cpu; used > 0 {
					// CPU time per verification (every core): 1e9 / it is
					// the verifications one core allows, whatever else
					// the machine runs.
					b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/op")
				}
			})
		}
	}
}
