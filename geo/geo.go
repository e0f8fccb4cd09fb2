// Package geo maps client IP addresses to countries with a MaxMind
// database (GeoLite2-Country or GeoIP2-Country; the City and Enterprise
// databases hold the same country fields), for keys restricted to some
// countries.
package geo

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/latchkeyhq/latchkey"
)

// maxCachedRecords bounds the per-database cache of decoded records. A
// Country database has a few thousand distinct records at most, so they
// all fit; a City database has far more, and records past the bound are
// decoded on every lookup instead.
const maxCachedRecords = 4096

// DB is an open MaxMind database. Country is safe for concurrent use;
// Close must not run concurrently with it.
type DB struct {
	r *maxminddb.Reader

	// codes maps a record's offset in the data section to its country
	// code ("" for a record without one). Many networks share one record,
	// and the offset identifies it, so each record is decoded once. The
	// map is replaced, never modified (copy on write under mu): readers
	// take no lock and write no shared memory, so lookups on many cores do
	// not contend, and the rare insert pays for a copy of at most
	// maxCachedRecords entries.
	codes atomic.Pointer[map[uintptr]string]
	mu    sync.Mutex
}

// Open opens the MMDB file at path and verifies it completely, so that a
// damaged file is refused at start-up rather than failing lookups one by
// one. Databases whose type names neither a country nor a city (an ASN
// database, say) are refused: every lookup in them would find no country.
func Open(path string) (*DB, error) {
	r, err := maxminddb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("geo: open %s: %w", path, err)
	}
	if err := r.Verify(); err != nil {
		r.Close()
		return nil, fmt.Errorf("geo: %s is damaged: %w", path, err)
	}
	t := strings.ToLower(r.Metadata.DatabaseType)
	if !strings.Contains(t, "country") && !strings.Contains(t, "city") && !strings.Contains(t, "enterprise") {
		r.Close()
		return nil, fmt.Errorf("geo: %s is a %q database, which has no country data; use GeoLite2-Country or GeoIP2-Country", path, r.Metadata.DatabaseType)
	}
	return &DB{r: r}, nil
}

// Close releases the database. Lookups must have finished.
func (db *DB) Close() error { return db.r.Close() }

// DatabaseType returns the database's type, such as "GeoLite2-Country".
func (db *DB) DatabaseType() string { return db.r.Metadata.DatabaseType }

// BuildTime returns when the database was built, to log how old it is.
func (db *DB) BuildTime() time.Time { return db.r.Metadata.BuildTime() }

// record holds only the two fields Country reads; the decoder skips the
// rest of the record (names in every language, continent, geoname ids)
// without materialising it.
type record struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	RegisteredCountry struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"registered_country"`
}

// Country returns the ISO 3166-1 alpha-2 code (upper case) of the country
// ip is in: the record's country, or for networks the database places in
// no country (anycast, satellite providers, some cloud ranges) the country
// where the network is registered. ok is false for an invalid address, an
// address the database does not know, or a record without a well-formed
// code. IPv4-mapped IPv6 addresses are looked up as IPv4.
//
// Once a record has been seen, Country does not allocate.
func (db *DB) Country(ip netip.Addr) (code string, ok bool) {
	if !ip.IsValid() {
		return "", false
	}
	res := db.r.Lookup(ip.Unmap())
	if !res.Found() {
		return "", false
	}
	off := res.Offset()
	if m := db.codes.Load(); m != nil {
		if c, hit := (*m)[off]; hit {
			return c, c != ""
		}
	}
	var rec record
	// A decoding error leaves rec empty, which is remembered as "no
	// country": the database was verified at Open, so the same record
	// would fail the same way again.
	_ = res.Decode(&rec)
	c, ok := latchkey.CountryCode(rec.Country.ISOCode)
	if !ok {
		c, ok = latchkey.CountryCode(rec.RegisteredCountry.ISOCode)
	}
	db.remember(off, c)
	return c, ok
}

// remember caches the code of the record at off, unless the cache is full.
func (db *DB) remember(off uintptr, code string) {
	db.mu.Lock()
	defer db.mu.Unlock()
	var old map[uintptr]string
	if p := db.codes.Load(); p != nil {
		old = *p
	}
	if _, ok := old[off]; ok || len(old) >= maxCachedRecords {
		return
	}
	m := make(map[uintptr]string, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[off] = code
	db.codes.Store(&m)
}
