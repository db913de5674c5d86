/* Failure semantics across ranks, run with the root idle so that every
 * item runs on another rank: a task failing there fails its item with
 * -SHMP_ETASK naming the rank (the rest completes; imap reports the
 * skipped items); a worker SIGKILLed there fails its chunk with
 * -SHMP_EWORKERDIED and the signal, names the rank, the rest completes and
 * nothing hangs; initializers and maxtasksperchild work per rank; an
 * initializer failing on one rank breaks the pool with -SHMP_EINIT naming
 * it; terminate with long tasks queued returns at once.
 *
 * Run twice: chunks of 100 items, whose results a serving rank polls for
 * (serve.c), and with "big", chunks of 9000 (72 KB of results, over its
 * 64 KiB limit), which come back by the node pool's done callback. */
#include "t_mpi.h"

#include <signal.h>

enum { N = 100000, FAIL_AT = 777, DIE_AT = 555 };
static unsigned CS = 100; /* chunksize: 9000 with "big" */

static int64_t expect(int64_t x)
{
	return 3 * x + 1;
}

static int fail_at(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	(void)c;
	int64_t x = *(const int64_t *)arg;
	if (x == FAIL_AT)
		return 42;
	*(int64_t *)res = expect(x);
	return 0;
}

static int die_at(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	(void)c;
	int64_t x = *(const int64_t *)arg;
	if (x == DIE_AT)
		raise(SIGKILL);
	*(int64_t *)res = expect(x);
	return 0;
}

static int ok(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	(void)c;
	*(int64_t *)res = expect(*(const int64_t *)arg);
	return 0;
}

struct who {
	int32_t rank, user, worker, pad;
};
static int whoami(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	(void)arg;
	struct who *w = res;
	w->rank = shmp_mpi_task_rank();
	w->user = (int32_t)(intptr_t)c->user;
	w->worker = (int32_t)c->worker;
	return 0;
}

static int init_rank(void *initarg, void **user)
{
	int r = *(int *)initarg;
	if (r < 0)
		return -1; /* this rank's initializer fails */
	*user = (void *)(intptr_t)(r + 1000);
	return 0;
}

static int sleepy(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	(void)arg;
	(void)res;
	(void)c;
	t_sleep_ms(1000);
	return 0;
}

static int ecb_runs, ecb_rank = -2;
static int on_error(shmp_mpi_async_t *a, const struct shmp_mpi_task_error *e, void *arg)
{
	(void)a;
	(void)arg;
	ecb_runs++;
	ecb_rank = e->rank;
	return 0;
}

static shmp_mpi_pool_t *make(int workers, struct shmp_mpi_pool_opts *o)
{
	o->flags |= SHMP_MPI_PER_RANK | (t_size > 1 ? SHMP_MPI_ROOT_IDLE : 0);
	shmp_mpi_pool_t *p = shmp_mpi_pool_create(MPI_COMM_WORLD, workers, o);
	T_CHECK(p);
	return p;
}

static void end(shmp_mpi_pool_t *p)
{
	if (shmp_mpi_pool_is_root(p))
		shmp_mpi_pool_close(p);
	T_EQ(shmp_mpi_pool_join(p, 30), 0);
	shmp_mpi_pool_destroy(p);
}

static void check_rank(int r)
{
	T_CHECK(r >= 0 && r < t_size);
	if (t_size > 1)
		T_CHECK(r != 0); /* the root runs nothing */
}

static void task_failure(int64_t *in, int64_t *out)
{
	struct shmp_mpi_pool_opts o = SHMP_OPTS(shmp_mpi_pool_opts);
	shmp_mpi_pool_t *p = make(2, &o);
	if (shmp_mpi_pool_is_root(p)) {
		struct shmp_mpi_call_opts co = SHMP_OPTS(shmp_mpi_call_opts, .chunksize = CS);
		struct shmp_mpi_task_error e;
		memset(out, 0, N * sizeof *out);
		T_EQ(shmp_mpi_pool_map(p, fail_at, in, sizeof *in, N, out, sizeof *out, &co, &e), -SHMP_ETASK);
		T_EQ(e.error, -SHMP_ETASK);
		T_EQ(e.code, 42);
		T_EQ(e.index, FAIL_AT);
		T_EQ(e.skipped, CS - 1 - FAIL_AT % CS);
		check_rank(e.rank);
		T_CHECK(e.worker_pid > 0);
		/* everything else completed, the failing chunk's first items too */
		for (int64_t i = 0; i < N; i++)
			if (i < FAIL_AT || i >= FAIL_AT - FAIL_AT % CS + CS)
				T_EQ(out[i], expect(i));

		/* imap: the item's error with its rank, then the skipped items */
		shmp_mpi_imap_t *it = shmp_mpi_pool_imap(p, fail_at, in, sizeof *in, N, sizeof *out, NULL, NULL, &co);
		T_CHECK(it);
		int64_t v;
		uint64_t idx;
		int r, n_ok = 0, n_skipped = 0, n_failed = 0;
		while ((r = shmp_mpi_imap_next(it, &v, &idx, 30, &e)) != 0) {
			if (r == 1) {
				T_EQ(v, expect((int64_t)idx));
				n_ok++;
			} else if (r == -SHMP_ESKIPPED) {
				T_CHECK(idx > FAIL_AT && idx < (uint64_t)(FAIL_AT - FAIL_AT % CS + CS));
				T_EQ(e.index, idx);
				n_skipped++;
			} else {
				T_EQ(r, -SHMP_ETASK);
				T_EQ(idx, FAIL_AT);
				T_EQ(e.code, 42);
				check_rank(e.rank);
				n_failed++;
			}
		}
		T_EQ(n_failed, 1);
		T_EQ(n_skipped, CS - 1 - FAIL_AT % CS);
		T_EQ(n_ok, N - 1 - n_skipped);
		shmp_mpi_imap_destroy(it);

		/* apply_async and error_callback */
		struct shmp_mpi_call_opts eo = SHMP_OPTS(shmp_mpi_call_opts, .error_callback = on_error);
		shmp_mpi_async_t *a = shmp_mpi_pool_apply_async(p, fail_at, &in[FAIL_AT], sizeof *in, &v, sizeof v, &eo);
		T_CHECK(a);
		T_EQ(shmp_mpi_async_get(a, 30, &e), -SHMP_ETASK);
		T_EQ(shmp_mpi_async_is_successful(a), 0);
		check_rank(e.rank);
		T_EQ(ecb_runs, 1);
		T_EQ(ecb_rank, e.rank);
		shmp_mpi_async_destroy(a);

		/* the pool goes on */
		T_EQ(shmp_mpi_pool_map(p, ok, in, sizeof *in, N, out, sizeof *out, &co, NULL), 0);
		for (int64_t i = 0; i < N; i++)
			T_EQ(out[i], expect(i));
		struct shmp_mpi_pool_stats st;
		T_EQ(shmp_mpi_pool_stats(p, &st), 0);
		T_EQ(st.failed, 3);
	}
	end(p);
}

static void worker_killed(int64_t *in, int64_t *out)
{
	struct shmp_mpi_pool_opts o = SHMP_OPTS(shmp_mpi_pool_opts);
	shmp_mpi_pool_t *p = make(2, &o);
	if (shmp_mpi_pool_is_root(p)) {
		struct shmp_mpi_call_opts co = SHMP_OPTS(shmp_mpi_call_opts, .chunksize = CS);
		struct shmp_mpi_task_error e;
		memset(out, 0, N * sizeof *out);
		double t0 = t_now();
		T_EQ(shmp_mpi_pool_map(p, die_at, in, sizeof *in, N, out, sizeof *out, &co, &e), -SHMP_EWORKERDIED);
		T_CHECK(t_now() - t0 < 20);
		T_EQ(e.error, -SHMP_EWORKERDIED);
		T_EQ(e.signal, SIGKILL);
		T_EQ(e.index, DIE_AT - DIE_AT % CS); /* the lost chunk's first item */
		T_EQ(e.skipped, CS - 1);
		check_rank(e.rank);
		T_CHECK(e.worker_pid > 0);
		for (int64_t i = 0; i < N; i++)
			if (i < DIE_AT - DIE_AT % CS || i >= DIE_AT - DIE_AT % CS + CS)
				T_EQ(out[i], expect(i));
		/* replaced: the pool goes on, and the death is counted */
		T_EQ(shmp_mpi_pool_map(p, ok, in, sizeof *in, N, out, sizeof *out, &co, NULL), 0);
		for (int64_t i = 0; i < N; i++)
			T_EQ(out[i], expect(i));
		struct shmp_mpi_node_info ni[16];
		int nn = shmp_mpi_pool_nodes(p, ni, 16);
		uint64_t deaths = 0;
		for (int i = 0; i < nn; i++)
			if (ni[i].rank == e.rank)
				deaths = ni[i].worker_deaths;
		T_EQ(deaths, 1);
	}
	end(p);
}

static void init_and_maxtasks(void)
{
	static int my_rank;
	my_rank = t_rank;
	struct shmp_mpi_pool_opts o = SHMP_OPTS(shmp_mpi_pool_opts, .initializer = init_rank, .initarg = &my_rank,
						.max_tasks_per_child = 2);
	shmp_mpi_pool_t *p = make(2, &o);
	if (shmp_mpi_pool_is_root(p)) {
		enum { M = 400 };
		struct who w[M];
		struct shmp_mpi_call_opts co = SHMP_OPTS(shmp_mpi_call_opts, .chunksize = 5);
		T_EQ(shmp_mpi_pool_map(p, whoami, NULL, 0, M, w, sizeof w[0], &co, NULL), 0);
		for (int i = 0; i < M; i++) {
			check_rank(w[i].rank);
			T_EQ(w[i].user, w[i].rank + 1000); /* that rank's own initializer and initarg */
			T_CHECK(w[i].worker >= 0 && w[i].worker < 2);
		}
		/* The counters as each node reported them last: after join, its
		 * FINAL report (a result's report may be taken before its node
		 * pool counted the workers it started meanwhile). */
		T_EQ(shmp_mpi_pool_close(p), 0);
		T_EQ(shmp_mpi_pool_join(p, 30), 0);
		struct shmp_mpi_node_info ni[16];
		int nn = shmp_mpi_pool_nodes(p, ni, 16);
		uint64_t started = 0, chunks = 0;
		for (int i = 0; i < nn; i++) {
			started += ni[i].workers_started;
			chunks += ni[i].chunks;
		}
		T_EQ(chunks, M / 5);
		/* two chunks per worker process: about chunks / 2 workers */
		T_CHECK(started >= chunks / 2);
	}
	end(p);
}

static void init_fails(int64_t *in, int64_t *out)
{
	static int arg;
	arg = t_rank == t_size - 1 ? -1 : t_rank; /* the last rank's initializer fails */
	struct shmp_mpi_pool_opts o = SHMP_OPTS(shmp_mpi_pool_opts, .initializer = init_rank, .initarg = &arg);
	shmp_mpi_pool_t *p = make(2, &o);
	if (shmp_mpi_pool_is_root(p)) {
		struct shmp_mpi_call_opts co = SHMP_OPTS(shmp_mpi_call_opts, .chunksize = CS);
		struct shmp_mpi_task_error e;
		T_EQ(shmp_mpi_pool_map(p, ok, in, sizeof *in, N, out, sizeof *out, &co, &e), -SHMP_EINIT);
		T_EQ(e.rank, t_size - 1);
		T_EQ(shmp_mpi_pool_map(p, ok, in, sizeof *in, 10, out, sizeof *out, &co, &e), -SHMP_EINIT);
		T_EQ(e.rank, t_size - 1); /* a later call names the rank that broke it too */
		struct shmp_mpi_pool_stats st;
		T_EQ(shmp_mpi_pool_stats(p, &st), 0);
		T_EQ(st.state, SHMP_POOL_BROKEN);
	}
	end(p);
}

static void terminate_now(void)
{
	struct shmp_mpi_pool_opts o = SHMP_OPTS(shmp_mpi_pool_opts);
	shmp_mpi_pool_t *p = make(2, &o);
	if (shmp_mpi_pool_is_root(p)) {
		enum { M = 10000 };
		struct shmp_mpi_call_opts co = SHMP_OPTS(shmp_mpi_call_opts, .chunksize = 1);
		shmp_mpi_async_t *a = shmp_mpi_pool_map_async(p, sleepy, NULL, 0, M, NULL, 0, &co);
		T_CHECK(a);
		t_sleep_ms(200); /* tasks running on the other ranks */
		T_FAST(shmp_mpi_pool_terminate(p), 0);
		struct shmp_mpi_task_error e;
		double t0 = t_now();
		T_EQ(shmp_mpi_async_get(a, 10, &e), -SHMP_ECLOSED);
		shmp_mpi_async_destroy(a);
		T_EQ(shmp_mpi_pool_join(p, 10), 0);
		T_CHECK(t_now() - t0 < 5);
		T_EQ(shmp_mpi_pool_map(p, ok, NULL, 0, 1, NULL, 0, NULL, NULL), -SHMP_ECLOSED);
	}
	T_EQ(shmp_mpi_pool_join(p, 30), 0);
	shmp_mpi_pool_destroy(p);
}

int main(int argc, char **argv)
{
	t_mpi_init(&argc, &argv, 55);
	if (argc > 1 && !strcmp(argv[1], "big"))
		CS = 9000;
	int64_t *in = malloc(N * sizeof *in), *out = malloc(N * sizeof *out);
	for (int64_t i = 0; i < N; i++)
		in[i] = i;
	task_failure(in, out);
	worker_killed(in, out);
	init_and_maxtasks();
	init_fails(in, out);
	terminate_now();
	free(in);
	free(out);
	MPI_Finalize();
	return 0;
}
