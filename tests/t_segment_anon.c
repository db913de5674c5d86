/* Anonymous segments: no name, no file; inherited by children forked after
 * creation, both ways (a child's writes reach the parent and the parent's
 * the child, by offset); the allocator is shared: a block a child allocates
 * after the fork is counted in the parent's stats, holds the child's data,
 * and the parent can free it (and vice versa); a grandchild shares it too;
 * the memory outlives the creator's destroy in a child still mapping it. */
#include "t.h"

#include <dirent.h>

static shmp_segment_t *seg;

static uint64_t *u64_at(uint64_t off)
{
	uint64_t *p = shmp_segment_ptr(seg, off, sizeof(uint64_t));
	T_CHECK(p);
	return p;
}

static void pipe_put(int fd, uint64_t v)
{
	T_EQ(write(fd, &v, sizeof v), (ssize_t)sizeof v);
}

static uint64_t pipe_get(int fd)
{
	uint64_t v = 0;
	ssize_t r;
	while ((r = read(fd, &v, sizeof v)) < 0 && errno == EINTR)
		;
	T_EQ(r, (ssize_t)sizeof v);
	return v;
}

/* Count files in /dev/shm that start with "shmp." and contain our pid. */
static int our_files(void)
{
	char pid[32];
	snprintf(pid, sizeof pid, "-%d-", (int)getpid());
	DIR *d = opendir("/dev/shm");
	if (!d)
		return 0;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (strncmp(e->d_name, "shmp.", 5) == 0 && strstr(e->d_name, pid))
			n++;
	closedir(d);
	return n;
}

#define OFF_A 786432 /* plain offsets far into the heap, never allocated */
#define OFF_B 851968

static int child_write(void *arg)
{
	(void)arg;
	/* The parent wrote OFF_A before the fork. */
	if (*u64_at(OFF_A) != 0x0123456789abcdefull)
		return 2;
	*u64_at(OFF_B) = 0xfedcba9876543210ull;
	return 0;
}

static int child_alloc(void *arg)
{
	int fd = *(int *)arg;
	uint64_t off;
	if (shmp_segment_alloc(seg, 3000, 64, &off) != 0)
		return 2;
	unsigned char *p = shmp_segment_ptr(seg, off, 3000);
	if (!p)
		return 3;
	for (int i = 0; i < 3000; i++)
		p[i] = (unsigned char)(i * 7 + 1);
	pipe_put(fd, off);
	return 0;
}

static int grandchild(void *arg)
{
	(void)arg;
	*u64_at(OFF_A + 64) = 0x6a6a6a6a6a6a6a6aull;
	uint64_t off;
	return shmp_segment_alloc(seg, 100, 0, &off) == 0 ? 0 : 2;
}

static int child_spawns(void *arg)
{
	(void)arg;
	t_wait_ok(t_fork(grandchild, NULL), 10);
	return 0;
}

int main(void)
{
	t_watchdog(30);
	int files_before = our_files();
	seg = shmp_segment_create(NULL, 1 << 20, NULL);
	T_CHECK(seg);
	T_CHECK(shmp_segment_name(seg) == NULL);
	T_EQ(our_files(), files_before); /* nothing in /dev/shm */
	T_EQ(t_seg_stats(seg).attach_count, 1);
	T_EQ(t_seg_stats(seg).creator_pid, getpid());

	/* Child reads what the parent wrote before the fork, writes back. */
	*u64_at(OFF_A) = 0x0123456789abcdefull;
	T_EQ(*u64_at(OFF_B), 0);
	t_wait_ok(t_fork(child_write, NULL), 10);
	T_EQ(*u64_at(OFF_B), 0xfedcba9876543210ull);

	/* A child allocates after the fork: the parent sees the block in the
	 * stats, with the child's bytes, and frees it. */
	int fds[2];
	T_EQ(pipe(fds), 0);
	struct shmp_segment_stats st0 = t_seg_stats(seg);
	T_EQ(st0.live_blocks, 0);
	pid_t pid = t_fork(child_alloc, &fds[1]);
	uint64_t off = pipe_get(fds[0]);
	t_wait_ok(pid, 10);
	struct shmp_segment_stats st1 = t_seg_stats(seg);
	T_EQ(st1.live_blocks, 1);
	T_CHECK(st1.used_bytes >= 3000 + 16);
	unsigned char *p = shmp_segment_ptr(seg, off, 3000);
	T_CHECK(p);
	T_EQ(off % 64, 0);
	for (int i = 0; i < 3000; i++)
		T_EQ(p[i], (unsigned char)(i * 7 + 1));
	/* The parent's next allocation does not land on the child's block. */
	uint64_t mine;
	T_EQ(shmp_segment_alloc(seg, 3000, 64, &mine), 0);
	T_CHECK(mine >= off + 3000 || off >= mine + 3000);
	T_EQ(t_seg_stats(seg).live_blocks, 2);
	T_EQ(shmp_segment_free(seg, off), 0); /* a block the child allocated */
	T_EQ(shmp_segment_free(seg, off), -EINVAL);
	T_EQ(shmp_segment_free(seg, mine), 0);
	T_EQ(t_seg_stats(seg).live_blocks, 0);
	T_EQ(t_seg_stats(seg).used_bytes, 0);
	/* Forks do not count as attaches. */
	T_EQ(t_seg_stats(seg).attach_count, 1);

	/* A grandchild (forked by the child) shares it as well. */
	t_wait_ok(t_fork(child_spawns, NULL), 10);
	T_EQ(*u64_at(OFF_A + 64), 0x6a6a6a6a6a6a6a6aull);
	T_EQ(t_seg_stats(seg).live_blocks, 1);

	/* The parent destroys its handle; a child forked before keeps a
	 * working mapping (the memory lives until its last unmap). */
	int go[2], back[2];
	T_EQ(pipe(go), 0);
	T_EQ(pipe(back), 0);
	fflush(NULL);
	pid = fork();
	T_CHECK(pid >= 0);
	if (pid == 0) {
		if (pipe_get(go[0]) != 1)
			_exit(2);
		if (*u64_at(OFF_A) != 0x0123456789abcdefull)
			_exit(3);
		uint64_t o;
		if (shmp_segment_alloc(seg, 500, 0, &o) != 0)
			_exit(4);
		memset(shmp_segment_ptr(seg, o, 500), 0x42, 500);
		pipe_put(back[1], 7);
		_exit(0);
	}
	shmp_segment_destroy(seg);
	pipe_put(go[1], 1);
	T_EQ(pipe_get(back[0]), 7);
	t_wait_ok(pid, 10);
	close(fds[0]);
	close(fds[1]);
	close(go[0]);
	close(go[1]);
	close(back[0]);
	close(back[1]);
	T_EQ(our_files(), files_before);
	return 0;
}
