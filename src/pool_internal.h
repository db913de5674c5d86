/* private: the Pool's shared layout and process-local state.
 *
 * Tasks live in a table of records in shared memory, used as a ring by
 * sequence number: the parent fills record seq % capacity and publishes it
 * QUEUED; a worker claims it with one CAS that also writes its worker number
 * (QUEUED -> RUNNING|worker), so a claimed task always names its runner: a
 * worker killed at any point leaves either an unclaimed task (another worker
 * takes it) or a RUNNING record naming it (the supervisor fails that task).
 * Nothing is lost, nothing runs twice. The worker writes the results, stores
 * DONE and posts the sequence number to the done ring; a collector (the
 * supervisor thread, or the caller of apply) claims DONE -> COLLECTING,
 * delivers the results and frees the record (FREE, next lap).
 *
 * Shared memory holds offsets only: task data by pool-segment offset or by
 * (mapping serial, offset), calls by (slot, generation) in a process-local
 * table, functions by their distance from a library symbol (checked against
 * the executable mappings before a call).
 */
#ifndef SHMP_POOL_INTERNAL_H
#define SHMP_POOL_INTERNAL_H

#include "internal.h"
#include <pthread.h>

#define SHMP__POOL_MAGIC 0x504f4f4cu /* "POOL" */
#define SHMP__POOL_VERSION 1u

/* record word: seq (40 bits) | state (4) | worker (20) */
#define REC_SEQ_SHIFT 24
#define REC_STATE_SHIFT 20
#define REC_WORKER_MASK 0xfffffu
#define REC_SEQ_MASK ((1ull << 40) - 1)
enum { REC_FREE, REC_QUEUED, REC_RUNNING, REC_DONE, REC_COLLECTING };
static inline uint64_t rec_word(uint64_t seq, unsigned state, unsigned w)
{
	return (seq & REC_SEQ_MASK) << REC_SEQ_SHIFT | (uint64_t)state << REC_STATE_SHIFT | w;
}
static inline uint64_t rec_seq(uint64_t word) { return word >> REC_SEQ_SHIFT; }
static inline unsigned rec_state(uint64_t word) { return (word >> REC_STATE_SHIFT) & 0xf; }
static inline unsigned rec_worker(uint64_t word) { return word & REC_WORKER_MASK; }

/* Where a task's input or output is. */
enum { DESC_NONE, DESC_INLINE, DESC_SEG, DESC_REF, DESC_LOCAL };
struct shmp__desc {
	uint32_t kind;
	uint32_t reserved;
	uint64_t a; /* INLINE: payload offset; SEG: pool-segment offset; REF: mapping serial */
	uint64_t b; /* REF: offset in the mapping; LOCAL: byte offset from the call's array */
};

enum {
	REC_F_CALLER = 1u << 0, /* the caller collects (apply, imap), not the supervisor */
	REC_F_NOTIFY = 1u << 1, /* ... and sleeps on the notify word at notify_off */
};

/* A caller's wake-up word in the pool's segment (imap). */
struct shmp__notify {
	_Atomic uint32_t seq;
	_Atomic uint32_t waiters;
};

struct shmp__rec {
	_Atomic uint64_t word;
	uint32_t call, call_gen; /* process-local call table */
	uint64_t first;          /* first item index */
	uint32_t count, flags;
	uint64_t fn;             /* code offset from shmp_pool_create */
	uint32_t in_size, out_size;
	struct shmp__desc in, out;
	uint64_t block; /* pool-segment block to free after collection, 0 none */
	/* written by the worker (or the supervisor for a lost task) */
	int32_t status, code, signal, exit_status;
	uint64_t fail_index;
	int32_t worker_pid;
	_Atomic uint32_t wake; /* REC_F_CALLER: the caller sleeps on it */
	uint64_t notify_off;   /* REC_F_NOTIFY: pool-segment offset of a shmp__notify */
	uint64_t reserved[1];
	/* inline payload follows */
};

struct shmp__wk {
	_Atomic int32_t pid;        /* this slot's current worker, 0 none */
	_Atomic uint32_t state;     /* SHMP_WORKER_* */
	_Atomic uint32_t gen;       /* incarnations started in this slot */
	_Atomic uint32_t spawn;     /* parent -> zygote: fork this slot */
	_Atomic uint32_t reaped;    /* zygote -> parent: gen whose status is below */
	_Atomic int32_t status;     /* wait status of incarnation `reaped` */
	_Atomic uint32_t retired;   /* exited on purpose (max tasks, close) */
	_Atomic uint32_t init_failed;
	_Atomic uint64_t tasks_done;
	_Atomic uint64_t cur_index;
	uint64_t reserved[2];
} __attribute__((aligned(64)));

struct shmp__pool_sh {
	uint32_t magic, version;
	uint32_t capacity, nworkers;
	uint32_t rec_size, inline_size;
	int32_t max_tasks;
	uint32_t threads;
	uint64_t recs_off, wk_off;
	int32_t owner_pid, zygote_pid;
	_Atomic uint32_t state; /* SHMP_POOL_* */
	_Atomic uint32_t stop;  /* 0 run; STOP_DRAIN: exit when empty; STOP_NOW */
	_Atomic uint32_t zygote_exit;
	uint32_t supervision;   /* 1 io_uring, 0 poll: for inspection */
	uint64_t reserved[4];
	SHMP__ALIGNED _Atomic uint64_t head; /* next seq to claim (hint) */
	SHMP__ALIGNED _Atomic uint64_t tail; /* next seq to fill (parent only) */
	SHMP__ALIGNED _Atomic uint32_t task_futex; /* seq | SHMP__TASK_ARMED */
	_Atomic uint32_t poll_owner;               /* worker + 1 that set poll_stamp */
	/* When a worker last polled for a task (0: none polls). A hint: a
	 * submitter skips the wake while it is fresh; it goes stale by itself
	 * if the poller is killed or descheduled. */
	_Atomic uint64_t poll_stamp;
	SHMP__ALIGNED _Atomic uint32_t sup_armed; /* supervisor asleep: write the eventfd */
	_Atomic uint32_t scan_needed;             /* done ring overflowed: scan records */
	SHMP__ALIGNED _Atomic uint32_t free_futex;
	_Atomic uint32_t free_waiters;
	SHMP__ALIGNED _Atomic uint64_t submitted, completed, failed, deaths, started, cb_errors;
};
enum { STOP_NONE, STOP_DRAIN, STOP_NOW };

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
	char *buf;              /* results, in the pool segment */
	uint64_t buf_off;
};
enum { SLOT_EMPTY, SLOT_BUSY, SLOT_READY };

struct shmp__pool;

struct shmp_async {
	struct shmp__pool *pool;
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
	_Atomic bool abandoned; /* imap destroyed early: the supervisor collects */
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
	int input_error;
	unsigned window;
	struct shmp__imap_slot *slots;
	uint64_t chunks_submitted, chunks_taken;
	uint64_t items_submitted; /* next input index */
	uint64_t cursor;          /* ordered: next chunk to hand out */
	struct shmp__notify *notify; /* in the pool's segment: workers wake us here */
	uint64_t notify_off;
	shmp_input_fn input;
	void *input_ctx;
};

struct shmp__pool {
	bool threads;
	int nworkers;
	shmp_segment_t *seg;
	bool own_seg;
	bool registered; /* named in its segment's directory (shmp__registry_add) */
	struct shmp__pool_sh *sh;
	char *recs;
	struct shmp__wk *wk;
	shmp_ring_t *done;
	int efd;          /* workers/zygote -> supervisor */
	int zfd;          /* supervisor -> zygote */
	pid_t zygote;
	int zygote_pidfd;
	uint64_t map_serial; /* mappings up to this are in the workers too */
	size_t max_task_bytes;
	shmp_init_fn init;
	void *initarg;
	int max_tasks;
	/* supervisor */
	pthread_t sup;
	bool sup_started;
	_Atomic uint32_t sup_done; /* futex: supervisor finished */
	int supervision;           /* 1 io_uring, 0 poll */
	pthread_t sup_tid_self;
	/* thread workers */
	pthread_t *tw;
	bool *tw_joinable;
	/* submissions and the call table */
	pthread_mutex_t submit_mu;
	pthread_mutex_t calls_mu;
	struct shmp_async **pages[1024];
	uint32_t *free_slots;
	uint32_t n_free, cap_free, n_slots;
	_Atomic uint32_t abandoned; /* abandoned calls with tasks in flight */
	/* calls finished by a submitter but owed callbacks on the supervisor */
	struct shmp_async *finish_q;
	bool closed_local;
	_Atomic int joined;
	bool free_on_exit; /* destroyed from its own callback: the supervisor frees it */
};

#define SHMP__CALLS_PER_PAGE 1024u

static inline struct shmp__rec *pool_rec(const struct shmp__pool *p, uint64_t seq)
{
	return (struct shmp__rec *)(p->recs + (size_t)(seq & (p->sh->capacity - 1)) * p->sh->rec_size);
}
static inline char *rec_payload(struct shmp__rec *r)
{
	return (char *)(r + 1);
}

/* pool.c, pool_submit.c */
void shmp__pool_free(struct shmp__pool *p);
struct shmp__pool *shmp__pool_get(const shmp_pool_t *h);
int shmp__imap_submit(struct shmp__pool *p, struct shmp_async *c, uint64_t first, size_t count,
		      struct shmp__imap_slot *slot, const char *gen);

#define SHMP__POLL_FRESH_NS 50000
#define SHMP__TASK_ARMED 0x80000000u /* in task_futex: a worker sleeps on it */

static inline bool shmp__poll_fresh(struct shmp__pool_sh *sh)
{
	uint64_t st = atomic_load_explicit(&sh->poll_stamp, memory_order_relaxed);
	return st && shmp__now_ns() - st <= SHMP__POLL_FRESH_NS;
}

/* After publishing a task: wake the sleeping workers, unless one polls (it
 * will see the task) or none sleeps. A sleeper sets ARMED before it sleeps;
 * the waker clears it and bumps the word in one CAS, so of many submits
 * only the first after a sleep makes the syscall, and a worker about to
 * sleep on the old value does not. */
static inline void shmp__wake_workers(struct shmp__pool_sh *sh)
{
	atomic_thread_fence(memory_order_seq_cst);
	uint32_t v = atomic_load_explicit(&sh->task_futex, memory_order_relaxed);
	if (!(v & SHMP__TASK_ARMED) || shmp__poll_fresh(sh))
		return;
	if (atomic_compare_exchange_strong_explicit(&sh->task_futex, &v, (v + 1) & ~SHMP__TASK_ARMED,
						    memory_order_seq_cst, memory_order_relaxed))
		shmp__futex_wake(&sh->task_futex, INT32_MAX);
}

/* pool_calls.c */
struct shmp_async *shmp__call_new(struct shmp__pool *p, int kind);
struct shmp_async *shmp__call_lookup(struct shmp__pool *p, uint32_t slot, uint32_t gen);
void shmp__call_unref(struct shmp_async *c);
void shmp__call_free_memory(struct shmp_async *c);
void shmp__call_task_done(struct shmp_async *c, bool on_supervisor);
void shmp__call_finish(struct shmp_async *c);
void shmp__call_note_error(struct shmp_async *c, const struct shmp_task_error *e);

/* pool_tasks.c */
int shmp__task_reserve(struct shmp__pool *p, const struct shmp__deadline *d, uint64_t *seq);
void shmp__task_publish(struct shmp__pool *p, uint64_t seq, struct shmp__rec *r);
void shmp__tasks_wake(struct shmp__pool *p);
bool shmp__task_collect(struct shmp__pool *p, uint64_t seq, bool supervisor);
void shmp__task_fail(struct shmp__pool *p, struct shmp__rec *r, uint64_t word, int error, int sig,
		     int exit_status);
void shmp__notify_supervisor(struct shmp__pool *p);
void shmp__wake_caller(struct shmp__pool *p, struct shmp__rec *r, uint32_t flags);
uint64_t shmp__fn_offset(shmp_task_fn fn);

/* pool_worker.c */
void shmp__worker_main(struct shmp__pool *p, unsigned w);
void shmp__zygote_main(struct shmp__pool *p);
void *shmp__thread_worker(void *arg);

/* pool_super.c */
void *shmp__supervisor_main(void *arg);
int shmp__spawn_request(struct shmp__pool *p, unsigned w);

#endif
