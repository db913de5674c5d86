/* Robust Lock/RLock: a holder that dies is detected by the next acquirer.
 * SIGKILL before, inside and after the critical section; a blocking, a timed
 * and a polling next acquirer; two waiters already asleep when the holder
 * dies (exactly one gets -EOWNERDEAD, the other then 0); release without
 * shmp_lock_consistent() makes the lock not recoverable for every later
 * acquirer, including one already asleep; death by segfault, by normal exit
 * and by a thread exiting; an RLock held at depth 3 (the new owner has count
 * 1); the new owner dying again before repairing; consistent() error codes;
 * and last a holder that is dead but not yet reaped (a zombie). */
#include "t.h"

#include <pthread.h>
#include <sys/resource.h>

static int pfd[2]; /* child -> parent */
static int cfd[2]; /* parent -> child */
static shmp_array_t *stats; /* shared counters, atomics only: see ST_* */
static double *times;  /* shared: when each waiter got the lock */
enum { ST_STARTED, ST_OK, ST_OWNERDEAD, ST_OTHER, ST_N };

static void pause_forever(void)
{
	for (;;)
		pause();
}

/* Acquire `depth` times, tell the parent, wait to be killed. */
static int child_hold(void *arg)
{
	shmp_lock_t *l = arg;
	int depth = shmp_lock_is_recursive(l) ? 3 : 1;
	for (int i = 0; i < depth; i++)
		if (shmp_lock_acquire(l, 5.0) != 0)
			return 2;
	if (shmp_lock_count(l) != depth)
		return 3;
	t_signal(pfd[1]);
	pause_forever();
	return 0;
}

/* (a) Killed before it ever acquires. */
static int child_before(void *arg)
{
	(void)arg;
	t_signal(pfd[1]);
	pause_forever();
	return 0;
}

/* (c) Acquires and releases, then is killed. */
static int child_after(void *arg)
{
	shmp_lock_t *l = arg;
	if (shmp_lock_acquire(l, 5.0) != 0 || shmp_lock_release(l) != 0)
		return 2;
	t_signal(pfd[1]);
	pause_forever();
	return 0;
}

/* (f) Dies of a segfault while holding. No core file; the default action
 * even under a sanitizer that would catch SIGSEGV. */
static int child_segv(void *arg)
{
	shmp_lock_t *l = arg;
	struct rlimit no_core = { 0, 0 };
	setrlimit(RLIMIT_CORE, &no_core);
	signal(SIGSEGV, SIG_DFL);
	if (shmp_lock_acquire(l, 5.0) != 0)
		return 2;
	raise(SIGSEGV);
	return 3;
}

/* Exits normally while holding. */
static int child_exit_holding(void *arg)
{
	shmp_lock_t *l = arg;
	return shmp_lock_acquire(l, 5.0) == 0 ? 0 : 2;
}

/* (d) Waits on the held lock; records what it got. */
static int child_waiter(void *arg)
{
	shmp_lock_t *l = arg;
	int64_t me;
	T_EQ(shmp_array_add(stats, ST_STARTED, 1, &me), 0);
	int r = shmp_lock_acquire(l, 10.0);
	times[me] = t_now();
	if (r == -EOWNERDEAD) {
		T_EQ(shmp_array_add(stats, ST_OWNERDEAD, 1, NULL), 0);
		/* The repair would go here. */
		T_EQ(shmp_lock_consistent(l), 0);
	} else if (r == 0) {
		T_EQ(shmp_array_add(stats, ST_OK, 1, NULL), 0);
	} else {
		T_EQ(shmp_array_add(stats, ST_OTHER, 1, NULL), 0);
		fprintf(stderr, "waiter got %d (%s)\n", r, shmp_strerror(r));
		return 1;
	}
	/* Hold it a moment so that the other waiter really waits for us. */
	t_sleep_ms(20);
	T_EQ(shmp_lock_release(l), 0);
	return 0;
}

/* (e) Everything fails at once on a not recoverable lock. */
static int child_notrec(void *arg)
{
	shmp_lock_t *l = arg;
	double t0 = t_now();
	T_EQ(shmp_lock_acquire(l, 0), -ENOTRECOVERABLE);
	T_EQ(shmp_lock_acquire(l, 1.0), -ENOTRECOVERABLE);
	T_EQ(shmp_lock_acquire(l, -1), -ENOTRECOVERABLE);
	T_CHECK(t_now() - t0 < 0.5);
	T_EQ(shmp_lock_is_locked(l), -ENOTRECOVERABLE);
	T_EQ(shmp_lock_release(l), -EPERM);
	T_EQ(shmp_lock_consistent(l), -EPERM);
	return 0;
}

/* (e) Asleep in a forever acquire when the lock becomes not recoverable. */
static int child_waiter_notrec(void *arg)
{
	shmp_lock_t *l = arg;
	t_signal(pfd[1]);
	T_EQ(shmp_lock_acquire(l, -1), -ENOTRECOVERABLE);
	return 0;
}

/* (g) A thread that exits holding the lock. */
static void *thread_acquire_exit(void *arg)
{
	return (void *)(intptr_t)shmp_lock_acquire(arg, 5.0);
}

/* (g) A process whose thread exits holding the lock; the process lives on
 * until the parent is done. */
static int child_thread_exit(void *arg)
{
	pthread_t th;
	void *ret;
	T_EQ(pthread_create(&th, NULL, thread_acquire_exit, arg), 0);
	T_EQ(pthread_join(th, &ret), 0);
	T_EQ((intptr_t)ret, 0);
	t_signal(pfd[1]);
	T_EQ(t_await(cfd[0], 20.0), 1);
	return 0;
}

/* Not the owner of a lock in the owner-died state. */
static int child_consistent_eperm(void *arg)
{
	T_EQ(shmp_lock_consistent(arg), -EPERM);
	return 0;
}

static void *thread_consistent_eperm(void *arg)
{
	T_EQ(shmp_lock_consistent(arg), -EPERM);
	T_EQ(shmp_lock_release(arg), -EPERM);
	return NULL;
}

/* Takes over from a dead owner and dies too, without repairing. */
static int child_takeover_die(void *arg)
{
	shmp_lock_t *l = arg;
	if (shmp_lock_acquire(l, 5.0) != -EOWNERDEAD)
		return 2;
	t_signal(pfd[1]);
	pause_forever();
	return 0;
}

/* The next acquire after the holder died: -EOWNERDEAD soon, and we own it. */
static void expect_ownerdead(shmp_lock_t *l, double timeout)
{
	double t0 = t_now();
	T_EQ(shmp_lock_acquire(l, timeout), -EOWNERDEAD);
	T_CHECK(t_now() - t0 < 3.0);
	pid_t pid = -1, tid = -1;
	T_EQ(shmp_lock_is_locked(l), 1);
	T_EQ(shmp_lock_owner(l, &pid, &tid), 1);
	T_EQ(pid, getpid());
	T_EQ(tid, gettid());
}

/* Mark consistent, release, and check the lock is back to normal. */
static void repair(shmp_lock_t *l)
{
	T_EQ(shmp_lock_consistent(l), 0);
	T_EQ(shmp_lock_consistent(l), -EINVAL); /* done already */
	T_EQ(shmp_lock_release(l), 0);
	T_EQ(shmp_lock_is_locked(l), 0);
	T_EQ(shmp_lock_acquire(l, 0), 0);
	T_EQ(shmp_lock_release(l), 0);
}

/* A child holds l (paused) once this returns. */
static pid_t start_holder(shmp_lock_t *l)
{
	pid_t c = t_spawn(child_hold, l);
	T_EQ(t_await(pfd[0], 10.0), 1);
	pid_t pid = -1;
	T_EQ(shmp_lock_owner(l, &pid, NULL), 1);
	T_EQ(pid, c);
	return c;
}

int main(void)
{
	t_watchdog(120);
	T_CHECK(pipe(pfd) == 0 && pipe(cfd) == 0);
	shmp_lock_t *l = shmp_lock_create(NULL);
	T_CHECK(l);
	shmp_array_t *st = t_counters(ST_N);
	stats = st;
	shmp_array_t *ta = t_raw_array('d', 2);
	times = shmp_array_ptr(ta);

	/* consistent() on a free lock: not the owner. */
	T_EQ(shmp_lock_consistent(l), -EPERM);

	/* (a) Killed before acquiring: the lock is unaffected. */
	pid_t c = t_spawn(child_before, l);
	T_EQ(t_await(pfd[0], 10.0), 1);
	t_kill_reap(c, 10);
	T_EQ(shmp_lock_is_locked(l), 0);
	T_EQ(shmp_lock_acquire(l, 0), 0);
	T_EQ(shmp_lock_release(l), 0);

	/* (b) Killed inside: a timed next acquire gets -EOWNERDEAD and owns
	 * it; consistent() from another process or thread is refused; the
	 * owner repairs it and it works normally again. */
	c = start_holder(l);
	T_EQ(shmp_lock_consistent(l), -EPERM); /* held by another process */
	t_kill_reap(c, 10);
	expect_ownerdead(l, 5.0);
	t_wait_ok(t_spawn(child_consistent_eperm, l), 10);
	pthread_t th;
	T_EQ(pthread_create(&th, NULL, thread_consistent_eperm, l), 0);
	T_EQ(pthread_join(th, NULL), 0);
	repair(l);

	/* (b) again with a forever acquire and with a poll as the next
	 * acquirer. */
	c = start_holder(l);
	t_kill_reap(c, 10);
	expect_ownerdead(l, -1);
	repair(l);
	c = start_holder(l);
	t_kill_reap(c, 10);
	expect_ownerdead(l, 0);
	repair(l);

	/* (c) Killed after releasing: unaffected. */
	c = t_spawn(child_after, l);
	T_EQ(t_await(pfd[0], 10.0), 1);
	t_kill_reap(c, 10);
	T_EQ(shmp_lock_is_locked(l), 0);
	T_EQ(shmp_lock_acquire(l, 0), 0);
	T_EQ(shmp_lock_release(l), 0);

	/* (d) Two waiters asleep when the holder dies: exactly one gets
	 * -EOWNERDEAD, the other then 0, both soon. */
	c = start_holder(l);
	pid_t w1 = t_spawn(child_waiter, l), w2 = t_spawn(child_waiter, l);
	double until = t_now() + 10;
	int64_t n = 0;
	while (shmp_array_load(st, ST_STARTED, &n) == 0 && n < 2 && t_now() < until)
		t_sleep_ms(1);
	T_EQ(n, 2);
	/* 200 ms for both to be asleep in acquire (if they are not yet, they
	 * find the holder dead as next acquirers: still correct). */
	t_sleep_ms(200);
	T_EQ(shmp_array_load(st, ST_OK, &n), 0);
	T_EQ(n, 0);
	T_EQ(shmp_array_load(st, ST_OWNERDEAD, &n), 0);
	T_EQ(n, 0);
	double tkill = t_now();
	t_kill_reap(c, 10);
	t_wait_ok(w1, 10);
	t_wait_ok(w2, 10);
	T_EQ(shmp_array_load(st, ST_OWNERDEAD, &n), 0);
	T_EQ(n, 1);
	T_EQ(shmp_array_load(st, ST_OK, &n), 0);
	T_EQ(n, 1);
	T_EQ(shmp_array_load(st, ST_OTHER, &n), 0);
	T_EQ(n, 0);
	for (int i = 0; i < 2; i++) {
		if (times[i] - tkill > 3.0) {
			fprintf(stderr, "waiter %d got the lock %.3f s after the kill\n", i,
				times[i] - tkill);
			return 1;
		}
	}
	T_EQ(shmp_lock_is_locked(l), 0);

	/* (f) Segfault while holding. */
	c = t_spawn(child_segv, l);
	int ws = t_wait(c, 10);
	T_CHECK(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGSEGV);
	expect_ownerdead(l, 5.0);
	repair(l);

	/* Normal exit while holding. */
	t_wait_ok(t_spawn(child_exit_holding, l), 10);
	expect_ownerdead(l, 5.0);
	repair(l);

	/* (g) A thread of this process exits holding the lock. */
	void *ret;
	T_EQ(pthread_create(&th, NULL, thread_acquire_exit, l), 0);
	T_EQ(pthread_join(th, &ret), 0);
	T_EQ((intptr_t)ret, 0);
	expect_ownerdead(l, 5.0);
	repair(l);

	/* (g) A thread of another, still living, process exits holding it. */
	c = t_spawn(child_thread_exit, l);
	T_EQ(t_await(pfd[0], 10.0), 1);
	expect_ownerdead(l, 5.0);
	repair(l);
	t_signal(cfd[1]);
	t_wait_ok(c, 10);

	/* The new owner dies too before repairing: the next one again gets
	 * -EOWNERDEAD. */
	c = start_holder(l);
	t_kill_reap(c, 10);
	c = t_spawn(child_takeover_die, l);
	T_EQ(t_await(pfd[0], 10.0), 1);
	t_kill_reap(c, 10);
	expect_ownerdead(l, 5.0);
	repair(l);

	/* (h) RLock held at depth 3 by a killed process: the next owner has
	 * count 1, and one release frees it. */
	shmp_lock_t *rl = shmp_rlock_create(NULL);
	T_CHECK(rl);
	c = start_holder(rl);
	t_kill_reap(c, 10);
	expect_ownerdead(rl, 5.0);
	T_EQ(shmp_lock_count(rl), 1);
	/* Nesting on top of the taken-over lock works as usual. */
	T_EQ(shmp_lock_acquire(rl, 0), 0);
	T_EQ(shmp_lock_count(rl), 2);
	T_EQ(shmp_lock_release(rl), 0);
	T_EQ(shmp_lock_count(rl), 1);
	repair(rl);
	T_EQ(shmp_lock_count(rl), 0);
	shmp_lock_destroy(rl);

	/* (e) Released without consistent(): not recoverable, for good, for
	 * everyone, including a waiter already asleep. */
	c = start_holder(l);
	t_kill_reap(c, 10);
	expect_ownerdead(l, 5.0);
	pid_t w = t_spawn(child_waiter_notrec, l);
	T_EQ(t_await(pfd[0], 10.0), 1);
	t_sleep_ms(200); /* let it fall asleep; correct either way */
	T_EQ(shmp_lock_release(l), 0);
	t_wait_ok(w, 5);
	T_EQ(shmp_lock_is_locked(l), -ENOTRECOVERABLE);
	double t0 = t_now();
	T_EQ(shmp_lock_acquire(l, 0), -ENOTRECOVERABLE);
	T_EQ(shmp_lock_acquire(l, 1.0), -ENOTRECOVERABLE);
	T_EQ(shmp_lock_acquire(l, -1), -ENOTRECOVERABLE);
	T_CHECK(t_now() - t0 < 0.5);
	T_EQ(shmp_lock_release(l), -EPERM);
	T_EQ(shmp_lock_consistent(l), -EPERM);
	t_wait_ok(t_spawn(child_notrec, l), 10);
	T_EQ(shmp_lock_is_locked(l), -ENOTRECOVERABLE);
	shmp_lock_destroy(l);

	/* The same for an RLock released (from depth 1) without repair. */
	rl = shmp_rlock_create(NULL);
	T_CHECK(rl);
	c = start_holder(rl);
	t_kill_reap(c, 10);
	expect_ownerdead(rl, 5.0);
	T_EQ(shmp_lock_acquire(rl, 0), 0);
	T_EQ(shmp_lock_release(rl), 0); /* back to depth 1: still ours */
	T_EQ(shmp_lock_is_locked(rl), 1);
	T_EQ(shmp_lock_release(rl), 0);
	T_EQ(shmp_lock_is_locked(rl), -ENOTRECOVERABLE);
	t_wait_ok(t_spawn(child_notrec, rl), 10);
	shmp_lock_destroy(rl);

	/* Last, since it is the least forgiving: the holder is dead but not
	 * yet reaped (a zombie, as any child is until its parent waits for
	 * it). It is dead all the same: the next acquirer must get
	 * -EOWNERDEAD, not wait for the reaping. */
	l = shmp_lock_create(NULL);
	T_CHECK(l);
	c = start_holder(l);
	T_CHECK(kill(c, SIGKILL) == 0);
	siginfo_t si;
	memset(&si, 0, sizeof si);
	T_CHECK(waitid(P_PID, (id_t)c, &si, WEXITED | WNOWAIT) == 0);
	T_EQ(si.si_pid, c);
	t0 = t_now();
	int r = shmp_lock_acquire(l, 2.0);
	if (r != -EOWNERDEAD)
		fprintf(stderr, "holder dead but not reaped: acquire got %d (%s) after %.3f s\n",
			r, shmp_strerror(r), t_now() - t0);
	t_kill_reap(c, 10); /* reap it whatever happened */
	T_EQ(r, -EOWNERDEAD);
	repair(l);
	shmp_lock_destroy(l);

	shmp_array_destroy(ta);
	shmp_array_destroy(st);
	return 0;
}
