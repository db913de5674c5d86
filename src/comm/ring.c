/* private: the shared-memory ring (see include/shmp/ring.h for the contract).
 *
 * Each slot starts with one 64-bit word: seq(32) | state(2) | tid(30).
 *   (p, FREE)          slot is free for the message at position p
 *   (p, WRITING, tid)  producer tid claimed it (CAS from (p, FREE))
 *   (p, READY)         message p is there
 *   (p, READING, tid)  consumer tid claimed it (CAS from (p, READY))
 *   (p + cap, FREE)    consumed; free for the next lap
 * A claim records its owner in the same CAS, unlike rings that take a
 * position with fetch-add on the tail (Vyukov, DPDK): there a producer that
 * dies between the fetch-add and its publish wedges every consumer, because
 * nobody can tell who owns the gap. Here a waiter that finds a slot held by
 * a dead thread takes the claim over and frees the slot.
 *
 * head and tail are hints: whoever claims a slot moves them on, and whoever
 * finds a slot already claimed at the hint helps move it.
 *
 * Large messages live in a segment block whose offset the slot keeps in
 * block_off. It is non-zero only while the slot owns a live block: the
 * producer stores it after claiming, the consumer zeroes it before freeing
 * the block, so a recoverer may always free a non-zero offset.
 *
 * Waking (no wake lost, no system call unless someone sleeps). Each side has
 * a futex word and a sleeper count. A sleeper increments the count with a
 * seq_cst read-modify-write, arms the futex word (bit 0), re-reads the slot
 * it waits on (seq_cst) and sleeps only if the word is unchanged. A waker
 * publishes (release store of the slot word), then issues a seq_cst fence
 * and reads the count: by the fences' total order either the sleeper's
 * re-read sees the publish, or the waker's read sees the sleeper. Only a
 * waker that finds a sleeper and clears the armed bit (CAS) makes the
 * FUTEX_WAKE call, so a burst of publishes pays one call per sleep, not one
 * per message. The waker never writes the count's cache line unless it
 * wakes someone: a publish costs a fence, not a line transfer.
 *
 * Batches (pipeline_internal.h): the pipeline's workers take ready slots
 * one by one (shmp__ring_peek_batch; each slot names its claimer, so a
 * death mid-batch is recovered slot by slot), release and commit them
 * without the wake check (the _quiet calls), and then make the one check
 * above per batch and side. A released or committed slot is visible to
 * everyone at once; only the wake-up is deferred, and whoever defers it
 * must make it before it can block (or the peer could sleep on messages,
 * or room, it was never told about).
 *
 * Spinning (struct shmp__ring_spin): a waiter may spin for a bounded time
 * before it sleeps, stopping at once when the caller's hints say that no
 * producer is awake, or that the producer last ran on the CPU this waiter
 * is spinning on (it cannot be running then: spinning would only keep it
 * off its CPU — what happens on a busy machine, where wake-ups pull
 * threads together); the bound is the caller's, never read from shared
 * memory, and a hint read from shared memory can only shorten the spin. */
#include "object.h"
#include "pipeline_internal.h"

#include <sched.h>
#include <stdlib.h>

#define ST_FREE 0u
#define ST_WRITING 1u
#define ST_READY 2u
#define ST_READING 3u

#define F_BLOCK 1u  /* payload is in a segment block */
#define F_SKIP 2u   /* cancelled reservation: consumers drop it */

#define RING_MAGIC 0x52494e47u
#define RING_VERSION 1u
#define SLOT_HEADER 24u
#define CHECK_FIRST_NS 2000000L
#define CHECK_MAX_NS 50000000L

struct slot {
	_Atomic uint64_t word;
	uint32_t len;
	uint32_t flags;
	uint64_t block_off;
	unsigned char payload[];
};

struct shmp__ring_sh {
	uint32_t magic;
	uint32_t version;
	uint32_t capacity;
	uint32_t slot_size;
	uint32_t flags;
	_Atomic uint32_t closed;
	uint64_t max_message;
	uint64_t slots_off;
	_Atomic uint64_t lost;
	_Atomic uint64_t lost_blocks;
	uint64_t reserved0;  /* zero, for later versions */
	SHMP__ALIGNED _Atomic uint64_t tail;
	SHMP__ALIGNED _Atomic uint64_t head;
	SHMP__ALIGNED _Atomic uint32_t not_empty; /* futex: bumped when a message appears */
	_Atomic uint32_t cons_waiters;
	SHMP__ALIGNED _Atomic uint32_t not_full;  /* futex: bumped when a slot frees */
	_Atomic uint32_t prod_waiters;
};

struct shmp_ring {
	SHMP__HEAD(struct shmp__ring_sh); /* ref always NULL: rings are not lent by the registry */
	char *slots;
	/* Copied at creation and trusted from here on: shared copies may be
	 * scribbled on, these may not. */
	uint32_t cap, mask, slot_size, inline_max;
	uint64_t max_message;
	uint64_t block_tag;   /* stamped on this ring's message blocks */
	bool pow2, sp, sc;
	/* Process-local wait tuning, shared by this process's threads. */
	_Atomic uint32_t spin_budget; /* shrinks when spinning ends in a sleep anyway */
	_Atomic uint64_t stuck_word;  /* a slot word polls keep finding... */
	_Atomic uint64_t stuck_since; /* ...since this time (ns) */
};

/* Every large-message block starts with this, so that a corrupted block_off
 * naming some other object's block is refused instead of read or freed. */
struct block_hdr {
	uint64_t tag;   /* BLOCK_MAGIC ^ the ring's offset */
	uint32_t seq;   /* the position (low 32 bits) of its message */
	uint32_t len;
};
#define BLOCK_MAGIC 0x52424c4b00000000ull /* "RBLK" */

/* Pinned: other processes, maybe of another build, map the ring. Slots and
 * blocks carry no version of their own: RING_VERSION covers them. */
SHMP__PIN(struct shmp__ring_sh, 320);
_Static_assert(offsetof(struct shmp__ring_sh, closed) == 20 && offsetof(struct shmp__ring_sh, slots_off) == 32 &&
	       offsetof(struct shmp__ring_sh, lost) == 40 && offsetof(struct shmp__ring_sh, tail) == 64 &&
	       offsetof(struct shmp__ring_sh, head) == 128 && offsetof(struct shmp__ring_sh, not_empty) == 192 &&
	       offsetof(struct shmp__ring_sh, not_full) == 256, "ring fields");
_Static_assert(sizeof(struct slot) == SLOT_HEADER && offsetof(struct slot, len) == 8 &&
	       offsetof(struct slot, block_off) == 16, "ring slot");
_Static_assert(sizeof(struct block_hdr) == 16 && offsetof(struct block_hdr, seq) == 8, "ring block header");

/* Everything a handle trusts from the header. */
static bool ring_check(const shmp_segment_t *seg, uint64_t off, const void *p, uint32_t want)
{
	(void)off, (void)want;
	const struct shmp__ring_sh *sh = p;
	return sh->capacity > 0 && sh->capacity <= (1u << 30) && sh->slot_size % SHMP__CACHELINE == 0 &&
	       sh->slot_size > SLOT_HEADER && sh->slot_size <= (1u << 21) && sh->max_message <= SHMP_RING_MAX_MESSAGE &&
	       !(sh->flags & ~(uint32_t)(SHMP_RING_SINGLE_PRODUCER | SHMP_RING_SINGLE_CONSUMER)) &&
	       shmp_segment_ptr(seg, sh->slots_off, (size_t)sh->capacity * sh->slot_size);
}
static const struct shmp__layout ring_layout = SHMP__LAYOUT(struct shmp__ring_sh, RING_MAGIC, RING_VERSION, ring_check);

static inline uint64_t W(uint32_t seq, uint32_t st, uint32_t tid)
{
	return (uint64_t)seq << 32 | (uint64_t)st << 30 | (tid & SHMP__TID_MASK);
}
static inline uint32_t w_seq(uint64_t w) { return (uint32_t)(w >> 32); }
static inline uint32_t w_st(uint64_t w) { return (uint32_t)(w >> 30) & 3u; }
static inline uint32_t w_tid(uint64_t w) { return (uint32_t)w & SHMP__TID_MASK; }

static inline struct slot *slot_at(const shmp_ring_t *r, uint64_t pos)
{
	uint64_t i = r->pow2 ? (pos & r->mask) : (pos % r->cap);
	return (struct slot *)(r->slots + i * r->slot_size);
}

/* ---- creation --------------------------------------------------------- */

/* The handle's trusted copies of a checked header (whose offset is off). */
static void ring_adopt(shmp_ring_t *r, uint64_t off)
{
	const struct shmp__ring_sh *sh = r->sh;
	r->slots = r->seg->base + sh->slots_off;
	r->cap = sh->capacity;
	r->pow2 = (r->cap & (r->cap - 1)) == 0;
	r->mask = r->cap - 1;
	r->slot_size = sh->slot_size;
	r->inline_max = sh->slot_size - SLOT_HEADER;
	r->max_message = sh->max_message;
	r->block_tag = BLOCK_MAGIC ^ off;
	atomic_init(&r->spin_budget, shmp__spin_limit);
	r->sp = sh->flags & SHMP_RING_SINGLE_PRODUCER;
	r->sc = sh->flags & SHMP_RING_SINGLE_CONSUMER;
}

shmp_ring_t *shmp_ring_create(const struct shmp_ring_opts *opts)
{
	struct shmp_ring_opts o;
	if (SHMP__OPTS(o, opts) < 0) {
		errno = EINVAL;
		return NULL;
	}
	if (!o.capacity)
		o.capacity = 1024;
	if (!o.inline_size)
		o.inline_size = 104;
	if (!o.max_message)
		o.max_message = (size_t)64 << 20;
	if (o.capacity > (1u << 30) || o.inline_size > (1u << 20) || o.max_message > SHMP_RING_MAX_MESSAGE ||
	    (o.flags & ~(unsigned)(SHMP_RING_SINGLE_PRODUCER | SHMP_RING_SINGLE_CONSUMER))) {
		errno = EINVAL;
		return NULL;
	}
	uint32_t slot_size = (SLOT_HEADER + o.inline_size + SHMP__CACHELINE - 1) & ~(SHMP__CACHELINE - 1u);
	shmp_ring_t *r = shmp__obj_new(o.segment, sizeof *r, &ring_layout, 0);
	if (!r)
		return NULL;
	struct shmp__ring_sh *sh = r->sh;
	if (!shmp__alloc_ptr(r->seg, (size_t)o.capacity * slot_size, SHMP__CACHELINE, &sh->slots_off)) {
		shmp__obj_destroy(r);
		return NULL;
	}
	sh->capacity = o.capacity;
	sh->slot_size = slot_size;
	sh->flags = o.flags;
	sh->max_message = o.max_message;
	ring_adopt(r, shmp__ring_offset(r));
	for (uint32_t i = 0; i < o.capacity; i++)
		atomic_store_explicit(&slot_at(r, i)->word, W(i, ST_FREE, 0), memory_order_relaxed);
	shmp__obj_publish(sh, &ring_layout);
	return r;
}

static bool recover_dead(shmp_ring_t *r, struct slot *s, uint64_t w);

int shmp__ring_recover_tid(shmp_ring_t *r, pid_t tid)
{
	int n = 0;
	for (uint32_t i = 0; i < r->cap; i++) {
		struct slot *s = slot_at(r, i);
		uint64_t w = atomic_load_explicit(&s->word, memory_order_acquire);
		if (w_tid(w) == (uint32_t)tid && recover_dead(r, s, w))
			n++;
	}
	return n;
}

void shmp__ring_slots(const shmp_ring_t *r, void **base, size_t *len)
{
	*base = r->slots;
	*len = (size_t)r->cap * r->slot_size;
}

uint64_t shmp__ring_offset(const shmp_ring_t *r)
{
	return (uint64_t)((char *)r->sh - r->seg->base);
}

shmp_ring_t *shmp__ring_open(shmp_segment_t *seg, uint64_t off)
{
	shmp_ring_t *r = shmp__obj_open(seg, off, &ring_layout, 0, sizeof *r, NULL);
	if (r)
		ring_adopt(r, off);
	return r;
}

/* The block at blk, if it is this ring's block for message seq, of *len
 * bytes (len NULL: any length); NULL if not. */
static struct block_hdr *block_at(const shmp_ring_t *r, uint64_t blk, uint32_t seq, const uint32_t *len)
{
	if (blk % 16) /* the allocator hands out 16-aligned blocks only */
		return NULL;
	struct block_hdr *b = shmp_segment_ptr(r->seg, blk, sizeof *b);
	if (!b || b->tag != r->block_tag || b->seq != seq || (len && b->len != *len) ||
	    !shmp_segment_ptr(r->seg, blk + sizeof *b, b->len))
		return NULL;
	return b;
}

/* Free a slot's block if it really is the block of message seq; a block_off
 * that fails the check is left alone (counted: never free a stranger's). */
static void block_free(shmp_ring_t *r, uint64_t blk, uint32_t seq)
{
	if (block_at(r, blk, seq, NULL) && shmp_segment_free(r->seg, blk) == 0)
		return;
	atomic_fetch_add_explicit(&r->sh->lost_blocks, 1, memory_order_relaxed);
}

void shmp_ring_destroy(shmp_ring_t *r)
{
	if (!r)
		return;
	if (!shmp__handle_release(r)) {
		free(r); /* a copy inherited through fork: the handle only */
		return;
	}
	/* Blocks of messages never taken go back to the segment. */
	for (uint32_t i = 0; i < r->cap; i++) {
		struct slot *s = slot_at(r, i);
		if (s->block_off)
			block_free(r, s->block_off, w_seq(atomic_load_explicit(&s->word, memory_order_relaxed)));
	}
	shmp__free_ptr(r->seg, r->slots);
	shmp__free_ptr(r->seg, r->sh);
	free(r);
}

SHMP__HEAD_CHECK(struct shmp_ring);

/* ---- waking and waiting ------------------------------------------------ */

/* Bit 0 of a futex word: a waiter went to sleep on it since the last wake.
 * The rest counts wake-ups, in steps of 2. */
#define ARMED 1u

/* After publishing: a seq_cst fence orders our store before the read of the
 * waiter count (a waiter increments it with a seq_cst RMW, then re-checks
 * the slot), so either it sees our message or we see it waiting (see the
 * top comment). A fence, not an RMW on the count: the count's line stays
 * shared while nobody sleeps. Only the first waker after a sleeper armed
 * the word makes the system call: without that, every put and get until
 * the sleeper actually ran would pay one. */
static inline void wake_side(_Atomic uint32_t *futex, _Atomic uint32_t *waiters, int n)
{
	(void)n; /* every sleeper re-checks its own slot: wake them all */
	shmp__full_fence();
	if (!atomic_load_explicit(waiters, memory_order_relaxed))
		return;
	uint32_t v = atomic_load_explicit(futex, memory_order_seq_cst);
	if ((v & ARMED) && atomic_compare_exchange_strong_explicit(futex, &v, (v + 2) & ~ARMED,
			memory_order_seq_cst, memory_order_relaxed))
		shmp__futex_wake(futex, INT_MAX);
}
static inline void wake_consumers(shmp_ring_t *r, int n)
{
	wake_side(&r->sh->not_empty, &r->sh->cons_waiters, n);
}
static inline void wake_producers(shmp_ring_t *r, int n)
{
	wake_side(&r->sh->not_full, &r->sh->prod_waiters, n);
}

/* A slot held by a thread that died: take the claim over (so a second
 * recoverer cannot also act), free its block, and free the slot. */
static bool recover_dead(shmp_ring_t *r, struct slot *s, uint64_t w)
{
	uint32_t st = w_st(w), tid = w_tid(w);
	if ((st != ST_WRITING && st != ST_READING) || tid == 0 || !shmp__tid_dead((pid_t)tid))
		return false;
	uint64_t mine = W(w_seq(w), st, (uint32_t)shmp__tid());
	if (!atomic_compare_exchange_strong_explicit(&s->word, &w, mine, memory_order_acq_rel,
						     memory_order_relaxed))
		return false;
	uint64_t blk = s->block_off;
	s->block_off = 0;
	if (blk)
		block_free(r, blk, w_seq(w));
	atomic_fetch_add_explicit(&r->sh->lost, 1, memory_order_relaxed);
	atomic_store_explicit(&s->word, W(w_seq(w) + r->cap, ST_FREE, 0), memory_order_release);
	/* Both sides may move now: producers get a slot, consumers a new head. */
	wake_producers(r, INT_MAX);
	wake_consumers(r, INT_MAX);
	return true;
}

struct waiter {
	struct shmp__deadline d;
	struct shmp__checker check;
	unsigned spins, budget;
	bool checker_on;
	struct shmp__ring_spin *sp; /* the caller's spin policy, or NULL */
	uint64_t spin_start;
};
#define STUCK_NS 2000000ull /* a poll checks a slot's holder once stuck this long */
#define SPIN_MIN 16u

static int waiter_init(shmp_ring_t *r, struct waiter *wt, double timeout)
{
	if (shmp__deadline_init(&wt->d, timeout) < 0)
		return -EINVAL;
	wt->spins = 0;
	wt->checker_on = false;
	wt->sp = NULL;
	wt->spin_start = 0;
	/* Each call wins back some of the spin that sleeps took away. */
	uint32_t b = atomic_load_explicit(&r->spin_budget, memory_order_relaxed);
	if (b < shmp__spin_limit) {
		b = b + shmp__spin_limit / 16 + 1;
		b = b > shmp__spin_limit ? shmp__spin_limit : b;
		atomic_store_explicit(&r->spin_budget, b, memory_order_relaxed);
	}
	wt->budget = b;
	return 0;
}

/* A poll (timeout 0) never sleeps and so has no checker: it looks for a
 * dead holder only once the same slot word has been seen for STUCK_NS, so
 * that polling a busy slot costs no system call. */
static void poll_stuck(shmp_ring_t *r, struct slot *s, uint64_t w)
{
	uint64_t now = shmp__now_ns();
	if (atomic_load_explicit(&r->stuck_word, memory_order_relaxed) != w) {
		atomic_store_explicit(&r->stuck_word, w, memory_order_relaxed);
		atomic_store_explicit(&r->stuck_since, now, memory_order_relaxed);
	} else if (now - atomic_load_explicit(&r->stuck_since, memory_order_relaxed) > STUCK_NS) {
		recover_dead(r, s, w);
		atomic_store_explicit(&r->stuck_since, now, memory_order_relaxed);
	}
}

/* Blocked on slot s (last seen holding word w): spin, then sleep on the
 * side's futex; look for a dead holder when the check is due. 0 to retry,
 * -ETIMEDOUT, -EINTR (a signal handler ran and shmp_set_interruptible(1)). */
static int block_on(shmp_ring_t *r, bool producer, struct waiter *wt, struct slot *s, uint64_t w)
{
	if (wt->d.kind == 2) {
		poll_stuck(r, s, w);
		return -ETIMEDOUT;
	}
	struct shmp__ring_spin *sp = wt->sp;
	if (sp && !wt->checker_on) {
		/* The caller's spin: bounded in time by its max_ns, the clock
		 * read every 64 pauses; over at once when the hints say every
		 * producer sleeps or the producer last ran on this CPU (a
		 * forged hint only ends it sooner). */
		if (sp->max_ns && wt->spins != UINT_MAX) {
			if (wt->spins++ % 64 == 0) {
				uint64_t now = shmp__now_ns();
				if (!wt->spin_start)
					wt->spin_start = now;
				uint32_t pc = sp->peer_cpu ? atomic_load_explicit(sp->peer_cpu, memory_order_relaxed) : 0;
				if (now - wt->spin_start >= sp->max_ns ||
				    (sp->peer_idle && atomic_load_explicit(sp->peer_idle, memory_order_relaxed) >=
				     sp->peer_n) ||
				    (pc && pc == (uint32_t)sched_getcpu() + 1))
					wt->spins = UINT_MAX; /* the producer cannot run while we spin */
			}
			if (wt->spins != UINT_MAX) {
				shmp__cpu_relax();
				return 0;
			}
		}
		wt->spins = wt->budget = 0; /* no short spin after it (or none at all) */
	}
	if (wt->spins < wt->budget) {
		wt->spins++;
		shmp__cpu_relax();
		return 0;
	}
	if (!wt->checker_on) {
		/* Spinning did not do it: spin less next time (the other side
		 * may share our CPU, where spinning only delays it). */
		uint32_t b = atomic_load_explicit(&r->spin_budget, memory_order_relaxed) / 2;
		atomic_store_explicit(&r->spin_budget, b < SPIN_MIN ? SPIN_MIN : b, memory_order_relaxed);
		shmp__checker_init(&wt->check, CHECK_FIRST_NS, CHECK_MAX_NS);
		wt->checker_on = true;
	}
	if (shmp__deadline_passed(&wt->d))
		return -ETIMEDOUT;
	struct shmp__ring_sh *sh = r->sh;
	_Atomic uint32_t *futex = producer ? &sh->not_full : &sh->not_empty;
	_Atomic uint32_t *waiters = producer ? &sh->prod_waiters : &sh->cons_waiters;
	atomic_fetch_add_explicit(waiters, 1, memory_order_seq_cst);
	uint32_t seen = atomic_fetch_or_explicit(futex, ARMED, memory_order_seq_cst) | ARMED;
	if (sp) {
		sp->slept = true;
		if (sp->self_idle)
			atomic_fetch_add_explicit(sp->self_idle, 1, memory_order_relaxed);
	}
	/* Sleep even when closed while a message being written drains (the
	 * caller waits on this slot), but not when the close ends this wait:
	 * a close between the caller's look at `closed` and the arming above
	 * bumped the futex before `seen` was read, and its wake-up found no
	 * sleeper (the closed store comes before that bump, so it shows here
	 * if the bump did not change `seen`). */
	int fr = 0;
	bool closed = atomic_load_explicit(&sh->closed, memory_order_seq_cst);
	if (atomic_load_explicit(&s->word, memory_order_seq_cst) == w && !(closed && (producer || w_st(w) == ST_FREE))) {
		/* Always with a time limit: a timed futex wait is not restarted
		 * after a signal handler ran, so an interruptible caller hears
		 * of it (-EINTR) whether or not the handler has SA_RESTART. */
		struct timespec until = shmp__checker_until(&wt->check, &wt->d);
		/* Unless a consumer's caller vouches for its producers (struct
		 * shmp__ring_spin's `supervised`), waits without limit and
		 * cannot miss an interrupt: then no timer per sleep. Not after
		 * close on a slot another consumer still reads from the last
		 * lap: its release wakes producers only. */
		bool untimed = sp && sp->supervised && !producer && wt->d.kind == 0 &&
			       !atomic_load_explicit(&shmp__intr_on, memory_order_relaxed) &&
			       (!closed || w_st(w) == ST_WRITING);
		fr = shmp__futex_wait(futex, seen, untimed ? NULL : &until);
	}
	atomic_fetch_sub_explicit(waiters, 1, memory_order_relaxed);
	if (sp && sp->self_idle)
		atomic_fetch_sub_explicit(sp->self_idle, 1, memory_order_relaxed);
	if (shmp__interrupted(fr))
		return -EINTR; /* nothing claimed yet: the call leaves no trace */
	bool expired = shmp__deadline_passed(&wt->d);
	if (shmp__checker_due(&wt->check) || expired)
		recover_dead(r, s, atomic_load_explicit(&s->word, memory_order_acquire));
	return expired ? -ETIMEDOUT : 0;
}

/* ---- claiming ------------------------------------------------------------ */

/* Anomalies (a word no correct ring can hold at the hint) tolerated before
 * calling the ring corrupt: each re-reads the hint, which other threads may
 * have just moved. */
#define MAX_ANOMALIES 64

/* Take slot s (last seen as *w) for message pos, as (pos, st, tid), and
 * move the hint on past it. `single`: no rival can race for the slot, so a
 * plain store does (it still names the owner, so a death is recovered).
 * False if a rival won the CAS (*w is then the word it left). */
static inline bool take_slot(struct slot *s, uint64_t *w, uint64_t pos, uint32_t st, uint32_t tid,
			     _Atomic uint64_t *hint, bool single)
{
	uint64_t want = W((uint32_t)pos, st, tid);
	if (single) {
		atomic_store_explicit(&s->word, want, memory_order_relaxed);
		atomic_store_explicit(hint, pos + 1, memory_order_relaxed);
		return true;
	}
	if (!atomic_compare_exchange_weak_explicit(&s->word, w, want, memory_order_acquire,
						   memory_order_relaxed))
		return false;
	uint64_t p = pos;
	atomic_compare_exchange_strong_explicit(hint, &p, pos + 1, memory_order_relaxed, memory_order_relaxed);
	return true;
}

/* The hint still says pos, but pos is taken: help it on. Returns where to
 * look next (pos + 1, or wherever another thread has moved it). */
static inline uint64_t help_hint(_Atomic uint64_t *hint, uint64_t pos)
{
	uint64_t p = pos;
	if (atomic_compare_exchange_strong_explicit(hint, &p, pos + 1, memory_order_relaxed,
						    memory_order_relaxed))
		return pos + 1;
	return p;
}

/* claim_put and claim_get are the two halves of one protocol (a word per
 * slot, a position hint per side) and look alike on purpose (`duplicates`
 * pairs them): the states, the hint and the full/empty test differ, and
 * one function for both would put branches on both hot paths.
 *
 * Claim the slot for the next message. 0 (slot and position set); -EAGAIN
 * when full (*blk_w: the word of the blocking slot); -SHMP_ECORRUPT. */
static int claim_put(shmp_ring_t *r, uint32_t tid, uint64_t *pos_out, struct slot **s_out, uint64_t *blk_w)
{
	struct shmp__ring_sh *sh = r->sh;
	uint64_t pos = atomic_load_explicit(&sh->tail, memory_order_relaxed);
	for (int anomalies = 0;;) {
		struct slot *s = slot_at(r, pos);
		uint64_t w = atomic_load_explicit(&s->word, memory_order_acquire);
		int32_t diff = (int32_t)(w_seq(w) - (uint32_t)pos);
		uint32_t st = w_st(w);
		if (diff == 0 && st == ST_FREE) {
			if (!take_slot(s, &w, pos, ST_WRITING, tid, &sh->tail, r->sp))
				continue;
			*pos_out = pos;
			*s_out = s;
			return 0;
		}
		if (diff == 0 || diff == (int32_t)r->cap) {
			/* Claimed (or even consumed) already: the hint lags. */
			pos = help_hint(&sh->tail, pos);
			continue;
		}
		if (diff == -(int32_t)r->cap && st != ST_FREE) {
			*s_out = s;
			*blk_w = w;
			return -EAGAIN; /* last lap's message is still there: full */
		}
		uint64_t p = atomic_load_explicit(&sh->tail, memory_order_relaxed);
		if (p == pos && ++anomalies > MAX_ANOMALIES)
			return -SHMP_ECORRUPT;
		pos = p;
	}
}

/* Claim the oldest ready message. 0; -EAGAIN when none is ready (*s_out and
 * *blk_w: the slot waited on); -SHMP_ECORRUPT. With `len_cap` non-NULL, a
 * message longer than *len_cap is not claimed: -EMSGSIZE, *len_cap = its
 * length. */
static int claim_get(shmp_ring_t *r, uint32_t tid, uint64_t *pos_out, struct slot **s_out, uint64_t *blk_w,
		     size_t *len_cap)
{
	struct shmp__ring_sh *sh = r->sh;
	uint64_t pos = atomic_load_explicit(&sh->head, memory_order_relaxed);
	for (int anomalies = 0;;) {
		struct slot *s = slot_at(r, pos);
		uint64_t w = atomic_load_explicit(&s->word, memory_order_acquire);
		int32_t diff = (int32_t)(w_seq(w) - (uint32_t)pos);
		uint32_t st = w_st(w);
		if (diff == 0 && st == ST_READY) {
			if (len_cap && !(__atomic_load_n(&s->flags, __ATOMIC_RELAXED) & F_SKIP) &&
			    __atomic_load_n(&s->len, __ATOMIC_RELAXED) > *len_cap) {
				uint32_t len = __atomic_load_n(&s->len, __ATOMIC_RELAXED);
				/* The length belongs to this message only if the word
				 * has not moved meanwhile (a seqlock read: the relaxed
				 * loads above are ordered before the re-check by the
				 * fence; a producer of the next lap writes len and
				 * flags while we look, hence atomics). */
				atomic_thread_fence(memory_order_acquire);
				if (atomic_load_explicit(&s->word, memory_order_relaxed) != w)
					continue;
				*len_cap = len;
				return -EMSGSIZE;
			}
			if (!take_slot(s, &w, pos, ST_READING, tid, &sh->head, r->sc))
				continue;
			*pos_out = pos;
			*s_out = s;
			return 0;
		}
		if ((diff == 0 && (st == ST_FREE || st == ST_WRITING)) ||
		    (diff == -(int32_t)r->cap && st == ST_READING)) {
			/* Empty, or the next message is being written, or a slow
			 * reader still holds this slot from the last lap. */
			*s_out = s;
			*blk_w = w;
			return -EAGAIN;
		}
		if ((diff == 0 && st == ST_READING) || diff == (int32_t)r->cap) {
			pos = help_hint(&sh->head, pos);
			continue;
		}
		uint64_t p = atomic_load_explicit(&sh->head, memory_order_relaxed);
		if (p == pos && ++anomalies > MAX_ANOMALIES)
			return -SHMP_ECORRUPT;
		pos = p;
	}
}

/* Where the payload of message pos (claimed) is; NULL if the slot's length
 * or block fails validation. */
static void *payload_of(shmp_ring_t *r, struct slot *s, uint64_t pos, uint32_t len, uint32_t flags)
{
	if (!(flags & F_BLOCK))
		return len <= r->inline_max ? s->payload : NULL;
	struct block_hdr *b = block_at(r, s->block_off, (uint32_t)pos, &len);
	return b ? (void *)(b + 1) : NULL;
}

/* Finish reading a claimed slot: free its block, hand the slot to the next
 * lap, wake a producer. */
static void consume_done(shmp_ring_t *r, struct slot *s, uint64_t pos, bool wake)
{
	uint64_t blk = s->block_off;
	if (blk) {
		s->block_off = 0; /* before the free: see the block_off protocol */
		block_free(r, blk, (uint32_t)pos);
	}
	atomic_store_explicit(&s->word, W((uint32_t)(pos + r->cap), ST_FREE, 0), memory_order_release);
	if (wake)
		wake_producers(r, 1);
}

/* ---- put ---------------------------------------------------------------- */

/* Claim a slot (and, for a message of more than inline_max bytes, a block
 * for it), waiting as the timeout allows. The block is taken just before
 * each claim attempt and given back before sleeping: a failed allocation
 * claims nothing, and a producer killed while it waits for room holds no
 * block. The block starts with a header naming this ring and the message. */
static int acquire_put_slot(shmp_ring_t *r, struct waiter *wt, size_t len, uint64_t *pos,
			    struct slot **s, uint64_t *blk)
{
	uint32_t tid = (uint32_t)shmp__tid();
	*blk = 0;
	for (;;) {
		if (atomic_load_explicit(&r->sh->closed, memory_order_acquire))
			return -SHMP_ECLOSED;
		int e;
		if (len > r->inline_max &&
		    (e = shmp__segment_alloc(r->seg, len + sizeof(struct block_hdr), 16, blk, false)) < 0)
			return e;
		uint64_t w = 0;
		e = claim_put(r, tid, pos, s, &w);
		if (e == 0) {
			if (*blk) {
				struct block_hdr *b = (struct block_hdr *)(r->seg->base + *blk);
				*b = (struct block_hdr){ .tag = r->block_tag, .seq = (uint32_t)*pos,
							 .len = (uint32_t)len };
				(*s)->block_off = *blk;
			}
			return 0;
		}
		if (*blk) {
			shmp_segment_free(r->seg, *blk);
			*blk = 0;
		}
		if (e != -EAGAIN)
			return e;
		if ((e = block_on(r, true, wt, *s, w)) < 0)
			return e;
	}
}

static inline void publish(struct slot *s, uint64_t pos, uint32_t len, uint32_t flags)
{
	__atomic_store_n(&s->len, len, __ATOMIC_RELAXED);
	__atomic_store_n(&s->flags, flags, __ATOMIC_RELAXED);
	atomic_store_explicit(&s->word, W((uint32_t)pos, ST_READY, 0), memory_order_release);
}

static int check_put_args(shmp_ring_t *r, const void *msg, size_t len)
{
	if (!r || (!msg && len))
		return -EINVAL;
	if (len > r->max_message)
		return -EMSGSIZE;
	return 0;
}

/* One message: a slot (waiting as wt says), the copy, the publish; no
 * wake-up (the caller makes one check for what it put). */
static int put_one(shmp_ring_t *r, struct waiter *wt, const void *msg, size_t len)
{
	int e = check_put_args(r, msg, len);
	uint64_t blk = 0, pos;
	struct slot *s;
	if (e < 0 || (e = acquire_put_slot(r, wt, len, &pos, &s, &blk)) < 0)
		return e;
	if (blk)
		memcpy(r->seg->base + blk + sizeof(struct block_hdr), msg, len);
	else if (len)
		memcpy(s->payload, msg, len);
	publish(s, pos, (uint32_t)len, blk ? F_BLOCK : 0);
	return 0;
}

int shmp_ring_put(shmp_ring_t *r, const void *msg, size_t len, double timeout)
{
	int e = check_put_args(r, msg, len);
	if (e < 0)
		return e;
	struct waiter wt;
	if (waiter_init(r, &wt, timeout) < 0)
		return -EINVAL;
	if ((e = put_one(r, &wt, msg, len)) < 0)
		return e;
	wake_consumers(r, 1);
	return 0;
}

int shmp_ring_put_batch(shmp_ring_t *r, const struct iovec *msgs, unsigned n, double timeout)
{
	if (!r || (!msgs && n))
		return -EINVAL;
	unsigned done = 0;
	struct waiter wt;
	if (waiter_init(r, &wt, timeout) < 0)
		return -EINVAL;
	for (; done < n; done++) {
		/* No waiting after the first: a zero timeout for the rest. */
		struct waiter now = { .d = { .kind = 2 } };
		int e = put_one(r, done == 0 ? &wt : &now, msgs[done].iov_base, msgs[done].iov_len);
		if (e < 0) {
			if (done)
				break;
			return e;
		}
	}
	wake_consumers(r, (int)done); /* one wake-up check for the whole batch */
	return (int)done;
}

int shmp_ring_reserve(shmp_ring_t *r, size_t len, struct shmp_ring_ticket *t, double timeout)
{
	if (!t)
		return -EINVAL;
	int e = check_put_args(r, "", len);
	if (e < 0)
		return e;
	uint64_t blk, pos;
	struct waiter wt;
	if (waiter_init(r, &wt, timeout) < 0)
		return -EINVAL;
	struct slot *s;
	if ((e = acquire_put_slot(r, &wt, len, &pos, &s, &blk)) < 0)
		return e;
	t->data = blk ? (void *)(r->seg->base + blk + sizeof(struct block_hdr)) : (void *)s->payload;
	t->len = len;
	t->pos_ = pos;
	t->block_ = blk;
	t->state_ = 1;
	return 0;
}

static int ticket_slot(shmp_ring_t *r, struct shmp_ring_ticket *t, uint32_t state, struct slot **s)
{
	if (!r || !t || t->state_ != state)
		return -EINVAL;
	*s = slot_at(r, t->pos_);
	return 0;
}

int shmp_ring_commit(shmp_ring_t *r, struct shmp_ring_ticket *t, size_t len)
{
	int e = shmp__ring_commit_quiet(r, t, len);
	if (e == 0)
		wake_consumers(r, 1);
	return e;
}

int shmp_ring_cancel(shmp_ring_t *r, struct shmp_ring_ticket *t)
{
	struct slot *s;
	int e = ticket_slot(r, t, 1, &s);
	if (e < 0)
		return e;
	/* The position is taken; publish a message consumers skip. */
	publish(s, t->pos_, 0, F_SKIP | (t->block_ ? F_BLOCK : 0));
	t->state_ = 0;
	wake_consumers(r, 1);
	return 0;
}

/* ---- get ---------------------------------------------------------------- */

/* Claim the oldest message, waiting as the timeout allows; skipped
 * (cancelled) messages are consumed on the way. */
static int acquire_get_slot(shmp_ring_t *r, struct waiter *wt, uint64_t *pos, struct slot **s, size_t *len_cap)
{
	uint32_t tid = (uint32_t)shmp__tid();
	for (;;) {
		uint64_t w = 0;
		int e = claim_get(r, tid, pos, s, &w, len_cap);
		if (e == 0) {
			if (!((*s)->flags & F_SKIP))
				return 0;
			consume_done(r, *s, *pos, true);
			continue;
		}
		if (e != -EAGAIN)
			return e;
		if (w_st(w) == ST_FREE && atomic_load_explicit(&r->sh->closed, memory_order_acquire))
			return -SHMP_ECLOSED; /* closed and drained */
		if ((e = block_on(r, false, wt, *s, w)) < 0)
			return e;
	}
}

int shmp_ring_get(shmp_ring_t *r, void *buf, size_t cap, size_t *len, double timeout)
{
	if (!r || !len || (!buf && cap))
		return -EINVAL;
	struct waiter wt;
	if (waiter_init(r, &wt, timeout) < 0)
		return -EINVAL;
	uint64_t pos;
	struct slot *s;
	size_t need = cap;
	int e = acquire_get_slot(r, &wt, &pos, &s, &need);
	if (e == -EMSGSIZE)
		*len = need;
	if (e < 0)
		return e;
	uint32_t n = s->len, flags = s->flags;
	void *p = payload_of(r, s, pos, n, flags);
	if (!p || n > cap) {
		consume_done(r, s, pos, true);
		return -SHMP_ECORRUPT;
	}
	if (n)
		memcpy(buf, p, n);
	*len = n;
	consume_done(r, s, pos, true);
	return 0;
}

int shmp_ring_get_batch(shmp_ring_t *r, struct iovec *bufs, size_t *lens, unsigned n, double timeout)
{
	if (!r || ((!bufs || !lens) && n))
		return -EINVAL;
	struct waiter wt;
	if (waiter_init(r, &wt, timeout) < 0)
		return -EINVAL;
	uint32_t tid = (uint32_t)shmp__tid();
	unsigned done = 0;
	for (; done < n; done++) {
		uint64_t pos, w;
		struct slot *s;
		size_t need = bufs[done].iov_len;
		int e;
		if (done == 0) {
			e = acquire_get_slot(r, &wt, &pos, &s, &need);
		} else {
			while ((e = claim_get(r, tid, &pos, &s, &w, &need)) == 0 && (s->flags & F_SKIP))
				consume_done(r, s, pos, false);
		}
		if (e == -EMSGSIZE && done == 0)
			lens[0] = need;
		if (e < 0) {
			if (done)
				break;
			return e;
		}
		uint32_t len = s->len;
		void *p = payload_of(r, s, pos, len, s->flags);
		if (!p || len > bufs[done].iov_len) {
			consume_done(r, s, pos, false);
			if (done)
				break;
			wake_producers(r, 1);
			return -SHMP_ECORRUPT;
		}
		if (len)
			memcpy(bufs[done].iov_base, p, len);
		lens[done] = len;
		consume_done(r, s, pos, false);
	}
	wake_producers(r, (int)done);
	return (int)done;
}

/* Lend the claimed message at (s, pos) as *t, to be released later: 0, or
 * -SHMP_ECORRUPT if its payload fails validation (the slot is consumed
 * then, waking producers if `wake`). */
static int lend(shmp_ring_t *r, struct slot *s, uint64_t pos, struct shmp_ring_ticket *t, bool wake)
{
	uint32_t len = s->len;
	void *p = payload_of(r, s, pos, len, s->flags);
	if (!p) {
		consume_done(r, s, pos, wake);
		return -SHMP_ECORRUPT;
	}
	*t = (struct shmp_ring_ticket){ .data = p, .len = len, .pos_ = pos, .block_ = s->block_off, .state_ = 2 };
	return 0;
}

int shmp_ring_peek(shmp_ring_t *r, struct shmp_ring_ticket *t, double timeout)
{
	if (!r || !t)
		return -EINVAL;
	struct waiter wt;
	if (waiter_init(r, &wt, timeout) < 0)
		return -EINVAL;
	uint64_t pos;
	struct slot *s;
	int e = acquire_get_slot(r, &wt, &pos, &s, NULL);
	return e < 0 ? e : lend(r, s, pos, t, true);
}

/* Release, telling waiting producers of the room (wake) or not (the
 * pipeline's batches tell them once per batch). */
static int release_slot(shmp_ring_t *r, struct shmp_ring_ticket *t, bool wake)
{
	struct slot *s;
	int e = ticket_slot(r, t, 2, &s);
	if (e < 0)
		return e;
	consume_done(r, s, t->pos_, wake);
	t->state_ = 0;
	return 0;
}

int shmp_ring_release(shmp_ring_t *r, struct shmp_ring_ticket *t)
{
	return release_slot(r, t, true);
}

/* ---- batches, for the pipeline (pipeline_internal.h) ---------------------- */

int shmp__ring_peek_batch(shmp_ring_t *r, struct shmp_ring_ticket *t, unsigned n, double timeout,
			  struct shmp__ring_spin *sp)
{
	if (!r || !t || !n)
		return -EINVAL;
	struct waiter wt;
	if (waiter_init(r, &wt, timeout) < 0)
		return -EINVAL;
	if (sp) {
		sp->slept = false;
		wt.sp = sp;
	}
	uint32_t tid = (uint32_t)shmp__tid();
	unsigned got = 0;
	while (got < n) {
		uint64_t pos, w;
		struct slot *s;
		int e;
		if (got == 0) {
			e = acquire_get_slot(r, &wt, &pos, &s, NULL);
		} else {
			/* The rest of the range: only what is ready now. */
			while ((e = claim_get(r, tid, &pos, &s, &w, NULL)) == 0 && (s->flags & F_SKIP))
				consume_done(r, s, pos, false);
		}
		if (e == 0)
			e = lend(r, s, pos, &t[got], true);
		if (e < 0)
			return got ? (int)got : e;
		got++;
	}
	return (int)got;
}

int shmp__ring_take_ready(shmp_ring_t *r, struct shmp_ring_ticket *t)
{
	uint32_t tid = (uint32_t)shmp__tid();
	uint64_t pos, w;
	struct slot *s;
	int e;
	while ((e = claim_get(r, tid, &pos, &s, &w, NULL)) == 0 && (s->flags & F_SKIP))
		consume_done(r, s, pos, true);
	if (e == -EAGAIN)
		return -ETIMEDOUT;
	return e < 0 ? e : lend(r, s, pos, t, true);
}

int shmp__ring_release_quiet(shmp_ring_t *r, struct shmp_ring_ticket *t)
{
	return release_slot(r, t, false);
}

int shmp__ring_commit_quiet(shmp_ring_t *r, struct shmp_ring_ticket *t, size_t len)
{
	struct slot *s;
	int e = ticket_slot(r, t, 1, &s);
	if (e < 0)
		return e;
	if (len > t->len)
		return -EINVAL;
	if (t->block_)
		((struct block_hdr *)(r->seg->base + t->block_))->len = (uint32_t)len;
	publish(s, t->pos_, (uint32_t)len, t->block_ ? F_BLOCK : 0);
	t->state_ = 0;
	return 0;
}

void shmp__ring_wake_consumers(shmp_ring_t *r)
{
	wake_consumers(r, INT_MAX);
}

void shmp__ring_wake_producers(shmp_ring_t *r)
{
	wake_producers(r, INT_MAX);
}

/* As close() wakes, without closing: whatever the armed bits say (a waker
 * killed between clearing one and its FUTEX_WAKE leaves sleepers that the
 * next wake_side would skip). */
void shmp__ring_wake_all(shmp_ring_t *r)
{
	atomic_fetch_add_explicit(&r->sh->not_empty, 2, memory_order_seq_cst);
	atomic_fetch_add_explicit(&r->sh->not_full, 2, memory_order_seq_cst);
	shmp__futex_wake(&r->sh->not_empty, INT_MAX);
	shmp__futex_wake(&r->sh->not_full, INT_MAX);
}

/* ---- the rest ----------------------------------------------------------- */

int shmp_ring_poll(shmp_ring_t *r, double timeout)
{
	if (!r)
		return -EINVAL;
	struct waiter wt;
	if (waiter_init(r, &wt, timeout) < 0)
		return -EINVAL;
	for (int anomalies = 0;;) {
		uint64_t pos = atomic_load_explicit(&r->sh->head, memory_order_relaxed);
		struct slot *s = slot_at(r, pos);
		uint64_t w = atomic_load_explicit(&s->word, memory_order_acquire);
		int32_t diff = (int32_t)(w_seq(w) - (uint32_t)pos);
		uint32_t st = w_st(w);
		if (diff == 0 && st == ST_READY) {
			uint32_t flags = s->flags;
			if (atomic_load_explicit(&s->word, memory_order_acquire) != w)
				continue;
			if (!(flags & F_SKIP))
				return 0;
			/* A cancelled reservation is no message: consume it here,
			 * claiming exactly this word so no real message is taken. */
			if (take_slot(s, &w, pos, ST_READING, (uint32_t)shmp__tid(), &r->sh->head, r->sc))
				consume_done(r, s, pos, true);
			continue;
		}
		if ((diff == 0 && st == ST_READING) || diff == (int32_t)r->cap) {
			/* The hint lags behind a claimed or consumed slot: help. */
			help_hint(&r->sh->head, pos);
			continue;
		}
		if (!((diff == 0 && (st == ST_FREE || st == ST_WRITING)) ||
		      (diff == -(int32_t)r->cap && st == ST_READING))) {
			if (atomic_load_explicit(&r->sh->head, memory_order_relaxed) == pos &&
			    ++anomalies > MAX_ANOMALIES)
				return -SHMP_ECORRUPT;
			continue;
		}
		if (st == ST_FREE && atomic_load_explicit(&r->sh->closed, memory_order_acquire))
			return -SHMP_ECLOSED;
		int e = block_on(r, false, &wt, s, w);
		if (e < 0)
			return e;
	}
}

int shmp_ring_close(shmp_ring_t *r)
{
	if (!r)
		return -EINVAL;
	struct shmp__ring_sh *sh = r->sh;
	atomic_store_explicit(&sh->closed, 1, memory_order_seq_cst);
	atomic_fetch_add_explicit(&sh->not_empty, 2, memory_order_release);
	atomic_fetch_add_explicit(&sh->not_full, 2, memory_order_release);
	shmp__futex_wake(&sh->not_empty, INT_MAX);
	shmp__futex_wake(&sh->not_full, INT_MAX);
	return 0;
}

int shmp_ring_count(shmp_ring_t *r)
{
	if (!r)
		return -EINVAL;
	uint64_t t = atomic_load_explicit(&r->sh->tail, memory_order_acquire);
	uint64_t h = atomic_load_explicit(&r->sh->head, memory_order_acquire);
	uint64_t n = t > h ? t - h : 0;
	return (int)(n > r->cap ? r->cap : n);
}

int shmp_ring_stats(shmp_ring_t *r, struct shmp_ring_stats *st)
{
	if (!r || !st)
		return -EINVAL;
	st->lost = atomic_load_explicit(&r->sh->lost, memory_order_relaxed);
	st->lost_blocks = atomic_load_explicit(&r->sh->lost_blocks, memory_order_relaxed);
	st->count = (uint32_t)shmp_ring_count(r);
	st->capacity = r->cap;
	st->inline_size = r->inline_max;
	st->closed = atomic_load_explicit(&r->sh->closed, memory_order_relaxed);
	return 0;
}
