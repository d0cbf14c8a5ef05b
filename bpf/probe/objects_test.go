// Package probe_test checks the committed bpf2go objects of every probe without loading them.
package probe_test

import (
	"debug/elf"
	"encoding/binary"
	"maps"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
)

var probes = []string{"db", "goruntime", "httpclient", "httpserver", "httpsock", "messaging", "tcp"}

// TestARM64Objects checks each committed arm64 object: an EM_BPF little-endian ELF that parses as a CollectionSpec
// with the same programs (name, type, section) and maps (name, type, sizes) as the amd64 object, which the agent's
// tests load and attach in this kernel. arm64 programs cannot be loaded here (the kernel is amd64), so the verifier
// has not seen them: this is a build and spec check only.
func TestARM64Objects(t *testing.T) {
	for _, p := range probes {
		t.Run(p, func(t *testing.T) {
			path := filepath.Join(p, "bpf_arm64_bpfel.o")
			f, err := elf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.Machine != elf.EM_BPF || f.ByteOrder != binary.LittleEndian || f.Class != elf.ELFCLASS64 {
				t.Fatalf("%s: %v %v %v, want EM_BPF little-endian ELF64", path, f.Machine, f.ByteOrder, f.Class)
			}
			arm, err := ebpf.LoadCollectionSpec(path)
			if err != nil {
				t.Fatal(err)
			}
			amd, err := ebpf.LoadCollectionSpec(filepath.Join(p, "bpf_x86_bpfel.o"))
			if err != nil {
				t.Fatal(err)
			}
			if len(arm.Programs) == 0 {
				t.Fatalf("%s: no programs", path)
			}
			if got, want := slices.Sorted(maps.Keys(arm.Programs)), slices.Sorted(maps.Keys(amd.Programs)); !slices.Equal(got, want) {
				t.Fatalf("programs %v, want the amd64 object's %v", got, want)
			}
			for name, ps := range arm.Programs {
				want := amd.Programs[name]
				if ps.Type != want.Type || ps.SectionName != want.SectionName || ps.AttachType != want.AttachType || ps.License != want.License {
					t.Errorf("program %s: %v %q %v %q, want %v %q %v %q", name, ps.Type, ps.SectionName, ps.AttachType,
						ps.License, want.Type, want.SectionName, want.AttachType, want.License)
				}
				if len(ps.Instructions) == 0 {
					t.Errorf("program %s: no instructions", name)
				}
			}
			if got, want := slices.Sorted(maps.Keys(arm.Maps)), slices.Sorted(maps.Keys(amd.Maps)); !slices.Equal(got, want) {
				t.Fatalf("maps %v, want the amd64 object's %v", got, want)
			}
			for name, ms := range arm.Maps {
				want := amd.Maps[name]
				if ms.Type != want.Type || ms.KeySize != want.KeySize || ms.ValueSize != want.ValueSize || ms.MaxEntries != want.MaxEntries {
					t.Errorf("map %s: %v key %d value %d max %d, want %v key %d value %d max %d", name, ms.Type, ms.KeySize,
						ms.ValueSize, ms.MaxEntries, want.Type, want.KeySize, want.ValueSize, want.MaxEntries)
				}
			}
		})
	}
}
