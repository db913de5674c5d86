/* bench_mpi: the MPI component beside a hand-written MPI program doing the
 * same work and beside the local shmp Pool, in the same run:
 *
 *   mpirun -np 3 ./tests/bench/bench_mpi [--reps N] [--quick]
 *   ./tests/bench/bench_mpi          (not under mpirun: runs itself so, 3 ranks)
 *
 * BENCH_QUICK=1 and BENCH_REPS=n in the environment work as for the other
 * benchmarks (./build.sh bench mpi).
 *
 *  1. a CPU-bound map: shmp's cluster Pool (a pool per rank, one worker
 *     each) vs MPI_Scatterv / compute / MPI_Gatherv of the same items on
 *     the same ranks vs the local shmp Pool on rank 0 with as many workers
 *     (goal: cluster >= 0.9 x hand-written MPI);
 *  2. a trivial apply to another rank, round trip, vs an MPI ping-pong
 *     round trip of 8 bytes vs the local Pool's apply (goal: <= 2 x the
 *     ping-pong);
 *  3. a counter in rank 0's window, every rank adding: shmp_mpi_value_add
 *     vs a plain MPI_Fetch_and_op + MPI_Win_flush loop on the same kind of
 *     window vs the local shmp_value_add from as many processes (goal:
 *     >= 0.9 x the plain loop).
 *
 * Every figure is the median of --reps (default 5) runs, the variants of a
 * figure interleaved run by run, measured twice: quiet, and loaded (the
 * benchmark starts one busy-looping process per CPU on each machine and
 * stops them after). Ranks that take no part in a variant wait in a
 * sleeping barrier, so they do not take CPU from it.
 */
#include "shmp/mpi.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int rank, size, reps = 5, quick;
static MPI_Comm node_comm;

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

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

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
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
	return quick ? 1500 : 6000;
}

/* items/s of the cluster Pool (root's figure; 0 elsewhere) */
static double map_cluster(const uint64_t *in, uint64_t *out)
{
	struct shmp_mpi_pool_opts o = SHMP_OPTS(shmp_mpi_pool_opts, .flags = SHMP_MPI_PER_RANK);
	shmp_mpi_pool_t *p = shmp_mpi_pool_create(MPI_COMM_WORLD, 1, &o);
	if (!p)
		MPI_Abort(MPI_COMM_WORLD, 1);
	double rate = 0;
	if (shmp_mpi_pool_is_root(p)) {
		double t0 = now();
		int r = shmp_mpi_pool_map(p, burn, in, sizeof *in, map_n(), out, sizeof *out, NULL, NULL);
		double t1 = now();
		if (r)
			MPI_Abort(MPI_COMM_WORLD, 1);
		rate = (double)map_n() / (t1 - t0);
		shmp_mpi_pool_close(p);
	}
	shmp_mpi_pool_join(p, SHMP_FOREVER);
	shmp_mpi_pool_destroy(p);
	return rate;
}

/* The hand-written MPI program: scatter, compute, gather. */
static double map_mpi(const uint64_t *in, uint64_t *out)
{
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
	double t0 = now();
	MPI_Scatterv(in, counts, displs, MPI_UINT64_T, mine, counts[rank], MPI_UINT64_T, 0, MPI_COMM_WORLD);
	for (int i = 0; i < counts[rank]; i++)
		res[i] = burn_one(mine[i]);
	MPI_Gatherv(res, counts[rank], MPI_UINT64_T, out, counts, displs, MPI_UINT64_T, 0, MPI_COMM_WORLD);
	double t1 = now();
	free(counts);
	free(displs);
	free(mine);
	free(res);
	return rank == 0 ? (double)n / (t1 - t0) : 0;
}

static double map_local(shmp_pool_t *lp, const uint64_t *in, uint64_t *out)
{
	double rate = 0;
	if (rank == 0) {
		double t0 = now();
		if (shmp_pool_map(lp, burn, in, sizeof *in, map_n(), out, sizeof *out, NULL, NULL))
			MPI_Abort(MPI_COMM_WORLD, 1);
		rate = (double)map_n() / (now() - t0);
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
	return quick ? 300 : 2000;
}

static double apply_cluster(void)
{
	struct shmp_mpi_pool_opts o = SHMP_OPTS(shmp_mpi_pool_opts, .flags = SHMP_MPI_PER_RANK | SHMP_MPI_ROOT_IDLE);
	shmp_mpi_pool_t *p = shmp_mpi_pool_create(MPI_COMM_WORLD, 1, &o);
	if (!p)
		MPI_Abort(MPI_COMM_WORLD, 1);
	double us = 0;
	if (shmp_mpi_pool_is_root(p)) {
		int64_t x = 1, y;
		for (int i = 0; i < 50; i++)
			shmp_mpi_pool_apply(p, triv, &x, sizeof x, &y, sizeof y, NULL);
		double t0 = now();
		for (int i = 0; i < rt_k(); i++)
			if (shmp_mpi_pool_apply(p, triv, &x, sizeof x, &y, sizeof y, NULL))
				MPI_Abort(MPI_COMM_WORLD, 1);
		us = (now() - t0) / rt_k() * 1e6;
		shmp_mpi_pool_close(p);
	}
	shmp_mpi_pool_join(p, SHMP_FOREVER);
	shmp_mpi_pool_destroy(p);
	return us;
}

static double pingpong(void)
{
	int k = rt_k() * 5;
	int64_t x = 0;
	double us = 0;
	MPI_Barrier(MPI_COMM_WORLD);
	if (rank == 0) {
		double t0 = now();
		for (int i = 0; i < k; i++) {
			MPI_Send(&x, 1, MPI_INT64_T, 1, 7, MPI_COMM_WORLD);
			MPI_Recv(&x, 1, MPI_INT64_T, 1, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
		}
		us = (now() - t0) / k * 1e6;
	} else if (rank == 1) {
		for (int i = 0; i < k; i++) {
			MPI_Recv(&x, 1, MPI_INT64_T, 0, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
			x++;
			MPI_Send(&x, 1, MPI_INT64_T, 0, 7, MPI_COMM_WORLD);
		}
	}
	idle_barrier();
	return us;
}

static double apply_local(shmp_pool_t *lp)
{
	double us = 0;
	if (rank == 0) {
		int64_t x = 1, y;
		for (int i = 0; i < 50; i++)
			shmp_pool_apply(lp, triv, &x, sizeof x, &y, sizeof y, NULL);
		double t0 = now();
		for (int i = 0; i < rt_k(); i++)
			shmp_pool_apply(lp, triv, &x, sizeof x, &y, sizeof y, NULL);
		us = (now() - t0) / rt_k() * 1e6;
	}
	idle_barrier();
	return us;
}

/* ---- 3. the window counter -------------------------------------------- */

static int adds(void)
{
	return quick ? 20000 : 100000;
}

/* adds/s of all ranks together: size * adds / the slowest rank's time */
static double together(double t)
{
	double tmax = 0;
	MPI_Reduce(&t, &tmax, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
	return rank == 0 ? (double)size * adds() / tmax : 0;
}

static double counter_shmp(shmp_mpi_value_t *v)
{
	MPI_Barrier(MPI_COMM_WORLD);
	double t0 = now();
	for (int i = 0; i < adds(); i++)
		shmp_mpi_value_add(v, 1, NULL);
	return together(now() - t0);
}

static double counter_mpi(MPI_Win w)
{
	MPI_Barrier(MPI_COMM_WORLD);
	double t0 = now();
	int64_t one = 1, old;
	for (int i = 0; i < adds(); i++) {
		MPI_Fetch_and_op(&one, &old, MPI_INT64_T, 0, 0, MPI_SUM, w);
		MPI_Win_flush(0, w);
	}
	return together(now() - t0);
}

static double counter_local(shmp_value_t *lv)
{
	double rate = 0;
	if (rank == 0) {
		int fds[2];
		if (pipe(fds))
			MPI_Abort(MPI_COMM_WORLD, 1);
		pid_t kids[64];
		size_t nk = size < 64 ? (size_t)size : 64;
		for (size_t k = 0; k < nk; k++) {
			if ((kids[k] = fork()) == 0) {
				char go;
				if (read(fds[0], &go, 1) != 1)
					_exit(1);
				for (int i = 0; i < adds(); i++)
					shmp_value_add(lv, 1, NULL);
				_exit(0);
			}
		}
		double t0 = now();
		static const char go[64];
		if (write(fds[1], go, nk) != (ssize_t)nk)
			MPI_Abort(MPI_COMM_WORLD, 1);
		for (size_t k = 0; k < nk; k++)
			waitpid(kids[k], NULL, 0);
		rate = (double)nk * adds() / (now() - t0);
		close(fds[0]);
		close(fds[1]);
	}
	idle_barrier();
	return rate;
}

/* ---- load ------------------------------------------------------------- */

static pid_t loaders[256];
static int nloaders;

static void load_start(void)
{
	int nr;
	MPI_Comm_rank(node_comm, &nr);
	if (nr == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		for (long i = 0; i < n && nloaders < 256; i++) {
			pid_t pid = fork();
			if (pid == 0) {
				prctl(PR_SET_PDEATHSIG, SIGKILL);
				volatile uint64_t x = 0;
				for (;;)
					x++;
			}
			if (pid > 0)
				loaders[nloaders++] = pid;
		}
	}
	MPI_Barrier(MPI_COMM_WORLD);
}

static void load_stop(void)
{
	for (int i = 0; i < nloaders; i++) {
		kill(loaders[i], SIGKILL);
		waitpid(loaders[i], NULL, 0);
	}
	nloaders = 0;
	MPI_Barrier(MPI_COMM_WORLD);
}

/* ---- the report ------------------------------------------------------- */

enum { MAP_CLUSTER, MAP_MPI, MAP_LOCAL, AP_CLUSTER, AP_PING, AP_LOCAL, CT_SHMP, CT_MPI, CT_LOCAL, NFIG };
static const char *names[NFIG] = {
	"shmp cluster Pool (a pool per rank, 1 worker)",
	"hand-written MPI Scatterv/compute/Gatherv",
	"local shmp Pool on rank 0, same workers",
	"shmp_mpi_pool_apply to another rank",
	"MPI ping-pong round trip, 8 bytes",
	"local shmp Pool apply",
	"shmp_mpi_value_add, all ranks",
	"plain MPI_Fetch_and_op + flush, all ranks",
	"local shmp_value_add, as many processes",
};
static double med[2][NFIG];

static void measure(int loaded)
{
	size_t n = map_n();
	uint64_t *in = malloc(n * sizeof *in), *out = malloc(n * sizeof *out);
	for (size_t i = 0; i < n; i++)
		in[i] = i;
	shmp_pool_t *lp = rank == 0 ? shmp_pool_create(size, NULL) : NULL;
	shmp_mpi_value_t *v = shmp_mpi_value_create(MPI_COMM_WORLD, 'q', NULL, NULL);
	shmp_value_t *lv = rank == 0 ? shmp_value_create('q', NULL, NULL) : NULL;
	/* the plain peer: the same kind of window shmp makes (shared memory
	 * when every rank is on one machine) */
	int nsize, one_node = 0, all = 0;
	MPI_Comm_size(node_comm, &nsize);
	one_node = nsize == size;
	MPI_Allreduce(&one_node, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
	void *base;
	MPI_Win w;
	if (all)
		MPI_Win_allocate_shared(rank == 0 ? 8 : 0, 1, MPI_INFO_NULL, MPI_COMM_WORLD, &base, &w);
	else
		MPI_Win_allocate(rank == 0 ? 8 : 0, 1, MPI_INFO_NULL, MPI_COMM_WORLD, &base, &w);
	if (rank == 0)
		memset(base, 0, 8);
	MPI_Win_lock_all(MPI_MODE_NOCHECK, w);
	MPI_Win_sync(w);
	MPI_Barrier(MPI_COMM_WORLD);
	if (loaded)
		load_start();
	double runs[NFIG][64];
	for (int r = 0; r < reps; r++) {
		runs[MAP_CLUSTER][r] = map_cluster(in, out);
		runs[MAP_MPI][r] = map_mpi(in, out);
		runs[MAP_LOCAL][r] = map_local(lp, in, out);
		runs[AP_CLUSTER][r] = size > 1 ? apply_cluster() : 0;
		runs[AP_PING][r] = size > 1 ? pingpong() : 0;
		runs[AP_LOCAL][r] = apply_local(lp);
		runs[CT_SHMP][r] = counter_shmp(v);
		runs[CT_MPI][r] = counter_mpi(w);
		runs[CT_LOCAL][r] = counter_local(lv);
	}
	if (loaded)
		load_stop();
	for (int f = 0; f < NFIG; f++)
		med[loaded][f] = median(runs[f], reps);
	MPI_Win_unlock_all(w);
	MPI_Win_free(&w);
	shmp_mpi_value_destroy(v);
	if (lp)
		shmp_pool_destroy(lp);
	shmp_value_destroy(lv);
	free(in);
	free(out);
}

static void row(int f, double scale, const char *unit)
{
	printf("  %-46s %12.2f %12.2f  %s\n", names[f], med[0][f] * scale, med[1][f] * scale, unit);
}

static void ratio(const char *what, int a, int b, const char *goal)
{
	printf("  %-46s %12.2f %12.2f  %s\n", what, med[0][b] ? med[0][a] / med[0][b] : 0,
	       med[1][b] ? med[1][a] / med[1][b] : 0, goal);
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
	const char *q = getenv("BENCH_QUICK"), *rs = getenv("BENCH_REPS");
	quick = q && *q && strcmp(q, "0");
	if (rs && *rs)
		reps = atoi(rs);
	if (quick && !(rs && *rs))
		reps = 1;
	MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &prov);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--reps") && i + 1 < argc)
			reps = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--quick"))
			quick = 1;
	}
	if (reps < 1 || reps > 64)
		reps = 5;
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
	measure(0);
	measure(1);
	if (rank == 0) {
		printf("bench_mpi: %d ranks on %d machine(s), %ld CPUs on rank 0's; medians of %d interleaved runs%s\n",
		       size, nodes, sysconf(_SC_NPROCESSORS_ONLN), reps, quick ? " (--quick sizes)" : "");
		printf("  %-46s %12s %12s\n", "", "quiet", "loaded");
		printf("CPU-bound map, %zu items of %d LCG steps\n", map_n(), BURN);
		row(MAP_CLUSTER, 1, "items/s");
		row(MAP_MPI, 1, "items/s");
		row(MAP_LOCAL, 1, "items/s");
		ratio("ratio cluster / hand-written MPI", MAP_CLUSTER, MAP_MPI, "goal >= 0.9");
		ratio("ratio cluster / local Pool", MAP_CLUSTER, MAP_LOCAL, "");
		printf("trivial apply, round trip\n");
		row(AP_CLUSTER, 1, "us");
		row(AP_PING, 1, "us");
		row(AP_LOCAL, 1, "us");
		ratio("ratio cluster apply / MPI ping-pong", AP_CLUSTER, AP_PING, "goal <= 2");
		ratio("ratio cluster apply / local apply", AP_CLUSTER, AP_LOCAL, "");
		printf("counter in rank 0's window, %d adds per rank\n", adds());
		row(CT_SHMP, 1e-6, "M adds/s");
		row(CT_MPI, 1e-6, "M adds/s");
		row(CT_LOCAL, 1e-6, "M adds/s");
		ratio("ratio shmp / plain MPI_Fetch_and_op", CT_SHMP, CT_MPI, "goal >= 0.9");
		ratio("ratio shmp window / local atomic", CT_SHMP, CT_LOCAL, "");
	}
	MPI_Comm_free(&node_comm);
	MPI_Finalize();
	return 0;
}
