/* The segment allocator in one process: payloads aligned as asked (0 means
 * 16; up to 4096), sizes from 1 byte to several MiB, blocks never overlap,
 * new blocks are zero even over dirty reused memory, free-then-alloc of the
 * same size reuses the block, double free and bogus offsets are -EINVAL and
 * change nothing, -SHMP_ESEGFULL when full changes nothing (smaller blocks still
 * fit, every block keeps its bytes), stats count used bytes and live blocks
 * exactly. */
#include "t.h"

#define SEG_SIZE (256u << 20) /* MAP_NORESERVE: only touched pages cost */

struct blk {
	uint64_t off;
	size_t size;
	unsigned char fill;
};

static shmp_segment_t *seg;
static unsigned char *base;

static int all_bytes(const unsigned char *p, size_t n, unsigned char v)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != v)
			return 0;
	return 1;
}

static int cmp_blk(const void *a, const void *b)
{
	const struct blk *x = a, *y = b;
	return x->off < y->off ? -1 : x->off > y->off;
}

/* No two blocks share a byte; each still holds its fill. */
static void check_blocks(shmp_segment_t *s, struct blk *b, int n)
{
	unsigned char *bs = shmp_segment_base(s);
	qsort(b, (size_t)n, sizeof *b, cmp_blk);
	for (int i = 0; i < n; i++) {
		T_CHECK(b[i].off + b[i].size <= shmp_segment_size(s));
		if (i > 0 && b[i - 1].off + b[i - 1].size > b[i].off) {
			fprintf(stderr, "blocks overlap: [%llu,+%zu) and [%llu,+%zu)\n",
				(unsigned long long)b[i - 1].off, b[i - 1].size,
				(unsigned long long)b[i].off, b[i].size);
			exit(1);
		}
		if (!all_bytes(bs + b[i].off, b[i].size, b[i].fill)) {
			fprintf(stderr, "block [%llu,+%zu) lost its fill 0x%02x\n",
				(unsigned long long)b[i].off, b[i].size, b[i].fill);
			exit(1);
		}
	}
}

static void test_fresh_stats(void)
{
	struct shmp_segment_stats st = t_seg_stats(seg);
	T_EQ(st.size, SEG_SIZE);
	T_EQ(st.size, shmp_segment_size(seg));
	T_CHECK(st.heap_bytes > SEG_SIZE - 65536 && st.heap_bytes < SEG_SIZE);
	T_EQ(st.used_bytes, 0);
	T_EQ(st.live_blocks, 0);
	T_EQ(st.creator_pid, getpid());
	T_EQ(st.attach_count, 1);
	T_EQ(shmp_segment_stats(NULL, &st), -EINVAL);
	T_EQ(shmp_segment_stats(seg, NULL), -EINVAL);
}

static void test_bad_args(void)
{
	uint64_t off = 4242;
	const size_t bad_align[] = { 3, 5, 24, 48, 100, 8192, 1 << 20, SIZE_MAX };
	for (size_t i = 0; i < sizeof bad_align / sizeof bad_align[0]; i++)
		T_EQ(shmp_segment_alloc(seg, 64, bad_align[i], &off), -EINVAL);
	T_EQ(shmp_segment_alloc(NULL, 64, 0, &off), -EINVAL);
	T_EQ(shmp_segment_alloc(seg, 64, 0, NULL), -EINVAL);
	T_EQ(off, 4242);
	T_EQ(shmp_segment_free(NULL, 64), -EINVAL);
	T_EQ(t_seg_stats(seg).live_blocks, 0);
}

static void test_alignment(void)
{
	static struct blk b[1024];
	int n = 0;
	const size_t aligns[] = { 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096 };
	const size_t sizes[] = { 1, 7, 16, 17, 63, 64, 65, 100, 1000, 4095, 4096, 4097, 10000, 70000 };
	for (size_t a = 0; a < sizeof aligns / sizeof aligns[0]; a++) {
		for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
			size_t al = aligns[a], sz = sizes[z];
			size_t want = al ? al : 16;
			uint64_t off;
			T_EQ(shmp_segment_alloc(seg, sz, al, &off), 0);
			unsigned char *p = shmp_segment_ptr(seg, off, sz);
			T_CHECK(p);
			/* The mapping is page aligned, so offset and address agree. */
			if (off % want != 0 || (uintptr_t)p % want != 0) {
				fprintf(stderr, "alloc(size %zu, align %zu) gave offset %llu "
					"(offset %% align = %llu)\n", sz, al,
					(unsigned long long)off, (unsigned long long)(off % want));
				exit(1);
			}
			T_CHECK(all_bytes(p, sz, 0));
			unsigned char fill = (unsigned char)(1 + n % 250);
			memset(p, fill, sz);
			b[n++] = (struct blk){ off, sz, fill };
		}
	}
	T_EQ(t_seg_stats(seg).live_blocks, (uint64_t)n);
	check_blocks(seg, b, n);
	for (int i = 0; i < n; i++)
		T_EQ(shmp_segment_free(seg, b[i].off), 0);
	T_EQ(t_seg_stats(seg).live_blocks, 0);
	T_EQ(t_seg_stats(seg).used_bytes, 0);
}

/* 1 byte to 8 MiB: zero on arrival, fully writable, counted. */
static void test_sizes(void)
{
	static struct blk b[256];
	int n = 0;
	uint64_t want_min = 0;
	for (size_t sz = 1; sz <= (8u << 20); sz *= 2) {
		size_t cand[] = { sz, sz + 1, sz * 3 / 2 };
		for (int k = 0; k < 3; k++) {
			size_t s = cand[k];
			if (s > (8u << 20) || (k == 2 && sz < 2))
				continue;
			uint64_t off;
			struct shmp_segment_stats before = t_seg_stats(seg);
			T_EQ(shmp_segment_alloc(seg, s, 0, &off), 0);
			struct shmp_segment_stats after = t_seg_stats(seg);
			T_EQ(after.live_blocks, before.live_blocks + 1);
			uint64_t got = after.used_bytes - before.used_bytes;
			/* the block with its 16-byte header, and bounded overhead */
			T_CHECK(got >= s + 16 && got <= 2 * (s + 16) + 64);
			want_min += s + 16;
			unsigned char *p = shmp_segment_ptr(seg, off, s);
			T_CHECK(p);
			T_CHECK(all_bytes(p, s, 0));
			unsigned char fill = (unsigned char)(0x10 + n);
			memset(p, fill, s);
			b[n++] = (struct blk){ off, s, fill };
		}
	}
	struct shmp_segment_stats st = t_seg_stats(seg);
	T_EQ(st.live_blocks, (uint64_t)n);
	T_CHECK(st.used_bytes >= want_min);
	check_blocks(seg, b, n);
	for (int i = 0; i < n; i++)
		T_EQ(shmp_segment_free(seg, b[i].off), 0);
	st = t_seg_stats(seg);
	T_EQ(st.live_blocks, 0);
	T_EQ(st.used_bytes, 0);
}

/* Free then alloc of the same size (and alignment) gives the same block,
 * zeroed; the size class's list is LIFO. */
static void test_reuse(void)
{
	const size_t sizes[] = { 1, 48, 100, 1000, 5000, 100000, 3u << 20 };
	const size_t aligns[] = { 0, 64, 4096 };
	for (size_t a = 0; a < 3; a++) {
		for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
			size_t sz = sizes[z], al = aligns[a];
			uint64_t o1, o2, o3;
			T_EQ(shmp_segment_alloc(seg, sz, al, &o1), 0);
			memset(base + o1, 0xAB, sz);
			T_EQ(shmp_segment_free(seg, o1), 0);
			T_EQ(shmp_segment_alloc(seg, sz, al, &o2), 0);
			T_EQ(o2, o1);
			if (!all_bytes(base + o2, sz, 0)) {
				fprintf(stderr, "reused block of %zu bytes is not zero\n", sz);
				exit(1);
			}
			/* a second one is a different block */
			T_EQ(shmp_segment_alloc(seg, sz, al, &o3), 0);
			T_CHECK(o3 != o2);
			T_CHECK(o3 >= o2 + sz || o2 >= o3 + sz);
			T_EQ(shmp_segment_free(seg, o3), 0);
			T_EQ(shmp_segment_free(seg, o2), 0);
		}
	}
	T_EQ(t_seg_stats(seg).live_blocks, 0);
}

/* Dirty the heap everywhere (every size class, every alignment), free it
 * all, then every new block, whatever its size and alignment, is zero. */
static void test_reused_is_zero(void)
{
	static uint64_t offs[3000];
	const size_t aligns[] = { 0, 16, 64, 256, 4096 };
	unsigned seed = 12345;
	for (int round = 0; round < 3; round++) {
		int n = 0;
		for (int i = 0; i < 3000; i++) {
			size_t sz = 1 + (size_t)(rand_r(&seed) % (i % 50 ? 3000 : 100000));
			size_t al = aligns[rand_r(&seed) % 5];
			uint64_t off;
			T_EQ(shmp_segment_alloc(seg, sz, al, &off), 0);
			if (!all_bytes(base + off, sz, 0)) {
				fprintf(stderr, "round %d: new block (%zu bytes, align %zu) "
					"is not zero\n", round, sz, al);
				exit(1);
			}
			memset(base + off, 0xAB, sz);
			offs[n++] = off;
		}
		for (int i = 0; i < n; i++)
			T_EQ(shmp_segment_free(seg, offs[(i * 7) % n]), 0); /* 7 and 3000 coprime */
		T_EQ(t_seg_stats(seg).live_blocks, 0);
		T_EQ(t_seg_stats(seg).used_bytes, 0);
	}
}

static void test_bad_free(void)
{
	uint64_t a, b, c;
	T_EQ(shmp_segment_alloc(seg, 200, 0, &a), 0);
	T_EQ(shmp_segment_alloc(seg, 200, 64, &b), 0);
	memset(base + a, 0x3c, 200);
	memset(base + b, 0x4d, 200);
	struct shmp_segment_stats before = t_seg_stats(seg);
	size_t sz = shmp_segment_size(seg);
	const uint64_t bogus[] = {
		0, 1, 15, 16, 64, 128, a + 16, a + 1, a - 16, a + 64, a + 192,
		b + 16, b - 16, b - 64, sz - 4096, sz - 16, sz, sz + 16,
		UINT64_MAX & ~(uint64_t)15, UINT64_MAX,
	};
	for (size_t i = 0; i < sizeof bogus / sizeof bogus[0]; i++) {
		int r = shmp_segment_free(seg, bogus[i]);
		if (r != -EINVAL) {
			fprintf(stderr, "free(%llu) returned %d, want -EINVAL\n",
				(unsigned long long)bogus[i], r);
			exit(1);
		}
	}
	struct shmp_segment_stats after = t_seg_stats(seg);
	T_EQ(after.live_blocks, before.live_blocks);
	T_EQ(after.used_bytes, before.used_bytes);
	T_CHECK(all_bytes(base + a, 200, 0x3c));
	T_CHECK(all_bytes(base + b, 200, 0x4d));

	/* Double free: refused, and the block is not handed out twice. */
	T_EQ(shmp_segment_free(seg, a), 0);
	T_EQ(shmp_segment_free(seg, a), -EINVAL);
	T_EQ(shmp_segment_free(seg, a), -EINVAL);
	T_EQ(t_seg_stats(seg).live_blocks, before.live_blocks - 1);
	T_EQ(shmp_segment_alloc(seg, 200, 0, &a), 0);
	T_EQ(shmp_segment_alloc(seg, 200, 0, &c), 0);
	T_CHECK(a != c);
	T_EQ(shmp_segment_free(seg, a), 0);
	T_EQ(shmp_segment_free(seg, b), 0);
	T_EQ(shmp_segment_free(seg, b), -EINVAL);
	T_EQ(shmp_segment_free(seg, c), 0);
	T_EQ(shmp_segment_free(seg, c), -EINVAL);
	T_EQ(t_seg_stats(seg).live_blocks, 0);
	T_EQ(t_seg_stats(seg).used_bytes, 0);
}

/* Fill a 1 MiB segment: -SHMP_ESEGFULL changes nothing, smaller blocks still fit
 * while room is left, every block keeps its bytes, freeing makes room. */
static void test_full(void)
{
	shmp_segment_t *s = shmp_segment_create(NULL, 1 << 20, NULL);
	T_CHECK(s);
	unsigned char *bs = shmp_segment_base(s);
	static struct blk b[40000];
	int n = 0, nbig = 0, r;
	const size_t big = 60000;
	uint64_t off;
	while ((r = shmp_segment_alloc(s, big, 64, &off)) == 0) {
		T_CHECK(n < 40000);
		memset(bs + off, (unsigned char)(1 + n % 200), big);
		b[n] = (struct blk){ off, big, (unsigned char)(1 + n % 200) };
		n++;
	}
	T_EQ(r, -SHMP_ESEGFULL);
	nbig = n;
	T_CHECK(nbig >= 8); /* 1 MiB holds a good number of 60 kB blocks */
	struct shmp_segment_stats full = t_seg_stats(s);
	T_EQ(full.live_blocks, (uint64_t)n);

	/* Requests that cannot fit, including absurd sizes, change nothing. */
	const size_t huge[] = { big, 1u << 20, 2u << 20, (size_t)1 << 50, SIZE_MAX / 2,
				SIZE_MAX - 4096, SIZE_MAX };
	for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
		off = 999;
		T_EQ(shmp_segment_alloc(s, huge[i], 0, &off), -SHMP_ESEGFULL);
		T_EQ(off, 999);
		struct shmp_segment_stats st = t_seg_stats(s);
		T_EQ(st.live_blocks, full.live_blocks);
		T_EQ(st.used_bytes, full.used_bytes);
	}

	/* Smaller blocks use what is left, down to nothing. */
	size_t small = 1000;
	for (;;) {
		r = shmp_segment_alloc(s, small, 0, &off);
		if (r == -SHMP_ESEGFULL) {
			if (small == 1)
				break;
			small /= 2;
			continue;
		}
		T_EQ(r, 0);
		T_CHECK(n < 40000);
		T_CHECK(all_bytes(bs + off, small, 0));
		memset(bs + off, (unsigned char)(1 + n % 200), small);
		b[n] = (struct blk){ off, small, (unsigned char)(1 + n % 200) };
		n++;
	}
	struct shmp_segment_stats st = t_seg_stats(s);
	/* Room was left after the big blocks (no free lists, no leaks: what is
	 * not used is fresh memory), so some small blocks must have fit. */
	if (full.heap_bytes - full.used_bytes >= 64)
		T_CHECK(n > nbig);
	T_EQ(st.live_blocks, (uint64_t)n);
	T_CHECK(st.heap_bytes - st.used_bytes < 64); /* even 1 byte failed */
	check_blocks(s, b, n);

	/* Freeing one big block makes exactly its room available again. */
	uint64_t freed = 0;
	for (int i = 0; i < n; i++) {
		if (b[i].size == big) {
			freed = b[i].off;
			T_EQ(shmp_segment_free(s, freed), 0);
			b[i] = b[--n];
			break;
		}
	}
	T_CHECK(freed);
	T_EQ(shmp_segment_alloc(s, big, 64, &off), 0);
	T_EQ(off, freed);
	T_CHECK(all_bytes(bs + off, big, 0));
	memset(bs + off, 0xee, big);
	b[n++] = (struct blk){ off, big, 0xee };
	T_EQ(shmp_segment_alloc(s, big, 64, &off), -SHMP_ESEGFULL);
	check_blocks(s, b, n);
	for (int i = 0; i < n; i++)
		T_EQ(shmp_segment_free(s, b[i].off), 0);
	st = t_seg_stats(s);
	T_EQ(st.live_blocks, 0);
	T_EQ(st.used_bytes, 0);
	shmp_segment_destroy(s);
}

/* used_bytes/live_blocks follow each alloc and free exactly. */
static void test_stats_track(void)
{
	uint64_t offs[50], used[51];
	used[0] = t_seg_stats(seg).used_bytes;
	for (int i = 0; i < 50; i++) {
		T_EQ(shmp_segment_alloc(seg, 10 + 37 * (size_t)i, i % 3 ? 0 : 64, &offs[i]), 0);
		struct shmp_segment_stats st = t_seg_stats(seg);
		T_EQ(st.live_blocks, (uint64_t)i + 1);
		used[i + 1] = st.used_bytes;
		T_CHECK(used[i + 1] > used[i]);
	}
	/* freeing in reverse retraces the same numbers */
	for (int i = 49; i >= 0; i--) {
		T_EQ(shmp_segment_free(seg, offs[i]), 0);
		struct shmp_segment_stats st = t_seg_stats(seg);
		T_EQ(st.live_blocks, (uint64_t)i);
		T_EQ(st.used_bytes, used[i]);
	}
	T_EQ(used[0], 0);
}

int main(void)
{
	t_watchdog(60);
	seg = shmp_segment_create(NULL, SEG_SIZE, NULL);
	T_CHECK(seg);
	base = shmp_segment_base(seg);
	test_fresh_stats();
	test_bad_args();
	test_sizes();
	test_reuse();
	test_reused_is_zero();
	test_bad_free();
	test_full();
	test_stats_track();
	test_alignment(); /* last: reports the alignment bug if present */
	shmp_segment_destroy(seg);
	return 0;
}
