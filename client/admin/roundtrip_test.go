package admin_test

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/audit"
	"github.com/latchkeyhq/latchkey/client/admin"
	"github.com/latchkeyhq/latchkey/httpapi"
	"github.com/latchkeyhq/latchkey/keys"
)

// The admin client declares its own copy of each answer whose server type
// lives in a service package, so that it links none of the server. This
// test holds every copy to its server type: each, with every field set,
// goes through the other and back without a field unknown to the other
// (DisallowUnknownFields) and without a value lost or changed, both ways.
func TestAnswerTypesMatchTheServers(t *testing.T) {
	pairs := []struct {
		name           string
		server, client any
	}{
		{"audit.Verdict", &audit.Verdict{}, &admin.AuditVerdict{}},
		{"audit.SecurityEvent", &audit.SecurityEvent{}, &admin.SecurityEvent{}},
		{"audit.UsageReport", &audit.UsageReport{}, &admin.UsageReport{}},
		{"audit.AccessReport", &audit.AccessReport{}, &admin.AccessReport{}},
		{"audit.TenantUsageReport", &audit.TenantUsageReport{}, &admin.TenantUsageReport{}},
		{"audit.SecurityReport", &audit.SecurityReport{}, &admin.SecurityReport{}},
		{"keys.ImportResult", &keys.ImportResult{}, &admin.ImportResult{}},
		{"httpapi.VerifyResponse", &httpapi.VerifyResponse{}, &admin.VerifyResponse{}},
		{"audit.OwnerUsageReport", &audit.OwnerUsageReport{}, &admin.OwnerUsageReport{}},
	}
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			roundTrip(t, "server→admin", p.server, p.client)
			roundTrip(t, "admin→server", p.client, p.server)
		})
	}
}

// roundTrip fills a new value of from's type, decodes its JSON strictly
// into a new value of to's type, and checks that encoding that gives the
// same JSON.
func roundTrip(t *testing.T, dir string, from, to any) {
	t.Helper()
	src := reflect.New(reflect.TypeOf(from).Elem())
	fill(t, src.Elem(), 0)
	a, err := json.Marshal(src.Interface())
	if err != nil {
		t.Fatal(err)
	}
	dst := reflect.New(reflect.TypeOf(to).Elem()).Interface()
	dec := json.NewDecoder(bytes.NewReader(a))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		t.Fatalf("%s: %s does not read %s: %v", dir, reflect.TypeOf(to).Elem(), a, err)
	}
	b, err := json.Marshal(dst)
	if err != nil {
		t.Fatal(err)
	}
	if !sameJSON(t, a, b) {
		t.Errorf("%s: the JSON changed going through %s:\n%s\n%s", dir, reflect.TypeOf(to).Elem(), a, b)
	}
}

var (
	timeType     = reflect.TypeOf(time.Time{})
	prefixType   = reflect.TypeOf(netip.Prefix{})
	durationType = reflect.TypeOf(latchkey.Duration(0))
)

// fill sets every exported field of v, recursively, to a value that is
// not zero, so that omitempty hides none and every name is compared.
func fill(t *testing.T, v reflect.Value, depth int) {
	t.Helper()
	if depth > 8 {
		t.Fatalf("fill: %s nests too deep", v.Type())
	}
	switch v.Type() {
	case timeType:
		v.Set(reflect.ValueOf(time.Date(2030, 1, 2, 3, 4, 5, 6000, time.UTC)))
		return
	case prefixType:
		v.Set(reflect.ValueOf(netip.MustParsePrefix("10.1.0.0/16")))
		return
	case durationType:
		v.Set(reflect.ValueOf(latchkey.Duration(time.Hour)))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString("s")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(7)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(7)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(1.5)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fill(t, p.Elem(), depth+1)
		v.Set(p)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		fill(t, s.Index(0), depth+1)
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k := reflect.New(v.Type().Key()).Elem()
		fill(t, k, depth+1)
		e := reflect.New(v.Type().Elem()).Elem()
		fill(t, e, depth+1)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Interface:
		v.Set(reflect.ValueOf("x"))
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			if f.Tag.Get("json") == "-" || !f.IsExported() && !f.Anonymous {
				continue
			}
			fill(t, v.Field(i), depth+1)
		}
	default:
		t.Fatalf("fill: no value for %s", v.Type())
	}
}
