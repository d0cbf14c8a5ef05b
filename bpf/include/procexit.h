// procexit.h: freeing a process's per-CPU slot copies when it exits, in the kernel, for the probes whose maps are
// per executable. The series slots are per-CPU arrays whose copies each name their owner's pid, claimed on their CPU
// by writing it; the agent can write such a value only whole (every CPU's copy at once), so it frees a slot only when
// every copy is a dead process's, and a pid taken again by a new process found the old one's copies still naming it
// and counted on into them. The exiting process's copies are freed here instead, each on its own: no thread of it is
// left to write them, and nobody else writes a copy that names another pid, so no count is lost.
#pragma once

#include "goabi.h"
#include "exitgroup.h"

// Set by the agent when it loads the probe: the probed executable's inode and the possible CPUs (copies per slot).
// Left 0, as the probe tests that load the programs alone leave them, process_exit does nothing.
volatile const __u64 exit_ino = 0;
volatile const __u32 exit_ncpu = 0;

// exiting_target returns the pid of the process whose last thread is exiting when it runs the probed executable,
// else 0. On kernels whose tracepoint runs before the task drops its mm (those with group_dead), its executable can be
// read; on older ones mm is gone by then, so nothing matches, nothing is freed here, and a pid taken again keeps the
// old process's counts until the agent's next scan, as before this probe handled exits.
static __always_inline __u32 exiting_target(struct trace_event_raw_sched_process_exit *ctx) {
	if (!exit_ino || !exit_ncpu || !exit_group_dead(ctx))
		return 0;
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	if (BPF_CORE_READ(task, mm, exe_file, f_inode, i_ino) != exit_ino)
		return 0;
	return bpf_get_current_pid_tgid() >> 32;
}

// lat_hist_clear empties a histogram in place. BPF has no memset for its 1,688 B, and clang turns a plain loop of
// stores into one: the volatile stores keep the loop.
static __always_inline void lat_hist_clear(struct lat_hist *h) {
	volatile __u64 *w = (volatile __u64 *)h;
	for (int k = 0; k < (int)(sizeof(*h) / sizeof(__u64)); k++)
		w[k] = 0;
}

struct exit_sweep {
	__u32 tgid;
	__u32 ncpu;
};

// DEFINE_EXIT_SWEEP(name, map, type, owner, clear) defines name(tgid), which frees every copy of every slot of the
// per-CPU array map (values of type; owner is the field naming the pid) that tgid owns: clear(v) empties the rest of
// the value first, then the owner goes, so whoever claims the copy next finds it empty (x86 keeps stores in order;
// the barrier keeps clang's). One pass over slots x possible CPUs (bpf_loop), once per exiting process of the probed
// executable.
#define DEFINE_EXIT_SWEEP(name, map, type, owner, clear)                                                               \
	static long name##_copy(__u32 n, void *arg) {                                                                  \
		struct exit_sweep *x = arg;                                                                            \
		__u32 i = n / x->ncpu, cpu = n % x->ncpu;                                                              \
		type *v = bpf_map_lookup_percpu_elem(&map, &i, cpu);                                                   \
		if (!v || v->owner != x->tgid)                                                                         \
			return 0;                                                                                      \
		clear(v);                                                                                              \
		asm volatile("" ::: "memory");                                                                         \
		*(volatile __u32 *)&v->owner = 0;                                                                      \
		return 0;                                                                                              \
	}                                                                                                              \
	static __always_inline void name(__u32 tgid, __u32 slots) {                                                    \
		struct exit_sweep x = {.tgid = tgid, .ncpu = exit_ncpu};                                               \
		bpf_loop(slots * x.ncpu, name##_copy, &x, 0);                                                          \
	}
