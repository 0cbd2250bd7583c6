#include "CMemwarden.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <pthread.h>
#include <bpf/btf.h>

#define MW_LOG_CAP (64 * 1024)
static char mw_log[MW_LOG_CAP];
static size_t mw_log_len;
static pthread_mutex_t mw_log_lock = PTHREAD_MUTEX_INITIALIZER;

static int mw_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	char line[4096];
	int n;

	if (level == LIBBPF_DEBUG)
		return 0;
	n = vsnprintf(line, sizeof(line), fmt, args);
	if (n <= 0)
		return n;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	pthread_mutex_lock(&mw_log_lock);
	if (mw_log_len + (size_t)n >= MW_LOG_CAP) {
		/* keep the tail: the verifier's verdict is at the end */
		size_t keep = MW_LOG_CAP / 2;
		memmove(mw_log, mw_log + mw_log_len - keep, keep);
		mw_log_len = keep;
	}
	memcpy(mw_log + mw_log_len, line, (size_t)n);
	mw_log_len += (size_t)n;
	mw_log[mw_log_len] = '\0';
	pthread_mutex_unlock(&mw_log_lock);
	return n;
}

void mw_capture_libbpf_log(void)
{
	libbpf_set_print(mw_print);
}

const char *mw_libbpf_log(void)
{
	return mw_log;
}

void mw_clear_libbpf_log(void)
{
	pthread_mutex_lock(&mw_log_lock);
	mw_log_len = 0;
	mw_log[0] = '\0';
	pthread_mutex_unlock(&mw_log_lock);
}

int mw_set_rodata(struct bpf_object *obj, const char *name, const void *value, size_t size)
{
	struct bpf_map *map;

	bpf_object__for_each_map(map, obj) {
		const struct btf *btf = bpf_object__btf(obj);
		const struct btf_type *sec;
		const struct btf_var_secinfo *vs;
		const char *map_name = bpf_map__name(map);
		size_t data_size;
		void *data;
		int sec_id;

		if (!btf || !map_name || !strstr(map_name, ".rodata"))
			continue;
		data = (void *)bpf_map__initial_value(map, &data_size);
		sec_id = btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC);
		if (!data || sec_id < 0)
			continue;
		sec = btf__type_by_id(btf, sec_id);
		vs = (const struct btf_var_secinfo *)btf_var_secinfos(sec);
		for (unsigned short i = 0; i < btf_vlen(sec); i++, vs++) {
			const struct btf_type *var = btf__type_by_id(btf, vs->type);
			const char *var_name = btf__name_by_offset(btf, var->name_off);

			if (!var_name || strcmp(var_name, name) != 0)
				continue;
			if (vs->size != size || vs->offset + size > data_size)
				return -EINVAL;
			memcpy((char *)data + vs->offset, value, size);
			return 0;
		}
	}
	return -ENOENT;
}

int mw_enable_bpf_stats(void)
{
	return bpf_enable_stats(BPF_STATS_RUN_TIME);
}

int mw_prog_stats(int prog_fd, uint64_t *run_cnt, uint64_t *run_time_ns)
{
	struct bpf_prog_info info;
	__u32 len = sizeof(info);
	int err;

	memset(&info, 0, sizeof(info));
	err = bpf_obj_get_info_by_fd(prog_fd, &info, &len);
	if (err)
		return err;
	*run_cnt = info.run_cnt;
	*run_time_ns = info.run_time_ns;
	return 0;
}

long mw_count_map_keys(int map_fd, size_t key_size)
{
	unsigned char key[8], next[8];
	long n = 0;
	void *prev = NULL;

	if (key_size > sizeof(key))
		return -EINVAL;
	while (bpf_map_get_next_key(map_fd, prev, next) == 0) {
		memcpy(key, next, key_size);
		prev = key;
		n++;
	}
	return n;
}
