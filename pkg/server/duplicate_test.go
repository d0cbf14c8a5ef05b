package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
)

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

// TestDuplicateKeyIsQuotedShort: the 400 names the repeated key's path, but
// a key may be as long as the body limit allows, and the problem quoted it
// whole: a megabyte sent back for a megabyte received, and into every log
// that records problems. It is cut, as event.Decode cuts it.
func TestDuplicateKeyIsQuotedShort(t *testing.T) {
	s, _ := newTestServer(t, Options{})
	s.Router().POST("/l", func(c *gin.Context) {
		var decoded labelled
		if DecodeJSON(c, &decoded) {
			c.Status(http.StatusOK)
		}
	})
	key := strings.Repeat("k", 100_000)
	body := `{"meta":{"` + key + `":1,"` + key + `":2}}`
	w := do(s.Handler(), http.MethodPost, "/l", strings.NewReader(body), "Content-Type", "application/json")
	if w.Code != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", w.Code)
	}
	d := decodeProblem(t, w)
	if len(d.Errors) != 1 || !strings.HasPrefix(d.Errors[0].Field, "meta.kkk") || len(d.Errors[0].Field) > maxQuotedPath+len("…") {
		t.Fatalf("problem field of %d bytes (%.40q…), want the path cut to %d bytes", len(d.Errors[0].Field), d.Errors[0].Field, maxQuotedPath)
	}
	if w.Body.Len() > 4096 {
		t.Errorf("a %d-byte problem body for a repeated key", w.Body.Len())
	}
}
