/* Attach checks who may have written the segment (the trust boundary):
 *
 * - A name squatted by another uid (`nobody`, mode 0666, a real shmp
 *   registry of its own) is refused by the victim's shmp_segment_attach,
 *   shmp_registry_attach and shmp_registry_open with SHMP_EOWNER, and not
 *   one byte of the squatter's file changes (nothing of the victim's is
 *   written there). SHMP_TRUST_UID alone is not enough for a file others may
 *   write; SHMP_TRUST_ANYONE is the explicit opt-in that accepts it.
 * - A segment of the caller's own uid that group or others may write is
 *   refused unless trusted: group-writable with SHMP_TRUST_GID of its
 *   group, others-writable only with SHMP_TRUST_ANYONE.
 * - A segment owned by another uid, private to it (0600), is refused unless
 *   SHMP_TRUST_UID names that uid.
 * - Read-only inspection (shmp_segment_inspect) reports owner, mode and
 *   whether attach would trust it, for all of these.
 * - Bad trust options are EINVAL.
 *
 * The second uid needs root: without it the test skips (77). */
#include "t.h"

#include <fcntl.h>
#include <grp.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define NOBODY 65534

/* As `nobody`: create a registry `name` with `mode` and a Value in it,
 * then exit (the file stays). */
static int squat(void *arg)
{
	const char *name = ((const char **)arg)[0];
	unsigned mode = (unsigned)(uintptr_t)((const char **)arg)[1];
	if (setgroups(0, NULL) != 0 || setresgid(NOBODY, NOBODY, NOBODY) != 0 ||
	    setresuid(NOBODY, NOBODY, NOBODY) != 0)
		return 2;
	umask(0);
	shmp_registry_t *r = shmp_registry_create(name, &SHMP_OPTS(shmp_registry_opts, .mode = mode,
								  .size = 1 << 20));
	if (!r)
		return 3;
	int64_t x = 666;
	if (!shmp_registry_value(r, "bait", 'q', &x, 0))
		return 4;
	shmp_registry_detach(r); /* leaves it there, as a squatter would */
	return 0;
}

static char *file_bytes(const char *name, size_t *len)
{
	char path[256];
	snprintf(path, sizeof path, "/dev/shm/shmp.%s", name);
	int fd = open(path, O_RDONLY);
	T_CHECK(fd >= 0);
	struct stat st;
	T_EQ(fstat(fd, &st), 0);
	char *b = malloc((size_t)st.st_size);
	T_CHECK(b);
	T_EQ(pread(fd, b, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return b;
}

static void refused(const char *name, const struct shmp_segment_opts *so, const struct shmp_registry_opts *ro)
{
	errno = 0;
	T_CHECK(shmp_segment_attach(name, so) == NULL);
	T_EQ(errno, SHMP_EOWNER);
	errno = 0;
	T_CHECK(shmp_registry_attach(name, ro) == NULL);
	T_EQ(errno, SHMP_EOWNER);
	errno = 0;
	T_CHECK(shmp_registry_open(name, ro) == NULL);
	T_EQ(errno, SHMP_EOWNER);
}

static void squatted(void)
{
	const char *name = t_segname("squat");
	const char *arg[2] = { name, (const char *)(uintptr_t)0666 };
	t_wait_ok(t_fork(squat, arg), 20);
	size_t len0, len1;
	char *before = file_bytes(name, &len0);

	struct shmp_segment_info info;
	T_EQ(shmp_segment_inspect(name, &info), 0);
	T_EQ(info.owner_uid, NOBODY);
	T_EQ(info.mode & 0777, 0666);
	T_EQ(info.trusted, 0);
	T_EQ(info.valid, 1); /* inspection may read it all the same */

	refused(name, NULL, NULL);
	/* Trusting the uid is not enough: others may write the file too. */
	struct shmp_segment_opts so = SHMP_OPTS(shmp_segment_opts, .trust = SHMP_TRUST_UID,
						.trust_uid = NOBODY);
	struct shmp_registry_opts ro = SHMP_OPTS(shmp_registry_opts, .trust = SHMP_TRUST_UID,
						 .trust_uid = NOBODY);
	refused(name, &so, &ro);

	/* Nothing of ours reached the file: not an attach count, not a name. */
	char *after = file_bytes(name, &len1);
	T_EQ(len1, len0);
	T_CHECK(memcmp(before, after, len0) == 0);
	free(after);

	/* The explicit opt-in: accepted, and the bait is readable. */
	ro = SHMP_OPTS(shmp_registry_opts, .trust = SHMP_TRUST_ANYONE);
	shmp_registry_t *r = shmp_registry_attach(name, &ro);
	T_CHECK(r);
	shmp_value_t *v = shmp_registry_value(r, "bait", 'q', NULL, SHMP_REG_GET_ONLY);
	T_CHECK(v);
	int64_t x;
	T_EQ(shmp_value_get_i64(v, &x), 0);
	T_EQ(x, 666);
	shmp_value_destroy(v);
	shmp_registry_detach(r);
	free(before);
	T_EQ(shmp_segment_unlink(name), 0);
}

static void foreign_private(void)
{
	const char *name = t_segname("foreign");
	const char *arg[2] = { name, (const char *)(uintptr_t)0600 };
	t_wait_ok(t_fork(squat, arg), 20);
	refused(name, NULL, NULL);
	struct shmp_segment_opts so = SHMP_OPTS(shmp_segment_opts, .trust = SHMP_TRUST_UID, .trust_uid = 1234);
	struct shmp_registry_opts ro = SHMP_OPTS(shmp_registry_opts, .trust = SHMP_TRUST_UID, .trust_uid = 1234);
	refused(name, &so, &ro); /* another uid trusted, not this one */
	so.trust_uid = NOBODY;
	ro.trust_uid = NOBODY;
	shmp_segment_t *s = shmp_segment_attach(name, &so);
	T_CHECK(s);
	shmp_segment_detach(s);
	shmp_registry_t *r = shmp_registry_open(name, &ro);
	T_CHECK(r);
	shmp_registry_detach(r);
	T_EQ(shmp_segment_unlink(name), 0);
}

/* Our own uid, but a mode that lets others write. */
static void own_but_shared(void)
{
	const char *name = t_segname("mode");
	for (int k = 0; k < 3; k++) {
		unsigned mode = k == 0 ? 0660 : k == 1 ? 0606 : 0620;
		shmp_segment_t *s = shmp_segment_create(name, 1 << 20, &SHMP_OPTS(shmp_segment_opts, .mode = mode));
		T_CHECK(s);
		struct shmp_segment_info info;
		T_EQ(shmp_segment_inspect(name, &info), 0);
		T_EQ(info.mode & 0777, mode);
		T_EQ(info.trusted, 0);
		errno = 0;
		T_CHECK(!shmp_segment_attach(name, NULL) && errno == SHMP_EOWNER);
		struct shmp_segment_opts g = SHMP_OPTS(shmp_segment_opts, .trust = SHMP_TRUST_GID,
						       .trust_gid = getegid());
		shmp_segment_t *a = shmp_segment_attach(name, &g);
		if (mode & 02) {
			T_CHECK(!a && errno == SHMP_EOWNER); /* o+w: only ANYONE */
		} else {
			T_CHECK(a);
			shmp_segment_detach(a);
		}
		g.trust_gid = getegid() + 1; /* another group */
		T_CHECK(!shmp_segment_attach(name, &g) && errno == SHMP_EOWNER);
		struct shmp_segment_opts any = SHMP_OPTS(shmp_segment_opts, .trust = SHMP_TRUST_ANYONE);
		T_CHECK((a = shmp_segment_attach(name, &any)));
		shmp_segment_detach(a);
		shmp_segment_destroy(s);
	}
	/* The default: our own and private is accepted. */
	shmp_segment_t *s = shmp_segment_create(name, 1 << 20, NULL);
	T_CHECK(s);
	struct shmp_segment_info info;
	T_EQ(shmp_segment_inspect(name, &info), 0);
	T_EQ(info.trusted, 1);
	T_EQ(info.owner_uid, geteuid());
	shmp_segment_t *a = shmp_segment_attach(name, NULL);
	T_CHECK(a);
	shmp_segment_detach(a);
	/* Bad options: unknown trust bits, creation fields on attach. */
	T_CHECK(!shmp_segment_attach(name, &SHMP_OPTS(shmp_segment_opts, .trust = 1u << 9)) && errno == EINVAL);
	T_CHECK(!shmp_segment_attach(name, &SHMP_OPTS(shmp_segment_opts, .mode = 0600)) && errno == EINVAL);
	shmp_segment_destroy(s);
}

int main(void)
{
	t_watchdog(60);
	own_but_shared();
	if (geteuid() != 0) {
		printf("not root: the second-uid cases are skipped\n");
		return T_SKIP;
	}
	squatted();
	foreign_private();
	return 0;
}
