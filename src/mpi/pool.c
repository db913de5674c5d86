/* private: the cluster Pool's life — create (collective), close,
 * terminate, join, destroy, and what it reports.
 *
 * Create agrees on everything collectively before anything can fail on
 * one rank only: options are checked everywhere and the worst error is
 * shared (MPI_Allreduce), the root decides about the topology and says so
 * (MPI_Bcast), node pools are made and their failures shared again. So a
 * create that fails, fails on every rank, and no rank waits for another
 * that gave up.
 */
#include "mpi_internal.h"

#include <stdlib.h>
#include <unistd.h>

#define DEFAULT_BYTES (64u << 20)
#define MAX_BYTES (1u << 30)

struct rank_info {
	int32_t leader;    /* 1: runs its node's pool */
	int32_t workers;   /* its node pool's workers (leaders) */
	int32_t ranks;     /* ranks of its node (leaders) */
	int32_t reserved;
	char host[64];
};

static int worst(MPI_Comm comm, int err)
{
	int e = -err, w = 0; /* codes are positive: the largest wins */
	MPI_Allreduce(&e, &w, 1, MPI_INT, MPI_MAX, comm);
	return -w;
}

static void pool_free(shmp_mpi_pool_t *p)
{
	if (!p)
		return;
	shmp__mpi_node_destroy(p->np);
	if (p->node_comm != MPI_COMM_NULL)
		MPI_Comm_free(&p->node_comm);
	if (p->comm != MPI_COMM_NULL)
		MPI_Comm_free(&p->comm);
	if (p->sync.mu)
		shmp__mpi_sync_fini(&p->sync);
	free(p->nodes);
	free(p->stop_ranks);
	free(p->slots);
	free(p->free_slots);
	shmp__mpi_serve_free(p);
	free(p);
}

/* The root: the node table from every rank's report; 0 or -errno. */
static int plan(shmp_mpi_pool_t *p, const struct rank_info *all)
{
	unsigned nn = 0, ns = 0;
	for (int r = 0; r < p->size; r++)
		if (all[r].leader && all[r].workers > 0)
			nn++;
	p->nodes = calloc(nn ? nn : 1, sizeof *p->nodes);
	p->stop_ranks = calloc(p->size > 0 ? (size_t)p->size : 1, sizeof *p->stop_ranks);
	if (!p->nodes || !p->stop_ranks)
		return -ENOMEM;
	uint64_t credits = 0;
	for (int r = 0; r < p->size; r++) {
		if (!(all[r].leader && all[r].workers > 0)) {
			if (r != p->rank)
				p->stop_ranks[ns++] = r;
			continue;
		}
		struct shmp__mpi_node *n = &p->nodes[p->nnodes++];
		n->rank = r;
		n->ranks = all[r].ranks;
		n->workers = (unsigned)all[r].workers;
		memcpy(n->host, all[r].host, sizeof n->host);
		n->host[sizeof n->host - 1] = 0;
		n->local = r == p->rank;
		unsigned pre = p->prefetch ? p->prefetch : 1 + n->workers / 2;
		n->credit = n->base_credit = n->workers + pre;
		/* Without a fixed prefetch, a node that runs dry grows its
		 * credit (dispatch.c): room for that is reserved here. */
		n->max_credit = p->prefetch ? n->credit : n->credit + 64 + 4 * n->workers;
		credits += n->max_credit;
		p->total_workers += (int)n->workers;
	}
	p->nstop = ns;
	if (p->nnodes == 0)
		return -EINVAL; /* nobody runs work */
	if (credits > (uint64_t)INT32_MAX - TAG_RES0 - 1 || credits > (1u << 24))
		return -EINVAL;
	int *ub = NULL, flag = 0;
	MPI_Comm_get_attr(p->comm, MPI_TAG_UB, &ub, &flag);
	if (flag && ub && credits > (uint64_t)(*ub - TAG_RES0))
		return -ERANGE; /* more chunks in flight than this MPI has tags */
	p->nslots = (uint32_t)credits;
	p->slots = calloc(p->nslots, sizeof *p->slots);
	p->free_slots = calloc(p->nslots, sizeof *p->free_slots);
	if (!p->slots || !p->free_slots)
		return -ENOMEM;
	for (uint32_t s = 0; s < p->nslots; s++)
		p->free_slots[p->nfree++] = p->nslots - 1 - s;
	bool remote = false;
	for (unsigned i = 0; i < p->nnodes; i++)
		remote |= !p->nodes[i].local;
	int provided = MPI_THREAD_SINGLE;
	MPI_Query_thread(&provided);
	if ((remote || p->nstop) && provided < MPI_THREAD_MULTIPLE)
		return -ENOTSUP;
	return 0;
}

shmp_mpi_pool_t *shmp_mpi_pool_create(MPI_Comm comm, int workers_per_rank, const struct shmp_mpi_pool_opts *opts)
{
	int inter = 0, init = 0;
	MPI_Initialized(&init);
	if (!init || comm == MPI_COMM_NULL || MPI_Comm_test_inter(comm, &inter) != MPI_SUCCESS || inter) {
		errno = EINVAL;
		return NULL;
	}
	/* The options struct: bytes past what this version knows must be 0. */
	struct shmp_mpi_pool_opts o;
	int err = SHMP__OPTS(o, opts);
	shmp_mpi_pool_t *p = calloc(1, sizeof *p);
	if (!p) {
		errno = ENOMEM;
		return NULL; /* MPI cannot be told: the others would wait in the dup */
	}
	p->creator = getpid();
	p->comm = p->node_comm = MPI_COMM_NULL;
	p->queue_tail = &p->queue;
	p->broken_rank = -1;
	MPI_Comm_dup(comm, &p->comm);
	MPI_Comm_rank(p->comm, &p->rank);
	MPI_Comm_size(p->comm, &p->size);
	p->root = o.root;
	p->flags = o.flags;
	p->is_root = p->rank == o.root;
	p->max_bytes = o.max_task_bytes ? o.max_task_bytes : DEFAULT_BYTES;
	p->prefetch = o.prefetch;
	if (!err && (o.root < 0 || o.root >= p->size || (o.flags & ~7u) || o.max_task_bytes > MAX_BYTES ||
		     o.max_tasks_per_child < 0 || workers_per_rank <= 0 || o.prefetch > 4096))
		err = -EINVAL;
	/* root and flags must be the same everywhere */
	int mine[2] = { o.root, (int)o.flags }, lo[2], hi[2];
	MPI_Allreduce(mine, lo, 2, MPI_INT, MPI_MIN, p->comm);
	MPI_Allreduce(mine, hi, 2, MPI_INT, MPI_MAX, p->comm);
	if (!err && (lo[0] != hi[0] || lo[1] != hi[1]))
		err = -EINVAL;
	if (!err)
		err = shmp__mpi_sync_init(&p->sync);
	if ((err = worst(p->comm, err)) < 0)
		goto fail;

	/* Nodes: the ranks of one machine, the root first on its own. */
	if (o.flags & SHMP_MPI_PER_RANK)
		MPI_Comm_split(p->comm, p->rank, 0, &p->node_comm);
	else
		MPI_Comm_split_type(p->comm, MPI_COMM_TYPE_SHARED, p->is_root ? 0 : 1, MPI_INFO_NULL,
				    &p->node_comm);
	MPI_Comm_rank(p->node_comm, &p->node_rank);
	MPI_Comm_size(p->node_comm, &p->node_size);
	p->leader = p->node_rank == 0;
	int idle = p->is_root && (o.flags & SHMP_MPI_ROOT_IDLE);
	int give[2] = { idle || workers_per_rank == SHMP_CPUS ? 0 : workers_per_rank,
			!idle && workers_per_rank == SHMP_CPUS };
	int sum = 0, cpus = 0;
	MPI_Allreduce(&give[0], &sum, 1, MPI_INT, MPI_SUM, p->node_comm);
	MPI_Allreduce(&give[1], &cpus, 1, MPI_INT, MPI_MAX, p->node_comm);
	if (cpus) {
		long c = sysconf(_SC_NPROCESSORS_ONLN);
		sum += c > 0 ? (int)c : 1;
	}
	struct rank_info me = { .leader = p->leader, .workers = p->leader ? sum : 0, .ranks = p->node_size };
	int hl = 0;
	MPI_Get_processor_name(me.host, &hl);
	me.host[sizeof me.host - 1] = 0;
	struct rank_info *all = p->is_root ? calloc((size_t)p->size, sizeof *all) : NULL;
	int verdict = 0;
	if (p->is_root && !all)
		verdict = -ENOMEM;
	MPI_Gather(&me, (int)sizeof me, MPI_BYTE, all, (int)sizeof me, MPI_BYTE, p->root, p->comm);
	if (p->is_root && !verdict)
		verdict = plan(p, all);
	free(all);
	int shared[2] = { verdict, p->total_workers };
	MPI_Bcast(shared, 2, MPI_INT, p->root, p->comm);
	if ((err = shared[0]) < 0)
		goto fail;
	p->total_workers = shared[1];

	/* Node pools. */
	if (p->leader && sum > 0) {
		p->np = shmp__mpi_node_create(sum, o.flags, o.initializer, o.initarg, o.max_tasks_per_child,
					      p->max_bytes);
		if (!p->np)
			err = -errno;
	}
	if ((err = worst(p->comm, err)) < 0)
		goto fail;
	p->state = SHMP_POOL_RUNNING;
	if (p->is_root && (err = shmp__mpi_dispatch_start(p)) < 0) {
		/* The others are serving already: tell them to stop. */
		p->terminate_req = true;
		for (unsigned i = 0; i < p->nnodes; i++)
			if (!p->nodes[i].local)
				MPI_Send(&(int){ CTRL_TERMINATE }, 1, MPI_INT, p->nodes[i].rank, TAG_CTRL, p->comm);
		for (unsigned i = 0; i < p->nstop; i++)
			MPI_Send(&(int){ CTRL_STOP }, 1, MPI_INT, p->stop_ranks[i], TAG_CTRL, p->comm);
		pool_free(p);
		errno = -err;
		return NULL;
	}
	return p;
fail:
	pool_free(p);
	errno = -err;
	return NULL;
}

int shmp_mpi_pool_is_root(const shmp_mpi_pool_t *p)
{
	return p ? p->is_root : -EINVAL;
}

int shmp_mpi_pool_rank(const shmp_mpi_pool_t *p)
{
	return p ? p->rank : -EINVAL;
}

int shmp_mpi_pool_size(const shmp_mpi_pool_t *p)
{
	return p ? p->size : -EINVAL;
}

int shmp_mpi_pool_workers(const shmp_mpi_pool_t *p)
{
	return p ? p->total_workers : -EINVAL;
}

int shmp__mpi_root_only(const shmp_mpi_pool_t *p)
{
	if (!p)
		return -EINVAL;
	if (shmp__mpi_foreign(p->creator))
		return -ECHILD; /* a forked child: the one rule of every handle */
	if (!p->is_root)
		return -EPERM;
	return 0;
}

int shmp_mpi_pool_close(shmp_mpi_pool_t *p)
{
	int r = shmp__mpi_root_only(p);
	if (r < 0)
		return r;
	shmp__mpi_lock(&p->sync);
	if (p->state == SHMP_POOL_RUNNING)
		p->state = SHMP_POOL_CLOSED;
	shmp__mpi_kick(p);
	shmp__mpi_unlock(&p->sync);
	return 0;
}

int shmp_mpi_pool_terminate(shmp_mpi_pool_t *p)
{
	int r = shmp__mpi_root_only(p);
	if (r < 0)
		return r;
	shmp__mpi_lock(&p->sync);
	p->state = SHMP_POOL_TERMINATED;
	p->terminate_req = true;
	bool stop_local = !p->local_stopped;
	p->local_stopped = true;
	shmp__mpi_kick(p);
	shmp__mpi_unlock(&p->sync);
	if (stop_local && p->np)
		shmp__mpi_node_terminate(p->np);
	return 0;
}

static int root_join(shmp_mpi_pool_t *p, double deadline)
{
	shmp__mpi_lock(&p->sync);
	if (p->state == SHMP_POOL_RUNNING) {
		shmp__mpi_unlock(&p->sync);
		return -SHMP_ENOTCLOSED;
	}
	p->drain_req = true;
	shmp__mpi_kick(p);
	int r = 0;
	/* Calls end, then the other nodes say FINAL; this thread drives the
	 * pool meanwhile (calls.c), with its interrupt rule. */
	r = shmp__mpi_drive(p, &p->drained, deadline);
	bool close_local = !r && !p->local_stopped;
	if (close_local)
		p->local_stopped = true;
	shmp__mpi_unlock(&p->sync);
	if (r)
		return r;
	if (p->np) {
		if (close_local)
			shmp__mpi_node_close(p->np);
		r = shmp__mpi_node_join(p->np, deadline < 0 ? SHMP_FOREVER : shmp__mpi_left(deadline));
		if (r < 0)
			return r;
	}
	shmp__mpi_lock(&p->sync);
	p->joined = true;
	shmp__mpi_unlock(&p->sync);
	return 0;
}

int shmp_mpi_pool_join(shmp_mpi_pool_t *p, double timeout)
{
	if (!p)
		return -EINVAL;
	double deadline;
	int r = shmp__mpi_wait_begin(p->creator, timeout, &deadline);
	if (r < 0)
		return r;
	if (p->is_root)
		return p->joined ? 0 : root_join(p, deadline);
	if (p->served)
		return 0;
	r = shmp__mpi_serve(p, deadline);
	if (r == 0)
		p->served = true;
	return r;
}

void shmp_mpi_pool_destroy(shmp_mpi_pool_t *p)
{
	if (!p)
		return;
	if (shmp__mpi_foreign(p->creator)) {
		free(p); /* a forked child's copy: MPI is not ours to call */
		return;
	}
	if (p->is_root) {
		shmp__mpi_lock(&p->sync);
		bool running = p->state == SHMP_POOL_RUNNING;
		shmp__mpi_unlock(&p->sync);
		if (running)
			shmp_mpi_pool_terminate(p);
		while (shmp_mpi_pool_join(p, SHMP_FOREVER) == -EINTR)
			;
		shmp__mpi_dispatch_stop(p);
		/* Handles the user did not destroy go with the pool. */
		while (p->calls)
			shmp__mpi_call_free(p->calls);
	} else {
		while (shmp_mpi_pool_join(p, SHMP_FOREVER) == -EINTR)
			;
	}
	pool_free(p);
}

int shmp_mpi_pool_stats(shmp_mpi_pool_t *p, struct shmp_mpi_pool_stats *st)
{
	int r = shmp__mpi_root_only(p);
	if (r < 0)
		return r;
	if (!st)
		return -EINVAL;
	memset(st, 0, sizeof *st);
	shmp__mpi_lock(&p->sync);
	st->submitted = p->submitted;
	st->completed = p->completed;
	st->failed = p->failed;
	st->items = p->items;
	st->callback_errors = p->cb_errors;
	st->workers = (unsigned)p->total_workers;
	st->nodes = p->nnodes;
	st->ranks = p->size;
	st->state = p->state;
	for (unsigned i = 0; i < p->nnodes; i++) {
		struct shmp__mpi_node *n = &p->nodes[i];
		st->running += n->inflight;
		if (n->local) {
			struct shmp__mpi_node_report rep;
			shmp__mpi_node_report(p->np, &rep);
			n->rep = rep;
		}
		st->worker_deaths += n->rep.worker_deaths;
		st->workers_started += n->rep.workers_started;
	}
	for (struct shmp_mpi_async *c = p->queue; c; c = c->qnext)
		if (c->kind != CALL_IMAP && c->chunksize)
			st->queued += (c->n - c->next + c->chunksize - 1) / c->chunksize;
	shmp__mpi_unlock(&p->sync);
	return 0;
}

int shmp_mpi_pool_nodes(shmp_mpi_pool_t *p, struct shmp_mpi_node_info *info, unsigned n)
{
	int r = shmp__mpi_root_only(p);
	if (r < 0)
		return r;
	if (!info && n)
		return -EINVAL;
	shmp__mpi_lock(&p->sync);
	for (unsigned i = 0; i < p->nnodes && i < n; i++) {
		struct shmp__mpi_node *nd = &p->nodes[i];
		if (nd->local)
			shmp__mpi_node_report(p->np, &nd->rep);
		info[i] = (struct shmp_mpi_node_info){ .rank = nd->rank, .ranks = nd->ranks, .workers = nd->workers,
						       .chunks = nd->chunks, .items = nd->items, .failed = nd->failed,
						       .inflight = nd->inflight,
						       .worker_deaths = nd->rep.worker_deaths,
						       .workers_started = nd->rep.workers_started,
						       .broken = nd->broken };
		memcpy(info[i].host, nd->host, sizeof info[i].host);
	}
	r = (int)p->nnodes;
	shmp__mpi_unlock(&p->sync);
	return r;
}
