/* oomtrace's kernel side: OOM victims, cgroup creation/deletion and reclaim stalls.
 *
 * Compiled by BCC. Pointer chains are read one step at a time with bpf_probe_read_kernel:
 * BCC's automatic rewriting of long member chains silently yields 0 on some kernels.
 * Kernel-ABI switches come in as -D flags from tracer/probes.py, never as text edits:
 *   MARK_VICTIM_TASK_ARG  mark_victim's raw arguments are (task, uid) and its tracepoint
 *                         carries rss figures (6.9+ and backports); otherwise only a pid.
 *
 * This file holds what the features share; each feature is a part, one #include below.
 * BCC finds programs, rewrites map calls (map.lookup(), events.perf_submit()) and writes
 * TRACEPOINT_PROBE's argument struct only in the text it compiles, never in an #include'd
 * file, so the parts are not really included: tracer/kernel/bpf_source.py program_text()
 * pastes each one in place of its #include line (with #line markers, so compiler messages
 * name the part) and BCC compiles that one text.
 */
#include <uapi/linux/ptrace.h>
#include <linux/sched.h>
#include <linux/mm_types.h>
#include <linux/oom.h>
#include <linux/memcontrol.h>
#include <linux/cgroup-defs.h>
#include "oomtrace.h"

#define OT_READ(dst, src) bpf_probe_read_kernel(&(dst), sizeof(dst), &(src))

BPF_PERF_OUTPUT(events);                                      /* oom_kill and cgroup events */

static __always_inline struct cgroup_subsys_state *task_memory_css(struct task_struct *task)
{
	struct css_set *cset = NULL;
	struct cgroup_subsys_state *css = NULL;

	OT_READ(cset, task->cgroups);
	if (cset)
		OT_READ(css, cset->subsys[memory_cgrp_id]);
	return css;
}

static __always_inline __u64 cgroup_id_of(struct cgroup *cgrp)
{
	struct kernfs_node *kn = NULL;
	__u64 id = 0;

	if (!cgrp)
		return 0;
	OT_READ(kn, cgrp->kn);
	if (kn)
		OT_READ(id, kn->id);
	return id;
}

static __always_inline __u64 css_cgroup_id(struct cgroup_subsys_state *css)
{
	struct cgroup *cgrp = NULL;

	if (!css)
		return 0;
	OT_READ(cgrp, css->cgroup);
	return cgroup_id_of(cgrp);
}

/* In this order: a part uses only what this file and the parts before it define. */
#include "oom_context.bpf.h"   /* oom_kill_process kprobe/kretprobe, or the context inferred */
#include "victims.bpf.h"       /* oom:mark_victim: raw and classic tracepoint halves */
#include "cgroups.bpf.h"       /* cgroup:cgroup_mkdir/rmdir */
#include "reclaim.bpf.h"       /* vmscan reclaim begin/end totals, in the pressure map */
