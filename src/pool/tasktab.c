/* private: the Pool's task table. Every record word, every shadow word and
 * every wake-up word of the pool is read and written here, and only here.
 *
 * Tasks travel in a ring of `capacity` records in shared memory, used by
 * sequence number: task seq lives in record seq % capacity, and the record's
 * word says which seq it holds and in which state. Beside each record, in
 * the pool's private memory, a shadow says what the pool's process
 * published there.
 *
 *   record word (shared)                  shadow word (private)
 *
 *   FREE(s) ............................. FREE(s)
 *     | publish (the pool's process, under the submit lock): task, tag,
 *     | outcome reset; the shadow LIVE, then the word QUEUED (release)
 *     v                                     v
 *   QUEUED(s) ........................... LIVE(s)
 *     | claim (worker w): CAS               |
 *     | QUEUED -> RUNNING|w (acquire),      |
 *     | then the head hint on               |
 *     v                                     |
 *   RUNNING(s,w)                            |
 *     | done (worker w): the outcome,       |
 *     | DONE (release), wake the collector  |
 *     v                                     |
 *   DONE(s) <-- fail (the supervisor):      |
 *     |   the outcome, CAS QUEUED or        |
 *     |   RUNNING -> DONE (its worker died, |
 *     |   or nobody will run it)            |
 *     |                                     | collect (the collector, once
 *     |                                     | the word says DONE), or fail
 *     |                                     | from the shadow alone (see
 *     |                                     | Trust): CAS LIVE -> COLLECTING
 *     |                                     v (one winner)
 *     |                                   COLLECTING(s)
 *     | deliver; the word FREE, then the shadow FREE
 *     v                                     v
 *   FREE(s + capacity) .................. FREE(s + capacity)
 *
 * Who collects: the supervisor thread, which the worker wakes through the
 * done ring (a seq per task) and the doorbell; or, for SHMP__TT_CALLER
 * tasks (apply, imap), the caller itself, which the worker wakes through
 * the record's wake word or the caller's notify word. A caller that leaves
 * (interrupted apply, imap destroyed early) is swept by the supervisor.
 *
 * What a kill leaves (a worker process killed at any instruction; the
 * pool's process killed takes the zygote and every worker with it):
 *  - before its claim CAS: the record is QUEUED: another worker takes it;
 *  - after the claim CAS, before moving the head hint on: the next claimer
 *    finds the record taken and moves the hint on itself;
 *  - between the claim and DONE: RUNNING naming it: the supervisor, seeing
 *    its pidfd fire, fails the tasks RUNNING on it (-SHMP_EWORKERDIED);
 *  - between DONE and its post to the done ring (or in the post): a DONE
 *    record nobody was told of: every worker exit asks for a scan of the
 *    table, which collects it;
 *  - between DONE and waking a caller that collects (apply, imap): the
 *    caller sees DONE at its next look (its sleeps are slices of 100 ms);
 *  - while polling for tasks: its poll stamp goes stale by itself (50 us),
 *    and submitters wake sleepers again.
 * So a task is run at most once (one CAS wins the claim), it is collected
 * once (one CAS wins the shadow), and none is lost.
 *
 * Trust. Whoever can write the pool's segment can rewrite any record. The
 * shadow is the truth: a record is collected only while its shadow is LIVE
 * for that seq, which call and items it serves and which block it holds
 * come from the shadow, and of the record only the outcome is read,
 * validated (a positive status is -SHMP_ECORRUPT, a failing index outside
 * the task's items becomes its first). A worker copies the task once and
 * runs it only if its tag — SipHash-1-3 of (seq, task) under a key that
 * lives in the memory of the pool's processes, never in the segment — is
 * right: a forged task is reported -SHMP_ECORRUPT and never run. A forged
 * word cannot make the pool wait for ever either: when tasks are out and
 * none finished for a second, the live records are looked at
 * (shmp__tt_check_stalled): one DONE and forgotten is collected, one no
 * longer saying what was published fails with -SHMP_ECORRUPT, a claim hint
 * moved past queued tasks is brought back. A forged RUNNING record waits
 * for its worker's end or for terminate, which fails everything left from
 * the shadows alone (shmp__tt_fail_private).
 *
 * Wake-ups, each a Dekker pair (the sleeper says it sleeps, then looks; the
 * waker publishes, then looks at the saying):
 *  - submitter -> workers: task_futex with SHMP__TASK_ARMED; no system call
 *    while a worker polls (poll_stamp fresh) or none sleeps; after a claim
 *    a worker wakes the next sleeper if more are queued (a burst spreads
 *    without the submitter paying a wake per task);
 *  - worker -> supervisor: the done ring, then the doorbell (an eventfd)
 *    if sup_armed;
 *  - worker -> caller: the record's wake word (apply), the caller's notify
 *    word (imap);
 *  - collector -> submitter: free_futex when a record is freed (private);
 *  - pool -> workers: the stop word, then every sleeper woken. */
#include "tasktab.h"

#include <sched.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>

/* Pinned: the layout is that of SHMP__POOL_VERSION 2. */
_Static_assert(sizeof(struct shmp__desc) == 24 && offsetof(struct shmp__desc, a) == 8, "desc");
_Static_assert(sizeof(struct shmp__task) == 96, "task size");
_Static_assert(sizeof(struct shmp__task) % 8 == 0, "task header in words (tag input)");
_Static_assert(offsetof(struct shmp__task, first) == 8 && offsetof(struct shmp__task, fn) == 24 &&
		       offsetof(struct shmp__task, in) == 40 && offsetof(struct shmp__task, out) == 64 &&
		       offsetof(struct shmp__task, notify_off) == 88,
	       "task fields");
_Static_assert(sizeof(struct shmp__rec) == 160, "record size");
_Static_assert(offsetof(struct shmp__rec, t) == 8 && offsetof(struct shmp__rec, tag) == 104 &&
		       offsetof(struct shmp__rec, status) == 112 && offsetof(struct shmp__rec, fail_index) == 128 &&
		       offsetof(struct shmp__rec, worker_pid) == 136 && offsetof(struct shmp__rec, wake) == 140,
	       "record fields");
_Static_assert(sizeof(struct shmp__notify) == 8, "notify word");
_Static_assert(sizeof(struct shmp__tasktab_sh) == 512, "table words size");
_Static_assert(offsetof(struct shmp__tasktab_sh, tail) == 64 && offsetof(struct shmp__tasktab_sh, task_futex) == 128 &&
		       offsetof(struct shmp__tasktab_sh, poll_owner) == 132 &&
		       offsetof(struct shmp__tasktab_sh, poll_stamp) == 136 &&
		       offsetof(struct shmp__tasktab_sh, sup_armed) == 192 &&
		       offsetof(struct shmp__tasktab_sh, scan_needed) == 196 &&
		       offsetof(struct shmp__tasktab_sh, reserved) == 256 &&
		       offsetof(struct shmp__tasktab_sh, submitted) == 320 &&
		       offsetof(struct shmp__tasktab_sh, failed) == 448,
	       "table words");

enum { SHADOW_FREE, SHADOW_LIVE, SHADOW_COLLECTING };

#define POLL_FRESH_NS 50000
/* How long tasks may be out with none finishing before their records are
 * looked at. */
#define STALL_NS (1000ull * 1000000ull)

static inline uint64_t rec_seq(uint64_t word) { return word >> SHMP__REC_SEQ_SHIFT; }
static inline unsigned rec_state(uint64_t word) { return (word >> SHMP__REC_STATE_SHIFT) & 0xf; }
static inline unsigned rec_worker(uint64_t word) { return word & SHMP__REC_WORKER_MASK; }
static inline bool rec_is(uint64_t word, uint64_t seq, unsigned state)
{
	return rec_state(word) == state && rec_seq(word) == (seq & SHMP__REC_SEQ_MASK);
}

static inline struct shmp__rec *rec_at(const struct shmp__tasktab *tt, uint64_t seq)
{
	return (struct shmp__rec *)(tt->recs + (size_t)(seq & (tt->capacity - 1)) * tt->rec_size);
}
static inline struct shmp__shadow *shadow_at(const struct shmp__tasktab *tt, uint64_t seq)
{
	return &tt->shadow[seq & (tt->capacity - 1)];
}
static inline char *payload(struct shmp__rec *r)
{
	return (char *)(r + 1);
}
static inline uint64_t shadow_word(uint64_t seq, unsigned st)
{
	return seq << 2 | st;
}

static void count_add(_Atomic uint64_t *priv, _Atomic uint64_t *shown, uint64_t n)
{
	atomic_fetch_add_explicit(priv, n, memory_order_acq_rel);
	atomic_fetch_add_explicit(shown, n, memory_order_relaxed);
}

/* The records that can hold a task: the last `capacity` seqs (scans leave
 * the untouched pages of a young pool untouched). */
static uint64_t window(struct shmp__tasktab *tt, uint64_t *end)
{
	*end = atomic_load_explicit(&tt->tail, memory_order_acquire);
	return *end > tt->capacity ? *end - tt->capacity : 0;
}

/* ---- the tag -------------------------------------------------------------
 * SipHash-1-3 of (seq, task) under the table's key, drawn at init and kept
 * only in the memory of the pool's process, its zygote and its workers
 * (inherited by fork), never in shared memory: whoever writes the segment
 * can destroy records, not make a worker call a function, or read or write
 * memory, the pool's process did not ask for. */
static inline uint64_t rotl(uint64_t x, int b)
{
	return (x << b) | (x >> (64 - b));
}
#define SIPROUND(v0, v1, v2, v3)                                                      \
	do {                                                                          \
		v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32);             \
		v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;                                \
		v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;                                \
		v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32);             \
	} while (0)
static uint64_t task_tag(const uint64_t key[2], uint64_t seq, const struct shmp__task *t)
{
	uint64_t v0 = key[0] ^ 0x736f6d6570736575ull, v1 = key[1] ^ 0x646f72616e646f6dull;
	uint64_t v2 = key[0] ^ 0x6c7967656e657261ull, v3 = key[1] ^ 0x7465646279746573ull;
	uint64_t m[1 + sizeof(struct shmp__task) / 8];
	m[0] = seq;
	memcpy(&m[1], t, sizeof *t);
	for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
		v3 ^= m[i];
		SIPROUND(v0, v1, v2, v3);
		v0 ^= m[i];
	}
	uint64_t b = (uint64_t)sizeof m << 56;
	v3 ^= b;
	SIPROUND(v0, v1, v2, v3);
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND(v0, v1, v2, v3);
	SIPROUND(v0, v1, v2, v3);
	SIPROUND(v0, v1, v2, v3);
	return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- setup -------------------------------------------------------------- */

static uint32_t rec_size_for(uint32_t inline_min)
{
	/* Records on cache lines of their own: the payload is what is left. */
	return (uint32_t)((sizeof(struct shmp__rec) + inline_min + 63) & ~(size_t)63);
}

size_t shmp__tt_shared_size(uint32_t capacity, uint32_t inline_min)
{
	/* The records, and room for the done ring. */
	return (size_t)capacity * rec_size_for(inline_min) + (size_t)capacity * 2 * 128;
}

int shmp__tt_init(struct shmp__tasktab *tt, shmp_segment_t *seg, bool fresh_seg, struct shmp__tasktab_sh *sh,
		  _Atomic uint32_t *stop, uint32_t capacity, uint32_t inline_min, const struct shmp__tt_ops *ops,
		  void *owner, uint64_t *recs_off)
{
	memset(tt, 0, sizeof *tt);
	tt->efd = -1;
	tt->sh = sh;
	tt->stop = stop;
	tt->seg = seg;
	tt->capacity = capacity;
	tt->rec_size = rec_size_for(inline_min);
	tt->inline_size = tt->rec_size - (uint32_t)sizeof(struct shmp__rec);
	tt->ops = ops;
	tt->owner = owner;
	if (getrandom(tt->key, sizeof tt->key, 0) != (ssize_t)sizeof tt->key)
		return errno ? -errno : -EIO;
	/* Shadows are a private anonymous mapping and record words stay zero
	 * (FREE, first lap) until used: a new table touches no page. (Not
	 * calloc: once malloc's mmap threshold has risen past the shadows'
	 * size, which freeing a pool's shadows does, calloc carves them from
	 * the heap and clears every page of them — a megabyte touched per
	 * pool created.) In the pool's own fresh segment the records are zero
	 * already. */
	tt->shadow_len = (size_t)capacity * sizeof *tt->shadow;
	void *sh_map = mmap(NULL, tt->shadow_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (sh_map == MAP_FAILED)
		return -ENOMEM;
	tt->shadow = sh_map;
	int r = shmp__segment_alloc(seg, (size_t)capacity * tt->rec_size, 64, recs_off, !fresh_seg);
	if (r < 0)
		return r;
	tt->recs = seg->base + *recs_off;
	/* Finished tasks announce themselves here. Bounded: if it is ever full
	 * a worker asks the collector for a scan of the table instead. */
	struct shmp_ring_opts ro = SHMP_OPTS(shmp_ring_opts, .segment = seg,
					      .capacity = capacity < 4096 ? capacity : 4096, .inline_size = 8,
					      .max_message = 8, .flags = SHMP_RING_SINGLE_CONSUMER);
	if (!(tt->done = shmp_ring_create(&ro)) || (tt->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
		return -errno;
	return 0;
}

void shmp__tt_fini(struct shmp__tasktab *tt, bool free_shared)
{
	if (!tt->ops)
		return; /* never set up */
	shmp_ring_destroy(tt->done);
	tt->done = NULL;
	if (free_shared && tt->recs)
		shmp__free_ptr(tt->seg, tt->recs);
	tt->recs = NULL;
	if (tt->efd >= 0)
		close(tt->efd);
	tt->efd = -1;
	if (tt->shadow)
		munmap(tt->shadow, tt->shadow_len);
	tt->shadow = NULL;
}

/* ---- wake-ups ------------------------------------------------------------- */

static bool poll_fresh(struct shmp__tasktab_sh *sh)
{
	uint64_t st = atomic_load_explicit(&sh->poll_stamp, memory_order_relaxed);
	return st && shmp__now_ns() - st <= POLL_FRESH_NS;
}

/* Wake the sleeping workers, unless one polls (it will see the task) or
 * none sleeps. A sleeper sets ARMED before it sleeps; the waker clears it
 * and bumps the word in one CAS, so of many submits only the first after a
 * sleep makes the system call, and a worker about to sleep on the old
 * value does not. */
void shmp__tt_wake_workers(struct shmp__tasktab *tt)
{
	struct shmp__tasktab_sh *sh = tt->sh;
	shmp__full_fence();
	uint32_t v = atomic_load_explicit(&sh->task_futex, memory_order_relaxed);
	if (!(v & SHMP__TASK_ARMED) || poll_fresh(sh))
		return;
	if (atomic_compare_exchange_strong_explicit(&sh->task_futex, &v, (v + 1) & ~SHMP__TASK_ARMED,
						    memory_order_seq_cst, memory_order_relaxed))
		shmp__futex_wake(&sh->task_futex, INT32_MAX);
}

/* Every sleeping worker, whatever the polling hints say. */
static void wake_all_workers(struct shmp__tasktab *tt)
{
	atomic_fetch_add_explicit(&tt->sh->task_futex, 1, memory_order_relaxed);
	shmp__futex_wake(&tt->sh->task_futex, INT32_MAX);
}

void shmp__tt_stop(struct shmp__tasktab *tt, uint32_t how)
{
	atomic_store_explicit(tt->stop, how, memory_order_release);
	shmp__tt_wake_workers(tt);
	wake_all_workers(tt);
}

void shmp__tt_kick(struct shmp__tasktab *tt)
{
	uint64_t one = 1;
	ssize_t r = write(tt->efd, &one, sizeof one);
	(void)r; /* EAGAIN only if the counter is saturated: it is readable anyway */
}

/* A worker posted work for the collector: ring if it sleeps. Dekker with
 * shmp__tt_collector_may_sleep: it sets sup_armed, then looks for work; we
 * publish work, then look at sup_armed. */
static void wake_collector(struct shmp__tasktab *tt)
{
	shmp__full_fence();
	if (atomic_load_explicit(&tt->sh->sup_armed, memory_order_relaxed) &&
	    atomic_exchange_explicit(&tt->sh->sup_armed, 0, memory_order_relaxed))
		shmp__tt_kick(tt);
}

void shmp__tt_collector_awake(struct shmp__tasktab *tt)
{
	atomic_store_explicit(&tt->sh->sup_armed, 0, memory_order_relaxed);
	/* One read takes the whole count and resets it (not a semaphore
	 * eventfd): a second would only find it empty, a system call per
	 * wake for nothing. A ring after this read leaves it readable: the
	 * next wait returns at once, which is what it is for. */
	uint64_t v;
	ssize_t r = read(tt->efd, &v, sizeof v);
	(void)r;
}

bool shmp__tt_collector_may_sleep(struct shmp__tasktab *tt)
{
	atomic_store_explicit(&tt->sh->sup_armed, 1, memory_order_seq_cst);
	return !(shmp_ring_count(tt->done) > 0 || atomic_load_explicit(&tt->sh->scan_needed, memory_order_relaxed));
}

/* A task its caller collects is finished (or failed): wake the caller. */
static void wake_caller(struct shmp__tasktab *tt, struct shmp__rec *r, uint32_t flags, uint64_t off)
{
	if (flags & SHMP__TT_NOTIFY) {
		shmp_segment_t *seg = tt->seg;
		if (off > seg->size || sizeof(struct shmp__notify) > seg->size - off ||
		    off % _Alignof(struct shmp__notify))
			return; /* corrupted: the caller's sleeps are bounded anyway */
		struct shmp__notify *n = (struct shmp__notify *)(seg->base + off);
		atomic_fetch_add_explicit(&n->seq, 1, memory_order_seq_cst);
		if (atomic_load_explicit(&n->waiters, memory_order_seq_cst))
			shmp__futex_wake(&n->seq, INT32_MAX);
		return;
	}
	shmp__full_fence();
	if (atomic_load_explicit(&r->wake, memory_order_relaxed) &&
	    atomic_exchange_explicit(&r->wake, 0, memory_order_relaxed))
		shmp__futex_wake(&r->wake, INT32_MAX);
}

static void wake_free_waiters(struct shmp__tasktab *tt)
{
	shmp__full_fence();
	if (atomic_load_explicit(&tt->free_waiters, memory_order_relaxed)) {
		atomic_fetch_add_explicit(&tt->free_futex, 1, memory_order_relaxed);
		shmp__futex_wake(&tt->free_futex, INT32_MAX);
	}
}

/* ---- submitters ----------------------------------------------------------- */

int shmp__tt_reserve(struct shmp__tasktab *tt, const struct shmp__deadline *d, bool on_collector, uint64_t *seq)
{
	uint64_t t = atomic_load_explicit(&tt->tail, memory_order_relaxed);
	struct shmp__shadow *s = shadow_at(tt, t);
	uint64_t want = shadow_word(t, SHADOW_FREE);
	/* Shadows start zero (no page is touched before use): a zero word
	 * is FREE for the first lap. */
	uint64_t want0 = t < tt->capacity ? 0 : want;
	for (;;) {
		int e = tt->ops->wait_error(tt->owner);
		if (e)
			return e;
		uint64_t cur = atomic_load_explicit(&s->word, memory_order_acquire);
		if (cur == want || cur == want0)
			break;
		if (on_collector) {
			shmp__tt_collect_one(tt);
			continue;
		}
		uint32_t f = atomic_load_explicit(&tt->free_futex, memory_order_relaxed);
		atomic_fetch_add_explicit(&tt->free_waiters, 1, memory_order_seq_cst);
		uint64_t cur2 = atomic_load_explicit(&s->word, memory_order_seq_cst);
		int w = 0;
		if (cur2 != want && cur2 != want0) {
			if (shmp__deadline_passed(d)) {
				atomic_fetch_sub_explicit(&tt->free_waiters, 1, memory_order_relaxed);
				return -ETIMEDOUT;
			}
			struct timespec until = shmp__deadline_cap(d, 50 * 1000000L);
			w = shmp__futex_wait(&tt->free_futex, f, &until);
		}
		atomic_fetch_sub_explicit(&tt->free_waiters, 1, memory_order_relaxed);
		if (shmp__interrupted(w))
			return -EINTR;
	}
	*seq = t;
	return 0;
}

void shmp__tt_publish(struct shmp__tasktab *tt, uint64_t seq, const struct shmp__task *t,
		      const struct shmp__task_priv *priv, const void *inl, size_t inl_len)
{
	struct shmp__rec *r = rec_at(tt, seq);
	struct shmp__shadow *s = shadow_at(tt, seq);
	s->first = t->first;
	s->count = t->count;
	s->flags = t->flags;
	s->notify_off = t->notify_off;
	s->priv = *priv;
	r->t = *t;
	if (inl_len)
		memcpy(payload(r), inl, inl_len);
	r->status = r->code = r->signal = 0;
	r->exit_status = -1;
	r->worker_pid = 0;
	r->fail_index = t->first;
	r->tag = task_tag(tt->key, seq, t);
	atomic_store_explicit(&r->wake, 0, memory_order_relaxed);
	/* Counted before anyone can collect it: outstanding never reads 0
	 * while a task is out. */
	count_add(&tt->n_submitted, &tt->sh->submitted, 1);
	atomic_store_explicit(&s->word, shadow_word(seq, SHADOW_LIVE), memory_order_release);
	atomic_store_explicit(&tt->tail, seq + 1, memory_order_release);
	atomic_store_explicit(&tt->sh->tail, seq + 1, memory_order_relaxed);
	atomic_store_explicit(&r->word, shmp__rec_word(seq, SHMP__REC_QUEUED, 0), memory_order_release);
}

uint64_t shmp__tt_outstanding(struct shmp__tasktab *tt)
{
	uint64_t c = atomic_load_explicit(&tt->n_completed, memory_order_acquire);
	uint64_t s = atomic_load_explicit(&tt->n_submitted, memory_order_acquire);
	return s - c;
}

uint64_t shmp__tt_sh_queued(const struct shmp__tasktab_sh *sh)
{
	uint64_t head = atomic_load((_Atomic uint64_t *)&sh->head), tail = atomic_load((_Atomic uint64_t *)&sh->tail);
	return tail > head ? tail - head : 0;
}

uint64_t shmp__tt_queued(struct shmp__tasktab *tt)
{
	uint64_t head = atomic_load(&tt->sh->head), tail = atomic_load(&tt->tail);
	uint64_t q = tail > head ? tail - head : 0;
	uint64_t out = atomic_load(&tt->n_submitted) - atomic_load(&tt->n_completed);
	return q < out ? q : out; /* the head is a hint others can write */
}

/* ---- collection ----------------------------------------------------------- */

/* What a finished task says, from its shared record, made safe to use. */
static struct shmp_task_error task_status(struct shmp__rec *r, const struct shmp__shadow *s)
{
	struct shmp_task_error e = { .error = r->status, .code = r->code, .signal = r->signal,
				     .exit_status = r->exit_status, .index = r->fail_index,
				     .worker_pid = r->worker_pid };
	if (e.error > 0)
		e.error = -SHMP_ECORRUPT; /* errors are negative: a forged status */
	if (e.error && (e.index < s->first || e.index - s->first >= s->count))
		e.index = s->first;
	if (e.error)
		e.skipped = s->first + s->count - e.index - 1;
	return e;
}

/* Claimed (COLLECTING): deliver, free the record, then tell the owner. */
static void finish_claimed(struct shmp__tasktab *tt, uint64_t seq, struct shmp__shadow *s,
			   const struct shmp_task_error *e, bool supervisor)
{
	struct shmp__rec *r = rec_at(tt, seq);
	void *call = tt->ops->deliver(tt->owner, s, payload(r), e);
	count_add(&tt->n_completed, &tt->sh->completed, 1);
	if (e->error)
		count_add(&tt->n_failed, &tt->sh->failed, 1);
	atomic_store_explicit(&r->word, shmp__rec_word(seq + tt->capacity, SHMP__REC_FREE, 0), memory_order_release);
	atomic_store_explicit(&s->word, shadow_word(seq + tt->capacity, SHADOW_FREE), memory_order_release);
	wake_free_waiters(tt);
	if (call)
		tt->ops->collected(tt->owner, call, supervisor);
}

/* LIVE -> COLLECTING: the one claim on a task's collection. */
static bool claim_shadow(struct shmp__shadow *s, uint64_t seq)
{
	uint64_t live = shadow_word(seq, SHADOW_LIVE);
	return atomic_load_explicit(&s->word, memory_order_acquire) == live &&
	       atomic_compare_exchange_strong_explicit(&s->word, &live, shadow_word(seq, SHADOW_COLLECTING),
						       memory_order_acquire, memory_order_relaxed);
}

static bool shadow_live(struct shmp__shadow *s, uint64_t seq)
{
	return atomic_load_explicit(&s->word, memory_order_acquire) == shadow_word(seq, SHADOW_LIVE);
}

bool shmp__tt_collect(struct shmp__tasktab *tt, uint64_t seq, bool supervisor)
{
	struct shmp__rec *r = rec_at(tt, seq);
	struct shmp__shadow *s = shadow_at(tt, seq);
	if (!shadow_live(s, seq))
		return false;
	if (!rec_is(atomic_load_explicit(&r->word, memory_order_acquire), seq, SHMP__REC_DONE))
		return false;
	/* A caller's task goes to the supervisor only if the caller left (an
	 * imap destroyed early, an interrupted apply). */
	if (supervisor && (s->flags & SHMP__TT_CALLER) && !tt->ops->caller_left(tt->owner, s))
		return false;
	if (!claim_shadow(s, seq))
		return false;
	struct shmp_task_error e = task_status(r, s);
	finish_claimed(tt, seq, s, &e, supervisor);
	return true;
}

bool shmp__tt_is_finished(struct shmp__tasktab *tt, uint64_t seq)
{
	if (rec_is(atomic_load_explicit(&rec_at(tt, seq)->word, memory_order_acquire), seq, SHMP__REC_DONE))
		return true;
	return !shadow_live(shadow_at(tt, seq), seq);
}

int shmp__tt_wait(struct shmp__tasktab *tt, uint64_t seq)
{
	struct shmp__rec *r = rec_at(tt, seq);
	uint64_t t0 = 0;
	for (unsigned i = 0;; i++) {
		if (shmp__tt_is_finished(tt, seq))
			return 0;
		if (i < 256) {
			shmp__cpu_relax();
			continue;
		}
		uint64_t now = shmp__now_ns();
		if (!t0)
			t0 = now;
		if (now - t0 < 50000) {
			i = 0;
			continue;
		}
		break;
	}
	while (!shmp__tt_is_finished(tt, seq)) {
		atomic_store_explicit(&r->wake, 1, memory_order_seq_cst);
		if (shmp__tt_is_finished(tt, seq))
			break;
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_nsec += 100 * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		/* (A handler that runs between two of these sleeps, not during
		 * one, goes unseen: a window of a few instructions per slice.) */
		if (shmp__interrupted(shmp__futex_wait(&r->wake, 1, &until)))
			return -EINTR;
	}
	return 0;
}

int shmp__tt_notify_wait(struct shmp__notify *n, bool (*ready)(void *), void *arg, const struct timespec *until)
{
	uint32_t f = atomic_load_explicit(&n->seq, memory_order_acquire);
	atomic_fetch_add_explicit(&n->waiters, 1, memory_order_seq_cst);
	int w = 0;
	if (!ready(arg))
		w = shmp__futex_wait(&n->seq, f, until);
	atomic_fetch_sub_explicit(&n->waiters, 1, memory_order_relaxed);
	return w;
}

/* ---- the collector -------------------------------------------------------- */

void shmp__tt_collect_one(struct shmp__tasktab *tt)
{
	uint64_t seq;
	size_t len;
	if (shmp_ring_get(tt->done, &seq, sizeof seq, &len, 0.001) == 0 && len == sizeof seq)
		shmp__tt_collect(tt, seq, true);
}

void shmp__tt_scan_later(struct shmp__tasktab *tt)
{
	atomic_store_explicit(&tt->sh->scan_needed, 1, memory_order_relaxed);
}

void shmp__tt_drain(struct shmp__tasktab *tt, bool sweep)
{
	uint64_t seq;
	size_t len;
	while (shmp_ring_get(tt->done, &seq, sizeof seq, &len, 0) == 0)
		if (len == sizeof seq)
			shmp__tt_collect(tt, seq, true);
	if ((atomic_load_explicit(&tt->sh->scan_needed, memory_order_relaxed) &&
	     atomic_exchange_explicit(&tt->sh->scan_needed, 0, memory_order_acquire)) ||
	    sweep) {
		uint64_t end;
		for (uint64_t q = window(tt, &end); q < end; q++) {
			uint64_t w = atomic_load_explicit(&rec_at(tt, q)->word, memory_order_acquire);
			if (rec_state(w) == SHMP__REC_DONE)
				shmp__tt_collect(tt, q, true);
		}
	}
}

/* A task that will never run or finish: record why and finish it, unless
 * its word moved on meanwhile (it finished after all). */
static void fail_task(struct shmp__tasktab *tt, uint64_t seq, uint64_t word, const struct shmp__tt_failure *f)
{
	struct shmp__rec *r = rec_at(tt, seq);
	struct shmp__shadow *s = shadow_at(tt, seq);
	if (rec_seq(word) != (seq & SHMP__REC_SEQ_MASK))
		return;
	if (!shadow_live(s, seq))
		return; /* not a task of ours (a forged word) */
	r->status = f->error;
	r->code = f->code;
	r->signal = f->signal;
	r->exit_status = f->exit_status;
	r->fail_index = s->first;
	if (rec_state(word) == SHMP__REC_RUNNING)
		r->worker_pid = tt->ops->worker_pid(tt->owner, rec_worker(word));
	if (!atomic_compare_exchange_strong_explicit(&r->word, &word, shmp__rec_word(seq, SHMP__REC_DONE, 0),
						     memory_order_release, memory_order_relaxed))
		return;
	if (s->flags & SHMP__TT_CALLER)
		wake_caller(tt, r, s->flags, s->notify_off);
	/* A caller-collected task is left to its caller (or, if the caller
	 * left, to the supervisor's sweep). */
	shmp__tt_collect(tt, seq, true);
}

void shmp__tt_fail(struct shmp__tasktab *tt, bool queued, bool running, int w, const struct shmp__tt_failure *f)
{
	uint64_t end;
	for (uint64_t q = window(tt, &end); q < end; q++) {
		uint64_t wd = atomic_load_explicit(&rec_at(tt, q)->word, memory_order_acquire);
		unsigned st = rec_state(wd);
		if (st == SHMP__REC_QUEUED ? !queued
		    : st == SHMP__REC_RUNNING ? !running || (w >= 0 && rec_worker(wd) != (unsigned)w)
					       : true)
			continue;
		fail_task(tt, q, wd, f);
	}
}

/* Fail task q from its shadow alone (its record cannot be trusted, or
 * nobody is left to finish it). A caller waiting for its own task (apply,
 * imap) sees its shadow collected. */
static void fail_shadow(struct shmp__tasktab *tt, uint64_t q, int error, int code)
{
	struct shmp__shadow *s = shadow_at(tt, q);
	if (!claim_shadow(s, q))
		return;
	uint32_t flags = s->flags;
	uint64_t notify = s->notify_off;
	struct shmp_task_error e = { .error = error, .code = code, .index = s->first, .exit_status = -1,
				     .skipped = s->count ? s->count - 1 : 0 };
	finish_claimed(tt, q, s, &e, true);
	if (flags & SHMP__TT_CALLER)
		wake_caller(tt, rec_at(tt, q), flags, notify);
}

void shmp__tt_fail_private(struct shmp__tasktab *tt, int error, int code)
{
	uint64_t end;
	for (uint64_t q = window(tt, &end); q < end; q++)
		fail_shadow(tt, q, error, code);
}

/* No task finished for a while though some are out: look at the records of
 * the live ones. One collected by nobody is collected; one whose record
 * no longer says what we published (rewritten by someone) fails with
 * -SHMP_ECORRUPT; a queued one behind the workers' claim hint (moved on by
 * someone) brings the hint back. A forged "running" record still waits
 * (for its worker, or for terminate). */
static void check_stalled(struct shmp__tasktab *tt)
{
	uint64_t end, lowest = UINT64_MAX;
	for (uint64_t q = window(tt, &end); q < end; q++) {
		struct shmp__shadow *s = shadow_at(tt, q);
		if (!shadow_live(s, q))
			continue;
		uint64_t w = atomic_load_explicit(&rec_at(tt, q)->word, memory_order_acquire);
		bool ours = rec_seq(w) == (q & SHMP__REC_SEQ_MASK);
		unsigned st = rec_state(w);
		if (ours && st == SHMP__REC_QUEUED) {
			if (q < lowest)
				lowest = q;
		} else if (ours && st == SHMP__REC_DONE) {
			if (!(s->flags & SHMP__TT_CALLER))
				shmp__tt_collect(tt, q, true);
		} else if (!(ours && (st == SHMP__REC_RUNNING || st == SHMP__REC_FREE))) {
			/* (FREE and ours: being published right now.) */
			fail_shadow(tt, q, -SHMP_ECORRUPT, 0);
		}
	}
	if (lowest == UINT64_MAX)
		return;
	uint64_t h = atomic_load_explicit(&tt->sh->head, memory_order_relaxed);
	while (h > lowest && !atomic_compare_exchange_weak_explicit(&tt->sh->head, &h, lowest, memory_order_release,
								     memory_order_relaxed))
		;
	if (h > lowest)
		wake_all_workers(tt);
}

void shmp__tt_watch_progress(struct shmp__tasktab *tt)
{
	uint64_t done = atomic_load_explicit(&tt->n_completed, memory_order_acquire);
	uint64_t now = shmp__now_ns();
	if (done != tt->last_completed || shmp__tt_outstanding(tt) == 0 || !tt->progress_at) {
		tt->last_completed = done;
		tt->progress_at = now;
		return;
	}
	if (now - tt->progress_at < STALL_NS)
		return;
	tt->progress_at = now;
	check_stalled(tt);
}

/* ---- workers -------------------------------------------------------------- */

/* After a claim: if more tasks are queued and nobody polls, wake one
 * sleeper, so a burst spreads over the workers without the submitter
 * paying a wake per task. */
static void wake_next(struct shmp__tasktab *tt, uint64_t h)
{
	if (rec_is(atomic_load_explicit(&rec_at(tt, h + 1)->word, memory_order_relaxed), h + 1, SHMP__REC_QUEUED))
		shmp__tt_wake_workers(tt);
}

#define YIELD_CONTENDED_NS 200000

int shmp__tt_claim(struct shmp__tasktab *tt, unsigned w, uint64_t *seq)
{
	struct shmp__tasktab_sh *sh = tt->sh;
	uint64_t spin_start = 0, last_look = 0;
	unsigned spins = 0;
	int ret;
	for (;;) {
		if (atomic_load_explicit(tt->stop, memory_order_relaxed) == SHMP__STOP_NOW) {
			ret = 0;
			break;
		}
		uint64_t h = atomic_load_explicit(&sh->head, memory_order_acquire);
		struct shmp__rec *r = rec_at(tt, h);
		uint64_t wd = atomic_load_explicit(&r->word, memory_order_acquire);
		uint64_t diff = (rec_seq(wd) - h) & SHMP__REC_SEQ_MASK;
		if (diff == 0 && rec_state(wd) == SHMP__REC_QUEUED) {
			if (atomic_compare_exchange_weak_explicit(&r->word, &wd,
								  shmp__rec_word(h, SHMP__REC_RUNNING, w),
								  memory_order_acquire, memory_order_relaxed)) {
				*seq = h;
				uint64_t hh = h; /* the CAS rewrites its expected value on failure */
				atomic_compare_exchange_strong_explicit(&sh->head, &hh, h + 1, memory_order_release,
									memory_order_relaxed);
				ret = 1;
				break;
			}
			continue;
		}
		if ((diff == 0 && rec_state(wd) != SHMP__REC_FREE) || (diff != 0 && diff < (SHMP__REC_SEQ_MASK >> 1))) {
			/* Taken already, or the head hint is behind: help it on. */
			atomic_compare_exchange_strong_explicit(&sh->head, &h, h + 1, memory_order_release,
								memory_order_relaxed);
			continue;
		}
		/* Empty. */
		if (atomic_load_explicit(tt->stop, memory_order_acquire) != SHMP__STOP_NONE) {
			ret = 0;
			break;
		}
		/* Poll a little (a task submitted right after the last one
		 * finished is picked up in a cache-line round trip, and the
		 * submitter skips the wake), then sleep. One worker polls at a
		 * time: on shared cores more pollers only starve the producer. */
		if (!spin_start && poll_fresh(sh) && atomic_load_explicit(&sh->poll_owner, memory_order_relaxed) != w + 1)
			spin_start = 1; /* someone else polls: straight to sleep */
		if (spin_start != 1 && spins++ < (tt->idle_poll_ns ? 4u : 64u)) {
			shmp__cpu_relax();
			continue;
		}
		uint64_t now = shmp__now_ns();
		if (spin_start != 1) {
			atomic_store_explicit(&sh->poll_owner, w + 1, memory_order_relaxed);
			atomic_store_explicit(&sh->poll_stamp, now, memory_order_relaxed);
			if (!spin_start)
				spin_start = now;
			/* idle_poll (shmp_pool_opts): on a machine with more busy
			 * threads than CPUs a worker that spins without
			 * yielding holds a CPU the thread that submits or
			 * collects needs (measured, 3 MPI ranks on 2 CPUs: a
			 * cluster apply's round trip 55-60 us with the 30 us
			 * spin, 38-40 us yielding). */
			if (now - spin_start < (tt->idle_poll_ns ? tt->idle_poll_ns : 30000)) {
				spins = 0;
				if (!tt->idle_poll_ns)
					continue;
				/* Off the CPU for long since the last look (a
				 * yield that gave it away, or preempted): a busy
				 * thread shares it. Polling on, we would get a
				 * turn a scheduler slice at a time (a thread that
				 * yields over and over waits behind it: measured
				 * 1.6 ms per turn beside a busy loop); asleep, we
				 * are woken when a task comes. */
				if (!last_look || now - last_look < YIELD_CONTENDED_NS) {
					last_look = now;
					sched_yield();
					continue;
				}
			}
		}
		/* Sleep: stop saying we poll, arm the word, look once more. A
		 * submitter that saw us polling (and skipped the wake)
		 * published before this look; one that publishes after sees
		 * ARMED. */
		if (atomic_load_explicit(&sh->poll_owner, memory_order_relaxed) == w + 1)
			atomic_store_explicit(&sh->poll_stamp, 0, memory_order_seq_cst);
		uint32_t f = atomic_fetch_or_explicit(&sh->task_futex, SHMP__TASK_ARMED, memory_order_seq_cst) |
			     SHMP__TASK_ARMED;
		uint64_t wd2 = atomic_load_explicit(&r->word, memory_order_seq_cst);
		int fw = 0;
		if (wd2 == wd && atomic_load_explicit(&sh->head, memory_order_relaxed) == h &&
		    atomic_load_explicit(tt->stop, memory_order_relaxed) == SHMP__STOP_NONE) {
			struct timespec until;
			clock_gettime(CLOCK_MONOTONIC, &until);
			until.tv_sec += 1;
			fw = shmp__futex_wait(&sh->task_futex, f, &until);
		}
		/* Nothing came for a second: look once and sleep again. Polling
		 * idle_poll again after every such second would be a share of
		 * an idle CPU forever. */
		spin_start = fw == -ETIMEDOUT && tt->idle_poll_ns ? 1 : 0;
		spins = 0;
		last_look = 0;
	}
	/* No longer polling: a wake for the next task must not be skipped
	 * on our account. */
	if (atomic_load_explicit(&sh->poll_owner, memory_order_relaxed) == w + 1)
		atomic_store_explicit(&sh->poll_stamp, 0, memory_order_relaxed);
	if (ret)
		wake_next(tt, *seq);
	return ret;
}

bool shmp__tt_take(struct shmp__tasktab *tt, uint64_t seq, struct shmp__task *t)
{
	/* One copy, checked against its tag: from here on nothing of the task
	 * is read from shared memory again. */
	struct shmp__rec *r = rec_at(tt, seq);
	memcpy(t, &r->t, sizeof *t);
	uint64_t tag = r->tag;
	return tag == task_tag(tt->key, seq, t);
}

char *shmp__tt_inline(struct shmp__tasktab *tt, uint64_t seq, uint64_t at, size_t len)
{
	return at <= tt->inline_size && len <= tt->inline_size - at ? payload(rec_at(tt, seq)) + at : NULL;
}

void shmp__tt_done(struct shmp__tasktab *tt, uint64_t seq, unsigned w, const struct shmp__task *t,
		   const struct shmp__tt_result *res)
{
	struct shmp__rec *r = rec_at(tt, seq);
	r->worker_pid = res->pid;
	if (res->status) {
		r->status = res->status;
		r->code = res->code;
		r->fail_index = res->fail_index;
	}
	atomic_store_explicit(&r->word, shmp__rec_word(seq, SHMP__REC_DONE, w), memory_order_release);
	if (t->flags & SHMP__TT_CALLER) {
		wake_caller(tt, r, t->flags, t->notify_off);
	} else {
		if (shmp_ring_put(tt->done, &seq, sizeof seq, 0) != 0)
			shmp__tt_scan_later(tt);
		wake_collector(tt);
	}
}
