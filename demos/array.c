/* array: worker processes filling one shared Array in parallel.
 *
 * Python's way: arr = Array('q', n, lock=False), Processes or a Pool each
 * filling a slice, the parent summing. shmp does the same on one shared
 * mapping — workers write the parent's memory directly, nothing is pickled
 * or copied back — and the parent checks every item against a
 * single-process loop, whose time is printed beside the parallel ones.
 *
 *   array [items] [workers] [rounds]     (default 4194304, online CPUs, 32)
 *
 * Each item costs `rounds` rounds of integer arithmetic, so that the work
 * is CPU-bound rather than a memory copy. Exit 1 if any check fails. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <shmp.h>

#include "progress.h"

/* Set before any worker starts: the workers inherit them. */
static shmp_array_t *g_arr;  /* the shared Array('q', n, lock=False) */
static int64_t *g_data;      /* its items */
static shmp_array_t *g_done; /* items filled so far, for the progress line */
static long g_rounds;

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* The item's value: a fixed function of its index, not cheap to compute. */
static int64_t f(uint64_t i)
{
	uint64_t x = i + 0x9e3779b97f4a7c15ull;
	for (long r = 0; r < g_rounds; r++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		x *= 0x2545f4914f6cdd1dull;
	}
	return (int64_t)x;
}

/* Fill [lo, hi) and return the slice's sum (wrapping, as unsigned). Every
 * worker writes its own slice, so the items need no lock; the progress
 * counter is one atomic add per 64K items. */
static uint64_t fill(int64_t *data, size_t lo, size_t hi)
{
	uint64_t sum = 0;
	for (size_t i = lo; i < hi; i++) {
		data[i] = f(i);
		sum += (uint64_t)data[i];
		if (((i + 1 - lo) & 0xffff) == 0)
			shmp_array_add(g_done, 0, 0x10000, NULL);
	}
	shmp_array_add(g_done, 0, (int64_t)((hi - lo) & 0xffff), NULL);
	return sum;
}

struct slice {
	uint64_t lo, hi;
};

/* Process(target=...): fill one slice. */
static int fill_proc(void *arg)
{
	const struct slice *s = arg;
	fill(g_data, s->lo, s->hi);
	return 0;
}

/* Pool.map task: fill one slice, return its sum. */
static int fill_task(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	const struct slice *s = arg;
	(void)c;
	uint64_t sum = fill(g_data, s->lo, s->hi);
	memcpy(res, &sum, sizeof sum);
	return 0;
}

static uint64_t sum_of(const int64_t *a, size_t n)
{
	uint64_t s = 0;
	for (size_t i = 0; i < n; i++)
		s += (uint64_t)a[i];
	return s;
}

static int64_t done_so_far(void)
{
	int64_t d = 0;
	shmp_array_load(g_done, 0, &d);
	return d;
}

static void row(const char *way, double t, double t_loop, uint64_t sum, const char *check)
{
	printf("%-34s %9.3f %8.2fx  %016llx  %s\n", way, t, t_loop / t, (unsigned long long)sum, check);
}

/* The parent's check after a parallel fill: sum and every item. */
static int check(const int64_t *ref, uint64_t want, size_t n, uint64_t *sum)
{
	*sum = sum_of(g_data, n);
	return *sum == want && memcmp(g_data, ref, n * sizeof *ref) == 0;
}

/* Workers filling slices as shmp Processes. */
static double run_processes(size_t n, int workers, int *ok)
{
	shmp_process_t **p = calloc((size_t)workers, sizeof *p);
	struct slice *s = calloc((size_t)workers, sizeof *s);
	*ok = p && s;
	if (!*ok) {
		free(p);
		free(s);
		return 0;
	}
	shmp_array_store(g_done, 0, 0);
	struct progress pr;
	progress_begin(&pr, "Processes", n);
	double t = now();
	for (int w = 0; w < workers; w++) {
		s[w] = (struct slice){ n * (size_t)w / (size_t)workers, n * (size_t)(w + 1) / (size_t)workers };
		p[w] = shmp_process_create(fill_proc, &s[w], NULL);
		if (!p[w] || shmp_process_start(p[w]) < 0) {
			fprintf(stderr, "array: cannot start a process: %s\n", shmp_strerror(errno));
			*ok = 0;
		}
	}
	for (int w = 0; w < workers; w++) {
		if (!p[w])
			continue;
		/* Join in 20 ms steps, drawing the progress in between. */
		while (shmp_process_join(p[w], 0.02) == -ETIMEDOUT)
			progress_update(&pr, (uint64_t)done_so_far());
		int code = -1;
		shmp_process_exitcode(p[w], &code);
		*ok &= code == 0;
		shmp_process_destroy(p[w]);
	}
	t = now() - t;
	progress_update(&pr, (uint64_t)done_so_far());
	progress_end(&pr);
	free(p);
	free(s);
	return t;
}

/* The same with a Pool: map over slices, each returning its sum. */
static double run_pool(size_t n, int workers, size_t nslices, uint64_t *sum_of_sums, int *ok)
{
	struct slice *s = calloc(nslices, sizeof *s);
	uint64_t *sums = calloc(nslices, sizeof *sums);
	*ok = s && sums;
	*sum_of_sums = 0;
	if (!*ok) {
		free(s);
		free(sums);
		return 0;
	}
	for (size_t k = 0; k < nslices; k++)
		s[k] = (struct slice){ n * k / nslices, n * (k + 1) / nslices };
	shmp_array_store(g_done, 0, 0);
	struct progress pr;
	progress_begin(&pr, "Pool.map", n);
	/* Pool creation counts: it is part of what the parallel way costs. */
	double t = now();
	shmp_pool_t *pool = shmp_pool_create(workers, NULL);
	if (!pool) {
		fprintf(stderr, "array: shmp_pool_create: %s\n", shmp_strerror(errno));
		*ok = 0;
		progress_end(&pr);
		free(s);
		free(sums);
		return 0;
	}
	/* One slice per task: slices are few and even. */
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = 1);
	shmp_async_t *h = shmp_pool_map_async(pool, fill_task, s, sizeof s[0], nslices, sums,
					      sizeof sums[0], &o);
	if (!h) {
		fprintf(stderr, "array: map_async: %s\n", shmp_strerror(errno));
		*ok = 0;
	} else {
		while (shmp_async_wait(h, 0.02) == -ETIMEDOUT)
			progress_update(&pr, (uint64_t)done_so_far());
		struct shmp_task_error err;
		int rc = shmp_async_get(h, 0, &err);
		if (rc) {
			fprintf(stderr, "array: map: %s\n", shmp_strerror(rc));
			*ok = 0;
		}
		shmp_async_destroy(h);
	}
	shmp_pool_close(pool);
	shmp_pool_join(pool, SHMP_FOREVER);
	t = now() - t;
	shmp_pool_destroy(pool);
	progress_update(&pr, (uint64_t)done_so_far());
	progress_end(&pr);
	for (size_t k = 0; k < nslices; k++)
		*sum_of_sums += sums[k];
	free(s);
	free(sums);
	return t;
}

int main(int argc, char **argv)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	size_t n = argc > 1 ? strtoull(argv[1], NULL, 0) : (size_t)1 << 22;
	int workers = argc > 2 ? atoi(argv[2]) : (int)(ncpu < 1 ? 1 : ncpu > 64 ? 64 : ncpu);
	g_rounds = argc > 3 ? atol(argv[3]) : 32;
	if (n < 1 || n > ((size_t)1 << 28) || workers < 1 || workers > 256 || g_rounds < 0) {
		fprintf(stderr, "usage: array [items 1..2^28] [workers 1..256] [rounds >= 0]\n");
		return 2;
	}
	/* Lines and the progress line (write(2)) must not overtake each other. */
	setvbuf(stdout, NULL, _IONBF, 0);

	/* arr = Array('q', n, lock=False): made before any worker, so every
	 * worker maps it at the same address. Raw: each item has one writer. */
	struct shmp_value_opts raw = SHMP_OPTS(shmp_value_opts, .raw = 1);
	g_arr = shmp_array_create('q', n, NULL, &raw);
	g_done = shmp_array_create('q', 1, NULL, &raw);
	int64_t *ref = malloc(n * sizeof *ref);
	if (!g_arr || !g_done || !ref) {
		fprintf(stderr, "array: %s\n", g_arr && g_done ? "out of memory" : shmp_strerror(errno));
		return 1;
	}
	g_data = shmp_array_ptr(g_arr);

	printf("shmp %s array: %zu items of 'q' (%.1f MiB shared), %ld rounds each, %d workers\n\n",
	       shmp_version_string(), n, (double)(n * sizeof *ref) / (1 << 20), g_rounds, workers);

	/* The reference: one process, a plain loop, private memory. */
	shmp_array_store(g_done, 0, 0);
	double t_loop = now();
	uint64_t want = fill(ref, 0, n);
	t_loop = now() - t_loop;

	printf("%-34s %9s %9s  %-16s  %s\n", "way", "seconds", "speed-up", "sum", "check");
	row("single-process loop", t_loop, t_loop, want, "(reference)");

	int status = 0, ok;
	uint64_t sum;
	char way[64];

	memset(g_data, 0, n * sizeof *g_data);
	double t = run_processes(n, workers, &ok);
	ok = ok && check(ref, want, n, &sum);
	snprintf(way, sizeof way, "%d Processes, a slice each", workers);
	row(way, t, t_loop, sum, ok ? "ok: every item, and the sum" : "WRONG");
	status |= !ok;

	memset(g_data, 0, n * sizeof *g_data);
	size_t nslices = (size_t)workers * 4 < n ? (size_t)workers * 4 : n;
	uint64_t sums;
	t = run_pool(n, workers, nslices, &sums, &ok);
	ok = ok && check(ref, want, n, &sum) && sums == want;
	snprintf(way, sizeof way, "Pool(%d).map over %zu slices", workers, nslices);
	row(way, t, t_loop, sum, ok ? "ok: every item, the sum, the slices' sums" : "WRONG");
	status |= !ok;

	printf("\nparallel times include starting the processes (and the pool).\n");
	free(ref);
	shmp_array_destroy(g_done);
	shmp_array_destroy(g_arr);
	return status;
}
