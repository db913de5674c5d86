/* private: the MPI component's wire formats and process-local state.
 *
 * Who does what (see include/shmp/mpi.h for the contract):
 *  - the root's dispatcher work (dispatch.c, shmp__mpi_step) cuts chunks
 *    from the calls, hands them to node pools (its own through node.c, the
 *    others by MPI), receives results and finishes calls; it runs on the
 *    dispatcher thread, or on a caller's thread while that caller waits
 *    (calls.c, shmp__mpi_drive), one thread at a time (p->driving, under
 *    the pool's lock): only that thread touches the pool's communicator;
 *  - a node rank other than the root serves in join/destroy (serve.c): it
 *    receives chunks, runs them in its node pool and sends results back;
 *  - node.c is the one place that uses the local Pool's API: a chunk is
 *    one local task, run by shmp__mpi_chunk_task in a worker, which
 *    resolves the task function (fnid.c) and loops over the items.
 *
 * Crash safety: a worker dying is the local Pool's business (its task
 * fails with -SHMP_EWORKERDIED and comes back as a chunk error); a rank
 * dying is MPI's (the job ends). Nothing here waits without a bound: every
 * loop that waits for MPI polls it with a sleep of at most a few ms, so a
 * job that MPI tears down is never stuck in shmp.
 */
#ifndef SHMP_MPI_INTERNAL_H
#define SHMP_MPI_INTERNAL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <pthread.h>
#include <signal.h>

#include "../core/opts.h"

#include "shmp.h"
#include "shmp/mpi.h"

/* ---- task functions across executables (fnid.c) ----------------------- */
struct shmp__mpi_fnid {
	uint8_t build_id[20];
	uint32_t build_id_len; /* 0: none; then name_hash + load_size identify the module */
	uint32_t name_hash;
	uint32_t code_len;
	uint64_t load_size;
	uint64_t offset;       /* from the module's load address */
	uint8_t code[16];      /* the function's first bytes */
};
/* 0, or -SHMP_EBADFN if fn is not in an executable segment of a loaded
 * module. */
int shmp__mpi_fnid_of(shmp_task_fn fn, struct shmp__mpi_fnid *id);
/* The function in this process, checked (module, segment, code bytes), or
 * NULL. */
shmp_task_fn shmp__mpi_fnid_resolve(const struct shmp__mpi_fnid *id);

/* ---- wire ------------------------------------------------------------- */
#define SHMP__MPI_MAGIC 0x314d5053u /* "SPM1" */
#define SHMP__MPI_HDR 128           /* bytes before a chunk's items */

enum {
	TAG_CHUNK = 1, /* root -> node rank: chunk header + arguments */
	TAG_CTRL = 2,  /* root -> any rank: an int command */
	TAG_FINAL = 3, /* node rank -> root: its last stats; nothing follows */
	TAG_RES0 = 16, /* node rank -> root: result of chunk slot (tag - TAG_RES0) */
};
enum { CTRL_DRAIN = 1, CTRL_TERMINATE = 2, CTRL_STOP = 3 };

struct shmp__mpi_chunk_hdr {
	uint32_t magic;
	uint32_t slot;   /* the root's slot: the result's tag */
	uint64_t first;  /* index of the first item in its call */
	uint32_t count;
	int32_t rank;    /* the node rank running it (for shmp_mpi_task_rank) */
	uint64_t in_size, out_size;
	struct shmp__mpi_fnid fn;
};

struct shmp__mpi_node_report {
	uint64_t worker_deaths, workers_started;
	uint32_t alive;
	uint32_t queued; /* tasks waiting for a worker when it was taken */
};

struct shmp__mpi_result_hdr {
	uint32_t magic;
	uint32_t slot;
	int32_t status;  /* 0, or -SHMP_ETASK / EBADFN / ECORRUPT / a local call's error */
	int32_t code, signal, exit_status;
	uint64_t fail_index; /* index in the call */
	uint32_t done;       /* items run before the failure (all, on success) */
	int32_t worker_pid;
	struct shmp__mpi_node_report node;
};
_Static_assert(sizeof(struct shmp__mpi_chunk_hdr) <= SHMP__MPI_HDR, "chunk header");
_Static_assert(sizeof(struct shmp__mpi_result_hdr) <= SHMP__MPI_HDR, "result header");

/* ---- the node pool (node.c: the only user of the local Pool API) ------ */
struct shmp__mpi_nodepool;
/* A chunk ran (or failed) in the node pool: buffers and error are the
 * submitter's; called on the node pool's supervisor thread. */
typedef void (*shmp__mpi_done_fn)(void *ctx, const struct shmp_task_error *err);
struct shmp__mpi_nodepool *shmp__mpi_node_create(int workers, unsigned flags, shmp_init_fn init, void *initarg,
						 int max_tasks, size_t max_bytes);
/* Run the chunk at in (SHMP__MPI_HDR + count * in_size bytes) into out
 * (SHMP__MPI_HDR + count * out_size); done(ctx, err) once, err NULL on
 * success (then out's header tells). 0, or the error at once (done is not
 * called). *handle: to release after done ran. */
int shmp__mpi_node_run(struct shmp__mpi_nodepool *np, void *in, size_t in_bytes, void *out, size_t out_bytes,
		       shmp__mpi_done_fn done, void *ctx, void **handle);
void shmp__mpi_node_release(void *handle);
/* The same chunk, its result polled for by the caller instead of a done
 * callback (no supervisor thread in between): start submits nothing yet;
 * poll (waiting up to timeout, 0 for a look) submits it if it was not,
 * and returns 1 once it finished (out has the result header + results,
 * or *err says why it failed), 0 not yet, -EINTR (interruptible); stop
 * releases the handle (a chunk still running finishes unseen). */
int shmp__mpi_node_start(struct shmp__mpi_nodepool *np, void *in, size_t in_bytes, size_t out_bytes, void **handle);
int shmp__mpi_node_poll(void *handle, void *out, struct shmp_task_error *err, double timeout);
void shmp__mpi_node_stop(void *handle);
void shmp__mpi_node_report(struct shmp__mpi_nodepool *np, struct shmp__mpi_node_report *r);
int shmp__mpi_node_close(struct shmp__mpi_nodepool *np);
int shmp__mpi_node_terminate(struct shmp__mpi_nodepool *np);
int shmp__mpi_node_join(struct shmp__mpi_nodepool *np, double timeout);
void shmp__mpi_node_destroy(struct shmp__mpi_nodepool *np);
/* Buffers the node pool's workers read and write in place (the shared
 * heap), else plain memory (copied by the pool). */
void *shmp__mpi_buf_alloc(size_t n);
void shmp__mpi_buf_free(void *p);

/* ---- waits (wait.c) --------------------------------------------------- */
/* The pool's state lock and condition: shmp's own (so waits honour
 * shmp_set_interruptible as every shmp wait does). */
struct shmp__mpi_sync {
	shmp_lock_t *mu;
	shmp_cond_t *cv;  /* callers wait here (and a serving rank) */
	shmp_cond_t *dcv; /* the root's dispatcher thread waits here */
	int efd;          /* an eventfd: a caller driving the pool sleeps on it */
};
int shmp__mpi_sync_init(struct shmp__mpi_sync *s);
void shmp__mpi_sync_fini(struct shmp__mpi_sync *s);
void shmp__mpi_lock(struct shmp__mpi_sync *s);
void shmp__mpi_unlock(struct shmp__mpi_sync *s);
void shmp__mpi_notify(struct shmp__mpi_sync *s);
/* The dispatcher's condition: woken by shmp__mpi_kick (and dnotify);
 * its thread blocks every signal, so its wait has no -EINTR. */
void shmp__mpi_dnotify(struct shmp__mpi_sync *s);
/* The eventfd: enotify makes it readable; esleep (lock held, dropped
 * while it sleeps) waits up to `seconds` for it with the signal mask
 * `mask` (ppoll: the mask is set only for the sleep, atomically), then
 * empties it: 0, or -EINTR when a signal handler ran. */
void shmp__mpi_enotify(struct shmp__mpi_sync *s);
int shmp__mpi_esleep(struct shmp__mpi_sync *s, double seconds, const sigset_t *mask);
void shmp__mpi_dwait(struct shmp__mpi_sync *s, double seconds);
/* Wait (lock held) up to `seconds`: 0 woken or timed out, -EINTR. */
int shmp__mpi_wait(struct shmp__mpi_sync *s, double seconds);
/* Sleep `seconds` without a lock: 0, or -EINTR when interruptible. */
int shmp__mpi_sleep(double seconds);
double shmp__mpi_now(void);
/* Seconds left until an absolute deadline (negative: forever), at least 0. */
double shmp__mpi_left(double deadline);
/* timeout (common.h meanings) -> absolute deadline, -1 forever; -EINVAL NaN */
int shmp__mpi_deadline(double timeout, double *deadline);
/* True in a process forked after this handle was made (MPI calls barred). */
bool shmp__mpi_foreign(pid_t creator);
/* The start of every wait on a handle: -ECHILD in a forked child, else the
 * deadline of timeout as shmp__mpi_deadline. */
int shmp__mpi_wait_begin(pid_t creator, double timeout, double *deadline);
/* A call only the submitting rank makes: 0; -EINVAL (NULL), -ECHILD (a
 * handle inherited through fork: the one rule of every handle), -EPERM
 * (a serving rank). */
int shmp__mpi_root_only(const shmp_mpi_pool_t *p);

/* ---- the cluster pool ------------------------------------------------- */
enum { CALL_APPLY, CALL_MAP, CALL_IMAP };
enum { CH_NEW, CH_SENT, CH_LOCAL, CH_RECV, CH_DONE };

struct shmp__mpi_chunk {
	struct shmp_mpi_pool *pool;
	struct shmp_mpi_async *call;
	uint64_t first;
	uint32_t count;
	int state;        /* CH_* */
	bool dead;        /* its call no longer wants it: drop the result */
	bool sent_done;   /* the send request completed */
	int node;         /* index in the node table */
	uint32_t slot;
	uint64_t seq;     /* imap: chunk number */
	/* The headers as they travel: SHMP__MPI_HDR bytes each. */
	_Alignas(16) char hbuf[SHMP__MPI_HDR]; /* struct shmp__mpi_chunk_hdr, sent */
	_Alignas(16) char rbuf_h[SHMP__MPI_HDR]; /* struct shmp__mpi_result_hdr, received */
	struct shmp_task_error lerr;      /* local: the node pool's error */
	bool lfailed;
	const char *in;   /* the items' arguments */
	char *own_in;     /* imap: a copy */
	char *dest;       /* where results go (call out, or rbuf) */
	char *rbuf;       /* imap: results of its own */
	void *lin, *lout, *lh; /* local: buffers and handle */
	size_t lin_bytes, lout_bytes;
	char *scratch;    /* a dead chunk's result */
	int scratch_bytes;
	MPI_Request sreq, rreq;
	MPI_Datatype stype, rtype;
	struct shmp__mpi_chunk *next;  /* lists: completions, imap queues */
	struct shmp__mpi_chunk *anext; /* the active list (MPI requests) */
	uint32_t taken;   /* imap: items handed out */
};

struct shmp__mpi_node {
	int rank, ranks;
	unsigned workers;
	char host[64];
	unsigned credit, inflight; /* chunks it may hold, and holds */
	unsigned base_credit, max_credit;
	bool local, broken, final;
	uint64_t chunks, items, failed;
	struct shmp__mpi_node_report rep;
};

struct shmp_mpi_async {
	struct shmp_mpi_pool *pool;
	int kind;
	int refs;             /* the user's, the pool's (until finished) */
	shmp_task_fn fn;
	struct shmp__mpi_fnid fnid;
	const char *in;
	size_t in_size, out_size, n, chunksize;
	char *out;
	char *own_out;        /* apply_async: the result */
	char *own_in;         /* apply_async: a copy of the argument */
	void *user_out;       /* apply_async: copied there at finish */
	size_t next;          /* map: next item to cut */
	uint64_t pending;     /* chunks cut and not accounted for */
	bool cut_done, finished, done, failed, dropped;
	struct shmp_mpi_task_error err;
	shmp_mpi_callback_fn callback;
	shmp_mpi_error_callback_fn error_callback;
	void *cb_arg;
	struct shmp_mpi_async *qnext; /* the pool's queue of calls with items to cut */
	struct shmp_mpi_async *fnext; /* calls to finish */
	struct shmp_mpi_imap *it;
	struct shmp_mpi_async *lprev, *lnext; /* the pool's list of live calls */
};

struct shmp_mpi_imap {
	struct shmp_mpi_async *call;
	bool ordered, input_done, destroyed;
	int input_error;
	unsigned window;
	uint64_t cut, consumed;   /* chunks */
	uint64_t cursor;          /* ordered: next chunk to hand out */
	uint64_t items_cut;       /* next input index */
	shmp_input_fn input;
	void *input_ctx;
	struct shmp__mpi_chunk *ready; /* done, not yet handed out */
	struct shmp__mpi_chunk *todo;  /* cut, waiting for a node (FIFO) */
	struct shmp__mpi_chunk **todo_tail;
	struct shmp__mpi_chunk *cur;   /* being handed out */
};

struct shmp_mpi_pool {
	pid_t creator;
	MPI_Comm comm, node_comm;
	int rank, size, root, node_rank, node_size;
	unsigned flags;
	bool is_root, leader;
	int total_workers;
	struct shmp__mpi_nodepool *np; /* this rank's node pool (a leader with workers) */
	size_t max_bytes;
	unsigned prefetch;
	struct shmp__mpi_sync sync;
	/* root */
	int state;                    /* SHMP_POOL_* */
	int broken_error;             /* -SHMP_EINIT / -SHMP_EBROKEN, with broken_rank */
	int broken_rank;
	bool stop_thread, terminate_req, drain_req, drained, joined, thread_started;
	bool term_done, ctrl_sent, local_stopped;
	pthread_t thread;
	struct shmp__mpi_node *nodes;
	unsigned nnodes;
	int *stop_ranks;              /* ranks that only wait for CTRL_STOP */
	unsigned nstop;
	struct shmp__mpi_chunk **slots;
	uint32_t nslots, *free_slots, nfree;
	struct shmp_mpi_async *queue, **queue_tail;   /* calls with work to cut */
	struct shmp__mpi_chunk *completions;          /* local chunks done */
	struct shmp__mpi_chunk *active;               /* chunks with MPI requests (remote) */
	struct shmp_mpi_async *finish_list;           /* calls to finish */
	struct shmp_mpi_async *calls;                 /* every call not yet freed */
	uint64_t calls_alive;
	uint64_t submitted, completed, failed, items, cb_errors;
	uint64_t wake_seq;
	bool driving;                 /* a thread is in shmp__mpi_step */
	unsigned helpers;             /* callers driving while they wait (calls.c) */
	/* non-root */
	bool served, serve_stop, serve_drain, serve_term, final_sent;
	struct shmp__mpi_serve *serve;
};

/* dispatch.c */
int shmp__mpi_dispatch_start(struct shmp_mpi_pool *p);
void shmp__mpi_dispatch_stop(struct shmp_mpi_pool *p);
void shmp__mpi_enqueue(struct shmp_mpi_pool *p, struct shmp_mpi_async *c); /* lock held */
void shmp__mpi_call_unref(struct shmp_mpi_async *c);                        /* lock held */
void shmp__mpi_call_free(struct shmp_mpi_async *c);
void shmp__mpi_call_link(struct shmp_mpi_pool *p, struct shmp_mpi_async *c);
/* The error of a failed chunk, as the caller sees it (lock held). */
void shmp__mpi_chunk_error(struct shmp_mpi_pool *p, struct shmp__mpi_chunk *ch, struct shmp_mpi_task_error *e);
int shmp__mpi_chunk_status(struct shmp__mpi_chunk *ch);
void shmp__mpi_chunk_free(struct shmp__mpi_chunk *ch);
/* One round of the dispatcher's work (lock held; dropped inside): calls
 * cut and sent, results taken, calls finished. helper: a waiting caller
 * runs it (callbacks are left to the dispatcher thread). *remote: results
 * are expected from other ranks. True if anything happened. Only one
 * thread at a time (p->driving). */
bool shmp__mpi_step(struct shmp_mpi_pool *p, bool helper, bool *remote);
/* calls.c: the calling thread drives the pool (lock held, dropped inside)
 * until *until (a flag under the lock) is true: 0, -ETIMEDOUT at the
 * absolute deadline (negative: none), -EINTR. */
int shmp__mpi_drive(struct shmp_mpi_pool *p, const bool *until, double deadline);
/* Wake the dispatcher and every waiter (lock held). shmp__mpi_notify
 * wakes the waiters only (calls done, imap results, drained). */
void shmp__mpi_kick(struct shmp_mpi_pool *p);
/* serve.c */
int shmp__mpi_serve(struct shmp_mpi_pool *p, double deadline);
void shmp__mpi_serve_free(struct shmp_mpi_pool *p);

#endif
