/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The detectors' implementation (their interface, the state and the rules they
 * keep are in detectors.h). Included by the BPF program (memwarden.bpf.c, with
 * MW_BPF_SIDE: static functions, the big steps as BPF subprograms) and by
 * exactly one userspace file (Sources/CMemwarden/detectors.c: external
 * linkage), so `replay` and the tests run exactly the code the kernel runs.
 */
#ifndef MW_DETECTORS_IMPL_H
#define MW_DETECTORS_IMPL_H

#include "detectors.h"

#ifdef MW_BPF_SIDE
/* Helpers inline into their caller; the big steps are BPF subprograms, each
 * verified with its own frame, so no frame nears the 512-byte limit. */
#define MW_DET_INLINE static inline __attribute__((always_inline))
#define MW_DET_SUB static __attribute__((noinline, unused))
#define MW_DET_API static __attribute__((noinline, unused))
/* Keeps clang from promoting scratch memory to registers inside a loop, which
 * would undo what struct mw_det_scratch is for. */
#define MW_DET_LOOP_BARRIER() asm volatile("" ::: "memory")
#else
#define MW_DET_INLINE static inline
#define MW_DET_SUB static
#define MW_DET_API
#define MW_DET_LOOP_BARRIER() do { } while (0)
#endif

#define MW_DET_MASK_L(i) ((i) & (MW_DET_LONG_N - 1))
#define MW_DET_MASK_S(i) ((i) & (MW_DET_SHORT_N - 1))

MW_DET_INLINE __u64 mw_min64(__u64 a, __u64 b) { return a < b ? a : b; }
MW_DET_INLINE __u64 mw_max64(__u64 a, __u64 b) { return a > b ? a : b; }
MW_DET_INLINE __u32 mw_min32(__u32 a, __u32 b) { return a < b ? a : b; }
MW_DET_INLINE __u32 mw_max32(__u32 a, __u32 b) { return a > b ? a : b; }

MW_DET_INLINE __u32 mw_kib(__u64 bytes)
{
	bytes >>= 10;
	return bytes > MW_DET_KIB_MAX ? MW_DET_KIB_MAX : (__u32)bytes;
}

/* A threshold as a score: 0 at 0, 500 at the threshold, 1000 at twice it.
 * Bounds: v < 2*thr here, and both are scaled below 2^41 first, so v*500 < 2^50. */
MW_DET_INLINE __u32 mw_ramp(__u64 v, __u64 thr)
{
	if (!thr)
		return MW_DET_SCORE_MAX;
	if (thr > (1ULL << 40)) {
		v >>= 20;
		thr >>= 20;
		if (!thr)
			thr = 1;
	}
	if (v >= 2 * thr)
		return MW_DET_SCORE_MAX;
	return (__u32)(v * 500 / thr);
}

MW_DET_INLINE __u32 mw_ramp_signed(__s64 v, __u64 thr)
{
	return v <= 0 ? 0 : mw_ramp((__u64)v, thr);
}

/* A permille quantity (R^2, a share) as a score: 500 at the minimum, 1000 at
 * 1000, 0 as far below the minimum as 1000 is above it. */
MW_DET_INLINE __u32 mw_ramp_permille(__u32 r2, __u32 min)
{
	__u32 lower;

	if (min >= 1000)
		return r2 >= 1000 ? MW_DET_SCORE_MAX : 0;
	if (r2 >= min)
		return 500 + (mw_min32(r2, 1000) - min) * 500 / (1000 - min);
	lower = 2 * min > 1000 ? 2 * min - 1000 : 0;
	if (r2 <= lower)
		return 0;
	return (r2 - lower) * 500 / (min - lower);
}

MW_DET_INLINE __u32 mw_factor_on(__u32 was_on, __u32 score, const struct mw_det_config *cfg)
{
	return was_on ? score >= cfg->stay_score : score >= cfg->fire_score;
}

/* Least squares over points (x, y), x a bucket index in 0..31, y in scaled units
 * below 2^15 (the caller shifts values, relative to the window minimum, until
 * they fit). Bounds, with n <= 32:
 *   sx <= 496, sxx <= 10416, n*sxx <= 333312 < 2^19;
 *   sy < 2^20, syy < 2^35, sxy < 2^25: all but syy fit u32;
 *   |n*sxy - sx*sy| < 2^30, its square < 2^60; n*syy - sy^2 < 2^40;
 *   dx*dy < 2^59. Everything fits in u64 without a 128-bit product. */
MW_DET_INLINE void mw_fit_add(struct mw_fit *f, __u32 x, __u32 y)
{
	f->n++;
	f->sx += x;
	f->sxx += x * x;
	f->sy += y;
	f->syy += (__u64)y * y;
	f->sxy += x * y;
}

/* Slope in bytes/s (y units are KiB << shift, x units width_ms) and R^2 in permille. */
MW_DET_INLINE void mw_fit_solve(const struct mw_fit *f, __u32 shift, __u64 width_ms, __s64 *slope, __u32 *r2)
{
	__u64 n = f->n, sx = f->sx, sy = f->sy;
	__u64 dx = n * f->sxx - sx * sx;
	__u64 a = n * f->sxy, b = sx * sy;
	__u64 dy = n * f->syy - sy * sy;
	__u64 num = a >= b ? a - b : b - a;
	__u64 per_bucket, bps, num2, den;

	*slope = 0;
	*r2 = 0;
	if (n < 2 || !dx || !width_ms)
		return;
	/* For distinct integer x, |slope| <= 3 * range (at most one |x - mean| is
	 * below 1/2, so sum|d| <= 2 sum d^2 + 1/2 and sum d^2 >= 1/2): bytes per
	 * bucket < 3 * 2^15 << (10 + shift) <= 2^44 for shift <= 17; times 1000 < 2^54.
	 * The clamp only guards against a caller breaking those preconditions. */
	per_bucket = (num << (10 + (shift & 31))) / dx;
	if (per_bucket > (1ULL << 50))
		per_bucket = 1ULL << 50;
	bps = per_bucket * 1000 / width_ms;
	*slope = a >= b ? (__s64)bps : -(__s64)bps;
	if (!dy)
		return;
	/* Cauchy-Schwarz: num^2 <= dx*dy < 2^59, so 1000 * num^2 overflows only when
	 * dx*dy >= 2^50; then both are scaled down by 2^10 first. */
	num2 = num * num;
	den = dx * dy;
	if (den >= (1ULL << 50)) {
		num2 >>= 10;
		den >>= 10;
	}
	if (!den)
		return;
	num2 = num2 * 1000 / den;
	*r2 = num2 > 1000 ? 1000 : (__u32)num2;
}

/* Shift that brings a KiB range below 2^15 (at most 17 for a u32 range). */
MW_DET_INLINE __u32 mw_scale_shift(__u32 range)
{
	__u32 shift = 0;

	for (int i = 0; i < 18; i++) {
		if ((range >> shift) < (1u << 15))
			break;
		shift++;
	}
	return shift;
}

MW_DET_INLINE void mw_lbucket_clear(struct mw_det_lbucket *b)
{
	b->hmin = MW_DET_EMPTY;
	b->hmax = 0;
	b->anon = 0;
	b->file = 0;
	b->shmem = 0;
	b->swap = 0;
}

/* Adjacent buckets become one: extremes combine, last values come from the later one. */
MW_DET_INLINE void mw_lbucket_merge(struct mw_det_lbucket *dst, const struct mw_det_lbucket *src)
{
	if (src->hmin == MW_DET_EMPTY)
		return;
	if (dst->hmin == MW_DET_EMPTY) {
		*dst = *src;
		return;
	}
	if (src->hmin < dst->hmin)
		dst->hmin = src->hmin;
	if (src->hmax > dst->hmax)
		dst->hmax = src->hmax;
	dst->anon = src->anon;
	dst->file = src->file;
	dst->shmem = src->shmem;
	dst->swap = src->swap;
}

/* Widens the long buckets 2^levels times, in place: bucket a (absolute) goes
 * to a >> levels. With lb[i] holding bucket start + i, its new slot
 * j = ((start + i) >> levels) - (start >> levels) never exceeds i, so a
 * forward pass reads every old slot before anything overwrites it. */
MW_DET_SUB void mw_long_widen(struct mw_det_state *st)
{
	__u32 levels = st->scratch.levels & 31;
	__u64 start = st->long_start, nstart = start >> levels;
	__u32 len = st->long_len;

	for (__u32 i = 0; i < MW_DET_LONG_N; i++) {
		struct mw_det_lbucket src;
		__u64 a = start + i;
		__u32 j;

		if (i >= len)
			break;
		j = (__u32)((a >> levels) - nstart);
		src = st->lb[MW_DET_MASK_L(i)];
		/* the first old bucket of each new one starts it, the rest merge in */
		if (i == 0 || (a >> levels) != ((a - 1) >> levels))
			st->lb[MW_DET_MASK_L(j)] = src;
		else
			mw_lbucket_merge(&st->lb[MW_DET_MASK_L(j)], &src);
	}
	st->long_len = len ? (__u32)(((start + len - 1) >> levels) - nstart + 1) : 0;
	st->long_start = nstart;
	st->long_shift += levels;
}

MW_DET_SUB void mw_long_slide(struct mw_det_state *st, __u64 by)
{
	__u32 len = st->long_len;

	for (__u32 i = 0; i < MW_DET_LONG_N; i++) {
		__u64 src = i + by;

		if (src >= len)
			break;
		st->lb[MW_DET_MASK_L(i)] = st->lb[MW_DET_MASK_L(src)];
	}
	st->long_len = len > by ? (__u32)(len - by) : 0;
	st->long_start += by;
}

MW_DET_SUB void mw_short_slide(struct mw_det_state *st, __u64 by)
{
	__u32 len = st->short_len;

	for (__u32 i = 0; i < MW_DET_SHORT_N; i++) {
		__u64 src = i + by;

		if (src >= len)
			break;
		st->sb[MW_DET_MASK_S(i)] = st->sb[MW_DET_MASK_S(src)];
	}
	st->short_len = len > by ? (__u32)(len - by) : 0;
	st->short_start += by;
}

MW_DET_INLINE __u32 mw_floor_k(const struct mw_det_config *cfg)
{
	return cfg->floor_buckets < 1 ? 1 : cfg->floor_buckets > MW_DET_FLOOR_MAX ? MW_DET_FLOOR_MAX : cfg->floor_buckets;
}

/* Rolling minimum of hmin over the k long buckets ending at i (fewer at the
 * ring's start); MW_DET_EMPTY when they are all empty. */
MW_DET_INLINE __u32 mw_long_floor(struct mw_det_state *st, __u32 i, __u32 k)
{
	struct mw_det_scratch *sc = &st->scratch;

	sc->m = MW_DET_EMPTY;
	for (__u32 j = 0; j < MW_DET_FLOOR_MAX; j++) {
		__u32 v;

		MW_DET_LOOP_BARRIER();
		if (j >= k || j > i)
			break;
		v = st->lb[MW_DET_MASK_L(i - j)].hmin;
		if (v < sc->m)
			sc->m = v;
	}
	return sc->m;
}

MW_DET_INLINE __u32 mw_shift_kib(__u32 v, __u32 before, __u32 after)
{
	if (after >= before)
		return v;
	return v > before - after ? v - (before - after) : 0;
}

/* The floor measured `before` a widening reads `after` it. */
MW_DET_INLINE void mw_rebase_highs(struct mw_det_state *st, __u32 before, __u32 after)
{
	if (before == MW_DET_EMPTY || after == MW_DET_EMPTY)
		return;
	st->high_ref = mw_shift_kib(st->high_ref, before, after);
	st->run_high = mw_shift_kib(st->run_high, before, after);
	st->run_base = mw_shift_kib(st->run_base, before, after);
}

/* Moves the long ring to the bucket of time `now` (relative ms): widens it as
 * far as needed and allowed, slides it when it may not widen, opens the new
 * bucket. Leaves in scratch.done how many buckets are complete (they precede
 * the open one) when a new bucket was opened, 0 when the sample falls into the
 * open bucket. */
MW_DET_SUB void mw_long_advance(struct mw_det_state *st, const struct mw_det_config *cfg, __u64 now)
{
	struct mw_det_scratch *sc = &st->scratch;
	__u64 width = (__u64)cfg->bucket_ms << (st->long_shift & 31), a;

	sc->done = 0;
	sc->levels = 0;
	if (!width)
		return;
	a = now / width;
	if (!st->long_len) {
		st->long_start = a;
		st->long_len = 1;
		mw_lbucket_clear(&st->lb[0]);
		return;
	}
	if (a <= st->long_start + st->long_len - 1)
		return;
	/* the fewest doublings that bring `now` inside the ring, within max_bucket_ms */
	for (__u32 i = 1; i < 24; i++) {
		MW_DET_LOOP_BARRIER();
		if (a < (st->long_start >> sc->levels) + MW_DET_LONG_N || (width << i) > cfg->max_bucket_ms)
			break;
		sc->levels = i;
		a = now / (width << i);
	}
	if (sc->levels) {
		/* a wider bucket widens the floor's window too, which lowers the floor
		 * by itself: move the references for new highs down with it, so a run
		 * of highs goes on measuring growth, not the change of ruler */
		sc->fl = mw_long_floor(st, (st->long_len - 1) & (MW_DET_LONG_N - 1), mw_floor_k(cfg));
		mw_long_widen(st);
		mw_rebase_highs(st, sc->fl, mw_long_floor(st, (st->long_len - 1) & (MW_DET_LONG_N - 1), mw_floor_k(cfg)));
		width = (__u64)cfg->bucket_ms << (st->long_shift & 31);
		a = now / width;
		if (a <= st->long_start + st->long_len - 1)
			return; /* the wider open bucket holds this sample too */
	}
	if (a >= st->long_start + MW_DET_LONG_N)
		mw_long_slide(st, a - (st->long_start + MW_DET_LONG_N - 1));
	if (!st->long_len)
		st->long_start = a;
	sc->done = st->long_len;
	for (__u32 i = 0; i < MW_DET_LONG_N; i++) {
		MW_DET_LOOP_BARRIER();
		if (st->long_start + i > a)
			break;
		if (i >= sc->done)
			mw_lbucket_clear(&st->lb[MW_DET_MASK_L(i)]);
	}
	st->long_len = (__u32)(a - st->long_start + 1);
}

/* The short ring's counterpart: it slides, never widens. */
MW_DET_SUB void mw_short_advance(struct mw_det_state *st, const struct mw_det_config *cfg, __u64 now)
{
	struct mw_det_scratch *sc = &st->scratch;
	__u64 width = cfg->bucket_ms, a;

	sc->done = 0;
	if (!width)
		return;
	a = now / width;
	if (!st->short_len) {
		st->short_start = a;
		st->short_len = 1;
		st->sb[0].hmin = MW_DET_EMPTY;
		st->sb[0].hlast = 0;
		return;
	}
	if (a <= st->short_start + st->short_len - 1)
		return;
	if (a >= st->short_start + MW_DET_SHORT_N)
		mw_short_slide(st, a - (st->short_start + MW_DET_SHORT_N - 1));
	if (!st->short_len)
		st->short_start = a;
	sc->done = st->short_len;
	for (__u32 i = 0; i < MW_DET_SHORT_N; i++) {
		MW_DET_LOOP_BARRIER();
		if (st->short_start + i > a)
			break;
		if (i >= sc->done) {
			st->sb[MW_DET_MASK_S(i)].hmin = MW_DET_EMPTY;
			st->sb[MW_DET_MASK_S(i)].hlast = 0;
		}
	}
	st->short_len = (__u32)(a - st->short_start + 1);
}

/* One window of the trend: the completed long buckets [first, done). */
struct mw_trend_fit {
	__s64 lslope, fslope;
	__u32 lr2, fr2;
	__u32 points;
	__u32 floor_last;       /* floor at the window's last point, KiB */
	__u32 floor_peak;       /* highest floor in the window, KiB */
	__u32 xspan;            /* buckets between the first and last point */
	__u32 rise;             /* floor at the last point minus at the first, KiB (0 if lower) */
	__u32 jump;             /* largest rise of the floor between two neighbouring points, KiB */
	__u32 late;             /* floor at the first point of the window's last quarter, KiB */
	__u32 pad;
};

/* One bucket of a trend window. Loop bodies that keep running values are BPF
 * subprograms: across the call clang keeps nothing of them in registers, so
 * the verifier sees iterations that differ only in the counter, whatever
 * clang's scheduling, and prunes each branch at the next iteration. */
MW_DET_SUB void mw_trend_point(struct mw_det_state *st, const struct mw_det_config *cfg, __u32 i)
{
	struct mw_det_scratch *sc = &st->scratch;
	const struct mw_det_lbucket *b = &st->lb[MW_DET_MASK_L(i)];
	__u32 x, fl, mid, lo = sc->lo, shift = sc->shift & 31;

	/* a bucket whose rolling window reaches before the ring would get a floor
	 * from fewer buckets than the others: on a rising series, a higher one */
	if (i >= sc->done || i < sc->first || i + 1 < mw_floor_k(cfg) || b->hmin == MW_DET_EMPTY)
		return;
	x = i - sc->first;
	/* hmin <= hmax < 2^32, so the midpoint is computed without overflow */
	mid = b->hmin + ((b->hmax - b->hmin) >> 1);
	fl = mw_long_floor(st, i, mw_floor_k(cfg));
	if (!sc->fit.level.n) {
		sc->x_first = x;
		sc->mid_first = fl;
	} else if (fl > sc->mid_last && fl - sc->mid_last > sc->mid_jump) {
		sc->mid_jump = fl - sc->mid_last;
	}
	sc->mid_last = fl;
	sc->x_last = x;
	if (sc->mid_late == MW_DET_EMPTY && 4 * (i - sc->first) >= 3 * (sc->done - sc->first))
		sc->mid_late = fl;
	/* hmin, hmax and every floor are >= lo, the minimum over all completed buckets */
	mw_fit_add(&sc->fit.level, x, (mid - lo) >> shift);
	mw_fit_add(&sc->fit.floor, x, (fl - lo) >> shift);
	sc->floor_last = fl;
	if (fl > sc->floor_peak)
		sc->floor_peak = fl;
}

MW_DET_INLINE void mw_trend_window(struct mw_det_state *st, const struct mw_det_config *cfg, __u32 first,
				   __u32 done, __u32 shift, __u64 width, struct mw_trend_fit *out)
{
	struct mw_det_scratch *sc = &st->scratch;

	__builtin_memset(&sc->fit, 0, sizeof(sc->fit));
	sc->first = first;
	sc->done = done;
	sc->shift = shift;
	sc->x_first = 0;
	sc->x_last = 0;
	sc->floor_last = 0;
	sc->floor_peak = 0;
	sc->mid_first = 0;
	sc->mid_last = 0;
	sc->mid_jump = 0;
	sc->mid_late = MW_DET_EMPTY;
	for (__u32 i = 0; i < MW_DET_LONG_N; i++)
		mw_trend_point(st, cfg, i);
	out->late = sc->mid_late;
	out->points = sc->fit.level.n;
	out->xspan = sc->x_last - sc->x_first;
	out->rise = sc->mid_last > sc->mid_first ? sc->mid_last - sc->mid_first : 0;
	out->jump = sc->mid_jump;
	out->floor_last = sc->floor_last;
	out->floor_peak = sc->floor_peak;
	mw_fit_solve(&sc->fit.level, shift, width, &out->lslope, &out->lr2);
	mw_fit_solve(&sc->fit.floor, shift, width, &out->fslope, &out->fr2);
}

/* Scores one trend window; reasons go to *reasons. */
MW_DET_INLINE __u32 mw_trend_score(const struct mw_det_config *cfg, const struct mw_trend_fit *w, __u64 width,
				   __u64 age_ms, __u32 *reasons)
{
	__u64 span_ms = (__u64)w->xspan * width;
	__u64 floor_bytes = (__u64)w->floor_last << 10;
	/* floor bytes < 2^42 and the relative minimum is capped at 2^21 permille per
	 * hour, so the product stays below 2^63 */
	__u64 rel_thr = floor_bytes * mw_min64(cfg->trend_min_rel, 1u << 21) / 3600000;
	__u64 fslope = w->fslope > 0 ? (__u64)w->fslope : 0;
	__u64 growth_kib;
	__u32 s_abs, s_rel, s_r2, s_span, s_growth;

	*reasons = 0;
	if (w->points < cfg->trend_min_points || w->points < 2)
		return 0;
	fslope = mw_min64(fslope, 1ULL << 44); /* 16 TiB/s: beyond any machine */
	growth_kib = (fslope >> 10) * span_ms / 1000; /* < 2^34 * 2^22 */
	s_abs = mw_ramp(fslope, cfg->trend_min_rate);
	s_rel = mw_ramp(fslope, rel_thr);
	s_r2 = mw_ramp_permille(w->fr2, cfg->trend_min_r2);
	s_span = span_ms >= cfg->trend_min_span_ms ? MW_DET_SCORE_MAX : mw_min32(mw_ramp(span_ms, cfg->trend_min_span_ms), 499);
	s_growth = mw_ramp(growth_kib, cfg->trend_min_growth_kib);
	if (s_abs >= 500 && s_rel >= 500)
		*reasons |= MW_R_FLOOR_RISING;
	if (w->lslope > 0 && (__u64)w->lslope >= cfg->trend_min_rate)
		*reasons |= MW_R_LEVEL_RISING;
	if (w->fr2 >= cfg->trend_min_r2)
		*reasons |= MW_R_LINEAR;
	if (w->fr2 >= cfg->trend_min_r2 && w->lr2 < cfg->trend_min_r2 && (*reasons & MW_R_FLOOR_RISING))
		*reasons |= MW_R_SAWTOOTH;
	/* a young target's whole life may be its startup, or a first cycle that
	 * has not dropped yet: the trend waits until it has seen more */
	if (age_ms < cfg->trend_min_age_ms)
		s_span = mw_min32(s_span, 499);
	/* growth that is mostly one jump of the floor (three quarters of it) is a
	 * step, not a trend (a window that catches a step near its middle can fit
	 * a line well enough): a staircase needs two steps in the window */
	if (w->rise && (__u64)w->jump * 4 > (__u64)w->rise * 3)
		s_growth = mw_min32(s_growth, 250);
	/* growth that has levelled off is a warm-up (a heap or a pool filling to
	 * its working size), not a leak: the window's last quarter must add at
	 * least 12 % of what the three before it did (a steady leak adds a third;
	 * a staircase's last step may be a quarter-window old, not three) */
	if (w->rise && w->late != MW_DET_EMPTY) {
		__u32 start = w->floor_last - w->rise;
		__u64 g1 = w->late > start ? w->late - start : 0;
		__u64 g2 = w->floor_last > w->late ? w->floor_last - w->late : 0;

		if (g2 * 100 < g1 * 12)
			s_growth = mw_min32(s_growth, 250);
	}
	return mw_min32(mw_min32(s_abs, s_rel), mw_min32(s_r2, mw_min32(s_span, s_growth)));
}

/* Extremes of the completed buckets, and the peak before the fast window. */
MW_DET_SUB void mw_range_point(struct mw_det_state *st, __u32 i)
{
	struct mw_det_scratch *sc = &st->scratch;
	const struct mw_det_lbucket *b = &st->lb[MW_DET_MASK_L(i)];

	if (i >= sc->done || b->hmin == MW_DET_EMPTY)
		return;
	if (b->hmin < sc->lo)
		sc->lo = b->hmin;
	if (b->hmax > sc->hi)
		sc->hi = b->hmax;
	if (i + sc->q < sc->done && b->hmax > sc->prior)
		sc->prior = b->hmax;
	/* unrolled by hand: three windows ending at done */
	if (i + MW_DET_LONG_N < sc->done) {
		if (b->hmax > sc->before_max[0])
			sc->before_max[0] = b->hmax;
	} else if (b->hmax > sc->window_max[0]) {
		sc->window_max[0] = b->hmax;
	}
	if (i + MW_DET_LONG_N / 2 < sc->done) {
		if (b->hmax > sc->before_max[1])
			sc->before_max[1] = b->hmax;
	} else if (b->hmax > sc->window_max[1]) {
		sc->window_max[1] = b->hmax;
	}
	if (i + MW_DET_LONG_N / 4 < sc->done) {
		if (b->hmax > sc->before_max[2])
			sc->before_max[2] = b->hmax;
	} else if (b->hmax > sc->window_max[2]) {
		sc->window_max[2] = b->hmax;
	}
}

/* One trend window, the last n of the completed buckets: fit, score, and keep
 * it when it beats the windows scored before it (ties: the longer window, scored
 * first). Every subprogram here returns nothing and leaves its results in the
 * state: paths that differ inside it then look alike to the verifier once it
 * returns, and prune there. */
MW_DET_SUB void mw_trend_scale(struct mw_det_state *st, const struct mw_det_config *cfg, __u32 n)
{
	struct mw_det_scratch *sc = &st->scratch;
	__u64 width = (__u64)cfg->bucket_ms << (st->long_shift & 31);
	__u32 done = sc->done, first = done > n ? done - n : 0, score, reasons, j, top;
	struct mw_trend_fit w;
	__u64 tol;

	/* a shorter window that starts where a longer one did is the same window */
	if (n < MW_DET_LONG_N && first == 0)
		return;
	mw_trend_window(st, cfg, first, done, sc->shift, width, &w);
	if (n == MW_DET_LONG_N)
		st->win_floor_peak = w.floor_peak;
	score = mw_trend_score(cfg, &w, width, st->last_ms, &reasons);
	/* growth that only climbs back to a level the window saw before it (the
	 * next cycle of a batch job, a long GC period) repeats, it does not leak */
	j = n == MW_DET_LONG_N ? 0 : n == MW_DET_LONG_N / 2 ? 1 : 2;
	top = sc->window_max[j];
	tol = mw_max64(cfg->rise_tol_kib, (__u64)top * cfg->rise_tol_permille / 1000);
	if (sc->before_max[j] && (__u64)sc->before_max[j] + tol > top && score > 250)
		score = 250;
	if (n < MW_DET_LONG_N && score <= sc->best_score)
		return;
	sc->best_score = score;
	sc->best_first = first;
	sc->best_reasons = reasons;
	st->v.level_slope = w.lslope;
	st->v.floor_slope = w.fslope;
	st->v.level_r2 = (__u16)w.lr2;
	st->v.floor_r2 = (__u16)w.fr2;
	st->v.span_ms = (__u64)w.xspan * width;
}

/* Evaluates the trend over the completed long buckets [0, done): windows of
 * the last 32, 16 and 8 buckets, best score wins. Also refreshes the peaks the
 * per-sample checks compare against. Leaves the chosen window's first bucket
 * in scratch.best_first, for composition. */
MW_DET_SUB void mw_eval_long(struct mw_det_state *st, const struct mw_det_config *cfg, __u32 done)
{
	struct mw_det_scratch *sc = &st->scratch;
	__u64 width = (__u64)cfg->bucket_ms << (st->long_shift & 31);

	sc->best_score = 0;
	sc->best_first = 0;
	sc->best_reasons = 0;
	st->trend_score = 0;
	st->trend_reasons = 0;
	if (!width || done < 2)
		return;
	/* the fast gate compares with peaks from before the fast window */
	sc->q = (__u32)((cfg->fast_span_ms + width - 1) / width);
	sc->lo = MW_DET_EMPTY;
	sc->hi = 0;
	sc->prior = 0;
	sc->done = done;
	__builtin_memset(sc->before_max, 0, sizeof(sc->before_max));
	__builtin_memset(sc->window_max, 0, sizeof(sc->window_max));
	for (__u32 i = 0; i < MW_DET_LONG_N; i++)
		mw_range_point(st, i);
	st->prior_peak = sc->prior;
	if (sc->lo == MW_DET_EMPTY || sc->hi < sc->lo)
		return;
	sc->shift = mw_scale_shift(sc->hi - sc->lo);
	mw_trend_scale(st, cfg, MW_DET_LONG_N);
	mw_trend_scale(st, cfg, MW_DET_LONG_N / 2);
	mw_trend_scale(st, cfg, MW_DET_LONG_N / 4);
	st->trend_score = (__u16)sc->best_score;
	st->trend_reasons = sc->best_reasons;
}

/* after - before, in bytes/s, of two KiB values dt_ms apart. */
MW_DET_INLINE __s64 mw_rate(__u64 before, __u64 after, __u64 dt_ms)
{
	__u64 d = after >= before ? after - before : before - after;
	__u64 r;

	if (!dt_ms)
		return 0;
	/* KiB < 2^32, so d << 10 < 2^42, times 1000 < 2^52 */
	r = (d << 10) * 1000 / dt_ms;
	return after >= before ? (__s64)r : -(__s64)r;
}

/* Composition over the window [first, done): each member's growth is the
 * difference between the means of the window's last and first quarters
 * (Wald's grouping estimate: robust to one noisy bucket, no fit per member). */
MW_DET_SUB void mw_eval_comp(struct mw_det_state *st, const struct mw_det_config *cfg, __u32 first, __u32 done)
{
	struct mw_det_scratch *sc = &st->scratch;
	__u64 width = (__u64)cfg->bucket_ms << st->long_shift;
	__u64 m[2][5], n0, n1, x0, x1, dt, gpos, fpos, share, min_g = cfg->comp_min_growth_kib;
	__u32 n, q, reasons = 0, score;
	__s64 g, da, ds, dw, df;

	st->comp_score = 0;
	st->comp_reasons = 0;
	if (done <= first + 1)
		return;
	n = done - first;
	q = n / 4 ? n / 4 : 1;
	__builtin_memset(&sc->comp, 0, sizeof(sc->comp));
	sc->first = first;
	sc->done = done;
	sc->q = q;
	for (__u32 i = 0; i < MW_DET_LONG_N; i++) {
		const struct mw_det_lbucket *b = &st->lb[MW_DET_MASK_L(i)];
		__u32 h;

		MW_DET_LOOP_BARRIER();
		if (i >= sc->done)
			break;
		if (i < sc->first || b->hmin == MW_DET_EMPTY)
			continue;
		/* a bucket can be in both quarters only when the window has one bucket per quarter */
		for (h = 0; h < 2; h++) {
			MW_DET_LOOP_BARRIER();
			if (h == 0 ? i >= sc->first + sc->q : i + sc->q < sc->done)
				continue;
			sc->comp.sum[h][0] += b->anon;
			sc->comp.sum[h][1] += b->file;
			sc->comp.sum[h][2] += b->shmem;
			sc->comp.sum[h][3] += b->swap;
			sc->comp.sum[h][4] += i;
			sc->comp.cnt[h]++;
		}
	}
	n0 = sc->comp.cnt[0];
	n1 = sc->comp.cnt[1];
	if (!n0 || !n1)
		return;
	for (__u32 h = 0; h < 2; h++)
		for (__u32 c = 0; c < 4; c++)
			m[h][c] = sc->comp.sum[h][c] / (h ? n1 : n0);
	/* quarter centres in units of 1/(n0*n1) bucket, to stay in integers */
	x0 = sc->comp.sum[0][4] * n1;
	x1 = sc->comp.sum[1][4] * n0;
	if (x1 <= x0)
		return;
	dt = (x1 - x0) * width / (n0 * n1);
	st->v.anon_rate = mw_rate(m[0][0], m[1][0], dt);
	st->v.file_rate = mw_rate(m[0][1], m[1][1], dt);
	st->v.shmem_rate = mw_rate(m[0][2], m[1][2], dt);
	st->v.swap_rate = mw_rate(m[0][3], m[1][3], dt);
	/* growth in KiB, signed: every operand < 2^32 */
	da = (__s64)m[1][0] - (__s64)m[0][0];
	df = (__s64)m[1][1] - (__s64)m[0][1];
	ds = (__s64)m[1][2] - (__s64)m[0][2];
	dw = (__s64)m[1][3] - (__s64)m[0][3];
	g = da + ds + dw;
	gpos = g > 0 ? (__u64)g : 0;
	fpos = df > 0 ? (__u64)df : 0;
	if (da * 2 >= (__s64)min_g && da * 4 >= g)
		reasons |= MW_R_ANON_GROWTH;
	if (ds * 2 >= (__s64)min_g && ds * 4 >= g)
		reasons |= MW_R_SHMEM_GROWTH;
	if (dw * 2 >= (__s64)min_g && g * 2 >= (__s64)min_g)
		reasons |= MW_R_SWAP_GROWTH;
	if (fpos >= min_g)
		reasons |= MW_R_FILE_GROWTH;
	if (fpos >= min_g && gpos * 2 < min_g)
		reasons |= MW_R_CACHE_ONLY;
	/* anon went to swap: both moved, held memory did not */
	if (-da * 2 >= (__s64)min_g && dw * 2 >= (__s64)min_g && (g < 0 ? -g : g) * 4 < dw)
		reasons |= MW_R_SWAP_SHUFFLE;
	share = gpos + fpos ? gpos * 1000 / (gpos + fpos) : 0;
	score = mw_min32(mw_ramp(gpos, min_g), mw_ramp_permille((__u32)share, cfg->comp_min_share));
	if (reasons & (MW_R_CACHE_ONLY | MW_R_SWAP_SHUFFLE))
		score = 0;
	st->comp_score = (__u16)score;
	st->comp_reasons = reasons;
}

/* Extremes of the short buckets that the fast window and its floor touch. */
MW_DET_SUB void mw_short_range_point(struct mw_det_state *st, __u32 i)
{
	struct mw_det_scratch *sc = &st->scratch;
	const struct mw_det_sbucket *b = &st->sb[MW_DET_MASK_S(i)];

	if (i >= sc->done || i + 1 < sc->first || b->hmin == MW_DET_EMPTY)
		return;
	if (b->hmin < sc->lo)
		sc->lo = b->hmin;
	if (b->hlast > sc->hi)
		sc->hi = b->hlast;
}

/* One short bucket of the fast window: level (last value) and floor (minimum
 * of it and the bucket before) into the fits, and the minima at the window's
 * start, middle and end. */
MW_DET_SUB void mw_short_point(struct mw_det_state *st, __u32 i)
{
	struct mw_det_scratch *sc = &st->scratch;
	const struct mw_det_sbucket *b = &st->sb[MW_DET_MASK_S(i)];
	__u32 fl, x, lo = sc->lo, shift = sc->shift & 31;

	if (i >= sc->done || i < sc->first || b->hmin == MW_DET_EMPTY)
		return;
	x = i - sc->first;
	fl = b->hmin;
	if (i > 0 && st->sb[MW_DET_MASK_S(i - 1)].hmin < fl)
		fl = st->sb[MW_DET_MASK_S(i - 1)].hmin;
	if (fl == MW_DET_EMPTY)
		fl = b->hmin;
	mw_fit_add(&sc->fit.level, x, (b->hlast - lo) >> shift);
	mw_fit_add(&sc->fit.floor, x, (fl - lo) >> shift);
	/* the bucket minima: on a rising series the value at each bucket's start,
	 * steadier than one last sample */
	if (sc->fit.level.n == 1)
		sc->l_first = b->hmin;
	if (!sc->have_mid && x >= sc->mid) {
		sc->l_mid = b->hmin;
		sc->have_mid = 1;
	}
	sc->l_last = b->hmin;
	sc->level_last = b->hlast;
}

/* The fast path over the last fast_span_ms of completed short buckets: the
 * level rises at fast_rate or more, on a straight line, not slowing down, and
 * at least half of the rise lies above every earlier peak (a GC cycle that
 * climbs back to where it was before is not a new fast leak). */
MW_DET_SUB void mw_eval_short(struct mw_det_state *st, const struct mw_det_config *cfg, __u32 done)
{
	struct mw_det_scratch *sc = &st->scratch;
	__u32 span = cfg->bucket_ms ? cfg->fast_span_ms / cfg->bucket_ms : 0;
	__u32 lr2 = 0, fr2 = 0, score, mid, l_first, l_mid, l_last;
	__u64 rate = (__u64)cfg->fast_rate_kib << 10, g1, g2;
	__s64 lslope = 0, fslope = 0;

	st->fast_score = 0;
	if (span < 3)
		span = 3;
	if (span > MW_DET_SHORT_N - 1)
		span = MW_DET_SHORT_N - 1;
	/* every point's floor needs the bucket before it */
	if (done < span + 1)
		return;
	mid = span / 2;
	sc->first = done - span;
	sc->done = done;
	sc->mid = mid;
	sc->lo = MW_DET_EMPTY;
	sc->hi = 0;
	for (__u32 i = 0; i < MW_DET_SHORT_N; i++)
		mw_short_range_point(st, i);
	if (sc->lo == MW_DET_EMPTY || sc->hi < sc->lo)
		return;
	sc->shift = mw_scale_shift(sc->hi - sc->lo);
	__builtin_memset(&sc->fit, 0, sizeof(sc->fit));
	sc->have_mid = 0;
	sc->l_first = 0;
	sc->l_mid = 0;
	sc->l_last = 0;
	sc->level_last = 0;
	for (__u32 i = 0; i < MW_DET_SHORT_N; i++)
		mw_short_point(st, i);
	if (sc->fit.level.n + 1 < span || !sc->have_mid)
		return;
	l_first = sc->l_first;
	l_mid = sc->l_mid;
	l_last = sc->l_last;
	mw_fit_solve(&sc->fit.level, sc->shift, cfg->bucket_ms, &lslope, &lr2);
	mw_fit_solve(&sc->fit.floor, sc->shift, cfg->bucket_ms, &fslope, &fr2);
	st->v.fast_slope = fslope;
	score = mw_min32(mw_ramp_signed(lslope, rate), mw_ramp_signed(fslope, rate));
	score = mw_min32(score, mw_ramp_permille(lr2, cfg->fast_min_r2));
	/* not slowing down: the second half's rate is at least 80% of the first's
	 * (a warm-up approaching its plateau fails this; a leak does not) */
	g1 = l_mid > l_first ? l_mid - l_first : 0;
	g2 = l_last > l_mid ? l_last - l_mid : 0;
	if (!g2 || g2 * mid * 10 < g1 * (span - 1 - mid) * 8)
		score = mw_min32(score, 250);
	l_last = sc->level_last;
	if (l_last <= st->prior_peak || (l_last - st->prior_peak) * 2 < (l_last > l_first ? l_last - l_first : 0))
		score = mw_min32(score, 250);
	st->fast_score = (__u16)score;
}

/* How long without a new high ends a run: the longest of
 *  - three times what the run's largest jump (at least the tolerance) takes
 *    at the floor's fitted slope: a leak under a sawtooth makes a new high
 *    only every few cycles, a staircase one per step, a step's worth apart;
 *  - twice the longest gap between the run's highs so far (a staircase keeps
 *    its run between steps);
 *  - before a second high, twice what the tolerance takes at the least slope
 *    that counts;
 *  - rise_stall_ms.
 * The first two count only while the slope, or the run's own average rate,
 * is one that matters (trend_min_rate): noise that now and then tops the last
 * high by the tolerance must not keep a run alive. Never more than `cap`
 * (half the long window) unless rise_stall_ms is. */
MW_DET_INLINE __u64 mw_stall_ms(const struct mw_det_config *cfg, __u32 count, __u64 max_gap, __u64 slope,
				__u64 run_rate, __u64 tol_kib, __u64 cap)
{
	__u64 tol = tol_kib << 10, stall = 0; /* < 2^42 bytes, times 1000 < 2^52 */

	if (run_rate >= cfg->trend_min_rate)
		stall = 2 * max_gap;
	if (slope >= cfg->trend_min_rate && slope)
		stall = mw_max64(stall, 3 * (tol * 1000 / slope));
	if (count < 2 && cfg->trend_min_rate)
		stall = mw_max64(stall, 2 * (tol * 1000 / cfg->trend_min_rate));
	stall = mw_min64(stall, cap);
	return mw_max64(stall, cfg->rise_stall_ms);
}

/* Average rate of a run, bytes/s, from KiB gained over ms. */
MW_DET_INLINE __u64 mw_run_rate(__u64 gain_kib, __u64 dur_ms)
{
	return dur_ms ? (gain_kib << 10) * 1000 / dur_ms : 0; /* gain < 2^42: < 2^62 */
}

MW_DET_INLINE __u64 mw_stall_cap(const struct mw_det_state *st, const struct mw_det_config *cfg)
{
	return ((__u64)cfg->bucket_ms << (st->long_shift & 31)) * MW_DET_LONG_N / 2;
}

/* The per-sample steps below are subprograms that talk through the state, for
 * the reason given at mw_trend_scale. */

/* The floor now: the long ring's rolling minimum over the open bucket and
 * the k - 1 before it, the quantity the trend fits (one bucket later), wide
 * enough to span a GC cycle once the target is a few minutes old. The first
 * sample sets the references for new highs. */
MW_DET_SUB void mw_step_floor(struct mw_det_state *st, const struct mw_det_config *cfg, const struct mw_det_sample *s)
{
	struct mw_det_scratch *sc = &st->scratch;
	__u32 fl = st->long_len ? mw_long_floor(st, (st->long_len - 1) & (MW_DET_LONG_N - 1), mw_floor_k(cfg))
				: MW_DET_EMPTY;

	if (fl == MW_DET_EMPTY)
		fl = mw_kib(s->anon + s->shmem + s->swap);
	sc->fl = fl;
	st->v.floor = (__u64)fl << 10;
	if (st->samples == 1) {
		st->high_ref = fl;
		st->vsz_ref = s->vsz >> 10;
	}
}

/* Rising floor: a run of new highs beyond the window's peak and the run's last
 * high, each by the tolerance; its duration, count and average rate score it. */
MW_DET_SUB void mw_step_rise(struct mw_det_state *st, const struct mw_det_config *cfg, __u64 now)
{
	struct mw_det_scratch *sc = &st->scratch;
	__u32 fl = sc->fl;
	__u64 tol = mw_max64(cfg->rise_tol_kib, (__u64)fl * cfg->rise_tol_permille / 1000);
	__u64 stall = mw_stall_ms(cfg, st->run_count, st->run_max_gap_ms,
				  st->v.floor_slope > 0 ? (__u64)st->v.floor_slope : 0,
				  st->run_high > st->run_base ? mw_run_rate(st->run_high - st->run_base,
									    st->run_last_ms - st->run_start_ms) : 0,
				  mw_max64(tol, st->run_count ? st->run_max_jump : 0), mw_stall_cap(st, cfg));
	__u64 rate = 0, dur, rel_thr;
	__u32 rise;

	if (!st->run_count || now - st->run_last_ms > stall)
		st->run_count = 0;
	/* between runs the reference comes down to the window's highest floor
	 * (never up: a slow rise must add up to the tolerance), so a peak that slid
	 * out of the long window stops holding back the next run */
	if (!st->run_count && sc->evaluated && st->win_floor_peak < st->high_ref)
		st->high_ref = st->win_floor_peak;
	if (fl >= st->high_ref + tol) {
		if (!st->run_count) {
			st->run_start_ms = now;
			st->run_base = st->high_ref;
			st->run_max_gap_ms = 0;
			st->run_max_jump = 0;
		} else if (now - st->run_last_ms > st->run_max_gap_ms) {
			st->run_max_gap_ms = now - st->run_last_ms;
		}
		if (fl - st->high_ref > st->run_max_jump)
			st->run_max_jump = fl - st->high_ref;
		if (st->run_count < 0xffff)
			st->run_count++;
		st->run_last_ms = now;
		st->run_high = fl;
		st->high_ref = fl;
	}
	sc->active = st->run_count ? 1 : 0;
	sc->rise = 0;
	sc->rate = 0;
	st->v.rise_ms = 0;
	st->v.rise_highs = 0;
	if (!st->run_count)
		return;
	dur = st->run_last_ms - st->run_start_ms;
	if (st->run_high > st->run_base)
		rate = mw_run_rate(st->run_high - st->run_base, dur);
	rel_thr = ((__u64)fl << 10) * mw_min64(cfg->trend_min_rel, 1u << 21) / 3600000;
	rise = mw_min32(mw_ramp(dur, cfg->rise_min_ms), mw_ramp(st->run_count, cfg->rise_min_highs));
	rise = mw_min32(rise, mw_min32(mw_ramp(rate, cfg->trend_min_rate), mw_ramp(rate, rel_thr)));
	sc->rise = rise;
	sc->rate = rate;
	st->v.rise_ms = dur;
	st->v.rise_highs = (__u16)st->run_count;
}

/* VSZ: its own run of new highs, compared with resident growth since the run
 * began. */
MW_DET_SUB void mw_step_vsz(struct mw_det_state *st, const struct mw_det_config *cfg, const struct mw_det_sample *s,
			    __u64 now)
{
	struct mw_det_scratch *sc = &st->scratch;
	__u64 vsz = s->vsz >> 10, vgrowth, hgrowth, rss;
	__u64 stall = mw_stall_ms(cfg, st->vsz_count, st->vsz_max_gap_ms, 0,
				  mw_run_rate(st->vsz_ref - st->vsz_base, st->vsz_last_ms - st->vsz_start_ms),
				  cfg->rise_tol_kib, mw_stall_cap(st, cfg));
	__u32 score;

	if (!st->vsz_count || now - st->vsz_last_ms > stall)
		st->vsz_count = 0;
	if (vsz >= st->vsz_ref + cfg->rise_tol_kib) {
		if (!st->vsz_count) {
			st->vsz_max_gap_ms = 0;
			st->vsz_start_ms = now;
			st->vsz_base = st->vsz_ref;
			st->vsz_base_rss = mw_kib(s->anon + s->file + s->shmem);
		} else if (now - st->vsz_last_ms > st->vsz_max_gap_ms)
			st->vsz_max_gap_ms = now - st->vsz_last_ms;
		if (st->vsz_count < 0xffff)
			st->vsz_count++;
		st->vsz_last_ms = now;
		st->vsz_ref = vsz;
	}
	sc->vszs = 0;
	st->v.vsz_growth = 0;
	if (!st->vsz_count)
		return;
	vgrowth = st->vsz_ref - st->vsz_base;
	/* against resident growth, file pages included: a file mapped and read
	 * grows VSZ and RSS together, fragmentation grows VSZ alone */
	rss = mw_kib(s->anon + s->file + s->shmem);
	hgrowth = rss > st->vsz_base_rss ? rss - st->vsz_base_rss : 0;
	score = mw_min32(mw_ramp(st->vsz_last_ms - st->vsz_start_ms, cfg->vsz_min_span_ms),
			 mw_ramp(vgrowth, cfg->vsz_min_growth_kib));
	score = mw_min32(score, mw_ramp(vgrowth, mw_max64(hgrowth, cfg->rise_tol_kib) * cfg->vsz_ratio));
	sc->vszs = score;
	st->v.vsz_growth = vgrowth << 10;
}

/* Scores and hysteresis: which factors and detectors are on. The trend stands
 * only while its floor keeps making new highs (a plateau after growth ends
 * the run of highs) and has not fallen back below the last one (a GC cycle
 * dropping to its old floor does that at once). */
MW_DET_SUB void mw_step_factors(struct mw_det_state *st, const struct mw_det_config *cfg)
{
	struct mw_det_scratch *sc = &st->scratch;
	__u32 on = st->v.factors, nowon = 0, trend = st->trend_score;
	__u64 tol = mw_max64(cfg->rise_tol_kib, (__u64)st->high_ref * cfg->rise_tol_permille / 1000);

	if (trend > 250 && (!sc->active || (__u64)sc->fl + 2 * tol < st->high_ref))
		trend = 250;
	if (mw_factor_on(on & MW_F_TREND, trend, cfg))
		nowon |= MW_F_TREND;
	if (mw_factor_on(on & MW_F_COMPOSITION, st->comp_score, cfg))
		nowon |= MW_F_COMPOSITION;
	if (mw_factor_on(on & MW_F_FAST, st->fast_score, cfg))
		nowon |= MW_F_FAST;
	if (mw_factor_on(on & MW_F_RISE, sc->rise, cfg))
		nowon |= MW_F_RISE;
	if (mw_factor_on(on & MW_F_VSZ, sc->vszs, cfg))
		nowon |= MW_F_VSZ;
	st->v.factors = nowon;
	st->v.score[MW_DET_TREND] = (__u16)trend;
	st->v.score[MW_DET_COMPOSITION] = st->comp_score;
	st->v.score[MW_DET_MULTI] = (__u16)mw_max32(st->fast_score, mw_max32(sc->rise, sc->vszs));
}

MW_DET_INLINE __u32 mw_band(__u32 score)
{
	return score >= 750 ? 3 : score >= 500 ? 2 : score >= 250 ? 1 : 0;
}

/* The verdict from the factors: fired set, reasons, level, growth, and the
 * signature that says whether it changed. */
MW_DET_SUB void mw_step_verdict(struct mw_det_state *st, const struct mw_det_config *cfg, const struct mw_det_sample *s)
{
	struct mw_det_scratch *sc = &st->scratch;
	__u32 nowon = st->v.factors, reasons = st->trend_reasons | st->comp_reasons, top, level, len = st->long_len;
	__u64 rss = s->anon + s->file + s->shmem, held = s->anon + s->shmem + s->swap;

	if (nowon & MW_F_FAST) {
		reasons |= MW_R_FAST_GROWTH;
		/* the long window may be minutes wide: name what grew since its last bucket */
		if (len >= 2) {
			const struct mw_det_lbucket *b = &st->lb[MW_DET_MASK_L(len - 2)];

			if (mw_kib(s->anon) >= b->anon + cfg->rise_tol_kib)
				reasons |= MW_R_ANON_GROWTH;
			if (mw_kib(s->shmem) >= b->shmem + cfg->rise_tol_kib)
				reasons |= MW_R_SHMEM_GROWTH;
		}
	}
	if (nowon & MW_F_RISE)
		reasons |= MW_R_RISING_FLOOR;
	if (nowon & MW_F_VSZ)
		reasons |= MW_R_VSZ_DIVERGENCE;
	if (rss && s->anon / 1000 * 1000 >= rss / 1000 * cfg->anon_share)
		reasons |= MW_R_ANON_SHARE;
	if (s->swap && s->swap >= held / 1000 * cfg->swap_share)
		reasons |= MW_R_SWAP_SHARE;
	st->v.reasons = reasons;
	st->v.held = held;
	st->v.fired = (nowon & MW_F_TREND ? 1u << MW_DET_TREND : 0) |
		      (nowon & MW_F_COMPOSITION ? 1u << MW_DET_COMPOSITION : 0) |
		      (nowon & (MW_F_FAST | MW_F_RISE | MW_F_VSZ) ? 1u << MW_DET_MULTI : 0);
	/* level: band of the strongest score; it rises at once and falls only when
	 * the score is 50 below the band's edge */
	top = mw_max32(st->v.score[MW_DET_TREND], mw_max32(st->v.score[MW_DET_COMPOSITION], st->v.score[MW_DET_MULTI]));
	level = mw_max32(mw_band(top), mw_min32(st->v.level, mw_band(top + 50)));
	st->v.level = (__u8)level;
	/* the forecast's slope: the evidence that fired, fastest first */
	if (nowon & MW_F_FAST)
		st->v.growth = st->v.fast_slope;
	else if ((nowon & MW_F_TREND) || !(nowon & MW_F_RISE))
		st->v.growth = st->v.floor_slope;
	else
		st->v.growth = (__s64)sc->rate;
	sc->sig = st->v.fired | (level << 4) |
		  ((reasons & (MW_R_CACHE_ONLY | MW_R_SWAP_SHUFFLE | MW_R_FAST_GROWTH | MW_R_RISING_FLOOR |
			       MW_R_VSZ_DIVERGENCE)) << 8);
}

/* ------------------------------------------------------------------------ */
/* The API. */

MW_DET_API void mw_det_config_default(struct mw_det_config *cfg)
{
	struct mw_det_config d = MW_DET_CONFIG_DEFAULT;

	*cfg = d;
}

/* 0, or the mw_det_config_error of the first field out of range. The kernel
 * never divides by a zero it was given (BPF division by 0 yields 0), but
 * userspace must check before use. */
MW_DET_API int mw_det_config_check(const struct mw_det_config *cfg)
{
	__u32 fast;

	if (!cfg->bucket_ms)
		return MW_DET_CFG_BUCKET_MS;
	if (cfg->max_bucket_ms < cfg->bucket_ms)
		return MW_DET_CFG_MAX_BUCKET_MS;
	if (cfg->floor_buckets < 1 || cfg->floor_buckets > MW_DET_FLOOR_MAX)
		return MW_DET_CFG_FLOOR_BUCKETS;
	if (cfg->fire_score > MW_DET_SCORE_MAX || cfg->stay_score > cfg->fire_score)
		return MW_DET_CFG_SCORES;
	if (cfg->trend_min_r2 > 1000 || cfg->fast_min_r2 > 1000 || cfg->comp_min_share > 1000 ||
	    cfg->anon_share > 1000 || cfg->swap_share > 1000 || cfg->rise_tol_permille > 1000)
		return MW_DET_CFG_PERMILLE;
	fast = cfg->fast_span_ms / cfg->bucket_ms;
	if (fast < 3 || fast > MW_DET_SHORT_N - 1)
		return MW_DET_CFG_FAST_SPAN;
	if (!cfg->step_bytes || !cfg->heartbeat_ms || !cfg->trend_min_rate || !cfg->trend_min_points ||
	    !cfg->rise_tol_kib || !cfg->vsz_ratio)
		return MW_DET_CFG_ZERO;
	return MW_DET_CFG_OK;
}

/* Forget everything (a new process, or exec: a new program with a new baseline). */
MW_DET_API void mw_det_reset(struct mw_det_state *st)
{
#ifdef MW_BPF_SIDE
	/* word by word, through volatile so clang does not turn the loop back into
	 * a memset call, which BPF lacks (1 KiB is beyond what it expands inline) */
	volatile __u64 *w = (volatile __u64 *)st;

	for (__u32 i = 0; i < sizeof(*st) / sizeof(__u64); i++)
		w[i] = 0;
#else
	__builtin_memset(st, 0, sizeof(*st));
#endif
}

/* Puts the sample into the open buckets of both rings. */
MW_DET_SUB void mw_det_record(struct mw_det_state *st, const struct mw_det_sample *s)
{
	__u32 h = mw_kib(s->anon + s->shmem + s->swap);
	struct mw_det_lbucket *b = &st->lb[MW_DET_MASK_L(st->long_len ? st->long_len - 1 : 0)];
	struct mw_det_sbucket *sb = &st->sb[MW_DET_MASK_S(st->short_len ? st->short_len - 1 : 0)];

	if (h < b->hmin)
		b->hmin = h;
	if (h > b->hmax)
		b->hmax = h;
	b->anon = mw_kib(s->anon);
	b->file = mw_kib(s->file);
	b->shmem = mw_kib(s->shmem);
	b->swap = mw_kib(s->swap);
	if (h < sb->hmin)
		sb->hmin = h;
	sb->hlast = h;
}

/* Feeds one coalesced sample. Fills *out with the current verdict and returns
 * 1 when it changed (the set of fired detectors, its level, or a reason that
 * decides a verdict: fast growth, rising floor, VSZ divergence, cache only,
 * swap shuffle), 0 otherwise: the kernel sends userspace a record only then. */
MW_DET_API int mw_det_update(struct mw_det_state *st, const struct mw_det_config *cfg, const struct mw_det_sample *s,
			     struct mw_det_verdict *out)
{
	__u64 now;

	if (!st->samples)
		st->t0_ms = s->t_ms;
	/* relative time only; a clock that steps back (samples from two CPUs) stands still */
	now = s->t_ms > st->t0_ms ? s->t_ms - st->t0_ms : 0;
	if (now < st->last_ms)
		now = st->last_ms;
	st->last_ms = now;
	st->v.age_ms = now;
	st->samples++;

	/* completed buckets are evaluated before the sample opens the next one */
	mw_long_advance(st, cfg, now);
	st->scratch.evaluated = st->scratch.done ? 1 : 0;
	if (st->scratch.done) {
		mw_eval_long(st, cfg, st->scratch.done);
		mw_eval_comp(st, cfg, st->scratch.best_first, st->scratch.done);
	}
	mw_short_advance(st, cfg, now);
	if (st->scratch.done)
		mw_eval_short(st, cfg, st->scratch.done);
	mw_det_record(st, s);

	mw_step_floor(st, cfg, s);
	mw_step_rise(st, cfg, now);
	mw_step_vsz(st, cfg, s, now);
	mw_step_factors(st, cfg);
	mw_step_verdict(st, cfg, s);
	*out = st->v;
	if (st->scratch.sig == st->signature)
		return 0;
	st->signature = st->scratch.sig;
	return 1;
}

/* ------------------------------------------------------------------------ */
/* The cgroup aggregation rule, shared so kernel and replay agree on when a
 * cgroup's detectors run. The kernel may keep its sums with atomics and call
 * only mw_agg_due and mw_agg_sample. */

/* Replaces one member's contribution: `from` is what it contributed so far
 * (NULL: it joins), `to` its new counters (NULL: it leaves). */
/* In the kernel, processes of one cgroup sample on several CPUs at once: the
 * sums are moved with atomic adds, or a lost update would skew the aggregate
 * for good. Replay is sequential. Relaxed, with the result unused: clang then
 * emits the plain atomic add (BPF_XADD) that every kernel since 4.x verifies;
 * __sync_fetch_and_add is sequentially consistent, and clang ≥ 20 emits it as
 * atomic_fetch_add, which kernels before 5.12 reject ("BPF_STX uses reserved
 * fields": bullseye's 5.10, tests/vm/test_kernels.py). */
#ifdef MW_BPF_SIDE
#define MW_AGG_ADD(field, v) ((void)__atomic_fetch_add(&(field), (v), __ATOMIC_RELAXED))
#else
#define MW_AGG_ADD(field, v) ((field) += (v))
#endif

/* Each add is of a value read from a sample, never a constant: clang folds an
 * atomic add of 0 into an atomic or, which kernels before 5.12 cannot verify. */
MW_DET_API void mw_agg_move(struct mw_agg *agg, const struct mw_det_sample *from, const struct mw_det_sample *to)
{
	if (from && to) {
		MW_AGG_ADD(agg->anon, (__s64)to->anon - (__s64)from->anon);
		MW_AGG_ADD(agg->file, (__s64)to->file - (__s64)from->file);
		MW_AGG_ADD(agg->shmem, (__s64)to->shmem - (__s64)from->shmem);
		MW_AGG_ADD(agg->swap, (__s64)to->swap - (__s64)from->swap);
	} else if (to) {
		MW_AGG_ADD(agg->anon, (__s64)to->anon);
		MW_AGG_ADD(agg->file, (__s64)to->file);
		MW_AGG_ADD(agg->shmem, (__s64)to->shmem);
		MW_AGG_ADD(agg->swap, (__s64)to->swap);
		MW_AGG_ADD(agg->members, 1);
	} else if (from) {
		MW_AGG_ADD(agg->anon, -(__s64)from->anon);
		MW_AGG_ADD(agg->file, -(__s64)from->file);
		MW_AGG_ADD(agg->shmem, -(__s64)from->shmem);
		MW_AGG_ADD(agg->swap, -(__s64)from->swap);
		if (agg->members)
			MW_AGG_ADD(agg->members, (__u32)-1);
	}
}

MW_DET_INLINE __u64 mw_pos(__s64 v)
{
	return v > 0 ? (__u64)v : 0;
}

/* The cgroup rule: 1 when the aggregate's detectors should run at t_ms (its RSS
 * moved by step_bytes since they last ran, or heartbeat_ms passed, or they
 * never ran), and then it records this run; 0 otherwise. */
MW_DET_API int mw_agg_due(struct mw_agg *agg, const struct mw_det_config *cfg, __u64 t_ms)
{
	__u64 rss = mw_pos(agg->anon) + mw_pos(agg->file) + mw_pos(agg->shmem);
	__u64 moved = rss > agg->last_rss ? rss - agg->last_rss : agg->last_rss - rss;
	__u64 elapsed = t_ms > agg->last_ms ? t_ms - agg->last_ms : 0;

	if (agg->sampled && moved < cfg->step_bytes && elapsed < cfg->heartbeat_ms)
		return 0;
	agg->sampled = 1;
	agg->last_rss = rss;
	agg->last_ms = t_ms;
	return 1;
}

/* The aggregate as a detector sample (a transiently negative sum reads as 0).
 * VSZ is 0: a sum of address spaces jumps with every process that joins or
 * leaves, so VSZ divergence is a per-process factor only. */
MW_DET_API void mw_agg_sample(const struct mw_agg *agg, __u64 t_ms, struct mw_det_sample *out)
{
	out->t_ms = t_ms;
	out->anon = mw_pos(agg->anon);
	out->file = mw_pos(agg->file);
	out->shmem = mw_pos(agg->shmem);
	out->swap = mw_pos(agg->swap);
	out->vsz = 0;
}

#endif /* MW_DETECTORS_IMPL_H */
