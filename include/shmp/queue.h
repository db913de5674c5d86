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
 * fork work in the children. destroy() frees it for everyone: call it once,
 * when no process uses it any more.
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
SHMP_API void shmp_queue_destroy(shmp_queue_t *q);

/* 0; -ETIMEDOUT when still full at the timeout (Python's Full); -SHMP_ECLOSED
 * after close(); -EMSGSIZE; -ENOMEM. */
SHMP_API int shmp_queue_put(shmp_queue_t *q, const void *msg, size_t len, double timeout);
/* 0 and *len; -ETIMEDOUT when still empty (Python's Empty); -SHMP_ECLOSED
 * once closed and drained; -EMSGSIZE if cap is too small (*len = needed,
 * the message stays). */
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
 * -ENOTSUP. */
SHMP_API int shmp_queue_join(shmp_queue_t *q, double timeout);
/* The ring underneath, for batch and zero-copy calls. */
SHMP_API shmp_ring_t *shmp_queue_ring(shmp_queue_t *q);

/*
 * Pipe: two connected ends. Duplex: both ends send and receive. One-way
 * (opts.one_way = 1, as Python's Pipe(duplex=False)): `a` only receives, `b`
 * only sends. Messages keep their boundaries and may be as large as
 * max_message (default 64 MiB; they travel through segment blocks).
 *
 * End of file: recv() and poll() report -SHMP_ECLOSED once the other end is
 * closed, or the last process that used it has died, and nothing is left to
 * read. send() then fails with -SHMP_ECLOSED too (a death is noticed by
 * send within 10 ms or 64 sends, whichever is later).
 */
typedef struct shmp_conn shmp_conn_t;

struct shmp_pipe_opts {
	size_t sz;
	shmp_segment_t *segment;
	int one_way;         /* 1: a receives, b sends (Python's duplex=False) */
	unsigned capacity;   /* messages in flight per direction; default 1024 */
	size_t max_message;  /* default 64 MiB */
};

/* Make a pipe; *a and *b get its two ends. 0 or -errno. */
SHMP_API int shmp_pipe_create(shmp_conn_t **a, shmp_conn_t **b, const struct shmp_pipe_opts *opts);
/* 0; -EBADF (this end cannot send); -SHMP_ECLOSED; -ETIMEDOUT (full);
 * -EMSGSIZE; -ENOMEM. */
SHMP_API int shmp_conn_send(shmp_conn_t *c, const void *msg, size_t len, double timeout);
/* 0 and *len; -EMSGSIZE if cap is too small (*len = needed, nothing lost);
 * -SHMP_ECLOSED at end of file; -ETIMEDOUT; -EBADF. */
SHMP_API int shmp_conn_recv(shmp_conn_t *c, void *buf, size_t cap, size_t *len, double timeout);
/* 1 if a message (or end of file) is there to recv, 0 if not by the timeout. */
SHMP_API int shmp_conn_poll(shmp_conn_t *c, double timeout);
/* Close this end for every process; the other end sees end of file. */
SHMP_API int shmp_conn_close(shmp_conn_t *c);
/* Free this handle. The pipe's shared memory is freed when the creating
 * process has destroyed both its ends: do that after the other processes
 * are done with theirs. Accepts NULL. */
SHMP_API void shmp_conn_destroy(shmp_conn_t *c);

#ifdef __cplusplus
}
#endif
#endif
