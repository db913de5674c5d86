/* private: wait for several file descriptors and a timeout in one call —
 * io_uring (POLL_ADD) when this process may use it, ppoll() otherwise. The
 * Pool's supervisor waits here for its results eventfd, worker pidfds and
 * the zygote's pidfd. Each fd is armed once: after it is reported the
 * caller re-adds it if it wants more (pidfds stay readable forever). */
#include "waitset.h"

#include <liburing.h>
#include <poll.h>
#include <stdlib.h>

struct entry {
	int fd;
	uint32_t gen; /* tells a stale completion from the current arming */
	bool used, armed;
	uint64_t tag;
};

struct shmp__waitset {
	bool uring;
	struct io_uring ring;
	struct entry *e;
	unsigned n, cap;
	struct pollfd *pfd; /* poll path scratch */
	unsigned *pidx;
};

struct shmp__waitset *shmp__waitset_new(void)
{
	struct shmp__waitset *w = calloc(1, sizeof *w);
	if (!w)
		return NULL;
	if (shmp_io_uring_available() && io_uring_queue_init(64, &w->ring, 0) == 0)
		w->uring = true;
	return w;
}

bool shmp__waitset_uring(const struct shmp__waitset *w)
{
	return w->uring;
}

void shmp__waitset_free(struct shmp__waitset *w)
{
	if (!w)
		return;
	if (w->uring)
		io_uring_queue_exit(&w->ring);
	free(w->e);
	free(w->pfd);
	free(w->pidx);
	free(w);
}

static struct io_uring_sqe *get_sqe(struct shmp__waitset *w)
{
	struct io_uring_sqe *s = io_uring_get_sqe(&w->ring);
	if (!s) {
		io_uring_submit(&w->ring);
		s = io_uring_get_sqe(&w->ring);
	}
	return s;
}

static int find(const struct shmp__waitset *w, uint64_t tag)
{
	for (unsigned i = 0; i < w->n; i++)
		if (w->e[i].used && w->e[i].tag == tag)
			return (int)i;
	return -1;
}

int shmp__waitset_add(struct shmp__waitset *w, int fd, uint64_t tag)
{
	int i = find(w, tag);
	if (i < 0) {
		for (unsigned k = 0; k < w->n && i < 0; k++)
			if (!w->e[k].used)
				i = (int)k;
		if (i < 0) {
			if (w->n == w->cap) {
				unsigned nc = w->cap ? w->cap * 2 : 16;
				struct entry *e = realloc(w->e, nc * sizeof *e);
				struct pollfd *p = realloc(w->pfd, nc * sizeof *p);
				if (p)
					w->pfd = p;
				unsigned *x = realloc(w->pidx, nc * sizeof *x);
				if (x)
					w->pidx = x;
				if (!e || !p || !x) {
					if (e)
						w->e = e;
					return -ENOMEM;
				}
				w->e = e;
				w->cap = nc;
			}
			i = (int)w->n++;
		}
		w->e[i] = (struct entry){ .fd = fd, .gen = w->e[i].gen, .used = true, .tag = tag };
	}
	struct entry *e = &w->e[i];
	if (e->armed)
		return 0;
	e->fd = fd;
	e->armed = true;
	e->gen++;
	if (w->uring) {
		struct io_uring_sqe *s = get_sqe(w);
		if (!s)
			return -EBUSY;
		io_uring_prep_poll_add(s, fd, POLLIN);
		io_uring_sqe_set_data64(s, (uint64_t)i << 32 | e->gen);
	}
	return 0;
}

void shmp__waitset_del(struct shmp__waitset *w, uint64_t tag)
{
	int i = find(w, tag);
	if (i < 0)
		return;
	struct entry *e = &w->e[i];
	if (w->uring && e->armed) {
		struct io_uring_sqe *s = get_sqe(w);
		if (s) {
			io_uring_prep_poll_remove(s, (uint64_t)i << 32 | e->gen);
			io_uring_sqe_set_data64(s, UINT64_MAX); /* its own completion is ignored */
			io_uring_submit(&w->ring);
		}
	}
	e->used = e->armed = false;
	e->gen++; /* a completion of the removed arming is now stale */
}

static int report(struct shmp__waitset *w, unsigned i, uint64_t *tags, int n, int max)
{
	if (n < max && w->e[i].used && w->e[i].armed) {
		w->e[i].armed = false;
		tags[n++] = w->e[i].tag;
	}
	return n;
}

static int wait_uring(struct shmp__waitset *w, long timeout_ns, uint64_t *tags, int max)
{
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts = { .tv_sec = timeout_ns / 1000000000L,
					.tv_nsec = timeout_ns % 1000000000L };
	io_uring_submit(&w->ring);
	int r = io_uring_wait_cqe_timeout(&w->ring, &cqe, timeout_ns < 0 ? NULL : &ts);
	if (r < 0 && r != -ETIME && r != -EINTR)
		return r;
	int n = 0;
	while (n < max && io_uring_peek_cqe(&w->ring, &cqe) == 0) {
		uint64_t d = io_uring_cqe_get_data64(cqe);
		io_uring_cqe_seen(&w->ring, cqe);
		if (d == UINT64_MAX)
			continue; /* a removal's own completion */
		unsigned i = (unsigned)(d >> 32);
		/* A failed poll (res < 0) is reported too: the caller looks at
		 * the fd and re-arms it or drops it. */
		if (i < w->n && w->e[i].gen == (uint32_t)d)
			n = report(w, i, tags, n, max);
	}
	return n;
}

static int wait_poll(struct shmp__waitset *w, long timeout_ns, uint64_t *tags, int max)
{
	unsigned np = 0;
	for (unsigned i = 0; i < w->n; i++)
		if (w->e[i].used && w->e[i].armed) {
			w->pfd[np] = (struct pollfd){ .fd = w->e[i].fd, .events = POLLIN };
			w->pidx[np++] = i;
		}
	struct timespec ts = { .tv_sec = timeout_ns / 1000000000L, .tv_nsec = timeout_ns % 1000000000L };
	int r = ppoll(w->pfd, np, timeout_ns < 0 ? NULL : &ts, NULL);
	if (r < 0)
		return errno == EINTR ? 0 : -errno;
	int n = 0;
	for (unsigned k = 0; k < np && n < max; k++)
		if (w->pfd[k].revents)
			n = report(w, w->pidx[k], tags, n, max);
	return n;
}

int shmp__waitset_wait(struct shmp__waitset *w, long timeout_ns, uint64_t *tags, int max)
{
	return w->uring ? wait_uring(w, timeout_ns, tags, max) : wait_poll(w, timeout_ns, tags, max);
}
