/* Seed 001 (Chinese), first half: Pool(4).map over ten inputs, and map
 * (blocking) beside map_async (not blocking, then close() and join()).
 * Workers print their pid as the tutorial's os.getpid(). */
#include "tour.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct sq_res {
	long value;
	pid_t pid;
};

/* def main_map(i): print Start, time.sleep(1), result = i * i, print End */
static int main_map(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	long i = *(const long *)arg;
	struct sq_res *r = res;
	(void)c;
	say("Start Process Id: %d", (int)getpid());
	nap(1);
	r->value = i * i;
	r->pid = getpid();
	say("End Process Id: %d", (int)getpid());
	return 0;
}

/* "[0, 1, 4, ...]" as Python prints a list. */
static void say_list(const struct sq_res *r, size_t n)
{
	char buf[512];
	size_t len = 0;
	buf[len++] = '[';
	for (size_t i = 0; i < n && len < sizeof buf - 32; i++)
		len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%ld", i ? ", " : "", r[i].value);
	snprintf(buf + len, sizeof buf - len, "]");
	say("%s", buf);
}

/* Every result is what the sequential loop gives, and came from a worker. */
static void check_squares(const long *in, const struct sq_res *out, size_t n)
{
	int ok = 1, elsewhere = 1;
	for (size_t i = 0; i < n; i++) {
		ok &= out[i].value == in[i] * in[i];
		elsewhere &= out[i].pid > 0 && out[i].pid != getpid();
	}
	CHECK(ok);        /* map(f, xs) == [f(x) for x in xs] */
	CHECK(elsewhere); /* and not in the main process */
}

int sec_map(void)
{
	long inputs[10];
	struct sq_res out[10];
	for (int i = 0; i < 10; i++)
		inputs[i] = i;
	memset(out, 0, sizeof out);
	/* pool = Pool(4): the number of CPUs, says the tutorial */
	shmp_pool_t *p = tour_pool(4, NULL);
	if (!p)
		return -1;
	struct shmp_task_error err;
	CHECK_EQ(shmp_pool_map(p, main_map, inputs, sizeof inputs[0], 10, out, sizeof out[0], NULL,
			       &err), 0);
	say_list(out, 10);
	check_squares(inputs, out, 10);
	/* Four workers, no more: at most four pids did the work. */
	pid_t seen[10];
	int nseen = 0;
	for (int i = 0; i < 10; i++) {
		int k = 0;
		while (k < nseen && seen[k] != out[i].pid)
			k++;
		if (k == nseen)
			seen[nseen++] = out[i].pid;
	}
	say("(%d worker processes ran the 10 tasks)", nseen);
	CHECK(nseen >= 1 && nseen <= 4);
	/* with pool(4): ... pool.close(); pool.join() */
	tour_pool_close_join(p);
	return 0;
}

/* Made before the pool, so its workers share it: tasks that have printed. */
static shmp_value_t *g_printed;

/* def main_map(num): result = num * num; print(result); return result */
static int main_print(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	long num = *(const long *)arg;
	struct sq_res *r = res;
	(void)c;
	r->value = num * num;
	r->pid = getpid();
	say("%ld", r->value);
	shmp_value_add(g_printed, 1, NULL);
	return 0;
}

/* The counter of lines printed by tasks (g_printed), and a Pool(4); NULL
 * (and nothing left) if either fails. */
static shmp_pool_t *printing_pool(void)
{
	g_printed = shmp_value_create('q', NULL, NULL);
	if (!CHECK(g_printed != NULL))
		return NULL;
	shmp_pool_t *p = tour_pool(4, NULL);
	if (!p)
		shmp_value_destroy(g_printed);
	return p;
}

int sec_map_blocking(void)
{
	long inputs[4] = { 0, 1, 2, 3 };
	struct sq_res out[4];
	shmp_pool_t *p = printing_pool();
	if (!p)
		return -1;
	CHECK_EQ(shmp_pool_map(p, main_print, inputs, sizeof inputs[0], 4, out, sizeof out[0], NULL,
			       NULL), 0);
	/* Blocked until every task had run: all four have printed by now. */
	int64_t printed = -1;
	shmp_value_load(g_printed, &printed);
	say("將會阻塞並於 pool.map 子程序結束後觸發  (blocked: printed after the %lld tasks)",
	    (long long)printed);
	CHECK_EQ(printed, 4);
	check_squares(inputs, out, 4);
	tour_pool_close_join(p);
	shmp_value_destroy(g_printed);
	return 0;
}

int sec_map_async(void)
{
	long inputs[4] = { 0, 1, 2, 3 };
	struct sq_res out[4];
	memset(out, 0, sizeof out);
	shmp_pool_t *p = printing_pool();
	if (!p)
		return -1;
	double t = tour_now();
	shmp_async_t *h = shmp_pool_map_async(p, main_print, inputs, sizeof inputs[0], 4, out,
					      sizeof out[0], NULL);
	t = tour_now() - t;
	CHECK(h != NULL);
	say("將不會阻塞並和 pool.map_async 並行觸發  (not blocked: map_async returned in %.2f ms)",
	    t * 1000);
	/* pool.close(): no more tasks; pool.join(): wait for the workers. */
	CHECK_EQ(shmp_pool_close(p), 0);
	CHECK_EQ(shmp_pool_join(p, TOUR_WAIT), 0);
	/* After join the call is complete, as in Python. */
	if (h) {
		CHECK_EQ(shmp_async_is_ready(h), 1);
		CHECK_EQ(shmp_async_get(h, 0, NULL), 0);
		CHECK_EQ(shmp_async_is_successful(h), 1);
	}
	int64_t printed = -1;
	shmp_value_load(g_printed, &printed);
	CHECK_EQ(printed, 4);
	check_squares(inputs, out, 4);
	shmp_async_destroy(h);
	shmp_pool_destroy(p);
	shmp_value_destroy(g_printed);
	return 0;
}
