/* Pool and ThreadPool, life cycle:
 *  - 0 or negative workers, negative max_tasks_per_child: NULL, errno EINVAL;
 *    SHMP_CPUS makes one worker per online CPU; 200 workers start, share a
 *    map between many of them, and close/join;
 *  - the initializer runs once in each worker (replacements included) before
 *    any task, with initarg, and its *user reaches the worker's tasks;
 *  - a failing initializer: calls queued before and made after fail with
 *    -SHMP_EINIT, the state is SHMP_POOL_BROKEN, workers are not respawned,
 *    close and join return;
 *  - max_tasks_per_child = N: no worker runs more than N tasks (a chunk is
 *    one task), workers are replaced (pids/tids change), results are right;
 *    close early with N = 1 and many queued tasks: join returns and every
 *    result arrives;
 *  - close: new calls fail with -SHMP_ECLOSED (NULL + errno for handles),
 *    queued ones finish; join before close/terminate is -SHMP_ENOTCLOSED, join(0.2)
 *    with a task still running is -ETIMEDOUT after about 0.2 s;
 *  - terminate with 10,000 tasks of 100 ms queued returns in under 2 s, join
 *    returns, pending gets return -SHMP_ECLOSED;
 *  - destroy without close is terminate (no wait for queued tasks); an async
 *    handle destroyed after its pool still reports its result (-SHMP_ECLOSED
 *    for a terminated map);
 *  - after a failed map, close and join return;
 *  - shmp_pool_stats adds up (submitted == completed, failed, queued,
 *    running, workers_started, alive, state, supervision) and
 *    shmp_pool_worker_info lists the workers and their tasks;
 *  - after destroy every child process (workers, zygote) is reaped.
 * Every body runs against shmp_pool_create and shmp_threadpool_create. */
#include "t.h"

#include <limits.h>
#include <stdatomic.h>
#include <sys/syscall.h>

static pid_t t_gettid(void)
{
	return (pid_t)syscall(SYS_gettid);
}

/* Made before any pool, so a process Pool's workers share them. */
static shmp_event_t *g_go;
static shmp_array_t *g_cnt;
enum { CNT_INITS, CNT_BAD_INITARG, CNT_N };

struct kind {
	const char *name;
	shmp_pool_t *(*create)(int, const struct shmp_pool_opts *);
	int threads;
};

struct res {
	int64_t v, pid, tid;
};

/* v = 2x; with the running process and thread. */
static int twice(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	(void)c;
	int64_t x;
	memcpy(&x, arg, sizeof x);
	if (x < 0)
		return (int)-x;
	struct res r = { 2 * x, getpid(), t_gettid() };
	memcpy(res, &r, sizeof r);
	return 0;
}

/* twice, after 100 ms. */
static int slow(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	t_sleep_ms(100);
	return twice(arg, res, c);
}

/* twice, after 5 ms. */
static int slowish(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	t_sleep_ms(5);
	return twice(arg, res, c);
}

/* twice, once g_go is set (10 s at most). */
static int blocked(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	if (shmp_event_wait(g_go, 10) != 0)
		return 99;
	return twice(arg, res, c);
}

/* ---- initializer --------------------------------------------------------- */
#define MAGIC 0x5eed1234
static int g_initarg; /* its address is the initarg */
struct slot {
	int magic;
	pid_t pid, tid;
};
static struct slot g_slots[512];
static atomic_int g_nslots;

static int init_ok(void *initarg, void **user)
{
	if (initarg != &g_initarg)
		shmp_array_add(g_cnt, CNT_BAD_INITARG, 1, NULL);
	int i = atomic_fetch_add(&g_nslots, 1);
	if (i >= 512)
		return 1;
	g_slots[i] = (struct slot){ MAGIC, getpid(), t_gettid() };
	*user = &g_slots[i];
	shmp_array_add(g_cnt, CNT_INITS, 1, NULL);
	return 0;
}

static int init_fail(void *initarg, void **user)
{
	(void)initarg;
	(void)user;
	shmp_array_add(g_cnt, CNT_INITS, 1, NULL);
	return -1;
}

/* twice, if this worker's initializer ran (in this process, on this
 * thread) before; else fail with 55. */
static int check_init(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	const struct slot *s = c->user;
	if (!s || s->magic != MAGIC || s->pid != getpid() || s->tid != t_gettid())
		return 55;
	return twice(arg, res, c);
}

/* ---- helpers --------------------------------------------------------------- */
static int64_t *iota(size_t n)
{
	int64_t *in = malloc(n * sizeof *in);
	T_CHECK(in);
	for (size_t i = 0; i < n; i++)
		in[i] = (int64_t)i;
	return in;
}

static void check_twice(const int64_t *in, const struct res *r, size_t n)
{
	for (size_t i = 0; i < n; i++)
		T_EQ(r[i].v, 2 * in[i]);
}

/* The number of distinct values among n pids. */
static size_t distinct(const struct res *r, size_t n, int tid)
{
	size_t d = 0;
	for (size_t i = 0; i < n; i++) {
		int64_t x = tid ? r[i].tid : r[i].pid;
		size_t j;
		for (j = 0; j < i; j++)
			if ((tid ? r[j].tid : r[j].pid) == x)
				break;
		d += j == i;
	}
	return d;
}

/* The largest number of items one thread ran. */
static size_t max_per_tid(const struct res *r, size_t n)
{
	size_t best = 0;
	for (size_t i = 0; i < n; i++) {
		size_t c = 0;
		for (size_t j = 0; j < n; j++)
			c += r[j].tid == r[i].tid;
		if (c > best)
			best = c;
	}
	return best;
}

/* Wait (20 s at most) until all n workers are up: out of STARTING, with
 * their pid; wi (n + 1 entries) gets their info. Workers start in the
 * background, so counts of started/alive workers settle only then. */
static void wait_up(shmp_pool_t *p, struct shmp_worker_info *wi, int n)
{
	double until = t_now() + 20;
	for (;;) {
		T_EQ(shmp_pool_worker_info(p, wi, (unsigned)n + 1), n);
		int up = 0;
		for (int i = 0; i < n; i++)
			up += wi[i].pid > 0 && (wi[i].state == SHMP_WORKER_IDLE ||
						wi[i].state == SHMP_WORKER_BUSY);
		if (up == n)
			return;
		T_CHECK(t_now() < until);
		t_sleep_ms(5);
	}
}

static void close_join(shmp_pool_t *p)
{
	T_EQ(shmp_pool_close(p), 0);
	double t0 = t_now();
	T_EQ(shmp_pool_join(p, 20), 0);
	T_CHECK(t_now() - t0 < 20);
}

/* ---- tests ----------------------------------------------------------------- */
static void test_create(const struct kind *k)
{
	static const int bad[] = { 0, -1, -200, INT_MIN };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		errno = 0;
		T_CHECK(!k->create(bad[i], NULL));
		T_EQ(errno, EINVAL);
	}
	struct shmp_pool_opts o = SHMP_OPTS(shmp_pool_opts, .max_tasks_per_child = -1);
	errno = 0;
	T_CHECK(!k->create(2, &o));
	T_EQ(errno, EINVAL);

	/* One worker per online CPU. */
	shmp_pool_t *p = k->create(SHMP_CPUS, NULL);
	T_CHECK(p);
	T_EQ(shmp_pool_workers(p), sysconf(_SC_NPROCESSORS_ONLN));
	T_EQ(t_pool_stats(p).workers, sysconf(_SC_NPROCESSORS_ONLN));
	int64_t x = 21;
	struct res r;
	T_EQ(shmp_pool_apply(p, twice, &x, sizeof x, &r, sizeof r, NULL), 0);
	T_EQ(r.v, 42);
	close_join(p);
	shmp_pool_destroy(p);

	/* NULL handles. */
	struct shmp_pool_stats st;
	T_EQ(shmp_pool_stats(NULL, &st), -EINVAL);
	T_EQ(shmp_pool_close(NULL), -EINVAL);
	T_EQ(shmp_pool_terminate(NULL), -EINVAL);
	T_EQ(shmp_pool_join(NULL, 0), -EINVAL);
	T_EQ(shmp_pool_workers(NULL), -EINVAL);
	shmp_pool_destroy(NULL);
}

static void test_200(const struct kind *k)
{
	enum { W = 200, N = 400 };
	shmp_pool_t *p = k->create(W, NULL);
	T_CHECK(p);
	T_EQ(shmp_pool_workers(p), W);
	/* Let every worker come up (out of STARTING, with its pid) before the
	 * map, so that the map can spread. */
	static struct shmp_worker_info wi[W + 1];
	wait_up(p, wi, W);
	T_EQ(t_pool_stats(p).alive, W);
	T_EQ(t_pool_stats(p).workers_started, W);
	for (int i = 0; i < W; i++) {
		T_CHECK(wi[i].pid > 0);
		if (!k->threads)
			T_CHECK(wi[i].pid != getpid());
		for (int j = 0; j < i; j++)
			T_CHECK(wi[j].pid != wi[i].pid);
	}

	/* 400 tasks of 5 ms over 200 workers: many workers take part. */
	int64_t *in = iota(N);
	struct res *out = calloc(N, sizeof *out);
	T_CHECK(out);
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = 1);
	T_EQ(shmp_pool_map(p, slowish, in, sizeof *in, N, out, sizeof *out, &o, NULL), 0);
	check_twice(in, out, N);
	size_t d = distinct(out, N, 1);
	printf("%s: 200 workers: %zu distinct workers ran 400 tasks\n", k->name, d);
	T_CHECK(d >= 20);
	for (size_t i = 0; i < N; i++)
		if (k->threads)
			T_EQ(out[i].pid, getpid());
		else
			T_CHECK(out[i].pid != getpid());
	close_join(p);
	T_EQ(t_pool_stats(p).workers_started, W);
	shmp_pool_destroy(p);
	free(in);
	free(out);
}

static void test_initializer(const struct kind *k)
{
	enum { N = 200 };
	int64_t *in = iota(N);
	struct res *out = calloc(N, sizeof *out);
	T_CHECK(out);
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = 1);

	/* Without replacements: one run per worker. */
	T_EQ(shmp_array_store(g_cnt, CNT_INITS, 0), 0);
	atomic_store(&g_nslots, 0);
	struct shmp_pool_opts po = SHMP_OPTS(shmp_pool_opts, .initializer = init_ok,
					     .initarg = &g_initarg);
	shmp_pool_t *p = k->create(3, &po);
	T_CHECK(p);
	struct shmp_worker_info wi[4];
	wait_up(p, wi, 3); /* so all 3 run their initializer before close */
	struct shmp_task_error err;
	T_EQ(shmp_pool_map(p, check_init, in, sizeof *in, N, out, sizeof *out, &o, &err), 0);
	check_twice(in, out, N);
	close_join(p);
	struct shmp_pool_stats st = t_pool_stats(p);
	T_EQ(st.workers_started, 3);
	T_EQ(t_load(g_cnt, CNT_INITS), 3);
	shmp_pool_destroy(p);

	/* With replacements (max_tasks_per_child 3): once in each worker. */
	T_EQ(shmp_array_store(g_cnt, CNT_INITS, 0), 0);
	atomic_store(&g_nslots, 0);
	po.max_tasks_per_child = 3;
	p = k->create(2, &po);
	T_CHECK(p);
	memset(out, 0, N * sizeof *out);
	T_EQ(shmp_pool_map(p, check_init, in, sizeof *in, 60, out, sizeof *out, &o, &err), 0);
	check_twice(in, out, 60);
	close_join(p);
	st = t_pool_stats(p);
	T_CHECK(st.workers_started >= 20);
	T_EQ(t_load(g_cnt, CNT_INITS), (int64_t)st.workers_started);
	shmp_pool_destroy(p);
	T_EQ(t_load(g_cnt, CNT_BAD_INITARG), 0);
	free(in);
	free(out);
}

static void test_init_failure(const struct kind *k)
{
	T_EQ(shmp_array_store(g_cnt, CNT_INITS, 0), 0);
	struct shmp_pool_opts po = SHMP_OPTS(shmp_pool_opts, .initializer = init_fail);
	double t0 = t_now();
	shmp_pool_t *p = k->create(2, &po);
	T_CHECK(p);
	int64_t x = 1;
	struct res r;
	/* Queued right away (maybe before any initializer ran). */
	shmp_async_t *h = shmp_pool_apply_async(p, twice, &x, sizeof x, &r, sizeof r, NULL);
	struct shmp_task_error err;
	if (h) {
		memset(&err, 0, sizeof err);
		T_EQ(shmp_async_get(h, 5, &err), -SHMP_EINIT);
		T_EQ(err.error, -SHMP_EINIT);
		T_EQ(shmp_async_is_successful(h), 0);
		shmp_async_destroy(h);
	} else {
		T_EQ(errno, SHMP_EINIT);
	}
	memset(&err, 0, sizeof err);
	T_EQ(shmp_pool_apply(p, twice, &x, sizeof x, &r, sizeof r, &err), -SHMP_EINIT);
	T_EQ(err.error, -SHMP_EINIT);
	int64_t in[10] = { 0 };
	struct res out[10];
	T_EQ(shmp_pool_map(p, twice, in, sizeof in[0], 10, out, sizeof out[0], NULL, NULL),
	     -SHMP_EINIT);
	h = shmp_pool_map_async(p, twice, in, sizeof in[0], 10, out, sizeof out[0], NULL);
	if (h) {
		T_EQ(shmp_async_get(h, 5, NULL), -SHMP_EINIT);
		shmp_async_destroy(h);
	} else {
		T_EQ(errno, SHMP_EINIT);
	}
	shmp_imap_t *it = shmp_pool_imap(p, twice, in, sizeof in[0], 10, sizeof out[0], NULL,
					 NULL, NULL);
	if (it) {
		T_EQ(shmp_imap_next(it, out, NULL, 5, NULL), -SHMP_EINIT);
		shmp_imap_destroy(it);
	} else {
		T_EQ(errno, SHMP_EINIT);
	}
	T_CHECK(t_now() - t0 < 10);

	T_EQ(t_pool_stats(p).state, SHMP_POOL_BROKEN);
	/* No respawn loop: at most one start and one initializer run per
	 * worker, and nothing more later (300 ms: time for a loop to show). */
	t_sleep_ms(300);
	struct shmp_pool_stats st = t_pool_stats(p);
	T_EQ(st.state, SHMP_POOL_BROKEN);
	T_CHECK(st.workers_started >= 1 && st.workers_started <= 2);
	int64_t inits = t_load(g_cnt, CNT_INITS);
	T_CHECK(inits >= 1 && inits <= 2);
	t_sleep_ms(300);
	T_EQ(t_pool_stats(p).workers_started, st.workers_started);
	T_EQ(t_load(g_cnt, CNT_INITS), inits);
	close_join(p);
	shmp_pool_destroy(p);
}

static void test_maxtasks(const struct kind *k)
{
	enum { N = 40 };
	int64_t *in = iota(N);
	struct res *out = calloc(N, sizeof *out);
	T_CHECK(out);

	/* N = 2, chunks of 1: no thread runs more than 2 items. */
	struct shmp_pool_opts po = SHMP_OPTS(shmp_pool_opts, .max_tasks_per_child = 2);
	shmp_pool_t *p = k->create(2, &po);
	T_CHECK(p);
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = 1);
	T_EQ(shmp_pool_map(p, twice, in, sizeof *in, N, out, sizeof *out, &o, NULL), 0);
	check_twice(in, out, N);
	T_CHECK(max_per_tid(out, N) <= 2);
	T_CHECK(distinct(out, N, 1) >= N / 2);
	if (!k->threads) {
		T_CHECK(distinct(out, N, 0) >= N / 2);
		for (size_t i = 0; i < N; i++)
			T_CHECK(out[i].pid != getpid());
	}

	/* Chunks of 5 count as one task each: a worker runs at most 2 chunks
	 * (10 items), and a chunk's items run in one worker. */
	o.chunksize = 5;
	memset(out, 0, N * sizeof *out);
	T_EQ(shmp_pool_map(p, twice, in, sizeof *in, N, out, sizeof *out, &o, NULL), 0);
	check_twice(in, out, N);
	T_CHECK(max_per_tid(out, N) <= 10);
	for (size_t i = 0; i < N; i++)
		T_EQ(out[i].tid, out[i - i % 5].tid);
	T_CHECK(distinct(out, N, 1) >= 4);
	close_join(p);
	struct shmp_pool_stats st = t_pool_stats(p);
	/* 40 + 8 tasks, 2 per worker. */
	T_CHECK(st.workers_started >= 24);
	T_EQ(st.worker_deaths, 0);
	T_EQ(st.completed, N + N / 5);
	shmp_pool_destroy(p);

	/* close early with max_tasks_per_child = 1 and 100 tasks queued. */
	po.max_tasks_per_child = 1;
	p = k->create(2, &po);
	T_CHECK(p);
	enum { M = 100 };
	int64_t *in2 = iota(M);
	struct res *out2 = calloc(M, sizeof *out2);
	T_CHECK(out2);
	o.chunksize = 1;
	shmp_async_t *h = shmp_pool_map_async(p, twice, in2, sizeof *in2, M, out2, sizeof *out2, &o);
	T_CHECK(h);
	close_join(p);
	T_FAST(shmp_async_get(h, 0, NULL), 0);
	check_twice(in2, out2, M);
	T_EQ(distinct(out2, M, 1), M);
	shmp_async_destroy(h);
	T_CHECK(t_pool_stats(p).workers_started >= M);
	shmp_pool_destroy(p);
	free(in);
	free(out);
	free(in2);
	free(out2);
}

static void test_close(const struct kind *k)
{
	enum { N = 50 };
	shmp_pool_t *p = k->create(2, NULL);
	T_CHECK(p);
	/* join needs close or terminate first. */
	T_FAST(shmp_pool_join(p, 1), -SHMP_ENOTCLOSED);

	int64_t *in = iota(N);
	struct res *out = calloc(N, sizeof *out);
	T_CHECK(out);
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = 1);
	shmp_async_t *h = shmp_pool_map_async(p, slowish, in, sizeof *in, N, out, sizeof *out, &o);
	T_CHECK(h);
	T_EQ(shmp_pool_close(p), 0);
	T_EQ(t_pool_stats(p).state, SHMP_POOL_CLOSED);

	/* No new calls. */
	int64_t x = 1;
	struct res r;
	T_FAST(shmp_pool_apply(p, twice, &x, sizeof x, &r, sizeof r, NULL), -SHMP_ECLOSED);
	errno = 0;
	T_CHECK(!shmp_pool_apply_async(p, twice, &x, sizeof x, &r, sizeof r, NULL));
	T_EQ(errno, SHMP_ECLOSED);
	T_FAST(shmp_pool_map(p, twice, in, sizeof *in, 4, &r, sizeof r, NULL, NULL), -SHMP_ECLOSED);
	errno = 0;
	T_CHECK(!shmp_pool_map_async(p, twice, in, sizeof *in, 1, &r, sizeof r, NULL));
	T_EQ(errno, SHMP_ECLOSED);
	errno = 0;
	T_CHECK(!shmp_pool_imap(p, twice, in, sizeof *in, 4, sizeof r, NULL, NULL, NULL));
	T_EQ(errno, SHMP_ECLOSED);
	errno = 0;
	T_CHECK(!shmp_pool_imap_unordered(p, twice, in, sizeof *in, 4, sizeof r, NULL, NULL, NULL));
	T_EQ(errno, SHMP_ECLOSED);

	/* What was queued finishes. */
	T_EQ(shmp_async_get(h, 10, NULL), 0);
	check_twice(in, out, N);
	shmp_async_destroy(h);
	T_EQ(shmp_pool_join(p, 10), 0);
	T_EQ(shmp_pool_join(p, 0), 0);
	shmp_pool_destroy(p);

	/* join(0.2) while a task still runs: -ETIMEDOUT; then it returns. */
	T_EQ(shmp_event_clear(g_go), 0);
	p = k->create(2, NULL);
	T_CHECK(p);
	h = shmp_pool_apply_async(p, blocked, &x, sizeof x, &r, sizeof r, NULL);
	T_CHECK(h);
	T_EQ(shmp_pool_close(p), 0);
	T_ABOUT(shmp_pool_join(p, 0.2), -ETIMEDOUT);
	T_EQ(shmp_event_set(g_go), 0);
	T_EQ(shmp_pool_join(p, 10), 0);
	T_FAST(shmp_async_get(h, 0, NULL), 0);
	T_EQ(r.v, 2);
	shmp_async_destroy(h);
	shmp_pool_destroy(p);
	free(in);
	free(out);
}

static void test_terminate(const struct kind *k)
{
	enum { N = 10000 };
	struct shmp_pool_opts po = SHMP_OPTS(shmp_pool_opts, .queue_capacity = 16384);
	shmp_pool_t *p = k->create(2, &po);
	T_CHECK(p);
	int64_t *in = iota(N);
	struct res *out = calloc(N, sizeof *out);
	T_CHECK(out);
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = 1);
	int64_t x = 3;
	struct res r;
	shmp_async_t *h1 = shmp_pool_apply_async(p, slow, &x, sizeof x, &r, sizeof r, NULL);
	T_CHECK(h1);
	shmp_async_t *h = shmp_pool_map_async(p, slow, in, sizeof *in, N, out, sizeof *out, &o);
	T_CHECK(h);
	/* Some are running. */
	double until = t_now() + 5;
	while (t_pool_stats(p).running == 0) {
		T_CHECK(t_now() < until);
		t_sleep_ms(1);
	}
	double t0 = t_now();
	T_EQ(shmp_pool_terminate(p), 0);
	T_CHECK(t_now() - t0 < 2);
	T_EQ(shmp_pool_join(p, 5), 0);
	T_CHECK(t_now() - t0 < 2);
	T_EQ(t_pool_stats(p).state, SHMP_POOL_TERMINATED);
	/* Pending calls fail with -SHMP_ECLOSED (the first may have finished
	 * before terminate). */
	struct shmp_task_error err;
	memset(&err, 0, sizeof err);
	T_FAST(shmp_async_get(h, 1, &err), -SHMP_ECLOSED);
	T_EQ(err.error, -SHMP_ECLOSED);
	T_EQ(shmp_async_is_successful(h), 0);
	int rc = shmp_async_get(h1, 1, NULL);
	T_CHECK(rc == -SHMP_ECLOSED || (rc == 0 && r.v == 6));
	shmp_async_destroy(h);
	shmp_async_destroy(h1);
	T_FAST(shmp_pool_apply(p, twice, &x, sizeof x, &r, sizeof r, NULL), -SHMP_ECLOSED);
	shmp_pool_destroy(p);
	free(in);
	free(out);
}

static void test_destroy(const struct kind *k)
{
	enum { N = 1000 };
	shmp_pool_t *p = k->create(2, NULL);
	T_CHECK(p);
	int64_t *in = iota(N);
	struct res *out = calloc(N, sizeof *out);
	T_CHECK(out);
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = 1);
	int64_t x = 1;
	struct res r;
	shmp_async_t *h2 = shmp_pool_apply_async(p, twice, &x, sizeof x, NULL, sizeof r, NULL);
	T_CHECK(h2);
	T_EQ(shmp_async_get(h2, 5, NULL), 0);
	shmp_async_t *h = shmp_pool_map_async(p, slow, in, sizeof *in, N, out, sizeof *out, &o);
	T_CHECK(h);
	/* Without close: terminate, not 50 s of queued tasks. */
	double t0 = t_now();
	shmp_pool_destroy(p);
	T_CHECK(t_now() - t0 < 2);
	/* The async handles outlive their pool: they say how their calls
	 * ended, then go with their own destroy. */
	T_FAST(shmp_async_get(h, 0, NULL), -SHMP_ECLOSED);
	T_EQ(shmp_async_is_successful(h), 0);
	T_FAST(shmp_async_get(h2, 0, NULL), 0);
	T_EQ(((struct res *)shmp_async_results(h2))->v, 2);
	shmp_async_destroy(h);
	shmp_async_destroy(h2);

	/* After a failed map, close and join still return. */
	p = k->create(2, NULL);
	T_CHECK(p);
	in[77] = -4;
	struct shmp_task_error err;
	T_EQ(shmp_pool_map(p, twice, in, sizeof *in, N, out, sizeof *out, NULL, &err), -SHMP_ETASK);
	T_EQ(err.index, 77);
	T_EQ(err.code, 4);
	close_join(p);
	shmp_pool_destroy(p);
	free(in);
	free(out);
}

static void test_stats(const struct kind *k)
{
	shmp_pool_t *p = k->create(2, NULL);
	T_CHECK(p);
	struct shmp_pool_stats st = t_pool_stats(p);
	T_EQ(st.submitted, 0);
	T_EQ(st.completed, 0);
	T_EQ(st.failed, 0);
	T_EQ(st.workers, 2);
	T_EQ(st.state, SHMP_POOL_RUNNING);
	T_EQ(st.supervision, shmp_io_uring_available());
	T_EQ(st.callback_errors, 0);
	struct shmp_worker_info wi[4];
	wait_up(p, wi, 2);

	int64_t *in = iota(100);
	struct res out[100];
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = 10);
	T_EQ(shmp_pool_map(p, twice, in, sizeof *in, 100, out, sizeof out[0], &o, NULL), 0); /* 10 */
	for (int64_t i = 0; i < 5; i++) /* 5 */
		T_EQ(shmp_pool_apply(p, twice, &i, sizeof i, out, sizeof out[0], NULL), 0);
	for (int64_t i = -2; i < 0; i++) /* 2, failed */
		T_EQ(shmp_pool_apply(p, twice, &i, sizeof i, out, sizeof out[0], NULL), -SHMP_ETASK);
	in[15] = -1;
	in[87] = -1;
	T_EQ(shmp_pool_map(p, twice, in, sizeof *in, 100, out, sizeof out[0], &o, NULL),
	     -SHMP_ETASK); /* 10, 2 failed */
	shmp_async_t *h[3];
	for (int64_t i = 0; i < 3; i++) /* 3 */
		T_CHECK(h[i] = shmp_pool_apply_async(p, twice, &i, sizeof i, NULL, sizeof out[0], NULL));
	for (int i = 0; i < 3; i++) {
		T_EQ(shmp_async_get(h[i], 5, NULL), 0);
		shmp_async_destroy(h[i]);
	}

	/* Everything is done: the failed map's other chunks too. (A worker
	 * marks itself idle just after handing its last result over.) */
	double until = t_now() + 5;
	while (st = t_pool_stats(p), st.completed != 30 || st.running != 0 || st.queued != 0) {
		T_CHECK(t_now() < until);
		t_sleep_ms(1);
	}
	T_EQ(st.submitted, 30);
	T_EQ(st.failed, 4);
	T_EQ(st.queued, 0);
	T_EQ(st.running, 0);
	T_EQ(st.alive, 2);
	T_EQ(st.workers_started, 2);
	T_EQ(st.worker_deaths, 0);

	/* The workers, idle, did the 30 tasks between them. */
	uint64_t done = 0;
	until = t_now() + 5;
	for (;;) {
		memset(wi, 0, sizeof wi);
		T_EQ(shmp_pool_worker_info(p, wi, 4), 2);
		done = wi[0].tasks_done + wi[1].tasks_done;
		if ((done == 30 && wi[0].state == SHMP_WORKER_IDLE &&
		     wi[1].state == SHMP_WORKER_IDLE) || t_now() > until)
			break;
		t_sleep_ms(1);
	}
	T_EQ(done, 30);
	for (int i = 0; i < 2; i++) {
		T_EQ(wi[i].state, SHMP_WORKER_IDLE);
		T_CHECK(wi[i].pid > 0);
		if (!k->threads)
			T_CHECK(wi[i].pid != getpid());
	}
	T_CHECK(wi[0].pid != wi[1].pid);
	/* Fewer entries than workers: fills those, still says 2. */
	T_EQ(shmp_pool_worker_info(p, wi, 1), 2);

	close_join(p);
	st = t_pool_stats(p);
	T_EQ(st.submitted, 30);
	T_EQ(st.completed, 30);
	T_EQ(st.failed, 4);
	T_EQ(st.alive, 0);
	T_EQ(st.state, SHMP_POOL_CLOSED);
	T_EQ(shmp_pool_worker_info(p, wi, 4), 2);
	T_EQ(wi[0].state, SHMP_WORKER_EXITED);
	T_EQ(wi[1].state, SHMP_WORKER_EXITED);
	shmp_pool_destroy(p);
	free(in);
}

/* Run one test body, saying how long it took. */
#define TIMED(call)                                                                \
	do {                                                                       \
		double t_t0_ = t_now();                                            \
		call;                                                              \
		printf("  %s: %.2f s\n", #call, t_now() - t_t0_);                  \
	} while (0)

int main(void)
{
	t_watchdog(90);
	setvbuf(stdout, NULL, _IONBF, 0);
	g_go = shmp_event_create(NULL);
	T_CHECK(g_go);
	g_cnt = t_counters(CNT_N);

	static const struct kind kinds[] = {
		{ "Pool", shmp_pool_create, 0 },
		{ "ThreadPool", shmp_threadpool_create, 1 },
	};
	for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
		const struct kind *k = &kinds[i];
		double t0 = t_now();
		TIMED(test_create(k));
		TIMED(test_stats(k));
		TIMED(test_close(k));
		TIMED(test_destroy(k));
		TIMED(test_terminate(k));
		TIMED(test_maxtasks(k));
		TIMED(test_initializer(k));
		TIMED(test_init_failure(k));
		TIMED(test_200(k));
		/* Every worker and zygote has been reaped. */
		T_NO_CHILDREN();
		printf("%s: %.2f s\n", k->name, t_now() - t0);
	}
	shmp_array_destroy(g_cnt);
	shmp_event_destroy(g_go);
	return 0;
}
