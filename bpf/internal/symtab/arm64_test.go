package symtab

import (
	"debug/elf"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/arch/arm64/arm64asm"
)

// buildARM64Target cross-compiles testdata/target for arm64 (the nodes of kind on Apple-silicon laptops). The test
// only reads the file: arm64 code cannot run here.
func buildARM64Target(t testing.TB, stripped bool) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "target-arm64")
	args := []string{"build", "-o", out}
	if stripped {
		args = append(args, "-ldflags=-s -w")
	}
	cmd := exec.Command("go", append(args, "../../testdata/target")...)
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

// TestARM64Returns finds serverHandler.ServeHTTP's returns in a real arm64 Go binary: every offset must be a 4-byte
// aligned word that decodes to RET, and every RET of the function (by arm64asm, independently of the finder) must be
// among them. The probe's call offset must be the prologue's store of the link register.
func TestARM64Returns(t *testing.T) {
	for _, stripped := range []bool{false, true} {
		path := buildARM64Target(t, stripped)
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b, err := Open(path)
		if err != nil {
			t.Fatalf("stripped=%v: %v", stripped, err)
		}
		if b.ELF().Machine != elf.EM_AARCH64 {
			t.Fatalf("built %v, want EM_AARCH64", b.ELF().Machine)
		}
		fn, err := b.Func("net/http.serverHandler.ServeHTTP")
		if err != nil {
			t.Fatalf("stripped=%v: %v", stripped, err)
		}
		want := map[uint64]bool{}
		for off := fn.EntryOff; off < fn.EntryOff+(fn.End-fn.Entry); off += 4 {
			in, err := arm64asm.Decode(raw[off : off+4])
			if err == nil && in.Op == arm64asm.RET {
				want[off] = true
			}
		}
		if len(want) == 0 {
			t.Fatal("arm64asm finds no RET in serverHandler.ServeHTTP: the test reads the wrong bytes")
		}
		for _, off := range fn.RetOffs {
			if off%4 != 0 {
				t.Errorf("RET offset %#x is not 4-byte aligned", off)
			}
			if w := binary.LittleEndian.Uint32(raw[off:]); w != 0xd65f03c0 {
				t.Errorf("offset %#x holds %#08x, not RET (0xd65f03c0)", off, w)
			}
			delete(want, off)
		}
		for off := range want {
			t.Errorf("RET at %#x not found", off)
		}
		in, err := arm64asm.Decode(raw[fn.CallOff : fn.CallOff+4])
		if err != nil {
			t.Fatalf("call offset %#x: %v", fn.CallOff, err)
		}
		if s := in.String(); in.Op != arm64asm.STR && in.Op != arm64asm.STP || !strings.Contains(s, "X30") {
			t.Errorf("call offset %#x is %q, want the store of the link register (X30)", fn.CallOff, s)
		}
		e := b.Exits(fn)
		if e.Mode != ModeRet || len(e.Offs) != len(fn.RetOffs) {
			t.Errorf("Exits on arm64 = %s with %d offsets, want %s with the %d RETs", e.Mode, len(e.Offs), ModeRet, len(fn.RetOffs))
		}
		t.Logf("stripped=%v: %d RETs, call offset %#x (%s), exits: %s", stripped, len(fn.RetOffs), fn.CallOff, in, e.Reason)
		b.Close()
	}
}
