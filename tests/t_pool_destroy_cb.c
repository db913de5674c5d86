/* A pool destroyed from inside one of its own callbacks (which run on the
 * pool's supervisor thread): the call returns, the pool finishes
 * terminating and frees itself, the async handle whose callback it was
 * outlives it (get gives its result; its own destroy frees it), and no
 * process or thread of the pool is left. Pool and ThreadPool. */
#include "t.h"

#include <dirent.h>
#include <stdatomic.h>
#include <stdbool.h>

static shmp_pool_t *g_pool;
static atomic_int g_destroyed;

static int twice(const void *arg, void *res, const struct shmp_task_ctx *ctx)
{
	(void)ctx;
	*(long *)res = *(const long *)arg * 2;
	return 0;
}

static int destroy_cb(shmp_async_t *a, void *results, size_t n, void *cb_arg)
{
	(void)a;
	(void)cb_arg;
	T_EQ(n, 1);
	T_EQ(*(long *)results, 42);
	shmp_pool_destroy(g_pool);
	atomic_store(&g_destroyed, 1);
	return 0;
}

/* Threads of this process. */
static int threads_now(void)
{
	DIR *d = opendir("/proc/self/task");
	T_CHECK(d);
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

static void run(shmp_pool_t *(*create)(int, const struct shmp_pool_opts *), bool threads)
{
	atomic_store(&g_destroyed, 0);
	T_EQ(threads_now(), 1);
	g_pool = create(2, NULL);
	T_CHECK(g_pool);
	long x = 21;
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .callback = destroy_cb);
	shmp_async_t *a = shmp_pool_apply_async(g_pool, twice, &x, sizeof x, NULL, sizeof(long), &o);
	T_CHECK(a);
	double until = t_now() + 10;
	while (!atomic_load(&g_destroyed)) {
		T_CHECK(t_now() < until);
		t_sleep_ms(1);
	}
	/* The async handle is the caller's: still there, with its result. */
	T_EQ(shmp_async_get(a, 5, NULL), 0);
	T_EQ(*(long *)shmp_async_results(a), 42);
	/* Every thread of the pool ends (the supervisor last, freeing it). */
	while (threads_now() != 1) {
		T_CHECK(t_now() < until);
		t_sleep_ms(1);
	}
	if (!threads) {
		/* The zygote (our only child) is reaped by the exiting supervisor. */
		while (!(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD)) {
			T_CHECK(t_now() < until);
			t_sleep_ms(1);
		}
	}
	shmp_async_destroy(a);
}

int main(void)
{
	t_watchdog(60);
	run(shmp_pool_create, false);
	run(shmp_threadpool_create, true);
	return 0;
}
