/* private: the Pool's task table — reserving and publishing records in the
 * parent, collecting finished ones, failing lost ones. See pool_internal.h
 * for the record protocol and for why every record has a private shadow.
 *
 * Crash safety: a worker killed at any point leaves its record QUEUED (taken
 * by another worker), RUNNING (failed by the supervisor) or DONE (collected).
 * Whatever the shared record says, a task is collected once: the claim is a
 * CAS on its private shadow (LIVE -> COLLECTING), and what is delivered —
 * to which call, which items, from which block — comes from the shadow; only
 * the status fields and the results themselves come from shared memory,
 * validated (an index outside the task's items becomes its first). */
#include "pool_internal.h"

#include <stdlib.h>
#include <sys/eventfd.h>

uint64_t shmp__fn_offset(shmp_task_fn fn)
{
	/* A distance between two code addresses, not a pointer: it means the
	 * same thing in every process forked from this one. */
	return (uint64_t)((uintptr_t)fn - (uintptr_t)&shmp_pool_create);
}

void shmp__count_add(struct shmp_pool *p, _Atomic uint64_t *priv, _Atomic uint64_t *shared, uint64_t n)
{
	(void)p;
	atomic_fetch_add_explicit(priv, n, memory_order_acq_rel);
	atomic_fetch_add_explicit(shared, n, memory_order_relaxed);
}

uint64_t shmp__tasks_outstanding(struct shmp_pool *p)
{
	uint64_t c = atomic_load_explicit(&p->n_completed, memory_order_acquire);
	uint64_t s = atomic_load_explicit(&p->n_submitted, memory_order_acquire);
	return s - c;
}

void shmp__notify_supervisor(struct shmp_pool *p)
{
	/* Dekker with the supervisor: it sets sup_armed, then looks for work;
	 * we publish work, then look at sup_armed. */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&p->sh->sup_armed, memory_order_relaxed) &&
	    atomic_exchange_explicit(&p->sh->sup_armed, 0, memory_order_relaxed)) {
		uint64_t one = 1;
		ssize_t r = write(p->efd, &one, sizeof one);
		(void)r; /* EAGAIN only if the counter is saturated: it is readable anyway */
	}
}

void shmp__tasks_wake(struct shmp_pool *p)
{
	shmp__wake_workers(p->sh);
}

/* A task the caller collects is finished (or failed): wake the caller. */
void shmp__wake_caller(struct shmp_pool *p, struct shmp__rec *r, uint32_t flags, uint64_t off)
{
	if (flags & REC_F_NOTIFY) {
		if (off > p->seg->size || sizeof(struct shmp__notify) > p->seg->size - off ||
		    off % _Alignof(struct shmp__notify))
			return; /* corrupted: the caller's sleeps are bounded anyway */
		struct shmp__notify *n = (struct shmp__notify *)(p->seg->base + off);
		atomic_fetch_add_explicit(&n->seq, 1, memory_order_seq_cst);
		if (atomic_load_explicit(&n->waiters, memory_order_seq_cst))
			shmp__futex_wake(&n->seq, INT32_MAX);
		return;
	}
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&r->wake, memory_order_relaxed) &&
	    atomic_exchange_explicit(&r->wake, 0, memory_order_relaxed))
		shmp__futex_wake(&r->wake, INT32_MAX);
}

static void wake_free_waiters(struct shmp_pool *p)
{
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&p->free_waiters, memory_order_relaxed)) {
		atomic_fetch_add_explicit(&p->free_futex, 1, memory_order_relaxed);
		shmp__futex_wake(&p->free_futex, INT32_MAX);
	}
}

/* The next record to fill (caller holds submit_mu). Waits while the table
 * is full: backpressure. On the supervisor thread (a callback submitting),
 * nobody else would free records, so it collects while it waits. */
int shmp__task_reserve(struct shmp_pool *p, const struct shmp__deadline *d, uint64_t *seq)
{
	uint64_t t = atomic_load_explicit(&p->tail, memory_order_relaxed);
	struct shmp__shadow *s = pool_shadow(p, t);
	uint64_t want = shadow_word(t, SHADOW_FREE);
	/* Shadows are calloc'd (no page is touched before use): a zero word
	 * is FREE for the first lap. */
	uint64_t want0 = t < p->capacity ? 0 : want;
	bool on_sup = p->sup_started && pthread_equal(pthread_self(), p->sup);
	for (;;) {
		int e = shmp__pool_stopped_error(p);
		if (e && atomic_load_explicit(&p->state, memory_order_relaxed) != SHMP_POOL_CLOSED)
			return e;
		uint64_t cur = atomic_load_explicit(&s->word, memory_order_acquire);
		if (cur == want || cur == want0)
			break;
		if (on_sup) {
			uint64_t q;
			size_t len;
			if (shmp_ring_get(p->done, &q, sizeof q, &len, 0.001) == 0 && len == sizeof q)
				shmp__task_collect(p, q, true);
			continue;
		}
		uint32_t f = atomic_load_explicit(&p->free_futex, memory_order_relaxed);
		atomic_fetch_add_explicit(&p->free_waiters, 1, memory_order_seq_cst);
		uint64_t cur2 = atomic_load_explicit(&s->word, memory_order_seq_cst);
		int w = 0;
		if (cur2 != want && cur2 != want0) {
			if (shmp__deadline_passed(d)) {
				atomic_fetch_sub_explicit(&p->free_waiters, 1, memory_order_relaxed);
				return -ETIMEDOUT;
			}
			struct timespec until = shmp__deadline_cap(d, 50 * 1000000L);
			w = shmp__futex_wait(&p->free_futex, f, &until);
		}
		atomic_fetch_sub_explicit(&p->free_waiters, 1, memory_order_relaxed);
		if (shmp__interrupted(w))
			return -EINTR;
	}
	*seq = t;
	return 0;
}

void shmp__task_publish(struct shmp_pool *p, uint64_t seq, struct shmp__rec *r)
{
	r->status = r->code = r->signal = 0;
	r->exit_status = -1;
	r->worker_pid = 0;
	r->fail_index = r->t.first;
	r->tag = shmp__task_tag(p->key, seq, &r->t);
	atomic_store_explicit(&r->wake, 0, memory_order_relaxed);
	/* Counted before anyone can collect it: outstanding never reads 0
	 * while a task is out. */
	shmp__count_add(p, &p->n_submitted, &p->sh->submitted, 1);
	atomic_store_explicit(&pool_shadow(p, seq)->word, shadow_word(seq, SHADOW_LIVE), memory_order_release);
	atomic_store_explicit(&p->tail, seq + 1, memory_order_release);
	atomic_store_explicit(&p->sh->tail, seq + 1, memory_order_relaxed);
	atomic_store_explicit(&r->word, rec_word(seq, REC_QUEUED, 0), memory_order_release);
}

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

static void deliver(struct shmp_pool *p, struct shmp_async *c, const struct shmp__shadow *s,
		    struct shmp__rec *r, const struct shmp_task_error *e)
{
	if (c->kind == CALL_IMAP) {
		struct shmp_imap *it = c->it;
		uint64_t chunk = c->chunksize ? s->first / c->chunksize : 0;
		struct shmp__imap_slot *sl = &it->slots[chunk % it->window];
		if (sl->chunk == chunk && atomic_load_explicit(&sl->state, memory_order_relaxed) == SLOT_BUSY) {
			sl->err = e->error ? *e : (struct shmp_task_error){ 0 };
			atomic_store_explicit(&sl->state, SLOT_READY, memory_order_release);
		}
		return;
	}
	if (e->error) {
		shmp__call_note_error(c, e);
		return;
	}
	if (!c->out || s->out_where == OUT_INPLACE)
		return; /* written in place */
	size_t bytes = (size_t)s->count * c->out_size;
	const char *src = s->out_where == OUT_INLINE ? rec_payload(r) + s->out_at
						      : arena_ptr(p, s->block + s->out_at, bytes);
	if (src && s->first <= c->n && s->count <= c->n - s->first)
		memcpy(c->out + s->first * c->out_size, src, bytes);
	else
		shmp__call_note_error(c, &(struct shmp_task_error){ .error = -SHMP_ECORRUPT, .index = s->first,
								     .exit_status = -1 });
}

/* Claimed (COLLECTING): deliver, give back the block, free the record. */
static void finish_claimed(struct shmp_pool *p, uint64_t seq, struct shmp__shadow *s,
			   const struct shmp_task_error *e, bool supervisor)
{
	struct shmp__rec *r = pool_rec(p, seq);
	struct shmp_async *c = shmp__call_lookup(p, s->call, s->call_gen);
	if (c)
		deliver(p, c, s, r, e);
	if (s->block) {
		shmp__arena_free(&p->arena, s->block, s->block_len, true);
		s->block = 0;
	}
	shmp__count_add(p, &p->n_completed, &p->sh->completed, 1);
	if (e->error)
		shmp__count_add(p, &p->n_failed, &p->sh->failed, 1);
	atomic_store_explicit(&r->word, rec_word(seq + p->capacity, REC_FREE, 0), memory_order_release);
	atomic_store_explicit(&s->word, shadow_word(seq + p->capacity, SHADOW_FREE), memory_order_release);
	wake_free_waiters(p);
	if (c)
		shmp__call_task_done(c, supervisor);
}

/* Deliver a finished task and free its record. False if someone else
 * collects it (already collected, or the caller of apply / imap does). */
bool shmp__task_collect(struct shmp_pool *p, uint64_t seq, bool supervisor)
{
	struct shmp__rec *r = pool_rec(p, seq);
	struct shmp__shadow *s = pool_shadow(p, seq);
	uint64_t live = shadow_word(seq, SHADOW_LIVE);
	if (atomic_load_explicit(&s->word, memory_order_acquire) != live)
		return false;
	uint64_t w = atomic_load_explicit(&r->word, memory_order_acquire);
	if (rec_state(w) != REC_DONE || rec_seq(w) != (seq & REC_SEQ_MASK))
		return false;
	if (supervisor && (s->flags & REC_F_CALLER)) {
		/* Only for a caller that left (an imap destroyed early, an
		 * interrupted apply). */
		struct shmp_async *c = shmp__call_lookup(p, s->call, s->call_gen);
		if (c && !atomic_load_explicit(&c->abandoned, memory_order_acquire))
			return false;
	}
	if (!atomic_compare_exchange_strong_explicit(&s->word, &live, shadow_word(seq, SHADOW_COLLECTING),
						     memory_order_acquire, memory_order_relaxed))
		return false;
	struct shmp_task_error e = task_status(r, s);
	finish_claimed(p, seq, s, &e, supervisor);
	return true;
}

/* A task that will never run or finish (its worker died, the pool was
 * terminated): record why and finish it. */
void shmp__task_fail(struct shmp_pool *p, uint64_t seq, uint64_t word, int error, int code, int sig,
		     int exit_status)
{
	struct shmp__rec *r = pool_rec(p, seq);
	struct shmp__shadow *s = pool_shadow(p, seq);
	if (rec_seq(word) != (seq & REC_SEQ_MASK))
		return;
	if (atomic_load_explicit(&s->word, memory_order_acquire) != shadow_word(seq, SHADOW_LIVE))
		return; /* not a task of ours (a forged word) */
	r->status = error;
	r->code = code;
	r->signal = sig;
	r->exit_status = exit_status;
	r->fail_index = s->first;
	if (rec_state(word) == REC_RUNNING) {
		unsigned w = rec_worker(word);
		r->worker_pid = w < (unsigned)p->nworkers ? atomic_load_explicit(&p->wp[w].pid, memory_order_relaxed) : 0;
	}
	if (!atomic_compare_exchange_strong_explicit(&r->word, &word, rec_word(seq, REC_DONE, 0),
						     memory_order_release, memory_order_relaxed))
		return; /* it finished after all */
	if (s->flags & REC_F_CALLER)
		shmp__wake_caller(p, r, s->flags, s->notify_off);
	/* A caller-collected task is left to its caller (or, if the caller
	 * left, to the supervisor's sweep). */
	shmp__task_collect(p, seq, true);
}

/* Fail task q from its shadow alone (its record cannot be trusted, or
 * nobody is left to finish it). False if it was not live. A caller waiting
 * for its own task (apply, imap) sees its shadow collected. */
bool shmp__task_fail_shadow(struct shmp_pool *p, uint64_t q, int error, int code)
{
	struct shmp__shadow *s = pool_shadow(p, q);
	uint64_t live = shadow_word(q, SHADOW_LIVE);
	if (atomic_load_explicit(&s->word, memory_order_acquire) != live ||
	    !atomic_compare_exchange_strong_explicit(&s->word, &live, shadow_word(q, SHADOW_COLLECTING),
						     memory_order_acquire, memory_order_relaxed))
		return false;
	struct shmp__rec *r = pool_rec(p, q);
	uint32_t flags = s->flags;
	uint64_t notify = s->notify_off;
	struct shmp_task_error e = { .error = error, .code = code, .index = s->first, .exit_status = -1,
				     .skipped = s->count ? s->count - 1 : 0 };
	finish_claimed(p, q, s, &e, true);
	if (flags & REC_F_CALLER)
		shmp__wake_caller(p, r, flags, notify);
	return true;
}

/* Every worker is gone for good (terminated or broken): fail what is still
 * out, from the shadows alone — whatever the shared records say. */
void shmp__tasks_fail_private(struct shmp_pool *p, int error, int code)
{
	uint64_t end = atomic_load_explicit(&p->tail, memory_order_acquire);
	uint64_t start = end > p->capacity ? end - p->capacity : 0;
	for (uint64_t q = start; q < end; q++)
		shmp__task_fail_shadow(p, q, error, code);
}

/* No task finished for a while though some are out: look at the records of
 * the live ones. One collected by nobody is collected; one whose record
 * no longer says what we published (rewritten by someone) fails with
 * -SHMP_ECORRUPT; a queued one behind the workers' claim hint (moved on by
 * someone) brings the hint back. A forged "running" record still waits
 * (for its worker, or for terminate). */
void shmp__tasks_check_stalled(struct shmp_pool *p)
{
	uint64_t end = atomic_load_explicit(&p->tail, memory_order_acquire);
	uint64_t start = end > p->capacity ? end - p->capacity : 0;
	uint64_t lowest = UINT64_MAX;
	for (uint64_t q = start; q < end; q++) {
		struct shmp__shadow *s = pool_shadow(p, q);
		if (atomic_load_explicit(&s->word, memory_order_acquire) != shadow_word(q, SHADOW_LIVE))
			continue;
		uint64_t w = atomic_load_explicit(&pool_rec(p, q)->word, memory_order_acquire);
		bool ours = rec_seq(w) == (q & REC_SEQ_MASK);
		unsigned st = rec_state(w);
		if (ours && st == REC_QUEUED) {
			if (q < lowest)
				lowest = q;
		} else if (ours && st == REC_DONE) {
			if (!(s->flags & REC_F_CALLER))
				shmp__task_collect(p, q, true);
		} else if (!(ours && (st == REC_RUNNING || st == REC_FREE))) {
			/* (FREE and ours: being published right now.) */
			shmp__task_fail_shadow(p, q, -SHMP_ECORRUPT, 0);
		}
	}
	if (lowest == UINT64_MAX)
		return;
	uint64_t h = atomic_load_explicit(&p->sh->head, memory_order_relaxed);
	while (h > lowest && !atomic_compare_exchange_weak_explicit(&p->sh->head, &h, lowest, memory_order_release,
								     memory_order_relaxed))
		;
	if (h > lowest) {
		atomic_fetch_add_explicit(&p->sh->task_futex, 1, memory_order_relaxed);
		shmp__futex_wake(&p->sh->task_futex, INT32_MAX);
	}
}
