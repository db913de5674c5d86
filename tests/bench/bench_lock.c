/* Lock, Event and Condition figures beside glibc and raw futexes, same run:
 * uncontended acquire+release, 2 processes contending on a counter, and the
 * wake-up round trip between 2 processes through Event and Condition. */
#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>
#include "bench.h"

struct peers {
	_Alignas(64) pthread_mutex_t m;
	_Alignas(64) pthread_mutex_t robust;
	_Alignas(64) long counter;
	_Alignas(64) atomic_int fa;
	_Alignas(64) atomic_int fb;
	_Alignas(64) atomic_long ping;
	_Alignas(64) atomic_long pong;
	_Alignas(64) long turn;
};
static struct peers *P;
static shmp_lock_t *L;
static shmp_event_t *E1, *E2;
static shmp_cond_t *C;

#define N_UNC 20000000L
#define N_CONT 2000000L
#define N_PP 50000L

static double uncontended_shmp(void)
{
	double t = bench_now();
	for (long i = 0; i < N_UNC; i++) {
		shmp_lock_acquire(L, SHMP_FOREVER);
		P->counter++;
		shmp_lock_release(L);
	}
	return (bench_now() - t) / N_UNC * 1e9;
}

static double uncontended_glibc(pthread_mutex_t *m)
{
	double t = bench_now();
	for (long i = 0; i < N_UNC; i++) {
		pthread_mutex_lock(m);
		P->counter++;
		pthread_mutex_unlock(m);
	}
	return (bench_now() - t) / N_UNC * 1e9;
}

static void cont_shmp(int i, void *a)
{
	(void)i, (void)a;
	for (long k = 0; k < N_CONT; k++) {
		shmp_lock_acquire(L, SHMP_FOREVER);
		P->counter++;
		shmp_lock_release(L);
	}
}

static void cont_glibc(int i, void *a)
{
	(void)i, (void)a;
	for (long k = 0; k < N_CONT; k++) {
		pthread_mutex_lock(&P->m);
		P->counter++;
		pthread_mutex_unlock(&P->m);
	}
}

static double contended(void (*fn)(int, void *))
{
	P->counter = 0;
	double t = bench_run_procs(2, fn, NULL);
	if (P->counter != 2 * N_CONT) {
		fprintf(stderr, "lost increments\n");
		exit(1);
	}
	return 2.0 * N_CONT / t;
}

static long futex(atomic_int *u, int op, int v)
{
	return syscall(SYS_futex, u, op, v, NULL, NULL, 0);
}

/* Round trip: parent wakes child, child wakes parent. Microseconds. */
static double pingpong(void (*parent)(void), void (*child)(void))
{
	pid_t c = fork();
	if (c == 0) {
		child();
		_exit(0);
	}
	double t = bench_now();
	parent();
	t = bench_now() - t;
	waitpid(c, NULL, 0);
	return t / N_PP * 1e6;
}

static void futex_parent(void)
{
	for (long i = 0; i < N_PP; i++) {
		atomic_store(&P->fa, 1);
		futex(&P->fa, FUTEX_WAKE, 1);
		while (atomic_exchange(&P->fb, 0) == 0)
			futex(&P->fb, FUTEX_WAIT, 0);
	}
}

static void futex_child(void)
{
	for (long i = 0; i < N_PP; i++) {
		while (atomic_exchange(&P->fa, 0) == 0)
			futex(&P->fa, FUTEX_WAIT, 0);
		atomic_store(&P->fb, 1);
		futex(&P->fb, FUTEX_WAKE, 1);
	}
}

static void spin_parent(void)
{
	atomic_store(&P->ping, 0);
	for (long i = 1; i <= N_PP; i++) {
		atomic_store_explicit(&P->ping, i, memory_order_release);
		while (atomic_load_explicit(&P->pong, memory_order_acquire) != i)
			;
	}
}

static void spin_child(void)
{
	for (long i = 1; i <= N_PP; i++) {
		while (atomic_load_explicit(&P->ping, memory_order_acquire) != i)
			;
		atomic_store_explicit(&P->pong, i, memory_order_release);
	}
}

static void event_parent(void)
{
	P->counter = 0;
	for (long i = 0; i < N_PP; i++) {
		shmp_event_set(E1);
		shmp_event_wait(E2, SHMP_FOREVER);
		shmp_event_clear(E2);
		if (__atomic_load_n(&P->counter, __ATOMIC_ACQUIRE) != i + 1) {
			fprintf(stderr, "event ping-pong out of step at %ld\n", i);
			exit(1);
		}
	}
}

static void event_child(void)
{
	for (long i = 0; i < N_PP; i++) {
		shmp_event_wait(E1, SHMP_FOREVER);
		shmp_event_clear(E1);
		__atomic_fetch_add(&P->counter, 1, __ATOMIC_RELEASE);
		shmp_event_set(E2);
	}
}

/* Condition: `turn` says whose move it is; each side notifies the other. */
static void cond_side(long me)
{
	shmp_lock_t *l = shmp_cond_lock(C);
	shmp_lock_acquire(l, SHMP_FOREVER);
	for (long i = 0; i < N_PP; i++) {
		while (P->turn != me)
			shmp_cond_wait(C, SHMP_FOREVER);
		P->turn = 1 - me;
		shmp_cond_notify(C, 1);
	}
	shmp_lock_release(l);
}
static void cond_parent(void) { cond_side(0); }
static void cond_child(void) { cond_side(1); }

int main(void)
{
	P = bench_shm(sizeof *P);
	pthread_mutexattr_t at;
	pthread_mutexattr_init(&at);
	pthread_mutexattr_setpshared(&at, PTHREAD_PROCESS_SHARED);
	pthread_mutex_init(&P->m, &at);
	pthread_mutexattr_setrobust(&at, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&P->robust, &at);
	L = shmp_lock_create(NULL);
	E1 = shmp_event_create(NULL);
	E2 = shmp_event_create(NULL);
	C = shmp_cond_create(NULL);
	if (!L || !E1 || !E2 || !C)
		return 1;
	printf("# medians of %d runs; shmp/peer below 1 is faster for ns/us, above 1 for ops/s\n", bench_reps());
	double u, ug, ur, u2, c, cg, fut, ev, cv, spin;
	BENCH_PAIR(uncontended_shmp(), uncontended_glibc(&P->m), &u, &ug);
	BENCH_PAIR(uncontended_shmp(), uncontended_glibc(&P->robust), &u2, &ur);
	bench_report("lock_uncontended", u, "glibc pshared mutex", ug, "ns", "<= 1.0");
	bench_report("lock_uncontended", u2, "glibc robust pshared mutex", ur, "ns", "< 1.0");
	BENCH_PAIR(contended(cont_shmp), contended(cont_glibc), &c, &cg);
	bench_report("lock_contended_2proc", c, "glibc pshared mutex", cg, "ops/s", ">= 1.0");
	BENCH_PAIR(pingpong(event_parent, event_child), pingpong(futex_parent, futex_child), &ev, &fut);
	BENCH_PAIR((P->turn = 0, pingpong(cond_parent, cond_child)), pingpong(spin_parent, spin_child), &cv, &spin);
	bench_report("event_wake_rtt", ev, "raw futex ping-pong", fut, "us", "<= 1.2");
	bench_report("event_wake_rtt", ev, "spin ping-pong (floor)", spin, "us", "info");
	bench_report("condition_notify_rtt", cv, "raw futex ping-pong", fut, "us", "<= 1.2");
	shmp_cond_destroy(C);
	shmp_event_destroy(E1);
	shmp_event_destroy(E2);
	shmp_lock_destroy(L);
	return 0;
}
