package agent

import (
	"log/slog"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
	"golang.org/x/arch/x86/x86asm"

	"github.com/shanhai-dev/shanhai/bpf/internal/symtab"
	"github.com/shanhai-dev/shanhai/bpf/probe/goruntime"
)

// BenchmarkUprobeHit prices one uprobe hit as the target sees it (trap into the kernel, run the smallest probe
// program, a counter increment, return) by timing testdata/loop's calls of a framed function with a probe on it,
// minus the bare call. It reports three costs: push-ns/hit for a probe on the PUSH RBP after the stack check (the
// kernel emulates it: what every entry probe here uses), call-ns/hit for one on a CALL rel32 (also emulated: the kind
// of instruction the exit probes sit on after a call site, see symtab.Exits) and step-ns/hit for a probe on a RET,
// which the kernel must single-step out of line (the exit probes' fallback). No BPF code can make any cheaper.
//
//	go test -run x -bench UprobeHit ./internal/agent
func BenchmarkUprobeHit(b *testing.B) {
	if !isRoot() {
		b.Skip("needs root")
	}
	bin := build(b, "testdata/loop", "loop", false)
	sym, err := symtab.Open(bin)
	if err != nil {
		b.Fatal(err)
	}
	fn, err := sym.Func("main.framed")
	if err != nil {
		b.Fatal(err)
	}
	callOff := firstCall(b, sym, fn)
	sym.Close()
	var objs goruntime.BpfObjects
	if err := goruntime.LoadBpfObjects(&objs, nil); err != nil {
		b.Fatal(err)
	}
	defer objs.Close()
	const calls = 20000
	perCall := func() float64 {
		out, err := exec.Command(bin, strconv.Itoa(calls), "framed").Output()
		if err != nil {
			b.Fatal(err)
		}
		v, err := strconv.ParseFloat(strings.Fields(string(out))[0], 64)
		if err != nil {
			b.Fatal(err)
		}
		return v
	}
	ex, err := link.OpenExecutable(bin)
	if err != nil {
		b.Fatal(err)
	}
	probed := func(off uint64) float64 {
		l, err := ex.Uprobe(fn.Name, objs.Newproc1, &link.UprobeOptions{Address: off})
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		return perCall()
	}
	b.ResetTimer()
	var bare, push, call, step float64
	for range b.N {
		bare += perCall()
		push += probed(fn.CallOff)
		call += probed(callOff)
		step += probed(fn.RetOffs[0])
	}
	n := float64(b.N)
	b.ReportMetric((push-bare)/n, "push-ns/hit")
	b.ReportMetric((call-bare)/n, "call-ns/hit")
	b.ReportMetric((step-bare)/n, "step-ns/hit")
}

// firstCall is the file offset of fn's first CALL rel32 (framed's call of tiny).
func firstCall(b *testing.B, sym *symtab.Binary, fn symtab.Func) uint64 {
	text := sym.ELF().Section(".text")
	code := make([]byte, fn.End-fn.Entry)
	if _, err := text.ReadAt(code, int64(fn.Entry-text.Addr)); err != nil {
		b.Fatal(err)
	}
	for off := 0; off < len(code); {
		inst, err := x86asm.Decode(code[off:], 64)
		if err != nil {
			b.Fatal(err)
		}
		if code[off] == 0xe8 {
			return fn.EntryOff + uint64(off)
		}
		off += inst.Len
	}
	b.Fatal("main.framed calls nothing")
	return 0
}

// BenchmarkScan and BenchmarkSnapshot price what the agent does while nothing happens, in each HTTP server probe
// mode: one Scan (the /proc poll and the sweep of the hash maps for entries of exited processes, every
// BPF_SCAN_INTERVAL) and one Snapshot (a /metrics scrape). The targets are testdata/clients, a file no process runs
// (it links every library a call probe times, as the services do), and testdata/target, running and idle.
//
//	go test -run '^$' -bench 'Scan|Snapshot' ./internal/agent
func BenchmarkScan(b *testing.B) {
	benchIdle(b, func(b *testing.B, a *Agent) {
		for b.Loop() {
			a.Scan()
		}
	})
}

// BenchmarkScanSweep is a Scan that also sweeps the slot tables, as one does when a target exits and every
// slotSweepInterval.
func BenchmarkScanSweep(b *testing.B) {
	benchIdle(b, func(b *testing.B, a *Agent) {
		for b.Loop() {
			a.swept = time.Time{}
			a.Scan()
		}
	})
}

func BenchmarkSnapshot(b *testing.B) {
	benchIdle(b, func(b *testing.B, a *Agent) {
		for b.Loop() {
			if _, err := a.Snapshot(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func benchIdle(b *testing.B, run func(*testing.B, *Agent)) {
	if !isRoot() {
		b.Skip("needs root")
	}
	clients := build(b, "testdata/clients", "clients", false)
	server := build(b, "testdata/target", "target", false)
	startTarget(b, server)
	for _, mode := range []string{HTTPProbeSocket, HTTPProbeUprobe} {
		b.Run(mode, func(b *testing.B) {
			a, err := New(Config{Targets: []string{clients, server}, HTTPProbe: mode, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			defer a.Close()
			a.Scan()
			run(b, a)
		})
	}
}
