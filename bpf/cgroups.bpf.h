/* Part of oomtrace.bpf.c (see there): a cgroup_event for every cgroup created or removed.
 * They keep user space's cgroup id -> path cache current (tracer/kernel/cgroupfs.py) and
 * become cgroup_create/cgroup_delete records.
 */
#ifndef OOMTRACE_PROGRAM_TEXT
#error "cgroups.bpf.h is part of oomtrace.bpf.c: compile tracer.kernel.bpf_source.program_text()"
#endif

BPF_PERCPU_ARRAY(cgroup_scratch, struct cgroup_event, 1);

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
