/* A shared counter incremented by 2 processes: under the Value's lock and
 * with the Value's atomic add, beside glibc's process-shared mutex, a raw
 * atomic add and Python's synchronized Value, all measured in this run,
 * quiet and loaded (bench.h). Every run checks that no increment was lost. */
#include <pthread.h>
#include "bench.h"

static long n_locked, n_atomic; /* per process */

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
	for (long k = 0; k < n_locked; k++) {
		shmp_lock_acquire(l, SHMP_FOREVER);
		(*p)++;
		shmp_lock_release(l);
	}
}

static void shmp_atomic(int i, void *a)
{
	(void)i, (void)a;
	for (long k = 0; k < n_atomic; k++)
		shmp_value_add(val, 1, NULL);
}

static void glibc_locked(int i, void *a)
{
	(void)i, (void)a;
	for (long k = 0; k < n_locked; k++) {
		pthread_mutex_lock(&peer->m);
		peer->counter++;
		pthread_mutex_unlock(&peer->m);
	}
}

static void raw_atomic(int i, void *a)
{
	(void)i, (void)a;
	for (long k = 0; k < n_atomic; k++)
		__atomic_fetch_add(&peer->acounter, 1, __ATOMIC_SEQ_CST);
}

enum { V_SHMP_LOCKED, V_GLIBC_LOCKED, V_SHMP_ATOMIC, V_RAW_ATOMIC };

/* Increments per second by 2 processes running variant k. */
static double run(void *unused, int k, double *extra)
{
	(void)unused, (void)extra;
	static void (*const fn[])(int, void *) = { shmp_locked, glibc_locked, shmp_atomic, raw_atomic };
	long per = k <= V_GLIBC_LOCKED ? n_locked : n_atomic;
	long *counter = k == V_GLIBC_LOCKED ? &peer->counter : k == V_RAW_ATOMIC ? &peer->acounter
									      : (long *)shmp_value_ptr(val);
	*counter = 0;
	double t = bench_run_procs(2, fn[k], NULL);
	if (__atomic_load_n(counter, __ATOMIC_SEQ_CST) != 2 * per) {
		fprintf(stderr, "bench_counter: lost increments!\n");
		exit(1);
	}
	return 2.0 * per / t;
}

int main(void)
{
	n_locked = bench_n(2000000L, 20000L);
	n_atomic = bench_n(10000000L, 100000L);
	val = shmp_value_create('q', NULL, NULL);
	peer = bench_shm(sizeof *peer);
	pthread_mutexattr_t at;
	pthread_mutexattr_init(&at);
	pthread_mutexattr_setpshared(&at, PTHREAD_PROCESS_SHARED);
	pthread_mutex_init(&peer->m, &at);
	if (!val)
		return 1;

	bench_header("bench_counter", "2 processes incrementing one shared counter");
	struct bench_var v[] = {
		BENCH_VAR(run, NULL, V_SHMP_LOCKED),
		BENCH_VAR(run, NULL, V_GLIBC_LOCKED),
		BENCH_VAR(run, NULL, V_SHMP_ATOMIC),
		BENCH_VAR(run, NULL, V_RAW_ATOMIC),
	};
	bench_run(v, 4);
	struct bench_fig py = bench_python_fig("value_locked_incr_per_s", 1e-6);
	struct bench_fig locked = bench_fig_scale(bench_fig(&v[0]), 1e-6), atom = bench_fig_scale(bench_fig(&v[2]), 1e-6);
	bench_section("shared counter, 2 processes (M increments/s; higher is better)");
	bench_line("Value counter under its lock, 2 processes", "M/s", locked, "glibc pshared mutex",
		   bench_fig_scale(bench_fig(&v[1]), 1e-6), ">= 1.0");
	bench_line("Value counter under its lock, 2 processes", "M/s", locked, "Python Value+get_lock (1 run)", py,
		   ">= 50");
	bench_line("Value atomic add, 2 processes", "M/s", atom, "raw atomic fetch_add",
		   bench_fig_scale(bench_fig(&v[3]), 1e-6), ">= 0.9");
	bench_line("Value atomic add, 2 processes", "M/s", atom, "Python Value+get_lock (1 run)", py, ">= 50");
	shmp_value_destroy(val);
	return 0;
}
