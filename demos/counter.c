/* counter: worker processes sharing one counter.
 *
 * The first thing Python's tutorials show about Value: without the lock,
 * increments are lost; with get_lock() they are not, but it is slow. shmp
 * runs the same three ways, plus the lock-free atomic add Python lacks.
 *
 *   counter [workers] [increments per worker]      (default 4 x 1000000) */
#define _POSIX_C_SOURCE 200809L /* clock_gettime in strict C11 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <shmp.h>

struct job {
	shmp_value_t *v;
	long n;
	int how; /* 0 unsynchronized, 1 locked, 2 atomic */
};

static int worker(void *arg)
{
	struct job *j = arg;
	long *p = shmp_value_ptr(j->v);
	shmp_lock_t *lock = shmp_value_lock(j->v);
	for (long i = 0; i < j->n; i++) {
		switch (j->how) {
		case 0: /* a plain read-modify-write: racy on purpose */
			*(volatile long *)p = *(volatile long *)p + 1;
			break;
		case 1: /* Python: with v.get_lock(): v.value += 1 */
			shmp_lock_acquire(lock, SHMP_FOREVER);
			(*p)++;
			shmp_lock_release(lock);
			break;
		default:
			shmp_value_add(j->v, 1, NULL);
		}
	}
	return 0;
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
	int workers = argc > 1 ? atoi(argv[1]) : 4;
	long n = argc > 2 ? atol(argv[2]) : 1000000;
	if (workers < 1 || workers > 256 || n < 1) {
		fprintf(stderr, "usage: counter [workers 1..256] [increments >= 1]\n");
		return 2;
	}
	static const char *names[] = { "no lock (racy)", "Value lock", "atomic add" };
	printf("shmp %s: %d worker processes x %ld increments of one shared 'l' Value\n\n",
	       shmp_version_string(), workers, n);
	printf("%-16s %14s %14s %10s %14s\n", "way", "expected", "got", "seconds", "incr/s");
	shmp_value_t *v = shmp_value_create('l', NULL, NULL);
	shmp_process_t **procs = calloc((size_t)workers, sizeof *procs);
	if (!v || !procs) {
		fprintf(stderr, "counter: %s\n", shmp_strerror(errno));
		return 1;
	}
	int status = 0;
	for (int how = 0; how < 3; how++) {
		struct job job = { .v = v, .n = n, .how = how };
		shmp_value_set_i64(v, 0);
		double t = now();
		for (int i = 0; i < workers; i++) {
			procs[i] = shmp_process_create(worker, &job, NULL);
			if (!procs[i] || shmp_process_start(procs[i]) < 0) {
				fprintf(stderr, "counter: cannot start a worker\n");
				return 1;
			}
		}
		for (int i = 0; i < workers; i++) {
			int code = -1;
			shmp_process_join(procs[i], SHMP_FOREVER);
			shmp_process_exitcode(procs[i], &code);
			shmp_process_destroy(procs[i]);
			status |= code != 0;
		}
		t = now() - t;
		int64_t got = 0;
		shmp_value_get_i64(v, &got);
		long long want = (long long)workers * n;
		printf("%-16s %14lld %14lld %10.3f %14.0f%s\n", names[how], want, (long long)got, t,
		       (double)want / t, got == want ? "" : "   <- lost updates");
		if (how > 0 && got != want)
			status = 1;
	}
	shmp_value_destroy(v);
	free(procs);
	return status;
}
