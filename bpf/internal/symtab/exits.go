package symtab

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"go/token"
	"maps"
	"slices"
	"strings"

	"golang.org/x/arch/x86/x86asm"
)

// Why exits exist: a uprobe on an instruction the x86 kernel does not emulate (a RET among them) is single-stepped
// out of line, a second trap per hit that costs 17-65 us in the VMs measured here (BenchmarkUprobeHit), against about
// 1 us for an instruction the kernel emulates. arch/x86/kernel/uprobes.c (branch_setup_xol_ops, push_setup_xol_ops)
// emulates exactly: CALL rel32, JMP rel8/rel32, Jcc rel8/rel32 (no 0x66 prefix), the kernel's canonical NOPs and
// PUSH of a 64-bit register. No kernel up to 6.18 emulates RET. So a function's return is better seen in its
// callers: the first emulated instruction on the straight-line path after each call's return address runs exactly
// once per return, provided every way to reach the function is a direct call this file can find and nothing else
// jumps into that path.

// Exit modes, for logs.
const (
	ModeCallSite = "callsite" // one probe per direct call site: the first emulated instruction after it, else the return address
	ModeRet      = "ret"      // one probe per RET instruction of the function (single-stepped)
)

// Exits is where a probe sees each return of one function.
type Exits struct {
	Mode    string
	Offs    []uint64 // file offsets to attach to
	Stepped int      // how many of Offs (ModeCallSite) are return addresses, single-stepped (see exitAfter)
	Reason  string   // why ModeRet, when it is
}

// errARM64 is why an arm64 executable gets no call-site exits, no call-site probes and no global references: the
// searches below decode x86 only (CALL rel32, the kernel's emulated x86 instructions, RIP-relative operands). Its
// functions' returns are probed at their RETs instead, which is always right.
var errARM64 = errors.New("call sites and global references are decoded for amd64 only, not arm64")

// Exits finds the emulated instructions right after every call of fn, with the registers in keep (results the probe
// reads) unchanged since the return, or falls back to fn's RET instructions saying why. It never fails: RET
// probes are always right, only slower.
func (b *Binary) Exits(fn Func, keep ...x86asm.Reg) Exits {
	if b.arm64 {
		return Exits{Mode: ModeRet, Offs: fn.RetOffs, Reason: errARM64.Error()}
	}
	sites := map[uint64]bool{}
	s := &exitSearch{keep: keep, bodies: map[uint64]*funcBody{}, budget: maxRefs}
	if err := b.callSiteExits(fn, s, 0, sites); err != nil {
		return Exits{Mode: ModeRet, Offs: fn.RetOffs, Reason: err.Error()}
	}
	e := Exits{Mode: ModeCallSite}
	for off, emul := range sites { // a set: two tail calls in one caller chase to the same exits, probed once
		e.Offs = append(e.Offs, off)
		if !emul {
			e.Stepped++
		}
	}
	slices.Sort(e.Offs)
	return e
}

// maxChase bounds how many callers up a tail call is followed.
const maxChase = 3

// maxRefs bounds the references to the function and to the callers chased up from it that one Exits examines. The
// functions probed have a handful each; every chase up a tail call scans .text and the data again, and a hostile file
// can hold any number of references. With the bound one Exits scans them at most maxRefs+1 times.
const maxRefs = 256

// exitSearch is what one Exits carries through its chase up the callers.
type exitSearch struct {
	keep   []x86asm.Reg
	bodies map[uint64]*funcBody // callers decoded so far, by entry: each is decoded once however often it calls
	budget int                  // references left to examine (maxRefs)
}

// body returns the decoded code of the function at [entry, end).
func (b *Binary) body(s *exitSearch, code []byte, name string, entry, end uint64) (*funcBody, error) {
	if fb, ok := s.bodies[entry]; ok {
		return fb, nil
	}
	off, n, err := b.codeAt(name, entry, end)
	if err != nil {
		return nil, err
	}
	fb := newFuncBody(code[off : off+n])
	s.bodies[entry] = fb
	return fb, nil
}

// callSiteExits adds the exits of fn's calls to sites (file offset -> emulated). A call in tail position (only the
// epilogue follows: results untouched) returns exactly when its caller does, so when the caller's own exits can be
// found, they see fn's returns too, on emulated instructions: database/sql's query and exec, for one, return their
// queryDC and execDC calls. The caller's other returns also hit them, but find no call in flight and do nothing
// (one emulated trap). When the caller's exits cannot be found its return address is probed (single-stepped).
func (b *Binary) callSiteExits(fn Func, s *exitSearch, depth int, sites map[uint64]bool) error {
	if b.f.Type != elf.ET_EXEC {
		// A position-independent binary keeps its absolute code addresses in relocations, which this search does not read.
		return fmt.Errorf("%v binary: only fixed-address executables are searched for callers", b.f.Type)
	}
	code, err := b.textData()
	if err != nil {
		return err
	}
	if err := b.dataRefs(fn); err != nil {
		return err
	}
	found := false
	for _, r := range codeRefs(code, b.text.Addr, fn.Entry) {
		if s.budget--; s.budget < 0 {
			return fmt.Errorf("more than %d references to examine", maxRefs)
		}
		caller := b.table.PCToFunc(r.addr)
		if caller == nil {
			return fmt.Errorf("referenced at %#x, outside any Go function", r.addr)
		}
		body, err := b.body(s, code, caller.Name, caller.Entry, caller.End)
		if err != nil {
			return err
		}
		at := int(r.addr - caller.Entry)
		if _, ok := slices.BinarySearch(body.starts, at); r.kind != refLEA && !ok {
			continue // the bytes matched inside another instruction: no reference
		}
		switch {
		case r.kind == refJMP && caller.Entry == fn.Entry:
			continue // the stack-growth path jumping back to the function's own entry
		case r.kind != refCall:
			return fmt.Errorf("referenced other than by a direct call at %#x in %s", r.addr, caller.Name)
		}
		skip := func(target int) bool {
			t := b.table.PCToFunc(caller.Entry + uint64(target))
			return t != nil && t.Name == "runtime.deferreturn"
		}
		site, emul, err := body.exitAfter(at+5, s.keep, skip)
		if err != nil {
			return fmt.Errorf("call at %#x in %s: %w", r.addr, caller.Name, err)
		}
		if !emul && depth < maxChase && caller.Entry != fn.Entry && tailReturn(body.code[site:]) {
			up := map[uint64]bool{}
			if b.callSiteExits(Func{Name: caller.Name, Entry: caller.Entry, End: caller.End}, s, depth+1, up) == nil {
				maps.Copy(sites, up)
				found = true
				continue
			}
		}
		fo, err := b.fileOffset(caller.Entry + uint64(site))
		if err != nil {
			return err
		}
		sites[fo] = emul
		found = true
	}
	if !found {
		return errors.New("no direct call site")
	}
	return nil
}

// tailReturn reports whether code starts with a Go epilogue and RET: the stack frame popped, no register but RSP and
// RBP written.
func tailReturn(code []byte) bool {
	for off, n := 0, 0; off < len(code) && n < 3; n++ {
		inst, err := x86asm.Decode(code[off:], 64)
		switch {
		case err != nil:
			return false
		case inst.Op == x86asm.RET:
			return true
		case inst.Op == x86asm.ADD && inst.Args[0] == x86asm.RSP, inst.Op == x86asm.POP && inst.Args[0] == x86asm.RBP:
		default:
			return false
		}
		off += inst.Len
	}
	return false
}

func (b *Binary) textData() ([]byte, error) {
	if b.code == nil {
		code, err := b.sectionData(b.text)
		if err != nil {
			return nil, err
		}
		b.code = code
	}
	return b.code, nil
}

// dataRefs looks for fn's address outside the code: an absolute address (static itabs, func values) or a 32-bit
// offset from runtime.text (method tables, from which the runtime builds itabs and reflect makes calls). Either may
// mean an indirect call, whose return no call-site probe would see. A chance match only costs the fast mode.
//
// Method tables are ignored for a method whose name or receiver type is unexported: reflect never calls such a
// method, and only the defining package can put the receiver in an interface that lists it. The linker keeps these
// entries whenever the type may reach an interface at all (net/http's serverHandler has one because structs that
// embed it are Handlers), so honouring them would rule out the functions probed here; their packages were read to
// call them directly only (net/http, database/sql, go-redis, nats.go).
func (b *Binary) dataRefs(fn Func) error {
	var abs [8]byte
	var rel [4]byte
	binary.LittleEndian.PutUint64(abs[:], fn.Entry)
	binary.LittleEndian.PutUint32(rel[:], uint32(fn.Entry-b.textStart))
	if b.data == nil {
		all := map[string][]byte{} // kept only once every section is read: a partial set would miss references
		for _, s := range b.f.Sections {
			if s.Flags&elf.SHF_ALLOC == 0 || s.Flags&elf.SHF_EXECINSTR != 0 || s.Type == elf.SHT_NOBITS || s.Name == ".gopclntab" {
				continue // .gopclntab holds every function's offset by design and no absolute address
			}
			data, err := b.sectionData(s)
			if err != nil {
				return err
			}
			all[s.Name] = data
		}
		b.data = all
	}
	for name, data := range b.data {
		if bytes.Contains(data, abs[:]) {
			return fmt.Errorf("address stored in %s (func value or itab)", name)
		}
		if ownPackageOnly(fn.Name) {
			continue
		}
		for i := 0; i+4 <= len(data); i += 4 {
			if [4]byte(data[i:i+4]) == rel {
				return fmt.Errorf("exported method in a method table (%s): callable through interfaces built at run time or reflect", name)
			}
		}
	}
	return nil
}

type refKind int

const (
	refCall refKind = iota // CALL rel32
	refJMP                 // JMP rel32 or Jcc rel32: a tail call, or the function's own stack-growth path
	refLEA                 // LEA reg, [RIP+disp32]: the address taken in code
)

type ref struct {
	addr uint64 // where the instruction (or, for LEA, its opcode byte) is
	kind refKind
}

// codeRefs finds, by their bytes, every rel32 CALL, JMP, Jcc and RIP-relative LEA in code (at addr) that reaches
// entry. The callers check the CALL and JMP matches against decoded instruction boundaries.
func codeRefs(code []byte, addr, entry uint64) []ref {
	var out []ref
	at := func(i, end int) bool { // does the disp32 ending at end, read from i, point at entry?
		return end <= len(code) && addr+uint64(end)+uint64(int64(int32(binary.LittleEndian.Uint32(code[i:])))) == entry
	}
	for i := range code {
		switch c := code[i]; {
		case c == 0xe8 && at(i+1, i+5):
			out = append(out, ref{addr + uint64(i), refCall})
		case c == 0xe9 && at(i+1, i+5):
			out = append(out, ref{addr + uint64(i), refJMP})
		case c == 0x0f && i+1 < len(code) && code[i+1]&0xf0 == 0x80 && at(i+2, i+6):
			out = append(out, ref{addr + uint64(i), refJMP})
		case c == 0x8d && i+1 < len(code) && code[i+1]&0xc7 == 0x05 && at(i+2, i+6):
			out = append(out, ref{addr + uint64(i), refLEA})
		}
	}
	return out
}

// nops are the kernel's x86_nops (arch/x86/kernel/alternative.c), which uprobes emulate like a jump by 0.
var nops = [][]byte{
	{0x90},
	{0x66, 0x90},
	{0x0f, 0x1f, 0x00},
	{0x0f, 0x1f, 0x40, 0x00},
	{0x0f, 0x1f, 0x44, 0x00, 0x00},
	{0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00},
	{0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00},
	{0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00},
}

// emulated reports whether the kernel runs inst (its bytes b) without single-stepping: see the file comment. The
// check is on bytes, as the kernel's is.
func emulated(b []byte) bool {
	switch n := len(b); {
	case n == 5 && (b[0] == 0xe8 || b[0] == 0xe9): // CALL, JMP rel32
		return true
	case n == 2 && (b[0] == 0xeb || b[0]&0xf0 == 0x70): // JMP, Jcc rel8
		return true
	case n == 6 && b[0] == 0x0f && b[1]&0xf0 == 0x80: // Jcc rel32
		return true
	case n == 1 && b[0]&0xf8 == 0x50, n == 2 && b[0] == 0x41 && b[1]&0xf8 == 0x50: // PUSH r64
		return true
	}
	return slices.ContainsFunc(nops, func(nop []byte) bool { return bytes.Equal(b, nop) })
}

// straight are the instructions allowed between a return address and the exit site: they neither branch nor
// touch registers beyond their first operand (which is written unless readOnly says otherwise).
var straight = map[x86asm.Op]bool{
	x86asm.MOV: true, x86asm.MOVZX: true, x86asm.MOVSX: true, x86asm.MOVSXD: true, x86asm.LEA: true,
	x86asm.ADD: true, x86asm.SUB: true, x86asm.AND: true, x86asm.OR: true, x86asm.XOR: true, x86asm.INC: true,
	x86asm.DEC: true, x86asm.NEG: true, x86asm.NOT: true, x86asm.SHL: true, x86asm.SHR: true, x86asm.SAR: true,
	x86asm.CMP: true, x86asm.TEST: true, x86asm.BT: true,
	x86asm.MOVUPS: true, x86asm.MOVAPS: true, x86asm.MOVDQU: true, x86asm.MOVQ: true, x86asm.MOVD: true,
	x86asm.MOVSD_XMM: true, x86asm.MOVSS: true, x86asm.XORPS: true, x86asm.PXOR: true,
	x86asm.CMOVA: true, x86asm.CMOVAE: true, x86asm.CMOVB: true, x86asm.CMOVBE: true, x86asm.CMOVE: true,
	x86asm.CMOVG: true, x86asm.CMOVGE: true, x86asm.CMOVL: true, x86asm.CMOVLE: true, x86asm.CMOVNE: true,
	x86asm.SETA: true, x86asm.SETAE: true, x86asm.SETB: true, x86asm.SETBE: true, x86asm.SETE: true,
	x86asm.SETG: true, x86asm.SETGE: true, x86asm.SETL: true, x86asm.SETLE: true, x86asm.SETNE: true,
}

var readOnly = map[x86asm.Op]bool{x86asm.CMP: true, x86asm.TEST: true, x86asm.BT: true}

// maxStraight bounds the walk: an exit site far from the return would time more than the call.
const maxStraight = 16

// funcBody is one function's code decoded once, with what exitAfter needs from all of it.
type funcBody struct {
	code     []byte
	starts   []int // where each instruction starts (see decode), ascending
	targets  []int // where its branches other than calls land, ascending
	indirect error // set when it has an indirect jump (a jump table): its targets are unknown
}

func newFuncBody(code []byte) *funcBody {
	fb := &funcBody{code: code}
	for _, d := range decode(code) {
		fb.starts = append(fb.starts, d.off)
		switch a := d.Args[0].(type) {
		case x86asm.Rel:
			if d.Op != x86asm.CALL {
				fb.targets = append(fb.targets, d.off+d.Len+int(a))
			}
		case x86asm.Reg, x86asm.Mem:
			if d.Op == x86asm.JMP && fb.indirect == nil {
				fb.indirect = fmt.Errorf("+%#x: indirect %v: its targets are unknown", d.off, d.Inst)
			}
		}
	}
	slices.Sort(fb.targets)
	return fb
}

// exitAfter finds where to see a call return to offset ret of code (one whole function) and whether the kernel
// emulates the instruction there. First choice: the first emulated instruction after ret, with only these before
// it: straight instructions that write none of keep nor R14 (g, which the probes key on) and, when keep is empty,
// indirect calls (Go code returns from them with g in R14; no register is needed). skip rejects an emulated call
// by its target offset (a recovered panic resumes a function at its deferreturn call, which would fire unpaired).
// Second choice: the instruction at ret itself, single-stepped but still hit once per return of this call only
// (a call in tail position, whose epilogue holds nothing emulated). Either fails when some branch of the function
// lands between ret and the site (the site could run without the call); a function with an indirect jump (a jump
// table, targets unknown) fails outright.
func exitAfter(code []byte, ret int, keep []x86asm.Reg, skip func(target int) bool) (site int, emul bool, err error) {
	return newFuncBody(code).exitAfter(ret, keep, skip)
}

func (fb *funcBody) exitAfter(ret int, keep []x86asm.Reg, skip func(target int) bool) (site int, emul bool, err error) {
	if fb.indirect != nil {
		return 0, false, fb.indirect
	}
	landing := len(fb.code) // lowest branch target at or after ret
	if i, _ := slices.BinarySearch(fb.targets, ret); i < len(fb.targets) {
		landing = min(landing, fb.targets[i])
	}
	if landing == ret {
		return 0, false, fmt.Errorf("a branch lands on the return address +%#x", ret)
	}
	if off, err := emulatedAfter(fb.code, ret, keep, skip); err == nil && off < landing {
		return off, true, nil
	}
	return ret, false, nil
}

// emulatedAfter walks from ret to the first emulated instruction (see exitAfter).
func emulatedAfter(code []byte, ret int, keep []x86asm.Reg, skip func(target int) bool) (int, error) {
	off := ret
	for n := 0; n < maxStraight && off < len(code); n++ {
		inst, err := x86asm.Decode(code[off:], 64)
		if err != nil {
			return 0, fmt.Errorf("+%#x: %w", off, err)
		}
		if b := code[off : off+inst.Len]; emulated(b) {
			if b[0] == 0xe8 && skip != nil && skip(off+5+int(int32(binary.LittleEndian.Uint32(b[1:])))) {
				return 0, fmt.Errorf("+%#x: %v is skipped", off, inst)
			}
			return off, nil
		}
		if inst.Op == x86asm.CALL && len(keep) == 0 {
			off += inst.Len
			continue
		}
		if !straight[inst.Op] {
			return 0, fmt.Errorf("+%#x: %v before any emulated instruction", off, inst)
		}
		if r, ok := inst.Args[0].(x86asm.Reg); ok && !readOnly[inst.Op] {
			if w := family(r); w == x86asm.R14 || slices.ContainsFunc(keep, func(k x86asm.Reg) bool { return family(k) == w }) {
				return 0, fmt.Errorf("+%#x: %v overwrites %v", off, inst, w)
			}
		}
		off += inst.Len
	}
	return 0, fmt.Errorf("no emulated instruction within %d instructions", maxStraight)
}

// family maps a general-purpose register of any width to its 64-bit register.
func family(r x86asm.Reg) x86asm.Reg {
	switch {
	case r >= x86asm.AL && r <= x86asm.BL:
		return x86asm.RAX + (r - x86asm.AL)
	case r >= x86asm.AH && r <= x86asm.BH:
		return x86asm.RAX + (r - x86asm.AH)
	case r >= x86asm.SPB && r <= x86asm.R15B:
		return x86asm.RSP + (r - x86asm.SPB)
	case r >= x86asm.AX && r <= x86asm.R15W:
		return x86asm.RAX + (r - x86asm.AX)
	case r >= x86asm.EAX && r <= x86asm.R15L:
		return x86asm.RAX + (r - x86asm.EAX)
	}
	return r
}

// ownPackageOnly reports whether name ("pkg/path.Type.Method", "pkg/path.(*Type).Method") is a method whose name or
// receiver type is unexported. Plain functions and malformed names report false.
func ownPackageOnly(name string) bool {
	rest := name[strings.LastIndexByte(name, '/')+1:]
	dot := strings.IndexByte(rest, '.')
	if dot < 0 {
		return false
	}
	recv, method, ok := strings.Cut(rest[dot+1:], ").")
	if ok {
		recv = strings.TrimPrefix(recv, "(*")
	} else if recv, method, ok = strings.Cut(rest[dot+1:], "."); !ok {
		return false
	}
	return !token.IsExported(method) || !token.IsExported(recv)
}

// CallsIn gives the file offsets of caller's direct calls (CALL rel32) of callee, by decoded instruction: where a
// probe sees one particular path through caller reach callee, which a probe on callee's entry would see on every
// path (the HTTP server probe's panic exit: the call conn.serve's deferred function makes only when a handler did
// not return).
func (b *Binary) CallsIn(caller, callee Func) ([]uint64, error) {
	if b.arm64 {
		return nil, errARM64
	}
	code, err := b.funcCode(caller.Name, caller.Entry, caller.End)
	if err != nil {
		return nil, err
	}
	starts := map[int]bool{}
	for _, in := range decode(code) {
		starts[in.off] = true
	}
	var out []uint64
	for _, r := range codeRefs(code, caller.Entry, callee.Entry) {
		if r.kind != refCall || !starts[int(r.addr-caller.Entry)] {
			continue
		}
		off, err := b.fileOffset(r.addr)
		if err != nil {
			return nil, err
		}
		out = append(out, off)
	}
	return out, nil
}

// CallExitsIn gives, for each of caller's direct calls of callee, where to see that call return (the first emulated
// instruction after it with keep unchanged, else its return address; see exitAfter), as file offsets, and how many
// of them are single-stepped. A probe there sees caller reach the end of its callee on this path only: go-redis's
// processPipeline returns through a JMP from method wrappers the linker keeps in method tables, so its own exits
// cannot be found, but the one call it always makes, its last work, can.
func (b *Binary) CallExitsIn(caller, callee Func, keep ...x86asm.Reg) (offs []uint64, stepped int, err error) {
	if b.arm64 {
		return nil, 0, errARM64
	}
	code, err := b.funcCode(caller.Name, caller.Entry, caller.End)
	if err != nil {
		return nil, 0, err
	}
	body := newFuncBody(code)
	skip := func(target int) bool {
		t := b.table.PCToFunc(caller.Entry + uint64(target))
		return t != nil && t.Name == "runtime.deferreturn"
	}
	for _, r := range codeRefs(code, caller.Entry, callee.Entry) {
		at := int(r.addr - caller.Entry)
		if _, ok := slices.BinarySearch(body.starts, at); r.kind != refCall || !ok {
			continue
		}
		site, emul, err := body.exitAfter(at+5, keep, skip)
		if err != nil {
			return nil, 0, fmt.Errorf("call of %s at %#x in %s: %w", callee.Name, r.addr, caller.Name, err)
		}
		off, err := b.fileOffset(caller.Entry + uint64(site))
		if err != nil {
			return nil, 0, err
		}
		offs = append(offs, off)
		if !emul {
			stepped++
		}
	}
	if len(offs) == 0 {
		return nil, 0, fmt.Errorf("%s makes no direct call of %s", caller.Name, callee.Name)
	}
	return offs, stepped, nil
}
