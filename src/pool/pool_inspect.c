/* private: a Pool as an entry of the type table (src/core/types.c), so that
 * shmp_registry_info and lookup, and the `shmp` command's list, report a
 * pool registered in a segment like any other object.
 *
 * Reads what shmp_pool_inspect reads of the pool's shared state (magic,
 * version, the worker count and table, the queue indices), and nothing
 * else: those are display copies (pool_internal.h, "Trust"), so a forged
 * value shows garbage, never makes this read outside the segment. No lock,
 * no write, no wait. */
#include "pool_internal.h"
#include "types.h"

#define MAX_WORKERS 65536u /* as shmp_pool_inspect: more is a forged count */

/* The worker table must be inside the segment, as shmp_pool_inspect asks. */
static bool pool_check(const shmp_segment_t *seg, uint64_t off, const void *p, uint32_t want)
{
	(void)off, (void)want;
	const struct shmp__pool_sh *sh = p;
	uint32_t nw = __atomic_load_n(&sh->nworkers, __ATOMIC_RELAXED);
	return nw > 0 && nw <= MAX_WORKERS &&
	       shmp__sh_at(seg, __atomic_load_n(&sh->wk_off, __ATOMIC_RELAXED), (size_t)nw * sizeof(struct shmp__wk),
			   __alignof__(struct shmp__wk));
}
const struct shmp__layout shmp__pool_layout =
	SHMP__LAYOUT(struct shmp__pool_sh, SHMP__POOL_MAGIC, SHMP__POOL_VERSION, pool_check);

int shmp__pool_inspect(const shmp_segment_t *seg, const void *p, struct shmp_object_info *info)
{
	(void)seg;
	struct shmp__pool_sh *sh = (struct shmp__pool_sh *)p;
	info->workers = __atomic_load_n(&sh->nworkers, __ATOMIC_RELAXED);
	info->capacity = __atomic_load_n(&sh->capacity, __ATOMIC_RELAXED);
	info->depth = shmp__tt_sh_queued(&sh->tt); /* tasks queued, as shmp_pool_stats counts them */
	info->state = (int)atomic_load(&sh->state);
	return 0;
}
