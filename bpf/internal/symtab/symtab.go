// Package symtab finds Go functions in an executable and the instructions a probe attaches to: the entry and every
// RET. Names come from .gopclntab, which the Go linker keeps even in binaries stripped with -ldflags="-s -w", so
// stripped and unstripped copies are probed alike.
package symtab

import (
	"debug/elf"
	"debug/gosym"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/arch/x86/x86asm"
)

// ErrNotFound reports a function that is not in the binary (not linked in, or inlined everywhere).
var ErrNotFound = errors.New("function not found")

// Func is one Go function. Addresses are virtual; the offsets are file offsets, which is what uprobes attach to.
type Func struct {
	Name       string
	Entry, End uint64   // virtual addresses [Entry, End)
	EntryOff   uint64   // file offset of Entry
	CallOff    uint64   // file offset to probe for "the function was called": see pushOffset
	RetOffs    []uint64 // file offsets of every RET instruction
}

// Binary is an opened Go executable.
type Binary struct {
	path   string
	f      *elf.File
	size   int64     // of the file: what no section can claim to exceed
	closer io.Closer // the file, when Open opened it
	table  *gosym.Table
	text   *elf.Section

	arm64     bool              // EM_AARCH64: fixed 4-byte instructions, decoded by arm64Returns and arm64CallOffset
	textStart uint64            // runtime.text: what the pclntab's and method tables' code offsets count from
	code      []byte            // .text, read on the first Exits
	data      map[string][]byte // the other loaded sections but .gopclntab, by name, read on the first Exits
}

// Open reads the ELF and its pclntab. Any file can match the agent's targets, so a truncated or hostile one must
// give an error here, never a panic or an allocation its size does not justify (see checkSection, checkPclntab).
func Open(path string) (*Binary, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	st, err := file.Stat()
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	b, err := newBinary(file, st.Size())
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	b.path, b.closer = path, file
	return b, nil
}

// newBinary reads the ELF and pclntab of a file of size bytes.
func newBinary(r io.ReaderAt, size int64) (*Binary, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("open elf: %w", err)
	}
	b := &Binary{f: f, size: size}
	if err := b.load(); err != nil {
		return nil, err
	}
	return b, nil
}

// Close releases the file.
func (b *Binary) Close() error {
	if b.closer == nil {
		return nil
	}
	return b.closer.Close()
}

// Size is the file's size in bytes.
func (b *Binary) Size() int64 { return b.size }

// ELF gives access to the underlying file (DWARF, sections).
func (b *Binary) ELF() *elf.File { return b.f }

func (b *Binary) load() error {
	switch b.f.Machine {
	case elf.EM_X86_64:
	case elf.EM_AARCH64:
		b.arm64 = true
	default:
		return fmt.Errorf("unsupported machine %v: only amd64 and arm64 probes exist", b.f.Machine)
	}
	b.text = b.f.Section(".text")
	pcln := b.f.Section(".gopclntab")
	if b.text == nil || pcln == nil {
		return errors.New("no .text or .gopclntab section: not a Go binary")
	}
	if err := b.checkSection(b.text); err != nil {
		return err
	}
	data, err := b.sectionData(pcln)
	if err != nil {
		return err
	}
	if err := checkPclntab(data); err != nil {
		return fmt.Errorf(".gopclntab: %w", err)
	}
	// Since Go 1.18 function entries in the pclntab are offsets from runtime.text, and Go 1.26 dropped runtime.text's
	// address from the pclntab header, so the caller must supply it. With internal linking (CGO_ENABLED=0 and the
	// usual pure-Go binary) runtime.text is the first symbol of .text; the symbol table, when present, says so exactly,
	// and without it the runtime's own moduledata does (moduleText): linked externally, .text begins with C code.
	// Neither found, .text's start is believed only if Go's functions then end where .text does (textFits).
	textStart, textEnd, found := b.text.Addr, b.text.Addr+b.text.Size, false
	if syms, err := b.symbols(); err == nil {
		for _, s := range syms {
			if s.Name == "runtime.text" {
				textStart, found = s.Value, true
				break
			}
		}
	}
	// from names where textStart and textEnd came from, for the refusal below.
	from := "runtime.text not found (no symbol table, no Go 1.26 moduledata in .go.module): .text's start and end"
	if !found {
		if t, e, ok := b.moduleText(pcln); ok {
			textStart, textEnd = t, e
			from = "runtime.text and runtime.etext from .go.module's moduledata (no symbol table)"
		}
	}
	b.textStart = textStart
	table, err := gosym.NewTable(nil, gosym.NewLineTable(data, textStart))
	if err != nil {
		return fmt.Errorf("parse .gopclntab: %w", err)
	}
	if len(table.Funcs) == 0 {
		// debug/gosym recovers from a malformed table by listing nothing; say so rather than "function not found".
		return errors.New("parse .gopclntab: no function could be read")
	}
	if !found && !textFits(table, textEnd) {
		return fmt.Errorf("%s: Go's functions counted from the start %#x end at %#x, not within %d bytes before the "+
			"end %#x: they would be misplaced (linked externally, C code comes first)", from, textStart,
			table.Funcs[len(table.Funcs)-1].End, textSlack, textEnd)
	}
	b.table = table
	return nil
}

// Offsets in the runtime's moduledata (runtime/symtab.go, Go 1.26; moduleText checks what it reads): the pclntab header's
// address first, then six slices, findfunctab, minpc and maxpc, then text and etext.
const (
	moduleTextOff  = 8 + 6*24 + 3*8
	moduleETextOff = moduleTextOff + 8
)

// moduleText reads runtime.text and runtime.etext from the runtime's first moduledata, which the Go 1.26 linker puts
// alone in the .go.module section, stripped binaries included. With external linking .text begins with the C
// toolchain's code (crt1's _start) and runtime.text comes after it, so a stripped binary's functions were all placed
// too early. The moduledata is believed only when its first word is .gopclntab's address (the pclntab header) and
// text..etext lies in .text (a position-independent executable's file holds them too, at its link addresses), and
// the caller checks the pclntab's functions end at etext; otherwise (an older linker has no .go.module) the caller
// is left with .text's start.
func (b *Binary) moduleText(pcln *elf.Section) (text, etext uint64, ok bool) {
	s := b.f.Section(".go.module")
	if s == nil || b.checkSection(s) != nil || s.Size < moduleETextOff+8 {
		return 0, 0, false
	}
	var m [moduleETextOff + 8]byte
	if _, err := s.ReadAt(m[:], 0); err != nil {
		return 0, 0, false
	}
	le := binary.LittleEndian
	text, etext = le.Uint64(m[moduleTextOff:]), le.Uint64(m[moduleETextOff:])
	lo, hi := b.text.Addr, b.text.Addr+b.text.Size
	if le.Uint64(m[:]) != pcln.Addr || text < lo || text >= etext || etext > hi {
		return 0, 0, false
	}
	return text, etext, true
}

// textSlack is how far before runtime.etext (or an internally linked .text's end) the pclntab's last function may
// end: the linker's padding, in go1.26.11 builds 15 bytes before etext (amd64 and arm64; internally linked with cgo,
// -race and PIE too) and 16 (amd64) or 19 (arm64) before an internally linked .text's end. C code before Go's (crt1's,
// 0x100 bytes with glibc on amd64) moves the end by that much; a shift under textSlack - 19 bytes would go unseen.
const textSlack = 64

// textFits reports whether the functions of table, counted from the runtime.text it was given, end within textSlack
// before end: false when that start is wrong by C code placed before Go's, or when end is not Go's code's end.
func textFits(table *gosym.Table, end uint64) bool {
	last := table.Funcs[len(table.Funcs)-1].End
	return last <= end && end-last < textSlack
}

// checkSection refuses a section whose bytes the file cannot hold: debug/elf believes the section header, and an
// SHT_NOBITS or compressed section would be read as however many bytes the header claims.
func (b *Binary) checkSection(s *elf.Section) error {
	switch {
	case s.Type == elf.SHT_NOBITS:
		return fmt.Errorf("section %s has no bytes in the file (SHT_NOBITS)", s.Name)
	case s.Flags&elf.SHF_COMPRESSED != 0:
		return fmt.Errorf("section %s is compressed: the Go linker compresses DWARF only", s.Name)
	case s.Offset > uint64(b.size) || s.Size > uint64(b.size)-s.Offset:
		return fmt.Errorf("section %s claims %d bytes at offset %d of a %d-byte file", s.Name, s.Size, s.Offset, b.size)
	}
	return nil
}

// symbols reads the ELF symbol table after checkSection of it and its strings: debug/elf would inflate a compressed
// one to whatever size its header claims.
func (b *Binary) symbols() ([]elf.Symbol, error) {
	for _, s := range b.f.Sections {
		if s.Type != elf.SHT_SYMTAB {
			continue
		}
		if err := b.checkSection(s); err != nil {
			return nil, err
		}
		if int(s.Link) < len(b.f.Sections) {
			if err := b.checkSection(b.f.Sections[s.Link]); err != nil {
				return nil, err
			}
		}
	}
	return b.f.Symbols()
}

// sectionData reads a loaded section after checkSection.
func (b *Binary) sectionData(s *elf.Section) ([]byte, error) {
	if err := b.checkSection(s); err != nil {
		return nil, err
	}
	data, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s.Name, err)
	}
	return data, nil
}

// pclntab magic numbers (internal/abi), little-endian, as debug/gosym tells the formats apart.
const (
	pclnGo12  = 0xfffffffb
	pclnGo116 = 0xfffffffa
	pclnGo118 = 0xfffffff0
	pclnGo120 = 0xfffffff1
)

// checkPclntab checks that the function count in the pclntab header fits the section, before debug/gosym allocates
// a Func per function it claims (about 100 bytes each, up to 2^32 of them) and walks them.
func checkPclntab(data []byte) error {
	if len(data) < 16 || data[7] != 8 {
		return errors.New("not a 64-bit Go 1.2+ pclntab header")
	}
	word := func(i int) (uint64, error) { // the header's i-th pointer-sized word after the first 8 bytes
		at := 8 + 8*i
		if at+8 > len(data) {
			return 0, fmt.Errorf("header truncated at %d bytes", len(data))
		}
		return binary.LittleEndian.Uint64(data[at:]), nil
	}
	nfunc, err := word(0)
	if err != nil {
		return err
	}
	// Where the function table starts (the header word naming it, or right after the count) and its entry size.
	tab, field := uint64(16), uint64(8)
	switch binary.LittleEndian.Uint32(data) {
	case pclnGo12:
	case pclnGo116:
		if tab, err = word(6); err != nil {
			return err
		}
	case pclnGo118, pclnGo120:
		if tab, err = word(7); err != nil {
			return err
		}
		field = 4
	default:
		return fmt.Errorf("unknown magic %#x", binary.LittleEndian.Uint32(data))
	}
	// The table holds 2*nfunc+1 entries (pc, func offset, ..., end pc).
	if tab > uint64(len(data)) || nfunc > (uint64(len(data))-tab)/field/2 {
		return fmt.Errorf("header claims %d functions at offset %d, the %d-byte section holds fewer", nfunc, tab, len(data))
	}
	return nil
}

// codeAt returns where fn's code [entry, end) lies in .text, refusing a range a corrupt pclntab put elsewhere.
func (b *Binary) codeAt(name string, entry, end uint64) (off, n int64, err error) {
	if entry < b.text.Addr || end < entry || end-b.text.Addr > b.text.Size {
		return 0, 0, fmt.Errorf("%s: code %#x..%#x is not inside .text", name, entry, end)
	}
	return int64(entry - b.text.Addr), int64(end - entry), nil
}

// Func finds name (e.g. "net/http.serverHandler.ServeHTTP") and disassembles it to find its RET instructions.
func (b *Binary) Func(name string) (Func, error) {
	fn := b.table.LookupFunc(name)
	if fn == nil {
		return Func{}, fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	out := Func{Name: name, Entry: fn.Entry, End: fn.End}
	var err error
	if out.EntryOff, err = b.fileOffset(fn.Entry); err != nil {
		return Func{}, err
	}
	code, err := b.funcCode(name, fn.Entry, fn.End)
	if err != nil {
		return Func{}, err
	}
	call, rets := pushOffset, Returns
	if b.arm64 {
		call, rets = arm64CallOffset, arm64Returns
	}
	out.CallOff = out.EntryOff + uint64(call(code))
	for _, off := range rets(code) {
		fo, err := b.fileOffset(fn.Entry + uint64(off))
		if err != nil {
			return Func{}, err
		}
		out.RetOffs = append(out.RetOffs, fo)
	}
	if len(out.RetOffs) == 0 {
		return Func{}, fmt.Errorf("%s: no RET instruction found", name)
	}
	return out, nil
}

// pushOffset finds the PUSH RBP that follows a Go function's stack-growth check (CMP SP, 16(R14); JBE morestack),
// or 0 when there is none in the prologue (frameless leaf functions). Probing there instead of at the entry matters
// twice: the kernel emulates a push, where any other instruction under a uprobe is single-stepped out of line (a
// second trap; measured at 20-50 us here against under 1 us, see BenchmarkUprobeHit), and the check's slow path
// re-enters the function from the top after growing the stack, so an entry probe can fire twice for one call while
// the push runs once. Arguments are still in their registers there and R14 is still g.
func pushOffset(code []byte) int {
	off := 0
	for i := 0; i < 6 && off < len(code); i++ {
		inst, err := x86asm.Decode(code[off:], 64)
		if err != nil {
			return 0
		}
		if inst.Op == x86asm.PUSH && inst.Args[0] == x86asm.RBP {
			return off
		}
		off += inst.Len
	}
	return 0
}

// Returns gives the offsets of the RET instructions in code, decoding it linearly from the start (see decode).
func Returns(code []byte) []int {
	var rets []int
	for _, d := range decode(code) {
		if d.Op == x86asm.RET {
			rets = append(rets, d.off)
		}
	}
	return rets
}

// arm64RET is RET (X30), the only return the Go arm64 compiler emits. arm64 instructions are fixed 32-bit
// little-endian words, 4-byte aligned, so a word compare at each aligned offset is an exact decode.
const arm64RET = 0xd65f03c0

// arm64Returns gives the offsets of the RET instructions in arm64 code.
func arm64Returns(code []byte) []int {
	var rets []int
	for off := 0; off+4 <= len(code); off += 4 {
		if binary.LittleEndian.Uint32(code[off:]) == arm64RET {
			rets = append(rets, off)
		}
	}
	return rets
}

// arm64CallOffset is pushOffset for arm64: the prologue's store of the link register (X30), which follows the
// stack-growth check (MOVD 16(g), R16; CMP R16, RSP; BLS morestack), so a probe there fires once per call even when
// the check's slow path grows the stack and re-enters from the top. Go emits STR X30, [SP, #-n]! for small frames and
// STP (X29, X30) below a new SP in R20 for large ones. 0 (the entry) when neither is among the first 8 instructions:
// frameless leaf functions. Unlike amd64's PUSH, arm64 kernels single-step this instruction out of line (see README).
func arm64CallOffset(code []byte) int {
	for off := 0; off+4 <= len(code) && off < 8*4; off += 4 {
		w := binary.LittleEndian.Uint32(code[off:])
		rt, rn := w&0x1f, (w>>5)&0x1f
		switch {
		case w&0xffe00c00 == 0xf8000c00 && rt == 30 && rn == 31: // STR Xt, [Xn|SP, #imm]! (pre-index)
			return off
		case w&0xffc00000 == 0xa9000000, w&0xffc00000 == 0xa9800000, w&0xffc00000 == 0xa8800000:
			// STP Xt, Xt2 (64-bit) with a signed offset, pre-index or post-index
			if (w>>10)&0x1f == 30 {
				return off
			}
		}
	}
	return 0
}

// inst is one decoded instruction and where it starts.
type inst struct {
	x86asm.Inst
	off int
}

// decode disassembles code linearly from the start. Go functions hold no data in .text, so a linear sweep is exact;
// bytes that do not decode (padding) are skipped one at a time.
func decode(code []byte) []inst {
	var out []inst
	for off := 0; off < len(code); {
		in, err := x86asm.Decode(code[off:], 64)
		if err != nil || in.Len == 0 {
			off++
			continue
		}
		out = append(out, inst{in, off})
		off += in.Len
	}
	return out
}

// funcCode reads the code of one function.
func (b *Binary) funcCode(name string, entry, end uint64) ([]byte, error) {
	off, n, err := b.codeAt(name, entry, end)
	if err != nil {
		return nil, err
	}
	code := make([]byte, n) // at most .text's size, which checkSection held to the file's
	if _, err := b.text.ReadAt(code, off); err != nil {
		return nil, fmt.Errorf("read code of %s: %w", name, err)
	}
	return code, nil
}

func (b *Binary) fileOffset(vaddr uint64) (uint64, error) {
	for _, p := range b.f.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && vaddr >= p.Vaddr && vaddr < p.Vaddr+p.Memsz {
			return vaddr - p.Vaddr + p.Off, nil
		}
	}
	return 0, fmt.Errorf("address %#x is in no executable segment", vaddr)
}
