/* Pool and ThreadPool, the apply family:
 *  - apply runs the function in a worker (another process for a Pool, another
 *    thread of this one for a ThreadPool) with the argument and returns its
 *    result; the task sees the sizes it was given and index 0;
 *  - apply_async returns a handle at once and copies the argument at the call;
 *    get(0.2)/wait(0.2) fail with -ETIMEDOUT after about 0.2 s, get(0) at
 *    once, ready() is 0 and successful() -EAGAIN before the call is done, and
 *    the result can still be fetched later (and again);
 *  - with result NULL the result is kept in the handle (shmp_async_results);
 *  - a handle released before completion: the task still runs, the caller's
 *    result buffer is not written after the release, the pool goes on;
 *  - callbacks run once, in this process, on a thread that is not the caller;
 *    a failing callback or error_callback is counted in
 *    stats.callback_errors and later results and callbacks still arrive;
 *  - a failing task: -SHMP_ETASK from apply and get() with err.code (the
 *    function's return value) and err.index; error_callback runs once (and
 *    callback not); successful() is 0; the pool stays usable;
 *  - arg_size + result_size over opts.max_task_bytes is -EMSGSIZE (for apply,
 *    apply_async, a map item, imap), at once, and the pool still works; map of
 *    many items each under the limit works;
 *  - NULL pool, NULL fn, NULL buffers with non-zero sizes: -EINVAL (NULL +
 *    errno EINVAL for apply_async); sizes that overflow are refused.
 * Every body runs against shmp_pool_create and shmp_threadpool_create. */
#include "t.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/syscall.h>

#define NWORKERS 2

static pid_t t_gettid(void)
{
	return (pid_t)syscall(SYS_gettid);
}

/* Made before any pool, so a process Pool's workers share them. */
static shmp_event_t *g_go;    /* blocking tasks wait for it */
static shmp_array_t *g_cnt;   /* shared counters, below */
enum { CNT_RUNS, CNT_N };

struct targ {
	int64_t x;
	int32_t block; /* wait for g_go first */
	int32_t fail;  /* return this (non-zero: fail) */
};

struct tres {
	int64_t y; /* x * x */
	int64_t pid, tid;
	int64_t arg_size, result_size, index, worker;
};

static int task(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	const struct targ *a = arg;
	struct tres r;
	if (c->arg_size != sizeof *a || c->result_size != sizeof r)
		return 101;
	/* 10 s at most: a failing test must not leave a worker blocked. */
	if (a->block && shmp_event_wait(g_go, 10) != 0)
		return 99;
	shmp_array_add(g_cnt, CNT_RUNS, 1, NULL);
	if (a->fail)
		return a->fail;
	r.y = a->x * a->x;
	r.pid = getpid();
	r.tid = t_gettid();
	r.arg_size = (int64_t)c->arg_size;
	r.result_size = (int64_t)c->result_size;
	r.index = (int64_t)c->index;
	r.worker = c->worker;
	memcpy(res, &r, sizeof r);
	return 0;
}

/* Sum of the argument's bytes (any size) into an int64_t result. */
static int task_sum(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	const unsigned char *b = arg;
	int64_t s = 0;
	for (size_t i = 0; i < c->arg_size; i++)
		s += b[i];
	if (c->result_size != sizeof s)
		return 101;
	memcpy(res, &s, sizeof s);
	return 0;
}

/* No argument, no result: counts its runs. */
static int task_none(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	(void)arg;
	(void)res;
	if (c->arg_size != 0 || c->result_size != 0)
		return 101;
	shmp_array_add(g_cnt, CNT_RUNS, 1, NULL);
	return 0;
}

/* What the callbacks saw. They run on the pool's thread: the counters are
 * atomics written after the data, and the test polls the counters. */
struct cbrec {
	atomic_int ok, bad; /* callback / error_callback calls */
	int ret;            /* what both return */
	pid_t pid, tid;
	pthread_t thr;
	shmp_async_t *a;
	size_t n;
	int64_t y;
	struct shmp_task_error e;
};

static int on_ok(shmp_async_t *a, void *results, size_t n, void *arg)
{
	struct cbrec *r = arg;
	r->pid = getpid();
	r->tid = t_gettid();
	r->thr = pthread_self();
	r->a = a;
	r->n = n;
	r->y = results ? ((const struct tres *)results)->y : -1;
	atomic_fetch_add(&r->ok, 1);
	return r->ret;
}

static int on_err(shmp_async_t *a, const struct shmp_task_error *e, void *arg)
{
	struct cbrec *r = arg;
	r->pid = getpid();
	r->tid = t_gettid();
	r->thr = pthread_self();
	r->a = a;
	r->e = *e;
	atomic_fetch_add(&r->bad, 1);
	return r->ret;
}

/* Poll until *v == want (5 s at most). */

/* Poll until stats.completed reaches want (5 s at most). */
static void wait_completed(shmp_pool_t *p, uint64_t want)
{
	double until = t_now() + 5;
	while (t_pool_stats(p).completed < want) {
		T_CHECK(t_now() < until);
		t_sleep_ms(1);
	}
}

struct kind {
	const char *name;
	shmp_pool_t *(*create)(int, const struct shmp_pool_opts *);
	int threads;
};

/* The task ran where it should: another process for a Pool, another thread
 * of this process for a ThreadPool. */
static void check_where(const struct kind *k, const struct tres *r)
{
	if (k->threads) {
		T_EQ(r->pid, getpid());
		T_CHECK(r->tid != t_gettid());
	} else {
		T_CHECK(r->pid > 0 && r->pid != getpid());
	}
	T_CHECK(r->worker >= 0 && r->worker < NWORKERS);
}

static void test_apply(const struct kind *k, shmp_pool_t *p)
{
	static const int64_t xs[] = { 0, 3, -7, 1 << 20 };
	for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) {
		struct targ a = { .x = xs[i] };
		struct tres r;
		struct shmp_task_error err;
		memset(&r, 0xee, sizeof r);
		memset(&err, 0x55, sizeof err);
		T_EQ(shmp_pool_apply(p, task, &a, sizeof a, &r, sizeof r, i & 1 ? NULL : &err), 0);
		T_EQ(r.y, xs[i] * xs[i]);
		T_EQ(r.arg_size, sizeof a);
		T_EQ(r.result_size, sizeof r);
		T_EQ(r.index, 0);
		check_where(k, &r);
	}

	/* No argument and no result is a valid call. */
	int64_t runs = t_load(g_cnt, CNT_RUNS);
	T_EQ(shmp_pool_apply(p, task_none, NULL, 0, NULL, 0, NULL), 0);
	T_EQ(t_load(g_cnt, CNT_RUNS), runs + 1);
}

static void test_async_get(const struct kind *k, shmp_pool_t *p)
{
	struct targ a = { .x = 5, .block = 1 };
	struct tres r;
	struct shmp_task_error err;
	memset(&r, 0, sizeof r);
	T_EQ(shmp_event_clear(g_go), 0);

	double t0 = t_now();
	shmp_async_t *h = shmp_pool_apply_async(p, task, &a, sizeof a, &r, sizeof r, NULL);
	T_CHECK(h);
	T_CHECK(t_now() - t0 < 0.5);
	/* The argument was taken at the call: changing it now changes nothing. */
	a.x = 1000;

	T_EQ(shmp_async_is_ready(h), 0);
	T_EQ(shmp_async_is_successful(h), -EAGAIN);
	T_ABOUT(shmp_async_get(h, 0.2, &err), -ETIMEDOUT);
	T_ABOUT(shmp_async_wait(h, 0.2), -ETIMEDOUT);
	T_FAST(shmp_async_get(h, 0, &err), -ETIMEDOUT);
	T_FAST(shmp_async_wait(h, 0), -ETIMEDOUT);
	T_EQ(shmp_async_is_ready(h), 0);
	T_EQ(shmp_async_is_successful(h), -EAGAIN);
	T_EQ(r.y, 0); /* nothing delivered yet */

	/* The timeouts left the call running: its result still arrives. */
	T_EQ(shmp_event_set(g_go), 0);
	T_EQ(shmp_async_wait(h, 5), 0);
	T_EQ(shmp_async_is_ready(h), 1);
	T_EQ(shmp_async_is_successful(h), 1);
	T_FAST(shmp_async_get(h, 0, &err), 0);
	T_EQ(r.y, 25);
	check_where(k, &r);
	/* get again: the same answer. */
	r.y = 0;
	T_EQ(shmp_async_get(h, 5, NULL), 0);
	T_FAST(shmp_async_wait(h, 0), 0);
	shmp_async_destroy(h);
	shmp_async_destroy(NULL);

	/* get with a timeout long enough: waits and returns the result. */
	T_EQ(shmp_event_clear(g_go), 0);
	a = (struct targ){ .x = 6, .block = 1 };
	memset(&r, 0, sizeof r);
	h = shmp_pool_apply_async(p, task, &a, sizeof a, &r, sizeof r, NULL);
	T_CHECK(h);
	T_EQ(shmp_event_set(g_go), 0);
	T_EQ(shmp_async_get(h, 5, &err), 0);
	T_EQ(r.y, 36);
	T_EQ(shmp_async_is_successful(h), 1);
	shmp_async_destroy(h);
}

static void test_async_results(const struct kind *k, shmp_pool_t *p)
{
	shmp_async_t *h[8];
	for (int i = 0; i < 8; i++) {
		struct targ a = { .x = 10 + i };
		h[i] = shmp_pool_apply_async(p, task, &a, sizeof a, NULL, sizeof(struct tres), NULL);
		T_CHECK(h[i]);
	}
	for (int i = 0; i < 8; i++) {
		T_EQ(shmp_async_get(h[i], 5, NULL), 0);
		const struct tres *r = shmp_async_results(h[i]);
		T_CHECK(r);
		T_EQ(r->y, (10 + i) * (10 + i));
		T_EQ(r->result_size, sizeof *r);
		check_where(k, r);
		shmp_async_destroy(h[i]);
	}
}

static void test_release(shmp_pool_t *p)
{
	unsigned char buf[sizeof(struct tres)], want[sizeof(struct tres)];
	memset(buf, 0xab, sizeof buf);
	memcpy(want, buf, sizeof buf);
	T_EQ(shmp_event_clear(g_go), 0);
	int64_t runs = t_load(g_cnt, CNT_RUNS);
	uint64_t done = t_pool_stats(p).completed;

	struct targ a = { .x = 9, .block = 1 };
	shmp_async_t *h = shmp_pool_apply_async(p, task, &a, sizeof a, buf, sizeof buf, NULL);
	T_CHECK(h);
	shmp_async_destroy(h);
	T_EQ(shmp_event_set(g_go), 0);

	/* The released call still runs to its end... */
	t_wait_eq(g_cnt, CNT_RUNS, runs + 1, 5);
	wait_completed(p, done + 1);
	/* ...and the pool goes on (one more round trip through it)... */
	struct targ b = { .x = 2 };
	struct tres r;
	T_EQ(shmp_pool_apply(p, task, &b, sizeof b, &r, sizeof r, NULL), 0);
	T_EQ(r.y, 4);
	/* ...without writing into the buffer it was given once the handle was
	 * released (the caller may reuse it). 50 ms lets a late copy land. */
	t_sleep_ms(50);
	T_CHECK(memcmp(buf, want, sizeof buf) == 0);

	/* Release of a finished handle whose result was never fetched. */
	a.block = 0;
	h = shmp_pool_apply_async(p, task, &a, sizeof a, NULL, sizeof(struct tres), NULL);
	T_CHECK(h);
	T_EQ(shmp_async_wait(h, 5), 0);
	shmp_async_destroy(h);
}

static void test_callbacks(const struct kind *k, shmp_pool_t *p)
{
	(void)k;
	pthread_t self = pthread_self();
	struct cbrec rec;
	memset(&rec, 0, sizeof rec);
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .callback = on_ok,
					    .error_callback = on_err, .cb_arg = &rec);
	struct targ a = { .x = 12 };
	struct tres r;
	shmp_async_t *h = shmp_pool_apply_async(p, task, &a, sizeof a, &r, sizeof r, &o);
	T_CHECK(h);
	T_EQ(shmp_async_get(h, 5, NULL), 0);
	T_EQ(r.y, 144);
	wait_atomic(&rec.ok, 1);
	/* In this process, on a thread that is not the caller. */
	T_EQ(rec.pid, getpid());
	T_CHECK(rec.tid != t_gettid());
	T_CHECK(!pthread_equal(rec.thr, self));
	T_CHECK(rec.a == h);
	T_EQ(rec.n, 1);
	T_EQ(rec.y, 144);
	/* Once, and only the success callback. */
	t_sleep_ms(30);
	T_EQ(atomic_load(&rec.ok), 1);
	T_EQ(atomic_load(&rec.bad), 0);
	shmp_async_destroy(h);

	/* A failing callback is counted, nothing else: the call succeeded and
	 * later results and callbacks still arrive. */
	uint64_t cberr = t_pool_stats(p).callback_errors;
	memset(&rec, 0, sizeof rec);
	rec.ret = -1;
	a.x = 13;
	h = shmp_pool_apply_async(p, task, &a, sizeof a, NULL, sizeof r, &o);
	T_CHECK(h);
	T_EQ(shmp_async_get(h, 5, NULL), 0);
	T_EQ(((struct tres *)shmp_async_results(h))->y, 169);
	wait_atomic(&rec.ok, 1);
	double until = t_now() + 5;
	while (t_pool_stats(p).callback_errors != cberr + 1) {
		T_CHECK(t_now() < until);
		t_sleep_ms(1);
	}
	shmp_async_destroy(h);

	struct cbrec rec2;
	memset(&rec2, 0, sizeof rec2);
	struct shmp_call_opts o2 = SHMP_OPTS(shmp_call_opts, .callback = on_ok,
					     .error_callback = on_err, .cb_arg = &rec2);
	shmp_async_t *hs[5];
	for (int i = 0; i < 5; i++) {
		a.x = 20 + i;
		hs[i] = shmp_pool_apply_async(p, task, &a, sizeof a, NULL, sizeof r, &o2);
		T_CHECK(hs[i]);
	}
	for (int i = 0; i < 5; i++) {
		T_EQ(shmp_async_get(hs[i], 5, NULL), 0);
		T_EQ(((struct tres *)shmp_async_results(hs[i]))->y, (20 + i) * (20 + i));
	}
	wait_atomic(&rec2.ok, 5);
	T_EQ(atomic_load(&rec2.bad), 0);
	for (int i = 0; i < 5; i++)
		shmp_async_destroy(hs[i]);

	/* A failing error_callback is counted too. */
	memset(&rec, 0, sizeof rec);
	rec.ret = 1;
	a = (struct targ){ .x = 1, .fail = 3 };
	h = shmp_pool_apply_async(p, task, &a, sizeof a, &r, sizeof r, &o);
	T_CHECK(h);
	T_EQ(shmp_async_get(h, 5, NULL), -SHMP_ETASK);
	wait_atomic(&rec.bad, 1);
	until = t_now() + 5;
	while (t_pool_stats(p).callback_errors != cberr + 2) {
		T_CHECK(t_now() < until);
		t_sleep_ms(1);
	}
	T_EQ(atomic_load(&rec.ok), 0);
	shmp_async_destroy(h);
	T_EQ(t_pool_stats(p).callback_errors, cberr + 2);
}

static void test_task_failure(const struct kind *k, shmp_pool_t *p)
{
	uint64_t failed = t_pool_stats(p).failed;
	struct targ a = { .x = 3, .fail = 7 };
	struct tres r;
	struct shmp_task_error err;
	memset(&err, 0x55, sizeof err);
	T_EQ(shmp_pool_apply(p, task, &a, sizeof a, &r, sizeof r, &err), -SHMP_ETASK);
	T_EQ(err.error, -SHMP_ETASK);
	T_EQ(err.code, 7);
	T_EQ(err.index, 0);
	if (!k->threads)
		T_CHECK(err.worker_pid > 0 && err.worker_pid != getpid());
	T_EQ(shmp_pool_apply(p, task, &a, sizeof a, &r, sizeof r, NULL), -SHMP_ETASK);

	/* A negative return value is passed on as it is. */
	a.fail = -5;
	memset(&err, 0x55, sizeof err);
	T_EQ(shmp_pool_apply(p, task, &a, sizeof a, &r, sizeof r, &err), -SHMP_ETASK);
	T_EQ(err.error, -SHMP_ETASK);
	T_EQ(err.code, -5);

	/* apply_async: the error reaches get() and error_callback (once), not
	 * callback. */
	struct cbrec rec;
	memset(&rec, 0, sizeof rec);
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .callback = on_ok,
					    .error_callback = on_err, .cb_arg = &rec);
	a.fail = 42;
	shmp_async_t *h = shmp_pool_apply_async(p, task, &a, sizeof a, &r, sizeof r, &o);
	T_CHECK(h);
	memset(&err, 0x55, sizeof err);
	T_EQ(shmp_async_get(h, 5, &err), -SHMP_ETASK);
	T_EQ(err.error, -SHMP_ETASK);
	T_EQ(err.code, 42);
	T_EQ(err.index, 0);
	T_EQ(shmp_async_is_ready(h), 1);
	T_EQ(shmp_async_is_successful(h), 0);
	T_EQ(shmp_async_get(h, 0, NULL), -SHMP_ETASK);
	wait_atomic(&rec.bad, 1);
	T_EQ(rec.pid, getpid());
	T_CHECK(rec.tid != t_gettid());
	T_CHECK(rec.a == h);
	T_EQ(rec.e.error, -SHMP_ETASK);
	T_EQ(rec.e.code, 42);
	T_EQ(rec.e.index, 0);
	t_sleep_ms(30);
	T_EQ(atomic_load(&rec.bad), 1);
	T_EQ(atomic_load(&rec.ok), 0);
	shmp_async_destroy(h);

	/* Counted as failed tasks (4 above). */
	T_EQ(t_pool_stats(p).failed, failed + 4);

	/* The pool stays usable. */
	a = (struct targ){ .x = 4 };
	T_EQ(shmp_pool_apply(p, task, &a, sizeof a, &r, sizeof r, NULL), 0);
	T_EQ(r.y, 16);
	check_where(k, &r);
}

/* A pool whose tasks carry at most 4096 bytes. */
static void test_msgsize(const struct kind *k)
{
	struct shmp_pool_opts po = SHMP_OPTS(shmp_pool_opts, .max_task_bytes = 4096);
	shmp_pool_t *p = k->create(NWORKERS, &po);
	T_CHECK(p);
	static unsigned char big[8192];
	for (size_t i = 0; i < sizeof big; i++)
		big[i] = (unsigned char)(i * 7);
	int64_t s = -1;

	T_FAST(shmp_pool_apply(p, task_sum, big, 8192, &s, sizeof s, NULL), -EMSGSIZE);
	/* arg + result over the limit by 2 bytes. */
	T_FAST(shmp_pool_apply(p, task_sum, big, 4090, &s, sizeof s, NULL), -EMSGSIZE);
	errno = 0;
	double t0 = t_now();
	T_CHECK(!shmp_pool_apply_async(p, task_sum, big, 8192, &s, sizeof s, NULL));
	T_EQ(errno, EMSGSIZE);
	T_CHECK(t_now() - t0 < 0.5);
	/* A single map item this big. */
	int64_t outs[2];
	T_FAST(shmp_pool_map(p, task_sum, big, 4096, 2, outs, sizeof outs[0], NULL, NULL),
	       -EMSGSIZE);
	errno = 0;
	T_CHECK(!shmp_pool_imap(p, task_sum, big, 4096, 2, sizeof outs[0], NULL, NULL, NULL));
	T_EQ(errno, EMSGSIZE);

	/* Exactly at the limit is fine, and the pool was not hurt. */
	int64_t want = 0;
	for (size_t i = 0; i < 4088; i++)
		want += big[i];
	T_EQ(shmp_pool_apply(p, task_sum, big, 4088, &s, sizeof s, NULL), 0);
	T_EQ(s, want);

	/* Many items, each well under the limit, together far over it: the
	 * limit is per item, so map works (chunks are cut to fit). */
	enum { ITEM = 1000, NITEMS = 64 };
	unsigned char *in = malloc(ITEM * NITEMS);
	int64_t *out = calloc(NITEMS, sizeof *out);
	T_CHECK(in && out);
	t_fill(in, ITEM * NITEMS, 5);
	struct shmp_call_opts co = SHMP_OPTS(shmp_call_opts, .chunksize = 16);
	T_EQ(shmp_pool_map(p, task_sum, in, ITEM, NITEMS, out, sizeof *out, NULL, NULL), 0);
	for (int j = 0; j < NITEMS; j++) {
		int64_t w = 0;
		for (int b = 0; b < ITEM; b++)
			w += in[j * ITEM + b];
		T_EQ(out[j], w);
		out[j] = -1;
	}
	T_EQ(shmp_pool_map(p, task_sum, in, ITEM, NITEMS, out, sizeof *out, &co, NULL), 0);
	for (int j = 0; j < NITEMS; j++) {
		int64_t w = 0;
		for (int b = 0; b < ITEM; b++)
			w += in[j * ITEM + b];
		T_EQ(out[j], w);
	}
	free(in);
	free(out);

	T_EQ(shmp_pool_close(p), 0);
	T_EQ(shmp_pool_join(p, 10), 0);
	shmp_pool_destroy(p);
}

static void test_einval(shmp_pool_t *p)
{
	struct targ a = { .x = 1 };
	struct tres r;
	T_EQ(shmp_pool_apply(NULL, task, &a, sizeof a, &r, sizeof r, NULL), -EINVAL);
	T_EQ(shmp_pool_apply(p, NULL, &a, sizeof a, &r, sizeof r, NULL), -EINVAL);
	T_EQ(shmp_pool_apply(p, task, NULL, sizeof a, &r, sizeof r, NULL), -EINVAL);
	T_EQ(shmp_pool_apply(p, task, &a, sizeof a, NULL, sizeof r, NULL), -EINVAL);
	/* Sizes whose sum wraps around are not small. */
	int rc = shmp_pool_apply(p, task, &a, SIZE_MAX, &r, sizeof r, NULL);
	T_CHECK(rc == -EMSGSIZE || rc == -EINVAL);
	rc = shmp_pool_apply(p, task, &a, sizeof a, &r, SIZE_MAX - 8, NULL);
	T_CHECK(rc == -EMSGSIZE || rc == -EINVAL);

	errno = 0;
	T_CHECK(!shmp_pool_apply_async(NULL, task, &a, sizeof a, &r, sizeof r, NULL));
	T_EQ(errno, EINVAL);
	errno = 0;
	T_CHECK(!shmp_pool_apply_async(p, NULL, &a, sizeof a, &r, sizeof r, NULL));
	T_EQ(errno, EINVAL);
	errno = 0;
	T_CHECK(!shmp_pool_apply_async(p, task, NULL, sizeof a, &r, sizeof r, NULL));
	T_EQ(errno, EINVAL);
	errno = 0;
	T_CHECK(!shmp_pool_apply_async(p, task, &a, SIZE_MAX, NULL, sizeof r, NULL));
	T_CHECK(errno == EINVAL || errno == EMSGSIZE);

	T_EQ(shmp_async_get(NULL, 0, NULL), -EINVAL);
	T_EQ(shmp_async_wait(NULL, 0), -EINVAL);
	T_EQ(shmp_async_is_ready(NULL), -EINVAL);
	T_EQ(shmp_async_is_successful(NULL), -EINVAL);
	T_CHECK(!shmp_async_results(NULL));

	/* None of that hurt the pool. */
	T_EQ(shmp_pool_apply(p, task, &a, sizeof a, &r, sizeof r, NULL), 0);
	T_EQ(r.y, 1);
}

static void run(const struct kind *k)
{
	double t0 = t_now();
	shmp_pool_t *p = k->create(NWORKERS, NULL);
	T_CHECK(p);
	T_EQ(shmp_pool_workers(p), NWORKERS);
	T_EQ(shmp_pool_is_threads(p), k->threads);

	test_apply(k, p);
	test_async_get(k, p);
	test_async_results(k, p);
	test_release(p);
	test_callbacks(k, p);
	test_task_failure(k, p);
	test_einval(p);

	T_EQ(shmp_pool_close(p), 0);
	T_EQ(shmp_pool_join(p, 10), 0);
	struct shmp_pool_stats st = t_pool_stats(p);
	T_EQ(st.submitted, st.completed);
	T_EQ(st.queued, 0);
	T_EQ(st.running, 0);
	shmp_pool_destroy(p);

	test_msgsize(k);
	/* Every worker, zygote included, has been reaped. */
	T_NO_CHILDREN();
	printf("%s: %.2f s\n", k->name, t_now() - t0);
}

int main(void)
{
	t_watchdog(60);
	setvbuf(stdout, NULL, _IONBF, 0);
	g_go = shmp_event_create(NULL);
	T_CHECK(g_go);
	g_cnt = t_counters(CNT_N);

	static const struct kind kinds[] = {
		{ "Pool", shmp_pool_create, 0 },
		{ "ThreadPool", shmp_threadpool_create, 1 },
	};
	for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
		run(&kinds[i]);

	shmp_array_destroy(g_cnt);
	shmp_event_destroy(g_go);
	return 0;
}
