/* private: Event — a flag and a generation in one futex word that waiters
 * sleep on. set() bumps the generation and sets the flag in one atomic
 * step, so a waiter returns once any set() happened during its wait, even
 * if a clear() came right after (a pulse), as Python's
 * threading.Event.wait() does — and never because of a set() that was
 * over before its wait began (two separate stores let a late generation
 * bump wake a wait that started after the flag was seen and cleared). */
#include "types.h"

#include <stdlib.h>

struct shmp__event_sh {
	uint32_t magic;
	uint32_t version;
	_Atomic uint32_t word;    /* futex word: generation << 1 | flag */
	_Atomic uint32_t waiters;
};
#define EVENT_MAGIC 0x45564e54u
#define EVENT_VERSION 1u
/* Pinned: other processes, maybe of another build, map it. */
SHMP__PIN(struct shmp__event_sh, 16);
_Static_assert(offsetof(struct shmp__event_sh, word) == 8 && offsetof(struct shmp__event_sh, waiters) == 12,
	       "event fields");
const struct shmp__layout shmp__event_layout = SHMP__LAYOUT(struct shmp__event_sh, EVENT_MAGIC, EVENT_VERSION, NULL);

struct shmp_event {
	SHMP__HEAD(struct shmp__event_sh);
	struct shmp__spin spin; /* this handle's waits: internal.h */
};
SHMP__HEAD_CHECK(struct shmp_event);

shmp_event_t *shmp_event_create(const struct shmp_event_opts *opts)
{
	struct shmp_event_opts o;
	if (SHMP__OPTS(o, opts) < 0) {
		errno = EINVAL;
		return NULL;
	}
	shmp_event_t *e = shmp__obj_new(o.segment, sizeof *e, &shmp__event_layout, 0);
	if (e) {
		shmp__spin_init(&e->spin);
		shmp__obj_publish(e->sh, &shmp__event_layout);
	}
	return e;
}

void shmp_event_destroy(shmp_event_t *e)
{
	shmp__obj_destroy(e);
}

shmp_event_t *shmp__event_open(shmp_segment_t *seg, uint64_t off, _Atomic uint32_t *ref)
{
	shmp_event_t *e = shmp__obj_open(seg, off, &shmp__event_layout, 0, sizeof(shmp_event_t), ref);
	if (e)
		shmp__spin_init(&e->spin);
	return e;
}

int shmp__event_inspect(const shmp_segment_t *seg, const void *p, struct shmp_object_info *info)
{
	(void)seg;
	struct shmp__event_sh *sh = (struct shmp__event_sh *)p;
	info->is_set = atomic_load_explicit(&sh->word, memory_order_relaxed) & 1;
	info->waiters = atomic_load_explicit(&sh->waiters, memory_order_relaxed);
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
	/* Spin while it pays (internal.h): caught here, the setter sees no
	 * waiter and neither side makes a system call. */
	unsigned spin = shmp__spin_begin(&e->spin);
	for (unsigned i = 0; i < spin; i++) {
		shmp__cpu_relax();
		if (atomic_load_explicit(&sh->word, memory_order_acquire) >> 1 != g) {
			shmp__spin_end(&e->spin, spin, true);
			return 0;
		}
	}
	shmp__spin_end(&e->spin, spin, false);
	atomic_fetch_add_explicit(&sh->waiters, 1, memory_order_seq_cst);
	int r = 0;
	uint32_t w;
	/* Only a set() moves the generation; a clear() of a flag we saw
	 * unset cannot happen without one, so the word is w0 until a set. */
	/* A wait forever that no signal may cut short sleeps without a timer
	 * (as the raw futex ping-pong does: arming one costs about 0.5 us a
	 * sleep, measured); else in slices of 1 s, timed, so that a signal
	 * handler that ran cuts them short with EINTR even under SA_RESTART. */
	bool untimed = d.kind == 0 && !atomic_load_explicit(&shmp__intr_on, memory_order_relaxed);
	while ((w = atomic_load_explicit(&sh->word, memory_order_seq_cst)) >> 1 == g) {
		struct timespec until;
		if (!untimed)
			until = shmp__deadline_cap(&d, 1000000000L);
		int fw = shmp__futex_wait(&sh->word, w, untimed ? NULL : &until);
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
