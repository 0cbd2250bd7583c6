// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * memwarden's kernel side: per-process and per-memory-cgroup RSS state, fed by
 * kmem:rss_stat, coalesced so that userspace only hears when something moved.
 *
 * Facts this file depends on (checked on 6.18; see DESIGN.md):
 *  - rss_stat's `size` is the counter's absolute value in BYTES (count << PAGE_SHIFT),
 *    not a delta: an event we cannot attribute is safe to drop, the owner's next
 *    event carries the full value again.
 *  - `mm_id` is a keyed hash of the mm pointer (ptr_to_hashval), not computable
 *    here; we learn mm_id -> owner when the owner itself faults (curr=1).
 *  - curr=0 means the mm is NOT current's (reclaim, OOM reaper, exit teardown,
 *    fork copy, remote GUP): such events go to the mm's known owner or nowhere.
 *  - Since 6.2 the event fires on every counter change (~1 per page fault), so the
 *    hot path must stay a lookup, a store and a compare. Measured on this project's
 *    6.18 VM: a hash-map lookup costs ~40 ns and bpf_ktime_get_ns() ~95 ns, against
 *    ~55 ns for an empty program, bpf_get_current_pid_tgid() ~10 ns. Hence a
 *    direct-mapped array indexed by the event's own mm_id (an inlined lookup, no
 *    helper, and curr=0 events need no owner lookup) in front of the LRU state,
 *    the clock read once per 64 events, and counters batched into each record.
 *  - Threads exit one by one; only the one that drops signal->live to 0 ends the
 *    process. exec installs a new mm in the same process.
 */
#define MW_BPF_SIDE
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "memwarden.h"
#include "detectors_impl.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Load-time settings, written by userspace before load (rodata is frozen after). */
const volatile __u64 cfg_step_bytes = 1 << 20;
const volatile __u64 cfg_heartbeat_ns = 10ULL * 1000 * 1000 * 1000;
/* The page size is the running kernel's, passed in by userspace: never assume 4 KiB. */
const volatile __u32 cfg_page_shift = 12;
/* slots of `hot` - 1 (a power of two minus one) */
const volatile __u32 cfg_hot_mask = 65535;

/* The detectors' thresholds; userspace may replace them before load. Their
 * step and heartbeat are the cgroup aggregates' coalescing rule. */
const volatile struct mw_det_config cfg_det = MW_DET_CONFIG_DEFAULT;

/* The detectors take a plain const pointer. Casting volatile away would let
 * clang read the initializer at compile time instead of what userspace wrote
 * before load; an empty asm hides where the pointer comes from. */
static __always_inline const struct mw_det_config *det_cfg(void)
{
	const struct mw_det_config *cfg = (const struct mw_det_config *)&cfg_det;

	asm volatile("" : "+r"(cfg));
	return cfg;
}
#define DET_CFG det_cfg()

/* Heartbeats are checked at every 64th event of a process: the clock is the
 * costliest thing the hot path could do. */
#define MW_HEARTBEAT_EVERY 64

/* Sizes here are defaults: userspace sets max_entries before load. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct mw_proc_state);
} procs SEC(".maps");

/* Direct-mapped by mm_id: an array lookup is inlined by the verifier, a hash
 * lookup is not. A slot held by another mm is written back and taken over. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct mw_hot);
} hot SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u32);
} mm_owner SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct mw_cgroup_state);
} cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} events SEC(".maps");

/* Waking the consumer costs an irq_work and a context switch per record:
 * userspace polls on a short timeout instead, and is woken only when the
 * ring is half full. */
static __always_inline __u64 wakeup_flags(void)
{
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) > bpf_ringbuf_query(&events, BPF_RB_RING_SIZE) / 2
		       ? BPF_RB_FORCE_WAKEUP
		       : BPF_RB_NO_WAKEUP;
}

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MW_CNT__MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* Detector inputs and outputs: too big for the 512-byte stack next to the
 * detectors' own frames. Programs do not nest on a CPU, so one per CPU serves. */
struct mw_scratch {
	struct mw_det_sample sample;
	struct mw_det_sample cgroup_sample;
	struct mw_det_verdict verdict;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mw_scratch);
} scratch SEC(".maps");

/* New map entries start as a copy of these (the states are ~1.5 KiB: no room on the stack). */
static const struct mw_proc_state zero_proc;
static const struct mw_cgroup_state zero_cgroup;

static __always_inline struct mw_scratch *get_scratch(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&scratch, &zero);
}

static __always_inline void count_n(__u32 idx, __u64 n)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &idx);

	if (c)
		*c += n;
}

static __always_inline void count(__u32 idx)
{
	count_n(idx, 1);
}

/* Events are counted when a slot's batch is settled, not one by one. The one
 * that produced a record (if any) is not coalesced. */
static __always_inline void settle_events(struct mw_hot *h, bool produced_record)
{
	__u32 n = h->events;

	h->events = 0;
	if (!n)
		return;
	count_n(MW_CNT_EVENTS, n);
	count_n(MW_CNT_COALESCED, produced_record ? n - 1 : n);
}

static __always_inline __u64 rss_of(const __s64 bytes[MW_NR_MEMBERS])
{
	/* RSS is file + anon + shmem; swap entries are not resident */
	return (__u64)(bytes[MW_FILE] + bytes[MW_ANON] + bytes[MW_SHMEM]);
}

static __always_inline __u64 distance(__u64 a, __u64 b)
{
	return a > b ? a - b : b - a;
}

/* Reads an mm's four counters directly: used when we start following an mm
 * (first sight, fork, exec), so no member keeps a value from another mm. */
static __always_inline void read_mm_counters(struct mm_struct *mm, __s64 out[MW_NR_MEMBERS])
{
	__u32 shift = cfg_page_shift;

	/* Literal indices: CO-RE relocates `rss_stat[N]` with the kernel's element
	 * size only when N is a constant in the access string. */
	if (bpf_core_type_exists(struct mm_rss_stat)) {
		/* before 6.2: atomic_long_t count[4] in struct mm_rss_stat */
		struct mm_struct___pre62 *old = (void *)mm;

		out[0] = BPF_CORE_READ(old, rss_stat.count[0].counter);
		out[1] = BPF_CORE_READ(old, rss_stat.count[1].counter);
		out[2] = BPF_CORE_READ(old, rss_stat.count[2].counter);
		out[3] = BPF_CORE_READ(old, rss_stat.count[3].counter);
	} else {
		/* 6.2+: percpu_counter; `count` lacks the per-CPU deltas not yet folded
		 * in (at most batch x CPUs pages), and the next event brings the exact sum */
		out[0] = BPF_CORE_READ(mm, rss_stat[0].count);
		out[1] = BPF_CORE_READ(mm, rss_stat[1].count);
		out[2] = BPF_CORE_READ(mm, rss_stat[2].count);
		out[3] = BPF_CORE_READ(mm, rss_stat[3].count);
	}
#pragma unroll
	for (int i = 0; i < MW_NR_MEMBERS; i++)
		out[i] = out[i] < 0 ? 0 : out[i] << shift;
}

/* The memory controller's cgroup of a task: on v2 the unified cgroup, on v1
 * and hybrid nodes the memory hierarchy's. The subsystem id depends on the
 * kernel config, so it comes from BTF. */
static __always_inline struct mem_cgroup *task_memcg(struct task_struct *task)
{
	struct cgroup_subsys_state *css;

	if (!bpf_core_enum_value_exists(enum cgroup_subsys_id, memory_cgrp_id))
		return NULL;
	css = BPF_CORE_READ(task, cgroups, subsys[bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id)]);
	if (!css)
		return NULL;
	return (void *)css - bpf_core_field_offset(struct mem_cgroup, css);
}

static __always_inline __u64 memcg_id(struct mem_cgroup *memcg)
{
	return memcg ? BPF_CORE_READ(memcg, css.cgroup, kn, id) : 0;
}

static __always_inline __u64 memcg_limit(struct mem_cgroup *memcg)
{
	__u32 shift = cfg_page_shift;
	__u64 max;

	if (!memcg)
		return 0;
	max = BPF_CORE_READ(memcg, memory.max);
	/* PAGE_COUNTER_MAX (LONG_MAX / PAGE_SIZE) means "max": no limit */
	if (max >= (0x7fffffffffffffffULL >> shift))
		return ~0ULL;
	return max << shift;
}

static __always_inline __u64 memcg_usage(struct mem_cgroup *memcg)
{
	long pages = memcg ? BPF_CORE_READ(memcg, memory.usage.counter) : 0;

	return pages < 0 ? 0 : (__u64)pages << cfg_page_shift;
}

/* comm, VSZ, cgroup and limit from a task whose mm is the process's own. */
/* VSZ, and the memory cgroup (id and limit) and comm, from a task whose mm
 * is the process's own. Every read is a probe_read: the cgroup, its limit and
 * the comm are re-read only when the task's memory css moved, on every 16th
 * record, or when `full` (first record, exec). Returns the task's memcg, and
 * its id in *cgid. */
static __always_inline struct mem_cgroup *refresh_from_task(struct mw_proc_state *p, struct task_struct *task,
							    bool full, __u64 *cgid)
{
	struct mem_cgroup *memcg = task_memcg(task);
	struct task_struct *leader;

	p->vsz = BPF_CORE_READ(task, mm, total_vm) << cfg_page_shift;
	if (!full && (__u64)memcg == p->memcg && p->cgroup_id && (++p->refreshes % 16) != 0) {
		*cgid = p->cgroup_id;
		return memcg;
	}
	p->memcg = (__u64)memcg;
	leader = BPF_CORE_READ(task, group_leader);
	BPF_CORE_READ_STR_INTO(&p->comm, leader, comm);
	p->limit = memcg_limit(memcg);
	*cgid = memcg_id(memcg);
	return memcg;
}

static __always_inline __u64 pos(__s64 v)
{
	return v < 0 ? 0 : (__u64)v;
}

static __always_inline __u64 agg_rss(const struct mw_agg *agg)
{
	return pos(agg->anon) + pos(agg->file) + pos(agg->shmem);
}

static __always_inline void emit_cgroup(__u64 cgid, struct mw_cgroup_state *cg, __u64 now)
{
	struct mw_cgroup_record *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);

	if (!r) {
		count(MW_CNT_RINGBUF_DROPS);
		return;
	}
	r->kind = MW_REC_CGROUP_SAMPLE;
	r->nr_procs = cg->agg.members;
	r->ts_ns = now;
	r->cgroup_id = cgid;
	r->bytes[MW_FILE] = pos(cg->agg.file);
	r->bytes[MW_ANON] = pos(cg->agg.anon);
	r->bytes[MW_SWAP] = pos(cg->agg.swap);
	r->bytes[MW_SHMEM] = pos(cg->agg.shmem);
	r->usage = cg->usage;
	r->limit = cg->limit;
	bpf_ringbuf_submit(r, wakeup_flags());
	count(MW_CNT_CGROUP_SAMPLES);
}

static __always_inline void emit_verdict(__u32 scope, __u32 tgid, __u64 cgid, __u64 cgroup_rss, __u64 limit,
					 const char *comm, const struct mw_det_verdict *v, __u64 now)
{
	struct mw_verdict_record *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);

	if (!r) {
		count(MW_CNT_RINGBUF_DROPS);
		return;
	}
	r->kind = MW_REC_VERDICT;
	r->tgid = tgid;
	r->ts_ns = now;
	r->cgroup_id = cgid;
	r->cgroup_rss = cgroup_rss;
	r->limit = limit;
	r->scope = scope;
	r->pad = 0;
	if (comm)
		__builtin_memcpy(r->comm, comm, MW_COMM_LEN);
	else
		__builtin_memset(r->comm, 0, MW_COMM_LEN);
	__builtin_memcpy(&r->verdict, v, sizeof(*v));
	bpf_ringbuf_submit(r, wakeup_flags());
	count(MW_CNT_VERDICTS);
}

/* The cgroup's detectors run when its aggregate moved by a step or a
 * heartbeat passed (mw_agg_due, the same rule replay applies). */
static __always_inline void run_cgroup(__u64 cgid, struct mw_cgroup_state *cg, __u64 now)
{
	__u64 t_ms = now / 1000000;
	struct mw_scratch *sc;

	if (!mw_agg_due(&cg->agg, DET_CFG, t_ms))
		return;
	sc = get_scratch();
	if (!sc)
		return;
	mw_agg_sample(&cg->agg, t_ms, &sc->cgroup_sample);
	emit_cgroup(cgid, cg, now);
	if (mw_det_update(&cg->det, DET_CFG, &sc->cgroup_sample, &sc->verdict))
		emit_verdict(MW_SCOPE_CGROUP, 0, cgid, agg_rss(&cg->agg), cg->limit, NULL, &sc->verdict, now);
}

/* Takes a process's last sample out of its cgroup's aggregate; the cgroup
 * state goes when its last tracked process leaves (after a final record). */
static __always_inline void leave_cgroup(struct mw_proc_state *p, __u64 now)
{
	__u64 cgid = p->cgroup_id;
	struct mw_cgroup_state *cg;

	if (!p->joined)
		return;
	p->joined = 0;
	cg = bpf_map_lookup_elem(&cgroups, &cgid);
	if (!cg)
		return;
	/* two CPUs moving members of one cgroup at once can race here, as on
	 * every plain field of these states: no locks on tracing paths */
	mw_agg_move(&cg->agg, &p->contrib, NULL);
	__builtin_memset(&p->contrib, 0, sizeof(p->contrib));
	if (cg->agg.members == 0) {
		emit_cgroup(cgid, cg, now);
		bpf_map_delete_elem(&cgroups, &cgid);
		count(MW_CNT_CGROUP_DELETED);
		return;
	}
	run_cgroup(cgid, cg, now);
}

/* Before a record: a process that changed memory cgroups leaves the old one. */
static __always_inline void switch_cgroup(struct mw_proc_state *p, __u64 cgid, __u64 now)
{
	if (p->joined && cgid != p->cgroup_id)
		leave_cgroup(p, now);
	p->cgroup_id = cgid;
}

/* After a record: the sample replaces the process's share of its cgroup's
 * aggregate (joining it on the first one). */
static __always_inline struct mw_cgroup_state *join_cgroup(struct mw_proc_state *p, struct mem_cgroup *memcg,
							   const struct mw_det_sample *sample)
{
	__u64 cgid = p->cgroup_id;
	struct mw_cgroup_state *cg;

	if (!cgid)
		return NULL;
	if (!p->joined && bpf_map_update_elem(&cgroups, &cgid, &zero_cgroup, BPF_NOEXIST) == 0)
		count(MW_CNT_CGROUP_CREATED);
	cg = bpf_map_lookup_elem(&cgroups, &cgid);
	if (!cg) {
		/* full, or evicted while joined: the aggregate starts over on the next record */
		count(MW_CNT_MAP_FULL);
		p->joined = 0;
		return NULL;
	}
	mw_agg_move(&cg->agg, p->joined ? &p->contrib : NULL, sample);
	p->joined = 1;
	__builtin_memcpy(&p->contrib, sample, sizeof(*sample));
	if (memcg) {
		/* usage moves with every sample; the limit was read with the cgroup id */
		cg->usage = memcg_usage(memcg);
		cg->limit = p->limit;
	}
	return cg;
}

static __always_inline void sample_of(const struct mw_proc_state *p, __u64 now, struct mw_det_sample *s)
{
	s->t_ms = now / 1000000;
	s->anon = pos(p->bytes[MW_ANON]);
	s->file = pos(p->bytes[MW_FILE]);
	s->shmem = pos(p->bytes[MW_SHMEM]);
	s->swap = pos(p->bytes[MW_SWAP]);
	s->vsz = p->vsz;
}

static __always_inline void emit_proc(__u32 kind, __u32 tgid, struct mw_proc_state *p, __u64 now)
{
	struct mw_proc_record *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);

	if (!r) {
		count(MW_CNT_RINGBUF_DROPS);
		return;
	}
	r->kind = kind;
	r->tgid = tgid;
	r->ts_ns = now;
	r->cgroup_id = p->cgroup_id;
#pragma unroll
	for (int i = 0; i < MW_NR_MEMBERS; i++)
		r->bytes[i] = p->bytes[i] < 0 ? 0 : p->bytes[i];
	r->vsz = p->vsz;
	r->limit = p->limit;
	__builtin_memcpy(r->comm, p->comm, MW_COMM_LEN);
	bpf_ringbuf_submit(r, wakeup_flags());
	count(kind == MW_REC_PROC_SAMPLE ? MW_CNT_PROC_SAMPLES : kind == MW_REC_PROC_EXEC ? MW_CNT_EXECS : MW_CNT_EXITS);
}

/* A process record and everything that follows from it, in the order replay
 * follows a trace line: leave a cgroup it left, the record, its share of the
 * cgroup's aggregate, its own detectors, then the cgroup's. */
static __always_inline void record_process(__u32 kind, __u32 tgid, struct mw_proc_state *p, __u64 cgid,
					   struct mem_cgroup *memcg, __u64 now)
{
	struct mw_cgroup_state *cg;
	struct mw_scratch *sc = get_scratch();

	switch_cgroup(p, cgid, now);
	emit_proc(kind, tgid, p, now);
	if (!sc)
		return;
	sample_of(p, now, &sc->sample);
	cg = join_cgroup(p, memcg, &sc->sample);
	if (mw_det_update(&p->det, DET_CFG, &sc->sample, &sc->verdict))
		emit_verdict(MW_SCOPE_PROCESS, tgid, p->cgroup_id, cg ? agg_rss(&cg->agg) : rss_of(p->bytes), p->limit,
			     p->comm, &sc->verdict, now);
	if (cg)
		run_cgroup(p->cgroup_id, cg, now);
}

/* The slow half of an event that crossed a coalescing step or a heartbeat. */
static __noinline int sample_process(struct mw_hot *h, __u32 mm_id, bool curr)
{
	__u64 now = bpf_ktime_get_ns();
	struct mem_cgroup *memcg = NULL;
	struct mw_proc_state *p;
	__u32 tgid;
	__u64 cgid;

	if (!h)
		return 0;
	tgid = h->tgid;
	p = bpf_map_lookup_elem(&procs, &tgid);
	if (!p || p->mm_id != mm_id) {
		/* the LRU dropped the state while the slot held it: start over next event */
		h->tgid = 0;
		settle_events(h, false);
		return 0;
	}
	settle_events(h, true);
	__builtin_memcpy(p->bytes, h->bytes, sizeof(p->bytes));
	cgid = p->cgroup_id;
	/* a vfork child also runs on this mm (curr=1) but is not the owner */
	if (curr && (bpf_get_current_pid_tgid() >> 32) == tgid) {
		/* the owner is current: its mm, cgroup and comm are at hand */
		memcg = refresh_from_task(p, (void *)bpf_get_current_task(), false, &cgid);
	}
	h->last_rss = p->last_rss = rss_of(p->bytes);
	h->last_ts = p->last_ts = now;
	record_process(MW_REC_PROC_SAMPLE, tgid, p, cgid, memcg, now);
	return 0;
}

/* First event of a process we do not follow yet (curr=1). */
static __always_inline struct mw_proc_state *first_sight(__u32 tgid, __u32 mm_id)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct mw_proc_state *p;

	/* kernels before the kthread fix report curr=1 for kthread_use_mm() users */
	if (BPF_CORE_READ(task, flags) & PF_KTHREAD)
		return NULL;
	if (bpf_map_update_elem(&procs, &tgid, &zero_proc, BPF_NOEXIST) == 0)
		count(MW_CNT_PROC_CREATED);
	p = bpf_map_lookup_elem(&procs, &tgid);
	if (!p) {
		count(MW_CNT_MAP_FULL);
		return NULL;
	}
	read_mm_counters(BPF_CORE_READ(task, mm), p->bytes);
	p->mm_id = mm_id;
	p->start_ts = bpf_ktime_get_ns();
	bpf_map_update_elem(&mm_owner, &mm_id, &tgid, BPF_ANY);
	return p;
}

/* curr=1 with an mm we did not follow: the process exec'd, or forked and this
 * is the child's first own event. Start over from the mm's real counters. */
static __always_inline void rebind(struct mw_proc_state *p, __u32 tgid, __u32 mm_id)
{
	struct task_struct *task = (void *)bpf_get_current_task();

	read_mm_counters(BPF_CORE_READ(task, mm), p->bytes);
	p->mm_id = mm_id;
	bpf_map_update_elem(&mm_owner, &mm_id, &tgid, BPF_ANY);
}

/* Writes a slot's newer fields back to its process's state. */
static __always_inline void write_back(struct mw_hot *h)
{
	__u32 tgid = h->tgid;
	struct mw_proc_state *p;

	settle_events(h, false);
	if (!tgid)
		return;
	p = bpf_map_lookup_elem(&procs, &tgid);
	if (p && p->mm_id == h->mm_id) {
		__builtin_memcpy(p->bytes, h->bytes, sizeof(p->bytes));
		p->last_rss = h->last_rss;
		p->last_ts = h->last_ts;
	}
}

/* The slot does not hold this mm: find the state of the process that owns
 * it, creating or re-binding it, and move it into the slot. */
static __noinline struct mw_hot *claim(__u32 mm_id, bool curr)
{
	struct mw_proc_state *p = NULL;
	__u32 tgid, slot;
	struct mw_hot *h;

	if (curr) {
		tgid = bpf_get_current_pid_tgid() >> 32;
		p = bpf_map_lookup_elem(&procs, &tgid);
		if (!p) {
			/* a vfork/CLONE_VM child runs on its parent's mm: the parent owns these events */
			__u32 *owner = bpf_map_lookup_elem(&mm_owner, &mm_id);

			if (owner && *owner != tgid) {
				__u32 o = *owner;

				p = bpf_map_lookup_elem(&procs, &o);
				if (p && p->mm_id == mm_id)
					tgid = o;
				else
					p = NULL;
			}
			if (!p)
				p = first_sight(tgid, mm_id);
		} else if (p->mm_id != mm_id) {
			rebind(p, tgid, mm_id);
		}
	} else {
		__u32 *owner = bpf_map_lookup_elem(&mm_owner, &mm_id);

		if (owner) {
			tgid = *owner;
			p = bpf_map_lookup_elem(&procs, &tgid);
		}
	}
	/* curr=0: only the state that follows this very mm may take the event;
	 * a stale owner (it exec'd or exited) must not take another mm's counters */
	if (!p || p->mm_id != mm_id) {
		count(MW_CNT_UNATTRIBUTED);
		return NULL;
	}
	slot = mm_id & cfg_hot_mask;
	h = bpf_map_lookup_elem(&hot, &slot);
	if (!h)
		return NULL;
	write_back(h);
	h->tgid = tgid;
	h->mm_id = mm_id;
	__builtin_memcpy(h->bytes, p->bytes, sizeof(h->bytes));
	h->last_rss = p->last_rss;
	h->last_ts = p->last_ts;
	return h;
}

/* Takes a process out of the hot array, keeping its newest counters. */
static __always_inline void release_slot(__u32 tgid, struct mw_proc_state *p)
{
	__u32 slot;
	struct mw_hot *h;

	if (!p || !p->mm_id)
		return;
	slot = p->mm_id & cfg_hot_mask;
	h = bpf_map_lookup_elem(&hot, &slot);
	if (!h || h->tgid != tgid || h->mm_id != p->mm_id)
		return;
	__builtin_memcpy(p->bytes, h->bytes, sizeof(p->bytes));
	settle_events(h, false);
	h->tgid = 0;
	h->mm_id = 0;
}

SEC("tp/kmem/rss_stat")
int mw_rss_stat(struct trace_event_raw_rss_stat *ctx)
{
	__u32 member = ctx->member;
	__u32 mm_id = ctx->mm_id;
	__u32 slot = mm_id & cfg_hot_mask;
	struct mw_hot *h;
	__u64 moved;

	if (member >= MW_NR_MEMBERS)
		return 0;
	h = bpf_map_lookup_elem(&hot, &slot);
	if (!h)
		return 0;
	/* two CPUs racing on one slot can at worst mix one counter into the
	 * wrong process until that member's next event: no locks on this path */
	if (h->mm_id != mm_id || !h->tgid) {
		h = claim(mm_id, ctx->curr);
		if (!h)
			return 0;
	}
	h->bytes[member] = ctx->size;
	h->events++;
	moved = distance(rss_of(h->bytes), h->last_rss);
	if (moved < cfg_step_bytes &&
	    ((h->events % MW_HEARTBEAT_EVERY) != 0 || bpf_ktime_get_ns() - h->last_ts < cfg_heartbeat_ns))
		return 0;
	return sample_process(h, mm_id, ctx->curr);
}

/* A new process (not a thread) starts with a copy of its parent's counters,
 * made by dup_mmap() under the parent (curr=0, unattributable): read them here. */
SEC("tp_btf/sched_process_fork")
int mw_fork(__u64 *ctx)
{
	struct task_struct *parent = (void *)ctx[0];
	struct task_struct *child = (void *)ctx[1];
	struct mw_proc_state *p;
	struct mm_struct *mm;
	__u32 tgid;

	if (BPF_CORE_READ(child, pid) != BPF_CORE_READ(child, tgid))
		return 0; /* a thread: same process */
	mm = BPF_CORE_READ(child, mm);
	/* kernel threads have none; vfork/CLONE_VM children borrow the parent's until exec */
	if (!mm || mm == BPF_CORE_READ(parent, mm))
		return 0;
	tgid = BPF_CORE_READ(child, tgid);
	/* a recycled tgid whose exit we missed starts over */
	if (bpf_map_update_elem(&procs, &tgid, &zero_proc, BPF_ANY) == 0)
		count(MW_CNT_PROC_CREATED);
	p = bpf_map_lookup_elem(&procs, &tgid);
	if (!p) {
		count(MW_CNT_MAP_FULL);
		return 0;
	}
	read_mm_counters(mm, p->bytes);
	BPF_CORE_READ_STR_INTO(&p->comm, parent, comm);
	p->vsz = BPF_CORE_READ(mm, total_vm) << cfg_page_shift;
	p->start_ts = bpf_ktime_get_ns();
	p->last_ts = p->start_ts;
	/* mm_id stays 0: the child's first own event binds it; it joins its
	 * cgroup's aggregate with its first record */
	p->cgroup_id = memcg_id(task_memcg(child));
	return 0;
}

/* exec: a new program in the same process. New mm, new name, new baseline,
 * detectors started over; then the record goes the way of any sample. */
SEC("tp_btf/sched_process_exec")
int mw_exec(__u64 *ctx)
{
	struct task_struct *task = (void *)ctx[0];
	__u32 tgid = BPF_CORE_READ(task, tgid);
	__u64 now = bpf_ktime_get_ns();
	struct mw_proc_state *p = bpf_map_lookup_elem(&procs, &tgid);
	struct mem_cgroup *memcg;
	__u64 cgid = 0;

	if (!p) {
		if (bpf_map_update_elem(&procs, &tgid, &zero_proc, BPF_NOEXIST) == 0)
			count(MW_CNT_PROC_CREATED);
		p = bpf_map_lookup_elem(&procs, &tgid);
		if (!p) {
			count(MW_CNT_MAP_FULL);
			return 0;
		}
	}
	release_slot(tgid, p);
	read_mm_counters(BPF_CORE_READ(task, mm), p->bytes);
	p->mm_id = 0; /* the new mm's first curr=1 event binds it */
	p->start_ts = now;
	p->last_ts = now;
	p->last_rss = rss_of(p->bytes);
	mw_det_reset(&p->det);
	memcg = refresh_from_task(p, task, true, &cgid);
	record_process(MW_REC_PROC_EXEC, tgid, p, cgid, memcg, now);
	return 0;
}

/* Runs once per exiting thread; only the thread that ends the group counts. */
SEC("tp_btf/sched_process_exit")
int mw_exit(__u64 *ctx)
{
	struct task_struct *task = (void *)ctx[0];
	struct mw_proc_state *p;
	__u32 tgid;
	__u64 now;

	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;
	tgid = BPF_CORE_READ(task, tgid);
	p = bpf_map_lookup_elem(&procs, &tgid);
	release_slot(tgid, p);
	if (!p)
		return 0;
	now = bpf_ktime_get_ns();
	/* the record first, naming the cgroup it leaves; then the leaving, as replay does */
	emit_proc(MW_REC_PROC_EXIT, tgid, p, now);
	leave_cgroup(p, now);
	if (p->mm_id) {
		__u32 mm_id = p->mm_id;
		__u32 *owner = bpf_map_lookup_elem(&mm_owner, &mm_id);

		if (owner && *owner == tgid)
			bpf_map_delete_elem(&mm_owner, &mm_id);
	}
	if (bpf_map_delete_elem(&procs, &tgid) == 0)
		count(MW_CNT_PROC_DELETED);
	return 0;
}
