//go:build ignore

// TCP connection lifecycle per process, from tracepoints and one uprobe (no kprobes on this kernel):
//   - active open: sock:inet_sock_set_state to SYN_SENT runs in the connecting process, so the socket's owner is
//     remembered there, and its entry in tcp made there, and the open counted when it reaches ESTABLISHED (from
//     SYN_SENT, or from SYN_RECV after a simultaneous open);
//   - passive open: the handshake completes in softirq (whatever process happens to run), so the owner is taken when
//     the target's internal/poll.(*FD).Accept returns, in the accepting process (accept_ret, a uprobe attached per
//     target binary at that function's exits). Not a syscalls:sys_exit_accept{,4} tracepoint: registering any
//     syscalls tracepoint puts every task on the machine on the slow syscall path (~40 ns per syscall, every process);
//   - close: the transition to CLOSE (often in softirq) is charged to the remembered owner;
//   - retransmits: tcp:tcp_retransmit_skb, charged to the owner likewise: the segments the socket's own count
//     (tcp_sock.total_retrans, tcpi_total_retrans) grew by since the program last saw it, not one per call. One call
//     retransmits one packet, which may carry several segments (GSO), and newer kernels also call the tracepoint for
//     an attempt that failed (its third argument, the error: nothing was sent, nothing is counted). And a run the kernel
//     skips (a retransmit interrupting the program on its CPU) loses nothing: the next one counts its segments too.
//   - what no program saw (a change in a softirq where none runs: README): recount, a TCP socket iterator the agent
//     runs before each read, counts a still-open socket's unseen open and retransmits; the agent counts unseen closes.
// The two TCP tracepoints are BTF tracepoints (tp_btf, BPF_PROG_TYPE_TRACING), not perf-event tracepoint programs:
// the kernel runs a tracepoint program of the perf-event kind only when no kprobe, uprobe or tracepoint program and
// no BPF map syscall is running on the CPU (the per-CPU bpf_prog_active guard), and skips it otherwise, counting a
// recursion miss. A state change in softirq that interrupted one (the agent's own exit programs, a scrape's map
// lookups) was lost: an open, or a close, never counted. A tp_btf program is skipped only when it interrupts itself
// on the CPU; but that happens too: a state change in softirq (a FIN or ACK received, a timer) interrupts the program
// running for a connect() or close() in process context. So set_state is loaded twice (set_state and
// set_state_spare, two programs with a guard each) and both are attached: every change runs both, one after the
// other, and a change that interrupts one of them finds the other free. Handling a change is idempotent, so the
// second run of the same change does nothing: SYN_SENT writes the same owner, an open is counted only by the run that
// marks the owner established, and a close only by the run whose delete of the owner succeeds. Its arguments are the
// tracepoint's TP_PROTO, read through BTF-typed pointers.
#include "goabi.h"
#include "exitgroup.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6

// established: 0 while connecting, OPEN_COUNTED once the open is counted, OPEN_DROPPED once open but not counted (its
// process found no room in tcp): that connection's close and retransmits are then dropped too, not taken for those
// of a process that exited (whose entry is gone on purpose). CONNECT_DROPPED while connecting when the process found
// no room in tcp at SYN_SENT: its SYN retransmits and a failed connect are dropped likewise.
#define OPEN_COUNTED 1
#define OPEN_DROPPED 2
#define CONNECT_DROPPED 3

struct owner {
	__u32 tgid;
	__u16 established;
	// The low 16 bits of the socket's total_retrans when its retransmits were last counted. 16 bits keep tgid,
	// established and retrans in 8 bytes (owners is preallocated); the difference of two readings is exact modulo
	// 2^16, and one retransmit is at most one GSO packet (64 KiB, a few thousand segments at the smallest MSS).
	__u16 retrans;
	// The owner's start time (its tcp entry's start): tgid names the owner only while it lives. A connection can
	// outlive the process that opened it (its socket passed on, inherited, or held by a child), and a new process
	// may get the pid: its entry has another start, so the old connection's events are not counted into it.
	__u64 start;
	// The connection's addresses, in its network namespace (netns, the namespace's inode number), written once the
	// connection is open (TUPLE), before established says so. The agent looks each open owner up by them among the
	// kernel's live sockets (sock_diag) before it reports, and counts the close of one no longer there: a state change
	// no program saw (README, "TCP state changes no program sees"). A socket's address is the only identity sock_diag
	// and this program share on every kernel the probe loads on: the diag's socket cookie is made lazily, so a socket
	// no one asked has none for a CO-RE read, and bpf_get_socket_cookie is not callable from a tracepoint before 5.12.
	__u32 netns;
	__u16 family;
	__u16 sport; // host order (skc_num)
	__u16 dport; // network order (skc_dport), as sock_diag gives both
	__u16 pad;
	__u8 saddr[16]; // IPv4: the first 4 bytes
	__u8 daddr[16];
	__u32 dev_if; // the device the socket is bound to (skc_bound_dev_if): a lookup by addresses must name it
};

struct tcp_stats {
	__u64 active;   // connect() reached ESTABLISHED
	__u64 passive;  // accept() returned a connection
	__u64 closed;   // an opened connection reached CLOSE
	__u64 failed;   // a connect() that never reached ESTABLISHED
	__u64 retrans;  // retransmitted segments
	__u64 start;    // the process's start time (task_struct.start_time of its group leader): which process holds the pid
};

// The owners of the sockets of the processes the agent reads (tracked below), one entry per open socket, deleted at
// its close. A plain hash, not an LRU: an LRU shared by every socket on the machine evicted a target's socket without
// a word once others had filled it (its close, failed connect and retransmits then never counted), where a plain
// hash refuses the new socket and the refusal is counted (owners_full). Only tracked processes' sockets are put in,
// so the machine's other connections (a Kafka or PostgreSQL host's thousands) take none of its room.
// Not preallocated (README, "Map memory"): an element comes from the slab caches as a socket is owned, in process
// context (a connect, an accept), and an allocation that fails is counted as the full map is.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, __u64); // struct sock *
	__type(value, struct owner);
} owners SEC(".maps");

// Connections of tracked processes that found owners full: none of their events (open, close, failed connect,
// retransmits) is counted (shanhai_bpf_tcp_connections_untracked_total). Added atomically, as tcp_dropped.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} owners_full SEC(".maps");

// The executables whose processes the agent reads, by inode number: the targets named by path, the files its targets
// ran at its last scan (including those it could not probe: an attach that failed, BPF_MAX_EXECUTABLES reached) and
// the files it probes. Set before the scan attaches anything, so a target's connections count from then on, also
// while other executables take seconds to attach. As in probed_files, the inode alone may match a file on another
// filesystem: that process's connections are then counted too, and never read.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u8);
} tracked_files SEC(".maps");

// An entry per process that used TCP, deleted when the process is gone: not preallocated (README, "Map memory"), so
// 8192 entries are not charged before the first connection. One value that every CPU adds to atomically (a close or
// retransmit often runs in softirq on another CPU than the owner's), not a value per CPU: a per-CPU hash that is not
// preallocated takes each new element's per-CPU value from the kernel's per-CPU allocator without waiting, which under
// load may have nothing ready (a workqueue refills it), and the process's first event, the one that was to create
// its entry, would be lost; the HTTP server, call and runtime probes lost theirs that way. A plain element comes from
// the slab caches.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct tcp_stats);
} tcp SEC(".maps");

// The executables the agent probes, by inode number (the agent adds one when it attaches to a file): the exit of a
// process running one is reported in exits. The inode alone may match a file on another filesystem; that process's
// exit is then reported too, and the agent deletes entries it does not have.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u8);
} probed_files SEC(".maps");

// The pids (__u32) of processes of probed executables that exited, for the agent to delete their entries in every
// probe's maps before a new process can be counted under the same pid. Read at each scan and scrape, so written
// without a wakeup; 64 KiB holds 4096 exits (16 B a record).
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 << 10);
} exits SEC(".maps");

// Events (opens, closes, failed connects, retransmits) whose process found no room in tcp (a full map, or an element
// the kernel could not allocate): counted so that a full map is never silent (shanhai_bpf_tcp_series_dropped_total).
// Added atomically although per CPU: a state change in softirq may interrupt a program adding on the same CPU.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} tcp_dropped SEC(".maps");

static __always_inline void tcp_drop_n(__u64 events) {
	__u32 z = 0;
	__u64 *n = bpf_map_lookup_elem(&tcp_dropped, &z);
	if (n)
		__sync_fetch_and_add(n, events);
}

static __always_inline void tcp_drop(void) {
	tcp_drop_n(1);
}

// tracked says whether the current process runs one of the executables the agent reads (tracked_files). Only their
// connections are counted; a connect of any other process costs this and nothing more.
static __always_inline bool tracked(void) {
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 ino = BPF_CORE_READ(task, mm, exe_file, f_inode, i_ino);
	return ino && bpf_map_lookup_elem(&tracked_files, &ino);
}

// total_retrans is the low 16 bits of the count of segments the kernel retransmitted on sk (struct owner's retrans),
// read with CO-RE: the programs' sock is a struct sock, which a BTF-typed load may not read past.
static __always_inline __u16 total_retrans(const struct sock *sk) {
	return BPF_CORE_READ((const struct tcp_sock *)sk, total_retrans);
}

// process_start is the current process's start time, which tells two processes that had the same pid apart (the
// group leader's: a thread that execs takes its leader's start time, so an exec keeps it).
static __always_inline __u64 process_start(void) {
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	return BPF_CORE_READ(task, group_leader, start_time);
}

// stats_for is the current process's entry in tcp, made if it has none (only in process context: the entry is the
// running process's). The start time is read only then, so a process's later connections pay nothing for it.
static __always_inline struct tcp_stats *stats_for(__u32 tgid) {
	struct tcp_stats *s = bpf_map_lookup_elem(&tcp, &tgid);
	if (s)
		return s;
	struct tcp_stats zero = {.start = process_start()};
	bpf_map_update_elem(&tcp, &tgid, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(&tcp, &tgid);
}

// TUPLE writes the addresses of open socket sk into its owner o (struct owner's netns, family, ports, addresses,
// device), each field read with READ(dst, src): plain loads in the state change programs, whose sock is BTF-typed,
// as the dearer probed reads cost a helper call each (set_state's ns per hit +17% with them, README); probed reads
// in accept_ret, whose socket is found through the accepting process's file table.
#define TUPLE(o, sk, READ)                                                         \
	do {                                                                       \
		struct net *net_ = 0;                                              \
		READ(net_, (sk)->__sk_common.skc_net.net);                        \
		if (net_)                                                          \
			READ((o)->netns, net_->ns.inum);                           \
		READ((o)->family, (sk)->__sk_common.skc_family);                   \
		READ((o)->sport, (sk)->__sk_common.skc_num);                       \
		READ((o)->dport, (sk)->__sk_common.skc_dport);                     \
		READ((o)->dev_if, (sk)->__sk_common.skc_bound_dev_if);             \
		if ((o)->family == AF_INET6) {                                     \
			READ((o)->saddr, (sk)->__sk_common.skc_v6_rcv_saddr);      \
			READ((o)->daddr, (sk)->__sk_common.skc_v6_daddr);          \
		} else {                                                           \
			READ(*(__u32 *)(o)->saddr, (sk)->__sk_common.skc_rcv_saddr); \
			READ(*(__u32 *)(o)->daddr, (sk)->__sk_common.skc_daddr);     \
		}                                                                  \
	} while (0)
#define BTF_READ(dst, src) __builtin_memcpy(&(dst), &(src), sizeof(dst))
#define PROBED_READ(dst, src) bpf_core_read(&(dst), sizeof(dst), &(src))

// owner_of makes the owner of a socket the current process opened or accepted, s its entry (none: no room).
static __always_inline struct owner owner_of(__u32 tgid, struct tcp_stats *s, __u16 established, const struct sock *sk) {
	return (struct owner){.tgid = tgid, .established = established, .retrans = total_retrans(sk), .start = s ? s->start : process_start()};
}

// stats_of is the entry of the process that owns a socket (tgid, start), for the events that run anywhere (softirq,
// another process holding the socket): none when the owner has exited, including when a new process has its pid.
static __always_inline struct tcp_stats *stats_of(__u32 tgid, __u64 start) {
	struct tcp_stats *s = bpf_map_lookup_elem(&tcp, &tgid);
	return s && s->start == start ? s : 0;
}

// dropped says whether the events of a socket in this established state whose process has no entry in tcp are
// drops (counted in tcp_dropped) rather than those of a process that exited.
static __always_inline bool dropped(__u32 established) {
	return established == OPEN_DROPPED || established == CONNECT_DROPPED;
}

// forget deletes owner prev at sk, a socket's that has been freed with its close unseen, now that the address is
// another socket's: the kernel frees a TCP socket only once it has passed CLOSE, and hands the address out again only
// after the free. Its close was missed (seen: up to 60 dial connections a run of TestTCPCountsWhileOtherProgramsRun,
// each last seen going ESTABLISHED -> FIN_WAIT1: their later changes ran in softirq while a thread of pid 1 was current,
// and on this machine no BPF program runs then, with no recursion miss; README) and, for an open connection, is counted
// here, by whichever delete succeeds, as at CLOSE. The agent counts such a close sooner, once the socket is gone from
// the kernel's tables (struct owner's addresses), by deleting the owner itself: whichever delete succeeds counts. Its
// retransmits since last counted cannot be read from a freed socket. A connecting owner's end is not counted: a failed
// connect or an open and close both unseen, which of them is not known.
static __always_inline void forget(__u64 *sk, const struct owner *prev) {
	__u32 tgid = prev->tgid;
	__u16 established = prev->established;
	__u64 start = prev->start;
	if (bpf_map_delete_elem(&owners, sk) || (established != OPEN_COUNTED && established != OPEN_DROPPED))
		return;
	struct tcp_stats *s = stats_of(tgid, start);
	if (s)
		__sync_fetch_and_add(&s->closed, 1);
	else if (established == OPEN_DROPPED)
		tcp_drop();
}

// own records o as the owner of socket sk. With owners full the socket is refused and counted once in owners_full
// by the caller that says so (count): both set_state programs run for every change, so only one of them counts.
//
// An owner already there of an open connection is a freed socket's (forget); overwritten, its close was lost with
// nothing counted. A connecting owner (0) is overwritten as it is: it is this socket's own from the first set_state
// run, or a freed one's whose end is not counted anyway.
static __always_inline bool own(__u64 *sk, struct owner *o, bool count) {
	struct owner *prev = bpf_map_lookup_elem(&owners, sk);
	if (prev && (prev->established == OPEN_COUNTED || prev->established == OPEN_DROPPED))
		forget(sk, prev);
	if (!bpf_map_update_elem(&owners, sk, o, BPF_ANY))
		return true;
	if (count) {
		__u32 z = 0;
		__u64 *n = bpf_map_lookup_elem(&owners_full, &z);
		if (n)
			__sync_fetch_and_add(n, 1);
	}
	return false;
}

// opened counts the open of connecting owner o's socket sk, which has reached ESTABLISHED: in set_state, or in
// recount for an open no state change program saw.
static __always_inline void opened(struct owner *o, const struct sock *sk) {
	// The addresses go in before established says the connection is open: the agent reads an owner without a
	// lock and looks up only open ones (a torn read is caught there: it reads the owner again before deleting).
	TUPLE(o, sk, BTF_READ);
	barrier();
	// The entry was made at SYN_SENT: none now means the owner has exited (its socket outlives it in another
	// process), or found no room then and has not since. Only the second is a drop; either way the connection
	// is open from here, so that its close is not taken for a failed connect.
	struct tcp_stats *s = stats_of(o->tgid, o->start);
	if (s) {
		o->established = OPEN_COUNTED;
		__sync_fetch_and_add(&s->active, 1);
	} else if (o->established == CONNECT_DROPPED) {
		o->established = OPEN_DROPPED;
		tcp_drop();
	} else {
		o->established = OPEN_COUNTED;
	}
}

// retransmitted counts the segments owner o's socket retransmitted since last counted, now being its total_retrans:
// in retransmit, and in recount for the runs of it the kernel skipped or never made.
static __always_inline void retransmitted(struct owner *o, __u16 now) {
	__u16 segs = now - o->retrans;
	if (!segs)
		return; // a failed attempt, or nothing new
	o->retrans = now;
	struct tcp_stats *s = stats_of(o->tgid, o->start); // as a close: none after the owner exited
	if (s)
		__sync_fetch_and_add(&s->retrans, segs);
	else if (dropped(o->established))
		tcp_drop_n(segs);
}

// same_socket says whether sk, read now, is the socket whose addresses owner o kept (netns, family, remote address
// and port; the local port once o has one): an owner whose close no program saw stays, and its key, a freed socket's
// address, may since be another process's socket. The local address is left out: it is the owner's as read at
// SYN_SENT, which a connect keeps.
static __always_inline bool same_socket(const struct owner *o, const struct sock *sk) {
	struct owner now = {};
	TUPLE(&now, sk, BTF_READ);
	if (now.netns != o->netns || now.family != o->family || now.dport != o->dport || (o->sport && now.sport != o->sport))
		return false;
	const __u32 *a = (const __u32 *)now.daddr, *b = (const __u32 *)o->daddr;
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3];
}

// on_state handles a state change; spare is set in set_state_spare, which runs second and leaves a socket refused
// for want of room to set_state to count (if set_state was skipped for recursion, such a refusal goes uncounted).
static __always_inline int on_state(const struct sock *sock, int oldstate, int ns, bool spare) {
	if (sock->sk_protocol != IPPROTO_TCP)
		return 0;
	__u64 sk = (__u64)sock;
	if (ns == TCP_SYN_SENT) {
		// The process's entry is made here, in its own context, not when the connection opens or fails: a SYN the
		// peer drops is retransmitted before either, and the retransmit program only adds to an entry (it runs in
		// softirq, where an entry made for the owner could be one of a process that has exited). The second run of
		// this change finds the entry and writes the same owner.
		__u32 tgid = bpf_get_current_pid_tgid() >> 32;
		if (!tracked()) {
			// A socket that starts connecting has no owner but one a freed socket left at its address (forget),
			// which, left there, would be taken for this untracked one: its open, retransmits and close counted
			// for the owner's process, as set_state, retransmit and recount look owners up by the address alone
			// (recount's address check does not tell a connect to the same place). The cost for every untracked
			// connect on the machine: this lookup.
			struct owner *prev = bpf_map_lookup_elem(&owners, &sk);
			if (prev)
				forget(&sk, prev);
			return 0;
		}
		struct tcp_stats *s = stats_for(tgid);
		struct owner o = owner_of(tgid, s, s ? 0 : CONNECT_DROPPED, sock);
		// The addresses known so far (all but the local port, chosen after this change unless bound): recount
		// tells this connection's socket from another that got its memory by them (a stale owner's, whose close no
		// program saw). Written again, whole, when the connection opens.
		TUPLE(&o, sock, BTF_READ);
		own(&sk, &o, !spare);
		return 0;
	}
	struct owner *o = bpf_map_lookup_elem(&owners, &sk);
	if (!o)
		return 0;
	// A listener's new child (inet_csk_clone_lock: LISTEN -> SYN_RECV, in softirq, before any other change of it) has
	// no owner yet, whoever accepts it (accept_ret owns it later), nor has a new listener (CLOSE -> LISTEN, listen()'s,
	// in its process, tracked or not): one here is a freed socket's, as at SYN_SENT above. Left there, a listener's
	// close would count a connecting one as a failed connect of its process. Neither costs a lookup more.
	if (ns == TCP_LISTEN || (ns == TCP_SYN_RECV && oldstate == TCP_LISTEN)) {
		forget(&sk, o);
		return 0;
	}
	// A connect reaches ESTABLISHED from SYN_SENT, or from SYN_RECV after a simultaneous open (both ends sent a SYN:
	// NAT hole punching, a socket connected to its own address); either is the connect's open. A passive socket also
	// passes SYN_RECV to ESTABLISHED, but its owner, if it has one yet, was made by accept_ret with the open counted.
	if (ns == TCP_ESTABLISHED && (oldstate == TCP_SYN_SENT || oldstate == TCP_SYN_RECV)) {
		// The two runs of one change are never concurrent (one after the other on this CPU; the socket's lock keeps
		// its other changes out), so a plain check-and-set is enough to count the open once.
		if (o->established == OPEN_COUNTED || o->established == OPEN_DROPPED)
			return 0;
		// From SYN_RECV, a connecting owner is a simultaneous open's, or a freed socket's left at the address of a
		// listener's child whose LISTEN -> SYN_RECV no program saw: its open was counted to the owner's process. The
		// child's remote end is its client, not where the owner connected to (recount's same_socket), unless the
		// client is that address and port. Only this change of a socket with a connecting owner pays the reads.
		if (oldstate == TCP_SYN_RECV && !same_socket(o, sock)) {
			forget(&sk, o);
			return 0;
		}
		opened(o, sock);
		return 0;
	}
	if (ns == TCP_CLOSE) {
		__u32 tgid = o->tgid;
		__u32 established = o->established;
		__u16 retrans = o->retrans;
		__u64 start = o->start;
		// Only the run (or accept_ret) whose delete succeeds counts the close.
		if (bpf_map_delete_elem(&owners, &sk))
			return 0;
		// The segments retransmitted since the retransmit program last counted this socket's: normally none, but
		// a run that was skipped, or an increment of total_retrans the program did not run after (seen: one
		// segment on one socket in some runs of TestRetransmittedSegmentsAreCounted, with no recursion miss), is
		// counted here at the latest. Nothing retransmits after CLOSE.
		__u16 late = total_retrans(sock) - retrans;
		// The owner has an entry (its SYN_SENT or its accept made it) unless it has exited (process_exit deleted
		// it; its sockets close after that): the close is not counted then, so the entry is not made again for a
		// process that may get the pid next (nor counted into that process's entry). The close of a connection whose
		// open or connect was dropped is dropped too, unless its process has found room since.
		struct tcp_stats *s = stats_of(tgid, start);
		if (!s) {
			if (dropped(established))
				tcp_drop_n(1 + late);
			return 0;
		}
		if (established == OPEN_COUNTED || established == OPEN_DROPPED)
			__sync_fetch_and_add(&s->closed, 1);
		else
			__sync_fetch_and_add(&s->failed, 1);
		if (late)
			__sync_fetch_and_add(&s->retrans, late);
	}
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(set_state, const struct sock *sock, int oldstate, int newstate) {
	return on_state(sock, oldstate, newstate, false);
}

// set_state_spare is set_state again, for the changes that interrupt it (see the top of this file).
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(set_state_spare, const struct sock *sock, int oldstate, int newstate) {
	return on_state(sock, oldstate, newstate, true);
}

// accepted_sock finds the struct sock behind file descriptor fd of the current process:
// task->files->fdt->fd[fd]->private_data (struct socket) ->sk, read with CO-RE so field moves between kernels do not
// matter.
static __always_inline __u64 accepted_sock(long fd) {
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file **fds = BPF_CORE_READ(task, files, fdt, fd);
	unsigned int max = BPF_CORE_READ(task, files, fdt, max_fds);
	if (fd < 0 || fd >= max)
		return 0;
	struct file *f = 0;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return 0;
	struct socket *so = BPF_CORE_READ(f, private_data);
	if (!so)
		return 0;
	struct sock *sk = BPF_CORE_READ(so, sk);
	if (!sk)
		return 0;
	// FD.Accept serves Unix-socket listeners too: only a TCP socket is a passive open, and only its owner is ever
	// deleted (by set_state). MPTCP is an inet stream socket too, but its own states never pass set_state.
	// sk_protocol is a bitfield before Linux 5.6: the probed read works either way.
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if ((family != AF_INET && family != AF_INET6) || BPF_CORE_READ_BITFIELD_PROBED(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	return (__u64)sk;
}

// A passive open is charged where internal/poll.(*FD).Accept returns (it returns (int, syscall.Sockaddr, error): the
// new fd in RAX, -1 on error), in the accepting process, so only targets pay a trap and only per accepted connection.
// (fexit on inet_csk_accept would be simpler, but trampolines are not permitted on every kernel that allows
// tracepoints.) The system probe loads this program with the maps above; the agent attaches it to each target binary.
SEC("uprobe")
int accept_ret(struct pt_regs *ctx) {
	long fd = (long)GO_REG1(ctx);
	if (fd < 0)
		return 0;
	__u64 key = accepted_sock(fd);
	if (!key)
		return 0;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct tcp_stats *s = stats_for(tgid);
	// A passive socket starts with the SYN-ACKs its listener retransmitted (tcp_retransmit_synack, not counted here):
	// only what it retransmits from now on is the owner's.
	struct owner o = owner_of(tgid, s, s ? OPEN_COUNTED : OPEN_DROPPED, (struct sock *)key);
	// Open, so its addresses are known (a connect's are written at ESTABLISHED: its local port is chosen after
	// SYN_SENT).
	struct sock *sk = (struct sock *)key;
	TUPLE(&o, sk, PROBED_READ);
	// Refused for want of room, the connection is counted untracked, and neither its open nor its close here.
	if (!own(&key, &o, true))
		return 0;
	if (s)
		__sync_fetch_and_add(&s->passive, 1);
	else
		tcp_drop();
	// A connection reset while it waited in the accept queue has already passed CLOSE, before it had an owner: no
	// later transition would count its close or delete the entry. The kernel stores the new state after the
	// tracepoint returns, so a CLOSE seen here means set_state has run: if it ran before the entry existed the delete
	// succeeds and the close is counted here, else set_state counted it and deleted the entry itself.
	if (BPF_CORE_READ((struct sock *)key, __sk_common.skc_state) == TCP_CLOSE && !bpf_map_delete_elem(&owners, &key)) {
		if (s)
			__sync_fetch_and_add(&s->closed, 1);
		else
			tcp_drop();
	}
	return 0;
}

SEC("tp_btf/tcp_retransmit_skb")
// (Linux 6.x added a third argument, the transmit error, after these two: it is not read.)
int BPF_PROG(retransmit, const struct sock *sock, const struct sk_buff *skb) {
	__u64 sk = (__u64)sock;
	struct owner *o = bpf_map_lookup_elem(&owners, &sk);
	if (!o)
		return 0;
	// A socket's retransmits are never concurrent (its lock), so a plain read and write of o->retrans is enough.
	retransmitted(o, total_retrans(sock));
	return 0;
}

// open_state says whether a socket in state st has been open: only a connection that reached ESTABLISHED gets to
// these states. Neither CLOSE (a failed connect ends there too, and the socket is out of the tables by then) nor a
// time-wait or request mini socket (no struct sock, and never an owner's key).
static __always_inline bool open_state(int st) {
	return st == TCP_ESTABLISHED || st == TCP_FIN_WAIT1 || st == TCP_FIN_WAIT2 || st == TCP_CLOSE_WAIT ||
	       st == TCP_CLOSING || st == TCP_LAST_ACK;
}

// recount catches up what no state change or retransmit program saw of the target sockets still open: some run in
// softirq while no BPF program can (README, "TCP state changes no program sees"). A connect whose SYN_SENT ->
// ESTABLISHED was one (the SYN-ACK handled in a softirq, often a retransmit timer's) kept a connecting owner, its open
// never counted and its close later counted as a failed connect; a retransmit run that was skipped left its segments
// for the socket's CLOSE, lost with it if that was unseen too. The agent runs this program before each read (an
// iter/tcp iterator: every TCP socket of the reading thread's network namespace, 5.9), and it does for each socket
// with an owner what the programs would have: counts the open of a connecting owner whose socket is open, and the
// segments retransmitted since last counted.
//
// Counted once: from 5.15 the iterator holds each full socket's lock while this runs (bpf_iter_tcp_seq_show in
// net/ipv4/tcp_ipv4.c), so no state change or retransmit of it runs meanwhile, and whichever of this and set_state
// comes second finds the owner open, as set_state's second run does. How it holds it differs: 5.15 takes
// lock_sock_fast, whose fast path (the socket not owned by a process: __lock_sock_fast, net/core/sock.c) keeps the
// socket's spinlock with softirqs off on this CPU, so a softirq or timer for the socket on another CPU spins on that
// spinlock (bh_lock_sock in tcp_v4_rcv and the TCP timers) until this returns, and none runs on this CPU; later kernels
// (lock_sock since the bpf_sock_destroy series, 2023; 6.18 here) mark the socket owned, so a softirq queues the packet
// to the backlog and a timer defers to release_sock. Before 5.15 the iterator takes no lock, so the agent does not
// run it there (system.go). What it cannot see: a connection that opened and closed
// between two reads, both unseen (its owner stays connecting: as a failed connect no program saw, it waits for its
// address to be reused); and a passive open needs nothing of it (accept_ret, in the accepting process, sees it).
SEC("iter/tcp")
int recount(struct bpf_iter__tcp *ctx) {
	struct sock_common *skc = ctx->sk_common;
	if (!skc || !open_state(skc->skc_state))
		return 0;
	__u64 key = (__u64)skc;
	struct owner *o = bpf_map_lookup_elem(&owners, &key);
	if (!o)
		return 0;
	const struct sock *sk = (const struct sock *)skc;
	if (!same_socket(o, sk))
		return 0;
	if (o->established == 0 || o->established == CONNECT_DROPPED)
		opened(o, sk);
	retransmitted(o, total_retrans(sk));
	return 0;
}

// A process's exit (its last thread's: group_dead). Its counters here go, so a process that gets the pid again
// starts from zero (the maps are keyed by pid; the agent's scan deletes only the entries of pids that no longer
// exist, and a pid taken again before it used to keep the old process's counts). For every process on the machine:
// a hash delete. A process of a probed executable is also reported to the agent (exits), whose maps are per
// executable. Where the tracepoint runs before the exiting task drops its mm (kernels whose record has group_dead),
// its executable can be read; on older kernels the counters still go, but no exit is reported (exit_group_dead).
SEC("tracepoint/sched/sched_process_exit")
int process_exit(struct trace_event_raw_sched_process_exit *ctx) {
	if (!exit_group_dead(ctx))
		return 0;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	bpf_map_delete_elem(&tcp, &tgid);
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 ino = BPF_CORE_READ(task, mm, exe_file, f_inode, i_ino);
	if (ino && bpf_map_lookup_elem(&probed_files, &ino))
		bpf_ringbuf_output(&exits, &tgid, sizeof(tgid), BPF_RB_NO_WAKEUP);
	return 0;
}
