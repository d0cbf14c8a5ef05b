package server

import "testing"

func TestDuplicateKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"a":1,"b":2}`, ""},
		{`{"a":[{"k":1},{"k":2}],"b":{"k":1},"k":3}`, ""}, // one key in many objects
		{`{"a":{"k":1},"a":2}`, "a"},
		{`{"a":{"b":[[{"x":1,"X":2}]]}}`, "a.b[0][0].X"},
		{`[{"k":1},{"k":1,"k":2}]`, "[1].k"},
		{`{"Kelvin":1,"\u212aelvin":2}`, "\u212aelvin"}, // encoding/json folds the Kelvin sign to K
		{`{"s":"{\"a\":1,\"a\":2}"}`, ""},               // a string is not an object
		{`"scalar"`, ""},
	} {
		if got := duplicateKey([]byte(tc.in)); got != tc.want {
			t.Errorf("duplicateKey(%s) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
