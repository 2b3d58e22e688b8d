/* Events oomtrace's BPF programs send to user space through the one perf buffer.
 *
 * This file is the only definition of the layout: tracer/bpf_source.py parses it into ctypes
 * structures, so keep to its grammar: #define NAME NUMBER, enum { NAME = NUMBER, ... }, and
 * structs of __u8/__u16/__u32/__u64/__s32/__s64 and char[N] members, each on its own line.
 * Every event starts with __u32 type, one of the OT_EVENT_ values below.
 */
#ifndef __OOMTRACE_H
#define __OOMTRACE_H

#define TASK_COMM_LEN 16
#define CGROUP_NAME_LEN 256      /* NAME_MAX + 1: a cgroup's own name is never cut */
#define CGROUP_PATH_LEN 1024     /* the kernel's own TRACE_CGROUP_PATH_LEN: it cuts longer paths */

enum event_type {
	OT_EVENT_OOM_KILL = 1,
	OT_EVENT_CGROUP_MKDIR = 2,
	OT_EVENT_CGROUP_RMDIR = 3,
};

/* Where an oom_kill event's context came from. */
enum context_source {
	OT_CONTEXT_KPROBE = 1,   /* struct oom_control, read at oom_kill_process */
	OT_CONTEXT_INFERRED = 2, /* tracepoint only: the victim's nearest memcg ancestor at its limit */
};

/* Where an oom_kill event's victim pid, comm and cgroups came from (0: only the tid, from
 * a pid-only mark_victim; user space then reads /proc if the victim is still there). */
enum victim_source {
	OT_VICTIM_TRACEPOINT = 1,  /* the task mark_victim passes (6.9+ form and backports) */
	OT_VICTIM_OOM_CONTROL = 2, /* oom_control.chosen, held by oom_kill_process while it kills */
	OT_VICTIM_CURRENT = 3,     /* the victim is the task whose allocation failed */
	OT_VICTIM_OOM_GROUP = 4,   /* the memory.oom.group member oom_kill_memcg_member is killing */
};

/* The kernel's enum oom_constraint, in its order (stable since 4.9). */
enum constraint {
	OT_CONSTRAINT_GLOBAL = 0,
	OT_CONSTRAINT_CPUSET = 1,
	OT_CONSTRAINT_MEMPOLICY = 2,
	OT_CONSTRAINT_MEMCG = 3,
};

/* Reclaim kinds the pressure map aggregates. */
enum reclaim_kind {
	OT_RECLAIM_DIRECT = 1,
	OT_RECLAIM_MEMCG = 2,
};

struct oom_kill_event {
	__u32 type;
	__u32 pid;                 /* victim thread group id */
	__u32 tid;                 /* victim thread */
	__u32 uid;
	__u64 ktime_ns;            /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u64 cgroup_id;           /* victim's cgroup in the memory controller's hierarchy */
	__u64 dfl_cgroup_id;       /* victim's cgroup in the v2 hierarchy */
	__s32 memory_hierarchy;    /* hierarchy id of cgroup_id; 0 is cgroup v2 */
	__s32 oom_score_adj;
	__u64 total_vm_kb;         /* this and the next four: the mark_victim tracepoint's own */
	__u64 anon_rss_kb;
	__u64 file_rss_kb;
	__u64 shmem_rss_kb;
	__u64 pgtables_kb;
	__u32 context;             /* enum context_source */
	__u32 constraint;          /* enum constraint */
	__u64 memcg_id;            /* the cgroup that hit its limit; 0 for none */
	__u64 memcg_usage_pages;
	__u64 memcg_limit_pages;
	__u64 oom_domain_pages;    /* oom_control.totalpages: the OOM domain's size, kprobe only */
	__s64 chosen_points;       /* kprobe only */
	__u32 trigger_pid;         /* the task whose allocation failed */
	__u32 trigger_tid;
	__u64 trigger_cgroup_id;   /* in the memory controller's hierarchy */
	__s32 order;               /* kprobe only; -1 is sysrq */
	__u32 gfp_mask;            /* kprobe only */
	__u32 victim_source;       /* enum victim_source: pid, comm, cgroup ids from the kernel */
	__u32 pad;
	char comm[TASK_COMM_LEN];
	char trigger_comm[TASK_COMM_LEN];
};

struct cgroup_event {
	__u32 type;
	__s32 hierarchy;           /* hierarchy id; 0 is cgroup v2 */
	__u64 ktime_ns;
	__u64 id;                  /* cgroup id: the directory's inode number */
	__u64 parent_id;           /* the parent cgroup's id (0: none) */
	__s32 level;
	__u32 path_len;            /* bytes of path read, without the NUL */
	__u32 name_len;            /* bytes of name read, without the NUL */
	__u32 pad;
	char name[CGROUP_NAME_LEN];  /* the cgroup's own name (kernfs), whole */
	char path[CGROUP_PATH_LEN];  /* the tracepoint's path, cut by the kernel past 1023 bytes; last
	                              * member: a sample carries only path_len + 1 bytes of it */
};

/* Per (cgroup, kind) reclaim totals, kept in the kernel and read periodically. */
struct pressure_key {
	__u64 cgroup_id;
	__u32 kind;                /* enum reclaim_kind */
	__u32 pad;
};

struct pressure_value {
	__u64 count;
	__u64 stall_ns;
	__u64 reclaimed_pages;
	__u64 max_stall_ns;        /* the longest stall of epoch */
	__u64 epoch;               /* user space bumps pressure_epoch each interval */
};

#endif /* __OOMTRACE_H */
