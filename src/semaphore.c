/* private: counting and bounded semaphores on one futex word.
 * A waiter count lets release skip the wake system call when nobody sleeps. */
#include "internal.h"

#include <stdlib.h>

struct shmp__sem_sh {
	_Atomic uint32_t value;
	_Atomic uint32_t waiters;
	uint32_t max;   /* bounded: the initial value; else SHMP_SEM_VALUE_MAX */
	uint32_t magic;
};
#define SEM_MAGIC 0x53454d41u

struct shmp_sem {
	shmp_segment_t *seg;
	struct shmp__sem_sh *sh;
	_Atomic uint32_t *ref;
	pid_t pid;               /* the process that made this handle */
};
SHMP__HEAD_CHECK(struct shmp_sem);

static shmp_sem_t *sem_new(unsigned value, bool bounded, const struct shmp_sem_opts *opts)
{
	struct shmp_sem_opts o;
	if (value > SHMP_SEM_VALUE_MAX || SHMP__OPTS(o, opts) < 0) {
		errno = EINVAL;
		return NULL;
	}
	shmp_segment_t *seg = o.segment;
	void *sh;
	shmp_sem_t *s = shmp__object_new(&seg, sizeof *s, sizeof *s->sh, &sh);
	if (!s)
		return NULL;
	s->sh = sh;
	s->seg = seg;
	s->pid = getpid();
	s->sh->max = bounded ? value : SHMP_SEM_VALUE_MAX;
	s->sh->magic = SEM_MAGIC;
	atomic_store_explicit(&s->sh->value, value, memory_order_release);
	return s;
}

shmp_sem_t *shmp_sem_create(unsigned value, const struct shmp_sem_opts *opts)
{
	return sem_new(value, false, opts);
}

shmp_sem_t *shmp_bounded_sem_create(unsigned value, const struct shmp_sem_opts *opts)
{
	return sem_new(value, true, opts);
}

void shmp_sem_destroy(shmp_sem_t *s)
{
	if (!s)
		return;
	if (shmp__handle_release(s))
		shmp__free_ptr(s->seg, s->sh);
	free(s);
}

static struct shmp__sem_sh *sem_at(const shmp_segment_t *seg, uint64_t off)
{
	struct shmp__sem_sh *sh = shmp__sh_at(seg, off, sizeof *sh, __alignof__(*sh));
	if (!sh || sh->magic != SEM_MAGIC || sh->max > SHMP_SEM_VALUE_MAX)
		return NULL;
	return sh;
}

shmp_sem_t *shmp__sem_open(shmp_segment_t *seg, uint64_t off, bool bounded, _Atomic uint32_t *ref)
{
	struct shmp__sem_sh *sh = sem_at(seg, off);
	if (!sh || bounded != (sh->max != SHMP_SEM_VALUE_MAX)) {
		errno = SHMP_ECORRUPT;
		return NULL;
	}
	shmp_sem_t *s = calloc(1, sizeof *s);
	if (s)
		*s = (struct shmp_sem){ .seg = seg, .pid = getpid(), .sh = sh, .ref = ref };
	return s;
}

int shmp__sem_inspect(const shmp_segment_t *seg, uint64_t off, struct shmp_object_info *info)
{
	struct shmp__sem_sh *sh = sem_at(seg, off);
	if (!sh)
		return -SHMP_ECORRUPT;
	info->value = (int)(atomic_load_explicit(&sh->value, memory_order_relaxed) & SHMP_SEM_VALUE_MAX);
	info->max = sh->max;
	info->waiters = atomic_load_explicit(&sh->waiters, memory_order_relaxed);
	info->valid = 1;
	return 0;
}

static bool try_take(struct shmp__sem_sh *sh)
{
	uint32_t v = atomic_load_explicit(&sh->value, memory_order_relaxed);
	while (v > 0)
		if (atomic_compare_exchange_weak_explicit(&sh->value, &v, v - 1,
				memory_order_acquire, memory_order_relaxed))
			return true;
	return false;
}

int shmp_sem_acquire(shmp_sem_t *s, double timeout)
{
	if (!s || timeout != timeout)
		return -EINVAL; /* NaN has no meaning, even with a permit free */
	struct shmp__sem_sh *sh = s->sh;
	if (try_take(sh))
		return 0;
	struct shmp__deadline d;
	if (shmp__deadline_init(&d, timeout) < 0)
		return -EINVAL;
	if (d.kind == 2)
		return -ETIMEDOUT;
	for (unsigned i = 0; i < shmp__spin_limit; i++) {
		shmp__cpu_relax();
		if (atomic_load_explicit(&sh->value, memory_order_relaxed) && try_take(sh))
			return 0;
	}
	atomic_fetch_add_explicit(&sh->waiters, 1, memory_order_seq_cst);
	int r = 0;
	bool slept = false;
	while (!try_take(sh)) {
		slept = true;
		/* A long but bounded slice: EINTR and timeouts re-check the
		 * value. Timed, so a signal handler that ran cuts it short
		 * with EINTR even under SA_RESTART. */
		struct timespec until = shmp__deadline_cap(&d, 1000000000L);
		int w = shmp__futex_wait(&sh->value, 0, &until);
		if (shmp__interrupted(w)) {
			r = -EINTR; /* no permit taken */
			break;
		}
		if (w == -ETIMEDOUT && shmp__deadline_passed(&d)) {
			r = try_take(sh) ? 0 : -ETIMEDOUT;
			break;
		}
	}
	atomic_fetch_sub_explicit(&sh->waiters, 1, memory_order_relaxed);
	/* Chain the wake-up: if permits are left and others sleep, one of them
	 * goes on. Without it, a woken waiter that died before taking its
	 * permit would leave the rest asleep until their next slice. */
	if (slept && atomic_load_explicit(&sh->value, memory_order_seq_cst) &&
	    atomic_load_explicit(&sh->waiters, memory_order_seq_cst))
		shmp__futex_wake(&sh->value, 1);
	return r;
}

int shmp_sem_release(shmp_sem_t *s)
{
	if (!s)
		return -EINVAL;
	struct shmp__sem_sh *sh = s->sh;
	uint32_t v = atomic_load_explicit(&sh->value, memory_order_relaxed);
	do {
		if (v >= sh->max)
			return -EOVERFLOW;
	} while (!atomic_compare_exchange_weak_explicit(&sh->value, &v, v + 1,
			memory_order_seq_cst, memory_order_relaxed));
	/* seq_cst on both sides: either the waiter sees the new value, or we see
	 * its waiter count. */
	if (atomic_load_explicit(&sh->waiters, memory_order_seq_cst))
		shmp__futex_wake(&sh->value, 1);
	return 0;
}

int shmp_sem_value(const shmp_sem_t *s)
{
	if (!s)
		return -EINVAL;
	return (int)atomic_load_explicit(&s->sh->value, memory_order_relaxed);
}
