/* A live ring whose shared state is scribbled on (include/shmp/ring.h:
 * "a corrupted ring makes calls fail with -SHMP_ECORRUPT, never read or write
 * out of bounds").
 *
 * Each round makes a private anonymous segment, a canary block, the ring (odd
 * and even capacities, small and default inline sizes, every flag
 * combination), a second canary block, and some traffic (inline and large
 * messages, some left in the ring). The ring's shared state lies between the
 * two canaries (its header, indices, futex words, slot words, lengths,
 * flags, block offsets, payloads): random bytes and mutated 64-bit words
 * (bit flips, small deltas, new sequence or state bits, random values) are
 * written there, and then put/get/peek/reserve/batches/poll/count/stats run
 * hundreds of times with timeouts of 0 or 10 ms, with more scribbling in
 * between. Every call must return 0 (or a count) or one of -ETIMEDOUT,
 * -EMSGSIZE, -ENOMEM, -SHMP_ECLOSED, -SHMP_ECORRUPT; lengths returned must fit
 * the buffer; peek must point inside the segment; no call may take more than
 * a second; both canaries must be intact afterwards; PROT_NONE guard pages
 * around the segment (when the address space allows) catch stray accesses.
 * Rounds run in child processes, so a crash or hang is reported with the
 * seed that reproduces it: T_SEED=<seed> T_FUZZ_BATCHES=1 replays one batch.
 * Last, a deterministic case: a block offset aimed at another object's live
 * block must not make the ring read, overwrite or free it. */
#include "t.h"

#include <stdbool.h>
#include <sys/mman.h>

#define SEG_SIZE (1u << 20)
#define CANARY 4096
#define ROUNDS 60   /* per batch (child) */
#define OPS 300     /* calls per round */
#define MAX_WALL 10.0

static uint64_t rng;
static uint64_t rnd64(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}
static unsigned rnd(unsigned n)
{
	return (unsigned)(rnd64() % n);
}

static unsigned char msg[1u << 17], buf[1u << 17];
static unsigned long n_calls, n_corrupt, n_ok, n_guarded;

static bool allowed(int e)
{
	return e == 0 || e == -ETIMEDOUT || e == -EMSGSIZE || e == -ENOMEM || e == -SHMP_ECLOSED ||
	       e == -SHMP_ECORRUPT;
}

#define FAIL(...)                                                   \
	do {                                                        \
		fprintf(stderr, "round %d op %d: ", round, op);     \
		fprintf(stderr, __VA_ARGS__);                       \
		fprintf(stderr, "\n");                              \
		exit(1);                                            \
	} while (0)

static void canary_fill(unsigned char *p, unsigned tag)
{
	for (unsigned i = 0; i < CANARY; i++)
		p[i] = (unsigned char)(i * 29 + tag);
}

static bool canary_ok(const unsigned char *p, unsigned tag)
{
	for (unsigned i = 0; i < CANARY; i++)
		if (p[i] != (unsigned char)(i * 29 + tag))
			return false;
	return true;
}

/* A segment with PROT_NONE guard pages right before and after it, where the
 * address space allows: reserve segment + 2 pages, open a segment-sized hole
 * in the middle, and let the segment's mmap (placed top-down, in the highest
 * gap that fits) land in it; else try MAP_FIXED_NOREPLACE around wherever
 * it went. *placed: how many guards are in place. */
static shmp_segment_t *guarded_segment(void *g[2], int *placed)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	char *res = mmap(NULL, SEG_SIZE + 2 * ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	T_CHECK(res != MAP_FAILED);
	T_CHECK(munmap(res + ps, SEG_SIZE) == 0);
	shmp_segment_t *seg = shmp_segment_create(NULL, SEG_SIZE, NULL);
	T_CHECK(seg);
	char *b = shmp_segment_base(seg);
	size_t sz = shmp_segment_size(seg);
	g[0] = g[1] = NULL;
	*placed = 0;
	if (b == res + ps && sz == SEG_SIZE) {
		g[0] = res;
		g[1] = res + ps + SEG_SIZE;
		*placed = 2;
		return seg;
	}
	munmap(res, ps);
	munmap(res + ps + SEG_SIZE, ps);
	char *want[2] = { b - ps, b + sz };
	for (int i = 0; i < 2; i++) {
		void *p = mmap(want[i], ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
			       -1, 0);
		if (p == want[i]) {
			g[i] = p;
			++*placed;
		} else if (p != MAP_FAILED) {
			munmap(p, ps);
		}
	}
	return seg;
}

static void unguard(void *g[2])
{
	long ps = sysconf(_SC_PAGESIZE);
	for (int i = 0; i < 2; i++)
		if (g[i])
			munmap(g[i], (size_t)ps);
}

/* Scribble on [lo, hi). */
static void scribble(unsigned char *lo, unsigned char *hi, unsigned n)
{
	size_t span = (size_t)(hi - lo);
	for (unsigned k = 0; k < n; k++) {
		if (rnd(3) == 0) {
			lo[rnd64() % span] = (unsigned char)rnd64();
			continue;
		}
		/* A 64-bit word at an 8-byte boundary: slot words, indices,
		 * lengths and block offsets all sit on one. */
		size_t off = (rnd64() % (span / 8)) * 8;
		uint64_t w;
		memcpy(&w, lo + off, 8);
		switch (rnd(7)) {
		case 0: w ^= 1ull << rnd(64); break;
		case 1: w += (uint64_t)rnd(9) - 4; break;
		case 2: w += (uint64_t)(rnd(9) - 4) << 32; break;       /* sequence */
		case 3: w ^= (uint64_t)rnd(4) << 30; break;             /* state */
		case 4: w = (w & ~0x3fffffffull) | rnd(0x3fffffff); break; /* owner */
		case 5: w = rnd64(); break;
		default: w = (uint64_t)rnd(4) == 0 ? 0 : ~0ull >> rnd(64); break;
		}
		memcpy(lo + off, &w, 8);
	}
}

static size_t msg_size(void)
{
	switch (rnd(6)) {
	case 0: return 0;
	case 1: return 200 + rnd(5000);
	case 2: return 1 + rnd((1u << 16) + 100); /* some over max_message */
	default: return rnd(120);
	}
}

static double tmo(void)
{
	return rnd(100) == 0 ? 0.01 : 0.0;
}

static void run_round(int round)
{
	int op = -1;
	void *g[2];
	int placed;
	shmp_segment_t *seg = guarded_segment(g, &placed);
	n_guarded += (unsigned long)placed;
	unsigned char *base = shmp_segment_base(seg);
	uint64_t ca, cb;
	T_EQ(shmp_segment_alloc(seg, CANARY, 64, &ca), 0);
	static const unsigned caps[] = { 1, 2, 3, 4, 5, 8, 16 };
	static const unsigned inl[] = { 0, 1, 16, 40, 200 };
	struct shmp_ring_opts o = SHMP_OPTS(shmp_ring_opts, .segment = seg, .capacity = caps[rnd(7)],
					    .inline_size = inl[rnd(5)], .max_message = 1u << 16,
					    .flags = rnd(4));
	shmp_ring_t *r = shmp_ring_create(&o);
	T_CHECK(r);
	T_EQ(shmp_segment_alloc(seg, CANARY, 64, &cb), 0);
	unsigned char *A = base + ca, *B = base + cb;
	canary_fill(A, 1);
	canary_fill(B, 2);
	/* The ring's blocks lie between the canaries (a fresh segment
	 * allocates upward); B's 16-byte allocator prefix is B's own. */
	unsigned char *lo = A + CANARY, *hi = B - 16;
	T_CHECK(hi > lo + 64);

	/* Some honest traffic first: laps, blocks, messages left inside. */
	size_t len;
	for (unsigned i = 0, n = rnd(40); i < n; i++) {
		size_t m = msg_size();
		if (shmp_ring_put(r, msg, m, 0) == 0 && rnd(3))
			shmp_ring_get(r, buf, sizeof buf, &len, 0);
	}
	struct shmp_ring_ticket held;
	bool holding = false;

	scribble(lo, hi, 1 + rnd(12));
	for (op = 0; op < OPS; op++) {
		if (rnd(40) == 0)
			scribble(lo, hi, 1 + rnd(4));
		int e;
		double t0 = t_now();
		switch (rnd(11)) {
		case 0:
		case 1:
			e = shmp_ring_put(r, msg, msg_size(), tmo());
			break;
		case 2:
		case 3: {
			size_t cap = rnd(2) ? sizeof buf : rnd(200);
			len = (size_t)-1;
			e = shmp_ring_get(r, buf, cap, &len, tmo());
			if (e == 0 && len > cap)
				FAIL("get: length %zu > capacity %zu", len, cap);
			break;
		}
		case 4: {
			struct shmp_ring_ticket t;
			e = shmp_ring_peek(r, &t, tmo());
			if (e == 0) {
				uint64_t off;
				if (shmp_segment_offset(seg, t.data, &off) != 0 || t.len > SEG_SIZE ||
				    off + t.len > SEG_SIZE)
					FAIL("peek: %p + %zu outside the segment", t.data, t.len);
				volatile unsigned char sink = 0;
				for (size_t i = 0; i < t.len; i += 61)
					sink ^= ((unsigned char *)t.data)[i];
				(void)sink;
				if (!holding && rnd(4) == 0) {
					held = t;
					holding = true;
				} else {
					e = shmp_ring_release(r, &t);
				}
			}
			break;
		}
		case 5: {
			struct shmp_ring_ticket t;
			size_t m = msg_size();
			e = shmp_ring_reserve(r, m, &t, tmo());
			if (e == 0) {
				uint64_t off;
				if (shmp_segment_offset(seg, t.data, &off) != 0 || off + m > SEG_SIZE)
					FAIL("reserve: %p + %zu outside the segment", t.data, m);
				memset(t.data, 0xab, m);
				e = rnd(3) ? shmp_ring_commit(r, &t, m ? rnd((unsigned)m) : 0)
					   : shmp_ring_cancel(r, &t);
			}
			break;
		}
		case 6: {
			struct iovec iv[4];
			unsigned n = 1 + rnd(4);
			for (unsigned i = 0; i < n; i++)
				iv[i] = (struct iovec){ msg, msg_size() };
			e = shmp_ring_put_batch(r, iv, n, tmo());
			if (e > (int)n)
				FAIL("put_batch: %d > %u", e, n);
			if (e > 0)
				e = 0;
			break;
		}
		case 7: {
			struct iovec iv[4];
			size_t lens[4];
			unsigned n = 1 + rnd(4);
			for (unsigned i = 0; i < n; i++)
				iv[i] = (struct iovec){ buf + i * (sizeof buf / 4),
							rnd(2) ? sizeof buf / 4 : rnd(100) };
			e = shmp_ring_get_batch(r, iv, lens, n, tmo());
			if (e > (int)n)
				FAIL("get_batch: %d > %u", e, n);
			for (int i = 0; i < e; i++)
				if (lens[i] > iv[i].iov_len)
					FAIL("get_batch: length %zu > capacity %zu", lens[i], iv[i].iov_len);
			if (e > 0)
				e = 0;
			break;
		}
		case 8:
			e = shmp_ring_poll(r, tmo());
			break;
		case 9: {
			int c = shmp_ring_count(r);
			if (c < 0 || c > (int)o.capacity)
				FAIL("count %d (capacity %u)", c, o.capacity);
			struct shmp_ring_stats st;
			e = shmp_ring_stats(r, &st);
			if (e == 0 && (st.capacity != o.capacity || st.count > o.capacity))
				FAIL("stats: capacity %u count %u", st.capacity, st.count);
			break;
		}
		default:
			if (holding) {
				e = shmp_ring_release(r, &held);
				holding = false;
			} else {
				e = rnd(64) == 0 ? shmp_ring_close(r) : 0;
			}
			break;
		}
		n_calls++;
		double dt = t_now() - t0;
		if (dt > 1.0)
			FAIL("a call took %.2f s", dt);
		if (!allowed(e))
			FAIL("returned %d (%s)", e, shmp_strerror(e));
		if (e == -SHMP_ECORRUPT)
			n_corrupt++;
		if (e == 0)
			n_ok++;
	}
	if (holding)
		shmp_ring_release(r, &held);
	op = OPS;
	if (!canary_ok(A, 1))
		FAIL("canary before the ring changed");
	if (!canary_ok(B, 2))
		FAIL("canary after the ring changed");
	shmp_ring_destroy(r);
	shmp_segment_destroy(seg);
	unguard(g);
}

static int batch(void *arg)
{
	uint64_t seed = *(uint64_t *)arg;
	rng = seed ? seed : 1;
	alarm(30); /* a hang in the child ends it, reported by the parent */
	for (int round = 0; round < ROUNDS; round++)
		run_round(round);
	printf("  seed %#llx: %lu calls, %lu ok, %lu -SHMP_ECORRUPT, %lu guard pages\n",
	       (unsigned long long)seed, n_calls, n_ok, n_corrupt, n_guarded);
	fflush(stdout);
	return 0;
}

/* A block offset aimed at another object's block (a live block of the same
 * segment that the ring does not own): the ring must not free it, or the
 * next large message is written over that object. The slot's block offset is
 * found without knowing the layout: it is the one word in the ring's memory
 * equal to the offset of a reserved block. Runs last: it fails on the
 * library as of this writing (consume_done frees any live block). */
static void foreign_block(void)
{
	int round = -1, op = -1;
	for (unsigned how = 0; how < 3; how++) {
		shmp_segment_t *seg = shmp_segment_create(NULL, SEG_SIZE, NULL);
		T_CHECK(seg);
		unsigned char *base = shmp_segment_base(seg);
		uint64_t ca, cb;
		T_EQ(shmp_segment_alloc(seg, CANARY, 64, &ca), 0);
		struct shmp_ring_opts o = SHMP_OPTS(shmp_ring_opts, .segment = seg, .capacity = 4);
		shmp_ring_t *r = shmp_ring_create(&o);
		T_CHECK(r);
		T_EQ(shmp_segment_alloc(seg, CANARY, 64, &cb), 0);
		canary_fill(base + cb, 2);
		uint64_t *lo = (uint64_t *)(base + ca + CANARY), *hi = (uint64_t *)(base + cb - 16);
		struct shmp_ring_ticket t;
		T_EQ(shmp_ring_reserve(r, CANARY, &t, 0), 0);
		uint64_t off;
		T_EQ(shmp_segment_offset(seg, t.data, &off), 0);
		/* The slot names the block, which may start with a header of
		 * the ring's before the payload: accept up to 64 bytes of it. */
		uint64_t *field = NULL;
		for (uint64_t *p = lo; p < hi; p++)
			if (*p <= off && off - *p <= 64 && *p >= off - 64) {
				T_CHECK(!field); /* exactly one */
				field = p;
			}
		T_CHECK(field);
		memset(t.data, 0x11, CANARY);
		T_EQ(shmp_ring_commit(r, &t, CANARY), 0);
		*field = cb; /* the scribble */
		int e;
		size_t len;
		if (how == 0) {
			e = shmp_ring_get(r, buf, sizeof buf, &len, 0);
		} else if (how == 1) {
			e = shmp_ring_peek(r, &t, 0);
			if (e == 0)
				e = shmp_ring_release(r, &t);
		} else {
			e = 0;
		}
		if (!allowed(e))
			FAIL("foreign block: %d (%s)", e, shmp_strerror(e));
		/* Large messages of the canary's size: one of them would get
		 * the canary's memory if it had been freed. */
		for (int i = 0; i < 3; i++) {
			memset(msg, 0x22, CANARY);
			if (shmp_ring_put(r, msg, CANARY, 0) == 0)
				shmp_ring_get(r, buf, sizeof buf, &len, 0);
		}
		shmp_ring_destroy(r); /* how == 2: destroy frees what slots hold */
		if (!canary_ok(base + cb, 2))
			fprintf(stderr, "foreign block (%s): the other object's memory was "
				"overwritten\n", how == 0 ? "get" : how == 1 ? "peek" : "destroy");
		/* Still live: freeing it succeeds exactly once. */
		T_EQ(shmp_segment_free(seg, cb), 0);
		T_CHECK(canary_ok(base + cb, 2));
		shmp_segment_destroy(seg);
	}
}

int main(void)
{
	t_watchdog(120);
	for (size_t i = 0; i < sizeof msg; i++)
		msg[i] = (unsigned char)(i * 7);
	const char *s = getenv("T_SEED"), *b = getenv("T_FUZZ_BATCHES");
	uint64_t seed = s && *s ? strtoull(s, NULL, 0)
			       : ((uint64_t)getpid() << 32) ^ (uint64_t)(t_now() * 1e6);
	int batches = b && *b ? atoi(b) : 12;
	printf("base seed %#llx\n", (unsigned long long)seed);
	double t0 = t_now();
	int done = 0;
	for (; done < batches && t_now() - t0 < MAX_WALL; done++) {
		uint64_t bs = seed + (uint64_t)done * 0x9e3779b97f4a7c15ull;
		pid_t c = t_fork(batch, &bs);
		int st = t_wait(c, 60);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr, "batch with seed %#llx failed (%s %d): replay with "
				"T_SEED=%#llx T_FUZZ_BATCHES=1\n", (unsigned long long)bs,
				WIFEXITED(st) ? "exit" : "signal",
				WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), (unsigned long long)bs);
			return 1;
		}
	}
	printf("%d batches of %d rounds in %.1f s\n", done, ROUNDS, t_now() - t0);
	T_CHECK(done >= 1);
	foreign_block();
	return 0;
}
