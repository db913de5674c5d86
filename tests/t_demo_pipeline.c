/* The pipeline demo (demos/pipeline) as a test, on a small directory made
 * here: 1.txt (one line), 2.bin (exactly two 4 KiB blocks of random
 * bytes), 3.empty, 4/b.txt (six blocks of text with a word across every
 * block boundary), plus a symlink and a fifo, which are not regular files.
 *  - `pipeline -b 4096 -r 1 DIR` exits 0, and both runs' totals lines (shmp
 *    and pipes) give exactly the figures computed here: 4 files, 0 skipped,
 *    the lines, the words (runs of non-white-space bytes, a word
 *    split between blocks counted once), the bytes, and the CRC-32 of the
 *    four files end to end; 10 blocks through the pipes, 10 to 14 through
 *    shmp (its file source may end a file with an empty block); the table
 *    row of 4/b.txt has its own CRC-32;
 *  - with 2 counting workers and 3 passes (blocks may arrive out of order,
 *    and each pass must agree): the same totals, 30 blocks (to 42);
 *  - with rings of 4 blocks, fewer than the file source's 8 reads in
 *    flight: backpressure, the same totals, no hang (the pipeline's
 *    contract: nothing ever hangs);
 *  - a directory that does not exist exits 2;
 *  - nothing new in /dev/shm.
 * The binary: ${SHMP_DEMOS_DIR}/pipeline, else ../demos/pipeline beside this
 * test's build directory; skipped (77) when it was not built. */
#include "t.h"

#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <sys/stat.h>

static char demo[PATH_MAX];
static pid_t runs[8]; /* the demo's pids, for the /dev/shm check */
static int nruns;

/* Where t_run_capture stores the next run's pid (the last slot is reused). */
static pid_t *next_run(void)
{
	return &runs[nruns < 8 ? nruns++ : 7];
}

static char dir[PATH_MAX];

static int find_demo(void)
{
	const char *env = getenv("SHMP_DEMOS_DIR");
	if (env && *env) {
		snprintf(demo, sizeof demo, "%s/pipeline", env);
	} else {
		char self[PATH_MAX];
		ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
		if (n <= 0)
			return 0;
		self[n] = 0;
		snprintf(demo, sizeof demo, "%s/../demos/pipeline", dirname(self));
	}
	return access(demo, X_OK) == 0;
}

/* ---- the temporary directory ---------------------------------------------- */

static const char *const names[] = { "1.txt", "2.bin", "3.empty", "4/b.txt", "5.lnk", "6.fifo" };

static void cleanup(void)
{
	char p[PATH_MAX + 32];
	if (!dir[0])
		return;
	for (int i = (int)(sizeof names / sizeof *names) - 1; i >= 0; i--) {
		snprintf(p, sizeof p, "%s/%s", dir, names[i]);
		unlink(p);
	}
	snprintf(p, sizeof p, "%s/4", dir);
	rmdir(p);
	rmdir(dir);
	dir[0] = 0;
}

static void put_file(const char *name, const void *data, size_t n)
{
	char p[PATH_MAX + 32];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	T_CHECK(fd >= 0);
	T_EQ(write(fd, data, n), (ssize_t)n);
	close(fd);
}

#define BLOCK 4096
#define BTXT (5 * BLOCK + 123)

/* Text of words 1..12 letters long between runs of white space, with a
 * word straddling each block boundary. */
static void make_text(unsigned char *t, size_t n)
{
	static const char ws[] = " \t\n\r\v\f";
	size_t i = 0;
	while (i < n) {
		unsigned len = 1 + t_rnd(12);
		for (unsigned k = 0; k < len && i < n; k++)
			t[i++] = (unsigned char)('a' + t_rnd(26));
		for (unsigned k = 1 + t_rnd(2); k && i < n; k--)
			t[i++] = (unsigned char)ws[t_rnd(6)];
	}
	for (size_t b = BLOCK; b < n; b += BLOCK)
		memset(t + b - 3, 'x', 6);
}

/* ---- what the demo must print ------------------------------------------------ */

static int is_ws(unsigned char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}

static uint32_t crc32_update(uint32_t crc, const unsigned char *p, size_t n)
{
	crc = ~crc;
	while (n--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = crc & 1 ? (crc >> 1) ^ 0xedb88320u : crc >> 1;
	}
	return ~crc;
}

struct want {
	uint64_t lines, words, bytes;
	uint32_t crc;
};

static void add(struct want *w, const unsigned char *p, size_t n)
{
	int in = 0;
	for (size_t i = 0; i < n; i++) {
		w->words += !in && !is_ws(p[i]);
		in = !is_ws(p[i]);
		w->lines += p[i] == '\n';
	}
	w->bytes += n;
	w->crc = crc32_update(w->crc, p, n);
}

/* The name holds one of the demo's pids as a number of its own. */
static int has_pid(const char *name)
{
	for (int i = 0; i < nruns; i++) {
		char num[16];
		int n = snprintf(num, sizeof num, "%d", (int)runs[i]);
		for (const char *p = name; (p = strstr(p, num)); p++)
			if ((p == name || (p[-1] < '0' || p[-1] > '9')) && (p[n] < '0' || p[n] > '9'))
				return 1;
	}
	return 0;
}

/* ---- running it ------------------------------------------------------------------ */

/* The arguments, for messages. */
static const char *joined(const char *const *args)
{
	static char buf[PATH_MAX + 128];
	size_t n = 0;
	buf[0] = 0;
	for (int i = 0; args[i] && n < sizeof buf; i++)
		n += (size_t)snprintf(buf + n, sizeof buf - n, " %s", args[i]);
	return buf;
}



/* The run printed both totals lines as wanted, said the check passed, and
 * exited 0. */
static void check_run(const char *const *args, const struct want *w, unsigned blocks, unsigned passes,
		      uint32_t crc_b)
{
	char *out, line[2][256], row[64];
	const char *who[2] = { "shmp", "pipes" };
	double t0 = t_now();
	int st = t_run_capture(demo, args, &out, 15, next_run());
	int ok = t_exit_code(st) == 0 && strstr(out, "check: both pipelines agree");
	for (int i = 0; i < 2; i++) {
		snprintf(line[i], sizeof line[i],
			 "totals %-6s files 4 skipped 0 lines %llu words %llu bytes %llu crc32 %08x blocks ", who[i],
			 (unsigned long long)w->lines, (unsigned long long)w->words, (unsigned long long)w->bytes,
			 w->crc);
		const char *at = strstr(out, line[i]);
		/* The pipes cut exactly `blocks`; shmp's file source may end
		 * each of the 4 files with an empty block of its own. */
		unsigned got = at ? (unsigned)strtoul(at + strlen(line[i]), NULL, 10) : 0;
		ok = ok && at && got >= blocks && got <= (i ? blocks : blocks + 4 * passes);
	}
	snprintf(row, sizeof row, "  %08x  4/b.txt\n", crc_b);
	ok = ok && strstr(out, row);
	if (!ok) {
		fprintf(stderr, "%s\n-- pipeline%s exited %d; wanted (then %u blocks):\n%s\n%s\n(and a row ending%s)\n",
			out, joined(args), t_exit_code(st), blocks, line[0], line[1], row);
		exit(1);
	}
	printf("pipeline%s: ok in %.2f s\n", joined(args), t_now() - t0);
	free(out);
}

int main(void)
{
	t_watchdog(120);
	if (!find_demo()) {
		printf("skip: no pipeline demo at %s (demos not built?)\n", demo);
		return T_SKIP;
	}
	printf("seed %llu (T_SEED replays it)\n", (unsigned long long)t_seed());
	char *before[512], *after[512];
	int nbefore = t_shm_list(before, 512);

	snprintf(dir, sizeof dir, "/tmp/t_demo_pipeline.XXXXXX");
	T_CHECK(mkdtemp(dir));
	atexit(cleanup);

	/* The files, in the order the demo reads them (sorted paths), and
	 * what they add up to. */
	struct want w = { 0 };
	static unsigned char bin[2 * BLOCK], txt[BTXT];
	const char *hello = "hello world\n";
	for (size_t i = 0; i < sizeof bin; i++)
		bin[i] = (unsigned char)t_rnd(256);
	make_text(txt, sizeof txt);
	put_file("1.txt", hello, strlen(hello));
	put_file("2.bin", bin, sizeof bin);
	put_file("3.empty", "", 0);
	char p[PATH_MAX + 32], q[PATH_MAX + 32];
	snprintf(p, sizeof p, "%s/4", dir);
	T_EQ(mkdir(p, 0755), 0);
	put_file("4/b.txt", txt, sizeof txt);
	snprintf(p, sizeof p, "%s/5.lnk", dir);
	snprintf(q, sizeof q, "%s/1.txt", dir);
	T_EQ(symlink(q, p), 0);
	snprintf(p, sizeof p, "%s/6.fifo", dir);
	T_EQ(mkfifo(p, 0644), 0);
	add(&w, (const unsigned char *)hello, strlen(hello));
	add(&w, bin, sizeof bin);
	add(&w, txt, sizeof txt);
	uint32_t crc_b = crc32_update(0, txt, sizeof txt);
	/* The words across block boundaries are whole words, counted once. */
	T_CHECK(w.words > 100 && w.lines > 10);

	/* 1 + 2 + 1 + 6 blocks. */
	check_run((const char *const[]){ "-b", "4096", "-r", "1", dir, NULL }, &w, 10, 1, crc_b);
	check_run((const char *const[]){ "-b", "4096", "-w", "2", "-r", "3", dir, NULL }, &w, 30, 3, crc_b);
	check_run((const char *const[]){ "-b", "4096", "-c", "4", "-r", "1", dir, NULL }, &w, 10, 1, crc_b);

	char *out;
	snprintf(p, sizeof p, "%s/no_such_dir", dir);
	int st = t_run_capture(demo, (const char *const[]){ p, NULL }, &out, 30, next_run());
	T_EQ(t_exit_code(st), 2);
	T_CHECK(strstr(out, "not a directory"));
	free(out);

	/* Nothing of the demo's in /dev/shm (its pipelines live in anonymous
	 * segments; a named one would carry its pid). Other programs on the
	 * machine come and go there: only names with a demo's pid count. */
	int nafter = t_shm_list(after, 512), fresh = 0;
	for (int i = 0; i < nafter; i++) {
		int seen = 0;
		for (int j = 0; j < nbefore && !seen; j++)
			seen = !strcmp(after[i], before[j]);
		if (!seen && has_pid(after[i])) {
			fprintf(stderr, "left in /dev/shm: %s\n", after[i]);
			fresh++;
		}
	}
	T_EQ(fresh, 0);
	for (int i = 0; i < nbefore; i++)
		free(before[i]);
	for (int i = 0; i < nafter; i++)
		free(after[i]);
	T_NO_CHILDREN();
	return 0;
}
