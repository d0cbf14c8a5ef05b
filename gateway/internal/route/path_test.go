package route

import (
	"bytes"
	"testing"
)

func TestClean(t *testing.T) {
	cases := []struct {
		in, want string
		bad      bool
	}{
		{in: "/", want: "/"},
		{in: "/api/v1/orders", want: "/api/v1/orders"},
		{in: "/api/v1/orders/", want: "/api/v1/orders/"},
		{in: "//api///v1/orders", want: "/api/v1/orders"},
		{in: "/api/./v1/orders", want: "/api/v1/orders"},
		{in: "/api/v1/products/../orders", want: "/api/v1/orders"},
		{in: "/api/v1/products/%2e%2E/orders", want: "/api/v1/orders"},
		{in: "/api/v1/%6Frders", want: "/api/v1/orders"},
		{in: "/a/%7e%41", want: "/a/~A"},
		{in: "/a/%3a%3A", want: "/a/%3A%3A"},
		{in: "/a/%25", want: "/a/%25"},
		{in: "/a/..", want: "/"},
		{in: "/a/.", want: "/a/"},
		{in: "/..", bad: true},
		{in: "/a/../..", bad: true},
		// Servlet containers strip path parameters (";...") from each
		// segment before resolving dot segments: "..;" climbs there.
		{in: "/api/v1/products/..;/orders", bad: true},
		{in: "/api/v1/products/..;x=1/orders", bad: true},
		{in: "/api/v1/products/%2e%2E;/orders", bad: true},
		{in: "/a/.;/b", bad: true},
		{in: "/a/..;", bad: true},
		{in: "/a/...;/b", want: "/a/...;/b"},
		{in: "/a/..x;/b", want: "/a/..x;/b"},
		{in: "/a;b/c;d", want: "/a;b/c;d"},
		{in: "/a%2Fb", bad: true},
		{in: "/a%5cb", bad: true},
		{in: "/a\\b", bad: true},
		{in: "/a%00", bad: true},
		{in: "/a%zz", bad: true},
		{in: "/a%4", bad: true},
		{in: "/a b", bad: true},
		{in: "/caf\xc3\xa9", bad: true},
		{in: "", bad: true},
		{in: "api/v1", bad: true},
		{in: "*", bad: true},
	}
	for _, c := range cases {
		got, err := Clean(nil, []byte(c.in))
		if c.bad {
			if err == nil {
				t.Errorf("Clean(%q) = %q, want error", c.in, got)
			}
			continue
		}
		if err != nil || string(got) != c.want {
			t.Errorf("Clean(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func TestCleanAppendsToDst(t *testing.T) {
	got, err := Clean([]byte("x"), []byte("/a//b"))
	if err != nil || string(got) != "x/a/b" {
		t.Fatalf("got %q, %v", got, err)
	}
	got, err = Clean([]byte("x"), []byte("/.."))
	if err == nil || !bytes.Equal(got, []byte("x")) {
		t.Fatalf("failed Clean must leave dst as it was, got %q, %v", got, err)
	}
}

func BenchmarkClean(b *testing.B) {
	raw := []byte("/api/v1/orders/0195f3a2-7c1e-7bb4-9d1c-2f0c9b1e8a11")
	buf := make([]byte, 0, 128)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = Clean(buf[:0], raw)
	}
}
