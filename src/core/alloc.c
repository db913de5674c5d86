/* private: the offset allocator inside a segment.
 *
 * Size classes (multiples of 64 bytes, four per power of two, so at most 25%
 * slack), one free list per class, and a bump pointer for fresh memory. All
 * state is offsets in the header, guarded by the header's robust lock.
 *
 * Crash safety: every change publishes with one final release store (the
 * list head or the bump pointer), written after the block itself is set up. A process
 * killed anywhere inside leaves a consistent allocator; at worst the block it
 * was taking or giving back is lost. The next user absorbs the lock's
 * owner-died state.
 *
 * Every offset read from shared memory is checked before use: a corrupted
 * list makes alloc/free fail with -SHMP_ECORRUPT (and drops that list), never
 * touch memory outside the heap. */
#include "internal.h"

#include <stdlib.h>

#define PREFIX 16u
#define LIVE_MAGIC 0x4c495645u /* "LIVE" */
#define FREE_MAGIC 0x46524545u /* "FREE" */
#define MAX_ALIGN 4096u

struct prefix {          /* the 16 bytes just before every payload */
	uint32_t magic;
	uint32_t cls;
	uint64_t block_off;
};
struct free_node {       /* at the start of a free block */
	uint32_t magic;
	uint32_t cls;
	uint64_t next;
};
_Static_assert(sizeof(struct prefix) == PREFIX && sizeof(struct free_node) == 16, "allocator marks");

static uint64_t class_size(unsigned c)
{
	if (c < 4)
		return 64ull * (c + 1);
	unsigned g = (c - 4) / 4, s = (c - 4) % 4;
	uint64_t base = 256ull << g;
	return base + (s + 1) * (base / 4);
}

static int class_of(uint64_t size, unsigned *cls)
{
	unsigned c;
	if (size <= 256) {
		c = size == 0 ? 0 : (unsigned)((size + 63) / 64 - 1);
	} else {
		unsigned p = 64 - (unsigned)__builtin_clzll(size - 1); /* 2^p >= size */
		uint64_t base = 1ull << (p - 1);                       /* base < size <= 2 base */
		uint64_t quarter = base / 4;
		unsigned s = (unsigned)((size - base + quarter - 1) / quarter) - 1;
		c = 4 + 4 * (p - 1 - 8) + s;
	}
	if (c >= SHMP__NCLASSES)
		return -SHMP_ESEGFULL;
	*cls = c;
	return 0;
}

static bool block_ok(const struct shmp__seg_hdr *h, uint64_t off, unsigned cls)
{
	return off >= h->heap_start && off < h->heap_top && off % SHMP__CACHELINE == 0 &&
	       class_size(cls) <= h->heap_top - off;
}

int shmp_segment_alloc(shmp_segment_t *seg, size_t size, size_t align, uint64_t *off)
{
	return shmp__segment_alloc(seg, size, align, off, true);
}

int shmp__segment_alloc(shmp_segment_t *seg, size_t size, size_t align, uint64_t *off, bool zero)
{
	if (!seg || !off || size == 0 || (align & (align - 1)) || align > MAX_ALIGN)
		return -EINVAL;
	if (seg->readonly)
		return -EROFS;
	if (align < PREFIX)
		align = PREFIX;
	if (size > ((uint64_t)1 << 50))
		return -SHMP_ESEGFULL;
	/* Blocks start on 64 bytes; the payload goes at the first multiple of
	 * align that leaves room for the prefix, at most `lead` bytes in. */
	uint64_t lead = align > PREFIX ? align : PREFIX;
	unsigned c;
	if (class_of(size + lead, &c) < 0)
		return -SHMP_ESEGFULL;
	uint64_t csize = class_size(c);

	struct shmp__seg_hdr *h = seg->hdr;
	int r = shmp__lock_acquire_internal(&h->alloc_lock);
	if (r < 0)
		return r;
	uint64_t block = h->free_head[c];
	bool reused = block != 0;
	if (reused) {
		struct free_node *n = (struct free_node *)(seg->base + (block_ok(h, block, c) ? block : 0));
		if (!block_ok(h, block, c) || n->magic != FREE_MAGIC || n->cls != c ||
		    (n->next != 0 && !block_ok(h, n->next, c))) {
			h->free_head[c] = 0; /* drop the damaged list: leak, never scribble */
			shmp__lock_release_sh(&h->alloc_lock);
			return -SHMP_ECORRUPT;
		}
		/* Unlink first, then mark: killed between the two, the list is
		 * whole and only this block is lost. */
		__atomic_store_n(&h->free_head[c], n->next, __ATOMIC_RELEASE);
		n->magic = LIVE_MAGIC; /* a stale FREE mark must not survive inside the block */
	} else {
		if (h->heap_end - h->heap_top < csize) {
			shmp__lock_release_sh(&h->alloc_lock);
			return -SHMP_ESEGFULL; /* the limit is the segment's size: say so */
		}
		block = h->heap_top;
		__atomic_store_n(&h->heap_top, block + csize, __ATOMIC_RELEASE);
	}
	uint64_t payload = (block + PREFIX + align - 1) & ~(uint64_t)(align - 1);
	struct prefix *p = (struct prefix *)(seg->base + payload - PREFIX);
	p->cls = c;
	p->block_off = block;
	p->magic = LIVE_MAGIC;
	h->used_bytes += csize;
	h->live_blocks++;
	shmp__lock_release_sh(&h->alloc_lock);

	/* Fresh bump memory is still zero (tmpfs); reused memory is cleared here,
	 * outside the lock: the block is ours alone. */
	if (reused && zero)
		memset(seg->base + payload, 0, size);
	*off = payload;
	return 0;
}

int shmp_segment_free(shmp_segment_t *seg, uint64_t off)
{
	if (!seg)
		return -EINVAL;
	if (seg->readonly)
		return -EROFS;
	struct shmp__seg_hdr *h = seg->hdr;
	if (off < h->heap_start + PREFIX || off >= h->heap_end || off % PREFIX != 0)
		return -EINVAL;
	int r = shmp__lock_acquire_internal(&h->alloc_lock);
	if (r < 0)
		return r;
	struct prefix *p = (struct prefix *)(seg->base + off - PREFIX);
	uint64_t block = p->block_off;
	unsigned c = p->cls;
	if (p->magic != LIVE_MAGIC || c >= SHMP__NCLASSES || block > off - PREFIX ||
	    off - block > MAX_ALIGN || !block_ok(h, block, c) || off - block >= class_size(c)) {
		shmp__lock_release_sh(&h->alloc_lock);
		return -EINVAL;
	}
	p->magic = FREE_MAGIC; /* a second free of this offset is refused */
	struct free_node *n = (struct free_node *)(seg->base + block);
	n->cls = c;
	n->next = h->free_head[c];
	n->magic = FREE_MAGIC;
	/* The node is whole before it is published (release: the compiler may
	 * not sink the writes above below this store). */
	__atomic_store_n(&h->free_head[c], block, __ATOMIC_RELEASE);
	h->used_bytes -= class_size(c);
	h->live_blocks--;
	shmp__lock_release_sh(&h->alloc_lock);
	return 0;
}

int shmp_segment_stats(shmp_segment_t *seg, struct shmp_segment_stats *st)
{
	if (!seg || !st)
		return -EINVAL;
	struct shmp__seg_hdr *h = seg->hdr;
	st->size = seg->size;
	st->heap_bytes = h->heap_end - h->heap_start;
	st->used_bytes = h->used_bytes;
	st->live_blocks = h->live_blocks;
	st->creator_pid = h->creator_pid;
	st->attach_count = atomic_load_explicit(&h->attach_count, memory_order_relaxed);
	return 0;
}

void *shmp__alloc_ptr(shmp_segment_t *seg, size_t size, size_t align, uint64_t *off)
{
	uint64_t o;
	int r = shmp_segment_alloc(seg, size, align, &o);
	if (r < 0) {
		errno = -r; /* shmp's own codes too: -errno gives them back */
		return NULL;
	}
	if (off)
		*off = o;
	return seg->base + o;
}

void shmp__free_ptr(shmp_segment_t *seg, void *p)
{
	uint64_t off;
	if (p && shmp_segment_offset(seg, p, &off) == 0)
		shmp_segment_free(seg, off);
}

/* ---- the shared heap ---------------------------------------------------
 * malloc's API over the default segment's allocator: the same size
 * classes, the same robust lock and the same crash safety. A block's usable
 * size comes from its prefix, validated as free() validates it. */

/* Bytes usable at payload offset off, or 0 if off is not a live block. */
static size_t block_capacity(shmp_segment_t *seg, uint64_t off)
{
	const struct shmp__seg_hdr *h = seg->hdr;
	if (off < h->heap_start + PREFIX || off >= h->heap_end || off % PREFIX != 0)
		return 0;
	const struct prefix *p = (const struct prefix *)(seg->base + off - PREFIX);
	uint64_t block = p->block_off;
	unsigned c = p->cls;
	if (p->magic != LIVE_MAGIC || c >= SHMP__NCLASSES || block > off - PREFIX || !block_ok(h, block, c) ||
	    off - block >= class_size(c))
		return 0;
	return (size_t)(class_size(c) - (off - block));
}

void *shmp_malloc(size_t size)
{
	shmp_segment_t *seg = shmp_segment_default();
	return seg ? shmp__alloc_ptr(seg, size ? size : 1, 16, NULL) : NULL;
}

void *shmp_calloc(size_t n, size_t size)
{
	if (size && n > SIZE_MAX / size) {
		errno = ENOMEM;
		return NULL;
	}
	return shmp_malloc(n * size); /* blocks are handed out zeroed */
}

/* The heap block p is, as an offset, or false (errno EINVAL). */
static bool heap_offset(const void *p, shmp_segment_t **seg, uint64_t *off)
{
	if (!(*seg = shmp_segment_default()))
		return false;
	if (shmp_segment_offset(*seg, p, off) < 0) {
		errno = EINVAL;
		return false;
	}
	return true;
}

void shmp_free(void *p)
{
	shmp_segment_t *seg;
	uint64_t off;
	if (p && heap_offset(p, &seg, &off) && shmp_segment_free(seg, off) < 0)
		errno = EINVAL;
}

void *shmp_realloc(void *p, size_t size)
{
	if (!p)
		return shmp_malloc(size);
	shmp_segment_t *seg;
	uint64_t off;
	if (!heap_offset(p, &seg, &off))
		return NULL;
	size_t cap = block_capacity(seg, off);
	if (!cap) {
		errno = EINVAL;
		return NULL;
	}
	if (size <= cap && size >= cap / 4)
		return p; /* fits, and not wasting most of the block */
	void *q = shmp_malloc(size);
	if (!q)
		return NULL; /* p is left as it was, as realloc does */
	memcpy(q, p, size < cap ? size : cap);
	shmp_segment_free(seg, off);
	return q;
}

char *shmp_strdup(const char *s)
{
	if (!s) {
		errno = EINVAL;
		return NULL;
	}
	size_t n = strlen(s) + 1;
	char *d = shmp_malloc(n);
	if (d)
		memcpy(d, s, n);
	return d;
}
