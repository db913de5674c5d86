/* private: loading a caller's options struct (libbpf's rule), shared by
 * the core and the optional components (src/mpi), so that one rule holds
 * in every module. */
#ifndef SHMP_OPTS_H
#define SHMP_OPTS_H

#include <stddef.h>
#include <string.h>
#include <errno.h>

/* Copy a caller's options into a zeroed local of this library's size: the
 * fields an older caller's smaller struct lacks stay zero, and nothing past
 * its sz is read. NULL gives all defaults. -EINVAL if sz cannot even hold
 * itself, or if a newer caller's struct has non-zero bytes past what this
 * library knows (libbpf's rule: an option it cannot honour is refused). */
static inline int shmp__opts_load(void *dst, size_t dsz, const void *src)
{
	memset(dst, 0, dsz);
	if (!src)
		return 0;
	size_t ssz;
	memcpy(&ssz, src, sizeof ssz);
	if (ssz < sizeof(size_t) || ssz > (1u << 16))
		return -EINVAL;
	for (size_t i = dsz; i < ssz; i++)
		if (((const unsigned char *)src)[i])
			return -EINVAL;
	memcpy(dst, src, ssz < dsz ? ssz : dsz);
	return 0;
}
#define SHMP__OPTS(local, opts) shmp__opts_load(&(local), sizeof(local), (opts))

#endif
