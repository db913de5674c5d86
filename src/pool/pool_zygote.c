/* private: the Pool's worker processes — the zygote (a single-threaded
 * process forked when the pool is created, of which every worker process
 * is a child, so that no worker is ever forked from a process with
 * threads), the pool's side of its private channel, and these workers'
 * struct shmp__worker_ops for create, terminate and the supervisor.
 *
 * What the pool acts on is private: the worker table (struct shmp__wpriv)
 * is filled from the zygote's messages on a socket only the two processes
 * hold, pidfds come with them, and processes are signalled only through
 * those pidfds. The shared worker table is written for display only, and
 * read as a witness beside a wait status, never alone.
 *
 * Crash safety: a worker killed anywhere shows as its pidfd firing and,
 * from the zygote, its wait status; the zygote killed shows as its pidfd
 * firing (its workers die with it: PR_SET_PDEATHSIG), which breaks the
 * pool; the pool's process killed is seen by the zygote through a pidfd,
 * and it kills its workers (its own unreaped children) and exits. */
#include "pool_internal.h"
#include "waitset.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>

/* How long create waits for its workers to report (a fork each). */
#define START_TIMEOUT_MS 30000
/* How long a worker's status may lag its pidfd (the zygote reaps it). */
#define STATUS_WAIT_NS (2000ull * 1000000ull)
/* The supervisor's waitset tags for this kind. */
enum { TAG_ZYGOTE = SHMP__TAG_WORKERS, TAG_ZSOCK, TAG_WORKER };

/* A worker process: the loop, then an exit status that says how it ended
 * (taken by the zygote and handed over privately, with the shared word as
 * a witness). */
static void worker_main(struct shmp_pool *p, unsigned w)
{
	int rc = shmp__worker_loop(p, w);
	shmp__tt_kick(&p->tt);
	/* What tasks printed goes out, as Python's workers flush at exit;
	 * _exit alone would drop it whenever stdout is a pipe or a file. */
	fflush(NULL);
	_exit(rc ? SHMP__EXIT_INIT : 0);
}

/* ---- the zygote ----------------------------------------------------------
 * A single-threaded process forked when the pool is created; every worker
 * process is its child. It takes requests from the pool's process on a
 * private socket and answers there: per fork {slot, generation, pid} with a
 * pidfd of the child (SCM_RIGHTS: opened by the parent before it can reap
 * the child, so it can only ever name that child), per reaped child {slot,
 * generation, wait status}. It reaps and kills only the children in its own
 * private table: nothing it reads from shared memory decides whom. */

struct zkid {
	pid_t pid;
	uint32_t slot, gen;
};

struct zygote {
	struct shmp_pool *p;
	int sock, ppfd, sfd;
	pid_t self;
	sigset_t old;
	struct zkid *kids;
	unsigned nkids, cap;
	uint32_t *gen;
	bool *pending;
	bool exiting;
};

static void zygote_die(struct zygote *z)
{
	/* The pool's process is gone: its workers go with it. They are our
	 * unreaped children, so these pids are theirs. */
	for (unsigned i = 0; i < z->nkids; i++)
		kill(z->kids[i].pid, SIGKILL);
	_exit(0);
}

/* Send one message (and a descriptor); waits while the socket is full,
 * but not past the pool's process's death. */
static void zsend(struct zygote *z, const struct shmp__zmsg *m, int fd)
{
	struct iovec iov = { .iov_base = (void *)m, .iov_len = sizeof *m };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (fd >= 0) {
		memset(&u, 0, sizeof u);
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof u.buf;
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof fd);
	}
	for (;;) {
		if (sendmsg(z->sock, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0)
			return;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			zygote_die(z); /* the channel is broken: nobody supervises us */
		struct pollfd pf[2] = { { .fd = z->sock, .events = POLLOUT }, { .fd = z->ppfd, .events = POLLIN } };
		poll(pf, 2, 1000);
		if (pf[1].revents)
			zygote_die(z);
	}
}

static void spawn(struct zygote *z, unsigned w)
{
	struct shmp_pool *p = z->p;
	struct shmp__wk *wk = &p->wk[w];
	if (z->nkids == z->cap) {
		unsigned nc = z->cap ? 2 * z->cap : 16;
		struct zkid *k = realloc(z->kids, nc * sizeof *k);
		if (!k)
			return; /* stays pending: tried again later */
		z->kids = k;
		z->cap = nc;
	}
	atomic_store_explicit(&wk->pid, 0, memory_order_relaxed);
	atomic_store_explicit(&wk->state, SHMP_WORKER_STARTING, memory_order_release);
	pid_t pid = fork();
	if (pid == 0) {
		close(z->sfd);
		close(z->ppfd);
		close(z->sock);
		sigprocmask(SIG_SETMASK, &z->old, NULL);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != z->self)
			_exit(1); /* the zygote died before the call */
		atomic_store_explicit(&wk->pid, getpid(), memory_order_relaxed);
		worker_main(p, w);
	}
	if (pid < 0) {
		struct shmp__zmsg m = { .op = ZM_FORKFAIL, .slot = w, .status = errno };
		zsend(z, &m, -1);
		return; /* stays pending: tried again on the next turn */
	}
	z->pending[w] = false;
	uint32_t g = ++z->gen[w];
	z->kids[z->nkids++] = (struct zkid){ pid, w, g };
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);
	atomic_store_explicit(&wk->pid, pid, memory_order_relaxed);
	atomic_store_explicit(&wk->gen, g, memory_order_relaxed);
	struct shmp__zmsg m = { .op = ZM_SPAWNED, .slot = w, .gen = g, .pid = pid };
	zsend(z, &m, fd);
	if (fd >= 0)
		close(fd);
}

static void reap(struct zygote *z)
{
	int st;
	pid_t pid;
	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		for (unsigned i = 0; i < z->nkids; i++) {
			if (z->kids[i].pid != pid)
				continue;
			struct shmp__zmsg m = { .op = ZM_REAPED, .slot = z->kids[i].slot, .gen = z->kids[i].gen,
						.pid = pid, .status = st };
			z->kids[i] = z->kids[--z->nkids];
			if (m.slot < (unsigned)z->p->nworkers)
				atomic_store_explicit(&z->p->wk[m.slot].state, SHMP_WORKER_EXITED, memory_order_relaxed);
			zsend(z, &m, -1);
			break;
		}
	}
}

/* The pool's requests. */
static void take_requests(struct zygote *z)
{
	struct shmp__zmsg m;
	for (;;) {
		ssize_t n = recv(z->sock, &m, sizeof m, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return;
		if (n == 0)
			zygote_die(z); /* the pool closed the channel without asking us to end */
		if (n != (ssize_t)sizeof m)
			continue;
		if (m.op == ZM_SPAWN && m.slot < (unsigned)z->p->nworkers && !z->exiting)
			z->pending[m.slot] = true;
		else if (m.op == ZM_EXIT)
			z->exiting = true;
	}
}

static void zygote_main(struct shmp_pool *p, int sock, pid_t parent)
{
	signal(SIGINT, SIG_IGN);
	struct zygote z = { .p = p, .sock = sock, .self = getpid() };
	z.ppfd = (int)syscall(SYS_pidfd_open, parent, 0);
	if (z.ppfd < 0 || getppid() != parent)
		_exit(1); /* the pool's process is already gone */
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, &z.old);
	z.sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
	z.gen = calloc((size_t)p->nworkers, sizeof *z.gen);
	z.pending = calloc((size_t)p->nworkers, sizeof *z.pending);
	if (z.sfd < 0 || !z.gen || !z.pending)
		_exit(1);
	for (;;) {
		bool any_pending = false;
		for (int w = 0; w < p->nworkers; w++) {
			if (z.pending[w] && !z.exiting)
				spawn(&z, (unsigned)w);
			any_pending |= z.pending[w] && !z.exiting;
		}
		struct pollfd pf[3] = { { .fd = z.sock, .events = POLLIN },
					{ .fd = z.ppfd, .events = POLLIN },
					{ .fd = z.sfd, .events = POLLIN } };
		poll(pf, 3, any_pending ? 50 : 1000);
		if (pf[1].revents)
			zygote_die(&z);
		take_requests(&z);
		struct signalfd_siginfo si;
		while (read(z.sfd, &si, sizeof si) == (ssize_t)sizeof si)
			;
		reap(&z);
		if (z.exiting && z.nkids == 0)
			_exit(0);
	}
}

/* ---- the pool's side of the channel -------------------------------------- */

static int zygote_send(struct shmp_pool *p, uint32_t op, uint32_t slot)
{
	struct shmp__zmsg m = { .op = op, .slot = slot };
	for (;;) {
		if (send(p->zsock, &m, sizeof m, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)sizeof m)
			return 0;
		if (errno != EINTR)
			return -errno;
	}
}

static void flush_spawns(struct shmp_pool *p)
{
	for (int w = 0; w < p->nworkers; w++)
		if (p->wp[w].send_spawn && zygote_send(p, ZM_SPAWN, (uint32_t)w) == 0)
			p->wp[w].send_spawn = false;
}

/* The zygote is to end (terminate, or the pool finished): say so once. */
static void tell_exit(struct shmp_pool *p)
{
	if (atomic_load(&p->zexit) && !p->zexit_sent && zygote_send(p, ZM_EXIT, 0) == 0)
		p->zexit_sent = true;
}

/* One message from the zygote, into the private table. */
static void zygote_message(struct shmp_pool *p, const struct shmp__zmsg *m, int fd)
{
	if (m->slot >= (unsigned)p->nworkers) {
		if (fd >= 0)
			close(fd);
		return;
	}
	struct shmp__wpriv *wp = &p->wp[m->slot];
	switch (m->op) {
	case ZM_SPAWNED: {
		pthread_mutex_lock(&p->wk_mu);
		int old = wp->pidfd;
		wp->pidfd = fd;
		atomic_store_explicit(&wp->pid, m->pid, memory_order_release);
		pthread_mutex_unlock(&p->wk_mu);
		/* Unexpected (a new incarnation before the old one was seen
		 * gone): before the supervisor runs nothing has armed the old
		 * fd; after, the supervisor closes what it armed. */
		if (old >= 0 && !p->sup_started)
			close(old);
		wp->gen = m->gen;
		wp->live = true;
		wp->wanted = false;
		wp->exited = wp->reaped = false;
		atomic_store_explicit(&p->wk[m->slot].pid, m->pid, memory_order_relaxed);
		shmp__count_add(&p->n_started, &p->sh->started, 1);
		break;
	}
	case ZM_REAPED:
		if (fd >= 0)
			close(fd);
		if (m->gen == wp->gen && wp->live) {
			wp->reaped = true;
			wp->status = m->status;
		}
		break;
	default: /* ZM_FORKFAIL: the zygote tries again */
		if (fd >= 0)
			close(fd);
		break;
	}
}

/* Read the zygote's messages; block up to timeout_ms for the first (0: no
 * wait). Handled into the private worker table. -EPIPE once it is gone. */
static int zygote_recv(struct shmp_pool *p, int timeout_ms)
{
	for (int first = 1;; first = 0) {
		struct shmp__zmsg m;
		struct iovec iov = { .iov_base = &m, .iov_len = sizeof m };
		union {
			char buf[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} u;
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
				     .msg_controllen = sizeof u.buf };
		if (first && timeout_ms > 0) {
			struct pollfd pf = { .fd = p->zsock, .events = POLLIN };
			if (poll(&pf, 1, timeout_ms) == 0)
				return 0;
		}
		ssize_t n = recvmsg(p->zsock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? 0 : -EPIPE;
		if (n == 0)
			return -EPIPE;
		int fd = -1;
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
			if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
			    cm->cmsg_len == CMSG_LEN(sizeof(int)))
				memcpy(&fd, CMSG_DATA(cm), sizeof fd);
		if (n != (ssize_t)sizeof m || (mh.msg_flags & MSG_CTRUNC)) {
			if (fd >= 0)
				close(fd);
			continue;
		}
		zygote_message(p, &m, fd);
	}
}

/* ---- the ops --------------------------------------------------------------- */

static int proc_spawn(struct shmp_pool *p, unsigned w)
{
	struct shmp__wpriv *wp = &p->wp[w];
	wp->wanted = true;
	wp->send_spawn = true;
	if (zygote_send(p, ZM_SPAWN, w) == 0)
		wp->send_spawn = false;
	return 0;
}

/* Start the zygote and have it fork every worker; returns once each
 * worker's pid (and pidfd) arrived, so they are known when create returns. */
static int start_zygote(struct shmp_pool *p)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	pid_t parent = getpid();
	fflush(NULL); /* or each worker would print our pending output again */
	pid_t z = fork();
	if (z < 0) {
		int e = errno;
		close(sv[0]);
		close(sv[1]);
		return -e;
	}
	if (z == 0) {
		close(sv[0]);
		p->sh->zygote_pid = getpid();
		zygote_main(p, sv[1], parent);
		_exit(0);
	}
	close(sv[1]);
	p->zsock = sv[0];
	p->zygote = z;
	p->sh->zygote_pid = z;
	p->zygote_pidfd = (int)syscall(SYS_pidfd_open, z, 0);
	if (p->zygote_pidfd < 0)
		return -errno;
	for (int w = 0; w < p->nworkers; w++)
		proc_spawn(p, (unsigned)w);
	uint64_t until = shmp__now_ns() + (uint64_t)START_TIMEOUT_MS * 1000000u;
	for (;;) {
		int up = 0;
		for (int w = 0; w < p->nworkers; w++)
			up += p->wp[w].live || p->wp[w].reaped;
		if (up == p->nworkers)
			return 0;
		flush_spawns(p);
		struct pollfd pf[2] = { { .fd = p->zsock, .events = POLLIN },
					{ .fd = p->zygote_pidfd, .events = POLLIN } };
		int r = poll(pf, 2, 50);
		if (r < 0 && errno != EINTR)
			return -errno;
		if (zygote_recv(p, 0) < 0 || (pf[1].revents && !(pf[0].revents & POLLIN)))
			return -EAGAIN; /* the zygote is gone */
		if (shmp__now_ns() > until)
			return -EAGAIN;
	}
}

static int proc_start(struct shmp_pool *p)
{
	/* The default segment holds the shared heap (shmp_malloc): mapped
	 * before the zygote forks, it is at the same address in every worker,
	 * so structs with pointers into it are valid task arguments even when
	 * allocated after this call. */
	if (!shmp_segment_default())
		return -errno;
	/* Memory mapped up to now (the pool's segments, shared Arrays made
	 * before the pool, the default segment) is in every worker at the same
	 * address. */
	p->map_serial = shmp__maps_serial();
	return start_zygote(p);
}

/* Undo a started zygote: it and its children are ours (unreaped). */
static void proc_abort(struct shmp_pool *p)
{
	if (p->zygote <= 0)
		return;
	pthread_mutex_lock(&p->wk_mu);
	for (int w = 0; w < p->nworkers; w++)
		if (p->wp[w].pidfd >= 0)
			syscall(SYS_pidfd_send_signal, p->wp[w].pidfd, SIGKILL, NULL, 0);
	pthread_mutex_unlock(&p->wk_mu);
	kill(p->zygote, SIGKILL);
	waitpid(p->zygote, NULL, 0);
	p->zygote = 0;
}

static void proc_kill(struct shmp_pool *p)
{
	/* Through the pidfds the zygote handed over: they name our workers
	 * and nobody else, whatever shared memory says. */
	pthread_mutex_lock(&p->wk_mu);
	for (int w = 0; w < p->nworkers; w++)
		if (p->wp[w].pidfd >= 0)
			syscall(SYS_pidfd_send_signal, p->wp[w].pidfd, SIGKILL, NULL, 0);
	pthread_mutex_unlock(&p->wk_mu);
	atomic_store(&p->zexit, true);
}

static void proc_watch(struct shmp_pool *p, struct shmp__waitset *ws)
{
	shmp__waitset_add(ws, p->zygote_pidfd, TAG_ZYGOTE);
	shmp__waitset_add(ws, p->zsock, TAG_ZSOCK);
}

/* New pidfds (from the zygote's messages): watch them. */
static void arm_pidfds(struct shmp_pool *p, struct shmp__waitset *ws)
{
	for (int w = 0; w < p->nworkers; w++) {
		struct shmp__wpriv *wp = &p->wp[w];
		int fd = wp->pidfd;
		if (fd == wp->armed_fd)
			continue;
		if (wp->armed_fd >= 0) {
			shmp__waitset_del(ws, TAG_WORKER + (uint64_t)w);
			close(wp->armed_fd);
		}
		wp->armed_fd = fd;
		if (fd >= 0 && shmp__waitset_add(ws, fd, TAG_WORKER + (uint64_t)w) < 0)
			wp->exited = true; /* cannot watch it: look at it by status */
	}
}

static void proc_turn(struct shmp_pool *p, struct shmp__waitset *ws)
{
	if (!p->workers_lost) {
		zygote_recv(p, 0);
		flush_spawns(p);
		tell_exit(p);
	}
	arm_pidfds(p, ws);
}

static void zygote_died(struct shmp_pool *p)
{
	if (p->workers_lost)
		return;
	p->workers_lost = true;
	int st;
	waitpid(p->zygote, &st, 0); /* our own child: its pid is ours until this */
	zygote_recv(p, 0);          /* what it said before it went */
	if (!p->zexit_sent) {
		/* Killed: its workers die with it (PDEATHSIG); nothing can be
		 * respawned. */
		shmp__pool_break(p, -SHMP_EBROKEN, 0);
	}
	for (int w = 0; w < p->nworkers; w++) {
		p->wp[w].wanted = false;
		p->wp[w].send_spawn = false;
	}
}

static void proc_event(struct shmp_pool *p, struct shmp__waitset *ws, uint64_t tag)
{
	if (tag == TAG_ZSOCK) {
		if (zygote_recv(p, 0) == 0)
			shmp__waitset_add(ws, p->zsock, TAG_ZSOCK);
	} else if (tag == TAG_ZYGOTE) {
		zygote_died(p);
	} else if (tag - TAG_WORKER < (uint64_t)p->nworkers) {
		struct shmp__wpriv *wp = &p->wp[tag - TAG_WORKER];
		if (!wp->exited) {
			wp->exited = true;
			wp->exited_at = shmp__now_ns();
		}
	}
}

static void proc_unwatch(struct shmp_pool *p)
{
	for (int w = 0; w < p->nworkers; w++)
		if (p->wp[w].armed_fd >= 0 && p->wp[w].armed_fd != p->wp[w].pidfd)
			close(p->wp[w].armed_fd);
}

static bool proc_gone(struct shmp_pool *p, unsigned w, uint64_t *now)
{
	struct shmp__wpriv *wp = &p->wp[w];
	if (wp->reaped)
		return true;
	if (!wp->exited)
		return false;
	/* Gone, its status not here yet: wait for the zygote a little,
	 * unless it is gone too. */
	if (!*now)
		*now = shmp__now_ns();
	return p->workers_lost || *now - wp->exited_at > STATUS_WAIT_NS;
}

/* Stop watching and close slot w's pidfd: its process is gone. */
static void drop_pidfd(struct shmp_pool *p, struct shmp__waitset *ws, unsigned w)
{
	struct shmp__wpriv *wp = &p->wp[w];
	pthread_mutex_lock(&p->wk_mu);
	int fd = wp->pidfd;
	wp->pidfd = -1;
	pthread_mutex_unlock(&p->wk_mu);
	if (wp->armed_fd >= 0) {
		shmp__waitset_del(ws, TAG_WORKER + (uint64_t)w);
		if (wp->armed_fd != fd)
			close(wp->armed_fd);
		wp->armed_fd = -1;
	}
	if (fd >= 0)
		close(fd);
}

static void proc_ended(struct shmp_pool *p, struct shmp__waitset *ws, unsigned w, struct shmp__worker_end *e)
{
	struct shmp__wpriv *wp = &p->wp[w];
	struct shmp__wk *wk = &p->wk[w];
	*e = (struct shmp__worker_end){ .exit_status = -1 };
	if (wp->reaped) {
		int st = wp->status;
		if (WIFSIGNALED(st))
			e->signal = WTERMSIG(st);
		else if (WIFEXITED(st))
			e->exit_status = WEXITSTATUS(st);
	}
	/* The exit status (private) says how it ended; the shared word is
	 * only a witness, so a forged one cannot break the pool or hide a
	 * death. */
	e->planned = e->exit_status == 0 && atomic_load_explicit(&wk->retired, memory_order_relaxed);
	e->init_failed = e->exit_status == SHMP__EXIT_INIT &&
			 atomic_load_explicit(&wk->init_failed, memory_order_acquire);
	e->init_code = atomic_load_explicit(&wk->init_code, memory_order_relaxed);
	drop_pidfd(p, ws, w);
}

static bool proc_finish(struct shmp_pool *p)
{
	if (p->workers_lost)
		return true;
	/* Its pidfd tells when it is gone. */
	atomic_store(&p->zexit, true);
	tell_exit(p);
	return false;
}

const struct shmp__worker_ops shmp__process_workers = {
	.shares_memory = false,
	.start = proc_start,
	.abort = proc_abort,
	.spawn = proc_spawn,
	.kill = proc_kill,
	.watch = proc_watch,
	.turn = proc_turn,
	.event = proc_event,
	.unwatch = proc_unwatch,
	.gone = proc_gone,
	.ended = proc_ended,
	.finish = proc_finish,
};
