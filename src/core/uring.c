/* private: can this process use io_uring? The Pool's supervisor and the
 * pipeline's file stages ask before choosing io_uring or poll/pread. */
#include "internal.h"

#include <liburing.h>
#include <pthread.h>
#include <stdlib.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int available;

static void probe(void)
{
	const char *force = getenv("SHMP_NO_IO_URING");
	if (force && *force && *force != '0')
		return; /* the fallback is forced (tests run both paths) */
	struct io_uring ring;
	/* Fails with -EPERM under seccomp profiles or io_uring_disabled, -ENOSYS
	 * on kernels without it. */
	if (io_uring_queue_init(2, &ring, 0) == 0) {
		io_uring_queue_exit(&ring);
		available = 1;
	}
}

int shmp_io_uring_available(void)
{
	pthread_once(&once, probe);
	return available;
}
