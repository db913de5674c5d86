/* Condition hand-off: a notify made under the lock wakes a sleeping waiter
 * when the notifier frees the lock (not before: it would find the lock
 * taken and sleep again on it), and that deferred wake is never lost:
 * - lock, notify, hold 100 ms, release: the waiter returns only after the
 *   release, and within 40 ms of it (a lost wake is only noticed at the
 *   waiter's next look, 50 ms to 0.5 s later);
 * - on an RLock held at depth 2, releasing one level wakes nobody, the
 *   second does;
 * - notify_all of 12 sleeping waiters (more than a thread defers: the rest
 *   are woken at once) wakes every one within 40 ms of the release;
 * - a thread that notifies and ends holding the lock: the waiter returns
 *   -EOWNERDEAD (the lock is its, inconsistent) within 40 ms of the end;
 * - so does a process that notifies and calls exit() holding it.
 * Each case twice (see run() for a late return). */
#include "t.h"

#include <pthread.h>
#include <stdbool.h>

#define NW 12
#define PROMPT_MS 40.0

static shmp_cond_t *C;
static shmp_array_t *St; /* [0] waiters about to wait, [1 + i] waiter i's return (us, 0 none), [20 + i] its result */

static int64_t now_us(void)
{
	return (int64_t)(t_now() * 1e6);
}

static int waiter(void *arg)
{
	int i = (int)(intptr_t)arg;
	shmp_lock_t *l = shmp_cond_lock(C);
	T_EQ(shmp_lock_acquire(l, 10), 0);
	T_EQ(shmp_array_add(St, 0, 1, NULL), 0);
	int r = shmp_cond_wait(C, 20);
	T_EQ(shmp_array_store(St, 1 + (size_t)i, now_us()), 0);
	T_EQ(shmp_array_store(St, 20 + (size_t)i, r), 0);
	if (r == -EOWNERDEAD)
		T_EQ(shmp_lock_consistent(l), 0);
	T_EQ(shmp_lock_release(l), 0);
	return 0;
}

/* n waiters asleep in wait(). */
static void start(pid_t *p, int n)
{
	for (int i = 0; i < 40; i++)
		T_EQ(shmp_array_store(St, (size_t)i, 0), 0);
	for (int i = 0; i < n; i++)
		p[i] = t_spawn(waiter, (void *)(intptr_t)i);
	t_wait_eq(St, 0, n, 10);
	t_sleep_ms(150); /* asleep by now (they released the lock in wait) */
}

static const char *cur = ""; /* the case running */
static bool prompt;           /* every waiter of the case returned within PROMPT_MS */

/* Every waiter returned with `want`; prompt says whether all did within
 * PROMPT_MS of t0 (us). */
static void check(pid_t *p, int n, int64_t t0, int want)
{
	for (int i = 0; i < n; i++)
		t_wait_ok(p[i], 10);
	for (int i = 0; i < n; i++) {
		int64_t t = t_load(St, 1 + (size_t)i);
		T_EQ(t_load(St, 20 + (size_t)i), want);
		T_CHECK(t >= t0);
		if ((double)(t - t0) > PROMPT_MS * 1000) {
			fprintf(stderr, "%s: waiter %d returned %.1f ms after the release\n", cur, i,
				(double)(t - t0) / 1000);
			prompt = false;
		}
	}
}

/* A lost wake shows as a late return every time (the waiter sees it only
 * at its next look, 50 to 500 ms later); a busy machine can delay one
 * return: a case fails if it is late 3 times in a row. */
static void run(void (*fn)(void))
{
	for (int k = 0; k < 3; k++) {
		prompt = true;
		fn();
		if (prompt)
			return;
	}
	fprintf(stderr, "%s: late 3 times in a row\n", cur);
	T_CHECK(0);
}

static void test_release_wakes(void)
{
	cur = "release_wakes";
	pid_t p[1];
	start(p, 1);
	shmp_lock_t *l = shmp_cond_lock(C);
	T_EQ(shmp_lock_acquire(l, 10), 0);
	T_EQ(shmp_cond_notify(C, 1), 1);
	t_sleep_ms(100);
	T_EQ(t_load(St, 1), 0); /* cannot return without the lock */
	int64_t t0 = now_us();
	T_EQ(shmp_lock_release(l), 0);
	check(p, 1, t0, 0);
}

static void test_rlock_depth(void)
{
	cur = "rlock_depth";
	pid_t p[1];
	start(p, 1);
	shmp_lock_t *l = shmp_cond_lock(C);
	T_EQ(shmp_lock_acquire(l, 10), 0);
	T_EQ(shmp_lock_acquire(l, 10), 0);
	T_EQ(shmp_cond_notify(C, 1), 1);
	T_EQ(shmp_lock_release(l), 0); /* depth 1: still ours */
	t_sleep_ms(100);
	T_EQ(t_load(St, 1), 0);
	int64_t t0 = now_us();
	T_EQ(shmp_lock_release(l), 0);
	check(p, 1, t0, 0);
}

static void test_many(void)
{
	cur = "many";
	pid_t p[NW];
	start(p, NW);
	shmp_lock_t *l = shmp_cond_lock(C);
	T_EQ(shmp_lock_acquire(l, 10), 0);
	T_EQ(shmp_cond_notify_all(C), NW);
	int64_t t0 = now_us();
	T_EQ(shmp_lock_release(l), 0);
	check(p, NW, t0, 0);
}

static int64_t thread_end;

static void *notify_and_end(void *arg)
{
	(void)arg;
	T_EQ(shmp_lock_acquire(shmp_cond_lock(C), 10), 0);
	T_EQ(shmp_cond_notify(C, 1), 1);
	thread_end = now_us();
	return NULL; /* holding the lock */
}

static void test_thread_end(void)
{
	cur = "thread_end";
	pid_t p[1];
	start(p, 1);
	pthread_t th;
	T_EQ(pthread_create(&th, NULL, notify_and_end, NULL), 0);
	T_EQ(pthread_join(th, NULL), 0);
	check(p, 1, thread_end, -EOWNERDEAD);
}

static int notify_and_exit(void *arg)
{
	(void)arg;
	T_EQ(shmp_lock_acquire(shmp_cond_lock(C), 10), 0);
	T_EQ(shmp_cond_notify(C, 1), 1);
	T_EQ(shmp_array_store(St, 39, now_us()), 0);
	exit(0); /* holding the lock */
}

static void test_process_exit(void)
{
	cur = "process_exit";
	pid_t p[1];
	start(p, 1);
	pid_t n = t_spawn(notify_and_exit, NULL);
	t_wait_ok(n, 10);
	check(p, 1, t_load(St, 39), -EOWNERDEAD);
}

int main(void)
{
	t_watchdog(120);
	T_CHECK((C = shmp_cond_create(NULL)));
	T_CHECK((St = t_counters(40)));
	for (int k = 0; k < 2; k++) {
		run(test_release_wakes);
		run(test_rlock_depth);
		run(test_many);
		run(test_thread_end);
		run(test_process_exit);
	}
	shmp_cond_destroy(C);
	shmp_array_destroy(St);
	T_NO_CHILDREN();
	return 0;
}
