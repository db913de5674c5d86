/* private: Pool and ThreadPool — create, close, terminate, join, destroy,
 * stats, and the pool's state and its one mapping to an error. The other
 * files are listed in pool_internal.h.
 *
 * Lifetime (src/core/internal.h's one rule): the handle is the pool; destroy
 * frees it (terminating first if it was not closed), in the process that
 * created it. A forked child's copy of the handle is only memory of the
 * child: its calls return -ECHILD and its destroy frees that memory and
 * nothing shared — never its parent's pool, workers or segment.
 *
 * Crash safety: the pool's process killed takes everything with it: the
 * zygote watches it through a pidfd and kills its workers (its own
 * unreaped children), the workers die with the zygote (PDEATHSIG), and the
 * pool's data segment is anonymous. */
#include "pool_internal.h"
#include "waitset.h"
#include "registry_internal.h"

#include <stdio.h>
#include <stdlib.h>

/* The task table's records (320 bytes each with their inline payload) are
 * used in turn, so a pool's first 4096 tasks touch every page of them in
 * the pool's process and in each worker, and a lap over a larger table
 * keeps missing the cache: 16384 made a first imap (chunksize 1) run at
 * 0.33-0.47 of a warm one, 4096 at 0.5-0.65 (1024: 0.64-0.87), with
 * apply_async bursts no slower. */
#define DEFAULT_CAPACITY 4096u
#define DEFAULT_TASK_BYTES ((size_t)64 << 20)
#define DEFAULT_SEGMENT ((size_t)256 << 20)
#define INLINE_SIZE 128u

/* Pinned: SHMP__POOL_VERSION's layout (the task table's are in tasktab.c). */
_Static_assert(sizeof(struct shmp__wk) == 64, "worker table entry");
_Static_assert(offsetof(struct shmp__wk, state) == 4 && offsetof(struct shmp__wk, init_code) == 12 && offsetof(struct shmp__wk, tasks_done) == 24 &&
		       offsetof(struct shmp__wk, cur_index) == 32,
	       "worker table fields");
_Static_assert(sizeof(struct shmp__pool_sh) == 832, "pool header size");
_Static_assert(offsetof(struct shmp__pool_sh, version) == 4 && offsetof(struct shmp__pool_sh, capacity) == 8 &&
		       offsetof(struct shmp__pool_sh, nworkers) == 12 && offsetof(struct shmp__pool_sh, rec_size) == 16 &&
		       offsetof(struct shmp__pool_sh, recs_off) == 32 &&
		       offsetof(struct shmp__pool_sh, wk_off) == 40 && offsetof(struct shmp__pool_sh, state) == 56 &&
		       offsetof(struct shmp__pool_sh, stop) == 60 && offsetof(struct shmp__pool_sh, supervision) == 68,
	       "pool header fields");
_Static_assert(offsetof(struct shmp__pool_sh, tt) == 128 && offsetof(struct shmp__pool_sh, tt.head) == 128 &&
		       offsetof(struct shmp__pool_sh, tt.tail) == 192 &&
		       offsetof(struct shmp__pool_sh, tt.task_futex) == 256 &&
		       offsetof(struct shmp__pool_sh, tt.submitted) == 448 && offsetof(struct shmp__pool_sh, deaths) == 640 &&
		       offsetof(struct shmp__pool_sh, cb_errors) == 768,
	       "pool header: the task table's words and the counters");

int shmp__pool_check(const shmp_pool_t *p)
{
	if (!p)
		return -EINVAL;
	/* The cached pid (reset in a fork child): no system call per call. */
	if (p->pid != shmp__pid())
		return -ECHILD; /* inherited through fork: the workers are not ours */
	return 0;
}

int shmp__pool_error(struct shmp_pool *p, int *code)
{
	int e = 0, c = 0;
	switch (atomic_load_explicit(&p->state, memory_order_acquire)) {
	case SHMP_POOL_RUNNING:
		break;
	case SHMP_POOL_BROKEN: {
		uint64_t b = atomic_load_explicit(&p->broken, memory_order_acquire);
		e = b ? (int32_t)(b >> 32) : -SHMP_EBROKEN;
		c = e == -SHMP_EINIT ? (int32_t)(uint32_t)b : 0;
		break;
	}
	default:
		e = -SHMP_ECLOSED;
	}
	if (code)
		*code = c;
	return e;
}

int shmp__pool_wait_error(struct shmp_pool *p)
{
	int e = shmp__pool_error(p, NULL);
	return e && atomic_load_explicit(&p->state, memory_order_relaxed) != SHMP_POOL_CLOSED ? e : 0;
}

struct shmp_task_error shmp__pool_task_error(struct shmp_pool *p, int r, uint64_t index, uint64_t skipped)
{
	struct shmp_task_error e = { .error = r, .exit_status = -1, .index = index, .skipped = skipped };
	if (r == -SHMP_EINIT)
		shmp__pool_error(p, &e.code);
	return e;
}

bool shmp__pool_on_supervisor(struct shmp_pool *p)
{
	return p->sup_started && pthread_equal(pthread_self(), p->sup);
}

void shmp__pool_set_state(struct shmp_pool *p, uint32_t to)
{
	uint32_t s = atomic_load_explicit(&p->state, memory_order_relaxed);
	while ((s == SHMP_POOL_RUNNING || s == SHMP_POOL_CLOSED) &&
	       !atomic_compare_exchange_weak_explicit(&p->state, &s, to, memory_order_acq_rel,
						      memory_order_relaxed))
		;
	atomic_store_explicit(&p->sh->state, atomic_load(&p->state), memory_order_relaxed);
}

void shmp__pool_break(struct shmp_pool *p, int error, int code)
{
	uint64_t none = 0;
	atomic_compare_exchange_strong(&p->broken, &none, (uint64_t)(uint32_t)error << 32 | (uint32_t)code);
	shmp__pool_set_state(p, SHMP_POOL_BROKEN);
	shmp__pool_stop_workers(p);
}

static void set_stop(struct shmp_pool *p, uint32_t to)
{
	atomic_store_explicit(&p->stop, to, memory_order_release);
	shmp__tt_stop(&p->tt, to);
}

void shmp__pool_stop_workers(struct shmp_pool *p)
{
	set_stop(p, SHMP__STOP_NOW);
}

static unsigned pow2_at_least(unsigned v)
{
	unsigned c = 1;
	while (c < v && c < SHMP_POOL_MAX_QUEUE)
		c <<= 1;
	return c;
}

/* A pool in a registry names itself in its directory, so `shmp show` finds
 * it: opts.name, else "pool", "pool.2"... Best effort: a pool that cannot
 * be named (directory full) still works. */
/* Name the pool in its registry's directory. A name the caller chose and
 * cannot have (taken: -EEXIST; invalid; the directory full) is the
 * caller's error, as for pipelines; the default name takes the first of
 * "pool", "pool.2"... that is free, and leaves the pool unnamed if none. */
static int register_pool(struct shmp_pool *p, const char *name)
{
	if (name) {
		int r = shmp__registry_add(p->seg, name, SHMP_TYPE_POOL, p->sh_off);
		if (r == 0)
			p->registered = true;
		return r;
	}
	char buf[32];
	for (int i = 1; i <= 64; i++) {
		snprintf(buf, sizeof buf, i == 1 ? "pool" : "pool.%d", i);
		int r = shmp__registry_add(p->seg, buf, SHMP_TYPE_POOL, p->sh_off);
		if (r == 0) {
			p->registered = true;
			return 0;
		}
		if (r != -EEXIST)
			return 0;
	}
	return 0;
}

/* The memory of this process only (a forked child's copy ends here too). */
static void free_local(struct shmp_pool *p)
{
	if (p->zsock >= 0)
		close(p->zsock);
	if (p->zygote_pidfd >= 0)
		close(p->zygote_pidfd);
	if (p->wp)
		for (int w = 0; w < p->nworkers; w++)
			if (p->wp[w].pidfd >= 0)
				close(p->wp[w].pidfd);
	shmp__arena_fini(&p->arena);
	shmp__waitset_free(p->ws0); /* the supervisor never took it */
	free(p->wp);
	free(p->free_slots);
	while (p->spare) {
		struct shmp_async *c = p->spare;
		p->spare = c->next_finish;
		free(c);
	}
	free(p->tw);
	free(p->tw_joinable);
	pthread_mutex_destroy(&p->submit_mu);
	pthread_mutex_destroy(&p->calls_mu);
	pthread_mutex_destroy(&p->notify_mu);
	free(p->notify_free);
	pthread_mutex_destroy(&p->wk_mu);
	free(p);
}

void shmp__pool_free(struct shmp_pool *p)
{
	if (!p)
		return;
	if (p->pid != getpid()) {
		/* A forked child's copy: its call handles and its mappings are
		 * its own; nothing shared is touched. */
		for (unsigned i = 0; i < sizeof p->pages / sizeof p->pages[0]; i++)
			free(p->pages[i]);
		shmp__tt_fini(&p->tt, false);
		if (p->dseg)
			shmp_segment_destroy(p->dseg);
		free_local(p);
		return;
	}
	if (p->registered)
		shmp__registry_forget(p->seg, p->sh_off);
	shmp__calls_detach(p);
	/* A registry's segment outlives the pool: give back what is in it
	 * (the workers are gone: no late wake-up reaches a notify word). */
	shmp__tt_fini(&p->tt, p->registry && p->seg);
	if (p->registry && p->seg) {
		for (uint32_t i = 0; i < p->n_notify_free; i++)
			shmp_segment_free(p->seg, p->notify_free[i]);
		shmp__free_ptr(p->seg, p->wk);
		shmp__free_ptr(p->seg, p->sh);
	}
	if (p->dseg)
		shmp_segment_destroy(p->dseg);
	free_local(p);
}

/* The segments: the shared state in the registry's segment (or the pool's
 * own), task data in an arena of the pool's own anonymous segment. */
static int make_segments(struct shmp_pool *p, const struct shmp_pool_opts *o, unsigned cap, int workers)
{
	size_t data = o->segment_size ? o->segment_size : DEFAULT_SEGMENT;
	size_t meta = 65536;
	if (o->registry) {
		if (!(p->seg = shmp_registry_segment(o->registry)))
			return -EINVAL;
		p->registry = o->registry;
	} else {
		meta += shmp__tt_shared_size(cap, INLINE_SIZE) + (size_t)workers * sizeof(struct shmp__wk);
	}
	/* The allocator rounds a block up by at most a quarter: the arena is
	 * one block. Address space only: pages cost nothing until touched. */
	if (data > ((size_t)1 << 46))
		return -SHMP_ESEGFULL;
	if (!(p->dseg = shmp_segment_create(NULL, meta + data + data / 4 + ((size_t)1 << 20), NULL)))
		return -errno;
	if (!p->seg)
		p->seg = p->dseg;
	return 0;
}

static int make_arena(struct shmp_pool *p, const struct shmp_pool_opts *o)
{
	size_t data = o->segment_size ? o->segment_size : DEFAULT_SEGMENT;
	uint64_t off = 0;
	if (data) {
		int r = shmp__segment_alloc(p->dseg, data, 64, &off, false);
		if (r < 0)
			return r;
	}
	return shmp__arena_init(&p->arena, off, data);
}

static shmp_pool_t *pool_new(int workers, const struct shmp_pool_opts *opts, bool threads)
{
	struct shmp_pool_opts o;
	/* A queue_capacity past the table's limit is refused, not capped
	 * silently. */
	if (SHMP__OPTS(o, opts) < 0 || workers <= 0 || o.max_tasks_per_child < 0 ||
	    (o.max_task_bytes && o.max_task_bytes < 16) || o.queue_capacity > SHMP_POOL_MAX_QUEUE ||
	    !(o.idle_poll >= 0 && o.idle_poll <= SHMP_POOL_MAX_IDLE_POLL)) {
		errno = EINVAL;
		return NULL;
	}
	if (workers == SHMP_CPUS) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		workers = n > 0 ? (int)n : 1;
	}
	if (workers > (int)SHMP__REC_WORKER_MASK) {
		errno = EINVAL;
		return NULL;
	}
	struct shmp_pool *p = calloc(1, sizeof *p);
	if (!p) {
		errno = ENOMEM;
		return NULL;
	}
	p->pid = getpid();
	p->zsock = p->zygote_pidfd = -1;
	p->threads = threads;
	p->wops = threads ? &shmp__thread_workers : &shmp__process_workers;
	p->nworkers = workers;
	p->init = o.initializer;
	p->initarg = o.initarg;
	p->max_tasks = o.max_tasks_per_child;
	p->max_task_bytes = o.max_task_bytes ? o.max_task_bytes : DEFAULT_TASK_BYTES;
	pthread_mutex_init(&p->submit_mu, NULL);
	pthread_mutex_init(&p->calls_mu, NULL);
	pthread_mutex_init(&p->notify_mu, NULL);
	pthread_mutex_init(&p->wk_mu, NULL);
	unsigned cap = pow2_at_least(o.queue_capacity ? o.queue_capacity : DEFAULT_CAPACITY);
	bool started = false;
	int e;
	if ((e = -make_segments(p, &o, cap, workers)) > 0)
		goto fail;
	e = ENOMEM;
	if (!(p->wp = calloc((size_t)workers, sizeof *p->wp)))
		goto fail;
	for (int w = 0; w < workers; w++)
		p->wp[w].pidfd = p->wp[w].armed_fd = -1;
	if (!(p->sh = shmp__alloc_ptr(p->seg, sizeof *p->sh, 64, &p->sh_off))) {
		e = errno;
		goto fail;
	}
	/* In the pool's own fresh segment the table is zero already, and not
	 * writing it keeps its pages untouched until tasks use them (a pool
	 * starts in a fraction of the time). */
	if ((e = -shmp__tt_init(&p->tt, p->seg, !p->registry, &p->sh->tt, &p->sh->stop, cap, INLINE_SIZE,
				&shmp__pool_tt_ops, p, &p->sh->recs_off)) > 0)
		goto fail;
	/* Before any worker (or the zygote) exists: they inherit it. */
	p->tt.idle_poll_ns = (uint64_t)(o.idle_poll * 1e9);
	if (o.idle_poll > 0 && !p->tt.idle_poll_ns)
		p->tt.idle_poll_ns = 1;
	if (!(p->wk = shmp__alloc_ptr(p->seg, (size_t)workers * sizeof *p->wk, 64, &p->sh->wk_off))) {
		e = errno;
		goto fail;
	}
	if ((e = -make_arena(p, &o)) > 0)
		goto fail;
	struct shmp__pool_sh *sh = p->sh;
	sh->magic = SHMP__POOL_MAGIC;
	sh->version = SHMP__POOL_VERSION;
	sh->capacity = cap;
	sh->nworkers = (uint32_t)workers;
	sh->rec_size = p->tt.rec_size;
	sh->inline_size = p->tt.inline_size;
	sh->max_tasks = p->max_tasks;
	sh->threads = threads;
	sh->owner_pid = p->pid;
	/* Named before any worker starts: a name refused fails create with
	 * nothing to undo but memory. */
	if (p->registry && (e = -register_pool(p, o.name)) > 0)
		goto fail;
	started = true;
	int r = p->wops->start(p);
	if (r < 0) {
		e = -r;
		goto fail;
	}
	/* The supervisor's waitset, made here (after the forks: no worker or
	 * zygote inherits its ring) so that stats can say at once which path
	 * supervises; the supervisor takes it (one io_uring set up per pool,
	 * not a probe and then another). */
	if (!(p->ws0 = shmp__waitset_new())) {
		e = ENOMEM;
		goto fail;
	}
	p->supervision = shmp__waitset_uring(p->ws0);
	r = shmp__thread_create(&p->sup, shmp__supervisor_main, p);
	if (r) {
		e = r; /* without a supervisor nothing can be collected: undo */
		goto fail;
	}
	p->sup_started = true;
	sh->supervision = (uint32_t)p->supervision;
	return p;
fail:
	if (started)
		p->wops->abort(p);
	shmp__pool_free(p);
	errno = e;
	return NULL;
}

shmp_pool_t *shmp_pool_create(int workers, const struct shmp_pool_opts *opts)
{
	return pool_new(workers, opts, false);
}

shmp_pool_t *shmp_threadpool_create(int workers, const struct shmp_pool_opts *opts)
{
	return pool_new(workers, opts, true);
}

int shmp_pool_close(shmp_pool_t *p)
{
	int r = shmp__pool_check(p);
	if (r < 0)
		return r;
	uint32_t s = SHMP_POOL_RUNNING;
	if (atomic_compare_exchange_strong(&p->state, &s, SHMP_POOL_CLOSED))
		atomic_store(&p->sh->state, SHMP_POOL_CLOSED);
	/* Serialize with submitters: once we hold the lock no task is being
	 * added, so workers can drain and leave. */
	pthread_mutex_lock(&p->submit_mu);
	if (atomic_load(&p->stop) == SHMP__STOP_NONE)
		set_stop(p, SHMP__STOP_DRAIN);
	pthread_mutex_unlock(&p->submit_mu);
	shmp__tt_kick(&p->tt);
	return 0;
}

int shmp_pool_terminate(shmp_pool_t *p)
{
	int r = shmp__pool_check(p);
	if (r < 0)
		return r;
	shmp__pool_set_state(p, SHMP_POOL_TERMINATED);
	shmp__pool_stop_workers(p);
	p->wops->kill(p);
	shmp__tt_kick(&p->tt);
	return 0;
}

static int pool_join(struct shmp_pool *p, double timeout, bool interruptible)
{
	/* A timeout that means nothing (NaN) is refused whatever the state. */
	struct shmp__deadline d;
	if (shmp__deadline_init(&d, timeout) < 0)
		return -EINVAL;
	if (atomic_load(&p->state) == SHMP_POOL_RUNNING)
		return -SHMP_ENOTCLOSED; /* Python: close() or terminate() first */
	if (pthread_equal(pthread_self(), p->sup))
		return -EDEADLK; /* a callback cannot wait for its own thread */
	while (!atomic_load_explicit(&p->sup_done, memory_order_acquire)) {
		if (shmp__deadline_passed(&d))
			return -ETIMEDOUT;
		struct timespec until = shmp__deadline_cap(&d, 100 * 1000000L);
		int w = shmp__futex_wait(&p->sup_done, 0, &until);
		if (interruptible && shmp__interrupted(w))
			return -EINTR;
	}
	int expected = 0;
	if (atomic_compare_exchange_strong(&p->joined, &expected, 1))
		pthread_join(p->sup, NULL);
	return 0;
}

int shmp_pool_join(shmp_pool_t *p, double timeout)
{
	int r = shmp__pool_check(p);
	return r < 0 ? r : pool_join(p, timeout, true);
}

void shmp_pool_destroy(shmp_pool_t *p)
{
	if (!p)
		return;
	if (p->pid != getpid()) {
		shmp__pool_free(p); /* a forked child's copy: its memory only */
		return;
	}
	uint32_t st = atomic_load(&p->state);
	if (st == SHMP_POOL_RUNNING || st == SHMP_POOL_BROKEN)
		shmp_pool_terminate(p); /* a broken one: kills what is left */
	if (pthread_equal(pthread_self(), p->sup)) {
		/* From a callback: the supervisor cannot wait for itself. It
		 * finishes terminating and frees the pool when it returns. */
		p->free_on_exit = true;
		return;
	}
	pool_join(p, SHMP_FOREVER, false);
	shmp__pool_free(p);
}

int shmp_pool_workers(const shmp_pool_t *p)
{
	int r = shmp__pool_check(p);
	return r < 0 ? r : p->nworkers;
}

int shmp_pool_is_threads(const shmp_pool_t *p)
{
	int r = shmp__pool_check(p);
	return r < 0 ? r : p->threads;
}

/* Stats from the shared state alone, so that another process can read
 * them (shmp_pool_inspect); the owner then puts its own truth over them. */
static void stats_of(struct shmp__pool_sh *sh, struct shmp__wk *wk, int nworkers, struct shmp_pool_stats *st)
{
	memset(st, 0, sizeof *st);
	st->submitted = atomic_load(&sh->tt.submitted);
	st->completed = atomic_load(&sh->tt.completed);
	st->failed = atomic_load(&sh->tt.failed);
	st->worker_deaths = atomic_load(&sh->deaths);
	st->workers_started = atomic_load(&sh->started);
	st->callback_errors = atomic_load(&sh->cb_errors);
	st->workers = (unsigned)nworkers;
	st->queued = shmp__tt_sh_queued(&sh->tt);
	for (int w = 0; w < nworkers; w++) {
		uint32_t s = atomic_load(&wk[w].state);
		if (s == SHMP_WORKER_BUSY)
			st->running++;
		/* Alive: has a pid (a starting one has none yet) and has not exited. */
		if (s != SHMP_WORKER_EXITED && atomic_load(&wk[w].pid) > 0)
			st->alive++;
	}
	st->supervision = (int)sh->supervision;
	st->state = (int)atomic_load(&sh->state);
}

static int workers_of(struct shmp__wk *wk, int nworkers, struct shmp_worker_info *wi, unsigned n)
{
	for (unsigned w = 0; w < n && w < (unsigned)nworkers; w++)
		wi[w] = (struct shmp_worker_info){ .pid = atomic_load(&wk[w].pid),
						   .state = (int)atomic_load(&wk[w].state),
						   .tasks_done = atomic_load(&wk[w].tasks_done),
						   .task_index = atomic_load(&wk[w].cur_index) };
	return nworkers;
}

int shmp_pool_stats(shmp_pool_t *p, struct shmp_pool_stats *st)
{
	int r = shmp__pool_check(p);
	if (r < 0 || !st)
		return r < 0 ? r : -EINVAL;
	stats_of(p->sh, p->wk, p->nworkers, st);
	st->submitted = atomic_load(&p->tt.n_submitted);
	st->completed = atomic_load(&p->tt.n_completed);
	st->failed = atomic_load(&p->tt.n_failed);
	st->worker_deaths = atomic_load(&p->n_deaths);
	st->workers_started = atomic_load(&p->n_started);
	st->callback_errors = atomic_load(&p->n_cb_errors);
	st->queued = shmp__tt_queued(&p->tt);
	st->alive = 0;
	for (int w = 0; w < p->nworkers; w++)
		st->alive += p->wp[w].live && atomic_load(&p->wp[w].pid) > 0;
	st->supervision = p->supervision;
	st->state = (int)atomic_load(&p->state);
	st->data_used = shmp__arena_used(&p->arena);
	st->data_size = p->arena.size;
	return 0;
}

int shmp_pool_worker_info(shmp_pool_t *p, struct shmp_worker_info *wi, unsigned n)
{
	int r = shmp__pool_check(p);
	if (r < 0 || (!wi && n))
		return r < 0 ? r : -EINVAL;
	workers_of(p->wk, p->nworkers, wi, n);
	/* The pids this process knows (from the zygote, or its threads). */
	for (unsigned w = 0; w < n && w < (unsigned)p->nworkers; w++)
		wi[w].pid = atomic_load(&p->wp[w].pid);
	return p->nworkers;
}

int shmp_pool_inspect(shmp_registry_t *r, const char *name, struct shmp_pool_stats *st,
		      struct shmp_worker_info *wi, unsigned n)
{
	struct shmp_object_info info;
	shmp_segment_t *seg = shmp_registry_segment(r);
	if (!seg || !st || (!wi && n))
		return -EINVAL;
	int e = shmp_registry_lookup(r, name, &info);
	if (e < 0)
		return e;
	if (info.type != SHMP_TYPE_POOL)
		return -SHMP_ETYPE;
	struct shmp__pool_sh *sh = shmp__sh_at(seg, info.offset, sizeof *sh, __alignof__(*sh));
	if (!sh || sh->magic != SHMP__POOL_MAGIC || sh->version != SHMP__POOL_VERSION)
		return -SHMP_ECORRUPT;
	/* Read once: the owner may be rewriting it (or someone else). */
	uint32_t nw = *(volatile uint32_t *)&sh->nworkers;
	uint64_t wk_off = *(volatile uint64_t *)&sh->wk_off;
	if (nw == 0 || nw > 65536 ||
	    !shmp__sh_at(seg, wk_off, (size_t)nw * sizeof(struct shmp__wk), __alignof__(struct shmp__wk)))
		return -SHMP_ECORRUPT;
	struct shmp__wk *wk = (struct shmp__wk *)(seg->base + wk_off);
	stats_of(sh, wk, (int)nw, st);
	return workers_of(wk, (int)nw, wi, n);
}
