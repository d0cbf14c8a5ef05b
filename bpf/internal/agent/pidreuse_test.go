package agent

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestReusedPIDStartsAtZero: a process that gets the pid of a target that exited since the last scan counts from
// zero. The maps are keyed by pid, and a scan deletes the entries of pids that no longer exist: the new process's pid
// exists, so it used to inherit the exited one's requests, pauses, calls and connections for as long as it ran. The
// fallback run shrinks the slot tables to one entry (slotEntries), so most series take the hash maps.
func TestReusedPIDStartsAtZero(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		t.Run(fmt.Sprintf("fallback=%v", fallback), func(t *testing.T) {
			cfg := Config{}
			if fallback {
				cfg.slotEntries = 1
			}
			testReusedPID(t, cfg)
		})
	}
}

func testReusedPID(t *testing.T, cfg Config) {
	bin := buildTarget(t, false)
	a := newAgentWith(t, cfg, bin)
	a.Scan()
	old := startTarget(t, bin)
	a.Scan()
	c := &http.Client{}
	old.get(t, c, "GET", "/gc?n=2")
	old.get(t, c, "GET", "/work")
	eventually(t, func() (bool, string) {
		s, err := a.Snapshot()
		if err != nil {
			return false, err.Error()
		}
		return s.ServerTotal(old.pid) >= 2 && s.STW[old.pid].Count >= 4 && s.TCP[old.pid].Passive >= 1,
			"the old process's requests, pauses and accepted connections are not all counted yet"
	})
	pid := old.pid
	// The old process's calls: the target's /call makes an HTTP client request, so the call probe has a series.
	old.get(t, c, "GET", "/call?url="+old.base+"/work")
	eventually(t, func() (bool, string) {
		s, err := a.Snapshot()
		if err != nil {
			return false, err.Error()
		}
		return callsOf(s, pid) > 0, "the old process's client call is not counted yet"
	})
	c.CloseIdleConnections()
	old.stop() // no scan until its pid is taken again
	// Freed by the kernel as the process exited, before the agent reads anything (wait returns after the exit
	// tracepoint ran): the agent frees a per-CPU slot only whole, so a copy beside a free one used to stay.
	if n := slotCopies(t, a, pid); len(n) > 0 {
		t.Errorf("slot copies still naming pid %d after it exited: %v", pid, n)
	}
	tg := startTargetAt(t, bin, pid)

	a.Scan()
	s, err := a.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if n := s.ServerTotal(pid); n != 0 {
		t.Errorf("pid %d, a new process that served no request, has %d requests", pid, n)
	}
	if n := callsOf(s, pid); n != 0 {
		t.Errorf("pid %d, a new process that made no call, has %d calls", pid, n)
	}
	if n := s.TCP[pid]; n != (TCPStats{}) {
		t.Errorf("pid %d, a new process that accepted no connection, has TCP counters %+v", pid, n)
	}
	pauses, err := strconv.ParseUint(strings.TrimSpace(tg.get(t, c, "GET", "/pauses")), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.STW[pid].Count; n > pauses {
		t.Errorf("pid %d has %d pauses, more than its runtime's %d", pid, n, pauses)
	}
}

// startTargetAt starts bin with pid, which must be free: ns_last_pid (writable by root in the test's pid namespace)
// is set just below it. Another process on the machine may take it first, so it is tried a few times.
func startTargetAt(t *testing.T, bin string, pid int) *target {
	t.Helper()
	for range 20 {
		if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(pid-1)), 0); err != nil {
			t.Fatalf("force pid %d: %v", pid, err)
		}
		tg := startTarget(t, bin)
		if tg.pid == pid {
			return tg
		}
		tg.stop()
	}
	t.Fatalf("no process started with pid %d in 20 tries", pid)
	return nil
}

func callsOf(s Snapshot, pid int) (n uint64) {
	for k, h := range s.Calls {
		if k.PID == pid {
			n += h.Count
		}
	}
	return n
}

// slotCopies counts the per-CPU slot copies that name pid in each of the agent's slot tables (by kind).
func slotCopies(t *testing.T, a *Agent, pid int) map[string]int {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	n := map[string]int{}
	count := func(kind string, err error) {
		if err != nil {
			t.Fatalf("read %s slots: %v", kind, err)
		}
	}
	for _, b := range a.bins {
		if b.http != nil {
			count("http", eachSlotChunk(b.http.RedSlots, func(_ []uint32, v []redSlot, _ int) error {
				for i := range v {
					if int(v[i].Key.Tgid) == pid {
						n["http"]++
					}
				}
				return nil
			}))
		}
		if b.rt != nil {
			count("pause", eachSlotChunk(b.rt.StwHistSlots, func(_ []uint32, v []stwHistSlot, _ int) error {
				for i := range v {
					if int(v[i].Tgid) == pid {
						n["pause"]++
					}
				}
				return nil
			}))
		}
		for _, m := range b.callAggSlots {
			count("call", eachSlotChunk(m, func(_ []uint32, v []callAggSlot, _ int) error {
				for i := range v {
					if int(v[i].Key.Tgid) == pid {
						n["call"]++
					}
				}
				return nil
			}))
		}
	}
	return n
}
