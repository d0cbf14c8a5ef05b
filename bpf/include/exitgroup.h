// exitgroup.h: whether a sched_process_exit is its process's end, on every kernel the probes load on.
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

// exit_group_dead says whether the exiting thread is its process's last. The tracepoint's record carries that
// (group_dead) only on recent kernels, those where it also runs before exit_mm; older ones (Debian 12's 6.1, Ubuntu
// 24.04's 6.8) lack the field, and an unguarded read of it is a CO-RE relocation that cannot be resolved: the whole
// object would fail to load (TestProbesLoadWithoutGroupDead). There the process's live-thread count, decremented
// before the tracepoint by every version, says the same.
static __always_inline bool exit_group_dead(struct trace_event_raw_sched_process_exit *ctx) {
	if (bpf_core_field_exists(ctx->group_dead))
		return BPF_CORE_READ(ctx, group_dead);
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	return BPF_CORE_READ(task, signal, live.counter) == 0;
}
