/* private: the registry — a directory of named, typed objects in a segment.
 *
 * The directory is a fixed table of entries after a header, at the offset
 * the segment header's registry_root holds. An entry's word is
 * generation << 2 | state: FREE, BUSY (being filled), LIVE, DYING (removed,
 * handles still out). Every change happens under the directory's robust
 * lock, and each step leaves the table consistent, so a holder killed
 * anywhere leaves at worst a BUSY entry, which the next holder frees (its
 * object's memory is lost, nothing else). Readers for tools (info, lookup)
 * take no lock: they read an entry between two loads of its word.
 *
 * Handles the registry lends hold a reference in the object's reference
 * block (ref_off), so remove() can take the name out and free the entry at
 * once, and leave the object to the last handle (see shmp__ref_drop). A
 * remove is: entry DYING, entry forgets ref_off, REMOVED set in the block,
 * object freed if no handle is left, entry FREE. A remover killed before
 * the block is marked is finished by the next lock holder; one killed later
 * leaks at most the object. */
#include "registry_internal.h"
#include "types.h"

#include <stdio.h>
#include <stdlib.h>

#define DIR_MAGIC 0x52454744u /* "REGD" */
#define DIR_VERSION 1u
#define DEFAULT_CAPACITY 1024u
#define MAX_CAPACITY (1u << 20)
#define DEFAULT_SIZE (64ull << 20)

enum { E_FREE = 0, E_BUSY = 1, E_LIVE = 2, E_DYING = 3 };
#define E_STATE(w) ((w) & 3u)
#define E_NEXT(w, st) ((((w) >> 2) + 1) << 2 | (st))

struct entry {
	_Atomic uint32_t word;  /* generation << 2 | state */
	uint32_t type;          /* SHMP_TYPE_* */
	uint32_t reserved0;     /* zero, for later versions (as every reserved field) */
	int32_t creator_pid;
	uint64_t off;           /* the object's shared state */
	uint64_t ref_off;       /* its reference block: handles lent | SHMP__REF_REMOVED; 0 for none */
	uint64_t reserved[4];
	char name[SHMP_REGISTRY_NAME_MAX + 1];
};
/* Pinned (DIR_VERSION changes with any of these); reserved fields are zero. */
_Static_assert(sizeof(struct entry) == 128, "entry layout");
_Static_assert(offsetof(struct entry, ref_off) == 24 && offsetof(struct entry, name) == 64, "entry fields");

struct shmp__reg_dir {
	uint32_t magic;
	uint32_t version;
	uint32_t capacity;
	uint32_t entry_size;
	_Atomic uint32_t count;  /* LIVE entries */
	uint32_t reserved0;      /* zero, for later versions (as every reserved field) */
	_Atomic uint64_t gen;    /* bumped by every change, for watchers */
	uint64_t reserved[4];
	SHMP__ALIGNED struct shmp__lock_sh lock;
	SHMP__ALIGNED struct entry e[];
};
SHMP__PIN(struct shmp__reg_dir, 128);
_Static_assert(offsetof(struct shmp__reg_dir, count) == 16 && offsetof(struct shmp__reg_dir, lock) == 64,
	       "directory header fields");

struct shmp_registry {
	shmp_segment_t *seg;
	struct shmp__reg_dir *dir;
	uint32_t cap;   /* trusted copy of dir->capacity */
	bool owns_seg;  /* detach/destroy unmap the segment too */
};

static int name_check(const char *name)
{
	if (!name || !*name)
		return -EINVAL;
	size_t n = 0;
	for (const char *p = name; *p; p++, n++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
		      c == '.' || c == ':' || c == '-'))
			return -EINVAL;
		if (n >= SHMP_REGISTRY_NAME_MAX)
			return -ENAMETOOLONG;
	}
	return 0;
}

/* ---- the directory ------------------------------------------------------ */

static size_t dir_bytes(uint32_t cap)
{
	return sizeof(struct shmp__reg_dir) + (size_t)cap * sizeof(struct entry);
}

/* The table fits in the segment, its entries are ours, its lock is one. */
static bool dir_check(const shmp_segment_t *seg, uint64_t off, const void *p, uint32_t want)
{
	(void)want;
	const struct shmp__reg_dir *d = p;
	return d->capacity > 0 && d->capacity <= MAX_CAPACITY && d->entry_size == sizeof(struct entry) &&
	       shmp__sh_at(seg, off, dir_bytes(d->capacity), 1) && shmp__lock_sound(&d->lock);
}
static const struct shmp__layout dir_layout = SHMP__LAYOUT(struct shmp__reg_dir, DIR_MAGIC, DIR_VERSION, dir_check);

/* The segment's directory after validation: 0, -ENODATA if it has none,
 * -SHMP_ECORRUPT, -SHMP_EVERSION. */
static int dir_at(const shmp_segment_t *seg, struct shmp__reg_dir **out)
{
	uint64_t off = __atomic_load_n(&seg->hdr->registry_root, __ATOMIC_ACQUIRE);
	if (off == 0)
		return -ENODATA;
	int e;
	*out = shmp__obj_at(seg, off, &dir_layout, 0, &e);
	return e;
}

/* Find or make the directory. Two processes making one at once: both build
 * a table, one compare-and-swap publishes, the loser frees its own. */
static int dir_make(shmp_segment_t *seg, uint32_t cap, struct shmp__reg_dir **out)
{
	int r = dir_at(seg, out);
	if (r != -ENODATA)
		return r;
	if (seg->readonly)
		return -ENODATA;
	uint64_t off;
	struct shmp__reg_dir *d = shmp__alloc_ptr(seg, dir_bytes(cap), SHMP__CACHELINE, &off);
	if (!d)
		return -errno;
	d->capacity = cap;
	d->entry_size = sizeof(struct entry);
	shmp__lock_init(&d->lock, SHMP__KIND_LOCK);
	shmp__obj_publish(d, &dir_layout);
	uint64_t zero = 0;
	if (!__atomic_compare_exchange_n(&seg->hdr->registry_root, &zero, off, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE))
		shmp_segment_free(seg, off);
	return dir_at(seg, out);
}

static shmp_registry_t *reg_new(shmp_segment_t *seg, uint32_t cap, bool owns_seg, bool make)
{
	struct shmp__reg_dir *d = NULL;
	int r = make ? dir_make(seg, cap, &d) : dir_at(seg, &d);
	shmp_registry_t *reg = r == 0 ? calloc(1, sizeof *reg) : NULL;
	if (!reg) {
		if (r == 0)
			r = -ENOMEM;
		if (owns_seg)
			shmp_segment_detach(seg);
		errno = -r;
		return NULL;
	}
	*reg = (struct shmp_registry){ .seg = seg, .dir = d, .cap = d->capacity, .owns_seg = owns_seg };
	return reg;
}

static int opts_of(const struct shmp_registry_opts *opts, struct shmp_registry_opts *o)
{
	if (SHMP__OPTS(*o, opts) < 0 || o->capacity > MAX_CAPACITY ||
	    (o->flags & ~(unsigned)(SHMP_REGISTRY_READ_ONLY | SHMP_REGISTRY_PERSISTENT)))
		return -EINVAL;
	if (!o->capacity)
		o->capacity = DEFAULT_CAPACITY;
	if (!o->size)
		o->size = DEFAULT_SIZE;
	return 0;
}

shmp_registry_t *shmp_registry_create(const char *name, const struct shmp_registry_opts *opts)
{
	struct shmp_registry_opts o;
	if (!name || opts_of(opts, &o) < 0 || (o.flags & SHMP_REGISTRY_READ_ONLY)) {
		errno = EINVAL;
		return NULL;
	}
	if (o.size < dir_bytes(o.capacity) + SHMP_SEGMENT_MIN_SIZE)
		o.size = dir_bytes(o.capacity) + SHMP_SEGMENT_MIN_SIZE;
	struct shmp_segment_opts so = { .sz = sizeof so, .mode = o.mode,
					.flags = o.flags & SHMP_REGISTRY_PERSISTENT ? SHMP_SEGMENT_PERSISTENT : 0 };
	shmp_segment_t *seg = shmp_segment_create(name, o.size, &so);
	if (!seg)
		return NULL;
	shmp_registry_t *r = reg_new(seg, o.capacity, false, true);
	if (!r) {
		int e = errno;
		shmp_segment_destroy(seg);
		errno = e;
		return NULL;
	}
	r->owns_seg = true;
	return r;
}

shmp_registry_t *shmp_registry_attach(const char *name, const struct shmp_registry_opts *opts)
{
	struct shmp_registry_opts o;
	if (opts_of(opts, &o) < 0) { /* PERSISTENT is for create, and ignored here (open passes it) */
		errno = EINVAL;
		return NULL;
	}
	struct shmp_segment_opts so = { .sz = sizeof so, .trust = o.trust, .trust_uid = o.trust_uid,
					.trust_gid = o.trust_gid };
	shmp_segment_t *seg = shmp__segment_attach(name, o.flags & SHMP_REGISTRY_READ_ONLY, &so);
	if (!seg)
		return NULL;
	/* A creator between its segment and its directory: give it a moment. */
	for (int i = 0; i < 100 && !__atomic_load_n(&seg->hdr->registry_root, __ATOMIC_ACQUIRE); i++)
		usleep(1000);
	return reg_new(seg, 0, true, false);
}

shmp_registry_t *shmp_registry_open(const char *name, const struct shmp_registry_opts *opts)
{
	for (int i = 0; i < 100; i++) {
		shmp_registry_t *r = shmp_registry_create(name, opts);
		if (r || errno != EEXIST)
			return r;
		if ((r = shmp_registry_attach(name, opts)) || errno != ENOENT)
			return r;
		/* Unlinked between the two: try again. */
	}
	errno = EAGAIN;
	return NULL;
}

shmp_registry_t *shmp_registry_of(shmp_segment_t *seg)
{
	if (!seg) {
		errno = EINVAL;
		return NULL;
	}
	return reg_new(seg, DEFAULT_CAPACITY, false, true);
}

static void reg_close(shmp_registry_t *r, bool destroy)
{
	if (!r)
		return;
	if (r->owns_seg) {
		if (destroy)
			shmp_segment_destroy(r->seg);
		else
			shmp_segment_detach(r->seg);
	}
	free(r);
}

void shmp_registry_detach(shmp_registry_t *r) { reg_close(r, false); }
void shmp_registry_destroy(shmp_registry_t *r) { reg_close(r, true); }

shmp_segment_t *shmp_registry_segment(const shmp_registry_t *r)
{
	if (!r)
		errno = EINVAL;
	return r ? r->seg : NULL;
}

/* ---- entries under the lock --------------------------------------------- */

static void finish_remove(shmp_registry_t *r, struct entry *en);

static int dir_lock(shmp_registry_t *r)
{
	int e = shmp__lock_acquire_internal(&r->dir->lock);
	if (e < 0)
		return e;
	/* BUSY and DYING entries exist only inside a holder; one seen now was
	 * left by a holder that died: free it, finishing its remove. */
	for (uint32_t i = 0; i < r->cap; i++) {
		struct entry *en = &r->dir->e[i];
		uint32_t w = atomic_load_explicit(&en->word, memory_order_acquire);
		if (E_STATE(w) == E_DYING)
			finish_remove(r, en);
		else if (E_STATE(w) == E_BUSY)
			atomic_store_explicit(&en->word, E_NEXT(w, E_FREE), memory_order_release);
	}
	return 0;
}

static void dir_unlock(shmp_registry_t *r)
{
	atomic_fetch_add_explicit(&r->dir->gen, 1, memory_order_release);
	shmp__lock_release_sh(&r->dir->lock);
}

static struct entry *find_live(shmp_registry_t *r, const char *name)
{
	for (uint32_t i = 0; i < r->cap; i++) {
		struct entry *en = &r->dir->e[i];
		if (E_STATE(atomic_load_explicit(&en->word, memory_order_acquire)) == E_LIVE &&
		    strncmp(en->name, name, sizeof en->name) == 0)
			return en;
	}
	return NULL;
}

/* ---- making, opening and freeing objects: through the type table ------- */

static void *obj_create(shmp_segment_t *seg, int type, const struct shmp__params *p)
{
	const struct shmp__type_ops *ops = shmp__type(type);
	if (!ops || !ops->create) {
		errno = EINVAL;
		return NULL;
	}
	return ops->create(seg, p);
}

static void *obj_open(shmp_segment_t *seg, int type, uint64_t off, _Atomic uint32_t *ref)
{
	const struct shmp__type_ops *ops = shmp__type(type);
	if (!ops || !ops->open) {
		errno = SHMP_ECORRUPT;
		return NULL;
	}
	return ops->open(seg, off, ref);
}

static void obj_destroy(int type, void *h)
{
	const struct shmp__type_ops *ops = shmp__type(type);
	if (ops && ops->destroy)
		ops->destroy(h);
}

/* Free a removed object now that no handle is left. */
static void obj_free(shmp_registry_t *r, int type, uint64_t off)
{
	if (!shmp__type(type) || !shmp__type(type)->open)
		return; /* a pool or pipeline: owned by its own layer, not the registry */
	void *h = obj_open(r->seg, type, off, NULL);
	if (h)
		obj_destroy(type, h);
}

/* Directory lock held: a FREE entry to claim, or NULL when all are taken. */
static struct entry *free_entry(shmp_registry_t *r)
{
	for (uint32_t i = 0; i < r->cap; i++)
		if (E_STATE(atomic_load_explicit(&r->dir->e[i].word, memory_order_relaxed)) == E_FREE)
			return &r->dir->e[i];
	return NULL;
}

/* Directory lock held, the entry claimed but not yet LIVE (readers skip
 * it): write what the LIVE store then publishes. */
static void entry_fill(struct entry *en, const char *name, int type, uint64_t off, uint64_t ref_off)
{
	memset(en->name, 0, sizeof en->name);
	strcpy(en->name, name);
	en->type = (uint32_t)type;
	en->creator_pid = getpid();
	en->off = off;
	en->ref_off = ref_off;
}

/* The getters' common body: find `name` or make it, and lend a handle. */
static void *get_or_create(shmp_registry_t *r, const char *name, int type, unsigned flags,
			   const struct shmp__params *p)
{
	int e = name_check(name);
	if (!r || (flags & ~(unsigned)(SHMP_REG_CREATE_ONLY | SHMP_REG_GET_ONLY)) ||
	    (flags & SHMP_REG_CREATE_ONLY && flags & SHMP_REG_GET_ONLY))
		e = -EINVAL;
	else if (e == 0 && r->seg->readonly)
		e = -EROFS;
	if (e == 0)
		e = dir_lock(r);
	if (e < 0) {
		errno = -e;
		return NULL;
	}
	void *h = NULL;
	_Atomic uint32_t *ref;
	uint64_t ref_off;
	struct entry *en = find_live(r, name);
	if (en) {
		if (flags & SHMP_REG_CREATE_ONLY)
			e = -EEXIST;
		else if (en->type != (uint32_t)type)
			e = -SHMP_ETYPE;
		else if (!(ref = shmp__sh_at(r->seg, en->ref_off, sizeof *ref, __alignof__(*ref))))
			e = -SHMP_ECORRUPT;
		else if ((h = obj_open(r->seg, type, en->off, ref)))
			atomic_fetch_add_explicit(ref, 1, memory_order_acq_rel);
		else
			e = -errno;
		goto out;
	}
	if (flags & SHMP_REG_GET_ONLY) {
		e = -ENOENT;
		goto out;
	}
	if (!(en = free_entry(r))) {
		e = -ENOSPC;
		goto out;
	}
	uint32_t w = atomic_load_explicit(&en->word, memory_order_relaxed);
	atomic_store_explicit(&en->word, E_NEXT(w, E_BUSY), memory_order_relaxed);
	ref = shmp__alloc_ptr(r->seg, sizeof *ref, 16, &ref_off);
	if (!ref || !(h = obj_create(r->seg, type, p))) {
		e = -errno;
		shmp__free_ptr(r->seg, (void *)ref);
		atomic_store_explicit(&en->word, E_NEXT(w, E_FREE) + 4, memory_order_release);
		goto out;
	}
	struct shmp__head *head = h;
	atomic_store_explicit(ref, 1, memory_order_relaxed);
	entry_fill(en, name, type, (uint64_t)((char *)head->sh - r->seg->base), ref_off);
	head->ref = ref;
	atomic_store_explicit(&en->word, E_NEXT(w, E_LIVE) + 4, memory_order_release);
	atomic_fetch_add_explicit(&r->dir->count, 1, memory_order_relaxed);
out:
	dir_unlock(r);
	if (!h)
		errno = -e;
	return h;
}

/* Record an object some other layer owns (a pool, a pipeline). */
int shmp__registry_add(shmp_segment_t *seg, const char *name, int type, uint64_t off)
{
	shmp_registry_t *r = shmp_registry_of(seg);
	if (!r)
		return -errno;
	int e = name_check(name);
	if (e == 0)
		e = dir_lock(r);
	if (e < 0) {
		free(r);
		return e;
	}
	struct entry *en = find_live(r, name);
	if (en) {
		e = -EEXIST;
		goto out;
	}
	if (!(en = free_entry(r))) {
		e = -ENOSPC;
		goto out;
	}
	uint32_t w = atomic_load_explicit(&en->word, memory_order_relaxed);
	entry_fill(en, name, type, off, 0); /* no reference block: the owning layer lends no handles */
	atomic_store_explicit(&en->word, E_NEXT(w, E_LIVE), memory_order_release);
	atomic_fetch_add_explicit(&r->dir->count, 1, memory_order_relaxed);
out:
	dir_unlock(r);
	free(r);
	return e;
}

/* The rest of a remove, from DYING (see the top of the file). */
static void finish_remove(shmp_registry_t *r, struct entry *en)
{
	uint64_t ref_off = en->ref_off;
	int type = (int)en->type;
	uint64_t off = en->off;
	__atomic_store_n(&en->ref_off, 0, __ATOMIC_RELEASE);
	_Atomic uint32_t *ref = ref_off ? shmp__sh_at(r->seg, ref_off, sizeof *ref, __alignof__(*ref)) : NULL;
	if (ref && (atomic_fetch_or_explicit(ref, SHMP__REF_REMOVED, memory_order_acq_rel) & ~SHMP__REF_REMOVED) == 0) {
		obj_free(r, type, off);
		shmp__free_ptr(r->seg, (void *)ref);
	}
	uint32_t w = atomic_load_explicit(&en->word, memory_order_relaxed);
	atomic_store_explicit(&en->word, E_NEXT(w, E_FREE), memory_order_release);
}

static int remove_entry(shmp_registry_t *r, struct entry *en)
{
	uint32_t w = atomic_load_explicit(&en->word, memory_order_relaxed);
	atomic_store_explicit(&en->word, E_NEXT(w, E_DYING), memory_order_release);
	atomic_fetch_sub_explicit(&r->dir->count, 1, memory_order_relaxed);
	finish_remove(r, en);
	return 0;
}

/* Take out the entry of an object some other layer owns, by offset. */
void shmp__registry_forget(shmp_segment_t *seg, uint64_t off)
{
	struct shmp__reg_dir *d;
	if (!seg || seg->readonly || dir_at(seg, &d) < 0)
		return;
	shmp_registry_t r = { .seg = seg, .dir = d, .cap = d->capacity };
	if (dir_lock(&r) < 0)
		return;
	for (uint32_t i = 0; i < r.cap; i++) {
		struct entry *en = &d->e[i];
		if (E_STATE(atomic_load_explicit(&en->word, memory_order_acquire)) == E_LIVE && en->off == off &&
		    (en->type == SHMP_TYPE_POOL || en->type == SHMP_TYPE_PIPELINE))
			remove_entry(&r, en);
	}
	dir_unlock(&r);
}

int shmp_registry_remove(shmp_registry_t *r, const char *name)
{
	int e = name_check(name);
	if (!r)
		return -EINVAL;
	if (e < 0)
		return e;
	if (r->seg->readonly)
		return -EROFS;
	if ((e = dir_lock(r)) < 0)
		return e;
	struct entry *en = find_live(r, name);
	e = en ? remove_entry(r, en) : -ENOENT;
	dir_unlock(r);
	return e;
}

int shmp_registry_count(shmp_registry_t *r)
{
	if (!r)
		return -EINVAL;
	int n = 0;
	for (uint32_t i = 0; i < r->cap; i++)
		n += E_STATE(atomic_load_explicit(&r->dir->e[i].word, memory_order_acquire)) == E_LIVE;
	return n;
}

/* ---- the getters -------------------------------------------------------- */

/* A Value or Array asked for by typecode: one of another typecode is ETYPE. */
static void *typed_checked(void *h, int type, char tc)
{
	if (!h || !tc)
		return h;
	char have = type == SHMP_TYPE_VALUE ? shmp_value_typecode(h) : shmp_array_typecode(h);
	if (have == tc)
		return h;
	obj_destroy(type, h);
	errno = SHMP_ETYPE;
	return NULL;
}

shmp_value_t *shmp_registry_value(shmp_registry_t *r, const char *name, char tc, const void *init, unsigned flags)
{
	if (shmp_typecode_size(tc) < 0) {
		errno = EINVAL;
		return NULL;
	}
	struct shmp__params p = { .tc = tc, .length = 1, .init = init };
	return typed_checked(get_or_create(r, name, SHMP_TYPE_VALUE, flags, &p), SHMP_TYPE_VALUE, tc);
}

shmp_array_t *shmp_registry_array(shmp_registry_t *r, const char *name, char tc, size_t length,
				  const void *init, unsigned flags)
{
	if (tc && shmp_typecode_size(tc) < 0) {
		errno = EINVAL;
		return NULL;
	}
	struct shmp__params p = { .tc = tc, .length = length, .init = init };
	return typed_checked(get_or_create(r, name, SHMP_TYPE_ARRAY, flags, &p), SHMP_TYPE_ARRAY, tc);
}

static const struct shmp__params no_params;

/* The typed getters below look alike on purpose (`duplicates` pairs them):
 * each is one get_or_create call with its type's parameters, and the
 * public API stays typed so that a wrong type is a compile error, not a
 * cast. A macro would save lines and hide the names from grep and man. */
shmp_lock_t *shmp_registry_lock(shmp_registry_t *r, const char *name, unsigned flags)
{
	return get_or_create(r, name, SHMP_TYPE_LOCK, flags, &no_params);
}
shmp_lock_t *shmp_registry_rlock(shmp_registry_t *r, const char *name, unsigned flags)
{
	return get_or_create(r, name, SHMP_TYPE_RLOCK, flags, &no_params);
}
shmp_sem_t *shmp_registry_sem(shmp_registry_t *r, const char *name, unsigned value, unsigned flags)
{
	struct shmp__params p = { .n = value };
	return get_or_create(r, name, SHMP_TYPE_SEM, flags, &p);
}
shmp_sem_t *shmp_registry_bounded_sem(shmp_registry_t *r, const char *name, unsigned value, unsigned flags)
{
	struct shmp__params p = { .n = value };
	return get_or_create(r, name, SHMP_TYPE_BOUNDED_SEM, flags, &p);
}
shmp_cond_t *shmp_registry_cond(shmp_registry_t *r, const char *name, unsigned flags)
{
	return get_or_create(r, name, SHMP_TYPE_COND, flags, &no_params);
}
shmp_event_t *shmp_registry_event(shmp_registry_t *r, const char *name, unsigned flags)
{
	return get_or_create(r, name, SHMP_TYPE_EVENT, flags, &no_params);
}
shmp_barrier_t *shmp_registry_barrier(shmp_registry_t *r, const char *name, unsigned parties, unsigned flags)
{
	struct shmp__params p = { .n = parties };
	return get_or_create(r, name, SHMP_TYPE_BARRIER, flags, &p);
}
shmp_queue_t *shmp_registry_queue(shmp_registry_t *r, const char *name, unsigned maxsize, unsigned flags)
{
	struct shmp__params p = { .n = maxsize };
	return get_or_create(r, name, SHMP_TYPE_QUEUE, flags, &p);
}
shmp_queue_t *shmp_registry_joinable_queue(shmp_registry_t *r, const char *name, unsigned maxsize, unsigned flags)
{
	struct shmp__params p = { .n = maxsize };
	return get_or_create(r, name, SHMP_TYPE_JOINABLE_QUEUE, flags, &p);
}
shmp_dict_t *shmp_registry_dict(shmp_registry_t *r, const char *name, const struct shmp_dict_opts *opts, unsigned flags)
{
	struct shmp__params p = { .dict = opts };
	return get_or_create(r, name, SHMP_TYPE_DICT, flags, &p);
}

/* ---- Namespace ---------------------------------------------------------- */

static int ns_set(shmp_registry_t *r, const char *attr, char tc, int64_t i, double d)
{
	shmp_value_t *v = get_or_create(r, attr, SHMP_TYPE_VALUE, 0, &(struct shmp__params){ .tc = tc, .length = 1 });
	if (!v)
		return -errno;
	int e = tc == 'd' ? shmp_value_set_f64(v, d) : shmp_value_set_i64(v, i);
	shmp_value_destroy(v);
	return e;
}

/* A read-only attach cannot take a handle (that writes a reference):
 * read the Value's bytes through lookup instead. */
static int ns_get_readonly(shmp_registry_t *r, const char *attr, int64_t *i, double *d)
{
	struct shmp_object_info info;
	int e = shmp_registry_lookup(r, attr, &info);
	if (e < 0)
		return e;
	if (info.type != SHMP_TYPE_VALUE)
		return -SHMP_ETYPE;
	int sz = shmp_typecode_size(info.typecode);
	if (!info.valid || sz <= 0 || info.preview_bytes < (uint32_t)sz)
		return -SHMP_ECORRUPT;
	union { int8_t b; uint8_t B; int16_t h; uint16_t H; int32_t i; uint32_t I; int64_t q; uint64_t Q;
		float f; double d; } u;
	memcpy(&u, info.preview, (size_t)sz);
	int64_t iv = 0;
	double dv = 0;
	bool is_float = false;
	switch (info.typecode) {
	case 'b': iv = u.b; break;
	case 'B': case 'c': case '?': iv = u.B; break;
	case 'h': iv = u.h; break;
	case 'H': iv = u.H; break;
	case 'i': iv = u.i; break;
	case 'I': iv = u.I; break;
	case 'l': case 'q': iv = u.q; break;
	case 'L': case 'Q': iv = (int64_t)u.Q; break;
	case 'f': dv = u.f; is_float = true; break;
	case 'd': dv = u.d; is_float = true; break;
	}
	if (i && is_float && !(dv >= -9223372036854775808.0 && dv < 9223372036854775808.0))
		return -ERANGE; /* NaN, infinity, or too big for an int64 */
	if (i)
		*i = is_float ? (int64_t)dv : iv;
	else
		*d = is_float ? dv : (double)iv;
	return 0;
}

static int ns_get(shmp_registry_t *r, const char *attr, int64_t *i, double *d)
{
	if (!i && !d)
		return -EINVAL;
	if (r && r->seg->readonly)
		return ns_get_readonly(r, attr, i, d);
	shmp_value_t *v = get_or_create(r, attr, SHMP_TYPE_VALUE, SHMP_REG_GET_ONLY, &no_params);
	if (!v)
		return -errno;
	int e = i ? shmp_value_get_i64(v, i) : shmp_value_get_f64(v, d);
	shmp_value_destroy(v);
	return e;
}

int shmp_namespace_set_i64(shmp_registry_t *r, const char *attr, int64_t x) { return ns_set(r, attr, 'q', x, 0); }
int shmp_namespace_set_f64(shmp_registry_t *r, const char *attr, double x) { return ns_set(r, attr, 'd', 0, x); }
int shmp_namespace_get_i64(shmp_registry_t *r, const char *attr, int64_t *out) { return ns_get(r, attr, out, NULL); }
int shmp_namespace_get_f64(shmp_registry_t *r, const char *attr, double *out) { return out ? ns_get(r, attr, NULL, out) : -EINVAL; }

/* ---- inspection --------------------------------------------------------- */

/* Copy entry i between two loads of its word; 1 if it held a LIVE object. */
static int entry_snapshot(shmp_registry_t *r, uint32_t i, struct shmp_object_info *info)
{
	struct entry *en = &r->dir->e[i];
	for (int tries = 0; tries < 100; tries++) {
		uint32_t w = atomic_load_explicit(&en->word, memory_order_acquire);
		if (E_STATE(w) != E_LIVE)
			return 0;
		memset(info, 0, sizeof *info);
		memcpy(info->name, en->name, sizeof info->name - 1);
		info->type = (int)en->type;
		info->offset = en->off;
		info->creator_pid = en->creator_pid;
		uint64_t ref_off = __atomic_load_n(&en->ref_off, __ATOMIC_RELAXED);
		_Atomic uint32_t *ref = ref_off ? shmp__sh_at(r->seg, ref_off, sizeof *ref, __alignof__(*ref)) : NULL;
		info->handles = ref ? atomic_load_explicit(ref, memory_order_relaxed) & ~SHMP__REF_REMOVED : 0;
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&en->word, memory_order_relaxed) == w)
			return 1;
	}
	return 0;
}

int shmp_registry_info(shmp_registry_t *r, unsigned index, struct shmp_object_info *info)
{
	if (!r || !info)
		return -EINVAL;
	if (index >= r->cap)
		return -ERANGE;
	if (!entry_snapshot(r, index, info))
		return 0;
	shmp__type_inspect(r->seg, info->type, info->offset, info);
	return 1;
}

int shmp__registry_find(shmp_registry_t *r, const char *name, int type, uint64_t *off)
{
	struct shmp_object_info info;
	int e = shmp_registry_lookup(r, name, &info);
	if (e < 0)
		return e;
	if (info.type != type)
		return -SHMP_ETYPE;
	*off = info.offset;
	return 0;
}

int shmp_registry_lookup(shmp_registry_t *r, const char *name, struct shmp_object_info *info)
{
	int e = name_check(name);
	if (!r || !info)
		return -EINVAL;
	if (e < 0)
		return e;
	for (uint32_t i = 0; i < r->cap; i++)
		if (entry_snapshot(r, i, info) && strcmp(info->name, name) == 0) {
			shmp__type_inspect(r->seg, info->type, info->offset, info);
			return 0;
		}
	return -ENOENT;
}
