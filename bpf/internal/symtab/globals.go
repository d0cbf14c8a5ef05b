package symtab

import (
	"fmt"

	"golang.org/x/arch/x86/x86asm"
)

// GlobalRef is one RIP-relative memory operand in a function: the address of a package-level variable (or a field
// of one) that the code loads, stores or takes. Go's amd64 code reaches every global this way, so a function's refs
// name the globals it uses even when the symbol table is stripped.
type GlobalRef struct {
	Addr uint64    // virtual address the operand points at
	Op   x86asm.Op // MOV, LEA, CMP, ...
	Size int       // bytes accessed (x86asm's MemBytes; 0 for LEA, which accesses nothing)
}

// GlobalRefs lists fn's RIP-relative memory operands in code order.
func (b *Binary) GlobalRefs(fn Func) ([]GlobalRef, error) {
	code, err := b.funcCode(fn.Name, fn.Entry, fn.End)
	if err != nil {
		return nil, err
	}
	var out []GlobalRef
	for _, d := range decode(code) {
		for _, a := range d.Args {
			m, ok := a.(x86asm.Mem)
			if !ok || m.Base != x86asm.RIP {
				continue
			}
			size := d.MemBytes
			if d.Op == x86asm.LEA {
				size = 0
			}
			next := fn.Entry + uint64(d.off+d.Len)
			out = append(out, GlobalRef{Addr: uint64(int64(next) + m.Disp), Op: d.Op, Size: size})
		}
	}
	return out, nil
}

// Symbols returns the addresses of names from the ELF symbol table, in one pass over it. Binaries linked with
// -ldflags=-s have none: the error then wraps ErrNotFound, as it does when a name is missing.
func (b *Binary) Symbols(names ...string) (map[string]uint64, error) {
	syms, err := b.symbols()
	if err != nil {
		return nil, fmt.Errorf("symbol table: %w (%v)", ErrNotFound, err)
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]uint64{}
	for _, s := range syms {
		if want[s.Name] {
			out[s.Name] = s.Value
		}
	}
	for _, n := range names {
		if _, ok := out[n]; !ok {
			return nil, fmt.Errorf("symbol %s: %w", n, ErrNotFound)
		}
	}
	return out, nil
}
