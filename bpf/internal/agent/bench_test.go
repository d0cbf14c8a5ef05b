package agent

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf/link"

	"github.com/shanhai-dev/shanhai/bpf/internal/symtab"
	"github.com/shanhai-dev/shanhai/bpf/probe/goruntime"
)

// BenchmarkUprobeHit prices one uprobe hit as the target sees it (trap into the kernel, run the smallest probe
// program, a counter increment, and return), by timing testdata/loop's calls with and without a probe on them. It
// reports trap-ns/hit: the part of the probes' overhead that no BPF code can reduce.
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
	fn, err := sym.Func("main.tiny")
	sym.Close()
	if err != nil {
		b.Fatal(err)
	}
	var objs goruntime.BpfObjects
	if err := goruntime.LoadBpfObjects(&objs, nil); err != nil {
		b.Fatal(err)
	}
	defer objs.Close()
	perCall := func(n int) float64 {
		out, err := exec.Command(bin, strconv.Itoa(n)).Output()
		if err != nil {
			b.Fatal(err)
		}
		v, err := strconv.ParseFloat(strings.Fields(string(out))[0], 64)
		if err != nil {
			b.Fatal(err)
		}
		return v
	}
	const calls = 20000
	bare := perCall(calls)
	ex, err := link.OpenExecutable(bin)
	if err != nil {
		b.Fatal(err)
	}
	l, err := ex.Uprobe(fn.Name, objs.Newproc1, &link.UprobeOptions{Address: fn.EntryOff})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	b.ResetTimer()
	var probed float64
	for range b.N {
		probed = perCall(calls)
	}
	b.ReportMetric(probed-bare, "trap-ns/hit")
	b.ReportMetric(bare, "bare-ns/call")
}
