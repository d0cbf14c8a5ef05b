package agent

import (
	"strconv"
	"testing"
)

// TestExecKeepsThePausesOfBothExecutables: a target that execs another target keeps its pid, and its stop-the-world
// pauses sit under that pid in the maps of both executables' probes. The pid's series is their sum (it was whichever
// map Snapshot read last, so shanhai_bpf_go_stw_pause_seconds_count went back and forth between scrapes).
func TestExecKeepsThePausesOfBothExecutables(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	first := build(t, "testdata/execer", "execer-first", false)
	second := build(t, "testdata/execer", "execer-second", false)
	a := newAgent(t, first, second)
	a.Scan() // both executables probed before the process starts

	cmd, line, _ := startProgram(t, first, "5", second, "3")
	runtimeN, err := strconv.ParseUint(line, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	a.Scan()
	pid := cmd.Process.Pid
	eventually(t, func() (bool, string) {
		s, err := a.Snapshot()
		if err != nil {
			return false, err.Error()
		}
		n := s.STW[pid].Count
		return n == runtimeN, "pid " + strconv.Itoa(pid) + ": agent saw " + strconv.FormatUint(n, 10) +
			" pauses, the two runtimes " + strconv.FormatUint(runtimeN, 10)
	})
}
