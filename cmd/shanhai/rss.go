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

// Memory is the resident memory of this process (the embedded servers, unless
// -native, and the parts it hosts, unless -processes) and of each child
// process (-processes), and their sum.
type Memory struct {
	Self     int64
	Children map[string]int64 // parts running as child processes
	Total    int64
	Anon     int64 // anonymous memory (heaps, stacks) of all of them
	SelfAnon int64
	// Embedded says whether the servers run in this process. Under -native they are the scripts/deps.sh servers,
	// other processes, and the figures leave them out: a reader comparing runs must be told which it is.
	Embedded bool
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
	m.Embedded = p.Infra != nil
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
	const anon = "; %.0f MB of it anonymous (heaps, stacks), the rest mapped executable pages"
	// Under -native the servers are other processes: the figures leave them out, and say so.
	notCounted := ", not counting the scripts/deps.sh servers"
	if m.Embedded {
		notCounted = ""
	}
	if len(m.Children) == 0 {
		held := "the five parts"
		if m.Embedded {
			held += " and the embedded servers"
		}
		return fmt.Sprintf("%.0f MB RSS, one process (%s)%s"+anon, mb(m.Total), held, notCounted, mb(m.Anon))
	}
	// With -processes this process hosts no part: under -native nothing but what starts and watches them.
	self := fmt.Sprintf("shanhai with the embedded servers %.0f MB", mb(m.Self))
	if !m.Embedded {
		self = fmt.Sprintf("shanhai %.0f MB: it only starts and watches the parts", mb(m.Self))
	}
	var children []string
	for _, name := range Names {
		if r, ok := m.Children[name]; ok {
			children = append(children, fmt.Sprintf("%s %.0f", name, mb(r)))
		}
	}
	sep := ", "
	if !m.Embedded {
		sep = "; "
	}
	return fmt.Sprintf("%.0f MB total (%s%s%s)%s"+anon, mb(m.Total), self, sep, strings.Join(children, ", "), notCounted, mb(m.Anon))
}

func mb(n int64) float64 { return float64(n) / (1 << 20) }
