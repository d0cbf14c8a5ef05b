package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
)

// PageoutConfig is the one variable of the executable page-out that
// RunService reads beside each service's own configuration.
//
// Why: a service's idle RSS is mostly the executable's clean file pages
// (services/order/README.md, "what the idle RSS is": ~32 of ~39 MiB),
// faulted in by the kernel's 64 KiB fault-around windows while package init
// and start-up run code of ~750 packages, most of which never runs again.
// Once the service is ready (its first 200 from /readyz is out), asking the
// kernel to reclaim those pages (madvise MADV_PAGEOUT, after MADV_RANDOM so
// that a refault reads one page, not the disk's read-ahead window) takes
// them out of the process and out of the page cache; the request path reads
// back what it uses. Measured (services/order/README.md): idle RSS 35–38 →
// 12–14 MiB, order's binary in the page cache 41 → 26 MiB, RSS after a short
// load 32 MiB against 48, and the first one or two requests after the
// page-out 25–100 ms slower, reading their code page by page.
// Only clean file pages are reclaimed: the kernel skips a page another
// process also maps (a replica sharing the image's page cache), and writable
// and anonymous mappings are never named. The kernel pages out file pages
// only for a process that owns the executable or may write it (Linux's guard
// against a cache side channel): a non-root process running a root-owned
// binary releases nothing, which the debug line reports, so deploy/Dockerfile
// gives each image's binary to the user it runs as (its root filesystem
// read-only, so the owner cannot change it). Off Linux it does nothing.
type PageoutConfig struct {
	Enabled bool `env:"PAGEOUT_AFTER_READY" envDefault:"true" desc:"once ready, ask the kernel to reclaim the executable's clean start-up pages (MADV_PAGEOUT; Linux, and only where the process owns or may write its executable); false keeps them"`
}

// pageoutKey marks a context whose server releases the executable's pages
// after its first ready answer (RunService sets it, ServeStarting reads it).
type pageoutKey struct{}

// withPageout marks ctx so that the server run under it pages its
// executable out once ready, logging to log. A hosted server (cmd/shanhai:
// several servers, one executable) is left unmarked: one part being ready
// says nothing about the code the others are still starting with.
func withPageout(ctx context.Context, log *slog.Logger) context.Context {
	if hostHandlesSignals(ctx) {
		return ctx
	}
	return context.WithValue(ctx, pageoutKey{}, log)
}

// afterReady is onReady followed by the page-out when ctx asks for it. The
// page-out runs in its own goroutine: the ready handler that calls OnReady
// must not wait for it (it takes a few ms).
func afterReady(ctx context.Context, onReady func()) func() {
	log, _ := ctx.Value(pageoutKey{}).(*slog.Logger)
	if log == nil {
		return onReady
	}
	return func() {
		if onReady != nil {
			onReady()
		}
		go func() {
			r, err := PageOutExecutable()
			logPageout(log, r, err)
		}()
	}
}

// logPageout logs one page-out's outcome at its level: a noPageout is a
// warning with its reason, any other failure an error, a success debug.
// Tests of those levels call it directly: the page-out itself runs in a
// goroutine nothing waits for, so a stand-in swapped into a package
// variable raced with the one a previous test's server left running.
func logPageout(log *slog.Logger, r Pageout, err error) {
	if errors.As(err, new(noPageout)) {
		log.Warn("executable page-out not available; the pages stay resident", "reason", noPageoutReason, "error", err.Error())
		return
	}
	if err != nil {
		log.Error("executable page-out failed; the pages stay resident", "error", err.Error())
		return
	}
	log.Debug("executable pages released", r.LogArgs()...)
}

// noPageout is a page-out failure in which every refusal was EINVAL to
// MADV_PAGEOUT: the kernel predates it (Linux 5.4) or will not page out
// this memory (locked: mlockall). That is the environment the service runs
// in, not a fault, and the same on every start: afterReady logs it as a
// warning with noPageoutReason, not as an error.
type noPageout struct{ err error }

func (e noPageout) Error() string { return e.err.Error() }
func (e noPageout) Unwrap() error { return e.err }

// noPageoutReason is what the warning says a noPageout means.
const noPageoutReason = "the kernel refused MADV_PAGEOUT (EINVAL): it has none before Linux 5.4, nor for locked memory"

// Pageout is what one PageOutExecutable did.
type Pageout struct {
	Mappings    int   // read-only mappings of the executable asked about
	MappedBytes int64 // their size
	// FileRSSBefore and FileRSSAfter are the process's RssFile
	// (/proc/self/status) around the call: what it released is the
	// difference (shared libraries' pages are in it too, but untouched).
	FileRSSBefore, FileRSSAfter int64
	// Took is the madvise calls alone, not reading the maps and status.
	Took string
	// Refused says why nothing could be released, when the kernel would
	// refuse (the executable is neither this process's nor writable by it);
	// empty otherwise.
	Refused string
}

// Released is the bytes of file RSS the call gave back.
func (p Pageout) Released() int64 { return max(0, p.FileRSSBefore-p.FileRSSAfter) }

// LogArgs are p as slog key-value pairs.
func (p Pageout) LogArgs() []any {
	args := []any{"mappings", p.Mappings, "mapped_bytes", p.MappedBytes, "released_bytes", p.Released(),
		"released_pages", p.Released() / pageSize, "file_rss_before", p.FileRSSBefore, "file_rss_after", p.FileRSSAfter,
		"duration", p.Took}
	if p.Refused != "" {
		args = append(args, "refused", p.Refused)
	}
	return args
}

// pageSize is what Linux's RssFile counts in; the pages figure is for the
// log only.
const pageSize = 4096

// mapping is one line of /proc/<pid>/maps.
type mapping struct {
	start, end uint64
	perms      string
	path       string // "" for an anonymous mapping; " (deleted)" removed
	deleted    bool
}

// deletedSuffix is what the kernel appends to the path of a mapped file that
// has been unlinked (replaced by a rename, or removed).
const deletedSuffix = " (deleted)"

// parseMaps reads /proc/<pid>/maps lines: "start-end perms offset dev inode
// path", where the path is everything after the inode and its padding, so it
// may hold spaces, may end in " (deleted)", and has a newline written as
// \012. Lines that do not have that shape are skipped (the format is the
// kernel's and stable; a line we cannot read is one we do not page out).
func parseMaps(r io.Reader) ([]mapping, error) {
	var out []mapping
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		if m, ok := parseMapsLine(sc.Text()); ok {
			out = append(out, m)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read maps: %w", err)
	}
	return out, nil
}

func parseMapsLine(line string) (mapping, bool) {
	var fields [5]string
	rest := line
	for i := range fields {
		rest = strings.TrimLeft(rest, " ")
		end := strings.IndexByte(rest, ' ')
		if end < 0 {
			if i < len(fields)-1 || rest == "" {
				return mapping{}, false
			}
			end = len(rest)
		}
		fields[i], rest = rest[:end], rest[end:]
	}
	lo, hi, ok := strings.Cut(fields[0], "-")
	if !ok {
		return mapping{}, false
	}
	start, err1 := strconv.ParseUint(lo, 16, 64)
	end, err2 := strconv.ParseUint(hi, 16, 64)
	if err1 != nil || err2 != nil || end <= start || len(fields[1]) != 4 {
		return mapping{}, false
	}
	m := mapping{start: start, end: end, perms: fields[1]}
	// One separator space, then padding to align the column: a path that
	// itself begins with spaces is indistinguishable from it; none of ours
	// does (os.Executable is absolute).
	m.path = strings.TrimLeft(rest, " ")
	if s, ok := strings.CutSuffix(m.path, deletedSuffix); ok {
		m.path, m.deleted = s, true
	}
	m.path = strings.ReplaceAll(m.path, `\012`, "\n")
	return m, true
}

// executableReadOnly picks the mappings MADV_PAGEOUT may be asked about: the
// executable's own (path equal to exe, deleted or not), readable, not
// writable and private. A writable mapping (.data) holds the process's own
// copies; anonymous and other files' mappings are not ours to drop.
//
// The kernel escapes a newline in the path as \012 but not a backslash, so a
// name holding a literal \012 is read back with a newline there: exe is
// compared as parseMapsLine would read it, or such an executable would find
// none of its own mappings.
func executableReadOnly(maps []mapping, exe string) []mapping {
	exe = strings.ReplaceAll(exe, `\012`, "\n")
	var out []mapping
	for _, m := range maps {
		if m.path != exe || (m.perms != "r-xp" && m.perms != "r--p") {
			continue
		}
		out = append(out, m)
	}
	return out
}

// parseRSSFile reads RssFile from /proc/<pid>/status, in bytes.
func parseRSSFile(status string) (int64, error) {
	for line := range strings.Lines(status) {
		v, ok := strings.CutPrefix(line, "RssFile:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("RssFile %q: %w", strings.TrimSpace(v), err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("no RssFile line in status")
}
