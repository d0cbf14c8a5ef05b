package agent

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"strconv"

	"github.com/cilium/ebpf"

	"github.com/shanhai-dev/shanhai/bpf/internal/hist"
	"github.com/shanhai-dev/shanhai/bpf/probe/goruntime"
	"github.com/shanhai-dev/shanhai/bpf/probe/httpclient"
	"github.com/shanhai-dev/shanhai/bpf/probe/httpserver"
	"github.com/shanhai-dev/shanhai/bpf/probe/tcp"
)

// RED identifies one request series: process, method, status.
type RED struct {
	PID    int
	Method string
	Status int // the HTTP status, StatusHijacked or StatusUnknown
}

// StatusHijacked is the Status of requests whose handler took the connection over (Hijack: a WebSocket upgrade, a
// CONNECT tunnel; STATUS_HIJACKED in httpserver.c): their ServeHTTP lasts the whole session, so they are kept out of
// the request-duration histogram (shanhai_bpf_http_server_hijacked_duration_seconds). Uprobe mode only: the socket
// probe sees the 101 the hijacker writes, and times the request to it.
const StatusHijacked = 1

// StatusUnknown is the Status of requests answered through a ResponseWriter whose status the probe does not read
// (STATUS_UNKNOWN in httpserver.c): golang.org/x/net/http2's own server's where the executable has no DWARF or no
// symbol table, net/http's HTTP/2 writer where the agent did not find it. Exported with status="unknown" and
// status_class="unknown"; they used to be counted 200 whatever they answered.
const StatusUnknown = 2

// TCPStats are one process's connection counters.
type TCPStats struct {
	Active, Passive, Closed, Failed, Retransmits uint64
}

// Snapshot is everything the probes have counted, summed over CPUs, keyed by process.
type Snapshot struct {
	Server     map[RED]hist.Hist
	STW        map[int]hist.Hist
	Goroutines map[int]uint64
	TCP        map[int]TCPStats
	Calls      map[Call]hist.Hist
}

// ServerTotal sums the server requests of pid.
func (s Snapshot) ServerTotal(pid int) (n uint64) {
	for k, h := range s.Server {
		if k.PID == pid {
			n += h.Count
		}
	}
	return n
}

func newSnapshot() Snapshot {
	return Snapshot{Server: map[RED]hist.Hist{}, STW: map[int]hist.Hist{}, Goroutines: map[int]uint64{}, TCP: map[int]TCPStats{}, Calls: map[Call]hist.Hist{}}
}

// add adds o's series to s's, as the maps of two executables are (a process that execs another target has series
// in both).
func (s *Snapshot) add(o *Snapshot) {
	for k, h := range o.Server {
		sh := s.Server[k]
		sh.Add(&h)
		s.Server[k] = sh
	}
	for k, h := range o.Calls {
		sh := s.Calls[k]
		sh.Add(&h)
		s.Calls[k] = sh
	}
	for pid, h := range o.STW {
		sh := s.STW[pid]
		sh.Add(&h)
		s.STW[pid] = sh
	}
	for pid, n := range o.Goroutines {
		s.Goroutines[pid] += n
	}
	for pid, t := range o.TCP {
		s.TCP[pid] = t // machine-wide, read once per snapshot
	}
}

// prune deletes the series of the processes that are not alive.
func (s *Snapshot) prune(alive func(pid int) bool) {
	maps.DeleteFunc(s.Server, func(k RED, _ hist.Hist) bool { return !alive(k.PID) })
	maps.DeleteFunc(s.Calls, func(k Call, _ hist.Hist) bool { return !alive(k.PID) })
	maps.DeleteFunc(s.STW, func(pid int, _ hist.Hist) bool { return !alive(pid) })
	maps.DeleteFunc(s.Goroutines, func(pid int, _ uint64) bool { return !alive(pid) })
	maps.DeleteFunc(s.TCP, func(pid int, _ TCPStats) bool { return !alive(pid) })
}

func cstr(b []int8) string {
	u := make([]byte, len(b))
	for i, c := range b {
		u[i] = byte(c)
	}
	if i := bytes.IndexByte(u, 0); i >= 0 {
		u = u[:i]
	}
	return string(u)
}

func (b *binProbes) read(s *Snapshot) error {
	if b.http != nil {
		if err := readREDMap(b.http.Requests, s); err != nil {
			return fmt.Errorf("read http server map: %w", err)
		}
		if err := readREDSlots(b.http.RedSlots, s); err != nil {
			return fmt.Errorf("read http server slots: %w", err)
		}
	}
	for _, m := range b.calls {
		if err := readCalls(m, s); err != nil {
			return fmt.Errorf("read call map: %w", err)
		}
	}
	for _, m := range b.callAggSlots {
		if err := readCallAggSlots(m, s); err != nil {
			return fmt.Errorf("read call slots: %w", err)
		}
	}
	if b.rt != nil {
		// Add, not set: a process that execs another target keeps its pid, and its pauses before and after the
		// exec sit in the two executables' maps. One value per process, shared by the CPUs (stw in goruntime.c).
		err := eachKeyOnce(b.rt.Stw, func(pid uint32, v *hist.Hist) {
			h := s.STW[int(pid)]
			h.Add(v)
			s.STW[int(pid)] = h
		})
		if err != nil {
			return fmt.Errorf("read stw map: %w", err)
		}
		// The fast-path histograms: each CPU's copy names its own pid (see stw_hist_slot in goruntime.c).
		err = eachLiveSlotCopy(b.rt.StwHistSlots, stwHistTgid, func(v *stwHistSlot) {
			if v.Hist.Count != 0 {
				h := s.STW[int(v.Tgid)]
				h.Add(&v.Hist)
				s.STW[int(v.Tgid)] = h
			}
		})
		if err != nil {
			return fmt.Errorf("read stw slots: %w", err)
		}
		err = eachKeyOnce(b.rt.Goroutines, func(pid uint32, n *uint64) {
			s.Goroutines[int(pid)] += *n // as the pauses above
		})
		if err != nil {
			return fmt.Errorf("read goroutine map: %w", err)
		}
		// The fast-path slots: each CPU's copy names its own pid (see goroutine_slot in goruntime.c).
		err = eachLiveSlotCopy(b.rt.GoroutineSlots, goroutineTgid, func(v *goruntime.BpfGoroutineSlot) {
			if v.Count != 0 {
				s.Goroutines[int(v.Tgid)] += v.Count
			}
		})
		if err != nil {
			return fmt.Errorf("read goroutine slots: %w", err)
		}
	}
	return nil
}

// readREDMap adds a hash of struct red_key -> struct lat_hist (both HTTP server probes keep one, its value shared by
// the CPUs) to s.
func readREDMap(m *ebpf.Map, s *Snapshot) error {
	return eachKeyOnce(m, func(k httpserver.BpfRedKey, v *hist.Hist) {
		r := RED{PID: int(k.Tgid), Method: cstr(k.Method[:]), Status: int(k.Status)}
		h := s.Server[r]
		h.Add(v)
		s.Server[r] = h
	})
}

// eachKeyOnce calls fn once for each key of the hash map m with its value. A walk of a hash map is a chain of
// next-key calls, and when the key it stands on is deleted meanwhile (a process_exit program deleting an exiting
// process's entries, in the runtime probe) the kernel answers the map's first key and the walk starts over: the
// keys before it come twice. The callers add what they read, so such a scrape counted those keys twice and the next
// one did not, a counter going back (TestScrapesDuringExitsCountEachProcessOnce: idle processes' pauses doubled
// while others exited). The walk is collected by key first, the last value read winning.
func eachKeyOnce[K comparable, V any](m *ebpf.Map, fn func(K, *V)) error {
	seen := map[K]V{}
	var k K
	var v V
	it := m.Iterate()
	for it.Next(&k, &v) {
		seen[k] = v
	}
	if err := it.Err(); err != nil {
		return err
	}
	for k, v := range seen {
		fn(k, &v)
	}
	return nil
}

func goroutineTgid(v *goruntime.BpfGoroutineSlot) uint32 { return v.Tgid }

// stwHistSlot is struct stw_hist_slot (probe/goruntime) with the histogram in the hist package's layout.
type stwHistSlot struct {
	Tgid, Pad uint32
	Hist      hist.Hist
}

func stwHistTgid(v *stwHistSlot) uint32 { return v.Tgid }

// read adds the TCP counters of the targets (procs) to s, looking each up: the map holds every process's that
// used TCP on the machine, most of them no target. One value per process, shared by the CPUs (tcp in tcp.c).
func (sy *system) read(s *Snapshot, procs map[int]proc) error {
	var v tcp.BpfTcpStats
	for pid := range procs {
		err := sy.tcp.Tcp.Lookup(uint32(pid), &v)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read the tcp counters of pid %d: %w", pid, err)
		}
		closed := v.Closed
		if u := sy.unseen[uint32(pid)]; u.start == v.Start {
			closed += u.closed
		}
		s.TCP[pid] = TCPStats{Active: v.Active, Passive: v.Passive, Closed: closed, Failed: v.Failed, Retransmits: v.Retrans}
	}
	return nil
}

// prune deletes the entries of processes that are gone from a map keyed by a struct whose first field is the pid
// (or by the pid itself).
func prune(m *ebpf.Map, alive func(pid int) bool) {
	if m == nil {
		return
	}
	var dead [][]byte
	var cur any // nil asks for the first key
	for {
		next := make([]byte, m.KeySize())
		if err := m.NextKey(cur, next); err != nil {
			break
		}
		if len(next) >= 4 && !alive(int(binary.LittleEndian.Uint32(next))) {
			dead = append(dead, next)
		}
		cur = next
	}
	for _, d := range dead {
		_ = m.Delete(d)
	}
}

// redSlot is struct red_slot (probe/httpserver) with the histogram in the hist package's layout.
type redSlot struct {
	Key  httpserver.BpfRedKey
	Hist hist.Hist
}

// readREDSlots adds the per-CPU series slots of the HTTP server probe to s.
func readREDSlots(m *ebpf.Map, s *Snapshot) error {
	return eachLiveSlotCopy(m, redTgid, func(v *redSlot) {
		if v.Hist.Count == 0 {
			return
		}
		r := RED{PID: int(v.Key.Tgid), Method: cstr(v.Key.Method[:]), Status: int(v.Key.Status)}
		h := s.Server[r]
		h.Add(&v.Hist)
		s.Server[r] = h
	})
}

// eachLiveSlotCopy calls fn with every CPU copy of a per-CPU slot map's values that a live process owns (tgid reads a
// copy's owner). Each CPU's copy of a slot carries its own key (a CPU claims a free slot for the first series that
// hashes to it there), so callers sum copies by key, not by index. Copies of processes that are gone are skipped:
// prunePerCPUSlots frees them only when no CPU could be writing the slot.
func eachLiveSlotCopy[T any](m *ebpf.Map, tgid func(*T) uint32, fn func(*T)) error {
	alive := pidAlive()
	return eachSlotChunk(m, func(_ []uint32, vals []T, _ int) error {
		for i := range vals {
			if t := tgid(&vals[i]); t != 0 && alive(int(t)) {
				fn(&vals[i])
			}
		}
		return nil
	})
}

// slotChunkBytes bounds the values one read of a slot table copies. A whole per-CPU series table is 2^8 indexes x
// ~1.7 KB x the possible CPUs: 26 MiB at 64 of them, against the 128Mi limit of the agent's DaemonSet, and a VM often
// has many more possible CPUs than online ones. 64 KiB is an in-flight table (2^10 x 64 B) in one syscall and a
// series table in 14 on 2 CPUs; an index bigger than this is read alone.
const slotChunkBytes = 64 << 10

// eachSlotChunk reads a slot table, an array map, with BPF_MAP_LOOKUP_BATCH, a chunk of indexes a syscall (a
// MapIterator makes two per index, next key and lookup, most of them free), into one buffer that it hands to fn chunk
// by chunk. A per-CPU array has ncpu copies of each index: those of keys[i] are vals[i*ncpu:(i+1)*ncpu]; a plain array
// has one (ncpu is 1). fn must not keep keys or vals: the next chunk is read into them.
func eachSlotChunk[T any](m *ebpf.Map, fn func(keys []uint32, vals []T, ncpu int) error) error {
	ncpu := 1
	if m.Type() == ebpf.PerCPUArray {
		var err error
		if ncpu, err = ebpf.PossibleCPU(); err != nil {
			return fmt.Errorf("possible CPUs: %w", err)
		}
	}
	n := int(m.MaxEntries())
	chunk := min(n, max(1, slotChunkBytes/(ncpu*int(m.ValueSize()))))
	keys, vals := make([]uint32, chunk), make([]T, chunk*ncpu)
	var cursor ebpf.MapBatchCursor
	for read := 0; read < n; {
		k, err := m.BatchLookup(&cursor, keys, vals, nil)
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("read %v: %w", m, err)
		}
		if k > 0 {
			if err := fn(keys[:k], vals[:k*ncpu], ncpu); err != nil {
				return err
			}
		}
		read += k
		if err != nil || k == 0 { // ErrKeyNotExist: the chunk ended at the last index
			break
		}
	}
	return nil
}

// pidAlive reports whether a process exists, remembering the answers of one call's lifetime.
func pidAlive() func(pid int) bool {
	seen := map[int]bool{}
	return func(pid int) bool {
		ok, found := seen[pid]
		if !found {
			_, err := os.Stat("/proc/" + strconv.Itoa(pid))
			ok = err == nil
			seen[pid] = ok
		}
		return ok
	}
}

// prunePerCPUSlots frees the per-CPU series slots whose every CPU copy belongs to a process that is gone (tgid reads
// a copy's owner). A slot with a free or live copy is left alone: a per-CPU value can only be written whole, and
// writing back a copy that a CPU is claiming or counting into would lose its counts. Until then the kernel sends that
// slot's new series to the fallback hash map, which stays exact.
func prunePerCPUSlots[T any](m *ebpf.Map, alive func(pid int) bool, tgid func(*T) uint32) error {
	if m == nil {
		return nil
	}
	var zero []T
	return eachSlotChunk(m, func(keys []uint32, vals []T, ncpu int) error {
		for i, k := range keys {
			copies, dead := vals[i*ncpu:(i+1)*ncpu], true
			for c := range copies {
				if t := tgid(&copies[c]); t == 0 || alive(int(t)) {
					dead = false
					break
				}
			}
			if dead {
				if zero == nil {
					zero = make([]T, ncpu)
				}
				if err := m.Put(k, zero); err != nil {
					return fmt.Errorf("free slot %d of %v: %w", k, m, err)
				}
			}
		}
		return nil
	})
}

func redTgid(v *redSlot) uint32 { return v.Key.Tgid }

// pruneOwnedSlots frees the in-flight slots (struct req_slot, struct call_slot; owner reads a slot's tgid and
// goroutine g) of processes that are gone: a call that never returned because the goroutine panicked or the process
// exited mid-call. g is the value's last field, so the whole-value write makes the slot claimable only after its
// other fields are cleared.
func pruneOwnedSlots[T any](m *ebpf.Map, alive func(pid int) bool, owner func(*T) (tgid uint32, g uint64)) error {
	if m == nil {
		return nil
	}
	var zero T
	return eachSlotChunk(m, func(keys []uint32, vals []T, _ int) error {
		for i, k := range keys {
			if tgid, g := owner(&vals[i]); g != 0 && tgid != 0 && !alive(int(tgid)) {
				if err := m.Put(k, &zero); err != nil {
					return fmt.Errorf("free slot %d of %v: %w", k, m, err)
				}
			}
		}
		return nil
	})
}

// sweepSlots frees the slots of processes that are gone in every slot table of the executable's probes.
func (b *binProbes) sweepSlots(alive func(pid int) bool) error {
	var errs []error
	if b.http != nil {
		errs = append(errs, prunePerCPUSlots(b.http.RedSlots, alive, redTgid),
			pruneOwnedSlots(b.http.InflightSlots, alive, reqSlotOwner))
	}
	for _, m := range b.callSlots {
		errs = append(errs, pruneOwnedSlots(m, alive, callSlotOwner))
	}
	for _, m := range b.callAggSlots {
		errs = append(errs, prunePerCPUSlots(m, alive, callAggTgid))
	}
	if b.rt != nil {
		errs = append(errs, prunePerCPUSlots(b.rt.GoroutineSlots, alive, goroutineTgid),
			prunePerCPUSlots(b.rt.StwHistSlots, alive, stwHistTgid))
	}
	return errors.Join(errs...)
}

func reqSlotOwner(v *httpserver.BpfReqSlot) (uint32, uint64) { return v.Tgid, v.G }

// callSlotOwner reads any call probe's struct call_slot: the layout is the same in each (include/calls.h).
func callSlotOwner(v *httpclient.BpfCallSlot) (uint32, uint64) { return v.Tgid, v.G }
