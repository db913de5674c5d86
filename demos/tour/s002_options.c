/* Seed 002 (Chinese), the Pool's options: the tutorial's program with an
 * initializer (apply_async, map, map_async with a callback), then
 * maxtasksperchild and chunksize, which it describes. The tutorial prints
 * "[pid] Hello x" / "[pid] Bye x"; so does the tour. */
#include "tour.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../progress.h"

struct foo_arg {
	long x;
	double sleep; /* random.uniform(0.5, 2), drawn by the caller */
	int quiet;    /* chunksize's timing runs print nothing */
};

struct foo_res {
	long x;
	pid_t pid;
	int init_seen; /* ctx->user is what this worker's initializer stored */
};

/* Shared with the workers (made before each pool): initializer runs. */
static shmp_value_t *g_inits;
/* Per worker process: what the initializer left for the tasks. */
static pid_t g_init_pid;

/* def subprocess_initializer(): print("[%s] init" % os.getpid()) */
static int subprocess_initializer(void *initarg, void **user)
{
	(void)initarg;
	say("[%d] init", (int)getpid());
	g_init_pid = getpid();
	*user = &g_init_pid;
	shmp_value_add(g_inits, 1, NULL);
	return 0;
}

/* def foo(x): print Hello, time.sleep(random.uniform(0.5, 2)), print Bye, return x */
static int foo(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	const struct foo_arg *a = arg;
	struct foo_res *r = res;
	if (!a->quiet)
		say("[%d] Hello %ld", (int)getpid(), a->x);
	nap(a->sleep);
	if (!a->quiet)
		say("[%d] Bye %ld", (int)getpid(), a->x);
	r->x = a->x;
	r->pid = getpid();
	r->init_seen = c->user && *(pid_t *)c->user == getpid();
	return 0;
}

static void fill(struct foo_arg *a, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i++)
		a[i] = (struct foo_arg){ .x = (long)i, .sleep = tour_uniform(seed + i, 0.5, 2) };
}

/* Python's print of a list of the x's. */
static const char *list(const struct foo_res *r, size_t n, char *buf, size_t size)
{
	size_t len = (size_t)snprintf(buf, size, "[");
	for (size_t i = 0; i < n && len < size; i++)
		len += (size_t)snprintf(buf + len, size - len, "%s%ld", i ? ", " : "", r[i].x);
	if (len < size)
		snprintf(buf + len, size - len, "]");
	return buf;
}

static int results_ok(const struct foo_res *r, size_t n)
{
	int ok = 1;
	for (size_t i = 0; i < n; i++)
		ok &= r[i].x == (long)i && r[i].pid != getpid() && r[i].init_seen;
	return ok;
}

static atomic_int bar_calls;
static atomic_long bar_pid;
static atomic_int bar_ok;

/* def bar(result): print("[%s] %s" % (os.getpid(), result)) */
static int bar(shmp_async_t *a, void *results, size_t n, void *cb_arg)
{
	(void)a;
	(void)cb_arg;
	char buf[128];
	say("[%d] %s", (int)getpid(), list(results, n, buf, sizeof buf));
	atomic_store(&bar_ok, n == 3 && results_ok(results, n));
	atomic_store(&bar_pid, getpid());
	atomic_fetch_add(&bar_calls, 1);
	return 0;
}

int sec_initializer(void)
{
	char buf[128];
	atomic_store(&bar_calls, 0);
	g_inits = shmp_value_create('q', NULL, NULL);
	if (!CHECK(g_inits != NULL))
		return -1;
	/* pool = Pool(processes=2, initializer=subprocess_initializer) */
	struct shmp_pool_opts po = SHMP_OPTS(shmp_pool_opts, .initializer = subprocess_initializer);
	shmp_pool_t *p = tour_pool(2, &po);
	if (!p) {
		shmp_value_destroy(g_inits);
		return -1;
	}
	say("Before ...");
	/* for x in range(3): pool.apply_async(foo, (x,)) — results never
	 * fetched: kept in the handle (result NULL), dropped on release. */
	struct foo_arg a[3];
	fill(a, 3, 100);
	for (int x = 0; x < 3; x++) {
		shmp_async_t *h = shmp_pool_apply_async(p, foo, &a[x], sizeof a[x], NULL,
							sizeof(struct foo_res), NULL);
		CHECK(h != NULL);
		shmp_async_destroy(h);
	}
	/* result = pool.map(foo, range(3)): blocks, so the result is complete */
	struct foo_res r[3];
	memset(r, 0, sizeof r);
	fill(a, 3, 200);
	CHECK_EQ(shmp_pool_map(p, foo, a, sizeof a[0], 3, r, sizeof r[0], NULL, NULL), 0);
	CHECK(results_ok(r, 3));
	/* result = pool.map_async(foo, range(3), callback=bar); print(result.get()) */
	struct foo_res r2[3];
	memset(r2, 0, sizeof r2);
	fill(a, 3, 300);
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .callback = bar);
	shmp_async_t *h = shmp_pool_map_async(p, foo, a, sizeof a[0], 3, r2, sizeof r2[0], &o);
	if (CHECK(h != NULL) && CHECK_EQ(shmp_async_get(h, TOUR_WAIT, NULL), 0))
		say("%s", list(r2, 3, buf, sizeof buf));
	CHECK(results_ok(r2, 3));
	say("After ...");
	CHECK_EQ(shmp_pool_close(p), 0);
	CHECK_EQ(shmp_pool_join(p, TOUR_WAIT), 0);
	shmp_async_destroy(h);
	/* The callback ran once, in the main process ("由main process執行"). */
	CHECK_EQ(atomic_load(&bar_calls), 1);
	CHECK_EQ(atomic_load(&bar_pid), getpid());
	CHECK(atomic_load(&bar_ok));
	/* Each of the two workers ran the initializer once. */
	int64_t inits = -1;
	shmp_value_load(g_inits, &inits);
	CHECK_EQ(inits, 2);
	struct shmp_pool_stats st;
	CHECK_EQ(shmp_pool_stats(p, &st), 0);
	CHECK_EQ(st.submitted, 9); /* 3 apply_async + 3 map + 3 map_async */
	CHECK_EQ(st.completed, 9);
	shmp_pool_destroy(p);
	shmp_value_destroy(g_inits);
	return 0;
}

/* foo without the sleep's randomness: which process ran item x. */
static int foo_pid(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	long x = *(const long *)arg;
	say("[%d] task %ld (%s)", (int)getpid(), x, worker_name(c));
	nap(0.5);
	*(pid_t *)res = getpid();
	return 0;
}

int sec_maxtasksperchild(void)
{
	enum { N = 8, MAXT = 2 };
	/* pool = Pool(2, maxtasksperchild=2) */
	struct shmp_pool_opts po = SHMP_OPTS(shmp_pool_opts, .max_tasks_per_child = MAXT);
	shmp_pool_t *p = tour_pool(2, &po);
	if (!p)
		return -1;
	long in[N];
	pid_t out[N];
	for (int i = 0; i < N; i++)
		in[i] = i;
	memset(out, 0, sizeof out);
	/* chunksize 1: one item is one task, as maxtasksperchild counts. */
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = 1);
	CHECK_EQ(shmp_pool_map(p, foo_pid, in, sizeof in[0], N, out, sizeof out[0], &o, NULL), 0);
	/* Who ran what: no process ran more than 2 tasks. */
	pid_t pids[N];
	int count[N], npids = 0;
	for (int i = 0; i < N; i++) {
		int k = 0;
		while (k < npids && pids[k] != out[i])
			k++;
		if (k == npids) {
			pids[npids] = out[i];
			count[npids++] = 0;
		}
		count[k]++;
	}
	for (int k = 0; k < npids; k++) {
		say("process %d ran %d task%s", (int)pids[k], count[k], count[k] == 1 ? "" : "s");
		CHECK(count[k] <= MAXT && pids[k] > 0 && pids[k] != getpid());
	}
	CHECK(npids >= N / MAXT);
	struct shmp_pool_stats st;
	CHECK_EQ(shmp_pool_stats(p, &st), 0);
	/* The first two, and a fresh one for each that retired (the last
	 * replacements may still be on their way). */
	say("worker processes started so far: %llu (2 at first, then one per retirement)",
	    (unsigned long long)st.workers_started);
	CHECK(st.workers_started >= (uint64_t)(N / MAXT));
	CHECK_EQ(st.worker_deaths, 0); /* retiring is not dying */
	tour_pool_close_join(p);
	return 0;
}

/* Item x of a chunk: the item's index and the process that ran it. */
static int foo_chunk(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	const struct foo_arg *a = arg;
	if (!a->quiet) {
		say("[%d] item %ld", (int)getpid(), a->x);
		nap(0.2);
	}
	long r[2] = { (long)c->index * 3 + 1, getpid() };
	memcpy(res, r, sizeof r);
	return 0;
}

/* map(foo, range(n), chunksize): the tasks it made, checked results. */
static uint64_t map_chunks(shmp_pool_t *p, size_t n, size_t chunksize, int quiet, double *secs)
{
	struct foo_arg *a = calloc(n, sizeof *a);
	long(*r)[2] = calloc(n, sizeof *r);
	if (!CHECK(a && r)) {
		free(a);
		free(r);
		return 0;
	}
	for (size_t i = 0; i < n; i++)
		a[i] = (struct foo_arg){ .x = (long)i, .quiet = quiet };
	struct shmp_pool_stats st;
	shmp_pool_stats(p, &st);
	uint64_t before = st.submitted;
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = chunksize);
	double t = tour_now();
	shmp_async_t *h = shmp_pool_map_async(p, foo_chunk, a, sizeof a[0], n, r, sizeof r[0], &o);
	if (CHECK(h != NULL)) {
		char label[64];
		snprintf(label, sizeof label, "chunksize=%zu", chunksize);
		size_t cs = chunksize ? chunksize : (n + 7) / 8;
		/* Progress over the silent runs only: the items' own lines
		 * would land inside a terminal's progress line. */
		if (quiet)
			CHECK_EQ(tour_wait_progress(p, h, label, (n + cs - 1) / cs), 0);
		CHECK_EQ(shmp_async_get(h, TOUR_WAIT, NULL), 0);
		shmp_async_destroy(h);
	}
	*secs = tour_now() - t;
	shmp_pool_stats(p, &st);
	/* The results are right, and the items of one chunk ran in one
	 * process, one after the other. */
	int ok = 1, together = 1;
	size_t cs = chunksize ? chunksize : (n + 7) / 8;
	for (size_t i = 0; i < n; i++) {
		ok &= r[i][0] == (long)i * 3 + 1;
		together &= r[i][1] == r[i - i % cs][1];
	}
	CHECK(ok);
	CHECK(together);
	free(a);
	free(r);
	return st.submitted - before;
}

int sec_chunksize(void)
{
	shmp_pool_t *p = tour_pool(2, NULL);
	if (!p)
		return -1;
	double t;
	/* pool.map(foo, range(12), chunksize=4): three tasks of four items */
	uint64_t tasks = map_chunks(p, 12, 4, 0, &t);
	say("12 items, chunksize=4: %llu tasks", (unsigned long long)tasks);
	CHECK_EQ(tasks, 3);
	/*
	 * "當iterables很大時，將chunksize設定的越大，總執行效率越好": with many
	 * small items, chunksize=1 pays the task overhead per item. Python's
	 * default is n / (4 * workers), rounded up: here 20000 / 8 = 2500.
	 */
	enum { BIG = 20000 };
	double t1, tdef;
	uint64_t k1 = map_chunks(p, BIG, 1, 1, &t1);
	uint64_t kdef = map_chunks(p, BIG, 0, 1, &tdef);
	say("%d items, chunksize=1:       %6llu tasks, %.3f s", BIG, (unsigned long long)k1, t1);
	say("%d items, default chunksize: %6llu tasks, %.3f s", BIG, (unsigned long long)kdef, tdef);
	CHECK_EQ(k1, BIG);
	CHECK_EQ(kdef, 8);
	tour_pool_close_join(p);
	return 0;
}
