// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The baseline for `memwarden bench kernel`: an empty program on the same
 * tracepoint, so the hot path's cost is read as a ratio to what any program
 * attached there costs on the same machine in the same run.
 */
#define MW_BPF_SIDE
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tp/kmem/rss_stat")
int mw_empty(void *ctx)
{
	return 0;
}
