/* Attach validates the header of a named segment: files written straight
 * into /dev/shm (random bytes, truncated files, a real header with one field
 * broken, random field values, random byte flips) make shmp_segment_attach
 * fail with errno SHMP_ECORRUPT or SHMP_EVERSION, never crash, never hang;
 * a header it accepts keeps every allocator offset inside the mapping, and
 * alloc/free on such a segment stay in bounds. A corrupted free list makes
 * shmp_segment_alloc return -SHMP_ECORRUPT once and later allocations work;
 * a corrupted block prefix makes free return -EINVAL; an allocator lock left
 * by a dead process is recovered.
 *
 * Knows the private header layout (src/core/internal.h) on purpose. The random
 * part uses a fixed seed (SHMP_FUZZ_SEED overrides), printed at start. */
#include "t.h"
#include "../src/core/internal.h"

#include <fcntl.h>
#include <sys/stat.h>

#define HDR sizeof(struct shmp__seg_hdr)
#define IMG_SIZE 65536
#define ECORRUPT_POS (SHMP_ECORRUPT)
#define EVERSION_POS (SHMP_EVERSION)

static pid_t main_pid;
static const char *fz_name; /* the name every fuzz file is written under */
static char fz_path[300];
static char src_path[300];

static void cleanup(void)
{
	if (getpid() != main_pid)
		return;
	unlink(fz_path);
	rmdir(fz_path); /* if it failed while a directory stood there */
	unlink(src_path);
}

static uint64_t rng_state;

static uint64_t rnd(void)
{
	/* xorshift64* */
	uint64_t x = rng_state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * 0x2545f4914f6cdd1dull;
}

static uint64_t rnd_below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

/* Write `len` bytes as a brand-new file at the fuzz name. */
static void write_file(const void *buf, size_t len)
{
	int fd = open(fz_path, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
	T_CHECK(fd >= 0);
	const char *p = buf;
	while (len > 0) {
		ssize_t w = write(fd, p, len);
		T_CHECK(w > 0);
		p += w;
		len -= (size_t)w;
	}
	T_EQ(close(fd), 0);
}

static void remove_file(void)
{
	T_EQ(unlink(fz_path), 0);
}

/* Write the file, attach, expect failure with errno `want`, unlink. */
static void expect_fail(const void *buf, size_t len, int want, const char *what)
{
	write_file(buf, len);
	errno = 0;
	shmp_segment_t *s = shmp_segment_attach(fz_name, NULL);
	int e = errno;
	remove_file();
	if (s || e != want) {
		fprintf(stderr, "%s: attach %s, errno %d (%s), want errno %d (%s)\n", what,
			s ? "succeeded" : "failed", e, shmp_strerror(-e), want, shmp_strerror(-want));
		exit(1);
	}
}

/* Allowed results of alloc/free on a segment whose shared state is garbage:
 * success or a clean error. */
static int alloc_result_ok(int r)
{
	return r == 0 || r == -SHMP_ESEGFULL || r == -SHMP_ECORRUPT || r == -ENOTRECOVERABLE;
}

static int free_result_ok(int r)
{
	return r == 0 || r == -EINVAL || r == -ENOTRECOVERABLE;
}

static int n_accepted, n_refused; /* by attach_any, to show both paths ran */

static const size_t aligns[] = { 0, 16, 64, 256, 4096 };

/* A segment attach accepted: every offset the allocator hands out must be
 * inside the heap, and using it must not crash. `known` are offsets that
 * were live blocks in the original image. */
static void exercise(shmp_segment_t *s, const uint64_t *known, int nknown, const char *what)
{
	const struct shmp__seg_hdr *h = shmp_segment_base(s);
	size_t size = shmp_segment_size(s);
	uint64_t got[16];
	int ngot = 0;

	/* What attach accepted must be safe to use. */
	if (h->size != size || h->heap_end != size || h->heap_start < HDR ||
	    h->heap_top < h->heap_start || h->heap_top > h->heap_end) {
		fprintf(stderr, "%s: attach accepted an unsafe header\n", what);
		exit(1);
	}
	for (int i = 0; i < 24; i++) {
		size_t sz = 1 + rnd_below(i % 3 ? 300 : 5000);
		size_t al = aligns[rnd_below(5)];
		uint64_t off = 0;
		int r = shmp_segment_alloc(s, sz, al, &off);
		if (!alloc_result_ok(r)) {
			fprintf(stderr, "%s: alloc returned %d (%s)\n", what, r, shmp_strerror(r));
			exit(1);
		}
		if (r == 0) {
			/* (alignment is t_alloc's business; here: bounds) */
			if (off < h->heap_start + 16 || off > size || sz > size - off) {
				fprintf(stderr, "%s: alloc gave [%llu,+%zu) outside the heap\n", what,
					(unsigned long long)off, sz);
				exit(1);
			}
			memset((char *)shmp_segment_base(s) + off, 0x5a, sz);
			if (ngot < 16)
				got[ngot++] = off;
		}
		if (i % 4 == 3 && ngot > 0) {
			r = shmp_segment_free(s, got[--ngot]);
			if (!free_result_ok(r)) {
				fprintf(stderr, "%s: free returned %d\n", what, r);
				exit(1);
			}
		}
	}
	for (int i = 0; i < nknown; i++) {
		int r = shmp_segment_free(s, known[i]);
		if (!free_result_ok(r)) {
			fprintf(stderr, "%s: free of an old block returned %d\n", what, r);
			exit(1);
		}
	}
	for (int i = 0; i < 8; i++) {
		int r = shmp_segment_free(s, rnd_below(size + 4096) & ~(uint64_t)15);
		if (!free_result_ok(r)) {
			fprintf(stderr, "%s: free of a random offset returned %d\n", what, r);
			exit(1);
		}
	}
	struct shmp_segment_stats st;
	T_EQ(shmp_segment_stats(s, &st), 0);
}

/* Attach a file that may or may not be valid. The header's first bytes
 * decide which error is allowed: a broken magic is ECORRUPT, a good magic
 * with another version is EVERSION, anything else ECORRUPT or success. */
static void attach_any(const void *buf, size_t len, const uint64_t *known, int nknown,
		       const char *what)
{
	const struct shmp__seg_hdr *h = buf;
	int want = ECORRUPT_POS;
	if (len >= HDR && memcmp(h->magic, SHMP__SEG_MAGIC, 8) == 0 &&
	    h->layout_version != SHMP__LAYOUT_VERSION)
		want = EVERSION_POS;
	write_file(buf, len);
	errno = 0;
	shmp_segment_t *s = shmp_segment_attach(fz_name, NULL);
	int e = errno;
	remove_file(); /* the mapping stays valid */
	if (!s) {
		n_refused++;
		if (e != want) {
			fprintf(stderr, "%s: errno %d (%s), want %d\n", what, e, shmp_strerror(-e), want);
			exit(1);
		}
		return;
	}
	if (want == EVERSION_POS || len < HDR) {
		fprintf(stderr, "%s: attach accepted a header it must refuse\n", what);
		exit(1);
	}
	n_accepted++;
	exercise(s, known, nknown, what);
	shmp_segment_detach(s);
}

static _Alignas(64) unsigned char img[IMG_SIZE]; /* a real segment, copied */
static uint64_t img_blocks[8];      /* live blocks in it */
static int img_nblocks;

static void make_image(void)
{
	const char *name = t_segname("fzsrc");
	snprintf(src_path, sizeof src_path, "/dev/shm/shmp.%s", name);
	shmp_segment_t *s = shmp_segment_create(name, IMG_SIZE, NULL);
	T_CHECK(s);
	T_EQ(shmp_segment_size(s), IMG_SIZE);
	/* Some live blocks and some freed ones, so free lists are not empty. */
	uint64_t off[12];
	for (int i = 0; i < 12; i++)
		T_EQ(shmp_segment_alloc(s, 40 + 100 * (size_t)i, i % 2 ? 64 : 0, &off[i]), 0);
	for (int i = 0; i < 12; i++) {
		if (i % 3 == 0)
			T_EQ(shmp_segment_free(s, off[i]), 0);
		else if (img_nblocks < 8)
			img_blocks[img_nblocks++] = off[i];
	}
	memcpy(img, shmp_segment_base(s), IMG_SIZE);
	shmp_segment_destroy(s);
	T_CHECK(access(src_path, F_OK) != 0);
}

static struct shmp__seg_hdr *H(unsigned char *buf)
{
	return (struct shmp__seg_hdr *)buf;
}

/* One field of the real header broken at a time, each with its exact error. */
static void test_single_fields(void)
{
	static _Alignas(64) unsigned char b[IMG_SIZE];
	const struct shmp__seg_hdr *good = (const struct shmp__seg_hdr *)img;

	/* Control: the copy itself attaches and works, so the failures below
	 * are caused by the mutation and nothing else. */
	write_file(img, IMG_SIZE);
	shmp_segment_t *s = shmp_segment_attach(fz_name, NULL);
	T_CHECK(s);
	remove_file();
	uint64_t off;
	T_EQ(shmp_segment_alloc(s, 100, 0, &off), 0);
	T_EQ(shmp_segment_free(s, off), 0);
	for (int i = 0; i < img_nblocks; i++)
		T_EQ(shmp_segment_free(s, img_blocks[i]), 0);
	shmp_segment_detach(s);

#define MUT(stmt, want)                                                 \
	do {                                                            \
		memcpy(b, img, IMG_SIZE);                               \
		stmt;                                                   \
		expect_fail(b, IMG_SIZE, want, #stmt);                  \
	} while (0)

	MUT(H(b)->magic[0] ^= 0x20, ECORRUPT_POS);
	MUT(H(b)->magic[7] = 'X', ECORRUPT_POS);
	MUT(memset(H(b)->magic, 0, 8), ECORRUPT_POS); /* also the "creator still writing" wait */
	MUT((H(b)->magic[0] ^= 1, H(b)->layout_version = 2), ECORRUPT_POS); /* magic checked first */
	MUT(H(b)->layout_version = 0, EVERSION_POS);
	MUT(H(b)->layout_version = SHMP__LAYOUT_VERSION + 1, EVERSION_POS);
	MUT(H(b)->layout_version = UINT32_MAX, EVERSION_POS);
	MUT(H(b)->header_size += 1, ECORRUPT_POS);
	MUT(H(b)->header_size -= 1, ECORRUPT_POS);
	MUT(H(b)->header_size = 0, ECORRUPT_POS);
	MUT(H(b)->size += 4096, ECORRUPT_POS);
	MUT(H(b)->size -= 4096, ECORRUPT_POS);
	MUT(H(b)->size = 0, ECORRUPT_POS);
	MUT(H(b)->size = UINT64_MAX, ECORRUPT_POS);
	MUT(H(b)->heap_top = good->heap_end + 64, ECORRUPT_POS);
	MUT(H(b)->heap_top = UINT64_MAX & ~(uint64_t)63, ECORRUPT_POS);
	MUT(H(b)->heap_top = good->heap_top + 1, ECORRUPT_POS);
	MUT(H(b)->heap_top = good->heap_top + 8, ECORRUPT_POS);
	MUT(H(b)->heap_top = good->heap_start - 64, ECORRUPT_POS);
	MUT(H(b)->heap_top = 0, ECORRUPT_POS);
	MUT(H(b)->heap_start += 64, ECORRUPT_POS);
	MUT(H(b)->heap_start = 0, ECORRUPT_POS);
	MUT(H(b)->heap_end -= 64, ECORRUPT_POS);
	MUT(H(b)->heap_end += 4096, ECORRUPT_POS);
	MUT(H(b)->alloc_lock.magic ^= 1, ECORRUPT_POS);
	MUT(H(b)->alloc_lock.magic = 0, ECORRUPT_POS);
	MUT(H(b)->alloc_lock.kind = SHMP__KIND_RLOCK, ECORRUPT_POS);
	MUT(H(b)->registry_root = IMG_SIZE, ECORRUPT_POS);
	MUT(H(b)->registry_root = UINT64_MAX, ECORRUPT_POS);
#undef MUT

	/* The heap completely used is still a valid header. */
	memcpy(b, img, IMG_SIZE);
	H(b)->heap_top = H(b)->heap_end;
	write_file(b, IMG_SIZE);
	s = shmp_segment_attach(fz_name, NULL);
	T_CHECK(s);
	remove_file();
	T_EQ(shmp_segment_alloc(s, 100000, 0, &off), -SHMP_ESEGFULL);
	shmp_segment_detach(s);

	/* Truncated files: empty, one byte, one byte short of a header, a
	 * whole header but less than the size it claims, a page short. */
	expect_fail(img, 0, ECORRUPT_POS, "empty file");
	expect_fail(img, 1, ECORRUPT_POS, "1-byte file");
	expect_fail(img, HDR - 1, ECORRUPT_POS, "header - 1 bytes");
	expect_fail(img, HDR, ECORRUPT_POS, "header only");
	expect_fail(img, IMG_SIZE - 4096, ECORRUPT_POS, "a page short");
	/* And a file longer than the header says. */
	static _Alignas(64) unsigned char big[IMG_SIZE + 4096];
	memcpy(big, img, IMG_SIZE);
	expect_fail(big, sizeof big, ECORRUPT_POS, "a page too long");

	/* Not a regular file at all: refused at once, no blocking open of a
	 * FIFO, no mapping of a directory. */
	T_EQ(mkfifo(fz_path, 0600), 0);
	double t0 = t_now();
	errno = 0;
	s = shmp_segment_attach(fz_name, NULL);
	int e = errno;
	remove_file();
	T_CHECK(s == NULL && e != 0);
	T_CHECK(t_now() - t0 < 2.0);
	T_EQ(mkdir(fz_path, 0700), 0);
	errno = 0;
	s = shmp_segment_attach(fz_name, NULL);
	e = errno;
	T_EQ(rmdir(fz_path), 0);
	T_CHECK(s == NULL && e != 0);
}

/* Random bytes, random lengths: never accepted. */
static void test_random_headers(int iters)
{
	static _Alignas(64) unsigned char b[2 * HDR + 64];
	for (int it = 0; it < iters; it++) {
		size_t len = rnd_below(sizeof b + 1);
		for (size_t i = 0; i < sizeof b; i++)
			b[i] = (unsigned char)rnd();
		int kind = (int)rnd_below(3);
		int want = ECORRUPT_POS;
		if (kind >= 1)
			memcpy(H(b)->magic, SHMP__SEG_MAGIC, 8);
		else if (b[0] == 0)
			b[0] = 1; /* an all-zero magic costs a 50 ms wait; tested above */
		if (kind == 2 && rnd_below(2))
			H(b)->layout_version = SHMP__LAYOUT_VERSION;
		if (len >= HDR && kind >= 1 && H(b)->layout_version != SHMP__LAYOUT_VERSION)
			want = EVERSION_POS;
		char what[64];
		snprintf(what, sizeof what, "random header #%d (len %zu, kind %d)", it, len, kind);
		expect_fail(b, len, want, what);
	}
}

/* A valid header with random fields replaced by nasty values. */
static uint64_t nasty(uint64_t good)
{
	switch (rnd_below(10)) {
	case 0: return 0;
	case 1: return good + 1;
	case 2: return good - 1;
	case 3: return good + 64;
	case 4: return good - 64;
	case 5: return UINT64_MAX;
	case 6: return IMG_SIZE;
	case 7: return good ^ (1ull << rnd_below(64));
	case 8: return rnd_below(2 * IMG_SIZE) & ~(uint64_t)63;
	default: return rnd();
	}
}

static void test_structured(int iters)
{
	static _Alignas(64) unsigned char b[IMG_SIZE];
	for (int it = 0; it < iters; it++) {
		memcpy(b, img, IMG_SIZE);
		struct shmp__seg_hdr *h = H(b);
		int n = 1 + (int)rnd_below(3);
		for (int k = 0; k < n; k++) {
			switch (rnd_below(14)) {
			case 0: h->magic[rnd_below(8)] = (unsigned char)(1 + rnd_below(255)); break;
			case 1: h->layout_version = (uint32_t)nasty(h->layout_version); break;
			case 2: h->header_size = (uint32_t)nasty(h->header_size); break;
			case 3: h->size = nasty(h->size); break;
			case 4: h->heap_start = nasty(h->heap_start); break;
			case 5: h->heap_top = nasty(h->heap_top); break;
			case 6: h->heap_end = nasty(h->heap_end); break;
			case 7: h->alloc_lock.magic = (uint32_t)nasty(h->alloc_lock.magic); break;
			case 8: h->alloc_lock.kind = (uint32_t)nasty(h->alloc_lock.kind); break;
			case 9: h->registry_root = nasty(h->registry_root); break;
			/* Fields attach does not check: the allocator must cope. */
			case 10: h->free_head[rnd_below(SHMP__NCLASSES)] = nasty(h->heap_top); break;
			case 11: h->used_bytes = nasty(h->used_bytes); break;
			case 12: h->live_blocks = nasty(h->live_blocks); break;
			default: h->attach_count = (uint32_t)rnd(); break;
			}
		}
		char what[64];
		snprintf(what, sizeof what, "structured #%d", it);
		attach_any(b, IMG_SIZE, img_blocks, img_nblocks, what);
	}
}

/* Random byte flips in the header (but not the allocator lock's word: a
 * word naming a live thread is a held lock, and alloc would rightly wait)
 * or in the heap (free-list nodes, block prefixes). */
static void test_flips(int iters)
{
	static _Alignas(64) unsigned char b[IMG_SIZE];
	size_t word_at = offsetof(struct shmp__seg_hdr, alloc_lock) +
			 offsetof(struct shmp__lock_sh, word);
	const struct shmp__seg_hdr *good = (const struct shmp__seg_hdr *)img;
	for (int it = 0; it < iters; it++) {
		memcpy(b, img, IMG_SIZE);
		bool heap = it % 2;
		int n = 1 + (int)rnd_below(8);
		for (int k = 0; k < n; k++) {
			size_t at;
			if (heap) {
				at = good->heap_start + rnd_below(good->heap_top - good->heap_start);
			} else {
				do
					at = rnd_below(HDR);
				while (at >= word_at && at < word_at + 4);
			}
			b[at] ^= (unsigned char)(1u << rnd_below(8));
		}
		char what[64];
		snprintf(what, sizeof what, "%s flips #%d", heap ? "heap" : "header", it);
		attach_any(b, IMG_SIZE, img_blocks, img_nblocks, what);
	}
}

/* Index of the one class whose free list is not empty. */
static unsigned only_class(const struct shmp__seg_hdr *h)
{
	int found = -1;
	for (unsigned c = 0; c < SHMP__NCLASSES; c++) {
		if (h->free_head[c]) {
			T_CHECK(found < 0);
			found = (int)c;
		}
	}
	T_CHECK(found >= 0);
	return (unsigned)found;
}

enum { C_HEAD_OOB, C_HEAD_MAX, C_HEAD_HDR, C_HEAD_UNALIGNED, C_HEAD_LIVE, C_HEAD_TOP,
       C_HEAD_TOP_SHORT, C_NODE_MAGIC, C_NODE_CLS, C_NEXT_OOB, C_NEXT_UNALIGNED, C_NCASES };

/* Corrupt a free list in a live segment: the next alloc of that class is
 * -SHMP_ECORRUPT and drops the list; allocations go on from fresh memory. */
static void test_free_list(void)
{
	shmp_segment_t *s = shmp_segment_create(NULL, 1 << 20, NULL);
	T_CHECK(s);
	struct shmp__seg_hdr *h = shmp_segment_base(s);
	char *base = shmp_segment_base(s);
	uint64_t keep;
	T_EQ(shmp_segment_alloc(s, 100, 0, &keep), 0); /* a live block to point at */
	memset(base + keep, 0x77, 100);

	for (int c = 0; c < C_NCASES; c++) {
		uint64_t x, y, z;
		T_EQ(shmp_segment_alloc(s, 100, 0, &x), 0);
		T_EQ(shmp_segment_alloc(s, 100, 0, &y), 0);
		T_EQ(shmp_segment_free(s, x), 0);
		T_EQ(shmp_segment_free(s, y), 0);
		unsigned cls = only_class(h);
		uint64_t head = h->free_head[cls];
		struct { uint32_t magic, cls; uint64_t next; } *node = (void *)(base + head);
		switch (c) {
		case C_HEAD_OOB: h->free_head[cls] = h->heap_end + 4096; break;
		case C_HEAD_MAX: h->free_head[cls] = UINT64_MAX & ~(uint64_t)63; break;
		case C_HEAD_HDR: h->free_head[cls] = 64; break;
		case C_HEAD_UNALIGNED: h->free_head[cls] = head + 8; break;
		case C_HEAD_LIVE: h->free_head[cls] = keep - 16; break;
		case C_HEAD_TOP: h->free_head[cls] = h->heap_top; break;
		case C_HEAD_TOP_SHORT: h->free_head[cls] = h->heap_top - 64; break;
		case C_NODE_MAGIC: node->magic = 0xdeadbeef; break;
		case C_NODE_CLS: node->cls = cls + 1; break;
		case C_NEXT_OOB: node->next = h->heap_end + 64; break;
		case C_NEXT_UNALIGNED: node->next += 24; break;
		}
		struct shmp_segment_stats before, after;
		T_EQ(shmp_segment_stats(s, &before), 0);
		uint64_t top = h->heap_top;
		int r = shmp_segment_alloc(s, 100, 0, &z);
		if (r != -SHMP_ECORRUPT) {
			fprintf(stderr, "corruption case %d: alloc returned %d, want -SHMP_ECORRUPT\n", c, r);
			exit(1);
		}
		T_EQ(h->free_head[cls], 0); /* the damaged list was dropped */
		T_EQ(shmp_segment_stats(s, &after), 0);
		T_EQ(after.live_blocks, before.live_blocks);
		T_EQ(after.used_bytes, before.used_bytes);
		/* Later allocations come from fresh memory and work. */
		T_EQ(shmp_segment_alloc(s, 100, 0, &z), 0);
		T_CHECK(z >= top);
		memset(base + z, 0x11, 100);
		T_EQ(shmp_segment_free(s, z), 0);
		T_EQ(shmp_segment_alloc(s, 100, 0, &z), 0); /* reused from the new list */
		T_EQ(shmp_segment_free(s, z), 0);
		h->free_head[cls] = 0; /* next case starts from a clean list */
	}
	for (int i = 0; i < 100; i++)
		T_EQ(((unsigned char *)base)[keep + (uint64_t)i], 0x77);

	/* A cycle (a node pointing at itself): the first alloc takes the
	 * block, the second finds it no longer free and reports corruption. */
	uint64_t x, z1, z2;
	T_EQ(shmp_segment_alloc(s, 100, 0, &x), 0);
	T_EQ(shmp_segment_free(s, x), 0);
	unsigned cls = only_class(h);
	uint64_t head = h->free_head[cls];
	struct { uint32_t magic, cls; uint64_t next; } *node = (void *)(base + head);
	node->next = head;
	T_EQ(shmp_segment_alloc(s, 100, 0, &z1), 0);
	T_EQ(z1, x);
	int r = shmp_segment_alloc(s, 100, 0, &z2);
	T_EQ(r, -SHMP_ECORRUPT);
	T_EQ(shmp_segment_alloc(s, 100, 0, &z2), 0);
	T_CHECK(z2 != z1);
	T_EQ(shmp_segment_free(s, z1), 0);
	T_EQ(shmp_segment_free(s, z2), 0);

	/* A garbage block prefix: free refuses the block, the bytes restored
	 * it frees fine. */
	uint64_t y;
	T_EQ(shmp_segment_alloc(s, 500, 64, &y), 0);
	unsigned char saved[16];
	memcpy(saved, base + y - 16, 16);
	for (int t = 0; t < 200; t++) {
		for (int i = 0; i < 16; i++)
			base[y - 16 + (uint64_t)i] = (char)rnd();
		if (memcmp(base + y - 16, saved, 4) == 0)
			continue; /* the magic survived by chance */
		T_EQ(shmp_segment_free(s, y), -EINVAL);
	}
	memcpy(base + y - 16, saved, 16);
	T_EQ(shmp_segment_free(s, y), 0);
	T_EQ(shmp_segment_free(s, keep), 0);
	shmp_segment_destroy(s);
}

/* The allocator's lock word names a process that has died (and been reaped):
 * the next alloc takes the lock over, promptly. */
static void test_dead_owner(void)
{
	shmp_segment_t *s = shmp_segment_create(NULL, 1 << 20, NULL);
	T_CHECK(s);
	struct shmp__seg_hdr *h = shmp_segment_base(s);
	for (int t = 0; t < 5; t++) {
		fflush(NULL);
		pid_t pid = fork();
		T_CHECK(pid >= 0);
		if (pid == 0)
			_exit(0);
		t_wait_ok(pid, 10);
		atomic_store(&h->alloc_lock.word, (uint32_t)pid | (t % 2 ? SHMP__WAITERS : 0));
		double t0 = t_now();
		uint64_t off;
		T_EQ(shmp_segment_alloc(s, 64, 0, &off), 0);
		T_CHECK(t_now() - t0 < 2.0);
		T_EQ(atomic_load(&h->alloc_lock.word), 0); /* released, not left broken */
		T_EQ(shmp_segment_free(s, off), 0);
	}
	shmp_segment_destroy(s);
}

int main(void)
{
	t_watchdog(90);
	main_pid = getpid();
	fz_name = t_segname("fz");
	snprintf(fz_path, sizeof fz_path, "/dev/shm/shmp.%s", fz_name);
	atexit(cleanup);
	unlink(fz_path);

	uint64_t seed = 0x5eed5eed12345678ull;
	const char *e = getenv("SHMP_FUZZ_SEED");
	if (e && *e)
		seed = strtoull(e, NULL, 0);
	if (seed == 0)
		seed = 1;
	printf("seed 0x%llx (set SHMP_FUZZ_SEED to replay)\n", (unsigned long long)seed);
	fflush(stdout);
	rng_state = seed;

	make_image();
	test_single_fields();
	test_random_headers(4000);
	test_structured(1500);
	test_flips(1500);
	printf("mutated images: %d accepted and exercised, %d refused\n", n_accepted, n_refused);
	/* Both paths must have run for the fuzzing to mean anything. */
	T_CHECK(n_accepted >= 100 && n_refused >= 100);
	test_free_list();
	test_dead_owner();
	return 0;
}
