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
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/rlimit"
)

// Capability bits from linux/capability.h.
const (
	capSysPtrace = 19
	capSysAdmin  = 21
	capPerfmon   = 38
	capBPF       = 39
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

// Preflight says, in one error naming every missing piece, why the agent cannot run here: privileges (root, or
// CAP_BPF + CAP_PERFMON), kernel BTF (CO-RE and fexit need it) and the program types the probes use.
func Preflight() error {
	var errs []error
	if os.Geteuid() != 0 {
		caps, err := effectiveCaps()
		if err != nil || !(caps&(1<<capSysAdmin) != 0 || caps&(1<<capBPF) != 0 && caps&(1<<capPerfmon) != 0) {
			errs = append(errs, errors.New("needs root or CAP_BPF+CAP_PERFMON (run as root: sudo bpf-agent)"))
		}
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		errs = append(errs, fmt.Errorf("kernel BTF missing (/sys/kernel/btf/vmlinux: %v): a kernel built with CONFIG_DEBUG_INFO_BTF=y is required", err))
	}
	if len(errs) == 0 {
		if err := mountTracefs(); err != nil {
			errs = append(errs, err)
		}
		if err := rlimit.RemoveMemlock(); err != nil {
			errs = append(errs, fmt.Errorf("raise RLIMIT_MEMLOCK: %w", err))
		}
		for _, pt := range []ebpf.ProgramType{ebpf.Kprobe, ebpf.TracePoint} {
			if err := features.HaveProgramType(pt); err != nil {
				errs = append(errs, fmt.Errorf("kernel cannot load %s programs (uprobes are %s programs): %w", pt, ebpf.Kprobe, err))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("bpf agent cannot run: %w", errors.Join(errs...))
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
