#ifndef MW_DETECTORS_USER_H
#define MW_DETECTORS_USER_H

/* The detector types shared with the BPF program, and the userspace build of
 * its functions (Sources/CMemwarden/detectors.c compiles ebpf/detectors.h):
 * replay and the tests call exactly the code the kernel runs. */
#include "../../../ebpf/detectors.h"

void mw_det_config_default(struct mw_det_config *cfg);
int mw_det_config_check(const struct mw_det_config *cfg);
void mw_det_reset(struct mw_det_state *st);
int mw_det_update(struct mw_det_state *st, const struct mw_det_config *cfg, const struct mw_det_sample *s,
		  struct mw_det_verdict *out);
void mw_agg_move(struct mw_agg *agg, const struct mw_det_sample *from, const struct mw_det_sample *to);
int mw_agg_due(struct mw_agg *agg, const struct mw_det_config *cfg, __u64 t_ms);
void mw_agg_sample(const struct mw_agg *agg, __u64 t_ms, struct mw_det_sample *out);

#endif
