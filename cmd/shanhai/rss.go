package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// RSS reads a process's resident set size in bytes from /proc (Linux only;
// elsewhere it reports an error and the numbers are left out).
func RSS(pid int) (int64, error) { return statusKB(pid, "VmRSS:") }

// AnonRSS is the anonymous part of RSS (heap, stacks): what the process
// itself allocated. The rest of RSS is mostly the executable's mapped code
// and tables, page cache the kernel can drop and share.
func AnonRSS(pid int) (int64, error) { return statusKB(pid, "RssAnon:") }

func statusKB(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("rss of %d: %w", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("rss of %d: %w", pid, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("rss of %d: no %s line", pid, field)
}

// Memory is the resident memory of this process (embedded servers, and the
// parts it hosts) and of each child process (-processes), and their sum.
type Memory struct {
	Self     int64
	Children map[string]int64 // parts running as child processes
	Total    int64
	Anon     int64 // anonymous memory (heaps, stacks) of all of them
	SelfAnon int64
}

// Measure sums the RSS of this process and of the parts' child processes;
// a hosted part is counted in this process's.
func (p *Platform) Measure() (Memory, error) {
	self := os.Getpid()
	var m Memory
	var err error
	if m.Self, err = RSS(self); err != nil {
		return Memory{}, err
	}
	if m.SelfAnon, err = AnonRSS(self); err != nil {
		return Memory{}, err
	}
	m.Total, m.Anon, m.Children = m.Self, m.SelfAnon, map[string]int64{}
	for name, pid := range p.Pids() {
		if pid == self || pid == 0 {
			continue
		}
		r, err := RSS(pid)
		if err != nil {
			return Memory{}, err
		}
		a, err := AnonRSS(pid)
		if err != nil {
			return Memory{}, err
		}
		m.Children[name] = r
		m.Total += r
		m.Anon += a
	}
	return m, nil
}

func (m Memory) String() string {
	if len(m.Children) == 0 {
		return fmt.Sprintf("%.0f MB RSS, one process (the five parts and the embedded servers, if any); %.0f MB of it anonymous (heaps, stacks), the rest mapped executable pages",
			mb(m.Total), mb(m.Anon))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%.0f MB total (shanhai + embedded servers %.0f MB", mb(m.Total), mb(m.Self))
	for _, name := range Names {
		if r, ok := m.Children[name]; ok {
			fmt.Fprintf(&b, ", %s %.0f", name, mb(r))
		}
	}
	fmt.Fprintf(&b, "); %.0f MB of it anonymous (heaps, stacks), the rest mapped executable pages", mb(m.Anon))
	return b.String()
}

func mb(n int64) float64 { return float64(n) / (1 << 20) }
