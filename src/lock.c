/* private: robust process-shared Lock and RLock on one futex word.
 *
 * The word holds the owner's thread id (bits 0-29) and a WAITERS bit. Taking
 * a free lock is one compare-and-swap, releasing it one exchange; a wake is
 * issued only when WAITERS is set. Owner death is detected without the
 * kernel's robust list (glibc owns it): sleepers wake on a bounded slice and
 * ask whether the owner's thread id still exists. The first to see it gone
 * swaps its own id in and reports -EOWNERDEAD; the lock is then
 * "inconsistent" until shmp_lock_consistent(), and released in that state it
 * becomes not recoverable for good (the word is parked at SHMP__NOTREC). */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>

static pid_t tgid_of(pid_t tid);

#define SLICE_FIRST_NS 2000000L /* first liveness check after 2 ms asleep */
#define SLICE_MAX_NS 50000000L  /* then at least every 50 ms */

void shmp__lock_init(struct shmp__lock_sh *l, uint32_t kind)
{
	memset(l, 0, sizeof *l);
	l->magic = SHMP__LOCK_MAGIC;
	l->kind = kind;
}

static int took(struct shmp__lock_sh *l, int ret)
{
	l->count = ret == -EOWNERDEAD ? 1 | SHMP__INCONSISTENT : 1;
	return ret;
}

/* Take the lock from a dead owner if the word still names it. */
static bool steal_from_dead(struct shmp__lock_sh *l, uint32_t tid)
{
	uint32_t w = atomic_load_explicit(&l->word, memory_order_relaxed);
	uint32_t owner = w & SHMP__TID_MASK;
	if (owner == 0 || owner == SHMP__NOTREC || owner == tid || !shmp__tid_dead((pid_t)owner))
		return false;
	return atomic_compare_exchange_strong_explicit(&l->word, &w, tid | SHMP__WAITERS,
						       memory_order_acquire, memory_order_relaxed);
}

static int shmp__lock_acquire_slow(struct shmp__lock_sh *l, pid_t stid, const struct shmp__deadline *d,
				   unsigned spin)
{
	uint32_t tid = (uint32_t)stid, w;

	/* Spin a bounded while: the owner is likely running on the other core
	 * and about to release. A poll (timeout 0) does not spin. */
	for (unsigned i = 0; d->kind != 2 && i < spin; i++) {
		w = atomic_load_explicit(&l->word, memory_order_relaxed);
		if (w == 0 && atomic_compare_exchange_weak_explicit(&l->word, &w, tid,
				memory_order_acquire, memory_order_relaxed))
			return took(l, 0);
		if ((w & SHMP__TID_MASK) == SHMP__NOTREC)
			return -ENOTRECOVERABLE;
		shmp__cpu_relax();
	}

	struct shmp__checker check;
	shmp__checker_init(&check, SLICE_FIRST_NS, SLICE_MAX_NS);
	for (;;) {
		w = atomic_load_explicit(&l->word, memory_order_relaxed);
		uint32_t owner = w & SHMP__TID_MASK;
		if (owner == 0) {
			/* We may have slept: others may still sleep, so keep WAITERS. */
			if (atomic_compare_exchange_weak_explicit(&l->word, &w, tid | SHMP__WAITERS,
					memory_order_acquire, memory_order_relaxed))
				return took(l, 0);
			continue;
		}
		if (owner == SHMP__NOTREC)
			return -ENOTRECOVERABLE;
		if (d->kind == 2) { /* poll: one liveness check, no sleep */
			if (steal_from_dead(l, tid))
				return took(l, -EOWNERDEAD);
			return -ETIMEDOUT;
		}
		if (!(w & SHMP__WAITERS)) {
			if (!atomic_compare_exchange_weak_explicit(&l->word, &w, w | SHMP__WAITERS,
					memory_order_relaxed, memory_order_relaxed))
				continue;
			w |= SHMP__WAITERS;
		}
		struct timespec until = shmp__checker_until(&check, d);
		int r = shmp__futex_wait(&l->word, w, &until);
		if (r == -EAGAIN || r == 0)
			continue; /* the word moved: look again */
		/* Timed out or interrupted: the check time may have come either way. */
		if (shmp__checker_due(&check) || shmp__deadline_passed(d))
			if (steal_from_dead(l, tid))
				return took(l, -EOWNERDEAD);
		if (shmp__deadline_passed(d))
			return -ETIMEDOUT;
	}
}

static inline int lock_acquire(struct shmp__lock_sh *l, const struct shmp__deadline *d, double timeout,
			       unsigned spin)
{
	pid_t tid = shmp__tid();
	uint32_t w = 0;
	if (shmp__likely(atomic_compare_exchange_strong_explicit(&l->word, &w, (uint32_t)tid,
			memory_order_acquire, memory_order_relaxed))) {
		l->count = 1;
		return 0;
	}
	if ((w & SHMP__TID_MASK) == (uint32_t)tid) {
		if (l->kind != SHMP__KIND_RLOCK)
			return -EDEADLK;
		if ((l->count & ~SHMP__INCONSISTENT) == INT32_MAX)
			return -EAGAIN;
		l->count++;
		return 0;
	}
	struct shmp__deadline local;
	if (!d) {
		if (shmp__deadline_init(&local, timeout) < 0)
			return -EINVAL;
		d = &local;
	}
	return shmp__lock_acquire_slow(l, tid, d, spin);
}

int shmp__lock_acquire_sh(struct shmp__lock_sh *l, double timeout)
{
	return lock_acquire(l, NULL, timeout, shmp__lock_spin_limit);
}

int shmp__lock_acquire_internal(struct shmp__lock_sh *l)
{
	struct shmp__deadline d;
	if (shmp__deadline_init(&d, SHMP__LOCK_BOUND_NS * 1e-9) < 0)
		return -EINVAL;
	int r = lock_acquire(l, &d, 0, shmp__lock_spin_limit);
	if (r == -EOWNERDEAD) {
		shmp__lock_mark_consistent(l);
		r = 0;
	}
	return r == -ETIMEDOUT ? -SHMP_ELOCKED : r;
}

/* Release with count != 1: an RLock level, or a lock still inconsistent. */
static int shmp__lock_release_slow(struct shmp__lock_sh *l)
{
	if ((l->count & ~SHMP__INCONSISTENT) > 1) {
		l->count--;
		return 0;
	}
	/* Released while inconsistent: nobody can trust the data any more. */
	l->count = 0;
	atomic_store_explicit(&l->word, SHMP__NOTREC, memory_order_release);
	shmp__futex_wake(&l->word, INT_MAX);
	return 0;
}

int shmp__lock_release_sh(struct shmp__lock_sh *l)
{
	uint32_t w = atomic_load_explicit(&l->word, memory_order_relaxed);
	if ((w & SHMP__TID_MASK) != (uint32_t)shmp__tid())
		return -EPERM;
	if (shmp__unlikely(l->count != 1))
		return shmp__lock_release_slow(l);
	uint32_t old = atomic_exchange_explicit(&l->word, 0, memory_order_release);
	if (shmp__unlikely(old & SHMP__WAITERS))
		shmp__futex_wake(&l->word, 1);
	return 0;
}

int shmp__lock_release_all(struct shmp__lock_sh *l, uint32_t *saved)
{
	if (!shmp__lock_owned(l))
		return -EPERM;
	*saved = l->count & ~SHMP__INCONSISTENT;
	l->count = (l->count & SHMP__INCONSISTENT) | 1;
	return shmp__lock_release_sh(l);
}

int shmp__lock_reacquire(struct shmp__lock_sh *l, uint32_t saved, const struct shmp__deadline *d)
{
	/* The notifier releases the lock right after notifying: spin for it
	 * rather than pay a futex round trip. */
	int r = lock_acquire(l, d, 0, shmp__spin_limit);
	if (r == 0 || r == -EOWNERDEAD)
		l->count = (l->count & SHMP__INCONSISTENT) | saved;
	return r;
}

/* ---- public handles --------------------------------------------------- */

static shmp_lock_t *lock_new(uint32_t kind, const struct shmp_lock_opts *opts)
{
	struct shmp_lock_opts o;
	if (SHMP__OPTS(o, opts) < 0) {
		errno = EINVAL;
		return NULL;
	}
	shmp_segment_t *seg = o.segment;
	void *sh;
	shmp_lock_t *l = shmp__object_new(&seg, sizeof *l, sizeof *l->sh, &sh);
	if (!l)
		return NULL;
	l->sh = sh;
	l->seg = seg;
	l->pid = getpid();
	l->owns_memory = true;
	shmp__lock_init(l->sh, kind);
	return l;
}

shmp_lock_t *shmp_lock_create(const struct shmp_lock_opts *opts)
{
	return lock_new(SHMP__KIND_LOCK, opts);
}

shmp_lock_t *shmp_rlock_create(const struct shmp_lock_opts *opts)
{
	return lock_new(SHMP__KIND_RLOCK, opts);
}

void shmp_lock_destroy(shmp_lock_t *l)
{
	if (!l)
		return;
	if (shmp__handle_release(l) && l->owns_memory)
		shmp__free_ptr(l->seg, l->sh);
	free(l);
}

SHMP__HEAD_CHECK(struct shmp_lock);

static struct shmp__lock_sh *lock_at(const shmp_segment_t *seg, uint64_t off, uint32_t kind)
{
	struct shmp__lock_sh *sh = shmp__sh_at(seg, off, sizeof *sh, __alignof__(*sh));
	if (!sh || sh->magic != SHMP__LOCK_MAGIC || (sh->kind != SHMP__KIND_LOCK && sh->kind != SHMP__KIND_RLOCK) ||
	    (kind && sh->kind != kind))
		return NULL;
	return sh;
}

shmp_lock_t *shmp__lock_open(shmp_segment_t *seg, uint64_t off, uint32_t kind, _Atomic uint32_t *ref)
{
	struct shmp__lock_sh *sh = lock_at(seg, off, kind);
	if (!sh) {
		errno = SHMP_ECORRUPT;
		return NULL;
	}
	shmp_lock_t *l = calloc(1, sizeof *l);
	if (!l)
		return NULL;
	*l = (struct shmp_lock){ .seg = seg, .pid = getpid(), .sh = sh, .ref = ref, .owns_memory = true };
	return l;
}

int shmp__lock_inspect(const shmp_segment_t *seg, uint64_t off, struct shmp_object_info *info)
{
	const struct shmp__lock_sh *sh = lock_at(seg, off, 0);
	if (!sh)
		return -SHMP_ECORRUPT;
	uint32_t owner = atomic_load_explicit(&((struct shmp__lock_sh *)sh)->word, memory_order_acquire) &
			 SHMP__TID_MASK;
	info->locked = owner != 0;
	info->owner_tid = owner && owner != SHMP__NOTREC ? (pid_t)owner : 0;
	info->owner_pid = info->owner_tid ? tgid_of(info->owner_tid) : 0;
	info->owner_dead = info->owner_tid ? shmp__tid_dead(info->owner_tid) : 0;
	info->lock_depth = owner ? sh->count & ~SHMP__INCONSISTENT : 0;
	info->valid = 1;
	return 0;
}

int shmp_lock_acquire(shmp_lock_t *l, double timeout)
{
	if (shmp__unlikely(!l))
		return -EINVAL;
	return lock_acquire(l->sh, NULL, timeout, shmp__lock_spin_limit);
}

int shmp_lock_release(shmp_lock_t *l)
{
	if (shmp__unlikely(!l))
		return -EINVAL;
	return shmp__lock_release_sh(l->sh);
}

int shmp_lock_consistent(shmp_lock_t *l)
{
	if (!l)
		return -EINVAL;
	if (!shmp__lock_owned(l->sh))
		return -EPERM;
	if (!(l->sh->count & SHMP__INCONSISTENT))
		return -EINVAL;
	shmp__lock_mark_consistent(l->sh);
	return 0;
}

int shmp_lock_is_locked(const shmp_lock_t *l)
{
	if (!l)
		return -EINVAL;
	uint32_t owner = atomic_load_explicit(&l->sh->word, memory_order_acquire) & SHMP__TID_MASK;
	if (owner == SHMP__NOTREC)
		return -ENOTRECOVERABLE;
	return owner != 0;
}

/* The process a thread id belongs to, from /proc: kept out of the shared
 * lock so that acquire and release store nothing but the word and count. */
static pid_t tgid_of(pid_t tid)
{
	char path[64], line[128];
	snprintf(path, sizeof path, "/proc/%d/status", (int)tid);
	FILE *f = fopen(path, "re");
	pid_t pid = 0;
	if (!f)
		return 0;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "Tgid: %d", &pid) == 1)
			break;
	fclose(f);
	return pid;
}

int shmp_lock_owner(const shmp_lock_t *l, pid_t *pid, pid_t *tid)
{
	if (!l)
		return -EINVAL;
	uint32_t owner = atomic_load_explicit(&l->sh->word, memory_order_acquire) & SHMP__TID_MASK;
	if (owner == SHMP__NOTREC)
		return -ENOTRECOVERABLE;
	if (owner == 0)
		return 0;
	if (tid)
		*tid = (pid_t)owner;
	if (pid)
		*pid = tgid_of((pid_t)owner);
	return 1;
}

int shmp_lock_count(const shmp_lock_t *l)
{
	if (!l)
		return -EINVAL;
	return shmp__lock_owned(l->sh) ? (int)(l->sh->count & ~SHMP__INCONSISTENT) : 0;
}

int shmp_lock_is_recursive(const shmp_lock_t *l)
{
	if (!l)
		return -EINVAL;
	return l->sh->kind == SHMP__KIND_RLOCK;
}
