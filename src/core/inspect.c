/* private: shmp_segment_inspect — what tools know about a named segment
 * without disturbing it: it maps the segment read-only (no attach counted)
 * and asks /proc which live processes map it. */
#include "internal.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>

/* Live processes whose maps hold /dev/shm/shmp.<name> (not "(deleted)":
 * that is an older segment of the same name). Processes whose maps we may
 * not read (other users) are not counted: shmp segments are 0600 unless a
 * mode widened them. */
static uint32_t count_users(const char *name)
{
	char want[SHMP_SEGMENT_NAME_MAX + 32];
	int wl = snprintf(want, sizeof want, "/dev/shm/shmp.%s", name);
	DIR *dir = opendir("/proc");
	if (!dir)
		return 0;
	uint32_t users = 0;
	char path[64], line[1024];
	struct dirent *de;
	while ((de = readdir(dir))) {
		char *end;
		long pid = strtol(de->d_name, &end, 10);
		if (*end || pid <= 0)
			continue;
		snprintf(path, sizeof path, "/proc/%ld/maps", pid);
		FILE *f = fopen(path, "re");
		if (!f)
			continue;
		bool found = false;
		while (!found && fgets(line, sizeof line, f)) {
			char *p = strstr(line, want);
			if (!p)
				continue;
			p += wl;
			found = *p == '\n' || *p == 0;
		}
		fclose(f);
		if (found && !shmp__tid_dead((pid_t)pid))
			users++;
	}
	closedir(dir);
	return users;
}

int shmp_segment_inspect(const char *name, struct shmp_segment_info *info)
{
	if (!info)
		return -EINVAL;
	int r = shmp_segment_name_check(name);
	if (r < 0)
		return r;
	memset(info, 0, sizeof *info);
	snprintf(info->name, sizeof info->name, "%s", name);
	info->objects = -1;
	/* Owner and mode from the name itself (lstat: a symlink is reported as
	 * such, never followed), also for segments we cannot open. */
	char path[SHMP_SEGMENT_NAME_MAX + 32];
	snprintf(path, sizeof path, "/dev/shm/shmp.%s", name);
	struct stat st;
	if (lstat(path, &st) == 0) {
		info->owner_uid = st.st_uid;
		info->owner_gid = st.st_gid;
		info->mode = st.st_mode & 07777;
		struct shmp_segment_opts none = { .sz = sizeof none };
		info->trusted = S_ISREG(st.st_mode) && shmp__segment_trusted(&st, &none) == 0;
	}
	/* Count users before mapping it ourselves. */
	info->users = count_users(name);
	shmp_segment_t *seg = shmp__segment_attach(name, true, NULL);
	if (!seg) {
		info->error = -errno;
		if (errno == ENOENT)
			return -ENOENT;
		return 0; /* exists, but unreadable or invalid: reported in info */
	}
	const struct shmp__seg_hdr *h = seg->hdr;
	info->valid = 1;
	info->size = seg->size;
	info->creator_pid = h->creator_pid;
	info->creator_alive = h->creator_pid > 0 && !shmp__tid_dead(h->creator_pid);
	info->attach_count = atomic_load_explicit(&((struct shmp__seg_hdr *)h)->attach_count, memory_order_relaxed);
	info->used_bytes = h->used_bytes;
	shmp_registry_t *reg = shmp_registry_of(seg);
	if (reg) {
		info->objects = shmp_registry_count(reg);
		shmp_registry_detach(reg);
	}
	info->persistent = (h->flags & SHMP_SEGMENT_PERSISTENT) != 0;
	info->stale = !info->creator_alive && info->users == 0 && !info->persistent;
	shmp_segment_detach(seg);
	return 0;
}
