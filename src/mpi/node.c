/* private: the node pool — the one place that uses the local Pool's API.
 *
 * A chunk is one local task: a map of one item whose argument is the whole
 * chunk (header + items) and whose result is the result header + results,
 * run by shmp__mpi_chunk_task in a worker. Both buffers come from the
 * shared heap when it has room, so the workers read and write them in
 * place (pool.h: memory of a segment mapped before the pool is passed by
 * reference). The function always returns 0: an item's failure is written
 * in the result header (which item, what it returned, how many ran), so
 * the local Pool delivers the results of the items before it; a worker's
 * death comes back as the local call's error.
 */
#include "mpi_internal.h"

#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

/* How long an idle worker of a node pool yield-polls for the next chunk
 * (shmp_pool_opts.idle_poll): as long as the serving loop (serve.c) and a
 * waiting caller (calls.c) poll MPI after activity, so the chain of a short
 * chunk (MPI in, worker, MPI out) stays awake together and goes to sleep
 * together. Yielding, not spinning: a rank, its worker and the root share
 * CPUs when ranks are oversubscribed, and the worker's 30 us busy spin
 * after each chunk held the CPU the rank needed to send its answer. */
#define SHMP__MPI_IDLE_POLL_S 300e-6

/* Per thread (ThreadPool workers are threads), set for a chunk's run only. */
static __thread int task_rank = -1;

int shmp_mpi_task_rank(void)
{
	return task_rank;
}

struct shmp__mpi_nodepool {
	shmp_pool_t *pool;
	bool threads;
};

static int chunk_task(const void *arg, void *res, const struct shmp_task_ctx *ctx)
{
	const struct shmp__mpi_chunk_hdr *h = arg;
	struct shmp__mpi_result_hdr *rh = res;
	if (ctx->result_size < SHMP__MPI_HDR)
		return -1; /* cannot report: the local call fails with ETASK */
	memset(rh, 0, sizeof *rh);
	rh->magic = SHMP__MPI_MAGIC;
	rh->worker_pid = (int32_t)syscall(SYS_gettid);
	rh->exit_status = -1;
	if (ctx->arg_size < SHMP__MPI_HDR || h->magic != SHMP__MPI_MAGIC) {
		rh->status = -SHMP_ECORRUPT;
		return 0;
	}
	rh->slot = h->slot;
	rh->fail_index = h->first;
	uint64_t count = h->count, in_size = h->in_size, out_size = h->out_size;
	if ((in_size && count > (ctx->arg_size - SHMP__MPI_HDR) / in_size) ||
	    (out_size && count > (ctx->result_size - SHMP__MPI_HDR) / out_size)) {
		rh->status = -SHMP_ECORRUPT;
		return 0;
	}
	shmp_task_fn fn = shmp__mpi_fnid_resolve(&h->fn);
	if (!fn) {
		rh->status = -SHMP_EBADFN;
		return 0;
	}
	task_rank = h->rank;
	const char *in = (const char *)arg + SHMP__MPI_HDR;
	char *out = (char *)res + SHMP__MPI_HDR;
	struct shmp_task_ctx c = { .arg_size = in_size, .result_size = out_size, .worker = ctx->worker,
				   .user = ctx->user };
	for (uint64_t i = 0; i < count; i++) {
		c.index = h->first + i;
		int rc = fn(in + i * in_size, out + i * out_size, &c);
		if (rc) {
			rh->status = -SHMP_ETASK;
			rh->code = rc;
			rh->fail_index = h->first + i;
			rh->done = (uint32_t)i;
			task_rank = -1;
			return 0;
		}
	}
	rh->done = (uint32_t)count;
	task_rank = -1;
	return 0;
}

struct shmp__mpi_nodepool *shmp__mpi_node_create(int workers, unsigned flags, shmp_init_fn init, void *initarg,
						 int max_tasks, size_t max_bytes)
{
	struct shmp__mpi_nodepool *np = calloc(1, sizeof *np);
	if (!np) {
		errno = ENOMEM;
		return NULL;
	}
	np->threads = flags & SHMP_MPI_THREADS;
	struct shmp_pool_opts o = SHMP_OPTS(shmp_pool_opts, .initializer = init, .initarg = initarg,
					    .max_tasks_per_child = max_tasks,
					    .max_task_bytes = max_bytes + 2 * SHMP__MPI_HDR,
					    .idle_poll = SHMP__MPI_IDLE_POLL_S);
	np->pool = np->threads ? shmp_threadpool_create(workers, &o) : shmp_pool_create(workers, &o);
	if (!np->pool) {
		int e = errno;
		free(np);
		errno = e;
		return NULL;
	}
	return np;
}

struct run_ctx {
	shmp__mpi_done_fn done;
	void *ctx;
};

static int on_ok(shmp_async_t *a, void *results, size_t n, void *arg)
{
	(void)a;
	(void)results;
	(void)n;
	struct run_ctx *rc = arg;
	rc->done(rc->ctx, NULL);
	free(rc);
	return 0;
}

static int on_err(shmp_async_t *a, const struct shmp_task_error *e, void *arg)
{
	(void)a;
	struct run_ctx *rc = arg;
	rc->done(rc->ctx, e);
	free(rc);
	return 0;
}

int shmp__mpi_node_run(struct shmp__mpi_nodepool *np, void *in, size_t in_bytes, void *out, size_t out_bytes,
		       shmp__mpi_done_fn done, void *ctx, void **handle)
{
	struct run_ctx *rc = malloc(sizeof *rc);
	if (!rc)
		return -ENOMEM;
	rc->done = done;
	rc->ctx = ctx;
	struct shmp_call_opts co = SHMP_OPTS(shmp_call_opts, .chunksize = 1, .callback = on_ok,
					     .error_callback = on_err, .cb_arg = rc);
	/* The done callback may run before map_async returns (on the pool's
	 * supervisor thread): the caller must not hold what done() takes. */
	shmp_async_t *a = shmp_pool_map_async(np->pool, chunk_task, in, in_bytes, 1, out, out_bytes, &co);
	if (!a) {
		int e = errno;
		free(rc);
		return -e;
	}
	*handle = a;
	return 0;
}

void shmp__mpi_node_release(void *handle)
{
	shmp_async_destroy(handle);
}

/* The polled form: an imap of the one chunk, which its caller collects
 * itself (the local Pool's imap does not go through the supervisor
 * thread), so a short chunk's result is seen by the polling loop a cache
 * line after the worker wrote it, not after the supervisor was woken, ran
 * and called back (a thread more on the critical path, on CPUs the ranks
 * share). The first next() submits it. */
int shmp__mpi_node_start(struct shmp__mpi_nodepool *np, void *in, size_t in_bytes, size_t out_bytes, void **handle)
{
	struct shmp_call_opts co = SHMP_OPTS(shmp_call_opts, .chunksize = 1, .max_inflight = 1);
	shmp_imap_t *it = shmp_pool_imap_unordered(np->pool, chunk_task, in, in_bytes, 1, out_bytes, NULL, NULL, &co);
	if (!it)
		return -errno;
	*handle = it;
	return 0;
}

int shmp__mpi_node_poll(void *handle, void *out, struct shmp_task_error *err, double timeout)
{
	struct shmp_task_error e = { .exit_status = -1 };
	int r = shmp_imap_next(handle, out, NULL, timeout, &e);
	if (r == -ETIMEDOUT)
		return 0;
	if (r == -EINTR)
		return -EINTR;
	if (r == 1) {
		memset(err, 0, sizeof *err);
		return 1;
	}
	if (r == 0) /* ended without its one result: not what imap does */
		e = (struct shmp_task_error){ .error = -SHMP_ECORRUPT, .exit_status = -1 };
	else if (!e.error)
		e.error = r;
	*err = e;
	return 1;
}

void shmp__mpi_node_stop(void *handle)
{
	shmp_imap_destroy(handle);
}

void shmp__mpi_node_report(struct shmp__mpi_nodepool *np, struct shmp__mpi_node_report *r)
{
	struct shmp_pool_stats st;
	memset(r, 0, sizeof *r);
	if (np && shmp_pool_stats(np->pool, &st) == 0) {
		r->worker_deaths = st.worker_deaths;
		r->workers_started = st.workers_started;
		r->alive = st.alive;
		r->queued = st.queued > UINT32_MAX ? UINT32_MAX : (uint32_t)st.queued;
	}
}

int shmp__mpi_node_close(struct shmp__mpi_nodepool *np)
{
	return shmp_pool_close(np->pool);
}

int shmp__mpi_node_terminate(struct shmp__mpi_nodepool *np)
{
	return shmp_pool_terminate(np->pool);
}

int shmp__mpi_node_join(struct shmp__mpi_nodepool *np, double timeout)
{
	return shmp_pool_join(np->pool, timeout);
}

void shmp__mpi_node_destroy(struct shmp__mpi_nodepool *np)
{
	if (!np)
		return;
	shmp_pool_destroy(np->pool);
	free(np);
}

/* The shared heap's blocks are told apart from malloc's by a flag word in
 * front of the buffer. */
void *shmp__mpi_buf_alloc(size_t n)
{
	if (n > SIZE_MAX - 64)
		return NULL;
	char *p = shmp_malloc(n + 64);
	if (p) {
		*(uint64_t *)(void *)p = 1;
		return p + 64;
	}
	p = aligned_alloc(64, (n + 64 + 63) & ~(size_t)63);
	if (!p)
		return NULL;
	*(uint64_t *)(void *)p = 0;
	return p + 64;
}

void shmp__mpi_buf_free(void *q)
{
	if (!q)
		return;
	char *p = (char *)q - 64;
	if (*(uint64_t *)(void *)p)
		shmp_free(p);
	else
		free(p);
}
