/* private: Barrier for N parties across processes.
 *
 * `gen` is the round number and the futex word: it moves on when a round
 * ends, passed or broken. Whether round r broke is bit r%64 of broken_mask,
 * set before gen moves, so a released waiter learns its own round's fate
 * even if later rounds have started (as long as fewer than 64 rounds end
 * before it wakes; a round cannot pass without it, so only aborts and resets
 * count against that).
 *
 * Death: waiters wake on a bounded slice. The first arriver checks every
 * party that has arrived and every member of the last passed round; the
 * others check the first arriver. A dead one breaks the round. */
#include "types.h"

#include <stdlib.h>

struct shmp__barrier_sh {
	uint32_t magic;
	uint32_t version;
	_Atomic uint32_t gen;
	_Atomic uint32_t broken;
	uint32_t parties;
	uint32_t count;
	_Atomic uint64_t broken_mask;
	struct shmp__lock_sh lock;
	uint32_t tids[]; /* arrived[parties], then members[parties] */
};
#define BARRIER_MAGIC 0x42415252u
#define BARRIER_VERSION 1u
/* Pinned: other processes, maybe of another build, map it. */
SHMP__PIN(struct shmp__barrier_sh, 64);
_Static_assert(offsetof(struct shmp__barrier_sh, gen) == 8 && offsetof(struct shmp__barrier_sh, count) == 20 &&
	       offsetof(struct shmp__barrier_sh, broken_mask) == 24 && offsetof(struct shmp__barrier_sh, lock) == 32 &&
	       offsetof(struct shmp__barrier_sh, tids) == 64, "barrier fields");
#define SLICE_FIRST_NS 5000000L
#define SLICE_MAX_NS 50000000L

static size_t tables_bytes(uint32_t parties)
{
	return 2 * sizeof(uint32_t) * parties;
}

static bool barrier_check(const shmp_segment_t *seg, uint64_t off, const void *p, uint32_t want)
{
	(void)want;
	const struct shmp__barrier_sh *sh = p;
	return sh->parties > 0 && sh->parties <= SHMP_BARRIER_PARTIES_MAX && shmp__lock_sound(&sh->lock) &&
	       shmp__sh_at(seg, off, sizeof *sh + tables_bytes(sh->parties), 1);
}
const struct shmp__layout shmp__barrier_layout =
	SHMP__LAYOUT(struct shmp__barrier_sh, BARRIER_MAGIC, BARRIER_VERSION, barrier_check);

struct shmp_barrier {
	SHMP__HEAD(struct shmp__barrier_sh);
	uint32_t parties; /* trusted copy: sh->parties sizes the tables but is shared */
	int (*action)(void *);
	void *action_arg;
	double timeout; /* opts.timeout: caps every wait of this handle; < 0 none */
};
SHMP__HEAD_CHECK(struct shmp_barrier);

static uint32_t *arrived(struct shmp__barrier_sh *sh) { return sh->tids; }
static uint32_t *members(struct shmp__barrier_sh *sh, uint32_t parties) { return sh->tids + parties; }

shmp_barrier_t *shmp_barrier_create(unsigned parties, const struct shmp_barrier_opts *opts)
{
	struct shmp_barrier_opts o;
	if (parties == 0 || parties > SHMP_BARRIER_PARTIES_MAX || SHMP__OPTS(o, opts) < 0 ||
	    o.timeout != o.timeout) {
		errno = EINVAL;
		return NULL;
	}
	shmp_barrier_t *b = shmp__obj_new(o.segment, sizeof *b, &shmp__barrier_layout, tables_bytes(parties));
	if (!b)
		return NULL;
	b->action = o.action;
	b->action_arg = o.action_arg;
	b->timeout = o.timeout > 0 ? o.timeout : SHMP_FOREVER; /* 0 (unset) or negative: no cap */
	b->parties = parties;
	b->sh->parties = parties;
	shmp__lock_init(&b->sh->lock, SHMP__KIND_LOCK);
	shmp__obj_publish(b->sh, &shmp__barrier_layout);
	return b;
}

void shmp_barrier_destroy(shmp_barrier_t *b)
{
	shmp__obj_destroy(b);
}

shmp_barrier_t *shmp__barrier_open(shmp_segment_t *seg, uint64_t off, _Atomic uint32_t *ref)
{
	shmp_barrier_t *b = shmp__obj_open(seg, off, &shmp__barrier_layout, 0, sizeof *b, ref);
	if (b) {
		b->parties = b->sh->parties;
		b->timeout = SHMP_FOREVER;
	}
	return b;
}

int shmp__barrier_inspect(const shmp_segment_t *seg, const void *p, struct shmp_object_info *info)
{
	(void)seg;
	struct shmp__barrier_sh *sh = (struct shmp__barrier_sh *)p;
	info->parties = sh->parties;
	info->broken = atomic_load_explicit(&sh->broken, memory_order_relaxed) != 0;
	uint32_t n = __atomic_load_n(&sh->count, __ATOMIC_RELAXED);
	info->waiters = info->broken ? 0 : (n < sh->parties ? n : sh->parties);
	return 0;
}

/* Take the state's lock: 0, or 1 if a holder died with it (it may have
 * left the round half-updated: the caller breaks it rather than trust it),
 * or -SHMP_ELOCKED (held past the internal bound: a stopped process, or a
 * forged word) or -ENOTRECOVERABLE. Never interrupted: it guards a few
 * stores. */
static int lock_barrier(struct shmp__barrier_sh *sh)
{
	int r = shmp__lock_acquire_bounded(&sh->lock);
	return r == -EOWNERDEAD ? 1 : r;
}

/* A wait's deadline: the call's timeout, capped by the handle's. */
static double wait_timeout(const shmp_barrier_t *b, double timeout)
{
	if (b->timeout < 0)
		return timeout;
	if (timeout < 0 || timeout > b->timeout)
		return b->timeout;
	return timeout;
}

/* Under the lock: end round `gen` as broken and wake everyone. */
static void break_round(struct shmp__barrier_sh *sh)
{
	uint32_t g = atomic_load_explicit(&sh->gen, memory_order_relaxed);
	atomic_store_explicit(&sh->broken, 1, memory_order_relaxed);
	atomic_fetch_or_explicit(&sh->broken_mask, 1ull << (g & 63), memory_order_relaxed);
	sh->count = 0;
	atomic_store_explicit(&sh->gen, g + 1, memory_order_release);
	shmp__futex_wake(&sh->gen, INT_MAX);
}

/* Under the lock, round unchanged: is a party this round depends on dead? */
static bool party_died(struct shmp__barrier_sh *sh, uint32_t parties, bool first)
{
	uint32_t me = (uint32_t)shmp__tid();
	if (!first)
		return sh->count > 0 && arrived(sh)[0] != me && shmp__tid_dead((pid_t)arrived(sh)[0]);
	for (uint32_t i = 0; i < sh->count && i < parties; i++)
		if (arrived(sh)[i] != me && shmp__tid_dead((pid_t)arrived(sh)[i]))
			return true;
	for (uint32_t i = 0; i < parties; i++) {
		uint32_t m = members(sh, parties)[i];
		if (m != 0 && m != me && shmp__tid_dead((pid_t)m))
			return true;
	}
	return false;
}

int shmp_barrier_wait(shmp_barrier_t *b, double timeout)
{
	if (!b)
		return -EINVAL;
	struct shmp__barrier_sh *sh = b->sh;
	struct shmp__deadline d;
	if (timeout != timeout || shmp__deadline_init(&d, wait_timeout(b, timeout)) < 0)
		return -EINVAL;

	int lr = lock_barrier(sh);
	if (lr < 0)
		return lr;
	if (lr == 1 && !atomic_load_explicit(&sh->broken, memory_order_relaxed))
		break_round(sh);
	if (atomic_load_explicit(&sh->broken, memory_order_relaxed) || sh->count >= b->parties) {
		shmp__lock_release_sh(&sh->lock);
		return -SHMP_EBROKEN;
	}
	uint32_t round = atomic_load_explicit(&sh->gen, memory_order_relaxed);
	uint32_t idx = sh->count++;
	arrived(sh)[idx] = (uint32_t)shmp__tid();
	if (sh->count == b->parties) {
		if (b->action) {
			/* The action is the user's and may take long: run it
			 * outside the state's lock (whose waits are bounded), with
			 * the round full so that nobody else joins it. A party that
			 * times out or finds us dead meanwhile breaks the round. */
			shmp__lock_release_sh(&sh->lock);
			int ar = b->action(b->action_arg);
			if ((lr = lock_barrier(sh)) < 0)
				return lr;
			if (lr == 1 || atomic_load_explicit(&sh->gen, memory_order_relaxed) != round ||
			    atomic_load_explicit(&sh->broken, memory_order_relaxed) || ar != 0) {
				if (atomic_load_explicit(&sh->gen, memory_order_relaxed) == round)
					break_round(sh);
				shmp__lock_release_sh(&sh->lock);
				return -SHMP_EBROKEN;
			}
		}
		memcpy(members(sh, b->parties), arrived(sh), sizeof(uint32_t) * b->parties);
		sh->count = 0;
		atomic_fetch_and_explicit(&sh->broken_mask, ~(1ull << ((round + 1) & 63)), memory_order_relaxed);
		atomic_store_explicit(&sh->gen, round + 1, memory_order_release);
		shmp__futex_wake(&sh->gen, INT_MAX);
		shmp__lock_release_sh(&sh->lock);
		return (int)idx;
	}
	shmp__lock_release_sh(&sh->lock);

	for (unsigned i = 0; i < shmp__spin_limit && d.kind != 2; i++) {
		if (atomic_load_explicit(&sh->gen, memory_order_acquire) != round)
			goto done;
		shmp__cpu_relax();
	}
	struct shmp__checker check;
	shmp__checker_init(&check, SLICE_FIRST_NS, SLICE_MAX_NS);
	while (atomic_load_explicit(&sh->gen, memory_order_acquire) == round) {
		struct timespec until = shmp__checker_until(&check, &d);
		/* Timed: a signal handler that ran cuts it short with EINTR
		 * even under SA_RESTART. */
		int w = shmp__futex_wait(&sh->gen, round, &until);
		if (w == 0 || w == -EAGAIN)
			continue;
		bool intr = shmp__interrupted(w);
		bool expired = shmp__deadline_passed(&d);
		bool due = shmp__checker_due(&check);
		if (!intr && !expired && !due)
			continue; /* a signal: neither the deadline nor a check is due */
		if ((lr = lock_barrier(sh)) < 0)
			return lr;
		int why = 0;
		if (atomic_load_explicit(&sh->gen, memory_order_relaxed) != round)
			why = 0; /* the round ended meanwhile: its outcome is ours */
		else if (expired)
			why = -ETIMEDOUT;
		else if (lr == 1 || (due && party_died(sh, b->parties, idx == 0)))
			why = -SHMP_EBROKEN;
		else if (intr)
			why = -EINTR; /* we leave: the others cannot pass without us */
		if (why)
			break_round(sh);
		shmp__lock_release_sh(&sh->lock);
		if (why)
			return why;
	}
done:
	if (atomic_load_explicit(&sh->broken_mask, memory_order_acquire) & (1ull << (round & 63)))
		return -SHMP_EBROKEN;
	return (int)idx;
}

int shmp_barrier_abort(shmp_barrier_t *b)
{
	if (!b)
		return -EINVAL;
	int r = lock_barrier(b->sh);
	if (r < 0)
		return r;
	if (!atomic_load_explicit(&b->sh->broken, memory_order_relaxed))
		break_round(b->sh);
	shmp__lock_release_sh(&b->sh->lock);
	return 0;
}

int shmp_barrier_reset(shmp_barrier_t *b)
{
	if (!b)
		return -EINVAL;
	struct shmp__barrier_sh *sh = b->sh;
	int r = lock_barrier(sh);
	if (r < 0)
		return r;
	if (!atomic_load_explicit(&sh->broken, memory_order_relaxed) && sh->count > 0)
		break_round(sh); /* those waiting now are told it broke */
	uint32_t g = atomic_load_explicit(&sh->gen, memory_order_relaxed);
	atomic_fetch_and_explicit(&sh->broken_mask, ~(1ull << (g & 63)), memory_order_relaxed);
	sh->count = 0;
	memset(members(sh, b->parties), 0, sizeof(uint32_t) * b->parties);
	atomic_store_explicit(&sh->broken, 0, memory_order_release);
	shmp__lock_release_sh(&sh->lock);
	return 0;
}

int shmp_barrier_parties(const shmp_barrier_t *b)
{
	return b ? (int)b->parties : -EINVAL;
}

int shmp_barrier_n_waiting(const shmp_barrier_t *b)
{
	if (!b)
		return -EINVAL;
	if (atomic_load_explicit(&b->sh->broken, memory_order_relaxed))
		return 0;
	uint32_t n = __atomic_load_n(&b->sh->count, __ATOMIC_RELAXED);
	return (int)(n < b->parties ? n : b->parties);
}

int shmp_barrier_is_broken(const shmp_barrier_t *b)
{
	if (!b)
		return -EINVAL;
	return atomic_load_explicit(&b->sh->broken, memory_order_acquire) != 0;
}
