/* Spinning pipelines spin boundedly (include/shmp/pipeline.h, opts.spin):
 * a spinning stage, and the sink's next(), spin at most 50 us before they
 * sleep, so an idle spinning pipeline costs (almost) no CPU.
 * - spin = 1, 2 stages of worker processes: messages go through (warm-up),
 *   then nothing comes for 600 ms while next() waits for the message sent
 *   after that: the workers' CPU time (RUSAGE_CHILDREN once they are
 *   reaped) and the waiting thread's own (RUSAGE_THREAD) stay under 150 ms
 *   each — a stage that polled its input without a bound would spend the
 *   whole 600 ms per worker;
 * - the same pipeline pinned to one CPU (sched_setaffinity, in a child):
 *   messages still flow both ways with one message in flight (no spinner
 *   keeps its peer off the only CPU for long): 2000 round trips in well
 *   under the watchdog, and the same idle bound. */
#include "t.h"

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>

static int fwd(const struct shmp_msg *in, shmp_stage_ctx_t *ctx, void *arg)
{
	(void)arg;
	return shmp_stage_emit(ctx, in->data, in->len);
}

static double cpu_s(int who)
{
	struct rusage ru;
	T_EQ(getrusage(who, &ru), 0);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
	       ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

static void round_trips(shmp_pipeline_t *pl, uint64_t from, uint64_t n)
{
	for (uint64_t i = from; i < from + n; i++) {
		T_EQ(shmp_pipeline_put(pl, &i, sizeof i, 0, 10), 0);
		struct shmp_msg m;
		T_EQ(shmp_pipeline_next(pl, &m, 10), 0);
		uint64_t v;
		memcpy(&v, m.data, sizeof v);
		T_EQ(v, i);
		T_EQ(shmp_pipeline_done(pl), 0);
	}
}

struct later {
	shmp_pipeline_t *pl;
	uint64_t seq;
};

static void *put_later(void *p)
{
	struct later *l = p;
	t_sleep_ms(600);
	T_EQ(shmp_pipeline_put(l->pl, &l->seq, sizeof l->seq, 0, 10), 0);
	return NULL;
}

static int trial(void *arg)
{
	int one_cpu = arg != NULL;
	if (one_cpu) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(sched_getcpu(), &set);
		T_EQ(sched_setaffinity(0, sizeof set, &set), 0);
	}
	struct shmp_pipeline_opts o = SHMP_OPTS(shmp_pipeline_opts, .spin = 1, .capacity = 64,
						.segment_size = 16u << 20);
	shmp_pipeline_t *pl = shmp_pipeline_create(&o);
	T_CHECK(pl);
	T_EQ(shmp_pipeline_add_stage(pl, "a", fwd, NULL, 1), 1);
	T_EQ(shmp_pipeline_add_stage(pl, "b", fwd, NULL, 1), 2);
	T_EQ(shmp_pipeline_start(pl), 0);
	double t0 = t_now();
	round_trips(pl, 0, 2000);
	double busy = t_now() - t0;
	/* Idle: next() waits 600 ms for a message put by another thread. */
	pthread_t th;
	struct later l = { pl, 2000 };
	double self0 = cpu_s(RUSAGE_THREAD);
	T_EQ(pthread_create(&th, NULL, put_later, &l), 0);
	struct shmp_msg m;
	T_EQ(shmp_pipeline_next(pl, &m, 10), 0);
	double self = cpu_s(RUSAGE_THREAD) - self0;
	T_EQ(shmp_pipeline_done(pl), 0);
	T_EQ(pthread_join(th, NULL), 0);
	T_EQ(shmp_pipeline_close(pl), 0);
	T_EQ(shmp_pipeline_next(pl, &m, 10), -SHMP_ECLOSED);
	T_EQ(shmp_pipeline_join(pl, 10), 0);
	shmp_pipeline_destroy(pl); /* the workers are reaped: their time is ours */
	double workers = cpu_s(RUSAGE_CHILDREN);
	printf("%s: 2000 round trips in %.3f s; idle 600 ms: next() used %.1f ms CPU, the 2 workers %.1f ms in "
	       "all (busy part included)\n", one_cpu ? "one CPU" : "all CPUs", busy, self * 1e3, workers * 1e3);
	fflush(stdout);
	T_CHECK(self < 0.150);
	/* The workers' whole lives: the busy part is short, and the 600 ms
	 * idle would be 1.2 s of CPU if they polled without a bound. */
	T_CHECK(workers < 0.150 + busy * 2);
	T_CHECK(workers < 0.9);
	fflush(stdout); /* the child _exits */
	return 0;
}

int main(void)
{
	t_watchdog(120);
	t_wait_ok(t_fork(trial, NULL), 60);
	t_wait_ok(t_fork(trial, (void *)1), 60);
	printf("ok\n");
	return 0;
}
