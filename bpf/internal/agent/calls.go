package agent

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/arch/x86/x86asm"

	"github.com/shanhai-dev/shanhai/bpf/internal/hist"
	"github.com/shanhai-dev/shanhai/bpf/internal/offsets"
	"github.com/shanhai-dev/shanhai/bpf/internal/symtab"
	"github.com/shanhai-dev/shanhai/bpf/probe/db"
	"github.com/shanhai-dev/shanhai/bpf/probe/httpclient"
	"github.com/shanhai-dev/shanhai/bpf/probe/messaging"
)

// callSite is one function timed by the generic call probe (include/calls.h).
type callSite struct {
	op       uint8
	fn       string
	system   string // metric label: http, sql, redis, kafka, nats
	name     string // metric label: the operation
	respReg  int    // result register of a *net/http.Response, 0 = none
	reqReg   int    // argument register of a *net/http.Request, 0 = none
	optional bool   // absent from a binary that does not link the library: skip, not fail
	nest     uint8  // nesting group (include/calls.h): a call of the group inside another on its goroutine is not counted
	// lastCall, when set, is the function fn always calls last: the call's exit is where that call returns in fn,
	// and its error is that callee's, not fn's (see the pipelines below).
	lastCall string
}

// The ops; the numbers travel in attach cookies and come back in map keys.
var callSites = map[string][]callSite{
	"httpclient": {
		{op: 1, fn: "net/http.(*Transport).roundTrip", system: "http", name: "roundtrip", respReg: 1, reqReg: 2},
	},
	"db": {
		{op: 2, fn: "database/sql.(*DB).queryDC", system: "sql", name: "query", optional: true},
		{op: 3, fn: "database/sql.(*DB).execDC", system: "sql", name: "exec", optional: true},
		// go-redis runs a new connection's handshake (HELLO, CLIENT MAINT_NOTIFICATIONS, a CLIENT SETINFO pipeline)
		// through these same functions inside the application's call that dialled: one group, outermost counted.
		// A pipeline (Pipelined, TxPipelined, Exec) is one call; its commands do not go through _process. Method
		// wrappers in method tables JMP to processPipeline, so its own exits cannot be found and its RETs would be
		// single-stepped (tens of microseconds here, on the user service's every profile read); it ends where its
		// one call of generalProcessPipelineFrom returns, and that call's error says whether the pipeline failed as
		// a whole (connection, write, read, MULTI/EXEC), not whether one of its commands got an error reply.
		{op: 4, fn: "github.com/redis/go-redis/v9.(*baseClient)._process", system: "redis", name: "process", optional: true, nest: 4},
		{op: 8, fn: "github.com/redis/go-redis/v9.(*baseClient).processPipeline", system: "redis", name: "pipeline", optional: true, nest: 4,
			lastCall: redisPipelineCall},
		{op: 9, fn: "github.com/redis/go-redis/v9.(*baseClient).processTxPipeline", system: "redis", name: "tx_pipeline", optional: true, nest: 4,
			lastCall: redisPipelineCall},
	},
	"messaging": {
		{op: 5, fn: "github.com/segmentio/kafka-go.(*Writer).WriteMessages", system: "kafka", name: "publish", optional: true},
		{op: 6, fn: "github.com/nats-io/nats%2ego.(*Conn).publish", system: "nats", name: "publish", optional: true}, // the linker escapes the dot in "nats.go"; Publish itself is inlined
		{op: 7, fn: "github.com/apache/pulsar-client-go/pulsar.(*producer).Send", system: "pulsar", name: "publish", optional: true},
	},
}

const redisPipelineCall = "github.com/redis/go-redis/v9.(*baseClient).generalProcessPipelineFrom"

var opByID = func() map[uint16]callSite {
	m := map[uint16]callSite{}
	for _, sites := range callSites {
		for _, s := range sites {
			m[uint16(s.op)] = s
		}
	}
	return m
}()

// callObjects is what the three call probes' generated objects have in common.
type callObjects struct {
	enter, ret *ebpf.Program
	calls      *ebpf.Map
	inflight   *ebpf.Map
	slots      *ebpf.Map // struct call_slot array (in flight, fast path)
	aggSlots   *ebpf.Map // struct call_agg_slot per-CPU array (series, fast path)
	dropped    *ebpf.Map // call_series_dropped: calls whose series found no room (per-CPU counter)
	closer     interface{ Close() error }
}

// loadCallProbe loads probe's object (b.load: with or without its process_exit).
func (b *binProbes) loadCallProbe(probe string, offs map[offsets.Field]uint64) (*callObjects, error) {
	var spec *ebpf.CollectionSpec
	var err error
	switch probe {
	case "httpclient":
		spec, err = httpclient.LoadBpf()
	case "db":
		spec, err = db.LoadBpf()
	case "messaging":
		spec, err = messaging.LoadBpf()
	default:
		return nil, fmt.Errorf("unknown call probe %s", probe)
	}
	if err != nil {
		return nil, err
	}
	for name, fl := range map[string]offsets.Field{"off_request_method": offsets.RequestMethod, "off_response_status": offsets.ResponseStatusCode} {
		if err := spec.Variables[name].Set(offs[fl]); err != nil {
			return nil, fmt.Errorf("set %s: %w", name, err)
		}
	}
	if b.slotEntries > 0 {
		spec.Maps["call_slots"].MaxEntries = b.slotEntries
		spec.Maps["call_agg_slots"].MaxEntries = b.slotEntries
	}
	if b.inflightEntries > 0 {
		spec.Maps["call_inflight"].MaxEntries = b.inflightEntries
	}
	if err := setExitVars(spec, b.id.ino); err != nil {
		return nil, err
	}
	var objs struct {
		Enter *ebpf.Program `ebpf:"call_enter"`
		Ret   *ebpf.Program `ebpf:"call_ret"`
		Calls *ebpf.Map     `ebpf:"calls"`
		Infl  *ebpf.Map     `ebpf:"call_inflight"`
		Zero  *ebpf.Map     `ebpf:"call_zero"`
		Slots *ebpf.Map     `ebpf:"call_slots"`
		Agg   *ebpf.Map     `ebpf:"call_agg_slots"`
		Drop  *ebpf.Map     `ebpf:"call_series_dropped"`
	}
	if err := b.load(spec, &objs); err != nil {
		return nil, err
	}
	return &callObjects{enter: objs.Enter, ret: objs.Ret, calls: objs.Calls, inflight: objs.Infl, slots: objs.Slots, aggSlots: objs.Agg,
		dropped: objs.Drop, closer: closers{objs.Enter, objs.Ret, objs.Calls, objs.Infl, objs.Zero, objs.Slots, objs.Agg, objs.Drop}}, nil
}

type closers []interface{ Close() error }

func (c closers) Close() error {
	var errs []error
	for _, x := range c {
		errs = append(errs, x.Close())
	}
	return errors.Join(errs...)
}

// attachCalls returns an attach function for one of the call probes.
func (b *binProbes) attachCalls(probe string) func(*symtab.Binary, *link.Executable) error {
	return func(sym *symtab.Binary, ex *link.Executable) error {
		type found struct {
			site   callSite
			fn     symtab.Func
			errReg int
			last   symtab.Func // site.lastCall's
		}
		var fs []found
		for _, s := range callSites[probe] {
			f, err := sym.Func(s.fn)
			if errors.Is(err, symtab.ErrNotFound) && s.optional {
				continue
			}
			if err != nil {
				return err
			}
			errFn, last := s.fn, symtab.Func{}
			if s.lastCall != "" {
				last, err = sym.Func(s.lastCall)
				if errors.Is(err, symtab.ErrNotFound) && s.optional {
					b.log.Info("call not probed: its exit is not found", "exe", b.exe, "func", s.fn, "why", err.Error())
					continue
				}
				if err != nil {
					return err
				}
				errFn = s.lastCall
			}
			reg, _, err := b.dwarf.ErrorRegister(errFn)
			if err != nil {
				return err
			}
			fs = append(fs, found{s, f, reg, last})
		}
		if len(fs) == 0 {
			return fmt.Errorf("none of the %s functions: %w", probe, symtab.ErrNotFound)
		}
		offs, _, err := b.dwarf.Resolve(offsets.RequestMethod, offsets.ResponseStatusCode)
		if err != nil {
			return err
		}
		objs, err := b.loadCallProbe(probe, offs)
		if err != nil {
			return err
		}
		b.closer = append(b.closer, objs.closer)
		b.calls = append(b.calls, objs.calls)
		b.callsInflight = append(b.callsInflight, objs.inflight)
		b.callSlots = append(b.callSlots, objs.slots)
		b.callAggSlots = append(b.callAggSlots, objs.aggSlots)
		b.callDropped[probe] = objs.dropped
		for _, f := range fs {
			cookie := uint64(f.site.op) | uint64(f.errReg)<<8 | uint64(f.site.respReg)<<12 | uint64(f.site.reqReg)<<16 | uint64(f.site.nest)<<24
			if f.site.nest == 0 {
				cookie |= 1 << 20 // a call inside another of its op on one goroutine counts (include/calls.h, CALL_INNER)
			}
			// The entry probe's offset in the function: include/calls.h finds the function's address from it to
			// tell the frame of a call in flight from another at its place (call_is_nested).
			cookie |= (f.fn.CallOff - f.fn.EntryOff) << 32
			var keep []x86asm.Reg // the result registers call_ret reads
			for _, r := range []int{f.errReg, f.site.respReg} {
				if r > 0 {
					keep = append(keep, resultRegs[r-1])
				}
			}
			var offs []uint64
			if f.site.lastCall == "" {
				offs = b.exits(sym, f.fn, keep...)
			} else if offs, err = b.lastCallExits(sym, f.fn, f.last, keep...); err != nil {
				b.log.Info("call not probed: its exit is not found", "exe", b.exe, "func", f.fn.Name, "why", err.Error())
				continue
			}
			if err := b.uprobeCookie(ex, f.fn, objs.enter, []uint64{f.fn.CallOff}, cookie); err != nil {
				return err
			}
			if err := b.uprobeCookie(ex, f.fn, objs.ret, offs, cookie); err != nil {
				return err
			}
		}
		return nil
	}
}

// lastCallExits is exits for a call that ends where its call of last returns (callSite.lastCall).
func (b *binProbes) lastCallExits(sym *symtab.Binary, fn, last symtab.Func, keep ...x86asm.Reg) ([]uint64, error) {
	offs, stepped, err := sym.CallExitsIn(fn, last, keep...)
	if err != nil {
		return nil, err
	}
	b.log.Info("exit probes after the call of its last callee", "exe", b.exe, "func", fn.Name, "callee", last.Name,
		"emulated", len(offs)-stepped, "stepped", stepped)
	return offs, nil
}

func (b *binProbes) uprobeCookie(ex *link.Executable, fn symtab.Func, prog *ebpf.Program, addrs []uint64, cookie uint64) error {
	for _, a := range addrs {
		l, err := ex.Uprobe(fn.Name, prog, &link.UprobeOptions{Address: a, Cookie: cookie})
		if err != nil {
			return fmt.Errorf("uprobe %s at %#x: %w", fn.Name, a, err)
		}
		b.links = append(b.links, l)
	}
	return nil
}

// resultRegs are Go's integer result registers (ABIInternal, amd64) in order, as the cookie numbers them from 1.
var resultRegs = []x86asm.Reg{x86asm.RAX, x86asm.RBX, x86asm.RCX, x86asm.RDI, x86asm.RSI, x86asm.R8, x86asm.R9, x86asm.R10, x86asm.R11}

// Call identifies one call series: process, system and operation, HTTP method and status (client calls only), error.
type Call struct {
	PID       int
	System    string
	Operation string
	Method    string
	Status    int
	Error     bool
}

// readCalls adds a call probe's fallback series (calls in include/calls.h: a hash whose one value the CPUs share) to s.
func readCalls(m *ebpf.Map, s *Snapshot) error {
	// httpclient.BpfCallKey: the same layout in every call probe (include/calls.h).
	return eachKeyOnce(m, func(k httpclient.BpfCallKey, v *hist.Hist) { addCall(s, k, v) })
}

func addCall(s *Snapshot, k httpclient.BpfCallKey, v *hist.Hist) {
	site := opByID[k.Op]
	c := Call{PID: int(k.Tgid), System: site.system, Operation: site.name, Method: cstr(k.Method[:]), Status: int(k.Status), Error: k.Error != 0}
	h := s.Calls[c]
	h.Add(v)
	s.Calls[c] = h
}

// callAggSlot is struct call_agg_slot (include/calls.h) with the histogram in the hist package's layout.
type callAggSlot struct {
	Key  httpclient.BpfCallKey
	Pad  uint32
	Hist hist.Hist
}

func callAggTgid(v *callAggSlot) uint32 { return v.Key.Tgid }

// readCallAggSlots adds a call probe's per-CPU series slots to s (see eachLiveSlotCopy).
func readCallAggSlots(m *ebpf.Map, s *Snapshot) error {
	return eachLiveSlotCopy(m, callAggTgid, func(v *callAggSlot) {
		if v.Hist.Count != 0 {
			addCall(s, v.Key, &v.Hist)
		}
	})
}
