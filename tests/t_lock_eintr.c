/* Lock waits are not cut short by signals. A waiter whose SIGUSR1 handler is
 * installed without SA_RESTART is sent SIGUSR1 every 20 ms while it waits:
 * - a 0.5 s acquire of a held lock still returns -ETIMEDOUT after about
 *   0.5 s, not early with -EINTR;
 * - a blocking acquire, and a 5 s one, return 0 once the holder releases
 *   after 300 ms;
 * - a blocking acquire whose holder is killed after 300 ms returns
 *   -EOWNERDEAD soon after (the liveness check must not be starved by the
 *   interruptions). */
#include "t.h"

static shmp_lock_t *lk;
static int pfd[2];
static double *times; /* shared: [0] parent's action, [1] waiter done */
static volatile sig_atomic_t nsig;

static void on_usr1(int sig)
{
	(void)sig;
	nsig++;
}

/* Interruptible: no SA_RESTART, so a blocking system call in this process
 * returns EINTR when the signal arrives. */
static void install_handler(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;
	T_CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
}

/* What a waiter does: acquire with `timeout`, expect `expect` within
 * [min, max] seconds. */
struct wait_case {
	double timeout;
	int expect;
	double min, max; /* bounds on the time the acquire takes */
};

static int child_waiter(void *arg)
{
	const struct wait_case *wc = arg;
	install_handler();
	t_signal(pfd[1]);
	nsig = 0;
	double t0 = t_now();
	int r = shmp_lock_acquire(lk, wc->timeout);
	double t1 = t_now();
	times[1] = t1;
	int n = nsig;
	if (r != wc->expect || t1 - t0 < wc->min || t1 - t0 > wc->max) {
		fprintf(stderr, "acquire(%.1f) got %d (%s) after %.3f s, %d signals;\n",
			wc->timeout, r, shmp_strerror(r), t1 - t0, n);
		fprintf(stderr, "expected %d (%s) in [%.2f, %.2f] s\n", wc->expect,
			shmp_strerror(wc->expect), wc->min, wc->max);
		return 1;
	}
	/* The waits really were interrupted, many times. */
	if (n < 5) {
		fprintf(stderr, "only %d signals arrived during the wait\n", n);
		return 1;
	}
	if (r == -EOWNERDEAD)
		T_EQ(shmp_lock_consistent(lk), 0);
	if (r == 0 || r == -EOWNERDEAD)
		T_EQ(shmp_lock_release(lk), 0);
	return 0;
}

static int child_hold(void *arg)
{
	(void)arg;
	if (shmp_lock_acquire(lk, 5.0) != 0)
		return 2;
	t_signal(pfd[1]);
	for (;;)
		pause();
}

static void parent_release(pid_t unused)
{
	(void)unused;
	times[0] = t_now();
	T_EQ(shmp_lock_release(lk), 0);
}

static void parent_kill_holder(pid_t holder)
{
	times[0] = t_now();
	T_CHECK(kill(holder, SIGKILL) == 0);
	int st = t_wait(holder, 10); /* reaped: gone for good */
	T_CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
}

/* Send SIGUSR1 to the waiter every 20 ms until it exits; `act(arg)` runs
 * once, 300 ms in. Fails if the waiter is still there after `limit` s. */
static void pester(pid_t w, void (*act)(pid_t), pid_t arg, double limit)
{
	double start = t_now();
	int done = act == NULL;
	for (;;) {
		int st;
		pid_t r = waitpid(w, &st, WNOHANG);
		if (r == w) {
			T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
			break;
		}
		T_EQ(r, 0);
		if (t_now() - start > limit) {
			kill(w, SIGKILL);
			waitpid(w, &st, 0);
			fprintf(stderr, "waiter still waiting after %.1f s\n", limit);
			exit(1);
		}
		kill(w, SIGUSR1);
		t_sleep_ms(20);
		if (!done && t_now() - start >= 0.3) {
			act(arg);
			done = 1;
		}
	}
	T_CHECK(done);
}

int main(void)
{
	t_watchdog(60);
	T_CHECK(pipe(pfd) == 0);
	lk = shmp_lock_create(NULL);
	T_CHECK(lk);
	shmp_array_t *arr = t_raw_array('d', 2);
	times = shmp_array_ptr(arr);

	/* A timed wait on a held lock: -ETIMEDOUT after about 0.5 s. */
	T_EQ(shmp_lock_acquire(lk, 0), 0);
	struct wait_case tw = { 0.5, -ETIMEDOUT, 0.49, 3.0 };
	pid_t w = t_spawn(child_waiter, &tw);
	T_EQ(t_await(pfd[0], 10.0), 1);
	pester(w, NULL, 0, 10);
	T_EQ(shmp_lock_is_locked(lk), 1);

	/* Blocking, then timed (5 s): 0 once we release after 300 ms. */
	const double tmo[2] = { -1, 5.0 };
	for (int i = 0; i < 2; i++) {
		if (i)
			T_EQ(shmp_lock_acquire(lk, 0), 0);
		struct wait_case bw = { tmo[i], 0, 0.25, 4.0 };
		w = t_spawn(child_waiter, &bw);
		T_EQ(t_await(pfd[0], 10.0), 1);
		pester(w, parent_release, 0, 10);
		T_CHECK(times[1] >= times[0]);
		T_EQ(shmp_lock_is_locked(lk), 0);
	}

	/* Blocking, and the holder is killed after 300 ms: -EOWNERDEAD within
	 * a few seconds although the wait is interrupted every 20 ms. */
	pid_t h = t_spawn(child_hold, NULL);
	T_EQ(t_await(pfd[0], 10.0), 1);
	struct wait_case dw = { -1, -EOWNERDEAD, 0.25, 3.3 };
	w = t_spawn(child_waiter, &dw);
	T_EQ(t_await(pfd[0], 10.0), 1);
	pester(w, parent_kill_holder, h, 6);
	T_CHECK(times[1] >= times[0]);
	T_EQ(shmp_lock_is_locked(lk), 0);

	shmp_array_destroy(arr);
	shmp_lock_destroy(lk);
	return 0;
}
