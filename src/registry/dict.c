/* private: Dict — string keys, byte values, in shared memory.
 *
 * A chained hash table: buckets hold the index (+1) of their first entry,
 * entries come from a fixed pool with a lock-free free list. Buckets are
 * split among 64 stripes, each with a robust lock for writers and a sequence
 * count for readers, who take no lock: they walk the chain and copy the
 * value between two reads of the count, and retry if a writer came by.
 *
 * Writers change what readers see with single stores, so a writer killed at
 * any instruction leaves every key whole:
 *   - a new key is filled in a private entry, then linked with one store;
 *   - a value is written into the entry's inactive half (each entry has two
 *     value slots), then one store of `vstate` switches halves; a value
 *     bigger than a slot lives in a block whose offset the slot holds;
 *   - a delete unlinks with one store, and only then frees.
 * The next holder of a stripe lock whose count it finds odd knows a writer
 * died there: it recounts the stripe's keys and makes the count even. At
 * worst a dead writer leaks the entry or block it was about to use.
 *
 * Every index and offset read from shared memory is checked before use; a
 * chain longer than the pool is corruption. */
#include "types.h"

#include <stdlib.h>

#define DICT_MAGIC 0x44494354u /* "DICT" */
#define DICT_VERSION 1u
#define NSTRIPES 64u
#define SPIN_READS 64         /* reader retries before it takes the lock */
#define DEFAULT_CAPACITY 4096u
#define MAX_CAPACITY (1u << 24)
#define DEFAULT_KEY_MAX 63u
#define MAX_KEY_MAX 1024u
#define DEFAULT_INLINE 48u
#define MAX_INLINE 4096u
#define DEFAULT_MAX_VALUE ((uint64_t)1 << 20)

struct stripe {
	struct shmp__lock_sh lock;
	_Atomic uint32_t seq;   /* odd while a writer changes the stripe */
	uint32_t count;         /* keys in the stripe, under the lock */
} __attribute__((aligned(SHMP__CACHELINE)));

struct shmp__dict_sh {
	uint32_t magic;
	uint32_t version;
	uint32_t capacity;      /* keys */
	uint32_t nentries;      /* capacity + NSTRIPES spares (replacing needs one) */
	uint32_t nbuckets;      /* power of two */
	uint32_t key_max;
	uint32_t value_inline;  /* bytes per value slot */
	uint32_t entry_size;
	uint64_t max_value;
	uint64_t buckets_off;   /* _Atomic uint32_t[nbuckets] */
	uint64_t entries_off;
	uint64_t reserved[4];    /* zero, for later versions */
	SHMP__ALIGNED _Atomic uint64_t free_top; /* tag << 32 | index + 1 */
	SHMP__ALIGNED _Atomic uint32_t used;     /* keys reserved against capacity */
	SHMP__ALIGNED struct stripe stripes[NSTRIPES];
};

struct dentry {
	_Atomic uint32_t next;    /* index + 1 of the next entry in the chain or free list */
	uint32_t hash;
	uint32_t klen;
	uint32_t reserved;        /* zero, for later versions */
	_Atomic uint64_t vstate;  /* vlen << 1 | active slot */
	char key[];               /* key_max + 1, then two slots of value_inline */
};
/* Pinned: another version's process may map the same Dict (DICT_VERSION
 * changes with any of these). Reserved fields are zero, for later use. */
_Static_assert(sizeof(struct stripe) == 64, "stripe");
SHMP__PIN(struct shmp__dict_sh, 4352);
_Static_assert(offsetof(struct shmp__dict_sh, buckets_off) == 40, "buckets_off");
_Static_assert(offsetof(struct shmp__dict_sh, free_top) == 128, "free_top");
_Static_assert(offsetof(struct shmp__dict_sh, used) == 192, "used");
_Static_assert(offsetof(struct shmp__dict_sh, stripes) == 256, "stripes");
_Static_assert(offsetof(struct dentry, vstate) == 16 && offsetof(struct dentry, key) == 24, "dict entry");

struct shmp_dict {
	SHMP__HEAD(struct shmp__dict_sh);
	/* Trusted copies, checked when the handle was made. */
	_Atomic uint32_t *buckets;
	char *entries;
	uint32_t capacity, nentries, bmask, key_max, value_inline, esz;
	uint64_t max_value;
};
SHMP__HEAD_CHECK(struct shmp_dict);

static uint32_t hash_key(const char *k, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)k[i]) * 0x100000001b3ull;
	return (uint32_t)(h ^ (h >> 32));
}

static struct dentry *ent(const shmp_dict_t *d, uint32_t idx)
{
	return (struct dentry *)(d->entries + (size_t)idx * d->esz);
}

static char *slot(const shmp_dict_t *d, struct dentry *e, unsigned which)
{
	return e->key + d->key_max + 1 + (size_t)which * d->value_inline;
}

static size_t entry_size(uint32_t key_max, uint32_t value_inline)
{
	return (sizeof(struct dentry) + key_max + 1 + 2 * (size_t)value_inline + 15) & ~(size_t)15;
}

/* ---- the entry pool (Treiber stack; the tag defeats ABA) ---------------- */

static int64_t pool_pop(shmp_dict_t *d)
{
	uint64_t top = atomic_load_explicit(&d->sh->free_top, memory_order_acquire);
	for (;;) {
		uint32_t i1 = (uint32_t)top;
		if (i1 == 0 || i1 > d->nentries)
			return -ENOSPC; /* empty, or a corrupted head: nothing usable */
		uint32_t next = atomic_load_explicit(&ent(d, i1 - 1)->next, memory_order_relaxed);
		uint64_t nt = ((top >> 32) + 1) << 32 | next;
		if (atomic_compare_exchange_weak_explicit(&d->sh->free_top, &top, nt, memory_order_acq_rel,
							  memory_order_acquire))
			return i1 - 1;
	}
}

static void pool_push(shmp_dict_t *d, uint32_t idx)
{
	uint64_t top = atomic_load_explicit(&d->sh->free_top, memory_order_relaxed);
	do {
		atomic_store_explicit(&ent(d, idx)->next, (uint32_t)top, memory_order_relaxed);
	} while (!atomic_compare_exchange_weak_explicit(&d->sh->free_top, &top,
							((top >> 32) + 1) << 32 | (idx + 1),
							memory_order_release, memory_order_relaxed));
}

/* ---- create / open ------------------------------------------------------ */

static bool dict_check(const shmp_segment_t *seg, uint64_t off, const void *p, uint32_t want);
const struct shmp__layout shmp__dict_layout = SHMP__LAYOUT(struct shmp__dict_sh, DICT_MAGIC, DICT_VERSION, dict_check);

/* The handle's trusted copies of a checked header. */
static void dict_adopt(shmp_dict_t *d, const shmp_segment_t *seg)
{
	const struct shmp__dict_sh *sh = d->sh;
	d->buckets = (void *)(seg->base + sh->buckets_off);
	d->entries = seg->base + sh->entries_off;
	d->capacity = sh->capacity;
	d->nentries = sh->nentries;
	d->bmask = sh->nbuckets - 1;
	d->key_max = sh->key_max;
	d->value_inline = sh->value_inline;
	d->esz = sh->entry_size;
	d->max_value = sh->max_value;
}

shmp_dict_t *shmp_dict_create(const struct shmp_dict_opts *opts)
{
	struct shmp_dict_opts o;
	if (SHMP__OPTS(o, opts) < 0 || o.capacity > MAX_CAPACITY || o.key_max > MAX_KEY_MAX ||
	    o.value_inline > MAX_INLINE || o.max_value > SHMP_RING_MAX_MESSAGE) {
		errno = EINVAL;
		return NULL;
	}
	uint32_t cap = o.capacity ? o.capacity : DEFAULT_CAPACITY;
	uint32_t kmax = o.key_max ? o.key_max : DEFAULT_KEY_MAX;
	uint32_t vin = o.value_inline ? o.value_inline : DEFAULT_INLINE;
	vin = (vin + 7) & ~7u; /* a slot must hold a block offset */
	uint32_t nb = 1;
	while (nb < cap)
		nb <<= 1;
	uint32_t nent = cap + NSTRIPES;
	size_t esz = entry_size(kmax, vin);
	shmp_dict_t *d = shmp__obj_new(o.segment, sizeof *d, &shmp__dict_layout, 0);
	if (!d)
		return NULL;
	struct shmp__dict_sh *sh = d->sh;
	shmp_segment_t *seg = d->seg;
	if (!shmp__alloc_ptr(seg, (size_t)nb * 4, SHMP__CACHELINE, &sh->buckets_off) ||
	    !shmp__alloc_ptr(seg, esz * nent, SHMP__CACHELINE, &sh->entries_off)) {
		int err = errno;
		if (sh->buckets_off)
			shmp_segment_free(seg, sh->buckets_off);
		errno = err;
		shmp__obj_destroy(d);
		return NULL;
	}
	/* The geometry dict_check demands of every opener (`duplicates` pairs
	 * these stores with the pool's call setup: alike in shape only). */
	sh->capacity = cap;
	sh->nentries = nent;
	sh->nbuckets = nb;
	sh->key_max = kmax;
	sh->value_inline = vin;
	sh->entry_size = (uint32_t)esz;
	sh->max_value = o.max_value ? o.max_value : DEFAULT_MAX_VALUE;
	dict_adopt(d, seg);
	for (uint32_t i = 0; i < nent; i++) /* the free list: 0 -> 1 -> ... */
		atomic_store_explicit(&ent(d, i)->next, i + 1 < nent ? i + 2 : 0, memory_order_relaxed);
	atomic_store_explicit(&sh->free_top, 1, memory_order_relaxed);
	for (uint32_t i = 0; i < NSTRIPES; i++)
		shmp__lock_init(&sh->stripes[i].lock, SHMP__KIND_LOCK);
	shmp__obj_publish(sh, &shmp__dict_layout);
	return d;
}

/* Everything a handle trusts from the header, checked whole. */
static bool dict_check(const shmp_segment_t *seg, uint64_t off, const void *p, uint32_t want)
{
	(void)off, (void)want;
	const struct shmp__dict_sh *sh = p;
	if (sh->capacity == 0 || sh->capacity > MAX_CAPACITY || sh->nentries != sh->capacity + NSTRIPES ||
	    sh->nbuckets < sh->capacity || (sh->nbuckets & (sh->nbuckets - 1)) || sh->nbuckets > 2 * MAX_CAPACITY ||
	    sh->key_max == 0 || sh->key_max > MAX_KEY_MAX || sh->value_inline < 8 || sh->value_inline % 8 ||
	    sh->value_inline > MAX_INLINE || sh->entry_size != entry_size(sh->key_max, sh->value_inline) ||
	    sh->max_value > SHMP_RING_MAX_MESSAGE || !shmp_segment_ptr(seg, sh->buckets_off, (size_t)sh->nbuckets * 4) ||
	    !shmp_segment_ptr(seg, sh->entries_off, (size_t)sh->entry_size * sh->nentries))
		return false;
	for (uint32_t i = 0; i < NSTRIPES; i++)
		if (!shmp__lock_sound(&sh->stripes[i].lock))
			return false;
	return true;
}

shmp_dict_t *shmp__dict_open(shmp_segment_t *seg, uint64_t off, _Atomic uint32_t *ref)
{
	shmp_dict_t *d = shmp__obj_open(seg, off, &shmp__dict_layout, 0, sizeof *d, ref);
	if (d)
		dict_adopt(d, seg);
	return d;
}

/* The value's bytes for vstate v of entry e: NULL if they are not where
 * they could be (a torn read, or corruption). */
static const char *value_of(const shmp_dict_t *d, struct dentry *e, uint64_t v)
{
	uint64_t len = v >> 1;
	char *s = slot(d, e, v & 1);
	if (len <= d->value_inline)
		return s;
	if (len > d->max_value)
		return NULL;
	uint64_t boff;
	memcpy(&boff, s, sizeof boff);
	return shmp_segment_ptr(d->seg, boff, len);
}

static void value_free(shmp_dict_t *d, struct dentry *e, uint64_t v)
{
	if ((v >> 1) > d->value_inline) {
		uint64_t boff;
		memcpy(&boff, slot(d, e, v & 1), sizeof boff);
		shmp_segment_free(d->seg, boff);
	}
}

void shmp_dict_destroy(shmp_dict_t *d)
{
	if (!d)
		return;
	if (shmp__handle_release(d)) {
		/* Blocks of big values first, then the tables. */
		for (uint32_t b = 0; b <= d->bmask; b++) {
			uint32_t i1 = atomic_load_explicit(&d->buckets[b], memory_order_relaxed);
			for (uint32_t steps = 0; i1 && i1 <= d->nentries && steps < d->nentries; steps++) {
				struct dentry *e = ent(d, i1 - 1);
				value_free(d, e, atomic_load_explicit(&e->vstate, memory_order_relaxed));
				i1 = atomic_load_explicit(&e->next, memory_order_relaxed);
			}
		}
		shmp__free_ptr(d->seg, d->entries);
		shmp__free_ptr(d->seg, (void *)d->buckets);
		shmp__free_ptr(d->seg, d->sh);
	}
	free(d);
}

/* ---- stripes ------------------------------------------------------------ */

static struct stripe *stripe_of(shmp_dict_t *d, uint32_t bucket)
{
	return &d->sh->stripes[bucket % NSTRIPES];
}

static uint32_t chain_count(shmp_dict_t *d, uint32_t stripe_no)
{
	uint32_t n = 0;
	for (uint32_t b = stripe_no; b <= d->bmask; b += NSTRIPES) {
		uint32_t i1 = atomic_load_explicit(&d->buckets[b], memory_order_relaxed);
		for (uint32_t steps = 0; i1 && i1 <= d->nentries && steps < d->nentries; steps++, n++)
			i1 = atomic_load_explicit(&ent(d, i1 - 1)->next, memory_order_relaxed);
	}
	return n;
}

/* Lock the stripe and open its write section. An odd count means the last
 * writer died inside: the table is whole (single-store updates), only the
 * stripe's key count may be off, so recount it. */
static int stripe_lock(shmp_dict_t *d, uint32_t bucket)
{
	struct stripe *s = stripe_of(d, bucket);
	int r = shmp__lock_acquire_internal(&s->lock);
	if (r < 0)
		return r;
	uint32_t q = atomic_load_explicit(&s->seq, memory_order_relaxed);
	if (q & 1)
		s->count = chain_count(d, bucket % NSTRIPES);
	atomic_store_explicit(&s->seq, (q | 1) + ((q & 1) ? 2 : 0), memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	return 0;
}

static void stripe_unlock(shmp_dict_t *d, uint32_t bucket)
{
	struct stripe *s = stripe_of(d, bucket);
	/* Only the lock holder writes seq: a plain store, no locked RMW. */
	uint32_t q = atomic_load_explicit(&s->seq, memory_order_relaxed);
	atomic_store_explicit(&s->seq, q + 1, memory_order_release);
	shmp__lock_release_sh(&s->lock);
}

/* ---- lookups ------------------------------------------------------------ */

static int key_check(shmp_dict_t *d, const char *key, size_t *klen)
{
	if (!d || !key || !*key)
		return -EINVAL;
	size_t n = strnlen(key, d->key_max + 1);
	if (n > d->key_max)
		return -ENAMETOOLONG;
	*klen = n;
	return 0;
}

/* Find key in its chain: the link that points at it (for unlinking) and
 * its index. -ENOENT if absent; -SHMP_ECORRUPT for a bad index or a chain
 * that loops (possible under a writer, for a reader: it then retries). */
static int find(shmp_dict_t *d, uint32_t bucket, const char *key, size_t klen, uint32_t h,
		_Atomic uint32_t **link, uint32_t *idx)
{
	_Atomic uint32_t *l = &d->buckets[bucket];
	uint32_t i1 = atomic_load_explicit(l, memory_order_acquire);
	for (uint32_t steps = 0; i1; steps++) {
		if (i1 > d->nentries || steps >= d->nentries)
			return -SHMP_ECORRUPT;
		struct dentry *e = ent(d, i1 - 1);
		if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0) {
			if (link)
				*link = l;
			*idx = i1 - 1;
			return 0;
		}
		l = &e->next;
		i1 = atomic_load_explicit(l, memory_order_acquire);
	}
	return -ENOENT;
}

/* Copy out the value of a found entry. -EMSGSIZE (len set) if cap is short. */
static int copy_value(shmp_dict_t *d, struct dentry *e, uint64_t v, void *buf, size_t cap, size_t *len)
{
	const char *src = value_of(d, e, v);
	if (!src)
		return -SHMP_ECORRUPT;
	size_t n = (size_t)(v >> 1);
	if (len)
		*len = n;
	if (!buf)
		return 0;
	if (n > cap)
		return -EMSGSIZE;
	memcpy(buf, src, n);
	return 0;
}

/* Reader: look up and copy without the lock, checking the stripe's count
 * around it; after SPIN_READS failed tries (writers keep coming, or one
 * died inside) read under the lock instead, which also repairs. */
static int read_value(shmp_dict_t *d, const char *key, void *buf, size_t cap, size_t *len)
{
	size_t klen;
	int r = key_check(d, key, &klen);
	if (r < 0)
		return r;
	uint32_t h = hash_key(key, klen), b = h & d->bmask;
	struct stripe *s = stripe_of(d, b);
	for (int tries = 0; tries < SPIN_READS; tries++) {
		uint32_t q = atomic_load_explicit(&s->seq, memory_order_acquire);
		if (q & 1) {
			shmp__cpu_relax();
			continue;
		}
		uint32_t idx;
		size_t n = 0;
		r = find(d, b, key, klen, h, NULL, &idx);
		if (r == 0) {
			struct dentry *e = ent(d, idx);
			r = copy_value(d, e, atomic_load_explicit(&e->vstate, memory_order_acquire), buf, cap, &n);
		}
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&s->seq, memory_order_relaxed) == q) {
			if (len && (r == 0 || r == -EMSGSIZE))
				*len = n;
			return r;
		}
	}
	if ((r = stripe_lock(d, b)) < 0)
		return r;
	uint32_t idx;
	r = find(d, b, key, klen, h, NULL, &idx);
	if (r == 0) {
		struct dentry *e = ent(d, idx);
		r = copy_value(d, e, atomic_load_explicit(&e->vstate, memory_order_relaxed), buf, cap, len);
	}
	stripe_unlock(d, b);
	return r;
}

int shmp_dict_get(shmp_dict_t *d, const char *key, void *buf, size_t cap, size_t *len)
{
	if (!buf && cap)
		return -EINVAL;
	/* buf NULL with cap 0 still reports the length through -EMSGSIZE. */
	return read_value(d, key, buf ? buf : (void *)"", cap, len);
}

int shmp_dict_contains(shmp_dict_t *d, const char *key)
{
	int r = read_value(d, key, NULL, 0, NULL);
	return r == 0 ? 1 : r == -ENOENT ? 0 : r;
}

long shmp_dict_len(shmp_dict_t *d)
{
	if (!d)
		return -EINVAL;
	long n = 0;
	for (uint32_t i = 0; i < NSTRIPES; i++)
		n += __atomic_load_n(&d->sh->stripes[i].count, __ATOMIC_RELAXED);
	return n;
}

long shmp_dict_capacity(shmp_dict_t *d)
{
	return d ? (long)d->capacity : -EINVAL;
}

/* ---- writers ------------------------------------------------------------ */

/* Write val into the inactive slot of e and return the vstate that makes it
 * current (publish with one store). A big value goes to a new block. */
static int stage_value(shmp_dict_t *d, struct dentry *e, uint64_t cur, const void *val, size_t len,
		       uint64_t *next)
{
	unsigned other = (unsigned)(cur & 1) ^ 1;
	char *s = slot(d, e, other);
	if (len <= d->value_inline) {
		if (len)
			memcpy(s, val, len);
	} else {
		uint64_t boff;
		int r = shmp__segment_alloc(d->seg, len, 16, &boff, false);
		if (r < 0)
			return r;
		memcpy(d->seg->base + boff, val, len);
		memcpy(s, &boff, sizeof boff);
	}
	*next = (uint64_t)len << 1 | other;
	return 0;
}

/* A fresh entry holding key and val, not linked anywhere. */
static int new_entry(shmp_dict_t *d, const char *key, size_t klen, uint32_t h, const void *val, size_t len,
		     uint32_t *idx)
{
	int64_t i = pool_pop(d);
	if (i < 0)
		return (int)i;
	struct dentry *e = ent(d, (uint32_t)i);
	e->hash = h;
	e->klen = (uint32_t)klen;
	memcpy(e->key, key, klen);
	e->key[klen] = 0;
	uint64_t v;
	int r = stage_value(d, e, 1, val, len, &v); /* slot 0 */
	if (r < 0) {
		pool_push(d, (uint32_t)i);
		return r;
	}
	atomic_store_explicit(&e->vstate, v, memory_order_relaxed);
	*idx = (uint32_t)i;
	return 0;
}

enum op { OP_SET, OP_SETDEFAULT, OP_CAS, OP_ADD };

struct wargs {
	enum op op;
	const void *val;        /* SET, SETDEFAULT: value; CAS: desired */
	size_t len;
	const void *expected;   /* CAS */
	size_t elen;
	int64_t delta;          /* ADD */
	void *out;              /* SETDEFAULT: copy of the value now stored; ADD: int64_t result */
	size_t outcap;
	size_t *outlen;
};

/* The one write path for set, setdefault, cas and add: under the stripe
 * lock, find the key, decide, and publish with one store. Returns the op's
 * result (see the public functions). */
static int write_once(shmp_dict_t *d, const char *key, struct wargs *a)
{
	size_t klen;
	int r = key_check(d, key, &klen);
	if (r < 0)
		return r;
	if ((a->len && !a->val) || a->len > d->max_value)
		return a->len > d->max_value ? -EMSGSIZE : -EINVAL;
	uint32_t h = hash_key(key, klen), b = h & d->bmask;
	if ((r = stripe_lock(d, b)) < 0)
		return r;
	_Atomic uint32_t *link;
	uint32_t idx;
	int64_t sum = a->delta;
	r = find(d, b, key, klen, h, &link, &idx);
	if (r == 0) {
		struct dentry *e = ent(d, idx);
		uint64_t cur = atomic_load_explicit(&e->vstate, memory_order_relaxed), next;
		const char *have = value_of(d, e, cur);
		size_t hlen = (size_t)(cur >> 1);
		if (!have) {
			r = -SHMP_ECORRUPT;
			goto out;
		}
		switch (a->op) {
		case OP_SETDEFAULT:
			r = a->out ? copy_value(d, e, cur, a->out, a->outcap, a->outlen) : 0;
			goto out;
		case OP_CAS:
			if (hlen != a->elen || (hlen && memcmp(have, a->expected, hlen) != 0))
				goto out; /* r == 0: not replaced */
			break;
		case OP_ADD:
			if (hlen != sizeof(int64_t)) {
				r = -EINVAL;
				goto out;
			}
			int64_t old;
			memcpy(&old, have, sizeof old);
			sum = (int64_t)((uint64_t)old + (uint64_t)a->delta);
			break;
		case OP_SET:
			break;
		}
		if ((r = stage_value(d, e, cur, a->op == OP_ADD ? (void *)&sum : a->val, a->len, &next)) < 0)
			goto out;
		atomic_store_explicit(&e->vstate, next, memory_order_release);
		value_free(d, e, cur);
		r = a->op == OP_CAS ? 1 : 0;
		goto out;
	}
	if (r != -ENOENT)
		goto out;
	if (a->op == OP_CAS)
		goto out; /* -ENOENT */
	/* A new key: reserve room, fill an entry, link it at the head. */
	if (atomic_fetch_add_explicit(&d->sh->used, 1, memory_order_acq_rel) >= d->capacity) {
		atomic_fetch_sub_explicit(&d->sh->used, 1, memory_order_relaxed);
		r = -ENOSPC;
		goto out;
	}
	r = new_entry(d, key, klen, h, a->op == OP_ADD ? (void *)&sum : a->val, a->len, &idx);
	if (r < 0) {
		atomic_fetch_sub_explicit(&d->sh->used, 1, memory_order_relaxed);
		goto out;
	}
	struct dentry *e = ent(d, idx);
	atomic_store_explicit(&e->next, atomic_load_explicit(&d->buckets[b], memory_order_relaxed),
			      memory_order_relaxed);
	atomic_store_explicit(&d->buckets[b], idx + 1, memory_order_release);
	stripe_of(d, b)->count++;
	r = a->op == OP_SETDEFAULT ? 1 : 0;
	if (a->op == OP_SETDEFAULT && a->out) {
		int c = copy_value(d, e, atomic_load_explicit(&e->vstate, memory_order_relaxed), a->out,
				   a->outcap, a->outlen);
		if (c < 0)
			r = c;
	}
out:
	stripe_unlock(d, b);
	if (r >= 0 && a->op == OP_ADD && a->out)
		memcpy(a->out, &sum, sizeof sum);
	return r;
}

/* A writer killed between taking an entry (or reserving room) and linking
 * it, or between unlinking and freeing, leaves capacity nobody can use.
 * Before saying "full", take every stripe lock - then no writer is inside
 * - and rebuild the free list and the reservation count from what is
 * linked. Rare (only on the way to -ENOSPC), so a full sweep is fine. */
static void repair_pool(shmp_dict_t *d)
{
	for (uint32_t st = 0; st < NSTRIPES; st++)
		if (stripe_lock(d, st) < 0) {
			while (st--)
				stripe_unlock(d, st);
			return;
		}
	unsigned char *linked = calloc(d->nentries, 1);
	if (linked) {
		uint32_t n = 0;
		for (uint32_t b = 0; b <= d->bmask; b++) {
			uint32_t i1 = atomic_load_explicit(&d->buckets[b], memory_order_relaxed);
			for (uint32_t steps = 0; i1 && i1 <= d->nentries && steps < d->nentries; steps++) {
				if (!linked[i1 - 1]++)
					n++;
				i1 = atomic_load_explicit(&ent(d, i1 - 1)->next, memory_order_relaxed);
			}
		}
		uint32_t head = 0;
		for (uint32_t i = d->nentries; i-- > 0;)
			if (!linked[i]) {
				atomic_store_explicit(&ent(d, i)->next, head, memory_order_relaxed);
				head = i + 1;
			}
		uint64_t top = atomic_load_explicit(&d->sh->free_top, memory_order_relaxed);
		atomic_store_explicit(&d->sh->free_top, ((top >> 32) + 1) << 32 | head, memory_order_release);
		atomic_store_explicit(&d->sh->used, n, memory_order_release);
		free(linked);
	}
	for (uint32_t st = NSTRIPES; st-- > 0;)
		stripe_unlock(d, st);
}

static int write_op(shmp_dict_t *d, const char *key, struct wargs *a)
{
	int r = write_once(d, key, a);
	if (r == -ENOSPC && d && shmp_dict_len(d) < (long)d->capacity) {
		repair_pool(d);
		r = write_once(d, key, a);
	}
	return r;
}

int shmp_dict_set(shmp_dict_t *d, const char *key, const void *val, size_t len)
{
	struct wargs a = { .op = OP_SET, .val = val, .len = len };
	return write_op(d, key, &a);
}

int shmp_dict_setdefault(shmp_dict_t *d, const char *key, const void *val, size_t len, void *buf, size_t cap,
			 size_t *out_len)
{
	struct wargs a = { .op = OP_SETDEFAULT, .val = val, .len = len, .out = buf, .outcap = cap,
			   .outlen = out_len };
	return write_op(d, key, &a);
}

int shmp_dict_cas(shmp_dict_t *d, const char *key, const void *expected, size_t elen, const void *desired,
		  size_t dlen)
{
	if (elen && !expected)
		return -EINVAL;
	struct wargs a = { .op = OP_CAS, .val = desired, .len = dlen, .expected = expected, .elen = elen };
	return write_op(d, key, &a);
}

int shmp_dict_add_i64(shmp_dict_t *d, const char *key, int64_t delta, int64_t *out)
{
	struct wargs a = { .op = OP_ADD, .val = &delta, .len = sizeof delta, .delta = delta, .out = out };
	return write_op(d, key, &a);
}

/* Unlink key (copying its value out first if buf) and free its entry. */
static int remove_key(shmp_dict_t *d, const char *key, void *buf, size_t cap, size_t *len)
{
	size_t klen;
	int r = key_check(d, key, &klen);
	if (r < 0)
		return r;
	if (!buf && cap)
		return -EINVAL;
	uint32_t h = hash_key(key, klen), b = h & d->bmask;
	if ((r = stripe_lock(d, b)) < 0)
		return r;
	_Atomic uint32_t *link;
	uint32_t idx;
	r = find(d, b, key, klen, h, &link, &idx);
	struct dentry *e = r == 0 ? ent(d, idx) : NULL;
	uint64_t v = e ? atomic_load_explicit(&e->vstate, memory_order_relaxed) : 0;
	if (e && buf)
		r = copy_value(d, e, v, buf, cap, len);
	if (r == 0) {
		atomic_store_explicit(link, atomic_load_explicit(&e->next, memory_order_relaxed),
				      memory_order_release);
		stripe_of(d, b)->count--;
		/* Unlinked: no reader can reach it any more without seeing the
		 * stripe's count move, so it may be reused at once. Freed under
		 * the lock, so that a repair holding every lock sees it whole. */
		value_free(d, e, v);
		pool_push(d, idx);
		atomic_fetch_sub_explicit(&d->sh->used, 1, memory_order_relaxed);
	}
	stripe_unlock(d, b);
	return r;
}

int shmp_dict_delete(shmp_dict_t *d, const char *key)
{
	return remove_key(d, key, NULL, 0, NULL);
}

int shmp_dict_pop(shmp_dict_t *d, const char *key, void *buf, size_t cap, size_t *len)
{
	if (!buf)
		return -EINVAL;
	return remove_key(d, key, buf, cap, len);
}

int shmp_dict_clear(shmp_dict_t *d)
{
	if (!d)
		return -EINVAL;
	for (uint32_t st = 0; st < NSTRIPES; st++) {
		int r = stripe_lock(d, st);
		if (r < 0)
			return r;
		uint32_t freed = 0, list = 0; /* freed entries, pushed after unlock */
		for (uint32_t b = st; b <= d->bmask; b += NSTRIPES) {
			uint32_t i1 = atomic_exchange_explicit(&d->buckets[b], 0, memory_order_release);
			for (uint32_t steps = 0; i1 && i1 <= d->nentries && steps < d->nentries; steps++) {
				struct dentry *e = ent(d, i1 - 1);
				uint32_t next = atomic_load_explicit(&e->next, memory_order_relaxed);
				value_free(d, e, atomic_load_explicit(&e->vstate, memory_order_relaxed));
				atomic_store_explicit(&e->next, list, memory_order_relaxed);
				list = i1;
				freed++;
				i1 = next;
			}
		}
		stripe_of(d, st)->count = 0;
		for (uint32_t steps = 0; list && list <= d->nentries && steps < d->nentries; steps++) {
			uint32_t next = atomic_load_explicit(&ent(d, list - 1)->next, memory_order_relaxed);
			pool_push(d, list - 1);
			list = next;
		}
		atomic_fetch_sub_explicit(&d->sh->used, freed, memory_order_relaxed);
		stripe_unlock(d, st);
	}
	return 0;
}

/* ---- iteration ---------------------------------------------------------- */

/* cursor: bucket << 32 | the smallest entry index still to visit in it.
 * Inside a bucket entries go by index, which a key keeps while it is
 * neither deleted nor re-inserted, so keys left alone are seen once. */
int shmp_dict_next(shmp_dict_t *d, uint64_t *cursor, char *key, size_t keycap, void *val, size_t valcap,
		   size_t *vlen)
{
	if (!d || !cursor || !key || (!val && valcap))
		return -EINVAL;
	for (uint64_t b = *cursor >> 32; b <= d->bmask; b++) {
		uint32_t from = b == *cursor >> 32 ? (uint32_t)*cursor : 0;
		int r = stripe_lock(d, (uint32_t)b);
		if (r < 0)
			return r;
		uint32_t best = UINT32_MAX;
		uint32_t i1 = atomic_load_explicit(&d->buckets[b], memory_order_relaxed);
		for (uint32_t steps = 0; i1 && i1 <= d->nentries && steps < d->nentries; steps++) {
			if (i1 - 1 >= from && i1 - 1 < best)
				best = i1 - 1;
			i1 = atomic_load_explicit(&ent(d, i1 - 1)->next, memory_order_relaxed);
		}
		if (best != UINT32_MAX) {
			struct dentry *e = ent(d, best);
			if (e->klen >= keycap) {
				r = -EMSGSIZE;
			} else {
				memcpy(key, e->key, e->klen);
				key[e->klen] = 0;
				uint64_t v = atomic_load_explicit(&e->vstate, memory_order_relaxed);
				r = val ? copy_value(d, e, v, val, valcap, vlen) : 0;
				if (!val && vlen)
					*vlen = (size_t)(v >> 1);
			}
			stripe_unlock(d, (uint32_t)b);
			if (r < 0) {
				*cursor = b << 32 | from;
				return r;
			}
			*cursor = b << 32 | (best + 1);
			return 1;
		}
		stripe_unlock(d, (uint32_t)b);
	}
	*cursor = (uint64_t)(d->bmask + 1) << 32;
	return 0;
}

int shmp__dict_inspect(const shmp_segment_t *seg, const void *p, struct shmp_object_info *info)
{
	shmp_dict_t d = { .seg = (shmp_segment_t *)seg, .sh = (struct shmp__dict_sh *)p };
	dict_adopt(&d, seg);
	info->depth = (uint64_t)shmp_dict_len(&d);
	info->capacity = d.capacity;
	return 0;
}
