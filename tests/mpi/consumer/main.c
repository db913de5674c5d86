/* Built against an installed shmp_mpi, by pkg-config and by find_package. */
#include <shmp/mpi.h>
#include <stdio.h>

static int twice(const void *a, void *r, const struct shmp_task_ctx *c)
{
	(void)c;
	*(int *)r = 2 * *(const int *)a;
	return 0;
}

int main(int argc, char **argv)
{
	int prov;
	MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &prov);
	shmp_mpi_pool_t *p = shmp_mpi_pool_create(MPI_COMM_SELF, 1, NULL);
	int x = 21, y = 0;
	int r = p ? shmp_mpi_pool_apply(p, twice, &x, sizeof x, &y, sizeof y, NULL) : -1;
	if (p) {
		shmp_mpi_pool_close(p);
		shmp_mpi_pool_join(p, SHMP_FOREVER);
		shmp_mpi_pool_destroy(p);
	}
	MPI_Finalize();
	printf("consumer: %d\n", y);
	return r == 0 && y == 42 ? 0 : 1;
}
