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
#include "pool_defaults.h"

#include <stdlib.h>

#define ALIGN16(x) (((x) + 15) & ~(size_t)15)

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

/* The handle's own checks: -EINVAL (NULL), -ECHILD (a forked child's copy:
 * the pool that would finish it is not this process's, so a wait could
 * never end). */
static int async_check(const struct shmp_async *a)
{
	if (!a)
		return -EINVAL;
	return a->pid == shmp__pid() ? 0 : -ECHILD;
}

int shmp_async_wait(shmp_async_t *a, double timeout)
{
	int r = async_check(a);
	if (r < 0)
		return r;
	struct shmp__deadline d;
	if (shmp__deadline_init(&d, timeout) < 0)
		return -EINVAL;
	/* A callback (on the supervisor thread) waiting for a call the
	 * supervisor itself must collect would wait for ever. */
	struct shmp_pool *p = a->pool;
	if (timeout != 0 && !atomic_load_explicit(&a->done, memory_order_acquire) && p && shmp__pool_on_supervisor(p))
		return -EDEADLK;
	return wait_done(a, &d, true);
}

int shmp_async_get(shmp_async_t *a, double timeout, struct shmp_task_error *err)
{
	int r = shmp_async_wait(a, timeout);
	return r < 0 ? r : call_result(a, err);
}

int shmp_async_is_ready(shmp_async_t *a)
{
	int r = async_check(a);
	return r < 0 ? r : (int)atomic_load_explicit(&a->done, memory_order_acquire);
}

int shmp_async_is_successful(shmp_async_t *a)
{
	int r = async_check(a);
	if (r < 0)
		return r;
	if (!atomic_load_explicit(&a->done, memory_order_acquire))
		return -EAGAIN;
	return !a->failed;
}

void *shmp_async_results(shmp_async_t *a)
{
	int r = async_check(a);
	if (r < 0) {
		errno = -r;
		return NULL;
	}
	return a->user_out ? a->user_out : a->out;
}

void shmp_async_destroy(shmp_async_t *a)
{
	if (!a)
		return;
	if (a->pid != shmp__pid()) {
		/* A forked child's copy: its memory only; the pool's state (and
		 * its locks, maybe held at the fork) is the parent's. */
		shmp__call_free_memory(a, false);
		return;
	}
	shmp__call_destroy(a);
}

/* ---- apply ----------------------------------------------------------- */

/* A blocking call that ends without its results says why in *err as a
 * failed task would (index, skipped: the items it covers); returns r. */
static int call_fails(struct shmp_pool *p, int r, uint64_t index, uint64_t skipped, struct shmp_task_error *err)
{
	if (err)
		*err = shmp__pool_task_error(p, r, index, skipped);
	return r;
}

int shmp_pool_apply(shmp_pool_t *p, shmp_task_fn fn, const void *arg, size_t arg_size, void *result,
		    size_t result_size, struct shmp_task_error *err)
{
	struct shmp__place pl;
	struct shmp_async *c = shmp__call_begin(p, CALL_APPLY, NULL, fn, arg, NULL, arg_size, 1, result, result_size,
						true, &pl, NULL);
	if (!c)
		return call_fails(p, -errno, 0, 0, err);
	struct shmp__deadline d;
	shmp__deadline_forever(&d);
	uint64_t seq;
	int r = shmp__task_submit(p, c, &pl, 0, 1, SHMP__TT_CALLER, NULL, NULL, &d, &seq);
	if (r == 0) {
		if (shmp__tt_wait(&p->tt, seq) < 0) {
			/* The supervisor's sweep collects it (and the call ends then). */
			shmp__call_abandon(c);
			shmp__tt_kick(&p->tt);
			shmp__call_task_done(c, false); /* the submit guard */
			shmp__call_unref(c);
			return call_fails(p, -EINTR, 0, 0, err);
		}
		shmp__tt_collect(&p->tt, seq, false);
	} else {
		struct shmp_task_error e = shmp__pool_task_error(p, r, 0, 0);
		shmp__call_note_error(c, &e);
	}
	shmp__call_task_done(c, false); /* the submit guard: finishes the call */
	/* If another thread collected the task, it may still be finishing. */
	wait_done(c, &d, false);
	r = call_result(c, err);
	shmp__call_unref(c);
	return r;
}

shmp_async_t *shmp_pool_apply_async(shmp_pool_t *p, shmp_task_fn fn, const void *arg, size_t arg_size,
				    void *result, size_t result_size, const struct shmp_call_opts *opts)
{
	struct shmp__place pl;
	struct shmp_async *c = shmp__call_begin(p, CALL_APPLY, opts, fn, arg, NULL, arg_size, 1, NULL, result_size,
						false, &pl, NULL);
	if (!c)
		return NULL;
	/* The result lands in a buffer of the call's own and is copied to the
	 * caller's when the call finishes — unless the handle was destroyed
	 * first: then the caller's buffer is never written. */
	c->user_out = result;
	if (!result_size) {
		/* no result: out stays NULL */
	} else if (result_size <= sizeof c->small_out) {
		c->out = (char *)c->small_out;
	} else {
		if (!(c->out = calloc(1, result_size))) {
			shmp__call_drop(c);
			errno = ENOMEM;
			return NULL;
		}
		c->own_out = true;
	}
	/* A worker that reads the argument in place reads it later: keep a
	 * copy. */
	if (pl.in == PLACE_LOCAL && arg_size <= sizeof c->small_in) {
		memcpy(c->small_in, arg, arg_size);
		c->in = (const char *)c->small_in;
	} else if (pl.in == PLACE_LOCAL) {
		char *copy = malloc(arg_size);
		if (!copy) {
			shmp__call_drop(c);
			errno = ENOMEM;
			return NULL;
		}
		memcpy(copy, arg, arg_size);
		c->in = copy;
		c->own_in = true;
	}
	struct shmp__deadline d;
	shmp__deadline_forever(&d);
	int r = shmp__task_submit(p, c, &pl, 0, 1, 0, NULL, NULL, &d, NULL);
	if (r < 0) {
		struct shmp_task_error e = shmp__pool_task_error(p, r, 0, 0);
		shmp__call_note_error(c, &e);
	}
	shmp__call_task_done(c, false);
	return c;
}

/* ---- map ------------------------------------------------------------- */

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
	*submit_err = 0;
	struct shmp__place pl;
	struct shmp_async *c = shmp__call_begin(p, CALL_MAP, opts, fn, in, NULL, in_size, n, out, out_size, true, &pl,
						NULL);
	if (!c)
		return NULL;
	size_t copied = (pl.in == PLACE_COPY ? in_size : 0) + (pl.out == PLACE_COPY ? out_size : 0);
	size_t cs = c->chunksize ? c->chunksize : shmp__default_chunksize(n, p->nworkers); /* asked for, or Python's */
	size_t cap = chunk_cap(p, in_size, out_size, copied);
	c->chunksize = cs < cap ? cs : cap;
	struct shmp__deadline d;
	shmp__deadline_forever(&d);
	for (size_t first = 0; first < n; first += c->chunksize) {
		size_t count = n - first < c->chunksize ? n - first : c->chunksize;
		int r = shmp__task_submit(p, c, &pl, first, count, 0, NULL, NULL, &d, NULL);
		if (r < 0) {
			struct shmp_task_error e = shmp__pool_task_error(p, r, first, n - first - 1);
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
	/* In a callback: its tasks would be collected by the supervisor,
	 * which runs this callback: refused before anything is submitted. */
	if (shmp__pool_check(p) == 0 && n && shmp__pool_on_supervisor(p))
		return call_fails(p, -EDEADLK, 0, n - 1, err);
	int se;
	struct shmp_async *c = map_start(p, fn, in, in_size, n, out, out_size, opts, &se);
	if (!c)
		return call_fails(p, -errno, 0, n ? n - 1 : 0, err);
	struct shmp__deadline d;
	shmp__deadline_forever(&d);
	int r = se == -EINTR ? -EINTR : wait_done(c, &d, true);
	if (r == -EINTR) {
		/* What went out runs on; the supervisor collects it (and the
		 * call ends with the pool's reference). */
		call_fails(p, -EINTR, 0, 0, err);
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
	int r = shmp__check_item_room(p, in_copy, 0);
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
	if (arena_per > p->tt.inline_size || out_size) {
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
