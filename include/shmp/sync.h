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
 * The contract of common.h holds throughout:
 * - Errors: int functions return >= 0 or -code; constructors return NULL
 *   with errno = code. A NULL handle, options with a wrong size or with
 *   bytes set past what this library knows, and a NaN timeout are -EINVAL
 *   (EINVAL); NULL options mean every default.
 * - Timeouts in seconds: negative waits forever, 0 polls once (-ETIMEDOUT at
 *   once unless the call can succeed at once), positive waits up to that
 *   long.
 * - Interrupts: with shmp_set_interruptible(1), every wait here (lock and
 *   semaphore acquire, condition, event and barrier waits, Value/Array
 *   calls waiting for their lock) returns -EINTR once a signal handler has
 *   run while it slept, with SA_RESTART or without; what the call was
 *   doing is undone (no permit or lock taken; a condition wait holds its
 *   lock again; a barrier party leaves, which breaks the round as its
 *   timeout would, since the others cannot pass without it). A signal that
 *   lands in the microseconds a wait is awake between its sleeps is not
 *   seen: the wait goes on. Off (the default), waits go on after a handler.
 * - Lifetime: destroy releases this process's handle; the creating
 *   process's destroy (of the handle create returned) frees the object, and
 *   for a registry object the last handle after shmp_registry_remove();
 *   never a forked child's destroy of an inherited handle. Free an object
 *   only when no process will use it again. Every destroy accepts NULL.
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
 *     one taken by a thread-specific-data destructor after shmp's own ran,
 *     and any held by a thread that ends without running destructors (a
 *     raw SYS_exit) are found as for a process below: by the liveness
 *     check, so a zero-timeout acquire right after pthread_join() may
 *     still see -ETIMEDOUT until the kernel has released the thread.
 *     Other keys' destructors run before shmp's marks, so one that releases
 *     a lock at thread end releases it normally.
 *   . a process that dies holding a lock (a signal, exit()) marks nothing:
 *     acquirers ask whether the owner's thread id still exists (a zombie
 *     counts as dead). Once the dead process is a zombie or has been reaped
 *     (waitpid() returned), the next acquire, a zero-timeout one included,
 *     gets -EOWNERDEAD at once; while the kernel is still tearing it down a
 *     zero-timeout acquire may get -ETIMEDOUT, and waiters asleep find the
 *     death within 50 ms (they look after 2 ms asleep, then every 4, 8...
 *     up to 50 ms).
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
 *   ones exit, reset() it first. Its internal lock is held for a few stores:
 *   if a word forged by whoever can write the segment (or a stopped
 *   process) keeps it held, calls give up with -SHMP_ELOCKED after 2 s.
 */

/* ---- Lock and RLock --------------------------------------------------- */
typedef struct shmp_lock shmp_lock_t;

struct shmp_lock_opts {
	size_t sz;
	shmp_segment_t *segment; /* NULL: default segment */
};

/* public */
/* A Lock is not reentrant: the holder acquiring again gets -EDEADLK at once.
 * NULL with errno on failure: EINVAL (opts), ENOMEM, SHMP_ESEGFULL. */
SHMP_API shmp_lock_t *shmp_lock_create(const struct shmp_lock_opts *opts);
/* An RLock: its owner may acquire again; it is free after as many releases.
 * Errors as shmp_lock_create. */
SHMP_API shmp_lock_t *shmp_rlock_create(const struct shmp_lock_opts *opts);
/* Release this process's handle; the creating process's destroy frees the
 * lock (see Lifetime above). Accepts NULL. */
SHMP_API void shmp_lock_destroy(shmp_lock_t *l);
/* Acquire. timeout as in common.h. Returns 0; -ETIMEDOUT; -EOWNERDEAD (you
 * own it, the previous owner died: repair, then shmp_lock_consistent());
 * -ENOTRECOVERABLE; -EDEADLK (Lock already held by this thread); -EAGAIN
 * (RLock depth at INT32_MAX); -EINTR (interruptible, see above); -EINVAL
 * (l NULL, timeout NaN). */
SHMP_API int shmp_lock_acquire(shmp_lock_t *l, double timeout);
/* Release. 0; -EPERM if the calling thread does not hold it; -EINVAL (l
 * NULL). Released while still inconsistent (after -EOWNERDEAD, without
 * shmp_lock_consistent()), the lock becomes not recoverable. */
SHMP_API int shmp_lock_release(shmp_lock_t *l);
/* After -EOWNERDEAD: mark the protected state repaired. 0; -EPERM if the
 * caller does not own the lock; -EINVAL if it is not in the owner-died
 * state, or l is NULL. */
SHMP_API int shmp_lock_consistent(shmp_lock_t *l);
/* 1 if held by anyone (a dead owner included, until someone acquires), 0 if
 * free, -ENOTRECOVERABLE, -EINVAL (l NULL). */
SHMP_API int shmp_lock_is_locked(const shmp_lock_t *l);
/* Current owner: 1 and *pid, *tid set (either may be NULL) if held, 0 if
 * free, -ENOTRECOVERABLE, -EINVAL (l NULL). The pid is the one the owner
 * stored when it acquired, so it outlives the owner thread; like everything
 * read from shared memory, it is for display (whoever can write the
 * segment can write any number there). An owner that died still counts as
 * the owner until someone acquires. */
SHMP_API int shmp_lock_owner(const shmp_lock_t *l, pid_t *pid, pid_t *tid);
/* Recursion depth held by the calling thread (1 for a held Lock), 0 if it
 * is not the owner, -EINVAL (l NULL). */
SHMP_API int shmp_lock_count(const shmp_lock_t *l);
/* 1 for an RLock, 0 for a Lock, -EINVAL (l NULL). */
SHMP_API int shmp_lock_is_recursive(const shmp_lock_t *l);

/* ---- Semaphore and BoundedSemaphore ------------------------------------ */
typedef struct shmp_sem shmp_sem_t;

struct shmp_sem_opts {
	size_t sz;
	shmp_segment_t *segment; /* NULL: default segment */
};

#define SHMP_SEM_VALUE_MAX 0x7fffffffu

/* NULL with errno: EINVAL (value > SHMP_SEM_VALUE_MAX, opts), ENOMEM,
 * SHMP_ESEGFULL. */
SHMP_API shmp_sem_t *shmp_sem_create(unsigned value, const struct shmp_sem_opts *opts);
/* A bounded semaphore: releasing above the initial value is -EOVERFLOW
 * (Python's BoundedSemaphore raises ValueError). Errors as shmp_sem_create. */
SHMP_API shmp_sem_t *shmp_bounded_sem_create(unsigned value, const struct shmp_sem_opts *opts);
/* Release this process's handle; the creating process's destroy frees the
 * semaphore. Accepts NULL. */
SHMP_API void shmp_sem_destroy(shmp_sem_t *s);
/* Take a permit. 0; -ETIMEDOUT; -EINTR (interruptible: no permit taken);
 * -EINVAL (s NULL, timeout NaN). */
SHMP_API int shmp_sem_acquire(shmp_sem_t *s, double timeout);
/* Give a permit back. 0; -EOVERFLOW (bounded and at its initial value, or
 * at SHMP_SEM_VALUE_MAX); -EINVAL (s NULL). Never waits. */
SHMP_API int shmp_sem_release(shmp_sem_t *s);
/* Current value (>= 0), -EINVAL (s NULL). */
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

/* NULL with errno: EINVAL (opts, max_waiters > SHMP_COND_WAITERS_MAX), EXDEV
 * (the lock lives in another segment), ENOMEM, SHMP_ESEGFULL. */
SHMP_API shmp_cond_t *shmp_cond_create(const struct shmp_cond_opts *opts);
/* Release this process's handle; the creating process's destroy frees the
 * condition, and its lock if the condition created it (a caller's lock is
 * the caller's). Accepts NULL. */
SHMP_API void shmp_cond_destroy(shmp_cond_t *c);
/* The lock the condition is bound to: opts.lock, or the condition's own
 * (which goes with the condition: do not destroy it). NULL with errno
 * EINVAL if c is NULL. */
SHMP_API shmp_lock_t *shmp_cond_lock(shmp_cond_t *c);
/* Caller holds the lock. Releases it (all RLock levels), sleeps until
 * notified, re-acquires it (all levels). 0 if notified; -ETIMEDOUT;
 * -EINTR (interruptible); -EOWNERDEAD from the re-acquire — in all four the
 * lock is held again. -EPERM if the caller does not own the lock, -EAGAIN
 * if max_waiters are already waiting, -EINVAL (c NULL, timeout NaN): the
 * lock untouched. -ENOTRECOVERABLE: the lock is gone for good — which is
 * also what waiting on a lock still inconsistent after -EOWNERDEAD does
 * (the wait releases it unrepaired): call shmp_lock_consistent() first.
 * Waiters are woken in the order they began to wait; no spurious wake-up is
 * returned. */
SHMP_API int shmp_cond_wait(shmp_cond_t *c, double timeout);
/* Wait until pred(arg) is nonzero, checking it under the lock. 0 when it is,
 * -ETIMEDOUT (pred still 0), or the errors of shmp_cond_wait (-EINVAL also
 * for pred NULL). */
SHMP_API int shmp_cond_wait_for(shmp_cond_t *c, int (*pred)(void *arg), void *arg,
				double timeout);
/* Caller holds the lock. Wake up to n waiters (a notify with no waiters is
 * lost). Returns how many were picked (a picked waiter that dies before
 * its wait returns passes its wake-up on, see above), -EPERM (lock not
 * held), -EINVAL (c NULL). Never waits. */
SHMP_API int shmp_cond_notify(shmp_cond_t *c, unsigned n);
/* notify(c, all): the same returns. */
SHMP_API int shmp_cond_notify_all(shmp_cond_t *c);

/* ---- Event ------------------------------------------------------------- */
typedef struct shmp_event shmp_event_t;

struct shmp_event_opts {
	size_t sz;
	shmp_segment_t *segment; /* NULL: default segment */
};

/* Unset. NULL with errno: EINVAL (opts), ENOMEM, SHMP_ESEGFULL. */
SHMP_API shmp_event_t *shmp_event_create(const struct shmp_event_opts *opts);
/* Release this process's handle; the creating process's destroy frees the
 * event. Accepts NULL. */
SHMP_API void shmp_event_destroy(shmp_event_t *e);
/* Set the flag and wake every waiter in every process. 0, -EINVAL (e NULL). */
SHMP_API int shmp_event_set(shmp_event_t *e);
/* 0, -EINVAL (e NULL). */
SHMP_API int shmp_event_clear(shmp_event_t *e);
/* 1 if set, 0 if not, -EINVAL (e NULL). */
SHMP_API int shmp_event_is_set(const shmp_event_t *e);
/* 0 once the flag is set, or a set() happened while waiting (even if a
 * clear() followed it); -ETIMEDOUT if neither by then; -EINTR
 * (interruptible); -EINVAL (e NULL, timeout NaN). */
SHMP_API int shmp_event_wait(shmp_event_t *e, double timeout);

/* ---- Barrier ----------------------------------------------------------- */
typedef struct shmp_barrier shmp_barrier_t;

struct shmp_barrier_opts {
	size_t sz;
	shmp_segment_t *segment; /* NULL: default segment */
	/* Run once per round by the last party to arrive, before the others are
	 * released. Nonzero return breaks the barrier. Process-local: each
	 * process uses the action of its own handle. */
	int (*action)(void *arg);
	void *action_arg;
	/* The barrier's own timeout, which caps every wait made through this
	 * handle (and its forked copies): a wait ends after the shorter of its
	 * own timeout and this one. 0 (unset) or negative: no cap; NaN: EINVAL.
	 * Unlike Python, whose explicit wait(timeout) replaces the barrier's
	 * default, here an explicit timeout can only shorten it; a handle from
	 * the registry has no cap. */
	double timeout;
};

#define SHMP_BARRIER_PARTIES_MAX 65536u

/* NULL with errno: EINVAL (0 or more than SHMP_BARRIER_PARTIES_MAX parties,
 * opts), ENOMEM, SHMP_ESEGFULL. */
SHMP_API shmp_barrier_t *shmp_barrier_create(unsigned parties, const struct shmp_barrier_opts *opts);
/* Release this process's handle; the creating process's destroy frees the
 * barrier. Accepts NULL. */
SHMP_API void shmp_barrier_destroy(shmp_barrier_t *b);
/* Wait for all parties; timeout as in common.h (negative forever, 0 polls),
 * capped by opts.timeout. Returns this party's arrival index
 * 0..parties-1 (distinct per round); -SHMP_EBROKEN if the barrier is or
 * becomes broken (abort, reset, a party's timeout or death, a failed
 * action); -ETIMEDOUT for the party whose wait ran out (it breaks the
 * barrier for the others, as in Python; a poll that cannot pass at once
 * does too); -EINTR (interruptible: the party leaves and the round breaks
 * for the others); -SHMP_ELOCKED (the internal lock stayed held past its
 * bound, see above); -EINVAL (b NULL, timeout NaN: nothing done). */
SHMP_API int shmp_barrier_wait(shmp_barrier_t *b, double timeout);
/* Break the barrier: current and future waiters get -SHMP_EBROKEN until
 * reset. 0, -SHMP_ELOCKED, -EINVAL (b NULL). */
SHMP_API int shmp_barrier_abort(shmp_barrier_t *b);
/* Back to empty and usable; parties waiting now get -SHMP_EBROKEN. Forgets
 * the parties of the last round (see the death rules above). 0,
 * -SHMP_ELOCKED, -EINVAL (b NULL). */
SHMP_API int shmp_barrier_reset(shmp_barrier_t *b);
/* The number of parties, -EINVAL (b NULL). */
SHMP_API int shmp_barrier_parties(const shmp_barrier_t *b);
/* Parties currently waiting (0 when broken), -EINVAL (b NULL). */
SHMP_API int shmp_barrier_n_waiting(const shmp_barrier_t *b);
/* 1 if broken, 0 if not, -EINVAL (b NULL). */
SHMP_API int shmp_barrier_is_broken(const shmp_barrier_t *b);

#ifdef __cplusplus
}
#endif
#endif
