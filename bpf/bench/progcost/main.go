// Command progcost prices the HTTP server probe's BPF programs against reference programs that do one thing each,
// under the same load, so the per-hit figure of overhead.sh can be taken apart: what an empty program costs (the
// kernel.bpf_stats_enabled clock reads and the dispatch, paid by any probe), one bpf_ktime_get_ns, one
// bpf_get_current_pid_tgid, one bpf_get_attach_cookie, one bpf_probe_read_user of the *Request, and two of them in one run: on an AMD EPYC guest with Safe-RET a run's first
// user-memory read cost about twice what a further one does (~165 ns against ~85), which is why the probe makes all
// its reads in the exit program. -sleepable adds the same one and three reads with bpf_copy_from_user in a sleepable
// uprobe (uprobe.s), the other way to read user memory from a uprobe. Each program is attached alone to
// net/http.serverHandler.ServeHTTP of a fresh
// testdata/target (entry; the probe's exit program also at its exits, where the agent puts it: symtab.Exits) while
// wrk drives it, rounds interleaved. Root. The probe is priced with each build of its exit program: the plain one and
// the sleepable one the agent runs where the kernel takes it (httpserver.c, serve_http_exit).
//
// -obj prices the serve_http_enter/serve_http_ret pair (and serve_http_ret_sleepable where the build has one) of other
// builds of httpserver.c too (an earlier commit's bpf_x86_bpfel.o, a variant compiled by hand), in the same rounds: a
// before/after comparison alternated within one run, so both sides see the same load, which on a shared machine moves
// these figures more than most changes do.
//
//	go build -o /tmp/progcost ./bench/progcost && sudo /tmp/progcost -rounds 3 -d 4s
//	git show HEAD~1:bpf/probe/httpserver/bpf_x86_bpfel.o >/tmp/before.o && sudo /tmp/progcost -obj before=/tmp/before.o
//
// -call prices the generic call probe's call_enter/call_ret (include/calls.h) of each object given instead, attached
// to ServeHTTP as the server probe is, alternated by round (calls.go):
//
//	git show HEAD~1:bpf/probe/httpclient/bpf_x86_bpfel.o >/tmp/calls-before.o && sudo /tmp/progcost -rounds 5 \
//		-call before=/tmp/calls-before.o -call after=probe/httpclient/bpf_x86_bpfel.o
//
// -call-method attaches them as the HTTP client's calls are, reading the request's method at entry; without it, as
// the other ops' (SQL, Kafka, NATS, Pulsar), which read nothing at entry but what calls.h itself needs.
//
// -tcp prices the TCP probe's state change programs instead (tcp.go), of each object given, alternated by round:
//
//	git show HEAD~1:bpf/probe/tcp/bpf_x86_bpfel.o >/tmp/tcp-before.o && sudo /tmp/progcost -rounds 9 \
//		-tcp before=/tmp/tcp-before.o -tcp after=probe/tcp/bpf_x86_bpfel.o
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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

// bpfFSleepable is BPF_F_SLEEPABLE (include/uapi/linux/bpf.h), the program flag of libbpf's "uprobe.s" sections.
const bpfFSleepable = 1 << 4

// ptRegsDI is the offset of di (the 4th Go argument register: the *Request) in the x86-64 struct pt_regs.
const ptRegsDI = 112

// reference builds a one-purpose uprobe program in BPF assembly (no clang needed).
func reference(body asm.Instructions) (*ebpf.Program, error) {
	insns := append(asm.Instructions{asm.Mov.Reg(asm.R6, asm.R1)}, body...)
	insns = append(insns, asm.Mov.Imm(asm.R0, 0), asm.Return())
	return ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.Kprobe, License: "Dual MIT/GPL", Instructions: insns})
}

// readRequest is n calls of fn(fp-16, 16, regs->di): the Method string header of the *Request, read n times.
func readRequest(fn asm.BuiltinFunc, n int) asm.Instructions {
	var insns asm.Instructions
	for range n {
		insns = append(insns,
			asm.LoadMem(asm.R3, asm.R6, ptRegsDI, asm.DWord),
			asm.Mov.Reg(asm.R1, asm.RFP), asm.Add.Imm(asm.R1, -16),
			asm.Mov.Imm(asm.R2, 16),
			fn.Call(),
		)
	}
	return insns
}

// sleepable builds a reference program like reference's, loaded sleepable (BPF_F_SLEEPABLE, libbpf's "uprobe.s"):
// only those may call bpf_copy_from_user, which may fault the page in instead of failing.
func sleepable(body asm.Instructions) (*ebpf.Program, error) {
	insns := append(asm.Instructions{asm.Mov.Reg(asm.R6, asm.R1)}, body...)
	insns = append(insns, asm.Mov.Imm(asm.R0, 0), asm.Return())
	return ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.Kprobe, Flags: bpfFSleepable, License: "Dual MIT/GPL",
		Instructions: insns})
}

// objFlags collects -obj name=path.o (repeatable).
type objFlags []string

func (o *objFlags) String() string     { return strings.Join(*o, ",") }
func (o *objFlags) Set(v string) error { *o = append(*o, v); return nil }

// probePair is what -obj loads from another build of httpserver.c: only the two programs every build has, so an
// object older than a map or a variable the current C declares still loads.
type probePair struct {
	Enter *ebpf.Program `ebpf:"serve_http_enter"`
	Ret   *ebpf.Program `ebpf:"serve_http_ret"`
}

// sleepablePair is the entry with the sleepable build of the exit (httpserver.c, serve_http_exit), which the agent
// runs where the kernel takes it; builds before 8fd5e92 have none.
type sleepablePair struct {
	Enter *ebpf.Program `ebpf:"serve_http_enter"`
	Ret   *ebpf.Program `ebpf:"serve_http_ret_sleepable"`
}

// loadProbe loads the HTTP server probe of spec with the target's offsets set, as the agent does for the fields
// these two programs read on HTTP/1 (the writer's itab is left unknown: the exit reads the status as the agent's
// does for a *response, without the hijacked check, which runs only for a status of 0 or 101). With a sleepable
// build in spec it loads that pair too (same maps for each pair: the exit finds what its entry kept), else nil; nil
// too, said on stdout, where the kernel refuses that build (before 6.1), so that the rest is still priced there.
func loadProbe(spec *ebpf.CollectionSpec, offs map[offsets.Field]uint64) (*probePair, *sleepablePair, error) {
	for name, fl := range map[string]offsets.Field{"off_request_method": offsets.RequestMethod, "off_response_status": offsets.ServerStatus} {
		v, ok := spec.Variables[name]
		if !ok {
			return nil, nil, fmt.Errorf("no variable %s", name)
		}
		if err := v.Set(offs[fl]); err != nil {
			return nil, nil, err
		}
	}
	var p probePair
	if err := spec.LoadAndAssign(&p, nil); err != nil {
		return nil, nil, err
	}
	if _, ok := spec.Programs["serve_http_ret_sleepable"]; !ok {
		return &p, nil, nil
	}
	var sp sleepablePair
	if err := spec.LoadAndAssign(&sp, nil); err != nil {
		if _, refused := errors.AsType[*ebpf.VerifierError](err); refused {
			fmt.Printf("sleepable exit not priced: the kernel refused it (%v)\n", err)
			return &p, nil, nil
		}
		return nil, nil, fmt.Errorf("sleepable exit: %w", err)
	}
	return &p, &sp, nil
}

// candidate is what one run attaches: enter at the entry, ret (when set) at every exit. Both are priced.
type candidate struct {
	name       string
	enter, ret *ebpf.Program
	cookie     uint64 // the attach cookie, for programs that read one
}

func main() {
	rounds := flag.Int("rounds", 3, "interleaved rounds")
	dur := flag.Duration("d", 4*time.Second, "wrk duration per program and round")
	conns := flag.Int("c", 16, "wrk connections")
	withSleepable := flag.Bool("sleepable", false, "also price bpf_copy_from_user in a sleepable uprobe (one and three reads)")
	var objs objFlags
	flag.Var(&objs, "obj", "`name=path.o`: also price the HTTP server probe built into path.o (repeatable)")
	var tcpObjs objFlags
	flag.Var(&tcpObjs, "tcp", "`name=path.o`: price the TCP probe's state change programs built into path.o instead, side by side with the other -tcp objects (repeatable; tcp.go)")
	dials := flag.Int("dials", 2000, "with -tcp: loopback connections per object and round")
	var callObjs objFlags
	flag.Var(&callObjs, "call", "`name=path.o`: price the generic call probe's programs (include/calls.h) built into path.o instead, side by side with the other -call objects (repeatable; calls.go)")
	callMethod := flag.Bool("call-method", false, "with -call: attach with the HTTP client's cookie, reading the request's method at entry (calls.go)")
	flag.Parse()
	log.SetFlags(0)
	if os.Geteuid() != 0 {
		log.Fatal("progcost loads eBPF programs: run it as root")
	}
	if len(tcpObjs) > 0 {
		fmt.Println(host())
		if err := priceTCP(tcpObjs, *rounds, *dials); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("load average at the end: %s\n", loadAvg())
		return
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
	exits := sym.Exits(f)
	sym.Close()
	fmt.Println(host())
	fmt.Printf("exit program at %d exits (%s, %d single-stepped)\n", len(exits.Offs), exits.Mode, exits.Stepped)

	spec, err := httpserver.LoadBpf()
	if err != nil {
		log.Fatal(err)
	}
	probe, probeS, err := loadProbe(spec, offs)
	if err != nil {
		log.Fatal(err)
	}
	others := []candidate{}
	for _, o := range objs {
		name, path, ok := strings.Cut(o, "=")
		if !ok {
			log.Fatalf("-obj %q: want name=path.o", o)
		}
		spec, err := ebpf.LoadCollectionSpec(path)
		if err != nil {
			log.Fatal(err)
		}
		p, ps, err := loadProbe(spec, offs)
		if err != nil {
			log.Fatalf("%s: %v", path, err)
		}
		others = append(others, candidate{"httpserver " + name, p.Enter, p.Ret, 0})
		if ps != nil {
			others = append(others, candidate{"httpserver " + name + ", sleepable exit", ps.Enter, ps.Ret, 0})
		}
	}
	empty, err := reference(nil)
	if err != nil {
		log.Fatal(err)
	}
	ktime, err := reference(asm.Instructions{asm.FnKtimeGetNs.Call()})
	if err != nil {
		log.Fatal(err)
	}
	read, err := reference(readRequest(asm.FnProbeReadUser, 1))
	if err != nil {
		log.Fatal(err)
	}
	read2, err := reference(readRequest(asm.FnProbeReadUser, 2))
	if err != nil {
		log.Fatal(err)
	}
	pid, err := reference(asm.Instructions{asm.FnGetCurrentPidTgid.Call()})
	if err != nil {
		log.Fatal(err)
	}
	// The attach cookie is what a probe attached once per process (UprobeOptions{PID, Cookie}) would read instead of
	// the pid: priced beside it, as that is the one call it would replace.
	cookie, err := reference(asm.Instructions{asm.FnGetAttachCookie.Call()})
	if err != nil {
		log.Fatal(err)
	}
	cands := []candidate{
		{"empty program", empty, nil, 0},
		{"bpf_ktime_get_ns", ktime, nil, 0},
		{"bpf_get_current_pid_tgid", pid, nil, 0},
		{"bpf_get_attach_cookie", cookie, nil, 0},
		{"bpf_probe_read_user 16 B", read, nil, 0},
		{"bpf_probe_read_user 16 B twice", read2, nil, 0},
		{"httpserver probe", probe.Enter, probe.Ret, 0},
	}
	if probeS != nil {
		cands = append(cands, candidate{"httpserver probe, sleepable exit", probeS.Enter, probeS.Ret, 0})
	}
	if *withSleepable {
		for _, n := range []int{1, 3} {
			p, err := sleepable(readRequest(asm.FnCopyFromUser, n))
			if err != nil {
				log.Fatalf("sleepable uprobe: %v", err)
			}
			cands = append(cands, candidate{fmt.Sprintf("bpf_copy_from_user x%d, sleepable", n), p, nil, 0})
		}
	}
	cands = append(cands, others...)
	if len(callObjs) > 0 {
		if cands, err = loadCalls(callObjs, *callMethod); err != nil {
			log.Fatal(err)
		}
	}

	ex, err := link.OpenExecutable(bin)
	if err != nil {
		log.Fatal(err)
	}
	old, _ := os.ReadFile("/proc/sys/kernel/bpf_stats_enabled")
	os.WriteFile("/proc/sys/kernel/bpf_stats_enabled", []byte("1"), 0)
	defer os.WriteFile("/proc/sys/kernel/bpf_stats_enabled", old, 0)

	type total struct {
		ns, hits uint64
		rounds   []float64 // ns per hit of each round
	}
	sums := map[string]*total{}
	var names []string
	for r := range *rounds {
		// Every other round runs the candidates in reverse, so none always follows the same one.
		order := slices.Clone(cands)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, c := range order {
			got, err := run(ex, f, exits.Offs, bin, c, *dur, *conns)
			if err != nil {
				log.Fatal(err)
			}
			for _, p := range got {
				perHit := float64(p.ns) / float64(max(p.hits, 1))
				fmt.Printf("round %d %-34s %7.0f ns per hit (%d hits)\n", r+1, p.name, perHit, p.hits)
				if sums[p.name] == nil {
					sums[p.name] = &total{}
					names = append(names, p.name)
				}
				sums[p.name].ns += p.ns
				sums[p.name].hits += p.hits
				sums[p.name].rounds = append(sums[p.name].rounds, perHit)
			}
		}
	}
	fmt.Printf("load average at the end: %s\n", loadAvg())
	// The median of the rounds is the figure to compare: a round slowed by someone else's work on the machine moves it
	// least. The pooled figure (all rounds' ns over all their hits) leans towards the rounds that served most.
	fmt.Println("----")
	for _, n := range names {
		t := sums[n]
		fmt.Printf("%-34s %7.0f ns per hit, median of %d rounds (pooled %.0f)\n", n, median(t.rounds), len(t.rounds),
			float64(t.ns)/float64(max(t.hits, 1)))
	}
}

// host says what these figures depend on besides the programs: the CPU, and the kernel's mitigations for return
// and indirect-branch speculation, which every helper call and the code under it pays on each RET and indirect call
// (the same programs have measured 2-2.5 times apart in sessions on different hosts), and
// how loaded the machine is (a round starved of CPU finds the programs' code and data cold and costs more per hit).
func host() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	var mit []string
	for _, v := range []string{"spectre_v2", "retbleed", "spec_rstack_overflow"} {
		b, err := os.ReadFile("/sys/devices/system/cpu/vulnerabilities/" + v)
		if err == nil {
			mit = append(mit, v+": "+strings.TrimSpace(string(b)))
		}
	}
	return fmt.Sprintf("host: %s; %s; load average at the start: %s", model, strings.Join(mit, "; "), loadAvg())
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

type priced struct {
	name     string
	ns, hits uint64
}

// run attaches c alone, starts a target, drives it with wrk and returns what each of c's programs cost.
func run(ex *link.Executable, f symtab.Func, exits []uint64, bin string, c candidate, dur time.Duration, conns int) ([]priced, error) {
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
		progs = []at{{c.name + " (entry)", c.enter, []uint64{f.CallOff}}, {c.name + " (exit)", c.ret, exits}}
	}
	for _, p := range progs {
		for _, a := range p.addrs {
			l, err := ex.Uprobe(fn, p.prog, &link.UprobeOptions{Address: a, Cookie: c.cookie})
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
