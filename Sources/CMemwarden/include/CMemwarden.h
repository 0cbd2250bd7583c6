#ifndef CMEMWARDEN_H
#define CMEMWARDEN_H

#include <stdint.h>
#include <stddef.h>
#include <spawn.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>

/* The structs and enums shared with the BPF program, and the detectors' functions
 * (ebpf/detectors.h declares them; Sources/CMemwarden/detectors.c builds them). */
#include "../../../ebpf/memwarden.h"

/* libbpf prints through a va_list callback that Swift cannot take: keep the
 * most recent output (the verifier log on a failed load) in a buffer instead. */
void mw_capture_libbpf_log(void);
/* The captured text (NUL-terminated, at most the last ~64 KiB); cleared by mw_clear_libbpf_log. */
const char *mw_libbpf_log(void);
void mw_clear_libbpf_log(void);

/* A pipe whose both ends are close-on-exec from the start: no child spawned by
 * another thread in between inherits them. 0, or -1 with errno. */
int mw_pipe_cloexec(int fds[2]);
/* The child closes every descriptor from `from` up before it execs. */
int mw_spawn_close_from(posix_spawn_file_actions_t *actions, int from);

/* Sets a `const volatile` global of the object's .rodata by name before load.
 * Returns 0, or -ENOENT when no such variable exists, -EINVAL on a size mismatch. */
int mw_set_rodata(struct bpf_object *obj, const char *name, const void *value, size_t size);

/* Enables the kernel's run-time statistics for BPF programs while the returned fd is open. */
int mw_enable_bpf_stats(void);

/* run_cnt and run_time_ns of a loaded program. */
int mw_prog_stats(int prog_fd, uint64_t *run_cnt, uint64_t *run_time_ns);

/* Number of keys in a hash map (u32 or u64 keys), by walking it. */
long mw_count_map_keys(int map_fd, size_t key_size);

#endif
