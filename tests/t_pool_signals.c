/* Signals and a pool (include/shmp/pool.h: "Workers ignore SIGINT (the
 * parent decides) and die when the pool's process dies"; conformance.md,
 * Pool: SIGINT in the terminal, the parent killed).
 *
 * SIGINT, both kinds: while a map of 60 tasks of 15 ms each runs, a thread
 * of the test sends SIGINT every 5 ms for 300 ms to every other thread of
 * the test process (the caller blocked in map, the pool's supervisor, a
 * ThreadPool's workers; the test catches SIGINT with a counting handler
 * installed without SA_RESTART) and, for a process Pool, to every worker and
 * to the zygote (what a Ctrl-C to the process group would reach; never to
 * the test's process group itself, which ctest shares). The map returns 0
 * with every result right; no worker died or was restarted (same pids,
 * stats.worker_deaths 0, workers_started == workers); the handler did run;
 * afterwards the pool still replaces a worker killed with SIGKILL (the
 * zygote is alive and well) and runs tasks.
 *
 * The parent killed, both kinds: a forked child creates a pool, starts long
 * tasks, reports its worker pids through a pipe once they run; the test
 * notes every process descended from the child (the zygote, the workers),
 * then SIGKILLs the child. Within 2 s every one of those processes is gone
 * (the test is a child subreaper, so they come to it and it reaps them),
 * and no new /dev/shm entry was left (the pool's segment is anonymous). */
#include "t.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/syscall.h>

static shmp_pool_t *(*const create[2])(int, const struct shmp_pool_opts *) = {
	shmp_pool_create, shmp_threadpool_create
};
static const char *const kind_name[2] = { "Pool", "ThreadPool" };

#define W 3

/* ---- /proc ---------------------------------------------------------------- */

struct proc {
	pid_t pid, ppid;
	char state;
};

#define PMAX 8192
static struct proc procs[PMAX];

static int proc_scan(void)
{
	DIR *d = opendir("/proc");
	T_CHECK(d);
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) && n < PMAX) {
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
		if (!rp || sscanf(rp + 1, " %c %d", &procs[n].state, &procs[n].ppid) != 2)
			continue;
		procs[n].pid = atoi(de->d_name);
		n++;
	}
	closedir(d);
	return n;
}

/* Every process descended from root (root excluded). */
static int descendants(pid_t root, pid_t *out, int max)
{
	int np = proc_scan(), n = 0;
	out[n++] = root;
	for (int i = 0; i < n; i++)
		for (int j = 0; j < np; j++)
			if (procs[j].ppid == out[i] && n < max)
				out[n++] = procs[j].pid;
	memmove(out, out + 1, sizeof(pid_t) * (size_t)(n - 1));
	return n - 1;
}

/* ---- SIGINT while tasks run ------------------------------------------------ */

static _Atomic int n_sigint;

static void on_sigint(int sig)
{
	(void)sig;
	atomic_fetch_add(&n_sigint, 1);
}

static int slow_square(const void *arg, void *res, const struct shmp_task_ctx *ctx)
{
	(void)ctx;
	t_sleep_ms(15); /* goes on sleeping if a signal interrupts it */
	long x = *(const long *)arg;
	*(long *)res = x * x;
	return 0;
}

static struct {
	_Atomic int stop;
	pid_t targets[16]; /* processes: workers and the zygote */
	int n_targets;
	pid_t main_tid;
	int sent;
} sg;

static void *signaller(void *arg)
{
	(void)arg;
	pid_t self = (pid_t)syscall(SYS_gettid);
	double until = t_now() + 0.3;
	while (!atomic_load(&sg.stop) && t_now() < until) {
		for (int i = 0; i < sg.n_targets; i++)
			if (kill(sg.targets[i], SIGINT) == 0)
				sg.sent++;
		DIR *d = opendir("/proc/self/task");
		T_CHECK(d);
		struct dirent *de;
		while ((de = readdir(d))) {
			pid_t tid = atoi(de->d_name);
			if (tid > 0 && tid != self &&
			    syscall(SYS_tgkill, getpid(), tid, SIGINT) == 0)
				sg.sent++;
		}
		closedir(d);
		t_sleep_ms(5);
	}
	return NULL;
}

static pid_t zygote_of(const pid_t *workers, int n)
{
	pid_t kids[64];
	int nk = descendants(getpid(), kids, 64);
	pid_t z = 0;
	int others = 0;
	for (int i = 0; i < nk; i++) {
		int w = 0;
		for (int j = 0; j < n; j++)
			w |= kids[i] == workers[j];
		if (!w) {
			z = kids[i];
			others++;
		}
	}
	T_EQ(others, 1); /* exactly one process of the pool is not a worker */
	return z;
}

static void sigint_while_running(int kind)
{
	enum { N = 60 };
	/* The process Pool is created with SIGINT at its default: what the
	 * workers do with it is their own doing. */
	signal(SIGINT, SIG_DFL);
	shmp_pool_t *p = create[kind](W, NULL);
	T_CHECK(p);
	long x = 3, y = 0;
	T_EQ(shmp_pool_apply(p, slow_square, &x, sizeof(x), &y, sizeof(y), NULL), 0);
	T_EQ(y, 9);
	double until = t_now() + 5;
	while (1) {
		struct shmp_pool_stats st;
		T_EQ(shmp_pool_stats(p, &st), 0);
		if (st.alive == W)
			break;
		T_CHECK(t_now() < until);
		t_sleep_ms(1);
	}
	struct shmp_worker_info w[W];
	T_EQ(shmp_pool_worker_info(p, w, W), W);
	pid_t pids[W];
	for (int i = 0; i < W; i++)
		pids[i] = w[i].pid;
	pid_t zyg = 0;
	memset(&sg, 0, sizeof(sg));
	if (kind == 0) {
		zyg = zygote_of(pids, W);
		for (int i = 0; i < W; i++)
			sg.targets[sg.n_targets++] = pids[i];
		sg.targets[sg.n_targets++] = zyg;
	}

	/* Our own threads get SIGINT too: catch it, without SA_RESTART. */
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigint;
	sigemptyset(&sa.sa_mask);
	T_EQ(sigaction(SIGINT, &sa, NULL), 0);
	atomic_store(&n_sigint, 0);

	long in[N], out[N];
	for (int i = 0; i < N; i++) {
		in[i] = i + 1;
		out[i] = -1;
	}
	pthread_t th;
	T_EQ(pthread_create(&th, NULL, signaller, NULL), 0);
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = 1);
	struct shmp_task_error e;
	memset(&e, 0, sizeof(e));
	int r = shmp_pool_map(p, slow_square, in, sizeof(long), N, out, sizeof(long), &o, &e);
	atomic_store(&sg.stop, 1);
	T_EQ(pthread_join(th, NULL), 0);
	if (r)
		fprintf(stderr, "map: %s, item %llu, signal %d\n", shmp_strerror(r),
			(unsigned long long)e.index, e.signal);
	T_EQ(r, 0);
	for (int i = 0; i < N; i++)
		T_EQ(out[i], (long)(i + 1) * (i + 1));
	T_CHECK(sg.sent > 0);
	T_CHECK(atomic_load(&n_sigint) > 0);

	/* Nobody died, nobody was restarted. */
	struct shmp_pool_stats st;
	T_EQ(shmp_pool_stats(p, &st), 0);
	T_EQ(st.worker_deaths, 0);
	T_EQ(st.workers_started, W);
	T_EQ(st.failed, 0);
	T_EQ(st.completed, st.submitted);
	T_EQ(st.state, SHMP_POOL_RUNNING);
	T_EQ(shmp_pool_worker_info(p, w, W), W);
	for (int i = 0; i < W; i++)
		T_EQ(w[i].pid, pids[i]);
	printf("%s: %d SIGINTs sent, %d caught by the test's threads\n", kind_name[kind], sg.sent,
	       atomic_load(&n_sigint));

	if (kind == 0) {
		/* The zygote lived through it: a killed worker is replaced. */
		T_CHECK(!t_dead_or_zombie(zyg));
		T_EQ(kill(pids[1], SIGKILL), 0);
		until = t_now() + 5;
		for (;;) {
			T_EQ(shmp_pool_stats(p, &st), 0);
			if (st.worker_deaths == 1 && st.alive == W && st.workers_started == W + 1)
				break;
			T_CHECK(t_now() < until);
			t_sleep_ms(1);
		}
		T_EQ(shmp_pool_worker_info(p, w, W), W);
		for (int i = 0; i < W; i++)
			T_CHECK(w[i].pid != pids[1]);
	}
	memset(out, 0xff, sizeof(out));
	T_EQ(shmp_pool_map(p, slow_square, in, sizeof(long), 12, out, sizeof(long), &o, NULL), 0);
	for (int i = 0; i < 12; i++)
		T_EQ(out[i], (long)(i + 1) * (i + 1));
	shmp_pool_destroy(p);
	signal(SIGINT, SIG_DFL);
	T_NO_CHILDREN();
}

/* ---- the parent killed ------------------------------------------------------ */

static _Atomic int *started; /* shared: tasks that began */

static int long_task(const void *arg, void *res, const struct shmp_task_ctx *ctx)
{
	(void)arg;
	(void)ctx;
	atomic_fetch_add(started, 1);
	/* Longer than the test: only death ends it. Bounded all the same. */
	t_sleep_ms(30000);
	*(long *)res = 1;
	return 0;
}

static int rep[2]; /* child -> test: worker pids */

static int pool_owner(void *arg)
{
	int kind = *(int *)arg;
	close(rep[0]);
	shmp_pool_t *p = create[kind](W, NULL);
	if (!p)
		return 2;
	static long in[2 * W], out[2 * W];
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = 1);
	shmp_async_t *a = shmp_pool_map_async(p, long_task, in, sizeof(long), 2 * W, out,
					      sizeof(long), &o);
	if (!a)
		return 3;
	double until = t_now() + 10;
	while (atomic_load(started) < W)
		if (t_now() > until)
			return 4;
		else
			t_sleep_ms(1);
	struct shmp_worker_info w[W];
	if (shmp_pool_worker_info(p, w, W) != W)
		return 5;
	pid_t pids[W];
	for (int i = 0; i < W; i++)
		pids[i] = w[i].pid;
	if (write(rep[1], pids, sizeof(pids)) != (ssize_t)sizeof(pids))
		return 6;
	/* Wait to be killed (or orphaned, if the test failed). */
	return t_until_orphaned(getppid());
}

#define MAXE 4096
/* SIGKILL what is left of `pids`, reap everything, fail. */
static void fail_cleanup(const pid_t *pids, int n)
{
	for (int i = 0; i < n; i++)
		if (!t_dead_or_zombie(pids[i])) {
			fprintf(stderr, "pid %d still alive\n", (int)pids[i]);
			kill(pids[i], SIGKILL);
		}
	t_sleep_ms(100);
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	exit(1);
}

static void parent_killed(int kind)
{
	char *before[MAXE];
	int nb = t_shm_list(before, MAXE);
	atomic_store(started, 0);
	T_EQ(pipe(rep), 0);
	pid_t child = t_spawn(pool_owner, &kind);
	close(rep[1]);
	pid_t pids[W];
	size_t got = 0;
	while (got < sizeof(pids)) {
		struct pollfd pf = { .fd = rep[0], .events = POLLIN };
		T_EQ(poll(&pf, 1, 10000), 1);
		ssize_t n = read(rep[0], (char *)pids + got, sizeof(pids) - got);
		if (n <= 0) {
			int st = t_wait(child, 5);
			fprintf(stderr, "child ended early: %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
			exit(1);
		}
		got += (size_t)n;
	}
	close(rep[0]);

	/* Everything the child started: the zygote and the workers. */
	pid_t tree[64];
	int nt = descendants(child, tree, 64);
	if (kind == 0) {
		for (int i = 0; i < W; i++) {
			int in = 0;
			for (int j = 0; j < nt; j++)
				in |= tree[j] == pids[i];
			T_CHECK(in);
			T_CHECK(pids[i] != child);
		}
		T_CHECK(nt >= W + 1);
	} else {
		for (int i = 0; i < W; i++) /* threads of the child */
			T_CHECK(pids[i] != child);
		nt = 0;
	}
	/* The ThreadPool's "pids" are thread ids: they go with the child. */
	pid_t all[80];
	int na = 0;
	for (int j = 0; j < nt; j++)
		all[na++] = tree[j];
	for (int i = 0; i < W; i++)
		all[na++] = pids[i];

	double t0 = t_now();
	T_EQ(kill(child, SIGKILL), 0);
	t_wait_killed(child, 5);
	/* Orphans come to us (subreaper): reap them as they die. */
	for (;;) {
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		int alive = 0;
		for (int i = 0; i < na; i++)
			alive += !t_dead_or_zombie(all[i]);
		if (!alive)
			break;
		if (t_now() - t0 > 2)
			fail_cleanup(all, na);
		t_sleep_ms(1);
	}
	double dt = t_now() - t0;
	/* And all reaped: nothing of ours is left. */
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	double until = t_now() + 2;
	for (;;) {
		errno = 0;
		if (waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD)
			break;
		T_CHECK(t_now() < until);
		t_sleep_ms(1);
	}
	for (int i = 0; i < na; i++)
		T_CHECK(kill(all[i], 0) == -1 && errno == ESRCH);
	printf("%s: parent killed, %d processes of its pool gone in %.0f ms\n", kind_name[kind], nt,
	       dt * 1e3);

	/* No /dev/shm entry appeared that could be the pool's. */
	char *after[MAXE];
	int na2 = t_shm_list(after, MAXE);
	char tag[32];
	snprintf(tag, sizeof(tag), "%d", (int)child);
	for (int i = 0; i < na2; i++) {
		int old = 0;
		for (int j = 0; j < nb && !old; j++)
			old = strcmp(after[i], before[j]) == 0;
		/* Other tests' segments (the suite may run in parallel) are
		 * "shmp.t..."; anything else new, or naming the child, is ours. */
		int other = strncmp(after[i], "shmp.t", 6) == 0 && !strstr(after[i], tag);
		if (!old && !other && (strncmp(after[i], "shmp.", 5) == 0 || strstr(after[i], tag))) {
			fprintf(stderr, "left in /dev/shm: %s\n", after[i]);
			T_CHECK(!"segment left behind");
		}
		free(after[i]);
	}
	for (int j = 0; j < nb; j++)
		free(before[j]);
}

int main(void)
{
	t_watchdog(90);
	atexit(t_reap_all);
	started = mmap(NULL, sizeof(*started), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		       -1, 0);
	T_CHECK(started != MAP_FAILED);
	fflush(NULL);
	for (int kind = 0; kind < 2; kind++)
		sigint_while_running(kind);
	T_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	for (int kind = 0; kind < 2; kind++)
		parent_killed(kind);
	munmap(started, sizeof(*started));
	return 0;
}
