/* shmp — the registry (Python's Manager without a server) and Dict. */
#ifndef SHMP_REGISTRY_H
#define SHMP_REGISTRY_H

#include "queue.h"
#include "segment.h" /* shmp_segment_inspect, which was declared here */
#include "value.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A registry is a named segment with a directory of named, typed objects.
 * Any process of the same user (not only a child) attaches by name and
 * looks objects up by name and type; every operation on the objects then
 * goes straight to shared memory, with no server in the path.
 *
 * Getters create-or-get: shmp_registry_value(r, "hits", 'q', ...) returns the
 * Value named "hits", creating it if nobody has. The creation parameters
 * (typecode, length, initial value...) are used only when it is created.
 * flags: SHMP_REG_CREATE_ONLY fails with EEXIST if the name is taken,
 * SHMP_REG_GET_ONLY fails with ENOENT if it is not. Errors (NULL + errno):
 *   EINVAL        name is empty or has characters outside [A-Za-z0-9_.:-]
 *   ENAMETOOLONG  name longer than SHMP_REGISTRY_NAME_MAX bytes
 *   EEXIST        SHMP_REG_CREATE_ONLY and the name is taken (by any type)
 *   ENOENT        SHMP_REG_GET_ONLY and there is no such name
 *   SHMP_ETYPE    the name is taken by another type, or a Value/Array of
 *                 another typecode
 *   ENOSPC        the directory is full (opts.capacity entries)
 *   SHMP_ESEGFULL the segment is full (create the registry with a larger size)
 *   SHMP_ELOCKED  the directory lock stayed held for 2 s (a stopped process,
 *                 or a forged lock word: see README "Security")
 *   EROFS         the registry was attached read-only
 *   SHMP_ECORRUPT the directory or the object failed validation
 *   SHMP_EVERSION the object was made by a library with another layout of
 *                 its type
 *
 * Handles returned by the registry are destroyed with the type's usual
 * destroy function (shmp_value_destroy...). That releases the handle only:
 * the object belongs to the registry and stays for other processes until
 * shmp_registry_remove(). Destroy every handle before detaching the registry.
 *
 * Lifetime:
 * - The segment exists until it is unlinked. shmp_registry_destroy() by the
 *   creating handle unlinks it; shmp_registry_detach() only unmaps;
 *   shmp_segment_unlink(name) or `shmp rm NAME` unlink by name.
 * - A process that still maps an unlinked registry keeps using it (memory
 *   lives until the last unmap); new attaches fail with ENOENT, and a new
 *   registry may be created under the same name, separate from the old one.
 * - shmp_registry_remove(name) takes the name out at once (it can be reused
 *   right away); the object's memory is freed when the last handle opened
 *   through the registry is destroyed. Handles held by processes that died
 *   are never released: such an object's memory stays until the segment goes.
 * - A segment whose creator and every process mapping it have died is stale:
 *   shmp_segment_inspect() (segment.h) reports it and `shmp gc` removes it.
 */
typedef struct shmp_registry shmp_registry_t;
typedef struct shmp_dict shmp_dict_t;

#define SHMP_REGISTRY_NAME_MAX 63

enum {
	SHMP_REG_CREATE_ONLY = 1u << 0,
	SHMP_REG_GET_ONLY = 1u << 1,
};

enum { /* registry_opts.flags */
	SHMP_REGISTRY_READ_ONLY = 1u << 0, /* attach: map read-only, not counted as an attach */
	/* create: left on purpose for later readers. `shmp ls` never calls it
	 * stale and `shmp gc` keeps it; shmp_registry_destroy, shmp rm or
	 * shmp_segment_unlink remove it. */
	SHMP_REGISTRY_PERSISTENT = 1u << 1,
};

struct shmp_registry_opts {
	size_t sz;          /* sizeof(struct shmp_registry_opts) */
	size_t size;        /* segment bytes at creation; 0 means 64 MiB (tmpfs: free until touched) */
	unsigned mode;      /* permission bits; 0 means 0600 (0660 to share with a group,
			     * whose members then attach with SHMP_TRUST_GID) */
	unsigned capacity;  /* directory entries at creation; 0 means 1024 */
	unsigned flags;     /* SHMP_REGISTRY_* */
	/* attach and open: whom to trust, as shmp_segment_opts (segment.h).
	 * By default a registry owned by another user, or writable by group
	 * or others, is refused with SHMP_EOWNER, and open never adopts it. */
	unsigned trust;
	uid_t trust_uid;
	gid_t trust_gid;
};

enum shmp_type {
	SHMP_TYPE_NONE = 0,
	SHMP_TYPE_VALUE,
	SHMP_TYPE_ARRAY,
	SHMP_TYPE_LOCK,
	SHMP_TYPE_RLOCK,
	SHMP_TYPE_SEM,
	SHMP_TYPE_BOUNDED_SEM,
	SHMP_TYPE_COND,
	SHMP_TYPE_EVENT,
	SHMP_TYPE_BARRIER,
	SHMP_TYPE_QUEUE,
	SHMP_TYPE_JOINABLE_QUEUE,
	SHMP_TYPE_DICT,
	SHMP_TYPE_POOL,     /* registered by a Pool created in a named segment */
	SHMP_TYPE_PIPELINE, /* registered by a pipeline in a named segment */
	SHMP_TYPE_MAX
};

/* public */
/* "value", "lock", "joinable_queue"...; "unknown" for anything else. */
SHMP_API const char *shmp_type_name(int type);

/* Create a registry in a new named segment (EEXIST if the name is taken).
 * opts.size is raised to fit the directory (and 64 KiB more) if smaller. */
SHMP_API shmp_registry_t *shmp_registry_create(const char *name, const struct shmp_registry_opts *opts);
/* Attach to an existing registry: ENOENT, EACCES, SHMP_EOWNER (another
 * owner, or writable by others, and not trusted by opts), SHMP_ECORRUPT,
 * SHMP_EVERSION, ENODATA (a shmp segment without a directory). A read-only
 * attach trusts anyone: it writes nothing and acts on nothing it reads. */
SHMP_API shmp_registry_t *shmp_registry_attach(const char *name, const struct shmp_registry_opts *opts);
/* Attach, or create if there is none: what several peer processes call.
 * A name that exists but fails attach's owner check is SHMP_EOWNER: a name
 * squatted by another user is never adopted. */
SHMP_API shmp_registry_t *shmp_registry_open(const char *name, const struct shmp_registry_opts *opts);
/* The directory of an existing segment, created in it if it has none (a
 * Pool in a named segment registers itself this way). The handle does not
 * own seg: detach it before seg. */
SHMP_API shmp_registry_t *shmp_registry_of(shmp_segment_t *seg);
/* Unmap (objects stay). Accepts NULL. */
SHMP_API void shmp_registry_detach(shmp_registry_t *r);
/* Unmap, and unlink the segment if this handle created it. Accepts NULL. */
SHMP_API void shmp_registry_destroy(shmp_registry_t *r);
SHMP_API shmp_segment_t *shmp_registry_segment(const shmp_registry_t *r);

/* Create-or-get (see above). Values and Arrays are synchronized (own RLock). */
SHMP_API shmp_value_t *shmp_registry_value(shmp_registry_t *r, const char *name, char typecode,
					   const void *init, unsigned flags);
/* length and init are used at creation only; typecode 0 accepts any on get. */
SHMP_API shmp_array_t *shmp_registry_array(shmp_registry_t *r, const char *name, char typecode,
					   size_t length, const void *init, unsigned flags);
SHMP_API shmp_lock_t *shmp_registry_lock(shmp_registry_t *r, const char *name, unsigned flags);
SHMP_API shmp_lock_t *shmp_registry_rlock(shmp_registry_t *r, const char *name, unsigned flags);
SHMP_API shmp_sem_t *shmp_registry_sem(shmp_registry_t *r, const char *name, unsigned value,
					     unsigned flags);
SHMP_API shmp_sem_t *shmp_registry_bounded_sem(shmp_registry_t *r, const char *name,
						     unsigned value, unsigned flags);
SHMP_API shmp_cond_t *shmp_registry_cond(shmp_registry_t *r, const char *name, unsigned flags);
SHMP_API shmp_event_t *shmp_registry_event(shmp_registry_t *r, const char *name, unsigned flags);
SHMP_API shmp_barrier_t *shmp_registry_barrier(shmp_registry_t *r, const char *name, unsigned parties,
					       unsigned flags);
/* maxsize 0 means 65536 messages. */
SHMP_API shmp_queue_t *shmp_registry_queue(shmp_registry_t *r, const char *name, unsigned maxsize,
					   unsigned flags);
SHMP_API shmp_queue_t *shmp_registry_joinable_queue(shmp_registry_t *r, const char *name,
						    unsigned maxsize, unsigned flags);
struct shmp_dict_opts;
SHMP_API shmp_dict_t *shmp_registry_dict(shmp_registry_t *r, const char *name,
					 const struct shmp_dict_opts *opts, unsigned flags);

/* Take a name out of the directory (see Lifetime). 0, -ENOENT, -EINVAL,
 * -EROFS, -SHMP_ELOCKED. */
SHMP_API int shmp_registry_remove(shmp_registry_t *r, const char *name);
/* Number of named objects. */
SHMP_API int shmp_registry_count(shmp_registry_t *r);

/*
 * Namespace: named numeric Values as attributes, like a Manager's
 * Namespace (ns.x = 3). set creates the attribute as a 'q' (i64) or 'd'
 * (f64) Value if missing; get is -ENOENT for a missing attribute (Python's
 * AttributeError) and converts between integer and floating types as the
 * Value functions do. get works on a read-only attach too.
 */
SHMP_API int shmp_namespace_set_i64(shmp_registry_t *r, const char *attr, int64_t x);
SHMP_API int shmp_namespace_get_i64(shmp_registry_t *r, const char *attr, int64_t *out);
SHMP_API int shmp_namespace_set_f64(shmp_registry_t *r, const char *attr, double x);
SHMP_API int shmp_namespace_get_f64(shmp_registry_t *r, const char *attr, double *out);

/*
 * Inspection, for tools: reads shared memory and writes nothing, takes no
 * lock and never waits, so it never disturbs a running program (values read while another
 * process writes may be torn; they are a snapshot for people).
 */
struct shmp_object_info {
	char name[SHMP_REGISTRY_NAME_MAX + 1];
	int type;               /* SHMP_TYPE_* */
	uint64_t offset;        /* of the object's shared state in the segment */
	pid_t creator_pid;
	uint32_t handles;       /* open through the registry (dead holders included) */
	int valid;              /* 1 if the object passed validation; else only the above
				 * and error are set */
	/* Value, Array */
	char typecode;
	uint64_t length;
	uint32_t preview_bytes; /* the first items' raw bytes, in preview */
	unsigned char preview[64];
	/* Lock, RLock, and the lock of a Value, Array or Condition */
	int locked;
	pid_t owner_pid, owner_tid; /* 0 if unknown */
	int owner_dead;         /* 1 if the holder no longer exists */
	uint32_t lock_depth;    /* RLock recursion depth */
	/* Semaphore: value, and max for a bounded one */
	int value;
	unsigned max;
	/* Event */
	int is_set;
	/* waiters: sleepers of a Condition, Event or Semaphore, and parties
	 * arrived at a Barrier (which also has parties and broken) */
	unsigned waiters;
	unsigned parties;
	int broken;
	/* Queue, JoinableQueue: depth (messages now), capacity, closed,
	 * unfinished tasks. Dict: depth = keys, capacity = key capacity. */
	uint64_t depth;
	uint64_t capacity;
	int closed;
	uint64_t unfinished;
	/* Pool: workers, depth = tasks queued, capacity = task records, state
	 * (SHMP_POOL_*). Pipeline: stages, workers, depth = messages in its
	 * rings, state (SHMP_PIPELINE_*). */
	uint32_t workers;
	uint32_t stages;
	int state;
	int error;              /* why not valid: -SHMP_ECORRUPT, or -SHMP_EVERSION (made by
				 * a library with another layout of its type); else 0 */
	uint64_t reserved[6];   /* zero, for later versions */
};
/* Fill info for directory slot `index`: 1 if the slot holds an object, 0
 * if it is free, -ERANGE past the last slot. */
SHMP_API int shmp_registry_info(shmp_registry_t *r, unsigned index, struct shmp_object_info *info);
/* The same for a name: 0 or -ENOENT. */
SHMP_API int shmp_registry_lookup(shmp_registry_t *r, const char *name, struct shmp_object_info *info);


/* ---- Dict ---------------------------------------------------------------
 * String keys, byte-string values, in shared memory, for any number of
 * processes at once. Readers take no lock (a seqlock per stripe of buckets);
 * writers lock one stripe, so writers of different keys rarely meet. A
 * writer killed at any instruction leaves every key with its old or new
 * value, never a torn one (updates are written aside and published with one
 * store), and never wedges the others (robust stripe locks).
 *
 * Writers wait for a stripe lock at most 2 s, then give up with
 * SHMP_ELOCKED (a lock word that names a thread that never lets go: a
 * stopped or hostile process). Readers never wait.
 *
 * Capacity is fixed at creation (opts.capacity keys, default 4096): a set of
 * a new key beyond it is -ENOSPC (room a killed writer held is found again
 * before that is said). Keys are 1..key_max bytes (default 63,
 * NUL-terminated strings); values up to opts.max_value bytes (default 1 MiB).
 * Values up to value_inline bytes (default 48) live in the entry itself;
 * bigger ones in a block of the segment.
 */
struct shmp_dict_opts {
	size_t sz;
	shmp_segment_t *segment;  /* shmp_dict_create only; NULL: the default segment */
	unsigned capacity;        /* keys; 0 means 4096, at most 1 << 24 */
	unsigned key_max;         /* 0 means 63, at most 1024 */
	unsigned value_inline;    /* 0 means 48, at most 4096 */
	size_t max_value;         /* 0 means 1 MiB */
};
SHMP_API shmp_dict_t *shmp_dict_create(const struct shmp_dict_opts *opts);
/* A Dict from shmp_dict_create: frees it for every process (call once, when
 * nobody uses it any more). A handle from the registry: releases the handle
 * only. Accepts NULL. */
SHMP_API void shmp_dict_destroy(shmp_dict_t *d);

/* Insert or replace. -EINVAL (NULL, empty key), -ENAMETOOLONG (key longer
 * than key_max), -EMSGSIZE (value over max_value), -ENOSPC (full), -ENOMEM
 * (segment full). */
SHMP_API int shmp_dict_set(shmp_dict_t *d, const char *key, const void *val, size_t len);
/* Copy the value into buf. 0, -ENOENT, or -EMSGSIZE if cap is too small
 * (nothing copied). *len (may be NULL) gets the value's length on success
 * and on -EMSGSIZE. */
SHMP_API int shmp_dict_get(shmp_dict_t *d, const char *key, void *buf, size_t cap, size_t *len);
/* 0 or -ENOENT. */
SHMP_API int shmp_dict_delete(shmp_dict_t *d, const char *key);
/* Get and delete in one step (Python's pop). As get, plus the key is gone. */
SHMP_API int shmp_dict_pop(shmp_dict_t *d, const char *key, void *buf, size_t cap, size_t *len);
/* 1 if present, 0 if not, or -errno. */
SHMP_API int shmp_dict_contains(shmp_dict_t *d, const char *key);
/* Number of keys, or -errno. */
SHMP_API long shmp_dict_len(shmp_dict_t *d);
SHMP_API long shmp_dict_capacity(shmp_dict_t *d);
/* Remove every key. Not atomic as a whole: a concurrent set may survive. */
SHMP_API int shmp_dict_clear(shmp_dict_t *d);
/* Get-or-insert (Python's setdefault): if key is missing, insert val and
 * return 1; if present, return 0. Either way the value now stored is copied
 * to buf (NULL: not copied) as shmp_dict_get does; if buf is too small the
 * result is -EMSGSIZE, and a missing key has been inserted all the same. */
SHMP_API int shmp_dict_setdefault(shmp_dict_t *d, const char *key, const void *val, size_t len,
				  void *buf, size_t cap, size_t *out_len);
/* Compare-and-set: replace the value with desired only if it is byte-equal to
 * expected. 1 if replaced, 0 if the value differs, -ENOENT if missing. */
SHMP_API int shmp_dict_cas(shmp_dict_t *d, const char *key, const void *expected, size_t elen,
			   const void *desired, size_t dlen);
/* Atomic 64-bit add on a value that is an int64_t (8 bytes; a missing key
 * counts as 0 and is created). The new value goes to *out (may be NULL).
 * -EINVAL if the stored value is not 8 bytes. */
SHMP_API int shmp_dict_add_i64(shmp_dict_t *d, const char *key, int64_t delta, int64_t *out);
/* Iterate: start with *cursor = 0; each call returns 1 with the next key
 * (into key, keycap bytes with its NUL) and value (into val; NULL skips it),
 * or 0 at the end. -EMSGSIZE if key or value does not fit: repeating the
 * call with bigger buffers gets the same key. Keys neither set nor
 * deleted during the iteration are visited exactly once; keys changed
 * meanwhile may be visited once, twice or not at all. */
SHMP_API int shmp_dict_next(shmp_dict_t *d, uint64_t *cursor, char *key, size_t keycap,
			    void *val, size_t valcap, size_t *vlen);

#ifdef __cplusplus
}
#endif
#endif
