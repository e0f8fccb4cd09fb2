package main

// `latchkey idp`: a tenant's trusted workload identity token issuers
// (docs/identity.md), and the identity token exchange `latchkey exec
// --identity-token` uses.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/client"
	"github.com/latchkeyhq/latchkey/wire"
)

const idpUsage = `Usage: latchkey idp <command> [flags]

Commands:
  add NAME [flags]   trust an identity token issuer: its tokens then buy short-lived keys
  list               list the tenant's identity providers
  get NAME           one identity provider
  delete NAME        stop trusting an identity provider

Flags of add: --issuer URL (the tokens' iss), --jwks-url URL or --jwks-file
FILE (the issuer's public keys), --audience A, --algorithms RS256,ES256,
--claim NAME=PATTERN (repeatable; '*' matches any run of characters, e.g.
--claim sub=repo:acme/api:ref:refs/heads/main), and the key a token buys:
--key-name N, --scopes a,b, --resources r, --ttl 15m (at most 24h).

A workload exchanges its token with 'latchkey exec --identity-token FILE
--tenant T --provider NAME -- CMD' or POST /v1/token. The commands need a
key with keys:read or keys:write. Every command takes --server URL, --key
KEY, --json and --timeout.
`

var idpCommands = map[string]func(context.Context, *env, []string) error{
	"add":    idpAdd,
	"list":   idpList,
	"get":    idpGet,
	"delete": idpDelete,
}

// runIdp runs `latchkey idp …`.
func runIdp(ctx context.Context, e *env, args []string) error {
	return dispatch(ctx, e, "idp", idpUsage, idpCommands, args)
}

// idpProvider is an identity provider as the API shows it.
type idpProvider struct {
	Tenant      string            `json:"tenant,omitempty"`
	Name        string            `json:"name"`
	Issuer      string            `json:"issuer"`
	JWKSURL     string            `json:"jwks_url,omitempty"`
	JWKS        json.RawMessage   `json:"jwks,omitempty"`
	Audience    string            `json:"audience"`
	Algorithms  []string          `json:"algorithms,omitempty"`
	Claims      map[string]string `json:"claims"`
	KeyTemplate struct {
		Name      string   `json:"name"`
		Scopes    []string `json:"scopes"`
		Resources []string `json:"resources"`
		TTL       string   `json:"ttl,omitempty"`
	} `json:"key_template"`
	CreatedAt string `json:"created_at,omitempty"`
}

func idpAdd(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "idp add", "NAME --issuer URL (--jwks-url URL | --jwks-file FILE) --audience A --claim NAME=PATTERN… [flags]")
	var p idpProvider
	var jwksFile, ttl string
	var algs, scopes, resources listFlag
	var claims repeatedFlag
	c.fs.StringVar(&p.Issuer, "issuer", "", "the issuer, exactly as the tokens' iss says it")
	c.fs.StringVar(&p.JWKSURL, "jwks-url", "", "where the issuer publishes its public keys (https)")
	c.fs.StringVar(&jwksFile, "jwks-file", "", "a file holding the issuer's public keys (a JWKS), sent inline instead of --jwks-url")
	c.fs.StringVar(&p.Audience, "audience", "", "the audience the tokens must be for (their aud)")
	c.fs.Var(&algs, "algorithms", "signature algorithms accepted, comma-separated (default RS256,ES256; asymmetric only)")
	c.fs.Var(&claims, "claim", "NAME=PATTERN a claim must match, '*' any run of characters (repeatable; at least one)")
	c.fs.StringVar(&p.KeyTemplate.Name, "key-name", "", "the name of the keys the tokens buy")
	c.fs.Var(&scopes, "scopes", "the keys' scopes, comma-separated or repeated")
	c.fs.Var(&resources, "resources", "the keys' resources, comma-separated or repeated")
	c.fs.StringVar(&ttl, "ttl", "", "how long a bought key lives, e.g. 15m (default 1h, at most 24h)")
	pos, err := c.parse(args, "NAME")
	if err != nil {
		return err
	}
	p.Name = pos[0]
	if p.KeyTemplate.Name == "" {
		p.KeyTemplate.Name = p.Name
	}
	p.Algorithms, p.KeyTemplate.Scopes, p.KeyTemplate.Resources, p.KeyTemplate.TTL = algs, nonNil(scopes), nonNil(resources), ttl
	p.Claims = map[string]string{}
	for _, cl := range claims {
		n, pat, ok := strings.Cut(cl, "=")
		if !ok || strings.TrimSpace(n) == "" {
			return latchkey.Errorf(latchkey.EInvalid, "--claim %q: expected NAME=PATTERN, such as sub=repo:acme/*", clipFlag(cl))
		}
		p.Claims[strings.TrimSpace(n)] = pat
	}
	if jwksFile != "" {
		if p.JWKSURL != "" {
			return latchkey.Errorf(latchkey.EInvalid, "give --jwks-url or --jwks-file, not both")
		}
		b, err := os.ReadFile(jwksFile)
		if err != nil {
			return latchkey.Errorf(latchkey.EInvalid, "--jwks-file: %s", readCause(err))
		}
		if !json.Valid(b) {
			return latchkey.Errorf(latchkey.EInvalid, "--jwks-file %s is not JSON", jwksFile)
		}
		p.JWKS = b
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	var got idpProvider
	raw, err := idpCall(ctx, cl, "POST", "/v1/identity-providers", &p, &got)
	if err != nil {
		return err
	}
	if c.client.json {
		return printJSON(e.stdout, raw)
	}
	fmt.Fprintf(e.stdout, "Added identity provider %s\n", got.Name)
	printIdp(e.stdout, &got)
	return nil
}

func idpList(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "idp list", "[flags]")
	if _, err := c.parse(args); err != nil {
		return err
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	var l struct {
		Providers []idpProvider `json:"identity_providers"`
	}
	raw, err := idpCall(ctx, cl, "GET", "/v1/identity-providers", nil, &l)
	if err != nil {
		return err
	}
	if c.client.json {
		return printJSON(e.stdout, raw)
	}
	tw := newTable(e.stdout)
	fmt.Fprintln(tw, "NAME\tISSUER\tAUDIENCE\tCLAIMS\tSCOPES\tTTL")
	for _, p := range l.Providers {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.Issuer, p.Audience, claimRules(p.Claims), orDash(strings.Join(p.KeyTemplate.Scopes, ",")), p.KeyTemplate.TTL)
	}
	return tw.Flush()
}

func idpGet(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "idp get", "NAME")
	pos, err := c.parse(args, "NAME")
	if err != nil {
		return err
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	var p idpProvider
	raw, err := idpCall(ctx, cl, "GET", "/v1/identity-providers/"+url.PathEscape(pos[0]), nil, &p)
	if err != nil {
		return err
	}
	if c.client.json {
		return printJSON(e.stdout, raw)
	}
	printIdp(e.stdout, &p)
	return nil
}

func idpDelete(ctx context.Context, e *env, args []string) error {
	c := newCommand(e, "idp delete", "NAME")
	pos, err := c.parse(args, "NAME")
	if err != nil {
		return err
	}
	cl, err := c.client.newClient(e, true)
	if err != nil {
		return err
	}
	if _, err := idpCall(ctx, cl, "DELETE", "/v1/identity-providers/"+url.PathEscape(pos[0]), nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Deleted identity provider %s; the keys it bought live out their TTL.\n", pos[0])
	return nil
}

func printIdp(w io.Writer, p *idpProvider) {
	tw := newTable(w)
	fmt.Fprintf(tw, "name:\t%s\n", p.Name)
	fmt.Fprintf(tw, "issuer:\t%s\n", p.Issuer)
	if p.JWKSURL != "" {
		fmt.Fprintf(tw, "jwks_url:\t%s\n", p.JWKSURL)
	} else {
		fmt.Fprintf(tw, "jwks:\tinline\n")
	}
	fmt.Fprintf(tw, "audience:\t%s\n", p.Audience)
	fmt.Fprintf(tw, "algorithms:\t%s\n", strings.Join(p.Algorithms, ","))
	fmt.Fprintf(tw, "claims:\t%s\n", claimRules(p.Claims))
	fmt.Fprintf(tw, "key:\t%s, scopes %s, resources %s, ttl %s\n", p.KeyTemplate.Name, orDash(strings.Join(p.KeyTemplate.Scopes, ",")),
		orDash(strings.Join(p.KeyTemplate.Resources, ",")), p.KeyTemplate.TTL)
	if p.CreatedAt != "" {
		fmt.Fprintf(tw, "created:\t%s\n", p.CreatedAt)
	}
	tw.Flush()
}

func claimRules(m map[string]string) string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	for i, n := range names {
		names[i] = n + "=" + m[n]
	}
	return strings.Join(names, " ")
}

// idpCall sends one request of the identity routes with the client's key
// and decodes a 2xx answer into out (nil: none); it returns the raw
// answer for --json. A refusal is the server's code and message.
func idpCall(ctx context.Context, cl *cliClient, method, path string, in, out any) ([]byte, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, cl.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, cl.base+path, body)
	if err != nil {
		return nil, latchkey.Errorf(latchkey.EInvalid, "%s %s: %s", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+cl.key)
	req.Header.Set("User-Agent", "latchkey-cli/"+version)
	res, err := cl.http.Do(req)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, cl.timedOut()
		}
		return nil, latchkey.Errorf(latchkey.EUnavailable, "cannot reach %s: %s (set --server or LATCHKEY_ADDR)", cl.base, readCause(err))
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	if err != nil {
		return nil, latchkey.Errorf(latchkey.EUnavailable, "%s %s: the answer broke off: %s", method, path, readCause(err))
	}
	if res.StatusCode/100 != 2 {
		var eb wire.ErrorBody
		if json.Unmarshal(raw, &eb) == nil && eb.Error.Code != "" && wire.KnownCode(eb.Error.Code) {
			msg := eb.Error.Message
			if eb.Error.RequestID != "" {
				msg += " (request_id " + eb.Error.RequestID + ")"
			}
			return nil, &refusedError{&latchkey.Error{Code: eb.Error.Code, Message: msg}}
		}
		return nil, latchkey.Errorf(latchkey.EInternal, "%s %s answered %s (is %s a Latchkey server?)", method, path, res.Status, cl.base)
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return nil, latchkey.Errorf(latchkey.EInternal, "%s %s: the answer is not the API's (is %s a Latchkey server?)", method, path, cl.base)
		}
	}
	return raw, nil
}

// identityFlags are exec's flags for buying its key with an identity
// token instead of holding one.
type identityFlags struct {
	tokenFile, tenant, provider string
}

func addIdentityFlags(c *command) *identityFlags {
	f := &identityFlags{}
	c.fs.StringVar(&f.tokenFile, "identity-token", "", "a file holding the workload's identity token (a JWT); it is exchanged for a short-lived key first, used instead of --key")
	c.fs.StringVar(&f.tenant, "tenant", "", "with --identity-token: the tenant whose identity provider is named")
	c.fs.StringVar(&f.provider, "provider", "", "with --identity-token: the identity provider (latchkey idp list)")
	return f
}

// client is exec's connection to the server: with --identity-token, one
// whose key the token bought (POST /v1/token); else the usual one, with
// --key or LATCHKEY_KEY.
func (f *identityFlags) client(ctx context.Context, e *env, c *command) (*cliClient, error) {
	if f.tokenFile == "" {
		if f.tenant != "" || f.provider != "" {
			return nil, latchkey.Errorf(latchkey.EInvalid, "--tenant and --provider go with --identity-token")
		}
		return c.client.newClient(e, true)
	}
	if f.tenant == "" || f.provider == "" {
		return nil, latchkey.Errorf(latchkey.EInvalid, "--identity-token needs --tenant and --provider")
	}
	b, err := os.ReadFile(f.tokenFile)
	if err != nil {
		return nil, latchkey.Errorf(latchkey.EInvalid, "--identity-token: %s", readCause(err))
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return nil, latchkey.Errorf(latchkey.EInvalid, "--identity-token %s is empty", f.tokenFile)
	}
	cl, err := c.client.newClient(e, false)
	if err != nil {
		return nil, err
	}
	ex, err := client.ExchangeTokenWith(ctx, cl.http, cl.base, f.tenant, f.provider, token)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// The server's message names the failed check.
		return nil, latchkey.Errorf(client.ErrorCode(err), "%s", client.ErrorMessage(err))
	}
	cl.key = ex.Key
	return cl, nil
}
