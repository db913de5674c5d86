/* private: the Pool's data arena — where arguments and results that are
 * not already in shared memory are copied for the workers.
 *
 * One block of the pool's own data segment, carved by an allocator whose
 * state lives only in the pool's process: every block is taken and given
 * back there (submitters take, collectors give back), so no offset read
 * from shared memory is ever freed, and a worker or a forger writing the
 * segment cannot corrupt it. First fit over a sorted list of free extents,
 * coalesced on free: a request no larger than the arena always fits once
 * the blocks in its way are given back, which is what lets a map over any
 * amount of memory stream through a fixed segment (wait for room, never
 * fail half way). Lowest address first keeps reusing the pages already
 * touched.
 *
 * Crash safety: nothing here is shared; a worker killed mid-task leaves its
 * block to be freed when its task is failed and collected. */
#include "pool_internal.h"

#include <stdlib.h>

#define GRAIN 64u

int shmp__arena_init(struct shmp__arena *a, uint64_t base, uint64_t size)
{
	memset(a, 0, sizeof *a);
	pthread_mutex_init(&a->mu, NULL);
	a->base = base;
	a->size = size & ~(uint64_t)(GRAIN - 1);
	a->cap = 16;
	if (!(a->free = malloc(a->cap * sizeof *a->free)))
		return -ENOMEM;
	a->free[0] = (struct shmp__ext){ base, a->size };
	a->n = a->size ? 1 : 0;
	return 0;
}

void shmp__arena_fini(struct shmp__arena *a)
{
	if (!a->cap)
		return;
	free(a->free);
	a->free = NULL;
	a->cap = a->n = 0;
	pthread_mutex_destroy(&a->mu);
}

static uint64_t round_len(uint64_t len)
{
	return (len + GRAIN - 1) & ~(uint64_t)(GRAIN - 1);
}

int shmp__arena_alloc(struct shmp__arena *a, uint64_t len, bool task, uint64_t *off)
{
	if (len == 0)
		len = 1;
	if (len > a->size)
		return -SHMP_ESEGFULL;
	len = round_len(len);
	pthread_mutex_lock(&a->mu);
	for (unsigned i = 0; i < a->n; i++) {
		struct shmp__ext *e = &a->free[i];
		if (e->len < len)
			continue;
		*off = e->off;
		e->off += len;
		e->len -= len;
		if (!e->len) {
			memmove(e, e + 1, (a->n - i - 1) * sizeof *e);
			a->n--;
		}
		a->used += len;
		if (task)
			a->task_bytes += len;
		pthread_mutex_unlock(&a->mu);
		return 0;
	}
	/* Decided under the lock: no collector can free room between the
	 * look and the answer. */
	int r = a->task_bytes ? -EAGAIN : -SHMP_ESEGFULL;
	pthread_mutex_unlock(&a->mu);
	return r;
}

void shmp__arena_free(struct shmp__arena *a, uint64_t off, uint64_t len, bool task)
{
	if (!len)
		return;
	len = round_len(len);
	pthread_mutex_lock(&a->mu);
	/* The first extent after the block. */
	unsigned lo = 0, hi = a->n;
	while (lo < hi) {
		unsigned mid = (lo + hi) / 2;
		if (a->free[mid].off < off)
			lo = mid + 1;
		else
			hi = mid;
	}
	bool prev = lo > 0 && a->free[lo - 1].off + a->free[lo - 1].len == off;
	bool next = lo < a->n && off + len == a->free[lo].off;
	if (prev && next) {
		a->free[lo - 1].len += len + a->free[lo].len;
		memmove(&a->free[lo], &a->free[lo + 1], (a->n - lo - 1) * sizeof *a->free);
		a->n--;
	} else if (prev) {
		a->free[lo - 1].len += len;
	} else if (next) {
		a->free[lo].off = off;
		a->free[lo].len += len;
	} else {
		if (a->n == a->cap) {
			struct shmp__ext *f = realloc(a->free, 2 * a->cap * sizeof *f);
			if (!f) {
				/* Lose the block rather than the list. */
				pthread_mutex_unlock(&a->mu);
				return;
			}
			a->free = f;
			a->cap *= 2;
		}
		memmove(&a->free[lo + 1], &a->free[lo], (a->n - lo) * sizeof *a->free);
		a->free[lo] = (struct shmp__ext){ off, len };
		a->n++;
	}
	a->used -= len;
	if (task)
		a->task_bytes -= len;
	pthread_mutex_unlock(&a->mu);
	atomic_fetch_add_explicit(&a->futex, 1, memory_order_seq_cst);
	if (atomic_load_explicit(&a->waiters, memory_order_seq_cst))
		shmp__futex_wake(&a->futex, INT32_MAX);
}

uint64_t shmp__arena_used(struct shmp__arena *a)
{
	pthread_mutex_lock(&a->mu);
	uint64_t u = a->used;
	pthread_mutex_unlock(&a->mu);
	return u;
}

int shmp__arena_alloc_wait(struct shmp_pool *p, uint64_t len, bool task, const struct shmp__deadline *d,
			   uint64_t *off)
{
	struct shmp__arena *a = &p->arena;
	bool on_sup = shmp__pool_on_supervisor(p);
	for (;;) {
		uint32_t f = atomic_load_explicit(&a->futex, memory_order_seq_cst);
		int r = shmp__arena_alloc(a, len, task, off);
		if (r != -EAGAIN)
			return r;
		if (shmp__deadline_passed(d))
			return -ETIMEDOUT;
		int e = shmp__pool_wait_error(p);
		if (e)
			return e;
		if (on_sup) {
			/* Nobody else collects the tasks whose blocks we wait
			 * for: collect while waiting. */
			shmp__tt_collect_one(&p->tt);
			continue;
		}
		atomic_fetch_add_explicit(&a->waiters, 1, memory_order_seq_cst);
		struct timespec until = shmp__deadline_cap(d, 20 * 1000000L);
		int w = shmp__futex_wait(&a->futex, f, &until);
		atomic_fetch_sub_explicit(&a->waiters, 1, memory_order_relaxed);
		if (shmp__interrupted(w))
			return -EINTR;
	}
}
