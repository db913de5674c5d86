/* private: the ThreadPool's workers — threads of the pool's process that
 * run the common loop (pool_worker.c), behind struct shmp__worker_ops.
 *
 * What a thread says of itself (its id, how it ended) is written in the
 * pool's private memory: it is the truth, unlike a process's shared word.
 * Crash safety: a thread cannot die alone (a crash takes the process with
 * it); terminate makes each thread leave at its next claim, after the task
 * it runs, if any, finishes. */
#include "pool_internal.h"

#include <stdlib.h>

static void *thread_main(void *arg)
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
	int rc = shmp__worker_loop(p, w);
	wp->t_init_failed = rc != 0;
	wp->t_init_code = rc;
	wp->t_retired = rc == 0;
	atomic_store_explicit(&wp->t_done, true, memory_order_release);
	shmp__tt_kick(&p->tt);
	return NULL;
}

static int thr_spawn(struct shmp_pool *p, unsigned w)
{
	struct shmp__wpriv *wp = &p->wp[w];
	void *arg = malloc(sizeof(void *) + sizeof(unsigned));
	if (!arg)
		return -ENOMEM;
	*(struct shmp_pool **)arg = p;
	*(unsigned *)((char *)arg + sizeof(void *)) = w;
	atomic_store_explicit(&p->wk[w].state, SHMP_WORKER_STARTING, memory_order_relaxed);
	atomic_store_explicit(&wp->t_done, false, memory_order_relaxed);
	wp->t_retired = wp->t_init_failed = false;
	int r = shmp__thread_create(&p->tw[w], thread_main, arg);
	if (r) {
		free(arg);
		return -r;
	}
	p->tw_joinable[w] = true;
	wp->live = true;
	wp->gen++;
	atomic_store_explicit(&p->wk[w].gen, wp->gen, memory_order_relaxed);
	shmp__count_add(&p->n_started, &p->sh->started, 1);
	return 0;
}

static int thr_start(struct shmp_pool *p)
{
	if (!(p->tw = calloc((size_t)p->nworkers, sizeof *p->tw)) ||
	    !(p->tw_joinable = calloc((size_t)p->nworkers, sizeof *p->tw_joinable)))
		return -ENOMEM;
	for (int w = 0; w < p->nworkers; w++) {
		int r = thr_spawn(p, (unsigned)w);
		if (r < 0)
			return r;
	}
	/* Each thread says its id first thing: wait for all of them. */
	uint32_t up;
	while ((up = atomic_load_explicit(&p->threads_up, memory_order_acquire)) < (uint32_t)p->nworkers) {
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += 1;
		shmp__futex_wait(&p->threads_up, up, &until);
	}
	return 0;
}

static void thr_abort(struct shmp_pool *p)
{
	shmp__pool_stop_workers(p);
	for (int w = 0; p->tw_joinable && w < p->nworkers; w++)
		if (p->tw_joinable[w]) {
			pthread_join(p->tw[w], NULL);
			p->tw_joinable[w] = false;
		}
}

static void thr_kill(struct shmp_pool *p)
{
	(void)p; /* they leave at their next claim (the stop word says NOW) */
}

static void thr_watch(struct shmp_pool *p, struct shmp__waitset *ws)
{
	(void)p, (void)ws; /* a thread ends by saying so, and ringing the doorbell */
}

static void thr_event(struct shmp_pool *p, struct shmp__waitset *ws, uint64_t tag)
{
	(void)p, (void)ws, (void)tag;
}

static void thr_unwatch(struct shmp_pool *p)
{
	(void)p;
}

static bool thr_gone(struct shmp_pool *p, unsigned w, uint64_t *now)
{
	(void)now;
	return atomic_load_explicit(&p->wp[w].t_done, memory_order_acquire);
}

static void thr_ended(struct shmp_pool *p, struct shmp__waitset *ws, unsigned w, struct shmp__worker_end *e)
{
	(void)ws;
	struct shmp__wpriv *wp = &p->wp[w];
	pthread_join(p->tw[w], NULL);
	p->tw_joinable[w] = false;
	*e = (struct shmp__worker_end){ .exit_status = 0, .planned = wp->t_retired,
					.init_failed = wp->t_init_failed, .init_code = wp->t_init_code };
}

static bool thr_finish(struct shmp_pool *p)
{
	(void)p;
	return true;
}

const struct shmp__worker_ops shmp__thread_workers = {
	.shares_memory = true,
	.start = thr_start,
	.abort = thr_abort,
	.spawn = thr_spawn,
	.kill = thr_kill,
	.watch = thr_watch,
	.turn = thr_watch,
	.event = thr_event,
	.unwatch = thr_unwatch,
	.gone = thr_gone,
	.ended = thr_ended,
	.finish = thr_finish,
};
