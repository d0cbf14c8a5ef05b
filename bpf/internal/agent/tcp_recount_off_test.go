package agent

import (
	"bytes"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestTCPWithoutRecount: where the kernel refuses the TCP socket iterator (tcp.c's recount) although it is recent
// enough for it, the agent still starts (it refused to, found by review), says once in a WARN what is lost, names it
// in shanhai_bpf_system_unprobed at every scrape, and the rest of the TCP probe counts as before: a failed connect
// and its SYN retransmits. An agent whose iterator loaded exposes no such series.
func TestTCPWithoutRecount(t *testing.T) {
	var logs bytes.Buffer
	bin, a := probedSelf(t, Config{refuseRecount: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if a.sys.recount != nil {
		t.Fatal("the socket iterator is attached although the test had the kernel refuse it")
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(a.Collector())

	ln := newFullListener(t)
	d := startSYNDialer(t, bin, ln.addr, "fail")
	d.await(t, "retransmitted")
	a.Scan()
	n, err := strconv.ParseUint(d.await(t, "total_retrans"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	want := TCPStats{Failed: 1, Retransmits: n}
	eventually(t, func() (bool, string) {
		got := tcpOf(t, a, d.pid)
		return got == want, fmt.Sprintf("pid %d's connect, failed after %d SYN retransmits, without recount: got %+v, want %+v",
			d.pid, n, got, want)
	})
	for range 2 {
		why := systemUnprobed(t, reg)[unprobedRecount]
		if !strings.Contains(why, "load the tcp socket iterator") {
			t.Fatalf("shanhai_bpf_system_unprobed{probe=%q}: reason %q, want the refused load", unprobedRecount, why)
		}
	}
	warns := 0
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, "not recounted") &&
			strings.Contains(line, "probe="+unprobedRecount) && strings.Contains(line, "load the tcp socket iterator") {
			warns++
		}
	}
	if warns != 1 {
		t.Fatalf("%d WARN lines saying recount is off, want 1:\n%s", warns, logs.String())
	}

	_, on := probedSelf(t, Config{})
	if on.sys.recount == nil {
		t.Fatalf("no tcp socket iterator: kernel before %v?", recountSince)
	}
	reg = prometheus.NewPedanticRegistry()
	reg.MustRegister(on.Collector())
	if got := systemUnprobed(t, reg); len(got) != 0 {
		t.Fatalf("shanhai_bpf_system_unprobed with the socket iterator attached: %v, want none", got)
	}
}

// systemUnprobed is the reasons of the shanhai_bpf_system_unprobed series in a scrape of g, by probe.
func systemUnprobed(t *testing.T, g prometheus.Gatherer) map[string]string {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, mf := range mfs {
		if mf.GetName() != "shanhai_bpf_system_unprobed" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if v := m.GetGauge().GetValue(); v != 1 {
				t.Fatalf("shanhai_bpf_system_unprobed%v = %v, want 1", labels, v)
			}
			got[labels["probe"]] = labels["reason"]
		}
	}
	return got
}
