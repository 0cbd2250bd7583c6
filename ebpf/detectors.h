/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * memwarden's three leak detectors: their types, thresholds and functions. The
 * implementation (detectors_impl.h) is compiled twice: into the BPF object
 * (MW_BPF_SIDE, kernel_types.h first, no libc) and into userspace
 * (Sources/CMemwarden/detectors.c), so `replay` and the tests run exactly the
 * code the kernel runs. docs/detectors.md tells what each detector computes and
 * why; this file and detectors_impl.h say how, and prove bounds.
 *
 * Rules this code keeps so that both builds agree and the verifier accepts it:
 *  - integers only; no signed division (BPF before cpu=v4 has none): signed
 *    quantities are divided as magnitudes and the sign put back;
 *  - every loop has a constant bound; every computed array index is masked;
 *  - the state is one fixed-size struct without pointers, meant to live in a
 *    map value; functions keep their stack frames well under 256 bytes;
 *  - time enters only as a difference from the target's first sample, so the
 *    kernel (absolute monotonic ms) and replay (trace ms) reach the same verdicts.
 *
 * The signal. Every detector follows "held" memory: anon + shmem + swap, the
 * memory a process can only give back itself (swap counts because a leak under
 * pressure keeps growing there while RSS stands still). File-backed pages are
 * reclaimable cache and never a leak; they are looked at only by composition.
 *
 * Windowing. Two rings of time buckets, anchored at the first sample (bucket =
 * (t - t0) / width), so a bucket means the same span of time however many
 * samples fell into it: a 50 MiB/s leak writes a line every 20 ms, a 1 MiB/min
 * leak one a minute plus 10 s heartbeats, and both fill buckets evenly.
 *  - long ring: MW_DET_LONG_N buckets, first bucket_ms wide; when full, pairs
 *    merge and the width doubles, up to max_bucket_ms; then it slides. A young
 *    process is seen at fine resolution (fast answers), an old one over a long
 *    window (slow leaks); the floor window (floor_buckets buckets) widens with
 *    it, so GC cycles longer than a young process's floor window are absorbed
 *    once it is a few minutes old. Per bucket: min and max of held memory, and
 *    the last anon, file, shmem and swap values.
 *  - short ring: MW_DET_SHORT_N buckets of bucket_ms, always sliding: the fast
 *    path, which sees a fast leak within seconds even in a process whose long
 *    buckets are minutes wide.
 * Fits run only when a bucket completes (at most once per bucket width), never
 * per sample, which keeps replay above a million samples a second and the
 * kernel's per-sample cost small; per sample there is O(1) work plus a scan of
 * at most MW_DET_FLOOR_MAX buckets.
 */
#ifndef MW_DETECTORS_TYPES_H
#define MW_DETECTORS_TYPES_H

#ifndef MW_BPF_SIDE
#include <linux/types.h>
#endif

#define MW_DET_LONG_N 32         /* long ring buckets (a power of two: indices are masked) */
#define MW_DET_SHORT_N 8         /* short ring buckets (a power of two) */
#define MW_DET_FLOOR_MAX 8       /* most buckets a rolling minimum spans */
#define MW_DET_EMPTY 0xffffffffu /* hmin of a bucket without samples */
#define MW_DET_KIB_MAX 0xfffffffeu /* ring values saturate here: 4 TiB */
#define MW_DET_SCORE_MAX 1000

enum mw_det_kind {
	MW_DET_TREND = 0,       /* linear trend of the level and the floor */
	MW_DET_COMPOSITION = 1, /* which members grow: anon, shmem, swap vs file */
	MW_DET_MULTI = 2,       /* multi-factor thresholds: fast growth, rising floor, VSZ */
	MW_DET_NR = 3,
};

/* Reason codes: a bitmask in the verdict. */
enum mw_det_reason {
	MW_R_FLOOR_RISING = 1u << 0,   /* trend: floor slope above the absolute and relative minimum */
	MW_R_LEVEL_RISING = 1u << 1,   /* trend: the level rises too */
	MW_R_LINEAR = 1u << 2,         /* trend: the floor fits a line (R^2 >= trend_min_r2) */
	MW_R_SAWTOOTH = 1u << 3,       /* trend: the level does not fit a line, the floor does */
	MW_R_ANON_GROWTH = 1u << 4,    /* composition: anonymous memory grows */
	MW_R_SHMEM_GROWTH = 1u << 5,   /* composition: shared memory grows */
	MW_R_SWAP_GROWTH = 1u << 6,    /* composition: held memory grows into swap */
	MW_R_FILE_GROWTH = 1u << 7,    /* composition: page cache grows (informative) */
	MW_R_CACHE_ONLY = 1u << 8,     /* composition: only file-backed memory grows: not a leak */
	MW_R_SWAP_SHUFFLE = 1u << 9,   /* composition: anon moves to swap, no net growth: not a leak */
	MW_R_FAST_GROWTH = 1u << 10,   /* multi: fast, linear growth beyond every earlier peak */
	MW_R_RISING_FLOOR = 1u << 11,  /* multi: the floor has made new highs for long */
	MW_R_VSZ_DIVERGENCE = 1u << 12,/* multi: VSZ grows far faster than held memory */
	MW_R_ANON_SHARE = 1u << 13,    /* multi: anon is most of RSS */
	MW_R_SWAP_SHARE = 1u << 14,    /* multi: much of held memory is in swap */
};

/* Factors with their own hysteresis (bits of mw_det_verdict.factors). */
enum mw_det_factor {
	MW_F_TREND = 1u << 0,
	MW_F_COMPOSITION = 1u << 1,
	MW_F_FAST = 1u << 2,
	MW_F_RISE = 1u << 3,
	MW_F_VSZ = 1u << 4,
};

/* Every threshold. MW_DET_CONFIG_DEFAULT gives the defaults (docs/detectors.md says why). */
struct mw_det_config {
	/* the cgroup aggregation rule (same as the kernel's per-process coalescing) */
	__u64 step_bytes;          /* run a cgroup's detectors when its RSS moved this much */
	__u64 heartbeat_ms;        /* ... or when this long passed since their last run */
	/* windows */
	__u32 bucket_ms;           /* short ring width; the long ring's first width */
	__u32 max_bucket_ms;       /* the long ring stops doubling here */
	__u32 floor_buckets;       /* rolling minimum width, in long buckets (1..MW_DET_FLOOR_MAX) */
	/* hysteresis of every factor: fires at fire_score, stays while >= stay_score */
	__u32 fire_score;
	__u32 stay_score;
	/* trend */
	__u32 trend_min_points;    /* non-empty buckets in the fitted window */
	__u32 trend_min_span_ms;   /* time the fitted window must cover */
	__u32 trend_min_r2;        /* permille, of the floor fit */
	__u32 trend_min_rate;      /* bytes/s of floor growth */
	__u32 trend_min_rel;       /* floor growth in permille of the floor per hour */
	__u32 trend_min_growth_kib;/* floor growth over the fitted window */
	/* composition */
	__u32 comp_min_growth_kib; /* held growth over the window */
	__u32 comp_min_share;      /* permille of resident growth that is held (not file) */
	/* multi-factor */
	__u32 fast_rate_kib;       /* KiB/s of level growth that counts as fast */
	__u32 fast_span_ms;        /* ... sustained this long */
	__u32 fast_min_r2;         /* permille, of the level fit over that span */
	__u32 rise_min_ms;         /* rising-floor duration */
	__u32 rise_min_highs;      /* new floor highs in that run */
	__u32 rise_tol_kib;        /* a new high must beat the last by this much ... */
	__u32 rise_tol_permille;   /* ... or by this share of the floor, whichever is more */
	__u32 rise_stall_ms;       /* least time without a new high that ends a run */
	__u32 vsz_min_growth_kib;  /* VSZ growth in a run */
	__u32 vsz_ratio;           /* VSZ growth / held growth */
	__u32 vsz_min_span_ms;     /* VSZ run duration */
	__u32 anon_share;          /* permille of RSS (reason only) */
	__u32 swap_share;          /* permille of held memory (reason only) */
	__u32 trend_min_age_ms;    /* the trend stays silent before the target is this old */
};

#define MW_DET_CONFIG_DEFAULT {                 \
	.step_bytes = 1ULL << 20,                   \
	.heartbeat_ms = 10000,                      \
	.bucket_ms = 1000,                          \
	.max_bucket_ms = 128000,                    \
	.floor_buckets = 4,                         \
	.fire_score = 500,                          \
	.stay_score = 400,                          \
	.trend_min_points = 6,                      \
	.trend_min_span_ms = 60000,                 \
	.trend_min_r2 = 800,                        \
	.trend_min_rate = 8192,                     \
	.trend_min_rel = 100,                       \
	.trend_min_growth_kib = 4096,               \
	.comp_min_growth_kib = 4096,                \
	.comp_min_share = 600,                      \
	.fast_rate_kib = 10240,                     \
	.fast_span_ms = 6000,                       \
	.fast_min_r2 = 900,                         \
	.rise_min_ms = 300000,                      \
	.rise_min_highs = 5,                        \
	.rise_tol_kib = 1024,                       \
	.rise_tol_permille = 5,                     \
	.rise_stall_ms = 30000,                     \
	.vsz_min_growth_kib = 262144,               \
	.vsz_ratio = 8,                             \
	.vsz_min_span_ms = 60000,                   \
	.anon_share = 500,                          \
	.swap_share = 100,                          \
	.trend_min_age_ms = 120000,                 \
}

/* mw_det_config_check's answers: which field is out of range. */
enum mw_det_config_error {
	MW_DET_CFG_OK = 0,
	MW_DET_CFG_BUCKET_MS = 1,      /* 0 */
	MW_DET_CFG_MAX_BUCKET_MS = 2,  /* below bucket_ms */
	MW_DET_CFG_FLOOR_BUCKETS = 3,  /* not 1..MW_DET_FLOOR_MAX */
	MW_DET_CFG_SCORES = 4,         /* stay_score > fire_score, or fire_score > 1000 */
	MW_DET_CFG_PERMILLE = 5,       /* an R^2 or share above 1000 */
	MW_DET_CFG_FAST_SPAN = 6,      /* fewer than 3 or more than MW_DET_SHORT_N - 1 buckets */
	MW_DET_CFG_ZERO = 7,           /* a threshold that must not be 0 is 0 */
};

/* One coalesced sample: absolute time in ms (any origin), counters in bytes. */
struct mw_det_sample {
	__u64 t_ms;
	__u64 anon;
	__u64 file;
	__u64 shmem;
	__u64 swap;
	__u64 vsz;
};

/* What the detectors say after a sample. Slopes are bytes/s, signed. */
struct mw_det_verdict {
	__s64 level_slope;      /* held level, over the trend's best window */
	__s64 floor_slope;      /* held floor (rolling minima), same window */
	__s64 growth;           /* the rate of the evidence that fired: the forecast's slope */
	__s64 fast_slope;       /* held floor over the fast window */
	__s64 anon_rate;        /* composition: each member over the trend's best window */
	__s64 file_rate;
	__s64 shmem_rate;
	__s64 swap_rate;
	__u64 held;             /* anon + shmem + swap of this sample, bytes */
	__u64 floor;            /* held floor now (rolling minimum), bytes */
	__u64 span_ms;          /* time the trend's best window covers */
	__u64 rise_ms;          /* duration of the current rising-floor run */
	__u64 vsz_growth;       /* bytes VSZ grew in the current VSZ run */
	__u64 age_ms;           /* time since the first sample */
	__u32 reasons;          /* MW_R_* */
	__u32 factors;          /* MW_F_* currently on */
	__u16 score[MW_DET_NR]; /* 0..1000 each */
	__u16 level_r2;         /* permille */
	__u16 floor_r2;         /* permille */
	__u16 rise_highs;       /* new floor highs in the current run */
	__u8 fired;             /* bit (1 << mw_det_kind) per detector that fired */
	__u8 level;             /* 0..3: band of the strongest score (250/500/750, hysteresis 50) */
	__u8 pad[10];           /* to a multiple of 8 without implicit padding: records compare bytewise */
};

/* A long-ring bucket, in KiB. hmin == MW_DET_EMPTY: no sample fell in it. */
struct mw_det_lbucket {
	__u32 hmin;
	__u32 hmax;
	__u32 anon;   /* last values */
	__u32 file;
	__u32 shmem;
	__u32 swap;
};

struct mw_det_sbucket {
	__u32 hmin;
	__u32 hlast;
};

/* Least-squares sums (bounds at mw_fit_solve). */
struct mw_fit {
	__u32 n, sx, sxx, sy, sxy, pad;
	__u64 syy;
};

/* Working memory of one evaluation, kept in the state rather than on the
 * stack: the BPF verifier does not track values in map memory, so a loop that
 * keeps its running sums and minima here leaves no register state that differs
 * between the two sides of a branch, and every branch inside a loop prunes at
 * the next iteration instead of multiplying paths. Meaningless between calls. */
struct mw_det_scratch {
	union {
		struct {
			struct mw_fit level;
			struct mw_fit floor;
		} fit;
		struct {
			__u64 sum[2][5]; /* first, last quarter: anon, file, shmem, swap, bucket index */
			__u64 cnt[2];
		} comp;
	};
	__u32 lo, hi, prior, m;
	__u32 x_first, x_last, floor_last, floor_peak;
	__u32 l_first, l_mid, l_last, have_mid, level_last, pad5;
	/* trend window: floor at its first and last point, largest rise between two points */
	__u32 mid_first, mid_last, mid_jump, mid_late; /* mid_late: floor where the window's last quarter starts */
	__u32 best_score, best_first, best_reasons, k;
	/* loop bounds, reloaded inside each loop: a bound kept in a register gets its
	 * range narrowed differently by each path's comparisons, and the verifier
	 * could then no longer prune one path against another */
	__u32 first, done, q, mid, shift, levels;
	/* per trend window (32, 16, 8 buckets): highest level before it and in it */
	__u32 before_max[3], window_max[3], pad4[2];
	/* the per-sample steps' results */
	__u32 fl, active, vactive, trend, rise, vszs, sig, evaluated;
	__u64 rate;
};

/* Per-target detector state: zero it (mw_det_reset) to start over, e.g. on exec.
 * About 1.4 KiB, three quarters of it the long ring: 16384 tracked processes
 * hold 23 MiB of map memory. */
struct mw_det_state {
	__u64 t0_ms;            /* absolute time of the first sample: all others are relative */
	__u64 last_ms;          /* relative time of the last sample */
	__u64 samples;
	__u64 long_start;       /* bucket index (at the current width) of lb[0] */
	__u64 short_start;
	__u32 long_len;         /* buckets in use; the last one is the open one */
	__u32 short_len;
	__u32 long_shift;       /* long width = bucket_ms << long_shift */
	__u32 run_max_jump;     /* largest rise of one new high over the last, KiB */
	__u32 win_floor_peak;   /* highest rolling floor among the completed long buckets, KiB */
	__u32 reserved1;
	__u32 prior_peak;       /* highest held level before the fast window, KiB */
	__u32 high_ref;         /* a new floor high must beat this (+ tolerance), KiB */
	__u32 run_base;         /* floor before the current rising run, KiB */
	__u32 run_high;         /* last high of the run, KiB */
	__u32 run_count;        /* new highs in the run; 0 = no run */
	__u32 vsz_count;        /* new VSZ highs in the VSZ run; 0 = no run */
	__u64 run_start_ms;
	__u64 run_last_ms;
	__u64 run_max_gap_ms;   /* longest time between two highs of the run */
	__u64 vsz_ref;          /* highest VSZ seen, KiB */
	__u64 vsz_base;         /* VSZ before the current VSZ run, KiB */
	__u64 vsz_start_ms;
	__u64 vsz_last_ms;
	__u64 vsz_max_gap_ms;
	__u32 vsz_base_rss;     /* RSS when the VSZ run began, KiB */
	__u16 trend_score;      /* cached from the last long evaluation */
	__u16 comp_score;
	__u16 fast_score;       /* cached from the last short evaluation */
	__u16 pad;
	__u32 trend_reasons;
	__u32 comp_reasons;
	__u32 signature;        /* of the last verdict returned, for change detection */
	struct mw_det_verdict v;
	struct mw_det_scratch scratch;
	struct mw_det_lbucket lb[MW_DET_LONG_N];
	struct mw_det_sbucket sb[MW_DET_SHORT_N];
};

/* A memory cgroup's aggregate: the sum over its live processes of each one's
 * last sampled counters, and when its detectors last ran. */
struct mw_agg {
	__s64 anon;             /* signed: a member's move is two steps in the kernel */
	__s64 file;
	__s64 shmem;
	__s64 swap;
	__u64 last_rss;         /* RSS when the cgroup's detectors last ran */
	__u64 last_ms;          /* absolute time of that run */
	__u32 members;
	__u32 sampled;          /* 0 until the detectors ran once */
};

/* The interface. On the BPF side every function is static and defined by
 * detectors_impl.h, which memwarden.bpf.c includes; in userspace one file
 * (Sources/CMemwarden/detectors.c) compiles the same definitions with external
 * linkage, so replay and the tests call exactly the code the kernel runs. */
#ifndef MW_BPF_SIDE
/* The defaults (MW_DET_CONFIG_DEFAULT). */
void mw_det_config_default(struct mw_det_config *cfg);
/* 0, or the enum mw_det_config_error of the first threshold out of range. */
int mw_det_config_check(const struct mw_det_config *cfg);
/* Forgets everything: the next sample is the target's first. */
void mw_det_reset(struct mw_det_state *st);
/* One sample; 1 when the verdict changed (then *out holds it), else 0. */
int mw_det_update(struct mw_det_state *st, const struct mw_det_config *cfg, const struct mw_det_sample *s,
		  struct mw_det_verdict *out);
/* A member's counters went from *from (NULL: it joined) to *to (NULL: it left). */
void mw_agg_move(struct mw_agg *agg, const struct mw_det_sample *from, const struct mw_det_sample *to);
/* 1 when the cgroup's detectors should run now (a step moved, or a heartbeat). */
int mw_agg_due(struct mw_agg *agg, const struct mw_det_config *cfg, __u64 t_ms);
/* The cgroup's sample at t_ms: the sums of its members' last samples. */
void mw_agg_sample(const struct mw_agg *agg, __u64 t_ms, struct mw_det_sample *out);
#endif

#endif /* MW_DETECTORS_TYPES_H */
