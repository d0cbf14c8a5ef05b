//go:build ignore

// HTTP server RED: net/http.serverHandler.ServeHTTP is entered once per request on the goroutine that serves it and
// returns when the handler is done, so entry -> exit (after its call sites, else its RETs: symtab.Exits) is the latency.
// The status is read at the exit from the writer the handler wrote to (HTTP/1's *response holds the first WriteHeader
// code, HTTP/2's http2responseWriter points to a state that does), so a request costs two uprobe hits: a third on
// WriteHeader would add a whole trap for nothing.
//
// Cost per hit is what this file is shaped by (kernel.bpf_stats_enabled, bench/overhead.sh). On the machines this
// was measured on (AMD, kernel built with Safe-RET and retpolines) every helper call and every non-inlined map
// operation costs tens of nanoseconds, while loads from an array map the verifier inlines are almost free. So the
// fast path uses no hash map at all: the request in flight lives in an array slot picked by hashing the goroutine,
// claimed with one compare-and-swap, and the histogram in a per-CPU array slot picked by hashing the series key.
// The hash maps remain behind both as the exact fallback when a slot is taken by someone else. What is left per
// request is what cannot go: two clock reads and three user-memory reads (method header, method bytes, status; four
// over HTTP/2, whose status is behind a pointer). All three reads are made by the exit program: a program run's first
// bpf_probe_read_user costs about twice what each further one does (AMD EPYC guest, Safe-RET: ~165 ns against ~85,
// bench/progcost), so reading the method at the entry and the status at the exit paid that first read twice per
// request. The entry only keeps the *Request; net/http keeps it alive until after ServeHTTP returns. Where the kernel
// takes a sleepable uprobe the exit makes those reads with bpf_copy_from_user, cheaper again (serve_http_exit).
#include "procexit.h"

// Offsets into net/http.Request, net/http.response and HTTP/2's writer and its state, patched by the loader from the
// target's DWARF or the fallback table.
volatile const __u64 off_request_method = 0;
volatile const __u64 off_response_status = 0;
volatile const __u64 off_response_conn = 0;
volatile const __u64 off_conn_hijacked = 0;
volatile const __u64 off_h2writer_rws = 0;
volatile const __u64 off_h2state_status = 0;
// The ResponseWriter's itab for a *net/http.response, as its distance from the entry probe's address (position
// independent: a PIE target's load bias cancels out), and whether the agent found it. HTTP/1 passes a *response;
// HTTP/2 (net/http's bundled http2 server) passes its own, smaller writer, whose memory at the response's offsets is
// something else entirely, so the status and hijacked reads are made only for a writer with this itab.
volatile const __s64 response_itab_from_ip = 0;
volatile const __u8 response_itab_known = 0;
// The same for a *net/http.http2responseWriter: its status is read through its state (rws) instead. Known only where
// the *response's itab is known too (the agent sets both or neither), so a writer that is neither is neither read.
volatile const __s64 h2_itab_from_ip = 0;
volatile const __u8 h2_itab_known = 0;
// The same for golang.org/x/net/http2's own server's *responseWriter (http2.ConfigureServer hands its streams to
// serverHandler.ServeHTTP too): the same shape as the bundled copy's, at the offsets of its own DWARF.
volatile const __s64 xh2_itab_from_ip = 0;
volatile const __u8 xh2_itab_known = 0;
volatile const __u64 off_xh2writer_rws = 0;
volatile const __u64 off_xh2state_status = 0;

// The status recorded for a request whose handler took the connection over (Hijack: a WebSocket upgrade, a CONNECT
// tunnel): not an HTTP status, so the agent keeps these out of the request-duration histogram (ServeHTTP returns
// when the session ends, so their duration is the session's) and exports them on their own.
#define STATUS_HIJACKED 1
// The status recorded for a request whose handler panicked: no response was completed (see serve_http_panic).
#define STATUS_NO_RESPONSE 0
// The status recorded for a request answered through a ResponseWriter the probe cannot read (golang.org/x/net/http2's
// own server, an HTTP/2 writer the agent did not find): the agent labels it "unknown".
#define STATUS_UNKNOWN 2

#define METHOD_LEN 8

struct req_state {
	__u64 start_ns;
	__u64 response; // the ResponseWriter's data word: a *net/http.response or *http2responseWriter as writer says
	__s64 writer;   // the ResponseWriter's itab minus the entry probe's address
	__u64 hijacked; // set by serve_http_hijack
	__u64 request;  // the *net/http.Request, whose method the exit reads
};

struct red_key {
	__u32 tgid;
	__u32 status;
	char method[METHOD_LEN];
};

// A request in flight on the fast path. g is the owner (0: free); it is set by compare-and-swap, tgid written after
// it and cleared before it is released, so a slot never looks owned by a (tgid, g) that did not claim it. g is the
// last field so the agent's whole-value write that frees a dead process's slot makes it claimable last. 64 bytes, but
// not one cache line: an array map's values start where the kernel's struct bpf_array header ends (312 bytes into a
// page-aligned allocation on 6.18, seen in the JIT), so a slot straddles two lines and shares the first with the slot
// before it. Page-aligned values (BPF_F_MMAPABLE puts them at a page boundary) measured no faster per hit in
// bench/progcost runs alternated with this layout (README, "Where the entry program's time goes"), so it stays.
struct req_slot {
	__u32 tgid;
	__u32 hijacked; // set by serve_http_hijack
	__u64 start_ns;
	__u64 response;
	__u64 request; // the *net/http.Request, whose method the exit reads
	__s64 writer;
	__u64 spare[2];
	__u64 g;
};

#define REQ_SLOT_BITS 10
#define RED_SLOT_BITS 8

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << REQ_SLOT_BITS);
	__type(key, __u32);
	__type(value, struct req_slot);
} inflight_slots SEC(".maps");

// One latency series on the fast path. Per CPU, so each CPU's copy of a slot carries its own key: a CPU claims an
// empty slot by writing the key into its copy, with no atomics (a per-CPU value is only written from its CPU).
struct red_slot {
	struct red_key key;
	struct lat_hist hist;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1 << RED_SLOT_BITS);
	__type(key, __u32);
	__type(value, struct red_slot);
} red_slots SEC(".maps");

struct {
	// Fallback for requests whose slot another goroutine holds. As before the slots existed: an entry is not deleted
	// at the RET but marked done (start_ns = 0) and reused in place by the next request on the same g; the agent
	// deletes a process's entries when it exits. Not preallocated (see "Map memory" in the README): a full
	// preallocated table was 65536 elements whether or not the slots ever overflowed.
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, struct go_call_key);
	__type(value, struct req_state);
} inflight SEC(".maps");

// Fallback for series whose slot another series holds on this CPU. Not preallocated: preallocated per CPU, it was 4096
// histograms of 1680 B on every possible CPU (13.8 MiB on 2 CPUs, 430 MiB on 64) for a map that is usually empty.
// One value shared by the CPUs (lat_record_shared), not a per-CPU hash: a per-CPU hash that is not preallocated takes
// each new element's per-CPU value from the kernel's atomic per-CPU pool, which a program cannot wait for and a
// workqueue refills: under load it was often empty (6.18, 2 CPUs: 65 to 1218 of 2000 new series, one request at a
// time, with the map under half full), and the request that was to create each series was lost. A plain element
// comes from the slab caches (TestServerNewSeriesAreNotLost).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096);
	__type(key, struct red_key);
	__type(value, struct lat_hist);
} requests SEC(".maps");

// One zeroed value to insert from: struct lat_hist is too big for the 512-byte BPF stack.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lat_hist);
} zero_hist SEC(".maps");

// Series that found neither a slot nor room in requests (it holds 4096): counted so that a full map is never silent
// (shanhai_bpf_series_dropped_total).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} series_dropped SEC(".maps");

// mix64 is a multiplicative (Fibonacci) hash: good enough to spread heap addresses and small keys over a
// power-of-two table, and three instructions, where jhash would be a call.
static __always_inline __u32 mix64(__u64 v, __u32 bits) {
	return (__u32)((v * 0x9E3779B97F4A7C15ULL) >> (64 - bits));
}

// read_user is how the exit programs read the target's memory: bpf_copy_from_user in the sleepable exit, which on
// the machines measured costs less per read than bpf_probe_read_user (README, "Overhead": ~80 ns over the exit's
// three reads), else bpf_probe_read_user, which a program that may not sleep must use. Both zero dst on a fault and
// return 0 on success. sleepable is a constant in each program, so each compiles to one helper.
static __always_inline long read_user(void *dst, __u32 size, const void *src, bool sleepable) {
	return sleepable ? bpf_copy_from_user(dst, size, src) : bpf_probe_read_user(dst, size, src);
}

// read_method puts the request's method into out (8 bytes, zero padded): one of the nine standard methods, or OTHER
// for anything else (std_method: the token is the client's, which would otherwise make up label values; the socket
// probe counts only these nine too). It is read when ServeHTTP returns, so a handler that rewrites r.Method in place
// (a method-override middleware) is counted under the method it set, as the application's own middleware after it
// would count it.
static __always_inline void read_method(void *req, char *out, bool sleepable) {
	struct {
		const char *ptr;
		__u64 len;
	} m = {};
	__u64 v = 0;
	// Every standard method is 3 to 7 bytes long: a longer token is OTHER without reading it.
	if (read_user(&m, sizeof(m), req + off_request_method, sleepable) == 0 && m.ptr && m.len >= 3 &&
	    m.len < METHOD_LEN && read_user(&v, m.len & (METHOD_LEN - 1), m.ptr, sleepable) == 0) {
		*(__u64 *)out = std_method(v);
		return;
	}
	*(__u64 *)out = METHOD_OTHER;
}

// serverHandler.ServeHTTP(sh serverHandler{srv}, rw ResponseWriter{itab,data}, req *Request): rw's itab is RBX, its
// data word (RCX) the *response over HTTP/1, req the 4th word (RDI). The uprobe reports the probed address in ip.
// A stack-growth restart of the prologue enters twice; the second entry simply overwrites the first.
SEC("uprobe/serve_http")
int serve_http_enter(struct pt_regs *ctx) {
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 g = GO_G(ctx);
	__u32 i = mix64(g ^ ((__u64)tgid << 48), REQ_SLOT_BITS);
	struct req_slot *s = bpf_map_lookup_elem(&inflight_slots, &i); // NULL when the agent made the table smaller
	if (s && ((s->g == g && s->tgid == tgid) || __sync_val_compare_and_swap(&s->g, 0, g) == 0)) {
		s->tgid = tgid;
		s->response = GO_REG3(ctx);
		s->writer = (__s64)(GO_REG2(ctx) - GO_PC(ctx));
		s->hijacked = 0;
		s->request = GO_REG4(ctx);
		s->start_ns = bpf_ktime_get_ns();
		return 0;
	}

	struct go_call_key k = {.tgid = tgid, .g = g};
	struct req_state *st = bpf_map_lookup_elem(&inflight, &k);
	if (!st) {
		struct req_state fresh = {};
		bpf_map_update_elem(&inflight, &k, &fresh, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&inflight, &k);
		if (!st) {
			// No room to keep it in flight: the request cannot be counted, so it is counted as dropped, as one
			// whose series finds no room is (it went silently; TestServerInflightDroppedAreCounted).
			__u32 z = 0;
			__u64 *dropped = bpf_map_lookup_elem(&series_dropped, &z);
			if (dropped)
				*dropped += 1;
			return 0;
		}
	}
	st->response = GO_REG3(ctx);
	st->writer = (__s64)(GO_REG2(ctx) - GO_PC(ctx));
	st->hijacked = 0;
	st->request = GO_REG4(ctx);
	st->start_ns = bpf_ktime_get_ns();
	return 0;
}

// record adds one request to its series: the per-CPU slot the key hashes to when it holds this key or nothing
// yet, else the hash map.
static __always_inline void record(struct red_key *rk, __u64 d) {
	__u64 w0 = *(__u64 *)rk, w1 = *(__u64 *)rk->method;
	__u32 i = mix64(w0 ^ (w1 * 31), RED_SLOT_BITS);
	struct red_slot *rs = bpf_map_lookup_elem(&red_slots, &i); // NULL when the agent made the table smaller
	if (rs) {
		__u64 *k = (__u64 *)&rs->key;
		if (k[0] == 0) { // free on this CPU: tgid is never 0
			k[0] = w0;
			k[1] = w1;
		}
		if (k[0] == w0 && k[1] == w1) {
			lat_record(&rs->hist, d);
			return;
		}
	}
	struct lat_hist *h = bpf_map_lookup_elem(&requests, rk);
	if (!h) {
		__u32 z = 0;
		struct lat_hist *zero = bpf_map_lookup_elem(&zero_hist, &z);
		if (!zero)
			return;
		bpf_map_update_elem(&requests, rk, zero, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&requests, rk);
		if (!h) {
			__u64 *dropped = bpf_map_lookup_elem(&series_dropped, &z);
			if (dropped)
				*dropped += 1;
			return;
		}
	}
	lat_record_shared(h, d);
}

// hijacked reports whether the handler of response took its connection over (net/http's conn.hijackedv). Asked only
// when the response holds no status or 101: a hijacker writes its answer on the raw connection (gorilla/websocket)
// or calls WriteHeader(101) first (coder/websocket), and every other request keeps its two user-memory reads. A
// hijack after another WriteHeader (a CONNECT proxy's 200) is what serve_http_hijack marks; this read still catches a
// Hijack made from another goroutine than the handler's, which that program cannot tie to the request.
static __always_inline bool hijacked(__u64 response, bool sleepable) {
	__u64 conn = 0;
	__u8 h = 0;
	if (read_user(&conn, sizeof(conn), (void *)(response + off_response_conn), sleepable) || !conn)
		return false;
	return read_user(&h, sizeof(h), (void *)(conn + off_conn_hijacked), sleepable) == 0 && h;
}

// take ends the request (tgid, g) has in flight: frees its slot or marks its fallback entry done, puts its *Request
// in request, its ResponseWriter's data word in response and itab (from ip) in writer, and returns its start time
// (0: none in flight).
static __always_inline __u64 take(__u32 tgid, __u64 g, __u64 *request, __u64 *response, __s64 *writer,
				  bool *hijack) {
	__u64 start;
	__u32 i = mix64(g ^ ((__u64)tgid << 48), REQ_SLOT_BITS);
	struct req_slot *s = bpf_map_lookup_elem(&inflight_slots, &i);
	if (s && s->g == g && s->tgid == tgid) {
		start = s->start_ns;
		*response = s->response;
		*writer = s->writer;
		*hijack = s->hijacked;
		*request = s->request;
		// Release: tgid first, then g, in program order (x86 keeps stores in order; the barrier keeps clang's).
		s->tgid = 0;
		asm volatile("" ::: "memory");
		*(volatile __u64 *)&s->g = 0;
		return start;
	}
	struct go_call_key k = {.tgid = tgid, .g = g};
	struct req_state *st = bpf_map_lookup_elem(&inflight, &k);
	if (!st || !st->start_ns)
		return 0;
	start = st->start_ns;
	st->start_ns = 0;
	*response = st->response;
	*writer = st->writer;
	*hijack = st->hijacked;
	*request = st->request;
	return start;
}

// serve_http_exit is the exit program's body, in two builds the agent picks from at load time: serve_http_ret, a plain
// uprobe that every kernel the probe supports loads, and serve_http_ret_sleepable, the same as a sleepable uprobe
// (Linux 6.1: 6.0's sleepable uprobes, and 6.1's non-preallocated hashes in sleepable programs) whose reads are
// cheaper. The agent loads it under the plain one's name, the plain one where the kernel refuses it. Sleeping adds no
// race on the per-CPU maps: it happens in the reads (a fault), all before record, and both builds run with migration
// disabled (bpf_prog_run_array_uprobe). Either may be preempted, the plain one only where RCU is preemptible.
static __always_inline int serve_http_exit(struct pt_regs *ctx, bool sleepable) {
	__u64 now = bpf_ktime_get_ns();
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct red_key rk = {.tgid = tgid};
	__u64 request = 0, response = 0;
	__s64 writer = 0;
	bool hijack = false;
	__u64 start = take(tgid, GO_G(ctx), &request, &response, &writer, &hijack);
	if (!start)
		return 0;
	read_method((void *)request, rk.method, sleepable);
	__s64 status = 0;
	// HTTP/1's *response is tested first, so its requests pay no more than before HTTP/2's were read. Where the agent
	// did not find its itab, the status is read as before the check existed, but not the hijacked flag: following a
	// word of another object as a *conn could mark any request hijacked. HTTP/2's writer is one pointer to its state,
	// which holds the status (one more user read; the state is the request's until the handler runner's deferred
	// handlerDone, after ServeHTTP returned); HTTP/2 has no Hijack. x/net's http2 server's writer is read the same
	// way where the agent found it (its DWARF). Any other writer (one the agent did not find) is reported as
	// STATUS_UNKNOWN: its status is not where either keeps it, and a 200 would pass its 404s and 500s for successes.
	bool ours = response_itab_known && writer == response_itab_from_ip;
	if (ours || !response_itab_known) {
		read_user(&status, sizeof(status), (void *)(response + off_response_status), sleepable);
	} else if (h2_itab_known && writer == h2_itab_from_ip) {
		__u64 rws = 0;
		if (read_user(&rws, sizeof(rws), (void *)(response + off_h2writer_rws), sleepable) == 0 && rws)
			read_user(&status, sizeof(status), (void *)(rws + off_h2state_status), sleepable);
	} else if (xh2_itab_known && writer == xh2_itab_from_ip) {
		__u64 rws = 0;
		if (read_user(&rws, sizeof(rws), (void *)(response + off_xh2writer_rws), sleepable) == 0 && rws)
			read_user(&status, sizeof(status), (void *)(rws + off_xh2state_status), sleepable);
	} else {
		status = STATUS_UNKNOWN;
	}
	if (hijack || ((status == 0 || status == 101) && ours && hijacked(response, sleepable)))
		rk.status = STATUS_HIJACKED;
	else
		rk.status = status ? (__u32)status : 200; // nothing written yet: net/http sends 200 (finishRequest, handlerDone)
	record(&rk, now - start);
	return 0;
}

SEC("uprobe/serve_http_ret")
int serve_http_ret(struct pt_regs *ctx) {
	return serve_http_exit(ctx, false);
}

SEC("uprobe.s/serve_http_ret")
int serve_http_ret_sleepable(struct pt_regs *ctx) {
	return serve_http_exit(ctx, true);
}

// A handler that panicked (or called runtime.Goexit) never returns from ServeHTTP, so serve_http_ret never ran for
// it: the request went uncounted and its slot stayed taken. conn.serve's deferred function calls
// inFlightResponse.disableWriteContinue() only then (inFlightResponse is nil once ServeHTTP returned), on the same
// goroutine, so this program sits on that call (an emulated CALL, hit by such requests only) and records the request
// with status 0: net/http closes the connection without completing a response, whatever the handler wrote. Over
// HTTP/2 the handler runner's deferred function recovers instead, and calls writeFrameFromHandler (to reset the
// stream: no response either) only then: this program sits on that call too.
SEC("uprobe/serve_http_panic")
int serve_http_panic(struct pt_regs *ctx) {
	__u64 now = bpf_ktime_get_ns();
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct red_key rk = {.tgid = tgid, .status = STATUS_NO_RESPONSE};
	__u64 request = 0, response = 0;
	__s64 writer = 0;
	bool hijack = false;
	__u64 start = take(tgid, GO_G(ctx), &request, &response, &writer, &hijack);
	if (start) {
		read_method((void *)request, rk.method, false);
		record(&rk, now - start);
	}
	return 0;
}

// A handler that hijacks after WriteHeader (a CONNECT proxy answers 200, then takes the connection) leaves a status
// that is neither 0 nor 101, and reading conn.hijackedv for every status would cost each request two more user reads
// (~155 ns on the exit program). net/http's (*conn).hijackLocked is called by Hijack, on the handler's goroutine, so
// this program (a trap per hijack, none per request) marks the request that goroutine has in flight.
SEC("uprobe/serve_http_hijack")
int serve_http_hijack(struct pt_regs *ctx) {
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 g = GO_G(ctx);
	__u32 i = mix64(g ^ ((__u64)tgid << 48), REQ_SLOT_BITS);
	struct req_slot *s = bpf_map_lookup_elem(&inflight_slots, &i);
	if (s && s->g == g && s->tgid == tgid) {
		s->hijacked = 1;
		return 0;
	}
	struct go_call_key k = {.tgid = tgid, .g = g};
	struct req_state *st = bpf_map_lookup_elem(&inflight, &k);
	if (st && st->start_ns)
		st->hijacked = 1;
	return 0;
}

#define CLEAR_RED(v)                                                                                                   \
	do {                                                                                                           \
		(v)->key.status = 0;                                                                                   \
		*(volatile __u64 *)(v)->key.method = 0;                                                                \
		lat_hist_clear(&(v)->hist);                                                                            \
	} while (0)
DEFINE_EXIT_SWEEP(free_red_copies, red_slots, struct red_slot, key.tgid, CLEAR_RED)

// A process of the probed executable exited (see procexit.h): its series slots' copies are freed, so a process that
// gets its pid again counts from zero. Its fallback series (requests) and in-flight entries are the agent's to delete:
// a hash keyed by (pid, method, status) cannot be looked up by pid alone.
SEC("tracepoint/sched/sched_process_exit")
int process_exit(struct trace_event_raw_sched_process_exit *ctx) {
	__u32 tgid = exiting_target(ctx);
	if (tgid)
		free_red_copies(tgid, 1 << RED_SLOT_BITS);
	return 0;
}
