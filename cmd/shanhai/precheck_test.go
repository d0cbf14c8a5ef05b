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

// Every part's variables are checked before anything starts, and one
// message names each bad variable with the parts that refuse it. They were
// checked by each part's Run once the embedded servers had started: a
// mistyped variable cost the servers' start-up and created the -data
// directory, its etcd and JetStream stores and five logs. The test runs
// this test binary as the program (main, embedded) with two bad variables,
// one only the gateway reads and one every part reads.
func TestRefusedVariablesStartNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the program in a child process")
	}
	t.Parallel() // waits on its child process; see parallelNote
	data := filepath.Join(t.TempDir(), "data")
	run := asProgram("-port "+strconv.Itoa(freePortBlock(t))+" -data "+data,
		"PULSAR_URL=", "PULSAR_ADMIN_URL=", "GATEWAY_IP_LIMIT=bogus", "SHUTDOWN_TIMEOUT=-1s")
	out, err := run.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("the run: %v, want exit status 1\n%s", err, out)
	}
	for _, want := range []string{
		`GATEWAY_IP_LIMIT: "bogus" is invalid`, "[gateway]",
		"SHUTDOWN_TIMEOUT: must be positive", "[user, order, payment]", "[bridge]",
		"nothing was started",
	} {
		if !bytes.Contains(out, []byte(want)) {
			t.Fatalf("the run's message does not say %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("-data %s was made (%v) for a run its variables stopped:\n%s", data, err, out)
	}
}
