/* Lock: acquire/release return codes, non-reentrancy (-EDEADLK), release by a
 * non-owner or of a free lock (-EPERM), locked()/owner() seen from another
 * process (pid and tid, also for a lock held by a non-main thread), timeouts
 * (poll fails at once, 0.2 s fails after about 0.2 s), hand-off to a waiter
 * blocked in another process, and mutual exclusion on a plain counter
 * between processes and between threads and processes. */
#include "t.h"

#include <pthread.h>

static shmp_lock_t *lk;
static pid_t parent_pid, holder_tid;
static int pfd[2]; /* child -> parent */
static double *times; /* shared: [0] release time, [1] acquired time */
static int64_t *counter; /* shared, plain (non-atomic) */

#define ITERS 200000
#define T_ITERS 100000

/* The parent holds lk (from thread holder_tid of parent_pid). */
static int child_sees_held(void *arg)
{
	(void)arg;
	pid_t pid = -1, tid = -1;
	T_EQ(shmp_lock_is_locked(lk), 1);
	T_EQ(shmp_lock_owner(lk, &pid, &tid), 1);
	T_EQ(pid, parent_pid);
	T_EQ(tid, holder_tid);
	T_EQ(shmp_lock_owner(lk, NULL, NULL), 1);
	/* Poll: fails at once, without waiting. */
	T_FAST(shmp_lock_acquire(lk, 0), -ETIMEDOUT);
	/* Not ours to release: refused, and the lock stays held by the parent. */
	T_EQ(shmp_lock_release(lk), -EPERM);
	T_EQ(shmp_lock_is_locked(lk), 1);
	T_EQ(shmp_lock_owner(lk, &pid, &tid), 1);
	T_EQ(pid, parent_pid);
	T_EQ(tid, holder_tid);
	/* Not the owner: consistent() is refused too. */
	T_EQ(shmp_lock_consistent(lk), -EPERM);
	return 0;
}

static int child_sees_free(void *arg)
{
	(void)arg;
	pid_t pid = -1, tid = -1;
	T_EQ(shmp_lock_is_locked(lk), 0);
	T_EQ(shmp_lock_owner(lk, &pid, &tid), 0);
	T_EQ(shmp_lock_acquire(lk, 0), 0);
	T_EQ(shmp_lock_owner(lk, &pid, &tid), 1);
	T_EQ(pid, getpid());
	T_EQ(tid, gettid());
	T_EQ(shmp_lock_release(lk), 0);
	T_EQ(shmp_lock_is_locked(lk), 0);
	return 0;
}

static int child_timed(void *arg)
{
	(void)arg;
	double t0 = t_now();
	T_EQ(shmp_lock_acquire(lk, 0.2), -ETIMEDOUT);
	double dt = t_now() - t0;
	if (dt < 0.19 || dt > 2.0) {
		fprintf(stderr, "0.2 s timeout took %.3f s\n", dt);
		return 1;
	}
	T_EQ(shmp_lock_is_locked(lk), 1);
	return 0;
}

/* Blocks on the held lock; must get it once the parent releases. */
static int child_waiter(void *arg)
{
	(void)arg;
	t_signal(pfd[1]);
	T_EQ(shmp_lock_acquire(lk, 10.0), 0);
	times[1] = t_now();
	t_signal(pfd[1]);
	pid_t pid = -1, tid = -1;
	T_EQ(shmp_lock_owner(lk, &pid, &tid), 1);
	T_EQ(pid, getpid());
	T_EQ(tid, gettid());
	T_EQ(shmp_lock_release(lk), 0);
	return 0;
}

static shmp_event_t *go; /* contenders start together */

static void bump(int n)
{
	T_EQ(shmp_event_wait(go, 20.0), 0);
	for (int i = 0; i < n; i++) {
		T_EQ(shmp_lock_acquire(lk, -1), 0);
		/* Read-modify-write in two steps (volatile: really done each
		 * time): a lost update if two ever overlap. */
		volatile int64_t *c = counter;
		int64_t v = *c;
		*c = v + 1;
		T_EQ(shmp_lock_release(lk), 0);
	}
}

static int child_bump(void *arg)
{
	bump((int)(intptr_t)arg);
	return 0;
}

static void *thread_bump(void *arg)
{
	bump((int)(intptr_t)arg);
	return NULL;
}

static int child_threads_bump(void *arg)
{
	(void)arg;
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		T_EQ(pthread_create(&th[i], NULL, thread_bump, (void *)(intptr_t)T_ITERS), 0);
	for (int i = 0; i < 2; i++)
		T_EQ(pthread_join(th[i], NULL), 0);
	return 0;
}

/* A second thread of the holder's process is not the owner either. */
static void *thread_not_owner(void *arg)
{
	(void)arg;
	T_EQ(shmp_lock_acquire(lk, 0), -ETIMEDOUT);
	T_EQ(shmp_lock_release(lk), -EPERM);
	T_EQ(shmp_lock_is_locked(lk), 1);
	return NULL;
}

/* Holds lk from a non-main thread until told to release. */
static int hold_rel[2], hold_ack[2];
static void *thread_holder(void *arg)
{
	(void)arg;
	T_EQ(shmp_lock_acquire(lk, -1), 0);
	holder_tid = gettid();
	t_signal(hold_ack[1]);
	T_EQ(t_await(hold_rel[0], 20.0), 1);
	T_EQ(shmp_lock_release(lk), 0);
	return NULL;
}

static int child_in_segment(void *arg)
{
	shmp_lock_t *l = arg;
	T_EQ(shmp_lock_is_locked(l), 1);
	T_EQ(shmp_lock_acquire(l, 0), -ETIMEDOUT);
	return 0;
}

int main(void)
{
	t_watchdog(120);
	parent_pid = getpid();
	T_CHECK(pipe(pfd) == 0);

	/* NULL handles. */
	T_EQ(shmp_lock_acquire(NULL, 0), -EINVAL);
	T_EQ(shmp_lock_acquire(NULL, -1), -EINVAL);
	T_EQ(shmp_lock_release(NULL), -EINVAL);
	T_EQ(shmp_lock_consistent(NULL), -EINVAL);
	T_EQ(shmp_lock_is_locked(NULL), -EINVAL);
	T_EQ(shmp_lock_owner(NULL, NULL, NULL), -EINVAL);
	T_EQ(shmp_lock_count(NULL), -EINVAL);
	T_EQ(shmp_lock_is_recursive(NULL), -EINVAL);
	shmp_lock_destroy(NULL);

	/* Options with a bad size are refused. */
	struct shmp_lock_opts bad = { .sz = 1 };
	errno = 0;
	T_CHECK(shmp_lock_create(&bad) == NULL);
	T_EQ(errno, EINVAL);

	lk = shmp_lock_create(NULL);
	T_CHECK(lk);
	shmp_array_t *arr = t_raw_array('d', 2);
	times = shmp_array_ptr(arr);
	shmp_array_t *carr = t_counters(1);
	counter = shmp_array_ptr(carr);

	/* A fresh Lock is free and not recursive. */
	T_EQ(shmp_lock_is_recursive(lk), 0);
	T_EQ(shmp_lock_is_locked(lk), 0);
	T_EQ(shmp_lock_owner(lk, NULL, NULL), 0);
	/* Free lock: release is an error, consistent() is not ours. */
	T_EQ(shmp_lock_release(lk), -EPERM);
	T_EQ(shmp_lock_consistent(lk), -EPERM);

	/* Acquire; not reentrant: the holder trying again fails at once with
	 * -EDEADLK whatever the timeout (a forever wait must not hang). */
	T_EQ(shmp_lock_acquire(lk, -1), 0);
	T_EQ(shmp_lock_is_locked(lk), 1);
	T_EQ(shmp_lock_acquire(lk, 0), -EDEADLK);
	double t0 = t_now();
	T_EQ(shmp_lock_acquire(lk, 1.0), -EDEADLK);
	T_EQ(shmp_lock_acquire(lk, -1), -EDEADLK);
	T_CHECK(t_now() - t0 < 0.5);
	T_EQ(shmp_lock_is_locked(lk), 1);
	/* Owned normally: consistent() has nothing to mark. */
	T_EQ(shmp_lock_consistent(lk), -EINVAL);
	pid_t pid = -1, tid = -1;
	T_EQ(shmp_lock_owner(lk, &pid, &tid), 1);
	T_EQ(pid, getpid());
	T_EQ(tid, gettid());

	/* Another thread of this process: poll fails, release refused. */
	pthread_t th;
	T_EQ(pthread_create(&th, NULL, thread_not_owner, NULL), 0);
	T_EQ(pthread_join(th, NULL), 0);

	/* Another process sees it held by us; its poll and release fail. */
	holder_tid = gettid();
	t_wait_ok(t_spawn(child_sees_held, NULL), 10);
	T_EQ(shmp_lock_is_locked(lk), 1);
	T_EQ(shmp_lock_owner(lk, &pid, &tid), 1);
	T_EQ(pid, getpid());
	T_EQ(tid, gettid());

	/* A timed acquire of the held lock fails after about its timeout. */
	t_wait_ok(t_spawn(child_timed, NULL), 10);

	/* Release, then release again: the second is an error. */
	T_EQ(shmp_lock_release(lk), 0);
	T_EQ(shmp_lock_release(lk), -EPERM);
	T_EQ(shmp_lock_is_locked(lk), 0);
	T_EQ(shmp_lock_owner(lk, &pid, &tid), 0);
	t_wait_ok(t_spawn(child_sees_free, NULL), 10);
	/* Poll of a free lock succeeds. */
	T_EQ(shmp_lock_acquire(lk, 0), 0);
	T_EQ(shmp_lock_release(lk), 0);

	/* Held by a non-main thread: the child sees our pid and that
	 * thread's tid (which differs from the pid). */
	T_CHECK(pipe(hold_rel) == 0 && pipe(hold_ack) == 0);
	T_EQ(pthread_create(&th, NULL, thread_holder, NULL), 0);
	T_EQ(t_await(hold_ack[0], 10.0), 1);
	T_CHECK(holder_tid != getpid());
	t_wait_ok(t_spawn(child_sees_held, NULL), 10);
	/* The main thread is not the owner here. */
	T_EQ(shmp_lock_acquire(lk, 0), -ETIMEDOUT);
	T_EQ(shmp_lock_release(lk), -EPERM);
	t_signal(hold_rel[1]);
	T_EQ(pthread_join(th, NULL), 0);
	T_EQ(shmp_lock_is_locked(lk), 0);

	/* Hand-off: a waiter blocked in another process gets the lock once
	 * we release, not before. */
	T_EQ(shmp_lock_acquire(lk, -1), 0);
	pid_t w = t_spawn(child_waiter, NULL);
	T_EQ(t_await(pfd[0], 10.0), 1);
	/* Give it time to go to sleep in acquire; it must not get through
	 * while we hold the lock (correct whether or not it sleeps yet). */
	T_EQ(t_await(pfd[0], 0.2), 0);
	times[0] = t_now();
	T_EQ(shmp_lock_release(lk), 0);
	T_EQ(t_await(pfd[0], 5.0), 1);
	t_wait_ok(w, 10);
	T_CHECK(times[1] >= times[0]);
	if (times[1] - times[0] > 1.0) {
		fprintf(stderr, "waiter got the lock %.3f s after release\n", times[1] - times[0]);
		return 1;
	}
	T_EQ(shmp_lock_is_locked(lk), 0);

	/* Mutual exclusion: 2 processes x ITERS on a plain counter. */
	go = shmp_event_create(NULL);
	T_CHECK(go);
	*counter = 0;
	pid_t a = t_spawn(child_bump, (void *)(intptr_t)ITERS);
	pid_t b = t_spawn(child_bump, (void *)(intptr_t)ITERS);
	T_EQ(shmp_event_set(go), 0);
	t_wait_ok(a, 60);
	t_wait_ok(b, 60);
	T_EQ(*counter, 2 * ITERS);
	T_EQ(shmp_lock_is_locked(lk), 0);

	/* Threads too: 2 threads in one process and 1 other process. */
	T_EQ(shmp_event_clear(go), 0);
	*counter = 0;
	a = t_spawn(child_threads_bump, NULL);
	b = t_spawn(child_bump, (void *)(intptr_t)T_ITERS);
	T_EQ(shmp_event_set(go), 0);
	t_wait_ok(a, 60);
	t_wait_ok(b, 60);
	T_EQ(*counter, 3 * T_ITERS);
	T_EQ(shmp_lock_is_locked(lk), 0);

	/* A lock placed in an explicit named segment works the same. */
	shmp_segment_t *seg = shmp_segment_create(t_segname("lock"), 1 << 20, NULL);
	T_CHECK(seg);
	shmp_lock_t *sl = shmp_lock_create(&SHMP_OPTS(shmp_lock_opts, .segment = seg));
	T_CHECK(sl);
	T_EQ(shmp_lock_acquire(sl, 0), 0);
	int st = t_wait(t_spawn(child_in_segment, sl), 10);
	T_EQ(shmp_lock_release(sl), 0);
	shmp_lock_destroy(sl);
	shmp_segment_destroy(seg);
	T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);

	shmp_event_destroy(go);
	shmp_array_destroy(carr);
	shmp_array_destroy(arr);
	shmp_lock_destroy(lk);
	return 0;
}
