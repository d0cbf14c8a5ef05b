package server

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// MADV_RANDOM and MADV_PAGEOUT (Linux 5.4), which package syscall lacks.
const (
	madvNormal  = 0
	madvRandom  = 1
	madvPageout = 21
)

// PageOutExecutable asks the kernel to reclaim the clean pages of this
// process's executable, over its read-only private mappings (code and
// read-only data; never a writable or anonymous mapping). Pages it still
// needs are faulted back in on their next use, from the file, which the
// mapping keeps open even when the file has been replaced or removed since.
// PageoutConfig says why and when.
//
// The mappings are first marked MADV_RANDOM, which turns off the kernel's
// read-around for their faults: otherwise the first few faults after the
// page-out read the disk's whole read-ahead window back (8 MiB on the
// machine measured: order's 40 MiB binary was all in the page cache again
// 0.3 s later), the node's memory did not change and only VmRSS fell. With
// it, a fault reads the page it needs, the page cache keeps only what runs
// (25.5 of 41 MiB at 2 s idle), and the first requests after the page-out
// pay for that in small reads (services/order/README.md has the figures).
func PageOutExecutable() (Pageout, error) {
	var p Pageout
	exe, err := os.Executable()
	if err != nil {
		return p, fmt.Errorf("page out executable: %w", err)
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return p, fmt.Errorf("page out executable: %w", err)
	}
	maps, err := parseMaps(f)
	f.Close()
	if err != nil {
		return p, fmt.Errorf("page out executable: %w", err)
	}
	targets := executableReadOnly(maps, exe)
	if len(targets) == 0 {
		return p, fmt.Errorf("page out executable: no read-only mapping of %s in /proc/self/maps", exe)
	}
	if p.FileRSSBefore, err = rssFile(); err != nil {
		return p, fmt.Errorf("page out executable: %w", err)
	}
	var errs []error
	began := time.Now()
	for _, m := range targets {
		p.Mappings++
		p.MappedBytes += int64(m.end - m.start)
		for _, advice := range []uintptr{madvRandom, madvPageout} {
			if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, uintptr(m.start), uintptr(m.end-m.start), advice); e != 0 {
				errs = append(errs, adviseError(advice, m, e))
				break
			}
		}
	}
	p.Took = time.Since(began).String()
	if p.FileRSSAfter, err = rssFile(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 || p.Released() == 0 {
		// Nothing went out (a kernel without MADV_PAGEOUT, or one that
		// refuses this file): read-around off would only make later faults
		// slower, so it goes back on.
		for _, m := range targets {
			syscall.Syscall(syscall.SYS_MADVISE, uintptr(m.start), uintptr(m.end-m.start), madvNormal)
		}
	}
	if err := pageoutFailure(errs); err != nil {
		return p, err
	}
	if p.Released() == 0 {
		p.Refused = refusal(exe)
	}
	return p, nil
}

// adviceError is one refused madvise call.
type adviceError struct {
	advice uintptr
	m      mapping
	errno  syscall.Errno
}

func (e *adviceError) Error() string {
	return fmt.Sprintf("madvise(%d) %x-%x %s: %v", e.advice, e.m.start, e.m.end, e.m.perms, e.errno)
}

func (e *adviceError) Unwrap() error { return e.errno }

func adviseError(advice uintptr, m mapping, e syscall.Errno) error {
	return &adviceError{advice: advice, m: m, errno: e}
}

// pageoutFailure is PageOutExecutable's error from what went wrong (nil for
// nothing), a noPageout when every failure was MADV_PAGEOUT's EINVAL. One
// other failure beside them (MADV_RANDOM refused, RssFile unreadable) makes
// it a real failure again.
func pageoutFailure(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	err := fmt.Errorf("page out executable: %w", errors.Join(errs...))
	for _, e := range errs {
		var ae *adviceError
		if !errors.As(e, &ae) || ae.advice != madvPageout || ae.errno != syscall.EINVAL {
			return err
		}
	}
	return noPageout{err}
}

func rssFile() (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	return parseRSSFile(string(b))
}

// refusal says why the kernel released nothing when it is the rule that
// MADV_PAGEOUT drops a file's pages only for a caller that owns the file or
// could open it for writing (or holds CAP_FOWNER, as root does); otherwise
// "" (every page was shared with another process, or already out).
func refusal(exe string) string {
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/exe", &st); err != nil {
		return ""
	}
	euid := os.Geteuid()
	if euid == 0 || int(st.Uid) == euid || syscall.Access(exe, 2 /* W_OK */) == nil {
		return ""
	}
	return fmt.Sprintf("the kernel pages out only a file the process owns or may write; %s belongs to uid %d, this process runs as uid %d", exe, st.Uid, euid)
}
