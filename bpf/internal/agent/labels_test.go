package agent

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

// Any user on the machine can start a process that matches a target named by name: a copy of any executable under
// that name, in a directory whose name is not UTF-8 (a file name is bytes). Its path became the exe label as it was,
// Prometheus refuses a label value that is not valid UTF-8, and promhttp answered every scrape of /metrics with a
// 500 for as long as that process ran: every target's metrics gone (found by review). The scrape must succeed and
// name the process by its path with the invalid bytes replaced.
func TestTargetPathNotUTF8(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	dir := filepath.Join(t.TempDir(), "bad\xffdir")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "bpf-utf8-victim")
	copyFile(t, "/bin/sleep", bin)
	cmd := exec.Command(bin, "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	reg := prometheus.NewPedanticRegistry()
	a := newAgent(t, filepath.Base(bin))
	reg.MustRegister(a.Collector())
	a.Scan()
	if got := a.Targets(); len(got) != 1 || got[0].PID != cmd.Process.Pid {
		t.Fatalf("targets %v, want pid %d", got, cmd.Process.Pid)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	found := false
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if !utf8.ValidString(lp.GetValue()) {
					t.Errorf("%s: label %s=%q is not UTF-8", mf.GetName(), lp.GetName(), lp.GetValue())
				}
				if mf.GetName() == "shanhai_bpf_target_info" && lp.GetName() == "pid" && lp.GetValue() == strconv.Itoa(cmd.Process.Pid) {
					found = true
				}
			}
		}
	}
	if !found {
		t.Errorf("no shanhai_bpf_target_info for pid %d", cmd.Process.Pid)
	}
}
