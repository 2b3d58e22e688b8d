/* oomtrace's kernel side: OOM victims, cgroup creation/deletion and reclaim stalls.
 *
 * Compiled by BCC. Pointer chains are read one step at a time with bpf_probe_read_kernel:
 * BCC's automatic rewriting of long member chains silently yields 0 on some kernels.
 * Kernel-ABI switches come in as -D flags from tracer/probes.py, never as text edits:
 *   MARK_VICTIM_TASK_ARG  mark_victim's raw arguments are (task, uid) and its tracepoint
 *                         carries rss figures (6.9+ and backports); otherwise only a pid.
 *
 * With MARK_VICTIM_TASK_ARG a victim comes from two programs on the same tracepoint: the raw
 * one reads the task (tgid, comm, cgroups) and the classic one takes the figures the kernel
 * computed itself (rss, uid, oom_score_adj). Those are never read from struct mm_struct: a
 * kernel's BTF can disagree with its real layout (seen: total_vm 16 bytes off). Both halves
 * fill one entry keyed by the victim's tid; whichever runs second sends the event.
 */
#include <uapi/linux/ptrace.h>
#include <linux/sched.h>
#include <linux/mm_types.h>
#include <linux/oom.h>
#include <linux/memcontrol.h>
#include <linux/cgroup-defs.h>
#include "oomtrace.h"

#define OT_READ(dst, src) bpf_probe_read_kernel(&(dst), sizeof(dst), &(src))
#define MEMCG_DEPTH 8
/* A memcg OOM happens when usage + the charge exceeds the limit; a charge is at most a THP. */
#define LIMIT_MARGIN_PAGES 1024
#define PAGE_COUNTER_UNLIMITED (((__u64)-1) >> 13)

/* struct oom_control, as read at oom_kill_process, kept until mark_victim needs it. */
struct oom_context {
	__u64 memcg_id;
	__u64 memcg_usage_pages;
	__u64 memcg_limit_pages;
	__u64 oom_domain_pages;
	__s64 chosen_points;
	__u32 constraint;
	__s32 order;
	__u32 gfp_mask;
	__u32 chosen_tid;
};

#define HALF_TASK 1
#define HALF_FIGURES 2

struct victim_partial {
	struct oom_kill_event e;
	__u32 halves;
};

BPF_PERF_OUTPUT(events);
BPF_HASH(victims, __u32, struct victim_partial, 256);        /* key: victim tid */
BPF_ARRAY(zero_victim, struct victim_partial, 1);             /* never written: all zeros */
BPF_HASH(oom_contexts, __u64, struct oom_context, 1024);     /* key: trigger pid_tgid */
BPF_PERCPU_ARRAY(cgroup_scratch, struct cgroup_event, 1);
BPF_HASH(reclaim_start, __u32, __u64, 16384);                /* key: tid */
BPF_TABLE("lru_hash", struct pressure_key, struct pressure_value, pressure, 16384);
BPF_ARRAY(pressure_epoch, __u64, 1);

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

/* The memory css is the first member of struct mem_cgroup. */
static __always_inline void memcg_counter(struct cgroup_subsys_state *css, __u64 *usage, __u64 *limit)
{
	struct mem_cgroup *memcg = (struct mem_cgroup *)css;
	long u = 0;
	unsigned long max = 0;

	OT_READ(u, memcg->memory.usage.counter);
	OT_READ(max, memcg->memory.max);
	*usage = u < 0 ? 0 : u;
	*limit = max;
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

static __always_inline int css_is_ancestor(struct cgroup_subsys_state *ancestor,
					   struct cgroup_subsys_state *css)
{
	for (int i = 0; i < MEMCG_DEPTH && css; i++) {
		if (css == ancestor)
			return 1;
		OT_READ(css, css->parent);
	}
	return 0;
}

/* Without the kprobe: a memcg OOM leaves the OOMing memcg at its limit, and it holds both the
 * victim and the task whose charge failed. The nearest such ancestor of the victim is taken. */
static __always_inline void infer_context(struct oom_kill_event *e, struct task_struct *victim)
{
	struct task_struct *cur = (struct task_struct *)bpf_get_current_task();
	struct cgroup_subsys_state *trigger_css = task_memory_css(cur);
	struct cgroup_subsys_state *css = task_memory_css(victim);
	__u64 usage = 0, limit = 0;

	e->context = OT_CONTEXT_INFERRED;
	e->constraint = OT_CONSTRAINT_GLOBAL;
	for (int i = 0; i < MEMCG_DEPTH && css; i++) {
		memcg_counter(css, &usage, &limit);
		if (limit < PAGE_COUNTER_UNLIMITED && usage + LIMIT_MARGIN_PAGES >= limit &&
		    css_is_ancestor(css, trigger_css)) {
			e->constraint = OT_CONSTRAINT_MEMCG;
			e->memcg_id = css_cgroup_id(css);
			e->memcg_usage_pages = usage;
			e->memcg_limit_pages = limit;
			return;
		}
		OT_READ(css, css->parent);
	}
}

static __always_inline void apply_context(struct oom_kill_event *e, struct oom_context *c)
{
	e->context = OT_CONTEXT_KPROBE;
	e->constraint = c->constraint;
	e->memcg_id = c->memcg_id;
	e->memcg_usage_pages = c->memcg_usage_pages;
	e->memcg_limit_pages = c->memcg_limit_pages;
	e->oom_domain_pages = c->oom_domain_pages;
	e->chosen_points = c->chosen_points;
	e->order = c->order;
	e->gfp_mask = c->gfp_mask;
}

int on_oom_kill_process(struct pt_regs *ctx)
{
	struct oom_control *oc = (struct oom_control *)PT_REGS_PARM1(ctx);
	struct oom_context c = {};
	struct mem_cgroup *memcg = NULL;
	struct task_struct *chosen = NULL;
	__u64 key = bpf_get_current_pid_tgid();
	int constraint = 0;
	unsigned long totalpages = 0;

	OT_READ(totalpages, oc->totalpages);
	c.oom_domain_pages = totalpages;
	OT_READ(c.chosen_points, oc->chosen_points);
	OT_READ(constraint, oc->constraint);
	c.constraint = constraint;
	OT_READ(c.order, oc->order);
	OT_READ(c.gfp_mask, oc->gfp_mask);
	OT_READ(chosen, oc->chosen);
	if (chosen)
		OT_READ(c.chosen_tid, chosen->pid);
	OT_READ(memcg, oc->memcg);
	if (memcg) {
		struct cgroup_subsys_state *css = (struct cgroup_subsys_state *)memcg;

		c.memcg_id = css_cgroup_id(css);
		memcg_counter(css, &c.memcg_usage_pages, &c.memcg_limit_pages);
	}
	oom_contexts.update(&key, &c);
	return 0;
}

int on_oom_kill_process_return(struct pt_regs *ctx)
{
	__u64 key = bpf_get_current_pid_tgid();

	oom_contexts.delete(&key);
	return 0;
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
/* Old kernels pass only the victim's tid; user space resolves the rest from /proc. */
int on_mark_victim(struct bpf_raw_tracepoint_args *ctx)
{
	struct oom_kill_event e = {};

	fill_common(&e);
	e.tid = (__u32)ctx->args[0];
	events.perf_submit(ctx, &e, sizeof(e));
	return 0;
}
#endif

static __always_inline int submit_cgroup(struct bpf_raw_tracepoint_args *ctx, __u32 type)
{
	int zero = 0;
	struct cgroup_event *e = cgroup_scratch.lookup(&zero);
	struct cgroup *cgrp = (struct cgroup *)ctx->args[0];
	struct cgroup_root *root = NULL;
	int len;

	if (!e)
		return 0;
	e->type = type;
	e->ktime_ns = bpf_ktime_get_ns();
	e->id = cgroup_id_of(cgrp);
	e->hierarchy = -1;
	OT_READ(e->level, cgrp->level);
	OT_READ(root, cgrp->root);
	if (root)
		OT_READ(e->hierarchy, root->hierarchy_id);
	len = bpf_probe_read_kernel_str(e->path, sizeof(e->path), (const char *)ctx->args[1]);
	e->path_len = len > 0 ? len - 1 : 0;
	events.perf_submit(ctx, e, sizeof(*e));
	return 0;
}

int on_cgroup_mkdir(struct bpf_raw_tracepoint_args *ctx)
{
	return submit_cgroup(ctx, OT_EVENT_CGROUP_MKDIR);
}

int on_cgroup_rmdir(struct bpf_raw_tracepoint_args *ctx)
{
	return submit_cgroup(ctx, OT_EVENT_CGROUP_RMDIR);
}

int on_reclaim_begin(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 now = bpf_ktime_get_ns();

	reclaim_start.update(&tid, &now);
	return 0;
}

static __always_inline int reclaim_end(struct bpf_raw_tracepoint_args *ctx, __u32 kind)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 *start = reclaim_start.lookup(&tid);
	struct task_struct *cur = (struct task_struct *)bpf_get_current_task();
	struct pressure_key key = {.kind = kind};
	struct pressure_value zero = {}, *v;
	int first = 0;
	__u64 *epoch = pressure_epoch.lookup(&first);
	__u64 now_epoch = epoch ? *epoch : 0;
	__u64 stall;

	if (!start)
		return 0;
	stall = bpf_ktime_get_ns() - *start;
	reclaim_start.delete(&tid);
	key.cgroup_id = css_cgroup_id(task_memory_css(cur));
	v = pressure.lookup_or_try_init(&key, &zero);
	if (!v)
		return 0;
	__sync_fetch_and_add(&v->count, 1);
	__sync_fetch_and_add(&v->stall_ns, stall);
	__sync_fetch_and_add(&v->reclaimed_pages, (__u64)ctx->args[0]);
	if (v->epoch != now_epoch) {
		v->epoch = now_epoch;
		v->max_stall_ns = stall;
	} else if (stall > v->max_stall_ns) {
		v->max_stall_ns = stall;
	}
	return 0;
}

int on_direct_reclaim_end(struct bpf_raw_tracepoint_args *ctx)
{
	return reclaim_end(ctx, OT_RECLAIM_DIRECT);
}

int on_memcg_reclaim_end(struct bpf_raw_tracepoint_args *ctx)
{
	return reclaim_end(ctx, OT_RECLAIM_MEMCG);
}
