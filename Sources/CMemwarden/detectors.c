/* The userspace build of the kernel's detectors: ebpf/detectors_impl.h, compiled
 * here with external linkage so Swift calls plain functions. */
#include "../../ebpf/detectors_impl.h"
