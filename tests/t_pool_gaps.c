/* Pool and ThreadPool: the contract's edges a man-page review found silent
 * or hanging, each now an error:
 *  - opts.name taken in the registry: create fails, errno EEXIST (as for
 *    pipelines), and nothing is left running; a free name works;
 *  - queue_capacity above SHMP_POOL_MAX_QUEUE: EINVAL (was capped
 *    silently); SHMP_POOL_MAX_QUEUE itself is accepted;
 *  - an AsyncResult used in a forked child: get, wait, is_ready,
 *    is_successful return -ECHILD and results is NULL + ECHILD, at once,
 *    for a call still running in the parent (get used to hang); destroy
 *    there frees the child's copy only: the parent's handle still works;
 *  - waiting in a callback for a call that the callback's own thread must
 *    collect: shmp_async_get/wait with a timeout -EDEADLK at once (a poll,
 *    timeout 0, is -ETIMEDOUT), shmp_pool_map -EDEADLK before submitting;
 *    a call already finished is got normally;
 *  - shmp_pool_join(p, NaN) is -EINVAL, running or closed;
 *  - shmp_async_results(NULL) is NULL with errno EINVAL.
 * Every body runs against shmp_pool_create and shmp_threadpool_create. */
#include "t.h"

#include <math.h>

struct kind {
	const char *name;
	shmp_pool_t *(*create)(int, const struct shmp_pool_opts *);
};

static int sq(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	(void)c;
	int64_t x;
	memcpy(&x, arg, sizeof x);
	x *= x;
	memcpy(res, &x, sizeof x);
	return 0;
}

/* Waits until the shared flag says go (a call that stays running). */
static shmp_event_t *g_go;
static int held(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	(void)arg, (void)c;
	shmp_event_wait(g_go, SHMP_FOREVER);
	memset(res, 0, 8);
	return 0;
}

/* ---- a taken name --------------------------------------------------------- */

static void t_name(const struct kind *k)
{
	shmp_registry_t *r = shmp_registry_create(t_segname("reg"), NULL);
	T_CHECK(r);
	struct shmp_pool_opts o = SHMP_OPTS(shmp_pool_opts, .registry = r, .name = "mine");
	shmp_pool_t *a = k->create(2, &o);
	T_CHECK(a);
	errno = 0;
	T_CHECK(k->create(2, &o) == NULL);
	T_EQ(errno, EEXIST);
	/* The default names still go on: pool, pool.2 ... */
	struct shmp_pool_opts d = SHMP_OPTS(shmp_pool_opts, .registry = r);
	shmp_pool_t *b = k->create(1, &d), *c = k->create(1, &d);
	T_CHECK(b && c);
	struct shmp_pool_stats st;
	T_EQ(shmp_pool_inspect(r, "mine", &st, NULL, 0) >= 0, 1);
	T_EQ(shmp_pool_inspect(r, "pool", &st, NULL, 0) >= 0, 1);
	T_EQ(shmp_pool_inspect(r, "pool.2", &st, NULL, 0) >= 0, 1);
	int64_t x = 7, y = 0;
	T_EQ(shmp_pool_apply(a, sq, &x, sizeof x, &y, sizeof y, NULL), 0);
	T_EQ(y, 49);
	shmp_pool_destroy(c);
	shmp_pool_destroy(b);
	shmp_pool_destroy(a);
	shmp_registry_destroy(r);
}

/* ---- queue_capacity ------------------------------------------------------- */

static void t_capacity(const struct kind *k)
{
	struct shmp_pool_opts o = SHMP_OPTS(shmp_pool_opts, .queue_capacity = SHMP_POOL_MAX_QUEUE + 1);
	errno = 0;
	T_CHECK(k->create(1, &o) == NULL);
	T_EQ(errno, EINVAL);
	o.queue_capacity = UINT32_MAX;
	errno = 0;
	T_CHECK(k->create(1, &o) == NULL);
	T_EQ(errno, EINVAL);
	o.queue_capacity = SHMP_POOL_MAX_QUEUE;
	shmp_pool_t *p = k->create(1, &o);
	T_CHECK(p);
	int64_t x = 3, y = 0;
	T_EQ(shmp_pool_apply(p, sq, &x, sizeof x, &y, sizeof y, NULL), 0);
	T_EQ(y, 9);
	shmp_pool_destroy(p);
}

/* ---- handles in a forked child -------------------------------------------- */

static shmp_async_t *g_h;
static int child_uses_handle(void *arg)
{
	(void)arg;
	struct shmp_task_error e;
	/* Before the fix get waited for ever: the watchdog says so. */
	alarm(10);
	if (shmp_async_get(g_h, SHMP_FOREVER, &e) != -ECHILD)
		return 10;
	if (shmp_async_wait(g_h, 1.0) != -ECHILD)
		return 11;
	if (shmp_async_is_ready(g_h) != -ECHILD)
		return 12;
	if (shmp_async_is_successful(g_h) != -ECHILD)
		return 13;
	errno = 0;
	if (shmp_async_results(g_h) != NULL || errno != ECHILD)
		return 14;
	shmp_async_destroy(g_h); /* the child's copy */
	return 0;
}

static void t_fork_child(const struct kind *k)
{
	shmp_event_clear(g_go);
	shmp_pool_t *p = k->create(2, NULL);
	T_CHECK(p);
	int64_t x = 5, y = -1;
	g_h = shmp_pool_apply_async(p, held, &x, sizeof x, &y, sizeof y, NULL);
	T_CHECK(g_h);
	pid_t c = t_fork(child_uses_handle, NULL);
	int st = t_wait(c, 20);
	T_EQ(t_exit_code(st), 0);
	/* The parent's handle is untouched by the child's destroy. */
	T_EQ(shmp_async_is_ready(g_h), 0);
	shmp_event_set(g_go);
	T_EQ(shmp_async_get(g_h, 10, NULL), 0);
	T_EQ(y, 0);
	T_EQ(shmp_async_is_successful(g_h), 1);
	shmp_async_destroy(g_h);
	shmp_pool_close(p);
	T_EQ(shmp_pool_join(p, 10), 0);
	shmp_pool_destroy(p);
}

/* ---- waiting in a callback ---------------------------------------------- */

struct cb_state {
	shmp_pool_t *p;
	shmp_async_t *done_before; /* finished before the callback runs */
	_Atomic int get_r, wait_r, poll_r, map_r, done_r, ran;
	struct shmp_task_error map_err; /* what the refused map said in err */
};

static int in_callback(shmp_async_t *a, void *results, size_t n, void *arg)
{
	(void)a, (void)results, (void)n;
	struct cb_state *s = arg;
	int64_t x = 4, y = 0;
	/* A call whose tasks this thread would have to collect. */
	shmp_event_clear(g_go);
	shmp_async_t *h = shmp_pool_apply_async(s->p, held, &x, sizeof x, &y, sizeof y, NULL);
	if (!h) {
		s->get_r = 999;
		s->ran = 1;
		return 0;
	}
	double t0 = t_now();
	s->get_r = shmp_async_get(h, SHMP_FOREVER, NULL);
	s->wait_r = shmp_async_wait(h, 5.0);
	s->poll_r = shmp_async_wait(h, 0);
	int64_t in[4] = { 1, 2, 3, 4 }, out[4];
	memset(&s->map_err, 0x5a, sizeof s->map_err);
	s->map_r = shmp_pool_map(s->p, sq, in, sizeof in[0], 4, out, sizeof out[0], NULL, &s->map_err);
	if (t_now() - t0 > 2.0)
		s->get_r = 998; /* refused, but not at once */
	shmp_event_set(g_go);
	shmp_async_destroy(h);
	/* Finished already: got as usual. */
	s->done_r = shmp_async_get(s->done_before, SHMP_FOREVER, NULL);
	s->ran = 1;
	return 0;
}

static void t_callback(const struct kind *k)
{
	shmp_pool_t *p = k->create(2, NULL);
	T_CHECK(p);
	struct cb_state s = { .p = p };
	int64_t x = 6, y = 0;
	s.done_before = shmp_pool_apply_async(p, sq, &x, sizeof x, &y, sizeof y, NULL);
	T_CHECK(s.done_before);
	T_EQ(shmp_async_get(s.done_before, 10, NULL), 0);
	struct shmp_call_opts co = SHMP_OPTS(shmp_call_opts, .callback = in_callback, .cb_arg = &s);
	int64_t z = 2, w = 0;
	shmp_async_t *h = shmp_pool_apply_async(p, sq, &z, sizeof z, &w, sizeof w, &co);
	T_CHECK(h);
	T_EQ(shmp_async_get(h, 20, NULL), 0);
	T_EQ(s.ran, 1);
	T_EQ(s.get_r, -EDEADLK);
	T_EQ(s.wait_r, -EDEADLK);
	T_EQ(s.poll_r, -ETIMEDOUT);
	T_EQ(s.map_r, -EDEADLK);
	/* err covers every item: none ran (index 0, the 3 after it skipped). */
	T_EQ(s.map_err.error, -EDEADLK);
	T_EQ(s.map_err.index, 0);
	T_EQ(s.map_err.skipped, 3);
	T_EQ(s.map_err.exit_status, -1);
	T_EQ(s.done_r, 0);
	T_EQ(y, 36);
	shmp_async_destroy(h);
	shmp_async_destroy(s.done_before);
	/* A map made outside a callback works as ever. */
	int64_t in[3] = { 1, 2, 3 }, out[3];
	T_EQ(shmp_pool_map(p, sq, in, sizeof in[0], 3, out, sizeof out[0], NULL, NULL), 0);
	T_EQ(out[2], 9);
	shmp_pool_close(p);
	T_EQ(shmp_pool_join(p, 10), 0);
	shmp_pool_destroy(p);
}

/* ---- join(NaN), results(NULL) ---------------------------------------------- */

static void t_nan(const struct kind *k)
{
	shmp_pool_t *p = k->create(1, NULL);
	T_CHECK(p);
	T_FAST(shmp_pool_join(p, NAN), -EINVAL); /* running: still the timeout's error */
	T_FAST(shmp_pool_join(p, 0), -SHMP_ENOTCLOSED);
	shmp_pool_close(p);
	T_FAST(shmp_pool_join(p, NAN), -EINVAL);
	T_EQ(shmp_pool_join(p, 10), 0);
	shmp_pool_destroy(p);
	errno = 0;
	T_CHECK(shmp_async_results(NULL) == NULL);
	T_EQ(errno, EINVAL);
}

int main(void)
{
	t_watchdog(150);
	g_go = shmp_event_create(NULL);
	T_CHECK(g_go);
	const struct kind kinds[] = { { "process", shmp_pool_create }, { "thread", shmp_threadpool_create } };
	for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
		const struct kind *k = &kinds[i];
		fprintf(stderr, "-- %s\n", k->name);
		t_name(k);
		t_capacity(k);
		t_fork_child(k);
		t_callback(k);
		t_nan(k);
	}
	shmp_event_destroy(g_go);
	T_NO_CHILDREN();
	return 0;
}
