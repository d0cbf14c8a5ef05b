package jsonkey

import (
	"reflect"
	"strings"
	"testing"
)

type fuzzTarget struct {
	ID     string         `json:"id"`
	Kelvin int            `json:"kelvin"`
	Labels map[string]int `json:"labels"`
	Items  []struct {
		SKU string `json:"sku"`
	} `json:"items"`
	Meta any `json:"meta"`
}

// FuzzPlain: the fast path may only ever answer "no key twice" where the walk
// finds none, whatever the data and the type it is read into.
func FuzzPlain(f *testing.F) {
	for _, s := range []string{
		`{"id":"a","kelvin":1,"labels":{"a":1,"A":2},"items":[{"sku":"x"},{"sku":"y"}],"meta":{"k":[1,{"k":2}]}}`,
		`{"id":"a","ID":"b"}`, `{"a":{"b":1},"a":2}`, `{"\u212aelvin":1,"kelvin":2}`, `{"ſku":1,"sku":2}`,
		`{"a":"\"","a":1}`, `{"a\"":1,"a\"":2}`, `{"\xff":1,"\xfe":2}`, `[{"k":1},{"k":1,"k":2}]`, `{"a":1}{"a":2}`,
		`{"s":"{\"a\":1,\"a\":2}"}`, `{"a":1,`, `}{`, `"x"`, `{"items":[{"sku":1,"SKU":2}]}`,
		`{` + strings.Repeat(`"k":1,`, 40) + `"z":0}`,
		// Found by review: escapes and folds the byte scan must leave to
		// the walk, strings that look like structure, nesting and
		// invalid data.
		`{"\u0069d":1,"id":2}`, `{"\/":1,"/":2}`, `{"a\/b":1,"a/b":2}`, `{"\u004B":1,"k":2}`,
		`{"Kelvin":1,"\u212Aelvin":2}`, `{"\u017Fku":1,"SKU":2}`, `{"\ud800":1,"\ufffd":2}`,
		`{"a":"\":","a":1}`, `{"a":"x\"}","a":1}`, `{"a":"{\"a\":","b":"}"}`, `{"s":"\\","s":1}`,
		`{"a":[{"a":1}],"b":{"a":{"a":[]}},"a":0}`, `[[{"k":1}],[{"k":1}]]`, `{"a":{},"b":{},"A":{}}`,
		strings.Repeat(`[`, 40) + `{"a":1,"a":2}` + strings.Repeat(`]`, 40),
		`{"a":1 "a":2}`, `{"a" "a":1}`, `{"a":1,,"a":2}`, `{"a":1]`, `[{"a":1}}`, `{"a":1,"a":2`, `{"a`,
	} {
		f.Add([]byte(s))
	}
	types := []reflect.Type{nil, reflect.TypeFor[fuzzTarget](), reflect.TypeFor[map[string]any]()}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !plain(data) {
			return
		}
		for _, typ := range types {
			if path := walk(data, typ); path != "" {
				t.Fatalf("plain(%q) = true, but %q appears twice read into %v", data, path, typ)
			}
		}
	})
}

// TestPlainTakesTheCommonCase: the platform's own payloads and bodies take
// the fast path, and allocate nothing there.
func TestPlainTakesTheCommonCase(t *testing.T) {
	data := []byte(`{"order_id":"0193a5f0-7b1c-7c3e-9a4f-2b8d6e1f0a12","user_id":"u","total_cents":4350,"currency":"EUR",` +
		`"items":[{"sku":"TEA-GREEN-100G","quantity":2,"unit_price_cents":1200},{"sku":"CUP","quantity":1,"unit_price_cents":1950}],` +
		`"note":"naïve \"quoted\" text"}`)
	if !plain(data) {
		t.Fatal("an order.created left to the walk")
	}
	if n := testing.AllocsPerRun(100, func() { Duplicate(data, reflect.TypeFor[fuzzTarget]()) }); n != 0 {
		t.Errorf("Duplicate allocates %v times on it, want 0", n)
	}
}
