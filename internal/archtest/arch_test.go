// Package archtest holds the package map as a test: which of the module's
// packages each one may import. docs/architecture.md draws the same map;
// this keeps it true.
package archtest

import (
	"go/build"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/latchkeyhq/latchkey"

// may lists, for each package of the module (by its path inside it, "" for
// the root), the module's packages its non-test files may import. Services
// and adapters import the domain root and nothing beside them; wiring is
// cmd/latchkey's. A package missing from the table fails the test: say
// where it belongs when you add it.
var may = map[string][]string{
	"":       {"wire"},
	"wire":   {},
	"client": {"wire"},
	"store":  {},

	// The typed admin client: the root's records, never the server's packages.
	"client/admin": {"", "client", "wire"},

	// Services.
	"keys":    {""},
	"secrets": {""},
	"audit":   {""},
	// Workload identity: verifies a tenant's trusted tokens and mints
	// keys through the key service.
	"identity": {"", "keys"},

	// Adapters.
	"manifest":         {""},
	"leaks":            {""}, // leak reports: GitHub's signed alerts, latchkey scan's key finder
	"geo":              {""},
	"guard":            {""},
	"guard/redisguard": {"", "guard"},
	"keyring":          {""},
	"limit":            {""},
	"limit/limittest":  {"", "limit"},
	"limit/redislimit": {""},
	"usage":            {""},
	"webhook":          {""},
	"security":         {""},
	"metrics":          {""},
	"httpapi":          {"", "audit", "identity", "keys", "leaks", "manifest", "secrets", "webhook", "wire"},
	// The dashboard: pages beside the JSON API, on the same services.
	"ui":               {"", "audit", "keys", "manifest", "secrets", "webhook"},
	"store/sqlite":     {"", "store"},
	"store/postgres":   {"", "store"},
	"store/storetest":  {"", "audit", "identity", "keys", "secrets", "ui", "usage", "webhook"},
	"geo/geotest":      {},
	"internal/testenv": {},

	// Tools, fixtures and the binary: anything of the module.
	"cmd/latchkey":          nil,
	"internal/allocstest":   nil,
	"internal/benchbare":    nil,
	"internal/benchnginx":   nil,
	"internal/benchpg":      nil,
	"internal/servicetest":  nil,
	"internal/benchseed":    nil,
	"internal/fakeclock":    nil,
	"internal/archtest":     nil,
	"internal/openapicheck": nil,
}

// allowed are exceptions to may, each to be removed by a step of
// docs/plans/issue11-split.md. It is empty: the last two (the SQL stores
// naming keys.Tx) went with S11. An exception that is no longer needed
// fails the test, so the list only shrinks.
var allowed = map[string][]string{}

func TestPackagesImportOnlyWhatTheMapAllows(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]map[string]bool{} // exceptions that were needed
	found := map[string]bool{}
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		name := d.Name()
		if path != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" ||
			name == "bench-results" || name == "campaign-results" || name == "docs" || name == "node_modules") {
			return filepath.SkipDir
		}
		pkg, err := build.ImportDir(path, 0)
		if err != nil {
			if _, ok := err.(*build.NoGoError); ok {
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if rel == "." {
			rel = ""
		}
		found[rel] = true
		rules, ok := may[rel]
		if !ok {
			t.Errorf("package %q is not in the map (internal/archtest): add what it may import", rel)
			return nil
		}
		if rules == nil {
			return nil
		}
		for _, imp := range pkg.Imports {
			if imp != module && !strings.HasPrefix(imp, module+"/") {
				continue
			}
			dep := strings.TrimPrefix(strings.TrimPrefix(imp, module), "/")
			switch {
			case slices.Contains(rules, dep):
			case slices.Contains(allowed[rel], dep):
				if used[rel] == nil {
					used[rel] = map[string]bool{}
				}
				used[rel][dep] = true
			default:
				names := make([]string, len(rules))
				for i, r := range rules {
					names[i] = show(r)
				}
				t.Errorf("%s imports %s; the map allows only %s", show(rel), show(dep), strings.Join(names, ", "))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for rel := range may {
		if !found[rel] {
			t.Errorf("the map names %s, which has no Go files any more: drop it", show(rel))
		}
	}
	var stale []string
	for rel, deps := range allowed {
		for _, dep := range deps {
			if !used[rel][dep] {
				stale = append(stale, show(rel)+" → "+show(dep))
			}
		}
	}
	sort.Strings(stale)
	for _, s := range stale {
		t.Errorf("exception %s is no longer needed: remove it from allowed", s)
	}
}

func show(rel string) string {
	if rel == "" {
		return "latchkey (root)"
	}
	return rel
}
