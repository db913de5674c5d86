/* private: the Pool's calls (AsyncResult) — a process-local table that
 * records name by (slot, generation), completion and callbacks. */
#include "pool_internal.h"

#include <stdlib.h>

static _Atomic uint32_t next_gen = 1;

struct shmp_async *shmp__call_new(struct shmp__pool *p, int kind)
{
	struct shmp_async *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->pool = p;
	c->kind = kind;
	c->gen = atomic_fetch_add_explicit(&next_gen, 1, memory_order_relaxed);
	atomic_init(&c->refs, 2);    /* the caller's and the pool's (until finished) */
	atomic_init(&c->pending, 1); /* the submitter's guard */
	pthread_mutex_lock(&p->calls_mu);
	uint32_t slot;
	if (p->n_free) {
		slot = p->free_slots[--p->n_free];
	} else {
		slot = p->n_slots;
		uint32_t pg = slot / SHMP__CALLS_PER_PAGE;
		if (pg >= sizeof p->pages / sizeof p->pages[0]) {
			pthread_mutex_unlock(&p->calls_mu);
			free(c);
			errno = EAGAIN; /* a million calls alive at once */
			return NULL;
		}
		if (!p->pages[pg] && !(p->pages[pg] = calloc(SHMP__CALLS_PER_PAGE, sizeof(void *)))) {
			pthread_mutex_unlock(&p->calls_mu);
			free(c);
			errno = ENOMEM;
			return NULL;
		}
		p->n_slots++;
	}
	c->slot = slot;
	/* Thread workers read the table without the lock: publish the call
	 * whole. Pages never move. */
	__atomic_store_n(&p->pages[slot / SHMP__CALLS_PER_PAGE][slot % SHMP__CALLS_PER_PAGE], c,
			 __ATOMIC_RELEASE);
	pthread_mutex_unlock(&p->calls_mu);
	return c;
}

struct shmp_async *shmp__call_lookup(struct shmp__pool *p, uint32_t slot, uint32_t gen)
{
	uint32_t pg = slot / SHMP__CALLS_PER_PAGE;
	if (pg >= sizeof p->pages / sizeof p->pages[0])
		return NULL;
	struct shmp_async **page = __atomic_load_n(&p->pages[pg], __ATOMIC_ACQUIRE);
	if (!page)
		return NULL;
	struct shmp_async *c = __atomic_load_n(&page[slot % SHMP__CALLS_PER_PAGE], __ATOMIC_ACQUIRE);
	return c && c->gen == gen ? c : NULL;
}

static void call_free(struct shmp_async *c)
{
	struct shmp__pool *p = c->pool;
	pthread_mutex_lock(&p->calls_mu);
	__atomic_store_n(&p->pages[c->slot / SHMP__CALLS_PER_PAGE][c->slot % SHMP__CALLS_PER_PAGE], NULL,
			 __ATOMIC_RELEASE);
	if (p->n_free == p->cap_free) {
		uint32_t nc = p->cap_free ? p->cap_free * 2 : 64;
		uint32_t *f = realloc(p->free_slots, nc * sizeof *f);
		if (f) {
			p->free_slots = f;
			p->cap_free = nc;
		}
	}
	if (p->n_free < p->cap_free)
		p->free_slots[p->n_free++] = c->slot;
	pthread_mutex_unlock(&p->calls_mu);
	shmp__call_free_memory(c);
}

void shmp__call_free_memory(struct shmp_async *c)
{
	if (c->it) {
		struct shmp_imap *it = c->it;
		for (unsigned i = 0; i < it->window; i++)
			if (it->slots[i].buf_off)
				shmp_segment_free(c->pool->seg, it->slots[i].buf_off);
		if (it->notify_off)
			shmp_segment_free(c->pool->seg, it->notify_off);
		free(it->slots);
		free(it);
	}
	if (c->own_out)
		free(c->out);
	if (c->own_in)
		free((void *)c->in);
	free(c);
}

void shmp__call_unref(struct shmp_async *c)
{
	if (c && atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
		call_free(c);
}

void shmp__call_note_error(struct shmp_async *c, const struct shmp_task_error *e)
{
	if (!c->failed || e->index < c->err.index) {
		c->err = *e;
		c->failed = true;
	}
}

/* Every task collected and nothing more to submit: callbacks (Python runs
 * them before the result is ready), then ready, then the pool's reference
 * goes. */
void shmp__call_finish(struct shmp_async *c)
{
	struct shmp__pool *p = c->pool;
	int r = 0;
	if (c->failed && c->error_callback)
		r = c->error_callback(c, &c->err, c->cb_arg);
	else if (!c->failed && c->callback)
		r = c->callback(c, c->out, c->kind == CALL_APPLY ? 1 : c->n, c->cb_arg);
	if (r)
		atomic_fetch_add_explicit(&p->sh->cb_errors, 1, memory_order_relaxed);
	if (c->user_out && !c->failed) {
		pthread_mutex_lock(&p->calls_mu);
		if (c->user_out)
			memcpy(c->user_out, c->out, c->out_size);
		pthread_mutex_unlock(&p->calls_mu);
	}
	atomic_store_explicit(&c->done, 1, memory_order_seq_cst);
	if (atomic_load_explicit(&c->waiters, memory_order_seq_cst))
		shmp__futex_wake(&c->done, INT32_MAX);
	if (atomic_load_explicit(&c->abandoned, memory_order_relaxed))
		atomic_fetch_sub_explicit(&p->abandoned, 1, memory_order_relaxed);
	shmp__call_unref(c);
}

void shmp__call_task_done(struct shmp_async *c, bool on_supervisor)
{
	if (atomic_fetch_sub_explicit(&c->pending, 1, memory_order_acq_rel) != 1)
		return;
	struct shmp__pool *p = c->pool;
	if (on_supervisor || (!c->callback && !c->error_callback)) {
		shmp__call_finish(c);
		return;
	}
	/* Callbacks run on the supervisor thread: hand the call over (unless
	 * it has already stopped; then nobody else would run them). */
	pthread_mutex_lock(&p->calls_mu);
	if (atomic_load_explicit(&p->sup_done, memory_order_relaxed)) {
		pthread_mutex_unlock(&p->calls_mu);
		shmp__call_finish(c);
		return;
	}
	c->next_finish = p->finish_q;
	p->finish_q = c;
	pthread_mutex_unlock(&p->calls_mu);
	uint64_t one = 1;
	ssize_t w = write(p->efd, &one, sizeof one);
	(void)w;
}
