/* Part of oomtrace.bpf.c (see there): a cgroup_event for every cgroup created or removed.
 * They keep user space's cgroup id -> path cache current (tracer/kernel/cgroupfs.py) and
 * become cgroup_create/cgroup_delete records.
 */
#ifndef OOMTRACE_PROGRAM_TEXT
#error "cgroups.bpf.h is part of oomtrace.bpf.c: compile tracer.kernel.bpf_source.program_text()"
#endif

BPF_PERCPU_ARRAY(cgroup_scratch, struct cgroup_event, 1);

/* The path the tracepoint gives is cut by the kernel past 1023 bytes (and can name several
 * cgroups then), so each event also carries what rebuilds any path without a limit: the
 * cgroup's own name, whole, and its parent's id. User space checks the path against the two. */
static __always_inline int submit_cgroup(struct bpf_raw_tracepoint_args *ctx, __u32 type)
{
	int zero = 0;
	struct cgroup_event *e = cgroup_scratch.lookup(&zero);
	struct cgroup *cgrp = (struct cgroup *)ctx->args[0];
	struct cgroup_root *root = NULL;
	struct cgroup_subsys_state *parent = NULL;
	struct kernfs_node *kn = NULL;
	const char *name = NULL;
	long len;
	__u32 size;

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
	OT_READ(parent, cgrp->self.parent);
	e->parent_id = css_cgroup_id(parent);
	OT_READ(kn, cgrp->kn);
	if (kn)
		OT_READ(name, kn->name);
	len = name ? bpf_probe_read_kernel_str(e->name, sizeof(e->name), name) : 0;
	e->name_len = len > 0 ? len - 1 : 0;
	len = bpf_probe_read_kernel_str(e->path, sizeof(e->path), (const char *)ctx->args[1]);
	size = len > 0 ? (__u32)len : 1;         /* bytes read with the NUL; 1 (an empty path) on error */
	size &= 2 * CGROUP_PATH_LEN - 1;          /* a bound the verifier keeps through what follows */
	if (size > CGROUP_PATH_LEN)
		size = CGROUP_PATH_LEN;
	if (size < 1)
		size = 1;
	e->path_len = size - 1;
	/* Only the bytes read: most paths are short, and the perf buffer holds more events. */
	size += __builtin_offsetof(struct cgroup_event, path);
	events.perf_submit(ctx, e, size);
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
