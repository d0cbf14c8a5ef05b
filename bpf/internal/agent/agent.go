// Package agent finds target Go processes, attaches the probes in ../../probe to their executables and the kernel,
// and reads what the probes aggregated in BPF maps. Nothing is sent per request from the kernel: every counter and
// histogram is summed in map values (per-CPU slots on the hot paths, values the CPUs add to atomically behind them)
// and only read when someone asks (a scrape, a test).
package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Config selects the targets and how closely they are followed.
type Config struct {
	Targets      []string      // executable paths (absolute) or names (base name or comm)
	ScanInterval time.Duration // how often /proc is polled for targets starting and exiting
	Grace        time.Duration // how long probes stay on an executable that no process runs any more
	HTTPProbe    string        // HTTPProbeUprobe (default) or HTTPProbeSocket
	// NoExitPrograms loads the per-executable probes (HTTP server, runtime, calls) without their
	// sched_process_exit programs (include/procexit.h), which free an exiting process's per-CPU slot copies in the
	// kernel. New turns it on itself where the kernel lacks bpf_loop or bpf_map_lookup_percpu_elem (before Linux
	// 5.19): there those programs fail the verifier, and each took its whole probe with it. Without them the scan
	// frees the slots of processes that no longer exist, as before the kernel did (README, "Minimum kernels").
	NoExitPrograms bool
	// MaxExecutables is how many executables the agent probes at once; 0 means DefaultMaxExecutables. Each costs
	// its probes' maps, charged to the agent's memory cgroup (README, "Map memory"), and a target named by base name
	// or comm is matched by any file of that name any user runs: without a cap, a local user who copied a binary
	// under a target's name into many directories and ran each copy had the agent load maps for every one until
	// its memory limit killed it. An executable over the cap is left unprobed, logged once, counted in
	// shanhai_bpf_executables_refused_total and listed by shanhai_bpf_target_unprobed; it is probed once another
	// is detached. Targets named by absolute path are attached first in each scan.
	MaxExecutables int
	Logger         *slog.Logger

	// The tests' knobs, unexported: per agent, not package variables, so that the tests setting them run at the same
	// time as the others.
	// slotEntries, when set, shrinks the slot tables of the HTTP server, runtime and call probes so that most
	// requests, calls and series miss them and take the hash-map fallback: the tests run both paths. 0 keeps the
	// compiled sizes.
	slotEntries uint32
	// goroutinesByUprobe counts goroutine creations with the runtime.newproc1 uprobe even where the runtime's own
	// counters can be read (gocount): the tests run both.
	goroutinesByUprobe bool
	// processEntries, when set, shrinks the maps keyed by process (the runtime probe's stw_begin, stw and
	// goroutines, the TCP probe's tcp) so that the tests can fill them. 0 keeps the compiled sizes.
	processEntries uint32
	// socketEntries, when set, shrinks the TCP probe's socket owners map so that the tests can fill it. 0 keeps the
	// compiled size.
	socketEntries uint32
	// inflightEntries, when set, shrinks the in-flight fallback maps of the HTTP server and call probes (inflight,
	// call_inflight) so that the tests can fill them. 0 keeps the compiled sizes.
	inflightEntries uint32
	// refuseSleepableExit makes the kernel refuse the HTTP server probe's sleepable exit program (as kernels before
	// 6.1 do), so that the tests run the plain one the agent falls back to.
	refuseSleepableExit bool
	// refuseRecount makes the kernel refuse the TCP probe's socket iterator (tcp.c's recount), so that the tests run
	// the agent without it, as where the kernel refuses it for real.
	refuseRecount bool
	// fakeAttach, set by tests only, attaches an executable in place of safeAttach, so that the tests can make attaches
	// slow without as many real executables.
	fakeAttach func(path, exe string, id binID, o attachOpts) (*binProbes, error)
}

// DefaultMaxExecutables is Config.MaxExecutables when unset: the platform's five services, each once more while a
// deploy that renames a new build over it runs the old and the new side by side, and room to spare.
const DefaultMaxExecutables = 16

// Target is one process being observed.
type Target struct {
	PID    int
	Exe    string
	Probes []string
	// Unprobed says why probes that apply to the executable are not on it, by probe name (a Go release or library
	// version the offsets tables do not hold, a verifier refusal), or under UnprobedAll why none is (it failed to
	// parse or attach). Empty when every probe that applies is on; the log has the same lines.
	Unprobed map[string]string
}

// UnprobedAll is the Target.Unprobed key for an executable that got no probe at all.
const UnprobedAll = "all"

// Agent owns the loaded probes.
type Agent struct {
	cfg  Config
	log  *slog.Logger
	self int

	// recountOff is sys.recountOff, kept for the scrapes, which read it outside mu (set once in New).
	recountOff string

	mu       sync.Mutex
	sys      *system
	sock     *sockProbe // the socket-layer HTTP server probe, in HTTPProbeSocket mode
	bins     map[binID]*binProbes
	lastSeen map[binID]time.Time
	procs    map[int]proc
	failed   map[binID]string // executables whose attach failed, with why (retried when the file changes)
	// capped are the executables left unprobed because MaxExecutables were probed already (retried at every scan;
	// forgotten when no process runs them), and cappedTotal how many were refused so since the agent started, each
	// once while it stays refused (shanhai_bpf_executables_refused_total; scrapes read it outside mu).
	capped      map[binID]struct{}
	cappedTotal atomic.Uint64
	scanned     bool
	swept       time.Time // when Scan last swept the slot tables
	// exited holds the targets that left scanProcs while their pid still existed: a zombie has no executable link
	// but keeps its /proc entry, and its slots, until its parent reaps it. The scan that finds one gone sweeps.
	exited map[int]struct{}
	// droppedRetired is what the HTTP server probes of detached executables had counted in series_dropped: the
	// kernel's count goes with the probe's maps, and shanhai_bpf_series_dropped_total, one counter for the whole
	// agent, must not go back when one executable's probe comes off (found by review).
	droppedRetired uint64
	// callDroppedRetired is the same for the call probes' call_series_dropped, by probe name
	// (shanhai_bpf_call_series_dropped_total).
	callDroppedRetired map[string]uint64
	// runtimeDroppedRetired is the same for the runtime probes' runtime_dropped, by series (runtimeDropSeries).
	runtimeDroppedRetired [len(runtimeDropSeries)]uint64
	// retired is what the probes of detached executables had counted for processes still running: one that exec'd
	// from that executable into another target keeps its pid, and its series are the sum of both executables' maps
	// (Snapshot.add). Once no process ran the first executable for BPF_DETACH_GRACE its maps closed, and the pid's
	// counters went back by their share, a reset to Prometheus (found by review; TestExecThenDetachKeepsTheCounts).
	// Kept until the process is gone, like the maps' own entries; a process is its pid and start time (retired.go).
	retired retiredSeries
	// leases guard the probed executables against a rewrite in place (lease.go).
	leases *leaseSet
	// readErrors counts the scrapes that could not read every map (shanhai_bpf_read_errors_total); scrapes may run
	// at once, outside mu.
	readErrors atomic.Uint64
}

// errClosed is what a closed agent answers a read with. A scrape can come after Close (a program that stops serving
// after the agent, or a collector registered elsewhere): it read the closed probes' nil objects and panicked in the
// Prometheus registry's collector goroutine, which nothing recovers, so the process died (found by review;
// TestScrapeAfterCloseIsAnError).
var errClosed = errors.New("agent closed")

// slotSweepInterval bounds how long the slots of a process that no scan saw stay taken after it exits (see Scan).
const slotSweepInterval = 30 * time.Second

// Ready reports whether the first scan is done: targets running or named by path when the agent started are
// probed from then on.
func (a *Agent) Ready() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.scanned
}

// New checks the machine (see Preflight), loads the system-wide probes and returns an agent that has not scanned yet.
func New(cfg Config) (*Agent, error) {
	if len(cfg.Targets) == 0 {
		return nil, fmt.Errorf("no targets: name at least one executable path or name")
	}
	if cfg.ScanInterval <= 0 {
		cfg.ScanInterval = 500 * time.Millisecond
	}
	if cfg.Grace <= 0 {
		cfg.Grace = time.Minute
	}
	if cfg.MaxExecutables <= 0 {
		cfg.MaxExecutables = DefaultMaxExecutables
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	switch cfg.HTTPProbe {
	case "":
		cfg.HTTPProbe = HTTPProbeUprobe
	case HTTPProbeUprobe, HTTPProbeSocket:
	default:
		return nil, fmt.Errorf("HTTP probe %q: want %s or %s", cfg.HTTPProbe, HTTPProbeUprobe, HTTPProbeSocket)
	}
	if err := Preflight(cfg.HTTPProbe); err != nil {
		return nil, err
	}
	if !cfg.NoExitPrograms {
		if err := exitHelpers(); err != nil {
			cfg.NoExitPrograms = true
			cfg.Logger.Info("probes load without their process-exit programs: exited processes' slots are freed by the scan", "why", err.Error())
		}
	} else {
		cfg.Logger.Info("probes load without their process-exit programs: exited processes' slots are freed by the scan", "why", "configured")
	}
	sys, err := attachSystem(cfg.processEntries, cfg.socketEntries, cfg.refuseRecount)
	if err != nil {
		return nil, err
	}
	// Not a reason to refuse to start: the rest of the TCP probe counts as it did before recount (lead's decision).
	// Said once here, and at every scrape by shanhai_bpf_system_unprobed.
	if sys.recountOff != "" {
		cfg.Logger.Warn("TCP opens and retransmits no program saw are not recounted: a connect whose ESTABLISHED ran "+
			"unseen is counted a failed connect at its close, and unseen retransmits wait for a seen close",
			"probe", unprobedRecount, "why", sys.recountOff)
	}
	a := &Agent{cfg: cfg, log: cfg.Logger, self: os.Getpid(), sys: sys, recountOff: sys.recountOff, bins: map[binID]*binProbes{},
		lastSeen: map[binID]time.Time{}, procs: map[int]proc{}, failed: map[binID]string{}, capped: map[binID]struct{}{},
		exited: map[int]struct{}{}, callDroppedRetired: map[string]uint64{}, retired: newRetiredSeries()}
	if cfg.HTTPProbe == HTTPProbeSocket {
		if a.sock, err = attachSockProbe(); err != nil {
			sys.Close()
			return nil, err
		}
	}
	a.leases = newLeaseSet(cfg.Logger)
	// Targets named by path are tracked from the start: a process started from one before the first scan has its
	// connections counted, as it had when the TCP probe counted every process on the machine.
	files := map[fileKey]bool{}
	for _, t := range cfg.Targets {
		var st syscall.Stat_t
		if strings.HasPrefix(t, "/") && syscall.Stat(t, &st) == nil {
			files[fileKey{dev: st.Dev, ino: st.Ino}] = true
		}
	}
	a.track(files)
	return a, nil
}

// track has the TCP probe count the connections of the processes running files, and of no other.
func (a *Agent) track(files map[fileKey]bool) {
	inos := map[uint64]bool{}
	for f := range files {
		inos[f.ino] = true
	}
	if err := a.sys.setTracked(inos); err != nil {
		a.log.Error("TCP connections of some targets uncounted: the probe's tracked files could not be set", "err", err)
	}
}

// Run scans until ctx is done. It leaves the agent open: a program stopping reads the maps a last time (the final
// OTLP export, cmd/agent) before Close detaches everything.
func (a *Agent) Run(ctx context.Context) error {
	t := time.NewTicker(a.cfg.ScanInterval)
	defer t.Stop()
	for {
		a.scan(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Scan looks for targets once: attaches to executables newly seen, forgets processes that exited (and their map
// entries) and detaches from executables unused for longer than Grace.
func (a *Agent) Scan() { a.scan(context.Background()) }

// scan is Scan until ctx ends. Attaches take seconds each (README, "Attach time"), and the first scan of a machine
// running many targets makes them all: a SIGTERM then waited for every one, longer than a pod's termination grace.
// An ended ctx stops the scan before the next attach, and the attach in progress before its next probe; Run's
// caller then closes the agent, which detaches what did attach.
func (a *Agent) scan(ctx context.Context) {
	// Path targets are resolved on every scan: a symlink created after the agent started, or repointed to a new
	// release (ln -sfn v2 current), names another file from then on. Processes are matched to that file by device
	// and inode, since /proc/N/exe names the resolved path, not the link.
	type pathTarget struct {
		path, exe string
		id        binID
	}
	var byPath []pathTarget
	files := map[fileKey]bool{}
	names := slices.Clone(a.cfg.Targets)
	for _, t := range a.cfg.Targets {
		if !strings.HasPrefix(t, "/") {
			continue
		}
		var st syscall.Stat_t
		if err := syscall.Stat(t, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
			continue
		}
		exe := t
		if real, err := filepath.EvalSymlinks(t); err == nil && real != t {
			exe = real
			names = append(names, real) // a process still running the file the link named, after it was deleted
		}
		id := statID(&st)
		files[id.fileKey] = true
		byPath = append(byPath, pathTarget{t, exe, id})
	}
	found := scanProcs(names, files, a.self, nil)
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sys == nil {
		return // closed: nothing is attached again
	}
	// The TCP probe counts the connections of these files' processes from here on, before the attaches below, which
	// take seconds each: the connections of a process whose file waits for its turn are counted meanwhile.
	for _, p := range found {
		files[p.bin.fileKey] = true
	}
	for id := range a.bins {
		files[id.fileKey] = true // a probed file's next process may start before the next scan
	}
	a.track(files)
	// Before the processes found are taken as the targets: one may have the pid of a target that exited since.
	a.forgetExited()
	// An executable someone opened for writing has had its uprobes taken off (lease.go): it is attached again below,
	// as what the file holds now, or once it is no longer open for writing.
	for id, b := range a.bins {
		if b.guard != nil && b.guard.broken.Load() {
			a.detach(id)
		}
	}
	// A target named by path is probed as soon as the file exists, so a process started from it is seen from its
	// first instruction (its early GC pauses, its first request), not from the next poll.
	for _, t := range byPath {
		if ctx.Err() != nil {
			return
		}
		a.lastSeen[t.id] = now
		a.attach(ctx, t.path, t.exe, t.id)
	}
	live := map[int]proc{}
	for _, p := range found {
		if ctx.Err() != nil {
			return
		}
		live[p.pid] = p
		a.lastSeen[p.bin] = now
		a.attach(ctx, "/proc/"+strconv.Itoa(p.pid)+"/exe", p.exe, p.bin)
	}
	for pid, p := range a.procs {
		if _, ok := live[pid]; !ok {
			a.log.Info("target exited", "pid", pid, "exe", p.exe)
			a.exited[pid] = struct{}{}
		}
	}
	for pid, p := range live {
		if _, ok := a.procs[pid]; !ok {
			a.log.Info("target found", "pid", pid, "exe", p.exe)
		}
	}
	a.procs = live
	if a.sock != nil {
		if err := a.sock.setTargets(live); err != nil {
			a.log.Error("target filter", "err", err)
		}
	}
	// Entries are deleted only for pids that no longer exist at all: a process started from a probed file after the
	// /proc read above already has entries, and must keep them.
	alive := pidAlive()
	// The hash maps cost their entries to sweep, the slot tables their whole size (2^N indexes, most of them free),
	// and a dead process's slot costs little until freed: the new series and calls that hash to it take the exact
	// fallback maps, and Snapshot skips it. So the slot tables are swept when a target that a scan saw is gone (its
	// pid no longer exists: reaped, not only exited), and every slotSweepInterval for the processes started from a
	// probed file that exited between two scans.
	sweepSlots := now.Sub(a.swept) >= slotSweepInterval
	for pid := range a.exited {
		if !alive(pid) {
			sweepSlots = true
			delete(a.exited, pid)
		}
	}
	if sweepSlots {
		a.swept = now
	}
	for id, b := range a.bins {
		if now.Sub(a.lastSeen[id]) > a.cfg.Grace {
			a.log.Info("detached", "exe", b.exe)
			a.detach(id)
		}
	}
	for id := range a.capped {
		if !a.lastSeen[id].Equal(now) { // no process runs it: a new one is refused, and counted, again
			delete(a.capped, id)
			delete(a.lastSeen, id)
		}
	}
	a.pruneMaps(alive, sweepSlots)
	a.retired.prune(alive)
	// The kernel deletes a process's tcp entry as it exits (tcp.c's process_exit); this is the backstop for an entry
	// that outlived its pid all the same, and it deletes only pids that do not exist when it looks.
	prune(a.sys.tcp.Tcp, alive)
	a.scanned = true
}

// forgetExited deletes the entries of the probed executables' processes that exited since it last ran (the kernel
// reports them: tcp.c's process_exit) from the maps the kernel does not clean at an exit itself, so a process that
// gets one of their pids starts from zero. What a new process counted under such a pid into those maps before this
// ran goes with them: it runs at every scan and scrape, and a pid is seldom taken again that soon. The scan's own
// pruning deletes only pids that no longer exist, and missed these.
//
// Left to the kernel, and never touched here, since whatever names such a pid in them by now is a new process's
// (deleted here, its counts were lost: TestTCPCountsOfTheNextProcessSurviveTheExitPrune,
// TestSeriesOfTheNextProcessSurviveTheExitPrune):
//   - the tcp map: the program that reports an exit deletes that process's entry first;
//   - with the exit programs loaded (Config.NoExitPrograms unset), the per-CPU series slots and the runtime probe's
//     maps: each executable's process_exit frees its processes' copies and entries (include/procexit.h). A process
//     that exec'd from one probed executable into another leaves the first one's copies behind, to the scan that
//     finds its pid gone.
func (a *Agent) forgetExited() {
	gone, err := a.sys.exited()
	if err != nil {
		a.log.Error("exited processes unread: a process that gets one of their pids before the next scan keeps their counts", "err", err)
	}
	if len(gone) == 0 {
		return
	}
	for pid := range gone {
		if p, ok := a.procs[pid]; ok {
			a.log.Info("target exited", "pid", pid, "exe", p.exe)
			delete(a.procs, pid)
			a.exited[pid] = struct{}{} // the scan that finds it reaped sweeps, as for any target that left
		}
	}
	if a.sock != nil {
		if err := a.sock.setTargets(a.procs); err != nil {
			a.log.Error("target filter", "err", err)
		}
	}
	alive := func(pid int) bool { return !gone[pid] }
	a.retired.prune(alive)
	for _, b := range a.bins {
		if !b.exitProgs {
			a.pruneBin(b, alive, true)
			continue
		}
		pruneKeyed(b, alive)
		// The in-flight slots are freed by nobody else: a request or call cut off by the exit holds its slot
		// until an agent frees it.
		if err := freeInflightSlots(b, alive); err != nil {
			a.log.Error("free the slots of exited processes", "exe", b.exe, "err", err)
		}
	}
	if a.sock != nil {
		prune(a.sock.objs.Requests, alive)
	}
}

// pruneMaps deletes the entries of the processes that are not alive from every map of the probes on executables and
// of the socket probe and, with sweepSlots, frees their slots. The tcp map is the scan's alone (Scan says why).
func (a *Agent) pruneMaps(alive func(pid int) bool, sweepSlots bool) {
	for _, b := range a.bins {
		a.pruneBin(b, alive, sweepSlots)
	}
	if a.sock != nil {
		prune(a.sock.objs.Requests, alive)
	}
}

// pruneBin deletes the entries of the processes that are not alive from the maps of the probes on one executable
// and, with sweepSlots, frees their slots.
func (a *Agent) pruneBin(b *binProbes, alive func(pid int) bool, sweepSlots bool) {
	pruneKeyed(b, alive)
	if b.rt != nil {
		prune(b.rt.Stw, alive)
		prune(b.rt.StwBegin, alive)
		prune(b.rt.Goroutines, alive)
	}
	if sweepSlots {
		if err := b.sweepSlots(alive); err != nil {
			a.log.Error("free the slots of exited processes", "exe", b.exe, "err", err)
		}
	}
}

// pruneKeyed deletes the entries of the processes that are not alive from the hash maps of the HTTP server and call
// probes on b, keyed by pid and more (method, status, goroutine): no exit program can look them up by pid alone.
func pruneKeyed(b *binProbes, alive func(pid int) bool) {
	if b.http != nil {
		prune(b.http.Requests, alive)
		prune(b.http.Inflight, alive)
	}
	for _, m := range b.calls {
		prune(m, alive)
	}
	for _, m := range b.callsInflight {
		prune(m, alive)
	}
}

// freeInflightSlots frees the in-flight slots (one request or call each, owned by pid and goroutine) of the
// processes that are not alive on b.
func freeInflightSlots(b *binProbes, alive func(pid int) bool) error {
	var errs []error
	if b.http != nil {
		errs = append(errs, pruneOwnedSlots(b.http.InflightSlots, alive, reqSlotOwner))
	}
	for _, m := range b.callSlots {
		errs = append(errs, pruneOwnedSlots(m, alive, callSlotOwner))
	}
	return errors.Join(errs...)
}

// attach puts the probes on executable id (opened through path) unless they are there or failed before. Probes on
// an earlier content of the same file come off first: uprobes sit on the inode at the old build's offsets.
func (a *Agent) attach(ctx context.Context, path, exe string, id binID) {
	if _, ok := a.bins[id]; ok {
		return
	}
	for old := range a.failed {
		if old.fileKey == id.fileKey && old != id {
			// A file rewritten after a failure (a scan during the copy) is tried again, and its old reason goes.
			delete(a.failed, old)
			delete(a.lastSeen, old)
		}
	}
	if _, failed := a.failed[id]; failed {
		return
	}
	// The file is opened once and named by its descriptor from here on. path is /proc/<pid>/exe of a process the
	// scan found (or a path target), and the process may exit before or during the attach, or its pid go to another
	// program: opened by path at every step, the attach failed, recorded for good under this file's identity, or
	// read and probed the other program's file under it. A file that is not the one the scan saw is left to the
	// next scan, which sees what runs then.
	f, err := os.Open(path)
	if err != nil {
		a.log.Debug("target gone before it was attached", "exe", exe, "err", err)
		return
	}
	guarded := false // the guard, once it has the lease, owns f
	defer func() {
		if !guarded {
			f.Close()
		}
	}()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil || statID(&st) != id {
		a.log.Debug("target replaced before it was attached", "exe", exe, "path", path)
		return
	}
	for old, b := range a.bins {
		if old.fileKey != id.fileKey {
			continue
		}
		// Only the ctime moved (size, mtime and Go build ID unchanged): the file was unlinked, as when a deploy
		// renames a new build over its path while this one still runs, or linked, chmod-ed or chown-ed. Its bytes
		// are the ones probed, so the probes stay, and with them what its processes counted; taken for a rewrite,
		// they came off and the same bytes were attached again from zero.
		if old.size == id.size && old.mtime == id.mtime && b.buildID != nil && bytes.Equal(fileBuildID(f), b.buildID) {
			delete(a.bins, old)
			delete(a.lastSeen, old)
			b.id = id
			a.bins[id] = b
			a.log.Info("executable's inode changed, not its bytes: probes kept", "exe", b.exe)
			return
		}
		a.log.Info("detached: executable rewritten in place", "exe", b.exe)
		a.detach(old)
		delete(a.lastSeen, old)
	}
	if len(a.bins) >= a.cfg.MaxExecutables {
		if _, ok := a.capped[id]; !ok {
			a.capped[id] = struct{}{}
			a.cappedTotal.Add(1)
			a.log.Warn("not probed: as many executables probed as BPF_MAX_EXECUTABLES allows", "exe", exe,
				"max", a.cfg.MaxExecutables)
		}
		return
	}
	delete(a.capped, id)
	// The lease first, so the file cannot be written while it is read and probed; the file is checked again under it.
	g, err := a.leases.take(f)
	switch {
	case errors.Is(err, syscall.EAGAIN):
		a.log.Debug("target open for writing: attached once it is written", "exe", exe)
		return
	case err != nil:
		a.log.Info("probed unguarded: a build written over it in place and started before the next scan would run "+
			"with this build's uprobes and crash", "exe", exe, "why", "read lease: "+err.Error())
	default:
		guarded = true
		if err := syscall.Fstat(int(f.Fd()), &st); err != nil || statID(&st) != id {
			g.release()
			a.log.Debug("target replaced before it was attached", "exe", exe, "path", path)
			return
		}
		g.mu.Lock()
	}
	fd := "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
	start := time.Now() // the attach holds the scan's lock: its time is how late every other target is probed
	attach := safeAttach
	if a.cfg.fakeAttach != nil {
		attach = a.cfg.fakeAttach
	}
	b, err := attach(fd, exe, id, attachOpts{ctx: ctx, httpUprobe: a.cfg.HTTPProbe == HTTPProbeUprobe, exitProgs: !a.cfg.NoExitPrograms,
		accept: a.sys.tcp.AcceptRet, log: a.log, slotEntries: a.cfg.slotEntries, goroutinesByUprobe: a.cfg.goroutinesByUprobe,
		processEntries: a.cfg.processEntries, inflightEntries: a.cfg.inflightEntries,
		refuseSleepable: a.cfg.refuseSleepableExit})
	if g != nil {
		if err == nil {
			g.b, b.guard = b, g
		}
		g.mu.Unlock()
		if err != nil {
			g.release()
		}
	}
	if err != nil && ctx.Err() != nil {
		a.log.Info("attach stopped: the agent is stopping", "exe", exe)
		return // not the file's failure: it is not recorded
	}
	if err != nil {
		why := strings.ReplaceAll(err.Error(), fd, path) // the reason names the file as before, not the agent's fd
		a.failed[id] = why
		a.log.Error("attach failed", "exe", exe, "err", why)
		return
	}
	if err := a.sys.probeFile(id.ino, true); err != nil {
		a.log.Error("exits unwatched: a process that gets the pid of one of its exited processes before the next scan keeps their counts", "exe", exe, "err", err)
	}
	a.bins[id] = b
	a.log.Info("attached", "exe", exe, "probes", b.probes, "took", time.Since(start))
}

// detach takes the probes off executable id, keeping what its HTTP server, call and runtime probes had counted as
// dropped.
func (a *Agent) detach(id binID) {
	b := a.bins[id]
	a.retire(b)
	if b.http != nil {
		n, err := sumPerCPU(b.http.SeriesDropped)
		if err != nil {
			a.log.Error("dropped series of a detached executable unread: shanhai_bpf_series_dropped_total loses them", "exe", b.exe, "err", err)
		}
		a.droppedRetired += n
	}
	for probe, m := range b.callDropped {
		n, err := sumPerCPU(m)
		if err != nil {
			a.log.Error("dropped call series of a detached executable unread: shanhai_bpf_call_series_dropped_total loses them", "exe", b.exe, "probe", probe, "err", err)
		}
		a.callDroppedRetired[probe] += n
	}
	if b.rt != nil {
		for i, series := range runtimeDropSeries {
			n, err := sumPerCPUAt(b.rt.RuntimeDropped, uint32(i))
			if err != nil {
				a.log.Error("dropped runtime events of a detached executable unread: shanhai_bpf_runtime_series_dropped_total loses them", "exe", b.exe, "series", series, "err", err)
			}
			a.runtimeDroppedRetired[i] += n
		}
	}
	b.Close()
	delete(a.bins, id)
	for other := range a.bins {
		if other.ino == id.ino {
			return
		}
	}
	if err := a.sys.probeFile(id.ino, false); err != nil {
		a.log.Error("forget a detached executable's inode", "exe", b.exe, "err", err)
	}
}

// retire keeps what b's maps counted for processes still running (Agent.retired), before b's probes come off.
func (a *Agent) retire(b *binProbes) {
	bs := newSnapshot()
	if err := b.read(&bs); err != nil {
		a.log.Error("series of a detached executable unread: the processes that exec'd from it lose them", "exe", b.exe, "err", err)
		return
	}
	a.retired.add(&bs)
}

// safeAttach is attachBinary turning a panic into an error. Any file on the machine can match a target, and the
// parsers under it (debug/elf, debug/gosym, debug/dwarf, x86asm) were fuzzed but not proven: one hostile file must
// cost its own probes, not every other target's.
func safeAttach(path, exe string, id binID, o attachOpts) (b *binProbes, err error) {
	defer func() {
		if p := recover(); p != nil {
			b, err = nil, fmt.Errorf("panic reading %s: %v", path, p)
		}
	}()
	return attachBinary(path, exe, id, o)
}

// Targets lists the processes observed now.
func (a *Agent) Targets() []Target {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []Target
	for _, p := range a.procs {
		t := Target{PID: p.pid, Exe: p.exe}
		if b, ok := a.bins[p.bin]; ok {
			t.Probes = slices.Clone(b.probes)
			if len(b.refused) > 0 {
				t.Unprobed = maps.Clone(b.refused)
			}
		}
		if why, ok := a.failed[p.bin]; ok {
			t.Unprobed = map[string]string{UnprobedAll: why}
		}
		if _, ok := a.capped[p.bin]; ok {
			t.Unprobed = map[string]string{UnprobedAll: fmt.Sprintf("%d executables probed already, the most BPF_MAX_EXECUTABLES allows", a.cfg.MaxExecutables)}
		}
		if a.sock != nil {
			t.Probes = append(t.Probes, "httpsock")
		}
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out
}

// Snapshot reads every map now.
func (a *Agent) Snapshot() (Snapshot, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sys == nil {
		return Snapshot{}, errClosed
	}
	a.forgetExited() // a target that exited since the last scan may have a successor on its pid already
	s := newSnapshot()
	var errs []error
	for _, b := range a.bins {
		// Each executable is read whole or not at all: a series is summed from a hash map and per-CPU slots, and
		// one read in part would be lower than the last scrape said, a counter reset to Prometheus (rate() counts
		// it all again). Left out, it is only absent from this scrape; the other executables are still read.
		bs := newSnapshot()
		if err := b.read(&bs); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", b.exe, err))
			continue
		}
		s.add(&bs)
	}
	s.add(&a.retired.Snapshot)
	// Goroutine counts that the runtime keeps itself (binProbes.goroutines) are read from each process's memory.
	for pid, p := range a.procs {
		b, ok := a.bins[p.bin]
		if !ok || b.goroutines == nil {
			continue
		}
		n, err := b.goroutines.Read(pid)
		if err != nil {
			// Most likely the process exited since the last scan; its series goes with it.
			a.log.Debug("goroutine counters unread", "pid", pid, "exe", p.exe, "err", err)
			continue
		}
		s.Goroutines[pid] = n
	}
	if a.sock != nil {
		if err := a.sock.read(&s); err != nil {
			errs = append(errs, err)
		}
	}
	// Opens, retransmits and closes no program saw are counted first, so that this read has them (system.reconcile).
	if err := a.sys.reconcile(); err != nil {
		errs = append(errs, fmt.Errorf("count the tcp events no program saw: %w", err))
	}
	if err := a.sys.read(&s, a.procs); err != nil {
		errs = append(errs, err)
	}
	return s, errors.Join(errs...)
}

// Close detaches every probe. The agent observes nothing from then on: it lists no target, and reads return
// errClosed.
func (a *Agent) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	clear(a.procs)
	for id, b := range a.bins {
		b.Close()
		delete(a.bins, id)
	}
	if a.sys != nil {
		a.sys.Close()
		a.sys = nil
	}
	if a.sock != nil {
		a.sock.Close()
		a.sock = nil
	}
	if a.leases != nil {
		a.leases.close()
		a.leases = nil
	}
	return nil
}
