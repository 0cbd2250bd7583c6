/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Everything that crosses the boundary between the BPF program and userspace:
 * ring-buffer records, the counter indices and the map value layouts that
 * userspace reads back. Compiled into the BPF object and into the CMemwarden
 * C target, so both sides agree on every offset.
 */
#ifndef MEMWARDEN_H
#define MEMWARDEN_H

#ifndef MW_BPF_SIDE
#include <linux/types.h>
#endif

/* The detectors' types: their state lives in the map values below, their
 * verdicts cross the ring buffer. */
#include "detectors.h"

#define MW_COMM_LEN 16

/* The kernel's rss_stat members (include/linux/mm_types_task.h), in its order. */
enum mw_member {
	MW_FILE = 0,
	MW_ANON = 1,
	MW_SWAP = 2,
	MW_SHMEM = 3,
	MW_NR_MEMBERS = 4,
};

/* First field of every ring-buffer record. */
enum mw_record_kind {
	MW_REC_PROC_SAMPLE = 1,   /* a process moved by a coalescing step, or its heartbeat */
	MW_REC_PROC_EXEC = 2,     /* exec: new program, baseline reset */
	MW_REC_PROC_EXIT = 3,     /* the whole thread group exited */
	MW_REC_CGROUP_SAMPLE = 4, /* a memory cgroup's aggregate moved, or its heartbeat */
	MW_REC_VERDICT = 5,       /* a process's or a cgroup's detector verdict changed */
};

enum mw_scope {
	MW_SCOPE_PROCESS = 0,
	MW_SCOPE_CGROUP = 1,
};

/* Indices into the per-CPU counter array; userspace sums them over CPUs. */
enum mw_counter {
	MW_CNT_EVENTS = 0,          /* rss_stat events seen */
	MW_CNT_COALESCED,           /* events absorbed without a sample */
	MW_CNT_PROC_SAMPLES,        /* process records written to the ring buffer */
	MW_CNT_CGROUP_SAMPLES,      /* cgroup records written to the ring buffer */
	MW_CNT_RINGBUF_DROPS,       /* records lost because the ring buffer was full */
	MW_CNT_UNATTRIBUTED,        /* curr=0 events whose mm has no known owner: dropped */
	MW_CNT_PROC_CREATED,        /* process states inserted */
	MW_CNT_PROC_DELETED,        /* process states removed on group exit */
	MW_CNT_CGROUP_CREATED,      /* cgroup states inserted */
	MW_CNT_CGROUP_DELETED,      /* cgroup states removed when their last process left */
	MW_CNT_EXECS,               /* exec records */
	MW_CNT_EXITS,               /* group exits of tracked processes */
	MW_CNT_MAP_FULL,            /* inserts that failed outright */
	MW_CNT_VERDICTS,            /* verdict records written */
	MW_CNT__MAX,
};

/* A process record: MW_REC_PROC_SAMPLE, MW_REC_PROC_EXEC or MW_REC_PROC_EXIT. */
struct mw_proc_record {
	__u32 kind;
	__u32 tgid;
	__u64 ts_ns;              /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u64 cgroup_id;          /* memory controller's cgroup id (kernfs id = inode) */
	__u64 bytes[MW_NR_MEMBERS];
	__u64 vsz;                /* total_vm in bytes, refreshed when the owner is current */
	__u64 limit;              /* memcg memory.max in bytes; 0 = unknown, ~0 = unlimited */
	char comm[MW_COMM_LEN];   /* the thread group leader's comm */
};

/* A memory cgroup's aggregate over the processes charged to it. */
struct mw_cgroup_record {
	__u32 kind;               /* MW_REC_CGROUP_SAMPLE */
	__u32 nr_procs;
	__u64 ts_ns;
	__u64 cgroup_id;
	__u64 bytes[MW_NR_MEMBERS]; /* sums of the members' last sampled counters */
	__u64 usage;              /* memcg page counter (memory.current) in bytes; 0 = not read */
	__u64 limit;              /* memcg memory.max in bytes; 0 = unknown, ~0 = unlimited */
};

/* A verdict change, written right after the sample that caused it (for a
 * process) or the cgroup record it was computed on (for a cgroup). */
struct mw_verdict_record {
	__u32 kind;               /* MW_REC_VERDICT */
	__u32 tgid;               /* 0 for a cgroup */
	__u64 ts_ns;              /* the sample's time: detectors saw ts_ns / 1e6 ms */
	__u64 cgroup_id;
	__u64 cgroup_rss;         /* the cgroup's aggregate RSS after the sample */
	__u64 limit;              /* memcg memory.max in bytes; 0 = unknown, ~0 = unlimited */
	__u32 scope;              /* enum mw_scope */
	__u32 pad;
	char comm[MW_COMM_LEN];
	struct mw_det_verdict verdict;
};

/* A slot of the `hot` array: the few fields the per-event path touches, for the
 * process whose tgid is cached there (slot = tgid & (slots - 1)). A write-back
 * cache in front of `procs`: bytes, last_rss and last_ts are newer here while
 * the process holds the slot. */
struct mw_hot {
	__u32 tgid;               /* 0 = free */
	__u32 mm_id;
	__s64 bytes[MW_NR_MEMBERS];
	__u64 last_rss;
	__u64 last_ts;
	__u32 events;             /* events since the last record, not yet counted */
	__u32 pad;
};

/* Value of the `procs` map (key: tgid). Userspace only reads it (tests, status). */
struct mw_proc_state {
	__s64 bytes[MW_NR_MEMBERS]; /* latest absolute counters */
	__u64 last_rss;           /* RSS at the last record */
	__u64 last_ts;            /* coarse clock at the last record */
	__u64 start_ts;           /* baseline: first sight or last exec */
	__u64 cgroup_id;          /* 0 until the first record joins it to its cgroup */
	__u64 vsz;
	__u64 limit;
	__u64 memcg;              /* the memcg (kernel address) cgroup_id and limit were read from */
	__u32 mm_id;              /* rss_stat's hash of the mm this state follows; 0 = not bound yet */
	__u32 joined;             /* 1 while counted in cgroup_id's aggregate */
	__u32 refreshes;          /* records since the last full refresh, mod 16 */
	__u32 pad;
	char comm[MW_COMM_LEN];
	struct mw_det_sample contrib; /* what this process has added to its cgroup's aggregate */
	struct mw_det_state det;
};

/* Value of the `cgroups` map (key: memory cgroup id). */
struct mw_cgroup_state {
	struct mw_agg agg;        /* sums of the members' last samples (detectors.h's rule) */
	__u64 usage;
	__u64 limit;
	struct mw_det_state det;
};

#endif /* MEMWARDEN_H */
