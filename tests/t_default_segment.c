/* The default segment: shmp_segment_default() returns one anonymous segment
 * on every call, 64 GiB of lazily reserved address space unless SHMP_DEFAULT_SEGMENT_SIZE says otherwise
 * (read at first use: "1M", "1m", "1024K", "1048576" all give 1 MiB);
 * objects created without a segment land in it; a child forked after
 * creation sees the parent's writes, the parent sees the child's and the
 * child's allocations. With 1 MiB, filling it makes shmp_array_create (and
 * shmp_value_create, shmp_lock_create) fail with errno SHMP_ESEGFULL while every
 * existing array keeps its contents, and freed room is usable again,
 * zero-filled. */
#include "t.h"

#define MIB (1u << 20)

static int inside(shmp_segment_t *s, const void *p, size_t len)
{
	const char *b = shmp_segment_base(s);
	return (const char *)p >= b && (const char *)p + len <= b + shmp_segment_size(s);
}

/* Child: the variable set before the first use decides the size. */
static int child_size(void *arg)
{
	T_EQ(setenv("SHMP_DEFAULT_SEGMENT_SIZE", arg, 1), 0);
	shmp_segment_t *s = shmp_segment_default();
	T_CHECK(s);
	if (shmp_segment_size(s) != MIB) {
		fprintf(stderr, "SHMP_DEFAULT_SEGMENT_SIZE=%s gave %zu bytes\n",
			(const char *)arg, shmp_segment_size(s));
		return 1;
	}
	return 0;
}

#define NITEMS 1000
#define MAXARR 512

static int64_t item(int a, int i)
{
	return (int64_t)a * 1000003 + i * 7 - 500;
}

static void check_array(shmp_array_t *a, int k)
{
	static int64_t buf[NITEMS];
	T_EQ(shmp_array_len(a), NITEMS);
	T_EQ(shmp_array_read(a, 0, NITEMS, buf), 0);
	for (int i = 0; i < NITEMS; i++) {
		if (buf[i] != item(k, i)) {
			fprintf(stderr, "array %d item %d is %lld, want %lld\n", k, i,
				(long long)buf[i], (long long)item(k, i));
			exit(1);
		}
	}
}

/* Child with a 1 MiB default segment: fill it. */
static int child_fill(void *arg)
{
	(void)arg;
	T_EQ(setenv("SHMP_DEFAULT_SEGMENT_SIZE", "1M", 1), 0);
	static shmp_array_t *arr[MAXARR];
	static int64_t init[NITEMS];
	int n = 0;
	for (;;) {
		for (int i = 0; i < NITEMS; i++)
			init[i] = item(n, i);
		errno = 0;
		shmp_array_t *a = shmp_array_create('q', NITEMS, init, NULL);
		if (!a) {
			if (errno != SHMP_ESEGFULL) {
				fprintf(stderr, "array %d: create failed with errno %d (%s), want ENOMEM\n",
					n, errno, shmp_strerror(errno));
				return 1;
			}
			break;
		}
		T_CHECK(n < MAXARR);
		arr[n++] = a;
	}
	T_EQ(shmp_segment_size(shmp_segment_default()), MIB);
	/* 1 MiB holds at most 131 arrays of 8000 bytes; with modest overhead
	 * at least half that many fit. */
	T_CHECK(n >= 64 && n <= 131);
	struct shmp_segment_stats full = t_seg_stats(shmp_segment_default());
	T_EQ(full.live_blocks, (uint64_t)n);

	/* More failures change nothing. */
	errno = 0;
	T_CHECK(shmp_array_create('q', NITEMS, NULL, NULL) == NULL);
	T_EQ(errno, SHMP_ESEGFULL);
	errno = 0;
	T_CHECK(shmp_array_create('b', 4 * MIB, NULL, NULL) == NULL);
	T_EQ(errno, SHMP_ESEGFULL);
	T_EQ(t_seg_stats(shmp_segment_default()).live_blocks, full.live_blocks);
	T_EQ(t_seg_stats(shmp_segment_default()).used_bytes, full.used_bytes);

	/* Small objects take what is left, until that too is gone. */
	static shmp_value_t *vals[4096];
	int nv = 0;
	for (;;) {
		errno = 0;
		int64_t x = 1000 + nv;
		shmp_value_t *v = shmp_value_create('q', &x, NULL);
		if (!v) {
			T_EQ(errno, SHMP_ESEGFULL);
			break;
		}
		T_CHECK(nv < 4096);
		vals[nv++] = v;
	}
	errno = 0;
	T_CHECK(shmp_lock_create(NULL) == NULL);
	T_EQ(errno, SHMP_ESEGFULL);
	errno = 0;
	T_CHECK(shmp_array_create('b', 1, NULL, NULL) == NULL);
	T_EQ(errno, SHMP_ESEGFULL);

	for (int k = 0; k < n; k++)
		check_array(arr[k], k);
	for (int k = 0; k < nv; k++) {
		int64_t x;
		T_EQ(shmp_value_get_i64(vals[k], &x), 0);
		T_EQ(x, 1000 + k);
	}

	/* Room freed is usable again, and a new array there is zero-filled. */
	shmp_array_destroy(arr[n / 2]);
	shmp_array_t *a = shmp_array_create('q', NITEMS, NULL, NULL);
	T_CHECK(a);
	for (int i = 0; i < NITEMS; i++) {
		int64_t x = -1;
		T_EQ(shmp_array_get_i64(a, (size_t)i, &x), 0);
		T_EQ(x, 0);
	}
	for (int i = 0; i < NITEMS; i++)
		T_EQ(shmp_array_set_i64(a, (size_t)i, item(n / 2, i)), 0);
	arr[n / 2] = a;
	errno = 0;
	T_CHECK(shmp_array_create('q', NITEMS, NULL, NULL) == NULL);
	T_EQ(errno, SHMP_ESEGFULL);
	for (int k = 0; k < n; k++)
		check_array(arr[k], k);

	for (int k = 0; k < n; k++)
		shmp_array_destroy(arr[k]);
	for (int k = 0; k < nv; k++)
		shmp_value_destroy(vals[k]);
	T_EQ(t_seg_stats(shmp_segment_default()).live_blocks, 0);
	T_EQ(t_seg_stats(shmp_segment_default()).used_bytes, 0);
	return 0;
}

struct shared {
	shmp_value_t *v;
	shmp_array_t *a;
	int fd;
};

static int child_rw(void *arg)
{
	struct shared *sh = arg;
	shmp_segment_t *s = shmp_segment_default();
	T_CHECK(s);
	/* the inherited default segment, not a new one */
	T_CHECK(inside(s, shmp_value_ptr(sh->v), 8));
	int64_t x;
	T_EQ(shmp_value_get_i64(sh->v, &x), 0);
	T_EQ(x, 7);
	T_EQ(shmp_array_get_i64(sh->a, 3, &x), 0);
	T_EQ(x, 33);
	T_EQ(shmp_value_set_i64(sh->v, 99), 0);
	T_EQ(shmp_array_set_i64(sh->a, 5, -3), 0);
	/* an object the child creates lands in the shared default segment */
	shmp_value_t *mine = shmp_value_create('i', NULL, NULL);
	T_CHECK(mine);
	T_CHECK(inside(s, shmp_value_ptr(mine), 4));
	T_EQ(shmp_value_set_i64(mine, 4242), 0);
	uint64_t off;
	T_EQ(shmp_segment_offset(s, shmp_value_ptr(mine), &off), 0);
	T_EQ(write(sh->fd, &off, sizeof off), (ssize_t)sizeof off);
	return 0;
}

int main(void)
{
	t_watchdog(30);
	/* The parent must see the documented default whatever the caller's
	 * environment says; it is read only at first use. */
	unsetenv("SHMP_DEFAULT_SEGMENT_SIZE");

	/* Children fork before the parent's first use: each gets its own. */
	const char *ways[] = { "1M", "1m", "1024K", "1048576" };
	for (int i = 0; i < 4; i++)
		t_wait_ok(t_fork(child_size, (void *)ways[i]), 10);
	t_wait_ok(t_fork(child_fill, NULL), 20);

	shmp_segment_t *d = shmp_segment_default();
	T_CHECK(d);
	T_CHECK(shmp_segment_default() == d);
	T_CHECK(shmp_segment_default() == d);
	T_EQ(shmp_segment_size(d), 64ull << 30); /* address space, reserved lazily */
	T_CHECK(shmp_segment_name(d) == NULL);
	struct shmp_segment_stats st0 = t_seg_stats(shmp_segment_default());
	T_EQ(st0.live_blocks, 0);

	/* Objects made without a segment land in the default one. */
	shmp_value_t *v = shmp_value_create('q', NULL, NULL);
	T_CHECK(v);
	T_CHECK(inside(d, shmp_value_ptr(v), 8));
	T_EQ(t_seg_stats(shmp_segment_default()).live_blocks, 1);
	struct shmp_value_opts o = SHMP_OPTS(shmp_value_opts, .segment = NULL);
	shmp_array_t *a = shmp_array_create('q', 10, NULL, &o);
	T_CHECK(a);
	T_CHECK(inside(d, shmp_array_ptr(a), 80));
	T_EQ(t_seg_stats(shmp_segment_default()).live_blocks, 2);
	shmp_lock_t *l = shmp_lock_create(NULL);
	T_CHECK(l);
	T_EQ(t_seg_stats(shmp_segment_default()).live_blocks, 3);
	/* ...and objects given another segment do not. */
	shmp_segment_t *other = shmp_segment_create(NULL, MIB, NULL);
	T_CHECK(other);
	struct shmp_value_opts oo = SHMP_OPTS(shmp_value_opts, .segment = other);
	shmp_value_t *v2 = shmp_value_create('q', NULL, &oo);
	T_CHECK(v2);
	T_CHECK(inside(other, shmp_value_ptr(v2), 8));
	T_CHECK(!inside(d, shmp_value_ptr(v2), 8));
	T_EQ(t_seg_stats(shmp_segment_default()).live_blocks, 3);

	/* A child forked after creation shares the objects both ways. */
	T_EQ(shmp_value_set_i64(v, 7), 0);
	T_EQ(shmp_array_set_i64(a, 3, 33), 0);
	int fds[2];
	T_EQ(pipe(fds), 0);
	struct shared sh = { v, a, fds[1] };
	t_wait_ok(t_fork(child_rw, &sh), 10);
	int64_t x;
	T_EQ(shmp_value_get_i64(v, &x), 0);
	T_EQ(x, 99);
	T_EQ(shmp_array_get_i64(a, 5, &x), 0);
	T_EQ(x, -3);
	uint64_t off;
	T_EQ(read(fds[0], &off, sizeof off), (ssize_t)sizeof off);
	T_EQ(t_seg_stats(shmp_segment_default()).live_blocks, 4); /* the child's Value */
	int32_t *p = shmp_segment_ptr(d, off, 4);
	T_CHECK(p);
	T_EQ(*p, 4242);
	close(fds[0]);
	close(fds[1]);

	shmp_value_destroy(v2);
	shmp_segment_destroy(other);
	shmp_lock_destroy(l);
	shmp_array_destroy(a);
	shmp_value_destroy(v);
	T_EQ(t_seg_stats(shmp_segment_default()).live_blocks, 1); /* the child's, which it never freed */
	T_CHECK(shmp_segment_default() == d);
	return 0;
}
