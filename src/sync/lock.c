/* private: robust process-shared Lock and RLock on one futex word.
 *
 * The word holds the owner's thread id (bits 0-29), OWNER_DIED (bit 30) and
 * WAITERS (bit 31). Taking a free lock is one compare-and-swap, releasing it
 * one exchange; a wake is issued only when WAITERS is set. The kernel's
 * robust list belongs to glibc, so owner death is found two other ways:
 *
 * - A thread that ends (returns from its start routine, pthread_exit,
 *   cancellation) holding locks: every thread lists the locks it holds in
 *   TLS (pushed at acquire, popped at release: a few instructions, no
 *   system call), and a pthread key destructor, which runs in the ending
 *   thread before pthread_join() can return, sets OWNER_DIED in the word of
 *   each and wakes a waiter. The next acquirer, a poll included, takes the
 *   lock at once with -EOWNERDEAD.
 * - A process that dies (a signal, exit()) runs no destructor: acquirers
 *   ask whether the owner's thread id still exists (kill(tid, 0), and /proc
 *   for a zombie). A poll asks once; sleepers wake on a bounded slice (2 ms,
 *   doubling to 50 ms) to ask. Once the dead process is reaped its ids are
 *   gone, so an acquire after waitpid() returned gets -EOWNERDEAD at once.
 *
 * The first to see the death swaps its own id in and reports -EOWNERDEAD;
 * the lock is then "inconsistent" until shmp_lock_consistent(), and released
 * in that state it becomes not recoverable for good (the word is parked at
 * SHMP__NOTREC).
 *
 * Crash safety: the word is the only state others act on, and it changes by
 * compare-and-swap alone; count and owner_pid are written by the owner only.
 * A process killed between any two instructions leaves a word that is free
 * or names it, and a name of the dead is found as above. Whoever can write
 * the segment can forge the word (acquires then time out, or see an owner
 * death) but nothing read from it is signalled: kill(tid, 0) sends nothing,
 * and owner_pid is only ever displayed. */
#include "types.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static pid_t tgid_of(pid_t tid);
static pid_t owner_pid_of(const struct shmp__lock_sh *sh, pid_t tid);

#define SHMP__OWNER_DIED 0x40000000u /* the owner thread ended holding it */

#define SLICE_FIRST_NS 2000000L /* first liveness check after 2 ms asleep */
#define SLICE_MAX_NS 50000000L  /* then at least every 50 ms */

/* Pinned: other processes, maybe of another build, map the same lock (and
 * the objects that embed one). SHMP__LOCK_VERSION changes with any of it. */
SHMP__PIN(struct shmp__lock_sh, 32);
_Static_assert(offsetof(struct shmp__lock_sh, word) == 8 && offsetof(struct shmp__lock_sh, count) == 12 &&
	       offsetof(struct shmp__lock_sh, kind) == 16 && offsetof(struct shmp__lock_sh, owner_pid) == 20,
	       "lock fields");

static bool lock_check(const shmp_segment_t *seg, uint64_t off, const void *sh, uint32_t kind);
const struct shmp__layout shmp__lock_layout =
	SHMP__LAYOUT(struct shmp__lock_sh, SHMP__LOCK_MAGIC, SHMP__LOCK_VERSION, lock_check);

/* Embedded locks are made here too: not published (their container is). */
void shmp__lock_init(struct shmp__lock_sh *l, uint32_t kind)
{
	memset(l, 0, sizeof *l);
	l->magic = SHMP__LOCK_MAGIC;
	l->version = SHMP__LOCK_VERSION;
	l->kind = kind;
}

/* ---- the locks this thread holds ----------------------------------------
 * A short list in TLS, so that the thread's end can mark them owner-dead.
 * HELD_MAX locks at once are tracked; past that (or if no pthread key was
 * left to create) an ended owner is found by the liveness check instead, as
 * for a dead process: a little later, and a poll may see -ETIMEDOUT until the
 * kernel has reaped the thread.
 *
 * The list also makes the release fast. An entry is the lock's address,
 * with bit 0 (DEEP) set when its count may not be a plain 1 (an RLock taken
 * again, a lock taken with -EOWNERDEAD or given back a depth by a
 * Condition). A release whose lock is the newest entry, untagged, knows it
 * owns the lock at depth 1 without reading the shared line: its first touch
 * of that line is the compare-and-swap that frees it. Under contention the
 * other process has usually just read the line, and a plain load first
 * made the release wait for it twice (measured: a third of its time). */
#define HELD_MAX 16
#define HELD_DEEP ((uintptr_t)1)

#define PEND_MAX 8

struct held {
	uintptr_t l[HELD_MAX]; /* struct shmp__lock_sh *, | HELD_DEEP */
	unsigned n;          /* entries in use */
	unsigned npend;      /* deferred wakes in pend */
	_Atomic uint32_t *pend[PEND_MAX]; /* futex words to wake at the next release */
	unsigned cap;        /* HELD_MAX once this thread's exit hook is armed, else 0 */
	unsigned dtor_calls; /* calls of held_exit in this thread */
};
static __thread struct held held_tls __attribute__((tls_model("initial-exec")));
static pthread_key_t held_key;
static bool held_key_ok;
static pthread_once_t held_once = PTHREAD_ONCE_INIT;

static inline struct shmp__lock_sh *held_lock(uintptr_t e)
{
	return (struct shmp__lock_sh *)(e & ~HELD_DEEP);
}

static void held_exit(void *arg);

static void held_key_make(void)
{
	held_key_ok = pthread_key_create(&held_key, held_exit) == 0;
}

/* Is l still mapped here, a lock, and held by tid? The memory of a lock
 * destroyed (or a segment unmapped) while held must not be touched. */
static bool held_still(struct shmp__lock_sh *l, uint32_t tid)
{
	uint64_t serial, off;
	if (!shmp__maps_find(l, sizeof *l, UINT64_MAX, &serial, &off))
		return false;
	return l->magic == SHMP__LOCK_MAGIC &&
	       (atomic_load_explicit(&l->word, memory_order_relaxed) & SHMP__TID_MASK) == tid;
}

static __attribute__((noinline)) void held_push_slow(uintptr_t e)
{
	struct held *h = &held_tls;
	if (h->cap == 0) {
		/* First lock of this thread (or taken again in its exit hook):
		 * arm the hook. A non-NULL value is what makes it run. */
		pthread_once(&held_once, held_key_make);
		if (held_key_ok)
			pthread_setspecific(held_key, h);
		h->cap = HELD_MAX;
	}
	if (h->n == h->cap) {
		/* Full: drop what this thread no longer holds (a lock released
		 * through another mapping, or destroyed while held). */
		uint32_t tid = (uint32_t)shmp__tid();
		unsigned j = 0;
		for (unsigned i = 0; i < h->n; i++)
			if (held_still(held_lock(h->l[i]), tid))
				h->l[j++] = h->l[i];
		h->n = j;
	}
	if (h->n < h->cap)
		h->l[h->n++] = e;
}

static inline void held_push(struct shmp__lock_sh *l, bool deep)
{
	struct held *h = &held_tls;
	uintptr_t e = (uintptr_t)l | (deep ? HELD_DEEP : 0);
	if (shmp__likely(h->n < h->cap))
		h->l[h->n++] = e;
	else
		held_push_slow(e);
}

/* l's entry, or NULL if it has none. */
static uintptr_t *held_find(struct shmp__lock_sh *l)
{
	struct held *h = &held_tls;
	for (unsigned i = h->n; i-- > 0;)
		if (held_lock(h->l[i]) == l)
			return &h->l[i];
	return NULL;
}

/* l's count may no longer be 1: its release must read it. */
static void held_mark_deep(struct shmp__lock_sh *l)
{
	uintptr_t *e = held_find(l);
	if (e)
		*e |= HELD_DEEP;
}

static void held_forget(struct shmp__lock_sh *l)
{
	struct held *h = &held_tls;
	uintptr_t *e = held_find(l);
	if (e)
		*e = h->l[--h->n];
}

static inline void held_pop(struct shmp__lock_sh *l)
{
	struct held *h = &held_tls;
	if (shmp__likely(h->n && held_lock(h->l[h->n - 1]) == l))
		h->n--;
	else
		held_forget(l);
}

/* ---- wakes deferred to the release (internal.h) ------------------------
 * Issued at this thread's next release that frees a lock, whichever: the
 * lock a notify was made under is nearly always the one freed next, and
 * matching by address would lose the wake of a lock released through
 * another mapping of its segment. Early is only slower, never wrong. */
bool shmp__lock_defer_wake(struct shmp__lock_sh *l, _Atomic uint32_t *w)
{
	(void)l;
	struct held *h = &held_tls;
	if (h->npend == PEND_MAX)
		return false;
	h->pend[h->npend++] = w;
	return true;
}

static __attribute__((noinline)) void pend_flush(void)
{
	struct held *h = &held_tls;
	while (h->npend > 0)
		shmp__futex_wake(h->pend[--h->npend], 1);
}

static inline void pend_after_release(void)
{
	if (shmp__unlikely(held_tls.npend))
		pend_flush();
}

/* The thread is ending holding l: tell the next acquirer. */
static void mark_owner_died(struct shmp__lock_sh *l, uint32_t tid)
{
	if (!held_still(l, tid))
		return;
	uint32_t w = atomic_load_explicit(&l->word, memory_order_relaxed);
	do {
		if ((w & SHMP__TID_MASK) != tid)
			return;
	} while (!atomic_compare_exchange_weak_explicit(&l->word, &w, w | SHMP__OWNER_DIED,
							memory_order_release, memory_order_relaxed));
	if (w & SHMP__WAITERS)
		shmp__futex_wake(&l->word, 1);
}

/* The pthread key destructor: runs in the ending thread, before its joiner
 * wakes. Other keys' destructors may still release locks, so it asks to be
 * called again and marks in the last rounds but one (glibc runs up to
 * PTHREAD_DESTRUCTOR_ITERATIONS rounds while any value is set); a lock taken
 * by a destructor after that re-arms it for the last round. */
static void held_exit(void *arg)
{
	struct held *h = &held_tls;
	if (++h->dtor_calls + 1 < PTHREAD_DESTRUCTOR_ITERATIONS && h->n > 0) {
		pthread_setspecific(held_key, arg);
		return;
	}
	uint32_t tid = (uint32_t)shmp__tid();
	while (h->n > 0)
		mark_owner_died(held_lock(h->l[--h->n]), tid);
	pend_flush();
	h->cap = 0;
}

/* A fork child's one thread is a copy of the forking thread, under a new
 * id: the locks on the copied list are the parent's, not its own. */
static void held_reset_in_child(void)
{
	held_tls.n = 0;
	held_tls.npend = 0; /* the parent's to issue */
	held_tls.dtor_calls = 0;
}

/* exit() after a notify, the lock still held: the waiters are woken now,
 * not at their next look. (A process killed there leaves that to the
 * waiter's next look: 50 to 500 ms.) */
static void pend_at_exit(void)
{
	pend_flush();
}

__attribute__((constructor)) static void lock_library_init(void)
{
	pthread_atfork(NULL, NULL, held_reset_in_child);
	atexit(pend_at_exit);
}

/* ---- acquire and release ----------------------------------------------- */

/* The lock is ours: record the depth, who we are (for display) and that
 * this thread holds it. */
static inline int took(struct shmp__lock_sh *l, int ret)
{
	l->count = ret == -EOWNERDEAD ? 1 | SHMP__INCONSISTENT : 1;
	__atomic_store_n(&l->owner_pid, (int32_t)shmp__pid(), __ATOMIC_RELAXED);
	held_push(l, ret != 0);
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

/* The contended path. Kept lean: between marking WAITERS and the futex
 * call nothing runs (no clock read), since the owner of a lock held for a
 * few instructions releases within that window, and then both sides pay a
 * system call for nothing (the owner's wake finds no sleeper, our wait
 * fails with EAGAIN). Measured on 2 cores with 2 processes hammering one
 * lock, that was a third more futex calls than glibc's mutex. */
static __attribute__((noinline)) int shmp__lock_acquire_slow(struct shmp__lock_sh *l, pid_t stid,
							     const struct shmp__deadline *d, unsigned spin, bool intr)
{
	uint32_t tid = (uint32_t)stid, w;

	/* Spin a bounded while: the owner is likely running on the other core
	 * and about to release. A poll (timeout 0) does not spin. */
	for (unsigned i = 0; d->kind != 2 && i < spin; i++) {
		w = atomic_load_explicit(&l->word, memory_order_relaxed);
		if (w == 0 && atomic_compare_exchange_weak_explicit(&l->word, &w, tid,
				memory_order_acquire, memory_order_relaxed))
			return took(l, 0);
		if ((w & SHMP__TID_MASK) == SHMP__NOTREC || (w & SHMP__OWNER_DIED))
			break;
		shmp__cpu_relax();
	}

	/* The liveness check's clock starts at the first sleep, and the
	 * sleep's end (an absolute time) is computed again only after a sleep
	 * that ran out or was cut short: a wake-up or EAGAIN reads no clock. */
	struct shmp__checker check;
	struct timespec until;
	bool armed = false, fresh = false;
	for (;;) {
		w = atomic_load_explicit(&l->word, memory_order_relaxed);
		uint32_t owner = w & SHMP__TID_MASK;
		if (owner == 0) {
			/* Others may sleep: keep WAITERS (glibc's "2"). Taking
			 * it without, when we never slept, measured slower: the
			 * other side then sleeps more often. */
			if (atomic_compare_exchange_weak_explicit(&l->word, &w, tid | SHMP__WAITERS,
					memory_order_acquire, memory_order_relaxed))
				return took(l, 0);
			continue;
		}
		if (owner == SHMP__NOTREC)
			return -ENOTRECOVERABLE;
		if (w & SHMP__OWNER_DIED) {
			/* Its thread ended holding it: ours, at once. Others may
			 * sleep: keep their WAITERS. */
			if (atomic_compare_exchange_weak_explicit(&l->word, &w, tid | (w & SHMP__WAITERS),
					memory_order_acquire, memory_order_relaxed))
				return took(l, -EOWNERDEAD);
			continue;
		}
		if (d->kind == 2) { /* poll: one liveness check, no sleep */
			if (steal_from_dead(l, tid))
				return took(l, -EOWNERDEAD);
			return -ETIMEDOUT;
		}
		if (!armed) {
			shmp__checker_init(&check, SLICE_FIRST_NS, SLICE_MAX_NS);
			armed = true;
		}
		if (!fresh) {
			until = shmp__checker_until(&check, d);
			fresh = true;
		}
		if (!(w & SHMP__WAITERS)) {
			/* One atomic or, as glibc's exchange: no retry loop. A
			 * release in between leaves WAITERS on a free word, which
			 * the next acquirer keeps (one wake for nothing). */
			w = atomic_fetch_or_explicit(&l->word, SHMP__WAITERS, memory_order_relaxed);
			if ((w & SHMP__TID_MASK) == 0 || (w & SHMP__OWNER_DIED))
				continue;
			w |= SHMP__WAITERS;
		}
		/* Always a timed sleep: a signal handler that ran cuts it short
		 * with EINTR even under SA_RESTART. */
		int r = shmp__futex_wait(&l->word, w, &until);
		if (r == -EAGAIN || r == 0)
			continue; /* the word moved: look again */
		fresh = false;
		if (intr && shmp__interrupted(r))
			return -EINTR;
		/* Timed out or interrupted: the check time may have come either way. */
		if (shmp__checker_due(&check) || shmp__deadline_passed(d))
			if (steal_from_dead(l, tid))
				return took(l, -EOWNERDEAD);
		if (shmp__deadline_passed(d))
			return -ETIMEDOUT;
	}
}

/* Not free: ours already (an RLock goes one deeper), or contended. Out of
 * line, so that the free case needs no stack frame. */
static __attribute__((noinline)) int lock_acquire_busy(struct shmp__lock_sh *l, const struct shmp__deadline *d,
						       double timeout, unsigned spin, bool intr, pid_t tid, uint32_t w)
{
	if ((w & SHMP__TID_MASK) == (uint32_t)tid) {
		if (l->kind != SHMP__KIND_RLOCK)
			return -EDEADLK;
		if ((l->count & ~SHMP__INCONSISTENT) == INT32_MAX)
			return -EAGAIN;
		l->count++;
		held_mark_deep(l);
		return 0;
	}
	struct shmp__deadline local;
	if (!d) {
		if (shmp__deadline_init(&local, timeout) < 0)
			return -EINVAL;
		d = &local;
	}
	return shmp__lock_acquire_slow(l, tid, d, spin, intr);
}

/* d: a deadline already made, or NULL for one from timeout. intr: give up
 * with -EINTR when interrupted (if the process asked for it). */
static inline int lock_acquire(struct shmp__lock_sh *l, const struct shmp__deadline *d, double timeout,
			       unsigned spin, bool intr)
{
	pid_t tid = shmp__tid();
	uint32_t w = 0;
	if (shmp__likely(atomic_compare_exchange_strong_explicit(&l->word, &w, (uint32_t)tid,
			memory_order_acquire, memory_order_relaxed)))
		return took(l, 0);
	return lock_acquire_busy(l, d, timeout, spin, intr, tid, w);
}

int shmp__lock_acquire_sh(struct shmp__lock_sh *l, double timeout)
{
	if (timeout != timeout)
		return -EINVAL;
	return lock_acquire(l, NULL, timeout, shmp__lock_spin_limit, true);
}

int shmp__lock_acquire_bounded(struct shmp__lock_sh *l)
{
	struct shmp__deadline d;
	if (shmp__deadline_init(&d, SHMP__LOCK_BOUND_NS * 1e-9) < 0)
		return -EINVAL;
	int r = lock_acquire(l, &d, 0, shmp__lock_spin_limit, false);
	if (r == -EOWNERDEAD)
		shmp__lock_mark_consistent(l);
	return r == -ETIMEDOUT ? -SHMP_ELOCKED : r;
}

int shmp__lock_acquire_internal(struct shmp__lock_sh *l)
{
	int r = shmp__lock_acquire_bounded(l);
	return r == -EOWNERDEAD ? 0 : r;
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
	held_pop(l);
	atomic_store_explicit(&l->word, SHMP__NOTREC, memory_order_release);
	shmp__futex_wake(&l->word, INT_MAX);
	pend_after_release();
	return 0;
}

/* Every release but the fast one: the owner check, an RLock level, an
 * inconsistent lock, a wake. */
static __attribute__((noinline)) int lock_release_checked(struct shmp__lock_sh *l)
{
	uint32_t w = atomic_load_explicit(&l->word, memory_order_relaxed);
	if ((w & SHMP__TID_MASK) != (uint32_t)shmp__tid())
		return -EPERM;
	if (shmp__unlikely(l->count != 1))
		return shmp__lock_release_slow(l);
	held_pop(l);
	uint32_t old = atomic_exchange_explicit(&l->word, 0, memory_order_release);
	if (shmp__unlikely(old & SHMP__WAITERS))
		shmp__futex_wake(&l->word, 1);
	pend_after_release();
	return 0;
}

int shmp__lock_release_sh(struct shmp__lock_sh *l)
{
	struct held *h = &held_tls;
	/* The newest lock this thread took, at depth 1 (see "the locks this
	 * thread holds"): free it if nobody waits, in one compare-and-swap,
	 * which also checks that the word still names us. */
	if (shmp__likely(h->n && h->l[h->n - 1] == (uintptr_t)l)) {
		uint32_t w = (uint32_t)shmp__tid();
		if (shmp__likely(atomic_compare_exchange_strong_explicit(&l->word, &w, 0, memory_order_release,
									 memory_order_relaxed))) {
			h->n--;
			pend_after_release();
			return 0;
		}
	}
	return lock_release_checked(l);
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
	 * rather than pay a futex round trip. Not interruptible: a wait
	 * returns holding the lock, whatever it returns. */
	int r = lock_acquire(l, d, 0, shmp__spin_limit, false);
	if (r == 0 || r == -EOWNERDEAD) {
		l->count = (l->count & SHMP__INCONSISTENT) | saved;
		if (saved != 1)
			held_mark_deep(l);
	}
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
	shmp_lock_t *l = shmp__obj_new(o.segment, sizeof *l, &shmp__lock_layout, 0);
	if (!l)
		return NULL;
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
	/* Destroyed while this thread holds it: its memory may go now, and
	 * this thread's end must not touch it. */
	held_forget(l->sh);
	if (held_tls.npend)
		pend_flush();
	if (l->owns_memory)
		shmp__obj_destroy(l);
	else
		free(l);
}

SHMP__HEAD_CHECK(struct shmp_lock);

static bool lock_check(const shmp_segment_t *seg, uint64_t off, const void *sh, uint32_t kind)
{
	(void)seg, (void)off;
	const struct shmp__lock_sh *l = sh;
	return shmp__lock_sound(l) && (!kind || l->kind == kind);
}

struct shmp__lock_sh *shmp__lock_at(const shmp_segment_t *seg, uint64_t off, uint32_t kind, int *err)
{
	return shmp__obj_at(seg, off, &shmp__lock_layout, kind, err);
}

shmp_lock_t *shmp__lock_open(shmp_segment_t *seg, uint64_t off, uint32_t kind, _Atomic uint32_t *ref)
{
	shmp_lock_t *l = shmp__obj_open(seg, off, &shmp__lock_layout, kind, sizeof *l, ref);
	if (l)
		l->owns_memory = true;
	return l;
}

int shmp__lock_inspect(const shmp_segment_t *seg, const void *p, struct shmp_object_info *info)
{
	(void)seg;
	const struct shmp__lock_sh *sh = p;
	uint32_t w = atomic_load_explicit(&((struct shmp__lock_sh *)sh)->word, memory_order_acquire);
	uint32_t owner = w & SHMP__TID_MASK;
	info->locked = owner != 0;
	info->owner_tid = owner && owner != SHMP__NOTREC ? (pid_t)owner : 0;
	info->owner_pid = info->owner_tid ? owner_pid_of(sh, info->owner_tid) : 0;
	info->owner_dead = info->owner_tid ? (w & SHMP__OWNER_DIED) || shmp__tid_dead(info->owner_tid) : 0;
	info->lock_depth = owner ? sh->count & ~SHMP__INCONSISTENT : 0;
	return 0;
}

int shmp_lock_acquire(shmp_lock_t *l, double timeout)
{
	/* NaN has no meaning even when the lock is free. */
	if (shmp__unlikely(!l || timeout != timeout))
		return -EINVAL;
	return lock_acquire(l->sh, NULL, timeout, shmp__lock_spin_limit, true);
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

/* The process a thread id belongs to, from /proc (0 once the thread is
 * gone): for locks taken by an older build, which stored no owner_pid. */
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

/* The owner's process as its acquire stored it, which outlives the owner
 * thread. Display data only: whoever can write the segment can write any
 * number there, and an acquire racing with the read may show the previous
 * owner's. */
static pid_t owner_pid_of(const struct shmp__lock_sh *sh, pid_t tid)
{
	int32_t pid = __atomic_load_n(&sh->owner_pid, __ATOMIC_RELAXED);
	return pid > 0 ? (pid_t)pid : tgid_of(tid);
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
		*pid = owner_pid_of(l->sh, (pid_t)owner);
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
