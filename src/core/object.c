/* private: the object skeleton (see object.h for the layout rule and its
 * crash safety). */
#include "object.h"

#include <stdlib.h>

void *shmp__obj_new(shmp_segment_t *seg, size_t hsize, const struct shmp__layout *l, size_t tail)
{
	if (!(seg = shmp__segment_or_default(seg)))
		return NULL;
	if (tail > SIZE_MAX / 2) {
		errno = SHMP_ESEGFULL; /* no segment holds it */
		return NULL;
	}
	struct shmp__head *h = calloc(1, hsize);
	if (!h)
		return NULL;
	if (!(h->sh = shmp__alloc_ptr(seg, l->size + tail, SHMP__CACHELINE, NULL))) {
		int e = errno;
		free(h);
		errno = e;
		return NULL;
	}
	h->seg = seg;
	h->pid = getpid();
	return h;
}

void *shmp__obj_at(const shmp_segment_t *seg, uint64_t off, const struct shmp__layout *l, uint32_t want,
		   int *err)
{
	const uint32_t *w = shmp__sh_at(seg, off, l->size, l->align);
	*err = -SHMP_ECORRUPT;
	if (!w || __atomic_load_n(&w[0], __ATOMIC_ACQUIRE) != l->magic)
		return NULL;
	if (w[1] != l->version) {
		*err = -SHMP_EVERSION;
		return NULL;
	}
	if (l->check && !l->check(seg, off, w, want))
		return NULL;
	*err = 0;
	return (void *)w;
}

void *shmp__obj_handle(size_t hsize, shmp_segment_t *seg, void *sh, _Atomic uint32_t *ref)
{
	struct shmp__head *h = calloc(1, hsize);
	if (h)
		*h = (struct shmp__head){ .seg = seg, .sh = sh, .ref = ref, .pid = getpid() };
	return h;
}

void *shmp__obj_open(shmp_segment_t *seg, uint64_t off, const struct shmp__layout *l, uint32_t want,
		     size_t hsize, _Atomic uint32_t *ref)
{
	int e;
	void *sh = shmp__obj_at(seg, off, l, want, &e);
	if (!sh) {
		errno = -e;
		return NULL;
	}
	return shmp__obj_handle(hsize, seg, sh, ref);
}

void shmp__obj_destroy(void *handle)
{
	struct shmp__head *h = handle;
	if (!h)
		return;
	int e = errno;
	if (shmp__handle_release(h))
		shmp__free_ptr(h->seg, h->sh);
	free(h);
	errno = e;
}
