/* Queue and SimpleQueue (see include/shmp/queue.h):
 * - put/get blocking, non-blocking (timeout 0: -ETIMEDOUT at once, Python's
 *   Full/Empty) and with a timeout (returns after about that time); qsize,
 *   empty, full with maxsize 3; zero-length messages;
 * - FIFO order for one producer (thousands of messages of varied lengths,
 *   inline and in segment blocks) read by another process;
 * - a put blocked on a full queue is released by another process's get; a
 *   get blocked on an empty queue in a child wakes when the parent puts;
 * - close(): puts fail with -SHMP_ECLOSED, readers in both processes drain
 *   what is left and then get -SHMP_ECLOSED, close twice is fine, a get or a
 *   put blocked in another process at close wakes with -SHMP_ECLOSED;
 * - -EMSGSIZE on a small buffer gives the needed length and keeps the
 *   message; a message over max_message is refused with -EMSGSIZE;
 * - several producer and consumer processes: every message is delivered
 *   exactly once, and in each producer's order to each consumer;
 * - SimpleQueue put/get/empty/close; NULL arguments give -EINVAL;
 *   task_done/join on a plain Queue or SimpleQueue give -ENOTSUP;
 * - destroying the queues (one still holding large messages) returns the
 *   default segment's live blocks to their baseline. */
#include "t.h"

#include <stdatomic.h>
#include <sys/mman.h>

/* One-byte signals over pipes, for ordering between processes: `up` from
 * a child to the parent, `down` from the parent to a child. */
static int up[2], down[2];

static shmp_queue_t *mkqueue(unsigned maxsize)
{
	shmp_queue_t *q = shmp_queue_create(&SHMP_OPTS(shmp_queue_opts, .maxsize = maxsize));
	T_CHECK(q);
	return q;
}

/* get() and require exactly `want` (a NUL-terminated string, sent without
 * its NUL). */
static void get_str(shmp_queue_t *q, const char *want, double timeout)
{
	char buf[256];
	size_t len = 12345;
	T_EQ(shmp_queue_get(q, buf, sizeof buf, &len, timeout), 0);
	T_EQ(len, strlen(want));
	T_CHECK(memcmp(buf, want, len) == 0);
}

static void put_str(shmp_queue_t *q, const char *s, double timeout)
{
	T_EQ(shmp_queue_put(q, s, strlen(s), timeout), 0);
}

/* ---- non-blocking, timeouts, qsize/empty/full ----------------------------- */

static void test_basic(void)
{
	shmp_queue_t *q = mkqueue(3);
	char buf[64];
	size_t len;

	T_EQ(shmp_queue_qsize(q), 0);
	T_EQ(shmp_queue_is_empty(q), 1);
	T_EQ(shmp_queue_is_full(q), 0);

	/* Empty: get(0) is Python's Empty, at once. */
	double t0 = t_now();
	T_EQ(shmp_queue_get(q, buf, sizeof buf, &len, 0), -ETIMEDOUT);
	T_CHECK(t_now() - t0 < 1.0);

	put_str(q, "a", 0);
	T_EQ(shmp_queue_qsize(q), 1);
	T_EQ(shmp_queue_is_empty(q), 0);
	T_EQ(shmp_queue_is_full(q), 0);
	put_str(q, "bb", SHMP_FOREVER);
	put_str(q, "ccc", 1.0);
	T_EQ(shmp_queue_qsize(q), 3);
	T_EQ(shmp_queue_is_full(q), 1);
	T_EQ(shmp_queue_is_empty(q), 0);

	/* Full: put(0) is Python's Full, at once; put(0.2) after ~0.2 s. */
	t0 = t_now();
	T_EQ(shmp_queue_put(q, "d", 1, 0), -ETIMEDOUT);
	T_CHECK(t_now() - t0 < 1.0);
	T_ABOUT(shmp_queue_put(q, "d", 1, 0.2), -ETIMEDOUT);
	/* The failed puts left nothing behind. */
	T_EQ(shmp_queue_qsize(q), 3);

	get_str(q, "a", SHMP_FOREVER);
	T_EQ(shmp_queue_is_full(q), 0);
	T_EQ(shmp_queue_qsize(q), 2);
	get_str(q, "bb", 0);
	get_str(q, "ccc", 0.5);
	T_EQ(shmp_queue_qsize(q), 0);
	T_EQ(shmp_queue_is_empty(q), 1);

	T_ABOUT(shmp_queue_get(q, buf, sizeof buf, &len, 0.2), -ETIMEDOUT);

	/* Zero-length messages are messages (msg may then be NULL). */
	T_EQ(shmp_queue_put(q, NULL, 0, 0), 0);
	T_EQ(shmp_queue_put(q, "", 0, 0), 0);
	T_EQ(shmp_queue_qsize(q), 2);
	len = 99;
	T_EQ(shmp_queue_get(q, buf, sizeof buf, &len, 0), 0);
	T_EQ(len, 0);
	len = 99;
	T_EQ(shmp_queue_get(q, NULL, 0, &len, 0), 0);
	T_EQ(len, 0);
	T_EQ(shmp_queue_is_empty(q), 1);

	/* Wrap around the 3 slots many times, keeping order. */
	for (int i = 0; i < 50; i++) {
		char m[16];
		snprintf(m, sizeof m, "m%d", i);
		put_str(q, m, 0);
		if (i % 3 == 2) {
			for (int k = i - 2; k <= i; k++) {
				snprintf(m, sizeof m, "m%d", k);
				get_str(q, m, 0);
			}
		}
	}
	get_str(q, "m48", 0);
	get_str(q, "m49", 0);
	T_EQ(shmp_queue_get(q, buf, sizeof buf, &len, 0), -ETIMEDOUT);
	shmp_queue_destroy(q);
}

/* ---- FIFO for one producer --------------------------------------------- */

#define FIFO_N 4000

static size_t fifo_len(int i)
{
	/* 0, small (inline), and up to 3000 (in a segment block). */
	return (size_t)((i * 7919) % 3001);
}

static shmp_queue_t *fifo_q;

static int fifo_consumer(void *arg)
{
	(void)arg;
	static unsigned char buf[4096];
	for (int i = 0; i < FIFO_N; i++) {
		size_t len = 0;
		int r = shmp_queue_get(fifo_q, buf, sizeof buf, &len, 10.0);
		if (r != 0) {
			fprintf(stderr, "consumer: get %d: %s\n", i, shmp_strerror(r));
			return 1;
		}
		if (len != fifo_len(i) || !t_filled(buf, len, (uint32_t)i)) {
			fprintf(stderr, "consumer: message %d out of order or damaged (len %zu)\n", i, len);
			return 1;
		}
	}
	size_t len;
	return shmp_queue_get(fifo_q, buf, sizeof buf, &len, 0) == -ETIMEDOUT ? 0 : 1;
}

static void test_fifo(void)
{
	fifo_q = mkqueue(16); /* small: the producer blocks and the ring wraps */
	pid_t c = t_spawn(fifo_consumer, NULL);
	static unsigned char buf[4096];
	for (int i = 0; i < FIFO_N; i++) {
		size_t n = fifo_len(i);
		t_fill(buf, n, (uint32_t)i);
		T_EQ(shmp_queue_put(fifo_q, buf, n, 10.0), 0);
	}
	t_wait_ok(c, 30);
	T_EQ(shmp_queue_is_empty(fifo_q), 1);
	shmp_queue_destroy(fifo_q);
}

/* ---- blocking across processes ----------------------------------------- */

static shmp_queue_t *bq;

static int blocked_putter(void *arg)
{
	(void)arg;
	double t0 = t_now();
	t_signal(up[1]);
	int r = shmp_queue_put(bq, "C", 1, 10.0);
	/* The parent gets only 150 ms after our signal: we were blocked. */
	return r == 0 && t_now() - t0 >= 0.1 ? 0 : 1;
}

static int blocked_getter(void *arg)
{
	(void)arg;
	char buf[16];
	size_t len = 0;
	double t0 = t_now();
	t_signal(up[1]);
	int r = shmp_queue_get(bq, buf, sizeof buf, &len, 10.0);
	if (r != 0 || len != 5 || memcmp(buf, "hello", 5) != 0)
		return 1;
	return t_now() - t0 >= 0.1 ? 0 : 2;
}

static void test_blocking(void)
{
	/* A put blocked on a full queue, released by our get. */
	bq = mkqueue(2);
	put_str(bq, "A", 0);
	put_str(bq, "B", 0);
	T_EQ(shmp_queue_is_full(bq), 1);
	pid_t c = t_spawn(blocked_putter, NULL);
	T_EQ(t_await(up[0], 10), 1);
	/* Let the child reach its blocking put; if this sleep is too short
	 * the put merely blocks less long, still until our get. */
	t_sleep_ms(150);
	T_EQ(shmp_queue_is_full(bq), 1);
	get_str(bq, "A", 0);
	t_wait_ok(c, 10);
	get_str(bq, "B", 0);
	get_str(bq, "C", 0);
	T_EQ(shmp_queue_is_empty(bq), 1);
	shmp_queue_destroy(bq);

	/* A get blocked on an empty queue in the child, woken by our put. */
	bq = mkqueue(0);
	c = t_spawn(blocked_getter, NULL);
	T_EQ(t_await(up[0], 10), 1);
	t_sleep_ms(150); /* as above */
	put_str(bq, "hello", 0);
	t_wait_ok(c, 10);
	T_EQ(shmp_queue_is_empty(bq), 1);
	shmp_queue_destroy(bq);
}

/* ---- close ----------------------------------------------------------------- */

static shmp_queue_t *cq;

/* Drains one message, waits for the parent to drain the rest, then must
 * see closed-and-drained. */
static int close_reader(void *arg)
{
	(void)arg;
	char buf[16];
	size_t len = 0;
	if (shmp_queue_get(cq, buf, sizeof buf, &len, 5.0) != 0 || len != 2 || memcmp(buf, "m1", 2))
		return 1;
	if (shmp_queue_put(cq, "x", 1, 0) != -SHMP_ECLOSED)
		return 2;
	t_signal(up[1]);
	T_EQ(t_await(down[0], 10), 1); /* parent drained the rest */
	if (shmp_queue_get(cq, buf, sizeof buf, &len, 0) != -SHMP_ECLOSED)
		return 3;
	double t0 = t_now();
	if (shmp_queue_get(cq, buf, sizeof buf, &len, 5.0) != -SHMP_ECLOSED || t_now() - t0 > 2.0)
		return 4;
	return 0;
}

static int close_blocked_get(void *arg)
{
	(void)arg;
	char buf[16];
	size_t len;
	t_signal(up[1]);
	double t0 = t_now();
	int r = shmp_queue_get(cq, buf, sizeof buf, &len, 10.0);
	if (r != -SHMP_ECLOSED) {
		fprintf(stderr, "blocked get at close: %s\n", shmp_strerror(r));
		return 1;
	}
	return t_now() - t0 < 5.0 ? 0 : 2;
}

static int close_blocked_put(void *arg)
{
	(void)arg;
	t_signal(up[1]);
	double t0 = t_now();
	int r = shmp_queue_put(cq, "late", 4, 10.0);
	if (r != -SHMP_ECLOSED) {
		fprintf(stderr, "blocked put at close: %s\n", shmp_strerror(r));
		return 1;
	}
	return t_now() - t0 < 5.0 ? 0 : 2;
}

static void test_close(void)
{
	char buf[16];
	size_t len;

	cq = mkqueue(8);
	put_str(cq, "m1", 0);
	put_str(cq, "m2", 0);
	put_str(cq, "m3", 0);
	T_EQ(shmp_queue_close(cq), 0);
	T_EQ(shmp_queue_close(cq), 0); /* twice is fine */
	T_EQ(shmp_queue_put(cq, "m4", 2, 0), -SHMP_ECLOSED);
	T_EQ(shmp_queue_put(cq, "m4", 2, 1.0), -SHMP_ECLOSED);
	T_EQ(shmp_queue_put(cq, "m4", 2, SHMP_FOREVER), -SHMP_ECLOSED);
	T_EQ(shmp_queue_qsize(cq), 3);
	pid_t c = t_spawn(close_reader, NULL);
	T_EQ(t_await(up[0], 10), 1); /* child took m1 */
	get_str(cq, "m2", 0);
	get_str(cq, "m3", SHMP_FOREVER);
	T_EQ(shmp_queue_get(cq, buf, sizeof buf, &len, 0), -SHMP_ECLOSED);
	double t0 = t_now();
	T_EQ(shmp_queue_get(cq, buf, sizeof buf, &len, SHMP_FOREVER), -SHMP_ECLOSED);
	T_CHECK(t_now() - t0 < 2.0);
	T_EQ(shmp_queue_is_empty(cq), 1);
	t_signal(down[1]);
	t_wait_ok(c, 10);
	T_EQ(shmp_queue_close(cq), 0);
	shmp_queue_destroy(cq);

	/* A get blocked in another process at close wakes with -SHMP_ECLOSED. */
	cq = mkqueue(4);
	c = t_spawn(close_blocked_get, NULL);
	T_EQ(t_await(up[0], 10), 1);
	t_sleep_ms(150); /* let it block; if it has not yet, it sees closed at once */
	T_EQ(shmp_queue_close(cq), 0);
	t_wait_ok(c, 10);
	shmp_queue_destroy(cq);

	/* A put blocked on a full queue at close wakes with -SHMP_ECLOSED,
	 * and what was in the queue is still delivered. */
	cq = mkqueue(1);
	put_str(cq, "kept", 0);
	c = t_spawn(close_blocked_put, NULL);
	T_EQ(t_await(up[0], 10), 1);
	t_sleep_ms(150); /* as above */
	T_EQ(shmp_queue_close(cq), 0);
	t_wait_ok(c, 10);
	get_str(cq, "kept", 0);
	T_EQ(shmp_queue_get(cq, buf, sizeof buf, &len, 1.0), -SHMP_ECLOSED);
	shmp_queue_destroy(cq);
}

/* ---- message sizes ------------------------------------------------------- */

static void test_msgsize(void)
{
	shmp_queue_t *q = mkqueue(8);
	static unsigned char big[500], buf[600];
	t_fill(big, sizeof big, 500);
	T_EQ(shmp_queue_put(q, big, sizeof big, 0), 0); /* in a segment block */
	T_EQ(shmp_queue_put(q, "0123456789abcdef", 16, 0), 0); /* inline */

	size_t len = 0;
	T_EQ(shmp_queue_get(q, buf, 100, &len, 0), -EMSGSIZE);
	T_EQ(len, 500);
	len = 0;
	T_EQ(shmp_queue_get(q, buf, 499, &len, 1.0), -EMSGSIZE);
	T_EQ(len, 500);
	len = 0;
	T_EQ(shmp_queue_get(q, NULL, 0, &len, 0), -EMSGSIZE);
	T_EQ(len, 500);
	T_EQ(shmp_queue_qsize(q), 2); /* kept */
	T_EQ(shmp_queue_get(q, buf, 500, &len, 0), 0);
	T_EQ(len, 500);
	T_CHECK(t_filled(buf, 500, 500));

	T_EQ(shmp_queue_get(q, buf, 15, &len, 0), -EMSGSIZE);
	T_EQ(len, 16);
	T_EQ(shmp_queue_get(q, buf, 16, &len, 0), 0);
	T_EQ(len, 16);
	T_CHECK(memcmp(buf, "0123456789abcdef", 16) == 0);
	T_EQ(shmp_queue_is_empty(q), 1);
	shmp_queue_destroy(q);

	/* max_message bounds what put accepts. */
	q = shmp_queue_create(&SHMP_OPTS(shmp_queue_opts, .maxsize = 4, .max_message = 400));
	T_CHECK(q);
	T_EQ(shmp_queue_put(q, big, 401, 0), -EMSGSIZE);
	T_EQ(shmp_queue_put(q, big, 401, SHMP_FOREVER), -EMSGSIZE);
	T_EQ(shmp_queue_qsize(q), 0);
	T_EQ(shmp_queue_put(q, big, 400, 0), 0);
	T_EQ(shmp_queue_get(q, buf, sizeof buf, &len, 0), 0);
	T_EQ(len, 400);
	T_CHECK(memcmp(buf, big, 400) == 0);
	shmp_queue_destroy(q);
}

/* ---- several producers and consumers ------------------------------------- */

#define MP_PRODUCERS 3
#define MP_CONSUMERS 2
#define MP_PER 3000

struct mp_shared {
	_Atomic uint32_t seen[MP_PRODUCERS * MP_PER];
	_Atomic uint32_t got[MP_CONSUMERS];
};

static struct mp_shared *mp;
static shmp_queue_t *mq;

/* Message: producer (4 bytes), sequence (4 bytes), then payload bytes
 * derived from both. */
static size_t mp_len(int p, int i)
{
	return 8 + (size_t)((i * 31 + p * 17) % 300);
}

static int mp_producer(void *arg)
{
	int p = (int)(intptr_t)arg;
	unsigned char buf[512];
	for (int i = 0; i < MP_PER; i++) {
		uint32_t h[2] = { (uint32_t)p, (uint32_t)i };
		size_t n = mp_len(p, i);
		memcpy(buf, h, 8);
		t_fill(buf + 8, n - 8, (uint32_t)(p * MP_PER + i));
		int r = shmp_queue_put(mq, buf, n, 10.0);
		if (r != 0) {
			fprintf(stderr, "producer %d: put %d: %s\n", p, i, shmp_strerror(r));
			return 1;
		}
	}
	return 0;
}

static int mp_consumer(void *arg)
{
	int c = (int)(intptr_t)arg;
	int last[MP_PRODUCERS];
	unsigned char buf[512];
	for (int p = 0; p < MP_PRODUCERS; p++)
		last[p] = -1;
	for (;;) {
		size_t len = 0;
		int r = shmp_queue_get(mq, buf, sizeof buf, &len, 10.0);
		if (r == -SHMP_ECLOSED)
			return 0;
		if (r != 0) {
			fprintf(stderr, "consumer %d: get: %s\n", c, shmp_strerror(r));
			return 1;
		}
		uint32_t h[2];
		if (len < 8)
			return 2;
		memcpy(h, buf, 8);
		if (h[0] >= MP_PRODUCERS || h[1] >= MP_PER || len != mp_len((int)h[0], (int)h[1]) ||
		    !t_filled(buf + 8, len - 8, h[0] * MP_PER + h[1])) {
			fprintf(stderr, "consumer %d: damaged message\n", c);
			return 3;
		}
		/* Each producer's messages reach each consumer in order. */
		if ((int)h[1] <= last[h[0]]) {
			fprintf(stderr, "consumer %d: producer %u's %u after %d\n", c, h[0], h[1], last[h[0]]);
			return 4;
		}
		last[h[0]] = (int)h[1];
		atomic_fetch_add(&mp->seen[h[0] * MP_PER + h[1]], 1);
		atomic_fetch_add(&mp->got[c], 1);
	}
}

static void test_mpmc(void)
{
	mp = mmap(NULL, sizeof *mp, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	T_CHECK(mp != MAP_FAILED);
	mq = mkqueue(64);
	pid_t prod[MP_PRODUCERS], cons[MP_CONSUMERS];
	for (int c = 0; c < MP_CONSUMERS; c++)
		cons[c] = t_spawn(mp_consumer, (void *)(intptr_t)c);
	for (int p = 0; p < MP_PRODUCERS; p++)
		prod[p] = t_spawn(mp_producer, (void *)(intptr_t)p);
	for (int p = 0; p < MP_PRODUCERS; p++)
		t_wait_ok(prod[p], 30);
	/* Consumers drain what is left, then see closed and exit. */
	T_EQ(shmp_queue_close(mq), 0);
	for (int c = 0; c < MP_CONSUMERS; c++)
		t_wait_ok(cons[c], 30);

	uint32_t total = 0;
	for (int c = 0; c < MP_CONSUMERS; c++)
		total += mp->got[c];
	T_EQ(total, MP_PRODUCERS * MP_PER);
	for (int i = 0; i < MP_PRODUCERS * MP_PER; i++) {
		if (mp->seen[i] != 1) {
			fprintf(stderr, "message %d (producer %d, seq %d) seen %u times\n", i, i / MP_PER,
				i % MP_PER, mp->seen[i]);
			exit(1);
		}
	}
	printf("mpmc: consumers got %u and %u messages\n", mp->got[0], mp->got[1]);
	T_EQ(shmp_queue_is_empty(mq), 1);
	shmp_queue_destroy(mq);
	munmap(mp, sizeof *mp);
}

/* ---- SimpleQueue ---------------------------------------------------------- */

static void test_simplequeue(void)
{
	shmp_queue_t *q = shmp_simple_queue_create(NULL);
	T_CHECK(q);
	char buf[16];
	size_t len;
	T_EQ(shmp_queue_is_empty(q), 1);
	T_EQ(shmp_queue_get(q, buf, sizeof buf, &len, 0), -ETIMEDOUT);
	put_str(q, "one", SHMP_FOREVER);
	put_str(q, "two", SHMP_FOREVER);
	T_EQ(shmp_queue_is_empty(q), 0);
	T_EQ(shmp_queue_qsize(q), 2);
	get_str(q, "one", SHMP_FOREVER);
	T_EQ(shmp_queue_close(q), 0);
	T_EQ(shmp_queue_put(q, "three", 5, SHMP_FOREVER), -SHMP_ECLOSED);
	get_str(q, "two", SHMP_FOREVER);
	T_EQ(shmp_queue_is_empty(q), 1);
	T_EQ(shmp_queue_get(q, buf, sizeof buf, &len, SHMP_FOREVER), -SHMP_ECLOSED);
	T_EQ(shmp_queue_close(q), 0);
	/* Not a JoinableQueue. */
	T_EQ(shmp_queue_task_done(q), -ENOTSUP);
	T_EQ(shmp_queue_join(q, 0), -ENOTSUP);
	shmp_queue_destroy(q);
}

/* ---- bad arguments --------------------------------------------------------- */

static void test_args(void)
{
	char buf[16];
	size_t len;
	T_EQ(shmp_queue_put(NULL, "x", 1, 0), -EINVAL);
	T_EQ(shmp_queue_get(NULL, buf, sizeof buf, &len, 0), -EINVAL);
	T_EQ(shmp_queue_qsize(NULL), -EINVAL);
	T_EQ(shmp_queue_is_empty(NULL), -EINVAL);
	T_EQ(shmp_queue_is_full(NULL), -EINVAL);
	T_EQ(shmp_queue_close(NULL), -EINVAL);
	T_EQ(shmp_queue_task_done(NULL), -EINVAL);
	T_EQ(shmp_queue_join(NULL, 0), -EINVAL);
	T_CHECK(shmp_queue_ring(NULL) == NULL);
	shmp_queue_destroy(NULL);

	errno = 0;
	T_CHECK(shmp_queue_create(&(struct shmp_queue_opts){ .sz = 0 }) == NULL);
	T_EQ(errno, EINVAL);

	shmp_queue_t *q = mkqueue(4);
	T_CHECK(shmp_queue_ring(q) != NULL);
	T_EQ(shmp_queue_put(q, NULL, 3, 0), -EINVAL);
	T_EQ(shmp_queue_qsize(q), 0);
	put_str(q, "abc", 0);
	T_EQ(shmp_queue_get(q, buf, sizeof buf, NULL, 0), -EINVAL);
	T_EQ(shmp_queue_get(q, NULL, 8, &len, 0), -EINVAL);
	T_EQ(shmp_queue_qsize(q), 1); /* nothing taken by the failed gets */
	/* A plain Queue has no task_done/join. */
	T_EQ(shmp_queue_task_done(q), -ENOTSUP);
	T_EQ(shmp_queue_join(q, 0), -ENOTSUP);
	T_EQ(shmp_queue_join(q, SHMP_FOREVER), -ENOTSUP);
	get_str(q, "abc", 0);
	shmp_queue_destroy(q);
}

int main(void)
{
	t_watchdog(90);
	T_CHECK(pipe(up) == 0 && pipe(down) == 0);
	T_CHECK(shmp_segment_default());
	uint64_t base = t_live_blocks(shmp_segment_default());

	test_basic();
	test_fifo();
	test_blocking();
	test_close();
	test_msgsize();
	test_mpmc();
	test_simplequeue();
	test_args();
	T_EQ(t_live_blocks(shmp_segment_default()), base);

	/* Destroying a queue that still holds large messages frees their
	 * blocks too. */
	shmp_queue_t *q = mkqueue(8);
	static unsigned char big[20000];
	t_fill(big, sizeof big, 7);
	for (int i = 0; i < 5; i++)
		T_EQ(shmp_queue_put(q, big, sizeof big, 0), 0);
	T_CHECK(t_live_blocks(shmp_segment_default()) > base);
	shmp_queue_destroy(q);
	T_EQ(t_live_blocks(shmp_segment_default()), base);
	return 0;
}
