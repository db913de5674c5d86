/* private: Process — fork, pidfd, join, exit codes, and reaping of children
 * whose handle was destroyed while they ran.
 *
 * Whom we act on: a child is signalled through its pidfd (pidfd_send_signal;
 * kill() on the pid only on kernels without pidfds), and waited for and
 * reaped by the pid fork() returned, kept in the handle: private memory,
 * never shared. Unreaped, that pid cannot name anyone else.
 *
 * How a child ends: fn's return value goes to exit(), so the handlers the
 * child registered itself (atexit, on_exit) run, newest first. Right after
 * the fork the child registers one more, before any of its own: glibc runs
 * the list newest first, so it runs after all of the child's and before
 * every handler inherited from the parent, flushes stdio and _exit()s with
 * the status. The parent's handlers never run in the child (Python 3.12's
 * rule), whether fn returns or calls exit(n). (glibc; a libc without
 * on_exit keeps the old way: fn's return runs no handler at all.) */
#include "internal.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>

struct shmp_process {
	shmp_process_fn fn;
	void *arg;
	struct shmp_process_opts opts;
	pid_t pid;
	int pidfd;
	bool started, ended;
	int exitcode;
};

/* Children whose handle is gone but who still ran: reaped as they end. */
static pthread_mutex_t orphans_mu = PTHREAD_MUTEX_INITIALIZER;
static pid_t *orphans;
static size_t n_orphans, cap_orphans;
static _Atomic bool have_orphans; /* a lock-free look for the common case: none */

static void reap_orphans(void)
{
	if (!atomic_load_explicit(&have_orphans, memory_order_relaxed))
		return;
	pthread_mutex_lock(&orphans_mu);
	for (size_t i = 0; i < n_orphans;) {
		pid_t r = waitpid(orphans[i], NULL, WNOHANG);
		if (r == orphans[i] || (r < 0 && errno == ECHILD))
			orphans[i] = orphans[--n_orphans];
		else
			i++;
	}
	atomic_store_explicit(&have_orphans, n_orphans != 0, memory_order_relaxed);
	pthread_mutex_unlock(&orphans_mu);
}

static void add_orphan(pid_t pid)
{
	pthread_mutex_lock(&orphans_mu);
	if (n_orphans == cap_orphans) {
		size_t cap = cap_orphans ? cap_orphans * 2 : 16;
		pid_t *p = realloc(orphans, cap * sizeof *p);
		if (p) {
			orphans = p;
			cap_orphans = cap;
		}
	}
	if (n_orphans < cap_orphans)
		orphans[n_orphans++] = pid;
	atomic_store_explicit(&have_orphans, n_orphans != 0, memory_order_relaxed);
	pthread_mutex_unlock(&orphans_mu);
}

static void orphans_at_exit(void)
{
	reap_orphans();
}

static void orphans_reset_in_child(void)
{
	/* A child does not inherit its parent's children. */
	n_orphans = 0;
	pthread_mutex_init(&orphans_mu, NULL);
}

static pthread_once_t hooks_once = PTHREAD_ONCE_INIT;
static void install_hooks(void)
{
	atexit(orphans_at_exit);
	pthread_atfork(NULL, NULL, orphans_reset_in_child);
}

shmp_process_t *shmp_process_create(shmp_process_fn fn, void *arg, const struct shmp_process_opts *opts)
{
	struct shmp_process_opts o;
	if (!fn || SHMP__OPTS(o, opts) < 0) {
		errno = EINVAL;
		return NULL;
	}
	pthread_once(&hooks_once, install_hooks);
	reap_orphans();
	shmp_process_t *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	p->fn = fn;
	p->arg = arg;
	p->pidfd = -1;
	p->opts = o;
	return p;
}

#ifdef __GLIBC__
/* Runs after the child's own exit handlers and before the parent's (see
 * the top of the file): what exit() would still do for stdio, then out. */
static void child_exit_hook(int status, void *arg)
{
	(void)arg;
	fflush(NULL);
	_exit(status & 0xff);
}
#endif

int shmp_process_start(shmp_process_t *p)
{
	reap_orphans();
	if (!p)
		return -EINVAL;
	if (p->started)
		return -EALREADY;
	pid_t parent = getpid();
	fflush(NULL); /* buffered output must not be written twice */
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		if (p->opts.die_with_parent) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != parent) /* died before the prctl: as if after */
				raise(SIGKILL);
		}
#ifdef __GLIBC__
		bool hooked = on_exit(child_exit_hook, NULL) == 0;
#else
		bool hooked = false; /* no on_exit(): fn's return skips every handler */
#endif
		int code = p->fn(p->arg);
		if (hooked)
			exit(code & 0xff); /* the child's own handlers, then the hook */
		fflush(NULL);
		_exit(code & 0xff);
	}
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);
	p->pid = pid;
	p->pidfd = fd >= 0 ? fd : -1; /* kernels before 5.3: joins still work by pid */
	p->started = true;
	return 0;
}

static void record(shmp_process_t *p, int status)
{
	p->ended = true;
	if (WIFEXITED(status))
		p->exitcode = WEXITSTATUS(status);
	else if (WIFSIGNALED(status))
		p->exitcode = -WTERMSIG(status);
}

/* Reap without blocking; true if the child has ended. */
static bool poll_child(shmp_process_t *p)
{
	if (!p->started)
		return false;
	if (p->ended)
		return true;
	int status;
	pid_t r = waitpid(p->pid, &status, WNOHANG);
	if (r == p->pid) {
		record(p, status);
	} else if (r < 0 && errno == ECHILD) {
		p->ended = true; /* reaped by someone else (SIGCHLD ignored?) */
		p->exitcode = 0;
	}
	return p->ended;
}

/* Sleep until the child may have ended, at most until `until`: on its
 * pidfd, or in 1 ms naps without one (kernels before 5.3). Both are
 * interrupted, not restarted, when a signal handler runs, SA_RESTART or
 * not: -EINTR then, else 0. */
static int wait_slice(shmp_process_t *p, struct timespec until)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	long ms = (long)(until.tv_sec - now.tv_sec) * 1000 + (until.tv_nsec - now.tv_nsec) / 1000000 + 1;
	if (p->pidfd >= 0) {
		struct pollfd pf = { .fd = p->pidfd, .events = POLLIN };
		return poll(&pf, 1, (int)(ms < 0 ? 0 : ms)) < 0 ? -errno : 0;
	}
	struct timespec nap = { 0, 1000000L };
	return nanosleep(&nap, NULL) < 0 ? -errno : 0;
}

int shmp_process_join(shmp_process_t *p, double timeout)
{
	reap_orphans();
	if (!p || !p->started)
		return -EINVAL;
	struct shmp__deadline d;
	if (shmp__deadline_init(&d, timeout) < 0)
		return -EINVAL;
	if (d.kind == 0 && p->pidfd < 0 && !atomic_load(&shmp__intr_on) && !p->ended) {
		/* No pidfd, no deadline, not interruptible: block in waitpid,
		 * as a plain fork+waitpid (SA_RESTART restarts it). */
		int status;
		pid_t r;
		while ((r = waitpid(p->pid, &status, 0)) < 0 && errno == EINTR)
			;
		if (r == p->pid)
			record(p, status);
		else
			poll_child(p); /* ECHILD: reaped elsewhere */
		return 0;
	}
	/* Otherwise never in waitpid, which SA_RESTART would restart: on the
	 * pidfd, in slices, reaping with WNOHANG. */
	while (!poll_child(p)) {
		if (shmp__deadline_passed(&d))
			return -ETIMEDOUT;
		if (shmp__interrupted(wait_slice(p, shmp__deadline_cap(&d, 1000000000L))))
			return -EINTR;
	}
	return 0;
}

int shmp_process_exitcode(shmp_process_t *p, int *code)
{
	reap_orphans();
	if (!p || !code)
		return -EINVAL;
	if (!poll_child(p))
		return 0;
	*code = p->exitcode;
	return 1;
}

int shmp_process_is_alive(shmp_process_t *p)
{
	reap_orphans();
	if (!p)
		return -EINVAL;
	return p->started && !poll_child(p);
}

pid_t shmp_process_pid(const shmp_process_t *p)
{
	return p && p->started ? p->pid : 0;
}

int shmp_process_pidfd(const shmp_process_t *p)
{
	if (!p || !p->started || p->pidfd < 0)
		return -EINVAL;
	return p->pidfd;
}

/* Signal the running child: through its pidfd, which names that process
 * and no other; by pid (unreaped, so not reused) only without one. */
static int signal_child(shmp_process_t *p, int sig)
{
	if (p->pidfd >= 0)
		return syscall(SYS_pidfd_send_signal, p->pidfd, sig, NULL, 0) == 0 ? 0 : -errno;
	return kill(p->pid, sig) == 0 ? 0 : -errno;
}

static int send_signal(shmp_process_t *p, int sig)
{
	if (!p || !p->started)
		return -EINVAL;
	if (poll_child(p))
		return 0;
	int r = signal_child(p, sig);
	return r == -ESRCH ? 0 : r; /* ended meanwhile (a zombie is not ESRCH, but be safe) */
}

int shmp_process_terminate(shmp_process_t *p)
{
	return send_signal(p, SIGTERM);
}

int shmp_process_kill(shmp_process_t *p)
{
	return send_signal(p, SIGKILL);
}

void shmp_process_destroy(shmp_process_t *p)
{
	if (!p)
		return;
	if (p->started && !poll_child(p)) {
		if (p->opts.daemon) {
			signal_child(p, SIGKILL);
			while (shmp_process_join(p, SHMP_FOREVER) == -EINTR)
				; /* a destroy does not stop half way */
		} else {
			add_orphan(p->pid);
		}
	}
	if (p->pidfd >= 0)
		close(p->pidfd);
	free(p);
	reap_orphans();
}
