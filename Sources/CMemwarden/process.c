/* pipe2() and posix_spawn_file_actions_addclosefrom_np() are GNU extensions
 * that Swift's Glibc module does not show: wrapped here with _GNU_SOURCE. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <spawn.h>
#include <unistd.h>

#include "CMemwarden.h"

int mw_pipe_cloexec(int fds[2])
{
	return pipe2(fds, O_CLOEXEC);
}

int mw_spawn_close_from(posix_spawn_file_actions_t *actions, int from)
{
	return posix_spawn_file_actions_addclosefrom_np(actions, from);
}
