// Package gocount reads how many goroutines a Go process has created from the runtime's own counters in the
// process's memory, when someone asks (a scrape), instead of a uprobe on runtime.newproc1. The uprobe was a trap on
// every goroutine start, and net/http starts one per request (the connection's background read), so it was one of
// the three traps a request to the probed HTTP server cost; this read costs the process nothing.
//
// The counters are what runtime/metrics reports as /sched/goroutines-created: runtime.sched.goroutinesCreated (the
// counts of Ps that were destroyed) plus goroutinesCreated of every P in runtime.allp, which newproc1 increments.
// Their addresses come from the symbol table, or, in a binary linked with -ldflags=-s, from the instructions of
// runtime.(*schedStatsAggregate).compute, the runtime function that sums them; the field offsets come from DWARF or
// the fallback table (internal/offsets).
package gocount

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/arch/x86/x86asm"

	"github.com/shanhai-dev/shanhai/bpf/internal/offsets"
	"github.com/shanhai-dev/shanhai/bpf/internal/symtab"
)

// summer is the runtime function that adds the counters up for runtime/metrics: it locks sched (LEA of
// sched.lock), loads sched.goroutinesCreated and ranges over allp (loads of its pointer and length).
const summer = "runtime.(*schedStatsAggregate).compute"

// maxPs bounds the allp length believed from a read (one per GOMAXPROCS): the runtime sets no cap, but a length
// above this means the read was not of allp, and a read of that many pointers would be a waste.
const maxPs = 1 << 16

// Counter knows where one executable keeps its goroutine counters.
type Counter struct {
	Sched uint64 // link-time address of runtime.sched
	Allp  uint64 // link-time address of runtime.allp (a []*p)
	// PIE: a position-independent executable, loaded at another address per process; FirstLoad is the link-time
	// address of its segment at file offset 0, which /proc/<pid>/maps locates.
	PIE       bool
	FirstLoad uint64
	// Field offsets: runtime.schedt.goroutinesCreated, runtime.p.goroutinesCreated.
	SchedOff, POff uint64
	// How the addresses were found: "symbols" or "code" (see the package comment); offsets.Source for the offsets.
	Addrs   string
	Offsets offsets.Source
}

// Locate finds the counters of the executable behind sym, whose DWARF dwarf reads (an Index of sym.ELF(), shared
// with the other lookups of the same attach). It fails (wrapping symtab.ErrNotFound where something is missing) for
// runtimes without the counters (before Go 1.26); the caller then counts goroutines some other way.
func Locate(sym *symtab.Binary, dwarf *offsets.Index) (Counter, error) {
	f := sym.ELF()
	offs, src, err := dwarf.Resolve(offsets.SchedLock, offsets.SchedGoroutinesCreated, offsets.PGoroutinesCreated)
	if err != nil {
		return Counter{}, err
	}
	c := Counter{SchedOff: offs[offsets.SchedGoroutinesCreated], POff: offs[offsets.PGoroutinesCreated], Offsets: src}
	switch f.Type {
	case elf.ET_EXEC:
	case elf.ET_DYN:
		c.PIE = true
		for _, p := range f.Progs {
			if p.Type == elf.PT_LOAD && p.Off == 0 {
				c.FirstLoad = p.Vaddr
				break
			}
		}
	default:
		return Counter{}, fmt.Errorf("ELF type %v is not an executable", f.Type)
	}
	if addrs, err := sym.Symbols("runtime.sched", "runtime.allp"); err == nil {
		c.Sched, c.Allp, c.Addrs = addrs["runtime.sched"], addrs["runtime.allp"], "symbols"
		return c, nil
	}
	fn, err := sym.Func(summer)
	if err != nil {
		return Counter{}, err
	}
	refs, err := sym.GlobalRefs(fn)
	if err != nil {
		return Counter{}, err
	}
	if c.Sched, c.Allp, err = fromCode(refs, offs[offsets.SchedLock], c.SchedOff); err != nil {
		return Counter{}, fmt.Errorf("%s: %w", summer, err)
	}
	c.Addrs = "code"
	return c, nil
}

// fromCode picks sched and allp out of the summer's global references. sched: an address LEA'd (&sched.lock, for
// lock) such that the 8-byte load at the same base + goroutinesCreated's offset is there too. allp: the first 8-byte
// load whose address + 8 is also loaded with 8 bytes (the slice's pointer and length), outside sched.
func fromCode(refs []symtab.GlobalRef, lockOff, createdOff uint64) (sched, allp uint64, err error) {
	loads := map[uint64]bool{}
	for _, r := range refs {
		if r.Op == x86asm.MOV && r.Size == 8 {
			loads[r.Addr] = true
		}
	}
	for _, r := range refs {
		if r.Op == x86asm.LEA && r.Addr >= lockOff && loads[r.Addr-lockOff+createdOff] {
			sched = r.Addr - lockOff
			break
		}
	}
	if sched == 0 {
		return 0, 0, fmt.Errorf("no lock of sched with a load of sched+%d: %w", createdOff, symtab.ErrNotFound)
	}
	for _, r := range refs {
		inSched := r.Addr >= sched && r.Addr <= sched+createdOff
		if r.Op == x86asm.MOV && r.Size == 8 && !inSched && loads[r.Addr+8] {
			return sched, r.Addr, nil
		}
	}
	return 0, 0, fmt.Errorf("no load of a slice header (allp): %w", symtab.ErrNotFound)
}

// Read returns the goroutines process pid (running the executable c was located in) has created since it started.
// It reads the process's memory (/proc/<pid>/mem: root or CAP_SYS_PTRACE), 3 + GOMAXPROCS reads of a few bytes.
// The per-P counters are written by their Ps without atomics while this reads them, which is safe to read on amd64
// (aligned 8-byte stores are not torn); a P being destroyed at that moment can be missed or counted twice once.
func (c Counter) Read(pid int) (uint64, error) {
	var bias uint64
	if c.PIE {
		start, err := loadStart(pid)
		if err != nil {
			return 0, err
		}
		bias = start - c.FirstLoad&^0xfff
	}
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/mem")
	if err != nil {
		return 0, fmt.Errorf("goroutine counters: %w", err)
	}
	defer f.Close()
	var buf [24]byte
	word := func(addr uint64) (uint64, error) {
		if _, err := f.ReadAt(buf[:8], int64(addr)); err != nil {
			return 0, fmt.Errorf("pid %d: read %#x: %w", pid, addr, err)
		}
		return binary.LittleEndian.Uint64(buf[:8]), nil
	}
	n, err := word(bias + c.Sched + c.SchedOff)
	if err != nil {
		return 0, err
	}
	if _, err := f.ReadAt(buf[:16], int64(bias+c.Allp)); err != nil {
		return 0, fmt.Errorf("pid %d: read allp: %w", pid, err)
	}
	ptr, length := binary.LittleEndian.Uint64(buf[:8]), binary.LittleEndian.Uint64(buf[8:16])
	if length > maxPs {
		return 0, fmt.Errorf("pid %d: allp has %d entries: %w", pid, length, errNotRuntime)
	}
	ps := make([]byte, 8*length)
	if _, err := f.ReadAt(ps, int64(ptr)); err != nil && length > 0 {
		return 0, fmt.Errorf("pid %d: read allp's %d entries: %w", pid, length, err)
	}
	for i := range length {
		p := binary.LittleEndian.Uint64(ps[8*i:])
		if p == 0 {
			break // as the runtime's own sum does
		}
		k, err := word(p + c.POff)
		if err != nil {
			return 0, err
		}
		n += k
	}
	return n, nil
}

var errNotRuntime = errors.New("not the Go runtime's layout")

// loadStart returns where process pid mapped the start (file offset 0) of its executable, found in /proc/<pid>/maps
// by the executable's inode.
func loadStart(pid int) (uint64, error) {
	dir := "/proc/" + strconv.Itoa(pid)
	var st syscall.Stat_t
	if err := syscall.Stat(dir+"/exe", &st); err != nil {
		return 0, fmt.Errorf("pid %d: executable: %w", pid, err)
	}
	maps, err := os.ReadFile(dir + "/maps")
	if err != nil {
		return 0, fmt.Errorf("pid %d: %w", pid, err)
	}
	// Lines are "start-end perms offset dev inode path".
	for line := range strings.Lines(string(maps)) {
		f := strings.Fields(line)
		if len(f) < 5 || f[2] != "00000000" || f[4] != strconv.FormatUint(st.Ino, 10) {
			continue
		}
		start, _, _ := strings.Cut(f[0], "-")
		return strconv.ParseUint(start, 16, 64)
	}
	return 0, fmt.Errorf("pid %d: executable (inode %d) not in its maps", pid, st.Ino)
}
