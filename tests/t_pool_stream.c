/* A map larger than the pool's segment streams through it (include/shmp/
 * pool.h, "Limits"; issue 12: "shmp_pool_map over 34 M+ doubles of ordinary
 * memory fails with -ENOMEM after part of the map already ran").
 * With no options at all (256 MiB data segment): a map over 40 M doubles of
 * malloc'd memory (320 MiB in, 160 MiB of float results out: twice the
 * segment in all) returns 0 with every result right, for a process Pool
 * (which copies through the segment, waiting for room) and a ThreadPool
 * (which works in place); the pool's data segment never holds more than
 * its size and is empty afterwards; completed == submitted, nothing
 * failed. The same map once more on the same pool (the segment's memory
 * is reused). */
#include "t.h"

static shmp_pool_t *(*const create[2])(int, const struct shmp_pool_opts *) = {
	shmp_pool_create, shmp_threadpool_create
};
static const char *const kind_name[2] = { "Pool", "ThreadPool" };

#define N (40u * 1000u * 1000u)

static int half(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	(void)c;
	*(float *)res = (float)(*(const double *)arg * 0.5);
	return 0;
}

int main(void)
{
	t_watchdog(120);
	setvbuf(stdout, NULL, _IONBF, 0);
	double *in = malloc((size_t)N * sizeof *in);
	float *out = malloc((size_t)N * sizeof *out);
	T_CHECK(in && out);
	for (size_t i = 0; i < N; i++)
		in[i] = (double)(i % 1000003);
	for (int kind = 0; kind < 2; kind++) {
		double t0 = t_now();
		shmp_pool_t *p = create[kind](2, NULL);
		T_CHECK(p);
		for (int round = 0; round < 2; round++) {
			memset(out, 0xff, (size_t)N * sizeof *out);
			struct shmp_task_error err;
			memset(&err, 0, sizeof err);
			int rc = shmp_pool_map(p, half, in, sizeof *in, N, out, sizeof *out, NULL, &err);
			if (rc)
				fprintf(stderr, "map: %s at item %llu\n", shmp_strerror(rc),
					(unsigned long long)err.index);
			T_EQ(rc, 0);
			for (size_t i = 0; i < N; i++)
				if (out[i] != (float)(in[i] * 0.5))
					T_EQ(i, -1);
			struct shmp_pool_stats st = t_pool_stats(p);
			T_EQ(st.completed, st.submitted);
			T_EQ(st.failed, 0);
			T_EQ(st.data_size, 256u << 20);
			T_CHECK(st.data_used <= st.data_size);
			double until = t_now() + 5;
			while (t_pool_stats(p).data_used != 0) {
				T_CHECK(t_now() < until);
				t_sleep_ms(1);
			}
			printf("%s: map of %u doubles (%u MiB in and out), round %d: %llu tasks, %.2f s\n",
			       kind_name[kind], N, (unsigned)((size_t)N * 12 >> 20), round,
			       (unsigned long long)st.submitted, t_now() - t0);
		}
		T_EQ(shmp_pool_close(p), 0);
		T_EQ(shmp_pool_join(p, 20), 0);
		shmp_pool_destroy(p);
	}
	free(in);
	free(out);
	return 0;
}
