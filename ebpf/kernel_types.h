/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The few kernel types memwarden's BPF program touches, written by hand for
 * CO-RE. Every struct carries preserve_access_index, so libbpf relocates each
 * field access against the running kernel's BTF at load time: only the names
 * and types of the fields used must match, never their offsets or the rest
 * of the struct. This keeps the build independent of the build machine's
 * kernel (no 130k-line vmlinux.h, no /sys/kernel/btf needed to compile).
 */
#ifndef MEMWARDEN_KERNEL_TYPES_H
#define MEMWARDEN_KERNEL_TYPES_H

typedef unsigned char __u8;
typedef short unsigned int __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long int __s64;
typedef long long unsigned int __u64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
typedef int pid_t;
#define true 1
#define false 0
#define NULL ((void *)0)

/* uapi values used by bpf_helpers.h and the map definitions */
enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_RINGBUF = 27,
};
enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
};
enum {
	BPF_RB_NO_WAKEUP = 1,
	BPF_RB_FORCE_WAKEUP = 2,
};
enum {
	BPF_RB_AVAIL_DATA = 0,
	BPF_RB_RING_SIZE = 1,
};

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

typedef struct {
	int counter;
} atomic_t;

typedef struct {
	long counter;
} atomic_long_t;

/* since 6.2 each rss counter is a percpu_counter; `count` is the folded global part */
struct percpu_counter {
	__s64 count;
};

/* before 6.2 */
struct mm_rss_stat {
	atomic_long_t count[4];
};

struct mm_struct {
	unsigned long total_vm;
	struct percpu_counter rss_stat[4];
};

struct mm_struct___pre62 {
	struct mm_rss_stat rss_stat;
};

struct signal_struct {
	atomic_t live;
};

struct kernfs_node {
	__u64 id;
};

struct cgroup {
	struct kernfs_node *kn;
};

struct cgroup_subsys_state {
	struct cgroup *cgroup;
};

struct css_set {
	struct cgroup_subsys_state *subsys[16];
};

struct page_counter {
	atomic_long_t usage;
	unsigned long max;
};

struct mem_cgroup {
	struct cgroup_subsys_state css;
	struct page_counter memory;
};

struct completion;

struct task_struct {
	unsigned int flags;
	pid_t pid;
	pid_t tgid;
	struct mm_struct *mm;
	struct task_struct *group_leader;
	struct signal_struct *signal;
	struct css_set *cgroups;
	struct completion *vfork_done;
	char comm[16];
};

struct trace_entry {
	short unsigned int type;
	unsigned char flags;
	unsigned char preempt_count;
	int pid;
};

/* the classic tracepoint record of kmem:rss_stat (stable layout since 5.5) */
struct trace_event_raw_rss_stat {
	struct trace_entry ent;
	unsigned int mm_id;
	unsigned int curr;
	int member;
	long size;
};

#pragma clang attribute pop

/* cgroup subsystem ids are generated from the kernel's config: read the value through CO-RE */
enum cgroup_subsys_id {
	memory_cgrp_id = 4,
};

#define PF_KTHREAD 0x00200000

#endif /* MEMWARDEN_KERNEL_TYPES_H */
