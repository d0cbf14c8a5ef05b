package agent

import (
	"errors"
	"log/slog"
	"os"
	"runtime/debug"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// TestFailedExitAttachClosesTheProbe: when a probe's process_exit cannot be attached to sched:sched_process_exit
// (perf_event_open refused: out of fds, a kernel without the tracepoint), the probe is refused and everything its
// load opened is closed then, not left to the garbage collector's finalizers while the agent keeps scanning: the
// maps and programs it had assigned stayed open, each a kernel object charged to the agent's memory cgroup, and
// the executable was retried on every replaced file. The garbage collector is off, so only explicit closes count.
// Each probe tries the attach once: a failed attach is not the kernel refusing the HTTP server probe's sleepable exit
// build, so it does not make the agent load that probe again with the plain build (loadHTTPServer).
func TestFailedExitAttachClosesTheProbe(t *testing.T) {
	requireRoot(t)
	bin := buildTarget(t, false)
	a := newAgent(t, bin)
	var st syscall.Stat_t
	if err := syscall.Stat(bin, &st); err != nil {
		t.Fatal(err)
	}
	id := statID(&st)
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	log := slog.New(slog.DiscardHandler)

	for _, fail := range []bool{false, true} {
		o := attachOpts{httpUprobe: true, exitProgs: true, accept: a.sys.tcp.AcceptRet, log: log}
		attaches := 0
		if fail {
			o.exitTracepoint = func(string, string, *ebpf.Program, *link.TracepointOptions) (link.Link, error) {
				attaches++
				return nil, errors.New("refused by the test")
			}
		}
		before := openFDs(t)
		b, err := safeAttach(bin, bin, id, o)
		if err != nil {
			t.Fatal(err)
		}
		if fail && len(b.refused) != 3 {
			t.Errorf("exit attach failing: refused = %v, want httpserver, goruntime and httpclient", b.refused)
		}
		if fail && attaches != len(b.refused) {
			t.Errorf("exit attach failing: %d attaches for %d probes, want one each", attaches, len(b.refused))
		}
		if !fail && len(b.refused) != 0 {
			t.Fatalf("refused = %v, want none", b.refused)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if after := openFDs(t); after != before {
			t.Errorf("exit attach failing=%v: %d fds open after attaching and closing, %d before", fail, after, before)
		}
	}
}

// openFDs counts the test process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
