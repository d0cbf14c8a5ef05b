// Package symtab finds Go functions in an executable and the instructions a probe attaches to: the entry and every
// RET. Names come from .gopclntab, which the Go linker keeps even in binaries stripped with -ldflags="-s -w", so
// stripped and unstripped copies are probed alike.
package symtab

import (
	"debug/elf"
	"debug/gosym"
	"errors"
	"fmt"

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
	path  string
	f     *elf.File
	table *gosym.Table
	text  *elf.Section

	textStart uint64            // runtime.text: what the pclntab's and method tables' code offsets count from
	code      []byte            // .text, read on the first Exits
	data      map[string][]byte // the other loaded sections but .gopclntab, by name, read on the first Exits
}

// Open reads the ELF and its pclntab.
func Open(path string) (*Binary, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open elf %s: %w", path, err)
	}
	b := &Binary{path: path, f: f}
	if err := b.load(); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// Close releases the file.
func (b *Binary) Close() error { return b.f.Close() }

// ELF gives access to the underlying file (DWARF, sections).
func (b *Binary) ELF() *elf.File { return b.f }

func (b *Binary) load() error {
	if b.f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("unsupported machine %v: only amd64 probes exist", b.f.Machine)
	}
	b.text = b.f.Section(".text")
	pcln := b.f.Section(".gopclntab")
	if b.text == nil || pcln == nil {
		return errors.New("no .text or .gopclntab section: not a Go binary")
	}
	data, err := pcln.Data()
	if err != nil {
		return fmt.Errorf("read .gopclntab: %w", err)
	}
	// Since Go 1.18 function entries in the pclntab are offsets from runtime.text, and Go 1.26 dropped runtime.text's
	// address from the pclntab header, so the caller must supply it. With internal linking (CGO_ENABLED=0 and the
	// usual pure-Go binary) runtime.text is the first symbol of .text; the symbol table, when present, says so exactly.
	textStart := b.text.Addr
	if syms, err := b.f.Symbols(); err == nil {
		for _, s := range syms {
			if s.Name == "runtime.text" {
				textStart = s.Value
				break
			}
		}
	}
	b.textStart = textStart
	table, err := gosym.NewTable(nil, gosym.NewLineTable(data, textStart))
	if err != nil {
		return fmt.Errorf("parse .gopclntab: %w", err)
	}
	b.table = table
	return nil
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
	code := make([]byte, fn.End-fn.Entry)
	if _, err := b.text.ReadAt(code, int64(fn.Entry-b.text.Addr)); err != nil {
		return Func{}, fmt.Errorf("read code of %s: %w", name, err)
	}
	out.CallOff = out.EntryOff + uint64(pushOffset(code))
	for _, off := range Returns(code) {
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

func (b *Binary) fileOffset(vaddr uint64) (uint64, error) {
	for _, p := range b.f.Progs {
		if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && vaddr >= p.Vaddr && vaddr < p.Vaddr+p.Memsz {
			return vaddr - p.Vaddr + p.Off, nil
		}
	}
	return 0, fmt.Errorf("address %#x is in no executable segment", vaddr)
}
