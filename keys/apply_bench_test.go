package keys_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/keys"
)

// BenchmarkApplyUnchanged applies a manifest of 1,000 agents, already
// applied, to a tenant that holds no other keys and to one that also
// holds 100,000: the cost of the plan, which finds each declared key by
// its (indexed) name, so it should not grow with the tenant's other keys.
// Reported per declared key.
func BenchmarkApplyUnchanged(b *testing.B) {
	for _, others := range []int{0, 100_000} {
		b.Run(fmt.Sprintf("others=%d", others), func(b *testing.B) { benchApplyUnchanged(b, others) })
	}
}

func benchApplyUnchanged(b *testing.B, others int) {
	f := newFixture(b)
	ctx := context.Background()
	if others > 0 {
		var buf bytes.Buffer
		for range others {
			buf.WriteString(tokenURLSafe(b))
			buf.WriteByte('\n')
		}
		if res, err := f.svc.ImportKeys(ctx, f.admin, &buf, keys.ImportParams{Format: keys.ImportPlain}); err != nil || res.Imported != int64(others) {
			b.Fatal(err, res)
		}
	}
	const agents = 1_000
	m := &latchkey.Manifest{App: "bench"}
	for i := range agents {
		a := fmt.Sprintf("agent-%04d", i)
		m.Keys = append(m.Keys, latchkey.DeclaredKey{App: "bench", Agent: a, Name: a, Scopes: []string{"data:read"}, Source: "bench.yml:1"})
	}
	if _, err := f.svc.ApplyManifest(ctx, f.admin, m, keys.ApplyParams{}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		res, err := f.svc.ApplyManifest(ctx, f.admin, m, keys.ApplyParams{})
		if err != nil || len(res.Keys) != 0 {
			b.Fatal(err, len(res.Keys))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*agents), "µs/key")
}
