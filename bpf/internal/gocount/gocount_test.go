package gocount

import (
	"bufio"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/arch/x86/x86asm"

	"github.com/shanhai-dev/shanhai/bpf/internal/offsets"
	"github.com/shanhai-dev/shanhai/bpf/internal/symtab"
)

func build(t *testing.T, flags ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "target")
	args := append([]string{"build", "-o", out}, flags...)
	if b, err := exec.Command("go", append(args, "../../testdata/target")...).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

func locate(t *testing.T, bin string) Counter {
	t.Helper()
	sym, err := symtab.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer sym.Close()
	c, err := Locate(sym, offsets.NewIndex(sym.ELF()))
	if err != nil {
		t.Fatalf("Locate: %v", err)
	}
	return c
}

// TestFromCodeMatchesSymbols: in the unstripped target, the addresses read out of the summer's instructions (what a
// stripped binary gets) equal the symbol table's.
func TestFromCodeMatchesSymbols(t *testing.T) {
	bin := build(t)
	c := locate(t, bin)
	if c.Addrs != "symbols" || c.Offsets != offsets.FromDWARF {
		t.Fatalf("unstripped: addresses from %s, offsets from %s", c.Addrs, c.Offsets)
	}
	sym, err := symtab.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer sym.Close()
	fn, err := sym.Func(summer)
	if err != nil {
		t.Fatal(err)
	}
	refs, err := sym.GlobalRefs(fn)
	if err != nil {
		t.Fatal(err)
	}
	sched, allp, err := fromCode(refs, offsets.Fallback[offsets.SchedLock], c.SchedOff)
	if err != nil {
		t.Fatal(err)
	}
	if sched != c.Sched || allp != c.Allp {
		t.Errorf("from code sched %#x allp %#x; symbols sched %#x allp %#x", sched, allp, c.Sched, c.Allp)
	}
}

func TestFromCodeRefuses(t *testing.T) {
	mov := func(a uint64) symtab.GlobalRef { return symtab.GlobalRef{Addr: a, Op: x86asm.MOV, Size: 8} }
	lea := func(a uint64) symtab.GlobalRef { return symtab.GlobalRef{Addr: a, Op: x86asm.LEA} }
	for name, refs := range map[string][]symtab.GlobalRef{
		"no lock":                        {mov(0x1000 + 64), mov(0x5000), mov(0x5008)},
		"lock without the count":         {lea(0x1000 + 8), mov(0x1000 + 72), mov(0x5000), mov(0x5008)},
		"no slice header":                {lea(0x1000 + 8), mov(0x1000 + 64), mov(0x5000), mov(0x5010)},
		"slice header only inside sched": {lea(0x1000 + 8), mov(0x1000 + 64), mov(0x1000 + 16), mov(0x1000 + 24)},
		"4-byte loads are no header":     {lea(0x1000 + 8), mov(0x1000 + 64), {Addr: 0x5000, Op: x86asm.MOV, Size: 4}, mov(0x5008)},
	} {
		if s, a, err := fromCode(refs, 8, 64); err == nil {
			t.Errorf("%s: found sched %#x allp %#x", name, s, a)
		}
	}
	s, a, err := fromCode([]symtab.GlobalRef{mov(0x4000), lea(0x1000 + 8), mov(0x1000 + 64), mov(0x1000 + 16),
		mov(0x1000 + 24), mov(0x5000), mov(0x5008)}, 8, 64)
	if err != nil || s != 0x1000 || a != 0x5000 {
		t.Errorf("fromCode = %#x, %#x, %v; want 0x1000, 0x5000", s, a, err)
	}
}

// TestReadMatchesRuntime: the count read from a running target (unstripped, stripped, PIE) lies between the counts
// the runtime reports itself just before and just after (each request to it starts a goroutine: net/http's
// background read), and follows goroutines the target starts exactly.
func TestReadMatchesRuntime(t *testing.T) {
	for _, v := range []struct {
		name  string
		flags []string
	}{{"plain", nil}, {"stripped", []string{"-ldflags=-s -w"}}, {"pie", []string{"-buildmode=pie"}}} {
		t.Run(v.name, func(t *testing.T) {
			bin := build(t, v.flags...)
			c := locate(t, bin)
			if v.name == "stripped" && (c.Addrs != "code" || c.Offsets != offsets.FromFallback) {
				t.Fatalf("stripped: addresses from %s, offsets from %s", c.Addrs, c.Offsets)
			}
			if c.PIE != (v.name == "pie") {
				t.Fatalf("PIE = %v", c.PIE)
			}
			cmd := exec.Command(bin)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
			line, err := bufio.NewReader(stdout).ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			base := "http://" + strings.TrimSpace(line)
			if c.PIE { // the bias must be exercised: loaded elsewhere than linked (address space randomisation)
				if start, err := loadStart(cmd.Process.Pid); err != nil || start == c.FirstLoad {
					t.Fatalf("PIE loaded at %#x (%v), linked at %#x", start, err, c.FirstLoad)
				}
			}
			get := func(path string) uint64 {
				resp, err := http.Get(base + path)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				n, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
				return n
			}
			read := func() uint64 {
				n, err := c.Read(cmd.Process.Pid)
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
			for range 3 {
				before := get("/created")
				n := read()
				after := get("/created")
				if n < before || n > after {
					t.Errorf("read %d goroutines created; the runtime said %d before and %d after", n, before, after)
				}
			}
			n0 := read()
			get("/spawn?n=1000")
			if d := read() - n0; d < 1000 || d > 1010 {
				t.Errorf("/spawn?n=1000 created %d goroutines by the read", d)
			}
		})
	}
}

func TestReadGoneProcess(t *testing.T) {
	c := Counter{Sched: 0x1000, Allp: 0x2000}
	if _, err := c.Read(1 << 30); err == nil {
		t.Error("read a process that does not exist")
	}
}
