/* JoinableQueue (include/shmp/queue.h):
 * - N items put, worker processes get and task_done each one; the parent's
 *   join() returns 0 only after the last task_done: a shared counter the
 *   workers bump before each task_done is N when join returns;
 * - a join in a child is woken by the parent's task_done calls, again only
 *   after the last one;
 * - join with items pending: -ETIMEDOUT after about the timeout (at once
 *   with timeout 0), and 0 once the last one is done;
 * - task_done more often than items were put: -EOVERFLOW (also on a fresh
 *   queue); a put that failed (Full, closed) is not counted as an item;
 * - join on an empty queue returns 0 at once, whatever the timeout. */
#include "t.h"

#include <stdatomic.h>
#include <sys/mman.h>

struct shared {
	_Atomic int processed;  /* items whose work is finished (before task_done) */
	_Atomic int seen[1000];  /* how often each item was got */
	_Atomic int join_saw;    /* processed, as the joining child saw it on return */
};

static struct shared *sh;
static shmp_queue_t *jq;
static int up[2];

static shmp_queue_t *mkjq(unsigned maxsize)
{
	shmp_queue_t *q = shmp_joinable_queue_create(&SHMP_OPTS(shmp_queue_opts, .maxsize = maxsize));
	T_CHECK(q);
	return q;
}

/* ---- workers, parent joins ------------------------------------------------ */

#define N_ITEMS 300
#define N_WORKERS 3

static int worker(void *arg)
{
	(void)arg;
	for (;;) {
		int item;
		size_t len = 0;
		int r = shmp_queue_get(jq, &item, sizeof item, &len, 10.0);
		if (r == -SHMP_ECLOSED)
			return 0;
		if (r != 0 || len != sizeof item || item < 0 || item >= N_ITEMS)
			return 1;
		atomic_fetch_add(&sh->seen[item], 1);
		/* Some work, so that a join returning early would see fewer. */
		t_sleep_ms(1);
		atomic_fetch_add(&sh->processed, 1);
		if ((r = shmp_queue_task_done(jq)) != 0) {
			fprintf(stderr, "worker: task_done: %s\n", shmp_strerror(r));
			return 2;
		}
	}
}

static void test_workers(void)
{
	jq = mkjq(32); /* smaller than N_ITEMS: puts block on the workers too */
	pid_t w[N_WORKERS];
	for (int i = 0; i < N_WORKERS; i++)
		w[i] = t_spawn(worker, NULL);
	for (int i = 0; i < N_ITEMS; i++)
		T_EQ(shmp_queue_put(jq, &i, sizeof i, 10.0), 0);
	double t0 = t_now();
	T_EQ(shmp_queue_join(jq, 20.0), 0);
	int done = atomic_load(&sh->processed);
	T_EQ(done, N_ITEMS);
	printf("join returned %.3f s after the last put\n", t_now() - t0);
	T_EQ(shmp_queue_join(jq, 0), 0); /* still nothing pending */
	T_EQ(shmp_queue_is_empty(jq), 1);
	T_EQ(shmp_queue_close(jq), 0); /* workers see closed and exit */
	for (int i = 0; i < N_WORKERS; i++)
		t_wait_ok(w[i], 10);
	for (int i = 0; i < N_ITEMS; i++)
		T_EQ(sh->seen[i], 1);
	T_EQ(shmp_queue_task_done(jq), -EOVERFLOW);
	shmp_queue_destroy(jq);
}

/* ---- a child joins, the parent does the work --------------------------- */

static int joiner(void *arg)
{
	(void)arg;
	char c = 'j';
	if (write(up[1], &c, 1) != 1)
		return 3;
	int r = shmp_queue_join(jq, 10.0);
	atomic_store(&sh->join_saw, atomic_load(&sh->processed));
	if (r != 0) {
		fprintf(stderr, "joiner: %s\n", shmp_strerror(r));
		return 1;
	}
	return 0;
}

static void test_child_joins(void)
{
	atomic_store(&sh->processed, 0);
	atomic_store(&sh->join_saw, -1);
	jq = mkjq(0);
	for (int i = 0; i < 3; i++)
		T_EQ(shmp_queue_put(jq, &i, sizeof i, 0), 0);
	pid_t c = t_spawn(joiner, NULL);
	T_EQ(t_await(up[0], 10), 1);
	for (int i = 0; i < 3; i++) {
		int item;
		size_t len;
		T_EQ(shmp_queue_get(jq, &item, sizeof item, &len, 0), 0);
		T_EQ(item, i);
		/* Give the joiner time to be asleep (and to fail by waking
		 * early); correct whether or not it is asleep yet. */
		t_sleep_ms(50);
		atomic_fetch_add(&sh->processed, 1);
		T_EQ(shmp_queue_task_done(jq), 0);
	}
	t_wait_ok(c, 10);
	T_EQ(atomic_load(&sh->join_saw), 3);
	shmp_queue_destroy(jq);
}

/* ---- timeouts, overflow, failed puts --------------------------------------- */

static void test_timeout_overflow(void)
{
	jq = mkjq(0);
	int item = 0;
	size_t len;

	/* Empty: join returns 0 at once, even with an unbounded timeout. */
	double t0 = t_now();
	T_EQ(shmp_queue_join(jq, 0), 0);
	T_EQ(shmp_queue_join(jq, SHMP_FOREVER), 0);
	T_EQ(shmp_queue_join(jq, 5.0), 0);
	T_CHECK(t_now() - t0 < 1.0);

	/* Nothing was put: task_done has nothing to finish. */
	T_EQ(shmp_queue_task_done(jq), -EOVERFLOW);
	T_EQ(shmp_queue_join(jq, 0), 0);

	T_EQ(shmp_queue_put(jq, &item, sizeof item, 0), 0);
	T_EQ(shmp_queue_put(jq, &item, sizeof item, 0), 0);
	t0 = t_now();
	T_EQ(shmp_queue_join(jq, 0), -ETIMEDOUT);
	T_CHECK(t_now() - t0 < 1.0);
	T_ABOUT(shmp_queue_join(jq, 0.2), -ETIMEDOUT);

	/* Items got but not done still count. */
	T_EQ(shmp_queue_get(jq, &item, sizeof item, &len, 0), 0);
	T_EQ(shmp_queue_get(jq, &item, sizeof item, &len, 0), 0);
	T_EQ(shmp_queue_join(jq, 0), -ETIMEDOUT);
	T_EQ(shmp_queue_task_done(jq), 0);
	T_EQ(shmp_queue_join(jq, 0.05), -ETIMEDOUT);
	T_EQ(shmp_queue_task_done(jq), 0);
	T_EQ(shmp_queue_join(jq, 0), 0);
	T_EQ(shmp_queue_task_done(jq), -EOVERFLOW);
	T_EQ(shmp_queue_join(jq, 0), 0);
	shmp_queue_destroy(jq);

	/* A put that fails is not an item: Full ... */
	jq = mkjq(1);
	T_EQ(shmp_queue_put(jq, &item, sizeof item, 0), 0);
	T_EQ(shmp_queue_put(jq, &item, sizeof item, 0), -ETIMEDOUT);
	T_EQ(shmp_queue_put(jq, &item, sizeof item, 0.05), -ETIMEDOUT);
	T_EQ(shmp_queue_get(jq, &item, sizeof item, &len, 0), 0);
	T_EQ(shmp_queue_task_done(jq), 0);
	T_EQ(shmp_queue_join(jq, 0), 0);
	T_EQ(shmp_queue_task_done(jq), -EOVERFLOW);
	/* ... closed ... */
	T_EQ(shmp_queue_close(jq), 0);
	T_EQ(shmp_queue_put(jq, &item, sizeof item, 0), -SHMP_ECLOSED);
	T_EQ(shmp_queue_join(jq, 0), 0);
	T_EQ(shmp_queue_task_done(jq), -EOVERFLOW);
	shmp_queue_destroy(jq);

	/* ... or too large. */
	jq = shmp_joinable_queue_create(&SHMP_OPTS(shmp_queue_opts, .max_message = 100));
	T_CHECK(jq);
	static char big[101];
	T_EQ(shmp_queue_put(jq, big, sizeof big, 0), -EMSGSIZE);
	T_EQ(shmp_queue_join(jq, 0), 0);
	T_EQ(shmp_queue_task_done(jq), -EOVERFLOW);
	shmp_queue_destroy(jq);
}

int main(void)
{
	t_watchdog(60);
	T_CHECK(pipe(up) == 0);
	sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	T_CHECK(sh != MAP_FAILED);
	T_CHECK(shmp_segment_default());
	struct shmp_segment_stats st0, st1;
	T_EQ(shmp_segment_stats(shmp_segment_default(), &st0), 0);

	test_timeout_overflow();
	test_workers();
	test_child_joins();

	T_EQ(shmp_segment_stats(shmp_segment_default(), &st1), 0);
	T_EQ(st1.live_blocks, st0.live_blocks);
	munmap(sh, sizeof *sh);
	return 0;
}
