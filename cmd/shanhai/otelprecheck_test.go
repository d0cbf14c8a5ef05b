package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// A bad OTEL_* variable is named by the check before anything starts, with
// the parts that refuse it, beside the other bad variables. The check did
// not see it (pkg/telemetry refused it only in Setup): the run made -data,
// started the embedded servers, and then the host's telemetry set-up failed
// with "telemetry: telemetry: ..." naming it alone.
func TestRefusedOTELVariableStartsNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the program in a child process")
	}
	t.Parallel() // waits on its child process; see parallelNote
	data := filepath.Join(t.TempDir(), "data")
	run := asProgram("-port "+strconv.Itoa(freePortBlock(t))+" -data "+data,
		"PULSAR_URL=", "PULSAR_ADMIN_URL=", "OTEL_EXPORTER_OTLP_ENDPOINT=collector:4318", "GATEWAY_IP_LIMIT=bogus")
	out, err := run.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("the run: %v, want exit status 1\n%s", err, out)
	}
	for _, want := range []string{
		`OTEL_EXPORTER_OTLP_ENDPOINT: "collector:4318"`, "[user, order, payment, bridge, gateway]",
		"GATEWAY_IP_LIMIT", "nothing was started",
	} {
		if !bytes.Contains(out, []byte(want)) {
			t.Fatalf("the run's message does not say %q:\n%s", want, out)
		}
	}
	if bytes.Contains(out, []byte("telemetry: telemetry:")) {
		t.Errorf("the run's message repeats its prefix:\n%s", out)
	}
	if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("-data %s was made (%v) for a run its variables stopped:\n%s", data, err, out)
	}
}
