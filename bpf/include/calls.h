// calls.h: one pair of programs that time any Go call from its entry to its exits and count errors, for the probes
// whose only differences are which function, which result register holds the error, and whether there is an HTTP
// request/response to read (HTTP client, database/sql, go-redis, kafka-go). The attach cookie says which:
//   bits 0-7   op: the agent's number for the function, reported back in the key
//   bits 8-11  register (1-based, result order) holding the error's itab word; 0 = no error result
//   bits 12-15 register holding a *net/http.Response at the exit; 0 = none
//   bits 16-19 argument register holding a *net/http.Request at entry; 0 = none
//   bit  20    inner calls count: a call of the op inside another of the same op on the goroutine is a call of its
//              own (below, CALL_INNER); set for the ops in no nesting group
//   bits 24-31 nesting group: 0 = none; else the calls of every op in the group that run inside another one of the
//              group on the same goroutine are not calls of their own (below)
//   bits 32-63 the entry probe's offset in its function (after the stack check): the entry minus it is the function's
//              address, which a nested call's test compares with the outer frame's call instruction (call_is_nested)
#pragma once

#include "procexit.h"

volatile const __u64 off_request_method = 0;    // net/http.Request.Method
volatile const __u64 off_response_status = 16;  // net/http.Response.StatusCode

#define CALL_METHOD_LEN 8

struct call_inflight_key {
	__u32 tgid;
	__u32 op; // the key's op, | CALL_INNER for the call inside it
	__u64 g;
};

// Inner calls (cookie bit 20): net/http's Transport calls its Proxy function inside roundTrip, on the caller's
// goroutine, and a Proxy that asks a server (a proxy auto-config lookup) makes a client call there. The inner entry
// found the outer call's slot its own and took it over, its exit released it, and the outer call's exit found
// nothing: one of the two calls was lost (TestCallProbes, the clients' nested call). The inner call is told by its
// depth as a group's nested call is (struct call_nest) and kept in call_inflight under the op | CALL_INNER, beside
// the outer call; its exits, deeper than the outer call's frame, end it there. One level: a call inside the inner one
// takes its place, the inner call is lost.
#define CALL_INNER 0x100

// Nesting (go-redis): a new connection's handshake (HELLO, CLIENT MAINT_NOTIFICATIONS, the CLIENT SETINFO pipeline)
// runs through _process and processPipeline on the goroutine of the application's call that dialled it, inside that
// call. Only the outermost call of a group counts, timed from its entry to its own exit, with its own error; the calls
// inside it are told apart by how deep they are on the goroutine's stack, measured from the stack's top (g.stack.hi)
// because the runtime moves stacks and keeps only that distance. A call of the group that is in flight and deeper than
// the outer one is nested when the outer frame is still there: the word the outer call's PUSH RBP saved must still be
// the caller's frame pointer it was (the runtime adjusts saved frame pointers when it moves a stack). Otherwise the
// outer call never returned (a panic) and the new one takes its place, as any call does. The saved frame pointer
// alone does not tell the outer call's frame from another function's that its caller called later from the same frame
// (same position, same saved word): after a missed exit, a later call made inside that other function was taken for a
// call nested in the lost one, and lost or timed from the lost call's start. So the return address beside the saved
// word must follow a call of the outer call's own function (fn) where it is a direct CALL (Go's calls of these
// functions are); an indirect call cannot be told and is taken as the outer call's, as before.
struct call_nest {
	__u64 depth;    // g.stack.hi - SP at the outer call's entry (at its PUSH RBP); 0 = the group does not nest
	__u64 fp_depth; // g.stack.hi - RBP there: the caller's frame pointer the outer call's frame saved
	__u64 fn;       // the outer call's function's address (its entry probe's address less the cookie's offset)
	__u32 op;       // the outer call's own op (the slot and map keys carry the group)
	__u32 nested;   // 1 once a nested call was seen: its exits are then told from the outer's by depth
};

struct call_state {
	__u64 start_ns;
	char method[CALL_METHOD_LEN];
	struct call_nest nest;
};

struct call_key {
	__u32 tgid;
	__u16 op;
	__u16 status; // HTTP status of the response, 0 when none
	__u32 error;  // 1 when the call returned a non-nil error
	char method[CALL_METHOD_LEN];
};

// The fast path uses no hash map, like the HTTP server probe (see httpserver.c for the measurements behind it): a call
// in flight lives in an array slot picked by hashing (process, op, goroutine) and claimed with one compare-and-swap,
// and its series in a per-CPU array slot picked by hashing the key, each CPU's copy carrying its own key. The hash
// maps below stay as the exact fallback when a slot is held by another call or series.
struct call_slot {
	__u32 tgid; // written after the claim, cleared before the release
	__u32 op;
	__u64 start_ns;
	char method[CALL_METHOD_LEN];
	struct call_nest nest;
	__u64 g; // owner goroutine, 0 = free; last, so the agent's whole-value write frees it last
};

struct call_agg_slot {
	struct call_key key; // tgid 0 = free on this CPU
	__u32 pad;
	struct lat_hist hist;
};

#define CALL_SLOT_BITS 10
#define CALL_AGG_BITS 8

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << CALL_SLOT_BITS);
	__type(key, __u32);
	__type(value, struct call_slot);
} call_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1 << CALL_AGG_BITS);
	__type(key, __u32);
	__type(value, struct call_agg_slot);
} call_agg_slots SEC(".maps");

// In-flight calls by (process, op, goroutine) when their slot is taken, reused in place like the HTTP server probe's.
// Neither fallback is preallocated, for the same reason as the HTTP server probe's (README, "Map memory"): preallocated,
// calls alone would be 4096 histograms of 1680 B (6.9 MiB) per probe per executable for a map that is usually empty.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, struct call_inflight_key);
	__type(value, struct call_state);
} call_inflight SEC(".maps");

// Series that miss their slot. One value shared by the CPUs (lat_record_shared), not a per-CPU hash: a per-CPU hash
// that is not preallocated takes each new element's per-CPU value from the kernel's per-CPU allocator without
// waiting, which under load had nothing ready (a workqueue refills it), so the insert failed and the call that was to
// create the series was lost (TestCallNewSeriesAreNotLost: 532-745 of 2000 new series, map a half full at most). A
// plain element comes from the slab caches.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096);
	__type(key, struct call_key);
	__type(value, struct lat_hist);
} calls SEC(".maps");

// Calls whose series found neither a slot nor room in calls: counted so that a full map is never silent
// (shanhai_bpf_call_series_dropped_total).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} call_series_dropped SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lat_hist);
} call_zero SEC(".maps");

// call_mix is a multiplicative (Fibonacci) hash onto a power-of-two table: three instructions, where jhash is a call.
static __always_inline __u32 call_mix(__u64 v, __u32 bits) {
	return (__u32)((v * 0x9E3779B97F4A7C15ULL) >> (64 - bits));
}

// call_read_method puts the method of the *net/http.Request in the cookie's request register into out (8 bytes, zero
// padded) as the server probe labels it (std_method: the nine standard methods, else OTHER): a reverse proxy passes
// on the method its own client sent, so the raw token let any client make up label values, fill the series maps and
// crowd the target's real calls out (TestClientMethodsOutsideTheStandardNineAreOther). An empty Method is the GET
// net/http sends. Calls without a request (the other ops) keep zeros.
static __always_inline void call_read_method(struct pt_regs *ctx, __u64 cookie, char *out) {
	*(__u64 *)out = 0;
	__u32 req_reg = (cookie >> 16) & 0xf;
	if (!req_reg)
		return;
	void *req = (void *)go_reg(ctx, req_reg);
	struct {
		const char *ptr;
		__u64 len;
	} m = {};
	__u64 v = 0;
	if (bpf_probe_read_user(&m, sizeof(m), req + off_request_method) == 0 && m.len == 0) {
		*(__u64 *)out = LE4('G', 'E', 'T', 0);
		return;
	}
	// Every standard method is 3 to 7 bytes long: a longer token is OTHER without reading it.
	if (m.ptr && m.len >= 3 && m.len < CALL_METHOD_LEN &&
	    bpf_probe_read_user(&v, m.len & (CALL_METHOD_LEN - 1), m.ptr) == 0) {
		*(__u64 *)out = std_method(v);
		return;
	}
	*(__u64 *)out = METHOD_OTHER;
}

// go_stack_hi reads g.stack.hi (struct g begins with stack{lo, hi}, unchanged since Go 1.0); 0 when unreadable.
static __always_inline __u64 go_stack_hi(__u64 g) {
	__u64 hi = 0;
	if (bpf_probe_read_user(&hi, sizeof(hi), (void *)(g + 8)))
		return 0;
	return hi;
}

// call_nest_at says where this entry is on the stack; depth 0 when the op nests in no group or the stack is unread.
static __always_inline struct call_nest call_nest_at(struct pt_regs *ctx, __u64 cookie, __u64 g, __u32 op,
						      __u32 group) {
	struct call_nest n = {.op = op};
	if (!group)
		return n;
	__u64 hi = go_stack_hi(g);
	if (!hi || hi <= GO_SP(ctx))
		return n;
	n.depth = hi - GO_SP(ctx);
	n.fp_depth = hi - GO_FP(ctx);
	n.fn = GO_PC(ctx) - (cookie >> 32);
	return n;
}

// call_is_nested: is the entry at here inside the call in flight that outer describes (see struct call_nest)?
static __always_inline bool call_is_nested(struct call_nest *outer, struct call_nest *here, __u64 sp) {
	if (!outer->depth || here->depth <= outer->depth)
		return false;
	__u64 hi = here->depth + sp; // the stack's top, read a moment ago
	struct {
		__u64 saved; // the word a PUSH RBP stored at the outer call's entry
		__u64 ret;   // its return address
	} frame = {};
	if (bpf_probe_read_user(&frame, sizeof(frame), (void *)(hi - outer->depth - 8)))
		return false;
	if (hi - frame.saved != outer->fp_depth)
		return false;
#if defined(__TARGET_ARCH_x86)
	// The instruction before the return address: a CALL rel32 (E8) of another function is another frame. Its last
	// bytes could also end an indirect call (FF with a ModRM whose reg field is 2, 2 to 4 bytes long) that happens to
	// follow an E8 byte: that is not told, and taken as the outer call's frame, as before.
	__u8 c[8] = {};
	if (bpf_probe_read_user(c, 5, (void *)(frame.ret - 5)) || c[0] != 0xe8)
		return true;
	if ((c[1] == 0xff && (c[2] >> 3 & 7) == 2) || (c[2] == 0xff && (c[3] >> 3 & 7) == 2) ||
	    (c[3] == 0xff && (c[4] >> 3 & 7) == 2))
		return true;
	__s32 rel = (__s32)(c[1] | (__u32)c[2] << 8 | (__u32)c[3] << 16 | (__u32)c[4] << 24);
	if (frame.ret + (__s64)rel != outer->fn)
		return false;
#endif
	return true;
}

// call_inflight_of is k's element of call_inflight, inserted zeroed when there is none. NULL when there is no room to
// keep the call in flight: it cannot be counted, so it is counted as dropped, as one whose series finds no room is
// (it went silently; TestCallInflightDroppedAreCounted).
static __always_inline struct call_state *call_inflight_of(struct call_inflight_key *k) {
	struct call_state *st = bpf_map_lookup_elem(&call_inflight, k);
	if (st)
		return st;
	struct call_state fresh = {};
	bpf_map_update_elem(&call_inflight, k, &fresh, BPF_NOEXIST);
	st = bpf_map_lookup_elem(&call_inflight, k);
	if (!st) {
		__u32 z = 0;
		__u64 *dropped = bpf_map_lookup_elem(&call_series_dropped, &z);
		if (dropped)
			*dropped += 1;
	}
	return st;
}

// call_enter_inner starts the inner call (CALL_INNER) of (tgid, kop) on goroutine g.
static __always_inline void call_enter_inner(struct pt_regs *ctx, __u64 cookie, __u32 tgid, __u32 kop, __u64 g,
					     struct call_nest *here) {
	struct call_inflight_key k = {.tgid = tgid, .op = kop | CALL_INNER, .g = g};
	struct call_state *st = call_inflight_of(&k);
	if (!st)
		return;
	st->nest = *here;
	call_read_method(ctx, cookie, st->method);
	st->start_ns = bpf_ktime_get_ns();
}

SEC("uprobe/call_enter")
int call_enter(struct pt_regs *ctx) {
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 op = cookie & 0xff;
	__u32 group = (cookie >> 24) & 0xff;
	__u32 kop = group ? group : op; // the key's op: a group's calls share one slot per goroutine
	__u32 inner = (cookie >> 20) & 1;
	__u64 g = GO_G(ctx);
	struct call_nest here = call_nest_at(ctx, cookie, g, op, group | inner);
	__u32 i = call_mix(g ^ ((__u64)tgid << 48) ^ ((__u64)kop << 40), CALL_SLOT_BITS);
	struct call_slot *s = bpf_map_lookup_elem(&call_slots, &i); // NULL when the agent made the table smaller
	if (s) {
		bool mine = s->g == g && s->tgid == tgid && s->op == kop;
		if (mine && call_is_nested(&s->nest, &here, GO_SP(ctx))) {
			s->nest.nested = 1;
			if (inner)
				call_enter_inner(ctx, cookie, tgid, kop, g, &here);
			return 0;
		}
		if (mine || __sync_val_compare_and_swap(&s->g, 0, g) == 0) {
			s->tgid = tgid;
			s->op = kop;
			s->nest = here;
			call_read_method(ctx, cookie, s->method);
			s->start_ns = bpf_ktime_get_ns();
			return 0;
		}
	}

	struct call_inflight_key k = {.tgid = tgid, .op = kop, .g = g};
	struct call_state *st = call_inflight_of(&k);
	if (!st)
		return 0;
	if (st->start_ns && call_is_nested(&st->nest, &here, GO_SP(ctx))) {
		st->nest.nested = 1;
		if (inner)
			call_enter_inner(ctx, cookie, tgid, kop, g, &here);
		return 0;
	}
	st->nest = here;
	call_read_method(ctx, cookie, st->method);
	st->start_ns = bpf_ktime_get_ns();
	return 0;
}

// call_exit_is_nested: is this exit a nested call's? Read only once a nested call was seen, so a call that nests
// nothing costs no stack read at its exit. The frame pointer tells: at the outer call's exits it is its caller's (an
// exit after the call site or at a RET, depth fp_depth, above the entry) or, at an exit inside the function (after
// its last call, see callSite.lastCall in calls.go), its own, 8 bytes below its entry's SP. A nested call's exits
// run in frames below the outer function's.
static __always_inline bool call_exit_is_nested(struct pt_regs *ctx, struct call_nest *outer, __u64 g) {
	if (!outer->nested)
		return false;
	__u64 hi = go_stack_hi(g);
	return hi > GO_FP(ctx) && hi - GO_FP(ctx) > outer->depth + 8;
}

// call_record adds one call to its series: the per-CPU slot the key hashes to when it holds this key or nothing yet
// on this CPU, else the hash map (atomic adds: its value is every CPU's), else call_series_dropped. The key is
// compared as three words (call_key is 20 bytes, 4-aligned).
static __always_inline void call_record(struct call_key *ck, __u64 method, __u64 d) {
	__u64 w0 = ck->tgid | (__u64)ck->op << 32 | (__u64)ck->status << 48;
	__u64 w1 = ck->error | method << 32;
	__u32 w2 = method >> 32;
	__u32 i = call_mix(w0 ^ (w1 * 31) ^ ((__u64)w2 << 20), CALL_AGG_BITS);
	struct call_agg_slot *rs = bpf_map_lookup_elem(&call_agg_slots, &i);
	if (rs) {
		__u64 *k = (__u64 *)&rs->key;
		__u32 *k2 = (__u32 *)&rs->key + 4;
		if (k[0] == 0) {
			k[0] = w0;
			k[1] = w1;
			*k2 = w2;
		}
		if (k[0] == w0 && k[1] == w1 && *k2 == w2) {
			lat_record(&rs->hist, d);
			return;
		}
	}
	struct lat_hist *h = bpf_map_lookup_elem(&calls, ck);
	if (!h) {
		__u32 z = 0;
		struct lat_hist *zero = bpf_map_lookup_elem(&call_zero, &z);
		if (!zero)
			return;
		bpf_map_update_elem(&calls, ck, zero, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&calls, ck);
		if (!h) {
			__u64 *dropped = bpf_map_lookup_elem(&call_series_dropped, &z);
			if (dropped)
				*dropped += 1;
			return;
		}
	}
	lat_record_shared(h, d);
}

// call_exit_inner ends the inner call (CALL_INNER) of (tgid, kop) on goroutine g: its start and method, false when
// none is in flight.
static __always_inline bool call_exit_inner(__u32 tgid, __u32 kop, __u64 g, __u64 *start, __u64 *method) {
	struct call_inflight_key k = {.tgid = tgid, .op = kop | CALL_INNER, .g = g};
	struct call_state *st = bpf_map_lookup_elem(&call_inflight, &k);
	if (!st || !st->start_ns)
		return false;
	*start = st->start_ns;
	st->start_ns = 0;
	*method = *(__u64 *)st->method;
	return true;
}

SEC("uprobe/call_ret")
int call_ret(struct pt_regs *ctx) {
	__u64 now = bpf_ktime_get_ns();
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u32 op = cookie & 0xff;
	__u32 group = (cookie >> 24) & 0xff;
	__u32 kop = group ? group : op;
	__u32 inner = (cookie >> 20) & 1;
	__u64 g = GO_G(ctx);
	__u64 start, method;

	__u32 i = call_mix(g ^ ((__u64)tgid << 48) ^ ((__u64)kop << 40), CALL_SLOT_BITS);
	struct call_slot *s = bpf_map_lookup_elem(&call_slots, &i);
	if (s && s->g == g && s->tgid == tgid && s->op == kop) {
		// A nested call's exit, or the exit of a call of the group whose entry came before the probe: not the
		// outer call's end, which stays in flight. An inner call's exit ends the inner call.
		if (s->nest.op != op)
			return 0;
		if (call_exit_is_nested(ctx, &s->nest, g)) {
			if (!inner || !call_exit_inner(tgid, kop, g, &start, &method))
				return 0;
			goto record;
		}
		start = s->start_ns;
		method = *(__u64 *)s->method;
		// Release: tgid first, then g, in program order (x86 keeps stores in order; the barrier keeps clang's).
		s->tgid = 0;
		asm volatile("" ::: "memory");
		*(volatile __u64 *)&s->g = 0;
	} else {
		struct call_inflight_key k = {.tgid = tgid, .op = kop, .g = g};
		struct call_state *st = bpf_map_lookup_elem(&call_inflight, &k);
		if (!st || !st->start_ns || st->nest.op != op)
			return 0;
		if (call_exit_is_nested(ctx, &st->nest, g)) {
			if (!inner || !call_exit_inner(tgid, kop, g, &start, &method))
				return 0;
			goto record;
		}
		start = st->start_ns;
		st->start_ns = 0;
		method = *(__u64 *)st->method;
	}
record:
	if (!start)
		return 0;

	struct call_key ck = {};
	ck.tgid = tgid;
	ck.op = op;
	__builtin_memcpy(ck.method, &method, CALL_METHOD_LEN);
	__u32 err_reg = (cookie >> 8) & 0xf;
	if (err_reg && go_iface_nonnil(go_reg(ctx, err_reg)))
		ck.error = 1;
	__u32 resp_reg = (cookie >> 12) & 0xf;
	if (resp_reg) {
		void *resp = (void *)go_reg(ctx, resp_reg);
		__s64 status = 0;
		if (resp && bpf_probe_read_user(&status, sizeof(status), resp + off_response_status) == 0)
			ck.status = (__u16)status;
	}
	call_record(&ck, method, now - start);
	return 0;
}

#define CLEAR_CALL_AGG(v)                                                                                              \
	do {                                                                                                           \
		(v)->key.op = 0;                                                                                       \
		(v)->key.status = 0;                                                                                   \
		(v)->key.error = 0;                                                                                    \
		*(volatile __u64 *)(v)->key.method = 0;                                                                \
		lat_hist_clear(&(v)->hist);                                                                            \
	} while (0)
DEFINE_EXIT_SWEEP(free_call_agg_copies, call_agg_slots, struct call_agg_slot, key.tgid, CLEAR_CALL_AGG)

// A process of the probed executable exited (see procexit.h): its series slots' copies are freed, so a process that
// gets its pid again counts from zero. Its fallback series (calls) and in-flight entries are the agent's to delete.
SEC("tracepoint/sched/sched_process_exit")
int process_exit(struct trace_event_raw_sched_process_exit *ctx) {
	__u32 tgid = exiting_target(ctx);
	if (tgid)
		free_call_agg_copies(tgid, 1 << CALL_AGG_BITS);
	return 0;
}
