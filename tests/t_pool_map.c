/* Pool and ThreadPool, the map family:
 *  - map gives what a sequential loop gives, in order (each task sees its
 *    item's index), with the default chunksize (Python's n / (4 * workers)
 *    rounded up: the number of tasks submitted says so) and chunksizes 1, 20
 *    and larger than the input;
 *  - an empty input returns 0 at once for map, map_async (callback once with
 *    n = 0), imap and imap_unordered (the end at once);
 *  - map_async: on success only callback runs, once, with (out, n) complete;
 *    on failure only error_callback, once, with the error get() reports;
 *    released before it is done, its tasks still run and the pool goes on;
 *  - starmap / starmap_async over an array of argument structs keep order;
 *  - imap: results in order, one at a time, then 0 (and 0 again), also with a
 *    chunksize; next(0.2) waits about 0.2 s for a result that is not there;
 *  - imap_unordered: every result exactly once;
 *  - imap over a generator (shmp_input_fn): endless input consumed partly
 *    then destroyed calls the generator at most consumed + max_inflight *
 *    chunksize times, and never after destroy; n bounds the generator; a
 *    generator's end and its error end the iteration;
 *  - a failing item in imap / imap_unordered is reported at its index and the
 *    iteration goes on;
 *  - map failure: -SHMP_ETASK with the first failed item by index (even when a
 *    later item failed first), the rest of the failed chunks is not run, all
 *    other chunks are (counted after close + join, which return);
 *  - map over a shared Array made before the pool into a shared output Array
 *    is correct and in place (zero copy: tasks see the arrays' own
 *    addresses); over malloc'd memory it is correct too (a process Pool
 *    copies: workers never see the caller's heap; a ThreadPool works in
 *    place);
 *  - NULL pool / fn / buffers: -EINVAL (NULL + EINVAL).
 * Every body runs against shmp_pool_create and shmp_threadpool_create. */
#include "t.h"

#include <pthread.h>
#include <stdatomic.h>

#define NWORKERS 2

/* Made before any pool, so a process Pool's workers share or see them. */
static shmp_event_t *g_go;   /* BLOCK items wait for it */
static shmp_array_t *g_cnt;  /* shared counters */
enum { CNT_RUNS, CNT_N };
enum { NZ = 1000 };          /* items of the zero-copy test */
static shmp_array_t *g_ain, *g_aout; /* shared in (q[NZ]) and out (q[3 * NZ]) */
static char *g_sin, *g_sout;         /* their data */
static char *g_min, *g_mout;         /* malloc'd twins */

/* Item encoding, an int64_t x:
 *   x >= 0            result 3x + 1
 *   x == BLOCK        wait for g_go, then as x = 0
 *   -999 <= x < 0     fail with code -x
 *   x <= -1000        sleep 100 ms, then fail with code (-x) % 1000 */
#define BLOCK ((int64_t)1 << 40)

struct out {
	int64_t v, index, flags;
};

/* flags: where the task found its argument and result. */
enum { IN_SHARED = 1, OUT_SHARED = 2, IN_MALLOC = 4, OUT_MALLOC = 8 };

static int f(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	int64_t x;
	memcpy(&x, arg, sizeof x);
	shmp_array_add(g_cnt, CNT_RUNS, 1, NULL);
	if (c->arg_size != sizeof x || c->result_size != sizeof(struct out))
		return 101;
	if (x == BLOCK) {
		if (shmp_event_wait(g_go, 10) != 0)
			return 99;
		x = 0;
	}
	if (x <= -1000) {
		t_sleep_ms(100);
		return (int)((-x) % 1000);
	}
	if (x < 0)
		return (int)-x;
	struct out o = { 3 * x + 1, (int64_t)c->index, 0 };
	const char *a = arg, *r = res;
	size_t i = c->index;
	if (a == g_sin + i * sizeof x)
		o.flags |= IN_SHARED;
	if (r == g_sout + i * sizeof o)
		o.flags |= OUT_SHARED;
	if (a == g_min + i * sizeof x)
		o.flags |= IN_MALLOC;
	if (r == g_mout + i * sizeof o)
		o.flags |= OUT_MALLOC;
	memcpy(res, &o, sizeof o);
	return 0;
}

struct sarg {
	int32_t a, b;
	int64_t c;
};

/* starmap: a * b + c. */
static int g3(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	const struct sarg *s = arg;
	struct out o = { (int64_t)s->a * s->b + s->c, (int64_t)c->index, 0 };
	memcpy(res, &o, sizeof o);
	return 0;
}

struct cbrec {
	atomic_int ok, bad;
	void *results;
	size_t n;
	int all_ok;    /* the callback found every result in place */
	int64_t first; /* x of out[0], to check (out, n) */
	const int64_t *in;
	struct shmp_task_error e;
	pid_t pid;
	pthread_t thr;
};

static int on_ok(shmp_async_t *a, void *results, size_t n, void *arg)
{
	(void)a;
	struct cbrec *r = arg;
	const struct out *o = results;
	r->results = results;
	r->n = n;
	r->all_ok = 1;
	for (size_t i = 0; i < n; i++)
		if (o[i].v != 3 * r->in[i] + 1 || o[i].index != (int64_t)i)
			r->all_ok = 0;
	r->pid = getpid();
	r->thr = pthread_self();
	atomic_fetch_add(&r->ok, 1);
	return 0;
}

static int on_err(shmp_async_t *a, const struct shmp_task_error *e, void *arg)
{
	(void)a;
	struct cbrec *r = arg;
	r->e = *e;
	r->pid = getpid();
	r->thr = pthread_self();
	atomic_fetch_add(&r->bad, 1);
	return 0;
}


struct kind {
	const char *name;
	shmp_pool_t *(*create)(int, const struct shmp_pool_opts *);
	int threads;
};

static int64_t *inputs(size_t n, int64_t base)
{
	int64_t *in = malloc((n ? n : 1) * sizeof *in);
	T_CHECK(in);
	for (size_t i = 0; i < n; i++)
		in[i] = base + (int64_t)((i * 7919) % 10007);
	return in;
}

static void check_out_at(const int64_t *in, const struct out *o, size_t n, int line)
{
	for (size_t i = 0; i < n; i++) {
		if (o[i].v != 3 * in[i] + 1 || o[i].index != (int64_t)i) {
			fprintf(stderr, "line %d: item %zu: v %lld index %lld, want %lld\n", line, i,
				(long long)o[i].v, (long long)o[i].index, (long long)(3 * in[i] + 1));
			exit(1);
		}
	}
}
#define check_out(in, o, n) check_out_at(in, o, n, __LINE__)

static void test_map(shmp_pool_t *p)
{
	enum { N = 1000 };
	int64_t *in = inputs(N, 0);
	struct out *out = malloc(N * sizeof *out);
	T_CHECK(out);
	/* chunksize -> the number of tasks (chunks) it makes. The default
	 * is ceil(1000 / (4 * 2)) = 125: 8 chunks. */
	static const size_t cs[] = { 0, 1, 20, N + 500, 7 };
	static const uint64_t chunks[] = { 8, N, 50, 1, 143 };
	for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++) {
		memset(out, 0xee, N * sizeof *out);
		struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = cs[k]);
		struct shmp_task_error err;
		uint64_t sub = t_pool_stats(p).submitted;
		T_EQ(shmp_pool_map(p, f, in, sizeof *in, N, out, sizeof *out, &o, &err), 0);
		check_out(in, out, N);
		T_EQ(t_pool_stats(p).submitted - sub, chunks[k]);
	}
	/* opts NULL is the default chunksize. */
	memset(out, 0xee, N * sizeof *out);
	uint64_t sub = t_pool_stats(p).submitted;
	T_EQ(shmp_pool_map(p, f, in, sizeof *in, N, out, sizeof *out, NULL, NULL), 0);
	check_out(in, out, N);
	T_EQ(t_pool_stats(p).submitted - sub, 8);
	/* One item. */
	T_EQ(shmp_pool_map(p, f, in, sizeof *in, 1, out, sizeof *out, NULL, NULL), 0);
	check_out(in, out, 1);
	free(in);
	free(out);
}

static void test_empty(shmp_pool_t *p)
{
	int64_t in[1] = { 1 };
	struct out out[1] = { { -5, -5, -5 } };
	uint64_t sub = t_pool_stats(p).submitted;
	T_FAST(shmp_pool_map(p, f, in, sizeof in[0], 0, out, sizeof out[0], NULL, NULL), 0);
	T_FAST(shmp_pool_starmap(p, f, in, sizeof in[0], 0, out, sizeof out[0], NULL, NULL), 0);
	T_EQ(out[0].v, -5);

	struct cbrec rec;
	memset(&rec, 0, sizeof rec);
	rec.in = in;
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .callback = on_ok,
					    .error_callback = on_err, .cb_arg = &rec);
	shmp_async_t *h = shmp_pool_map_async(p, f, in, sizeof in[0], 0, out, sizeof out[0], &o);
	T_CHECK(h);
	T_FAST(shmp_async_get(h, 1, NULL), 0);
	T_EQ(shmp_async_is_successful(h), 1);
	wait_atomic(&rec.ok, 1);
	T_EQ(rec.n, 0);
	T_EQ(atomic_load(&rec.bad), 0);
	shmp_async_destroy(h);

	shmp_imap_t *it = shmp_pool_imap(p, f, in, sizeof in[0], 0, sizeof out[0], NULL, NULL, NULL);
	T_CHECK(it);
	T_FAST(shmp_imap_next(it, out, NULL, 1, NULL), 0);
	shmp_imap_destroy(it);
	it = shmp_pool_imap_unordered(p, f, in, sizeof in[0], 0, sizeof out[0], NULL, NULL, NULL);
	T_CHECK(it);
	T_FAST(shmp_imap_next(it, out, NULL, 1, NULL), 0);
	shmp_imap_destroy(it);
	T_EQ(out[0].v, -5);
	T_EQ(t_pool_stats(p).submitted, sub);
}

static void test_map_async(shmp_pool_t *p)
{
	enum { N = 300 };
	pthread_t self = pthread_self();
	int64_t *in = inputs(N, 0);
	struct out *out = malloc(N * sizeof *out);
	T_CHECK(out);
	struct cbrec rec;
	memset(&rec, 0, sizeof rec);
	rec.in = in;
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = 7, .callback = on_ok,
					    .error_callback = on_err, .cb_arg = &rec);

	/* Success: only callback, once, with every result. */
	shmp_async_t *h = shmp_pool_map_async(p, f, in, sizeof *in, N, out, sizeof *out, &o);
	T_CHECK(h);
	T_EQ(shmp_async_get(h, 10, NULL), 0);
	T_EQ(shmp_async_is_successful(h), 1);
	check_out(in, out, N);
	wait_atomic(&rec.ok, 1);
	T_CHECK(rec.results == out);
	T_EQ(rec.n, N);
	T_EQ(rec.all_ok, 1);
	T_EQ(rec.pid, getpid());
	T_CHECK(!pthread_equal(rec.thr, self));
	t_sleep_ms(30);
	T_EQ(atomic_load(&rec.ok), 1);
	T_EQ(atomic_load(&rec.bad), 0);
	shmp_async_destroy(h);

	/* Failure (two items in two chunks): only error_callback, once, with
	 * the error get() reports. */
	memset(&rec, 0, sizeof rec);
	rec.in = in;
	in[123] = -9;
	in[250] = -8;
	h = shmp_pool_map_async(p, f, in, sizeof *in, N, out, sizeof *out, &o);
	T_CHECK(h);
	struct shmp_task_error err;
	memset(&err, 0x55, sizeof err);
	T_EQ(shmp_async_get(h, 10, &err), -SHMP_ETASK);
	T_EQ(err.error, -SHMP_ETASK);
	T_CHECK((err.index == 123 && err.code == 9) || (err.index == 250 && err.code == 8));
	T_EQ(shmp_async_is_successful(h), 0);
	wait_atomic(&rec.bad, 1);
	T_EQ(rec.e.error, -SHMP_ETASK);
	T_EQ(rec.e.index, err.index);
	T_EQ(rec.e.code, err.code);
	T_EQ(rec.pid, getpid());
	T_CHECK(!pthread_equal(rec.thr, self));
	/* Let the other failed chunk come back: still once. */
	shmp_async_t *h2 = shmp_pool_map_async(p, f, in, sizeof *in, 5, out, sizeof *out, NULL);
	T_CHECK(h2);
	T_EQ(shmp_async_get(h2, 10, NULL), 0);
	shmp_async_destroy(h2);
	t_sleep_ms(30);
	T_EQ(atomic_load(&rec.bad), 1);
	T_EQ(atomic_load(&rec.ok), 0);
	shmp_async_destroy(h);
	free(in);
	free(out);
}

/* map_async released before it is done: its tasks still run to the end and
 * the pool goes on. (pool.h asks in and out to stay valid until the call is
 * ready even when the handle is released: both are kept alive here until
 * every task has run and been collected.) */
static void test_map_async_release(shmp_pool_t *p)
{
	enum { N = 64 };
	int64_t in[N];
	for (int i = 0; i < N; i++)
		in[i] = BLOCK;
	struct out *out = malloc(N * sizeof *out);
	T_CHECK(out);
	T_EQ(shmp_event_clear(g_go), 0);
	int64_t runs = t_load(g_cnt, CNT_RUNS);
	uint64_t done = t_pool_stats(p).completed;
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = 4);
	shmp_async_t *h = shmp_pool_map_async(p, f, in, sizeof *in, N, out, sizeof *out, &o);
	T_CHECK(h);
	shmp_async_destroy(h);
	T_EQ(shmp_event_set(g_go), 0);
	t_wait_eq(g_cnt, CNT_RUNS, runs + N, 5);
	double until = t_now() + 5;
	while (t_pool_stats(p).completed < done + N / 4) {
		T_CHECK(t_now() < until);
		t_sleep_ms(1);
	}
	T_EQ(t_pool_stats(p).completed, done + N / 4);
	/* The pool goes on. */
	int64_t one = 1;
	struct out r;
	T_EQ(shmp_pool_map(p, f, &one, sizeof one, 1, &r, sizeof r, NULL, NULL), 0);
	T_EQ(r.v, 4);
	free(out);
}

static void test_starmap(shmp_pool_t *p)
{
	enum { N = 100 };
	struct sarg in[N];
	struct out out[N];
	for (int i = 0; i < N; i++)
		in[i] = (struct sarg){ i, 100 - i, 7 * i - 3 };
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = 3);
	memset(out, 0xee, sizeof out);
	T_EQ(shmp_pool_starmap(p, g3, in, sizeof in[0], N, out, sizeof out[0], &o, NULL), 0);
	for (int i = 0; i < N; i++) {
		T_EQ(out[i].v, (int64_t)i * (100 - i) + 7 * i - 3);
		T_EQ(out[i].index, i);
	}
	memset(out, 0xee, sizeof out);
	shmp_async_t *h = shmp_pool_starmap_async(p, g3, in, sizeof in[0], N, out, sizeof out[0], NULL);
	T_CHECK(h);
	T_EQ(shmp_async_get(h, 10, NULL), 0);
	for (int i = 0; i < N; i++) {
		T_EQ(out[i].v, (int64_t)i * (100 - i) + 7 * i - 3);
		T_EQ(out[i].index, i);
	}
	shmp_async_destroy(h);
}

static void test_imap(shmp_pool_t *p)
{
	enum { N = 200 };
	int64_t *in = inputs(N, 0);
	static const size_t cs[] = { 0, 1, 7, N + 1 };
	for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++) {
		struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = cs[k]);
		shmp_imap_t *it = shmp_pool_imap(p, f, in, sizeof *in, N, sizeof(struct out), NULL,
						 NULL, &o);
		T_CHECK(it);
		for (size_t i = 0; i < N; i++) {
			struct out r;
			uint64_t idx = 12345;
			T_EQ(shmp_imap_next(it, &r, &idx, 10, NULL), 1);
			T_EQ(idx, i);
			T_EQ(r.index, i);
			T_EQ(r.v, 3 * in[i] + 1);
		}
		struct out r;
		T_EQ(shmp_imap_next(it, &r, NULL, 10, NULL), 0);
		T_FAST(shmp_imap_next(it, &r, NULL, 1, NULL), 0);
		shmp_imap_destroy(it);
	}

	/* next(timeout) with the next result not there yet. */
	T_EQ(shmp_event_clear(g_go), 0);
	int64_t bin[3] = { 1, BLOCK, 2 };
	struct shmp_call_opts o1 = SHMP_OPTS(shmp_call_opts, .chunksize = 1);
	shmp_imap_t *it = shmp_pool_imap(p, f, bin, sizeof bin[0], 3, sizeof(struct out), NULL,
					 NULL, &o1);
	T_CHECK(it);
	struct out r;
	uint64_t idx;
	T_EQ(shmp_imap_next(it, &r, &idx, 10, NULL), 1);
	T_EQ(idx, 0);
	T_EQ(r.v, 4);
	T_ABOUT(shmp_imap_next(it, &r, &idx, 0.2, NULL), -ETIMEDOUT);
	T_EQ(shmp_event_set(g_go), 0);
	T_EQ(shmp_imap_next(it, &r, &idx, 10, NULL), 1);
	T_EQ(idx, 1);
	T_EQ(r.v, 1);
	T_EQ(shmp_imap_next(it, &r, &idx, 10, NULL), 1);
	T_EQ(idx, 2);
	T_EQ(r.v, 7);
	T_EQ(shmp_imap_next(it, &r, &idx, 10, NULL), 0);
	shmp_imap_destroy(it);

	/* A failing item is reported at its index; the iteration goes on. */
	in[5] = -7;
	it = shmp_pool_imap(p, f, in, sizeof *in, 20, sizeof(struct out), NULL, NULL, &o1);
	T_CHECK(it);
	for (size_t i = 0; i < 20; i++) {
		struct shmp_task_error err;
		memset(&err, 0x55, sizeof err);
		int rc = shmp_imap_next(it, &r, &idx, 10, &err);
		if (i == 5) {
			T_EQ(rc, -SHMP_ETASK);
			T_EQ(err.error, -SHMP_ETASK);
			T_EQ(err.code, 7);
			T_EQ(err.index, 5);
		} else {
			T_EQ(rc, 1);
			T_EQ(idx, i);
			T_EQ(r.v, 3 * in[i] + 1);
		}
	}
	T_EQ(shmp_imap_next(it, &r, &idx, 10, NULL), 0);
	shmp_imap_destroy(it);
	free(in);
}

static void test_imap_unordered(shmp_pool_t *p)
{
	enum { N = 300 };
	int64_t *in = inputs(N, 0);
	static const size_t cs[] = { 0, 1, 4 };
	for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++) {
		struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = cs[k]);
		shmp_imap_t *it = shmp_pool_imap_unordered(p, f, in, sizeof *in, N,
							   sizeof(struct out), NULL, NULL, &o);
		T_CHECK(it);
		unsigned char seen[N] = { 0 };
		for (size_t i = 0; i < N; i++) {
			struct out r;
			uint64_t idx = UINT64_MAX;
			T_EQ(shmp_imap_next(it, &r, &idx, 10, NULL), 1);
			T_CHECK(idx < N);
			T_EQ(seen[idx], 0);
			seen[idx] = 1;
			T_EQ(r.index, idx);
			T_EQ(r.v, 3 * in[idx] + 1);
		}
		struct out r;
		T_EQ(shmp_imap_next(it, &r, NULL, 10, NULL), 0);
		shmp_imap_destroy(it);
	}

	/* One failing item among them: reported once, at its index; every
	 * other result exactly once. */
	in[17] = -6;
	struct shmp_call_opts o1 = SHMP_OPTS(shmp_call_opts, .chunksize = 1);
	shmp_imap_t *it = shmp_pool_imap_unordered(p, f, in, sizeof *in, 40, sizeof(struct out),
						   NULL, NULL, &o1);
	T_CHECK(it);
	unsigned char seen[40] = { 0 };
	int fails = 0;
	for (int i = 0; i < 40; i++) {
		struct out r;
		uint64_t idx = UINT64_MAX;
		struct shmp_task_error err;
		int rc = shmp_imap_next(it, &r, &idx, 10, &err);
		if (rc == -SHMP_ETASK) {
			T_EQ(err.index, 17);
			T_EQ(err.code, 6);
			fails++;
			continue;
		}
		T_EQ(rc, 1);
		T_CHECK(idx < 40 && idx != 17);
		T_EQ(seen[idx], 0);
		seen[idx] = 1;
		T_EQ(r.v, 3 * in[idx] + 1);
	}
	T_EQ(fails, 1);
	struct out r;
	T_EQ(shmp_imap_next(it, &r, NULL, 10, NULL), 0);
	shmp_imap_destroy(it);
	free(in);
}

/* A generator: item i is x = i; counts its calls; fails or ends on demand. */
struct gen {
	atomic_long calls;
	atomic_int out_of_order; /* called with an index that is not its call number */
	long end_at;             /* return 0 at this index (-1: never) */
	long fail_at;            /* return -EIO at this index (-1: never) */
};

static int gen_fn(void *ctx, void *arg, uint64_t index)
{
	struct gen *g = ctx;
	long c = atomic_fetch_add(&g->calls, 1);
	if ((uint64_t)c != index)
		atomic_store(&g->out_of_order, 1);
	if (g->end_at >= 0 && (long)index >= g->end_at)
		return 0;
	if (g->fail_at >= 0 && (long)index >= g->fail_at)
		return -EIO;
	int64_t x = (int64_t)index;
	memcpy(arg, &x, sizeof x);
	return 1;
}

static void test_imap_generator(shmp_pool_t *p)
{
	/* Endless input, consumed partly: backpressure bounds the calls. */
	enum { CS = 4, INFL = 3, TAKE = 50 };
	struct gen g = { .end_at = -1, .fail_at = -1 };
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = CS, .max_inflight = INFL);
	shmp_imap_t *it = shmp_pool_imap(p, f, NULL, sizeof(int64_t), SIZE_MAX, sizeof(struct out),
					 gen_fn, &g, &o);
	T_CHECK(it);
	for (int i = 0; i < TAKE; i++) {
		struct out r;
		uint64_t idx;
		T_EQ(shmp_imap_next(it, &r, &idx, 10, NULL), 1);
		T_EQ(idx, i);
		T_EQ(r.v, 3 * i + 1);
	}
	/* Give the pool time to take all the input it would. */
	t_sleep_ms(100);
	long calls = atomic_load(&g.calls);
	if (calls > TAKE + INFL * CS)
		fprintf(stderr, "generator called %ld times for %d results\n", calls, TAKE);
	T_CHECK(calls >= TAKE && calls <= TAKE + INFL * CS);
	double t0 = t_now();
	shmp_imap_destroy(it);
	T_CHECK(t_now() - t0 < 2);
	calls = atomic_load(&g.calls);
	t_sleep_ms(50);
	T_EQ(atomic_load(&g.calls), calls);
	T_EQ(atomic_load(&g.out_of_order), 0);

	/* n bounds an endless generator: exactly n results, n calls. */
	struct gen g2 = { .end_at = -1, .fail_at = -1 };
	it = shmp_pool_imap(p, f, NULL, sizeof(int64_t), 25, sizeof(struct out), gen_fn, &g2, &o);
	T_CHECK(it);
	for (int i = 0; i < 25; i++) {
		struct out r;
		uint64_t idx;
		T_EQ(shmp_imap_next(it, &r, &idx, 10, NULL), 1);
		T_EQ(idx, i);
		T_EQ(r.v, 3 * i + 1);
	}
	struct out r;
	T_EQ(shmp_imap_next(it, &r, NULL, 10, NULL), 0);
	T_EQ(atomic_load(&g2.calls), 25);
	shmp_imap_destroy(it);

	/* The generator's end (in the middle of a chunk) ends the iteration,
	 * for imap_unordered too. */
	for (int unord = 0; unord < 2; unord++) {
		struct gen g3 = { .end_at = 37, .fail_at = -1 };
		it = (unord ? shmp_pool_imap_unordered : shmp_pool_imap)(
			p, f, NULL, sizeof(int64_t), SIZE_MAX, sizeof(struct out), gen_fn, &g3, &o);
		T_CHECK(it);
		unsigned char seen[37] = { 0 };
		for (int i = 0; i < 37; i++) {
			uint64_t idx;
			T_EQ(shmp_imap_next(it, &r, &idx, 10, NULL), 1);
			T_CHECK(idx < 37);
			if (!unord)
				T_EQ(idx, i);
			T_EQ(seen[idx], 0);
			seen[idx] = 1;
			T_EQ(r.v, 3 * (int64_t)idx + 1);
		}
		T_EQ(shmp_imap_next(it, &r, NULL, 10, NULL), 0);
		shmp_imap_destroy(it);
	}

	/* The generator's error ends the iteration with it, after the items
	 * produced before it. */
	struct gen g4 = { .end_at = -1, .fail_at = 10 };
	struct shmp_call_opts o1 = SHMP_OPTS(shmp_call_opts, .chunksize = 1);
	it = shmp_pool_imap(p, f, NULL, sizeof(int64_t), SIZE_MAX, sizeof(struct out), gen_fn, &g4,
			    &o1);
	T_CHECK(it);
	for (int i = 0; i < 10; i++) {
		uint64_t idx;
		T_EQ(shmp_imap_next(it, &r, &idx, 10, NULL), 1);
		T_EQ(idx, i);
	}
	T_EQ(shmp_imap_next(it, &r, NULL, 10, NULL), -EIO);
	shmp_imap_destroy(it);
}

/* Zero copy: shared arrays made before the pool; and the copy path. The
 * inputs are written after the pool exists, so a process Pool's workers can
 * only see them through shared memory: a worker reading the caller's heap
 * would see the stale bytes of its own fork. */
static void test_zero_copy(const struct kind *k, shmp_pool_t *p, int64_t base)
{
	int64_t *sin = (int64_t *)g_sin, *min = (int64_t *)g_min;
	struct out *sout = (struct out *)g_sout, *mout = (struct out *)g_mout;
	for (size_t i = 0; i < NZ; i++)
		sin[i] = min[i] = base + (int64_t)i * 5;
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = 50);

	/* shared -> shared: in place for both kinds. */
	memset(sout, 0xee, NZ * sizeof *sout);
	T_EQ(shmp_pool_map(p, f, sin, sizeof *sin, NZ, sout, sizeof *sout, &o, NULL), 0);
	check_out(sin, sout, NZ);
	for (size_t i = 0; i < NZ; i++)
		T_EQ(sout[i].flags, IN_SHARED | OUT_SHARED);

	/* malloc -> malloc: copied for a Pool, in place for a ThreadPool. */
	memset(mout, 0xee, NZ * sizeof *mout);
	T_EQ(shmp_pool_map(p, f, min, sizeof *min, NZ, mout, sizeof *mout, &o, NULL), 0);
	check_out(min, mout, NZ);
	for (size_t i = 0; i < NZ; i++)
		T_EQ(mout[i].flags, k->threads ? IN_MALLOC | OUT_MALLOC : 0);

	/* shared -> malloc and malloc -> shared, with the default chunksize. */
	memset(mout, 0xee, NZ * sizeof *mout);
	T_EQ(shmp_pool_map(p, f, sin, sizeof *sin, NZ, mout, sizeof *mout, NULL, NULL), 0);
	check_out(sin, mout, NZ);
	for (size_t i = 0; i < NZ; i++)
		T_EQ(mout[i].flags, k->threads ? IN_SHARED | OUT_MALLOC : IN_SHARED);
	memset(sout, 0xee, NZ * sizeof *sout);
	T_EQ(shmp_pool_map(p, f, min, sizeof *min, NZ, sout, sizeof *sout, NULL, NULL), 0);
	check_out(min, sout, NZ);
	for (size_t i = 0; i < NZ; i++)
		T_EQ(sout[i].flags, k->threads ? IN_MALLOC | OUT_SHARED : OUT_SHARED);

	/* map_async over shared arrays. */
	memset(sout, 0xee, NZ * sizeof *sout);
	shmp_async_t *h = shmp_pool_map_async(p, f, sin, sizeof *sin, NZ, sout, sizeof *sout, &o);
	T_CHECK(h);
	T_EQ(shmp_async_get(h, 10, NULL), 0);
	check_out(sin, sout, NZ);
	shmp_async_destroy(h);
}

static void test_einval(shmp_pool_t *p)
{
	int64_t in[4] = { 1, 2, 3, 4 };
	struct out out[4];
	T_EQ(shmp_pool_map(NULL, f, in, 8, 4, out, sizeof out[0], NULL, NULL), -EINVAL);
	T_EQ(shmp_pool_map(p, NULL, in, 8, 4, out, sizeof out[0], NULL, NULL), -EINVAL);
	T_EQ(shmp_pool_map(p, f, NULL, 8, 4, out, sizeof out[0], NULL, NULL), -EINVAL);
	T_EQ(shmp_pool_map(p, f, in, 8, 4, NULL, sizeof out[0], NULL, NULL), -EINVAL);
	T_EQ(shmp_pool_starmap(p, NULL, in, 8, 4, out, sizeof out[0], NULL, NULL), -EINVAL);
	/* n * size that wraps around. */
	int rc = shmp_pool_map(p, f, in, 8, SIZE_MAX / 4, out, sizeof out[0], NULL, NULL);
	T_CHECK(rc == -EINVAL || rc == -EMSGSIZE || rc == -SHMP_ESEGFULL);
	errno = 0;
	T_CHECK(!shmp_pool_map_async(NULL, f, in, 8, 4, out, sizeof out[0], NULL));
	T_EQ(errno, EINVAL);
	errno = 0;
	T_CHECK(!shmp_pool_map_async(p, NULL, in, 8, 4, out, sizeof out[0], NULL));
	T_EQ(errno, EINVAL);
	errno = 0;
	T_CHECK(!shmp_pool_starmap_async(p, f, NULL, 8, 4, out, sizeof out[0], NULL));
	T_EQ(errno, EINVAL);
	errno = 0;
	T_CHECK(!shmp_pool_imap(NULL, f, in, 8, 4, sizeof out[0], NULL, NULL, NULL));
	T_EQ(errno, EINVAL);
	errno = 0;
	T_CHECK(!shmp_pool_imap(p, NULL, in, 8, 4, sizeof out[0], NULL, NULL, NULL));
	T_EQ(errno, EINVAL);
	errno = 0;
	/* Neither an array nor a generator. */
	T_CHECK(!shmp_pool_imap_unordered(p, f, NULL, 8, 4, sizeof out[0], NULL, NULL, NULL));
	T_EQ(errno, EINVAL);
	T_EQ(shmp_imap_next(NULL, out, NULL, 0, NULL), -EINVAL);
	/* The pool was not hurt. */
	T_EQ(shmp_pool_map(p, f, in, 8, 4, out, sizeof out[0], NULL, NULL), 0);
	check_out(in, out, 4);
}

/* map fails: the first failed item by index, even though a later item fails
 * 100 ms sooner; the rest of each failed chunk is not run, every other
 * chunk is; close and join return. Ends the pool. */
static void test_map_failure_close(shmp_pool_t *p)
{
	enum { N = 1000 };
	int64_t *in = inputs(N, 0);
	struct out *out = malloc(N * sizeof *out);
	T_CHECK(out);
	in[30] = -1009;  /* first of its chunk; fails after 100 ms, code 9 */
	in[705] = -8;    /* fails at once, code 8; 706..709 not run */
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = 10);
	int64_t runs = t_load(g_cnt, CNT_RUNS);
	uint64_t failed = t_pool_stats(p).failed;
	struct shmp_task_error err;
	memset(&err, 0x55, sizeof err);
	T_EQ(shmp_pool_map(p, f, in, sizeof *in, N, out, sizeof *out, &o, &err), -SHMP_ETASK);
	T_EQ(err.error, -SHMP_ETASK);
	T_EQ(err.index, 30);
	T_EQ(err.code, 9);
	T_EQ(shmp_pool_close(p), 0);
	T_EQ(shmp_pool_join(p, 10), 0);
	T_EQ(t_load(g_cnt, CNT_RUNS) - runs, N - 9 - 4);
	struct shmp_pool_stats st = t_pool_stats(p);
	T_EQ(st.failed - failed, 2);
	T_EQ(st.submitted, st.completed);
	free(in);
	free(out);
}

static void run(const struct kind *k, int64_t base)
{
	double t0 = t_now();
	shmp_pool_t *p = k->create(NWORKERS, NULL);
	T_CHECK(p);
	test_map(p);
	test_empty(p);
	test_map_async(p);
	test_starmap(p);
	test_imap(p);
	test_imap_unordered(p);
	test_imap_generator(p);
	test_zero_copy(k, p, base);
	test_einval(p);
	test_map_async_release(p);
	test_map_failure_close(p);
	shmp_pool_destroy(p);
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
	g_ain = t_raw_array('q', NZ);
	g_aout = t_raw_array('q', 3 * NZ);
	g_sin = shmp_array_ptr(g_ain);
	g_sout = shmp_array_ptr(g_aout);
	g_min = malloc(NZ * sizeof(int64_t));
	g_mout = malloc(NZ * sizeof(struct out));
	T_CHECK(g_sin && g_sout && g_min && g_mout);
	memset(g_min, 0, NZ * sizeof(int64_t));
	memset(g_mout, 0, NZ * sizeof(struct out));

	static const struct kind kinds[] = {
		{ "Pool", shmp_pool_create, 0 },
		{ "ThreadPool", shmp_threadpool_create, 1 },
	};
	for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
		run(&kinds[i], 1000 + 100000 * (int64_t)i);

	free(g_min);
	free(g_mout);
	shmp_array_destroy(g_ain);
	shmp_array_destroy(g_aout);
	shmp_array_destroy(g_cnt);
	shmp_event_destroy(g_go);
	return 0;
}
