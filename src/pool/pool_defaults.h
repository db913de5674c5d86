/* private: the defaults a Pool call takes when the caller leaves an option
 * at 0 (include/shmp/pool.h), written once for the local Pool and the
 * cluster Pool (src/mpi): both promise the same rules. Static inline,
 * because the MPI library links only libshmp's exported symbols.
 *
 * Crash safety: arithmetic on the caller's own numbers; nothing shared. */
#ifndef SHMP_POOL_DEFAULTS_H
#define SHMP_POOL_DEFAULTS_H

#include <stddef.h>

/* map's chunksize 0: Python's, n / (4 * workers) rounded up, at least 1. */
static inline size_t shmp__default_chunksize(size_t n, size_t workers)
{
	size_t div = (workers ? workers : 1) * 4;
	size_t cs = n / div + (n % div ? 1 : 0);
	return cs ? cs : 1;
}

/* imap's max_inflight 0: 2 * workers + 2 chunks in flight, as both
 * headers promise. */
static inline unsigned shmp__default_inflight(unsigned workers)
{
	return 2 * workers + 2;
}

#endif
