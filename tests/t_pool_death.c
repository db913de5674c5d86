/* A process Pool worker that dies (include/shmp/pool.h, "Failure
 * semantics"; conformance.md, Pool: "A worker killed ... while running a
 * task"). Process Pool only: a ThreadPool has no worker that can die alone.
 *
 * - A worker dying while it runs a task, by raise(SIGKILL), by a SIGKILL
 *   from the test (pid read from shmp_pool_worker_info while the task
 *   blocks), by a segfault and by exit(3): that task fails with
 *   -SHMP_EWORKERDIED; shmp_task_error has signal SIGKILL / SIGSEGV / 0,
 *   exit_status -1 / -1 / 3, the item's index and the dead worker's pid; the
 *   error_callback runs exactly once and the callback never; every other
 *   item of the same map_async (or apply_async batch, or imap) has its
 *   correct result; the worker is replaced (a new pid, stats.worker_deaths
 *   and workers_started count it, alive is back to the configured number);
 *   completed == submitted and failed counts exactly the lost tasks; no
 *   get() or imap_next() hangs (all bounded); the pool keeps working.
 * - A worker killed while idle (also while the other worker runs a task) is
 *   replaced silently: no call fails, later calls run.
 * - The zygote killed: the pool becomes broken (state SHMP_POOL_BROKEN),
 *   later calls fail at once with -SHMP_EBROKEN (err.error says so too), a
 *   task in flight ends (0, -SHMP_EWORKERDIED or -SHMP_EBROKEN: never a
 *   hang), destroy returns promptly and no process is left. What was
 *   observed is printed (with this implementation the workers die with
 *   the zygote, are counted as deaths, and the task in flight gets
 *   -SHMP_EWORKERDIED with signal 0 / exit_status -1 or -SHMP_EBROKEN). */
#include "t.h"

#include <dirent.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/resource.h>

#define WORKERS 2

/* Checks that let the test go on (to see the rest); main() fails at the
 * end if any failed. */
static int failures;
#define T_SOFT_EQ(a, b)                                                            \
	do {                                                                       \
		long long s_a_ = (long long)(a), s_b_ = (long long)(b);            \
		if (s_a_ != s_b_) {                                                \
			fprintf(stderr, "%s:%d: %s == %s failed: %lld vs %lld\n", __FILE__, \
				__LINE__, #a, #b, s_a_, s_b_);                     \
			failures++;                                                \
		}                                                                  \
	} while (0)

/* Shared with the workers: mapped before any pool, so inherited by the
 * zygote and every worker. */
struct shared {
	_Atomic int dying_pid;   /* the worker about to die (or blocking) */
	_Atomic int blocked;     /* a DIE_BLOCK task is parked */
	_Atomic int release;     /* let parked tasks return */
};
static struct shared *sh;

enum { LIVE, DIE_RAISE, DIE_SEGV, DIE_EXIT, DIE_BLOCK, BLOCK_OK };

struct item {
	long x;
	int how;
};

static int *volatile nullp; /* volatile: the compiler cannot turn *nullp into a trap */

/* The segfault itself. Not instrumented: UBSan (SHMP_SANITIZE) would
 * report the null store and exit instead of letting it fault. */
__attribute__((noinline, no_sanitize("undefined"))) static void segfault(void)
{
	*nullp = 1;
}

static void park(void)
{
	/* Bounded: a worker the test forgot to kill returns after 10 s. */
	double until = t_now() + 10;
	while (!atomic_load(&sh->release) && t_now() < until)
		t_sleep_ms(1);
}

static int task(const void *arg, void *res, const struct shmp_task_ctx *ctx)
{
	const struct item *it = arg;

	if (ctx->arg_size != sizeof(*it) || ctx->result_size != sizeof(long))
		return 100;
	switch (it->how) {
	case DIE_RAISE:
		atomic_store(&sh->dying_pid, getpid());
		raise(SIGKILL);
		return 101;
	case DIE_SEGV:
		atomic_store(&sh->dying_pid, getpid());
		/* No core file: a dump only slows the test down. */
		prctl(PR_SET_DUMPABLE, 0);
#if defined(__SANITIZE_ADDRESS__)
		/* ASan would catch the fault and _exit(1); we want the signal. */
		signal(SIGSEGV, SIG_DFL);
#endif
		segfault();
		return 102;
	case DIE_EXIT:
		atomic_store(&sh->dying_pid, getpid());
		exit(3);
	case DIE_BLOCK:
		atomic_store(&sh->dying_pid, getpid());
		atomic_store(&sh->blocked, 1);
		park();
		return 103; /* the test should have killed us */
	case BLOCK_OK:
		atomic_store(&sh->blocked, 1);
		park();
		break;
	}
	*(long *)res = it->x * it->x + 1;
	return 0;
}

/* Callback accounting (callbacks run on the pool's supervisor thread). */
static _Atomic int n_cb, n_ecb;
static struct shmp_task_error ecb_err;

static int on_ok(shmp_async_t *a, void *results, size_t n, void *cb_arg)
{
	(void)a;
	(void)results;
	(void)n;
	(void)cb_arg;
	atomic_fetch_add(&n_cb, 1);
	return 0;
}

static int on_err(shmp_async_t *a, const struct shmp_task_error *e, void *cb_arg)
{
	(void)a;
	(void)cb_arg;
	ecb_err = *e;
	atomic_fetch_add(&n_ecb, 1);
	return 0;
}

static int worker_pids(shmp_pool_t *p, pid_t *pids, struct shmp_worker_info *wi)
{
	struct shmp_worker_info w[16];
	int n = shmp_pool_worker_info(p, w, 16);
	T_EQ(n, WORKERS);
	for (int i = 0; i < n; i++) {
		pids[i] = w[i].pid;
		if (wi)
			wi[i] = w[i];
	}
	return n;
}

static void settle(shmp_pool_t *p);

/* Wait until every worker is up (IDLE or BUSY), none is `dead`, and stats
 * agree (alive == WORKERS, worker_deaths == deaths). 5 s at most. */
static void wait_replaced(shmp_pool_t *p, pid_t dead, uint64_t deaths)
{
	double until = t_now() + 5;
	for (;;) {
		struct shmp_worker_info w[WORKERS];
		pid_t pids[WORKERS];
		worker_pids(p, pids, w);
		int up = 0;
		for (int i = 0; i < WORKERS; i++)
			if ((w[i].state == SHMP_WORKER_IDLE || w[i].state == SHMP_WORKER_BUSY) &&
			    w[i].pid > 0 && w[i].pid != dead && kill(w[i].pid, 0) == 0)
				up++;
		struct shmp_pool_stats st = t_pool_stats(p);
		if (up == WORKERS && st.alive == WORKERS && st.worker_deaths == deaths)
			break;
		if (t_now() > until) {
			fprintf(stderr, "not replaced: up %d alive %u deaths %llu (want %llu)\n", up,
				st.alive, (unsigned long long)st.worker_deaths,
				(unsigned long long)deaths);
			exit(1);
		}
		t_sleep_ms(2);
	}
	settle(p);
}

/* The pool at rest: every worker up and idle, each start counted
 * (workers_started == WORKERS + worker_deaths), no task queued or running,
 * completed == submitted. Polled: a worker marks itself idle, and the
 * zygote counts a start, a moment after the fact. 5 s at most. */
static void settle(shmp_pool_t *p)
{
	double until = t_now() + 5;
	for (;;) {
		struct shmp_worker_info w[WORKERS];
		pid_t pids[WORKERS];
		worker_pids(p, pids, w);
		int idle = 0;
		for (int i = 0; i < WORKERS; i++)
			idle += w[i].state == SHMP_WORKER_IDLE && w[i].pid > 0;
		struct shmp_pool_stats st = t_pool_stats(p);
		if (idle == WORKERS && st.alive == WORKERS &&
		    st.workers_started == WORKERS + st.worker_deaths && st.queued == 0 &&
		    st.running == 0 && st.completed == st.submitted)
			return;
		if (t_now() > until) {
			fprintf(stderr, "not settled: idle %d alive %u started %llu deaths %llu "
				"queued %llu running %llu completed %llu submitted %llu\n",
				idle, st.alive, (unsigned long long)st.workers_started,
				(unsigned long long)st.worker_deaths, (unsigned long long)st.queued,
				(unsigned long long)st.running, (unsigned long long)st.completed,
				(unsigned long long)st.submitted);
			exit(1);
		}
		t_sleep_ms(1);
	}
}

static void wait_blocked(void)
{
	double until = t_now() + 5;
	while (!atomic_load(&sh->blocked)) {
		T_CHECK(t_now() < until);
		t_sleep_ms(1);
	}
}

static void reset_shared(void)
{
	atomic_store(&sh->dying_pid, 0);
	atomic_store(&sh->blocked, 0);
	atomic_store(&sh->release, 0);
	atomic_store(&n_cb, 0);
	atomic_store(&n_ecb, 0);
	memset(&ecb_err, 0, sizeof(ecb_err));
}

/* The pool still maps correctly. */
static void still_works(shmp_pool_t *p)
{
	enum { N = 200 };
	static struct item in[N];
	static long out[N];
	for (int i = 0; i < N; i++)
		in[i] = (struct item){ .x = i + 1000, .how = LIVE };
	struct shmp_task_error e;
	T_EQ(shmp_pool_map(p, task, in, sizeof(in[0]), N, out, sizeof(out[0]), NULL, &e), 0);
	for (int i = 0; i < N; i++)
		T_EQ(out[i], (long)(i + 1000) * (i + 1000) + 1);
}

/* The error a death of kind `how` must report. */
static void check_death_error(const struct shmp_task_error *e, int how, uint64_t index, pid_t pid)
{
	T_EQ(e->error, -SHMP_EWORKERDIED);
	T_EQ(e->index, index);
	T_EQ(e->worker_pid, pid);
	switch (how) {
	case DIE_RAISE:
	case DIE_BLOCK:
		T_EQ(e->signal, SIGKILL);
		T_EQ(e->exit_status, -1);
		break;
	case DIE_SEGV:
		T_EQ(e->signal, SIGSEGV);
		T_EQ(e->exit_status, -1);
		break;
	case DIE_EXIT:
		T_EQ(e->signal, 0);
		T_EQ(e->exit_status, 3);
		break;
	}
}

/* The test kills the worker running the DIE_BLOCK item (index `index`),
 * found through shmp_pool_worker_info. Returns its pid. */
static pid_t kill_blocked(shmp_pool_t *p, uint64_t index)
{
	wait_blocked();
	pid_t dying = atomic_load(&sh->dying_pid);
	struct shmp_worker_info w[WORKERS];
	pid_t pids[WORKERS];
	worker_pids(p, pids, w);
	int found = -1;
	for (int i = 0; i < WORKERS; i++)
		if (w[i].pid == dying)
			found = i;
	T_CHECK(found >= 0);
	T_EQ(w[found].state, SHMP_WORKER_BUSY);
	T_EQ(w[found].task_index, index);
	T_EQ(kill(dying, SIGKILL), 0);
	return dying;
}

/* map_async of 40 items, chunksize 1; item K dies by `how`. */
static void death_in_map(shmp_pool_t *p, int how)
{
	enum { N = 40, K = 17 };
	struct item in[N];
	long out[N];
	for (int i = 0; i < N; i++)
		in[i] = (struct item){ .x = i, .how = i == K ? how : LIVE };
	memset(out, 0xff, sizeof(out));
	settle(p);
	reset_shared();
	struct shmp_pool_stats st0 = t_pool_stats(p);
	pid_t before[WORKERS];
	worker_pids(p, before, NULL);

	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = 1, .callback = on_ok,
					    .error_callback = on_err);
	shmp_async_t *a = shmp_pool_map_async(p, task, in, sizeof(in[0]), N, out, sizeof(out[0]), &o);
	T_CHECK(a);
	pid_t dead = 0;
	if (how == DIE_BLOCK)
		dead = kill_blocked(p, K);

	struct shmp_task_error e;
	memset(&e, 0, sizeof(e));
	double t0 = t_now();
	T_EQ(shmp_async_get(a, 20, &e), -SHMP_EWORKERDIED);
	T_CHECK(t_now() - t0 < 20);
	if (!dead)
		dead = atomic_load(&sh->dying_pid);
	T_CHECK(dead > 0);
	T_CHECK(dead != getpid()); /* a worker, not us */
	check_death_error(&e, how, K, dead);
	T_EQ(shmp_async_is_ready(a), 1);
	T_EQ(shmp_async_is_successful(a), 0);
	/* Callbacks ran before the call became ready, once, the error one. */
	T_EQ(atomic_load(&n_ecb), 1);
	T_EQ(atomic_load(&n_cb), 0);
	check_death_error(&ecb_err, how, K, dead);
	/* Every other item has its result. */
	for (int i = 0; i < N; i++)
		if (i != K)
			T_EQ(out[i], (long)i * i + 1);
	/* get again: the same answer, at once. */
	memset(&e, 0, sizeof(e));
	T_FAST(shmp_async_get(a, 0, &e), -SHMP_EWORKERDIED);
	check_death_error(&e, how, K, dead);
	shmp_async_destroy(a);

	wait_replaced(p, dead, st0.worker_deaths + 1);
	pid_t after[WORKERS];
	worker_pids(p, after, NULL);
	int fresh = 0;
	for (int i = 0; i < WORKERS; i++) {
		T_CHECK(after[i] != dead);
		int old = 0;
		for (int j = 0; j < WORKERS; j++)
			old |= after[i] == before[j];
		fresh += !old;
	}
	T_EQ(fresh, 1); /* exactly the dead one was replaced */
	/* The dead worker is gone (reaped by whoever forked it). */
	double until = t_now() + 2;
	while (kill(dead, 0) == 0) {
		T_CHECK(t_now() < until);
		t_sleep_ms(1);
	}
	struct shmp_pool_stats st = t_pool_stats(p);
	T_EQ(st.submitted - st0.submitted, N);
	T_EQ(st.completed, st.submitted);
	T_EQ(st.failed - st0.failed, 1);
	T_EQ(st.workers_started - st0.workers_started, 1);
	T_EQ(st.queued, 0);
	T_EQ(st.running, 0);
	T_EQ(st.state, SHMP_POOL_RUNNING);
	T_EQ(atomic_load(&n_ecb), 1); /* and never again */
	T_EQ(atomic_load(&n_cb), 0);
	still_works(p);
}

/* A batch of apply_async; the one at K dies by `how`, the others succeed. */
static void death_in_apply_batch(shmp_pool_t *p, int how)
{
	enum { N = 12, K = 5 };
	struct item in[N];
	long out[N];
	shmp_async_t *a[N];
	settle(p);
	reset_shared();
	struct shmp_pool_stats st0 = t_pool_stats(p);
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .callback = on_ok, .error_callback = on_err);
	for (int i = 0; i < N; i++) {
		in[i] = (struct item){ .x = 100 + i, .how = i == K ? how : LIVE };
		out[i] = -1;
		a[i] = shmp_pool_apply_async(p, task, &in[i], sizeof(in[i]), &out[i], sizeof(out[i]), &o);
		T_CHECK(a[i]);
	}
	pid_t dead = 0;
	if (how == DIE_BLOCK)
		dead = kill_blocked(p, 0); /* an apply is item 0 of its call */
	for (int i = 0; i < N; i++) {
		struct shmp_task_error e;
		memset(&e, 0, sizeof(e));
		int r = shmp_async_get(a[i], 20, &e);
		if (i != K) {
			T_EQ(r, 0);
			T_EQ(out[i], (long)(100 + i) * (100 + i) + 1);
			T_EQ(shmp_async_is_successful(a[i]), 1);
			continue;
		}
		T_EQ(r, -SHMP_EWORKERDIED);
		if (!dead)
			dead = atomic_load(&sh->dying_pid);
		check_death_error(&e, how, 0, dead);
		T_EQ(shmp_async_is_successful(a[i]), 0);
	}
	T_EQ(atomic_load(&n_ecb), 1);
	T_EQ(atomic_load(&n_cb), N - 1);
	check_death_error(&ecb_err, how, 0, dead);
	for (int i = 0; i < N; i++)
		shmp_async_destroy(a[i]);
	wait_replaced(p, dead, st0.worker_deaths + 1);
	struct shmp_pool_stats st = t_pool_stats(p);
	T_EQ(st.submitted - st0.submitted, N);
	T_EQ(st.completed, st.submitted);
	T_EQ(st.failed - st0.failed, 1);
	still_works(p);
}

/* Blocking apply whose worker dies (not DIE_BLOCK: nobody would kill it). */
static void death_in_apply(shmp_pool_t *p, int how)
{
	if (how == DIE_BLOCK)
		return;
	settle(p);
	reset_shared();
	struct shmp_pool_stats st0 = t_pool_stats(p);
	struct item it = { .x = 7, .how = how };
	long out = -1;
	struct shmp_task_error e;
	memset(&e, 0, sizeof(e));
	T_EQ(shmp_pool_apply(p, task, &it, sizeof(it), &out, sizeof(out), &e), -SHMP_EWORKERDIED);
	pid_t dead = atomic_load(&sh->dying_pid);
	check_death_error(&e, how, 0, dead);
	wait_replaced(p, dead, st0.worker_deaths + 1);
	still_works(p);
}

/* Ordered imap of 30 items, chunksize 1, item K dies: results 0..K-1, the
 * error at K, then K+1..N-1, then the end. */
static void death_in_imap(shmp_pool_t *p, int how)
{
	enum { N = 30, K = 9 };
	struct item in[N];
	for (int i = 0; i < N; i++)
		in[i] = (struct item){ .x = i, .how = i == K ? how : LIVE };
	settle(p);
	reset_shared();
	struct shmp_pool_stats st0 = t_pool_stats(p);
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = 1);
	shmp_imap_t *it = shmp_pool_imap(p, task, in, sizeof(in[0]), N, sizeof(long), NULL, NULL, &o);
	T_CHECK(it);
	for (int i = 0; i < N; i++) {
		long out = -1;
		uint64_t idx = 12345;
		struct shmp_task_error e;
		memset(&e, 0, sizeof(e));
		if (i == K && how == DIE_BLOCK)
			kill_blocked(p, K);
		int r = shmp_imap_next(it, &out, &idx, 20, &e);
		if (i == K) {
			T_EQ(r, -SHMP_EWORKERDIED);
			check_death_error(&e, how, K, atomic_load(&sh->dying_pid));
		} else {
			T_EQ(r, 1);
			T_EQ(idx, i);
			T_EQ(out, (long)i * i + 1);
		}
	}
	long end;
	T_EQ(shmp_imap_next(it, &end, NULL, 5, NULL), 0);
	shmp_imap_destroy(it);
	wait_replaced(p, atomic_load(&sh->dying_pid), st0.worker_deaths + 1);
	struct shmp_pool_stats st = t_pool_stats(p);
	T_EQ(st.completed, st.submitted);
	T_EQ(st.failed - st0.failed, 1);
	still_works(p);
}

/* A worker killed while idle: replaced, no call fails. Then one killed idle
 * while the other runs a task: that task still succeeds. */
static void death_idle(void)
{
	shmp_pool_t *p = shmp_pool_create(WORKERS, NULL);
	T_CHECK(p);
	still_works(p);
	settle(p);
	reset_shared();
	struct shmp_pool_stats st0 = t_pool_stats(p);
	pid_t pids[WORKERS];
	worker_pids(p, pids, NULL);
	T_EQ(kill(pids[0], SIGKILL), 0);
	wait_replaced(p, pids[0], st0.worker_deaths + 1);
	struct shmp_pool_stats st = t_pool_stats(p);
	T_EQ(st.failed, st0.failed);
	T_EQ(st.workers_started - st0.workers_started, 1);
	still_works(p);

	/* Now a task parks in one worker and the other, idle, is killed. */
	settle(p);
	reset_shared();
	st0 = t_pool_stats(p);
	struct item it = { .x = 5, .how = BLOCK_OK };
	long out = -1;
	shmp_async_t *a = shmp_pool_apply_async(p, task, &it, sizeof(it), &out, sizeof(out), NULL);
	T_CHECK(a);
	wait_blocked();
	struct shmp_worker_info w[WORKERS];
	worker_pids(p, pids, w);
	int idle = -1, busy = 0;
	for (int i = 0; i < WORKERS; i++) {
		if (w[i].state == SHMP_WORKER_IDLE)
			idle = i;
		busy += w[i].state == SHMP_WORKER_BUSY;
	}
	T_CHECK(idle >= 0);
	T_EQ(busy, 1);
	T_EQ(kill(w[idle].pid, SIGKILL), 0);
	/* Replaced while the other still runs its task. */
	double until = t_now() + 5;
	for (;;) {
		struct shmp_worker_info w2[WORKERS];
		pid_t p2[WORKERS];
		worker_pids(p, p2, w2);
		int up = 0;
		for (int i = 0; i < WORKERS; i++)
			up += w2[i].pid != w[idle].pid && (w2[i].state == SHMP_WORKER_IDLE ||
							   w2[i].state == SHMP_WORKER_BUSY);
		if (up == WORKERS && t_pool_stats(p).worker_deaths == st0.worker_deaths + 1)
			break;
		T_CHECK(t_now() < until);
		t_sleep_ms(2);
	}
	T_EQ(shmp_async_is_ready(a), 0);
	atomic_store(&sh->release, 1);
	T_EQ(shmp_async_get(a, 10, NULL), 0);
	T_EQ(out, 26);
	shmp_async_destroy(a);
	st = t_pool_stats(p);
	T_EQ(st.failed, st0.failed);
	T_EQ(st.completed, st.submitted);
	still_works(p);
	shmp_pool_destroy(p);
	T_NO_CHILDREN();
}

/* ---- the zygote ---------------------------------------------------------- */

/* Children of `parent` now (from /proc). */
static int children_of(pid_t parent, pid_t *out, int max)
{
	DIR *d = opendir("/proc");
	T_CHECK(d);
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		char path[300], buf[512];
		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		size_t len = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[len] = 0;
		char *rp = strrchr(buf, ')');
		int ppid;
		char state;
		if (!rp || sscanf(rp + 1, " %c %d", &state, &ppid) != 2)
			continue;
		if (ppid == parent && n < max)
			out[n++] = atoi(de->d_name);
	}
	closedir(d);
	return n;
}

static void zygote_killed(void)
{
	shmp_pool_t *p = shmp_pool_create(WORKERS, NULL);
	T_CHECK(p);
	still_works(p);
	settle(p);
	pid_t pids[WORKERS];
	worker_pids(p, pids, NULL);

	/* The zygote is a child of ours that is not a worker. */
	pid_t kids[64];
	int nk = children_of(getpid(), kids, 64);
	pid_t zyg = 0;
	int others = 0;
	for (int i = 0; i < nk; i++) {
		int w = 0;
		for (int j = 0; j < WORKERS; j++)
			w |= kids[i] == pids[j];
		if (!w) {
			zyg = kids[i];
			others++;
		}
	}
	printf("zygote: %d children of ours, %d not workers (zygote %d)\n", nk, others, (int)zyg);
	T_EQ(others, 1);

	/* A task in flight while the zygote dies. */
	reset_shared();
	struct item it = { .x = 3, .how = BLOCK_OK };
	long out = -1;
	shmp_async_t *a = shmp_pool_apply_async(p, task, &it, sizeof(it), &out, sizeof(out), NULL);
	T_CHECK(a);
	wait_blocked();
	T_EQ(kill(zyg, SIGKILL), 0);

	/* The pool notices and becomes broken. */
	double t0 = t_now();
	while (t_pool_stats(p).state != SHMP_POOL_BROKEN) {
		T_CHECK(t_now() - t0 < 5);
		t_sleep_ms(1);
	}
	printf("zygote: pool broken after %.1f ms\n", (t_now() - t0) * 1e3);
	/* The task in flight ends, one way or another, without a hang (its
	 * worker may be killed with the zygote, or may finish). */
	atomic_store(&sh->release, 1);
	struct shmp_task_error e;
	memset(&e, 0, sizeof(e));
	int r = shmp_async_get(a, 10, &e);
	printf("zygote: task in flight: %s (error %s, signal %d, exit %d), out %ld\n",
	       shmp_strerror(r), shmp_strerror(e.error), e.signal, e.exit_status, out);
	T_CHECK(r != -ETIMEDOUT);
	T_CHECK(r == 0 || r == -SHMP_EBROKEN || r == -SHMP_EWORKERDIED);
	if (r == 0)
		T_EQ(out, 10);
	shmp_async_destroy(a);

	/* The workers die with the zygote (their parent; PR_SET_PDEATHSIG):
	 * observed, not required. */
	double t1 = t_now();
	int gone = 0;
	while (t_now() - t1 < 2 && gone < WORKERS) {
		gone = 0;
		for (int j = 0; j < WORKERS; j++)
			gone += t_dead_or_zombie(pids[j]);
		t_sleep_ms(1);
	}
	printf("zygote: %d of %d workers gone before destroy\n", gone, WORKERS);

	/* New calls fail with -SHMP_EBROKEN, at once, and say so in err. */
	struct item it2 = { .x = 4, .how = LIVE };
	memset(&e, 0, sizeof(e));
	T_FAST(shmp_pool_apply(p, task, &it2, sizeof(it2), &out, sizeof(out), &e), -SHMP_EBROKEN);
	T_SOFT_EQ(e.error, -SHMP_EBROKEN);
	struct item in[8] = { { 0 } };
	long outs[8];
	memset(&e, 0, sizeof(e));
	T_FAST(shmp_pool_map(p, task, in, sizeof(in[0]), 8, outs, sizeof(outs[0]), NULL, &e),
	       -SHMP_EBROKEN);
	T_SOFT_EQ(e.error, -SHMP_EBROKEN);
	/* The asynchronous calls: NULL with errno SHMP_EBROKEN (as for any
	 * call refused at once), or a handle that fails so. */
	errno = 0;
	shmp_async_t *b = shmp_pool_apply_async(p, task, &it2, sizeof(it2), &out, sizeof(out), NULL);
	if (b) {
		T_FAST(shmp_async_get(b, 5, NULL), -SHMP_EBROKEN);
		shmp_async_destroy(b);
		printf("zygote: apply_async gives a handle that fails with -SHMP_EBROKEN\n");
	} else {
		T_EQ(errno, SHMP_EBROKEN);
		printf("zygote: apply_async gives NULL, errno SHMP_EBROKEN\n");
	}
	errno = 0;
	shmp_imap_t *im = shmp_pool_imap_unordered(p, task, in, sizeof(in[0]), 8, sizeof(long), NULL,
						   NULL, NULL);
	if (im) {
		long v;
		T_FAST(shmp_imap_next(im, &v, NULL, 5, NULL), -SHMP_EBROKEN);
		shmp_imap_destroy(im);
	} else {
		T_EQ(errno, SHMP_EBROKEN);
	}
	struct shmp_pool_stats st = t_pool_stats(p);
	printf("zygote: stats: deaths %llu alive %u started %llu failed %llu\n",
	       (unsigned long long)st.worker_deaths, st.alive, (unsigned long long)st.workers_started,
	       (unsigned long long)st.failed);
	T_EQ(st.state, SHMP_POOL_BROKEN);

	/* Destroy returns promptly; no process is left. */
	t0 = t_now();
	shmp_pool_destroy(p);
	T_CHECK(t_now() - t0 < 5);
	T_NO_CHILDREN();
	double until = t_now() + 2;
	for (int j = 0; j < WORKERS; j++)
		while (!t_dead_or_zombie(pids[j])) {
			T_CHECK(t_now() < until);
			t_sleep_ms(1);
		}
}

int main(void)
{
	t_watchdog(120);
	/* Workers that segfault must not write core files. */
	struct rlimit rl = { 0, 0 };
	setrlimit(RLIMIT_CORE, &rl);
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	T_CHECK(sh != MAP_FAILED);
	fflush(NULL); /* workers that exit(3) flush stdio: nothing of ours in it */

	shmp_pool_t *p = shmp_pool_create(WORKERS, NULL);
	T_CHECK(p);
	T_EQ(shmp_pool_is_threads(p), 0);
	still_works(p);
	static const int hows[] = { DIE_RAISE, DIE_BLOCK, DIE_SEGV, DIE_EXIT };
	static const char *names[] = { "raise(SIGKILL)", "kill -9 by the test", "segfault", "exit(3)" };
	for (int k = 0; k < 4; k++) {
		double t0 = t_now();
		death_in_map(p, hows[k]);
		death_in_apply_batch(p, hows[k]);
		death_in_apply(p, hows[k]);
		death_in_imap(p, hows[k]);
		printf("%-20s ok (%.0f ms)\n", names[k], (t_now() - t0) * 1e3);
	}
	/* 15 deaths on this pool (4 kinds x map, batch, imap; 3 x apply),
	 * each counted and replaced. */
	struct shmp_pool_stats st = t_pool_stats(p);
	T_EQ(st.worker_deaths, 15);
	T_EQ(st.workers_started, WORKERS + 15);
	T_EQ(st.failed, 15);
	T_EQ(st.completed, st.submitted);
	T_EQ(shmp_pool_close(p), 0);
	T_EQ(shmp_pool_join(p, 10), 0);
	shmp_pool_destroy(p);
	T_NO_CHILDREN();

	death_idle();
	printf("idle death ok\n");
	zygote_killed();
	printf("zygote death ok\n");
	munmap(sh, sizeof(*sh));
	return failures ? 1 : 0;
}
