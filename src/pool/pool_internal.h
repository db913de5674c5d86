/* private: the Pool's process-local state and the rest of its shared
 * layout (the task table's is in tasktab.h).
 *
 * Files: pool.c (create, close, terminate, join, stats), pool_submit.c (the
 * calls), pool_imap.c, pool_calls.c (the call table, AsyncResult),
 * pool_tasks.c (what a task carries and what its collection delivers),
 * tasktab.c (the task table: records, states, wake-ups, scans),
 * pool_arena.c (the data arena), pool_worker.c (the loop every worker
 * runs), pool_threads.c and pool_zygote.c (the two kinds of workers behind
 * struct shmp__worker_ops), pool_super.c (the supervisor thread).
 *
 * Trust. Whoever can write the pool's segment can rewrite every word of it
 * (README "Security"). So the pool's process keeps its own truth in private
 * memory and uses shared memory only to talk to its workers:
 *  - every record has a private shadow (tasktab.c): collection is claimed
 *    on the shadow, results are found through it, blocks are freed by it —
 *    a forged record can make a task report a wrong status or garbage
 *    results, never free or write memory the task did not own, and a
 *    terminated pool fails what is left from its shadows alone;
 *  - the pool's state, its counters and the worker table are private; the
 *    shared copies are for display (`shmp show`, shmp_pool_inspect);
 *  - processes are addressed only through pidfds and pids the zygote handed
 *    over on a private socket (SOCK_SEQPACKET, pidfds by SCM_RIGHTS) at each
 *    fork, and the zygote reaps only children from its own private table;
 *  - task data is copied through an arena whose allocator is private to the
 *    pool's process: no offset read from shared memory is ever freed.
 *
 * Shared memory holds offsets only: task data by data-segment offset or by
 * (mapping serial, offset), calls by (slot, generation) in a process-local
 * table, functions by their distance from a library symbol (checked against
 * the executable mappings before a call, in the caller and in the worker).
 */
#ifndef SHMP_POOL_INTERNAL_H
#define SHMP_POOL_INTERNAL_H

#include "internal.h"
#include "tasktab.h"
#include <pthread.h>

#define SHMP__POOL_MAGIC 0x504f4f4cu /* "POOL" */
/* The layout of struct shmp__pool_sh, the worker table and the task
 * table's records (pinned in pool.c and tasktab.c). */
#define SHMP__POOL_VERSION 2u

/* The shared worker table: written by workers and the pool for display
 * (shmp show), and a few hints from a worker about its own exit. The pool's
 * process never acts on it alone. */
struct shmp__wk {
	_Atomic int32_t pid;        /* display: this slot's current worker, 0 none */
	_Atomic uint32_t state;     /* display: SHMP_WORKER_* */
	_Atomic uint32_t gen;       /* display: incarnations started in this slot */
	_Atomic int32_t init_code;  /* the failed initializer's return value */
	_Atomic uint32_t retired;   /* exited on purpose (max tasks, close) */
	_Atomic uint32_t init_failed;
	_Atomic uint64_t tasks_done;
	_Atomic uint64_t cur_index;
	uint64_t reserved[3];       /* zero, for later versions */
} __attribute__((aligned(64)));

/* A worker process's exit status when its initializer failed (with
 * init_failed set: both must say so). */
#define SHMP__EXIT_INIT 0x49

/* The pool's shared header: sizes and offsets for inspection, display
 * copies, and the two words workers act on: stop and the task table's. */
struct shmp__pool_sh {
	uint32_t magic, version;
	uint32_t capacity, nworkers;
	uint32_t rec_size, inline_size;
	int32_t max_tasks;
	uint32_t threads;
	uint64_t recs_off, wk_off;
	int32_t owner_pid, zygote_pid; /* display only */
	_Atomic uint32_t state;        /* display: SHMP_POOL_* */
	_Atomic uint32_t stop;         /* to workers: SHMP__STOP_* */
	uint32_t reserved0;            /* zero, for later versions */
	uint32_t supervision;          /* 1 io_uring, 0 poll: for inspection */
	uint64_t reserved[4];          /* zero, for later versions */
	struct shmp__tasktab_sh tt;    /* the task table's words */
	/* display: copies of the pool's private counters */
	SHMP__ALIGNED _Atomic uint64_t deaths, started, cb_errors;
};

/* ---- process-local ---------------------------------------------------- */
enum { CALL_APPLY, CALL_MAP, CALL_IMAP };

struct shmp__imap_slot {
	_Atomic uint32_t state; /* SLOT_EMPTY, SLOT_BUSY, SLOT_READY */
	uint32_t count;         /* items in the chunk */
	uint64_t chunk;         /* chunk number */
	uint64_t first;         /* first item index */
	uint32_t taken;         /* items handed out */
	uint64_t seq;           /* its task's record */
	struct shmp_task_error err; /* err.error != 0: the chunk failed */
	char *buf;              /* results, in the pool's data arena */
	uint64_t buf_off, buf_len;
};
enum { SLOT_EMPTY, SLOT_BUSY, SLOT_READY };
/* Bytes of result (and argument copy) an AsyncResult holds in itself. */
#define SHMP__CALL_SMALL 32

struct shmp_async {
	struct shmp_pool *pool; /* NULL once the pool is gone (the handle outlived it) */
	pid_t pid;              /* the process that made it (a forked child's copy is refused) */
	uint32_t slot, gen;
	int kind;
	_Atomic uint32_t done;    /* futex: 1 once finished */
	_Atomic uint32_t waiters;
	_Atomic int refs;         /* the user's and the pool's */
	_Atomic int64_t pending;  /* tasks not collected + 1 while submitting */
	shmp_task_fn fn;
	size_t in_size, out_size, n, chunksize;
	const char *in;
	char *out;
	char *user_out; /* apply_async: the caller's buffer, filled at finish */
	bool own_out, own_in;
	/* apply_async's result (and a ThreadPool's argument copy) when small:
	 * no allocation per call */
	uint64_t small_out[SHMP__CALL_SMALL / 8], small_in[SHMP__CALL_SMALL / 8];
	_Atomic bool abandoned; /* its caller left (imap destroyed, apply interrupted): the supervisor collects */
	bool failed;
	struct shmp_task_error err; /* the failure with the smallest item index */
	shmp_callback_fn callback;
	shmp_error_callback_fn error_callback;
	void *cb_arg;
	struct shmp_imap *it; /* CALL_IMAP */
	struct shmp_async *next_finish; /* supervisor's queue of calls to finish */
};

struct shmp_imap {
	struct shmp_async *call;
	bool ordered;
	bool input_done;   /* nothing more to submit */
	bool room_blocked; /* the last fill found no room in the arena */
	int input_error;
	uint64_t input_error_index;
	unsigned window;
	struct shmp__imap_slot *slots;
	uint64_t chunks_submitted, chunks_taken;
	uint64_t items_submitted; /* next input index */
	uint64_t cursor;          /* ordered: next chunk to hand out */
	struct shmp__notify *notify; /* in the pool's segment: workers wake us here */
	uint64_t notify_off;
	shmp_input_fn input;
	void *input_ctx;
	char *gen;                /* generator items of the chunk being read */
	size_t gen_count;         /* ... read already, waiting for room to be submitted */
};

/* The data arena: one block of the pool's data segment, carved by an
 * allocator that lives only in the pool's process (first fit, coalescing,
 * so any request no larger than the arena eventually fits once the tasks
 * holding it are collected). */
struct shmp__arena {
	pthread_mutex_t mu;
	uint64_t base, size;      /* offsets in the data segment */
	struct shmp__ext { uint64_t off, len; } *free; /* sorted, coalesced */
	unsigned n, cap;
	uint64_t used;            /* bytes allocated */
	uint64_t task_bytes;      /* of which held by tasks in flight */
	_Atomic uint32_t futex;   /* bumped when room is freed */
	_Atomic uint32_t waiters;
};

/* The private worker table. */
struct shmp__wpriv {
	_Atomic pid_t pid;    /* current incarnation (process or thread id), 0 none */
	uint32_t gen;         /* incarnation number */
	_Atomic bool live;    /* an incarnation runs (started, not yet seen gone); stats read it from any thread */
	/* processes */
	int pidfd;            /* the zygote's pidfd of it, -1 none */
	int armed_fd;         /* the pidfd the supervisor watches, -1 none */
	bool wanted;          /* a spawn was requested, not yet seen */
	bool send_spawn;      /* ... and the request is still to be sent */
	bool exited;          /* its pidfd fired */
	bool reaped;          /* the zygote reported its wait status */
	int status;           /* that wait status */
	uint64_t exited_at;   /* when the pidfd fired (ns) */
	/* threads: what the thread itself says (private memory) */
	_Atomic bool t_done;
	bool t_retired, t_init_failed;
	int t_init_code;
};

/* How a worker ended, as its kind tells it. */
struct shmp__worker_end {
	int signal, exit_status; /* exit_status -1: unknown, or killed */
	bool planned;            /* retired on purpose (max tasks, close) */
	bool init_failed;        /* its initializer failed ... */
	int init_code;           /* ... returning this */
};

struct shmp__waitset;
/* The supervisor's waitset tags: the doorbell, then the worker kind's. */
enum { SHMP__TAG_DOORBELL = 0, SHMP__TAG_WORKERS = 1 };

/* The two kinds of workers, behind one interface: processes forked by the
 * zygote (pool_zygote.c) and threads of the pool's process
 * (pool_threads.c). start/abort/spawn/kill are called by create, terminate
 * and the supervisor; the rest by the supervisor thread only. */
struct shmp__worker_ops {
	/* Workers share the caller's memory: tasks point into it. */
	bool shares_memory;
	/* Start every worker; returns once each has said who it is. 0 or
	 * -errno (abort undoes what was started). */
	int (*start)(struct shmp_pool *p);
	/* create failed after start: end what it started. */
	void (*abort)(struct shmp_pool *p);
	/* A new incarnation in slot w. 0 or -errno. */
	int (*spawn)(struct shmp_pool *p, unsigned w);
	/* terminate: end every worker now. */
	void (*kill)(struct shmp_pool *p);
	/* What the supervisor waits for, added to its waitset once... */
	void (*watch)(struct shmp_pool *p, struct shmp__waitset *ws);
	/* ... news taken on each of its turns ... */
	void (*turn)(struct shmp_pool *p, struct shmp__waitset *ws);
	/* ... one of the kind's tags (>= SHMP__TAG_WORKERS) fired ... */
	void (*event)(struct shmp_pool *p, struct shmp__waitset *ws, uint64_t tag);
	/* ... and let go when it ends. */
	void (*unwatch)(struct shmp_pool *p);
	/* Has slot w's live incarnation ended? *now: a clock read shared by
	 * one pass over the slots (0 until read). */
	bool (*gone)(struct shmp_pool *p, unsigned w, uint64_t *now);
	/* It ended: how, its resources given back. */
	void (*ended)(struct shmp_pool *p, struct shmp__waitset *ws, unsigned w, struct shmp__worker_end *e);
	/* Every worker stopped and the pool ends: true once nothing of the
	 * kind is left (processes: the zygote asked to end, and gone). */
	bool (*finish)(struct shmp_pool *p);
};
extern const struct shmp__worker_ops shmp__process_workers, shmp__thread_workers;

/* pool <-> zygote, one datagram each (SOCK_SEQPACKET). */
enum { ZM_SPAWN = 1, ZM_EXIT, ZM_SPAWNED, ZM_REAPED, ZM_FORKFAIL };
struct shmp__zmsg {
	uint32_t op;
	uint32_t slot;
	uint32_t gen;
	int32_t pid;
	int32_t status; /* REAPED: wait status; FORKFAIL: errno */
	uint32_t reserved;
};

struct shmp_pool {
	/* the handle's head (src/core/internal.h, one lifetime rule) */
	shmp_segment_t *seg; /* where the shared state lives: the registry's or dseg */
	struct shmp__pool_sh *sh;
	_Atomic uint32_t *ref; /* NULL: the pool belongs to the process that created it */
	pid_t pid;             /* that process */

	bool threads;
	const struct shmp__worker_ops *wops;
	int nworkers;
	shmp_segment_t *dseg; /* the pool's own anonymous segment: task data */
	shmp_registry_t *registry;
	bool registered; /* named in the registry's directory */
	uint64_t sh_off;
	struct shmp__tasktab tt;
	struct shmp__wk *wk;
	struct shmp__arena arena;
	uint64_t map_serial; /* mappings up to this are in the workers too */
	size_t max_task_bytes;
	shmp_init_fn init;
	void *initarg;
	int max_tasks;
	/* the truth (shared copies are for display) */
	_Atomic uint32_t state;   /* SHMP_POOL_* */
	_Atomic uint32_t stop;    /* SHMP__STOP_* */
	/* Why it broke (BROKEN), one word written once: the error (high 32
	 * bits: -SHMP_EBROKEN or -SHMP_EINIT) and its code (the
	 * initializer's return value). 0 while it is not broken. */
	_Atomic uint64_t broken;
	_Atomic uint64_t n_deaths, n_started, n_cb_errors;
	/* workers */
	pthread_mutex_t wk_mu;    /* pid and pidfd of wpriv, against terminate */
	struct shmp__wpriv *wp;
	bool workers_lost;        /* none runs and none can start (the zygote is gone) */
	/* process workers: the zygote */
	int zsock;                /* the private channel to the zygote */
	pid_t zygote;
	int zygote_pidfd;
	_Atomic bool zexit;       /* the zygote is to be told to end (sent by the supervisor) */
	bool zexit_sent;
	/* thread workers */
	pthread_t *tw;
	bool *tw_joinable;
	_Atomic uint32_t threads_up; /* thread workers that said their tid (create waits) */
	/* supervisor */
	pthread_t sup;
	bool sup_started;
	_Atomic uint32_t sup_done; /* futex: supervisor finished */
	int supervision;           /* 1 io_uring, 0 poll */
	struct shmp__waitset *ws0; /* made by create, taken by the supervisor */
	/* submissions and the call table */
	pthread_mutex_t submit_mu;
	pthread_mutex_t calls_mu;
	/* Notify words of ended imaps, kept for later imaps and given back
	 * with the pool (notify_mu). A worker wakes an imap caller after it
	 * stored DONE, so the caller may have ended, and freed its word, by
	 * the time the worker adds to it: a freed word could be someone
	 * else's memory by then; a reused one only wakes an imap early, and
	 * its waits look again. */
	pthread_mutex_t notify_mu;
	uint64_t *notify_free;
	uint32_t n_notify_free, cap_notify_free;
	struct shmp_async **pages[1024];
	uint32_t *free_slots;
	uint32_t n_free, cap_free, n_slots;
	/* freed call handles kept for the next calls (a burst of apply_async
	 * allocates nothing per call), linked by next_finish; calls_mu */
	struct shmp_async *spare;
	uint32_t n_spare;
	_Atomic uint32_t abandoned; /* abandoned calls with tasks in flight */
	/* calls finished by a submitter but owed callbacks on the supervisor */
	struct shmp_async *finish_q;
	_Atomic int joined;
	bool free_on_exit; /* destroyed from its own callback: the supervisor frees it */
};
SHMP__HEAD_CHECK(struct shmp_pool);

#define SHMP__CALLS_PER_PAGE 1024u

/* The pool's arena bytes [off, off + len), or NULL if outside it. */
static inline char *arena_ptr(const struct shmp_pool *p, uint64_t off, size_t len)
{
	const struct shmp__arena *a = &p->arena;
	if (off < a->base || off - a->base > a->size || len > a->size - (off - a->base))
		return NULL;
	return p->dseg->base + off;
}

static inline void shmp__count_add(_Atomic uint64_t *priv, _Atomic uint64_t *shown, uint64_t n)
{
	atomic_fetch_add_explicit(priv, n, memory_order_acq_rel);
	atomic_fetch_add_explicit(shown, n, memory_order_relaxed);
}

/* pool.c */
void shmp__pool_free(struct shmp_pool *p);
/* The pool behind a handle, or an error: -EINVAL (NULL), -ECHILD (a handle
 * a forked child inherited: its workers are not this process's). */
int shmp__pool_check(const shmp_pool_t *p);
/* The one mapping of the pool's state to an error: 0 while it runs;
 * -SHMP_ECLOSED once closed or terminated; once broken, why (*code, if
 * not NULL: the initializer's return value for -SHMP_EINIT, else 0). */
int shmp__pool_error(struct shmp_pool *p, int *code);
/* What ends a submitter's wait (for a record, for room): the pool's error
 * once it is terminated or broken, 0 while it runs or drains (closed). */
int shmp__pool_wait_error(struct shmp_pool *p);
/* A call's failure r (before or while submitting) as a task error, with
 * the pool's code when r is the pool's own error. */
struct shmp_task_error shmp__pool_task_error(struct shmp_pool *p, int r, uint64_t index, uint64_t skipped);
void shmp__pool_set_state(struct shmp_pool *p, uint32_t to);
/* Broken for good (error, code: see broken): no task will run. */
void shmp__pool_break(struct shmp_pool *p, int error, int code);
void shmp__pool_stop_workers(struct shmp_pool *p);
/* Is this the supervisor thread (the table's collector)? */
bool shmp__pool_on_supervisor(struct shmp_pool *p);

/* pool_tasks.c */
extern const struct shmp__tt_ops shmp__pool_tt_ops;
/* Where a call's memory reaches a worker: in place (a thread shares it),
 * by reference (in a mapping the workers have too), or copied. */
enum { PLACE_NONE, PLACE_LOCAL, PLACE_REF, PLACE_COPY };
struct shmp__place {
	uint8_t in, out;
	uint64_t in_ser, in_off, out_ser, out_off;
};
/* refs: look for the call's arrays in mappings the workers have too. */
void shmp__place_call(struct shmp_pool *p, struct shmp_async *c, bool refs, struct shmp__place *pl);
/* Bytes of one item copied through the arena, or the error if one item
 * cannot be (-SHMP_ESEGFULL). */
int shmp__check_item_room(struct shmp_pool *p, size_t in_copy, size_t out_copy);
/* Publish one task: items [first, first+count) of call c. slot: an imap
 * chunk (results go to its buffer). gen: the items an input function
 * wrote (imap). 0 (*seq_out), -ETIMEDOUT (deadline d), -EINTR, the pool's
 * error, -SHMP_ESEGFULL. */
int shmp__task_submit(struct shmp_pool *p, struct shmp_async *c, const struct shmp__place *pl, uint64_t first,
		      size_t count, uint32_t flags, struct shmp__imap_slot *slot, const char *gen,
		      const struct shmp__deadline *d, uint64_t *seq_out);

/* pool_submit.c */
int shmp__imap_sizes(struct shmp_pool *p, size_t in_size, size_t out_size, bool copy_in, size_t *cs,
		     unsigned *window);

/* pool_calls.c */
/* The start every call shares: its arguments checked (the pool's state
 * too), the call made (kind; in, or imap's input function; n items;
 * results to out, which must be given if out_needed; chunksize and
 * callbacks from opts), where its memory reaches the workers (pl), and one
 * item's copies checked against the arena. The options as loaded in *o_out
 * (if not NULL). NULL + errno. */
struct shmp_async *shmp__call_begin(struct shmp_pool *p, int kind, const struct shmp_call_opts *opts,
				    shmp_task_fn fn, const void *in, shmp_input_fn input, size_t in_size, size_t n,
				    void *out, size_t out_size, bool out_needed, struct shmp__place *pl,
				    struct shmp_call_opts *o_out);
/* A call that never got a task: both references go. */
void shmp__call_drop(struct shmp_async *c);
struct shmp_async *shmp__call_lookup(struct shmp_pool *p, uint32_t slot, uint32_t gen);
void shmp__call_unref(struct shmp_async *c);
/* shmp_async_destroy in the process that made it: the caller's reference. */
void shmp__call_destroy(struct shmp_async *c);
void shmp__call_free_memory(struct shmp_async *c, bool pool_alive);
void shmp__call_task_done(struct shmp_async *c, bool on_supervisor);
void shmp__call_finish(struct shmp_async *c);
void shmp__call_note_error(struct shmp_async *c, const struct shmp_task_error *e);
/* The caller leaves before its tasks are collected: the supervisor's sweep
 * collects them (and the call ends then). */
void shmp__call_abandon(struct shmp_async *c);
void shmp__calls_detach(struct shmp_pool *p);
/* An imap's notify word: one kept from an ended imap, or a new one in the
 * pool's segment. NULL and errno as shmp__alloc_ptr. */
struct shmp__notify *shmp__notify_get(struct shmp_pool *p, uint64_t *off);
/* Keep an ended imap's notify word for the next (see notify_free). */
void shmp__notify_put(struct shmp_pool *p, uint64_t off);

/* pool_arena.c */
int shmp__arena_init(struct shmp__arena *a, uint64_t base, uint64_t size);
void shmp__arena_fini(struct shmp__arena *a);
/* 0 (*off), -EAGAIN when full but tasks in flight hold room, -SHMP_ESEGFULL
 * when full and nothing in flight would free any. task: the block is a
 * task's (counted in task_bytes until freed with task set too). */
int shmp__arena_alloc(struct shmp__arena *a, uint64_t len, bool task, uint64_t *off);
void shmp__arena_free(struct shmp__arena *a, uint64_t off, uint64_t len, bool task);
/* arena_alloc, waiting for room while tasks in flight hold it: -EINTR
 * (interruptible), -ETIMEDOUT, -SHMP_ESEGFULL, the pool's error. */
int shmp__arena_alloc_wait(struct shmp_pool *p, uint64_t len, bool task, const struct shmp__deadline *d,
			   uint64_t *off);
uint64_t shmp__arena_used(struct shmp__arena *a);

/* pool_worker.c */
/* What every worker runs: the initializer, then tasks until told to stop
 * or retired by max_tasks_per_child. 0, or the initializer's non-zero
 * return value (the pool is then broken). */
int shmp__worker_loop(struct shmp_pool *p, unsigned w);
/* Is fn code of this process (an executable mapping)? Cached. */
bool shmp__code_address(uintptr_t a);

/* pool_super.c */
void *shmp__supervisor_main(void *arg);
/* Signals blocked on the pool's own threads, so that a process-directed
 * signal (Ctrl-C) reaches the caller's threads, whose waits it interrupts. */
int shmp__thread_create(pthread_t *t, void *(*fn)(void *), void *arg);

#endif
