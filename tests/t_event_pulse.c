/* Event wait returns 0 only for a set() that happened during the wait,
 * never for one that was over before it began: two processes ping-pong
 * through two Events (set, wait, clear) 20000 times and must stay in step.
 * (set() used to store the flag and bump the generation in two steps: a
 * late bump woke the next wait of the side that had already seen and
 * cleared the flag — out of step within a few thousand rounds.) */
#include "t.h"

#define ROUNDS 20000

static shmp_event_t *ping, *pong;
static shmp_array_t *step;

static int child(void *arg)
{
	(void)arg;
	for (long i = 0; i < ROUNDS; i++) {
		if (shmp_event_wait(ping, 30) != 0)
			return 2;
		shmp_event_clear(ping);
		shmp_array_add(step, 0, 1, NULL);
		shmp_event_set(pong);
	}
	return 0;
}

int main(void)
{
	t_watchdog(120);
	ping = shmp_event_create(NULL);
	pong = shmp_event_create(NULL);
	step = t_counters(1);
	T_CHECK(ping && pong && step);
	pid_t c = t_fork(child, NULL);
	for (long i = 0; i < ROUNDS; i++) {
		T_EQ(shmp_event_set(ping), 0);
		T_EQ(shmp_event_wait(pong, 30), 0);
		T_EQ(shmp_event_clear(pong), 0);
		if (t_load(step, 0) != i + 1) {
			fprintf(stderr, "round %ld: the child did %lld rounds (a spurious wake-up)\n", i,
				(long long)t_load(step, 0));
			kill(c, SIGKILL);
			T_CHECK(0);
		}
	}
	t_wait_ok(c, 30);
	shmp_event_destroy(ping);
	shmp_event_destroy(pong);
	return 0;
}
