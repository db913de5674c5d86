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
 * the pool was created). A function pointer that is not in an executable
 * mapping of the program is refused at the call with -SHMP_EBADFN (checked
 * once per function, cached); the workers check it again before calling
 * (a library loaded after the pool gives -SHMP_EBADFN from the worker).
 *
 * What workers see. A process Pool's workers are forked (from a zygote)
 * when the pool is created: they see the program as it was then. Memory
 * malloc'd later is not theirs — a pointer to it inside a task argument
 * reads whatever the zygote had at that address. Pass such data by value
 * in the argument, or allocate it in shared memory: the shared heap
 * (shmp_malloc, shmp_calloc, shmp_strdup: the default segment, mapped by
 * shmp_pool_create before the zygote forks, at the same address in every
 * worker), a shared Array, or shmp_segment_alloc memory of a segment made
 * before the pool. A ThreadPool's workers are threads: they see everything.
 *
 * map-like calls take an array of n items of in_size bytes and fill an array
 * of n results of out_size bytes. When the input or output array lies in a
 * shmp segment that was mapped before the pool was created (a shared Array,
 * shmp_segment_alloc memory, the default segment), a process Pool passes it
 * by reference: workers read the input and write the results in place, with
 * no copy. Any other memory is copied through the pool's data segment
 * (segment_size bytes, default 256 MiB): a map over more than that streams
 * through it, each submit waiting for room that finished chunks give back,
 * so a map of any size over ordinary memory works. A ThreadPool always
 * works in place.
 *
 * Chunks: map-like calls cut the input into chunks of chunksize items (0:
 * Python's default, n / (4 * workers) rounded up). One chunk is one task for
 * maxtasksperchild and for the progress counters, as in Python. A chunk is
 * also cut to max_task_bytes of arguments + results, and, when it is
 * copied, to segment_size / (workers + 2) bytes, so that one always fits.
 *
 * Limits are checked before anything runs: an item (or apply argument +
 * result) larger than max_task_bytes is -EMSGSIZE; one whose copy does not
 * fit the data segment is -SHMP_ESEGFULL (raise opts.segment_size). A call
 * that passed these checks never fails later for a size reason it could
 * have known; it can still get -SHMP_ESEGFULL if the room is held by
 * something that is not running (results of imap iterators not consumed).
 *
 * Failure semantics:
 *  - A task function returning non-zero fails its item (-SHMP_ETASK). The rest
 *    of its chunk is not run, as in Python where a chunk's exception is the
 *    chunk's result: shmp_task_error.skipped says how many items after
 *    index (index + 1 .. index + skipped) never ran, and imap reports each
 *    of them as -SHMP_ESKIPPED. Other chunks are unaffected.
 *  - A worker that dies while running a task (SIGKILL, a crash, exit()) fails
 *    that task with -SHMP_EWORKERDIED; shmp_task_error gives the signal or
 *    exit status. The worker is replaced; every other task completes; nothing
 *    is delivered twice. A worker dying idle is replaced silently.
 *  - An initializer that returns non-zero breaks the pool: queued and later
 *    calls fail with -SHMP_EINIT, shmp_task_error.code holding what it
 *    returned; no worker is respawned.
 *  - Workers ignore SIGINT (the parent decides) and die when the pool's
 *    process dies.
 *
 * Processes: workers are forked from a single-threaded "zygote" process that
 * the pool forks when it is created, so replacements never come from a parent
 * with threads. Every worker is forked before shmp_pool_create returns, so
 * shmp_pool_worker_info gives every pid at once. Killing the zygote breaks
 * the pool (-SHMP_EBROKEN). The pool has one supervisor thread that waits
 * for results, worker exits (pidfds) and timeouts in one place: io_uring
 * when available, poll() otherwise (SHMP_NO_IO_URING=1 forces poll).
 * Callbacks run on that thread, in the calling process. The pool's own
 * threads block signals, so a process-directed signal (Ctrl-C) reaches the
 * caller's threads.
 *
 * Trust: nothing the pool reads from its shared memory decides whom it
 * signals, waits for or reaps. The zygote hands each worker's pid and a
 * pidfd to the pool's process over a private socket at each fork;
 * terminate signals through those pidfds; the zygote reaps only children
 * of its own private table. Pids in the shared table (shmp show,
 * shmp_pool_inspect) are for display. A process that can write the pool's
 * segment (a registry shared on purpose) can make its calls fail or return
 * garbage, never make the pool signal anyone else, and terminate, join and
 * destroy still end.
 *
 * Interrupts: with shmp_set_interruptible(1), apply, map/starmap,
 * shmp_async_get/wait, shmp_pool_join and shmp_imap_next return -EINTR once
 * a signal handler ran during their wait (a map also while it waits for
 * room to submit). The interrupted call goes on in the pool as if it were
 * async: what it submitted runs and is collected by the pool, so its
 * buffers (arguments, results) must stay valid until it finished or the
 * pool was terminated and joined. Then shmp_pool_terminate and
 * shmp_pool_join end it cleanly (Ctrl-C during a map, as Python's
 * KeyboardInterrupt).
 *
 * Lifetime (the one rule of every handle): shmp_pool_destroy frees the
 * pool; async handles and imap iterators are objects of their own, freed
 * by shmp_async_destroy and shmp_imap_destroy, in any order with the pool
 * (one that outlives its pool reports what it had, or -SHMP_ECLOSED).
 * A pool belongs to the process that created it: in a forked child its
 * calls return -ECHILD, and its destroy frees only the child's copy.
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
	/* Items after index in the same chunk that never ran (index + 1 ..
	 * index + skipped): the rest of a chunk whose item failed, of a lost
	 * chunk, or of a call that could not submit them. */
	uint64_t skipped;
};

/* map_async / apply_async callbacks, run on the pool's supervisor thread in
 * the process that made the call. A callback returning non-zero is counted
 * (shmp_pool_stats().callback_errors) and nothing else: result handling goes
 * on. The async handle stays valid during the callback. */
typedef int (*shmp_callback_fn)(shmp_async_t *a, void *results, size_t n, void *cb_arg);
typedef int (*shmp_error_callback_fn)(shmp_async_t *a, const struct shmp_task_error *e, void *cb_arg);

#define SHMP_CPUS 0x7fffffff /* shmp_pool_create: one worker per online CPU */
#define SHMP_POOL_MAX_QUEUE (1u << 20) /* the largest queue_capacity */

struct shmp_pool_opts {
	size_t sz;
	shmp_init_fn initializer;
	void *initarg;
	/* A worker exits after this many tasks (chunks) and is replaced. 0 means
	 * unlimited (Python's None); negative is -EINVAL. */
	int max_tasks_per_child;
	/* Tasks queued or running at once (the task table); default 4096,
	 * rounded up to a power of two, at most SHMP_POOL_MAX_QUEUE (more is
	 * -EINVAL). Submitting more waits (backpressure). */
	unsigned queue_capacity;
	/* Bytes of arguments + results one task may carry; default 64 MiB. A
	 * larger apply argument, or a single map item this big, is -EMSGSIZE. */
	size_t max_task_bytes;
	/* Where the pool's shared state lives and registers. NULL: an
	 * anonymous segment of the pool's own, gone with the pool. A registry
	 * (a named one makes the pool visible to `shmp show`): the pool's
	 * state lives in its segment and the pool names itself in its
	 * directory. Task data always goes through the pool's own segment. */
	shmp_registry_t *registry;
	/* Bytes of the pool's own segment for copied task data (default 256
	 * MiB, address space reserved lazily). Raise it when a call fails with
	 * -SHMP_ESEGFULL: a single item larger than this cannot be copied. */
	size_t segment_size;
	/* In a registry, the pool's name in its directory (default "pool",
	 * then "pool.2"...), for `shmp show` and shmp_pool_inspect. A name
	 * given and taken fails create with EEXIST (one the directory refuses,
	 * with its error). */
	const char *name;
	/* How long (seconds) an idle worker keeps looking for the next task
	 * before it sleeps on a futex, and how. 0 (the default): it spins for
	 * 30 us without giving up its CPU, so a task submitted right after
	 * the last one is taken in a cache-line round trip and the submitter
	 * makes no system call. Positive: it looks for that long, calling
	 * sched_yield between looks, so a thread that needs the CPU gets it
	 * (the worker takes a task a yield later); once it was off its CPU
	 * for long between two looks (200 us: a busy thread shares the CPU,
	 * or the host took it) it stops looking and sleeps until a task
	 * wakes it (a thread that yields over and over beside a busy one
	 * gets a turn per scheduler slice). It looks again only after a
	 * task. For a machine with more busy threads than CPUs, where the
	 * pool's own submitter or collector polls too: the MPI cluster Pool's
	 * node pools set it, since their ranks busy-poll MPI beside them. One worker looks at a
	 * time; the others sleep. At most SHMP_POOL_MAX_IDLE_POLL; negative,
	 * NaN or more is -EINVAL. */
	double idle_poll;
};
#define SHMP_POOL_MAX_IDLE_POLL 1.0 /* seconds: the largest idle_poll */

/* Per-call options for the map family and apply_async. */
struct shmp_call_opts {
	size_t sz;
	size_t chunksize;      /* 0: Python's default */
	shmp_callback_fn callback;       /* map/apply_async only: imap refuses it (-EINVAL) */
	shmp_error_callback_fn error_callback; /* likewise */
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
/* workers: >= 1, or SHMP_CPUS; 0 or negative: EINVAL. Returns once every
 * worker is started (its pid known). NULL + errno: EINVAL, ENOMEM, EAGAIN
 * (no process could be forked), what mapping the segments said. */
SHMP_API shmp_pool_t *shmp_pool_create(int workers, const struct shmp_pool_opts *opts);
/* The same API on threads of this process. */
SHMP_API shmp_pool_t *shmp_threadpool_create(int workers, const struct shmp_pool_opts *opts);
/* Without close: terminate. Then join and free the pool. Accepts NULL. The
 * handle must not be used again (as after free()). Async handles and imap
 * iterators are not freed: destroy them (before or after). Called from one
 * of the pool's callbacks it returns at once and the pool frees itself when
 * its supervisor ends. In a forked child: frees the child's copy only. */
SHMP_API void shmp_pool_destroy(shmp_pool_t *p);

/* No new tasks (-SHMP_ECLOSED); queued ones finish; workers then exit.
 * Every call on a pool returns -EINVAL for NULL and -ECHILD in a forked
 * child of its creator. */
SHMP_API int shmp_pool_close(shmp_pool_t *p);
/* Stop now: workers are killed, unfinished calls fail with -SHMP_ECLOSED. */
SHMP_API int shmp_pool_terminate(shmp_pool_t *p);
/* Wait for the workers to exit: 0; -EINVAL for a NaN timeout (in any
 * state); -SHMP_ENOTCLOSED unless closed or terminated first; -ETIMEDOUT
 * after timeout; -EINTR (interruptible); -EDEADLK from a callback. */
SHMP_API int shmp_pool_join(shmp_pool_t *p, double timeout);
SHMP_API int shmp_pool_workers(const shmp_pool_t *p);
SHMP_API int shmp_pool_is_threads(const shmp_pool_t *p);

/* Run fn(arg) in a worker and wait: result_size bytes into result. 0 or the
 * task's error (-SHMP_ETASK, -SHMP_EWORKERDIED, ...); err (may be NULL) gets
 * the details. Refused before anything runs: -EINVAL, -SHMP_EBADFN,
 * -EMSGSIZE (arg_size + result_size > max_task_bytes), -SHMP_ESEGFULL (their
 * copy larger than segment_size), -SHMP_ECLOSED, -SHMP_EINIT, -SHMP_EBROKEN.
 * -EINTR (interruptible): the task goes on; arg and result must stay valid
 * until the pool is terminated and joined (see Interrupts). */
SHMP_API int shmp_pool_apply(shmp_pool_t *p, shmp_task_fn fn, const void *arg, size_t arg_size,
			     void *result, size_t result_size, struct shmp_task_error *err);
/* Start fn(arg); the handle at once (NULL + errno). The result lands in
 * result (kept valid until the handle is ready or released), or, if NULL,
 * in the handle (shmp_async_results). opts: callback, error_callback. */
SHMP_API shmp_async_t *shmp_pool_apply_async(shmp_pool_t *p, shmp_task_fn fn, const void *arg,
					     size_t arg_size, void *result, size_t result_size,
					     const struct shmp_call_opts *opts);

/* out[i] = fn(in[i]) for i < n, in order. 0 or the first failure (by item
 * index). n == 0 returns 0 at once. The same refusals as apply, per item;
 * -EINTR (interruptible) as apply; -EDEADLK from one of the pool's
 * callbacks (its tasks would be collected by the callback's own thread). */
SHMP_API int shmp_pool_map(shmp_pool_t *p, shmp_task_fn fn, const void *in, size_t in_size, size_t n,
			   void *out, size_t out_size, const struct shmp_call_opts *opts,
			   struct shmp_task_error *err);
/* map without waiting. in and out must stay valid until ready; a handle
 * destroyed before that does not stop the call, so then they must stay
 * valid until the pool is joined or destroyed. The callback gets (out, n)
 * once, on success; error_callback once, on failure. Copied data larger
 * than segment_size streams: the call returns once its last chunk is
 * queued (an interrupt while it waits for room stops the submission, and
 * the call fails with -EINTR). */
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
 * upper bound, SIZE_MAX for endless). opts->callback and error_callback are
 * refused (-EINVAL): Python's imap takes none, and ignoring them would be a
 * trap. NULL + errno: the refusals of map. */
SHMP_API shmp_imap_t *shmp_pool_imap(shmp_pool_t *p, shmp_task_fn fn, const void *in, size_t in_size,
				     size_t n, size_t out_size, shmp_input_fn input, void *input_ctx,
				     const struct shmp_call_opts *opts);
SHMP_API shmp_imap_t *shmp_pool_imap_unordered(shmp_pool_t *p, shmp_task_fn fn, const void *in,
					       size_t in_size, size_t n, size_t out_size,
					       shmp_input_fn input, void *input_ctx,
					       const struct shmp_call_opts *opts);
/* Next result into out (out_size bytes); *index (may be NULL) gets its
 * item's index. Returns, item by item (in order for imap, as chunks finish
 * for imap_unordered):
 *   1              a result;
 *   the error      of a failing item (-SHMP_ETASK, -SHMP_EWORKERDIED...: err
 *                  gets the details, err.skipped the items after it in its
 *                  chunk), and then
 *   -SHMP_ESKIPPED for each of those items, at its own index (they never
 *                  ran); the iteration goes on with the next chunk;
 *   an input function's error, once every complete chunk before it was
 *                  handed out (the items it produced for the chunk it was
 *                  filling are never delivered, as in CPython), err.index
 *                  the index it failed at; then
 *   0              the end (again on every later call).
 * -ETIMEDOUT after timeout; -EINTR (interruptible); -SHMP_ECLOSED once the
 * pool was destroyed. */
SHMP_API int shmp_imap_next(shmp_imap_t *it, void *out, uint64_t *index, double timeout,
			    struct shmp_task_error *err);
/* Stops the iteration (results still coming are dropped) and frees it.
 * Accepts NULL. */
SHMP_API void shmp_imap_destroy(shmp_imap_t *it);

/* AsyncResult. get: wait, then 0 or the call's error (err gets details);
 * -ETIMEDOUT (or -EINTR, interruptible) leaves the call running and get can
 * be tried again. get and wait with a non-zero timeout on a call not
 * finished, from one of the pool's callbacks: -EDEADLK (the callback's
 * thread is the one that would collect it). Every AsyncResult call in a
 * forked child of the handle's maker: -ECHILD (NULL + errno for results;
 * destroy frees the child's copy only). */
SHMP_API int shmp_async_get(shmp_async_t *a, double timeout, struct shmp_task_error *err);
/* 0 once ready, -ETIMEDOUT. */
SHMP_API int shmp_async_wait(shmp_async_t *a, double timeout);
SHMP_API int shmp_async_is_ready(shmp_async_t *a);
/* 1 succeeded, 0 failed; -EAGAIN before it is ready (Python's ValueError). */
SHMP_API int shmp_async_is_successful(shmp_async_t *a);
/* The results when the call kept them (apply_async with result NULL).
 * NULL + errno: EINVAL (NULL), ECHILD (a forked child). */
SHMP_API void *shmp_async_results(shmp_async_t *a);
/* Free the handle; a call still running finishes and its results are
 * discarded (apply_async never writes the caller's buffer afterwards).
 * Accepts NULL. Works before or after the pool's destroy. */
SHMP_API void shmp_async_destroy(shmp_async_t *a);

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
	uint64_t data_used;  /* bytes of the data segment in use now (shmp_pool_stats only) */
	uint64_t data_size;  /* its size: opts.segment_size */
};
enum { SHMP_POOL_RUNNING, SHMP_POOL_CLOSED, SHMP_POOL_TERMINATED, SHMP_POOL_BROKEN };

enum { SHMP_WORKER_STARTING, SHMP_WORKER_IDLE, SHMP_WORKER_BUSY, SHMP_WORKER_EXITED };
struct shmp_worker_info {
	pid_t pid;           /* process (Pool) or thread id (ThreadPool), from the
				pool's private table (shmp_pool_inspect: the shared
				one, display only) */
	int state;           /* SHMP_WORKER_* */
	uint64_t tasks_done; /* by this worker process/thread */
	uint64_t task_index; /* BUSY: the first item of the task it runs */
};
SHMP_API int shmp_pool_stats(shmp_pool_t *p, struct shmp_pool_stats *st);
/* Fill up to n entries; returns the number of workers. */
SHMP_API int shmp_pool_worker_info(shmp_pool_t *p, struct shmp_worker_info *w, unsigned n);
/* The same two from any process, for a pool registered in a registry
 * (opts.registry): a read-only snapshot, as `shmp show` prints it. Returns
 * the number of workers; -ENOENT, -SHMP_ETYPE (not a pool), -SHMP_ECORRUPT. */
SHMP_API int shmp_pool_inspect(shmp_registry_t *r, const char *name, struct shmp_pool_stats *st,
			       struct shmp_worker_info *w, unsigned n);

#ifdef __cplusplus
}
#endif
#endif
