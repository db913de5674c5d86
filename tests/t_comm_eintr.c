/* Interrupts in ring, Queue, Pipe, Process and pipeline calls
 * (shmp_set_interruptible, common.h). Each case runs in a child process
 * whose SIGUSR1 handler is installed WITH SA_RESTART (the hard case: the
 * kernel restarts untimed waits), while this process sends it SIGUSR1 every
 * 20 ms:
 * - interruptible: a call that blocks forever (ring put/get/put_batch/
 *   get_batch/reserve/peek/poll, queue put/get, a JoinableQueue's put and
 *   join, pipe send/recv/poll, process join, pipeline put/reserve/next/join,
 *   and, in a pipeline worker process, stage emit and stage reserve)
 *   returns -EINTR within a second, after a handler ran, and leaves nothing
 *   behind (nothing taken, nothing added: checked after each);
 * - not interruptible (the default): the same call with a 0.5 s timeout
 *   returns -ETIMEDOUT after about 0.5 s although dozens of handlers ran,
 *   and calls without a timeout (process join, stage emit) return 0 once
 *   they can, 0.4 s in.
 * A pipeline's own threads block signals, so the process's SIGUSR1 reaches
 * the caller's thread (next and join are interrupted in a process whose
 * supervisor thread runs). */
#include "t.h"

static volatile sig_atomic_t nsig;
static void on_usr1(int sig)
{
	(void)sig;
	nsig++;
}

static void install_handler(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	T_CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
}

/* Results, shared with the children (the default segment is mapped before
 * any fork): RES_RC the call's result, RES_DT its duration, RES_NSIG handlers
 * that ran during it, RES_TARGET the pid to pester (0: the case's child),
 * RES_OK the case's own after-checks (1 passed). */
enum { RES_RC, RES_DT, RES_NSIG, RES_TARGET, RES_OK, RES_READY, RES_N };
static shmp_array_t *res;
static double *R;
static int ready_fd[2];

static int intr; /* this case's setting, in the child */
#define FOREVER_OR(t) (intr ? SHMP_FOREVER : (t))

/* Time a call in the case's child and record what it did. */
#define MEASURE(call)                                                              \
	do {                                                                       \
		t_signal(ready_fd[1]);                                             \
		nsig = 0;                                                          \
		double t0_ = t_now();                                              \
		int rc_ = (call);                                                  \
		R[RES_DT] = t_now() - t0_;                                           \
		R[RES_NSIG] = nsig;                                                  \
		R[RES_RC] = rc_;                                                   \
		shmp_set_interruptible(0); /* the after-checks are not under test */ \
	} while (0)

/* ---- ring ------------------------------------------------------------------- */

static shmp_ring_t *full_ring(void)
{
	shmp_ring_t *r = shmp_ring_create(&SHMP_OPTS(shmp_ring_opts, .capacity = 2));
	T_CHECK(r);
	T_EQ(shmp_ring_put(r, "a", 1, 0), 0);
	T_EQ(shmp_ring_put(r, "b", 1, 0), 0);
	return r;
}

/* A full ring still holds exactly "a", "b"; an empty one nothing. */
static int ring_intact(shmp_ring_t *r, int full)
{
	char buf[8];
	size_t len;
	if (full && (shmp_ring_get(r, buf, sizeof buf, &len, 0) != 0 || buf[0] != 'a' ||
		     shmp_ring_get(r, buf, sizeof buf, &len, 0) != 0 || buf[0] != 'b'))
		return 0;
	return shmp_ring_get(r, buf, sizeof buf, &len, 0) == -ETIMEDOUT;
}

static int c_ring_put(void)
{
	shmp_ring_t *r = full_ring();
	MEASURE(shmp_ring_put(r, "c", 1, FOREVER_OR(0.5)));
	int ok = ring_intact(r, 1);
	shmp_ring_destroy(r);
	return ok;
}

static int c_ring_put_batch(void)
{
	shmp_ring_t *r = full_ring();
	struct iovec v[2] = { { "c", 1 }, { "d", 1 } };
	MEASURE(shmp_ring_put_batch(r, v, 2, FOREVER_OR(0.5)));
	int ok = ring_intact(r, 1);
	shmp_ring_destroy(r);
	return ok;
}

static int c_ring_reserve(void)
{
	shmp_ring_t *r = full_ring();
	struct shmp_ring_ticket t;
	MEASURE(shmp_ring_reserve(r, 8, &t, FOREVER_OR(0.5)));
	int ok = ring_intact(r, 1);
	shmp_ring_destroy(r);
	return ok;
}

static int c_ring_get(void)
{
	shmp_ring_t *r = shmp_ring_create(NULL);
	char buf[8];
	size_t len;
	MEASURE(shmp_ring_get(r, buf, sizeof buf, &len, FOREVER_OR(0.5)));
	int ok = ring_intact(r, 0);
	shmp_ring_destroy(r);
	return ok;
}

static int c_ring_get_batch(void)
{
	shmp_ring_t *r = shmp_ring_create(NULL);
	char b0[8], b1[8];
	struct iovec v[2] = { { b0, 8 }, { b1, 8 } };
	size_t lens[2];
	MEASURE(shmp_ring_get_batch(r, v, lens, 2, FOREVER_OR(0.5)));
	int ok = ring_intact(r, 0);
	shmp_ring_destroy(r);
	return ok;
}

static int c_ring_peek(void)
{
	shmp_ring_t *r = shmp_ring_create(NULL);
	struct shmp_ring_ticket t;
	MEASURE(shmp_ring_peek(r, &t, FOREVER_OR(0.5)));
	/* Still usable: a message in, the same message out. */
	char buf[8];
	size_t len;
	int ok = shmp_ring_put(r, "x", 1, 0) == 0 && shmp_ring_get(r, buf, sizeof buf, &len, 0) == 0 &&
		 ring_intact(r, 0);
	shmp_ring_destroy(r);
	return ok;
}

static int c_ring_poll(void)
{
	shmp_ring_t *r = shmp_ring_create(NULL);
	MEASURE(shmp_ring_poll(r, FOREVER_OR(0.5)));
	int ok = ring_intact(r, 0);
	shmp_ring_destroy(r);
	return ok;
}

/* ---- Queue --------------------------------------------------------------------- */

static int c_queue_put(void)
{
	shmp_queue_t *q = shmp_queue_create(&SHMP_OPTS(shmp_queue_opts, .maxsize = 1));
	T_EQ(shmp_queue_put(q, "a", 1, 0), 0);
	MEASURE(shmp_queue_put(q, "b", 1, FOREVER_OR(0.5)));
	int ok = shmp_queue_qsize(q) == 1;
	shmp_queue_destroy(q);
	return ok;
}

static int c_queue_get(void)
{
	shmp_queue_t *q = shmp_queue_create(NULL);
	char buf[8];
	size_t len;
	MEASURE(shmp_queue_get(q, buf, sizeof buf, &len, FOREVER_OR(0.5)));
	int ok = shmp_queue_qsize(q) == 0;
	shmp_queue_destroy(q);
	return ok;
}

static int c_joinable_put(void)
{
	shmp_queue_t *q = shmp_joinable_queue_create(&SHMP_OPTS(shmp_queue_opts, .maxsize = 1));
	T_EQ(shmp_queue_put(q, "a", 1, 0), 0);
	MEASURE(shmp_queue_put(q, "b", 1, FOREVER_OR(0.5)));
	/* Not counted: one get and one task_done finish the queue. */
	char buf[8];
	size_t len;
	int ok = shmp_queue_qsize(q) == 1 && shmp_queue_get(q, buf, sizeof buf, &len, 0) == 0 &&
		 shmp_queue_task_done(q) == 0 && shmp_queue_join(q, 0) == 0;
	shmp_queue_destroy(q);
	return ok;
}

static int c_joinable_join(void)
{
	shmp_queue_t *q = shmp_joinable_queue_create(NULL);
	T_EQ(shmp_queue_put(q, "a", 1, 0), 0);
	MEASURE(shmp_queue_join(q, FOREVER_OR(0.5)));
	char buf[8];
	size_t len;
	int ok = shmp_queue_get(q, buf, sizeof buf, &len, 0) == 0 && shmp_queue_task_done(q) == 0 &&
		 shmp_queue_join(q, 0) == 0;
	shmp_queue_destroy(q);
	return ok;
}

/* ---- Pipe ------------------------------------------------------------------------ */

static int c_pipe_send(void)
{
	shmp_conn_t *a, *b;
	T_EQ(shmp_pipe_create(&a, &b, &SHMP_OPTS(shmp_pipe_opts, .capacity = 1)), 0);
	T_EQ(shmp_conn_send(a, "a", 1, 0), 0);
	MEASURE(shmp_conn_send(a, "b", 1, FOREVER_OR(0.5)));
	char buf[8];
	size_t len;
	int ok = shmp_conn_recv(b, buf, sizeof buf, &len, 0) == 0 && buf[0] == 'a' &&
		 shmp_conn_poll(b, 0) == 0;
	shmp_conn_destroy(a);
	shmp_conn_destroy(b);
	return ok;
}

static int c_pipe_recv(void)
{
	shmp_conn_t *a, *b;
	T_EQ(shmp_pipe_create(&a, &b, NULL), 0);
	char buf[8];
	size_t len;
	MEASURE(shmp_conn_recv(a, buf, sizeof buf, &len, FOREVER_OR(0.5)));
	int ok = shmp_conn_send(b, "z", 1, 0) == 0 && shmp_conn_recv(a, buf, sizeof buf, &len, 0) == 0 &&
		 buf[0] == 'z';
	shmp_conn_destroy(a);
	shmp_conn_destroy(b);
	return ok;
}

static int c_pipe_poll(void)
{
	shmp_conn_t *a, *b;
	T_EQ(shmp_pipe_create(&a, &b, NULL), 0);
	MEASURE(shmp_conn_poll(a, FOREVER_OR(0.5)));
	int ok = shmp_conn_poll(a, 0) == 0;
	shmp_conn_destroy(a);
	shmp_conn_destroy(b);
	return ok;
}

/* ---- Process ------------------------------------------------------------------- */

static pid_t case_pid;
static int sleeper(void *arg)
{
	(void)arg;
	if (!intr) { /* ends by itself, 0.4 s in */
		t_sleep_ms(400);
		return 3;
	}
	return t_until_orphaned(case_pid);
}

static int c_process_join(void)
{
	case_pid = getpid();
	shmp_process_t *p = shmp_process_create(sleeper, NULL, &SHMP_OPTS(shmp_process_opts, .die_with_parent = 1));
	T_CHECK(p);
	T_EQ(shmp_process_start(p), 0);
	MEASURE(shmp_process_join(p, SHMP_FOREVER));
	int code = -1, ok;
	if (intr) {
		ok = shmp_process_is_alive(p) == 1 && shmp_process_kill(p) == 0 &&
		     shmp_process_join(p, 5) == 0 && shmp_process_exitcode(p, &code) == 1 && code == -SIGKILL;
	} else {
		ok = shmp_process_exitcode(p, &code) == 1 && code == 3;
	}
	shmp_process_destroy(p);
	return ok;
}

/* ---- pipelines ---------------------------------------------------------------- */

static shmp_event_t *gate;

/* Holds every message until the gate opens. */
static int gated(const struct shmp_msg *in, shmp_stage_ctx_t *ctx, void *arg)
{
	(void)in;
	(void)ctx;
	(void)arg;
	while (shmp_event_wait(gate, 0.05) != 0)
		;
	return 0;
}

static shmp_pipeline_t *pl_new(shmp_stage_fn fn, unsigned cap)
{
	shmp_pipeline_t *pl = shmp_pipeline_create(&SHMP_OPTS(shmp_pipeline_opts, .capacity = cap));
	T_CHECK(pl);
	T_EQ(shmp_pipeline_add_stage(pl, "s", fn, NULL, 1), 1);
	T_EQ(shmp_pipeline_start(pl), 0);
	return pl;
}

/* The source ring (capacity 2) full: the stage holds one message in place,
 * the other slot has the second. */
static shmp_pipeline_t *pl_full(void)
{
	shmp_pipeline_t *pl = pl_new(gated, 2);
	for (int i = 0; i < 2; i++)
		T_EQ(shmp_pipeline_put(pl, "m", 1, 0, 5), 0);
	double until = t_now() + 5;
	while (shmp_pipeline_put(pl, "m", 1, 0, 0) != -ETIMEDOUT)
		T_CHECK(t_now() < until);
	return pl;
}

static int c_pl_put(void)
{
	shmp_pipeline_t *pl = pl_full();
	struct shmp_pipeline_stats st;
	T_EQ(shmp_pipeline_stats(pl, &st), 0);
	uint64_t in = st.messages_in;
	MEASURE(shmp_pipeline_put(pl, "x", 1, 0, FOREVER_OR(0.5)));
	T_EQ(shmp_pipeline_stats(pl, &st), 0);
	int ok = st.messages_in == in;
	shmp_pipeline_destroy(pl);
	return ok;
}

static int c_pl_reserve(void)
{
	shmp_pipeline_t *pl = pl_full();
	struct shmp_pipeline_ticket t;
	MEASURE(shmp_pipeline_reserve(pl, 8, &t, FOREVER_OR(0.5)));
	int ok = shmp_pipeline_put(pl, "x", 1, 0, 0) == -ETIMEDOUT;
	shmp_pipeline_destroy(pl);
	return ok;
}

static int pass(const struct shmp_msg *in, shmp_stage_ctx_t *ctx, void *arg)
{
	(void)arg;
	return shmp_stage_emit(ctx, in->data, in->len);
}

static int c_pl_next(void)
{
	shmp_pipeline_t *pl = pl_new(pass, 4);
	struct shmp_msg m;
	MEASURE(shmp_pipeline_next(pl, &m, FOREVER_OR(0.5)));
	/* Still working: a message goes through. */
	int ok = shmp_pipeline_put(pl, "y", 1, 7, 5) == 0 && shmp_pipeline_next(pl, &m, 5) == 0 && m.tag == 7 &&
		 shmp_pipeline_done(pl) == 0;
	shmp_pipeline_destroy(pl);
	return ok;
}

static int c_pl_join(void)
{
	shmp_pipeline_t *pl = pl_new(pass, 4);
	MEASURE(shmp_pipeline_join(pl, FOREVER_OR(0.5)));
	struct shmp_msg m;
	int ok = shmp_pipeline_close(pl) == 0 && shmp_pipeline_next(pl, &m, 5) == -SHMP_ECLOSED &&
		 shmp_pipeline_join(pl, 5) == 0;
	shmp_pipeline_destroy(pl);
	return ok;
}

/* In the worker: fill the output ring (capacity 2, nobody reads), then one
 * emit or stage reserve that blocks; the result is recorded like MEASURE's. */
static int use_reserve;
static int blocked_emit(const struct shmp_msg *in, shmp_stage_ctx_t *ctx, void *arg)
{
	(void)in;
	(void)arg;
	if (R[RES_TARGET] != 0)
		return 0; /* once */
	for (int i = 0; i < 2; i++)
		if (shmp_stage_emit(ctx, "e", 1) != 0)
			return -1;
	R[RES_TARGET] = getpid();
	int rc;
	MEASURE(use_reserve ? (shmp_stage_reserve(ctx, 8) ? 0 : -errno) : shmp_stage_emit(ctx, "f", 1));
	rc = (int)R[RES_RC];
	if (use_reserve && rc == 0)
		shmp_stage_commit(ctx, 0);
	R[RES_READY] = 1;
	return 0;
}

static int c_stage(void)
{
	R[RES_TARGET] = 0;
	R[RES_READY] = 0;
	shmp_pipeline_t *pl = pl_new(blocked_emit, 2);
	T_EQ(shmp_pipeline_put(pl, "go", 2, 0, 5), 0);
	if (!intr) {
		/* Make room 0.4 s after the worker blocked. */
		double until = t_now() + 10;
		while (R[RES_TARGET] == 0) {
			T_CHECK(t_now() < until);
			t_sleep_ms(1);
		}
		t_sleep_ms(400);
		struct shmp_msg m;
		T_EQ(shmp_pipeline_next(pl, &m, 5), 0);
		T_EQ(shmp_pipeline_done(pl), 0);
	}
	double until = t_now() + 10;
	while (R[RES_READY] == 0) {
		T_CHECK(t_now() < until);
		t_sleep_ms(1);
	}
	shmp_pipeline_destroy(pl);
	return 1;
}

static int c_stage_emit(void)
{
	use_reserve = 0;
	return c_stage();
}

static int c_stage_reserve(void)
{
	use_reserve = 1;
	return c_stage();
}

/* ---- the harness ---------------------------------------------------------------- */

struct tcase {
	const char *name;
	int (*fn)(void);
	int off_rc;     /* expected with interruptible off */
	int in_worker;  /* the call runs in a pipeline worker (RES_TARGET) */
};

static const struct tcase *cur;

static int case_child(void *arg)
{
	(void)arg;
	shmp_set_interruptible(intr);
	install_handler();
	R[RES_OK] = cur->fn();
	return 0;
}

/* Run one case with interruptible = on; pester its caller with SIGUSR1
 * every 20 ms until it exits (10 s at most). */
static void run(const struct tcase *c, int on)
{
	cur = c;
	intr = on;
	for (int i = 0; i < RES_N; i++)
		R[i] = 0;
	R[RES_RC] = 12345;
	pid_t kid = t_spawn(case_child, NULL);
	/* The call is about to start (in a worker: once it has a pid). */
	T_EQ(t_await(ready_fd[0], 10), 1);
	pid_t target = kid;
	if (c->in_worker) {
		target = (pid_t)R[RES_TARGET];
		T_CHECK(target > 0);
	}
	double start = t_now();
	for (;;) {
		int st;
		pid_t r = waitpid(kid, &st, WNOHANG);
		if (r == kid) {
			T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
			break;
		}
		T_EQ(r, 0);
		if (t_now() - start > 10) {
			kill(kid, SIGKILL);
			waitpid(kid, &st, 0);
			fprintf(stderr, "%s (interruptible %d): still blocked after 10 s\n", c->name, on);
			exit(1);
		}
		kill(target, SIGUSR1);
		t_sleep_ms(20);
	}
	int rc = (int)R[RES_RC];
	double dt = R[RES_DT];
	int n = (int)R[RES_NSIG];
	printf("%-16s interruptible %d: %-12s after %.3f s, %d handler runs\n", c->name, on, shmp_strerror(rc), dt, n);
	int bad = 0;
	if (on) {
		bad = rc != -EINTR || n < 1 || dt > 1.0;
	} else {
		bad = rc != c->off_rc || n < 5 || dt < 0.39;
		if (c->off_rc == -ETIMEDOUT)
			bad |= dt < 0.49 || dt > 3.0;
	}
	if (bad) {
		fprintf(stderr, "%s (interruptible %d): got %d (%s) after %.3f s with %d handler runs\n", c->name,
			on, rc, shmp_strerror(rc), dt, n);
		exit(1);
	}
	if (R[RES_OK] != 1) {
		fprintf(stderr, "%s (interruptible %d): the call left something behind\n", c->name, on);
		exit(1);
	}
}

int main(void)
{
	t_watchdog(170);
	atexit(t_reap_all);
	T_CHECK(pipe(ready_fd) == 0);
	res = t_raw_array('d', RES_N);
	R = shmp_array_ptr(res);
	gate = shmp_event_create(NULL);
	T_CHECK(gate);
	static const struct tcase cases[] = {
		{ "ring_put", c_ring_put, -ETIMEDOUT, 0 },
		{ "ring_put_batch", c_ring_put_batch, -ETIMEDOUT, 0 },
		{ "ring_reserve", c_ring_reserve, -ETIMEDOUT, 0 },
		{ "ring_get", c_ring_get, -ETIMEDOUT, 0 },
		{ "ring_get_batch", c_ring_get_batch, -ETIMEDOUT, 0 },
		{ "ring_peek", c_ring_peek, -ETIMEDOUT, 0 },
		{ "ring_poll", c_ring_poll, -ETIMEDOUT, 0 },
		{ "queue_put", c_queue_put, -ETIMEDOUT, 0 },
		{ "queue_get", c_queue_get, -ETIMEDOUT, 0 },
		{ "joinable_put", c_joinable_put, -ETIMEDOUT, 0 },
		{ "joinable_join", c_joinable_join, -ETIMEDOUT, 0 },
		{ "conn_send", c_pipe_send, -ETIMEDOUT, 0 },
		{ "conn_recv", c_pipe_recv, -ETIMEDOUT, 0 },
		{ "conn_poll", c_pipe_poll, 0, 0 },
		{ "process_join", c_process_join, 0, 0 },
		{ "pipeline_put", c_pl_put, -ETIMEDOUT, 0 },
		{ "pipeline_reserve", c_pl_reserve, -ETIMEDOUT, 0 },
		{ "pipeline_next", c_pl_next, -ETIMEDOUT, 0 },
		{ "pipeline_join", c_pl_join, -ETIMEDOUT, 0 },
		{ "stage_emit", c_stage_emit, 0, 1 },
		{ "stage_reserve", c_stage_reserve, 0, 1 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		for (int on = 0; on < 2; on++)
			run(&cases[i], on);
	shmp_event_set(gate);
	shmp_event_destroy(gate);
	shmp_array_destroy(res);
	T_NO_CHILDREN();
	return 0;
}
