/* Lock, Condition, Event, Semaphore and Barrier between threads of one
 * process, with plain (non-atomic) data handed over by each: what
 * ThreadSanitizer checks (label tsan, tests/CMakeLists.txt) is that each
 * primitive orders that data — a release/acquire missing in one of them is
 * a reported race there, and a wrong sum or value here.
 * - Lock: 4 threads add to a plain counter under the lock, 20000 times
 *   each: the total is exact;
 * - Condition: a bounded buffer of plain ints (4 slots) between 2
 *   producers and 2 consumers, with wait_for and notify: every item comes
 *   out once, and the sum is exact;
 * - Event: a thread writes a plain buffer, then sets the event; 3 waiters
 *   read it after their wait returns and see all of it; clear, and again;
 * - Semaphore: a token ring of 3 threads, each passing a plain counter
 *   on through the next thread's semaphore, 3000 rounds: the count is
 *   exact;
 * - Barrier: 4 threads each write their own slot of a plain array, wait,
 *   then read every slot; 200 rounds. */
#include "t.h"

#include <pthread.h>

#define NT 4

/* ---- Lock ----------------------------------------------------------- */

static shmp_lock_t *L;
static long lock_count; /* plain: the lock orders it */

static void *lock_adder(void *arg)
{
	(void)arg;
	for (int i = 0; i < 20000; i++) {
		T_EQ(shmp_lock_acquire(L, 30.0), 0);
		lock_count++;
		T_EQ(shmp_lock_release(L), 0);
	}
	return NULL;
}

static void test_lock(void)
{
	T_CHECK(L = shmp_lock_create(NULL));
	pthread_t t[NT];
	for (int i = 0; i < NT; i++)
		T_EQ(pthread_create(&t[i], NULL, lock_adder, NULL), 0);
	for (int i = 0; i < NT; i++)
		T_EQ(pthread_join(t[i], NULL), 0);
	T_EQ(lock_count, NT * 20000L);
	shmp_lock_destroy(L);
}

/* ---- Condition: a bounded buffer ------------------------------------ */

#define SLOTS 4
#define ITEMS 5000
static shmp_cond_t *C;
static int buf[SLOTS], head, count; /* plain: the condition's lock orders them */
static long taken_sum;
static int taken_n;

static int has_room(void *arg) { (void)arg; return count < SLOTS; }
static int has_item(void *arg) { (void)arg; return count > 0 || taken_n + count >= 2 * ITEMS; }

static void *cond_producer(void *arg)
{
	int base = (int)(intptr_t)arg;
	shmp_lock_t *l = shmp_cond_lock(C);
	for (int i = 1; i <= ITEMS; i++) {
		T_EQ(shmp_lock_acquire(l, 30.0), 0);
		T_EQ(shmp_cond_wait_for(C, has_room, NULL, 30.0), 0);
		buf[(head + count) % SLOTS] = base + i;
		count++;
		T_CHECK(shmp_cond_notify_all(C) >= 0);
		T_EQ(shmp_lock_release(l), 0);
	}
	return NULL;
}

static void *cond_consumer(void *arg)
{
	(void)arg;
	shmp_lock_t *l = shmp_cond_lock(C);
	for (;;) {
		T_EQ(shmp_lock_acquire(l, 30.0), 0);
		T_EQ(shmp_cond_wait_for(C, has_item, NULL, 30.0), 0);
		if (count == 0) { /* everything taken */
			T_EQ(shmp_lock_release(l), 0);
			return NULL;
		}
		taken_sum += buf[head];
		taken_n++;
		head = (head + 1) % SLOTS;
		count--;
		T_CHECK(shmp_cond_notify_all(C) >= 0);
		T_EQ(shmp_lock_release(l), 0);
	}
}

static void test_condition(void)
{
	T_CHECK(C = shmp_cond_create(NULL));
	pthread_t p[2], c[2];
	for (int i = 0; i < 2; i++) {
		T_EQ(pthread_create(&c[i], NULL, cond_consumer, NULL), 0);
		T_EQ(pthread_create(&p[i], NULL, cond_producer, (void *)(intptr_t)(i * 1000000)), 0);
	}
	for (int i = 0; i < 2; i++)
		T_EQ(pthread_join(p[i], NULL), 0);
	for (int i = 0; i < 2; i++)
		T_EQ(pthread_join(c[i], NULL), 0);
	long want = 0;
	for (int k = 0; k < 2; k++)
		for (int i = 1; i <= ITEMS; i++)
			want += k * 1000000 + i;
	T_EQ(taken_n, 2 * ITEMS);
	T_EQ(taken_sum, want);
	shmp_cond_destroy(C);
}

/* ---- Event ---------------------------------------------------------- */

static shmp_event_t *E;
static char message[4096]; /* plain: written before set, read after wait */
static atomic_int readers_ok;

static void *event_reader(void *arg)
{
	int round = (int)(intptr_t)arg;
	T_EQ(shmp_event_wait(E, 30.0), 0);
	int ok = 1;
	for (size_t i = 0; i < sizeof message; i++)
		ok &= message[i] == (char)(round + i);
	atomic_fetch_add(&readers_ok, ok);
	return NULL;
}

static void test_event(void)
{
	T_CHECK(E = shmp_event_create(NULL));
	for (int round = 0; round < 20; round++) {
		pthread_t r[3];
		for (int i = 0; i < 3; i++)
			T_EQ(pthread_create(&r[i], NULL, event_reader, (void *)(intptr_t)round), 0);
		for (size_t i = 0; i < sizeof message; i++)
			message[i] = (char)(round + i);
		T_EQ(shmp_event_set(E), 0);
		for (int i = 0; i < 3; i++)
			T_EQ(pthread_join(r[i], NULL), 0);
		T_EQ(shmp_event_clear(E), 0);
	}
	T_EQ(readers_ok, 20 * 3);
	shmp_event_destroy(E);
}

/* ---- Semaphore: a token ring ---------------------------------------- */

#define RING 3
#define ROUNDS 3000
static shmp_sem_t *S[RING];
static long token; /* plain: passed on by the semaphores */

static void *ring_member(void *arg)
{
	int me = (int)(intptr_t)arg;
	for (int i = 0; i < ROUNDS; i++) {
		T_EQ(shmp_sem_acquire(S[me], 30.0), 0);
		token++;
		T_EQ(shmp_sem_release(S[(me + 1) % RING]), 0);
	}
	return NULL;
}

static void test_semaphore(void)
{
	for (int i = 0; i < RING; i++)
		T_CHECK(S[i] = shmp_sem_create(i == 0, NULL));
	pthread_t t[RING];
	for (int i = 0; i < RING; i++)
		T_EQ(pthread_create(&t[i], NULL, ring_member, (void *)(intptr_t)i), 0);
	for (int i = 0; i < RING; i++)
		T_EQ(pthread_join(t[i], NULL), 0);
	T_EQ(token, (long)RING * ROUNDS);
	T_EQ(shmp_sem_value(S[0]), 1); /* the token is back with the first */
	for (int i = 0; i < RING; i++)
		shmp_sem_destroy(S[i]);
}

/* ---- Barrier -------------------------------------------------------- */

#define BROUNDS 200
static shmp_barrier_t *B;
static int slot[NT]; /* plain: each written by its thread, read by all after the wait */
static atomic_int barrier_bad;

static void *party(void *arg)
{
	int me = (int)(intptr_t)arg;
	for (int round = 1; round <= BROUNDS; round++) {
		slot[me] = round;
		T_CHECK(shmp_barrier_wait(B, 30.0) >= 0);
		for (int i = 0; i < NT; i++)
			if (slot[i] != round)
				atomic_fetch_add(&barrier_bad, 1);
		T_CHECK(shmp_barrier_wait(B, 30.0) >= 0); /* everyone read before the next write */
	}
	return NULL;
}

static void test_barrier(void)
{
	T_CHECK(B = shmp_barrier_create(NT, NULL));
	pthread_t t[NT];
	for (int i = 0; i < NT; i++)
		T_EQ(pthread_create(&t[i], NULL, party, (void *)(intptr_t)i), 0);
	for (int i = 0; i < NT; i++)
		T_EQ(pthread_join(t[i], NULL), 0);
	T_EQ(barrier_bad, 0);
	shmp_barrier_destroy(B);
}

int main(void)
{
	t_watchdog(120);
	double t0 = t_now();
	test_lock();
	test_condition();
	test_event();
	test_semaphore();
	test_barrier();
	printf("%.2f s\n", t_now() - t0);
	return 0;
}
