/* Process start + join latency beside plain fork + waitpid, same run. */
#include "bench.h"

#define N 200

static int child(void *arg)
{
	(void)arg;
	return 0;
}

static double shmp_start_join(void)
{
	double t = bench_now();
	for (int i = 0; i < N; i++) {
		shmp_process_t *p = shmp_process_create(child, NULL, NULL);
		if (!p || shmp_process_start(p) < 0 || shmp_process_join(p, SHMP_FOREVER) < 0)
			exit(1);
		shmp_process_destroy(p);
	}
	return (bench_now() - t) / N * 1e6;
}

static double fork_waitpid(void)
{
	double t = bench_now();
	for (int i = 0; i < N; i++) {
		pid_t c = fork();
		if (c == 0)
			_exit(0);
		waitpid(c, NULL, 0);
	}
	return (bench_now() - t) / N * 1e6;
}

int main(void)
{
	printf("# start + join of a process that returns at once; us, median of %d runs\n", bench_reps());
	/* Interleaved: on a shared machine the load drifts, and two blocks of
	 * runs one after the other would measure the drift. */
	double sv[100], fv[100];
	int n = bench_reps();
	for (int i = 0; i < n; i++) {
		sv[i] = shmp_start_join();
		fv[i] = fork_waitpid();
	}
	double s = bench_median(sv, n), f = bench_median(fv, n);
	bench_report("process_start_join", s, "fork+waitpid", f, "us", "<= 1.2");
	return 0;
}
