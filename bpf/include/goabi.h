// goabi.h: what every Go uprobe program shares. Go's register ABI (ABIInternal) passes integer arguments and results
// in registers and keeps the current goroutine (g) in one, so a probe can read arguments at entry and results at a
// return without DWARF location lists: on amd64 RAX, RBX, RCX, RDI, RSI, R8, R9, R10, R11 with g in R14; on arm64
// R0-R15 (x0..x15, the first nine used here) with g in R28. Uretprobes are never used: they patch the return address
// on the goroutine stack, which the Go runtime copies when it grows the stack, so the process crashes.
//
// The architecture comes from bpf2go's -target (it defines __TARGET_ARCH_x86 or __TARGET_ARCH_arm64). A uprobe's
// context is the user registers as the kernel saved them: struct pt_regs on x86 (vmlinux.h, generated on amd64), and
// on arm64 struct user_pt_regs (bpf_user_pt_regs_t: regs[31], sp, pc, pstate), a UAPI layout that never changes, so it
// is spelled out here rather than taken from an arm64 vmlinux.h; the verifier checks context reads by offset alone,
// and no CO-RE relocation applies to them.
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#if defined(__TARGET_ARCH_x86)
#define GO_REG1(x) ((x)->ax)
#define GO_REG2(x) ((x)->bx)
#define GO_REG3(x) ((x)->cx)
#define GO_REG4(x) ((x)->di)
#define GO_REG5(x) ((x)->si)
#define GO_REG6(x) ((x)->r8)
#define GO_REG7(x) ((x)->r9)
#define GO_REG8(x) ((x)->r10)
#define GO_REG9(x) ((x)->r11)
#define GO_G(x) ((x)->r14)
#define GO_SP(x) ((x)->sp)
#define GO_FP(x) ((x)->bp) /* Go keeps frame pointers: RBP */
#define GO_PC(x) ((x)->ip)
#elif defined(__TARGET_ARCH_arm64)
// arch/arm64/include/uapi/asm/ptrace.h
struct go_arm64_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
};
#define GO_ARM64(x) ((const struct go_arm64_regs *)(x))
#define GO_REG1(x) (GO_ARM64(x)->regs[0])
#define GO_REG2(x) (GO_ARM64(x)->regs[1])
#define GO_REG3(x) (GO_ARM64(x)->regs[2])
#define GO_REG4(x) (GO_ARM64(x)->regs[3])
#define GO_REG5(x) (GO_ARM64(x)->regs[4])
#define GO_REG6(x) (GO_ARM64(x)->regs[5])
#define GO_REG7(x) (GO_ARM64(x)->regs[6])
#define GO_REG8(x) (GO_ARM64(x)->regs[7])
#define GO_REG9(x) (GO_ARM64(x)->regs[8])
#define GO_G(x) (GO_ARM64(x)->regs[28])
#define GO_SP(x) (GO_ARM64(x)->sp)
#define GO_FP(x) (GO_ARM64(x)->regs[29]) /* Go keeps frame pointers: R29 */
#define GO_PC(x) (GO_ARM64(x)->pc)
#else
#error "goabi.h: build with bpf2go -target amd64 or arm64 (defines __TARGET_ARCH_x86 or __TARGET_ARCH_arm64)"
#endif

// go_reg returns integer register n (1-based, ABI order). The registers are copied to the stack first: indexing
// pt_regs by a computed offset is a "modified ctx pointer" the verifier rejects.
static __always_inline __u64 go_reg(struct pt_regs *ctx, __u32 n) {
	__u64 regs[9] = {GO_REG1(ctx), GO_REG2(ctx), GO_REG3(ctx), GO_REG4(ctx), GO_REG5(ctx),
			 GO_REG6(ctx), GO_REG7(ctx), GO_REG8(ctx), GO_REG9(ctx)};
	__u32 i = n - 1;
	if (i >= 9)
		return 0;
	return regs[i];
}

// A call in flight is found again at its RETs by (process, goroutine): goroutines migrate between threads and CPUs,
// but a call starts and ends on the same g.
struct go_call_key {
	__u32 tgid;
	__u32 pad;
	__u64 g;
};

static __always_inline struct go_call_key go_call_key(struct pt_regs *ctx) {
	struct go_call_key k = {};
	k.tgid = bpf_get_current_pid_tgid() >> 32;
	k.g = GO_G(ctx);
	return k;
}

// Latency histogram: log-linear buckets, LAT_SUB per power of two, so a bucket is at most 1/LAT_SUB of its lower bound
// wide (12.5%). Durations below 2^LAT_MIN_SHIFT ns share bucket 0; above 2^(LAT_MIN_SHIFT+LAT_OCTAVES) ns the last one.
// The same layout is decoded in Go (internal/hist); change both together.
#define LAT_SUB_SHIFT 3
#define LAT_SUB (1 << LAT_SUB_SHIFT)
#define LAT_MIN_SHIFT 10 /* 1.024 us */
#define LAT_OCTAVES 26   /* up to ~68.7 s */
#define LAT_BUCKETS (LAT_OCTAVES * LAT_SUB)

struct lat_hist {
	__u64 count;
	__u64 sum_ns;
	__u64 buckets[LAT_BUCKETS];
};

// log2 as a six-step binary search, no loop. BPF has no count-leading-zeros instruction, and the Debian 12 clang (14)
// this module is generated with crashes lowering __builtin_clzll for the BPF target, so the builtin is not an option.
static __always_inline __u32 log2_u64(__u64 v) {
	__u32 r = 0;
	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) { r += 1; }
	return r;
}

static __always_inline __u32 lat_bucket(__u64 ns) {
	if (ns < (1ULL << LAT_MIN_SHIFT))
		return 0;
	__u32 msb = log2_u64(ns);
	if (msb >= LAT_MIN_SHIFT + LAT_OCTAVES)
		return LAT_BUCKETS - 1;
	__u32 sub = (ns >> (msb - LAT_SUB_SHIFT)) & (LAT_SUB - 1);
	__u32 idx = (msb - LAT_MIN_SHIFT) * LAT_SUB + sub;
	return idx < LAT_BUCKETS ? idx : LAT_BUCKETS - 1;
}

// lat_record adds one observation; h lives in a per-CPU map value, so plain adds are enough.
static __always_inline void lat_record(struct lat_hist *h, __u64 ns) {
	h->count++;
	h->sum_ns += ns;
	__u32 b = lat_bucket(ns);
	if (b < LAT_BUCKETS)
		h->buckets[b]++;
}

// lat_record_shared adds one observation to a histogram that every CPU writes (a plain hash's value): atomic adds, as
// plain ones lose increments when two CPUs record into the same series at once.
static __always_inline void lat_record_shared(struct lat_hist *h, __u64 ns) {
	__sync_fetch_and_add(&h->count, 1);
	__sync_fetch_and_add(&h->sum_ns, ns);
	__u32 b = lat_bucket(ns);
	if (b < LAT_BUCKETS)
		__sync_fetch_and_add(&h->buckets[b], 1);
}

// lat_hist_of returns the histogram of key in map (a hash of lat_hist values), inserting a zeroed one copied from
// zero_map's only entry when there is none: struct lat_hist is too big for the 512-byte BPF stack.
static __always_inline struct lat_hist *lat_hist_of(void *map, const void *key, void *zero_map) {
	struct lat_hist *h = bpf_map_lookup_elem(map, key);
	if (h)
		return h;
	__u32 z = 0;
	struct lat_hist *zero = bpf_map_lookup_elem(zero_map, &z);
	if (!zero)
		return 0;
	bpf_map_update_elem(map, key, zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(map, key);
}

#define LE4(a, b, c, d) ((__u64)(a) | (__u64)(b) << 8 | (__u64)(c) << 16 | (__u64)(d) << 24)
#define LE8(a, b, c, d, e, f, g, h) (LE4(a, b, c, d) | LE4(e, f, g, h) << 32)
#define METHOD_OTHER LE8('O', 'T', 'H', 'E', 'R', 0, 0, 0)

// std_method is an HTTP method's label: v holds the method's 3 to 7 bytes, zero padded (so whole-word equality also
// checks the length); one of the nine standard methods is itself, anything else OTHER. A method is a token its
// sender chose (a server's client, or the client a reverse proxy passes it on from), so passing it through would let
// anyone make up label values, fill the series maps and crowd real requests and calls out.
static __always_inline __u64 std_method(__u64 v) {
	if (v == LE4('G', 'E', 'T', 0) || v == LE4('P', 'O', 'S', 'T') || v == LE4('P', 'U', 'T', 0) ||
	    v == LE8('D', 'E', 'L', 'E', 'T', 'E', 0, 0) || v == LE4('H', 'E', 'A', 'D') ||
	    v == LE8('P', 'A', 'T', 'C', 'H', 0, 0, 0) || v == LE8('O', 'P', 'T', 'I', 'O', 'N', 'S', 0) ||
	    v == LE8('C', 'O', 'N', 'N', 'E', 'C', 'T', 0) || v == LE8('T', 'R', 'A', 'C', 'E', 0, 0, 0))
		return v;
	return METHOD_OTHER;
}

// go_iface_nonnil reports whether a Go interface value (itab, data) passed in registers is non-nil: an error result.
#define go_iface_nonnil(itab) ((itab) != 0)

char LICENSE[] SEC("license") = "Dual MIT/GPL";
