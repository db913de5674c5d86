/* Benchmark helpers: clocks, shared scratch memory, medians, the peers'
 * figures, and one report line per figure: shmp beside its peer, same run. */
#ifndef SHMP_BENCH_H
#define SHMP_BENCH_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "shmp.h"

#ifndef SHMP_ANCHORS_DEFAULT
#define SHMP_ANCHORS_DEFAULT "../shared/anchors"
#endif

static inline double bench_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static inline void *bench_shm(size_t n)
{
	void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	memset(p, 0, n);
	return p;
}

static inline int bench_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static inline double bench_median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, bench_cmp);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Repetitions per figure: BENCH_REPS in the environment, default 5. */
static inline int bench_reps(void)
{
	const char *s = getenv("BENCH_REPS");
	int r = s ? atoi(s) : 0;
	return r > 0 && r < 100 ? r : 5;
}

/* Median over the repetitions of a measurement returning one figure. */
#define BENCH_MEDIAN(expr)                                        \
	({                                                        \
		double v_[100];                                   \
		int n_ = bench_reps();                            \
		for (int i_ = 0; i_ < n_; i_++)                   \
			v_[i_] = (expr);                          \
		bench_median(v_, n_);                             \
	})

/* Medians of two measurements taken in turns (a, b, a, b, ...): on a
 * shared machine the load drifts, and two blocks of runs one after the
 * other would measure the drift as well. */
#define BENCH_PAIR(a_expr, b_expr, a_out, b_out)                  \
	do {                                                      \
		double av_[100], bv_[100];                        \
		int n_ = bench_reps();                            \
		for (int i_ = 0; i_ < n_; i_++) {                 \
			av_[i_] = (a_expr);                       \
			bv_[i_] = (b_expr);                       \
		}                                                 \
		*(a_out) = bench_median(av_, n_);                 \
		*(b_out) = bench_median(bv_, n_);                 \
	} while (0)

/* One line: the figure, its peer from the same run, and shmp/peer. `goal`
 * says which way is better, e.g. "<= 1.0" or ">= 50". */
static inline void bench_report(const char *name, double shmp, const char *peer_name, double peer,
				const char *unit, const char *goal)
{
	if (peer > 0)
		printf("%-34s shmp %12.2f %-8s | %-30s %12.2f %-8s | shmp/peer %8.3f  (goal %s)\n",
		       name, shmp, unit, peer_name, peer, unit, shmp / peer, goal);
	else
		printf("%-34s shmp %12.2f %-8s | %-30s %12s %-8s | shmp/peer %8s  (goal %s)\n",
		       name, shmp, unit, peer_name, "n/a", unit, "n/a", goal);
	fflush(stdout);
}

/* A figure from ../shared/anchors/py_pool.py (Python's multiprocessing), run
 * once per benchmark program; 0 if Python or the anchor is not there. */
static inline double bench_python(const char *key)
{
	static char out[8192];
	static int ran;
	if (!ran) {
		ran = 1;
		const char *dir = getenv("SHMP_ANCHORS_DIR");
		char cmd[1024];
		snprintf(cmd, sizeof cmd, "python3 '%s/py_pool.py' 2>/dev/null",
			 dir && *dir ? dir : SHMP_ANCHORS_DEFAULT);
		fprintf(stderr, "running Python's multiprocessing anchor (%s)...\n", cmd);
		FILE *f = popen(cmd, "r");
		if (f) {
			size_t n = fread(out, 1, sizeof out - 1, f);
			out[n] = 0;
			pclose(f);
		}
	}
	const char *p = strstr(out, key);
	return p ? atof(p + strlen(key)) : 0;
}

/* Fork `nproc` children running fn(i, arg), released together; returns the
 * seconds from release until all have exited. */
static inline double bench_run_procs(int nproc, void (*fn)(int, void *), void *arg)
{
	atomic_int *go = bench_shm(sizeof *go);
	pid_t pids[64];
	for (int i = 0; i < nproc; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			while (!atomic_load(go))
				;
			fn(i, arg);
			_exit(0);
		}
	}
	double t = bench_now();
	atomic_store(go, 1);
	for (int i = 0; i < nproc; i++)
		waitpid(pids[i], NULL, 0);
	t = bench_now() - t;
	munmap(go, sizeof *go);
	return t;
}

#endif
