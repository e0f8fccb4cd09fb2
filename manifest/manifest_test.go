package manifest_test

import (
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/manifest"
)

// file is the name the tests give Parse, the one users see in messages.
const file = "app_manifest.yml"

const day = 24 * time.Hour

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func mustParse(t testing.TB, data []byte, env string) *latchkey.Manifest {
	t.Helper()
	m, err := manifest.Parse(file, data, env)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return m
}

// sameKeys compares declared keys field by field, so that a failure says
// which field of which key differs.
func sameKeys(t *testing.T, got, want []latchkey.DeclaredKey) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d keys, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		g, w := reflect.ValueOf(got[i]), reflect.ValueOf(want[i])
		for f := 0; f < g.NumField(); f++ {
			if !reflect.DeepEqual(g.Field(f).Interface(), w.Field(f).Interface()) {
				t.Errorf("key %d (%s) %s = %#v, want %#v", i, want[i].Agent, g.Type().Field(f).Name, g.Field(f).Interface(), w.Field(f).Interface())
			}
		}
	}
}

// multiAgentKeys are the keys the product's example declares.
func multiAgentKeys() []latchkey.DeclaredKey {
	const app = "Multi-Agent Workspace"
	return []latchkey.DeclaredKey{{
		App: app, Agent: "orchestratorAgent", Name: "Orchestrator Master Key",
		Scopes: []string{
			"agent:activate", "agent:read", "activations:read", "activations:write", "activations:stream",
			"data:read", "data:write", "data:query", "functions:invoke", "webhooks:manage", "credentials:use",
		},
		Resources:    []string{"agent:orchestratorAgent"},
		Environment:  "production",
		ExpiresAfter: 365 * day, AutoRotate: true, RotationInterval: 90 * day,
		Source: file + ":7",
	}, {
		App: app, Agent: "dataProcessor", Name: "Data Processor Key",
		Scopes:       []string{"agent:activate", "activations:read", "data:read", "data:write", "data:query", "functions:invoke"},
		Resources:    []string{"agent:dataProcessor"},
		Environment:  "production",
		ExpiresAfter: 180 * day,
		Source:       file + ":29",
	}, {
		App: app, Agent: "notificationAgent", Name: "Notification Key",
		Scopes:       []string{"agent:activate", "activations:read", "webhooks:manage", "credentials:use"},
		Resources:    []string{"agent:notificationAgent"},
		ExpiresAfter: 90 * day,
		Source:       file + ":38",
	}, {
		App: app, Agent: "readOnlyReporter", Name: "Reporter Key",
		Scopes:       []string{"agent:activate", "activations:read", "data:read", "data:query"},
		Resources:    []string{"agent:readOnlyReporter"},
		Environment:  "reporting",
		ExpiresAfter: 30 * day,
		Source:       file + ":46",
	}}
}

func TestMultiAgentExample(t *testing.T) {
	data := readTestdata(t, "multi_agent.yml")
	m := mustParse(t, data, "")
	if m.App != "Multi-Agent Workspace" || m.Version != "1.0.0" {
		t.Errorf("app %q version %q", m.App, m.Version)
	}
	sameKeys(t, m.Keys, multiAgentKeys())
}

// Selecting an environment gives the keys without one that environment
// and leaves out the keys of another.
func TestMultiAgentExampleInProduction(t *testing.T) {
	m := mustParse(t, readTestdata(t, "multi_agent.yml"), "production")
	want := multiAgentKeys()[:3]
	want[2].Environment = "production"
	sameKeys(t, m.Keys, want)
}

func TestEnvironmentWithNoKeys(t *testing.T) {
	m := mustParse(t, readTestdata(t, "multi_agent.yml"), "staging")
	want := multiAgentKeys()[2:3]
	want[0].Environment = "staging"
	sameKeys(t, m.Keys, want)
}

func TestBadSelectedEnvironment(t *testing.T) {
	_, err := manifest.Parse(file, readTestdata(t, "multi_agent.yml"), "Prod uction")
	if latchkey.ErrorCode(err) != latchkey.EInvalid {
		t.Fatalf("err = %v, want %s", err, latchkey.EInvalid)
	}
}

// The list of agents inside app, the defaults of a key, and agents that
// declare no key (generate: false, or no api_key block).
func TestAgentsInsideAppAndDefaults(t *testing.T) {
	m := mustParse(t, readTestdata(t, "nested_agents.yml"), "")
	if m.App != "Support Desk" || m.Version != "2.10" {
		t.Errorf("app %q version %q (a version is kept as written)", m.App, m.Version)
	}
	sameKeys(t, m.Keys, []latchkey.DeclaredKey{{
		App: "Support Desk", Agent: "triage", Name: "triage",
		Scopes:    []string{"agent:activate"},
		Resources: []string{"agent:triage"},
		Source:    file + ":6",
	}})
}

func TestJSON(t *testing.T) {
	m := mustParse(t, readTestdata(t, "multi_agent.json"), "")
	sameKeys(t, m.Keys, []latchkey.DeclaredKey{{
		App: "Multi-Agent Workspace", Agent: "orchestratorAgent", Name: "Orchestrator Master Key",
		Scopes:       []string{"agent:activate", "data:read"},
		Resources:    []string{"agent:orchestratorAgent"},
		Environment:  "production",
		ExpiresAfter: 365 * day, AutoRotate: true, RotationInterval: 90 * day,
		Source: file + ":4",
	}, {
		App: "Multi-Agent Workspace", Agent: "readOnlyReporter", Name: "readOnlyReporter",
		Scopes:       []string{"agent:activate", "data:read"},
		Resources:    []string{"agent:readOnlyReporter"},
		ExpiresAfter: 30 * day,
		Source:       file + ":17",
	}})
}

func TestEveryKeyField(t *testing.T) {
	m := mustParse(t, readTestdata(t, "limits.yml"), "")
	remaining := int64(500)
	sameKeys(t, m.Keys, []latchkey.DeclaredKey{{
		App: "Billing", Agent: "invoicer", Name: "Invoicer Key",
		Scopes:       []string{"execute", "invoices:write"}, // presets are the server's to expand
		Resources:    []string{"agent:invoicer", "invoice:*"},
		Environment:  "staging",
		Owner:        "billing-team@example.com",
		Meta:         map[string]any{"team": "billing", "cost_center": 4711, "tags": []any{"pci", "eu"}},
		ExpiresAfter: 365 * day, AutoRotate: true, RotationInterval: 30 * day,
		IPAllow:   []string{"10.0.0.0/8", "192.0.2.7"},
		Countries: []string{"DE", "fr"},
		TimeWindows: []latchkey.TimeWindow{
			{Days: []string{"mon", "tue", "wed", "thu", "fri"}, Start: "08:00", End: "18:00", TZ: "Europe/Berlin"},
		},
		RateLimits: []latchkey.RateLimit{
			{Name: "burst", Limit: 10, Window: latchkey.Duration(time.Second)},
			{Limit: 1000, Window: latchkey.Duration(time.Hour)},
		},
		Quota:         &latchkey.Quota{Limit: 100000, Period: "monthly"},
		MaxConcurrent: 4,
		Source:        file + ":5",
	}, {
		App: "Billing", Agent: "auditor", Name: "auditor",
		Scopes:      []string{"agent:activate"},
		Resources:   []string{"agent:auditor"},
		TimeWindows: []latchkey.TimeWindow{{Start: "22:00", End: "06:00"}},
		Quota:       &latchkey.Quota{Remaining: &remaining},
		Source:      file + ":32",
	}})
}

// Two agents may share a name when their keys do not.
func TestSameAgentTwoKeys(t *testing.T) {
	m := mustParse(t, []byte(`
app: {name: a}
agents:
  - name: worker
    api_key: {generate: true, name: "worker read", scopes: [data:read]}
  - name: worker
    api_key: {generate: true, name: "worker write", scopes: [data:write]}
  - name: worker
    api_key: {generate: false}
`), "")
	if len(m.Keys) != 2 || m.Keys[0].Name != "worker read" || m.Keys[1].Name != "worker write" {
		t.Fatalf("keys %+v", m.Keys)
	}
}

func TestAnAppWithoutAgents(t *testing.T) {
	m := mustParse(t, []byte("app:\n  name: empty\n"), "")
	if m.App != "empty" || len(m.Keys) != 0 {
		t.Fatalf("%+v", m)
	}
}

// Aliases are followed; an anchor shares settings between agents.
func TestAliases(t *testing.T) {
	m := mustParse(t, []byte(`
app: {name: a}
agents:
  - name: one
    api_key: &key {generate: true, scopes: &scopes [data:read, data:query], expires_after: 30d}
  - name: two
    api_key: *key
  - name: three
    api_key: {generate: true, scopes: *scopes}
`), "")
	if len(m.Keys) != 3 {
		t.Fatalf("keys %+v", m.Keys)
	}
	for _, k := range m.Keys {
		if k.Name != k.Agent || len(k.Scopes) != 2 || k.Scopes[1] != "data:query" {
			t.Errorf("key %+v", k)
		}
	}
}

// checkError asserts that err is EInvalid at file:line. The rest of the
// message is for people and free to change.
func checkError(t *testing.T, err error, line int) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one at line %d", line)
	}
	if code := latchkey.ErrorCode(err); code != latchkey.EInvalid {
		t.Fatalf("code %s, want %s: %v", code, latchkey.EInvalid, err)
	}
	if prefix := file + ":" + strconv.Itoa(line) + ": "; !strings.HasPrefix(latchkey.ErrorMessage(err), prefix) {
		t.Fatalf("message %q does not start with %q", latchkey.ErrorMessage(err), prefix)
	}
}

// head is a valid start that the cases below add an agent to; the
// agent's first line is line 3.
const head = "app: {name: a}\nagents:\n"

func TestErrors(t *testing.T) {
	cases := []struct {
		name, doc string
		line      int
	}{
		// Syntax, with yaml.v3's lines rewritten (its parser counts from 0,
		// its scanner from 1) or found where it gives none.
		{"mapping value in a value", "app: {name: a}\nagents: x: y\n", 2},
		{"unclosed flow list", "app: {name: a}\nagents:\n  - name: x\n    api_key: {generate: true, scopes: [a:b\n", 4},
		{"bad indentation", "app:\n  name: a\n  version: 1\n extra: 2\n", 4},
		{"tab indentation", "app:\n\tname: a\n", 2},
		{"item among keys", "app:\n  name: a\nagents:\n  - name: x\n  api_key: {}\n", 4},
		{"control character", "app:\n  name: a\n\n  version: \"1\x01\"\n", 4},
		{"not UTF-8", "app:\n  name: a\n  version: \xff\n", 3},
		{"unknown anchor", "app:\n  name: a\nagents:\n  - *agent\n", 4},
		{"two documents", "app: {name: a}\n---\napp: {name: b}\n", 3},
		{"not a mapping", "- app\n", 1},

		{"unknown top-level field", "app: {name: a}\n\nagent:\n  - name: x\n", 3},
		{"unknown app field", "app:\n  name: a\n  verison: 1\n", 3},
		{"unknown agent field", head + "  - name: x\n    apikey: {generate: true}\n", 4},
		{"unknown api_key field", head + "  - name: x\n    api_key:\n      generate: true\n      expires: 30d\n", 6},
		{"unknown field of a key not generated", head + "  - name: x\n    api_key:\n      generate: false\n      scope: [a:b]\n", 6},
		{"merge key", head + "  - name: x\n    api_key:\n      <<: {generate: true}\n", 5},
		{"field given twice", head + "  - name: x\n    name: y\n", 4},

		{"bad duration", head + "  - name: x\n    api_key:\n      generate: true\n      expires_after: \"9x\"\n", 6},
		{"zero expiry", head + "  - name: x\n    api_key:\n      generate: true\n      expires_after: 0\n", 6},
		{"auto_rotate without interval", head + "  - name: x\n    api_key:\n      generate: true\n      auto_rotate: true\n", 6},
		{"interval without auto_rotate", head + "  - name: x\n    api_key:\n      generate: true\n      rotation_interval: 30d\n", 6},
		{"generate not a bool", head + "  - name: x\n    api_key:\n      generate: maybe\n", 5},

		{"duplicate identity", head + "  - name: x\n    api_key: {generate: true}\n  - name: y\n  - name: x\n    api_key: {generate: true, name: x}\n", 6},
		{"duplicate identity by key name", head + "  - name: x\n    api_key: {generate: true, name: k}\n  - name: x\n    api_key: {generate: true, name: k}\n", 5},
		{"bad field in agents inside app", "app:\n  name: a\n  agents:\n    - name: x\n      api_key: {generate: yes please}\n", 5},
		{"both placements of agents", "app:\n  name: a\n  agents: []\nagents: []\n", 4},

		{"missing app name", "app:\n  version: 1\nagents: []\n", 1},
		{"empty app name", "app:\n  name: \"  \"\n", 2},
		{"no app block", "\nagents:\n  - name: x\n", 2},
		{"empty manifest", "# nothing yet\n", 1},
		{"missing agent name", head + "  - description: nameless\n", 3},
		{"agent name not a string", head + "  - name: [x]\n", 3},

		{"bad environment", head + "  - name: x\n    api_key:\n      generate: true\n      environment: Production\n", 6},
		{"empty scopes", head + "  - name: x\n    api_key:\n      generate: true\n      scopes: []\n", 6},
		{"bad scope", head + "  - name: x\n    api_key:\n      generate: true\n      scopes:\n        - data:read\n        - data\n", 8},
		{"empty resources", head + "  - name: x\n    api_key: {generate: true, resources: []}\n", 4},
		{"agent name no default resource can hold", head + "  - name: my agent\n    api_key: {generate: true}\n", 3},
		{"bad ip", head + "  - name: x\n    api_key:\n      generate: true\n      ip_allow:\n        - 10.0.0.1\n        - 10.0.0.300\n", 8},
		{"bad country", head + "  - name: x\n    api_key:\n      generate: true\n      countries: [DE, Germany]\n", 6},
		{"bad rate window", head + "  - name: x\n    api_key:\n      generate: true\n      ratelimits:\n        - {limit: 5, window: 1s}\n        - {limit: 5, window: 100ms}\n", 8},
		{"two rate windows of one name", head + "  - name: x\n    api_key:\n      generate: true\n      ratelimits:\n        - {limit: 5, window: 1m}\n        - {limit: 9, window: 1m}\n", 6},
		{"fractional limit", head + "  - name: x\n    api_key:\n      generate: true\n      ratelimits:\n        - {limit: 1.5, window: 1m}\n", 7},
		{"quota of both kinds", head + "  - name: x\n    api_key:\n      generate: true\n      quota: {limit: 5, period: daily, remaining: 3}\n", 6},
		{"uses and quota", head + "  - name: x\n    api_key:\n      generate: true\n      quota: {remaining: 3}\n      uses: 1\n", 7},
		{"uses of none", head + "  - name: x\n    api_key:\n      generate: true\n      uses: 0\n", 6},
		{"negative max_concurrent", head + "  - name: x\n    api_key:\n      generate: true\n      max_concurrent: -1\n", 6},
		{"bad time window", head + "  - name: x\n    api_key:\n      generate: true\n      time_windows:\n        - {start: \"09:00\", end: \"17:00\"}\n        - {days: [monday], start: \"09:00\", end: \"17:00\"}\n", 8},
		{"meta not a mapping", head + "  - name: x\n    api_key:\n      generate: true\n      meta: [a]\n", 6},
		{"meta holding itself", head + "  - name: x\n    api_key:\n      generate: true\n      meta: &m\n        a: *m\n", 7},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := manifest.Parse(file, []byte(c.doc), "")
			if err == nil {
				t.Fatalf("no error; parsed %+v", m)
			}
			checkError(t, err, c.line)
			t.Log(latchkey.ErrorMessage(err))
		})
	}
}

func TestTooLarge(t *testing.T) {
	data := []byte("app:\n  name: a\n  description: \"" + strings.Repeat("x", manifest.MaxSize) + "\"\n")
	_, err := manifest.Parse(file, data, "")
	checkError(t, err, 1)
}

func TestTooManyAgents(t *testing.T) {
	var b strings.Builder
	b.WriteString("app: {name: a}\nagents:\n")
	for i := range manifest.MaxAgents + 1 {
		fmt.Fprintf(&b, "  - name: a%d\n", i)
	}
	_, err := manifest.Parse(file, []byte(b.String()), "")
	checkError(t, err, 3+manifest.MaxAgents)

	// MaxAgents itself is fine.
	data := b.String()
	data = data[:strings.LastIndex(data, "  - ")]
	if _, err := manifest.Parse(file, []byte(data), ""); err != nil {
		t.Fatal(err)
	}
}

// A few lines of aliases to aliases would expand to billions of nodes;
// Parse stops them.
func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("app: {name: a}\nagents:\n  - name: x\n    api_key:\n      generate: true\n      meta:\n")
	b.WriteString("        l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 10; i++ {
		fmt.Fprintf(&b, "        l%d: &l%d [*l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	_, err := manifest.Parse(file, []byte(b.String()), "")
	if latchkey.ErrorCode(err) != latchkey.EInvalid || !strings.HasPrefix(latchkey.ErrorMessage(err), file+":") {
		t.Fatalf("err = %v", err)
	}
}

// Aliases to one long string count by its length, so that they cannot
// make every agent's meta large.
func TestAliasesToALongString(t *testing.T) {
	var b strings.Builder
	fmt.Fprintf(&b, "app:\n  name: a\n  description: &s %q\nagents:\n", strings.Repeat("x", 15_000))
	for i := range manifest.MaxAgents {
		fmt.Fprintf(&b, "  - {name: a%d, api_key: {generate: true, meta: {d: *s}}}\n", i)
	}
	_, err := manifest.Parse(file, []byte(b.String()), "")
	if latchkey.ErrorCode(err) != latchkey.EInvalid || !strings.HasPrefix(latchkey.ErrorMessage(err), file+":") {
		t.Fatalf("err = %v", err)
	}
}

// uses: N is a credit balance of N, as on the API.
func TestUses(t *testing.T) {
	m, err := manifest.Parse("m.yml", []byte("app: {name: a}\nagents:\n  - name: once\n    api_key: {generate: true, uses: 1}\n"), "")
	if err != nil {
		t.Fatal(err)
	}
	if q := m.Keys[0].Quota; q == nil || q.Remaining == nil || *q.Remaining != 1 || q.Limit != 0 {
		t.Fatalf("uses: 1 read as %+v", q)
	}
}
