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
 * supervisor thread, or the caller of apply / imap) delivers the results and
 * frees the record (FREE, next lap).
 *
 * Trust. Whoever can write the pool's segment can rewrite every word of it
 * (README "Security"). So the pool's process keeps its own truth in private
 * memory and uses shared memory only to talk to its workers:
 *  - every record has a private shadow (call, items, where its copied data
 *    is): collection is claimed on the shadow, results are found through it,
 *    blocks are freed by it — a forged record can make a task report a wrong
 *    status or garbage results, never free or write memory the task did not
 *    own, and a terminated pool fails what is left from its shadows alone;
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
#include <pthread.h>

#define SHMP__POOL_MAGIC 0x504f4f4cu /* "POOL" */
#define SHMP__POOL_VERSION 2u

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
	uint64_t a; /* INLINE: payload offset; SEG: data-segment offset; REF: mapping serial */
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

/* What the submitter writes in a record for the worker. Tagged (see
 * shmp__task_tag): a worker runs only what the pool's process submitted. */
struct shmp__task {
	uint32_t call, call_gen; /* process-local call table (thread workers only) */
	uint64_t first;          /* first item index */
	uint32_t count, flags;
	uint64_t fn;             /* code offset from shmp_pool_create */
	uint32_t in_size, out_size;
	struct shmp__desc in, out;
	uint64_t notify_off;     /* REC_F_NOTIFY: pool-segment offset of a shmp__notify */
};

struct shmp__rec {
	_Atomic uint64_t word;
	struct shmp__task t;
	uint64_t tag;            /* keyed MAC of (seq, t) */
	/* written by the worker (or the supervisor for a lost task) */
	int32_t status, code, signal, exit_status;
	uint64_t fail_index;
	int32_t worker_pid;
	_Atomic uint32_t wake; /* REC_F_CALLER: the caller sleeps on it */
	uint64_t reserved[2];
	/* inline payload follows */
};

/* A record's tag: SipHash-1-3 of (seq, task) under the pool's key. The key
 * is drawn when the pool is created and lives only in the memory of the
 * pool's process, its zygote and its workers (inherited by fork), never
 * in shared memory: whoever writes the segment can destroy records, not
 * make a worker call a function, or read or write memory, the pool's
 * process did not ask for. */
static inline uint64_t shmp__rotl(uint64_t x, int b)
{
	return (x << b) | (x >> (64 - b));
}
#define SHMP__SIPROUND(v0, v1, v2, v3)                                                           \
	do {                                                                                  \
		v0 += v1; v1 = shmp__rotl(v1, 13); v1 ^= v0; v0 = shmp__rotl(v0, 32);            \
		v2 += v3; v3 = shmp__rotl(v3, 16); v3 ^= v2;                                      \
		v0 += v3; v3 = shmp__rotl(v3, 21); v3 ^= v0;                                      \
		v2 += v1; v1 = shmp__rotl(v1, 17); v1 ^= v2; v2 = shmp__rotl(v2, 32);            \
	} while (0)
static inline uint64_t shmp__task_tag(const uint64_t key[2], uint64_t seq, const struct shmp__task *t)
{
	uint64_t v0 = key[0] ^ 0x736f6d6570736575ull, v1 = key[1] ^ 0x646f72616e646f6dull;
	uint64_t v2 = key[0] ^ 0x6c7967656e657261ull, v3 = key[1] ^ 0x7465646279746573ull;
	uint64_t m[1 + sizeof(struct shmp__task) / 8];
	m[0] = seq;
	memcpy(&m[1], t, sizeof *t);
	for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
		v3 ^= m[i];
		SHMP__SIPROUND(v0, v1, v2, v3);
		v0 ^= m[i];
	}
	uint64_t b = (uint64_t)sizeof m << 56;
	v3 ^= b;
	SHMP__SIPROUND(v0, v1, v2, v3);
	v0 ^= b;
	v2 ^= 0xff;
	SHMP__SIPROUND(v0, v1, v2, v3);
	SHMP__SIPROUND(v0, v1, v2, v3);
	SHMP__SIPROUND(v0, v1, v2, v3);
	return v0 ^ v1 ^ v2 ^ v3;
}
_Static_assert(sizeof(struct shmp__task) % 8 == 0, "task header in words");

/* The shared worker table: written by workers and the pool for display
 * (shmp show), and a few hints from a worker about its own exit. The pool's
 * process never acts on it. */
struct shmp__wk {
	_Atomic int32_t pid;        /* display: this slot's current worker, 0 none */
	_Atomic uint32_t state;     /* display: SHMP_WORKER_* */
	_Atomic uint32_t gen;       /* display: incarnations started in this slot */
	_Atomic int32_t init_code;  /* the failed initializer's return value */
	_Atomic uint32_t retired;   /* exited on purpose (max tasks, close) */
	_Atomic uint32_t init_failed;
	_Atomic uint64_t tasks_done;
	_Atomic uint64_t cur_index;
	uint64_t reserved[3];
} __attribute__((aligned(64)));

/* A worker process's exit status when its initializer failed (with
 * init_failed set: both must say so). */
#define SHMP__EXIT_INIT 0x49

struct shmp__pool_sh {
	uint32_t magic, version;
	uint32_t capacity, nworkers;
	uint32_t rec_size, inline_size;
	int32_t max_tasks;
	uint32_t threads;
	uint64_t recs_off, wk_off;
	int32_t owner_pid, zygote_pid; /* display only */
	_Atomic uint32_t state;        /* display: SHMP_POOL_* */
	_Atomic uint32_t stop;         /* to workers: 0 run; STOP_DRAIN: exit when empty; STOP_NOW */
	uint32_t reserved0;
	uint32_t supervision;          /* 1 io_uring, 0 poll: for inspection */
	uint64_t reserved[4];
	SHMP__ALIGNED _Atomic uint64_t head; /* next seq to claim (hint) */
	SHMP__ALIGNED _Atomic uint64_t tail; /* display: next seq to fill */
	SHMP__ALIGNED _Atomic uint32_t task_futex; /* seq | SHMP__TASK_ARMED */
	_Atomic uint32_t poll_owner;               /* worker + 1 that set poll_stamp */
	/* When a worker last polled for a task (0: none polls). A hint: a
	 * submitter skips the wake while it is fresh; it goes stale by itself
	 * if the poller is killed or descheduled. */
	_Atomic uint64_t poll_stamp;
	SHMP__ALIGNED _Atomic uint32_t sup_armed; /* supervisor asleep: write the eventfd */
	_Atomic uint32_t scan_needed;             /* done ring overflowed: scan records */
	SHMP__ALIGNED uint64_t reserved1;
	/* display: copies of the pool's private counters */
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
	char *buf;              /* results, in the pool's data arena */
	uint64_t buf_off, buf_len;
};
enum { SLOT_EMPTY, SLOT_BUSY, SLOT_READY };

struct shmp_async {
	struct shmp_pool *pool; /* NULL once the pool is gone (the handle outlived it) */
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

/* A record's private shadow (see the top): what the pool's process put in
 * the record, kept where nobody else can rewrite it. */
enum { SHADOW_FREE, SHADOW_LIVE, SHADOW_COLLECTING };
enum { OUT_INPLACE, OUT_INLINE, OUT_BLOCK };
struct shmp__shadow {
	_Atomic uint64_t word; /* seq << 2 | SHADOW_* (zero: free, first lap) */
	uint32_t call, call_gen;
	uint64_t first;
	uint32_t count, flags;
	uint64_t block, block_len; /* arena block of its copied data, 0 none */
	uint32_t out_at;           /* copied results: offset in the payload or block */
	uint32_t out_where;        /* OUT_* */
	uint64_t notify_off;       /* REC_F_NOTIFY: the caller's wake word */
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
	int pidfd;            /* process: the zygote's pidfd of it, -1 none */
	uint32_t gen;         /* incarnation number the zygote gave */
	bool live;            /* an incarnation runs (started, not yet seen gone) */
	bool wanted;          /* a spawn was requested, not yet seen */
	bool send_spawn;      /* ... and the request is still to be sent */
	bool exited;          /* its pidfd fired */
	bool reaped;          /* the zygote reported its wait status */
	int status;           /* that wait status */
	uint64_t exited_at;   /* when the pidfd fired (ns) */
	/* thread workers: what the thread itself says (private memory) */
	_Atomic bool t_done;
	bool t_retired, t_init_failed;
	int t_init_code;
};

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
	/* the handle's head (src/internal.h, one lifetime rule) */
	shmp_segment_t *seg; /* where the shared state lives: the registry's or dseg */
	struct shmp__pool_sh *sh;
	_Atomic uint32_t *ref; /* NULL: the pool belongs to the process that created it */
	pid_t pid;             /* that process */

	bool threads;
	int nworkers;
	shmp_segment_t *dseg; /* the pool's own anonymous segment: task data */
	shmp_registry_t *registry;
	bool registered; /* named in the registry's directory */
	uint64_t sh_off;
	/* private copies of the shared layout's sizes */
	uint32_t capacity, rec_size, inline_size;
	char *recs;
	struct shmp__wk *wk;
	struct shmp__shadow *shadow;
	struct shmp__arena arena;
	shmp_ring_t *done;
	int efd;          /* workers -> supervisor */
	int zsock;        /* the private channel to the zygote */
	pid_t zygote;
	int zygote_pidfd;
	uint64_t map_serial; /* mappings up to this are in the workers too */
	uint64_t key[2];     /* records' tags (private: see shmp__task_tag) */
	size_t max_task_bytes;
	shmp_init_fn init;
	void *initarg;
	int max_tasks;
	/* the truth (shared copies are for display) */
	_Atomic uint32_t state;   /* SHMP_POOL_* */
	_Atomic uint32_t stop;    /* STOP_* */
	_Atomic int broken;       /* BROKEN: -SHMP_EBROKEN or -SHMP_EINIT */
	_Atomic int init_code;    /* -SHMP_EINIT: the initializer's return value */
	_Atomic uint64_t n_submitted, n_completed, n_failed, n_deaths, n_started, n_cb_errors;
	_Atomic uint64_t tail;    /* next seq to fill (written under submit_mu) */
	_Atomic bool zexit;       /* the zygote is to be told to end (sent by the supervisor) */
	/* workers */
	pthread_mutex_t wk_mu;    /* pid and pidfd of wpriv, against terminate */
	struct shmp__wpriv *wp;
	bool zygote_gone;
	_Atomic uint32_t threads_up; /* thread workers that said their tid (create waits) */
	/* supervisor */
	pthread_t sup;
	bool sup_started;
	_Atomic uint32_t sup_done; /* futex: supervisor finished */
	int supervision;           /* 1 io_uring, 0 poll */
	/* thread workers */
	pthread_t *tw;
	bool *tw_joinable;
	/* submissions and the call table */
	pthread_mutex_t submit_mu;
	pthread_mutex_t calls_mu;
	_Atomic uint32_t free_futex; /* a record was freed */
	_Atomic uint32_t free_waiters;
	struct shmp_async **pages[1024];
	uint32_t *free_slots;
	uint32_t n_free, cap_free, n_slots;
	_Atomic uint32_t abandoned; /* abandoned calls with tasks in flight */
	/* calls finished by a submitter but owed callbacks on the supervisor */
	struct shmp_async *finish_q;
	_Atomic int joined;
	bool free_on_exit; /* destroyed from its own callback: the supervisor frees it */
};
SHMP__HEAD_CHECK(struct shmp_pool);

#define SHMP__CALLS_PER_PAGE 1024u

static inline struct shmp__rec *pool_rec(const struct shmp_pool *p, uint64_t seq)
{
	return (struct shmp__rec *)(p->recs + (size_t)(seq & (p->capacity - 1)) * p->rec_size);
}
static inline struct shmp__shadow *pool_shadow(const struct shmp_pool *p, uint64_t seq)
{
	return &p->shadow[seq & (p->capacity - 1)];
}
static inline char *rec_payload(struct shmp__rec *r)
{
	return (char *)(r + 1);
}
static inline uint64_t shadow_word(uint64_t seq, unsigned st)
{
	return seq << 2 | st;
}
/* The pool's arena bytes [off, off + len), or NULL if outside it. */
static inline char *arena_ptr(const struct shmp_pool *p, uint64_t off, size_t len)
{
	const struct shmp__arena *a = &p->arena;
	if (off < a->base || off - a->base > a->size || len > a->size - (off - a->base))
		return NULL;
	return p->dseg->base + off;
}

/* pool.c */
void shmp__pool_free(struct shmp_pool *p);
/* The pool behind a handle, or an error: -EINVAL (NULL), -ECHILD (a handle
 * a forked child inherited: its workers are not this process's). */
int shmp__pool_check(const shmp_pool_t *p);
/* The error a call gets from a pool that is not running (0 if it is). */
int shmp__pool_stopped_error(struct shmp_pool *p);
void shmp__pool_set_state(struct shmp_pool *p, uint32_t to);
void shmp__pool_stop_workers(struct shmp_pool *p);
int shmp__zygote_send(struct shmp_pool *p, uint32_t op, uint32_t slot);

/* pool_submit.c */
int shmp__imap_submit(struct shmp_pool *p, struct shmp_async *c, uint64_t first, size_t count,
		      struct shmp__imap_slot *slot, const char *gen);
int shmp__imap_check(struct shmp_pool *p, shmp_task_fn fn, size_t in_size, size_t out_size);
int shmp__imap_sizes(struct shmp_pool *p, size_t in_size, size_t out_size, bool copy_in, size_t *cs,
		     unsigned *window);

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
struct shmp_async *shmp__call_new(struct shmp_pool *p, int kind);
struct shmp_async *shmp__call_lookup(struct shmp_pool *p, uint32_t slot, uint32_t gen);
void shmp__call_unref(struct shmp_async *c);
void shmp__call_free_memory(struct shmp_async *c, bool pool_alive);
void shmp__call_task_done(struct shmp_async *c, bool on_supervisor);
void shmp__call_finish(struct shmp_async *c);
void shmp__call_note_error(struct shmp_async *c, const struct shmp_task_error *e);
void shmp__calls_detach(struct shmp_pool *p);

/* pool_tasks.c */
int shmp__task_reserve(struct shmp_pool *p, const struct shmp__deadline *d, uint64_t *seq);
void shmp__task_publish(struct shmp_pool *p, uint64_t seq, struct shmp__rec *r);
void shmp__tasks_wake(struct shmp_pool *p);
bool shmp__task_collect(struct shmp_pool *p, uint64_t seq, bool supervisor);
void shmp__task_fail(struct shmp_pool *p, uint64_t seq, uint64_t word, int error, int code, int sig,
		     int exit_status);
void shmp__tasks_fail_private(struct shmp_pool *p, int error, int code);
bool shmp__task_fail_shadow(struct shmp_pool *p, uint64_t q, int error, int code);
void shmp__tasks_check_stalled(struct shmp_pool *p);
uint64_t shmp__tasks_outstanding(struct shmp_pool *p);
void shmp__notify_supervisor(struct shmp_pool *p);
void shmp__wake_caller(struct shmp_pool *p, struct shmp__rec *r, uint32_t flags, uint64_t notify_off);
uint64_t shmp__fn_offset(shmp_task_fn fn);
void shmp__count_add(struct shmp_pool *p, _Atomic uint64_t *priv, _Atomic uint64_t *shared, uint64_t n);

/* pool_arena.c */
int shmp__arena_init(struct shmp__arena *a, uint64_t base, uint64_t size);
void shmp__arena_fini(struct shmp__arena *a);
/* 0 (*off), -EAGAIN when full but tasks in flight hold room, -SHMP_ESEGFULL
 * when full and nothing in flight would free any. task: the block is a
 * task's (counted in task_bytes until freed with task set too). */
int shmp__arena_alloc(struct shmp__arena *a, uint64_t len, bool task, uint64_t *off);
void shmp__arena_free(struct shmp__arena *a, uint64_t off, uint64_t len, bool task);
/* arena_alloc, waiting for room while tasks in flight hold it: -EINTR
 * (interruptible), -ETIMEDOUT, -SHMP_ESEGFULL. */
int shmp__arena_alloc_wait(struct shmp_pool *p, uint64_t len, bool task, const struct shmp__deadline *d,
			   uint64_t *off);
uint64_t shmp__arena_used(struct shmp__arena *a);

/* pool_worker.c */
void shmp__worker_main(struct shmp_pool *p, unsigned w);
void shmp__zygote_main(struct shmp_pool *p, int sock, pid_t parent);
void *shmp__thread_worker(void *arg);
/* Is fn code of this process (an executable mapping)? Cached. */
bool shmp__code_address(uintptr_t a);

/* pool_super.c */
void *shmp__supervisor_main(void *arg);
int shmp__spawn_request(struct shmp_pool *p, unsigned w);
/* Read the zygote's messages; block up to timeout_ms for the first (0: no
 * wait). Handled into the private worker table. -EPIPE once it is gone. */
int shmp__zygote_recv(struct shmp_pool *p, int timeout_ms);
/* Signals blocked on the pool's own threads, so that a process-directed
 * signal (Ctrl-C) reaches the caller's threads, whose waits it interrupts. */
int shmp__thread_create(pthread_t *t, void *(*fn)(void *), void *arg);

#endif
