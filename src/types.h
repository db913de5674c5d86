/* private: every shared object type behind one table (libuv's "type
 * dispatch in one place"). The registry makes, opens, inspects and frees
 * objects only through it; inspection (shmp_registry_info, and so the
 * `shmp` command) reads them only through it. A new type is one entry
 * here, not a case in four switches. */
#ifndef SHMP_TYPES_H
#define SHMP_TYPES_H

#include "internal.h"

/* What a registry getter passes to create. */
struct shmp__params {
	char tc;            /* Value, Array: typecode */
	size_t length;      /* Array: items */
	const void *init;   /* Value, Array: initial contents (NULL: zero) */
	unsigned n;         /* Semaphore value, Barrier parties, Queue maxsize */
	const struct shmp_dict_opts *dict;
};

struct shmp__type_ops {
	const char *name;   /* shmp_type_name() */
	/* A new object in seg; its handle (owned by this process), NULL +
	 * errno. NULL for types made by their own layer (pool, pipeline). */
	void *(*create)(shmp_segment_t *seg, const struct shmp__params *p);
	/* A handle on the object at off, validated first (NULL + errno
	 * SHMP_ECORRUPT if it fails); it holds ref (may be NULL). */
	void *(*open)(shmp_segment_t *seg, uint64_t off, _Atomic uint32_t *ref);
	/* Validate and fill info's fields for the type (valid = 1): 0 or
	 * -SHMP_ECORRUPT. Reads only: no lock, no write, no wait. */
	int (*inspect)(const shmp_segment_t *seg, uint64_t off, struct shmp_object_info *info);
	/* The type's destroy (the handle rule of internal.h). */
	void (*destroy)(void *handle);
};

/* Indexed by SHMP_TYPE_*; NULL for an unknown type. */
const struct shmp__type_ops *shmp__type(int type);

#endif
