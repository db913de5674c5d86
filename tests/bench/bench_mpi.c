/* bench_mpi: the MPI component beside a hand-written MPI program doing the
 * same work and beside the local shmp Pool, in the same run, quiet and
 * loaded (bench.h: variants in turns, medians, one report line per figure):
 *
 *   ./build.sh bench mpi          (with the others: ./build.sh bench)
 *   ./tests/bench/bench_mpi [map] [apply] [counter]
 *   mpirun -np 3 ./tests/bench/bench_mpi ...
 *
 * Run alone (not under mpirun) it starts itself again under mpiexec with 3
 * ranks on this machine (--oversubscribe and, as root, Open MPI's
 * OMPI_ALLOW_RUN_AS_ROOT* variables). BENCH_QUICK, BENCH_REPS and
 * BENCH_STATES work as for the other benchmarks; naming sections runs only
 * those.
 *
 *  1. map: a CPU-bound map, shmp's cluster Pool (a pool per rank, one
 *     worker each) vs MPI_Scatterv / compute / MPI_Gatherv of the same
 *     items on the same ranks vs the local shmp Pool on rank 0 with as many
 *     workers (goal: cluster >= 0.9 x hand-written MPI);
 *  2. apply: a trivial apply to another rank, round trip, vs an MPI
 *     ping-pong round trip of 8 bytes between the same two ranks vs the
 *     local Pool's apply (goal: <= 2 x the ping-pong);
 *  3. counter: a counter in rank 0's window, every rank adding:
 *     shmp_mpi_value_add vs a plain MPI_Fetch_and_op + MPI_Win_flush loop
 *     under one MPI_Win_lock_all epoch on the same kind of window vs the
 *     local shmp_value_add from as many processes (goal: >= 0.9 x the
 *     plain loop).
 *
 * Every rank runs every variant in the same order (bench_rounds), so the
 * collective ones meet; the figure is rank 0's (the others return 0).
 * Ranks that take no part in a variant wait in a sleeping barrier, so they
 * do not take a CPU from it. The loaded state's loaders (one busy loop per
 * CPU per machine) are started by the first rank of each machine and
 * stopped before the next state (bench.h's loaders: they die with it).
 */
#include "shmp/mpi.h"
#include "bench.h"

static int rank, size;
static MPI_Comm node_comm;

/* A barrier the ranks wait in by sleeping, not by spinning in MPI. */
static void idle_barrier(void)
{
	MPI_Request rq;
	int done = 0;
	MPI_Ibarrier(MPI_COMM_WORLD, &rq);
	while (MPI_Test(&rq, &done, MPI_STATUS_IGNORE), !done) {
		struct timespec ts = { 0, 200000 };
		nanosleep(&ts, NULL);
	}
}

static void die(const char *what)
{
	fprintf(stderr, "bench_mpi: rank %d: %s failed\n", rank, what);
	MPI_Abort(MPI_COMM_WORLD, 1);
}

/* ---- the loaded state, MPI-wide ----------------------------------------- */

/* Quiet or loaded on every machine: the first rank of each starts or stops
 * its loaders; everyone waits for that. */
static void mpi_state_enter(int s)
{
	int nr;
	MPI_Comm_rank(node_comm, &nr);
	if (nr == 0)
		bench_state_enter(s);
	idle_barrier();
}

/* bench_run for MPI: quiet rounds, then loaded rounds, every rank in step. */
static void mpi_run(struct bench_var *vs, int n)
{
	bench_run_states(vs, n, mpi_state_enter);
	mpi_state_enter(BENCH_QUIET);
}

/* ---- 1. CPU-bound map ------------------------------------------------- */

enum { BURN = 20000 };
static uint64_t burn_one(uint64_t x)
{
	for (int i = 0; i < BURN; i++)
		x = x * 6364136223846793005ull + 1442695040888963407ull;
	return x;
}

static int burn(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	(void)c;
	*(uint64_t *)res = burn_one(*(const uint64_t *)arg);
	return 0;
}

static size_t map_n(void)
{
	return (size_t)bench_n(6000, 600);
}

static uint64_t *map_in, *map_out;
static shmp_pool_t *local_pool; /* rank 0: as many workers as ranks */

static void map_check(void)
{
	if (rank != 0)
		return;
	for (size_t i = 0; i < map_n(); i += 97)
		if (map_out[i] != burn_one(map_in[i]))
			die("map result check");
	memset(map_out, 0, map_n() * sizeof *map_out);
}

/* items/s of the cluster Pool (root's figure; 0 elsewhere). The pool's
 * creation and teardown are not timed. */
static double map_cluster(void *unused, int k, double *x)
{
	(void)unused, (void)k, (void)x;
	struct shmp_mpi_pool_opts o = SHMP_OPTS(shmp_mpi_pool_opts, .flags = SHMP_MPI_PER_RANK);
	shmp_mpi_pool_t *p = shmp_mpi_pool_create(MPI_COMM_WORLD, 1, &o);
	if (!p)
		die("shmp_mpi_pool_create");
	double rate = 0;
	if (shmp_mpi_pool_is_root(p)) {
		double t0 = bench_now();
		int r = shmp_mpi_pool_map(p, burn, map_in, sizeof *map_in, map_n(), map_out, sizeof *map_out, NULL,
					  NULL);
		double t1 = bench_now();
		if (r)
			die("shmp_mpi_pool_map");
		rate = (double)map_n() / (t1 - t0);
		map_check();
		shmp_mpi_pool_close(p);
	}
	shmp_mpi_pool_join(p, SHMP_FOREVER);
	shmp_mpi_pool_destroy(p);
	return rate;
}

/* The hand-written MPI program: scatter, compute, gather. */
static double map_mpi(void *unused, int k, double *x)
{
	(void)unused, (void)k, (void)x;
	size_t n = map_n();
	int *counts = malloc((size_t)size * sizeof *counts), *displs = malloc((size_t)size * sizeof *displs);
	for (int r = 0, d = 0; r < size; r++) {
		counts[r] = (int)(n / (size_t)size + ((size_t)r < n % (size_t)size));
		displs[r] = d;
		d += counts[r];
	}
	uint64_t *mine = malloc((size_t)counts[rank] * sizeof *mine);
	uint64_t *res = malloc((size_t)counts[rank] * sizeof *res);
	MPI_Barrier(MPI_COMM_WORLD);
	double t0 = bench_now();
	MPI_Scatterv(map_in, counts, displs, MPI_UINT64_T, mine, counts[rank], MPI_UINT64_T, 0, MPI_COMM_WORLD);
	for (int i = 0; i < counts[rank]; i++)
		res[i] = burn_one(mine[i]);
	MPI_Gatherv(res, counts[rank], MPI_UINT64_T, map_out, counts, displs, MPI_UINT64_T, 0, MPI_COMM_WORLD);
	double t1 = bench_now();
	free(counts);
	free(displs);
	free(mine);
	free(res);
	map_check();
	idle_barrier();
	return rank == 0 ? (double)n / (t1 - t0) : 0;
}

static double map_local(void *unused, int k, double *x)
{
	(void)unused, (void)k, (void)x;
	double rate = 0;
	if (rank == 0) {
		double t0 = bench_now();
		if (shmp_pool_map(local_pool, burn, map_in, sizeof *map_in, map_n(), map_out, sizeof *map_out, NULL,
				  NULL))
			die("shmp_pool_map");
		rate = (double)map_n() / (bench_now() - t0);
		map_check();
	}
	idle_barrier();
	return rate;
}

/* ---- 2. trivial apply round trip -------------------------------------- */

static int triv(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	(void)c;
	*(int64_t *)res = *(const int64_t *)arg + 1;
	return 0;
}

static int rt_k(void)
{
	return (int)bench_n(3000, 300);
}

/* Up to k round trips by trip(i, arg) (which checks its answer), stopping
 * early after bench_budget() seconds: the mean us per trip; *median_us the
 * median trip. */
static double timed_trips(int k, void (*trip)(int i, void *arg), void *arg, double *median_us)
{
	double *lat = malloc((size_t)k * sizeof *lat);
	if (!lat)
		die("malloc");
	double t0 = bench_now(), end = t0 + bench_budget(), tc = t0;
	int i;
	for (i = 0; i < k; i++) {
		trip(i, arg);
		double t = bench_now();
		lat[i] = t - tc;
		tc = t;
		if ((i & 15) == 15 && t > end) {
			i++;
			break;
		}
	}
	*median_us = i > 0 ? bench_median(lat, i) * 1e6 : 0;
	free(lat);
	return i > 0 ? (tc - t0) / i * 1e6 : 0;
}

/* One apply on another rank, its answer checked. */
static void apply_trip(int i, void *p)
{
	int64_t a = i, y = 0;
	if (shmp_mpi_pool_apply(p, triv, &a, sizeof a, &y, sizeof y, NULL) || y != i + 1)
		die("shmp_mpi_pool_apply");
}

/* One 8-byte ping to rank 1 and its pong, checked. */
static void ping_trip(int i, void *unused)
{
	(void)unused;
	int64_t x = i;
	MPI_Send(&x, 1, MPI_INT64_T, 1, 7, MPI_COMM_WORLD);
	MPI_Recv(&x, 1, MPI_INT64_T, 1, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
	if (x != i + 1)
		die("ping-pong");
}

/* Mean us per apply on another rank (the root's rank runs no pool; the
 * apply goes to rank 1's), x[0] the median call; stops early after
 * bench_budget() seconds. */
static double apply_cluster(void *unused, int k, double *x)
{
	(void)unused, (void)k;
	struct shmp_mpi_pool_opts o =
		SHMP_OPTS(shmp_mpi_pool_opts, .flags = SHMP_MPI_PER_RANK | SHMP_MPI_ROOT_IDLE);
	shmp_mpi_pool_t *p = shmp_mpi_pool_create(MPI_COMM_WORLD, 1, &o);
	if (!p)
		die("shmp_mpi_pool_create");
	double us = 0;
	if (shmp_mpi_pool_is_root(p)) {
		int64_t a = 1, y = 0;
		for (int i = 0; i < 50; i++)
			shmp_mpi_pool_apply(p, triv, &a, sizeof a, &y, sizeof y, NULL);
		us = timed_trips(rt_k(), apply_trip, p, &x[0]);
		shmp_mpi_pool_close(p);
	}
	shmp_mpi_pool_join(p, SHMP_FOREVER);
	shmp_mpi_pool_destroy(p);
	return us;
}

/* Rank 0 <-> rank 1, 8 bytes each way; rank 0 says when to stop. */
static double pingpong(void *unused, int k_, double *xs)
{
	(void)unused, (void)k_;
	int k = rt_k() * 5;
	int64_t x = 0;
	double us = 0;
	MPI_Barrier(MPI_COMM_WORLD);
	if (rank == 0) {
		us = timed_trips(k, ping_trip, NULL, &xs[0]);
		x = -1;
		MPI_Send(&x, 1, MPI_INT64_T, 1, 7, MPI_COMM_WORLD);
	} else if (rank == 1) {
		for (;;) {
			MPI_Recv(&x, 1, MPI_INT64_T, 0, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
			if (x < 0)
				break;
			x++;
			MPI_Send(&x, 1, MPI_INT64_T, 0, 7, MPI_COMM_WORLD);
		}
	}
	idle_barrier();
	return us;
}

static double apply_local(void *unused, int k, double *x)
{
	(void)unused, (void)k, (void)x;
	double us = 0;
	if (rank == 0) {
		int64_t a = 1, y;
		for (int i = 0; i < 50; i++)
			shmp_pool_apply(local_pool, triv, &a, sizeof a, &y, sizeof y, NULL);
		double t0 = bench_now();
		for (int i = 0; i < rt_k(); i++)
			if (shmp_pool_apply(local_pool, triv, &a, sizeof a, &y, sizeof y, NULL))
				die("shmp_pool_apply");
		us = (bench_now() - t0) / rt_k() * 1e6;
	}
	idle_barrier();
	return us;
}

/* ---- 3. the window counter -------------------------------------------- */

static int adds(void)
{
	return (int)bench_n(100000, 20000);
}

static shmp_mpi_value_t *counter;
static MPI_Win plain_win;
static int64_t *plain_base; /* rank 0's */
static shmp_value_t *local_counter;

/* adds/s of all ranks together: size * adds / the slowest rank's time */
static double together(double t)
{
	double tmax = 0;
	MPI_Reduce(&t, &tmax, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
	return rank == 0 ? (double)size * adds() / tmax : 0;
}

static double counter_shmp(void *unused, int k, double *x)
{
	(void)unused, (void)k, (void)x;
	int64_t v0 = 0, v1 = 0;
	if (rank == 0 && shmp_mpi_value_load(counter, &v0))
		die("shmp_mpi_value_load");
	MPI_Barrier(MPI_COMM_WORLD);
	double t0 = bench_now();
	for (int i = 0; i < adds(); i++)
		if (shmp_mpi_value_add(counter, 1, NULL))
			die("shmp_mpi_value_add");
	double r = together(bench_now() - t0);
	MPI_Barrier(MPI_COMM_WORLD);
	if (rank == 0 && (shmp_mpi_value_load(counter, &v1) || v1 - v0 != (int64_t)size * adds()))
		die("the window counter's count");
	return r;
}

static double counter_mpi(void *unused, int k, double *x)
{
	(void)unused, (void)k, (void)x;
	MPI_Barrier(MPI_COMM_WORLD);
	double t0 = bench_now();
	int64_t one = 1, old;
	for (int i = 0; i < adds(); i++) {
		MPI_Fetch_and_op(&one, &old, MPI_INT64_T, 0, 0, MPI_SUM, plain_win);
		MPI_Win_flush(0, plain_win);
	}
	return together(bench_now() - t0);
}

static double counter_local(void *unused, int k, double *x)
{
	(void)unused, (void)k, (void)x;
	double rate = 0;
	if (rank == 0) {
		int fds[2];
		if (pipe(fds))
			die("pipe");
		pid_t kids[64];
		size_t nk = size < 64 ? (size_t)size : 64;
		fflush(NULL);
		for (size_t j = 0; j < nk; j++) {
			if ((kids[j] = fork()) == 0) {
				char go;
				prctl(PR_SET_PDEATHSIG, SIGKILL);
				if (read(fds[0], &go, 1) != 1)
					_exit(1);
				for (int i = 0; i < adds(); i++)
					shmp_value_add(local_counter, 1, NULL);
				_exit(0);
			}
		}
		double t0 = bench_now();
		static const char go[64];
		if (write(fds[1], go, nk) != (ssize_t)nk)
			die("write");
		for (size_t j = 0; j < nk; j++)
			waitpid(kids[j], NULL, 0);
		rate = (double)nk * adds() / (bench_now() - t0);
		close(fds[0]);
		close(fds[1]);
	}
	idle_barrier();
	return rate;
}

/* ---- sections ---------------------------------------------------------- */

static void section_map(void)
{
	size_t n = map_n();
	map_in = malloc(n * sizeof *map_in);
	map_out = calloc(n, sizeof *map_out);
	for (size_t i = 0; i < n; i++)
		map_in[i] = i * 0x9e3779b97f4a7c15ull;
	struct bench_var v[3] = { BENCH_VAR(map_cluster, NULL, 0), BENCH_VAR(map_mpi, NULL, 0),
				  BENCH_VAR(map_local, NULL, 0) };
	mpi_run(v, 3);
	if (rank == 0) {
		char t[128];
		snprintf(t, sizeof t, "CPU-bound map: %zu items of %d LCG steps on %d ranks", n, BURN, size);
		bench_section(t);
		bench_line("map, cluster Pool (1 worker per rank)", "items/s", bench_fig(&v[0]),
			   "MPI Scatterv/compute/Gatherv", bench_fig(&v[1]), ">= 0.9");
		bench_line("map, cluster Pool (1 worker per rank)", "items/s", bench_fig(&v[0]),
			   "local shmp Pool, as many workers", bench_fig(&v[2]), "info");
	}
	free(map_in);
	free(map_out);
}

static void section_apply(void)
{
	struct bench_var v[3] = { BENCH_VAR(apply_cluster, NULL, 0), BENCH_VAR(pingpong, NULL, 0),
				  BENCH_VAR(apply_local, NULL, 0) };
	mpi_run(v, 3);
	if (rank == 0) {
		bench_section("trivial apply to another rank, round trip (mean; median of the calls as info)");
		bench_line("apply to another rank, round trip", "us", bench_fig(&v[0]), "MPI ping-pong, 8 bytes",
			   bench_fig(&v[1]), "<= 2");
		bench_line("apply to another rank, round trip (median)", "us", bench_xfig(&v[0]),
			   "MPI ping-pong, 8 bytes (median)", bench_xfig(&v[1]), "info");
		bench_line("apply to another rank, round trip", "us", bench_fig(&v[0]), "local shmp Pool apply",
			   bench_fig(&v[2]), "info");
	}
}

static void section_counter(void)
{
	counter = shmp_mpi_value_create(MPI_COMM_WORLD, 'q', NULL, NULL);
	if (!counter)
		die("shmp_mpi_value_create");
	if (rank == 0 && !(local_counter = shmp_value_create('q', NULL, NULL)))
		die("shmp_value_create");
	/* The plain peer: the same kind of window shmp makes (a shared-memory
	 * one when every rank is on one machine), one epoch for the run. */
	int nsize, one_node, all = 0;
	MPI_Comm_size(node_comm, &nsize);
	one_node = nsize == size;
	MPI_Allreduce(&one_node, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
	void *base;
	if (all)
		MPI_Win_allocate_shared(rank == 0 ? 8 : 0, 1, MPI_INFO_NULL, MPI_COMM_WORLD, &base, &plain_win);
	else
		MPI_Win_allocate(rank == 0 ? 8 : 0, 1, MPI_INFO_NULL, MPI_COMM_WORLD, &base, &plain_win);
	plain_base = base;
	if (rank == 0)
		memset(base, 0, 8);
	MPI_Win_lock_all(MPI_MODE_NOCHECK, plain_win);
	MPI_Win_sync(plain_win);
	MPI_Barrier(MPI_COMM_WORLD);
	struct bench_var v[3] = { BENCH_VAR(counter_shmp, NULL, 0), BENCH_VAR(counter_mpi, NULL, 0),
				  BENCH_VAR(counter_local, NULL, 0) };
	mpi_run(v, 3);
	if (rank == 0) {
		char t[128];
		snprintf(t, sizeof t, "counter in rank 0's window: %d ranks x %d adds", size, adds());
		bench_section(t);
		bench_line("window counter add, all ranks", "Madds/s", bench_fig_scale(bench_fig(&v[0]), 1e-6),
			   "MPI_Fetch_and_op+flush loop", bench_fig_scale(bench_fig(&v[1]), 1e-6), ">= 0.9");
		bench_line("window counter add, all ranks", "Madds/s", bench_fig_scale(bench_fig(&v[0]), 1e-6),
			   "local shmp_value_add, as many", bench_fig_scale(bench_fig(&v[2]), 1e-6), "info");
	}
	MPI_Win_unlock_all(plain_win);
	MPI_Win_free(&plain_win);
	shmp_mpi_value_destroy(counter);
	shmp_value_destroy(local_counter);
}

/* Started by hand rather than by mpirun: start again under mpiexec with
 * 3 ranks on this machine. */
static void relaunch(char **argv)
{
	static const char *const launched[] = { "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK",
						"MPI_LOCALNRANKS", "SHMP_BENCH_MPI_CHILD" };
	for (unsigned i = 0; i < sizeof launched / sizeof launched[0]; i++)
		if (getenv(launched[i]))
			return;
#ifdef SHMP_MPIEXEC
	char *args[64];
	int n = 0;
	args[n++] = (char *)SHMP_MPIEXEC;
	args[n++] = (char *)"-n";
	args[n++] = (char *)"3";
#ifdef SHMP_MPIEXEC_OVERSUBSCRIBE
	args[n++] = (char *)"--oversubscribe";
#endif
	for (int i = 0; argv[i] && n < 63; i++)
		args[n++] = argv[i];
	args[n] = NULL;
	setenv("SHMP_BENCH_MPI_CHILD", "1", 1);
	if (geteuid() == 0) {
		setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
		setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
	}
	fflush(NULL);
	execv(SHMP_MPIEXEC, args);
	perror("bench_mpi: " SHMP_MPIEXEC);
#else
	(void)argv;
#endif
}

int main(int argc, char **argv)
{
	int prov;
	relaunch(argv);
	MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &prov);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	int want_map = 1, want_apply = 1, want_counter = 1;
	if (argc > 1) {
		want_map = want_apply = want_counter = 0;
		for (int i = 1; i < argc; i++) {
			if (!strcmp(argv[i], "map"))
				want_map = 1;
			else if (!strcmp(argv[i], "apply"))
				want_apply = 1;
			else if (!strcmp(argv[i], "counter"))
				want_counter = 1;
			else {
				if (rank == 0)
					fprintf(stderr, "usage: %s [map] [apply] [counter]\n", argv[0]);
				MPI_Finalize();
				return 2;
			}
		}
	}
	if (size < 2) {
		if (rank == 0)
			fprintf(stderr, "bench_mpi: run with 2 or 3 ranks: mpirun -np 3 %s\n", argv[0]);
		MPI_Finalize();
		return 2;
	}
	MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node_comm);
	int nodes = 0, nr;
	MPI_Comm_rank(node_comm, &nr);
	int lead = nr == 0;
	MPI_Allreduce(&lead, &nodes, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
	if (rank == 0) {
		char what[160];
		snprintf(what, sizeof what, "the cluster Pool and window counter on %d MPI ranks, %d machine(s)", size,
			 nodes);
		bench_header("bench_mpi", what);
		if (!(local_pool = shmp_pool_create(size, NULL)))
			die("shmp_pool_create");
	}
	if (want_map)
		section_map();
	if (want_apply)
		section_apply();
	if (want_counter)
		section_counter();
	if (local_pool)
		shmp_pool_destroy(local_pool);
	MPI_Comm_free(&node_comm);
	MPI_Finalize();
	return 0;
}
