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
 * Errors: one convention in every module.
 * - Functions returning int return >= 0 on success and -code on failure.
 * - Functions returning a pointer return NULL and set errno = code.
 * - A code is an errno value (EINVAL, ENOMEM, ETIMEDOUT, EOWNERDEAD, ...) or
 *   one of shmp's own codes below: positive like errno values, and distinct
 *   from every one of them. So `rc == -SHMP_ECLOSED`, `errno == SHMP_ETYPE`.
 * - Fields named `error` in result structs (shmp_task_error...) hold the
 *   value the call returned: 0 or -code.
 * - shmp_strerror() names a code given with either sign, so
 *   shmp_strerror(rc), shmp_strerror(-rc) and shmp_strerror(errno) all work.
 */
#define SHMP_EBASE 4000
enum {
	SHMP_ECORRUPT = SHMP_EBASE + 1,     /* shared state failed validation */
	SHMP_EVERSION = SHMP_EBASE + 2,     /* segment made by another layout version */
	SHMP_EBROKEN = SHMP_EBASE + 3,      /* barrier or pool is broken */
	SHMP_ECLOSED = SHMP_EBASE + 4,      /* object was closed */
	SHMP_EWORKERDIED = SHMP_EBASE + 5,  /* the worker running the task died */
	SHMP_ETASK = SHMP_EBASE + 6,        /* the task function reported failure */
	SHMP_ETYPE = SHMP_EBASE + 7,        /* object has another type or typecode */
	SHMP_EINIT = SHMP_EBASE + 8,        /* a pool worker's initializer failed */
	SHMP_EOWNER = SHMP_EBASE + 9,       /* segment owned by another user, or writable by others */
	SHMP_ESEGFULL = SHMP_EBASE + 10,    /* no room left in the segment: raise its size */
	SHMP_ENOTCLOSED = SHMP_EBASE + 11,  /* close() or terminate() first */
	SHMP_EBADFN = SHMP_EBASE + 12,      /* task function is not code of this program */
	SHMP_ESKIPPED = SHMP_EBASE + 13,    /* item not run: an earlier item of its chunk failed */
	SHMP_ELOCKED = SHMP_EBASE + 14,     /* a lock in shared memory stayed held past its bound */
	SHMP_ELAST = SHMP_ELOCKED
};

/* 1 if io_uring can be used here, 0 if shmp falls back to poll/pread
 * (kernel without it, seccomp, io_uring_disabled, or SHMP_NO_IO_URING=1 in
 * the environment). Probed once per process. */
SHMP_API int shmp_io_uring_available(void);

/* Name of an error code, given with either sign (any int is accepted).
 * Never returns NULL. */
SHMP_API const char *shmp_strerror(int err);

/* Timeouts are in seconds, as in Python: negative waits forever, 0 polls once
 * (fails at once with -ETIMEDOUT unless the call can succeed at once),
 * positive waits up to that long, measured on CLOCK_MONOTONIC. NaN is
 * -EINVAL. One meaning per value, in every call. */
#define SHMP_FOREVER (-1.0)

/* Interrupts. By default a wait interrupted by a signal handler goes on
 * waiting (as glibc's sem_wait with SA_RESTART would not, and Python's
 * waits do not either). shmp_set_interruptible(1) makes every blocking call
 * of this process — map, apply, get, join, imap next, queue get/put, pipe
 * send/recv, lock/semaphore acquire, condition, event and barrier waits —
 * return -EINTR once a signal handler has run during it, so that a SIGINT
 * handler's flag can end the wait (Ctrl-C ends a map, as Python's
 * KeyboardInterrupt does). A call that returned -EINTR left no partial
 * state (a map or apply goes on in the pool, as if made async: terminate
 * and join the pool, or wait for it, before freeing its buffers).
 * Per process, inherited by fork. Returns the previous setting. */
SHMP_API int shmp_set_interruptible(int on);

/* Options structs (libbpf style): the first field is the struct's size, so
 * a library built with a larger struct can tell what the caller knows, and
 * one built with a smaller struct refuses a caller's fields it does not
 * know: bytes past the size this library knows must be zero, else -EINVAL.
 * NULL means every default; in options, 0 always means "the default"
 * (documented per field).
 *   struct shmp_value_opts o = SHMP_OPTS(shmp_value_opts, .raw = 1);  */
#define SHMP_OPTS(type, ...) ((struct type){ .sz = sizeof(struct type), __VA_ARGS__ })

#ifdef __cplusplus
}
#endif
#endif
