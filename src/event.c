/* private: Event — a flag, and a generation word that waiters sleep on.
 * set() bumps the generation, so a waiter returns once any set() happened
 * during its wait, even if a clear() came right after (a pulse), as
 * Python's threading.Event.wait() does. */
#include "internal.h"

#include <stdlib.h>

struct shmp__event_sh {
	_Atomic uint32_t flag;
	_Atomic uint32_t gen;     /* futex word: bumped by every set() */
	_Atomic uint32_t waiters;
	uint32_t magic;
};
#define EVENT_MAGIC 0x45564e54u

struct shmp_event {
	shmp_segment_t *seg;
	struct shmp__event_sh *sh;
	_Atomic uint32_t *ref;
	pid_t pid;               /* the process that made this handle */
};
SHMP__HEAD_CHECK(struct shmp_event);

shmp_event_t *shmp_event_create(const struct shmp_event_opts *opts)
{
	struct shmp_event_opts o;
	if (SHMP__OPTS(o, opts) < 0) {
		errno = EINVAL;
		return NULL;
	}
	shmp_segment_t *seg = o.segment;
	void *sh;
	shmp_event_t *e = shmp__object_new(&seg, sizeof *e, sizeof *e->sh, &sh);
	if (!e)
		return NULL;
	e->sh = sh;
	e->seg = seg;
	e->pid = getpid();
	e->sh->magic = EVENT_MAGIC;
	return e;
}

void shmp_event_destroy(shmp_event_t *e)
{
	if (!e)
		return;
	if (shmp__handle_release(e))
		shmp__free_ptr(e->seg, e->sh);
	free(e);
}

static struct shmp__event_sh *event_at(const shmp_segment_t *seg, uint64_t off)
{
	struct shmp__event_sh *sh = shmp__sh_at(seg, off, sizeof *sh, __alignof__(*sh));
	return sh && sh->magic == EVENT_MAGIC ? sh : NULL;
}

shmp_event_t *shmp__event_open(shmp_segment_t *seg, uint64_t off, _Atomic uint32_t *ref)
{
	struct shmp__event_sh *sh = event_at(seg, off);
	if (!sh) {
		errno = SHMP_ECORRUPT;
		return NULL;
	}
	shmp_event_t *e = calloc(1, sizeof *e);
	if (e)
		*e = (struct shmp_event){ .seg = seg, .pid = getpid(), .sh = sh, .ref = ref };
	return e;
}

int shmp__event_inspect(const shmp_segment_t *seg, uint64_t off, struct shmp_object_info *info)
{
	struct shmp__event_sh *sh = event_at(seg, off);
	if (!sh)
		return -SHMP_ECORRUPT;
	info->is_set = atomic_load_explicit(&sh->flag, memory_order_relaxed) != 0;
	info->waiters = atomic_load_explicit(&sh->waiters, memory_order_relaxed);
	info->valid = 1;
	return 0;
}

int shmp_event_set(shmp_event_t *e)
{
	if (!e)
		return -EINVAL;
	atomic_store_explicit(&e->sh->flag, 1, memory_order_seq_cst);
	atomic_fetch_add_explicit(&e->sh->gen, 1, memory_order_seq_cst);
	if (atomic_load_explicit(&e->sh->waiters, memory_order_seq_cst))
		shmp__futex_wake(&e->sh->gen, INT_MAX);
	return 0;
}

int shmp_event_clear(shmp_event_t *e)
{
	if (!e)
		return -EINVAL;
	atomic_store_explicit(&e->sh->flag, 0, memory_order_release);
	return 0;
}

int shmp_event_is_set(const shmp_event_t *e)
{
	if (!e)
		return -EINVAL;
	return atomic_load_explicit(&e->sh->flag, memory_order_acquire) != 0;
}

int shmp_event_wait(shmp_event_t *e, double timeout)
{
	if (!e || timeout != timeout)
		return -EINVAL; /* NaN has no meaning, even when set */
	struct shmp__event_sh *sh = e->sh;
	/* The generation first: a set() after this load either shows in the
	 * flag below or moves the generation we sleep on. */
	uint32_t g = atomic_load_explicit(&sh->gen, memory_order_acquire);
	if (atomic_load_explicit(&sh->flag, memory_order_acquire))
		return 0;
	struct shmp__deadline d;
	if (shmp__deadline_init(&d, timeout) < 0)
		return -EINVAL;
	if (d.kind == 2)
		return -ETIMEDOUT;
	for (unsigned i = 0; i < shmp__spin_limit; i++) {
		shmp__cpu_relax();
		if (atomic_load_explicit(&sh->gen, memory_order_acquire) != g)
			return 0;
	}
	atomic_fetch_add_explicit(&sh->waiters, 1, memory_order_seq_cst);
	int r = 0;
	while (atomic_load_explicit(&sh->gen, memory_order_seq_cst) == g) {
		struct timespec until = shmp__deadline_cap(&d, 1000000000L);
		int w = shmp__futex_wait(&sh->gen, g, &until);
		if (shmp__interrupted(w)) {
			r = atomic_load_explicit(&sh->gen, memory_order_acquire) != g ? 0 : -EINTR;
			break;
		}
		if (w == -ETIMEDOUT && shmp__deadline_passed(&d)) {
			r = atomic_load_explicit(&sh->gen, memory_order_acquire) != g ? 0 : -ETIMEDOUT;
			break;
		}
	}
	atomic_fetch_sub_explicit(&sh->waiters, 1, memory_order_relaxed);
	return r;
}
