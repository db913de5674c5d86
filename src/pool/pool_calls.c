/* private: the Pool's calls (AsyncResult) — how every call starts (its
 * checks, in one place), a process-local table that records name by
 * (slot, generation), completion and callbacks.
 *
 * Crash safety: nothing here is shared; a record naming a call that is
 * gone (or a forged one) finds no call (the generation differs) and is
 * collected without delivering anything. */
#include "pool_internal.h"

#include <stdlib.h>

static _Atomic uint32_t next_gen = 1;

/* Freed handles kept per pool, at most this many. */
#define SPARE_MAX 1024u

static struct shmp_async *call_new(struct shmp_pool *p, int kind)
{
	struct shmp_async *c = NULL;
	pthread_mutex_lock(&p->calls_mu);
	if (p->spare) {
		c = p->spare;
		p->spare = c->next_finish;
		p->n_spare--;
	}
	pthread_mutex_unlock(&p->calls_mu);
	if (c)
		memset(c, 0, sizeof *c);
	else if (!(c = calloc(1, sizeof *c)))
		return NULL;
	c->pool = p;
	c->pid = p->pid;
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

/* The checks every call makes before anything runs. */
static int call_check(struct shmp_pool *p, shmp_task_fn fn, size_t in_size, size_t out_size)
{
	if (!fn || in_size > UINT32_MAX || out_size > UINT32_MAX)
		return -EINVAL;
	if (in_size + out_size > p->max_task_bytes)
		return -EMSGSIZE;
	/* A function a worker would refuse (or, in a ThreadPool, jump into):
	 * say so here, where the caller can see why. */
	if (!shmp__code_address((uintptr_t)fn))
		return -SHMP_EBADFN;
	return shmp__pool_error(p, NULL);
}

struct shmp_async *shmp__call_begin(struct shmp_pool *p, int kind, const struct shmp_call_opts *opts,
				    shmp_task_fn fn, const void *in, shmp_input_fn input, size_t in_size, size_t n,
				    void *out, size_t out_size, bool out_needed, struct shmp__place *pl,
				    struct shmp_call_opts *o_out)
{
	bool imap = kind == CALL_IMAP;
	struct shmp_call_opts o;
	int r = shmp__pool_check(p);
	if (r == 0)
		r = SHMP__OPTS(o, opts);
	/* Python's imap takes no callbacks: refuse them rather than ignore
	 * them silently. */
	if (r == 0 && imap && (o.callback || o.error_callback))
		r = -EINVAL;
	if (r == 0 && ((!in && !input && in_size && n) || (in && input) || (out_needed && !out && out_size && n)))
		r = -EINVAL;
	if (r == 0 && in && in_size && n > SIZE_MAX / in_size)
		r = -EINVAL;
	/* (imap's n may be no length at all: an input function's "until it
	 * says the end".) */
	if (r == 0 && !imap && (n > SIZE_MAX / 2 || (n && out_size && n > SIZE_MAX / out_size)))
		r = -EINVAL;
	if (r == 0)
		r = call_check(p, fn, in_size, out_size);
	if (r < 0) {
		errno = -r;
		return NULL;
	}
	struct shmp_async *c = call_new(p, kind);
	if (!c)
		return NULL;
	c->fn = fn;
	c->in = in;
	c->in_size = in_size;
	c->n = n;
	c->out = out;
	c->out_size = out_size;
	c->chunksize = o.chunksize;
	c->callback = o.callback;
	c->error_callback = o.error_callback;
	c->cb_arg = o.cb_arg;
	/* apply copies its one item; the others look for their arrays in
	 * mappings the workers have too. */
	shmp__place_call(p, c, kind != CALL_APPLY, pl);
	/* One item's copies must fit the arena (imap's room is counted per
	 * window: shmp__imap_sizes). */
	if (!imap && n &&
	    (r = shmp__check_item_room(p, pl->in == PLACE_COPY ? in_size : 0, pl->out == PLACE_COPY ? out_size : 0)) <
		    0) {
		shmp__call_drop(c);
		errno = -r;
		return NULL;
	}
	if (o_out)
		*o_out = o;
	return c;
}

void shmp__call_drop(struct shmp_async *c)
{
	shmp__call_unref(c); /* the pool's reference */
	shmp__call_unref(c); /* the caller's: frees it */
}

void shmp__call_abandon(struct shmp_async *c)
{
	atomic_fetch_add(&c->pool->abandoned, 1);
	atomic_store(&c->abandoned, true);
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

/* Under calls_mu: take c out of the table, keep it as a spare if there is
 * room (true), else its memory is the caller's to free after unlocking. */
static bool call_release_locked(struct shmp_pool *p, struct shmp_async *c)
{
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
	bool keep = !c->it && p->n_spare < SPARE_MAX;
	if (keep) {
		/* What it owns goes; the handle itself serves the next call. */
		if (c->own_out)
			free(c->out);
		if (c->own_in)
			free((void *)c->in);
		c->next_finish = p->spare;
		p->spare = c;
		p->n_spare++;
	}
	return keep;
}

static void call_free(struct shmp_async *c)
{
	struct shmp_pool *p = c->pool;
	pthread_mutex_lock(&p->calls_mu);
	bool keep = call_release_locked(p, c);
	pthread_mutex_unlock(&p->calls_mu);
	if (!keep)
		shmp__call_free_memory(c, true);
}

void shmp__call_destroy(struct shmp_async *c)
{
	struct shmp_pool *p = c->pool;
	if (!p) {
		shmp__call_unref(c); /* the pool went first */
		return;
	}
	/* One lock for both: the caller's buffer is forgotten (a late finish
	 * must not write it) and, if ours was the last reference, the handle
	 * released. */
	pthread_mutex_lock(&p->calls_mu);
	__atomic_store_n(&c->user_out, NULL, __ATOMIC_RELAXED); /* finish looks without the lock */
	bool last = atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1;
	bool keep = last && call_release_locked(p, c);
	pthread_mutex_unlock(&p->calls_mu);
	if (last && !keep)
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
				shmp__notify_put(p, it->notify_off);
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
				if (c->it->notify_off)
					shmp__notify_put(p, c->it->notify_off);
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
		shmp__count_add(&p->n_cb_errors, &p->sh->cb_errors, 1);
	/* A first look without the lock (destroy may forget the buffer
	 * meanwhile: hence atomic), the copy under it. */
	if (__atomic_load_n(&c->user_out, __ATOMIC_RELAXED) && !c->failed) {
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
	__atomic_store_n(&p->finish_q, c, __ATOMIC_RELAXED); /* the supervisor peeks without the lock */
	pthread_mutex_unlock(&p->calls_mu);
	shmp__tt_kick(&p->tt);
}

struct shmp__notify *shmp__notify_get(struct shmp_pool *p, uint64_t *off)
{
	pthread_mutex_lock(&p->notify_mu);
	bool kept = p->n_notify_free > 0;
	if (kept)
		*off = p->notify_free[--p->n_notify_free];
	pthread_mutex_unlock(&p->notify_mu);
	if (kept)
		return (struct shmp__notify *)(p->seg->base + *off);
	return shmp__alloc_ptr(p->seg, sizeof(struct shmp__notify), 64, off);
}

void shmp__notify_put(struct shmp_pool *p, uint64_t off)
{
	pthread_mutex_lock(&p->notify_mu);
	if (p->n_notify_free == p->cap_notify_free) {
		uint32_t cap = p->cap_notify_free ? 2 * p->cap_notify_free : 16;
		uint64_t *a = realloc(p->notify_free, cap * sizeof *a);
		if (a) {
			p->notify_free = a;
			p->cap_notify_free = cap;
		}
	}
	/* Out of memory: the word stays allocated until the segment goes
	 * (a few bytes), never freed under a late waker. */
	if (p->n_notify_free < p->cap_notify_free)
		p->notify_free[p->n_notify_free++] = off;
	pthread_mutex_unlock(&p->notify_mu);
}
