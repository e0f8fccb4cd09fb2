package latchkey

import "github.com/latchkeyhq/latchkey/wire"

// VerifyCodes lists every verification code in the order of the checks;
// VerifyCodeIndex is its inverse. Packages that count by code index arrays
// with it instead of keeping lists of their own.
var VerifyCodes = wire.VerifyCodes

// VerifyCodeIndex returns code's index in VerifyCodes, or -1.
func VerifyCodeIndex(code string) int { return wire.VerifyCodeIndex(code) }
