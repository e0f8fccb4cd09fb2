package latchkey

// VerifyCodes lists every verification code in the order of the checks;
// VerifyCodeIndex is its inverse. Packages that count by code index arrays
// with it instead of keeping lists of their own.
var VerifyCodes = [...]string{
	CodeValid, CodeMalformed, CodeNotFound, CodeExpired, CodeRevoked, CodeSuspended,
	CodeIPNotAllowed, CodeOutsideTimeWindow, CodeInsufficientScope, CodeResourceNotAllowed,
	CodeRateLimited, CodeQuotaExceeded, CodeConcurrencyExceeded,
}

// VerifyCodeIndex returns code's index in VerifyCodes, or -1. It is a
// switch, not a map, because it runs on the verify path.
func VerifyCodeIndex(code string) int {
	switch code {
	case CodeValid:
		return 0
	case CodeMalformed:
		return 1
	case CodeNotFound:
		return 2
	case CodeExpired:
		return 3
	case CodeRevoked:
		return 4
	case CodeSuspended:
		return 5
	case CodeIPNotAllowed:
		return 6
	case CodeOutsideTimeWindow:
		return 7
	case CodeInsufficientScope:
		return 8
	case CodeResourceNotAllowed:
		return 9
	case CodeRateLimited:
		return 10
	case CodeQuotaExceeded:
		return 11
	case CodeConcurrencyExceeded:
		return 12
	}
	return -1
}
