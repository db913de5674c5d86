/* Robust Lock/RLock after the owner's end, with glibc's robust mutexes as
 * the model (tst-robust2, tst-robust5): once pthread_join() has returned for
 * a thread that ended holding a lock, or waitpid() for a process killed
 * holding one, the next acquirer gets -EOWNERDEAD at once — a zero-timeout
 * try included, every time. Looped, so that a race shows:
 * - ROUNDS threads each take a Lock (or an RLock, at depth 1 to 3) and end
 *   (return or pthread_exit); after the join, shmp_lock_owner still names
 *   them (this pid and their tid) and acquire(l, 0) is -EOWNERDEAD;
 * - a waiter already asleep (a thread here, or another process) gets
 *   -EOWNERDEAD well before its liveness check would find the end;
 * - a process killed holding a lock (its main thread, or another thread),
 *   reaped, then acquire(l, 0): -EOWNERDEAD every round;
 * - a thread ending with 20 locks: the first 16 (the tracked ones) are
 *   owner-dead at once, the rest after the liveness check; locks it released
 *   are free;
 * - another key's destructor that releases a lock at thread end runs first:
 *   a waiter then gets 0, not -EOWNERDEAD;
 * - a thread that destroys a held lock or its segment before ending does
 *   not crash in its end;
 * - the registry's inspection names the ended owner's pid, and dead. */
#include "t.h"

#include <pthread.h>
#include <sys/syscall.h>

#define ROUNDS 400
#define PROC_ROUNDS 150
#define MAX_WALL 20.0

static int pfd[2];

struct holder {
	shmp_lock_t *l;
	int depth;
	int how;       /* 0 return, 1 pthread_exit */
	pid_t tid;     /* filled by the thread */
};

static void *hold_and_end(void *arg)
{
	struct holder *h = arg;
	h->tid = (pid_t)syscall(SYS_gettid);
	for (int i = 0; i < h->depth; i++)
		if (shmp_lock_acquire(h->l, 5.0) != 0)
			return (void *)1;
	if (h->how)
		pthread_exit(NULL);
	return NULL;
}

/* One thread, one lock: end holding it, join, then a try must see it. */
static void round_thread(shmp_lock_t *l, int depth, int how)
{
	struct holder h = { .l = l, .depth = depth, .how = how };
	pthread_t th;
	T_EQ(pthread_create(&th, NULL, hold_and_end, &h), 0);
	void *ret;
	T_EQ(pthread_join(th, &ret), 0);
	T_CHECK(ret == NULL);
	pid_t pid = 0, tid = 0;
	T_EQ(shmp_lock_owner(l, &pid, &tid), 1);
	T_EQ(tid, h.tid);
	T_EQ(pid, getpid()); /* from the lock's state: /proc has no such thread now */
	int r = shmp_lock_acquire(l, 0);
	if (r != -EOWNERDEAD) {
		fprintf(stderr, "%s depth %d (%s): try after join got %d (%s)\n",
			shmp_lock_is_recursive(l) ? "RLock" : "Lock", depth,
			how ? "pthread_exit" : "return", r, shmp_strerror(r));
		exit(1);
	}
	T_EQ(shmp_lock_count(l), 1);
	T_EQ(shmp_lock_consistent(l), 0);
	T_EQ(shmp_lock_release(l), 0);
	T_EQ(shmp_lock_is_locked(l), 0);
}

/* The registry's inspection (what `shmp show` prints) names the ended
 * owner's process too, and calls it dead. */
static void test_inspect(void)
{
	shmp_registry_t *r = shmp_registry_create(t_segname("reg"), NULL);
	T_CHECK(r);
	shmp_lock_t *l = shmp_registry_lock(r, "lk", 0);
	T_CHECK(l);
	struct holder h = { .l = l, .depth = 1 };
	pthread_t th;
	T_EQ(pthread_create(&th, NULL, hold_and_end, &h), 0);
	T_EQ(pthread_join(th, NULL), 0);
	struct shmp_object_info info;
	T_EQ(shmp_registry_lookup(r, "lk", &info), 0);
	T_EQ(info.locked, 1);
	T_EQ(info.owner_tid, h.tid);
	T_EQ(info.owner_pid, getpid());
	T_EQ(info.owner_dead, 1);
	T_EQ(shmp_lock_acquire(l, 0), -EOWNERDEAD);
	T_EQ(shmp_lock_consistent(l), 0);
	T_EQ(shmp_lock_release(l), 0);
	shmp_lock_destroy(l);
	shmp_registry_destroy(r);
}

static void test_thread_rounds(void)
{
	shmp_lock_t *lk = shmp_lock_create(NULL), *rl = shmp_rlock_create(NULL);
	T_CHECK(lk && rl);
	double start = t_now();
	int n = 0;
	for (; n < ROUNDS && t_now() - start < MAX_WALL / 2; n++) {
		round_thread(lk, 1, n & 1);
		round_thread(rl, 1 + n % 3, (n >> 1) & 1);
	}
	printf("thread end: %d rounds of Lock and RLock in %.2f s, every try -EOWNERDEAD\n", n,
	       t_now() - start);
	T_CHECK(n >= 50);
	shmp_lock_destroy(lk);
	shmp_lock_destroy(rl);
}

/* ---- a waiter already asleep when the holder ends ---------------------- */
struct gated {
	shmp_lock_t *l;
	atomic_int go;   /* the holder ends once it is set */
	double t_end;    /* when the holder thread ended */
};

static void *hold_until_gate(void *arg)
{
	struct gated *g = arg;
	if (shmp_lock_acquire(g->l, 5) != 0)
		return (void *)1;
	t_signal(pfd[1]);
	/* Not a pipe: a forked waiter would hold its write end open. */
	while (!atomic_load(&g->go)) {
		struct timespec ts = { 0, 100000 };
		nanosleep(&ts, NULL);
	}
	g->t_end = t_now();
	return NULL;
}

struct sleeper {
	shmp_lock_t *l;
	int r;
	double t_done;
};

static void *sleeper_thread(void *arg)
{
	struct sleeper *s = arg;
	s->r = shmp_lock_acquire(s->l, 10);
	s->t_done = t_now();
	if (s->r == -EOWNERDEAD)
		shmp_lock_consistent(s->l);
	if (s->r == 0 || s->r == -EOWNERDEAD)
		shmp_lock_release(s->l);
	return NULL;
}

static double *shared_t; /* [0] the holder's end, [1] the child's return */

static int child_sleeper(void *arg)
{
	shmp_lock_t *l = arg;
	t_signal(pfd[1]);
	int r = shmp_lock_acquire(l, 10);
	shared_t[1] = t_now();
	if (r == -EOWNERDEAD)
		T_EQ(shmp_lock_consistent(l), 0);
	if (r == 0 || r == -EOWNERDEAD)
		T_EQ(shmp_lock_release(l), 0);
	return r == -EOWNERDEAD ? 0 : 10 + (r < 0 ? -r % 100 : r);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* The waiter (a thread, or another process) sleeps 60 to 150 ms, past its
 * first liveness checks (2, 4, 8... 50 ms apart); then the holder ends. Its
 * end wakes the waiter: the delay is a wake-up's, not a check interval's
 * (which would spread over 0-50 ms, median 25). */
static void test_sleeping_waiter(void)
{
	shmp_lock_t *l = shmp_lock_create(NULL);
	T_CHECK(l);
	shmp_array_t *ta = t_raw_array('d', 2);
	shared_t = shmp_array_ptr(ta);
	enum { N = 12 };
	double delay[2][N];
	for (int proc = 0; proc < 2; proc++)
		for (int i = 0; i < N; i++) {
			struct gated g = { .l = l };
			pthread_t holder, waiter;
			T_EQ(pthread_create(&holder, NULL, hold_until_gate, &g), 0);
			T_EQ(t_await(pfd[0], 10), 1);
			struct sleeper s = { .l = l };
			pid_t c = 0;
			if (proc) {
				c = t_spawn(child_sleeper, l);
				T_EQ(t_await(pfd[0], 10), 1);
			} else {
				T_EQ(pthread_create(&waiter, NULL, sleeper_thread, &s), 0);
			}
			t_sleep_ms(60 + (long)t_rnd(90));
			atomic_store(&g.go, 1);
			T_EQ(pthread_join(holder, NULL), 0);
			if (proc) {
				t_wait_ok(c, 10);
				delay[1][i] = shared_t[1] - g.t_end;
			} else {
				T_EQ(pthread_join(waiter, NULL), 0);
				T_EQ(s.r, -EOWNERDEAD);
				delay[0][i] = s.t_done - g.t_end;
			}
			T_EQ(shmp_lock_is_locked(l), 0);
		}
	for (int proc = 0; proc < 2; proc++) {
		qsort(delay[proc], N, sizeof(double), cmp_double);
		printf("waiter asleep (%s): owner-dead %.2f ms after the end (median), %.2f ms worst\n",
		       proc ? "another process" : "a thread", delay[proc][N / 2] * 1e3,
		       delay[proc][N - 1] * 1e3);
		T_CHECK(delay[proc][N / 2] < 0.010);
		T_CHECK(delay[proc][N - 1] < 0.5);
	}
	shmp_array_destroy(ta);
	shmp_lock_destroy(l);
}

/* ---- a process killed holding, reaped ----------------------------------- */
static void *thread_hold_forever(void *arg)
{
	shmp_lock_t *l = arg;
	if (shmp_lock_acquire(l, 5) != 0)
		_exit(2);
	t_signal(pfd[1]);
	for (;;)
		pause();
	return NULL;
}

static int child_hold(void *arg)
{
	shmp_lock_t *l = arg;
	if (getpid() & 1) { /* the main thread holds it */
		thread_hold_forever(l);
	} else {            /* another thread does */
		pthread_t th;
		if (pthread_create(&th, NULL, thread_hold_forever, l) != 0)
			return 3;
		for (;;)
			pause();
	}
	return 0;
}

static void test_killed_process(void)
{
	shmp_lock_t *lk = shmp_lock_create(NULL), *rl = shmp_rlock_create(NULL);
	T_CHECK(lk && rl);
	double start = t_now();
	int n = 0;
	for (; n < PROC_ROUNDS && t_now() - start < MAX_WALL / 2; n++) {
		shmp_lock_t *l = n & 1 ? rl : lk;
		pid_t c = t_spawn(child_hold, l);
		T_EQ(t_await(pfd[0], 10), 1);
		pid_t opid = 0;
		T_EQ(shmp_lock_owner(l, &opid, NULL), 1);
		T_EQ(opid, c);
		t_kill_reap(c, 10);
		int r = shmp_lock_acquire(l, 0);
		if (r != -EOWNERDEAD) {
			fprintf(stderr, "round %d: try after waitpid got %d (%s)\n", n, r, shmp_strerror(r));
			exit(1);
		}
		T_EQ(shmp_lock_consistent(l), 0);
		T_EQ(shmp_lock_release(l), 0);
	}
	printf("killed process: %d rounds in %.2f s, every try after waitpid -EOWNERDEAD\n", n,
	       t_now() - start);
	T_CHECK(n >= 30);
	shmp_lock_destroy(lk);
	shmp_lock_destroy(rl);
}

/* ---- more locks than the thread's list tracks ---------------------------- */
#define MANY 20
#define TRACKED 16

static void *hold_many(void *arg)
{
	shmp_lock_t **ls = arg;
	for (int i = 0; i < MANY; i++)
		if (shmp_lock_acquire(ls[i], 5) != 0)
			return (void *)1;
	/* Released ones leave the list: they are free after the end. */
	if (shmp_lock_release(ls[3]) != 0 || shmp_lock_release(ls[MANY - 1]) != 0)
		return (void *)2;
	return NULL;
}

static void test_many(void)
{
	shmp_lock_t *ls[MANY];
	for (int i = 0; i < MANY; i++)
		T_CHECK((ls[i] = i & 1 ? shmp_rlock_create(NULL) : shmp_lock_create(NULL)));
	pthread_t th;
	T_EQ(pthread_create(&th, NULL, hold_many, ls), 0);
	void *ret;
	T_EQ(pthread_join(th, &ret), 0);
	T_CHECK(ret == NULL);
	T_EQ(shmp_lock_is_locked(ls[3]), 0);
	T_EQ(shmp_lock_is_locked(ls[MANY - 1]), 0);
	/* The first TRACKED taken (less the released one) are marked by the
	 * thread's end; the others are found by the liveness check. */
	for (int i = 0; i < MANY; i++) {
		if (i == 3 || i == MANY - 1)
			continue;
		int r = shmp_lock_acquire(ls[i], i < TRACKED ? 0 : 2.0);
		if (r != -EOWNERDEAD) {
			fprintf(stderr, "lock %d of %d: %d (%s)\n", i, MANY, r, shmp_strerror(r));
			exit(1);
		}
		T_EQ(shmp_lock_consistent(ls[i]), 0);
		T_EQ(shmp_lock_release(ls[i]), 0);
	}
	for (int i = 0; i < MANY; i++)
		shmp_lock_destroy(ls[i]);
}

/* ---- another destructor releases at thread end -------------------------- */
static pthread_key_t user_key;
static shmp_lock_t *dtor_lock;

static void user_dtor(void *v)
{
	(void)v;
	t_sleep_ms(50); /* a waiter is asleep meanwhile */
	shmp_lock_release(dtor_lock);
}

static void *hold_with_dtor(void *arg)
{
	(void)arg;
	if (shmp_lock_acquire(dtor_lock, 5) != 0)
		return (void *)1;
	pthread_setspecific(user_key, (void *)1);
	t_signal(pfd[1]);
	t_sleep_ms(50);
	return NULL;
}

static void test_user_destructor(void)
{
	dtor_lock = shmp_lock_create(NULL);
	T_CHECK(dtor_lock);
	/* Made after shmp's own key (this process has taken locks already),
	 * so its destructor comes later in each round. */
	T_EQ(pthread_key_create(&user_key, user_dtor), 0);
	for (int i = 0; i < 5; i++) {
		pthread_t th, w;
		T_EQ(pthread_create(&th, NULL, hold_with_dtor, NULL), 0);
		T_EQ(t_await(pfd[0], 10), 1);
		struct sleeper s = { .l = dtor_lock };
		T_EQ(pthread_create(&w, NULL, sleeper_thread, &s), 0);
		T_EQ(pthread_join(th, NULL), 0);
		T_EQ(pthread_join(w, NULL), 0);
		T_EQ(s.r, 0); /* released by the destructor, not owner-dead */
		T_EQ(shmp_lock_is_locked(dtor_lock), 0);
	}
	pthread_key_delete(user_key);
	shmp_lock_destroy(dtor_lock);
}

/* ---- held memory destroyed before the end ------------------------------- */
static void *destroy_while_held(void *arg)
{
	(void)arg;
	shmp_segment_t *seg = shmp_segment_create(NULL, SHMP_SEGMENT_MIN_SIZE, NULL);
	if (!seg)
		return (void *)1;
	struct shmp_lock_opts lo = SHMP_OPTS(shmp_lock_opts, .segment = seg);
	struct shmp_value_opts vo = SHMP_OPTS(shmp_value_opts, .segment = seg);
	shmp_lock_t *l = shmp_lock_create(&lo);
	shmp_value_t *v = shmp_value_create('i', NULL, &vo);
	if (!l || !v)
		return (void *)2;
	if (shmp_lock_acquire(l, 0) != 0 || shmp_lock_acquire(shmp_value_lock(v), 0) != 0)
		return (void *)3;
	shmp_lock_destroy(l);
	shmp_value_destroy(v);
	shmp_segment_destroy(seg); /* unmapped: the end must not touch it */
	return NULL;
}

static void test_destroyed_while_held(void)
{
	for (int i = 0; i < 5; i++) {
		pthread_t th;
		T_EQ(pthread_create(&th, NULL, destroy_while_held, NULL), 0);
		void *ret;
		T_EQ(pthread_join(th, &ret), 0);
		T_CHECK(ret == NULL);
	}
}

int main(void)
{
	t_watchdog(150);
	atexit(t_reap_all);
	printf("seed %#llx\n", (unsigned long long)t_seed());
	T_CHECK(pipe(pfd) == 0);
	test_thread_rounds();
	test_inspect();
	test_sleeping_waiter();
	test_killed_process();
	test_many();
	test_user_destructor();
	test_destroyed_while_held();
	return 0;
}
