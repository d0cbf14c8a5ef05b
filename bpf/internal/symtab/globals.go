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
	if b.arm64 {
		return nil, errARM64
	}
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

// ArgAddr gives the address that caller's only direct call of callee receives in reg from a RIP-relative LEA just
// before it, in the same straight run of code: how Go passes a constant it links, such as the itab of an interface
// argument (net/http's conn.serve passes the itab of (*response, ResponseWriter) to serverHandler.ServeHTTP in RBX).
// It needs no symbol table, so it works on stripped binaries too.
func (b *Binary) ArgAddr(caller, callee Func, reg x86asm.Reg) (uint64, error) {
	code, err := b.funcCode(caller.Name, caller.Entry, caller.End)
	if err != nil {
		return 0, err
	}
	insts := decode(code)
	call := -1
	for i, in := range insts {
		if in.Op != x86asm.CALL || in.Len != 5 || in.Args[0] == nil {
			continue
		}
		if rel, ok := in.Args[0].(x86asm.Rel); ok && caller.Entry+uint64(in.off+in.Len)+uint64(int64(rel)) == callee.Entry {
			if call >= 0 {
				return 0, fmt.Errorf("%s calls %s more than once: %w", caller.Name, callee.Name, ErrNotFound)
			}
			call = i
		}
	}
	if call < 0 {
		return 0, fmt.Errorf("%s does not call %s: %w", caller.Name, callee.Name, ErrNotFound)
	}
	addr, err := leaBefore(insts, call, reg, caller.Entry)
	if err != nil {
		return 0, fmt.Errorf("%s's call of %s: %w", caller.Name, callee.Name, err)
	}
	return addr, nil
}

// IndirectArgAddr is ArgAddr for a call through a func value or an interface: the address that caller's only
// indirect call with a RIP-relative LEA into reg before it receives there (net/http's http2serverConn.runHandler
// calls its handler func with the itab of (*http2responseWriter, ResponseWriter) in RAX). Indirect calls whose reg
// is set otherwise, or not at all, are passed over; two with a LEA are refused, not guessed between.
func (b *Binary) IndirectArgAddr(caller Func, reg x86asm.Reg) (uint64, error) {
	code, err := b.funcCode(caller.Name, caller.Entry, caller.End)
	if err != nil {
		return 0, err
	}
	insts := decode(code)
	var addr uint64
	found := false
	for i, in := range insts {
		if in.Op != x86asm.CALL || in.Args[0] == nil {
			continue
		}
		if _, direct := in.Args[0].(x86asm.Rel); direct {
			continue
		}
		a, err := leaBefore(insts, i, reg, caller.Entry)
		if err != nil {
			continue
		}
		if found {
			return 0, fmt.Errorf("%s has more than one indirect call with a LEA into %v: %w", caller.Name, reg, ErrNotFound)
		}
		addr, found = a, true
	}
	if !found {
		return 0, fmt.Errorf("%s has no indirect call with a LEA into %v: %w", caller.Name, reg, ErrNotFound)
	}
	return addr, nil
}

// leaBefore gives the address the instruction call receives in reg when the last write to reg before it, in the same
// straight run of code (no CALL, JMP or RET in between), is a LEA of a RIP-relative address. entry is the address of
// insts' first byte.
func leaBefore(insts []inst, call int, reg x86asm.Reg, entry uint64) (uint64, error) {
	for i := call - 1; i >= 0; i-- {
		in := insts[i]
		switch in.Op {
		case x86asm.CALL, x86asm.JMP, x86asm.RET:
			return 0, fmt.Errorf("no LEA into %v before it: %w", reg, ErrNotFound)
		}
		if r, ok := in.Args[0].(x86asm.Reg); !ok || family(r) != family(reg) {
			continue
		}
		// The last write to reg before the call: it must be the LEA of a RIP-relative address.
		if m, ok := in.Args[1].(x86asm.Mem); in.Op == x86asm.LEA && ok && m.Base == x86asm.RIP {
			return uint64(int64(entry+uint64(in.off+in.Len)) + m.Disp), nil
		}
		return 0, fmt.Errorf("%v is set by %v before it, not a LEA: %w", reg, in.Op, ErrNotFound)
	}
	return 0, fmt.Errorf("no LEA into %v before it: %w", reg, ErrNotFound)
}
