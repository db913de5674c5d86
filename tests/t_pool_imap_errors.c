/* imap and imap_unordered when something fails (include/shmp/pool.h,
 * shmp_imap_next), Pool and ThreadPool:
 *  - an item failing in a chunk: the items before it deliver their results,
 *    the failing one its error (err.index, err.code, err.skipped = the rest
 *    of its chunk), every later item of the chunk -SHMP_ESKIPPED at its own
 *    index, in order after the failure; they never ran (a shared counter of
 *    runs); the chunks after it deliver everything; then the end (0). For
 *    imap_unordered every index comes exactly once, one of those three ways;
 *  - CPython's test_imap_handle_iterable_exception, with an input function
 *    that fails at item `when` (exception_throwing_generator): (1, -1) and
 *    chunksize 1 fail at the first next(); (10, 3) chunksize 1: 0, 1, 4
 *    then the error; (20, 7) chunksize 2: six results then the error;
 *    chunksize 4: four results then the error. Items of the unfinished chunk
 *    are never delivered, the error's index is where the input failed, the
 *    input function is never called past its failure, and after the error
 *    the iteration ends (0, and 0 again). The same for imap_unordered (the
 *    same set of items, any order) and with max_inflight 1. */
#include "t.h"

#include <stdatomic.h>
#include <stdbool.h>

static shmp_pool_t *(*const create[2])(int, const struct shmp_pool_opts *) = {
	shmp_pool_create, shmp_threadpool_create
};
static const char *const kind_name[2] = { "Pool", "ThreadPool" };

static shmp_array_t *g_runs; /* made before any pool */

static int sqr(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	(void)c;
	long x = *(const long *)arg;
	shmp_array_add(g_runs, 0, 1, NULL);
	if (x < 0)
		return (int)-x;
	*(long *)res = x * x;
	return 0;
}

static void test_skipped(shmp_pool_t *p, bool unordered)
{
	enum { N = 30, CS = 5 };
	long in[N];
	for (int i = 0; i < N; i++)
		in[i] = i;
	in[7] = -9;
	T_EQ(shmp_array_store(g_runs, 0, 0), 0);
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = CS);
	shmp_imap_t *it = (unordered ? shmp_pool_imap_unordered : shmp_pool_imap)(
		p, sqr, in, sizeof in[0], N, sizeof(long), NULL, NULL, &o);
	T_CHECK(it);
	int how[N]; /* 1 result, 2 failure, 3 skipped */
	memset(how, 0, sizeof how);
	int order = 0, at[N];
	for (int k = 0; k < N; k++) {
		long v = -1;
		uint64_t idx = UINT64_MAX;
		struct shmp_task_error err;
		memset(&err, 0x55, sizeof err);
		int r = shmp_imap_next(it, &v, &idx, 10, &err);
		T_CHECK(idx < N);
		if (!unordered)
			T_EQ(idx, k);
		T_EQ(how[idx], 0);
		at[idx] = order++;
		if (r == 1) {
			how[idx] = 1;
			T_EQ(v, (long)idx * (long)idx);
			T_EQ(err.error, 0);
		} else if (r == -SHMP_ETASK) {
			how[idx] = 2;
			T_EQ(idx, 7);
			T_EQ(err.error, -SHMP_ETASK);
			T_EQ(err.index, 7);
			T_EQ(err.code, 9);
			T_EQ(err.skipped, 2);
		} else {
			T_EQ(r, -SHMP_ESKIPPED);
			how[idx] = 3;
			T_EQ(err.error, -SHMP_ESKIPPED);
			T_EQ(err.index, idx);
		}
	}
	long v;
	T_EQ(shmp_imap_next(it, &v, NULL, 10, NULL), 0);
	shmp_imap_destroy(it);
	for (int i = 0; i < N; i++)
		T_EQ(how[i], i == 7 ? 2 : (i == 8 || i == 9) ? 3 : 1);
	/* In its chunk's order: 5, 6 before the failure, 8, 9 after it. */
	T_CHECK(at[5] < at[6] && at[6] < at[7] && at[7] < at[8] && at[8] < at[9]);
	/* 8 and 9 never ran (imap destroyed: nothing is running any more). */
	T_EQ(t_load(g_runs, 0), N - 2);
}

/* CPython's exception_throwing_generator(total, when): yields 0, 1, ...;
 * raises instead of yielding `when`. */
struct gen {
	long total, when;
	atomic_long calls, max_index;
};

static int gen_fn(void *ctx, void *arg, uint64_t index)
{
	struct gen *g = ctx;
	atomic_fetch_add(&g->calls, 1);
	if ((long)index > atomic_load(&g->max_index))
		atomic_store(&g->max_index, (long)index);
	if ((long)index == g->when || g->when == -1)
		return -EPROTO; /* SayWhenError */
	if ((long)index >= g->total)
		return 0;
	long x = (long)index;
	memcpy(arg, &x, sizeof x);
	return 1;
}

static void cpython_case(shmp_pool_t *p, bool unordered, long total, long when, size_t cs, unsigned inflight,
			 int expect_results)
{
	struct gen g = { .total = total, .when = when };
	atomic_store(&g.max_index, -1);
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = cs, .max_inflight = inflight);
	shmp_imap_t *it = (unordered ? shmp_pool_imap_unordered : shmp_pool_imap)(
		p, sqr, NULL, sizeof(long), SIZE_MAX, sizeof(long), gen_fn, &g, &o);
	T_CHECK(it);
	unsigned char seen[64] = { 0 };
	for (int i = 0; i < expect_results; i++) {
		long v = -1;
		uint64_t idx = UINT64_MAX;
		T_EQ(shmp_imap_next(it, &v, &idx, 10, NULL), 1);
		T_CHECK(idx < (uint64_t)expect_results);
		if (!unordered)
			T_EQ(idx, i);
		T_EQ(seen[idx], 0);
		seen[idx] = 1;
		T_EQ(v, (long)(idx * idx));
	}
	struct shmp_task_error err;
	memset(&err, 0, sizeof err);
	long v;
	uint64_t idx = UINT64_MAX;
	T_EQ(shmp_imap_next(it, &v, &idx, 10, &err), -EPROTO);
	T_EQ(err.error, -EPROTO);
	long fail_at = when == -1 ? 0 : when;
	T_EQ(err.index, fail_at);
	T_EQ(idx, fail_at);
	T_EQ(shmp_imap_next(it, &v, NULL, 10, NULL), 0);
	T_FAST(shmp_imap_next(it, &v, NULL, 10, NULL), 0);
	/* Never asked for anything past the failure. */
	T_EQ(atomic_load(&g.max_index), fail_at);
	shmp_imap_destroy(it);
}

static void test_cpython(shmp_pool_t *p, bool unordered, unsigned inflight)
{
	cpython_case(p, unordered, 1, -1, 1, inflight, 0);
	cpython_case(p, unordered, 1, -1, 1, inflight, 0); /* again: reentrant */
	cpython_case(p, unordered, 10, 3, 1, inflight, 3);
	cpython_case(p, unordered, 20, 7, 2, inflight, 6);
	cpython_case(p, unordered, 20, 7, 4, inflight, 4);
	/* Failing at a chunk's first item: the chunks before it. */
	cpython_case(p, unordered, 20, 8, 4, inflight, 8);
}

int main(void)
{
	t_watchdog(60);
	setvbuf(stdout, NULL, _IONBF, 0);
	g_runs = t_counters(1);
	for (int kind = 0; kind < 2; kind++) {
		shmp_pool_t *p = create[kind](2, NULL);
		T_CHECK(p);
		for (int unord = 0; unord < 2; unord++) {
			test_skipped(p, unord);
			test_cpython(p, unord, 0);
			test_cpython(p, unord, 1);
		}
		T_EQ(shmp_pool_close(p), 0);
		T_EQ(shmp_pool_join(p, 10), 0);
		struct shmp_pool_stats st = t_pool_stats(p);
		T_EQ(st.completed, st.submitted);
		shmp_pool_destroy(p);
		printf("%s: ok\n", kind_name[kind]);
	}
	shmp_array_destroy(g_runs);
	return 0;
}
