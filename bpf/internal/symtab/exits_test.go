package symtab

import (
	"encoding/binary"
	"slices"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// Byte sequences the tests assemble functions from (amd64, as the Go compiler emits them).
var (
	call0    = []byte{0xe8, 0, 0, 0, 0}             // CALL rel32 (the target does not matter to exitAfter)
	movStore = []byte{0x48, 0x89, 0x44, 0x24, 0x08} // MOV [RSP+8], RAX: writes no register
	movRAX   = []byte{0x48, 0x8b, 0x44, 0x24, 0x08} // MOV RAX, [RSP+8]
	movR14   = []byte{0x4c, 0x8b, 0x34, 0x24}       // MOV R14, [RSP]
	testBX   = []byte{0x48, 0x85, 0xdb}             // TEST RBX, RBX
	jne8     = []byte{0x75, 0x02}                   // JNE +2
	callSI   = []byte{0xff, 0xd6}                   // CALL RSI (indirect)
	epilogue = []byte{0x48, 0x83, 0xc4, 0x20, 0x5d} // ADD RSP, 0x20; POP RBP
	ret      = []byte{0xc3}
	nop6     = []byte{0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00}
	jmpTable = []byte{0xff, 0xe0} // JMP RAX
)

func asm(parts ...[]byte) []byte { return slices.Concat(parts...) }

func TestExitAfter(t *testing.T) {
	rax := []x86asm.Reg{x86asm.RAX}
	for _, c := range []struct {
		name string
		code []byte
		keep []x86asm.Reg
		site int // -1: error
		emul bool
	}{
		{"jcc right after the return", asm(call0, testBX, jne8, ret, ret, ret), rax, 8, true},
		{"stores before a call", asm(call0, movStore, movStore, call0, ret), rax, 15, true},
		{"kept register overwritten: the return address", asm(call0, movRAX, call0, ret), rax, 5, false},
		{"g overwritten: the return address", asm(call0, movR14, call0, ret), nil, 5, false},
		{"indirect call passed when no register is kept", asm(call0, callSI, call0, ret), nil, 7, true},
		{"indirect call stops when a register is kept", asm(call0, callSI, call0, ret), rax, 5, false},
		{"tail position: the return address", asm(call0, epilogue, ret), nil, 5, false},
		{"canonical NOP is emulated", asm(call0, nop6, ret), nil, 5, true},
		{"branch into the path: the return address", asm(call0, movStore, call0, ret, []byte{0xeb, 0xf8}), nil, 5, false},
		{"branch onto the return address", asm(call0, movStore, call0, ret, []byte{0xeb, 0xf3}), nil, -1, false},
		{"jump table in the function", asm(call0, testBX, jne8, jmpTable, ret), nil, -1, false},
	} {
		site, emul, err := exitAfter(c.code, 5, c.keep, nil)
		switch {
		case c.site < 0 && err == nil:
			t.Errorf("%s: site +%d, want an error", c.name, site)
		case c.site >= 0 && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.site >= 0 && (site != c.site || emul != c.emul):
			t.Errorf("%s: site +%d emulated %v, want +%d %v", c.name, site, emul, c.site, c.emul)
		}
	}
}

// TestExitAfterSkipsDeferreturn: a call the caller rejects (deferreturn) is no exit; the return address is.
func TestExitAfterSkipsDeferreturn(t *testing.T) {
	code := asm(call0, call0, ret)
	binary.LittleEndian.PutUint32(code[6:], 0x40) // second call: target +0x4a
	site, emul, err := exitAfter(code, 5, nil, func(target int) bool { return target == 0x4a })
	if err != nil || site != 5 || emul {
		t.Fatalf("site +%d emulated %v err %v, want the return address +5", site, emul, err)
	}
}

func TestEmulated(t *testing.T) {
	for _, c := range []struct {
		b    []byte
		want bool
	}{
		{call0, true}, {[]byte{0xe9, 1, 0, 0, 0}, true}, {[]byte{0xeb, 1}, true}, {jne8, true},
		{[]byte{0x0f, 0x84, 1, 0, 0, 0}, true}, {[]byte{0x55}, true}, {[]byte{0x41, 0x56}, true}, {nop6, true},
		{ret, false}, {callSI, false}, {[]byte{0x5d}, false}, {movStore, false}, {[]byte{0x66, 0xe8, 0, 0}, false},
		{[]byte{0x66, 0x0f, 0x1f, 0x44, 0x00, 0x01}, false},
	} {
		if got := emulated(c.b); got != c.want {
			t.Errorf("emulated(% x) = %v, want %v", c.b, got, c.want)
		}
	}
}

func TestCodeRefs(t *testing.T) {
	// at 0x1000: CALL entry; JMP entry; LEA RAX, [RIP+entry]; CALL elsewhere. entry = 0x2000.
	code := asm(call0, []byte{0xe9, 0, 0, 0, 0}, []byte{0x48, 0x8d, 0x05, 0, 0, 0, 0}, call0)
	put := func(at, end int) { binary.LittleEndian.PutUint32(code[at:], uint32(0x2000-(0x1000+end))) }
	put(1, 5)
	put(6, 10)
	put(13, 17)
	got := codeRefs(code, 0x1000, 0x2000)
	want := []ref{{0x1000, refCall}, {0x1005, refJMP}, {0x100b, refLEA}}
	if !slices.Equal(got, want) {
		t.Fatalf("codeRefs = %+v, want %+v", got, want)
	}
}

func TestOwnPackageOnly(t *testing.T) {
	for name, want := range map[string]bool{
		"net/http.serverHandler.ServeHTTP":                           true,
		"net/http.(*Transport).roundTrip":                            true,
		"github.com/redis/go-redis/v9.(*baseClient)._process":        true,
		"github.com/segmentio/kafka-go.(*Writer).WriteMessages":      false,
		"github.com/apache/pulsar-client-go/pulsar.(*producer).Send": true,
		"runtime.startTheWorldWithSema":                              false,
	} {
		if got := ownPackageOnly(name); got != want {
			t.Errorf("ownPackageOnly(%s) = %v, want %v", name, got, want)
		}
	}
}

// TestExitsRealBinary finds the call sites of the probed functions in a real (unstripped and stripped) build: the
// HTTP server's exit is the emulated instruction after conn.serve's call, and every exit is a real instruction
// right after a CALL of the function (or its first emulated follower).
func TestExitsRealBinary(t *testing.T) {
	for _, stripped := range []bool{false, true} {
		b, err := Open(buildTarget(t, stripped))
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		for _, c := range []struct {
			name string
			keep []x86asm.Reg
		}{
			{"net/http.serverHandler.ServeHTTP", nil},
			{"runtime.startTheWorldWithSema", nil},
			{"net/http.(*Transport).roundTrip", []x86asm.Reg{x86asm.RAX, x86asm.RBX}},
		} {
			f, err := b.Func(c.name)
			if err != nil {
				t.Fatal(err)
			}
			e := b.Exits(f, c.keep...)
			t.Logf("stripped=%v %s: %s, %d probes (%d stepped) %s", stripped, c.name, e.Mode, len(e.Offs), e.Stepped, e.Reason)
			if e.Mode != ModeCallSite || len(e.Offs) == 0 {
				t.Errorf("%s: mode %s (%s), want call sites", c.name, e.Mode, e.Reason)
			}
		}
		f, _ := b.Func("net/http.serverHandler.ServeHTTP")
		e := b.Exits(f)
		serve, err := b.Func("net/http.(*conn).serve")
		if err != nil {
			t.Fatal(err)
		}
		code := make([]byte, serve.End-serve.Entry)
		if _, err := b.text.ReadAt(code, int64(serve.Entry-b.text.Addr)); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, off := range e.Offs {
			if off < serve.EntryOff || off >= serve.EntryOff+uint64(len(code)) {
				continue
			}
			found = true
			at := int(off - serve.EntryOff)
			inst, err := x86asm.Decode(code[at:], 64)
			if err != nil || !emulated(code[at:at+inst.Len]) {
				t.Errorf("exit in conn.serve at +%#x: %v, not an emulated instruction", at, inst)
			}
			if _, ok := slices.BinarySearch(newFuncBody(code).starts, at); !ok {
				t.Errorf("exit at +%#x is not an instruction start", at)
			}
		}
		if !found {
			t.Error("no exit in net/http.(*conn).serve")
		}
		// From the caller's side (CallExitsIn, the go-redis pipelines' exits) the same one call gives the same exit.
		in, stepped, err := b.CallExitsIn(serve, f)
		if err != nil || stepped != 0 || len(in) != 1 || !slices.Contains(e.Offs, in[0]) {
			t.Errorf("CallExitsIn(conn.serve, ServeHTTP) = %#x, %d stepped, %v; want the one emulated exit Exits found there %#x",
				in, stepped, err, e.Offs)
		}
		if _, _, err := b.CallExitsIn(f, serve); err == nil {
			t.Error("CallExitsIn(ServeHTTP, conn.serve): no error for a callee it never calls")
		}
	}
}

func TestTailReturn(t *testing.T) {
	for _, c := range []struct {
		code []byte
		want bool
	}{
		{asm(epilogue, ret), true},
		{asm([]byte{0x5d}, ret), true},
		{ret, true},
		{asm(movRAX, epilogue, ret), false},
		{asm(epilogue, call0), false},
	} {
		if got := tailReturn(c.code); got != c.want {
			t.Errorf("tailReturn(% x) = %v, want %v", c.code, got, c.want)
		}
	}
}
