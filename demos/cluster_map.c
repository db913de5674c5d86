/* cluster_map: shmp beyond one machine — a map over MPI ranks, each rank
 * feeding a node-local shmp Pool, and a counter on an MPI window.
 *
 *   mpirun -np 3 ./demos/cluster_map                 # 3 ranks, this machine
 *   mpirun -np 3 ./demos/cluster_map --shared        # ranks of a machine share one pool
 *   mpirun -np 3 ./demos/cluster_map -w 4 FILE...    # 4 workers per rank, your files
 *
 * Part 1, Monte-Carlo pi: 96 items of 200,000 samples each.
 * Part 2, a word count over files (default: shmp's own sources). On real
 *         nodes the files must be visible at the same path on every node.
 * Part 3, every rank adds to one counter in rank 0's window.
 * Each part prints which rank and worker did what, and the time taken.
 *
 * By default every rank runs a pool of its own (SHMP_MPI_PER_RANK), so
 * that on one machine you see the ranks share the work; --shared is the
 * library's default, where the ranks of one machine share one pool and no
 * item crosses MPI there. The demo checks its results: exit 0 if right.
 */
#include "shmp/mpi.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef SHMP_SOURCE_DIR
#define SHMP_SOURCE_DIR "src"
#endif

enum { MAX_RANKS = 64, MAX_WORKERS = 64 };

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ---- tasks: plain local-Pool task functions ------------------------- */

struct pi_in {
	uint64_t seed, samples;
};
struct who {
	int32_t rank, worker;
	int32_t pid, pad;
};
struct pi_out {
	uint64_t hits;
	struct who who;
};

static void whoami(struct who *w, const struct shmp_task_ctx *c)
{
	w->rank = shmp_mpi_task_rank();
	w->worker = (int32_t)c->worker;
	w->pid = (int32_t)getpid();
}

static int pi_task(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	const struct pi_in *in = arg;
	struct pi_out *out = res;
	uint64_t s = in->seed * 0x9e3779b97f4a7c15ull + 1, hits = 0;
	for (uint64_t i = 0; i < in->samples; i++) {
		s ^= s << 13, s ^= s >> 7, s ^= s << 17; /* xorshift64 */
		double x = (double)(s >> 11) / 9007199254740992.0;
		s ^= s << 13, s ^= s >> 7, s ^= s << 17;
		double y = (double)(s >> 11) / 9007199254740992.0;
		hits += x * x + y * y <= 1.0;
	}
	out->hits = hits;
	whoami(&out->who, c);
	return 0;
}

struct wc_in {
	char path[512];
};
struct wc_out {
	uint64_t bytes, words, lines;
	struct who who;
};

static int wc_task(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	const struct wc_in *in = arg;
	struct wc_out *out = res;
	memset(out, 0, sizeof *out);
	FILE *f = fopen(in->path, "re");
	if (!f)
		return 1; /* fails this item: the caller learns which, and where */
	int ch, inword = 0;
	while ((ch = getc(f)) != EOF) {
		out->bytes++;
		out->lines += ch == '\n';
		int sp = ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r';
		out->words += !sp && !inword;
		inword = !sp;
	}
	fclose(f);
	whoami(&out->who, c);
	return 0;
}

/* ---- who did what ----------------------------------------------------- */

struct tally {
	uint64_t items[MAX_RANKS][MAX_WORKERS];
	int32_t pid[MAX_RANKS][MAX_WORKERS];
};

static void tally_add(struct tally *t, const struct who *w)
{
	if (w->rank >= 0 && w->rank < MAX_RANKS && w->worker >= 0 && w->worker < MAX_WORKERS) {
		t->items[w->rank][w->worker]++;
		t->pid[w->rank][w->worker] = w->pid;
	}
}

static void tally_print(const struct tally *t, const char *what, shmp_mpi_pool_t *p)
{
	struct shmp_mpi_node_info ni[MAX_RANKS];
	int nn = shmp_mpi_pool_nodes(p, ni, MAX_RANKS);
	for (int r = 0; r < MAX_RANKS; r++) {
		const char *host = "?";
		for (int i = 0; i < nn && i < MAX_RANKS; i++)
			if (ni[i].rank == r)
				host = ni[i].host;
		for (int w = 0; w < MAX_WORKERS; w++)
			if (t->items[r][w])
				printf("  rank %d (%s) worker %d (pid %d): %llu %s\n", r, host, w, t->pid[r][w],
				       (unsigned long long)t->items[r][w], what);
	}
}

/* ---- the files -------------------------------------------------------- */

static size_t list_sources(const char *dir, struct wc_in *out, size_t max)
{
	DIR *d = opendir(dir);
	size_t n = 0;
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d)) && n < max) {
		size_t l = strlen(e->d_name);
		if (l < 3 || (strcmp(e->d_name + l - 2, ".c") && strcmp(e->d_name + l - 2, ".h")))
			continue;
		snprintf(out[n].path, sizeof out[n].path, "%s/%s", dir, e->d_name);
		n++;
	}
	closedir(d);
	return n;
}

static uint64_t count_here(const char *path, int what)
{
	struct wc_in in;
	struct wc_out out;
	snprintf(in.path, sizeof in.path, "%s", path);
	struct shmp_task_ctx c = { 0 };
	if (wc_task(&in, &out, &c))
		return 0;
	return what == 0 ? out.words : out.lines;
}

/* ---- main ------------------------------------------------------------- */

int main(int argc, char **argv)
{
	int provided = 0, rank = 0, size = 1;
	MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	int workers = 2, argi = 1;
	unsigned flags = SHMP_MPI_PER_RANK;
	for (; argi < argc && argv[argi][0] == '-'; argi++) {
		if (!strcmp(argv[argi], "--shared"))
			flags = 0;
		else if (!strcmp(argv[argi], "-w") && argi + 1 < argc)
			workers = atoi(argv[++argi]);
		else {
			if (rank == 0)
				fprintf(stderr, "usage: mpirun -np N %s [--shared] [-w WORKERS] [FILE...]\n", argv[0]);
			MPI_Finalize();
			return 2;
		}
	}
	struct shmp_mpi_pool_opts o = SHMP_OPTS(shmp_mpi_pool_opts, .flags = flags);
	double t0 = now();
	shmp_mpi_pool_t *p = shmp_mpi_pool_create(MPI_COMM_WORLD, workers, &o);
	if (!p) {
		fprintf(stderr, "rank %d: shmp_mpi_pool_create: %s\n", rank, shmp_strerror(errno));
		MPI_Abort(MPI_COMM_WORLD, 1);
	}
	int bad = 0;
	if (shmp_mpi_pool_is_root(p)) {
		printf("cluster pool: %d ranks, %d workers in all (%s), made in %.1f ms\n", size,
		       shmp_mpi_pool_workers(p),
		       flags ? "a pool per rank" : "ranks of a machine share one pool", (now() - t0) * 1e3);

		/* 1. Monte-Carlo pi */
		enum { ITEMS = 96, SAMPLES = 200000 };
		static struct pi_in pin[ITEMS];
		static struct pi_out pout[ITEMS];
		for (int i = 0; i < ITEMS; i++)
			pin[i] = (struct pi_in){ .seed = (uint64_t)i + 1, .samples = SAMPLES };
		struct shmp_mpi_call_opts co = SHMP_OPTS(shmp_mpi_call_opts, .chunksize = 4);
		struct shmp_mpi_task_error e;
		double t1 = now();
		int r = shmp_mpi_pool_map(p, pi_task, pin, sizeof *pin, ITEMS, pout, sizeof *pout, &co, &e);
		double t2 = now();
		if (r) {
			printf("pi: %s (item %llu, rank %d)\n", shmp_strerror(r), (unsigned long long)e.index, e.rank);
			bad = 1;
		} else {
			uint64_t hits = 0;
			static struct tally t;
			for (int i = 0; i < ITEMS; i++) {
				hits += pout[i].hits;
				tally_add(&t, &pout[i].who);
			}
			double pi = 4.0 * (double)hits / ((double)ITEMS * SAMPLES);
			printf("\n1. pi ~ %.5f from %d x %d samples in %.1f ms (%.1f M samples/s)\n", pi, ITEMS,
			       SAMPLES, (t2 - t1) * 1e3, (double)ITEMS * SAMPLES / (t2 - t1) / 1e6);
			tally_print(&t, "items", p);
			bad |= fabs(pi - 3.14159) > 0.01;
		}

		/* 2. word count, as imap_unordered: results as they come */
		static struct wc_in files[4096];
		size_t nf = 0;
		for (int i = argi; i < argc && nf < 4096; i++, nf++)
			snprintf(files[nf].path, sizeof files[nf].path, "%s", argv[i]);
		if (!nf)
			nf = list_sources(SHMP_SOURCE_DIR, files, 4096);
		double t3 = now();
		shmp_mpi_imap_t *it = shmp_mpi_pool_imap_unordered(p, wc_task, files, sizeof *files, nf,
								   sizeof(struct wc_out), NULL, NULL, NULL);
		struct wc_out w;
		uint64_t idx, words = 0, lines = 0, bytes = 0, best = 0, best_idx = 0, failed = 0;
		static struct tally t;
		while (it && (r = shmp_mpi_imap_next(it, &w, &idx, SHMP_FOREVER, &e)) != 0) {
			if (r < 0) {
				printf("  %s: %s (on rank %d)\n", files[idx].path, shmp_strerror(r), e.rank);
				failed++;
				continue;
			}
			words += w.words;
			lines += w.lines;
			bytes += w.bytes;
			tally_add(&t, &w.who);
			if (w.words > best) {
				best = w.words;
				best_idx = idx;
			}
		}
		shmp_mpi_imap_destroy(it);
		double t4 = now();
		printf("\n2. %zu files: %llu lines, %llu words, %llu bytes in %.1f ms; most words: %s (%llu)\n", nf,
		       (unsigned long long)lines, (unsigned long long)words, (unsigned long long)bytes,
		       (t4 - t3) * 1e3, nf ? files[best_idx].path : "-", (unsigned long long)best);
		tally_print(&t, "files", p);
		/* check against this process counting alone */
		uint64_t want = 0;
		for (size_t i = 0; i < nf; i++)
			want += count_here(files[i].path, 0);
		bad |= want != words || !it || (failed && argi == argc);

		struct shmp_mpi_pool_stats st;
		shmp_mpi_pool_stats(p, &st);
		printf("\npool: %llu chunks over %u node pools, %llu failed\n", (unsigned long long)st.completed,
		       st.nodes, (unsigned long long)st.failed);
		shmp_mpi_pool_close(p);
	}
	shmp_mpi_pool_join(p, SHMP_FOREVER); /* the other ranks worked in here */
	shmp_mpi_pool_destroy(p);

	/* 3. a counter in rank 0's window, 10,000 adds from every rank */
	shmp_mpi_value_t *v = shmp_mpi_value_create(MPI_COMM_WORLD, 'q', NULL, NULL);
	if (!v)
		MPI_Abort(MPI_COMM_WORLD, 1);
	double t5 = now();
	for (int i = 0; i < 10000; i++)
		shmp_mpi_value_add(v, 1, NULL);
	double t6 = now();
	MPI_Barrier(MPI_COMM_WORLD);
	int64_t total = 0;
	shmp_mpi_value_load(v, &total);
	double rate = 10000 / (t6 - t5), all = 0;
	MPI_Reduce(&rate, &all, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
	if (rank == 0) {
		printf("\n3. window counter: %lld after 10,000 adds from each of %d ranks (%.2f M adds/s together)\n",
		       (long long)total, size, all / 1e6);
		bad |= total != 10000LL * size;
		printf("\n%s\n", bad ? "WRONG RESULTS" : "all results checked");
	}
	shmp_mpi_value_destroy(v);
	MPI_Bcast(&bad, 1, MPI_INT, 0, MPI_COMM_WORLD);
	MPI_Finalize();
	return bad;
}
