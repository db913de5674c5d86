/* private: the Pool's calls — apply, apply_async, the map family, imap —
 * and AsyncResult. Each call cuts its input into tasks (chunks) and
 * publishes them in the task table. */
#include "pool_internal.h"

#include <stdlib.h>


#define ALIGN16(x) (((x) + 15) & ~(size_t)15)

static int pool_error(const shmp_pool_t *h)
{
	return h ? -SHMP_ECLOSED : -EINVAL;
}

/* Where memory of this call lives for a worker: by reference when it is in
 * a mapping the workers have too. */
struct refs {
	bool in, out;
	uint64_t in_ser, in_off, out_ser, out_off;
};

static void find_refs(struct shmp__pool *p, struct shmp_async *c, struct refs *rf)
{
	memset(rf, 0, sizeof *rf);
	if (p->threads)
		return;
	if (c->in && c->in_size && c->n != SIZE_MAX)
		rf->in = shmp__maps_find(c->in, c->n * c->in_size, p->map_serial, &rf->in_ser, &rf->in_off);
	if (c->out && c->out_size && c->kind == CALL_MAP)
		rf->out = shmp__maps_find(c->out, c->n * c->out_size, p->map_serial, &rf->out_ser,
					  &rf->out_off);
}

/* Wait for the segment to have room again: tasks in flight free blocks as
 * they finish. -ENOMEM if nothing is in flight. */
static int wait_for_room(struct shmp__pool *p, const struct shmp__deadline *d)
{
	if (atomic_load(&p->sh->completed) == atomic_load(&p->sh->submitted))
		return -ENOMEM;
	if (shmp__deadline_passed(d))
		return -ETIMEDOUT;
	uint32_t f = atomic_load(&p->sh->free_futex);
	atomic_fetch_add(&p->sh->free_waiters, 1);
	struct timespec until = shmp__deadline_cap(d, 10 * 1000000L);
	shmp__futex_wait(&p->sh->free_futex, f, &until);
	atomic_fetch_sub(&p->sh->free_waiters, 1);
	return 0;
}

/* Publish one task: items [first, first+count) of call c. slot: an imap
 * chunk (results go to its buffer). gen_count: items already written by
 * the generator into gen (imap with an input function). */
static int submit_task(struct shmp__pool *p, struct shmp_async *c, const struct refs *rf, uint64_t first,
		       size_t count, uint32_t flags, struct shmp__imap_slot *slot, const char *gen,
		       const struct shmp__deadline *d, uint64_t *seq_out)
{
	struct shmp__desc in = { 0 }, out = { 0 };
	size_t in_copy = 0, out_copy = 0;
	const char *in_src = NULL;
	if (c->in_size == 0) {
		in.kind = DESC_NONE;
	} else if (gen) {
		in_copy = count * c->in_size;
		in_src = gen;
	} else if (p->threads) {
		in = (struct shmp__desc){ .kind = DESC_LOCAL, .b = first * c->in_size };
	} else if (rf->in) {
		in = (struct shmp__desc){ .kind = DESC_REF, .a = rf->in_ser, .b = rf->in_off + first * c->in_size };
	} else {
		in_copy = count * c->in_size;
		in_src = c->in + first * c->in_size;
	}
	if (c->out_size == 0) {
		out.kind = DESC_NONE;
	} else if (slot) {
		out = (struct shmp__desc){ .kind = DESC_SEG, .a = slot->buf_off };
	} else if (p->threads) {
		out = (struct shmp__desc){ .kind = DESC_LOCAL,
					   .b = c->kind == CALL_APPLY ? 0 : first * c->out_size };
	} else if (rf->out) {
		out = (struct shmp__desc){ .kind = DESC_REF, .a = rf->out_ser,
					   .b = rf->out_off + first * c->out_size };
	} else {
		out_copy = count * c->out_size;
	}
	/* Copied bytes go inline in the record when they fit, else in a block
	 * of the pool's segment. */
	size_t need = ALIGN16(in_copy) + out_copy;
	uint64_t block = 0, base_off = 0;
	bool inline_ok = need <= p->sh->inline_size;
	if (need && !inline_ok) {
		int r;
		while ((r = shmp__segment_alloc(p->seg, need, 64, &block, false)) == -SHMP_ESEGFULL) {
			int w = wait_for_room(p, d);
			if (w < 0)
				return w;
		}
		if (r < 0)
			return r;
		base_off = block;
	}
	if (in_copy)
		in = (struct shmp__desc){ .kind = inline_ok ? DESC_INLINE : DESC_SEG, .a = base_off };
	if (out_copy)
		out = (struct shmp__desc){ .kind = inline_ok ? DESC_INLINE : DESC_SEG,
					   .a = base_off + ALIGN16(in_copy) };
	pthread_mutex_lock(&p->submit_mu);
	uint64_t seq;
	int r = shmp__task_reserve(p, d, &seq);
	if (r < 0) {
		pthread_mutex_unlock(&p->submit_mu);
		if (block)
			shmp_segment_free(p->seg, block);
		return r;
	}
	struct shmp__rec *rec = pool_rec(p, seq);
	rec->call = c->slot;
	rec->call_gen = c->gen;
	rec->first = first;
	rec->count = (uint32_t)count;
	rec->flags = flags;
	rec->fn = shmp__fn_offset(c->fn);
	rec->in_size = (uint32_t)c->in_size;
	rec->out_size = (uint32_t)c->out_size;
	rec->in = in;
	rec->out = out;
	rec->block = block;
	rec->notify_off = slot ? c->it->notify_off : 0;
	if (in_copy)
		memcpy(in.kind == DESC_INLINE ? rec_payload(rec) : p->seg->base + in.a, in_src, in_copy);
	atomic_fetch_add_explicit(&c->pending, 1, memory_order_relaxed);
	shmp__task_publish(p, seq, rec);
	pthread_mutex_unlock(&p->submit_mu);
	shmp__tasks_wake(p);
	if (seq_out)
		*seq_out = seq;
	return 0;
}

static int check_call(struct shmp__pool *p, shmp_task_fn fn, size_t in_size, size_t out_size)
{
	if (!fn || in_size > UINT32_MAX || out_size > UINT32_MAX)
		return -EINVAL;
	if (in_size + out_size > p->max_task_bytes)
		return -EMSGSIZE;
	switch (atomic_load_explicit(&p->sh->state, memory_order_acquire)) {
	case SHMP_POOL_RUNNING: return 0;
	case SHMP_POOL_BROKEN: return p->sh->zygote_pid == -1 ? -SHMP_EBROKEN : -SHMP_EINIT;
	default: return -SHMP_ECLOSED;
	}
}

/* ---- AsyncResult -------------------------------------------------------- */

static int wait_done(struct shmp_async *c, const struct shmp__deadline *d)
{
	for (unsigned i = 0; i < 2000; i++) {
		if (atomic_load_explicit(&c->done, memory_order_acquire))
			return 0;
		shmp__cpu_relax();
	}
	while (!atomic_load_explicit(&c->done, memory_order_acquire)) {
		if (shmp__deadline_passed(d))
			return -ETIMEDOUT;
		atomic_fetch_add_explicit(&c->waiters, 1, memory_order_seq_cst);
		if (!atomic_load_explicit(&c->done, memory_order_seq_cst)) {
			struct timespec until = shmp__deadline_cap(d, 200 * 1000000L);
			shmp__futex_wait(&c->done, 0, &until);
		}
		atomic_fetch_sub_explicit(&c->waiters, 1, memory_order_relaxed);
	}
	return 0;
}

static int call_result(struct shmp_async *c, struct shmp_task_error *err)
{
	if (!c->failed) {
		if (err)
			memset(err, 0, sizeof *err);
		return 0;
	}
	if (err)
		*err = c->err;
	return c->err.error;
}

int shmp_async_wait(shmp_async_t *a, double timeout)
{
	if (!a)
		return -EINVAL;
	struct shmp__deadline d;
	if (shmp__deadline_init(&d, timeout) < 0)
		return -EINVAL;
	return wait_done(a, &d);
}

int shmp_async_get(shmp_async_t *a, double timeout, struct shmp_task_error *err)
{
	int r = shmp_async_wait(a, timeout);
	return r < 0 ? r : call_result(a, err);
}

int shmp_async_is_ready(shmp_async_t *a)
{
	return a ? (int)atomic_load_explicit(&a->done, memory_order_acquire) : -EINVAL;
}

int shmp_async_is_successful(shmp_async_t *a)
{
	if (!a)
		return -EINVAL;
	if (!atomic_load_explicit(&a->done, memory_order_acquire))
		return -EAGAIN;
	return !a->failed;
}

void *shmp_async_results(shmp_async_t *a)
{
	if (!a)
		return NULL;
	return a->user_out ? a->user_out : a->out;
}

void shmp_async_release(shmp_async_t *a)
{
	if (!a)
		return;
	pthread_mutex_lock(&a->pool->calls_mu);
	a->user_out = NULL; /* a late finish must not write it */
	pthread_mutex_unlock(&a->pool->calls_mu);
	shmp__call_unref(a);
}

/* ---- apply ----------------------------------------------------------- */

/* The caller of apply collects its own task: spin on the record for a
 * round trip's time, then sleep on its wake word. */
static void wait_record(struct shmp__pool *p, uint64_t seq)
{
	struct shmp__rec *r = pool_rec(p, seq);
	uint64_t done = rec_word(seq, REC_DONE, 0) >> REC_STATE_SHIFT;
	uint64_t t0 = 0;
	for (unsigned i = 0;; i++) {
		if ((atomic_load_explicit(&r->word, memory_order_acquire) >> REC_STATE_SHIFT) == done)
			return;
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
	while ((atomic_load_explicit(&r->word, memory_order_acquire) >> REC_STATE_SHIFT) != done) {
		atomic_store_explicit(&r->wake, 1, memory_order_seq_cst);
		if ((atomic_load_explicit(&r->word, memory_order_seq_cst) >> REC_STATE_SHIFT) == done)
			break;
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_nsec += 100 * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		shmp__futex_wait(&r->wake, 1, &until);
	}
}

int shmp_pool_apply(shmp_pool_t *h, shmp_task_fn fn, const void *arg, size_t arg_size, void *result,
		    size_t result_size, struct shmp_task_error *err)
{
	struct shmp__pool *p = shmp__pool_get(h);
	if (!p || (!arg && arg_size) || (!result && result_size)) {
		int r = !p ? pool_error(h) : -EINVAL;
		if (err)
			*err = (struct shmp_task_error){ .error = r, .exit_status = -1 };
		return r;
	}
	int r = check_call(p, fn, arg_size, result_size);
	struct shmp_async *c = r < 0 ? NULL : shmp__call_new(p, CALL_APPLY);
	if (!c) {
		r = r < 0 ? r : -errno;
		if (err)
			*err = (struct shmp_task_error){ .error = r, .exit_status = -1 };
		return r;
	}
	c->fn = fn;
	c->in = arg;
	c->in_size = arg_size;
	c->out = result;
	c->out_size = result_size;
	c->n = 1;
	struct refs rf = { 0 };
	struct shmp__deadline d;
	shmp__deadline_forever(&d);
	uint64_t seq;
	r = submit_task(p, c, &rf, 0, 1, REC_F_CALLER, NULL, NULL, &d, &seq);
	if (r == 0) {
		wait_record(p, seq);
		shmp__task_collect(p, seq, false);
	} else {
		c->failed = true;
		c->err = (struct shmp_task_error){ .error = r };
	}
	shmp__call_task_done(c, false); /* the submit guard: finishes the call */
	r = call_result(c, err);
	shmp__call_unref(c);
	return r;
}

shmp_async_t *shmp_pool_apply_async(shmp_pool_t *h, shmp_task_fn fn, const void *arg, size_t arg_size,
				    void *result, size_t result_size, const struct shmp_call_opts *opts)
{
	struct shmp__pool *p = shmp__pool_get(h);
	struct shmp_call_opts o;
	int r = !p ? pool_error(h) : SHMP__OPTS(o, opts);
	if (r == 0 && (!arg && arg_size))
		r = -EINVAL;
	if (r == 0)
		r = check_call(p, fn, arg_size, result_size);
	if (r < 0) {
		errno = -r;
		return NULL;
	}
	struct shmp_async *c = shmp__call_new(p, CALL_APPLY);
	if (!c)
		return NULL;
	c->fn = fn;
	c->in = arg;
	c->in_size = arg_size;
	c->out_size = result_size;
	c->n = 1;
	c->callback = o.callback;
	c->error_callback = o.error_callback;
	c->cb_arg = o.cb_arg;
	/* The result lands in a buffer of the call's own and is copied to the
	 * caller's when the call finishes — unless the handle was released
	 * first: then the caller's buffer is never written. */
	c->user_out = result;
	if (result_size) {
		if (!(c->out = calloc(1, result_size))) {
			shmp__call_unref(c);
			shmp__call_unref(c);
			errno = ENOMEM;
			return NULL;
		}
		c->own_out = true;
	}
	/* A ThreadPool reads the argument in place, later: keep a copy. */
	if (p->threads && arg_size) {
		char *copy = malloc(arg_size);
		if (!copy) {
			shmp__call_unref(c);
			shmp__call_unref(c);
			errno = ENOMEM;
			return NULL;
		}
		memcpy(copy, arg, arg_size);
		c->in = copy;
		c->own_in = true;
	}
	struct refs rf = { 0 };
	struct shmp__deadline d;
	shmp__deadline_forever(&d);
	r = submit_task(p, c, &rf, 0, 1, 0, NULL, NULL, &d, NULL);
	if (r < 0) {
		c->failed = true;
		c->err = (struct shmp_task_error){ .error = r };
	}
	shmp__call_task_done(c, false);
	return c;
}

/* ---- map ------------------------------------------------------------- */

static size_t default_chunksize(struct shmp__pool *p, size_t n)
{
	size_t div = (size_t)p->nworkers * 4;
	size_t cs = n / div + (n % div ? 1 : 0);
	return cs ? cs : 1;
}

static size_t clamp_chunk(struct shmp__pool *p, size_t cs, size_t in_size, size_t out_size)
{
	size_t per = in_size + out_size;
	if (per && cs > p->max_task_bytes / per)
		cs = p->max_task_bytes / per;
	if (cs > (1u << 30))
		cs = 1u << 30;
	return cs ? cs : 1;
}

static struct shmp_async *map_start(shmp_pool_t *h, shmp_task_fn fn, const void *in, size_t in_size, size_t n,
				    void *out, size_t out_size, const struct shmp_call_opts *opts)
{
	struct shmp__pool *p = shmp__pool_get(h);
	struct shmp_call_opts o;
	int r = !p ? pool_error(h) : SHMP__OPTS(o, opts);
	if (r == 0 && ((!in && in_size && n) || (!out && out_size && n) || n > SIZE_MAX / 2))
		r = -EINVAL;
	if (r == 0 && n && (in_size && n > SIZE_MAX / in_size))
		r = -EINVAL;
	if (r == 0)
		r = check_call(p, fn, in_size, out_size);
	if (r < 0) {
		errno = -r;
		return NULL;
	}
	struct shmp_async *c = shmp__call_new(p, CALL_MAP);
	if (!c)
		return NULL;
	c->fn = fn;
	c->in = in;
	c->in_size = in_size;
	c->out = out;
	c->out_size = out_size;
	c->n = n;
	c->callback = o.callback;
	c->error_callback = o.error_callback;
	c->cb_arg = o.cb_arg;
	c->chunksize = clamp_chunk(p, o.chunksize ? o.chunksize : default_chunksize(p, n), in_size, out_size);
	struct refs rf;
	find_refs(p, c, &rf);
	struct shmp__deadline d;
	shmp__deadline_forever(&d);
	for (size_t first = 0; first < n; first += c->chunksize) {
		size_t count = n - first < c->chunksize ? n - first : c->chunksize;
		r = submit_task(p, c, &rf, first, count, 0, NULL, NULL, &d, NULL);
		if (r < 0) {
			shmp__call_note_error(c, &(struct shmp_task_error){ .error = r, .index = first });
			break;
		}
	}
	shmp__call_task_done(c, false);
	return c;
}

shmp_async_t *shmp_pool_map_async(shmp_pool_t *h, shmp_task_fn fn, const void *in, size_t in_size, size_t n,
				  void *out, size_t out_size, const struct shmp_call_opts *opts)
{
	return map_start(h, fn, in, in_size, n, out, out_size, opts);
}

shmp_async_t *shmp_pool_starmap_async(shmp_pool_t *h, shmp_task_fn fn, const void *in, size_t in_size,
				      size_t n, void *out, size_t out_size, const struct shmp_call_opts *opts)
{
	return map_start(h, fn, in, in_size, n, out, out_size, opts);
}

int shmp_pool_map(shmp_pool_t *h, shmp_task_fn fn, const void *in, size_t in_size, size_t n, void *out,
		  size_t out_size, const struct shmp_call_opts *opts, struct shmp_task_error *err)
{
	struct shmp_async *c = map_start(h, fn, in, in_size, n, out, out_size, opts);
	if (!c) {
		int r = -errno;
		if (err)
			*err = (struct shmp_task_error){ .error = r, .exit_status = -1 };
		return r;
	}
	shmp_async_wait(c, SHMP_FOREVER);
	int r = call_result(c, err);
	shmp__call_unref(c);
	return r;
}

int shmp_pool_starmap(shmp_pool_t *h, shmp_task_fn fn, const void *in, size_t in_size, size_t n, void *out,
		      size_t out_size, const struct shmp_call_opts *opts, struct shmp_task_error *err)
{
	return shmp_pool_map(h, fn, in, in_size, n, out, out_size, opts, err);
}

int shmp__imap_submit(struct shmp__pool *p, struct shmp_async *c, uint64_t first, size_t count,
		      struct shmp__imap_slot *slot, const char *gen)
{
	struct refs rf;
	find_refs(p, c, &rf);
	struct shmp__deadline d;
	shmp__deadline_forever(&d);
	/* The iterator collects its own chunks: no supervisor hop. */
	return submit_task(p, c, &rf, first, count, REC_F_CALLER | REC_F_NOTIFY, slot, gen, &d, &slot->seq);
}
