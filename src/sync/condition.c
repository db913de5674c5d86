/* private: Condition bound to a Lock or RLock.
 *
 * Every waiter has an entry of its own in the condition's shared table: its
 * thread id, an arrival ticket, and a state word it sleeps on. notify(n)
 * turns the n oldest waiting entries to SIGNALLED and wakes exactly those,
 * so it wakes exactly min(n, waiting) callers and a notify with no waiter
 * is lost. The table changes only under the user's lock; a waiter's own
 * state word is also changed, lock-free, by the waiter (going to sleep) and
 * by whoever appoints it watcher (below).
 *
 * A waiter that dies after being signalled, before its wait returned,
 * would take the wake-up with it. The kernel tells nobody (the robust list
 * is glibc's), so one live waiter, the watcher, looks: while any entry is
 * signalled, it sleeps in short slices (2 ms, doubling to 8 ms while the
 * same signalled waiters stay alive and no new signal comes) and asks, of
 * entries signalled at least one slice ago, whether their thread still
 * exists. A dead one's wake-up goes, under the lock, to the oldest live
 * waiter that was already waiting when it was given (its stamp: signalled
 * entries keep the ticket count of their notify in place of their own
 * ticket). notify() appoints the watcher when it leaves signalled entries
 * behind and nobody watches: the youngest waiter (the last that a later
 * notify would pick), woken by a change of its state word so that the
 * appointment cannot be missed. A watcher resigns once nothing is
 * signalled. Other waiters look only every 50 to 500 ms, as a fallback (a
 * dead watcher), and appoint themselves if they find signals unwatched.
 *
 * Crash safety: entries are changed under the lock, and a holder that dies
 * midway is reported to the next acquirer as -EOWNERDEAD like any state
 * the lock guards. Lock-free reads (the watcher's) only decide whether to
 * take the lock and look again. Whoever can write the segment can make
 * waits time out or wake early, never make us signal or wait on anything
 * outside the table: indices are bounded by the handle's own size. */
#include "types.h"

#include <stdlib.h>

enum { W_EMPTY = 0, W_WAITING = 1, W_SLEEPING = 2, W_SIGNALLED = 3, W_WATCH = 4 };

struct cond_waiter {
	_Atomic uint32_t state; /* futex word of this waiter */
	uint32_t tid;
	/* Waiting: the arrival ticket (oldest first). Signalled: the stamp of
	 * the notify, which bounds who may inherit the wake-up. */
	uint64_t ticket;
};

struct shmp__cond_sh {
	uint32_t magic;
	uint32_t version;
	uint32_t max_waiters;
	uint32_t used;      /* entries [0, used) may be in use */
	uint64_t lock_off;
	uint64_t next_ticket;
	struct cond_waiter w[];
};
#define COND_MAGIC 0x434f4e44u
#define COND_VERSION 1u
/* Pinned: other processes, maybe of another build, map it. */
SHMP__PIN(struct shmp__cond_sh, 32);
_Static_assert(offsetof(struct shmp__cond_sh, used) == 12 && offsetof(struct shmp__cond_sh, lock_off) == 16 &&
	       offsetof(struct shmp__cond_sh, w) == 32, "cond fields");
_Static_assert(sizeof(struct cond_waiter) == 16 && offsetof(struct cond_waiter, ticket) == 8, "cond waiter");
#define DEFAULT_MAX_WAITERS 128u
#define CHECK_FIRST_NS 50000000L   /* a non-watcher's first look, 50 ms */
#define CHECK_MAX_NS 500000000L    /* and at least every 0.5 s */
#define WATCH_FIRST_NS 2000000L    /* a watcher's slice, 2 ms */
#define WATCH_MAX_NS 8000000L      /* while the same signalled stay alive */

struct shmp_cond {
	SHMP__HEAD(struct shmp__cond_sh);
	shmp_lock_t *lock;
	uint32_t max; /* the table's size, trusted (sh->max_waiters is shared) */
	bool owns_lock;
};

static inline bool is_waiting(uint32_t s)
{
	return s == W_WAITING || s == W_SLEEPING || s == W_WATCH;
}

static inline uint32_t state_of(const struct cond_waiter *e)
{
	return atomic_load_explicit(&((struct cond_waiter *)e)->state, memory_order_seq_cst);
}

static bool cond_check(const shmp_segment_t *seg, uint64_t off, const void *p, uint32_t want)
{
	(void)want;
	const struct shmp__cond_sh *sh = p;
	return sh->max_waiters > 0 && sh->max_waiters <= SHMP_COND_WAITERS_MAX &&
	       shmp__sh_at(seg, off, sizeof *sh + sh->max_waiters * sizeof(struct cond_waiter), 1);
}
const struct shmp__layout shmp__cond_layout = SHMP__LAYOUT(struct shmp__cond_sh, COND_MAGIC, COND_VERSION, cond_check);

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
	shmp_cond_t *c = shmp__obj_new(seg, sizeof *c, &shmp__cond_layout, max * sizeof(struct cond_waiter));
	if (!c)
		return NULL;
	if (!lock) {
		struct shmp_lock_opts lo = { .sz = sizeof lo, .segment = seg };
		if (!(lock = shmp_rlock_create(&lo))) {
			shmp__obj_destroy(c);
			return NULL;
		}
		c->owns_lock = true;
	}
	c->lock = lock;
	shmp_segment_offset(seg, lock->sh, &c->sh->lock_off);
	c->sh->max_waiters = max;
	c->max = max;
	shmp__obj_publish(c->sh, &shmp__cond_layout);
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

/* A registry Condition always has a lock of its own, freed with it. */
shmp_cond_t *shmp__cond_open(shmp_segment_t *seg, uint64_t off, _Atomic uint32_t *ref)
{
	shmp_cond_t *c = shmp__obj_open(seg, off, &shmp__cond_layout, 0, sizeof *c, ref);
	if (!c)
		return NULL;
	if (!(c->lock = shmp__lock_open(seg, c->sh->lock_off, 0, NULL))) {
		int e = errno;
		free(c);
		errno = e;
		return NULL;
	}
	c->max = c->sh->max_waiters;
	c->owns_lock = true;
	return c;
}

int shmp__cond_inspect(const shmp_segment_t *seg, const void *p, struct shmp_object_info *info)
{
	struct shmp__cond_sh *sh = (struct shmp__cond_sh *)p;
	int e;
	const struct shmp__lock_sh *l = shmp__lock_at(seg, sh->lock_off, 0, &e);
	if (!l)
		return e;
	shmp__lock_inspect(seg, l, info);
	unsigned n = 0;
	for (uint32_t i = 0; i < used_of(sh, sh->max_waiters); i++)
		n += is_waiting(atomic_load_explicit(&sh->w[i].state, memory_order_relaxed));
	info->waiters = n;
	return 0;
}

shmp_lock_t *shmp_cond_lock(shmp_cond_t *c)
{
	if (!c)
		errno = EINVAL;
	return c ? c->lock : NULL;
}

/* Entries that may be in use: sh->used, clamped to the trusted size. Read
 * lock-free by watchers, hence atomic. */
static uint32_t used_of(const struct shmp__cond_sh *sh, uint32_t max)
{
	uint32_t u = __atomic_load_n(&sh->used, __ATOMIC_RELAXED);
	return u < max ? u : max;
}

/* ---- under the lock ----------------------------------------------------- */

/* Signal e with stamp; wake it if it sleeps, once we free the lock l: a
 * waiter woken now would find l still ours and sleep again on it (a second
 * futex pair per hand-off, measured). A waiter still spinning needs no
 * wake at all. */
static void signal_entry(struct shmp__lock_sh *l, struct cond_waiter *e, uint64_t stamp)
{
	__atomic_store_n(&e->ticket, stamp, __ATOMIC_RELAXED);
	uint32_t old = atomic_exchange_explicit(&e->state, W_SIGNALLED, memory_order_seq_cst);
	if ((old == W_SLEEPING || old == W_WATCH) && !shmp__lock_defer_wake(l, &e->state))
		shmp__futex_wake(&e->state, 1);
}

/* Signal the oldest waiting entry that arrived before `limit`. False if
 * there is none. */
static bool signal_oldest(struct shmp__lock_sh *l, struct shmp__cond_sh *sh, uint32_t max, uint64_t limit,
			  uint64_t stamp)
{
	struct cond_waiter *best = NULL;
	for (uint32_t i = 0; i < used_of(sh, max); i++) {
		struct cond_waiter *e = &sh->w[i];
		if (is_waiting(state_of(e)) && e->ticket < limit && (!best || e->ticket < best->ticket))
			best = e;
	}
	if (!best)
		return false;
	signal_entry(l, best, stamp);
	return true;
}

/* If entries are signalled and nobody watches them, appoint the youngest
 * waiter. The appointment changes its state word, so a waiter about to
 * sleep cannot miss it (its futex wait fails with EAGAIN). */
static void ensure_watcher(struct shmp__cond_sh *sh, uint32_t max)
{
	struct cond_waiter *young = NULL;
	bool signalled = false;
	for (uint32_t i = 0; i < used_of(sh, max); i++) {
		struct cond_waiter *e = &sh->w[i];
		uint32_t s = state_of(e);
		if (s == W_WATCH)
			return;
		signalled |= s == W_SIGNALLED;
		if ((s == W_WAITING || s == W_SLEEPING) && (!young || e->ticket > young->ticket))
			young = e;
	}
	if (!signalled || !young)
		return;
	uint32_t s = state_of(young);
	while (s == W_WAITING || s == W_SLEEPING) {
		if (atomic_compare_exchange_weak_explicit(&young->state, &s, W_WATCH, memory_order_seq_cst,
							  memory_order_seq_cst)) {
			if (s == W_SLEEPING)
				shmp__futex_wake(&young->state, 1);
			return;
		}
	}
}

/* Free the entries of dead threads (only signalled ones unless `all`),
 * passing each dead one's wake-up to the oldest live waiter that was
 * waiting when it was given. */
static void drop_dead(struct shmp__lock_sh *l, struct shmp__cond_sh *sh, uint32_t max, const struct cond_waiter *me,
		      bool all)
{
	for (uint32_t i = 0; i < used_of(sh, max); i++) {
		struct cond_waiter *e = &sh->w[i];
		uint32_t s = state_of(e);
		if (s == W_EMPTY || e == me || (!all && s != W_SIGNALLED) || !shmp__tid_dead((pid_t)e->tid))
			continue;
		atomic_store_explicit(&e->state, W_EMPTY, memory_order_seq_cst);
		if (s == W_SIGNALLED)
			signal_oldest(l, sh, max, e->ticket, e->ticket);
	}
}

static void entry_free(struct shmp__cond_sh *sh, uint32_t max, struct cond_waiter *e)
{
	atomic_store_explicit(&e->state, W_EMPTY, memory_order_seq_cst);
	uint32_t used = used_of(sh, max);
	while (used > 0 && state_of(&sh->w[used - 1]) == W_EMPTY)
		used--;
	__atomic_store_n(&sh->used, used, __ATOMIC_RELAXED);
}

/* A free entry, dropping dead waiters' entries if the table is full of
 * them. NULL if max waiters are alive and waiting. */
static struct cond_waiter *entry_take(struct shmp__lock_sh *l, struct shmp__cond_sh *sh, uint32_t max)
{
	for (int pass = 0; pass < 2; pass++) {
		for (uint32_t i = 0; i < max; i++)
			if (state_of(&sh->w[i]) == W_EMPTY) {
				if (i >= used_of(sh, max))
					__atomic_store_n(&sh->used, i + 1, __ATOMIC_RELAXED);
				return &sh->w[i];
			}
		drop_dead(l, sh, max, NULL, true);
	}
	return NULL;
}

/* ---- lock-free, by a sleeping waiter --------------------------------------
 * What a look at the table found: entries signalled (other than mine),
 * whether one was signalled since the previous look, and whether one
 * signalled before it belongs to a dead thread. */
struct look {
	bool any, fresh, dead, watched;
};

static struct look look_at(const struct shmp__cond_sh *sh, uint32_t max, const struct cond_waiter *me,
			   uint64_t seen)
{
	struct look k = { false, false, false, false };
	for (uint32_t i = 0; i < used_of(sh, max); i++) {
		const struct cond_waiter *e = &sh->w[i];
		if (e == me)
			continue;
		uint32_t s = state_of(e);
		k.watched |= s == W_WATCH;
		if (s != W_SIGNALLED)
			continue;
		k.any = true;
		uint64_t stamp = __atomic_load_n(&e->ticket, __ATOMIC_RELAXED);
		if (stamp >= seen)
			k.fresh = true; /* too recent to suspect */
		else if (!k.dead && shmp__tid_dead((pid_t)__atomic_load_n(&e->tid, __ATOMIC_RELAXED)))
			k.dead = true;
	}
	return k;
}

/* A sleeping waiter's schedule of looks: the watcher's short slices, or
 * everyone else's long ones. */
struct sched {
	bool watching;
	uint64_t next, slice; /* ns */
	uint64_t seen;        /* next_ticket at the previous look */
	struct shmp__checker slow;
};

static uint64_t ticket_now(const struct shmp__cond_sh *sh)
{
	return __atomic_load_n(&sh->next_ticket, __ATOMIC_RELAXED);
}

static void sched_watch(struct sched *w, const struct shmp__cond_sh *sh, uint64_t slice)
{
	w->watching = true;
	w->slice = slice;
	w->next = shmp__now_ns() + slice;
	w->seen = ticket_now(sh);
}

static struct timespec sched_until(const struct sched *w, const struct shmp__deadline *d)
{
	if (!w->watching)
		return shmp__checker_until(&w->slow, d);
	uint64_t now = shmp__now_ns();
	return shmp__deadline_cap(d, w->next > now ? (long)(w->next - now) : 0);
}

static bool sched_due(struct sched *w)
{
	if (!w->watching)
		return shmp__checker_due(&w->slow);
	return shmp__now_ns() >= w->next;
}

/* ---- wait and notify ---------------------------------------------------- */

int shmp_cond_wait(shmp_cond_t *c, double timeout)
{
	if (!c)
		return -EINVAL;
	struct shmp__cond_sh *sh = c->sh;
	struct shmp__lock_sh *l = c->lock->sh;
	if (!shmp__lock_owned(l))
		return -EPERM;
	struct shmp__deadline d, forever;
	if (shmp__deadline_init(&d, timeout) < 0)
		return -EINVAL;
	shmp__deadline_forever(&forever);
	uint32_t max = c->max;
	struct cond_waiter *e = entry_take(l, sh, max);
	if (!e)
		return -EAGAIN; /* more live waiters than opts.max_waiters */
	__atomic_store_n(&e->tid, (uint32_t)shmp__tid(), __ATOMIC_RELAXED);
	__atomic_store_n(&e->ticket, sh->next_ticket, __ATOMIC_RELAXED);
	__atomic_store_n(&sh->next_ticket, sh->next_ticket + 1, __ATOMIC_RELAXED);
	atomic_store_explicit(&e->state, W_WAITING, memory_order_seq_cst);

	struct sched w = { .watching = false };
	shmp__checker_init(&w.slow, CHECK_FIRST_NS, CHECK_MAX_NS);
	uint32_t saved;
	shmp__lock_release_all(l, &saved);
	/* A short fixed spin (SHMP_SPIN pauses, 200: about 2 us), as before
	 * the adaptive one of Event: on a quiet machine it catches a notifier
	 * that answers at once and halves a round trip (measured, bench_lock
	 * interleaved with the build before: 45-55 us without it, 15-22 us
	 * with it); the long adaptive spin cost 1.1 to 1.5 times the raw
	 * futex ping-pong on a loaded one. A waiter caught here still takes
	 * the lock the notifier may hold (shmp__lock_reacquire spins for it
	 * too). The wake the notifier defers to its unlock finds it awake. */
	for (unsigned k = 0; k < shmp__spin_limit && d.kind != 2; k++) {
		if (state_of(e) == W_SIGNALLED)
			break;
		shmp__cpu_relax();
	}
	bool interrupted = false;
	for (;;) {
		uint32_t s = state_of(e);
		if (s == W_SIGNALLED || shmp__deadline_passed(&d))
			break;
		if (s == W_WAITING) {
			if (!atomic_compare_exchange_strong_explicit(&e->state, &s, W_SLEEPING,
					memory_order_seq_cst, memory_order_seq_cst))
				continue;
			s = W_SLEEPING;
		}
		if ((s == W_WATCH) != w.watching) {
			if (s == W_WATCH)
				sched_watch(&w, sh, WATCH_FIRST_NS); /* just appointed */
			else
				w.watching = false;
		}
		/* Timed (a look is always due some time): a signal handler that
		 * ran cuts it short with EINTR even under SA_RESTART. */
		struct timespec until = sched_until(&w, &d);
		int fr = shmp__futex_wait(&e->state, s, &until);
		if (state_of(e) == W_SIGNALLED)
			break;
		if (shmp__interrupted(fr)) {
			interrupted = true;
			break;
		}
		if (fr == 0 || fr == -EAGAIN || !sched_due(&w))
			continue; /* woken or appointed, or nothing due yet */

		uint64_t now_ticket = ticket_now(sh);
		struct look k = look_at(sh, max, e, w.watching ? w.seen : now_ticket);
		if (w.watching)
			w.seen = now_ticket;
		if (k.dead) {
			/* Pass its wake-up on, under the lock. */
			int r = shmp__lock_reacquire(l, saved, &forever);
			if (r < 0 && r != -EOWNERDEAD)
				return r; /* not recoverable: the state it guards is gone */
			drop_dead(l, sh, max, e, false);
			if (r == -EOWNERDEAD || state_of(e) == W_SIGNALLED) {
				entry_free(sh, max, e);
				ensure_watcher(sh, max);
				return r;
			}
			ensure_watcher(sh, max);
			shmp__lock_release_all(l, &saved);
			continue;
		}
		if (w.watching) {
			if (!k.any) {
				/* Nothing left to watch: resign, then look once more,
				 * for a notify that saw us still watching. */
				s = W_WATCH;
				if (atomic_compare_exchange_strong_explicit(&e->state, &s, W_SLEEPING,
						memory_order_seq_cst, memory_order_seq_cst) &&
				    look_at(sh, max, e, 0).any) {
					s = W_SLEEPING;
					if (atomic_compare_exchange_strong_explicit(&e->state, &s, W_WATCH,
							memory_order_seq_cst, memory_order_seq_cst))
						sched_watch(&w, sh, WATCH_FIRST_NS);
				}
			} else {
				uint64_t slice = k.fresh ? WATCH_FIRST_NS
							 : (w.slice * 2 > WATCH_MAX_NS ? WATCH_MAX_NS : w.slice * 2);
				sched_watch(&w, sh, slice);
				w.seen = now_ticket;
			}
		} else if (k.any && !k.watched) {
			/* Signals nobody watches (the watcher died?): watch them. */
			s = W_SLEEPING;
			atomic_compare_exchange_strong_explicit(&e->state, &s, W_WATCH, memory_order_seq_cst,
								memory_order_seq_cst);
		}
	}
	int r = shmp__lock_reacquire(l, saved, &forever);
	if (r < 0 && r != -EOWNERDEAD)
		return r; /* not recoverable: the state it guards is gone */
	/* Read under the lock: a notify racing with our timeout either
	 * signalled us before we got here (we count as woken) or sees us gone. */
	bool signalled = state_of(e) == W_SIGNALLED;
	entry_free(sh, max, e);
	ensure_watcher(sh, max); /* if we watched, someone else must now */
	if (r == -EOWNERDEAD)
		return r;
	return signalled ? 0 : interrupted ? -EINTR : -ETIMEDOUT;
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
	struct shmp__cond_sh *sh = c->sh;
	/* One stamp for the call: who was waiting before it may inherit a
	 * wake-up it gave to a waiter that dies. */
	uint64_t stamp = sh->next_ticket;
	int k = 0;
	while ((unsigned)k < n && k < INT_MAX && signal_oldest(c->lock->sh, sh, c->max, UINT64_MAX, stamp))
		k++;
	if (k) {
		__atomic_store_n(&sh->next_ticket, stamp + 1, __ATOMIC_RELAXED);
		ensure_watcher(sh, c->max);
	}
	return k;
}

int shmp_cond_notify_all(shmp_cond_t *c)
{
	return shmp_cond_notify(c, UINT32_MAX);
}
