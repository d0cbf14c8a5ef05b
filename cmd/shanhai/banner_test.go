package main

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// The banner's traces line says what pkg/telemetry does with the same
// variables: the per-signal endpoint is used before the general one, and
// OTEL_TRACES_EXPORTER=none (in any case) or OTEL_SDK_DISABLED=true turns
// export off whatever the endpoints say.
func TestBannerSaysWhereTracesGo(t *testing.T) {
	const (
		general = "http://collector:4318"
		traces  = "http://jaeger:4318"
	)
	for _, c := range []struct {
		name                             string
		endpoint, tracesEP, exp, disable string
		want                             string
	}{
		{"nothing set", "", "", "", "", "Traces: off; set OTEL_EXPORTER_OTLP_ENDPOINT"},
		{"general endpoint", general, "", "", "", "Traces: exported over OTLP to " + general + "."},
		{"traces endpoint only", "", traces, "", "", "Traces: exported over OTLP to " + traces + "."},
		{"traces endpoint first", general, traces, "", "", "Traces: exported over OTLP to " + traces + "."},
		{"exporter none", general, "", "none", "", "Traces: off (OTEL_TRACES_EXPORTER=none)."},
		{"exporter NONE", general, "", "NONE", "", "Traces: off (OTEL_TRACES_EXPORTER=none)."},
		{"SDK disabled", general, "", "", "true", "Traces: off (OTEL_SDK_DISABLED=true)."},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", c.endpoint)
			t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", c.tracesEP)
			t.Setenv("OTEL_TRACES_EXPORTER", c.exp)
			t.Setenv("OTEL_SDK_DISABLED", c.disable)
			var out strings.Builder
			Banner(&out, bannerPlatform(), false, Memory{}, nil)
			var got string
			for line := range strings.Lines(out.String()) {
				if strings.HasPrefix(line, "Traces:") {
					got = line
				}
			}
			if !strings.HasPrefix(got, c.want) {
				t.Errorf("traces line = %q, want it to start %q", got, c.want)
			}
		})
	}
}

// bannerPlatform is what Banner reads of a running platform: the parts'
// ports, the log directory and the servers' variables.
func bannerPlatform() *Platform {
	p := &Platform{Parts: map[string]*Part{}, Env: map[string]string{}, LogDir: "/tmp/logs"}
	for i, name := range Names {
		p.Parts[name] = &Part{Name: name, Port: 8080 + i}
	}
	return p
}

// The demo's Idempotency-Key comes from something every machine the run
// builds for has. It was read from /proc/sys/kernel/random/uuid, which macOS
// has not: there KEY was empty, the order a 400 "an Idempotency-Key header is
// required", ORDER "null" and the poll printed null instead of PAID. The
// test runs the demo's KEY line in bash, twice, for two different keys.
func TestBannerDemoKeyNeedsNoLinuxOnlyFile(t *testing.T) {
	line := demoKeyLine(t)
	if strings.Contains(line, "/proc/") {
		t.Fatalf("the demo's key comes from /proc, which only Linux has: %s", line)
	}
	keys := map[string]bool{}
	for range 2 {
		out, err := exec.Command("bash", "-eo", "pipefail", "-c", line+"\nprintf %s \"$KEY\"").Output()
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		if !regexp.MustCompile(`^[0-9a-f]{32}$`).Match(out) {
			t.Fatalf("%s gave key %q, want 32 hex digits", line, out)
		}
		keys[string(out)] = true
	}
	if len(keys) != 2 {
		t.Fatalf("%s gave the same key twice: %v", line, keys)
	}
}

// The demo is pasted into an interactive shell, and on macOS, for which its
// key no longer comes from /proc, that shell is zsh unless changed. An
// interactive zsh does not take # as a comment (its interactive_comments is
// off by default): the comment after the KEY line made the line an
// assignment for a command "#", KEY stayed empty in the shell, and the order
// was the 400 "an Idempotency-Key header is required" all the same. The test
// pastes the line into each shell it finds, interactive as a terminal's is.
func TestBannerDemoKeyLinePastedIntoEachShell(t *testing.T) {
	line := demoKeyLine(t)
	printed := regexp.MustCompile(`key=\[([^\]]*)\]`)
	for _, shell := range [][]string{{"bash", "--norc", "--noprofile", "-i"}, {"zsh", "-f", "-i"}, {"sh", "-i"}} {
		t.Run(shell[0], func(t *testing.T) {
			path, err := exec.LookPath(shell[0])
			if err != nil {
				t.Skipf("no %s here", shell[0])
			}
			paste := exec.Command(path, shell[1:]...)
			paste.Stdin = strings.NewReader(line + "\nprintf 'key=[%s]\\n' \"$KEY\"\nexit\n")
			out, err := paste.Output() // the prompts go to stderr
			if err != nil {
				t.Fatalf("%s: %v", shell[0], err)
			}
			key := printed.FindSubmatch(out)
			if key == nil || !regexp.MustCompile(`^[0-9a-f]{32}$`).Match(key[1]) {
				t.Fatalf("%s pasted into %s: %q, want KEY set to 32 hex digits", line, shell[0], out)
			}
		})
	}
}

// demoKeyLine is the demo's line that sets KEY, the Idempotency-Key.
func demoKeyLine(t *testing.T) string {
	t.Helper()
	for l := range strings.Lines(demo) {
		if strings.HasPrefix(strings.TrimSpace(l), "KEY=") {
			return strings.TrimSpace(l)
		}
	}
	t.Fatalf("the demo sets no KEY:\n%s", demo)
	return ""
}
