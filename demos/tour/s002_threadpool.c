/* Seed 002 (Chinese), the end: terminate() stops the workers without
 * finishing the outstanding work (seed 003 says the same), and ThreadPool
 * beside Pool — "兩種pool的使用方式一模一樣": the same calls, on threads or
 * on processes — timed on I/O-bound and on CPU-bound work. */
#include "tour.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Made before the pool: tasks started and finished. */
static shmp_value_t *g_started, *g_finished;

static int slow(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	long x = *(const long *)arg;
	(void)c;
	say("[%d] Hello %ld", (int)getpid(), x);
	shmp_value_add(g_started, 1, NULL);
	nap(5);
	say("[%d] Bye %ld", (int)getpid(), x);
	shmp_value_add(g_finished, 1, NULL);
	*(long *)res = x;
	return 0;
}

static int64_t load(shmp_value_t *v)
{
	int64_t x = -1;
	shmp_value_load(v, &x);
	return x;
}

int sec_terminate(void)
{
	enum { N = 6 };
	g_started = shmp_value_create('q', NULL, NULL);
	g_finished = shmp_value_create('q', NULL, NULL);
	shmp_pool_t *p = NULL;
	if (!CHECK(g_started && g_finished) || !(p = tour_pool(2, NULL))) {
		shmp_value_destroy(g_started);
		shmp_value_destroy(g_finished);
		return -1;
	}
	long in[N], out[N];
	for (int i = 0; i < N; i++)
		in[i] = i;
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = 1);
	shmp_async_t *h = shmp_pool_map_async(p, slow, in, sizeof in[0], N, out, sizeof out[0], &o);
	CHECK(h != NULL);
	/* Both workers busy, each task 5 (250 ms) long: now stop them. */
	double until = tour_now() + TOUR_WAIT;
	while (load(g_started) < 2 && tour_now() < until)
		nap_ms(1);
	say("pool.terminate()  (%lld of %d tasks started, %lld finished)", (long long)load(g_started),
	    N, (long long)load(g_finished));
	double t = tour_now();
	CHECK_EQ(shmp_pool_terminate(p), 0);
	CHECK_EQ(shmp_pool_join(p, TOUR_WAIT), 0);
	t = tour_now() - t;
	say("pool.join() returned after %.1f ms; %lld of %d tasks finished", t * 1000,
	    (long long)load(g_finished), N);
	/* The outstanding work was dropped, not completed. */
	CHECK(load(g_finished) < N);
	CHECK(load(g_started) < N);
	if (h) {
		int rc = shmp_async_get(h, TOUR_WAIT, NULL);
		say("map_async(...).get() -> %s", rcname(rc));
		CHECK_EQ(rc, -SHMP_ECLOSED);
	}
	struct shmp_pool_stats st;
	CHECK_EQ(shmp_pool_stats(p, &st), 0);
	CHECK_EQ(st.alive, 0);
	CHECK_EQ(st.state, SHMP_POOL_TERMINATED);
	shmp_async_destroy(h);
	shmp_pool_destroy(p);
	shmp_value_destroy(g_started);
	shmp_value_destroy(g_finished);
	return 0;
}

/* ---- ThreadPool vs Pool ---- */

struct job {
	long i;
	long rounds; /* CPU-bound: rounds of arithmetic; 0: I/O-bound */
	int quiet;
};

struct job_res {
	uint64_t value;
	pid_t pid, tid;
};

/* Pure arithmetic, nothing to wait for: the CPU-bound kind. */
static uint64_t crunch(uint64_t x, long rounds)
{
	for (long r = 0; r < rounds; r++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		x *= 0x2545f4914f6cdd1dull;
	}
	return x;
}

static int job(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	const struct job *j = arg;
	struct job_res *r = res;
	(void)c;
	if (j->rounds) {
		r->value = crunch((uint64_t)j->i + 1, j->rounds);
	} else {
		/* "I/O": waiting on something else, as a download does. */
		if (!j->quiet)
			say("pid %d tid %d: fetch %ld", (int)getpid(), (int)tour_tid(), j->i);
		nap(1);
		r->value = (uint64_t)j->i * 7;
	}
	r->pid = getpid();
	r->tid = tour_tid();
	return 0;
}

enum { NJOBS = 8 };

/* Run the jobs in a fresh pool; seconds to create it and to run them. */
static void run_pool(int threads, int workers, const struct job *jobs, const uint64_t *want,
		     double *t_create, double *t_run)
{
	struct job_res r[NJOBS];
	memset(r, 0, sizeof r);
	double t = tour_now();
	shmp_pool_t *p = threads ? tour_threadpool(workers, NULL) : tour_pool(workers, NULL);
	*t_create = tour_now() - t;
	*t_run = 0;
	if (!p)
		return;
	/* One job per task: the CPU-bound jobs are few and long. */
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = 1);
	t = tour_now();
	shmp_async_t *h = shmp_pool_map_async(p, job, jobs, sizeof jobs[0], NJOBS, r, sizeof r[0], &o);
	if (CHECK(h != NULL)) {
		/* A progress line only over silent jobs: on a terminal, the
		 * I/O jobs' own lines would be written into it. */
		char label[48];
		snprintf(label, sizeof label, "%s(%d)", threads ? "ThreadPool" : "Pool", workers);
		if (jobs[0].rounds)
			CHECK_EQ(tour_wait_progress(p, h, label, NJOBS), 0);
		CHECK_EQ(shmp_async_get(h, TOUR_WAIT, NULL), 0);
		shmp_async_destroy(h);
	}
	*t_run = tour_now() - t;
	/* The same results as the loop, computed where they should be: in this
	 * process on other threads, or in other processes. */
	int same = 1, where = 1;
	for (int i = 0; i < NJOBS; i++) {
		same &= r[i].value == want[i];
		if (threads)
			where &= r[i].pid == getpid() && r[i].tid != tour_tid();
		else
			where &= r[i].pid > 0 && r[i].pid != getpid();
	}
	CHECK(same);
	CHECK(where);
	tour_pool_close_join(p);
}

int sec_threadpool(void)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int workers = ncpu < 2 ? 2 : ncpu > 4 ? 4 : (int)ncpu;
	struct job io[NJOBS], cpu[NJOBS];
	uint64_t want_io[NJOBS], want_cpu[NJOBS];

	/* Rounds for about 20 ms of CPU per job on this machine: the best of
	 * three short runs, as the host may be busy. */
	double t = 1e9;
	for (int k = 0; k < 3; k++) {
		double t1 = tour_now();
		volatile uint64_t sink = crunch((uint64_t)k, 1000000);
		(void)sink;
		t1 = tour_now() - t1;
		if (t1 < t)
			t = t1;
	}
	long rounds = t > 0 ? (long)(0.020 / t * 1000000) : 20000000;
	if (rounds < 100000)
		rounds = 100000;

	double seq_io, seq_cpu;
	t = tour_now();
	for (int i = 0; i < NJOBS; i++) {
		io[i] = (struct job){ .i = i, .quiet = 1 };
		struct job_res r;
		job(&io[i], &r, NULL);
		want_io[i] = r.value;
		io[i].quiet = 0;
	}
	seq_io = tour_now() - t;
	t = tour_now();
	for (int i = 0; i < NJOBS; i++) {
		cpu[i] = (struct job){ .i = i, .rounds = rounds };
		struct job_res r;
		job(&cpu[i], &r, NULL);
		want_cpu[i] = r.value;
	}
	seq_cpu = tour_now() - t;

	say("main: pid %d tid %d", (int)getpid(), (int)tour_tid());
	say("-- I/O-bound, ThreadPool(%d): the same pid, other threads", workers);
	double tc_tio, t_tio, tc_pio, t_pio, tc_tcpu, t_tcpu, tc_pcpu, t_pcpu;
	run_pool(1, workers, io, want_io, &tc_tio, &t_tio);
	say("-- I/O-bound, Pool(%d): other processes", workers);
	run_pool(0, workers, io, want_io, &tc_pio, &t_pio);
	say("-- CPU-bound: %d jobs of arithmetic (about 20 ms each on an idle core):", NJOBS);
	run_pool(1, workers, cpu, want_cpu, &tc_tcpu, &t_tcpu);
	run_pool(0, workers, cpu, want_cpu, &tc_pcpu, &t_pcpu);

	char tp[24], pp[24], ctp[24], cpp[24];
	snprintf(tp, sizeof tp, "ThreadPool(%d)", workers);
	snprintf(pp, sizeof pp, "Pool(%d)", workers);
	snprintf(ctp, sizeof ctp, "%.2f ms", tc_tio * 1000);
	snprintf(cpp, sizeof cpp, "%.2f ms", tc_pio * 1000);
	say("%-16s %10s %24s %20s", "", "create", "I/O-bound (8 x sleep 1)", "CPU-bound (8 jobs)");
	say("%-16s %10s %21.0f ms %17.0f ms", "sequential loop", "-", seq_io * 1000, seq_cpu * 1000);
	say("%-16s %10s %21.0f ms %17.0f ms", tp, ctp, t_tio * 1000, t_tcpu * 1000);
	say("%-16s %10s %21.0f ms %17.0f ms", pp, cpp, t_pio * 1000, t_pcpu * 1000);
	/*
	 * Python's advice (I/O-bound -> ThreadPool, CPU-bound -> Pool) comes
	 * from the GIL, which lets one thread at a time run Python code. C has
	 * no GIL: both run CPU-bound work in parallel. Choose threads for a
	 * cheap start and a shared heap, processes for isolation (a crashing
	 * task takes one worker with it, not the program).
	 */
	say("C has no GIL: both pools run CPU-bound work on %d cores at once; a ThreadPool", workers);
	say("starts cheaper and shares the heap, a Pool isolates (a crash kills one worker).");
	return 0;
}
