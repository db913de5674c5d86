/* Pools inside other processes (conformance.md, Pool: "A pool can be
 * created inside a worker or a Process child"). For both kinds of pool:
 * - a shmp_process child, started while the parent has a pool of its own
 *   (either kind; under ASan, no pool: see main()), creates a pool, maps
 *   1,000 items, destroys it and reports the sum: the sum is right, the
 *   child exits 0 with no child of its own left, and the parent's pool
 *   still works afterwards (and its counters did not move);
 * - a task of an outer pool creates an inner pool (every pairing of the two
 *   kinds), maps 100 items, destroys it and returns the sum: each outer
 *   result is right; a worker process has no child left after its inner
 *   pool is destroyed;
 * and nothing is left behind: the test is a child subreaper, so any process
 *   a pool let escape would be ours to see; after each pool's destroy this
 *   process has no child; no new /dev/shm entry appears. */
#include "t.h"

#include <dirent.h>
#include <sys/prctl.h>

#if defined(__SANITIZE_ADDRESS__)
#define ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASAN 1
#endif
#endif
#ifndef ASAN
#define ASAN 0
#endif

static shmp_pool_t *(*const create[2])(int, const struct shmp_pool_opts *) = {
	shmp_pool_create, shmp_threadpool_create
};
static const char *const kind_name[2] = { "Pool", "ThreadPool" };

static int square(const void *arg, void *res, const struct shmp_task_ctx *ctx)
{
	(void)ctx;
	long x = *(const long *)arg;
	*(long *)res = x * x;
	return 0;
}

/* sum of i*i for i < n */
static long sumsq(long n)
{
	return (n - 1) * n * (2 * n - 1) / 6;
}

/* 0 if this process has no child (running or zombie). */
static int no_children(void)
{
	errno = 0;
	return waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD ? 0 : -1;
}

/* Map n squares on a new pool of `kind`, destroy it; the sum or a negative
 * error. */
static long pool_sum(int kind, int workers, long n)
{
	shmp_pool_t *p = create[kind](workers, NULL);
	if (!p)
		return -1000 - errno;
	long *in = malloc(sizeof(long) * (size_t)n), *out = malloc(sizeof(long) * (size_t)n);
	if (!in || !out)
		return -2;
	for (long i = 0; i < n; i++) {
		in[i] = i;
		out[i] = -1;
	}
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = 7);
	int r = shmp_pool_map(p, square, in, sizeof(long), (size_t)n, out, sizeof(long), &o, NULL);
	long sum = 0;
	for (long i = 0; i < n; i++) {
		if (out[i] != i * i)
			r = r ? r : -3;
		sum += out[i];
	}
	free(in);
	free(out);
	if (shmp_pool_is_threads(p) != kind)
		r = -4;
	shmp_pool_destroy(p);
	return r ? r : sum;
}

/* Every worker of p up and idle (5 s at most). */
static void wait_idle(shmp_pool_t *p, int n)
{
	double until = t_now() + 5;
	for (;;) {
		struct shmp_worker_info w[8];
		T_EQ(shmp_pool_worker_info(p, w, 8), n);
		int idle = 0;
		for (int i = 0; i < n; i++)
			idle += w[i].state == SHMP_WORKER_IDLE;
		if (idle == n)
			return;
		T_CHECK(t_now() < until);
		t_sleep_ms(1);
	}
}

/* ---- a pool in a shmp_process child --------------------------------------- */

struct child_arg {
	int kind;
	shmp_value_t *sum;
};

static int child_main(void *arg)
{
	struct child_arg *c = arg;
	long s = pool_sum(c->kind, 3, 1000);
	if (shmp_value_store(c->sum, s) != 0)
		return 2;
	/* The pool's processes are gone with it. */
	return no_children() ? 3 : 0;
}

static void in_process_child(int kind, int parent_kind)
{
	/* The parent has a pool of its own (parent_kind >= 0), which the child
	 * inherits (memory, not threads) and must not disturb. */
	shmp_pool_t *pp = NULL;
	struct shmp_pool_stats st0;
	long x = 9, y = 0;
	if (parent_kind >= 0) {
		pp = create[parent_kind](2, NULL);
		T_CHECK(pp);
		T_EQ(shmp_pool_apply(pp, square, &x, sizeof(x), &y, sizeof(y), NULL), 0);
		T_EQ(y, 81);
		/* Fork once no thread of the parent's pool is starting up (it
		 * may hold a lock the child would get a copy of). */
		wait_idle(pp, 2);
		T_EQ(shmp_pool_stats(pp, &st0), 0);
	}

	struct child_arg c = { .kind = kind, .sum = t_raw_value('q') };
	T_EQ(shmp_value_store(c.sum, -1), 0);
	struct shmp_process_opts po = SHMP_OPTS(shmp_process_opts, .die_with_parent = 1);
	shmp_process_t *pr = shmp_process_create(child_main, &c, &po);
	T_CHECK(pr);
	T_EQ(shmp_process_start(pr), 0);
	int jr = shmp_process_join(pr, 20);
	if (jr) {
		fprintf(stderr, "%s in a Process child (parent has %s): child %d hung\n",
			kind_name[kind], parent_kind >= 0 ? kind_name[parent_kind] : "no pool",
			(int)shmp_process_pid(pr));
		if (getenv("T_HANG_PAUSE")) /* leave it for a debugger */
			t_sleep_ms(600000);
		shmp_process_kill(pr);
	}
	T_EQ(jr, 0);
	int code = -1;
	T_EQ(shmp_process_exitcode(pr, &code), 1);
	int64_t s = 0;
	T_EQ(shmp_value_load(c.sum, &s), 0);
	if (code != 0 || s != sumsq(1000))
		fprintf(stderr, "child: exit %d, sum %lld\n", code, (long long)s);
	T_EQ(code, 0);
	T_EQ(s, sumsq(1000));
	shmp_process_destroy(pr);
	shmp_value_destroy(c.sum);

	if (pp) {
		/* The parent's pool did nothing for the child and still works. */
		struct shmp_pool_stats st;
		T_EQ(shmp_pool_stats(pp, &st), 0);
		T_EQ(st.submitted, st0.submitted);
		T_EQ(st.completed, st0.completed);
		T_EQ(st.worker_deaths, 0);
		x = 12;
		T_EQ(shmp_pool_apply(pp, square, &x, sizeof(x), &y, sizeof(y), NULL), 0);
		T_EQ(y, 144);
		shmp_pool_destroy(pp);
	}
	T_NO_CHILDREN();
}

/* ---- a pool in a pool's task ---------------------------------------------- */

struct nest_arg {
	int inner_kind;
	int outer_threads; /* the task runs in a thread of the test process */
	long n;
};

static int nested(const void *arg, void *res, const struct shmp_task_ctx *ctx)
{
	(void)ctx;
	const struct nest_arg *a = arg;
	long s = pool_sum(a->inner_kind, 2, a->n);
	if (s < 0)
		return (int)(s < -1000 ? 50 : -s);
	/* A worker process has nothing left of its inner pool. (In a thread of
	 * the test, other tasks' inner pools may be running: the test checks
	 * afterwards.) */
	if (!a->outer_threads && no_children())
		return 60;
	*(long *)res = s;
	return 0;
}

static void in_worker(int outer, int inner)
{
	enum { M = 4 };
	/* A process Pool made in a ThreadPool's task forks its zygote while
	 * the other threads may be allocating (see main() on ASan): under
	 * ASan that pairing runs on one outer thread. */
	int nw = ASAN && outer == 1 && inner == 0 ? 1 : 2;
	shmp_pool_t *p = create[outer](nw, NULL);
	T_CHECK(p);
	wait_idle(p, nw);
	struct nest_arg in[M];
	long out[M];
	for (int i = 0; i < M; i++) {
		in[i] = (struct nest_arg){ .inner_kind = inner, .outer_threads = outer, .n = 100 + i };
		out[i] = -1;
	}
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = 1);
	struct shmp_task_error e;
	memset(&e, 0, sizeof(e));
	int r = shmp_pool_map(p, nested, in, sizeof(in[0]), M, out, sizeof(out[0]), &o, &e);
	if (r)
		fprintf(stderr, "%s in a %s task: %s, item %llu code %d\n", kind_name[inner],
			kind_name[outer], shmp_strerror(r), (unsigned long long)e.index, e.code);
	T_EQ(r, 0);
	for (int i = 0; i < M; i++)
		T_EQ(out[i], sumsq(100 + i));
	/* And an apply, the outer pool still fine. */
	struct nest_arg one = { .inner_kind = inner, .outer_threads = outer, .n = 50 };
	long s = -1;
	T_EQ(shmp_pool_apply(p, nested, &one, sizeof(one), &s, sizeof(s), NULL), 0);
	T_EQ(s, sumsq(50));
	struct shmp_pool_stats st;
	T_EQ(shmp_pool_stats(p, &st), 0);
	T_EQ(st.worker_deaths, 0);
	T_EQ(st.failed, 0);
	shmp_pool_destroy(p);
	T_NO_CHILDREN();
}

/* ---- /dev/shm ------------------------------------------------------------- */

#define MAXE 4096
static char *shm_before[MAXE];
static int n_before;

/* New /dev/shm entries since the snapshot that could be ours: anything but
 * other tests' "shmp.t..." segments (the suite may run in parallel). */
static int shm_new_entries(void)
{
	char *now[MAXE];
	int n = t_shm_list(now, MAXE), bad = 0;
	char own[160];
	snprintf(own, sizeof(own), "shmp.%s", t_segname(""));
	own[strlen(own) - 1] = 0; /* drop the trailing '-' of the empty tag */
	for (int i = 0; i < n; i++) {
		int old = 0;
		for (int j = 0; j < n_before && !old; j++)
			old = strcmp(now[i], shm_before[j]) == 0;
		int other_test = strncmp(now[i], "shmp.t", 6) == 0 &&
				 strncmp(now[i], own, strlen(own)) != 0;
		if (!old && !other_test && strncmp(now[i], "shmp.", 5) == 0) {
			fprintf(stderr, "left in /dev/shm: %s\n", now[i]);
			bad++;
		}
		free(now[i]);
	}
	return bad;
}

int main(void)
{
	t_watchdog(120);
	/* Orphans of any pool we start come to us: "nothing left behind" is
	 * then simply "no child of ours". */
	T_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	n_before = t_shm_list(shm_before, MAXE);
	fflush(NULL);

	/* GCC 12's ASan allocator has no fork handler: a child forked while
	 * another thread of ours allocates (a pool's supervisor does, now and
	 * then) can inherit its lock held and deadlock in malloc. Seen in
	 * about one run in 30; glibc's malloc is fork-safe. Under ASan the
	 * parent has no pool of its own when it forks. */
	for (int kind = 0; kind < 2; kind++)
		for (int parent_kind = ASAN ? -1 : 0; parent_kind < (ASAN ? 0 : 2); parent_kind++) {
			double t0 = t_now();
			in_process_child(kind, parent_kind);
			printf("%s in a Process child (parent has %s): ok (%.0f ms)\n",
			       kind_name[kind], parent_kind >= 0 ? kind_name[parent_kind] : "no pool",
			       (t_now() - t0) * 1e3);
		}
	for (int outer = 0; outer < 2; outer++)
		for (int inner = 0; inner < 2; inner++) {
			double t0 = t_now();
			in_worker(outer, inner);
			printf("%s in a %s task: ok (%.0f ms)\n", kind_name[inner], kind_name[outer],
			       (t_now() - t0) * 1e3);
		}
	T_NO_CHILDREN();
	T_EQ(shm_new_entries(), 0);
	for (int j = 0; j < n_before; j++)
		free(shm_before[j]);
	return 0;
}
