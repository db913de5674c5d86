/* Interrupts (common.h, shmp_set_interruptible; include/shmp/pool.h,
 * "Interrupts"), Pool and ThreadPool. A SIGINT handler is installed with
 * SA_RESTART (the harder case: the kernel restarts what it can), and a
 * helper thread sends SIGINT to the process while the main thread waits;
 * the pool's own threads block signals, so it reaches the waiting thread.
 * (The signal is timed off the waits' 100 ms slices: a handler that runs
 * between two slices, not during one, is not seen.)
 * With shmp_set_interruptible(1):
 *  - map (40 tasks of 150 ms on 2 workers) returns -EINTR within 0.5 s of
 *    the signal; terminate and join then return within 2 s;
 *  - apply of a 1 s task returns -EINTR within 0.5 s; the pool goes on
 *    (another apply works) and the interrupted task's record is collected
 *    (completed == submitted once it ends);
 *  - shmp_async_get(FOREVER) returns -EINTR, and a later get the result;
 *  - shmp_pool_join after close with a 1 s task running returns -EINTR,
 *    and a later join 0;
 *  - shmp_imap_next returns -EINTR, and a later next the result;
 * with it off, the same map returns 0 with every result right although the
 * handler ran.
 * Ctrl-C end to end: a child process (the test is its subreaper) makes a
 * pool in a named registry, maps, gets SIGINT from the test: map returns
 * -EINTR, it terminates, joins and destroys the pool and the registry and
 * exits 0 at once; then no process it made is left (nothing reparented to
 * the test) and its segment is gone from /dev/shm. */
#include "t.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/prctl.h>

static shmp_pool_t *(*const create[2])(int, const struct shmp_pool_opts *) = {
	shmp_pool_create, shmp_threadpool_create
};
static const char *const kind_name[2] = { "Pool", "ThreadPool" };

static atomic_int g_handled;
static _Atomic double g_sent;

static void on_sigint(int sig)
{
	(void)sig;
	atomic_fetch_add(&g_handled, 1);
}

struct shot {
	double delay;
	pthread_t t;
};

static void *shooter(void *arg)
{
	struct shot *s = arg;
	t_sleep_ms((long)(s->delay * 1000));
	atomic_store(&g_sent, t_now());
	kill(getpid(), SIGINT);
	return NULL;
}

/* SIGINT to this process in `delay` s, from a thread that blocks it. */
static void fire(struct shot *s, double delay)
{
	s->delay = delay;
	atomic_store(&g_sent, 0);
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	T_EQ(pthread_create(&s->t, NULL, shooter, s), 0);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void landed(struct shot *s)
{
	T_EQ(pthread_join(s->t, NULL), 0);
}

/* The call returned within 0.5 s of the signal. */
static void prompt(const char *what)
{
	double dt = t_now() - atomic_load(&g_sent);
	printf("  %s: -EINTR %.1f ms after the signal\n", what, dt * 1e3);
	T_CHECK(atomic_load(&g_sent) > 0 && dt < 0.5);
}

static void test_map(int kind)
{
	enum { N = 40 };
	shmp_pool_t *p = create[kind](2, NULL);
	T_CHECK(p);
	long in[N], out[N];
	for (int i = 0; i < N; i++)
		in[i] = 150;
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = 1);
	struct shot s;
	fire(&s, 0.33);
	struct shmp_task_error err;
	T_EQ(shmp_pool_map(p, t_task_sleep_ms, in, sizeof in[0], N, out, sizeof out[0], &o, &err), -EINTR);
	prompt("map");
	T_EQ(err.error, -EINTR);
	landed(&s);
	double t0 = t_now();
	T_EQ(shmp_pool_terminate(p), 0);
	T_EQ(shmp_pool_join(p, 5), 0);
	T_CHECK(t_now() - t0 < 2);
	shmp_pool_destroy(p);
}

static void test_apply(int kind)
{
	shmp_pool_t *p = create[kind](2, NULL);
	T_CHECK(p);
	long ms = 1000, r = 0;
	struct shot s;
	fire(&s, 0.23);
	T_EQ(shmp_pool_apply(p, t_task_sleep_ms, &ms, sizeof ms, &r, sizeof r, NULL), -EINTR);
	prompt("apply");
	landed(&s);
	/* The pool goes on; the interrupted task ends and is collected. */
	long quick = 1, r2 = 0;
	T_EQ(shmp_pool_apply(p, t_task_sleep_ms, &quick, sizeof quick, &r2, sizeof r2, NULL), 0);
	T_EQ(r2, 2);
	double until = t_now() + 5;
	struct shmp_pool_stats st;
	while (st = t_pool_stats(p), st.completed != st.submitted) {
		T_CHECK(t_now() < until);
		t_sleep_ms(5);
	}
	T_EQ(st.submitted, 2);
	T_EQ(r, 1001); /* its buffer was kept valid: the result landed */
	T_EQ(shmp_pool_close(p), 0);
	T_EQ(shmp_pool_join(p, 5), 0);
	shmp_pool_destroy(p);
}

static void test_get_join_next(int kind)
{
	shmp_pool_t *p = create[kind](2, NULL);
	T_CHECK(p);
	long ms = 600, r = 0;
	shmp_async_t *a = shmp_pool_apply_async(p, t_task_sleep_ms, &ms, sizeof ms, &r, sizeof r, NULL);
	T_CHECK(a);
	struct shot s;
	fire(&s, 0.13);
	T_EQ(shmp_async_get(a, SHMP_FOREVER, NULL), -EINTR);
	prompt("get");
	landed(&s);
	T_EQ(shmp_async_get(a, 5, NULL), 0);
	T_EQ(r, 601);
	shmp_async_destroy(a);

	long in[2] = { 400, 400 }, v;
	shmp_imap_t *it = shmp_pool_imap(p, t_task_sleep_ms, in, sizeof in[0], 2, sizeof(long), NULL, NULL, NULL);
	T_CHECK(it);
	fire(&s, 0.13);
	T_EQ(shmp_imap_next(it, &v, NULL, SHMP_FOREVER, NULL), -EINTR);
	prompt("imap next");
	landed(&s);
	T_EQ(shmp_imap_next(it, &v, NULL, 5, NULL), 1);
	T_EQ(v, 401);
	T_EQ(shmp_imap_next(it, &v, NULL, 5, NULL), 1);
	T_EQ(shmp_imap_next(it, &v, NULL, 5, NULL), 0);
	shmp_imap_destroy(it);

	ms = 800;
	a = shmp_pool_apply_async(p, t_task_sleep_ms, &ms, sizeof ms, &r, sizeof r, NULL);
	T_CHECK(a);
	T_EQ(shmp_pool_close(p), 0);
	fire(&s, 0.13);
	T_EQ(shmp_pool_join(p, SHMP_FOREVER), -EINTR);
	prompt("join");
	landed(&s);
	T_EQ(shmp_pool_join(p, 5), 0);
	T_EQ(shmp_async_get(a, 0, NULL), 0);
	shmp_async_destroy(a);
	shmp_pool_destroy(p);
}

static void test_off(int kind)
{
	enum { N = 6 };
	T_EQ(shmp_set_interruptible(0), 1);
	shmp_pool_t *p = create[kind](2, NULL);
	T_CHECK(p);
	long in[N], out[N];
	for (int i = 0; i < N; i++)
		in[i] = 100;
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = 1);
	int before = atomic_load(&g_handled);
	struct shot s;
	fire(&s, 0.13);
	T_EQ(shmp_pool_map(p, t_task_sleep_ms, in, sizeof in[0], N, out, sizeof out[0], &o, NULL), 0);
	landed(&s);
	T_CHECK(atomic_load(&g_handled) > before);
	for (int i = 0; i < N; i++)
		T_EQ(out[i], 101);
	shmp_pool_destroy(p);
	T_EQ(shmp_set_interruptible(1), 0);
}

/* ---- Ctrl-C end to end ------------------------------------------------ */

static const char *g_regname;
static int g_ready[2]; /* the child writes a byte just before its map */

static int ctrl_c_child(void *arg)
{
	int kind = *(int *)arg;
	shmp_registry_t *reg = shmp_registry_create(g_regname, NULL);
	if (!reg)
		return 10;
	struct shmp_pool_opts po = SHMP_OPTS(shmp_pool_opts, .registry = reg);
	shmp_pool_t *p = create[kind](2, &po);
	if (!p)
		return 11;
	enum { N = 40 };
	long in[N], out[N];
	for (int i = 0; i < N; i++)
		in[i] = 200;
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = 1);
	printf("  child %d: mapping\n", (int)getpid());
	if (write(g_ready[1], "m", 1) != 1)
		return 15;
	if (shmp_pool_map(p, t_task_sleep_ms, in, sizeof in[0], N, out, sizeof out[0], &o, NULL) != -EINTR)
		return 12;
	/* The test repeats its SIGINT until we end (one may land before the
	 * map waits); the rest of the shutdown is not to be interrupted. */
	shmp_set_interruptible(0);
	if (shmp_pool_terminate(p) != 0 || shmp_pool_join(p, 5) != 0)
		return 13;
	shmp_pool_destroy(p);
	shmp_registry_destroy(reg);
	errno = 0;
	if (!(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD))
		return 14; /* a process of the pool is left */
	return 0;
}

static void test_ctrl_c(int kind)
{
	g_regname = t_segname(kind ? "intr-t" : "intr-p");
	char path[256];
	snprintf(path, sizeof path, "/dev/shm/shmp.%s", g_regname);
	T_EQ(pipe(g_ready), 0);
	pid_t c = t_spawn(ctrl_c_child, &kind);
	close(g_ready[1]);
	/* Until the child is about to map (its pool is up), then a little
	 * more so that the map is waiting. On a loaded machine the child may
	 * still be short of its wait when the signal lands, and a handler that
	 * ran before the wait is not seen: so the signal is repeated every
	 * 300 ms until the child ends, as a user presses Ctrl-C again. */
	char b;
	T_EQ(read(g_ready[0], &b, 1), 1);
	close(g_ready[0]);
	t_sleep_ms(100);
	double t0 = t_now();
	int status = 0;
	pid_t w = 0;
	while ((w = waitpid(c, &status, WNOHANG)) == 0) {
		T_CHECK(t_now() - t0 < 10);
		T_EQ(kill(c, SIGINT), 0);
		for (int i = 0; i < 30 && (w = waitpid(c, &status, WNOHANG)) == 0; i++)
			t_sleep_ms(10);
		if (w)
			break;
	}
	T_EQ(w, c);
	T_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	printf("  Ctrl-C: child done %.0f ms after the signal\n", (t_now() - t0) * 1e3);
	T_CHECK(t_now() - t0 < 2.5);
	/* Nothing left: no orphan came to us (the subreaper), no segment. */
	t_sleep_ms(100);
	T_NO_CHILDREN();
	T_CHECK(access(path, F_OK) != 0);
}

int main(void)
{
	t_watchdog(120);
	setvbuf(stdout, NULL, _IONBF, 0);
	T_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_sigint;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	T_EQ(sigaction(SIGINT, &sa, NULL), 0);
	T_EQ(shmp_set_interruptible(1), 0);
	for (int kind = 0; kind < 2; kind++) {
		printf("%s:\n", kind_name[kind]);
		test_map(kind);
		test_apply(kind);
		test_get_join_next(kind);
		test_off(kind);
		test_ctrl_c(kind);
		T_NO_CHILDREN();
	}
	return 0;
}
