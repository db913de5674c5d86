/* Barrier, across processes:
 * - 3 parties in 3 processes pass together for 1 round and for 1,000 rounds:
 *   each round's indices are 0..2, distinct (exactly one 0), and nobody leaves
 *   a round before everyone has arrived at it.
 * - The action runs exactly once per round, before anyone is released.
 * - abort(): the waiters get -SHMP_EBROKEN, later waits too, until reset();
 *   reset() makes it usable again; parties waiting during reset get
 *   -SHMP_EBROKEN; after reset() the members of the round before (exited
 *   since) do not break the next round of new processes.
 * - A party late past its timeout gets -ETIMEDOUT (after about that time) and
 *   the others, waiting or arriving later, get -SHMP_EBROKEN.
 * - opts.timeout caps every wait: wait(-1), wait(-5) and wait(10) time out
 *   after it, a shorter wait(0.05) keeps its own, wait(0) polls; a round
 *   within the cap passes; opts.timeout 0 or negative means none; NaN is
 *   EINVAL at create and -EINVAL for a wait (which then arrives nowhere).
 * - Barrier(1) never blocks; parties(), n_waiting(), broken().
 * - 0 or too many parties is EINVAL; NULL handles are -EINVAL. */
#include "t.h"

/* Each round's indices are a permutation of 0..n-1. */
static void check_round(shmp_array_t *rec, int round, int n)
{
	unsigned seen = 0;
	for (int k = 0; k < n; k++) {
		int64_t idx = t_load(rec, (size_t)(round * n + k));
		if (idx < 0 || idx >= n || (seen & (1u << idx))) {
			fprintf(stderr, "round %d: process %d got index %lld\n", round, k,
				(long long)idx);
			exit(1);
		}
		seen |= 1u << idx;
	}
	T_EQ(seen, (1u << n) - 1);
}

/* ---- rounds -------------------------------------------------------------- */
#define N 3
#define ROUNDS 1000

struct r_arg {
	shmp_barrier_t *b;
	shmp_array_t *rec; /* [round * N + k]: index process k got in round */
	shmp_array_t *pos; /* [k]: round process k is waiting for */
	shmp_value_t *cnt; /* action runs, NULL: no action */
	int k, rounds;
};

static int r_child(void *p)
{
	struct r_arg *a = p;
	for (int r = 0; r < a->rounds; r++) {
		T_EQ(shmp_array_store(a->pos, (size_t)a->k, r), 0);
		int idx = shmp_barrier_wait(a->b, 10);
		if (idx < 0 || idx >= N) {
			fprintf(stderr, "process %d round %d: wait -> %d (%s)\n", a->k, r, idx,
				shmp_strerror(idx));
			return 1;
		}
		T_EQ(shmp_array_store(a->rec, (size_t)(r * N + a->k), idx), 0);
		/* Everyone has arrived at round r, and nobody is past r + 1
		 * (that needs us). */
		for (int j = 0; j < N; j++) {
			int64_t q = t_load(a->pos, (size_t)j);
			if (q < r || q > r + 1) {
				fprintf(stderr, "process %d left round %d with process %d at %lld\n",
					a->k, r, j, (long long)q);
				return 1;
			}
		}
		if (a->cnt) {
			/* The action of round r ran before anyone was released,
			 * and round r + 1's cannot have run yet. */
			int64_t c = 0;
			T_EQ(shmp_value_load(a->cnt, &c), 0);
			if (c != r + 1) {
				fprintf(stderr, "process %d round %d: %lld actions\n", a->k, r,
					(long long)c);
				return 1;
			}
		}
	}
	return 0;
}

static int count_action(void *arg)
{
	return shmp_value_add(arg, 1, NULL);
}

static void run_rounds(int rounds, int with_action)
{
	shmp_value_t *cnt = t_raw_value('q');
	struct shmp_barrier_opts bo = SHMP_OPTS(shmp_barrier_opts, .action = count_action,
						.action_arg = cnt);
	shmp_barrier_t *b = shmp_barrier_create(N, with_action ? &bo : NULL);
	T_CHECK(b);
	shmp_array_t *rec = t_counters((size_t)rounds * N), *pos = t_counters(N);
	for (int i = 0; i < rounds * N; i++)
		T_EQ(shmp_array_store(rec, (size_t)i, -1), 0);
	struct r_arg a[N];
	pid_t p[N];
	for (int k = 0; k < N; k++) {
		a[k] = (struct r_arg){ b, rec, pos, with_action ? cnt : NULL, k, rounds };
		p[k] = t_spawn(r_child, &a[k]);
	}
	for (int k = 0; k < N; k++)
		t_wait_ok(p[k], 60);
	for (int r = 0; r < rounds; r++)
		check_round(rec, r, N);
	int64_t c = 0;
	T_EQ(shmp_value_load(cnt, &c), 0);
	T_EQ(c, with_action ? rounds : 0);
	T_EQ(shmp_barrier_n_waiting(b), 0);
	T_EQ(shmp_barrier_is_broken(b), 0);
	shmp_barrier_destroy(b);
	shmp_array_destroy(rec);
	shmp_array_destroy(pos);
	shmp_value_destroy(cnt);
}

/* ---- one wait per child --------------------------------------------------- */
struct w_arg {
	shmp_barrier_t *b;
	shmp_array_t *st; /* [k]: result of child k, [8 + k]: seconds * 1000 it took */
	int k;
	double timeout;
	long delay_ms; /* sleep before arriving */
};

static int w_child(void *p)
{
	struct w_arg *a = p;
	if (a->delay_ms)
		t_sleep_ms(a->delay_ms);
	double t0 = t_now();
	int r = shmp_barrier_wait(a->b, a->timeout);
	T_EQ(shmp_array_store(a->st, 8 + (size_t)a->k, (int64_t)((t_now() - t0) * 1000)), 0);
	T_EQ(shmp_array_store(a->st, (size_t)a->k, r), 0);
	return 0;
}

static pid_t start_w(struct w_arg *a, shmp_barrier_t *b, shmp_array_t *st, int k,
		     double timeout, long delay_ms)
{
	*a = (struct w_arg){ b, st, k, timeout, delay_ms };
	T_EQ(shmp_array_store(st, (size_t)k, 12345), 0); /* no result yet */
	return t_spawn(w_child, a);
}

/* A full round of 3 with two children and the parent: indices 0..2. */
static void full_round(shmp_barrier_t *b, shmp_array_t *st)
{
	struct w_arg a[2];
	pid_t p[2];
	for (int k = 0; k < 2; k++)
		p[k] = start_w(&a[k], b, st, k, 10, 0);
	int r = shmp_barrier_wait(b, 10);
	for (int k = 0; k < 2; k++)
		t_wait_ok(p[k], 10);
	T_CHECK(r >= 0 && r < 3);
	int64_t r0 = t_load(st, 0), r1 = t_load(st, 1);
	T_CHECK(r0 >= 0 && r0 < 3 && r1 >= 0 && r1 < 3);
	T_CHECK(r0 != r1 && r0 != r && r1 != r);
	T_EQ(shmp_barrier_is_broken(b), 0);
}

static void test_abort_reset(void)
{
	shmp_barrier_t *b = shmp_barrier_create(3, NULL);
	T_CHECK(b);
	shmp_array_t *st = t_counters(16);
	struct w_arg a[2];
	pid_t p[2];

	/* abort() with two waiting. */
	for (int k = 0; k < 2; k++)
		p[k] = start_w(&a[k], b, st, k, 10, 0);
	t_wait_n_waiting(b, 2);
	T_EQ(shmp_barrier_is_broken(b), 0);
	T_EQ(shmp_barrier_abort(b), 0);
	for (int k = 0; k < 2; k++) {
		t_wait_ok(p[k], 10);
		T_EQ(t_load(st, (size_t)k), -SHMP_EBROKEN);
		T_CHECK(t_load(st, 8 + (size_t)k) < 3000);
	}
	T_EQ(shmp_barrier_is_broken(b), 1);
	T_EQ(shmp_barrier_n_waiting(b), 0);
	/* Later waits are broken at once, not after their timeout. */
	double t0 = t_now();
	T_EQ(shmp_barrier_wait(b, 5), -SHMP_EBROKEN);
	T_EQ(shmp_barrier_wait(b, SHMP_FOREVER), -SHMP_EBROKEN);
	T_CHECK(t_now() - t0 < 1.0);
	T_EQ(shmp_barrier_abort(b), 0); /* again: still broken */
	T_EQ(shmp_barrier_is_broken(b), 1);

	/* reset() makes it usable. */
	T_EQ(shmp_barrier_reset(b), 0);
	T_EQ(shmp_barrier_is_broken(b), 0);
	T_EQ(shmp_barrier_n_waiting(b), 0);
	full_round(b, st);
	shmp_barrier_destroy(b);

	/* reset() with two waiting: they get -SHMP_EBROKEN, the barrier is
	 * usable right after. (A fresh barrier: its first arriver has no
	 * earlier round whose members it could find gone.) */
	b = shmp_barrier_create(3, NULL);
	T_CHECK(b);
	for (int k = 0; k < 2; k++)
		p[k] = start_w(&a[k], b, st, k, 10, 0);
	t_wait_n_waiting(b, 2);
	T_EQ(shmp_barrier_reset(b), 0);
	for (int k = 0; k < 2; k++) {
		t_wait_ok(p[k], 10);
		T_EQ(t_load(st, (size_t)k), -SHMP_EBROKEN);
	}
	T_EQ(shmp_barrier_is_broken(b), 0);
	T_EQ(shmp_barrier_n_waiting(b), 0);
	full_round(b, st);
	shmp_barrier_destroy(b);
	shmp_array_destroy(st);
}

/* reset() is "back to empty": the members of the round before it, which have
 * since exited, are not parties of the next round, so new processes using the
 * barrier after reset() must not find it broken because those are gone. The
 * parent arrives 300 ms after the others so their liveness checks run. */
static void test_reset_forgets_members(void)
{
	shmp_barrier_t *b = shmp_barrier_create(3, NULL);
	T_CHECK(b);
	shmp_array_t *st = t_counters(16);
	struct w_arg a[2];
	pid_t p[2];
	full_round(b, st); /* members: the parent and two children, now gone */
	T_EQ(shmp_barrier_reset(b), 0);
	for (int k = 0; k < 2; k++)
		p[k] = start_w(&a[k], b, st, k, 10, 0);
	t_sleep_ms(300);
	T_EQ(shmp_barrier_is_broken(b), 0);
	t_wait_n_waiting(b, 2);
	int r = shmp_barrier_wait(b, 10);
	for (int k = 0; k < 2; k++)
		t_wait_ok(p[k], 10);
	T_EQ(r, 2); /* the parent came last */
	T_EQ(t_load(st, 0) + t_load(st, 1), 1);
	T_EQ(t_load(st, 0) * t_load(st, 1), 0);
	shmp_barrier_destroy(b);
	shmp_array_destroy(st);
}

static void test_timeout(void)
{
	shmp_barrier_t *b = shmp_barrier_create(3, NULL);
	T_CHECK(b);
	shmp_array_t *st = t_counters(16);
	struct w_arg a[3];
	pid_t p[3];

	/* Alone with a 0.2 s timeout. */
	p[0] = start_w(&a[0], b, st, 0, 0.2, 0);
	t_wait_ok(p[0], 10);
	T_EQ(t_load(st, 0), -ETIMEDOUT);
	T_CHECK(t_load(st, 8) >= 190);
	T_CHECK(t_load(st, 8) < 2000);
	T_EQ(shmp_barrier_is_broken(b), 1);
	/* The others arrive later: broken, at once. */
	for (int k = 1; k < 3; k++)
		p[k] = start_w(&a[k], b, st, k, 10, 0);
	for (int k = 1; k < 3; k++) {
		t_wait_ok(p[k], 10);
		T_EQ(t_load(st, (size_t)k), -SHMP_EBROKEN);
		T_CHECK(t_load(st, 8 + (size_t)k) < 1000);
	}
	T_EQ(shmp_barrier_reset(b), 0);
	full_round(b, st);
	shmp_barrier_destroy(b);

	/* One already waiting (no timeout to speak of), the late one with
	 * 0.2 s: the late one times out, the waiting one is broken, and a
	 * third arriving after that is broken too. A fresh barrier, so that
	 * no earlier round's (exited) members are involved. */
	b = shmp_barrier_create(3, NULL);
	T_CHECK(b);
	p[1] = start_w(&a[1], b, st, 1, 10, 0);
	t_wait_n_waiting(b, 1);
	p[0] = start_w(&a[0], b, st, 0, 0.2, 0);
	t_wait_ok(p[0], 10);
	t_wait_ok(p[1], 10);
	T_EQ(t_load(st, 0), -ETIMEDOUT);
	T_CHECK(t_load(st, 8) >= 190);
	T_CHECK(t_load(st, 8) < 2000);
	T_EQ(t_load(st, 1), -SHMP_EBROKEN);
	T_CHECK(t_load(st, 9) < 5000);
	T_EQ(shmp_barrier_wait(b, 1), -SHMP_EBROKEN);
	T_EQ(shmp_barrier_reset(b), 0);
	full_round(b, st);
	shmp_barrier_destroy(b);

	/* wait(0) with nobody else there: a poll that fails at once. */
	b = shmp_barrier_create(3, NULL);
	T_CHECK(b);
	T_FAST(shmp_barrier_wait(b, 0), -ETIMEDOUT);
	T_EQ(shmp_barrier_is_broken(b), 1);

	shmp_barrier_destroy(b);
	shmp_array_destroy(st);
}

/* opts.timeout caps every wait of the handle; the call's timeout keeps its
 * common.h meaning (negative forever, 0 polls) under that cap. */
static void test_opts_timeout(void)
{
	shmp_array_t *st = t_counters(16);
	struct w_arg a;
	pid_t p;

	struct shmp_barrier_opts o = SHMP_OPTS(shmp_barrier_opts, .timeout = 0.2);
	shmp_barrier_t *b = shmp_barrier_create(2, &o);
	T_CHECK(b);
	/* Forever, capped at 0.2 s. */
	T_ABOUT(shmp_barrier_wait(b, SHMP_FOREVER), -ETIMEDOUT);
	T_EQ(shmp_barrier_is_broken(b), 1);
	T_EQ(shmp_barrier_reset(b), 0);
	T_ABOUT(shmp_barrier_wait(b, -5), -ETIMEDOUT);
	T_EQ(shmp_barrier_reset(b), 0);
	/* A longer explicit timeout is capped too (Python's would override). */
	T_ABOUT(shmp_barrier_wait(b, 10), -ETIMEDOUT);
	T_EQ(shmp_barrier_reset(b), 0);
	/* A shorter one is kept. */
	double t0 = t_now();
	T_EQ(shmp_barrier_wait(b, 0.05), -ETIMEDOUT);
	double dt = t_now() - t0;
	T_CHECK(dt >= 0.049 && dt < 0.19);
	T_EQ(shmp_barrier_reset(b), 0);
	/* 0 polls: at once. */
	T_FAST(shmp_barrier_wait(b, 0), -ETIMEDOUT);
	T_EQ(shmp_barrier_reset(b), 0);
	/* Within the cap, a round passes. */
	p = start_w(&a, b, st, 0, SHMP_FOREVER, 50);
	int r = shmp_barrier_wait(b, SHMP_FOREVER);
	t_wait_ok(p, 10);
	T_CHECK(r == 0 || r == 1);
	T_EQ(t_load(st, 0), 1 - r);
	/* NaN is -EINVAL, and arrives nowhere. */
	T_EQ(shmp_barrier_wait(b, 0.0 / 0.0), -EINVAL);
	T_EQ(shmp_barrier_n_waiting(b), 0);
	T_EQ(shmp_barrier_is_broken(b), 0);
	shmp_barrier_destroy(b);

	/* opts.timeout 0 (unset) or negative: no cap. The other party comes
	 * after 400 ms. */
	const double none[2] = { 0, -1 };
	for (int i = 0; i < 2; i++) {
		o = SHMP_OPTS(shmp_barrier_opts, .timeout = none[i]);
		b = shmp_barrier_create(2, &o);
		T_CHECK(b);
		p = start_w(&a, b, st, 0, 10, 400);
		r = shmp_barrier_wait(b, -3);
		t_wait_ok(p, 10);
		T_CHECK(r == 0 || r == 1);
		T_EQ(t_load(st, 0), 1 - r);
		shmp_barrier_destroy(b);
	}

	/* opts.timeout NaN has no meaning. */
	o = SHMP_OPTS(shmp_barrier_opts, .timeout = 0.0 / 0.0);
	errno = 0;
	T_CHECK(shmp_barrier_create(2, &o) == NULL);
	T_EQ(errno, EINVAL);

	shmp_array_destroy(st);
}

static void test_single_and_queries(void)
{
	shmp_value_t *cnt = t_raw_value('q');
	struct shmp_barrier_opts bo = SHMP_OPTS(shmp_barrier_opts, .action = count_action,
						.action_arg = cnt);
	shmp_barrier_t *b = shmp_barrier_create(1, &bo);
	T_CHECK(b);
	T_EQ(shmp_barrier_parties(b), 1);
	double t0 = t_now();
	for (int i = 0; i < 100; i++) {
		T_EQ(shmp_barrier_wait(b, SHMP_FOREVER), 0);
		T_EQ(shmp_barrier_wait(b, 0), 0);
	}
	T_CHECK(t_now() - t0 < 5);
	int64_t c = 0;
	T_EQ(shmp_value_load(cnt, &c), 0);
	T_EQ(c, 200);
	T_EQ(shmp_barrier_n_waiting(b), 0);
	T_EQ(shmp_barrier_is_broken(b), 0);
	shmp_barrier_destroy(b);
	shmp_value_destroy(cnt);

	/* n_waiting as parties arrive. */
	shmp_array_t *st = t_counters(16);
	b = shmp_barrier_create(3, NULL);
	T_CHECK(b);
	T_EQ(shmp_barrier_parties(b), 3);
	T_EQ(shmp_barrier_n_waiting(b), 0);
	T_EQ(shmp_barrier_is_broken(b), 0);
	struct w_arg a[2];
	pid_t p[2];
	p[0] = start_w(&a[0], b, st, 0, 10, 0);
	t_wait_n_waiting(b, 1);
	p[1] = start_w(&a[1], b, st, 1, 10, 0);
	t_wait_n_waiting(b, 2);
	t_sleep_ms(50);
	T_EQ(shmp_barrier_n_waiting(b), 2); /* nobody left early */
	T_EQ(t_load(st, 0), 12345);
	T_EQ(t_load(st, 1), 12345);
	int r = shmp_barrier_wait(b, 10);
	T_EQ(r, 2); /* the parent came last */
	for (int k = 0; k < 2; k++)
		t_wait_ok(p[k], 10);
	T_EQ(t_load(st, 0), 0);
	T_EQ(t_load(st, 1), 1);
	T_EQ(shmp_barrier_n_waiting(b), 0);
	shmp_barrier_destroy(b);
	shmp_array_destroy(st);

	/* Bad arguments. */
	errno = 0;
	T_CHECK(shmp_barrier_create(0, NULL) == NULL);
	T_EQ(errno, EINVAL);
	errno = 0;
	T_CHECK(shmp_barrier_create(SHMP_BARRIER_PARTIES_MAX + 1, NULL) == NULL);
	T_EQ(errno, EINVAL);
	b = shmp_barrier_create(SHMP_BARRIER_PARTIES_MAX, NULL);
	T_CHECK(b);
	T_EQ(shmp_barrier_parties(b), (int)SHMP_BARRIER_PARTIES_MAX);
	shmp_barrier_destroy(b);
	T_EQ(shmp_barrier_wait(NULL, 0), -EINVAL);
	T_EQ(shmp_barrier_abort(NULL), -EINVAL);
	T_EQ(shmp_barrier_reset(NULL), -EINVAL);
	T_EQ(shmp_barrier_parties(NULL), -EINVAL);
	T_EQ(shmp_barrier_n_waiting(NULL), -EINVAL);
	T_EQ(shmp_barrier_is_broken(NULL), -EINVAL);
	shmp_barrier_destroy(NULL);
}

int main(void)
{
	t_watchdog(120);
	atexit(t_reap_all);
	run_rounds(1, 0);
	run_rounds(1, 1);
	run_rounds(ROUNDS, 1);
	run_rounds(ROUNDS, 0);
	test_abort_reset();
	test_timeout();
	test_reset_forgets_members();
	test_opts_timeout();
	test_single_and_queries();
	return 0;
}
