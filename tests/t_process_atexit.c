/* Process children and exit handlers (Python 3.12's rule). This process
 * registers an atexit and an on_exit handler that print; each child sends
 * its stdout into a pipe, and the test reads everything it wrote:
 * - a child that registers atexit handlers and returns from fn: its
 *   handlers run, newest first, output they leave in stdio's buffer (no
 *   newline) is flushed, fn's return value is the exit code, and the
 *   parent's handlers do not run;
 * - the same when the child calls exit(n) itself: exit code n;
 * - an on_exit handler of the child gets the status it exits with;
 * - a child that registers nothing: only its own output (flushed), its
 *   code; still none of the parent's handlers;
 * - a handler registered by the child that calls exit() again is not
 *   required; a child that _exit()s runs nothing, as in C. */
#include "t.h"

#include <fcntl.h>

static int out_fd = -1; /* the child's end of the pipe */

static void parent_atexit(void)
{
	printf("PARENT-ATEXIT\n");
}

static void parent_on_exit(int status, void *arg)
{
	(void)arg;
	printf("PARENT-ON-EXIT %d\n", status);
}

static void h1(void)
{
	printf("h1 tail"); /* no newline: only a flush writes it */
}

static void h2(void)
{
	printf("h2\n");
}

static void h_status(int status, void *arg)
{
	printf("status %d %s\n", status, (const char *)arg);
}

/* Every child first points its stdout at the pipe. */
static void to_pipe(void)
{
	T_CHECK(dup2(out_fd, 1) == 1);
	close(out_fd);
}

static int returns(void *arg)
{
	(void)arg;
	to_pipe();
	atexit(h1);
	atexit(h2);
	printf("body\n");
	return 7;
}

static int calls_exit(void *arg)
{
	(void)arg;
	to_pipe();
	atexit(h1);
	atexit(h2);
	printf("body\n");
	exit(5);
}

static int on_exit_status(void *arg)
{
	(void)arg;
	to_pipe();
	on_exit(h_status, "seen");
	atexit(h2);
	printf("body\n");
	exit(9);
}

static int plain(void *arg)
{
	(void)arg;
	to_pipe();
	printf("plain");
	return 3;
}

static int underscore_exit(void *arg)
{
	(void)arg;
	to_pipe();
	atexit(h2);
	printf("lost");
	_exit(4);
}

/* Run fn in a Process; its exit code must be `code` and all it wrote
 * exactly `want`. */
static void run(const char *name, int (*fn)(void *), int code, const char *want)
{
	int pfd[2];
	T_CHECK(pipe(pfd) == 0);
	out_fd = pfd[1];
	shmp_process_t *p = shmp_process_create(fn, NULL, &SHMP_OPTS(shmp_process_opts, .die_with_parent = 1));
	T_CHECK(p);
	T_EQ(shmp_process_start(p), 0);
	close(pfd[1]);
	char buf[4096];
	size_t n = 0;
	for (;;) {
		ssize_t r = read(pfd[0], buf + n, sizeof buf - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		T_CHECK(r >= 0);
		if (r == 0)
			break;
		n += (size_t)r;
		T_CHECK(n < sizeof buf - 1);
	}
	buf[n] = 0;
	close(pfd[0]);
	T_EQ(shmp_process_join(p, 10), 0);
	int got = -1;
	T_EQ(shmp_process_exitcode(p, &got), 1);
	shmp_process_destroy(p);
	printf("%-16s exit %d, wrote \"%s\"\n", name, got, buf);
	fflush(stdout);
	if (strcmp(buf, want) != 0) {
		fprintf(stderr, "%s: the child wrote \"%s\", expected \"%s\"\n", name, buf, want);
		exit(1);
	}
	T_EQ(got, code);
}

int main(void)
{
	t_watchdog(60);
	/* The parent's handlers, registered before any child starts; they
	 * print to whatever stdout is, so in a child they would reach the
	 * pipe. */
	T_EQ(atexit(parent_atexit), 0);
	T_EQ(on_exit(parent_on_exit, NULL), 0);

	run("returns", returns, 7, "body\nh2\nh1 tail");
	run("calls exit(5)", calls_exit, 5, "body\nh2\nh1 tail");
	run("on_exit status", on_exit_status, 9, "body\nh2\nstatus 9 seen\n");
	run("registers none", plain, 3, "plain");
	run("_exit(4)", underscore_exit, 4, "");
	T_NO_CHILDREN();
	/* Our own handlers run at our exit, here: that is fine. */
	return 0;
}
