/* private: the Pool's supervisor thread — one wait (io_uring or poll) for
 * results, worker exits (pidfds), the zygote and timeouts; it collects
 * results, runs callbacks, fails the task of a worker that died, replaces
 * workers and ends the pool after close or terminate. */
#include "pool_internal.h"
#include "waitset.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

enum { TAG_EFD = 0, TAG_ZYGOTE = 1, TAG_WORKER = 2 };

struct sup {
	struct shmp__pool *p;
	struct shmp__waitset *ws;
	uint32_t *seen_gen;
	int *pidfd;
	bool *live;      /* an incarnation runs in the slot */
	bool *wanted;    /* a spawn was requested, not yet seen */
	bool *exited;    /* its pidfd fired */
	bool zygote_gone;
};

int shmp__spawn_request(struct shmp__pool *p, unsigned w)
{
	if (p->threads) {
		void *arg = malloc(sizeof(void *) + sizeof(unsigned));
		if (!arg)
			return -ENOMEM;
		*(struct shmp__pool **)arg = p;
		*(unsigned *)((char *)arg + sizeof(void *)) = w;
		atomic_store_explicit(&p->wk[w].state, SHMP_WORKER_STARTING, memory_order_relaxed);
		int r = pthread_create(&p->tw[w], NULL, shmp__thread_worker, arg);
		if (r) {
			free(arg);
			return -r;
		}
		p->tw_joinable[w] = true;
		atomic_fetch_add_explicit(&p->wk[w].gen, 1, memory_order_release);
		atomic_fetch_add_explicit(&p->sh->started, 1, memory_order_relaxed);
		return 0;
	}
	atomic_store_explicit(&p->wk[w].spawn, 1, memory_order_release);
	uint64_t one = 1;
	return write(p->zfd, &one, sizeof one) < 0 && errno != EAGAIN ? -errno : 0;
}

/* Scans look only at records that can hold a task: the last `capacity`
 * sequence numbers (untouched pages of a young pool stay untouched). */
static uint64_t live_end(struct shmp__pool *p)
{
	return atomic_load_explicit(&p->sh->tail, memory_order_acquire);
}

static uint64_t live_start(struct shmp__pool *p, uint64_t end)
{
	return end > p->sh->capacity ? end - p->sh->capacity : 0;
}

static void drain_done(struct shmp__pool *p)
{
	uint64_t seq;
	size_t len;
	while (shmp_ring_get(p->done, &seq, sizeof seq, &len, 0) == 0)
		if (len == sizeof seq)
			shmp__task_collect(p, seq, true);
	/* A full scan when the done ring overflowed, and while an abandoned
	 * imap has tasks out (they wake their caller, not us). */
	if ((atomic_load_explicit(&p->sh->scan_needed, memory_order_relaxed) &&
	     atomic_exchange_explicit(&p->sh->scan_needed, 0, memory_order_acquire)) ||
	    atomic_load_explicit(&p->abandoned, memory_order_relaxed)) {
		uint64_t end = live_end(p);
		for (uint64_t q = live_start(p, end); q < end; q++) {
			struct shmp__rec *r = pool_rec(p, q);
			uint64_t w = atomic_load_explicit(&r->word, memory_order_acquire);
			if (rec_state(w) == REC_DONE)
				shmp__task_collect(p, rec_seq(w), true);
		}
	}
}

static void run_finish_queue(struct shmp__pool *p)
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
static void fail_tasks(struct shmp__pool *p, unsigned states, int w, int error, int sig, int exit_status)
{
	uint64_t end = live_end(p);
	for (uint64_t q = live_start(p, end); q < end; q++) {
		struct shmp__rec *r = pool_rec(p, q);
		uint64_t wd = atomic_load_explicit(&r->word, memory_order_acquire);
		unsigned st = rec_state(wd);
		if (!(states & (1u << st)))
			continue;
		if (st == REC_RUNNING && w >= 0 && rec_worker(wd) != (unsigned)w)
			continue;
		shmp__task_fail(p, r, wd, error, sig, exit_status);
	}
}

static bool queue_empty(struct shmp__pool *p)
{
	return atomic_load_explicit(&p->sh->head, memory_order_acquire) >=
	       atomic_load_explicit(&p->sh->tail, memory_order_acquire);
}

static void set_state(struct shmp__pool *p, uint32_t to)
{
	uint32_t s = atomic_load_explicit(&p->sh->state, memory_order_relaxed);
	while ((s == SHMP_POOL_RUNNING || s == SHMP_POOL_CLOSED) &&
	       !atomic_compare_exchange_weak_explicit(&p->sh->state, &s, to, memory_order_acq_rel,
						      memory_order_relaxed))
		;
}

static void stop_workers(struct shmp__pool *p)
{
	atomic_store_explicit(&p->sh->stop, STOP_NOW, memory_order_release);
	shmp__tasks_wake(p);
	atomic_fetch_add_explicit(&p->sh->task_futex, 1, memory_order_relaxed);
	shmp__futex_wake(&p->sh->task_futex, INT32_MAX);
}

/* New incarnations: watch their pidfds. */
static void note_spawns(struct sup *s)
{
	struct shmp__pool *p = s->p;
	for (int w = 0; w < p->nworkers; w++) {
		uint32_t g = atomic_load_explicit(&p->wk[w].gen, memory_order_acquire);
		if (g == s->seen_gen[w])
			continue;
		s->seen_gen[w] = g;
		s->live[w] = true;
		s->wanted[w] = false;
		s->exited[w] = false;
		if (p->threads)
			continue;
		if (s->pidfd[w] >= 0) {
			shmp__waitset_del(s->ws, TAG_WORKER + (uint64_t)w);
			close(s->pidfd[w]);
		}
		pid_t pid = atomic_load_explicit(&p->wk[w].pid, memory_order_relaxed);
		s->pidfd[w] = (int)syscall(SYS_pidfd_open, pid, 0);
		if (s->pidfd[w] >= 0)
			shmp__waitset_add(s->ws, s->pidfd[w], TAG_WORKER + (uint64_t)w);
		else
			s->exited[w] = true; /* gone already; the zygote has its status */
	}
}

/* The worker in slot w has exited: why, what it was running, and whether
 * to replace it. */
static void worker_exited(struct sup *s, int w)
{
	struct shmp__pool *p = s->p;
	struct shmp__wk *wk = &p->wk[w];
	int sig = 0, exit_status = -1;
	if (p->threads) {
		pthread_join(p->tw[w], NULL);
		p->tw_joinable[w] = false;
		exit_status = 0;
	} else {
		/* The zygote reaps its children and posts the status. */
		for (int i = 0; i < 2000 && !s->zygote_gone &&
				atomic_load_explicit(&wk->reaped, memory_order_acquire) != s->seen_gen[w]; i++)
			usleep(1000);
		if (atomic_load_explicit(&wk->reaped, memory_order_acquire) == s->seen_gen[w]) {
			int st = atomic_load_explicit(&wk->status, memory_order_relaxed);
			if (WIFSIGNALED(st))
				sig = WTERMSIG(st);
			else if (WIFEXITED(st))
				exit_status = WEXITSTATUS(st);
		}
		if (s->pidfd[w] >= 0) {
			shmp__waitset_del(s->ws, TAG_WORKER + (uint64_t)w);
			close(s->pidfd[w]);
			s->pidfd[w] = -1;
		}
	}
	s->live[w] = false;
	s->exited[w] = false;
	atomic_store_explicit(&wk->state, SHMP_WORKER_EXITED, memory_order_relaxed);
	uint32_t state = atomic_load_explicit(&p->sh->state, memory_order_acquire);
	bool planned = atomic_load_explicit(&wk->retired, memory_order_relaxed) && sig == 0 && exit_status == 0;
	if (atomic_load_explicit(&wk->init_failed, memory_order_acquire)) {
		set_state(p, SHMP_POOL_BROKEN);
		stop_workers(p);
		fail_tasks(p, 1u << REC_QUEUED, -1, -SHMP_EINIT, 0, -1);
		planned = true;
	}
	int err = state == SHMP_POOL_TERMINATED ? -SHMP_ECLOSED : -SHMP_EWORKERDIED;
	fail_tasks(p, 1u << REC_RUNNING, w, err, sig, exit_status);
	/* Killed after marking a task DONE but before (or while) posting it
	 * to the done ring: only a scan finds that record. */
	atomic_store_explicit(&p->sh->scan_needed, 1, memory_order_relaxed);
	if (!planned && state != SHMP_POOL_TERMINATED)
		atomic_fetch_add_explicit(&p->sh->deaths, 1, memory_order_relaxed);
	state = atomic_load_explicit(&p->sh->state, memory_order_acquire);
	bool more = state == SHMP_POOL_RUNNING || (state == SHMP_POOL_CLOSED && !queue_empty(p));
	if (more && !s->zygote_gone && shmp__spawn_request(p, (unsigned)w) == 0)
		s->wanted[w] = true;
}

static bool all_stopped(struct sup *s)
{
	for (int w = 0; w < s->p->nworkers; w++)
		if (s->live[w] || s->wanted[w])
			return false;
	return true;
}

static void check_workers(struct sup *s)
{
	struct shmp__pool *p = s->p;
	for (int w = 0; w < p->nworkers; w++) {
		if (!s->live[w])
			continue;
		struct shmp__wk *wk = &p->wk[w];
		bool gone;
		if (p->threads)
			gone = atomic_load_explicit(&wk->state, memory_order_acquire) == SHMP_WORKER_EXITED;
		else
			gone = s->exited[w] ||
			       atomic_load_explicit(&wk->reaped, memory_order_acquire) == s->seen_gen[w];
		if (gone)
			worker_exited(s, w);
	}
}

static void zygote_died(struct sup *s)
{
	struct shmp__pool *p = s->p;
	s->zygote_gone = true;
	int st;
	waitpid(p->zygote, &st, 0);
	if (!atomic_load_explicit(&p->sh->zygote_exit, memory_order_acquire)) {
		/* Killed: its workers die with it (PDEATHSIG); nothing can be
		 * respawned. */
		p->sh->zygote_pid = -1;
		set_state(p, SHMP_POOL_BROKEN);
		stop_workers(p);
	}
	for (int w = 0; w < p->nworkers; w++)
		s->wanted[w] = false;
}

static bool finished(struct sup *s)
{
	struct shmp__pool *p = s->p;
	uint32_t state = atomic_load_explicit(&p->sh->state, memory_order_acquire);
	if (state == SHMP_POOL_RUNNING)
		return false;
	if (state == SHMP_POOL_TERMINATED || state == SHMP_POOL_BROKEN) {
		int err = state == SHMP_POOL_TERMINATED ? -SHMP_ECLOSED
			  : p->sh->zygote_pid == -1	   ? -SHMP_EBROKEN
							   : -SHMP_EINIT;
		fail_tasks(p, 1u << REC_QUEUED, -1, err, 0, -1);
		if (!p->threads && s->zygote_gone)
			fail_tasks(p, 1u << REC_RUNNING, -1, err, 0, -1);
	}
	if (state == SHMP_POOL_CLOSED && queue_empty(p) && atomic_load(&p->sh->stop) == STOP_NONE)
		stop_workers(p); /* nothing left: idle workers may go */
	if (!all_stopped(s))
		return false;
	if (atomic_load_explicit(&p->sh->completed, memory_order_acquire) !=
	    atomic_load_explicit(&p->sh->submitted, memory_order_acquire)) {
		if (state == SHMP_POOL_CLOSED && !s->zygote_gone) {
			/* Tasks left and no worker: start one (e.g. all retired). */
			for (int w = 0; w < p->nworkers; w++)
				if (shmp__spawn_request(p, (unsigned)w) == 0)
					s->wanted[w] = true;
		}
		return false;
	}
	if (!p->threads && !s->zygote_gone) {
		atomic_store_explicit(&p->sh->zygote_exit, 1, memory_order_release);
		uint64_t one = 1;
		ssize_t r = write(p->zfd, &one, sizeof one);
		(void)r;
		return false; /* its pidfd tells when it is gone */
	}
	return true;
}

void *shmp__supervisor_main(void *arg)
{
	struct shmp__pool *p = arg;
	struct sup s = { .p = p, .ws = shmp__waitset_new() };
	int n = p->nworkers;
	s.seen_gen = calloc((size_t)n, sizeof *s.seen_gen);
	s.pidfd = malloc((size_t)n * sizeof *s.pidfd);
	s.live = calloc((size_t)n, sizeof *s.live);
	s.wanted = calloc((size_t)n, sizeof *s.wanted);
	s.exited = calloc((size_t)n, sizeof *s.exited);
	if (!s.ws || !s.seen_gen || !s.pidfd || !s.live || !s.wanted || !s.exited) {
		/* Cannot supervise: fail what comes, end at once. */
		set_state(p, SHMP_POOL_BROKEN);
		p->sh->zygote_pid = -1;
		stop_workers(p);
		goto out;
	}
	for (int w = 0; w < n; w++) {
		s.pidfd[w] = -1;
		s.wanted[w] = true; /* pool_create asked for every slot */
	}
	shmp__waitset_add(s.ws, p->efd, TAG_EFD);
	if (!p->threads)
		shmp__waitset_add(s.ws, p->zygote_pidfd, TAG_ZYGOTE);
	for (;;) {
		atomic_store_explicit(&p->sh->sup_armed, 0, memory_order_relaxed);
		uint64_t v;
		while (read(p->efd, &v, sizeof v) > 0)
			;
		note_spawns(&s);
		drain_done(p);
		run_finish_queue(p);
		check_workers(&s);
		drain_done(p);
		run_finish_queue(p);
		if (finished(&s))
			break;
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
			} else if (tags[i] == TAG_ZYGOTE) {
				zygote_died(&s);
			} else if (tags[i] - TAG_WORKER < (uint64_t)n) {
				s.exited[tags[i] - TAG_WORKER] = true;
			}
		}
	}
out:
	pthread_mutex_lock(&p->calls_mu);
	atomic_store_explicit(&p->sup_done, 1, memory_order_release);
	pthread_mutex_unlock(&p->calls_mu);
	run_finish_queue(p);
	if (s.pidfd)
		for (int w = 0; w < n; w++)
			if (s.pidfd[w] >= 0)
				close(s.pidfd[w]);
	shmp__waitset_free(s.ws);
	free(s.seen_gen);
	free(s.pidfd);
	free(s.live);
	free(s.wanted);
	free(s.exited);
	shmp__futex_wake(&p->sup_done, INT32_MAX);
	if (p->free_on_exit) {
		pthread_detach(pthread_self());
		shmp__pool_free(p);
	}
	return NULL;
}
