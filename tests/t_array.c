/* Array: length and typecode, item get/set (raw and converting), bounds
 * (index == len is -ERANGE for every accessor), slice read/write including
 * the empty slice at the end and out-of-range slices (-ERANGE, nothing
 * copied), init from a buffer, zero-filled on creation even when it reuses
 * freed memory (same address in a private named segment), children filling
 * disjoint parts that the parent sums, atomic adds per index from two
 * processes, length 0 / bad typecode EINVAL, huge length ENOMEM, locks as
 * Value's, NULL arguments -EINVAL. */
#include "t.h"

static void test_basic(void)
{
	shmp_array_t *a = shmp_array_create('i', 10, NULL, NULL);
	T_CHECK(a);
	T_EQ(shmp_array_len(a), 10);
	T_EQ(shmp_array_typecode(a), 'i');
	shmp_lock_t *l = shmp_array_lock(a);
	T_CHECK(l);
	T_EQ(shmp_lock_is_recursive(l), 1);

	for (size_t i = 0; i < 10; i++) {
		int32_t x = -1;
		T_EQ(shmp_array_get(a, i, &x), 0);
		T_EQ(x, 0);
	}
	for (size_t i = 0; i < 10; i++) {
		int32_t x = (int32_t)(i * 100) - 300;
		T_EQ(shmp_array_set(a, i, &x), 0);
	}
	int32_t *p = shmp_array_ptr(a);
	T_CHECK(p);
	for (size_t i = 0; i < 10; i++) {
		int64_t y = 0;
		T_EQ(shmp_array_get_i64(a, i, &y), 0);
		T_EQ(y, (int64_t)i * 100 - 300);
		T_EQ(p[i], (int32_t)(i * 100) - 300);
	}
	/* Converting accessors on one item leave the neighbours alone. */
	T_EQ(shmp_array_set_i64(a, 4, ((int64_t)1 << 32) + 5), 0);
	T_EQ(p[4], 5);
	T_EQ(p[3], 0);
	T_EQ(p[5], 200);
	T_EQ(shmp_array_set_f64(a, 6, -7.9), 0);
	double d = 0;
	T_EQ(shmp_array_get_f64(a, 6, &d), 0);
	T_CHECK(d == -7.0);

	/* Bounds: index == len and far beyond. */
	int32_t x = 123;
	int64_t y = 0, e = 0;
	const size_t bad[] = { 10, 11, SIZE_MAX };
	for (size_t k = 0; k < 3; k++) {
		size_t i = bad[k];
		T_EQ(shmp_array_get(a, i, &x), -ERANGE);
		T_EQ(shmp_array_set(a, i, &x), -ERANGE);
		T_EQ(shmp_array_get_i64(a, i, &y), -ERANGE);
		T_EQ(shmp_array_set_i64(a, i, 1), -ERANGE);
		T_EQ(shmp_array_get_f64(a, i, &d), -ERANGE);
		T_EQ(shmp_array_set_f64(a, i, 1.0), -ERANGE);
		T_EQ(shmp_array_load(a, i, &y), -ERANGE);
		T_EQ(shmp_array_store(a, i, 1), -ERANGE);
		T_EQ(shmp_array_add(a, i, 1, &y), -ERANGE);
		T_EQ(shmp_array_cas(a, i, &e, 1), -ERANGE);
	}
	T_EQ(x, 123);
	shmp_array_destroy(a);

	/* Length 1 is allowed and behaves like a Value. */
	a = shmp_array_create('d', 1, NULL, NULL);
	T_CHECK(a);
	T_EQ(shmp_array_len(a), 1);
	T_EQ(shmp_array_set_f64(a, 0, 1.25), 0);
	T_EQ(shmp_array_get_f64(a, 0, &d), 0);
	T_CHECK(d == 1.25);
	T_EQ(shmp_array_get_f64(a, 1, &d), -ERANGE);
	shmp_array_destroy(a);
}

static void test_slices(void)
{
	enum { N = 16 };
	int16_t init[N];
	for (int i = 0; i < N; i++)
		init[i] = (int16_t)(1000 + i);
	shmp_array_t *a = shmp_array_create('h', N, init, NULL);
	T_CHECK(a);

	int16_t out[N + 4];
	memset(out, 0, sizeof out);
	T_EQ(shmp_array_read(a, 0, N, out), 0);
	T_CHECK(memcmp(out, init, sizeof init) == 0);

	/* Write [3, 8), read it back inside a larger read. */
	const int16_t src[5] = { -1, -2, -3, -4, -5 };
	T_EQ(shmp_array_write(a, 3, 5, src), 0);
	T_EQ(shmp_array_read(a, 0, N, out), 0);
	for (int i = 0; i < N; i++)
		T_EQ(out[i], i >= 3 && i < 8 ? -(i - 2) : 1000 + i);
	/* A middle read copies exactly count items. */
	for (int i = 0; i < N + 4; i++)
		out[i] = 0x7777;
	T_EQ(shmp_array_read(a, 6, 4, out), 0);
	T_EQ(out[0], -4);
	T_EQ(out[1], -5);
	T_EQ(out[2], 1008);
	T_EQ(out[3], 1009);
	T_EQ(out[4], 0x7777);
	/* The last item alone. */
	T_EQ(shmp_array_write(a, N - 1, 1, src), 0);
	T_EQ(shmp_array_read(a, N - 1, 1, out), 0);
	T_EQ(out[0], -1);

	/* Empty slices: at the end (start == len) and in the middle are fine
	 * and copy nothing. */
	out[0] = 0x7777;
	T_EQ(shmp_array_read(a, N, 0, out), 0);
	T_EQ(shmp_array_write(a, N, 0, src), 0);
	T_EQ(shmp_array_read(a, 5, 0, out), 0);
	T_EQ(out[0], 0x7777);

	/* Out of range: -ERANGE and nothing copied either way. */
	int16_t before[N], after[N];
	T_EQ(shmp_array_read(a, 0, N, before), 0);
	const int16_t big[N + 1] = { 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9 };
	struct { size_t start, count; } bad[] = {
		{ N - 2, 3 }, { N, 1 }, { N + 1, 0 }, { 0, N + 1 }, { 1, N },
		{ SIZE_MAX, 2 }, { 2, SIZE_MAX }, { SIZE_MAX, 0 },
	};
	for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
		for (int i = 0; i < N + 4; i++)
			out[i] = 0x7777;
		T_EQ(shmp_array_write(a, bad[k].start, bad[k].count, big), -ERANGE);
		T_EQ(shmp_array_read(a, bad[k].start, bad[k].count, out), -ERANGE);
		for (int i = 0; i < N + 4; i++)
			T_EQ(out[i], 0x7777);
	}
	T_EQ(shmp_array_read(a, 0, N, after), 0);
	T_CHECK(memcmp(before, after, sizeof before) == 0);
	shmp_array_destroy(a);

	/* Init from a buffer for a floating type. */
	const double dinit[5] = { 0.5, -1.5, 1e300, -0.0, 3.25 };
	a = shmp_array_create('d', 5, dinit, NULL);
	T_CHECK(a);
	double dout[5];
	T_EQ(shmp_array_read(a, 0, 5, dout), 0);
	T_CHECK(memcmp(dout, dinit, sizeof dinit) == 0);
	shmp_array_destroy(a);
}

/* ---- zero fill on reuse ------------------------------------------------- */

static const char *seg_name;

static void cleanup(void)
{
	if (seg_name)
		shmp_segment_unlink(seg_name); /* -ENOENT once destroyed: fine */
}

static int all_zero(const void *p, size_t n)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		if (c[i])
			return 0;
	return 1;
}

static void check_reuse(shmp_segment_t *seg, char tc, size_t len)
{
	struct shmp_value_opts o = SHMP_OPTS(shmp_value_opts, .segment = seg);
	size_t bytes = len * (size_t)shmp_typecode_size(tc);
	struct shmp_segment_stats s0, s1, s2;
	T_EQ(shmp_segment_stats(seg, &s0), 0);

	shmp_array_t *a = shmp_array_create(tc, len, NULL, &o);
	T_CHECK(a);
	void *p1 = shmp_array_ptr(a);
	T_CHECK(all_zero(p1, bytes));
	unsigned char *ff = malloc(bytes);
	T_CHECK(ff);
	memset(ff, 0xFF, bytes);
	T_EQ(shmp_array_write(a, 0, len, ff), 0);
	T_EQ(shmp_segment_stats(seg, &s1), 0);
	T_EQ(s1.live_blocks, s0.live_blocks + 1);
	shmp_array_destroy(a);
	T_EQ(shmp_segment_stats(seg, &s2), 0);
	T_EQ(s2.live_blocks, s0.live_blocks);
	T_EQ(s2.used_bytes, s0.used_bytes);

	a = shmp_array_create(tc, len, NULL, &o);
	T_CHECK(a);
	void *p2 = shmp_array_ptr(a);
	/* Nothing else allocates in this private segment: the freed block is
	 * the one handed out again, so this really is reused memory. */
	T_CHECK(p1 == p2);
	unsigned char *back = malloc(bytes);
	T_CHECK(back);
	memset(back, 0xAB, bytes);
	T_EQ(shmp_array_read(a, 0, len, back), 0);
	T_CHECK(all_zero(back, bytes));
	T_CHECK(all_zero(p2, bytes));
	/* The lock that came with the reused memory works. */
	T_EQ(shmp_array_set_i64(a, len - 1, 1), 0);
	shmp_array_destroy(a);
	free(ff);
	free(back);
}

static void test_zero_on_reuse(void)
{
	seg_name = t_segname("reuse");
	atexit(cleanup);
	shmp_segment_t *seg = shmp_segment_create(seg_name, 8 << 20, NULL);
	T_CHECK(seg);
	check_reuse(seg, 'q', 200000); /* 1.6 MB */
	check_reuse(seg, 'B', 1);
	check_reuse(seg, 'B', 40);
	check_reuse(seg, 'd', 1000);
	check_reuse(seg, 'c', 4096);

	/* A Value reusing an Array's memory starts at zero too. */
	struct shmp_value_opts o = SHMP_OPTS(shmp_value_opts, .segment = seg);
	shmp_array_t *a = shmp_array_create('q', 1, NULL, &o);
	T_CHECK(a);
	T_EQ(shmp_array_set_i64(a, 0, -1), 0);
	void *p = shmp_array_ptr(a);
	shmp_array_destroy(a);
	shmp_value_t *v = shmp_value_create('q', NULL, &o);
	T_CHECK(v);
	T_CHECK(shmp_value_ptr(v) == p);
	int64_t x = 1;
	T_EQ(shmp_value_get_i64(v, &x), 0);
	T_EQ(x, 0);
	shmp_value_destroy(v);
	shmp_segment_destroy(seg);
	seg_name = NULL;
}

/* ---- across processes --------------------------------------------------- */

#define N_FILL 100000
#define N_KIDS 4

struct fill_arg {
	shmp_array_t *a;
	int k;
};

static int child_fill(void *arg)
{
	struct fill_arg *f = arg;
	size_t per = N_FILL / N_KIDS, lo = (size_t)f->k * per;
	if (f->k % 2 == 0) {
		/* item by item */
		for (size_t i = lo; i < lo + per; i++)
			if (shmp_array_set_i64(f->a, i, (int64_t)i + 1) != 0)
				return 1;
	} else {
		/* as one slice */
		int64_t *buf = malloc(per * sizeof *buf);
		if (!buf)
			return 2;
		for (size_t i = 0; i < per; i++)
			buf[i] = (int64_t)(lo + i) + 1;
		int r = shmp_array_write(f->a, lo, per, buf);
		free(buf);
		if (r != 0)
			return 3;
	}
	return 0;
}

static void test_fill(void)
{
	shmp_array_t *a = shmp_array_create('q', N_FILL, NULL, NULL);
	T_CHECK(a);
	struct fill_arg args[N_KIDS];
	pid_t pids[N_KIDS];
	for (int k = 0; k < N_KIDS; k++) {
		args[k] = (struct fill_arg){ a, k };
		pids[k] = t_fork(child_fill, &args[k]);
	}
	for (int k = 0; k < N_KIDS; k++)
		t_wait_ok(pids[k], 30);
	int64_t *buf = malloc(N_FILL * sizeof *buf);
	T_CHECK(buf);
	T_EQ(shmp_array_read(a, 0, N_FILL, buf), 0);
	int64_t sum = 0;
	for (size_t i = 0; i < N_FILL; i++) {
		T_EQ(buf[i], (int64_t)i + 1);
		sum += buf[i];
	}
	T_EQ(sum, (int64_t)N_FILL * (N_FILL + 1) / 2);
	free(buf);
	shmp_array_destroy(a);
}

#define N_ADD 100000
#define N_SLOTS 8

/* Both adders start at once, or the first might finish before the second
 * is forked and nothing would be contended. */
static shmp_event_t *g_go;

static int child_add(void *arg)
{
	shmp_array_t *a = arg;
	if (shmp_event_wait(g_go, 10) != 0)
		return 2;
	for (int r = 0; r < N_ADD; r++)
		for (size_t i = 0; i < N_SLOTS; i++)
			if (shmp_array_add(a, i, (int64_t)i + 1, NULL) != 0)
				return 1;
	return 0;
}

static void test_atomics(void)
{
	/* Raw: atomics do not use the lock. */
	shmp_array_t *a = shmp_array_create('I', N_SLOTS, NULL, &SHMP_OPTS(shmp_value_opts, .raw = 1));
	T_CHECK(a);
	errno = 0;
	T_CHECK(shmp_array_lock(a) == NULL);
	T_EQ(errno, ENOLCK);
	g_go = shmp_event_create(NULL);
	T_CHECK(g_go);
	pid_t c1 = t_fork(child_add, a), c2 = t_fork(child_add, a);
	t_sleep_ms(50); /* let both reach the wait; correct either way */
	T_EQ(shmp_event_set(g_go), 0);
	t_wait_ok(c1, 60);
	t_wait_ok(c2, 60);
	for (size_t i = 0; i < N_SLOTS; i++) {
		int64_t x = 0;
		T_EQ(shmp_array_load(a, i, &x), 0);
		T_EQ(x, 2 * N_ADD * ((int64_t)i + 1));
	}
	shmp_array_destroy(a);
	shmp_event_destroy(g_go);

	/* Per-item wrap, store, cas on a byte array. */
	a = shmp_array_create('B', 3, NULL, NULL);
	T_CHECK(a);
	T_EQ(shmp_array_store(a, 1, 255), 0);
	int64_t prev = 0, x = 0, e = 0;
	T_EQ(shmp_array_add(a, 1, 1, &prev), 0);
	T_EQ(prev, 255);
	T_EQ(shmp_array_load(a, 1, &x), 0);
	T_EQ(x, 0);
	T_EQ(shmp_array_store(a, 2, 9), 0);
	e = 9;
	T_EQ(shmp_array_cas(a, 2, &e, 10), 1);
	e = 9;
	T_EQ(shmp_array_cas(a, 2, &e, 11), 0);
	T_EQ(e, 10);
	unsigned char raw[3];
	T_EQ(shmp_array_read(a, 0, 3, raw), 0);
	T_EQ(raw[0], 0);
	T_EQ(raw[1], 0);
	T_EQ(raw[2], 10);
	shmp_array_destroy(a);

	/* Non-integer arrays have no atomics. */
	a = shmp_array_create('f', 2, NULL, NULL);
	T_CHECK(a);
	T_EQ(shmp_array_load(a, 0, &x), -EINVAL);
	T_EQ(shmp_array_store(a, 0, 1), -EINVAL);
	T_EQ(shmp_array_add(a, 0, 1, NULL), -EINVAL);
	T_EQ(shmp_array_cas(a, 0, &e, 1), -EINVAL);
	shmp_array_destroy(a);
}

static void test_create_errors(void)
{
	errno = 0;
	T_CHECK(shmp_array_create('i', 0, NULL, NULL) == NULL);
	T_EQ(errno, EINVAL);
	errno = 0;
	T_CHECK(shmp_array_create('x', 4, NULL, NULL) == NULL);
	T_EQ(errno, EINVAL);
	errno = 0;
	T_CHECK(shmp_array_create(0, 4, NULL, NULL) == NULL);
	T_EQ(errno, EINVAL);
	errno = 0;
	T_CHECK(shmp_array_create('q', SIZE_MAX, NULL, NULL) == NULL);
	T_EQ(errno, SHMP_ESEGFULL);
	/* Far more than the default segment holds. */
	errno = 0;
	T_CHECK(shmp_array_create('q', (size_t)1 << 40, NULL, NULL) == NULL);
	T_EQ(errno, SHMP_ESEGFULL);
	struct shmp_value_opts o0;
	memset(&o0, 0, sizeof o0);
	errno = 0;
	T_CHECK(shmp_array_create('i', 4, NULL, &o0) == NULL);
	T_EQ(errno, EINVAL);

	/* A caller's lock is the one returned, and the one taken. */
	shmp_lock_t *l = shmp_lock_create(NULL);
	T_CHECK(l);
	shmp_array_t *a = shmp_array_create('i', 4, NULL, &SHMP_OPTS(shmp_value_opts, .lock = l));
	T_CHECK(a);
	T_CHECK(shmp_array_lock(a) == l);
	struct t_holder h;
	pid_t pid = t_holder_start(&h, l);
	const int32_t four[4] = { 1, 2, 3, 4 };
	double t0 = t_now();
	T_EQ(shmp_array_write(a, 0, 4, four), 0);
	t_holder_waited(&h, t0, t_now());
	t_holder_end(&h, pid);
	T_EQ(shmp_lock_is_locked(l), 0);
	shmp_array_destroy(a);
	/* The array did not own the lock. */
	T_EQ(shmp_lock_acquire(l, 0), 0);
	T_EQ(shmp_lock_release(l), 0);
	shmp_lock_destroy(l);
}

static void test_null_args(void)
{
	shmp_array_t *a = shmp_array_create('i', 4, NULL, NULL);
	T_CHECK(a);
	int32_t buf[4] = { 0 };
	int64_t x = 0, e = 0;
	double d = 0;
	T_EQ(shmp_array_len(NULL), 0);
	T_EQ(shmp_array_typecode(NULL), 0);
	T_EQ(shmp_array_get(NULL, 0, buf), -EINVAL);
	T_EQ(shmp_array_get(a, 0, NULL), -EINVAL);
	T_EQ(shmp_array_set(NULL, 0, buf), -EINVAL);
	T_EQ(shmp_array_set(a, 0, NULL), -EINVAL);
	T_EQ(shmp_array_get_i64(NULL, 0, &x), -EINVAL);
	T_EQ(shmp_array_get_i64(a, 0, NULL), -EINVAL);
	T_EQ(shmp_array_set_i64(NULL, 0, 1), -EINVAL);
	T_EQ(shmp_array_get_f64(NULL, 0, &d), -EINVAL);
	T_EQ(shmp_array_get_f64(a, 0, NULL), -EINVAL);
	T_EQ(shmp_array_set_f64(NULL, 0, 1), -EINVAL);
	T_EQ(shmp_array_read(NULL, 0, 1, buf), -EINVAL);
	T_EQ(shmp_array_read(a, 0, 1, NULL), -EINVAL);
	T_EQ(shmp_array_write(NULL, 0, 1, buf), -EINVAL);
	T_EQ(shmp_array_write(a, 0, 1, NULL), -EINVAL);
	T_EQ(shmp_array_load(NULL, 0, &x), -EINVAL);
	T_EQ(shmp_array_load(a, 0, NULL), -EINVAL);
	T_EQ(shmp_array_store(NULL, 0, 1), -EINVAL);
	T_EQ(shmp_array_add(NULL, 0, 1, NULL), -EINVAL);
	T_EQ(shmp_array_cas(NULL, 0, &e, 1), -EINVAL);
	T_EQ(shmp_array_cas(a, 0, NULL, 1), -EINVAL);
	errno = 0;
	T_CHECK(shmp_array_ptr(NULL) == NULL);
	T_EQ(errno, EINVAL);
	errno = 0;
	T_CHECK(shmp_array_lock(NULL) == NULL);
	T_EQ(errno, EINVAL);
	shmp_array_destroy(NULL);
	T_EQ(shmp_array_read(a, 0, 4, buf), 0);
	for (int i = 0; i < 4; i++)
		T_EQ(buf[i], 0);
	shmp_array_destroy(a);
}

int main(void)
{
	t_watchdog(90);
	test_basic();
	test_slices();
	test_zero_on_reuse();
	test_fill();
	test_atomics();
	test_create_errors();
	test_null_args();
	return 0;
}
