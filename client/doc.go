// Package client is Latchkey's Go client, for any Go program. It imports
// the standard library, yaml.v3 (its settings file) and wire, the API's
// vocabulary (codes and status tables, itself standard library only), and
// none of the server's packages, so linking it costs a program little else.
//
// It has two halves:
//
//   - Secrets fetches provider keys (OpenAI, Anthropic, …) from a secret
//     broker speaking either seed route style, GET {endpoint}/{provider} or
//     GET {endpoint}/llm-keys; caches them; shares one request among
//     concurrent callers; serves a stale value for a bounded time while the
//     broker is down; and falls back to a keys file, then to
//     <PROVIDER>_API_KEY in the environment.
//   - Verifier checks the keys that callers present to a net/http service
//     (POST /v1/keys/verify), and Verifier.Middleware guards handlers with it,
//     puts the caller's Identity in the request context and releases
//     concurrency leases when the handler returns.
//
// Every error is an *Error whose Code is one of the server's error codes;
// no error, log line or panic of this package holds a key or secret value.
// See docs/client.md for the rules in full.
package client
