/* Process file descriptors: the pidfd is not readable while the child runs
 * and becomes readable when it ends, so one poll() waits on several children
 * and sees them end in order; the pidfd is stable and owned by the handle;
 * creating, starting, joining and destroying 200 processes (and 20 daemons
 * destroyed while running) leaves the number of open descriptors unchanged. */
#include "t.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>

static pid_t g_parent;

struct sleeper {
	shmp_event_t *go;
	int delay_ms;
	int code;
};

/* Wait for the common start, sleep this child's delay, exit with its code. */
static int child_sleeper(void *arg)
{
	struct sleeper *s = arg;
	while (shmp_event_wait(s->go, 0.05) == -ETIMEDOUT)
		if (getppid() != g_parent)
			return 99;
	t_sleep_ms(s->delay_ms);
	return s->code;
}

static int child_forever(void *arg)
{
	(void)arg;
	return t_until_orphaned(g_parent);
}

static int child_ret0(void *arg)
{
	(void)arg;
	return 0;
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	T_CHECK(d);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

#define N_POLL 4

static void test_poll_order(void)
{
	shmp_event_t *go = shmp_event_create(NULL);
	T_CHECK(go);
	struct sleeper s[N_POLL];
	shmp_process_t *p[N_POLL];
	struct pollfd pf[N_POLL];
	/* 250 ms apart: ends far enough apart to be told apart by one poller
	 * on a busy machine. Started in reverse so start order is not exit order. */
	for (int k = N_POLL - 1; k >= 0; k--) {
		s[k] = (struct sleeper){ go, 50 + 250 * k, 10 + k };
		p[k] = shmp_process_create(child_sleeper, &s[k], NULL);
		T_CHECK(p[k]);
		T_EQ(shmp_process_pidfd(p[k]), -EINVAL);
		T_EQ(shmp_process_start(p[k]), 0);
		int fd = shmp_process_pidfd(p[k]);
		if (fd == -EINVAL) {
			/* Kernel without pidfd_open (< 5.3). */
			for (int j = N_POLL - 1; j >= k; j--) {
				shmp_process_kill(p[j]);
				shmp_process_join(p[j], 10);
				shmp_process_destroy(p[j]);
			}
			shmp_event_destroy(go);
			fprintf(stderr, "no pidfd on this kernel\n");
			exit(T_SKIP);
		}
		T_CHECK(fd >= 0);
		T_EQ(shmp_process_pidfd(p[k]), fd);
		pf[k] = (struct pollfd){ .fd = fd, .events = POLLIN };
	}
	/* All alive and waiting: nothing is readable yet. */
	T_EQ(poll(pf, N_POLL, 0), 0);

	T_EQ(shmp_event_set(go), 0);
	int order[N_POLL], n_done = 0, done[N_POLL] = { 0 };
	double until = t_now() + 15;
	while (n_done < N_POLL) {
		T_CHECK(t_now() < until);
		for (int k = 0; k < N_POLL; k++) /* negative fd: poll skips it */
			pf[k].fd = done[k] ? -1 : shmp_process_pidfd(p[k]);
		int r = poll(pf, N_POLL, 1000);
		T_CHECK(r >= 0 || errno == EINTR);
		for (int k = 0; k < N_POLL; k++) {
			if (!done[k] && (pf[k].revents & POLLIN)) {
				done[k] = 1;
				order[n_done++] = k;
				/* Readable means ended: exitcode is there without blocking. */
				int code = -1;
				T_EQ(shmp_process_exitcode(p[k], &code), 1);
				T_EQ(code, 10 + k);
				T_EQ(shmp_process_is_alive(p[k]), 0);
			}
		}
	}
	for (int k = 0; k < N_POLL; k++)
		T_EQ(order[k], k);
	for (int k = 0; k < N_POLL; k++) {
		T_EQ(shmp_process_join(p[k], 0), 0);
		shmp_process_destroy(p[k]);
	}
	shmp_event_destroy(go);
}

static void test_no_fd_growth(void)
{
	/* Make the library's lazily created things (default segment, hooks)
	 * exist before the first count. */
	shmp_process_t *p = shmp_process_create(child_ret0, NULL, NULL);
	T_CHECK(p);
	T_EQ(shmp_process_start(p), 0);
	T_EQ(shmp_process_join(p, 10), 0);
	shmp_process_destroy(p);

	int before = count_fds();
	for (int i = 0; i < 200; i++) {
		p = shmp_process_create(child_ret0, NULL, NULL);
		T_CHECK(p);
		T_EQ(shmp_process_start(p), 0);
		T_EQ(shmp_process_join(p, 10), 0);
		int code = -1;
		T_EQ(shmp_process_exitcode(p, &code), 1);
		T_EQ(code, 0);
		shmp_process_destroy(p);
	}
	T_EQ(count_fds(), before);

	/* Daemons destroyed while running: killed and reaped, pidfd closed. */
	struct shmp_process_opts o = SHMP_OPTS(shmp_process_opts, .daemon = 1);
	for (int i = 0; i < 20; i++) {
		p = shmp_process_create(child_forever, NULL, &o);
		T_CHECK(p);
		T_EQ(shmp_process_start(p), 0);
		shmp_process_destroy(p);
	}
	T_EQ(count_fds(), before);
	/* A handle destroyed without ever starting holds nothing either. */
	for (int i = 0; i < 20; i++)
		shmp_process_destroy(shmp_process_create(child_ret0, NULL, NULL));
	T_EQ(count_fds(), before);
}

int main(void)
{
	t_watchdog(60);
	g_parent = getpid();
	test_poll_order();
	test_no_fd_growth();
	T_NO_CHILDREN();
	return 0;
}
