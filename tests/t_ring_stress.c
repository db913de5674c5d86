/* The ring under load with real processes: P producers and C consumers (1x1,
 * 2x2, 4x2, 2x1 and 1x2 with the SINGLE_* flag of the lone side, and SPSC
 * with both flags) move a few hundred thousand messages of varied sizes
 * (mostly inline, about one in 24 in a segment block, some empty payloads)
 * through rings of small and odd capacities. Producers use put, put_batch
 * and reserve/commit (reserving more than they commit); consumers use get,
 * get_batch and peek/release. Every message carries its producer, sequence
 * number, length and a checksum of its payload; consumers verify all of it
 * and that, per producer, the sequence numbers they see increase; they count
 * each (producer, seq) in a shared Array. At the end every message was
 * delivered exactly once, nothing was counted lost, and every large-message
 * block went back to the segment.
 * Then a blocking ping-pong between two processes over two rings: many round
 * trips, each reply a function of the request, some with large payloads.
 * T_RING_STRESS_N=<messages per run> scales the runs. */
#include "t.h"

#include <stdbool.h>

#define MAGIC 0x5354u
#define HDR 16
#define MAX_MSG 20000
#define WAIT 10.0 /* seconds: any single blocking call taking this long is a hang */

struct hdr {
	uint16_t magic;
	uint16_t prod;
	uint32_t seq;
	uint32_t len;
	uint32_t sum;
};

static uint32_t mix32(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return (uint32_t)x;
}

/* Total length of message (prod, seq): header plus payload. */
static size_t msg_len(unsigned prod, uint32_t seq)
{
	uint32_t h = mix32((uint64_t)prod << 32 | seq);
	if (h % 24 == 0)
		return HDR + 200 + (h >> 8) % (MAX_MSG - HDR - 200); /* a block */
	if (h % 24 == 1)
		return HDR; /* no payload */
	return HDR + (h >> 8) % 80; /* inline */
}

static uint32_t checksum(const unsigned char *p, size_t n)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

/* Write message (prod, seq) at p (msg_len bytes). */
static size_t build(unsigned char *p, unsigned prod, uint32_t seq)
{
	size_t n = msg_len(prod, seq);
	uint64_t x = ((uint64_t)prod << 32 | seq) * 0x9e3779b97f4a7c15ull | 1;
	for (size_t i = HDR; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (unsigned char)x;
	}
	struct hdr h = { MAGIC, (uint16_t)prod, seq, (uint32_t)n, checksum(p + HDR, n - HDR) };
	memcpy(p, &h, sizeof h);
	return n;
}

/* ---- one run --------------------------------------------------------------- */

struct run {
	shmp_ring_t *r;
	unsigned nprod, ncons, per_prod;
	uint32_t *counts; /* shared: [prod * per_prod + seq] */
};

static int producer(struct run *run, unsigned prod)
{
	static unsigned char buf[4][MAX_MSG];
	uint32_t seq = 0;
	while (seq < run->per_prod) {
		int e;
		switch (mix32(seq ^ 0xabcd0000u ^ prod) % 4) {
		case 0: { /* a batch of up to 4 */
			struct iovec iv[4];
			unsigned k = 0;
			for (; k < 4 && seq + k < run->per_prod; k++)
				iv[k] = (struct iovec){ buf[k], build(buf[k], prod, seq + k) };
			e = shmp_ring_put_batch(run->r, iv, k, WAIT);
			if (e > 0) {
				if ((unsigned)e > k)
					return 20;
				seq += (uint32_t)e;
				continue;
			}
			break;
		}
		case 1: { /* zero-copy, reserving more than needed */
			size_t n = msg_len(prod, seq);
			struct shmp_ring_ticket t;
			e = shmp_ring_reserve(run->r, n + 7, &t, WAIT);
			if (e == 0) {
				build(t.data, prod, seq);
				e = shmp_ring_commit(run->r, &t, n);
			}
			break;
		}
		default:
			e = shmp_ring_put(run->r, buf[0], build(buf[0], prod, seq), WAIT);
			break;
		}
		if (e != 0) {
			fprintf(stderr, "producer %u seq %u: %s\n", prod, seq, shmp_strerror(e));
			return 21;
		}
		seq++;
	}
	return 0;
}

/* Check one received message; record it. 0 or a failure code. */
static int take(struct run *run, const unsigned char *p, size_t n, uint32_t *last)
{
	struct hdr h;
	if (n < HDR)
		return 30;
	memcpy(&h, p, sizeof h);
	if (h.magic != MAGIC || h.prod >= run->nprod || h.seq >= run->per_prod)
		return 31;
	if (h.len != n || n != msg_len(h.prod, h.seq))
		return 32;
	if (checksum(p + HDR, n - HDR) != h.sum)
		return 33;
	/* FIFO per producer as this consumer sees it (last[] starts at ~0). */
	if (last[h.prod] != UINT32_MAX && h.seq <= last[h.prod]) {
		fprintf(stderr, "producer %u: seq %u after %u\n", h.prod, h.seq, last[h.prod]);
		return 34;
	}
	last[h.prod] = h.seq;
	__atomic_fetch_add(&run->counts[(size_t)h.prod * run->per_prod + h.seq], 1, __ATOMIC_RELAXED);
	return 0;
}

static int consumer(struct run *run, unsigned cons)
{
	static unsigned char buf[8][MAX_MSG];
	uint32_t last[16];
	memset(last, 0xff, sizeof last);
	for (uint32_t i = 0;; i++) {
		int e;
		switch (mix32(i ^ 0x12340000u ^ cons) % 3) {
		case 0: {
			struct iovec iv[8];
			size_t lens[8];
			for (int k = 0; k < 8; k++)
				iv[k] = (struct iovec){ buf[k], MAX_MSG };
			e = shmp_ring_get_batch(run->r, iv, lens, 8, WAIT);
			if (e > 8)
				return 40;
			for (int k = 0; k < e; k++) {
				int c = take(run, buf[k], lens[k], last);
				if (c)
					return c;
			}
			if (e > 0)
				e = 0;
			break;
		}
		case 1: {
			struct shmp_ring_ticket t;
			e = shmp_ring_peek(run->r, &t, WAIT);
			if (e == 0) {
				int c = take(run, t.data, t.len, last);
				if (c)
					return c;
				e = shmp_ring_release(run->r, &t);
			}
			break;
		}
		default: {
			size_t len;
			e = shmp_ring_get(run->r, buf[0], MAX_MSG, &len, WAIT);
			if (e == 0) {
				int c = take(run, buf[0], len, last);
				if (c)
					return c;
			}
			break;
		}
		}
		if (e == -SHMP_ECLOSED)
			return 0;
		if (e != 0) {
			fprintf(stderr, "consumer %u: %s\n", cons, shmp_strerror(e));
			return 41;
		}
	}
}

static struct run *cur;
static unsigned cur_idx;
static int producer_main(void *arg) { (void)arg; return producer(cur, cur_idx); }
static int consumer_main(void *arg) { (void)arg; return consumer(cur, cur_idx); }

static void run_one(unsigned nprod, unsigned ncons, unsigned cap, unsigned flags, unsigned total)
{
	double t0 = t_now();
	shmp_segment_t *seg = shmp_segment_create(NULL, 64u << 20, NULL);
	T_CHECK(seg);
	struct shmp_segment_stats ss;
	T_EQ(shmp_segment_stats(seg, &ss), 0);
	uint64_t b0 = ss.live_blocks, u0 = ss.used_bytes;
	struct shmp_ring_opts o = SHMP_OPTS(shmp_ring_opts, .segment = seg, .capacity = cap,
					    .max_message = MAX_MSG + 64, .flags = flags);
	struct run run = { shmp_ring_create(&o), nprod, ncons, total / nprod, NULL };
	T_CHECK(run.r);
	/* The counters live in the default segment: the ring's segment
	 * holds only the ring, so its block count is the ring's. */
	shmp_array_t *arr = t_raw_array('I', (size_t)nprod * run.per_prod);
	run.counts = shmp_array_ptr(arr);

	pid_t pp[8], cp[8];
	cur = &run;
	for (unsigned i = 0; i < ncons; i++) {
		cur_idx = i;
		cp[i] = t_fork(consumer_main, NULL);
	}
	for (unsigned i = 0; i < nprod; i++) {
		cur_idx = i;
		pp[i] = t_fork(producer_main, NULL);
	}
	for (unsigned i = 0; i < nprod; i++)
		t_wait_ok(pp[i], 30);
	/* Every message is in; consumers drain and then see "closed". */
	T_EQ(shmp_ring_close(run.r), 0);
	for (unsigned i = 0; i < ncons; i++)
		t_wait_ok(cp[i], 30);

	size_t n = (size_t)nprod * run.per_prod, missing = 0, dup = 0;
	for (size_t i = 0; i < n; i++) {
		if (run.counts[i] == 0 && missing++ < 5)
			fprintf(stderr, "lost: producer %zu seq %zu\n", i / run.per_prod, i % run.per_prod);
		if (run.counts[i] > 1 && dup++ < 5)
			fprintf(stderr, "duplicate (%u): producer %zu seq %zu\n", run.counts[i],
				i / run.per_prod, i % run.per_prod);
	}
	T_EQ(missing, 0);
	T_EQ(dup, 0);
	struct shmp_ring_stats st;
	T_EQ(shmp_ring_stats(run.r, &st), 0);
	T_EQ(st.lost, 0);
	T_EQ(st.lost_blocks, 0);
	T_EQ(st.count, 0);
	T_EQ(st.closed, 1);
	shmp_ring_destroy(run.r);
	T_EQ(shmp_segment_stats(seg, &ss), 0);
	T_EQ(ss.live_blocks, b0);
	T_EQ(ss.used_bytes, u0);
	shmp_array_destroy(arr);
	shmp_segment_destroy(seg);
	printf("%ux%u cap %u flags %u: %zu messages in %.2f s\n", nprod, ncons, cap, flags, n,
	       t_now() - t0);
}

/* ---- ping-pong ----------------------------------------------------------- */

#define PP_BIG 8192

static shmp_ring_t *ping, *pong;
static unsigned pp_rounds;

static uint64_t reply_of(uint64_t v)
{
	return v * 6364136223846793005ull + 1442695040888963407ull;
}

/* Request: 8-byte value, or value + PP_BIG bytes; reply: f(value) and the
 * checksum of what came with it. */
static int pong_main(void *arg)
{
	(void)arg;
	static unsigned char buf[8 + PP_BIG];
	for (unsigned i = 0; i < pp_rounds; i++) {
		size_t len;
		int e = shmp_ring_get(ping, buf, sizeof buf, &len, WAIT);
		if (e != 0 || (len != 8 && len != 8 + PP_BIG))
			return 50;
		uint64_t v, out[2];
		memcpy(&v, buf, 8);
		out[0] = reply_of(v);
		out[1] = checksum(buf + 8, len - 8);
		if (shmp_ring_put(pong, out, sizeof out, WAIT) != 0)
			return 51;
	}
	return 0;
}

static void ping_pong(unsigned rounds)
{
	double t0 = t_now();
	shmp_segment_t *seg = shmp_segment_create(NULL, 4u << 20, NULL);
	T_CHECK(seg);
	struct shmp_segment_stats ss;
	T_EQ(shmp_segment_stats(seg, &ss), 0);
	uint64_t b0 = ss.live_blocks;
	/* Capacity 1: each side blocks on every message. */
	struct shmp_ring_opts o = SHMP_OPTS(shmp_ring_opts, .segment = seg, .capacity = 1,
					    .flags = SHMP_RING_SINGLE_PRODUCER | SHMP_RING_SINGLE_CONSUMER);
	ping = shmp_ring_create(&o);
	o.flags = 0;
	pong = shmp_ring_create(&o);
	T_CHECK(ping && pong);
	pp_rounds = rounds;
	pid_t c = t_fork(pong_main, NULL);
	static unsigned char buf[8 + PP_BIG];
	uint64_t v = 12345;
	for (unsigned i = 0; i < rounds; i++) {
		size_t n = 8;
		memcpy(buf, &v, 8);
		if (i % 64 == 0) {
			for (size_t k = 0; k < PP_BIG; k++)
				buf[8 + k] = (unsigned char)(i + k * 13);
			n += PP_BIG;
		}
		T_EQ(shmp_ring_put(ping, buf, n, WAIT), 0);
		uint64_t out[2];
		size_t len = 0;
		T_EQ(shmp_ring_get(pong, out, sizeof out, &len, WAIT), 0);
		T_EQ(len, sizeof out);
		T_CHECK(out[0] == reply_of(v));
		T_CHECK(out[1] == checksum(buf + 8, n - 8));
		v = out[0] ^ i;
	}
	t_wait_ok(c, 10);
	size_t len;
	T_EQ(shmp_ring_get(pong, buf, sizeof buf, &len, 0), -ETIMEDOUT);
	T_EQ(shmp_ring_get(ping, buf, sizeof buf, &len, 0), -ETIMEDOUT);
	shmp_ring_destroy(ping);
	shmp_ring_destroy(pong);
	T_EQ(shmp_segment_stats(seg, &ss), 0);
	T_EQ(ss.live_blocks, b0);
	shmp_segment_destroy(seg);
	printf("ping-pong: %u round trips in %.2f s\n", rounds, t_now() - t0);
}

int main(void)
{
	t_watchdog(120);
	const char *s = getenv("T_RING_STRESS_N");
	unsigned n = s && *s ? (unsigned)strtoul(s, NULL, 0) : 120000;
	double t0 = t_now();
	run_one(1, 1, 16, 0, n);
	run_one(2, 2, 64, 0, n);
	run_one(4, 2, 5, 0, n);
	run_one(2, 1, 7, SHMP_RING_SINGLE_CONSUMER, n / 2);
	run_one(1, 2, 8, SHMP_RING_SINGLE_PRODUCER, n / 2);
	run_one(1, 1, 1000, SHMP_RING_SINGLE_PRODUCER | SHMP_RING_SINGLE_CONSUMER, n);
	ping_pong(n / 6);
	printf("total %.2f s\n", t_now() - t0);
	return 0;
}
