// Package exetest makes the inputs of the executable parsers' tests (internal/symtab, internal/offsets): small amd64
// ELF images built in memory from chosen sections, where a few KiB of real sections stand in for a whole binary and
// any header can be made to lie, and the seed files of their fuzz targets.
package exetest

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
)

// Section is one section to lay out. Addr 0 means not loaded. Size, when set, is what the header claims instead of
// len(Data).
type Section struct {
	Name  string
	Type  elf.SectionType
	Flags elf.SectionFlag
	Addr  uint64
	Data  []byte
	Size  uint64
}

const (
	ehdrSize = 64
	phdrSize = 56
	shdrSize = 64
)

// Build lays out an ET_EXEC image: the ELF header, one PT_LOAD R+X program header covering every section with
// SHF_EXECINSTR (so file offsets of code resolve), the sections' bytes, .shstrtab, then the section headers.
func Build(secs ...Section) []byte {
	shstr := []byte{0}
	names := make([]uint32, len(secs))
	for i, s := range secs {
		names[i] = uint32(len(shstr))
		shstr = append(append(shstr, s.Name...), 0)
	}
	shstrName := uint32(len(shstr))
	shstr = append(shstr, ".shstrtab\x00"...)

	off := uint64(ehdrSize + phdrSize)
	offs := make([]uint64, len(secs))
	var body bytes.Buffer
	for i, s := range secs {
		offs[i] = off + uint64(body.Len())
		body.Write(s.Data)
	}
	shstrOff := off + uint64(body.Len())
	body.Write(shstr)
	shoff := off + uint64(body.Len())

	var out bytes.Buffer
	le := binary.LittleEndian
	w := func(v any) { binary.Write(&out, le, v) }
	out.Write([]byte{0x7f, 'E', 'L', 'F', byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)})
	out.Write(make([]byte, 9))
	w(uint16(elf.ET_EXEC))
	w(uint16(elf.EM_X86_64))
	w(uint32(elf.EV_CURRENT))
	w(uint64(0))        // entry
	w(uint64(ehdrSize)) // phoff
	w(shoff)
	w(uint32(0))
	w(uint16(ehdrSize))
	w(uint16(phdrSize))
	w(uint16(1))
	w(uint16(shdrSize))
	w(uint16(len(secs) + 2)) // null, secs, .shstrtab
	w(uint16(len(secs) + 1)) // shstrndx

	ph := elf.Prog64{Type: uint32(elf.PT_LOAD), Flags: uint32(elf.PF_R | elf.PF_X), Align: 0x1000}
	for i, s := range secs {
		if s.Flags&elf.SHF_EXECINSTR != 0 && ph.Filesz == 0 {
			ph.Off, ph.Vaddr, ph.Paddr, ph.Filesz, ph.Memsz = offs[i], s.Addr, s.Addr, uint64(len(s.Data)), uint64(len(s.Data))
		}
	}
	w(ph)
	out.Write(body.Bytes())

	w(elf.Section64{})
	for i, s := range secs {
		size := s.Size
		if size == 0 {
			size = uint64(len(s.Data))
		}
		w(elf.Section64{Name: names[i], Type: uint32(s.Type), Flags: uint64(s.Flags), Addr: s.Addr, Off: offs[i], Size: size, Addralign: 1})
	}
	w(elf.Section64{Name: shstrName, Type: uint32(elf.SHT_STRTAB), Off: shstrOff, Size: uint64(len(shstr)), Addralign: 1})
	return out.Bytes()
}

// WriteSeed writes one seed of fuzz target (all of whose arguments are []byte) to testdata/fuzz/<target>/<name>.
func WriteSeed(target, name string, args ...[]byte) error {
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	out := []byte("go test fuzz v1\n")
	for _, a := range args {
		out = fmt.Appendf(out, "[]byte(%q)\n", a)
	}
	return os.WriteFile(filepath.Join(dir, name), out, 0o644)
}
