/* private: thread identity cache, deadlines, spin tuning. */
#include "internal.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>

__thread struct shmp__self shmp__self_tls __attribute__((tls_model("initial-exec")));
unsigned shmp__spin_limit = 200;
unsigned shmp__lock_spin_limit = 0;
unsigned shmp__wait_spin_max = 2000;
__thread bool shmp__woke_tls __attribute__((tls_model("initial-exec")));
_Atomic int shmp__intr_on;

int shmp_set_interruptible(int on)
{
	return atomic_exchange_explicit(&shmp__intr_on, on ? 1 : 0, memory_order_relaxed);
}

static void shmp__self_reset_in_child(void)
{
	/* The forking thread is the child's only thread and has a new id. */
	shmp__self_tls.tid = 0;
	shmp__self_tls.pid = 0;
}

void shmp__self_init(void)
{
	shmp__self_tls.tid = (pid_t)syscall(SYS_gettid);
	shmp__self_tls.pid = getpid();
}

static void env_unsigned(const char *name, unsigned *out)
{
	const char *s = getenv(name);
	if (s && *s) {
		char *end;
		unsigned long v = strtoul(s, &end, 10);
		if (*end == '\0' && v <= 1000000)
			*out = (unsigned)v;
	}
}

__attribute__((constructor)) static void shmp__library_init(void)
{
	pthread_atfork(NULL, NULL, shmp__self_reset_in_child);
	/* About 20 us of pauses: a pause takes 10 ns on some CPUs, 40 on
	 * others. 256 of them take a few microseconds to time. */
	uint64_t t0 = shmp__now_ns();
	for (int i = 0; i < 256; i++)
		shmp__cpu_relax();
	uint64_t per = (shmp__now_ns() - t0) / 256;
	shmp__wait_spin_max = per ? (unsigned)(20000 / per) : 2000;
	if (shmp__wait_spin_max < 500)
		shmp__wait_spin_max = 500;
	if (shmp__wait_spin_max > 20000)
		shmp__wait_spin_max = 20000;
	env_unsigned("SHMP_SPIN", &shmp__spin_limit);
	env_unsigned("SHMP_SPIN", &shmp__wait_spin_max);
	env_unsigned("SHMP_LOCK_SPIN", &shmp__lock_spin_limit);
	/* One usable CPU: whoever we wait for needs the CPU we would spin on. */
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) <= 1) {
		shmp__wait_spin_max = 0;
		shmp__lock_spin_limit = 0;
		shmp__spin_limit = 0;
	}
}

bool shmp__tid_dead(pid_t tid)
{
	if (tid <= 0)
		return false;
	/* kill() accepts any thread id of the namespace: ESRCH means no such
	 * task; EPERM means it exists but is not ours to signal. */
	if (kill(tid, 0) != 0)
		return errno == ESRCH;
	/* It exists, but a zombie (dead, not yet reaped) holds nothing. */
	char path[48], buf[256];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)tid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	const char *p = strrchr(buf, ')'); /* the name may contain spaces and ')' */
	return p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
}

void shmp__checker_init(struct shmp__checker *c, long first_ns, long max_ns)
{
	c->slice = first_ns;
	c->max = max_ns;
	c->next = shmp__now_ns() + (uint64_t)first_ns;
}

bool shmp__checker_due(struct shmp__checker *c)
{
	uint64_t now = shmp__now_ns();
	if (now < c->next)
		return false;
	c->slice = c->slice * 2 > c->max ? c->max : c->slice * 2;
	c->next = now + (uint64_t)c->slice;
	return true;
}

/* No clock read: both times are absolute already (a wait reads the clock
 * once, when its checker starts). */
struct timespec shmp__checker_until(const struct shmp__checker *c, const struct shmp__deadline *d)
{
	struct timespec t = { (time_t)(c->next / 1000000000ull), (long)(c->next % 1000000000ull) };
	if (d->kind == 1 && (d->at.tv_sec < t.tv_sec || (d->at.tv_sec == t.tv_sec && d->at.tv_nsec < t.tv_nsec)))
		return d->at;
	if (d->kind == 2) /* already expired: an immediate timeout */
		clock_gettime(CLOCK_MONOTONIC, &t);
	return t;
}

uint64_t shmp__now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

int shmp__deadline_init(struct shmp__deadline *d, double timeout)
{
	if (timeout != timeout)
		return -EINVAL; /* NaN */
	if (timeout < 0) {
		d->kind = 0;
		return 0;
	}
	if (timeout == 0) {
		d->kind = 2;
		return 0;
	}
	if (timeout > 1e9) /* ~31 years: treat as forever, avoids overflow */
		timeout = 1e9;
	clock_gettime(CLOCK_MONOTONIC, &d->at);
	time_t s = (time_t)timeout;
	long ns = (long)((timeout - (double)s) * 1e9);
	d->at.tv_sec += s;
	d->at.tv_nsec += ns;
	if (d->at.tv_nsec >= 1000000000L) {
		d->at.tv_sec++;
		d->at.tv_nsec -= 1000000000L;
	}
	d->kind = 1;
	return 0;
}

double shmp__deadline_left(const struct shmp__deadline *d)
{
	if (d->kind == 0)
		return SHMP_FOREVER;
	if (d->kind == 2 || shmp__deadline_passed(d))
		return 0;
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(d->at.tv_sec - t.tv_sec) + (double)(d->at.tv_nsec - t.tv_nsec) * 1e-9;
}

bool shmp__deadline_passed(const struct shmp__deadline *d)
{
	if (d->kind == 0)
		return false;
	if (d->kind == 2)
		return true;
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec > d->at.tv_sec || (t.tv_sec == d->at.tv_sec && t.tv_nsec >= d->at.tv_nsec);
}

struct timespec shmp__deadline_cap(const struct shmp__deadline *d, long slice_ns)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_sec += slice_ns / 1000000000L;
	t.tv_nsec += slice_ns % 1000000000L;
	if (t.tv_nsec >= 1000000000L) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000L;
	}
	if (d->kind == 1 && (d->at.tv_sec < t.tv_sec ||
			     (d->at.tv_sec == t.tv_sec && d->at.tv_nsec < t.tv_nsec)))
		return d->at;
	if (d->kind == 2) /* already expired: an immediate timeout */
		clock_gettime(CLOCK_MONOTONIC, &t);
	return t;
}

bool shmp__handle_release(void *handle)
{
	struct shmp__head *h = handle;
	if (h->pid != getpid())
		return false; /* inherited through fork: the maker's, not ours */
	_Atomic uint32_t *ref = h->ref;
	shmp_segment_t *seg = h->seg;
	if (!ref)
		return true;
	if (atomic_fetch_sub_explicit(ref, 1, memory_order_acq_rel) != (SHMP__REF_REMOVED | 1))
		return false;
	shmp__free_ptr(seg, (void *)ref); /* the reference word has a block of its own */
	return true;
}
