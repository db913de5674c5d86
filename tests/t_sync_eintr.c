/* Interrupts on every blocking call of the sync layer, across processes:
 * Lock and RLock acquire, Semaphore acquire, Condition wait and wait_for,
 * Event wait, Barrier wait, and Value/Array calls waiting for their lock.
 * The parent holds the object (a held lock, a semaphore at 0, an unset
 * event, a barrier short of one party, a condition nobody notifies); a child
 * process blocks on it, forever or with a 20 s timeout, with a SIGUSR1
 * handler installed with SA_RESTART or without; once it sleeps in the wait
 * (/proc says it is in a system call) the parent sends one SIGUSR1.
 * - shmp_set_interruptible(1): the call returns -EINTR within 0.5 s of the
 *   signal, and leaves no partial state: no permit taken, the condition's
 *   lock held again (and released by the child), the barrier broken for
 *   the others (as a timeout breaks it), the lock still the parent's.
 * - Default (off): the handler runs, the call goes on waiting (still
 *   blocked 300 ms later), and completes normally once the parent lets go.
 * Prints the slowest -EINTR. */
#include "t.h"

enum obj { O_LOCK, O_RLOCK, O_SEM, O_COND, O_COND_WAIT_FOR, O_EVENT, O_BARRIER, O_VALUE, O_ARRAY, N_OBJ };
static const char *obj_name[] = { "lock", "rlock", "sem", "cond", "cond_wait_for", "event", "barrier",
				  "value", "array" };

static int pfd[2];
static shmp_array_t *st; /* [0] result + 1000 (0: not returned), [1] handler runs */
static double *times;    /* [0] signal sent, [1] call returned */
static shmp_value_t *flag; /* wait_for's predicate */

struct objs {
	enum obj o;
	shmp_lock_t *lock;
	shmp_sem_t *sem;
	shmp_cond_t *cond;
	shmp_event_t *event;
	shmp_barrier_t *barrier;
	shmp_value_t *value;
	shmp_array_t *array;
	int intr, restart;
	double timeout;
};

static void on_usr1(int sig)
{
	(void)sig;
	int64_t *p = shmp_array_ptr(st);
	__atomic_fetch_add(&p[1], 1, __ATOMIC_SEQ_CST);
}

static int pred(void *arg)
{
	(void)arg;
	int64_t x = 0;
	shmp_value_load(flag, &x);
	return x != 0;
}

/* The blocking call. */
static int call(struct objs *s)
{
	int64_t x;
	char buf[8];
	switch (s->o) {
	case O_LOCK:
	case O_RLOCK:
		return shmp_lock_acquire(s->lock, s->timeout);
	case O_SEM:
		return shmp_sem_acquire(s->sem, s->timeout);
	case O_COND:
	case O_COND_WAIT_FOR: {
		shmp_lock_t *l = shmp_cond_lock(s->cond);
		T_EQ(shmp_lock_acquire(l, 10), 0);
		int r = s->o == O_COND ? shmp_cond_wait(s->cond, s->timeout)
				       : shmp_cond_wait_for(s->cond, pred, NULL, s->timeout);
		/* Whatever it returned, the lock is held again. */
		T_EQ(shmp_lock_count(l), 1);
		T_EQ(shmp_lock_release(l), 0);
		return r;
	}
	case O_EVENT:
		return shmp_event_wait(s->event, s->timeout);
	case O_BARRIER:
		return shmp_barrier_wait(s->barrier, s->timeout);
	case O_VALUE:
		return shmp_value_get_i64(s->value, &x);
	case O_ARRAY:
		return shmp_array_read(s->array, 1, 2, buf);
	default:
		return -1000;
	}
}

static int child(void *arg)
{
	struct objs *s = arg;
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = s->restart ? SA_RESTART : 0;
	T_CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
	T_EQ(shmp_set_interruptible(s->intr), 0);
	t_signal(pfd[1]);
	int r = call(s);
	times[1] = t_now();
	T_EQ(shmp_array_store(st, 0, r + 1000), 0);
	if ((s->o == O_LOCK || s->o == O_RLOCK) && r == 0)
		T_EQ(shmp_lock_release(s->lock), 0);
	if (s->o == O_SEM && r == 0)
		T_EQ(shmp_sem_release(s->sem), 0);
	return 0;
}

static void setup(struct objs *s)
{
	switch (s->o) {
	case O_LOCK:
		T_CHECK((s->lock = shmp_lock_create(NULL)));
		T_EQ(shmp_lock_acquire(s->lock, 0), 0);
		break;
	case O_RLOCK:
		T_CHECK((s->lock = shmp_rlock_create(NULL)));
		T_EQ(shmp_lock_acquire(s->lock, 0), 0);
		T_EQ(shmp_lock_acquire(s->lock, 0), 0);
		break;
	case O_SEM:
		T_CHECK((s->sem = shmp_sem_create(0, NULL)));
		break;
	case O_COND:
	case O_COND_WAIT_FOR:
		T_CHECK((s->cond = shmp_cond_create(NULL)));
		T_EQ(shmp_value_store(flag, 0), 0);
		break;
	case O_EVENT:
		T_CHECK((s->event = shmp_event_create(NULL)));
		break;
	case O_BARRIER:
		T_CHECK((s->barrier = shmp_barrier_create(2, NULL)));
		break;
	case O_VALUE:
		T_CHECK((s->value = shmp_value_create('q', NULL, NULL)));
		T_EQ(shmp_lock_acquire(shmp_value_lock(s->value), 0), 0);
		break;
	case O_ARRAY:
		T_CHECK((s->array = shmp_array_create('h', 8, NULL, NULL)));
		T_EQ(shmp_lock_acquire(shmp_array_lock(s->array), 0), 0);
		break;
	default:
		break;
	}
}

/* The parent lets go: the waiter can complete. */
static void let_go(struct objs *s)
{
	shmp_lock_t *l;
	switch (s->o) {
	case O_LOCK:
		T_EQ(shmp_lock_release(s->lock), 0);
		break;
	case O_RLOCK:
		T_EQ(shmp_lock_release(s->lock), 0);
		T_EQ(shmp_lock_release(s->lock), 0);
		break;
	case O_SEM:
		T_EQ(shmp_sem_release(s->sem), 0);
		break;
	case O_COND:
	case O_COND_WAIT_FOR:
		l = shmp_cond_lock(s->cond);
		T_EQ(shmp_lock_acquire(l, 10), 0);
		T_EQ(shmp_value_store(flag, 1), 0);
		T_EQ(shmp_cond_notify(s->cond, 1), 1);
		T_EQ(shmp_lock_release(l), 0);
		break;
	case O_EVENT:
		T_EQ(shmp_event_set(s->event), 0);
		break;
	case O_BARRIER: {
		int r = shmp_barrier_wait(s->barrier, 10);
		T_CHECK(r == 0 || r == 1);
		break;
	}
	case O_VALUE:
		T_EQ(shmp_lock_release(shmp_value_lock(s->value)), 0);
		break;
	case O_ARRAY:
		T_EQ(shmp_lock_release(shmp_array_lock(s->array)), 0);
		break;
	default:
		break;
	}
}

/* After -EINTR: nothing of the waiter's call is left behind. */
static void check_clean_after_eintr(struct objs *s)
{
	pid_t pid = 0;
	switch (s->o) {
	case O_LOCK:
	case O_RLOCK:
		T_EQ(shmp_lock_owner(s->lock, &pid, NULL), 1);
		T_EQ(pid, getpid());
		T_EQ(shmp_lock_count(s->lock), s->o == O_RLOCK ? 2 : 1);
		break;
	case O_SEM:
		T_EQ(shmp_sem_value(s->sem), 0);
		break;
	case O_COND:
	case O_COND_WAIT_FOR:
		T_EQ(shmp_lock_is_locked(shmp_cond_lock(s->cond)), 0);
		/* The child's entry is gone: a notify finds nobody. */
		T_EQ(shmp_lock_acquire(shmp_cond_lock(s->cond), 0), 0);
		T_EQ(shmp_cond_notify_all(s->cond), 0);
		T_EQ(shmp_lock_release(shmp_cond_lock(s->cond)), 0);
		break;
	case O_EVENT:
		T_EQ(shmp_event_is_set(s->event), 0);
		break;
	case O_BARRIER:
		/* The party left: the others cannot pass, the round broke. */
		T_EQ(shmp_barrier_is_broken(s->barrier), 1);
		T_EQ(shmp_barrier_n_waiting(s->barrier), 0);
		T_FAST(shmp_barrier_wait(s->barrier, 10), -SHMP_EBROKEN);
		T_EQ(shmp_barrier_reset(s->barrier), 0);
		break;
	case O_VALUE:
		T_EQ(shmp_lock_count(shmp_value_lock(s->value)), 1);
		break;
	case O_ARRAY:
		T_EQ(shmp_lock_count(shmp_array_lock(s->array)), 1);
		break;
	default:
		break;
	}
}

static void teardown(struct objs *s)
{
	shmp_lock_destroy(s->lock);
	shmp_sem_destroy(s->sem);
	shmp_cond_destroy(s->cond);
	shmp_event_destroy(s->event);
	shmp_barrier_destroy(s->barrier);
	shmp_value_destroy(s->value);
	shmp_array_destroy(s->array);
}

static double slowest;

static void one_case(enum obj o, int intr, int restart)
{
	struct objs s = { .o = o, .intr = intr, .restart = restart, .timeout = restart ? SHMP_FOREVER : 20.0 };
	setup(&s);
	T_EQ(shmp_array_store(st, 0, 0), 0);
	T_EQ(shmp_array_store(st, 1, 0), 0);
	pid_t c = t_spawn(child, &s);
	T_EQ(t_await(pfd[0], 10), 1);
	T_EQ(t_await_in_syscall(c, 10), 1); /* asleep in its wait */
	T_EQ(t_load(st, 0), 0);
	times[0] = t_now();
	T_EQ(kill(c, SIGUSR1), 0);
	if (intr) {
		t_wait_ok(c, 5);
		int64_t r = t_load(st, 0) - 1000;
		double dt = times[1] - times[0];
		if (r != -EINTR || dt > 0.5) {
			fprintf(stderr, "%s (%s): got %lld (%s) %.3f s after the signal\n", obj_name[o],
				restart ? "SA_RESTART" : "no SA_RESTART", (long long)r, shmp_strerror((int)r), dt);
			exit(1);
		}
		if (dt > slowest)
			slowest = dt;
		T_EQ(t_load(st, 1), 1);
		check_clean_after_eintr(&s);
		/* What the parent holds goes back. */
		if (o == O_LOCK || o == O_RLOCK || o == O_VALUE || o == O_ARRAY)
			let_go(&s);
	} else {
		t_sleep_ms(300);
		T_EQ(t_load(st, 1), 1);  /* the handler ran... */
		if (t_load(st, 0) != 0) { /* ...and the call went on */
			fprintf(stderr, "%s (%s), not interruptible: returned %lld after the signal\n",
				obj_name[o], restart ? "SA_RESTART" : "no SA_RESTART",
				(long long)(t_load(st, 0) - 1000));
			exit(1);
		}
		let_go(&s);
		t_wait_ok(c, 5);
		int64_t r = t_load(st, 0) - 1000;
		if (o == O_BARRIER)
			T_CHECK(r == 0 || r == 1);
		else
			T_EQ(r, 0);
	}
	teardown(&s);
}

int main(void)
{
	t_watchdog(120);
	atexit(t_reap_all);
	T_CHECK(pipe(pfd) == 0);
	st = t_counters(2);
	shmp_array_t *ta = t_raw_array('d', 2);
	times = shmp_array_ptr(ta);
	flag = t_raw_value('q');
	/* Off by default; the setter returns the previous setting. */
	T_EQ(shmp_set_interruptible(1), 0);
	T_EQ(shmp_set_interruptible(0), 1);
	for (int o = 0; o < N_OBJ; o++)
		for (int intr = 0; intr < 2; intr++)
			for (int restart = 0; restart < 2; restart++)
				one_case((enum obj)o, intr, restart);
	printf("slowest -EINTR: %.1f ms after the signal\n", slowest * 1e3);
	shmp_array_destroy(st);
	shmp_array_destroy(ta);
	shmp_value_destroy(flag);
	return 0;
}
