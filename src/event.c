/* private: Event — a flag and a generation in one futex word that waiters
 * sleep on. set() bumps the generation and sets the flag in one atomic
 * step, so a waiter returns once any set() happened during its wait, even
 * if a clear() came right after (a pulse), as Python's
 * threading.Event.wait() does — and never because of a set() that was
 * over before its wait began (two separate stores let a late generation
 * bump wake a wait that started after the flag was seen and cleared). */
#include "internal.h"

#include <stdlib.h>

struct shmp__event_sh {
	_Atomic uint32_t word;    /* futex word: generation << 1 | flag */
	uint32_t reserved0;
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
	info->is_set = atomic_load_explicit(&sh->word, memory_order_relaxed) & 1;
	info->waiters = atomic_load_explicit(&sh->waiters, memory_order_relaxed);
	info->valid = 1;
	return 0;
}

int shmp_event_set(shmp_event_t *e)
{
	if (!e)
		return -EINVAL;
	struct shmp__event_sh *sh = e->sh;
	uint32_t w = atomic_load_explicit(&sh->word, memory_order_relaxed);
	while (!atomic_compare_exchange_weak_explicit(&sh->word, &w, (w + 2) | 1, memory_order_seq_cst,
						      memory_order_relaxed))
		;
	if (atomic_load_explicit(&sh->waiters, memory_order_seq_cst))
		shmp__futex_wake(&sh->word, INT_MAX);
	return 0;
}

int shmp_event_clear(shmp_event_t *e)
{
	if (!e)
		return -EINVAL;
	atomic_fetch_and_explicit(&e->sh->word, ~1u, memory_order_release);
	return 0;
}

int shmp_event_is_set(const shmp_event_t *e)
{
	if (!e)
		return -EINVAL;
	return (int)(atomic_load_explicit(&e->sh->word, memory_order_acquire) & 1);
}

int shmp_event_wait(shmp_event_t *e, double timeout)
{
	if (!e || timeout != timeout)
		return -EINVAL; /* NaN has no meaning, even when set */
	struct shmp__event_sh *sh = e->sh;
	/* Flag and generation in one load: a set() after it moves the word. */
	uint32_t w0 = atomic_load_explicit(&sh->word, memory_order_acquire);
	if (w0 & 1)
		return 0;
	uint32_t g = w0 >> 1;
	struct shmp__deadline d;
	if (shmp__deadline_init(&d, timeout) < 0)
		return -EINVAL;
	if (d.kind == 2)
		return -ETIMEDOUT;
	for (unsigned i = 0; i < shmp__spin_limit; i++) {
		shmp__cpu_relax();
		if (atomic_load_explicit(&sh->word, memory_order_acquire) >> 1 != g)
			return 0;
	}
	atomic_fetch_add_explicit(&sh->waiters, 1, memory_order_seq_cst);
	int r = 0;
	uint32_t w;
	/* Only a set() moves the generation; a clear() of a flag we saw
	 * unset cannot happen without one, so the word is w0 until a set. */
	while ((w = atomic_load_explicit(&sh->word, memory_order_seq_cst)) >> 1 == g) {
		struct timespec until = shmp__deadline_cap(&d, 1000000000L);
		int fw = shmp__futex_wait(&sh->word, w, &until);
		if (shmp__interrupted(fw)) {
			r = atomic_load_explicit(&sh->word, memory_order_acquire) >> 1 != g ? 0 : -EINTR;
			break;
		}
		if (fw == -ETIMEDOUT && shmp__deadline_passed(&d)) {
			r = atomic_load_explicit(&sh->word, memory_order_acquire) >> 1 != g ? 0 : -ETIMEDOUT;
			break;
		}
	}
	atomic_fetch_sub_explicit(&sh->waiters, 1, memory_order_relaxed);
	return r;
}
