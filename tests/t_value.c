/* Value: every Python typecode (b B h H i I l L q Q f d c ?) creates with the
 * right item size, invalid typecodes are EINVAL; get/set round trips (raw
 * bytes and through int64/double, with C wrap-around for narrow types); init
 * values; a child's writes are seen by the parent and by a second child;
 * synchronized by default (get_lock is an RLock), raw has no lock (ENOLCK), a
 * caller's lock is returned by get_lock and really taken by set (set blocks
 * while a child holds it); a lock from another segment is EXDEV; a holder
 * that died is absorbed by get/set; NULL arguments are -EINVAL. */
#include "t.h"

static const char all_tc[] = "bBhHiIlLqQfdc?";

static int expected_size(char tc)
{
	switch (tc) {
	case 'b': case 'B': case 'c': case '?': return 1;
	case 'h': case 'H': return 2;
	case 'i': case 'I': case 'f': return 4;
	case 'l': case 'L': return (int)sizeof(long);
	default: return 8; /* q Q d */
	}
}

static void test_typecodes(void)
{
	for (const char *p = all_tc; *p; p++) {
		T_EQ(shmp_typecode_size(*p), expected_size(*p));
		shmp_value_t *v = shmp_value_create(*p, NULL, NULL);
		T_CHECK(v);
		T_EQ(shmp_value_typecode(v), *p);
		/* No init: the item starts as all zero bytes. */
		unsigned char buf[8];
		memset(buf, 0xAA, sizeof buf);
		T_EQ(shmp_value_get(v, buf), 0);
		for (int i = 0; i < expected_size(*p); i++)
			T_EQ(buf[i], 0);
		/* get copies exactly the item size, nothing beyond. */
		for (int i = expected_size(*p); i < 8; i++)
			T_EQ(buf[i], 0xAA);
		shmp_value_destroy(v);
	}
	const char bad[] = { 'x', 'z', 0, 'D', 'u', 'Z' };
	for (size_t i = 0; i < sizeof bad; i++) {
		T_EQ(shmp_typecode_size(bad[i]), -EINVAL);
		errno = 0;
		T_CHECK(shmp_value_create(bad[i], NULL, NULL) == NULL);
		T_EQ(errno, EINVAL);
	}
	/* opts without its size field filled in is refused, not misread. */
	struct shmp_value_opts o0;
	memset(&o0, 0, sizeof o0);
	errno = 0;
	T_CHECK(shmp_value_create('i', NULL, &o0) == NULL);
	T_EQ(errno, EINVAL);
}

/* Raw bytes in, the same bytes out, for every typecode. */
static void test_raw_roundtrip(void)
{
	for (const char *p = all_tc; *p; p++) {
		shmp_value_t *v = shmp_value_create(*p, NULL, NULL);
		T_CHECK(v);
		int n = expected_size(*p);
		unsigned char in[8], out[8];
		for (int i = 0; i < 8; i++)
			in[i] = (unsigned char)(0x11 * (i + 1));
		if (*p == '?')
			in[0] = 1;
		T_EQ(shmp_value_set(v, in), 0);
		memset(out, 0, sizeof out);
		T_EQ(shmp_value_get(v, out), 0);
		T_CHECK(memcmp(in, out, (size_t)n) == 0);
		/* The bytes are in shared memory at shmp_value_ptr. */
		T_CHECK(memcmp(shmp_value_ptr(v), in, (size_t)n) == 0);
		shmp_value_destroy(v);
	}
}

static int64_t set_get_i64(char tc, int64_t x)
{
	shmp_value_t *v = shmp_value_create(tc, NULL, NULL);
	T_CHECK(v);
	T_EQ(shmp_value_set_i64(v, x), 0);
	int64_t y = 12345;
	T_EQ(shmp_value_get_i64(v, &y), 0);
	shmp_value_destroy(v);
	return y;
}

static void test_convert(void)
{
	/* Narrow and unsigned types wrap as C conversions do. */
	T_EQ(set_get_i64('b', 200), -56);
	T_EQ(set_get_i64('b', -128), -128);
	T_EQ(set_get_i64('B', 256), 0);
	T_EQ(set_get_i64('B', 255), 255);
	T_EQ(set_get_i64('B', -1), 255);
	T_EQ(set_get_i64('h', 40000), 40000 - 65536);
	T_EQ(set_get_i64('H', 70000), 70000 - 65536);
	T_EQ(set_get_i64('H', -1), 65535);
	T_EQ(set_get_i64('i', (int64_t)1 << 31), INT32_MIN);
	T_EQ(set_get_i64('i', -7), -7);
	T_EQ(set_get_i64('I', -1), (int64_t)UINT32_MAX);
	T_EQ(set_get_i64('I', (int64_t)1 << 32), 0);
	T_EQ(set_get_i64('q', INT64_MIN), INT64_MIN);
	T_EQ(set_get_i64('q', INT64_MAX), INT64_MAX);
	T_EQ(set_get_i64('l', -123456789012LL), -123456789012LL);
	T_EQ(set_get_i64('L', 123456789012LL), 123456789012LL);
	/* 'Q' holds UINT64_MAX; through int64_t it reads back as -1. */
	T_EQ(set_get_i64('Q', -1), -1);
	T_EQ(set_get_i64('?', 5), 1);
	T_EQ(set_get_i64('?', 0), 0);
	T_EQ(set_get_i64('c', 'A'), 'A');
	T_EQ(set_get_i64('c', 0x141), 0x41);
	T_EQ(set_get_i64('d', -3), -3);
	T_EQ(set_get_i64('f', 1000), 1000);

	/* 'Q' as double sees the unsigned value. */
	shmp_value_t *v = shmp_value_create('Q', NULL, NULL);
	T_CHECK(v);
	T_EQ(shmp_value_set_i64(v, -1), 0);
	double d = 0;
	T_EQ(shmp_value_get_f64(v, &d), 0);
	T_CHECK(d == 18446744073709551615.0);
	uint64_t raw = 0;
	T_EQ(shmp_value_get(v, &raw), 0);
	T_CHECK(raw == UINT64_MAX);
	shmp_value_destroy(v);

	/* Floating types: double in, double out; to int64 truncates. */
	v = shmp_value_create('d', NULL, NULL);
	T_CHECK(v);
	T_EQ(shmp_value_set_f64(v, 2.75), 0);
	T_EQ(shmp_value_get_f64(v, &d), 0);
	T_CHECK(d == 2.75);
	int64_t x = 0;
	T_EQ(shmp_value_get_i64(v, &x), 0);
	T_EQ(x, 2);
	double dd = 0;
	T_EQ(shmp_value_get(v, &dd), 0);
	T_CHECK(dd == 2.75);
	shmp_value_destroy(v);

	v = shmp_value_create('f', NULL, NULL);
	T_CHECK(v);
	T_EQ(shmp_value_set_f64(v, 0.1), 0);
	T_EQ(shmp_value_get_f64(v, &d), 0);
	T_CHECK(d == (double)(float)0.1);
	float ff = 0;
	T_EQ(shmp_value_get(v, &ff), 0);
	T_CHECK(ff == 0.1f);
	shmp_value_destroy(v);

	/* Double into an integer type truncates toward zero. */
	v = shmp_value_create('i', NULL, NULL);
	T_CHECK(v);
	T_EQ(shmp_value_set_f64(v, -2.9), 0);
	T_EQ(shmp_value_get_i64(v, &x), 0);
	T_EQ(x, -2);
	T_EQ(shmp_value_get_f64(v, &d), 0);
	T_CHECK(d == -2.0);
	/* A double no int64_t holds has no conversion: refused, unchanged. */
	T_EQ(shmp_value_set_f64(v, 0.0 / 0.0), -ERANGE);
	T_EQ(shmp_value_set_f64(v, 1e300), -ERANGE);
	T_EQ(shmp_value_set_f64(v, -1.0 / 0.0), -ERANGE);
	T_EQ(shmp_value_set_f64(v, 9223372036854775808.0), -ERANGE);
	T_EQ(shmp_value_get_i64(v, &x), 0);
	T_EQ(x, -2);
	shmp_value_destroy(v);

	v = shmp_value_create('?', NULL, NULL);
	T_CHECK(v);
	T_EQ(shmp_value_set_f64(v, 0.5), 0);
	T_EQ(shmp_value_get_i64(v, &x), 0);
	T_EQ(x, 1);
	shmp_value_destroy(v);
}

static void test_init(void)
{
	int32_t i0 = -5;
	shmp_value_t *v = shmp_value_create('i', &i0, NULL);
	T_CHECK(v);
	int64_t x = 0;
	T_EQ(shmp_value_get_i64(v, &x), 0);
	T_EQ(x, -5);
	shmp_value_destroy(v);

	double d0 = 2.5, d = 0;
	v = shmp_value_create('d', &d0, NULL);
	T_CHECK(v);
	T_EQ(shmp_value_get_f64(v, &d), 0);
	T_CHECK(d == 2.5);
	shmp_value_destroy(v);

	char c0 = 'z', c = 0;
	v = shmp_value_create('c', &c0, NULL);
	T_CHECK(v);
	T_EQ(shmp_value_get(v, &c), 0);
	T_EQ(c, 'z');
	shmp_value_destroy(v);

	uint16_t h0 = 0xBEEF;
	v = shmp_value_create('H', &h0, &SHMP_OPTS(shmp_value_opts, .raw = 1));
	T_CHECK(v);
	T_EQ(shmp_value_get_i64(v, &x), 0);
	T_EQ(x, 0xBEEF);
	shmp_value_destroy(v);
}

/* ---- cross-process visibility ------------------------------------------ */

struct xvals {
	shmp_value_t *b, *H, *q, *d, *c;
};

static int child_write(void *arg)
{
	struct xvals *x = arg;
	if (shmp_value_set_i64(x->b, -100) || shmp_value_set_i64(x->H, 60000) ||
	    shmp_value_set_i64(x->q, -9000000000LL) || shmp_value_set_f64(x->d, 6.25))
		return 1;
	char c = 'K';
	return shmp_value_set(x->c, &c) ? 1 : 0;
}

static int child_check(void *arg)
{
	struct xvals *x = arg;
	int64_t b, H, q;
	double d;
	char c;
	if (shmp_value_get_i64(x->b, &b) || shmp_value_get_i64(x->H, &H) ||
	    shmp_value_get_i64(x->q, &q) || shmp_value_get_f64(x->d, &d) || shmp_value_get(x->c, &c))
		return 1;
	if (b != -100 || H != 60000 || q != -9000000000LL || d != 6.25 || c != 'K')
		return 2;
	return 0;
}

static void test_cross_process(void)
{
	struct xvals x = {
		shmp_value_create('b', NULL, NULL),
		shmp_value_create('H', NULL, NULL),
		shmp_value_create('q', NULL, &SHMP_OPTS(shmp_value_opts, .raw = 1)),
		shmp_value_create('d', NULL, NULL),
		shmp_value_create('c', NULL, NULL),
	};
	T_CHECK(x.b && x.H && x.q && x.d && x.c);
	t_wait_ok(t_fork(child_write, &x), 10);
	int64_t i = 0;
	double d = 0;
	char c = 0;
	T_EQ(shmp_value_get_i64(x.b, &i), 0);
	T_EQ(i, -100);
	T_EQ(shmp_value_get_i64(x.H, &i), 0);
	T_EQ(i, 60000);
	T_EQ(shmp_value_get_i64(x.q, &i), 0);
	T_EQ(i, -9000000000LL);
	T_EQ(shmp_value_get_f64(x.d, &d), 0);
	T_CHECK(d == 6.25);
	T_EQ(shmp_value_get(x.c, &c), 0);
	T_EQ(c, 'K');
	/* A second child, forked after the first ended, sees the same. */
	t_wait_ok(t_fork(child_check, &x), 10);
	shmp_value_destroy(x.b);
	shmp_value_destroy(x.H);
	shmp_value_destroy(x.q);
	shmp_value_destroy(x.d);
	shmp_value_destroy(x.c);
}

/* ---- locks -------------------------------------------------------------- */

static void test_default_lock(void)
{
	shmp_value_t *v = shmp_value_create('q', NULL, NULL);
	T_CHECK(v);
	shmp_lock_t *l = shmp_value_lock(v);
	T_CHECK(l);
	T_EQ(shmp_lock_is_recursive(l), 1);
	T_CHECK(shmp_value_lock(v) == l);
	/* Python's Value uses an RLock: the holder can still get/set. */
	T_EQ(shmp_lock_acquire(l, SHMP_FOREVER), 0);
	T_EQ(shmp_value_set_i64(v, 99), 0);
	int64_t x = 0;
	T_EQ(shmp_value_get_i64(v, &x), 0);
	T_EQ(x, 99);
	T_EQ(shmp_lock_count(l), 1); /* set/get took and gave back a level */
	T_EQ(shmp_lock_release(l), 0);
	T_EQ(shmp_lock_is_locked(l), 0);
	shmp_value_destroy(v);
}

static void test_raw(void)
{
	shmp_value_t *v = shmp_value_create('i', NULL, &SHMP_OPTS(shmp_value_opts, .raw = 1));
	T_CHECK(v);
	errno = 0;
	T_CHECK(shmp_value_lock(v) == NULL);
	T_EQ(errno, ENOLCK);
	T_EQ(shmp_value_set_i64(v, -42), 0);
	int64_t x = 0;
	T_EQ(shmp_value_get_i64(v, &x), 0);
	T_EQ(x, -42);
	shmp_value_destroy(v);
}

/* A parent's set must wait for a child's hold of the given lock to end. */
static void check_set_blocks(shmp_value_t *v, shmp_lock_t *l)
{
	struct t_holder h;
	pid_t pid = t_holder_start(&h, l);
	double t0 = t_now();
	T_EQ(shmp_value_set_i64(v, 7), 0);
	/* Set finishing after the release proves it waited for the lock. */
	t_holder_waited(&h, t0, t_now());
	t_holder_end(&h, pid);
	int64_t x = 0;
	T_EQ(shmp_value_get_i64(v, &x), 0);
	T_EQ(x, 7);
}

static void test_given_lock(void)
{
	shmp_lock_t *l = shmp_lock_create(NULL);
	T_CHECK(l);
	shmp_value_t *v = shmp_value_create('q', NULL, &SHMP_OPTS(shmp_value_opts, .lock = l));
	T_CHECK(v);
	T_CHECK(shmp_value_lock(v) == l);
	/* Two objects can share one lock. */
	shmp_value_t *w = shmp_value_create('d', NULL, &SHMP_OPTS(shmp_value_opts, .lock = l));
	T_CHECK(w);
	T_CHECK(shmp_value_lock(w) == l);
	check_set_blocks(v, l);
	check_set_blocks(w, l);
	shmp_value_destroy(v);
	shmp_value_destroy(w);
	/* The Value did not own the lock: it still works after. */
	T_EQ(shmp_lock_acquire(l, 0), 0);
	T_EQ(shmp_lock_release(l), 0);
	shmp_lock_destroy(l);

	/* An RLock given by the caller, with the segment named explicitly. */
	shmp_lock_t *rl = shmp_rlock_create(NULL);
	T_CHECK(rl);
	v = shmp_value_create('i', NULL,
			      &SHMP_OPTS(shmp_value_opts, .segment = shmp_segment_default(), .lock = rl));
	T_CHECK(v);
	T_CHECK(shmp_value_lock(v) == rl);
	check_set_blocks(v, rl);
	shmp_value_destroy(v);
	shmp_lock_destroy(rl);
}

static void test_exdev(void)
{
	shmp_segment_t *a = shmp_segment_create(NULL, 1 << 20, NULL);
	shmp_segment_t *b = shmp_segment_create(NULL, 1 << 20, NULL);
	T_CHECK(a && b);
	shmp_lock_t *lb = shmp_lock_create(&SHMP_OPTS(shmp_lock_opts, .segment = b));
	T_CHECK(lb);
	errno = 0;
	T_CHECK(shmp_value_create('i', NULL, &SHMP_OPTS(shmp_value_opts, .segment = a, .lock = lb)) == NULL);
	T_EQ(errno, EXDEV);
	errno = 0;
	T_CHECK(shmp_value_create('i', NULL,
				  &SHMP_OPTS(shmp_value_opts, .segment = shmp_segment_default(), .lock = lb)) == NULL);
	T_EQ(errno, EXDEV);
	errno = 0;
	T_CHECK(shmp_array_create('i', 4, NULL, &SHMP_OPTS(shmp_value_opts, .segment = a, .lock = lb)) == NULL);
	T_EQ(errno, EXDEV);
	/* Same segment is fine, and the Value lives there. */
	shmp_value_t *v = shmp_value_create('i', NULL, &SHMP_OPTS(shmp_value_opts, .segment = b, .lock = lb));
	T_CHECK(v);
	uint64_t off;
	T_EQ(shmp_segment_offset(b, shmp_value_ptr(v), &off), 0);
	shmp_value_destroy(v);
	shmp_lock_destroy(lb);
	shmp_segment_destroy(a);
	shmp_segment_destroy(b);
}

static int child_die_holding(void *arg)
{
	shmp_value_t *v = arg;
	shmp_lock_t *l = shmp_value_lock(v);
	if (shmp_lock_acquire(l, 5.0) != 0)
		return 1;
	*(int64_t *)shmp_value_ptr(v) = 77;
	_exit(0); /* still holding */
}

/* A holder that died is recovered from silently by get/set. */
static void test_dead_holder(void)
{
	shmp_value_t *v = shmp_value_create('q', NULL, NULL);
	T_CHECK(v);
	t_wait_ok(t_fork(child_die_holding, v), 10);
	T_EQ(shmp_lock_is_locked(shmp_value_lock(v)), 1);
	int64_t x = 0;
	T_EQ(shmp_value_get_i64(v, &x), 0);
	T_EQ(x, 77);
	T_EQ(shmp_value_set_i64(v, 78), 0);
	/* The lock is healthy again, not "not recoverable". */
	shmp_lock_t *l = shmp_value_lock(v);
	T_EQ(shmp_lock_acquire(l, 1.0), 0);
	T_EQ(shmp_lock_release(l), 0);
	shmp_value_destroy(v);
}

static void test_null_args(void)
{
	shmp_value_t *v = shmp_value_create('i', NULL, NULL);
	T_CHECK(v);
	int32_t buf = 0;
	int64_t x = 0, e = 0;
	double d = 0;
	T_EQ(shmp_value_get(NULL, &buf), -EINVAL);
	T_EQ(shmp_value_get(v, NULL), -EINVAL);
	T_EQ(shmp_value_set(NULL, &buf), -EINVAL);
	T_EQ(shmp_value_set(v, NULL), -EINVAL);
	T_EQ(shmp_value_get_i64(NULL, &x), -EINVAL);
	T_EQ(shmp_value_get_i64(v, NULL), -EINVAL);
	T_EQ(shmp_value_set_i64(NULL, 1), -EINVAL);
	T_EQ(shmp_value_get_f64(NULL, &d), -EINVAL);
	T_EQ(shmp_value_get_f64(v, NULL), -EINVAL);
	T_EQ(shmp_value_set_f64(NULL, 1.0), -EINVAL);
	T_EQ(shmp_value_load(NULL, &x), -EINVAL);
	T_EQ(shmp_value_load(v, NULL), -EINVAL);
	T_EQ(shmp_value_store(NULL, 1), -EINVAL);
	T_EQ(shmp_value_add(NULL, 1, &x), -EINVAL);
	T_EQ(shmp_value_cas(NULL, &e, 1), -EINVAL);
	T_EQ(shmp_value_cas(v, NULL, 1), -EINVAL);
	errno = 0;
	T_CHECK(shmp_value_ptr(NULL) == NULL);
	T_EQ(errno, EINVAL);
	errno = 0;
	T_CHECK(shmp_value_lock(NULL) == NULL);
	T_EQ(errno, EINVAL);
	T_EQ(shmp_value_typecode(NULL), 0);
	shmp_value_destroy(NULL);
	/* None of the failed calls changed the value. */
	T_EQ(shmp_value_get_i64(v, &x), 0);
	T_EQ(x, 0);
	shmp_value_destroy(v);
}

int main(void)
{
	t_watchdog(60);
	test_typecodes();
	test_raw_roundtrip();
	test_convert();
	test_init();
	test_cross_process();
	test_default_lock();
	test_raw();
	test_given_lock();
	test_exdev();
	test_dead_holder();
	test_null_args();
	return 0;
}
