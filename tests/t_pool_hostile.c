/* The trust boundary (README "Security"; issue 13, "Table rewriting"): a
 * second process rewrites a live pool's shared tables in a loop; the pool
 * signals nobody else and no call hangs. Pool and ThreadPool, each in a
 * named registry (which another process of the same user may attach).
 *
 * A canary process (a child of the test, idle) has its pid planted: the
 * hostile process, attached to the registry by name, writes every 32-bit
 * word of the pool's shared worker table over and over with the canary's
 * pid, worker states, zero and random values.
 *  - Worker table only: a map of 100,000 items (1,000 tasks) returns 0 with
 *    every result right; shmp_pool_worker_info names the real workers
 *    (children of the pool's zygote, never the canary); terminate returns
 *    at once and join within 5 s; destroy returns; the canary is alive.
 *  - Worker table and the pool's shared header (state, stop, counters,
 *    sizes, pids, the claim and futex words: every word): a map_async is
 *    started, terminate and join still return within 5 s, get returns
 *    (0 or an error) within 5 s, destroy returns; the canary is alive.
 *  - Forged tasks: records at the head of the task table rewritten as
 *    queued tasks calling `forbidden` (a function of the program, which
 *    counts its calls in shared memory) on data of the hostile's choice,
 *    while a map runs: `forbidden` is never called (records carry a tag
 *    only the pool's processes can make), the map returns (0 or an error),
 *    terminate and join return within 5 s; the canary is alive.
 * No call may hang: each is bounded, and a watchdog ends the test. Then
 * the canary is still ours to kill (it was never signalled), and no
 * process of the pools is left. */
#include "t.h"
#include "../src/pool/pool_internal.h"

#include <sched.h>
#include <stdatomic.h>
#include <sys/prctl.h>

static shmp_pool_t *(*const create[2])(int, const struct shmp_pool_opts *) = {
	shmp_pool_create, shmp_threadpool_create
};
static const char *const kind_name[2] = { "Pool", "ThreadPool" };

static const char *g_regname;
static shmp_value_t *g_phase; /* 0 stop, 1 worker table, 2 + header, 3 forged tasks */
static shmp_array_t *g_forbidden; /* calls of forbidden() */
static shmp_array_t *g_rewrites;
static pid_t g_canary;

static int triple(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	(void)c;
	*(long *)res = *(const long *)arg * 3 + 1;
	return 0;
}

static int forbidden(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	(void)arg, (void)res, (void)c;
	shmp_array_add(g_forbidden, 0, 1, NULL);
	return 0;
}

/* Queued tasks calling forbidden(), at the head of the table. */
static void forge_tasks(struct shmp__pool_sh *sh, char *recs, uint32_t cap, uint32_t rec_size)
{
	uint64_t head = atomic_load_explicit(&sh->tt.head, memory_order_relaxed);
	for (uint64_t q = head; q < head + 4; q++) {
		struct shmp__rec *r = (struct shmp__rec *)(recs + (size_t)(q & (cap - 1)) * rec_size);
		r->t = (struct shmp__task){ .first = 0, .count = 1,
					    .fn = (uint64_t)((uintptr_t)forbidden - (uintptr_t)&shmp_pool_create),
					    .in = { .kind = SHMP__DESC_NONE }, .out = { .kind = SHMP__DESC_NONE } };
		r->tag = q * 0x9e3779b97f4a7c15ull; /* a guess */
		atomic_store_explicit(&r->word, shmp__rec_word(q, SHMP__REC_QUEUED, 0), memory_order_release);
	}
	atomic_fetch_add(&sh->tt.task_futex, 1);
}

static int canary(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return 0;
}

static uint32_t rnd32(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return (uint32_t)(*s >> 11);
}

static uint32_t forged(uint64_t *s, pid_t victim)
{
	switch (rnd32(s) % 5) {
	case 0: return (uint32_t)victim;
	case 1: return rnd32(s) % 4; /* a worker state, a small count */
	case 2: return 0;
	case 3: return UINT32_MAX;
	default: return rnd32(s);
	}
}

/* The hostile process: same user, attaches the registry by name. */
static int hostile(void *arg)
{
	(void)arg;
	shmp_registry_t *r = shmp_registry_attach(g_regname, NULL);
	if (!r)
		return 10;
	struct shmp_object_info info;
	if (shmp_registry_lookup(r, "pool", &info) != 0)
		return 11;
	char *base = shmp_segment_base(shmp_registry_segment(r));
	size_t size = shmp_segment_size(shmp_registry_segment(r));
	struct shmp__pool_sh *sh = (struct shmp__pool_sh *)(base + info.offset);
	/* The layout, read once before anything is rewritten. */
	uint64_t wk_off = sh->wk_off;
	size_t wk_len = (size_t)sh->nworkers * sizeof(struct shmp__wk);
	if (info.offset + sizeof *sh > size || wk_off > size || wk_len > size - wk_off)
		return 12;
	_Atomic uint32_t *wk = (_Atomic uint32_t *)(base + wk_off);
	uint32_t cap = sh->capacity, rec_size = sh->rec_size;
	uint64_t recs_off = sh->recs_off;
	if (!cap || (cap & (cap - 1)) || rec_size < sizeof(struct shmp__rec) || recs_off > size ||
	    (size_t)cap * rec_size > size - recs_off)
		return 13;
	_Atomic uint32_t *hdr = (_Atomic uint32_t *)sh;
	uint64_t s = 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
	int64_t phase;
	long n = 0;
	while (shmp_value_load(g_phase, &phase) == 0 && phase) {
		for (size_t i = 0; i < wk_len / 4; i++)
			atomic_store_explicit(&wk[i], forged(&s, g_canary), memory_order_relaxed);
		if (phase == 2)
			for (size_t i = 0; i < sizeof *sh / 4; i++)
				atomic_store_explicit(&hdr[i], forged(&s, g_canary), memory_order_relaxed);
		if (phase == 3)
			forge_tasks(sh, base + recs_off, cap, rec_size);
		if (++n % 64 == 0) {
			shmp_array_store(g_rewrites, 0, n);
			sched_yield();
		}
	}
	shmp_array_store(g_rewrites, 0, n);
	shmp_registry_detach(r);
	return 0;
}

static void canary_alive(void)
{
	T_EQ(kill(g_canary, 0), 0);
	T_CHECK(!t_dead_or_zombie(g_canary));
}

static long ppid_of(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	char *rp = strrchr(buf, ')');
	long pp = -1;
	if (!rp || sscanf(rp + 2, "%*c %ld", &pp) != 1)
		return -1;
	return pp;
}

/* Start the hostile process on phase `ph` and wait for its rewrites. */
static pid_t start_hostile(int ph)
{
	T_EQ(shmp_value_store(g_phase, ph), 0);
	T_EQ(shmp_array_store(g_rewrites, 0, 0), 0);
	pid_t h = t_spawn(hostile, NULL);
	double until = t_now() + 5;
	while (t_load(g_rewrites, 0) < 64) {
		T_CHECK(t_now() < until);
		int st;
		T_EQ(waitpid(h, &st, WNOHANG), 0); /* it runs */
		t_sleep_ms(1);
	}
	return h;
}

static void stop_hostile(pid_t h)
{
	T_EQ(shmp_value_store(g_phase, 0), 0);
	t_wait_ok(h, 5);
	printf("  hostile rewrote the tables %lld times\n", (long long)t_load(g_rewrites, 0));
}

/* Terminate, join and destroy, each bounded. */
static void end_pool(shmp_pool_t *p)
{
	double t0 = t_now();
	T_EQ(shmp_pool_terminate(p), 0);
	T_CHECK(t_now() - t0 < 1);
	T_EQ(shmp_pool_join(p, 5), 0);
	T_CHECK(t_now() - t0 < 5);
	shmp_pool_destroy(p);
	T_CHECK(t_now() - t0 < 6);
}

static void run(int kind)
{
	enum { N = 100000, W = 2 };
	long *in = malloc(N * sizeof *in), *out = malloc(N * sizeof *out);
	T_CHECK(in && out);
	for (long i = 0; i < N; i++)
		in[i] = i;
	shmp_registry_t *reg = shmp_registry_create(g_regname, NULL);
	T_CHECK(reg);
	struct shmp_pool_opts po = SHMP_OPTS(shmp_pool_opts, .registry = reg);

	/* The worker table rewritten: everything works. */
	shmp_pool_t *p = create[kind](W, &po);
	T_CHECK(p);
	pid_t h = start_hostile(1);
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = 100);
	T_EQ(shmp_pool_map(p, triple, in, sizeof *in, N, out, sizeof *out, &o, NULL), 0);
	for (long i = 0; i < N; i++)
		if (out[i] != 3 * i + 1)
			T_EQ(out[i], 3 * i + 1);
	struct shmp_worker_info wi[W];
	T_EQ(shmp_pool_worker_info(p, wi, W), W);
	for (int w = 0; w < W; w++) {
		T_CHECK(wi[w].pid > 0 && wi[w].pid != g_canary);
		if (kind == 0)
			T_EQ(ppid_of((pid_t)ppid_of(wi[w].pid)), getpid()); /* a child of our zygote */
	}
	end_pool(p);
	stop_hostile(h);
	canary_alive();

	/* Every word of the header too: calls may fail, nothing hangs. */
	p = create[kind](W, &po);
	T_CHECK(p);
	h = start_hostile(2);
	shmp_async_t *a = shmp_pool_map_async(p, triple, in, sizeof *in, N, out, sizeof *out, &o);
	t_sleep_ms(200);
	end_pool(p);
	if (a) {
		double t0 = t_now();
		int rc = shmp_async_get(a, 5, NULL);
		T_CHECK(rc != -ETIMEDOUT);
		T_CHECK(t_now() - t0 < 5);
		printf("  map_async under a rewritten header: %s\n", shmp_strerror(rc));
		shmp_async_destroy(a);
	}
	stop_hostile(h);
	canary_alive();

	/* Forged tasks while a map runs. */
	struct shmp_pool_opts po3 = SHMP_OPTS(shmp_pool_opts, .registry = reg, .queue_capacity = 64);
	p = create[kind](W, &po3);
	T_CHECK(p);
	T_EQ(shmp_array_store(g_forbidden, 0, 0), 0);
	h = start_hostile(3);
	struct shmp_task_error err;
	int rc = shmp_pool_map(p, triple, in, sizeof *in, N / 10, out, sizeof *out, &o, &err);
	printf("  map among forged tasks: %s\n", shmp_strerror(rc));
	T_CHECK(rc == 0 || rc == -SHMP_ECORRUPT);
	end_pool(p);
	stop_hostile(h);
	T_EQ(t_load(g_forbidden, 0), 0);
	canary_alive();
	shmp_registry_destroy(reg);
	free(in);
	free(out);
}

int main(void)
{
	t_watchdog(60);
	setvbuf(stdout, NULL, _IONBF, 0);
	atexit(t_reap_all);
	T_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	g_phase = t_raw_value('q');
	g_rewrites = t_counters(1);
	g_forbidden = t_counters(1);
	g_canary = t_spawn(canary, NULL);
	for (int kind = 0; kind < 2; kind++) {
		g_regname = t_segname(kind ? "hostile-t" : "hostile-p");
		printf("%s:\n", kind_name[kind]);
		run(kind);
	}
	canary_alive();
	t_kill_reap(g_canary, 5);
	/* Nothing of the pools left (orphans would have come to us). */
	t_sleep_ms(50);
	T_NO_CHILDREN();
	shmp_value_destroy(g_phase);
	shmp_array_destroy(g_rewrites);
	shmp_array_destroy(g_forbidden);
	return 0;
}
