/* private: a rank other than the root, inside join/destroy.
 *
 * A node rank receives chunks from the root, runs each as one task of its
 * node pool (node.c) and sends the result back under the chunk's slot tag;
 * on DRAIN it closes its node pool, on TERMINATE it terminates it, and
 * once every chunk it received has been answered and the pool has exited
 * it sends FINAL (its counters) and is done. Every chunk received gets
 * exactly one answer, so the root's per-node accounting is exact.
 *
 * A rank sharing its node's pool with another rank only waits for STOP.
 *
 * Two ways to run a chunk in the node pool (node.c). A chunk whose
 * results fit POLL_MAX_OUT is polled for: this loop collects it itself
 * (the local Pool's imap of one item), so its result is seen as soon as
 * the worker wrote it. Measured on 3 ranks on 2 CPUs, a trivial apply to
 * this rank: the done-callback way put the node pool's supervisor thread
 * on the critical path (the worker rings its eventfd, it wakes, collects
 * and calls back) — a thread more wanting a CPU that the ranks, the
 * worker and the root already share. A larger chunk keeps the callback
 * way: its result is written in place (no copy through the pool's data
 * segment), and one more wake-up is nothing beside its run.
 *
 * Waiting: after activity, polls MPI (and polled chunks) with sched_yield
 * for 300 us (less when it was off the CPU for 200 us between two looks: a
 * busy thread shares it, and one yielding over and over beside it gets a
 * turn per scheduler slice), then sleeps 20 us doubling to 2 ms: on the pool's condition
 * (a chunk finishing by callback wakes it at once), or, when only polled
 * chunks are out, in the oldest one's wait (its end wakes it at once; the
 * others are looked at after the sleep, which is capped at 200 us while
 * more than one is out). An idle rank thus costs a wake-up every 2 ms, and
 * a job that MPI ends is noticed within one sleep.
 *
 * Only this thread touches the serving state, except the list of chunks
 * the node pool finished, which its supervisor thread pushes onto (a
 * lock-free stack): the loop holds no lock while it polls, so a finished
 * chunk is never held up behind it. The pool's lock is taken only to
 * sleep: the loop says it sleeps (sv->sleeping), looks at the list once
 * more and waits; a pusher that sees it sleeping takes the lock and wakes
 * it (both sequentially consistent, so one of them sees the other).
 */
#include "mpi_internal.h"

#include <sched.h>
#include <stdlib.h>

#define SPIN_S 300e-6
#define SLEEP_MIN_S 20e-6
#define SLEEP_MAX_S 2e-3
#define POLLED_SLEEP_MAX_S 200e-6
#define POLL_MAX_OUT (64u << 10)
#define SPENT_MAX 32
#define YIELD_CONTENDED_S 200e-6

struct sch {
	struct shmp_mpi_pool *p;
	void *lin, *lout, *lh;
	size_t lin_bytes, lout_bytes;
	int lerror;               /* an error known before the node pool ran it */
	bool lfailed;
	bool polled;              /* lh is a polled chunk (shmp__mpi_node_start) */
	struct shmp_task_error lerr;
	MPI_Request rreq, sreq;
	struct sch *next;
};

struct shmp__mpi_serve {
	struct sch *receiving, *sending;
	struct sch *polling, **polling_tail; /* polled chunks running, oldest first */
	unsigned called;          /* chunks running with a done callback */
	/* Polled chunks' handles, answered, released in batches when the
	 * loop goes to sleep: releasing one rings the node pool's supervisor
	 * (an imap ending), a thread woken per chunk otherwise. */
	void *spent[SPENT_MAX];
	unsigned nspent;
	_Atomic(struct sch *) done; /* pushed by the node pool's supervisor */
	atomic_bool sleeping;
	unsigned inflight;        /* received, not yet answered */
	bool drain, term, closed, joined, final_sent, stop;
	double last;
	double look;              /* when the spinning loop last yielded (0: not) */
	unsigned sleeps;
};

static void flush_spent(struct shmp__mpi_serve *sv)
{
	for (unsigned i = 0; i < sv->nspent; i++)
		shmp__mpi_node_stop(sv->spent[i]);
	sv->nspent = 0;
}

static void sch_free(struct shmp__mpi_serve *sv, struct sch *s)
{
	if (s->lh && s->polled) {
		if (sv->nspent == SPENT_MAX)
			flush_spent(sv);
		sv->spent[sv->nspent++] = s->lh;
	} else if (s->lh)
		shmp__mpi_node_release(s->lh);
	shmp__mpi_buf_free(s->lin);
	shmp__mpi_buf_free(s->lout);
	free(s);
}

static void push_done(struct shmp__mpi_serve *sv, struct sch *s)
{
	struct sch *head = atomic_load(&sv->done);
	do
		s->next = head;
	while (!atomic_compare_exchange_weak(&sv->done, &head, s));
}

static void node_done(void *ctx, const struct shmp_task_error *err)
{
	struct sch *s = ctx;
	struct shmp_mpi_pool *p = s->p;
	struct shmp__mpi_serve *sv = p->serve;
	if (err) {
		s->lfailed = true;
		s->lerr = *err;
	}
	push_done(sv, s);
	if (atomic_load(&sv->sleeping)) {
		shmp__mpi_lock(&p->sync);
		shmp__mpi_notify(&p->sync);
		shmp__mpi_unlock(&p->sync);
	}
}

/* The chunk is in s->lin: check it, run it. */
static void run(struct shmp_mpi_pool *p, struct sch *s)
{
	struct shmp__mpi_serve *sv = p->serve;
	const struct shmp__mpi_chunk_hdr *h = s->lin;
	uint64_t count = h->count, in_size = h->in_size, out_size = h->out_size;
	int r = 0;
	if (h->magic != SHMP__MPI_MAGIC || (in_size && count > (s->lin_bytes - SHMP__MPI_HDR) / in_size) ||
	    SHMP__MPI_HDR + count * in_size != s->lin_bytes || (out_size && count > p->max_bytes / out_size))
		r = -SHMP_ECORRUPT;
	else if (!p->np)
		r = -SHMP_ECLOSED;
	else if (sv->term || sv->closed)
		r = -SHMP_ECLOSED;
	s->lout_bytes = r ? SHMP__MPI_HDR : SHMP__MPI_HDR + count * out_size;
	s->lout = shmp__mpi_buf_alloc(s->lout_bytes);
	if (!r && !s->lout)
		r = -ENOMEM;
	if (!r && s->lout_bytes <= POLL_MAX_OUT) {
		void *lh = NULL;
		r = shmp__mpi_node_start(p->np, s->lin, s->lin_bytes, s->lout_bytes, &lh);
		if (!r) {
			s->lh = lh;
			s->polled = true;
			s->next = NULL;
			*sv->polling_tail = s;
			sv->polling_tail = &s->next;
			return; /* submitted by poll_chunks, next */
		}
	} else if (!r) {
		/* node_done may run (on the supervisor) before this returns
		 * and push s; s->lh is only read by this thread, after it
		 * took s back off the list. */
		void *lh = NULL;
		sv->called++;
		r = shmp__mpi_node_run(p->np, s->lin, s->lin_bytes, s->lout, s->lout_bytes, node_done, s, &lh);
		if (!r) {
			s->lh = lh;
			return;
		}
		sv->called--;
	}
	s->lfailed = true;
	s->lerr = (struct shmp_task_error){ .error = r, .exit_status = -1 };
	push_done(sv, s);
}

/* Look at the polled chunks (waiting up to `wait` seconds in the oldest's
 * wait, 0 for a look): each finished one is answered. True if one was;
 * *intr on -EINTR. */
static void answer(struct shmp_mpi_pool *p, struct sch *s);
static bool poll_chunks(struct shmp_mpi_pool *p, double wait, bool *intr)
{
	struct shmp__mpi_serve *sv = p->serve;
	bool any = false;
	for (struct sch **pp = &sv->polling; *pp;) {
		struct sch *s = *pp;
		struct shmp_task_error e;
		int k = shmp__mpi_node_poll(s->lh, s->lout, &e, pp == &sv->polling ? wait : 0);
		wait = 0;
		if (k == -EINTR)
			*intr = true;
		if (k != 1) {
			pp = &s->next;
			continue;
		}
		*pp = s->next;
		if (!*pp)
			sv->polling_tail = pp;
		if (e.error) {
			s->lfailed = true;
			s->lerr = e;
		}
		answer(p, s);
		any = true;
	}
	return any;
}

/* Send the answer of a finished chunk. */
static void answer(struct shmp_mpi_pool *p, struct sch *s)
{
	struct shmp__mpi_serve *sv = p->serve;
	const struct shmp__mpi_chunk_hdr *h = s->lin;
	uint32_t slot = h->slot;
	static char empty[SHMP__MPI_HDR];
	struct shmp__mpi_result_hdr *rh = s->lout ? s->lout : (void *)empty;
	if (s->lfailed) {
		memset(rh, 0, sizeof *rh);
		rh->status = s->lerr.error;
		rh->code = s->lerr.code;
		rh->signal = s->lerr.signal;
		rh->exit_status = s->lerr.exit_status;
		rh->worker_pid = s->lerr.worker_pid;
		rh->fail_index = h->first;
	}
	rh->magic = SHMP__MPI_MAGIC;
	rh->slot = slot;
	shmp__mpi_node_report(p->np, &rh->node);
	size_t bytes = s->lfailed || !s->lout ? SHMP__MPI_HDR : s->lout_bytes;
	MPI_Isend(rh, (int)bytes, MPI_BYTE, p->root, TAG_RES0 + (int)slot, p->comm, &s->sreq);
	s->next = sv->sending;
	sv->sending = s;
}

static bool poll_root(struct shmp_mpi_pool *p)
{
	struct shmp__mpi_serve *sv = p->serve;
	bool any = false;
	for (int k = 0; k < 16; k++) {
		int flag = 0, bytes = 0;
		MPI_Message msg;
		MPI_Status st;
		MPI_Improbe(p->root, MPI_ANY_TAG, p->comm, &flag, &msg, &st);
		if (!flag)
			break;
		any = true;
		MPI_Get_count(&st, MPI_BYTE, &bytes);
		if (st.MPI_TAG == TAG_CTRL && bytes == (int)sizeof(int)) {
			int cmd = 0;
			MPI_Mrecv(&cmd, 1, MPI_INT, &msg, MPI_STATUS_IGNORE);
			if (cmd == CTRL_DRAIN)
				sv->drain = true;
			else if (cmd == CTRL_TERMINATE)
				sv->term = true;
			else if (cmd == CTRL_STOP)
				sv->stop = true;
			continue;
		}
		if (st.MPI_TAG == TAG_CHUNK && p->np && bytes >= SHMP__MPI_HDR) {
			struct sch *s = calloc(1, sizeof *s);
			if (s) {
				s->p = p;
				s->lin_bytes = (size_t)bytes;
				s->lin = shmp__mpi_buf_alloc(s->lin_bytes);
			}
			if (s && s->lin) {
				MPI_Imrecv(s->lin, bytes, MPI_BYTE, &msg, &s->rreq);
				s->sreq = MPI_REQUEST_NULL;
				s->next = sv->receiving;
				sv->receiving = s;
				sv->inflight++;
				continue;
			}
			if (s)
				free(s);
			/* No memory for it: the root's call would wait forever
			 * for an answer that cannot be sent (the slot is in the
			 * lost header). MPI's own fault model: end the job. */
			MPI_Abort(p->comm, 12);
		}
		char *tmp = malloc(bytes > 0 ? (size_t)bytes : 1);
		MPI_Mrecv(tmp, bytes, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
		free(tmp);
	}
	for (struct sch **pp = &sv->receiving; *pp;) {
		struct sch *s = *pp;
		int done = 0;
		MPI_Test(&s->rreq, &done, MPI_STATUS_IGNORE);
		if (!done) {
			pp = &s->next;
			continue;
		}
		*pp = s->next;
		run(p, s);
		any = true;
	}
	for (struct sch **pp = &sv->sending; *pp;) {
		struct sch *s = *pp;
		int done = 0;
		MPI_Test(&s->sreq, &done, MPI_STATUS_IGNORE);
		if (!done) {
			pp = &s->next;
			continue;
		}
		*pp = s->next;
		sch_free(sv, s);
		sv->inflight--;
		any = true;
	}
	return any;
}

/* Stop the node pool when told, and say FINAL when it has nothing left. */
static bool finish(struct shmp_mpi_pool *p)
{
	struct shmp__mpi_serve *sv = p->serve;
	if (sv->term && !sv->closed && p->np) {
		sv->closed = true;
		shmp__mpi_node_terminate(p->np);
		return true;
	}
	if (sv->drain && !sv->closed && sv->inflight == 0 && p->np) {
		sv->closed = true;
		shmp__mpi_node_close(p->np);
		return true;
	}
	if ((sv->drain || sv->term) && sv->inflight == 0 && !sv->final_sent) {
		if (p->np && !sv->joined) {
			int r = shmp__mpi_node_join(p->np, 0.05);
			if (r == -ETIMEDOUT)
				return false;
			sv->joined = true;
		}
		struct shmp__mpi_node_report rep;
		shmp__mpi_node_report(p->np, &rep);
		MPI_Send(&rep, (int)sizeof rep, MPI_BYTE, p->root, TAG_FINAL, p->comm);
		sv->final_sent = true;
		return true;
	}
	return false;
}

int shmp__mpi_serve(struct shmp_mpi_pool *p, double deadline)
{
	if (!p->serve && !(p->serve = calloc(1, sizeof *p->serve)))
		return -ENOMEM;
	struct shmp__mpi_serve *sv = p->serve;
	if (!sv->polling_tail)
		sv->polling_tail = &sv->polling;
	sv->last = shmp__mpi_now();
	int ret = 0;
	for (;;) {
		if (p->leader && p->np ? sv->final_sent : sv->stop)
			break;
		bool any = poll_root(p);
		/* Oldest first: the stack is newest first. */
		struct sch *d = atomic_exchange(&sv->done, NULL), *rev = NULL;
		while (d) {
			struct sch *nx = d->next;
			d->next = rev;
			rev = d;
			d = nx;
		}
		while (rev) {
			struct sch *s = rev;
			rev = s->next;
			if (s->lh)
				sv->called--; /* (a chunk refused at once had none) */
			answer(p, s);
			any = true;
		}
		bool intr = false;
		any |= poll_chunks(p, 0, &intr);
		any |= finish(p);
		if (any) {
			sv->last = shmp__mpi_now();
			sv->look = 0;
			sv->sleeps = 0;
			continue;
		}
		if (deadline >= 0 && shmp__mpi_left(deadline) <= 0) {
			ret = -ETIMEDOUT;
			break;
		}
		/* Off the CPU for long since the last look (a yield that gave
		 * it away, or preempted): a busy thread shares it, and a
		 * thread yielding over and over beside it gets a turn per
		 * scheduler slice: sleep now (as the node pool's workers do,
		 * node.c). */
		double now = shmp__mpi_now();
		if (now - sv->last < SPIN_S && (sv->look == 0 || now - sv->look < YIELD_CONTENDED_S)) {
			sv->look = now;
			sched_yield();
			continue;
		}
		sv->look = 0;
		flush_spent(sv);
		double s = SLEEP_MIN_S * (double)(1u << (sv->sleeps < 7 ? sv->sleeps : 7));
		sv->sleeps++;
		if (s > SLEEP_MAX_S)
			s = SLEEP_MAX_S;
		if (deadline >= 0 && s > shmp__mpi_left(deadline))
			s = shmp__mpi_left(deadline);
		if (sv->polling && !sv->called) {
			/* Only polled chunks out: sleep in the oldest's wait. */
			if (sv->polling->next && s > POLLED_SLEEP_MAX_S)
				s = POLLED_SLEEP_MAX_S;
			if (poll_chunks(p, s, &intr)) {
				sv->last = shmp__mpi_now();
				sv->sleeps = 0;
			}
			if (intr) {
				ret = -EINTR;
				break;
			}
			continue;
		}
		if (sv->polling && s > POLLED_SLEEP_MAX_S)
			s = POLLED_SLEEP_MAX_S;
		shmp__mpi_lock(&p->sync);
		atomic_store(&sv->sleeping, true);
		int w = atomic_load(&sv->done) ? 0 : shmp__mpi_wait(&p->sync, s);
		atomic_store(&sv->sleeping, false);
		shmp__mpi_unlock(&p->sync);
		if (w == -EINTR) {
			ret = -EINTR;
			break;
		}
	}
	flush_spent(sv);
	return ret;
}

void shmp__mpi_serve_free(struct shmp_mpi_pool *p)
{
	if (p->serve)
		flush_spent(p->serve);
	free(p->serve);
	p->serve = NULL;
}
