/* RLock: the owner's nested acquires succeed and count() follows 1, 2, 3;
 * the lock stays held (another process sees it locked with our pid/tid and
 * cannot take it, polled or timed) at every depth until the last release;
 * a waiter blocked in another process gets it only after the last release;
 * one release too many is -EPERM; another thread of the owner's process is
 * not the owner. */
#include "t.h"

#include <pthread.h>

static shmp_lock_t *rl;
static pid_t parent_pid, parent_tid;
static int pfd[2];
static double *times; /* shared: [0] last release, [1] waiter got it */

/* The parent holds rl at some depth. */
static int child_sees_held(void *arg)
{
	(void)arg;
	pid_t pid = -1, tid = -1;
	T_EQ(shmp_lock_is_locked(rl), 1);
	T_EQ(shmp_lock_owner(rl, &pid, &tid), 1);
	T_EQ(pid, parent_pid);
	T_EQ(tid, parent_tid);
	T_EQ(shmp_lock_count(rl), 0); /* not ours */
	T_EQ(shmp_lock_acquire(rl, 0), -ETIMEDOUT);
	double t0 = t_now();
	T_EQ(shmp_lock_acquire(rl, 0.1), -ETIMEDOUT);
	T_CHECK(t_now() - t0 >= 0.09);
	T_EQ(shmp_lock_release(rl), -EPERM);
	T_EQ(shmp_lock_is_locked(rl), 1);
	return 0;
}

static int child_nested(void *arg)
{
	(void)arg;
	pid_t pid = -1, tid = -1;
	T_EQ(shmp_lock_is_locked(rl), 0);
	for (int i = 1; i <= 2; i++) {
		T_EQ(shmp_lock_acquire(rl, 0), 0);
		T_EQ(shmp_lock_count(rl), i);
	}
	T_EQ(shmp_lock_owner(rl, &pid, &tid), 1);
	T_EQ(pid, getpid());
	T_EQ(tid, gettid());
	T_EQ(shmp_lock_release(rl), 0);
	T_EQ(shmp_lock_release(rl), 0);
	T_EQ(shmp_lock_release(rl), -EPERM);
	T_EQ(shmp_lock_is_locked(rl), 0);
	return 0;
}

static int child_waiter(void *arg)
{
	(void)arg;
	t_signal(pfd[1]);
	T_EQ(shmp_lock_acquire(rl, 10.0), 0);
	times[1] = t_now();
	t_signal(pfd[1]);
	T_EQ(shmp_lock_count(rl), 1);
	T_EQ(shmp_lock_release(rl), 0);
	return 0;
}

static void *thread_not_owner(void *arg)
{
	(void)arg;
	T_EQ(shmp_lock_count(rl), 0);
	T_EQ(shmp_lock_acquire(rl, 0), -ETIMEDOUT);
	T_EQ(shmp_lock_release(rl), -EPERM);
	T_EQ(shmp_lock_is_locked(rl), 1);
	return NULL;
}

int main(void)
{
	t_watchdog(60);
	parent_pid = getpid();
	parent_tid = gettid();
	T_CHECK(pipe(pfd) == 0);

	rl = shmp_rlock_create(NULL);
	T_CHECK(rl);
	shmp_array_t *arr = t_raw_array('d', 2);
	times = shmp_array_ptr(arr);

	T_EQ(shmp_lock_is_recursive(rl), 1);
	T_EQ(shmp_lock_is_locked(rl), 0);
	T_EQ(shmp_lock_count(rl), 0);
	T_EQ(shmp_lock_release(rl), -EPERM);

	/* Nested acquires (blocking, polled, timed): the count follows, and
	 * at every depth another process and another thread are shut out. */
	const double tmo[3] = { -1, 0, 1.0 };
	for (int d = 1; d <= 3; d++) {
		T_EQ(shmp_lock_acquire(rl, tmo[d - 1]), 0);
		T_EQ(shmp_lock_count(rl), d);
		T_EQ(shmp_lock_is_locked(rl), 1);
		t_wait_ok(t_spawn(child_sees_held, NULL), 10);
	}
	pthread_t th;
	T_EQ(pthread_create(&th, NULL, thread_not_owner, NULL), 0);
	T_EQ(pthread_join(th, NULL), 0);
	/* Normally owned: nothing to mark consistent. */
	T_EQ(shmp_lock_consistent(rl), -EINVAL);

	/* Release down: still held (seen from another process) until the
	 * last release. */
	for (int d = 2; d >= 1; d--) {
		T_EQ(shmp_lock_release(rl), 0);
		T_EQ(shmp_lock_count(rl), d);
		T_EQ(shmp_lock_is_locked(rl), 1);
		t_wait_ok(t_spawn(child_sees_held, NULL), 10);
	}
	T_EQ(shmp_lock_release(rl), 0);
	T_EQ(shmp_lock_count(rl), 0);
	T_EQ(shmp_lock_is_locked(rl), 0);
	T_EQ(shmp_lock_owner(rl, NULL, NULL), 0);
	/* One release too many. */
	T_EQ(shmp_lock_release(rl), -EPERM);
	T_EQ(shmp_lock_is_locked(rl), 0);

	/* Another process nests on its own once it is free. */
	t_wait_ok(t_spawn(child_nested, NULL), 10);

	/* A waiter blocked in another process gets the lock only after the
	 * last of three releases. */
	for (int d = 1; d <= 3; d++)
		T_EQ(shmp_lock_acquire(rl, -1), 0);
	pid_t w = t_spawn(child_waiter, NULL);
	T_EQ(t_await(pfd[0], 10.0), 1);
	for (int d = 3; d >= 2; d--) {
		/* 100 ms to reach its sleep; it must not get through. */
		T_EQ(t_await(pfd[0], 0.1), 0);
		T_EQ(shmp_lock_release(rl), 0);
		T_EQ(shmp_lock_count(rl), d - 1);
	}
	T_EQ(t_await(pfd[0], 0.1), 0);
	times[0] = t_now();
	T_EQ(shmp_lock_release(rl), 0);
	T_EQ(t_await(pfd[0], 5.0), 1);
	t_wait_ok(w, 10);
	T_CHECK(times[1] >= times[0]);
	T_CHECK(times[1] - times[0] < 1.0);
	T_EQ(shmp_lock_is_locked(rl), 0);
	T_EQ(shmp_lock_count(rl), 0);

	shmp_array_destroy(arr);
	shmp_lock_destroy(rl);
	return 0;
}
