/* Ring figures beside the transports a C programmer would otherwise use, all
 * measured in this run, quiet and loaded (bench.h): ../shared/anchors/queues.c (pipe, POSIX mq, ZeroMQ
 * ipc, ck_ring in shared memory) and limits.c (spin and futex ping-pong)
 * are reproduced here rather than quoted, because the machine is shared and
 * only ratios taken in the same run mean anything.
 *
 *   - 64-byte messages, 1 producer process -> 1 consumer process: the
 *     default MPMC ring, the ring declared single-producer/single-consumer,
 *     and both again through put_batch/get_batch;
 *   - 2 producers -> 2 consumers beside the 1 -> 1 figure (and ck's MPMC);
 *   - round trips between 2 processes over two rings, with get polled
 *     (timeout 0, retried) and blocking (spin, then futex);
 *   - 1 MiB messages written and read in place (reserve/commit,
 *     peek/release) beside the same bytes through a pipe.
 *
 * Every measurement checks what arrived (count, order, a checksum of each
 * message): a broken ring must fail here, not post a great number.
 *
 * The peers that need libraries (ZeroMQ, Concurrency Kit) are compiled in
 * with HAVE_ZMQ / HAVE_CK; without them their figures print as n/a. */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#ifdef HAVE_ZMQ
#include <zmq.h>
#endif
#ifdef HAVE_CK
#include <ck_ring.h>
#endif

#define MSG 64
/* Counts sized for ~0.1-0.3 s a run on an idle 2-core machine, so that
 * BENCH_REPS=5 stays well under a minute even when it is busy. */
/* BENCH_QUICK divides them (set in main). */
static long N_FAST = 1000000L;   /* shared-memory rings: 10-50 M msgs/s */
static long N_SLOW = 100000L;    /* pipe, mq, ZeroMQ: 0.3-3 M msgs/s */
static long N_22 = 1000000L;     /* 2 -> 2, all producers together */
#define BATCH 32
static long N_PP_SPIN = 100000L; /* ~0.15 us a round trip */
static long N_PP_RING = 50000L;  /* blocking ring: spin-fast, or futex-slow */
static long N_PP_FUTEX = 20000L; /* futex and pipe ping-pong: ~15 us */
static long N_PP_ZMQ = 2000L;    /* ZeroMQ REQ/REP: ~100 us */
#define BIG ((size_t)1 << 20)
static long N_BIG = 512L;
#define WATCHDOG_S 300   /* a child stuck this long means a lost message */
#define STOP_FROM 0xffu  /* `from` of the message that ends a consumer */
#define MAXPROC 4

/* A 64-byte message: who sent it, its number in that sender's stream, and
 * a check word over both, so a torn or stale copy is caught. */
struct msg {
	uint64_t seq;
	uint64_t from;
	char pad[MSG - 3 * sizeof(uint64_t)];
	uint64_t check;
};
_Static_assert(sizeof(struct msg) == MSG, "message is 64 bytes");

static inline uint64_t msg_check(uint64_t seq, uint64_t from)
{
	return (seq ^ from << 56) * 0x9e3779b97f4a7c15ull + 1;
}

static inline void msg_make(struct msg *m, uint64_t seq, uint64_t from)
{
	m->seq = seq;
	m->from = from;
	m->check = msg_check(seq, from);
}

/* What one consumer saw. Each sender's messages must arrive in the order
 * sent: with one consumer that is every number exactly once (the parent
 * checks count and sum); with two, each sees an increasing subsequence. */
struct rx {
	long count;
	long bad;
	long stops;
	uint64_t sum;
	uint64_t next[MAXPROC];
};

struct result {
	_Alignas(64) long count;
	long bad;
	uint64_t sum;
	double t_end; /* when this consumer had its last message */
};

/* Children wait here once set up, so that the clock starts when all are
 * ready and excludes forking and connecting. */
struct gate {
	_Alignas(64) atomic_int ready;
	_Alignas(64) atomic_int go;
	atomic_int done; /* consumers finished (ZeroMQ's producer waits for it) */
};

/* limits.c's ping-pong words. */
struct pp {
	_Alignas(64) atomic_long ping;
	_Alignas(64) atomic_long pong;
	_Alignas(64) atomic_int fa;
	_Alignas(64) atomic_int fb;
};

struct shared {
	struct gate gate;
	struct pp pp;
	struct result res[MAXPROC];
};

static struct shared *S;

static void die(const char *what)
{
	fprintf(stderr, "bench_ring: %s\n", what);
	exit(1);
}

static void rx_init(struct rx *rx)
{
	memset(rx, 0, sizeof *rx);
}

/* Check one message; returns 1 for a stop message. */
static int rx_msg(struct rx *rx, const void *p, size_t len)
{
	struct msg m;
	if (len != MSG) {
		rx->bad++;
		return 0;
	}
	memcpy(&m, p, MSG);
	if (m.from == STOP_FROM) {
		rx->stops++;
		return 1;
	}
	if (m.from >= MAXPROC || m.check != msg_check(m.seq, m.from) || m.seq < rx->next[m.from]) {
		rx->bad++;
		return 0;
	}
	rx->next[m.from] = m.seq + 1;
	rx->count++;
	rx->sum += m.seq;
	return 0;
}

static void rx_store(const struct rx *rx, int slot)
{
	S->res[slot].count = rx->count;
	S->res[slot].bad = rx->bad;
	S->res[slot].sum = rx->sum;
	S->res[slot].t_end = bench_now();
}

static void res_clear(void)
{
	memset(S->res, 0, sizeof S->res);
}

/* All `nprod` producers sent 0 .. n/nprod - 1: check that the consumers
 * between them got each exactly once. */
static void res_verify(const char *name, int ncons, long n, int nprod)
{
	long count = 0, bad = 0;
	uint64_t sum = 0, per = (uint64_t)(n / nprod);
	for (int i = 0; i < ncons; i++) {
		count += S->res[i].count;
		bad += S->res[i].bad;
		sum += S->res[i].sum;
	}
	if (bad || count != (long)per * nprod || sum != (uint64_t)nprod * (per * (per - 1) / 2)) {
		fprintf(stderr, "bench_ring: %s: received %ld of %ld, %ld bad, sum %llu\n", name, count,
			(long)per * nprod, bad, (unsigned long long)sum);
		exit(1);
	}
}

static void gate_pass(void)
{
	atomic_fetch_add(&S->gate.ready, 1);
	while (!atomic_load_explicit(&S->gate.go, memory_order_acquire))
		sched_yield();
}

/* Wait until `n` children are at the gate; a child that died before
 * reaching it would otherwise leave us waiting forever. */
static void gate_wait_ready(int n)
{
	while (atomic_load(&S->gate.ready) < n) {
		int st;
		if (waitpid(-1, &st, WNOHANG) > 0)
			die("a child died before starting");
		sched_yield();
	}
}

static pid_t spawn(void (*fn)(int, void *), int i, void *arg)
{
	/* A child that fails exits through exit(): it must not print our
	 * buffered output a second time. */
	fflush(stdout);
	pid_t p = fork();
	if (p < 0)
		die("fork failed");
	if (p == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		alarm(WATCHDOG_S);
		fn(i, arg);
		_exit(0);
	}
	return p;
}

static void reap(pid_t p, const char *name)
{
	int st;
	if (waitpid(p, &st, 0) != p || !WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "bench_ring: %s: a child failed (status %#x)\n", name, st);
		exit(1);
	}
}

/* Run fn(0..n-1) in n children; seconds from the release at the gate until
 * the last consumer had its last message (that excludes the children's
 * exit, a sizeable part of a 50 ms run), or until all have exited when no
 * consumer says. */
static double run_procs(const char *name, int n, void (*fn)(int, void *), void *arg)
{
	pid_t pids[MAXPROC];
	atomic_store(&S->gate.ready, 0);
	atomic_store(&S->gate.go, 0);
	atomic_store(&S->gate.done, 0);
	res_clear();
	for (int i = 0; i < n; i++)
		pids[i] = spawn(fn, i, arg);
	gate_wait_ready(n);
	double t = bench_now(), end = 0;
	atomic_store_explicit(&S->gate.go, 1, memory_order_release);
	for (int i = 0; i < n; i++)
		reap(pids[i], name);
	for (int i = 0; i < MAXPROC; i++)
		end = S->res[i].t_end > end ? S->res[i].t_end : end;
	return (end > 0 ? end : bench_now()) - t;
}

/* ---- shmp throughput ------------------------------------------------------ */

struct tp {
	const char *name;
	shmp_ring_t *r;
	long n;      /* messages, all producers together */
	int nprod;   /* children 0..nprod-1 produce, the rest consume */
	int batch;   /* 0: put/get; else messages per put_batch/get_batch */
};

static void ring_put_all(shmp_ring_t *r, const struct iovec *iov, unsigned k)
{
	/* put_batch waits only for the first message: go on until all are in. */
	for (unsigned done = 0; done < k;) {
		int e = shmp_ring_put_batch(r, iov + done, k - done, SHMP_FOREVER);
		if (e <= 0)
			die("put_batch failed");
		done += (unsigned)e;
	}
}

static void shmp_producer(struct tp *t, int me)
{
	long n = t->n / t->nprod;
	struct msg m[BATCH];
	struct iovec iov[BATCH];
	memset(m, 0, sizeof m);
	for (int i = 0; i < BATCH; i++)
		iov[i] = (struct iovec){ .iov_base = &m[i], .iov_len = MSG };
	gate_pass();
	if (!t->batch) {
		for (long i = 0; i < n; i++) {
			msg_make(&m[0], (uint64_t)i, (uint64_t)me);
			if (shmp_ring_put(t->r, &m[0], MSG, SHMP_FOREVER))
				die("put failed");
		}
	} else {
		for (long i = 0; i < n; i += t->batch) {
			unsigned k = (unsigned)(n - i < t->batch ? n - i : t->batch);
			for (unsigned j = 0; j < k; j++)
				msg_make(&m[j], (uint64_t)(i + j), (uint64_t)me);
			ring_put_all(t->r, iov, k);
		}
	}
	msg_make(&m[0], 0, STOP_FROM);
	if (shmp_ring_put(t->r, &m[0], MSG, SHMP_FOREVER))
		die("put failed");
}

static void shmp_consumer(struct tp *t, int me)
{
	struct rx rx;
	struct msg m[BATCH];
	struct iovec iov[BATCH];
	size_t lens[BATCH];
	int stop = 0;
	rx_init(&rx);
	for (int i = 0; i < BATCH; i++)
		iov[i] = (struct iovec){ .iov_base = &m[i], .iov_len = MSG };
	gate_pass();
	while (!stop) {
		if (!t->batch) {
			int e = shmp_ring_get(t->r, &m[0], MSG, &lens[0], SHMP_FOREVER);
			if (e)
				die("get failed");
			stop = rx_msg(&rx, &m[0], lens[0]);
		} else {
			int e = shmp_ring_get_batch(t->r, iov, lens, (unsigned)t->batch, SHMP_FOREVER);
			if (e <= 0)
				die("get_batch failed");
			for (int j = 0; j < e; j++)
				stop |= rx_msg(&rx, &m[j], lens[j]);
		}
	}
	rx_store(&rx, me);
}

static void shmp_tp_child(int i, void *a)
{
	struct tp *t = a;
	if (i < t->nprod)
		shmp_producer(t, i);
	else
		shmp_consumer(t, i - t->nprod);
}

/* Millions of messages a second, through as many consumers as producers. */
static double shmp_tp(void *a)
{
	struct tp *t = a;
	double s = run_procs(t->name, 2 * t->nprod, shmp_tp_child, t);
	res_verify(t->name, t->nprod, t->n, t->nprod);
	return t->n / s / 1e6;
}

/* ---- pipe, POSIX mq, ZeroMQ: queues.c's one-way throughput ------------- */

static int pipefd[2];

static void pipe_tp_child(int i, void *a)
{
	(void)a;
	if (i == 0) {
		struct msg m;
		memset(&m, 0, sizeof m);
		close(pipefd[0]);
		gate_pass();
		for (long k = 0; k < N_SLOW; k++) {
			msg_make(&m, (uint64_t)k, 0);
			if (write(pipefd[1], &m, MSG) != MSG)
				die("pipe write failed");
		}
		close(pipefd[1]);
		return;
	}
	/* Read in 4 KiB chunks as queues.c does; a message split across two
	 * reads is put back together. Counted, not to end of file: the parent
	 * holds the write end open until both children are done. */
	static char buf[MSG * 64 + MSG];
	size_t have = 0;
	ssize_t r;
	struct rx rx;
	rx_init(&rx);
	close(pipefd[1]);
	gate_pass();
	for (long left = N_SLOW * MSG; left > 0; left -= r) {
		r = read(pipefd[0], buf + have, left < MSG * 64 ? (size_t)left : MSG * 64);
		if (r <= 0)
			die("pipe read failed");
		have += (size_t)r;
		size_t off = 0;
		for (; have - off >= MSG; off += MSG)
			rx_msg(&rx, buf + off, MSG);
		memmove(buf, buf + off, have - off);
		have -= off;
	}
	if (have)
		rx.bad++;
	rx_store(&rx, 0);
}

static double pipe_tp(void *unused)
{
	(void)unused;
	if (pipe(pipefd))
		die("pipe failed");
	double s = run_procs("pipe", 2, pipe_tp_child, NULL);
	close(pipefd[0]);
	close(pipefd[1]);
	res_verify("pipe", 1, N_SLOW, 1);
	return N_SLOW / s / 1e6;
}

static mqd_t mq;

static void mq_tp_child(int i, void *a)
{
	(void)a;
	struct msg m;
	memset(&m, 0, sizeof m);
	gate_pass();
	if (i == 0) {
		for (long k = 0; k < N_SLOW; k++) {
			msg_make(&m, (uint64_t)k, 0);
			if (mq_send(mq, (const char *)&m, MSG, 0))
				die("mq_send failed");
		}
		return;
	}
	struct rx rx;
	rx_init(&rx);
	for (long k = 0; k < N_SLOW; k++) {
		ssize_t r = mq_receive(mq, (char *)&m, MSG, NULL);
		if (r < 0)
			die("mq_receive failed");
		rx_msg(&rx, &m, (size_t)r);
	}
	rx_store(&rx, 0);
}

/* 0 if POSIX message queues are not available (e.g. in a container). */
static double mq_tp(void *unused)
{
	(void)unused;
	char name[64];
	struct mq_attr at = { .mq_maxmsg = 10, .mq_msgsize = MSG }; /* as queues.c */
	snprintf(name, sizeof name, "/shmp_bench_ring_%d", (int)getpid());
	mq_unlink(name);
	mq = mq_open(name, O_CREAT | O_RDWR, 0600, &at);
	if (mq == (mqd_t)-1)
		return 0;
	double s = run_procs("posix mq", 2, mq_tp_child, NULL);
	mq_close(mq);
	mq_unlink(name);
	res_verify("posix mq", 1, N_SLOW, 1);
	return N_SLOW / s / 1e6;
}

#ifdef HAVE_ZMQ
static char zmq_ep[96];

static void zmq_tp_child(int i, void *a)
{
	(void)a;
	struct msg m;
	memset(&m, 0, sizeof m);
	void *ctx = zmq_ctx_new();
	if (i == 0) {
		void *s = zmq_socket(ctx, ZMQ_PUSH);
		if (!s || zmq_connect(s, zmq_ep))
			die("zmq connect failed");
		gate_pass();
		for (long k = 0; k < N_SLOW; k++) {
			msg_make(&m, (uint64_t)k, 0);
			if (zmq_send(s, &m, MSG, 0) != MSG)
				die("zmq_send failed");
		}
		/* Closing as soon as the last message is sent (as queues.c
		 * does) loses the tail now and then: seen here as 99603 of
		 * 100000 delivered and a receiver waiting forever. */
		while (!atomic_load(&S->gate.done))
			usleep(100);
		zmq_close(s);
		zmq_ctx_term(ctx);
		return;
	}
	void *s = zmq_socket(ctx, ZMQ_PULL);
	if (!s || zmq_bind(s, zmq_ep))
		die("zmq bind failed");
	struct rx rx;
	rx_init(&rx);
	gate_pass();
	for (long k = 0; k < N_SLOW; k++) {
		int r = zmq_recv(s, &m, MSG, 0);
		if (r < 0)
			die("zmq_recv failed");
		rx_msg(&rx, &m, (size_t)r);
	}
	rx_store(&rx, 0);
	atomic_store(&S->gate.done, 1);
	zmq_close(s);
	zmq_ctx_term(ctx);
}

static double zmq_tp(void *unused)
{
	(void)unused;
	snprintf(zmq_ep, sizeof zmq_ep, "ipc:///tmp/shmp_bench_ring_%d.ipc", (int)getpid());
	double s = run_procs("zmq push/pull", 2, zmq_tp_child, NULL);
	unlink(zmq_ep + strlen("ipc://"));
	res_verify("zmq push/pull", 1, N_SLOW, 1);
	return N_SLOW / s / 1e6;
}
#else
static double zmq_tp(void *unused)
{
	(void)unused;
	return 0;
}
#endif

/* ---- ck_ring in shared memory ------------------------------------------ */

#ifdef HAVE_CK
#define RSZ 4096
CK_RING_PROTOTYPE(msg, msg)

/* queues.c's layout: an SPSC ring of slot numbers; the payloads sit in a
 * slot array beside it. The array has twice the ring's slots so that a
 * producer never rewrites a slot the consumer may still be copying out
 * (queues.c's RSZ slots allow that when the ring is full); the cost per
 * message is the same. The MPMC ring for 2 -> 2 holds the 64-byte
 * messages themselves: with two consumers a slot number could be reused
 * while a preempted consumer still reads it. */
struct ckshm {
	ck_ring_t ring;
	ck_ring_buffer_t buf[RSZ];
	struct msg slots[2 * RSZ];
	ck_ring_t mring;
	struct msg mbuf[RSZ];
};
static struct ckshm *CK;

static void ck_spsc_child(int i, void *a)
{
	(void)a;
	struct msg m;
	memset(&m, 0, sizeof m);
	gate_pass();
	if (i == 0) {
		for (long k = 0; k < N_FAST; k++) {
			long slot = k & (2 * RSZ - 1);
			msg_make(&m, (uint64_t)k, 0);
			memcpy(&CK->slots[slot], &m, MSG);
			while (!ck_ring_enqueue_spsc(&CK->ring, CK->buf, (void *)slot))
				;
		}
		return;
	}
	struct rx rx;
	rx_init(&rx);
	for (long k = 0; k < N_FAST; k++) {
		void *v;
		while (!ck_ring_dequeue_spsc(&CK->ring, CK->buf, &v))
			;
		memcpy(&m, &CK->slots[(long)v], MSG);
		rx_msg(&rx, &m, MSG);
	}
	rx_store(&rx, 0);
}

static double ck_spsc_tp(void *unused)
{
	(void)unused;
	ck_ring_init(&CK->ring, RSZ);
	double s = run_procs("ck_ring spsc", 2, ck_spsc_child, NULL);
	res_verify("ck_ring spsc", 1, N_FAST, 1);
	return N_FAST / s / 1e6;
}

/* Four spinning processes on two cores: without a yield, one that waits on
 * a full or empty ring can hold a core for a whole time slice while the
 * process it waits for is not running. */
static inline void ck_backoff(unsigned *k)
{
	if (++*k & 127) {
#if defined(__x86_64__) || defined(__i386__)
		__builtin_ia32_pause();
#endif
	} else {
		sched_yield();
	}
}

static void ck_mpmc_child(int i, void *a)
{
	(void)a;
	struct msg m;
	unsigned k = 0;
	memset(&m, 0, sizeof m);
	gate_pass();
	if (i < 2) {
		for (long s = 0; s < N_22 / 2; s++) {
			msg_make(&m, (uint64_t)s, (uint64_t)i);
			while (!ck_ring_enqueue_mpmc_msg(&CK->mring, CK->mbuf, &m))
				ck_backoff(&k);
		}
		msg_make(&m, 0, STOP_FROM);
		while (!ck_ring_enqueue_mpmc_msg(&CK->mring, CK->mbuf, &m))
			ck_backoff(&k);
		return;
	}
	struct rx rx;
	rx_init(&rx);
	for (int stop = 0; !stop;) {
		while (!ck_ring_dequeue_mpmc_msg(&CK->mring, CK->mbuf, &m))
			ck_backoff(&k);
		stop = rx_msg(&rx, &m, MSG);
	}
	rx_store(&rx, i - 2);
}

static double ck_mpmc_tp(void *unused)
{
	(void)unused;
	ck_ring_init(&CK->mring, RSZ);
	double s = run_procs("ck_ring mpmc", 4, ck_mpmc_child, NULL);
	res_verify("ck_ring mpmc", 2, N_22, 2);
	return N_22 / s / 1e6;
}
#else
static double ck_spsc_tp(void *unused)
{
	(void)unused;
	return 0;
}
static double ck_mpmc_tp(void *unused)
{
	(void)unused;
	return 0;
}
#endif

/* ---- ping-pong round trips ----------------------------------------------- */

/* Round trips the parent made: n, unless a spinning one stopped early on
 * its time budget (bench_budget: loaded, each trip may wait a time slice
 * for the other side to be run). */
static long pp_done;

/* The child answers; the parent times n round trips and returns seconds. */
static double pingpong(const char *name, void (*child)(int, void *), double (*parent)(long, void *),
		       long n, void *arg)
{
	pp_done = n;
	atomic_store(&S->gate.ready, 0);
	atomic_store(&S->gate.go, 0);
	res_clear();
	pid_t c = spawn(child, (int)n, arg);
	gate_wait_ready(1);
	atomic_store_explicit(&S->gate.go, 1, memory_order_release);
	double t = parent(n, arg);
	reap(c, name);
	return t / (double)pp_done * 1e9;
}

/* limits.c: spin on a cache line each way, the floor of a handoff. */
static void spin_child(int n, void *a)
{
	(void)a;
	gate_pass();
	for (long i = 1; i <= n; i++) {
		long v;
		while ((v = atomic_load_explicit(&S->pp.ping, memory_order_acquire)) != i)
			if (v == -1)
				return;
		atomic_store_explicit(&S->pp.pong, i, memory_order_release);
	}
}

static double spin_parent(long n, void *a)
{
	(void)a;
	double t = bench_now(), end = t + bench_budget();
	for (long i = 1; i <= n; i++) {
		atomic_store_explicit(&S->pp.ping, i, memory_order_release);
		while (atomic_load_explicit(&S->pp.pong, memory_order_acquire) != i)
			;
		if (i % 64 == 0 && i < n && bench_now() > end) {
			pp_done = i;
			atomic_store_explicit(&S->pp.ping, -1, memory_order_release);
			break;
		}
	}
	return bench_now() - t;
}

static double spin_pp(void *unused)
{
	(void)unused;
	atomic_store(&S->pp.ping, 0);
	atomic_store(&S->pp.pong, 0);
	return pingpong("spin ping-pong", spin_child, spin_parent, N_PP_SPIN, NULL);
}

static long futex(atomic_int *u, int op, int v)
{
	return syscall(SYS_futex, u, op, v, NULL, NULL, 0);
}

/* limits.c: each side sleeps until woken, the blocking handoff. */
static void futex_child(int n, void *a)
{
	(void)a;
	gate_pass();
	for (long i = 0; i < n; i++) {
		while (atomic_exchange(&S->pp.fa, 0) == 0)
			futex(&S->pp.fa, FUTEX_WAIT, 0);
		atomic_store(&S->pp.fb, 1);
		futex(&S->pp.fb, FUTEX_WAKE, 1);
	}
}

static double futex_parent(long n, void *a)
{
	(void)a;
	double t = bench_now();
	for (long i = 0; i < n; i++) {
		atomic_store(&S->pp.fa, 1);
		futex(&S->pp.fa, FUTEX_WAKE, 1);
		while (atomic_exchange(&S->pp.fb, 0) == 0)
			futex(&S->pp.fb, FUTEX_WAIT, 0);
	}
	return bench_now() - t;
}

static double futex_pp(void *unused)
{
	(void)unused;
	atomic_store(&S->pp.fa, 0);
	atomic_store(&S->pp.fb, 0);
	return pingpong("futex ping-pong", futex_child, futex_parent, N_PP_FUTEX, NULL);
}

/* limits.c: one byte each way through two pipes. */
static int pp_a[2], pp_b[2];

static void pipe_pp_child(int n, void *a)
{
	(void)a;
	char ch;
	gate_pass();
	for (long i = 0; i < n; i++) {
		if (read(pp_a[0], &ch, 1) != 1 || write(pp_b[1], &ch, 1) != 1)
			die("pipe ping-pong failed");
	}
}

static double pipe_pp_parent(long n, void *a)
{
	(void)a;
	double t = bench_now();
	for (long i = 0; i < n; i++) {
		char ch = (char)i, back;
		if (write(pp_a[1], &ch, 1) != 1 || read(pp_b[0], &back, 1) != 1 || back != ch)
			die("pipe ping-pong failed");
	}
	return bench_now() - t;
}

static double pipe_pp(void *unused)
{
	(void)unused;
	if (pipe(pp_a) || pipe(pp_b))
		die("pipe failed");
	double r = pingpong("pipe ping-pong", pipe_pp_child, pipe_pp_parent, N_PP_FUTEX, NULL);
	close(pp_a[0]);
	close(pp_a[1]);
	close(pp_b[0]);
	close(pp_b[1]);
	return r;
}

/* shmp: the parent puts i on `to`, the child echoes it back on `from`. A
 * get with timeout 0 retried in a loop is a pure spin; SHMP_FOREVER spins
 * a bounded while, then sleeps on the ring's futex. */
struct shmp_pp {
	shmp_ring_t *to, *from;
	double timeout;
	long n;
};

static int pp_get(shmp_ring_t *r, uint64_t *v, double timeout)
{
	size_t len;
	int e;
	while ((e = shmp_ring_get(r, v, sizeof *v, &len, timeout)) == -ETIMEDOUT)
		;
	return e || len != sizeof *v ? -1 : 0;
}

static void shmp_pp_child(int n, void *a)
{
	struct shmp_pp *p = a;
	gate_pass();
	for (long i = 1; i <= n; i++) {
		uint64_t v;
		if (pp_get(p->to, &v, p->timeout))
			die("ring ping-pong: child get failed");
		if (v == 0)
			return; /* the parent's time budget ran out */
		if (v != (uint64_t)i ||
		    shmp_ring_put(p->from, &v, sizeof v, SHMP_FOREVER))
			die("ring ping-pong: child got a wrong message");
	}
}

static double shmp_pp_parent(long n, void *a)
{
	struct shmp_pp *p = a;
	double t = bench_now(), end = t + bench_budget();
	for (uint64_t i = 1; i <= (uint64_t)n; i++) {
		uint64_t v;
		if (shmp_ring_put(p->to, &i, sizeof i, SHMP_FOREVER) || pp_get(p->from, &v, p->timeout) ||
		    v != i)
			die("ring ping-pong: parent got a wrong message");
		if (p->timeout == 0 && i % 64 == 0 && i < (uint64_t)n && bench_now() > end) {
			uint64_t stop = 0;
			pp_done = (long)i;
			if (shmp_ring_put(p->to, &stop, sizeof stop, SHMP_FOREVER))
				die("ring ping-pong: put failed");
			break;
		}
	}
	return bench_now() - t;
}

static double shmp_pp(void *a)
{
	struct shmp_pp *p = a;
	return pingpong("ring ping-pong", shmp_pp_child, shmp_pp_parent, p->n, p);
}

#ifdef HAVE_ZMQ
/* queues.c: REQ/REP over ipc://, one warm-up round trip untimed. */
static void zmq_rr_child(int n, void *a)
{
	(void)a;
	void *ctx = zmq_ctx_new();
	void *s = zmq_socket(ctx, ZMQ_REP);
	if (!s || zmq_bind(s, zmq_ep))
		die("zmq bind failed");
	gate_pass();
	char b[MSG];
	for (long i = 0; i < n + 1; i++) {
		if (zmq_recv(s, b, MSG, 0) != MSG || zmq_send(s, b, MSG, 0) != MSG)
			die("zmq rep failed");
	}
	zmq_close(s);
	zmq_ctx_term(ctx);
}

static double zmq_rr_parent(long n, void *a)
{
	(void)a;
	void *ctx = zmq_ctx_new();
	void *s = zmq_socket(ctx, ZMQ_REQ);
	struct msg m, back;
	memset(&m, 0, sizeof m);
	if (!s || zmq_connect(s, zmq_ep))
		die("zmq connect failed");
	if (zmq_send(s, &m, MSG, 0) != MSG || zmq_recv(s, &back, MSG, 0) != MSG)
		die("zmq req failed");
	double t = bench_now();
	for (long i = 0; i < n; i++) {
		msg_make(&m, (uint64_t)i, 0);
		if (zmq_send(s, &m, MSG, 0) != MSG || zmq_recv(s, &back, MSG, 0) != MSG ||
		    back.seq != (uint64_t)i || back.check != m.check)
			die("zmq req/rep got a wrong message");
	}
	t = bench_now() - t;
	zmq_close(s);
	zmq_ctx_term(ctx);
	return t;
}

static double zmq_rr(void *unused)
{
	(void)unused;
	snprintf(zmq_ep, sizeof zmq_ep, "ipc:///tmp/shmp_bench_ring_rr_%d.ipc", (int)getpid());
	double r = pingpong("zmq req/rep", zmq_rr_child, zmq_rr_parent, N_PP_ZMQ, NULL);
	unlink(zmq_ep + strlen("ipc://"));
	return r;
}
#else
static double zmq_rr(void *unused)
{
	(void)unused;
	return 0;
}
#endif

/* ---- 1 MiB messages ------------------------------------------------------ */

/* The payload of message k: its number, then bytes of one value. Writing
 * and summing it is the work both sides do per message, in place with the
 * ring, through a private buffer with the pipe. */
static inline uint64_t big_pattern(uint64_t k)
{
	return ((k * 13 + 1) & 0xff) * 0x0101010101010101ull;
}

static void big_fill(void *p, uint64_t k)
{
	memset(p, (int)(big_pattern(k) & 0xff), BIG);
	memcpy(p, &k, sizeof k);
}

/* 0 if the message is message k, whole. */
static int big_check(const void *p, size_t len, uint64_t k)
{
	const uint64_t *w = p;
	uint64_t sum = 0;
	if (len != BIG || w[0] != k)
		return -1;
	for (size_t i = 1; i < BIG / sizeof *w; i++)
		sum += w[i];
	return sum == (BIG / sizeof *w - 1) * big_pattern(k) ? 0 : -1;
}

static void shmp_big_child(int i, void *a)
{
	shmp_ring_t *r = a;
	struct shmp_ring_ticket t;
	gate_pass();
	for (long k = 0; k < N_BIG; k++) {
		if (i == 0) {
			if (shmp_ring_reserve(r, BIG, &t, SHMP_FOREVER))
				die("reserve failed");
			big_fill(t.data, (uint64_t)k);
			if (shmp_ring_commit(r, &t, BIG))
				die("commit failed");
		} else {
			if (shmp_ring_peek(r, &t, SHMP_FOREVER))
				die("peek failed");
			if (big_check(t.data, t.len, (uint64_t)k))
				die("1 MiB message through the ring arrived damaged");
			if (shmp_ring_release(r, &t))
				die("release failed");
		}
	}
	if (i == 1)
		S->res[0].t_end = bench_now();
}

static double shmp_big(void *r)
{
	double s = run_procs("ring 1 MiB", 2, shmp_big_child, r);
	return N_BIG * (double)BIG / s / (1 << 30);
}

static void pipe_big_child(int i, void *a)
{
	(void)a;
	char *buf = malloc(BIG);
	if (!buf)
		die("out of memory");
	close(pipefd[i == 0 ? 0 : 1]);
	gate_pass();
	for (long k = 0; k < N_BIG; k++) {
		size_t done = 0;
		if (i == 0) {
			big_fill(buf, (uint64_t)k);
			while (done < BIG) {
				ssize_t w = write(pipefd[1], buf + done, BIG - done);
				if (w <= 0)
					die("pipe write failed");
				done += (size_t)w;
			}
		} else {
			while (done < BIG) {
				ssize_t r = read(pipefd[0], buf + done, BIG - done);
				if (r <= 0)
					die("pipe read failed");
				done += (size_t)r;
			}
			if (big_check(buf, BIG, (uint64_t)k))
				die("1 MiB message through the pipe arrived damaged");
		}
	}
	if (i == 1)
		S->res[0].t_end = bench_now();
	free(buf);
}

static double pipe_big(void *unused)
{
	(void)unused;
	if (pipe(pipefd))
		die("pipe failed");
	double s = run_procs("pipe 1 MiB", 2, pipe_big_child, NULL);
	close(pipefd[0]);
	close(pipefd[1]);
	return N_BIG * (double)BIG / s / (1 << 30);
}

/* ---- main ------------------------------------------------------------------ */

/* One figure: what measures it. */
struct meas {
	double (*fn)(void *);
	void *arg;
};

static double meas_call(void *m, int k, double *extra)
{
	(void)k, (void)extra;
	struct meas *x = m;
	return x->fn(x->arg);
}

/* Run a group of figures in turns, quiet then loaded (bench_run). */
static void run_group(struct meas *m, int k, struct bench_var *out)
{
	for (int j = 0; j < k; j++)
		out[j] = BENCH_VAR(meas_call, &m[j], 0);
	bench_run(out, k);
}

static shmp_ring_t *ring(unsigned flags, unsigned capacity, shmp_segment_t *seg)
{
	struct shmp_ring_opts o = { .sz = sizeof o, .flags = flags, .capacity = capacity, .segment = seg };
	shmp_ring_t *r = shmp_ring_create(&o);
	if (!r)
		die("shmp_ring_create failed");
	return r;
}

#define F(v) bench_fig(&(v))

int main(void)
{
	const unsigned spsc = SHMP_RING_SINGLE_PRODUCER | SHMP_RING_SINGLE_CONSUMER;
	if (bench_quick()) {
		N_FAST = N_22 = 20000;
		N_SLOW = 5000;
		N_PP_SPIN = N_PP_RING = 2000;
		N_PP_FUTEX = 500;
		N_PP_ZMQ = 50;
		N_BIG = 16;
	}
	S = bench_shm(sizeof *S);
#ifdef HAVE_CK
	CK = bench_shm(sizeof *CK);
#endif
	/* A reader gone early must fail the write, not kill us. */
	signal(SIGPIPE, SIG_IGN);
	shmp_ring_t *mpmc = ring(0, 0, NULL), *sp = ring(spsc, 0, NULL);
	bench_header("bench_ring", "rings beside pipes, POSIX mq, ZeroMQ, ck_ring, futex and spin ping-pongs");

	struct tp t11 = { "ring 1->1 mpmc", mpmc, N_FAST, 1, 0 };
	struct tp t11s = { "ring 1->1 spsc", sp, N_FAST, 1, 0 };
	struct tp t11b = { "ring 1->1 mpmc batch", mpmc, N_FAST, 1, BATCH };
	struct tp t11sb = { "ring 1->1 spsc batch", sp, N_FAST, 1, BATCH };
	struct tp t22 = { "ring 2->2 mpmc", mpmc, N_22, 2, 0 };
	enum { T_M11, T_S11, T_M11B, T_S11B, T_M22, T_CK, T_CK22, T_ZQ, T_PIPE, T_MQ, T_N };
	struct meas tp[T_N] = {
		[T_M11] = { .fn = shmp_tp, .arg = &t11 },
		[T_S11] = { .fn = shmp_tp, .arg = &t11s },
		[T_M11B] = { .fn = shmp_tp, .arg = &t11b },
		[T_S11B] = { .fn = shmp_tp, .arg = &t11sb },
		[T_M22] = { .fn = shmp_tp, .arg = &t22 },
		[T_CK] = { .fn = ck_spsc_tp },
		[T_CK22] = { .fn = ck_mpmc_tp },
		[T_ZQ] = { .fn = zmq_tp },
		[T_PIPE] = { .fn = pipe_tp },
		[T_MQ] = { .fn = mq_tp },
	};
	struct bench_var vt[T_N];
	run_group(tp, T_N, vt);
	bench_section("64-byte messages between processes (M msgs/s, higher is better)");
	bench_line("64B 1->1 mpmc", "Mmsg/s", F(vt[T_M11]), "ck_ring spsc in shm", F(vt[T_CK]), ">= 3");
	bench_line("64B 1->1 mpmc", "Mmsg/s", F(vt[T_M11]), "ZeroMQ ipc push/pull", F(vt[T_ZQ]), ">= 15");
	bench_line("64B 1->1 mpmc", "Mmsg/s", F(vt[T_M11]), "pipe", F(vt[T_PIPE]), ">= 45");
	bench_line("64B 1->1 mpmc", "Mmsg/s", F(vt[T_M11]), "POSIX mq", F(vt[T_MQ]), "info");
	bench_line("64B 1->1 spsc", "Mmsg/s", F(vt[T_S11]), "ck_ring spsc in shm", F(vt[T_CK]), ">= 3");
	bench_line("64B 1->1 mpmc batch 32", "Mmsg/s", F(vt[T_M11B]), "ck_ring spsc in shm", F(vt[T_CK]), ">= 3");
	bench_line("64B 1->1 spsc batch 32", "Mmsg/s", F(vt[T_S11B]), "ck_ring spsc in shm", F(vt[T_CK]), ">= 3");
	bench_line("64B 2->2 mpmc", "Mmsg/s", F(vt[T_M22]), "shmp 1->1 mpmc, same run", F(vt[T_M11]), "info");
	bench_line("64B 2->2 mpmc", "Mmsg/s", F(vt[T_M22]), "ck_ring mpmc 2->2 in shm", F(vt[T_CK22]), ">= 1");

	struct shmp_pp spin = { ring(0, 0, NULL), ring(0, 0, NULL), 0, N_PP_SPIN };
	struct shmp_pp block = { spin.to, spin.from, SHMP_FOREVER, N_PP_RING };
	struct shmp_pp spin_sp = { ring(spsc, 0, NULL), ring(spsc, 0, NULL), 0, N_PP_SPIN };
	enum { P_RS, P_RSS, P_RB, P_FS, P_FF, P_FP, P_FZ, P_N };
	struct meas pp[P_N] = {
		[P_RS] = { .fn = shmp_pp, .arg = &spin },
		[P_RSS] = { .fn = shmp_pp, .arg = &spin_sp },
		[P_RB] = { .fn = shmp_pp, .arg = &block },
		[P_FS] = { .fn = spin_pp },
		[P_FF] = { .fn = futex_pp },
		[P_FP] = { .fn = pipe_pp },
		[P_FZ] = { .fn = zmq_rr },
	};
	struct bench_var vp[P_N];
	run_group(pp, P_N, vp);
	bench_section("round trips between 2 processes (ns, lower is better)");
	bench_line("rtt spin (get timeout 0) mpmc", "ns", F(vp[P_RS]), "spin ping-pong (floor)", F(vp[P_FS]), "<= 2.0");
	bench_line("rtt spin (get timeout 0) spsc", "ns", F(vp[P_RSS]), "spin ping-pong (floor)", F(vp[P_FS]),
		   "<= 2.0");
	bench_line("rtt blocking (SHMP_FOREVER)", "ns", F(vp[P_RB]), "raw futex ping-pong", F(vp[P_FF]), "<= 1.1");
	bench_line("rtt blocking (SHMP_FOREVER)", "ns", F(vp[P_RB]), "spin ping-pong (floor)", F(vp[P_FS]), "<= 2.0");
	bench_line("rtt blocking (SHMP_FOREVER)", "ns", F(vp[P_RB]), "ZeroMQ ipc REQ/REP", F(vp[P_FZ]), "info");
	bench_line("rtt blocking (SHMP_FOREVER)", "ns", F(vp[P_RB]), "pipe ping-pong", F(vp[P_FP]), "info");

	/* Up to 8 messages of 1 MiB in flight: the segment needs room for
	 * them, and a put finding it full fails rather than waits. */
	shmp_segment_t *seg = shmp_segment_create(NULL, (size_t)32 << 20, NULL);
	if (!seg)
		die("shmp_segment_create failed");
	shmp_ring_t *big = ring(0, 8, seg);
	struct meas mb[2] = { { .fn = shmp_big, .arg = big }, { .fn = pipe_big } };
	struct bench_var vb[2];
	run_group(mb, 2, vb);
	bench_section("1 MiB messages written and read in place (GiB/s, higher is better)");
	bench_line("1MiB reserve/commit+peek/release", "GiB/s", F(vb[0]), "pipe write/read loops", F(vb[1]), ">= 1");

	shmp_ring_destroy(big);
	shmp_segment_destroy(seg);
	shmp_ring_destroy(spin.to);
	shmp_ring_destroy(spin.from);
	shmp_ring_destroy(spin_sp.to);
	shmp_ring_destroy(spin_sp.from);
	shmp_ring_destroy(mpmc);
	shmp_ring_destroy(sp);
	return 0;
}
