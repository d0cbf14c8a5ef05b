package server

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
)

// Types whose fields the keys below name: in an object that fills a struct,
// keys are compared as encoding/json matches them to fields, case-folded.
type (
	dupX      struct{ X int }
	dupNested struct {
		A struct {
			B [][]dupX `json:"b"`
		} `json:"a"`
	}
	dupKelvin struct{ Kelvin int }
	dupBoth   struct {
		Lower int `json:"id"`
		Upper int `json:"ID"`
	}
)

func TestDuplicateKey(t *testing.T) {
	for _, tc := range []struct {
		in   string
		t    reflect.Type // what in decodes into; nil: nothing known, keys compared as they are
		want string
	}{
		{`{"a":1,"b":2}`, nil, ""},
		{`{"a":[{"k":1},{"k":2}],"b":{"k":1},"k":3}`, nil, ""}, // one key in many objects
		{`{"a":{"k":1},"a":2}`, nil, "a"},
		{`{"a":{"b":[[{"x":1,"X":2}]]}}`, reflect.TypeFor[dupNested](), "a.b[0][0].X"},
		{`{"a":{"b":[[{"x":1,"X":2}]]}}`, nil, ""}, // into an any: a map with both keys
		{`[{"k":1},{"k":1,"k":2}]`, nil, "[1].k"},
		{`{"Kelvin":1,"\u212aelvin":2}`, reflect.TypeFor[*dupKelvin](), "\u212aelvin"}, // encoding/json folds the Kelvin sign to K
		{`{"id":1,"ID":2}`, reflect.TypeFor[dupBoth](), ""},                            // two fields, each named exactly
		{`{"id":1,"Id":2}`, reflect.TypeFor[dupBoth](), "Id"},                          // Id sets the first that folds equal
		{`{"a":1,"\u0061":2}`, nil, "\u0061"},                                          // equal once unescaped
		{`{"s":"{\"a\":1,\"a\":2}"}`, nil, ""},                                         // a string is not an object
		{`"scalar"`, nil, ""},
	} {
		if got := duplicateKey([]byte(tc.in), tc.t); got != tc.want {
			t.Errorf("duplicateKey(%s, %v) = %q, want %q", tc.in, tc.t, got, tc.want)
		}
	}
}

// labelled holds what a key's case does not select a field of: a map's keys,
// and objects decoded into any or kept raw, where "env" and "ENV" are two
// entries, as encoding/json decodes them.
type labelled struct {
	ID     string            `json:"id"`
	Labels map[string]string `json:"labels"`
	Meta   any               `json:"meta"`
	Raw    json.RawMessage   `json:"raw"`
	Items  []labelledItem    `json:"items"`
}

type labelledItem struct {
	Tags map[string]int `json:"tags"`
}

// TestDecodeJSONKeepsKeysThatDifferOnlyInCase: keys are compared case-folded
// because encoding/json matches a struct's fields so, but a map's keys, and
// the objects in an any or a json.RawMessage, are taken as they are: "env"
// and "ENV" are two entries of the map, both decoded. Such a body was refused
// as "a field appears more than once".
func TestDecodeJSONKeepsKeysThatDifferOnlyInCase(t *testing.T) {
	s, _ := newTestServer(t, Options{})
	var decoded labelled
	s.Router().POST("/l", func(c *gin.Context) {
		decoded = labelled{}
		if !DecodeJSON(c, &decoded) {
			return
		}
		c.Status(http.StatusOK)
	})
	for _, tc := range []struct {
		body      string
		wantField string // "" for 200
	}{
		{body: `{"labels":{"env":"a","ENV":"b"}}`},
		{body: `{"meta":{"k":1,"K":{"x":1,"X":2}}}`},
		{body: `{"raw":{"k":1,"K":2}}`},
		{body: `{"items":[{"tags":{"a":1,"A":2}}]}`},
		// Still refused: one struct field twice, in any case; one map key twice.
		{body: `{"id":"a","ID":"b"}`, wantField: "ID"},
		{body: `{"labels":{"env":"a","env":"b"}}`, wantField: "labels.env"},
		{body: `{"meta":{"k":1,"k":2}}`, wantField: "meta.k"},
		{body: `{"items":[{"tags":{"a":1}},{"TAGS":{},"tags":{}}]}`, wantField: "items[1].tags"},
	} {
		w := do(s.Handler(), http.MethodPost, "/l", strings.NewReader(tc.body), "Content-Type", "application/json")
		if tc.wantField == "" {
			if w.Code != http.StatusOK {
				t.Errorf("%s: status %d, want 200; body %s", tc.body, w.Code, w.Body)
			}
			continue
		}
		if w.Code != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400; body %s", tc.body, w.Code, w.Body)
			continue
		}
		if d := decodeProblem(t, w); len(d.Errors) != 1 || d.Errors[0].Field != tc.wantField {
			t.Errorf("%s: fields %+v, want %s", tc.body, d.Errors, tc.wantField)
		}
	}
}
