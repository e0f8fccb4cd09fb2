package keys

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/interpreter"

	"github.com/latchkeyhq/latchkey"
)

// Conditions (docs/limits.md, "Conditions"): a key or a policy may carry a
// CEL expression over the request that must hold for the key to be
// allowed. The expression is compiled and type-checked when the key or
// policy is saved (CheckCondition), compiled once per distinct text when a
// cache entry is built (compileCondition), and evaluated on every
// verification of the key with a cost limit (ConditionCostLimit).

// RequestInfo is the request a key is presented for, as the caller
// describes it: what a condition's request.method, request.path,
// request.host and request.headers read. A nil *RequestInfo reads as
// empty strings and no headers.
//
// Verify reads it only when the key has a condition, so a caller may hand
// over the raw material (the forward-auth request's own method, path, host
// and headers, with Proxied set) and let the service pick the original
// request's fields out of the proxy headers only then.
type RequestInfo struct {
	Method, Path, Host string
	// Headers are the request's headers; a condition sees the first value
	// of each, by lower-cased name, except the credential headers
	// (Authorization, Proxy-Authorization, Cookie, X-Api-Key), which it
	// never sees.
	Headers http.Header
	// Proxied says that Method, Path and Host are those of a forward-auth
	// subrequest: the original request's are read from X-Original-Method
	// and X-Original-URI (nginx) or X-Forwarded-Method, X-Forwarded-Uri
	// and X-Forwarded-Host (Traefik, Caddy) where present.
	Proxied bool
}

// ConditionCostLimit bounds the work one evaluation of a condition may do,
// in CEL's cost units (about one a comparison or a list element visited):
// an expression that goes past it is denied (CONDITION_FAILED) and logged.
const ConditionCostLimit = 10_000

// MaxConditionLen bounds a condition's text.
const MaxConditionLen = 4096

// compiledCondition is one expression's program, or why it does not
// compile (a stored expression that stopped compiling fails closed).
type compiledCondition struct {
	src  string
	prg  cel.Program
	err  error
	vars conditionVars // the variables the expression reads
	// loops is set for an expression with a comprehension (all, exists,
	// map, filter…): the only places cel-go checks for interruption, so
	// only such an expression is evaluated under the context (which costs
	// a context of its own an evaluation).
	loops bool
}

// conditionVars records which variables an expression reads, so an
// evaluation builds only those. headers is set when the expression's text
// names them at all ("headers"): copying the request's headers is the
// costliest part of the request variable, and an expression that does
// not name them sees none.
type conditionVars struct {
	request, key, headers, scope, resource bool
}

// condition is an entry's compiled conditions: the key's own and its
// policy's, each nil when absent. Both must hold.
type condition struct {
	own, policy *compiledCondition
	// vars are the variables either reads.
	vars conditionVars
	// key is the key variable, made with the entry when an expression
	// reads it.
	key ref.Val
}

// cidr("10.0.0.0/8") is declared to return a map(string, bool) so that
// the standard in operator type-checks with it on its right
// (request.ip in cidr(…)): CEL's in operator has a single implementation
// for every container, which asks the right-hand value whether it
// contains the left. The value is a cidrVal, whose Contains is the range
// test; used as anything but the right side of in, it is an error (and
// the condition denies).
var cidrDeclType = cel.MapType(cel.StringType, cel.BoolType)

// cidrType is cidrVal's runtime type: a container.
var cidrType = types.NewTypeValue("cidr", traits.ContainerType)

// cidrVal is a CIDR range as a CEL value.
type cidrVal struct{ p netip.Prefix }

func (c cidrVal) ConvertToNative(t reflect.Type) (any, error) {
	if t == reflect.TypeOf(netip.Prefix{}) {
		return c.p, nil
	}
	return nil, fmt.Errorf("cidr cannot be converted to %v", t)
}

func (c cidrVal) ConvertToType(t ref.Type) ref.Val {
	switch t {
	case cidrType:
		return c
	case types.StringType:
		return types.String(c.p.String())
	case types.TypeType:
		return cidrType
	}
	return types.NewErr("cidr cannot be converted to %s", t.TypeName())
}

func (c cidrVal) Equal(other ref.Val) ref.Val {
	o, ok := other.(cidrVal)
	return types.Bool(ok && o.p == c.p)
}

func (c cidrVal) Type() ref.Type { return cidrType }

func (c cidrVal) Value() any { return c.p }

// Contains reports whether the address v (a string) is in the range; a
// string that is no address (no address was known) is in no range.
func (c cidrVal) Contains(v ref.Val) ref.Val {
	s, ok := v.(types.String)
	if !ok {
		return types.NoSuchOverloadErr()
	}
	a, err := netip.ParseAddr(string(s))
	if err != nil {
		return types.False
	}
	return types.Bool(c.p.Contains(a.Unmap()))
}

// parseCIDR reads a range as ip_allow does ("10.0.0.0/8", a bare address
// for one host; no IPv6 zone), without allocating: it runs on every
// evaluation of cidr(…).
func parseCIDR(s string) (netip.Prefix, bool) {
	if strings.IndexByte(s, '/') >= 0 {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, false
		}
		if a := p.Addr(); a.Is4In6() {
			if p.Bits() < 96 {
				return netip.Prefix{}, false
			}
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return p.Masked(), true
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), true
}

// conditionEnv is the CEL environment every condition is compiled in.
var conditionEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("request", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("key", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("scope", cel.StringType),
		cel.Variable("resource", cel.StringType),
		cel.Variable("now", cel.TimestampType),
		cel.Function("cidr",
			cel.Overload("cidr_string", []*cel.Type{cel.StringType}, cidrDeclType,
				cel.UnaryBinding(func(v ref.Val) ref.Val {
					s, ok := v.(types.String)
					if !ok {
						return types.NoSuchOverloadErr()
					}
					p, ok := parseCIDR(string(s))
					if !ok {
						return types.NewErr("cidr(%.60q): not an IP address or CIDR range", string(s))
					}
					return cidrVal{p}
				}))),
	)
})

// CheckCondition compiles and type-checks a condition as it is saved:
// EInvalid, naming the line and column, for an expression that does not
// parse, does not type-check, or is not a bool. The empty string (no
// condition) is valid.
func CheckCondition(field, src string) error {
	if src == "" {
		return nil
	}
	if len(src) > MaxConditionLen {
		return latchkey.Errorf(latchkey.EInvalid, "%s is longer than %d bytes", field, MaxConditionLen)
	}
	_, err := buildCondition(src)
	if err != nil {
		return latchkey.Errorf(latchkey.EInvalid, "%s: %s", field, err.Error())
	}
	return nil
}

// buildCondition compiles src into a program with the cost limit.
func buildCondition(src string) (*compiledCondition, error) {
	env, err := conditionEnv()
	if err != nil {
		return nil, err
	}
	ast, iss := env.Compile(src)
	if iss != nil && iss.Err() != nil {
		var msgs []string
		for i, e := range iss.Errors() {
			if i == 3 {
				break
			}
			msgs = append(msgs, fmt.Sprintf("%d:%d: %s", e.Location.Line(), e.Location.Column()+1, e.Message))
		}
		return nil, fmt.Errorf("%s", strings.Join(msgs, "; "))
	}
	if !ast.OutputType().IsExactType(cel.BoolType) && !ast.OutputType().IsExactType(cel.DynType) {
		return nil, fmt.Errorf("1:1: the expression is a %s, not a bool", ast.OutputType())
	}
	loops := len(celast.MatchDescendants(celast.NavigateAST(ast.NativeRep()), celast.KindMatcher(celast.ComprehensionKind))) > 0
	// OptOptimize folds constants (a literal list on the right of in
	// becomes a set) once, here, rather than on every evaluation. Only an
	// expression with a comprehension (all, exists, map, filter) can cost
	// more than its own length times its inputs' (every other node is
	// evaluated at most once, and matches() is RE2, linear), so only such
	// an expression is evaluated under the cost limit: tracking the cost
	// takes four allocations an evaluation.
	opts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
	if loops {
		opts = append(opts, cel.CostLimit(ConditionCostLimit), cel.InterruptCheckFrequency(64))
	}
	prg, err := env.Program(ast, opts...)
	if err != nil {
		return nil, fmt.Errorf("1:1: %v", err)
	}
	c := &compiledCondition{src: src, prg: prg, loops: loops}
	c.vars.headers = strings.Contains(src, "headers")
	// Which variables it reads: the request and key maps are built for
	// an evaluation only when they are.
	for _, ref := range ast.NativeRep().ReferenceMap() {
		switch ref.Name {
		case "request":
			c.vars.request = true
		case "key":
			c.vars.key = true
		case "scope":
			c.vars.scope = true
		case "resource":
			c.vars.resource = true
		}
	}
	return c, nil
}

// conditionIntern compiles each distinct expression text once: the keys
// of a policy, or many keys created alike, share one program (programs
// are safe for concurrent use). Bounded like the other intern tables:
// past internLimit it starts again.
type conditionIntern struct {
	mu sync.Mutex
	m  map[string]*compiledCondition
}

var internConditions = &conditionIntern{m: make(map[string]*compiledCondition)}

// get returns the compiled form of src; nil for "".
func (t *conditionIntern) get(src string) *compiledCondition {
	if src == "" {
		return nil
	}
	t.mu.Lock()
	c, ok := t.m[src]
	t.mu.Unlock()
	if ok {
		return c
	}
	c, err := buildCondition(src)
	if err != nil {
		c = &compiledCondition{src: src, err: err}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if prev, ok := t.m[src]; ok {
		return prev
	}
	if len(t.m) >= internLimit {
		clear(t.m)
	}
	t.m[src] = c
	return c
}

// compileCondition returns the conditions of an entry's key k (compacted,
// its policy applied): nil when neither the key nor its policy has one.
func compileCondition(k *latchkey.Key, policy string) *condition {
	if k.Condition == "" && policy == "" {
		return nil
	}
	c := &condition{own: internConditions.get(k.Condition), policy: internConditions.get(policy)}
	for _, cc := range [2]*compiledCondition{c.own, c.policy} {
		if cc != nil {
			c.vars.request = c.vars.request || cc.vars.request
			c.vars.key = c.vars.key || cc.vars.key
			c.vars.headers = c.vars.headers || cc.vars.headers
			c.vars.scope = c.vars.scope || cc.vars.scope
			c.vars.resource = c.vars.resource || cc.vars.resource
		}
	}
	if c.vars.key {
		c.key = keyVal(k)
	}
	return c
}

// conditionActivation resolves a condition's variables for one
// verification. It holds the request's copy too; the interpreter takes it
// behind an interface, so it comes from a pool rather than the stack.
var activations = sync.Pool{New: func() any { return new(conditionActivation) }}

type conditionActivation struct {
	request requestVal
	key     ref.Val
	scope   types.String
	res     types.String
	now     types.Timestamp
}

func (a *conditionActivation) ResolveName(name string) (any, bool) {
	switch name {
	case "request":
		return &a.request, true
	case "key":
		return a.key, a.key != nil
	case "scope":
		return a.scope, true
	case "resource":
		return a.res, true
	case "now":
		return a.now, true
	}
	return nil, false
}

func (a *conditionActivation) Parent() interpreter.Activation { return nil }

// holds evaluates the entry's conditions for req. Nothing of req is kept
// or handed on: every string is copied, so the caller's buffers stay
// where they are (see DetachAddr). It returns false, with the reason,
// when a condition is false or cannot be evaluated.
func (c *condition) holds(ctx context.Context, req *VerifyRequest, now time.Time) (bool, error) {
	a := activations.Get().(*conditionActivation)
	*a = conditionActivation{key: c.key, now: types.Timestamp{Time: now}}
	defer func() {
		// Nothing of this verification stays reachable from the pool.
		*a = conditionActivation{}
		activations.Put(a)
	}()
	if c.vars.request {
		a.request.fill(req, c.vars.headers)
	}
	if c.vars.scope && len(req.Scopes) > 0 {
		a.scope = types.String(strings.Clone(req.Scopes[0]))
	}
	if c.vars.resource {
		a.res = types.String(strings.Clone(req.Resource))
	}
	for _, cc := range [2]*compiledCondition{c.policy, c.own} {
		if cc == nil {
			continue
		}
		if cc.err != nil {
			return false, fmt.Errorf("%w: %v", errBrokenCondition, cc.err)
		}
		var out ref.Val
		var err error
		if cc.loops {
			out, _, err = cc.prg.ContextEval(ctx, a)
		} else {
			out, _, err = cc.prg.Eval(a)
		}
		if err != nil {
			return false, err
		}
		b, ok := out.(types.Bool)
		if !ok {
			return false, fmt.Errorf("the condition gave a %s, not a bool", out.Type().TypeName())
		}
		if !b {
			return false, nil
		}
	}
	return true, nil
}

// requestVal is the request variable, a map of method, path, host,
// headers (first value by lower-cased name), ip and network (the /24 or
// /64), made as a condition reads it rather than built whole on every
// verification.
type requestVal struct {
	method, path, host types.String
	headers            map[string]string
	addr               netip.Addr
}

// requestFields are requestVal's keys, in iteration order.
var requestFields = [...]string{"method", "path", "host", "headers", "ip", "network"}

// noHeaders is the headers of a request that has none.
var noHeaders = map[string]string{}

// fill copies what r needs of req (one allocation for the strings; the
// headers only when the expression may read them).
func (r *requestVal) fill(req *VerifyRequest, headers bool) {
	r.headers = noHeaders
	if addr := DetachAddr(req.IP); addr.IsValid() {
		r.addr = addr.Unmap()
	}
	ri := req.Request
	if ri == nil {
		return
	}
	method, path, host := ri.Method, ri.Path, ri.Host
	if ri.Proxied {
		method, path, host = proxiedRequest(ri)
	}
	method, path, host = ownStrings(method, path, host)
	r.method, r.path, r.host = types.String(method), types.String(path), types.String(host)
	if headers && len(ri.Headers) > 0 {
		r.headers = make(map[string]string, len(ri.Headers))
		for k, vs := range ri.Headers {
			if len(vs) == 0 || credentialHeaders[http.CanonicalHeaderKey(k)] {
				continue
			}
			r.headers[strings.ToLower(k)] = strings.Clone(vs[0])
		}
	}
}

func (r *requestVal) field(name string) (ref.Val, bool) {
	switch name {
	case "method":
		return r.method, true
	case "path":
		return r.path, true
	case "host":
		return r.host, true
	case "headers":
		return types.NewStringStringMap(types.DefaultTypeAdapter, r.headers), true
	case "ip":
		if !r.addr.IsValid() {
			return types.String(""), true
		}
		return types.String(r.addr.String()), true
	case "network":
		if !r.addr.IsValid() {
			return types.String(""), true
		}
		bits := 64
		if r.addr.Is4() {
			bits = 24
		}
		p, _ := r.addr.Prefix(bits)
		return types.String(p.String()), true
	}
	return nil, false
}

// Find implements traits.Mapper.
func (r *requestVal) Find(key ref.Val) (ref.Val, bool) {
	k, ok := key.(types.String)
	if !ok {
		return types.ValOrErr(key, "no such key: %v", key), false
	}
	return r.field(string(k))
}

// Get implements traits.Indexer.
func (r *requestVal) Get(key ref.Val) ref.Val {
	v, ok := r.Find(key)
	if !ok {
		return types.ValOrErr(v, "no such key: %v", key)
	}
	return v
}

// Contains implements traits.Container.
func (r *requestVal) Contains(key ref.Val) ref.Val {
	_, ok := r.Find(key)
	return types.Bool(ok)
}

// Size implements traits.Sizer.
func (r *requestVal) Size() ref.Val { return types.Int(len(requestFields)) }

// Iterator implements traits.Iterable: the keys.
func (r *requestVal) Iterator() traits.Iterator {
	l := types.NewStringList(types.DefaultTypeAdapter, requestFields[:])
	return l.(traits.Iterable).Iterator()
}

func (r *requestVal) ConvertToNative(t reflect.Type) (any, error) {
	m := make(map[string]any, len(requestFields))
	for _, f := range requestFields {
		v, _ := r.field(f)
		m[f] = v.Value()
	}
	return types.NewStringInterfaceMap(types.DefaultTypeAdapter, m).ConvertToNative(t)
}

func (r *requestVal) ConvertToType(t ref.Type) ref.Val {
	switch t {
	case types.MapType:
		return r
	case types.TypeType:
		return types.MapType
	}
	return types.NewErr("type conversion error from map to %s", t.TypeName())
}

func (r *requestVal) Equal(other ref.Val) ref.Val {
	o, ok := other.(*requestVal)
	return types.Bool(ok && o == r)
}

func (r *requestVal) Type() ref.Type { return types.MapType }

func (r *requestVal) Value() any { return r }

// errBrokenCondition marks a stored expression that no longer compiles.
var errBrokenCondition = errors.New("the stored condition does not compile")

// conditionErrorIsLoud reports whether an evaluation error is worth a
// warning: the cost limit, an interruption, or a stored expression that
// no longer compiles, rather than a runtime error a request causes (an
// absent header read with []).
func conditionErrorIsLoud(err error) bool {
	var cancelled interpreter.EvalCancelledError
	return errors.As(err, &cancelled) || errors.Is(err, errBrokenCondition)
}

// credentialHeaders are the headers a condition never sees: they carry
// keys and sessions.
var credentialHeaders = map[string]bool{
	"Authorization": true, "Proxy-Authorization": true, "Cookie": true, "X-Api-Key": true,
}

// proxiedRequest picks the original request's method, path and host out
// of a forward-auth subrequest's headers: nginx's X-Original-Method and
// X-Original-URI, Traefik's and Caddy's X-Forwarded-Method,
// X-Forwarded-Uri and X-Forwarded-Host; else the subrequest's own (Envoy's
// ext_authz sends the original request's method and path as its own). The
// path is without its query string.
func proxiedRequest(ri *RequestInfo) (method, path, host string) {
	h := ri.Headers
	method, path, host = ri.Method, ri.Path, ri.Host
	if v := h.Get("X-Original-Method"); v != "" {
		method = v
	} else if v := h.Get("X-Forwarded-Method"); v != "" {
		method = v
	}
	if v := h.Get("X-Original-Uri"); v != "" {
		path = v
	} else if v := h.Get("X-Forwarded-Uri"); v != "" {
		path = v
	}
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	if v := h.Get("X-Forwarded-Host"); v != "" {
		host = v
	}
	return method, path, host
}

// keyVal is the key variable: the key's effective id, name, owner,
// environment, tenant, meta and scopes. It is made once, with the entry:
// entries are immutable, so their strings, lists and maps are handed over
// as they are.
func keyVal(k *latchkey.Key) ref.Val {
	return types.DefaultTypeAdapter.NativeToValue(map[string]any{
		"id": k.ID, "name": k.Name, "owner": k.Owner, "environment": k.Environment,
		"tenant": k.Tenant, "meta": k.Meta, "scopes": k.Scopes,
	})
}
