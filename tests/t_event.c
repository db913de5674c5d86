/* Event, across processes:
 * - Unset: is_set() is 0, wait(0) is -ETIMEDOUT at once, wait(0.2) is
 *   -ETIMEDOUT after about 0.2 s.
 * - set() wakes every waiter in 4 processes; all return 0 promptly; none
 *   returned before the set.
 * - is_set() follows set()/clear(); wait after set returns 0 at once, after
 *   clear it times out again; set and clear twice are harmless.
 * - A waiter SIGKILLed while waiting does not disturb set/wait for others.
 * - NULL handles are -EINVAL. */
#include "t.h"

static void test_unset(void)
{
	shmp_event_t *e = shmp_event_create(NULL);
	T_CHECK(e);
	T_EQ(shmp_event_is_set(e), 0);
	T_FAST(shmp_event_wait(e, 0), -ETIMEDOUT);
	T_ABOUT(shmp_event_wait(e, 0.2), -ETIMEDOUT);
	T_EQ(shmp_event_is_set(e), 0);

	/* set / clear / is_set, and wait on a set event returns at once. */
	T_EQ(shmp_event_set(e), 0);
	T_EQ(shmp_event_is_set(e), 1);
	double t0 = t_now();
	T_EQ(shmp_event_wait(e, 0), 0);
	T_EQ(shmp_event_wait(e, 0.2), 0);
	T_EQ(shmp_event_wait(e, SHMP_FOREVER), 0);
	T_CHECK(t_now() - t0 < 0.5);
	T_EQ(shmp_event_set(e), 0); /* twice: still set */
	T_EQ(shmp_event_is_set(e), 1);
	T_EQ(shmp_event_clear(e), 0);
	T_EQ(shmp_event_is_set(e), 0);
	T_EQ(shmp_event_clear(e), 0);
	T_EQ(shmp_event_is_set(e), 0);
	T_EQ(shmp_event_wait(e, 0), -ETIMEDOUT);
	t0 = t_now();
	T_EQ(shmp_event_wait(e, 0.05), -ETIMEDOUT);
	T_CHECK(t_now() - t0 >= 0.045);
	shmp_event_destroy(e);

	T_EQ(shmp_event_set(NULL), -EINVAL);
	T_EQ(shmp_event_clear(NULL), -EINVAL);
	T_EQ(shmp_event_is_set(NULL), -EINVAL);
	T_EQ(shmp_event_wait(NULL, 0), -EINVAL);
	shmp_event_destroy(NULL);
}

/* ---- waiters in other processes ----------------------------------------- */
#define NW 4

struct w_arg {
	shmp_event_t *e;
	shmp_array_t *st; /* q: [0] ready, [1] returned, [2 + k] result of waiter k */
	shmp_array_t *at; /* d: [k] time waiter k returned (CLOCK_MONOTONIC) */
	int k;
	double timeout;
};

static int w_child(void *p)
{
	struct w_arg *a = p;
	T_EQ(shmp_array_add(a->st, 0, 1, NULL), 0);
	int r = shmp_event_wait(a->e, a->timeout);
	T_EQ(shmp_array_set_f64(a->at, (size_t)a->k, t_now()), 0);
	T_EQ(shmp_array_store(a->st, 2 + (size_t)a->k, r), 0);
	T_EQ(shmp_array_add(a->st, 1, 1, NULL), 0);
	return 0;
}

static void test_set_wakes_all(void)
{
	shmp_event_t *e = shmp_event_create(NULL);
	T_CHECK(e);
	shmp_array_t *st = t_counters(2 + NW), *at = t_raw_array('d', NW);
	struct w_arg a[NW];
	pid_t p[NW];
	for (int k = 0; k < NW; k++) {
		a[k] = (struct w_arg){ e, st, at, k, 10 };
		T_EQ(shmp_array_store(st, 2 + (size_t)k, 1), 0); /* "no result yet" */
		p[k] = t_spawn(w_child, &a[k]);
	}
	t_wait_eq(st, 0, NW, 5);
	/* Let them fall asleep: 200 ms is plenty, and if one were not asleep
	 * yet it would still see the flag. */
	t_sleep_ms(200);
	T_EQ(t_load(st, 1), 0); /* nobody returned before the set */
	double t_set = t_now();
	T_EQ(shmp_event_set(e), 0);
	for (int k = 0; k < NW; k++)
		t_wait_ok(p[k], 10);
	T_EQ(t_load(st, 1), NW);
	for (int k = 0; k < NW; k++) {
		double t = 0;
		T_EQ(t_load(st, 2 + (size_t)k), 0);
		T_EQ(shmp_array_get_f64(at, (size_t)k, &t), 0);
		T_CHECK(t >= t_set);
		T_CHECK(t - t_set < 2.0); /* promptly, not on some slow poll */
	}
	T_EQ(shmp_event_is_set(e), 1);

	/* Cleared again: new waiters time out. */
	T_EQ(shmp_event_clear(e), 0);
	T_EQ(shmp_array_store(st, 0, 0), 0);
	T_EQ(shmp_array_store(st, 1, 0), 0);
	for (int k = 0; k < 2; k++) {
		a[k] = (struct w_arg){ e, st, at, k, 0.2 };
		p[k] = t_spawn(w_child, &a[k]);
	}
	for (int k = 0; k < 2; k++)
		t_wait_ok(p[k], 10);
	for (int k = 0; k < 2; k++)
		T_EQ(t_load(st, 2 + (size_t)k), -ETIMEDOUT);

	shmp_event_destroy(e);
	shmp_array_destroy(st);
	shmp_array_destroy(at);
}

/* ---- a waiter killed while waiting -------------------------------------- */
static void test_dead_waiter(void)
{
	shmp_event_t *e = shmp_event_create(NULL);
	T_CHECK(e);
	shmp_array_t *st = t_counters(2 + 3), *at = t_raw_array('d', 3);
	struct w_arg a[3];
	pid_t p[3];
	for (int k = 0; k < 2; k++) {
		/* Waiter 0 waits forever and is killed; waiter 1 is live. */
		a[k] = (struct w_arg){ e, st, at, k, k == 0 ? SHMP_FOREVER : 10 };
		T_EQ(shmp_array_store(st, 2 + (size_t)k, 1), 0);
		p[k] = t_spawn(w_child, &a[k]);
	}
	t_wait_eq(st, 0, 2, 5);
	t_sleep_ms(200); /* let both fall asleep */
	t_kill_reap(p[0], 5);
	T_EQ(t_load(st, 1), 0);
	T_EQ(shmp_event_is_set(e), 0);
	/* A wait with a timeout still times out. */
	T_EQ(shmp_event_wait(e, 0.05), -ETIMEDOUT);

	double t_set = t_now();
	T_EQ(shmp_event_set(e), 0);
	t_wait_ok(p[1], 10);
	T_CHECK(t_now() - t_set < 3.0);
	T_EQ(t_load(st, 1), 1);
	T_EQ(t_load(st, 2 + 0), 1); /* the dead one never returned */
	T_EQ(t_load(st, 2 + 1), 0);
	T_EQ(shmp_event_wait(e, 0), 0);

	/* Still a working event: clear, a new waiter sleeps until set. */
	T_EQ(shmp_event_clear(e), 0);
	T_EQ(shmp_event_wait(e, 0), -ETIMEDOUT);
	a[2] = (struct w_arg){ e, st, at, 2, 10 };
	T_EQ(shmp_array_store(st, 2 + 2, 1), 0);
	p[2] = t_spawn(w_child, &a[2]);
	t_wait_eq(st, 0, 3, 5);
	t_sleep_ms(100);
	T_EQ(t_load(st, 1), 1);
	T_EQ(shmp_event_set(e), 0);
	t_wait_ok(p[2], 10);
	T_EQ(t_load(st, 2 + 2), 0);

	shmp_event_destroy(e);
	shmp_array_destroy(st);
	shmp_array_destroy(at);
}

int main(void)
{
	t_watchdog(60);
	atexit(t_reap_all);
	test_unset();
	test_set_wakes_all();
	test_dead_waiter();
	return 0;
}
