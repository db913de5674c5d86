/* shmp — the shared-memory ring: a bounded multi-producer multi-consumer
 * queue of variable-size messages. The Pool's task and result queues and
 * every Queue and Pipe are built on it. */
#ifndef SHMP_RING_H
#define SHMP_RING_H

#include <sys/uio.h>
#include "segment.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Messages up to the slot's inline size are copied into the slot; larger ones
 * (up to max_message) into a block of the segment, whose offset the slot
 * holds. reserve/commit and peek/release give zero-copy access to either.
 *
 * Order: FIFO per producer; one consumer sees every producer's messages in
 * the order each published them.
 *
 * A peer killed at any point never wedges the others. Every claim on a slot
 * records the claimer's thread id in the same atomic word, so a waiter that
 * finds a slot held by a dead thread takes it over: a message a dead
 * producer was writing, or a dead consumer was reading, is skipped as lost
 * and counted (shmp_ring_stats().lost); its large-message block is freed.
 * The same holds with the single-producer/consumer flags, which only replace
 * the claiming CAS by a plain store.
 *
 * Everything read from shared memory is checked before use: a corrupted ring
 * makes calls fail with -SHMP_ECORRUPT, never read or write out of bounds.
 * Large-message blocks carry a header naming their ring and message, so a
 * corrupted slot cannot make the ring read or free another object's block
 * (such a block is left alone and counted in lost_blocks).
 *
 * Errors: int calls return 0 (or a count) or -code (common.h); create
 * returns NULL with errno set (EINVAL; SHMP_ESEGFULL or SHMP_ELOCKED from the
 * segment; ENOMEM only for the process-local handle). Timeouts are
 * seconds: negative waits without limit, 0 polls once (never sleeps), NaN
 * is -EINVAL. Blocking is a short spin, then a futex sleep in slices of at
 * most 50 ms (each one looks for a dead holder of the slot waited on). With
 * shmp_set_interruptible(1), every call that waits returns -EINTR once a
 * signal handler ran during its sleep, having claimed nothing.
 *
 * Lifetime (the one rule): destroying a handle releases this process's
 * handle; the ring is freed by the destroy of the handle its create
 * returned, in the creating process — never by a forked child's destroy of
 * an inherited handle.
 */
typedef struct shmp_ring shmp_ring_t;

enum {
	SHMP_RING_SINGLE_PRODUCER = 1u << 0, /* caller promises one producer at a time */
	SHMP_RING_SINGLE_CONSUMER = 1u << 1, /* ... and/or one consumer at a time */
};

#define SHMP_RING_MAX_MESSAGE ((size_t)1 << 30)

struct shmp_ring_opts {
	size_t sz;
	shmp_segment_t *segment; /* NULL: default segment */
	unsigned capacity;       /* messages; 0: 1024; 1 to 2^30 (more: EINVAL). The
	                          * slots take capacity * slot size bytes of the
	                          * segment at create. */
	unsigned inline_size;    /* bytes a slot holds inline; 0: 104; at most 2^20
	                          * (more: EINVAL). Rounded up so that a slot (a
	                          * 24-byte header + inline bytes) is whole 64-byte
	                          * lines: 104 gives 128-byte slots. A longer
	                          * message travels in a segment block. */
	size_t max_message;      /* default 64 MiB, at most SHMP_RING_MAX_MESSAGE */
	unsigned flags;          /* SHMP_RING_* */
};

/* A slot held between reserve and commit, or peek and release. */
struct shmp_ring_ticket {
	void *data;       /* where to write (reserve) or read (peek) */
	size_t len;       /* bytes reserved / the message's length */
	uint64_t pos_;    /* private */
	uint64_t block_;  /* private */
	uint32_t state_;  /* private */
};

struct shmp_ring_stats {
	uint64_t lost;        /* messages skipped because their writer or reader died */
	uint64_t lost_blocks; /* large-message blocks that could not be freed */
	uint32_t count;       /* messages in the ring now (approximate while in use) */
	uint32_t capacity;
	uint32_t inline_size;
	uint32_t closed;
};

/* public */
SHMP_API shmp_ring_t *shmp_ring_create(const struct shmp_ring_opts *opts);
/* Release this handle; in the creating process, the creating handle's
 * destroy frees the ring (do it when no process uses it any more). Accepts
 * NULL. */
SHMP_API void shmp_ring_destroy(shmp_ring_t *r);

/* Copy a message in. 0; -ETIMEDOUT (full); -EINTR; -EMSGSIZE (len >
 * max_message); -SHMP_ESEGFULL (no segment room for a large message:
 * returned at once, room is not waited for); -SHMP_ELOCKED (the segment's
 * allocator lock is held by a thread that never lets go); -SHMP_ECLOSED;
 * -EINVAL. */
SHMP_API int shmp_ring_put(shmp_ring_t *r, const void *msg, size_t len, double timeout);
/* Copy the oldest message out into buf (cap bytes); *len = its length.
 * -EMSGSIZE if cap is too small: *len says how much is needed and the
 * message stays. -ETIMEDOUT (empty); -EINTR; -SHMP_ECLOSED (closed and
 * drained); -SHMP_ECORRUPT. */
SHMP_API int shmp_ring_get(shmp_ring_t *r, void *buf, size_t cap, size_t *len, double timeout);
/* Put up to n messages; waits (up to timeout) only for the first. Returns
 * how many were put (>= 1 when n >= 1; 0 at once when n == 0, and msgs may
 * then be NULL) or the first one's error. A NaN timeout is -EINVAL, with
 * n == 0 too. */
SHMP_API int shmp_ring_put_batch(shmp_ring_t *r, const struct iovec *msgs, unsigned n, double timeout);
/* Get up to n messages into bufs[i] (iov_len is the capacity; lens[i] gets
 * the length); waits only for the first. Stops before a message that does
 * not fit its buffer (-EMSGSIZE if that is the first). n == 0 returns 0 at
 * once (bufs and lens may then be NULL). */
SHMP_API int shmp_ring_get_batch(shmp_ring_t *r, struct iovec *bufs, size_t *lens, unsigned n,
				 double timeout);

/* Zero-copy: reserve room for len bytes, write to t->data, commit (with a
 * final length <= reserved) or cancel. Same errors as put. */
SHMP_API int shmp_ring_reserve(shmp_ring_t *r, size_t len, struct shmp_ring_ticket *t, double timeout);
SHMP_API int shmp_ring_commit(shmp_ring_t *r, struct shmp_ring_ticket *t, size_t len);
SHMP_API int shmp_ring_cancel(shmp_ring_t *r, struct shmp_ring_ticket *t);
/* Zero-copy: take the oldest message and read it in place at t->data, then
 * release it. Same errors as get (no -EMSGSIZE). */
SHMP_API int shmp_ring_peek(shmp_ring_t *r, struct shmp_ring_ticket *t, double timeout);
SHMP_API int shmp_ring_release(shmp_ring_t *r, struct shmp_ring_ticket *t);

/* Wait until a message can be taken: 0, -ETIMEDOUT, -EINTR, -SHMP_ECLOSED
 * (closed and drained). Takes nothing. */
SHMP_API int shmp_ring_poll(shmp_ring_t *r, double timeout);
/* After close, puts fail with -SHMP_ECLOSED and gets drain what is left, then
 * fail with -SHMP_ECLOSED. Wakes every waiter. Closing twice is fine. */
SHMP_API int shmp_ring_close(shmp_ring_t *r);
SHMP_API int shmp_ring_stats(shmp_ring_t *r, struct shmp_ring_stats *st);
/* Messages in the ring now (a snapshot). */
SHMP_API int shmp_ring_count(shmp_ring_t *r);

#ifdef __cplusplus
}
#endif
#endif
