/* The shared-memory ring's API contract (include/shmp/ring.h), in one process
 * and with children:
 * - put/get of inline (up to stats.inline_size bytes: no segment block) and
 *   large messages (one block each, 5000 B and 1 MiB), zero-length messages;
 *   FIFO for one producer, also across a fork and over many laps;
 * - -EMSGSIZE: a buffer too small sets *len to the size needed and loses
 *   nothing; len > max_message;
 * - timeouts: 0 fails at once, 0.2 s after about 0.2 s (get, put, peek,
 *   reserve, poll, batches);
 * - capacities that are not powers of two hold exactly `capacity` messages;
 * - put_batch/get_batch counts, a get_batch stopping before a message too big
 *   for its buffer, a put_batch into a ring with room for fewer;
 * - reserve/commit (shorter commit), cancel (skipped by consumers, its block
 *   freed), peek/release, tickets in the wrong state -> -EINVAL;
 * - close: puts fail with -SHMP_ECLOSED, gets drain then fail, close twice,
 *   a get/put/poll blocked in another process wakes with -SHMP_ECLOSED;
 * - poll, stats, count; NULL arguments; bad options;
 * - large-message blocks go back to the segment (live_blocks and used_bytes
 *   return to their start values) when consumed, cancelled, on every failed
 *   put (timeout, closed, -SHMP_ESEGFULL, which takes no slot either) and on
 *   destroy with messages inside;
 * - poll() does not report a cancelled reservation as a message;
 *   get(NULL, 0) receives an empty message.
 * The basic checks run for every combination of SINGLE_PRODUCER and
 * SINGLE_CONSUMER. */
#include "t.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/mman.h>

#define BIG (1u << 20)

static unsigned char *src, *dst; /* BIG-byte buffers */

static void fill(unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(seed * 131u + i * 7u + (i >> 8));
}

static int check_fill(const unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != (unsigned char)(seed * 131u + i * 7u + (i >> 8)))
			return 0;
	return 1;
}

static shmp_segment_t *seg_new(size_t size)
{
	shmp_segment_t *s = shmp_segment_create(NULL, size, NULL);
	T_CHECK(s);
	return s;
}

static shmp_ring_t *ring_new(shmp_segment_t *seg, unsigned cap, unsigned inl, size_t maxmsg, unsigned flags)
{
	struct shmp_ring_opts o = SHMP_OPTS(shmp_ring_opts, .segment = seg, .capacity = cap,
					    .inline_size = inl, .max_message = maxmsg, .flags = flags);
	shmp_ring_t *r = shmp_ring_create(&o);
	if (!r)
		fprintf(stderr, "ring_create: %s\n", strerror(errno));
	T_CHECK(r);
	return r;
}

/* put a filled message of n bytes; get one and check it is (n, seed). */
static void put_msg(shmp_ring_t *r, size_t n, unsigned seed, double timeout)
{
	fill(src, n, seed);
	T_EQ(shmp_ring_put(r, src, n, timeout), 0);
}

static void get_msg(shmp_ring_t *r, size_t n, unsigned seed, double timeout)
{
	size_t len = 12345;
	memset(dst, 0xee, n + 1 < BIG ? n + 1 : BIG);
	T_EQ(shmp_ring_get(r, dst, BIG, &len, timeout), 0);
	T_EQ(len, n);
	T_CHECK(check_fill(dst, n, seed));
}

/* ---- child helpers ------------------------------------------------------- */

struct prod_args {
	shmp_ring_t *r;
	unsigned n;
	size_t (*size_of)(unsigned i);
};

static size_t size_mixed(unsigned i)
{
	/* Mostly inline, every 17th large, every 50th empty. */
	if (i % 50 == 0)
		return 0;
	if (i % 17 == 0)
		return 200 + (i * 37) % 9000;
	return i % 90;
}

/* Child: put n messages (i, size_of(i)); each waits up to 5 s. */
static int producer(void *arg)
{
	struct prod_args *a = arg;
	for (unsigned i = 0; i < a->n; i++) {
		size_t n = a->size_of(i);
		fill(src, n, i);
		int e = shmp_ring_put(a->r, src, n, 5.0);
		if (e != 0) {
			fprintf(stderr, "producer: put %u: %s\n", i, shmp_strerror(e));
			return 2;
		}
	}
	return 0;
}

/* Parent side of producer(): every message, in order, intact. */
static void consume_in_order(shmp_ring_t *r, unsigned n, size_t (*size_of)(unsigned))
{
	for (unsigned i = 0; i < n; i++)
		get_msg(r, size_of(i), i, 5.0);
}

/* ---- the basic checks, for each flag combination ------------------------- */

static void basic(unsigned flags)
{
	shmp_segment_t *seg = seg_new(64u << 20);
	uint64_t b0 = t_live_blocks(seg), u0 = t_seg_stats(seg).used_bytes;
	shmp_ring_t *r = ring_new(seg, 8, 0, 0, flags);
	uint64_t b1 = t_live_blocks(seg), u1 = t_seg_stats(seg).used_bytes;
	T_CHECK(b1 > b0);

	struct shmp_ring_stats st;
	T_EQ(shmp_ring_stats(r, &st), 0);
	T_EQ(st.capacity, 8);
	T_EQ(st.inline_size, 104); /* default: 128-byte slots */
	T_EQ(st.count, 0);
	T_EQ(st.lost, 0);
	T_EQ(st.lost_blocks, 0);
	T_EQ(st.closed, 0);
	T_EQ(shmp_ring_count(r), 0);

	/* Inline, exactly inline_size, one more (a block), large, empty. */
	put_msg(r, 5, 1, 0);
	T_EQ(t_live_blocks(seg), b1);
	put_msg(r, 104, 2, 0);
	T_EQ(t_live_blocks(seg), b1);
	put_msg(r, 105, 3, 0);
	T_EQ(t_live_blocks(seg), b1 + 1);
	put_msg(r, 5000, 4, 0);
	put_msg(r, BIG, 5, 0);
	T_EQ(t_live_blocks(seg), b1 + 3);
	T_EQ(shmp_ring_put(r, NULL, 0, 0), 0);
	T_EQ(shmp_ring_put(r, "ignored", 0, 0), 0);
	T_EQ(shmp_ring_count(r), 7);
	T_EQ(shmp_ring_stats(r, &st), 0);
	T_EQ(st.count, 7);
	get_msg(r, 5, 1, 0);
	get_msg(r, 104, 2, 0);
	get_msg(r, 105, 3, 0);
	T_EQ(t_live_blocks(seg), b1 + 2);
	get_msg(r, 5000, 4, 0);
	get_msg(r, BIG, 5, 0);
	T_EQ(t_live_blocks(seg), b1);
	size_t len = 99;
	T_EQ(shmp_ring_get(r, dst, 16, &len, 0), 0);
	T_EQ(len, 0);
	len = 99;
	T_EQ(shmp_ring_get(r, dst, 0, &len, 0), 0); /* cap 0 is enough for it */
	T_EQ(len, 0);
	T_EQ(shmp_ring_count(r), 0);
	T_FAST(shmp_ring_get(r, dst, BIG, &len, 0), -ETIMEDOUT);

	/* -EMSGSIZE: *len says what is needed and the message stays. */
	put_msg(r, 50, 6, 0);
	put_msg(r, 5000, 7, 0);
	len = 0;
	T_EQ(shmp_ring_get(r, dst, 10, &len, 0), -EMSGSIZE);
	T_EQ(len, 50);
	len = 0;
	T_EQ(shmp_ring_get(r, dst, 49, &len, 1.0), -EMSGSIZE);
	T_EQ(len, 50);
	T_EQ(shmp_ring_count(r), 2);
	get_msg(r, 50, 6, 0);
	len = 0;
	T_EQ(shmp_ring_get(r, dst, 4999, &len, 0), -EMSGSIZE);
	T_EQ(len, 5000);
	T_EQ(t_live_blocks(seg), b1 + 1);
	get_msg(r, 5000, 7, 0);
	T_EQ(t_live_blocks(seg), b1);

	/* Full: exactly capacity messages, then put/reserve time out at once
	 * and a large put's block goes back. */
	for (unsigned i = 0; i < 8; i++)
		put_msg(r, i * 3, 100 + i, 0);
	T_EQ(shmp_ring_count(r), 8);
	T_FAST(shmp_ring_put(r, "x", 1, 0), -ETIMEDOUT);
	fill(src, 5000, 0);
	T_FAST(shmp_ring_put(r, src, 5000, 0), -ETIMEDOUT);
	T_EQ(t_live_blocks(seg), b1);
	struct shmp_ring_ticket t;
	memset(&t, 0, sizeof t);
	T_FAST(shmp_ring_reserve(r, 10, &t, 0), -ETIMEDOUT);
	T_FAST(shmp_ring_reserve(r, 5000, &t, 0), -ETIMEDOUT);
	struct iovec iv[2] = { { src, 10 }, { src, 5000 } };
	T_FAST(shmp_ring_put_batch(r, iv, 2, 0), -ETIMEDOUT);
	T_EQ(t_live_blocks(seg), b1);
	T_EQ(shmp_ring_poll(r, 0), 0);
	for (unsigned i = 0; i < 8; i++)
		get_msg(r, i * 3, 100 + i, 0);
	T_FAST(shmp_ring_peek(r, &t, 0), -ETIMEDOUT);
	T_FAST(shmp_ring_poll(r, 0), -ETIMEDOUT);
	size_t lens[2];
	struct iovec ov[2] = { { dst, 100 }, { dst + 100, 100 } };
	T_FAST(shmp_ring_get_batch(r, ov, lens, 2, 0), -ETIMEDOUT);

	/* Batches: counts, and sizes mixing inline and blocks. */
	static const size_t bsz[5] = { 10, 5000, 0, 100, 200000 };
	struct iovec in[5];
	unsigned char *bsrc = malloc(300000);
	T_CHECK(bsrc);
	size_t boff = 0;
	for (int i = 0; i < 5; i++) {
		fill(bsrc + boff, bsz[i], 200 + i);
		in[i] = (struct iovec){ bsrc + boff, bsz[i] };
		boff += bsz[i];
	}
	T_EQ(shmp_ring_put_batch(r, in, 5, 0), 5);
	T_EQ(shmp_ring_count(r), 5);
	struct iovec out[6];
	size_t olens[6];
	for (int i = 0; i < 6; i++)
		out[i] = (struct iovec){ dst + (size_t)i * 200000, 200000 };
	memset(olens, 0xff, sizeof olens);
	T_EQ(shmp_ring_get_batch(r, out, olens, 5, 0), 5);
	for (int i = 0; i < 5; i++) {
		T_EQ(olens[i], bsz[i]);
		T_CHECK(check_fill(out[i].iov_base, bsz[i], 200 + i));
	}
	T_EQ(t_live_blocks(seg), b1);
	/* n larger than what is there: what there is. */
	T_EQ(shmp_ring_put_batch(r, in, 2, 0), 2);
	T_EQ(shmp_ring_get_batch(r, out, olens, 6, 0), 2);
	T_EQ(olens[0], 10);
	T_EQ(olens[1], 5000);
	T_CHECK(check_fill(out[1].iov_base, 5000, 201));
	/* A batch get stops before a message too big for its buffer; if the
	 * first is too big: -EMSGSIZE with lens[0] = its length. */
	T_EQ(shmp_ring_put_batch(r, in, 4, 0), 4); /* 10, 5000, 0, 100 */
	out[0].iov_len = 64;
	out[1].iov_len = 64;
	T_EQ(shmp_ring_get_batch(r, out, olens, 3, 0), 1);
	T_EQ(olens[0], 10);
	olens[0] = 0;
	T_EQ(shmp_ring_get_batch(r, out, olens, 3, 0), -EMSGSIZE);
	T_EQ(olens[0], 5000);
	T_EQ(shmp_ring_count(r), 3);
	out[0].iov_len = 5000;
	T_EQ(shmp_ring_get_batch(r, out, olens, 3, 0), 3);
	T_EQ(olens[0], 5000);
	T_EQ(olens[1], 0);
	T_EQ(olens[2], 100);
	T_CHECK(check_fill(out[0].iov_base, 5000, 201));
	T_CHECK(check_fill(out[2].iov_base, 100, 203));
	for (int i = 0; i < 6; i++)
		out[i].iov_len = 200000;
	/* Room for fewer than n: as many as fit, in order; blocks of the
	 * ones that did not fit go back. */
	for (unsigned i = 0; i < 6; i++)
		put_msg(r, 1, 300 + i, 0);
	T_EQ(shmp_ring_put_batch(r, in, 5, 0), 2);
	T_EQ(shmp_ring_count(r), 8);
	T_EQ(t_live_blocks(seg), b1 + 1);
	for (unsigned i = 0; i < 6; i++)
		get_msg(r, 1, 300 + i, 0);
	get_msg(r, 10, 200, 0);
	get_msg(r, 5000, 201, 0);
	T_EQ(t_live_blocks(seg), b1);
	free(bsrc);

	/* reserve/commit, with a shorter final length, inline and block. */
	T_EQ(shmp_ring_reserve(r, 100, &t, 0), 0);
	T_CHECK(t.data);
	T_EQ(t.len, 100);
	fill(t.data, 40, 400);
	T_EQ(shmp_ring_commit(r, &t, 40), 0);
	T_EQ(shmp_ring_reserve(r, 5000, &t, 0), 0);
	T_EQ(t.len, 5000);
	T_EQ(t_live_blocks(seg), b1 + 1);
	fill(t.data, 3000, 401);
	T_EQ(shmp_ring_commit(r, &t, 3000), 0);
	T_EQ(shmp_ring_commit(r, &t, 3000), -EINVAL); /* used twice */
	T_EQ(shmp_ring_cancel(r, &t), -EINVAL);
	T_EQ(shmp_ring_reserve(r, 0, &t, 0), 0);
	T_EQ(shmp_ring_commit(r, &t, 0), 0);
	get_msg(r, 40, 400, 0);
	get_msg(r, 3000, 401, 0);
	get_msg(r, 0, 0, 0);
	T_EQ(t_live_blocks(seg), b1);

	/* cancel: consumers skip the slot, in the middle of others; a
	 * cancelled block goes back. */
	put_msg(r, 20, 500, 0);
	T_EQ(shmp_ring_reserve(r, 30, &t, 0), 0);
	struct shmp_ring_ticket t2;
	T_EQ(shmp_ring_reserve(r, 7000, &t2, 0), 0);
	put_msg(r, 21, 501, 0);
	T_EQ(shmp_ring_commit(r, &t2, 7001), -EINVAL); /* more than reserved */
	T_EQ(shmp_ring_cancel(r, &t2), 0);
	T_EQ(shmp_ring_cancel(r, &t2), -EINVAL);
	T_EQ(shmp_ring_cancel(r, &t), 0);
	T_EQ(shmp_ring_commit(r, &t, 0), -EINVAL);
	T_EQ(shmp_ring_release(r, &t), -EINVAL);
	get_msg(r, 20, 500, 0);
	get_msg(r, 21, 501, 0);
	T_FAST(shmp_ring_get(r, dst, BIG, &len, 0), -ETIMEDOUT);
	T_EQ(t_live_blocks(seg), b1);

	/* peek/release: in place, inline and block; the block lives until
	 * release. */
	put_msg(r, 77, 600, 0);
	put_msg(r, BIG, 601, 0);
	memset(&t, 0, sizeof t);
	T_EQ(shmp_ring_release(r, &t), -EINVAL); /* never used */
	T_EQ(shmp_ring_commit(r, &t, 0), -EINVAL);
	T_EQ(shmp_ring_peek(r, &t, 0), 0);
	T_EQ(t.len, 77);
	T_CHECK(check_fill(t.data, 77, 600));
	T_EQ(shmp_ring_commit(r, &t, 0), -EINVAL); /* a peek ticket */
	T_EQ(shmp_ring_cancel(r, &t), -EINVAL);
	T_EQ(shmp_ring_release(r, &t), 0);
	T_EQ(shmp_ring_release(r, &t), -EINVAL);
	T_EQ(shmp_ring_peek(r, &t, 0), 0);
	T_EQ(t.len, BIG);
	T_CHECK(check_fill(t.data, BIG, 601));
	T_EQ(t_live_blocks(seg), b1 + 1);
	T_EQ(shmp_ring_release(r, &t), 0);
	T_EQ(t_live_blocks(seg), b1);
	T_FAST(shmp_ring_peek(r, &t, 0), -ETIMEDOUT);
	/* A reserve ticket cannot be released. */
	T_EQ(shmp_ring_reserve(r, 5, &t, 0), 0);
	T_EQ(shmp_ring_release(r, &t), -EINVAL);
	T_EQ(shmp_ring_commit(r, &t, 5), 0);
	T_EQ(shmp_ring_get(r, dst, 5, &len, 0), 0);

	/* FIFO over many laps with a producer process (blocking both ways). */
	struct prod_args pa = { r, 3000, size_mixed };
	pid_t c = t_fork(producer, &pa);
	consume_in_order(r, pa.n, size_mixed);
	t_wait_ok(c, 10);
	T_EQ(t_live_blocks(seg), b1);
	T_EQ(t_seg_stats(seg).used_bytes, u1);

	/* Close: puts fail, gets drain then fail, twice is fine. */
	put_msg(r, 10, 700, 0);
	put_msg(r, 6000, 701, 0);
	put_msg(r, 11, 702, 0);
	T_EQ(shmp_ring_close(r), 0);
	T_EQ(shmp_ring_put(r, "x", 1, 0), -SHMP_ECLOSED);
	T_EQ(shmp_ring_put(r, "x", 1, 1.0), -SHMP_ECLOSED);
	T_EQ(shmp_ring_put(r, src, 6000, 0), -SHMP_ECLOSED);
	T_EQ(shmp_ring_reserve(r, 6000, &t, 0), -SHMP_ECLOSED);
	T_EQ(shmp_ring_put_batch(r, iv, 2, 0), -SHMP_ECLOSED);
	T_EQ(t_live_blocks(seg), b1 + 1);
	T_EQ(shmp_ring_stats(r, &st), 0);
	T_EQ(st.closed, 1);
	T_EQ(shmp_ring_close(r), 0);
	T_EQ(shmp_ring_poll(r, 0), 0);
	get_msg(r, 10, 700, 0);
	T_EQ(shmp_ring_get_batch(r, out, olens, 4, 0), 2);
	T_EQ(olens[0], 6000);
	T_EQ(olens[1], 11);
	T_CHECK(check_fill(out[0].iov_base, 6000, 701));
	T_EQ(t_live_blocks(seg), b1);
	T_FAST(shmp_ring_get(r, dst, BIG, &len, 0), -SHMP_ECLOSED);
	T_FAST(shmp_ring_get(r, dst, BIG, &len, 5.0), -SHMP_ECLOSED);
	T_FAST(shmp_ring_get_batch(r, out, olens, 2, 5.0), -SHMP_ECLOSED);
	T_FAST(shmp_ring_peek(r, &t, 5.0), -SHMP_ECLOSED);
	T_FAST(shmp_ring_poll(r, 5.0), -SHMP_ECLOSED);
	T_EQ(shmp_ring_close(r), 0);

	T_EQ(shmp_ring_stats(r, &st), 0);
	T_EQ(st.lost, 0);
	T_EQ(st.lost_blocks, 0);
	shmp_ring_destroy(r);
	T_EQ(t_live_blocks(seg), b0);
	T_EQ(t_seg_stats(seg).used_bytes, u0);
	shmp_segment_destroy(seg);
}

/* ---- timeouts of about the asked time ------------------------------------ */

static void timeouts(void)
{
	shmp_segment_t *seg = seg_new(1u << 20);
	shmp_ring_t *r = ring_new(seg, 2, 0, 0, 0);
	size_t len, lens[1];
	struct iovec ov[1] = { { dst, 64 } };
	struct shmp_ring_ticket t;
	T_ABOUT(shmp_ring_get(r, dst, 64, &len, 0.2), -ETIMEDOUT);
	T_ABOUT(shmp_ring_peek(r, &t, 0.2), -ETIMEDOUT);
	T_ABOUT(shmp_ring_poll(r, 0.2), -ETIMEDOUT);
	T_ABOUT(shmp_ring_get_batch(r, ov, lens, 1, 0.2), -ETIMEDOUT);
	T_EQ(shmp_ring_put(r, "a", 1, 0), 0);
	T_EQ(shmp_ring_put(r, "b", 1, 0), 0);
	T_ABOUT(shmp_ring_put(r, "c", 1, 0.2), -ETIMEDOUT);
	T_ABOUT(shmp_ring_reserve(r, 1, &t, 0.2), -ETIMEDOUT);
	struct iovec iv[1] = { { "c", 1 } };
	T_ABOUT(shmp_ring_put_batch(r, iv, 1, 0.2), -ETIMEDOUT);
	shmp_ring_destroy(r);
	shmp_segment_destroy(seg);
}

/* ---- capacities ------------------------------------------------------------ */

static void capacities(void)
{
	static const unsigned caps[] = { 1, 2, 3, 5, 7, 1000 };
	shmp_segment_t *seg = seg_new(4u << 20);
	for (size_t k = 0; k < sizeof caps / sizeof caps[0]; k++) {
		unsigned cap = caps[k];
		for (unsigned flags = 0; flags < 4; flags++) {
			shmp_ring_t *r = ring_new(seg, cap, 16, 0, flags);
			struct shmp_ring_stats st;
			T_EQ(shmp_ring_stats(r, &st), 0);
			T_EQ(st.capacity, cap);
			T_EQ(st.inline_size, 40); /* 16 rounds up to a 64-byte slot */
			/* Several laps: fill exactly, one more fails, drain in
			 * order; then staggered so every slot is reused at an
			 * offset. */
			unsigned seq = 0, next = 0;
			for (int lap = 0; lap < 3; lap++) {
				for (unsigned i = 0; i < cap; i++)
					put_msg(r, (seq + i) % 60, seq + i, 0);
				T_EQ(shmp_ring_count(r), (int)cap);
				T_FAST(shmp_ring_put(r, "x", 1, 0), -ETIMEDOUT);
				for (unsigned i = 0; i < cap; i++, next++)
					get_msg(r, next % 60, next, 0);
				seq += cap;
				size_t len;
				T_FAST(shmp_ring_get(r, dst, 64, &len, 0), -ETIMEDOUT);
				/* Shift the start by one each lap. */
				put_msg(r, seq % 60, seq, 0);
				seq++;
				get_msg(r, next % 60, next, 0);
				next++;
			}
			T_EQ(shmp_ring_count(r), 0);
			shmp_ring_destroy(r);
		}
	}
	shmp_segment_destroy(seg);
	/* Non-power-of-two with blocking over many laps. */
	seg = seg_new(8u << 20);
	for (unsigned flags = 0; flags < 4; flags++) {
		shmp_ring_t *r = ring_new(seg, 3, 0, 0, flags);
		struct prod_args pa = { r, 2000, size_mixed };
		pid_t c = t_fork(producer, &pa);
		consume_in_order(r, pa.n, size_mixed);
		t_wait_ok(c, 10);
		shmp_ring_destroy(r);
	}
	shmp_segment_destroy(seg);
}

/* ---- more multi-process behaviour ---------------------------------------- */

struct blocked_args {
	shmp_ring_t *r;
	int what; /* 0 get, 1 put, 2 poll, 3 peek, 4 put_batch, 5 get_batch */
	int fd;   /* written once just before blocking */
};

static int blocked_child(void *arg)
{
	struct blocked_args *a = arg;
	struct shmp_ring_ticket t;
	size_t len, lens[1];
	struct iovec io[1] = { { dst, 64 } };
	char c = 'r';
	T_CHECK(write(a->fd, &c, 1) == 1);
	int e;
	switch (a->what) {
	case 0: e = shmp_ring_get(a->r, dst, 64, &len, 10.0); break;
	case 1: e = shmp_ring_put(a->r, "z", 1, 10.0); break;
	case 2: e = shmp_ring_poll(a->r, 10.0); break;
	case 3: e = shmp_ring_peek(a->r, &t, 10.0); break;
	case 4: io[0].iov_len = 1; e = shmp_ring_put_batch(a->r, io, 1, 10.0); break;
	default: e = shmp_ring_get_batch(a->r, io, lens, 1, 10.0); break;
	}
	return e == -SHMP_ECLOSED ? 0 : 10 + (e < 0 ? -e % 100 : e);
}

/* A call blocked in another process wakes with -SHMP_ECLOSED on close. */
static void close_wakes(void)
{
	for (int what = 0; what < 6; what++) {
		shmp_segment_t *seg = seg_new(1u << 20);
		shmp_ring_t *r = ring_new(seg, 1, 0, 0, 0);
		bool producer_side = what == 1 || what == 4;
		if (producer_side)
			T_EQ(shmp_ring_put(r, "f", 1, 0), 0);
		int fd[2];
		T_CHECK(pipe(fd) == 0);
		struct blocked_args a = { r, what, fd[1] };
		pid_t c = t_fork(blocked_child, &a);
		char ch;
		T_CHECK(read(fd[0], &ch, 1) == 1);
		/* Let it reach its futex wait (a close before that is
		 * seen at once, so the test holds either way). */
		t_sleep_ms(150);
		double t0 = t_now();
		T_EQ(shmp_ring_close(r), 0);
		t_wait_ok(c, 5);
		T_CHECK(t_now() - t0 < 2.0);
		if (producer_side) {
			/* The message put before close still drains. */
			size_t len;
			T_EQ(shmp_ring_get(r, dst, 64, &len, 0), 0);
			T_EQ(len, 1);
			T_EQ(dst[0], 'f');
		}
		T_EQ(shmp_ring_get(r, dst, 64, &(size_t){ 0 }, 0), -SHMP_ECLOSED);
		close(fd[0]);
		close(fd[1]);
		shmp_ring_destroy(r);
		shmp_segment_destroy(seg);
	}
}

static int poll_child(void *arg)
{
	shmp_ring_t *r = arg;
	t_sleep_ms(100);
	return shmp_ring_put(r, "p", 1, 5.0) == 0 ? 0 : 2;
}

static int peek_child(void *arg)
{
	shmp_ring_t *r = arg;
	struct shmp_ring_ticket t;
	if (shmp_ring_peek(r, &t, 5.0) != 0 || t.len != BIG || !check_fill(t.data, BIG, 900))
		return 2;
	return shmp_ring_release(r, &t) == 0 ? 0 : 3;
}

static void poll_and_peek(void)
{
	shmp_segment_t *seg = seg_new(8u << 20);
	uint64_t b0 = t_live_blocks(seg);
	shmp_ring_t *r = ring_new(seg, 4, 0, 0, 0);
	uint64_t b1 = t_live_blocks(seg);
	/* poll takes nothing. */
	T_EQ(shmp_ring_put(r, "m", 1, 0), 0);
	T_EQ(shmp_ring_poll(r, 0), 0);
	T_EQ(shmp_ring_poll(r, 1.0), 0);
	T_EQ(shmp_ring_count(r), 1);
	size_t len;
	T_EQ(shmp_ring_get(r, dst, 8, &len, 0), 0);
	/* poll wakes when another process puts. */
	pid_t c = t_fork(poll_child, r);
	double t0 = t_now();
	T_EQ(shmp_ring_poll(r, 5.0), 0);
	T_CHECK(t_now() - t0 < 4.0);
	t_wait_ok(c, 5);
	T_EQ(shmp_ring_get(r, dst, 8, &len, 0), 0);
	T_EQ(dst[0], 'p');
	struct shmp_ring_ticket t;
	/* A consumer process reads a large message in place. */
	put_msg(r, BIG, 900, 0);
	c = t_fork(peek_child, r);
	t_wait_ok(c, 10);
	T_EQ(t_live_blocks(seg), b1);
	T_EQ(shmp_ring_count(r), 0);
	/* With one message held by peek another consumer gets the next. */
	put_msg(r, 10, 901, 0);
	put_msg(r, 11, 902, 0);
	T_EQ(shmp_ring_peek(r, &t, 0), 0);
	get_msg(r, 11, 902, 0);
	T_EQ(t.len, 10);
	T_CHECK(check_fill(t.data, 10, 901));
	T_EQ(shmp_ring_release(r, &t), 0);
	/* A reservation still open at close is committed and drained. */
	T_EQ(shmp_ring_reserve(r, 3, &t, 0), 0);
	T_EQ(shmp_ring_close(r), 0);
	/* Its message is still coming: not "closed" yet. */
	T_FAST(shmp_ring_get(r, dst, 8, &len, 0), -ETIMEDOUT);
	memcpy(t.data, "end", 3);
	T_EQ(shmp_ring_commit(r, &t, 3), 0);
	T_EQ(shmp_ring_get(r, dst, 8, &len, 0), 0);
	T_EQ(len, 3);
	T_CHECK(memcmp(dst, "end", 3) == 0);
	T_EQ(shmp_ring_get(r, dst, 8, &len, 0), -SHMP_ECLOSED);
	shmp_ring_destroy(r);
	T_EQ(t_live_blocks(seg), b0);
	shmp_segment_destroy(seg);
}

/* poll() waits for a message that can be taken: a cancelled reservation is
 * not one (get skips it and times out). */
static void poll_skips_cancelled(void)
{
	for (unsigned flags = 0; flags < 4; flags++) {
		shmp_segment_t *seg = seg_new(1u << 20);
		shmp_ring_t *r = ring_new(seg, 4, 0, 0, flags);
		struct shmp_ring_ticket t;
		size_t len;
		T_EQ(shmp_ring_reserve(r, 4, &t, 0), 0);
		T_EQ(shmp_ring_cancel(r, &t), 0);
		T_FAST(shmp_ring_get(r, dst, 8, &len, 0), -ETIMEDOUT);
		T_EQ(shmp_ring_reserve(r, 4, &t, 0), 0);
		T_EQ(shmp_ring_cancel(r, &t), 0);
		T_FAST(shmp_ring_poll(r, 0), -ETIMEDOUT);
		T_ABOUT(shmp_ring_poll(r, 0.2), -ETIMEDOUT);
		T_FAST(shmp_ring_get(r, dst, 8, &len, 0), -ETIMEDOUT);
		/* A message behind a cancelled slot: poll sees it. */
		T_EQ(shmp_ring_reserve(r, 4, &t, 0), 0);
		T_EQ(shmp_ring_put(r, "q", 1, 0), 0);
		T_EQ(shmp_ring_cancel(r, &t), 0);
		T_EQ(shmp_ring_poll(r, 0), 0);
		T_EQ(shmp_ring_get(r, dst, 8, &len, 0), 0);
		T_EQ(len, 1);
		shmp_ring_destroy(r);
		shmp_segment_destroy(seg);
	}
}

/* get(buf = NULL, cap = 0) is valid (only buf == NULL with cap > 0 is
 * -EINVAL) and receives an empty message; also through get_batch. (Under
 * UBSan this catches a memcpy(NULL, p, 0).) */
static void get_null_buffer(void)
{
	shmp_segment_t *seg = seg_new(1u << 20);
	shmp_ring_t *r = ring_new(seg, 4, 0, 0, 0);
	size_t len = 99;
	T_EQ(shmp_ring_put(r, "x", 1, 0), 0);
	T_EQ(shmp_ring_get(r, NULL, 0, &len, 0), -EMSGSIZE);
	T_EQ(len, 1);
	T_EQ(shmp_ring_get(r, dst, 1, &len, 0), 0);
	T_EQ(shmp_ring_put(r, NULL, 0, 0), 0);
	len = 99;
	T_EQ(shmp_ring_get(r, NULL, 0, &len, 0), 0);
	T_EQ(len, 0);
	T_EQ(shmp_ring_put(r, NULL, 0, 0), 0);
	struct iovec io[1] = { { NULL, 0 } };
	size_t lens[1] = { 99 };
	T_EQ(shmp_ring_get_batch(r, io, lens, 1, 0), 1);
	T_EQ(lens[0], 0);
	shmp_ring_destroy(r);
	shmp_segment_destroy(seg);
}

/* ---- arguments and options ----------------------------------------------- */

static void bad_args(void)
{
	shmp_segment_t *seg = seg_new(1u << 20);
	shmp_ring_t *r = ring_new(seg, 4, 0, 1000, 0);
	struct shmp_ring_ticket t;
	memset(&t, 0, sizeof t);
	struct shmp_ring_stats st;
	size_t len, lens[1];
	struct iovec io[1] = { { dst, 8 } };
	char buf[8];

	T_EQ(shmp_ring_put(NULL, "a", 1, 0), -EINVAL);
	T_EQ(shmp_ring_put(r, NULL, 1, 0), -EINVAL);
	T_EQ(shmp_ring_get(NULL, buf, 8, &len, 0), -EINVAL);
	T_EQ(shmp_ring_get(r, NULL, 8, &len, 0), -EINVAL);
	T_EQ(shmp_ring_get(r, buf, 8, NULL, 0), -EINVAL);
	T_EQ(shmp_ring_put_batch(NULL, io, 1, 0), -EINVAL);
	T_EQ(shmp_ring_put_batch(r, NULL, 1, 0), -EINVAL);
	T_EQ(shmp_ring_get_batch(NULL, io, lens, 1, 0), -EINVAL);
	T_EQ(shmp_ring_get_batch(r, NULL, lens, 1, 0), -EINVAL);
	T_EQ(shmp_ring_get_batch(r, io, NULL, 1, 0), -EINVAL);
	T_EQ(shmp_ring_reserve(NULL, 1, &t, 0), -EINVAL);
	T_EQ(shmp_ring_reserve(r, 1, NULL, 0), -EINVAL);
	T_EQ(shmp_ring_commit(NULL, &t, 0), -EINVAL);
	T_EQ(shmp_ring_commit(r, NULL, 0), -EINVAL);
	T_EQ(shmp_ring_cancel(NULL, &t), -EINVAL);
	T_EQ(shmp_ring_cancel(r, NULL), -EINVAL);
	T_EQ(shmp_ring_peek(NULL, &t, 0), -EINVAL);
	T_EQ(shmp_ring_peek(r, NULL, 0), -EINVAL);
	T_EQ(shmp_ring_release(NULL, &t), -EINVAL);
	T_EQ(shmp_ring_release(r, NULL), -EINVAL);
	T_EQ(shmp_ring_poll(NULL, 0), -EINVAL);
	T_EQ(shmp_ring_close(NULL), -EINVAL);
	T_EQ(shmp_ring_stats(NULL, &st), -EINVAL);
	T_EQ(shmp_ring_stats(r, NULL), -EINVAL);
	T_EQ(shmp_ring_count(NULL), -EINVAL);
	shmp_ring_destroy(NULL);

	/* A valid reserve ticket does not work on a NULL ring. */
	T_EQ(shmp_ring_reserve(r, 2, &t, 0), 0);
	T_EQ(shmp_ring_commit(NULL, &t, 2), -EINVAL);
	T_EQ(shmp_ring_commit(r, &t, 2), 0);

	/* max_message is a hard limit, checked before anything else. */
	T_EQ(shmp_ring_put(r, src, 1001, 0), -EMSGSIZE);
	T_EQ(shmp_ring_reserve(r, 1001, &t, 0), -EMSGSIZE);
	struct iovec big[2] = { { src, 1001 }, { src, 1 } };
	T_EQ(shmp_ring_put_batch(r, big, 2, 0), -EMSGSIZE);
	/* ... and a batch stops before an oversize message. */
	struct iovec mix[3] = { { src, 1 }, { src, 1000 }, { src, 1001 } };
	T_EQ(shmp_ring_put_batch(r, mix, 3, 0), 2);
	T_EQ(shmp_ring_count(r), 3);
	T_EQ(shmp_ring_put(r, src, 1000, 0), 0);
	T_EQ(shmp_ring_count(r), 4);
	shmp_ring_destroy(r);

	/* Options. */
	uint64_t b0 = t_live_blocks(seg);
	struct shmp_ring_opts o;
	o = SHMP_OPTS(shmp_ring_opts, .segment = seg);
	o.sz = 0;
	errno = 0;
	T_CHECK(shmp_ring_create(&o) == NULL && errno == EINVAL);
	errno = 0;
	o = SHMP_OPTS(shmp_ring_opts, .segment = seg, .flags = 4);
	T_CHECK(shmp_ring_create(&o) == NULL && errno == EINVAL);
	errno = 0;
	o = SHMP_OPTS(shmp_ring_opts, .segment = seg, .flags = 0x80000000u);
	T_CHECK(shmp_ring_create(&o) == NULL && errno == EINVAL);
	errno = 0;
	o = SHMP_OPTS(shmp_ring_opts, .segment = seg, .capacity = (1u << 30) + 1);
	T_CHECK(shmp_ring_create(&o) == NULL && errno == EINVAL);
	errno = 0;
	o = SHMP_OPTS(shmp_ring_opts, .segment = seg, .inline_size = (1u << 20) + 1);
	T_CHECK(shmp_ring_create(&o) == NULL && errno == EINVAL);
	errno = 0;
	o = SHMP_OPTS(shmp_ring_opts, .segment = seg, .max_message = SHMP_RING_MAX_MESSAGE + 1);
	T_CHECK(shmp_ring_create(&o) == NULL && errno == EINVAL);
	/* Too big for the segment: ENOMEM and nothing left allocated. */
	errno = 0;
	o = SHMP_OPTS(shmp_ring_opts, .segment = seg, .capacity = 1u << 20);
	T_CHECK(shmp_ring_create(&o) == NULL && errno == SHMP_ESEGFULL);
	T_EQ(t_live_blocks(seg), b0);
	/* The largest max_message is accepted. */
	o = SHMP_OPTS(shmp_ring_opts, .segment = seg, .capacity = 4,
		      .max_message = SHMP_RING_MAX_MESSAGE);
	r = shmp_ring_create(&o);
	T_CHECK(r);
	/* A large message that does not fit the segment: -SHMP_ESEGFULL, no block
	 * kept, no slot taken (the block is allocated before the claim),
	 * nothing delivered or counted lost, and the ring still works. */
	unsigned char *huge = mmap(NULL, 2u << 20, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	T_CHECK(huge != MAP_FAILED);
	uint64_t b1 = t_live_blocks(seg);
	T_EQ(shmp_ring_put(r, huge, 2u << 20, 0), -SHMP_ESEGFULL);
	T_EQ(shmp_ring_reserve(r, 2u << 20, &t, 0), -SHMP_ESEGFULL);
	struct iovec hv[2] = { { huge, 2u << 20 }, { huge, 1 } };
	T_EQ(shmp_ring_put_batch(r, hv, 2, 0), -SHMP_ESEGFULL);
	T_EQ(t_live_blocks(seg), b1);
	T_EQ(shmp_ring_count(r), 0);
	/* ... also with messages before it in a batch: those go in. */
	struct iovec hv2[3] = { { src, 10 }, { huge, 2u << 20 }, { src, 10 } };
	T_EQ(shmp_ring_put_batch(r, hv2, 3, 0), 1);
	T_EQ(shmp_ring_count(r), 1);
	T_EQ(shmp_ring_get(r, dst, BIG, &len, 0), 0);
	T_EQ(len, 10);
	munmap(huge, 2u << 20);
	put_msg(r, 3000, 1000, 0);
	get_msg(r, 3000, 1000, 0);
	T_FAST(shmp_ring_get(r, dst, BIG, &len, 0), -ETIMEDOUT);
	T_EQ(shmp_ring_count(r), 0);
	T_EQ(shmp_ring_stats(r, &st), 0);
	T_EQ(st.lost, 0);
	T_EQ(st.lost_blocks, 0);
	for (unsigned i = 0; i < 4; i++)
		put_msg(r, 10, 1001 + i, 0);
	for (unsigned i = 0; i < 4; i++)
		get_msg(r, 10, 1001 + i, 0);
	shmp_ring_destroy(r);
	T_EQ(t_live_blocks(seg), b0);
	/* An older caller's smaller struct: the fields it has, defaults for
	 * the rest. */
	o = SHMP_OPTS(shmp_ring_opts, .segment = seg, .capacity = 3, .inline_size = 500);
	o.sz = offsetof(struct shmp_ring_opts, inline_size);
	r = shmp_ring_create(&o);
	T_CHECK(r);
	struct shmp_ring_stats st2;
	T_EQ(shmp_ring_stats(r, &st2), 0);
	T_EQ(st2.capacity, 3);
	T_EQ(st2.inline_size, 104);
	shmp_ring_destroy(r);
	/* Slot rounding: inline_size 105 -> 192-byte slots, 168 inline. */
	r = ring_new(seg, 2, 105, 0, 0);
	T_EQ(shmp_ring_stats(r, &st2), 0);
	T_EQ(st2.inline_size, 168);
	uint64_t b2 = t_live_blocks(seg);
	put_msg(r, 168, 1, 0);
	T_EQ(t_live_blocks(seg), b2);
	put_msg(r, 169, 2, 0);
	T_EQ(t_live_blocks(seg), b2 + 1);
	get_msg(r, 168, 1, 0);
	get_msg(r, 169, 2, 0);
	shmp_ring_destroy(r);
	T_EQ(t_live_blocks(seg), b0);
	shmp_segment_destroy(seg);

	/* NULL opts: defaults, in the default segment. */
	r = shmp_ring_create(NULL);
	T_CHECK(r);
	T_EQ(shmp_ring_stats(r, &st2), 0);
	T_EQ(st2.capacity, 1024);
	T_EQ(st2.inline_size, 104);
	put_msg(r, 64u << 10, 3, 0);
	get_msg(r, 64u << 10, 3, 0);
	shmp_ring_destroy(r);
}

/* ---- blocks freed on destroy ------------------------------------------------ */

static void destroy_frees(void)
{
	shmp_segment_t *seg = seg_new(16u << 20);
	uint64_t b0 = t_live_blocks(seg), u0 = t_seg_stats(seg).used_bytes;
	for (unsigned flags = 0; flags < 4; flags++) {
		shmp_ring_t *r = ring_new(seg, 16, 0, 0, flags);
		uint64_t b1 = t_live_blocks(seg);
		/* Laps first, so the messages left sit in reused slots. */
		for (unsigned i = 0; i < 40; i++) {
			put_msg(r, i % 2 ? 5000 : 10, i, 0);
			get_msg(r, i % 2 ? 5000 : 10, i, 0);
		}
		for (unsigned i = 0; i < 10; i++)
			put_msg(r, i % 3 ? 5000 : 10, i, 0);
		T_EQ(t_live_blocks(seg), b1 + 6);
		for (unsigned i = 0; i < 4; i++)
			get_msg(r, i % 3 ? 5000 : 10, i, 0);
		T_EQ(t_live_blocks(seg), b1 + 4);
		shmp_ring_destroy(r);
		T_EQ(t_live_blocks(seg), b0);
		T_EQ(t_seg_stats(seg).used_bytes, u0);
	}
	shmp_segment_destroy(seg);
}

int main(void)
{
	t_watchdog(60);
	src = malloc(BIG);
	dst = malloc(2 * BIG); /* get_batch uses 6 x 200000 bytes */
	T_CHECK(src && dst);
	double t0 = t_now();
	for (unsigned flags = 0; flags < 4; flags++)
		basic(flags);
	timeouts();
	capacities();
	close_wakes();
	poll_and_peek();
	bad_args();
	destroy_frees();
	get_null_buffer();
	poll_skips_cancelled();
	printf("ring contract ok in %.2f s\n", t_now() - t0);
	free(src);
	free(dst);
	return 0;
}
