/* The userspace build of the kernel's detectors: ebpf/detectors.h, compiled
 * here with external linkage so Swift calls plain functions. */
#include "mw_detectors.h"

#define MW_DET_IMPLEMENTATION
#include "detectors.h"
