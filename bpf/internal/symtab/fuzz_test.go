package symtab

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"flag"
	"fmt"
	"testing"

	"golang.org/x/arch/x86/x86asm"

	"github.com/shanhai-dev/shanhai/bpf/internal/symtab/exetest"
)

// -write-seeds regenerates testdata/fuzz from a freshly built test target (bpf/README.md, Tests).
var writeSeeds = flag.Bool("write-seeds", false, "write the fuzz seed corpus from a freshly built test target")

// textAddr is where the images of the fuzz targets load their .text, as the Go linker does.
const textAddr = 0x401000

// FuzzOpen opens an ELF image and reads every function its pclntab lists the way the agent does: code, entry and
// RET offsets, exits after the call sites, global references, symbols. The seeds are images of a few real
// functions: their code and a pclntab that lists only them (see compactPclntab), whole or cut short or lying.
func FuzzOpen(f *testing.F) {
	if *writeSeeds {
		writeOpenSeeds(f)
	}
	f.Fuzz(func(t *testing.T, image []byte) {
		b, err := newBinary(bytes.NewReader(image), int64(len(image)))
		if err != nil {
			return
		}
		readAll(b)
	})
}

// readAll reads b's first functions as the agent and internal/gocount do.
func readAll(b *Binary) {
	for i, fn := range b.table.Funcs {
		if i == 32 {
			break
		}
		g, err := b.Func(fn.Sym.Name)
		if err != nil {
			continue
		}
		b.Exits(g, x86asm.RAX)
		b.GlobalRefs(g)
	}
	b.Symbols("runtime.text")
}

// FuzzPclntab is FuzzOpen with the image built around the two sections the fuzzer changes, so that its changes go to
// the pclntab and the code rather than the ELF headers. Seeds: FuzzOpen's windows.
func FuzzPclntab(f *testing.F) {
	if *writeSeeds {
		for i, w := range windows(f, 3) {
			writeSeed(f, "FuzzPclntab", fmt.Sprintf("window%d", i), w.text, w.pclntab)
		}
	}
	f.Fuzz(func(t *testing.T, text, pclntab []byte) {
		img := image(text, pclntab)
		b, err := newBinary(bytes.NewReader(img), int64(len(img)))
		if err != nil {
			return
		}
		readAll(b)
	})
}

// FuzzExits finds the RETs, the PUSH RBP and the exits after every direct call of one function's code.
func FuzzExits(f *testing.F) {
	f.Fuzz(func(t *testing.T, code []byte) {
		Returns(code)
		if off := pushOffset(code); off < 0 || off > len(code) {
			t.Fatalf("push offset %d outside %d bytes", off, len(code))
		}
		fb := newFuncBody(code)
		calls := 0
		for _, at := range fb.starts {
			if code[at] != 0xe8 || at+5 > len(code) {
				continue
			}
			if calls++; calls <= 8 { // each scans all the code: a few are enough, every call would be quadratic
				target := textAddr + uint64(at+5) + uint64(int64(int32(binary.LittleEndian.Uint32(code[at+1:]))))
				codeRefs(code, textAddr, target)
			}
			for _, keep := range [][]x86asm.Reg{nil, {x86asm.RAX, x86asm.RBX}} {
				site, _, err := fb.exitAfter(at+5, keep, func(target int) bool { return target == 0 })
				if err == nil && (site < at+5 || site > len(code)) {
					t.Fatalf("exit of the call at +%#x at +%#x, outside the function", at, site)
				}
				if err == nil {
					tailReturn(code[site:])
				}
			}
		}
	})
}

// writeOpenSeeds writes FuzzOpen's and FuzzExits' seeds (see windows).
func writeOpenSeeds(f *testing.F) {
	for i, w := range windows(f, 3) {
		name := fmt.Sprintf("window%d", i)
		writeSeed(f, "FuzzOpen", name, image(w.text, w.pclntab))
		writeSeed(f, "FuzzOpen", name+"-cut", image(w.text, w.pclntab[:len(w.pclntab)*2/3]))
		writeSeed(f, "FuzzOpen", name+"-count", image(w.text, withCount(w.pclntab, 1<<28-1)))
		writeSeed(f, "FuzzExits", name, w.text)
	}
}

// window is the code of a few consecutive functions of a real binary and a pclntab listing just them.
type window struct{ text, pclntab []byte }

// windows cuts up to n windows of four consecutive small functions, one of which calls another, out of the test
// target.
func windows(tb testing.TB, n int) []window {
	bin, err := Open(buildTarget(tb, false))
	if err != nil {
		tb.Fatal(err)
	}
	defer bin.Close()
	pcln, err := bin.f.Section(".gopclntab").Data()
	if err != nil {
		tb.Fatal(err)
	}
	code, err := bin.textData()
	if err != nil {
		tb.Fatal(err)
	}
	var out []window
	funcs := bin.table.Funcs
	for i := 0; i+4 < len(funcs) && len(out) < n; i++ {
		first, last := funcs[i], funcs[i+3]
		text := code[first.Entry-bin.text.Addr : last.End-bin.text.Addr]
		if len(text) > 2048 || !callsWithin(text, first.Entry, last.End) {
			continue
		}
		out = append(out, window{text, compactPclntab(tb, pcln, i, 4, first.Entry-bin.textStart)})
		i += 3
	}
	if len(out) == 0 {
		tb.Fatal("no window of small functions calling each other")
	}
	return out
}

// image is an executable of text (at textAddr) and pclntab.
func image(text, pclntab []byte, lies ...func(*exetest.Section)) []byte {
	secs := []exetest.Section{
		{Name: ".text", Type: elf.SHT_PROGBITS, Flags: elf.SHF_ALLOC | elf.SHF_EXECINSTR, Addr: textAddr, Data: text},
		{Name: ".gopclntab", Type: elf.SHT_PROGBITS, Flags: elf.SHF_ALLOC, Addr: 0x800000, Data: pclntab},
	}
	for _, lie := range lies {
		lie(&secs[0])
	}
	return exetest.Build(secs...)
}

// withCount is pclntab with its header's function count set to n.
func withCount(pclntab []byte, n uint64) []byte {
	out := bytes.Clone(pclntab)
	binary.LittleEndian.PutUint64(out[8:], n)
	return out
}

// TestOpenRefusesLies: headers that claim more than the file holds are refused before anything is allocated for
// them. Without checkPclntab a count of 2^28-1 made debug/gosym allocate 24 GiB (fatal: out of memory).
func TestOpenRefusesLies(t *testing.T) {
	w := windows(t, 1)[0]
	for _, c := range []struct {
		name  string
		image []byte
	}{
		{"function count 2^40", image(w.text, withCount(w.pclntab, 1<<40))},
		{"function count 2^28-1", image(w.text, withCount(w.pclntab, 1<<28-1))},
		{"a count as large as the section", image(w.text, withCount(w.pclntab, uint64(len(w.pclntab))))},
		{".text without bytes", image(w.text, w.pclntab, func(s *exetest.Section) { s.Type, s.Size = elf.SHT_NOBITS, 1<<40 })},
		{".text beyond the file", image(w.text, w.pclntab, func(s *exetest.Section) { s.Size = 1 << 40 })},
		{".text compressed", image(w.text, w.pclntab, func(s *exetest.Section) { s.Flags |= elf.SHF_COMPRESSED })},
	} {
		if _, err := newBinary(bytes.NewReader(c.image), int64(len(c.image))); err == nil {
			t.Errorf("%s: opened", c.name)
		} else {
			t.Logf("%s: %v", c.name, err)
		}
	}
	good := image(w.text, w.pclntab)
	b, err := newBinary(bytes.NewReader(good), int64(len(good)))
	if err != nil {
		t.Fatal(err)
	}
	if len(b.table.Funcs) != 4 {
		t.Fatalf("%d functions in the window's image, want 4", len(b.table.Funcs))
	}
	for _, fn := range b.table.Funcs {
		if _, err := b.Func(fn.Sym.Name); err != nil {
			t.Error(err)
		}
	}
}

// callsWithin reports whether code (at addr) holds a direct call to an address in [addr+1, end).
func callsWithin(code []byte, addr, end uint64) bool {
	for _, d := range decode(code) {
		if rel, ok := d.Args[0].(x86asm.Rel); ok && d.Op == x86asm.CALL {
			if t := addr + uint64(d.off+d.Len) + uint64(int64(rel)); t > addr && t < end {
				return true
			}
		}
	}
	return false
}

// compactPclntab copies n functions from index i of a Go 1.20+ pclntab into a pclntab of their own: the header, their
// names, their _func records with entry offsets from base, and no line, file or PC-value tables (nothing here reads
// them).
func compactPclntab(tb testing.TB, pcln []byte, i, n int, base uint64) []byte {
	le := binary.LittleEndian
	word := func(k int) uint64 { return le.Uint64(pcln[8+8*k:]) }
	names, tab := word(3), word(7)
	const header = 8 + 8*8
	var nametab []byte
	var recs [][]byte
	var entries []uint32
	for k := i; k <= i+n; k++ {
		entry := le.Uint32(pcln[tab+uint64(8*k):])
		entries = append(entries, entry-uint32(base))
		if k == i+n {
			break
		}
		fn := pcln[tab+uint64(le.Uint32(pcln[tab+uint64(8*k)+4:])):]
		rec := make([]byte, 44) // _func without pcdata and funcdata
		copy(rec, fn[:44])
		le.PutUint32(rec[0:], entry-uint32(base))
		name := pcln[names+uint64(le.Uint32(fn[4:])):]
		le.PutUint32(rec[4:], uint32(len(nametab)))
		nametab = append(nametab, name[:bytes.IndexByte(name, 0)+1]...)
		clear(rec[16:36]) // pcsp, pcfile, pcln, npcdata, cuOffset
		rec[43] = 0       // nfuncdata
		recs = append(recs, rec)
	}
	out := make([]byte, header)
	copy(out, pcln[:8])
	put := func(k int, v uint64) { le.PutUint64(out[8+8*k:], v) }
	put(0, uint64(n))
	put(3, header)
	out = append(out, nametab...)
	put(4, uint64(len(out))) // cutab, filetab, pctab: one empty entry each
	out = append(out, 0, 0, 0, 0)
	put(5, uint64(len(out)))
	out = append(out, 0)
	put(6, uint64(len(out)))
	out = append(out, 0)
	put(7, uint64(len(out)))
	ft := len(out)
	out = append(out, make([]byte, 8*n+4)...)
	for k, rec := range recs {
		le.PutUint32(out[ft+8*k:], entries[k])
		le.PutUint32(out[ft+8*k+4:], uint32(len(out)-ft))
		out = append(out, rec...)
	}
	le.PutUint32(out[ft+8*n:], entries[n])
	if len(out) > 4096 {
		tb.Fatalf("compact pclntab of %d bytes", len(out))
	}
	return out
}

// writeSeed writes one seed of a fuzz target whose arguments are all []byte.
func writeSeed(tb testing.TB, target, name string, args ...[]byte) {
	if err := exetest.WriteSeed(target, name, args...); err != nil {
		tb.Fatal(err)
	}
}
