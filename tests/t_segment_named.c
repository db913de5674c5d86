/* Named segments: create/attach/detach/destroy; O_EXCL (EEXIST); invalid
 * names (EINVAL, ENAMETOOLONG); the file /dev/shm/shmp.<name> with mode 0600
 * or opts.mode; attach counts; unlink semantics (a process still mapping an
 * unlinked segment keeps using it, new attaches get ENOENT);
 * SHMP_SEGMENT_UNLINK_ON_LAST_DETACH, also when a forked child detaches its
 * inherited handle; an unrelated process attaching by name sees the data by
 * offset; ptr/offset bounds; attach and create refuse symlinks. */
#include "t.h"

#include <fcntl.h>
#include <sys/stat.h>

static pid_t main_pid;
static char made[32][256];       /* names made by this test */
static char made_path[32][300];  /* and their files, unlinked at exit */
static int nmade;

static void cleanup(void)
{
	if (getpid() != main_pid)
		return; /* a failing child must not remove the parent's files */
	for (int i = 0; i < nmade; i++)
		unlink(made_path[i]); /* removes symlinks too, not their targets */
}

/* Remember a name for the exit-time cleanup and return it. */
static const char *track(const char *name)
{
	T_CHECK(nmade < 32 && strlen(name) < 256);
	strcpy(made[nmade], name);
	strcpy(made_path[nmade], "/dev/shm/shmp.");
	strcat(made_path[nmade], name);
	return made[nmade++];
}

static void path_of(const char *name, char *out, size_t len)
{
	snprintf(out, len, "/dev/shm/shmp.%s", name);
}

static int file_exists(const char *name)
{
	char p[300];
	struct stat st;
	path_of(name, p, sizeof p);
	return lstat(p, &st) == 0;
}

static void put_u64(shmp_segment_t *s, uint64_t off, uint64_t v)
{
	uint64_t *p = shmp_segment_ptr(s, off, sizeof v);
	T_CHECK(p);
	*p = v;
}

static uint64_t get_u64(shmp_segment_t *s, uint64_t off)
{
	uint64_t *p = shmp_segment_ptr(s, off, sizeof(uint64_t));
	T_CHECK(p);
	return *p;
}

static void pipe_put(int fd, char c)
{
	T_EQ(write(fd, &c, 1), 1);
}

static char pipe_get(int fd)
{
	char c = 0;
	ssize_t r;
	while ((r = read(fd, &c, 1)) < 0 && errno == EINTR)
		;
	T_EQ(r, 1);
	return c;
}

static void test_names(void)
{
	const char *bad[] = { "", ".x", "a/b", "a b", "..", "/abs" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		T_EQ(shmp_segment_name_check(bad[i]), -EINVAL);
		errno = 0;
		T_CHECK(shmp_segment_create(bad[i], 65536, NULL) == NULL);
		T_EQ(errno, EINVAL);
		errno = 0;
		T_CHECK(shmp_segment_attach(bad[i], NULL) == NULL);
		T_EQ(errno, EINVAL);
		T_EQ(shmp_segment_unlink(bad[i]), -EINVAL);
	}
	T_EQ(shmp_segment_name_check(NULL), -EINVAL);
	errno = 0;
	T_CHECK(shmp_segment_attach(NULL, NULL) == NULL);
	T_EQ(errno, EINVAL);
	T_EQ(shmp_segment_unlink(NULL), -EINVAL);

	/* Exactly SHMP_SEGMENT_NAME_MAX bytes is valid and works end to end
	 * (the path buffer must hold it); one more is ENAMETOOLONG. */
	char name[SHMP_SEGMENT_NAME_MAX + 2];
	snprintf(name, sizeof name, "%s", t_segname("long"));
	size_t n = strlen(name);
	memset(name + n, 'x', SHMP_SEGMENT_NAME_MAX - n);
	name[SHMP_SEGMENT_NAME_MAX] = '\0';
	T_EQ(strlen(name), 200);
	T_EQ(shmp_segment_name_check(name), 0);
	const char *longname = track(name);
	shmp_segment_t *s = shmp_segment_create(longname, 65536, NULL);
	T_CHECK(s);
	T_CHECK(file_exists(longname));
	shmp_segment_destroy(s);
	T_CHECK(!file_exists(longname));

	name[SHMP_SEGMENT_NAME_MAX] = 'x';
	name[SHMP_SEGMENT_NAME_MAX + 1] = '\0';
	T_EQ(strlen(name), 201);
	T_EQ(shmp_segment_name_check(name), -ENAMETOOLONG);
	errno = 0;
	T_CHECK(shmp_segment_create(name, 65536, NULL) == NULL);
	T_EQ(errno, ENAMETOOLONG);
	errno = 0;
	T_CHECK(shmp_segment_attach(name, NULL) == NULL);
	T_EQ(errno, ENAMETOOLONG);
	T_CHECK(!file_exists(name));
}

static void test_create_file(void)
{
	const char *name = track(t_segname("file"));
	char p[300];
	struct stat st;
	path_of(name, p, sizeof p);

	shmp_segment_t *s = shmp_segment_create(name, 100000, NULL);
	T_CHECK(s);
	T_CHECK(strcmp(shmp_segment_name(s), name) == 0);
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	size_t sz = shmp_segment_size(s);
	T_CHECK(sz >= 100000 && sz % ps == 0 && sz < 100000 + ps);
	T_EQ(lstat(p, &st), 0);
	T_CHECK(S_ISREG(st.st_mode));
	T_EQ(st.st_mode & 07777, 0600);
	T_EQ(st.st_size, (off_t)sz);
	T_EQ(st.st_uid, geteuid());
	struct shmp_segment_stats ss;
	T_EQ(shmp_segment_stats(s, &ss), 0);
	T_EQ(ss.size, sz);
	T_EQ(ss.creator_pid, getpid());
	T_EQ(ss.attach_count, 1);

	/* O_EXCL: the name is taken, and the failed create must not have
	 * truncated or reinitialised the existing segment. */
	uint64_t off;
	T_EQ(shmp_segment_alloc(s, 64, 0, &off), 0);
	put_u64(s, off, 0x1122334455667788ull);
	errno = 0;
	T_CHECK(shmp_segment_create(name, 65536, NULL) == NULL);
	T_EQ(errno, EEXIST);
	T_EQ(get_u64(s, off), 0x1122334455667788ull);
	T_EQ(lstat(p, &st), 0);
	T_EQ(st.st_size, (off_t)sz);
	shmp_segment_destroy(s);
	T_EQ(lstat(p, &st), -1);
	T_EQ(errno, ENOENT);

	/* A tiny size is raised to the minimum. */
	s = shmp_segment_create(name, 1, NULL);
	T_CHECK(s);
	T_EQ(shmp_segment_size(s), SHMP_SEGMENT_MIN_SIZE);
	shmp_segment_destroy(s);

	/* opts.mode widens the permissions, exactly. */
	struct shmp_segment_opts o = SHMP_OPTS(shmp_segment_opts, .mode = 0640);
	s = shmp_segment_create(name, 65536, &o);
	T_CHECK(s);
	T_EQ(lstat(p, &st), 0);
	T_EQ(st.st_mode & 07777, 0640);
	shmp_segment_destroy(s);
	T_CHECK(!file_exists(name));
}

static void test_attach_counts(void)
{
	const char *name = track(t_segname("count"));
	errno = 0;
	T_CHECK(shmp_segment_attach(name, NULL) == NULL);
	T_EQ(errno, ENOENT);

	shmp_segment_t *a = shmp_segment_create(name, 65536, NULL);
	T_CHECK(a);
	T_EQ(t_seg_stats(a).attach_count, 1);
	shmp_segment_t *b = shmp_segment_attach(name, NULL);
	T_CHECK(b);
	T_CHECK(strcmp(shmp_segment_name(b), name) == 0);
	T_EQ(shmp_segment_size(b), shmp_segment_size(a));
	/* A second, distinct mapping of the same memory. */
	T_CHECK(shmp_segment_base(b) != shmp_segment_base(a));
	T_EQ(t_seg_stats(a).attach_count, 2);
	shmp_segment_t *c = shmp_segment_attach(name, NULL);
	T_CHECK(c);
	T_EQ(t_seg_stats(b).attach_count, 3);

	/* Offsets mean the same bytes in every mapping. */
	uint64_t off;
	T_EQ(shmp_segment_alloc(b, 100, 0, &off), 0);
	put_u64(b, off, 0xfeedfacecafebeefull);
	T_EQ(get_u64(a, off), 0xfeedfacecafebeefull);
	T_EQ(get_u64(c, off), 0xfeedfacecafebeefull);
	struct shmp_segment_stats st;
	T_EQ(shmp_segment_stats(c, &st), 0);
	T_EQ(st.live_blocks, 1);
	T_EQ(shmp_segment_free(c, off), 0); /* freed through another mapping */
	T_EQ(shmp_segment_stats(a, &st), 0);
	T_EQ(st.live_blocks, 0);

	shmp_segment_detach(c);
	T_EQ(t_seg_stats(a).attach_count, 2);
	/* destroy by a handle that did not create it only detaches */
	shmp_segment_destroy(b);
	T_EQ(t_seg_stats(a).attach_count, 1);
	T_CHECK(file_exists(name));

	/* detach by the creator does not unlink either */
	shmp_segment_detach(a);
	T_CHECK(file_exists(name));
	a = shmp_segment_attach(name, NULL);
	T_CHECK(a);
	T_EQ(t_seg_stats(a).attach_count, 1);
	shmp_segment_detach(a);
	T_EQ(shmp_segment_unlink(name), 0);
	T_CHECK(!file_exists(name));
	T_EQ(shmp_segment_unlink(name), -ENOENT);
	errno = 0;
	T_CHECK(shmp_segment_attach(name, NULL) == NULL);
	T_EQ(errno, ENOENT);

	/* NULL is accepted by detach/destroy */
	shmp_segment_detach(NULL);
	shmp_segment_destroy(NULL);
}

#define OFF_MAGIC 4096
#define OFF_REPLY 8192

/* Unlink semantics: a child attached before the creator's destroy keeps a
 * working, still shared mapping; new attaches fail with ENOENT. */
static void test_unlink_while_mapped(void)
{
	const char *name = track(t_segname("unl"));
	shmp_segment_t *s = shmp_segment_create(name, 65536, NULL);
	T_CHECK(s);
	put_u64(s, OFF_MAGIC, 0xabcdef0123456789ull);
	int to_child[2], to_parent[2];
	T_EQ(pipe(to_child), 0);
	T_EQ(pipe(to_parent), 0);
	fflush(NULL);
	pid_t pid = fork();
	T_CHECK(pid >= 0);
	if (pid == 0) {
		shmp_segment_t *c = shmp_segment_attach(name, NULL);
		if (!c)
			_exit(2);
		pipe_put(to_parent[1], 'a');
		if (pipe_get(to_child[0]) != 'd')
			_exit(3);
		/* unlinked now; the mapping must still work */
		if (get_u64(c, OFF_MAGIC) != 0xabcdef0123456789ull)
			_exit(4);
		put_u64(c, OFF_REPLY, 0x5555aaaa5555aaaaull);
		pipe_put(to_parent[1], 'w');
		if (pipe_get(to_child[0]) != 'q')
			_exit(5);
		if (get_u64(c, OFF_MAGIC) != 0x1111222233334444ull)
			_exit(6);
		shmp_segment_detach(c);
		_exit(0);
	}
	T_EQ(pipe_get(to_parent[0]), 'a');
	/* A second handle of our own, attached before the unlink. */
	shmp_segment_t *s2 = shmp_segment_attach(name, NULL);
	T_CHECK(s2);
	T_EQ(t_seg_stats(s).attach_count, 3);
	shmp_segment_destroy(s);
	T_CHECK(!file_exists(name));
	errno = 0;
	T_CHECK(shmp_segment_attach(name, NULL) == NULL);
	T_EQ(errno, ENOENT);
	pipe_put(to_child[1], 'd');
	T_EQ(pipe_get(to_parent[0]), 'w');
	/* the child's write reached us through the unlinked memory */
	T_EQ(get_u64(s2, OFF_REPLY), 0x5555aaaa5555aaaaull);
	put_u64(s2, OFF_MAGIC, 0x1111222233334444ull);
	pipe_put(to_child[1], 'q');
	t_wait_ok(pid, 10);
	T_EQ(t_seg_stats(s2).attach_count, 1);
	shmp_segment_detach(s2);
	T_CHECK(!file_exists(name));
	close(to_child[0]);
	close(to_child[1]);
	close(to_parent[0]);
	close(to_parent[1]);
}

static int child_detach_inherited(void *arg)
{
	shmp_segment_detach(arg);
	return 0;
}

static void test_unlink_on_last_detach(void)
{
	const char *name = track(t_segname("last"));
	struct shmp_segment_opts o = SHMP_OPTS(shmp_segment_opts,
					       .flags = SHMP_SEGMENT_UNLINK_ON_LAST_DETACH);
	shmp_segment_t *a = shmp_segment_create(name, 65536, &o);
	T_CHECK(a);
	shmp_segment_t *b = shmp_segment_attach(name, NULL);
	T_CHECK(b);
	shmp_segment_detach(a);
	T_CHECK(file_exists(name)); /* b still attached */
	T_EQ(t_seg_stats(b).attach_count, 1);
	shmp_segment_detach(b);
	T_CHECK(!file_exists(name)); /* last detach unlinked it */

	/* The creator's detach, when it is the last, unlinks too. */
	a = shmp_segment_create(name, 65536, &o);
	T_CHECK(a);
	shmp_segment_detach(a);
	T_CHECK(!file_exists(name));

	/* A forked child that detaches the handle it inherited is not the
	 * last user: the parent still maps the segment and holds its handle,
	 * so the segment must stay ("the segment stays for others") and the
	 * parent's own detach is the one that unlinks it. */
	a = shmp_segment_create(name, 65536, &o);
	T_CHECK(a);
	t_wait_ok(t_fork(child_detach_inherited, a), 10);
	if (!file_exists(name) || t_seg_stats(a).attach_count != 1) {
		fprintf(stderr, "child's detach of an inherited handle changed the "
			"parent's segment: exists=%d attach_count=%u (want 1, 1)\n",
			file_exists(name), t_seg_stats(a).attach_count);
		shmp_segment_detach(a);
		exit(1);
	}
	shmp_segment_detach(a);
	T_CHECK(!file_exists(name));
}

/* A process that does not inherit the mapping attaches by name and meets
 * the parent's data at the same offsets. */
static void test_unrelated_attach(void)
{
	const char *name = track(t_segname("unrel"));
	shmp_segment_t *s = shmp_segment_create(name, 1 << 20, NULL);
	T_CHECK(s);
	uint64_t off;
	T_EQ(shmp_segment_alloc(s, 4096, 64, &off), 0);
	uint64_t *p = shmp_segment_ptr(s, off, 4096);
	T_CHECK(p);
	for (int i = 0; i < 512; i++)
		p[i] = 0x0101010101010101ull * (uint64_t)(i & 0xff) ^ (uint64_t)i << 40;
	int fds[2];
	T_EQ(pipe(fds), 0);
	T_EQ(write(fds[1], &off, sizeof off), (ssize_t)sizeof off);
	fflush(NULL);
	pid_t pid = fork();
	T_CHECK(pid >= 0);
	if (pid == 0) {
		uint64_t o;
		if (read(fds[0], &o, sizeof o) != (ssize_t)sizeof o)
			_exit(2);
		shmp_segment_t *c = shmp_segment_attach(name, NULL);
		if (!c || shmp_segment_base(c) == shmp_segment_base(s))
			_exit(3);
		if (shmp_segment_size(c) != shmp_segment_size(s))
			_exit(4);
		uint64_t *q = shmp_segment_ptr(c, o, 4096);
		if (!q)
			_exit(5);
		for (int i = 0; i < 512; i++)
			if (q[i] != (0x0101010101010101ull * (uint64_t)(i & 0xff) ^ (uint64_t)i << 40))
				_exit(6);
		/* allocate through our own mapping: the allocator is shared */
		uint64_t o2;
		if (shmp_segment_alloc(c, 200, 0, &o2) != 0)
			_exit(7);
		uint64_t *r = shmp_segment_ptr(c, o2, 200);
		if (!r)
			_exit(8);
		r[0] = 0x600d600d600d600dull;
		q[0] = o2;
		shmp_segment_detach(c);
		_exit(0);
	}
	t_wait_ok(pid, 10);
	close(fds[0]);
	close(fds[1]);
	uint64_t o2 = p[0];
	T_CHECK(o2 != off);
	T_EQ(get_u64(s, o2), 0x600d600d600d600dull);
	struct shmp_segment_stats st;
	T_EQ(shmp_segment_stats(s, &st), 0);
	T_EQ(st.live_blocks, 2);
	T_EQ(st.attach_count, 1);
	T_EQ(shmp_segment_free(s, o2), 0);
	T_EQ(shmp_segment_free(s, off), 0);
	shmp_segment_destroy(s);
	T_CHECK(!file_exists(name));
}

static void test_ptr_bounds(void)
{
	const char *name = track(t_segname("ptr"));
	shmp_segment_t *s = shmp_segment_create(name, 65536, NULL);
	T_CHECK(s);
	char *base = shmp_segment_base(s);
	size_t sz = shmp_segment_size(s);
	T_CHECK(base);
	T_CHECK(shmp_segment_ptr(s, 0, sz) == base);
	T_CHECK(shmp_segment_ptr(s, 100, 8) == base + 100);
	T_CHECK(shmp_segment_ptr(s, sz - 1, 1) == base + sz - 1);

	struct { uint64_t off; size_t len; } bad[] = {
		{ sz, 1 }, { sz - 1, 2 }, { 0, sz + 1 }, { sz + 1, 0 }, { UINT64_MAX, 1 },
		{ UINT64_MAX, 0 }, { 8, SIZE_MAX }, { sz / 2, SIZE_MAX - sz / 2 + 10 },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		errno = 0;
		T_CHECK(shmp_segment_ptr(s, bad[i].off, bad[i].len) == NULL);
		T_EQ(errno, EINVAL);
	}
	errno = 0;
	T_CHECK(shmp_segment_ptr(NULL, 0, 1) == NULL);
	T_EQ(errno, EINVAL);

	uint64_t off = 12345;
	T_EQ(shmp_segment_offset(s, base + 100, &off), 0);
	T_EQ(off, 100);
	T_EQ(shmp_segment_offset(s, base, &off), 0);
	T_EQ(off, 0);
	T_EQ(shmp_segment_offset(s, base + sz - 1, &off), 0);
	T_EQ(off, sz - 1);
	off = 777;
	T_EQ(shmp_segment_offset(s, base - 1, &off), -EINVAL);
	T_EQ(shmp_segment_offset(s, base + sz + 1, &off), -EINVAL);
	T_EQ(shmp_segment_offset(s, &off, &off), -EINVAL);
	T_EQ(shmp_segment_offset(s, NULL, &off), -EINVAL);
	T_EQ(off, 777); /* untouched on failure */
	T_EQ(shmp_segment_offset(NULL, base, &off), -EINVAL);
	T_EQ(shmp_segment_offset(s, base, NULL), -EINVAL);

	/* Round trip through another mapping. */
	shmp_segment_t *b = shmp_segment_attach(name, NULL);
	T_CHECK(b);
	T_EQ(shmp_segment_offset(b, (char *)shmp_segment_base(b) + 5000, &off), 0);
	T_EQ(off, 5000);
	T_CHECK(shmp_segment_ptr(b, off, 1) == (char *)shmp_segment_base(b) + 5000);
	shmp_segment_detach(b);
	shmp_segment_destroy(s);
}

/* Attach never follows a symlink; create never creates through one. */
static void test_symlinks(void)
{
	const char *target = track(t_segname("symtgt"));
	const char *link = track(t_segname("symlnk"));
	const char *dangling = track(t_segname("symdng"));
	const char *nowhere = track(t_segname("symnowhere"));
	char tp[300], lp[300], dp[300], np[300];
	path_of(target, tp, sizeof tp);
	path_of(link, lp, sizeof lp);
	path_of(dangling, dp, sizeof dp);
	path_of(nowhere, np, sizeof np);

	shmp_segment_t *s = shmp_segment_create(target, 65536, NULL);
	T_CHECK(s);
	T_EQ(symlink(tp, lp), 0);
	errno = 0;
	shmp_segment_t *x = shmp_segment_attach(link, NULL);
	if (x) {
		fprintf(stderr, "attach followed the symlink %s -> %s\n", lp, tp);
		shmp_segment_detach(x);
		exit(1);
	}
	T_CHECK(errno != 0);
	T_EQ(t_seg_stats(s).attach_count, 1); /* nobody attached through the link */

	/* create on the symlink's name: taken (O_EXCL), target untouched */
	errno = 0;
	T_CHECK(shmp_segment_create(link, 65536, NULL) == NULL);
	T_EQ(errno, EEXIST);
	T_EQ(t_seg_stats(s).attach_count, 1);

	/* a dangling symlink: create must not make the file it points at */
	T_EQ(symlink(np, dp), 0);
	errno = 0;
	T_CHECK(shmp_segment_create(dangling, 65536, NULL) == NULL);
	T_EQ(errno, EEXIST);
	struct stat st;
	T_EQ(lstat(np, &st), -1);

	T_EQ(unlink(lp), 0);
	T_EQ(unlink(dp), 0);
	shmp_segment_destroy(s);
	T_CHECK(!file_exists(target));
}

int main(void)
{
	t_watchdog(60);
	main_pid = getpid();
	atexit(cleanup);
	umask(022);
	test_names();
	test_create_file();
	test_attach_counts();
	test_unlink_while_mapped();
	test_unrelated_attach();
	test_ptr_bounds();
	test_symlinks();
	test_unlink_on_last_detach(); /* last: may report the inherited-detach bug */
	return 0;
}
