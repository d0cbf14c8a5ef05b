package probe_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// TestProbesLoadWithoutGroupDead loads every probe's amd64 object into this kernel, CO-RE relocated against its own
// BTF with one change: the sched_process_exit tracepoint's record has no group_dead field, as on kernels before
// the tracepoint moved ahead of exit_mm and gained it (Debian 12's 6.1, Ubuntu 24.04's 6.8, the kernels most kind
// clusters run on). A program that reads the field unguarded has a relocation that cannot be resolved, the verifier
// refuses the whole object, and the agent there would have no HTTP, database, runtime or TCP probe at all.
func TestProbesLoadWithoutGroupDead(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("loading BPF programs needs root (the module's tests run as root)")
	}
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		t.Fatal(err)
	}
	old := kernel.Copy()
	var rec *btf.Struct
	if err := old.TypeByName("trace_event_raw_sched_process_exit", &rec); err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(rec.Members, func(m btf.Member) bool { return m.Name == "group_dead" })
	if i < 0 {
		t.Fatal("this kernel's sched_process_exit record has no group_dead: the test needs one that has")
	}
	rec.Members = slices.Delete(slices.Clone(rec.Members), i, i+1)
	for _, p := range probes {
		t.Run(p, func(t *testing.T) {
			spec, err := ebpf.LoadCollectionSpec(filepath.Join(p, "bpf_x86_bpfel.o"))
			if err != nil {
				t.Fatal(err)
			}
			coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{KernelTypes: old}})
			if err != nil {
				var ve *ebpf.VerifierError
				if errors.As(err, &ve) {
					t.Fatalf("%s without group_dead: %v\n%+v", p, err, ve)
				}
				t.Fatalf("%s without group_dead: %v", p, err)
			}
			coll.Close()
		})
	}
}
