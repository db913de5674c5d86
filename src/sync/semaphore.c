/* private: counting and bounded semaphores on one futex word.
 * A waiter count lets release skip the wake system call when nobody sleeps. */
#include "types.h"

#include <stdlib.h>

struct shmp__sem_sh {
	uint32_t magic;
	uint32_t version;
	_Atomic uint32_t value;
	_Atomic uint32_t waiters;
	uint32_t max;   /* bounded: the initial value; else SHMP_SEM_VALUE_MAX */
	uint32_t reserved; /* zero, for later versions */
};
#define SEM_MAGIC 0x53454d41u
#define SEM_VERSION 1u
/* Pinned: other processes, maybe of another build, map it. */
SHMP__PIN(struct shmp__sem_sh, 24);
_Static_assert(offsetof(struct shmp__sem_sh, value) == 8 && offsetof(struct shmp__sem_sh, max) == 16,
	       "sem fields");

/* want: 1 + bounded, or 0 for either. */
static bool sem_check(const shmp_segment_t *seg, uint64_t off, const void *p, uint32_t want)
{
	(void)seg, (void)off;
	const struct shmp__sem_sh *sh = p;
	return sh->max <= SHMP_SEM_VALUE_MAX && (!want || want - 1 == (sh->max != SHMP_SEM_VALUE_MAX));
}
const struct shmp__layout shmp__sem_layout = SHMP__LAYOUT(struct shmp__sem_sh, SEM_MAGIC, SEM_VERSION, sem_check);

struct shmp_sem {
	SHMP__HEAD(struct shmp__sem_sh);
	struct shmp__spin spin; /* this handle's waits: internal.h */
};
SHMP__HEAD_CHECK(struct shmp_sem);

static shmp_sem_t *sem_new(unsigned value, bool bounded, const struct shmp_sem_opts *opts)
{
	struct shmp_sem_opts o;
	if (value > SHMP_SEM_VALUE_MAX || SHMP__OPTS(o, opts) < 0) {
		errno = EINVAL;
		return NULL;
	}
	shmp_sem_t *s = shmp__obj_new(o.segment, sizeof *s, &shmp__sem_layout, 0);
	if (!s)
		return NULL;
	shmp__spin_init(&s->spin);
	s->sh->max = bounded ? value : SHMP_SEM_VALUE_MAX;
	atomic_store_explicit(&s->sh->value, value, memory_order_relaxed);
	shmp__obj_publish(s->sh, &shmp__sem_layout);
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
	shmp__obj_destroy(s);
}

shmp_sem_t *shmp__sem_open(shmp_segment_t *seg, uint64_t off, bool bounded, _Atomic uint32_t *ref)
{
	shmp_sem_t *s = shmp__obj_open(seg, off, &shmp__sem_layout, 1u + bounded, sizeof(shmp_sem_t), ref);
	if (s)
		shmp__spin_init(&s->spin);
	return s;
}

int shmp__sem_inspect(const shmp_segment_t *seg, const void *p, struct shmp_object_info *info)
{
	(void)seg;
	struct shmp__sem_sh *sh = (struct shmp__sem_sh *)p;
	info->value = (int)(atomic_load_explicit(&sh->value, memory_order_relaxed) & SHMP_SEM_VALUE_MAX);
	info->max = sh->max;
	info->waiters = atomic_load_explicit(&sh->waiters, memory_order_relaxed);
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

/* The wait has Event's shape (fast path, poll, bounded spin, then timed
 * futex sleeps counted in waiters): written out in each, because the fast
 * paths and what a wake-up means differ, and they are the hot path. */
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
	unsigned spin = shmp__spin_begin(&s->spin);
	for (unsigned i = 0; i < spin; i++) {
		shmp__cpu_relax();
		if (atomic_load_explicit(&sh->value, memory_order_relaxed) && try_take(sh)) {
			shmp__spin_end(&s->spin, spin, true);
			return 0;
		}
	}
	shmp__spin_end(&s->spin, spin, false);
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
