/* private: an item of a typecode (Python's array module letters) as int64
 * and double, and back. One conversion for the local Value/Array
 * (value.c) and the MPI window objects (mpi/win.c), so that both round and
 * refuse alike. Header-only: the MPI component cannot call the core's
 * hidden symbols. */
#ifndef SHMP_TYPECODE_H
#define SHMP_TYPECODE_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

/* The item at buf, of typecode tc, as *x and *y (either may be NULL).
 * 0, or -EINVAL for an unknown typecode. */
static inline int shmp__item_decode(char tc, const void *buf, int64_t *x, double *y)
{
	int64_t i;
	double d;
	switch (tc) {
	case 'b': i = *(const int8_t *)buf; d = (double)i; break;
	case 'B': case 'c': i = *(const uint8_t *)buf; d = (double)i; break;
	case '?': i = *(const uint8_t *)buf != 0; d = (double)i; break;
	case 'h': i = *(const int16_t *)buf; d = (double)i; break;
	case 'H': i = *(const uint16_t *)buf; d = (double)i; break;
	case 'i': i = *(const int32_t *)buf; d = (double)i; break;
	case 'I': i = *(const uint32_t *)buf; d = (double)i; break;
	case 'l': case 'q': i = *(const int64_t *)buf; d = (double)i; break;
	case 'L': case 'Q': i = (int64_t)*(const uint64_t *)buf; d = (double)*(const uint64_t *)buf; break;
	case 'f': d = *(const float *)buf; i = (int64_t)d; break;
	case 'd': d = *(const double *)buf; i = (int64_t)d; break;
	default: return -EINVAL;
	}
	if (x)
		*x = i;
	if (y)
		*y = d;
	return 0;
}

/* x (or y, from_double) as an item of typecode tc at buf (8 bytes). 0;
 * -ERANGE for a double that no int64_t holds (NaN, infinities, beyond
 * 2^63) given for an integer item: C gives that conversion no meaning;
 * -EINVAL for an unknown typecode. */
static inline int shmp__item_encode(char tc, void *buf, int64_t x, double y, bool from_double)
{
	bool to_int = tc != 'f' && tc != 'd' && tc != '?';
	if (from_double && to_int && !(y >= -9223372036854775808.0 && y < 9223372036854775808.0))
		return -ERANGE;
	if (from_double)
		x = (int64_t)y;
	else
		y = (double)x;
	switch (tc) {
	case 'b': case 'B': case 'c': *(uint8_t *)buf = (uint8_t)x; break;
	case '?': *(uint8_t *)buf = from_double ? y != 0 : x != 0; break;
	case 'h': case 'H': *(uint16_t *)buf = (uint16_t)x; break;
	case 'i': case 'I': *(uint32_t *)buf = (uint32_t)x; break;
	case 'l': case 'L': case 'q': case 'Q': *(uint64_t *)buf = (uint64_t)x; break;
	case 'f': *(float *)buf = (float)y; break;
	case 'd': *(double *)buf = y; break;
	default: return -EINVAL;
	}
	return 0;
}

#endif
