from tracer.kernel import btf_trim

DUMP = """#ifndef __VMLINUX_H__
#define __VMLINUX_H__

typedef unsigned int __u32;

typedef __u32 u32;

typedef struct {
	int counter;
} atomic_t;

struct unused_big {
	char pad[4096];
};

struct inner {
	u32 a;
};

struct list {
	struct list *next;
};

typedef int (*cb_t)(struct unused_big *, atomic_t *);

struct root {
	struct inner in;
	struct unused_big *ptr;
	atomic_t refs;
	struct list head;
	cb_t cb;
	union {
		struct inner alt;
	};
};

enum colour {
	RED = 0,
};

#endif /* __VMLINUX_H__ */"""


def test_trim_keeps_the_by_value_closure_in_order():
    out = btf_trim.trim(DUMP, {"struct root"})
    assert "struct unused_big {" not in out and "struct unused_big;" in out  # pointer only: declared
    for kept in ("struct inner {", "struct list {", "} atomic_t;", "typedef int (*cb_t)", "struct root {",
                 "enum colour {", "typedef __u32 u32;", "typedef unsigned int __u32;", "#endif"):
        assert kept in out, kept
    assert out.index("struct inner {") < out.index("struct root {")
    assert out.index("} atomic_t;") < out.index("typedef int (*cb_t)") < out.index("struct root {")


def test_trim_without_roots_keeps_only_what_is_always_kept():
    out = btf_trim.trim(DUMP, set())
    assert "struct root {" not in out and "typedef unsigned int __u32;" in out and "enum colour" in out
    assert "typedef __u32 u32;" not in out  # not a builtin target: kept only when used


def test_roots_of_finds_tags_and_identifiers():
    roots = btf_trim.roots_of(["struct task_struct *t; u64 x = memory_cgrp_id;"])
    assert {"struct task_struct", "u64", "memory_cgrp_id"} <= roots
