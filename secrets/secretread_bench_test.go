package secrets_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey/audit"
	"github.com/latchkeyhq/latchkey/secrets"
)

// BenchmarkReadSecretCached measures secrets.Service.ReadSecret for a cached
// value: a cache lookup and queueing the read's audit event (the flush is
// measured by BenchmarkReadAuditFlush).
func BenchmarkReadSecretCached(b *testing.B) {
	f := newFixture(b, func(o *setup) { o.ReadAuditInterval = time.Hour; o.ReadAuditQueue = 1 << 30 })
	ctx := context.Background()
	if _, err := f.svc.PutSecret(ctx, f.admin, "openai", secrets.SecretParams{Value: "sk-proj-0123456789abcdef0123456789"}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.svc.ReadSecret(ctx, f.admin, "openai", 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadAuditFlush measures writing queued secret.read events: one
// op is one event (a read by a distinct client, its own user agent),
// written in batches of 1000 per transaction. It is what the flush costs
// per distinct reader; alike reads within a flush cost one event. The
// reads that queue a batch run with the timer stopped: they are
// BenchmarkReadSecretCached's, not the flush's.
func BenchmarkReadAuditFlush(b *testing.B) {
	b.Run("unsigned", func(b *testing.B) { benchReadAuditFlush(b, nil) })
	// As the server runs: each append checks and signs the checkpoint.
	a, err := audit.NewAnchor(make([]byte, 32), "", nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("signed", func(b *testing.B) { benchReadAuditFlush(b, a) })
}

func benchReadAuditFlush(b *testing.B, anchor *audit.Anchor) {
	f := newFixture(b, func(o *setup) {
		o.ReadAuditInterval = time.Hour
		o.ReadAuditQueue = 1 << 30
		o.Anchor = anchor
	})
	ctx := context.Background()
	if _, err := f.svc.PutSecret(ctx, f.admin, "openai", secrets.SecretParams{Value: "sk-proj-0123456789abcdef0123456789"}); err != nil {
		b.Fatal(err)
	}
	agents := make([]string, 1000)
	for i := range agents {
		agents[i] = "agent-" + strconv.Itoa(i)
	}
	a := *f.admin
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		batch := min(len(agents), b.N-done)
		b.StopTimer()
		for _, agent := range agents[:batch] {
			a.UserAgent = agent
			if _, err := f.svc.ReadSecret(ctx, &a, "openai", 0); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		if err := f.svc.FlushReadAudits(ctx); err != nil {
			b.Fatal(err)
		}
		done += batch
	}
}
