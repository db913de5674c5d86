/* Reaping of children whose handle is gone:
 * - non-daemon destroyed while running: the child is NOT killed; once it ends
 *   (a zombie), the next shmp_process call reaps it;
 * - same, in a process that then calls exit(): the at-exit hook reaps it;
 * - daemon destroyed while running: killed and reaped before destroy returns;
 * - die_with_parent: a grandchild started with it gets SIGKILL when its parent
 *   is SIGKILLed; without it, the grandchild survives (control).
 * No child or zombie is left at the end. This process is a child subreaper,
 * so orphaned grandchildren come back to it and can be checked and reaped. */
#include "t.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>

static pid_t g_top, g_mid; /* g_mid: set in a middle process */

/* State letter from /proc/<pid>/stat, or 0 if there is no such process. */
static char proc_state(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	char *rp = strrchr(buf, ')');
	return rp && rp[1] == ' ' ? rp[2] : '?';
}

/* Wait until pid's state is `want` (0: gone). */
static int wait_state(pid_t pid, char want, double timeout)
{
	double until = t_now() + timeout;
	for (;;) {
		if (proc_state(pid) == want)
			return 1;
		if (t_now() > until)
			return 0;
		t_sleep_ms(2);
	}
}

/* Runs until the event is set, or its parent and the top process are gone. */
static int child_until_event(void *arg)
{
	shmp_event_t *ev = arg;
	while (shmp_event_wait(ev, 0.05) == -ETIMEDOUT) {
		pid_t pp = getppid();
		if (pp != g_top && pp != g_mid)
			return 99;
	}
	return 0;
}

static int child_forever(void *arg)
{
	shmp_value_t *started = arg;
	shmp_value_store(started, 1);
	return t_until_orphaned(g_top);
}

static int child_ret0(void *arg)
{
	(void)arg;
	return 0;
}

/* Kill and reap a pid that is our child, ignoring errors (cleanup). */
static void kill_reap(pid_t pid)
{
	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
}

/* Which call reaps: 0 create, 1 is_alive, 2 exitcode, 3 join (of another,
 * already started handle). */
static void test_orphan_reaped_by_next_call(int how)
{
	shmp_process_t *other = NULL;
	if (how) {
		T_CHECK((other = shmp_process_create(child_ret0, NULL, NULL)));
		T_EQ(shmp_process_start(other), 0);
	}
	shmp_event_t *ev = shmp_event_create(NULL);
	T_CHECK(ev);
	shmp_process_t *p = shmp_process_create(child_until_event, ev, NULL);
	T_CHECK(p);
	T_EQ(shmp_process_start(p), 0);
	pid_t pid = shmp_process_pid(p);
	T_CHECK(pid > 0);
	shmp_process_destroy(p);

	/* Not a daemon: destroying the handle leaves the child running. */
	char st = proc_state(pid);
	if (st == 0 || st == 'Z') {
		fprintf(stderr, "child state after destroy: %c\n", st ? st : '0');
		T_CHECK(!"non-daemon child was killed by destroy");
	}
	T_EQ(shmp_event_set(ev), 0);
	/* It ends and, with nobody calling shmp_process, stays a zombie. */
	if (!wait_state(pid, 'Z', 10)) {
		kill_reap(pid);
		T_CHECK(!"child did not become a zombie");
	}
	t_sleep_ms(20);
	T_EQ(proc_state(pid), 'Z');

	/* The next shmp_process call reaps it. */
	shmp_process_t *q = NULL;
	int code;
	switch (how) {
	case 0: T_CHECK((q = shmp_process_create(child_ret0, NULL, NULL))); break;
	case 1: T_CHECK(shmp_process_is_alive(other) >= 0); break;
	case 2: T_CHECK(shmp_process_exitcode(other, &code) >= 0); break;
	case 3: T_EQ(shmp_process_join(other, 10), 0); break;
	}
	T_EQ(proc_state(pid), 0);
	errno = 0;
	T_EQ(waitpid(pid, NULL, WNOHANG), -1);
	T_EQ(errno, ECHILD);
	shmp_process_destroy(q);
	if (other) {
		T_EQ(shmp_process_join(other, 10), 0);
		shmp_process_destroy(other);
	}
	shmp_event_destroy(ev);
}

struct mid_arg {
	int wfd;             /* pipe to the top process: the grandchild's pid */
	int die_with_parent; /* for test_die_with_parent */
	shmp_event_t *ev;    /* for test_orphan_reaped_at_exit */
	shmp_value_t *gc_running; /* the grandchild stores its pid: fn runs */
};

static int write_pid(int fd, pid_t pid)
{
	return write(fd, &pid, sizeof pid) == (ssize_t)sizeof pid ? 0 : -1;
}

/* Read a pid from the pipe, waiting at most 10 s. */
static pid_t read_pid(int fd)
{
	struct pollfd pf = { .fd = fd, .events = POLLIN };
	if (poll(&pf, 1, 10000) != 1)
		return -1;
	pid_t pid = -1;
	if (read(fd, &pid, sizeof pid) != (ssize_t)sizeof pid)
		return -1;
	return pid;
}

/* Middle process: start a grandchild, let it end while the handle is gone,
 * then exit() (not _exit): the at-exit hook must reap it. */
static int mid_exit(void *arg)
{
	struct mid_arg *m = arg;
	g_mid = getpid();
	shmp_process_t *p = shmp_process_create(child_until_event, m->ev, NULL);
	if (!p || shmp_process_start(p) != 0)
		return 1;
	pid_t gc = shmp_process_pid(p);
	shmp_process_destroy(p);
	if (write_pid(m->wfd, gc) < 0)
		return 2;
	shmp_event_set(m->ev);
	if (!wait_state(gc, 'Z', 10))
		return 3;
	exit(0);
}

static void test_orphan_reaped_at_exit(void)
{
	int fds[2];
	T_CHECK(pipe(fds) == 0);
	struct mid_arg m = { fds[1], 0, shmp_event_create(NULL), NULL };
	T_CHECK(m.ev);
	/* Make the child-reset hooks exist in this process first, as they
	 * would in a real program that used Process before forking. */
	shmp_process_destroy(shmp_process_create(child_ret0, NULL, NULL));
	pid_t mid = t_fork(mid_exit, &m);
	close(fds[1]);
	pid_t gc = read_pid(fds[0]);
	close(fds[0]);
	int status = t_wait(mid, 15);
	if (gc <= 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		if (gc > 0 && waitpid(gc, NULL, WNOHANG) == 0)
			kill_reap(gc);
		fprintf(stderr, "middle process: gc %d, status %#x\n", (int)gc, status);
		T_CHECK(!"middle process failed");
	}
	/* Had exit() not reaped it, the zombie would now be ours (subreaper). */
	errno = 0;
	pid_t r = waitpid(gc, NULL, WNOHANG);
	if (r == gc)
		T_CHECK(!"zombie not reaped by the exiting process");
	T_EQ(r, -1);
	T_EQ(errno, ECHILD);
	T_EQ(proc_state(gc), 0);
	shmp_event_destroy(m.ev);
}

static void test_daemon_destroy(void)
{
	shmp_value_t *started = shmp_value_create('i', NULL, NULL);
	T_CHECK(started);
	struct shmp_process_opts o = SHMP_OPTS(shmp_process_opts, .daemon = 1);
	shmp_process_t *p = shmp_process_create(child_forever, started, &o);
	T_CHECK(p);
	T_EQ(shmp_process_start(p), 0);
	pid_t pid = shmp_process_pid(p);
	int64_t x = 0;
	double until = t_now() + 10;
	while (shmp_value_load(started, &x) == 0 && !x) {
		if (t_now() > until) {
			kill_reap(pid);
			T_CHECK(!"daemon child never started");
		}
		t_sleep_ms(1);
	}
	char st = proc_state(pid);
	T_CHECK(st != 0 && st != 'Z');
	double t0 = t_now();
	shmp_process_destroy(p);
	T_CHECK(t_now() - t0 < 5);
	/* Killed (it never ends by itself) and reaped, before destroy returned. */
	T_EQ(proc_state(pid), 0);
	errno = 0;
	T_EQ(waitpid(pid, NULL, WNOHANG), -1);
	T_EQ(errno, ECHILD);
	shmp_value_destroy(started);
}

/* Grandchild: runs until killed. Stays while its parent (middle) or, after
 * reparenting, the top process is its parent, so only die_with_parent can
 * end it quickly; exits if the top process is gone too. */
static int gc_loop(void *arg)
{
	shmp_value_store(arg, getpid());
	for (;;) {
		pid_t pp = getppid();
		if (pp != g_mid && pp != g_top)
			return 99;
		t_sleep_ms(10);
	}
}

static int mid_dwp(void *arg)
{
	struct mid_arg *m = arg;
	g_mid = getpid();
	struct shmp_process_opts o = SHMP_OPTS(shmp_process_opts, .die_with_parent = m->die_with_parent);
	shmp_process_t *p = shmp_process_create(gc_loop, m->gc_running, &o);
	if (!p || shmp_process_start(p) != 0)
		return 1;
	if (write_pid(m->wfd, shmp_process_pid(p)) < 0)
		return 2;
	for (;;) { /* until SIGKILLed, or the top process is gone */
		if (getppid() != g_top) {
			shmp_process_kill(p);
			shmp_process_join(p, 5);
			return 3;
		}
		t_sleep_ms(10);
	}
}

static void test_die_with_parent(int dwp)
{
	int fds[2];
	T_CHECK(pipe(fds) == 0);
	struct mid_arg m = { fds[1], dwp, NULL, shmp_value_create('i', NULL, NULL) };
	T_CHECK(m.gc_running);
	pid_t mid = t_fork(mid_dwp, &m);
	close(fds[1]);
	pid_t gc = read_pid(fds[0]);
	close(fds[0]);
	if (gc <= 0) {
		kill_reap(mid);
		T_CHECK(!"no grandchild pid");
	}
	/* Kill the middle only once the grandchild runs its function: the
	 * death signal is armed by then. (A parent killed before the child
	 * armed it makes the child _exit(1) instead of dying of SIGKILL.) */
	int64_t running = 0;
	double until = t_now() + 10;
	while (shmp_value_load(m.gc_running, &running) == 0 && running != gc) {
		if (t_now() > until) {
			kill_reap(mid);
			T_CHECK(!"grandchild never ran");
		}
		t_sleep_ms(1);
	}
	char st = proc_state(gc);
	T_CHECK(st != 0 && st != 'Z');

	T_EQ(kill(mid, SIGKILL), 0);
	int status = t_wait(mid, 10);
	T_CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

	if (dwp) {
		/* The grandchild is now ours (subreaper): it must die of SIGKILL
		 * soon; t_wait kills it and fails if it does not. */
		status = t_wait(gc, 5);
		if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
			fprintf(stderr, "grandchild status %#x\n", status);
			T_CHECK(!"grandchild did not die of SIGKILL");
		}
	} else {
		/* Control: without die_with_parent it lives on, reparented to us. */
		t_sleep_ms(200);
		T_EQ(waitpid(gc, NULL, WNOHANG), 0);
		st = proc_state(gc);
		T_CHECK(st != 0 && st != 'Z');
		T_EQ(kill(gc, SIGKILL), 0);
		status = t_wait(gc, 10);
		T_CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	}
	T_EQ(proc_state(gc), 0);
	shmp_value_destroy(m.gc_running);
}

int main(void)
{
	t_watchdog(90);
	g_top = getpid();
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
		perror("PR_SET_CHILD_SUBREAPER");
		return T_SKIP;
	}
	for (int how = 0; how < 4; how++)
		test_orphan_reaped_by_next_call(how);
	test_orphan_reaped_at_exit();
	test_daemon_destroy();
	test_die_with_parent(1);
	test_die_with_parent(0);
	/* No child, running or zombie, is left. */
	T_NO_CHILDREN();
	return 0;
}
