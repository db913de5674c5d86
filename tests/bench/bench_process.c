/* Process start + join latency beside plain fork + waitpid, same run, quiet
 * and loaded (bench.h). */
#include "bench.h"

static long N;

static int child(void *arg)
{
	(void)arg;
	return 0;
}

static double shmp_start_join(void *unused, int k, double *extra)
{
	(void)unused, (void)k, (void)extra;
	double t = bench_now();
	for (long i = 0; i < N; i++) {
		shmp_process_t *p = shmp_process_create(child, NULL, NULL);
		int e = p ? shmp_process_start(p) : -errno;
		if (!e)
			e = shmp_process_join(p, SHMP_FOREVER);
		if (e < 0) {
			fprintf(stderr, "bench_process: %s\n", shmp_strerror(e));
			exit(1);
		}
		shmp_process_destroy(p);
	}
	return (bench_now() - t) / (double)N * 1e6;
}

static double fork_waitpid(void *unused, int k, double *extra)
{
	(void)unused, (void)k, (void)extra;
	double t = bench_now();
	for (long i = 0; i < N; i++) {
		pid_t c = fork();
		if (c == 0)
			_exit(0);
		if (c < 0) {
			perror("fork");
			exit(1);
		}
		waitpid(c, NULL, 0);
	}
	return (bench_now() - t) / (double)N * 1e6;
}

int main(void)
{
	N = bench_n(200, 10);
	bench_header("bench_process", "start + join of a process that returns at once");
	struct bench_var v[] = { BENCH_VAR(shmp_start_join, NULL, 0), BENCH_VAR(fork_waitpid, NULL, 0) };
	bench_run(v, 2);
	bench_section("Process (us, lower is better)");
	bench_line("Process start + join", "us", bench_fig(&v[0]), "fork+waitpid", bench_fig(&v[1]), "<= 1.2");
	return 0;
}
