package identity

import "github.com/latchkeyhq/latchkey"

// Reasons an exchange refuses a token: the check that failed, for
// callers and tests to tell apart without reading messages. The HTTP API
// sends it in the X-Latchkey-Reason header of its 401.
const (
	ReasonUnknownProvider = "unknown_provider"
	ReasonMalformed       = "malformed"
	ReasonAlgorithm       = "algorithm"
	ReasonUnknownKid      = "unknown_kid"
	ReasonSignature       = "signature"
	ReasonIssuer          = "issuer"
	ReasonAudience        = "audience"
	ReasonExpired         = "expired"
	ReasonNotYetValid     = "not_yet_valid"
	ReasonIssuedInFuture  = "issued_in_future"
	ReasonMissingClaim    = "missing_claim"
	ReasonClaims          = "claims"
	ReasonReplayed        = "replayed_jti"
)

// Refused is an exchange's refusal of a token: EUnauthenticated, with the
// Reason naming the failed check. errors.As finds it; latchkey.ErrorCode
// sees its *latchkey.Error.
type Refused struct {
	Reason string
	err    *latchkey.Error
}

func (r *Refused) Error() string { return r.err.Error() }

// Unwrap is the *latchkey.Error with the code and the caller-safe message.
func (r *Refused) Unwrap() error { return r.err }

func refuse(reason, format string, args ...any) error {
	return &Refused{Reason: reason, err: latchkey.Errorf(latchkey.EUnauthenticated, "identity token refused (%s): "+format, append([]any{reason}, args...)...)}
}
