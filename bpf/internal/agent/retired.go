package agent

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
)

// retiredSeries is Agent.retired: what detached executables' maps counted for processes still running, and when
// each of those processes started. A pid says which process only together with its start time: keyed by pid alone,
// a process that exec'd into a file the agent does not probe exited unreported (the kernel reports the exits of the
// probed executables' processes only), and one started on its pid before the next scan found it gone inherited its
// counts for as long as it ran (found by review; TestRetiredCountsStayWithTheirProcess).
type retiredSeries struct {
	Snapshot
	start map[int]uint64 // pid -> start time, in clock ticks after boot (/proc/<pid>/stat field 22)
}

func newRetiredSeries() retiredSeries {
	return retiredSeries{Snapshot: newSnapshot(), start: map[int]uint64{}}
}

// add keeps s's series of the processes running now, with their start times.
func (r *retiredSeries) add(s *Snapshot) {
	r.prune(func(int) bool { return true }) // a pid another process took since is not the one s counted
	s.prune(func(pid int) bool {
		if _, ok := r.start[pid]; ok {
			return true
		}
		t, err := procStart(pid)
		if err != nil {
			return false // gone already
		}
		r.start[pid] = t
		return true
	})
	r.Snapshot.add(s)
}

// prune deletes the series of the processes alive says are gone, and of the pids another process has taken since.
func (r *retiredSeries) prune(alive func(pid int) bool) {
	same := map[int]bool{}
	for pid, t := range r.start {
		now, err := procStart(pid)
		same[pid] = err == nil && now == t && alive(pid)
		if !same[pid] {
			delete(r.start, pid)
		}
	}
	r.Snapshot.prune(func(pid int) bool { return same[pid] })
}

// procStart is the start time of process pid, in clock ticks after boot: field 22 of /proc/<pid>/stat, which with
// the pid names one process for the machine's uptime.
func procStart(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseStatStart(b)
}

// parseStatStart reads field 22 of a /proc/<pid>/stat line. The command (field 2) is in parentheses and may hold
// spaces and parentheses itself, so the fields are counted from the last ')'.
func parseStatStart(b []byte) (uint64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("stat: no command field")
	}
	f := bytes.Fields(b[i+1:]) // fields 3 on
	if len(f) < 20 {
		return 0, fmt.Errorf("stat: %d fields after the command, want at least 20", len(f))
	}
	return strconv.ParseUint(string(f[19]), 10, 64)
}
