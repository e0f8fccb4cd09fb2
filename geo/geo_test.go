package geo_test

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/latchkeyhq/latchkey/geo"
	"github.com/latchkeyhq/latchkey/geo/geotest"
	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// testDB builds and opens a database with documentation ranges in both
// families, a more specific network inside a wider one, lower-case codes,
// and records that need the registered_country fallback.
func testDB(t testing.TB) *geo.DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "country.mmdb")
	geotest.WriteRecords(t, path, map[string]geotest.Record{
		"192.0.2.0/24":     {Country: "DE", RegisteredCountry: "DE"},
		"198.51.100.0/24":  {Country: "us", RegisteredCountry: "us"},
		"2001:db8::/32":    {Country: "FR", RegisteredCountry: "FR"},
		"2001:db8:1::/48":  {Country: "JP", RegisteredCountry: "JP"},
		"203.0.113.0/25":   {RegisteredCountry: "NL"},
		"203.0.113.128/26": {Country: "XYZ", RegisteredCountry: "IT"},
		"203.0.113.192/26": {Country: "1A"},
	})
	db, err := geo.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestCountry(t *testing.T) {
	db := testDB(t)
	tests := []struct {
		name string
		ip   string
		want string // "" for not found
	}{
		{"ipv4", "192.0.2.7", "DE"},
		{"ipv4 first address", "192.0.2.0", "DE"},
		{"ipv4 last address", "192.0.2.255", "DE"},
		{"ipv4 lower-case code is upper-cased", "198.51.100.1", "US"},
		{"ipv4-mapped ipv6", "::ffff:192.0.2.7", "DE"},
		{"6to4 ipv6 reaches the ipv4 record", "2002:c000:207::1", "DE"},
		{"ipv6", "2001:db8::1", "FR"},
		{"ipv6 with a zone", "2001:db8::1%eth0", "FR"},
		{"ipv6 more specific network", "2001:db8:1::5", "JP"},
		{"ipv6 next to the more specific network", "2001:db8:2::5", "FR"},
		{"registered country when there is no country", "203.0.113.5", "NL"},
		{"registered country when the country is malformed", "203.0.113.130", "IT"},
		{"malformed code and no fallback", "203.0.113.200", ""},
		{"unknown ipv4", "10.1.2.3", ""},
		{"unknown ipv4 next to a known network", "192.0.3.0", ""},
		{"unknown ipv6", "2001:db9::1", ""},
		{"loopback", "::1", ""},
	}
	// Twice: the first pass decodes records, the second answers from the
	// cache of decoded records.
	for pass := range 2 {
		for _, tt := range tests {
			got, ok := db.Country(netip.MustParseAddr(tt.ip))
			if got != tt.want || ok != (tt.want != "") {
				t.Errorf("pass %d, %s: Country(%s) = %q, %v; want %q, %v", pass, tt.name, tt.ip, got, ok, tt.want, tt.want != "")
			}
		}
	}
	if got, ok := db.Country(netip.Addr{}); got != "" || ok {
		t.Errorf("Country(zero Addr) = %q, %v; want \"\", false", got, ok)
	}
	if db.DatabaseType() != "GeoLite2-Country" {
		t.Errorf("DatabaseType = %q", db.DatabaseType())
	}
	if db.BuildTime().IsZero() {
		t.Error("BuildTime is zero")
	}
}

func TestWriteCountryDB(t *testing.T) {
	path := filepath.Join(t.TempDir(), "country.mmdb")
	geotest.WriteCountryDB(t, path, map[string]string{
		"10.0.0.0/8":     "CA",
		"10.1.0.0/16":    "MX",
		"2001:db8::/32":  "BR",
		"192.0.2.0/24":   "de",
		"2001:db8::/127": "AR",
	})
	db, err := geo.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for ip, want := range map[string]string{
		"10.200.0.1":  "CA",
		"10.1.2.3":    "MX", // the more specific network wins whatever the map order
		"2001:db8::1": "AR",
		"2001:db8::2": "BR",
		"192.0.2.1":   "DE",
	} {
		if got, ok := db.Country(netip.MustParseAddr(ip)); got != want || !ok {
			t.Errorf("Country(%s) = %q, %v; want %q", ip, got, ok, want)
		}
	}
}

func TestCountryConcurrent(t *testing.T) {
	db := testDB(t)
	want := map[string]string{"192.0.2.7": "DE", "2001:db8::1": "FR", "203.0.113.5": "NL", "10.0.0.1": ""}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				for ip, w := range want {
					if got, _ := db.Country(netip.MustParseAddr(ip)); got != w {
						t.Errorf("Country(%s) = %q, want %q", ip, got, w)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

func TestCountryAfterCloseFindsNothing(t *testing.T) {
	db := testDB(t)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if got, ok := db.Country(netip.MustParseAddr("192.0.2.7")); ok {
		t.Errorf("Country after Close = %q, true", got)
	}
}

func TestOpenRefuses(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.mmdb")
	geotest.WriteCountryDB(t, good, map[string]string{"192.0.2.0/24": "DE", "2001:db8::/32": "FR"})
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// The search tree comes first in the file; overwriting it with 0xff
	// sends every record past the end of the data.
	damaged := slices.Clone(data)
	for i := 0; i < len(damaged)/3; i++ {
		damaged[i] = 0xff
	}
	cases := map[string]string{
		"missing file":    filepath.Join(dir, "missing.mmdb"),
		"empty file":      write("empty.mmdb", nil),
		"not a mmdb":      write("text.mmdb", []byte("this is not a MaxMind database\n")),
		"truncated":       write("truncated.mmdb", data[:len(data)/2]),
		"damaged tree":    write("damaged.mmdb", damaged),
		"an ASN database": writeASN(t, filepath.Join(dir, "asn.mmdb")),
	}
	for name, path := range cases {
		db, err := geo.Open(path)
		if err == nil {
			db.Close()
			t.Errorf("%s: Open succeeded", name)
		}
	}
}

func writeASN(t *testing.T, path string) string {
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "GeoLite2-ASN", IncludeReservedNetworks: true})
	if err != nil {
		t.Fatal(err)
	}
	_, n, _ := net.ParseCIDR("192.0.2.0/24")
	if err := tree.Insert(n, mmdbtype.Map{"autonomous_system_number": mmdbtype.Uint32(64496)}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := tree.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	return path
}
