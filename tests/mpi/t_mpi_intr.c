/* Interrupts on the submitting rank (common.h, shmp_set_interruptible;
 * mpi.h, "Interrupts"). The root runs no workers, so every item runs on
 * another rank and the root's waits are waits for MPI. A SIGUSR1 handler
 * (SA_RESTART, the harder case) is installed on the root, and a helper
 * thread sends SIGUSR1 to the waiting thread (pthread_kill: a signal sent
 * to the process may be taken by one of MPI's own threads, which do not
 * block it). With shmp_set_interruptible(1):
 *  - map of 40 tasks of 150 ms returns -EINTR within 0.5 s of the signal;
 *  - map of 3000 tasks of 1 ms, chunksize 1: results come back all the
 *    time, so the waiting caller is mostly spinning on MPI when the signal
 *    comes (signals are blocked then and looked for after every round): it
 *    still returns -EINTR within 0.5 s;
 *  - apply of a 1 s task returns -EINTR within 0.5 s, and the pool goes on
 *    (another apply works);
 *  - shmp_mpi_async_get(FOREVER) returns -EINTR, and a later get the
 *    result;
 *  - shmp_mpi_pool_join after close with a 1 s task running returns
 *    -EINTR, and a later join 0;
 * with it off, a map of 20 tasks of 50 ms returns 0 with every result
 * right although the handler ran. Each interrupted map is terminated and
 * joined (its buffers stay alive until then). */
#include "t_mpi.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

static atomic_int g_handled;
static _Atomic double g_sent;
static pthread_t g_main;

static void on_usr1(int sig)
{
	(void)sig;
	atomic_fetch_add(&g_handled, 1);
}

static void *shooter(void *arg)
{
	double delay = *(double *)arg;
	t_sleep_ms((long)(delay * 1000));
	atomic_store(&g_sent, t_now());
	pthread_kill(g_main, SIGUSR1);
	return NULL;
}

static pthread_t shoot(double *delay)
{
	pthread_t t;
	T_EQ(pthread_create(&t, NULL, shooter, delay), 0);
	return t;
}

static shmp_mpi_pool_t *make(int workers)
{
	struct shmp_mpi_pool_opts o =
		SHMP_OPTS(shmp_mpi_pool_opts, .flags = SHMP_MPI_PER_RANK | SHMP_MPI_ROOT_IDLE);
	shmp_mpi_pool_t *p = shmp_mpi_pool_create(MPI_COMM_WORLD, workers, &o);
	T_CHECK(p);
	return p;
}

/* The root's interrupted map goes on in the pool: terminate, then join. */
static void end(shmp_mpi_pool_t *p, bool terminate)
{
	if (shmp_mpi_pool_is_root(p)) {
		if (terminate)
			T_EQ(shmp_mpi_pool_terminate(p), 0);
		else
			T_EQ(shmp_mpi_pool_close(p), 0);
	}
	T_EQ(shmp_mpi_pool_join(p, 30), 0);
	shmp_mpi_pool_destroy(p);
}

static void interrupted_map(long ms, size_t n, size_t chunksize)
{
	shmp_mpi_pool_t *p = make(2);
	if (shmp_mpi_pool_is_root(p)) {
		static long in[4000], out[4000];
		for (size_t i = 0; i < n; i++)
			in[i] = ms;
		double delay = 0.3;
		pthread_t t = shoot(&delay);
		int before = atomic_load(&g_handled);
		struct shmp_mpi_call_opts co = SHMP_OPTS(shmp_mpi_call_opts, .chunksize = chunksize);
		struct shmp_mpi_task_error e;
		int r = shmp_mpi_pool_map(p, t_task_sleep_ms, in, sizeof *in, n, out, sizeof *out, &co, &e);
		double late = t_now() - atomic_load(&g_sent);
		pthread_join(t, NULL);
		T_EQ(r, -EINTR);
		T_EQ(e.error, -EINTR);
		T_CHECK(atomic_load(&g_handled) > before);
		T_CHECK(late < 0.5);
	}
	end(p, true);
}

static void interrupted_apply_get_join(void)
{
	shmp_mpi_pool_t *p = make(1);
	if (shmp_mpi_pool_is_root(p)) {
		long a = 1000, res = 0;
		double delay = 0.3;
		pthread_t t = shoot(&delay);
		int r = shmp_mpi_pool_apply(p, t_task_sleep_ms, &a, sizeof a, &res, sizeof res, NULL);
		double late = t_now() - atomic_load(&g_sent);
		pthread_join(t, NULL);
		T_EQ(r, -EINTR);
		T_CHECK(late < 0.5);
		/* the pool goes on */
		a = 5;
		T_EQ(shmp_mpi_pool_apply(p, t_task_sleep_ms, &a, sizeof a, &res, sizeof res, NULL), 0);
		T_EQ(res, 6);

		/* get: interrupted, then the result */
		a = 1000;
		shmp_mpi_async_t *h = shmp_mpi_pool_apply_async(p, t_task_sleep_ms, &a, sizeof a, &res, sizeof res, NULL);
		T_CHECK(h);
		t = shoot(&delay);
		r = shmp_mpi_async_get(h, SHMP_FOREVER, NULL);
		late = t_now() - atomic_load(&g_sent);
		pthread_join(t, NULL);
		T_EQ(r, -EINTR);
		T_CHECK(late < 0.5);
		T_EQ(shmp_mpi_async_get(h, 30, NULL), 0);
		T_EQ(res, 1001);
		shmp_mpi_async_destroy(h);

		/* join after close with a task running */
		h = shmp_mpi_pool_apply_async(p, t_task_sleep_ms, &a, sizeof a, &res, sizeof res, NULL);
		T_CHECK(h);
		T_EQ(shmp_mpi_pool_close(p), 0);
		t = shoot(&delay);
		r = shmp_mpi_pool_join(p, SHMP_FOREVER);
		late = t_now() - atomic_load(&g_sent);
		pthread_join(t, NULL);
		T_EQ(r, -EINTR);
		T_CHECK(late < 0.5);
		T_EQ(shmp_mpi_pool_join(p, 30), 0);
		T_EQ(shmp_mpi_async_get(h, 0, NULL), 0);
		shmp_mpi_async_destroy(h);
		shmp_mpi_pool_destroy(p);
		return;
	}
	T_EQ(shmp_mpi_pool_join(p, 30), 0);
	shmp_mpi_pool_destroy(p);
}

static void not_interruptible(void)
{
	shmp_mpi_pool_t *p = make(2);
	if (shmp_mpi_pool_is_root(p)) {
		T_EQ(shmp_set_interruptible(0), 1);
		long in[20], out[20];
		for (int i = 0; i < 20; i++)
			in[i] = 50;
		double delay = 0.1;
		pthread_t t = shoot(&delay);
		int before = atomic_load(&g_handled);
		struct shmp_mpi_call_opts co = SHMP_OPTS(shmp_mpi_call_opts, .chunksize = 1);
		T_EQ(shmp_mpi_pool_map(p, t_task_sleep_ms, in, sizeof *in, 20, out, sizeof *out, &co, NULL), 0);
		pthread_join(t, NULL);
		T_CHECK(atomic_load(&g_handled) > before);
		for (int i = 0; i < 20; i++)
			T_EQ(out[i], 51);
	}
	end(p, false);
}

int main(int argc, char **argv)
{
	t_mpi_init(&argc, &argv, 120);
	if (t_size < 2) {
		MPI_Finalize();
		return T_SKIP;
	}
	g_main = pthread_self();
	if (t_rank == 0) {
		struct sigaction sa = { .sa_handler = on_usr1, .sa_flags = SA_RESTART };
		sigemptyset(&sa.sa_mask);
		T_EQ(sigaction(SIGUSR1, &sa, NULL), 0);
		shmp_set_interruptible(1);
	}
	interrupted_map(150, 40, 1);
	interrupted_map(1, 3000, 1);
	interrupted_apply_get_join();
	not_interruptible();
	MPI_Finalize();
	return 0;
}
