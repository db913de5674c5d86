/* Barrier, when a party dies: the others get -SHMP_EBROKEN within a few
 * seconds instead of hanging.
 * (a) 3 parties pass a round; then two wait for the next while the third,
 *     a member of the round before, is SIGKILLed before it arrives. While
 *     it lives (just slow), nothing breaks.
 * (b) 3 parties, two waiting, one of them SIGKILLed while waiting (killed
 *     party arrived first, or second).
 * (c) An action that returns nonzero breaks the barrier for everyone in that
 *     round, and later waits stay broken.
 * (d) The parent is a party and its own child, also waiting, is SIGKILLed:
 *     the parent cannot reap it while it waits, and must still get
 *     -SHMP_EBROKEN rather than wait for its timeout. */
#include "t.h"

#define NONE 12345 /* "no result yet" */

/* ---- (a) a member of the last round dies before arriving ----------------- */
struct a_arg {
	shmp_barrier_t *b;
	/* [k] round 1 result, [3] passed round 1, [4 + k] round 2 result */
	shmp_array_t *st;
	int k;
};

static int a_child(void *p)
{
	struct a_arg *a = p;
	int r = shmp_barrier_wait(a->b, 10);
	T_EQ(shmp_array_store(a->st, (size_t)a->k, r), 0);
	T_EQ(shmp_array_add(a->st, 3, 1, NULL), 0);
	if (a->k == 2) {
		t_sleep_ms(30000); /* slow to come back: killed meanwhile */
		return 1;
	}
	r = shmp_barrier_wait(a->b, 10);
	T_EQ(shmp_array_store(a->st, 4 + (size_t)a->k, r), 0);
	return 0;
}

static void test_member_dies_before_arriving(void)
{
	shmp_barrier_t *b = shmp_barrier_create(3, NULL);
	T_CHECK(b);
	shmp_array_t *st = t_counters(8);
	struct a_arg a[3];
	pid_t p[3];
	for (int k = 0; k < 3; k++) {
		T_EQ(shmp_array_store(st, 4 + (size_t)k, NONE), 0);
		a[k] = (struct a_arg){ b, st, k };
		p[k] = t_spawn(a_child, &a[k]);
	}
	t_wait_eq(st, 3, 3, 10);
	unsigned seen = 0;
	for (int k = 0; k < 3; k++) {
		int64_t idx = t_load(st, (size_t)k);
		T_CHECK(idx >= 0 && idx < 3);
		seen |= 1u << idx;
	}
	T_EQ(seen, 7u);
	t_wait_n_waiting(b, 2);
	/* The third is alive, only slow: nothing breaks meanwhile (the
	 * liveness checks run several times in 300 ms). */
	t_sleep_ms(300);
	T_EQ(shmp_barrier_is_broken(b), 0);
	T_EQ(shmp_barrier_n_waiting(b), 2);
	T_EQ(t_load(st, 4), NONE);
	T_EQ(t_load(st, 5), NONE);

	t_kill_reap(p[2], 5);
	double t0 = t_now();
	t_wait_ok(p[0], 10);
	t_wait_ok(p[1], 10);
	T_CHECK(t_now() - t0 < 3.0);
	T_EQ(t_load(st, 4), -SHMP_EBROKEN);
	T_EQ(t_load(st, 5), -SHMP_EBROKEN);
	T_EQ(shmp_barrier_is_broken(b), 1);
	shmp_barrier_destroy(b);
	shmp_array_destroy(st);
}

/* ---- (b) a waiting party dies ------------------------------------------- */
struct w_arg {
	shmp_barrier_t *b;
	shmp_array_t *st; /* [k] result */
	int k;
	double timeout;
};

static int w_child(void *p)
{
	struct w_arg *a = p;
	int r = shmp_barrier_wait(a->b, a->timeout);
	T_EQ(shmp_array_store(a->st, (size_t)a->k, r), 0);
	return 0;
}

static pid_t start_w(struct w_arg *a, shmp_barrier_t *b, shmp_array_t *st, int k,
		     double timeout)
{
	*a = (struct w_arg){ b, st, k, timeout };
	T_EQ(shmp_array_store(st, (size_t)k, NONE), 0);
	return t_spawn(w_child, a);
}

static void waiter_dies(int doomed_first)
{
	shmp_barrier_t *b = shmp_barrier_create(3, NULL);
	T_CHECK(b);
	shmp_array_t *st = t_counters(2);
	struct w_arg a[2];
	pid_t p[2];
	/* Slot 0: the live one (10 s); slot 1: the doomed one (forever). */
	int order[2] = { doomed_first ? 1 : 0, doomed_first ? 0 : 1 };
	for (int i = 0; i < 2; i++) {
		int k = order[i];
		p[k] = start_w(&a[k], b, st, k, k == 0 ? 10 : SHMP_FOREVER);
		t_wait_n_waiting(b, i + 1);
	}
	t_sleep_ms(100);
	T_EQ(shmp_barrier_is_broken(b), 0);
	T_EQ(t_load(st, 0), NONE);

	t_kill_reap(p[1], 5);
	double t0 = t_now();
	t_wait_ok(p[0], 10);
	T_CHECK(t_now() - t0 < 3.0);
	T_EQ(t_load(st, 0), -SHMP_EBROKEN);
	T_EQ(t_load(st, 1), NONE);
	T_EQ(shmp_barrier_is_broken(b), 1);
	T_EQ(shmp_barrier_wait(b, 1), -SHMP_EBROKEN);
	shmp_barrier_destroy(b);
	shmp_array_destroy(st);
}

/* ---- (c) a failing action ------------------------------------------------ */
#define C_ROUNDS 4
#define C_FAIL 3 /* the third action run fails */

static int failing_action(void *arg)
{
	int64_t prev = 0;
	T_EQ(shmp_value_add(arg, 1, &prev), 0);
	return prev + 1 == C_FAIL ? 1 : 0;
}

struct c_arg {
	shmp_barrier_t *b;
	shmp_array_t *res; /* [round * 3 + k] */
	int k;
};

static int c_child(void *p)
{
	struct c_arg *a = p;
	for (int r = 0; r < C_ROUNDS; r++) {
		int x = shmp_barrier_wait(a->b, 10);
		T_EQ(shmp_array_store(a->res, (size_t)(r * 3 + a->k), x), 0);
	}
	return 0;
}

static void test_action_fails(void)
{
	shmp_value_t *cnt = t_raw_value('q');
	struct shmp_barrier_opts bo = SHMP_OPTS(shmp_barrier_opts, .action = failing_action,
						.action_arg = cnt);
	shmp_barrier_t *b = shmp_barrier_create(3, &bo);
	T_CHECK(b);
	shmp_array_t *res = t_counters(C_ROUNDS * 3);
	struct c_arg a[3];
	pid_t p[3];
	for (int k = 0; k < 3; k++) {
		a[k] = (struct c_arg){ b, res, k };
		p[k] = t_spawn(c_child, &a[k]);
	}
	for (int k = 0; k < 3; k++)
		t_wait_ok(p[k], 20);
	for (int r = 0; r < C_ROUNDS; r++) {
		unsigned seen = 0;
		for (int k = 0; k < 3; k++) {
			int64_t x = t_load(res, (size_t)(r * 3 + k));
			if (r < C_FAIL - 1) {
				T_CHECK(x >= 0 && x < 3);
				seen |= 1u << x;
			} else {
				T_EQ(x, -SHMP_EBROKEN);
			}
		}
		if (r < C_FAIL - 1)
			T_EQ(seen, 7u);
	}
	int64_t c = 0;
	T_EQ(shmp_value_load(cnt, &c), 0);
	T_EQ(c, C_FAIL); /* broken after it: no further action runs */
	T_EQ(shmp_barrier_is_broken(b), 1);
	shmp_barrier_destroy(b);

	/* Barrier(1) with a failing action: broken on that very call. */
	T_EQ(shmp_value_store(cnt, C_FAIL - 1), 0);
	b = shmp_barrier_create(1, &bo);
	T_CHECK(b);
	T_EQ(shmp_barrier_wait(b, 0), -SHMP_EBROKEN);
	T_EQ(shmp_barrier_is_broken(b), 1);
	T_EQ(shmp_barrier_wait(b, 0), -SHMP_EBROKEN);
	T_EQ(shmp_barrier_reset(b), 0);
	T_EQ(shmp_barrier_wait(b, 0), 0);
	shmp_barrier_destroy(b);
	shmp_array_destroy(res);
	shmp_value_destroy(cnt);
}

/* ---- (d) the waiting parent's own child dies ----------------------------- */
struct k_arg {
	shmp_barrier_t *b;
	pid_t victim;
};

static int killer_child(void *p)
{
	struct k_arg *a = p;
	double until = t_now() + 5;
	while (shmp_barrier_n_waiting(a->b) != 2 && t_now() < until)
		t_sleep_ms(1);
	if (shmp_barrier_n_waiting(a->b) != 2)
		return 1;
	t_sleep_ms(50);
	return kill(a->victim, SIGKILL) == 0 ? 0 : 2;
}

static void test_parent_waits_child_dies(void)
{
	shmp_barrier_t *b = shmp_barrier_create(3, NULL);
	T_CHECK(b);
	shmp_array_t *st = t_counters(2);
	struct w_arg a;
	pid_t victim = start_w(&a, b, st, 0, SHMP_FOREVER);
	t_wait_n_waiting(b, 1);
	struct k_arg ka = { b, victim };
	pid_t killer = t_spawn(killer_child, &ka);
	double t0 = t_now();
	int r = shmp_barrier_wait(b, 5);
	double dt = t_now() - t0;
	t_wait_ok(killer, 10);
	int stv = t_wait(victim, 5);
	T_CHECK(WIFSIGNALED(stv) && WTERMSIG(stv) == SIGKILL);
	if (r != -SHMP_EBROKEN)
		fprintf(stderr, "parent's wait: %d (%s) after %.2f s (its killed child "
			"stays an unreaped zombie while the parent waits)\n",
			r, shmp_strerror(r), dt);
	T_EQ(r, -SHMP_EBROKEN);
	T_CHECK(dt < 3.0);
	shmp_barrier_destroy(b);
	shmp_array_destroy(st);
}

int main(void)
{
	t_watchdog(90);
	atexit(t_reap_all);
	test_member_dies_before_arriving();
	waiter_dies(1);
	waiter_dies(0);
	test_action_fails();
	test_parent_waits_child_dies();
	return 0;
}
