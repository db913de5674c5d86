/* Condition, across processes:
 * - wait() releases the lock (another process takes it meanwhile) and owns it
 *   again when it returns (count/owner), only after the notifier let go.
 * - notify(1) wakes exactly one of 3 sleeping waiters, notify(2) the other
 *   two; notify's return value is the number woken; notify_all wakes all.
 * - A notify with no waiters is lost: a later wait(0.2) times out.
 * - wait(0.2) returns -ETIMEDOUT after about 0.2 s, lock held; wait(0) at once.
 * - wait_for(pred) with pred reading a shared Value set by another process
 *   returns 0 (a notify with pred still false keeps it waiting); wait_for
 *   timing out is -ETIMEDOUT.
 * - wait/wait_for/notify without the lock (or with another process holding
 *   it) are -EPERM.
 * - On an RLock held at depth 2, wait releases every level and restores 2.
 * - A lock from another segment is EXDEV.
 * - A waiter SIGKILLed while waiting: notify(1) still wakes the live waiter,
 *   and later notifies count and wake only live waiters. */
#include "t.h"

static void lock(shmp_cond_t *c)
{
	T_EQ(shmp_lock_acquire(shmp_cond_lock(c), 10), 0);
}

static void unlock(shmp_cond_t *c)
{
	T_EQ(shmp_lock_release(shmp_cond_lock(c)), 0);
}

/* ---- wait releases and re-acquires -------------------------------------- */
struct rel_arg {
	shmp_cond_t *c;
	/* [0] child is about to wait, [1] parent is letting go of the lock,
	 * [2] wait's result, [3] wait has returned */
	shmp_array_t *st;
};

static int rel_child(void *p)
{
	struct rel_arg *a = p;
	shmp_lock_t *l = shmp_cond_lock(a->c);
	lock(a->c);
	T_EQ(shmp_array_store(a->st, 0, 1), 0);
	int r = shmp_cond_wait(a->c, 10);
	T_EQ(shmp_array_store(a->st, 3, 1), 0);
	T_EQ(shmp_array_store(a->st, 2, r), 0);
	/* Owned again, and only after the notifier released it. */
	T_EQ(t_load(a->st, 1), 1);
	T_EQ(shmp_lock_count(l), 1);
	pid_t pid = 0, tid = 0;
	T_EQ(shmp_lock_owner(l, &pid, &tid), 1);
	T_EQ(pid, getpid());
	T_EQ(tid, getpid());
	unlock(a->c);
	return r == 0 ? 0 : 1;
}

static void test_wait_releases(void)
{
	struct rel_arg a = { shmp_cond_create(NULL), t_counters(4) };
	T_CHECK(a.c);
	shmp_lock_t *l = shmp_cond_lock(a.c);
	T_CHECK(l);
	T_EQ(shmp_lock_is_recursive(l), 1); /* the condition's own lock: an RLock */
	pid_t p = t_spawn(rel_child, &a);
	t_wait_eq(a.st, 0, 1, 5);
	/* The child holds the lock until it waits: getting it proves wait
	 * released it (else this times out). */
	T_EQ(shmp_lock_acquire(l, 5), 0);
	T_EQ(shmp_cond_notify(a.c, 1), 1);
	/* Hold it a while: the woken child cannot return from wait without
	 * the lock. */
	t_sleep_ms(150);
	T_EQ(t_load(a.st, 3), 0);
	T_EQ(shmp_array_store(a.st, 1, 1), 0);
	T_EQ(shmp_lock_release(l), 0);
	t_wait_ok(p, 10);
	T_EQ(t_load(a.st, 3), 1);
	T_EQ(t_load(a.st, 2), 0);
	T_EQ(shmp_lock_is_locked(l), 0);
	shmp_cond_destroy(a.c);
	shmp_array_destroy(a.st);
}

/* ---- notify counts ------------------------------------------------------ */
struct nw_arg {
	shmp_cond_t *c;
	/* [0] ready (waiting), [1] woken, [2 + k] result of waiter k */
	shmp_array_t *st;
	int k;
	double timeout;
};

static int nw_child(void *p)
{
	struct nw_arg *a = p;
	lock(a->c);
	T_EQ(shmp_array_add(a->st, 0, 1, NULL), 0);
	int r = shmp_cond_wait(a->c, a->timeout);
	T_EQ(shmp_array_store(a->st, 2 + a->k, r), 0);
	T_EQ(shmp_array_add(a->st, 1, 1, NULL), 0);
	T_EQ(shmp_lock_count(shmp_cond_lock(a->c)), 1);
	unlock(a->c);
	return 0;
}

/* Start n waiters and let them all fall asleep. */
static void start_waiters(struct nw_arg *args, pid_t *pids, int n, shmp_cond_t *c,
			  shmp_array_t *st, int first, double timeout)
{
	int64_t ready = t_load(st, 0);
	for (int k = 0; k < n; k++) {
		args[k] = (struct nw_arg){ c, st, first + k, timeout };
		pids[k] = t_spawn(nw_child, &args[k]);
	}
	t_wait_eq(st, 0, ready + n, 5);
	/* Each counted itself under the lock right before wait, so once we can
	 * take the lock all n are registered waiters; the 200 ms only lets
	 * them reach the futex sleep, which correctness does not depend on. */
	t_sleep_ms(200);
}

static void test_notify_counts(void)
{
	shmp_cond_t *c = shmp_cond_create(NULL);
	T_CHECK(c);
	shmp_array_t *st = t_counters(2 + 3);
	struct nw_arg args[3];
	pid_t p[3];
	start_waiters(args, p, 3, c, st, 0, 10);
	T_EQ(t_load(st, 1), 0);

	lock(c);
	T_EQ(shmp_cond_notify(c, 1), 1);
	unlock(c);
	t_wait_eq(st, 1, 1, 5);
	t_sleep_ms(300);
	T_EQ(t_load(st, 1), 1); /* exactly one */

	lock(c);
	T_EQ(shmp_cond_notify(c, 2), 2);
	unlock(c);
	for (int k = 0; k < 3; k++)
		t_wait_ok(p[k], 10);
	T_EQ(t_load(st, 1), 3);
	for (int k = 0; k < 3; k++)
		T_EQ(t_load(st, 2 + k), 0);

	/* Nobody waits now. */
	lock(c);
	T_EQ(shmp_cond_notify(c, 5), 0);
	T_EQ(shmp_cond_notify_all(c), 0);
	unlock(c);

	/* notify(n) with fewer waiters than n wakes those there are. */
	T_EQ(shmp_array_store(st, 0, 0), 0);
	T_EQ(shmp_array_store(st, 1, 0), 0);
	start_waiters(args, p, 2, c, st, 0, 10);
	lock(c);
	T_EQ(shmp_cond_notify(c, 7), 2);
	unlock(c);
	for (int k = 0; k < 2; k++)
		t_wait_ok(p[k], 10);
	T_EQ(t_load(st, 1), 2);

	shmp_cond_destroy(c);
	shmp_array_destroy(st);
}

static void test_notify_all(void)
{
	shmp_cond_t *c = shmp_cond_create(NULL);
	T_CHECK(c);
	shmp_array_t *st = t_counters(2 + 3);
	struct nw_arg args[3];
	pid_t p[3];
	start_waiters(args, p, 3, c, st, 0, 10);
	T_EQ(t_load(st, 1), 0);
	lock(c);
	T_EQ(shmp_cond_notify_all(c), 3);
	unlock(c);
	for (int k = 0; k < 3; k++)
		t_wait_ok(p[k], 10);
	T_EQ(t_load(st, 1), 3);
	for (int k = 0; k < 3; k++)
		T_EQ(t_load(st, 2 + k), 0);
	shmp_cond_destroy(c);
	shmp_array_destroy(st);
}

/* ---- lost notify, timeouts ---------------------------------------------- */
static void test_lost_and_timeout(void)
{
	shmp_lock_t *l = shmp_lock_create(NULL);
	T_CHECK(l);
	struct shmp_cond_opts o = SHMP_OPTS(shmp_cond_opts, .lock = l);
	shmp_cond_t *c = shmp_cond_create(&o);
	T_CHECK(c);
	T_CHECK(shmp_cond_lock(c) == l);

	T_EQ(shmp_lock_acquire(l, 0), 0);
	T_EQ(shmp_cond_notify(c, 1), 0);
	T_EQ(shmp_cond_notify_all(c), 0);
	T_EQ(shmp_lock_release(l), 0);

	/* The notifies above are not remembered. */
	T_EQ(shmp_lock_acquire(l, 0), 0);
	T_ABOUT(shmp_cond_wait(c, 0.2), -ETIMEDOUT);
	/* Timed out with the lock held. */
	T_EQ(shmp_lock_is_locked(l), 1);
	T_EQ(shmp_lock_count(l), 1);
	pid_t pid = 0;
	T_EQ(shmp_lock_owner(l, &pid, NULL), 1);
	T_EQ(pid, getpid());

	/* wait(0): at once, lock still held. */
	T_FAST(shmp_cond_wait(c, 0), -ETIMEDOUT);
	T_EQ(shmp_lock_count(l), 1);
	T_EQ(shmp_lock_release(l), 0);
	T_EQ(shmp_lock_is_locked(l), 0);

	shmp_cond_destroy(c);
	/* The caller's lock is not freed with the condition. */
	T_EQ(shmp_lock_acquire(l, 0), 0);
	T_EQ(shmp_lock_release(l), 0);
	shmp_lock_destroy(l);
}

/* ---- wait_for across processes ------------------------------------------ */
struct wf_arg {
	shmp_cond_t *c;
	shmp_value_t *v;
	int64_t want;
	int calls;
};

static int pred(void *p)
{
	struct wf_arg *a = p;
	int64_t x = 0;
	a->calls++;
	T_EQ(shmp_value_load(a->v, &x), 0);
	/* Always called under the lock. */
	T_EQ(shmp_lock_count(shmp_cond_lock(a->c)), 1);
	return x == a->want;
}

static int wf_child(void *p)
{
	struct wf_arg *a = p;
	/* The parent holds the lock until it sleeps in wait_for. First a
	 * notify with the predicate still false, then the real one. */
	lock(a->c);
	T_EQ(shmp_value_store(a->v, 1), 0);
	T_EQ(shmp_cond_notify_all(a->c), 1);
	unlock(a->c);
	t_sleep_ms(50);
	lock(a->c);
	T_EQ(shmp_value_store(a->v, 2), 0);
	shmp_cond_notify_all(a->c);
	unlock(a->c);
	return 0;
}

static int never(void *p)
{
	(*(int *)p)++;
	return 0;
}

static int always(void *p)
{
	(*(int *)p)++;
	return 1;
}

static void test_wait_for(void)
{
	struct wf_arg a = { shmp_cond_create(NULL), NULL, 2, 0 };
	T_CHECK(a.c);
	a.v = t_raw_value('q');

	lock(a.c);
	pid_t p = t_spawn(wf_child, &a);
	double t0 = t_now();
	T_EQ(shmp_cond_wait_for(a.c, pred, &a, 10), 0);
	T_CHECK(t_now() - t0 < 5);
	int64_t x = 0;
	T_EQ(shmp_value_load(a.v, &x), 0);
	T_EQ(x, 2);
	T_CHECK(a.calls >= 2); /* false at first, true at the end */
	T_EQ(shmp_lock_count(shmp_cond_lock(a.c)), 1);
	unlock(a.c);
	t_wait_ok(p, 10);

	/* Timing out: the predicate stays false. */
	int n = 0;
	lock(a.c);
	T_ABOUT(shmp_cond_wait_for(a.c, never, &n, 0.2), -ETIMEDOUT);
	T_CHECK(n >= 1);
	T_EQ(shmp_lock_count(shmp_cond_lock(a.c)), 1);
	/* timeout 0 polls the predicate once. */
	n = 0;
	T_EQ(shmp_cond_wait_for(a.c, never, &n, 0), -ETIMEDOUT);
	T_CHECK(n >= 1);
	/* Already true: 0 without waiting. */
	n = 0;
	t0 = t_now();
	T_EQ(shmp_cond_wait_for(a.c, always, &n, 0), 0);
	T_EQ(shmp_cond_wait_for(a.c, always, &n, SHMP_FOREVER), 0);
	T_CHECK(t_now() - t0 < 0.5);
	T_EQ(n, 2);
	T_EQ(shmp_cond_wait_for(a.c, NULL, NULL, 0), -EINVAL);
	unlock(a.c);

	shmp_cond_destroy(a.c);
	shmp_value_destroy(a.v);
}

/* ---- -EPERM ------------------------------------------------------------- */
struct hold_arg {
	shmp_cond_t *c;
	shmp_array_t *st; /* [0] child holds the lock, [1] let go */
};

static int hold_child(void *p)
{
	struct hold_arg *a = p;
	lock(a->c);
	T_EQ(shmp_array_store(a->st, 0, 1), 0);
	double until = t_now() + 10;
	while (t_load(a->st, 1) == 0 && t_now() < until)
		t_sleep_ms(1);
	unlock(a->c);
	return 0;
}

static void test_eperm(void)
{
	int n = 0;
	shmp_cond_t *c = shmp_cond_create(NULL);
	T_CHECK(c);
	T_EQ(shmp_cond_wait(c, 0), -EPERM);
	T_EQ(shmp_cond_wait(c, 0.1), -EPERM);
	T_EQ(shmp_cond_wait_for(c, never, &n, 0.1), -EPERM);
	T_EQ(shmp_cond_notify(c, 1), -EPERM);
	T_EQ(shmp_cond_notify_all(c), -EPERM);

	/* Held by another process: still not ours. */
	struct hold_arg a = { c, t_counters(2) };
	pid_t p = t_spawn(hold_child, &a);
	t_wait_eq(a.st, 0, 1, 5);
	T_EQ(shmp_lock_is_locked(shmp_cond_lock(c)), 1);
	T_EQ(shmp_cond_wait(c, 0.1), -EPERM);
	T_EQ(shmp_cond_wait_for(c, never, &n, 0.1), -EPERM);
	T_EQ(shmp_cond_notify(c, 1), -EPERM);
	T_EQ(shmp_cond_notify_all(c), -EPERM);
	T_EQ(n, 0); /* the predicate was never called */
	T_EQ(shmp_array_store(a.st, 1, 1), 0);
	t_wait_ok(p, 10);

	T_EQ(shmp_cond_wait(NULL, 0), -EINVAL);
	T_EQ(shmp_cond_notify(NULL, 1), -EINVAL);
	T_EQ(shmp_cond_notify_all(NULL), -EINVAL);
	T_CHECK(shmp_cond_lock(NULL) == NULL);
	shmp_cond_destroy(NULL);
	shmp_cond_destroy(c);
	shmp_array_destroy(a.st);
}

/* ---- RLock at depth 2 --------------------------------------------------- */
struct rl_arg {
	shmp_cond_t *c;
	shmp_array_t *st; /* [0] child got the lock */
};

static int rl_child(void *p)
{
	struct rl_arg *a = p;
	shmp_lock_t *l = shmp_cond_lock(a->c);
	/* The parent holds it twice until it waits. */
	T_EQ(shmp_lock_acquire(l, 5), 0);
	T_EQ(shmp_lock_count(l), 1);
	T_EQ(shmp_array_store(a->st, 0, 1), 0);
	T_EQ(shmp_cond_notify(a->c, 1), 1);
	T_EQ(shmp_lock_release(l), 0);
	return 0;
}

static void test_rlock_depth(void)
{
	shmp_lock_t *l = shmp_rlock_create(NULL);
	T_CHECK(l);
	struct shmp_cond_opts o = SHMP_OPTS(shmp_cond_opts, .lock = l);
	struct rl_arg a = { shmp_cond_create(&o), t_counters(1) };
	T_CHECK(a.c);
	T_EQ(shmp_lock_acquire(l, 0), 0);
	T_EQ(shmp_lock_acquire(l, 0), 0);
	T_EQ(shmp_lock_count(l), 2);
	pid_t p = t_spawn(rl_child, &a);
	T_EQ(shmp_cond_wait(a.c, 10), 0);
	T_EQ(t_load(a.st, 0), 1);
	T_EQ(shmp_lock_count(l), 2);
	T_EQ(shmp_lock_release(l), 0);
	T_EQ(shmp_lock_count(l), 1);
	T_EQ(shmp_lock_is_locked(l), 1);
	T_EQ(shmp_lock_release(l), 0);
	T_EQ(shmp_lock_is_locked(l), 0);
	T_EQ(shmp_lock_release(l), -EPERM);
	t_wait_ok(p, 10);

	/* Timing out at depth 3 restores depth 3 as well. */
	for (int i = 0; i < 3; i++)
		T_EQ(shmp_lock_acquire(l, 0), 0);
	T_EQ(shmp_cond_wait(a.c, 0.05), -ETIMEDOUT);
	T_EQ(shmp_lock_count(l), 3);
	for (int i = 0; i < 3; i++)
		T_EQ(shmp_lock_release(l), 0);
	T_EQ(shmp_lock_is_locked(l), 0);

	shmp_cond_destroy(a.c);
	shmp_lock_destroy(l);
	shmp_array_destroy(a.st);
}

/* ---- EXDEV -------------------------------------------------------------- */
static void test_exdev(void)
{
	shmp_segment_t *seg = shmp_segment_create(NULL, SHMP_SEGMENT_MIN_SIZE, NULL);
	T_CHECK(seg);
	shmp_segment_t *def = shmp_segment_default();
	T_CHECK(def);

	struct shmp_lock_opts lo = SHMP_OPTS(shmp_lock_opts, .segment = seg);
	shmp_lock_t *other = shmp_lock_create(&lo);
	T_CHECK(other);
	shmp_lock_t *here = shmp_lock_create(NULL);
	T_CHECK(here);

	/* Lock in seg, condition in the default segment. */
	struct shmp_cond_opts o = SHMP_OPTS(shmp_cond_opts, .segment = def, .lock = other);
	errno = 0;
	T_CHECK(shmp_cond_create(&o) == NULL);
	T_EQ(errno, EXDEV);
	/* And the other way round. */
	o = SHMP_OPTS(shmp_cond_opts, .segment = seg, .lock = here);
	errno = 0;
	T_CHECK(shmp_cond_create(&o) == NULL);
	T_EQ(errno, EXDEV);

	/* Same segment: fine, and usable. */
	o = SHMP_OPTS(shmp_cond_opts, .segment = seg, .lock = other);
	shmp_cond_t *c = shmp_cond_create(&o);
	T_CHECK(c);
	T_CHECK(shmp_cond_lock(c) == other);
	T_EQ(shmp_lock_acquire(other, 0), 0);
	T_EQ(shmp_cond_wait(c, 0.01), -ETIMEDOUT);
	T_EQ(shmp_lock_release(other), 0);
	shmp_cond_destroy(c);
	/* No segment given: the lock's segment is used. */
	o = SHMP_OPTS(shmp_cond_opts, .lock = other);
	c = shmp_cond_create(&o);
	T_CHECK(c);
	shmp_cond_destroy(c);

	shmp_lock_destroy(other);
	shmp_lock_destroy(here);
	shmp_segment_destroy(seg);
}

/* ---- a waiter killed while waiting -------------------------------------- */
static int forever_child(void *p)
{
	struct nw_arg *a = p;
	lock(a->c);
	T_EQ(shmp_array_add(a->st, 0, 1, NULL), 0);
	shmp_cond_wait(a->c, SHMP_FOREVER);
	/* Must never get here: it is killed while waiting. */
	T_EQ(shmp_array_add(a->st, 1, 100, NULL), 0);
	unlock(a->c);
	return 1;
}

static void test_dead_waiter(void)
{
	shmp_cond_t *c = shmp_cond_create(NULL);
	T_CHECK(c);
	shmp_array_t *st = t_counters(2 + 4);
	struct nw_arg dead = { c, st, 0, 0 }, live[3];
	pid_t pd, pl[3];

	/* The doomed waiter goes first, so it is the older one. */
	pd = t_spawn(forever_child, &dead);
	t_wait_eq(st, 0, 1, 5);
	start_waiters(live, pl, 1, c, st, 1, 10);
	t_kill_reap(pd, 5);
	T_EQ(t_load(st, 1), 0);

	lock(c);
	T_EQ(shmp_cond_notify(c, 1), 1);
	unlock(c);
	t_wait_ok(pl[0], 5);
	T_EQ(t_load(st, 1), 1);
	T_EQ(t_load(st, 2 + 1), 0);

	/* Only the dead one is left "waiting": nobody can be woken. */
	lock(c);
	T_EQ(shmp_cond_notify_all(c), 0);
	unlock(c);

	/* Two new live waiters; notify(1) wakes exactly one of them, even after
	 * each has had time to wake on its own (the wait sleeps in slices of
	 * up to 1 s) and look for a wake-up to take. */
	start_waiters(live, pl, 2, c, st, 2, 10);
	lock(c);
	T_EQ(shmp_cond_notify(c, 1), 1);
	unlock(c);
	t_wait_eq(st, 1, 2, 5);
	t_sleep_ms(1300);
	T_EQ(t_load(st, 1), 2);
	lock(c);
	T_EQ(shmp_cond_notify(c, 1), 1);
	unlock(c);
	for (int k = 0; k < 2; k++)
		t_wait_ok(pl[k], 10);
	T_EQ(t_load(st, 1), 3);
	T_EQ(t_load(st, 2 + 2), 0);
	T_EQ(t_load(st, 2 + 3), 0);

	shmp_cond_destroy(c);
	shmp_array_destroy(st);
}

int main(void)
{
	t_watchdog(90);
	atexit(t_reap_all);
	test_wait_releases();
	test_notify_counts();
	test_notify_all();
	test_lost_and_timeout();
	test_wait_for();
	test_eperm();
	test_rlock_depth();
	test_exdev();
	test_dead_waiter();
	return 0;
}
