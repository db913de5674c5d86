/* Helpers for the MPI component's tests: MPI started with
 * MPI_THREAD_MULTIPLE, a watchdog, and the pool mode from argv ("per": one
 * node pool per rank, so items cross MPI even on one machine; "shared":
 * ranks of this machine share one node pool; "idle": per-rank and the root
 * runs no workers, so every item runs on another rank; "threads": per-rank
 * ThreadPools). A failed check
 * exits 1: mpiexec then ends the job and the test fails. */
#ifndef SHMP_T_MPI_H
#define SHMP_T_MPI_H

#include "t.h"
#include "shmp/mpi.h"

#include <stdbool.h>

static int t_rank, t_size;

static inline void t_mpi_init(int *argc, char ***argv, unsigned watchdog)
{
	int prov = 0;
	MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &prov);
	MPI_Comm_rank(MPI_COMM_WORLD, &t_rank);
	MPI_Comm_size(MPI_COMM_WORLD, &t_size);
	if (prov < MPI_THREAD_MULTIPLE && t_size > 1) {
		if (t_rank == 0)
			fprintf(stderr, "this MPI has no MPI_THREAD_MULTIPLE: skipped\n");
		MPI_Finalize();
		exit(T_SKIP);
	}
	t_watchdog(watchdog);
}

static inline unsigned t_mpi_flags(int argc, char **argv)
{
	const char *m = argc > 1 ? argv[1] : "shared";
	if (!strcmp(m, "per"))
		return SHMP_MPI_PER_RANK;
	if (!strcmp(m, "idle"))
		return SHMP_MPI_PER_RANK | (t_size > 1 ? SHMP_MPI_ROOT_IDLE : 0);
	if (!strcmp(m, "threads"))
		return SHMP_MPI_PER_RANK | SHMP_MPI_THREADS;
	return 0;
}

/* Every rank ends here: join (the others serve in it), destroy, finish. */
static inline int t_mpi_end(shmp_mpi_pool_t *p, int rc)
{
	if (p) {
		if (shmp_mpi_pool_is_root(p))
			T_EQ(shmp_mpi_pool_close(p), 0);
		T_EQ(shmp_mpi_pool_join(p, 30), 0);
		shmp_mpi_pool_destroy(p);
	}
	MPI_Finalize();
	return rc;
}

#endif
