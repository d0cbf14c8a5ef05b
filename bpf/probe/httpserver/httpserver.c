//go:build ignore

// HTTP server RED: net/http.serverHandler.ServeHTTP is entered once per request on the goroutine that serves it and
// returns when the handler is done, so entry -> every RET instruction of it is the server-side latency. The status is
// read at the RET from the *response the handler wrote to (its status field holds the first WriteHeader code), so a
// request costs two uprobe hits: a third on (*response).WriteHeader would add a whole trap per request for nothing.
#include "goabi.h"

// Offsets into net/http.Request and net/http.response, patched by the loader from the target's DWARF or the
// fallback table.
volatile const __u64 off_request_method = 0;
volatile const __u64 off_response_status = 0;

#define METHOD_LEN 8

struct req_state {
	__u64 start_ns;
	__u64 response; // *net/http.response
	char method[METHOD_LEN];
};

struct red_key {
	__u32 tgid;
	__u32 status;
	char method[METHOD_LEN];
};

struct {
	// In-flight requests by goroutine. An entry is not deleted at the RET but marked done (start_ns = 0) and reused
	// in place by the next request on the same g: net/http serves a keep-alive connection's requests on one
	// goroutine, and the runtime recycles g structs, so steady state costs a lookup and no hash insert or delete on
	// either probe. The number of entries is bounded by the process's peak goroutine count (g structs are never
	// freed); the agent deletes a process's entries when it exits.
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct go_call_key);
	__type(value, struct req_state);
} inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
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

// serverHandler.ServeHTTP(sh serverHandler{srv}, rw ResponseWriter{itab,data}, req *Request): rw's data word (RCX) is
// the *response, req the 4th word (RDI).
// A stack-growth restart of the prologue enters twice; the second entry simply overwrites the first.
SEC("uprobe/serve_http")
int serve_http_enter(struct pt_regs *ctx) {
	struct go_call_key k = go_call_key(ctx);
	struct req_state *s = bpf_map_lookup_elem(&inflight, &k);
	if (!s) {
		struct req_state fresh = {};
		bpf_map_update_elem(&inflight, &k, &fresh, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&inflight, &k);
		if (!s)
			return 0;
	}
	s->response = GO_REG3(ctx);
	__builtin_memset(s->method, 0, METHOD_LEN);
	void *req = (void *)GO_REG4(ctx);
	struct {
		const char *ptr;
		__u64 len;
	} m = {};
	if (bpf_probe_read_user(&m, sizeof(m), req + off_request_method) == 0 && m.ptr) {
		__u64 n = m.len < METHOD_LEN - 1 ? m.len : METHOD_LEN - 1;
		bpf_probe_read_user(s->method, n & (METHOD_LEN - 1), m.ptr);
	}
	s->start_ns = bpf_ktime_get_ns();
	return 0;
}

SEC("uprobe/serve_http_ret")
int serve_http_ret(struct pt_regs *ctx) {
	struct go_call_key k = go_call_key(ctx);
	struct req_state *s = bpf_map_lookup_elem(&inflight, &k);
	if (!s || !s->start_ns)
		return 0;
	__u64 d = bpf_ktime_get_ns() - s->start_ns;
	s->start_ns = 0;
	struct red_key rk = {};
	rk.tgid = k.tgid;
	__s64 status = 0;
	bpf_probe_read_user(&status, sizeof(status), (void *)(s->response + off_response_status));
	rk.status = status ? (__u32)status : 200; // nothing written yet: net/http sends 200 in finishRequest
	__builtin_memcpy(rk.method, s->method, METHOD_LEN);

	struct lat_hist *h = bpf_map_lookup_elem(&requests, &rk);
	if (!h) {
		__u32 z = 0;
		struct lat_hist *zero = bpf_map_lookup_elem(&zero_hist, &z);
		if (!zero)
			return 0;
		bpf_map_update_elem(&requests, &rk, zero, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&requests, &rk);
		if (!h)
			return 0;
	}
	lat_record(h, d);
	return 0;
}
