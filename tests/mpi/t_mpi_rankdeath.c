/* A rank that dies ends the job with a clear error, never a hang: the
 * last rank SIGKILLs itself while it serves a map; mpiexec must end the
 * whole job and name the signal (CTest checks its output, and its timeout
 * fails a hang). Nothing here may return normally. */
#include "t_mpi.h"

#include <pthread.h>
#include <signal.h>

static int slow(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	(void)c;
	t_sleep_ms(20);
	*(int64_t *)res = *(const int64_t *)arg;
	return 0;
}

static void *die_soon(void *arg)
{
	(void)arg;
	t_sleep_ms(500);
	kill(getpid(), SIGKILL);
	return NULL;
}

int main(int argc, char **argv)
{
	t_mpi_init(&argc, &argv, 50);
	if (t_size < 2) {
		MPI_Finalize();
		return T_SKIP;
	}
	struct shmp_mpi_pool_opts o = SHMP_OPTS(shmp_mpi_pool_opts, .flags = SHMP_MPI_PER_RANK | SHMP_MPI_ROOT_IDLE);
	shmp_mpi_pool_t *p = shmp_mpi_pool_create(MPI_COMM_WORLD, 2, &o);
	T_CHECK(p);
	if (shmp_mpi_pool_is_root(p)) {
		enum { M = 1000 };
		static int64_t in[M], out[M];
		struct shmp_mpi_call_opts co = SHMP_OPTS(shmp_mpi_call_opts, .chunksize = 1);
		int r = shmp_mpi_pool_map(p, slow, in, sizeof *in, M, out, sizeof *out, &co, NULL);
		fprintf(stderr, "the map returned (%d) although a rank died\n", r);
		return 1;
	}
	pthread_t t;
	if (t_rank == t_size - 1)
		pthread_create(&t, NULL, die_soon, NULL);
	shmp_mpi_pool_join(p, SHMP_FOREVER);
	fprintf(stderr, "rank %d: join returned although a rank died\n", t_rank);
	return 1;
}
