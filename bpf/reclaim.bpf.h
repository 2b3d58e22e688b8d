/* Part of oomtrace.bpf.c (see there): direct and memcg reclaim stalls, summed per (cgroup,
 * kind) in the pressure map with the longest stall of the current epoch. No event is sent per
 * reclaim: user space reads the map every --pressure-interval and then bumps pressure_epoch
 * (tracer/events/pressure.py).
 */
#ifndef OOMTRACE_PROGRAM_TEXT
#error "reclaim.bpf.h is part of oomtrace.bpf.c: compile tracer.kernel.bpf_source.program_text()"
#endif

BPF_HASH(reclaim_start, __u32, __u64, 16384);                /* key: tid */
BPF_TABLE("lru_hash", struct pressure_key, struct pressure_value, pressure, 16384);
BPF_ARRAY(pressure_epoch, __u64, 1);

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
