package agent

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"golang.org/x/arch/x86/x86asm"

	"github.com/shanhai-dev/shanhai/bpf/internal/gocount"
	"github.com/shanhai-dev/shanhai/bpf/internal/offsets"
	"github.com/shanhai-dev/shanhai/bpf/internal/symtab"
	"github.com/shanhai-dev/shanhai/bpf/probe/goruntime"
	"github.com/shanhai-dev/shanhai/bpf/probe/httpserver"
)

// Go functions the probes attach to.
const (
	fnServeHTTP  = "net/http.serverHandler.ServeHTTP"
	fnStopWorld  = "runtime.stopTheWorldWithSema"
	fnStartWorld = "runtime.startTheWorldWithSema"
	fnNewproc1   = "runtime.newproc1"
	fnAccept     = "internal/poll.(*FD).Accept"
)

// binProbes is the probes on one executable file. Uprobes are registered on the file (inode), not on a process, so every
// process running it, including one restarted after the agent attached, is observed; maps key everything by pid.
type binProbes struct {
	id     binID
	exe    string
	probes []string // attached probe names, for /metrics and logs
	// refused names the probes that apply to the executable but failed, with why (Target.Unprobed): an operator must
	// see a target's HTTP RED missing for a Go release the agent has no offsets for without reading the log.
	refused map[string]string
	log     *slog.Logger
	closer  []io.Closer
	// links are the uprobes, apart from closer: a lease break (rewriteGuard) takes them off while the rest stays
	// for the scrapes until the next scan detaches the executable. Closed once, before closer.
	links     []io.Closer
	linksOnce sync.Once
	// guard is the read lease that tells the agent before the file is written (nil: unguarded, see lease.go).
	guard *rewriteGuard
	// exitProgs: each probe's process_exit is loaded and attached (Config.NoExitPrograms unset).
	exitProgs bool
	// The tests' knobs (Config's, attachOpts'), read while attaching.
	slotEntries        uint32
	goroutinesByUprobe bool
	processEntries     uint32
	inflightEntries    uint32
	refuseSleepable    bool
	exitTracepoint     func(group, name string, prog *ebpf.Program, opts *link.TracepointOptions) (link.Link, error)
	// httpExit is which build of the HTTP server probe's exit program runs: exitSleepable or exitPlain (loadHTTPServer).
	httpExit string
	// buildID is the executable's Go build ID note (nil without one): a file whose ctime moved and whose size,
	// mtime and build ID did not holds the bytes probed (Agent.attach).
	buildID []byte

	http          *httpserver.BpfMaps
	rt            *goruntime.BpfMaps
	calls         []*ebpf.Map // the call probes' aggregate maps (struct call_key -> lat_hist)
	callsInflight []*ebpf.Map // and their in-flight maps (struct call_inflight_key -> call_state)
	callSlots     []*ebpf.Map // and their fast-path slots: in flight (struct call_slot)
	callAggSlots  []*ebpf.Map // and series (struct call_agg_slot, per CPU)
	// callDropped is each attached call probe's call_series_dropped (by probe name: httpclient, db, messaging).
	callDropped map[string]*ebpf.Map

	// Where the runtime counts goroutine creations (read at scrape time); nil: the newproc1 uprobe counts them.
	goroutines *gocount.Counter

	// dwarf is the executable's DWARF while attachBinary runs, read once for every probe's offsets and result
	// registers (parsed per lookup, it was most of an attach's time); nil after, since it holds the inflated sections.
	dwarf *offsets.Index
}

func (b *binProbes) Close() error {
	errs := []error{b.closeLinks()}
	if b.guard != nil {
		b.guard.release()
	}
	for i := len(b.closer) - 1; i >= 0; i-- {
		errs = append(errs, b.closer[i].Close())
	}
	return errors.Join(errs...)
}

// closeLinks takes the executable's uprobes off, once.
func (b *binProbes) closeLinks() error {
	var errs []error
	b.linksOnce.Do(func() {
		for i := len(b.links) - 1; i >= 0; i-- {
			errs = append(errs, b.links[i].Close())
		}
	})
	return errors.Join(errs...)
}

// setExitVars tells a probe's process_exit (include/procexit.h) which executable is probed, by inode, and how many
// copies a per-CPU slot has, so that it frees the slot copies of the executable's processes as they exit.
func setExitVars(spec *ebpf.CollectionSpec, ino uint64) error {
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("possible CPUs: %w", err)
	}
	if err := spec.Variables["exit_ino"].Set(ino); err != nil {
		return fmt.Errorf("set exit_ino: %w", err)
	}
	if err := spec.Variables["exit_ncpu"].Set(uint32(ncpu)); err != nil {
		return fmt.Errorf("set exit_ncpu: %w", err)
	}
	return nil
}

// exitProgram is the name of each per-executable probe's sched_process_exit program (include/procexit.h).
const exitProgram = "process_exit"

// exitHelpers says why the probes' exit programs cannot load on this kernel, or nil. They walk every slot copy with
// bpf_loop and reach each CPU's copy with bpf_map_lookup_percpu_elem, both Linux 5.19; the verifier refuses a
// program that calls a helper the kernel lacks, and with it the object it is loaded in.
func exitHelpers() error {
	for _, h := range []struct {
		fn   asm.BuiltinFunc
		name string
	}{{asm.FnLoop, "bpf_loop"}, {asm.FnMapLookupPercpuElem, "bpf_map_lookup_percpu_elem"}} {
		if err := features.HaveProgramHelper(ebpf.TracePoint, h.fn); err != nil {
			return fmt.Errorf("helper %s: %w", h.name, err)
		}
	}
	return nil
}

// load loads spec into objs (a struct of its maps and programs other than process_exit) and, unless the probes go
// without exit programs, attaches its process_exit to sched:sched_process_exit. Without them the program is deleted
// from the spec before loading, so the kernel's verifier never sees it and the object's other programs load where
// it could not. The error wraps the verifier's. On any error everything the load opened is closed before it
// returns: the exit program is attached before objs takes the rest, so until then the collection owns them all, and
// its Close does not leave their fds to the garbage collector's finalizers (it did when the attach failed).
func (b *binProbes) load(spec *ebpf.CollectionSpec, objs any) error {
	if !b.exitProgs {
		delete(spec.Programs, exitProgram)
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	defer coll.Close() // what objs did not take
	var exit closers
	if b.exitProgs {
		prog := coll.DetachProgram(exitProgram)
		if prog == nil {
			return fmt.Errorf("load: no %s program", exitProgram)
		}
		l, err := b.exitTracepoint("sched", "sched_process_exit", prog, nil)
		if err != nil {
			prog.Close()
			return fmt.Errorf("attach sched:sched_process_exit: %w", err)
		}
		exit = closers{l, prog} // the link comes off before its program closes
	}
	if err := coll.Assign(objs); err != nil {
		if exit != nil {
			exit.Close()
		}
		return fmt.Errorf("load: %w", err)
	}
	if exit != nil {
		b.closer = append(b.closer, exit)
	}
	return nil
}

// uprobeAt attaches prog at each file offset in addrs of fn.
func (b *binProbes) uprobeAt(ex *link.Executable, fn symtab.Func, prog *ebpf.Program, addrs []uint64) error {
	return b.uprobeCookie(ex, fn, prog, addrs, 0)
}

// exits is where fn's returns are probed: right after its direct call sites when symtab can prove they see every
// return (the kernel emulates the instruction there, where a RET is single-stepped at tens of microseconds a hit),
// else its RET instructions. keep names the registers the exit program reads results from. The mode goes to the log.
func (b *binProbes) exits(sym *symtab.Binary, fn symtab.Func, keep ...x86asm.Reg) []uint64 {
	e := sym.Exits(fn, keep...)
	if e.Mode == symtab.ModeRet {
		b.log.Info("exit probes on RET instructions (single-stepped)", "exe", b.exe, "func", fn.Name, "mode", e.Mode, "probes", len(e.Offs), "why", e.Reason)
	} else {
		b.log.Info("exit probes after the call sites", "exe", b.exe, "func", fn.Name, "mode", e.Mode,
			"emulated", len(e.Offs)-e.Stepped, "stepped", e.Stepped)
	}
	return e.Offs
}

// attachOpts is how attachBinary probes an executable: the agent's Config and its system probe.
type attachOpts struct {
	ctx        context.Context // the attach stops before its next probe once ctx ends; nil never ends
	httpUprobe bool            // false when the socket probe (HTTPProbeSocket) observes the HTTP server instead
	exitProgs  bool            // false when the probes load without their process_exit programs (Config.NoExitPrograms)
	accept     *ebpf.Program   // the system TCP probe's passive-open program (tcp.AcceptRet), attached here so that it fires in targets only
	log        *slog.Logger
	// The tests' knobs, per agent (Config's) so that tests setting different ones run at the same time.
	slotEntries        uint32 // see Config.slotEntries
	goroutinesByUprobe bool   // see Config.goroutinesByUprobe
	processEntries     uint32 // see Config.processEntries
	inflightEntries    uint32 // see Config.inflightEntries
	refuseSleepable    bool   // see Config.refuseSleepableExit
	// exitTracepoint attaches a probe's process_exit; nil is link.Tracepoint. A test makes that attach fail with it.
	exitTracepoint func(group, name string, prog *ebpf.Program, opts *link.TracepointOptions) (link.Link, error)
}

// attachBinary loads and attaches every probe whose functions the executable at path has. path should be
// /proc/<pid>/exe, which names the file even after it was replaced or deleted on disk.
func attachBinary(path, exe string, id binID, o attachOpts) (*binProbes, error) {
	log := o.log
	sym, err := symtab.Open(path)
	if err != nil {
		return nil, err
	}
	defer sym.Close()
	// Refused here, a file whose DWARF lies is skipped with one error instead of one per probe that reads offsets.
	if err := offsets.CheckSections(sym.ELF(), sym.Size()); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ex, err := link.OpenExecutable(path)
	if err != nil {
		return nil, fmt.Errorf("open %s for uprobes: %w", exe, err)
	}
	b := &binProbes{id: id, exe: exe, log: log, refused: map[string]string{}, callDropped: map[string]*ebpf.Map{}, exitProgs: o.exitProgs, buildID: buildID(sym.ELF()),
		slotEntries: o.slotEntries, goroutinesByUprobe: o.goroutinesByUprobe, processEntries: o.processEntries, inflightEntries: o.inflightEntries, exitTracepoint: o.exitTracepoint,
		refuseSleepable: o.refuseSleepable,
		dwarf:           offsets.NewIndex(sym.ELF())}
	if b.exitTracepoint == nil {
		b.exitTracepoint = link.Tracepoint
	}
	ok := false
	defer func() {
		b.dwarf = nil
		if !ok {
			b.Close()
		}
	}()
	for _, p := range []struct {
		name   string
		attach func(*symtab.Binary, *link.Executable) error
	}{
		{"httpserver", b.attachHTTPServer},
		{"goruntime", b.attachGoRuntime},
		{"httpclient", b.attachCalls("httpclient")},
		{"db", b.attachCalls("db")},
		{"messaging", b.attachCalls("messaging")},
		{"tcpaccept", b.attachAccept(o.accept)},
	} {
		if p.name == "httpserver" && !o.httpUprobe {
			continue
		}
		if o.ctx != nil && o.ctx.Err() != nil {
			return nil, fmt.Errorf("attach %s stopped before %s: %w", exe, p.name, o.ctx.Err()) // what attached closes
		}
		// One probe failing (a library version with another layout, a verifier complaint) leaves the others running.
		err := p.attach(sym, ex)
		switch {
		case errors.Is(err, symtab.ErrNotFound):
			log.Info("probe not applicable", "exe", exe, "probe", p.name, "reason", err.Error())
		case err != nil:
			log.Error("probe failed", "exe", exe, "probe", p.name, "err", err)
			b.refused[p.name] = err.Error()
		default:
			b.probes = append(b.probes, p.name)
		}
	}
	ok = true
	return b, nil
}

// buildID returns the bytes of the Go build ID note, or nil when there is none or it is not the size of one: the
// linker writes a few dozen bytes, a hash of the build's inputs, so equal notes mean the same build.
func buildID(f *elf.File) []byte {
	s := f.Section(".note.go.buildid")
	if s == nil || s.Type != elf.SHT_NOTE || s.Size == 0 || s.Size > 1024 {
		return nil
	}
	b, err := s.Data()
	if err != nil {
		return nil
	}
	return b
}

// fileBuildID is buildID of the open file f; a file that does not parse has none (read as hostile, like every
// target: a panic in debug/elf is none either).
func fileBuildID(f *os.File) (id []byte) {
	defer func() {
		if recover() != nil {
			id = nil
		}
	}()
	e, err := elf.NewFile(f)
	if err != nil {
		return nil
	}
	return buildID(e)
}

// funcs resolves every name or returns the first lookup error (ErrNotFound when the binary lacks one).
func funcs(sym *symtab.Binary, names ...string) ([]symtab.Func, error) {
	out := make([]symtab.Func, len(names))
	for i, n := range names {
		f, err := sym.Func(n)
		if err != nil {
			return nil, err
		}
		out[i] = f
	}
	return out, nil
}

// http1Fields are the offsets the HTTP server probe cannot run without.
var http1Fields = []offsets.Field{offsets.RequestMethod, offsets.ServerStatus, offsets.ServerConn, offsets.ConnHijacked}

func (b *binProbes) attachHTTPServer(sym *symtab.Binary, ex *link.Executable) error {
	fs, err := funcs(sym, fnServeHTTP)
	if err != nil {
		return err
	}
	// HTTP/2's fields with HTTP/1's; without them the probe still runs.
	offs, _, h2Err := b.dwarf.Resolve(append(http1Fields, offsets.H2WriterState, offsets.H2Status)...)
	if h2Err != nil {
		offs, _, err = b.dwarf.Resolve(http1Fields...)
		if err != nil {
			return err
		}
	}
	spec, err := httpserver.LoadBpf()
	if err != nil {
		return err
	}
	for name, fl := range map[string]offsets.Field{"off_request_method": offsets.RequestMethod, "off_response_status": offsets.ServerStatus,
		"off_response_conn": offsets.ServerConn, "off_conn_hijacked": offsets.ConnHijacked} {
		if err := spec.Variables[name].Set(offs[fl]); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	if known, err := b.setResponseItab(sym, spec, fs[0]); err != nil {
		return err
	} else if known {
		if err := b.setH2Writer(sym, spec, fs[0], offs, h2Err); err != nil {
			return err
		}
		if err := b.setXNetH2Writer(sym, spec, fs[0]); err != nil {
			return err
		}
	}
	if b.slotEntries > 0 {
		spec.Maps["inflight_slots"].MaxEntries = b.slotEntries
		spec.Maps["red_slots"].MaxEntries = b.slotEntries
	}
	if b.inflightEntries > 0 {
		spec.Maps["inflight"].MaxEntries = b.inflightEntries
	}
	if err := setExitVars(spec, b.id.ino); err != nil {
		return err
	}
	var objs struct {
		httpserver.BpfMaps
		Enter  *ebpf.Program `ebpf:"serve_http_enter"`
		Ret    *ebpf.Program `ebpf:"serve_http_ret"`
		Panic  *ebpf.Program `ebpf:"serve_http_panic"`
		Hijack *ebpf.Program `ebpf:"serve_http_hijack"`
	}
	if err := b.loadHTTPServer(spec, &objs); err != nil {
		return err
	}
	b.closer = append(b.closer, &objs.BpfMaps, closers{objs.Enter, objs.Ret, objs.Panic, objs.Hijack})
	b.http = &objs.BpfMaps
	if err := b.uprobeAt(ex, fs[0], objs.Enter, []uint64{fs[0].CallOff}); err != nil {
		return err
	}
	if err := b.uprobeAt(ex, fs[0], objs.Ret, b.exits(sym, fs[0])); err != nil { // reads no result register
		return err
	}
	b.attachPanicExit(sym, ex, objs.Panic)
	b.attachHijack(sym, ex, objs.Hijack)
	return nil
}

// The HTTP server probe's exit program comes in two builds (httpserver.c, serve_http_exit): the same code as a plain
// uprobe and as a sleepable one, whose user-memory reads are bpf_copy_from_user (README, "Overhead").
const (
	exitSleepable = "sleepable"
	exitPlain     = "plain"
)

// loadHTTPServer loads the HTTP server probe with its sleepable exit program where the kernel takes it (Linux 6.1 and
// later), else with the plain one, and logs which one runs. The sleepable build is loaded under the plain one's name,
// so objs and whatever reads the kernel's program names (bpf_stats, bench/overhead.sh) see one serve_http_ret either
// way. Only a program the kernel would not load (an ebpf.VerifierError) makes it load the plain build: kernels before
// 6.1 refuse the sleepable one there (EINVAL: the flag before 5.10, a sleepable uprobe before 6.0, its
// non-preallocated hashes in 6.0). Any other error (a map, the process_exit attach) would be the plain build's too:
// it is returned as it is, not logged as a refusal and paid for twice. A refusal of another program fails the plain
// load the same way, and that error is returned.
func (b *binProbes) loadHTTPServer(spec *ebpf.CollectionSpec, objs any) error {
	sleepable := spec.Programs[httpserver.BpfProgServeHttpRetSleepable]
	delete(spec.Programs, httpserver.BpfProgServeHttpRetSleepable) // never loaded beside the plain build: one exit program runs
	if sleepable != nil {
		s := spec.Copy()
		p := sleepable.Copy()
		p.Name = httpserver.BpfProgServeHttpRet
		if b.refuseSleepable {
			p.Flags |= 1 << 31 // a flag no kernel knows: refused, as BPF_F_SLEEPABLE on a uprobe is before 6.0
		}
		s.Programs[httpserver.BpfProgServeHttpRet] = p
		err := b.load(s, objs)
		if err == nil {
			b.httpExit = exitSleepable
			b.log.Info("HTTP server exit program", "exe", b.exe, "build", exitSleepable)
			return nil
		}
		if _, refused := errors.AsType[*ebpf.VerifierError](err); !refused {
			return err
		}
		b.log.Info("HTTP server exit program: the sleepable build was refused, loading the plain one", "exe", b.exe,
			"why", err.Error())
	}
	if err := b.load(spec, objs); err != nil {
		return err
	}
	b.httpExit = exitPlain
	b.log.Info("HTTP server exit program", "exe", b.exe, "build", exitPlain)
	return nil
}

// fnHijackLocked is where every Hijack of an HTTP/1 connection goes, on the handler's goroutine.
const fnHijackLocked = "net/http.(*conn).hijackLocked"

// attachHijack puts serve_http_hijack on hijackLocked's entry, so a request hijacked after WriteHeader (a CONNECT
// proxy's 200) is counted as hijacked. A refinement like attachPanicExit: without it such a request is a 200 lasting
// the session, as the log says, and the exit program still tells apart hijacks that leave the status 0 or 101.
func (b *binProbes) attachHijack(sym *symtab.Binary, ex *link.Executable, prog *ebpf.Program) {
	f, err := sym.Func(fnHijackLocked)
	if err == nil {
		err = b.uprobeAt(ex, f, prog, []uint64{f.CallOff})
	}
	if err != nil {
		b.log.Info("requests hijacked after WriteHeader are counted as their status", "exe", b.exe, "why", err.Error())
	}
}

// fnServeConn passes serverHandler.ServeHTTP its *response as a ResponseWriter, the itab in RBX.
const fnServeConn = "net/http.(*conn).serve"

// setResponseItab tells serve_http_ret which ResponseWriter is a *net/http.response (HTTP/1; HTTP/2 passes another
// writer), by the itab conn.serve passes, which symtab.ArgAddr finds with or without a symbol table, and says whether
// it did. Where it is not found (another net/http), status is read as before and hijacked requests are not told
// apart: the log says so.
func (b *binProbes) setResponseItab(sym *symtab.Binary, spec *ebpf.CollectionSpec, serve symtab.Func) (bool, error) {
	conn, err := sym.Func(fnServeConn)
	var itab uint64
	if err == nil {
		itab, err = sym.ArgAddr(conn, serve, x86asm.RBX)
	}
	if err != nil {
		b.log.Info("HTTP/2 statuses and hijacked requests are not told apart", "exe", b.exe, "why", err.Error())
		return false, nil
	}
	return true, setItab(spec, "response_itab", itab, serve)
}

// HTTP/2 requests (net/http's bundled server, h2c and TLS alike) are served by runHandler, which converts the
// *http2responseWriter to a ResponseWriter for its handler func: the itab it loads into RAX for that call.
const (
	fnH2RunHandler = "net/http.(*http2serverConn).runHandler"
	symH2Itab      = "go:itab.*net/http.http2responseWriter,net/http.ResponseWriter"
)

// setH2Writer tells serve_http_ret which ResponseWriter is HTTP/2's and where its status is: the itab from the symbol
// table, or where that is stripped, from the LEA before runHandler's indirect call; the offsets resolved with the
// others (offsErr: why they were not). Where either is not found, HTTP/2 requests are counted with status unknown
// (StatusUnknown), as the log says.
func (b *binProbes) setH2Writer(sym *symtab.Binary, spec *ebpf.CollectionSpec, serve symtab.Func, offs map[offsets.Field]uint64, offsErr error) error {
	itab, from, err := h2Itab(sym)
	if err == nil {
		err = offsErr
	}
	if err != nil {
		b.log.Info("HTTP/2 requests are counted with status unknown", "exe", b.exe, "why", err.Error())
		return nil
	}
	b.log.Info("HTTP/2 statuses read through the writer's state", "exe", b.exe, "itab", from)
	for name, fl := range map[string]offsets.Field{"off_h2writer_rws": offsets.H2WriterState, "off_h2state_status": offsets.H2Status} {
		if err := spec.Variables[name].Set(offs[fl]); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	return setItab(spec, "h2_itab", itab, serve)
}

// symXH2Itab is the itab of golang.org/x/net/http2's own server's writer: present where the executable serves with
// it, as fnXH2RunHandler is (the only one of the two a stripped executable keeps).
const (
	symXH2Itab      = "go:itab.*golang.org/x/net/http2.responseWriter,net/http.ResponseWriter"
	fnXH2RunHandler = "golang.org/x/net/http2.(*serverConn).runHandler"
)

// setXNetH2Writer tells serve_http_ret which ResponseWriter is golang.org/x/net/http2's own server's and where its
// status is, when the executable serves with it (its itab is in the symbol table) and has DWARF: the offsets follow
// x/net's version, for which there is no fallback table. Otherwise such requests are counted with status unknown, as
// the log says; executables without that server pay neither the log line nor the lookup.
func (b *binProbes) setXNetH2Writer(sym *symtab.Binary, spec *ebpf.CollectionSpec, serve symtab.Func) error {
	syms, err := sym.Symbols(symXH2Itab)
	if err != nil {
		if _, ferr := sym.Func(fnXH2RunHandler); ferr == nil { // serves with it, stripped: the log says so
			b.log.Info("golang.org/x/net/http2 server requests are counted with status unknown", "exe", b.exe, "why", err.Error())
		}
		return nil
	}
	offs, _, err := b.dwarf.Resolve(offsets.XH2WriterState, offsets.XH2Status)
	if err != nil {
		b.log.Info("golang.org/x/net/http2 server requests are counted with status unknown", "exe", b.exe, "why", err.Error())
		return nil
	}
	b.log.Info("golang.org/x/net/http2 server statuses read through the writer's state", "exe", b.exe)
	for name, fl := range map[string]offsets.Field{"off_xh2writer_rws": offsets.XH2WriterState, "off_xh2state_status": offsets.XH2Status} {
		if err := spec.Variables[name].Set(offs[fl]); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	return setItab(spec, "xh2_itab", syms[symXH2Itab], serve)
}

// h2Itab finds the itab of (*http2responseWriter, ResponseWriter) and says where: "symbols" or "code".
func h2Itab(sym *symtab.Binary) (uint64, string, error) {
	if syms, err := sym.Symbols(symH2Itab); err == nil {
		return syms[symH2Itab], "symbols", nil
	}
	run, err := sym.Func(fnH2RunHandler)
	if err != nil {
		return 0, "code", err
	}
	itab, err := sym.IndirectArgAddr(run, x86asm.RAX)
	return itab, "code", err
}

// setItab sets <name>_from_ip and <name>_known. The entry probe sees the itab at run time and the address it is on,
// so the program is given their distance, the same in every process whatever a PIE's load bias.
func setItab(spec *ebpf.CollectionSpec, name string, itab uint64, serve symtab.Func) error {
	probe := serve.Entry + (serve.CallOff - serve.EntryOff) // serve_http_enter's address (attached at CallOff)
	if err := spec.Variables[name+"_from_ip"].Set(int64(itab - probe)); err != nil {
		return fmt.Errorf("set %s_from_ip: %w", name, err)
	}
	if err := spec.Variables[name+"_known"].Set(uint8(1)); err != nil {
		return fmt.Errorf("set %s_known: %w", name, err)
	}
	return nil
}

// Where a request whose handler panicked (or called runtime.Goexit) ends, on the handler's goroutine: over HTTP/1
// conn.serve's deferred function calls inFlightResponse.disableWriteContinue() only for such a request, over HTTP/2
// runHandler's deferred function calls writeFrameFromHandler (the stream's RST_STREAM) only for one (see
// serve_http_panic in httpserver.c).
var panicExits = []struct{ proto, caller, callee string }{
	{"HTTP/1", "net/http.(*conn).serve.func1", "net/http.(*response).disableWriteContinue"},
	{"HTTP/2", "net/http.(*http2serverConn).runHandler.func1", "net/http.(*http2serverConn).writeFrameFromHandler"},
}

// attachPanicExit puts serve_http_panic on those calls. It is a refinement: where net/http has no such call (another
// release, HTTP/2 left out), requests whose handler panicked stay uncounted, as the log says, and the probe's other
// programs stay on.
func (b *binProbes) attachPanicExit(sym *symtab.Binary, ex *link.Executable, prog *ebpf.Program) {
	for _, p := range panicExits {
		fs, err := funcs(sym, p.caller, p.callee)
		var offs []uint64
		if err == nil {
			offs, err = sym.CallsIn(fs[0], fs[1])
		}
		if err == nil && len(offs) != 1 {
			err = fmt.Errorf("%d calls of %s in %s, want 1", len(offs), p.callee, p.caller)
		}
		if err == nil {
			err = b.uprobeAt(ex, fs[0], prog, offs)
		}
		if err != nil {
			b.log.Info("requests whose handler panicked are not counted", "exe", b.exe, "proto", p.proto, "why", err.Error())
		}
	}
}

func (b *binProbes) attachGoRuntime(sym *symtab.Binary, ex *link.Executable) error {
	fs, err := funcs(sym, fnStopWorld, fnStartWorld, fnNewproc1)
	if err != nil {
		return err
	}
	spec, err := goruntime.LoadBpf()
	if err != nil {
		return err
	}
	if b.slotEntries > 0 {
		spec.Maps["goroutine_slots"].MaxEntries = b.slotEntries
		spec.Maps["stw_hist_slots"].MaxEntries = b.slotEntries
	}
	if b.processEntries > 0 {
		for _, m := range []string{"stw_begin", "stw", "goroutines"} {
			spec.Maps[m].MaxEntries = b.processEntries
		}
	}
	if err := setExitVars(spec, b.id.ino); err != nil {
		return err
	}
	var objs struct {
		goruntime.BpfMaps
		StopTheWorld     *ebpf.Program `ebpf:"stop_the_world"`
		StartTheWorldRet *ebpf.Program `ebpf:"start_the_world_ret"`
		Newproc1         *ebpf.Program `ebpf:"newproc1"`
	}
	if err := b.load(spec, &objs); err != nil {
		return err
	}
	b.closer = append(b.closer, &objs.BpfMaps, closers{objs.StopTheWorld, objs.StartTheWorldRet, objs.Newproc1})
	b.rt = &objs.BpfMaps
	if err := b.uprobeAt(ex, fs[0], objs.StopTheWorld, []uint64{fs[0].CallOff}); err != nil {
		return err
	}
	if err := b.uprobeAt(ex, fs[1], objs.StartTheWorldRet, b.exits(sym, fs[1])); err != nil { // reads no register
		return err
	}
	// Goroutine creations: the runtime counts them itself, and reading its counters at scrape time costs the target
	// nothing, where the newproc1 uprobe is a trap per goroutine (net/http starts one per request).
	c, err := gocount.Locate(sym, b.dwarf)
	switch {
	case b.goroutinesByUprobe:
	case err != nil:
		b.log.Info("goroutine creations counted by a newproc1 uprobe", "exe", b.exe, "why", err.Error())
	case !canReadMemory():
		b.log.Info("goroutine creations counted by a newproc1 uprobe", "exe", b.exe, "why", "no CAP_SYS_PTRACE to read the runtime's counters")
	default:
		b.log.Info("goroutine creations read from the runtime's counters", "exe", b.exe, "addresses", c.Addrs, "offsets", c.Offsets)
		b.goroutines = &c
		return nil
	}
	return b.uprobeAt(ex, fs[2], objs.Newproc1, []uint64{fs[2].CallOff})
}

// attachAccept puts the TCP probe's passive-open program at the exits of internal/poll.(*FD).Accept, where every
// accepted connection of a Go program returns its fd (in RAX, the program reads it). The program and its maps belong
// to the system probe: only the links are this binary's.
func (b *binProbes) attachAccept(prog *ebpf.Program) func(*symtab.Binary, *link.Executable) error {
	return func(sym *symtab.Binary, ex *link.Executable) error {
		fs, err := funcs(sym, fnAccept)
		if err != nil {
			return err
		}
		return b.uprobeAt(ex, fs[0], prog, b.exits(sym, fs[0], x86asm.RAX))
	}
}
