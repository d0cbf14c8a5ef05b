package agent

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// proc is one running process whose executable matched a target.
type proc struct {
	pid int
	exe string // path of the executable as the kernel reports it
	bin binID
}

// fileKey is a file on disk, whatever it holds.
type fileKey struct{ dev, ino uint64 }

// binID identifies one content of an executable file. The inode alone is not enough: "stop; cp new over the path;
// start" rewrites the file in place (same inode), and probes placed at the old build's offsets would sit on the new
// one counting nothing; a scan during the copy would record a half-written file as failed for good. Size, mtime and
// ctime change with every write (ctime cannot be set back), so a rewritten file is a new binID.
type binID struct {
	fileKey
	size         int64
	mtime, ctime syscall.Timespec
}

// statID is the binID of the file st describes.
func statID(st *syscall.Stat_t) binID {
	return binID{fileKey: fileKey{dev: st.Dev, ino: st.Ino}, size: st.Size, mtime: st.Mtim, ctime: st.Ctim}
}

// matches reports whether a process with executable exe and command name comm is one of targets: an absolute path is
// compared with the executable path, anything else with its base name or comm.
func matches(targets []string, exe, comm string) bool {
	for _, t := range targets {
		if strings.HasPrefix(t, "/") {
			if t == exe {
				return true
			}
		} else if t == filepath.Base(exe) || t == comm {
			return true
		}
	}
	return false
}

// realName reports whether link, process pid's /proc/N/exe target ending in " (deleted)", is the name of the file st
// describes: the kernel adds the suffix to an unlinked file's path, and a file can also be named with it. Taken off
// always, a process started from "/dir/svc (deleted)" was the path target /dir/svc's (probed and exported under its
// name). The link names the file from the process's mount namespace when the agent's cannot reach it (a container's
// root), so the path is looked up through the process's root first, then in the agent's (a chroot: the link names the
// file from the agent's root). Neither found, the suffix is the kernel's.
func realName(pid, link string, st *syscall.Stat_t) bool {
	var at syscall.Stat_t
	for _, p := range []string{"/proc/" + pid + "/root" + link, link} {
		if syscall.Stat(p, &at) == nil && at.Dev == st.Dev && at.Ino == st.Ino {
			return true
		}
	}
	return false
}

// scanProcs lists the processes whose executable matches targets or is one of files (path targets, resolved).
// /proc is polled rather than followed through sched_process_exec/exit events because a poll needs no event stream to keep consistent across the agent's own
// restarts, and probes live on the binary file, so a target restarted from the same file is counted from its first
// instruction even before the next poll sees it. between, when not nil, runs for each process between the read of its
// executable's path and the stat of the file (a test's seam: the process execs another file there).
func scanProcs(targets []string, files map[fileKey]bool, self int, between func(pid int)) []proc {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	// comm is read only when a target is a name: it is a file to open, stat, read and close for every process on the
	// machine, where the rest of this loop reads one link (and, with path targets, stats it) for a process that is no
	// target.
	byName := slices.ContainsFunc(targets, func(t string) bool { return !strings.HasPrefix(t, "/") })
	var out []proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		link, err := os.Readlink("/proc/" + e.Name() + "/exe")
		if err != nil {
			continue // kernel thread, or gone
		}
		exe := strings.TrimSuffix(link, " (deleted)")
		var comm []byte
		if byName {
			comm, _ = os.ReadFile("/proc/" + e.Name() + "/comm")
		}
		matched := matches(targets, exe, strings.TrimSpace(string(comm)))
		if !matched && len(files) == 0 {
			continue
		}
		if between != nil {
			between(pid)
		}
		var st syscall.Stat_t
		if err := syscall.Stat("/proc/"+e.Name()+"/exe", &st); err != nil {
			continue
		}
		if exe != link && realName(e.Name(), link, &st) {
			// The file is named so: " (deleted)" is part of its name, not the kernel's mark of an unlinked file
			// (TestDeletedSuffixIsTheKernelsOnly).
			exe = link
			matched = matches(targets, exe, strings.TrimSpace(string(comm)))
		}
		if !matched && !files[fileKey{dev: st.Dev, ino: st.Ino}] {
			continue
		}
		// The path read and the file stat-ed must be the same executable's: a process that exec'd another file in
		// between (the pid stays), or a pid another program took, paired the target's path with the other file, and
		// the agent probed that file (its identity is what attach checks) as the target. Read again, the link names
		// the file stat-ed unless the process changed again; the next scan sees what runs then.
		if again, err := os.Readlink("/proc/" + e.Name() + "/exe"); err != nil || again != link {
			continue
		}
		out = append(out, proc{pid: pid, exe: exe, bin: statID(&st)})
	}
	return out
}
