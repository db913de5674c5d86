/* The shared heap (shmp_malloc & co.) and the default segment's size:
 * malloc's semantics; memory allocated before a fork is at the same address
 * in the child and written through by it; threads and processes allocate at
 * once; a process killed mid-allocation leaves a usable heap; pointers that
 * are not heap blocks are refused without harm; Python-sized data (a 50 M
 * double Array, a 1 GiB byte Array) fits the default segment with no
 * options. */
#include "t.h"

#include <pthread.h>
#include <stdint.h>

static void basics(void)
{
	char *a = shmp_malloc(0), *b = shmp_malloc(0);
	T_CHECK(a && b && a != b); /* size 0: unique pointers, as malloc */
	T_EQ((uintptr_t)a % 16, 0);
	shmp_free(a);
	shmp_free(b);
	shmp_free(NULL);

	int *z = shmp_calloc(1000, sizeof *z);
	T_CHECK(z);
	for (int i = 0; i < 1000; i++)
		T_EQ(z[i], 0);
	for (int i = 0; i < 1000; i++)
		z[i] = i;
	shmp_free(z);
	/* Reused memory is zero again for calloc (and malloc). */
	z = shmp_calloc(1000, sizeof *z);
	for (int i = 0; i < 1000; i++)
		T_EQ(z[i], 0);
	shmp_free(z);

	errno = 0;
	T_CHECK(shmp_calloc(SIZE_MAX / 2, 4) == NULL);
	T_EQ(errno, ENOMEM);

	/* realloc keeps the contents, grows and shrinks, NULL acts as malloc. */
	char *r = shmp_realloc(NULL, 10);
	T_CHECK(r);
	memcpy(r, "0123456789", 10);
	r = shmp_realloc(r, 100000);
	T_CHECK(r && memcmp(r, "0123456789", 10) == 0);
	r = shmp_realloc(r, 5);
	T_CHECK(r && memcmp(r, "01234", 5) == 0);
	shmp_free(r);

	char *s = shmp_strdup("hello, shared world");
	T_CHECK(s && strcmp(s, "hello, shared world") == 0);
	shmp_free(s);
	errno = 0;
	T_CHECK(shmp_strdup(NULL) == NULL && errno == EINVAL);

	/* Pointers that are not live heap blocks: refused, heap unharmed. */
	char stack[64];
	shmp_segment_t *seg = shmp_segment_default();
	uint64_t live = t_live_blocks(seg);
	errno = 0;
	shmp_free(stack);
	T_EQ(errno, EINVAL);
	char *c = shmp_malloc(100);
	errno = 0;
	shmp_free(c + 16);
	T_EQ(errno, EINVAL);
	shmp_free(c);
	errno = 0;
	shmp_free(c); /* double free */
	T_EQ(errno, EINVAL);
	T_CHECK(shmp_realloc(stack, 10) == NULL && errno == EINVAL);
	T_EQ(t_live_blocks(seg), live);
}

/* A list of strings built in the parent; the child reads it at the same
 * addresses, appends its own, and the parent sees them. */
struct list {
	int n;
	char *item[64];
};

static int child_reads_and_appends(void *arg)
{
	struct list *l = arg;
	for (int i = 0; i < l->n; i++) {
		char want[32];
		snprintf(want, sizeof want, "item-%d", i);
		if (strcmp(l->item[i], want) != 0)
			return 1;
	}
	for (int i = l->n; i < 64; i++) {
		char s[32];
		snprintf(s, sizeof s, "child-%d", i);
		if (!(l->item[i] = shmp_strdup(s)))
			return 2;
	}
	l->n = 64;
	return 0;
}

static void shared_with_children(void)
{
	struct list *l = shmp_calloc(1, sizeof *l);
	T_CHECK(l);
	for (int i = 0; i < 32; i++) {
		char s[32];
		snprintf(s, sizeof s, "item-%d", i);
		T_CHECK((l->item[i] = shmp_strdup(s)));
	}
	l->n = 32;
	t_wait_ok(t_fork(child_reads_and_appends, l), 30);
	T_EQ(l->n, 64);
	for (int i = 32; i < 64; i++) {
		char want[32];
		snprintf(want, sizeof want, "child-%d", i);
		T_CHECK(strcmp(l->item[i], want) == 0);
	}
	for (int i = 0; i < 64; i++)
		shmp_free(l->item[i]);
	shmp_free(l);
}

/* Threads and processes allocating, writing and freeing at once: every
 * block stays its owner's (a pattern check), and nothing leaks. */
static int churn(unsigned seed)
{
	void *held[64] = { 0 };
	size_t sz[64];
	for (int round = 0; round < 20000; round++) {
		seed = seed * 1103515245u + 12345u;
		int k = (int)(seed >> 16) % 64;
		if (held[k]) {
			if (!t_filled(held[k], sz[k], (uint32_t)(uintptr_t)held[k]))
				return 1;
			shmp_free(held[k]);
			held[k] = NULL;
		} else {
			sz[k] = 1 + (seed >> 8) % 3000;
			if (!(held[k] = shmp_malloc(sz[k])))
				return 2;
			t_fill(held[k], sz[k], (uint32_t)(uintptr_t)held[k]);
		}
	}
	for (int k = 0; k < 64; k++)
		shmp_free(held[k]);
	return 0;
}

static void *churn_thread(void *arg)
{
	return (void *)(intptr_t)churn((unsigned)(uintptr_t)arg);
}

static int churn_process(void *arg)
{
	return churn((unsigned)(uintptr_t)arg);
}

static void concurrent(void)
{
	shmp_segment_t *seg = shmp_segment_default();
	uint64_t live = t_live_blocks(seg);
	pthread_t th[3];
	for (int i = 0; i < 3; i++)
		T_EQ(pthread_create(&th[i], NULL, churn_thread, (void *)(uintptr_t)(i + 1)), 0);
	pid_t kids[2];
	for (int i = 0; i < 2; i++)
		kids[i] = t_fork(churn_process, (void *)(uintptr_t)(100 + i));
	for (int i = 0; i < 3; i++) {
		void *ret;
		pthread_join(th[i], &ret);
		T_EQ((intptr_t)ret, 0);
	}
	for (int i = 0; i < 2; i++)
		t_wait_ok(kids[i], 60);
	T_EQ(t_live_blocks(seg), live);
}

/* Processes killed at random points of their allocations: the heap stays
 * usable and whole for everyone else (at most the killed call's block is
 * lost per kill). */
static int endless_churn(void *arg)
{
	(void)arg;
	for (;;)
		churn((unsigned)getpid());
	return 0;
}

static void killed_mid_allocation(void)
{
	shmp_segment_t *seg = shmp_segment_default();
	uint64_t live = t_live_blocks(seg);
	for (int i = 0; i < 20; i++) {
		pid_t c = t_fork(endless_churn, NULL);
		t_sleep_ms(5 + t_rnd(20));
		kill(c, SIGKILL);
		t_wait_killed(c, 10);
	}
	/* What the killed processes held stays allocated (they never freed
	 * it: as a crashed program's malloc'd memory would, but here it is
	 * shared): the heap must still work for the living. */
	T_CHECK(t_live_blocks(seg) >= live);
	T_EQ(churn(7), 0);
}

static void python_sized(void)
{
	/* No options, no environment: the default segment holds these. */
	shmp_array_t *d = shmp_array_create('d', 50000000, NULL, NULL);
	if (!d)
		fprintf(stderr, "50 M doubles: %s\n", shmp_strerror(errno));
	T_CHECK(d);
	T_EQ(shmp_array_set_f64(d, 49999999, 1.5), 0);
	double x;
	T_EQ(shmp_array_get_f64(d, 49999999, &x), 0);
	T_CHECK(x == 1.5);
	T_EQ(shmp_array_get_f64(d, 25000000, &x), 0);
	T_CHECK(x == 0.0);
	shmp_array_t *b = shmp_array_create('B', (size_t)1 << 30, NULL, NULL);
	if (!b)
		fprintf(stderr, "1 GiB: %s\n", shmp_strerror(errno));
	T_CHECK(b);
	T_EQ(shmp_array_len(b), (size_t)1 << 30);
	T_EQ(shmp_array_set_i64(b, ((size_t)1 << 30) - 1, 7), 0);
	shmp_array_destroy(b);
	shmp_array_destroy(d);
}

int main(void)
{
	t_watchdog(120);
	basics();
	shared_with_children();
	concurrent();
	killed_mid_allocation();
	python_sized();
	return 0;
}
