/* Test helpers: assertions that exit 1 with a location, a watchdog, unique
 * segment names, fork/wait with timeouts, children that die with the test,
 * shared counters, pipe signals, seeded randomness. Header-only, one test
 * per program. */
#ifndef SHMP_T_H
#define SHMP_T_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "shmp.h"

#define T_SKIP 77

#define T_CHECK(cond)                                                              \
	do {                                                                       \
		if (!(cond)) {                                                     \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			exit(1);                                                   \
		}                                                                  \
	} while (0)

/* Compare two integers, printing both (and error names) on failure. */
#define T_EQ(a, b)                                                                 \
	do {                                                                       \
		long long t_a_ = (long long)(a), t_b_ = (long long)(b);            \
		if (t_a_ != t_b_) {                                                \
			fprintf(stderr, "%s:%d: %s == %s failed: %lld vs %lld (%s / %s)\n", \
				__FILE__, __LINE__, #a, #b, t_a_, t_b_,            \
				shmp_strerror((int)t_a_), shmp_strerror((int)t_b_)); \
			exit(1);                                                   \
		}                                                                  \
	} while (0)

/* A call that must not wait returns `want` at once (under 0.5 s). */
#define T_FAST(call, want)                                                         \
	do {                                                                       \
		double t_t0_ = t_now();                                            \
		T_EQ((call), (want));                                              \
		T_CHECK(t_now() - t_t0_ < 0.5);                                    \
	} while (0)

/* A call that times out after 0.2 s returns `want` after about that time
 * (0.19 to 2 s). */
#define T_ABOUT(call, want)                                                        \
	do {                                                                       \
		double t_t0_ = t_now();                                            \
		T_EQ((call), (want));                                              \
		double t_dt_ = t_now() - t_t0_;                                    \
		if (t_dt_ < 0.19 || t_dt_ > 2.0)                                   \
			fprintf(stderr, "took %.3f s\n", t_dt_);                   \
		T_CHECK(t_dt_ >= 0.19 && t_dt_ < 2.0);                             \
	} while (0)

static inline double t_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static inline void t_sleep_ms(long ms)
{
	struct timespec t = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&t, &t) != 0 && errno == EINTR)
		;
}

/* A task that sleeps *(long *)arg ms and returns that + 1 (as a long): the
 * slow task of the interrupt tests, local and MPI. */
static inline int t_task_sleep_ms(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	(void)c;
	long ms = *(const long *)arg;
	t_sleep_ms(ms);
	*(long *)res = ms + 1;
	return 0;
}

/* Watchdog: the test dies (and fails) if it runs longer than `seconds`. */
static inline void t_watchdog(unsigned seconds)
{
	signal(SIGALRM, SIG_DFL);
	alarm(seconds);
}

/* A segment name unique to this test and process: "t<test>-<pid>-<tag>".
 * CTest's zz_no_leftover_segments fails if any "shmp.t*" is left. */
static inline const char *t_segname(const char *tag)
{
	static char buf[8][128];
	static int k;
	const char *prefix = getenv("SHMP_TEST_PREFIX");
	char *b = buf[k++ & 7];
	snprintf(b, 128, "%s-%d-%s", prefix && *prefix ? prefix : "tmanual", (int)getpid(), tag);
	return b;
}

/* Fork a child that runs fn(arg) and _exits with its return value. */
static inline pid_t t_fork(int (*fn)(void *), void *arg)
{
	fflush(NULL);
	pid_t p = fork();
	T_CHECK(p >= 0);
	if (p == 0)
		_exit(fn(arg));
	return p;
}

/* Wait for a child for at most `timeout` seconds; SIGKILL it if it overruns
 * and fail. Returns the raw wait status. */
static inline int t_wait(pid_t pid, double timeout)
{
	double until = t_now() + timeout;
	int st;
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return st;
		T_CHECK(r == 0);
		if (t_now() > until) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			fprintf(stderr, "child %d did not finish in %.1f s\n", (int)pid, timeout);
			exit(1);
		}
		t_sleep_ms(1);
	}
}

/* Run prog with args (NULL-terminated, at most 14) in a child that dies
 * with the test, its stdout and stderr going to *out (malloc'd, NUL-ended).
 * Its pid goes to *pid_out (may be NULL) before the wait; the raw wait
 * status is returned. Not done within timeout seconds: the end of its
 * output is printed, it is killed, and the test fails. */
static inline int t_run_capture(const char *prog, const char *const *args, char **out, double timeout,
				pid_t *pid_out)
{
	char path[] = "/tmp/t_run.XXXXXX";
	int fd = mkstemp(path);
	T_CHECK(fd >= 0);
	unlink(path);
	fflush(NULL);
	pid_t pid = fork();
	T_CHECK(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(fd, 1);
		dup2(fd, 2);
		char *argv[16];
		int k = 0;
		argv[k++] = (char *)prog;
		for (; args[k - 1] && k < 15; k++)
			argv[k] = (char *)args[k - 1];
		argv[k] = NULL;
		execv(prog, argv);
		_exit(127);
	}
	if (pid_out)
		*pid_out = pid;
	int st;
	double until = t_now() + timeout;
	while (waitpid(pid, &st, WNOHANG) == 0) {
		if (t_now() > until) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			off_t end = lseek(fd, 0, SEEK_END);
			char tail[4096];
			ssize_t n = pread(fd, tail, sizeof tail - 1, end > 4000 ? end - 4000 : 0);
			tail[n > 0 ? n : 0] = 0;
			fprintf(stderr, "%s\n-- %s hung: killed after %.0f s\n", tail, prog, timeout);
			exit(1);
		}
		t_sleep_ms(5);
	}
	off_t len = lseek(fd, 0, SEEK_END);
	T_CHECK(len >= 0);
	*out = malloc((size_t)len + 1);
	T_CHECK(*out);
	T_EQ(pread(fd, *out, (size_t)len, 0), len);
	(*out)[len] = 0;
	close(fd);
	return st;
}

/* A wait status as a shell's $?. */
static inline int t_exit_code(int st)
{
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Wait and require a normal exit with status 0. */
static inline void t_wait_ok(pid_t pid, double timeout)
{
	int st = t_wait(pid, timeout);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "child %d ended badly: %s %d\n", (int)pid,
			WIFEXITED(st) ? "exit" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
		exit(1);
	}
}

/* Every child of this process has been reaped: none running, no zombie. */
#define T_NO_CHILDREN()                                                            \
	do {                                                                       \
		errno = 0;                                                         \
		T_EQ(waitpid(-1, NULL, WNOHANG), -1);                              \
		T_EQ(errno, ECHILD);                                               \
	} while (0)

/* For a child that runs until killed: sleep in 20 ms steps while `parent` is
 * still our parent (a failing test leaves no such child behind); then 99. */
static inline int t_until_orphaned(pid_t parent)
{
	while (getppid() == parent)
		t_sleep_ms(20);
	return 99;
}

/* Wait for a child (at most `timeout` s) and require its death by SIGKILL. */
static inline void t_wait_killed(pid_t pid, double timeout)
{
	int st = t_wait(pid, timeout);
	if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL) {
		fprintf(stderr, "child %d ended by %s %d, not by SIGKILL\n", (int)pid,
			WIFEXITED(st) ? "exit" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
		exit(1);
	}
}

/* SIGKILL a child and reap it (at most `timeout` s); it must die of that. */
static inline void t_kill_reap(pid_t pid, double timeout)
{
	T_EQ(kill(pid, SIGKILL), 0);
	t_wait_killed(pid, timeout);
}

/* ---- children that die with the test ------------------------------------- */
#define T_MAX_KIDS 256

/* The children t_spawn started in process `owner`, for t_reap_all. */
struct t_kids {
	pid_t owner;
	int n;
	pid_t pid[T_MAX_KIDS];
};

/* This process's t_kids (static: one test per program). */
static inline struct t_kids *t_kids(void)
{
	static struct t_kids k;
	return &k;
}

/* Forget the pids that are no longer our unreaped children (WNOWAIT: a
 * zombie stays for its test to reap). */
static inline void t_kids_forget_reaped(struct t_kids *k)
{
	int j = 0;
	for (int i = 0; i < k->n; i++) {
		siginfo_t si;
		if (waitid(P_PID, (id_t)k->pid[i], &si, WEXITED | WNOHANG | WNOWAIT) == 0 ||
		    errno != ECHILD)
			k->pid[j++] = k->pid[i];
	}
	k->n = j;
}

/* Like t_fork, but the child dies with us (PR_SET_PDEATHSIG: a failed check
 * exits at once and must not leave a child blocked forever), and is recorded
 * for t_reap_all. */
static inline pid_t t_spawn(int (*fn)(void *), void *arg)
{
	struct t_kids *k = t_kids();
	pid_t parent = getpid();
	if (k->owner != parent) { /* inherited from our own parent: not ours */
		k->owner = parent;
		k->n = 0;
	}
	if (k->n == T_MAX_KIDS)
		t_kids_forget_reaped(k);
	T_CHECK(k->n < T_MAX_KIDS);
	fflush(NULL);
	pid_t p = fork();
	T_CHECK(p >= 0);
	if (p == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent) /* it died before prctl */
			_exit(99);
		_exit(fn(arg));
	}
	k->pid[k->n++] = p;
	return p;
}

/* For atexit(): SIGKILL and reap every t_spawn child still unreaped, only in
 * the process that spawned them (not in a child that exits). */
static inline void t_reap_all(void)
{
	struct t_kids *k = t_kids();
	if (getpid() != k->owner)
		return;
	for (int i = 0; i < k->n; i++) {
		int st;
		/* 0: still our unreaped child. -1 (ECHILD): reaped already. */
		if (waitpid(k->pid[i], &st, WNOHANG) == 0) {
			kill(k->pid[i], SIGKILL);
			waitpid(k->pid[i], &st, 0);
		}
	}
	k->n = 0;
}

/* ---- shared counters ----------------------------------------------------- */

/* A raw (lock-free) shared Array of n elements of typecode tc. */
static inline shmp_array_t *t_raw_array(char tc, size_t n)
{
	struct shmp_value_opts o = SHMP_OPTS(shmp_value_opts, .raw = 1);
	shmp_array_t *a = shmp_array_create(tc, n, NULL, &o);
	T_CHECK(a);
	return a;
}

/* A raw (lock-free) shared Value of typecode tc. */
static inline shmp_value_t *t_raw_value(char tc)
{
	struct shmp_value_opts o = SHMP_OPTS(shmp_value_opts, .raw = 1);
	shmp_value_t *v = shmp_value_create(tc, NULL, &o);
	T_CHECK(v);
	return v;
}

/* n shared int64 counters: a raw 'q' Array. */
static inline shmp_array_t *t_counters(size_t n)
{
	return t_raw_array('q', n);
}

/* a[i], loaded atomically; the load must succeed. */
static inline int64_t t_load(shmp_array_t *a, size_t i)
{
	int64_t x = 0;
	T_EQ(shmp_array_load(a, i, &x), 0);
	return x;
}

/* Poll until a[i] == want, for at most `timeout` seconds (file, line: the
 * caller's, for the message). */
static inline void t_wait_eq_at(shmp_array_t *a, size_t i, int64_t want, double timeout,
				const char *file, int line)
{
	double until = t_now() + timeout;
	while (t_load(a, i) != want) {
		if (t_now() > until) {
			fprintf(stderr, "%s:%d: a[%zu] = %lld, waited for %lld\n", file, line, i,
				(long long)t_load(a, i), (long long)want);
			exit(1);
		}
		t_sleep_ms(1);
	}
}
#define t_wait_eq(a, i, want, timeout) t_wait_eq_at(a, i, want, timeout, __FILE__, __LINE__)

/* ---- one-byte signals over pipes ----------------------------------------- */

/* Send a one-byte signal into a pipe's write end. */
static inline void t_signal(int fd)
{
	char c = 'x';
	T_EQ(write(fd, &c, 1), 1);
}

/* Take a signal from a pipe's read end, waiting at most `timeout` s (< 0: no
 * limit): 1 if a byte arrived, 0 if none in time, -1 on end of file. */
static inline int t_await(int fd, double timeout)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	double until = t_now() + timeout;
	for (;;) {
		int ms = (int)((until - t_now()) * 1000);
		int r = poll(&p, 1, timeout < 0 ? -1 : ms < 0 ? 0 : ms);
		if (r < 0 && errno == EINTR)
			continue;
		T_CHECK(r >= 0);
		if (r == 0)
			return 0;
		char c;
		ssize_t n = read(fd, &c, 1);
		if (n < 0 && errno == EINTR)
			continue;
		return n == 1 ? 1 : -1;
	}
}

/* ---- segments, message bytes, randomness --------------------------------- */

/* A segment's stats; the call must succeed. */
static inline struct shmp_segment_stats t_seg_stats(shmp_segment_t *seg)
{
	struct shmp_segment_stats st;
	T_EQ(shmp_segment_stats(seg, &st), 0);
	return st;
}

/* Blocks allocated in a segment right now. */
static inline uint64_t t_live_blocks(shmp_segment_t *seg)
{
	return t_seg_stats(seg).live_blocks;
}

/* Fill b with n bytes that are a function of seed and position. */
static inline void t_fill(unsigned char *b, size_t n, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < n; i++) {
		x = x * 1103515245u + 12345u;
		b[i] = (unsigned char)(x >> 24);
	}
}

/* 1 if b holds exactly what t_fill(b, n, seed) writes, else 0. */
static inline int t_filled(const unsigned char *b, size_t n, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < n; i++) {
		x = x * 1103515245u + 12345u;
		if (b[i] != (unsigned char)(x >> 24))
			return 0;
	}
	return 1;
}

/* t_rnd's xorshift64 state (set by t_seed). */
static inline uint64_t *t_rng(void)
{
	static uint64_t state;
	return &state;
}

/* Seed t_rnd from $T_SEED (to replay a run) or else the pid and the clock;
 * returns the seed, never 0. */
static inline uint64_t t_seed(void)
{
	const char *s = getenv("T_SEED");
	uint64_t x = s && *s ? strtoull(s, NULL, 0) : ((uint64_t)getpid() << 32) ^ (uint64_t)(t_now() * 1e9);
	if (!x)
		x = 1;
	*t_rng() = x;
	return x;
}

/* A pseudo-random number below n. */
static inline unsigned t_rnd(unsigned n)
{
	uint64_t *r = t_rng();
	*r ^= *r << 13;
	*r ^= *r >> 7;
	*r ^= *r << 17;
	return (unsigned)(*r % n);
}

/* ---- sync objects -------------------------------------------------------- */

/* Poll until `want` parties wait at barrier b, for at most 5 s (file, line:
 * the caller's, for the message). */
static inline void t_wait_n_waiting_at(shmp_barrier_t *b, int want, const char *file, int line)
{
	double until = t_now() + 5;
	while (shmp_barrier_n_waiting(b) != want) {
		if (t_now() > until) {
			fprintf(stderr, "%s:%d: n_waiting = %d (broken %d), waited for %d\n",
				file, line, shmp_barrier_n_waiting(b),
				shmp_barrier_is_broken(b), want);
			exit(1);
		}
		t_sleep_ms(1);
	}
}
#define t_wait_n_waiting(b, want) t_wait_n_waiting_at(b, want, __FILE__, __LINE__)

/* A child holding lock l for 300 ms (see t_holder_start). */
struct t_holder {
	shmp_lock_t *l;
	shmp_value_t *held;   /* raw 'i': child owns the lock */
	shmp_value_t *rel_at; /* raw 'd': CLOCK_MONOTONIC just before release */
};

/* The holder child: hold the lock 300 ms, stamp the time, release. */
static inline int t_holder_child(void *arg)
{
	struct t_holder *h = arg;
	if (shmp_lock_acquire(h->l, 5.0) != 0)
		return 1;
	shmp_value_store(h->held, 1);
	t_sleep_ms(300);
	shmp_value_set_f64(h->rel_at, t_now());
	return shmp_lock_release(h->l) == 0 ? 0 : 2;
}

/* Fork a holder of l (t_fork) and return once it owns the lock (10 s at most). */
static inline pid_t t_holder_start(struct t_holder *h, shmp_lock_t *l)
{
	h->l = l;
	h->held = t_raw_value('i');
	h->rel_at = t_raw_value('d');
	pid_t pid = t_fork(t_holder_child, h);
	int64_t held = 0;
	double until = t_now() + 10;
	while (shmp_value_load(h->held, &held) == 0 && !held) {
		if (t_now() > until) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			T_CHECK(!"child never took the lock");
		}
		t_sleep_ms(1);
	}
	return pid;
}

/* A call made between t0 and t1 (while the holder held the lock) returned
 * only after the holder's release: it waited for the lock. */
static inline void t_holder_waited(struct t_holder *h, double t0, double t1)
{
	double rel = 0;
	T_EQ(shmp_value_get_f64(h->rel_at, &rel), 0);
	/* The child stamped its release time before releasing. */
	if (!(rel > 0 && t1 >= rel)) {
		fprintf(stderr, "call returned at %.3f, child released at %.3f (t0 %.3f)\n", t1, rel, t0);
		T_CHECK(!"call did not wait for the lock");
	}
}

/* Reap the holder (a clean exit within 10 s) and free its values. */
static inline void t_holder_end(struct t_holder *h, pid_t pid)
{
	t_wait_ok(pid, 10);
	shmp_value_destroy(h->held);
	shmp_value_destroy(h->rel_at);
}


/* ---- pool tests ---------------------------------------------------------- */

static inline struct shmp_pool_stats t_pool_stats(shmp_pool_t *p)
{
	struct shmp_pool_stats st;
	memset(&st, 0, sizeof st);
	T_EQ(shmp_pool_stats(p, &st), 0);
	return st;
}

/* 1 if pid is gone or a zombie. */
static inline int t_dead_or_zombie(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 1;
	size_t len = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[len] = 0;
	char *rp = strrchr(buf, ')');
	return !rp || rp[2] == 'Z' || rp[2] == 'X';
}

/* The names in /dev/shm (strdup'ed), at most max. */
static inline int t_shm_list(char **names, int max)
{
	DIR *d = opendir("/dev/shm");
	if (!d)
		return 0;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) && n < max)
		if (de->d_name[0] != '.')
			names[n++] = strdup(de->d_name);
	closedir(d);
	return n;
}

/* Poll until *v == want (5 s at most). */
static inline void t_wait_atomic_at(atomic_int *v, int want, int line)
{
	double until = t_now() + 5;
	while (atomic_load(v) != want) {
		if (t_now() > until) {
			fprintf(stderr, "line %d: counter %d, waited for %d\n", line, atomic_load(v), want);
			exit(1);
		}
		t_sleep_ms(1);
	}
}
#define wait_atomic(v, want) t_wait_atomic_at(v, want, __LINE__)

/* Until thread `tid` (a process's pid for its main thread) sits in a
 * system call (a futex or poll wait, say) on three looks 5 ms apart, or
 * `timeout` seconds pass: 1 or 0. /proc/PID/task/TID/syscall says
 * "running" while it runs user code. For tests that signal a waiter: a
 * signal sent before the wait began is not an interrupt of the wait, and a
 * fixed sleep does not ensure the wait began on a loaded machine. */
static inline int t_await_in_syscall(pid_t tid, double timeout)
{
	char path[64], buf[64];
	snprintf(path, sizeof path, "/proc/%d/task/%d/syscall", (int)tid, (int)tid);
	double until = t_now() + timeout;
	int seen = 0;
	while (t_now() < until) {
		FILE *f = fopen(path, "r");
		if (!f)
			return 0;
		size_t n = fread(buf, 1, sizeof buf - 1, f);
		fclose(f);
		buf[n] = 0;
		seen = n && strncmp(buf, "running", 7) != 0 ? seen + 1 : 0;
		if (seen == 3)
			return 1;
		t_sleep_ms(5);
	}
	return 0;
}

#endif
