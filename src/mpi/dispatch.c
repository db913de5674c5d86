/* private: the root's dispatcher thread — chunks out, results in.
 *
 * One thread at a time owns the pool's communicator on the root: this
 * dispatcher thread, or a caller driving the pool while it waits (calls.c;
 * the dispatcher then sleeps on its own condition). It cuts chunks from
 * the queued calls when a node pool has room (its workers plus prefetch),
 * sends them (its own node's through shared memory, node.c), receives the
 * results straight into the callers' arrays, and finishes calls: callbacks
 * first (as Python), then ready.
 *
 * Ordering: every message of a node rank is matched with one MPI_Improbe
 * on (any source, any tag), so a node's results and its FINAL arrive in
 * the order it sent them (MPI's non-overtaking rule) and FINAL means that
 * node has nothing more in flight.
 *
 * A result is received with MPI_Imrecv into its destination; while that
 * receive runs the chunk is CH_RECV and its call cannot finish (the
 * caller's array may be freed right after a call returns). A chunk whose
 * call stopped wanting it (terminate, an imap destroyed) is "dead": its
 * result still comes, into scratch memory, so the node's order and its
 * credit stay exact.
 *
 * The thread never spins a CPU for long: after activity it polls MPI with
 * sched_yield for 300 us (less when it was off the CPU for 200 us between
 * two looks: a busy thread shares it), then sleeps on its condition for
 * 20 us doubling to 200 us; local completions, new calls, close and
 * terminate wake it at once. With nothing at other nodes it sleeps until
 * woken.
 */
#include "mpi_internal.h"

#include <sched.h>
#include <signal.h>
#include <stdlib.h>

#define SPIN_S 300e-6
#define YIELD_CONTENDED_S 200e-6
#define SLEEP_MIN_S 20e-6
#define SLEEP_MAX_S 200e-6

static struct shmp__mpi_chunk_hdr *hdr_of(struct shmp__mpi_chunk *ch)
{
	return (struct shmp__mpi_chunk_hdr *)(void *)ch->hbuf;
}
static struct shmp__mpi_result_hdr *rh_of(struct shmp__mpi_chunk *ch)
{
	return (struct shmp__mpi_result_hdr *)(void *)ch->rbuf_h;
}

/* ---- calls ------------------------------------------------------------ */

void shmp__mpi_call_link(struct shmp_mpi_pool *p, struct shmp_mpi_async *c)
{
	c->lprev = NULL;
	c->lnext = p->calls;
	if (p->calls)
		p->calls->lprev = c;
	p->calls = c;
}

void shmp__mpi_call_free(struct shmp_mpi_async *c)
{
	struct shmp_mpi_pool *p = c->pool;
	if (c->lprev)
		c->lprev->lnext = c->lnext;
	else
		p->calls = c->lnext;
	if (c->lnext)
		c->lnext->lprev = c->lprev;
	if (c->it) {
		struct shmp_mpi_imap *it = c->it;
		struct shmp__mpi_chunk *lists[3] = { it->ready, it->todo, it->cur };
		for (int i = 0; i < 3; i++)
			while (lists[i]) {
				struct shmp__mpi_chunk *ch = lists[i];
				lists[i] = i == 2 ? NULL : ch->next;
				shmp__mpi_chunk_free(ch);
			}
		free(it);
	}
	free(c->own_out);
	free(c->own_in);
	free(c);
}

void shmp__mpi_call_unref(struct shmp_mpi_async *c)
{
	if (--c->refs > 0)
		return;
	shmp__mpi_call_free(c);
}

void shmp__mpi_enqueue(struct shmp_mpi_pool *p, struct shmp_mpi_async *c)
{
	c->qnext = NULL;
	*p->queue_tail = c;
	p->queue_tail = &c->qnext;
}

static void dequeue_head(struct shmp_mpi_pool *p)
{
	struct shmp_mpi_async *c = p->queue;
	p->queue = c->qnext;
	if (!p->queue)
		p->queue_tail = &p->queue;
	c->qnext = NULL;
}

static void note_error(struct shmp_mpi_async *c, const struct shmp_mpi_task_error *e)
{
	if (!c->failed || e->index < c->err.index) {
		c->err = *e;
		c->failed = true;
	}
}

/* Every chunk accounted for and nothing more to cut: the call finishes
 * (callbacks run later, without the lock). */
static void maybe_finish(struct shmp_mpi_pool *p, struct shmp_mpi_async *c)
{
	if (c->finished || c->pending || !c->cut_done)
		return;
	if (c->kind == CALL_IMAP && !c->it->input_done)
		return;
	c->finished = true;
	c->fnext = p->finish_list;
	p->finish_list = c;
}

/* helper: a waiting caller's thread (calls.c) finishes only calls without
 * callbacks; those with callbacks stay for the dispatcher thread, where
 * they always run (as Python's result handler thread runs them). */
static void run_finishes(struct shmp_mpi_pool *p, bool helper)
{
	struct shmp_mpi_async *keep = NULL;
	while (p->finish_list) {
		struct shmp_mpi_async *c = p->finish_list;
		p->finish_list = c->fnext;
		bool cbs = c->kind != CALL_IMAP && (c->callback || c->error_callback);
		if (cbs && helper) {
			c->fnext = keep;
			keep = c;
			continue;
		}
		if (cbs) {
			shmp__mpi_unlock(&p->sync);
			int r = 0;
			if (c->failed && c->error_callback)
				r = c->error_callback(c, &c->err, c->cb_arg);
			else if (!c->failed && c->callback)
				r = c->callback(c, c->own_out ? c->own_out : c->out,
						c->kind == CALL_APPLY ? 1 : c->n, c->cb_arg);
			shmp__mpi_lock(&p->sync);
			if (r)
				p->cb_errors++;
		}
		if (c->user_out && !c->failed && c->own_out)
			memcpy(c->user_out, c->own_out, c->out_size);
		c->done = true;
		p->calls_alive--;
		shmp__mpi_notify(&p->sync);
		shmp__mpi_call_unref(c);
	}
	if (keep) {
		p->finish_list = keep;
		shmp__mpi_dnotify(&p->sync); /* the dispatcher runs them */
	}
}

void shmp__mpi_kick(struct shmp_mpi_pool *p)
{
	shmp__mpi_dnotify(&p->sync);
	shmp__mpi_notify(&p->sync);
	if (p->helpers)
		shmp__mpi_enotify(&p->sync); /* a caller driving sleeps on it */
}

/* ---- chunks ----------------------------------------------------------- */

void shmp__mpi_chunk_free(struct shmp__mpi_chunk *ch)
{
	free(ch->own_in);
	free(ch->rbuf);
	free(ch->scratch);
	if (ch->lin)
		shmp__mpi_buf_free(ch->lin);
	if (ch->lout)
		shmp__mpi_buf_free(ch->lout);
	if (ch->lh)
		shmp__mpi_node_release(ch->lh);
	free(ch);
}

/* The next chunk of the first queued call, or NULL. */
static struct shmp__mpi_chunk *cut(struct shmp_mpi_pool *p)
{
	while (p->queue) {
		struct shmp_mpi_async *c = p->queue;
		if (c->kind == CALL_IMAP) {
			struct shmp_mpi_imap *it = c->it;
			struct shmp__mpi_chunk *ch = it->todo;
			if (!ch) {
				dequeue_head(p); /* imap_next queues it again with more */
				continue;
			}
			it->todo = ch->next;
			if (!it->todo) {
				it->todo_tail = &it->todo;
				dequeue_head(p);
			}
			ch->next = NULL;
			return ch;
		}
		if (c->cut_done || c->next >= c->n) {
			c->cut_done = true;
			dequeue_head(p);
			maybe_finish(p, c);
			continue;
		}
		struct shmp__mpi_chunk *ch = calloc(1, sizeof *ch);
		if (!ch)
			return NULL; /* tried again on the next round */
		size_t count = c->n - c->next < c->chunksize ? c->n - c->next : c->chunksize;
		ch->call = c;
		ch->first = c->next;
		ch->count = (uint32_t)count;
		ch->in = c->in_size ? c->in + c->next * c->in_size : NULL;
		ch->dest = c->out_size ? (c->kind == CALL_APPLY ? c->own_out : c->out + c->next * c->out_size) : NULL;
		c->next += count;
		c->pending++;
		if (c->next >= c->n) {
			c->cut_done = true;
			dequeue_head(p);
		}
		return ch;
	}
	return NULL;
}

/* The end of a map: no more chunks left to cut than there are workers.
 * Then a chunk goes only to a node with a worker free, never ahead of
 * time (prefetch, credit): one queued behind a busy worker waits there
 * while workers elsewhere run dry, and the map ends when that slowest
 * node does (3 ranks of 1 worker on 2 loaded CPUs: 12 chunks, a node
 * holding 2 or more, the map at 0.88-0.90 of a static MPI_Scatterv split
 * in the benchmark). Without prefetch a node waits a round trip for each
 * of its last chunks: microseconds, against chunks of milliseconds. */
static bool at_tail(struct shmp_mpi_pool *p)
{
	struct shmp_mpi_async *c = p->queue;
	if (!c || c->kind != CALL_MAP || c->cut_done || c->next >= c->n)
		return false;
	size_t left = c->n - c->next, w = (size_t)(p->total_workers > 0 ? p->total_workers : 1);
	return left / w <= c->chunksize;
}

/* A node with room: the root's own first (no copy through MPI), then the
 * least loaded of the others (relative to its credit), so a lone apply
 * goes to the same node each time (one awake rank, not all of them) and a
 * burst spreads evenly. */
static int pick_node(struct shmp_mpi_pool *p)
{
	int best = -1;
	bool tail = at_tail(p);
	for (unsigned i = 0; i < p->nnodes; i++) {
		struct shmp__mpi_node *n = &p->nodes[i];
		if (n->broken || n->inflight >= (tail && n->workers < n->credit ? n->workers : n->credit))
			continue;
		if (n->local)
			return (int)i;
		if (best < 0 || (uint64_t)n->inflight * p->nodes[best].credit <
					(uint64_t)p->nodes[best].inflight * n->credit)
			best = (int)i;
	}
	return best;
}

int shmp__mpi_chunk_status(struct shmp__mpi_chunk *ch)
{
	return ch->lfailed ? ch->lerr.error : rh_of(ch)->status;
}

void shmp__mpi_chunk_error(struct shmp_mpi_pool *p, struct shmp__mpi_chunk *ch, struct shmp_mpi_task_error *e)
{
	struct shmp__mpi_result_hdr *rh = rh_of(ch);
	memset(e, 0, sizeof *e);
	e->rank = p->nodes[ch->node].rank;
	e->exit_status = -1;
	e->index = ch->first;
	e->skipped = ch->count ? ch->count - 1 : 0;
	if (ch->lfailed) {
		e->error = ch->lerr.error;
		e->code = ch->lerr.code;
		e->signal = ch->lerr.signal;
		e->exit_status = ch->lerr.exit_status;
		e->worker_pid = ch->lerr.worker_pid;
		return;
	}
	e->error = rh->status;
	e->code = rh->code;
	e->signal = rh->signal;
	e->exit_status = rh->exit_status;
	e->worker_pid = rh->worker_pid;
	if (rh->status == -SHMP_ETASK && rh->fail_index >= ch->first && rh->fail_index - ch->first < ch->count) {
		e->index = rh->fail_index;
		e->skipped = ch->count - (rh->fail_index - ch->first) - 1;
	}
}

/* Queued calls fail with `error` (terminate: ECLOSED; a broken pool). */
static void fail_queue(struct shmp_mpi_pool *p, int error, int rank)
{
	while (p->queue) {
		struct shmp_mpi_async *c = p->queue;
		dequeue_head(p);
		if (c->kind == CALL_IMAP) {
			struct shmp_mpi_imap *it = c->it;
			while (it->todo) {
				struct shmp__mpi_chunk *ch = it->todo;
				it->todo = ch->next;
				c->pending--;
				it->consumed++; /* never delivered: counted as taken */
				shmp__mpi_chunk_free(ch);
			}
			it->todo_tail = &it->todo;
			it->input_done = true;
			if (!it->input_error)
				it->input_error = error;
		} else {
			note_error(c, &(struct shmp_mpi_task_error){ .error = error, .index = c->next, .rank = rank,
								     .exit_status = -1 });
		}
		c->cut_done = true;
		maybe_finish(p, c);
	}
}

static void fail_pool(struct shmp_mpi_pool *p, int error, int rank)
{
	if (p->state == SHMP_POOL_RUNNING || p->state == SHMP_POOL_CLOSED) {
		p->state = SHMP_POOL_BROKEN;
		p->broken_error = error;
		p->broken_rank = rank;
	}
	fail_queue(p, error, rank);
}

/* Credit: a node whose queue was empty when a chunk finished went idle
 * waiting for the next one (the round trip is longer than its chunks
 * take): it may hold more (half again, up to max_credit). A node with more
 * queued than it has workers holds more than it needs: one less, down to
 * the base (workers + prefetch), so the end of a map of long chunks is
 * balanced as with the base credit. */
static void adapt_credit(struct shmp__mpi_node *n)
{
	if (n->rep.queued == 0 && n->credit < n->max_credit) {
		unsigned more = n->credit / 2 ? n->credit / 2 : 1;
		n->credit = n->credit + more < n->max_credit ? n->credit + more : n->max_credit;
	} else if (n->rep.queued > n->workers && n->credit > n->base_credit) {
		n->credit--;
	}
}

/* A chunk's result is in (rbuf_h, dest), or its local error in lerr. */
static void complete(struct shmp_mpi_pool *p, struct shmp__mpi_chunk *ch)
{
	struct shmp__mpi_node *n = &p->nodes[ch->node];
	struct shmp__mpi_result_hdr *rh = rh_of(ch);
	n->inflight--;
	p->slots[ch->slot] = NULL;
	p->free_slots[p->nfree++] = ch->slot;
	p->completed++;
	n->chunks++;
	if (!ch->lfailed && (rh->magic != SHMP__MPI_MAGIC || rh->slot != ch->slot)) {
		ch->lfailed = true;
		ch->lerr = (struct shmp_task_error){ .error = -SHMP_ECORRUPT, .exit_status = -1 };
	}
	if (!ch->lfailed) {
		n->rep = rh->node;
		adapt_credit(n);
	}
	int status = shmp__mpi_chunk_status(ch);
	uint64_t ok_items = !status ? ch->count : ch->lfailed ? 0 : rh->done < ch->count ? rh->done : ch->count;
	n->items += ok_items;
	p->items += ok_items;
	if (status) {
		n->failed++;
		p->failed++;
		if (status == -SHMP_EINIT) {
			fail_pool(p, -SHMP_EINIT, n->rank);
		} else if (status == -SHMP_EBROKEN) {
			n->broken = true;
			bool any = false;
			for (unsigned i = 0; i < p->nnodes; i++)
				any |= !p->nodes[i].broken;
			if (!any)
				fail_pool(p, -SHMP_EBROKEN, n->rank);
		}
	}
	struct shmp_mpi_async *c = ch->call;
	ch->state = CH_DONE;
	if (ch->dead || !c) {
		shmp__mpi_chunk_free(ch);
		return;
	}
	c->pending--;
	if (c->kind == CALL_IMAP) {
		struct shmp_mpi_imap *it = c->it;
		ch->next = NULL;
		struct shmp__mpi_chunk **pp = &it->ready;
		while (*pp)
			pp = &(*pp)->next;
		*pp = ch;
		maybe_finish(p, c);
		shmp__mpi_notify(&p->sync); /* imap_next waits for it */
		return;
	}
	if (status) {
		struct shmp_mpi_task_error e;
		shmp__mpi_chunk_error(p, ch, &e);
		note_error(c, &e);
	}
	shmp__mpi_chunk_free(ch);
	maybe_finish(p, c);
}

/* On the node pool's supervisor thread: a local chunk is done. */
static void local_done(void *ctx, const struct shmp_task_error *err)
{
	struct shmp__mpi_chunk *ch = ctx;
	struct shmp_mpi_pool *p = ch->pool;
	shmp__mpi_lock(&p->sync);
	if (err) {
		ch->lfailed = true;
		ch->lerr = *err;
	}
	ch->next = p->completions;
	p->completions = ch;
	shmp__mpi_kick(p); /* the dispatcher, or a caller driving */
	shmp__mpi_unlock(&p->sync);
}

static bool take_completions(struct shmp_mpi_pool *p)
{
	bool any = false;
	while (p->completions) {
		struct shmp__mpi_chunk *ch = p->completions;
		p->completions = ch->next;
		ch->next = NULL;
		if (!ch->lfailed) {
			memcpy(ch->rbuf_h, ch->lout, SHMP__MPI_HDR);
			shmp__mpi_node_report(p->np, &rh_of(ch)->node);
			size_t out_size = ch->call ? ch->call->out_size : 0;
			if (!ch->dead && ch->call && ch->dest && out_size)
				memcpy(ch->dest, (char *)ch->lout + SHMP__MPI_HDR, ch->count * out_size);
		}
		complete(p, ch);
		any = true;
	}
	return any;
}

static int hindexed(void *a, size_t alen, void *b, size_t blen, MPI_Datatype *t)
{
	MPI_Aint disp[2];
	int len[2] = { (int)alen, (int)blen };
	MPI_Get_address(a, &disp[0]);
	MPI_Get_address(b, &disp[1]);
	MPI_Type_create_hindexed(2, len, disp, MPI_BYTE, t);
	return MPI_Type_commit(t);
}

static void launch(struct shmp_mpi_pool *p, struct shmp__mpi_chunk *ch, int ni)
{
	struct shmp__mpi_node *n = &p->nodes[ni];
	struct shmp_mpi_async *c = ch->call;
	uint32_t slot = p->free_slots[--p->nfree];
	p->slots[slot] = ch;
	ch->pool = p;
	ch->slot = slot;
	ch->node = ni;
	ch->sreq = ch->rreq = MPI_REQUEST_NULL;
	n->inflight++;
	p->submitted++;
	struct shmp__mpi_chunk_hdr *h = hdr_of(ch);
	memset(ch->hbuf, 0, sizeof ch->hbuf);
	h->magic = SHMP__MPI_MAGIC;
	h->slot = slot;
	h->first = ch->first;
	h->count = ch->count;
	h->rank = n->rank;
	h->in_size = c->in_size;
	h->out_size = c->out_size;
	h->fn = c->fnid;
	size_t in_bytes = (size_t)ch->count * c->in_size, out_bytes = (size_t)ch->count * c->out_size;
	if (!n->local) {
		ch->state = CH_SENT;
		if (in_bytes) {
			MPI_Datatype t;
			hindexed(ch->hbuf, SHMP__MPI_HDR, (void *)ch->in, in_bytes, &t);
			MPI_Isend(MPI_BOTTOM, 1, t, n->rank, TAG_CHUNK, p->comm, &ch->sreq);
			MPI_Type_free(&t);
		} else {
			MPI_Isend(ch->hbuf, SHMP__MPI_HDR, MPI_BYTE, n->rank, TAG_CHUNK, p->comm, &ch->sreq);
		}
		ch->anext = p->active;
		p->active = ch;
		return;
	}
	ch->state = CH_LOCAL;
	ch->lin_bytes = SHMP__MPI_HDR + in_bytes;
	ch->lout_bytes = SHMP__MPI_HDR + out_bytes;
	ch->lin = shmp__mpi_buf_alloc(ch->lin_bytes);
	ch->lout = shmp__mpi_buf_alloc(ch->lout_bytes);
	int r = -ENOMEM;
	if (ch->lin && ch->lout) {
		memcpy(ch->lin, ch->hbuf, SHMP__MPI_HDR);
		if (in_bytes)
			memcpy((char *)ch->lin + SHMP__MPI_HDR, ch->in, in_bytes);
		void *lh = NULL;
		/* The node pool may call local_done before this returns: it
		 * takes the lock, so do not hold it. Only this thread takes
		 * completions, so the chunk is not looked at meanwhile. */
		shmp__mpi_unlock(&p->sync);
		r = shmp__mpi_node_run(p->np, ch->lin, ch->lin_bytes, ch->lout, ch->lout_bytes, local_done, ch, &lh);
		shmp__mpi_lock(&p->sync);
		if (r == 0)
			ch->lh = lh;
	}
	if (r < 0) {
		ch->lfailed = true;
		ch->lerr = (struct shmp_task_error){ .error = r, .exit_status = -1 };
		ch->next = p->completions;
		p->completions = ch;
	}
}

static bool feed(struct shmp_mpi_pool *p)
{
	bool any = false;
	while (p->queue && !p->term_done) {
		int ni = pick_node(p);
		if (ni < 0)
			break;
		struct shmp__mpi_chunk *ch = cut(p);
		if (!ch)
			break;
		launch(p, ch, ni);
		any = true;
	}
	return any;
}

static void send_ctrl(struct shmp_mpi_pool *p, int rank, int cmd)
{
	MPI_Send(&cmd, 1, MPI_INT, rank, TAG_CTRL, p->comm);
}

static void send_ctrl_all(struct shmp_mpi_pool *p, int cmd)
{
	for (unsigned i = 0; i < p->nnodes; i++)
		if (!p->nodes[i].local)
			send_ctrl(p, p->nodes[i].rank, cmd);
	for (unsigned i = 0; i < p->nstop; i++)
		send_ctrl(p, p->stop_ranks[i], CTRL_STOP);
	p->ctrl_sent = true;
}

static bool no_chunks(struct shmp_mpi_pool *p)
{
	return p->nfree == p->nslots && !p->completions;
}

static bool control(struct shmp_mpi_pool *p)
{
	if (p->terminate_req && !p->term_done) {
		p->term_done = true;
		fail_queue(p, -SHMP_ECLOSED, -1);
		for (uint32_t s = 0; s < p->nslots; s++) {
			struct shmp__mpi_chunk *ch = p->slots[s];
			if (!ch || ch->dead || !ch->call)
				continue;
			struct shmp_mpi_async *c = ch->call;
			note_error(c, &(struct shmp_mpi_task_error){ .error = -SHMP_ECLOSED, .index = ch->first,
								     .rank = p->nodes[ch->node].rank,
								     .exit_status = -1 });
			if (c->kind == CALL_IMAP && !c->it->input_error) {
				c->it->input_done = true;
				c->it->input_error = -SHMP_ECLOSED;
			}
			if (ch->state == CH_RECV)
				continue; /* writing into the caller's array: let it end */
			if (c->kind == CALL_IMAP)
				c->it->consumed++; /* never delivered: counted as taken */
			ch->dead = true;
			ch->call = NULL;
			c->pending--;
			maybe_finish(p, c);
		}
		if (!p->ctrl_sent)
			send_ctrl_all(p, CTRL_TERMINATE);
		return true;
	}
	if (p->drain_req && !p->ctrl_sent && p->calls_alive == 0 && no_chunks(p)) {
		send_ctrl_all(p, CTRL_DRAIN);
		return true;
	}
	return false;
}

static bool remote_expected(struct shmp_mpi_pool *p)
{
	if (p->active)
		return true;
	for (unsigned i = 0; i < p->nnodes; i++) {
		struct shmp__mpi_node *n = &p->nodes[i];
		if (!n->local && (n->inflight || (p->ctrl_sent && !n->final)))
			return true;
	}
	return false;
}

static void drop_message(MPI_Message *msg, int bytes)
{
	char *tmp = malloc(bytes > 0 ? (size_t)bytes : 1);
	if (tmp) {
		MPI_Mrecv(tmp, bytes, MPI_BYTE, msg, MPI_STATUS_IGNORE);
		free(tmp);
	} else {
		char one[SHMP__MPI_HDR];
		MPI_Mrecv(one, 0, MPI_BYTE, msg, MPI_STATUS_IGNORE); /* truncates: MPI's error */
	}
}

static int node_of_rank(struct shmp_mpi_pool *p, int rank)
{
	for (unsigned i = 0; i < p->nnodes; i++)
		if (p->nodes[i].rank == rank)
			return (int)i;
	return -1;
}

static void check_drained(struct shmp_mpi_pool *p)
{
	if (!p->ctrl_sent || p->drained || p->active)
		return;
	for (unsigned i = 0; i < p->nnodes; i++)
		if (!p->nodes[i].local && !p->nodes[i].final)
			return;
	p->drained = true;
	shmp__mpi_notify(&p->sync);
}

static void start_recv(struct shmp_mpi_pool *p, struct shmp__mpi_chunk *ch, MPI_Message *msg, int bytes)
{
	(void)p;
	if (ch->sreq != MPI_REQUEST_NULL)
		MPI_Wait(&ch->sreq, MPI_STATUS_IGNORE); /* the node has it: done */
	size_t out_bytes = ch->call ? (size_t)ch->count * ch->call->out_size : 0;
	size_t got = bytes > SHMP__MPI_HDR ? (size_t)bytes - SHMP__MPI_HDR : 0;
	ch->state = CH_RECV;
	if (ch->dead || !ch->call || bytes < SHMP__MPI_HDR || got > out_bytes || (got && !ch->dest)) {
		if (!ch->dead && ch->call) {
			ch->lfailed = true;
			ch->lerr = (struct shmp_task_error){ .error = -SHMP_ECORRUPT, .exit_status = -1 };
		}
		ch->scratch = malloc(bytes > 0 ? (size_t)bytes : 1);
		ch->scratch_bytes = bytes;
		if (!ch->scratch) {
			drop_message(msg, bytes);
			ch->rreq = MPI_REQUEST_NULL;
			return;
		}
		MPI_Imrecv(ch->scratch, bytes, MPI_BYTE, msg, &ch->rreq);
		return;
	}
	if (!got) {
		MPI_Imrecv(ch->rbuf_h, SHMP__MPI_HDR, MPI_BYTE, msg, &ch->rreq);
		return;
	}
	MPI_Datatype t;
	hindexed(ch->rbuf_h, SHMP__MPI_HDR, ch->dest, got, &t);
	MPI_Imrecv(MPI_BOTTOM, 1, t, msg, &ch->rreq);
	MPI_Type_free(&t);
}

static bool poll_mpi(struct shmp_mpi_pool *p)
{
	bool any = false;
	for (int k = 0; k < 64; k++) {
		int flag = 0, bytes = 0;
		MPI_Message msg;
		MPI_Status st;
		MPI_Improbe(MPI_ANY_SOURCE, MPI_ANY_TAG, p->comm, &flag, &msg, &st);
		if (!flag)
			break;
		any = true;
		MPI_Get_count(&st, MPI_BYTE, &bytes);
		int ni = node_of_rank(p, st.MPI_SOURCE);
		if (st.MPI_TAG == TAG_FINAL && ni >= 0 && bytes == (int)sizeof(struct shmp__mpi_node_report)) {
			MPI_Mrecv(&p->nodes[ni].rep, bytes, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
			p->nodes[ni].final = true;
			continue;
		}
		if (st.MPI_TAG >= TAG_RES0 && ni >= 0) {
			uint32_t slot = (uint32_t)(st.MPI_TAG - TAG_RES0);
			struct shmp__mpi_chunk *ch = slot < p->nslots ? p->slots[slot] : NULL;
			if (ch && ch->state == CH_SENT && ch->node == ni) {
				start_recv(p, ch, &msg, bytes);
				continue;
			}
		}
		drop_message(&msg, bytes); /* not ours to understand */
	}
	for (struct shmp__mpi_chunk **pp = &p->active; *pp;) {
		struct shmp__mpi_chunk *ch = *pp;
		int done = 0;
		if (ch->state == CH_RECV)
			MPI_Test(&ch->rreq, &done, MPI_STATUS_IGNORE);
		if (!done) {
			pp = &ch->anext;
			continue;
		}
		*pp = ch->anext;
		if (ch->scratch && ch->dead && ch->scratch_bytes >= SHMP__MPI_HDR)
			memcpy(ch->rbuf_h, ch->scratch, SHMP__MPI_HDR); /* for the node's counters */
		complete(p, ch);
		any = true;
	}
	check_drained(p);
	return any;
}

bool shmp__mpi_step(struct shmp_mpi_pool *p, bool helper, bool *remote)
{
	p->driving = true;
	bool any = control(p);
	any |= take_completions(p);
	any |= feed(p);
	*remote = remote_expected(p);
	if (*remote)
		any |= poll_mpi(p);
	run_finishes(p, helper);
	check_drained(p);
	p->driving = false;
	return any;
}

static void *dispatcher(void *arg)
{
	struct shmp_mpi_pool *p = arg;
	shmp__mpi_lock(&p->sync);
	double last = shmp__mpi_now(), look = 0;
	unsigned sleeps = 0;
	while (!p->stop_thread) {
		/* A waiting caller drives (calls.c): do not spin beside it;
		 * it wakes us when it stops. Callbacks it left are ours. */
		if ((p->helpers || p->driving) && !(p->finish_list && !p->driving)) {
			shmp__mpi_dwait(&p->sync, 0.1); /* it kicks us when it stops */
			last = shmp__mpi_now();
			look = 0;
			sleeps = 0;
			continue;
		}
		bool remote;
		bool any = shmp__mpi_step(p, false, &remote);
		if (any) {
			last = shmp__mpi_now();
			look = 0;
			sleeps = 0;
			continue;
		}
		if (!remote) {
			shmp__mpi_dwait(&p->sync, 1.0); /* every change kicks us */
			continue;
		}
		/* Off the CPU for long since the last look (a yield that gave
		 * it away, or preempted): a busy thread shares it, and one
		 * yielding over and over beside it gets a turn per scheduler
		 * slice: sleep now (as serve.c and the node pools' workers). */
		double now = shmp__mpi_now();
		if (now - last < SPIN_S && (look == 0 || now - look < YIELD_CONTENDED_S)) {
			look = now;
			shmp__mpi_unlock(&p->sync);
			sched_yield();
			shmp__mpi_lock(&p->sync);
			continue;
		}
		look = 0;
		double s = SLEEP_MIN_S * (double)(1u << (sleeps < 6 ? sleeps : 6));
		sleeps++;
		shmp__mpi_dwait(&p->sync, s < SLEEP_MAX_S ? s : SLEEP_MAX_S);
	}
	shmp__mpi_unlock(&p->sync);
	return NULL;
}

int shmp__mpi_dispatch_start(struct shmp_mpi_pool *p)
{
	/* Signals go to the program's threads, never here: a SIGINT must end
	 * the user's wait (-EINTR), not one of ours. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int r = pthread_create(&p->thread, NULL, dispatcher, p);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r)
		return -r;
	p->thread_started = true;
	return 0;
}

void shmp__mpi_dispatch_stop(struct shmp_mpi_pool *p)
{
	if (!p->thread_started)
		return;
	shmp__mpi_lock(&p->sync);
	p->stop_thread = true;
	shmp__mpi_kick(p);
	shmp__mpi_unlock(&p->sync);
	pthread_join(p->thread, NULL);
	p->thread_started = false;
}
