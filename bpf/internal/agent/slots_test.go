package agent

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/shanhai-dev/shanhai/bpf/internal/hist"
	"github.com/shanhai-dev/shanhai/bpf/probe/httpserver"
)

// deadPID is above the kernel's pid_max limit (2^22), so no process has it.
const deadPID = 1<<22 + 1

func TestPruneOwnedSlots(t *testing.T) {
	requireRoot(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 64, MaxEntries: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	slot := func(tgid uint32, g uint64) []byte {
		v := make([]byte, 64)
		binary.LittleEndian.PutUint32(v, tgid)
		binary.LittleEndian.PutUint64(v[8:], 12345) // start_ns
		binary.LittleEndian.PutUint64(v[56:], g)
		return v
	}
	me := uint32(os.Getpid())
	for i, v := range [][]byte{slot(deadPID, 0xc000001000), slot(me, 0xc000002000), slot(0, 0xc000003000), slot(0, 0)} {
		if err := m.Put(uint32(i), v); err != nil {
			t.Fatal(err)
		}
	}
	if err := pruneOwnedSlots(m, pidAlive(), callSlotOwner); err != nil {
		t.Fatal(err)
	}
	// Freed: the dead process's slot. Kept: a live owner, a slot being claimed (g set, tgid not yet), a free one.
	for i, want := range [][]byte{make([]byte, 64), slot(me, 0xc000002000), slot(0, 0xc000003000), slot(0, 0)} {
		var got []byte
		if err := m.Lookup(uint32(i), &got); err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("slot %d = %x, want %x", i, got, want)
		}
	}
}

func TestPrunePerCPUSlots(t *testing.T) {
	requireRoot(t)
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: uint32(binary.Size(redSlot{})), MaxEntries: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	copies := func(tgids ...uint32) []redSlot { // one per CPU; CPUs past the list are free
		v := make([]redSlot, ncpu)
		for c := range v {
			if c < len(tgids) {
				v[c].Key = httpserver.BpfRedKey{Tgid: tgids[c], Status: 200}
				v[c].Hist.Count = 1
			}
		}
		return v
	}
	all := func(tgid uint32) []uint32 {
		ts := make([]uint32, ncpu)
		for i := range ts {
			ts[i] = tgid
		}
		return ts
	}
	me := uint32(os.Getpid())
	in := [][]redSlot{copies(all(deadPID)...), copies(deadPID), copies(append([]uint32{me}, all(deadPID)[1:]...)...)}
	if ncpu == 1 { // index 1 would be all dead too: make it live
		in[1] = copies(me)
	}
	for i, v := range in {
		if err := m.Put(uint32(i), v); err != nil {
			t.Fatal(err)
		}
	}
	if err := prunePerCPUSlots(m, pidAlive(), redTgid); err != nil {
		t.Fatal(err)
	}
	// Only index 0 (every copy dead) is freed; a free or live copy keeps the slot.
	want := []uint64{0, in[1][0].Hist.Count, in[2][0].Hist.Count}
	for i := range in {
		var got []redSlot
		if err := m.Lookup(uint32(i), &got); err != nil {
			t.Fatal(err)
		}
		if got[0].Hist.Count != want[i] || (want[i] == 0) != (got[0].Key.Tgid == 0) {
			t.Errorf("index %d cpu 0 = %+v, want count %d", i, got[0].Key, want[i])
		}
	}
}

// TestEachSlotChunk: a per-CPU table read in chunks hands fn every index once, in order, with each CPU's copy, whether
// the last chunk ends at the last index or short of it, and no chunk holds more than slotChunkBytes of values.
func TestEachSlotChunk(t *testing.T) {
	requireRoot(t)
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	type value [256]uint64 // 2 KiB: a chunk is 16 indexes on 2 CPUs
	chunk := max(1, slotChunkBytes/(ncpu*binary.Size(value{})))
	for _, entries := range []int{2 * chunk, 2*chunk + 3} {
		m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: uint32(binary.Size(value{})),
			MaxEntries: uint32(entries)})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		for k := range entries {
			copies := make([]value, ncpu)
			for c := range copies {
				copies[c][0], copies[c][255] = uint64(k+1), uint64(c+1)
			}
			if err := m.Put(uint32(k), copies); err != nil {
				t.Fatal(err)
			}
		}
		var got []uint32
		err = eachSlotChunk(m, func(keys []uint32, vals []value, n int) error {
			if len(keys) > chunk || len(vals) != len(keys)*ncpu || n != ncpu {
				t.Errorf("%d entries: a chunk of %d keys, %d values, ncpu %d; want at most %d keys, ncpu %d",
					entries, len(keys), len(vals), n, chunk, ncpu)
				return nil
			}
			for i, k := range keys {
				for c, v := range vals[i*ncpu : (i+1)*ncpu] {
					if v[0] != uint64(k+1) || v[255] != uint64(c+1) {
						t.Errorf("%d entries: index %d cpu %d reads %d/%d", entries, k, c, v[0], v[255])
					}
				}
			}
			got = append(got, keys...)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		want := make([]uint32, entries)
		for k := range want {
			want[k] = uint32(k)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%d entries: read indexes %v, want %v", entries, got, want)
		}
	}
}

// TestScanFreesSlotsOfExitedProcesses: Scan sweeps the slot tables only when a target it saw is gone (reaped, its
// pid no longer exists), and every slotSweepInterval for a process started from a probed file that exited before any
// scan saw it; either way the slots the dead process held, in flight and series, are freed. A process whose exit the
// kernel reported (tcp.c's process_exit) has its slots freed by the next scan, before it is reaped. The other runs
// take the report first (a.forgetExited, as a scrape does) and write the slots after it, so only the scan frees them.
func TestScanFreesSlotsOfExitedProcesses(t *testing.T) {
	t.Parallel()
	bin := ownCopy(t, buildTarget(t, false))
	a := newAgent(t, bin)
	a.Scan() // a path target is probed as soon as the file exists
	bins := slices.Collect(maps.Values(a.bins))
	if len(bins) != 1 || bins[0].http == nil || bins[0].rt == nil {
		t.Fatalf("want the HTTP server and runtime probes on %s, have %v", bin, bins)
	}
	b := bins[0]
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	const slot = uint32(5) // no request is made, so no probe writes there
	take := func(t *testing.T, pid int) {
		t.Helper()
		if err := b.http.InflightSlots.Put(slot, httpserver.BpfReqSlot{Tgid: uint32(pid), StartNs: 1, G: 0xc000001000}); err != nil {
			t.Fatal(err)
		}
		series := make([]redSlot, ncpu)
		for c := range series {
			series[c].Key = httpserver.BpfRedKey{Tgid: uint32(pid), Status: 200}
			series[c].Hist.Count = 1
		}
		if err := b.http.RedSlots.Put(slot, series); err != nil {
			t.Fatal(err)
		}
		pauses := make([]stwHistSlot, ncpu)
		for c := range pauses {
			pauses[c] = stwHistSlot{Tgid: uint32(pid), Hist: hist.Hist{Count: 1}}
		}
		if err := b.rt.StwHistSlots.Put(slot, pauses); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(t *testing.T, taken bool, when string) {
		t.Helper()
		var v httpserver.BpfReqSlot
		var s []redSlot
		if err := b.http.InflightSlots.Lookup(slot, &v); err != nil {
			t.Fatal(err)
		}
		if err := b.http.RedSlots.Lookup(slot, &s); err != nil {
			t.Fatal(err)
		}
		var p []stwHistSlot
		if err := b.rt.StwHistSlots.Lookup(slot, &p); err != nil {
			t.Fatal(err)
		}
		if in, se, pa := v.G != 0, s[0].Key.Tgid != 0, p[0].Tgid != 0; in != taken || se != taken || pa != taken {
			t.Fatalf("%s: in-flight slot taken %v, series slot taken %v, pause slot taken %v, want %v", when, in, se, pa, taken)
		}
	}

	t.Run("target seen by a scan", func(t *testing.T) {
		tg := startTarget(t, bin)
		a.Scan()
		take(t, tg.pid)
		a.Scan()
		expect(t, true, "target alive")
		tg.stop()
		a.Scan()
		expect(t, false, "the scan after the target exited")
	})

	zombie := func(t *testing.T, tg *target) {
		t.Helper()
		if err := tg.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		// Not reaped: the test is its parent and has not waited. The leader can be a zombie while other threads still
		// exit, and the last of them runs the probes' process_exit, which would free slots taken after this returned:
		// so also wait for the leader to be the only thread left (the others leave the list after that tracepoint).
		eventually(t, func() (bool, string) {
			st, err := os.ReadFile("/proc/" + strconv.Itoa(tg.pid) + "/stat")
			fields := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+1:]))
			tasks, terr := os.ReadDir("/proc/" + strconv.Itoa(tg.pid) + "/task")
			return err == nil && terr == nil && len(fields) > 0 && fields[0] == "Z" && len(tasks) == 1,
				fmt.Sprintf("pid %d not a zombie alone: %q, %d threads, %v, %v", tg.pid, st, len(tasks), err, terr)
		})
	}
	forgetExited := func() {
		a.mu.Lock()
		a.forgetExited()
		a.mu.Unlock()
	}

	t.Run("exit reported by the kernel", func(t *testing.T) {
		tg := startTarget(t, bin)
		a.Scan()
		take(t, tg.pid)
		zombie(t, tg)
		a.Scan()
		expect(t, false, "the scan after the target exited, not reaped yet")
	})

	t.Run("target reaped after a scan saw it a zombie", func(t *testing.T) {
		tg := startTarget(t, bin)
		a.Scan()
		zombie(t, tg)
		forgetExited()
		take(t, tg.pid)
		a.Scan() // the target leaves scanProcs (a zombie has no executable link), but its pid still exists
		expect(t, true, "the scan that saw the target a zombie")
		tg.stop() // reaps it
		a.Scan()
		expect(t, false, "the scan after the zombie was reaped")
	})

	t.Run("process no scan saw", func(t *testing.T) {
		tg := startTarget(t, bin)
		tg.stop()
		forgetExited()
		take(t, tg.pid)
		a.Scan()
		expect(t, true, "a scan before slotSweepInterval with no target exited")
		a.mu.Lock()
		a.swept = time.Now().Add(-slotSweepInterval)
		a.mu.Unlock()
		a.Scan()
		expect(t, false, "the scan after slotSweepInterval")
	})
}
