/* Robust Lock under random kills: many trials in which a child loops
 * acquire / a++ / b++ / release on a shared pair and is SIGKILLed at a random
 * moment. The parent's next acquire (timeout 2 s) must return 0 or
 * -EOWNERDEAD, never time out or hang; after 0 the pair is intact (a == b);
 * after -EOWNERDEAD it is intact or torn by exactly one (a == b + 1), is
 * repaired, marked consistent and released. In half the trials the parent
 * is already contending for the lock when the kill lands (the kill comes from
 * a helper thread), so kills also hit the child while it waits or hands off.
 * Prints how many trials hit each outcome. */
#include "t.h"

#include <pthread.h>

#define TRIALS 300
#define MAX_WALL 12.0 /* seconds: stop early on a slow machine */
#define MAX_DELAY_US 1500

static shmp_lock_t *lk;
static volatile int64_t *ab; /* shared: ab[0] = a, ab[1] = b */
static int pfd[2];

static void burn(int n)
{
	for (volatile int k = 0; k < n; k++)
		;
}

static int child_loop(void *arg)
{
	(void)arg;
	for (unsigned long i = 0;; i++) {
		/* Only the parent competes, and it never dies: always 0. */
		if (shmp_lock_acquire(lk, -1) != 0)
			return 2;
		ab[0]++;
		burn(300); /* a torn pair is visible for a while */
		ab[1]++;
		if (shmp_lock_release(lk) != 0)
			return 3;
		if (i == 0)
			t_signal(pfd[1]);
		burn(300);
	}
}

static void spin_until(double t)
{
	while (t_now() < t)
		;
}

struct killer {
	pid_t pid;
	unsigned delay_us;
	int status;
};

static void *killer_thread(void *arg)
{
	struct killer *k = arg;
	spin_until(t_now() + k->delay_us * 1e-6);
	T_CHECK(kill(k->pid, SIGKILL) == 0);
	k->status = t_wait(k->pid, 10); /* reaped: the holder is gone */
	return NULL;
}

static void check_killed(int st)
{
	if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL) {
		fprintf(stderr, "child ended by %s %d, not by SIGKILL\n",
			WIFEXITED(st) ? "exit" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
		exit(1);
	}
}

int main(void)
{
	t_watchdog(60);
	T_CHECK(pipe(pfd) == 0);
	/* T_SEED=<seed> replays a run's kill delays (as far as timing allows). */
	uint64_t seed = t_seed();
	lk = shmp_lock_create(NULL);
	T_CHECK(lk);
	shmp_array_t *arr = t_counters(2);
	ab = shmp_array_ptr(arr);

	/* [mode][0: got 0, 1: -EOWNERDEAD intact, 2: -EOWNERDEAD torn] */
	int out[2][3] = { { 0 } };
	int trials = 0;
	double start = t_now(), worst = 0;
	for (; trials < TRIALS && t_now() - start < MAX_WALL; trials++) {
		int contended = trials & 1;
		int64_t before = ab[0];
		pid_t c = t_spawn(child_loop, NULL);
		T_EQ(t_await(pfd[0], 10.0), 1);
		struct killer k = { .pid = c, .delay_us = t_rnd(MAX_DELAY_US) };
		pthread_t th;
		if (contended) {
			T_EQ(pthread_create(&th, NULL, killer_thread, &k), 0);
		} else {
			killer_thread(&k);
			check_killed(k.status);
		}

		double t0 = t_now();
		int r = shmp_lock_acquire(lk, 2.0);
		double dt = t_now() - t0;
		if (contended) {
			/* Whatever we got, the child dies now; nothing it did
			 * after we took the lock may show. */
			T_EQ(pthread_join(th, NULL), 0);
			check_killed(k.status);
		}
		if (dt > worst)
			worst = dt;
		if (r != 0 && r != -EOWNERDEAD) {
			fprintf(stderr, "trial %d (%s, delay %u us): acquire got %d (%s) after %.3f s\n",
				trials, contended ? "contended" : "after kill", k.delay_us, r,
				shmp_strerror(r), dt);
			return 1;
		}
		int64_t a = ab[0], b = ab[1];
		T_CHECK(a >= before);
		if (r == 0) {
			/* Released normally: the pair is whole. */
			T_EQ(a, b);
			out[contended][0]++;
		} else {
			/* Died inside: at most the second increment is lost. */
			if (a != b && a != b + 1) {
				fprintf(stderr, "trial %d: a = %lld, b = %lld\n", trials,
					(long long)a, (long long)b);
				return 1;
			}
			out[contended][a == b ? 1 : 2]++;
			ab[1] = a; /* repair */
			T_EQ(shmp_lock_consistent(lk), 0);
		}
		T_EQ(shmp_lock_release(lk), 0);
		T_EQ(shmp_lock_is_locked(lk), 0);
	}
	double wall = t_now() - start;

	printf("%d trials in %.1f s (seed %#llx), slowest recovery %.3f s\n", trials, wall,
	       (unsigned long long)seed, worst);
	for (int m = 0; m < 2; m++)
		printf("  %-10s: 0 = %d, -EOWNERDEAD = %d (torn a = b + 1: %d)\n",
		       m ? "contended" : "after kill", out[m][0], out[m][1] + out[m][2], out[m][2]);
	T_CHECK(trials >= 20);
	int od = out[0][1] + out[0][2] + out[1][1] + out[1][2];
	int ok = out[0][0] + out[1][0];
	T_EQ(ok + od, trials);
	/* Half the child's loop is inside the lock: with this many random
	 * kills, both outcomes must have occurred. */
	if (trials >= 50) {
		T_CHECK(od >= 1);
		T_CHECK(ok >= 1);
	}
	shmp_array_destroy(arr);
	shmp_lock_destroy(lk);
	return 0;
}
