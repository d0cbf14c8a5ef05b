package agent

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
)

// TestProbesWithoutExitPrograms runs the exactness tests with the agent as it runs on kernels without bpf_loop and
// bpf_map_lookup_percpu_elem (before Linux 5.19: Ubuntu 22.04's 5.15, RHEL 9's 5.14). There each per-executable
// probe's sched_process_exit program (include/procexit.h) fails the verifier, and, loaded with its object, took the
// HTTP server, runtime and call probes with it. Config.NoExitPrograms is the path New's feature check selects on
// such kernels: every probe must load without those programs (TestProbesLoadWithoutExitPrograms: none of them may be
// loaded), and the counts must be as exact as with them. Each agent has its own Config, so these run with the other
// parallel tests.
func TestProbesWithoutExitPrograms(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	cfg := Config{NoExitPrograms: true}
	t.Run("httpserver", func(t *testing.T) {
		t.Parallel()
		bin := ownCopy(t, buildTarget(t, false))
		a := newAgentWith(t, cfg, bin)
		a.Scan()
		tg := startTarget(t, bin)
		a.Scan()
		testRED(t, a, tg)
	})
	t.Run("goruntime", func(t *testing.T) { t.Parallel(); testGoRuntime(t, cfg) })
	t.Run("goruntime-uprobe", func(t *testing.T) {
		t.Parallel()
		cfg := cfg
		cfg.goroutinesByUprobe = true
		testGoRuntime(t, cfg)
	})
	t.Run("calls", func(t *testing.T) { t.Parallel(); testCallProbes(t, cfg) })
	t.Run("tcp", func(t *testing.T) { t.Parallel(); testTCPLifecycle(t, cfg, false, "127.0.0.1") })
}

// TestProbesLoadWithoutExitPrograms: with Config.NoExitPrograms every probe that applies to the target is on it, and
// none of their process_exit programs is loaded. It counts the programs loaded in the whole kernel, so it runs alone
// (sequential); it was the first part of TestProbesWithoutExitPrograms, which ran whole alone for it.
func TestProbesLoadWithoutExitPrograms(t *testing.T) {
	requireRoot(t)
	bin := buildTarget(t, false)
	a := newAgentWith(t, Config{NoExitPrograms: true}, bin)
	before := exitPrograms(t)
	a.Scan()
	tg := startTarget(t, bin)
	a.Scan()
	ts := a.Targets()
	if len(ts) != 1 || ts[0].PID != tg.pid || strings.Join(ts[0].Probes, ",") != "httpserver,goruntime,httpclient,tcpaccept" || len(ts[0].Unprobed) != 0 {
		t.Fatalf("targets = %+v, want pid %d with the httpserver, goruntime, httpclient and tcpaccept probes", ts, tg.pid)
	}
	if after := exitPrograms(t); after != before {
		t.Fatalf("sched_process_exit programs loaded: %d after attaching, %d before; want none of the probes'", after, before)
	}
}

// exitPrograms counts the programs loaded in the kernel named process_exit (the probes' sched_process_exit
// programs; the system TCP probe's is one of them).
func exitPrograms(t *testing.T) int {
	t.Helper()
	n := 0
	for id, err := ebpf.ProgramGetNextID(0); ; id, err = ebpf.ProgramGetNextID(id) {
		if errors.Is(err, os.ErrNotExist) {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
		p, err := ebpf.NewProgramFromID(id)
		if errors.Is(err, os.ErrNotExist) { // unloaded since
			continue
		}
		if err != nil {
			t.Fatal(fmt.Errorf("program %d: %w", id, err))
		}
		info, err := p.Info()
		p.Close()
		if err != nil {
			t.Fatal(err)
		}
		if info.Name == "process_exit" {
			n++
		}
	}
}
