/* private: Value and Array. A Value is an Array of one item: both handles
 * wrap one `struct typed`, so every operation is written once. */
#include "types.h"
#include "typecode.h"

#include <stdlib.h>

struct shmp__typed_sh {       /* shared header, then the lock (if own), then data */
	uint32_t magic;
	uint32_t version;
	char typecode;
	uint8_t itemsize;
	uint8_t is_array;
	uint8_t reserved0;    /* zero, for later versions */
	uint32_t reserved1;   /* zero, for later versions */
	uint64_t length;
	uint64_t lock_off;    /* offset of the lock in the segment, 0 if raw */
	uint64_t data_off;    /* offset of the items in the segment */
};
#define TYPED_MAGIC 0x54595045u
#define TYPED_VERSION 1u
/* Pinned: other processes, maybe of another build, map it. */
SHMP__PIN(struct shmp__typed_sh, 40);
_Static_assert(offsetof(struct shmp__typed_sh, typecode) == 8 && offsetof(struct shmp__typed_sh, length) == 16 &&
	       offsetof(struct shmp__typed_sh, data_off) == 32, "typed fields");

struct typed {
	SHMP__HEAD(struct shmp__typed_sh);
	char *data;
	size_t length;
	unsigned itemsize;
	char typecode;
	bool is_int;
	shmp_lock_t *lock;      /* NULL if raw; points at own_lock or the caller's */
	shmp_lock_t own_lock;
};
struct shmp_value { struct typed t; };
struct shmp_array { struct typed t; };

/* 'l' and 'L' are 8 bytes and every item goes through int64_t: shmp is
 * for 64-bit Linux (LP64), where long is 64 bits. */
_Static_assert(sizeof(long) == 8, "shmp needs an LP64 platform: long must be 64 bits");

int shmp_typecode_size(char tc)
{
	switch (tc) {
	case 'b': case 'B': case 'c': case '?': return 1;
	case 'h': case 'H': return 2;
	case 'i': case 'I': case 'f': return 4;
	case 'l': case 'L': return (int)sizeof(long);
	case 'q': case 'Q': case 'd': return 8;
	default: return -EINVAL;
	}
}

static bool typecode_is_int(char tc)
{
	return tc != 'f' && tc != 'd' && tc != 'c' && tc != '?';
}

/* A whole, valid Value (want 1) or Array (want 2), or either (want 0). */
static bool typed_check(const shmp_segment_t *seg, uint64_t off, const void *p, uint32_t want)
{
	(void)off;
	const struct shmp__typed_sh *sh = p;
	int isz = shmp_typecode_size(sh->typecode), e;
	if (sh->is_array > 1 || (want && want - 1 != sh->is_array))
		return false;
	if (isz < 0 || sh->itemsize != isz || sh->length == 0 || (!sh->is_array && sh->length != 1) ||
	    sh->length > seg->size / (uint64_t)isz ||
	    !shmp_segment_ptr(seg, sh->data_off, sh->length * (uint64_t)isz))
		return false;
	return !sh->lock_off || shmp__lock_at(seg, sh->lock_off, 0, &e);
}
const struct shmp__layout shmp__typed_layout = SHMP__LAYOUT(struct shmp__typed_sh, TYPED_MAGIC, TYPED_VERSION,
							     typed_check);

/* A new Value (is_array false) or Array: its handle, NULL + errno. */
static struct typed *typed_new(char tc, size_t length, const void *init, const struct shmp_value_opts *opts,
			       bool is_array)
{
	int isz = shmp_typecode_size(tc);
	struct shmp_value_opts o;
	if (isz < 0 || length == 0 || SHMP__OPTS(o, opts) < 0) {
		errno = EINVAL;
		return NULL;
	}
	if (length > (SIZE_MAX / 2) / (size_t)isz) {
		errno = SHMP_ESEGFULL;
		return NULL;
	}
	shmp_lock_t *given = o.lock;
	if (o.raw && given) {
		errno = EINVAL; /* raw means no lock: a lock too is a contradiction */
		return NULL;
	}
	shmp_segment_t *seg = o.segment;
	if (!seg && given)
		seg = given->seg;
	if (!(seg = shmp__segment_or_default(seg)))
		return NULL;
	if (given && !shmp__seg_contains(seg, given->sh, sizeof *given->sh)) {
		errno = EXDEV;
		return NULL;
	}

	bool own_lock = !o.raw && !given;
	/* An own lock starts the second cache line (the block is line
	 * aligned) and the first items follow it there: the holder of the
	 * lock then writes the line it already owns, and a hand-over moves
	 * one line between the processes, not two. The header's line is only
	 * read after creation. Readers follow lock_off and data_off. */
	size_t lock_at = own_lock ? SHMP__CACHELINE : 0;
	_Static_assert(sizeof(struct shmp__typed_sh) <= SHMP__CACHELINE, "typed header fits a line");
	size_t head = own_lock ? lock_at + sizeof(struct shmp__lock_sh) : sizeof(struct shmp__typed_sh);
	head = (head + 15) & ~(size_t)15; /* items 16-byte aligned */
	struct typed *t = shmp__obj_new(seg, sizeof(struct typed), &shmp__typed_layout,
					head - sizeof(struct shmp__typed_sh) + length * (size_t)isz);
	if (!t)
		return NULL;
	uint64_t off = (uint64_t)((char *)t->sh - seg->base);
	t->data = seg->base + off + head;
	t->length = length;
	t->itemsize = (unsigned)isz;
	t->typecode = tc;
	t->is_int = typecode_is_int(tc);
	if (own_lock) {
		struct shmp__lock_sh *l = (struct shmp__lock_sh *)((char *)t->sh + lock_at);
		shmp__lock_init(l, SHMP__KIND_RLOCK);
		t->own_lock = (struct shmp_lock){ .seg = seg, .sh = l, .owns_memory = false };
		t->lock = &t->own_lock;
	} else {
		t->lock = given;
	}
	if (init)
		memcpy(t->data, init, length * (size_t)isz);
	struct shmp__typed_sh *sh = t->sh;
	sh->typecode = tc;
	sh->itemsize = (uint8_t)isz;
	sh->is_array = is_array;
	sh->length = length;
	sh->data_off = off + head;
	if (t->lock)
		shmp_segment_offset(seg, t->lock->sh, &sh->lock_off);
	shmp__obj_publish(sh, &shmp__typed_layout);
	return t;
}

SHMP__HEAD_CHECK(struct typed);

static struct typed *typed_open(shmp_segment_t *seg, uint64_t off, bool is_array, _Atomic uint32_t *ref)
{
	struct typed *t = shmp__obj_open(seg, off, &shmp__typed_layout, 1u + is_array, sizeof *t, ref);
	if (!t)
		return NULL;
	struct shmp__typed_sh *sh = t->sh;
	t->data = seg->base + sh->data_off;
	t->length = sh->length;
	t->itemsize = sh->itemsize;
	t->typecode = sh->typecode;
	t->is_int = typecode_is_int(sh->typecode);
	if (sh->lock_off) {
		t->own_lock = (struct shmp_lock){ .seg = seg, .sh = (void *)(seg->base + sh->lock_off) };
		t->lock = &t->own_lock;
	}
	return t;
}

int shmp__typed_inspect(const shmp_segment_t *seg, const void *p, struct shmp_object_info *info)
{
	const struct shmp__typed_sh *sh = p;
	info->typecode = sh->typecode;
	info->length = sh->length;
	uint64_t bytes = sh->length * sh->itemsize;
	info->preview_bytes = bytes < sizeof info->preview ? (uint32_t)bytes : sizeof info->preview;
	/* Racy on purpose: a snapshot for people, never worth a lock. */
	memcpy(info->preview, seg->base + sh->data_off, info->preview_bytes);
	int e;
	const struct shmp__lock_sh *l = sh->lock_off ? shmp__lock_at(seg, sh->lock_off, 0, &e) : NULL;
	if (l) /* checked with the Value */
		shmp__lock_inspect(seg, l, info);
	return 0;
}

/* get/set under the lock. A dead previous holder is absorbed: a Value's
 * bytes need no repair beyond what its last writer left. The wait has no
 * time limit but gives up with -EINTR under shmp_set_interruptible(1),
 * before anything is read or written. */
static int typed_lock(struct typed *t)
{
	if (!t->lock)
		return 0;
	int r = shmp__lock_acquire_sh(t->lock->sh, SHMP_FOREVER);
	if (r == -EOWNERDEAD) {
		shmp__lock_mark_consistent(t->lock->sh);
		r = 0;
	}
	return r;
}

static void typed_unlock(struct typed *t)
{
	if (t->lock)
		shmp__lock_release_sh(t->lock->sh);
}

static int typed_copy(struct typed *t, size_t start, size_t count, void *buf, bool out)
{
	if (!buf)
		return -EINVAL;
	if (start > t->length || count > t->length - start)
		return -ERANGE;
	int r = typed_lock(t);
	if (r < 0)
		return r;
	char *p = t->data + start * t->itemsize;
	if (out)
		memcpy(buf, p, count * t->itemsize);
	else
		memcpy(p, buf, count * t->itemsize);
	typed_unlock(t);
	return 0;
}

/* Item i as int64 / double, or store one, converting by typecode. */
static int typed_get_num(struct typed *t, size_t i, int64_t *iv, double *dv)
{
	unsigned char buf[8];
	int r = typed_copy(t, i, 1, buf, true);
	return r < 0 ? r : shmp__item_decode(t->typecode, buf, iv, dv);
}

static int typed_set_num(struct typed *t, size_t i, int64_t x, double y, bool from_double)
{
	unsigned char buf[8];
	int r = shmp__item_encode(t->typecode, buf, x, y, from_double);
	return r < 0 ? r : typed_copy(t, i, 1, buf, false);
}

/* Lock-free atomics on integer items. */
enum aop { A_LOAD, A_STORE, A_ADD, A_CAS };
static int typed_atomic(struct typed *t, size_t i, enum aop op, int64_t arg, int64_t *io, int64_t desired)
{
	if (!t->is_int)
		return -EINVAL;
	if (i >= t->length)
		return -ERANGE;
	void *p = t->data + i * t->itemsize;
#define ATOMIC_CASE(T)                                                                         \
	{                                                                                      \
		T *q = p, e;                                                                   \
		switch (op) {                                                                  \
		case A_LOAD: *io = (int64_t)__atomic_load_n(q, __ATOMIC_SEQ_CST); return 0;    \
		case A_STORE: __atomic_store_n(q, (T)arg, __ATOMIC_SEQ_CST); return 0;         \
		case A_ADD: e = __atomic_fetch_add(q, (T)arg, __ATOMIC_SEQ_CST);               \
			if (io) *io = (int64_t)e;                                              \
			return 0;                                                              \
		case A_CAS: e = (T)*io;                                                        \
			if (__atomic_compare_exchange_n(q, &e, (T)desired, false,              \
					__ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))                   \
				return 1;                                                      \
			*io = (int64_t)e;                                                      \
			return 0;                                                              \
		}                                                                              \
		return -EINVAL;                                                                \
	}
	switch (t->typecode) {
	case 'b': ATOMIC_CASE(int8_t)
	case 'B': ATOMIC_CASE(uint8_t)
	case 'h': ATOMIC_CASE(int16_t)
	case 'H': ATOMIC_CASE(uint16_t)
	case 'i': ATOMIC_CASE(int32_t)
	case 'I': ATOMIC_CASE(uint32_t)
	case 'l': case 'q': ATOMIC_CASE(int64_t)
	case 'L': case 'Q': ATOMIC_CASE(uint64_t)
	default: return -EINVAL;
	}
#undef ATOMIC_CASE
}

static shmp_lock_t *typed_get_lock(struct typed *t)
{
	if (!t->lock)
		errno = ENOLCK;
	return t->lock;
}

/* ---- Value ------------------------------------------------------------ */

/* A Value is an Array of one item: one handle, two names for it. */
shmp_value_t *shmp_value_create(char tc, const void *init, const struct shmp_value_opts *opts)
{
	return (shmp_value_t *)typed_new(tc, 1, init, opts, false);
}

shmp_value_t *shmp__value_open(shmp_segment_t *seg, uint64_t off, _Atomic uint32_t *ref)
{
	return (shmp_value_t *)typed_open(seg, off, false, ref);
}

void shmp_value_destroy(shmp_value_t *v)
{
	shmp__obj_destroy(v);
}

#define V_CHECK(v) do { if (shmp__unlikely(!(v))) return -EINVAL; } while (0)
int shmp_value_get(shmp_value_t *v, void *out) { V_CHECK(v); return typed_copy(&v->t, 0, 1, out, true); }
int shmp_value_set(shmp_value_t *v, const void *in) { V_CHECK(v); return typed_copy(&v->t, 0, 1, (void *)in, false); }
int shmp_value_get_i64(shmp_value_t *v, int64_t *out) { V_CHECK(v); V_CHECK(out); return typed_get_num(&v->t, 0, out, NULL); }
int shmp_value_set_i64(shmp_value_t *v, int64_t x) { V_CHECK(v); return typed_set_num(&v->t, 0, x, 0, false); }
int shmp_value_get_f64(shmp_value_t *v, double *out) { V_CHECK(v); V_CHECK(out); return typed_get_num(&v->t, 0, NULL, out); }
int shmp_value_set_f64(shmp_value_t *v, double x) { V_CHECK(v); return typed_set_num(&v->t, 0, 0, x, true); }
int shmp_value_load(shmp_value_t *v, int64_t *out) { V_CHECK(v); V_CHECK(out); return typed_atomic(&v->t, 0, A_LOAD, 0, out, 0); }
int shmp_value_store(shmp_value_t *v, int64_t x) { V_CHECK(v); return typed_atomic(&v->t, 0, A_STORE, x, NULL, 0); }
int shmp_value_add(shmp_value_t *v, int64_t d, int64_t *prev)
{
	/* The counter case ('q', 'l', 'Q', 'L'): straight to the instruction. */
	if (shmp__likely(v && v->t.itemsize == 8 && v->t.is_int)) {
		int64_t old = __atomic_fetch_add((int64_t *)(void *)v->t.data, d, __ATOMIC_SEQ_CST);
		if (prev)
			*prev = old;
		return 0;
	}
	V_CHECK(v);
	return typed_atomic(&v->t, 0, A_ADD, d, prev, 0);
}
int shmp_value_cas(shmp_value_t *v, int64_t *exp, int64_t des) { V_CHECK(v); V_CHECK(exp); return typed_atomic(&v->t, 0, A_CAS, 0, exp, des); }

void *shmp_value_ptr(shmp_value_t *v)
{
	if (!v) {
		errno = EINVAL;
		return NULL;
	}
	return v->t.data;
}

shmp_lock_t *shmp_value_lock(shmp_value_t *v)
{
	if (!v) {
		errno = EINVAL;
		return NULL;
	}
	return typed_get_lock(&v->t);
}

char shmp_value_typecode(const shmp_value_t *v)
{
	return v ? v->t.typecode : 0;
}

/* ---- Array ------------------------------------------------------------ */

shmp_array_t *shmp_array_create(char tc, size_t length, const void *init, const struct shmp_value_opts *opts)
{
	return (shmp_array_t *)typed_new(tc, length, init, opts, true);
}

shmp_array_t *shmp__array_open(shmp_segment_t *seg, uint64_t off, _Atomic uint32_t *ref)
{
	return (shmp_array_t *)typed_open(seg, off, true, ref);
}

void shmp_array_destroy(shmp_array_t *a)
{
	shmp__obj_destroy(a);
}

size_t shmp_array_len(const shmp_array_t *a) { return a ? a->t.length : 0; }
char shmp_array_typecode(const shmp_array_t *a) { return a ? a->t.typecode : 0; }
int shmp_array_get(shmp_array_t *a, size_t i, void *out) { V_CHECK(a); return typed_copy(&a->t, i, 1, out, true); }
int shmp_array_set(shmp_array_t *a, size_t i, const void *in) { V_CHECK(a); return typed_copy(&a->t, i, 1, (void *)in, false); }
int shmp_array_get_i64(shmp_array_t *a, size_t i, int64_t *out) { V_CHECK(a); V_CHECK(out); return typed_get_num(&a->t, i, out, NULL); }
int shmp_array_set_i64(shmp_array_t *a, size_t i, int64_t x) { V_CHECK(a); return typed_set_num(&a->t, i, x, 0, false); }
int shmp_array_get_f64(shmp_array_t *a, size_t i, double *out) { V_CHECK(a); V_CHECK(out); return typed_get_num(&a->t, i, NULL, out); }
int shmp_array_set_f64(shmp_array_t *a, size_t i, double x) { V_CHECK(a); return typed_set_num(&a->t, i, 0, x, true); }
int shmp_array_read(shmp_array_t *a, size_t s, size_t n, void *out) { V_CHECK(a); return typed_copy(&a->t, s, n, out, true); }
int shmp_array_write(shmp_array_t *a, size_t s, size_t n, const void *in) { V_CHECK(a); return typed_copy(&a->t, s, n, (void *)in, false); }
int shmp_array_load(shmp_array_t *a, size_t i, int64_t *out) { V_CHECK(a); V_CHECK(out); return typed_atomic(&a->t, i, A_LOAD, 0, out, 0); }
int shmp_array_store(shmp_array_t *a, size_t i, int64_t x) { V_CHECK(a); return typed_atomic(&a->t, i, A_STORE, x, NULL, 0); }
int shmp_array_add(shmp_array_t *a, size_t i, int64_t d, int64_t *prev) { V_CHECK(a); return typed_atomic(&a->t, i, A_ADD, d, prev, 0); }
int shmp_array_cas(shmp_array_t *a, size_t i, int64_t *exp, int64_t des) { V_CHECK(a); V_CHECK(exp); return typed_atomic(&a->t, i, A_CAS, 0, exp, des); }

void *shmp_array_ptr(shmp_array_t *a)
{
	if (!a) {
		errno = EINVAL;
		return NULL;
	}
	return a->t.data;
}

shmp_lock_t *shmp_array_lock(shmp_array_t *a)
{
	if (!a) {
		errno = EINVAL;
		return NULL;
	}
	return typed_get_lock(&a->t);
}
