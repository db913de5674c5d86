/* Seed 004 (Chinese), 状态共享 (sharing state): the tutorial only names
 * "Value, Array" and "ctypes" and links Python's documentation, so these are
 * the documentation's two examples: f(n, a) on a Value('d') and an
 * Array('i'), and modify(n, x, s, A) on shared ctypes objects, an Array of
 * Point structs included. (Manager, between the two, is the registry's
 * section.) */
#include "tour.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Run fn(arg) in one Process and wait: Process(target=f, args=...).start(); .join() */
static void run_process(shmp_process_fn fn, void *arg)
{
	shmp_process_t *p = shmp_process_create(fn, arg, NULL);
	if (!CHECK(p != NULL))
		return;
	int code = -1;
	CHECK_EQ(shmp_process_start(p), 0);
	CHECK_EQ(shmp_process_join(p, TOUR_WAIT), 0);
	CHECK_EQ(shmp_process_exitcode(p, &code), 1);
	CHECK_EQ(code, 0);
	shmp_process_destroy(p);
}

struct f_args {
	shmp_value_t *n;
	shmp_array_t *a;
};

/* def f(n, a): n.value = 3.1415927; for i in range(len(a)): a[i] = -a[i] */
static int f(void *arg)
{
	struct f_args *x = arg;
	say("f runs in process %d", (int)getpid());
	if (shmp_value_set_f64(x->n, 3.1415927))
		return 1;
	for (size_t i = 0; i < shmp_array_len(x->a); i++) {
		int64_t v;
		if (shmp_array_get_i64(x->a, i, &v) || shmp_array_set_i64(x->a, i, -v))
			return 1;
	}
	return 0;
}

int sec_value_array(void)
{
	/* num = Value('d', 0.0); arr = Array('i', range(10)) */
	double zero = 0.0;
	int32_t init[10];
	for (int i = 0; i < 10; i++)
		init[i] = i;
	struct f_args x = { shmp_value_create('d', &zero, NULL), shmp_array_create('i', 10, init, NULL) };
	if (CHECK(x.n && x.a)) {
		say("main process %d", (int)getpid());
		run_process(f, &x);
		/* print(num.value); print(arr[:]) */
		double num = 0;
		int32_t arr[10];
		CHECK_EQ(shmp_value_get_f64(x.n, &num), 0);
		CHECK_EQ(shmp_array_read(x.a, 0, 10, arr), 0);
		char buf[128];
		size_t len = (size_t)snprintf(buf, sizeof buf, "[");
		for (int i = 0; i < 10; i++)
			len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%d", i ? ", " : "", arr[i]);
		snprintf(buf + len, sizeof buf - len, "]");
		char fb[32];
		say("%s", pyfloat(num, fb, sizeof fb));
		say("%s", buf);
		CHECK(num == 3.1415927);
		int ok = 1;
		for (int i = 0; i < 10; i++)
			ok &= arr[i] == -i;
		CHECK(ok);
	}
	shmp_value_destroy(x.n);
	shmp_array_destroy(x.a);
	return 0;
}

/* class Point(Structure): _fields_ = [('x', c_double), ('y', c_double)] */
struct point {
	double x, y;
};

struct modify_args {
	shmp_value_t *n, *x;
	shmp_array_t *s;
	struct point *A; /* three Points in the default segment */
	shmp_lock_t *lock;
};

/* def modify(n, x, s, A): n **= 2; x **= 2; s = s.upper(); a.x **= 2, a.y **= 2 */
static int modify(void *arg)
{
	struct modify_args *m = arg;
	int64_t n;
	double x;
	/* n is synchronized (its own lock), x is raw (lock=False). */
	if (shmp_value_get_i64(m->n, &n) || shmp_value_set_i64(m->n, n * n))
		return 1;
	if (shmp_value_get_f64(m->x, &x) || shmp_value_set_f64(m->x, x * x))
		return 1;
	/* s and A share one lock: taken once around both, and the bytes used
	 * through their pointers (the Array's own get/set would take the
	 * non-recursive lock a second time). */
	if (shmp_lock_acquire(m->lock, TOUR_WAIT))
		return 1;
	char *s = shmp_array_ptr(m->s);
	for (size_t i = 0; i < shmp_array_len(m->s); i++)
		if (s[i] >= 'a' && s[i] <= 'z')
			s[i] = (char)(s[i] - 'a' + 'A');
	for (int i = 0; i < 3; i++) {
		m->A[i].x *= m->A[i].x;
		m->A[i].y *= m->A[i].y;
	}
	shmp_lock_release(m->lock);
	return 0;
}

int sec_ctypes(void)
{
	static const struct point init[3] = { { 1.875, -6.25 }, { -5.75, 2.0 }, { 2.375, 9.5 } };
	shmp_segment_t *seg = shmp_segment_default();
	struct modify_args m = { 0 };
	uint64_t off = 0;
	int have_A = 0;
	/* lock = Lock() */
	m.lock = shmp_lock_create(NULL);
	if (!CHECK(seg && m.lock))
		goto out;
	/* n = Value('i', 7); x = Value(c_double, 1.0/3.0, lock=False) */
	int32_t seven = 7;
	double third = 1.0 / 3.0;
	struct shmp_value_opts raw = SHMP_OPTS(shmp_value_opts, .raw = 1);
	struct shmp_value_opts locked = SHMP_OPTS(shmp_value_opts, .lock = m.lock);
	m.n = shmp_value_create('i', &seven, NULL);
	m.x = shmp_value_create('d', &third, &raw);
	/* s = Array('c', b'hello world', lock=lock) */
	m.s = shmp_array_create('c', 11, "hello world", &locked);
	/* A = Array(Point, [(1.875,-6.25), (-5.75,2.0), (2.375,9.5)], lock=lock):
	 * shmp's Array holds typecodes, not structs; a struct array is a block
	 * of the segment, guarded by the same lock. */
	have_A = CHECK_EQ(shmp_segment_alloc(seg, sizeof init, 0, &off), 0);
	if (!CHECK(m.n && m.x && m.s) || !have_A)
		goto out;
	m.A = shmp_segment_ptr(seg, off, sizeof init);
	if (!CHECK(m.A != NULL))
		goto out;
	memcpy(m.A, init, sizeof init);

	/* p = Process(target=modify, args=(n, x, s, A)); p.start(); p.join() */
	run_process(modify, &m);

	int64_t n = 0;
	double x = 0;
	char s[12] = { 0 };
	CHECK_EQ(shmp_value_get_i64(m.n, &n), 0);
	CHECK_EQ(shmp_value_get_f64(m.x, &x), 0);
	CHECK_EQ(shmp_array_read(m.s, 0, 11, s), 0);
	say("%lld", (long long)n);
	char fb[6][32];
	say("%s", pyfloat(x, fb[0], sizeof fb[0]));
	say("b'%s'", s);
	CHECK_EQ(shmp_lock_acquire(m.lock, TOUR_WAIT), 0);
	struct point A[3];
	memcpy(A, m.A, sizeof A);
	shmp_lock_release(m.lock);
	say("[(%s, %s), (%s, %s), (%s, %s)]", pyfloat(A[0].x, fb[0], 32), pyfloat(A[0].y, fb[1], 32),
	    pyfloat(A[1].x, fb[2], 32), pyfloat(A[1].y, fb[3], 32), pyfloat(A[2].x, fb[4], 32),
	    pyfloat(A[2].y, fb[5], 32));
	CHECK_EQ(n, 49);
	CHECK(fabs(x - 1.0 / 9.0) < 1e-15);
	CHECK(!strcmp(s, "HELLO WORLD"));
	int ok = 1;
	for (int i = 0; i < 3; i++)
		ok &= A[i].x == init[i].x * init[i].x && A[i].y == init[i].y * init[i].y;
	CHECK(ok); /* [(3.515625, 39.0625), (33.0625, 4.0), (5.640625, 90.25)] */
out:
	if (have_A)
		shmp_segment_free(seg, off);
	shmp_value_destroy(m.n);
	shmp_value_destroy(m.x);
	shmp_array_destroy(m.s);
	shmp_lock_destroy(m.lock);
	return 0;
}
