// Command progcost prices the HTTP server probe's BPF programs against reference programs that do one thing each,
// under the same load, so the per-hit figure of overhead.sh can be taken apart: what an empty program costs (the
// kernel.bpf_stats_enabled clock reads and the dispatch, paid by any probe), one bpf_ktime_get_ns, one
// bpf_probe_read_user of the *Request. Each program is attached alone to net/http.serverHandler.ServeHTTP of a fresh
// testdata/target (entry; the probe's RET program also at every RET) while wrk drives it, rounds interleaved. Root.
//
//	go build -o /tmp/progcost ./bench/progcost && sudo /tmp/progcost -rounds 3 -d 4s
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/shanhai-dev/shanhai/bpf/internal/offsets"
	"github.com/shanhai-dev/shanhai/bpf/internal/symtab"
	"github.com/shanhai-dev/shanhai/bpf/probe/httpserver"
)

const fn = "net/http.serverHandler.ServeHTTP"

// ptRegsDI is the offset of di (the 4th Go argument register: the *Request) in the x86-64 struct pt_regs.
const ptRegsDI = 112

// reference builds a one-purpose uprobe program in BPF assembly (no clang needed).
func reference(body asm.Instructions) (*ebpf.Program, error) {
	insns := append(asm.Instructions{asm.Mov.Reg(asm.R6, asm.R1)}, body...)
	insns = append(insns, asm.Mov.Imm(asm.R0, 0), asm.Return())
	return ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.Kprobe, License: "Dual MIT/GPL", Instructions: insns})
}

// candidate is what one run attaches: enter at the entry, ret (when set) at every RET. Both are priced.
type candidate struct {
	name       string
	enter, ret *ebpf.Program
}

func main() {
	rounds := flag.Int("rounds", 3, "interleaved rounds")
	dur := flag.Duration("d", 4*time.Second, "wrk duration per program and round")
	conns := flag.Int("c", 16, "wrk connections")
	flag.Parse()
	log.SetFlags(0)
	if os.Geteuid() != 0 {
		log.Fatal("progcost loads eBPF programs: run it as root")
	}
	dir, err := os.MkdirTemp("", "progcost")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "target")
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/target").CombinedOutput(); err != nil {
		log.Fatalf("build target (run from bpf/): %v\n%s", err, out)
	}
	sym, err := symtab.Open(bin)
	if err != nil {
		log.Fatal(err)
	}
	f, err := sym.Func(fn)
	if err != nil {
		log.Fatal(err)
	}
	offs, _, err := offsets.Resolve(sym.ELF(), offsets.RequestMethod, offsets.ServerStatus)
	if err != nil {
		log.Fatal(err)
	}
	sym.Close()

	spec, err := httpserver.LoadBpf()
	if err != nil {
		log.Fatal(err)
	}
	for name, fl := range map[string]offsets.Field{"off_request_method": offsets.RequestMethod, "off_response_status": offsets.ServerStatus} {
		if err := spec.Variables[name].Set(offs[fl]); err != nil {
			log.Fatal(err)
		}
	}
	var probe httpserver.BpfObjects
	if err := spec.LoadAndAssign(&probe, nil); err != nil {
		log.Fatal(err)
	}
	defer probe.Close()
	empty, err := reference(nil)
	if err != nil {
		log.Fatal(err)
	}
	ktime, err := reference(asm.Instructions{asm.FnKtimeGetNs.Call()})
	if err != nil {
		log.Fatal(err)
	}
	read, err := reference(asm.Instructions{ // bpf_probe_read_user(fp-16, 16, regs->di): the Method string header
		asm.LoadMem(asm.R3, asm.R6, ptRegsDI, asm.DWord),
		asm.Mov.Reg(asm.R1, asm.RFP), asm.Add.Imm(asm.R1, -16),
		asm.Mov.Imm(asm.R2, 16),
		asm.FnProbeReadUser.Call(),
	})
	if err != nil {
		log.Fatal(err)
	}
	cands := []candidate{
		{"empty program", empty, nil},
		{"bpf_ktime_get_ns", ktime, nil},
		{"bpf_probe_read_user 16 B", read, nil},
		{"httpserver probe", probe.ServeHttpEnter, probe.ServeHttpRet},
	}

	ex, err := link.OpenExecutable(bin)
	if err != nil {
		log.Fatal(err)
	}
	old, _ := os.ReadFile("/proc/sys/kernel/bpf_stats_enabled")
	os.WriteFile("/proc/sys/kernel/bpf_stats_enabled", []byte("1"), 0)
	defer os.WriteFile("/proc/sys/kernel/bpf_stats_enabled", old, 0)

	type total struct{ ns, hits uint64 }
	sums := map[string]*total{}
	var order []string
	for r := range *rounds {
		for _, c := range cands {
			got, err := run(ex, f, bin, c, *dur, *conns)
			if err != nil {
				log.Fatal(err)
			}
			for _, p := range got {
				fmt.Printf("round %d %-34s %7.0f ns per hit (%d hits)\n", r+1, p.name, float64(p.ns)/float64(max(p.hits, 1)), p.hits)
				if sums[p.name] == nil {
					sums[p.name] = &total{}
					order = append(order, p.name)
				}
				sums[p.name].ns += p.ns
				sums[p.name].hits += p.hits
			}
		}
	}
	fmt.Println("----")
	for _, n := range order {
		fmt.Printf("%-34s %7.0f ns per hit\n", n, float64(sums[n].ns)/float64(max(sums[n].hits, 1)))
	}
}

type priced struct {
	name     string
	ns, hits uint64
}

// run attaches c alone, starts a target, drives it with wrk and returns what each of c's programs cost.
func run(ex *link.Executable, f symtab.Func, bin string, c candidate, dur time.Duration, conns int) ([]priced, error) {
	var links []link.Link
	defer func() {
		for _, l := range links {
			l.Close()
		}
	}()
	type at struct {
		name  string
		prog  *ebpf.Program
		addrs []uint64
	}
	progs := []at{{c.name, c.enter, []uint64{f.CallOff}}}
	if c.ret != nil {
		progs = []at{{c.name + " (entry)", c.enter, []uint64{f.CallOff}}, {c.name + " (RET)", c.ret, f.RetOffs}}
	}
	for _, p := range progs {
		for _, a := range p.addrs {
			l, err := ex.Uprobe(fn, p.prog, &link.UprobeOptions{Address: a})
			if err != nil {
				return nil, err
			}
			links = append(links, l)
		}
	}
	cmd := exec.Command(bin)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("target address: %w", err)
	}
	before := make([]*ebpf.ProgramStats, len(progs))
	for i, p := range progs {
		if before[i], err = p.prog.Stats(); err != nil {
			return nil, err
		}
	}
	w := exec.Command("wrk", "-t1", fmt.Sprintf("-c%d", conns), "-d"+dur.String(), "http://"+strings.TrimSpace(addr)+"/work")
	if out, err := w.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	var res []priced
	for i, p := range progs {
		s, err := p.prog.Stats()
		if err != nil {
			return nil, err
		}
		res = append(res, priced{p.name, uint64(s.Runtime - before[i].Runtime), s.RunCount - before[i].RunCount})
	}
	return res, nil
}
