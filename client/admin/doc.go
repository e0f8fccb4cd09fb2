// Package admin is the typed Go client of Latchkey's admin API: keys,
// tenants, secrets, the keyring, webhooks, the audit log, security events,
// reports, usage, import and export, and verification. The latchkey CLI
// speaks to a server only through it, so each route's method, path,
// query and body are written here once.
//
// It imports the standard library, wire (the error codes and their HTTP
// statuses) and the root package latchkey for the records the server
// answers with (latchkey.Key, latchkey.Secret, latchkey.Webhook, …). Where
// the server's type lives in one of its service packages (audit, keys,
// httpapi), this package declares its own with the same JSON, so that a
// program using it links none of the server.
//
// Every method takes a context and returns, besides its typed answer, an
// error that is one of:
//
//   - *Error: the server refused the request (a non-2xx answer), with the
//     wire code, the HTTP status, the server's message and its request id;
//     or a 2xx answer this client could not read (Code internal, Status
//     the 2xx status).
//   - *TransportError: no complete answer came back (the server cannot be
//     reached, did not answer within the client's timeout, or the answer
//     broke off).
//   - the context's own error, as it is, when the caller's ctx ended.
//
// No error holds the admin key or a value sent or received (a secret, a
// plaintext key): a server message that repeats one has it replaced.
//
// A method's answer is also available as the server sent it, for programs
// that pass it on (the CLI's --json): give the method Raw(&b).
package admin
