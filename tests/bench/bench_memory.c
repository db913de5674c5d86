/* Memory (issue 15): what an idle 2-worker Pool costs, the same after 1 M
 * tasks, a 4-stage pipeline, and the pool's segment.
 *
 * How it is counted. An object's processes are this process (the caller:
 * its figures after the object was made minus before) and its descendants
 * (the pool's zygote and workers, the pipeline's workers), found through
 * /proc/PID/task/TID/children. For each, /proc/PID/smaps_rollup gives
 *   Rss      pages resident in it, shared ones included: the sum over the
 *            processes counts a shared page (libc, the segment) once per
 *            process that maps it, so it overstates;
 *   Pss      each resident page divided by the number of processes mapping
 *            it: the sum is what the object costs the machine;
 *   Private  pages only this process maps (Private_Clean + Private_Dirty).
 * The caller's delta can be negative: forked children share pages it had
 * alone before (its Pss and Private drop, the children's hold the rest).
 * The pool's segment is found as the shared mappings this process gained
 * while the pool was made (/proc/self/smaps): its size is address space
 * reserved, Rss the pages touched so far.
 *
 * The pipeline is measured first, in a child forked before anything else
 * was made, so that its figure is the pipeline's: measured after the Pool
 * in the same process, its workers' Pss also carried what the Pool phase
 * had left in the caller (heap and segment pages they share with it),
 * which moved with the Pool's code, not the pipeline's.
 *
 * No figure is timed, so there is no loaded state here. BENCH_QUICK: 10 k
 * tasks instead of 1 M. */
#include "bench.h"

#include <ctype.h>
#include <dirent.h>
#include <stdint.h>

#define MAXP 64

static void die(const char *what)
{
	fprintf(stderr, "bench_memory: %s\n", what);
	exit(1);
}

static void check(int e, const char *what)
{
	if (e) {
		fprintf(stderr, "bench_memory: %s: %s\n", what, shmp_strerror(e));
		exit(1);
	}
}

/* ---- /proc ------------------------------------------------------------- */

struct mem {
	long rss, pss, priv; /* kB */
};

static struct mem mem_of(pid_t pid)
{
	char path[64], line[256];
	struct mem m = { 0, 0, 0 };
	snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return m;
	while (fgets(line, sizeof line, f)) {
		long v;
		if (sscanf(line, "Rss: %ld", &v) == 1)
			m.rss = v;
		else if (sscanf(line, "Pss: %ld", &v) == 1)
			m.pss = v;
		else if (sscanf(line, "Private_Clean: %ld", &v) == 1 || sscanf(line, "Private_Dirty: %ld", &v) == 1)
			m.priv += v;
	}
	fclose(f);
	return m;
}

/* The parent's pid, from /proc/PID/stat (after the command in parentheses). */
static int ppid_of(pid_t pid)
{
	char path[64], buf[512];
	int pp = 0;
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (f) {
		size_t n = fread(buf, 1, sizeof buf - 1, f);
		buf[n] = 0;
		char *r = strrchr(buf, ')');
		if (!r || sscanf(r + 1, " %*c %d", &pp) != 1)
			pp = 0;
		fclose(f);
	}
	return pp;
}

/* Every descendant of pid, children of any of its threads, depth first. */
static int descendants(pid_t pid, pid_t *out, int n, int max)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	if (!d)
		return n;
	struct dirent *e;
	while ((e = readdir(d)) && n < max) {
		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		char cp[320];
		snprintf(cp, sizeof cp, "/proc/%d/task/%.255s/children", (int)pid, e->d_name);
		FILE *f = fopen(cp, "r");
		if (!f)
			continue;
		int c;
		while (n < max && fscanf(f, "%d", &c) == 1) {
			out[n++] = c;
			n = descendants(c, out, n, max);
		}
		fclose(f);
	}
	closedir(d);
	return n;
}

/* The processes of an object: the caller's delta since `before`, then its
 * descendants. Prints a table; returns the totals. */
static struct mem report_procs(const char *what, struct mem before)
{
	pid_t kids[MAXP];
	int n = descendants(getpid(), kids, 0, MAXP);
	struct mem self = mem_of(getpid()), tot;
	tot = (struct mem){ self.rss - before.rss, self.pss - before.pss, self.priv - before.priv };
	printf("\n-- %s --\n", what);
	printf("%-30s %8s %8s %10s %10s %10s\n", "process", "pid", "ppid", "Rss kB", "Pss kB", "Private kB");
	printf("%-30s %8d %8s %10ld %10ld %10ld\n", "caller (delta)", (int)getpid(), "", tot.rss, tot.pss, tot.priv);
	for (int i = 0; i < n; i++) {
		struct mem m = mem_of(kids[i]);
		int pp = ppid_of(kids[i]);
		printf("%-30s %8d %8d %10ld %10ld %10ld\n", pp == getpid() ? "child of the caller" : "grandchild",
		       (int)kids[i], pp, m.rss, m.pss, m.priv);
		tot.rss += m.rss;
		tot.pss += m.pss;
		tot.priv += m.priv;
	}
	printf("%-30s %8s %8s %10ld %10ld %10ld   (%d processes besides the caller)\n", "total", "", "", tot.rss, tot.pss,
	       tot.priv, n);
	fflush(stdout);
	return tot;
}

/* This process's mappings, from /proc/self/smaps. */
struct map {
	uintptr_t lo, hi;
	char perms[8];
	char name[96];
	long rss, pss; /* kB */
};

static int maps_read(struct map *m, int max)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	int n = 0;
	if (!f)
		return 0;
	while (fgets(line, sizeof line, f)) {
		unsigned long lo, hi;
		char perms[8];
		int off = 0;
		long v;
		if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %n", &lo, &hi, perms, &off) == 3 && off > 0) {
			if (n == max)
				break;
			m[n] = (struct map){ .lo = lo, .hi = hi };
			snprintf(m[n].perms, sizeof m[n].perms, "%s", perms);
			snprintf(m[n].name, sizeof m[n].name, "%s", line + off);
			m[n].name[strcspn(m[n].name, "\n")] = 0;
			n++;
		} else if (n && sscanf(line, "Rss: %ld", &v) == 1) {
			m[n - 1].rss = v;
		} else if (n && sscanf(line, "Pss: %ld", &v) == 1) {
			m[n - 1].pss = v;
		}
	}
	fclose(f);
	return n;
}

#define MAXMAPS 4096
static struct map maps_before[MAXMAPS], maps_now[MAXMAPS];
static int n_before;

static int was_there(const struct map *m)
{
	for (int i = 0; i < n_before; i++)
		if (maps_before[i].lo == m->lo && maps_before[i].hi == m->hi)
			return 1;
	return 0;
}

/* The shared mappings made since maps_before (the pool's segment), and the
 * private ones summed. Returns the resident kB of the largest shared one. */
static long report_new_maps(const char *what, uintptr_t seg_lo)
{
	int n = maps_read(maps_now, MAXMAPS);
	long priv_size = 0, priv_rss = 0, seg_rss = -1;
	int nshared = 0;
	printf("\n-- %s: mappings this process gained with the pool --\n", what);
	printf("%-18s %-5s %12s %10s %10s  %s\n", "address", "perms", "size kB", "Rss kB", "Pss kB", "name");
	for (int i = 0; i < n; i++) {
		struct map *m = &maps_now[i];
		if (seg_lo ? m->lo != seg_lo : was_there(m))
			continue;
		if (m->perms[3] == 's') {
			printf("%-18lx %-5s %12lu %10ld %10ld  %s\n", (unsigned long)m->lo, m->perms,
			       (unsigned long)((m->hi - m->lo) >> 10), m->rss, m->pss, m->name[0] ? m->name : "(anonymous)");
			nshared++;
			if (seg_rss < m->rss)
				seg_rss = m->rss;
		} else {
			priv_size += (long)((m->hi - m->lo) >> 10);
			priv_rss += m->rss;
		}
	}
	if (!seg_lo)
		printf("%-18s %-5s %12ld %10ld %10s  %s\n", "(private, summed)", "", priv_size, priv_rss, "",
		       "thread stacks, heap growth, ...");
	if (!nshared)
		printf("(no new shared mapping found)\n");
	fflush(stdout);
	return seg_rss;
}

/* The largest shared mapping made since maps_before: the pool's segment. */
static uintptr_t find_segment(void)
{
	int n = maps_read(maps_now, MAXMAPS);
	uintptr_t lo = 0, size = 0;
	for (int i = 0; i < n; i++)
		if (maps_now[i].perms[3] == 's' && !was_there(&maps_now[i]) && maps_now[i].hi - maps_now[i].lo > size) {
			size = maps_now[i].hi - maps_now[i].lo;
			lo = maps_now[i].lo;
		}
	return lo;
}

/* ---- the objects --------------------------------------------------------- */

static int t_sq(const void *a, void *r, const struct shmp_task_ctx *c)
{
	(void)c;
	long x = *(const long *)a;
	*(long *)r = x * x;
	return 0;
}

/* n tasks through apply_async, in bursts of up to 10 k handles, every
 * result checked and every handle released. The arrays are touched before
 * any figure is taken (main), so they are not counted as the pool's. */
enum { BURST = 10000 };
static shmp_async_t *h[BURST];
static long out[BURST];

static void tasks(shmp_pool_t *p, long n)
{
	for (long done = 0; done < n;) {
		long k = n - done < BURST ? n - done : BURST;
		for (long i = 0; i < k; i++) {
			long x = done + i;
			h[i] = shmp_pool_apply_async(p, t_sq, &x, sizeof x, &out[i], sizeof out[i], NULL);
			if (!h[i])
				check(-errno, "apply_async");
		}
		for (long i = 0; i < k; i++) {
			long x = done + i;
			check(shmp_async_get(h[i], SHMP_FOREVER, NULL), "get");
			if (out[i] != x * x)
				die("wrong result");
			shmp_async_destroy(h[i]);
		}
		done += k;
	}
}

static int fwd(const struct shmp_msg *in, shmp_stage_ctx_t *ctx, void *arg)
{
	(void)arg;
	return shmp_stage_emit(ctx, in->data, in->len);
}

static void settle(void)
{
	usleep(200 * 1000);
}

static double pct(long a, long b)
{
	return b ? 100.0 * (double)(a - b) / (double)b : 0;
}

/* The 4-stage pipeline, in this (fresh) process: its figures. */
static struct mem pipeline_mem(void)
{
	char what[128];
	settle();
	struct mem before = mem_of(getpid());
	shmp_pipeline_t *pl = shmp_pipeline_create(NULL);
	if (!pl)
		check(-errno, "pipeline create");
	for (int s = 0; s < 4; s++) {
		char name[16];
		snprintf(name, sizeof name, "fwd%d", s + 1);
		if (shmp_pipeline_add_stage(pl, name, fwd, NULL, 1) < 0)
			die("add_stage");
	}
	check(shmp_pipeline_start(pl), "pipeline start");
	long n_msgs = bench_n(100000L, 1000L);
	char msg[64];
	memset(msg, 'm', sizeof msg);
	for (long i = 0; i < n_msgs; i++) {
		struct shmp_msg m;
		check(shmp_pipeline_put(pl, msg, sizeof msg, 0, SHMP_FOREVER), "put");
		check(shmp_pipeline_next(pl, &m, SHMP_FOREVER), "next");
		if (m.len != sizeof msg)
			die("pipeline: wrong message");
		check(shmp_pipeline_done(pl), "done");
	}
	settle();
	snprintf(what, sizeof what, "4-stage pipeline, 1 worker each, idle after %ld 64-byte messages", n_msgs);
	struct mem pipe = report_procs(what, before);
	check(shmp_pipeline_close(pl), "pipeline close");
	check(shmp_pipeline_join(pl, 30), "pipeline join");
	shmp_pipeline_destroy(pl);
	return pipe;
}

/* pipeline_mem() in a child forked now, before this process made anything. */
static struct mem pipeline_mem_fresh(void)
{
	int fd[2];
	if (pipe(fd) != 0)
		die("pipe");
	fflush(NULL);
	pid_t c = fork();
	if (c < 0)
		die("fork");
	if (c == 0) {
		close(fd[0]);
		struct mem m = pipeline_mem();
		fflush(NULL);
		_exit(write(fd[1], &m, sizeof m) == (ssize_t)sizeof m ? 0 : 1);
	}
	close(fd[1]);
	struct mem m;
	ssize_t got = read(fd[0], &m, sizeof m);
	int st = 0;
	waitpid(c, &st, 0);
	close(fd[0]);
	if (got != (ssize_t)sizeof m || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		die("pipeline measurement");
	return m;
}

int main(void)
{
	long n_tasks = bench_n(1000000L, 10000L);
	bench_header("bench_memory", "memory of an idle 2-worker Pool, after 1 M tasks, a 4-stage pipeline, the pool segment");
	printf("# kB from /proc/PID/smaps_rollup; caller = this process's growth, then every descendant\n"
	       "# (zygote, workers). Sum of Pss = the cost; sum of Rss counts shared pages per process.\n");
	struct mem pipe = pipeline_mem_fresh();

	/* The default segment and the allocator of this process first, so
	 * the pool's figures are the pool's. */
	if (!shmp_segment_default())
		die("default segment");
	memset(h, 0, sizeof h);
	memset(out, 0, sizeof out);
	settle();

	/* ---- the Pool ---- */
	n_before = maps_read(maps_before, MAXMAPS);
	struct mem before = mem_of(getpid());
	shmp_pool_t *p = shmp_pool_create(2, NULL);
	if (!p)
		check(-errno, "pool create");
	tasks(p, 100); /* both workers up and past their first task */
	settle();
	struct mem idle = report_procs("idle 2-worker Pool (after create and 100 tasks)", before);
	uintptr_t seg = find_segment();
	report_new_maps("idle 2-worker Pool", 0);
	long seg_idle = seg ? report_new_maps("the pool's segment, idle", seg) : -1;

	double t = bench_now();
	tasks(p, n_tasks);
	t = bench_now() - t;
	settle();
	char what[128];
	snprintf(what, sizeof what, "the same Pool after %ld more tasks (apply_async in bursts of 10 k, %.1f s)", n_tasks,
		 t);
	struct mem busy = report_procs(what, before);
	long seg_busy = seg ? report_new_maps("the pool's segment, after the tasks", seg) : -1;
	struct shmp_pool_stats st;
	check(shmp_pool_stats(p, &st), "stats");
	check(shmp_pool_close(p), "close");
	check(shmp_pool_join(p, SHMP_FOREVER), "join");
	shmp_pool_destroy(p);

	printf("\n== memory summary (kB; issue 15: none may grow by more than 10%%) ==\n");
	printf("%-52s %10s %10s %10s\n", "", "Pss sum", "Rss sum", "Private");
	printf("%-52s %10ld %10ld %10ld\n", "idle 2-worker Pool", idle.pss, idle.rss, idle.priv);
	snprintf(what, sizeof what, "the same after %ld tasks", n_tasks);
	printf("%-52s %10ld %10ld %10ld   (Pss %+.1f%% vs the idle pool; %llu tasks submitted)\n", what, busy.pss, busy.rss,
	       busy.priv, pct(busy.pss, idle.pss), (unsigned long long)st.submitted);
	printf("%-52s %10ld %10ld %10ld\n", "4-stage pipeline, idle", pipe.pss, pipe.rss, pipe.priv);
	if (seg)
		printf("%-52s %10s %10ld %10s   (after the tasks: %ld kB resident)\n", "pool segment, resident (Rss, caller)",
		       "", seg_idle, "", seg_busy);
	else
		printf("pool segment: not found among the new shared mappings\n");
	return 0;
}
