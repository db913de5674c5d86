/* The honest baseline for bench_pool: the process pool a C programmer would
 * write without shared memory. N forked workers; each has a task pipe (the
 * parent the only writer, the worker the only reader) and a result pipe (the
 * other way round). A task is {function index, first item, count} followed
 * by count 8-byte arguments; its result is {first item, count} followed by
 * count 8-byte results. The parent dispatches to the least loaded worker
 * (a bounded number of bytes in flight each, so tasks spread as they would
 * from a shared queue) and runs one poll() loop over all pipes, non-blocking,
 * so a chunk bigger than a pipe never deadlocks the two sides.
 *
 * Functions are int64_t -> int64_t, chosen by their index in the table given
 * to pipe_pool_create: the workers are forked, so the table and everything
 * the parent set up before then is theirs too.
 *
 * Not robust (a worker that dies aborts the caller with a message) and
 * single-threaded on the caller's side: a baseline for speed, not a library. */
#ifndef PIPE_POOL_H
#define PIPE_POOL_H

#include <stddef.h>
#include <stdint.h>

typedef int64_t (*pipe_pool_fn)(int64_t);

struct pipe_pool;

/* Fork `workers` workers. NULL on failure (errno). */
struct pipe_pool *pipe_pool_create(int workers, const pipe_pool_fn *fns, unsigned nfns);
/* Close the task pipes (workers exit at end of file) and reap the workers. */
void pipe_pool_destroy(struct pipe_pool *p);

/* 0 (the default): tasks are queued and written in batches (writev) when
 * the caller next waits. 1: each task is written when submitted, one write
 * per task, as the plain pool a C programmer writes first. */
void pipe_pool_eager(struct pipe_pool *p, int on);

/* Run fns[fn](arg) in a worker and wait: the result. */
int64_t pipe_pool_apply(struct pipe_pool *p, unsigned fn, int64_t arg);

/* apply_async: queue fns[fn](arg); *res gets the result once the returned
 * ticket is done. Waits (running the loop) while every worker has its fill. */
uint64_t pipe_pool_submit(struct pipe_pool *p, unsigned fn, int64_t arg, int64_t *res);
/* Wait until the ticket's result has landed. */
void pipe_pool_wait(struct pipe_pool *p, uint64_t ticket);

/* out[i] = fns[fn](in[i]), in chunks of `chunksize` items (0: Python's
 * default, n / (4 * workers) rounded up). */
void pipe_pool_map(struct pipe_pool *p, unsigned fn, const int64_t *in, int64_t *out, size_t n,
		   size_t chunksize);

/* imap with chunksize 1: results one at a time, in order, with a bounded
 * number of items in flight (as shmp's imap). */
struct pipe_pool_imap;
struct pipe_pool_imap *pipe_pool_imap(struct pipe_pool *p, unsigned fn, const int64_t *in, size_t n);
/* 1 and *out, or 0 at the end (the iterator is then freed). */
int pipe_pool_imap_next(struct pipe_pool_imap *it, int64_t *out);

#endif
