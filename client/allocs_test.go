//go:build !race

// The race detector makes allocation counts meaningless, hence the tag.

package client

import (
	"context"
	"testing"

	"github.com/latchkeyhq/latchkey/internal/allocstest"
)

func TestSecretsCacheHitAllocatesNothing(t *testing.T) {
	b := newBroker(t)
	s, _ := newSecrets(t, SecretsConfig{EndpointURL: b.URL + "/keys"})
	ctx := context.Background()
	mustLookup(t, s, "openai")
	allocstest.None(t, "a cache hit", func() { s.Get(ctx, "openai") })
}
