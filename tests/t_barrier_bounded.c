/* A Barrier's internal lock is bounded: its word forged to name a live
 * foreign process that never lets go (another process that only sleeps),
 * wait (even one that would wait forever), abort and reset give up with
 * -SHMP_ELOCKED within the internal bound (2 s; up to 6 s allowed on a loaded
 * machine), and the queries answer at once. Once the word is given back,
 * a round passes again. And the bound is the internal lock's only: an
 * action that runs longer than it (3 s) does not make the other party's
 * wait give up, and the round passes. */
#include "t.h"
#include "../src/core/internal.h"

#define BOUND_MIN 1.5
#define BOUND_MAX 6.0

static int sleeper(void *arg)
{
	(void)arg;
	return t_until_orphaned(getppid());
}

static int slow_action(void *arg)
{
	(void)arg;
	t_sleep_ms(3000);
	return 0;
}

static int other_party(void *arg)
{
	int r = shmp_barrier_wait(arg, SHMP_FOREVER);
	return r == 0 || r == 1 ? 0 : 100 + (r < 0 ? -r % 100 : r);
}

#define T_BOUNDED(call, want)                                                      \
	do {                                                                       \
		double t0_ = t_now();                                              \
		T_EQ((call), (want));                                              \
		double dt_ = t_now() - t0_;                                        \
		printf("%-45s %.2f s\n", #call, dt_);                              \
		T_CHECK(dt_ >= BOUND_MIN && dt_ <= BOUND_MAX);                     \
	} while (0)

int main(void)
{
	t_watchdog(60);
	atexit(t_reap_all);
	shmp_segment_t *seg = shmp_segment_create(NULL, SHMP_SEGMENT_MIN_SIZE, NULL);
	T_CHECK(seg);
	struct shmp_barrier_opts o = SHMP_OPTS(shmp_barrier_opts, .segment = seg);
	shmp_barrier_t *b = shmp_barrier_create(2, &o);
	T_CHECK(b);

	/* The only lock in this segment besides the allocator's (in the
	 * header): the barrier's, as a hostile writer would find it by its
	 * magic. */
	char *base = shmp_segment_base(seg);
	size_t size = shmp_segment_size(seg);
	struct shmp__lock_sh *found = NULL;
	for (size_t off = 0; off + sizeof *found <= size && !found; off += 32) {
		struct shmp__lock_sh *l = (struct shmp__lock_sh *)(base + off);
		if (l != &((struct shmp__seg_hdr *)base)->alloc_lock && l->magic == SHMP__LOCK_MAGIC &&
		    l->kind == SHMP__KIND_LOCK)
			found = l;
	}
	T_CHECK(found);

	pid_t live = t_spawn(sleeper, NULL);
	atomic_store(&found->word, (uint32_t)live);

	T_BOUNDED(shmp_barrier_wait(b, SHMP_FOREVER), -SHMP_ELOCKED);
	T_BOUNDED(shmp_barrier_abort(b), -SHMP_ELOCKED);
	T_BOUNDED(shmp_barrier_reset(b), -SHMP_ELOCKED);
	T_FAST(shmp_barrier_n_waiting(b), 0);
	T_FAST(shmp_barrier_is_broken(b), 0);
	T_FAST(shmp_barrier_parties(b), 2);

	/* Given back: usable again. A one-party round first... */
	atomic_store(&found->word, 0);
	struct shmp_barrier_opts o1 = SHMP_OPTS(shmp_barrier_opts, .segment = seg);
	shmp_barrier_t *one = shmp_barrier_create(1, &o1);
	T_CHECK(one);
	T_FAST(shmp_barrier_wait(one, 0), 0);
	shmp_barrier_destroy(one);
	/* ...then the two-party one, broken by nothing. */
	T_EQ(shmp_barrier_abort(b), 0);
	T_EQ(shmp_barrier_is_broken(b), 1);
	T_EQ(shmp_barrier_reset(b), 0);
	T_EQ(shmp_barrier_is_broken(b), 0);

	t_kill_reap(live, 10);

	/* A long action runs outside the bounded lock. */
	struct shmp_barrier_opts oa = SHMP_OPTS(shmp_barrier_opts, .segment = seg, .action = slow_action);
	shmp_barrier_t *slow = shmp_barrier_create(2, &oa);
	T_CHECK(slow);
	pid_t other = t_fork(other_party, slow);
	t_wait_n_waiting(slow, 1);
	int me = shmp_barrier_wait(slow, SHMP_FOREVER);
	T_CHECK(me == 0 || me == 1);
	t_wait_ok(other, 20);
	T_EQ(shmp_barrier_is_broken(slow), 0);
	shmp_barrier_destroy(slow);
	shmp_barrier_destroy(b);
	shmp_segment_destroy(seg);
	return 0;
}
