/* Pipe end of file follows the holders of the other end (include/shmp/
 * queue.h): every process forked while it holds an end holds it too, and
 * the other end sees end of file only once each holder has closed it or
 * died. One-way pipes, a receives in this process, b sends:
 * - CPython's case: a child sends and exits while this process still holds
 *   b: no end of file (recv times out, again and again); this process
 *   closes b: end of file at once, after the message;
 * - three children hold b (this process closed its copy): one closes b,
 *   one exits without closing, and the third still sends and is heard; its
 *   kill -9 then gives end of file within about a second, after every
 *   message each of them sent;
 * - kill -9 of holders one by one: no end of file until the last dies;
 * - a child forks a grandchild and at once closes b and exits: the
 *   grandchild still holds b (its slot was reserved before the fork), sends
 *   0.2 s later, is heard, then its exit gives end of file (20 rounds; in
 *   5, an atfork handler of the test delays the grandchild by 0.3 s before
 *   the library's own, so that the child is long dead and the reader has
 *   looked at the holders before the grandchild claims its slot);
 * - a fork that fails (seccomp makes clone return EAGAIN in a helper that
 *   holds b) leaves nothing reserved: once the helper has closed b, end of
 *   file comes while it is still alive;
 * - 70 holders (more than the 64 named slots: the rest are counted): no end
 *   of file while any of them still holds b, end of file once all 70
 *   closed;
 * - a duplex pipe: the end a child closes is still held by this process,
 *   so the child's sends to it go through. */
#include "t.h"

#include <pthread.h>
#include <stddef.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/syscall.h>

static shmp_conn_t *A, *B;
static int go[2]; /* this process -> children: one byte releases one */
static int up[2]; /* children -> this process */

static void mkpipe(int one_way)
{
	T_EQ(shmp_pipe_create(&A, &B, &SHMP_OPTS(shmp_pipe_opts, .one_way = one_way)), 0);
}

static void rmpipe(void)
{
	shmp_conn_destroy(A);
	shmp_conn_destroy(B);
}

/* recv on a: the next message must be `want`. */
static void expect_msg(const char *want, double timeout)
{
	char buf[64];
	size_t len = 0;
	T_EQ(shmp_conn_recv(A, buf, sizeof buf, &len, timeout), 0);
	T_EQ(len, strlen(want));
	T_CHECK(memcmp(buf, want, len) == 0);
}

/* a sees end of file within `within` seconds of now (blocking recv). */
static void expect_eof(double within)
{
	char buf[64];
	size_t len;
	double t0 = t_now();
	T_EQ(shmp_conn_recv(A, buf, sizeof buf, &len, 10), -SHMP_ECLOSED);
	double dt = t_now() - t0;
	if (dt > within)
		fprintf(stderr, "end of file after %.3f s\n", dt);
	T_CHECK(dt <= within);
	T_EQ(shmp_conn_poll(A, 0), 1);
}

/* No end of file: recv waits out its 0.2 s. */
static void expect_held(void)
{
	char buf[64];
	size_t len;
	T_ABOUT(shmp_conn_recv(A, buf, sizeof buf, &len, 0.2), -ETIMEDOUT);
	T_EQ(shmp_conn_poll(A, 0), 0);
}

/* ---- CPython's case ------------------------------------------------------- */

static int send_and_exit(void *arg)
{
	return shmp_conn_send(B, arg, strlen(arg), 5) == 0 ? 0 : 1;
}

static void test_cpython(void)
{
	mkpipe(1);
	pid_t c = t_spawn(send_and_exit, "from child");
	t_wait_ok(c, 10);
	expect_msg("from child", 5);
	expect_held();
	expect_held(); /* the holder check has run by now, several times */
	T_EQ(shmp_conn_send(B, "still mine", 10, 0), 0);
	expect_msg("still mine", 0);
	T_EQ(shmp_conn_close(B), 0);
	expect_eof(0.5);
	rmpipe();
}

/* ---- several holders -------------------------------------------------------- */

enum { CLOSE_THEN_WAIT, EXIT_AT_ONCE, SEND_LATER };

static int holder(void *arg)
{
	int how = (int)(intptr_t)arg;
	char m[32];
	snprintf(m, sizeof m, "hello %d", how);
	if (shmp_conn_send(B, m, strlen(m), 5) != 0)
		return 1;
	if (how == EXIT_AT_ONCE)
		return 0;
	if (how == CLOSE_THEN_WAIT) {
		if (shmp_conn_close(B) != 0 || shmp_conn_send(B, "x", 1, 0) != -SHMP_ECLOSED)
			return 2;
		t_signal(up[1]);
		return t_until_orphaned(getppid()) == 99 ? 0 : 3;
	}
	if (t_await(go[0], 10) != 1 || shmp_conn_send(B, "later", 5, 5) != 0)
		return 4;
	t_signal(up[1]);
	return t_until_orphaned(getppid()) == 99 ? 0 : 5;
}

static void test_several(void)
{
	mkpipe(1);
	pid_t closer = t_spawn(holder, (void *)(intptr_t)CLOSE_THEN_WAIT);
	pid_t exiter = t_spawn(holder, (void *)(intptr_t)EXIT_AT_ONCE);
	pid_t later = t_spawn(holder, (void *)(intptr_t)SEND_LATER);
	T_EQ(shmp_conn_close(B), 0); /* Python's idiom: the children hold it */
	T_EQ(t_await(up[0], 10), 1);  /* the closer has closed */
	t_wait_ok(exiter, 10);
	int seen[3] = { 0 };
	for (int i = 0; i < 3; i++) {
		char buf[64];
		size_t len;
		T_EQ(shmp_conn_recv(A, buf, sizeof buf, &len, 5), 0);
		T_CHECK(len == 7 && memcmp(buf, "hello ", 6) == 0 && buf[6] >= '0' && buf[6] <= '2');
		seen[buf[6] - '0']++;
	}
	T_CHECK(seen[0] == 1 && seen[1] == 1 && seen[2] == 1);
	expect_held(); /* one closed, one exited: the third holds b */
	t_signal(go[1]);
	T_EQ(t_await(up[0], 10), 1);
	expect_msg("later", 5);
	expect_held();
	t_kill_reap(later, 10);
	expect_eof(1.5);
	t_kill_reap(closer, 10);
	rmpipe();
}

/* ---- kill -9, one by one ---------------------------------------------------- */

static int idle_holder(void *arg)
{
	(void)arg;
	t_signal(up[1]);
	return t_until_orphaned(getppid());
}

static void test_kills(void)
{
	mkpipe(1);
	pid_t kids[3];
	for (int i = 0; i < 3; i++)
		kids[i] = t_spawn(idle_holder, NULL);
	for (int i = 0; i < 3; i++)
		T_EQ(t_await(up[0], 10), 1);
	T_EQ(shmp_conn_close(B), 0);
	expect_held();
	T_EQ(kill(kids[0], SIGKILL), 0); /* a zombie until reaped: dead all the same */
	expect_held();
	t_wait_killed(kids[0], 10);
	t_kill_reap(kids[1], 10);
	expect_held();
	T_EQ(kill(kids[2], SIGKILL), 0);
	expect_eof(1.5);
	t_wait_killed(kids[2], 10);
	rmpipe();
}

/* ---- a grandchild whose parent closes at once ------------------------------- */

static int grandchild(void *arg)
{
	(void)arg;
	t_sleep_ms(200);
	return shmp_conn_send(B, "grandchild", 10, 5) == 0 ? 0 : 1;
}

/* Set in a child just before it forks: the grandchild's first atfork
 * handler (the test's, registered before the library's) sleeps. */
static volatile int slow_grandchild;
static void test_atfork_child(void)
{
	if (slow_grandchild) {
		struct timespec t = { 0, 300000000L };
		while (nanosleep(&t, &t) != 0 && errno == EINTR)
			;
	}
}

static int forks_then_closes(void *arg)
{
	slow_grandchild = arg != NULL;
	fflush(NULL);
	pid_t g = fork();
	if (g < 0)
		return 1;
	if (g == 0)
		_exit(grandchild(NULL));
	/* At once, before the grandchild may have run at all. */
	shmp_conn_close(B);
	shmp_conn_close(A);
	_exit(0); /* the grandchild is reparented; this test reaps nothing of it */
}

static void test_grandchild(void)
{
	for (int round = 0; round < 20; round++) {
		mkpipe(1);
		pid_t c = t_spawn(forks_then_closes, round < 5 ? "slow" : NULL);
		T_EQ(shmp_conn_close(B), 0);
		t_wait_ok(c, 10);
		expect_msg("grandchild", 5);
		expect_eof(1.5);
		rmpipe();
	}
}

/* ---- a fork that fails ------------------------------------------------------ */

/* Make clone/fork fail with EAGAIN in this process from now on. 0, or -1
 * where seccomp is not available. */
static int forbid_fork(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 4, 0),
#ifdef SYS_clone3
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone3, 3, 0),
#else
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 3, 0),
#endif
#ifdef SYS_fork
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_fork, 2, 0),
#else
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 2, 0),
#endif
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EAGAIN),
	};
	struct sock_fprog prog = { .len = sizeof f / sizeof f[0], .filter = f };
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		return -1;
	return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) == 0 ? 0 : -1;
}

static int fork_fails(void *arg)
{
	(void)arg;
	if (forbid_fork() != 0) {
		char c = 's';
		return write(up[1], &c, 1) == 1 ? T_SKIP : 4;
	}
	errno = 0;
	pid_t p = fork();
	if (p == 0)
		_exit(0);
	if (p > 0 || errno != EAGAIN)
		return 1;
	if (shmp_conn_close(B) != 0)
		return 2;
	t_signal(up[1]);
	return t_until_orphaned(getppid()) == 99 ? 0 : 3;
}

static void test_failed_fork(void)
{
	mkpipe(1);
	pid_t h = t_spawn(fork_fails, NULL);
	T_EQ(shmp_conn_close(B), 0);
	char c = 0;
	struct pollfd pf = { .fd = up[0], .events = POLLIN };
	T_EQ(poll(&pf, 1, 10000), 1);
	T_EQ(read(up[0], &c, 1), 1);
	if (c == 's') {
		int st = t_wait(h, 10);
		T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == T_SKIP);
		printf("seccomp unavailable: the failed-fork case is skipped\n");
		rmpipe();
		return;
	}
	/* The helper lives and holds nothing: no reservation left behind. */
	expect_eof(1.5);
	T_CHECK(!t_dead_or_zombie(h));
	t_kill_reap(h, 10);
	rmpipe();
}

/* ---- more holders than named slots ------------------------------------------ */

#define MANY 70

static int many_holder(void *arg)
{
	(void)arg;
	if (t_await(go[0], 30) != 1)
		return 1;
	if (shmp_conn_close(B) != 0)
		return 2;
	t_signal(up[1]);
	return 0;
}

static void test_many(void)
{
	mkpipe(1);
	pid_t kids[MANY];
	for (int i = 0; i < MANY; i++)
		kids[i] = t_spawn(many_holder, NULL);
	T_EQ(shmp_conn_close(B), 0);
	for (int i = 0; i < MANY; i++) {
		t_signal(go[1]);
		T_EQ(t_await(up[0], 10), 1);
		if (i == 0 || i == 62 || i == 63 || i == MANY - 2) {
			/* Held: by named holders first, by counted ones last. */
			char buf[8];
			size_t len;
			T_EQ(shmp_conn_recv(A, buf, sizeof buf, &len, 0.05), -ETIMEDOUT);
		}
	}
	expect_eof(0.5);
	for (int i = 0; i < MANY; i++)
		t_wait_ok(kids[i], 10);
	rmpipe();
}

/* ---- duplex -------------------------------------------------------------------- */

static int duplex_child(void *arg)
{
	(void)arg;
	/* We only use b: close our copy of a. This process... */
	if (shmp_conn_close(A) != 0)
		return 1;
	/* ... still holds a, so a is not gone. */
	if (shmp_conn_send(B, "to a", 4, 5) != 0)
		return 2;
	char buf[8];
	size_t len;
	if (shmp_conn_recv(B, buf, sizeof buf, &len, 5) != 0 || len != 4 || memcmp(buf, "to b", 4) != 0)
		return 3;
	return 0;
}

static void test_duplex(void)
{
	mkpipe(0);
	pid_t c = t_spawn(duplex_child, NULL);
	T_EQ(shmp_conn_close(B), 0);
	expect_msg("to a", 5);
	T_EQ(shmp_conn_send(A, "to b", 4, 5), 0);
	t_wait_ok(c, 10);
	expect_eof(1.5);
	rmpipe();
}

int main(void)
{
	t_watchdog(150);
	atexit(t_reap_all);
	/* Before any pipe exists, so before the library's handler. */
	T_EQ(pthread_atfork(NULL, NULL, test_atfork_child), 0);
	T_CHECK(pipe(go) == 0 && pipe(up) == 0);
	uint64_t base = t_live_blocks(shmp_segment_default());
	test_cpython();
	test_several();
	test_kills();
	test_grandchild();
	test_failed_fork();
	test_many();
	test_duplex();
	T_EQ(t_live_blocks(shmp_segment_default()), base);
	T_NO_CHILDREN();
	return 0;
}
