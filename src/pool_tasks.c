/* private: the Pool's task table — reserving and publishing records in the
 * parent, collecting finished ones, failing lost ones. See pool_internal.h
 * for the record protocol. */
#include "pool_internal.h"

#include <stdlib.h>
#include <sys/eventfd.h>

uint64_t shmp__fn_offset(shmp_task_fn fn)
{
	/* A distance between two code addresses, not a pointer: it means the
	 * same thing in every process forked from this one. */
	return (uint64_t)((uintptr_t)fn - (uintptr_t)&shmp_pool_create);
}

void shmp__notify_supervisor(struct shmp__pool *p)
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

void shmp__tasks_wake(struct shmp__pool *p)
{
	shmp__wake_workers(p->sh);
}

/* A task the caller collects is finished (or failed): wake the caller. */
void shmp__wake_caller(struct shmp__pool *p, struct shmp__rec *r, uint32_t flags)
{
	if (flags & REC_F_NOTIFY) {
		uint64_t off = r->notify_off;
		if (off > p->seg->size || sizeof(struct shmp__notify) > p->seg->size - off)
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

static void wake_free_waiters(struct shmp__pool *p)
{
	struct shmp__pool_sh *sh = p->sh;
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&sh->free_waiters, memory_order_relaxed)) {
		atomic_fetch_add_explicit(&sh->free_futex, 1, memory_order_relaxed);
		shmp__futex_wake(&sh->free_futex, INT32_MAX);
	}
}

static int stopped_error(struct shmp__pool *p)
{
	switch (atomic_load_explicit(&p->sh->state, memory_order_acquire)) {
	case SHMP_POOL_RUNNING: return 0;
	case SHMP_POOL_BROKEN: return p->sh->zygote_pid == -1 ? -SHMP_EBROKEN : -SHMP_EINIT;
	default: return -SHMP_ECLOSED;
	}
}

/* The next record to fill (caller holds submit_mu). Waits while the table
 * is full: backpressure. On the supervisor thread (a callback submitting),
 * nobody else would free records, so it collects while it waits. */
int shmp__task_reserve(struct shmp__pool *p, const struct shmp__deadline *d, uint64_t *seq)
{
	struct shmp__pool_sh *sh = p->sh;
	uint64_t t = atomic_load_explicit(&sh->tail, memory_order_relaxed);
	struct shmp__rec *r = pool_rec(p, t);
	uint64_t want = rec_word(t, REC_FREE, 0);
	/* Records are not initialized at create (no page is touched before
	 * use): a zero word is FREE for the first lap. */
	uint64_t want0 = t < sh->capacity ? 0 : want;
	bool on_sup = p->sup_started && pthread_equal(pthread_self(), p->sup);
	for (;;) {
		int e = stopped_error(p);
		if (e && atomic_load_explicit(&sh->state, memory_order_relaxed) != SHMP_POOL_CLOSED)
			return e;
		uint64_t cur = atomic_load_explicit(&r->word, memory_order_acquire);
		if (cur == want || cur == want0)
			break;
		if (on_sup) {
			uint64_t s;
			size_t len;
			if (shmp_ring_get(p->done, &s, sizeof s, &len, 0.001) == 0 && len == sizeof s)
				shmp__task_collect(p, s, true);
			continue;
		}
		uint32_t f = atomic_load_explicit(&sh->free_futex, memory_order_relaxed);
		atomic_fetch_add_explicit(&sh->free_waiters, 1, memory_order_seq_cst);
		uint64_t cur2 = atomic_load_explicit(&r->word, memory_order_seq_cst);
		if (cur2 != want && cur2 != want0) {
			if (shmp__deadline_passed(d)) {
				atomic_fetch_sub_explicit(&sh->free_waiters, 1, memory_order_relaxed);
				return -ETIMEDOUT;
			}
			struct timespec until = shmp__deadline_cap(d, 50 * 1000000L);
			shmp__futex_wait(&sh->free_futex, f, &until);
		}
		atomic_fetch_sub_explicit(&sh->free_waiters, 1, memory_order_relaxed);
	}
	*seq = t;
	return 0;
}

void shmp__task_publish(struct shmp__pool *p, uint64_t seq, struct shmp__rec *r)
{
	r->status = r->code = r->signal = 0;
	r->exit_status = -1;
	r->worker_pid = 0;
	atomic_store_explicit(&r->wake, 0, memory_order_relaxed);
	atomic_store_explicit(&r->word, rec_word(seq, REC_QUEUED, 0), memory_order_release);
	atomic_store_explicit(&p->sh->tail, seq + 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&p->sh->submitted, 1, memory_order_relaxed);
}

static void *desc_ptr(struct shmp__pool *p, struct shmp__rec *r, const struct shmp__desc *dsc, size_t len)
{
	switch (dsc->kind) {
	case DESC_INLINE:
		return dsc->a <= p->sh->inline_size && len <= p->sh->inline_size - dsc->a
			       ? rec_payload(r) + dsc->a : NULL;
	case DESC_SEG:
		return dsc->a <= p->seg->size && len <= p->seg->size - dsc->a ? p->seg->base + dsc->a : NULL;
	default:
		return NULL;
	}
}

static void deliver(struct shmp__pool *p, struct shmp_async *c, struct shmp__rec *r)
{
	struct shmp_task_error e = { .error = r->status, .code = r->code, .signal = r->signal,
				     .exit_status = r->exit_status, .index = r->fail_index,
				     .worker_pid = r->worker_pid };
	if (c->kind == CALL_IMAP) {
		struct shmp_imap *it = c->it;
		uint64_t chunk = c->chunksize ? r->first / c->chunksize : 0;
		struct shmp__imap_slot *s = &it->slots[chunk % it->window];
		if (s->chunk == chunk && atomic_load_explicit(&s->state, memory_order_relaxed) == SLOT_BUSY) {
			s->err = r->status ? e : (struct shmp_task_error){ 0 };
			atomic_store_explicit(&s->state, SLOT_READY, memory_order_release);
		}
		return;
	}
	if (r->status) {
		shmp__call_note_error(c, &e);
		return;
	}
	if (!c->out || (r->out.kind != DESC_INLINE && r->out.kind != DESC_SEG))
		return; /* written in place */
	size_t bytes = (size_t)r->count * c->out_size;
	void *src = desc_ptr(p, r, &r->out, bytes);
	if (src && r->first <= c->n && r->count <= c->n - r->first)
		memcpy(c->out + r->first * c->out_size, src, bytes);
	else
		shmp__call_note_error(c, &(struct shmp_task_error){ .error = -SHMP_ECORRUPT, .index = r->first });
}

/* Deliver a finished task and free its record. False if someone else
 * collects it (already collected, or the caller of apply does). */
bool shmp__task_collect(struct shmp__pool *p, uint64_t seq, bool supervisor)
{
	struct shmp__rec *r = pool_rec(p, seq);
	uint64_t w = atomic_load_explicit(&r->word, memory_order_acquire);
	if (rec_state(w) != REC_DONE || rec_seq(w) != (seq & REC_SEQ_MASK))
		return false;
	if (supervisor && (r->flags & REC_F_CALLER)) {
		/* Only for a caller that left (an imap destroyed early). */
		struct shmp_async *c = shmp__call_lookup(p, r->call, r->call_gen);
		if (c && !atomic_load_explicit(&c->abandoned, memory_order_acquire))
			return false;
	}
	if (!atomic_compare_exchange_strong_explicit(&r->word, &w, rec_word(seq, REC_COLLECTING, 0),
						     memory_order_acquire, memory_order_relaxed))
		return false;
	struct shmp_async *c = shmp__call_lookup(p, r->call, r->call_gen);
	if (c)
		deliver(p, c, r);
	if (r->block) {
		shmp_segment_free(p->seg, r->block);
		r->block = 0;
	}
	atomic_fetch_add_explicit(&p->sh->completed, 1, memory_order_relaxed);
	if (r->status)
		atomic_fetch_add_explicit(&p->sh->failed, 1, memory_order_relaxed);
	atomic_store_explicit(&r->word, rec_word(seq + p->sh->capacity, REC_FREE, 0), memory_order_release);
	wake_free_waiters(p);
	if (c)
		shmp__call_task_done(c, supervisor);
	return true;
}

/* A task that will never run or finish (its worker died, the pool was
 * terminated): record why and finish it. */
void shmp__task_fail(struct shmp__pool *p, struct shmp__rec *r, uint64_t word, int error, int sig,
		     int exit_status)
{
	uint64_t seq = rec_seq(word);
	r->status = error;
	r->code = 0;
	r->signal = sig;
	r->exit_status = exit_status;
	r->fail_index = r->first;
	if (rec_state(word) == REC_RUNNING)
		r->worker_pid = atomic_load_explicit(&p->wk[rec_worker(word)].pid, memory_order_relaxed);
	if (!atomic_compare_exchange_strong_explicit(&r->word, &word, rec_word(seq, REC_DONE, 0),
						     memory_order_release, memory_order_relaxed))
		return; /* it finished after all */
	if (r->flags & REC_F_CALLER)
		shmp__wake_caller(p, r, r->flags);
	if (!shmp__task_collect(p, seq, true) && (r->flags & REC_F_NOTIFY)) {
		/* The caller may be gone (an abandoned imap): the supervisor's
		 * sweep collects it then. */
	}
}
