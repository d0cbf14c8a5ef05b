package agent

import (
	"bufio"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestScrapesDuringExitsCountEachProcessOnce: the runtime probe's process_exit deletes an exiting process's entries
// in stw and goroutines while a scrape may be walking those hash maps. When the key a walk stands on is deleted, the
// kernel's next-key answers the map's first key again and the walk starts over, so every process before it came
// twice; the agent added both (pauses and goroutine counts are added, a process that execs another target being in
// two executables' maps), and that scrape reported those processes' counts doubled, the next one right again: a
// counter that went back. 20 idle processes whose pauses are known sit in stw (slot tables of one entry) while 300
// short-lived processes of the same executable exit and scrapes run back to back; every scrape must give each idle
// process exactly its pauses.
func TestScrapesDuringExitsCountEachProcessOnce(t *testing.T) {
	requireRoot(t)
	p := filepath.Join(t.TempDir(), "restartsvc")
	copyInPlace(t, build(t, "testdata/execer", "execer", false), p)
	a := newAgentWith(t, Config{slotEntries: 1, goroutinesByUprobe: true}, p)
	a.Scan()

	pauses := map[int]uint64{}
	for range 20 {
		cmd := exec.Command(p, "2")
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.ParseUint(strings.TrimSpace(line), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		pauses[cmd.Process.Pid] = n
	}
	a.Scan()
	goroutines := map[int]uint64{}
	eventually(t, func() (bool, string) {
		s, err := a.Snapshot()
		if err != nil {
			return false, err.Error()
		}
		for pid, want := range pauses {
			if got := s.STW[pid].Count; got != want {
				return false, fmt.Sprintf("pid %d: agent %d pauses, runtime %d", pid, got, want)
			}
			goroutines[pid] = s.Goroutines[pid]
		}
		return true, ""
	})

	stop, done := make(chan struct{}), make(chan struct{})
	var wrong []string
	scrapes := 0
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			s, err := a.Snapshot()
			if err != nil {
				wrong = append(wrong, err.Error())
				continue
			}
			scrapes++
			for pid, want := range pauses {
				if got := s.STW[pid].Count; got != want {
					wrong = append(wrong, fmt.Sprintf("scrape %d: pid %d %d pauses, want %d", scrapes, pid, got, want))
				}
				// An idle process starts no goroutine; its count can only stay.
				if got := s.Goroutines[pid]; got != goroutines[pid] {
					wrong = append(wrong, fmt.Sprintf("scrape %d: pid %d %d goroutines, was %d", scrapes, pid, got, goroutines[pid]))
				}
			}
		}
	}()
	for range 3 {
		burst(t, p, 100, 10)
	}
	close(stop)
	<-done
	t.Logf("%d scrapes during the exits", scrapes)
	if len(wrong) > 0 {
		t.Errorf("%d wrong counts, first %q", len(wrong), wrong[:min(len(wrong), 6)])
	}
}
