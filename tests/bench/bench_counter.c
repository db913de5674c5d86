/* A shared counter incremented by 2 processes: under the Value's lock and
 * with the Value's atomic add, beside glibc's process-shared mutex, a raw
 * atomic add and Python's synchronized Value, all measured in this run. */
#include <pthread.h>
#include "bench.h"

#define N_LOCKED 2000000L
#define N_ATOMIC 10000000L

struct peer {
	pthread_mutex_t m;
	long counter;
	_Alignas(64) long acounter;
};

static shmp_value_t *val;
static struct peer *peer;

static void shmp_locked(int i, void *a)
{
	(void)i, (void)a;
	shmp_lock_t *l = shmp_value_lock(val);
	long *p = shmp_value_ptr(val);
	for (long k = 0; k < N_LOCKED; k++) {
		shmp_lock_acquire(l, SHMP_FOREVER);
		(*p)++;
		shmp_lock_release(l);
	}
}

static void shmp_atomic(int i, void *a)
{
	(void)i, (void)a;
	for (long k = 0; k < N_ATOMIC; k++)
		shmp_value_add(val, 1, NULL);
}

static void glibc_locked(int i, void *a)
{
	(void)i, (void)a;
	for (long k = 0; k < N_LOCKED; k++) {
		pthread_mutex_lock(&peer->m);
		peer->counter++;
		pthread_mutex_unlock(&peer->m);
	}
}

static void raw_atomic(int i, void *a)
{
	(void)i, (void)a;
	for (long k = 0; k < N_ATOMIC; k++)
		__atomic_fetch_add(&peer->acounter, 1, __ATOMIC_SEQ_CST);
}

/* Increments per second; `counter` is where fn counts, checked after. */
static double run(void (*fn)(int, void *), long per_proc, long *counter)
{
	*counter = 0;
	double t = bench_run_procs(2, fn, NULL);
	if (__atomic_load_n(counter, __ATOMIC_SEQ_CST) != 2 * per_proc) {
		fprintf(stderr, "lost increments!\n");
		exit(1);
	}
	return 2.0 * per_proc / t;
}

int main(void)
{
	val = shmp_value_create('q', NULL, NULL);
	peer = bench_shm(sizeof *peer);
	pthread_mutexattr_t at;
	pthread_mutexattr_init(&at);
	pthread_mutexattr_setpshared(&at, PTHREAD_PROCESS_SHARED);
	pthread_mutex_init(&peer->m, &at);
	if (!val)
		return 1;

	double py = bench_python("value_locked_incr_per_s");
	printf("# 2 processes incrementing one shared counter; ops/s, median of %d runs\n", bench_reps());
	long *shared = shmp_value_ptr(val);
	double locked, glibc, atom, raw;
	BENCH_PAIR(run(shmp_locked, N_LOCKED, shared), run(glibc_locked, N_LOCKED, &peer->counter), &locked, &glibc);
	BENCH_PAIR(run(shmp_atomic, N_ATOMIC, shared), run(raw_atomic, N_ATOMIC, &peer->acounter), &atom, &raw);
	bench_report("value_locked_incr", locked, "glibc pshared mutex", glibc, "ops/s", ">= 1.0");
	bench_report("value_locked_incr", locked, "python Value+get_lock", py, "ops/s", ">= 50");
	bench_report("value_atomic_add", atom, "raw atomic fetch_add", raw, "ops/s", ">= 0.9");
	bench_report("value_atomic_add", atom, "python Value+get_lock", py, "ops/s", ">= 50");
	shmp_value_destroy(val);
	return 0;
}
