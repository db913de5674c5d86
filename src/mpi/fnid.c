/* private: task functions named so that another process of the same
 * program — on another node, loaded at other addresses — finds them.
 *
 * A function pointer means nothing in another process: ASLR loads the
 * executable and each library at other addresses. So a function travels as
 * (module, offset from the module's load address, its first code bytes):
 * the module by its GNU build-id (the linker's hash of its contents), or,
 * for a module built without one, by its file name and loaded size. The
 * receiver looks the module up among its own (dl_iterate_phdr), checks
 * that the address falls in one of its executable segments and that the
 * code there starts with the same bytes. Anything else is refused: a
 * chunk never makes a worker jump to an address it was merely told.
 */
#include "mpi_internal.h"

#include <elf.h>
#include <link.h>

#ifndef NT_GNU_BUILD_ID
#define NT_GNU_BUILD_ID 3
#endif

static uint32_t hash_name(const char *s)
{
	const char *b = strrchr(s, '/');
	b = b ? b + 1 : s;
	uint32_t h = 2166136261u; /* FNV-1a */
	for (; *b; b++)
		h = (h ^ (uint8_t)*b) * 16777619u;
	return h;
}

/* The module's identity: build-id if it has one, else name and size. */
static void module_id(struct dl_phdr_info *info, struct shmp__mpi_fnid *id)
{
	id->build_id_len = 0;
	id->load_size = 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type == PT_LOAD)
			id->load_size += ph->p_memsz;
		if (ph->p_type != PT_NOTE || id->build_id_len)
			continue;
		const char *p = (const char *)(info->dlpi_addr + ph->p_vaddr);
		const char *end = p + ph->p_memsz;
		while (p + sizeof(ElfW(Nhdr)) <= end) {
			const ElfW(Nhdr) *n = (const ElfW(Nhdr) *)(const void *)p;
			size_t name = (n->n_namesz + 3) & ~(size_t)3, desc = (n->n_descsz + 3) & ~(size_t)3;
			const char *nm = p + sizeof *n, *d = nm + name;
			if (d + desc > end)
				break;
			if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 && memcmp(nm, "GNU", 4) == 0 &&
			    n->n_descsz > 0) {
				id->build_id_len = n->n_descsz < 20 ? n->n_descsz : 20;
				memcpy(id->build_id, d, id->build_id_len);
				break;
			}
			p = d + desc;
		}
	}
	id->name_hash = id->build_id_len ? 0 : hash_name(info->dlpi_name ? info->dlpi_name : "");
}

/* The executable segment of this module holding [a, a+1), or false. */
static bool exec_range(struct dl_phdr_info *info, uintptr_t a, uintptr_t *lo, uintptr_t *hi)
{
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
			continue;
		uintptr_t l = info->dlpi_addr + ph->p_vaddr, h = l + ph->p_memsz;
		if (a >= l && a < h) {
			*lo = l;
			*hi = h;
			return true;
		}
	}
	return false;
}

struct find_ctx {
	uintptr_t addr;
	struct shmp__mpi_fnid *id;
	const struct shmp__mpi_fnid *want;
	uintptr_t found;
};

static int find_by_addr(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	struct find_ctx *f = arg;
	uintptr_t lo, hi;
	if (!exec_range(info, f->addr, &lo, &hi))
		return 0;
	module_id(info, f->id);
	f->id->offset = f->addr - info->dlpi_addr;
	size_t n = hi - f->addr < sizeof f->id->code ? hi - f->addr : sizeof f->id->code;
	f->id->code_len = (uint32_t)n;
	memcpy(f->id->code, (const void *)f->addr, n);
	f->found = f->addr;
	return 1;
}

int shmp__mpi_fnid_of(shmp_task_fn fn, struct shmp__mpi_fnid *id)
{
	memset(id, 0, sizeof *id);
	struct find_ctx f = { .addr = (uintptr_t)fn, .id = id };
	if (!fn || !dl_iterate_phdr(find_by_addr, &f))
		return -SHMP_EBADFN;
	return 0;
}

static int find_by_id(struct dl_phdr_info *info, size_t size, void *arg)
{
	(void)size;
	struct find_ctx *f = arg;
	const struct shmp__mpi_fnid *w = f->want;
	struct shmp__mpi_fnid mine;
	module_id(info, &mine);
	if (mine.build_id_len != w->build_id_len ||
	    (w->build_id_len ? memcmp(mine.build_id, w->build_id, w->build_id_len) != 0
			     : mine.name_hash != w->name_hash || mine.load_size != w->load_size))
		return 0;
	if (w->offset > UINTPTR_MAX - info->dlpi_addr)
		return 1; /* the module, but no function there */
	uintptr_t a = info->dlpi_addr + (uintptr_t)w->offset, lo, hi;
	if (w->code_len == 0 || w->code_len > sizeof w->code || !exec_range(info, a, &lo, &hi) ||
	    hi - a < w->code_len || memcmp((const void *)a, w->code, w->code_len) != 0)
		return 1;
	f->found = a;
	return 1;
}

/* A few resolved functions per process: a worker runs many chunks of one. */
static struct {
	struct shmp__mpi_fnid id;
	uintptr_t addr;
} cache[8];
static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned cache_next;

shmp_task_fn shmp__mpi_fnid_resolve(const struct shmp__mpi_fnid *id)
{
	pthread_mutex_lock(&cache_mu);
	for (unsigned i = 0; i < 8; i++)
		if (cache[i].addr && memcmp(&cache[i].id, id, sizeof *id) == 0) {
			uintptr_t a = cache[i].addr;
			pthread_mutex_unlock(&cache_mu);
			return (shmp_task_fn)a;
		}
	pthread_mutex_unlock(&cache_mu);
	struct find_ctx f = { .want = id };
	dl_iterate_phdr(find_by_id, &f);
	if (!f.found)
		return NULL;
	pthread_mutex_lock(&cache_mu);
	cache[cache_next].id = *id;
	cache[cache_next].addr = f.found;
	cache_next = (cache_next + 1) % 8;
	pthread_mutex_unlock(&cache_mu);
	return (shmp_task_fn)f.found;
}
