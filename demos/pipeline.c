/* pipeline: a three-stage pipeline over real files, beside the same
 * pipeline built on pipes.
 *
 *   file source  ->  count (words, lines, CRC-32 of each block)  ->  this process
 *
 * shmp's file source reads every regular file under a directory, in blocks,
 * straight into the first ring's slots (io_uring where the kernel allows,
 * pread otherwise); the count stage's workers read each block in place and
 * send on a small result; this process puts the results of each file back
 * together — lines, words (a word split between two blocks counts once),
 * bytes, and the CRC-32 of the whole file, combined from the blocks' CRCs
 * in offset order — and prints the biggest files, throughput and latency
 * (from a block's read to its result's arrival here) percentiles.
 *
 * Then the same with pipes: a forked reader writes each block (a small
 * header, then the bytes) to a pipe, a forked counter reads it and writes
 * the result to a second pipe, this process reads the results. Both runs
 * must agree on every file's figures; the exit status is 1 if they do not.
 *
 *   pipeline [-b block_size] [-w count_workers] [-r passes] [-c capacity] [-n top] [DIR]
 *
 * DIR defaults to the project's own sources. The files are read `passes`
 * times (default: as many as make about 32 MiB, so that the timing means
 * something on a small tree; every pass must give the same figures). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <shmp.h>

#include "progress.h"

#ifndef SHMP_SOURCE_DIR
#define SHMP_SOURCE_DIR ""
#endif

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* ---- the count stage's work: lines, words, CRC-32 ------------------------ */

static uint32_t crc_tab[8][256];
static uint32_t x2n_tab[32];
static unsigned char is_space[256];

#define CRC_POLY 0xedb88320u /* CRC-32 as zlib, gzip and PNG compute it */

/* a * b modulo the CRC polynomial (reflected); from zlib's crc32.c. */
static uint32_t multmodp(uint32_t a, uint32_t b)
{
	uint32_t m = 1u << 31, p = 0;
	for (;;) {
		if (a & m) {
			p ^= b;
			if ((a & (m - 1)) == 0)
				break;
		}
		m >>= 1;
		b = b & 1 ? (b >> 1) ^ CRC_POLY : b >> 1;
	}
	return p;
}

/* x^(n * 2^k) modulo the polynomial. */
static uint32_t x2nmodp(uint64_t n, unsigned k)
{
	uint32_t p = 1u << 31; /* x^0 */
	for (; n; n >>= 1, k++)
		if (n & 1)
			p = multmodp(x2n_tab[k & 31], p);
	return p;
}

/* The CRC-32 of A then B from crc(A), crc(B) and B's length: what lets
 * blocks be checksummed apart, by any worker, and the file's CRC be put
 * together in the end. */
static uint32_t crc32_combine(uint32_t a, uint32_t b, uint64_t len_b)
{
	return multmodp(x2nmodp(len_b, 3), a) ^ b;
}

static void tables_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ CRC_POLY : c >> 1;
		crc_tab[0][i] = c;
	}
	for (int t = 1; t < 8; t++)
		for (int i = 0; i < 256; i++)
			crc_tab[t][i] = (crc_tab[t - 1][i] >> 8) ^ crc_tab[0][crc_tab[t - 1][i] & 0xff];
	uint32_t p = 1u << 30; /* x^1 */
	x2n_tab[0] = p;
	for (int n = 1; n < 32; n++)
		x2n_tab[n] = p = multmodp(p, p);
	for (const char *s = " \t\n\v\f\r"; *s; s++)
		is_space[(unsigned char)*s] = 1;
}

/* CRC-32, eight bytes at a time. */
static uint32_t crc32_buf(const unsigned char *p, size_t n)
{
	uint32_t c = 0xffffffffu;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	for (; n >= 8; p += 8, n -= 8) {
		uint32_t lo, hi;
		memcpy(&lo, p, 4);
		memcpy(&hi, p + 4, 4);
		lo ^= c;
		c = crc_tab[7][lo & 0xff] ^ crc_tab[6][(lo >> 8) & 0xff] ^ crc_tab[5][(lo >> 16) & 0xff] ^
		    crc_tab[4][lo >> 24] ^ crc_tab[3][hi & 0xff] ^ crc_tab[2][(hi >> 8) & 0xff] ^
		    crc_tab[1][(hi >> 16) & 0xff] ^ crc_tab[0][hi >> 24];
	}
#endif
	while (n--)
		c = crc_tab[0][(c ^ *p++) & 0xff] ^ (c >> 8);
	return ~c;
}

/* What the count stage sends on for a block. */
struct result {
	uint64_t bytes, lines, words;
	uint32_t crc;
	uint8_t starts_in_word, ends_in_word; /* first / last byte is not white space */
	uint8_t pad[2];
};

/* Words are runs of bytes other than ASCII white space (wc -w on text). */
static void count_block(const unsigned char *p, size_t n, struct result *r)
{
	uint64_t words = 0, lines = 0;
	unsigned in = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned sp = is_space[p[i]];
		words += !in & !sp;
		in = !sp;
		lines += p[i] == '\n';
	}
	memset(r, 0, sizeof *r);
	r->bytes = n;
	r->lines = lines;
	r->words = words;
	r->crc = crc32_buf(p, n);
	r->starts_in_word = n && !is_space[p[0]];
	r->ends_in_word = n && !is_space[p[n - 1]];
}

/* The shmp stage: count the block in place, send the result on. */
static int count_stage(const struct shmp_msg *in, shmp_stage_ctx_t *ctx, void *arg)
{
	(void)arg;
	struct result r;
	count_block(in->data, in->len, &r);
	return shmp_stage_emit(ctx, &r, sizeof r);
}

/* ---- this process: a file's blocks put back together -------------------- */

struct pending {
	uint64_t offset;
	struct result r;
	int eof;
};

struct file_acc {
	uint64_t next;   /* bytes folded in so far: the offset expected next */
	uint64_t lines, words, bytes, blocks;
	uint32_t crc;
	int ends_in_word;
	int complete;    /* its last block folded in */
	int skipped;     /* the reader could not read it */
	struct pending *pend; /* blocks that came before their turn */
	size_t npend, cap;
};

static void apply(struct file_acc *a, const struct result *r, int eof)
{
	if (r->bytes) {
		a->words += r->words - (a->ends_in_word && r->starts_in_word);
		a->ends_in_word = r->ends_in_word;
		a->crc = crc32_combine(a->crc, r->crc, r->bytes);
		a->lines += r->lines;
		a->bytes += r->bytes;
		a->next += r->bytes;
	}
	a->complete |= eof;
}

/* Blocks come in order with one counting worker; with several, a block may
 * overtake another of its file: it waits in `pend` for its turn. */
static int fold(struct file_acc *a, uint64_t offset, const struct result *r, int eof)
{
	a->blocks++;
	if (offset != a->next || a->complete) {
		if (a->npend == a->cap) {
			size_t cap = a->cap ? 2 * a->cap : 4;
			struct pending *p = realloc(a->pend, cap * sizeof *p);
			if (!p)
				return -1;
			a->pend = p;
			a->cap = cap;
		}
		a->pend[a->npend++] = (struct pending){ offset, *r, eof };
		return 0;
	}
	apply(a, r, eof);
	for (size_t i = 0; i < a->npend;) {
		if (a->pend[i].offset == a->next && !a->complete) {
			apply(a, &a->pend[i].r, a->pend[i].eof);
			a->pend[i] = a->pend[--a->npend];
			i = 0;
		} else {
			i++;
		}
	}
	return 0;
}

/* ---- a run's results ------------------------------------------------------- */

struct run {
	const char *name;
	struct file_acc *acc; /* one per file per pass */
	uint64_t blocks, bytes, bad, source_errors;
	uint64_t *lat;        /* ns, one per block */
	size_t nlat, cap;
	double seconds;
	int failed;
};

static int run_take(struct run *rn, unsigned ntags, uint32_t tag, uint64_t offset, uint32_t flags,
		    const void *data, size_t len, uint64_t t0)
{
	uint64_t t = now_ns();
	struct result r;
	if (tag >= ntags || len != sizeof r) {
		rn->bad++;
		return 0;
	}
	memcpy(&r, data, sizeof r);
	if (rn->nlat == rn->cap) {
		size_t cap = rn->cap ? 2 * rn->cap : 4096;
		uint64_t *l = realloc(rn->lat, cap * sizeof *l);
		if (!l)
			return -1;
		rn->lat = l;
		rn->cap = cap;
	}
	rn->lat[rn->nlat++] = t - t0;
	rn->blocks++;
	rn->bytes += r.bytes;
	return fold(&rn->acc[tag], offset, &r, (flags & SHMP_MSG_EOF) != 0);
}

static void free_run(struct run *rn, unsigned ntags)
{
	for (unsigned i = 0; i < ntags; i++)
		free(rn->acc[i].pend);
	free(rn->acc);
	free(rn->lat);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

static double pct_us(const struct run *rn, double q)
{
	if (!rn->nlat)
		return 0;
	size_t k = (size_t)(q * (double)rn->nlat + 0.999999);
	k = k ? k - 1 : 0;
	return (double)rn->lat[k < rn->nlat ? k : rn->nlat - 1] / 1e3;
}

/* ---- the files --------------------------------------------------------------- */

static char **g_paths;
static uint64_t *g_sizes;
static unsigned g_nfiles, g_cap;
static uint64_t g_total;

static int walk_one(const char *path, const struct stat *st, int type, struct FTW *f)
{
	(void)f;
	if (type != FTW_F || !S_ISREG(st->st_mode))
		return 0; /* directories, links, fifos, sockets, devices */
	if (g_nfiles == g_cap) {
		unsigned cap = g_cap ? 2 * g_cap : 256;
		char **p = realloc(g_paths, cap * sizeof *p);
		uint64_t *s = p ? realloc(g_sizes, cap * sizeof *s) : NULL;
		if (p)
			g_paths = p;
		if (!p || !s)
			return -1;
		g_sizes = s;
		g_cap = cap;
	}
	if (!(g_paths[g_nfiles] = strdup(path)))
		return -1;
	g_sizes[g_nfiles++] = (uint64_t)st->st_size;
	g_total += (uint64_t)st->st_size;
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sort the paths, their sizes with them. */
static void sort_files(void)
{
	struct { char *p; uint64_t s; } *v = malloc(g_nfiles * sizeof *v);
	if (!v)
		return;
	for (unsigned i = 0; i < g_nfiles; i++) {
		v[i].p = g_paths[i];
		v[i].s = g_sizes[i];
	}
	qsort(v, g_nfiles, sizeof *v, cmp_str); /* the path comes first */
	for (unsigned i = 0; i < g_nfiles; i++) {
		g_paths[i] = v[i].p;
		g_sizes[i] = v[i].s;
	}
	free(v);
}

/* The project's sources: the directory the build was configured from, or
 * beside the binary (build/demos/pipeline -> ../../src). */
static const char *default_dir(void)
{
	static char buf[PATH_MAX];
	struct stat st;
	if (*SHMP_SOURCE_DIR && stat(SHMP_SOURCE_DIR, &st) == 0 && S_ISDIR(st.st_mode))
		return SHMP_SOURCE_DIR;
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n > 0) {
		self[n] = 0;
		const char *bin = dirname(self);
		const char *rel[] = { "../../src", "../src" };
		for (int i = 0; i < 2; i++) {
			snprintf(buf, sizeof buf, "%s/%s", bin, rel[i]);
			if (stat(buf, &st) == 0 && S_ISDIR(st.st_mode))
				return buf;
		}
	}
	return ".";
}

/* ---- shmp --------------------------------------------------------------------- */

static void run_shmp(struct run *rn, const char *const *paths, unsigned ntags, size_t block, unsigned workers,
		     unsigned capacity, uint64_t total)
{
	struct shmp_pipeline_opts o = SHMP_OPTS(shmp_pipeline_opts, .capacity = capacity);
	struct shmp_file_source_opts fo = SHMP_OPTS(shmp_file_source_opts, .block_size = block);
	struct progress pr;
	shmp_pipeline_t *pl = shmp_pipeline_create(&o);
	int e = pl ? 0 : -errno;
	if (!e && (e = shmp_pipeline_add_file_source(pl, paths, ntags, &fo)) > 0)
		e = 0;
	if (!e && (e = shmp_pipeline_add_stage(pl, "count", count_stage, NULL, workers)) > 0)
		e = 0;
	progress_begin(&pr, "shmp pipeline", total);
	uint64_t t0 = now_ns();
	if (!e)
		e = shmp_pipeline_start(pl);
	while (!e) {
		struct shmp_msg m;
		/* A timeout now and then keeps the progress line moving. */
		e = shmp_pipeline_next(pl, &m, 0.1);
		if (e == -ETIMEDOUT) {
			e = 0;
			continue;
		}
		if (e)
			break;
		if (run_take(rn, ntags, m.tag, m.offset, m.flags, m.data, m.len, m.t0_ns) < 0)
			e = -ENOMEM;
		shmp_pipeline_done(pl);
		progress_update(&pr, rn->bytes);
	}
	rn->seconds = (double)(now_ns() - t0) * 1e-9;
	progress_end(&pr);
	if (e == -SHMP_ECLOSED)
		e = shmp_pipeline_join(pl, 10);
	struct shmp_pipeline_stats st;
	if (!e && !(e = shmp_pipeline_stats(pl, &st))) {
		rn->source_errors = st.source_errors;
		printf("  shmp's own latency histogram: p50 %.1f us, p99 %.1f us, p99.9 %.1f us over %llu blocks;"
		       " %llu failed in the count stage\n",
		       st.lat_p50 / 1e3, st.lat_p99 / 1e3, st.lat_p999 / 1e3, (unsigned long long)st.lat_count,
		       (unsigned long long)st.stage[1].failed);
		if (st.messages_out != rn->blocks || st.stage[1].failed) {
			printf("  stats disagree: %llu messages out, %llu taken here\n",
			       (unsigned long long)st.messages_out, (unsigned long long)rn->blocks);
			rn->failed = 1;
		}
	}
	if (e) {
		fprintf(stderr, "pipeline: shmp: %s\n", shmp_strerror(e));
		rn->failed = 1;
	}
	shmp_pipeline_destroy(pl);
}

/* ---- pipes ---------------------------------------------------------------------- */

/* What goes down the pipes before each block (or result). */
struct frame {
	uint64_t offset, t0;
	uint32_t tag, flags, len, pad;
};
#define F_SKIP (1u << 30) /* the reader could not read this file */

static int write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t w = write(fd, c, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

/* n bytes: 1, or 0 at end of file before the first byte, -1 otherwise. */
static int read_all(int fd, void *p, size_t n)
{
	char *c = p;
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, c + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r == 0 && got == 0 ? 0 : -1;
		got += (size_t)r;
	}
	return 1;
}

/* The reader: each file in blocks, as shmp's file source cuts them (an
 * empty file is one empty last block). */
static void reader(int out, const char *const *paths, unsigned ntags, size_t block)
{
	char *buf = malloc(sizeof(struct frame) + block);
	if (!buf)
		_exit(1);
	struct frame *f = (struct frame *)buf;
	char *data = buf + sizeof *f;
	for (unsigned tag = 0; tag < ntags; tag++) {
		struct stat st;
		int fd = open(paths[tag], O_RDONLY | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
			*f = (struct frame){ .tag = tag, .flags = F_SKIP | SHMP_MSG_EOF, .t0 = now_ns() };
			if (fd >= 0)
				close(fd);
			if (write_all(out, f, sizeof *f))
				_exit(1);
			continue;
		}
		uint64_t size = (uint64_t)st.st_size, nblocks = size ? (size + block - 1) / block : 1;
		for (uint64_t b = 0; b < nblocks; b++) {
			uint64_t off = b * block;
			size_t want = size - off < block ? (size_t)(size - off) : block;
			ssize_t got = 0;
			while (want && (got = pread(fd, data, want, (off_t)off)) < 0 && errno == EINTR)
				;
			*f = (struct frame){ .offset = off, .tag = tag, .len = got > 0 ? (uint32_t)got : 0,
					     .flags = b + 1 == nblocks ? SHMP_MSG_EOF : 0 };
			f->t0 = now_ns();
			if (write_all(out, buf, sizeof *f + f->len))
				_exit(1);
		}
		close(fd);
	}
	_exit(0);
}

/* The counter: a block in, a result out. */
static void counter(int in, int out, size_t block)
{
	unsigned char *data = malloc(block);
	struct {
		struct frame f;
		struct result r;
	} o;
	if (!data)
		_exit(1);
	for (;;) {
		struct frame f;
		int k = read_all(in, &f, sizeof f);
		if (k == 0)
			_exit(0);
		if (k < 0 || f.len > block || (f.len && read_all(in, data, f.len) != 1))
			_exit(1);
		count_block(data, f.len, &o.r);
		o.f = f;
		o.f.len = sizeof o.r;
		if (write_all(out, &o, sizeof o))
			_exit(1);
	}
}

static pid_t fork_child(void)
{
	fflush(NULL);
	pid_t p = fork();
	if (p == 0)
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* they end with us */
	return p;
}

static int reaped_ok(pid_t p)
{
	int st;
	return p > 0 && waitpid(p, &st, 0) == p && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static void run_pipes(struct run *rn, const char *const *paths, unsigned ntags, size_t block, uint64_t total)
{
	int a[2], b[2];
	struct progress pr;
	if (pipe(a) || pipe(b)) {
		perror("pipeline: pipe");
		rn->failed = 1;
		return;
	}
	progress_begin(&pr, "pipes", total);
	uint64_t t0 = now_ns();
	pid_t rd = fork_child();
	if (rd == 0) {
		close(a[0]);
		close(b[0]);
		close(b[1]);
		reader(a[1], paths, ntags, block);
	}
	pid_t ct = fork_child();
	if (ct == 0) {
		close(a[1]);
		close(b[0]);
		counter(a[0], b[1], block);
	}
	close(a[0]);
	close(a[1]);
	close(b[1]);
	for (;;) {
		struct {
			struct frame f;
			struct result r;
		} in;
		int k = read_all(b[0], &in, sizeof in);
		if (k <= 0) {
			rn->failed |= k < 0;
			break;
		}
		if (in.f.flags & F_SKIP) {
			rn->source_errors++;
			continue;
		}
		if (run_take(rn, ntags, in.f.tag, in.f.offset, in.f.flags, &in.r, in.f.len, in.f.t0) < 0) {
			rn->failed = 1;
			break;
		}
		progress_update(&pr, rn->bytes);
	}
	close(b[0]);
	rn->seconds = (double)(now_ns() - t0) * 1e-9;
	progress_end(&pr);
	if (rd < 0 || ct < 0 || !reaped_ok(rd) || !reaped_ok(ct)) {
		fprintf(stderr, "pipeline: pipes: the reader or the counter failed\n");
		rn->failed = 1;
	}
}

/* ---- the report ------------------------------------------------------------------ */

struct totals {
	unsigned files, skipped, incomplete, unequal;
	uint64_t lines, words, bytes;
	uint32_t crc; /* of every file, end to end, in path order */
};

/* One pass's figures (pass 0), and whether every pass gave the same. */
static struct totals totals_of(const struct run *rn, unsigned passes)
{
	struct totals t = { 0 };
	for (unsigned i = 0; i < g_nfiles; i++) {
		const struct file_acc *a = &rn->acc[i];
		if (!a->blocks) {
			t.skipped++;
			continue;
		}
		if (!a->complete || a->npend)
			t.incomplete++;
		for (unsigned p = 1; p < passes; p++) {
			const struct file_acc *b = &rn->acc[(size_t)p * g_nfiles + i];
			t.unequal += b->lines != a->lines || b->words != a->words || b->bytes != a->bytes ||
				     b->crc != a->crc || b->complete != a->complete || b->npend;
		}
		t.files++;
		t.lines += a->lines;
		t.words += a->words;
		t.bytes += a->bytes;
		t.crc = crc32_combine(t.crc, a->crc, a->bytes);
	}
	return t;
}

static void print_totals(const char *name, const struct run *rn, const struct totals *t)
{
	printf("totals %-6s files %u skipped %u lines %llu words %llu bytes %llu crc32 %08x blocks %llu\n", name,
	       t->files, t->skipped, (unsigned long long)t->lines, (unsigned long long)t->words,
	       (unsigned long long)t->bytes, t->crc, (unsigned long long)rn->blocks);
}

static const struct run *g_sort_run;

static int by_bytes(const void *x, const void *y)
{
	uint64_t a = g_sort_run->acc[*(const unsigned *)x].bytes, b = g_sort_run->acc[*(const unsigned *)y].bytes;
	return (a < b) - (a > b);
}

static void top_table(const struct run *rn, const char *dir, unsigned top)
{
	unsigned *ix = malloc(g_nfiles * sizeof *ix);
	if (!ix)
		return;
	for (unsigned i = 0; i < g_nfiles; i++)
		ix[i] = i;
	g_sort_run = rn;
	qsort(ix, g_nfiles, sizeof *ix, by_bytes);
	size_t dl = strlen(dir);
	printf("\n%10s %10s %12s  %-8s  %s\n", "lines", "words", "bytes", "crc32", "file (the biggest)");
	for (unsigned k = 0; k < top && k < g_nfiles; k++) {
		const struct file_acc *a = &rn->acc[ix[k]];
		const char *p = g_paths[ix[k]];
		if (!strncmp(p, dir, dl) && p[dl] == '/')
			p += dl + 1;
		printf("%10llu %10llu %12llu  %08x  %s%s\n", (unsigned long long)a->lines,
		       (unsigned long long)a->words, (unsigned long long)a->bytes, a->crc, p,
		       a->blocks ? "" : "  (could not be read)");
	}
	free(ix);
}

/* The runs agree file by file, pass by pass. */
static int agree(const struct run *x, const struct run *y, unsigned ntags)
{
	for (unsigned i = 0; i < ntags; i++) {
		const struct file_acc *a = &x->acc[i], *b = &y->acc[i];
		/* Not the number of blocks: a file source may end a file with
		 * an empty block of its own. */
		if (a->lines != b->lines || a->words != b->words || a->bytes != b->bytes || a->crc != b->crc ||
		    a->complete != b->complete || !a->blocks != !b->blocks) {
			printf("  they differ on %s (pass %u): %s %llu bytes crc %08x, %s %llu bytes crc %08x\n",
			       g_paths[i % g_nfiles], i / g_nfiles, x->name, (unsigned long long)a->bytes, a->crc,
			       y->name, (unsigned long long)b->bytes, b->crc);
			return 0;
		}
	}
	return x->source_errors == y->source_errors;
}

/* MB/s of count_block over the first bytes of the files, in this process:
 * how much of a run's time the counting itself takes. */
static double count_alone(size_t block)
{
	size_t n = 0, cap = (size_t)4 << 20;
	unsigned char *buf = malloc(cap);
	if (!buf)
		return 0;
	for (unsigned i = 0; i < g_nfiles && n < cap; i++) {
		int fd = open(g_paths[i], O_RDONLY | O_CLOEXEC);
		ssize_t r;
		while (fd >= 0 && n < cap && (r = read(fd, buf + n, cap - n)) > 0)
			n += (size_t)r;
		if (fd >= 0)
			close(fd);
	}
	struct result r;
	uint64_t sum = 0, done = 0, t0 = now_ns();
	while (done < ((uint64_t)32 << 20) && n) {
		for (size_t off = 0; off < n; off += block) {
			count_block(buf + off, n - off < block ? n - off : block, &r);
			sum += r.words + r.crc;
		}
		done += n;
	}
	double t = (double)(now_ns() - t0) * 1e-9;
	free(buf);
	return n && t > 0 && sum != 1 ? (double)done / 1e6 / t : 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: pipeline [-b block_size 512..1048576] [-w count_workers 1..64] [-r passes 1..1000]\n"
			"                [-c ring_capacity 2..65536] [-n top] [DIR]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	size_t block = 64 << 10;
	unsigned workers = 1, passes = 0, capacity = 0, top = 10;
	int c;
	while ((c = getopt(argc, argv, "b:w:r:c:n:h")) != -1) {
		long v = optarg ? strtol(optarg, NULL, 0) : 0;
		switch (c) {
		case 'b': if (v < 512 || v > (1 << 20)) usage(); block = (size_t)v; break;
		case 'w': if (v < 1 || v > 64) usage(); workers = (unsigned)v; break;
		case 'r': if (v < 1 || v > 1000) usage(); passes = (unsigned)v; break;
		case 'c': if (v < 2 || v > 65536) usage(); capacity = (unsigned)v; break;
		case 'n': if (v < 0 || v > 100000) usage(); top = (unsigned)v; break;
		default: usage();
		}
	}
	if (argc - optind > 1)
		usage();
	const char *dir = optind < argc ? argv[optind] : default_dir();
	struct stat st;
	if (stat(dir, &st) || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "pipeline: %s: not a directory\n", dir);
		return 2;
	}
	/* Lines and the progress line (write(2)) must not overtake each other. */
	setvbuf(stdout, NULL, _IONBF, 0);
	signal(SIGPIPE, SIG_IGN);
	tables_init();
	if (nftw(dir, walk_one, 32, FTW_PHYS) != 0) {
		fprintf(stderr, "pipeline: cannot walk %s: %s\n", dir, strerror(errno));
		return 1;
	}
	if (!g_nfiles) {
		fprintf(stderr, "pipeline: no regular file under %s\n", dir);
		return 1;
	}
	sort_files();
	if (!passes) {
		uint64_t want = (uint64_t)32 << 20;
		passes = g_total >= want ? 1 : (unsigned)((want + g_total) / (g_total + 1));
		passes = passes < 1 ? 1 : passes > 1000 ? 1000 : passes;
	}
	/* Rings of 32 blocks: room for the file source's 8 reads in flight and
	 * as many finished ones behind them. Deeper queues than two pipes hold
	 * (64 KiB each): under full load a block waits longer in them. */
	if (!capacity)
		capacity = 32;

	unsigned ntags = g_nfiles * passes;
	const char **paths = malloc(ntags * sizeof *paths);
	struct run rs = { .name = "shmp" }, rp = { .name = "pipes" };
	rs.acc = calloc(ntags, sizeof *rs.acc);
	rp.acc = calloc(ntags, sizeof *rp.acc);
	if (!paths || !rs.acc || !rp.acc) {
		fprintf(stderr, "pipeline: out of memory\n");
		return 1;
	}
	for (unsigned i = 0; i < ntags; i++)
		paths[i] = g_paths[i % g_nfiles];
	uint64_t total = g_total * passes;

	printf("shmp %s pipeline: %u files, %.1f KiB under %s; read %u time%s (%.1f MiB), blocks of %zu KiB\n"
	       "stages: file source -> count (lines, words, CRC-32; %u worker%s) -> this process\n\n",
	       shmp_version_string(), g_nfiles, (double)g_total / 1024, dir, passes, passes > 1 ? "s" : "",
	       (double)total / (1 << 20), block >> 10, workers, workers > 1 ? "s" : "");

	printf("shmp: rings of %u blocks in shared memory, %s\n", capacity,
	       shmp_io_uring_available() ? "io_uring reads into the first ring" : "pread into the first ring");
	run_shmp(&rs, paths, ntags, block, workers, capacity, total);
	printf("pipes: a forked reader -> pipe -> a forked counter -> pipe -> this process\n");
	run_pipes(&rp, paths, ntags, block, total);

	struct totals ts = totals_of(&rs, passes), tp = totals_of(&rp, passes);
	top_table(&rs, dir, top);
	printf("\nall %u files: %llu lines, %llu words, %llu bytes; CRC-32 of them end to end %08x%s\n", ts.files,
	       (unsigned long long)ts.lines, (unsigned long long)ts.words, (unsigned long long)ts.bytes, ts.crc,
	       ts.skipped ? " (some could not be read)" : "");

	printf("\n%-22s %14s %14s %12s\n", "", "shmp rings", "pipes", "shmp/pipes");
	double mbs = (double)rs.bytes / 1e6 / rs.seconds, mbp = (double)rp.bytes / 1e6 / rp.seconds;
	double bls = (double)rs.blocks / rs.seconds, blp = (double)rp.blocks / rp.seconds;
	printf("%-22s %14.3f %14.3f %12.2f\n", "seconds", rs.seconds, rp.seconds, rs.seconds / rp.seconds);
	printf("%-22s %14.1f %14.1f %12.2f\n", "throughput, MB/s", mbs, mbp, mbs / mbp);
	printf("%-22s %14.0f %14.0f %12.2f\n", "blocks/s", bls, blp, bls / blp);
	qsort(rs.lat, rs.nlat, sizeof *rs.lat, cmp_u64);
	qsort(rp.lat, rp.nlat, sizeof *rp.lat, cmp_u64);
	const double qs[3] = { 0.5, 0.99, 0.999 };
	const char *ql[3] = { "latency p50, us", "latency p99, us", "latency p99.9, us" };
	for (int i = 0; i < 3; i++)
		printf("%-22s %14.1f %14.1f %12.2f\n", ql[i], pct_us(&rs, qs[i]), pct_us(&rp, qs[i]),
		       pct_us(&rs, qs[i]) / pct_us(&rp, qs[i]));
	printf("(latency: from a block's read to its result's arrival here, queueing included)\n");
	double alone = count_alone(block);
	if (alone > 0)
		printf("the count stage's work alone, one process, no pipeline: %.1f MB/s: the ceiling of both with"
		       " one counting worker\n", alone);
	printf("\n");

	print_totals("shmp", &rs, &ts);
	print_totals("pipes", &rp, &tp);
	int ok = !rs.failed && !rp.failed && !rs.bad && !rp.bad && !ts.incomplete && !tp.incomplete &&
		 !ts.unequal && !tp.unequal && agree(&rs, &rp, ntags);
	if (ts.skipped != rs.source_errors / passes)
		ok = 0;
	printf("%s\n", ok ? "check: both pipelines agree on every file, every pass"
			  : "check: FAILED (the pipelines disagree, or a run went wrong)");
	if (!ok)
		printf("  shmp: failed %d, bad %llu, incomplete %u, passes unequal %u; pipes: failed %d, bad %llu,"
		       " incomplete %u, passes unequal %u; read errors %llu / %llu\n",
		       rs.failed, (unsigned long long)rs.bad, ts.incomplete, ts.unequal, rp.failed,
		       (unsigned long long)rp.bad, tp.incomplete, tp.unequal, (unsigned long long)rs.source_errors,
		       (unsigned long long)rp.source_errors);
	free_run(&rs, ntags);
	free_run(&rp, ntags);
	free(paths);
	for (unsigned i = 0; i < g_nfiles; i++)
		free(g_paths[i]);
	free(g_paths);
	free(g_sizes);
	return ok ? 0 : 1;
}
