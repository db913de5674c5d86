/* Lock, Event and Condition figures beside glibc and raw futexes, same run,
 * quiet and loaded (bench.h): uncontended acquire+release, 2 processes
 * contending on a counter, and the wake-up round trip between 2 processes
 * through Event and Condition beside a raw futex ping-pong. */
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
	_Alignas(64) atomic_long spurious; /* Event waits that returned with no set for them */
};
static struct peers *P;
static shmp_lock_t *L;
static shmp_event_t *E1, *E2;
static shmp_cond_t *C;

static long N_UNC, N_CONT, N_PP;

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

/* Round trip: parent wakes child, child wakes parent. Microseconds. The
 * parent returns the round trips it made (the spinning one may stop early,
 * see bench_budget). */
static double pingpong(long (*parent)(void), void (*child)(void))
{
	fflush(NULL);
	pid_t c = fork();
	if (c == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		child();
		_exit(0);
	}
	double t = bench_now();
	long n = parent();
	t = bench_now() - t;
	waitpid(c, NULL, 0);
	return t / (double)n * 1e6;
}

static long futex_parent(void)
{
	for (long i = 0; i < N_PP; i++) {
		atomic_store(&P->fa, 1);
		futex(&P->fa, FUTEX_WAKE, 1);
		while (atomic_exchange(&P->fb, 0) == 0)
			futex(&P->fb, FUTEX_WAIT, 0);
	}
	return N_PP;
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

/* Loaded, each trip may wait a time slice for the other side to be run:
 * stop after bench_budget() seconds (ping = -1 tells the child). */
static long spin_parent(void)
{
	double end = bench_now() + bench_budget();
	long i;
	atomic_store(&P->pong, 0);
	for (i = 1; i <= N_PP; i++) {
		atomic_store_explicit(&P->ping, i, memory_order_release);
		while (atomic_load_explicit(&P->pong, memory_order_acquire) != i)
			;
		if (i % 64 == 0 && bench_now() > end)
			break;
	}
	atomic_store_explicit(&P->ping, -1, memory_order_release);
	return i > N_PP ? N_PP : i;
}

static void spin_child(void)
{
	for (long i = 1; i <= N_PP; i++) {
		long v;
		while ((v = atomic_load_explicit(&P->ping, memory_order_acquire)) != i)
			if (v == -1)
				return;
		atomic_store_explicit(&P->pong, i, memory_order_release);
	}
}

/* Event: the parent sets E1 for round i, the child answers with E2. The
 * round's number travels in ping/pong, so a wait that returns with no set
 * meant for it (a spurious wake-up: seen on main, where a set() whose
 * generation bump lands late wakes a wait that began after its flag was
 * cleared) is counted, and waited again, rather than taken as the answer. */
static long event_parent(void)
{
	for (long i = 1; i <= N_PP; i++) {
		atomic_store_explicit(&P->ping, i, memory_order_release);
		shmp_event_set(E1);
		for (;;) {
			int e = shmp_event_wait(E2, SHMP_FOREVER);
			if (e) {
				fprintf(stderr, "bench_lock: event wait: %s\n", shmp_strerror(e));
				exit(1);
			}
			if (atomic_load_explicit(&P->pong, memory_order_acquire) == i)
				break;
			atomic_fetch_add(&P->spurious, 1);
		}
		/* The child sets E2 again only after our next set of E1. */
		shmp_event_clear(E2);
	}
	return N_PP;
}

static void event_child(void)
{
	for (long i = 1; i <= N_PP; i++) {
		for (;;) {
			if (shmp_event_wait(E1, SHMP_FOREVER))
				_exit(1);
			if (atomic_load_explicit(&P->ping, memory_order_acquire) == i)
				break;
			atomic_fetch_add(&P->spurious, 1);
		}
		shmp_event_clear(E1);
		atomic_store_explicit(&P->pong, i, memory_order_release);
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
static long cond_parent(void)
{
	cond_side(0);
	return N_PP;
}
static void cond_child(void) { cond_side(1); }

/* The variants, by k. */
enum { U_SHMP, U_GLIBC, U_ROBUST, C_SHMP, C_GLIBC, P_EVENT, P_COND, P_FUTEX, P_SPIN, NV };

static double measure(void *unused, int k, double *extra)
{
	(void)unused;
	double r;
	switch (k) {
	case U_SHMP: return uncontended_shmp();
	case U_GLIBC: return uncontended_glibc(&P->m);
	case U_ROBUST: return uncontended_glibc(&P->robust);
	case C_SHMP: return contended(cont_shmp) / 1e6;
	case C_GLIBC: return contended(cont_glibc) / 1e6;
	case P_EVENT:
		atomic_store(&P->ping, 0);
		atomic_store(&P->pong, 0);
		atomic_store(&P->spurious, 0);
		shmp_event_clear(E1);
		shmp_event_clear(E2);
		r = pingpong(event_parent, event_child);
		extra[0] = (double)atomic_load(&P->spurious) * 1000.0 / (double)N_PP;
		return r;
	case P_COND: P->turn = 0; return pingpong(cond_parent, cond_child);
	case P_FUTEX: return pingpong(futex_parent, futex_child);
	case P_SPIN: atomic_store(&P->ping, 0); return pingpong(spin_parent, spin_child);
	}
	return 0;
}

int main(void)
{
	N_UNC = bench_n(20000000L, 200000L);
	N_CONT = bench_n(2000000L, 20000L);
	N_PP = bench_n(50000L, 500L);
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
	bench_header("bench_lock", "Lock acquire+release, contended Lock, Event and Condition wake-up round trips");

	/* Three groups, each taken in turns: a spinning ping-pong beside a
	 * lock loop would measure one against the other. */
	struct bench_var u[3], c[2], p[4];
	for (int k = 0; k < NV; k++) {
		struct bench_var v = BENCH_VAR(measure, NULL, k);
		if (k <= U_ROBUST)
			u[k] = v;
		else if (k <= C_GLIBC)
			c[k - C_SHMP] = v;
		else
			p[k - P_EVENT] = v;
	}
	bench_run(u, 3);
	bench_run(c, 2);
	bench_run(p, 4);

	bench_section("Lock (ns per acquire+release, lower is better; M ops/s, higher is better)");
	bench_line("Lock uncontended acquire+release", "ns", bench_fig(&u[0]), "glibc pshared mutex", bench_fig(&u[1]),
		   "<= 1.0");
	bench_line("Lock uncontended acquire+release", "ns", bench_fig(&u[0]), "glibc robust pshared mutex",
		   bench_fig(&u[2]), "<= 1.0");
	bench_line("Lock, 2 processes contending", "M/s", bench_fig(&c[0]), "glibc pshared mutex", bench_fig(&c[1]),
		   ">= 1.0");
	bench_section("wake-up round trips between 2 processes (us, lower is better)");
	bench_line("Event set -> wake-up round trip", "us", bench_fig(&p[0]), "raw futex ping-pong", bench_fig(&p[2]),
		   "<= 1.0");
	bench_line("Condition notify -> wake-up round trip", "us", bench_fig(&p[1]), "raw futex ping-pong",
		   bench_fig(&p[2]), "<= 1.0");
	bench_line("Event set -> wake-up round trip", "us", bench_fig(&p[0]), "spin ping-pong (floor)",
		   bench_fig(&p[3]), "info");
	bench_info("Event spurious wake-ups per 1000 round trips", "count", bench_xfig(&p[0]),
		   "waits that returned with no set for them (n/a: none); should be none");
	shmp_cond_destroy(C);
	shmp_event_destroy(E1);
	shmp_event_destroy(E2);
	shmp_lock_destroy(L);
	return 0;
}
