/* private: imap and imap_unordered. The consumer's own calls to next()
 * submit chunks, at most `window` in flight, so input is taken only as
 * results are consumed (backpressure: memory stays bounded for any input,
 * endless ones included). Results land in per-chunk buffers in the pool's
 * data arena, written by the workers in place.
 *
 * What next() reports, in order (imap) or as chunks finish (unordered):
 * each item's result (1); for a chunk with a failing item, the items
 * before it, then the failure at its index, then every later item of the
 * chunk as -SHMP_ESKIPPED at its own index; after the last chunk, an input
 * function's error (if it failed: the items it had produced for the chunk
 * it was filling are dropped, as CPython's imap drops an unfinished
 * chunk), then 0 for the end. */
#include "pool_internal.h"
#include "pool_defaults.h"

#include <stdlib.h>

static shmp_imap_t *imap_start(shmp_pool_t *p, shmp_task_fn fn, const void *in, size_t in_size, size_t n,
			       size_t out_size, shmp_input_fn input, void *input_ctx,
			       const struct shmp_call_opts *opts, bool ordered)
{
	struct shmp_call_opts o;
	struct shmp__place pl;
	struct shmp_async *c = shmp__call_begin(p, CALL_IMAP, opts, fn, in, input, in_size, n, NULL, out_size, false,
						&pl, &o);
	if (!c)
		return NULL;
	/* Input from a function is copied (it writes into our buffer); from
	 * an array, unless the workers can read it where it is. */
	bool copy_in = in_size && (input || pl.in == PLACE_COPY);
	size_t cs = c->chunksize ? c->chunksize : 1; /* Python's imap default */
	unsigned window = o.max_inflight ? o.max_inflight : shmp__default_inflight((unsigned)p->nworkers);
	if (window > 4096)
		window = 4096;
	struct shmp_imap *it = NULL;
	struct shmp__imap_slot *slots = NULL;
	int r;
	if ((r = shmp__imap_sizes(p, in_size, out_size, copy_in, &cs, &window)) == 0 &&
	    (!(it = calloc(1, sizeof *it)) || !(slots = calloc(window, sizeof *slots))))
		r = -ENOMEM;
	if (r < 0) {
		free(it);
		shmp__call_drop(c);
		errno = -r;
		return NULL;
	}
	*it = (struct shmp_imap){ .call = c, .ordered = ordered, .window = window, .slots = slots,
				  .input = input, .input_ctx = input_ctx };
	c->it = it;
	c->chunksize = cs;
	if (!(it->notify = shmp__notify_get(p, &it->notify_off)))
		r = -errno;
	struct shmp__deadline d;
	shmp__deadline_forever(&d);
	for (unsigned i = 0; r == 0 && i < window && out_size; i++) {
		uint64_t len = (uint64_t)cs * out_size;
		if ((r = shmp__arena_alloc_wait(p, len, false, &d, &slots[i].buf_off)) == 0) {
			slots[i].buf_len = len;
			slots[i].buf = p->dseg->base + slots[i].buf_off;
		}
	}
	if (r == 0 && input && in_size && !(it->gen = malloc(cs * in_size)))
		r = -ENOMEM;
	if (r < 0) {
		shmp__call_drop(c); /* frees the buffers */
		errno = -r;
		return NULL;
	}
	return it;
}

shmp_imap_t *shmp_pool_imap(shmp_pool_t *p, shmp_task_fn fn, const void *in, size_t in_size, size_t n,
			    size_t out_size, shmp_input_fn input, void *input_ctx, const struct shmp_call_opts *opts)
{
	return imap_start(p, fn, in, in_size, n, out_size, input, input_ctx, opts, true);
}

shmp_imap_t *shmp_pool_imap_unordered(shmp_pool_t *p, shmp_task_fn fn, const void *in, size_t in_size,
				      size_t n, size_t out_size, shmp_input_fn input, void *input_ctx,
				      const struct shmp_call_opts *opts)
{
	return imap_start(p, fn, in, in_size, n, out_size, input, input_ctx, opts, false);
}

static void end_input(struct shmp_imap *it)
{
	if (!it->input_done) {
		it->input_done = true;
		shmp__call_task_done(it->call, false); /* drop the submit guard */
	}
}

/* Read the next chunk's items from the input function into it->gen (what
 * was read before a failed submit is kept). The number of items, 0 at the
 * end; on the function's error the chunk is dropped and the input ends. */
static size_t read_input(struct shmp_imap *it, uint64_t first, size_t count)
{
	struct shmp_async *c = it->call;
	size_t k = it->gen_count;
	for (; k < count; k++) {
		int r = it->input(it->input_ctx, it->gen ? it->gen + k * c->in_size : NULL, first + k);
		if (r < 0) {
			it->input_error = r;
			it->input_error_index = first + k;
			it->gen_count = 0;
			end_input(it);
			return 0;
		}
		if (r == 0) {
			c->n = first + k; /* the input's real length */
			break;
		}
	}
	it->gen_count = k;
	return k;
}

/* Submit one chunk, never waiting: the room we would wait for may be held
 * by our own finished chunks, which only our caller collects. -ETIMEDOUT
 * then means "try again later". The iterator collects its own chunks: no
 * supervisor hop. */
static int submit_chunk(struct shmp_imap *it, struct shmp__imap_slot *slot, uint64_t first, size_t count)
{
	struct shmp_async *c = it->call;
	struct shmp_pool *p = c->pool;
	struct shmp__place pl;
	shmp__place_call(p, c, true, &pl);
	struct shmp__deadline d;
	if (shmp__deadline_init(&d, 0) < 0)
		return -EINVAL;
	const char *gen = it->input ? (it->gen ? it->gen : "") : NULL;
	return shmp__task_submit(p, c, &pl, first, count, SHMP__TT_CALLER | SHMP__TT_NOTIFY, slot, gen, &d,
				 &slot->seq);
}

/* Submit chunks while a window slot is free and input remains. */
static void fill(struct shmp_imap *it)
{
	struct shmp_async *c = it->call;
	struct shmp_pool *p = c->pool;
	it->room_blocked = false;
	while (!it->input_done && it->chunks_submitted - it->chunks_taken < it->window) {
		struct shmp__imap_slot *s = &it->slots[it->chunks_submitted % it->window];
		if (atomic_load_explicit(&s->state, memory_order_acquire) != SLOT_EMPTY)
			break;
		uint64_t first = it->items_submitted;
		size_t count = c->chunksize;
		if (first >= c->n) {
			end_input(it);
			break;
		}
		if (c->n - first < count)
			count = c->n - first;
		if (it->input) {
			count = read_input(it, first, count);
			if (count == 0) {
				end_input(it);
				break;
			}
		}
		s->chunk = it->chunks_submitted;
		s->first = first;
		s->count = (uint32_t)count;
		s->taken = 0;
		atomic_store_explicit(&s->state, SLOT_BUSY, memory_order_relaxed);
		int r = submit_chunk(it, s, first, count);
		if (r == -ETIMEDOUT) {
			/* No room (arena or task table) now: try again later. */
			atomic_store_explicit(&s->state, SLOT_EMPTY, memory_order_relaxed);
			it->room_blocked = true;
			break;
		}
		it->gen_count = 0;
		if (r < 0) {
			/* Report it in this chunk's place, then stop taking input. */
			s->err = shmp__pool_task_error(p, r, first, count - 1);
			atomic_store_explicit(&s->state, SLOT_READY, memory_order_release);
			it->chunks_submitted++;
			it->items_submitted += count;
			end_input(it);
			break;
		}
		it->chunks_submitted++;
		it->items_submitted += count;
		if (it->items_submitted >= c->n)
			end_input(it);
	}
}

/* The slot to take the next result from, or NULL. */
static struct shmp__imap_slot *ready_slot(struct shmp_imap *it)
{
	if (it->ordered) {
		if (it->cursor == it->chunks_submitted)
			return NULL;
		struct shmp__imap_slot *s = &it->slots[it->cursor % it->window];
		return atomic_load_explicit(&s->state, memory_order_acquire) == SLOT_READY ? s : NULL;
	}
	for (unsigned i = 0; i < it->window; i++) {
		struct shmp__imap_slot *s = &it->slots[i];
		if (atomic_load_explicit(&s->state, memory_order_acquire) == SLOT_READY)
			return s;
	}
	return NULL;
}

/* Collect our finished chunks (we, not the supervisor, collect them):
 * true if one became ready. */
static bool collect_own(struct shmp_imap *it)
{
	struct shmp_pool *p = it->call->pool;
	bool any = false;
	for (unsigned i = 0; i < it->window; i++) {
		struct shmp__imap_slot *s = &it->slots[i];
		if (atomic_load_explicit(&s->state, memory_order_relaxed) == SLOT_BUSY &&
		    shmp__tt_collect(&p->tt, s->seq, false))
			any = true;
		if (atomic_load_explicit(&s->state, memory_order_acquire) == SLOT_READY)
			any = true; /* collected by someone else (a terminated pool) */
	}
	return any;
}

/* Is one of our chunks ready, or its task finished (to collect)? */
static bool own_done(void *arg)
{
	struct shmp_imap *it = arg;
	struct shmp_pool *p = it->call->pool;
	for (unsigned i = 0; i < it->window; i++) {
		struct shmp__imap_slot *s = &it->slots[i];
		uint32_t st = atomic_load_explicit(&s->state, memory_order_acquire);
		if (st == SLOT_READY)
			return true;
		if (st == SLOT_BUSY && shmp__tt_is_finished(&p->tt, s->seq))
			return true;
	}
	return false;
}

/* Hand out the next item of a ready slot. */
static int take(struct shmp_imap *it, struct shmp__imap_slot *s, void *out, uint64_t *index,
		struct shmp_task_error *err)
{
	struct shmp_async *c = it->call;
	uint32_t k = s->taken++;
	uint64_t idx = s->first + k;
	int r = 1;
	if (s->err.error && idx >= s->err.index) {
		if (idx == s->err.index) {
			/* The failing item. */
			r = s->err.error;
			if (err)
				*err = s->err;
		} else {
			/* Never ran: an earlier item of its chunk failed. */
			r = -SHMP_ESKIPPED;
			if (err)
				*err = (struct shmp_task_error){ .error = r, .index = idx, .exit_status = -1,
								 .skipped = s->first + s->count - idx - 1 };
		}
	} else {
		if (c->out_size)
			memcpy(out, s->buf + (size_t)k * c->out_size, c->out_size);
		if (err)
			memset(err, 0, sizeof *err);
	}
	if (index)
		*index = idx;
	if (s->taken >= s->count) {
		atomic_store_explicit(&s->state, SLOT_EMPTY, memory_order_release);
		it->chunks_taken++;
		if (it->ordered)
			it->cursor++;
	}
	return r;
}

int shmp_imap_next(shmp_imap_t *it, void *out, uint64_t *index, double timeout, struct shmp_task_error *err)
{
	if (!it)
		return -EINVAL;
	struct shmp_async *c = it->call;
	if (!c->pool)
		return -SHMP_ECLOSED; /* the pool was destroyed */
	int r = shmp__pool_check(c->pool);
	if (r < 0)
		return r;
	struct shmp__deadline d;
	if (shmp__deadline_init(&d, timeout) < 0)
		return -EINVAL;
	uint64_t spin_start = 0;
	for (;;) {
		fill(it);
		struct shmp__imap_slot *s = ready_slot(it);
		if (!s && collect_own(it))
			s = ready_slot(it);
		if (s) {
			bool failed_item = s->err.error && s->first + s->taken >= s->err.index;
			if (!out && c->out_size && !failed_item)
				return -EINVAL; /* a result to copy and nowhere to put it */
			return take(it, s, out, index, err);
		}
		if (it->input_done && it->chunks_taken == it->chunks_submitted) {
			if (it->input_error) {
				r = it->input_error;
				it->input_error = 0;
				if (err)
					*err = (struct shmp_task_error){ .error = r, .index = it->input_error_index,
									 .exit_status = -1 };
				if (index)
					*index = it->input_error_index;
				return r;
			}
			return 0;
		}
		if (shmp__deadline_passed(&d))
			return -ETIMEDOUT;
		/* Poll for a round trip's time, then sleep on our notify word
		 * (briefly while waiting for room: others free it). */
		uint64_t now = shmp__now_ns();
		if (!spin_start)
			spin_start = now;
		if (now - spin_start < 30000) {
			for (int i = 0; i < 64; i++)
				shmp__cpu_relax();
			continue;
		}
		struct timespec until = shmp__deadline_cap(&d, (it->room_blocked ? 5 : 100) * 1000000L);
		int w = shmp__tt_notify_wait(it->notify, own_done, it, &until);
		if (shmp__interrupted(w))
			return -EINTR;
		if (w != -ETIMEDOUT)
			spin_start = 0; /* woken: poll again before the next sleep */
	}
}

void shmp_imap_destroy(shmp_imap_t *it)
{
	if (!it)
		return;
	struct shmp_async *c = it->call;
	struct shmp_pool *p = c->pool;
	if (!p) {
		shmp__call_unref(c); /* the pool went first: the handle's memory */
		return;
	}
	if (p->pid != getpid()) {
		shmp__call_free_memory(c, false); /* a forked child's copy */
		return;
	}
	collect_own(it);
	/* Chunks still running write into buffers that live until the pool's
	 * reference goes, when the last of them is collected — by the
	 * supervisor now that we leave. */
	if (!atomic_load(&c->done))
		shmp__call_abandon(c);
	end_input(it);
	shmp__tt_kick(&p->tt);
	shmp__call_unref(c);
}
