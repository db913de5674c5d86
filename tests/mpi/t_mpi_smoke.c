#include "shmp/mpi.h"
#include <stdio.h>
#include <stdlib.h>

static int square(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	(void)c;
	long x = *(const long *)arg;
	*(long *)res = x * x;
	return 0;
}

int main(int argc, char **argv)
{
	int prov;
	MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &prov);
	struct shmp_mpi_pool_opts o = SHMP_OPTS(shmp_mpi_pool_opts, .flags = argc > 1 ? SHMP_MPI_PER_RANK : 0);
	shmp_mpi_pool_t *p = shmp_mpi_pool_create(MPI_COMM_WORLD, 2, &o);
	if (!p) {
		fprintf(stderr, "create: %s\n", shmp_strerror(errno));
		MPI_Abort(MPI_COMM_WORLD, 1);
	}
	int rc = 0;
	if (shmp_mpi_pool_is_root(p)) {
		enum { N = 100000 };
		long *in = malloc(N * sizeof *in), *out = calloc(N, sizeof *out);
		for (long i = 0; i < N; i++)
			in[i] = i;
		struct shmp_mpi_task_error e;
		int r = shmp_mpi_pool_map(p, square, in, sizeof(long), N, out, sizeof(long), NULL, &e);
		printf("map: %d (%s)\n", r, shmp_strerror(r));
		for (long i = 0; i < N; i++)
			if (out[i] != i * i) {
				printf("bad %ld: %ld\n", i, out[i]);
				rc = 1;
				break;
			}
		struct shmp_mpi_node_info ni[8];
		int nn = shmp_mpi_pool_nodes(p, ni, 8);
		for (int i = 0; i < nn; i++)
			printf("node rank %d (%d ranks, %u workers): %llu chunks %llu items\n", ni[i].rank, ni[i].ranks,
			       ni[i].workers, (unsigned long long)ni[i].chunks, (unsigned long long)ni[i].items);
		shmp_mpi_pool_close(p);
		free(in);
		free(out);
	}
	int r = shmp_mpi_pool_join(p, 30);
	if (r)
		printf("rank %d join %d\n", shmp_mpi_pool_rank(p), r);
	shmp_mpi_pool_destroy(p);
	MPI_Finalize();
	return rc;
}
