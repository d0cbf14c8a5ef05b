package probe_test

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// release is a Linux release, major.minor.
type release struct{ major, minor int }

func (r release) String() string { return fmt.Sprintf("%d.%d", r.major, r.minor) }

func (r release) before(o release) bool {
	return r.major < o.major || r.major == o.major && r.minor < o.minor
}

// helperSince is the release that first gave each helper the probes call to the program types that call it (for
// bpf_sk_storage_get: tracing programs, 5.11; for bpf_get_attach_cookie: kprobe/uprobe programs, 5.15). It is
// explicit on purpose: a program calling a helper not listed here fails TestMinimumKernels until its release is
// looked up and added, so the README's minimum kernels cannot go stale unseen.
var helperSince = map[asm.BuiltinFunc]release{
	asm.FnMapLookupElem:       {3, 19},
	asm.FnMapUpdateElem:       {3, 19},
	asm.FnMapDeleteElem:       {3, 19},
	asm.FnKtimeGetNs:          {4, 1},
	asm.FnGetCurrentPidTgid:   {4, 2},
	asm.FnGetCurrentTask:      {4, 8},
	asm.FnProbeReadUser:       {5, 5},
	asm.FnProbeReadKernel:     {5, 5},
	asm.FnCopyFromUser:        {5, 10},
	asm.FnRingbufOutput:       {5, 8},
	asm.FnSkStorageGet:        {5, 11},
	asm.FnGetCurrentTaskBtf:   {5, 11},
	asm.FnGetAttachCookie:     {5, 15},
	asm.FnTaskPtRegs:          {5, 15},
	asm.FnLoop:                {5, 17},
	asm.FnMapLookupPercpuElem: {5, 19},
}

// cmpxchgSince: BPF_ATOMIC's compare-and-exchange (the slot claims), 5.12; before it only BPF_XADD's plain add.
var cmpxchgSince = release{5, 12}

// sleepableSince: a sleepable uprobe (6.0) that uses non-preallocated hashes (6.1: before it the verifier let a
// sleepable program use preallocated maps only); the HTTP server probe's inflight and requests are not preallocated.
var sleepableSince = release{6, 1}

// iterSince: a BPF iterator over TCP sockets (iter/tcp), 5.9.
var iterSince = release{5, 9}

// recountProgram is the TCP probe's socket iterator, which the agent loads apart and only from 5.15 (the iterator
// locks each socket from then on; internal/agent's recountSince): it raises no probe's minimum, and it must need no
// more than that.
const recountProgram = "recount"

var recountLoadedSince = release{5, 15}

// bpfFSleepable is BPF_F_SLEEPABLE, the program flag of a "uprobe.s" section.
const bpfFSleepable = 1 << 4

// sleepableExit is the HTTP server probe's sleepable exit build, which the agent loads where the kernel takes it and
// replaces with the plain build, serve_http_ret, where it does not (loadHTTPServer): like the exit programs it raises
// no probe's minimum, and it must need no more than sleepableSince.
const sleepableExit = "serve_http_ret_sleepable"

// exitProgram is the per-executable probes' sched_process_exit program (include/procexit.h), which the agent leaves
// out on kernels without bpf_loop and bpf_map_lookup_percpu_elem (Config.NoExitPrograms).
const exitProgram = "process_exit"

// wantMinimum is each probe's minimum release without its exit program, by what its programs' instructions use
// (bpf/README.md, "Minimum kernels", says the same); wantExit is its exit program's where the agent may drop it.
// tcp keeps its process_exit on every kernel: it calls nothing newer than the probe's other programs.
var (
	wantMinimum = map[string]release{
		"db": {5, 15}, "httpclient": {5, 15}, "messaging": {5, 15}, // bpf_get_attach_cookie
		"httpserver": {5, 12}, "goruntime": {5, 12}, // compare-and-exchange
		"httpsock": {5, 15}, // bpf_task_pt_regs
		"tcp":      {5, 8},  // bpf_ringbuf_output
	}
	wantExit = map[string]release{"db": {5, 19}, "httpclient": {5, 19}, "messaging": {5, 19}, "httpserver": {5, 19}, "goruntime": {5, 19}}
)

// needs lists what the program's instructions use, with the release each needs, and the newest of them.
func needs(ps *ebpf.ProgramSpec) ([]string, release, error) {
	var uses []string
	var newest release
	seen := map[string]bool{}
	use := func(what string, since release) {
		if !seen[what] {
			seen[what] = true
			uses = append(uses, what+" ("+since.String()+")")
		}
		if newest.before(since) {
			newest = since
		}
	}
	if ps.Flags&bpfFSleepable != 0 {
		use("sleepable", sleepableSince)
	}
	if ps.AttachType == ebpf.AttachTraceIter {
		use("iter/"+ps.AttachTo, iterSince)
	}
	for _, ins := range ps.Instructions {
		switch {
		case ins.IsBuiltinCall():
			fn := asm.BuiltinFunc(ins.Constant)
			since, ok := helperSince[fn]
			if !ok {
				return nil, release{}, fmt.Errorf("calls %v, which helperSince does not list", fn)
			}
			use(fn.String(), since)
		case ins.OpCode.Class().IsStore() && ins.OpCode.Mode() == asm.AtomicMode:
			switch op := ins.OpCode.AtomicOp(); op {
			case asm.AddAtomic: // BPF_XADD, since 4.x
			case asm.CmpXchg:
				use("CmpXchg", cmpxchgSince)
			default:
				return nil, release{}, fmt.Errorf("atomic %v: add its first release to the test", op)
			}
		}
	}
	slices.Sort(uses)
	return uses, newest, nil
}

// TestMinimumKernels reads every program of every probe's objects (amd64 and arm64) and checks which release its
// helper calls, atomic instructions and sleepable flag need: only the per-executable probes' exit programs need 5.19
// (bpf_loop, bpf_map_lookup_percpu_elem) and the HTTP server probe's sleepable exit 6.1, so the agent that leaves them
// out loads every probe on the older kernels the README names, and no program of a probe needs more than the README
// says. The helpers each program calls are logged.
func TestMinimumKernels(t *testing.T) {
	for _, arch := range []string{"x86", "arm64"} {
		for _, p := range probes {
			t.Run(arch+"/"+p, func(t *testing.T) {
				spec, err := ebpf.LoadCollectionSpec(filepath.Join(p, "bpf_"+arch+"_bpfel.o"))
				if err != nil {
					t.Fatal(err)
				}
				var probe release
				for _, name := range slices.Sorted(maps.Keys(spec.Programs)) {
					uses, newest, err := needs(spec.Programs[name])
					if err != nil {
						t.Fatalf("program %s: %v", name, err)
					}
					t.Logf("%s: needs %v: %s", name, newest, strings.Join(uses, ", "))
					if name == sleepableExit {
						if newest != sleepableSince {
							t.Errorf("%s needs %v, want %v", name, newest, sleepableSince)
						}
						continue
					}
					if p == "tcp" && name == recountProgram {
						if recountLoadedSince.before(newest) {
							t.Errorf("%s needs %v, but the agent loads it from %v", name, newest, recountLoadedSince)
						}
						continue
					}
					if want, ok := wantExit[p]; ok && name == exitProgram {
						if newest != want {
							t.Errorf("exit program %s needs %v, want %v", name, newest, want)
						}
						continue
					}
					if probe.before(newest) {
						probe = newest
					}
				}
				if want := wantMinimum[p]; probe != want {
					t.Errorf("%s without its exit program needs Linux %v, want %v (bpf/README.md, \"Minimum kernels\")", p, probe, want)
				}
			})
		}
	}
}
