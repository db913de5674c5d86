/* private: what the layers above (pool, pipeline) need from the registry. */
#ifndef SHMP_REGISTRY_INTERNAL_H
#define SHMP_REGISTRY_INTERNAL_H

#include "internal.h"

/* Name an object another layer owns (SHMP_TYPE_POOL...), so tools find it;
 * creates the segment's directory if needed. 0, -EEXIST, -ENOSPC... */
int shmp__registry_add(shmp_segment_t *seg, const char *name, int type, uint64_t off);
/* Take such an entry out again, by the object's offset. */
void shmp__registry_forget(shmp_segment_t *seg, uint64_t off);
/* The offset of the object named `name`, which must be of `type`: 0,
 * -EINVAL (r), -ENOENT, -SHMP_ETYPE. What shmp_pool_inspect and
 * shmp_pipeline_inspect begin with. */
int shmp__registry_find(shmp_registry_t *r, const char *name, int type, uint64_t *off);

#endif
