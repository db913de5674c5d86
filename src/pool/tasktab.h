/* private: the Pool's task table — the records tasks travel in, every move
 * of a record's state, the wake-ups around them and the scans over them.
 * The state machine, who moves which word, and what a process killed at
 * each point leaves are drawn at the top of tasktab.c.
 *
 * The table knows tasks, not calls: what a task means (its function, where
 * its data is) is its owner's, the pool's, which fills a struct shmp__task
 * and a private part at publish and gets both back at collect through
 * struct shmp__tt_ops. The pool's files never touch a record's word. */
#ifndef SHMP_TASKTAB_H
#define SHMP_TASKTAB_H

#include "internal.h"
#include <pthread.h>

/* ---- shared layout ------------------------------------------------------
 * Pinned by static asserts in tasktab.c; a change is a new version of the
 * layout of the header that holds them (SHMP__POOL_VERSION). */

/* A record's word: seq (40 bits) | state (4) | worker (20). The sequence
 * number tells one lap of the ring from the next (a stale or a forged word
 * names another seq); the worker is the one that claimed it. */
#define SHMP__REC_SEQ_SHIFT 24
#define SHMP__REC_STATE_SHIFT 20
#define SHMP__REC_WORKER_MASK 0xfffffu
#define SHMP__REC_SEQ_MASK ((1ull << 40) - 1)
enum { SHMP__REC_FREE, SHMP__REC_QUEUED, SHMP__REC_RUNNING, SHMP__REC_DONE };
static inline uint64_t shmp__rec_word(uint64_t seq, unsigned state, unsigned w)
{
	return (seq & SHMP__REC_SEQ_MASK) << SHMP__REC_SEQ_SHIFT | (uint64_t)state << SHMP__REC_STATE_SHIFT | w;
}

/* Where a task's input or output is (the owner's meaning; the table only
 * bounds DESC_INLINE, see shmp__tt_inline). */
enum { SHMP__DESC_NONE, SHMP__DESC_INLINE, SHMP__DESC_SEG, SHMP__DESC_REF, SHMP__DESC_LOCAL };
struct shmp__desc {
	uint32_t kind;
	uint32_t reserved; /* zero, for later versions */
	uint64_t a; /* INLINE: payload offset; SEG: data-segment offset; REF: mapping serial */
	uint64_t b; /* REF: offset in the mapping; LOCAL: byte offset from the call's array */
};

/* A task's flags: who collects it and how its collector is woken. */
enum {
	SHMP__TT_CALLER = 1u << 0, /* the caller collects (apply, imap), not the supervisor */
	SHMP__TT_NOTIFY = 1u << 1, /* ... and sleeps on the notify word at notify_off */
};

/* A caller's wake-up word in the pool's segment (imap: one per iterator,
 * shared by its tasks). */
struct shmp__notify {
	_Atomic uint32_t seq;
	_Atomic uint32_t waiters;
};

/* What the submitter writes in a record for the worker, covered by the
 * record's tag: a worker runs only what the pool's process published. */
struct shmp__task {
	uint32_t call, call_gen; /* process-local call table (thread workers only) */
	uint64_t first;          /* first item index */
	uint32_t count, flags;   /* flags: SHMP__TT_* */
	uint64_t fn;             /* code offset from shmp_pool_create */
	uint32_t in_size, out_size;
	struct shmp__desc in, out;
	uint64_t notify_off;     /* SHMP__TT_NOTIFY: pool-segment offset of a shmp__notify */
};

/* A record: capacity of them, rec_size apart, each followed by its inline
 * payload (rec_size - sizeof(struct shmp__rec) bytes). */
struct shmp__rec {
	_Atomic uint64_t word;
	struct shmp__task t;
	uint64_t tag;            /* keyed MAC of (seq, t): see tasktab.c */
	/* the outcome: written by the worker, or by the supervisor for a task
	 * that was lost; read once the word says DONE */
	int32_t status, code, signal, exit_status;
	uint64_t fail_index;
	int32_t worker_pid;
	_Atomic uint32_t wake;   /* SHMP__TT_CALLER without NOTIFY: the caller sleeps on it */
	uint64_t reserved[2];    /* zero, for later versions */
};

/* The table's words in the pool's shared header, each group on a cache
 * line of its own: claimers, the submitter, sleepers, the collector. */
struct shmp__tasktab_sh {
	SHMP__ALIGNED _Atomic uint64_t head; /* next seq to claim (a hint: workers help it on) */
	SHMP__ALIGNED _Atomic uint64_t tail; /* display: next seq to fill */
	SHMP__ALIGNED _Atomic uint32_t task_futex; /* bumped per wake | SHMP__TASK_ARMED */
	_Atomic uint32_t poll_owner;               /* worker + 1 that set poll_stamp */
	/* When a worker last polled for a task (0: none polls). A hint: a
	 * submitter skips the wake while it is fresh; it goes stale by itself
	 * if the poller is killed or descheduled. */
	_Atomic uint64_t poll_stamp;
	SHMP__ALIGNED _Atomic uint32_t sup_armed; /* the collector sleeps: ring the doorbell */
	_Atomic uint32_t scan_needed;             /* the done ring overflowed: scan records */
	SHMP__ALIGNED uint64_t reserved;          /* zero, for later versions */
	/* display: copies of the private counters */
	SHMP__ALIGNED _Atomic uint64_t submitted, completed, failed;
};
#define SHMP__TASK_ARMED 0x80000000u /* in task_futex: a worker sleeps on it */

/* The stop word's values (the owner's header holds it): to workers. */
enum { SHMP__STOP_NONE, SHMP__STOP_DRAIN /* exit when none is queued */, SHMP__STOP_NOW };

/* ---- private ------------------------------------------------------------ */

/* The owner's part of a record's shadow: stored at publish, handed back at
 * collect; the table never reads it. */
enum { SHMP__OUT_INPLACE, SHMP__OUT_INLINE, SHMP__OUT_BLOCK };
struct shmp__task_priv {
	uint32_t call, call_gen;
	uint64_t block, block_len; /* arena block of its copied data, 0 none */
	uint32_t out_at;           /* copied results: offset in the payload or block */
	uint32_t out_where;        /* SHMP__OUT_* */
};

/* A record's private shadow: what the pool's process published, kept where
 * nobody else can rewrite it. Collection is claimed on it, and everything
 * a collection acts on (which call, which items, which block) is read from
 * it, never from the record. */
struct shmp__shadow {
	_Atomic uint64_t word; /* seq << 2 | LIVE/COLLECTING (zero: free, first lap) */
	uint64_t first;
	uint32_t count, flags;
	uint64_t notify_off;
	struct shmp__task_priv priv;
};

/* What a finished task reports (a worker's view of shmp_task_error). */
struct shmp__tt_result {
	int32_t status, code; /* 0, or the error and the function's return value */
	uint64_t fail_index;
	pid_t pid;            /* who ran it */
};

/* The owner's side of collection; owner is shmp__tt_init's. */
struct shmp__tt_ops {
	/* A claimed task's outcome e: deliver it (results are at payload, the
	 * record's inline bytes, or where priv says) and give back what priv
	 * holds. Runs before the record is freed. Returns what `collected`
	 * gets (NULL: nothing). */
	void *(*deliver)(void *owner, struct shmp__shadow *s, const char *payload, const struct shmp_task_error *e);
	/* After the record is free (one more task of that call is over). */
	void (*collected)(void *owner, void *call, bool supervisor);
	/* A task its caller collects (SHMP__TT_CALLER): has the caller left, so
	 * that the supervisor must collect it? */
	bool (*caller_left)(void *owner, const struct shmp__shadow *s);
	/* The current pid of worker w (for a task it was running), 0 if none. */
	pid_t (*worker_pid)(void *owner, unsigned w);
	/* Must a submitter waiting for a free record give up: its error, or 0. */
	int (*wait_error)(void *owner);
};

struct shmp__tasktab {
	/* shared (in every worker too: the fields up to key are inherited) */
	struct shmp__tasktab_sh *sh;
	_Atomic uint32_t *stop;  /* SHMP__STOP_* */
	shmp_segment_t *seg;     /* holds the records and notify words */
	char *recs;
	uint32_t capacity, rec_size, inline_size;
	shmp_ring_t *done;       /* workers -> collector: seqs of finished tasks */
	int efd;                 /* the collector's doorbell (an eventfd) */
	uint64_t idle_poll_ns;   /* 0: workers spin 30 us; else they yield-poll this long */
	uint64_t key[2];         /* the tags' key: private memory only */
	/* the pool's process only */
	struct shmp__shadow *shadow; /* a mapping of its own, shadow_len bytes */
	size_t shadow_len;
	const struct shmp__tt_ops *ops;
	void *owner;
	_Atomic uint64_t tail;   /* next seq to fill (written under the submit lock) */
	_Atomic uint64_t n_submitted, n_completed, n_failed; /* the truth */
	_Atomic uint32_t free_futex; /* bumped when a record is freed */
	_Atomic uint32_t free_waiters;
	uint64_t last_completed, progress_at; /* the collector's stall watch */
};

/* Set up a table of `capacity` (a power of two) records with at least
 * inline_min bytes of payload each (tt->inline_size: how many), its records
 * in seg (zeroed unless seg is fresh), *recs_off their offset; a done ring
 * in seg, the doorbell, the key. sh and stop are in the owner's shared
 * header. 0 or -errno; shmp__tt_fini undoes a partial init. */
int shmp__tt_init(struct shmp__tasktab *tt, shmp_segment_t *seg, bool fresh_seg, struct shmp__tasktab_sh *sh,
		  _Atomic uint32_t *stop, uint32_t capacity, uint32_t inline_min, const struct shmp__tt_ops *ops,
		  void *owner, uint64_t *recs_off);
/* What such a table takes in its segment, at most. */
size_t shmp__tt_shared_size(uint32_t capacity, uint32_t inline_min);
/* Release this process's part; the shared part too if free_shared (seg is
 * a registry's, which outlives the pool). */
void shmp__tt_fini(struct shmp__tasktab *tt, bool free_shared);

/* ---- the pool's process: submitters ---------------------------------- */
/* The next record to fill (caller holds the submit lock): 0 with *seq,
 * -ETIMEDOUT (deadline d), -EINTR, or ops->wait_error's error. Waits while
 * the table is full; the collector thread (on_collector) collects meanwhile
 * instead, since nobody else would. */
int shmp__tt_reserve(struct shmp__tasktab *tt, const struct shmp__deadline *d, bool on_collector, uint64_t *seq);
/* Fill reserved record seq (task t, the owner's priv, inline input bytes
 * [inl, inl + inl_len) at payload offset 0) and make it QUEUED. Under the
 * submit lock. Workers are woken by shmp__tt_wake_workers, after it. */
void shmp__tt_publish(struct shmp__tasktab *tt, uint64_t seq, const struct shmp__task *t,
		      const struct shmp__task_priv *priv, const void *inl, size_t inl_len);
/* After publishing: wake sleeping workers unless one polls or none sleeps. */
void shmp__tt_wake_workers(struct shmp__tasktab *tt);
/* Tell workers to stop (SHMP__STOP_*) and wake every one. */
void shmp__tt_stop(struct shmp__tasktab *tt, uint32_t how);

/* ---- collection ------------------------------------------------------- */
/* Deliver finished task seq and free its record: true, or false if someone
 * else collects it (already collected; its caller's, unless the caller
 * left and supervisor is set). */
bool shmp__tt_collect(struct shmp__tasktab *tt, uint64_t seq, bool supervisor);
/* The caller's own task seq: is it finished, or no longer ours to wait
 * for (collected by someone else)? */
bool shmp__tt_is_finished(struct shmp__tasktab *tt, uint64_t seq);
/* apply's caller waits for its task (spin a round trip, then sleep on the
 * record's wake word): 0, or -EINTR under shmp_set_interruptible. */
int shmp__tt_wait(struct shmp__tasktab *tt, uint64_t seq);
/* An imap caller's sleep on its notify word: until `until` unless
 * ready(arg) says a task of its own is finished already. The futex wait's
 * result (0 also when it did not sleep). */
int shmp__tt_notify_wait(struct shmp__notify *n, bool (*ready)(void *), void *arg, const struct timespec *until);
/* Tasks published and not yet collected. */
uint64_t shmp__tt_outstanding(struct shmp__tasktab *tt);
/* Tasks published and not yet claimed (a statistic). */
uint64_t shmp__tt_queued(struct shmp__tasktab *tt);
/* The same from the shared words alone (display copies, maybe forged: for
 * inspection by other processes, never for a decision). */
uint64_t shmp__tt_sh_queued(const struct shmp__tasktab_sh *sh);

/* ---- the collector (the pool's supervisor thread) --------------------- */
/* Ring the collector's doorbell (a call handed over, the pool closing...). */
void shmp__tt_kick(struct shmp__tasktab *tt);
/* Awake: stop asking for the doorbell, drain it. */
void shmp__tt_collector_awake(struct shmp__tasktab *tt);
/* About to sleep: ask for the doorbell; false if work arrived meanwhile
 * (look again instead of sleeping). */
bool shmp__tt_collector_may_sleep(struct shmp__tasktab *tt);
/* Collect what the done ring names; scan every record too when the ring
 * overflowed or `sweep` (tasks whose callers left wake nobody). */
void shmp__tt_drain(struct shmp__tasktab *tt, bool sweep);
/* Take one seq from the done ring, waiting up to 1 ms, and collect it
 * (the collector thread, while it waits for room it alone can free). */
void shmp__tt_collect_one(struct shmp__tasktab *tt);
/* Ask for a scan of every record (a worker died: a DONE it never posted). */
void shmp__tt_scan_later(struct shmp__tasktab *tt);

/* Fail tasks that will never finish: those QUEUED (queued) and those
 * RUNNING on worker w (w < 0: any). The outcome says why. */
struct shmp__tt_failure {
	int error, code, signal, exit_status;
};
void shmp__tt_fail(struct shmp__tasktab *tt, bool queued, bool running, int w, const struct shmp__tt_failure *f);
/* Every worker is gone for good: fail what is left from the shadows alone. */
void shmp__tt_fail_private(struct shmp__tasktab *tt, int error, int code);
/* Called on every turn of the collector: when tasks are out and none
 * finished for a while, look at their records (shmp__tt_check_stalled). */
void shmp__tt_watch_progress(struct shmp__tasktab *tt);

/* ---- workers ----------------------------------------------------------- */
/* Claim the next queued task for worker w: 1 with *seq, or 0 when the
 * worker is to exit (STOP_NOW, or STOP_DRAIN with none queued). */
int shmp__tt_claim(struct shmp__tasktab *tt, unsigned w, uint64_t *seq);
/* Copy claimed task seq's header once: true if its tag says the pool's
 * process published it (else it must not run). */
bool shmp__tt_take(struct shmp__tasktab *tt, uint64_t seq, struct shmp__task *t);
/* Task seq's inline bytes [at, at + len), or NULL if out of the payload. */
char *shmp__tt_inline(struct shmp__tasktab *tt, uint64_t seq, uint64_t at, size_t len);
/* Worker w finished task seq (t: its checked copy): record the result,
 * mark it DONE, wake its collector. */
void shmp__tt_done(struct shmp__tasktab *tt, uint64_t seq, unsigned w, const struct shmp__task *t,
		   const struct shmp__tt_result *res);

#endif
