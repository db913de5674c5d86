/* Value, Array and Lock on MPI windows: a counter exact after 3 ranks x
 * 100,000 adds; the lock protecting a read-modify-write; ranges; lock
 * semantics seen from another rank; bad input; a forked child. */
#include "t_mpi.h"

#include <math.h>

enum { ADDS = 100000, RMW = 1000, LEN = 1000 };

static int child_uses(void *arg)
{
	shmp_mpi_value_t *v = arg;
	if (shmp_mpi_value_add(v, 1, NULL) != -ECHILD)
		return 1;
	if (shmp_mpi_lock_acquire(shmp_mpi_value_lock(v), 0) != -ECHILD)
		return 2;
	shmp_mpi_value_destroy(v); /* its copy only: no MPI call */
	return 0;
}

static void barrier(void)
{
	MPI_Barrier(MPI_COMM_WORLD);
}

int main(int argc, char **argv)
{
	t_mpi_init(&argc, &argv, 50);

	/* the counter */
	shmp_mpi_value_t *v = shmp_mpi_value_create(MPI_COMM_WORLD, 'q', NULL, NULL);
	T_CHECK(v);
	int64_t prev = -1, last = -1;
	for (int i = 0; i < ADDS; i++) {
		T_EQ(shmp_mpi_value_add(v, 1, &prev), 0);
		T_CHECK(prev > last); /* atomic: every add sees a new value */
		last = prev;
	}
	barrier();
	int64_t total = 0;
	T_EQ(shmp_mpi_value_load(v, &total), 0);
	T_EQ(total, (int64_t)t_size * ADDS);
	/* A double no int64_t holds is refused for an integer item, as the
	 * local Value does (the conversion has no meaning in C). */
	T_EQ(shmp_mpi_value_set_f64(v, NAN), -ERANGE);
	T_EQ(shmp_mpi_value_set_f64(v, INFINITY), -ERANGE);
	T_EQ(shmp_mpi_value_set_f64(v, 1e19), -ERANGE);
	T_EQ(shmp_mpi_value_load(v, &total), 0);
	T_EQ(total, (int64_t)t_size * ADDS);
	barrier();

	/* the lock protecting a read-modify-write (synchronized get/set
	 * re-enter the value's RLock) */
	barrier();
	if (t_rank == 0)
		T_EQ(shmp_mpi_value_set_i64(v, 0), 0);
	barrier();
	shmp_mpi_lock_t *l = shmp_mpi_value_lock(v);
	T_CHECK(l);
	T_EQ(shmp_mpi_lock_is_recursive(l), 1);
	for (int i = 0; i < RMW; i++) {
		T_EQ(shmp_mpi_lock_acquire(l, 20), 0);
		int64_t x;
		T_EQ(shmp_mpi_value_get_i64(v, &x), 0);
		T_EQ(shmp_mpi_lock_count(l), 1);
		T_EQ(shmp_mpi_value_set_i64(v, x + 1), 0);
		T_EQ(shmp_mpi_lock_release(l), 0);
	}
	barrier();
	T_EQ(shmp_mpi_value_get_i64(v, &total), 0);
	T_EQ(total, (int64_t)t_size * RMW);

	/* a separate Lock around a raw array's slices: whole-slice updates */
	shmp_mpi_lock_t *lk = shmp_mpi_lock_create(MPI_COMM_WORLD, NULL);
	T_CHECK(lk);
	struct shmp_mpi_value_opts raw = SHMP_OPTS(shmp_mpi_value_opts, .raw = 1);
	shmp_mpi_array_t *a = shmp_mpi_array_create(MPI_COMM_WORLD, 'i', LEN, NULL, &raw);
	T_CHECK(a);
	errno = 0;
	T_CHECK(!shmp_mpi_array_lock(a));
	T_EQ(errno, ENOLCK);
	static int32_t buf[LEN];
	for (int i = 0; i < RMW / 10; i++) {
		T_EQ(shmp_mpi_lock_acquire(lk, 20), 0);
		T_EQ(shmp_mpi_lock_acquire(lk, 0), -EDEADLK); /* a Lock is not reentrant */
		T_EQ(shmp_mpi_array_read(a, 0, LEN, buf), 0);
		for (int k = 0; k < LEN; k++)
			T_EQ(buf[k], buf[0]); /* never half of another rank's update */
		for (int k = 0; k < LEN; k++)
			buf[k]++;
		T_EQ(shmp_mpi_array_write(a, 0, LEN, buf), 0);
		T_EQ(shmp_mpi_lock_release(lk), 0);
	}
	T_EQ(shmp_mpi_lock_release(lk), -EPERM);
	barrier();
	int64_t x;
	T_EQ(shmp_mpi_array_get_i64(a, LEN - 1, &x), 0);
	T_EQ(x, (int64_t)t_size * (RMW / 10));

	/* lock state seen from the other ranks */
	if (t_rank == 0)
		T_EQ(shmp_mpi_lock_acquire(lk, 5), 0);
	barrier();
	int owner = -1;
	T_EQ(shmp_mpi_lock_owner(lk, &owner), 1);
	T_EQ(owner, 0);
	T_EQ(shmp_mpi_lock_is_locked(lk), 1);
	if (t_rank != 0) {
		T_FAST(shmp_mpi_lock_acquire(lk, 0), -ETIMEDOUT);
		T_ABOUT(shmp_mpi_lock_acquire(lk, 0.2), -ETIMEDOUT);
		T_EQ(shmp_mpi_lock_release(lk), -EPERM);
	}
	barrier();
	if (t_rank == 0)
		T_EQ(shmp_mpi_lock_release(lk), 0);
	barrier();
	T_EQ(shmp_mpi_lock_is_locked(lk), 0);
	T_EQ(shmp_mpi_lock_owner(lk, &owner), 0);

	/* per-item atomics and conversions on an array */
	T_EQ(shmp_mpi_array_add(a, 3, 5, NULL), 0);
	barrier();
	T_EQ(shmp_mpi_array_load(a, 3, &x), 0);
	T_EQ(x, (int64_t)t_size * (RMW / 10) + 5 * t_size);
	barrier();
	int64_t want = x;
	int won = shmp_mpi_array_cas(a, 3, &want, -7);
	int wins = 0;
	MPI_Allreduce(&won, &wins, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
	T_EQ(wins, 1); /* exactly one CAS from the same value wins */
	T_EQ(shmp_mpi_array_get_i64(a, 3, &x), 0);
	T_EQ(x, -7);
	T_EQ(shmp_mpi_array_get(a, LEN, &x), -ERANGE);
	T_EQ(shmp_mpi_array_read(a, LEN - 1, 2, buf), -ERANGE);
	T_EQ(shmp_mpi_array_len(a), LEN);
	T_EQ(shmp_mpi_array_typecode(a), 'i');

	shmp_mpi_array_t *d = shmp_mpi_array_create(MPI_COMM_WORLD, 'd', 4, (double[]){ 0.5, 1.5, 2.5, 3.5 }, NULL);
	T_CHECK(d);
	double f = 0;
	T_EQ(shmp_mpi_array_get_f64(d, 2, &f), 0);
	T_CHECK(f == 2.5);
	T_EQ(shmp_mpi_array_add(d, 0, 1, NULL), -EINVAL); /* atomics: integers only */
	barrier();
	if (t_rank == t_size - 1)
		T_EQ(shmp_mpi_array_set_f64(d, 1, -4.25), 0);
	barrier();
	T_EQ(shmp_mpi_array_get_f64(d, 1, &f), 0);
	T_CHECK(f == -4.25);
	T_EQ(shmp_mpi_array_get_i64(d, 1, &x), 0);
	T_EQ(x, -4);

	/* bad input: every rank fails alike */
	errno = 0;
	T_CHECK(!shmp_mpi_value_create(MPI_COMM_WORLD, 'x', NULL, NULL));
	T_EQ(errno, EINVAL);
	T_CHECK(!shmp_mpi_array_create(MPI_COMM_WORLD, 'i', 0, NULL, NULL));
	T_EQ(errno, EINVAL);
	struct shmp_mpi_value_opts bad_root = SHMP_OPTS(shmp_mpi_value_opts, .root = t_size);
	T_CHECK(!shmp_mpi_value_create(MPI_COMM_WORLD, 'i', NULL, &bad_root));
	T_EQ(errno, EINVAL);
	struct shmp_mpi_value_opts both = SHMP_OPTS(shmp_mpi_value_opts, .raw = 1, .lock = lk);
	T_CHECK(!shmp_mpi_value_create(MPI_COMM_WORLD, 'i', NULL, &both));
	T_EQ(errno, EINVAL);
	T_CHECK(!shmp_mpi_lock_create(MPI_COMM_NULL, NULL));
	T_EQ(errno, EINVAL);
	T_EQ(shmp_mpi_value_get(NULL, &x), -EINVAL);
	T_EQ(shmp_mpi_lock_acquire(lk, NAN), -EINVAL);

	/* a caller's lock, on another rank's window */
	struct shmp_mpi_value_opts with = SHMP_OPTS(shmp_mpi_value_opts, .lock = lk, .root = t_size - 1);
	shmp_mpi_value_t *w = shmp_mpi_value_create(MPI_COMM_WORLD, 'i', &(int32_t){ 7 }, &with);
	T_CHECK(w);
	T_CHECK(shmp_mpi_value_lock(w) == lk);
	T_EQ(shmp_mpi_value_get_i64(w, &x), 0);
	T_EQ(x, 7);

	/* a forked child: -EPERM, and its destroy leaves ours working */
	if (t_rank == 0) {
		pid_t kid = t_fork(child_uses, v);
		t_wait_ok(kid, 10);
	}
	barrier();
	T_EQ(shmp_mpi_value_add(v, 1, NULL), 0);
	barrier();
	T_EQ(shmp_mpi_value_load(v, &x), 0);
	T_EQ(x, (int64_t)t_size * RMW + t_size);

	shmp_mpi_value_destroy(w);
	shmp_mpi_array_destroy(d);
	shmp_mpi_array_destroy(a);
	shmp_mpi_lock_destroy(lk);
	shmp_mpi_lock_destroy(l); /* a value's own lock: goes with the value */
	shmp_mpi_value_destroy(v);
	MPI_Finalize();
	return 0;
}
