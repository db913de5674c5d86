/* private: the Pool's supervisor thread — one wait (io_uring or poll) for
 * results, worker exits (pidfds), the zygote's channel and its pidfd, and
 * timeouts; it collects results, runs callbacks, fails the task of a worker
 * that died, replaces workers and ends the pool after close or terminate.
 *
 * What it acts on is private: the worker table (struct shmp__wpriv) is
 * filled from the zygote's messages on a socket only the two processes
 * hold, pidfds come with them, and the pool's state and counters live in
 * this process. The shared worker table is written for display only.
 * Crash safety: a worker killed anywhere shows as its pidfd firing and, from
 * the zygote, its wait status; the zygote killed shows as its pidfd firing
 * (its workers die with it: PR_SET_PDEATHSIG). */
#include "pool_internal.h"
#include "waitset.h"

#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>

enum { TAG_EFD = 0, TAG_ZYGOTE = 1, TAG_ZSOCK = 2, TAG_WORKER = 3 };

/* How long a worker's status may lag its pidfd (the zygote reaps it). */
#define STATUS_WAIT_NS (2000ull * 1000000ull)

struct sup {
	struct shmp_pool *p;
	struct shmp__waitset *ws;
	int *ws_fd;      /* the pidfd armed in the waitset per slot, -1 none */
	bool exit_sent;  /* ZM_EXIT went to the zygote */
	uint64_t last_completed, progress_at;
};

/* How long tasks may be out with none finishing before their records are
 * looked at (shmp__tasks_check_stalled). */
#define STALL_NS (1000ull * 1000000ull)

static void check_stall(struct sup *s)
{
	struct shmp_pool *p = s->p;
	uint64_t done = atomic_load_explicit(&p->n_completed, memory_order_acquire);
	uint64_t now = shmp__now_ns();
	if (done != s->last_completed || shmp__tasks_outstanding(p) == 0 || !s->progress_at) {
		s->last_completed = done;
		s->progress_at = now;
		return;
	}
	if (now - s->progress_at < STALL_NS)
		return;
	s->progress_at = now;
	shmp__tasks_check_stalled(p);
}

int shmp__thread_create(pthread_t *t, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int r = pthread_create(t, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return r;
}

int shmp__zygote_send(struct shmp_pool *p, uint32_t op, uint32_t slot)
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
		if (p->wp[w].send_spawn && shmp__zygote_send(p, ZM_SPAWN, (uint32_t)w) == 0)
			p->wp[w].send_spawn = false;
}

int shmp__spawn_request(struct shmp_pool *p, unsigned w)
{
	struct shmp__wpriv *wp = &p->wp[w];
	if (p->threads) {
		void *arg = malloc(sizeof(void *) + sizeof(unsigned));
		if (!arg)
			return -ENOMEM;
		*(struct shmp_pool **)arg = p;
		*(unsigned *)((char *)arg + sizeof(void *)) = w;
		atomic_store_explicit(&p->wk[w].state, SHMP_WORKER_STARTING, memory_order_relaxed);
		atomic_store_explicit(&wp->t_done, false, memory_order_relaxed);
		wp->t_retired = wp->t_init_failed = false;
		int r = shmp__thread_create(&p->tw[w], shmp__thread_worker, arg);
		if (r) {
			free(arg);
			return -r;
		}
		p->tw_joinable[w] = true;
		wp->live = true;
		wp->gen++;
		atomic_store_explicit(&p->wk[w].gen, wp->gen, memory_order_relaxed);
		shmp__count_add(p, &p->n_started, &p->sh->started, 1);
		return 0;
	}
	wp->wanted = true;
	wp->send_spawn = true;
	if (shmp__zygote_send(p, ZM_SPAWN, w) == 0)
		wp->send_spawn = false;
	return 0;
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
		shmp__count_add(p, &p->n_started, &p->sh->started, 1);
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

int shmp__zygote_recv(struct shmp_pool *p, int timeout_ms)
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

/* Scans look only at records that can hold a task: the last `capacity`
 * sequence numbers (untouched pages of a young pool stay untouched). */
static uint64_t live_end(struct shmp_pool *p)
{
	return atomic_load_explicit(&p->tail, memory_order_acquire);
}

static uint64_t live_start(struct shmp_pool *p, uint64_t end)
{
	return end > p->capacity ? end - p->capacity : 0;
}

static void drain_done(struct shmp_pool *p)
{
	uint64_t seq;
	size_t len;
	while (shmp_ring_get(p->done, &seq, sizeof seq, &len, 0) == 0)
		if (len == sizeof seq)
			shmp__task_collect(p, seq, true);
	/* A full scan when the done ring overflowed, and while an abandoned
	 * call has tasks out (they wake their caller, not us). */
	if ((atomic_load_explicit(&p->sh->scan_needed, memory_order_relaxed) &&
	     atomic_exchange_explicit(&p->sh->scan_needed, 0, memory_order_acquire)) ||
	    atomic_load_explicit(&p->abandoned, memory_order_relaxed)) {
		uint64_t end = live_end(p);
		for (uint64_t q = live_start(p, end); q < end; q++) {
			uint64_t w = atomic_load_explicit(&pool_rec(p, q)->word, memory_order_acquire);
			if (rec_state(w) == REC_DONE)
				shmp__task_collect(p, q, true);
		}
	}
}

static void run_finish_queue(struct shmp_pool *p)
{
	pthread_mutex_lock(&p->calls_mu);
	struct shmp_async *q = p->finish_q;
	p->finish_q = NULL;
	pthread_mutex_unlock(&p->calls_mu);
	while (q) {
		struct shmp_async *n = q->next_finish;
		shmp__call_finish(q);
		q = n;
	}
}

/* Fail every task in a state matching `states` (a bit per REC_ state);
 * RUNNING ones only if run by worker `w` (or any if w < 0). */
static void fail_tasks(struct shmp_pool *p, unsigned states, int w, int error, int code, int sig,
		       int exit_status)
{
	uint64_t end = live_end(p);
	for (uint64_t q = live_start(p, end); q < end; q++) {
		uint64_t wd = atomic_load_explicit(&pool_rec(p, q)->word, memory_order_acquire);
		unsigned st = rec_state(wd);
		if (st > 15 || !(states & (1u << st)))
			continue;
		if (st == REC_RUNNING && w >= 0 && rec_worker(wd) != (unsigned)w)
			continue;
		shmp__task_fail(p, q, wd, error, code, sig, exit_status);
	}
}

static bool queue_empty(struct shmp_pool *p)
{
	return shmp__tasks_outstanding(p) == 0;
}

/* New pidfds (from the zygote's messages): watch them. */
static void arm_pidfds(struct sup *s)
{
	struct shmp_pool *p = s->p;
	if (p->threads)
		return;
	for (int w = 0; w < p->nworkers; w++) {
		int fd = p->wp[w].pidfd;
		if (fd == s->ws_fd[w])
			continue;
		if (s->ws_fd[w] >= 0) {
			shmp__waitset_del(s->ws, TAG_WORKER + (uint64_t)w);
			close(s->ws_fd[w]);
		}
		s->ws_fd[w] = fd;
		if (fd >= 0 && shmp__waitset_add(s->ws, fd, TAG_WORKER + (uint64_t)w) < 0)
			p->wp[w].exited = true; /* cannot watch it: look at it by status */
	}
}

/* Stop watching and close slot w's pidfd: its process is gone. */
static void drop_pidfd(struct sup *s, int w)
{
	struct shmp_pool *p = s->p;
	pthread_mutex_lock(&p->wk_mu);
	int fd = p->wp[w].pidfd;
	p->wp[w].pidfd = -1;
	pthread_mutex_unlock(&p->wk_mu);
	if (s->ws_fd[w] >= 0) {
		shmp__waitset_del(s->ws, TAG_WORKER + (uint64_t)w);
		if (s->ws_fd[w] != fd)
			close(s->ws_fd[w]);
		s->ws_fd[w] = -1;
	}
	if (fd >= 0)
		close(fd);
}

static void broken(struct shmp_pool *p, int error, int code)
{
	int none = 0;
	if (atomic_compare_exchange_strong(&p->broken, &none, error))
		atomic_store(&p->init_code, code);
	shmp__pool_set_state(p, SHMP_POOL_BROKEN);
	shmp__pool_stop_workers(p);
}

/* The worker in slot w has exited: why, what it was running, and whether
 * to replace it. */
static void worker_exited(struct sup *s, int w)
{
	struct shmp_pool *p = s->p;
	struct shmp__wpriv *wp = &p->wp[w];
	struct shmp__wk *wk = &p->wk[w];
	int sig = 0, exit_status = -1, init_code = 0;
	bool planned = false, init_failed = false;
	if (p->threads) {
		pthread_join(p->tw[w], NULL);
		p->tw_joinable[w] = false;
		exit_status = 0;
		planned = wp->t_retired;
		init_failed = wp->t_init_failed;
		init_code = wp->t_init_code;
	} else {
		if (wp->reaped) {
			int st = wp->status;
			if (WIFSIGNALED(st))
				sig = WTERMSIG(st);
			else if (WIFEXITED(st))
				exit_status = WEXITSTATUS(st);
		}
		/* The exit status (private) says how it ended; the shared word
		 * is only a witness, so a forged one cannot break the pool or
		 * hide a death. */
		planned = exit_status == 0 && atomic_load_explicit(&wk->retired, memory_order_relaxed);
		init_failed = exit_status == SHMP__EXIT_INIT &&
			      atomic_load_explicit(&wk->init_failed, memory_order_acquire);
		init_code = atomic_load_explicit(&wk->init_code, memory_order_relaxed);
		drop_pidfd(s, w);
	}
	wp->live = wp->exited = wp->reaped = false;
	atomic_store_explicit(&wk->state, SHMP_WORKER_EXITED, memory_order_relaxed);
	uint32_t state = atomic_load_explicit(&p->state, memory_order_acquire);
	if (init_failed) {
		broken(p, -SHMP_EINIT, init_code);
		fail_tasks(p, 1u << REC_QUEUED, -1, -SHMP_EINIT, init_code, 0, -1);
		planned = true;
	}
	int err = state == SHMP_POOL_TERMINATED ? -SHMP_ECLOSED : -SHMP_EWORKERDIED;
	fail_tasks(p, 1u << REC_RUNNING, w, err, 0, sig, exit_status);
	/* Killed after marking a task DONE but before (or while) posting it
	 * to the done ring: only a scan finds that record. */
	atomic_store_explicit(&p->sh->scan_needed, 1, memory_order_relaxed);
	if (!planned && state != SHMP_POOL_TERMINATED)
		shmp__count_add(p, &p->n_deaths, &p->sh->deaths, 1);
	state = atomic_load_explicit(&p->state, memory_order_acquire);
	bool more = state == SHMP_POOL_RUNNING || (state == SHMP_POOL_CLOSED && !queue_empty(p));
	if (more && !p->zygote_gone)
		shmp__spawn_request(p, (unsigned)w);
}

static bool all_stopped(struct shmp_pool *p)
{
	for (int w = 0; w < p->nworkers; w++)
		if (p->wp[w].live || p->wp[w].wanted)
			return false;
	return true;
}

static void check_workers(struct sup *s)
{
	struct shmp_pool *p = s->p;
	uint64_t now = 0;
	for (int w = 0; w < p->nworkers; w++) {
		struct shmp__wpriv *wp = &p->wp[w];
		if (!wp->live)
			continue;
		bool gone;
		if (p->threads) {
			gone = atomic_load_explicit(&wp->t_done, memory_order_acquire);
		} else if (wp->reaped) {
			gone = true;
		} else if (wp->exited) {
			/* Gone, its status not here yet: wait for the zygote a
			 * little, unless it is gone too. */
			if (!now)
				now = shmp__now_ns();
			gone = p->zygote_gone || now - wp->exited_at > STATUS_WAIT_NS;
		} else {
			gone = false;
		}
		if (gone)
			worker_exited(s, w);
	}
}

static void zygote_died(struct sup *s)
{
	struct shmp_pool *p = s->p;
	if (p->zygote_gone)
		return;
	p->zygote_gone = true;
	int st;
	waitpid(p->zygote, &st, 0); /* our own child: its pid is ours until this */
	shmp__zygote_recv(p, 0);    /* what it said before it went */
	if (!s->exit_sent) {
		/* Killed: its workers die with it (PDEATHSIG); nothing can be
		 * respawned. */
		broken(p, -SHMP_EBROKEN, 0);
	}
	for (int w = 0; w < p->nworkers; w++) {
		p->wp[w].wanted = false;
		p->wp[w].send_spawn = false;
	}
}

static bool finished(struct sup *s)
{
	struct shmp_pool *p = s->p;
	uint32_t state = atomic_load_explicit(&p->state, memory_order_acquire);
	if (state == SHMP_POOL_RUNNING)
		return false;
	int err = 0, code = 0;
	if (state == SHMP_POOL_TERMINATED || state == SHMP_POOL_BROKEN) {
		err = shmp__pool_stopped_error(p);
		code = err == -SHMP_EINIT ? atomic_load(&p->init_code) : 0;
		fail_tasks(p, 1u << REC_QUEUED, -1, err, code, 0, -1);
		if (!p->threads && p->zygote_gone)
			fail_tasks(p, 1u << REC_RUNNING, -1, err, code, 0, -1);
	}
	if (state == SHMP_POOL_CLOSED && queue_empty(p) &&
	    atomic_load_explicit(&p->stop, memory_order_relaxed) == STOP_NONE)
		shmp__pool_stop_workers(p); /* nothing left: idle workers may go */
	if (!all_stopped(p))
		return false;
	if (!queue_empty(p)) {
		if (err) {
			/* Nobody is left to run or finish them, whatever the
			 * shared table says. */
			shmp__tasks_fail_private(p, err, code);
		} else if (state == SHMP_POOL_CLOSED && !p->zygote_gone) {
			/* Tasks left and no worker: start them (e.g. all retired). */
			for (int w = 0; w < p->nworkers; w++)
				shmp__spawn_request(p, (unsigned)w);
			return false;
		} else {
			return false;
		}
		if (!queue_empty(p))
			return false;
	}
	if (!p->threads && !p->zygote_gone) {
		atomic_store(&p->zexit, true);
		return false; /* its pidfd tells when it is gone */
	}
	return true;
}

static int sup_alloc(struct sup *s)
{
	struct shmp_pool *p = s->p;
	if (!(s->ws = shmp__waitset_new()) || !(s->ws_fd = malloc((size_t)p->nworkers * sizeof *s->ws_fd)))
		return -ENOMEM;
	for (int w = 0; w < p->nworkers; w++)
		s->ws_fd[w] = -1;
	return 0;
}

void *shmp__supervisor_main(void *arg)
{
	struct shmp_pool *p = arg;
	struct sup s = { .p = p };
	int n = p->nworkers;
	if (sup_alloc(&s) < 0) {
		/* Cannot supervise: fail what comes, end at once. */
		broken(p, -SHMP_EBROKEN, 0);
		goto out;
	}
	shmp__waitset_add(s.ws, p->efd, TAG_EFD);
	if (!p->threads) {
		shmp__waitset_add(s.ws, p->zygote_pidfd, TAG_ZYGOTE);
		shmp__waitset_add(s.ws, p->zsock, TAG_ZSOCK);
	}
	for (;;) {
		atomic_store_explicit(&p->sh->sup_armed, 0, memory_order_relaxed);
		uint64_t v;
		while (read(p->efd, &v, sizeof v) > 0)
			;
		if (!p->threads && !p->zygote_gone) {
			shmp__zygote_recv(p, 0);
			flush_spawns(p);
			if (atomic_load(&p->zexit) && !s.exit_sent && shmp__zygote_send(p, ZM_EXIT, 0) == 0)
				s.exit_sent = true;
		}
		arm_pidfds(&s);
		drain_done(p);
		run_finish_queue(p);
		check_workers(&s);
		check_stall(&s);
		drain_done(p);
		run_finish_queue(p);
		if (finished(&s))
			break;
		if (atomic_load(&p->zexit) && !s.exit_sent)
			continue; /* say it now */
		/* Arm, then look once more (the workers look at sup_armed after
		 * publishing: one of us sees the other). */
		atomic_store_explicit(&p->sh->sup_armed, 1, memory_order_seq_cst);
		if (shmp_ring_count(p->done) > 0 || p->finish_q ||
		    atomic_load_explicit(&p->sh->scan_needed, memory_order_relaxed))
			continue;
		uint64_t tags[16];
		int k = shmp__waitset_wait(s.ws, 100 * 1000000L, tags, 16);
		for (int i = 0; i < k; i++) {
			if (tags[i] == TAG_EFD) {
				shmp__waitset_add(s.ws, p->efd, TAG_EFD);
			} else if (tags[i] == TAG_ZSOCK) {
				if (shmp__zygote_recv(p, 0) == 0)
					shmp__waitset_add(s.ws, p->zsock, TAG_ZSOCK);
			} else if (tags[i] == TAG_ZYGOTE) {
				zygote_died(&s);
			} else if (tags[i] - TAG_WORKER < (uint64_t)n) {
				struct shmp__wpriv *wp = &p->wp[tags[i] - TAG_WORKER];
				if (!wp->exited) {
					wp->exited = true;
					wp->exited_at = shmp__now_ns();
				}
			}
		}
	}
out:
	pthread_mutex_lock(&p->calls_mu);
	atomic_store_explicit(&p->sup_done, 1, memory_order_release);
	pthread_mutex_unlock(&p->calls_mu);
	run_finish_queue(p);
	if (s.ws_fd) {
		for (int w = 0; w < n; w++)
			if (s.ws_fd[w] >= 0 && s.ws_fd[w] != p->wp[w].pidfd)
				close(s.ws_fd[w]);
	}
	shmp__waitset_free(s.ws);
	free(s.ws_fd);
	shmp__futex_wake(&p->sup_done, INT32_MAX);
	if (p->free_on_exit) {
		pthread_detach(pthread_self());
		shmp__pool_free(p);
	}
	return NULL;
}
