/* Bad input gets clear errors, on every rank alike when the call is
 * collective: MPI_COMM_NULL, a communicator of one rank where nobody would
 * run work, zero workers on one rank, options that disagree or carry
 * unknown bytes; NULL pointers, wrong sizes, a task function that is not
 * code; calls from a rank other than the root; calls after close; join
 * before close; a forked child's calls and destroy. */
#include "t_mpi.h"

#include <math.h>

static int ok(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	(void)c;
	*(int64_t *)res = *(const int64_t *)arg + 1;
	return 0;
}

static int on_done(shmp_mpi_async_t *a, void *r, size_t n, void *arg)
{
	(void)a;
	(void)r;
	(void)n;
	(void)arg;
	return 0;
}

static int64_t not_code[4];

static void collective_errors(void)
{
	errno = 0;
	T_CHECK(!shmp_mpi_pool_create(MPI_COMM_NULL, 2, NULL));
	T_EQ(errno, EINVAL);
	/* one rank, no workers anywhere */
	struct shmp_mpi_pool_opts idle = SHMP_OPTS(shmp_mpi_pool_opts, .flags = SHMP_MPI_ROOT_IDLE);
	T_CHECK(!shmp_mpi_pool_create(MPI_COMM_SELF, 2, &idle));
	T_EQ(errno, EINVAL);
	/* one rank with workers: a pool of its own */
	shmp_mpi_pool_t *self = shmp_mpi_pool_create(MPI_COMM_SELF, 1, NULL);
	T_CHECK(self);
	T_EQ(shmp_mpi_pool_is_root(self), 1);
	int64_t x = 41, y = 0;
	T_EQ(shmp_mpi_pool_apply(self, ok, &x, sizeof x, &y, sizeof y, NULL), 0);
	T_EQ(y, 42);
	T_EQ(shmp_mpi_pool_close(self), 0);
	T_EQ(shmp_mpi_pool_join(self, 10), 0);
	shmp_mpi_pool_destroy(self);
	/* zero workers on one rank: every rank fails */
	T_CHECK(!shmp_mpi_pool_create(MPI_COMM_WORLD, t_rank == t_size - 1 ? 0 : 2, NULL));
	T_EQ(errno, EINVAL);
	/* options that differ between ranks */
	struct shmp_mpi_pool_opts f = SHMP_OPTS(shmp_mpi_pool_opts, .flags = t_rank == 0 ? SHMP_MPI_PER_RANK : 0);
	if (t_size > 1) {
		T_CHECK(!shmp_mpi_pool_create(MPI_COMM_WORLD, 2, &f));
		T_EQ(errno, EINVAL);
	}
	struct shmp_mpi_pool_opts r = SHMP_OPTS(shmp_mpi_pool_opts, .root = t_size);
	T_CHECK(!shmp_mpi_pool_create(MPI_COMM_WORLD, 2, &r));
	T_EQ(errno, EINVAL);
	/* bytes this version does not know */
	struct {
		struct shmp_mpi_pool_opts o;
		char more[8];
	} big = { .o = { .sz = sizeof big } };
	big.more[3] = t_rank == 0;
	T_CHECK(!shmp_mpi_pool_create(MPI_COMM_WORLD, 2, &big.o));
	T_EQ(errno, EINVAL);
	big.more[3] = 0; /* zeros are fine */
	shmp_mpi_pool_t *p = shmp_mpi_pool_create(MPI_COMM_WORLD, 1, &big.o);
	T_CHECK(p);
	if (shmp_mpi_pool_is_root(p))
		T_EQ(shmp_mpi_pool_close(p), 0);
	T_EQ(shmp_mpi_pool_join(p, 10), 0);
	shmp_mpi_pool_destroy(p);
}

static int child_uses(void *arg)
{
	shmp_mpi_pool_t *p = arg;
	int64_t x = 1, y;
	if (shmp_mpi_pool_apply(p, ok, &x, sizeof x, &y, sizeof y, NULL) != -ECHILD)
		return 1;
	if (shmp_mpi_pool_join(p, 0) != -ECHILD)
		return 2;
	shmp_mpi_pool_destroy(p); /* its copy only */
	return 0;
}

int main(int argc, char **argv)
{
	t_mpi_init(&argc, &argv, 50);
	collective_errors();

	struct shmp_mpi_pool_opts o = SHMP_OPTS(shmp_mpi_pool_opts, .flags = SHMP_MPI_PER_RANK, .max_task_bytes = 4096);
	shmp_mpi_pool_t *p = shmp_mpi_pool_create(MPI_COMM_WORLD, 1, &o);
	T_CHECK(p);
	int64_t in[64], out[64], x = 1, y = 0;
	for (int i = 0; i < 64; i++)
		in[i] = i;
	if (!shmp_mpi_pool_is_root(p)) {
		/* only the root submits */
		T_EQ(shmp_mpi_pool_map(p, ok, in, sizeof *in, 64, out, sizeof *out, NULL, NULL), -EPERM);
		T_EQ(shmp_mpi_pool_close(p), -EPERM);
		T_EQ(shmp_mpi_pool_terminate(p), -EPERM);
		struct shmp_mpi_pool_stats st;
		T_EQ(shmp_mpi_pool_stats(p, &st), -EPERM);
		errno = 0;
		T_CHECK(!shmp_mpi_pool_apply_async(p, ok, &x, sizeof x, &y, sizeof y, NULL));
		T_EQ(errno, EPERM);
		T_EQ(shmp_mpi_pool_join(p, NAN), -EINVAL);
		return t_mpi_end(p, 0);
	}
	struct shmp_mpi_task_error e;
	T_EQ(shmp_mpi_pool_join(p, 0), -SHMP_ENOTCLOSED);
	T_EQ(shmp_mpi_pool_map(p, NULL, in, sizeof *in, 64, out, sizeof *out, NULL, &e), -EINVAL);
	T_EQ(e.error, -EINVAL);
	T_EQ(e.rank, -1);
	/* A NULL pool is refused, not read for its default chunksize. */
	T_EQ(shmp_mpi_pool_map(NULL, ok, in, sizeof *in, 64, out, sizeof *out, NULL, &e), -EINVAL);
	T_EQ(e.error, -EINVAL);
	T_EQ(shmp_mpi_pool_map(p, ok, NULL, sizeof *in, 64, out, sizeof *out, NULL, NULL), -EINVAL);
	T_EQ(shmp_mpi_pool_map(p, ok, in, sizeof *in, 64, NULL, sizeof *out, NULL, NULL), -EINVAL);
	T_EQ(shmp_mpi_pool_apply(p, ok, &x, sizeof x, NULL, sizeof y, NULL), -EINVAL);
	T_EQ(shmp_mpi_pool_map(p, (shmp_task_fn)(void *)not_code, in, sizeof *in, 64, out, sizeof *out, NULL, &e),
	     -SHMP_EBADFN);
	/* an item larger than max_task_bytes */
	static char huge[8192];
	T_EQ(shmp_mpi_pool_map(p, ok, huge, sizeof huge, 1, out, sizeof *out, NULL, NULL), -EMSGSIZE);
	T_EQ(shmp_mpi_pool_apply(p, ok, huge, sizeof huge, &y, sizeof y, NULL), -EMSGSIZE);
	/* imap takes no callbacks; options with unknown bytes */
	struct shmp_mpi_call_opts cb = SHMP_OPTS(shmp_mpi_call_opts, .callback = on_done);
	errno = 0;
	T_CHECK(!shmp_mpi_pool_imap(p, ok, in, sizeof *in, 64, sizeof *out, NULL, NULL, &cb));
	T_EQ(errno, EINVAL);
	struct {
		struct shmp_mpi_call_opts o;
		int more;
	} big = { .o = { .sz = sizeof big }, .more = 1 };
	T_EQ(shmp_mpi_pool_map(p, ok, in, sizeof *in, 64, out, sizeof *out, &big.o, NULL), -EINVAL);
	/* NaN timeouts */
	shmp_mpi_async_t *a = shmp_mpi_pool_apply_async(p, ok, &x, sizeof x, &y, sizeof y, NULL);
	T_CHECK(a);
	T_EQ(shmp_mpi_async_get(a, NAN, NULL), -EINVAL);
	T_EQ(shmp_mpi_async_get(a, 30, NULL), 0);
	T_EQ(y, 2);
	shmp_mpi_async_destroy(a);
	/* a forked child cannot use the pool; its destroy frees its copy only */
	pid_t kid = t_fork(child_uses, p);
	t_wait_ok(kid, 10);
	T_EQ(shmp_mpi_pool_map(p, ok, in, sizeof *in, 64, out, sizeof *out, NULL, NULL), 0);
	for (int i = 0; i < 64; i++)
		T_EQ(out[i], i + 1);
	/* after close */
	T_EQ(shmp_mpi_pool_close(p), 0);
	T_EQ(shmp_mpi_pool_map(p, ok, in, sizeof *in, 64, out, sizeof *out, NULL, &e), -SHMP_ECLOSED);
	T_EQ(e.error, -SHMP_ECLOSED);
	T_EQ(shmp_mpi_pool_apply(p, ok, &x, sizeof x, &y, sizeof y, NULL), -SHMP_ECLOSED);
	errno = 0;
	T_CHECK(!shmp_mpi_pool_apply_async(p, ok, &x, sizeof x, &y, sizeof y, NULL));
	T_EQ(errno, SHMP_ECLOSED);
	errno = 0;
	T_CHECK(!shmp_mpi_pool_imap(p, ok, in, sizeof *in, 64, sizeof *out, NULL, NULL, NULL));
	T_EQ(errno, SHMP_ECLOSED);
	T_EQ(shmp_mpi_pool_join(p, 30), 0);
	T_EQ(shmp_mpi_pool_join(p, 30), 0); /* again: fine */
	shmp_mpi_pool_destroy(p);
	MPI_Finalize();
	return 0;
}
