/* private: the Pool's supervisor thread — one wait (io_uring or poll) for
 * the task table's doorbell and whatever the workers' kind watches (worker
 * pidfds, the zygote's channel and its pidfd), with a timeout; it collects
 * results, runs callbacks, fails the tasks of a worker that ended, replaces
 * workers and ends the pool after close or terminate. The two kinds of
 * workers sit behind struct shmp__worker_ops: nothing here depends on
 * which kind runs.
 *
 * What it acts on is private: the pool's state and counters, the private
 * worker table, the task table's shadows. Crash safety: whatever killed a
 * worker, its kind reports it gone (a pidfd, a thread's own word) with how
 * it ended, and every task it held is failed here; the doorbell is only a
 * hint (the wait is bounded: 100 ms), so a worker killed between finishing
 * a task and ringing loses no task. */
#include "pool_internal.h"
#include "waitset.h"

#include <signal.h>
#include <stdlib.h>

int shmp__thread_create(pthread_t *t, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int r = pthread_create(t, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return r;
}

static void run_finish_queue(struct shmp_pool *p)
{
	pthread_mutex_lock(&p->calls_mu);
	struct shmp_async *q = p->finish_q;
	__atomic_store_n(&p->finish_q, NULL, __ATOMIC_RELAXED); /* peeked at without the lock below */
	pthread_mutex_unlock(&p->calls_mu);
	while (q) {
		struct shmp_async *n = q->next_finish;
		shmp__call_finish(q);
		q = n;
	}
}

static void drain(struct shmp_pool *p)
{
	/* Tasks of an abandoned call wake their caller, not us: sweep while
	 * there are any. */
	shmp__tt_drain(&p->tt, atomic_load_explicit(&p->abandoned, memory_order_relaxed) != 0);
}

static bool queue_empty(struct shmp_pool *p)
{
	return shmp__tt_outstanding(&p->tt) == 0;
}

/* The worker in slot w has ended: fail what it held, and replace it
 * unless the pool is ending. */
static void worker_ended(struct shmp_pool *p, struct shmp__waitset *ws, unsigned w)
{
	struct shmp__worker_end e;
	p->wops->ended(p, ws, w, &e);
	struct shmp__wpriv *wp = &p->wp[w];
	wp->live = wp->exited = wp->reaped = false;
	atomic_store_explicit(&p->wk[w].state, SHMP_WORKER_EXITED, memory_order_relaxed);
	uint32_t state = atomic_load_explicit(&p->state, memory_order_acquire);
	if (e.init_failed) {
		shmp__pool_break(p, -SHMP_EINIT, e.init_code);
		shmp__tt_fail(&p->tt, true, false, -1,
			      &(struct shmp__tt_failure){ .error = -SHMP_EINIT, .code = e.init_code, .exit_status = -1 });
		e.planned = true;
	}
	int err = state == SHMP_POOL_TERMINATED ? -SHMP_ECLOSED : -SHMP_EWORKERDIED;
	shmp__tt_fail(&p->tt, false, true, (int)w,
		      &(struct shmp__tt_failure){ .error = err, .signal = e.signal, .exit_status = e.exit_status });
	/* Killed after marking a task DONE but before (or while) posting it
	 * to the done ring: only a scan finds that record. */
	shmp__tt_scan_later(&p->tt);
	if (!e.planned && state != SHMP_POOL_TERMINATED)
		shmp__count_add(&p->n_deaths, &p->sh->deaths, 1);
	state = atomic_load_explicit(&p->state, memory_order_acquire);
	bool more = state == SHMP_POOL_RUNNING || (state == SHMP_POOL_CLOSED && !queue_empty(p));
	if (more && !p->workers_lost)
		p->wops->spawn(p, w);
}

static bool all_stopped(struct shmp_pool *p)
{
	for (int w = 0; w < p->nworkers; w++)
		if (p->wp[w].live || p->wp[w].wanted)
			return false;
	return true;
}

static void check_workers(struct shmp_pool *p, struct shmp__waitset *ws)
{
	uint64_t now = 0;
	for (int w = 0; w < p->nworkers; w++)
		if (p->wp[w].live && p->wops->gone(p, (unsigned)w, &now))
			worker_ended(p, ws, (unsigned)w);
}

static bool finished(struct shmp_pool *p)
{
	uint32_t state = atomic_load_explicit(&p->state, memory_order_acquire);
	if (state == SHMP_POOL_RUNNING)
		return false;
	int err = 0, code = 0;
	if (state == SHMP_POOL_TERMINATED || state == SHMP_POOL_BROKEN) {
		err = shmp__pool_error(p, &code);
		struct shmp__tt_failure f = { .error = err, .code = code, .exit_status = -1 };
		shmp__tt_fail(&p->tt, true, false, -1, &f);
		if (p->workers_lost)
			shmp__tt_fail(&p->tt, false, true, -1, &f);
	}
	if (state == SHMP_POOL_CLOSED && queue_empty(p) &&
	    atomic_load_explicit(&p->stop, memory_order_relaxed) == SHMP__STOP_NONE)
		shmp__pool_stop_workers(p); /* nothing left: idle workers may go */
	if (!all_stopped(p))
		return false;
	if (!queue_empty(p)) {
		if (err) {
			/* Nobody is left to run or finish them, whatever the
			 * shared table says. */
			shmp__tt_fail_private(&p->tt, err, code);
		} else if (state == SHMP_POOL_CLOSED && !p->workers_lost) {
			/* Tasks left and no worker: start them (e.g. all retired). */
			for (int w = 0; w < p->nworkers; w++)
				p->wops->spawn(p, (unsigned)w);
			return false;
		} else {
			return false;
		}
		if (!queue_empty(p))
			return false;
	}
	/* The last look, under the submit lock: a submitter that saw the pool
	 * running before it broke may be publishing a task now, and once we
	 * end nobody would fail it. Holding the lock, either its task is in
	 * the table (not empty: we stay, and fail it next turn) or it will
	 * see the pool's error under the lock (shmp__tt_reserve) and publish
	 * nothing. trylock: a submitter can hold the lock while it waits for
	 * a record only we free. */
	if (pthread_mutex_trylock(&p->submit_mu) != 0)
		return false;
	bool empty = queue_empty(p);
	pthread_mutex_unlock(&p->submit_mu);
	if (!empty)
		return false;
	return p->wops->finish(p);
}

void *shmp__supervisor_main(void *arg)
{
	struct shmp_pool *p = arg;
	struct shmp__waitset *ws = p->ws0;
	p->ws0 = NULL;
	if (!ws) {
		/* Cannot supervise: fail what comes, end at once. */
		shmp__pool_break(p, -SHMP_EBROKEN, 0);
		goto out;
	}
	shmp__waitset_add(ws, p->tt.efd, SHMP__TAG_DOORBELL);
	p->wops->watch(p, ws);
	for (;;) {
		shmp__tt_collector_awake(&p->tt);
		p->wops->turn(p, ws);
		drain(p);
		run_finish_queue(p);
		check_workers(p, ws);
		shmp__tt_watch_progress(&p->tt);
		drain(p);
		run_finish_queue(p);
		if (finished(p))
			break;
		/* Ask for the doorbell, then look once more (workers look at
		 * the asking after posting: one of us sees the other). */
		if (!shmp__tt_collector_may_sleep(&p->tt) || __atomic_load_n(&p->finish_q, __ATOMIC_RELAXED))
			continue;
		uint64_t tags[16];
		int k = shmp__waitset_wait(ws, 100 * 1000000L, tags, 16);
		for (int i = 0; i < k; i++) {
			if (tags[i] == SHMP__TAG_DOORBELL)
				shmp__waitset_add(ws, p->tt.efd, SHMP__TAG_DOORBELL);
			else
				p->wops->event(p, ws, tags[i]);
		}
	}
out:
	pthread_mutex_lock(&p->calls_mu);
	atomic_store_explicit(&p->sup_done, 1, memory_order_release);
	pthread_mutex_unlock(&p->calls_mu);
	run_finish_queue(p);
	if (ws)
		p->wops->unwatch(p);
	shmp__waitset_free(ws);
	shmp__futex_wake(&p->sup_done, INT32_MAX);
	if (p->free_on_exit) {
		pthread_detach(pthread_self());
		shmp__pool_free(p);
	}
	return NULL;
}
