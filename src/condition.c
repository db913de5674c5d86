/* private: Condition bound to a Lock or RLock.
 *
 * Every waiter has an entry of its own in the condition's shared table: its
 * thread id, an arrival ticket, and a state word it sleeps on. notify(n)
 * turns the n oldest WAITING entries to SIGNALLED and wakes exactly those,
 * so it wakes exactly min(n, waiting) callers and a notify with no waiter
 * is lost. The table changes only under the user's lock.
 *
 * A dead waiter's entry is dropped by the next waiter whose periodic check
 * (every 50-500 ms asleep) finds it; if a wake-up had been given to it, the
 * oldest live waiter gets it instead, so no notify is lost to a death. */
#include "internal.h"

#include <stdlib.h>

enum { W_EMPTY = 0, W_WAITING = 1, W_SLEEPING = 2, W_SIGNALLED = 3 };

struct cond_waiter {
	_Atomic uint32_t state; /* futex word of this waiter */
	uint32_t tid;
	uint64_t ticket;
};

struct shmp__cond_sh {
	uint32_t magic;
	uint32_t max_waiters;
	uint64_t lock_off;
	uint64_t next_ticket;
	uint32_t used;      /* entries [0, used) may be in use */
	uint32_t reserved;
	struct cond_waiter w[];
};
#define COND_MAGIC 0x434f4e44u
#define DEFAULT_MAX_WAITERS 128u
#define CHECK_FIRST_NS 50000000L
#define CHECK_MAX_NS 500000000L

struct shmp_cond {
	shmp_segment_t *seg;
	struct shmp__cond_sh *sh;
	_Atomic uint32_t *ref;
	pid_t pid;               /* the process that made this handle */
	shmp_lock_t *lock;
	uint32_t max; /* the table's size, trusted (sh->max_waiters is shared) */
	bool owns_lock;
};

shmp_cond_t *shmp_cond_create(const struct shmp_cond_opts *opts)
{
	struct shmp_cond_opts o;
	if (SHMP__OPTS(o, opts) < 0 || o.max_waiters > SHMP_COND_WAITERS_MAX) {
		errno = EINVAL;
		return NULL;
	}
	shmp_lock_t *lock = o.lock;
	shmp_segment_t *seg = o.segment;
	if (!seg && lock)
		seg = lock->seg;
	seg = shmp__segment_or_default(seg);
	if (!seg)
		return NULL;
	if (lock && !shmp__seg_contains(seg, lock->sh, sizeof *lock->sh)) {
		errno = EXDEV;
		return NULL;
	}
	uint32_t max = o.max_waiters ? o.max_waiters : DEFAULT_MAX_WAITERS;
	shmp_cond_t *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->seg = seg;
	c->pid = getpid();
	if (!lock) {
		struct shmp_lock_opts lo = { .sz = sizeof lo, .segment = seg };
		if (!(lock = shmp_rlock_create(&lo))) {
			free(c);
			return NULL;
		}
		c->owns_lock = true;
	}
	c->lock = lock;
	c->sh = shmp__alloc_ptr(seg, sizeof *c->sh + max * sizeof(struct cond_waiter), SHMP__CACHELINE, NULL);
	if (!c->sh) {
		int e = errno;
		if (c->owns_lock)
			shmp_lock_destroy(lock);
		free(c);
		errno = e;
		return NULL;
	}
	shmp_segment_offset(seg, lock->sh, &c->sh->lock_off);
	c->sh->max_waiters = max;
	c->max = max;
	c->sh->magic = COND_MAGIC;
	return c;
}

void shmp_cond_destroy(shmp_cond_t *c)
{
	if (!c)
		return;
	if (!shmp__handle_release(c)) {
		/* Others still use it: let go of the handles only. */
		if (c->owns_lock)
			free(c->lock);
		free(c);
		return;
	}
	shmp__free_ptr(c->seg, c->sh);
	if (c->owns_lock)
		shmp_lock_destroy(c->lock);
	free(c);
}

SHMP__HEAD_CHECK(struct shmp_cond);
static uint32_t used_of(const struct shmp__cond_sh *sh, uint32_t max);

static struct shmp__cond_sh *cond_at(const shmp_segment_t *seg, uint64_t off)
{
	struct shmp__cond_sh *sh = shmp__sh_at(seg, off, sizeof *sh, __alignof__(*sh));
	if (!sh || sh->magic != COND_MAGIC || sh->max_waiters == 0 || sh->max_waiters > SHMP_COND_WAITERS_MAX ||
	    !shmp__sh_at(seg, off, sizeof *sh + sh->max_waiters * sizeof(struct cond_waiter), 1))
		return NULL;
	return sh;
}

/* A registry Condition always has a lock of its own, freed with it. */
shmp_cond_t *shmp__cond_open(shmp_segment_t *seg, uint64_t off, _Atomic uint32_t *ref)
{
	struct shmp__cond_sh *sh = cond_at(seg, off);
	shmp_lock_t *lock = sh ? shmp__lock_open(seg, sh->lock_off, 0, NULL) : NULL;
	shmp_cond_t *c = lock ? calloc(1, sizeof *c) : NULL;
	if (!c) {
		free(lock);
		if (!sh || !lock)
			errno = SHMP_ECORRUPT;
		return NULL;
	}
	*c = (struct shmp_cond){ .seg = seg, .pid = getpid(), .sh = sh, .ref = ref, .lock = lock,
				 .max = sh->max_waiters, .owns_lock = true };
	return c;
}

int shmp__cond_inspect(const shmp_segment_t *seg, uint64_t off, struct shmp_object_info *info)
{
	struct shmp__cond_sh *sh = cond_at(seg, off);
	if (!sh || shmp__lock_inspect(seg, sh->lock_off, info) < 0)
		return -SHMP_ECORRUPT;
	unsigned n = 0;
	for (uint32_t i = 0; i < used_of(sh, sh->max_waiters); i++) {
		uint32_t s = atomic_load_explicit(&sh->w[i].state, memory_order_relaxed);
		n += s == W_WAITING || s == W_SLEEPING;
	}
	info->waiters = n;
	info->valid = 1;
	return 0;
}

shmp_lock_t *shmp_cond_lock(shmp_cond_t *c)
{
	return c ? c->lock : NULL;
}

/* Entries that may be in use: sh->used, clamped to the trusted size. */
static uint32_t used_of(const struct shmp__cond_sh *sh, uint32_t max)
{
	return sh->used < max ? sh->used : max;
}

/* Under the lock: signal the oldest waiting entry. False if none waits. */
static bool signal_oldest(struct shmp__cond_sh *sh, uint32_t max)
{
	struct cond_waiter *best = NULL;
	for (uint32_t i = 0; i < used_of(sh, max); i++) {
		uint32_t s = atomic_load_explicit(&sh->w[i].state, memory_order_relaxed);
		if ((s == W_WAITING || s == W_SLEEPING) && (!best || sh->w[i].ticket < best->ticket))
			best = &sh->w[i];
	}
	if (!best)
		return false;
	if (atomic_exchange_explicit(&best->state, W_SIGNALLED, memory_order_release) == W_SLEEPING)
		shmp__futex_wake(&best->state, 1);
	return true;
}

/* Under the lock: drop dead waiters; hand on wake-ups they were given. */
static void drop_dead(struct shmp__cond_sh *sh, uint32_t max, const struct cond_waiter *me)
{
	for (uint32_t i = 0; i < used_of(sh, max); i++) {
		struct cond_waiter *e = &sh->w[i];
		uint32_t s = atomic_load_explicit(&e->state, memory_order_relaxed);
		if (s == W_EMPTY || e == me || !shmp__tid_dead((pid_t)e->tid))
			continue;
		atomic_store_explicit(&e->state, W_EMPTY, memory_order_relaxed);
		if (s == W_SIGNALLED)
			signal_oldest(sh, max);
	}
}

static void entry_free(struct shmp__cond_sh *sh, uint32_t max, struct cond_waiter *e)
{
	atomic_store_explicit(&e->state, W_EMPTY, memory_order_relaxed);
	uint32_t used = used_of(sh, max);
	while (used > 0 && atomic_load_explicit(&sh->w[used - 1].state, memory_order_relaxed) == W_EMPTY)
		used--;
	sh->used = used;
}

/* Under the lock: a free entry, dropping dead waiters' entries if the table
 * is full of them. NULL if max waiters are alive and waiting. */
static struct cond_waiter *entry_take(struct shmp__cond_sh *sh, uint32_t max)
{
	for (int pass = 0; pass < 2; pass++) {
		for (uint32_t i = 0; i < max; i++)
			if (atomic_load_explicit(&sh->w[i].state, memory_order_relaxed) == W_EMPTY) {
				if (i >= used_of(sh, max))
					sh->used = i + 1;
				return &sh->w[i];
			}
		drop_dead(sh, max, NULL);
	}
	return NULL;
}

int shmp_cond_wait(shmp_cond_t *c, double timeout)
{
	if (!c)
		return -EINVAL;
	struct shmp__cond_sh *sh = c->sh;
	struct shmp__lock_sh *l = c->lock->sh;
	if (!shmp__lock_owned(l))
		return -EPERM;
	uint32_t max = c->max;
	struct cond_waiter *e = entry_take(sh, max);
	if (!e)
		return -EAGAIN; /* more live waiters than opts.max_waiters */
	e->tid = (uint32_t)shmp__tid();
	e->ticket = sh->next_ticket++;
	atomic_store_explicit(&e->state, W_WAITING, memory_order_relaxed);

	struct shmp__deadline d, forever = { .kind = 0 };
	if (shmp__deadline_init(&d, timeout) < 0)
		return -EINVAL;
	struct shmp__checker check;
	shmp__checker_init(&check, CHECK_FIRST_NS, CHECK_MAX_NS);
	uint32_t saved;
	shmp__lock_release_all(l, &saved);
	for (unsigned k = 0; k < shmp__spin_limit && d.kind != 2; k++) {
		if (atomic_load_explicit(&e->state, memory_order_acquire) == W_SIGNALLED)
			break;
		shmp__cpu_relax();
	}
	for (;;) {
		uint32_t s = W_WAITING;
		if (atomic_load_explicit(&e->state, memory_order_acquire) == W_SIGNALLED ||
		    shmp__deadline_passed(&d))
			break;
		if (atomic_compare_exchange_strong_explicit(&e->state, &s, W_SLEEPING,
				memory_order_acq_rel, memory_order_acquire) || s == W_SLEEPING) {
			struct timespec until = shmp__checker_until(&check, &d);
			shmp__futex_wait(&e->state, W_SLEEPING, &until);
		}
		if (atomic_load_explicit(&e->state, memory_order_acquire) == W_SIGNALLED)
			break;
		if (shmp__checker_due(&check)) {
			/* Someone asleep long: a dead waiter may hold our wake-up. */
			int r = shmp__lock_reacquire(l, saved, &forever);
			if (r < 0 && r != -EOWNERDEAD)
				return r;
			drop_dead(sh, max, e);
			if (r == -EOWNERDEAD ||
			    atomic_load_explicit(&e->state, memory_order_acquire) == W_SIGNALLED) {
				entry_free(sh, max, e);
				return r;
			}
			shmp__lock_release_all(l, &saved);
		}
	}
	int r = shmp__lock_reacquire(l, saved, &forever);
	if (r < 0 && r != -EOWNERDEAD)
		return r; /* not recoverable: the state it guards is gone */
	/* Read under the lock: a notify racing with our timeout either
	 * signalled us before we got here (we count as woken) or sees us gone. */
	bool signalled = atomic_load_explicit(&e->state, memory_order_acquire) == W_SIGNALLED;
	entry_free(sh, max, e);
	if (r == -EOWNERDEAD)
		return r;
	return signalled ? 0 : -ETIMEDOUT;
}

int shmp_cond_wait_for(shmp_cond_t *c, int (*pred)(void *arg), void *arg, double timeout)
{
	if (!c || !pred)
		return -EINVAL;
	if (!shmp__lock_owned(c->lock->sh))
		return -EPERM;
	struct shmp__deadline d;
	if (shmp__deadline_init(&d, timeout) < 0)
		return -EINVAL;
	while (!pred(arg)) {
		double left = shmp__deadline_left(&d);
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
	if (!shmp__lock_owned(c->lock->sh))
		return -EPERM;
	int k = 0;
	while ((unsigned)k < n && k < INT_MAX && signal_oldest(c->sh, c->max))
		k++;
	return k;
}

int shmp_cond_notify_all(shmp_cond_t *c)
{
	return shmp_cond_notify(c, UINT32_MAX);
}
