/* Pipe (include/shmp/queue.h):
 * - duplex: parent and child both send and receive; messages of 0, 1, 100,
 *   5000 bytes and 1 MiB sent back to back each come out of exactly one
 *   recv, whole;
 * - one-way (opts.one_way = 1): a only receives, b only sends; the wrong
 *   direction is -EBADF, in the parent and in the child;
 * - a 16 MiB message from a child arrives intact; recv into a buffer too
 *   small gives -EMSGSIZE with *len = the size needed, and loses nothing;
 *   a message over max_message is refused;
 * - poll: 0 at once on empty with timeout 0, 0 after about 0.2 s with 0.2,
 *   1 when a message comes from another process; it takes nothing;
 * - send on a full pipe: -ETIMEDOUT at once (timeout 0) or after about the
 *   timeout;
 * - end of file only when every holder of the other end has closed it or
 *   died: a child that sent and exited while the parent still holds that
 *   end gives no end of file (CPython's case); with the parent's copy
 *   closed after the fork (Python's idiom), the child's close gives it:
 *   the parent drains what was sent, then recv gives -SHMP_ECLOSED and
 *   poll 1; a recv blocked at the close wakes; send to the closed peer
 *   gives -SHMP_ECLOSED;
 * - the peer dying without closing (SIGKILL after it used its end), its
 *   only other holder (the parent) having closed its copy: the parent gets
 *   what it sent, then a blocked recv returns -SHMP_ECLOSED within about a
 *   second, a send blocked on the full pipe too, and a later send fails
 *   with -SHMP_ECLOSED;
 * - calls on a closed end give -SHMP_ECLOSED; close twice is fine;
 * - a child destroying its copies frees nothing shared; the parent
 *   destroying both ends (even with a 1 MiB message unread) returns the
 *   default segment's live blocks to their baseline. */
#include "t.h"

#include <poll.h>

static int up[2];   /* child -> parent signals */
static int down[2]; /* parent -> child signals */

/* Failed checks that let the test go on; main() fails at the end. */
static int failures;

static void soft_eq(int line, int got, int want)
{
	if (got != want) {
		fprintf(stderr, "%s:%d: got %d (%s), want %d (%s)\n", __FILE__, line, got,
			shmp_strerror(got), want, shmp_strerror(want));
		failures++;
	}
}

static shmp_conn_t *A, *B;

static void mkpipe(const struct shmp_pipe_opts *o)
{
	A = B = NULL;
	T_EQ(shmp_pipe_create(&A, &B, o), 0);
	T_CHECK(A && B);
}

static void rmpipe(void)
{
	shmp_conn_destroy(A);
	shmp_conn_destroy(B);
	A = B = NULL;
}

/* In a child: free our copies of both ends and exit with `code`. */
static int child_done(int code)
{
	rmpipe();
	return code;
}

/* ---- duplex, message boundaries -------------------------------------------- */

static const size_t sizes[] = { 0, 1, 100, 5000, 1 << 20 };
#define NSIZES (sizeof sizes / sizeof sizes[0])
#define BIGCAP ((size_t)2 << 20)

static int duplex_child(void *arg)
{
	(void)arg;
	unsigned char *buf = malloc(BIGCAP);
	if (!buf)
		return 9;
	for (unsigned i = 0; i < NSIZES; i++) {
		size_t len = 77;
		int r = shmp_conn_recv(B, buf, BIGCAP, &len, 10.0);
		if (r != 0 || len != sizes[i] || !t_filled(buf, len, i)) {
			fprintf(stderr, "child: message %u: r %s len %zu\n", i, shmp_strerror(r), len);
			return 1;
		}
	}
	for (unsigned i = 0; i < NSIZES; i++) {
		t_fill(buf, sizes[i], 100 + i);
		if (shmp_conn_send(B, buf, sizes[i], 10.0) != 0)
			return 2;
	}
	free(buf);
	return child_done(0);
}

static void test_duplex(void)
{
	mkpipe(NULL);
	unsigned char *buf = malloc(BIGCAP);
	T_CHECK(buf);
	pid_t c = t_spawn(duplex_child, NULL);
	/* All five in one stream, before the child reads any. */
	for (unsigned i = 0; i < NSIZES; i++) {
		t_fill(buf, sizes[i], i);
		T_EQ(shmp_conn_send(A, buf, sizes[i], 10.0), 0);
	}
	for (unsigned i = 0; i < NSIZES; i++) {
		size_t len = 77;
		T_EQ(shmp_conn_recv(A, buf, BIGCAP, &len, 10.0), 0);
		T_EQ(len, sizes[i]);
		T_CHECK(t_filled(buf, len, 100 + i));
	}
	t_wait_ok(c, 20);
	/* The child destroyed its copies; the pipe still works here, both
	 * ways, within one process (which holds both ends). */
	T_EQ(shmp_conn_poll(B, 0), 0);
	T_EQ(shmp_conn_send(A, "to b", 4, 0), 0);
	T_EQ(shmp_conn_send(B, "to a", 4, 0), 0);
	size_t len;
	T_EQ(shmp_conn_recv(B, buf, 16, &len, 0), 0);
	T_EQ(len, 4);
	T_CHECK(memcmp(buf, "to b", 4) == 0);
	T_EQ(shmp_conn_recv(A, buf, 16, &len, 0), 0);
	T_EQ(len, 4);
	T_CHECK(memcmp(buf, "to a", 4) == 0);
	T_EQ(shmp_conn_poll(A, 0), 0);
	T_EQ(shmp_conn_poll(B, 0), 0);
	free(buf);
	rmpipe();
}

/* ---- one-way ------------------------------------------------------------------ */

static int oneway_child(void *arg)
{
	(void)arg;
	char buf[16];
	size_t len;
	if (shmp_conn_recv(B, buf, sizeof buf, &len, 0) != -EBADF)
		return 1;
	if (shmp_conn_poll(B, 0) != -EBADF)
		return 2;
	if (shmp_conn_send(A, "x", 1, 0) != -EBADF)
		return 3;
	if (shmp_conn_send(B, "one way", 7, 10.0) != 0)
		return 4;
	return child_done(0);
}

static void test_one_way(void)
{
	mkpipe(&SHMP_OPTS(shmp_pipe_opts, .one_way = 1));
	char buf[16];
	size_t len;
	T_EQ(shmp_conn_send(A, "x", 1, 0), -EBADF);
	T_EQ(shmp_conn_send(A, "x", 1, SHMP_FOREVER), -EBADF);
	T_EQ(shmp_conn_recv(B, buf, sizeof buf, &len, 0), -EBADF);
	T_EQ(shmp_conn_poll(B, 0), -EBADF);
	pid_t c = t_spawn(oneway_child, NULL);
	T_EQ(shmp_conn_recv(A, buf, sizeof buf, &len, 10.0), 0);
	T_EQ(len, 7);
	T_CHECK(memcmp(buf, "one way", 7) == 0);
	t_wait_ok(c, 10);
	/* Within one process too: b sends, a receives. */
	T_EQ(shmp_conn_send(B, "again", 5, 0), 0);
	T_EQ(shmp_conn_poll(A, 0), 1);
	T_EQ(shmp_conn_recv(A, buf, sizeof buf, &len, 0), 0);
	T_EQ(len, 5);
	T_CHECK(memcmp(buf, "again", 5) == 0);
	/* A closed one-way pipe still refuses the wrong direction. */
	T_EQ(shmp_conn_close(B), 0);
	T_EQ(shmp_conn_recv(A, buf, sizeof buf, &len, 1.0), -SHMP_ECLOSED);
	rmpipe();
}

/* ---- a 16 MiB message, too-small buffers, max_message ------------------------- */

#define HUGE ((size_t)16 << 20)

static int huge_child(void *arg)
{
	(void)arg;
	unsigned char *buf = malloc(HUGE);
	if (!buf)
		return 9;
	t_fill(buf, HUGE, 16);
	int r = shmp_conn_send(B, buf, HUGE, 10.0);
	free(buf);
	if (r != 0) {
		fprintf(stderr, "child: send 16 MiB: %s\n", shmp_strerror(r));
		return 1;
	}
	return child_done(0);
}

static void test_sizes(void)
{
	mkpipe(NULL);
	pid_t c = t_spawn(huge_child, NULL);
	unsigned char *buf = malloc(HUGE);
	T_CHECK(buf);
	/* Too small: the size needed, and the message stays. */
	size_t len = 0;
	T_EQ(shmp_conn_recv(A, buf, 4096, &len, 10.0), -EMSGSIZE);
	T_EQ(len, HUGE);
	len = 0;
	T_EQ(shmp_conn_recv(A, buf, HUGE - 1, &len, 0), -EMSGSIZE);
	T_EQ(len, HUGE);
	T_EQ(shmp_conn_poll(A, 0), 1);
	len = 0;
	T_EQ(shmp_conn_recv(A, buf, HUGE, &len, 0), 0);
	T_EQ(len, HUGE);
	T_CHECK(t_filled(buf, HUGE, 16));
	t_wait_ok(c, 20);

	/* A small (inline) message the same way. */
	T_EQ(shmp_conn_send(B, "twelve bytes", 12, 0), 0);
	len = 0;
	T_EQ(shmp_conn_recv(A, buf, 11, &len, 0), -EMSGSIZE);
	T_EQ(len, 12);
	len = 0;
	T_EQ(shmp_conn_recv(A, NULL, 0, &len, 0), -EMSGSIZE);
	T_EQ(len, 12);
	T_EQ(shmp_conn_recv(A, buf, 12, &len, 0), 0);
	T_EQ(len, 12);
	T_CHECK(memcmp(buf, "twelve bytes", 12) == 0);
	T_EQ(shmp_conn_poll(A, 0), 0);
	free(buf);
	rmpipe();

	mkpipe(&SHMP_OPTS(shmp_pipe_opts, .max_message = 1000));
	static unsigned char m[1001];
	T_EQ(shmp_conn_send(A, m, 1001, 0), -EMSGSIZE);
	T_EQ(shmp_conn_send(A, m, 1000, 0), 0);
	T_EQ(shmp_conn_recv(B, m, sizeof m, &len, 0), 0);
	T_EQ(len, 1000);
	rmpipe();
}

/* ---- poll, full pipe ------------------------------------------------------------ */

static int late_sender(void *arg)
{
	(void)arg;
	t_signal(up[1]);
	t_sleep_ms(150); /* so the parent is (likely) polling when it comes */
	if (shmp_conn_send(B, "ping", 4, 10.0) != 0)
		return 1;
	return child_done(0);
}

static void test_poll(void)
{
	mkpipe(&SHMP_OPTS(shmp_pipe_opts, .capacity = 2));
	char buf[16];
	size_t len;
	double t0 = t_now();
	T_EQ(shmp_conn_poll(A, 0), 0);
	T_EQ(shmp_conn_recv(A, buf, sizeof buf, &len, 0), -ETIMEDOUT);
	T_CHECK(t_now() - t0 < 1.0);
	T_ABOUT(shmp_conn_poll(A, 0.2), 0);
	T_ABOUT(shmp_conn_recv(A, buf, sizeof buf, &len, 0.2), -ETIMEDOUT);

	pid_t c = t_spawn(late_sender, NULL);
	T_EQ(t_await(up[0], 10), 1);
	t0 = t_now();
	T_EQ(shmp_conn_poll(A, 10.0), 1);
	T_CHECK(t_now() - t0 < 5.0);
	T_EQ(shmp_conn_poll(A, 0), 1); /* poll takes nothing */
	T_EQ(shmp_conn_recv(A, buf, sizeof buf, &len, 0), 0);
	T_EQ(len, 4);
	T_CHECK(memcmp(buf, "ping", 4) == 0);
	t_wait_ok(c, 10);
	/* The child that sent on b is gone, but we still hold b: no end of
	 * file for a (CPython's case), now or after a wait. */
	T_EQ(shmp_conn_poll(A, 0), 0);
	T_EQ(shmp_conn_recv(A, buf, sizeof buf, &len, 0), -ETIMEDOUT);
	T_ABOUT(shmp_conn_recv(A, buf, sizeof buf, &len, 0.2), -ETIMEDOUT);
	T_EQ(shmp_conn_poll(A, 0), 0);

	/* Full (capacity 2): Full at once, or after about the timeout. */
	T_EQ(shmp_conn_send(A, "1", 1, 0), 0);
	T_EQ(shmp_conn_send(A, "2", 1, 0), 0);
	t0 = t_now();
	T_EQ(shmp_conn_send(A, "3", 1, 0), -ETIMEDOUT);
	T_CHECK(t_now() - t0 < 1.0);
	T_ABOUT(shmp_conn_send(A, "3", 1, 0.2), -ETIMEDOUT);
	T_EQ(shmp_conn_recv(B, buf, sizeof buf, &len, 0), 0);
	T_EQ(len, 1);
	T_EQ(buf[0], '1');
	T_EQ(shmp_conn_send(A, "3", 1, 0), 0);
	T_EQ(shmp_conn_recv(B, buf, sizeof buf, &len, 0), 0);
	T_EQ(buf[0], '2');
	T_EQ(shmp_conn_recv(B, buf, sizeof buf, &len, 0), 0);
	T_EQ(buf[0], '3');
	rmpipe();
}

/* ---- end of file ------------------------------------------------------------------ */

static int eof_child(void *arg)
{
	(void)arg;
	for (int i = 0; i < 3; i++) {
		char m[8];
		snprintf(m, sizeof m, "last%d", i);
		if (shmp_conn_send(B, m, 5, 10.0) != 0)
			return 1;
	}
	if (shmp_conn_close(B) != 0 || shmp_conn_close(B) != 0)
		return 2;
	/* Our own end is closed now. */
	char buf[8];
	size_t len;
	if (shmp_conn_send(B, "x", 1, 0) != -SHMP_ECLOSED)
		return 3;
	if (shmp_conn_recv(B, buf, sizeof buf, &len, 0) != -SHMP_ECLOSED)
		return 4;
	return child_done(0);
}

static int late_closer(void *arg)
{
	(void)arg;
	t_signal(up[1]);
	t_sleep_ms(150); /* so the parent is (likely) blocked in recv */
	if (shmp_conn_close(B) != 0)
		return 1;
	return child_done(0);
}

/* The parent closed a: the child's end sees end of file both ways. */
static int sees_closed(void *arg)
{
	(void)arg;
	char buf[8];
	size_t len;
	if (shmp_conn_send(B, "x", 1, 1.0) != -SHMP_ECLOSED)
		return 1;
	if (shmp_conn_recv(B, buf, sizeof buf, &len, 5.0) != -SHMP_ECLOSED)
		return 2;
	if (shmp_conn_poll(B, 5.0) != 1)
		return 3;
	return child_done(0);
}

static void test_eof(void)
{
	char buf[16];
	size_t len;

	mkpipe(NULL);
	pid_t c = t_spawn(eof_child, NULL);
	T_EQ(shmp_conn_close(B), 0); /* ours: the child holds b now */
	t_wait_ok(c, 10); /* closed and gone */
	for (int i = 0; i < 3; i++) {
		char m[8];
		snprintf(m, sizeof m, "last%d", i);
		T_EQ(shmp_conn_poll(A, 0), 1);
		T_EQ(shmp_conn_recv(A, buf, sizeof buf, &len, 5.0), 0);
		T_EQ(len, 5);
		T_CHECK(memcmp(buf, m, 5) == 0);
	}
	double t0 = t_now();
	T_EQ(shmp_conn_recv(A, buf, sizeof buf, &len, 0), -SHMP_ECLOSED);
	T_EQ(shmp_conn_recv(A, buf, sizeof buf, &len, SHMP_FOREVER), -SHMP_ECLOSED);
	T_EQ(shmp_conn_poll(A, 0), 1);
	T_EQ(shmp_conn_poll(A, SHMP_FOREVER), 1);
	T_CHECK(t_now() - t0 < 2.0);
	/* Send to the closed peer. */
	T_EQ(shmp_conn_send(A, "x", 1, 0), -SHMP_ECLOSED);
	T_EQ(shmp_conn_send(A, "x", 1, SHMP_FOREVER), -SHMP_ECLOSED);
	/* Our own end, closed: everything says closed; twice is fine. */
	T_EQ(shmp_conn_close(A), 0);
	T_EQ(shmp_conn_close(A), 0);
	T_EQ(shmp_conn_send(A, "x", 1, 0), -SHMP_ECLOSED);
	T_EQ(shmp_conn_recv(A, buf, sizeof buf, &len, 0), -SHMP_ECLOSED);
	T_EQ(shmp_conn_poll(A, 0), -SHMP_ECLOSED);
	rmpipe();

	/* A recv blocked when the other process closes wakes with EOF. */
	mkpipe(NULL);
	c = t_spawn(late_closer, NULL);
	T_EQ(shmp_conn_close(B), 0);
	T_EQ(t_await(up[0], 10), 1);
	t0 = t_now();
	T_EQ(shmp_conn_recv(A, buf, sizeof buf, &len, 10.0), -SHMP_ECLOSED);
	T_CHECK(t_now() - t0 < 5.0);
	t_wait_ok(c, 10);
	rmpipe();

	/* The parent closes its end: the child sees end of file. */
	mkpipe(NULL);
	T_EQ(shmp_conn_close(A), 0);
	c = t_spawn(sees_closed, NULL);
	t_wait_ok(c, 20);
	rmpipe();
}

/* ---- the peer dies without closing ------------------------------------------- */

static int dies_after_send(void *arg)
{
	(void)arg;
	for (int i = 0; i < 2; i++)
		if (shmp_conn_send(B, i ? "bye" : "hi", i ? 3 : 2, 10.0) != 0)
			return 1;
	/* Die a while later, so the parent is (likely) blocked in recv. */
	t_sleep_ms(200);
	raise(SIGKILL);
	return 2;
}

static int dies_after_recv(void *arg)
{
	(void)arg;
	char buf[8];
	size_t len;
	if (shmp_conn_recv(B, buf, sizeof buf, &len, 10.0) != 0)
		return 1;
	t_signal(up[1]);
	/* The parent has filled the pipe; die a while later, so it is
	 * (likely) blocked in send by then. */
	struct pollfd p = { .fd = down[0], .events = POLLIN };
	if (poll(&p, 1, 10000) != 1)
		return 3;
	t_sleep_ms(200);
	raise(SIGKILL);
	return 2;
}

static void test_peer_death(void)
{
	char buf[16];
	size_t len;

	/* Blocked recv: what it sent first, then end of file. */
	mkpipe(NULL);
	pid_t c = t_spawn(dies_after_send, NULL);
	T_EQ(shmp_conn_close(B), 0); /* the child is b's only holder */
	T_EQ(shmp_conn_recv(A, buf, sizeof buf, &len, 10.0), 0);
	T_EQ(len, 2);
	T_CHECK(memcmp(buf, "hi", 2) == 0);
	T_EQ(shmp_conn_recv(A, buf, sizeof buf, &len, 10.0), 0);
	T_EQ(len, 3);
	double t0 = t_now();
	int r = shmp_conn_recv(A, buf, sizeof buf, &len, 10.0);
	double dt = t_now() - t0;
	T_EQ(r, -SHMP_ECLOSED);
	T_CHECK(dt < 2.0); /* ~0.2 s until the death, then ~0.1 s to see it */
	printf("recv saw the dead peer after %.3f s\n", dt);
	T_EQ(shmp_conn_recv(A, buf, sizeof buf, &len, 0), -SHMP_ECLOSED);
	T_EQ(shmp_conn_poll(A, 0), 1);
	T_EQ(shmp_conn_poll(A, 5.0), 1);
	t_wait_killed(c, 10); /* reaped: the pid is gone now, not a zombie */
	T_EQ(shmp_conn_recv(A, buf, sizeof buf, &len, 5.0), -SHMP_ECLOSED);
	/* "send() then fails with -SHMP_ECLOSED too". Checked softly, so
	 * that the rest of the test still runs. */
	soft_eq(__LINE__, shmp_conn_send(A, "x", 1, 0), -SHMP_ECLOSED);
	soft_eq(__LINE__, shmp_conn_send(A, "x", 1, 1.0), -SHMP_ECLOSED);
	rmpipe();

	/* A send blocked on the full pipe of a peer that dies. */
	mkpipe(&SHMP_OPTS(shmp_pipe_opts, .capacity = 2));
	T_EQ(shmp_conn_send(A, "go", 2, 0), 0);
	c = t_spawn(dies_after_recv, NULL);
	T_EQ(shmp_conn_close(B), 0);
	T_EQ(t_await(up[0], 10), 1);
	T_EQ(shmp_conn_send(A, "1", 1, 0), 0);
	T_EQ(shmp_conn_send(A, "2", 1, 0), 0);
	t_signal(down[1]);
	t0 = t_now();
	r = shmp_conn_send(A, "3", 1, 10.0);
	dt = t_now() - t0;
	T_EQ(r, -SHMP_ECLOSED);
	T_CHECK(dt < 2.0);
	t_wait_killed(c, 10);
	rmpipe();
}

/* ---- arguments --------------------------------------------------------------- */

static void test_args(void)
{
	shmp_conn_t *a = NULL, *b = NULL;
	char buf[8];
	size_t len;
	T_EQ(shmp_pipe_create(NULL, &b, NULL), -EINVAL);
	T_EQ(shmp_pipe_create(&a, NULL, NULL), -EINVAL);
	T_EQ(shmp_pipe_create(&a, &b, &(struct shmp_pipe_opts){ .sz = 0 }), -EINVAL);
	T_EQ(shmp_conn_send(NULL, "x", 1, 0), -EINVAL);
	T_EQ(shmp_conn_recv(NULL, buf, sizeof buf, &len, 0), -EINVAL);
	T_EQ(shmp_conn_poll(NULL, 0), -EINVAL);
	T_EQ(shmp_conn_close(NULL), -EINVAL);
	shmp_conn_destroy(NULL);
	mkpipe(NULL);
	T_EQ(shmp_conn_send(A, NULL, 1, 0), -EINVAL);
	T_EQ(shmp_conn_send(A, "x", 1, 0), 0);
	T_EQ(shmp_conn_recv(B, buf, sizeof buf, NULL, 0), -EINVAL);
	T_EQ(shmp_conn_recv(B, NULL, 4, &len, 0), -EINVAL);
	T_EQ(shmp_conn_poll(B, 0), 1); /* still there */
	rmpipe();
}

int main(void)
{
	t_watchdog(90);
	T_CHECK(pipe(up) == 0 && pipe(down) == 0);
	T_CHECK(shmp_segment_default());
	uint64_t base = t_live_blocks(shmp_segment_default());

	test_args();
	test_duplex();
	test_one_way();
	test_sizes();
	test_poll();
	test_eof();
	T_EQ(t_live_blocks(shmp_segment_default()), base);
	test_peer_death();
	T_EQ(t_live_blocks(shmp_segment_default()), base);

	/* Destroying both ends frees the pipe, with a 1 MiB message unread. */
	mkpipe(NULL);
	T_CHECK(t_live_blocks(shmp_segment_default()) > base);
	unsigned char *m = calloc(1, (size_t)1 << 20);
	T_CHECK(m);
	T_EQ(shmp_conn_send(A, m, (size_t)1 << 20, 0), 0);
	T_EQ(shmp_conn_send(B, m, 200, 0), 0);
	free(m);
	uint64_t in_use = t_live_blocks(shmp_segment_default());
	shmp_conn_destroy(A);
	T_EQ(t_live_blocks(shmp_segment_default()), in_use); /* one end left: nothing freed yet */
	shmp_conn_destroy(B);
	T_EQ(t_live_blocks(shmp_segment_default()), base);
	return failures ? 1 : 0;
}
