//go:build ignore

// HTTP/1.x server RED at the socket layer, with no uprobe. A uprobe costs a trap (int3, uprobe lookup, emulation:
// ~1-2 us of CPU per hit in this VM, a tenth of a no-op Go request); a BTF tracepoint (tp_btf) is a direct call from
// a static-key branch in the kernel. fentry/fexit on tcp_recvmsg/tcp_sendmsg would be the same price and see the
// msghdr, but this kernel refuses every fentry/fexit program at load (EPERM before the verifier, even an empty one on
// do_nanosleep), so the sock:sock_recv_length and sock:sock_send_length tracepoints are used: they give the socket and
// the byte count at the end of sock_recvmsg/sock_sendmsg, and the buffer is the syscall's argument in the user
// registers the kernel saved (bpf_task_pt_regs). What is seen:
//   - a request begins when a target process reads, on a socket, bytes that start with a method token and a space
//     ("GET ", "POST ", ...): timestamp and method are kept per socket (struct sock *);
//   - it ends when the same process has written, on that socket, bytes that start with "HTTP/1.x NNN": NNN is the
//     status. 1xx answers other than 101 are interim (100 Continue) and end nothing;
//   - a request's first bytes can come in a read of their own: net/http's background read
//     (connReader.startBackgroundRead) takes the first byte of the next request alone while the previous one finishes,
//     and a client's first segment can hold just "GE" or "GET /". A read of fewer than 8 bytes that can begin a
//     request ("G" up to "OPTIONS") is carried, with its length and time, and joined with the next read's bytes.
// Limits: TLS is invisible here (the socket carries ciphertext); HTTP/2 is not parsed; of several requests read in one
// recv (pipelining) only the first is seen, and a request read while another is unanswered on the socket replaces it;
// methods other than the nine standard ones are not counted; a body read that happens to start with a method token
// would restart the request; io_uring and splice have no syscall buffer to read. Responses written in several writes
// are fine (only the first starts with "HTTP/"), and so are bodies larger than one read (later reads start no request
// unless they begin with a method token, as above).
//
// These programs run for every process's socket traffic, so the first thing each does is the target filter: the pid
// (tgid) indexes an array the agent fills (an inlined lookup, no helper call), and only pids beyond its size take a
// hash lookup. The second is the server filter: a target also reads and writes its own client sockets (PostgreSQL,
// Redis, NATS, etcd, outbound HTTP), often more than the sockets it serves, and reading their first bytes from user
// memory cost more than the whole request's bookkeeping. So only sockets a TCP listener accepted are watched: a third
// program, on sock:inet_sock_set_state, gives every socket that enters SYN_RECV from LISTEN (the child a listener
// creates for a passive open; that transition runs in softirq, for any process's listener) a per-socket storage
// (BPF_MAP_TYPE_SK_STORAGE), and the other two stop at its lookup for any socket without one, before any user-memory
// read. The storage holds the request in flight and the kernel frees it with the socket, so a closed socket leaves
// nothing behind and a new socket at the same address starts clean (the LRU hash by socket address this replaces
// could hand a new socket an old one's unanswered request). A connection accepted before the agent attached has no
// storage and is not seen; keep-alive clients reconnect eventually, wrk and the tests connect after.
#include "goabi.h"

#define MSG_PEEK 2
#define IPPROTO_TCP 6
#define PID_ARRAY_BITS 16

struct red_key {
	__u32 tgid;
	__u32 status;
	char method[8];
};

// The request in flight on one socket.
struct sock_req {
	__u64 start_ns;  // 0: none
	__u64 method;    // method token, zero padded (the bytes of red_key.method)
	__u64 carry;     // the bytes of a short read that can begin a request, zero padded
	__u64 carry_ns;  // when they were read
	__u32 tgid;      // the process that read them
	__u8 carry_len;  // how many (1..7), 0: none
	__u8 pad[3];
};

// Target processes, by tgid: pids below 1 << PID_ARRAY_BITS here (value 1), larger ones in target_pids_big.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << PID_ARRAY_BITS);
	__type(key, __u32);
	__type(value, __u32);
} target_pids SEC(".maps");

// Usually empty (pid_max is often 1 << 22 but most pids stay below the array's bound): not preallocated.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u32);
} target_pids_big SEC(".maps");

// The sockets a listener accepted, each with its request in flight: storage attached to the socket itself, created at
// the passive open and freed by the kernel with the socket.
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sock_req);
} socks SEC(".maps");

// Not preallocated (README, "Map memory"): memory for the series in use, not 4096 histograms. One value shared by
// the CPUs (lat_record_shared), not per CPU: a per-CPU hash that is not preallocated takes each new element's per-CPU
// value from the kernel's atomic per-CPU pool, and most inserts failed there (see requests in httpserver.c): every
// request of a series not yet inserted was lost.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 4096);
	__type(key, struct red_key);
	__type(value, struct lat_hist);
} requests SEC(".maps");

// Requests whose series found no room in requests: counted so that a full map is never silent
// (shanhai_bpf_series_dropped_total).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} series_dropped SEC(".maps");

// One zeroed value to insert from: struct lat_hist is too big for the 512-byte BPF stack.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lat_hist);
} zero_hist SEC(".maps");

static __always_inline int wanted(__u32 tgid) {
	if (tgid < (1U << PID_ARRAY_BITS)) {
		__u32 *v = bpf_map_lookup_elem(&target_pids, &tgid);
		return v && *v;
	}
	return bpf_map_lookup_elem(&target_pids_big, &tgid) != 0;
}

#define MASK(n) ((n) >= 8 ? ~0ULL : (1ULL << ((n) * 8)) - 1)

// method_len returns the length of the method token v starts with (followed by a space), or 0.
static __always_inline __u32 method_len(__u64 v) {
	__u64 v4 = v & MASK(4), v5 = v & MASK(5), v6 = v & MASK(6);
	if (v4 == LE4('G', 'E', 'T', ' ') || v4 == LE4('P', 'U', 'T', ' '))
		return 3;
	if (v5 == (LE4('P', 'O', 'S', 'T') | (__u64)' ' << 32) || v5 == (LE4('H', 'E', 'A', 'D') | (__u64)' ' << 32))
		return 4;
	if (v6 == (LE4('P', 'A', 'T', 'C') | LE4('H', ' ', 0, 0) << 32) || v6 == (LE4('T', 'R', 'A', 'C') | LE4('E', ' ', 0, 0) << 32))
		return 5;
	if ((v & MASK(7)) == (LE4('D', 'E', 'L', 'E') | LE4('T', 'E', ' ', 0) << 32))
		return 6;
	if (v == LE8('O', 'P', 'T', 'I', 'O', 'N', 'S', ' ') || v == LE8('C', 'O', 'N', 'N', 'E', 'C', 'T', ' '))
		return 7;
	return 0;
}

// method_prefix reports whether the n bytes of v (1..7, zero padded) can begin a method token and its space.
static __always_inline int method_prefix(__u64 v, __u32 n) {
	__u64 k = MASK(n & 7);
	return v == (LE4('G', 'E', 'T', ' ') & k) || v == (LE4('P', 'U', 'T', ' ') & k) ||
	       v == ((LE4('P', 'O', 'S', 'T') | (__u64)' ' << 32) & k) || v == ((LE4('H', 'E', 'A', 'D') | (__u64)' ' << 32) & k) ||
	       v == ((LE4('P', 'A', 'T', 'C') | LE4('H', ' ', 0, 0) << 32) & k) ||
	       v == ((LE4('T', 'R', 'A', 'C') | LE4('E', ' ', 0, 0) << 32) & k) ||
	       v == ((LE4('D', 'E', 'L', 'E') | LE4('T', 'E', ' ', 0) << 32) & k) ||
	       v == (LE8('O', 'P', 'T', 'I', 'O', 'N', 'S', ' ') & k) || v == (LE8('C', 'O', 'N', 'N', 'E', 'C', 'T', ' ') & k);
}

// Syscalls whose user buffer the programs find (x86-64 numbers).
#define NR_READ 0
#define NR_WRITE 1
#define NR_READV 19
#define NR_WRITEV 20
#define NR_SENDTO 44
#define NR_RECVFROM 45
#define NR_SENDMSG 46
#define NR_RECVMSG 47

// user_buf returns where the data of the socket syscall the current thread is in begins in its memory: the
// tracepoints give the socket and the byte count but not the buffer, which is an argument of the syscall, in the
// user registers the kernel saved at entry. For readv/writev and recvmsg/sendmsg it is the first iovec's base, if that
// iovec holds at least need bytes. Anything else (io_uring, splice, a kernel socket) has no user buffer here: 0.
static __always_inline const void *user_buf(__u64 need) {
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	__u64 nr = regs->orig_ax, arg = regs->si;
	switch (nr) {
	case NR_READ:
	case NR_WRITE:
	case NR_RECVFROM:
	case NR_SENDTO:
		return (const void *)arg;
	case NR_RECVMSG:
	case NR_SENDMSG: // struct user_msghdr: msg_name, msg_namelen, msg_iov at 16
		if (bpf_probe_read_user(&arg, sizeof(arg), (void *)(arg + 16)))
			return 0;
		break;
	case NR_READV:
	case NR_WRITEV:
		break;
	default:
		return 0;
	}
	struct iovec seg;
	if (bpf_probe_read_user(&seg, sizeof(seg), (void *)arg) || seg.iov_len < need)
		return 0;
	return seg.iov_base;
}

// served marks a socket a listener accepted: the child socket of a passive open enters SYN_RECV from LISTEN (its state
// is copied from the listener before it is set). Sockets that connect (SYN_SENT) never do.
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(served, const struct sock *sk, int oldstate, int newstate) {
	if (newstate != TCP_SYN_RECV || oldstate != TCP_LISTEN || sk->sk_protocol != IPPROTO_TCP)
		return 0;
	bpf_sk_storage_get(&socks, (struct sock *)sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	return 0;
}

// server_sock returns the request state of a socket a listener accepted, for process tgid, or 0 for any other socket
// (the target's own client connections, a Unix socket). A socket seen first, or passed to another process, starts
// clean.
static __always_inline struct sock_req *server_sock(struct sock *sk, __u32 tgid) {
	struct sock_req *st = bpf_sk_storage_get(&socks, sk, 0, 0);
	if (st && st->tgid != tgid) {
		st->tgid = tgid;
		st->start_ns = 0;
		st->carry_len = 0;
	}
	return st;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(recv_length, struct sock *sk, int n, int flags) {
	// Failed reads first: a Go server's reads end in EAGAIN about as often as they return data.
	if (n <= 0 || (flags & MSG_PEEK))
		return 0;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (!wanted(tgid))
		return 0;
	struct sock_req *st = server_sock(sk, tgid);
	if (!st)
		return 0;
	__u32 len = n < 8 ? n : 8;
	const void *p = user_buf(len);
	if (!p)
		return 0;
	// The verifier wants a size it can bound itself: len & 15, which clang would drop as a no-op (len <= 8) unless
	// the empty asm hides what len is. Hence 16 bytes to read into.
	__u64 b[2] = {};
	asm volatile("" : "+r"(len));
	if (bpf_probe_read_user(b, len & 15, p))
		return 0;
	__u64 v = b[0];
	if (st->carry_len) {
		// The previous read was short and could begin a request: it may start there.
		__u32 cl = st->carry_len & 7;
		__u64 joined = st->carry | v << (cl * 8);
		__u32 jm = method_len(joined), jn = cl + n;
		st->carry_len = 0;
		if (jm && jn > jm) {
			st->method = joined & MASK(jm);
			st->start_ns = st->carry_ns;
			return 0;
		}
		if (jn < 8 && method_prefix(joined, jn)) { // still too short: "G", "E", "T /..."
			st->carry = joined;
			st->carry_len = jn;
			return 0;
		}
	}
	// Most reads on a served socket (a request body) neither begin with a method token and its space nor are short:
	// they stop here.
	__u32 m = method_len(v);
	if (m && (__u64)n > m) {
		st->method = v & MASK(m);
		st->start_ns = bpf_ktime_get_ns();
	} else if (n < 8 && method_prefix(v, n)) {
		st->carry = v;
		st->carry_len = n;
		st->carry_ns = bpf_ktime_get_ns();
	}
	return 0;
}

static __always_inline int digit(char c) { return c >= '0' && c <= '9'; }

SEC("tp_btf/sock_send_length")
int BPF_PROG(send_length, struct sock *sk, int n, int flags) {
	if (n < 12)
		return 0;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (!wanted(tgid))
		return 0;
	// The socket first: writes on the target's client sockets (no storage) and on served sockets with no request in
	// flight stop here, before reading user memory.
	struct sock_req *st = server_sock(sk, tgid);
	if (!st || !st->start_ns)
		return 0;
	const void *p = user_buf(12);
	if (!p)
		return 0;
	char b[16] = {};
	if (bpf_probe_read_user(b, 12, p))
		return 0;
	// "HTTP/1.x NNN"
	if ((*(__u64 *)b & MASK(7)) != (LE4('H', 'T', 'T', 'P') | LE4('/', '1', '.', 0) << 32) || b[8] != ' ' ||
	    !digit(b[9]) || !digit(b[10]) || !digit(b[11]))
		return 0;
	__u32 status = (b[9] - '0') * 100 + (b[10] - '0') * 10 + (b[11] - '0');
	if (status >= 100 && status < 200 && status != 101)
		return 0; // interim: the final answer follows
	__u64 d = bpf_ktime_get_ns() - st->start_ns;
	struct red_key rk = {.tgid = tgid, .status = status};
	*(__u64 *)rk.method = st->method;
	st->start_ns = 0;
	struct lat_hist *h = lat_hist_of(&requests, &rk, &zero_hist);
	if (h) {
		lat_record_shared(h, d);
		return 0;
	}
	__u32 z = 0;
	__u64 *dropped = bpf_map_lookup_elem(&series_dropped, &z);
	if (dropped)
		*dropped += 1;
	return 0;
}
