/* private: imap and imap_unordered. The consumer's own calls to next()
 * submit chunks, at most `window` in flight, so input is taken only as
 * results are consumed (backpressure: memory stays bounded for any input,
 * endless ones included). Results land in per-chunk buffers in the pool's
 * segment, written by the workers in place. */
#include "pool_internal.h"

#include <stdlib.h>


static shmp_imap_t *imap_start(shmp_pool_t *h, shmp_task_fn fn, const void *in, size_t in_size, size_t n,
			       size_t out_size, shmp_input_fn input, void *input_ctx,
			       const struct shmp_call_opts *opts, bool ordered)
{
	struct shmp__pool *p = shmp__pool_get(h);
	struct shmp_call_opts o;
	int r = !p ? (h ? -SHMP_ECLOSED : -EINVAL) : SHMP__OPTS(o, opts);
	if (r == 0 && (!fn || (!in && !input && in_size && n) || (in && input)))
		r = -EINVAL;
	if (r == 0 && in && in_size && n > SIZE_MAX / in_size)
		r = -EINVAL;
	if (r == 0 && in_size + out_size > p->max_task_bytes)
		r = -EMSGSIZE;
	if (r == 0 && atomic_load(&p->sh->state) != SHMP_POOL_RUNNING)
		r = atomic_load(&p->sh->state) == SHMP_POOL_BROKEN
			    ? (p->sh->zygote_pid == -1 ? -SHMP_EBROKEN : -SHMP_EINIT)
			    : -SHMP_ECLOSED;
	if (r < 0) {
		errno = -r;
		return NULL;
	}
	size_t cs = o.chunksize ? o.chunksize : 1; /* Python's imap default */
	size_t per = in_size + out_size;
	if (per && cs > p->max_task_bytes / per)
		cs = p->max_task_bytes / per;
	if (cs > (1u << 20))
		cs = 1u << 20;
	unsigned window = o.max_inflight ? o.max_inflight : (unsigned)p->nworkers * 2 + 2;
	if (window > 4096)
		window = 4096;
	struct shmp_imap *it = calloc(1, sizeof *it);
	struct shmp__imap_slot *slots = calloc(window, sizeof *slots);
	struct shmp_async *c = it && slots ? shmp__call_new(p, CALL_IMAP) : NULL;
	if (!c) {
		free(it);
		free(slots);
		errno = ENOMEM;
		return NULL;
	}
	it->call = c;
	it->ordered = ordered;
	it->window = window;
	it->slots = slots;
	it->input = input;
	it->input_ctx = input_ctx;
	c->it = it;
	c->fn = fn;
	c->in = in;
	c->in_size = in_size;
	c->out_size = out_size;
	c->n = n;
	c->chunksize = cs;
	if (!(it->notify = shmp__alloc_ptr(p->seg, sizeof *it->notify, 64, &it->notify_off))) {
		shmp__call_unref(c);
		shmp__call_unref(c);
		errno = ENOMEM;
		return NULL;
	}
	for (unsigned i = 0; i < window; i++) {
		if (!out_size)
			continue;
		if (shmp_segment_alloc(p->seg, cs * out_size, 64, &slots[i].buf_off) < 0) {
			shmp__call_unref(c); /* the pool's reference */
			shmp__call_unref(c); /* ours: frees the buffers */
			errno = ENOMEM;
			return NULL;
		}
		slots[i].buf = p->seg->base + slots[i].buf_off;
	}
	return it;
}

shmp_imap_t *shmp_pool_imap(shmp_pool_t *h, shmp_task_fn fn, const void *in, size_t in_size, size_t n,
			    size_t out_size, shmp_input_fn input, void *input_ctx, const struct shmp_call_opts *opts)
{
	return imap_start(h, fn, in, in_size, n, out_size, input, input_ctx, opts, true);
}

shmp_imap_t *shmp_pool_imap_unordered(shmp_pool_t *h, shmp_task_fn fn, const void *in, size_t in_size,
				      size_t n, size_t out_size, shmp_input_fn input, void *input_ctx,
				      const struct shmp_call_opts *opts)
{
	return imap_start(h, fn, in, in_size, n, out_size, input, input_ctx, opts, false);
}

static void end_input(struct shmp_imap *it)
{
	if (!it->input_done) {
		it->input_done = true;
		shmp__call_task_done(it->call, false); /* drop the submit guard */
	}
}

/* Submit chunks while a window slot is free and input remains. */
static void fill(struct shmp_imap *it)
{
	struct shmp_async *c = it->call;
	struct shmp__pool *p = c->pool;
	char *gen = NULL;
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
			if (!gen && c->in_size && !(gen = malloc(c->chunksize * c->in_size))) {
				it->input_error = -ENOMEM;
				end_input(it);
				break;
			}
			size_t k = 0;
			for (; k < count; k++) {
				int r = it->input(it->input_ctx, gen ? gen + k * c->in_size : NULL, first + k);
				if (r <= 0) {
					if (r < 0)
						it->input_error = r;
					break;
				}
			}
			if (k < count) {
				count = k;
				c->n = first + k; /* the input's real length */
			}
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
		int r = shmp__imap_submit(p, c, first, count, s, it->input ? (gen ? gen : "") : NULL);
		if (r < 0) {
			/* Report it in this chunk's place, then stop taking input. */
			s->err = (struct shmp_task_error){ .error = r, .index = first };
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
	free(gen);
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
	struct shmp__pool *p = it->call->pool;
	bool any = false;
	for (unsigned i = 0; i < it->window; i++) {
		struct shmp__imap_slot *s = &it->slots[i];
		if (atomic_load_explicit(&s->state, memory_order_relaxed) == SLOT_BUSY &&
		    shmp__task_collect(p, s->seq, false))
			any = true;
	}
	return any;
}

static bool own_done(struct shmp_imap *it)
{
	struct shmp__pool *p = it->call->pool;
	for (unsigned i = 0; i < it->window; i++) {
		struct shmp__imap_slot *s = &it->slots[i];
		if (atomic_load_explicit(&s->state, memory_order_relaxed) != SLOT_BUSY)
			continue;
		uint64_t w = atomic_load_explicit(&pool_rec(p, s->seq)->word, memory_order_seq_cst);
		if (rec_state(w) != REC_QUEUED && rec_state(w) != REC_RUNNING)
			return true;
	}
	return false;
}

int shmp_imap_next(shmp_imap_t *it, void *out, uint64_t *index, double timeout, struct shmp_task_error *err)
{
	if (!it)
		return -EINVAL;
	struct shmp_async *c = it->call;
	struct shmp__deadline d;
	if (shmp__deadline_init(&d, timeout) < 0)
		return -EINVAL;
	uint64_t spin_start = 0;
	for (;;) {
		fill(it);
		struct shmp__imap_slot *s = ready_slot(it);
		if (!s && collect_own(it))
			s = ready_slot(it);
		if (s && !out && c->out_size && !(s->err.error && s->first + s->taken >= s->err.index))
			return -EINVAL; /* a result to copy and nowhere to put it */
		if (s) {
			uint32_t k = s->taken++;
			uint64_t idx = s->first + k;
			bool last = s->taken >= s->count;
			int r = 1;
			if (s->err.error && idx >= s->err.index) {
				/* The failing item; the rest of its chunk never ran. */
				if (err)
					*err = s->err;
				r = s->err.error;
				idx = s->err.index;
				last = true;
			} else if (c->out_size) {
				memcpy(out, s->buf + (size_t)k * c->out_size, c->out_size);
			}
			if (index)
				*index = idx;
			if (last) {
				atomic_store_explicit(&s->state, SLOT_EMPTY, memory_order_release);
				it->chunks_taken++;
				if (it->ordered)
					it->cursor++;
			}
			return r;
		}
		if (it->input_done && it->chunks_taken == it->chunks_submitted) {
			if (it->input_error) {
				int r = it->input_error;
				it->input_error = 0;
				if (err)
					*err = (struct shmp_task_error){ .error = r, .index = it->items_submitted };
				return r;
			}
			return 0;
		}
		if (shmp__deadline_passed(&d))
			return -ETIMEDOUT;
		/* Poll for a round trip's time, then sleep on our notify word. */
		uint64_t now = shmp__now_ns();
		if (!spin_start)
			spin_start = now;
		if (now - spin_start < 30000) {
			for (int i = 0; i < 64; i++)
				shmp__cpu_relax();
			continue;
		}
		struct shmp__notify *n = it->notify;
		uint32_t f = atomic_load_explicit(&n->seq, memory_order_acquire);
		atomic_fetch_add_explicit(&n->waiters, 1, memory_order_seq_cst);
		if (!own_done(it)) {
			struct timespec until = shmp__deadline_cap(&d, 100 * 1000000L);
			shmp__futex_wait(&n->seq, f, &until);
		}
		atomic_fetch_sub_explicit(&n->waiters, 1, memory_order_relaxed);
		spin_start = 0;
	}
}

void shmp_imap_destroy(shmp_imap_t *it)
{
	if (!it)
		return;
	struct shmp_async *c = it->call;
	struct shmp__pool *p = c->pool;
	collect_own(it);
	/* Chunks still running write into buffers that live until the pool's
	 * reference goes, when the last of them is collected — by the
	 * supervisor now that we leave. */
	if (!atomic_load(&c->done)) {
		atomic_fetch_add(&p->abandoned, 1);
		atomic_store(&c->abandoned, true);
	}
	end_input(it);
	uint64_t one = 1;
	ssize_t w = write(p->efd, &one, sizeof one);
	(void)w;
	shmp__call_unref(c);
}
