/* shmp — Pool and ThreadPool: Python's multiprocessing.Pool on a task table
 * in shared memory. */
#ifndef SHMP_POOL_H
#define SHMP_POOL_H

#include "registry.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A task is a function pointer, argument bytes and a result buffer:
 *
 *     static int square(const void *arg, void *res, const struct shmp_task_ctx *c)
 *     {
 *             long x = *(const long *)arg;
 *             *(long *)res = x * x;
 *             return 0;
 *     }
 *
 * The function reads arg_size bytes at arg and writes result_size bytes at
 * res. Returning 0 is success; any other value fails that item: the call
 * reports -SHMP_ETASK and shmp_task_error says which item and what it
 * returned. Arguments and results travel through the pool's shared memory —
 * no pipes, no serialization. In a process Pool the function must exist in
 * the workers: any function of the program (or of a library loaded before
 * the pool was created); the workers check the address before calling it.
 *
 * map-like calls take an array of n items of in_size bytes and fill an array
 * of n results of out_size bytes. When the input or output array lies in a
 * shmp segment that was mapped before the pool was created (a shared Array,
 * shmp_segment_alloc memory, the default segment), a process Pool passes it
 * by reference: workers read the input and write the results in place, with
 * no copy. Any other memory is copied through the pool's segment. A
 * ThreadPool always works in place.
 *
 * Chunks: map-like calls cut the input into chunks of chunksize items (0:
 * Python's default, n / (4 * workers) rounded up). One chunk is one task for
 * maxtasksperchild and for the progress counters, as in Python.
 *
 * Failure semantics:
 *  - A task function returning non-zero fails its item (-SHMP_ETASK). The rest
 *    of its chunk is not run, as in Python where a chunk's exception is the
 *    chunk's result. Other chunks are unaffected.
 *  - A worker that dies while running a task (SIGKILL, a crash, exit()) fails
 *    that task with -SHMP_EWORKERDIED; shmp_task_error gives the signal or
 *    exit status. The worker is replaced; every other task completes; nothing
 *    is delivered twice. A worker dying idle is replaced silently.
 *  - An initializer that returns non-zero breaks the pool: queued and later
 *    calls fail with -SHMP_EINIT; no worker is respawned.
 *  - Workers ignore SIGINT (the parent decides) and die when the pool's
 *    process dies.
 *
 * Processes: workers are forked from a single-threaded "zygote" process that
 * the pool forks when it is created, so replacements never come from a parent
 * with threads. Killing the zygote breaks the pool (-SHMP_EBROKEN). The pool
 * has one supervisor thread that waits for results, worker exits (pidfds) and
 * timeouts in one place: io_uring when available, poll() otherwise
 * (SHMP_NO_IO_URING=1 forces poll). Callbacks run on that thread, in the
 * calling process.
 */
typedef struct shmp_pool shmp_pool_t;
typedef struct shmp_async shmp_async_t; /* Python's AsyncResult */
typedef struct shmp_imap shmp_imap_t;   /* imap / imap_unordered iterator */

struct shmp_task_ctx {
	size_t arg_size;    /* bytes at arg */
	size_t result_size; /* bytes at res */
	uint64_t index;     /* the item's index in its call */
	unsigned worker;    /* worker number, 0 .. workers-1 */
	void *user;         /* what the initializer stored (see shmp_pool_opts) */
};
typedef int (*shmp_task_fn)(const void *arg, void *res, const struct shmp_task_ctx *ctx);

/* Runs once in each worker (replacements included) before any task. It may
 * store a per-worker pointer in *user, passed to every task as ctx->user.
 * Non-zero breaks the pool (-SHMP_EINIT). */
typedef int (*shmp_init_fn)(void *initarg, void **user);

/* Why a call failed. */
struct shmp_task_error {
	int error;       /* -SHMP_ETASK, -SHMP_EWORKERDIED, -SHMP_EINIT, -SHMP_ECLOSED, ... */
	int code;        /* -SHMP_ETASK: the function's return value */
	int signal;      /* -SHMP_EWORKERDIED: the signal that killed the worker, or 0 */
	int exit_status; /* -SHMP_EWORKERDIED: its exit status if it exited, or -1 */
	uint64_t index;  /* the failed item (the first item of a lost chunk) */
	pid_t worker_pid;
};

/* map_async / apply_async callbacks, run on the pool's supervisor thread in
 * the process that made the call. A callback returning non-zero is counted
 * (shmp_pool_stats().callback_errors) and nothing else: result handling goes
 * on. The async handle stays valid during the callback. */
typedef int (*shmp_callback_fn)(shmp_async_t *a, void *results, size_t n, void *cb_arg);
typedef int (*shmp_error_callback_fn)(shmp_async_t *a, const struct shmp_task_error *e, void *cb_arg);

#define SHMP_CPUS 0x7fffffff /* shmp_pool_create: one worker per online CPU */

struct shmp_pool_opts {
	size_t sz;
	shmp_init_fn initializer;
	void *initarg;
	/* A worker exits after this many tasks (chunks) and is replaced. 0 means
	 * unlimited (Python's None); negative is -EINVAL. */
	int max_tasks_per_child;
	/* Tasks queued or running at once (the task table); default 16384.
	 * Submitting more waits (backpressure). */
	unsigned queue_capacity;
	/* Bytes of arguments + results one task may carry; default 64 MiB. A
	 * larger apply argument, or a single map item this big, is -EMSGSIZE. */
	size_t max_task_bytes;
	/* Where the pool's shared state lives. NULL: an anonymous segment of
	 * the pool's own, gone with the pool. A named segment makes the pool
	 * visible to `shmp show`. */
	shmp_segment_t *segment;
	/* Bytes of the pool's own segment for task data (default 256 MiB,
	 * reserved lazily). */
	size_t segment_size;
	/* In a named segment, the pool's name in its directory (default
	 * "pool", then "pool.2"...), for `shmp show` and shmp_pool_inspect. */
	const char *name;
};

/* Per-call options for the map family and apply_async. */
struct shmp_call_opts {
	size_t sz;
	size_t chunksize;      /* 0: Python's default */
	shmp_callback_fn callback;
	shmp_error_callback_fn error_callback;
	void *cb_arg;
	/* imap: chunks in flight at once (default 2 * workers + 2): input is
	 * taken only as results are consumed, so memory stays bounded. */
	unsigned max_inflight;
};

/* imap over an input that is produced on demand (possibly endless): write
 * one item of in_size bytes to *arg and return 1, or return 0 at the end;
 * a negative return ends the iteration with that error. */
typedef int (*shmp_input_fn)(void *ctx, void *arg, uint64_t index);

/* public */
/* workers: >= 1, or SHMP_CPUS; 0 or negative: EINVAL. NULL + errno. */
SHMP_API shmp_pool_t *shmp_pool_create(int workers, const struct shmp_pool_opts *opts);
/* The same API on threads of this process. */
SHMP_API shmp_pool_t *shmp_threadpool_create(int workers, const struct shmp_pool_opts *opts);
/* Without close: terminate. Then join and free. Accepts NULL. A destroyed
 * handle stays recognizable: using it returns -SHMP_ECLOSED, never crashes
 * (the pool keeps 64 bytes per handle for this). Release async handles and
 * destroy imap iterators first: destroy frees those left. */
SHMP_API void shmp_pool_destroy(shmp_pool_t *p);

/* No new tasks (-SHMP_ECLOSED); queued ones finish; workers then exit. */
SHMP_API int shmp_pool_close(shmp_pool_t *p);
/* Stop now: workers are killed, unfinished calls fail with -SHMP_ECLOSED. */
SHMP_API int shmp_pool_terminate(shmp_pool_t *p);
/* Wait for the workers to exit; -EINVAL unless closed or terminated first.
 * -ETIMEDOUT after timeout. */
SHMP_API int shmp_pool_join(shmp_pool_t *p, double timeout);
SHMP_API int shmp_pool_workers(const shmp_pool_t *p);
SHMP_API int shmp_pool_is_threads(const shmp_pool_t *p);

/* Run fn(arg) in a worker and wait: result_size bytes into result. 0 or the
 * task's error (-SHMP_ETASK, -SHMP_EWORKERDIED, ...); err (may be NULL) gets
 * the details. -EMSGSIZE if arg_size + result_size > max_task_bytes. */
SHMP_API int shmp_pool_apply(shmp_pool_t *p, shmp_task_fn fn, const void *arg, size_t arg_size,
			     void *result, size_t result_size, struct shmp_task_error *err);
/* Start fn(arg); the handle at once (NULL + errno). The result lands in
 * result (kept valid until the handle is ready or released), or, if NULL,
 * in the handle (shmp_async_results). opts: callback, error_callback. */
SHMP_API shmp_async_t *shmp_pool_apply_async(shmp_pool_t *p, shmp_task_fn fn, const void *arg,
					     size_t arg_size, void *result, size_t result_size,
					     const struct shmp_call_opts *opts);

/* out[i] = fn(in[i]) for i < n, in order. 0 or the first failure (by item
 * index). n == 0 returns 0 at once. */
SHMP_API int shmp_pool_map(shmp_pool_t *p, shmp_task_fn fn, const void *in, size_t in_size, size_t n,
			   void *out, size_t out_size, const struct shmp_call_opts *opts,
			   struct shmp_task_error *err);
/* map without waiting. in and out must stay valid until ready; a handle
 * released before that does not stop the call, so then they must stay
 * valid until the pool is joined or destroyed. The
 * callback gets (out, n) once, on success; error_callback once, on failure. */
SHMP_API shmp_async_t *shmp_pool_map_async(shmp_pool_t *p, shmp_task_fn fn, const void *in,
					   size_t in_size, size_t n, void *out, size_t out_size,
					   const struct shmp_call_opts *opts);
/* Python's starmap: in C each element of `in` is already a struct of all the
 * arguments, so these are map and map_async under the names users look for. */
SHMP_API int shmp_pool_starmap(shmp_pool_t *p, shmp_task_fn fn, const void *in, size_t in_size,
			       size_t n, void *out, size_t out_size, const struct shmp_call_opts *opts,
			       struct shmp_task_error *err);
SHMP_API shmp_async_t *shmp_pool_starmap_async(shmp_pool_t *p, shmp_task_fn fn, const void *in,
					       size_t in_size, size_t n, void *out, size_t out_size,
					       const struct shmp_call_opts *opts);

/* Lazy map: results one at a time through shmp_imap_next. Input is an
 * array (in, n) or, if input is non-NULL, produced by input() (n is then an
 * upper bound, SIZE_MAX for endless). */
SHMP_API shmp_imap_t *shmp_pool_imap(shmp_pool_t *p, shmp_task_fn fn, const void *in, size_t in_size,
				     size_t n, size_t out_size, shmp_input_fn input, void *input_ctx,
				     const struct shmp_call_opts *opts);
SHMP_API shmp_imap_t *shmp_pool_imap_unordered(shmp_pool_t *p, shmp_task_fn fn, const void *in,
					       size_t in_size, size_t n, size_t out_size,
					       shmp_input_fn input, void *input_ctx,
					       const struct shmp_call_opts *opts);
/* Next result into out (out_size bytes); *index (may be NULL) gets its
 * item's index. 1: a result; 0: the end; -ETIMEDOUT; the item's error
 * (err gets details; the iteration may go on past it). */
SHMP_API int shmp_imap_next(shmp_imap_t *it, void *out, uint64_t *index, double timeout,
			    struct shmp_task_error *err);
/* Stops the iteration (results still coming are dropped) and frees it. */
SHMP_API void shmp_imap_destroy(shmp_imap_t *it);

/* AsyncResult. get: wait, then 0 or the call's error (err gets details);
 * -ETIMEDOUT leaves the call running and get can be tried again. */
SHMP_API int shmp_async_get(shmp_async_t *a, double timeout, struct shmp_task_error *err);
/* 0 once ready, -ETIMEDOUT. */
SHMP_API int shmp_async_wait(shmp_async_t *a, double timeout);
SHMP_API int shmp_async_is_ready(shmp_async_t *a);
/* 1 succeeded, 0 failed; -EAGAIN before it is ready (Python's ValueError). */
SHMP_API int shmp_async_is_successful(shmp_async_t *a);
/* The results when the call kept them (apply_async with result NULL). */
SHMP_API void *shmp_async_results(shmp_async_t *a);
/* Drop the handle; a call still running finishes and its results are
 * discarded. Accepts NULL. */
SHMP_API void shmp_async_release(shmp_async_t *a);

/* Progress, readable at any time from the pool's process (and, for a pool
 * in a named segment, by `shmp show`). */
struct shmp_pool_stats {
	uint64_t submitted;  /* tasks (chunks) ever queued */
	uint64_t completed;  /* tasks finished (ok or failed) */
	uint64_t failed;     /* tasks whose function failed or whose worker died */
	uint64_t queued;     /* waiting for a worker now */
	uint64_t running;    /* being run now */
	uint64_t worker_deaths;   /* unexpected worker exits */
	uint64_t workers_started; /* forks (or threads), replacements included */
	uint64_t callback_errors;
	unsigned workers;    /* configured */
	unsigned alive;      /* running now */
	int supervision;     /* 1 io_uring, 0 poll */
	int state;           /* SHMP_POOL_RUNNING, _CLOSED, _TERMINATED, _BROKEN */
};
enum { SHMP_POOL_RUNNING, SHMP_POOL_CLOSED, SHMP_POOL_TERMINATED, SHMP_POOL_BROKEN };

enum { SHMP_WORKER_STARTING, SHMP_WORKER_IDLE, SHMP_WORKER_BUSY, SHMP_WORKER_EXITED };
struct shmp_worker_info {
	pid_t pid;           /* process (Pool) or thread id (ThreadPool) */
	int state;           /* SHMP_WORKER_* */
	uint64_t tasks_done; /* by this worker process/thread */
	uint64_t task_index; /* BUSY: the first item of the task it runs */
};
SHMP_API int shmp_pool_stats(shmp_pool_t *p, struct shmp_pool_stats *st);
/* Fill up to n entries; returns the number of workers. */
SHMP_API int shmp_pool_worker_info(shmp_pool_t *p, struct shmp_worker_info *w, unsigned n);
/* The same two from any process, for a pool registered in a named segment
 * (opts.segment): a read-only snapshot, as `shmp show` prints it. Returns
 * the number of workers; -ENOENT, -SHMP_ETYPE (not a pool), -SHMP_ECORRUPT. */
SHMP_API int shmp_pool_inspect(shmp_registry_t *r, const char *name, struct shmp_pool_stats *st,
			       struct shmp_worker_info *w, unsigned n);

#ifdef __cplusplus
}
#endif
#endif
