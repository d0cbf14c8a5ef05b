package symtab

import (
	"debug/elf"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// buildTarget compiles testdata/target, stripped or not, into a temporary directory.
func buildTarget(t *testing.T, stripped bool) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "target")
	args := []string{"build", "-o", out}
	if stripped {
		args = append(args, "-ldflags=-s -w")
	}
	cmd := exec.Command("go", append(args, "../../testdata/target")...)
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

// TestStrippedMatchesSymbols checks the pclntab path against the ELF symbol table of the same program: a stripped
// copy must yield the same entries and RETs as the unstripped one, whose entries the linker's symbols confirm.
func TestStrippedMatchesSymbols(t *testing.T) {
	full, stripped := buildTarget(t, false), buildTarget(t, true)
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
		if len(f.RetOffs) == 0 || len(g.RetOffs) != len(f.RetOffs) {
			t.Errorf("%s: %d RETs unstripped, %d stripped", name, len(f.RetOffs), len(g.RetOffs))
		}
		t.Logf("%s entry %#x off %#x rets %d", name, f.Entry, f.EntryOff, len(f.RetOffs))
	}
	if _, err := bf.Func("no/such.Func"); err == nil {
		t.Error("missing function found")
	}
}

func TestReturnsSkipsImmediateBytes(t *testing.T) {
	// mov eax, 0xc3c3c3c3 ; ret ; int3 padding: only the real RET at offset 5 counts.
	code := []byte{0xb8, 0xc3, 0xc3, 0xc3, 0xc3, 0xc3, 0xcc, 0xcc}
	if got := Returns(code); !slices.Equal(got, []int{5}) {
		t.Fatalf("Returns = %v, want [5]", got)
	}
}
