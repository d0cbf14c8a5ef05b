package page

import (
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"
)

func query(t *testing.T, raw string) (Params, []string) {
	t.Helper()
	c, _ := gin.CreateTestContext(httptest.NewRecorder())
	c.Request = httptest.NewRequest("GET", "/?"+raw, nil)
	p, bad := Query(c, 100)
	var fields []string
	for _, f := range bad {
		fields = append(fields, f.Field)
	}
	return p, fields
}

func TestQuery(t *testing.T) {
	const id = "0193a7c4-5b6e-7d8f-9a0b-1c2d3e4f5a6b"
	for _, tc := range []struct {
		raw  string
		want Params
		bad  []string
	}{
		{"", Params{}, nil},
		{"limit=1&cursor=" + Cursor(id), Params{Limit: 1, Cursor: id}, nil},
		{"limit=100", Params{Limit: 100}, nil},
		{"limit=0", Params{}, []string{"limit"}},
		{"limit=101", Params{}, []string{"limit"}},
		{"limit=ten&cursor=bm90LWFuLWlk", Params{}, []string{"limit", "cursor"}},
		// The id upper-cased is a UUID, but not one Cursor made.
		{"cursor=" + Cursor("0193A7C4-5B6E-7D8F-9A0B-1C2D3E4F5A6B"), Params{}, []string{"cursor"}},
		{"cursor=" + Cursor(id) + "%3D%3D", Params{}, []string{"cursor"}}, // padded: not base64url without padding
		// Given twice, even alike: which one the client meant is not ours to
		// guess, and the order listing refuses a repeated status the same way.
		{"limit=1&limit=2", Params{}, []string{"limit"}},
		{"limit=5&limit=5&cursor=" + Cursor(id) + "&cursor=" + Cursor(id), Params{}, []string{"limit", "cursor"}},
		{"limit=&limit=5", Params{}, []string{"limit"}},
	} {
		p, bad := query(t, tc.raw)
		if len(bad) != len(tc.bad) {
			t.Errorf("%q: bad %v, want %v", tc.raw, bad, tc.bad)
			continue
		}
		for i := range bad {
			if bad[i] != tc.bad[i] {
				t.Errorf("%q: bad %v, want %v", tc.raw, bad, tc.bad)
			}
		}
		if len(tc.bad) == 0 && p != tc.want {
			t.Errorf("%q: %+v, want %+v", tc.raw, p, tc.want)
		}
	}
}

func TestCursorOfNoRowIsEmpty(t *testing.T) {
	if got := Cursor(""); got != "" {
		t.Fatalf("Cursor(\"\") = %q, want no next page", got)
	}
}
