package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/wire"
)

// GET /openapi.json serves an OpenAPI 3.1 document of the whole HTTP
// surface. It is built from the route table (Routes) and the description
// of each route below, keyed as the mux keys it ("METHOD pattern"): a route
// of the table without a description, or a description of no route, fails
// TestEveryRouteIsDescribed, so the document cannot fall behind the
// server. The document is built once, as JSON whose object keys
// encoding/json sorts, so two builds of the same table are the same bytes
// and a change to it reads as a plain diff.

// schema is a JSON Schema (2020-12, the dialect of OpenAPI 3.1) or any
// other object of the document, as the JSON it encodes to.
type schema = map[string]any

// operation describes one route for the document.
type operation struct {
	id      string // operationId
	summary string
	// description adds what the summary cannot say; docs/api.md has the
	// rest.
	description string
	// body is the request body, nil for a route that reads none.
	body *requestBody
	// status is the success status; resp its JSON body (nil: none), or
	// of respType when that is set.
	status   int
	resp     schema
	respType string
	// csv: with format=csv the answer is CSV instead (the reports).
	csv bool
	// respHeaders names headers (of components.headers) on the success
	// answer.
	respHeaders []string
	// errors are the error codes the route answers beyond those every
	// route of its kind does (see errorCodes).
	errors []string
	query  []param
	// path describes the pattern's parameters by name; each must be
	// described.
	path map[string]param
	// keyed: the route takes a key but no admin scope (a lease's
	// release); admin routes (Route.Scope set) always take one.
	keyed bool
}

// requestBody is a route's body: its schema by media type.
type requestBody struct {
	content  map[string]schema
	optional bool // an empty body is taken (all fields default)
}

// param is a query, header or path parameter.
type param struct {
	name, in, description string
	schema                schema
	required              bool
}

func inQuery(name, description string, s schema) param {
	return param{name: name, in: "query", description: description, schema: s}
}

func pathParam(description string, s schema) param {
	return param{in: "path", description: description, schema: s, required: true}
}

func ref(name string) schema { return schema{"$ref": "#/components/schemas/" + name} }

func str(description string) schema {
	s := schema{"type": "string"}
	if description != "" {
		s["description"] = description
	}
	return s
}

func integer(description string) schema {
	s := schema{"type": "integer"}
	if description != "" {
		s["description"] = description
	}
	return s
}

func boolean(description string) schema {
	s := schema{"type": "boolean"}
	if description != "" {
		s["description"] = description
	}
	return s
}

func timestamp(description string) schema {
	s := schema{"type": "string", "format": "date-time"}
	if description != "" {
		s["description"] = description
	}
	return s
}

func enum(description string, values ...string) schema {
	s := str(description)
	s["enum"] = values
	return s
}

func array(items schema) schema { return schema{"type": "array", "items": items} }

func stringList() schema { return array(schema{"type": "string"}) }

func stringMap(description string) schema {
	s := schema{"type": "object", "additionalProperties": schema{"type": "string"}}
	if description != "" {
		s["description"] = description
	}
	return s
}

func countMap(description string) schema {
	s := schema{"type": "object", "additionalProperties": schema{"type": "integer"}}
	if description != "" {
		s["description"] = description
	}
	return s
}

// object is an answer's object: the fields listed, required the ones
// always present. Answers may grow fields, so clients should not refuse
// others.
func object(props map[string]schema, required ...string) schema {
	s := schema{"type": "object", "properties": props}
	if len(required) > 0 {
		slices.Sort(required)
		s["required"] = required
	}
	return s
}

// input is a request body's object: the server refuses any field it does
// not list (docs/api.md, conventions).
func input(props map[string]schema, required ...string) schema {
	s := object(props, required...)
	s["additionalProperties"] = false
	return s
}

func allOf(parts ...schema) schema {
	ps := make([]any, len(parts))
	for i, p := range parts {
		ps[i] = p
	}
	return schema{"allOf": ps}
}

// exactlyOne requires exactly one of the named fields of s.
func exactlyOne(s schema, fields ...string) schema {
	var alts []any
	for _, f := range fields {
		alts = append(alts, schema{"required": []string{f}})
	}
	s["oneOf"] = alts
	return s
}

func jsonBody(s schema) *requestBody {
	return &requestBody{content: map[string]schema{"application/json": s}}
}

func optionalBody(s schema) *requestBody {
	b := jsonBody(s)
	b.optional = true
	return b
}

// emptyBody is the body of a route that takes none: nothing, or {}.
var emptyBody = optionalBody(schema{"type": "object", "additionalProperties": false, "maxProperties": 0})

// Parameters several routes share.
var (
	pLimit  = inQuery("limit", "page size, 1–1000 (default 100)", schema{"type": "integer", "minimum": 1, "maximum": latchkey.MaxListLimit})
	pCursor = inQuery("cursor", "the next_cursor of the page before; opaque", str(""))
	pSince  = inQuery("since", "events at or after this time (RFC 3339)", timestamp(""))
	pUntil  = inQuery("until", "events before this time (RFC 3339)", timestamp(""))
	pKeyID  = pathParam("a key id (key_…); a segment that does not start with key_ is no route (404)", schema{"type": "string", "pattern": "^key_"})
	pHookID = pathParam("a webhook id (whk_…)", str(""))
	pSecret = pathParam("a secret name: 1–63 of a-z, 0-9, _ and -, starting with a letter and ending with a letter or digit", str(""))
	pPolicy = pathParam("a policy name: 1–63 of a-z, 0-9, _ and -, starting with a letter or digit", str(""))
	pOwner  = pathParam("an owner id, as keys' owner field holds it (free text up to 200 bytes), path-escaped", str(""))
	// A usage window, as GET /v1/keys/{id}/usage reads it.
	pUsage = []param{
		inQuery("bucket", "the series' resolution (default hour)", enum("", "minute", "hour", "day")),
		inQuery("from", "start of the window (RFC 3339)", timestamp("")),
		inQuery("to", "end of the window (RFC 3339; default now)", timestamp("")),
	}
	// The report window: RFC 3339 times or dates (midnight UTC).
	pReport = []param{
		inQuery("from", "start of the window (RFC 3339, or YYYY-MM-DD for midnight UTC); default 30 days before to", str("")),
		inQuery("to", "end of the window, exclusive (RFC 3339, or YYYY-MM-DD); default now; at most 366 days after from", str("")),
		inQuery("format", "json (default) or csv (text/csv, one row per key or anomaly)", enum("", "json", "csv")),
	}
)

// operations describes every route of the table, keyed "METHOD pattern".
var operations = map[string]operation{
	"GET /health": {
		id: "health", summary: "Health, in the seed services' form",
		status: 200, resp: object(map[string]schema{"status": enum("", "healthy")}, "status"),
	},
	"GET /healthz": {
		id: "healthz", summary: "Liveness: the process runs",
		status: 200, resp: object(map[string]schema{"status": enum("", "ok")}, "status"),
	},
	"GET /readyz": {
		id: "readyz", summary: "Readiness: the store answers",
		description: "503 unavailable while the store does not answer, with the store's reason when it has one. " +
			"While a tenant's audit log is known to have been tampered with, 200 with status degraded and the reasons.",
		status: 200, resp: ref("Readiness"), errors: []string{wire.EUnavailable},
	},
	"GET /metrics": {
		id: "metrics", summary: "Prometheus metrics",
		description: "Served on the main listener unless the server moves metrics to a listener of their own " +
			"(--metrics-addr) or has none; then this route is 404 not_found. No label holds a key, key id, tenant or owner.",
		status: 200, respType: "text/plain", resp: str("the Prometheus text exposition format"),
		errors: []string{wire.ENotFound},
	},
	"GET /openapi.json": {
		id: "openapi", summary: "This document",
		description: "OpenAPI 3.1, generated from the server's route table.",
		status:      200, resp: schema{"type": "object"},
	},
	"POST /v1/keys/verify": {
		id: "verifyKey", summary: "Verify a key",
		description: "No admin key: the key to check is in the body. A well-formed request always gets 200 with the verdict's code; " +
			"checks run in the order of wire.VerifyCodes and the first failure is the code. A malformed body (not JSON, an unknown field, " +
			"a scope that is not a scope) is 400 invalid. A network the brute-force guard holds back gets 429 rate_limited.",
		body:   jsonBody(ref("VerifyRequest")),
		status: 200, resp: ref("VerifyResponse"),
		errors: []string{wire.ERateLimited, wire.EUnavailable},
	},

	"POST /v1/keys": {
		id: "createKey", summary: "Create a key",
		description: "Answers the key object with its plaintext in key, the only time it is shown.",
		body:        jsonBody(ref("CreateKeyRequest")),
		status:      201, resp: ref("KeyWithSecret"),
	},
	"GET /v1/keys": {
		id: "listKeys", summary: "List keys, in creation order",
		query: []param{
			inQuery("owner", "only this owner's keys", str("")),
			inQuery("environment", "only keys of this environment", str("")),
			inQuery("name", "only keys of this name", str("")),
			inQuery("state", "only keys in this state now", enum("", "active", "suspended", "revoked", "expired")),
			inQuery("parent_id", "only keys derived from this key", str("")),
			inQuery("resource", "only keys whose resources cover this one (agent:NAME), those with none included; such a page reads at most 10,000 keys and may hold fewer than limit", str("")),
			pLimit, pCursor,
		},
		status: 200, resp: object(map[string]schema{"keys": array(ref("Key")), "next_cursor": str("empty on the last page")}, "keys", "next_cursor"),
	},
	"GET /v1/keys/export": {
		id: "exportKeys", summary: "Export every key of the tenant as JSON lines",
		description: "One ExportedKey per line, in id order: the key object with the hex SHA-256 of its plaintext, never the plaintext. " +
			"Anyone holding an export can make its keys verify on a server of their own. Each export is audited (keys.exported).",
		status: 200, respType: "application/x-ndjson", resp: ref("ExportedKey"),
		errors: []string{wire.EInvalid, wire.ETooLarge},
	},
	"POST /v1/keys/import": {
		id: "importKeys", summary: "Import keys from a streamed body",
		description: "The body is streamed and not bounded by --max-body; each line is at most 64 KiB (413 too_large otherwise). " +
			"Keys whose hash is already stored are skipped, so an import can be run again. The query's settings apply to every key " +
			"of the plaintext, sha256 and env formats; a jsonl line carries its own, and a jsonl import takes no other parameter.",
		query: []param{
			inQuery("format", "plaintext (default; plain is taken for it), sha256, jsonl (an export) or env (a .env file's API_KEYS)", enum("", "plaintext", "plain", "sha256", "jsonl", "env")),
			inQuery("name", "every imported key's name (default imported)", str("")),
			inQuery("owner", "every imported key's owner; not with env, whose client ids are the owners", str("")),
			inQuery("environment", "every imported key's environment", str("")),
			inQuery("scopes", "every imported key's scopes, comma-separated", str("")),
		},
		body: &requestBody{content: map[string]schema{
			"text/plain":           str("plaintext or sha256: one key, or one hex SHA-256 of a key, per line; env: a .env file"),
			"application/x-ndjson": str("jsonl: an export, one ExportedKey per line"),
		}, optional: true},
		status: 200, resp: ref("ImportResult"),
	},
	"POST /v1/apply": {
		id: "applyManifest", summary: "Make the tenant's keys match an app manifest",
		description: "The body is an app_manifest.yml, as YAML or JSON (at most 1 MiB). Every declaration is checked before anything " +
			"changes: one bad key refuses the whole manifest with 400 invalid, its message starting FILE:LINE:. keys holds the " +
			"plaintext of the keys this apply created, shown once.",
		query: []param{
			inQuery("dry_run", "answer the plan and change nothing", boolean("")),
			inQuery("env", "apply this environment's keys only; pruning touches only its keys", str("")),
			inQuery("prune", "revoke the keys the app declared before and no longer does", boolean("")),
			inQuery("file", "the manifest's name in error messages (default app_manifest.yml)", str("")),
		},
		body: &requestBody{content: map[string]schema{
			"application/yaml": ref("Manifest"),
			"application/json": ref("Manifest"),
		}},
		status: 200, resp: ref("ApplyResult"),
		errors: []string{wire.EConflict},
	},
	"POST /v1/keys/batch": {
		id: "batchKeys", summary: "Revoke, suspend, resume, rotate or set the policy of many keys at once",
		description: "The keys are named by ids or chosen by filter, exactly one of them; an empty filter is refused ({\"all\": true} " +
			"means the whole tenant), and so is a field that does not apply to the op. At most 10,000 keys. Each key changes in its own " +
			"transaction: one that cannot carries error and error_code in its result and the others go ahead. A filter never revokes, " +
			"suspends or rotates the key making the request. set_policy needs policy: the policy's name, or \"\" to remove it.",
		body:   jsonBody(ref("BatchRequest")),
		status: 200, resp: ref("BatchResult"),
	},
	"GET /v1/keys/{id}": {
		id: "getKey", summary: "Get a key",
		description: "The key object, and for a key with a quota quota_usage: the quota as the next verification would find it.",
		path:        map[string]param{"id": pKeyID},
		status:      200, resp: ref("KeyWithQuota"),
	},
	"PATCH /v1/keys/{id}": {
		id: "updateKey", summary: "Change the fields given",
		description: `"expires_at": null removes the expiry; "quota": null removes the quota. A revoked key cannot be changed (409).`,
		path:        map[string]param{"id": pKeyID},
		body:        jsonBody(ref("UpdateKeyRequest")),
		status:      200, resp: ref("Key"),
		errors: []string{wire.EConflict},
	},
	"POST /v1/keys/{id}/rotate": {
		id: "rotateKey", summary: "Rotate a key",
		description: "Active keys only, once. The successor copies the settings; the old key works until grace_until " +
			"(default 1h; 0s ends it at once). Answers the successor with its plaintext.",
		path:   map[string]param{"id": pKeyID},
		body:   optionalBody(ref("RotateRequest")),
		status: 201, resp: ref("KeyWithSecret"),
		errors: []string{wire.EConflict},
	},
	"POST /v1/keys/{id}/suspend": {
		id: "suspendKey", summary: "Suspend a key and the keys derived from it",
		description: "Without a duration, until resumed; a zero duration is refused.",
		path:        map[string]param{"id": pKeyID},
		body:        optionalBody(ref("SuspendRequest")),
		status:      200, resp: ref("Key"),
		errors: []string{wire.EConflict},
	},
	"POST /v1/keys/{id}/resume": {
		id: "resumeKey", summary: "Resume a suspended key",
		description: "Lifts the key's suspension and those it caused; 409 for a revoked key or one whose parent is still suspended.",
		path:        map[string]param{"id": pKeyID},
		body:        emptyBody,
		status:      200, resp: ref("Key"),
		errors: []string{wire.EConflict},
	},
	"POST /v1/keys/{id}/revoke": {
		id: "revokeKey", summary: "Revoke a key and the keys derived from it",
		description: "Final. Revoking a revoked key changes nothing (200).",
		path:        map[string]param{"id": pKeyID},
		body:        optionalBody(ref("RevokeRequest")),
		status:      200, resp: ref("Key"),
	},
	"PUT /v1/keys/{id}/rotation": {
		id: "putRotation", summary: "Rotate a key on a schedule",
		description: "Every interval (at least 1h) the key is rotated; the old key works for grace_period (1m to the interval, default 24h). " +
			"Each successor's plaintext is sealed as the next version of the secret secret_name (default key-<name>) in the rotation's transaction, " +
			"readable through the broker by the reader key alone when one is named. The next rotation is due one interval from now.",
		path:   map[string]param{"id": pKeyID},
		body:   jsonBody(ref("RotationRequest")),
		status: 200, resp: ref("Rotation"),
		errors: []string{wire.EConflict},
	},
	"GET /v1/keys/{id}/rotation": {
		id: "getRotation", summary: "A key's rotation schedule",
		path:   map[string]param{"id": pKeyID},
		status: 200, resp: ref("Rotation"),
	},
	"DELETE /v1/keys/{id}/rotation": {
		id: "deleteRotation", summary: "Stop a key's scheduled rotation",
		path:   map[string]param{"id": pKeyID},
		status: 204,
	},
	"POST /v1/keys/{id}/derive": {
		id: "deriveKey", summary: "Derive a child key within the parent",
		description: "The child's scopes, resources, address ranges and expiry must lie within the parent's (403 otherwise); " +
			"by default it copies them. A key with keys:derive but not keys:write may derive only from itself.",
		path:   map[string]param{"id": pKeyID},
		body:   jsonBody(ref("CreateKeyRequest")),
		status: 201, resp: ref("KeyWithSecret"),
		errors: []string{wire.EConflict},
	},
	"GET /v1/keys/{id}/usage": {
		id: "keyUsage", summary: "A key's recorded usage",
		description: "Without from, the window follows the bucket: the last hour by minute, 24 hours by hour, 30 days by day; at most 1000 buckets.",
		path:        map[string]param{"id": pKeyID},
		query:       pUsage,
		status:      200, resp: ref("UsageReport"),
	},

	"POST /v1/policies": {
		id: "createPolicy", summary: "Create a policy",
		description: "A policy is a named set of settings keys share: a key with \"policy\": name takes its scopes, resources, " +
			"address ranges, countries, time windows, limits and expiry, and may only narrow them. The name of a preset " +
			"(development, production, integration, emergency) gives the tenant its own version of it. 409 when the tenant " +
			"has a policy of that name; 403 when it grants admin scopes the key does not hold.",
		body:   jsonBody(ref("CreatePolicyRequest")),
		status: 201, resp: ref("Policy"),
		errors: []string{wire.EConflict},
	},
	"GET /v1/policies": {
		id: "listPolicies", summary: "List policies by name, presets included",
		description: "The presets the tenant has not replaced are listed with preset: true.",
		query:       []param{pLimit, pCursor},
		status:      200, resp: object(map[string]schema{"policies": array(ref("Policy")), "next_cursor": str("empty on the last page")}, "policies", "next_cursor"),
	},
	"GET /v1/policies/{name}": {
		id: "getPolicy", summary: "Get a policy (the tenant's, else the preset)",
		path:   map[string]param{"name": pPolicy},
		status: 200, resp: ref("Policy"),
	},
	"PATCH /v1/policies/{name}": {
		id: "updatePolicy", summary: "Change the fields given",
		description: "\"quota\": null removes the quota. A preset is copied into the tenant's own first. Every key that names the " +
			"policy takes the change at its next verification, on every node.",
		path:   map[string]param{"name": pPolicy},
		body:   jsonBody(ref("UpdatePolicyRequest")),
		status: 200, resp: ref("Policy"),
	},
	"DELETE /v1/policies/{name}": {
		id: "deletePolicy", summary: "Delete the tenant's policy",
		description: "A preset of the same name then applies again. 409 while a key that is not revoked names it.",
		path:        map[string]param{"name": pPolicy},
		status:      204,
		errors:      []string{wire.EConflict},
	},

	"PUT /v1/owners/{id}": {
		id: "putOwner", summary: "Create or replace an owner's shared limits",
		description: "Every key whose owner is id counts against these rate windows and this periodic quota besides its own " +
			"(the stricter wins), so minting more keys does not buy more requests. The record is replaced whole.",
		path:   map[string]param{"id": pOwner},
		body:   jsonBody(ref("PutOwnerRequest")),
		status: 200, resp: ref("Owner"),
	},
	"GET /v1/owners": {
		id: "listOwners", summary: "List owner records by id",
		query:  []param{pLimit, pCursor},
		status: 200, resp: object(map[string]schema{"owners": array(ref("Owner")), "next_cursor": str("empty on the last page")}, "owners", "next_cursor"),
	},
	"GET /v1/owners/{id}": {
		id: "getOwner", summary: "An owner's record and its keys' usage",
		description: "404 for an owner id without a record, even when keys name it (GET /v1/owners/{id}/usage answers their usage). " +
			"usage is absent on a server without an audit service.",
		path:   map[string]param{"id": pOwner},
		query:  pUsage,
		status: 200, resp: ref("OwnerWithUsage"),
	},
	"GET /v1/owners/{id}/usage": {
		id: "ownerUsage", summary: "The summed usage of an owner's keys",
		description: "For any owner id, with or without a record; an owner without keys has an empty report. Windows as in GET /v1/keys/{id}/usage.",
		path:        map[string]param{"id": pOwner},
		query:       pUsage,
		status:      200, resp: ref("OwnerUsageReport"),
	},
	"DELETE /v1/owners/{id}": {
		id: "deleteOwner", summary: "Delete an owner's record",
		description: "Its keys keep their owner and lose the shared limits.",
		path:        map[string]param{"id": pOwner},
		status:      204,
	},

	"POST /v1/leases/{id}/release": {
		id: "releaseLease", summary: "End a concurrency lease",
		description: "The key presented must be the key holding the lease or an admin key (keys:write) of its tenant. " +
			"404 if the lease is not live or not visible to that key.",
		keyed:  true,
		path:   map[string]param{"id": pathParam("the lease_id a verification answered", str(""))},
		body:   emptyBody,
		status: 204,
	},

	"POST /v1/identity-providers": {
		id: "createIdentityProvider", summary: "Trust a workload identity token issuer",
		description: "A token of the issuer that passes every check (signature by a key of its JWKS, iss, aud, exp, nbf, iat, a jti not seen " +
			"before, and the claim rules) buys a key of key_template through POST /v1/token. 403 when the template grants admin scopes the key " +
			"does not hold; 409 when the name is taken. docs/identity.md.",
		body:   jsonBody(identityProviderInput),
		status: 201, resp: identityProviderSchema,
		errors: []string{wire.EConflict, wire.ENotFound},
	},
	"GET /v1/identity-providers": {
		id: "listIdentityProviders", summary: "List the tenant's identity providers by name",
		status: 200, resp: object(map[string]schema{"identity_providers": array(identityProviderSchema)}, "identity_providers"),
		errors: []string{wire.ENotFound},
	},
	"GET /v1/identity-providers/{name}": {
		id: "getIdentityProvider", summary: "Get an identity provider",
		path:   map[string]param{"name": pathParam("the provider's name", str(""))},
		status: 200, resp: identityProviderSchema,
	},
	"DELETE /v1/identity-providers/{name}": {
		id: "deleteIdentityProvider", summary: "Stop trusting an identity provider",
		description: "Keys it minted live out their short lives.",
		path:        map[string]param{"name": pathParam("the provider's name", str(""))},
		status:      204,
	},
	"POST /v1/token": {
		id: "exchangeToken", summary: "Exchange a workload identity token for a short-lived key",
		description: "No key: the token is the credential. 401 unauthenticated names the failed check in the message and in the " +
			"X-Latchkey-Reason header (unknown_provider, malformed, algorithm, unknown_kid, signature, issuer, audience, expired, " +
			"not_yet_valid, issued_in_future, missing_claim, claims, replayed_jti); a refusal counts in the brute-force guard as a bad key " +
			"does (429 rate_limited). 503 when the issuer's keys cannot be fetched. The key is in the answer this once.",
		body: jsonBody(input(map[string]schema{
			"tenant":   str("the tenant whose provider is named"),
			"provider": str("the identity provider's name"),
			"token":    str("the workload's identity token, a signed JWT"),
		}, "tenant", "provider", "token")),
		status: 201,
		resp: object(map[string]schema{
			"key":        str("the minted key's plaintext, shown this once"),
			"key_id":     str(""),
			"expires_at": timestamp(""),
		}, "key", "key_id", "expires_at"),
		errors: []string{wire.EUnauthenticated, wire.ERateLimited, wire.ENotFound, wire.EUnavailable},
	},

	"POST /v1/leaks/github": {
		id: "githubLeaks", summary: "Take a GitHub secret-scanning partner alert",
		description: "No admin key: the request must carry GitHub's ECDSA P-256 signature over the raw body in GITHUB-PUBLIC-KEY-SIGNATURE " +
			"(base64 ASN.1 DER), by a key of --leak-report-keys named in GITHUB-PUBLIC-KEY-IDENTIFIER; it is checked before the body is parsed, " +
			"and a missing, unknown or wrong one is 401 unauthenticated with nothing changed. Each reported token that is a live key is revoked " +
			"(or suspended, --leak-action) and audited as key.leaked. The answer is GitHub's token analysis, each token named by its SHA-256. " +
			"404 on a server started without --leak-report-keys. docs/leaks.md.",
		body: jsonBody(array(object(map[string]schema{
			"token":  str("the secret found"),
			"type":   str("the pattern's name"),
			"url":    str("where it was found; may be empty"),
			"source": str("content, commit, issue_comment, …"),
		}, "token"))),
		status: 200,
		resp: array(object(map[string]schema{
			"token_hash": str("lower-case hex SHA-256 of the token"),
			"token_type": str("the type the alert gave"),
			"label":      enum("true_positive: a key this server issued or imported, whatever its state", "true_positive", "false_positive"),
		}, "token_hash", "token_type", "label")),
		errors: []string{wire.EUnauthenticated, wire.ERateLimited, wire.ENotFound, wire.EUnavailable},
	},
	"POST /v1/leaks": {
		id: "reportLeaks", summary: "Report keys found leaked",
		description: "Each token that is a live key of the caller's tenant is revoked (or suspended, --leak-action) and audited as key.leaked " +
			"with url; a key of another tenant, an unknown or malformed token is unknown and nothing changes. Results are in the order of tokens. " +
			"latchkey scan --revoke sends this.",
		body: jsonBody(input(map[string]schema{
			"tokens": schema{"type": "array", "items": schema{"type": "string"}, "minItems": 1, "maxItems": MaxLeakTokens},
			"url":    str("where they were found (a file path, a URL)"),
			"source": str("what found them (default scan)"),
		}, "tokens")),
		status: 200,
		resp: object(map[string]schema{"results": array(object(map[string]schema{
			"start":   str("the key's display start; empty for a token not in Latchkey's format"),
			"outcome": enum("", "revoked", "suspended", "already_revoked", "already_suspended", "unknown"),
			"key_id":  str("the key, when it is one of the caller's tenant"),
		}, "start", "outcome"))}, "results"),
	},

	"GET /v1/audit": {
		id: "listAudit", summary: "Audit events in seq order",
		query: []param{
			pSince, pUntil,
			inQuery("action", "only events of this action (key.created, …)", str("")),
			inQuery("key_id", "only events whose actor or target is this key", str("")),
			inQuery("result", "only events with this result", str("")),
			inQuery("after", "events after this seq", schema{"type": "integer", "minimum": 0}),
			pLimit,
		},
		status: 200, resp: object(map[string]schema{
			"events":     array(ref("AuditEvent")),
			"next_after": integer("the seq to continue after; 0 on the last page"),
		}, "events", "next_after"),
	},
	"GET /v1/audit/export": {
		id: "exportAudit", summary: "Every audit event as JSON lines",
		description: "One AuditEvent per line, in seq order; the filters of GET /v1/audit but limit.",
		query: []param{
			pSince, pUntil,
			inQuery("action", "only events of this action", str("")),
			inQuery("key_id", "only events whose actor or target is this key", str("")),
			inQuery("result", "only events with this result", str("")),
			inQuery("after", "events after this seq", schema{"type": "integer", "minimum": 0}),
		},
		status: 200, respType: "application/x-ndjson", resp: ref("AuditEvent"),
	},
	"GET /v1/audit/verify": {
		id: "verifyAudit", summary: "Check the tenant's audit chain",
		description: "Checks the hash chain and its end against the signed checkpoint and the anchor kept outside the database. " +
			"A finding is also raised as an audit_tampered security event.",
		status: 200, resp: ref("AuditVerdict"),
	},
	"GET /v1/security-events": {
		id: "listSecurityEvents", summary: "The tenant's security anomalies, oldest first",
		query: []param{
			inQuery("kind", "only anomalies of this kind", str("")),
			inQuery("key_id", "only anomalies about this key", str("")),
			pSince, pUntil,
			inQuery("after", "anomalies after this event id (the next_cursor of the page before)", str("")),
			pLimit,
		},
		status: 200, resp: object(map[string]schema{
			"events":      array(ref("SecurityEvent")),
			"next_cursor": str("empty on the last page"),
		}, "events", "next_cursor"),
	},

	"GET /v1/reports/access": {
		id: "accessReport", summary: "Who holds which keys with which scopes",
		query:  pReport,
		status: 200, resp: ref("AccessReport"), csv: true,
	},
	"GET /v1/reports/usage": {
		id: "usageReport", summary: "Verifications per key and owner in a window",
		query:  pReport,
		status: 200, resp: ref("TenantUsageReport"), csv: true,
	},
	"GET /v1/reports/security": {
		id: "securityReport", summary: "Security anomalies in a window and the answers to them",
		query:  pReport,
		status: 200, resp: ref("SecurityReport"), csv: true,
	},

	"POST /v1/webhooks": {
		id: "createWebhook", summary: "Add a webhook",
		description: "Answers the webhook with its signing secret, shown once. A URL whose host webhooks may not reach " +
			"(loopback, private, link-local, … unless the server allows it) is 400 invalid.",
		body:   jsonBody(ref("CreateWebhookRequest")),
		status: 201, resp: ref("CreatedWebhook"),
		errors: []string{wire.EConflict},
	},
	"GET /v1/webhooks": {
		id: "listWebhooks", summary: "List webhooks",
		query:  []param{pLimit, pCursor},
		status: 200, resp: object(map[string]schema{"webhooks": array(ref("Webhook")), "next_cursor": str("empty on the last page")}, "webhooks", "next_cursor"),
	},
	"GET /v1/webhooks/{id}": {
		id: "getWebhook", summary: "Get a webhook (never its secret)",
		path:   map[string]param{"id": pHookID},
		status: 200, resp: ref("Webhook"),
	},
	"DELETE /v1/webhooks/{id}": {
		id: "deleteWebhook", summary: "Delete a webhook; its pending deliveries are dropped",
		path:   map[string]param{"id": pHookID},
		status: 204,
	},
	"GET /v1/webhooks/{id}/deliveries": {
		id: "listDeliveries", summary: "A webhook's delivery log, newest first",
		path: map[string]param{"id": pHookID},
		query: []param{
			inQuery("status", "only deliveries in this status", enum("", latchkey.DeliveryPending, latchkey.DeliveryDelivered, latchkey.DeliveryFailed)),
			pLimit, pCursor,
		},
		status: 200, resp: object(map[string]schema{"deliveries": array(ref("Delivery")), "next_cursor": str("empty on the last page")}, "deliveries", "next_cursor"),
	},
	"POST /v1/webhooks/{id}/deliveries/{delivery_id}/retry": {
		id: "retryDelivery", summary: "Attempt a delivered or failed delivery once more, now",
		description: "409 while the delivery is pending.",
		path: map[string]param{
			"id":          pHookID,
			"delivery_id": pathParam("a delivery id (dlv_…)", str("")),
		},
		body:   emptyBody,
		status: 200, resp: ref("Delivery"),
		errors: []string{wire.EConflict},
	},

	"POST /v1/tenants": {
		id: "createTenant", summary: "Create a tenant and its first admin key",
		description: "Operator only. Answers the tenant and its first admin key's id and plaintext, shown once.",
		body:        jsonBody(ref("CreateTenantRequest")),
		status:      201, resp: ref("CreatedTenant"),
		errors: []string{wire.EConflict},
	},
	"GET /v1/tenants": {
		id: "listTenants", summary: "List tenants",
		description: "Operator only.",
		query:       []param{pLimit, pCursor},
		status:      200, resp: object(map[string]schema{"tenants": array(ref("Tenant")), "next_cursor": str("empty on the last page")}, "tenants", "next_cursor"),
	},

	"PUT /v1/secrets/{name}": {
		id: "putSecret", summary: "Write a secret's new version",
		description: "Answers the new version, without its value. Without expires_in a new version keeps the previous version's. " +
			"Exactly one of value and source; a source's reference shows in meta.source and meta.refresh.",
		path:   map[string]param{"name": pSecret},
		body:   jsonBody(ref("PutSecretRequest")),
		status: 200, resp: ref("Secret"),
	},
	"GET /v1/secrets": {
		id: "listSecrets", summary: "The secrets the key may read, without values",
		query:  []param{pLimit, pCursor},
		status: 200, resp: object(map[string]schema{"secrets": array(ref("SecretInfo")), "next_cursor": str("empty on the last page")}, "secrets", "next_cursor"),
	},
	"GET /v1/secrets/{name}": {
		id: "getSecret", summary: "Read a secret's value",
		description: "Needs the resource secret:{name} besides the scope. Every read is audited as secret.read; " +
			"a read whose event cannot be queued is 503 unavailable.",
		path:   map[string]param{"name": pSecret},
		query:  []param{inQuery("version", "this version (default the newest)", schema{"type": "integer", "minimum": 1})},
		status: 200, resp: ref("Secret"),
	},
	"GET /v1/secrets/{name}/versions": {
		id: "secretVersions", summary: "A secret's kept versions, newest first, without values",
		path:   map[string]param{"name": pSecret},
		status: 200, resp: object(map[string]schema{"versions": array(ref("Secret"))}, "versions"),
	},
	"DELETE /v1/secrets/{name}": {
		id: "deleteSecret", summary: "Delete a secret, all its versions",
		path:   map[string]param{"name": pSecret},
		status: 204,
	},
	"GET /keys/{provider}": {
		id: "seedKey", summary: "A secret's value in the seed services' form",
		description: "As GET /v1/secrets/{provider}; //keys/{provider} is served too. Answers Connection: close unless the server keeps them alive.",
		path:        map[string]param{"provider": pathParam("the secret's name", str(""))},
		status:      200, resp: object(map[string]schema{
			"api_key":    str("the secret's value"),
			"expires_in": integer("seconds clients may cache the value"),
		}, "api_key", "expires_in"),
	},
	"GET /llm-keys": {
		id: "seedKeys", summary: "Every secret the key may read, by name, in the seed services' form",
		description: "//llm-keys is served too. Every value read is audited.",
		status:      200, resp: stringMap("secret name → value"),
	},

	"GET /v1/keyring": {
		id: "keyringStatus", summary: "The keyring's terms",
		description: "Operator only; 404 on a server without a keyring.",
		status:      200, resp: ref("KeyringStatus"),
	},
	"POST /v1/keyring/rotate": {
		id: "rotateKeyring", summary: "Add a keyring term, which seals new values",
		description: "Operator only; 404 on a server without a keyring. Answers the status.",
		body:        emptyBody,
		status:      200, resp: ref("KeyringStatus"),
	},
	"POST /v1/keyring/rewrap": {
		id: "rewrapKeyring", summary: "Wrap every term with the master key in a file on the server",
		description: "Operator only; 404 on a server without a keyring. The file is named by its path so the key never crosses the API.",
		body:        jsonBody(input(map[string]schema{"new_master_key_file": str("an absolute path on the server's host")}, "new_master_key_file")),
		status:      200, resp: object(map[string]schema{
			"terms":           integer("terms rewrapped"),
			"master_key_file": str("the server's own master key file, now holding the new key; absent when the master key came from the environment"),
		}, "terms"),
	},
}

// forwardAuth describes GET /v1/auth, which ServeHTTP answers before the
// mux (for any method, and under /v1/auth/… too).
var forwardAuthOp = operation{
	id: "forwardAuth", summary: "Forward-auth for reverse proxies",
	description: "Any method answers alike; the body is ignored. For nginx auth_request, Traefik ForwardAuth, Caddy forward_auth " +
		"and Envoy ext_authz. The key comes from Authorization: Bearer or X-API-Key; a missing key is 401 with X-Latchkey-Code MALFORMED. " +
		"Denials carry X-Latchkey-Code. With proxy=nginx, limits answer 403 instead of 429 (nginx turns other statuses into 500). " +
		"X-Latchkey-Cost-<Name>: N headers are named costs, as limits in a verify body.",
	query: []param{
		inQuery("scope", "required scopes, comma-separated (or header X-Latchkey-Scope)", str("")),
		inQuery("resource", "the resource asked for (or header X-Latchkey-Resource)", str("")),
		inQuery("cost", "quota units to consume (default 1)", schema{"type": "integer", "minimum": 0, "maximum": 1_000_000_000}),
		{name: "X-Latchkey-Cost-Tokens", in: "header", description: "an example of X-Latchkey-Cost-<Name>: N, which spends N (0–1000000000) of the on-request rate window <name> (lower-cased); at most 8 such headers", schema: schema{"type": "integer", "minimum": 0, "maximum": 1_000_000_000}},
		inQuery("proxy", "nginx: answer limits with 403", enum("", "nginx")),
		{name: "X-Latchkey-Scope", in: "header", description: "required scopes, comma-separated, when the query names none", schema: str("")},
		{name: "X-Latchkey-Resource", in: "header", description: "the resource asked for, when the query names none", schema: str("")},
	},
	keyed:       true,
	status:      200,
	respHeaders: append([]string{"X-Latchkey-Key-Id", "X-Latchkey-Tenant", "X-Latchkey-Owner", "X-Latchkey-Scopes", "X-Latchkey-Lease-Id"}, rateLimitHeaders...),
	errors:      []string{wire.EInvalid, wire.EUnauthenticated, wire.EForbidden, wire.ERateLimited, wire.EUnavailable},
}

// errorCodes are the error codes op, on route rt, can answer: internal
// everywhere (a bug); for a route that takes a key, unauthenticated,
// forbidden and rate_limited (its limits, the brute-force guard) and
// unavailable (the key is looked up); for a body, invalid and too_large;
// for a query, invalid; for a path parameter, not_found; and op's own.
func errorCodes(rt Route, op operation) []string {
	codes := map[string]bool{wire.EInternal: true}
	if rt.Scope != "" || op.keyed {
		for _, c := range []string{wire.EUnauthenticated, wire.EForbidden, wire.ERateLimited, wire.EUnavailable} {
			codes[c] = true
		}
	}
	if op.body != nil {
		codes[wire.EInvalid], codes[wire.ETooLarge] = true, true
	}
	if len(op.query) > 0 {
		codes[wire.EInvalid] = true
	}
	if strings.Contains(rt.Pattern, "{") {
		codes[wire.ENotFound] = true
	}
	if rt.Scope != "" && servedOnlyWith(rt.Pattern) {
		codes[wire.ENotFound] = true
	}
	for _, c := range op.errors {
		codes[c] = true
	}
	var out []string
	for _, c := range wire.ErrorCodes {
		if codes[c] {
			out = append(out, c)
		}
	}
	return out
}

// servedOnlyWith reports whether a route answers not_found on a server
// without the service behind it (audit, webhooks, secrets, keyring).
func servedOnlyWith(pattern string) bool {
	for _, p := range []string{"/v1/audit", "/v1/security-events", "/v1/reports/", "/v1/webhooks", "/v1/secrets", "/keys/", "/llm-keys", "/v1/keyring"} {
		if strings.HasPrefix(pattern, p) {
			return true
		}
	}
	return strings.HasSuffix(pattern, "/usage")
}

// errorDescriptions say when each error code is answered.
var errorDescriptions = map[string]string{
	wire.EInvalid:         "invalid: malformed input; the message names the field",
	wire.EUnauthenticated: "unauthenticated: no key, or a malformed, unknown, expired, revoked or suspended one",
	wire.EForbidden:       "forbidden: the key is valid but may not do this (scope, address, country, time window, tenant, escalation)",
	wire.ENotFound:        "not_found: no such object in the caller's tenant, or no such route",
	wire.EConflict:        "conflict: the object exists, or the change is not allowed in its state",
	wire.ERateLimited:     "rate_limited: a limit of the key (rate, quota, concurrency) or the brute-force guard",
	wire.ETooLarge:        "too_large: the body is over the limit",
	wire.EUnavailable:     "unavailable: the store does not answer",
	wire.EInternal:        "internal: a bug; the detail is in the server log under the request id",
}

// tag groups a route in the document by the first word of its path.
func tag(pattern string) string {
	switch {
	case pattern == "/keys/{provider}" || pattern == "/llm-keys":
		return "seed"
	case !strings.HasPrefix(pattern, "/v1/"):
		return "operations"
	}
	word, _, _ := strings.Cut(strings.TrimPrefix(pattern, "/v1/"), "/")
	switch word {
	case "apply":
		return "keys"
	case "security-events", "reports":
		return "audit"
	case "identity-providers", "token":
		return "identity"
	case "auth":
		return "verification"
	}
	if pattern == "/v1/keys/verify" {
		return "verification"
	}
	return word
}

// pathParams are the names of a mux pattern's wildcards, in order, and
// its path in OpenAPI's form ({rest...} becomes {rest}).
func pathParams(pattern string) (names []string, path string) {
	segs := strings.Split(pattern, "/")
	for i, s := range segs {
		if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") {
			name := strings.TrimSuffix(strings.TrimSuffix(s[1:len(s)-1], "..."), "$")
			names = append(names, name)
			segs[i] = "{" + name + "}"
		}
	}
	return names, strings.Join(segs, "/")
}

// buildOperation is op as the document's Operation Object for rt.
func buildOperation(rt Route, op operation) schema {
	o := schema{
		"operationId": op.id,
		"summary":     op.summary,
		"tags":        []string{tag(rt.Pattern)},
	}
	desc := op.description
	if rt.Scope != "" {
		desc = strings.TrimSpace("Requires an admin key with scope " + rt.Scope + ". " + desc)
		o["x-latchkey-scope"] = rt.Scope
	}
	if desc != "" {
		o["description"] = desc
	}
	switch {
	case rt.Scope != "":
		o["security"] = []schema{{"bearer": []string{rt.Scope}}, {"apiKey": []string{rt.Scope}}}
	case op.keyed:
		o["security"] = []schema{{"bearer": []string{}}, {"apiKey": []string{}}}
	default:
		o["security"] = []schema{}
	}
	var params []schema
	names, _ := pathParams(rt.Pattern)
	for _, n := range names {
		p := op.path[n]
		p.name, p.in, p.required = n, "path", true
		params = append(params, paramObject(p))
	}
	for _, p := range op.query {
		params = append(params, paramObject(p))
	}
	if len(params) > 0 {
		o["parameters"] = params
	}
	if op.body != nil {
		content := schema{}
		for mt, s := range op.body.content {
			content[mt] = schema{"schema": s}
		}
		o["requestBody"] = schema{"required": !op.body.optional, "content": content}
	}
	responses := schema{}
	ok := schema{"description": http.StatusText(op.status), "headers": headerRefs(append([]string{"X-Request-Id"}, op.respHeaders...))}
	if rt.Scope != "" || op.keyed {
		for k, v := range headerRefs(rateLimitHeaders) {
			ok["headers"].(schema)[k] = v
		}
	}
	switch {
	case op.csv:
		ok["headers"].(schema)["Content-Disposition"] = headerObject("with format=csv: attachment, with the report's file name", str(""))
		ok["content"] = schema{
			"application/json":        schema{"schema": op.resp},
			"text/csv; charset=utf-8": schema{"schema": str("the report's rows, with a header row; lists joined with ;")},
		}
	case op.resp != nil:
		mt := op.respType
		if mt == "" {
			mt = "application/json"
		}
		if mt == "application/x-ndjson" {
			// OpenAPI 3.1 has no schema for a sequence of objects
			// (3.2's itemSchema): the schema is each line's.
			ok["description"] = "OK: one JSON object of the schema per line"
		}
		ok["content"] = schema{mt: schema{"schema": op.resp}}
	}
	responses[strconv.Itoa(op.status)] = ok
	for _, c := range errorCodes(rt, op) {
		responses[strconv.Itoa(wire.HTTPStatus(c))] = schema{"$ref": "#/components/responses/" + c}
	}
	o["responses"] = responses
	return o
}

func paramObject(p param) schema {
	o := schema{"name": p.name, "in": p.in, "schema": p.schema}
	if p.description != "" {
		o["description"] = p.description
	}
	if p.required {
		o["required"] = true
	}
	return o
}

func headerRefs(names []string) schema {
	out := schema{}
	for _, n := range names {
		out[n] = schema{"$ref": "#/components/headers/" + n}
	}
	return out
}

// openAPIDocument builds the document from the route table.
func openAPIDocument() schema {
	paths := schema{}
	add := func(rt Route, op operation) {
		_, p := pathParams(rt.Pattern)
		item, _ := paths[p].(schema)
		if item == nil {
			item = schema{}
			paths[p] = item
		}
		item[strings.ToLower(rt.Method)] = buildOperation(rt, op)
	}
	for _, rt := range Routes() {
		op, ok := operations[rt.Method+" "+rt.Pattern]
		if !ok {
			// TestEveryRouteIsDescribed fails first; a build without
			// the tests still says the route exists.
			op = operation{id: strings.ToLower(rt.Method) + strings.NewReplacer("/", "_", "{", "", "}", "", ".", "_", "-", "_").Replace(rt.Pattern), summary: "Undocumented", status: 200}
		}
		add(rt, op)
	}
	add(Route{Method: "GET", Pattern: "/v1/auth"}, forwardAuthOp)
	rest := forwardAuthOp
	rest.id, rest.summary = "forwardAuthPath", "Forward-auth, with the original path appended (Envoy)"
	rest.path = map[string]param{"path": pathParam("anything: Envoy appends the original request's path to the auth service's prefix; it is ignored", str(""))}
	add(Route{Method: "GET", Pattern: "/v1/auth/{path...}"}, rest)

	responses := schema{}
	for _, c := range wire.ErrorCodes {
		h := []string{"X-Request-Id"}
		switch c {
		case wire.EUnauthenticated:
			h = append(h, "WWW-Authenticate", "X-Latchkey-Code", "X-Latchkey-Reason")
		case wire.EForbidden:
			h = append(h, "X-Latchkey-Code")
		case wire.ERateLimited:
			h = append(append(h, "Retry-After", "X-Latchkey-Code"), rateLimitHeaders...)
		}
		responses[c] = schema{
			"description": errorDescriptions[c],
			"headers":     headerRefs(h),
			"content": schema{"application/json": schema{"schema": allOf(ref("Error"), object(map[string]schema{
				"error": object(map[string]schema{"code": schema{"const": c}}),
			}))}},
		}
	}
	return schema{
		"openapi":           "3.1.0",
		"jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
		"info": schema{
			"title":       "Latchkey",
			"version":     "v1",
			"description": "API keys: issue, verify, limit and audit them, and broker secrets. Conventions, limits and life-cycle rules: docs/api.md.",
		},
		"servers": []schema{{"url": "/"}},
		"tags": []schema{
			{"name": "verification", "description": "Checking keys: verify and forward-auth"},
			{"name": "keys", "description": "Keys and their life cycle"},
			{"name": "leases", "description": "Concurrency leases"},
			{"name": "leaks", "description": "Reports of leaked keys"},
			{"name": "audit", "description": "Audit log, security events and reports"},
			{"name": "policies", "description": "Policies: named settings keys share"},
			{"name": "owners", "description": "Owners: limits all of an owner's keys share"},
			{"name": "identity", "description": "Workload identity: trusted token issuers and the token exchange"},
			{"name": "webhooks", "description": "Webhooks and their deliveries"},
			{"name": "tenants", "description": "Tenants (operator only)"},
			{"name": "secrets", "description": "Brokered secrets"},
			{"name": "seed", "description": "The seed services' secret routes"},
			{"name": "keyring", "description": "The keyring that seals secrets (operator only)"},
			{"name": "operations", "description": "Health, readiness, metrics and this document"},
		},
		"paths": paths,
		"components": schema{
			"securitySchemes": schema{
				"bearer": schema{"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <key>. An admin route lists the scope the key must hold."},
				"apiKey": schema{"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "The key in X-API-Key, taken where Authorization is."},
			},
			"headers":   headers,
			"responses": responses,
			"schemas":   schemas(),
		},
	}
}

func headerObject(description string, s schema) schema {
	return schema{"description": description, "schema": s}
}

var headers = schema{
	"X-Request-Id": schema{"description": "the request's id, as logged: the caller's own X-Request-Id when it is short and plain, else the server's",
		"schema": str(""), "required": true},
	"WWW-Authenticate":      headerObject("Bearer", str("")),
	"X-Latchkey-Code":       headerObject("the verify code that refused the key", enum("", wire.VerifyCodes[1:]...)),
	"X-Latchkey-Reason":     headerObject("POST /v1/token: the check that refused the identity token", enum("", identityReasons...)),
	"Retry-After":           headerObject("seconds to wait before trying again (not for a spent credit balance, which never refills)", integer("")),
	"X-Latchkey-Key-Id":     headerObject("the key's id", str("")),
	"X-Latchkey-Tenant":     headerObject("the key's tenant", str("")),
	"X-Latchkey-Owner":      headerObject("the key's owner", str("")),
	"X-Latchkey-Scopes":     headerObject("the key's scopes, comma-separated", str("")),
	"X-Latchkey-Lease-Id":   headerObject("the concurrency lease this request holds, for POST /v1/leases/{id}/release", str("")),
	"RateLimit-Limit":       headerObject("the tightest limit of the key: its rate window, else its quota", integer("")),
	"RateLimit-Remaining":   headerObject("what is left of it", integer("")),
	"RateLimit-Reset":       headerObject("seconds until it refills (none for a credit balance, which never refills)", integer("")),
	"X-RateLimit-Limit":     headerObject("RateLimit-Limit, under its older name", integer("")),
	"X-RateLimit-Remaining": headerObject("RateLimit-Remaining, under its older name", integer("")),
	"X-RateLimit-Reset":     headerObject("the Unix time the limit refills (none for a credit balance)", integer("")),
}

// rateLimitHeaders are sent with any answer to a key with limits.
var rateLimitHeaders = []string{"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"}

// policyProps are the fields of a policy's create (with name) or update
// body.
func policyProps(create bool) map[string]schema {
	duration := ref("Duration")
	p := map[string]schema{
		"description":    str("up to 500 characters"),
		"scopes":         schema{"type": "array", "items": str("resource:action or *; presets expand")},
		"resources":      stringList(),
		"ip_allow":       schema{"type": "array", "items": str("an address or CIDR range")},
		"countries":      schema{"type": "array", "items": str("ISO 3166-1 alpha-2")},
		"time_windows":   array(ref("TimeWindow")),
		"ratelimits":     array(ref("RateLimit")),
		"quota":          schema{"oneOf": []any{ref("Quota"), schema{"type": "null"}}, "description": "each key's quota when it has none; null removes it"},
		"uses":           schema{"type": "integer", "minimum": 1, "description": "shorthand for quota {remaining: N}"},
		"max_concurrent": schema{"type": "integer", "minimum": 0, "maximum": latchkey.MaxConcurrent},
		"expires_after":  allOf(duration, schema{"description": "each key ends this long after its creation; 0s: no expiry from the policy"}),
		"condition":      str(`a CEL expression over the request every key of the policy must satisfy besides its own (docs/limits.md, "Conditions"); "" removes it`),
	}
	if create {
		p["name"] = str("1–63 of a-z, 0-9, _ and -, starting with a letter or digit")
	}
	return p
}

// schemas are the components every operation refers to.
func schemas() schema {
	duration := ref("Duration")
	settings := func() map[string]schema {
		return map[string]schema{
			"name":           str("up to 200 characters"),
			"owner":          str(""),
			"environment":    str("[a-z0-9_-], up to 32"),
			"scopes":         schema{"type": "array", "items": str("resource:action or *; presets read, execute, manage and full expand when stored")},
			"resources":      schema{"type": "array", "items": str("kind:name, a prefix glob such as agent:nlp-*, or *; none: the whole tenant")},
			"meta":           schema{"type": "object", "description": "any JSON object, up to 16 KiB"},
			"ip_allow":       schema{"type": "array", "items": str("an address or CIDR range, without an IPv6 zone")},
			"expires_at":     schema{"type": []string{"string", "null"}, "format": "date-time", "description": "RFC 3339; null: no expiry"},
			"expires_in":     duration,
			"countries":      schema{"type": "array", "items": str("ISO 3166-1 alpha-2")},
			"time_windows":   array(ref("TimeWindow")),
			"ratelimits":     array(ref("RateLimit")),
			"quota":          schema{"oneOf": []any{ref("Quota"), schema{"type": "null"}}, "description": "null removes the quota"},
			"max_concurrent": schema{"type": "integer", "minimum": 0, "maximum": latchkey.MaxConcurrent},
			"lease_ttl":      duration,
			"uses":           schema{"type": "integer", "minimum": 1, "description": "shorthand for quota {remaining: N}; not with quota"},
			"policy":         str(`the tenant's policy (or a preset) the key takes its settings from, narrowed by its own; "" removes it`),
			"condition":      str(`a CEL expression over the request that must hold (docs/limits.md, "Conditions"); checked when saved; "" removes it`),
		}
	}
	create := settings()
	create["prefix"] = str("the key's prefix")
	keyProps := map[string]schema{
		"id":              str("key_…"),
		"tenant":          str(""),
		"name":            str(""),
		"owner":           str(""),
		"environment":     str(""),
		"prefix":          str(""),
		"start":           str("the key's first characters, to recognize it"),
		"scopes":          stringList(),
		"resources":       stringList(),
		"meta":            schema{"type": "object"},
		"ip_allow":        stringList(),
		"countries":       stringList(),
		"time_windows":    array(ref("TimeWindow")),
		"ratelimits":      array(ref("RateLimit")),
		"quota":           ref("Quota"),
		"max_concurrent":  integer("requests in flight at most; absent: unbounded"),
		"lease_ttl":       duration,
		"expires_at":      timestamp(""),
		"state":           enum("the state now: a timed suspension that has ended reads active", "active", "suspended", "revoked", "expired"),
		"state_reason":    str(""),
		"suspended_until": timestamp("absent for a suspension until resumed"),
		"suspended_by":    str("the ancestor whose suspension reached this key"),
		"parent_id":       str(""),
		"rotated_from":    str(""),
		"rotated_to":      str("the successor of a rotated key"),
		"grace_until":     timestamp(""),
		"created_at":      timestamp(""),
		"updated_at":      timestamp(""),
		"revoked_at":      timestamp(""),
		"last_used_at":    timestamp("the last verification that found the key, written at most once a minute"),
		"policy":          str("the policy the key names"),
		"condition":       str("the key's CEL condition over the request; absent for none"),
	}
	limit := object(map[string]schema{
		"limit":     integer(""),
		"remaining": integer(""),
		"reset_at":  timestamp("absent for a credit balance, which never refills"),
	}, "limit", "remaining")
	agentKey := input(map[string]schema{
		"generate":          boolean("declare a key for the agent"),
		"name":              str("default: the agent's name"),
		"scopes":            stringList(),
		"resources":         stringList(),
		"expires_after":     duration,
		"environment":       str(""),
		"owner":             str(""),
		"meta":              schema{"type": "object"},
		"auto_rotate":       boolean("needs rotation_interval"),
		"rotation_interval": duration,
		"ratelimits":        array(ref("RateLimit")),
		"quota":             ref("Quota"),
		"uses":              integer("shorthand for quota {remaining: N}"),
		"max_concurrent":    integer(""),
		"ip_allow":          stringList(),
		"countries":         stringList(),
		"time_windows":      array(ref("TimeWindow")),
	})
	agents := array(input(map[string]schema{
		"name":          str(""),
		"description":   str(""),
		"agent_type_id": str(""),
		"api_key":       agentKey,
	}, "name"))
	reportHeader := map[string]schema{
		"report":       str(""),
		"generated_at": timestamp(""),
		"tenant":       str(""),
		"from":         timestamp(""),
		"to":           timestamp(""),
	}
	report := func(props map[string]schema, required ...string) schema {
		for k, v := range reportHeader {
			props[k] = v
		}
		return object(props, append(required, "report", "generated_at", "tenant", "from", "to")...)
	}
	counts := map[string]schema{
		"total":  integer(""),
		"valid":  integer(""),
		"denied": integer(""),
		"codes":  countMap("verify code → count"),
	}
	withCounts := func(props map[string]schema) map[string]schema {
		for k, v := range counts {
			props[k] = v
		}
		return props
	}

	return schema{
		"Error": object(map[string]schema{
			"error": object(map[string]schema{
				"code":       enum("", wire.ErrorCodes[:]...),
				"message":    str("safe to show the caller"),
				"request_id": str("the id the server logged the request under"),
			}, "code", "message", "request_id"),
		}, "error"),
		"Duration": schema{"type": "string", "description": `a duration such as 90s, 15m, 6h, 30d, 2w, 1y or 1d12h (a day is 24h, a year 365 days; at most 100 years); "0s" is no time at all`},
		"RateLimit": object(map[string]schema{
			"name":   str("default: the window"),
			"limit":  schema{"type": "integer", "minimum": 1},
			"window": duration,
			"apply":  enum(`absent: every request counts as one; on_request: only a verification that names the window in limits counts, by its cost`, "on_request"),
		}, "limit", "window"),
		"Quota": schema{
			"type":                 "object",
			"description":          "a periodic allowance (limit per period) or a credit balance (remaining)",
			"additionalProperties": false,
			"properties": map[string]schema{
				"limit":     integer(""),
				"period":    str(`a duration counted from the key's creation, or "daily" or "monthly" (UTC)`),
				"remaining": integer("a credit balance; never refills"),
			},
		},
		"TimeWindow": object(map[string]schema{
			"days":  array(enum("", "mon", "tue", "wed", "thu", "fri", "sat", "sun")),
			"start": str("HH:MM"),
			"end":   str("HH:MM; before start runs past midnight"),
			"tz":    str("an IANA zone (default UTC)"),
		}, "start", "end"),
		"Limit":         limit,
		"Key":           object(keyProps, "id", "tenant", "name", "owner", "environment", "prefix", "start", "scopes", "resources", "meta", "ip_allow", "countries", "time_windows", "ratelimits", "state", "created_at", "updated_at"),
		"KeyWithSecret": allOf(ref("Key"), object(map[string]schema{"key": str("the plaintext, shown this once")}, "key")),
		"KeyWithQuota":  allOf(ref("Key"), object(map[string]schema{"quota_usage": allOf(ref("Limit"), schema{"description": "the quota as the next verification would find it"})})),
		"ExportedKey":   allOf(ref("Key"), object(map[string]schema{"hash": str("lower-case hex SHA-256 of the key")}, "hash")),
		"CreateKeyRequest": func() schema {
			s := input(create, "name")
			s["description"] = "on derive, name is optional and the parent's settings are the defaults"
			delete(s, "required")
			return s
		}(),
		"UpdateKeyRequest": input(settings()),
		"RotateRequest": input(map[string]schema{
			"grace_period": allOf(duration, schema{"description": "how long the old key still works (default 1h)"}),
			"expires_in":   allOf(duration, schema{"description": "the successor's lifetime (default: the old key's, counted from now)"}),
		}),
		"SuspendRequest": input(map[string]schema{
			"duration": allOf(duration, schema{"description": "positive; absent: until resumed"}),
			"reason":   str(""),
		}),
		"RevokeRequest": input(map[string]schema{"reason": str("")}),
		"RotationRequest": input(map[string]schema{
			"interval":     allOf(duration, schema{"description": "time between rotations, at least 1h"}),
			"grace_period": allOf(duration, schema{"description": "how long a rotated key keeps working, 1m to the interval; default 24h"}),
			"secret_name":  str("the secret each successor is sealed as; default key-<the key's name>"),
			"reader":       str("the key id that alone may read the secret; it needs secrets:read and the secret's resource"),
		}, "interval"),
		"Rotation": object(map[string]schema{
			"id":           str("rot_…; stays across rotations"),
			"key_id":       str("the key the next rotation rotates"),
			"interval":     duration,
			"grace_period": duration,
			"secret_name":  str(""),
			"reader":       str("empty: any key the secret's scopes and resources allow"),
			"next_at":      timestamp("when the next rotation is due"),
			"created_at":   timestamp(""),
			"updated_at":   timestamp(""),
		}, "id", "key_id", "interval", "grace_period", "secret_name", "reader", "next_at", "created_at", "updated_at"),
		"VerifyRequest": input(map[string]schema{
			"key":      str("the key to check"),
			"scopes":   schema{"type": "array", "items": str(""), "maxItems": maxVerifyScopes, "description": "every one is required"},
			"resource": str("the resource asked for"),
			"cost":     schema{"type": "integer", "minimum": 0, "maximum": 1_000_000_000, "description": "quota units to consume (default 1)"},
			"ip":       str("the address of the caller the service is serving, checked against the key's ip_allow; default the request's"),
			"limits": schema{"type": "array", "maxItems": latchkey.MaxNamedCosts, "description": "named costs: what the request spends of the key's and its owner's on_request rate windows; names no window has are ignored",
				"items": input(map[string]schema{
					"name": str("a rate window's name, 1–64 bytes; each at most once"),
					"cost": schema{"type": "integer", "minimum": 0, "maximum": 1_000_000_000},
				}, "name", "cost")},
			"request": schema{"oneOf": []any{input(map[string]schema{
				"method":  str("the request's method, up to 32 bytes"),
				"path":    str("its path, up to 8 KiB"),
				"host":    str("its host, up to 255 bytes"),
				"headers": schema{"type": "object", "maxProperties": 64, "additionalProperties": str("the first value"), "description": "by name (any case)"},
			}), schema{"type": "null"}}, "description": "the request the key is presented for, which a key's condition reads (docs/limits.md, \"Conditions\"); absent: the condition sees empty strings"},
		}),
		"VerifyResponse": object(map[string]schema{
			"valid":       boolean(""),
			"code":        enum("VALID, or the first check the key failed", wire.VerifyCodes[:]...),
			"key_id":      str("absent for MALFORMED and NOT_FOUND"),
			"tenant":      str(""),
			"owner":       str(""),
			"name":        str(""),
			"environment": str(""),
			"scopes":      stringList(),
			"resources":   stringList(),
			"meta":        schema{"type": "object"},
			"expires_at":  timestamp(""),
			"missing":     str("the first required scope, or the resource, the key lacks"),
			"ratelimit":   allOf(ref("Limit"), schema{"description": "the tightest rate window, after the decision"}),
			"quota":       allOf(ref("Limit"), schema{"description": "the quota, after the decision"}),
			"lease_id":    str("the concurrency lease this verification holds"),
			"retry_after": integer("seconds, on a denial by a limit"),
			"limited_by":  enum("owner: the owner's shared limits, not the key's own, denied the request", "owner"),
		}, "valid", "code"),
		"Policy": object(map[string]schema{
			"tenant":         str(""),
			"name":           str(""),
			"description":    str(""),
			"scopes":         stringList(),
			"resources":      stringList(),
			"ip_allow":       stringList(),
			"countries":      stringList(),
			"time_windows":   array(ref("TimeWindow")),
			"ratelimits":     array(ref("RateLimit")),
			"quota":          ref("Quota"),
			"max_concurrent": integer(""),
			"expires_after":  allOf(duration, schema{"description": "each key ends this long after its creation"}),
			"condition":      str("the CEL condition every key of the policy must satisfy; absent for none"),
			"created_at":     timestamp(""),
			"updated_at":     timestamp(""),
			"preset":         boolean("a built-in policy the tenant has not replaced; not stored"),
		}, "tenant", "name", "scopes", "resources", "ip_allow", "countries", "time_windows", "ratelimits"),
		"CreatePolicyRequest": input(policyProps(true), "name"),
		"UpdatePolicyRequest": input(policyProps(false)),
		"Owner": object(map[string]schema{
			"tenant":     str(""),
			"id":         str(""),
			"ratelimits": array(ref("RateLimit")),
			"quota":      ref("Quota"),
			"meta":       schema{"type": []string{"object", "null"}},
			"created_at": timestamp(""),
			"updated_at": timestamp(""),
		}, "tenant", "id", "ratelimits", "meta"),
		"PutOwnerRequest": input(map[string]schema{
			"ratelimits": array(ref("RateLimit")),
			"quota":      allOf(ref("Quota"), schema{"description": "a periodic allowance the owner's keys share"}),
			"meta":       schema{"type": "object", "description": "any JSON object"},
		}),
		"OwnerWithUsage": allOf(ref("Owner"), object(map[string]schema{"usage": ref("OwnerUsageReport")})),
		"OwnerUsageReport": object(map[string]schema{
			"owner":  str(""),
			"bucket": enum("", "minute", "hour", "day"),
			"from":   timestamp(""),
			"to":     timestamp(""),
			"totals": countMap("verify code → count"),
			"series": array(object(map[string]schema{"start": timestamp(""), "counts": countMap("")}, "start", "counts")),
			"keys": array(object(map[string]schema{
				"key_id":       str(""),
				"name":         str(""),
				"totals":       countMap(""),
				"last_used_at": timestamp(""),
			}, "key_id", "name", "totals")),
			"truncated": boolean("the owner has more than 1000 keys; the first created are counted"),
		}, "owner", "bucket", "from", "to", "totals", "series", "keys"),
		"Tenant": object(map[string]schema{
			"id":         str("1–63 of a-z, 0-9, _ and -, starting with a letter or digit"),
			"name":       str(""),
			"created_at": timestamp(""),
		}, "id", "name", "created_at"),
		"CreateTenantRequest": input(map[string]schema{"id": str("1–63 of a-z, 0-9, _ and -, starting with a letter or digit"), "name": str("")}, "id"),
		"CreatedTenant": object(map[string]schema{
			"tenant": ref("Tenant"),
			"key_id": str("the tenant's first admin key"),
			"key":    str("its plaintext, shown this once"),
		}, "tenant", "key_id", "key"),
		"Webhook": object(map[string]schema{
			"id":         str("whk_…"),
			"tenant":     str(""),
			"url":        str(""),
			"events":     schema{"type": "array", "items": enum("", latchkey.EventTypes...), "description": "empty: every type"},
			"created_at": timestamp(""),
		}, "id", "tenant", "url", "events", "created_at"),
		"CreateWebhookRequest": input(map[string]schema{
			"url":    str("where events are delivered"),
			"events": schema{"type": "array", "items": enum("", latchkey.EventTypes...), "description": "none: every type"},
		}, "url"),
		"CreatedWebhook": allOf(ref("Webhook"), object(map[string]schema{"secret": str("whsec_<base64>, the signing secret, shown this once")}, "secret")),
		"Delivery": object(map[string]schema{
			"id":               str("dlv_…; the webhook-id header of every attempt"),
			"webhook_id":       str(""),
			"event_id":         str(""),
			"tenant":           str(""),
			"event_type":       str(""),
			"status":           enum("", latchkey.DeliveryPending, latchkey.DeliveryDelivered, latchkey.DeliveryFailed),
			"attempts":         integer(""),
			"next_attempt_at":  timestamp("while pending"),
			"last_status_code": integer(""),
			"last_error":       enum("why the last attempt failed", latchkey.DeliveryFailureClasses...),
			"created_at":       timestamp(""),
			"delivered_at":     timestamp(""),
		}, "id", "webhook_id", "event_id", "tenant", "event_type", "status", "attempts", "created_at"),
		"AuditEvent": object(map[string]schema{
			"seq":           integer("counts from 1 in each tenant"),
			"at":            timestamp(""),
			"tenant":        str(""),
			"actor_key_id":  str(""),
			"action":        str("key.created, key.revoked, …"),
			"target_key_id": str(""),
			"ip":            str(""),
			"user_agent":    str(""),
			"result":        str("success, or why it was refused"),
			"details":       stringMap(""),
			"prev_hash":     str("the hash of the event before; 64 zeros for the first"),
			"hash":          str("SHA-256 over the event's canonical encoding"),
		}, "seq", "at", "tenant", "action", "result", "prev_hash", "hash"),
		"AuditVerdict": object(map[string]schema{
			"ok":         boolean(""),
			"events":     integer("events checked"),
			"broken_seq": integer("the first event that does not check"),
			"finding":    enum("what is wrong", latchkey.AuditFindings...),
			"reason":     str(""),
			"signed":     boolean("whether a valid checkpoint was there to check against"),
		}, "ok", "events", "signed"),
		"SecurityEvent": object(map[string]schema{
			"id":       str("evt_…"),
			"at":       timestamp(""),
			"tenant":   str(""),
			"key_id":   str(""),
			"kind":     str(strings.Join(latchkey.AnomalyKinds, ", ")),
			"severity": enum("", latchkey.SeverityLow, latchkey.SeverityMedium, latchkey.SeverityHigh),
			"network":  str("the client network involved (CIDR)"),
			"summary":  str(""),
			"details":  stringMap(""),
		}, "id", "at", "tenant", "kind", "severity", "summary"),
		"UsageReport": object(map[string]schema{
			"key_id": str(""),
			"bucket": enum("", "minute", "hour", "day"),
			"from":   timestamp(""),
			"to":     timestamp(""),
			"totals": countMap("verify code → count"),
			"series": array(object(map[string]schema{"start": timestamp(""), "counts": countMap("")}, "start", "counts")),
			"peak_hours": array(object(map[string]schema{
				"hour":  schema{"type": "integer", "minimum": 0, "maximum": 23},
				"count": integer(""),
			}, "hour", "count")),
			"networks":     array(object(map[string]schema{"network": str(""), "count": integer("")}, "network", "count")),
			"last_used_at": timestamp(""),
		}, "key_id", "bucket", "from", "to", "totals", "series", "peak_hours", "networks"),
		"AccessReport": report(map[string]schema{
			"keys": array(object(map[string]schema{
				"id": str(""), "name": str(""), "owner": str(""), "environment": str(""),
				"state": str(""), "scopes": stringList(), "resources": stringList(), "parent_id": str(""),
				"created_at": timestamp(""), "expires_at": timestamp(""), "last_used_at": timestamp(""),
				"ip_allow": stringList(),
			}, "id", "name", "owner", "environment", "state", "scopes", "resources", "created_at", "ip_allow")),
			"owners": array(object(map[string]schema{
				"owner": str(""), "keys": integer(""), "active_keys": integer(""), "scopes": stringList(),
			}, "owner", "keys", "active_keys", "scopes")),
		}, "keys", "owners"),
		"TenantUsageReport": report(map[string]schema{
			"grain":  enum("the resolution the counts were read at", "minute", "hour", "day"),
			"totals": object(counts, "total", "valid", "denied", "codes"),
			"keys": array(object(withCounts(map[string]schema{
				"key_id": str(""), "name": str(""), "owner": str(""), "environment": str(""),
				"first_seen": timestamp(""), "last_seen": timestamp(""), "networks": integer(""),
			}), "key_id", "name", "owner", "environment", "total", "valid", "denied", "codes", "networks")),
			"owners": array(object(withCounts(map[string]schema{"owner": str(""), "keys": integer("")}),
				"owner", "keys", "total", "valid", "denied", "codes")),
		}, "grain", "totals", "keys", "owners"),
		"SecurityReport": report(map[string]schema{
			"summary": object(map[string]schema{
				"anomalies": integer(""), "responded": integer(""), "unresponded": integer(""),
				"by_kind": countMap(""), "by_severity": countMap(""),
			}, "anomalies", "responded", "unresponded", "by_kind", "by_severity"),
			"anomalies": array(object(map[string]schema{
				"event_id": str(""), "at": timestamp(""), "kind": str(""), "severity": str(""),
				"key_id": str(""), "key_name": str(""), "owner": str(""), "network": str(""),
				"summary": str(""), "details": stringMap(""),
				"responses": array(object(map[string]schema{
					"seq": integer(""), "at": timestamp(""), "action": str(""),
					"actor_key_id": str(""), "via": str(""), "reason": str(""),
				}, "seq", "at", "action")),
				"first_response_at":       timestamp(""),
				"time_to_respond":         duration,
				"time_to_respond_seconds": schema{"type": "number"},
			}, "event_id", "at", "kind", "severity", "summary", "details", "responses")),
		}, "summary", "anomalies"),
		"Secret": object(map[string]schema{
			"name":       str(""),
			"value":      str("only when a value is read"),
			"version":    integer(""),
			"expires_in": integer("seconds clients may cache the value"),
			"meta":       stringMap(""),
			"created_at": timestamp(""),
			"created_by": str("the key that wrote the version"),
		}, "name", "version", "expires_in", "meta", "created_at"),
		"SecretInfo": object(map[string]schema{
			"name":       str(""),
			"version":    integer("the newest version"),
			"versions":   integer("how many are kept"),
			"expires_in": integer(""),
			"meta":       stringMap(""),
			"created_at": timestamp(""),
			"updated_at": timestamp(""),
		}, "name", "version", "versions", "expires_in", "meta", "created_at", "updated_at"),
		"PutSecretRequest": exactlyOne(input(map[string]schema{
			"value":      str("the value; or give source instead"),
			"source":     str("instead of a value, where the server reads it: env:NAME, file:/path or exec:/program arg…, within --secret-source-allow (403 forbidden outside it)"),
			"refresh":    str("with source: how long a value read from it is used, a duration such as \"5m\" (default 1m)"),
			"expires_in": schema{"type": "integer", "minimum": 0, "description": "seconds clients may cache the value"},
			"meta":       stringMap(""),
		}), "value", "source"),
		"KeyringStatus": object(map[string]schema{
			"active_term": integer("the term new values are sealed with"),
			"terms":       array(object(map[string]schema{"term": integer(""), "created_at": timestamp("")}, "term", "created_at")),
		}, "active_term", "terms"),
		"Readiness": object(map[string]schema{
			"status":  enum("", "ready", "degraded"),
			"reasons": array(object(map[string]schema{"code": str(""), "message": str("")}, "code", "message")),
		}, "status"),
		"Manifest": schema{
			"type":                 "object",
			"additionalProperties": false,
			"description":          "an app_manifest.yml; agents sit at the top or in app",
			"properties": map[string]schema{
				"app": input(map[string]schema{
					"name": str(""), "version": str(""), "description": str(""), "agents": agents,
				}, "name"),
				"agents": agents,
			},
			"required": []string{"app"},
		},
		"ApplyResult": object(map[string]schema{
			"plan": array(object(map[string]schema{
				"action":     enum("", "create", "update", "unchanged", "revoke"),
				"agent":      str(""),
				"key_name":   str(""),
				"key_id":     str("absent for a key not created yet"),
				"changes":    stringList(),
				"source":     str("where the key is declared, FILE:LINE"),
				"error":      str("why the step failed"),
				"error_code": enum("", wire.ErrorCodes[:]...),
			}, "action", "agent", "key_name")),
			"keys": array(object(map[string]schema{
				"agent": str(""), "key_name": str(""), "key_id": str(""), "key": str("the plaintext, shown this once"),
			}, "agent", "key_name", "key_id", "key")),
		}, "plan", "keys"),
		"ImportResult": object(map[string]schema{
			"imported": integer(""),
			"skipped":  integer("already stored, or repeated in the body"),
			"invalid":  integer(""),
			"errors": array(object(map[string]schema{
				"line":  integer("from 1; for env, the pair's position in API_KEYS"),
				"error": str("never shows the key"),
			}, "line", "error")),
		}, "imported", "skipped", "invalid", "errors"),
		"BatchRequest": exactlyOne(input(map[string]schema{
			"op":  enum("", "revoke", "suspend", "resume", "rotate", "set_policy"),
			"ids": schema{"type": "array", "items": str("key_…"), "description": "the keys, in the order of the results; or filter"},
			"filter": input(map[string]schema{
				"owner":       str(""),
				"environment": str(""),
				"state":       enum("the state now; without it, revoked keys are left out", "active", "suspended", "revoked", "expired"),
				"resource":    str("the keys whose resources cover it, as in GET /v1/keys"),
				"policy":      str("the keys that name this policy"),
				"all":         boolean("every key of the tenant; with no other field"),
			}),
			"dry_run":      boolean("answer what the batch selects and change nothing"),
			"reason":       str("revoke and suspend"),
			"duration":     allOf(duration, schema{"description": "suspend: positive; absent: until resumed"}),
			"grace_period": allOf(duration, schema{"description": "rotate: default 1h; 0s ends the old keys at once"}),
			"policy":       str(`set_policy (required there): the policy each key names from now on; "" removes it`),
		}, "op"), "ids", "filter"),
		"BatchResult": object(map[string]schema{
			"matched": integer("the keys found"),
			"results": array(object(map[string]schema{
				"id":           str(""),
				"ok":           boolean(""),
				"error":        str("why the key was not changed"),
				"error_code":   enum("", wire.ErrorCodes[:]...),
				"successor_id": str("a rotation's new key"),
				"key":          str("a rotation's new key's plaintext, shown this once"),
			}, "id", "ok")),
		}, "matched", "results"),
	}
}

// openAPI holds the document, built on first use. It is not a sync.OnceValue
// in a variable's initializer: the document is built from the route table,
// which refers to the handler that serves it.
var openAPI struct {
	once sync.Once
	json []byte
}

// openAPIJSON is the document as served: indented, with object keys
// sorted (encoding/json sorts map keys), and <, > and & as they are.
func openAPIJSON() []byte {
	openAPI.once.Do(func() {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(openAPIDocument()); err != nil {
			panic("httpapi: the OpenAPI document does not encode: " + err.Error())
		}
		openAPI.json = b.Bytes()
	})
	return openAPI.json
}

// serveOpenAPI answers GET /openapi.json.
func (s *Server) serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(openAPIJSON()) // the client went away; nothing to do
}
