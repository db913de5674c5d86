/* shmp — shared Value and Array with Python's typecodes. */
#ifndef SHMP_VALUE_H
#define SHMP_VALUE_H

#include "sync.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Typecodes, as Python's array/ctypes: b B h H i I l L q Q (integers of 1, 2,
 * 4, 8, 8 bytes, signed lower case), f d (float, double), c (char), ? (bool).
 * Another typecode is -EINVAL (errno EINVAL for constructors).
 *
 * Synchronized by default: get/set/read/write take the object's robust Lock
 * (an RLock, as Python's). opts.raw = 1 gives no lock; opts.lock shares a
 * caller's Lock/RLock (same segment). A holder that died is recovered from
 * silently by get/set (the bytes are whatever it last wrote).
 *
 * Integer objects also have lock-free atomic load/store/add/compare-exchange,
 * which ignore the lock. Values pass through int64_t; unsigned and narrow
 * types wrap as C conversions do. Setting an integer item from a double
 * that no int64_t holds (NaN, an infinity, beyond 2^63) is -ERANGE. 'l' and
 * 'L' are 8 bytes: shmp is for 64-bit (LP64) Linux.
 *
 * Errors (the contract of common.h and sync.h): NULL handles and NULL
 * pointers where a result or an input is needed are -EINVAL. The calls that
 * take the lock wait for it without a time limit and may also return what
 * waiting for a lock returns: -EINTR (shmp_set_interruptible(1) and a
 * signal handler ran while waiting: nothing was read or written),
 * -EDEADLK (opts.lock is a Lock, not an RLock, and this thread holds it),
 * -ENOTRECOVERABLE (a caller's lock was left not recoverable).
 *
 * Lifetime: destroy releases this process's handle; the creating process's
 * destroy frees the object (for a registry object, the last handle after
 * shmp_registry_remove()); never a forked child's destroy of an inherited
 * handle. The lock of opts.lock stays the caller's.
 */
typedef struct shmp_value shmp_value_t;
typedef struct shmp_array shmp_array_t;

struct shmp_value_opts {
	size_t sz;
	shmp_segment_t *segment; /* NULL: the given lock's segment, or the default one */
	int raw;                 /* 1: no lock (with .lock too: EINVAL) */
	shmp_lock_t *lock;       /* a Lock/RLock to use instead of a new one;
				  * it must live in the same segment (EXDEV) */
};

/* public */
/* Size in bytes of one item of `typecode`, or -EINVAL. */
SHMP_API int shmp_typecode_size(char typecode);

/* ---- Value ------------------------------------------------------------- */
/* init may be NULL (zero). NULL with errno: EINVAL (typecode, opts), ENOMEM,
 * EXDEV, SHMP_ESEGFULL (no room in the segment). */
SHMP_API shmp_value_t *shmp_value_create(char typecode, const void *init,
					 const struct shmp_value_opts *opts);
/* Release this process's handle (see Lifetime). Accepts NULL. */
SHMP_API void shmp_value_destroy(shmp_value_t *v);
/* Copy the item out / in (shmp_typecode_size() bytes), under the lock. 0 or
 * the errors above. */
SHMP_API int shmp_value_get(shmp_value_t *v, void *out);
SHMP_API int shmp_value_set(shmp_value_t *v, const void *in);
/* Converting get/set: any numeric typecode <-> int64_t / double, under the
 * lock. 0 or the errors above. */
SHMP_API int shmp_value_get_i64(shmp_value_t *v, int64_t *out);
SHMP_API int shmp_value_set_i64(shmp_value_t *v, int64_t x);
SHMP_API int shmp_value_get_f64(shmp_value_t *v, double *out);
SHMP_API int shmp_value_set_f64(shmp_value_t *v, double x);
/* Atomic, lock-free, integer typecodes only (-EINVAL otherwise). 0. */
SHMP_API int shmp_value_load(shmp_value_t *v, int64_t *out);
SHMP_API int shmp_value_store(shmp_value_t *v, int64_t x);
/* Adds delta; *prev (may be NULL) gets the value before. 0, -EINVAL. */
SHMP_API int shmp_value_add(shmp_value_t *v, int64_t delta, int64_t *prev);
/* If the value equals *expected, store desired and return 1; else store the
 * current value in *expected and return 0. -EINVAL. */
SHMP_API int shmp_value_cas(shmp_value_t *v, int64_t *expected, int64_t desired);
/* The item in shared memory, for access under the lock. NULL with errno
 * EINVAL if v is NULL. */
SHMP_API void *shmp_value_ptr(shmp_value_t *v);
/* The lock (the Value's own, or opts.lock), or NULL with errno ENOLCK for a
 * raw value, EINVAL if v is NULL. */
SHMP_API shmp_lock_t *shmp_value_lock(shmp_value_t *v);
/* The typecode; 0 if v is NULL. */
SHMP_API char shmp_value_typecode(const shmp_value_t *v);

/* ---- Array ------------------------------------------------------------- */
/* length >= 1 items, zero-filled (even when the memory is reused) or copied
 * from init (length items) if init is not NULL. NULL with errno: EINVAL
 * (typecode, length 0, opts), ENOMEM, EXDEV, SHMP_ESEGFULL. */
SHMP_API shmp_array_t *shmp_array_create(char typecode, size_t length, const void *init,
					 const struct shmp_value_opts *opts);
/* Release this process's handle (see Lifetime). Accepts NULL. */
SHMP_API void shmp_array_destroy(shmp_array_t *a);
/* Number of items; 0 if a is NULL. */
SHMP_API size_t shmp_array_len(const shmp_array_t *a);
/* The typecode; 0 if a is NULL. */
SHMP_API char shmp_array_typecode(const shmp_array_t *a);
/* Item i, under the lock; -ERANGE if i >= len, or the errors above. */
SHMP_API int shmp_array_get(shmp_array_t *a, size_t i, void *out);
SHMP_API int shmp_array_set(shmp_array_t *a, size_t i, const void *in);
SHMP_API int shmp_array_get_i64(shmp_array_t *a, size_t i, int64_t *out);
SHMP_API int shmp_array_set_i64(shmp_array_t *a, size_t i, int64_t x);
SHMP_API int shmp_array_get_f64(shmp_array_t *a, size_t i, double *out);
SHMP_API int shmp_array_set_f64(shmp_array_t *a, size_t i, double x);
/* Slice copy: items [start, start+count) out to / in from a buffer, under the
 * lock as one step. -ERANGE if the range is not inside the array, or the
 * errors above. */
SHMP_API int shmp_array_read(shmp_array_t *a, size_t start, size_t count, void *out);
SHMP_API int shmp_array_write(shmp_array_t *a, size_t start, size_t count, const void *in);
/* Atomic, lock-free, integer typecodes only (-EINVAL otherwise); -ERANGE if
 * i >= len. As the Value ones. */
SHMP_API int shmp_array_load(shmp_array_t *a, size_t i, int64_t *out);
SHMP_API int shmp_array_store(shmp_array_t *a, size_t i, int64_t x);
SHMP_API int shmp_array_add(shmp_array_t *a, size_t i, int64_t delta, int64_t *prev);
SHMP_API int shmp_array_cas(shmp_array_t *a, size_t i, int64_t *expected, int64_t desired);
/* The items in shared memory. NULL with errno EINVAL if a is NULL. */
SHMP_API void *shmp_array_ptr(shmp_array_t *a);
/* As shmp_value_lock. */
SHMP_API shmp_lock_t *shmp_array_lock(shmp_array_t *a);

#ifdef __cplusplus
}
#endif
#endif
