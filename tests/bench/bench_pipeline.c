/* Pipeline figures beside the same topology built the ways a C programmer
 * would otherwise build it, all measured in this run, quiet and loaded
 * (bench.h):
 *
 *   source (this process) -> 1 forwarding stage (1 worker process) -> sink
 *   (this process): two hops, for 64-byte and 64 KiB messages, over
 *
 *   - shmp, sleeping stages (the default: a stage waits on its ring's futex);
 *   - shmp, spinning stages (opts.spin = 1: the stages and the sink's
 *     next() spin, adaptively and boundedly, before they sleep);
 *   - pipes: a forked child reading framed messages (a 4-byte length, then
 *     the payload) from one pipe and writing each to another, buffered
 *     reads, one write per message — what `a | b | c` would do;
 *   - ZeroMQ ipc: PUSH -> PULL in a forked child that forwards each message
 *     on a PUSH -> PULL back (optional: HAVE_ZMQ, else n/a).
 *
 * Latency: one message in flight (put, next, done), timed from before the
 * put to after next returns: both hops; per hop is that / 2. p50, p99 and
 * p99.9 of each run, medians over the runs. shmp's own histogram (commit ->
 * take) is printed beside for the record.
 * Throughput: a producer thread puts as fast as it can while the main
 * thread takes; from the first put to the last take.
 * Both stop early after a time budget (bench_budget() x 2): loaded, a
 * spinning stage can wait a time slice per message for its peer to run.
 * Beside the 64 KiB hop: the time memcpy takes for 64 KiB here (hot
 * buffers, median of many), since the goal is "<= 1 us + the copy".
 *
 * Every message is checked at the sink (length, sequence number at both
 * ends, and all its bytes for 64 B and every 64th 64 KiB message): a broken
 * pipeline must fail here, not post a great number. Transports take turns
 * within each repetition (the load on a shared machine drifts).
 * BENCH_PIPELINE_SIZE=64 (or 65536) measures that size only. */
#include "bench.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <sys/prctl.h>
#ifdef HAVE_ZMQ
#include <zmq.h>
#endif

#define SMALL 64
#define BIG ((size_t)64 << 10)
#define WARMUP 500
#define WATCHDOG_S 900 /* the whole run; a child stuck this long means a lost message */

enum { K_SLEEP, K_SPIN, K_PIPE, K_ZMQ, K_MEMCPY, K_N };
static const char *const kname[K_N] = {
	"shmp, sleeping stages", "shmp, spinning stages", "pipes (fork, framed r/w)", "ZeroMQ ipc PUSH/PULL",
	"memcpy",
};

/* Messages per run, sized for 0.1-0.5 s each on a busy 2-core machine;
 * BENCH_QUICK divides them by 100. */
static long n_lat(int k, size_t size)
{
	long n;
	if (size == SMALL)
		n = k == K_SPIN ? 50000 : 10000;
	else
		n = k == K_SPIN ? 20000 : 4000;
	return bench_quick() ? n / 100 : n;
}

static long n_tp(int k, size_t size)
{
	int fast = k == K_SLEEP || k == K_SPIN;
	long n;
	if (size == SMALL)
		n = fast ? 500000 : 100000;
	else
		n = fast ? 20000 : 5000;
	return bench_quick() ? n / 100 : n;
}

static int warmup(void)
{
	return bench_quick() ? 20 : WARMUP;
}

static void die(const char *what)
{
	fprintf(stderr, "bench_pipeline: %s\n", what);
	exit(1);
}

static inline uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* ---- messages ------------------------------------------------------------ */

/* The payload of message `seq`: a fixed random block with seq stamped in
 * its first and last 8 bytes. */
static unsigned char *g_ref; /* BIG bytes */

static void msg_make(unsigned char *p, size_t size, uint64_t seq)
{
	memcpy(p + 8, g_ref + 8, size - 16);
	memcpy(p, &seq, 8);
	memcpy(p + size - 8, &seq, 8);
}

/* 0 if p is message `seq`. The middle bytes are compared for every small
 * message and every 64th big one, so the check costs the sink about what
 * a real consumer's first look would. */
static int msg_ok(const void *p, size_t len, size_t size, uint64_t seq)
{
	uint64_t a, b;
	if (len != size)
		return -1;
	memcpy(&a, p, 8);
	memcpy(&b, (const char *)p + size - 8, 8);
	if (a != seq || b != seq)
		return -1;
	if ((size <= 256 || seq % 64 == 0) && memcmp((const char *)p + 8, g_ref + 8, size - 16))
		return -1;
	return 0;
}

/* ---- a buffered reader of framed messages (pipes) ----------------------- */

struct rbuf {
	int fd;
	char *b;
	size_t cap, lo, hi;
};

static void rb_init(struct rbuf *r, int fd, size_t cap)
{
	r->fd = fd;
	r->cap = cap;
	r->lo = r->hi = 0;
	r->b = malloc(cap);
	if (!r->b)
		die("out of memory");
}

/* At least n bytes at b + lo: 0, or -1 at end of file. */
static int rb_need(struct rbuf *r, size_t n)
{
	if (r->cap - r->lo < n) {
		memmove(r->b, r->b + r->lo, r->hi - r->lo);
		r->hi -= r->lo;
		r->lo = 0;
	}
	while (r->hi - r->lo < n) {
		ssize_t k = read(r->fd, r->b + r->hi, r->cap - r->hi);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		r->hi += (size_t)k;
	}
	return 0;
}

/* The next frame's payload, or NULL at end of file. Valid until rb_next. */
static const char *rb_frame(struct rbuf *r, uint32_t *len)
{
	if (rb_need(r, 4))
		return NULL;
	memcpy(len, r->b + r->lo, 4);
	if (*len > r->cap - 4 || rb_need(r, 4 + (size_t)*len))
		return NULL;
	return r->b + r->lo + 4;
}

static void rb_next(struct rbuf *r, uint32_t len)
{
	r->lo += 4 + (size_t)len;
}

static void write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t w = write(fd, c, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			die("pipe write failed");
		c += w;
		n -= (size_t)w;
	}
}

/* ---- one pipeline, whatever it is built on ------------------------------ */

struct conn {
	int kind;
	size_t size;
	uint64_t sent, taken; /* sequence numbers */
	unsigned char *out;   /* the sender's message: 4-byte length, payload */
	/* shmp */
	shmp_pipeline_t *pl;
	/* pipes */
	pid_t child;
	int to_fd, from_fd;
	struct rbuf rd;
	uint32_t held;
	/* ZeroMQ */
	void *zctx, *zpush, *zpull;
	char ep_in[96], ep_out[96];
#ifdef HAVE_ZMQ
	zmq_msg_t zm;
#endif
};

static int fwd(const struct shmp_msg *in, shmp_stage_ctx_t *ctx, void *arg)
{
	(void)arg;
	return shmp_stage_emit(ctx, in->data, in->len);
}

static void shmp_open(struct conn *c)
{
	struct shmp_pipeline_opts o = { .sz = sizeof o, .spin = c->kind == K_SPIN };
	c->pl = shmp_pipeline_create(&o);
	if (!c->pl)
		die("shmp_pipeline_create failed");
	if (shmp_pipeline_add_stage(c->pl, "forward", fwd, NULL, 1) != 1 || shmp_pipeline_start(c->pl))
		die("shmp_pipeline_add_stage/start failed");
}

/* The pipe pipeline's stage: forward each frame as it comes. */
static void pipe_child(int in, int out)
{
	struct rbuf r;
	uint32_t len;
	const char *p;
	rb_init(&r, in, 4 * (BIG + 4));
	while ((p = rb_frame(&r, &len))) {
		write_all(out, p - 4, 4 + (size_t)len);
		rb_next(&r, len);
	}
	_exit(0);
}

static pid_t fork_child(void)
{
	fflush(NULL);
	pid_t p = fork();
	if (p < 0)
		die("fork failed");
	if (p == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		alarm(WATCHDOG_S);
	}
	return p;
}

static void pipe_open(struct conn *c)
{
	int a[2], b[2];
	if (pipe(a) || pipe(b))
		die("pipe failed");
	c->child = fork_child();
	if (c->child == 0) {
		close(a[1]);
		close(b[0]);
		pipe_child(a[0], b[1]);
	}
	close(a[0]);
	close(b[1]);
	c->to_fd = a[1];
	c->from_fd = b[0];
	rb_init(&c->rd, c->from_fd, 4 * (BIG + 4));
}

#ifdef HAVE_ZMQ
static void zmq_child(struct conn *c)
{
	void *ctx = zmq_ctx_new();
	void *in = zmq_socket(ctx, ZMQ_PULL), *out = zmq_socket(ctx, ZMQ_PUSH);
	if (!in || !out || zmq_bind(in, c->ep_in) || zmq_connect(out, c->ep_out))
		die("zmq child: bind/connect failed");
	for (;;) {
		zmq_msg_t m;
		zmq_msg_init(&m);
		if (zmq_msg_recv(&m, in, 0) < 0)
			die("zmq child: recv failed");
		if (zmq_msg_size(&m) == 0) /* the end */
			break;
		if (zmq_msg_send(&m, out, 0) < 0) /* passes the message on, no copy */
			die("zmq child: send failed");
	}
	zmq_close(in);
	zmq_close(out);
	zmq_ctx_term(ctx);
	_exit(0);
}

static void zmq_open(struct conn *c)
{
	static int k;
	snprintf(c->ep_in, sizeof c->ep_in, "ipc:///tmp/shmp_bench_pl_%d_%d_in.ipc", (int)getpid(), k);
	snprintf(c->ep_out, sizeof c->ep_out, "ipc:///tmp/shmp_bench_pl_%d_%d_out.ipc", (int)getpid(), k++);
	/* No ZeroMQ context exists across the fork. */
	c->child = fork_child();
	if (c->child == 0)
		zmq_child(c);
	int linger = 1000;
	c->zctx = zmq_ctx_new();
	c->zpush = zmq_socket(c->zctx, ZMQ_PUSH);
	c->zpull = zmq_socket(c->zctx, ZMQ_PULL);
	if (!c->zpush || !c->zpull || zmq_bind(c->zpull, c->ep_out) || zmq_connect(c->zpush, c->ep_in))
		die("zmq bind/connect failed");
	zmq_setsockopt(c->zpush, ZMQ_LINGER, &linger, sizeof linger);
}
#endif

static void conn_open(struct conn *c, int kind, size_t size)
{
	memset(c, 0, sizeof *c);
	c->kind = kind;
	c->size = size;
	c->out = malloc(4 + size);
	if (!c->out)
		die("out of memory");
	uint32_t l = (uint32_t)size;
	memcpy(c->out, &l, 4);
	switch (kind) {
	case K_SLEEP:
	case K_SPIN: shmp_open(c); break;
	case K_PIPE: pipe_open(c); break;
#ifdef HAVE_ZMQ
	case K_ZMQ: zmq_open(c); break;
#endif
	default: die("no such transport");
	}
}

/* The source: send the next message. */
static void conn_send(struct conn *c)
{
	unsigned char *p = c->out + 4;
	msg_make(p, c->size, c->sent++);
	switch (c->kind) {
	case K_SLEEP:
	case K_SPIN:
		if (shmp_pipeline_put(c->pl, p, c->size, 0, SHMP_FOREVER))
			die("shmp_pipeline_put failed");
		break;
	case K_PIPE: write_all(c->to_fd, c->out, 4 + c->size); break;
#ifdef HAVE_ZMQ
	case K_ZMQ:
		if (zmq_send(c->zpush, p, c->size, 0) != (int)c->size)
			die("zmq_send failed");
		break;
#endif
	}
}

static int shmp_take(struct conn *c, struct shmp_msg *m)
{
	/* Spinning or not, next() waits as the pipeline's options say: with
	 * opts.spin it spins before it sleeps, as the stages do. */
	return shmp_pipeline_next(c->pl, m, SHMP_FOREVER);
}

/* The sink: take the next message, check it, give it back. */
static void conn_take(struct conn *c)
{
	const void *p = NULL;
	size_t len = 0;
	switch (c->kind) {
	case K_SLEEP:
	case K_SPIN: {
		struct shmp_msg m;
		int e = shmp_take(c, &m);
		if (e) {
			fprintf(stderr, "bench_pipeline: next: %s\n", shmp_strerror(e));
			exit(1);
		}
		p = m.data;
		len = m.len;
		break;
	}
	case K_PIPE: {
		uint32_t l;
		if (!(p = rb_frame(&c->rd, &l)))
			die("pipe pipeline ended early");
		len = l;
		c->held = l;
		break;
	}
#ifdef HAVE_ZMQ
	case K_ZMQ:
		zmq_msg_init(&c->zm);
		if (zmq_msg_recv(&c->zm, c->zpull, 0) < 0)
			die("zmq_msg_recv failed");
		p = zmq_msg_data(&c->zm);
		len = zmq_msg_size(&c->zm);
		break;
#endif
	}
	if (msg_ok(p, len, c->size, c->taken++)) {
		fprintf(stderr, "bench_pipeline: %s: message %llu arrived wrong (%zu bytes)\n", kname[c->kind],
			(unsigned long long)c->taken - 1, len);
		exit(1);
	}
	switch (c->kind) {
	case K_SLEEP:
	case K_SPIN:
		if (shmp_pipeline_done(c->pl))
			die("shmp_pipeline_done failed");
		break;
	case K_PIPE: rb_next(&c->rd, c->held); break;
#ifdef HAVE_ZMQ
	case K_ZMQ: zmq_msg_close(&c->zm); break;
#endif
	}
}

static void reap(pid_t p, const char *name)
{
	int st;
	if (waitpid(p, &st, 0) != p || !WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "bench_pipeline: %s: the child failed (status %#x)\n", name, st);
		exit(1);
	}
}

/* End of input; everything sent must have been taken. */
static void conn_close(struct conn *c)
{
	if (c->sent != c->taken)
		die("closing with messages in flight");
	switch (c->kind) {
	case K_SLEEP:
	case K_SPIN: {
		struct shmp_msg m;
		struct shmp_pipeline_stats st;
		if (shmp_pipeline_close(c->pl))
			die("shmp_pipeline_close failed");
		int e = shmp_pipeline_next(c->pl, &m, 10);
		if (e != -SHMP_ECLOSED) {
			fprintf(stderr, "bench_pipeline: next after close: %s, not closed\n", shmp_strerror(e));
			exit(1);
		}
		if ((e = shmp_pipeline_join(c->pl, 10)) || (e = shmp_pipeline_stats(c->pl, &st))) {
			fprintf(stderr, "bench_pipeline: join/stats: %s\n", shmp_strerror(e));
			exit(1);
		}
		if (st.messages_in != c->sent || st.messages_out != c->taken ||
		    st.bytes_out != c->taken * c->size || st.state != SHMP_PIPELINE_DONE) {
			fprintf(stderr, "bench_pipeline: stats: in %llu out %llu bytes out %llu state %d; sent %llu\n",
				(unsigned long long)st.messages_in, (unsigned long long)st.messages_out,
				(unsigned long long)st.bytes_out, st.state, (unsigned long long)c->sent);
			exit(1);
		}
		shmp_pipeline_destroy(c->pl);
		break;
	}
	case K_PIPE: {
		uint32_t l;
		close(c->to_fd);
		if (rb_frame(&c->rd, &l))
			die("pipe pipeline: a message too many");
		reap(c->child, "pipe");
		close(c->from_fd);
		free(c->rd.b);
		break;
	}
#ifdef HAVE_ZMQ
	case K_ZMQ:
		if (zmq_send(c->zpush, "", 0, 0) != 0)
			die("zmq_send failed");
		reap(c->child, "zmq");
		zmq_close(c->zpush);
		zmq_close(c->zpull);
		zmq_ctx_term(c->zctx);
		unlink(c->ep_in + strlen("ipc://"));
		unlink(c->ep_out + strlen("ipc://"));
		break;
#endif
	}
	free(c->out);
}

/* ---- the measurements --------------------------------------------------- */

struct lat {
	double p50, p99, p999; /* microseconds, both hops */
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

/* The q-quantile of sorted v[0..n-1] (nearest rank). */
static uint64_t quantile(const uint64_t *v, long n, double q)
{
	long k = (long)(q * (double)n + 0.999999) - 1;
	return v[k < 0 ? 0 : k >= n ? n - 1 : k];
}

/* One message in flight, n times. */
static struct lat ping(struct conn *c, long n, struct lat *hist)
{
	uint64_t *v = malloc((size_t)n * sizeof *v);
	if (!v)
		die("out of memory");
	if (c->pl && shmp_pipeline_reset_latency(c->pl))
		die("shmp_pipeline_reset_latency failed");
	double end = bench_now() + 2 * bench_budget();
	for (long i = 0; i < n; i++) {
		uint64_t t = now_ns();
		conn_send(c);
		conn_take(c);
		v[i] = now_ns() - t;
		if (i % 64 == 63 && i + 1 < n && bench_now() > end)
			n = i + 1;
	}
	qsort(v, (size_t)n, sizeof *v, cmp_u64);
	struct lat l = { quantile(v, n, 0.5) / 1e3, quantile(v, n, 0.99) / 1e3, quantile(v, n, 0.999) / 1e3 };
	free(v);
	if (c->pl) {
		/* shmp's own histogram saw the same messages. */
		struct shmp_pipeline_stats st;
		if (shmp_pipeline_stats(c->pl, &st))
			die("shmp_pipeline_stats failed");
		if (st.lat_count != (uint64_t)n) {
			fprintf(stderr, "bench_pipeline: the latency histogram counted %llu of %ld messages\n",
				(unsigned long long)st.lat_count, n);
			exit(1);
		}
		*hist = (struct lat){ st.lat_p50 / 1e3, st.lat_p99 / 1e3, st.lat_p999 / 1e3 };
	}
	return l;
}

struct producer {
	struct conn *c;
	long n;
	atomic_long done; /* messages sent (the put returned) */
	atomic_int go, stop, finished;
};

static void *producer_main(void *a)
{
	struct producer *p = a;
	long i;
	while (!atomic_load_explicit(&p->go, memory_order_acquire))
		sched_yield();
	for (i = 0; i < p->n && !atomic_load_explicit(&p->stop, memory_order_relaxed); i++) {
		conn_send(p->c);
		atomic_store_explicit(&p->done, i + 1, memory_order_release);
	}
	atomic_store_explicit(&p->finished, 1, memory_order_release);
	return NULL;
}

/* A stream of up to n messages (fewer once the time budget is spent):
 * messages a second. */
static double stream(struct conn *c, long n)
{
	pthread_t th;
	struct producer p = { .c = c, .n = n };
	uint64_t first = c->taken;
	/* The sequence numbers go on from the pings: the producer thread owns
	 * `sent` until joined. */
	if (pthread_create(&th, NULL, producer_main, &p))
		die("pthread_create failed");
	double t = bench_now(), end = t + 2 * bench_budget();
	long i;
	atomic_store_explicit(&p.go, 1, memory_order_release);
	for (i = 0; i < n; i++) {
		conn_take(c);
		if (i % 256 == 255 && bench_now() > end)
			break;
	}
	if (i < n) {
		/* Out of time: stop the producer, and take what it sent (it may
		 * wait for room meanwhile): only messages known to be sent. */
		atomic_store_explicit(&p.stop, 1, memory_order_relaxed);
		for (;;) {
			int fin = atomic_load_explicit(&p.finished, memory_order_acquire);
			uint64_t sent = first + (uint64_t)atomic_load_explicit(&p.done, memory_order_acquire);
			if (c->taken < sent)
				conn_take(c);
			else if (fin)
				break;
			else
				sched_yield();
		}
	}
	t = bench_now() - t;
	pthread_join(th, NULL);
	return (double)(c->taken - first) / t;
}

/* Seconds memcpy takes for `size` bytes here, between two hot buffers:
 * the median of 255 timed batches. */
static double memcpy_time(size_t size)
{
	static unsigned char *a, *b;
	if (!a && (!(a = malloc(BIG)) || !(b = malloc(BIG))))
		die("out of memory");
	memcpy(a, g_ref, BIG);
	int per = size >= BIG ? 16 : 4096, runs = bench_quick() ? 15 : 255;
	double v[255];
	for (int r = 0; r < runs; r++) {
		double t = bench_now();
		for (int i = 0; i < per; i++) {
			memcpy(b, a, size);
			__asm__ volatile("" : : "r"(b) : "memory"); /* every copy happens */
		}
		v[r] = (bench_now() - t) / per;
	}
	if (memcmp(a, b, size))
		die("memcpy copied wrong");
	return bench_median(v, runs);
}

/* One run of one transport at one size (arg): the throughput in messages
 * a second; extra: latency p50, p99, p99.9 (us, both hops), then shmp's
 * histogram's. K_MEMCPY: the copy's time in extra[0]. */
enum { X_P50, X_P99, X_P999, X_H50, X_H99, X_H999 };

static double run_one(void *arg, int kind, double *x)
{
	size_t size = *(const size_t *)arg;
	if (kind == K_MEMCPY) {
		x[X_P50] = memcpy_time(size) * 1e6;
		return 0;
	}
	struct conn c;
	conn_open(&c, kind, size);
	/* Warm up: the workers started, pages touched, ZeroMQ connected. */
	for (int i = 0; i < warmup(); i++) {
		conn_send(&c);
		conn_take(&c);
	}
	struct lat hist = { 0, 0, 0 }, l = ping(&c, n_lat(kind, size), &hist);
	double tp = stream(&c, n_tp(kind, size));
	conn_close(&c);
	x[X_P50] = l.p50;
	x[X_P99] = l.p99;
	x[X_P999] = l.p999;
	x[X_H50] = hist.p50;
	x[X_H99] = hist.p99;
	x[X_H999] = hist.p999;
	return tp;
}

/* "p50 / p99 / p99.9 us" of state s, divided by `by` (2: per hop). */
static const char *fmt_lat(char *buf, size_t n, const struct bench_var *v, int s, int first, int by)
{
	snprintf(buf, n, "%.2f / %.2f / %.2f us", v->xmed[s][first] / by, v->xmed[s][first + 1] / by,
		 v->xmed[s][first + 2] / by);
	return buf;
}

/* The details, per state: every transport's percentiles and rates. */
static void details(size_t size, const struct bench_var *v, int have_zmq)
{
	for (int s = 0; s < BENCH_NSTATES; s++) {
		if (!bench_state_on(s))
			continue;
		printf("\n-- %s messages, %s: source -> 1 forwarding stage -> sink (2 hops) --\n",
		       size == SMALL ? "64-byte" : "64 KiB", bench_state_name[s]);
		printf("%-26s %32s %32s %10s %9s\n", "", "per hop p50 / p99 / p99.9", "2 hops p50 / p99 / p99.9",
		       "msgs/s", "MiB/s");
		for (int k = 0; k < K_MEMCPY; k++) {
			char a[64], b[64];
			if (k == K_ZMQ && !have_zmq) {
				printf("%-26s %32s\n", kname[k], "n/a (built without ZeroMQ)");
				continue;
			}
			printf("%-26s %32s %32s %10.0f %9.1f\n", kname[k], fmt_lat(a, sizeof a, &v[k], s, X_P50, 2),
			       fmt_lat(b, sizeof b, &v[k], s, X_P50, 1), v[k].med[s],
			       v[k].med[s] * (double)size / (1 << 20));
		}
		for (int k = K_SLEEP; k <= K_SPIN; k++) {
			char b[64];
			printf("%-26s %32s %32s  (shmp's own histogram, commit -> take)\n", kname[k], "",
			       fmt_lat(b, sizeof b, &v[k], s, X_H50, 1));
		}
		printf("%-26s %.3f us for %zu bytes (hot buffers)\n", kname[K_MEMCPY], v[K_MEMCPY].xmed[s][X_P50],
		       size);
	}
	fflush(stdout);
}

/* Per hop, in us: percentile `x` of transport k, both states. */
static struct bench_fig hop(const struct bench_var *v, int k, int x)
{
	return bench_fig_scale(bench_xfig_n(&v[k], x), 0.5);
}

static void report(size_t size, struct bench_var *v, int have_zmq)
{
	const int S = size == SMALL;
	const char *sz = S ? "64 B" : "64 KiB";
	char name[96];
	struct bench_fig none = bench_fig2(0, 0);
	details(size, v, have_zmq);
	bench_section(S ? "pipeline, 64-byte messages (M msgs/s: higher is better; us per hop: lower is better)"
			: "pipeline, 64 KiB messages (GiB/s: higher is better; us per hop: lower is better)");
	/* Throughput: millions of messages a second for 64 B, GiB/s for 64 KiB. */
	double unit = S ? 1e-6 : (double)size / (double)(1 << 30);
	const char *tpu = S ? "Mmsg/s" : "GiB/s";
	struct bench_fig pipe_tp = bench_fig_scale(bench_fig(&v[K_PIPE]), unit);
	struct bench_fig zmq_tp = have_zmq ? bench_fig_scale(bench_fig(&v[K_ZMQ]), unit) : none;
	for (int k = K_SLEEP; k <= K_SPIN; k++) {
		const char *mode = k == K_SPIN ? "spinning" : "sleeping";
		struct bench_fig tp = bench_fig_scale(bench_fig(&v[k]), unit);
		snprintf(name, sizeof name, "pipeline %s stream, %s stages", sz, mode);
		bench_line(name, tpu, tp, "pipe pipeline", pipe_tp, ">= 10");
		bench_line(name, tpu, tp, "ZeroMQ ipc pipeline", zmq_tp, "info");
	}
	for (int k = K_SLEEP; k <= K_SPIN; k++) {
		const char *mode = k == K_SPIN ? "spinning" : "sleeping";
		for (int x = X_P50; x <= X_P99; x++) {
			const char *q = x == X_P50 ? "p50" : "p99";
			snprintf(name, sizeof name, "pipeline %s hop %s, %s stages", sz, q, mode);
			/* The goals: sleeping hops <= pipes at p50 and p99;
			 * spinning 64 B hops <= 1 us (p50) and 10 us (p99). */
			const char *goal = k == K_SLEEP || S ? "<= 1.0" : "info";
			bench_line(name, "us", hop(v, k, x), "pipe pipeline", hop(v, K_PIPE, x), goal);
			if (k == K_SPIN && S)
				bench_line(name, "us", hop(v, k, x), x == X_P50 ? "1 us (absolute goal)" :
						   "10 us (absolute goal)", bench_fig2(x == X_P50 ? 1 : 10, x == X_P50 ? 1 : 10),
					   "<= 1.0");
			if (k == K_SPIN && !S && x == X_P50)
				bench_line(name, "us", hop(v, k, x), "1 us + memcpy of 64 KiB here",
					   bench_fig_add(bench_xfig_n(&v[K_MEMCPY], X_P50), 1.0), "<= 1.0");
			if (have_zmq)
				bench_line(name, "us", hop(v, k, x), "ZeroMQ ipc pipeline", hop(v, K_ZMQ, x), "info");
		}
	}
	if (!S)
		bench_info("memcpy of 64 KiB (hot buffers)", "us", bench_xfig_n(&v[K_MEMCPY], X_P50),
			   "what the 64 KiB hop goal adds to 1 us");
}

int main(void)
{
	static size_t sizes[2] = { SMALL, BIG };
#ifdef HAVE_ZMQ
	const int have_zmq = 1;
#else
	const int have_zmq = 0;
#endif
	alarm(WATCHDOG_S);
	/* A reader gone early must fail the write, not kill us. */
	signal(SIGPIPE, SIG_IGN);
	g_ref = malloc(BIG);
	if (!g_ref)
		die("out of memory");
	srand(12345);
	for (size_t i = 0; i < BIG; i++)
		g_ref[i] = (unsigned char)rand();

	bench_header("bench_pipeline", "source -> 1 forwarding stage (1 worker process) -> sink (this process)");
	printf("# latency with one message in flight, timed put -> next, per hop = that / 2;\n"
	       "# throughput: a producer thread putting while the main thread takes. Peers measured here.\n");
	fflush(stdout);
	double t0 = bench_now();
	/* BENCH_PIPELINE_SIZE=64 or 65536: that size only (a quicker look). */
	const char *only = getenv("BENCH_PIPELINE_SIZE");
	for (int s = 0; s < 2; s++) {
		if (only && strtoul(only, NULL, 10) != sizes[s])
			continue;
		struct bench_var v[K_N];
		int n = 0;
		for (int k = 0; k < K_N; k++)
			if (k != K_ZMQ || have_zmq)
				v[n++] = BENCH_VAR(run_one, &sizes[s], k);
		bench_run(v, n);
		if (!have_zmq) { /* keep v[] indexed by kind */
			v[K_MEMCPY] = v[K_ZMQ];
			v[K_ZMQ] = BENCH_VAR(run_one, &sizes[s], K_ZMQ);
		}
		report(sizes[s], v, have_zmq);
	}
	char la[128];
	bench_loadavg(la, sizeof la);
	printf("\n# load average at end: %s; %.0f s in all\n", la, bench_now() - t0);
	free(g_ref);
	return 0;
}
