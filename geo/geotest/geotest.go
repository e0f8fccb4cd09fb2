// Package geotest builds small MaxMind databases for tests, so that code
// using package geo can be tested without a GeoLite2 download. It is
// test-only code in a non-test package so that any package's tests can
// import it.
package geotest

import (
	"cmp"
	"net"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// Record is what one network maps to: the ISO 3166-1 alpha-2 codes of the
// country where it is (country.iso_code) and of the country where its
// owner registered it (registered_country.iso_code). An empty code leaves
// that map out of the record.
type Record struct {
	Country           string
	RegisteredCountry string
}

// WriteCountryDB writes a GeoLite2-Country style database to path that maps
// each network (CIDR, e.g. "192.0.2.0/24" or "2001:db8::/32") to its ISO
// code, in both country and registered_country as real databases do.
// Write IPv4 networks in IPv4 notation: the database is an IPv6 tree with
// the IPv4 space aliased at ::ffff:0:0/96 (and 2002::/16), so IPv4,
// IPv4-mapped IPv6 and IPv6 lookups all work. It fails t on any error.
func WriteCountryDB(t testing.TB, path string, networks map[string]string) {
	t.Helper()
	recs := make(map[string]Record, len(networks))
	for cidr, code := range networks {
		recs[cidr] = Record{Country: code, RegisteredCountry: code}
	}
	WriteRecords(t, path, recs)
}

// WriteRecords is WriteCountryDB with full control over each record, for
// testing the fallback to registered_country or odd codes.
func WriteRecords(t testing.TB, path string, networks map[string]Record) {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType: "GeoLite2-Country",
		Description:  map[string]string{"en": "Latchkey test database"},
		Languages:    []string{"en"},
		IPVersion:    6,
		RecordSize:   24,
		// Tests use the documentation ranges (192.0.2.0/24, 2001:db8::/32),
		// which the writer would otherwise leave out as reserved.
		IncludeReservedNetworks: true,
	})
	if err != nil {
		t.Fatalf("geotest: new tree: %v", err)
	}
	// Insert in a fixed order, wider networks first, so that a more
	// specific network overrides part of a wider one whatever the map's
	// iteration order.
	type entry struct {
		cidr string
		net  *net.IPNet
		bits int
	}
	entries := make([]entry, 0, len(networks))
	for c := range networks {
		_, n, err := net.ParseCIDR(c)
		if err != nil {
			t.Fatalf("geotest: network %q: %v", c, err)
		}
		bits, _ := n.Mask.Size()
		if len(n.IP) == net.IPv4len {
			bits += 96 // an IPv4 network sits at ::/96 in the IPv6 tree
		}
		entries = append(entries, entry{c, n, bits})
	}
	slices.SortFunc(entries, func(a, b entry) int {
		return cmp.Or(a.bits-b.bits, strings.Compare(a.cidr, b.cidr))
	})
	for _, e := range entries {
		rec := networks[e.cidr]
		m := mmdbtype.Map{}
		if rec.Country != "" {
			m["country"] = countryMap(rec.Country)
		}
		if rec.RegisteredCountry != "" {
			m["registered_country"] = countryMap(rec.RegisteredCountry)
		}
		if err := tree.Insert(e.net, m); err != nil {
			t.Fatalf("geotest: insert %s: %v", e.cidr, err)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatalf("geotest: %v", err)
	}
	if _, err := tree.WriteTo(f); err != nil {
		f.Close()
		t.Fatalf("geotest: write %s: %v", path, err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("geotest: write %s: %v", path, err)
	}
}

// countryMap is a country as GeoLite2 stores it, with a geoname id and
// names beside the code, so that readers are tested against records with
// fields they must skip.
func countryMap(code string) mmdbtype.Map {
	return mmdbtype.Map{
		"geoname_id": mmdbtype.Uint32(len(code)*1000 + 1),
		"iso_code":   mmdbtype.String(code),
		"names":      mmdbtype.Map{"en": mmdbtype.String("Country " + code)},
	}
}
