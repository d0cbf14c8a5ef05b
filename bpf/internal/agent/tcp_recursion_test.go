package agent

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/shanhai-dev/shanhai/bpf/probe/tcp"
)

// TestTCPCountsWhileOtherProgramsRun: connections opened and closed while other BPF programs keep running on the same
// CPUs (the agent's HTTP server uprobes, the scrape's map syscalls, which hold the same per-CPU guard as a kprobe
// program) are all counted, and the TCP programs are never skipped. A tracepoint program of the perf-event kind is
// skipped by the kernel, counting a recursion miss, whenever any kprobe, uprobe or tracepoint program or a BPF map
// syscall holds the CPU's bpf_prog_active, e.g. when a TCP state change in softirq interrupts one of them; the
// dialling process's open, or its close, was then never counted.
func TestTCPCountsWhileOtherProgramsRun(t *testing.T) {
	requireRoot(t)
	bin := ownCopy(t, buildTarget(t, false))
	a := newAgent(t, bin)
	const targets, rounds, dials = 4, 10, 100
	tgs := startTargets(t, bin, targets)
	a.Scan()
	ln := dialSink(t)
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: targets}}
	base := map[int]TCPStats{}
	for _, tg := range tgs {
		tg.get(t, c, "GET", "/stats") // the keep-alive connection, opened before the baseline
		base[tg.pid] = tcpOf(t, a, tg.pid)
	}

	// The other programs: HTTP requests to every target (two uprobe hits each) and scrapes, until the dials end.
	done := make(chan struct{})
	var busy sync.WaitGroup
	for _, tg := range tgs {
		busy.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				if resp, err := c.Get(tg.base + "/work"); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		})
	}
	for range 2 {
		busy.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				a.Snapshot()
			}
		})
	}
	// Bulk loopback traffic keeps the CPUs' receive softirqs busy, so that some run on interrupts' exits, over
	// whatever the CPU was doing.
	bulk := stream(t, done, &busy)
	defer bulk.Close()
	dial := "/dial?n=" + strconv.Itoa(dials) + "&addr=" + url.QueryEscape(ln.Addr().String())
	errs := make([]error, len(tgs))
	var wg sync.WaitGroup
	for i, tg := range tgs {
		wg.Go(func() {
			for range rounds {
				resp, err := c.Get(tg.base + dial)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					errs[i] = fmt.Errorf("pid %d: GET /dial: %w", tg.pid, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(done)
	busy.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}

	// Logged however the counts came out. The state-change programs are two, each skipped when a change interrupts it
	// (a miss), the other then handling that change: their misses are expected, the counts above say whether a
	// change was lost. The retransmit program is one and must not miss.
	defer func() {
		for name, p := range map[string]*ebpf.Program{"set_state": a.sys.tcp.SetState, "set_state_spare": a.sys.tcp.SetStateSpare,
			"retransmit": a.sys.tcp.Retransmit} {
			st, err := p.Stats()
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			t.Logf("%s: %d runs, %d recursion misses", name, st.RunCount, st.RecursionMisses)
			if name == "retransmit" && st.RecursionMisses != 0 {
				t.Errorf("%s was skipped %d times for recursion", name, st.RecursionMisses)
			}
		}
	}()
	// Every connection the targets accepted closes too, the keep-alive ones opened before the baseline among them.
	// Closed on every poll: net/http puts a connection back in the idle pool from its read loop after the body's
	// Close has returned, so one closing call can miss the last request's connection and leave it open for good
	// (closes 1-2 short in about 1 run in 17 under load). Up to 30 s, not 10: in a CI run whose parallel bpf tests
	// loaded both cores, two targets were still 5 and 6 closes short at 10 s; a close that was lost never comes, so
	// the wait only lets a late one count, and the drop count in the message tells the two apart.
	waitStart := time.Now()
	eventuallyWithin(t, 30*time.Second, func() (bool, string) {
		c.CloseIdleConnections()
		var differ []string
		for _, tg := range tgs {
			got := sub(tcpOf(t, a, tg.pid), base[tg.pid])
			if got.Active != rounds*dials || got.Failed != 0 || got.Closed != got.Active+got.Passive+1 {
				d := fmt.Sprintf("pid %d: %+v", tg.pid, got)
				if time.Since(waitStart) > 29*time.Second {
					d += ", its HTTP port's sockets by state: " + socketStates(strings.TrimPrefix(tg.base, "http://")) +
						", owners of its sockets left in the probe: " + ownersLeft(a, tg.pid)
				}
				differ = append(differ, d)
			}
		}
		dropped, err := a.TCPSeriesDropped()
		untracked, uerr := a.TCPConnectionsUntracked()
		msg := fmt.Sprintf("want %d active, no failure and every open and the baseline's keep-alive closed for each of %d targets; %d differ: %v (events dropped: %d, %v; connections untracked: %d, %v)",
			rounds*dials, targets, len(differ), differ, dropped, err, untracked, uerr)
		if len(differ) > 0 && time.Since(waitStart) > 29*time.Second {
			// The last poll's message says where the connections not counted closed are: still open (which state), or
			// gone without a counted close.
			msg += "; sockets to or from the dial sink by state: " + socketStates(ln.Addr().String())
		}
		return len(differ) == 0, msg
	})
}

// stream sends bytes over a loopback connection as fast as the kernel takes them until done is closed.
func stream(t *testing.T, done chan struct{}, wg *sync.WaitGroup) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(io.Discard, c)
	})
	wg.Go(func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 1400)
		for {
			select {
			case <-done:
				return
			default:
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
	return ln
}

// socketStates counts the machine's TCP sockets from or to addr by state, as ss reports them (orphans included).
func socketStates(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err.Error()
	}
	out, err := exec.Command("ss", "-tanH", "( sport = :"+port+" or dport = :"+port+" )").Output()
	if err != nil {
		return "ss: " + err.Error()
	}
	states := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			states[f[0]]++
		}
	}
	return fmt.Sprint(states)
}

// ownersLeft counts the TCP probe's socket owners left for pid by established state. One left with every socket of pid
// gone is a close the probe missed; the close of one overwritten for a new socket at its address is counted then
// (tcp.c's own), so none left and closes short means the probe never had the owner or lost it otherwise.
func ownersLeft(a *Agent, pid int) string {
	left := map[uint16]int{}
	var sk uint64
	var o tcp.BpfOwner
	it := a.sys.tcp.Owners.Iterate()
	for it.Next(&sk, &o) {
		if o.Tgid == uint32(pid) {
			left[o.Established]++
		}
	}
	if err := it.Err(); err != nil {
		return err.Error()
	}
	return fmt.Sprint(left)
}
