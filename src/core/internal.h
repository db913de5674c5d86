/* private: shared helpers for every layer — atomics, futexes, thread ids,
 * deadlines, and the shared-memory layouts. Never installed. */
#ifndef SHMP_INTERNAL_H
#define SHMP_INTERNAL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "shmp.h"

#define SHMP__CACHELINE 64
#define SHMP__ALIGNED _Alignas(SHMP__CACHELINE)
#define shmp__likely(x) __builtin_expect(!!(x), 1)
#define shmp__unlikely(x) __builtin_expect(!!(x), 0)

static inline void shmp__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ volatile("yield" ::: "memory");
#endif
}

/* The full barrier of every Dekker pair (publish, then look whether the other
 * side sleeps). On x86 a locked add to the stack does it at a fraction of
 * mfence's cost (what the Linux kernel's smp_mb() does); ThreadSanitizer
 * models only the C11 fence, so its builds keep that. */
static inline void shmp__full_fence(void)
{
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
	__asm__ volatile("lock; addl $0,-4(%%rsp)" ::: "memory", "cc");
#else
	atomic_thread_fence(memory_order_seq_cst);
#endif
}

/* ---- thread identity (cached; reset in a fork child) ------------------ */
struct shmp__self {
	pid_t tid;
	pid_t pid;
};
/* initial-exec: a plain %fs-relative load on the lock fast path, no
 * __tls_get_addr call. */
extern __thread struct shmp__self shmp__self_tls __attribute__((tls_model("initial-exec")));
void shmp__self_init(void);
static inline pid_t shmp__tid(void)
{
	if (shmp__unlikely(shmp__self_tls.tid == 0))
		shmp__self_init();
	return shmp__self_tls.tid;
}
static inline pid_t shmp__pid(void)
{
	if (shmp__unlikely(shmp__self_tls.tid == 0))
		shmp__self_init();
	return shmp__self_tls.pid;
}
/* 1 if the thread/process id no longer exists or is a zombie. */
bool shmp__tid_dead(pid_t tid);

/* When a sleeper should next look for a dead peer: an absolute time, so
 * signals that cut sleeps short do not postpone the check forever. The
 * interval doubles from first_ns up to max_ns. */
struct shmp__checker {
	uint64_t next;
	long slice, max;
};
void shmp__checker_init(struct shmp__checker *c, long first_ns, long max_ns);
/* True (and the next check scheduled) once the check time has come. */
bool shmp__checker_due(struct shmp__checker *c);

/* Bounded spin before sleeping: SHMP_SPIN in the environment, default 200
 * pause instructions (a few microseconds) for Event, Condition, Semaphore
 * and Barrier, where it turns a futex round trip into a cache-line one.
 * Locks use SHMP_LOCK_SPIN, default 0: measured on 2 cores, any spin makes a
 * contended lock hand over more often and lowers its throughput. */
extern unsigned shmp__spin_limit;
extern unsigned shmp__lock_spin_limit;

/* ---- adaptive spin of Event, Condition and Semaphore waits -------------
 * A waiter spins only while spinning pays. Spinning wins when the peer
 * runs on another CPU and answers within the spin: then neither side
 * makes a system call (the setter sees no sleeper) and a round trip costs
 * a cache line instead of two futex wake-ups. It pays only if it outlasts
 * a futex wake-up of the peer (a sleeping peer must be woken, run, and
 * answer), and both sides then stay in the spinning regime; a short spin
 * (the old 200 pauses, 2 us here) is the worst of both: it always misses
 * and delays a peer woken onto our CPU. So the spin is long (SHMP_SPIN
 * pauses; by default as many as take about 20 us, measured at start),
 * and each handle measures from its recent waits whether it pays: after
 * 4 waits in a row that the spin did not satisfy it stops spinning, and
 * then one wait in 16 probes with a full spin; a satisfied one resumes.
 * Never when this process can use one CPU only: the peer would need ours.
 * Private to the handle (threads sharing one race benignly on it). */
extern unsigned shmp__wait_spin_max;
/* Set when a futex wake of this thread woke someone: that peer now needs
 * a CPU, and the scheduler often gives it ours (a synchronous wake-up).
 * The next wait then spins only to probe. */
extern __thread bool shmp__woke_tls __attribute__((tls_model("initial-exec")));
struct shmp__spin {
	_Atomic uint32_t fails;   /* waits in a row the spin did not satisfy */
	_Atomic uint32_t skipped; /* waits that did not spin, since the last probe */
	_Atomic uint32_t every;   /* probe once in this many waits */
};
#define SHMP__SPIN_FAILS 4u
#define SHMP__SPIN_PROBE_MIN 16u
#define SHMP__SPIN_PROBE_MAX 256u
static inline unsigned shmp__spin_begin(struct shmp__spin *s)
{
	bool woke = shmp__woke_tls;
	shmp__woke_tls = false;
	if (shmp__likely(!woke && atomic_load_explicit(&s->fails, memory_order_relaxed) < SHMP__SPIN_FAILS))
		return shmp__wait_spin_max;
	unsigned k = atomic_load_explicit(&s->skipped, memory_order_relaxed) + 1;
	bool probe = k >= atomic_load_explicit(&s->every, memory_order_relaxed);
	atomic_store_explicit(&s->skipped, probe ? 0 : k, memory_order_relaxed);
	return probe ? shmp__wait_spin_max : 0;
}
/* The wait ended: won (the spin saw it) or not, after a spin of `used`.
 * A probe that failed probes half as often next time. */
static inline void shmp__spin_end(struct shmp__spin *s, unsigned used, bool won)
{
	if (!used)
		return;
	uint32_t f = atomic_load_explicit(&s->fails, memory_order_relaxed);
	uint32_t every = atomic_load_explicit(&s->every, memory_order_relaxed);
	if (won) {
		atomic_store_explicit(&s->fails, 0, memory_order_relaxed);
		atomic_store_explicit(&s->every, SHMP__SPIN_PROBE_MIN, memory_order_relaxed);
	} else if (f < SHMP__SPIN_FAILS) {
		atomic_store_explicit(&s->fails, f + 1, memory_order_relaxed);
	} else if (every < SHMP__SPIN_PROBE_MAX) {
		atomic_store_explicit(&s->every, every * 2, memory_order_relaxed);
	}
}
static inline void shmp__spin_init(struct shmp__spin *s)
{
	atomic_store_explicit(&s->fails, 0, memory_order_relaxed);
	atomic_store_explicit(&s->skipped, 0, memory_order_relaxed);
	atomic_store_explicit(&s->every, SHMP__SPIN_PROBE_MIN, memory_order_relaxed);
}

/* Deferred futex wakes (condition.c -> lock.c): a notify made under lock l
 * wakes its sleeping waiters when l is released, not while it is still
 * held (a waiter woken then would only find the lock taken and sleep
 * again on it: a second futex pair per hand-off). False if this thread's
 * list is full: wake at once then. Issued by this thread's next release
 * that frees a lock (any lock: see lock.c), its end, exit(), or a lock's
 * destroy. */
struct shmp__lock_sh;
bool shmp__lock_defer_wake(struct shmp__lock_sh *l, _Atomic uint32_t *futex_word);

#include "opts.h"

/* ---- interrupts -------------------------------------------------------- */
/* shmp_set_interruptible(): waits give up with -EINTR once a signal handler
 * ran. Every wait loop asks shmp__interrupted(r) about a wait's result. */
extern _Atomic int shmp__intr_on;
static inline bool shmp__interrupted(int r)
{
	return r == -EINTR && atomic_load_explicit(&shmp__intr_on, memory_order_relaxed);
}

/* ---- deadlines -------------------------------------------------------- */
struct shmp__deadline {
	int kind; /* 0 forever, 1 at `at`, 2 already expired (poll) */
	struct timespec at; /* CLOCK_MONOTONIC */
};
/* A deadline `timeout` seconds from now (common.h's meanings). -EINVAL for
 * NaN, which has none. */
__attribute__((warn_unused_result)) int shmp__deadline_init(struct shmp__deadline *d, double timeout);
static inline void shmp__deadline_forever(struct shmp__deadline *d)
{
	d->kind = 0;
}
bool shmp__deadline_passed(const struct shmp__deadline *d);
/* Seconds left, as a timeout argument: SHMP_FOREVER, 0 once passed. */
double shmp__deadline_left(const struct shmp__deadline *d);
/* Sooner of the deadline and now + slice_ns, as an absolute time. */
struct timespec shmp__deadline_cap(const struct shmp__deadline *d, long slice_ns);
uint64_t shmp__now_ns(void);
/* Sooner of the deadline and the checker's next check. */
struct timespec shmp__checker_until(const struct shmp__checker *c, const struct shmp__deadline *d);

/* ---- futexes (shared: no FUTEX_PRIVATE_FLAG) ------------------------- */
/* Sleep while *w == val, until the absolute CLOCK_MONOTONIC time `abs` (NULL:
 * forever). 0 on wake, -EAGAIN if *w != val, -ETIMEDOUT, -EINTR. */
static inline int shmp__futex_wait(_Atomic uint32_t *w, uint32_t val, const struct timespec *abs)
{
	long r = syscall(SYS_futex, w, FUTEX_WAIT_BITSET, val, abs, NULL, FUTEX_BITSET_MATCH_ANY);
	return r == 0 ? 0 : -errno;
}
static inline int shmp__futex_wake(_Atomic uint32_t *w, int n)
{
	long r = syscall(SYS_futex, w, FUTEX_WAKE, n, NULL, NULL, 0);
	if (r > 0)
		shmp__woke_tls = true; /* see shmp__spin_begin */
	return r < 0 ? -errno : (int)r;
}

/* ---- lock core (shared by Lock, RLock and every internal lock) -------- */
#define SHMP__TID_MASK 0x3fffffffu
#define SHMP__WAITERS 0x80000000u
#define SHMP__NOTREC SHMP__TID_MASK /* word value of a not-recoverable lock */

enum { SHMP__KIND_LOCK = 1, SHMP__KIND_RLOCK = 2 };

/* Shared; pinned in lock.c (magic and version first, as every object's:
 * see object.h). Embedded in other objects' state, whose own version
 * covers it there. */
struct shmp__lock_sh {
	uint32_t magic;          /* SHMP__LOCK_MAGIC */
	uint32_t version;        /* SHMP__LOCK_VERSION */
	_Atomic uint32_t word;   /* owner tid | OWNER_DIED | WAITERS; 0 free */
	/* Depth held by the owner (1 for a Lock), touched only by the owner;
	 * SHMP__INCONSISTENT is or-ed in after -EOWNERDEAD until repaired. One
	 * field, so release tests both with a single compare against 1. */
	uint32_t count;
	uint32_t kind;           /* SHMP__KIND_* */
	int32_t owner_pid;       /* the owner's process, stored at acquire: display only */
	uint32_t reserved[2];    /* zero, for later versions */
};
#define SHMP__INCONSISTENT 0x80000000u
#define SHMP__LOCK_MAGIC 0x4c4f434bu /* "LOCK" */
#define SHMP__LOCK_VERSION 1u

void shmp__lock_init(struct shmp__lock_sh *l, uint32_t kind);
/* The Lock or RLock (kind; 0: either) whose state is at off in seg, checked
 * (object.h): NULL with *err = -SHMP_ECORRUPT or -SHMP_EVERSION. For the
 * locks Values and Conditions name by offset. */
struct shmp__lock_sh *shmp__lock_at(const shmp_segment_t *seg, uint64_t off, uint32_t kind, int *err);
/* Is the lock embedded in another object's state one (magic and kind)? */
static inline bool shmp__lock_sound(const struct shmp__lock_sh *l)
{
	return l->magic == SHMP__LOCK_MAGIC && l->version == SHMP__LOCK_VERSION &&
	       (l->kind == SHMP__KIND_LOCK || l->kind == SHMP__KIND_RLOCK);
}

/* Acquire for internal use (allocator, directory, Dict stripes, barrier
 * state...): owner death is absorbed (the caller's state is written to
 * survive it). Such locks guard a few stores, so a wait is bounded by
 * SHMP__LOCK_BOUND_NS: a lock word that names a thread that never lets go
 * (stopped, or forged by whoever can write the segment) gives
 * -SHMP_ELOCKED instead of a hang. 0, -SHMP_ELOCKED or -ENOTRECOVERABLE. */
#define SHMP__LOCK_BOUND_NS 2000000000L
int shmp__lock_acquire_internal(struct shmp__lock_sh *l);
/* The same bound, for state a dead holder may have left half-done: 0;
 * -EOWNERDEAD (taken and consistent again: the caller repairs or discards);
 * -SHMP_ELOCKED; -ENOTRECOVERABLE. */
int shmp__lock_acquire_bounded(struct shmp__lock_sh *l);
/* A user-level wait for the lock (Value/Array): -EINTR under
 * shmp_set_interruptible(1), else as shmp_lock_acquire(). */
int shmp__lock_acquire_sh(struct shmp__lock_sh *l, double timeout);
int shmp__lock_release_sh(struct shmp__lock_sh *l);
/* For Condition.wait: drop every level / take them back. */
int shmp__lock_release_all(struct shmp__lock_sh *l, uint32_t *saved);
int shmp__lock_reacquire(struct shmp__lock_sh *l, uint32_t saved, const struct shmp__deadline *d);
/* The owner repairs (absorbs) an owner-died state. */
static inline void shmp__lock_mark_consistent(struct shmp__lock_sh *l)
{
	l->count &= ~SHMP__INCONSISTENT;
}
static inline bool shmp__lock_owned(const struct shmp__lock_sh *l)
{
	uint32_t w = atomic_load_explicit(&l->word, memory_order_relaxed);
	return (w & SHMP__TID_MASK) == (uint32_t)shmp__tid();
}

/* ---- segment internals ------------------------------------------------ */
#define SHMP__SEG_MAGIC "SHMPSEG\0"
#define SHMP__LAYOUT_VERSION 1u
#define SHMP__NCLASSES 192

struct shmp__seg_hdr {
	char magic[8];
	uint32_t layout_version;
	uint32_t header_size;
	uint64_t size;
	int32_t creator_pid;
	uint32_t flags;
	_Atomic uint32_t attach_count;
	uint32_t reserved0;
	uint64_t registry_root; /* offset of the registry directory, 0 if none */
	uint64_t reserved[8];
	/* allocator: guarded by alloc_lock */
	SHMP__ALIGNED struct shmp__lock_sh alloc_lock;
	uint64_t heap_start, heap_top, heap_end;
	uint64_t used_bytes, live_blocks;
	uint64_t free_head[SHMP__NCLASSES];
};

struct shmp_segment {
	struct shmp__seg_hdr *hdr;
	char *base;
	size_t size;
	bool owner;   /* this handle created it (destroy unlinks) */
	pid_t pid;    /* process that made the handle; a forked copy only unmaps */
	bool is_default;
	bool readonly; /* mapped PROT_READ for inspection: no allocation, no attach counted */
	char *name;   /* NULL if anonymous */
};

/* Attach. readonly maps PROT_READ and counts no attach, and trusts anyone
 * (inspection writes nothing and acts on nothing it reads); otherwise the
 * file's owner and mode are checked against opts' trust (NULL: only the
 * caller's own, private segments). */
shmp_segment_t *shmp__segment_attach(const char *name, bool readonly, const struct shmp_segment_opts *opts);
/* The owner check of an attach: 0 or -SHMP_EOWNER. */
int shmp__segment_trusted(const struct stat *st, const struct shmp_segment_opts *o);
/* Segment to use for an object: opts' or the default. NULL + errno. */
shmp_segment_t *shmp__segment_or_default(shmp_segment_t *seg);
/* shmp_segment_alloc, with the zeroing of reused memory optional (for
 * blocks the caller overwrites whole). */
int shmp__segment_alloc(shmp_segment_t *seg, size_t size, size_t align, uint64_t *off, bool zero);
/* Allocate and return the address; NULL + errno. */
void *shmp__alloc_ptr(shmp_segment_t *seg, size_t size, size_t align, uint64_t *off);
/* Free by address (ignores NULL). */
void shmp__free_ptr(shmp_segment_t *seg, void *p);
/* Does the segment contain [p, p+len)? */
static inline bool shmp__seg_contains(const shmp_segment_t *seg, const void *p, size_t len)
{
	uintptr_t a = (uintptr_t)p, b = (uintptr_t)seg->base;
	return a >= b && len <= seg->size && a - b <= seg->size - len;
}
/* This process's segment mappings (see segment.c): the serial of the
 * newest; the mapping (serial <= max_serial) holding [p, p+len); the address
 * of (serial, off) here, NULL if unmapped or out of bounds. */
uint64_t shmp__maps_serial(void);
bool shmp__maps_find(const void *p, size_t len, uint64_t max_serial, uint64_t *serial, uint64_t *off);
void *shmp__maps_resolve(uint64_t serial, uint64_t off, size_t len);
int shmp__header_validate(const struct shmp__seg_hdr *h, uint64_t file_size);

/* ---- handles and the one lifetime rule ---------------------------------
 * Every object handle starts with these four fields (each type checks with
 * a static assert), so the registry can reach any handle's segment and
 * shared state, and every destroy applies the same rule:
 *
 *   destroying a handle releases this process's handle; the shared object
 *   is freed by the destroy of the handle its create returned, in the
 *   process that created it, or (registry objects) by the last handle after
 *   shmp_registry_remove() — never by a forked child's destroy of a handle
 *   it inherited.
 *
 * ref is NULL for a handle from a create, which owns its object; a handle
 * the registry lent points it at the object's reference word, a small block
 * of its own (not in the directory entry, so that a removed name's entry is
 * free at once even while handles remain). pid is the process that made the
 * handle: a copy inherited through fork neither frees the object nor drops
 * the reference its maker holds.
 *
 * SHMP__HEAD(T) declares the four fields, T being the type's shared state;
 * each handle struct starts with it. */
#define SHMP__HEAD(sh_type)    \
	shmp_segment_t *seg;   \
	sh_type *sh;           \
	_Atomic uint32_t *ref; \
	pid_t pid
struct shmp__head {
	SHMP__HEAD(void);
};
#define SHMP__HEAD_CHECK(type) \
	_Static_assert(offsetof(type, seg) == offsetof(struct shmp__head, seg) && \
		       offsetof(type, sh) == offsetof(struct shmp__head, sh) && \
		       offsetof(type, ref) == offsetof(struct shmp__head, ref) && \
		       offsetof(type, pid) == offsetof(struct shmp__head, pid), #type " head")
/* The entry was removed from the directory: its object goes with the last
 * reference. */
#define SHMP__REF_REMOVED 0x80000000u
/* Fill a new handle's head (pid = this process). */
static inline void shmp__head_init(void *handle, shmp_segment_t *seg, void *sh, _Atomic uint32_t *ref)
{
	struct shmp__head *h = handle;
	h->seg = seg;
	h->sh = sh;
	h->ref = ref;
	h->pid = getpid();
}
/* Release a handle by the rule above. True if the caller must now free the
 * shared object: the creating handle in its creating process, or the last
 * reference to a removed registry object (whose reference block this
 * frees; exactly one dropper, or the remover, sees the last one). */
bool shmp__handle_release(void *handle);

/* Lock handle, shared with Value/Condition which embed or borrow one. */
struct shmp_lock {
	SHMP__HEAD(struct shmp__lock_sh);
	bool owns_memory; /* destroy frees sh */
};

/* A handle on the Lock or RLock (kind; 0: either) at off in seg, checked
 * first (object.h): NULL + errno SHMP_ECORRUPT or SHMP_EVERSION. It holds
 * ref (may be NULL). Never writes to shared memory. */
shmp_lock_t *shmp__lock_open(shmp_segment_t *seg, uint64_t off, uint32_t kind, _Atomic uint32_t *ref);
/* A handle on the ring at off (not lent by the registry: no reference),
 * checked as above. */
shmp_ring_t *shmp__ring_open(shmp_segment_t *seg, uint64_t off);
uint64_t shmp__ring_offset(const shmp_ring_t *r);
/* Free at once the slots a dead thread held (claimed, never finished),
 * counting them lost; the number freed. */
int shmp__ring_recover_tid(shmp_ring_t *r, pid_t tid);
/* The ring's slot array, which io_uring may register. */
void shmp__ring_slots(const shmp_ring_t *r, void **base, size_t *len);

/* The shared block at off, if [off, off+len) is inside seg and off is a
 * multiple of align (that of the struct read there: a misaligned one is
 * corruption, and undefined to read). */
static inline void *shmp__sh_at(const shmp_segment_t *seg, uint64_t off, size_t len, size_t align)
{
	if (off == 0 || off % align || off >= seg->size || len > seg->size - off)
		return NULL;
	return seg->base + off;
}

#endif
