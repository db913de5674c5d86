/* private: Pipe — two ends over one ring per direction.
 *
 * End of file comes from the other end's close() (which closes the rings so
 * waiters wake at once) or from the death of the last process that used
 * that end, which a blocked reader or writer notices on its periodic check. */
#include "internal.h"

#include <stdlib.h>

struct pipe_end {
	_Atomic uint32_t closed;
	_Atomic int32_t user_pid; /* last process that sent or received on it */
};

struct shmp__pipe_sh {
	uint32_t magic;
	uint32_t one_way;
	struct pipe_end end[2];
};
#define PIPE_MAGIC 0x50495045u
#define CHECK_FIRST_NS 10000000L
#define CHECK_MAX_NS 100000000L

/* Process-local, shared by the two handles of one process. */
struct pipe_local {
	shmp_segment_t *seg;
	struct shmp__pipe_sh *sh;
	shmp_ring_t *ring[2]; /* ring[i] carries messages *to* end i */
	pid_t creator;
	int handles;
};

struct shmp_conn {
	struct pipe_local *p;
	int end;
	bool can_send, can_recv;
	unsigned sends;     /* a liveness check every 64th send... */
	uint64_t next_peer_check; /* ...and at most every PEER_CHECK_NS */
	pid_t dead_peer;    /* the other end's last user, found dead by us */
};
#define PEER_CHECK_NS 10000000ull

static void pipe_free(struct pipe_local *p, bool shared_too)
{
	if (shared_too) {
		shmp_ring_destroy(p->ring[0]);
		shmp_ring_destroy(p->ring[1]);
		shmp__free_ptr(p->seg, p->sh);
	}
	free(p);
}

int shmp_pipe_create(shmp_conn_t **a, shmp_conn_t **b, const struct shmp_pipe_opts *opts)
{
	struct shmp_pipe_opts o;
	if (!a || !b || SHMP__OPTS(o, opts) < 0)
		return -EINVAL;
	shmp_segment_t *seg = shmp__segment_or_default(o.segment);
	if (!seg)
		return -errno;
	struct pipe_local *p = calloc(1, sizeof *p);
	shmp_conn_t *ca = calloc(1, sizeof *ca), *cb = calloc(1, sizeof *cb);
	if (!p || !ca || !cb)
		goto nomem;
	p->seg = seg;
	p->creator = getpid();
	p->handles = 2;
	struct shmp_ring_opts ro = { .sz = sizeof ro, .segment = seg, .capacity = o.capacity,
				     .max_message = o.max_message };
	if (!(p->ring[0] = shmp_ring_create(&ro)) || (!o.one_way && !(p->ring[1] = shmp_ring_create(&ro))) ||
	    !(p->sh = shmp__alloc_ptr(seg, sizeof *p->sh, SHMP__CACHELINE, NULL))) {
		int e = errno;
		pipe_free(p, true);
		free(ca);
		free(cb);
		return -e;
	}
	p->sh->one_way = o.one_way != 0;
	p->sh->magic = PIPE_MAGIC;
	*ca = (struct shmp_conn){ .p = p, .end = 0, .can_recv = true, .can_send = !o.one_way };
	*cb = (struct shmp_conn){ .p = p, .end = 1, .can_recv = !o.one_way, .can_send = true };
	*a = ca;
	*b = cb;
	return 0;
nomem:
	free(p);
	free(ca);
	free(cb);
	return -ENOMEM;
}

static shmp_ring_t *ring_in(shmp_conn_t *c) { return c->p->ring[c->end]; }
static shmp_ring_t *ring_out(shmp_conn_t *c) { return c->p->ring[c->p->sh->one_way ? 0 : 1 - c->end]; }

static void mark_user(shmp_conn_t *c)
{
	struct pipe_end *e = &c->p->sh->end[c->end];
	pid_t me = shmp__pid();
	if (atomic_load_explicit(&e->user_pid, memory_order_relaxed) != me)
		atomic_store_explicit(&e->user_pid, me, memory_order_relaxed);
}

/* The other end is closed, or the last process using it is dead. A death
 * found is remembered, so later calls know it from one load: until a live
 * process uses that end again. */
static bool peer_gone(shmp_conn_t *c)
{
	struct pipe_end *e = &c->p->sh->end[1 - c->end];
	if (atomic_load_explicit(&e->closed, memory_order_acquire))
		return true;
	pid_t pid = atomic_load_explicit(&e->user_pid, memory_order_relaxed);
	if (pid > 0 && pid == c->dead_peer)
		return true;
	if (pid > 0 && shmp__tid_dead(pid)) {
		c->dead_peer = pid;
		return true;
	}
	return false;
}

static bool peer_known_dead(shmp_conn_t *c)
{
	pid_t pid = atomic_load_explicit(&c->p->sh->end[1 - c->end].user_pid, memory_order_relaxed);
	return c->dead_peer && pid == c->dead_peer;
}

/* Seconds until the sooner of the next peer check and the deadline. */
static double slice_left(const struct shmp__deadline *d, const struct shmp__checker *ck)
{
	struct timespec until = shmp__checker_until(ck, d), now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	double s = (double)(until.tv_sec - now.tv_sec) + (double)(until.tv_nsec - now.tv_nsec) * 1e-9;
	return s > 0 ? s : 0;
}

static int conn_check(shmp_conn_t *c, bool send)
{
	if (!c)
		return -EINVAL;
	if (send ? !c->can_send : !c->can_recv)
		return -EBADF;
	if (atomic_load_explicit(&c->p->sh->end[c->end].closed, memory_order_acquire))
		return -SHMP_ECLOSED;
	mark_user(c);
	return 0;
}

int shmp_conn_send(shmp_conn_t *c, const void *msg, size_t len, double timeout)
{
	int r = conn_check(c, true);
	if (r < 0)
		return r;
	if (atomic_load_explicit(&c->p->sh->end[1 - c->end].closed, memory_order_acquire) ||
	    peer_known_dead(c))
		return -SHMP_ECLOSED;
	/* A dead reader is found by a system call or two: keep them off the
	 * common path, but look often enough that sends stop soon after. */
	if ((c->sends++ & 63) == 0) {
		uint64_t now = shmp__now_ns();
		if (now >= c->next_peer_check) {
			c->next_peer_check = now + PEER_CHECK_NS;
			if (peer_gone(c))
				return -SHMP_ECLOSED;
		}
	}
	r = shmp_ring_put(ring_out(c), msg, len, 0);
	if (r != -ETIMEDOUT || timeout == 0)
		return r;
	struct shmp__deadline d;
	struct shmp__checker ck;
	if (shmp__deadline_init(&d, timeout) < 0)
		return -EINVAL;
	shmp__checker_init(&ck, CHECK_FIRST_NS, CHECK_MAX_NS);
	for (;;) {
		r = shmp_ring_put(ring_out(c), msg, len, slice_left(&d, &ck));
		if (r != -ETIMEDOUT)
			return r;
		if (shmp__checker_due(&ck) && peer_gone(c))
			return -SHMP_ECLOSED; /* nobody will ever read it */
		if (shmp__deadline_passed(&d))
			return -ETIMEDOUT;
	}
}

/* Wait for a message or end of file: 0 ready, -SHMP_ECLOSED, -ETIMEDOUT. */
static int wait_readable(shmp_conn_t *c, double timeout)
{
	int r = shmp_ring_poll(ring_in(c), 0);
	if (r != -ETIMEDOUT || timeout == 0)
		return r == -ETIMEDOUT && peer_gone(c) ? -SHMP_ECLOSED : r;
	struct shmp__deadline d;
	struct shmp__checker ck;
	if (shmp__deadline_init(&d, timeout) < 0)
		return -EINVAL;
	shmp__checker_init(&ck, CHECK_FIRST_NS, CHECK_MAX_NS);
	for (;;) {
		r = shmp_ring_poll(ring_in(c), slice_left(&d, &ck));
		if (r != -ETIMEDOUT)
			return r;
		if (shmp__checker_due(&ck) && peer_gone(c))
			/* Gone: whatever it sent before is still ours to read. */
			return shmp_ring_poll(ring_in(c), 0) == 0 ? 0 : -SHMP_ECLOSED;
		if (shmp__deadline_passed(&d))
			return -ETIMEDOUT;
	}
}

int shmp_conn_recv(shmp_conn_t *c, void *buf, size_t cap, size_t *len, double timeout)
{
	int r = conn_check(c, false);
	if (r < 0)
		return r;
	if (!len || (!buf && cap))
		return -EINVAL;
	/* One deadline for the call: another reader of this end may take the
	 * message we were woken for, and then we wait out what is left. */
	struct shmp__deadline d;
	if (shmp__deadline_init(&d, timeout) < 0)
		return -EINVAL;
	for (;;) {
		r = shmp_ring_get(ring_in(c), buf, cap, len, 0);
		if (r != -ETIMEDOUT)
			return r;
		if ((r = wait_readable(c, shmp__deadline_left(&d))) < 0)
			return r;
	}
}

int shmp_conn_poll(shmp_conn_t *c, double timeout)
{
	int r = conn_check(c, false);
	if (r < 0)
		return r;
	r = wait_readable(c, timeout);
	if (r == 0 || r == -SHMP_ECLOSED)
		return 1;
	return r == -ETIMEDOUT ? 0 : r;
}

int shmp_conn_close(shmp_conn_t *c)
{
	if (!c)
		return -EINVAL;
	struct pipe_end *e = &c->p->sh->end[c->end];
	if (atomic_exchange_explicit(&e->closed, 1, memory_order_acq_rel))
		return 0;
	/* Readers of what we sent drain it, then see end of file; writers to
	 * us fail at once. Waiters on either ring wake now. */
	if (c->can_send)
		shmp_ring_close(ring_out(c));
	if (c->can_recv)
		shmp_ring_close(ring_in(c));
	return 0;
}

void shmp_conn_destroy(shmp_conn_t *c)
{
	if (!c)
		return;
	struct pipe_local *p = c->p;
	free(c);
	if (--p->handles == 0)
		pipe_free(p, p->creator == getpid());
}
