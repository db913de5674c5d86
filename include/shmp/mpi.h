/* shmp — beyond one machine, on MPI: a cluster Pool whose ranks each feed a
 * node-local shmp Pool, and Value, Array and Lock on MPI one-sided windows.
 *
 * An optional component: its own library (CMake target shmp::mpi,
 * pkg-config shmp-mpi), built when MPI is found. shmp.h does not include
 * this header and the core library never links MPI. */
#ifndef SHMP_MPI_H
#define SHMP_MPI_H

#include <mpi.h>

#include "pool.h"
#include "value.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(SHMP_MPI_BUILDING) && defined(__GNUC__)
#define SHMP_MPI_API __attribute__((visibility("default")))
#else
#define SHMP_MPI_API
#endif

/*
 * The cluster Pool
 * ================
 * The local Pool's API (pool.h) on MPI ranks. Task functions, their
 * arguments and results are the local ones (shmp_task_fn, struct
 * shmp_task_ctx): a program moves a map to a cluster by changing the
 * constructor and the prefix.
 *
 *     MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
 *     shmp_mpi_pool_t *p = shmp_mpi_pool_create(MPI_COMM_WORLD, SHMP_CPUS, NULL);
 *     if (shmp_mpi_pool_is_root(p)) {           // rank 0 submits
 *             shmp_mpi_pool_map(p, square, in, sizeof(long), n, out, sizeof(long), NULL, &err);
 *             shmp_mpi_pool_close(p);
 *     }
 *     shmp_mpi_pool_join(p, SHMP_FOREVER);     // the other ranks work here
 *     shmp_mpi_pool_destroy(p);
 *     MPI_Finalize();
 *
 * Roles. shmp_mpi_pool_create is collective over the communicator. One rank,
 * the root (opts.root, default 0), submits: every call below except create,
 * join, destroy and the queries is for the root only (-EPERM elsewhere).
 * Ranks on one node (MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)) share one
 * node-local shmp Pool, run by the node's first rank (its "node rank"; on
 * the root's node, the root): it has the workers every rank of the node
 * contributes (workers_per_rank each; SHMP_CPUS: one per online CPU of the
 * node, once per node), and items reach it through shared memory, not
 * MPI. The other ranks of a node only wait. SHMP_MPI_PER_RANK gives every
 * rank a pool of its own instead. The ranks other than the root do their
 * work inside shmp_mpi_pool_join (or destroy): call it right after create.
 *
 * Work moves in chunks (chunksize items, default n / (4 * all workers)
 * rounded up, as the local Pool). Each node holds its workers plus a
 * credit of chunks: opts.prefetch when given (fixed), else a credit that
 * starts at 1 + workers / 2, grows (up to 64 + 4 * workers) when the node
 * runs dry between chunks and shrinks when it over-queues; a result coming
 * back is its request for the next one, so a slower node gets less work
 * (dynamic load balancing); the last chunks of a map (no more left than
 * workers) go only to nodes with a worker free, never queued ahead. The
 * root's own node takes chunks through shared memory. Arguments go to
 * other nodes by MPI straight from the caller's array and results land
 * straight in the caller's array. One chunk is one task of the node pool
 * (maxtasksperchild counts chunks, as locally).
 *
 * Task functions are sent as (module build-id, offset, the first bytes of
 * code): each node resolves them in its own copy of the executable (or of
 * a library loaded at the same path) and checks them there before any
 * call; a function that does not resolve, or whose code differs, fails its
 * items with -SHMP_EBADFN naming the rank. Every rank must therefore run
 * the same build of the program (mpirun does). Functions of the program
 * and of libraries loaded before the pool was created work; a function
 * that is not code at all is -SHMP_EBADFN at the call.
 *
 * In a task, shmp_mpi_task_rank() is the node rank running it, ctx->index
 * the item's index in its call, ctx->worker the worker in that node's pool.
 *
 * Threads. The root runs one dispatcher thread that makes the pool's MPI
 * calls (on a communicator of its own, a duplicate); a thread that waits
 * in map, apply, get, wait or join makes them itself meanwhile (it sends
 * the chunks and polls for the results, so a short call's round trip
 * wakes no other thread), one thread at a time. So the root's MPI must
 * provide MPI_THREAD_MULTIPLE whenever the communicator has other ranks
 * (-ENOTSUP at create otherwise): MPI_Init_thread(..., MPI_THREAD_MULTIPLE).
 * The other ranks make MPI calls only from the thread
 * in join/destroy. Callbacks run on the dispatcher thread, in the root.
 * Workers are processes forked from the node rank (see pool.h "What workers
 * see"): they must not call MPI (window objects refuse them, -ECHILD);
 * SHMP_MPI_THREADS runs node pools on threads, where tasks may use the
 * window objects below.
 *
 * Failure semantics:
 *  - A task function failing, or a worker dying, on any node fails its
 *    item with the local codes: -SHMP_ETASK with the function's return
 *    value, -SHMP_EWORKERDIED with the signal or exit status (index: the
 *    chunk's first item, as locally), and err.rank names the node rank.
 *    The rest of the chunk is not run (err.skipped items); every other
 *    chunk completes; nothing is run twice.
 *  - maxtasksperchild and the initializer work per node pool. Each rank's
 *    own opts.initializer and initarg are those its node pool uses (a node
 *    rank's). An initializer failing breaks the pool: queued and later
 *    calls fail with -SHMP_EINIT naming the rank.
 *  - A node pool that breaks (its zygote killed) fails the chunks it held
 *    with -SHMP_EBROKEN naming the rank; it gets no more work; when no node
 *    is left, calls fail with -SHMP_EBROKEN.
 *  - A rank that dies ends the job: MPI's own fault model (mpirun reports
 *    which rank, and on what signal, and stops every process; with the
 *    default MPI_ERRORS_ARE_FATAL the survivors abort rather than wait).
 *    Nothing in shmp waits for a dead rank: every wait of the pool polls
 *    MPI with a bounded sleep, so the job's end reaches it.
 *  - Interrupts (shmp_set_interruptible): the root's waits — map, apply,
 *    get, wait, imap next, join — return -EINTR as locally; the call goes
 *    on (terminate, then join). A signal counts when its handler runs on
 *    the waiting thread: one sent to the process may be taken by another
 *    thread (MPI's own threads may not block it); pthread_kill reaches the
 *    waiter. While map, apply, get, wait or join polls MPI, the waiting
 *    thread keeps signals blocked and sleeps with them unblocked (ppoll),
 *    so a handler never runs there unreported.
 */
typedef struct shmp_mpi_pool shmp_mpi_pool_t;
typedef struct shmp_mpi_async shmp_mpi_async_t;
typedef struct shmp_mpi_imap shmp_mpi_imap_t;

/* Why a call failed: struct shmp_task_error's fields, plus the rank. */
struct shmp_mpi_task_error {
	int error;       /* -SHMP_ETASK, -SHMP_EWORKERDIED, -SHMP_EINIT, -SHMP_EBADFN, -SHMP_ECLOSED, ... */
	int code;        /* -SHMP_ETASK: the function's return value */
	int signal;      /* -SHMP_EWORKERDIED: the signal that killed the worker, or 0 */
	int exit_status; /* -SHMP_EWORKERDIED: its exit status if it exited, or -1 */
	uint64_t index;  /* the failed item (the first item of a lost chunk) */
	pid_t worker_pid; /* on the node rank's machine */
	int rank;        /* the node rank whose pool ran (or lost) the item; -1 if none did */
	uint64_t skipped; /* items after index in its chunk that were not run */
};

typedef int (*shmp_mpi_callback_fn)(shmp_mpi_async_t *a, void *results, size_t n, void *cb_arg);
typedef int (*shmp_mpi_error_callback_fn)(shmp_mpi_async_t *a, const struct shmp_mpi_task_error *e,
					  void *cb_arg);

enum {
	SHMP_MPI_PER_RANK = 1u << 0,  /* every rank runs a node pool of its own (no sharing) */
	SHMP_MPI_ROOT_IDLE = 1u << 1, /* the root contributes no workers */
	SHMP_MPI_THREADS = 1u << 2,   /* node pools are ThreadPools */
};

struct shmp_mpi_pool_opts {
	size_t sz;
	int root;       /* the submitting rank (default 0) */
	unsigned flags; /* SHMP_MPI_*; the same on every rank (-EINVAL) */
	/* Run in every worker of this rank's node pool (see above). */
	shmp_init_fn initializer;
	void *initarg;
	int max_tasks_per_child; /* per node pool; 0 unlimited, negative -EINVAL */
	/* Bytes one chunk may carry (its arguments, or its results); default
	 * 64 MiB, at most 1 GiB. A single item larger is -EMSGSIZE at the
	 * call; chunksizes (given or default) are cut to fit, as locally. */
	size_t max_task_bytes;
	/* Chunks a node holds beyond one per worker, fixed (at most 4096); 0:
	 * adaptive (see above). More hides network latency, fewer balances the
	 * end of a map better. */
	unsigned prefetch;
};

struct shmp_mpi_call_opts {
	size_t sz;
	size_t chunksize; /* 0: the default above */
	/* apply_async, map_async; imap refuses both (-EINVAL). */
	shmp_mpi_callback_fn callback;
	shmp_mpi_error_callback_fn error_callback;
	void *cb_arg;
	/* imap: chunks in flight at once (default 2 * all workers + 2). */
	unsigned max_inflight;
};

/* public */
/* Collective over comm (an intracommunicator; MPI_COMM_NULL is -EINVAL).
 * workers_per_rank: this rank's contribution to its node pool, 1 or more,
 * or SHMP_CPUS; 0 or negative is -EINVAL. Once every rank reached the
 * collective, a failure on one fails it on every rank alike: -EINVAL (bad
 * options, prefetch > 4096, no rank running workers — a communicator of one
 * rank with SHMP_MPI_ROOT_IDLE), -ENOTSUP (the root's MPI lacks
 * MPI_THREAD_MULTIPLE and there are other ranks), or the local Pool's
 * errors. A rank that cannot take part at all (MPI not initialized there,
 * a communicator invalid there, no memory for its handle) fails alone, and
 * the others may then wait in the collective, as with any MPI collective.
 * NULL + errno. */
SHMP_MPI_API shmp_mpi_pool_t *shmp_mpi_pool_create(MPI_Comm comm, int workers_per_rank,
						   const struct shmp_mpi_pool_opts *opts);
/* Collective. On the root: terminate unless closed, join, free. Elsewhere:
 * serve until the root ends the pool, then free. Accepts NULL. Async
 * handles and iterators still alive are freed with it. */
SHMP_MPI_API void shmp_mpi_pool_destroy(shmp_mpi_pool_t *p);

SHMP_MPI_API int shmp_mpi_pool_is_root(const shmp_mpi_pool_t *p);
/* This rank, the number of ranks, and the workers of all node pools. */
SHMP_MPI_API int shmp_mpi_pool_rank(const shmp_mpi_pool_t *p);
SHMP_MPI_API int shmp_mpi_pool_size(const shmp_mpi_pool_t *p);
SHMP_MPI_API int shmp_mpi_pool_workers(const shmp_mpi_pool_t *p);

/* Root only. No new calls (-SHMP_ECLOSED); queued ones finish. */
SHMP_MPI_API int shmp_mpi_pool_close(shmp_mpi_pool_t *p);
/* Root only. Stop now: every node pool is terminated, unfinished calls
 * fail with -SHMP_ECLOSED. */
SHMP_MPI_API int shmp_mpi_pool_terminate(shmp_mpi_pool_t *p);
/* Root: wait until every call is done and every node pool has exited;
 * -SHMP_ENOTCLOSED unless closed or terminated first; -ETIMEDOUT.
 * Other ranks: serve the root until it ends the pool (then 0); timeout as
 * on the root. */
SHMP_MPI_API int shmp_mpi_pool_join(shmp_mpi_pool_t *p, double timeout);

/* As the local Pool's calls (pool.h), on the root. */
SHMP_MPI_API int shmp_mpi_pool_apply(shmp_mpi_pool_t *p, shmp_task_fn fn, const void *arg, size_t arg_size,
				     void *result, size_t result_size, struct shmp_mpi_task_error *err);
SHMP_MPI_API shmp_mpi_async_t *shmp_mpi_pool_apply_async(shmp_mpi_pool_t *p, shmp_task_fn fn, const void *arg,
							 size_t arg_size, void *result, size_t result_size,
							 const struct shmp_mpi_call_opts *opts);
SHMP_MPI_API int shmp_mpi_pool_map(shmp_mpi_pool_t *p, shmp_task_fn fn, const void *in, size_t in_size,
				   size_t n, void *out, size_t out_size, const struct shmp_mpi_call_opts *opts,
				   struct shmp_mpi_task_error *err);
/* in and out must stay valid until the call is ready (or, if the handle is
 * destroyed before, until the pool is joined). */
SHMP_MPI_API shmp_mpi_async_t *shmp_mpi_pool_map_async(shmp_mpi_pool_t *p, shmp_task_fn fn, const void *in,
						       size_t in_size, size_t n, void *out, size_t out_size,
						       const struct shmp_mpi_call_opts *opts);
SHMP_MPI_API int shmp_mpi_pool_starmap(shmp_mpi_pool_t *p, shmp_task_fn fn, const void *in, size_t in_size,
				       size_t n, void *out, size_t out_size,
				       const struct shmp_mpi_call_opts *opts, struct shmp_mpi_task_error *err);
SHMP_MPI_API shmp_mpi_async_t *shmp_mpi_pool_starmap_async(shmp_mpi_pool_t *p, shmp_task_fn fn,
							   const void *in, size_t in_size, size_t n, void *out,
							   size_t out_size, const struct shmp_mpi_call_opts *opts);

/* Lazy map, input an array or input() (n then an upper bound). Callbacks
 * are refused (-EINVAL): results come through shmp_mpi_imap_next. */
SHMP_MPI_API shmp_mpi_imap_t *shmp_mpi_pool_imap(shmp_mpi_pool_t *p, shmp_task_fn fn, const void *in,
						 size_t in_size, size_t n, size_t out_size, shmp_input_fn input,
						 void *input_ctx, const struct shmp_mpi_call_opts *opts);
SHMP_MPI_API shmp_mpi_imap_t *shmp_mpi_pool_imap_unordered(shmp_mpi_pool_t *p, shmp_task_fn fn,
							   const void *in, size_t in_size, size_t n,
							   size_t out_size, shmp_input_fn input, void *input_ctx,
							   const struct shmp_mpi_call_opts *opts);
/* 1: a result (out, *index); 0: the end; -ETIMEDOUT; an item's error (err
 * gets the details; items skipped after it give -SHMP_ESKIPPED; the
 * iteration goes on); input()'s negative return ends it after the items
 * of the chunks before. */
SHMP_MPI_API int shmp_mpi_imap_next(shmp_mpi_imap_t *it, void *out, uint64_t *index, double timeout,
				    struct shmp_mpi_task_error *err);
/* Stops the iteration (chunks in flight are dropped on arrival). NULL ok. */
SHMP_MPI_API void shmp_mpi_imap_destroy(shmp_mpi_imap_t *it);

SHMP_MPI_API int shmp_mpi_async_get(shmp_mpi_async_t *a, double timeout, struct shmp_mpi_task_error *err);
SHMP_MPI_API int shmp_mpi_async_wait(shmp_mpi_async_t *a, double timeout);
SHMP_MPI_API int shmp_mpi_async_is_ready(shmp_mpi_async_t *a);
/* 1 succeeded, 0 failed, -EAGAIN before it is ready. */
SHMP_MPI_API int shmp_mpi_async_is_successful(shmp_mpi_async_t *a);
/* apply_async with result NULL: the result, kept in the handle. */
SHMP_MPI_API void *shmp_mpi_async_results(shmp_mpi_async_t *a);
/* Drop the handle; a call still running finishes, its results are
 * discarded (a map's out array is still written). Accepts NULL. */
SHMP_MPI_API void shmp_mpi_async_destroy(shmp_mpi_async_t *a);

/* The rank of the node pool running the current task; -1 outside tasks of
 * a cluster Pool. */
SHMP_MPI_API int shmp_mpi_task_rank(void);

struct shmp_mpi_pool_stats {
	uint64_t submitted;  /* chunks handed to node pools */
	uint64_t completed;  /* chunks back (ok or failed) */
	uint64_t failed;     /* chunks that failed */
	uint64_t items;      /* items back */
	uint64_t queued;     /* chunks of queued map/apply calls not yet handed
			      * out (imap chunks waiting to be sent are not counted) */
	uint64_t running;    /* chunks at node pools now */
	uint64_t worker_deaths;   /* over all node pools, as last reported */
	uint64_t workers_started;
	uint64_t callback_errors;
	unsigned workers;    /* all node pools */
	unsigned nodes;      /* node pools */
	int ranks;
	int state;           /* SHMP_POOL_RUNNING, _CLOSED, _TERMINATED, _BROKEN */
};
/* One node pool, as the root sees it. */
struct shmp_mpi_node_info {
	int rank;          /* its node rank */
	int ranks;         /* ranks sharing it */
	unsigned workers;
	char host[64];     /* MPI_Get_processor_name */
	uint64_t chunks;   /* chunks done there */
	uint64_t items;    /* items done there */
	uint64_t failed;   /* chunks failed there */
	unsigned inflight; /* chunks there now */
	uint64_t worker_deaths, workers_started; /* as last reported */
	int broken;        /* 1: gets no more work */
};
/* Root only. */
SHMP_MPI_API int shmp_mpi_pool_stats(shmp_mpi_pool_t *p, struct shmp_mpi_pool_stats *st);
/* Root only: fills up to n entries, returns the number of node pools. */
SHMP_MPI_API int shmp_mpi_pool_nodes(shmp_mpi_pool_t *p, struct shmp_mpi_node_info *info, unsigned n);

/*
 * Value, Array and Lock on MPI windows
 * ====================================
 * The local Value, Array and Lock (value.h, sync.h) across the ranks of a
 * communicator: the memory lives in a window on one rank (opts.root,
 * default 0), allocated with MPI_Win_allocate (MPI_Win_allocate_shared when
 * every rank is on one machine), and every rank reaches it
 * with one-sided operations in a passive-target epoch opened at create
 * (MPI_Win_lock_all): atomics by MPI_Fetch_and_op and MPI_Compare_and_swap,
 * items and ranges by MPI_Get_accumulate / MPI_Accumulate (element-wise
 * atomic, so they mix safely with the atomics), each completed
 * (MPI_Win_flush) before the call returns. Same typecodes, same call
 * shapes: code that shares counters and arrays moves to a cluster by
 * changing constructors.
 *
 * Create and destroy are collective over the communicator (every rank gets
 * a handle; init is read on the root). Handles belong to the process that
 * created them: a forked child (a process Pool's worker) gets -ECHILD from
 * every call that reaches MPI or the object's state, and its destroy
 * releases nothing (MPI allows no calls from it); the plain queries
 * (typecode, length, lock_count, is_recursive) answer from its copy.
 *
 * Synchronized by default: get/set/read/write take the object's RLock (on
 * the same window; re-entered at no cost by the rank and thread that hold
 * it), so a rank holding the lock sees no other synchronized access in
 * between. opts.raw = 1 gives no lock (get/set are still element-wise
 * atomic); opts.lock shares a caller's Lock, made on the same
 * communicator. Atomic load/store/add/cas ignore the lock, as locally.
 *
 * The Lock is an owner word in a window: acquire is a compare-and-swap
 * loop with a bounded back-off (sleeps of up to 1 ms), so it never spins a
 * CPU; owner is the rank. A rank's death ends the job (MPI), so there is
 * no owner-died state.
 *
 * Known MPI bug: Open MPI 4.1's MPI_Win_allocate windows crash in a 64-bit
 * MPI_Compare_and_swap between two ranks of one node (Open MPI issue
 * 7967). shmp avoids it (shared windows on one machine, a 32-bit lock
 * word), but shmp_mpi_value_cas / array_cas on a 64-bit typecode, on a
 * communicator spanning machines, with two ranks on one of them, still
 * reach it there: use a 32-bit typecode, or Open MPI's osc/ucx.
 */
typedef struct shmp_mpi_lock shmp_mpi_lock_t;
typedef struct shmp_mpi_value shmp_mpi_value_t;
typedef struct shmp_mpi_array shmp_mpi_array_t;

struct shmp_mpi_lock_opts {
	size_t sz;
	int root; /* the rank holding the lock word (default 0) */
};

struct shmp_mpi_value_opts {
	size_t sz;
	int root;               /* the rank holding the memory (default 0) */
	int raw;                /* 1: no lock (with .lock too: -EINVAL) */
	shmp_mpi_lock_t *lock;  /* a Lock/RLock of the same communicator */
};

/* Collective. NULL + errno (EINVAL: bad communicator or root). */
SHMP_MPI_API shmp_mpi_lock_t *shmp_mpi_lock_create(MPI_Comm comm, const struct shmp_mpi_lock_opts *opts);
SHMP_MPI_API shmp_mpi_lock_t *shmp_mpi_rlock_create(MPI_Comm comm, const struct shmp_mpi_lock_opts *opts);
/* Collective. Accepts NULL. The lock of a Value or Array goes with it. */
SHMP_MPI_API void shmp_mpi_lock_destroy(shmp_mpi_lock_t *l);
/* 0; -ETIMEDOUT; -EDEADLK (a Lock already held by this thread); -EINTR. */
SHMP_MPI_API int shmp_mpi_lock_acquire(shmp_mpi_lock_t *l, double timeout);
/* 0; -EPERM if this thread of this rank does not hold it. */
SHMP_MPI_API int shmp_mpi_lock_release(shmp_mpi_lock_t *l);
/* 1 held by anyone, 0 free. */
SHMP_MPI_API int shmp_mpi_lock_is_locked(shmp_mpi_lock_t *l);
/* 1 and *rank (may be NULL) if held, 0 if free. */
SHMP_MPI_API int shmp_mpi_lock_owner(shmp_mpi_lock_t *l, int *rank);
/* RLock depth held by the calling thread (0 if not the owner). */
SHMP_MPI_API int shmp_mpi_lock_count(const shmp_mpi_lock_t *l);
SHMP_MPI_API int shmp_mpi_lock_is_recursive(const shmp_mpi_lock_t *l);

/* Collective. init (may be NULL: zero) is read on the root. */
SHMP_MPI_API shmp_mpi_value_t *shmp_mpi_value_create(MPI_Comm comm, char typecode, const void *init,
						     const struct shmp_mpi_value_opts *opts);
SHMP_MPI_API void shmp_mpi_value_destroy(shmp_mpi_value_t *v);
SHMP_MPI_API int shmp_mpi_value_get(shmp_mpi_value_t *v, void *out);
SHMP_MPI_API int shmp_mpi_value_set(shmp_mpi_value_t *v, const void *in);
SHMP_MPI_API int shmp_mpi_value_get_i64(shmp_mpi_value_t *v, int64_t *out);
SHMP_MPI_API int shmp_mpi_value_set_i64(shmp_mpi_value_t *v, int64_t x);
SHMP_MPI_API int shmp_mpi_value_get_f64(shmp_mpi_value_t *v, double *out);
SHMP_MPI_API int shmp_mpi_value_set_f64(shmp_mpi_value_t *v, double x);
/* Atomic, integer typecodes only (-EINVAL otherwise), as locally. */
SHMP_MPI_API int shmp_mpi_value_load(shmp_mpi_value_t *v, int64_t *out);
SHMP_MPI_API int shmp_mpi_value_store(shmp_mpi_value_t *v, int64_t x);
SHMP_MPI_API int shmp_mpi_value_add(shmp_mpi_value_t *v, int64_t delta, int64_t *prev);
SHMP_MPI_API int shmp_mpi_value_cas(shmp_mpi_value_t *v, int64_t *expected, int64_t desired);
/* The lock, or NULL (errno ENOLCK) for a raw value. */
SHMP_MPI_API shmp_mpi_lock_t *shmp_mpi_value_lock(shmp_mpi_value_t *v);
SHMP_MPI_API char shmp_mpi_value_typecode(const shmp_mpi_value_t *v);

/* Collective. length >= 1; init (length items, may be NULL: zeros) is read
 * on the root. */
SHMP_MPI_API shmp_mpi_array_t *shmp_mpi_array_create(MPI_Comm comm, char typecode, size_t length,
						     const void *init, const struct shmp_mpi_value_opts *opts);
SHMP_MPI_API void shmp_mpi_array_destroy(shmp_mpi_array_t *a);
SHMP_MPI_API size_t shmp_mpi_array_len(const shmp_mpi_array_t *a);
SHMP_MPI_API char shmp_mpi_array_typecode(const shmp_mpi_array_t *a);
/* Item i; -ERANGE if i >= len. */
SHMP_MPI_API int shmp_mpi_array_get(shmp_mpi_array_t *a, size_t i, void *out);
SHMP_MPI_API int shmp_mpi_array_set(shmp_mpi_array_t *a, size_t i, const void *in);
SHMP_MPI_API int shmp_mpi_array_get_i64(shmp_mpi_array_t *a, size_t i, int64_t *out);
SHMP_MPI_API int shmp_mpi_array_set_i64(shmp_mpi_array_t *a, size_t i, int64_t x);
SHMP_MPI_API int shmp_mpi_array_get_f64(shmp_mpi_array_t *a, size_t i, double *out);
SHMP_MPI_API int shmp_mpi_array_set_f64(shmp_mpi_array_t *a, size_t i, double x);
/* Items [start, start+count) out / in, under the lock as one step;
 * -ERANGE outside the array. */
SHMP_MPI_API int shmp_mpi_array_read(shmp_mpi_array_t *a, size_t start, size_t count, void *out);
SHMP_MPI_API int shmp_mpi_array_write(shmp_mpi_array_t *a, size_t start, size_t count, const void *in);
SHMP_MPI_API int shmp_mpi_array_load(shmp_mpi_array_t *a, size_t i, int64_t *out);
SHMP_MPI_API int shmp_mpi_array_store(shmp_mpi_array_t *a, size_t i, int64_t x);
SHMP_MPI_API int shmp_mpi_array_add(shmp_mpi_array_t *a, size_t i, int64_t delta, int64_t *prev);
SHMP_MPI_API int shmp_mpi_array_cas(shmp_mpi_array_t *a, size_t i, int64_t *expected, int64_t desired);
SHMP_MPI_API shmp_mpi_lock_t *shmp_mpi_array_lock(shmp_mpi_array_t *a);

#ifdef __cplusplus
}
#endif
#endif
