/* private: the MPI component's waits, on shmp's own Lock and Condition.
 *
 * They live in the default segment like any shmp object made without one;
 * only this process uses them. Using shmp's primitives rather than
 * pthread's gives every wait of the cluster Pool the core's interrupt rule
 * (shmp_set_interruptible) without reading its setting: a condition wait
 * or a semaphore acquire returns -EINTR exactly when a core wait would.
 */
#include "mpi_internal.h"

#include <math.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

int shmp__mpi_sync_init(struct shmp__mpi_sync *s)
{
	s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->efd < 0)
		return -errno;
	s->mu = shmp_lock_create(NULL);
	if (!s->mu) {
		int e = errno;
		close(s->efd);
		s->efd = -1;
		return -e;
	}
	struct shmp_cond_opts co = SHMP_OPTS(shmp_cond_opts, .lock = s->mu, .max_waiters = 1024);
	s->cv = shmp_cond_create(&co);
	s->dcv = s->cv ? shmp_cond_create(&co) : NULL;
	if (!s->dcv) {
		int e = errno;
		shmp_cond_destroy(s->cv);
		shmp_lock_destroy(s->mu);
		close(s->efd);
		s->cv = NULL;
		s->mu = NULL;
		s->efd = -1;
		return -e;
	}
	return 0;
}

void shmp__mpi_sync_fini(struct shmp__mpi_sync *s)
{
	shmp_cond_destroy(s->dcv);
	shmp_cond_destroy(s->cv);
	shmp_lock_destroy(s->mu);
	if (s->efd >= 0)
		close(s->efd);
	s->efd = -1;
	s->dcv = NULL;
	s->cv = NULL;
	s->mu = NULL;
}

void shmp__mpi_lock(struct shmp__mpi_sync *s)
{
	/* Only this process's threads take it, and none dies holding it: the
	 * owner-died path cannot happen; if it did, the state is ours. */
	int r = shmp_lock_acquire(s->mu, SHMP_FOREVER);
	if (r == -EOWNERDEAD)
		shmp_lock_consistent(s->mu);
}

void shmp__mpi_unlock(struct shmp__mpi_sync *s)
{
	shmp_lock_release(s->mu);
}

void shmp__mpi_notify(struct shmp__mpi_sync *s)
{
	shmp_cond_notify_all(s->cv);
}

void shmp__mpi_enotify(struct shmp__mpi_sync *s)
{
	uint64_t one = 1;
	ssize_t w = write(s->efd, &one, sizeof one);
	(void)w; /* EAGAIN: the counter is already non-zero, which is all we need */
}

int shmp__mpi_esleep(struct shmp__mpi_sync *s, double seconds, const sigset_t *mask)
{
	struct pollfd pf = { .fd = s->efd, .events = POLLIN };
	if (seconds < 0)
		seconds = 0;
	struct timespec t = { (time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9) };
	shmp__mpi_unlock(s);
	int r = ppoll(&pf, 1, &t, mask);
	int e = errno;
	if (r > 0) {
		uint64_t v;
		ssize_t n = read(s->efd, &v, sizeof v);
		(void)n;
	}
	shmp__mpi_lock(s);
	return r < 0 && e == EINTR ? -EINTR : 0;
}

void shmp__mpi_dnotify(struct shmp__mpi_sync *s)
{
	shmp_cond_notify_all(s->dcv);
}

void shmp__mpi_dwait(struct shmp__mpi_sync *s, double seconds)
{
	if (shmp_cond_wait(s->dcv, seconds < 0 ? 0 : seconds) == -EOWNERDEAD)
		shmp_lock_consistent(s->mu);
}

int shmp__mpi_wait(struct shmp__mpi_sync *s, double seconds)
{
	int r = shmp_cond_wait(s->cv, seconds < 0 ? 0 : seconds);
	if (r == -EOWNERDEAD)
		shmp_lock_consistent(s->mu);
	return r == -EINTR ? -EINTR : 0;
}

static shmp_sem_t *sleeper;
static pthread_once_t sleeper_once = PTHREAD_ONCE_INIT;
static void sleeper_init(void)
{
	sleeper = shmp_sem_create(0, NULL); /* never released: a sleep */
}

int shmp__mpi_sleep(double seconds)
{
	pthread_once(&sleeper_once, sleeper_init);
	if (!sleeper) {
		struct timespec t = { (time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9) };
		nanosleep(&t, NULL);
		return 0;
	}
	int r = shmp_sem_acquire(sleeper, seconds);
	return r == -EINTR ? -EINTR : 0;
}

double shmp__mpi_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int shmp__mpi_deadline(double timeout, double *deadline)
{
	if (isnan(timeout))
		return -EINVAL;
	*deadline = timeout < 0 ? -1.0 : shmp__mpi_now() + timeout;
	return 0;
}

double shmp__mpi_left(double deadline)
{
	if (deadline < 0)
		return 1e9;
	double l = deadline - shmp__mpi_now();
	return l > 0 ? l : 0;
}

/* This process's pid, cached: getpid() is a system call, and the window
 * objects' atomics (one MPI_Fetch_and_op on shared memory, ~0.1 us) ask
 * on every call. A child made by fork() (glibc's, which runs the atfork
 * handlers, as the core's workers and zygotes are) forgets it, as the
 * core's own cache of its pid does (util.c). */
static _Atomic pid_t self_pid;
static pthread_once_t self_once = PTHREAD_ONCE_INIT;

static void self_forget(void)
{
	atomic_store_explicit(&self_pid, 0, memory_order_relaxed);
}

static void self_once_init(void)
{
	pthread_atfork(NULL, NULL, self_forget);
}

bool shmp__mpi_foreign(pid_t creator)
{
	pid_t me = atomic_load_explicit(&self_pid, memory_order_relaxed);
	if (!me) {
		pthread_once(&self_once, self_once_init);
		me = getpid();
		atomic_store_explicit(&self_pid, me, memory_order_relaxed);
	}
	return me != creator;
}

int shmp__mpi_wait_begin(pid_t creator, double timeout, double *deadline)
{
	if (shmp__mpi_foreign(creator))
		return -ECHILD;
	return shmp__mpi_deadline(timeout, deadline);
}
