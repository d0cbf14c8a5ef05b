package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"

	"github.com/shanhai-dev/shanhai/bpf/internal/symtab"
)

// Capability bits from linux/capability.h.
const (
	capDacReadSearch = 2
	capSysPtrace     = 19
	capSysAdmin      = 21
	capPerfmon       = 38
	capBPF           = 39
)

// canReadMemory reports whether the agent may read its targets' memory (/proc/<pid>/mem, for the goroutine
// counters: internal/gocount): root or CAP_SYS_PTRACE. Without it the goroutine count falls back to a uprobe.
func canReadMemory() bool {
	if os.Geteuid() == 0 {
		return true
	}
	caps, err := effectiveCaps()
	return err == nil && caps&(1<<capSysPtrace) != 0
}

// kernelBTF is where the kernel exposes its BTF, which CO-RE relocates every probe against (a variable so that a
// test can stand in for a kernel without it).
var kernelBTF = "/sys/kernel/btf/vmlinux"

// Preflight says, in one error naming every missing piece, why the agent cannot run here: kernel BTF (CO-RE needs
// it), the right to load and attach uprobes, tracefs, tracepoint programs and BTF tracepoint (tp_btf) programs on
// the TCP probe's tracepoints and, for the socket HTTP probe (httpProbe HTTPProbeSocket), on its own. Uprobes and tp_btf programs are tried, not guessed from
// capability bits: CAP_BPF+CAP_PERFMON load the programs but this kernel opens a uprobe's perf event only with
// CAP_SYS_ADMIN, and the preflight that checked the bits let such an agent start and fail every probe (found by review).
func Preflight(httpProbe string) error {
	var errs []error
	if _, err := os.Stat(kernelBTF); err != nil {
		errs = append(errs, fmt.Errorf("kernel BTF missing (%v): a kernel built with CONFIG_DEBUG_INFO_BTF=y is required", err))
		return fmt.Errorf("bpf agent cannot run: %w", errors.Join(errs...))
	}
	memlock := rlimit.RemoveMemlock()
	uprobe := tryUprobe()
	if uprobe != nil {
		errs = append(errs, uprobe)
	}
	if err := mountTracefs(); err != nil {
		errs = append(errs, err)
	}
	if errors.Is(uprobe, errNoCapSysAdmin) {
		// Without it nothing loads: the memlock limit and every program type below would repeat the same refusal.
		return fmt.Errorf("bpf agent cannot run: %w", errors.Join(errs...))
	}
	if memlock != nil {
		errs = append(errs, fmt.Errorf("raise RLIMIT_MEMLOCK: %w", memlock))
	}
	if err := features.HaveProgramType(ebpf.TracePoint); err != nil {
		errs = append(errs, fmt.Errorf("kernel cannot load %s programs (the TCP probe's): %w", ebpf.TracePoint, err))
	}
	if err := tryTpBTF(tcpTracepoints, "the TCP probe needs in every BPF_HTTP_PROBE mode"); err != nil {
		errs = append(errs, err)
	}
	if httpProbe == HTTPProbeSocket {
		needs := fmt.Sprintf("BPF_HTTP_PROBE=%s needs (BPF_HTTP_PROBE=%s does not)", HTTPProbeSocket, HTTPProbeUprobe)
		if err := tryTpBTF(sockTracepoints, needs); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("bpf agent cannot run: %w", errors.Join(errs...))
	}
	return nil
}

// emptyProgram returns 0 and does nothing else: what the preflight loads to learn whether the kernel takes a type.
var emptyProgram = asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}

// tryUprobe loads an empty uprobe program and attaches it to runtime.main in the agent's own executable (which this
// process entered once, at start, so it never fires), then takes it off. A refusal for want of privilege names the
// capability that grants it: CAP_SYS_ADMIN holds CAP_BPF and CAP_PERFMON's rights as well, so it is the one to add.
func tryUprobe() error {
	err := attachEmptyUprobe()
	if err == nil {
		return nil
	}
	if !errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("kernel cannot attach uprobes: %w", err)
	}
	if caps, cerr := effectiveCaps(); cerr == nil && caps&(1<<capSysAdmin) != 0 {
		return fmt.Errorf("kernel refused a uprobe although CAP_SYS_ADMIN is held (lockdown, seccomp or an LSM policy?): %w", err)
	}
	// The kernel's own words add nothing here (and cilium/ebpf's suggest raising RLIMIT_MEMLOCK, which is not it).
	return fmt.Errorf("%w: this kernel loads and attaches uprobes only with it (CAP_BPF+CAP_PERFMON are not enough); run as root or add CAP_SYS_ADMIN", errNoCapSysAdmin)
}

// errNoCapSysAdmin is tryUprobe's refusal for want of the capability.
var errNoCapSysAdmin = errors.New("missing CAP_SYS_ADMIN")

func attachEmptyUprobe() error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.Kprobe, License: "GPL", Instructions: emptyProgram})
	if err != nil {
		return fmt.Errorf("load an empty uprobe program: %w", err)
	}
	defer prog.Close()
	// /proc/self/exe, not os.Executable: when the agent's file was deleted or replaced (an upgrade while it runs),
	// os.Executable gives a path that is gone or another file, where the link still opens the running one.
	const self = "/proc/self/exe"
	// Its offset comes from .gopclntab, which a stripped agent keeps, where link.Executable would need .symtab.
	sym, err := symtab.Open(self)
	if err != nil {
		return fmt.Errorf("read the agent's executable: %w", err)
	}
	defer sym.Close()
	fn, err := sym.Func("runtime.main")
	if err != nil {
		return fmt.Errorf("read the agent's executable: %w", err)
	}
	ex, err := link.OpenExecutable(self)
	if err != nil {
		return fmt.Errorf("open the agent's executable for uprobes: %w", err)
	}
	l, err := ex.Uprobe(fn.Name, prog, &link.UprobeOptions{Address: fn.EntryOff})
	if err != nil {
		return fmt.Errorf("uprobe on %s of %s: %w", fn.Name, self, err)
	}
	return l.Close()
}

// tryTpBTF loads an empty BTF tracepoint (tp_btf) program on each of tracepoints and attaches it for a moment: the
// TCP probe's and the socket HTTP probe's programs are of that type, and a kernel without it (or without BTF for
// those tracepoints) used to pass the preflight and fail only when the probe was loaded. needs says who needs them.
func tryTpBTF(tracepoints []string, needs string) error {
	for _, tp := range tracepoints {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp,
			AttachTo: tp, License: "GPL", Instructions: emptyProgram})
		if err == nil {
			var l link.Link
			if l, err = link.AttachTracing(link.TracingOptions{Program: prog, AttachType: ebpf.AttachTraceRawTp}); err == nil {
				err = l.Close()
			}
			prog.Close()
		}
		if err != nil {
			return fmt.Errorf("kernel cannot run a BTF tracepoint (tp_btf) program on %s, which %s: %w", tp, needs, err)
		}
	}
	return nil
}

// mountTracefs makes tracepoints addressable: perf_event_open needs each tracepoint's id from tracefs, which minimal
// systems (containers, microVMs) do not always mount.
func mountTracefs() error { return mountTracefsAt("/sys/kernel/tracing") }

// mountTracefsAt mounts tracefs at dir unless its events are there. Only a missing events directory means "not
// mounted": tracefs is mode 0700, so an agent that is not root and lacks CAP_DAC_READ_SEARCH gets EACCES, which was
// reported as "not mounted" after a mount it had no right to try (found by review).
func mountTracefsAt(dir string) error {
	_, err := os.Stat(dir + "/events")
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("tracefs at %s cannot be read (%w): run as root, or add CAP_DAC_READ_SEARCH (tracefs is mode 0700)", dir, err)
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("tracefs at %s: %w", dir, err)
	}
	if err := syscall.Mount("nodev", dir, "tracefs", 0, ""); err != nil {
		return fmt.Errorf("tracefs is not mounted at %s and mounting it failed: %w", dir, err)
	}
	return nil
}

func effectiveCaps() (uint64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, errors.New("no CapEff in /proc/self/status")
}
