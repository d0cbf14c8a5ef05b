package offsets

import (
	"bytes"
	"compress/zlib"
	"debug/dwarf"
	"debug/elf"
	"encoding/binary"
	"flag"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/shanhai-dev/shanhai/bpf/internal/symtab/exetest"
)

// -write-seeds regenerates testdata/fuzz from a freshly built test target (bpf/README.md, Tests).
var writeSeeds = flag.Bool("write-seeds", false, "write the fuzz seed corpus from a freshly built test target")

// FuzzGoVersion reads the Go release and the module information from .go.buildinfo bytes. Seeds: the test target's section, cut short, with a
// version length it does not hold.
func FuzzGoVersion(f *testing.F) {
	if *writeSeeds {
		data, err := buildTarget(f).Section(".go.buildinfo").Data()
		if err != nil {
			f.Fatal(err)
		}
		long := bytes.Clone(data)
		long[32] = 0xff // the varint length of the version: 127 + more
		writeSeed(f, "FuzzGoVersion", "buildinfo", data)
		writeSeed(f, "FuzzGoVersion", "buildinfo-cut", data[:40])
		writeSeed(f, "FuzzGoVersion", "buildinfo-long", long)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ss, err := buildInfoStrings(data, 2)
		if err == nil && len(ss[0])+len(ss[1]) > len(data) {
			t.Fatalf("strings of %d and %d bytes from %d", len(ss[0]), len(ss[1]), len(data))
		}
	})
}

// FuzzDWARF reads struct member offsets and result registers from DWARF (.debug_abbrev, .debug_info, .debug_addr).
// The names asked for are taken from the input itself, its first struct with a member and its first function, so
// that any input can reach the code past the name match. Seeds: one compile unit holding entries copied from the
// test target (a struct, a function and its results' types; see realUnit), whole and cut short, and one whose result
// type is a cycle of typedefs.
func FuzzDWARF(f *testing.F) {
	if *writeSeeds {
		abbrev, info, addr := realUnit(f, buildTarget(f), "net/http.Request", "net/http.(*Transport).roundTrip")
		writeSeed(f, "FuzzDWARF", "target", abbrev, info, addr)
		cut := bytes.Clone(info[:len(info)/2])
		binary.LittleEndian.PutUint32(cut, uint32(len(cut)-4)) // the unit's length: it ends inside an entry
		writeSeed(f, "FuzzDWARF", "target-cut", abbrev, cut, addr)
		abbrev, info = typedefCycle()
		writeSeed(f, "FuzzDWARF", "typedef-cycle", abbrev, info, nil)
	}
	f.Fuzz(func(t *testing.T, abbrev, info, addr []byte) {
		d, err := dwarf.New(abbrev, nil, nil, info, nil, nil, nil, nil)
		if err != nil {
			return
		}
		if err := d.AddSection(".debug_addr", addr); err != nil {
			return
		}
		var strct, member, fn string
		r := d.Reader()
		for range 1000 {
			e, err := r.Next()
			if e == nil || err != nil {
				break
			}
			name, _ := e.Val(dwarf.AttrName).(string)
			switch {
			case e.Tag == dwarf.TagStructType && strct == "" && name != "":
				strct = name
			case e.Tag == dwarf.TagMember && strct != "" && member == "" && name != "":
				member = name
			case e.Tag == dwarf.TagSubprogram && fn == "" && name != "":
				fn = name
			}
		}
		FromDWARFData(d, Field(strct+"."+member), RequestMethod)
		lastResultRegister(d, fn)
	})
}

// FuzzResolve runs the entry points the agent calls on an ELF image: Resolve, ErrorRegister and GoVersion. Seeds:
// FuzzDWARF's units and FuzzGoVersion's .go.buildinfo as the sections of an executable, DWARF plain and compressed.
func FuzzResolve(f *testing.F) {
	if *writeSeeds {
		target := buildTarget(f)
		buildinfo, err := target.Section(".go.buildinfo").Data()
		if err != nil {
			f.Fatal(err)
		}
		abbrev, info, addr := realUnit(f, target, "net/http.Request", "net/http.(*Transport).roundTrip")
		writeSeed(f, "FuzzResolve", "target", dwarfImage(abbrev, info, addr, buildinfo, false))
		writeSeed(f, "FuzzResolve", "target-zlib", dwarfImage(abbrev, info, addr, buildinfo, true))
		abbrev, info = typedefCycle()
		writeSeed(f, "FuzzResolve", "typedef-cycle", dwarfImage(abbrev, info, nil, buildinfo, false))
	}
	f.Fuzz(func(t *testing.T, image []byte) {
		ef, err := elf.NewFile(bytes.NewReader(image))
		if err != nil {
			return
		}
		Resolve(ef, RequestMethod, ServerStatus)
		ErrorRegister(ef, "net/http.(*Transport).roundTrip")
		GoVersion(ef)
	})
}

// dwarfImage is an executable holding .debug_abbrev, .debug_info (compressed with zlib when asked), .debug_addr and
// .go.buildinfo.
func dwarfImage(abbrev, info, addr, buildinfo []byte, compress bool) []byte {
	infoSec := exetest.Section{Name: ".debug_info", Type: elf.SHT_PROGBITS, Data: info}
	if compress {
		infoSec.Flags, infoSec.Data = elf.SHF_COMPRESSED, zlibSection(info, zlib.DefaultCompression)
	}
	return exetest.Build(
		exetest.Section{Name: ".go.buildinfo", Type: elf.SHT_PROGBITS, Flags: elf.SHF_ALLOC | elf.SHF_WRITE, Addr: 0x600000, Data: buildinfo},
		exetest.Section{Name: ".debug_abbrev", Type: elf.SHT_PROGBITS, Data: abbrev},
		exetest.Section{Name: ".debug_addr", Type: elf.SHT_PROGBITS, Data: addr},
		infoSec)
}

// zlibSection is data as an SHF_COMPRESSED section's bytes: the ELF64 compression header, then zlib at level.
func zlibSection(data []byte, level int) []byte {
	var z bytes.Buffer
	z.Write(binary.LittleEndian.AppendUint32(nil, uint32(elf.COMPRESS_ZLIB)))
	z.Write(make([]byte, 4))
	z.Write(binary.LittleEndian.AppendUint64(nil, uint64(len(data))))
	z.Write(make([]byte, 8)) // alignment
	w, err := zlib.NewWriterLevel(&z, level)
	if err != nil {
		panic(err) // a level zlib does not have: a mistake in the test
	}
	w.Write(data)
	w.Close()
	return z.Bytes()
}

// TestResultTypeCycle: a result whose type is a typedef of itself is an error. Through debug/dwarf's Type the
// register count recursed until the stack was exhausted (fatal, no recover).
func TestResultTypeCycle(t *testing.T) {
	abbrev, info := typedefCycle()
	d, err := dwarf.New(abbrev, nil, nil, info, nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := lastResultRegister(d, "f"); err == nil {
		t.Fatalf("register %d for a result of a cyclic type", n)
	}
}

// TestCompressedBomb: a compressed debug section claiming far more than its bytes inflate to is refused before it
// is read, as is one whose header claims more bytes in the file than the file has (which would hide the ratio); one
// that inflates as the Go linker's do is read.
func TestCompressedBomb(t *testing.T) {
	abbrev, info := typedefCycle()
	// Compressed once for both cases, at zlib's fastest level (824 times smaller): the default level took about 10 s
	// for 64 MiB under -race.
	bomb := zlibSection(make([]byte, 64<<20), zlib.BestSpeed)
	for _, c := range []struct {
		name     string
		z        []byte // the section's bytes (zlibSection)
		fileSize uint64 // the header's, when it lies
		ok       bool
	}{
		{"inflates 800 times", bomb, 0, false},
		{"claims 2^40 bytes in the file", bomb, 1 << 40, false},
		{"inflates 3 times", zlibSection(append(abbrev, info...), zlib.DefaultCompression), 0, true}, // any bytes: only the header check matters here
	} {
		z := c.z
		img := exetest.Build(exetest.Section{Name: ".debug_info", Type: elf.SHT_PROGBITS, Flags: elf.SHF_COMPRESSED, Data: z, Size: c.fileSize})
		ef, err := elf.NewFile(bytes.NewReader(img))
		if err != nil {
			t.Fatal(err)
		}
		err = CheckSections(ef, int64(len(img)))
		if (err == nil) != c.ok {
			t.Errorf("%s (%d bytes in the file): %v", c.name, len(z), err)
		}
		_, _, err = Resolve(ef, RequestMethod)
		if refused := err != nil && strings.Contains(err.Error(), "claims"); refused != (!c.ok && c.fileSize == 0) {
			t.Errorf("%s: Resolve: %v", c.name, err) // it knows no file size: it refuses by the ratio alone
		}
	}
}

// typedefCycle is DWARF 4 for a function f whose one result has type T1, a typedef of T2, a typedef of T1.
func typedefCycle() (abbrev, info []byte) {
	const (
		tagCU, tagSub, tagParam, tagTypedef         = 0x11, 0x2e, 0x05, 0x16
		atName, atType, atVarParam                  = 0x03, 0x49, 0x4b
		formString, formRef4, formFlag, yes, noKids = 0x08, 0x13, 0x0c, 1, 0
	)
	abbrev = []byte{
		1, tagCU, yes, 0, 0,
		2, tagSub, yes, atName, formString, 0, 0,
		3, tagParam, noKids, atName, formString, atVarParam, formFlag, atType, formRef4, 0, 0,
		4, tagTypedef, noKids, atName, formString, atType, formRef4, 0, 0,
		0,
	}
	const hdr = 11 // unit length, version, abbrev offset, address size
	ref := func(off int) []byte { return binary.LittleEndian.AppendUint32(nil, uint32(off)) }
	var dies []byte
	dies = append(dies, 1)                      // CU at 11
	dies = append(dies, 2, 'f', 0)              // f at 12
	dies = append(dies, 3, '~', 'r', '0', 0, 1) // ~r0 at 15, type at 21
	t1 := hdr + len(dies) + 4 + 1               // after the ref and f's end
	dies = append(dies, ref(t1)...)
	dies = append(dies, 0) // end of f's children
	t2 := t1 + 1 + 3 + 4
	dies = append(dies, 4, 'T', '1', 0)
	dies = append(dies, ref(t2)...)
	dies = append(dies, 4, 'T', '2', 0)
	dies = append(dies, ref(t1)...)
	dies = append(dies, 0) // end of the CU's children
	info = binary.LittleEndian.AppendUint32(nil, uint32(hdr-4+len(dies)))
	info = append(info, 4, 0, 0, 0, 0, 0, 8)
	return abbrev, append(info, dies...)
}

// realUnit copies the entries of the named structs and functions (with their children) out of f's DWARF into one
// compile unit of their own, behind the header and compile unit entry of f's first unit, with the start of
// .debug_addr. The types of the functions' results come along as far as registers reads them (typedefs, structs and
// their members' types, not what a pointer points to), their references moved to the copies; a function's address
// index (DW_FORM_addrx, right after its name) is set to 0, the unit's first address. Other references still hold
// offsets of the whole .debug_info (most point nowhere now).
func realUnit(tb testing.TB, f *elf.File, names ...string) (abbrev, info, addr []byte) {
	var secs [3][]byte
	for i, name := range []string{".debug_abbrev", ".debug_info", ".debug_addr"} {
		data, err := f.Section(name).Data()
		if err != nil {
			tb.Fatal(err)
		}
		secs[i] = data
	}
	infoSec := secs[1]
	d, err := f.DWARF()
	if err != nil {
		tb.Fatal(err)
	}
	r := d.Reader()
	cu, err := r.Next()
	if err != nil || cu == nil || cu.Tag != dwarf.TagCompileUnit || !cu.Children {
		tb.Fatalf("first entry %v, %v: want a compile unit with children", cu, err)
	}
	base, ok := cu.Val(dwarf.AttrAddrBase).(int64)
	if !ok {
		tb.Fatal("first compile unit without an address base")
	}
	first, err := r.Next()
	if err != nil || first == nil {
		tb.Fatalf("compile unit without children: %v", err)
	}
	info = bytes.Clone(infoSec[:first.Offset]) // the unit's header and its compile unit entry

	// span returns the entry at off and the offset after its children.
	span := func(off dwarf.Offset) (*dwarf.Entry, dwarf.Offset) {
		r.Seek(off)
		e, err := r.Next()
		if err != nil || e == nil {
			tb.Fatalf("entry at %#x: %v", off, err)
		}
		r.SkipChildren()
		next, err := r.Next()
		if err != nil || next == nil {
			tb.Fatalf("no entry after %#x", off)
		}
		return e, next.Offset
	}
	// children returns the entries directly under e (at off).
	children := func(off dwarf.Offset) []*dwarf.Entry {
		r.Seek(off)
		var out []*dwarf.Entry
		if e, _ := r.Next(); e == nil || !e.Children {
			return nil
		}
		for {
			c, err := r.Next()
			if err != nil || c == nil || c.Tag == 0 {
				return out
			}
			out = append(out, c)
			if c.Children {
				r.SkipChildren()
			}
		}
	}
	moved := map[dwarf.Offset]int{} // old offset -> offset in info
	var copied []dwarf.Offset
	var follow []dwarf.Offset // result types still to copy
	add := func(off dwarf.Offset) *dwarf.Entry {
		e, end := span(off)
		moved[off] = len(info)
		copied = append(copied, off)
		info = append(info, infoSec[off:end]...)
		return e
	}

	r.Seek(0)
	for want := map[string]bool{}; len(want) < len(names); {
		e, err := r.Next()
		if err != nil || e == nil {
			tb.Fatalf("DWARF: %v, found %v of %v", err, want, names)
		}
		name, _ := e.Val(dwarf.AttrName).(string)
		if !slices.Contains(names, name) || want[name] || e.Tag == dwarf.TagTypedef {
			continue
		}
		want[name] = true
		at := len(info)
		add(e.Offset)
		if e.Tag != dwarf.TagSubprogram {
			r.Seek(e.Offset)
			r.Next()
			r.SkipChildren()
			continue
		}
		_, n := binary.Uvarint(info[at:]) // the abbreviation code
		if !bytes.HasPrefix(info[at+n:], append([]byte(name), 0)) {
			tb.Fatalf("%s: the name does not follow the abbreviation code", name)
		}
		idx := at + n + len(name) + 1
		_, w := binary.Uvarint(info[idx:])
		for i := idx; i < idx+w-1; i++ {
			info[i] = 0x80 // 0, padded to the index's length so that nothing after it moves
		}
		info[idx+w-1] = 0
		for _, c := range children(e.Offset) {
			if out, _ := c.Val(dwarf.AttrVarParam).(bool); out && c.Tag == dwarf.TagFormalParameter {
				if t, ok := c.Val(dwarf.AttrType).(dwarf.Offset); ok {
					follow = append(follow, t)
				}
			}
		}
		r.Seek(e.Offset)
		r.Next()
		r.SkipChildren()
	}
	for len(follow) > 0 {
		off := follow[0]
		follow = follow[1:]
		if _, ok := moved[off]; ok {
			continue
		}
		e := add(off)
		switch e.Tag {
		case dwarf.TagTypedef:
			if t, ok := e.Val(dwarf.AttrType).(dwarf.Offset); ok {
				follow = append(follow, t)
			}
		case dwarf.TagStructType:
			for _, c := range children(off) {
				if t, ok := c.Val(dwarf.AttrType).(dwarf.Offset); ok && c.Tag == dwarf.TagMember {
					follow = append(follow, t)
				}
			}
		}
	}
	// Move the references to copied entries: a DW_FORM_ref_addr is the 4-byte offset in .debug_info.
	for _, off := range copied {
		start := moved[off]
		_, end := span(off)
		entry := info[start : start+int(end-off)]
		writes := map[int]int{} // found first, then written: a moved offset may equal an old one
		for old, now := range moved {
			from := binary.LittleEndian.AppendUint32(nil, uint32(old))
			for i := 0; i+4 <= len(entry); i++ {
				if bytes.Equal(entry[i:i+4], from) {
					writes[i] = now
				}
			}
		}
		for i, now := range writes {
			binary.LittleEndian.PutUint32(entry[i:], uint32(now))
		}
	}
	info = append(info, 0) // the end of the compile unit's children
	binary.LittleEndian.PutUint32(info, uint32(len(info)-4))
	if len(info) > 4096 {
		tb.Fatalf("unit of %d bytes", len(info))
	}
	return secs[0], info, secs[2][:base+8]
}

// buildTarget builds testdata/target with DWARF.
func buildTarget(tb testing.TB) *elf.File {
	out := filepath.Join(tb.TempDir(), "target")
	if b, err := exec.Command("go", "build", "-o", out, "../../testdata/target").CombinedOutput(); err != nil {
		tb.Fatalf("go build: %v\n%s", err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	return f
}

// writeSeed writes one seed of a fuzz target whose arguments are all []byte.
func writeSeed(tb testing.TB, target, name string, args ...[]byte) {
	if err := exetest.WriteSeed(target, name, args...); err != nil {
		tb.Fatal(err)
	}
}
