package main

import (
	"os"
	"testing"

	"github.com/shanhai-dev/shanhai/bpf/internal/offsets"
	"github.com/shanhai-dev/shanhai/bpf/probe/httpserver"
)

// TestLoadProbeWhereTheSleepableExitIsRefused: on a kernel that refuses the sleepable exit build (before 6.1),
// progcost still prices the plain probe and the reference programs, as it did before the object had that build; it
// used to stop at the refusal. The refusal is forced with a program flag no kernel knows.
func TestLoadProbeWhereTheSleepableExitIsRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("loading BPF programs needs root (the module's tests run as root)")
	}
	spec, err := httpserver.LoadBpf()
	if err != nil {
		t.Fatal(err)
	}
	spec.Programs[httpserver.BpfProgServeHttpRetSleepable].Flags |= 1 << 31
	p, sp, err := loadProbe(spec, map[offsets.Field]uint64{})
	if err != nil {
		t.Fatalf("loadProbe: %v, want the plain pair alone", err)
	}
	defer p.Enter.Close()
	defer p.Ret.Close()
	if sp != nil {
		t.Fatalf("sleepable pair %+v, want none where the kernel refuses it", sp)
	}
}
