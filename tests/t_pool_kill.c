/* The kill loop (include/shmp/pool.h, "Failure semantics": a worker that
 * dies fails its task with -SHMP_EWORKERDIED, is replaced, every other task
 * completes, nothing is delivered twice, no call hangs). Process Pool only.
 *
 * 200 trials. In each, a process Pool of 2 or 3 workers runs 10,000 trivial
 * items in chunks of 10 (1,000 tasks), through imap_unordered or map_async,
 * while a thread of the test SIGKILLs a random worker (pid from
 * shmp_pool_worker_info) at a random moment, from the start of the call to
 * a little after its usual end; three times in four it then waits for a
 * worker that is in a task (so most kills land mid-task, some on idle
 * workers). Checks:
 * - the call returns (bounded waits, and a watchdog);
 * - imap_unordered: every index is delivered at most once; every chunk is
 *   either reported failed with -SHMP_EWORKERDIED (error index = the chunk's
 *   first item, signal SIGKILL, exit_status -1, worker_pid = the victim) or
 *   all its items are delivered once with the correct value; at most one
 *   chunk fails, and only if the kill hit;
 * - map_async: 0 and every result right, or -SHMP_EWORKERDIED naming a
 *   chunk's first item and every item outside that chunk right;
 * - shmp_pool_stats is exact after each trial: submitted grows by 1,000,
 *   completed == submitted, failed grows by the failed chunks,
 *   worker_deaths and workers_started by the kills that hit, alive is back
 *   to the configured count.
 * 140 trials reuse one pool (which must still work after all those deaths),
 * 60 use a fresh pool each. Prints the tallies; T_SEED replays the random
 * choices (as far as timing allows). */
#include "t.h"

#include <pthread.h>
#include <stdatomic.h>
#include <semaphore.h>

#define N 10000
#define CH 10
#define NCH (N / CH)
#define TRIALS 200
#define REUSED 140

static long in[N];
static long out[N];
static unsigned char seen[N];
static unsigned char chunk_failed[NCH];

/* A microsecond or so of work per item, so that the workers spend their
 * time in tasks rather than waiting for them and a kill often lands
 * mid-task. */
static int triple(const void *arg, void *res, const struct shmp_task_ctx *ctx)
{
	(void)ctx;
	volatile unsigned spin = 0;
	for (int i = 0; i < 1500; i++)
		spin += (unsigned)i;
	*(long *)res = *(const long *)arg * 3 + 1;
	return 0;
}

/* The killer thread. */
static struct {
	pthread_t th;
	sem_t go, done;
	shmp_pool_t *p;
	double delay;
	unsigned pick;
	int busy_only; /* wait (until the call ends) for a worker in a task */
	_Atomic int call_done;
	int stop;
	pid_t victim;
	int hit; /* kill() returned 0 */
} k;

static void *killer(void *arg)
{
	(void)arg;
	for (;;) {
		while (sem_wait(&k.go) != 0)
			;
		if (k.stop)
			return NULL;
		long ns = (long)(k.delay * 1e9);
		struct timespec ts = { ns / 1000000000L, ns % 1000000000L };
		while (nanosleep(&ts, &ts) != 0)
			;
		struct shmp_worker_info w[8];
		pid_t cand[8];
		int nc;
		do {
			int n = shmp_pool_worker_info(k.p, w, 8);
			nc = 0;
			for (int i = 0; i < n && i < 8; i++)
				if (w[i].pid > 0 && (k.busy_only ? w[i].state == SHMP_WORKER_BUSY
								 : w[i].state != SHMP_WORKER_EXITED))
					cand[nc++] = w[i].pid;
		} while (!nc && k.busy_only && !atomic_load(&k.call_done));
		if (!nc) { /* the call ended first: any worker */
			int n = shmp_pool_worker_info(k.p, w, 8);
			for (int i = 0; i < n && i < 8; i++)
				if (w[i].pid > 0 && w[i].state != SHMP_WORKER_EXITED)
					cand[nc++] = w[i].pid;
		}
		k.victim = nc ? cand[k.pick % (unsigned)nc] : 0;
		k.hit = k.victim && kill(k.victim, SIGKILL) == 0;
		sem_post(&k.done);
	}
}

static void killer_wait(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	int r;
	while ((r = sem_timedwait(&k.done, &ts)) != 0 && errno == EINTR)
		;
	T_EQ(r, 0);
}

static shmp_pool_t *cur; /* the pool of the trial, for dump() */

/* What the pool looked like when a call hung. */
static void dump(const char *what)
{
	struct shmp_pool_stats st;
	shmp_pool_stats(cur, &st);
	fprintf(stderr, "%s: victim %d (hit %d, busy_only %d, delay %.2f ms); submitted %llu "
		"completed %llu failed %llu queued %llu running %llu deaths %llu started %llu "
		"alive %u state %d\n", what, (int)k.victim, k.hit, k.busy_only, k.delay * 1e3,
		(unsigned long long)st.submitted, (unsigned long long)st.completed,
		(unsigned long long)st.failed, (unsigned long long)st.queued,
		(unsigned long long)st.running, (unsigned long long)st.worker_deaths,
		(unsigned long long)st.workers_started, st.alive, st.state);
	struct shmp_worker_info w[8];
	int n = shmp_pool_worker_info(cur, w, 8);
	for (int i = 0; i < n && i < 8; i++)
		fprintf(stderr, "  worker %d: pid %d state %d tasks %llu index %llu\n", i,
			(int)w[i].pid, w[i].state, (unsigned long long)w[i].tasks_done,
			(unsigned long long)w[i].task_index);
}

static void check_error(const struct shmp_task_error *e, int r)
{
	if (r == -ETIMEDOUT)
		dump("hung");
	T_EQ(r, -SHMP_EWORKERDIED);
	T_EQ(e->error, -SHMP_EWORKERDIED);
	T_EQ(e->signal, SIGKILL);
	T_EQ(e->exit_status, -1);
	T_CHECK(k.hit);
	T_EQ(e->worker_pid, k.victim);
	T_CHECK(e->index < N);
	T_EQ(e->index % CH, 0);
	T_EQ(e->skipped, CH - 1); /* the rest of the lost chunk */
}

/* imap_unordered over everything; returns the number of failed chunks. */
static int run_imap(shmp_pool_t *p)
{
	memset(seen, 0, sizeof(seen));
	memset(chunk_failed, 0, sizeof(chunk_failed));
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = CH);
	shmp_imap_t *it = shmp_pool_imap_unordered(p, triple, in, sizeof(long), N, sizeof(long), NULL,
						   NULL, &o);
	T_CHECK(it);
	int failed = 0;
	for (;;) {
		long v = -1;
		uint64_t idx = UINT64_MAX;
		struct shmp_task_error e;
		memset(&e, 0, sizeof(e));
		int r = shmp_imap_next(it, &v, &idx, 10, &e);
		if (r == 0)
			break;
		if (r == 1) {
			T_CHECK(idx < N);
			T_EQ(seen[idx], 0); /* never twice */
			seen[idx] = 1;
			T_EQ(v, in[idx] * 3 + 1);
			continue;
		}
		if (r == -SHMP_ESKIPPED) {
			/* The rest of a lost chunk, each at its own index, right
			 * after the chunk's failure. */
			T_CHECK(idx < N && idx % CH != 0);
			T_EQ(chunk_failed[idx / CH], 1);
			T_EQ(e.index, idx);
			T_EQ(seen[idx], 0);
			seen[idx] = 2;
			continue;
		}
		check_error(&e, r);
		T_EQ(idx, e.index);
		uint64_t c = e.index / CH;
		T_EQ(chunk_failed[c], 0); /* a chunk fails once */
		chunk_failed[c] = 1;
		seen[idx] = 2;
		failed++;
	}
	shmp_imap_destroy(it);
	/* Every item once: a result, or (in a failed chunk) the failure or a
	 * skip. */
	for (int c = 0; c < NCH; c++)
		for (int i = c * CH; i < (c + 1) * CH; i++)
			T_EQ(seen[i], chunk_failed[c] ? 2 : 1);
	return failed;
}

/* map_async over everything; returns the number of failed chunks. */
static int run_map_async(shmp_pool_t *p)
{
	for (int i = 0; i < N; i++)
		out[i] = -1;
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = CH);
	shmp_async_t *a = shmp_pool_map_async(p, triple, in, sizeof(long), N, out, sizeof(long), &o);
	T_CHECK(a);
	struct shmp_task_error e;
	memset(&e, 0, sizeof(e));
	int r = shmp_async_get(a, 10, &e);
	if (r == -ETIMEDOUT)
		dump("map_async hung");
	T_CHECK(r != -ETIMEDOUT);
	shmp_async_destroy(a);
	long bad = -1;
	if (r != 0) {
		check_error(&e, r);
		bad = (long)(e.index / CH);
	}
	for (int i = 0; i < N; i++)
		if (i / CH != bad)
			T_EQ(out[i], in[i] * 3 + 1);
	return r != 0;
}

static double usual[2]; /* a call's duration without a kill, per kind */
static int tally_hit, tally_failed, tally_idle;

/* One trial on pool p of `workers` workers, `kind` 0 imap_unordered, 1 map_async. */
static void trial(shmp_pool_t *p, int workers, int kind)
{
	struct shmp_pool_stats st0 = t_pool_stats(p);
	k.p = p;
	cur = p;
	k.delay = usual[kind] * 1.3 * t_rnd(1000) / 1000.0;
	k.pick = t_rnd(1000);
	k.busy_only = t_rnd(4) != 0;
	atomic_store(&k.call_done, 0);
	sem_post(&k.go);
	int failed = kind ? run_map_async(p) : run_imap(p);
	atomic_store(&k.call_done, 1);
	killer_wait();
	T_CHECK(failed <= 1);
	if (failed)
		T_CHECK(k.hit);
	tally_hit += k.hit;
	tally_failed += failed;
	tally_idle += k.hit && !failed;

	/* Wait for the pool to count the death and replace the worker (the
	 * zygote counts a start, and a worker marks itself idle, a moment
	 * after the fact; the counters of the last chunk of an imap move just
	 * after its result is handed out). */
	double until = t_now() + 5;
	struct shmp_pool_stats st;
	for (;;) {
		st = t_pool_stats(p);
		if (st.worker_deaths == st0.worker_deaths + (uint64_t)k.hit &&
		    st.alive == (unsigned)workers &&
		    st.workers_started == (uint64_t)workers + st.worker_deaths && st.running == 0 &&
		    st.completed == st.submitted)
			break;
		if (t_now() > until) {
			fprintf(stderr, "deaths %llu (want %llu), alive %u, started %llu, running %llu, "
				"completed %llu of %llu\n",
				(unsigned long long)st.worker_deaths,
				(unsigned long long)(st0.worker_deaths + (uint64_t)k.hit), st.alive,
				(unsigned long long)st.workers_started, (unsigned long long)st.running,
				(unsigned long long)st.completed, (unsigned long long)st.submitted);
			exit(1);
		}
		t_sleep_ms(1);
	}
	T_EQ(st.submitted - st0.submitted, NCH);
	T_EQ(st.failed - st0.failed, failed);
	T_EQ(st.queued, 0);
	T_EQ(st.running, 0);
	T_EQ(st.state, SHMP_POOL_RUNNING);
}

int main(void)
{
	t_watchdog(150);
	uint64_t seed = t_seed();
	printf("T_SEED=%llu\n", (unsigned long long)seed);
	for (int i = 0; i < N; i++)
		in[i] = i * 7 - 5000;
	T_EQ(sem_init(&k.go, 0, 0), 0);
	T_EQ(sem_init(&k.done, 0, 0), 0);
	T_EQ(pthread_create(&k.th, NULL, killer, NULL), 0);
	double t0 = t_now();

	/* One pool for most trials. */
	shmp_pool_t *p = shmp_pool_create(3, NULL);
	T_CHECK(p);
	/* The usual duration of each kind of call, without a kill. */
	for (int kind = 0; kind < 2; kind++) {
		double s = t_now();
		T_EQ(kind ? run_map_async(p) : run_imap(p), 0);
		usual[kind] = t_now() - s;
	}
	printf("usual: imap_unordered %.1f ms, map_async %.1f ms\n", usual[0] * 1e3, usual[1] * 1e3);
	int t;
	for (t = 0; t < REUSED; t++)
		trial(p, 3, t & 1);
	/* After all those deaths the pool is intact and its counts exact. */
	struct shmp_pool_stats st = t_pool_stats(p);
	T_EQ(st.worker_deaths, (uint64_t)tally_hit);
	T_EQ(st.workers_started, 3 + (uint64_t)tally_hit);
	T_EQ(st.failed, (uint64_t)tally_failed);
	T_EQ(st.submitted, (uint64_t)(REUSED + 2) * NCH);
	T_EQ(run_imap(p), 0);
	T_EQ(run_map_async(p), 0);
	T_EQ(shmp_pool_close(p), 0);
	T_EQ(shmp_pool_join(p, 10), 0);
	shmp_pool_destroy(p);
	T_NO_CHILDREN();
	printf("reused pool: %d trials, %d kills hit, %d chunks failed, %d idle deaths, %.1f s\n",
	       REUSED, tally_hit, tally_failed, tally_idle, t_now() - t0);

	/* A fresh pool per trial: kills may also land on workers starting up. */
	int h0 = tally_hit, f0 = tally_failed, i0 = tally_idle;
	double t1 = t_now();
	for (; t < TRIALS; t++) {
		int workers = 2 + (t & 1);
		p = shmp_pool_create(workers, NULL);
		T_CHECK(p);
		trial(p, workers, (t >> 1) & 1);
		T_EQ(run_map_async(p), 0);
		shmp_pool_destroy(p);
		T_NO_CHILDREN();
	}
	printf("fresh pools: %d trials, %d kills hit, %d chunks failed, %d idle deaths, %.1f s\n",
	       TRIALS - REUSED, tally_hit - h0, tally_failed - f0, tally_idle - i0, t_now() - t1);

	k.stop = 1;
	sem_post(&k.go);
	T_EQ(pthread_join(k.th, NULL), 0);
	/* The loop did exercise deaths mid-task. */
	T_CHECK(tally_failed > 0);
	return 0;
}
