package agent

import (
	"bytes"
	"debug/elf"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shanhai-dev/shanhai/bpf/internal/offsets"
)

// A stripped target of a Go release the offsets tables do not hold gets its HTTP server and client probes refused
// (they would read another release's struct layouts), and that was in the log only: Targets() and /metrics showed
// the target with fewer probes and no reason (found by review). Target.Unprobed and shanhai_bpf_target_unprobed must
// name each refused probe with a reason naming the release. The target is the stripped test target with its release
// rewritten in .go.buildinfo (same length), which still runs and serves.
func TestRefusedProbesAreReported(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	orig := buildTarget(t, true)
	f, err := elf.Open(orig)
	if err != nil {
		t.Fatal(err)
	}
	v, err := offsets.GoVersion(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	other := "go1.25" + strings.TrimPrefix(v, offsets.FallbackRelease)
	data, err := os.ReadFile(orig)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "target-go125")
	if err := os.WriteFile(bin, bytes.ReplaceAll(data, []byte(v), []byte(other)), 0o755); err != nil {
		t.Fatal(err)
	}
	a := newAgent(t, bin)
	tg := startTarget(t, bin)
	a.Scan()

	var unprobed map[string]string
	for _, ta := range a.Targets() {
		if ta.PID == tg.pid {
			unprobed = ta.Unprobed
		}
	}
	t.Logf("unprobed: %v", unprobed)
	for _, probe := range []string{"httpserver", "httpclient"} {
		if !strings.Contains(unprobed[probe], other) {
			t.Errorf("Target.Unprobed[%s] = %q, want the refusal naming %s (all: %v)", probe, unprobed[probe], other, unprobed)
		}
	}
	if _, ok := unprobed[UnprobedAll]; ok {
		t.Errorf("Target.Unprobed %v: the executable was read, want the refused probes only", unprobed)
	}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(a.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]string{}
	for _, mf := range mfs {
		if mf.GetName() != "shanhai_bpf_target_unprobed" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["pid"] == strconv.Itoa(tg.pid) && l["exe"] == bin && m.GetGauge().GetValue() == 1 {
				exported[l["probe"]] = l["reason"]
			}
		}
	}
	if len(exported) != len(unprobed) {
		t.Errorf("shanhai_bpf_target_unprobed for pid %d: %v, want Target.Unprobed %v", tg.pid, exported, unprobed)
	}
	for probe, why := range unprobed {
		if exported[probe] != why {
			t.Errorf("shanhai_bpf_target_unprobed{probe=%q} reason %q, want %q", probe, exported[probe], why)
		}
	}
}
