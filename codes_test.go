package latchkey_test

import (
	"testing"

	"github.com/latchkeyhq/latchkey"
)

func TestVerifyCodeIndexInvertsVerifyCodes(t *testing.T) {
	for i, c := range latchkey.VerifyCodes {
		if got := latchkey.VerifyCodeIndex(c); got != i {
			t.Errorf("VerifyCodeIndex(%s) = %d, want %d", c, got, i)
		}
	}
	if latchkey.VerifyCodeIndex("valid") != -1 || latchkey.VerifyCodeIndex("") != -1 {
		t.Error("unknown codes must give -1")
	}
}
