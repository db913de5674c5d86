/* private: the Pool's calls — apply, apply_async, the map family — and
 * AsyncResult. Each call cuts its input into tasks (chunks) and publishes
 * them in the task table; imap is in pool_imap.c.
 *
 * Limits are checked before anything runs: a call whose single item cannot
 * be carried (max_task_bytes: -EMSGSIZE) or copied through the pool's data
 * arena (segment_size: -SHMP_ESEGFULL) fails at once; every other call
 * fits, because chunks of copied data are cut to a fraction of the arena
 * and a submitter waits for room while tasks in flight hold it. So a map
 * over any amount of ordinary memory streams through the arena and never
 * fails half way for a size reason.
 *
 * Interrupts (shmp_set_interruptible): a wait of a call — for room, for a
 * record, for its result — returns -EINTR once a signal handler ran. What
 * was submitted goes on in the pool as if the call were async: its record
 * is handed to the supervisor (apply) or collected by it anyway (map), so
 * nothing is left uncollected. */
#include "pool_internal.h"

#include <stdlib.h>

#define ALIGN16(x) (((x) + 15) & ~(size_t)15)

/* Where memory of this call lives for a worker: by reference when it is in
 * a mapping the workers have too. */
struct refs {
	bool in, out;
	uint64_t in_ser, in_off, out_ser, out_off;
};

static void find_refs(struct shmp_pool *p, struct shmp_async *c, struct refs *rf)
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

/* Publish one task: items [first, first+count) of call c. slot: an imap
 * chunk (results go to its buffer). gen: the items an input function
 * wrote (imap). */
static int submit_task(struct shmp_pool *p, struct shmp_async *c, const struct refs *rf, uint64_t first,
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
	 * of the arena, filled before the record is taken. */
	size_t need = ALIGN16(in_copy) + out_copy;
	uint64_t block = 0;
	bool inline_ok = need <= p->inline_size;
	if (need && !inline_ok) {
		int r = shmp__arena_alloc_wait(p, need, true, d, &block);
		if (r < 0)
			return r;
		if (in_copy)
			memcpy(p->dseg->base + block, in_src, in_copy);
	}
	if (in_copy)
		in = (struct shmp__desc){ .kind = inline_ok ? DESC_INLINE : DESC_SEG, .a = block };
	if (out_copy)
		out = (struct shmp__desc){ .kind = inline_ok ? DESC_INLINE : DESC_SEG, .a = block + ALIGN16(in_copy) };
	pthread_mutex_lock(&p->submit_mu);
	uint64_t seq;
	int r = shmp__task_reserve(p, d, &seq);
	if (r < 0) {
		pthread_mutex_unlock(&p->submit_mu);
		if (block)
			shmp__arena_free(&p->arena, block, need, true);
		return r;
	}
	struct shmp__rec *rec = pool_rec(p, seq);
	struct shmp__shadow *s = pool_shadow(p, seq);
	s->call = c->slot;
	s->call_gen = c->gen;
	s->first = first;
	s->count = (uint32_t)count;
	s->flags = flags;
	s->block = block;
	s->block_len = block ? need : 0;
	s->out_at = (uint32_t)ALIGN16(in_copy);
	s->out_where = !out_copy ? OUT_INPLACE : inline_ok ? OUT_INLINE : OUT_BLOCK;
	s->notify_off = slot ? c->it->notify_off : 0;
	rec->t = (struct shmp__task){ .call = c->slot, .call_gen = c->gen, .first = first,
				      .count = (uint32_t)count, .flags = flags, .fn = shmp__fn_offset(c->fn),
				      .in_size = (uint32_t)c->in_size, .out_size = (uint32_t)c->out_size,
				      .in = in, .out = out, .notify_off = s->notify_off };
	if (in_copy && inline_ok)
		memcpy(rec_payload(rec), in_src, in_copy);
	atomic_fetch_add_explicit(&c->pending, 1, memory_order_relaxed);
	shmp__task_publish(p, seq, rec);
	pthread_mutex_unlock(&p->submit_mu);
	shmp__tasks_wake(p);
	if (seq_out)
		*seq_out = seq;
	return 0;
}

/* Checks every call makes before anything runs. */
static int check_call(struct shmp_pool *p, shmp_task_fn fn, size_t in_size, size_t out_size)
{
	if (!fn || in_size > UINT32_MAX || out_size > UINT32_MAX)
		return -EINVAL;
	if (in_size + out_size > p->max_task_bytes)
		return -EMSGSIZE;
	/* A function a worker would refuse (or, in a ThreadPool, jump into):
	 * say so here, where the caller can see why. */
	if (!shmp__code_address((uintptr_t)fn))
		return -SHMP_EBADFN;
	return shmp__pool_stopped_error(p);
}

/* A single item's copied bytes must fit the arena (and one chunk of them
 * always does: see chunk_cap). */
static int check_item_room(struct shmp_pool *p, size_t in_copy, size_t out_copy)
{
	size_t need = ALIGN16(in_copy) + out_copy;
	if (need <= p->inline_size)
		return 0;
	return ((need + 63) & ~(size_t)63) <= p->arena.size ? 0 : -SHMP_ESEGFULL;
}

/* A task error for a call that failed before or while submitting. */
static struct shmp_task_error call_error(int r, uint64_t index, uint64_t skipped)
{
	return (struct shmp_task_error){ .error = r, .exit_status = -1, .index = index, .skipped = skipped };
}

/* ---- AsyncResult -------------------------------------------------------- */

static int wait_done(struct shmp_async *c, const struct shmp__deadline *d, bool interruptible)
{
	for (unsigned i = 0; i < 2000; i++) {
		if (atomic_load_explicit(&c->done, memory_order_acquire))
			return 0;
		shmp__cpu_relax();
	}
	while (!atomic_load_explicit(&c->done, memory_order_acquire)) {
		if (shmp__deadline_passed(d))
			return -ETIMEDOUT;
		int w = 0;
		atomic_fetch_add_explicit(&c->waiters, 1, memory_order_seq_cst);
		if (!atomic_load_explicit(&c->done, memory_order_seq_cst)) {
			struct timespec until = shmp__deadline_cap(d, 200 * 1000000L);
			w = shmp__futex_wait(&c->done, 0, &until);
		}
		atomic_fetch_sub_explicit(&c->waiters, 1, memory_order_relaxed);
		if (interruptible && shmp__interrupted(w))
			return -EINTR;
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
	return wait_done(a, &d, true);
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

void shmp_async_destroy(shmp_async_t *a)
{
	if (!a)
		return;
	if (a->pool) {
		pthread_mutex_lock(&a->pool->calls_mu);
		a->user_out = NULL; /* a late finish must not write it */
		pthread_mutex_unlock(&a->pool->calls_mu);
	}
	shmp__call_unref(a);
}

/* ---- apply ----------------------------------------------------------- */

/* Is the caller's own task finished (its record DONE) or already collected
 * by someone else (its private shadow no longer live)? */
static bool record_done(struct shmp_pool *p, uint64_t seq)
{
	uint64_t w = atomic_load_explicit(&pool_rec(p, seq)->word, memory_order_acquire);
	if (rec_state(w) == REC_DONE && rec_seq(w) == (seq & REC_SEQ_MASK))
		return true;
	return atomic_load_explicit(&pool_shadow(p, seq)->word, memory_order_acquire) !=
	       shadow_word(seq, SHADOW_LIVE);
}

/* The caller of apply collects its own task: spin on the record for a
 * round trip's time, then sleep on its wake word. 0 or -EINTR. */
static int wait_record(struct shmp_pool *p, uint64_t seq)
{
	struct shmp__rec *r = pool_rec(p, seq);
	uint64_t t0 = 0;
	for (unsigned i = 0;; i++) {
		if (record_done(p, seq))
			return 0;
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
	while (!record_done(p, seq)) {
		atomic_store_explicit(&r->wake, 1, memory_order_seq_cst);
		if (record_done(p, seq))
			break;
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_nsec += 100 * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		/* (A handler that runs between two of these sleeps, not during
		 * one, goes unseen: a window of a few instructions per slice.) */
		if (shmp__interrupted(shmp__futex_wait(&r->wake, 1, &until)))
			return -EINTR;
	}
	return 0;
}

/* The caller leaves before its task is collected: the supervisor's sweep
 * collects it (and the call ends then). */
static void abandon(struct shmp_pool *p, struct shmp_async *c)
{
	atomic_fetch_add(&p->abandoned, 1);
	atomic_store(&c->abandoned, true);
	uint64_t one = 1;
	ssize_t w = write(p->efd, &one, sizeof one);
	(void)w;
}

int shmp_pool_apply(shmp_pool_t *p, shmp_task_fn fn, const void *arg, size_t arg_size, void *result,
		    size_t result_size, struct shmp_task_error *err)
{
	int r = shmp__pool_check(p);
	if (r == 0 && ((!arg && arg_size) || (!result && result_size)))
		r = -EINVAL;
	if (r == 0)
		r = check_call(p, fn, arg_size, result_size);
	if (r == 0 && !p->threads)
		r = check_item_room(p, arg_size, result_size);
	struct shmp_async *c = r < 0 ? NULL : shmp__call_new(p, CALL_APPLY);
	if (!c) {
		r = r < 0 ? r : -errno;
		if (err) {
			*err = call_error(r, 0, 0);
			if (r == -SHMP_EINIT)
				err->code = atomic_load(&p->init_code);
		}
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
		if (wait_record(p, seq) < 0) {
			abandon(p, c);
			shmp__call_task_done(c, false); /* the submit guard */
			shmp__call_unref(c);
			if (err)
				*err = call_error(-EINTR, 0, 0);
			return -EINTR;
		}
		shmp__task_collect(p, seq, false);
	} else {
		shmp__call_note_error(c, &(struct shmp_task_error){ .error = r, .exit_status = -1 });
		if (r == -SHMP_EINIT)
			c->err.code = atomic_load(&p->init_code);
	}
	shmp__call_task_done(c, false); /* the submit guard: finishes the call */
	/* If another thread collected the task, it may still be finishing. */
	struct shmp__deadline forever;
	shmp__deadline_forever(&forever);
	wait_done(c, &forever, false);
	r = call_result(c, err);
	shmp__call_unref(c);
	return r;
}

shmp_async_t *shmp_pool_apply_async(shmp_pool_t *p, shmp_task_fn fn, const void *arg, size_t arg_size,
				    void *result, size_t result_size, const struct shmp_call_opts *opts)
{
	struct shmp_call_opts o;
	int r = shmp__pool_check(p);
	if (r == 0)
		r = SHMP__OPTS(o, opts);
	if (r == 0 && (!arg && arg_size))
		r = -EINVAL;
	if (r == 0)
		r = check_call(p, fn, arg_size, result_size);
	if (r == 0 && !p->threads)
		r = check_item_room(p, arg_size, result_size);
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
	 * caller's when the call finishes — unless the handle was destroyed
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
		shmp__call_note_error(c, &(struct shmp_task_error){ .error = r, .exit_status = -1 });
		if (r == -SHMP_EINIT)
			c->err.code = atomic_load(&p->init_code);
	}
	shmp__call_task_done(c, false);
	return c;
}

/* ---- map ------------------------------------------------------------- */

static size_t default_chunksize(struct shmp_pool *p, size_t n)
{
	size_t div = (size_t)p->nworkers * 4;
	size_t cs = n / div + (n % div ? 1 : 0);
	return cs ? cs : 1;
}

/* The largest chunk: max_task_bytes of arguments + results, and of what is
 * copied, a share of the arena small enough that several chunks are in
 * flight at once (workers + 2): one always fits, and copying the next
 * overlaps running the last. */
static size_t chunk_cap(struct shmp_pool *p, size_t in_size, size_t out_size, size_t copied)
{
	size_t cs = SIZE_MAX;
	size_t per = in_size + out_size;
	if (per)
		cs = p->max_task_bytes / per;
	if (copied) {
		size_t share = p->arena.size / ((size_t)p->nworkers + 2);
		size_t by_room = share > 128 ? (share - 128) / copied : 0;
		if (by_room < cs)
			cs = by_room;
	}
	if (cs > (1u << 30))
		cs = 1u << 30;
	return cs ? cs : 1;
}

/* Start a map; *submit_err gets what stopped its submission (0: all of it
 * went out), e.g. -EINTR. NULL + errno if it could not start. */
static struct shmp_async *map_start(shmp_pool_t *p, shmp_task_fn fn, const void *in, size_t in_size, size_t n,
				    void *out, size_t out_size, const struct shmp_call_opts *opts,
				    int *submit_err)
{
	struct shmp_call_opts o;
	*submit_err = 0;
	int r = shmp__pool_check(p);
	if (r == 0)
		r = SHMP__OPTS(o, opts);
	if (r == 0 && ((!in && in_size && n) || (!out && out_size && n) || n > SIZE_MAX / 2))
		r = -EINVAL;
	if (r == 0 && n && ((in_size && n > SIZE_MAX / in_size) || (out_size && n > SIZE_MAX / out_size)))
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
	struct refs rf;
	find_refs(p, c, &rf);
	size_t in_copy = !p->threads && !rf.in ? in_size : 0;
	size_t out_copy = !p->threads && !rf.out ? out_size : 0;
	if (n && (r = check_item_room(p, in_copy, out_copy)) < 0) {
		shmp__call_unref(c);
		shmp__call_unref(c);
		errno = -r;
		return NULL;
	}
	size_t cs = o.chunksize ? o.chunksize : default_chunksize(p, n);
	size_t cap = chunk_cap(p, in_size, out_size, in_copy + out_copy);
	c->chunksize = cs < cap ? cs : cap;
	struct shmp__deadline d;
	shmp__deadline_forever(&d);
	for (size_t first = 0; first < n; first += c->chunksize) {
		size_t count = n - first < c->chunksize ? n - first : c->chunksize;
		r = submit_task(p, c, &rf, first, count, 0, NULL, NULL, &d, NULL);
		if (r < 0) {
			struct shmp_task_error e = call_error(r, first, n - first - 1);
			if (r == -SHMP_EINIT)
				e.code = atomic_load(&p->init_code);
			shmp__call_note_error(c, &e);
			*submit_err = r;
			break;
		}
	}
	shmp__call_task_done(c, false);
	return c;
}

shmp_async_t *shmp_pool_map_async(shmp_pool_t *p, shmp_task_fn fn, const void *in, size_t in_size, size_t n,
				  void *out, size_t out_size, const struct shmp_call_opts *opts)
{
	int se;
	return map_start(p, fn, in, in_size, n, out, out_size, opts, &se);
}

shmp_async_t *shmp_pool_starmap_async(shmp_pool_t *p, shmp_task_fn fn, const void *in, size_t in_size,
				      size_t n, void *out, size_t out_size, const struct shmp_call_opts *opts)
{
	return shmp_pool_map_async(p, fn, in, in_size, n, out, out_size, opts);
}

int shmp_pool_map(shmp_pool_t *p, shmp_task_fn fn, const void *in, size_t in_size, size_t n, void *out,
		  size_t out_size, const struct shmp_call_opts *opts, struct shmp_task_error *err)
{
	int se;
	struct shmp_async *c = map_start(p, fn, in, in_size, n, out, out_size, opts, &se);
	if (!c) {
		int r = -errno;
		if (err) {
			*err = call_error(r, 0, n ? n - 1 : 0);
			if (r == -SHMP_EINIT)
				err->code = atomic_load(&p->init_code);
		}
		return r;
	}
	struct shmp__deadline d;
	shmp__deadline_forever(&d);
	int r = se == -EINTR ? -EINTR : wait_done(c, &d, true);
	if (r == -EINTR) {
		/* What went out runs on; the supervisor collects it (and the
		 * call ends with the pool's reference). */
		if (err)
			*err = call_error(-EINTR, 0, 0);
		shmp__call_unref(c);
		return -EINTR;
	}
	r = call_result(c, err);
	shmp__call_unref(c);
	return r;
}

int shmp_pool_starmap(shmp_pool_t *p, shmp_task_fn fn, const void *in, size_t in_size, size_t n, void *out,
		      size_t out_size, const struct shmp_call_opts *opts, struct shmp_task_error *err)
{
	return shmp_pool_map(p, fn, in, in_size, n, out, out_size, opts, err);
}

/* ---- imap's pieces ------------------------------------------------------ */

int shmp__imap_sizes(struct shmp_pool *p, size_t in_size, size_t out_size, bool copy_in, size_t *cs,
		     unsigned *window)
{
	size_t in_copy = copy_in ? in_size : 0;
	int r = check_item_room(p, in_copy, 0);
	if (r == 0 && out_size && ((out_size + 63) & ~(size_t)63) > p->arena.size)
		r = -SHMP_ESEGFULL;
	if (r < 0)
		return r;
	size_t per = in_size + out_size;
	if (per && *cs > p->max_task_bytes / per)
		*cs = p->max_task_bytes / per;
	/* Result buffers of every slot and the input copies in flight: half
	 * of the arena at most, so other calls keep room too. */
	size_t arena_per = ALIGN16(in_copy) + out_size;
	size_t budget = p->arena.size / 2;
	if (arena_per > p->inline_size || out_size) {
		if ((size_t)*window * arena_per > budget)
			*window = arena_per > budget ? 1 : (unsigned)(budget / arena_per);
		size_t by_room = budget / ((size_t)*window * arena_per);
		if (*cs > by_room)
			*cs = by_room;
	}
	if (*cs > (1u << 20))
		*cs = 1u << 20;
	if (!*cs)
		*cs = 1;
	return 0;
}

int shmp__imap_submit(struct shmp_pool *p, struct shmp_async *c, uint64_t first, size_t count,
		      struct shmp__imap_slot *slot, const char *gen)
{
	struct refs rf;
	find_refs(p, c, &rf);
	/* Never wait here: the room we would wait for may be held by our own
	 * finished chunks, which only our caller collects. -ETIMEDOUT then
	 * means "try again later". */
	struct shmp__deadline d;
	if (shmp__deadline_init(&d, 0) < 0)
		return -EINVAL;
	/* The iterator collects its own chunks: no supervisor hop. */
	return submit_task(p, c, &rf, first, count, REC_F_CALLER | REC_F_NOTIFY, slot, gen, &d, &slot->seq);
}

int shmp__imap_check(struct shmp_pool *p, shmp_task_fn fn, size_t in_size, size_t out_size)
{
	return check_call(p, fn, in_size, out_size);
}
