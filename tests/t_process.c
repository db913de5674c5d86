/* Process: exitcode is "not yet" (0) before start and while running, then 1
 * with the code: 0 after a normal return, fn's return value, exit(n)'s n,
 * -SIGTERM after terminate(), -SIGKILL after kill(), -SIGSEGV for a crash;
 * is_alive and pid before/while/after; the child sees the parent's memory as
 * of start(); start twice is -EALREADY; join before start is -EINVAL; join(0)
 * on a running child is -ETIMEDOUT at once, join(0.2) after about 0.2 s; join
 * after join is 0; stdio buffered before start is written once. */
#include "t.h"

#include <fcntl.h>
#include <poll.h>

static pid_t g_parent;

/* Children that wait run until `release` is set or the test process is gone
 * (so a failing test never leaves one behind). */
struct waiter {
	shmp_event_t *release;
	shmp_value_t *self_pid;
	int code;
};

static int child_wait(void *arg)
{
	struct waiter *w = arg;
	if (w->self_pid)
		shmp_value_store(w->self_pid, getpid());
	while (shmp_event_wait(w->release, 0.05) == -ETIMEDOUT)
		if (getppid() != g_parent)
			return 99;
	return w->code;
}

/* Sleeps until killed (or the test process is gone). */
static int child_sleep(void *arg)
{
	shmp_value_t *started = arg;
	shmp_value_store(started, 1);
	return t_until_orphaned(g_parent);
}

static int child_ret(void *arg)
{
	return (int)(intptr_t)arg;
}

static int child_exit(void *arg)
{
	exit((int)(intptr_t)arg);
}

static int child_segv(void *arg)
{
	(void)arg;
	/* Default action, whatever a sanitizer runtime installed. */
	signal(SIGSEGV, SIG_DFL);
	raise(SIGSEGV);
	return 0;
}

static int g_seen_by_child;

static int child_memory(void *arg)
{
	(void)arg;
	return g_seen_by_child;
}

static shmp_process_t *mk(shmp_process_fn fn, void *arg)
{
	shmp_process_t *p = shmp_process_create(fn, arg, NULL);
	T_CHECK(p);
	return p;
}

/* Start, join with a generous timeout, return the exit code. */
static int run(shmp_process_fn fn, void *arg)
{
	shmp_process_t *p = mk(fn, arg);
	T_EQ(shmp_process_start(p), 0);
	int r = shmp_process_join(p, 10);
	if (r != 0)
		shmp_process_kill(p);
	T_EQ(r, 0);
	int code = 12345;
	T_EQ(shmp_process_exitcode(p, &code), 1);
	T_EQ(shmp_process_is_alive(p), 0);
	shmp_process_destroy(p);
	return code;
}

static void wait_flag(shmp_value_t *v)
{
	int64_t x = 0;
	double until = t_now() + 10;
	while (shmp_value_load(v, &x) == 0 && !x) {
		T_CHECK(t_now() < until);
		t_sleep_ms(1);
	}
}

static void test_lifecycle(void)
{
	struct waiter w = { shmp_event_create(NULL), shmp_value_create('i', NULL, NULL), 0 };
	T_CHECK(w.release && w.self_pid);
	shmp_process_t *p = mk(child_wait, &w);

	/* Before start. */
	int code = 12345;
	T_EQ(shmp_process_exitcode(p, &code), 0);
	T_EQ(code, 12345);
	T_EQ(shmp_process_is_alive(p), 0);
	T_EQ(shmp_process_pid(p), 0);
	T_EQ(shmp_process_join(p, 0), -EINVAL);
	T_EQ(shmp_process_join(p, 0.1), -EINVAL);
	T_EQ(shmp_process_pidfd(p), -EINVAL);

	/* Running. */
	T_EQ(shmp_process_start(p), 0);
	pid_t pid = shmp_process_pid(p);
	T_CHECK(pid > 0);
	wait_flag(w.self_pid);
	int64_t cpid = 0;
	T_EQ(shmp_value_load(w.self_pid, &cpid), 0);
	T_EQ(cpid, pid);
	T_EQ(shmp_process_is_alive(p), 1);
	T_EQ(shmp_process_exitcode(p, &code), 0);
	T_EQ(code, 12345);
	T_EQ(shmp_process_start(p), -EALREADY);

	double t0 = t_now();
	T_EQ(shmp_process_join(p, 0), -ETIMEDOUT);
	double dt = t_now() - t0;
	T_CHECK(dt < 0.05);

	t0 = t_now();
	T_EQ(shmp_process_join(p, 0.2), -ETIMEDOUT);
	dt = t_now() - t0;
	if (dt < 0.19 || dt > 2.0) {
		fprintf(stderr, "join(0.2) took %.3f s\n", dt);
		T_CHECK(!"join(0.2) timing");
	}
	T_EQ(shmp_process_is_alive(p), 1);

	/* Ends. */
	T_EQ(shmp_event_set(w.release), 0);
	T_EQ(shmp_process_join(p, 10), 0);
	T_EQ(shmp_process_is_alive(p), 0);
	T_EQ(shmp_process_exitcode(p, &code), 1);
	T_EQ(code, 0);
	/* Join again, at once or with a timeout: fine. */
	T_EQ(shmp_process_join(p, SHMP_FOREVER), 0);
	T_EQ(shmp_process_join(p, 0), 0);
	T_EQ(shmp_process_pid(p), pid);
	T_EQ(shmp_process_start(p), -EALREADY);
	/* Signals to an ended child: 0, no effect. */
	T_EQ(shmp_process_terminate(p), 0);
	T_EQ(shmp_process_kill(p), 0);
	T_EQ(shmp_process_exitcode(p, &code), 1);
	T_EQ(code, 0);
	shmp_process_destroy(p);
	shmp_event_destroy(w.release);
	shmp_value_destroy(w.self_pid);
}

static void test_codes(void)
{
	T_EQ(run(child_ret, (void *)(intptr_t)0), 0);
	T_EQ(run(child_ret, (void *)(intptr_t)7), 7);
	T_EQ(run(child_ret, (void *)(intptr_t)255), 255);
	T_EQ(run(child_exit, (void *)(intptr_t)3), 3);
	T_EQ(run(child_segv, NULL), -SIGSEGV);

	/* The child has the parent's memory as of start(), not create(). */
	g_seen_by_child = 1;
	shmp_process_t *p = mk(child_memory, NULL);
	g_seen_by_child = 42;
	T_EQ(shmp_process_start(p), 0);
	g_seen_by_child = 2;
	T_EQ(shmp_process_join(p, 10), 0);
	int code = 0;
	T_EQ(shmp_process_exitcode(p, &code), 1);
	T_EQ(code, 42);
	shmp_process_destroy(p);

	/* terminate() and kill() of a sleeping child. */
	int sigs[2] = { SIGTERM, SIGKILL };
	for (int k = 0; k < 2; k++) {
		shmp_value_t *started = shmp_value_create('i', NULL, NULL);
		T_CHECK(started);
		p = mk(child_sleep, started);
		T_EQ(shmp_process_start(p), 0);
		wait_flag(started);
		T_EQ(shmp_process_is_alive(p), 1);
		T_EQ(k ? shmp_process_kill(p) : shmp_process_terminate(p), 0);
		int r = shmp_process_join(p, 10);
		if (r != 0)
			kill(shmp_process_pid(p), SIGKILL);
		T_EQ(r, 0);
		T_EQ(shmp_process_is_alive(p), 0);
		T_EQ(shmp_process_exitcode(p, &code), 1);
		T_EQ(code, -sigs[k]);
		shmp_process_destroy(p);
		shmp_value_destroy(started);
	}
}

static void test_bad_args(void)
{
	errno = 0;
	T_CHECK(shmp_process_create(NULL, NULL, NULL) == NULL);
	T_EQ(errno, EINVAL);
	struct shmp_process_opts o0;
	memset(&o0, 0, sizeof o0);
	errno = 0;
	T_CHECK(shmp_process_create(child_ret, NULL, &o0) == NULL);
	T_EQ(errno, EINVAL);
	shmp_process_t *p = mk(child_ret, NULL);
	T_EQ(shmp_process_exitcode(p, NULL), -EINVAL);
	shmp_process_destroy(p);
	shmp_process_destroy(NULL);
	T_EQ(shmp_process_start(NULL), -EINVAL);
	T_EQ(shmp_process_join(NULL, 0), -EINVAL);
	T_EQ(shmp_process_pid(NULL), 0);
	T_EQ(shmp_process_pidfd(NULL), -EINVAL);
}

/* ---- stdio -------------------------------------------------------------- */

static int child_print(void *arg)
{
	(void)arg;
	fputs("child;", stdout);
	return 0; /* the library flushes stdio on the child's way out */
}

/* Text the parent buffered before start() must not also come out of the
 * child's copy of the buffer. stdout goes to a pipe for the check. */
static void test_stdio(void)
{
	int fds[2];
	T_CHECK(pipe(fds) == 0);
	fflush(stdout);
	int saved = dup(STDOUT_FILENO);
	T_CHECK(saved >= 0);
	T_CHECK(dup2(fds[1], STDOUT_FILENO) == STDOUT_FILENO);
	close(fds[1]);
	char *vbuf = malloc(4096);
	T_CHECK(vbuf);
	T_CHECK(setvbuf(stdout, vbuf, _IOFBF, 4096) == 0);

	fputs("parent;", stdout); /* buffered, not written yet */
	shmp_process_t *p = mk(child_print, NULL);
	int r = shmp_process_start(p);
	int j = r == 0 ? shmp_process_join(p, 10) : -1;
	if (j != 0)
		shmp_process_kill(p);
	fputs("after;", stdout);
	fflush(stdout);
	T_CHECK(dup2(saved, STDOUT_FILENO) == STDOUT_FILENO);
	close(saved);
	setvbuf(stdout, NULL, _IOLBF, 0);
	T_EQ(r, 0);
	T_EQ(j, 0);
	int code = -1;
	T_EQ(shmp_process_exitcode(p, &code), 1);
	T_EQ(code, 0);
	shmp_process_destroy(p);

	char got[256];
	size_t n = 0;
	T_CHECK(fcntl(fds[0], F_SETFL, O_NONBLOCK) == 0);
	for (;;) {
		ssize_t k = read(fds[0], got + n, sizeof got - 1 - n);
		if (k <= 0)
			break;
		n += (size_t)k;
	}
	got[n] = 0;
	close(fds[0]);
	free(vbuf);
	if (strcmp(got, "parent;child;after;") != 0) {
		fprintf(stderr, "stdout was \"%s\"\n", got);
		T_CHECK(!"buffered stdio written twice or lost");
	}
}

int main(void)
{
	t_watchdog(60);
	signal(SIGTERM, SIG_DFL);
	g_parent = getpid();
	test_bad_args();
	test_lifecycle();
	test_codes();
	test_stdio();
	/* Every child was reaped. */
	T_NO_CHILDREN();
	return 0;
}
