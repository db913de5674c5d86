/* private: the skeleton every object type shares, written once.
 *
 * An object is a process-local handle (struct shmp__head first: segment,
 * shared state, registry reference, maker's pid) over shared state at an
 * offset of a segment. Every type's shared state starts with two words,
 *
 *     uint32_t magic;    the type's, stored last (release) when it is made
 *     uint32_t version;  the layout version of that type
 *
 * so that one function checks any state found at an offset before a handle
 * trusts it: inside the segment, aligned for its struct, the magic (a
 * creator still writing has not stored it yet), the version (another
 * library's layout is -SHMP_EVERSION, not garbage), then the type's own
 * checks. The type's file says what its state holds, pins its size and key
 * offsets with static asserts (a change to any of them is a new version),
 * and keeps whatever else it does; src/core/types.c puts the types behind one
 * table for the registry and inspection.
 *
 * So every type's file opens with the same few lines (its shared struct,
 * the pins, a check function, its layout), and every constructor with the
 * same prologue (load the options, shmp__obj_new, fill, publish): the
 * `duplicates` tool pairs them by shape. The shape is this convention;
 * what the lines say differs from type to type.
 *
 * Crash safety: a creator killed before it publishes leaves a block whose
 * magic is zero, which every open refuses (-SHMP_ECORRUPT) and the
 * allocator reclaims with the segment. Nothing here writes to shared
 * memory except create and publish, before anyone else can see the state. */
#ifndef SHMP_OBJECT_H
#define SHMP_OBJECT_H

#include "internal.h"

/* What the skeleton knows of a type's shared state. */
struct shmp__layout {
	uint32_t magic, version;
	uint32_t size, align; /* of the struct at the offset (a variable tail is the type's to check) */
	/* The type's own checks, once magic and version passed (NULL: none):
	 * that a variable tail fits in seg, fields a handle will trust, and
	 * that the state is the variant `want` (a kind; 0: any). */
	bool (*check)(const shmp_segment_t *seg, uint64_t off, const void *sh, uint32_t want);
};
#define SHMP__LAYOUT(type, m, v, chk) { (m), (v), sizeof(type), _Alignof(type), (chk) }

/* Magic and version lead every shared state; each type pins its size. */
#define SHMP__PIN(type, bytes)                                                              \
	_Static_assert(offsetof(type, magic) == 0 && offsetof(type, version) == 4 &&           \
		       sizeof(type) == (bytes), #type ": layout changed (bump its version)")

/* Create, first half: a zeroed handle of hsize bytes whose head holds seg
 * (NULL: the default segment), a zeroed shared block of l->size + tail
 * bytes on a cache line of its own, and this process as maker. The type
 * fills both, then publishes. NULL + errno with nothing left allocated. */
void *shmp__obj_new(shmp_segment_t *seg, size_t hsize, const struct shmp__layout *l, size_t tail);
/* Create, second half: the version, then the magic with a release store,
 * so whoever sees the magic sees everything stored before it. */
static inline void shmp__obj_publish(void *sh, const struct shmp__layout *l)
{
	uint32_t *w = sh;
	w[1] = l->version;
	__atomic_store_n(&w[0], l->magic, __ATOMIC_RELEASE);
}

/* The shared state at off if it is one of l's (see the top): its address,
 * or NULL with *err = -SHMP_ECORRUPT or -SHMP_EVERSION. Reads only. */
void *shmp__obj_at(const shmp_segment_t *seg, uint64_t off, const struct shmp__layout *l, uint32_t want,
		   int *err);
/* A zeroed handle of hsize bytes on sh, holding ref (NULL: none), made by
 * this process. NULL + errno. */
void *shmp__obj_handle(size_t hsize, shmp_segment_t *seg, void *sh, _Atomic uint32_t *ref);
/* Open: shmp__obj_at, then shmp__obj_handle. NULL + errno (SHMP_ECORRUPT,
 * SHMP_EVERSION, ENOMEM). */
void *shmp__obj_open(shmp_segment_t *seg, uint64_t off, const struct shmp__layout *l, uint32_t want,
		     size_t hsize, _Atomic uint32_t *ref);
/* Destroy, for a type whose object is its one shared block: release the
 * handle by the one rule (internal.h), free the block if that says so,
 * free the handle. Accepts NULL; keeps errno, so that a create failing
 * after shmp__obj_new can undo it on the way out. */
void shmp__obj_destroy(void *handle);

#endif
