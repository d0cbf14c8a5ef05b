package symtab

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// buildTarget compiles testdata/target, stripped or not, into a temporary directory.
func buildTarget(t testing.TB, stripped bool) string {
	return buildTargetLinked(t, stripped, false)
}

// buildTargetLinked is buildTarget, linked by the system's linker (-linkmode=external, cgo, as any program with C
// code is) when external is set, with more go build flags.
func buildTargetLinked(t testing.TB, stripped, external bool, flags ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "target")
	args := append([]string{"build", "-o", out}, flags...)
	ldflags, cgo := "", "CGO_ENABLED=0"
	if stripped {
		ldflags = "-s -w"
	}
	if external {
		ldflags, cgo = strings.TrimSpace(ldflags+" -linkmode=external"), "CGO_ENABLED=1"
	}
	if ldflags != "" {
		args = append(args, "-ldflags="+ldflags)
	}
	cmd := exec.Command("go", append(args, "../../testdata/target")...)
	cmd.Env = append(cmd.Environ(), cgo)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

// TestStrippedMatchesSymbols checks the pclntab path against the ELF symbol table of the same program: a stripped
// copy must yield the same entries and RETs as the unstripped one, whose entries the linker's symbols confirm. Linked
// externally too: .text then begins with the C toolchain's code (crt1's _start) before runtime.text, which the
// pclntab's offsets count from, and a stripped copy, with no symbol to say where runtime.text is, got every function
// 0x100 bytes early, its probes mid-instruction (found by review: ServeHTTP at 0x68f7a0 for 0x68f8a0, three "RETs"
// inside other instructions for its one).
func TestStrippedMatchesSymbols(t *testing.T) {
	for _, c := range []struct{ external, pie bool }{{false, false}, {true, false}, {true, true}} {
		t.Run(fmt.Sprintf("external=%v,pie=%v", c.external, c.pie), func(t *testing.T) {
			var flags []string
			if c.pie {
				flags = []string{"-buildmode=pie"}
			}
			full, stripped := buildTargetLinked(t, false, c.external, flags...), buildTargetLinked(t, true, c.external, flags...)
			testStrippedMatchesSymbols(t, full, stripped)
		})
	}
}

// TestNoModuledataFallsBackSafely: a stripped binary without the Go 1.26 linker's .go.module section (an older
// linker's, simulated by renaming the section) has no runtime.text to read. Linked internally, .text's start is it and
// the functions still match the symbols; linked externally, .text's start is crt1's code, and the binary is refused
// instead of having every function, its call probe and RETs placed 0x100 bytes early (found by review of fdc37031:
// opened, ServeHTTP at .text's start + its offset).
func TestNoModuledataFallsBackSafely(t *testing.T) {
	full, stripped := buildTarget(t, false), buildTarget(t, true)
	testStrippedMatchesSymbols(t, full, withoutModuledata(t, stripped))

	ext := withoutModuledata(t, buildTargetLinked(t, true, true))
	b, err := Open(ext)
	if err == nil {
		f, ferr := b.Func("net/http.serverHandler.ServeHTTP")
		b.Close()
		t.Fatalf("externally linked, stripped, no .go.module: opened (ServeHTTP at %#x, %v)", f.Entry, ferr)
	}
	if !strings.Contains(err.Error(), "runtime.text not found") {
		t.Errorf("refused for another reason: %v", err)
	}
	t.Log(err)
}

// TestAModuledataWhoseETextDoesNotFitIsNamedInTheRefusal: a stripped binary is refused too when its moduledata's
// etext is not where Go's functions, counted from its text, end; the refusal said no moduledata was found, sending
// whoever read it to look for a missing .go.module section that is there.
func TestAModuledataWhoseETextDoesNotFitIsNamedInTheRefusal(t *testing.T) {
	path := buildTargetLinked(t, true, true)
	data, f := readELF(t, path)
	s := f.Section(".go.module")
	if s == nil {
		t.Fatal("no .go.module")
	}
	// etext moved 0x40 bytes on: still in .text (C code follows Go's when linked externally), past textSlack.
	at := s.Offset + moduleETextOff
	binary.LittleEndian.PutUint64(data[at:], binary.LittleEndian.Uint64(data[at:])+0x40)
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := Open(path)
	if err == nil {
		b.Close()
		t.Fatal("opened with a moduledata etext 0x40 bytes past Go's functions")
	}
	if !strings.Contains(err.Error(), "runtime.etext from .go.module") {
		t.Errorf("the refusal does not name the moduledata it read: %v", err)
	}
	t.Log(err)
}

// readELF reads the executable at path, for a test to change its bytes, and parses them.
func readELF(t *testing.T, path string) ([]byte, *elf.File) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return data, f
}

// withoutModuledata copies the executable at path with its .go.module section renamed, as if an older linker made it.
func withoutModuledata(t *testing.T, path string) string {
	t.Helper()
	data, f := readELF(t, path)
	names := f.Section(".shstrtab")
	if names == nil {
		t.Fatal("no .shstrtab")
	}
	at := bytes.Index(data[names.Offset:names.Offset+names.Size], []byte(".go.module\x00"))
	if at < 0 {
		t.Fatal("no .go.module section name")
	}
	copy(data[names.Offset+uint64(at):], ".go.modulx")
	out := path + "-nomodule"
	if err := os.WriteFile(out, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if g, err := elf.Open(out); err != nil || g.Section(".go.module") != nil {
		t.Fatalf("rename of .go.module: %v", err)
	}
	return out
}

func testStrippedMatchesSymbols(t *testing.T, full, stripped string) {
	ef, err := elf.Open(full)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	syms, err := ef.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	bf, err := Open(full)
	if err != nil {
		t.Fatal(err)
	}
	defer bf.Close()
	bs, err := Open(stripped)
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Close()
	if _, err := bs.ELF().Symbols(); err == nil {
		t.Fatal("stripped copy still has a symbol table")
	}
	for _, name := range []string{"net/http.serverHandler.ServeHTTP", "net/http.(*response).WriteHeader",
		"runtime.stopTheWorldWithSema", "runtime.startTheWorldWithSema", "runtime.newproc1",
		"net/http.(*Transport).roundTrip"} {
		f, err := bf.Func(name)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(syms, func(s elf.Symbol) bool { return s.Name == name })
		if i < 0 || syms[i].Value != f.Entry || syms[i].Value+syms[i].Size > f.End {
			t.Errorf("%s: pclntab entry %#x..%#x disagrees with the symbol table", name, f.Entry, f.End)
		}
		g, err := bs.Func(name)
		if err != nil {
			t.Fatalf("stripped: %v", err)
		}
		if len(f.RetOffs) == 0 || !slices.Equal(g.RetOffs, f.RetOffs) || g.Entry != f.Entry || g.CallOff != f.CallOff {
			t.Errorf("%s: unstripped entry %#x call %#x RETs %#x, stripped %#x %#x %#x", name, f.Entry, f.CallOff, f.RetOffs,
				g.Entry, g.CallOff, g.RetOffs)
		}
		code := make([]byte, 1)
		if _, err := bf.text.ReadAt(code, int64(f.Entry+f.CallOff-f.EntryOff-bf.text.Addr)); err != nil {
			t.Fatal(err)
		}
		if f.CallOff == f.EntryOff || code[0] != 0x55 {
			t.Errorf("%s: call probe at +%d (%#x), want the PUSH RBP after the stack check", name, f.CallOff-f.EntryOff, code[0])
		}
		t.Logf("%s entry %#x off %#x push +%d rets %d", name, f.Entry, f.EntryOff, f.CallOff-f.EntryOff, len(f.RetOffs))
	}
	if _, err := bf.Func("no/such.Func"); err == nil {
		t.Error("missing function found")
	}
}

func TestPushOffset(t *testing.T) {
	// cmp rsp,[r14+0x10]; jbe +0x16; push rbp; mov rbp,rsp
	framed := []byte{0x49, 0x3b, 0x66, 0x10, 0x76, 0x16, 0x55, 0x48, 0x89, 0xe5}
	if got := pushOffset(framed); got != 6 {
		t.Errorf("framed: %d, want 6", got)
	}
	// inc rax; ret: no frame, probe the entry
	if got := pushOffset([]byte{0x48, 0xff, 0xc0, 0xc3}); got != 0 {
		t.Errorf("leaf: %d, want 0", got)
	}
}

func TestReturnsSkipsImmediateBytes(t *testing.T) {
	// mov eax, 0xc3c3c3c3 ; ret ; int3 padding: only the real RET at offset 5 counts.
	code := []byte{0xb8, 0xc3, 0xc3, 0xc3, 0xc3, 0xc3, 0xcc, 0xcc}
	if got := Returns(code); !slices.Equal(got, []int{5}) {
		t.Fatalf("Returns = %v, want [5]", got)
	}
}

// TestArgAddrFindsItab checks ArgAddr and IndirectArgAddr against the linker's symbols: the itab conn.serve passes to
// ServeHTTP with the *response must be go:itab.*net/http.response,net/http.ResponseWriter, the one runHandler passes
// its handler func with the HTTP/2 writer go:itab.*net/http.http2responseWriter,net/http.ResponseWriter, each found
// the same in a stripped copy.
func TestArgAddrFindsItab(t *testing.T) {
	const (
		itab   = "go:itab.*net/http.response,net/http.ResponseWriter"
		h2Itab = "go:itab.*net/http.http2responseWriter,net/http.ResponseWriter"
	)
	full, err := Open(buildTarget(t, false))
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	syms, err := full.Symbols(itab, h2Itab)
	if err != nil {
		t.Fatal(err)
	}
	for _, stripped := range []bool{false, true} {
		b, err := Open(buildTarget(t, stripped))
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		serve, err := b.Func("net/http.(*conn).serve")
		if err != nil {
			t.Fatal(err)
		}
		handler, err := b.Func("net/http.serverHandler.ServeHTTP")
		if err != nil {
			t.Fatal(err)
		}
		runHandler, err := b.Func("net/http.(*http2serverConn).runHandler")
		if err != nil {
			t.Fatal(err)
		}
		got, err := b.ArgAddr(serve, handler, x86asm.RBX)
		if err != nil {
			t.Fatalf("stripped %v: %v", stripped, err)
		}
		if got != syms[itab] {
			t.Errorf("stripped %v: ArgAddr %#x, the unstripped build's symbol %s at %#x", stripped, got, itab, syms[itab])
		}
		got, err = b.IndirectArgAddr(runHandler, x86asm.RAX)
		if err != nil {
			t.Fatalf("stripped %v: %v", stripped, err)
		}
		if got != syms[h2Itab] {
			t.Errorf("stripped %v: IndirectArgAddr %#x, the unstripped build's symbol %s at %#x", stripped, got, h2Itab, syms[h2Itab])
		}
		// A register the call does not receive a LEA in is refused, not guessed.
		if _, err := b.ArgAddr(serve, handler, x86asm.R12); err == nil {
			t.Error("ArgAddr found an address in R12")
		}
		if _, err := b.IndirectArgAddr(runHandler, x86asm.R12); err == nil {
			t.Error("IndirectArgAddr found an address in R12")
		}
	}
}
