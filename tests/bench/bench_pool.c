/* Pool and ThreadPool figures beside their peers, all from this run: Python's
 * multiprocessing (../shared/anchors/py_pool.py), a plain fork + pipe pool in
 * C (pipe_pool.c: the pool one writes without shared memory, with tasks
 * written one by one ("eager") and batched), and plain fork + waitpid.
 *
 *   1. apply round trip of a trivial task (mean, and the median call);
 *   2. apply_async burst: 200k tasks submitted, then every result got;
 *   3. map of 1M items (x -> x*x), default chunksize, from private memory
 *      (copied through the pool) and from shared Arrays (in place);
 *   4. imap, chunksize 1;
 *      (2-4: the main figure is a later call on a warm pool; the first
 *      call on a fresh pool is reported too, as "first on pool": it pays
 *      the first touch of the pool's memory in every worker);
 *   5. pool create + one task + close + join + destroy;
 *   6. a CPU-bound map (primes counted in ranges), 1 worker beside 2;
 *   7. the ThreadPool's 1-5, and the process Pool's 1, 2, 4, 5 with poll()
 *      supervision beside io_uring: supervision is chosen once per process,
 *      so a copy of this program runs with SHMP_NO_IO_URING=1 as a server
 *      (`bench_pool --serve`) and takes its turn in every round.
 *
 * Every variant of a figure is measured in turns (a, b, c, a, b, c, ...), and
 * each turn makes its own pool and destroys it: two pools never coexist
 * (idle workers of one would otherwise load the other's figure, and one
 * pool's forks would inherit the other's pipes). Every result is checked: a
 * broken pool must fail here, not post a great number. */
#include "bench.h"
#include "pipe_pool.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>

#define NW 2              /* workers: the machine has 2 cores */
/* Sizes; BENCH_QUICK makes them small (set at the top of main, so the poll()
 * server, which inherits the environment, uses the same). */
static long N_APPLY = 10000;    /* ~2 us each, ~25 us through pipes */
static long N_BURST = 200000L;  /* goal 2 M/s: 0.1 s */
#define N_MAP 1000000L          /* the figure is "1 M items": quick runs too */
static int MAP_WARMUP = 4;      /* untimed maps between the first and the timed ones */
#define MAP_PASSES 5            /* maps timed per turn (median): one is only ~5 ms */
static long N_IMAP = 50000L;    /* goal 1 M/s: 0.05 s */
static long N_CREATE = 10;
#define N_RANGES_MAX 64
static long N_RANGES = 64;      /* CPU-bound map: ranges, one task each */
static long RANGE = 50000L;     /* numbers per range: ~0.4 s on one core */

static void die(const char *what)
{
	fprintf(stderr, "bench_pool: %s\n", what);
	exit(1);
}

static void check(int e, const char *what)
{
	if (e) {
		fprintf(stderr, "bench_pool: %s: %s\n", what, shmp_strerror(e));
		exit(1);
	}
}

/* ---- tasks -------------------------------------------------------------- */

static int t_noop(const void *a, void *r, const struct shmp_task_ctx *c)
{
	(void)c;
	*(long *)r = *(const long *)a;
	return 0;
}

static int t_sq(const void *a, void *r, const struct shmp_task_ctx *c)
{
	(void)c;
	long x = *(const long *)a;
	*(long *)r = x * x;
	return 0;
}

static long count_primes(long lo, long hi)
{
	long c = 0;
	for (long n = lo < 2 ? 2 : lo; n < hi; n++) {
		int p = 1;
		if (n % 2 == 0)
			p = n == 2;
		else
			for (long d = 3; d * d <= n; d += 2)
				if (n % d == 0) {
					p = 0;
					break;
				}
		c += p;
	}
	return c;
}

static int t_primes(const void *a, void *r, const struct shmp_task_ctx *c)
{
	(void)c;
	long k = *(const long *)a;
	*(long *)r = count_primes(k * RANGE, (k + 1) * RANGE);
	return 0;
}


static int64_t p_noop(int64_t x) { return x; }
static int64_t p_sq(int64_t x) { return x * x; }
static int64_t p_primes(int64_t k) { return count_primes(k * RANGE, (k + 1) * RANGE); }
static const pipe_pool_fn pipe_fns[] = { p_noop, p_sq, p_primes };
enum { P_NOOP, P_SQ, P_PRIMES };

/* ---- shared inputs ------------------------------------------------------ */

enum { K_PROC, K_THREAD };

static long *in_priv, *out_priv;      /* private memory: copied */
static shmp_array_t *in_arr, *out_arr; /* shared Arrays, made before any pool */
static long *in_sh, *out_sh;
static long primes_total;

static shmp_pool_t *mk(int kind, int workers)
{
	shmp_pool_t *p = kind == K_PROC ? shmp_pool_create(workers, NULL) : shmp_threadpool_create(workers, NULL);
	if (!p) {
		fprintf(stderr, "bench_pool: pool create: %s\n", strerror(errno));
		exit(1);
	}
	return p;
}

static void rm(shmp_pool_t *p)
{
	check(shmp_pool_close(p), "close");
	check(shmp_pool_join(p, SHMP_FOREVER), "join");
	shmp_pool_destroy(p);
}

static void warm(shmp_pool_t *p)
{
	for (long i = 0; i < 200; i++) {
		long r = -1;
		check(shmp_pool_apply(p, t_noop, &i, sizeof i, &r, sizeof r, NULL), "apply");
		if (r != i)
			die("apply: wrong result");
	}
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* ---- 1. apply round trip: mean us; *extra the median call ------------- */

static double *lat; /* N_APPLY */

static double finish_lat(double t0, double *extra)
{
	double mean = (bench_now() - t0) / N_APPLY * 1e6;
	qsort(lat, N_APPLY, sizeof *lat, cmp_d);
	*extra = lat[N_APPLY / 2] * 1e6;
	return mean;
}

static double f_apply(void *unused_, int kind, double *extra)
{
	(void)unused_;
	shmp_pool_t *p = mk(kind, NW);
	warm(p);
	double t0 = bench_now();
	for (long i = 0; i < N_APPLY; i++) {
		long r = -1;
		double t = bench_now();
		int e = shmp_pool_apply(p, t_noop, &i, sizeof i, &r, sizeof r, NULL);
		lat[i] = bench_now() - t;
		if (e || r != i)
			check(e ? e : -EPROTO, "apply round trip");
	}
	double mean = finish_lat(t0, extra);
	rm(p);
	return mean;
}

static double f_apply_pipe(void *unused_, int unused, double *extra)
{
	(void)unused_;
	(void)unused;
	struct pipe_pool *p = pipe_pool_create(NW, pipe_fns, 3);
	for (long i = 0; i < 200; i++)
		if (pipe_pool_apply(p, P_NOOP, i) != i)
			die("pipe apply: wrong result");
	double t0 = bench_now();
	for (long i = 0; i < N_APPLY; i++) {
		double t = bench_now();
		int64_t r = pipe_pool_apply(p, P_NOOP, i);
		lat[i] = bench_now() - t;
		if (r != i)
			die("pipe apply: wrong result");
	}
	double mean = finish_lat(t0, extra);
	pipe_pool_destroy(p);
	return mean;
}

/* ---- 2. apply_async burst: tasks/s ------------------------------------- */

static long *burst_out;
static shmp_async_t **burst_h;

static double burst_once(shmp_pool_t *p)
{
	memset(burst_out, 0xff, N_BURST * sizeof *burst_out);
	double t = bench_now();
	for (long i = 0; i < N_BURST; i++) {
		burst_h[i] = shmp_pool_apply_async(p, t_sq, &i, sizeof i, &burst_out[i], sizeof(long), NULL);
		if (!burst_h[i])
			check(-errno, "apply_async");
	}
	for (long i = 0; i < N_BURST; i++) {
		check(shmp_async_get(burst_h[i], SHMP_FOREVER, NULL), "async get");
		shmp_async_destroy(burst_h[i]);
	}
	t = bench_now() - t;
	for (long i = 0; i < N_BURST; i++)
		if (burst_out[i] != i * i)
			die("apply_async burst: wrong result");
	return N_BURST / t;
}

/* The second burst on a pool; *extra the first (cold: the task table,
 * the call table and the heap are touched for the first time). */
static double f_burst(void *unused_, int kind, double *extra)
{
	(void)unused_;
	shmp_pool_t *p = mk(kind, NW);
	warm(p);
	*extra = burst_once(p);
	double v = burst_once(p);
	rm(p);
	return v;
}

static double burst_pipe_once(struct pipe_pool *p)
{
	uint64_t *tk = (uint64_t *)burst_h;
	int64_t *out = (int64_t *)burst_out;
	memset(out, 0xff, N_BURST * sizeof *out);
	double t = bench_now();
	for (long i = 0; i < N_BURST; i++)
		tk[i] = pipe_pool_submit(p, P_SQ, i, &out[i]);
	for (long i = 0; i < N_BURST; i++)
		pipe_pool_wait(p, tk[i]);
	t = bench_now() - t;
	for (long i = 0; i < N_BURST; i++)
		if (out[i] != i * i)
			die("pipe burst: wrong result");
	return N_BURST / t;
}

static double f_burst_pipe(void *unused_, int eager, double *extra)
{
	(void)unused_;
	struct pipe_pool *p = pipe_pool_create(NW, pipe_fns, 3);
	pipe_pool_eager(p, eager);
	pipe_pool_apply(p, P_NOOP, 0);
	*extra = burst_pipe_once(p);
	double v = burst_pipe_once(p);
	pipe_pool_destroy(p);
	return v;
}

/* ---- 3. map of 1M: items/s --------------------------------------------- */

static void map_check(const long *out)
{
	for (long i = 0; i < N_MAP; i++)
		if (out[i] != i * i)
			die("map: wrong result");
}

/* One map of N_MAP items: seconds. */
static double map_once(shmp_pool_t *p, const long *in, long *out)
{
	memset(out, 0, N_MAP * sizeof *out);
	double t = bench_now();
	check(shmp_pool_map(p, t_sq, in, sizeof(long), N_MAP, out, sizeof(long), NULL, NULL), "map");
	t = bench_now() - t;
	map_check(out);
	return t;
}

/* how: kind | 2 for the shared Arrays. The median of MAP_PASSES maps once
 * the pool is warm; *extra the first map on the fresh pool (each worker
 * faults in every page of the arrays or segment blocks it touches the
 * first time, and map chunks go to whichever worker is free, so warming
 * up takes a few maps). */
static double f_map(void *unused_, int how, double *extra)
{
	(void)unused_;
	shmp_pool_t *p = mk(how & 1, NW);
	const long *in = how & 2 ? in_sh : in_priv;
	long *out = how & 2 ? out_sh : out_priv;
	double v[MAP_PASSES];
	*extra = N_MAP / map_once(p, in, out);
	for (int k = 0; k < MAP_WARMUP; k++)
		map_once(p, in, out);
	for (int k = 0; k < MAP_PASSES; k++)
		v[k] = map_once(p, in, out);
	rm(p);
	return N_MAP / bench_median(v, MAP_PASSES);
}

static double f_map_pipe(void *unused_, int unused, double *extra)
{
	(void)unused_;
	(void)unused;
	struct pipe_pool *p = pipe_pool_create(NW, pipe_fns, 3);
	double v[MAP_PASSES];
	for (int k = 0; k <= MAP_WARMUP + MAP_PASSES; k++) {
		memset(out_priv, 0, N_MAP * sizeof *out_priv);
		double t = bench_now();
		pipe_pool_map(p, P_SQ, in_priv, out_priv, N_MAP, 0);
		t = bench_now() - t;
		map_check(out_priv);
		if (k == 0)
			*extra = N_MAP / t;
		else if (k > MAP_WARMUP)
			v[k - MAP_WARMUP - 1] = t;
	}
	pipe_pool_destroy(p);
	return N_MAP / bench_median(v, MAP_PASSES);
}

/* The same loop in the caller, one core: what a pool has to beat at all. */
static double f_map_loop(void *unused_, int unused, double *extra)
{
	(void)unused_;
	(void)unused, (void)extra;
	double v[MAP_PASSES];
	for (int k = 0; k < MAP_PASSES; k++) {
		memset(out_priv, 0, N_MAP * sizeof *out_priv);
		double t = bench_now();
		for (long i = 0; i < N_MAP; i++) {
			struct shmp_task_ctx c = { 0 };
			t_sq(&in_priv[i], &out_priv[i], &c);
		}
		v[k] = bench_now() - t;
		map_check(out_priv);
	}
	return N_MAP / bench_median(v, MAP_PASSES);
}

/* ---- 4. imap, chunksize 1: items/s ------------------------------------- */

static double imap_once(shmp_pool_t *p)
{
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = 1);
	double t = bench_now();
	shmp_imap_t *it = shmp_pool_imap(p, t_sq, in_priv, sizeof(long), N_IMAP, sizeof(long), NULL, NULL, &o);
	if (!it)
		check(-errno, "imap");
	long k = 0, v;
	uint64_t idx;
	int e;
	while ((e = shmp_imap_next(it, &v, &idx, SHMP_FOREVER, NULL)) == 1) {
		if ((long)idx != k || v != k * k)
			die("imap: wrong result or order");
		k++;
	}
	t = bench_now() - t;
	shmp_imap_destroy(it);
	if (e || k != N_IMAP)
		check(e ? e : -EPROTO, "imap end");
	return N_IMAP / t;
}

/* The second imap on a pool; *extra the first. kind | 4: the first imap
 * is the pool's first call (no applies before it). */
static double f_imap(void *unused_, int kind, double *extra)
{
	(void)unused_;
	shmp_pool_t *p = mk(kind & 1, NW);
	if (!(kind & 4))
		warm(p);
	*extra = imap_once(p);
	double v = imap_once(p);
	rm(p);
	return v;
}

static double imap_pipe_once(struct pipe_pool *p)
{
	double t = bench_now();
	struct pipe_pool_imap *it = pipe_pool_imap(p, P_SQ, (const int64_t *)in_priv, N_IMAP);
	long k = 0;
	int64_t v;
	while (pipe_pool_imap_next(it, &v)) {
		if (v != k * k)
			die("pipe imap: wrong result or order");
		k++;
	}
	t = bench_now() - t;
	if (k != N_IMAP)
		die("pipe imap: short");
	return N_IMAP / t;
}

static double f_imap_pipe(void *unused_, int eager, double *extra)
{
	(void)unused_;
	struct pipe_pool *p = pipe_pool_create(NW, pipe_fns, 3);
	pipe_pool_eager(p, eager);
	pipe_pool_apply(p, P_NOOP, 0);
	*extra = imap_pipe_once(p);
	double v = imap_pipe_once(p);
	pipe_pool_destroy(p);
	return v;
}

/* ---- 5. create + one task + close + join + destroy: ms ---------------- */

static double f_create(void *unused_, int kind, double *extra)
{
	(void)unused_;
	(void)extra;
	double t = bench_now();
	for (long i = 0; i < N_CREATE; i++) {
		shmp_pool_t *p = mk(kind, NW);
		long r = -1;
		check(shmp_pool_apply(p, t_noop, &i, sizeof i, &r, sizeof r, NULL), "apply");
		if (r != i)
			die("create: wrong result");
		rm(p);
	}
	return (bench_now() - t) / N_CREATE * 1e3;
}

static double f_create_pipe(void *unused_, int unused, double *extra)
{
	(void)unused_;
	(void)unused, (void)extra;
	double t = bench_now();
	for (long i = 0; i < N_CREATE; i++) {
		struct pipe_pool *p = pipe_pool_create(NW, pipe_fns, 3);
		if (pipe_pool_apply(p, P_NOOP, i) != i)
			die("pipe create: wrong result");
		pipe_pool_destroy(p);
	}
	return (bench_now() - t) / N_CREATE * 1e3;
}

/* The floor: fork NW children that exit at once, and reap them. */
static double f_fork(void *unused_, int unused, double *extra)
{
	(void)unused_;
	(void)unused, (void)extra;
	double t = bench_now();
	for (long i = 0; i < N_CREATE; i++) {
		pid_t c[NW];
		for (int k = 0; k < NW; k++)
			if ((c[k] = fork()) == 0)
				_exit(0);
			else if (c[k] < 0)
				die("fork");
		for (int k = 0; k < NW; k++)
			waitpid(c[k], NULL, 0);
	}
	return (bench_now() - t) / N_CREATE * 1e3;
}

/* ---- 6. CPU-bound map: seconds ----------------------------------------- */

static double f_cpu(void *unused_, int workers, double *extra)
{
	(void)unused_;
	(void)extra;
	long in[N_RANGES_MAX], out[N_RANGES_MAX];
	for (long k = 0; k < N_RANGES; k++)
		in[k] = k;
	shmp_pool_t *p = mk(K_PROC, workers);
	warm(p);
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = 1);
	double t = bench_now();
	check(shmp_pool_map(p, t_primes, in, sizeof(long), N_RANGES, out, sizeof(long), &o, NULL), "cpu map");
	t = bench_now() - t;
	long s = 0;
	for (int k = 0; k < N_RANGES; k++)
		s += out[k];
	if (s != primes_total)
		die("cpu map: wrong count");
	rm(p);
	return t;
}

static double f_cpu_pipe(void *unused_, int workers, double *extra)
{
	(void)unused_;
	(void)extra;
	int64_t in[N_RANGES_MAX], out[N_RANGES_MAX];
	for (long k = 0; k < N_RANGES; k++)
		in[k] = k;
	struct pipe_pool *p = pipe_pool_create(workers, pipe_fns, 3);
	pipe_pool_apply(p, P_NOOP, 0);
	double t = bench_now();
	pipe_pool_map(p, P_PRIMES, in, out, N_RANGES, 1);
	t = bench_now() - t;
	long s = 0;
	for (int k = 0; k < N_RANGES; k++)
		s += out[k];
	if (s != primes_total)
		die("pipe cpu map: wrong count");
	pipe_pool_destroy(p);
	return t;
}

/* ---- the poll() server -------------------------------------------------- */

typedef bench_fn fig_fn;
static const fig_fn figs[] = { f_apply, f_burst, f_imap, f_create };
enum { FIG_APPLY, FIG_BURST, FIG_IMAP, FIG_CREATE };

static int supervision(void)
{
	shmp_pool_t *p = mk(K_PROC, 1);
	struct shmp_pool_stats st;
	check(shmp_pool_stats(p, &st), "stats");
	rm(p);
	return st.supervision;
}

/* `--serve`: read "fig kind" lines, answer "value extra" lines. */
static int serve(void)
{
	int fig, kind;
	printf("%d\n", supervision());
	fflush(stdout);
	while (scanf("%d %d", &fig, &kind) == 2) {
		if (fig < 0 || fig >= (int)(sizeof figs / sizeof *figs))
			return 1;
		double x = 0, v = figs[fig](NULL, kind, &x);
		printf("%.17g %.17g\n", v, x);
		fflush(stdout);
	}
	return 0;
}

static FILE *srv_in, *srv_out;
static pid_t srv_pid;
static int srv_supervision = -1;

static void server_start(void)
{
	int a[2], b[2];
	if (pipe2(a, O_CLOEXEC) || pipe2(b, O_CLOEXEC))
		die("pipe");
	fflush(stdout);
	srv_pid = fork();
	if (srv_pid < 0)
		die("fork");
	if (srv_pid == 0) {
		dup2(a[0], 0);
		dup2(b[1], 1);
		setenv("SHMP_NO_IO_URING", "1", 1);
		execl("/proc/self/exe", "bench_pool", "--serve", (char *)NULL);
		_exit(127);
	}
	close(a[0]);
	close(b[1]);
	srv_in = fdopen(a[1], "w");
	srv_out = fdopen(b[0], "r");
	if (!srv_in || !srv_out || fscanf(srv_out, "%d", &srv_supervision) != 1)
		die("the poll() server did not start");
}

static void server_stop(void)
{
	fclose(srv_in);
	fclose(srv_out);
	int st;
	if (waitpid(srv_pid, &st, 0) != srv_pid || !WIFEXITED(st) || WEXITSTATUS(st))
		die("the poll() server failed");
}

/* Figure `fig` of `kind`, measured by the poll() server. */
static double remote(void *unused_, int fig_kind, double *extra)
{
	(void)unused_;
	double v;
	fprintf(srv_in, "%d %d\n", fig_kind >> 4, fig_kind & 15);
	fflush(srv_in);
	if (fscanf(srv_out, "%lf %lf", &v, extra) != 2)
		die("the poll() server failed a measurement");
	return v;
}
#define REMOTE(fig, kind) ((fig) << 4 | (kind))

/* ---- rounds: every variant in turn, medians, quiet and loaded (bench.h) -- */

#define V(fn, arg) BENCH_VAR(fn, NULL, arg)
#define F(v) bench_fig(&(v))
#define X(v) bench_xfig(&(v))
#define M(f) bench_fig_scale(f, 1e-6)

static struct bench_fig py(const char *key, double scale)
{
	return bench_python_fig(key, scale);
}

int main(int argc, char **argv)
{
	alarm(bench_quick() ? 300 : 3600); /* a hung pool must not hang the benchmark run */
	if (bench_quick()) {
		N_APPLY = 500;
		N_BURST = 5000;
		MAP_WARMUP = 0;
		N_IMAP = 2000;
		N_CREATE = 2;
		N_RANGES = 4;
		RANGE = 5000;
	}
	/* Inputs and the shared Arrays first: the Arrays must be mapped
	 * before any pool is created to go by reference. */
	in_arr = shmp_array_create('q', N_MAP, NULL, NULL);
	out_arr = shmp_array_create('q', N_MAP, NULL, NULL);
	if (!in_arr || !out_arr)
		die("array create");
	in_sh = shmp_array_ptr(in_arr);
	out_sh = shmp_array_ptr(out_arr);
	in_priv = malloc(N_MAP * sizeof(long));
	out_priv = malloc(N_MAP * sizeof(long));
	burst_out = malloc((size_t)N_BURST * sizeof(long));
	burst_h = malloc((size_t)N_BURST * sizeof *burst_h);
	lat = malloc((size_t)N_APPLY * sizeof *lat);
	if (!in_priv || !out_priv || !burst_out || !burst_h || !lat)
		die("out of memory");
	for (long i = 0; i < N_MAP; i++)
		in_priv[i] = in_sh[i] = i;
	for (long k = 0; k < N_RANGES; k++)
		primes_total += count_primes(k * RANGE, (k + 1) * RANGE);

	if (argc > 1 && !strcmp(argv[1], "--serve"))
		return serve();

	bench_header("bench_pool", "Pool and ThreadPool beside a fork+pipe pool, fork+waitpid and Python");
	/* Python's anchor first, while nothing of ours runs. */
	py("pool_apply_rtt_us", 1);
	server_start();
	int sup = supervision();
	printf("# Pool of %d workers; supervision: this process %s, server %s\n", NW, sup ? "io_uring" : "poll",
	       srv_supervision ? "io_uring" : "poll");
	if (sup == srv_supervision)
		printf("# WARNING: both sides use %s: the io_uring/poll comparison is void here\n",
		       sup ? "io_uring" : "poll");
	printf("# every turn makes its own pool and destroys it; \"first\" is the first call on a fresh pool\n");
	fflush(stdout);

	/* 5 first, while this process is small (fork copies page tables). */
	struct bench_var c[] = { V(f_create, K_PROC), V(remote, REMOTE(FIG_CREATE, K_PROC)), V(f_create, K_THREAD),
				 V(f_create_pipe, 0), V(f_fork, 0) };
	bench_run(c, 5);

	struct bench_var a[] = { V(f_apply, K_PROC), V(remote, REMOTE(FIG_APPLY, K_PROC)), V(f_apply, K_THREAD),
				 V(f_apply_pipe, 0) };
	bench_run(a, 4);
	bench_section("1. apply round trip, trivial task (us, lower is better)");
	bench_line("apply round trip (mean)", "us", F(a[0]), "Python multiprocessing (1 run)", py("pool_apply_rtt_us", 1),
		   "<= 0.01");
	bench_line("apply round trip (mean)", "us", F(a[0]), "pipe pool", F(a[3]), "<= 0.1");
	bench_line("apply round trip (median call)", "us", X(a[0]), "pipe pool", X(a[3]), "info");
	bench_line("apply round trip (mean), io_uring", "us", F(a[0]), "same, poll() supervision", F(a[1]), "info");
	bench_line("apply round trip (median), io_uring", "us", X(a[0]), "same, poll() supervision", X(a[1]), "info");
	bench_line("apply round trip (mean), ThreadPool", "us", F(a[2]), "Python multiprocessing (1 run)",
		   py("pool_apply_rtt_us", 1), "<= 0.01");
	bench_line("apply round trip (median), ThreadPool", "us", X(a[2]), "pipe pool", X(a[3]), "info");

	struct bench_var b[] = { V(f_burst, K_PROC), V(remote, REMOTE(FIG_BURST, K_PROC)), V(f_burst, K_THREAD),
				 V(f_burst_pipe, 1), V(f_burst_pipe, 0) };
	bench_run(b, 5);
	bench_section("2. apply_async burst, trivial tasks (M tasks/s, higher is better)");
	bench_line("apply_async burst", "M/s", M(F(b[0])), "pipe pool, batched writev", M(F(b[4])), ">= 1.0");
	bench_line("apply_async burst", "M/s", M(F(b[0])), "pipe pool, write per task", M(F(b[3])), "info");
	bench_line("apply_async burst", "M/s", M(F(b[0])), "Python multiprocessing (1 run)",
		   py("pool_apply_async_tasks_per_s", 1e-6), ">= 100");
	bench_line("apply_async burst, io_uring", "M/s", M(F(b[0])), "same, poll() supervision", M(F(b[1])), "info");
	bench_line("apply_async burst, first on pool", "M/s", M(X(b[0])), "pipe pool batched, first", M(X(b[4])),
		   "info");
	bench_line("apply_async burst, ThreadPool", "M/s", M(F(b[2])), "pipe pool, batched writev", M(F(b[4])),
		   "info");

	struct bench_var m[] = { V(f_map, K_PROC), V(f_map, K_PROC | 2), V(f_map, K_THREAD), V(f_map_pipe, 0),
				 V(f_map_loop, 0) };
	bench_run(m, 5);
	bench_section("3. map of 1 M trivial items x -> x*x (M items/s, higher is better)");
	bench_line("map 1M, copied, 2 workers", "M/s", M(F(m[0])), "loop in the caller (1 core)", M(F(m[4])),
		   ">= 1.0");
	bench_line("map 1M, copied, 2 workers", "M/s", M(F(m[0])), "pipe pool", M(F(m[3])), "info");
	bench_line("map 1M, copied, 2 workers", "M/s", M(F(m[0])), "Python multiprocessing (1 run)",
		   py("pool_map_items_per_s", 1e-6), ">= 100");
	bench_line("map 1M, shared Arrays, 2 workers", "M/s", M(F(m[1])), "loop in the caller (1 core)", M(F(m[4])),
		   ">= 1.0");
	bench_line("map 1M, shared Arrays, 2 workers", "M/s", M(F(m[1])), "pipe pool", M(F(m[3])), "info");
	bench_line("map 1M, copied, first on pool", "M/s", M(X(m[0])), "pipe pool, first map", M(X(m[3])), "info");
	bench_line("map 1M, shared, first on pool", "M/s", M(X(m[1])), "pipe pool, first map", M(X(m[3])), "info");
	bench_line("map 1M, ThreadPool", "M/s", M(F(m[2])), "loop in the caller (1 core)", M(F(m[4])), "info");

	struct bench_var im[] = { V(f_imap, K_PROC | 4), V(f_imap, K_PROC), V(remote, REMOTE(FIG_IMAP, K_PROC)),
				  V(f_imap, K_THREAD), V(f_imap_pipe, 1), V(f_imap_pipe, 0) };
	bench_run(im, 6);
	bench_section("4. imap, chunksize 1 (M items/s, higher is better)");
	bench_line("imap chunksize 1, first call on a new pool", "M/s", M(X(im[0])), "same pool warm (2nd imap)",
		   M(F(im[0])), ">= 0.5");
	bench_line("imap chunksize 1, first after 200 applies", "M/s", M(X(im[1])), "same pool warm (2nd imap)",
		   M(F(im[1])), ">= 0.5");
	bench_line("imap chunksize 1, warm", "M/s", M(F(im[1])), "pipe pool, batched writev", M(F(im[5])), "info");
	bench_line("imap chunksize 1, warm", "M/s", M(F(im[1])), "pipe pool, write per task", M(F(im[4])), "info");
	bench_line("imap chunksize 1, warm", "M/s", M(F(im[1])), "Python multiprocessing (1 run)",
		   py("pool_imap_chunk1_items_per_s", 1e-6), ">= 50");
	bench_line("imap chunksize 1, warm, io_uring", "M/s", M(F(im[1])), "same, poll() supervision", M(F(im[2])),
		   "info");
	bench_line("imap chunksize 1, ThreadPool, warm", "M/s", M(F(im[3])), "pipe pool, batched writev",
		   M(F(im[5])), "info");

	bench_section("5. create + one apply + close + join + destroy (ms, lower is better)");
	bench_line("create + apply + close + join", "ms", F(c[0]), "fork+pipe pool", F(c[3]), "<= 1.0");
	bench_line("create + apply + close + join", "ms", F(c[0]), "fork+waitpid of 2 children", F(c[4]), "info");
	bench_line("create + apply + close + join", "ms", F(c[0]), "Python multiprocessing (1 run)",
		   py("pool_create_apply_close_ms", 1), "<= 0.1");
	bench_line("create + apply + ..., io_uring", "ms", F(c[0]), "same, poll() supervision", F(c[1]), "info");
	bench_line("create + apply + ..., ThreadPool", "ms", F(c[2]), "fork+pipe pool", F(c[3]), "info");

	struct bench_var u[] = { V(f_cpu, 1), V(f_cpu, 2), V(f_cpu_pipe, 1), V(f_cpu_pipe, 2) };
	bench_run(u, 4);
	bench_section("6. CPU-bound map, primes in ranges (s, lower is better; speed-up, higher is better)");
	bench_line("cpu map, 2 workers", "s", F(u[1]), "pipe pool, 2 workers", F(u[3]), "<= 1.05");
	bench_line("cpu map speed-up, 2 vs 1 worker", "x", bench_fig_div(F(u[0]), F(u[1])), "pipe pool speed-up",
		   bench_fig_div(F(u[2]), F(u[3])), "shmp >= 1.8 (absolute)");

	server_stop();
	shmp_array_destroy(in_arr);
	shmp_array_destroy(out_arr);
	free(in_priv);
	free(out_priv);
	free(burst_out);
	free(burst_h);
	free(lat);
	return 0;
}
