package main

import (
	"strings"
	"testing"
)

// A govulncheck stream as protocol v1 writes it (trimmed): one module-level, one package-level and two
// symbol-level findings for the same id, one for another id, and their OSV entries.
const stream = `{"config":{"protocol_version":"v1.0.0","go_version":"go1.26.11"}}
{"osv":{"id":"GO-2026-0001","summary":"Memory exhaustion in example.com/quic"}}
{"osv":{"id":"GO-2026-0002","summary":"CPU exhaustion in example.com/avro"}}
{"osv":{"id":"GO-2026-0003","summary":"Imported but not called"}}
{"finding":{"osv":"GO-2026-0003","fixed_version":"v1.0.1","trace":[{"module":"example.com/lib","version":"v1.0.0","package":"example.com/lib/x"}]}}
{"finding":{"osv":"GO-2026-0001","fixed_version":"v0.59.1","trace":[{"module":"example.com/quic","version":"v0.59.0"}]}}
{"finding":{"osv":"GO-2026-0001","fixed_version":"v0.59.1","trace":[{"module":"example.com/quic","version":"v0.59.0","package":"example.com/quic/http3","function":"Error","receiver":"*qpackError"},{"module":"github.com/shanhai-dev/shanhai/pkg","package":"github.com/shanhai-dev/shanhai/pkg/telemetry","function":"RecordError","receiver":"*serverSpan","position":{"filename":"telemetry/serverspan.go","line":382}}]}}
{"finding":{"osv":"GO-2026-0001","fixed_version":"v0.59.1","trace":[{"module":"example.com/quic","version":"v0.59.0","package":"example.com/quic/http3","function":"Other"},{"module":"m","package":"m/p","function":"F"}]}}
{"finding":{"osv":"GO-2026-0002","trace":[{"module":"example.com/avro","version":"v2.29.0","package":"example.com/avro","function":"init"},{"module":"m","package":"m/bridge","function":"init","position":{"filename":"bridge/leg.go","line":38}}]}}
`

func TestParseKeepsReachedFindings(t *testing.T) {
	found, err := parse(strings.NewReader(stream))
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 2 || found["GO-2026-0003"] != nil {
		t.Fatalf("found %v, want only the two ids with a called symbol", found)
	}
	q := found["GO-2026-0001"]
	want := finding{ID: "GO-2026-0001", Summary: "Memory exhaustion in example.com/quic", Module: "example.com/quic",
		Version: "v0.59.0", Fixed: "v0.59.1",
		Trace: "github.com/shanhai-dev/shanhai/pkg/telemetry/serverspan.go:382: telemetry.serverSpan.RecordError reaches http3.qpackError.Error"}
	if *q != want {
		t.Fatalf("GO-2026-0001 = %+v, want the first trace %+v", *q, want)
	}
	if a := found["GO-2026-0002"]; a.Fixed != "" || a.Trace != "m/bridge/leg.go:38: bridge.init reaches avro.init" {
		t.Fatalf("GO-2026-0002 = %+v", *a)
	}
}

func TestParseRefusesBrokenStream(t *testing.T) {
	if _, err := parse(strings.NewReader(`{"finding":{"osv":"GO-1"`)); err == nil {
		t.Fatal("a truncated stream parsed")
	}
}

func TestReport(t *testing.T) {
	found, err := parse(strings.NewReader(stream))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		allow  string
		failed int
		lines  []string
	}{
		{"nothing accepted", "", 2, []string{"FOUND    GO-2026-0001 in example.com/quic@v0.59.0 (fixed in v0.59.1)",
			"FOUND    GO-2026-0002 in example.com/avro@v2.29.0 (no fixed version)"}},
		{"one accepted", "# why\nGO-2026-0002 example.com/avro never decoded\n", 1,
			[]string{"accepted GO-2026-0002 in example.com/avro@v2.29.0 (no fixed version): never decoded"}},
		{"accepted in another module", "GO-2026-0002 example.com/other never decoded\n", 3,
			[]string{"FOUND    GO-2026-0002", "stale    GO-2026-0002 in example.com/other"}},
		{"stale", "GO-2026-0001 example.com/quic x\nGO-2026-0002 example.com/avro y\nGO-2026-0009 example.com/gone z\n", 1,
			[]string{"stale    GO-2026-0009 in example.com/gone"}},
	} {
		allow, err := parseAllow(c.allow)
		if err != nil {
			t.Fatal(err)
		}
		var out strings.Builder
		if got := report(&out, found, allow); got != c.failed {
			t.Errorf("%s: %d failures, want %d\n%s", c.name, got, c.failed, out.String())
		}
		for _, l := range c.lines {
			if !strings.Contains(out.String(), l) {
				t.Errorf("%s: output lacks %q:\n%s", c.name, l, out.String())
			}
		}
	}
}

func TestParseAllowWantsAReason(t *testing.T) {
	if _, err := parseAllow("GO-2026-0002 example.com/avro\n"); err == nil {
		t.Fatal("a line without a reason was accepted")
	}
	list, err := parseAllow(allowText)
	if err != nil {
		t.Fatalf("allow.txt: %v", err)
	}
	for _, a := range list {
		if !strings.HasPrefix(a.ID, "GO-") || !strings.Contains(a.Module, "/") {
			t.Errorf("allow.txt line %+v: want a GO- id and a module path", a)
		}
	}
}
