/* Pool and ThreadPool, the contract's promises (include/shmp/pool.h; issue
 * 12: pids at create, every failure says what happened, one lifetime rule):
 *  - worker pids are known when create returns: shmp_pool_worker_info gives
 *    n distinct pids > 0 at once; a Pool's are live processes whose parent
 *    is our only child (the zygote), a ThreadPool's are threads of this
 *    process;
 *  - join before close or terminate: -SHMP_ENOTCLOSED;
 *  - an initializer that fails with 17: apply, map, apply_async's and
 *    map_async's get, imap next fail with -SHMP_EINIT and err.code 17;
 *  - a task function that is not code (a heap or a data address):
 *    -SHMP_EBADFN at the call for apply, apply_async, map, map_async,
 *    imap, with nothing submitted; the pool then works;
 *  - imap and imap_unordered refuse callback and error_callback (NULL,
 *    EINVAL);
 *  - a map failing at item 3 of a chunk of 10: err.index 3, err.skipped 6,
 *    and items 4..9 never ran (a shared counter of runs says so);
 *  - limits named before anything runs (Pool, segment_size 64 KiB): an
 *    apply argument or map item of 100 KiB of private memory is
 *    -SHMP_ESEGFULL for apply, apply_async, map, map_async, imap with
 *    nothing run; past max_task_bytes -EMSGSIZE; a map of 2,000 items of
 *    1 KiB (31 times the segment) streams through it with every result
 *    right, and data_used is back to 0 after; a ThreadPool (which works in
 *    place) runs the 100 KiB items;
 *  - a forked child's inherited pool handle: its calls return -ECHILD, its
 *    destroy frees only its copy: the parent's pool goes on mapping with
 *    the same workers;
 *  - an imap iterator that outlives its pool: next returns -SHMP_ECLOSED,
 *    its destroy frees it (ASan: no use after free);
 *  - no descriptor grows: 20 pools created and destroyed, and one pool
 *    whose 200 workers are each replaced after one task (pidfds handed over
 *    per fork), leave this process with the descriptors it had. */
#include "t.h"

#include <dirent.h>
#include <stdatomic.h>
#include <sys/syscall.h>

static shmp_pool_t *(*const create[2])(int, const struct shmp_pool_opts *) = {
	shmp_pool_create, shmp_threadpool_create
};
static const char *const kind_name[2] = { "Pool", "ThreadPool" };

static shmp_array_t *g_runs; /* made before any pool: items run */

static int twice(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	(void)c;
	long x = *(const long *)arg;
	shmp_array_add(g_runs, 0, 1, NULL);
	if (x < 0)
		return (int)-x;
	*(long *)res = 2 * x;
	return 0;
}

/* Sums the bytes of a big item into a long. */
static int big_sum(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	const unsigned char *b = arg;
	long s = 0;
	for (size_t i = 0; i < c->arg_size; i++)
		s += b[i];
	shmp_array_add(g_runs, 0, 1, NULL);
	if (c->result_size == sizeof(long))
		*(long *)res = s;
	return 0;
}

static int init_17(void *initarg, void **user)
{
	(void)initarg;
	(void)user;
	return 17;
}

static long ppid_of(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	char *rp = strrchr(buf, ')');
	long pp = -1;
	if (!rp || sscanf(rp + 2, "%*c %ld", &pp) != 1)
		return -1;
	return pp;
}

static int is_my_thread(pid_t tid)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/self/task/%d", (int)tid);
	return access(path, F_OK) == 0;
}

static void test_pids(int kind)
{
	enum { W = 3 };
	shmp_pool_t *p = create[kind](W, NULL);
	T_CHECK(p);
	/* At once: no waiting for the workers to come up. */
	struct shmp_worker_info wi[W];
	T_EQ(shmp_pool_worker_info(p, wi, W), W);
	for (int i = 0; i < W; i++) {
		T_CHECK(wi[i].pid > 0);
		for (int j = 0; j < i; j++)
			T_CHECK(wi[i].pid != wi[j].pid);
		if (kind == 0) {
			T_CHECK(wi[i].pid != getpid());
			long zygote = ppid_of(wi[i].pid);
			T_CHECK(zygote > 0 && zygote != getpid());
			T_EQ(ppid_of((pid_t)zygote), getpid());
		} else {
			T_CHECK(is_my_thread(wi[i].pid));
		}
	}
	T_EQ(t_pool_stats(p).workers_started, W);
	T_EQ(t_pool_stats(p).alive, W);
	T_FAST(shmp_pool_join(p, 1), -SHMP_ENOTCLOSED);
	T_EQ(shmp_pool_close(p), 0);
	/* A map refused at its start says so in err for all its items. */
	long in[5] = { 1, 2, 3, 4, 5 }, out[5];
	struct shmp_task_error err;
	memset(&err, 0x5a, sizeof err);
	int r = shmp_pool_map(p, twice, in, sizeof in[0], 5, out, sizeof out[0], NULL, &err);
	T_EQ(r, -SHMP_ECLOSED);
	T_EQ(err.error, r);
	T_EQ(err.index, 0);
	T_EQ(err.skipped, 4);
	T_EQ(shmp_pool_join(p, 10), 0);
	shmp_pool_destroy(p);
}

static void test_init_code(int kind)
{
	struct shmp_pool_opts po = SHMP_OPTS(shmp_pool_opts, .initializer = init_17);
	shmp_pool_t *p = create[kind](2, &po);
	T_CHECK(p);
	long x = 1, r = 0, in[4] = { 1, 2, 3, 4 }, out[4];
	struct shmp_task_error err;
	/* Queued before the failure shows, or refused after: either way it
	 * says EINIT and what the initializer returned. */
	shmp_async_t *a = shmp_pool_apply_async(p, twice, &x, sizeof x, &r, sizeof r, NULL);
	if (a) {
		memset(&err, 0, sizeof err);
		T_EQ(shmp_async_get(a, 5, &err), -SHMP_EINIT);
		T_EQ(err.code, 17);
		shmp_async_destroy(a);
	} else {
		T_EQ(errno, SHMP_EINIT);
	}
	double until = t_now() + 5;
	while (t_pool_stats(p).state != SHMP_POOL_BROKEN) {
		T_CHECK(t_now() < until);
		t_sleep_ms(1);
	}
	memset(&err, 0, sizeof err);
	T_EQ(shmp_pool_apply(p, twice, &x, sizeof x, &r, sizeof r, &err), -SHMP_EINIT);
	T_EQ(err.error, -SHMP_EINIT);
	T_EQ(err.code, 17);
	memset(&err, 0, sizeof err);
	T_EQ(shmp_pool_map(p, twice, in, sizeof in[0], 4, out, sizeof out[0], NULL, &err), -SHMP_EINIT);
	T_EQ(err.code, 17);
	errno = 0;
	T_CHECK(!shmp_pool_map_async(p, twice, in, sizeof in[0], 4, out, sizeof out[0], NULL));
	T_EQ(errno, SHMP_EINIT);
	T_EQ(shmp_pool_close(p), 0);
	T_EQ(shmp_pool_join(p, 10), 0);
	shmp_pool_destroy(p);
}

static char not_code[64];

static void test_badfn(int kind)
{
	shmp_pool_t *p = create[kind](2, NULL);
	T_CHECK(p);
	char *heap = malloc(64);
	T_CHECK(heap);
	shmp_task_fn bad[2] = { (shmp_task_fn)(uintptr_t)heap, (shmp_task_fn)(uintptr_t)not_code };
	long x = 1, r, in[4] = { 1, 2, 3, 4 }, out[4];
	for (int b = 0; b < 2; b++) {
		struct shmp_task_error err;
		memset(&err, 0, sizeof err);
		T_FAST(shmp_pool_apply(p, bad[b], &x, sizeof x, &r, sizeof r, &err), -SHMP_EBADFN);
		T_EQ(err.error, -SHMP_EBADFN);
		errno = 0;
		T_CHECK(!shmp_pool_apply_async(p, bad[b], &x, sizeof x, &r, sizeof r, NULL));
		T_EQ(errno, SHMP_EBADFN);
		T_FAST(shmp_pool_map(p, bad[b], in, sizeof in[0], 4, out, sizeof out[0], NULL, NULL),
		       -SHMP_EBADFN);
		errno = 0;
		T_CHECK(!shmp_pool_map_async(p, bad[b], in, sizeof in[0], 4, out, sizeof out[0], NULL));
		T_EQ(errno, SHMP_EBADFN);
		errno = 0;
		T_CHECK(!shmp_pool_imap(p, bad[b], in, sizeof in[0], 4, sizeof out[0], NULL, NULL, NULL));
		T_EQ(errno, SHMP_EBADFN);
		errno = 0;
		T_CHECK(!shmp_pool_imap_unordered(p, bad[b], in, sizeof in[0], 4, sizeof out[0], NULL, NULL,
						  NULL));
		T_EQ(errno, SHMP_EBADFN);
	}
	T_EQ(t_pool_stats(p).submitted, 0);
	T_EQ(shmp_pool_apply(p, twice, &x, sizeof x, &r, sizeof r, NULL), 0);
	T_EQ(r, 2);
	free(heap);
	shmp_pool_destroy(p);
}

static int on_ok(shmp_async_t *a, void *res, size_t n, void *arg)
{
	(void)a, (void)res, (void)n, (void)arg;
	return 0;
}

static int on_err(shmp_async_t *a, const struct shmp_task_error *e, void *arg)
{
	(void)a, (void)e, (void)arg;
	return 0;
}

static void test_imap_callbacks(int kind)
{
	shmp_pool_t *p = create[kind](2, NULL);
	T_CHECK(p);
	long in[4] = { 1, 2, 3, 4 };
	struct shmp_call_opts o[2] = { SHMP_OPTS(shmp_call_opts, .callback = on_ok),
				       SHMP_OPTS(shmp_call_opts, .error_callback = on_err) };
	for (int i = 0; i < 2; i++) {
		errno = 0;
		T_CHECK(!shmp_pool_imap(p, twice, in, sizeof in[0], 4, sizeof(long), NULL, NULL, &o[i]));
		T_EQ(errno, EINVAL);
		errno = 0;
		T_CHECK(!shmp_pool_imap_unordered(p, twice, in, sizeof in[0], 4, sizeof(long), NULL, NULL,
						  &o[i]));
		T_EQ(errno, EINVAL);
	}
	T_EQ(t_pool_stats(p).submitted, 0);
	shmp_pool_destroy(p);
}

static void test_skipped(int kind)
{
	shmp_pool_t *p = create[kind](2, NULL);
	T_CHECK(p);
	enum { N = 40 };
	long in[N], out[N];
	for (int i = 0; i < N; i++)
		in[i] = i;
	in[13] = -5; /* item 3 of the chunk 10..19 */
	T_EQ(shmp_array_store(g_runs, 0, 0), 0);
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = 10);
	struct shmp_task_error err;
	memset(&err, 0, sizeof err);
	T_EQ(shmp_pool_map(p, twice, in, sizeof in[0], N, out, sizeof out[0], &o, &err), -SHMP_ETASK);
	T_EQ(err.index, 13);
	T_EQ(err.code, 5);
	T_EQ(err.skipped, 6);
	/* The other chunks ran whole; 14..19 never did. */
	T_EQ(shmp_pool_close(p), 0);
	T_EQ(shmp_pool_join(p, 10), 0);
	T_EQ(t_load(g_runs, 0), N - 6);
	for (int i = 0; i < N; i++)
		if (i < 10 || i >= 20)
			T_EQ(out[i], 2 * i);
	shmp_pool_destroy(p);
}

static void test_limits(int kind)
{
	enum { BIG = 100 << 10, SMALL = 1 << 10, NS = 2000 };
	struct shmp_pool_opts po = SHMP_OPTS(shmp_pool_opts, .segment_size = 64 << 10,
					     .max_task_bytes = 1 << 20);
	shmp_pool_t *p = create[kind](2, &po);
	T_CHECK(p);
	unsigned char *big = malloc(2 * BIG);
	T_CHECK(big);
	memset(big, 1, 2 * BIG);
	long r = 0, out2[2];
	T_EQ(shmp_array_store(g_runs, 0, 0), 0);
	if (kind == 0) {
		/* Copied through a 64 KiB segment: cannot fit, said at once. */
		struct shmp_task_error err;
		memset(&err, 0, sizeof err);
		T_FAST(shmp_pool_apply(p, big_sum, big, BIG, &r, sizeof r, &err), -SHMP_ESEGFULL);
		T_EQ(err.error, -SHMP_ESEGFULL);
		errno = 0;
		T_CHECK(!shmp_pool_apply_async(p, big_sum, big, BIG, &r, sizeof r, NULL));
		T_EQ(errno, SHMP_ESEGFULL);
		T_FAST(shmp_pool_map(p, big_sum, big, BIG, 2, out2, sizeof(long), NULL, NULL), -SHMP_ESEGFULL);
		errno = 0;
		T_CHECK(!shmp_pool_map_async(p, big_sum, big, BIG, 2, out2, sizeof(long), NULL));
		T_EQ(errno, SHMP_ESEGFULL);
		errno = 0;
		T_CHECK(!shmp_pool_imap(p, big_sum, big, BIG, 2, sizeof(long), NULL, NULL, NULL));
		T_EQ(errno, SHMP_ESEGFULL);
		T_EQ(t_pool_stats(p).submitted, 0);
		T_EQ(t_load(g_runs, 0), 0);
	} else {
		/* In place: no copy, no limit but max_task_bytes. */
		T_EQ(shmp_pool_apply(p, big_sum, big, BIG, &r, sizeof r, NULL), 0);
		T_EQ(r, BIG);
		T_EQ(shmp_pool_map(p, big_sum, big, BIG, 2, out2, sizeof(long), NULL, NULL), 0);
		T_EQ(out2[0], BIG);
		T_EQ(out2[1], BIG);
	}
	/* Past max_task_bytes: -EMSGSIZE, both kinds. */
	unsigned char *huge = calloc(1, (2 << 20));
	T_CHECK(huge);
	T_FAST(shmp_pool_apply(p, big_sum, huge, 2 << 20, &r, sizeof r, NULL), -EMSGSIZE);
	T_FAST(shmp_pool_map(p, big_sum, huge, 1 << 20, 2, out2, sizeof(long), NULL, NULL), -EMSGSIZE);
	free(huge);

	/* 2,000 items of 1 KiB (2 MiB: 31 times the segment) stream through. */
	unsigned char *items = malloc((size_t)NS * SMALL);
	long *sums = calloc(NS, sizeof *sums);
	T_CHECK(items && sums);
	for (size_t i = 0; i < NS; i++)
		memset(items + i * SMALL, (int)(i % 200), SMALL);
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = 100);
	T_EQ(shmp_pool_map(p, big_sum, items, SMALL, NS, sums, sizeof *sums, &o, NULL), 0);
	for (size_t i = 0; i < NS; i++)
		T_EQ(sums[i], (long)(i % 200) * SMALL);
	double until = t_now() + 5;
	while (t_pool_stats(p).data_used != 0) {
		T_CHECK(t_now() < until);
		t_sleep_ms(1);
	}
	T_EQ(t_pool_stats(p).data_size, 64 << 10);
	free(items);
	free(sums);
	free(big);
	shmp_pool_destroy(p);
}

struct forked {
	shmp_pool_t *p;
};

static int child_of_fork(void *arg)
{
	shmp_pool_t *p = ((struct forked *)arg)->p;
	long x = 3, r;
	if (shmp_pool_apply(p, twice, &x, sizeof x, &r, sizeof r, NULL) != -ECHILD)
		return 2;
	if (shmp_pool_close(p) != -ECHILD || shmp_pool_terminate(p) != -ECHILD ||
	    shmp_pool_join(p, 0) != -ECHILD || shmp_pool_workers(p) != -ECHILD)
		return 3;
	errno = 0;
	if (shmp_pool_map_async(p, twice, &x, sizeof x, 1, &r, sizeof r, NULL) || errno != ECHILD)
		return 4;
	shmp_pool_destroy(p); /* the child's copy */
	return 0;
}

static void test_fork(int kind)
{
	shmp_pool_t *p = create[kind](2, NULL);
	T_CHECK(p);
	struct shmp_worker_info before[2], after[2];
	T_EQ(shmp_pool_worker_info(p, before, 2), 2);
	struct forked f = { p };
	t_wait_ok(t_fork(child_of_fork, &f), 10);
	enum { N = 100 };
	long in[N], out[N];
	for (int i = 0; i < N; i++)
		in[i] = i;
	T_EQ(shmp_pool_map(p, twice, in, sizeof in[0], N, out, sizeof out[0], NULL, NULL), 0);
	for (int i = 0; i < N; i++)
		T_EQ(out[i], 2 * i);
	T_EQ(shmp_pool_worker_info(p, after, 2), 2);
	T_EQ(after[0].pid, before[0].pid);
	T_EQ(after[1].pid, before[1].pid);
	T_EQ(t_pool_stats(p).state, SHMP_POOL_RUNNING);
	shmp_pool_destroy(p);
}

static void test_outlive(int kind)
{
	shmp_pool_t *p = create[kind](2, NULL);
	T_CHECK(p);
	long in[8] = { 1, 2, 3, 4, 5, 6, 7, 8 }, v;
	shmp_imap_t *it = shmp_pool_imap(p, twice, in, sizeof in[0], 8, sizeof v, NULL, NULL, NULL);
	T_CHECK(it);
	T_EQ(shmp_imap_next(it, &v, NULL, 5, NULL), 1);
	T_EQ(v, 2);
	shmp_pool_destroy(p);
	T_FAST(shmp_imap_next(it, &v, NULL, 5, NULL), -SHMP_ECLOSED);
	shmp_imap_destroy(it);
}

static int fd_count(void)
{
	DIR *d = opendir("/proc/self/fd");
	T_CHECK(d);
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

static void test_fds(int kind)
{
	int before = fd_count();
	for (int i = 0; i < 20; i++) {
		shmp_pool_t *p = create[kind](2, NULL);
		T_CHECK(p);
		shmp_pool_destroy(p);
	}
	T_EQ(fd_count(), before);
	struct shmp_pool_opts po = SHMP_OPTS(shmp_pool_opts, .max_tasks_per_child = 1);
	shmp_pool_t *p = create[kind](2, &po);
	T_CHECK(p);
	enum { N = 200 };
	long in[N], out[N];
	for (int i = 0; i < N; i++)
		in[i] = i;
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = 1);
	/* (Counted once the pool is warm: its supervisor opens its wait.) */
	T_EQ(shmp_pool_map(p, twice, in, sizeof in[0], 4, out, sizeof out[0], &o, NULL), 0);
	int during = fd_count();
	T_EQ(shmp_pool_map(p, twice, in, sizeof in[0], N, out, sizeof out[0], &o, NULL), 0);
	T_CHECK(t_pool_stats(p).workers_started >= N);
	/* (A slot between its old worker's pidfd and its new one's: +-2.) */
	T_CHECK(fd_count() <= during + 2);
	shmp_pool_destroy(p);
	T_EQ(fd_count(), before);
}

int main(void)
{
	t_watchdog(120);
	setvbuf(stdout, NULL, _IONBF, 0);
	g_runs = t_counters(1);
	for (int kind = 0; kind < 2; kind++) {
		test_pids(kind);
		test_init_code(kind);
		test_badfn(kind);
		test_imap_callbacks(kind);
		test_skipped(kind);
		test_limits(kind);
		test_fork(kind);
		test_outlive(kind);
		test_fds(kind);
		T_NO_CHILDREN();
		printf("%s: ok\n", kind_name[kind]);
	}
	shmp_array_destroy(g_runs);
	return 0;
}
