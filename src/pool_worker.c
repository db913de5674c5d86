/* private: the Pool's workers (processes or threads) and its zygote, the
 * single-threaded process every worker process is forked from. */
#include "pool_internal.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>

/* ---- task functions: offsets back to addresses, checked ------------- */

static _Atomic uintptr_t fn_ok[16];

/* Is a in an executable mapping of this process? A corrupted record must
 * not make a worker jump anywhere. Checked once per distinct function. */
bool shmp__code_address(uintptr_t a)
{
	for (unsigned i = 0; i < 16; i++)
		if (atomic_load_explicit(&fn_ok[i], memory_order_relaxed) == a)
			return true;
	FILE *f = fopen("/proc/self/maps", "re");
	if (!f)
		return false;
	char line[512];
	bool ok = false;
	while (!ok && fgets(line, sizeof line, f)) {
		unsigned long lo, hi;
		char perms[8];
		if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3 && perms[2] == 'x' && a >= lo && a < hi)
			ok = true;
	}
	fclose(f);
	if (ok)
		atomic_store_explicit(&fn_ok[(a >> 4) % 16], a, memory_order_relaxed);
	return ok;
}

static shmp_task_fn fn_at(uint64_t off)
{
	uintptr_t a = (uintptr_t)&shmp_pool_create + (uintptr_t)off;
	return shmp__code_address(a) ? (shmp_task_fn)a : NULL;
}

/* ---- task data ------------------------------------------------------- */

static char empty_item[64] __attribute__((aligned(64)));

static char *resolve(struct shmp_pool *p, struct shmp__rec *r, const struct shmp__task *t,
		     const struct shmp__desc *d, size_t len, bool input)
{
	switch (d->kind) {
	case DESC_NONE:
		return len == 0 ? empty_item : NULL;
	case DESC_INLINE:
		return d->a <= p->inline_size && len <= p->inline_size - d->a ? rec_payload(r) + d->a : NULL;
	case DESC_SEG:
		return arena_ptr(p, d->a, len);
	case DESC_REF:
		return shmp__maps_resolve(d->a, d->b, len);
	case DESC_LOCAL: {
		if (!p->threads)
			return NULL; /* only a thread shares the caller's memory */
		struct shmp_async *c = shmp__call_lookup(p, t->call, t->call_gen);
		if (!c)
			return NULL;
		size_t total = input ? c->n * c->in_size : (c->kind == CALL_APPLY ? c->out_size : c->n * c->out_size);
		char *base = input ? (char *)c->in : c->out;
		if (!base || d->b > total || len > total - d->b)
			return NULL;
		return base + d->b;
	}
	default:
		return NULL;
	}
}

static void run_task(struct shmp_pool *p, unsigned w, uint64_t seq, struct shmp__rec *r, void *user)
{
	struct shmp__wk *wk = &p->wk[w];
	/* One copy of what was submitted, checked against its tag: from here
	 * on nothing of the task is read from shared memory again. */
	struct shmp__task t;
	memcpy(&t, &r->t, sizeof t);
	uint64_t tag = r->tag;
	bool genuine = tag == shmp__task_tag(p->key, seq, &t);
	atomic_store_explicit(&wk->cur_index, t.first, memory_order_relaxed);
	atomic_store_explicit(&wk->state, SHMP_WORKER_BUSY, memory_order_relaxed);
	size_t in_size = t.in_size, out_size = t.out_size, count = t.count;
	shmp_task_fn fn = genuine ? fn_at(t.fn) : NULL;
	bool sizes_ok = genuine && count <= (1u << 30);
	char *in = sizes_ok ? resolve(p, r, &t, &t.in, count * in_size, true) : NULL;
	char *out = sizes_ok ? resolve(p, r, &t, &t.out, count * out_size, false) : NULL;
	r->worker_pid = p->threads ? shmp__tid() : shmp__pid();
	if (!genuine) {
		/* Not what the pool submitted: never run it. */
		r->status = -SHMP_ECORRUPT;
		r->fail_index = t.first;
	} else if (!fn) {
		/* The caller checked it too: a function not in an executable
		 * mapping of this worker (a library loaded after the pool). */
		r->status = -SHMP_EBADFN;
		r->fail_index = t.first;
	} else if (!in || !out) {
		r->status = -SHMP_ECORRUPT;
		r->fail_index = t.first;
	} else {
		struct shmp_task_ctx ctx = { .arg_size = in_size, .result_size = out_size, .worker = w,
					     .user = user };
		for (size_t i = 0; i < count; i++) {
			ctx.index = t.first + i;
			int rc = fn(in + i * in_size, out + i * out_size, &ctx);
			if (rc) {
				r->status = -SHMP_ETASK;
				r->code = rc;
				r->fail_index = t.first + i;
				break;
			}
		}
	}
	/* Idle before DONE: whoever sees the task finished sees the worker
	 * free (the progress counters add up). */
	atomic_fetch_add_explicit(&wk->tasks_done, 1, memory_order_relaxed);
	atomic_store_explicit(&wk->state, SHMP_WORKER_IDLE, memory_order_relaxed);
	atomic_store_explicit(&r->word, rec_word(seq, REC_DONE, w), memory_order_release);
	if (t.flags & REC_F_CALLER) {
		shmp__wake_caller(p, r, t.flags, t.notify_off);
	} else {
		if (shmp_ring_put(p->done, &seq, sizeof seq, 0) != 0)
			atomic_store_explicit(&p->sh->scan_needed, 1, memory_order_relaxed);
		shmp__notify_supervisor(p);
	}
}

/* After a claim: if more tasks are queued and nobody polls, wake one
 * sleeper, so a burst spreads over the workers without the submitter
 * paying a wake per task. */
static void wake_next(struct shmp_pool *p, uint64_t h)
{
	uint64_t wd = atomic_load_explicit(&pool_rec(p, h + 1)->word, memory_order_relaxed);
	if (rec_state(wd) == REC_QUEUED && rec_seq(wd) == ((h + 1) & REC_SEQ_MASK))
		shmp__wake_workers(p->sh);
}

/* Claim the next queued task: 1 (with *seq), or 0 when the worker should
 * exit (terminate, or close with nothing left). */
static int claim(struct shmp_pool *p, unsigned w, uint64_t *seq)
{
	struct shmp__pool_sh *sh = p->sh;
	uint64_t spin_start = 0;
	unsigned spins = 0;
	int ret;
	for (;;) {
		if (atomic_load_explicit(&sh->stop, memory_order_relaxed) == STOP_NOW) {
			ret = 0;
			break;
		}
		uint64_t h = atomic_load_explicit(&sh->head, memory_order_acquire);
		struct shmp__rec *r = pool_rec(p, h);
		uint64_t wd = atomic_load_explicit(&r->word, memory_order_acquire);
		uint64_t diff = (rec_seq(wd) - h) & REC_SEQ_MASK;
		if (diff == 0 && rec_state(wd) == REC_QUEUED) {
			if (atomic_compare_exchange_weak_explicit(&r->word, &wd, rec_word(h, REC_RUNNING, w),
								  memory_order_acquire, memory_order_relaxed)) {
				*seq = h;
				uint64_t hh = h; /* the CAS rewrites its expected value on failure */
				atomic_compare_exchange_strong_explicit(&sh->head, &hh, h + 1, memory_order_release,
									memory_order_relaxed);
				ret = 1;
				break;
			}
			continue;
		}
		if ((diff == 0 && rec_state(wd) != REC_FREE) || (diff != 0 && diff < (REC_SEQ_MASK >> 1))) {
			/* Taken already, or the head hint is behind: help it on. */
			atomic_compare_exchange_strong_explicit(&sh->head, &h, h + 1, memory_order_release,
								memory_order_relaxed);
			continue;
		}
		/* Empty. */
		if (atomic_load_explicit(&sh->stop, memory_order_acquire) != STOP_NONE) {
			ret = 0;
			break;
		}
		/* Poll a little (a task submitted right after the last one
		 * finished is picked up in a cache-line round trip, and the
		 * submitter skips the wake), then sleep. One worker polls at a
		 * time: on shared cores more pollers only starve the producer. */
		if (!spin_start && shmp__poll_fresh(sh) &&
		    atomic_load_explicit(&sh->poll_owner, memory_order_relaxed) != w + 1)
			spin_start = 1; /* someone else polls: straight to sleep */
		if (spin_start != 1 && spins++ < 64) {
			shmp__cpu_relax();
			continue;
		}
		uint64_t now = shmp__now_ns();
		if (spin_start != 1) {
			atomic_store_explicit(&sh->poll_owner, w + 1, memory_order_relaxed);
			atomic_store_explicit(&sh->poll_stamp, now, memory_order_relaxed);
			if (!spin_start)
				spin_start = now;
			if (now - spin_start < 30000) {
				spins = 0;
				continue;
			}
		}
		/* Sleep: stop saying we poll, arm the word, look once more. A
		 * submitter that saw us polling (and skipped the wake)
		 * published before this look; one that publishes after sees
		 * ARMED. */
		if (atomic_load_explicit(&sh->poll_owner, memory_order_relaxed) == w + 1)
			atomic_store_explicit(&sh->poll_stamp, 0, memory_order_seq_cst);
		uint32_t f = atomic_fetch_or_explicit(&sh->task_futex, SHMP__TASK_ARMED, memory_order_seq_cst) |
			     SHMP__TASK_ARMED;
		uint64_t wd2 = atomic_load_explicit(&r->word, memory_order_seq_cst);
		if (wd2 == wd && atomic_load_explicit(&sh->head, memory_order_relaxed) == h &&
		    atomic_load_explicit(&sh->stop, memory_order_relaxed) == STOP_NONE) {
			struct timespec until;
			clock_gettime(CLOCK_MONOTONIC, &until);
			until.tv_sec += 1;
			shmp__futex_wait(&sh->task_futex, f, &until);
		}
		spin_start = 0;
		spins = 0;
	}
	/* No longer polling: a wake for the next task must not be skipped
	 * on our account. */
	if (atomic_load_explicit(&sh->poll_owner, memory_order_relaxed) == w + 1)
		atomic_store_explicit(&sh->poll_stamp, 0, memory_order_relaxed);
	if (ret)
		wake_next(p, *seq);
	return ret;
}

/* The loop every worker runs, until told to stop or retired by
 * max_tasks_per_child (a planned exit). */
static void work(struct shmp_pool *p, unsigned w, void *user)
{
	struct shmp__wk *wk = &p->wk[w];
	uint64_t done = 0, seq;
	atomic_store_explicit(&wk->tasks_done, 0, memory_order_relaxed);
	atomic_store_explicit(&wk->state, SHMP_WORKER_IDLE, memory_order_relaxed);
	while (claim(p, w, &seq)) {
		run_task(p, w, seq, pool_rec(p, seq), user);
		if (p->max_tasks > 0 && ++done >= (uint64_t)p->max_tasks)
			break;
	}
	atomic_store_explicit(&wk->retired, 1, memory_order_relaxed);
	atomic_store_explicit(&wk->state, SHMP_WORKER_EXITED, memory_order_release);
}

/* Runs the initializer: 0, or what it returned (the pool is then broken). */
static int init_worker(struct shmp_pool *p, unsigned w, void **user)
{
	*user = NULL;
	atomic_store_explicit(&p->wk[w].retired, 0, memory_order_relaxed);
	atomic_store_explicit(&p->wk[w].init_failed, 0, memory_order_relaxed);
	int rc = p->init ? p->init(p->initarg, user) : 0;
	if (rc == 0)
		return 0;
	atomic_store_explicit(&p->wk[w].init_code, rc, memory_order_relaxed);
	atomic_store_explicit(&p->wk[w].init_failed, 1, memory_order_release);
	atomic_store_explicit(&p->wk[w].state, SHMP_WORKER_EXITED, memory_order_release);
	return rc;
}

static void kick(int fd)
{
	uint64_t one = 1;
	ssize_t r = write(fd, &one, sizeof one);
	(void)r;
}

void shmp__worker_main(struct shmp_pool *p, unsigned w)
{
	void *user;
	int rc = init_worker(p, w, &user);
	if (rc == 0)
		work(p, w, user);
	kick(p->efd);
	/* What tasks printed goes out, as Python's workers flush at exit;
	 * _exit alone would drop it whenever stdout is a pipe or a file. */
	fflush(NULL);
	/* How it ended, for the supervisor: the exit status (taken by the
	 * zygote, handed over privately) with the shared word as a witness. */
	_exit(rc ? SHMP__EXIT_INIT : 0);
}

void *shmp__thread_worker(void *arg)
{
	struct shmp_pool *p = *(struct shmp_pool **)arg;
	unsigned w = *(unsigned *)((char *)arg + sizeof(void *));
	free(arg);
	struct shmp__wpriv *wp = &p->wp[w];
	pid_t tid = shmp__tid();
	atomic_store_explicit(&wp->pid, tid, memory_order_release);
	atomic_store_explicit(&p->wk[w].pid, tid, memory_order_relaxed);
	atomic_fetch_add_explicit(&p->threads_up, 1, memory_order_release);
	shmp__futex_wake(&p->threads_up, INT32_MAX);
	void *user;
	int rc = init_worker(p, w, &user);
	if (rc == 0)
		work(p, w, user);
	/* A thread's word is private memory: it is the truth. */
	wp->t_init_failed = rc != 0;
	wp->t_init_code = rc;
	wp->t_retired = rc == 0;
	atomic_store_explicit(&wp->t_done, true, memory_order_release);
	kick(p->efd);
	return NULL;
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
		shmp__worker_main(p, w);
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

void shmp__zygote_main(struct shmp_pool *p, int sock, pid_t parent)
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
