/* Attaching to a registry never crashes or hangs, whatever the file holds.
 *
 * A real registry segment (one object of every type, namespace attributes,
 * a removed name, a removed object still pinned by a handle) is copied; each
 * iteration writes a mutated copy as a new /dev/shm/shmp.<name> file and
 * runs shmp_registry_attach, shmp_segment_inspect, shmp_registry_of,
 * count, info on every slot, lookup of every name, every getter with
 * GET_ONLY on every name, the Namespace getters, a creation and a remove.
 * Each must give a clean error code or valid data: handles that come back
 * point inside the mapping. Mutations: single fields of the directory and
 * the segment header with their exact errors (magic ECORRUPT, a version
 * EVERSION, no directory ENODATA, capacity, entry size, root offsets
 * inside the header or not aligned for the directory; free lists leading
 * nowhere, so that a creation must say SHMP_ECORRUPT), entries with
 * another type, offset, state, reference count or name,
 * random byte flips and nasty words in the directory and in the objects,
 * random bytes after a valid segment header, files truncated, extended
 * (consistently or not) and zeroed. The iterations run in a child watched
 * for crashes and for hangs (no progress in 10 s), which reports the
 * iteration and mutation (run it under ASan/UBSan too: misaligned or
 * out-of-bounds reads then fail it). Then: a symlink named shmp.X (to a
 * registry, relative, to a file, dangling) is never followed by attach,
 * read-only attach, create, open or inspect, and nothing behind it changes;
 * a FIFO makes none of them block; a directory is refused.
 *
 * Knows the directory layout of src/registry/registry.c (found by its magic in the
 * image; if it is not there, the structured directory cases are skipped and
 * said so). Fixed seed; SHMP_FUZZ_SEED overrides, SHMP_FUZZ_ITERS the count. */
#include "t_types.h"
#include "../src/core/internal.h"

#include <fcntl.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define IMG_SIZE (128u << 10)
#define IMG_CAP 64u
#define ECORRUPT_POS (SHMP_ECORRUPT)
#define EVERSION_POS (SHMP_EVERSION)
#define ETYPE_POS (SHMP_ETYPE)

/* The directory as src/registry/registry.c lays it out. */
#define DIR_MAGIC 0x52454744u
#define D_MAGIC 0
#define D_VERSION 4
#define D_CAPACITY 8
#define D_ENTRY_SIZE 12
#define D_COUNT 16
#define D_GEN 24
#define D_LOCK 64
#define D_ENTRIES 128
#define E_SIZE 128
#define E_WORD 0
#define E_TYPE 4
#define E_REFS 8
#define E_CREATOR 12
#define E_OFF 16
#define E_NAME 64

static pid_t main_pid;
static const char *fz_name;   /* every mutated copy is written under this name */
static char fz_path[300];
static const char *src_name;  /* the real registry, kept for the symlink cases */
static char src_path[300];
static char tmp_target[300];  /* a plain file outside /dev/shm */

static void cleanup(void)
{
	if (getpid() != main_pid)
		return;
	unlink(fz_path);
	rmdir(fz_path);
	unlink(src_path);
	unlink(tmp_target);
}

/* ---- randomness ------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
	uint64_t x = rng_state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * 0x2545f4914f6cdd1dull;
}

static uint64_t rnd_below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

static uint64_t nasty(uint64_t good)
{
	switch (rnd_below(12)) {
	case 0: return 0;
	case 1: return good + 1;
	case 2: return good - 1;
	case 3: return good + 16;
	case 4: return good - 16;
	case 5: return UINT64_MAX;
	case 6: return IMG_SIZE;
	case 7: return good ^ (1ull << rnd_below(64));
	case 8: return rnd_below(2 * IMG_SIZE) & ~(uint64_t)15;
	case 9: return (uint64_t)1 << rnd_below(64);
	case 10: return 0x80000000u;
	default: return rnd();
	}
}

/* ---- the image ---------------------------------------------------------- */

static _Alignas(64) unsigned char img[IMG_SIZE];
static uint64_t root;        /* directory offset in img */
static int structured;       /* the directory layout is the one above */
static uint64_t dir_end;     /* end of the directory's entries */

static const char *obj_names[] = { NULL, "o_value", "o_array", "o_lock", "o_rlock", "o_sem", "o_bsem",
				   "o_cond", "o_event", "o_barrier", "o_queue", "o_jqueue", "o_dict" };
static const char *all_names[] = { "o_value", "o_array", "o_lock", "o_rlock", "o_sem", "o_bsem",
				   "o_cond", "o_event", "o_barrier", "o_queue", "o_jqueue", "o_dict",
				   "x", "y", "gone", "pinned", "fresh" };
#define NNAMES ((int)(sizeof all_names / sizeof all_names[0]))

static void make_image(void)
{
	t_make.array_length = 6; /* objects a little less like t_types.h's defaults */
	t_make.sem = 3;
	t_make.bounded_sem = 2;
	t_make.maxsize = 4;
	t_make.dict_capacity = 8;
	t_make.dict_max_value = 256;
	struct shmp_registry_opts o = SHMP_OPTS(shmp_registry_opts, .size = IMG_SIZE, .capacity = IMG_CAP);
	shmp_registry_t *r = shmp_registry_create(src_name, &o);
	T_CHECK(r);
	shmp_segment_t *seg = shmp_registry_segment(r);
	T_EQ(shmp_segment_size(seg), IMG_SIZE);
	/* A removed name first, so a free slot sits among the live ones. */
	shmp_event_destroy(shmp_registry_event(r, "gone", 0));
	for (int t = FIRST_TYPE; t <= LAST_TYPE; t++) {
		void *h = get_t(r, t, obj_names[t], SHMP_REG_CREATE_ONLY);
		if (!h) {
			fprintf(stderr, "image: %s: %s\n", obj_names[t], shmp_strerror(errno));
			exit(1);
		}
		put_t(t, h);
	}
	T_EQ(shmp_registry_remove(r, "gone"), 0);
	T_EQ(shmp_namespace_set_i64(r, "x", 5), 0);
	T_EQ(shmp_namespace_set_f64(r, "y", 2.5), 0);
	/* Some state in the objects, so their fields are not all zero. */
	shmp_queue_t *q = shmp_registry_queue(r, "o_queue", 0, SHMP_REG_GET_ONLY);
	T_CHECK(q);
	T_EQ(shmp_queue_put(q, "hello", 5, 0), 0);
	shmp_queue_destroy(q);
	shmp_dict_t *d = shmp_registry_dict(r, "o_dict", NULL, SHMP_REG_GET_ONLY);
	T_CHECK(d);
	T_EQ(shmp_dict_set(d, "k", "v", 1), 0);
	T_EQ(shmp_dict_set(d, "long", img, 200), 0); /* not inline */
	shmp_dict_destroy(d);
	shmp_array_t *a = shmp_registry_array(r, "o_array", 'i', 0, NULL, SHMP_REG_GET_ONLY);
	T_CHECK(a);
	T_EQ(shmp_array_set_i64(a, 1, 77), 0);
	shmp_array_destroy(a);
	/* Removed while a handle is open: the copy keeps it DYING, pinned. */
	shmp_lock_t *pin = shmp_registry_lock(r, "pinned", 0);
	T_CHECK(pin);
	T_EQ(shmp_registry_remove(r, "pinned"), 0);
	T_EQ(shmp_registry_count(r), 14);

	memcpy(img, shmp_segment_base(seg), IMG_SIZE);
	shmp_lock_destroy(pin);
	/* The source stays (detached) for the symlink cases. */
	shmp_registry_detach(r);

	const struct shmp__seg_hdr *h = (const void *)img;
	root = h->registry_root;
	T_CHECK(root > 0 && root < IMG_SIZE);
	uint32_t magic;
	memcpy(&magic, img + root, 4);
	uint32_t cap;
	memcpy(&cap, img + root + D_CAPACITY, 4);
	structured = magic == DIR_MAGIC && cap == IMG_CAP;
	dir_end = structured ? root + D_ENTRIES + (uint64_t)IMG_CAP * E_SIZE : root + 4096;
	if (!structured)
		printf("directory layout unknown: structured directory cases skipped\n");
}

static uint32_t get32(const unsigned char *b, uint64_t at)
{
	uint32_t v;
	memcpy(&v, b + at, 4);
	return v;
}

static void put32(unsigned char *b, uint64_t at, uint32_t v)
{
	memcpy(b + at, &v, 4);
}

static void put64(unsigned char *b, uint64_t at, uint64_t v)
{
	memcpy(b + at, &v, 8);
}

static uint64_t get64(const unsigned char *b, uint64_t at)
{
	uint64_t v;
	memcpy(&v, b + at, 8);
	return v;
}

/* Slot index of a name in the image, -1 if none. */
static int slot_of(const char *name)
{
	for (unsigned i = 0; i < IMG_CAP; i++) {
		uint64_t e = root + D_ENTRIES + (uint64_t)i * E_SIZE;
		if ((get32(img, e + E_WORD) & 3) != 0 && strcmp((const char *)img + e + E_NAME, name) == 0)
			return (int)i;
	}
	return -1;
}

static uint64_t entry_at(int slot)
{
	return root + D_ENTRIES + (uint64_t)slot * E_SIZE;
}

/* The directory lock's word: a value naming a live thread is a held lock
 * and the getters rightly wait for it, so mutations leave it alone. */
static int is_lock_word(uint64_t at)
{
	return at + 4 > root + D_LOCK && at < root + D_LOCK + 4;
}

static int is_alloc_lock_word(uint64_t at)
{
	uint64_t w = offsetof(struct shmp__seg_hdr, alloc_lock) + offsetof(struct shmp__lock_sh, word);
	return at + 4 > w && at < w + 4;
}

/* ---- writing files ------------------------------------------------------ */

static void write_file(const void *buf, size_t len)
{
	int fd = open(fz_path, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
	T_CHECK(fd >= 0);
	const char *p = buf;
	while (len > 0) {
		ssize_t w = write(fd, p, len);
		T_CHECK(w > 0);
		p += w;
		len -= (size_t)w;
	}
	T_EQ(close(fd), 0);
}

static void remove_file(void)
{
	T_EQ(unlink(fz_path), 0);
}

/* ---- what the worker shares with its watcher ------------------------------ */

struct progress {
	_Atomic uint64_t it;
	char what[160];
	int accepted, refused;
};
static struct progress *prog;
/* The objects' shared state is as the image has it: calls that take an
 * object's lock (the Namespace getters) cannot meet a lock word naming a
 * live thread, which would rightly make them wait. */
static int objects_intact;

static void step(uint64_t it, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void step(uint64_t it, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prog->what, sizeof prog->what, fmt, ap);
	va_end(ap);
	atomic_store(&prog->it, it);
}

/* ---- exercising an attached registry --------------------------------------- */

static int getter_errno_ok(int e)
{
	return e == ENOENT || e == ETYPE_POS || e == ECORRUPT_POS || e == EINVAL || e == SHMP_ESEGFULL ||
	       e == ENOSPC || e == EVERSION_POS;
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "iteration %llu (%s): ", (unsigned long long)atomic_load(&prog->it), prog->what);
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

static void check_inside(shmp_segment_t *seg, const void *p, uint64_t len, const char *what)
{
	const char *b = shmp_segment_base(seg);
	uint64_t size = shmp_segment_size(seg);
	if (!p || (const char *)p < b || len > size || (uint64_t)((const char *)p - b) > size - len)
		fail("%s: [%p,+%llu) outside the mapping [%p,+%llu)", what, p, (unsigned long long)len,
		     (const void *)b, (unsigned long long)size);
}

/* Use a handle a little, without anything that may wait: every call is
 * a non-blocking one. */
static void use_handle(shmp_segment_t *seg, int type, void *h)
{
	switch (type) {
	case SHMP_TYPE_VALUE: {
		int sz = shmp_typecode_size(shmp_value_typecode(h));
		if (sz <= 0)
			fail("value with typecode %d", shmp_value_typecode(h));
		check_inside(seg, shmp_value_ptr(h), (uint64_t)sz, "value item");
		break;
	}
	case SHMP_TYPE_ARRAY: {
		int sz = shmp_typecode_size(shmp_array_typecode(h));
		size_t n = shmp_array_len(h);
		if (sz <= 0 || n == 0)
			fail("array with typecode %d, %zu items", shmp_array_typecode(h), n);
		if (n > shmp_segment_size(seg) / (size_t)sz)
			fail("array of %zu items of %d bytes in a %zu-byte segment", n, sz, shmp_segment_size(seg));
		check_inside(seg, shmp_array_ptr(h), (uint64_t)n * (uint64_t)sz, "array items");
		break;
	}
	case SHMP_TYPE_LOCK:
	case SHMP_TYPE_RLOCK: {
		int r = shmp_lock_acquire(h, 0);
		if (r == 0 || r == -EOWNERDEAD) {
			if (r == -EOWNERDEAD)
				shmp_lock_consistent(h);
			shmp_lock_release(h);
		}
		shmp_lock_is_locked(h);
		break;
	}
	case SHMP_TYPE_SEM:
	case SHMP_TYPE_BOUNDED_SEM:
		if (shmp_sem_acquire(h, 0) == 0)
			shmp_sem_release(h);
		shmp_sem_value(h);
		break;
	case SHMP_TYPE_COND:
		if (!shmp_cond_lock(h))
			fail("condition without a lock");
		break;
	case SHMP_TYPE_EVENT:
		shmp_event_is_set(h);
		break;
	case SHMP_TYPE_BARRIER:
		shmp_barrier_parties(h);
		shmp_barrier_n_waiting(h);
		shmp_barrier_is_broken(h);
		break;
	case SHMP_TYPE_QUEUE:
	case SHMP_TYPE_JOINABLE_QUEUE: {
		char buf[64];
		size_t len;
		shmp_queue_qsize(h);
		int r = shmp_queue_get(h, buf, sizeof buf, &len, 0);
		if (r == 0 && len > sizeof buf)
			fail("queue get of %zu bytes into %zu", len, sizeof buf);
		break;
	}
	case SHMP_TYPE_DICT: {
		char buf[256];
		size_t len = 0;
		shmp_dict_len(h);
		int r = shmp_dict_get(h, "k", buf, sizeof buf, &len);
		if (r == 0 && len > sizeof buf)
			fail("dict get of %zu bytes into %zu", len, sizeof buf);
		r = shmp_dict_get(h, "long", buf, sizeof buf, &len);
		if (r == 0 && len > sizeof buf)
			fail("dict get of %zu bytes into %zu", len, sizeof buf);
		break;
	}
	}
}

static void check_info(shmp_registry_t *r, const struct shmp_object_info *in, const char *what)
{
	if (strnlen(in->name, sizeof in->name) == sizeof in->name)
		fail("%s: name not terminated", what);
	if (!in->valid)
		return;
	if (in->offset >= shmp_segment_size(shmp_registry_segment(r)))
		fail("%s: valid object at offset %llu", what, (unsigned long long)in->offset);
	if (in->preview_bytes > sizeof in->preview)
		fail("%s: preview of %u bytes", what, in->preview_bytes);
}

static void exercise(shmp_registry_t *r, int deep)
{
	shmp_segment_t *seg = shmp_registry_segment(r);
	if (!seg)
		fail("no segment");
	int n = shmp_registry_count(r);
	if (n < 0 || n > 1 << 20)
		fail("count %d", n);
	struct shmp_object_info in;
	unsigned i;
	for (i = 0; i <= (1u << 20) + 1; i++) {
		memset(&in, 0x5a, sizeof in);
		int k = shmp_registry_info(r, i, &in);
		if (k == -ERANGE)
			break;
		if (k != 0 && k != 1)
			fail("info(%u) = %d", i, k);
		if (k == 1) {
			check_info(r, &in, "info");
			if (in.name[0]) {
				struct shmp_object_info li;
				int lk = shmp_registry_lookup(r, in.name, &li);
				if (lk != 0 && lk != -ENOENT && lk != -EINVAL && lk != -ENAMETOOLONG)
					fail("lookup(\"%s\") = %d", in.name, lk);
				if (lk == 0)
					check_info(r, &li, "lookup of an info name");
			}
		}
	}
	if (i > (1u << 20) + 1)
		fail("info never says -ERANGE");
	for (int k = 0; k < NNAMES; k++) {
		int lk = shmp_registry_lookup(r, all_names[k], &in);
		if (lk != 0 && lk != -ENOENT)
			fail("lookup(%s) = %d", all_names[k], lk);
		if (lk == 0)
			check_info(r, &in, all_names[k]);
	}
	if (!deep)
		return;
	for (int k = 0; k < NNAMES; k++) {
		for (int t = FIRST_TYPE; t <= LAST_TYPE; t++) {
			errno = 0;
			void *h = get_t(r, t, all_names[k], SHMP_REG_GET_ONLY);
			if (!h) {
				if (!getter_errno_ok(errno))
					fail("get %s as %s: errno %d (%s)", all_names[k], shmp_type_name(t),
					     errno, shmp_strerror(errno));
				continue;
			}
			use_handle(seg, t, h);
			put_t(t, h);
		}
	}
	int e;
	if (objects_intact) {
		int64_t i64;
		double f64;
		e = shmp_namespace_get_i64(r, "x", &i64);
		if (e != 0 && !getter_errno_ok(-e))
			fail("namespace x: %d", e);
		e = shmp_namespace_get_f64(r, "y", &f64);
		if (e != 0 && !getter_errno_ok(-e))
			fail("namespace y: %d", e);
	}
	/* A write or two: creation and removal on the damaged directory. */
	int t = FIRST_TYPE + (int)rnd_below(LAST_TYPE - FIRST_TYPE + 1);
	errno = 0;
	void *h = get_t(r, t, "fresh", 0);
	if (h) {
		use_handle(seg, t, h);
		put_t(t, h);
	} else if (!getter_errno_ok(errno) && errno != EEXIST) {
		fail("create fresh %s: errno %d (%s)", shmp_type_name(t), errno, shmp_strerror(errno));
	}
	e = shmp_registry_remove(r, all_names[rnd_below(NNAMES)]);
	if (e != 0 && e != -ENOENT && e != -SHMP_ECORRUPT)
		fail("remove: %d", e);
	n = shmp_registry_count(r);
	if (n < 0)
		fail("count after writes %d", n);
}

/* Write buf, inspect it, attach it; exercise what attach accepts. want:
 * the exact errno attach must fail with, 0 for "must attach", -1 for "a
 * clean failure or an attach, either". */
static void try_image(const void *buf, size_t len, int want, int deep)
{
	write_file(buf, len);
	if (rnd_below(16) == 0) {
		/* inspect reads /proc: not every time */
		struct shmp_segment_info si;
		int ir = shmp_segment_inspect(fz_name, &si);
		if (ir != 0)
			fail("inspect = %d", ir);
		if (si.valid && (si.size != len || si.objects < -1))
			fail("inspect: valid, size %llu of %zu, objects %d", (unsigned long long)si.size, len,
			     si.objects);
		if (!si.valid && si.error == 0)
			fail("inspect: invalid without an error");
	}
	errno = 0;
	shmp_registry_t *r = shmp_registry_attach(fz_name, NULL);
	int e = errno;
	/* registry_of on the bare segment takes the same validation path (and
	 * may make a directory where there is none). */
	shmp_segment_t *seg = shmp_segment_attach(fz_name, NULL);
	remove_file(); /* the mappings stay */
	if (seg) {
		shmp_registry_t *r2 = shmp_registry_of(seg);
		if (r2) {
			exercise(r2, 0);
			shmp_registry_detach(r2);
		} else if (errno != ECORRUPT_POS && errno != EVERSION_POS && errno != SHMP_ESEGFULL) {
			fail("registry_of: errno %d (%s)", errno, shmp_strerror(errno));
		}
		shmp_segment_detach(seg);
	}
	if (!r) {
		prog->refused++;
		if (want == 0 || (want > 0 && e != want) ||
		    (want < 0 && e != ECORRUPT_POS && e != EVERSION_POS && e != ENODATA))
			fail("attach: errno %d (%s), want %d (%s)", e, shmp_strerror(-e), want,
			     want > 0 ? shmp_strerror(-want) : "any clean error");
		return;
	}
	if (want > 0)
		fail("attach accepted what it must refuse with %s", shmp_strerror(-want));
	prog->accepted++;
	exercise(r, deep);
	shmp_registry_detach(r);
}

/* ---- the cases ------------------------------------------------------------ */

static _Alignas(64) unsigned char b[IMG_SIZE + 8192];

#define MUT(it, stmt, want)                                                      \
	do {                                                                     \
		memcpy(b, img, IMG_SIZE);                                        \
		step(it, "%s", #stmt);                                           \
		stmt;                                                            \
		try_image(b, IMG_SIZE, want, 1);                                 \
	} while (0)

static struct shmp__seg_hdr *H(unsigned char *buf)
{
	return (struct shmp__seg_hdr *)buf;
}

static uint64_t single_cases(void)
{
	uint64_t it = 0;
	objects_intact = 1;
	/* Control: the copy itself is a working registry with every object. */
	memcpy(b, img, IMG_SIZE);
	step(it++, "control");
	write_file(b, IMG_SIZE);
	shmp_registry_t *r = shmp_registry_attach(fz_name, NULL);
	remove_file();
	T_CHECK(r);
	T_EQ(shmp_registry_count(r), 14);
	for (int t = FIRST_TYPE; t <= LAST_TYPE; t++) {
		void *h = get_t(r, t, obj_names[t], SHMP_REG_GET_ONLY);
		T_CHECK(h);
		use_handle(shmp_registry_segment(r), t, h);
		put_t(t, h);
	}
	int64_t x = 0;
	T_EQ(shmp_namespace_get_i64(r, "x", &x), 0);
	T_EQ(x, 5);
	shmp_registry_detach(r);

	/* The segment header. */
	MUT(it++, H(b)->magic[0] ^= 1, ECORRUPT_POS);
	MUT(it++, H(b)->layout_version = SHMP__LAYOUT_VERSION + 1, EVERSION_POS);
	MUT(it++, H(b)->layout_version = 0, EVERSION_POS);
	MUT(it++, H(b)->registry_root = 0, ENODATA);
	MUT(it++, H(b)->registry_root = IMG_SIZE, ECORRUPT_POS);
	MUT(it++, H(b)->registry_root = UINT64_MAX, ECORRUPT_POS);
	MUT(it++, H(b)->registry_root = root + 8, ECORRUPT_POS);  /* unaligned */
	MUT(it++, H(b)->registry_root = root + 64, ECORRUPT_POS); /* no magic there */
	MUT(it++, H(b)->registry_root = IMG_SIZE - 16, ECORRUPT_POS);
	MUT(it++, H(b)->registry_root = IMG_SIZE - 64, ECORRUPT_POS);
	MUT(it++, H(b)->registry_root = 16, ECORRUPT_POS); /* inside the header */
	MUT(it++, memset(b, 0, IMG_SIZE), ECORRUPT_POS);
	/* Free lists that lead nowhere: the segment header passes (they are
	 * the allocator's to check), and a creation that meets one must say
	 * SHMP_ECORRUPT like every other corruption. */
	MUT(it++, for (unsigned c = 0; c < SHMP__NCLASSES; c++) H(b)->free_head[c] = IMG_SIZE + 4096, 0);
	if (!structured)
		return it;

	/* The directory header. */
	MUT(it++, put32(b, root + D_MAGIC, DIR_MAGIC ^ 1), ECORRUPT_POS);
	MUT(it++, put32(b, root + D_MAGIC, 0), ECORRUPT_POS);
	MUT(it++, put32(b, root + D_VERSION, 2), EVERSION_POS);
	MUT(it++, put32(b, root + D_VERSION, 0), EVERSION_POS);
	MUT(it++, put32(b, root + D_CAPACITY, 0), ECORRUPT_POS);
	MUT(it++, put32(b, root + D_CAPACITY, UINT32_MAX), ECORRUPT_POS);
	MUT(it++, put32(b, root + D_CAPACITY, (1u << 20) + 1), ECORRUPT_POS);
	/* just past the end of the segment */
	MUT(it++, put32(b, root + D_CAPACITY, (uint32_t)((IMG_SIZE - root - D_ENTRIES) / E_SIZE + 1)), ECORRUPT_POS);
	MUT(it++, put32(b, root + D_ENTRY_SIZE, E_SIZE + 1), ECORRUPT_POS);
	MUT(it++, put32(b, root + D_ENTRY_SIZE, 0), ECORRUPT_POS);
	MUT(it++, put32(b, root + D_LOCK + offsetof(struct shmp__lock_sh, magic), 0), ECORRUPT_POS); /* lock magic */
	/* Fields that are hints or that fit: accepted and harmless. */
	MUT(it++, put32(b, root + D_COUNT, UINT32_MAX), 0);
	MUT(it++, put64(b, root + D_GEN, UINT64_MAX), 0);
	MUT(it++, put32(b, root + D_CAPACITY, 1), 0);
	MUT(it++, put32(b, root + D_CAPACITY, (uint32_t)((IMG_SIZE - root - D_ENTRIES) / E_SIZE)), 0);

	/* Entries: another type, offset, state, refs, name, creator. */
	int sv = slot_of("o_value"), sq = slot_of("o_queue"), sd = slot_of("o_dict");
	int sp = slot_of("pinned"); /* -1 if a removed name gives up its slot at once */
	T_CHECK(sv >= 0 && sq >= 0 && sd >= 0);
	if (sp < 0)
		sp = sv;
	uint64_t ev = entry_at(sv), eq = entry_at(sq), ed = entry_at(sd);
	for (uint32_t t = 0; t < SHMP_TYPE_MAX + 2; t++) {
		MUT(it++, put32(b, ev + E_TYPE, t), -1);
		MUT(it++, put32(b, eq + E_TYPE, t), -1);
		MUT(it++, put32(b, ed + E_TYPE, t), -1);
	}
	MUT(it++, put32(b, ev + E_TYPE, UINT32_MAX), -1);
	static const uint64_t offs[] = { 0, 8, 16, 64, IMG_SIZE - 16, IMG_SIZE - 8, IMG_SIZE, UINT64_MAX,
					 UINT64_MAX - 15 };
	for (size_t k = 0; k < sizeof offs / sizeof offs[0]; k++) {
		MUT(it++, put64(b, ev + E_OFF, offs[k]), -1);
		MUT(it++, put64(b, eq + E_OFF, offs[k]), -1);
		MUT(it++, put64(b, ed + E_OFF, offs[k]), -1);
	}
	/* Each object's offset given to every other entry. */
	for (int s = FIRST_TYPE; s <= LAST_TYPE; s++) {
		uint64_t from = get64(img, entry_at(slot_of(obj_names[s])) + E_OFF);
		for (int t = FIRST_TYPE; t <= LAST_TYPE; t++) {
			if (s == t)
				continue;
			MUT(it++, put64(b, entry_at(slot_of(obj_names[t])) + E_OFF, from), -1);
		}
		/* and a little inside it */
		MUT(it++, put64(b, entry_at(slot_of(obj_names[s])) + E_OFF, from + 16), -1);
		MUT(it++, put64(b, entry_at(slot_of(obj_names[s])) + E_OFF, from - 16), -1);
	}
	for (uint32_t st = 0; st < 4; st++) {
		MUT(it++, put32(b, ev + E_WORD, st), -1);
		MUT(it++, put32(b, entry_at(sp) + E_WORD, st), -1);
	}
	MUT(it++, put32(b, ev + E_REFS, 0x80000000u), -1);
	MUT(it++, put32(b, ev + E_REFS, UINT32_MAX), -1);
	MUT(it++, put32(b, entry_at(sp) + E_REFS, 0x80000000u), -1);
	MUT(it++, put32(b, entry_at(sp) + E_REFS, 0), -1);
	MUT(it++, memset(b + ev + E_NAME, 'A', 64), -1);         /* no terminator */
	MUT(it++, memset(b + ev + E_NAME, 0, 64), -1);           /* empty name */
	MUT(it++, memcpy(b + ev + E_NAME, "a b\0", 4), -1);       /* a name no one may ask for */
	MUT(it++, memcpy(b + eq + E_NAME, "o_value\0", 8), -1);   /* two entries, one name */
	MUT(it++, put32(b, ev + E_CREATOR, UINT32_MAX), -1);
	/* every entry LIVE, names and all garbage */
	MUT(it++, for (unsigned k = 0; k < IMG_CAP; k++) put32(b, entry_at((int)k) + E_WORD, 2), -1);
	MUT(it++, for (unsigned k = 0; k < IMG_CAP; k++) {
		put32(b, entry_at((int)k) + E_WORD, 2);
		put32(b, entry_at((int)k) + E_TYPE, (uint32_t)(1 + k % 12));
		put64(b, entry_at((int)k) + E_OFF, (uint64_t)k * 4096);
		memset(b + entry_at((int)k) + E_NAME, 'a' + (int)(k % 26), 64);
	}, -1);
	/* every entry BUSY (as left by holders that died) */
	MUT(it++, for (unsigned k = 0; k < IMG_CAP; k++) put32(b, entry_at((int)k) + E_WORD, 1), -1);

	/* Files of another length: inconsistent (segment refuses), or
	 * consistently shrunk so the directory no longer fits, or extended. */
	memcpy(b, img, IMG_SIZE);
	step(it++, "truncated to half");
	try_image(b, IMG_SIZE / 2, ECORRUPT_POS, 1);
	step(it++, "a page longer");
	memset(b + IMG_SIZE, 0, 8192);
	try_image(b, IMG_SIZE + 4096, ECORRUPT_POS, 1);
	uint64_t cut = (dir_end - 1) & ~(uint64_t)4095;
	if (cut > root + D_ENTRIES) {
		memcpy(b, img, IMG_SIZE);
		step(it++, "shrunk consistently to %llu, directory past the end", (unsigned long long)cut);
		H(b)->size = cut;
		H(b)->heap_end = cut;
		if (H(b)->heap_top > cut)
			H(b)->heap_top = cut;
		try_image(b, cut, ECORRUPT_POS, 1);
	}
	memcpy(b, img, IMG_SIZE);
	step(it++, "extended consistently by 8 KiB");
	memset(b + IMG_SIZE, 0, 8192);
	H(b)->size = IMG_SIZE + 8192;
	H(b)->heap_end = IMG_SIZE + 8192;
	try_image(b, IMG_SIZE + 8192, 0, 1);
	return it;
}

/* Random damage, many times. */
static void random_cases(uint64_t it, int iters)
{
	uint64_t heap_top = H(img)->heap_top;
	uint64_t hdr_size = sizeof(struct shmp__seg_hdr);
	for (int k = 0; k < iters; k++, it++) {
		memcpy(b, img, IMG_SIZE);
		size_t len = IMG_SIZE;
		int kind = (int)rnd_below(10);
		int nmut = 1 + (int)rnd_below(6);
		objects_intact = kind != 5 && kind != 6 && kind != 9;
		switch (kind) {
		case 0: case 1: case 2: /* bit flips in the directory */
			step(it, "%d flips in the directory", nmut);
			for (int m = 0; m < nmut; m++) {
				uint64_t at;
				do
					at = root + rnd_below(dir_end - root);
				while (is_lock_word(at));
				b[at] ^= (unsigned char)(1u << rnd_below(8));
			}
			break;
		case 3: case 4: /* nasty aligned words in the directory */
			step(it, "%d nasty words in the directory", nmut);
			for (int m = 0; m < nmut; m++) {
				uint64_t at;
				do
					at = root + (rnd_below(dir_end - root) & ~(uint64_t)3);
				while (is_lock_word(at) || is_lock_word(at + 4));
				if (rnd_below(2))
					put32(b, at, (uint32_t)nasty(get32(b, at)));
				else if (at + 8 <= dir_end)
					put64(b, at, nasty(get64(b, at)));
			}
			break;
		case 5: case 6: /* the objects' shared state */
			step(it, "%d flips/words in the objects", nmut);
			for (int m = 0; m < nmut; m++) {
				uint64_t at = dir_end + rnd_below(heap_top - dir_end);
				if (rnd_below(2)) {
					b[at] ^= (unsigned char)(1u << rnd_below(8));
				} else {
					at &= ~(uint64_t)7;
					if (at + 8 <= IMG_SIZE)
						put64(b, at, nasty(get64(b, at)));
				}
			}
			break;
		case 7: /* whole entries swapped, copied or garbage */
			step(it, "%d entries rewritten", nmut);
			if (!structured)
				break;
			for (int m = 0; m < nmut; m++) {
				uint64_t e = entry_at((int)rnd_below(IMG_CAP));
				uint64_t f = entry_at((int)rnd_below(IMG_CAP));
				switch (rnd_below(3)) {
				case 0: memcpy(b + e, img + f, E_SIZE); break;
				case 1:
					for (int j = 0; j < E_SIZE; j++)
						b[e + (uint64_t)j] = (unsigned char)rnd();
					break;
				default:
					put32(b, e + E_WORD, 2 + 4 * (uint32_t)rnd_below(100));
					put32(b, e + E_TYPE, (uint32_t)rnd_below(SHMP_TYPE_MAX + 1));
					put64(b, e + E_OFF, nasty(get64(img, e + E_OFF)));
					break;
				}
			}
			break;
		case 8: { /* the registry root and header words (not the alloc lock's) */
			step(it, "header: registry_root and random header bytes");
			H(b)->registry_root = nasty(root);
			for (int m = 0; m < nmut - 1; m++) {
				uint64_t at;
				do
					at = rnd_below(hdr_size);
				while (is_alloc_lock_word(at));
				b[at] ^= (unsigned char)(1u << rnd_below(8));
			}
			break;
		}
		default: { /* random bytes after a valid segment header, random length */
			len = hdr_size + rnd_below(IMG_SIZE - hdr_size + 1);
			step(it, "random bytes after the header, %zu bytes", len);
			for (size_t j = hdr_size; j < len; j++)
				b[j] = (unsigned char)rnd();
			if (rnd_below(2)) { /* a consistent size, so the segment passes */
				len &= ~(size_t)4095;
				if (len < 8192)
					len = 8192;
				H(b)->size = len;
				H(b)->heap_end = len;
				if (H(b)->heap_top > len)
					H(b)->heap_top = len;
			}
			break;
		}
		}
		try_image(b, len, -1, (int)rnd_below(4) != 0);
	}
}

/* The worker: every image case; exits 0, or 1 with a message. */
static int worker(void *arg)
{
	int iters = *(int *)arg;
	uint64_t it = single_cases();
	random_cases(it, iters);
	return 0;
}

/* ---- symlinks, FIFOs, directories --------------------------------------- */

static void read_all(const char *path, unsigned char *out, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	T_CHECK(fd >= 0);
	size_t got = 0;
	while (got < len) {
		ssize_t n = read(fd, out + got, len - got);
		T_CHECK(n > 0);
		got += (size_t)n;
	}
	close(fd);
}

static _Alignas(64) unsigned char before[IMG_SIZE], after[IMG_SIZE];

/* Nothing that follows the name may use what a symlink points at. */
static void not_followed(const char *target, const char *what)
{
	struct stat st;
	int target_exists = stat(target, &st) == 0;
	if (target_exists)
		read_all(target, before, IMG_SIZE);

	errno = 0;
	shmp_registry_t *r = shmp_registry_attach(fz_name, NULL);
	if (r || errno != ELOOP) {
		fprintf(stderr, "%s: attach %s, errno %d (%s)\n", what, r ? "followed it" : "failed",
			errno, shmp_strerror(errno));
		exit(1);
	}
	struct shmp_registry_opts ro = SHMP_OPTS(shmp_registry_opts, .flags = SHMP_REGISTRY_READ_ONLY);
	errno = 0;
	T_CHECK(!shmp_registry_attach(fz_name, &ro));
	T_EQ(errno, ELOOP);
	errno = 0;
	T_CHECK(!shmp_segment_attach(fz_name, NULL));
	T_EQ(errno, ELOOP);
	errno = 0;
	T_CHECK(!shmp_registry_create(fz_name, NULL));
	T_EQ(errno, EEXIST);
	errno = 0;
	T_CHECK(!shmp_registry_open(fz_name, NULL));
	T_CHECK(errno != 0);
	struct shmp_segment_info si;
	memset(&si, 0x5a, sizeof si);
	int ir = shmp_segment_inspect(fz_name, &si);
	if (ir == 0 && si.valid) {
		fprintf(stderr, "%s: inspect followed the symlink\n", what);
		exit(1);
	}
	T_CHECK(ir < 0 || si.error != 0);

	/* Still a symlink; what it points at is as it was (or still absent). */
	T_EQ(lstat(fz_path, &st), 0);
	T_CHECK(S_ISLNK(st.st_mode));
	if (target_exists) {
		read_all(target, after, IMG_SIZE);
		T_CHECK(memcmp(before, after, IMG_SIZE) == 0);
	} else {
		T_CHECK(stat(target, &st) != 0 && errno == ENOENT);
	}
	/* Removing by name removes the link, not its target. */
	T_EQ(shmp_segment_unlink(fz_name), 0);
	T_CHECK(lstat(fz_path, &st) != 0);
	T_EQ(stat(target, &st) == 0, target_exists);
}

static void test_links(void)
{
	struct shmp_segment_info si;
	T_EQ(shmp_segment_inspect(src_name, &si), 0);
	T_EQ(si.valid, 1);
	uint32_t attaches = si.attach_count;

	/* To the real registry. */
	T_EQ(symlink(src_path, fz_path), 0);
	not_followed(src_path, "symlink to a registry");
	T_EQ(shmp_segment_inspect(src_name, &si), 0);
	T_EQ(si.attach_count, attaches);
	/* Relative, as shm names are resolved in /dev/shm. */
	char rel[300];
	snprintf(rel, sizeof rel, "shmp.%s", src_name);
	T_EQ(symlink(rel, fz_path), 0);
	not_followed(src_path, "relative symlink to a registry");
	/* To a registry image outside /dev/shm. */
	int fd = open(tmp_target, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
	T_CHECK(fd >= 0);
	T_EQ(write(fd, img, IMG_SIZE), (ssize_t)IMG_SIZE);
	close(fd);
	T_EQ(symlink(tmp_target, fz_path), 0);
	not_followed(tmp_target, "symlink to a file in /tmp");
	T_EQ(unlink(tmp_target), 0);
	/* Dangling: create must not make the target through it. */
	T_EQ(symlink(tmp_target, fz_path), 0);
	not_followed(tmp_target, "dangling symlink");

	/* A FIFO: refused at once by every way in, no blocking open (each
	 * in a child, so that one that blocks is named and cannot hang us). */
	T_EQ(mkfifo(fz_path, 0600), 0);
	for (int way = 0; way < 4; way++) {
		static const char *ways[] = { "shmp_registry_attach", "shmp_registry_attach READ_ONLY",
					      "shmp_segment_inspect", "shmp_registry_open" };
		fflush(NULL);
		pid_t c = fork();
		T_CHECK(c >= 0);
		if (c == 0) {
			struct shmp_registry_opts ro = SHMP_OPTS(shmp_registry_opts,
								 .flags = SHMP_REGISTRY_READ_ONLY);
			struct shmp_segment_info fi;
			errno = 0;
			switch (way) {
			case 0: _exit(!shmp_registry_attach(fz_name, NULL) && errno ? 0 : 2);
			case 1: _exit(!shmp_registry_attach(fz_name, &ro) && errno ? 0 : 2);
			case 2: memset(&fi, 0, sizeof fi);
				int ir = shmp_segment_inspect(fz_name, &fi);
				_exit(ir < 0 || (!fi.valid && fi.error) ? 0 : 2);
			default: _exit(!shmp_registry_open(fz_name, NULL) && errno ? 0 : 2);
			}
		}
		double t0 = t_now();
		int st = 0;
		while (waitpid(c, &st, WNOHANG) == 0 && t_now() - t0 < 3)
			t_sleep_ms(5);
		if (t_now() - t0 >= 3) {
			kill(c, SIGKILL);
			waitpid(c, &st, 0);
			fprintf(stderr, "%s on a FIFO named shmp.X blocks (in open)\n", ways[way]);
			exit(1);
		}
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr, "%s on a FIFO: did not fail cleanly\n", ways[way]);
			exit(1);
		}
	}
	T_EQ(unlink(fz_path), 0);
	struct shmp_segment_info si2;
	int ir;
	T_EQ(mkdir(fz_path, 0700), 0);
	errno = 0;
	T_CHECK(!shmp_registry_attach(fz_name, NULL));
	T_CHECK(errno != 0);
	memset(&si2, 0, sizeof si2);
	ir = shmp_segment_inspect(fz_name, &si2);
	T_CHECK(ir < 0 || !si2.valid);
	T_EQ(rmdir(fz_path), 0);
}

int main(void)
{
	t_watchdog(150);
	main_pid = getpid();
	fz_name = t_segname("fz");
	snprintf(fz_path, sizeof fz_path, "/dev/shm/shmp.%s", fz_name);
	src_name = t_segname("src");
	snprintf(src_path, sizeof src_path, "/dev/shm/shmp.%s", src_name);
	snprintf(tmp_target, sizeof tmp_target, "/tmp/shmp-fuzz-target-%d", (int)getpid());
	atexit(cleanup);
	unlink(fz_path);

	uint64_t seed = 0x7e6157e7f0220011ull;
	const char *e = getenv("SHMP_FUZZ_SEED");
	if (e && *e)
		seed = strtoull(e, NULL, 0);
	if (!seed)
		seed = 1;
	int iters = 2000;
	e = getenv("SHMP_FUZZ_ITERS");
	if (e && *e)
		iters = atoi(e);
	printf("seed 0x%llx (set SHMP_FUZZ_SEED to replay), %d random iterations\n",
	       (unsigned long long)seed, iters);
	fflush(stdout);
	rng_state = seed;
	double t0 = t_now();

	make_image();

	/* The worker runs every image; we watch it for crashes and hangs. */
	prog = mmap(NULL, sizeof *prog, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	T_CHECK(prog != MAP_FAILED);
	memset(prog, 0, sizeof *prog);
	atomic_store(&prog->it, UINT64_MAX);
	pid_t w = t_spawn(worker, &iters);
	uint64_t last = UINT64_MAX;
	double last_t = t_now();
	int st;
	for (;;) {
		pid_t r = waitpid(w, &st, WNOHANG);
		if (r == w)
			break;
		T_EQ(r, 0);
		uint64_t now = atomic_load(&prog->it);
		if (now != last) {
			last = now;
			last_t = t_now();
		} else if (t_now() - last_t > 10) {
			fprintf(stderr, "HANG: no progress for 10 s at iteration %llu (%s)\n",
				(unsigned long long)now, prog->what);
			kill(w, SIGKILL);
			waitpid(w, &st, 0);
			exit(1);
		}
		t_sleep_ms(10);
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "worker %s %d at iteration %llu (%s), seed 0x%llx\n",
			WIFEXITED(st) ? "exited with" : "killed by signal",
			WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), (unsigned long long)prog->it,
			prog->what, (unsigned long long)seed);
		exit(1);
	}
	printf("images: %d attached and exercised, %d refused, in %.2f s\n", prog->accepted,
	       prog->refused, t_now() - t0);
	/* Both paths must have run for the fuzzing to mean anything. */
	T_CHECK(prog->accepted >= 100 && prog->refused >= 100);

	test_links();
	T_EQ(shmp_segment_unlink(src_name), 0);
	struct stat sst;
	T_CHECK(lstat(fz_path, &sst) != 0);
	return 0;
}
