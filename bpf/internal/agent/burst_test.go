package agent

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// TestBurstOfShortLivedTargets: 200 processes of a target named by name start, pause for two forced GCs and are
// killed, ten at a time, while the agent scans every 10 ms (as BPF_SCAN_INTERVAL=10ms would). Processes exit during
// the first attach, between a scan's /proc read and its attach, and between two scans. Afterwards the agent holds
// nothing for any of them: the executable is probed (not recorded as failed), no process, exit or failure is
// remembered, no hash map holds an entry and no slot copy names one of their pids, and the agent's Go heap after a
// second burst is within 4 MiB of what it was after the first (logged).
func TestBurstOfShortLivedTargets(t *testing.T) {
	requireRoot(t)
	p := filepath.Join(t.TempDir(), "burstsvc")
	copyInPlace(t, build(t, "testdata/execer", "execer", false), p)
	a := newAgent(t, filepath.Base(p))

	stop := make(chan struct{})
	scanning := make(chan struct{})
	go func() {
		defer close(scanning)
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
				a.Scan()
			}
		}
	}()
	pids := map[int]bool{}
	var heap [2]uint64
	for round := range heap {
		start := time.Now()
		for _, pid := range burst(t, p, 200, 10) {
			pids[pid] = true
		}
		eventually(t, func() (bool, string) {
			a.mu.Lock()
			defer a.mu.Unlock()
			return len(a.procs) == 0 && len(a.exited) == 0,
				fmt.Sprintf("after the burst: %d processes and %d exits still held", len(a.procs), len(a.exited))
		})
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		heap[round] = ms.HeapAlloc
		t.Logf("burst %d: 200 processes in %v", round+1, time.Since(start).Round(time.Millisecond))
	}
	close(stop)
	<-scanning
	a.Scan()
	t.Logf("%d processes; the agent's heap after the first burst %d KiB, after the second %d KiB", len(pids), heap[0]>>10, heap[1]>>10)
	if heap[1] > heap[0]+4<<20 {
		t.Errorf("heap grew from %d KiB to %d KiB with a second burst", heap[0]>>10, heap[1]>>10)
	}

	// A pid the machine gave to another process since is left out: the TCP counters are every process's.
	alive := pidAlive()
	for pid := range pids {
		if alive(pid) {
			delete(pids, pid)
		}
	}
	func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if len(a.failed) != 0 || len(a.bins) != 1 {
			t.Errorf("failed = %v, %d executables probed; want the one probed", a.failed, len(a.bins))
		}
		maps := map[string]*ebpf.Map{"tcp": a.sys.tcp.Tcp}
		for _, b := range a.bins { // execer serves no HTTP: the runtime probe's maps
			maps["stw"], maps["stw_begin"], maps["goroutines"] = b.rt.Stw, b.rt.StwBegin, b.rt.Goroutines
		}
		for name, m := range maps {
			if n := entriesOf(t, m, pids); n > 0 {
				t.Errorf("map %s: %d entries of exited burst processes", name, n)
			}
		}
	}()
	for pid := range pids {
		if n := slotCopies(t, a, pid); len(n) > 0 {
			t.Errorf("slot copies naming exited pid %d: %v", pid, n)
		}
	}
}

// burst runs n processes of bin ("execer 2": two forced GCs, then a line), at most par at once, each killed once it
// printed its line, and returns their pids.
func burst(t *testing.T, bin string, n, par int) []int {
	t.Helper()
	var mu sync.Mutex
	var pids []int
	var errs []string
	var wg sync.WaitGroup
	sem := make(chan struct{}, par)
	for range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			cmd := exec.Command(bin, "2")
			out, err := cmd.StdoutPipe()
			if err == nil {
				err = cmd.Start()
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err.Error())
				mu.Unlock()
				return
			}
			line, err := bufio.NewReader(out).ReadString('\n')
			cmd.Process.Kill()
			cmd.Wait()
			mu.Lock()
			defer mu.Unlock()
			pids = append(pids, cmd.Process.Pid)
			if _, perr := strconv.Atoi(strings.TrimSpace(line)); err != nil || perr != nil {
				errs = append(errs, fmt.Sprintf("pid %d printed %q: %v", cmd.Process.Pid, line, err))
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("burst: %d of %d failed: %s", len(errs), n, errs[0])
	}
	return pids
}

// entriesOf counts the entries of a pid-keyed map (the pid in the key's first 4 bytes) whose pid is in pids.
func entriesOf(t *testing.T, m *ebpf.Map, pids map[int]bool) int {
	t.Helper()
	n := 0
	var cur any
	for {
		next := make([]byte, m.KeySize())
		if err := m.NextKey(cur, next); err != nil {
			return n
		}
		if pids[int(binary.LittleEndian.Uint32(next))] {
			n++
		}
		cur = next
	}
}
