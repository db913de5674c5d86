/* Test helpers: assertions that exit 1 with a location, a watchdog, unique
 * segment names, fork/wait with timeouts. Header-only, one test per program. */
#ifndef SHMP_T_H
#define SHMP_T_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

#include "shmp.h"

#define T_SKIP 77

#define T_CHECK(cond)                                                              \
	do {                                                                       \
		if (!(cond)) {                                                     \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			exit(1);                                                   \
		}                                                                  \
	} while (0)

/* Compare two integers, printing both (and error names) on failure. */
#define T_EQ(a, b)                                                                 \
	do {                                                                       \
		long long t_a_ = (long long)(a), t_b_ = (long long)(b);            \
		if (t_a_ != t_b_) {                                                \
			fprintf(stderr, "%s:%d: %s == %s failed: %lld vs %lld (%s / %s)\n", \
				__FILE__, __LINE__, #a, #b, t_a_, t_b_,            \
				shmp_strerror((int)t_a_), shmp_strerror((int)t_b_)); \
			exit(1);                                                   \
		}                                                                  \
	} while (0)

static inline double t_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static inline void t_sleep_ms(long ms)
{
	struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&t, &t) != 0 && errno == EINTR)
		;
}

/* Watchdog: the test dies (and fails) if it runs longer than `seconds`. */
static inline void t_watchdog(unsigned seconds)
{
	signal(SIGALRM, SIG_DFL);
	alarm(seconds);
}

/* A segment name unique to this test and process: "t<test>-<pid>-<tag>".
 * CTest's zz_no_leftover_segments fails if any "shmp.t*" is left. */
static inline const char *t_segname(const char *tag)
{
	static char buf[8][128];
	static int k;
	const char *prefix = getenv("SHMP_TEST_PREFIX");
	char *b = buf[k++ & 7];
	snprintf(b, 128, "%s-%d-%s", prefix && *prefix ? prefix : "tmanual", (int)getpid(), tag);
	return b;
}

/* Fork a child that runs fn(arg) and _exits with its return value. */
static inline pid_t t_fork(int (*fn)(void *), void *arg)
{
	fflush(NULL);
	pid_t p = fork();
	T_CHECK(p >= 0);
	if (p == 0)
		_exit(fn(arg));
	return p;
}

/* Wait for a child for at most `timeout` seconds; SIGKILL it if it overruns
 * and fail. Returns the raw wait status. */
static inline int t_wait(pid_t pid, double timeout)
{
	double until = t_now() + timeout;
	int st;
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return st;
		T_CHECK(r == 0);
		if (t_now() > until) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			fprintf(stderr, "child %d did not finish in %.1f s\n", (int)pid, timeout);
			exit(1);
		}
		t_sleep_ms(1);
	}
}

/* Wait and require a normal exit with status 0. */
static inline void t_wait_ok(pid_t pid, double timeout)
{
	int st = t_wait(pid, timeout);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "child %d ended badly: %s %d\n", (int)pid,
			WIFEXITED(st) ? "exit" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
		exit(1);
	}
}

#endif
