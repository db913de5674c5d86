/* private: Condition bound to a Lock or RLock.
 *
 * `seq` is the futex word sleepers wait on; notify bumps it. `waiters` and
 * `tokens` (wake-ups granted, not yet taken) are changed only under the
 * user's lock, so notify(n) wakes exactly min(n, waiting) callers: a waiter
 * returns only by taking a token, and one that wakes without finding one goes
 * back to sleep. A dead waiter is not in the futex queue, so live ones get
 * the wake-ups; the token it leaves behind can only be taken by a later
 * waiter that was itself overlapping a notify. */
#include "internal.h"

#include <stdlib.h>

struct shmp__cond_sh {
	_Atomic uint32_t seq;
	uint32_t waiters;
	uint32_t tokens;
	uint32_t magic;
	uint64_t lock_off;
};
#define COND_MAGIC 0x434f4e44u

struct shmp_cond {
	shmp_segment_t *seg;
	struct shmp__cond_sh *sh;
	shmp_lock_t *lock;
	bool owns_lock;
};

shmp_cond_t *shmp_cond_create(const struct shmp_cond_opts *opts)
{
	if (opts && opts->sz < sizeof(size_t)) {
		errno = EINVAL;
		return NULL;
	}
	shmp_lock_t *lock = opts ? opts->lock : NULL;
	shmp_segment_t *seg = opts ? opts->segment : NULL;
	if (!seg && lock)
		seg = lock->seg;
	seg = shmp__segment_or_default(seg);
	if (!seg)
		return NULL;
	if (lock && !shmp__seg_contains(seg, lock->sh, sizeof *lock->sh)) {
		errno = EXDEV;
		return NULL;
	}
	shmp_cond_t *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->seg = seg;
	if (!lock) {
		struct shmp_lock_opts lo = { .sz = sizeof lo, .segment = seg };
		if (!(lock = shmp_rlock_create(&lo))) {
			free(c);
			return NULL;
		}
		c->owns_lock = true;
	}
	c->lock = lock;
	uint64_t off;
	c->sh = shmp__alloc_ptr(seg, sizeof *c->sh, SHMP__CACHELINE, &off);
	if (!c->sh) {
		int e = errno;
		if (c->owns_lock)
			shmp_lock_destroy(lock);
		free(c);
		errno = e;
		return NULL;
	}
	shmp_segment_offset(seg, lock->sh, &c->sh->lock_off);
	c->sh->magic = COND_MAGIC;
	return c;
}

void shmp_cond_destroy(shmp_cond_t *c)
{
	if (!c)
		return;
	shmp__free_ptr(c->seg, c->sh);
	if (c->owns_lock)
		shmp_lock_destroy(c->lock);
	free(c);
}

shmp_lock_t *shmp_cond_lock(shmp_cond_t *c)
{
	return c ? c->lock : NULL;
}

int shmp_cond_wait(shmp_cond_t *c, double timeout)
{
	if (!c)
		return -EINVAL;
	struct shmp__cond_sh *sh = c->sh;
	struct shmp__lock_sh *l = c->lock->sh;
	if (!shmp__lock_owned(l))
		return -EPERM;
	struct shmp__deadline d, forever = { .kind = 0 };
	shmp__deadline_init(&d, timeout);

	sh->waiters++;
	uint32_t start = atomic_load_explicit(&sh->seq, memory_order_relaxed), seen = start, saved;
	shmp__lock_release_all(l, &saved);
	for (;;) {
		bool expired = false;
		for (unsigned i = 0; i < shmp__spin_limit && d.kind != 2; i++) {
			if (atomic_load_explicit(&sh->seq, memory_order_acquire) != seen)
				break;
			shmp__cpu_relax();
		}
		while (atomic_load_explicit(&sh->seq, memory_order_acquire) == seen) {
			if (shmp__deadline_passed(&d)) {
				expired = true;
				break;
			}
			struct timespec until = shmp__deadline_cap(&d, 1000000000L);
			shmp__futex_wait(&sh->seq, seen, &until);
		}
		int r = shmp__lock_reacquire(l, saved, &forever);
		if (r < 0 && r != -EOWNERDEAD)
			return r; /* not recoverable: the state it guards is gone */
		uint32_t now = atomic_load_explicit(&sh->seq, memory_order_relaxed);
		if (sh->tokens > 0 && (!expired || now != start)) {
			sh->tokens--;
			sh->waiters--;
			return r;
		}
		if (expired || r == -EOWNERDEAD) {
			sh->waiters--;
			return r == -EOWNERDEAD ? r : -ETIMEDOUT;
		}
		seen = now; /* woken for someone else: sleep again */
		shmp__lock_release_all(l, &saved);
	}
}

static double remaining(const struct shmp__deadline *d)
{
	if (d->kind == 0)
		return SHMP_FOREVER;
	if (d->kind == 2 || shmp__deadline_passed(d))
		return 0;
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(d->at.tv_sec - t.tv_sec) + (double)(d->at.tv_nsec - t.tv_nsec) * 1e-9;
}

int shmp_cond_wait_for(shmp_cond_t *c, int (*pred)(void *arg), void *arg, double timeout)
{
	if (!c || !pred)
		return -EINVAL;
	if (!shmp__lock_owned(c->lock->sh))
		return -EPERM;
	struct shmp__deadline d;
	shmp__deadline_init(&d, timeout);
	while (!pred(arg)) {
		double left = remaining(&d);
		if (left == 0)
			return -ETIMEDOUT;
		int r = shmp_cond_wait(c, left);
		if (r == -ETIMEDOUT)
			return pred(arg) ? 0 : -ETIMEDOUT;
		if (r < 0)
			return r;
	}
	return 0;
}

int shmp_cond_notify(shmp_cond_t *c, unsigned n)
{
	if (!c)
		return -EINVAL;
	struct shmp__cond_sh *sh = c->sh;
	if (!shmp__lock_owned(c->lock->sh))
		return -EPERM;
	uint32_t avail = sh->waiters > sh->tokens ? sh->waiters - sh->tokens : 0;
	uint32_t k = n < avail ? n : avail;
	if (k == 0)
		return 0;
	sh->tokens += k;
	atomic_fetch_add_explicit(&sh->seq, 1, memory_order_release);
	shmp__futex_wake(&sh->seq, k > INT_MAX ? INT_MAX : (int)k);
	return (int)k;
}

int shmp_cond_notify_all(shmp_cond_t *c)
{
	return shmp_cond_notify(c, UINT32_MAX);
}
