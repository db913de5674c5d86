/* private: Pool and ThreadPool — create, close, terminate, join, destroy,
 * stats. Task submission is in pool_submit.c. */
#include "pool_internal.h"
#include "waitset.h"
#include "registry_internal.h"

#include <stdio.h>

#include <signal.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/wait.h>

/* The handle users hold. It outlives the pool (never freed, kept on a
 * list) so that a call on a destroyed pool finds impl == NULL and fails
 * cleanly instead of touching freed memory. */
struct shmp_pool {
	struct shmp__pool *_Atomic impl;
	struct shmp_pool *next;
	uint64_t reserved[6];
};
static pthread_mutex_t handles_mu = PTHREAD_MUTEX_INITIALIZER;
static struct shmp_pool *handles;

struct shmp__pool *shmp__pool_get(const shmp_pool_t *h)
{
	return h ? atomic_load_explicit(&((shmp_pool_t *)h)->impl, memory_order_acquire) : NULL;
}

#define DEFAULT_CAPACITY 16384u
#define DEFAULT_TASK_BYTES ((size_t)64 << 20)
#define DEFAULT_SEGMENT ((size_t)256 << 20)
#define INLINE_SIZE 128u

static unsigned pow2_at_least(unsigned v)
{
	unsigned c = 1;
	while (c < v && c < (1u << 20))
		c <<= 1;
	return c;
}

/* A pool in a named segment names itself in the segment's directory, so
 * `shmp show` finds it: opts.name, else "pool", "pool.2"... Best effort:
 * a pool that cannot be named (directory full) still works. */
static void register_pool(struct shmp__pool *p, const char *name, uint64_t off)
{
	char buf[32];
	for (int i = 1; i <= 64; i++) {
		if (!name)
			snprintf(buf, sizeof buf, i == 1 ? "pool" : "pool.%d", i);
		int r = shmp__registry_add(p->seg, name ? name : buf, SHMP_TYPE_POOL, off);
		if (r == 0) {
			p->registered = true;
			return;
		}
		if (r != -EEXIST || name)
			return;
	}
}

void shmp__pool_free(struct shmp__pool *p)
{
	if (!p)
		return;
	if (p->registered)
		shmp__registry_forget(p->seg, (uint64_t)((char *)p->sh - p->seg->base));
	if (p->efd >= 0)
		close(p->efd);
	if (p->zfd >= 0)
		close(p->zfd);
	if (p->zygote_pidfd >= 0)
		close(p->zygote_pidfd);
	/* Calls whose handles the user never released go with the pool,
	 * before the segment their buffers are in. */
	for (unsigned i = 0; i < sizeof p->pages / sizeof p->pages[0]; i++) {
		if (!p->pages[i])
			continue;
		for (unsigned k = 0; k < SHMP__CALLS_PER_PAGE; k++)
			if (p->pages[i][k])
				shmp__call_free_memory(p->pages[i][k]);
		free(p->pages[i]);
	}
	shmp_ring_destroy(p->done);
	if (p->seg) {
		if (p->own_seg) {
			shmp_segment_destroy(p->seg);
		} else {
			shmp__free_ptr(p->seg, p->recs);
			shmp__free_ptr(p->seg, p->wk);
			shmp__free_ptr(p->seg, p->sh);
		}
	}
	free(p->free_slots);
	free(p->tw);
	free(p->tw_joinable);
	pthread_mutex_destroy(&p->submit_mu);
	pthread_mutex_destroy(&p->calls_mu);
	free(p);
}

/* The task table: in the pool's own fresh segment it is zero already, and
 * not writing it keeps its pages untouched until tasks use them (a pool
 * starts in a fraction of the time). */
static void *table_alloc(struct shmp__pool *p, size_t size, uint64_t *off)
{
	int r = shmp__segment_alloc(p->seg, size, 64, off, !p->own_seg);
	if (r < 0) {
		errno = -r;
		return NULL;
	}
	return p->seg->base + *off;
}

static shmp_pool_t *pool_new(int workers, const struct shmp_pool_opts *opts, bool threads)
{
	struct shmp_pool_opts o;
	if (SHMP__OPTS(o, opts) < 0 || workers <= 0 || o.max_tasks_per_child < 0 ||
	    (o.max_task_bytes && o.max_task_bytes < 16)) {
		errno = EINVAL;
		return NULL;
	}
	if (workers == SHMP_CPUS) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		workers = n > 0 ? (int)n : 1;
	}
	if (workers > (int)REC_WORKER_MASK) {
		errno = EINVAL;
		return NULL;
	}
	shmp_pool_t *h = calloc(1, sizeof *h);
	struct shmp__pool *p = calloc(1, sizeof *p);
	if (!h || !p) {
		free(h);
		free(p);
		errno = ENOMEM;
		return NULL;
	}
	p->efd = p->zfd = p->zygote_pidfd = -1;
	p->threads = threads;
	p->nworkers = workers;
	p->init = o.initializer;
	p->initarg = o.initarg;
	p->max_tasks = o.max_tasks_per_child;
	p->max_task_bytes = o.max_task_bytes ? o.max_task_bytes : DEFAULT_TASK_BYTES;
	pthread_mutex_init(&p->submit_mu, NULL);
	pthread_mutex_init(&p->calls_mu, NULL);
	unsigned cap = pow2_at_least(o.queue_capacity ? o.queue_capacity : DEFAULT_CAPACITY);
	size_t rec_size = (sizeof(struct shmp__rec) + INLINE_SIZE + 63) & ~(size_t)63;
	int e = ENOMEM;

	if (o.segment) {
		p->seg = o.segment;
	} else {
		size_t meta = (size_t)cap * rec_size + (size_t)workers * sizeof(struct shmp__wk) +
			      (size_t)cap * 2 * 128 + 65536;
		size_t data = o.segment_size ? o.segment_size : DEFAULT_SEGMENT;
		if (!(p->seg = shmp_segment_create(NULL, meta + data, NULL))) {
			e = errno;
			goto fail;
		}
		p->own_seg = true;
	}
	uint64_t off;
	if (!(p->sh = shmp__alloc_ptr(p->seg, sizeof *p->sh, 64, &off)) ||
	    !(p->recs = table_alloc(p, (size_t)cap * rec_size, &p->sh->recs_off)) ||
	    !(p->wk = shmp__alloc_ptr(p->seg, (size_t)workers * sizeof *p->wk, 64, &p->sh->wk_off))) {
		e = errno;
		goto fail;
	}
	struct shmp__pool_sh *sh = p->sh;
	sh->magic = SHMP__POOL_MAGIC;
	sh->version = SHMP__POOL_VERSION;
	sh->capacity = cap;
	sh->nworkers = (uint32_t)workers;
	sh->rec_size = (uint32_t)rec_size;
	sh->inline_size = (uint32_t)(rec_size - sizeof(struct shmp__rec));
	sh->max_tasks = p->max_tasks;
	sh->threads = threads;
	sh->owner_pid = getpid();
	/* Record words stay zero (FREE, first lap) until used: creating a
	 * pool touches no page of the table. */
	/* Finished tasks announce themselves here. Bounded: if it is ever full
	 * a worker asks the supervisor for a scan of the table instead. */
	struct shmp_ring_opts ro = SHMP_OPTS(shmp_ring_opts, .segment = p->seg, .capacity = cap < 4096 ? cap : 4096,
					      .inline_size = 8, .max_message = 8,
					      .flags = SHMP_RING_SINGLE_CONSUMER);
	if (!(p->done = shmp_ring_create(&ro))) {
		e = errno;
		goto fail;
	}
	if ((p->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		e = errno;
		goto fail;
	}
	if (threads) {
		p->tw = calloc((size_t)workers, sizeof *p->tw);
		p->tw_joinable = calloc((size_t)workers, sizeof *p->tw_joinable);
		if (!p->tw || !p->tw_joinable)
			goto fail;
	} else if ((p->zfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		e = errno;
		goto fail;
	}
	/* The default segment holds the shared heap (shmp_malloc): mapped
	 * before the zygote forks, it is at the same address in every worker,
	 * so structs with pointers into it are valid task arguments even when
	 * allocated after this call. */
	if (!threads && !shmp_segment_default()) {
		e = errno;
		goto fail;
	}
	/* Memory mapped up to now (the pool's segment, shared Arrays made
	 * before the pool, the default segment) is in every worker at the same
	 * address. */
	p->map_serial = shmp__maps_serial();
	{
		/* Probe once, so stats can say which path supervises. */
		struct shmp__waitset *ws = shmp__waitset_new();
		p->supervision = ws && shmp__waitset_uring(ws);
		shmp__waitset_free(ws);
	}
	if (!threads) {
		for (int w = 0; w < workers; w++)
			atomic_store_explicit(&p->wk[w].spawn, 1, memory_order_relaxed);
		fflush(NULL); /* or each worker would print our pending output again */
		pid_t z = fork();
		if (z < 0) {
			e = errno;
			goto fail;
		}
		if (z == 0) {
			sh->zygote_pid = getpid();
			shmp__zygote_main(p);
			_exit(0);
		}
		sh->zygote_pid = z;
		p->zygote = z;
		p->zygote_pidfd = (int)syscall(SYS_pidfd_open, z, 0);
		if (p->zygote_pidfd < 0) {
			e = errno;
			kill(z, SIGKILL);
			waitpid(z, NULL, 0);
			goto fail;
		}
	} else {
		for (int w = 0; w < workers; w++) {
			int r = shmp__spawn_request(p, (unsigned)w);
			if (r < 0) {
				e = -r;
				atomic_store_explicit(&sh->stop, STOP_NOW, memory_order_release);
				shmp__tasks_wake(p);
				atomic_fetch_add(&sh->task_futex, 1);
				shmp__futex_wake(&sh->task_futex, INT32_MAX);
				for (int k = 0; k < w; k++)
					pthread_join(p->tw[k], NULL);
				goto fail;
			}
		}
	}
	int r = pthread_create(&p->sup, NULL, shmp__supervisor_main, p);
	if (r) {
		/* Without a supervisor nothing can be collected: undo. */
		atomic_store_explicit(&sh->stop, STOP_NOW, memory_order_release);
		atomic_fetch_add(&sh->task_futex, 1);
		shmp__futex_wake(&sh->task_futex, INT32_MAX);
		if (threads) {
			for (int k = 0; k < workers; k++)
				pthread_join(p->tw[k], NULL);
		} else {
			kill(p->zygote, SIGKILL);
			waitpid(p->zygote, NULL, 0);
		}
		e = r;
		goto fail;
	}
	p->sup_started = true;
	sh->supervision = (uint32_t)p->supervision;
	if (shmp_segment_name(p->seg))
		register_pool(p, o.name, off);
	atomic_store(&h->impl, p);
	pthread_mutex_lock(&handles_mu);
	h->next = handles;
	handles = h;
	pthread_mutex_unlock(&handles_mu);
	return h;
fail:
	shmp__pool_free(p);
	free(h);
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

int shmp_pool_close(shmp_pool_t *h)
{
	struct shmp__pool *p = shmp__pool_get(h);
	if (!p)
		return h ? -SHMP_ECLOSED : -EINVAL;
	uint32_t s = SHMP_POOL_RUNNING;
	atomic_compare_exchange_strong(&p->sh->state, &s, SHMP_POOL_CLOSED);
	/* Serialize with submitters: once we hold the lock no task is being
	 * added, so workers can drain and leave. */
	pthread_mutex_lock(&p->submit_mu);
	uint32_t none = STOP_NONE;
	atomic_compare_exchange_strong(&p->sh->stop, &none, STOP_DRAIN);
	pthread_mutex_unlock(&p->submit_mu);
	atomic_fetch_add(&p->sh->task_futex, 1);
	shmp__futex_wake(&p->sh->task_futex, INT32_MAX);
	uint64_t one = 1;
	ssize_t r = write(p->efd, &one, sizeof one);
	(void)r;
	return 0;
}

int shmp_pool_terminate(shmp_pool_t *h)
{
	struct shmp__pool *p = shmp__pool_get(h);
	if (!p)
		return h ? -SHMP_ECLOSED : -EINVAL;
	uint32_t s = atomic_load(&p->sh->state);
	while ((s == SHMP_POOL_RUNNING || s == SHMP_POOL_CLOSED) &&
	       !atomic_compare_exchange_weak(&p->sh->state, &s, SHMP_POOL_TERMINATED))
		;
	atomic_store(&p->sh->stop, STOP_NOW);
	atomic_fetch_add(&p->sh->task_futex, 1);
	shmp__futex_wake(&p->sh->task_futex, INT32_MAX);
	if (!p->threads) {
		for (int w = 0; w < p->nworkers; w++) {
			pid_t pid = atomic_load(&p->wk[w].pid);
			if (pid > 0 && atomic_load(&p->wk[w].state) != SHMP_WORKER_EXITED)
				kill(pid, SIGKILL);
		}
		atomic_store(&p->sh->zygote_exit, 1);
		uint64_t one = 1;
		ssize_t r = write(p->zfd, &one, sizeof one);
		(void)r;
	}
	uint64_t one = 1;
	ssize_t r = write(p->efd, &one, sizeof one);
	(void)r;
	return 0;
}

static int pool_join(struct shmp__pool *p, double timeout);

int shmp_pool_join(shmp_pool_t *h, double timeout)
{
	struct shmp__pool *p = shmp__pool_get(h);
	if (!p)
		return h ? -SHMP_ECLOSED : -EINVAL;
	return pool_join(p, timeout);
}

static int pool_join(struct shmp__pool *p, double timeout)
{
	if (atomic_load(&p->sh->state) == SHMP_POOL_RUNNING)
		return -EINVAL; /* Python: close() or terminate() first */
	if (pthread_equal(pthread_self(), p->sup))
		return -EDEADLK; /* a callback cannot wait for its own thread */
	struct shmp__deadline d;
	if (shmp__deadline_init(&d, timeout) < 0)
		return -EINVAL;
	while (!atomic_load_explicit(&p->sup_done, memory_order_acquire)) {
		if (shmp__deadline_passed(&d))
			return -ETIMEDOUT;
		struct timespec until = shmp__deadline_cap(&d, 100 * 1000000L);
		shmp__futex_wait(&p->sup_done, 0, &until);
	}
	int expected = 0;
	if (atomic_compare_exchange_strong(&p->joined, &expected, 1))
		pthread_join(p->sup, NULL);
	return 0;
}

void shmp_pool_destroy(shmp_pool_t *h)
{
	struct shmp__pool *p = shmp__pool_get(h);
	if (!p)
		return;
	uint32_t st = atomic_load(&p->sh->state);
	if (st == SHMP_POOL_RUNNING || st == SHMP_POOL_BROKEN)
		shmp_pool_terminate(h); /* a broken one: kills what is left */
	atomic_store_explicit(&h->impl, NULL, memory_order_release);
	if (pthread_equal(pthread_self(), p->sup)) {
		/* From a callback: the supervisor cannot wait for itself. It
		 * finishes terminating and frees the pool when it returns. */
		p->free_on_exit = true;
		return;
	}
	pool_join(p, SHMP_FOREVER);
	shmp__pool_free(p);
}

int shmp_pool_workers(const shmp_pool_t *h)
{
	struct shmp__pool *p = shmp__pool_get(h);
	return p ? p->nworkers : (h ? -SHMP_ECLOSED : -EINVAL);
}

int shmp_pool_is_threads(const shmp_pool_t *h)
{
	struct shmp__pool *p = shmp__pool_get(h);
	return p ? p->threads : (h ? -SHMP_ECLOSED : -EINVAL);
}

/* Stats from the shared state alone, so that another process can read
 * them (shmp_pool_inspect) as the owner does. */
static void stats_of(struct shmp__pool_sh *sh, struct shmp__wk *wk, int nworkers, struct shmp_pool_stats *st)
{
	memset(st, 0, sizeof *st);
	st->submitted = atomic_load(&sh->submitted);
	st->completed = atomic_load(&sh->completed);
	st->failed = atomic_load(&sh->failed);
	st->worker_deaths = atomic_load(&sh->deaths);
	st->workers_started = atomic_load(&sh->started);
	st->callback_errors = atomic_load(&sh->cb_errors);
	st->workers = (unsigned)nworkers;
	uint64_t head = atomic_load(&sh->head), tail = atomic_load(&sh->tail);
	st->queued = tail > head ? tail - head : 0;
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

int shmp_pool_stats(shmp_pool_t *h, struct shmp_pool_stats *st)
{
	struct shmp__pool *p = shmp__pool_get(h);
	if (!p || !st)
		return h && st ? -SHMP_ECLOSED : -EINVAL;
	stats_of(p->sh, p->wk, p->nworkers, st);
	st->supervision = p->supervision;
	return 0;
}

int shmp_pool_worker_info(shmp_pool_t *h, struct shmp_worker_info *wi, unsigned n)
{
	struct shmp__pool *p = shmp__pool_get(h);
	if (!p || (!wi && n))
		return h ? (p ? -EINVAL : -SHMP_ECLOSED) : -EINVAL;
	return workers_of(p->wk, p->nworkers, wi, n);
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
	if (!sh || sh->magic != SHMP__POOL_MAGIC || sh->version != SHMP__POOL_VERSION || sh->nworkers == 0 ||
	    sh->nworkers > 65536 || !shmp__sh_at(seg, sh->wk_off, (size_t)sh->nworkers * sizeof(struct shmp__wk), __alignof__(struct shmp__wk)))
		return -SHMP_ECORRUPT;
	struct shmp__wk *wk = (struct shmp__wk *)(seg->base + sh->wk_off);
	stats_of(sh, wk, (int)sh->nworkers, st);
	return workers_of(wk, (int)sh->nworkers, wi, n);
}
