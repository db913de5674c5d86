/* shmp — process-shared synchronization on futexes in shared memory. */
#ifndef SHMP_SYNC_H
#define SHMP_SYNC_H

#include "segment.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Every object here lives in a segment (NULL: the default segment) and works
 * between all processes mapping it. Handles are process-local: a child forked
 * after creation uses the parent's handle as is. Uncontended operations make
 * no system call; waits spin briefly (bounded) and then sleep on a futex.
 *
 * What a participant's death does:
 * - Lock/RLock: the holder dying (any signal, exit, its thread ending) is
 *   found by the next acquirer, and exactly one acquirer gets -EOWNERDEAD
 *   and owns the lock. It calls shmp_lock_consistent() after repairing the
 *   data; if it releases without that, the lock becomes unusable: every
 *   later acquire gets -ENOTRECOVERABLE. As with glibc's robust mutexes:
 *   . a thread that ends holding locks (returns from its start routine,
 *     pthread_exit, cancellation) marks them owner-dead as it ends, before
 *     pthread_join() returns: the next acquire, a zero-timeout one included,
 *     gets -EOWNERDEAD at once, and a waiter asleep is woken at once. Each
 *     thread tracks the first 16 locks it holds at once; a lock past those,
 *     or taken by a thread-specific-data destructor after shmp's own ran,
 *     is found as for a process below. Other keys' destructors run before
 *     shmp's marks, so one that releases a lock at thread end releases it
 *     normally.
 *   . a process that dies holding a lock (a signal, exit()) marks nothing:
 *     acquirers ask whether the owner's thread id still exists. Once the
 *     dead process has been reaped (waitpid() returned), the next acquire,
 *     a zero-timeout one included, gets -EOWNERDEAD at once; before that
 *     (dying, or a zombie) a zero-timeout acquire may still get -ETIMEDOUT,
 *     and waiters asleep find the death within 50 ms.
 *   Death is told by the owner's thread id, so all users must share a pid
 *   namespace; if the dead owner's id were reused by a new thread before
 *   anyone looked, recovery would wait for that thread; a process that
 *   calls exec() keeps its id and its locks.
 * - Semaphore: a permit held by a process that dies is not given back (as
 *   with POSIX semaphores); a waiter dying changes nothing for the others.
 * - Condition: a waiter dying while it waits is harmless. One that dies
 *   after a notify picked it, before its wait returned (killed while it
 *   waits for the lock, or while stopped), would take the wake-up with it:
 *   instead the wake-up passes to the oldest live waiter that was already
 *   waiting at the notify, within a few milliseconds (a live waiter watches
 *   picked waiters in 2-8 ms slices while any are outstanding; if that
 *   watcher dies too, the others look every 0.5 s). A waiter that began
 *   waiting after the notify is not owed it. The lock follows the Lock
 *   rules above.
 * - Event: a waiter dying is harmless.
 * - Barrier: a party that dies while others wait breaks the barrier: the
 *   others get -SHMP_EBROKEN within ~50 ms instead of hanging. That covers
 *   a party that has arrived, and a party of the last completed round that
 *   has not arrived yet (it will never come). A barrier thus remembers the
 *   threads of its last round: to hand it to new processes after the old
 *   ones exit, reset() it first.
 */

/* ---- Lock and RLock --------------------------------------------------- */
typedef struct shmp_lock shmp_lock_t;

struct shmp_lock_opts {
	size_t sz;
	shmp_segment_t *segment; /* NULL: default segment */
};

/* public */
/* A Lock is not reentrant: the holder acquiring again gets -EDEADLK at once.
 * NULL with errno on failure. */
SHMP_API shmp_lock_t *shmp_lock_create(const struct shmp_lock_opts *opts);
/* An RLock: its owner may acquire again; it is free after as many releases. */
SHMP_API shmp_lock_t *shmp_rlock_create(const struct shmp_lock_opts *opts);
/* Free the lock's shared memory and the handle. Accepts NULL. Only call when
 * no process uses the lock any more. */
SHMP_API void shmp_lock_destroy(shmp_lock_t *l);
/* Acquire. timeout as in common.h. Returns 0; -ETIMEDOUT; -EOWNERDEAD (you
 * own it, the previous owner died: repair, then shmp_lock_consistent());
 * -ENOTRECOVERABLE; -EDEADLK (Lock already held by this thread). */
SHMP_API int shmp_lock_acquire(shmp_lock_t *l, double timeout);
/* Release. -EPERM if the calling thread does not hold it. */
SHMP_API int shmp_lock_release(shmp_lock_t *l);
/* After -EOWNERDEAD: mark the protected state repaired. -EPERM if the caller
 * does not own the lock, -EINVAL if it is not in the owner-died state. */
SHMP_API int shmp_lock_consistent(shmp_lock_t *l);
/* 1 if held by anyone, 0 if free, -ENOTRECOVERABLE. */
SHMP_API int shmp_lock_is_locked(const shmp_lock_t *l);
/* Current owner: 1 and *pid, *tid set (either may be NULL) if held, 0 if
 * free, -ENOTRECOVERABLE, -EINVAL (l NULL). The pid is the one the owner
 * stored when it acquired, so it outlives the owner thread; like everything
 * read from shared memory, it is for display (whoever can write the
 * segment can write any number there). An owner that died still counts as
 * the owner until someone acquires. */
SHMP_API int shmp_lock_owner(const shmp_lock_t *l, pid_t *pid, pid_t *tid);
/* RLock recursion depth held by the calling thread (0 if not the owner). */
SHMP_API int shmp_lock_count(const shmp_lock_t *l);
/* 1 for an RLock, 0 for a Lock. */
SHMP_API int shmp_lock_is_recursive(const shmp_lock_t *l);

/* ---- Semaphore and BoundedSemaphore ------------------------------------ */
typedef struct shmp_sem shmp_sem_t;

struct shmp_sem_opts {
	size_t sz;
	shmp_segment_t *segment;
};

#define SHMP_SEM_VALUE_MAX 0x7fffffffu

/* NULL with errno (EINVAL if value > SHMP_SEM_VALUE_MAX). */
SHMP_API shmp_sem_t *shmp_sem_create(unsigned value, const struct shmp_sem_opts *opts);
/* A bounded semaphore: releasing above the initial value is -EOVERFLOW. */
SHMP_API shmp_sem_t *shmp_bounded_sem_create(unsigned value, const struct shmp_sem_opts *opts);
SHMP_API void shmp_sem_destroy(shmp_sem_t *s);
/* 0 or -ETIMEDOUT. */
SHMP_API int shmp_sem_acquire(shmp_sem_t *s, double timeout);
/* 0, -EOVERFLOW (bounded, or past SHMP_SEM_VALUE_MAX). */
SHMP_API int shmp_sem_release(shmp_sem_t *s);
/* Current value (>= 0). */
SHMP_API int shmp_sem_value(const shmp_sem_t *s);

/* ---- Condition --------------------------------------------------------- */
typedef struct shmp_cond shmp_cond_t;

struct shmp_cond_opts {
	size_t sz;
	shmp_segment_t *segment; /* NULL: the lock's segment, or the default one */
	shmp_lock_t *lock;       /* Lock or RLock in the same segment; NULL: a new RLock */
	unsigned max_waiters;    /* waiters at once; 0 means 128 */
};

#define SHMP_COND_WAITERS_MAX 65536u

/* NULL with errno; EXDEV if the lock lives in another segment. */
SHMP_API shmp_cond_t *shmp_cond_create(const struct shmp_cond_opts *opts);
/* Frees the condition, and its lock if the condition created it. */
SHMP_API void shmp_cond_destroy(shmp_cond_t *c);
/* The lock the condition is bound to. */
SHMP_API shmp_lock_t *shmp_cond_lock(shmp_cond_t *c);
/* Caller holds the lock. Releases it (all RLock levels), sleeps until
 * notified, re-acquires it. 0 if notified, -ETIMEDOUT (lock re-acquired
 * either way), -EPERM if not the owner, -EOWNERDEAD from the re-acquire,
 * -EAGAIN if max_waiters are already waiting. Waiters are woken in the
 * order they began to wait. No spurious wake-ups are returned. */
SHMP_API int shmp_cond_wait(shmp_cond_t *c, double timeout);
/* Wait until pred(arg) is nonzero, checking it under the lock. 0 when it is,
 * -ETIMEDOUT (pred still 0), or the errors of shmp_cond_wait. */
SHMP_API int shmp_cond_wait_for(shmp_cond_t *c, int (*pred)(void *arg), void *arg,
				double timeout);
/* Caller holds the lock. Wake up to n waiters (a notify with no waiters is
 * lost). Returns how many were woken, or -EPERM. */
SHMP_API int shmp_cond_notify(shmp_cond_t *c, unsigned n);
SHMP_API int shmp_cond_notify_all(shmp_cond_t *c);

/* ---- Event ------------------------------------------------------------- */
typedef struct shmp_event shmp_event_t;

struct shmp_event_opts {
	size_t sz;
	shmp_segment_t *segment;
};

SHMP_API shmp_event_t *shmp_event_create(const struct shmp_event_opts *opts);
SHMP_API void shmp_event_destroy(shmp_event_t *e);
/* Set the flag and wake every waiter in every process. */
SHMP_API int shmp_event_set(shmp_event_t *e);
SHMP_API int shmp_event_clear(shmp_event_t *e);
/* 1 if set, 0 if not. */
SHMP_API int shmp_event_is_set(const shmp_event_t *e);
/* 0 once the flag is set, or a set() happened while waiting (even if a
 * clear() followed it); -ETIMEDOUT if neither by then. */
SHMP_API int shmp_event_wait(shmp_event_t *e, double timeout);

/* ---- Barrier ----------------------------------------------------------- */
typedef struct shmp_barrier shmp_barrier_t;

struct shmp_barrier_opts {
	size_t sz;
	shmp_segment_t *segment;
	/* Run once per round by the last party to arrive, before the others are
	 * released. Nonzero return breaks the barrier. Process-local: each
	 * process uses the action of its own handle. */
	int (*action)(void *arg);
	void *action_arg;
	double timeout; /* default wait timeout; 0 in opts means none */
};

#define SHMP_BARRIER_PARTIES_MAX 65536u

/* NULL with errno (EINVAL for 0 or too many parties). */
SHMP_API shmp_barrier_t *shmp_barrier_create(unsigned parties, const struct shmp_barrier_opts *opts);
SHMP_API void shmp_barrier_destroy(shmp_barrier_t *b);
/* Wait for all parties. Returns this party's arrival index 0..parties-1
 * (distinct per round); -SHMP_EBROKEN if the barrier is or becomes broken;
 * -ETIMEDOUT for the party whose timeout expired (it breaks the barrier for
 * the others). timeout < 0 uses the default timeout from opts, if any. */
SHMP_API int shmp_barrier_wait(shmp_barrier_t *b, double timeout);
/* Break the barrier: current and future waiters get -SHMP_EBROKEN until reset. */
SHMP_API int shmp_barrier_abort(shmp_barrier_t *b);
/* Back to empty and usable; parties waiting now get -SHMP_EBROKEN. Forgets
 * the parties of the last round (see the death rules above). */
SHMP_API int shmp_barrier_reset(shmp_barrier_t *b);
SHMP_API int shmp_barrier_parties(const shmp_barrier_t *b);
/* Parties currently waiting. */
SHMP_API int shmp_barrier_n_waiting(const shmp_barrier_t *b);
/* 1 if broken. */
SHMP_API int shmp_barrier_is_broken(const shmp_barrier_t *b);

#ifdef __cplusplus
}
#endif
#endif
