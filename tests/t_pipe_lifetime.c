/* Pipe ends follow the one lifetime rule (src/core/internal.h): destroying a
 * conn releases this process's handle; the shared pipe is freed by its
 * creating process once it has destroyed both of its ends; a forked
 * child's destroy never frees it. Counted in live blocks of the default
 * segment (a pipe is two rings, their slot arrays and its shared state;
 * large messages add a block each while unread):
 * - a child destroys both inherited ends (a then b, or b then a): not one
 *   block is freed, in the child or here; this process goes on sending and
 *   receiving both ways, 1 MiB messages too, and a second child forked
 *   afterwards uses the pipe with it;
 * - a child that exits without destroying frees nothing either;
 * - here, destroying a frees nothing (b is still ours), destroying b
 *   returns the segment to exactly its count before create: freed once,
 *   with a 1 MiB message still unread in it. */
#include "t.h"

static shmp_conn_t *A, *B;
static uint64_t created; /* live blocks with the pipe made */

static int destroy_both(void *arg)
{
	int order = (int)(intptr_t)arg;
	shmp_segment_t *seg = shmp_segment_default();
	if (t_live_blocks(seg) != created)
		return 1;
	shmp_conn_destroy(order ? B : A);
	if (t_live_blocks(seg) != created)
		return 2;
	shmp_conn_destroy(order ? A : B);
	if (t_live_blocks(seg) != created)
		return 3;
	return 0;
}

static int just_exit(void *arg)
{
	(void)arg;
	return shmp_conn_send(B, "bye", 3, 5) == 0 ? 0 : 1;
}

/* A second child, forked after the first destroyed its copies. */
static int echo(void *arg)
{
	(void)arg;
	char buf[16];
	size_t len;
	if (shmp_conn_recv(B, buf, sizeof buf, &len, 5) != 0)
		return 1;
	if (shmp_conn_send(B, buf, len, 5) != 0)
		return 2;
	shmp_conn_destroy(A);
	shmp_conn_destroy(B);
	return 0;
}

/* Both ways and big, in this process. */
static void use_pipe(void)
{
	static unsigned char big[1 << 20], got[1 << 20];
	size_t len;
	t_fill(big, sizeof big, 7);
	T_EQ(shmp_conn_send(A, big, sizeof big, 5), 0);
	T_EQ(shmp_conn_recv(B, got, sizeof got, &len, 5), 0);
	T_EQ(len, sizeof big);
	T_CHECK(t_filled(got, len, 7));
	T_EQ(shmp_conn_send(B, "ab", 2, 5), 0);
	T_EQ(shmp_conn_recv(A, got, sizeof got, &len, 5), 0);
	T_CHECK(len == 2 && memcmp(got, "ab", 2) == 0);
}

int main(void)
{
	t_watchdog(60);
	atexit(t_reap_all);
	shmp_segment_t *seg = shmp_segment_default();
	T_CHECK(seg);
	uint64_t base = t_live_blocks(seg);
	T_EQ(shmp_pipe_create(&A, &B, NULL), 0);
	created = t_live_blocks(seg);
	T_CHECK(created > base);

	for (int order = 0; order < 2; order++) {
		t_wait_ok(t_spawn(destroy_both, (void *)(intptr_t)order), 10);
		T_EQ(t_live_blocks(seg), created);
		use_pipe();
		T_EQ(t_live_blocks(seg), created);
	}
	pid_t c = t_spawn(just_exit, NULL);
	t_wait_ok(c, 10);
	char buf[16];
	size_t len;
	T_EQ(shmp_conn_recv(A, buf, sizeof buf, &len, 5), 0);
	T_CHECK(len == 3 && memcmp(buf, "bye", 3) == 0);
	T_EQ(t_live_blocks(seg), created);

	c = t_spawn(echo, NULL);
	T_EQ(shmp_conn_send(A, "echo", 4, 5), 0);
	T_EQ(shmp_conn_recv(A, buf, sizeof buf, &len, 5), 0);
	T_CHECK(len == 4 && memcmp(buf, "echo", 4) == 0);
	t_wait_ok(c, 10);
	T_EQ(t_live_blocks(seg), created);

	/* Freed here, once: a 1 MiB message left unread in it. */
	static unsigned char big[1 << 20];
	T_EQ(shmp_conn_send(A, big, sizeof big, 5), 0);
	T_EQ(t_live_blocks(seg), created + 1);
	shmp_conn_destroy(A);
	T_EQ(t_live_blocks(seg), created + 1); /* b is still ours */
	shmp_conn_destroy(B);
	T_EQ(t_live_blocks(seg), base);
	T_NO_CHILDREN();
	return 0;
}
