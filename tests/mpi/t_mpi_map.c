/* The cluster Pool computes what the local Pool computes: map, starmap,
 * imap, imap_unordered and apply_async over 100,000 items give the local
 * Pool's results (item index included), with several chunksizes, on 1, 2
 * and 3 ranks; empty inputs; callbacks run once, in the root. */
#include "t_mpi.h"

#include <pthread.h>

enum { N = 100000 };

struct item {
	int64_t x;
	int32_t salt;
	int32_t pad;
};

static int work(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	const struct item *it = arg;
	int64_t v = it->x * it->x + it->salt;
	*(int64_t *)res = v * 31 + (int64_t)c->index; /* the index is part of the answer */
	return 0;
}

static int64_t *reference(const struct item *in)
{
	shmp_pool_t *lp = shmp_pool_create(2, NULL);
	T_CHECK(lp);
	int64_t *ref = calloc(N, sizeof *ref);
	T_EQ(shmp_pool_map(lp, work, in, sizeof *in, N, ref, sizeof *ref, NULL, NULL), 0);
	T_EQ(shmp_pool_close(lp), 0);
	T_EQ(shmp_pool_join(lp, 30), 0);
	shmp_pool_destroy(lp);
	return ref;
}

static pthread_t root_thread;
static int cb_runs, cb_errs, cb_wrong_thread;
static int on_done(shmp_mpi_async_t *a, void *results, size_t n, void *arg)
{
	(void)a;
	cb_runs++;
	if (pthread_equal(pthread_self(), root_thread) || getpid() != *(pid_t *)arg)
		cb_wrong_thread++;
	const int64_t *r = results;
	if (n != N || !r)
		cb_errs++;
	return 0;
}

static void check_imap(shmp_mpi_pool_t *p, const struct item *in, const int64_t *ref, bool ordered, size_t cs)
{
	struct shmp_mpi_call_opts co = SHMP_OPTS(shmp_mpi_call_opts, .chunksize = cs);
	shmp_mpi_imap_t *it = ordered ? shmp_mpi_pool_imap(p, work, in, sizeof *in, N, sizeof(int64_t), NULL, NULL, &co)
				      : shmp_mpi_pool_imap_unordered(p, work, in, sizeof *in, N, sizeof(int64_t), NULL,
								     NULL, &co);
	T_CHECK(it);
	unsigned char *seen = calloc(N, 1);
	size_t got = 0;
	int64_t v;
	uint64_t idx;
	int r;
	while ((r = shmp_mpi_imap_next(it, &v, &idx, 30, NULL)) == 1) {
		T_CHECK(idx < N);
		if (ordered)
			T_EQ(idx, got);
		T_EQ(v, ref[idx]);
		T_EQ(seen[idx], 0);
		seen[idx] = 1;
		got++;
	}
	T_EQ(r, 0);
	T_EQ(got, N);
	shmp_mpi_imap_destroy(it);
	free(seen);
}

int main(int argc, char **argv)
{
	t_mpi_init(&argc, &argv, 50);
	struct shmp_mpi_pool_opts o = SHMP_OPTS(shmp_mpi_pool_opts, .flags = t_mpi_flags(argc, argv));
	shmp_mpi_pool_t *p = shmp_mpi_pool_create(MPI_COMM_WORLD, 2, &o);
	T_CHECK(p);
	T_EQ(shmp_mpi_pool_size(p), t_size);
	if (!shmp_mpi_pool_is_root(p))
		return t_mpi_end(p, 0);
	root_thread = pthread_self();
	struct item *in = malloc(N * sizeof *in);
	for (int64_t i = 0; i < N; i++)
		in[i] = (struct item){ .x = i * 7 - 1000, .salt = (int32_t)(i % 13) };
	int64_t *ref = reference(in);
	int64_t *out = malloc(N * sizeof *out);

	double t0 = t_now();
#define STEP(s) do { if (getenv("T_VERBOSE")) fprintf(stderr, "%.3f %s\n", t_now() - t0, s); } while (0)
	STEP("reference");
	/* map and starmap, default and explicit chunksizes */
	size_t sizes[] = { 0, 1000, 20, 2 * N };
	for (unsigned k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
		memset(out, 0xab, N * sizeof *out);
		struct shmp_mpi_call_opts co = SHMP_OPTS(shmp_mpi_call_opts, .chunksize = sizes[k]);
		struct shmp_mpi_task_error e;
		int r = k % 2 ? shmp_mpi_pool_starmap(p, work, in, sizeof *in, N, out, sizeof *out, &co, &e)
			      : shmp_mpi_pool_map(p, work, in, sizeof *in, N, out, sizeof *out, &co, &e);
		T_EQ(r, 0);
		T_EQ(e.error, 0);
		T_CHECK(memcmp(out, ref, N * sizeof *out) == 0);
	}

	/* Outside tasks, on the root's own thread, there is no task rank,
	 * whatever the node pools ran (ThreadPool workers included). */
	T_EQ(shmp_mpi_task_rank(), -1);
	STEP("maps");
	/* imap and imap_unordered */
	check_imap(p, in, ref, true, 100);
	check_imap(p, in, ref, false, 100);
	check_imap(p, in, ref, true, 25);

	STEP("imaps");
	/* apply_async, 100,000 of them in flight at once */
	shmp_mpi_async_t **h = malloc(N * sizeof *h);
	int64_t *res = calloc(N, sizeof *res);
	for (size_t i = 0; i < N; i++) {
		h[i] = shmp_mpi_pool_apply_async(p, work, &in[i], sizeof in[i], &res[i], sizeof res[i], NULL);
		T_CHECK(h[i]);
	}
	for (size_t i = 0; i < N; i++) {
		T_EQ(shmp_mpi_async_get(h[i], 30, NULL), 0);
		T_EQ(shmp_mpi_async_is_successful(h[i]), 1);
		shmp_mpi_async_destroy(h[i]);
	}
	STEP("applies");
	/* apply's index is 0, as the local Pool's */
	for (size_t i = 0; i < N; i++) {
		int64_t want;
		struct shmp_task_ctx c = { .index = 0 };
		work(&in[i], &want, &c);
		T_EQ(res[i], want);
	}
	int64_t one = 0;
	T_EQ(shmp_mpi_pool_apply(p, work, &in[5], sizeof in[5], &one, sizeof one, NULL), 0);
	T_EQ(one, res[5]);

	/* map_async: the callback runs once, in the root, on the pool's thread */
	pid_t me = getpid();
	struct shmp_mpi_call_opts cbo = SHMP_OPTS(shmp_mpi_call_opts, .callback = on_done, .cb_arg = &me);
	memset(out, 0, N * sizeof *out);
	shmp_mpi_async_t *a = shmp_mpi_pool_map_async(p, work, in, sizeof *in, N, out, sizeof *out, &cbo);
	T_CHECK(a);
	T_EQ(shmp_mpi_async_get(a, 30, NULL), 0);
	T_EQ(cb_runs, 1);
	T_EQ(cb_errs, 0);
	T_EQ(cb_wrong_thread, 0);
	T_CHECK(memcmp(out, ref, N * sizeof *out) == 0);
	shmp_mpi_async_destroy(a);

	STEP("map_async");
	/* empty inputs: results at once */
	T_FAST(shmp_mpi_pool_map(p, work, in, sizeof *in, 0, out, sizeof *out, NULL, NULL), 0);
	shmp_mpi_imap_t *it = shmp_mpi_pool_imap(p, work, in, sizeof *in, 0, sizeof *out, NULL, NULL, NULL);
	T_CHECK(it);
	T_FAST(shmp_mpi_imap_next(it, out, NULL, 5, NULL), 0);
	shmp_mpi_imap_destroy(it);
	a = shmp_mpi_pool_map_async(p, work, in, sizeof *in, 0, out, sizeof *out, &cbo);
	T_CHECK(a);
	T_EQ(shmp_mpi_async_get(a, 5, NULL), 0);
	shmp_mpi_async_destroy(a);

	struct shmp_mpi_pool_stats st;
	T_EQ(shmp_mpi_pool_stats(p, &st), 0);
	T_EQ(st.failed, 0);
	T_EQ(st.completed, st.submitted);
	T_EQ(st.ranks, t_size);
	struct shmp_mpi_node_info ni[16];
	int nn = shmp_mpi_pool_nodes(p, ni, 16);
	T_CHECK(nn >= 1);
	uint64_t items = 0;
	for (int i = 0; i < nn; i++)
		items += ni[i].items;
	T_EQ(items, st.items);
	if ((o.flags & SHMP_MPI_PER_RANK) && t_size > 1) {
		T_EQ(nn, t_size - ((o.flags & SHMP_MPI_ROOT_IDLE) ? 1 : 0));
		for (int i = 0; i < nn; i++)
			T_CHECK(ni[i].rank == 0 || ni[i].items > 0); /* other ranks did work */
	} else if (!(o.flags & SHMP_MPI_PER_RANK)) {
		T_EQ(nn, 1); /* one machine: one shared node pool */
		T_EQ(ni[0].ranks, t_size);
		T_EQ(ni[0].workers, 2u * (unsigned)t_size);
	}
	free(h);
	free(res);
	free(out);
	free(ref);
	free(in);
	return t_mpi_end(p, 0);
}
