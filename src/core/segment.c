/* private: segment creation, attachment, header validation, default segment. */
#include "internal.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define NAME_PREFIX "/shmp."
#define DEFAULT_SIZE (64ull << 30)  /* address space; reserved lazily */
#define DEFAULT_MIN (256ull << 20) /* what a system refusing that much gets at least */

/* The header is read by every version that attaches: its layout is pinned
 * (a change means a new SHMP__LAYOUT_VERSION). The reserved words are zero
 * and free for later versions. */
_Static_assert(sizeof(struct shmp__seg_hdr) == 1792, "segment header size");
_Static_assert(offsetof(struct shmp__seg_hdr, layout_version) == 8, "layout_version");
_Static_assert(offsetof(struct shmp__seg_hdr, size) == 16, "size");
_Static_assert(offsetof(struct shmp__seg_hdr, attach_count) == 32, "attach_count");
_Static_assert(offsetof(struct shmp__seg_hdr, registry_root) == 40, "registry_root");
_Static_assert(offsetof(struct shmp__seg_hdr, alloc_lock) == 128, "alloc_lock");
_Static_assert(offsetof(struct shmp__seg_hdr, heap_start) == 160, "heap_start");
_Static_assert(offsetof(struct shmp__seg_hdr, free_head) == 200, "free_head");

static size_t page_size(void)
{
	long p = sysconf(_SC_PAGESIZE);
	return p > 0 ? (size_t)p : 4096;
}

static uint64_t heap_start_of(void)
{
	return (sizeof(struct shmp__seg_hdr) + SHMP__CACHELINE - 1) & ~(uint64_t)(SHMP__CACHELINE - 1);
}

int shmp_segment_name_check(const char *name)
{
	if (!name || !*name || name[0] == '.')
		return -EINVAL;
	size_t n = 0;
	for (const char *p = name; *p; p++, n++) {
		char c = *p;
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			  c == '_' || c == '-' || c == '.';
		if (!ok)
			return -EINVAL;
		if (n >= SHMP_SEGMENT_NAME_MAX)
			return -ENAMETOOLONG;
	}
	return 0;
}

static int shm_path(const char *name, char *out, size_t outlen)
{
	int r = shmp_segment_name_check(name);
	if (r < 0)
		return r;
	snprintf(out, outlen, NAME_PREFIX "%s", name);
	return 0;
}

int shmp__header_validate(const struct shmp__seg_hdr *h, uint64_t file_size)
{
	uint32_t header_size = __atomic_load_n(&h->header_size, __ATOMIC_ACQUIRE);
	if (memcmp(h->magic, SHMP__SEG_MAGIC, sizeof h->magic) != 0)
		return -SHMP_ECORRUPT;
	if (h->layout_version != SHMP__LAYOUT_VERSION)
		return -SHMP_EVERSION;
	if (header_size != sizeof *h || h->size != file_size)
		return -SHMP_ECORRUPT;
	uint64_t hs = heap_start_of();
	if (h->heap_start != hs || h->heap_end != h->size || h->heap_top < hs ||
	    h->heap_top > h->heap_end || h->heap_top % SHMP__CACHELINE != 0)
		return -SHMP_ECORRUPT;
	if (h->alloc_lock.magic != SHMP__LOCK_MAGIC || h->alloc_lock.kind != SHMP__KIND_LOCK)
		return -SHMP_ECORRUPT;
	if (h->registry_root >= h->size)
		return -SHMP_ECORRUPT;
	return 0;
}

static void header_init(struct shmp__seg_hdr *h, uint64_t size, unsigned flags)
{
	memcpy(h->magic, SHMP__SEG_MAGIC, sizeof h->magic);
	h->layout_version = SHMP__LAYOUT_VERSION;
	h->size = size;
	h->creator_pid = getpid();
	h->flags = flags;
	atomic_store_explicit(&h->attach_count, 1, memory_order_relaxed);
	shmp__lock_init(&h->alloc_lock, SHMP__KIND_LOCK);
	h->heap_start = h->heap_top = heap_start_of();
	h->heap_end = size;
	/* header_size goes last, released: an attacher that reads it (acquire)
	 * sees a whole header. */
	__atomic_store_n(&h->header_size, (uint32_t)sizeof *h, __ATOMIC_RELEASE);
}

/* ---- this process's mappings ----------------------------------------
 * Every segment mapped in this process, with a serial number that grows
 * with each mapping. A fork child inherits both the mappings and this list,
 * so memory in a mapping older than a fork exists at the same address in the
 * child: the process Pool passes such memory by (serial, offset) instead of
 * copying it, and a worker resolves the pair in its own list. */
struct mapping {
	char *base;
	size_t size;
	uint64_t serial;
};
static pthread_mutex_t maps_mu = PTHREAD_MUTEX_INITIALIZER;
static struct mapping *maps;
static size_t n_maps, cap_maps;
static uint64_t maps_next = 1;

static void maps_lock(void) { pthread_mutex_lock(&maps_mu); }
static void maps_unlock(void) { pthread_mutex_unlock(&maps_mu); }
static pthread_once_t maps_once = PTHREAD_ONCE_INIT;
static void maps_hooks(void)
{
	/* The list must not be copied mid-update into a fork child. */
	pthread_atfork(maps_lock, maps_unlock, maps_unlock);
}

static void maps_add(char *base, size_t size)
{
	pthread_once(&maps_once, maps_hooks);
	maps_lock();
	if (n_maps == cap_maps) {
		size_t nc = cap_maps ? cap_maps * 2 : 16;
		struct mapping *m = realloc(maps, nc * sizeof *m);
		if (!m) {
			maps_unlock();
			return; /* not listed: such memory is copied, never shared by reference */
		}
		maps = m;
		cap_maps = nc;
	}
	maps[n_maps++] = (struct mapping){ base, size, maps_next++ };
	maps_unlock();
}

static void maps_remove(char *base)
{
	maps_lock();
	for (size_t i = 0; i < n_maps; i++)
		if (maps[i].base == base) {
			maps[i] = maps[--n_maps];
			break;
		}
	maps_unlock();
}

uint64_t shmp__maps_serial(void)
{
	maps_lock();
	uint64_t s = maps_next - 1;
	maps_unlock();
	return s;
}

bool shmp__maps_find(const void *p, size_t len, uint64_t max_serial, uint64_t *serial, uint64_t *off)
{
	bool found = false;
	uintptr_t a = (uintptr_t)p;
	maps_lock();
	for (size_t i = 0; i < n_maps && !found; i++) {
		uintptr_t b = (uintptr_t)maps[i].base;
		if (maps[i].serial <= max_serial && a >= b && len <= maps[i].size &&
		    a - b <= maps[i].size - len) {
			*serial = maps[i].serial;
			*off = a - b;
			found = true;
		}
	}
	maps_unlock();
	return found;
}

void *shmp__maps_resolve(uint64_t serial, uint64_t off, size_t len)
{
	void *p = NULL;
	maps_lock();
	for (size_t i = 0; i < n_maps; i++)
		if (maps[i].serial == serial) {
			if (off <= maps[i].size && len <= maps[i].size - off)
				p = maps[i].base + off;
			break;
		}
	maps_unlock();
	return p;
}

static shmp_segment_t *handle_new(void *base, size_t size, const char *name, bool owner)
{
	shmp_segment_t *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	s->base = base;
	s->hdr = base;
	s->size = size;
	s->owner = owner;
	s->pid = getpid();
	if (name && !(s->name = strdup(name))) {
		free(s);
		return NULL;
	}
	maps_add(base, size);
	return s;
}

shmp_segment_t *shmp_segment_create(const char *name, size_t size, const struct shmp_segment_opts *opts)
{
	char path[sizeof NAME_PREFIX + SHMP_SEGMENT_NAME_MAX + 1];
	struct shmp_segment_opts o;
	if (SHMP__OPTS(o, opts) < 0 || (o.mode & ~0777u) || size == 0 ||
	    (o.flags & ~(unsigned)(SHMP_SEGMENT_UNLINK_ON_LAST_DETACH | SHMP_SEGMENT_PERSISTENT)) ||
	    (!name && o.flags)) {
		errno = EINVAL;
		return NULL;
	}
	unsigned mode = o.mode ? o.mode : 0600, flags = o.flags;
	size_t ps = page_size();
	if (size < SHMP_SEGMENT_MIN_SIZE)
		size = SHMP_SEGMENT_MIN_SIZE;
	if (size > ((size_t)1 << 46)) {
		errno = EINVAL;
		return NULL;
	}
	size = (size + ps - 1) & ~(ps - 1);

	void *base;
	if (name) {
		int r = shm_path(name, path, sizeof path);
		if (r < 0) {
			errno = -r;
			return NULL;
		}
		/* shm_open adds O_NOFOLLOW and O_CLOEXEC. */
		int fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL, mode);
		if (fd < 0)
			return NULL;
		if (fchmod(fd, mode) != 0 || ftruncate(fd, (off_t)size) != 0) {
			int e = errno;
			close(fd);
			shm_unlink(path);
			errno = e;
			return NULL;
		}
		base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		int e = errno;
		close(fd);
		if (base == MAP_FAILED) {
			shm_unlink(path);
			errno = e;
			return NULL;
		}
	} else {
		base = mmap(NULL, size, PROT_READ | PROT_WRITE,
			    MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (base == MAP_FAILED)
			return NULL;
	}
	header_init(base, size, flags);
	shmp_segment_t *s = handle_new(base, size, name, true);
	if (!s) {
		munmap(base, size);
		if (name)
			shm_unlink(path);
		errno = ENOMEM;
	}
	return s;
}

int shmp__segment_trusted(const struct stat *st, const struct shmp_segment_opts *o)
{
	if (o->trust & SHMP_TRUST_ANYONE)
		return 0;
	bool owner_ok = st->st_uid == geteuid() || ((o->trust & SHMP_TRUST_UID) && st->st_uid == o->trust_uid);
	bool mode_ok = !(st->st_mode & S_IWOTH) &&
		       (!(st->st_mode & S_IWGRP) || ((o->trust & SHMP_TRUST_GID) && st->st_gid == o->trust_gid));
	return owner_ok && mode_ok ? 0 : -SHMP_EOWNER;
}

shmp_segment_t *shmp__segment_attach(const char *name, bool readonly, const struct shmp_segment_opts *opts)
{
	char path[sizeof NAME_PREFIX + SHMP_SEGMENT_NAME_MAX + 1];
	struct shmp_segment_opts o;
	int r = shm_path(name, path, sizeof path);
	if (r == 0 && (SHMP__OPTS(o, opts) < 0 || o.mode || o.flags ||
		       (o.trust & ~(unsigned)(SHMP_TRUST_UID | SHMP_TRUST_GID | SHMP_TRUST_ANYONE))))
		r = -EINVAL;
	if (r < 0) {
		errno = -r;
		return NULL;
	}
	/* O_NONBLOCK: a FIFO planted under the name must not block the open
	 * (it is refused just below as not a regular file). */
	int fd = shm_open(path, (readonly ? O_RDONLY : O_RDWR) | O_NONBLOCK, 0);
	if (fd < 0)
		return NULL;
	struct stat st;
	/* A creator between its O_EXCL open and its ftruncate shows an empty
	 * file: give it a moment before calling that corrupt. */
	int r2;
	for (int i = 0; (r2 = fstat(fd, &st)) == 0 && S_ISREG(st.st_mode) && st.st_size == 0 && i < 50; i++)
		usleep(1000);
	if (r2 != 0) {
		int e = errno;
		close(fd);
		errno = e;
		return NULL;
	}
	/* Who may have written it decides whether we use it at all: checked
	 * on the open file, so a name swapped after the check is no matter. */
	if (!readonly && (r = shmp__segment_trusted(&st, &o)) < 0) {
		close(fd);
		errno = -r;
		return NULL;
	}
	if (!S_ISREG(st.st_mode) || st.st_size < (off_t)sizeof(struct shmp__seg_hdr)) {
		close(fd);
		errno = SHMP_ECORRUPT;
		return NULL;
	}
	size_t size = (size_t)st.st_size;
	void *base = mmap(NULL, size, readonly ? PROT_READ : PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	int e = errno;
	close(fd);
	if (base == MAP_FAILED) {
		errno = e;
		return NULL;
	}
	/* A creator between O_EXCL and its header's last write: give it a
	 * moment. Whether the header was whole is read before the validation
	 * it excuses: read after, it could see the creator finish in between
	 * and call a half-written header (that validation's view) corrupt. */
	struct shmp__seg_hdr *h = base;
	for (int i = 0;; i++) {
		bool whole = __atomic_load_n(&h->header_size, __ATOMIC_ACQUIRE) != 0;
		r = shmp__header_validate(h, size);
		if (r != -SHMP_ECORRUPT || whole || i == 50)
			break;
		usleep(1000);
	}
	if (r < 0) {
		munmap(base, size);
		errno = -r;
		return NULL;
	}
	shmp_segment_t *s = handle_new(base, size, name, false);
	if (!s) {
		munmap(base, size);
		errno = ENOMEM;
		return NULL;
	}
	s->readonly = readonly;
	if (!readonly)
		atomic_fetch_add_explicit(&h->attach_count, 1, memory_order_relaxed);
	return s;
}

shmp_segment_t *shmp_segment_attach(const char *name, const struct shmp_segment_opts *opts)
{
	return shmp__segment_attach(name, false, opts);
}

static void segment_close(shmp_segment_t *seg, bool unlink_it)
{
	if (!seg || seg->is_default)
		return; /* the default segment lives as long as the process */
	if (seg->pid != getpid() || seg->readonly) {
		/* A copy inherited through fork or a read-only look: never
		 * counted as an attach, and only the creating process unlinks. */
		maps_remove(seg->base);
		munmap(seg->base, seg->size);
		free(seg->name);
		free(seg);
		return;
	}
	uint32_t left = atomic_fetch_sub_explicit(&seg->hdr->attach_count, 1, memory_order_acq_rel) - 1;
	if (seg->name && (unlink_it || (left == 0 && (seg->hdr->flags & SHMP_SEGMENT_UNLINK_ON_LAST_DETACH))))
		shmp_segment_unlink(seg->name);
	maps_remove(seg->base);
	munmap(seg->base, seg->size);
	free(seg->name);
	free(seg);
}

void shmp_segment_detach(shmp_segment_t *seg)
{
	segment_close(seg, false);
}

void shmp_segment_destroy(shmp_segment_t *seg)
{
	segment_close(seg, seg && seg->owner);
}

int shmp_segment_unlink(const char *name)
{
	char path[sizeof NAME_PREFIX + SHMP_SEGMENT_NAME_MAX + 1];
	int r = shm_path(name, path, sizeof path);
	if (r < 0)
		return r;
	return shm_unlink(path) == 0 ? 0 : -errno;
}

/* ---- default segment -------------------------------------------------- */

static shmp_segment_t *default_seg;
static int default_err;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

static size_t default_size(void)
{
	const char *s = getenv("SHMP_DEFAULT_SEGMENT_SIZE");
	if (!s || !*s)
		return DEFAULT_SIZE;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	default: break;
	}
	return (*end == '\0' && v > 0) ? (size_t)v : DEFAULT_SIZE;
}

static void default_create(void)
{
	size_t want = default_size();
	bool from_env = want != DEFAULT_SIZE;
	/* Strict overcommit or an address-space limit may refuse a big
	 * reservation: take the largest it grants (not below DEFAULT_MIN),
	 * unless the user asked for an exact size. */
	while (!(default_seg = shmp_segment_create(NULL, want, NULL)) && !from_env && errno == ENOMEM &&
	       want / 2 >= DEFAULT_MIN)
		want /= 2;
	if (default_seg)
		default_seg->is_default = true;
	else
		default_err = errno;
}

shmp_segment_t *shmp_segment_default(void)
{
	pthread_once(&default_once, default_create);
	if (!default_seg)
		errno = default_err;
	return default_seg;
}

shmp_segment_t *shmp__segment_or_default(shmp_segment_t *seg)
{
	return seg ? seg : shmp_segment_default();
}

void *shmp_segment_base(const shmp_segment_t *seg)
{
	return seg ? seg->base : NULL;
}

size_t shmp_segment_size(const shmp_segment_t *seg)
{
	return seg ? seg->size : 0;
}

const char *shmp_segment_name(const shmp_segment_t *seg)
{
	return seg ? seg->name : NULL;
}

void *shmp_segment_ptr(const shmp_segment_t *seg, uint64_t off, size_t len)
{
	if (!seg || off > seg->size || len > seg->size - off) {
		errno = EINVAL;
		return NULL;
	}
	return seg->base + off;
}

int shmp_segment_offset(const shmp_segment_t *seg, const void *ptr, uint64_t *off)
{
	if (!seg || !off || !shmp__seg_contains(seg, ptr, 0))
		return -EINVAL;
	*off = (uint64_t)((const char *)ptr - seg->base);
	return 0;
}
