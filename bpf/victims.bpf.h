/* Part of oomtrace.bpf.c (see there): one oom_kill event per victim, from oom:mark_victim.
 *
 * With MARK_VICTIM_TASK_ARG a victim comes from two programs on the same tracepoint: the raw
 * one reads the task (tgid, comm, cgroups) and the classic one takes the figures the kernel
 * computed itself (rss, uid, oom_score_adj). Those are never read from struct mm_struct: a
 * kernel's BTF can disagree with its real layout (seen: total_vm 16 bytes off). Both halves
 * fill one entry keyed by the victim's tid; whichever runs second sends the event.
 */
#ifndef OOMTRACE_PROGRAM_TEXT
#error "victims.bpf.h is part of oomtrace.bpf.c: compile tracer.kernel.bpf_source.program_text()"
#endif

#define HALF_TASK 1
#define HALF_FIGURES 2

struct victim_partial {
	struct oom_kill_event e;
	__u32 halves;
};

BPF_HASH(victims, __u32, struct victim_partial, 256);        /* key: victim tid */
BPF_ARRAY(zero_victim, struct victim_partial, 1);             /* never written: all zeros */

static __always_inline __s32 css_hierarchy(struct cgroup_subsys_state *css)
{
	struct cgroup *cgrp = NULL;
	struct cgroup_root *root = NULL;
	int id = -1;

	if (!css)
		return -1;
	OT_READ(cgrp, css->cgroup);
	if (cgrp)
		OT_READ(root, cgrp->root);
	if (root)
		OT_READ(id, root->hierarchy_id);
	return id;
}

static __always_inline __u64 task_dfl_cgroup_id(struct task_struct *task)
{
	struct css_set *cset = NULL;
	struct cgroup *cgrp = NULL;

	OT_READ(cset, task->cgroups);
	if (cset)
		OT_READ(cgrp, cset->dfl_cgrp);
	return cgroup_id_of(cgrp);
}

static __always_inline void fill_victim(struct oom_kill_event *e, struct task_struct *task)
{
	struct cgroup_subsys_state *css = task_memory_css(task);

	OT_READ(e->pid, task->tgid);
	OT_READ(e->tid, task->pid);
	bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), task->comm);
	e->cgroup_id = css_cgroup_id(css);
	e->memory_hierarchy = css_hierarchy(css);
	e->dfl_cgroup_id = task_dfl_cgroup_id(task);
	e->victim_source = OT_VICTIM_TRACEPOINT;
}

static __always_inline void fill_trigger(struct oom_kill_event *e)
{
	struct task_struct *cur = (struct task_struct *)bpf_get_current_task();
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	e->trigger_pid = pid_tgid >> 32;
	e->trigger_tid = (__u32)pid_tgid;
	bpf_get_current_comm(e->trigger_comm, sizeof(e->trigger_comm));
	e->trigger_cgroup_id = css_cgroup_id(task_memory_css(cur));
}

static __always_inline void fill_common(struct oom_kill_event *e)
{
	__u64 key = bpf_get_current_pid_tgid();
	struct oom_context *c = oom_contexts.lookup(&key);

	e->type = OT_EVENT_OOM_KILL;
	e->ktime_ns = bpf_ktime_get_ns();
	fill_trigger(e);
	if (c)
		apply_context(e, c);
}

#ifdef MARK_VICTIM_TASK_ARG
static __always_inline struct victim_partial *victim_entry(__u32 tid)
{
	int zero = 0;
	struct victim_partial *init = zero_victim.lookup(&zero);

	if (!init)
		return NULL;
	victims.insert(&tid, init);
	return victims.lookup(&tid);
}

static __always_inline int complete_victim(void *ctx, __u32 tid, struct victim_partial *v, __u32 half)
{
	v->halves |= half;
	if (v->halves == (HALF_TASK | HALF_FIGURES)) {
		events.perf_submit(ctx, &v->e, sizeof(v->e));
		victims.delete(&tid);
	}
	return 0;
}

int on_mark_victim(struct bpf_raw_tracepoint_args *ctx)
{
	struct task_struct *victim = (struct task_struct *)ctx->args[0];
	struct victim_partial *v;
	__u32 tid = 0;

	OT_READ(tid, victim->pid);
	v = victim_entry(tid);
	if (!v)
		return 0;
	fill_common(&v->e);
	fill_victim(&v->e, victim);
	if (v->e.context != OT_CONTEXT_KPROBE)
		infer_context(&v->e, victim);
	return complete_victim(ctx, tid, v, HALF_TASK);
}

/* Attached by BCC itself when the program loads (its tracepoint__ naming). */
TRACEPOINT_PROBE(oom, mark_victim)
{
	__u32 tid = args->pid;
	struct victim_partial *v = victim_entry(tid);

	if (!v)
		return 0;
	v->e.total_vm_kb = args->total_vm;
	v->e.anon_rss_kb = args->anon_rss;
	v->e.file_rss_kb = args->file_rss;
	v->e.shmem_rss_kb = args->shmem_rss;
	v->e.pgtables_kb = args->pgtables;
	v->e.uid = args->uid;
	v->e.oom_score_adj = args->oom_score_adj;
	return complete_victim(args, tid, v, HALF_FIGURES);
}
#else
/* Old kernels pass only the victim's tid. The task is still found in the kernel, before the
 * victim can exit, while the kernel holds a reference to it: the memory.oom.group member being
 * killed, else the oom_control.chosen that the kprobe on oom_kill_process kept (this runs inside
 * that call), else the current task when the one that ran out of memory is marked itself. Only
 * a task whose tid is the tracepoint's counts. Otherwise user space reads /proc, if the victim
 * is still there. */
int on_mark_victim(struct bpf_raw_tracepoint_args *ctx)
{
	struct oom_kill_event e = {};
	__u64 key = bpf_get_current_pid_tgid();
	struct oom_context *c = oom_contexts.lookup(&key);
	__u64 *member = oom_members.lookup(&key);
	struct task_struct *task = NULL;
	__u32 tid = (__u32)ctx->args[0], task_tid = 0, source = 0;

	fill_common(&e);
	if (member && *member) {
		task = (struct task_struct *)*member;
		source = OT_VICTIM_OOM_GROUP;
	} else if (c && c->chosen) {
		task = (struct task_struct *)c->chosen;
		source = OT_VICTIM_OOM_CONTROL;
	} else if (tid == (__u32)key) {
		task = (struct task_struct *)bpf_get_current_task();
		source = OT_VICTIM_CURRENT;
	}
	if (task)
		OT_READ(task_tid, task->pid);
	if (task && task_tid == tid) {
		fill_victim(&e, task);
		e.victim_source = source;
	}
	e.tid = tid;
	if (!c && e.victim_source == OT_VICTIM_CURRENT)
		infer_context(&e, (struct task_struct *)bpf_get_current_task());
	events.perf_submit(ctx, &e, sizeof(e));
	return 0;
}
#endif
