//go:build ignore

// Go runtime: stop-the-world pauses (runtime.stopTheWorldWithSema entry -> runtime.startTheWorldWithSema RET, the
// same span the runtime's own /sched/pauses metrics measure) and goroutine creations (runtime.newproc1 entry).
// A process has at most one stop-the-world in progress, so pauses are keyed by process alone.
#include "procexit.h"

// The start of the pause in progress, on the fast path: an array slot picked by hashing the pid, claimed with one
// compare-and-swap at stopTheWorldWithSema and released when startTheWorldWithSema returns (an array lookup is
// inlined by the verifier, and no element is allocated or freed inside the pause). A pid whose slot another process
// holds times its pause in stw_begin instead, whose element then stays until the process exits (process_exit):
// inserted and deleted at every pause, it was an allocation and a free (BPF_F_NO_PREALLOC) in each, ~1 us a pause
// warm and ~3.5 us in a fresh process on the measured machine, and a full map lost the pause. The slot of a process
// killed during a pause is freed when it exits (process_exit; it used to stay held).
struct stw_slot {
	__u64 tgid; // 0 = free; 64 bits for the compare-and-swap (32-bit atomics need -mcpu=v3)
	__u64 begin_ns;
};

#define STW_SLOT_BITS 6

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << STW_SLOT_BITS);
	__type(key, __u32);
	__type(value, struct stw_slot);
} stw_slots SEC(".maps");

static __always_inline __u32 stw_index(__u32 tgid) {
	return (__u32)(((__u64)tgid * 0x9E3779B97F4A7C15ULL) >> (64 - STW_SLOT_BITS));
}

// The pause histograms on the fast path: a per-CPU array slot per pid (the same index as its stw_slots slot), claimed
// on each CPU by writing the pid into that CPU's copy, as goroutine_slots below. The histogram used to be allocated in
// stw by a process's first pause (BPF_F_NO_PREALLOC, a per-CPU value): ~15 us inside that pause on the measured
// machine, every goroutine waiting. Another process holding the slot on this CPU sends the pause to stw, as exact;
// the agent reads both and frees the slots of processes that are gone.
struct stw_hist_slot {
	__u32 tgid; // 0 = free on this CPU
	__u32 pad;
	struct lat_hist hist;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1 << STW_SLOT_BITS);
	__type(key, __u32);
	__type(value, struct stw_hist_slot);
} stw_hist_slots SEC(".maps");

// The maps keyed by process hold an entry per probed process, a handful, so none is preallocated (see "Map memory"
// in the README): preallocated, stw alone was 4096 histograms on every possible CPU. stw and goroutines hold one value
// that every CPU adds to atomically, not a value per CPU: a per-CPU hash that is not preallocated takes each new
// element's per-CPU value from the kernel's per-CPU allocator without waiting, which under load had nothing ready (a
// workqueue refills it), so a process's first pause found no element, and was lost with its second, the GC's other
// (TestProcessSeriesAreNotLost: 14 and 19 of 100 processes whose first GC came in a burst, slot tables of one entry).
// A plain element comes from the slab caches.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} stw_begin SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct lat_hist);
} stw SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} goroutines SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lat_hist);
} zero_hist SEC(".maps");

// Events whose process found neither a slot nor room in stw_begin, stw or goroutines (a full map, or an element the
// kernel could not allocate): counted so that a full map is never silent, as the call probes' call_series_dropped
// (shanhai_bpf_runtime_series_dropped_total{series}). Key RT_DROPPED_STW: pauses; RT_DROPPED_GOROUTINES: goroutine
// creations. A plain add per CPU: uprobe programs do not interrupt one another on a CPU.
#define RT_DROPPED_STW 0
#define RT_DROPPED_GOROUTINES 1

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} runtime_dropped SEC(".maps");

static __always_inline void rt_drop(__u32 what) {
	__u64 *n = bpf_map_lookup_elem(&runtime_dropped, &what);
	if (n)
		*n += 1;
}

SEC("uprobe/stop_the_world")
int stop_the_world(struct pt_regs *ctx) {
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 now = bpf_ktime_get_ns();
	__u32 i = stw_index(tgid);
	struct stw_slot *s = bpf_map_lookup_elem(&stw_slots, &i);
	if (s && (s->tgid == tgid || __sync_val_compare_and_swap(&s->tgid, 0, tgid) == 0)) {
		s->begin_ns = now;
		return 0;
	}
	__u64 *begin = bpf_map_lookup_elem(&stw_begin, &tgid);
	if (begin) {
		*begin = now;
		return 0;
	}
	// A process has one stop-the-world at a time, so a failed insert is no other thread's: the pause is lost.
	if (bpf_map_update_elem(&stw_begin, &tgid, &now, BPF_NOEXIST))
		rt_drop(RT_DROPPED_STW);
	return 0;
}

SEC("uprobe/start_the_world_ret")
int start_the_world_ret(struct pt_regs *ctx) {
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 end = bpf_ktime_get_ns(), begin;
	__u32 i = stw_index(tgid);
	struct stw_slot *s = bpf_map_lookup_elem(&stw_slots, &i);
	if (s && s->tgid == tgid && s->begin_ns) {
		begin = s->begin_ns;
		// Release: the start first, then the owner, in program order (x86 keeps stores in order; the barrier
		// keeps clang's), so whoever claims the slot next never finds this pause's start in it.
		s->begin_ns = 0;
		asm volatile("" ::: "memory");
		*(volatile __u64 *)&s->tgid = 0;
	} else {
		__u64 *b = bpf_map_lookup_elem(&stw_begin, &tgid);
		if (!b || !*b)
			return 0;
		begin = *b;
		*b = 0; // no pause in progress; the element stays for the next one
	}
	__u64 d = end - begin;
	struct stw_hist_slot *hs = bpf_map_lookup_elem(&stw_hist_slots, &i); // NULL when the agent made the table smaller
	if (hs) {
		if (hs->tgid == 0)
			hs->tgid = tgid;
		if (hs->tgid == tgid) {
			lat_record(&hs->hist, d);
			return 0;
		}
	}
	// The fallback allocates the process's histogram at its first pause here (see stw_hist_slots).
	struct lat_hist *h = lat_hist_of(&stw, &tgid, &zero_hist);
	if (!h) {
		rt_drop(RT_DROPPED_STW);
		return 0;
	}
	lat_record_shared(h, d);
	return 0;
}

// Goroutine counts on the fast path: a per-CPU array slot picked by hashing the pid, claimed on each CPU by writing
// the pid into that CPU's copy (the array lookup is inlined by the verifier; a hash-map lookup is a call and a jhash,
// which on the measured machine cost more than the rest of this program). Another process holding the slot on this
// CPU sends the count to the hash map instead, so totals stay exact.
struct goroutine_slot {
	__u32 tgid; // 0 = free on this CPU
	__u32 pad;
	__u64 count;
};

#define GOROUTINE_SLOT_BITS 6

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1 << GOROUTINE_SLOT_BITS);
	__type(key, __u32);
	__type(value, struct goroutine_slot);
} goroutine_slots SEC(".maps");

SEC("uprobe/newproc1")
int newproc1(struct pt_regs *ctx) {
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 i = (__u32)(((__u64)tgid * 0x9E3779B97F4A7C15ULL) >> (64 - GOROUTINE_SLOT_BITS));
	struct goroutine_slot *s = bpf_map_lookup_elem(&goroutine_slots, &i); // NULL when the agent made the table smaller
	if (s) {
		if (s->tgid == 0)
			s->tgid = tgid;
		if (s->tgid == tgid) {
			s->count++;
			return 0;
		}
	}
	__u64 *n = bpf_map_lookup_elem(&goroutines, &tgid);
	if (n) {
		__sync_fetch_and_add(n, 1);
		return 0;
	}
	__u64 one = 1;
	if (bpf_map_update_elem(&goroutines, &tgid, &one, BPF_NOEXIST) == 0)
		return 0;
	// Another CPU inserted this process's entry between the lookup and the
	// insert: add to the one it made rather than losing this goroutine.
	n = bpf_map_lookup_elem(&goroutines, &tgid);
	if (n)
		__sync_fetch_and_add(n, 1);
	else
		rt_drop(RT_DROPPED_GOROUTINES);
	return 0;
}

#define CLEAR_STW_HIST(v) lat_hist_clear(&(v)->hist)
#define CLEAR_GOROUTINES(v) ((v)->count = 0)
DEFINE_EXIT_SWEEP(free_stw_hist_copies, stw_hist_slots, struct stw_hist_slot, tgid, CLEAR_STW_HIST)
DEFINE_EXIT_SWEEP(free_goroutine_copies, goroutine_slots, struct goroutine_slot, tgid, CLEAR_GOROUTINES)

// A process of the probed executable exited (see procexit.h): everything it had here goes, so a process that gets
// its pid again starts from zero, and a process killed during a pause no longer keeps its stw_slots slot.
SEC("tracepoint/sched/sched_process_exit")
int process_exit(struct trace_event_raw_sched_process_exit *ctx) {
	__u32 tgid = exiting_target(ctx);
	if (!tgid)
		return 0;
	__u32 i = stw_index(tgid);
	struct stw_slot *s = bpf_map_lookup_elem(&stw_slots, &i);
	if (s && s->tgid == tgid) {
		s->begin_ns = 0;
		asm volatile("" ::: "memory");
		*(volatile __u64 *)&s->tgid = 0;
	}
	bpf_map_delete_elem(&stw_begin, &tgid);
	bpf_map_delete_elem(&stw, &tgid);
	bpf_map_delete_elem(&goroutines, &tgid);
	free_stw_hist_copies(tgid, 1 << STW_SLOT_BITS);
	free_goroutine_copies(tgid, 1 << GOROUTINE_SLOT_BITS);
	return 0;
}
