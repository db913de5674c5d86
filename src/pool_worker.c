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
#include <sys/wait.h>

/* ---- task functions: offsets back to addresses, checked ------------- */

static _Atomic uintptr_t fn_ok[16];

/* Is a in an executable mapping of this process? A corrupted record must
 * not make a worker jump anywhere. Checked once per distinct function. */
static bool code_address(uintptr_t a)
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
	return code_address(a) ? (shmp_task_fn)a : NULL;
}

/* ---- task data ------------------------------------------------------- */

static char empty_item[64] __attribute__((aligned(64)));

static char *resolve(struct shmp__pool *p, struct shmp__rec *r, const struct shmp__desc *d, size_t len,
		     bool input)
{
	switch (d->kind) {
	case DESC_NONE:
		return len == 0 ? empty_item : NULL;
	case DESC_INLINE:
		return d->a <= p->sh->inline_size && len <= p->sh->inline_size - d->a ? rec_payload(r) + d->a
										     : NULL;
	case DESC_SEG:
		return d->a <= p->seg->size && len <= p->seg->size - d->a ? p->seg->base + d->a : NULL;
	case DESC_REF:
		return shmp__maps_resolve(d->a, d->b, len);
	case DESC_LOCAL: {
		if (!p->threads)
			return NULL; /* only a thread shares the caller's memory */
		struct shmp_async *c = shmp__call_lookup(p, r->call, r->call_gen);
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

static void run_task(struct shmp__pool *p, unsigned w, uint64_t seq, struct shmp__rec *r, void *user)
{
	struct shmp__wk *wk = &p->wk[w];
	atomic_store_explicit(&wk->cur_index, r->first, memory_order_relaxed);
	atomic_store_explicit(&wk->state, SHMP_WORKER_BUSY, memory_order_relaxed);
	size_t in_size = r->in_size, out_size = r->out_size, count = r->count;
	uint32_t flags = r->flags; /* read before DONE: then the record may be reused */
	shmp_task_fn fn = fn_at(r->fn);
	char *in = resolve(p, r, &r->in, count * in_size, true);
	char *out = resolve(p, r, &r->out, count * out_size, false);
	r->worker_pid = p->threads ? shmp__tid() : shmp__pid();
	if (!fn || !in || !out || count > (1u << 30)) {
		r->status = -SHMP_ECORRUPT;
		r->fail_index = r->first;
	} else {
		struct shmp_task_ctx ctx = { .arg_size = in_size, .result_size = out_size, .worker = w,
					     .user = user };
		for (size_t i = 0; i < count; i++) {
			ctx.index = r->first + i;
			int rc = fn(in + i * in_size, out + i * out_size, &ctx);
			if (rc) {
				r->status = -SHMP_ETASK;
				r->code = rc;
				r->fail_index = r->first + i;
				break;
			}
		}
	}
	/* Idle before DONE: whoever sees the task finished sees the worker
	 * free (the progress counters add up). */
	atomic_fetch_add_explicit(&wk->tasks_done, 1, memory_order_relaxed);
	atomic_store_explicit(&wk->state, SHMP_WORKER_IDLE, memory_order_relaxed);
	atomic_store_explicit(&r->word, rec_word(seq, REC_DONE, w), memory_order_release);
	if (flags & REC_F_CALLER) {
		shmp__wake_caller(p, r, flags);
	} else {
		if (shmp_ring_put(p->done, &seq, sizeof seq, 0) != 0)
			atomic_store_explicit(&p->sh->scan_needed, 1, memory_order_relaxed);
		shmp__notify_supervisor(p);
	}
}

/* After a claim: if more tasks are queued and nobody polls, wake one
 * sleeper, so a burst spreads over the workers without the submitter
 * paying a wake per task. */
static void wake_next(struct shmp__pool *p, uint64_t h)
{
	uint64_t wd = atomic_load_explicit(&pool_rec(p, h + 1)->word, memory_order_relaxed);
	if (rec_state(wd) == REC_QUEUED && rec_seq(wd) == ((h + 1) & REC_SEQ_MASK))
		shmp__wake_workers(p->sh);
}

/* Claim the next queued task: 1 (with *seq), or 0 when the worker should
 * exit (terminate, or close with nothing left). */
static int claim(struct shmp__pool *p, unsigned w, uint64_t *seq)
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

/* The loop every worker runs: 0 on a planned exit. */
static void work(struct shmp__pool *p, unsigned w, void *user)
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

/* Runs the initializer; false if it failed (the pool is then broken). */
static bool init_worker(struct shmp__pool *p, unsigned w, void **user)
{
	*user = NULL;
	atomic_store_explicit(&p->wk[w].retired, 0, memory_order_relaxed);
	if (!p->init || p->init(p->initarg, user) == 0)
		return true;
	atomic_store_explicit(&p->wk[w].init_failed, 1, memory_order_release);
	atomic_store_explicit(&p->wk[w].state, SHMP_WORKER_EXITED, memory_order_release);
	return false;
}

static void kick(int fd)
{
	uint64_t one = 1;
	ssize_t r = write(fd, &one, sizeof one);
	(void)r;
}

void shmp__worker_main(struct shmp__pool *p, unsigned w)
{
	void *user;
	if (init_worker(p, w, &user))
		work(p, w, user);
	kick(p->efd);
	/* What tasks printed goes out, as Python's workers flush at exit;
	 * _exit alone would drop it whenever stdout is a pipe or a file. */
	fflush(NULL);
	_exit(0);
}

void *shmp__thread_worker(void *arg)
{
	struct shmp__pool *p = *(struct shmp__pool **)arg;
	unsigned w = *(unsigned *)((char *)arg + sizeof(void *));
	free(arg);
	atomic_store_explicit(&p->wk[w].pid, shmp__tid(), memory_order_relaxed);
	void *user;
	if (init_worker(p, w, &user))
		work(p, w, user);
	kick(p->efd);
	return NULL;
}

/* ---- the zygote -------------------------------------------------------- */

static void spawn(struct shmp__pool *p, unsigned w, int sfd, int ppfd, const sigset_t *old)
{
	struct shmp__wk *wk = &p->wk[w];
	/* Counted before the slot shows STARTING: whoever sees the new state
	 * sees the count. */
	atomic_fetch_add_explicit(&p->sh->started, 1, memory_order_relaxed);
	atomic_store_explicit(&wk->pid, 0, memory_order_relaxed);
	atomic_store_explicit(&wk->state, SHMP_WORKER_STARTING, memory_order_release);
	atomic_store_explicit(&wk->init_failed, 0, memory_order_relaxed);
	pid_t pid = fork();
	if (pid == 0) {
		close(sfd);
		close(ppfd);
		close(p->zfd);
		sigprocmask(SIG_SETMASK, old, NULL);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != p->sh->zygote_pid)
			_exit(1); /* the zygote died before the call */
		atomic_store_explicit(&wk->pid, getpid(), memory_order_relaxed);
		shmp__worker_main(p, w);
	}
	if (pid < 0) {
		/* No process: leave the request for the next turn. */
		atomic_fetch_sub_explicit(&p->sh->started, 1, memory_order_relaxed);
		atomic_store_explicit(&wk->spawn, 1, memory_order_relaxed);
		return;
	}
	atomic_store_explicit(&wk->pid, pid, memory_order_relaxed);
	atomic_fetch_add_explicit(&wk->gen, 1, memory_order_release);
	kick(p->efd);
}

static void reap(struct shmp__pool *p, unsigned *alive)
{
	int st;
	pid_t pid;
	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		for (unsigned w = 0; w < p->sh->nworkers; w++) {
			struct shmp__wk *wk = &p->wk[w];
			if (atomic_load_explicit(&wk->pid, memory_order_relaxed) == pid) {
				atomic_store_explicit(&wk->status, st, memory_order_relaxed);
				atomic_store_explicit(&wk->state, SHMP_WORKER_EXITED, memory_order_relaxed);
				atomic_store_explicit(&wk->reaped, atomic_load(&wk->gen), memory_order_release);
				(*alive)--;
				break;
			}
		}
	}
	kick(p->efd);
}

void shmp__zygote_main(struct shmp__pool *p)
{
	struct shmp__pool_sh *sh = p->sh;
	signal(SIGINT, SIG_IGN);
	pid_t parent = sh->owner_pid;
	int ppfd = (int)syscall(SYS_pidfd_open, parent, 0);
	if (ppfd < 0 || getppid() != parent)
		_exit(1); /* the pool's process is already gone */
	sigset_t chld, old;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, &old);
	int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0)
		_exit(1);
	unsigned alive = 0;
	for (;;) {
		for (unsigned w = 0; w < sh->nworkers; w++)
			if (atomic_load_explicit(&p->wk[w].spawn, memory_order_acquire) &&
			    atomic_exchange_explicit(&p->wk[w].spawn, 0, memory_order_acq_rel) &&
			    !atomic_load_explicit(&sh->zygote_exit, memory_order_acquire)) {
				spawn(p, w, sfd, ppfd, &old);
				alive++;
			}
		struct pollfd pf[3] = { { .fd = p->zfd, .events = POLLIN },
					{ .fd = ppfd, .events = POLLIN },
					{ .fd = sfd, .events = POLLIN } };
		poll(pf, 3, 1000);
		if (pf[1].revents) {
			/* The pool's process died: its workers go with it. */
			for (unsigned w = 0; w < sh->nworkers; w++) {
				pid_t pid = atomic_load_explicit(&p->wk[w].pid, memory_order_relaxed);
				if (pid > 0)
					kill(pid, SIGKILL);
			}
			_exit(0);
		}
		uint64_t v;
		if (pf[0].revents && read(p->zfd, &v, sizeof v) < 0)
			(void)0;
		struct signalfd_siginfo si;
		while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si)
			;
		reap(p, &alive);
		if (atomic_load_explicit(&sh->zygote_exit, memory_order_acquire) && alive == 0)
			_exit(0);
	}
}
