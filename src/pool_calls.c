/* private: the Pool's calls (AsyncResult) — a process-local table that
 * records name by (slot, generation), completion and callbacks. */
#include "pool_internal.h"

#include <stdlib.h>

static _Atomic uint32_t next_gen = 1;

struct shmp_async *shmp__call_new(struct shmp_pool *p, int kind)
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

struct shmp_async *shmp__call_lookup(struct shmp_pool *p, uint32_t slot, uint32_t gen)
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
	struct shmp_pool *p = c->pool;
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
	shmp__call_free_memory(c, true);
}

/* pool_alive: give back what the call holds in the pool's memory too (not
 * when the pool is being freed, or in a forked child's copy). */
void shmp__call_free_memory(struct shmp_async *c, bool pool_alive)
{
	if (c->it) {
		struct shmp_imap *it = c->it;
		if (pool_alive) {
			struct shmp_pool *p = c->pool;
			for (unsigned i = 0; i < it->window; i++)
				if (it->slots[i].buf_len)
					shmp__arena_free(&p->arena, it->slots[i].buf_off, it->slots[i].buf_len, false);
			if (it->notify_off)
				shmp_segment_free(p->seg, it->notify_off);
		}
		free(it->slots);
		free(it->gen);
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
	if (!c || atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1)
		return;
	if (c->pool)
		call_free(c);
	else
		shmp__call_free_memory(c, false); /* the pool went first */
}

/* The pool is being freed (joined: every call with tasks has finished).
 * Handles the user still holds outlive it, detached: get/wait/results work
 * on what they have, destroy frees them. The rest go now. */
void shmp__calls_detach(struct shmp_pool *p)
{
	for (unsigned i = 0; i < sizeof p->pages / sizeof p->pages[0]; i++) {
		if (!p->pages[i])
			continue;
		for (unsigned k = 0; k < SHMP__CALLS_PER_PAGE; k++) {
			struct shmp_async *c = p->pages[i][k];
			if (!c)
				continue;
			p->pages[i][k] = NULL;
			/* Its imap memory (arena, notify word) goes with the pool. */
			if (c->it) {
				for (unsigned j = 0; j < c->it->window; j++)
					c->it->slots[j].buf_len = 0;
				c->it->notify_off = 0;
				c->it->notify = NULL;
			}
			c->pool = NULL;
			if (!atomic_load_explicit(&c->done, memory_order_acquire)) {
				/* Never finished (an imap still open): it ends closed. */
				if (!c->failed) {
					c->failed = true;
					c->err = (struct shmp_task_error){ .error = -SHMP_ECLOSED, .exit_status = -1 };
				}
				atomic_store_explicit(&c->done, 1, memory_order_release);
				shmp__call_unref(c); /* the pool's reference */
			}
			/* A finished call here is one the user still holds. */
		}
		free(p->pages[i]);
		p->pages[i] = NULL;
	}
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
	struct shmp_pool *p = c->pool;
	int r = 0;
	if (c->failed && c->error_callback)
		r = c->error_callback(c, &c->err, c->cb_arg);
	else if (!c->failed && c->callback)
		r = c->callback(c, c->out, c->kind == CALL_APPLY ? 1 : c->n, c->cb_arg);
	if (r)
		shmp__count_add(p, &p->n_cb_errors, &p->sh->cb_errors, 1);
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
	struct shmp_pool *p = c->pool;
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
