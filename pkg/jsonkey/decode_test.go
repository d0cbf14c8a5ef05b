package jsonkey_test

import (
	"strings"
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/jsonkey"
)

// TestDecodeRefusesWhatUnmarshalDrops: a document json.Unmarshal takes with
// a name misspelt or given twice (in any case: encoding/json folds it into
// one field) is an error naming it; a document Unmarshal takes as written
// decodes as Unmarshal decodes it, a null included.
func TestDecodeRefusesWhatUnmarshalDrops(t *testing.T) {
	type settings struct {
		Limit  int               `json:"limit"`
		Names  []string          `json:"names,omitempty"`
		Labels map[string]string `json:"labels,omitempty"`
	}
	for _, tc := range []struct {
		in   string
		want string // a part of the error; "" for none
	}{
		{`{"limit":5,"names":["a"],"labels":{"env":"a","ENV":"b"}}`, ""}, // a map's keys are its own
		{`{"LIMIT":5,"names":null}`, ""},                                 // one name, folded as encoding/json folds it
		{` {"limit":5} `, ""},
		{`{"limt":5}`, `unknown field "limt"`},
		{`{"limit":5,"limit":0}`, "key limit appears twice"},
		{`{"limit":5,"Limit":0}`, "key Limit appears twice"},
		{`{"limit":5,"labels":{"env":"a","env":"b"}}`, "key labels.env appears twice"},
		{`{"limit":5}{"limit":0}`, "data after the JSON value"},
		{`{"limit":5} x`, "data after the JSON value"},
		{`{"limit":"5"}`, "cannot unmarshal"},
		{`{"limit":5,}`, "invalid character"},
		{``, "EOF"},
	} {
		var got settings
		err := jsonkey.Decode([]byte(tc.in), &got)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("Decode(%s) = %v; want no error", tc.in, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("Decode(%s) = %v; want an error with %q", tc.in, err, tc.want)
		case tc.want == "" && got.Limit != 5:
			t.Errorf("Decode(%s) set limit %d; want 5", tc.in, got.Limit)
		}
	}
	kept := settings{Limit: 7}
	if err := jsonkey.Decode([]byte("null"), &kept); err != nil || kept.Limit != 7 {
		t.Errorf("Decode(null) = %v, left %+v; want no error and the value as it was", err, kept)
	}
}
