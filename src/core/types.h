/* private: every shared object type behind one table (libuv's "type
 * dispatch in one place"). The registry makes, opens, inspects and frees
 * objects only through it; inspection (shmp_registry_info, and so the
 * `shmp` command) reads them only through it. A new type is one entry
 * here and the hooks its file exports below, not a case in four switches. */
#ifndef SHMP_TYPES_H
#define SHMP_TYPES_H

#include "object.h"

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
	/* A handle on the object at off, checked first (NULL + errno
	 * SHMP_ECORRUPT or SHMP_EVERSION if it fails); it holds ref (may be
	 * NULL). NULL for types the registry does not lend (pool, pipeline). */
	void *(*open)(shmp_segment_t *seg, uint64_t off, _Atomic uint32_t *ref);
	/* Inspection: the state at an offset is checked against layout, as
	 * the variant want (object.h), by shmp__type_inspect for every type;
	 * inspect then fills info's fields for the type from it: 0, or
	 * -SHMP_ECORRUPT / -SHMP_EVERSION for a part it reaches by offset.
	 * Reads only: no lock, no write, no wait. */
	const struct shmp__layout *layout;
	uint32_t want;
	int (*inspect)(const shmp_segment_t *seg, const void *sh, struct shmp_object_info *info);
	/* The type's destroy (the handle rule of internal.h). */
	void (*destroy)(void *handle);
};

/* Indexed by SHMP_TYPE_*; NULL for an unknown type. */
const struct shmp__type_ops *shmp__type(int type);
/* Fill info's fields for the object of `type` at off, and info->valid and
 * info->error: the check above, then the type's inspect. */
void shmp__type_inspect(const shmp_segment_t *seg, int type, uint64_t off, struct shmp_object_info *info);

/* ---- what each type's file gives the table ---------------------------- */
extern const struct shmp__layout shmp__lock_layout;     /* want: SHMP__KIND_*, 0 either */
extern const struct shmp__layout shmp__typed_layout;    /* want: 1 Value, 2 Array, 0 either */
extern const struct shmp__layout shmp__sem_layout;      /* want: 1 plain, 2 bounded, 0 either */
extern const struct shmp__layout shmp__event_layout;
extern const struct shmp__layout shmp__cond_layout;
extern const struct shmp__layout shmp__barrier_layout;
extern const struct shmp__layout shmp__queue_layout;    /* want: 1 plain, 2 joinable, 0 either */
extern const struct shmp__layout shmp__dict_layout;
extern const struct shmp__layout shmp__pool_layout;
extern const struct shmp__layout shmp__pipeline_layout;

shmp_value_t *shmp__value_open(shmp_segment_t *seg, uint64_t off, _Atomic uint32_t *ref);
shmp_array_t *shmp__array_open(shmp_segment_t *seg, uint64_t off, _Atomic uint32_t *ref);
shmp_sem_t *shmp__sem_open(shmp_segment_t *seg, uint64_t off, bool bounded, _Atomic uint32_t *ref);
shmp_event_t *shmp__event_open(shmp_segment_t *seg, uint64_t off, _Atomic uint32_t *ref);
shmp_cond_t *shmp__cond_open(shmp_segment_t *seg, uint64_t off, _Atomic uint32_t *ref);
shmp_barrier_t *shmp__barrier_open(shmp_segment_t *seg, uint64_t off, _Atomic uint32_t *ref);
shmp_queue_t *shmp__queue_open(shmp_segment_t *seg, uint64_t off, bool joinable, _Atomic uint32_t *ref);
shmp_dict_t *shmp__dict_open(shmp_segment_t *seg, uint64_t off, _Atomic uint32_t *ref);

int shmp__lock_inspect(const shmp_segment_t *seg, const void *sh, struct shmp_object_info *info);
int shmp__typed_inspect(const shmp_segment_t *seg, const void *sh, struct shmp_object_info *info);
int shmp__sem_inspect(const shmp_segment_t *seg, const void *sh, struct shmp_object_info *info);
int shmp__event_inspect(const shmp_segment_t *seg, const void *sh, struct shmp_object_info *info);
int shmp__cond_inspect(const shmp_segment_t *seg, const void *sh, struct shmp_object_info *info);
int shmp__barrier_inspect(const shmp_segment_t *seg, const void *sh, struct shmp_object_info *info);
int shmp__queue_inspect(const shmp_segment_t *seg, const void *sh, struct shmp_object_info *info);
int shmp__dict_inspect(const shmp_segment_t *seg, const void *sh, struct shmp_object_info *info);
int shmp__pool_inspect(const shmp_segment_t *seg, const void *sh, struct shmp_object_info *info);
int shmp__pipeline_inspect(const shmp_segment_t *seg, const void *sh, struct shmp_object_info *info);

#endif
