//go:build !race
package keys
import ("testing";"runtime";"github.com/latchkeyhq/latchkey")
func TestSzParts(t *testing.T){
	n:=100_000
	for _, f := range []struct{name string; fn func(i int) any}{
		{"scanned", func(i int) any { return scannedKey(t,i,"{}") }},
		{"entry", func(i int) any { return NewEntry(scannedKey(t,i,"{}")) }},
		{"bare entry", func(i int) any { return NewEntry(&latchkey.Key{ID:"x"}) }},
		{"bare key", func(i int) any { return &latchkey.Key{ID:"x"} }},
	} {
	before:=heapInUse()
	es:=make([]any,n)
	for i:=range es { es[i]=f.fn(i) }
	after:=heapInUse()
	t.Logf("%s: %.1f", f.name, float64(after-before)/float64(n))
	runtime.KeepAlive(es)
	}
}
