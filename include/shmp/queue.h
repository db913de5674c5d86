/* shmp — Queue, SimpleQueue, JoinableQueue and Pipe, on the shared ring. */
#ifndef SHMP_QUEUE_H
#define SHMP_QUEUE_H

#include "ring.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A Queue carries messages (byte strings) between processes: no pickling,
 * one copy in and one out. Unlike Python's, its size is bounded (maxsize
 * messages, default 65536): put() blocks when it is full. Handles made before
 * fork work in the children; other processes find one by name in a registry
 * (shmp_registry_queue).
 *
 * Errors: int calls return 0 (or a count) or -code (common.h); create
 * returns NULL with errno set: EINVAL (opts), SHMP_ESEGFULL (no room in the
 * segment), SHMP_ELOCKED (the segment's allocator lock stayed held past its
 * bound: a stopped process), EROFS (a segment attached read-only), ENOMEM
 * (no memory for the process-local handle). Timeouts are seconds: negative
 * waits without limit, 0 polls once, NaN is -EINVAL on every call, also
 * when no wait would be needed (room to put, a message there). With
 * shmp_set_interruptible(1), put, get and join return -EINTR once a signal
 * handler ran during the wait; nothing was put or taken then.
 *
 * Lifetime (the one rule): destroying a handle releases this process's
 * handle. The queue is freed by the destroy of the handle its create
 * returned, in the creating process (a registry's queue: by the last handle
 * after shmp_registry_remove) — never by a forked child's destroy of an
 * inherited handle. Destroy the creating handle when no process uses the
 * queue any more.
 *
 * Python's ways to end a consumer, in C:
 *   - close: the producer calls shmp_queue_close() once it has put
 *     everything; consumers drain what is left, then get() returns
 *     -SHMP_ECLOSED. No sentinel needed, and any number of consumers stop.
 *       while ((rc = shmp_queue_get(q, buf, sizeof buf, &len, SHMP_FOREVER)) == 0)
 *               work(buf, len);
 *       if (rc != -SHMP_ECLOSED) ... an error ...
 *   - a sentinel message, as `q.put(None)`: one agreed message (say, of
 *     length 0) per consumer; each consumer stops at the first it gets.
 *     Works with a queue that stays open for later rounds.
 */
typedef struct shmp_queue shmp_queue_t;

struct shmp_queue_opts {
	size_t sz;
	shmp_segment_t *segment; /* NULL: default segment */
	unsigned maxsize;        /* messages; 0 means 65536 */
	unsigned inline_size;    /* see shmp_ring_opts */
	size_t max_message;      /* see shmp_ring_opts; default 64 MiB */
};

/* public */
SHMP_API shmp_queue_t *shmp_queue_create(const struct shmp_queue_opts *opts);
/* Python's SimpleQueue: the same object; use put/get/empty/close. */
SHMP_API shmp_queue_t *shmp_simple_queue_create(const struct shmp_queue_opts *opts);
/* A JoinableQueue: also task_done() and join(). */
SHMP_API shmp_queue_t *shmp_joinable_queue_create(const struct shmp_queue_opts *opts);
/* Release this handle (the rule above). Accepts NULL. */
SHMP_API void shmp_queue_destroy(shmp_queue_t *q);

/* Copy a message in, waiting up to timeout for room. 0; -ETIMEDOUT when
 * still full at the timeout (Python's Full); -EINTR; -SHMP_ECLOSED after
 * close(); -EMSGSIZE (over max_message); for a message longer than a
 * slot holds inline, which travels in a segment block: -SHMP_ESEGFULL (no room for the block
 * now: not waited for), -SHMP_ELOCKED (the allocator's lock stayed held
 * past its bound), -EROFS; -SHMP_ECORRUPT; -EINVAL. */
SHMP_API int shmp_queue_put(shmp_queue_t *q, const void *msg, size_t len, double timeout);
/* Copy the oldest message out, waiting up to timeout. 0 and *len;
 * -ETIMEDOUT when still empty (Python's Empty); -EINTR; -SHMP_ECLOSED once
 * closed and drained; -EMSGSIZE if cap is too small (*len = needed, the
 * message stays). */
SHMP_API int shmp_queue_get(shmp_queue_t *q, void *buf, size_t cap, size_t *len, double timeout);
/* Approximate, as in Python. */
SHMP_API int shmp_queue_qsize(shmp_queue_t *q);
SHMP_API int shmp_queue_is_empty(shmp_queue_t *q);
SHMP_API int shmp_queue_is_full(shmp_queue_t *q);
/* No more puts (from any process); gets drain what is left. Twice is fine. */
SHMP_API int shmp_queue_close(shmp_queue_t *q);
/* JoinableQueue: one task_done() per item got; -EOVERFLOW if called more
 * often than items were put; -ENOTSUP on a plain Queue. */
SHMP_API int shmp_queue_task_done(shmp_queue_t *q);
/* JoinableQueue: wait until every item put has been task_done(). Items the
 * ring lost to a producer or consumer killed mid-message (ring stats' lost)
 * count as done: nobody can finish them. An item a consumer got and then
 * died with is not: use a timeout if consumers may die. 0, -ETIMEDOUT,
 * -EINTR, -ENOTSUP. */
SHMP_API int shmp_queue_join(shmp_queue_t *q, double timeout);
/* The ring underneath, for batch and zero-copy calls; it belongs to the
 * queue. NULL with errno EINVAL for a NULL q. Messages put straight into
 * it are not counted by a JoinableQueue. */
SHMP_API shmp_ring_t *shmp_queue_ring(shmp_queue_t *q);

/*
 * Pipe: two connected ends. Duplex: both ends send and receive. One-way
 * (opts.one_way = 1, as Python's Pipe(duplex=False)): `a` only receives, `b`
 * only sends. Messages keep their boundaries and may be as large as
 * max_message (default 64 MiB; they travel through segment blocks).
 *
 * Holders and end of file, as with a pipe's file descriptors. The creating
 * process holds both ends. A process forked (fork(), and everything built
 * on it: shmp_process_start, pools, pipelines) while this process holds an
 * end holds it too, from the fork on. close() and destroy() drop this
 * process's hold; exit and death drop it too. recv() and poll() on one end
 * report end of file (-SHMP_ECLOSED, poll 1) once every process holding the
 * other end has closed it or died, and what was sent before is read: not
 * when one of several holders exits. So, as in Python, close the ends a
 * process will not use, right after the fork: the parent closes the write
 * end it gave a child, or it never sees end of file. A Pool's zygote and
 * workers, or a pipeline's workers, forked while a pipe exists hold its
 * ends as long as they live: make such pipes after the pool, or close the
 * ends first, as with Python's inherited descriptors. send() fails with
 * -SHMP_ECLOSED once the other end is gone. The last holder's close is
 * seen at once; a death is found by probing the holders: a call that
 * waits (send on a full pipe, recv, poll) probes 10 ms into its wait, then
 * at intervals doubling to 0.1 s; recv and poll with timeout 0 probe at
 * most every 10 ms per handle; a send that does not wait probes only on
 * every 64th send through its handle, and then only if its handle's last
 * probe is 10 ms old — so after the death, sends can go on succeeding
 * (into a ring nobody reads) for up to 64 more sends after 10 ms, or until
 * the pipe is full.
 * Holders are up to 64 per end by pid (a dead one is noticed by probing
 * /proc: gone, a zombie, or its pid reused); more are counted but not
 * named, and the end then stays held until each of those closes it — their
 * deaths are not noticed. A process that exec()s holds on until it exits.
 * Pids in the pipe's shared memory are only ever probed, never signalled.
 *
 * Errors: int calls return 0 or -code (common.h). Timeouts as for Queue;
 * with shmp_set_interruptible(1), send, recv and poll return -EINTR once a
 * signal handler ran during the wait.
 *
 * Lifetime (the one rule): destroying a conn releases this process's
 * handle and its hold. The pipe's shared memory is freed by the creating
 * process once it has destroyed both of its ends — do that after the other
 * processes are done with theirs; a forked child's destroy never frees it.
 */
typedef struct shmp_conn shmp_conn_t;

struct shmp_pipe_opts {
	size_t sz;
	shmp_segment_t *segment;
	int one_way;         /* 1: a receives, b sends (Python's duplex=False) */
	unsigned capacity;   /* messages in flight per direction; default 1024 */
	size_t max_message;  /* default 64 MiB */
};

/* Make a pipe; *a and *b get its two ends, both held by this process.
 * 0, -EINVAL, -SHMP_ESEGFULL, -SHMP_ELOCKED, -EROFS (as for a queue's
 * create), -ENOMEM (the process-local handles). */
SHMP_API int shmp_pipe_create(shmp_conn_t **a, shmp_conn_t **b, const struct shmp_pipe_opts *opts);
/* Send a message, waiting up to timeout for room. 0; -EINVAL (also a NaN
 * timeout when there is room); -EBADF (this end cannot send);
 * -SHMP_ECLOSED (this process closed this end, or the other end is gone);
 * -ETIMEDOUT (full); -EINTR; -EMSGSIZE; for a large message as for a
 * queue's put: -SHMP_ESEGFULL, -SHMP_ELOCKED, -EROFS. */
SHMP_API int shmp_conn_send(shmp_conn_t *c, const void *msg, size_t len, double timeout);
/* Receive the next message, waiting up to timeout. 0 and *len; -EMSGSIZE
 * if cap is too small (*len = needed, nothing lost); -SHMP_ECLOSED at end
 * of file, or on an end this process closed; -ETIMEDOUT; -EINTR; -EBADF. */
SHMP_API int shmp_conn_recv(shmp_conn_t *c, void *buf, size_t cap, size_t *len, double timeout);
/* 1 if a message (or end of file) is there to recv, 0 if not by the
 * timeout; -EINVAL (also a NaN timeout with a message there),
 * -SHMP_ECLOSED (this process closed this end), -EINTR, -EBADF. */
SHMP_API int shmp_conn_poll(shmp_conn_t *c, double timeout);
/* Drop this process's hold of this end (Python's conn.close()): its calls
 * here now give -SHMP_ECLOSED; other holders go on. The last holder's close
 * gives the other end end of file at once. Twice is fine. */
SHMP_API int shmp_conn_close(shmp_conn_t *c);
/* Close (if not yet) and release this handle; see Lifetime above. Accepts
 * NULL. */
SHMP_API void shmp_conn_destroy(shmp_conn_t *c);

#ifdef __cplusplus
}
#endif
#endif
