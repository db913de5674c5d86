/* private: Queue, SimpleQueue, JoinableQueue — the ring plus Python's
 * bookkeeping. */
#include "types.h"

#include <stdlib.h>

struct shmp__queue_sh {
	uint32_t magic;
	uint32_t version;
	uint32_t joinable;
	uint32_t maxsize;
	_Atomic uint32_t unfinished; /* futex for join(): items put, not yet task_done */
	_Atomic uint32_t join_waiters;
	uint64_t ring_off;           /* so that another process can open it */
};
#define QUEUE_MAGIC 0x51554555u
#define QUEUE_VERSION 1u
/* Pinned: other processes, maybe of another build, map it. */
SHMP__PIN(struct shmp__queue_sh, 32);
_Static_assert(offsetof(struct shmp__queue_sh, unfinished) == 16 && offsetof(struct shmp__queue_sh, ring_off) == 24,
	       "queue fields");

/* want: 1 + joinable, or 0 for either. The ring is checked by its open. */
static bool queue_check(const shmp_segment_t *seg, uint64_t off, const void *p, uint32_t want)
{
	(void)seg, (void)off;
	const struct shmp__queue_sh *sh = p;
	return sh->joinable <= 1 && (!want || want - 1 == sh->joinable);
}
const struct shmp__layout shmp__queue_layout = SHMP__LAYOUT(struct shmp__queue_sh, QUEUE_MAGIC, QUEUE_VERSION,
							     queue_check);

struct shmp_queue {
	SHMP__HEAD(struct shmp__queue_sh);
	shmp_ring_t *ring;
	unsigned maxsize;
};
SHMP__HEAD_CHECK(struct shmp_queue);

static shmp_queue_t *queue_new(const struct shmp_queue_opts *opts, bool joinable)
{
	struct shmp_queue_opts o;
	if (SHMP__OPTS(o, opts) < 0) {
		errno = EINVAL;
		return NULL;
	}
	shmp_queue_t *q = shmp__obj_new(o.segment, sizeof *q, &shmp__queue_layout, 0);
	if (!q)
		return NULL;
	struct shmp_ring_opts ro = {
		.sz = sizeof ro, .segment = q->seg, .capacity = o.maxsize ? o.maxsize : 65536,
		.inline_size = o.inline_size, .max_message = o.max_message,
	};
	if (!(q->ring = shmp_ring_create(&ro))) {
		shmp__obj_destroy(q);
		return NULL;
	}
	q->maxsize = ro.capacity;
	q->sh->maxsize = ro.capacity;
	q->sh->ring_off = shmp__ring_offset(q->ring);
	q->sh->joinable = joinable;
	shmp__obj_publish(q->sh, &shmp__queue_layout);
	return q;
}

shmp_queue_t *shmp_queue_create(const struct shmp_queue_opts *opts) { return queue_new(opts, false); }
shmp_queue_t *shmp_simple_queue_create(const struct shmp_queue_opts *opts) { return queue_new(opts, false); }
shmp_queue_t *shmp_joinable_queue_create(const struct shmp_queue_opts *opts) { return queue_new(opts, true); }

void shmp_queue_destroy(shmp_queue_t *q)
{
	if (!q)
		return;
	if (!shmp__handle_release(q)) {
		free(q->ring); /* the handle only: others still use the ring */
		free(q);
		return;
	}
	shmp_ring_destroy(q->ring);
	shmp__free_ptr(q->seg, q->sh);
	free(q);
}

shmp_queue_t *shmp__queue_open(shmp_segment_t *seg, uint64_t off, bool joinable, _Atomic uint32_t *ref)
{
	shmp_queue_t *q = shmp__obj_open(seg, off, &shmp__queue_layout, 1u + joinable, sizeof *q, ref);
	if (!q)
		return NULL;
	if (!(q->ring = shmp__ring_open(seg, q->sh->ring_off))) {
		int e = errno;
		free(q);
		errno = e;
		return NULL;
	}
	struct shmp_ring_stats st;
	shmp_ring_stats(q->ring, &st);
	q->maxsize = st.capacity;
	return q;
}

int shmp__queue_inspect(const shmp_segment_t *seg, const void *p, struct shmp_object_info *info)
{
	struct shmp__queue_sh *sh = (struct shmp__queue_sh *)p;
	shmp_ring_t *ring = shmp__ring_open((shmp_segment_t *)seg, sh->ring_off);
	if (!ring)
		return -errno;
	struct shmp_ring_stats st;
	shmp_ring_stats(ring, &st);
	free(ring); /* a handle of our own: nothing shared to let go */
	info->depth = st.count;
	info->capacity = st.capacity;
	info->closed = st.closed;
	uint32_t n = atomic_load_explicit(&sh->unfinished, memory_order_relaxed);
	info->unfinished = sh->joinable ? (n > st.lost ? n - st.lost : 0) : 0;
	return 0;
}

int shmp_queue_put(shmp_queue_t *q, const void *msg, size_t len, double timeout)
{
	if (!q)
		return -EINVAL;
	if (!q->sh->joinable)
		return shmp_ring_put(q->ring, msg, len, timeout);
	if (!msg && len)
		return -EINVAL;
	/* Counted once the slot is ours and before the message is visible (so
	 * task_done never sees it uncounted): a producer killed while it waits
	 * for room holds no count, and one killed from here to the commit
	 * leaves a slot the ring recovers as lost, which join() subtracts. */
	struct shmp_ring_ticket t;
	int r = shmp_ring_reserve(q->ring, len, &t, timeout);
	if (r < 0)
		return r;
	atomic_fetch_add_explicit(&q->sh->unfinished, 1, memory_order_seq_cst);
	if (len)
		memcpy(t.data, msg, len);
	return shmp_ring_commit(q->ring, &t, len);
}

/* Items put and not yet done: the count, less the messages the ring lost
 * to dead producers or consumers (nobody will ever mark those done). */
static uint32_t outstanding(shmp_queue_t *q, uint32_t count)
{
	struct shmp_ring_stats st;
	shmp_ring_stats(q->ring, &st);
	return count > st.lost ? count - (uint32_t)st.lost : 0;
}

int shmp_queue_get(shmp_queue_t *q, void *buf, size_t cap, size_t *len, double timeout)
{
	return q ? shmp_ring_get(q->ring, buf, cap, len, timeout) : -EINVAL;
}

int shmp_queue_qsize(shmp_queue_t *q)
{
	return q ? shmp_ring_count(q->ring) : -EINVAL;
}

int shmp_queue_is_empty(shmp_queue_t *q)
{
	return q ? shmp_ring_count(q->ring) == 0 : -EINVAL;
}

int shmp_queue_is_full(shmp_queue_t *q)
{
	return q ? (unsigned)shmp_ring_count(q->ring) >= q->maxsize : -EINVAL;
}

int shmp_queue_close(shmp_queue_t *q)
{
	return q ? shmp_ring_close(q->ring) : -EINVAL;
}

shmp_ring_t *shmp_queue_ring(shmp_queue_t *q)
{
	if (!q) {
		errno = EINVAL; /* as every call that returns a pointer */
		return NULL;
	}
	return q->ring;
}

int shmp_queue_task_done(shmp_queue_t *q)
{
	if (!q)
		return -EINVAL;
	if (!q->sh->joinable)
		return -ENOTSUP;
	uint32_t v = atomic_load_explicit(&q->sh->unfinished, memory_order_relaxed);
	do {
		if (outstanding(q, v) == 0)
			return -EOVERFLOW;
	} while (!atomic_compare_exchange_weak_explicit(&q->sh->unfinished, &v, v - 1,
			memory_order_seq_cst, memory_order_relaxed));
	if (outstanding(q, v - 1) == 0 && atomic_load_explicit(&q->sh->join_waiters, memory_order_seq_cst))
		shmp__futex_wake(&q->sh->unfinished, INT_MAX);
	return 0;
}

int shmp_queue_join(shmp_queue_t *q, double timeout)
{
	if (!q)
		return -EINVAL;
	if (!q->sh->joinable)
		return -ENOTSUP;
	struct shmp__deadline d;
	if (shmp__deadline_init(&d, timeout) < 0)
		return -EINVAL;
	atomic_fetch_add_explicit(&q->sh->join_waiters, 1, memory_order_seq_cst);
	int r = 0;
	for (;;) {
		uint32_t v = atomic_load_explicit(&q->sh->unfinished, memory_order_seq_cst);
		if (outstanding(q, v) == 0)
			break;
		if (shmp__deadline_passed(&d)) {
			r = -ETIMEDOUT;
			break;
		}
		/* Short slices: a loss recovered by the ring does not wake us.
		 * Timed, so a signal handler's run is reported (-EINTR). */
		struct timespec until = shmp__deadline_cap(&d, 100000000L);
		if (shmp__interrupted(shmp__futex_wait(&q->sh->unfinished, v, &until))) {
			r = -EINTR;
			break;
		}
	}
	atomic_fetch_sub_explicit(&q->sh->join_waiters, 1, memory_order_relaxed);
	return r;
}
