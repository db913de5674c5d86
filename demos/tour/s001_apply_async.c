/* Seed 001 (Chinese), second half: apply_async once per name with the
 * results collected by get(); one task failing (ValueError for 'Bill')
 * without harming the others; a callback run by the main process. */
#include "tour.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *const names[] = { "John", "Ben", "Bill", "Alex", "Jenny" };
#define NNAMES (sizeof names / sizeof names[0])

/* A name travels by value: the bytes are copied into the pool's memory. */
struct name {
	char s[16];
};

/* def say_hello_to(name): return name */
static int say_hello_to(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	(void)c;
	memcpy(res, arg, sizeof(struct name));
	return 0;
}

/* One task per name, its argument and where its result lands. */
struct names_run {
	shmp_async_t *tasks[NNAMES];
	struct name args[NNAMES], results[NNAMES];
};

/* pool = Pool(4); tasks = [pool.apply_async(fn, (name,)) for name in
 * names]; pool.close(); pool.join(). NULL if there is no pool. */
static shmp_pool_t *apply_each_name(shmp_task_fn fn, struct names_run *run)
{
	shmp_pool_t *p = tour_pool(4, NULL);
	if (!p)
		return NULL;
	memset(run, 0, sizeof *run);
	for (size_t i = 0; i < NNAMES; i++) {
		snprintf(run->args[i].s, sizeof run->args[i].s, "%s", names[i]);
		run->tasks[i] = shmp_pool_apply_async(p, fn, &run->args[i], sizeof run->args[i], &run->results[i],
						      sizeof run->results[i], NULL);
		CHECK(run->tasks[i] != NULL);
	}
	CHECK_EQ(shmp_pool_close(p), 0);
	CHECK_EQ(shmp_pool_join(p, TOUR_WAIT), 0);
	return p;
}

int sec_apply_async_list(void)
{
	struct names_run run;
	shmp_pool_t *p = apply_each_name(say_hello_to, &run);
	if (!p)
		return -1;
	/* for result in tasks: print(result.get()) */
	for (size_t i = 0; i < NNAMES; i++) {
		if (!run.tasks[i] || !CHECK_EQ(shmp_async_get(run.tasks[i], TOUR_WAIT, NULL), 0))
			continue;
		say("%s", run.results[i].s);
		CHECK(!strcmp(run.results[i].s, names[i]));
		shmp_async_destroy(run.tasks[i]);
	}
	shmp_pool_destroy(p);
	return 0;
}

/*
 * A C task has no exception to raise: it returns non-zero, and get() gives
 * -SHMP_ETASK with that value in err.code. This one stands for ValueError.
 */
enum { VALUE_ERROR = 22 };

/* def say_hello_to(name): if name == 'Bill': raise ValueError(...); print(name) */
static int say_hello_or_fail(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	const struct name *n = arg;
	(void)c;
	if (!strcmp(n->s, "Bill"))
		return VALUE_ERROR;
	say("%s", n->s);
	memcpy(res, n, sizeof *n);
	return 0;
}

int sec_apply_async_error(void)
{
	struct names_run run;
	shmp_pool_t *p = apply_each_name(say_hello_or_fail, &run);
	if (!p)
		return -1;
	/* Up to here nobody asked: Bill's failure stayed silent. */
	say("-- without get() nothing is raised; now the loop with get():");
	/* for result in tasks: try: print(result.get()) except Exception as err: print(err) */
	for (size_t i = 0; i < NNAMES; i++) {
		if (!run.tasks[i])
			continue;
		struct shmp_task_error err;
		int rc = shmp_async_get(run.tasks[i], TOUR_WAIT, &err);
		if (rc == 0) {
			say("%s", run.results[i].s);
		} else if (rc == -SHMP_ETASK) {
			/* The message is the caller's to make: only a code comes back. */
			say("Name Error : %s   (%s, code %d)", run.args[i].s, rcname(rc), err.code);
		} else {
			say("%s: %s", run.args[i].s, rcname(rc));
		}
		if (!strcmp(names[i], "Bill")) {
			CHECK_EQ(rc, -SHMP_ETASK);
			CHECK_EQ(err.code, VALUE_ERROR);
			CHECK_EQ(shmp_async_is_successful(run.tasks[i]), 0);
		} else {
			/* The other tasks are not affected. */
			CHECK_EQ(rc, 0);
			CHECK(!strcmp(run.results[i].s, names[i]));
			CHECK_EQ(shmp_async_is_successful(run.tasks[i]), 1);
		}
		shmp_async_destroy(run.tasks[i]);
	}
	struct shmp_pool_stats st;
	CHECK_EQ(shmp_pool_stats(p, &st), 0);
	CHECK_EQ(st.failed, 1);
	shmp_pool_destroy(p);
	return 0;
}

/* def func(num): print('func pid', os.getpid()); return num * num */
static int func(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	(void)c;
	long num = *(const long *)arg;
	say("func pid %d", (int)getpid());
	long r[2] = { num * num, getpid() };
	memcpy(res, r, sizeof r);
	return 0;
}

/* What the callback saw; it runs on the pool's thread, so atomics. */
static atomic_int cb_calls;
static atomic_long cb_pid, cb_value, cb_func_pid;

/* def mycallback(arg): print('callback pid', os.getpid()); print(arg) */
static int mycallback(shmp_async_t *a, void *results, size_t n, void *cb_arg)
{
	(void)a;
	(void)n;
	(void)cb_arg;
	const long *r = results;
	say("callback pid %d", (int)getpid());
	say("%ld", r[0]);
	atomic_store(&cb_pid, getpid());
	atomic_store(&cb_value, r[0]);
	atomic_store(&cb_func_pid, r[1]);
	atomic_fetch_add(&cb_calls, 1);
	return 0;
}

int sec_callback(void)
{
	atomic_store(&cb_calls, 0);
	say("main pid: %d", (int)getpid());
	shmp_pool_t *p = tour_pool(4, NULL);
	if (!p)
		return -1;
	long arg = 10, r[2] = { 0, 0 };
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .callback = mycallback);
	/* pool.apply_async(func, args=(10,), callback=mycallback) */
	shmp_async_t *h = shmp_pool_apply_async(p, func, &arg, sizeof arg, r, sizeof r, &o);
	CHECK(h != NULL);
	/* The handle is not needed to get the callback: drop it, as Python
	 * drops the AsyncResult it never stored. */
	shmp_async_destroy(h);
	CHECK_EQ(shmp_pool_close(p), 0);
	CHECK_EQ(shmp_pool_join(p, TOUR_WAIT), 0);
	/* After join the callback has run, once, in this process, while the
	 * function ran in a worker. */
	CHECK_EQ(atomic_load(&cb_calls), 1);
	CHECK_EQ(atomic_load(&cb_pid), getpid());
	CHECK_EQ(atomic_load(&cb_value), 100);
	CHECK(atomic_load(&cb_func_pid) > 0 && atomic_load(&cb_func_pid) != getpid());
	shmp_pool_destroy(p);
	return 0;
}
