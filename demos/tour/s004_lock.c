/* Seed 004 (Chinese), 状态同步 (synchronization): the tutorial names Lock
 * and RLock and links Python's documentation. Lock: its example, ten
 * processes printing 'hello world', i under one lock, plus an unprotected
 * read-sleep-write of a shared counter that only the lock keeps exact.
 * RLock: the owner takes it again (nested with-blocks); a Lock would
 * deadlock there, and shmp says so at once with -EDEADLK. */
#include "tour.h"

#include <unistd.h>

struct lock_args {
	shmp_lock_t *l;
	shmp_value_t *count; /* raw: only the lock protects it */
	int i;
};

/* def f(l, i): l.acquire(); try: print('hello world', i) finally: l.release() */
static int f(void *arg)
{
	struct lock_args *a = arg;
	if (shmp_lock_acquire(a->l, TOUR_WAIT))
		return 1;
	say("hello world %d   (pid %d)", a->i, (int)getpid());
	/* Read, wait, write: two processes in here at once would lose one. */
	int64_t *c = shmp_value_ptr(a->count);
	int64_t v = *(volatile int64_t *)c;
	nap_ms(2);
	*(volatile int64_t *)c = v + 1;
	return shmp_lock_release(a->l) ? 2 : 0;
}

/* Start n processes running fn(&args[i]), join them; 1 if all exited 0. */
static int run_all(shmp_process_fn fn, void *args, size_t size, int n)
{
	shmp_process_t *p[16];
	int all_ok = 1;
	for (int i = 0; i < n; i++) {
		p[i] = shmp_process_create(fn, (char *)args + (size_t)i * size, NULL);
		if (!CHECK(p[i] != NULL) || !CHECK_EQ(shmp_process_start(p[i]), 0))
			all_ok = 0;
	}
	for (int i = 0; i < n; i++) {
		if (!p[i])
			continue;
		int code = -1;
		if (!CHECK_EQ(shmp_process_join(p[i], TOUR_WAIT), 0) ||
		    !CHECK_EQ(shmp_process_exitcode(p[i], &code), 1) || !CHECK_EQ(code, 0))
			all_ok = 0;
		shmp_process_destroy(p[i]);
	}
	return all_ok;
}

int sec_lock(void)
{
	enum { N = 10 };
	/* lock = Lock() */
	shmp_lock_t *lock = shmp_lock_create(NULL);
	struct shmp_value_opts raw = SHMP_OPTS(shmp_value_opts, .raw = 1);
	shmp_value_t *count = shmp_value_create('q', NULL, &raw);
	if (CHECK(lock && count)) {
		/* for num in range(10): Process(target=f, args=(lock, num)).start() */
		struct lock_args a[N];
		for (int i = 0; i < N; i++)
			a[i] = (struct lock_args){ lock, count, i };
		run_all(f, a, sizeof a[0], N);
		int64_t n = -1;
		shmp_value_get_i64(count, &n);
		say("counter: %lld (10 read-sleep-write updates, none lost)", (long long)n);
		CHECK_EQ(n, N);
		CHECK_EQ(shmp_lock_is_locked(lock), 0);
	}
	shmp_value_destroy(count);
	shmp_lock_destroy(lock);
	return 0;
}

struct rlock_args {
	shmp_lock_t *rlock;
	shmp_value_t *count;
};

/* def inner(): with rlock: count.value += 1 — called with rlock held */
static int inner(struct rlock_args *a)
{
	if (shmp_lock_acquire(a->rlock, TOUR_WAIT))
		return 1;
	int depth = shmp_lock_count(a->rlock);
	say("pid %d: inner() took the RLock again, depth %d", (int)getpid(), depth);
	(*(int64_t *)shmp_value_ptr(a->count))++;
	if (shmp_lock_release(a->rlock))
		return 2;
	return depth == 2 ? 0 : 3;
}

/* def outer(): with rlock: inner() */
static int outer(void *arg)
{
	struct rlock_args *a = arg;
	if (shmp_lock_acquire(a->rlock, TOUR_WAIT))
		return 4;
	int rc = inner(a);
	/* Still held once: inner's release only undid its own acquire. */
	if (!rc && shmp_lock_count(a->rlock) != 1)
		rc = 5;
	if (shmp_lock_release(a->rlock))
		return 6;
	return rc;
}

int sec_rlock(void)
{
	enum { N = 3 };
	/* rlock = RLock() */
	shmp_lock_t *rlock = shmp_rlock_create(NULL);
	struct shmp_value_opts raw = SHMP_OPTS(shmp_value_opts, .raw = 1);
	shmp_value_t *count = shmp_value_create('q', NULL, &raw);
	shmp_lock_t *lock = shmp_lock_create(NULL);
	if (CHECK(rlock && count && lock)) {
		struct rlock_args a[N];
		for (int i = 0; i < N; i++)
			a[i] = (struct rlock_args){ rlock, count };
		run_all(outer, a, sizeof a[0], N);
		int64_t n = -1;
		shmp_value_get_i64(count, &n);
		CHECK_EQ(n, N);
		CHECK_EQ(shmp_lock_is_locked(rlock), 0);

		/* The same nesting on a Lock: Python's second acquire() never
		 * returns; shmp's returns -EDEADLK at once. */
		CHECK_EQ(shmp_lock_acquire(lock, TOUR_WAIT), 0);
		double t = tour_now();
		int rc = shmp_lock_acquire(lock, TOUR_WAIT);
		t = tour_now() - t;
		say("Lock acquired twice by its owner -> %s after %.1f ms (Python: a deadlock)",
		    rcname(rc), t * 1000);
		CHECK_EQ(rc, -EDEADLK);
		CHECK(t < 1.0);
		CHECK_EQ(shmp_lock_release(lock), 0);
		CHECK_EQ(shmp_lock_is_recursive(rlock), 1);
		CHECK_EQ(shmp_lock_is_recursive(lock), 0);
	}
	shmp_value_destroy(count);
	shmp_lock_destroy(rlock);
	shmp_lock_destroy(lock);
	return 0;
}
