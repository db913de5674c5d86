/* Value atomics: load/store/add/cas on every integer typecode and width,
 * with C wrap-around (e.g. 'B' 255 + 1 == 0); cas success and failure (the
 * failure writes the current value to *expected and changes nothing);
 * -EINVAL on f d c ?. Exact totals from 2 processes x 1,000,000 atomic adds
 * and 2 processes x 200,000 increments under get_lock through the pointer. */
#include "t.h"

static shmp_value_t *mk(char tc)
{
	shmp_value_t *v = shmp_value_create(tc, NULL, NULL);
	T_CHECK(v);
	return v;
}

static int64_t load(shmp_value_t *v)
{
	int64_t x = 0x5a5a5a5a;
	T_EQ(shmp_value_load(v, &x), 0);
	return x;
}

struct wrap_case {
	char tc;
	int64_t max;     /* largest value, as read back through int64_t */
	int64_t after;   /* max + 1, wrapped */
	int64_t store;   /* a value out of range ... */
	int64_t stored;  /* ... and what it reads back as */
};

static void test_widths(void)
{
	const struct wrap_case cases[] = {
		{ 'b', 127, -128, 200, -56 },
		{ 'B', 255, 0, 256 + 7, 7 },
		{ 'h', 32767, -32768, 40000, 40000 - 65536 },
		{ 'H', 65535, 0, -1, 65535 },
		{ 'i', INT32_MAX, INT32_MIN, (int64_t)1 << 31, INT32_MIN },
		{ 'I', UINT32_MAX, 0, -1, UINT32_MAX },
		{ 'l', INT64_MAX, INT64_MIN, -5, -5 },
		{ 'L', -1, 0, -2, -2 }, /* 64-bit unsigned: max reads as -1 */
		{ 'q', INT64_MAX, INT64_MIN, INT64_MIN, INT64_MIN },
		{ 'Q', -1, 0, -2, -2 },
	};
	T_CHECK(sizeof(long) == 8); /* the 'l'/'L' rows assume LP64 */
	for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
		const struct wrap_case *c = &cases[k];
		shmp_value_t *v = mk(c->tc);
		T_EQ(load(v), 0);
		T_EQ(shmp_value_store(v, 5), 0);
		T_EQ(load(v), 5);
		/* Atomic and locked accessors see the same item. */
		int64_t x = 0;
		T_EQ(shmp_value_get_i64(v, &x), 0);
		T_EQ(x, 5);
		T_EQ(shmp_value_set_i64(v, 6), 0);
		T_EQ(load(v), 6);

		int64_t prev = 0;
		T_EQ(shmp_value_add(v, 10, &prev), 0);
		T_EQ(prev, 6);
		T_EQ(load(v), 16);
		T_EQ(shmp_value_add(v, -16, NULL), 0); /* prev may be NULL */
		T_EQ(load(v), 0);

		/* Wrap at the top. */
		T_EQ(shmp_value_store(v, c->max), 0);
		T_EQ(load(v), c->max);
		T_EQ(shmp_value_add(v, 1, &prev), 0);
		T_EQ(prev, c->max);
		T_EQ(load(v), c->after);
		T_EQ(shmp_value_store(v, c->store), 0);
		T_EQ(load(v), c->stored);

		/* cas success: stores desired, returns 1, *expected untouched. */
		T_EQ(shmp_value_store(v, 3), 0);
		int64_t e = 3;
		T_EQ(shmp_value_cas(v, &e, 9), 1);
		T_EQ(e, 3);
		T_EQ(load(v), 9);
		/* cas failure: returns 0, value unchanged, *expected = current. */
		e = 4;
		T_EQ(shmp_value_cas(v, &e, 11), 0);
		T_EQ(e, 9);
		T_EQ(load(v), 9);
		/* Retrying with the updated expected succeeds. */
		T_EQ(shmp_value_cas(v, &e, 11), 1);
		T_EQ(load(v), 11);
		shmp_value_destroy(v);
	}

	/* Underflow of an unsigned byte. */
	shmp_value_t *v = mk('B');
	int64_t prev = -1;
	T_EQ(shmp_value_add(v, -1, &prev), 0);
	T_EQ(prev, 0);
	T_EQ(load(v), 255);
	shmp_value_destroy(v);
}

static void test_non_integer(void)
{
	const char *tcs = "fdc?";
	for (const char *p = tcs; *p; p++) {
		shmp_value_t *v = mk(*p);
		T_EQ(shmp_value_set_i64(v, 1), 0);
		int64_t x = 77, e = 1;
		T_EQ(shmp_value_load(v, &x), -EINVAL);
		T_EQ(x, 77);
		T_EQ(shmp_value_store(v, 0), -EINVAL);
		T_EQ(shmp_value_add(v, 1, &x), -EINVAL);
		T_EQ(shmp_value_cas(v, &e, 0), -EINVAL);
		/* None of them touched the item. */
		T_EQ(shmp_value_get_i64(v, &x), 0);
		T_EQ(x, 1);
		shmp_value_destroy(v);
	}
}

/* ---- contention --------------------------------------------------------- */

#define N_ATOMIC 1000000
#define N_LOCKED 200000

/* Both children start counting at the same moment: otherwise the first
 * could be done before the second is even forked, and nothing would be
 * contended. */
static shmp_value_t *g_ready, *g_go;

static int start_together(void)
{
	shmp_value_add(g_ready, 1, NULL);
	int64_t go = 0;
	double until = t_now() + 10;
	while (shmp_value_load(g_go, &go) == 0 && !go)
		if (t_now() > until)
			return -1;
	return 0;
}

static int child_atomic(void *arg)
{
	shmp_value_t *v = arg;
	if (start_together() < 0)
		return 4;
	for (int i = 0; i < N_ATOMIC; i++)
		if (shmp_value_add(v, 1, NULL) != 0)
			return 1;
	return 0;
}

static int child_locked(void *arg)
{
	shmp_value_t *v = arg;
	shmp_lock_t *l = shmp_value_lock(v);
	if (!l)
		return 1;
	volatile int64_t *p = shmp_value_ptr(v);
	if (start_together() < 0)
		return 4;
	for (int i = 0; i < N_LOCKED; i++) {
		if (shmp_lock_acquire(l, SHMP_FOREVER) != 0)
			return 2;
		*p = *p + 1; /* a plain read-modify-write: only the lock makes it exact */
		if (shmp_lock_release(l) != 0)
			return 3;
	}
	return 0;
}

static void run_pair(int (*fn)(void *), shmp_value_t *v)
{
	T_EQ(shmp_value_store(g_ready, 0), 0);
	T_EQ(shmp_value_store(g_go, 0), 0);
	pid_t a = t_fork(fn, v);
	pid_t b = t_fork(fn, v);
	int64_t ready = 0;
	while (shmp_value_load(g_ready, &ready) == 0 && ready < 2)
		t_sleep_ms(1); /* the children give up after 10 s: no hang */
	T_EQ(shmp_value_store(g_go, 1), 0);
	t_wait_ok(a, 60);
	t_wait_ok(b, 60);
}

static void test_contention(void)
{
	g_ready = shmp_value_create('i', NULL, NULL);
	g_go = shmp_value_create('i', NULL, NULL);
	T_CHECK(g_ready && g_go);
	shmp_value_t *v = mk('q');
	run_pair(child_atomic, v);
	T_EQ(load(v), 2 * N_ATOMIC);
	shmp_value_destroy(v);

	/* A 32-bit counter, raw: atomics need no lock. */
	v = shmp_value_create('i', NULL, &SHMP_OPTS(shmp_value_opts, .raw = 1));
	T_CHECK(v);
	run_pair(child_atomic, v);
	T_EQ(load(v), 2 * N_ATOMIC);
	shmp_value_destroy(v);

	v = mk('q');
	run_pair(child_locked, v);
	int64_t x = 0;
	T_EQ(shmp_value_get_i64(v, &x), 0);
	T_EQ(x, 2 * N_LOCKED);
	shmp_value_destroy(v);
	shmp_value_destroy(g_ready);
	shmp_value_destroy(g_go);
}

int main(void)
{
	t_watchdog(120);
	test_widths();
	test_non_integer();
	test_contention();
	return 0;
}
