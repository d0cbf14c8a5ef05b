package agent

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestAgentSkipsCorruptTarget runs two corrupt copies of the test target beside the target itself, each still
// runnable and serving (the kernel never reads section headers, and the Go runtime finds its functions through the
// linker's moduledata, not the pclntab header's count): one whose .gopclntab section header claims 2^40 bytes, one
// whose pclntab header claims 2^28-1 functions (debug/gosym allocated 24 GiB for those: the agent died out of
// memory). Each copy is skipped with one log line naming it and the reason; the target is probed and counted.
func TestAgentSkipsCorruptTarget(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	good := ownCopy(t, buildTarget(t, false))
	dir := t.TempDir()
	bads := map[string]string{ // path -> the reason logged
		filepath.Join(dir, "target-section"): "section .gopclntab claims 1099511627776 bytes",
		filepath.Join(dir, "target-count"):   "header claims 268435455 functions",
	}
	corrupt(t, good, filepath.Join(dir, "target-section"), func(f *elf.File, data []byte, pcln int) {
		shoff := binary.LittleEndian.Uint64(data[0x28:]) // e_shoff
		const shentsize, sizeField = 64, 32              // Elf64_Shdr, its sh_size
		binary.LittleEndian.PutUint64(data[shoff+uint64(pcln)*shentsize+sizeField:], 1<<40)
	})
	corrupt(t, good, filepath.Join(dir, "target-count"), func(f *elf.File, data []byte, pcln int) {
		binary.LittleEndian.PutUint64(data[f.Sections[pcln].Offset+8:], 1<<28-1) // the header's function count
	})

	var logs bytes.Buffer
	targets := []string{good}
	for bad := range bads {
		targets = append(targets, bad)
	}
	a, err := New(Config{Targets: targets, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.Scan()
	tgGood := startTarget(t, good)
	var tgBad []*target
	for bad := range bads {
		tgBad = append(tgBad, startTarget(t, bad))
	}
	a.Scan()
	a.Scan()

	failed := map[string]int{}
	for line := range strings.Lines(logs.String()) {
		if !strings.Contains(line, "attach failed") {
			continue
		}
		t.Log(strings.TrimSpace(line))
		for bad, why := range bads {
			if strings.Contains(line, "exe="+bad+" ") && strings.Contains(line, why) {
				failed[bad]++
			}
		}
	}
	if len(failed) != len(bads) || failed[targets[1]] != 1 || failed[targets[2]] != 1 {
		t.Fatalf("attach failures logged: %v, want one for each of %v with its reason", failed, bads)
	}
	probes := map[int][]string{}
	unprobed := map[int]string{}
	for _, tg := range a.Targets() {
		probes[tg.PID] = tg.Probes
		unprobed[tg.PID] = tg.Unprobed[UnprobedAll]
		if len(tg.Unprobed) > 1 || len(tg.Unprobed) == 1 && tg.Unprobed[UnprobedAll] == "" {
			t.Fatalf("target pid %d unprobed %v, want nothing or why all probes are missing", tg.PID, tg.Unprobed)
		}
	}
	if unprobed[tgGood.pid] != "" {
		t.Fatalf("target pid %d reported unprobed: %s", tgGood.pid, unprobed[tgGood.pid])
	}
	// The metric names exactly the corrupt copies.
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(a.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	metricPIDs := map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() != "shanhai_bpf_target_unprobed" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "pid" {
					metricPIDs[l.GetValue()] = true
				}
			}
		}
	}
	if len(metricPIDs) != len(tgBad) {
		t.Fatalf("shanhai_bpf_target_unprobed for pids %v, want the %d corrupt copies", metricPIDs, len(tgBad))
	}
	for _, tg := range tgBad {
		if unprobed[tg.pid] == "" || !metricPIDs[strconv.Itoa(tg.pid)] {
			t.Fatalf("corrupt copy pid %d: unprobed %q, in the metric %v", tg.pid, unprobed[tg.pid], metricPIDs[strconv.Itoa(tg.pid)])
		}
	}
	if !slices.Contains(probes[tgGood.pid], "httpserver") {
		t.Fatalf("target pid %d probes %v, want httpserver", tgGood.pid, probes[tgGood.pid])
	}
	for _, tg := range tgBad {
		if p, ok := probes[tg.pid]; !ok || len(p) != 0 {
			t.Fatalf("corrupt copy pid %d: listed %v with probes %v, want listed without probes", tg.pid, ok, p)
		}
	}

	c := &http.Client{}
	for range 20 {
		tgGood.get(t, c, "GET", "/work")
		for _, tg := range tgBad {
			tg.get(t, c, "GET", "/work")
		}
	}
	eventually(t, func() (bool, string) {
		s, err := a.Snapshot()
		if err != nil {
			return false, err.Error()
		}
		n, m := s.ServerTotal(tgGood.pid), s.ServerTotal(tgBad[0].pid)+s.ServerTotal(tgBad[1].pid)
		return n == 20 && m == 0, fmt.Sprintf("requests counted: target %d, corrupt copies %d; want 20 and 0", n, m)
	})
}

// corrupt copies the executable src to dst after change, which gets the parsed file, its bytes and the index of
// its .gopclntab section.
func corrupt(t *testing.T, src, dst string, change func(f *elf.File, data []byte, pcln int)) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(f.Sections, func(s *elf.Section) bool { return s.Name == ".gopclntab" })
	if i < 0 {
		t.Fatalf("%s has no .gopclntab", src)
	}
	change(f, data, i)
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
}
