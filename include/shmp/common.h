/* shmp — common definitions: export macro, error codes, timeouts, options. */
#ifndef SHMP_COMMON_H
#define SHMP_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(SHMP_BUILDING) && defined(__GNUC__)
#define SHMP_API __attribute__((visibility("default")))
#else
#define SHMP_API
#endif

/* Library version. shmp_version() returns SHMP_VERSION_NUMBER of the library
 * actually loaded, which may differ from the header's. */
#define SHMP_VERSION_MAJOR 0
#define SHMP_VERSION_MINOR 1
#define SHMP_VERSION_PATCH 0
#define SHMP_VERSION_NUMBER \
	(SHMP_VERSION_MAJOR * 10000 + SHMP_VERSION_MINOR * 100 + SHMP_VERSION_PATCH)
#define SHMP_VERSION_STRING "0.1.0"

/* public */
SHMP_API unsigned shmp_version(void);
SHMP_API const char *shmp_version_string(void);

/*
 * Errors. Every function returning int returns >= 0 on success and a negative
 * errno on failure (-EINVAL, -ENOMEM, -ETIMEDOUT, -EOWNERDEAD, ...). Failures
 * that no errno describes get shmp's own codes below, all under -SHMP_EBASE.
 * Functions returning a pointer return NULL and set errno (positive).
 */
#define SHMP_EBASE 4000
enum {
	SHMP_ECORRUPT = -(SHMP_EBASE + 1),    /* shared state failed validation */
	SHMP_EVERSION = -(SHMP_EBASE + 2),    /* segment made by another layout version */
	SHMP_EBROKEN = -(SHMP_EBASE + 3),     /* barrier is broken (abort, reset, timeout, death) */
	SHMP_ECLOSED = -(SHMP_EBASE + 4),     /* object was closed */
	SHMP_EWORKERDIED = -(SHMP_EBASE + 5), /* the worker running the task died */
	SHMP_ETASK = -(SHMP_EBASE + 6),       /* the task function reported failure */
	SHMP_ETYPE = -(SHMP_EBASE + 7),       /* object has another type or typecode */
	SHMP_EINIT = -(SHMP_EBASE + 8),       /* a pool worker's initializer failed */
	SHMP_ELAST = -(SHMP_EBASE + 8)
};

/* 1 if io_uring can be used here, 0 if shmp falls back to poll/pread
 * (kernel without it, seccomp, io_uring_disabled, or SHMP_NO_IO_URING=1 in
 * the environment). Probed once per process. */
SHMP_API int shmp_io_uring_available(void);

/* Name of an error code (negative, as returned), or of a positive errno.
 * Never returns NULL. */
SHMP_API const char *shmp_strerror(int err);

/* Timeouts are in seconds, as in Python: negative waits forever, 0 polls once
 * (fails at once with -ETIMEDOUT), positive waits up to that long, measured on
 * CLOCK_MONOTONIC. A wait interrupted by a signal goes on waiting. */
#define SHMP_FOREVER (-1.0)

/* Options structs (libbpf style): first field is the struct's size, so a
 * library built with a larger struct can tell what the caller knows.
 *   struct shmp_value_opts o = SHMP_OPTS(shmp_value_opts, .raw = 1);  */
#define SHMP_OPTS(type, ...) ((struct type){ .sz = sizeof(struct type), __VA_ARGS__ })

#ifdef __cplusplus
}
#endif
#endif
