// Package manifest reads an app manifest (app_manifest.yml): the API keys
// an app's agents need, declared in the app's own repository so that
// applying the file makes a tenant's keys match it (see
// latchkey.DeclaredKey). The file is YAML, or JSON, which YAML reads too:
//
//	app:
//	  name: "Multi-Agent Workspace"
//	  version: "1.0.0"
//	agents:
//	  - name: "orchestratorAgent"
//	    description: "Main orchestration agent"
//	    api_key:
//	      generate: true
//	      scopes: ["agent:activate", "data:read"]
//	      expires_after: "365d"
//	      environment: "production"
//	      auto_rotate: true
//	      rotation_interval: "90d"
//
// The list of agents may also sit inside app (app.agents). Only agents
// whose api_key says generate: true declare a key.
//
// The manifest is checked as the API checks a key, so that a file that
// parses can be applied: every error is a *latchkey.Error with code
// EInvalid whose message starts with "file:line: " and names the field,
// for example
//
//	app_manifest.yml:14: agents[1].api_key.expires_after: duration "9x": unknown unit "x" (…)
//
// Unknown fields are errors too, so that a misspelt setting is noticed
// instead of silently left out.
package manifest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/latchkeyhq/latchkey"
	"gopkg.in/yaml.v3"
)

// Limits on what Parse reads, so that a manifest cannot make it slow.
const (
	MaxSize   = 1 << 20 // bytes of the file
	MaxAgents = 10_000  // agents, counted whether they declare a key or not
)

const (
	// maxAliasNodes bounds how many nodes YAML aliases (*name) may add by
	// repeating what an anchor (&name) holds: without a bound, a small
	// file of aliases to aliases would expand to billions of nodes. A
	// scalar counts one node per 16 bytes too, so that aliases to one
	// long string cannot make meta huge either.
	maxAliasNodes = 1 << 20
	// maxMetaDepth bounds the nesting of meta, the one field of free
	// shape.
	maxMetaDepth = 64
)

// The fields each mapping of the manifest may hold.
var (
	rootFields   = []string{"app", "agents"}
	appFields    = []string{"name", "version", "description", "agents"}
	agentFields  = []string{"name", "description", "agent_type_id", "api_key"}
	apiKeyFields = []string{
		"generate", "name", "scopes", "resources", "expires_after", "environment",
		"owner", "meta", "auto_rotate", "rotation_interval",
		"ratelimits", "quota", "uses", "max_concurrent", "ip_allow", "countries", "time_windows",
	}
	rateLimitFields  = []string{"name", "limit", "window"}
	quotaFields      = []string{"limit", "period", "remaining"}
	timeWindowFields = []string{"days", "start", "end", "tz"}
)

// Parse reads the manifest in data; file names it in errors
// ("app_manifest.yml"). app.name is required.
//
// env, when not empty, selects one environment: declared keys whose
// environment is empty take env, and keys declaring another environment
// are left out of the result. They are still checked, as is the api_key
// block of an agent that does not generate a key, so that a mistake is
// found whichever environment is applied. For the same reason two keys
// with the same identity (the same agent and key name) are an error even
// when they declare different environments.
//
// Values are kept as written once they are valid (scopes keep their
// presets, countries their case); the API normalises them when the keys
// are applied. Fields left out take the defaults latchkey.DeclaredKey
// documents. Every error is EInvalid; all but the one for a bad env start
// with "file:line: ".
func Parse(file string, data []byte, env string) (*latchkey.Manifest, error) {
	if env != "" {
		if err := latchkey.ValidateEnvironment(env); err != nil {
			return nil, latchkey.Errorf(latchkey.EInvalid, "selected environment %q: %s", clip(env), latchkey.ErrorMessage(err))
		}
	}
	p := &parser{file: file, aliasBudget: maxAliasNodes, seen: map[identity]int{}}
	if len(data) > MaxSize {
		return nil, p.errAt(1, fmt.Sprintf("the manifest is %d bytes; at most %d (1 MiB) are read", len(data), MaxSize))
	}
	root, err := p.decode(data)
	if err != nil {
		return nil, err
	}
	m, err := p.manifest(root)
	if err != nil {
		return nil, err
	}
	if env != "" {
		kept := m.Keys[:0]
		for _, k := range m.Keys {
			if k.Environment == "" {
				k.Environment = env
			}
			if k.Environment == env {
				kept = append(kept, k)
			}
		}
		clear(m.Keys[len(kept):])
		m.Keys = kept
	}
	return m, nil
}

// identity is what names a declared key within its app.
type identity struct{ agent, name string }

// parser walks the YAML node tree itself, rather than decoding into
// structs, so that every error can name the line and the field path.
type parser struct {
	file string
	// aliasBudget is how many more nodes aliases may expand to.
	aliasBudget int
	agents      int
	// seen maps each declared key's identity to its agent's line.
	seen map[identity]int
}

// errAt returns the EInvalid error of the manifest at line.
func (p *parser) errAt(line int, msg string) error {
	return latchkey.Errorf(latchkey.EInvalid, "%s:%d: %s", p.file, max(line, 1), msg)
}

// errf returns an error at n's line.
func (p *parser) errf(n *yaml.Node, format string, args ...any) error {
	return p.errAt(n.Line, fmt.Sprintf(format, args...))
}

// wrap places a validator's error at n's line, after the field's path.
// Validators that name the field themselves ("quota: give either …") have
// that name dropped, since the path says it.
func (p *parser) wrap(n *yaml.Node, path string, err error) error {
	msg := latchkey.ErrorMessage(err)
	field := path[strings.LastIndexByte(path, '.')+1:]
	if i := strings.IndexByte(field, '['); i >= 0 {
		field = field[:i]
	}
	msg = strings.TrimPrefix(msg, field+": ")
	return p.errf(n, "%s: %s", path, msg)
}

// decode parses data into a node tree and returns the root of its one
// document, or nil when data holds no document.
func (p *parser) decode(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, p.syntaxError(data, err)
	}
	// Decode reads only the first document; a second one would be
	// ignored without a word.
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, p.syntaxError(data, err)
	case len(next.Content) > 0 && !isNull(next.Content[0]):
		return nil, p.errf(next.Content[0], "a second YAML document (after ---): a manifest is one document")
	}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		return nil, nil
	}
	return doc.Content[0], nil
}

// Parser problems of yaml.v3 (those of its parser, not of its scanner). It
// reports their lines counted from 0 where the scanner's count from 1.
var parserProblems = []string{
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"found duplicate %YAML directive",
	"found incompatible YAML document",
	"found undefined tag handle",
	"did not find expected <document start>",
	"did not find expected '-' indicator",
	"did not find expected key",
	"did not find expected node content",
	"found duplicate %TAG directive",
	"did not find expected <stream-start>",
}

// syntaxError rewrites an error of yaml.v3 ("yaml: line 3: did not find
// expected key") to the manifest's form ("app_manifest.yml:4: did not find
// expected key"), finding the line where yaml.v3 gives none.
func (p *parser) syntaxError(data []byte, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, after, ok := strings.Cut(rest, ": "); ok {
			if v, err := strconv.Atoi(n); err == nil {
				line, msg = v, after
			}
		}
	}
	if slices.Contains(parserProblems, msg) {
		// yaml.v3 leaves out "line 0", so no line is the first one too.
		line++
	}
	if line == 0 {
		line = locate(data, msg)
	}
	return p.errAt(line, msg)
}

// locate finds the line of a yaml.v3 error that has none: one of its
// reader's (a byte that is not UTF-8, a character YAML does not allow), or
// an alias naming no anchor. Anything else is on the first line.
func locate(data []byte, msg string) int {
	if name, ok := strings.CutPrefix(msg, "unknown anchor '"); ok {
		name, _, _ = strings.Cut(name, "'")
		if i := bytes.Index(data, []byte("*"+name)); i >= 0 {
			return lineOf(data, i)
		}
		return 1
	}
	if !strings.Contains(msg, "UTF-") && !strings.Contains(msg, "character") {
		return 1
	}
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size <= 1 || !yamlPrintable(r) {
			return lineOf(data, i)
		}
		i += size
	}
	return 1
}

// yamlPrintable reports whether YAML allows r in a document (yaml.v3's
// reader refuses the others).
func yamlPrintable(r rune) bool {
	switch {
	case r == '\t', r == '\n', r == '\r', r == 0x85:
		return true
	case r >= 0x20 && r <= 0x7e, r >= 0xa0 && r <= 0xd7ff, r >= 0xe000 && r <= 0xfffd, r >= 0x10000 && r <= 0x10ffff:
		return true
	}
	return false
}

// lineOf returns the line of the byte at offset i.
func lineOf(data []byte, i int) int { return bytes.Count(data[:i], []byte("\n")) + 1 }

// manifest reads the document's root mapping.
func (p *parser) manifest(root *yaml.Node) (*latchkey.Manifest, error) {
	if root == nil {
		return nil, p.errAt(1, "app.name is required (the manifest is empty)")
	}
	top, err := p.object(root, "", rootFields)
	if err != nil {
		return nil, err
	}
	m := &latchkey.Manifest{}
	app, _ := top.field("app")
	if app == nil {
		at := root
		if k := top.key("app"); k != nil {
			at = k
		}
		return nil, p.errf(at, "app.name is required (add an app block with the app's name)")
	}
	a, err := p.object(app, "app", appFields)
	if err != nil {
		return nil, err
	}
	name, nameNode, ok, err := a.str("name")
	if err != nil {
		return nil, err
	}
	if !ok {
		nameNode = top.key("app")
	}
	if err := latchkey.ValidateText("app.name", name, latchkey.MaxNameLen, true); err != nil {
		return nil, p.errf(nameNode, "%s", latchkey.ErrorMessage(err))
	}
	m.App = name
	version, versionNode, _, err := a.str("version")
	if err != nil {
		return nil, err
	}
	if err := latchkey.ValidateText("app.version", version, latchkey.MaxNameLen, false); err != nil {
		return nil, p.errf(versionNode, "%s", latchkey.ErrorMessage(err))
	}
	m.Version = version
	if _, _, _, err := a.str("description"); err != nil {
		return nil, err
	}

	// The agents are listed at the top level or inside app: either is
	// the product's form, but both at once would leave one list unread.
	agents, path := top.field("agents")
	inApp, inAppPath := a.field("agents")
	switch {
	case agents != nil && inApp != nil:
		first, second := top.key("agents"), a.key("agents")
		if second.Line < first.Line {
			first, second = second, first
		}
		return nil, p.errf(second, "agents are listed both at the top level and inside app (line %d); keep one list", first.Line)
	case inApp != nil:
		agents, path = inApp, inAppPath
	}
	if agents != nil {
		if m.Keys, err = p.agentList(agents, path, m.App); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// agentList reads a list of agents and returns the keys they declare.
func (p *parser) agentList(n *yaml.Node, path, app string) ([]latchkey.DeclaredKey, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, p.errf(n, "%s: want a list of agents, not %s", path, kindName(n))
	}
	var keys []latchkey.DeclaredKey
	for i, item := range n.Content {
		itemPath := path + "[" + strconv.Itoa(i) + "]"
		item, err := p.deref(item, itemPath)
		if err != nil {
			return nil, err
		}
		if p.agents++; p.agents > MaxAgents {
			return nil, p.errf(item, "%s: more than %d agents", itemPath, MaxAgents)
		}
		k, ok, err := p.agent(item, itemPath)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		k.App = app
		id := identity{k.Agent, k.Name}
		if first, dup := p.seen[id]; dup {
			return nil, p.errf(item, "%s: agent %q declares a key named %q again (first at %s:%d); give each key of an agent its own api_key.name",
				itemPath, clip(k.Agent), clip(k.Name), p.file, first)
		}
		p.seen[id] = item.Line
		keys = append(keys, k)
	}
	return keys, nil
}

// agent reads one agent; ok is false when it declares no key.
func (p *parser) agent(n *yaml.Node, path string) (k latchkey.DeclaredKey, ok bool, err error) {
	a, err := p.object(n, path, agentFields)
	if err != nil {
		return k, false, err
	}
	name, nameNode, present, err := a.str("name")
	if err != nil {
		return k, false, err
	}
	if !present {
		nameNode = n
	}
	if err := latchkey.ValidateText(path+".name", name, latchkey.MaxNameLen, true); err != nil {
		return k, false, p.errf(nameNode, "%s", latchkey.ErrorMessage(err))
	}
	for _, f := range []string{"description", "agent_type_id"} {
		if _, _, _, err := a.str(f); err != nil {
			return k, false, err
		}
	}
	keyNode, keyPath := a.field("api_key")
	if keyNode == nil {
		return k, false, nil
	}
	k, generate, err := p.apiKey(keyNode, keyPath, name, nameNode)
	if err != nil || !generate {
		return k, false, err
	}
	k.Source = p.file + ":" + strconv.Itoa(n.Line)
	return k, true, nil
}

// apiKey reads an agent's api_key block. It checks the block whether it
// generates a key or not, so that a mistake is found before the key is
// switched on; the defaults, which depend on the agent, only when it does.
func (p *parser) apiKey(n *yaml.Node, path, agent string, agentNode *yaml.Node) (k latchkey.DeclaredKey, generate bool, err error) {
	o, err := p.object(n, path, apiKeyFields)
	if err != nil {
		return k, false, err
	}
	k.Agent = agent
	if generate, _, _, err = o.boolean("generate"); err != nil {
		return k, false, err
	}

	name, nameNode, ok, err := o.str("name")
	if err != nil {
		return k, false, err
	}
	if ok {
		if err := latchkey.ValidateText(path+".name", name, latchkey.MaxNameLen, true); err != nil {
			return k, false, p.errf(nameNode, "%s", latchkey.ErrorMessage(err))
		}
		k.Name = name
	} else {
		k.Name = agent
	}

	if k.Scopes, err = o.list("scopes", func(n *yaml.Node, path, s string) error {
		if _, err := latchkey.ExpandScopes([]string{s}); err != nil {
			return p.wrap(n, path, err)
		}
		return nil
	}); err != nil {
		return k, false, err
	}
	if scopes, _ := o.field("scopes"); scopes != nil && len(k.Scopes) == 0 {
		return k, false, p.errf(o.key("scopes"), "%s.scopes: an empty list gives the key no permission; list its scopes, or leave scopes out for the default [agent:activate]", path)
	}
	if k.Scopes == nil {
		k.Scopes = []string{"agent:activate"}
	}

	if k.Resources, err = o.list("resources", func(n *yaml.Node, path, s string) error {
		if _, err := latchkey.NormalizeResources([]string{s}); err != nil {
			return p.wrap(n, path, err)
		}
		return nil
	}); err != nil {
		return k, false, err
	}
	if res, _ := o.field("resources"); res != nil && len(k.Resources) == 0 {
		// The API reads no resources as the whole tenant: a list emptied
		// by mistake must not widen the key that far.
		return k, false, p.errf(o.key("resources"), "%s.resources: an empty list would let the key reach every resource of the tenant; write [\"*\"] if that is meant, or leave resources out for the default [agent:<name>]", path)
	}
	if k.Resources == nil && generate {
		def := "agent:" + agent
		if err := latchkey.ValidateResource(def); err != nil {
			return k, false, p.errf(agentNode, "%s.resources: the default resource for this agent is not valid (%s); list the key's resources", path, latchkey.ErrorMessage(err))
		}
		k.Resources = []string{def}
	}

	if d, dn, ok, err := o.duration("expires_after"); err != nil {
		return k, false, err
	} else if ok {
		if d <= 0 {
			return k, false, p.errf(dn, "%s.expires_after must be more than 0; leave it out for a key that does not expire", path)
		}
		k.ExpiresAfter = d
	}

	env, envNode, _, err := o.str("environment")
	if err != nil {
		return k, false, err
	}
	if err := latchkey.ValidateEnvironment(env); err != nil {
		return k, false, p.wrap(envNode, path+".environment", err)
	}
	k.Environment = env

	owner, ownerNode, _, err := o.str("owner")
	if err != nil {
		return k, false, err
	}
	if err := latchkey.ValidateText(path+".owner", owner, latchkey.MaxNameLen, false); err != nil {
		return k, false, p.errf(ownerNode, "%s", latchkey.ErrorMessage(err))
	}
	k.Owner = owner

	if metaNode, metaPath := o.field("meta"); metaNode != nil {
		if metaNode.Kind != yaml.MappingNode {
			return k, false, p.errf(metaNode, "%s: want a mapping, not %s", metaPath, kindName(metaNode))
		}
		v, err := p.value(metaNode, &step{name: metaPath, index: -1}, 0, []*yaml.Node{metaNode})
		if err != nil {
			return k, false, err
		}
		k.Meta = v.(map[string]any)
		if err := latchkey.ValidateMeta(k.Meta); err != nil {
			return k, false, p.wrap(o.key("meta"), metaPath, err)
		}
	}

	if err := p.rotation(o, path, &k); err != nil {
		return k, false, err
	}
	if err := p.limits(o, path, &k); err != nil {
		return k, false, err
	}
	return k, generate, nil
}

// rotation reads auto_rotate and rotation_interval, which go together: an
// interval without auto_rotate would look like rotation and do nothing.
func (p *parser) rotation(o *object, path string, k *latchkey.DeclaredKey) error {
	auto, autoNode, _, err := o.boolean("auto_rotate")
	if err != nil {
		return err
	}
	interval, intervalNode, hasInterval, err := o.duration("rotation_interval")
	if err != nil {
		return err
	}
	switch {
	case auto && !hasInterval:
		return p.errf(autoNode, "%s.rotation_interval is required when auto_rotate is true", path)
	case hasInterval && !auto:
		return p.errf(intervalNode, "%s.rotation_interval needs auto_rotate: true", path)
	case hasInterval && interval <= 0:
		return p.errf(intervalNode, "%s.rotation_interval must be more than 0", path)
	}
	k.AutoRotate, k.RotationInterval = auto, interval
	return nil
}

// limits reads the key's limits and access policies. Each entry of a list
// is checked on its own, so that an error names its line, and the list
// as a whole then for what concerns several entries (counts, repeated
// names). The validators run on copies: some normalise in place, and the
// declared values stay as written.
func (p *parser) limits(o *object, path string, k *latchkey.DeclaredKey) error {
	var err error
	if k.RateLimits, err = p.rateLimits(o); err != nil {
		return err
	}
	if k.TimeWindows, err = p.timeWindows(o); err != nil {
		return err
	}

	if qn, qpath := o.field("quota"); qn != nil {
		q, err := p.object(qn, qpath, quotaFields)
		if err != nil {
			return err
		}
		var quota latchkey.Quota
		if quota.Limit, _, _, err = q.int("limit"); err != nil {
			return err
		}
		if quota.Period, _, _, err = q.str("period"); err != nil {
			return err
		}
		if rem, _, ok, err := q.int("remaining"); err != nil {
			return err
		} else if ok {
			quota.Remaining = &rem
		}
		if err := latchkey.ValidateQuota(&quota); err != nil {
			return p.wrap(o.key("quota"), qpath, err)
		}
		k.Quota = &quota
	}
	// uses: N is shorthand for a credit balance of N (a single-use key
	// is uses: 1), as on the API.
	if uses, usesNode, ok, err := o.int("uses"); err != nil {
		return err
	} else if ok {
		switch {
		case k.Quota != nil:
			return p.errf(usesNode, "%s.uses: give uses or quota, not both", path)
		case uses < 1:
			return p.errf(usesNode, "%s.uses must be at least 1", path)
		}
		k.Quota = &latchkey.Quota{Remaining: &uses}
		if err := latchkey.ValidateQuota(k.Quota); err != nil {
			return p.wrap(usesNode, path+".uses", err)
		}
	}

	if mc, mcNode, ok, err := o.int("max_concurrent"); err != nil {
		return err
	} else if ok {
		if mc < 0 || mc > latchkey.MaxConcurrent {
			return p.errf(mcNode, "%s.max_concurrent must be from 0 (no limit) to %d", path, latchkey.MaxConcurrent)
		}
		k.MaxConcurrent = int(mc)
	}

	if k.IPAllow, err = o.list("ip_allow", func(n *yaml.Node, path, s string) error {
		if _, err := latchkey.ParseIPAllow([]string{s}); err != nil {
			return p.wrap(n, path, err)
		}
		return nil
	}); err != nil {
		return err
	}

	if k.Countries, err = o.list("countries", func(n *yaml.Node, path, s string) error {
		if _, err := latchkey.NormalizeCountries([]string{s}); err != nil {
			return p.wrap(n, path, err)
		}
		return nil
	}); err != nil {
		return err
	}
	if _, err := latchkey.NormalizeCountries(k.Countries); err != nil {
		return p.wrap(o.key("countries"), path+".countries", err)
	}

	// An empty list restricts nothing, as no list does.
	for _, l := range []*[]string{&k.IPAllow, &k.Countries} {
		if len(*l) == 0 {
			*l = nil
		}
	}
	return nil
}

// rateLimits reads ratelimits: a list of {name, limit, window}.
func (p *parser) rateLimits(o *object) ([]latchkey.RateLimit, error) {
	n, path := o.field("ratelimits")
	if n == nil {
		return nil, nil
	}
	items, err := p.seq(n, path, "rate windows")
	if err != nil {
		return nil, err
	}
	var out []latchkey.RateLimit
	for i, item := range items {
		itemPath := path + "[" + strconv.Itoa(i) + "]"
		r, err := p.object(item, itemPath, rateLimitFields)
		if err != nil {
			return nil, err
		}
		var rl latchkey.RateLimit
		if rl.Name, _, _, err = r.str("name"); err != nil {
			return nil, err
		}
		limit, _, ok, err := r.int("limit")
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, p.errf(item, "%s.limit is required", itemPath)
		}
		rl.Limit = limit
		window, _, ok, err := r.duration("window")
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, p.errf(item, "%s.window is required", itemPath)
		}
		rl.Window = latchkey.Duration(window)
		if err := latchkey.ValidateRateLimits([]latchkey.RateLimit{rl}); err != nil {
			return nil, p.wrap(item, itemPath, err)
		}
		out = append(out, rl)
	}
	if err := latchkey.ValidateRateLimits(slices.Clone(out)); err != nil {
		return nil, p.wrap(o.key("ratelimits"), path, err)
	}
	return out, nil
}

// timeWindows reads time_windows: a list of {days, start, end, tz}.
func (p *parser) timeWindows(o *object) ([]latchkey.TimeWindow, error) {
	n, path := o.field("time_windows")
	if n == nil {
		return nil, nil
	}
	items, err := p.seq(n, path, "time windows")
	if err != nil {
		return nil, err
	}
	if len(items) > latchkey.MaxTimeWindows {
		return nil, p.errf(o.key("time_windows"), "%s: at most %d windows", path, latchkey.MaxTimeWindows)
	}
	var out []latchkey.TimeWindow
	for i, item := range items {
		itemPath := path + "[" + strconv.Itoa(i) + "]"
		t, err := p.object(item, itemPath, timeWindowFields)
		if err != nil {
			return nil, err
		}
		var w latchkey.TimeWindow
		if w.Days, err = t.list("days", nil); err != nil {
			return nil, err
		}
		if len(w.Days) == 0 {
			w.Days = nil // every day, as when days is left out
		}
		for _, f := range []struct {
			name string
			v    *string
		}{{"start", &w.Start}, {"end", &w.End}, {"tz", &w.TZ}} {
			if *f.v, _, _, err = t.str(f.name); err != nil {
				return nil, err
			}
		}
		c := w
		c.Days = slices.Clone(w.Days)
		if _, err := latchkey.CompileTimeWindows([]latchkey.TimeWindow{c}); err != nil {
			// The validator names the window by its index in the list it
			// was given, which here is always 0.
			msg, _ := strings.CutPrefix(latchkey.ErrorMessage(err), "time_windows[0]: ")
			return nil, p.errf(item, "%s: %s", itemPath, msg)
		}
		out = append(out, w)
	}
	return out, nil
}

// deref follows an alias to the node its anchor names, charging what it
// adds to the alias budget.
func (p *parser) deref(n *yaml.Node, path string) (*yaml.Node, error) {
	if n.Kind != yaml.AliasNode {
		return n, nil
	}
	t := n.Alias
	if t == nil || t.Kind == yaml.AliasNode {
		return nil, p.errf(n, "%s: alias *%s names no anchor", path, clip(n.Value))
	}
	p.aliasBudget -= size(t, p.aliasBudget+1)
	if p.aliasBudget < 0 {
		return nil, p.errf(n, "%s: aliases (*%s) repeat more than %d YAML nodes; write the manifest out", path, clip(n.Value), maxAliasNodes)
	}
	return t, nil
}

// size counts the nodes of n's tree as the alias budget does, up to
// limit, without following aliases: a node reached through one is charged
// when it is followed.
func size(n *yaml.Node, limit int) int {
	count := 0
	stack := []*yaml.Node{n}
	for len(stack) > 0 && count < limit {
		n := stack[len(stack)-1]
		stack = append(stack[:len(stack)-1], n.Content...)
		count += 1 + len(n.Value)/16
	}
	return count
}

// step is a place in meta: the root (the field's whole path in name), a
// key of a mapping, or an index of a list. Paths are only written out
// for an error, so converting a large meta does not build strings.
type step struct {
	parent *step
	name   string
	index  int // of a list item; -1 for a mapping key or the root
}

func (s *step) String() string {
	if s.parent == nil {
		return s.name
	}
	if s.index >= 0 {
		return s.parent.String() + "[" + strconv.Itoa(s.index) + "]"
	}
	return s.parent.String() + "." + s.name
}

// value converts meta, of free shape, into the JSON-like values a key's
// meta holds. active holds the anchors being converted, so that an anchor
// holding an alias to itself is refused rather than followed forever.
func (p *parser) value(n *yaml.Node, at *step, depth int, active []*yaml.Node) (any, error) {
	if n.Kind == yaml.AliasNode {
		if slices.Contains(active, n.Alias) {
			return nil, p.errf(n, "%s: alias *%s holds itself", at, clip(n.Value))
		}
		t, err := p.deref(n, at.String())
		if err != nil {
			return nil, err
		}
		active = append(active, t)
		n = t
	}
	if depth > maxMetaDepth {
		return nil, p.errf(n, "%s: nested more than %d levels deep", at, maxMetaDepth)
	}
	switch n.Kind {
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return n.Value, nil
		case "!!null":
			return nil, nil
		}
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, p.errf(n, "%s: a %s that cannot be read", at, n.ShortTag())
		}
		return v, nil
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for i, c := range n.Content {
			v, err := p.value(c, &step{parent: at, index: i}, depth+1, active)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case yaml.MappingNode:
		out := make(map[string]any, len(n.Content)/2)
		lines := make(map[string]int, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, err := p.deref(n.Content[i], at.String())
			if err != nil {
				return nil, err
			}
			if k.Kind != yaml.ScalarNode {
				return nil, p.errf(k, "%s: keys must be strings, not %s", at, kindName(k))
			}
			if first, dup := lines[k.Value]; dup {
				return nil, p.errf(k, "%s: key %q is given twice (first on line %d)", at, clip(k.Value), first)
			}
			lines[k.Value] = k.Line
			v, err := p.value(n.Content[i+1], &step{parent: at, name: k.Value, index: -1}, depth+1, active)
			if err != nil {
				return nil, err
			}
			out[k.Value] = v
		}
		return out, nil
	}
	return nil, p.errf(n, "%s: a YAML node of unknown kind", at)
}

// object is a mapping of the manifest read into its fields by name.
type object struct {
	p    *parser
	path string
	// fields maps each field given to its value; null values are left
	// out, so that "owner:" with nothing after it means the default.
	fields map[string]*yaml.Node
	// keys maps each field given to its name's node, whose line is the
	// one to name for the field as a whole: a block list or mapping
	// starts on the line after it.
	keys map[string]*yaml.Node
}

// object reads mapping n, whose fields may be those of known: an unknown
// field or one given twice is an error.
func (p *parser) object(n *yaml.Node, path string, known []string) (*object, error) {
	if n.Kind != yaml.MappingNode {
		what := path
		if what == "" {
			what = "the manifest"
		}
		return nil, p.errf(n, "%s: want a mapping of %s, not %s", what, strings.Join(known, ", "), kindName(n))
	}
	o := &object{p: p, path: path, fields: make(map[string]*yaml.Node, len(n.Content)/2), keys: make(map[string]*yaml.Node, len(n.Content)/2)}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, err := p.deref(n.Content[i], path)
		if err != nil {
			return nil, err
		}
		if k.Kind != yaml.ScalarNode {
			return nil, p.errf(k, "%s: field names must be strings, not %s", orRoot(path), kindName(k))
		}
		name := k.Value
		if !slices.Contains(known, name) {
			hint := "; known fields are " + strings.Join(known, ", ")
			if name == "<<" {
				hint = " (YAML merge keys are not supported; write the fields out)"
			}
			return nil, p.errf(k, "%s: unknown field %q%s", orRoot(path), clip(name), hint)
		}
		if first, dup := o.keys[name]; dup {
			return nil, p.errf(k, "%s is given twice (first on line %d)", o.pathOf(name), first.Line)
		}
		o.keys[name] = k
		v, err := p.deref(n.Content[i+1], o.pathOf(name))
		if err != nil {
			return nil, err
		}
		if !isNull(v) {
			o.fields[name] = v
		}
	}
	return o, nil
}

// pathOf returns the path of the object's field name.
func (o *object) pathOf(name string) string {
	if o.path == "" {
		return name
	}
	return o.path + "." + name
}

// field returns the value of field name (nil when absent or null) and its
// path.
func (o *object) field(name string) (*yaml.Node, string) {
	return o.fields[name], o.pathOf(name)
}

// key returns the node of field name's name, or nil when it is not in
// the mapping.
func (o *object) key(name string) *yaml.Node { return o.keys[name] }

// str reads a string field. Any scalar is taken as written, so that
// version: 1.10 is "1.10" and not a number.
func (o *object) str(name string) (s string, n *yaml.Node, ok bool, err error) {
	n, path := o.field(name)
	if n == nil {
		return "", nil, false, nil
	}
	if n.Kind != yaml.ScalarNode {
		return "", n, false, o.p.errf(n, "%s: want a string, not %s", path, kindName(n))
	}
	return n.Value, n, true, nil
}

// boolean reads a true/false field.
func (o *object) boolean(name string) (b bool, n *yaml.Node, ok bool, err error) {
	n, path := o.field(name)
	if n == nil {
		return false, nil, false, nil
	}
	if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
		return false, n, false, o.p.errf(n, "%s: want true or false, not %s", path, valueName(n))
	}
	return b, n, true, nil
}

// int reads a whole number; yaml.v3 would truncate 1.5 into an integer,
// so only YAML integers are taken.
func (o *object) int(name string) (v int64, n *yaml.Node, ok bool, err error) {
	n, path := o.field(name)
	if n == nil {
		return 0, nil, false, nil
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&v) != nil {
		return 0, n, false, o.p.errf(n, "%s: want a whole number, not %s", path, valueName(n))
	}
	return v, n, true, nil
}

// duration reads a duration in the API's form ("90d", "1h30m").
func (o *object) duration(name string) (d time.Duration, n *yaml.Node, ok bool, err error) {
	s, n, ok, err := o.str(name)
	if err != nil || !ok {
		return 0, n, ok, err
	}
	if d, err = latchkey.ParseDuration(s); err != nil {
		return 0, n, false, o.p.wrap(n, o.pathOf(name), err)
	}
	return d, n, true, nil
}

// list reads a list of strings, calling check, when not nil, on each. It
// returns nil for a field not given and an empty list for [].
func (o *object) list(name string, check func(n *yaml.Node, path, s string) error) ([]string, error) {
	n, path := o.field(name)
	if n == nil {
		return nil, nil
	}
	items, err := o.p.seq(n, path, "strings")
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(items))
	for i, item := range items {
		itemPath := path + "[" + strconv.Itoa(i) + "]"
		if item.Kind != yaml.ScalarNode || isNull(item) {
			return nil, o.p.errf(item, "%s: want a string, not %s", itemPath, kindName(item))
		}
		if check != nil {
			if err := check(item, itemPath, item.Value); err != nil {
				return nil, err
			}
		}
		out = append(out, item.Value)
	}
	return out, nil
}

// seq returns the items of list n, aliases followed; what names them in
// the error for a value that is not a list.
func (p *parser) seq(n *yaml.Node, path, what string) ([]*yaml.Node, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, p.errf(n, "%s: want a list of %s, not %s", path, what, kindName(n))
	}
	items := make([]*yaml.Node, len(n.Content))
	for i, item := range n.Content {
		var err error
		if items[i], err = p.deref(item, path+"["+strconv.Itoa(i)+"]"); err != nil {
			return nil, err
		}
	}
	return items, nil
}

// isNull reports whether n is YAML's null ("~", "null" or nothing).
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// kindName names n's kind for messages.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "null"
		}
		return "a single value"
	}
	return "an alias"
}

// valueName names a value for messages: short scalars quoted, others by
// kind.
func valueName(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode && !isNull(n) {
		return strconv.Quote(clip(n.Value))
	}
	return kindName(n)
}

// orRoot returns path, or "the manifest" for the root's.
func orRoot(path string) string {
	if path == "" {
		return "the manifest"
	}
	return path
}

// clip shortens what a message quotes from the file.
func clip(s string) string {
	const n = 60
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}
