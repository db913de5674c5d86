/* Seed 004 (Chinese), map and starmap inside a class: MyProcessPool1(10)
 * maps _process over 30 items, MyProcessPool2(10) starmaps it over
 * zip(i, i ** 2); @elapsed times main(). The class is a struct here and
 * its method a function taking `self`. */
#include "tour.h"

#include <string.h>
#include <unistd.h>

struct my_process_pool {
	int processes;
};

/* def _process(self, i): print('<{}>'), time.sleep(3), print('</{}>') */
static int process1(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	long i = *(const long *)arg;
	(void)c;
	say("<%ld>", i);
	nap(3);
	say("</%ld>", i);
	*(long *)res = i; /* Python returns None; the tour checks i came back */
	return 0;
}

struct ij {
	long i, j;
};

/* def _process(self, i, j): print('<{},{}>'), time.sleep(3), print('</{},{}>') */
static int process2(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	const struct ij *a = arg;
	(void)c;
	say("<%ld,%ld>", a->i, a->j);
	nap(3);
	say("</%ld,%ld>", a->i, a->j);
	*(long *)res = a->i + a->j;
	return 0;
}

/* def start(self): ProcessPool(self.processes).map(...); close(); join() */
static void start(const struct my_process_pool *self, int star)
{
	int n = self->processes * 3;
	long in[64], out[64];
	struct ij pairs[64];
	if (!CHECK(n <= 64))
		return;
	for (int i = 0; i < n; i++) {
		in[i] = i;
		pairs[i] = (struct ij){ i, (long)i * i };
		out[i] = -1;
	}
	shmp_pool_t *p = tour_pool(self->processes, NULL);
	if (!p)
		return;
	if (star)
		CHECK_EQ(shmp_pool_starmap(p, process2, pairs, sizeof pairs[0], (size_t)n, out,
					   sizeof out[0], NULL, NULL), 0);
	else
		CHECK_EQ(shmp_pool_map(p, process1, in, sizeof in[0], (size_t)n, out, sizeof out[0],
				       NULL, NULL), 0);
	int ok = 1;
	for (int i = 0; i < n; i++)
		ok &= out[i] == (star ? i + (long)i * i : i);
	CHECK(ok); /* every item ran, its result in its place */
	tour_pool_close_join(p);
}

/* @elapsed def main(): MyProcessPool?(10).start() */
static void elapsed_main(int star)
{
	struct my_process_pool pool = { .processes = 10 };
	double t = tour_now();
	start(&pool, star);
	t = tour_now() - t;
	/* 30 items on 10 workers: three rounds of time.sleep(3). */
	say("main elapsed %.3f s (three rounds of time.sleep(3) = 3 x %.2f s, on %d workers)", t,
	    3 * TOUR_SECOND, pool.processes);
}

int sec_class_map(void)
{
	elapsed_main(0);
	return 0;
}

int sec_class_starmap(void)
{
	elapsed_main(1);
	return 0;
}
