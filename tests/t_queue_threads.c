/* Queue, JoinableQueue and Pipe used by threads of one process (the part
 * ThreadSanitizer can follow: label tsan, tests/CMakeLists.txt):
 * - a Queue with 3 producer and 3 consumer threads, messages of 0 to 300
 *   bytes inline and of 5000 bytes in segment blocks: every message comes
 *   out exactly once, whole, and each consumer sees each producer's
 *   messages in the order they were put; the producers' last put is
 *   followed by close(), and every consumer ends with -SHMP_ECLOSED;
 * - a JoinableQueue whose consumer threads call task_done() after each
 *   item: join() in the main thread returns once all are done, and not
 *   before (a counter written by the consumers before task_done is read
 *   after join);
 * - a Pipe end shared by 2 sending threads and the other end by 2
 *   receiving threads: every message arrives once; after the senders'
 *   end is closed the receivers drain and get -SHMP_ECLOSED. */
#include "t.h"

#include <pthread.h>

#define PRODUCERS 3
#define CONSUMERS 3
#define PER_PRODUCER 3000
#define BIG 5000

struct msg_hdr {
	uint32_t producer, seq;
};

static shmp_queue_t *Q;
static _Atomic int received[PRODUCERS][PER_PRODUCER];
static atomic_int order_errors, content_errors;

static size_t msg_len(uint32_t seq)
{
	if (seq % 97 == 0)
		return BIG;
	return sizeof(struct msg_hdr) + seq % 300;
}

static void fill(unsigned char *buf, uint32_t producer, uint32_t seq, size_t len)
{
	struct msg_hdr h = { producer, seq };
	memcpy(buf, &h, sizeof h);
	for (size_t i = sizeof h; i < len; i++)
		buf[i] = (unsigned char)(producer * 31 + seq + i);
}

static void *producer(void *arg)
{
	uint32_t id = (uint32_t)(uintptr_t)arg;
	static _Thread_local unsigned char buf[BIG];
	for (uint32_t seq = 0; seq < PER_PRODUCER; seq++) {
		size_t len = msg_len(seq);
		fill(buf, id, seq, len);
		T_EQ(shmp_queue_put(Q, buf, len, 30.0), 0);
	}
	return NULL;
}

static void *consumer(void *arg)
{
	(void)arg;
	static _Thread_local unsigned char buf[BIG], want[BIG];
	int64_t last[PRODUCERS];
	for (int i = 0; i < PRODUCERS; i++)
		last[i] = -1;
	size_t len;
	int r;
	while ((r = shmp_queue_get(Q, buf, sizeof buf, &len, 30.0)) == 0) {
		struct msg_hdr h;
		T_CHECK(len >= sizeof h);
		memcpy(&h, buf, sizeof h);
		T_CHECK(h.producer < PRODUCERS && h.seq < PER_PRODUCER);
		fill(want, h.producer, h.seq, msg_len(h.seq));
		if (len != msg_len(h.seq) || memcmp(buf, want, len) != 0)
			atomic_fetch_add(&content_errors, 1);
		if ((int64_t)h.seq <= last[h.producer])
			atomic_fetch_add(&order_errors, 1);
		last[h.producer] = h.seq;
		atomic_fetch_add(&received[h.producer][h.seq], 1);
	}
	T_EQ(r, -SHMP_ECLOSED);
	return NULL;
}

static void test_queue(void)
{
	Q = shmp_queue_create(&SHMP_OPTS(shmp_queue_opts, .maxsize = 64));
	T_CHECK(Q);
	pthread_t p[PRODUCERS], c[CONSUMERS];
	for (int i = 0; i < CONSUMERS; i++)
		T_EQ(pthread_create(&c[i], NULL, consumer, NULL), 0);
	for (int i = 0; i < PRODUCERS; i++)
		T_EQ(pthread_create(&p[i], NULL, producer, (void *)(uintptr_t)i), 0);
	for (int i = 0; i < PRODUCERS; i++)
		T_EQ(pthread_join(p[i], NULL), 0);
	T_EQ(shmp_queue_close(Q), 0);
	for (int i = 0; i < CONSUMERS; i++)
		T_EQ(pthread_join(c[i], NULL), 0);
	for (int i = 0; i < PRODUCERS; i++)
		for (int j = 0; j < PER_PRODUCER; j++)
			if (received[i][j] != 1) {
				fprintf(stderr, "producer %d message %d received %d times\n", i, j, received[i][j]);
				exit(1);
			}
	T_EQ(order_errors, 0);
	T_EQ(content_errors, 0);
	shmp_queue_destroy(Q);
}

/* ---- JoinableQueue ------------------------------------------------------ */

#define JOBS 2000
static shmp_queue_t *JQ;
static int64_t handled[CONSUMERS]; /* plain: join() must order them */

static void *worker(void *arg)
{
	int id = (int)(uintptr_t)arg;
	uint32_t v;
	size_t len;
	while (shmp_queue_get(JQ, &v, sizeof v, &len, 30.0) == 0) {
		handled[id] += v;
		T_EQ(shmp_queue_task_done(JQ), 0);
	}
	return NULL;
}

static void test_joinable(void)
{
	JQ = shmp_joinable_queue_create(&SHMP_OPTS(shmp_queue_opts, .maxsize = 32));
	T_CHECK(JQ);
	pthread_t w[CONSUMERS];
	for (int i = 0; i < CONSUMERS; i++)
		T_EQ(pthread_create(&w[i], NULL, worker, (void *)(uintptr_t)i), 0);
	int64_t want = 0;
	for (uint32_t v = 1; v <= JOBS; v++) {
		T_EQ(shmp_queue_put(JQ, &v, sizeof v, 30.0), 0);
		want += v;
	}
	T_EQ(shmp_queue_join(JQ, 30.0), 0);
	int64_t got = 0;
	for (int i = 0; i < CONSUMERS; i++)
		got += handled[i]; /* read after join: the workers' writes are done */
	T_EQ(got, want);
	T_EQ(shmp_queue_close(JQ), 0);
	for (int i = 0; i < CONSUMERS; i++)
		T_EQ(pthread_join(w[i], NULL), 0);
	shmp_queue_destroy(JQ);
}

/* ---- Pipe --------------------------------------------------------------- */

#define PIPE_MSGS 2000
static shmp_conn_t *A, *B;
static _Atomic int pipe_seen[2][PIPE_MSGS];

static void *sender(void *arg)
{
	uint32_t id = (uint32_t)(uintptr_t)arg;
	for (uint32_t i = 0; i < PIPE_MSGS; i++) {
		uint32_t m[2] = { id, i };
		T_EQ(shmp_conn_send(B, m, sizeof m, 30.0), 0);
	}
	return NULL;
}

static void *receiver(void *arg)
{
	(void)arg;
	uint32_t m[2];
	size_t len;
	int r;
	while ((r = shmp_conn_recv(A, m, sizeof m, &len, 30.0)) == 0) {
		T_EQ(len, sizeof m);
		T_CHECK(m[0] < 2 && m[1] < PIPE_MSGS);
		atomic_fetch_add(&pipe_seen[m[0]][m[1]], 1);
	}
	T_EQ(r, -SHMP_ECLOSED);
	return NULL;
}

static void test_pipe(void)
{
	T_EQ(shmp_pipe_create(&A, &B, &SHMP_OPTS(shmp_pipe_opts, .one_way = 1, .capacity = 64)), 0);
	pthread_t s[2], r[2];
	for (int i = 0; i < 2; i++) {
		T_EQ(pthread_create(&r[i], NULL, receiver, NULL), 0);
		T_EQ(pthread_create(&s[i], NULL, sender, (void *)(uintptr_t)i), 0);
	}
	for (int i = 0; i < 2; i++)
		T_EQ(pthread_join(s[i], NULL), 0);
	T_EQ(shmp_conn_close(B), 0); /* this process was the only holder: end of file */
	for (int i = 0; i < 2; i++)
		T_EQ(pthread_join(r[i], NULL), 0);
	for (int i = 0; i < 2; i++)
		for (int j = 0; j < PIPE_MSGS; j++)
			T_EQ(pipe_seen[i][j], 1);
	shmp_conn_destroy(A);
	shmp_conn_destroy(B);
}

int main(void)
{
	t_watchdog(120);
	T_CHECK(shmp_segment_default());
	uint64_t base = t_live_blocks(shmp_segment_default());
	double t0 = t_now();
	test_queue();
	test_joinable();
	test_pipe();
	T_EQ(t_live_blocks(shmp_segment_default()), base);
	printf("%.2f s\n", t_now() - t0);
	return 0;
}
