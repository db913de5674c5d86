/* Seed 002 (Chinese), the rest of the map family and apply: imap keeps the
 * input's order whoever finishes first, imap_unordered gives results as they
 * finish, starmap passes several arguments, apply blocks (0, 1, 2 run in
 * turn) while apply_async does not ("Before ... After ..." come first). */
#include "tour.h"

#include <string.h>
#include <unistd.h>

struct xres {
	long x;
	pid_t pid;
};

/* foo(x) for imap: item x sleeps 4 - x, so 3 finishes first and 1 last. */
static int foo_late(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	long x = *(const long *)arg;
	(void)c;
	say("[%d] Hello %ld", (int)getpid(), x);
	nap((double)(4 - x));
	say("[%d] Bye %ld", (int)getpid(), x);
	*(struct xres *)res = (struct xres){ x, getpid() };
	return 0;
}

static const long inputs[3] = { 1, 2, 3 };

/* for r in pool.imap[_unordered](foo, [1, 2, 3]): print(r); the order seen. */
static void iterate(int unordered, long *order)
{
	/* Three workers: all three items run at once. */
	shmp_pool_t *p = tour_pool(3, NULL);
	if (!p)
		return;
	shmp_imap_t *it = unordered
				  ? shmp_pool_imap_unordered(p, foo_late, inputs, sizeof inputs[0], 3,
							     sizeof(struct xres), NULL, NULL, NULL)
				  : shmp_pool_imap(p, foo_late, inputs, sizeof inputs[0], 3, sizeof(struct xres),
						   NULL, NULL, NULL);
	if (CHECK(it != NULL)) {
		for (int k = 0; k < 3; k++) {
			struct xres r;
			uint64_t idx = 99;
			int rc = shmp_imap_next(it, &r, &idx, TOUR_WAIT, NULL);
			if (!CHECK_EQ(rc, 1))
				break;
			say("%s -> %ld (item %llu)", unordered ? "imap_unordered" : "imap", r.x,
			    (unsigned long long)idx);
			/* The result belongs to the index it came with. */
			CHECK(idx < 3 && r.x == inputs[idx] && r.pid != getpid());
			order[k] = r.x;
		}
		/* StopIteration. */
		struct xres end;
		CHECK_EQ(shmp_imap_next(it, &end, NULL, TOUR_WAIT, NULL), 0);
		shmp_imap_destroy(it);
	}
	tour_pool_close_join(p);
}

int sec_imap(void)
{
	long order[3] = { 0, 0, 0 };
	iterate(0, order);
	/* "不論誰先完成，return value還是會按照[1, 2, 3]的順序" */
	say("imap gave [%ld, %ld, %ld]", order[0], order[1], order[2]);
	CHECK(order[0] == 1 && order[1] == 2 && order[2] == 3);
	return 0;
}

int sec_imap_unordered(void)
{
	long order[3] = { 0, 0, 0 };
	iterate(1, order);
	/* In the order they finished, e.g. [3, 2, 1]; each exactly once. */
	say("imap_unordered gave [%ld, %ld, %ld]", order[0], order[1], order[2]);
	int seen[4] = { 0, 0, 0, 0 };
	for (int k = 0; k < 3; k++)
		if (order[k] >= 1 && order[k] <= 3)
			seen[order[k]]++;
	CHECK(seen[1] == 1 && seen[2] == 1 && seen[3] == 1);
	return 0;
}

/* In C the "tuple" is a struct: starmap is map over an array of them. */
struct pair {
	long a, b;
};

/* def foo(a, b): return a + b */
static int foo2(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	const struct pair *p = arg;
	(void)c;
	say("[%d] foo(%ld, %ld) = %ld", (int)getpid(), p->a, p->b, p->a + p->b);
	*(long *)res = p->a + p->b;
	return 0;
}

int sec_starmap(void)
{
	shmp_pool_t *p = tour_pool(2, NULL);
	if (!p)
		return -1;
	/* pool.starmap(foo, [(1, 2), (3, 4)]) */
	struct pair in[2] = { { 1, 2 }, { 3, 4 } };
	long out[2] = { 0, 0 };
	CHECK_EQ(shmp_pool_starmap(p, foo2, in, sizeof in[0], 2, out, sizeof out[0], NULL, NULL), 0);
	say("starmap -> [%ld, %ld]", out[0], out[1]);
	CHECK(out[0] == 3 && out[1] == 7);
	/* starmap_async(...).get() */
	long out2[2] = { 0, 0 };
	shmp_async_t *h = shmp_pool_starmap_async(p, foo2, in, sizeof in[0], 2, out2, sizeof out2[0],
						  NULL);
	if (CHECK(h != NULL) && CHECK_EQ(shmp_async_get(h, TOUR_WAIT, NULL), 0))
		say("starmap_async(...).get() -> [%ld, %ld]", out2[0], out2[1]);
	CHECK(out2[0] == 3 && out2[1] == 7);
	shmp_async_destroy(h);
	tour_pool_close_join(p);
	return 0;
}

/* Made before the pools: tasks running now, and the most seen at once. */
static shmp_value_t *g_running, *g_most;

/* def foo(x): Hello, time.sleep(random.uniform(0.5, 2)), Bye, return x */
static int foo(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	long x = *(const long *)arg;
	(void)c;
	int64_t now = 0, most = 0;
	shmp_value_add(g_running, 1, &now);
	now++;
	shmp_value_load(g_most, &most);
	while (now > most && !shmp_value_cas(g_most, &most, now))
		;
	say("[%d] Hello %ld", (int)getpid(), x);
	nap(tour_uniform((uint64_t)x + 500, 0.5, 2));
	say("[%d] Bye %ld", (int)getpid(), x);
	shmp_value_add(g_running, -1, NULL);
	*(struct xres *)res = (struct xres){ x, getpid() };
	return 0;
}

int sec_apply(void)
{
	g_running = shmp_value_create('q', NULL, NULL);
	g_most = shmp_value_create('q', NULL, NULL);
	shmp_pool_t *p = NULL;
	if (!CHECK(g_running && g_most) || !(p = tour_pool(2, NULL))) {
		shmp_value_destroy(g_running);
		shmp_value_destroy(g_most);
		return -1;
	}
	/* apply: "每一個apply指令都是block的，所以0, 1, 2是循序執行的" */
	say("Before ...");
	for (long x = 0; x < 3; x++) {
		struct xres r = { -1, 0 };
		CHECK_EQ(shmp_pool_apply(p, foo, &x, sizeof x, &r, sizeof r, NULL), 0);
		CHECK(r.x == x && r.pid != getpid());
	}
	say("After ...");
	int64_t most = 0;
	shmp_value_load(g_most, &most);
	CHECK_EQ(most, 1); /* never two at once */

	/* apply_async: returns at once; "After ..." before the work is done. */
	say("-- apply_async:");
	say("Before ...");
	shmp_async_t *h[3];
	struct xres r[3];
	for (long x = 0; x < 3; x++) {
		r[x] = (struct xres){ -1, 0 };
		h[x] = shmp_pool_apply_async(p, foo, &x, sizeof x, &r[x], sizeof r[x], NULL);
		CHECK(h[x] != NULL);
	}
	say("After ...");
	CHECK_EQ(shmp_pool_close(p), 0);
	CHECK_EQ(shmp_pool_join(p, TOUR_WAIT), 0);
	for (long x = 0; x < 3; x++) {
		if (h[x])
			CHECK_EQ(shmp_async_get(h[x], 0, NULL), 0);
		CHECK(r[x].x == x && r[x].pid != getpid());
		shmp_async_destroy(h[x]);
	}
	shmp_pool_destroy(p);
	shmp_value_destroy(g_running);
	shmp_value_destroy(g_most);
	return 0;
}
