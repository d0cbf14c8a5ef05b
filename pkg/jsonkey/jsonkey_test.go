package jsonkey_test

import (
	"encoding/json"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/jsonkey"
)

// Types whose fields the keys below name.
type (
	nested struct {
		A struct {
			B [][]struct{ X int } `json:"b"`
		} `json:"a"`
	}
	kelvin   struct{ Kelvin int }
	bothCase struct {
		Lower int `json:"id"`
		Upper int `json:"ID"`
	}
	withMap struct {
		ID     string            `json:"id"`
		Labels map[string]string `json:"labels"`
		Meta   any               `json:"meta"`
		Raw    json.RawMessage   `json:"raw"`
	}
	embedded struct {
		withMap
		Note string `json:"note"`
	}
)

func TestDuplicate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		t    reflect.Type // what in decodes into; nil: nothing known, keys compared as they are
		want string
	}{
		{`{"a":1,"b":2}`, nil, ""},
		{`{"a":[{"k":1},{"k":2}],"b":{"k":1},"k":3}`, nil, ""}, // one key in many objects
		{`{"a":{"k":1},"a":2}`, nil, "a"},
		{`{"a":{"b":[[{"x":1,"X":2}]]}}`, reflect.TypeFor[nested](), "a.b[0][0].X"},
		{`{"a":{"b":[[{"x":1,"X":2}]]}}`, nil, ""}, // into an any: a map with both keys
		{`[{"k":1},{"k":1,"k":2}]`, nil, "[1].k"},
		{`{"Kelvin":1,"\u212aelvin":2}`, reflect.TypeFor[*kelvin](), "\u212aelvin"}, // encoding/json folds the Kelvin sign to K
		{`{"id":1,"ID":2}`, reflect.TypeFor[bothCase](), ""},                        // two fields, each named exactly
		{`{"id":1,"Id":2}`, reflect.TypeFor[bothCase](), "Id"},                      // Id sets the first that folds equal
		{`{"a":1,"\u0061":2}`, nil, "\u0061"},                                       // equal once unescaped
		{`{"s":"{\"a\":1,\"a\":2}"}`, nil, ""},                                      // a string is not an object
		{`"scalar"`, nil, ""},
		// Keys no field takes are compared folded: another struct may take them.
		{`{"id":"a","x":1,"X":2}`, reflect.TypeFor[withMap](), "X"},
		// A map's keys, and an any's or a raw value's objects, as they are.
		{`{"labels":{"env":"a","ENV":"b"},"meta":{"k":1,"K":2},"raw":{"k":1,"K":2}}`, reflect.TypeFor[withMap](), ""},
		{`{"labels":{"env":"a","env":"b"}}`, reflect.TypeFor[withMap](), "labels.env"},
		{`{"raw":{"k":1,"k":2}}`, reflect.TypeFor[withMap](), "raw.k"},
		// Promoted fields of an embedded struct.
		{`{"note":"n","ID":"a","id":"b"}`, reflect.TypeFor[embedded](), "id"},
		// Stops at a syntax error, with what it found before.
		{`{"a":1,"a":`, nil, "a"},
		{`{"a":1,}`, nil, ""},
	} {
		if got := jsonkey.Duplicate([]byte(tc.in), tc.t); got != tc.want {
			t.Errorf("Duplicate(%s, %v) = %q, want %q", tc.in, tc.t, got, tc.want)
		}
	}
}

// TestDuplicateFoldsAsEncodingJSON holds the folding to what encoding/json
// itself does: two keys are one exactly when it sets one field from both.
// Upper-casing each rune's lower case (which payment's copy of the rule did)
// takes the dotless ı for i, and keeps U+0390 and U+1FD3 apart.
func TestDuplicateFoldsAsEncodingJSON(t *testing.T) {
	type dotted struct {
		ID string `json:"id"`
	}
	type greek struct {
		G string `json:"\u0390"`
	}
	for _, tc := range []struct {
		in  string
		t   reflect.Type
		dst func() (any, func() string)
	}{
		{`{"id":"first","ıd":"last"}`, reflect.TypeFor[dotted](), func() (any, func() string) {
			var d dotted
			return &d, func() string { return d.ID }
		}},
		{`{"id":"first","ID":"last"}`, reflect.TypeFor[dotted](), func() (any, func() string) {
			var d dotted
			return &d, func() string { return d.ID }
		}},
		{`{"\u0390":"first","\u1fd3":"last"}`, reflect.TypeFor[greek](), func() (any, func() string) {
			var d greek
			return &d, func() string { return d.G }
		}},
		{`{"sku":"first","ſku":"last"}`, reflect.TypeFor[struct {
			SKU string `json:"sku"`
		}](), nil},
	} {
		dup := jsonkey.Duplicate([]byte(tc.in), tc.t) != ""
		if tc.dst == nil {
			if !dup {
				t.Errorf("%s: not found", tc.in)
			}
			continue
		}
		v, field := tc.dst()
		if err := json.Unmarshal([]byte(tc.in), v); err != nil {
			t.Fatal(err)
		}
		oneField := field() == "last" // the second key overwrote the first
		if dup != oneField {
			t.Errorf("%s: Duplicate says one key: %v; encoding/json set one field from both: %v", tc.in, dup, oneField)
		}
	}
}

// Deep nesting costs memory in proportion to the data, not to its square:
// the walk built every level's path ("[0][0]...") as it went down, so 20 KB
// of nested arrays allocated 150 MB, and a 1 MB event payload of "[" (which
// event.Decode walks before json.Unmarshal refuses its depth) exhausted the
// consumer's memory.
func TestDeepNestingCostsLinearMemory(t *testing.T) {
	const depth = 10000 // the most encoding/json reads
	deep := func(open, inner, close string, n int) []byte {
		return []byte(strings.Repeat(open, n) + inner + strings.Repeat(close, n))
	}
	for _, data := range [][]byte{
		// An escaped or non-ASCII key anywhere leaves the data to the walk.
		deep("[", `{"\u0061":1}`, "]", depth),
		deep(`{"a":`, `{"\u212a":1}`, "}", depth),
		// Deeper than encoding/json reads, and never closed: event.Decode
		// walks it before json.Unmarshal refuses it.
		deep("[", "", "", 3*depth),
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		jsonkey.Duplicate(data, nil)
		runtime.ReadMemStats(&after)
		if got, limit := after.TotalAlloc-before.TotalAlloc, uint64(200*len(data)); got > limit {
			t.Errorf("Duplicate of %.20s... (%d bytes) allocated %d bytes, want at most %d", data, len(data), got, limit)
		}
	}
}

// Two embedded structs with a field of one name at one depth cancel out in
// encoding/json (unless one of them is tagged), so a key of that name is
// matched by folding to another field, which a key named exactly also sets:
// one field from two keys, which Duplicate must find as encoding/json does.
// The structs are made by reflect.StructOf: go vet refuses a struct whose
// embedded fields repeat a tag, which is what this is about.
type (
	ConflictA struct {
		X string `json:"ID"`
	}
	ConflictB struct {
		Y string `json:"ID"`
	}
	PlainName  struct{ Name string }
	TaggedName struct {
		Other string `json:"Name"`
	}
)

func TestDuplicateFindsTheFieldEncodingJSONSets(t *testing.T) {
	embed := func(v any) reflect.StructField {
		typ := reflect.TypeOf(v)
		return reflect.StructField{Name: typ.Name(), Type: typ, Anonymous: true}
	}
	str := reflect.TypeFor[string]()
	for _, tc := range []struct {
		in    string
		t     reflect.Type
		field []int // the field both keys set, if encoding/json takes them for one
	}{
		// "ID" names no field (A's and B's cancel out): it folds to Id.
		{`{"Id":"first","ID":"last"}`, reflect.StructOf([]reflect.StructField{embed(ConflictA{}), embed(ConflictB{}),
			{Name: "ID", Type: str, Tag: `json:"Id"`}}), []int{2}},
		// TaggedName's Name wins over PlainName's; "name" folds to it,
		// not to NAME.
		{`{"Name":"first","name":"last"}`, reflect.StructOf([]reflect.StructField{embed(PlainName{}), embed(TaggedName{}),
			{Name: "NAME", Type: str, Tag: `json:"NAME"`}}), []int{1, 0}},
	} {
		v := reflect.New(tc.t)
		if err := json.Unmarshal([]byte(tc.in), v.Interface()); err != nil {
			t.Fatal(err)
		}
		oneField := v.Elem().FieldByIndex(tc.field).String() == "last"
		if dup := jsonkey.Duplicate([]byte(tc.in), tc.t) != ""; dup != oneField {
			t.Errorf("%s: Duplicate says one key: %v; encoding/json set one field from both: %v", tc.in, dup, oneField)
		}
	}
}
