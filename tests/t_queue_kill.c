/* A Queue peer killed mid-put or mid-get does not wedge the others
 * (include/shmp/ring.h: "A peer killed at any point never wedges the
 * others").
 *
 * Deterministic part, small (inline) and 100 KiB (segment block) messages:
 * - a producer killed holding a claimed slot (reserved, never committed):
 *   a consumer blocked on that slot takes it over and gets the messages
 *   behind it in order; a producer lapping the ring onto it does too; the
 *   message counts as lost (stats().lost == 1) and its block is freed;
 * - a consumer killed holding a message (peeked, never released): other
 *   consumers get the next ones, a producer lapping onto the slot takes it
 *   over; lost == 1; its block is freed;
 * - a producer killed while blocked in put() on a full queue with a large
 *   message: the others go on, and the block it had set aside is freed
 *   (live blocks return to the baseline once the queue is destroyed).
 *
 * Random part, loops of trials for about 8 s in all: two producers and two
 * consumers run on a small Queue (maxsize 8) while a fifth process, a
 * producer or a consumer, is SIGKILLed at a random moment. Survivors must
 * finish (every put and get returns 0 until close, then -SHMP_ECLOSED, all
 * within bounded timeouts); no message is delivered twice; every message
 * delivered is intact; every message whose put returned is delivered,
 * except at most one taken by a killed consumer; at most one message is
 * counted lost and at most one block leaked per trial. Prints the tallies.
 * T_SEED=<seed> replays a run's choices (as far as timing allows). */
#include "t.h"

#include <stdatomic.h>
#include <sys/mman.h>

static int up[2]; /* child -> parent signals */

/* Failed checks that let the test go on; main() fails at the end. */
static int failures;

static uint64_t lost(shmp_queue_t *q)
{
	struct shmp_ring_stats st;
	T_EQ(shmp_ring_stats(shmp_queue_ring(q), &st), 0);
	return st.lost;
}

/* Messages: a 4-byte id, then bytes derived from it. */
static void fill(unsigned char *b, size_t n, uint32_t id)
{
	memcpy(b, &id, 4);
	uint32_t x = id * 2654435761u + 1;
	for (size_t i = 4; i < n; i++) {
		x = x * 1103515245u + 12345u;
		b[i] = (unsigned char)(x >> 24);
	}
}

/* The id of an intact message, or -1. */
static long check(const unsigned char *b, size_t n)
{
	uint32_t id;
	if (n < 4)
		return -1;
	memcpy(&id, b, 4);
	uint32_t x = id * 2654435761u + 1;
	for (size_t i = 4; i < n; i++) {
		x = x * 1103515245u + 12345u;
		if (b[i] != (unsigned char)(x >> 24))
			return -1;
	}
	return id;
}

#define LARGE ((size_t)100 << 10)
#define BUFCAP (LARGE + 4096)

static unsigned char *buf; /* BUFCAP bytes, per process (copied by fork) */
static shmp_queue_t *q;
static size_t msg_size;

static void put_id(uint32_t id)
{
	fill(buf, msg_size, id);
	T_EQ(shmp_queue_put(q, buf, msg_size, 0), 0);
}

static void get_id(uint32_t id, double timeout)
{
	size_t len = 0;
	T_EQ(shmp_queue_get(q, buf, BUFCAP, &len, timeout), 0);
	T_EQ(len, msg_size);
	T_EQ(check(buf, len), id);
}

/* ---- deterministic deaths --------------------------------------------------- */

/* Claims a slot (as put does before copying) and dies holding it. */
static int die_reserved(void *arg)
{
	(void)arg;
	struct shmp_ring_ticket t;
	if (shmp_ring_reserve(shmp_queue_ring(q), msg_size, &t, 5.0) != 0)
		return 1;
	memset(t.data, 0xee, msg_size / 2); /* half written */
	raise(SIGKILL);
	return 2;
}

/* Takes the oldest message (as get does before copying) and dies holding
 * it. */
static int die_peeked(void *arg)
{
	(void)arg;
	struct shmp_ring_ticket t;
	if (shmp_ring_peek(shmp_queue_ring(q), &t, 5.0) != 0 || t.len != msg_size || check(t.data, t.len) != 0)
		return 1;
	raise(SIGKILL);
	return 2;
}

static int blocked_producer(void *arg)
{
	(void)arg;
	fill(buf, msg_size, 99);
	t_signal(up[1]);
	shmp_queue_put(q, buf, msg_size, 10.0);
	return 2; /* killed before this */
}

static shmp_queue_t *mkq(unsigned maxsize, uint64_t *qbase)
{
	shmp_queue_t *nq = shmp_queue_create(&SHMP_OPTS(shmp_queue_opts, .maxsize = maxsize));
	T_CHECK(nq);
	*qbase = t_live_blocks(shmp_segment_default()); /* with the queue's own blocks, no message */
	return nq;
}

static void put_wait(uint32_t id)
{
	fill(buf, msg_size, id);
	double t0 = t_now();
	T_EQ(shmp_queue_put(q, buf, msg_size, 5.0), 0);
	T_CHECK(t_now() - t0 < 2.0);
}

static void deterministic(size_t size)
{
	msg_size = size;
	uint64_t base = t_live_blocks(shmp_segment_default()), qbase;
	char tmp[8];
	size_t len;

	/* Dead producer, found by a consumer blocked on its slot. */
	q = mkq(4, &qbase);
	t_wait_killed(t_spawn(die_reserved, NULL), 10);
	put_id(1);
	put_id(2);
	double t0 = t_now();
	get_id(1, 5.0);
	T_CHECK(t_now() - t0 < 2.0);
	get_id(2, 0);
	T_EQ(lost(q), 1);
	T_EQ(shmp_queue_get(q, tmp, sizeof tmp, &len, 0), -ETIMEDOUT);
	T_EQ(t_live_blocks(shmp_segment_default()), qbase); /* the dead producer's block is freed */
	shmp_queue_destroy(q);
	T_EQ(t_live_blocks(shmp_segment_default()), base);

	/* Dead producer, found by a producer lapping the ring onto it. */
	q = mkq(4, &qbase);
	t_wait_killed(t_spawn(die_reserved, NULL), 10);
	put_id(1);
	put_id(2);
	put_id(3);
	T_EQ(shmp_queue_is_full(q), 1);
	put_wait(4); /* into the dead producer's slot */
	T_EQ(lost(q), 1);
	for (uint32_t i = 1; i <= 4; i++)
		get_id(i, 0);
	T_EQ(shmp_queue_get(q, tmp, sizeof tmp, &len, 0), -ETIMEDOUT);
	T_EQ(t_live_blocks(shmp_segment_default()), qbase);
	shmp_queue_destroy(q);
	T_EQ(t_live_blocks(shmp_segment_default()), base);

	/* Dead consumer: the next messages are got past it; a producer
	 * lapping onto its slot takes it over. */
	q = mkq(4, &qbase);
	for (uint32_t i = 0; i < 4; i++)
		put_id(i);
	t_wait_killed(t_spawn(die_peeked, NULL), 10);
	get_id(1, 0);
	get_id(2, 0);
	put_wait(4); /* slot 0, held by the dead reader */
	T_EQ(lost(q), 1);
	put_id(5);
	get_id(3, 0);
	get_id(4, 0);
	get_id(5, 0);
	T_EQ(shmp_queue_get(q, tmp, sizeof tmp, &len, 0), -ETIMEDOUT);
	T_EQ(lost(q), 1);
	T_EQ(t_live_blocks(shmp_segment_default()), qbase);
	shmp_queue_destroy(q);
	T_EQ(t_live_blocks(shmp_segment_default()), base);

	/* Dead consumer, found by a consumer: with the rest drained, a get
	 * waits on the dead reader's slot (last lap's message) and takes it
	 * over. */
	q = mkq(2, &qbase);
	put_id(0);
	put_id(1);
	t_wait_killed(t_spawn(die_peeked, NULL), 10);
	get_id(1, 0);
	T_EQ(shmp_queue_get(q, tmp, sizeof tmp, &len, 0.1), -ETIMEDOUT);
	T_EQ(lost(q), 1);
	T_EQ(t_live_blocks(shmp_segment_default()), qbase);
	put_id(2);
	put_id(3);
	get_id(2, 0);
	get_id(3, 0);
	shmp_queue_destroy(q);
	T_EQ(t_live_blocks(shmp_segment_default()), base);

	/* A producer killed while blocked in put() on a full queue. */
	q = mkq(1, &qbase);
	put_id(0);
	pid_t c = t_spawn(blocked_producer, NULL);
	T_EQ(t_await(up[0], 10), 1);
	t_sleep_ms(100); /* let it block; if not yet, it is killed before */
	T_CHECK(kill(c, SIGKILL) == 0);
	t_wait_killed(c, 10);
	get_id(0, 0);
	put_id(1);
	get_id(1, 0);
	T_EQ(shmp_queue_get(q, tmp, sizeof tmp, &len, 0), -ETIMEDOUT);
	T_EQ(lost(q), 0);
	/* The block put() set aside for its message must not outlive it.
	 * Checked softly, so that the rest of the test still runs. */
	uint64_t leaked = t_live_blocks(shmp_segment_default()) - qbase;
	if (leaked != 0) {
		fprintf(stderr, "%s:%d: size %zu: a producer killed while waiting in put() "
			"leaked %llu block(s)\n", __FILE__, __LINE__, size, (unsigned long long)leaked);
		failures++;
	}
	shmp_queue_destroy(q);
	T_EQ(t_live_blocks(shmp_segment_default()), base + leaked);
}

/* ---- random kills ----------------------------------------------------------- */

#define MAXPER 65536
#define NPROD 2
#define NCONS 2

struct shared {
	_Atomic uint8_t put_ok[(NPROD + 1) * MAXPER]; /* put returned 0 */
	_Atomic uint8_t seen[(NPROD + 1) * MAXPER];   /* times delivered */
};

static struct shared *sh;
static unsigned per; /* messages per surviving producer */
static int large;

static size_t len_of(uint32_t id)
{
	return large ? LARGE + id % 1000 : 4 + (id * 13u) % 200;
}

/* Producer p; the victim (p == NPROD) goes on until killed. */
static int producer(void *arg)
{
	int p = (int)(intptr_t)arg;
	unsigned n = p == NPROD ? MAXPER : per;
	if (p == NPROD)
		t_signal(up[1]);
	for (unsigned i = 0; i < n; i++) {
		uint32_t id = (uint32_t)p * MAXPER + i;
		size_t len = len_of(id);
		fill(buf, len, id);
		int r = shmp_queue_put(q, buf, len, 10.0);
		if (r != 0) {
			fprintf(stderr, "producer %d: put %u: %s\n", p, i, shmp_strerror(r));
			return 1;
		}
		atomic_store(&sh->put_ok[id], 1);
	}
	if (p == NPROD)
		for (;;)
			pause();
	return 0;
}

/* Consumer c; the victim is c == NCONS. */
static int consumer(void *arg)
{
	int c = (int)(intptr_t)arg;
	if (c == NCONS)
		t_signal(up[1]);
	for (;;) {
		size_t len = 0;
		int r = shmp_queue_get(q, buf, BUFCAP, &len, 10.0);
		if (r == -SHMP_ECLOSED)
			return 0;
		if (r != 0) {
			fprintf(stderr, "consumer %d: get: %s\n", c, shmp_strerror(r));
			return 1;
		}
		long id = check(buf, len);
		if (id < 0 || id >= (NPROD + 1) * MAXPER || len != len_of((uint32_t)id)) {
			fprintf(stderr, "consumer %d: damaged message (len %zu)\n", c, len);
			return 2;
		}
		if (atomic_fetch_add(&sh->seen[id], 1) != 0) {
			fprintf(stderr, "consumer %d: message %ld delivered twice\n", c, id);
			return 3;
		}
	}
}

struct tally {
	int trials[2];     /* by victim: 0 producer, 1 consumer */
	uint64_t lost, missing, leaked[2];
};

static void trial(struct tally *ty)
{
	int victim_consumer = (int)t_rnd(2);
	memset(sh, 0, sizeof *sh);
	uint64_t base = t_live_blocks(shmp_segment_default());
	q = shmp_queue_create(&SHMP_OPTS(shmp_queue_opts, .maxsize = 8));
	T_CHECK(q);

	/* The victim first: it is at work (a consumer waiting for messages,
	 * a producer filling the queue) while the others start. */
	pid_t victim = victim_consumer ? t_spawn(consumer, (void *)(intptr_t)NCONS)
				       : t_spawn(producer, (void *)(intptr_t)NPROD);
	T_EQ(t_await(up[0], 10), 1);
	pid_t cons[NCONS], prod[NPROD];
	for (int c = 0; c < NCONS; c++)
		cons[c] = t_spawn(consumer, (void *)(intptr_t)c);
	for (int p = 0; p < NPROD; p++)
		prod[p] = t_spawn(producer, (void *)(intptr_t)p);
	unsigned us = t_rnd(large ? 20000 : 8000);
	struct timespec d = { 0, (long)us * 1000 };
	while (nanosleep(&d, &d) != 0 && errno == EINTR)
		;
	T_CHECK(kill(victim, SIGKILL) == 0);
	t_wait_killed(victim, 10);

	/* Survivors finish: the producers put everything, the consumers get
	 * the rest and see closed. */
	for (int p = 0; p < NPROD; p++)
		t_wait_ok(prod[p], 20);
	T_EQ(shmp_queue_close(q), 0);
	for (int c = 0; c < NCONS; c++)
		t_wait_ok(cons[c], 20);

	uint64_t missing = 0, unrecorded = 0;
	for (uint32_t id = 0; id < (NPROD + 1) * MAXPER; id++) {
		unsigned ok = sh->put_ok[id], seen = sh->seen[id];
		T_CHECK(seen <= 1);
		if (ok && !seen)
			missing++;
		if (seen && !ok) {
			/* Only the killed producer's last put can be
			 * delivered without having returned. */
			T_CHECK(id / MAXPER == NPROD);
			unrecorded++;
		}
	}
	for (uint32_t i = 0; i < per; i++)
		for (int p = 0; p < NPROD; p++)
			T_EQ(sh->put_ok[(uint32_t)p * MAXPER + i], 1);
	T_CHECK(unrecorded <= 1);
	/* A killed producer loses only its own unpublished message; a killed
	 * consumer at most the one it was taking. */
	T_CHECK(missing <= (uint64_t)victim_consumer);
	uint64_t l = lost(q);
	T_CHECK(l <= 1);
	T_EQ(shmp_queue_is_empty(q), 1);
	shmp_queue_destroy(q);
	uint64_t now = t_live_blocks(shmp_segment_default());
	T_CHECK(now >= base && now - base <= 1);
	ty->trials[victim_consumer]++;
	ty->lost += l;
	ty->missing += missing;
	ty->leaked[victim_consumer] += now - base;
}

static void random_kills(int is_large, double budget)
{
	large = is_large;
	per = is_large ? 40 : 500;
	msg_size = 0;
	struct tally ty = { { 0, 0 }, 0, 0, { 0, 0 } };
	double start = t_now();
	int n = 0;
	while (n < 4 || t_now() - start < budget) {
		trial(&ty);
		n++;
	}
	printf("%s messages: %d trials (%d producer, %d consumer victims) in %.1f s; "
	       "lost %llu, missing %llu, blocks leaked %llu (producer) %llu (consumer)\n",
	       is_large ? "100 KiB" : "small", n, ty.trials[0], ty.trials[1], t_now() - start,
	       (unsigned long long)ty.lost, (unsigned long long)ty.missing,
	       (unsigned long long)ty.leaked[0], (unsigned long long)ty.leaked[1]);
}

int main(void)
{
	t_watchdog(90);
	T_CHECK(pipe(up) == 0);
	T_CHECK(shmp_segment_default());
	buf = malloc(BUFCAP);
	T_CHECK(buf);
	sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	T_CHECK(sh != MAP_FAILED);
	uint64_t seed = t_seed();
	printf("T_SEED=%llu\n", (unsigned long long)seed);

	deterministic(40);
	deterministic(LARGE);
	random_kills(0, 4.0);
	random_kills(1, 4.0);

	munmap(sh, sizeof *sh);
	free(buf);
	return failures ? 1 : 0;
}
