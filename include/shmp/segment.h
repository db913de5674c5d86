/* shmp — shared-memory segments and the offset allocator inside them. */
#ifndef SHMP_SEGMENT_H
#define SHMP_SEGMENT_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A segment is one shared mapping with a validated header and an allocator.
 * Everything inside is addressed by offset from the segment's base, because
 * each process maps it at its own address.
 *
 * Anonymous segments (name == NULL) are inherited by children forked after
 * their creation and vanish with the last process mapping them: they cannot
 * leak. Named segments live in /dev/shm as "shmp.<name>" so that unrelated
 * processes can attach; they are created 0600 (opts->mode to widen) with
 * O_EXCL and never through a symlink.
 *
 * Lifetime of a named segment: it exists until unlinked. shmp_segment_destroy()
 * by the creating handle, in the creating process, unmaps and unlinks it;
 * shmp_segment_detach() only unmaps. A handle a child inherited through fork
 * only unmaps on detach or destroy (and does not count as an attach). Processes that still map an unlinked segment keep using it safely
 * (the memory lives until the last unmap); new attaches fail with -ENOENT.
 * With SHMP_SEGMENT_UNLINK_ON_LAST_DETACH the last detach (attach count 0)
 * unlinks it. A creator killed before unlinking leaves a stale segment, which
 * `shmp gc` (or shmp_segment_unlink()) removes.
 */
typedef struct shmp_segment shmp_segment_t;

enum {
	SHMP_SEGMENT_UNLINK_ON_LAST_DETACH = 1u << 0,
	/* Kept on purpose for later readers: `shmp ls` never calls it stale
	 * and `shmp gc` never removes it (shmp rm, or unlink, does). */
	SHMP_SEGMENT_PERSISTENT = 1u << 1,
};

/*
 * Whom an attach trusts. Whoever can write a segment can make calls on it
 * fail or return garbage (see README "Security"), so by default attach
 * (and the registry's attach and open) accept only a segment whose file is
 * owned by the caller's effective uid and is not writable by group or
 * others; anything else is refused with SHMP_EOWNER. Deliberate sharing
 * across users is an explicit opt-in, with that risk:
 *   SHMP_TRUST_UID     also accept segments owned by trust_uid
 *   SHMP_TRUST_GID     also accept group-writable segments whose group is
 *                      trust_gid (create with mode 0660 to share with it)
 *   SHMP_TRUST_ANYONE  accept any owner and any mode
 * A segment writable by others (o+w) is refused unless SHMP_TRUST_ANYONE.
 */
enum {
	SHMP_TRUST_UID = 1u << 0,
	SHMP_TRUST_GID = 1u << 1,
	SHMP_TRUST_ANYONE = 1u << 2,
};

struct shmp_segment_opts {
	size_t sz;       /* sizeof(struct shmp_segment_opts) */
	unsigned mode;   /* create: permission bits for a named segment; 0 means 0600 */
	unsigned flags;  /* create: SHMP_SEGMENT_* */
	unsigned trust;  /* attach: SHMP_TRUST_* (0: only the caller's own, private segments) */
	uid_t trust_uid; /* with SHMP_TRUST_UID */
	gid_t trust_gid; /* with SHMP_TRUST_GID */
};

#define SHMP_SEGMENT_NAME_MAX 200 /* bytes, without the "shmp." prefix */
#define SHMP_SEGMENT_MIN_SIZE 65536

/* public */
/* Create a segment of `size` bytes (rounded up to pages; at least
 * SHMP_SEGMENT_MIN_SIZE; 0 is EINVAL, as Python refuses a size-0
 * SharedMemory). name == NULL makes an anonymous one. NULL on error with
 * errno: EINVAL (bad name, size 0, bad opts), ENAMETOOLONG, EEXIST (name
 * taken), ENOMEM, or what shm_open/ftruncate/mmap said. */
SHMP_API shmp_segment_t *shmp_segment_create(const char *name, size_t size,
					     const struct shmp_segment_opts *opts);
/* Attach to an existing named segment (opts: whom to trust, NULL: only
 * yourself). NULL with errno ENOENT, EACCES, EINVAL (bad name or opts),
 * SHMP_EOWNER (another owner, or writable by others: see trust above), and
 * for a bad header SHMP_ECORRUPT or SHMP_EVERSION. */
SHMP_API shmp_segment_t *shmp_segment_attach(const char *name, const struct shmp_segment_opts *opts);
/* Unmap; the segment stays for others. Accepts NULL. */
SHMP_API void shmp_segment_detach(shmp_segment_t *seg);
/* Unmap, and unlink a named segment if this handle created it. Accepts NULL. */
SHMP_API void shmp_segment_destroy(shmp_segment_t *seg);
/* Remove a named segment by name (its mappings stay valid). 0 or -errno. */
SHMP_API int shmp_segment_unlink(const char *name);
/* 0 if `name` is a valid segment name, else -EINVAL or -ENAMETOOLONG. */
SHMP_API int shmp_segment_name_check(const char *name);

/* The process-wide default segment: anonymous, created on first use (by any
 * object created without a segment, by shmp_malloc, or by a Pool), shared
 * with children forked after that. Its size is SHMP_DEFAULT_SEGMENT_SIZE
 * bytes from the environment (suffixes K, M, G allowed), else 64 GiB of
 * address space reserved lazily: pages cost nothing until touched, so
 * Python-sized data (a 50 M-double Array, a 1 GiB byte Array) just fits. If
 * the system refuses that much address space (strict overcommit, an
 * RLIMIT_AS), the largest size it grants, halving down to 256 MiB. NULL
 * with errno on failure. */
SHMP_API shmp_segment_t *shmp_segment_default(void);

/*
 * The shared heap: malloc for memory that every process of the program
 * sees at the same address. Blocks live in the default segment, which is
 * mapped before any Pool forks its workers, so a struct holding pointers
 * into this heap is a valid task argument for a process Pool even when it
 * was built after the pool was created (memory from plain malloc is not:
 * workers see the program as it was when the pool was created). The same
 * holds for Process children forked after the allocation.
 *
 * As malloc: 16-byte alignment, size 0 gives a unique pointer, free(NULL)
 * and realloc(NULL, n) work. Safe from several threads and processes at
 * once, and under kill -9 (a process killed mid-call loses at most that
 * block). NULL with errno: SHMP_ESEGFULL when the default segment is full
 * (see SHMP_DEFAULT_SEGMENT_SIZE), ENOMEM (size overflow in calloc).
 * shmp_free of a pointer that is not a live block of this heap does
 * nothing (errno EINVAL): it never corrupts the heap.
 */
SHMP_API void *shmp_malloc(size_t size);
SHMP_API void *shmp_calloc(size_t n, size_t size);
SHMP_API void *shmp_realloc(void *p, size_t size);
SHMP_API void shmp_free(void *p);
SHMP_API char *shmp_strdup(const char *s);

SHMP_API void *shmp_segment_base(const shmp_segment_t *seg);
SHMP_API size_t shmp_segment_size(const shmp_segment_t *seg);
/* The name given at create/attach, or NULL for an anonymous segment. */
SHMP_API const char *shmp_segment_name(const shmp_segment_t *seg);

/* Allocate `size` bytes aligned to `align` (a power of two up to 4096; 0
 * means 16; 64 gives a cache line of its own). Stores the block's offset in
 * *off. The block's bytes are zero. Safe with other processes allocating at
 * once and with one of them killed mid-allocation (at worst that block is
 * lost). -SHMP_ESEGFULL when it does not fit (nothing is changed), -EINVAL,
 * -SHMP_ECORRUPT. */
SHMP_API int shmp_segment_alloc(shmp_segment_t *seg, size_t size, size_t align,
				uint64_t *off);
/* Free a block by the offset alloc gave. -EINVAL for an offset that is not a
 * live block (double free included). */
SHMP_API int shmp_segment_free(shmp_segment_t *seg, uint64_t off);
/* Offset -> address, NULL (errno EINVAL) if [off, off+len) is outside. */
SHMP_API void *shmp_segment_ptr(const shmp_segment_t *seg, uint64_t off, size_t len);
/* Address -> offset; -EINVAL if ptr is not inside the segment. */
SHMP_API int shmp_segment_offset(const shmp_segment_t *seg, const void *ptr, uint64_t *off);

struct shmp_segment_stats {
	uint64_t size;        /* bytes mapped */
	uint64_t heap_bytes;  /* bytes the allocator manages */
	uint64_t used_bytes;  /* bytes in live blocks (with their headers) */
	uint64_t live_blocks;
	pid_t creator_pid;
	uint32_t attach_count;
};
SHMP_API int shmp_segment_stats(shmp_segment_t *seg, struct shmp_segment_stats *st);

/* What a tool needs to know about a named segment without attaching
 * (what `shmp ls` prints): read-only, no attach counted; the owner, mode
 * and live users come from the file and /proc. 0 (info filled; valid says
 * whether the header passed, error why not), -ENOENT, -EINVAL or
 * -ENAMETOOLONG (bad name). */
struct shmp_segment_info {
	char name[SHMP_SEGMENT_NAME_MAX + 1];
	uint64_t size;
	int valid;              /* header passed validation (else error holds why) */
	int error;              /* 0, -SHMP_ECORRUPT, -SHMP_EVERSION, -EACCES... */
	pid_t creator_pid;
	int creator_alive;
	uint32_t attach_count;  /* attaches minus detaches (a killed process never detaches) */
	uint32_t users;         /* live processes mapping it now (from /proc; those we may read) */
	int objects;            /* named objects, -1 if there is no directory */
	int stale;              /* creator dead, no live process maps it, not persistent */
	uint64_t used_bytes;
	uid_t owner_uid;        /* the file's owner and group (also when unreadable) */
	gid_t owner_gid;
	unsigned mode;          /* its permission bits */
	int persistent;         /* created with SHMP_SEGMENT_PERSISTENT / SHMP_REGISTRY_PERSISTENT */
	int trusted;            /* attach without trust options would accept it (own uid,
				 * not writable by group or others) */
};
SHMP_API int shmp_segment_inspect(const char *name, struct shmp_segment_info *info);

#ifdef __cplusplus
}
#endif
#endif
