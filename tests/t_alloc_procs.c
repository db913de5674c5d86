/* The allocator shared by several processes. (1) Three processes allocate
 * and free at once in one segment, thousands of random-size blocks each,
 * every block filled with its owner's pattern and checked before it is
 * freed: no block is ever handed to two processes, new blocks are zero, and
 * at the end nothing is counted live. (2) A child loops alloc/free and is
 * SIGKILLed at random moments (600 trials): after each kill, once the child
 * is reaped, the parent allocates and frees within a timeout (the lock of a
 * dead holder is recovered) and never gets an error; the counters stay
 * within what the kills could have leaked; the parent's own blocks are
 * untouched. (3) The same kill, but the parent allocates before it reaps the
 * child (the dead holder is a zombie): that must not block either. */
#include "t.h"

#include <pthread.h>
#include <stdatomic.h>

#define NPROCS 3
#define OPS 30000
#define MAXLIVE 64
#define TRIALS 600
#define ZOMBIE_TRIALS 30
#define CHILD_HOLD 2 /* blocks a killed child can hold, plus one in flight */

static shmp_segment_t *seg;
static unsigned char *base;

static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dull;
}

static unsigned char pat(unsigned id, uint64_t seq, size_t i)
{
	return (unsigned char)(id * 73u + (unsigned)seq * 31u + (unsigned)i + 1u);
}

struct live {
	uint64_t off;
	size_t size;
	uint64_t seq;
};

static int verify(unsigned id, const struct live *l)
{
	const unsigned char *p = base + l->off;
	for (size_t i = 0; i < l->size; i++) {
		if (p[i] != pat(id, l->seq, i)) {
			fprintf(stderr, "proc %u: block [%llu,+%zu) byte %zu is 0x%02x, want 0x%02x: "
				"someone else wrote into it\n", id, (unsigned long long)l->off,
				l->size, i, p[i], pat(id, l->seq, i));
			return 0;
		}
	}
	return 1;
}

static const size_t aligns[] = { 0, 16, 64, 256, 4096 };

static int worker(unsigned id, int start_fd)
{
	char c;
	/* every worker starts when the parent closes the pipe */
	while (read(start_fd, &c, 1) < 0 && errno == EINTR)
		;
	uint64_t rs = 0x9e3779b97f4a7c15ull * (id + 1);
	struct live l[MAXLIVE];
	int n = 0;
	for (uint64_t seq = 1; seq <= OPS; seq++) {
		uint64_t r = rng_next(&rs);
		if (n < MAXLIVE && (n == 0 || r % 2)) {
			size_t size = 1 + (size_t)(rng_next(&rs) % (r % 16 ? 2048 : 65536));
			size_t al = aligns[rng_next(&rs) % 5];
			uint64_t off;
			int e = shmp_segment_alloc(seg, size, al, &off);
			if (e != 0) {
				fprintf(stderr, "proc %u: alloc(%zu) = %d\n", id, size, e);
				return 2;
			}
			unsigned char *p = base + off;
			for (size_t i = 0; i < size; i++) {
				if (p[i] != 0) {
					fprintf(stderr, "proc %u: new block not zero\n", id);
					return 3;
				}
			}
			for (size_t i = 0; i < size; i++)
				p[i] = pat(id, seq, i);
			l[n++] = (struct live){ off, size, seq };
		} else {
			int k = (int)(rng_next(&rs) % (uint64_t)n);
			if (!verify(id, &l[k]))
				return 4;
			int e = shmp_segment_free(seg, l[k].off);
			if (e != 0) {
				fprintf(stderr, "proc %u: free = %d\n", id, e);
				return 5;
			}
			l[k] = l[--n];
		}
		if (seq % 500 == 0)
			for (int k = 0; k < n; k++)
				if (!verify(id, &l[k]))
					return 4;
	}
	for (int k = 0; k < n; k++) {
		if (!verify(id, &l[k]))
			return 4;
		if (shmp_segment_free(seg, l[k].off) != 0)
			return 5;
	}
	return 0;
}

static void test_concurrent(void)
{
	int start[2];
	T_EQ(pipe(start), 0);
	pid_t pids[NPROCS];
	fflush(NULL);
	for (unsigned i = 0; i < NPROCS; i++) {
		pids[i] = fork();
		T_CHECK(pids[i] >= 0);
		if (pids[i] == 0) {
			close(start[1]);
			_exit(worker(i, start[0]));
		}
	}
	close(start[0]);
	close(start[1]); /* go */
	for (unsigned i = 0; i < NPROCS; i++)
		t_wait_ok(pids[i], 60);
	struct shmp_segment_stats st;
	T_EQ(shmp_segment_stats(seg, &st), 0);
	T_EQ(st.live_blocks, 0);
	T_EQ(st.used_bytes, 0);
}

/* ---- kill -9 in the middle of alloc/free ---------------------------- */

struct ctl {
	_Atomic uint64_t ops; /* the looping child's progress */
};
static struct ctl *ctl;

static void looper(void)
{
	uint64_t rs = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull;
	uint64_t held[CHILD_HOLD] = { 0 };
	for (unsigned k = 0;; k = (k + 1) % CHILD_HOLD) {
		int r;
		if (held[k] && (r = shmp_segment_free(seg, held[k])) != 0) {
			fprintf(stderr, "looper: free = %d (%s)\n", r, shmp_strerror(r));
			_exit(2);
		}
		held[k] = 0;
		size_t size = 1 + (size_t)(rng_next(&rs) % 4096);
		if ((r = shmp_segment_alloc(seg, size, aligns[rng_next(&rs) % 5], &held[k])) != 0) {
			fprintf(stderr, "looper: alloc = %d (%s)\n", r, shmp_strerror(r));
			_exit(3);
		}
		memset(base + held[k], 0xcd, size < 16 ? size : 16);
		atomic_fetch_add(&ctl->ops, 1);
	}
}

/* Allocations of every size class the looper uses (up to 4096 bytes at
 * 4096 alignment), then their frees, run in a thread so that a lock that
 * never comes back is a reported failure instead of a hung test. */
#define JOB_BLOCKS 130
struct job {
	int r_alloc, r_free;
	size_t bad_size;
	atomic_int done;
};

static void *job_fn(void *arg)
{
	struct job *j = arg;
	uint64_t off[JOB_BLOCKS];
	int n = 0;
	for (size_t k = 0; k < JOB_BLOCKS; k++) {
		size_t size = 1 + 64 * k;
		j->r_alloc = shmp_segment_alloc(seg, size, 0, &off[n]);
		if (j->r_alloc != 0) {
			j->bad_size = size;
			break;
		}
		memset(base + off[n++], 0x5e, size);
	}
	j->r_free = 0;
	while (n > 0 && j->r_free == 0)
		j->r_free = shmp_segment_free(seg, off[--n]);
	atomic_store(&j->done, 1);
	return NULL;
}

/* Start the job; 1 if it finished within `timeout` seconds. */
static int job_run(struct job *j, pthread_t *th, double timeout)
{
	j->r_alloc = j->r_free = -12345;
	atomic_store(&j->done, 0);
	T_EQ(pthread_create(th, NULL, job_fn, j), 0);
	double until = t_now() + timeout;
	while (!atomic_load(&j->done)) {
		if (t_now() > until)
			return 0;
		t_sleep_ms(1);
	}
	T_EQ(pthread_join(*th, NULL), 0);
	return 1;
}

static pid_t start_looper(void)
{
	uint64_t before = atomic_load(&ctl->ops);
	fflush(NULL);
	pid_t pid = fork();
	T_CHECK(pid >= 0);
	if (pid == 0) {
		looper();
		_exit(1);
	}
	/* Wait until it is really looping, so the kill lands mid-work. */
	double until = t_now() + 10;
	while (atomic_load(&ctl->ops) == before) {
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			fprintf(stderr, "looping child ended at once (%s %d)\n",
				WIFEXITED(st) ? "exit" : "signal",
				WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
			exit(1);
		}
		if (t_now() > until) {
			kill(pid, SIGKILL);
			t_wait(pid, 5);
			fprintf(stderr, "looping child never started\n");
			exit(1);
		}
		sched_yield();
	}
	return pid;
}

static void spin_us(double us)
{
	double until = t_now() + us * 1e-6;
	while (t_now() < until)
		;
}

static int failures; /* reported as found; the test goes on to the end */

/* Reap a child we just SIGKILLed. The looper only exits by itself when
 * its own alloc/free failed, which means an earlier kill damaged the
 * allocator (it printed why). */
static const char *phase = "trial";

static void reap_killed(pid_t pid, int trial)
{
	int st = t_wait(pid, 10);
	if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
		if (++failures <= 10)
			fprintf(stderr, "%s %d: the looping child failed on its own (%s %d)\n",
				phase, trial, WIFEXITED(st) ? "exit" : "signal",
				WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
}

/* The job's results: nothing may fail after a kill. */
static void check_job(const struct job *j, int trial)
{
	if (j->r_alloc != 0 || j->r_free != 0) {
		if (++failures <= 10)
			fprintf(stderr, "%s %d: after the kill alloc(%zu) = %d (%s), free = %d: "
				"the kill left the allocator damaged\n", phase, trial, j->bad_size,
				j->r_alloc, shmp_strerror(j->r_alloc), j->r_free);
	}
}

int main(void)
{
	t_watchdog(120);
	seg = shmp_segment_create(NULL, 256u << 20, NULL);
	T_CHECK(seg);
	base = shmp_segment_base(seg);

	double t0 = t_now();
	test_concurrent();
	printf("concurrent: %d procs x %d ops in %.2f s\n", NPROCS, OPS, t_now() - t0);

	/* The parent's own blocks, which no kill may disturb. */
	uint64_t off;
	T_EQ(shmp_segment_alloc(seg, sizeof *ctl, 64, &off), 0);
	ctl = (struct ctl *)(base + off);
	struct live mine[40];
	for (int i = 0; i < 40; i++) {
		size_t size = 50 + 97 * (size_t)i;
		T_EQ(shmp_segment_alloc(seg, size, aligns[i % 5], &mine[i].off), 0);
		mine[i].size = size;
		mine[i].seq = (uint64_t)i;
		for (size_t k = 0; k < size; k++)
			base[mine[i].off + k] = pat(99, (uint64_t)i, k);
	}
	struct shmp_segment_stats st;
	T_EQ(shmp_segment_stats(seg, &st), 0);
	const uint64_t own_blocks = st.live_blocks; /* 41 */
	T_EQ(own_blocks, 41);

	uint64_t rs = 0x1234567;
	struct job j;
	pthread_t th;
	t0 = t_now();
	for (int t = 0; t < TRIALS; t++) {
		pid_t pid = start_looper();
		spin_us((double)(rng_next(&rs) % 500));
		T_EQ(kill(pid, SIGKILL), 0);
		reap_killed(pid, t);
		if (!job_run(&j, &th, 3.0)) {
			fprintf(stderr, "trial %d: alloc/free after the kill did not finish in 3 s\n", t);
			exit(1); /* the stuck thread dies with us */
		}
		check_job(&j, t);
	}
	printf("kill trials: %d in %.2f s, %llu child ops\n", TRIALS, t_now() - t0,
	       (unsigned long long)atomic_load(&ctl->ops));
	T_EQ(shmp_segment_stats(seg, &st), 0);
	printf("after kills: live_blocks %llu used_bytes %llu\n",
	       (unsigned long long)st.live_blocks, (unsigned long long)st.used_bytes);
	/* Each kill leaks at most what the child held plus the one in flight;
	 * the counters neither wrap nor run away. */
	T_CHECK(st.live_blocks >= own_blocks);
	T_CHECK(st.live_blocks <= own_blocks + TRIALS * (CHILD_HOLD + 1));
	T_CHECK(st.used_bytes < st.heap_bytes);
	T_CHECK(st.used_bytes <= (own_blocks + TRIALS * (CHILD_HOLD + 1)) * 16384);
	for (int i = 0; i < 40; i++)
		T_CHECK(verify(99, &mine[i]));

	/* The allocator still works as a whole: many blocks, no overlap with
	 * each other or with the parent's, all zero on arrival. */
	static struct live more[2000];
	for (int i = 0; i < 2000; i++) {
		size_t size = 1 + (size_t)(rng_next(&rs) % 3000);
		T_EQ(shmp_segment_alloc(seg, size, aligns[i % 5], &more[i].off), 0);
		more[i].size = size;
		more[i].seq = (uint64_t)i;
		for (size_t k = 0; k < size; k++) {
			T_EQ(base[more[i].off + k], 0);
			base[more[i].off + k] = pat(98, (uint64_t)i, k);
		}
	}
	for (int i = 0; i < 2000; i++) {
		T_CHECK(verify(98, &more[i]));
		T_EQ(shmp_segment_free(seg, more[i].off), 0);
	}
	for (int i = 0; i < 40; i++)
		T_CHECK(verify(99, &mine[i]));

	/* (3) The killed holder not reaped yet: it is a zombie, and the lock
	 * it died holding must still be recovered. */
	int blocked = 0;
	phase = "zombie trial";
	for (int t = 0; t < ZOMBIE_TRIALS && !blocked; t++) {
		pid_t pid = start_looper();
		spin_us((double)(rng_next(&rs) % 500));
		T_EQ(kill(pid, SIGKILL), 0);
		if (!job_run(&j, &th, 2.0)) {
			blocked = 1;
			fprintf(stderr, "zombie trial %d: alloc blocked for 2 s while the killed "
				"holder (pid %d) was not yet reaped\n", t, (int)pid);
		}
		reap_killed(pid, t);
		if (blocked) {
			/* reaped now: the stuck job must get the lock at once */
			double until = t_now() + 5;
			while (!atomic_load(&j.done) && t_now() < until)
				t_sleep_ms(1);
			T_CHECK(atomic_load(&j.done));
			T_EQ(pthread_join(th, NULL), 0);
		}
		check_job(&j, t);
	}
	for (int i = 0; i < 40; i++) {
		T_CHECK(verify(99, &mine[i]));
		T_EQ(shmp_segment_free(seg, mine[i].off), 0);
	}
	shmp_segment_destroy(seg);
	if (failures)
		fprintf(stderr, "%d failures after kills (first ones shown above)\n", failures);
	return failures || blocked ? 1 : 0;
}
