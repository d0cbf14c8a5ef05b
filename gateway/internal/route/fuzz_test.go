package route

import (
	"bytes"
	"testing"
	"time"
)

// FuzzClean checks the properties the gateway's security rests on: a clean
// path is stable (cleaning again changes nothing), absolute, has no empty,
// "." or ".." segments (nor one with path parameters, "..;") and no escaped
// separators, and route/public decisions made on it are the ones any later
// cleaning would make.
func FuzzClean(f *testing.F) {
	for _, s := range []string{"/", "/api/v1/orders", "//a/./b/../c/", "/api/v1/products/%2e%2e/orders",
		"/a%2Fb", "/%7Euser", "/a/%zz", "/..", "/a/b/../../..", "/%41%42%43/%25%2",
		"/api/v1/products/..;/orders", "/a/.;x/b"} {
		f.Add([]byte(s))
	}
	tb, err := Parse(DefaultSpec, time.Second, DefaultPublic)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		out, err := Clean(nil, raw)
		if err != nil {
			return
		}
		if len(out) == 0 || out[0] != '/' {
			t.Fatalf("Clean(%q) = %q: not absolute", raw, out)
		}
		again, err := Clean(nil, out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("Clean not idempotent: %q -> %q -> %q (%v)", raw, out, again, err)
		}
		for _, bad := range []string{"//", "/./", "/../", "%2F", "%5C", "\\"} {
			if bytes.Contains(out, []byte(bad)) {
				t.Fatalf("Clean(%q) = %q contains %q", raw, out, bad)
			}
		}
		if bytes.Contains(out, []byte("/..;")) || bytes.Contains(out, []byte("/.;")) {
			t.Fatalf("Clean(%q) = %q has a dot segment with path parameters", raw, out)
		}
		if bytes.HasSuffix(out, []byte("/..")) || bytes.HasSuffix(out, []byte("/.")) {
			t.Fatalf("Clean(%q) = %q ends in a dot segment", raw, out)
		}
		r1, ok1 := tb.Match(out)
		r2, ok2 := tb.Match(again)
		if ok1 != ok2 || (ok1 && r1.Service != r2.Service) {
			t.Fatalf("route decision unstable for %q", raw)
		}
		if tb.IsPublic([]byte("GET"), out) != tb.IsPublic([]byte("GET"), again) {
			t.Fatalf("public decision unstable for %q", raw)
		}
	})
}
