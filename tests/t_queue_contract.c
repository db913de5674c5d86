/* The contract's edges of Queue and Pipe (include/shmp/queue.h):
 * - a NaN timeout is -EINVAL on every call that takes one, also when no wait
 *   would be needed: a Pipe's send with room, poll and recv with a message
 *   there, on an end still open and on one closed; a Queue's put (plain and
 *   joinable) with room, get with a message there, join with nothing
 *   outstanding; nothing is sent, taken or changed by the refused call;
 * - shmp_queue_ring(NULL) is NULL with errno EINVAL (errno set to something
 *   else before, so a stale value cannot pass);
 * - the errors the header names for a full segment: a queue whose segment
 *   has no room is NULL with errno SHMP_ESEGFULL; a put of a large message
 *   (segment block) with no room is -SHMP_ESEGFULL, not -ENOMEM, and leaves
 *   the queue usable; a pipe's send the same;
 * - shmp_ring_put_batch and shmp_ring_get_batch with n == 0 return 0 (also
 *   with NULL arrays) and change nothing;
 * - a Pipe's send after the reader's last holder died: once 10 ms have
 *   passed since the handle's last look, at most 64 sends succeed before
 *   -SHMP_ECLOSED (the docs' "every 64th send, at most every 10 ms"). */
#include "t.h"

#include <math.h>
#include <sys/uio.h>

static void test_pipe_nan(void)
{
	shmp_conn_t *a, *b;
	char buf[16];
	size_t len = 99;
	T_EQ(shmp_pipe_create(&a, &b, NULL), 0);
	/* Room to send: no wait needed, refused all the same. */
	T_EQ(shmp_conn_send(b, "x", 1, NAN), -EINVAL);
	T_EQ(shmp_conn_poll(a, 0), 0); /* nothing was sent */
	T_EQ(shmp_conn_send(b, "x", 1, 0), 0);
	/* A message there: poll and recv need no wait. */
	T_EQ(shmp_conn_poll(a, NAN), -EINVAL);
	T_EQ(shmp_conn_recv(a, buf, sizeof buf, &len, NAN), -EINVAL);
	T_EQ(len, 99); /* untouched */
	T_EQ(shmp_conn_poll(a, 0), 1); /* still there */
	T_EQ(shmp_conn_recv(a, buf, sizeof buf, &len, 0), 0);
	T_EQ(len, 1);
	/* Empty: the calls that would wait refuse it too. */
	T_EQ(shmp_conn_poll(a, NAN), -EINVAL);
	T_EQ(shmp_conn_recv(a, buf, sizeof buf, &len, NAN), -EINVAL);
	/* An end this process closed: still an argument error first. */
	T_EQ(shmp_conn_close(b), 0);
	T_EQ(shmp_conn_send(b, "x", 1, NAN), -EINVAL);
	T_EQ(shmp_conn_send(b, "x", 1, 0), -SHMP_ECLOSED);
	/* At end of file (poll would say 1 at once). */
	T_EQ(shmp_conn_poll(a, 0), 1);
	T_EQ(shmp_conn_poll(a, NAN), -EINVAL);
	T_EQ(shmp_conn_recv(a, buf, sizeof buf, &len, NAN), -EINVAL);
	shmp_conn_destroy(a);
	shmp_conn_destroy(b);
}

static void test_queue_nan(void)
{
	char buf[16];
	size_t len = 99;
	shmp_queue_t *q = shmp_queue_create(NULL);
	T_CHECK(q);
	T_EQ(shmp_queue_put(q, "x", 1, NAN), -EINVAL);
	T_EQ(shmp_queue_qsize(q), 0);
	T_EQ(shmp_queue_put(q, "x", 1, 0), 0);
	T_EQ(shmp_queue_get(q, buf, sizeof buf, &len, NAN), -EINVAL);
	T_EQ(len, 99);
	T_EQ(shmp_queue_qsize(q), 1);
	shmp_queue_destroy(q);

	q = shmp_joinable_queue_create(NULL);
	T_CHECK(q);
	T_EQ(shmp_queue_join(q, NAN), -EINVAL); /* nothing outstanding, yet refused */
	T_EQ(shmp_queue_put(q, "x", 1, NAN), -EINVAL);
	T_EQ(shmp_queue_join(q, 0), 0); /* the refused put counted nothing */
	T_EQ(shmp_queue_qsize(q), 0);
	shmp_queue_destroy(q);
}

static void test_ring_null(void)
{
	errno = 0;
	T_CHECK(shmp_queue_ring(NULL) == NULL);
	T_EQ(errno, EINVAL);
	errno = ENOENT;
	T_CHECK(shmp_queue_ring(NULL) == NULL);
	T_EQ(errno, EINVAL);
	shmp_queue_t *q = shmp_queue_create(NULL);
	T_CHECK(q);
	T_CHECK(shmp_queue_ring(q) != NULL);
	shmp_queue_destroy(q);
}

static void test_batch_zero(void)
{
	shmp_queue_t *q = shmp_queue_create(NULL);
	T_CHECK(q);
	shmp_ring_t *r = shmp_queue_ring(q);
	struct iovec io[1] = { { .iov_base = "x", .iov_len = 1 } };
	size_t lens[1];
	T_EQ(shmp_ring_put_batch(r, io, 0, 0), 0);
	T_EQ(shmp_ring_put_batch(r, NULL, 0, 0), 0);
	T_EQ(shmp_ring_put_batch(r, NULL, 0, SHMP_FOREVER), 0); /* nothing to wait for */
	T_EQ(shmp_queue_qsize(q), 0);
	T_EQ(shmp_queue_put(q, "y", 1, 0), 0);
	T_EQ(shmp_ring_get_batch(r, io, lens, 0, 0), 0);
	T_EQ(shmp_ring_get_batch(r, NULL, NULL, 0, SHMP_FOREVER), 0);
	T_EQ(shmp_queue_qsize(q), 1); /* nothing taken */
	shmp_queue_destroy(q);
}

/* A segment nearly filled: what is left cannot hold a 48 KiB block. */
static shmp_segment_t *small_full_segment(void)
{
	shmp_segment_t *seg = shmp_segment_create(NULL, SHMP_SEGMENT_MIN_SIZE, NULL);
	T_CHECK(seg);
	uint64_t off;
	while (shmp_segment_alloc(seg, 4096, 64, &off) == 0)
		;
	return seg;
}

static void test_segment_full(void)
{
	/* No room for the queue itself. */
	shmp_segment_t *seg = small_full_segment();
	errno = 0;
	T_CHECK(shmp_queue_create(&SHMP_OPTS(shmp_queue_opts, .segment = seg)) == NULL);
	T_EQ(errno, SHMP_ESEGFULL);
	shmp_segment_destroy(seg);

	/* Room for the queue, not for a large message. */
	seg = shmp_segment_create(NULL, SHMP_SEGMENT_MIN_SIZE, NULL);
	T_CHECK(seg);
	shmp_queue_t *q = shmp_queue_create(&SHMP_OPTS(shmp_queue_opts, .segment = seg, .maxsize = 4));
	T_CHECK(q);
	shmp_queue_t *jq = shmp_joinable_queue_create(&SHMP_OPTS(shmp_queue_opts, .segment = seg, .maxsize = 4));
	T_CHECK(jq);
	shmp_conn_t *a, *b;
	T_EQ(shmp_pipe_create(&a, &b, &SHMP_OPTS(shmp_pipe_opts, .segment = seg, .capacity = 4)), 0);
	size_t big = (size_t)SHMP_SEGMENT_MIN_SIZE; /* more than the whole segment */
	char *m = calloc(1, big);
	T_CHECK(m);
	T_EQ(shmp_queue_put(q, m, big, 0), -SHMP_ESEGFULL);
	T_EQ(shmp_queue_put(q, m, big, 1.0), -SHMP_ESEGFULL); /* no waiting for room it never has */
	T_EQ(shmp_queue_put(jq, m, big, 0), -SHMP_ESEGFULL);
	T_EQ(shmp_queue_join(jq, 0), 0); /* nothing counted */
	T_EQ(shmp_conn_send(b, m, big, 0), -SHMP_ESEGFULL);
	/* Still usable. */
	char buf[8];
	size_t len;
	T_EQ(shmp_queue_put(q, "ok", 2, 0), 0);
	T_EQ(shmp_queue_get(q, buf, sizeof buf, &len, 0), 0);
	T_EQ(len, 2);
	T_EQ(shmp_conn_send(b, "ok", 2, 0), 0);
	T_EQ(shmp_conn_recv(a, buf, sizeof buf, &len, 0), 0);
	T_EQ(len, 2);
	free(m);
	shmp_conn_destroy(a);
	shmp_conn_destroy(b);
	shmp_queue_destroy(jq);
	shmp_queue_destroy(q);
	shmp_segment_destroy(seg);
}

static int fd_up[2];
static shmp_conn_t *A, *B;

static int reader(void *arg)
{
	(void)arg;
	t_signal(fd_up[1]);
	pause(); /* killed by the parent */
	return 0;
}

static void test_send_notices_death(void)
{
	T_CHECK(pipe(fd_up) == 0);
	T_EQ(shmp_pipe_create(&A, &B, &SHMP_OPTS(shmp_pipe_opts, .one_way = 1, .capacity = 4096)), 0);
	pid_t c = t_spawn(reader, NULL);
	T_EQ(t_await(fd_up[0], 10), 1);
	T_EQ(shmp_conn_close(A), 0); /* the child is a's only holder */
	/* Some sends first, so the handle's count is not at a multiple of 64. */
	for (int i = 0; i < 5; i++)
		T_EQ(shmp_conn_send(B, "m", 1, 0), 0);
	kill(c, SIGKILL);
	t_wait_killed(c, 10); /* reaped: no process, no zombie */
	t_sleep_ms(20);       /* past the 10 ms since the last look */
	int ok = 0, r;
	while ((r = shmp_conn_send(B, "m", 1, 0)) == 0 && ok < 1000)
		ok++;
	printf("sends accepted after the reader died: %d\n", ok);
	T_EQ(r, -SHMP_ECLOSED);
	T_CHECK(ok < 64);
	T_EQ(shmp_conn_send(B, "m", 1, 0), -SHMP_ECLOSED); /* and from then on */
	shmp_conn_destroy(A);
	shmp_conn_destroy(B);
	close(fd_up[0]);
	close(fd_up[1]);
}

int main(void)
{
	t_watchdog(60);
	T_CHECK(shmp_segment_default());
	uint64_t base = t_live_blocks(shmp_segment_default());
	test_pipe_nan();
	test_queue_nan();
	test_ring_null();
	test_batch_zero();
	test_segment_full();
	T_EQ(t_live_blocks(shmp_segment_default()), base);
	test_send_notices_death();
	T_EQ(t_live_blocks(shmp_segment_default()), base);
	return 0;
}
