/* Pipeline file stages (include/shmp/pipeline.h: add_file_source,
 * add_file_sink). Files of 0 bytes, 1 byte, block_size - 1, block_size,
 * block_size + 1, 2 * block_size, 100 KB and 3 MB of random bytes in a
 * mkdtemp directory, plus one path that does not exist, for block sizes
 * 4096, 1000 and the default (64 KiB):
 * - file source -> identity stage (1 or 2 workers) -> next(): every block
 *   arrives once, tag = the file's index in paths, offset a multiple of
 *   block_size, length min(block_size, rest of file), SHMP_MSG_EOF on
 *   exactly each file's last block (an empty file sends one empty EOF
 *   block); the blocks reassemble every file byte for byte; with one
 *   worker they come in file order with seq 0, 1, 2...; the missing file
 *   counts in stats.source_errors and sends nothing; the source ends the
 *   input by itself (next ends with -SHMP_ECLOSED, join 0); stats count
 *   the blocks and bytes in and out; put and reserve are -EBUSY, a second
 *   file source and one after start -EBUSY; also with opts.threads;
 * - file source -> stage -> file sink: the output file is the
 *   concatenation of the files; next() is -EBUSY;
 * - put -> stage -> file sink: the output file is the messages in order;
 * - a file sink that cannot write (EBADF, EPIPE): join returns the error,
 *   stats.sink_errors counts every message not written; add_file_sink(-1)
 *   is -EBADF.
 * The whole test runs again in a child with SHMP_NO_IO_URING=1 (pread and
 * write(2) fallbacks), where shmp_io_uring_available() must be 0. The
 * directory is removed on every path. */
#include "t.h"

#include <fcntl.h>
#include <signal.h>
#include <ftw.h>
#include <sys/stat.h>

#define NF 10
#define MISSING 4 /* index of the path that does not exist */

static char dir[64];
static pid_t dir_owner;
static char *paths[NF];
static size_t sizes[NF];
static unsigned char *content[NF];

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static void cleanup(void)
{
	if (dir[0] && getpid() == dir_owner) {
		nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
		dir[0] = 0;
	}
}

static void write_file(const char *p, const unsigned char *b, size_t n)
{
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	T_CHECK(fd >= 0);
	size_t off = 0;
	while (off < n) {
		ssize_t w = write(fd, b + off, n - off);
		T_CHECK(w > 0);
		off += (size_t)w;
	}
	T_EQ(close(fd), 0);
}

/* The files for block size bs (sizes depend on it). */
static void make_files(size_t bs)
{
	const size_t sz[NF] = { 0, 1, bs - 1, bs, 0 /* missing */, bs + 1, 2 * bs, 100000, 3 * 1024 * 1024 + 123,
				7 };
	for (int i = 0; i < NF; i++) {
		free(paths[i]);
		free(content[i]);
		paths[i] = malloc(128);
		T_CHECK(paths[i]);
		snprintf(paths[i], 128, "%s/f%d", dir, i);
		sizes[i] = sz[i];
		content[i] = malloc(sz[i] ? sz[i] : 1);
		T_CHECK(content[i]);
		t_fill(content[i], sz[i], (uint32_t)(t_rnd(1u << 30) + 1));
		if (i == MISSING) {
			unlink(paths[i]);
			continue;
		}
		write_file(paths[i], content[i], sz[i]);
	}
}

static uint64_t nblocks(int f, size_t bs)
{
	if (f == MISSING)
		return 0;
	return sizes[f] ? (sizes[f] + bs - 1) / bs : 1;
}

/* C[0]: stages that saw an index other than the one expected. */
static _Atomic int64_t *C;
static int two = 2;

/* Identity; arg (if any) is the stage index it must have. */
static int stage_fn(const struct shmp_msg *in, shmp_stage_ctx_t *ctx, void *arg)
{
	if (arg && shmp_stage_index(ctx) != *(int *)arg)
		atomic_fetch_add(&C[0], 1);
	return shmp_stage_emit(ctx, in->data, in->len);
}

/* file source -> stage (workers) -> next(). */
static void run_source(size_t bs, unsigned depth, unsigned workers, int threads)
{
	double t0 = t_now();
	struct shmp_pipeline_opts o = SHMP_OPTS(shmp_pipeline_opts, .threads = threads, .capacity = 16,
						.segment_size = 64u << 20);
	shmp_pipeline_t *pl = shmp_pipeline_create(&o);
	T_CHECK(pl);
	struct shmp_file_source_opts fo = SHMP_OPTS(shmp_file_source_opts, .block_size = bs, .depth = depth);
	T_EQ(shmp_pipeline_add_file_source(pl, (const char *const *)paths, NF, bs ? &fo : NULL), 1);
	T_EQ(shmp_pipeline_add_file_source(pl, (const char *const *)paths, NF, NULL), -EBUSY);
	T_EQ(shmp_pipeline_add_stage(pl, "ident", stage_fn, &two, workers), 2);
	if (!bs)
		bs = 65536; /* the default */
	T_EQ(shmp_pipeline_start(pl), 0);
	T_EQ(shmp_pipeline_add_file_source(pl, (const char *const *)paths, NF, NULL), -EBUSY);
	T_EQ(shmp_pipeline_put(pl, "x", 1, 0, 0), -EBUSY);
	struct shmp_pipeline_ticket t;
	T_EQ(shmp_pipeline_reserve(pl, 1, &t, 0), -EBUSY);

	unsigned char *got[NF];
	unsigned char *seen[NF];
	uint64_t blocks = 0, bytes = 0, want_blocks = 0, want_bytes = 0;
	for (int f = 0; f < NF; f++) {
		got[f] = calloc(sizes[f] + 1, 1);
		seen[f] = calloc(nblocks(f, bs) + 1, 1);
		T_CHECK(got[f] && seen[f]);
		want_blocks += nblocks(f, bs);
		want_bytes += f == MISSING ? 0 : sizes[f];
	}
	int last_f = -1;
	uint64_t last_off = 0;
	for (;;) {
		struct shmp_msg m;
		int r = shmp_pipeline_next(pl, &m, 20);
		if (r == -SHMP_ECLOSED)
			break;
		T_EQ(r, 0);
		T_CHECK(m.tag < NF);
		int f = (int)m.tag;
		T_CHECK(f != MISSING);
		T_EQ(m.offset % bs, 0);
		T_CHECK(m.offset <= sizes[f]);
		size_t want_len = sizes[f] - m.offset < bs ? sizes[f] - m.offset : bs;
		T_EQ(m.len, want_len);
		uint64_t b = m.offset / bs;
		T_CHECK(b < nblocks(f, bs));
		T_EQ(seen[f][b], 0);
		seen[f][b] = 1;
		/* EOF on the last block only. */
		int last = b + 1 == nblocks(f, bs);
		T_EQ(!!(m.flags & SHMP_MSG_EOF), last);
		T_EQ(m.flags & ~(uint32_t)SHMP_MSG_EOF, 0);
		T_CHECK(m.t0_ns > 0);
		if (m.len)
			memcpy(got[f] + m.offset, m.data, m.len);
		if (workers == 1) {
			/* In file order, blocks in order, numbered from 0. */
			T_EQ(m.seq, blocks);
			T_CHECK(f > last_f || (f == last_f && m.offset > last_off) || blocks == 0);
			last_f = f;
			last_off = m.offset;
		}
		blocks++;
		bytes += m.len;
		T_EQ(shmp_pipeline_done(pl), 0);
	}
	T_EQ(shmp_pipeline_join(pl, 20), 0);
	T_EQ(blocks, want_blocks);
	T_EQ(bytes, want_bytes);
	for (int f = 0; f < NF; f++) {
		for (uint64_t b = 0; b < nblocks(f, bs); b++)
			T_EQ(seen[f][b], 1);
		if (f != MISSING && memcmp(got[f], content[f], sizes[f]) != 0) {
			fprintf(stderr, "file %d (%zu bytes) differs\n", f, sizes[f]);
			T_CHECK(!"file content");
		}
		free(got[f]);
		free(seen[f]);
	}
	struct shmp_pipeline_stats st;
	T_EQ(shmp_pipeline_stats(pl, &st), 0);
	T_EQ(st.state, SHMP_PIPELINE_DONE);
	T_EQ(st.nstages, 2);
	T_EQ(st.source_errors, 1);
	T_EQ(st.messages_in, want_blocks);
	T_EQ(st.bytes_in, want_bytes);
	T_EQ(st.messages_out, want_blocks);
	T_EQ(st.bytes_out, want_bytes);
	T_EQ(st.lat_count, want_blocks);
	T_EQ(st.stage[1].processed, want_blocks);
	T_EQ(st.stage[1].failed, 0);
	T_EQ(st.lost, 0);
	T_EQ(atomic_load(&C[0]), 0);
	T_CHECK(st.lat_p50 <= st.lat_p99 && st.lat_p99 <= st.lat_p999);
	shmp_pipeline_destroy(pl);
	if (!threads)
		T_NO_CHILDREN();
	printf("source bs %zu depth %u workers %u %s: %llu blocks, %.2f s\n", bs, depth, workers,
	       threads ? "threads" : "procs", (unsigned long long)blocks, t_now() - t0);
}

/* The bytes of a file. */
static unsigned char *slurp(const char *p, size_t *n)
{
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	T_CHECK(fd >= 0);
	struct stat sb;
	T_EQ(fstat(fd, &sb), 0);
	unsigned char *b = malloc((size_t)sb.st_size + 1);
	T_CHECK(b);
	size_t off = 0;
	while (off < (size_t)sb.st_size) {
		ssize_t r = read(fd, b + off, (size_t)sb.st_size - off);
		T_CHECK(r > 0);
		off += (size_t)r;
	}
	T_EQ(close(fd), 0);
	*n = off;
	return b;
}

/* file source -> stage -> file sink. */
static void run_file_to_file(size_t bs, int threads, int backwards)
{
	double t0 = t_now();
	char out[128];
	snprintf(out, sizeof out, "%s/out", dir);
	int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	T_CHECK(fd >= 0);
	struct shmp_pipeline_opts o = SHMP_OPTS(shmp_pipeline_opts, .threads = threads, .segment_size = 64u << 20);
	shmp_pipeline_t *pl = shmp_pipeline_create(&o);
	T_CHECK(pl);
	struct shmp_file_source_opts fo = SHMP_OPTS(shmp_file_source_opts, .block_size = bs);
	if (backwards) {
		/* Added in any order, the chain is source -> stage -> sink
		 * (each call returns the index the stage has so far). */
		T_CHECK(shmp_pipeline_add_file_sink(pl, fd) >= 1);
		T_EQ(shmp_pipeline_add_file_sink(pl, fd), -EBUSY);
		T_CHECK(shmp_pipeline_add_stage(pl, "ident", stage_fn, &two, 1) >= 1);
		T_EQ(shmp_pipeline_add_file_source(pl, (const char *const *)paths, NF, &fo), 1);
	} else {
		T_EQ(shmp_pipeline_add_file_source(pl, (const char *const *)paths, NF, &fo), 1);
		T_EQ(shmp_pipeline_add_stage(pl, "ident", stage_fn, &two, 1), 2);
		T_EQ(shmp_pipeline_add_file_sink(pl, fd), 3);
		T_EQ(shmp_pipeline_add_file_sink(pl, fd), -EBUSY);
	}
	T_EQ(shmp_pipeline_start(pl), 0);
	T_EQ(shmp_pipeline_add_file_sink(pl, fd), -EBUSY);
	struct shmp_msg m;
	T_EQ(shmp_pipeline_next(pl, &m, 0), -EBUSY);
	T_EQ(shmp_pipeline_join(pl, 30), 0);
	struct shmp_pipeline_stats st;
	T_EQ(shmp_pipeline_stats(pl, &st), 0);
	shmp_pipeline_destroy(pl);
	T_EQ(close(fd), 0);
	if (!threads)
		T_NO_CHILDREN();

	size_t n, want = 0, at = 0;
	unsigned char *b = slurp(out, &n);
	uint64_t want_blocks = 0;
	for (int f = 0; f < NF; f++) {
		want += f == MISSING ? 0 : sizes[f];
		want_blocks += nblocks(f, bs);
	}
	T_EQ(n, want);
	for (int f = 0; f < NF; f++) {
		if (f == MISSING)
			continue;
		if (memcmp(b + at, content[f], sizes[f]) != 0) {
			fprintf(stderr, "file %d at %zu of the output differs\n", f, at);
			T_CHECK(!"file sink content");
		}
		at += sizes[f];
	}
	free(b);
	T_EQ(unlink(out), 0);
	T_EQ(st.state, SHMP_PIPELINE_DONE);
	T_EQ(st.nstages, 3);
	T_EQ(st.source_errors, 1);
	T_EQ(st.messages_in, want_blocks);
	T_EQ(st.bytes_in, want);
	T_EQ(st.messages_out, want_blocks);
	T_EQ(st.bytes_out, want);
	T_EQ(st.lat_count, want_blocks);
	T_EQ(atomic_load(&C[0]), 0);
	printf("file to file bs %zu %s%s: %zu bytes, %.2f s\n", bs, threads ? "threads" : "procs",
	       backwards ? " (added backwards)" : "", n, t_now() - t0);
}

/* put -> stage -> file sink: the messages, in order. */
static void run_put_to_file(void)
{
	char out[128];
	snprintf(out, sizeof out, "%s/out2", dir);
	int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	T_CHECK(fd >= 0);
	struct shmp_pipeline_opts o = SHMP_OPTS(shmp_pipeline_opts, .capacity = 8, .segment_size = 64u << 20);
	shmp_pipeline_t *pl = shmp_pipeline_create(&o);
	T_CHECK(pl);
	T_EQ(shmp_pipeline_add_stage(pl, "ident", stage_fn, NULL, 1), 1);
	T_EQ(shmp_pipeline_add_file_sink(pl, fd), 2);
	T_EQ(shmp_pipeline_start(pl), 0);
	enum { M = 500 };
	size_t total = 0;
	for (int i = 0; i < M; i++)
		total += 1 + (size_t)(i * 131) % 5000;
	unsigned char *all = malloc(total);
	T_CHECK(all);
	t_fill(all, total, 99);
	size_t at = 0;
	for (int i = 0; i < M; i++) {
		size_t len = 1 + (size_t)(i * 131) % 5000;
		T_EQ(shmp_pipeline_put(pl, all + at, len, (uint32_t)i, 10), 0);
		at += len;
	}
	T_EQ(shmp_pipeline_close(pl), 0);
	T_EQ(shmp_pipeline_join(pl, 20), 0);
	struct shmp_pipeline_stats st;
	T_EQ(shmp_pipeline_stats(pl, &st), 0);
	T_EQ(st.messages_in, M);
	T_EQ(st.messages_out, M);
	T_EQ(st.bytes_out, total);
	shmp_pipeline_destroy(pl);
	T_EQ(close(fd), 0);
	T_NO_CHILDREN();
	size_t n;
	unsigned char *b = slurp(out, &n);
	T_EQ(n, total);
	T_CHECK(memcmp(b, all, total) == 0);
	free(b);
	free(all);
	T_EQ(unlink(out), 0);
	printf("put to file: %zu bytes\n", total);
}

/* put -> stage -> file sink that cannot write: to a descriptor open for
 * reading only (EBADF), or, as a process, to a pipe nobody reads (EPIPE:
 * the sink ignores SIGPIPE; threads share the test's SIGPIPE, ignored
 * here). Every message is still taken; each one not written counts in
 * stats.sink_errors, and join returns the first error. */
static void run_sink_errors(int how, int threads)
{
	int fd, pfd[2] = { -1, -1 };
	char path[128];
	if (how == 0) {
		snprintf(path, sizeof path, "%s/ro", dir);
		write_file(path, (const unsigned char *)"x", 1);
		fd = open(path, O_RDONLY | O_CLOEXEC);
	} else {
		T_EQ(pipe(pfd), 0);
		T_EQ(close(pfd[0]), 0);
		fd = pfd[1];
	}
	T_CHECK(fd >= 0);
	struct shmp_pipeline_opts o = SHMP_OPTS(shmp_pipeline_opts, .capacity = 8, .threads = threads,
						.segment_size = 64u << 20);
	shmp_pipeline_t *pl = shmp_pipeline_create(&o);
	T_CHECK(pl);
	T_EQ(shmp_pipeline_add_file_sink(pl, -1), -EBADF);
	T_EQ(shmp_pipeline_add_stage(pl, "ident", stage_fn, NULL, 1), 1);
	T_EQ(shmp_pipeline_add_file_sink(pl, fd), 2);
	T_EQ(shmp_pipeline_start(pl), 0);
	enum { M = 50 };
	for (int i = 0; i < M; i++)
		T_EQ(shmp_pipeline_put(pl, "hello", 5, (uint32_t)i, 10), 0);
	T_EQ(shmp_pipeline_close(pl), 0);
	int want = how == 0 ? -EBADF : -EPIPE;
	T_EQ(shmp_pipeline_join(pl, 20), want);
	T_EQ(shmp_pipeline_join(pl, 0), want); /* and again */
	struct shmp_pipeline_stats st;
	T_EQ(shmp_pipeline_stats(pl, &st), 0);
	T_EQ(st.state, SHMP_PIPELINE_DONE);
	T_EQ(st.messages_in, M);
	T_EQ(st.messages_out, M);
	T_EQ(st.sink_errors, M);
	T_EQ(st.stage[1].deaths, 0);
	shmp_pipeline_destroy(pl);
	T_EQ(close(fd), 0);
	if (how == 0)
		T_EQ(unlink(path), 0);
	T_NO_CHILDREN();
	printf("sink errors (%s, %s): join %d, %llu counted\n", how ? "EPIPE" : "EBADF", threads ? "threads" : "processes",
	       want, (unsigned long long)st.sink_errors);
}

int main(int argc, char **argv)
{
	(void)argc;
	t_watchdog(150);
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *no_uring = getenv("SHMP_NO_IO_URING");
	int fallback = no_uring && strcmp(no_uring, "1") == 0;
	printf("seed %llu, io_uring %s%s\n", (unsigned long long)t_seed(),
	       shmp_io_uring_available() ? "available" : "not available", fallback ? " (SHMP_NO_IO_URING=1)" : "");
	if (fallback)
		T_EQ(shmp_io_uring_available(), 0);

	shmp_array_t *counters = t_counters(1);
	C = shmp_array_ptr(counters);
	T_CHECK(C);
	snprintf(dir, sizeof dir, "/tmp/shmp-t-plfiles-XXXXXX");
	T_CHECK(mkdtemp(dir));
	dir_owner = getpid();
	atexit(cleanup);

	make_files(4096);
	run_source(4096, 4, 1, 0);
	run_source(4096, 8, 2, 0);
	run_source(4096, 1, 1, 1);
	run_file_to_file(4096, 0, 0);
	run_file_to_file(4096, 0, 1);
	make_files(1000);
	run_source(1000, 16, 1, 0);
	run_file_to_file(1000, 1, 0);
	make_files(65536);
	run_source(0, 0, 1, 0); /* default block size and depth */
	run_source(0, 0, 2, 1);
	run_file_to_file(65536, 0, 1);
	run_put_to_file();
	signal(SIGPIPE, SIG_IGN); /* thread sinks share it */
	for (int how = 0; how < 2; how++)
		for (int threads = 0; threads < 2; threads++)
			run_sink_errors(how, threads);

	for (int i = 0; i < NF; i++) {
		free(paths[i]);
		free(content[i]);
	}
	char gone[sizeof dir];
	memcpy(gone, dir, sizeof dir);
	cleanup();
	/* Removed: nothing left. */
	struct stat sb;
	errno = 0;
	T_CHECK(stat(gone, &sb) == -1 && errno == ENOENT);

	if (!fallback) {
		/* Again without io_uring: pread and write(2). */
		fflush(NULL);
		pid_t p = fork();
		T_CHECK(p >= 0);
		if (p == 0) {
			setenv("SHMP_NO_IO_URING", "1", 1);
			execv("/proc/self/exe", argv);
			_exit(127);
		}
		t_wait_ok(p, 120);
	}
	shmp_array_destroy(counters);
	printf("ok\n");
	return 0;
}
