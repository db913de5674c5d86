/* A plain fork + pipe process pool: bench_pool's baseline (see pipe_pool.h).
 *
 * Wire format, both ways: a 16-byte header, then count 8-byte items.
 *   task:   {u32 fn, u32 count, u64 ticket} args[count]
 *   result: {u64 ticket, u64 count}         results[count]
 * The parent queues tasks per worker and writes them in batches (writev) when
 * it next waits, so a burst of small tasks costs a few system calls per
 * pipe-full rather than one each (pipe_pool_eager: one write per task, as
 * the plain pool does); a worker reads all it can, runs what it read and
 * writes all those results in one write. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "pipe_pool.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/uio.h>
#include <sys/wait.h>

#define HDR 16
/* Task bytes in flight per worker before it counts as busy: half a pipe,
 * so neither side's pipe fills with small tasks. A big task (a map chunk)
 * is always allowed a second one queued behind it. */
#define WINDOW_BYTES (32u << 10)
#define OUTQ 4096u     /* queued task writes per worker (power of 2) */
#define SLOTS 16384u   /* tickets in flight, all workers (power of 2) */
#define MAXW 64
#define BATCH_IOV 512  /* iovecs per writev */

struct task_hdr {
	uint32_t fn;
	uint32_t count;
	uint64_t ticket;
};

struct res_hdr {
	uint64_t ticket;
	uint64_t count;
};

/* A task waiting to be written: its header and, for one item, the argument
 * right after it (one contiguous 24-byte write); else the caller's items. */
struct outq {
	struct task_hdr h;
	int64_t inl;
	const int64_t *data;
	size_t len;  /* bytes, header included */
	size_t done; /* bytes written */
};

struct worker {
	pid_t pid;
	int tfd, rfd;
	struct outq *q;
	unsigned qhead, qtail;
	size_t inflight_bytes;
	unsigned inflight;
	char *ib; /* result bytes read, not yet parsed */
	size_t ilen, icap;
};

struct slot {
	uint64_t ticket;
	int64_t *out;
	int busy;
	int worker;
};

struct pipe_pool {
	int n;
	struct worker w[MAXW];
	struct slot slots[SLOTS];
	uint64_t next_ticket;
	const pipe_pool_fn *fns;
	unsigned nfns;
	int eager;
};

static void die(const char *what)
{
	fprintf(stderr, "pipe_pool: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n);
	if (!p)
		die("out of memory");
	return p;
}

/* ---- worker ------------------------------------------------------------- */

static void write_all(int fd, const char *b, size_t n)
{
	while (n) {
		ssize_t r = write(fd, b, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			_exit(2);
		b += r;
		n -= (size_t)r;
	}
}

static void worker_main(int tfd, int rfd, const pipe_pool_fn *fns, unsigned nfns)
{
	size_t icap = 64 << 10, ilen = 0, ocap = 64 << 10, olen = 0;
	char *ib = malloc(icap), *ob = malloc(ocap);
	if (!ib || !ob)
		_exit(3);
	for (;;) {
		size_t off = 0, need = HDR;
		while (ilen - off >= HDR) {
			struct task_hdr h;
			memcpy(&h, ib + off, HDR);
			need = HDR + (size_t)h.count * 8;
			if (ilen - off < need)
				break;
			if (h.fn >= nfns)
				_exit(4);
			size_t rlen = HDR + (size_t)h.count * 8;
			if (olen + rlen > ocap) {
				while (olen + rlen > ocap)
					ocap *= 2;
				ob = realloc(ob, ocap);
				if (!ob)
					_exit(3);
			}
			struct res_hdr rh = { h.ticket, h.count };
			memcpy(ob + olen, &rh, HDR);
			const int64_t *a = (const int64_t *)(ib + off + HDR);
			int64_t *r = (int64_t *)(ob + olen + HDR);
			pipe_pool_fn f = fns[h.fn];
			for (uint32_t i = 0; i < h.count; i++)
				r[i] = f(a[i]);
			olen += rlen;
			off += need;
			need = HDR;
		}
		/* Everything read has run: send it before blocking for more. */
		if (olen) {
			write_all(rfd, ob, olen);
			olen = 0;
		}
		memmove(ib, ib + off, ilen - off);
		ilen -= off;
		if (need + (64 << 10) > icap) {
			icap = need + (64 << 10);
			ib = realloc(ib, icap);
			if (!ib)
				_exit(3);
		}
		ssize_t r = read(tfd, ib + ilen, icap - ilen);
		if (r == 0)
			_exit(0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			_exit(5);
		}
		ilen += (size_t)r;
	}
}

/* ---- parent ------------------------------------------------------------- */

struct pipe_pool *pipe_pool_create(int workers, const pipe_pool_fn *fns, unsigned nfns)
{
	if (workers < 1 || workers > MAXW) {
		errno = EINVAL;
		return NULL;
	}
	struct pipe_pool *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	p->n = workers;
	p->fns = fns;
	p->nfns = nfns;
	p->next_ticket = 1;
	fflush(stdout);
	fflush(stderr);
	for (int i = 0; i < workers; i++) {
		struct worker *w = &p->w[i];
		int t[2], r[2];
		if (pipe2(t, O_CLOEXEC) || pipe2(r, O_CLOEXEC))
			die("pipe");
		pid_t pid = fork();
		if (pid < 0)
			die("fork");
		if (pid == 0) {
			/* Only this worker's ends: the others' task pipes must see
			 * end of file when the parent closes them. */
			for (int j = 0; j < i; j++) {
				close(p->w[j].tfd);
				close(p->w[j].rfd);
			}
			close(t[1]);
			close(r[0]);
			worker_main(t[0], r[1], fns, nfns);
		}
		close(t[0]);
		close(r[1]);
		w->pid = pid;
		w->tfd = t[1];
		w->rfd = r[0];
		fcntl(w->tfd, F_SETFL, O_NONBLOCK);
		fcntl(w->rfd, F_SETFL, O_NONBLOCK);
		w->q = xrealloc(NULL, OUTQ * sizeof *w->q);
		w->icap = 64 << 10;
		w->ib = xrealloc(NULL, w->icap);
	}
	return p;
}

void pipe_pool_destroy(struct pipe_pool *p)
{
	if (!p)
		return;
	for (int i = 0; i < p->n; i++)
		close(p->w[i].tfd);
	for (int i = 0; i < p->n; i++) {
		int st;
		while (waitpid(p->w[i].pid, &st, 0) < 0 && errno == EINTR)
			;
		close(p->w[i].rfd);
		free(p->w[i].q);
		free(p->w[i].ib);
	}
	free(p);
}

/* Write what is queued for w, as far as the pipe takes it. */
static void flush(struct worker *w)
{
	while (w->qhead != w->qtail) {
		struct iovec iov[BATCH_IOV];
		int k = 0;
		for (unsigned i = w->qhead; i != w->qtail && k < BATCH_IOV - 1; i++) {
			struct outq *o = &w->q[i & (OUTQ - 1)];
			size_t d = o->done;
			if (!o->data) { /* header and inline argument, contiguous */
				iov[k++] = (struct iovec){ (char *)&o->h + d, o->len - d };
				continue;
			}
			if (d < HDR)
				iov[k++] = (struct iovec){ (char *)&o->h + d, HDR - d };
			size_t dd = d > HDR ? d - HDR : 0;
			iov[k++] = (struct iovec){ (char *)o->data + dd, o->len - HDR - dd };
		}
		ssize_t r = writev(w->tfd, iov, k);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return;
			die("write to worker");
		}
		size_t left = (size_t)r;
		while (left && w->qhead != w->qtail) {
			struct outq *o = &w->q[w->qhead & (OUTQ - 1)];
			size_t take = o->len - o->done < left ? o->len - o->done : left;
			o->done += take;
			left -= take;
			if (o->done == o->len)
				w->qhead++;
		}
	}
}

static void parse(struct pipe_pool *p, struct worker *w)
{
	size_t off = 0;
	while (w->ilen - off >= HDR) {
		struct res_hdr h;
		memcpy(&h, w->ib + off, HDR);
		size_t need = HDR + (size_t)h.count * 8;
		if (w->ilen - off < need)
			break;
		struct slot *s = &p->slots[h.ticket & (SLOTS - 1)];
		if (!s->busy || s->ticket != h.ticket) {
			errno = EPROTO;
			die("result for an unknown ticket");
		}
		memcpy(s->out, w->ib + off + HDR, (size_t)h.count * 8);
		s->busy = 0;
		w->inflight--;
		w->inflight_bytes -= need;
		off += need;
	}
	memmove(w->ib, w->ib + off, w->ilen - off);
	w->ilen -= off;
}

/* Send what is queued, wait (if `block`) until a pipe is ready, take in the
 * results that have come. */
static void pump(struct pipe_pool *p, int block)
{
	struct pollfd fds[2 * MAXW];
	int map[2 * MAXW], n = 0;
	for (int i = 0; i < p->n; i++) {
		struct worker *w = &p->w[i];
		flush(w);
		if (w->inflight) {
			fds[n] = (struct pollfd){ .fd = w->rfd, .events = POLLIN };
			map[n++] = i;
		}
		if (w->qhead != w->qtail) {
			fds[n] = (struct pollfd){ .fd = w->tfd, .events = POLLOUT };
			map[n++] = i;
		}
	}
	if (!n)
		return;
	int r = poll(fds, (nfds_t)n, block ? -1 : 0);
	if (r < 0) {
		if (errno == EINTR)
			return;
		die("poll");
	}
	for (int k = 0; k < n; k++) {
		struct worker *w = &p->w[map[k]];
		if (!fds[k].revents)
			continue;
		if (fds[k].fd == w->tfd) {
			if (fds[k].revents & (POLLERR | POLLHUP)) {
				errno = EPIPE;
				die("a worker is gone");
			}
			flush(w);
			continue;
		}
		/* Room for the message in progress, and 64 KiB more. */
		size_t need = 64 << 10;
		if (w->ilen >= HDR) {
			struct res_hdr h;
			memcpy(&h, w->ib, HDR);
			need += HDR + (size_t)h.count * 8;
		}
		if (w->ilen + need > w->icap) {
			w->icap = w->ilen + need;
			w->ib = xrealloc(w->ib, w->icap);
		}
		ssize_t got = read(w->rfd, w->ib + w->ilen, w->icap - w->ilen);
		if (got == 0) {
			errno = EPIPE;
			die("a worker died");
		}
		if (got < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			die("read from worker");
		}
		w->ilen += (size_t)got;
		parse(p, w);
	}
}

/* Queue one task on the least loaded worker, waiting for room. */
static uint64_t submit(struct pipe_pool *p, unsigned fn, const int64_t *data, int64_t inl, uint32_t count,
		       int64_t *out)
{
	uint64_t t = p->next_ticket++;
	struct slot *s = &p->slots[t & (SLOTS - 1)];
	size_t len = HDR + (size_t)count * 8;
	for (;;) {
		int best = -1;
		for (int i = 0; i < p->n; i++) {
			struct worker *w = &p->w[i];
			if (w->qtail - w->qhead >= OUTQ)
				continue;
			if (w->inflight >= 2 && w->inflight_bytes + len > WINDOW_BYTES)
				continue;
			if (best < 0 || w->inflight_bytes < p->w[best].inflight_bytes)
				best = i;
		}
		if (best >= 0 && !s->busy) {
			struct worker *w = &p->w[best];
			struct outq *o = &w->q[w->qtail++ & (OUTQ - 1)];
			o->h = (struct task_hdr){ fn, count, t };
			o->inl = inl;
			o->data = data;
			o->len = len;
			o->done = 0;
			w->inflight++;
			w->inflight_bytes += len;
			*s = (struct slot){ .ticket = t, .out = out, .busy = 1, .worker = best };
			if (p->eager)
				flush(w);
			return t;
		}
		pump(p, 1);
	}
}

void pipe_pool_eager(struct pipe_pool *p, int on)
{
	p->eager = on;
}

uint64_t pipe_pool_submit(struct pipe_pool *p, unsigned fn, int64_t arg, int64_t *res)
{
	return submit(p, fn, NULL, arg, 1, res);
}

void pipe_pool_wait(struct pipe_pool *p, uint64_t ticket)
{
	struct slot *s = &p->slots[ticket & (SLOTS - 1)];
	while (s->busy && s->ticket == ticket)
		pump(p, 1);
}

int64_t pipe_pool_apply(struct pipe_pool *p, unsigned fn, int64_t arg)
{
	int64_t r;
	pipe_pool_wait(p, pipe_pool_submit(p, fn, arg, &r));
	return r;
}

void pipe_pool_map(struct pipe_pool *p, unsigned fn, const int64_t *in, int64_t *out, size_t n,
		   size_t chunksize)
{
	if (!chunksize)
		chunksize = (n + 4 * (size_t)p->n - 1) / (4 * (size_t)p->n);
	if (!chunksize)
		chunksize = 1;
	if (chunksize > UINT32_MAX)
		chunksize = UINT32_MAX;
	uint64_t first = 0, last = 0;
	for (size_t i = 0; i < n; i += chunksize) {
		size_t k = n - i < chunksize ? n - i : chunksize;
		last = k == 1 ? submit(p, fn, NULL, in[i], 1, out + i)
			      : submit(p, fn, in + i, 0, (uint32_t)k, out + i);
		if (!first)
			first = last;
	}
	if (!first)
		return;
	for (uint64_t t = first; t <= last; t++)
		pipe_pool_wait(p, t);
}

/* ---- imap, chunksize 1 -------------------------------------------------- */

struct pipe_pool_imap {
	struct pipe_pool *p;
	unsigned fn, window;
	const int64_t *in;
	size_t n, next, sent;
	uint64_t *tickets;
	int64_t *res;
};

struct pipe_pool_imap *pipe_pool_imap(struct pipe_pool *p, unsigned fn, const int64_t *in, size_t n)
{
	struct pipe_pool_imap *it = xrealloc(NULL, sizeof *it);
	/* shmp's default bound on chunks in flight: 2 * workers + 2. */
	unsigned window = 2 * (unsigned)p->n + 2;
	*it = (struct pipe_pool_imap){ p, fn, window, in, n, 0, 0, NULL, NULL };
	it->tickets = xrealloc(NULL, it->window * sizeof *it->tickets);
	it->res = xrealloc(NULL, it->window * sizeof *it->res);
	for (; it->sent < n && it->sent < it->window; it->sent++)
		it->tickets[it->sent] = pipe_pool_submit(p, fn, in[it->sent], &it->res[it->sent]);
	return it;
}

int pipe_pool_imap_next(struct pipe_pool_imap *it, int64_t *out)
{
	if (it->next == it->n) {
		free(it->tickets);
		free(it->res);
		free(it);
		return 0;
	}
	unsigned k = (unsigned)(it->next % it->window);
	pipe_pool_wait(it->p, it->tickets[k]);
	*out = it->res[k];
	it->next++;
	/* Its slot is free: the next item in. */
	if (it->sent < it->n) {
		it->tickets[k] = pipe_pool_submit(it->p, it->fn, it->in[it->sent], &it->res[k]);
		it->sent++;
	}
	return 1;
}
