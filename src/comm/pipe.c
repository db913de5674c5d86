/* private: Pipe — two ends over one ring per direction, and who holds them.
 *
 * End of file, as with a pipe's file descriptors: an end is gone once every
 * process that holds it has closed it or died. Each end has a table of
 * holders in shared memory (HOLDERS slots: pid and start time), and a state
 * word: CLOSED | overflow count | a count of additions.
 *   - The creating process holds both ends from create.
 *   - A process forked while this one holds an end holds it too (atfork:
 *     the parent reserves a slot for the child before the fork, marked
 *     PENDING: alive while the parent is, and for 2 s in any case; the
 *     child takes it over first thing).
 *   - close() and destroy() in a process drop its holds.
 *   - A holder found dead by a liveness probe (/proc/<pid>/stat: gone, a
 *     zombie, or another process since — its start time differs) is gone;
 *     whoever finds it clears its slot. Pids read here are only probed,
 *     never signalled.
 *   - Whoever finds no live holder of an end declares it CLOSED, once and
 *     for every process, and closes both rings: the other end drains what
 *     was sent, then sees end of file; its sends fail.
 * Declaring and joining race: a reader scans the table while a child takes
 * a slot. Every addition bumps the state word, and a declaration is a CAS
 * from the word the scan started with, so either the scan's CAS fails and
 * it looks again, or the addition finds CLOSED and the newcomer holds
 * nothing (its calls say closed). No message is ever accepted after an end
 * of file was reported.
 *
 * Past HOLDERS live holders of one end, further forked children are counted
 * (overflow), not named: the end then stays held until each of them closes
 * or destroys it — the death of an unnamed holder is not noticed.
 *
 * Crash safety: a process killed at any point leaves at most its own slots,
 * which the next probe clears; a fork that fails gives its reservation
 * back (glibc and musl keep fork's errno for the parent's atfork handler);
 * a child killed before it takes its reserved slot leaves it PENDING, alive
 * while its parent is — end of file then waits for the parent to end. A
 * child that could not run for 2 s after its fork, while its parent has
 * closed the end or died, may find the end declared closed: it then holds
 * nothing, and its calls say closed (never a message after end of file).
 *
 * Lifetime (the one rule): destroying a conn releases this process's
 * handle and its hold; the shared pipe is freed by the creating process
 * once it has destroyed both of its ends; a forked child's destroy never
 * frees it. */
#include "object.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#define HOLDERS 64
#define ST_CLOSED (1ull << 63)
#define ST_OVF_SHIFT 48
#define ST_OVF_ONE (1ull << ST_OVF_SHIFT)
#define ST_OVF_MAX 0x7fffull
#define ST_OVF(st) (((st) >> ST_OVF_SHIFT) & ST_OVF_MAX)
#define ST_ADDS_MASK (ST_OVF_ONE - 1)
/* A holder slot: pid << 32 | start time (low 31 bits, clock ticks since
 * boot; 0 if unknown). A reservation for a child being forked: the forking
 * pid << 32 | PENDING | when (CLOCK_MONOTONIC, ms, low 31 bits); it counts
 * as alive while the forking process lives, or for PENDING_GRACE_MS (a
 * parent that exits right after the fork, as daemons do, must not make its
 * child lose the end before the child had a chance to run). 0: free. */
#define H_PENDING 0x80000000ull
#define H_START_MASK 0x7fffffffull
#define PENDING_GRACE_MS 2000u

struct pipe_end {
	_Atomic uint64_t state;
	_Atomic uint64_t holder[HOLDERS];
};

struct shmp__pipe_sh {
	uint32_t magic;
	uint32_t version;
	uint32_t one_way;
	uint32_t reserved[13]; /* zero, for later versions */
	struct pipe_end end[2];
};
#define PIPE_MAGIC 0x50495046u
#define PIPE_VERSION 2u /* 2: holder tables */
/* Pinned: every process holding an end maps it, maybe of another build. */
SHMP__PIN(struct shmp__pipe_sh, 1104);
_Static_assert(offsetof(struct shmp__pipe_sh, one_way) == 8 && offsetof(struct shmp__pipe_sh, end) == 64 &&
	       sizeof(struct pipe_end) == 520 && offsetof(struct pipe_end, holder) == 8, "pipe fields");
/* Published, never opened by offset: a pipe is reached through its ends. */
static const struct shmp__layout pipe_layout = SHMP__LAYOUT(struct shmp__pipe_sh, PIPE_MAGIC, PIPE_VERSION, NULL);
#define CHECK_FIRST_NS 10000000L
#define CHECK_MAX_NS 100000000L
#define PEER_CHECK_NS 10000000ull

/* This process's hold of an end: a slot index, or one of these. */
#define HOLD_NONE (-1)
#define HOLD_OVERFLOW (-2)

/* Process-local, shared by the two handles of one process; on a list, so
 * that fork can hand this process's holds on to the child. */
struct pipe_local {
	struct pipe_local *prev, *next;
	shmp_segment_t *seg;
	struct shmp__pipe_sh *sh;
	shmp_ring_t *ring[2];   /* ring[i] carries messages *to* end i */
	struct shmp_conn *conn[2]; /* live handles, NULL once destroyed */
	_Atomic int hold[2];    /* this process's hold of each end */
	int pend[2];            /* during a fork: the slot reserved for the child */
	uint64_t pend_val[2];
	int released;           /* creating handles released by their creator */
};

struct shmp_conn {
	SHMP__HEAD(struct shmp__pipe_sh); /* ref always NULL: pipes are not lent by the registry */
	struct pipe_local *p;
	int end;
	bool can_send, can_recv;
	/* Atomic: threads may share a handle (only counters, relaxed). */
	_Atomic unsigned sends;           /* a liveness check every 64th send... */
	_Atomic uint64_t next_peer_check; /* ...and at most every PEER_CHECK_NS */
};
SHMP__HEAD_CHECK(struct shmp_conn);

/* ---- who is alive ------------------------------------------------------- */

/* Field 3 (state) and 22 (start time) of /proc/<pid>/stat. 0, -ENOENT (no
 * such process), or another -errno (cannot tell). */
static int proc_stat(pid_t pid, char *state, uint64_t *start)
{
	char path[48], buf[512];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	int e = errno;
	close(fd);
	if (n <= 0)
		return n == 0 ? -ENOENT : -e;
	buf[n] = 0;
	const char *s = strrchr(buf, ')'); /* the name may hold spaces and ')' */
	if (!s || s[1] != ' ' || !s[2])
		return -EIO;
	*state = s[2];
	s += 2;
	for (int field = 3; field < 22; field++) {
		s = strchr(s, ' ');
		if (!s)
			return -EIO;
		s++;
	}
	*start = strtoull(s, NULL, 10);
	return 0;
}

/* Is /proc there to ask? 1 yes, 0 no, -1 not known yet. */
static _Atomic int proc_ok = -1;

/* This process's holder word (pid, start time), cached: one word, whose
 * pid part tells whether it is ours or a forked parent's. */
static uint64_t me_word(void)
{
	static _Atomic uint64_t cached;
	pid_t pid = getpid();
	uint64_t v = atomic_load_explicit(&cached, memory_order_relaxed);
	if (v && (pid_t)(uint32_t)(v >> 32) == pid)
		return v;
	char st;
	uint64_t start = 0;
	int r = proc_stat(pid, &st, &start);
	atomic_store(&proc_ok, r == 0);
	v = (uint64_t)(uint32_t)pid << 32 | (r == 0 ? start & H_START_MASK : 0);
	atomic_store_explicit(&cached, v, memory_order_relaxed);
	return v;
}

/* Is process pid there (not a zombie)? With start != 0, is it still the
 * process that started then? Only a probe: /proc, or signal 0 where /proc
 * cannot be read. */
static bool pid_alive(pid_t pid, uint64_t start)
{
	if (pid <= 0)
		return false; /* garbage: holds nothing */
	if (atomic_load(&proc_ok) < 0)
		me_word();
	if (atomic_load(&proc_ok) > 0) {
		char st;
		uint64_t now;
		int r = proc_stat(pid, &st, &now);
		if (r == -ENOENT || r == -ESRCH)
			return false;
		if (r < 0)
			return true; /* cannot tell: assume held, never a false EOF */
		if (st == 'Z' || st == 'X')
			return false;
		return start == 0 || (now & H_START_MASK) == start;
	}
	return kill(pid, 0) == 0 || errno != ESRCH;
}

static uint32_t now_ms(void)
{
	return (uint32_t)(shmp__now_ns() / 1000000u) & (uint32_t)H_START_MASK;
}

/* Does the holder word v still hold its end? */
static bool holder_alive(uint64_t v)
{
	pid_t pid = (pid_t)(uint32_t)(v >> 32);
	if (!(v & H_PENDING))
		return pid_alive(pid, v & H_START_MASK);
	uint32_t age = (now_ms() - (uint32_t)(v & H_START_MASK)) & (uint32_t)H_START_MASK;
	return age < PENDING_GRACE_MS || pid_alive(pid, 0);
}

/* ---- holding ------------------------------------------------------------ */

/* Add a holder (this process, or a PENDING reservation) to end pe: a slot,
 * HOLD_OVERFLOW when the table is full, or HOLD_NONE when the end was
 * declared closed (nothing is added then). */
static int hold_add(struct pipe_end *pe, uint64_t word)
{
	int slot = HOLD_NONE;
	for (int i = 0; i < HOLDERS && slot < 0; i++) {
		uint64_t z = 0;
		if (atomic_compare_exchange_strong(&pe->holder[i], &z, word))
			slot = i;
	}
	/* Bump the state word, so a scan that missed us cannot declare. */
	uint64_t st = atomic_load(&pe->state), nst;
	do {
		if ((st & ST_CLOSED) || (slot < 0 && ST_OVF(st) == ST_OVF_MAX)) {
			if (slot >= 0)
				atomic_compare_exchange_strong(&pe->holder[slot], &word, 0);
			return HOLD_NONE;
		}
		nst = (st & ~ST_ADDS_MASK) | ((st + 1) & ST_ADDS_MASK);
		if (slot < 0)
			nst += ST_OVF_ONE;
	} while (!atomic_compare_exchange_weak(&pe->state, &st, nst));
	return slot >= 0 ? slot : HOLD_OVERFLOW;
}

/* Give back a hold made by hold_add (its slot must still hold `word`). */
static void hold_drop(struct pipe_end *pe, int hold, uint64_t word)
{
	if (hold >= 0 && hold < HOLDERS) {
		atomic_compare_exchange_strong(&pe->holder[hold], &word, 0);
	} else if (hold == HOLD_OVERFLOW) {
		uint64_t st = atomic_load(&pe->state);
		while (ST_OVF(st) && !atomic_compare_exchange_weak(&pe->state, &st, st - ST_OVF_ONE))
			;
	}
}

static void close_rings(struct pipe_local *p)
{
	for (int i = 0; i < 2; i++)
		if (p->ring[i])
			shmp_ring_close(p->ring[i]);
}

/* Is end e gone (every holder closed or dead)? With `scan` false, only what
 * one load tells: declared closed. A full look clears dead holders' slots
 * and, when nobody is left, declares the end closed for everyone. */
static bool end_gone(struct pipe_local *p, int e, bool scan)
{
	struct pipe_end *pe = &p->sh->end[e];
	for (int tries = 0; tries < 16; tries++) {
		uint64_t st = atomic_load(&pe->state);
		if (st & ST_CLOSED)
			return true;
		if (!scan || atomic_load_explicit(&p->hold[e], memory_order_relaxed) != HOLD_NONE || ST_OVF(st))
			return false; /* we hold it ourselves, or unnamed holders do */
		bool alive = false;
		for (int i = 0; i < HOLDERS && !alive; i++) {
			uint64_t v = atomic_load(&pe->holder[i]);
			/* A dead holder's slot is cleared by exactly the value
			 * seen: if a child took it over meanwhile, look again
			 * (a few times: a slot that never settles is held). */
			for (int k = 0; v && !alive; k++)
				if (k == 4 || holder_alive(v))
					alive = true;
				else if (atomic_compare_exchange_strong(&pe->holder[i], &v, 0))
					v = 0;
		}
		if (alive)
			return false;
		if (atomic_compare_exchange_strong(&pe->state, &st, st | ST_CLOSED)) {
			close_rings(p); /* wake every waiter on either side */
			return true;
		}
	}
	return false; /* holders keep coming: held */
}

/* ---- the process's pipes, and fork -------------------------------------- */

static pthread_mutex_t pipes_mu = PTHREAD_MUTEX_INITIALIZER;
static struct pipe_local *pipes;
static int fork_errno; /* the caller's errno across a fork (under pipes_mu) */

/* Before fork: reserve a slot for the child in every end we hold. The
 * list stays locked until the fork is over. */
static void atfork_prepare(void)
{
	pthread_mutex_lock(&pipes_mu);
	uint64_t pending = (me_word() & ~H_START_MASK) | H_PENDING | now_ms();
	for (struct pipe_local *p = pipes; p; p = p->next)
		for (int e = 0; e < 2; e++) {
			p->pend[e] = HOLD_NONE;
			if (atomic_load(&p->hold[e]) == HOLD_NONE)
				continue;
			p->pend_val[e] = pending;
			p->pend[e] = hold_add(&p->sh->end[e], pending);
		}
	/* fork() leaves errno alone on success: zero tells the parent's
	 * handler whether a child exists to take the reservations. (Were it
	 * wrong, the child would only take a fresh slot instead.) */
	fork_errno = errno;
	errno = 0;
}

static void atfork_parent(void)
{
	bool failed = errno != 0; /* fork's own errno (glibc, musl keep it) */
	for (struct pipe_local *p = pipes; p; p = p->next)
		for (int e = 0; e < 2; e++) {
			if (failed && p->pend[e] != HOLD_NONE)
				hold_drop(&p->sh->end[e], p->pend[e], p->pend_val[e]);
			p->pend[e] = HOLD_NONE;
		}
	if (!failed)
		errno = fork_errno; /* as the caller left it */
	pthread_mutex_unlock(&pipes_mu);
}

/* In the child: take over the reserved slots. */
static void atfork_child(void)
{
	pthread_mutex_init(&pipes_mu, NULL);
	uint64_t me = me_word(); /* new pid: asks /proc for our start time */
	for (struct pipe_local *p = pipes; p; p = p->next)
		for (int e = 0; e < 2; e++) {
			int h = p->pend[e];
			uint64_t v = p->pend_val[e];
			p->pend[e] = HOLD_NONE;
			if (h == HOLD_NONE) {
				atomic_store(&p->hold[e], HOLD_NONE);
				continue;
			}
			struct pipe_end *pe = &p->sh->end[e];
			if (h >= 0 && !atomic_compare_exchange_strong(&pe->holder[h], &v, me))
				h = hold_add(pe, me); /* our parent died and lost it: join anew */
			atomic_store(&p->hold[e], h);
		}
	/* Handles the parent had closed or destroyed stay as they were. */
	errno = fork_errno;
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void atfork_install(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

/* ---- create, destroy ------------------------------------------------------ */

static void pipe_free_shared(struct pipe_local *p)
{
	shmp_ring_destroy(p->ring[0]);
	shmp_ring_destroy(p->ring[1]);
	shmp__free_ptr(p->seg, p->sh);
}

int shmp_pipe_create(shmp_conn_t **a, shmp_conn_t **b, const struct shmp_pipe_opts *opts)
{
	struct shmp_pipe_opts o;
	if (!a || !b || SHMP__OPTS(o, opts) < 0)
		return -EINVAL;
	shmp_segment_t *seg = shmp__segment_or_default(o.segment);
	if (!seg)
		return -errno;
	pthread_once(&atfork_once, atfork_install);
	struct pipe_local *p = calloc(1, sizeof *p);
	shmp_conn_t *ca = calloc(1, sizeof *ca), *cb = calloc(1, sizeof *cb);
	if (!p || !ca || !cb) {
		free(p);
		free(ca);
		free(cb);
		return -ENOMEM;
	}
	p->seg = seg;
	struct shmp_ring_opts ro = { .sz = sizeof ro, .segment = seg, .capacity = o.capacity,
				     .max_message = o.max_message };
	if (!(p->ring[0] = shmp_ring_create(&ro)) || (!o.one_way && !(p->ring[1] = shmp_ring_create(&ro))) ||
	    !(p->sh = shmp__alloc_ptr(seg, sizeof *p->sh, SHMP__CACHELINE, NULL))) {
		int e = errno;
		pipe_free_shared(p);
		free(p);
		free(ca);
		free(cb);
		return -e;
	}
	p->sh->one_way = o.one_way != 0;
	uint64_t me = me_word();
	for (int e = 0; e < 2; e++)
		atomic_store(&p->hold[e], hold_add(&p->sh->end[e], me)); /* an empty table: slot 0 */
	shmp__obj_publish(p->sh, &pipe_layout);
	*ca = (struct shmp_conn){ .p = p, .end = 0, .can_recv = true, .can_send = !o.one_way };
	*cb = (struct shmp_conn){ .p = p, .end = 1, .can_recv = !o.one_way, .can_send = true };
	shmp__head_init(ca, seg, p->sh, NULL);
	shmp__head_init(cb, seg, p->sh, NULL);
	p->conn[0] = ca;
	p->conn[1] = cb;
	pthread_mutex_lock(&pipes_mu);
	p->next = pipes;
	if (pipes)
		pipes->prev = p;
	pipes = p;
	pthread_mutex_unlock(&pipes_mu);
	*a = ca;
	*b = cb;
	return 0;
}

/* Drop this process's hold of c's end (caller holds pipes_mu); if it was
 * the last live one, the end is declared closed. */
static void release_hold(shmp_conn_t *c)
{
	struct pipe_local *p = c->p;
	int h = atomic_exchange(&p->hold[c->end], HOLD_NONE);
	if (h == HOLD_NONE)
		return;
	hold_drop(&p->sh->end[c->end], h, me_word());
	end_gone(p, c->end, true); /* the other side hears at once */
}

int shmp_conn_close(shmp_conn_t *c)
{
	if (!c)
		return -EINVAL;
	pthread_mutex_lock(&pipes_mu);
	release_hold(c);
	pthread_mutex_unlock(&pipes_mu);
	return 0;
}

void shmp_conn_destroy(shmp_conn_t *c)
{
	if (!c)
		return;
	struct pipe_local *p = c->p;
	pthread_mutex_lock(&pipes_mu);
	release_hold(c);
	if (shmp__handle_release(c))
		p->released++; /* a creating handle, in its creating process */
	p->conn[c->end] = NULL;
	bool last = !p->conn[0] && !p->conn[1];
	if (last) {
		if (p->prev)
			p->prev->next = p->next;
		else
			pipes = p->next;
		if (p->next)
			p->next->prev = p->prev;
	}
	pthread_mutex_unlock(&pipes_mu);
	free(c);
	if (!last)
		return;
	if (p->released == 2)
		pipe_free_shared(p);
	else {
		free(p->ring[0]); /* handles only: the creator frees the rings */
		free(p->ring[1]);
	}
	free(p);
}

/* ---- send, recv, poll ----------------------------------------------------- */

static shmp_ring_t *ring_in(shmp_conn_t *c) { return c->p->ring[c->end]; }
static shmp_ring_t *ring_out(shmp_conn_t *c) { return c->p->ring[c->p->sh->one_way ? 0 : 1 - c->end]; }

/* Is the other end gone? LOOK_LOAD: what one load says (declared
 * closed); LOOK_DUE: the full look (probes) if this handle's last one is
 * PEER_CHECK_NS old; LOOK_NOW: the full look. */
enum { LOOK_LOAD, LOOK_DUE, LOOK_NOW };
static bool peer_gone(shmp_conn_t *c, int look)
{
	bool scan = look == LOOK_NOW;
	if (look == LOOK_DUE) {
		uint64_t now = shmp__now_ns();
		if ((scan = now >= atomic_load_explicit(&c->next_peer_check, memory_order_relaxed)))
			atomic_store_explicit(&c->next_peer_check, now + PEER_CHECK_NS, memory_order_relaxed);
	}
	return end_gone(c->p, 1 - c->end, scan);
}

/* Seconds until the sooner of the next peer check and the deadline. */
static double slice_left(const struct shmp__deadline *d, const struct shmp__checker *ck)
{
	struct timespec until = shmp__checker_until(ck, d), now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	double s = (double)(until.tv_sec - now.tv_sec) + (double)(until.tv_nsec - now.tv_nsec) * 1e-9;
	return s > 0 ? s : 0;
}

/* This process may use c that way: it holds c's end, and the end was not
 * declared closed. */
static int conn_check(shmp_conn_t *c, bool send)
{
	if (!c)
		return -EINVAL;
	if (send ? !c->can_send : !c->can_recv)
		return -EBADF;
	if (atomic_load_explicit(&c->p->hold[c->end], memory_order_relaxed) == HOLD_NONE ||
	    (atomic_load_explicit(&c->p->sh->end[c->end].state, memory_order_acquire) & ST_CLOSED))
		return -SHMP_ECLOSED;
	return 0;
}

int shmp_conn_send(shmp_conn_t *c, const void *msg, size_t len, double timeout)
{
	/* The deadline first: a NaN timeout is -EINVAL on every call, not only
	 * on those that find the ring full and would wait. */
	struct shmp__deadline d;
	if (shmp__deadline_init(&d, timeout) < 0)
		return -EINVAL;
	int r = conn_check(c, true);
	if (r < 0)
		return r;
	/* A gone reader is found by a system call or two per holder: keep
	 * them off the common path, but look often enough that sends stop
	 * soon after. */
	unsigned n = atomic_fetch_add_explicit(&c->sends, 1, memory_order_relaxed);
	if (peer_gone(c, (n & 63) == 0 ? LOOK_DUE : LOOK_LOAD))
		return -SHMP_ECLOSED;
	r = shmp_ring_put(ring_out(c), msg, len, 0);
	if (r != -ETIMEDOUT || timeout == 0)
		return r;
	struct shmp__checker ck;
	shmp__checker_init(&ck, CHECK_FIRST_NS, CHECK_MAX_NS);
	for (;;) {
		r = shmp_ring_put(ring_out(c), msg, len, slice_left(&d, &ck));
		if (r != -ETIMEDOUT)
			return r;
		if (shmp__checker_due(&ck) && peer_gone(c, LOOK_NOW))
			return -SHMP_ECLOSED; /* nobody will ever read it */
		if (shmp__deadline_passed(&d))
			return -ETIMEDOUT;
	}
}

/* Wait for a message or end of file: 0 ready, -SHMP_ECLOSED, -ETIMEDOUT,
 * -EINTR. Whatever a gone peer sent before is still ours to read. */
static int wait_readable(shmp_conn_t *c, double timeout)
{
	int r = shmp_ring_poll(ring_in(c), 0);
	if (r != -ETIMEDOUT)
		return r;
	if (timeout == 0) {
		if (!peer_gone(c, LOOK_DUE))
			return -ETIMEDOUT;
		r = shmp_ring_poll(ring_in(c), 0); /* sent just before it went? */
		return r == -ETIMEDOUT ? -SHMP_ECLOSED : r;
	}
	struct shmp__deadline d;
	struct shmp__checker ck;
	if (shmp__deadline_init(&d, timeout) < 0)
		return -EINVAL;
	shmp__checker_init(&ck, CHECK_FIRST_NS, CHECK_MAX_NS);
	for (;;) {
		r = shmp_ring_poll(ring_in(c), slice_left(&d, &ck));
		if (r != -ETIMEDOUT)
			return r;
		if (shmp__checker_due(&ck) && peer_gone(c, LOOK_NOW))
			return shmp_ring_poll(ring_in(c), 0) == 0 ? 0 : -SHMP_ECLOSED;
		if (shmp__deadline_passed(&d))
			return -ETIMEDOUT;
	}
}

int shmp_conn_recv(shmp_conn_t *c, void *buf, size_t cap, size_t *len, double timeout)
{
	/* One deadline for the call: another reader of this end may take the
	 * message we were woken for, and then we wait out what is left.
	 * Arguments first, as in send and poll: a NaN timeout is -EINVAL
	 * whatever the pipe's state. */
	struct shmp__deadline d;
	if (!len || (!buf && cap) || shmp__deadline_init(&d, timeout) < 0)
		return -EINVAL;
	int r = conn_check(c, false);
	if (r < 0)
		return r;
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
	/* A NaN timeout is -EINVAL even when a message is already there and
	 * no wait would be needed (wait_readable checks it only before a wait). */
	if (timeout != timeout)
		return -EINVAL;
	int r = conn_check(c, false);
	if (r < 0)
		return r;
	r = wait_readable(c, timeout);
	if (r == 0 || r == -SHMP_ECLOSED)
		return 1;
	return r == -ETIMEDOUT ? 0 : r;
}
