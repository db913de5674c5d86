/* shmp — Process: a function run in a forked child. */
#ifndef SHMP_PROCESS_H
#define SHMP_PROCESS_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The child runs fn(arg) and exits with its return value, as Python 3.12's
 * Process does: the exit handlers the child registered itself (atexit,
 * on_exit) run, newest first, and stdio is flushed; the handlers the parent
 * had registered never run in the child. The same when fn calls exit(n)
 * itself (the exit code is then n); _exit() runs nothing, as in C.
 * Everything the parent had at start() — memory, shmp handles, the default
 * segment — is there in the child, as fork() gives it.
 *
 * The child is addressed only through what start() got from fork(): its
 * pid, kept in the handle, and a pidfd. terminate() and kill() signal
 * through the pidfd (by pid only on kernels without pidfds, before 5.3);
 * nothing read from shared memory ever decides whom is signalled.
 *
 * Lifetime: destroying the handle releases it. A Process destroyed while
 * its child still runs: a daemon child is killed and reaped; any other
 * child is reaped as soon as it ends, by the next create, start, join,
 * exitcode, is_alive or destroy (of any Process) or at exit, so no zombie
 * stays behind. A forked copy of a handle (in a child of
 * the parent) does not own the child: there it reports the child as ended.
 *
 * Errors: int calls return -code (see common.h); create returns NULL with
 * errno set.
 */
typedef struct shmp_process shmp_process_t;
typedef int (*shmp_process_fn)(void *arg);

struct shmp_process_opts {
	size_t sz;
	int daemon;          /* kill the child when the handle is destroyed */
	/* The child gets SIGKILL when its parent dies. Linux ties this
	 * (PR_SET_PDEATHSIG) to the thread that forked: start() from the main
	 * thread, or from a thread that lives as long as the process. */
	int die_with_parent;
};

/* public */
/* A handle for fn(arg), not started yet. NULL with errno EINVAL (no fn, bad
 * options) or ENOMEM. */
SHMP_API shmp_process_t *shmp_process_create(shmp_process_fn fn, void *arg,
					     const struct shmp_process_opts *opts);
/* Fork the child. 0; -EALREADY if already started; fork's -EAGAIN or
 * -ENOMEM. */
SHMP_API int shmp_process_start(shmp_process_t *p);
/* Wait for the child to end, up to timeout seconds (negative: no limit,
 * 0: a poll). 0 once it has (again: fine), -ETIMEDOUT, -EINTR (a signal
 * handler ran, with shmp_set_interruptible(1): the wait is on the pidfd,
 * never in a waitpid that SA_RESTART restarts), -EINVAL if not started or
 * timeout is NaN. */
SHMP_API int shmp_process_join(shmp_process_t *p, double timeout);
/* 1 and *code set if the child has ended: its exit status, or minus the
 * signal that killed it (a child something else reaped, e.g. with SIGCHLD
 * ignored, reports 0). 0 if not started or still running. Never blocks. */
SHMP_API int shmp_process_exitcode(shmp_process_t *p, int *code);
/* 1 if started and not ended. */
SHMP_API int shmp_process_is_alive(shmp_process_t *p);
/* The child's pid, 0 before start. */
SHMP_API pid_t shmp_process_pid(const shmp_process_t *p);
/* A pidfd for poll/epoll/io_uring: readable once the child ends. Owned by the
 * handle. -EINVAL before start, and on kernels without pidfds (before 5.3). */
SHMP_API int shmp_process_pidfd(const shmp_process_t *p);
/* SIGTERM / SIGKILL to a running child, through its pidfd; 0 if it has
 * already ended; -EINVAL if not started. */
SHMP_API int shmp_process_terminate(shmp_process_t *p);
SHMP_API int shmp_process_kill(shmp_process_t *p);
/* Release the handle (see Lifetime above). Accepts NULL. */
SHMP_API void shmp_process_destroy(shmp_process_t *p);

#ifdef __cplusplus
}
#endif
#endif
