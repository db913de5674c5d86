/* private: the cluster Pool's calls on the root — apply, the map family,
 * imap — and their handles. A call is queued for the dispatcher, which
 * cuts it into chunks as nodes have room; its handle is shared by the
 * caller and the pool (refs) and freed when both have let go.
 */
#include "mpi_internal.h"
#include "pool_defaults.h" /* the local Pool's defaults: the cluster Pool promises the same */

#include <stdlib.h>

/* Lock held: may a new call start? */
static int accepting(shmp_mpi_pool_t *p)
{
	switch (p->state) {
	case SHMP_POOL_RUNNING: return 0;
	case SHMP_POOL_BROKEN: return p->broken_error ? p->broken_error : -SHMP_EBROKEN;
	default: return -SHMP_ECLOSED;
	}
}

/* Chunks fit max_task_bytes and a 32-bit count. */
static int fit_chunk(shmp_mpi_pool_t *p, size_t *cs, size_t in_size, size_t out_size)
{
	size_t per = in_size > out_size ? in_size : out_size;
	if (per > p->max_bytes)
		return -EMSGSIZE; /* one item is larger than max_task_bytes */
	if (per && *cs > p->max_bytes / per)
		*cs = p->max_bytes / per;
	if (*cs > (1u << 30))
		*cs = 1u << 30;
	if (!*cs)
		*cs = 1;
	return 0;
}

static struct shmp_mpi_async *new_call(shmp_mpi_pool_t *p, int kind, shmp_task_fn fn, const void *in,
				       size_t in_size, size_t n, void *out, size_t out_size,
				       const struct shmp_mpi_call_opts *opts, int *err)
{
	struct shmp_mpi_call_opts o = { 0 };
	int r = shmp__mpi_root_only(p);
	if (!r)
		r = SHMP__OPTS(o, opts);
	if (!r && ((!in && in_size && n) || (!out && out_size && n && kind == CALL_MAP) || !fn ||
		   (in_size && n > SIZE_MAX / in_size) || (out_size && n > SIZE_MAX / out_size)))
		r = -EINVAL;
	if (!r && kind == CALL_IMAP && (o.callback || o.error_callback))
		r = -EINVAL; /* results come through imap_next */
	struct shmp__mpi_fnid id;
	if (!r)
		r = shmp__mpi_fnid_of(fn, &id);
	size_t workers = p && p->total_workers > 0 ? (size_t)p->total_workers : 1;
	size_t cs = o.chunksize ? o.chunksize : kind == CALL_MAP ? shmp__default_chunksize(n, workers) : 1;
	if (!r)
		r = fit_chunk(p, &cs, in_size, out_size);
	if (!r && kind == CALL_APPLY && in_size + out_size > p->max_bytes)
		r = -EMSGSIZE;
	struct shmp_mpi_async *c = NULL;
	if (!r && !(c = calloc(1, sizeof *c)))
		r = -ENOMEM;
	if (r < 0) {
		*err = r;
		return NULL;
	}
	*c = (struct shmp_mpi_async){ .pool = p, .kind = kind, .refs = 2, .fn = fn, .fnid = id,
				      .in = in, .in_size = in_size, .out = out, .out_size = out_size,
				      .n = n, .chunksize = cs,
				      .callback = o.callback, .error_callback = o.error_callback, .cb_arg = o.cb_arg,
				      .err.rank = -1 };
	if (kind == CALL_IMAP) {
		unsigned w = o.max_inflight ? o.max_inflight : shmp__default_inflight((unsigned)p->total_workers);
		if (!(c->it = calloc(1, sizeof *c->it))) {
			free(c);
			*err = -ENOMEM;
			return NULL;
		}
		c->it->call = c;
		c->it->window = w;
		c->it->todo_tail = &c->it->todo;
	}
	return c;
}

/* A call that never reached the pool's list (shmp__mpi_call_free unlinks). */
static void unstarted_free(struct shmp_mpi_async *c)
{
	free(c->own_out);
	free(c->own_in);
	free(c);
}

/* Queue a call (not imap) and hand out its handle. will_wait: the caller
 * waits for it at once (apply, map) and drives it then (wait_done): the
 * dispatcher is not woken for it. */
static struct shmp_mpi_async *start(shmp_mpi_pool_t *p, struct shmp_mpi_async *c, bool will_wait, int *err)
{
	shmp__mpi_lock(&p->sync);
	int r = accepting(p);
	if (r < 0) {
		shmp__mpi_unlock(&p->sync);
		unstarted_free(c);
		*err = r;
		return NULL;
	}
	shmp__mpi_call_link(p, c);
	p->calls_alive++;
	if (c->n == 0) {
		c->cut_done = true;
		c->finished = true;
		c->fnext = p->finish_list;
		p->finish_list = c;
	} else {
		shmp__mpi_enqueue(p, c);
	}
	if (!will_wait || c->n == 0)
		shmp__mpi_kick(p);
	shmp__mpi_unlock(&p->sync);
	return c;
}

/* ---- waiting: the caller drives -----------------------------------------
 *
 * A caller that waits for its call does the dispatcher's work itself
 * (shmp__mpi_step: send, poll MPI, finish) until the call is done: busy
 * (sched_yield between rounds) for HELP_SPIN_S after anything happened,
 * then sleeping on the pool's condition from 20 us doubling to 200 us
 * between rounds (a local chunk finishing, a new call, close or terminate
 * wake it at once). On the critical path of a short call (an apply's round
 * trip) no thread is woken and no fixed sleep is taken: the request goes
 * out and the answer is taken by the thread that waits for it. The
 * dispatcher thread sleeps meanwhile (p->helpers), so the root polls on
 * one thread, not two; it runs the callbacks, and the calls nobody waits
 * for.
 *
 * Signals. The waiting thread blocks the signals that can be blocked and
 * are not raised by its own faults, from the start of the wait to its end,
 * and sleeps in ppoll with the caller's own mask, which unblocks them
 * atomically for the sleep only (its sleeps are on the pool's eventfd,
 * which shmp__mpi_kick makes readable while a caller drives): a signal
 * that comes while it works stays pending and ends the next sleep at once,
 * one that comes while it sleeps ends the sleep, and its handler runs
 * then; ppoll's EINTR is returned as -EINTR when shmp_set_interruptible is
 * on (as every shmp wait does), else the wait goes on. After every round
 * it also looks for such a pending signal (sigpending), so that a caller
 * that never sleeps (results coming all the time) sees it too. No moment
 * of the wait runs a handler that the wait does not report. */
#define HELP_SPIN_S 300e-6
#define HELP_SLEEP_MIN_S 20e-6
#define HELP_SLEEP_MAX_S 200e-6

#include <pthread.h>
#include <sched.h>
#include <signal.h>

/* The process's interrupt setting. The core has no getter: set and put
 * back, only when a signal was seen (the window is two atomic exchanges). */
static bool interruptible(void)
{
	int on = shmp_set_interruptible(1);
	if (!on)
		shmp_set_interruptible(0);
	return on;
}

static void help_mask(sigset_t *block)
{
	sigfillset(block);
	static const int sync_sigs[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT };
	for (unsigned i = 0; i < sizeof sync_sigs / sizeof sync_sigs[0]; i++)
		sigdelset(block, sync_sigs[i]);
}

/* A signal is pending that the caller's mask lets through and that has a
 * handler (a default or ignored one is not the program's business here). */
static bool signal_waiting(const sigset_t *user)
{
	sigset_t pend;
	if (sigpending(&pend))
		return false;
	for (int s = 1; s < NSIG; s++) {
		if (sigismember(&pend, s) != 1 || sigismember(user, s) == 1)
			continue;
		struct sigaction sa;
		if (sigaction(s, NULL, &sa) == 0 && sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN)
			return true;
	}
	return false;
}

int shmp__mpi_drive(struct shmp_mpi_pool *p, const bool *until, double deadline)
{
	if (*until)
		return 0;
	sigset_t block, user;
	help_mask(&block);
	pthread_sigmask(SIG_BLOCK, &block, &user);
	p->helpers++;
	double last = shmp__mpi_now();
	unsigned sleeps = 0;
	int r = 0;
	while (!*until) {
		if (!p->driving && !p->stop_thread) {
			bool remote;
			if (shmp__mpi_step(p, true, &remote)) {
				last = shmp__mpi_now();
				sleeps = 0;
			}
			if (*until)
				break;
		}
		double left = shmp__mpi_left(deadline);
		bool sig = signal_waiting(&user);
		if (!sig && left <= 0) {
			r = -ETIMEDOUT;
			break;
		}
		if (!sig && shmp__mpi_now() - last < HELP_SPIN_S) {
			shmp__mpi_unlock(&p->sync);
			sched_yield();
			shmp__mpi_lock(&p->sync);
			continue;
		}
		double s = HELP_SLEEP_MIN_S * (double)(1u << (sleeps < 6 ? sleeps : 6));
		sleeps++;
		if (s > HELP_SLEEP_MAX_S)
			s = HELP_SLEEP_MAX_S;
		/* A pending signal ends it at once (and its handler runs). */
		if (shmp__mpi_esleep(&p->sync, s < left ? s : left, &user) == -EINTR && interruptible()) {
			r = -EINTR;
			break;
		}
	}
	pthread_sigmask(SIG_SETMASK, &user, NULL); /* a signal now is the next wait's */
	p->helpers--;
	/* What is left (other calls) is the dispatcher's again. Woken always,
	 * after the result is in: measured on a loaded 2-CPU machine (2 ranks,
	 * 3000 applies, three runs each), waking it on every return gave a p99
	 * round trip of 0.2 ms, waking it only when work was left 5-9 ms, with
	 * the same median. Why is not established (a scheduler effect). */
	shmp__mpi_kick(p);
	return r;
}

/* Wait (lock held) for the call to be ready. */
static int wait_done(shmp_mpi_pool_t *p, struct shmp_mpi_async *c, double deadline)
{
	return shmp__mpi_drive(p, &c->done, deadline);
}

static int result_of(struct shmp_mpi_async *c, struct shmp_mpi_task_error *err)
{
	if (err)
		*err = c->failed ? c->err
				 : (struct shmp_mpi_task_error){ .error = 0, .exit_status = -1, .rank = -1 };
	return c->failed ? c->err.error : 0;
}

/* A call refused or failed before it ran; returns r. A broken pool's
 * error names the rank that broke it (an initializer failing there). */
static int set_err(shmp_mpi_pool_t *p, struct shmp_mpi_task_error *err, int r)
{
	if (!err)
		return r;
	int rank = -1;
	if (p && r < 0 && shmp__mpi_root_only(p) == 0) {
		shmp__mpi_lock(&p->sync);
		if (p->state == SHMP_POOL_BROKEN && r == p->broken_error)
			rank = p->broken_rank;
		shmp__mpi_unlock(&p->sync);
	}
	*err = (struct shmp_mpi_task_error){ .error = r, .exit_status = -1, .rank = rank };
	return r;
}

/* apply and map: the call just started (NULL: it did not, errno says why)
 * is waited for and let go. */
static int get_and_destroy(shmp_mpi_pool_t *p, struct shmp_mpi_async *c, struct shmp_mpi_task_error *err)
{
	if (!c)
		return set_err(p, err, -errno);
	int r = shmp_mpi_async_get(c, SHMP_FOREVER, err);
	shmp_mpi_async_destroy(c);
	return r;
}

static struct shmp_mpi_async *apply_start(shmp_mpi_pool_t *p, shmp_task_fn fn, const void *arg, size_t arg_size,
					  void *result, size_t result_size, const struct shmp_mpi_call_opts *opts,
					  bool will_wait)
{
	int r = 0;
	struct shmp_mpi_async *c = new_call(p, CALL_APPLY, fn, arg, arg_size, 1, NULL, result_size, opts, &r);
	/* The argument is sent later: keep a copy, as the local Pool does not
	 * need to (it copies at submit). */
	if (c && ((result_size && !(c->own_out = calloc(1, result_size))) ||
		  (arg_size && !(c->own_in = malloc(arg_size))))) {
		unstarted_free(c);
		c = NULL;
		r = -ENOMEM;
	}
	if (c) {
		if (arg_size)
			c->in = memcpy(c->own_in, arg, arg_size);
		c->user_out = result;
		c = start(p, c, will_wait, &r);
	}
	if (!c)
		errno = -r;
	return c;
}

shmp_mpi_async_t *shmp_mpi_pool_apply_async(shmp_mpi_pool_t *p, shmp_task_fn fn, const void *arg,
					    size_t arg_size, void *result, size_t result_size,
					    const struct shmp_mpi_call_opts *opts)
{
	return apply_start(p, fn, arg, arg_size, result, result_size, opts, false);
}

int shmp_mpi_pool_apply(shmp_mpi_pool_t *p, shmp_task_fn fn, const void *arg, size_t arg_size, void *result,
			size_t result_size, struct shmp_mpi_task_error *err)
{
	if ((!arg && arg_size) || (!result && result_size))
		return set_err(p, err, -EINVAL);
	return get_and_destroy(p, apply_start(p, fn, arg, arg_size, result, result_size, NULL, true), err);
}

static struct shmp_mpi_async *map_start(shmp_mpi_pool_t *p, shmp_task_fn fn, const void *in, size_t in_size,
					size_t n, void *out, size_t out_size, const struct shmp_mpi_call_opts *opts,
					bool will_wait)
{
	int r = 0;
	struct shmp_mpi_async *c = new_call(p, CALL_MAP, fn, in, in_size, n, out, out_size, opts, &r);
	if (c)
		c = start(p, c, will_wait, &r);
	if (!c)
		errno = -r;
	return c;
}

shmp_mpi_async_t *shmp_mpi_pool_map_async(shmp_mpi_pool_t *p, shmp_task_fn fn, const void *in, size_t in_size,
					  size_t n, void *out, size_t out_size,
					  const struct shmp_mpi_call_opts *opts)
{
	return map_start(p, fn, in, in_size, n, out, out_size, opts, false);
}

shmp_mpi_async_t *shmp_mpi_pool_starmap_async(shmp_mpi_pool_t *p, shmp_task_fn fn, const void *in,
					      size_t in_size, size_t n, void *out, size_t out_size,
					      const struct shmp_mpi_call_opts *opts)
{
	return shmp_mpi_pool_map_async(p, fn, in, in_size, n, out, out_size, opts);
}

int shmp_mpi_pool_map(shmp_mpi_pool_t *p, shmp_task_fn fn, const void *in, size_t in_size, size_t n, void *out,
		      size_t out_size, const struct shmp_mpi_call_opts *opts, struct shmp_mpi_task_error *err)
{
	return get_and_destroy(p, map_start(p, fn, in, in_size, n, out, out_size, opts, true), err);
}

int shmp_mpi_pool_starmap(shmp_mpi_pool_t *p, shmp_task_fn fn, const void *in, size_t in_size, size_t n,
			  void *out, size_t out_size, const struct shmp_mpi_call_opts *opts,
			  struct shmp_mpi_task_error *err)
{
	return shmp_mpi_pool_map(p, fn, in, in_size, n, out, out_size, opts, err);
}

/* ---- handles ---------------------------------------------------------- */

int shmp_mpi_async_wait(shmp_mpi_async_t *a, double timeout)
{
	if (!a)
		return -EINVAL;
	double deadline;
	int r = shmp__mpi_wait_begin(a->pool->creator, timeout, &deadline);
	if (r < 0)
		return r;
	shmp__mpi_lock(&a->pool->sync);
	r = wait_done(a->pool, a, deadline);
	shmp__mpi_unlock(&a->pool->sync);
	return r;
}

int shmp_mpi_async_get(shmp_mpi_async_t *a, double timeout, struct shmp_mpi_task_error *err)
{
	int r = shmp_mpi_async_wait(a, timeout);
	if (r < 0)
		return set_err(a ? a->pool : NULL, err, r);
	shmp__mpi_lock(&a->pool->sync);
	r = result_of(a, err);
	shmp__mpi_unlock(&a->pool->sync);
	return r;
}

/* The two predicates: done, and done without failure (-EAGAIN until done). */
static int async_query(shmp_mpi_async_t *a, bool successful)
{
	if (!a)
		return -EINVAL;
	if (shmp__mpi_foreign(a->pool->creator))
		return -ECHILD;
	shmp__mpi_lock(&a->pool->sync);
	int r = !successful ? a->done : a->done ? !a->failed : -EAGAIN;
	shmp__mpi_unlock(&a->pool->sync);
	return r;
}

int shmp_mpi_async_is_ready(shmp_mpi_async_t *a)
{
	return async_query(a, false);
}

int shmp_mpi_async_is_successful(shmp_mpi_async_t *a)
{
	return async_query(a, true);
}

void *shmp_mpi_async_results(shmp_mpi_async_t *a)
{
	if (!a || shmp__mpi_foreign(a->pool->creator)) {
		errno = a ? ECHILD : EINVAL;
		return NULL;
	}
	if (a->kind == CALL_APPLY)
		return a->user_out ? a->user_out : a->own_out;
	return a->out;
}

void shmp_mpi_async_destroy(shmp_mpi_async_t *a)
{
	/* A copy inherited through fork is the parent's: leave it (its lock
	 * is shared with the parent, its bookkeeping is not ours). */
	if (!a || shmp__mpi_foreign(a->pool->creator))
		return;
	shmp_mpi_pool_t *p = a->pool;
	shmp__mpi_lock(&p->sync);
	a->user_out = NULL; /* a late finish must not write it */
	a->dropped = true;
	shmp__mpi_call_unref(a);
	shmp__mpi_unlock(&p->sync);
}

/* ---- imap ------------------------------------------------------------- */

/* Cut the next chunk of an imap call into it->todo (lock held on entry and
 * exit; dropped while the input function runs). 1 cut, 0 nothing left. */
static int imap_cut(shmp_mpi_pool_t *p, struct shmp_mpi_imap *it)
{
	struct shmp_mpi_async *c = it->call;
	if (it->input_done || it->destroyed)
		return 0;
	uint64_t first = it->items_cut;
	if (first >= c->n) {
		it->input_done = true;
		return 0;
	}
	size_t count = c->n - first < c->chunksize ? c->n - first : c->chunksize;
	struct shmp__mpi_chunk *ch = calloc(1, sizeof *ch);
	if (ch && c->out_size)
		ch->rbuf = malloc(count * c->out_size);
	if (!ch || (c->out_size && !ch->rbuf)) {
		free(ch);
		it->input_done = true;
		it->input_error = -ENOMEM;
		return 0;
	}
	if (it->input) {
		if (c->in_size && !(ch->own_in = malloc(count * c->in_size))) {
			free(ch->rbuf);
			free(ch);
			it->input_done = true;
			it->input_error = -ENOMEM;
			return 0;
		}
		size_t got = 0;
		int r = 0;
		shmp__mpi_unlock(&p->sync);
		for (; got < count; got++) {
			r = it->input(it->input_ctx, ch->own_in ? ch->own_in + got * c->in_size : NULL, first + got);
			if (r <= 0)
				break;
		}
		shmp__mpi_lock(&p->sync);
		if (r < 0) {
			/* Python: the items of the chunks before, then the
			 * error; this chunk is not run. */
			shmp__mpi_chunk_free(ch);
			it->input_done = true;
			it->input_error = r;
			return 0;
		}
		if (got < count)
			it->input_done = true; /* the input ended */
		if (got == 0) {
			shmp__mpi_chunk_free(ch);
			return 0;
		}
		count = got;
		ch->in = ch->own_in;
	} else {
		ch->in = c->in_size ? c->in + first * c->in_size : NULL;
	}
	if (it->destroyed || p->term_done || p->state == SHMP_POOL_BROKEN) {
		shmp__mpi_chunk_free(ch);
		it->input_done = true;
		return 0;
	}
	ch->call = c;
	ch->first = first;
	ch->count = (uint32_t)count;
	ch->dest = ch->rbuf;
	ch->seq = it->cut++;
	it->items_cut = first + count;
	if (it->items_cut >= c->n)
		it->input_done = true;
	c->pending++;
	bool was_empty = !it->todo;
	ch->next = NULL;
	*it->todo_tail = ch;
	it->todo_tail = &ch->next;
	if (was_empty) {
		/* not queued (or about to leave the queue): queue the call */
		bool queued = false;
		for (struct shmp_mpi_async *q = p->queue; q; q = q->qnext)
			queued |= q == c;
		if (!queued)
			shmp__mpi_enqueue(p, c);
	}
	return 1;
}

static void imap_fill(shmp_mpi_pool_t *p, struct shmp_mpi_imap *it)
{
	bool any = false;
	while (it->cut - it->consumed < it->window && imap_cut(p, it))
		any = true;
	struct shmp_mpi_async *c = it->call;
	if (it->input_done) {
		c->cut_done = true;
		if (!c->pending && !c->finished) {
			/* nothing in flight: finished here */
			c->finished = true;
			c->fnext = p->finish_list;
			p->finish_list = c;
			any = true;
		}
	}
	if (any)
		shmp__mpi_kick(p);
}

static shmp_mpi_imap_t *imap_start(shmp_mpi_pool_t *p, bool ordered, shmp_task_fn fn, const void *in,
				   size_t in_size, size_t n, size_t out_size, shmp_input_fn input, void *input_ctx,
				   const struct shmp_mpi_call_opts *opts)
{
	int r = 0;
	if (!input && !in && in_size && n) {
		errno = EINVAL;
		return NULL;
	}
	struct shmp_mpi_async *c = new_call(p, CALL_IMAP, fn, input ? NULL : in, input ? 0 : in_size, n, NULL,
					    out_size, opts, &r);
	if (!c) {
		errno = -r;
		return NULL;
	}
	c->in_size = in_size;
	struct shmp_mpi_imap *it = c->it;
	it->ordered = ordered;
	it->input = input;
	it->input_ctx = input_ctx;
	shmp__mpi_lock(&p->sync);
	if ((r = accepting(p)) < 0) {
		shmp__mpi_unlock(&p->sync);
		free(it);
		free(c);
		errno = -r;
		return NULL;
	}
	shmp__mpi_call_link(p, c);
	p->calls_alive++;
	imap_fill(p, it);
	shmp__mpi_unlock(&p->sync);
	return it;
}

shmp_mpi_imap_t *shmp_mpi_pool_imap(shmp_mpi_pool_t *p, shmp_task_fn fn, const void *in, size_t in_size,
				    size_t n, size_t out_size, shmp_input_fn input, void *input_ctx,
				    const struct shmp_mpi_call_opts *opts)
{
	return imap_start(p, true, fn, in, in_size, n, out_size, input, input_ctx, opts);
}

shmp_mpi_imap_t *shmp_mpi_pool_imap_unordered(shmp_mpi_pool_t *p, shmp_task_fn fn, const void *in,
					      size_t in_size, size_t n, size_t out_size, shmp_input_fn input,
					      void *input_ctx, const struct shmp_mpi_call_opts *opts)
{
	return imap_start(p, false, fn, in, in_size, n, out_size, input, input_ctx, opts);
}

/* A ready chunk to hand out next, unlinked, or NULL. */
static struct shmp__mpi_chunk *take_ready(struct shmp_mpi_imap *it)
{
	for (struct shmp__mpi_chunk **pp = &it->ready; *pp; pp = &(*pp)->next) {
		struct shmp__mpi_chunk *ch = *pp;
		if (!it->ordered || ch->seq == it->cursor) {
			*pp = ch->next;
			ch->next = NULL;
			it->cursor++;
			return ch;
		}
	}
	return NULL;
}

int shmp_mpi_imap_next(shmp_mpi_imap_t *it, void *out, uint64_t *index, double timeout,
		       struct shmp_mpi_task_error *err)
{
	if (!it || (!out && it->call->out_size))
		return -EINVAL;
	struct shmp_mpi_async *c = it->call;
	shmp_mpi_pool_t *p = c->pool;
	double deadline;
	int r = shmp__mpi_wait_begin(p->creator, timeout, &deadline);
	if (r < 0)
		return r;
	shmp__mpi_lock(&p->sync);
	for (;;) {
		struct shmp__mpi_chunk *ch = it->cur;
		if (ch && ch->taken < ch->count) {
			uint32_t i = ch->taken++;
			uint64_t idx = ch->first + i;
			if (index)
				*index = idx;
			int st = shmp__mpi_chunk_status(ch);
			if (st) {
				struct shmp_mpi_task_error e;
				shmp__mpi_chunk_error(p, ch, &e);
				if (idx < e.index) {
					st = 0; /* ran before the failing item */
				} else if (idx > e.index) {
					e.error = -SHMP_ESKIPPED;
					e.index = idx;
					e.skipped = 0;
					st = -SHMP_ESKIPPED;
				}
				if (st) {
					if (err)
						*err = e;
					shmp__mpi_unlock(&p->sync);
					return st;
				}
			}
			if (c->out_size)
				memcpy(out, ch->rbuf + (size_t)i * c->out_size, c->out_size);
			if (err)
				*err = (struct shmp_mpi_task_error){ .exit_status = -1, .rank = -1 };
			shmp__mpi_unlock(&p->sync);
			return 1;
		}
		if (ch) {
			it->cur = NULL;
			it->consumed++;
			shmp__mpi_chunk_free(ch);
			imap_fill(p, it);
		}
		if ((it->cur = take_ready(it)))
			continue;
		if (it->input_done && it->consumed == it->cut) {
			r = it->input_error;
			if (err)
				*err = (struct shmp_mpi_task_error){ .error = r, .exit_status = -1, .rank = -1,
								     .index = it->items_cut };
			shmp__mpi_unlock(&p->sync);
			return r;
		}
		imap_fill(p, it);
		double left = shmp__mpi_left(deadline);
		if (left <= 0) {
			shmp__mpi_unlock(&p->sync);
			return -ETIMEDOUT;
		}
		if (shmp__mpi_wait(&p->sync, left) == -EINTR) {
			shmp__mpi_unlock(&p->sync);
			return -EINTR;
		}
	}
}

void shmp_mpi_imap_destroy(shmp_mpi_imap_t *it)
{
	if (!it || shmp__mpi_foreign(it->call->pool->creator))
		return; /* the parent's, as for async handles */
	struct shmp_mpi_async *c = it->call;
	shmp_mpi_pool_t *p = c->pool;
	shmp__mpi_lock(&p->sync);
	it->destroyed = true;
	it->input_done = true;
	/* Chunks not sent yet are dropped; those out come back dead. */
	for (struct shmp_mpi_async **q = &p->queue; *q; q = &(*q)->qnext)
		if (*q == c) {
			*q = c->qnext;
			break;
		}
	p->queue_tail = &p->queue;
	while (*p->queue_tail)
		p->queue_tail = &(*p->queue_tail)->qnext;
	while (it->todo) {
		struct shmp__mpi_chunk *ch = it->todo;
		it->todo = ch->next;
		c->pending--;
		shmp__mpi_chunk_free(ch);
	}
	it->todo_tail = &it->todo;
	for (uint32_t s = 0; s < p->nslots; s++) {
		struct shmp__mpi_chunk *ch = p->slots[s];
		if (ch && ch->call == c && !ch->dead) {
			ch->dead = true;
			ch->call = NULL;
			c->pending--;
		}
	}
	c->cut_done = true;
	if (!c->pending && !c->finished) {
		c->finished = true;
		c->fnext = p->finish_list;
		p->finish_list = c;
	}
	shmp__mpi_kick(p);
	shmp__mpi_call_unref(c);
	shmp__mpi_unlock(&p->sync);
}
