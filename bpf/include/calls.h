// calls.h: one pair of programs that time any Go call from its entry to its RETs and count errors, for the probes
// whose only differences are which function, which result register holds the error, and whether there is an HTTP
// request/response to read (HTTP client, database/sql, go-redis, kafka-go). The attach cookie says which:
//   bits 0-7   op: the agent's number for the function, reported back in the key
//   bits 8-11  register (1-based, result order) holding the error's itab word; 0 = no error result
//   bits 12-15 register holding a *net/http.Response at the RET; 0 = none
//   bits 16-19 argument register holding a *net/http.Request at entry; 0 = none
#pragma once

#include "goabi.h"

volatile const __u64 off_request_method = 0;    // net/http.Request.Method
volatile const __u64 off_response_status = 16;  // net/http.Response.StatusCode

#define CALL_METHOD_LEN 8

struct call_inflight_key {
	__u32 tgid;
	__u32 op;
	__u64 g;
};

struct call_state {
	__u64 start_ns;
	char method[CALL_METHOD_LEN];
};

struct call_key {
	__u32 tgid;
	__u16 op;
	__u16 status; // HTTP status of the response, 0 when none
	__u32 error;  // 1 when the call returned a non-nil error
	char method[CALL_METHOD_LEN];
};

// In-flight calls by (process, op, goroutine), reused in place like the HTTP server probe's (see httpserver.c).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct call_inflight_key);
	__type(value, struct call_state);
} call_inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct call_key);
	__type(value, struct lat_hist);
} calls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lat_hist);
} call_zero SEC(".maps");

static __always_inline struct call_inflight_key call_ikey(struct pt_regs *ctx, __u64 cookie) {
	struct call_inflight_key k = {};
	k.tgid = bpf_get_current_pid_tgid() >> 32;
	k.op = cookie & 0xff;
	k.g = GO_G(ctx);
	return k;
}

SEC("uprobe/call_enter")
int call_enter(struct pt_regs *ctx) {
	__u64 cookie = bpf_get_attach_cookie(ctx);
	struct call_inflight_key k = call_ikey(ctx, cookie);
	struct call_state *s = bpf_map_lookup_elem(&call_inflight, &k);
	if (!s) {
		struct call_state fresh = {};
		bpf_map_update_elem(&call_inflight, &k, &fresh, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&call_inflight, &k);
		if (!s)
			return 0;
	}
	__u32 req_reg = (cookie >> 16) & 0xf;
	if (req_reg) {
		__builtin_memset(s->method, 0, CALL_METHOD_LEN);
		void *req = (void *)go_reg(ctx, req_reg);
		struct {
			const char *ptr;
			__u64 len;
		} m = {};
		if (bpf_probe_read_user(&m, sizeof(m), req + off_request_method) == 0 && m.ptr) {
			__u64 n = m.len < CALL_METHOD_LEN - 1 ? m.len : CALL_METHOD_LEN - 1;
			bpf_probe_read_user(s->method, n & (CALL_METHOD_LEN - 1), m.ptr);
		}
	}
	s->start_ns = bpf_ktime_get_ns();
	return 0;
}

SEC("uprobe/call_ret")
int call_ret(struct pt_regs *ctx) {
	__u64 cookie = bpf_get_attach_cookie(ctx);
	struct call_inflight_key k = call_ikey(ctx, cookie);
	struct call_state *s = bpf_map_lookup_elem(&call_inflight, &k);
	if (!s || !s->start_ns)
		return 0;
	__u64 d = bpf_ktime_get_ns() - s->start_ns;
	s->start_ns = 0;
	struct call_key ck = {};
	ck.tgid = k.tgid;
	ck.op = k.op;
	__builtin_memcpy(ck.method, s->method, CALL_METHOD_LEN);

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

	struct lat_hist *h = bpf_map_lookup_elem(&calls, &ck);
	if (!h) {
		__u32 z = 0;
		struct lat_hist *zero = bpf_map_lookup_elem(&call_zero, &z);
		if (!zero)
			return 0;
		bpf_map_update_elem(&calls, &ck, zero, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&calls, &ck);
		if (!h)
			return 0;
	}
	lat_record(h, d);
	return 0;
}
