package main

import (
	"testing"

	"github.com/latchkeyhq/latchkey"
)

// keys create --uses 1 makes a key that works once.
func TestCLISingleUseKey(t *testing.T) {
	n := startCLINode(t)
	_, key := n.createKey(t, "--name", "one-shot", "--uses", "1")
	if code := n.verify(t, key); code != latchkey.CodeValid {
		t.Fatalf("first use: %s", code)
	}
	if code := n.verify(t, key); code != latchkey.CodeQuotaExceeded {
		t.Fatalf("second use: %s", code)
	}
	if r := n.run(t, "keys", "create", "--name", "x", "--uses", "2", "--quota", "5"); cliErrCode(r.err) != latchkey.EInvalid {
		t.Fatalf("--uses with --quota: %v", r.err)
	}
}
