/* Part of oomtrace.bpf.c (see there): the context of an OOM kill -- which memcg (if any) ran out
 * and why. The oom_kill_process kprobe reads struct oom_control and keeps it, keyed by the
 * triggering task, until mark_victim fires inside that call; without kprobes the context is
 * inferred from the victim's memcg ancestry. victims.bpf.h puts it into the event.
 */
#ifndef OOMTRACE_PROGRAM_TEXT
#error "oom_context.bpf.h is part of oomtrace.bpf.c: compile tracer.kernel.bpf_source.program_text()"
#endif

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
	__u32 pad;
	__u64 chosen;              /* struct task_struct *: oom_kill_process holds a reference to it
	                            * until it returns, so mark_victim inside the call may read it */
};

BPF_HASH(oom_contexts, __u64, struct oom_context, 1024);     /* key: trigger pid_tgid */

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
	c.chosen = (__u64)chosen;
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

/* Before 6.9 mark_victim gives only a tid. The other members of a memory.oom.group kill die
 * through oom_kill_memcg_member(task, message), a callback (so never inlined) that holds a
 * reference to the task while it kills it; victims.bpf.h reads that task. Attached only where
 * mark_victim has the pid-only form. */
BPF_HASH(oom_members, __u64, __u64, 1024);   /* key: trigger pid_tgid; value: struct task_struct * */

int on_oom_kill_memcg_member(struct pt_regs *ctx)
{
	__u64 key = bpf_get_current_pid_tgid();
	__u64 task = (__u64)PT_REGS_PARM1(ctx);

	oom_members.update(&key, &task);
	return 0;
}

int on_oom_kill_memcg_member_return(struct pt_regs *ctx)
{
	__u64 key = bpf_get_current_pid_tgid();

	oom_members.delete(&key);
	return 0;
}
