/* Regressions for bugs a review found:
 * - a Condition whose waiters all died must not refuse new waiters (-EAGAIN);
 * - an Event set() then clear() at once still ends the waits it overlapped;
 * - a JoinableQueue whose producer died mid-message still joins;
 * - an options struct smaller than today's is read only up to its sz. */
#include "t.h"

static shmp_cond_t *cond;
static shmp_event_t *ev;
static shmp_queue_t *jq;

static int cond_waiter(void *arg)
{
	(void)arg;
	shmp_lock_acquire(shmp_cond_lock(cond), SHMP_FOREVER);
	shmp_cond_wait(cond, SHMP_FOREVER); /* killed in here */
	return 0;
}

static int event_waiter(void *arg)
{
	(void)arg;
	return shmp_event_wait(ev, 5.0) == 0 ? 0 : 1;
}

/* Puts a message too large to copy quickly, and is killed in the copy. */
static int big_producer(void *arg)
{
	size_t n = (size_t)(uintptr_t)arg;
	char *m = malloc(n);
	T_CHECK(m);
	memset(m, 1, n);
	for (;;)
		shmp_queue_put(jq, m, n, SHMP_FOREVER);
}

int main(void)
{
	t_watchdog(60);

	/* Condition: two waiters fill a table of two, then die. */
	struct shmp_cond_opts co = SHMP_OPTS(shmp_cond_opts, .max_waiters = 2);
	cond = shmp_cond_create(&co);
	T_CHECK(cond);
	pid_t a = t_spawn(cond_waiter, NULL), b = t_spawn(cond_waiter, NULL);
	t_sleep_ms(200);
	t_kill_reap(a, 5);
	t_kill_reap(b, 5);
	shmp_lock_t *l = shmp_cond_lock(cond);
	T_EQ(shmp_lock_acquire(l, SHMP_FOREVER), 0);
	T_ABOUT(shmp_cond_wait(cond, 0.2), -ETIMEDOUT); /* not -EAGAIN */
	T_EQ(shmp_cond_notify_all(cond), 0);            /* the dead are not counted */
	T_EQ(shmp_lock_release(l), 0);
	shmp_cond_destroy(cond);

	/* Event: a pulse (set, clear) wakes a waiter that was waiting. */
	ev = shmp_event_create(NULL);
	T_CHECK(ev);
	pid_t w = t_spawn(event_waiter, NULL);
	t_sleep_ms(200);
	T_EQ(shmp_event_set(ev), 0);
	T_EQ(shmp_event_clear(ev), 0);
	int st = t_wait(w, 10);
	T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	T_EQ(shmp_event_wait(ev, 0), -ETIMEDOUT); /* cleared: a new wait waits */
	shmp_event_destroy(ev);

	/* JoinableQueue: the producer dies while copying a 32 MiB message. */
	struct shmp_queue_opts qo = SHMP_OPTS(shmp_queue_opts, .maxsize = 4);
	jq = shmp_joinable_queue_create(&qo);
	T_CHECK(jq);
	pid_t p = t_spawn(big_producer, (void *)(uintptr_t)(32u << 20));
	t_sleep_ms(300);
	t_kill_reap(p, 5);
	static char buf[32u << 20];
	size_t len;
	int got = 0;
	while (shmp_queue_get(jq, buf, sizeof buf, &len, 0.3) == 0) {
		T_EQ(shmp_queue_task_done(jq), 0);
		got++;
	}
	struct shmp_ring_stats rs;
	T_EQ(shmp_ring_stats(shmp_queue_ring(jq), &rs), 0);
	printf("producer killed: %d messages done, %llu lost\n", got, (unsigned long long)rs.lost);
	T_EQ(shmp_queue_join(jq, 2.0), 0);
	T_EQ(shmp_queue_task_done(jq), -EOVERFLOW);
	shmp_queue_destroy(jq);

	/* An older caller's options: only sz bytes are read. A struct whose
	 * sz covers just itself and .segment leaves .raw and .lock unread, so
	 * the garbage after them must not matter. */
	struct {
		struct shmp_value_opts o;
	} old;
	memset(&old, 0xff, sizeof old);
	old.o.sz = offsetof(struct shmp_value_opts, raw);
	old.o.segment = NULL;
	shmp_value_t *v = shmp_value_create('i', NULL, &old.o);
	T_CHECK(v);
	T_CHECK(shmp_value_lock(v) != NULL); /* raw was not read as 0xff.. */
	shmp_value_destroy(v);
	return 0;
}
