/* Pool and ThreadPool, shmp_pool_opts.idle_poll (how long an idle worker
 * keeps looking for the next task, yielding, before it sleeps):
 *  - negative, NaN, infinite or above SHMP_POOL_MAX_IDLE_POLL: create fails
 *    with EINVAL; 0 and SHMP_POOL_MAX_IDLE_POLL are taken;
 *  - with idle_poll 0.4 s, the worker goes on running (polling) for a while
 *    after a task: it takes CPU time while the test sleeps; once the 0.4 s
 *    are over it sleeps: almost no CPU time over the next 1.2 s (the
 *    polling is bounded, and not begun again when its sleep times out
 *    after a second); with the default (0) it sleeps after 30 us. A
 *    worker off its CPU for long between two looks (200 us: another thread,
 *    or the hypervisor) stops polling (below), so on a busy machine it may
 *    poll for a fraction of the time only: up to 5 tries, one must show it
 *    running over 1 ms of the 200 (the default's 30 us spin cannot) —
 *    unless in every try it waited for a CPU (then it is left unchecked,
 *    said on stderr);
 *  - it yields, and a busy CPU sends it to sleep: pinned to the test's CPU
 *    beside the test's busy thread, the worker takes under a quarter of
 *    what the busy thread takes (one spinning without yielding would share
 *    the CPU about evenly) and runs a few turns only (one yielding over and
 *    over would get a turn every scheduler slice: dozens in 150 ms);
 *  - tasks still run right with it, the first after a sleep too.
 * CPU times come from /proc/<tid>/schedstat (ns on the CPU), ratios of
 * what the two threads got, so another load on the machine changes the
 * numbers but not the verdicts. Every body runs against shmp_pool_create
 * and shmp_threadpool_create. */
#include "t.h"

#include <math.h>
#include <sched.h>
#include <stdbool.h>
#include <sys/syscall.h>

static int inc(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	(void)c;
	*(int64_t *)res = *(const int64_t *)arg + 1;
	return 0;
}

typedef shmp_pool_t *(*make_fn)(int, const struct shmp_pool_opts *);

/* ns the thread tid has run, from /proc; *turns: how many times it ran;
 * *waited: ns it spent runnable, waiting for a CPU. */
static uint64_t runtime_all(pid_t tid, uint64_t *turns, uint64_t *waited_ns)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/schedstat", (int)tid);
	FILE *f = fopen(path, "re");
	T_CHECK(f);
	unsigned long long ns = 0, waited = 0, n = 0;
	T_CHECK(fscanf(f, "%llu %llu %llu", &ns, &waited, &n) == 3);
	fclose(f);
	if (turns)
		*turns = n;
	if (waited_ns)
		*waited_ns = waited;
	return ns;
}

static uint64_t runtime_turns(pid_t tid, uint64_t *turns)
{
	return runtime_all(tid, turns, NULL);
}

static uint64_t runtime_ns(pid_t tid)
{
	return runtime_turns(tid, NULL);
}

static uint64_t self_ns(void)
{
	return runtime_ns((pid_t)syscall(SYS_gettid));
}

static pid_t worker_tid(shmp_pool_t *p)
{
	struct shmp_worker_info wi;
	T_EQ(shmp_pool_worker_info(p, &wi, 1), 1);
	T_CHECK(wi.pid > 0);
	return wi.pid;
}

static void one_task(shmp_pool_t *p, int64_t a)
{
	int64_t y = 0;
	T_EQ(shmp_pool_apply(p, inc, &a, sizeof a, &y, sizeof y, NULL), 0);
	T_EQ(y, a + 1);
}

static void bad_values(make_fn make)
{
	const double bad[] = { -1e-9, -1.0, NAN, INFINITY, -INFINITY, SHMP_POOL_MAX_IDLE_POLL * 1.0001, 1e9 };
	for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct shmp_pool_opts o = SHMP_OPTS(shmp_pool_opts, .idle_poll = bad[i]);
		errno = 0;
		T_CHECK(make(1, &o) == NULL);
		T_EQ(errno, EINVAL);
	}
	const double good[] = { 0, 1e-9, 300e-6, SHMP_POOL_MAX_IDLE_POLL };
	for (unsigned i = 0; i < sizeof good / sizeof good[0]; i++) {
		struct shmp_pool_opts o = SHMP_OPTS(shmp_pool_opts, .idle_poll = good[i]);
		shmp_pool_t *p = make(1, &o);
		T_CHECK(p);
		one_task(p, (int64_t)i);
		shmp_pool_destroy(p);
	}
}

/* Polls after a task, for a bounded time. */
static void polls_then_sleeps(make_fn make)
{
	struct shmp_pool_opts o = SHMP_OPTS(shmp_pool_opts, .idle_poll = 0.4);
	shmp_pool_t *p = make(1, &o);
	T_CHECK(p);
	pid_t w = worker_tid(p);
	bool checked = false, contended_all = true;
	for (int k = 0; k < 5 && !checked; k++) {
		/* Asleep first (no task for longer than it polls). */
		t_sleep_ms(600);
		uint64_t a0 = runtime_ns(w);
		t_sleep_ms(300);
		uint64_t asleep = runtime_ns(w) - a0;
		one_task(p, 1);
		uint64_t bw0, bw1;
		uint64_t b0 = runtime_all(w, NULL, &bw0);
		t_sleep_ms(200); /* inside the 0.4 s */
		uint64_t polling = runtime_all(w, NULL, &bw1) - b0;
		t_sleep_ms(500); /* past it: asleep again */
		uint64_t c0 = runtime_ns(w);
		t_sleep_ms(1200); /* its futex wait times out in there (1 s): no polling again */
		uint64_t after = runtime_ns(w) - c0;
		fprintf(stderr,
			"idle_poll 0.4 s: worker ran %.2f ms asleep, %.2f ms of 200 polling (waited %.3f ms for a "
			"CPU), %.2f ms of 1200 after\n",
			asleep / 1e6, polling / 1e6, (bw1 - bw0) / 1e6, after / 1e6);
		T_CHECK(asleep < 5000000);
		T_CHECK(after < 5000000);
		if (polling > 1000000)
			checked = true;
		else if (bw1 - bw0 < 40000)
			contended_all = false;
	}
	if (!checked && contended_all)
		fprintf(stderr, "polling not checked: the worker's CPU was busy in every try\n");
	T_CHECK(checked || contended_all);
	one_task(p, 2); /* the first task after a sleep */
	shmp_pool_destroy(p);

	/* The default: the worker sleeps 30 us after its task. */
	p = make(1, NULL);
	T_CHECK(p);
	w = worker_tid(p);
	one_task(p, 3);
	uint64_t d0 = runtime_ns(w);
	t_sleep_ms(200);
	uint64_t dflt = runtime_ns(w) - d0;
	fprintf(stderr, "default: worker ran %.2f ms of 200 after its task\n", dflt / 1e6);
	T_CHECK(dflt < 5000000);
	one_task(p, 4);
	shmp_pool_destroy(p);
}

/* Pinned to one CPU with a busy thread, the polling worker yields it. */
static void yields(make_fn make)
{
	cpu_set_t mine, one;
	T_EQ(sched_getaffinity(0, sizeof mine, &mine), 0);
	int cpu = 0;
	while (cpu < CPU_SETSIZE && !CPU_ISSET(cpu, &mine))
		cpu++;
	T_CHECK(cpu < CPU_SETSIZE);
	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	struct shmp_pool_opts o = SHMP_OPTS(shmp_pool_opts, .idle_poll = 0.5);
	shmp_pool_t *p = make(1, &o);
	T_CHECK(p);
	pid_t w = worker_tid(p);
	T_EQ(sched_setaffinity(w, sizeof one, &one), 0);
	T_EQ(sched_setaffinity(0, sizeof one, &one), 0);
	one_task(p, 5);
	uint64_t n0, n1;
	uint64_t w0 = runtime_turns(w, &n0), m0 = self_ns();
	double end = t_now() + 0.15; /* inside the 0.5 s */
	volatile uint64_t x = 1;
	while (t_now() < end)
		for (int i = 0; i < 1000; i++)
			x = x * 6364136223846793005ull + 1;
	uint64_t wd = runtime_turns(w, &n1) - w0, md = self_ns() - m0;
	T_EQ(sched_setaffinity(0, sizeof mine, &mine), 0);
	fprintf(stderr, "pinned together for 150 ms: busy thread %.2f ms, polling worker %.2f ms in %llu turns\n",
		md / 1e6, wd / 1e6, (unsigned long long)(n1 - n0));
	T_CHECK(md > 0);
	T_CHECK(wd * 4 < md);
	T_CHECK(n1 - n0 < 20);
	one_task(p, 6);
	shmp_pool_destroy(p);
}

int main(void)
{
	t_watchdog(150);
	make_fn makes[2] = { shmp_pool_create, shmp_threadpool_create };
	for (int k = 0; k < 2; k++) {
		fprintf(stderr, "-- %s\n", k ? "ThreadPool" : "Pool");
		bad_values(makes[k]);
		polls_then_sleeps(makes[k]);
		yields(makes[k]);
	}
	return 0;
}
