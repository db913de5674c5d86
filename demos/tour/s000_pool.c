/* Seed 000 (Japanese): a Pool with apply_async and get(), get(timeout=1)
 * on a task that sleeps 5, and the form without a with-statement.
 *
 * The tutorial logs with format='%(processName)s: %(message)s': the main
 * process is "MainProcess", workers "ForkPoolWorker-N" (N = ctx->worker + 1,
 * the worker's slot, as Python numbers its workers). */
#include "tour.h"

#include <unistd.h>

struct w1_arg {
	long i;
	double sleep; /* the tutorial's time.sleep(), in tutorial seconds */
};

/* Python returns i; the pid rides along so the tour can check where it ran. */
struct w1_res {
	long i;
	pid_t pid;
};

/* def worker1(i): logging.debug('start'); time.sleep(5); logging.debug('end'); return i */
static int worker1(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	const struct w1_arg *a = arg;
	struct w1_res *r = res;
	say("%s: start", worker_name(c));
	nap(a->sleep);
	say("%s: end", worker_name(c));
	r->i = a->i;
	r->pid = getpid();
	return 0;
}

static shmp_async_t *submit(shmp_pool_t *p, const struct w1_arg *a, struct w1_res *r)
{
	shmp_async_t *h = shmp_pool_apply_async(p, worker1, a, sizeof *a, r, sizeof *r, NULL);
	CHECK(h != NULL);
	return h;
}

/* The tutorial's pair: p1 = p.apply_async(worker1, (a1,)), the same with a2,
 * logging.debug('executed'), then logging.debug(p1.get()) and p2's. */
static void two_tasks(shmp_pool_t *p, const struct w1_arg *a1, const struct w1_arg *a2)
{
	struct w1_res r1 = { 0 }, r2 = { 0 };
	shmp_async_t *p1 = submit(p, a1, &r1);
	shmp_async_t *p2 = submit(p, a2, &r2);
	/* apply_async returned at once: the main process goes on. */
	say("MainProcess: executed");
	if (p1 && CHECK_EQ(shmp_async_get(p1, TOUR_WAIT, NULL), 0))
		say("MainProcess: %ld", r1.i);
	if (p2 && CHECK_EQ(shmp_async_get(p2, TOUR_WAIT, NULL), 0))
		say("MainProcess: %ld", r2.i);
	CHECK_EQ(r1.i, a1->i);
	CHECK_EQ(r2.i, a2->i);
	CHECK(r1.pid > 0 && r1.pid != getpid());
	CHECK(r2.pid > 0 && r2.pid != getpid());
	shmp_async_destroy(p1);
	shmp_async_destroy(p2);
}

int sec_apply_async(void)
{
	/* with multiprocessing.Pool(5) as p: */
	shmp_pool_t *p = tour_pool(5, NULL);
	if (!p)
		return -1;
	struct w1_arg a1 = { 100, 5 }, a2 = { 200, 5 };
	two_tasks(p, &a1, &a2);
	/* Leaving the with-block: Python's __exit__ calls terminate(), and so
	 * does destroy on a pool that was not closed. */
	shmp_pool_destroy(p);
	return 0;
}

int sec_get_timeout(void)
{
	/* with multiprocessing.Pool(1) as p: */
	shmp_pool_t *p = tour_pool(1, NULL);
	if (!p)
		return -1;
	struct w1_arg a = { 100, 5 };
	struct w1_res r1 = { 0 }, r2 = { 0 };
	shmp_async_t *p1 = submit(p, &a, &r1);
	shmp_async_t *p2 = submit(p, &a, &r2);
	say("MainProcess: executed");
	/* logging.debug(p1.get(timeout=1)): the task sleeps 5. */
	struct shmp_task_error err;
	double t = tour_now();
	int rc = p1 ? shmp_async_get(p1, 1 * TOUR_SECOND, &err) : -EINVAL;
	t = tour_now() - t;
	say("MainProcess: p1.get(timeout=1) -> %s after %.0f ms", rcname(rc), t * 1000);
	if (rc == -ETIMEDOUT)
		say("multiprocessing.context.TimeoutError");
	CHECK_EQ(rc, -ETIMEDOUT);
	/* It waited the timeout, not less (generous upper bound: a busy host). */
	CHECK(t >= 0.9 * TOUR_SECOND && t < 5.0);
	/*
	 * In Python the TimeoutError leaves the with-block, whose __exit__
	 * calls terminate(): the running task is killed, the queued one never
	 * runs, and neither get() delivers. shmp does the same on terminate.
	 * (In C the timeout is just a return code: get() could also be called
	 * again, and would then return the 100.)
	 */
	CHECK_EQ(shmp_pool_terminate(p), 0);
	int rc1 = p1 ? shmp_async_get(p1, TOUR_WAIT, NULL) : -EINVAL;
	int rc2 = p2 ? shmp_async_get(p2, TOUR_WAIT, NULL) : -EINVAL;
	say("MainProcess: after terminate(): p1.get() -> %s, p2.get() -> %s", rcname(rc1),
	    rcname(rc2));
	/* p1 sleeps 5 (250 ms): only a host stalled that long lets it end. */
	CHECK(rc1 == -SHMP_ECLOSED || (rc1 == 0 && r1.i == 100));
	/* p2 waits behind p1 on the single worker: it never ran. */
	CHECK_EQ(rc2, -SHMP_ECLOSED);
	CHECK_EQ(shmp_pool_join(p, TOUR_WAIT), 0);
	shmp_async_destroy(p1);
	shmp_async_destroy(p2);
	shmp_pool_destroy(p);
	return 0;
}

int sec_close_join(void)
{
	/* p = multiprocessing.Pool(3) — no with-statement */
	shmp_pool_t *p = tour_pool(3, NULL);
	if (!p)
		return -1;
	struct w1_arg a = { 100, 1 };
	struct w1_res r1 = { 0 };
	two_tasks(p, &a, &a);
	/* p.close(): "クローズして上げる必要がある". After it the pool takes
	 * no new task (Python: ValueError: Pool not running). */
	CHECK_EQ(shmp_pool_close(p), 0);
	shmp_async_t *late = shmp_pool_apply_async(p, worker1, &a, sizeof a, &r1, sizeof r1, NULL);
	int e = late ? 0 : -errno;
	say("MainProcess: apply_async after close() -> %s", late ? "a task!" : rcname(e));
	CHECK(late == NULL);
	CHECK_EQ(e, -SHMP_ECLOSED);
	shmp_async_destroy(late);
	/* join() waits for the workers to exit; then C frees the pool. */
	CHECK_EQ(shmp_pool_join(p, TOUR_WAIT), 0);
	shmp_pool_destroy(p);
	return 0;
}
