/* util.c — the tour's shared helpers: whole-line output, scaled sleeps,
 * checks, pool set-up and tear-down, progress while waiting. */
#include "tour.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>

#include "../progress.h"

unsigned tour_checks, tour_failures;

static void put_line(const char *indent, const char *fmt, va_list ap)
{
	char line[1024];
	size_t n = (size_t)snprintf(line, sizeof line, "%s", indent);
	int k = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
	if (k < 0)
		return;
	n += (size_t)k < sizeof line - n - 1 ? (size_t)k : sizeof line - n - 2;
	line[n++] = '\n';
	/* One write: a line of another process can only come before or after. */
	const char *s = line;
	while (n) {
		ssize_t w = write(STDOUT_FILENO, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

void say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	put_line("  ", fmt, ap);
	va_end(ap);
}

void say_raw(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	put_line("", fmt, ap);
	va_end(ap);
}

void nap_ms(long ms)
{
	struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&t, &t) != 0 && errno == EINTR)
		;
}

void nap(double tutorial_seconds)
{
	nap_ms((long)(tutorial_seconds * TOUR_SECOND_MS + 0.5));
}

double tour_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

pid_t tour_tid(void)
{
	return (pid_t)syscall(SYS_gettid);
}

double tour_uniform(uint64_t seed, double lo, double hi)
{
	/* splitmix64: good enough to look random, fixed for a given seed. */
	uint64_t z = seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z ^= z >> 31;
	return lo + (hi - lo) * (double)(z >> 11) / 9007199254740992.0;
}

const char *rcname(int rc)
{
	switch (rc) {
	case 0: return "0";
	case -ETIMEDOUT: return "-ETIMEDOUT";
	case -EDEADLK: return "-EDEADLK";
	case -EINVAL: return "-EINVAL";
	case -SHMP_ECLOSED: return "-SHMP_ECLOSED";
	case -SHMP_ETASK: return "-SHMP_ETASK";
	case -SHMP_EWORKERDIED: return "-SHMP_EWORKERDIED";
	default: return shmp_strerror(rc);
	}
}

const char *pyfloat(double x, char *buf, size_t size)
{
	/* Python's repr: the fewest digits that read back as the same double,
	 * and a ".0" on whole numbers. */
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, size, "%.*g", prec, x);
		if (strtod(buf, NULL) == x)
			break;
	}
	if (!strpbrk(buf, ".einf"))
		snprintf(buf + strlen(buf), size - strlen(buf), ".0");
	return buf;
}

const char *worker_name(const struct shmp_task_ctx *c)
{
	/* Per thread: a ThreadPool's workers name themselves at once. */
	static _Thread_local char buf[32];
	snprintf(buf, sizeof buf, "ForkPoolWorker-%u", c->worker + 1);
	return buf;
}

int tour_check(int ok, const char *what, const char *file, int line)
{
	tour_checks++;
	if (!ok) {
		tour_failures++;
		say("!! CHECK FAILED at %s:%d: %s", file, line, what);
	}
	return ok;
}

int tour_check_eq(long long a, long long b, const char *what, const char *file, int line)
{
	tour_checks++;
	if (a != b) {
		tour_failures++;
		/* Most values compared are return codes: name them too. */
		say("!! CHECK FAILED at %s:%d: %s (%lld vs %lld: %s / %s)", file, line, what, a, b,
		    shmp_strerror((int)a), shmp_strerror((int)b));
	}
	return a == b;
}

static shmp_pool_t *made(shmp_pool_t *p, const char *what, int workers)
{
	if (!CHECK(p != NULL))
		say("!! %s(%d): %s", what, workers, shmp_strerror(errno));
	return p;
}

shmp_pool_t *tour_pool(int workers, const struct shmp_pool_opts *opts)
{
	return made(shmp_pool_create(workers, opts), "shmp_pool_create", workers);
}

shmp_pool_t *tour_threadpool(int workers, const struct shmp_pool_opts *opts)
{
	return made(shmp_threadpool_create(workers, opts), "shmp_threadpool_create", workers);
}

void tour_pool_ready(shmp_pool_t *p)
{
	struct shmp_pool_stats st;
	double until = tour_now() + TOUR_WAIT;
	while (shmp_pool_stats(p, &st) == 0 && st.alive < st.workers && tour_now() < until)
		nap_ms(1);
}

void tour_pool_close_join(shmp_pool_t *p)
{
	CHECK_EQ(shmp_pool_close(p), 0);
	CHECK_EQ(shmp_pool_join(p, TOUR_WAIT), 0);
	shmp_pool_destroy(p);
}

int tour_wait_progress(shmp_pool_t *p, shmp_async_t *a, const char *label, uint64_t total)
{
	struct shmp_pool_stats st;
	if (shmp_pool_stats(p, &st) < 0)
		return shmp_async_wait(a, TOUR_WAIT);
	uint64_t base = st.completed;
	/* A call done within 0.1 s needs no progress line. */
	if (shmp_async_wait(a, 0.1) == 0)
		return 0;
	struct progress pr;
	progress_begin(&pr, label, total);
	double until = tour_now() + TOUR_WAIT;
	int rc;
	while ((rc = shmp_async_wait(a, 0.02)) == -ETIMEDOUT && tour_now() < until) {
		if (shmp_pool_stats(p, &st) == 0)
			progress_update(&pr, st.completed - base);
	}
	if (shmp_pool_stats(p, &st) == 0)
		progress_update(&pr, st.completed - base);
	progress_end(&pr);
	return rc;
}
