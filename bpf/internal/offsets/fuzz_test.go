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

// FuzzGoVersion reads the Go release from .go.buildinfo bytes. Seeds: the test target's section, cut short, with a
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
		v, err := goVersion(data)
		if err == nil && len(v) > len(data) {
			t.Fatalf("version of %d bytes from %d", len(v), len(data))
		}
	})
}

// FuzzDWARF reads struct member offsets and result registers from DWARF (.debug_abbrev and .debug_info). The names
// asked for are taken from the input itself, its first struct with a member and its first function, so that any
// input can reach the code past the name match. Seeds: one compile unit holding entries copied from the test target
// (a struct, a function and its results), and one whose result type is a cycle of typedefs.
func FuzzDWARF(f *testing.F) {
	if *writeSeeds {
		abbrev, info := realUnit(f, buildTarget(f), "net/http.Request", "net/http.(*Transport).roundTrip")
		writeSeed(f, "FuzzDWARF", "target", abbrev, info)
		writeSeed(f, "FuzzDWARF", "target-cut", abbrev, info[:len(info)/2])
		abbrev, info = typedefCycle()
		writeSeed(f, "FuzzDWARF", "typedef-cycle", abbrev, info)
	}
	f.Fuzz(func(t *testing.T, abbrev, info []byte) {
		d, err := dwarf.New(abbrev, nil, nil, info, nil, nil, nil, nil)
		if err != nil {
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
// is read; one that inflates as the Go linker's do is read.
func TestCompressedBomb(t *testing.T) {
	for _, c := range []struct {
		name string
		size int
		ok   bool
	}{{"inflates 1000 times", 64 << 20, false}, {"inflates 3 times", 0, true}} {
		data := bytes.Repeat([]byte{0}, c.size)
		if c.ok {
			abbrev, info := typedefCycle()
			data = append(abbrev, info...) // any bytes: only the header check matters here
		}
		var z bytes.Buffer
		z.Write(binary.LittleEndian.AppendUint32(nil, uint32(elf.COMPRESS_ZLIB)))
		z.Write(make([]byte, 4))
		z.Write(binary.LittleEndian.AppendUint64(nil, uint64(len(data))))
		z.Write(make([]byte, 8)) // alignment
		w := zlib.NewWriter(&z)
		w.Write(data)
		w.Close()
		img := exetest.Build(exetest.Section{Name: ".debug_info", Type: elf.SHT_PROGBITS, Flags: elf.SHF_COMPRESSED, Data: z.Bytes()})
		ef, err := elf.NewFile(bytes.NewReader(img))
		if err != nil {
			t.Fatal(err)
		}
		err = CheckSections(ef)
		if (err == nil) != c.ok {
			t.Errorf("%s (%d bytes in the file): %v", c.name, z.Len(), err)
		}
		if _, _, err := Resolve(ef, RequestMethod); !c.ok && (err == nil || !strings.Contains(err.Error(), "claims")) {
			t.Errorf("%s: Resolve: %v, want the refusal", c.name, err)
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
// compile unit of their own. References still hold the offsets of the whole .debug_info (most point nowhere now).
func realUnit(tb testing.TB, f *elf.File, names ...string) (abbrev, info []byte) {
	abbrevSec, err := f.Section(".debug_abbrev").Data()
	if err != nil {
		tb.Fatal(err)
	}
	infoSec, err := f.Section(".debug_info").Data()
	if err != nil {
		tb.Fatal(err)
	}
	d, err := f.DWARF()
	if err != nil {
		tb.Fatal(err)
	}
	var unitHeader []byte
	var dies []byte
	r := d.Reader()
	for want := map[string]bool{}; len(want) < len(names); {
		e, err := r.Next()
		if err != nil || e == nil {
			tb.Fatalf("DWARF: %v, found %v of %v", err, want, names)
		}
		if e.Tag == dwarf.TagCompileUnit && unitHeader == nil {
			unitHeader = infoSec[:e.Offset] // the first unit's header, abbreviations from offset 0
		}
		name, _ := e.Val(dwarf.AttrName).(string)
		if !slices.Contains(names, name) || want[name] || e.Tag == dwarf.TagTypedef {
			continue
		}
		want[name] = true
		r.SkipChildren()
		next, err := r.Next()
		if err != nil || next == nil {
			tb.Fatalf("no entry after %s", name)
		}
		dies = append(dies, infoSec[e.Offset:next.Offset]...)
	}
	info = bytes.Clone(unitHeader)
	info = append(info, 1) // the first abbreviation: the compile unit, its children follow
	info = append(info, dies...)
	info = append(info, 0)
	binary.LittleEndian.PutUint32(info, uint32(len(info)-4))
	if len(info) > 4096 {
		tb.Fatalf("unit of %d bytes", len(info))
	}
	return abbrevSec, info
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
