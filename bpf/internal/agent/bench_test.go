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
// program, a counter increment, return) by timing testdata/loop's calls of a framed function with a probe on it,
// minus the bare call. It reports two costs: push-ns/hit for a probe on the PUSH RBP after the stack check (the
// kernel emulates it: what every entry probe here uses) and step-ns/hit for a probe on a RET, which the kernel must
// single-step out of line. No BPF code can make either cheaper.
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
	sym.Close()
	if err != nil {
		b.Fatal(err)
	}
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
	var bare, push, step float64
	for range b.N {
		bare += perCall()
		push += probed(fn.CallOff)
		step += probed(fn.RetOffs[0])
	}
	n := float64(b.N)
	b.ReportMetric((push-bare)/n, "push-ns/hit")
	b.ReportMetric((step-bare)/n, "step-ns/hit")
}
