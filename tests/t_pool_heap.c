/* What workers see (include/shmp/pool.h, "What workers see"; issue 12:
 * "Pointers in task arguments silently read stale memory"). Pool and
 * ThreadPool: after the pool is created, the test builds an array of
 * structs whose `word` members are shmp_strdup strings (the shared heap),
 * and maps a task that measures and hashes each string: every length and
 * hash is right, with the array itself in malloc'd memory (copied to the
 * workers) and in the shared heap (shmp_calloc: passed in place), also
 * when the strings are freed and allocated again between two maps. The
 * same struct with a plain strdup'd string gives a process Pool's worker
 * what the zygote had at that address — not the string — which is why the
 * shared heap exists (checked only as "not a crash": the worker reads its
 * own memory; the result is whatever it finds). */
#include "t.h"

static shmp_pool_t *(*const create[2])(int, const struct shmp_pool_opts *) = {
	shmp_pool_create, shmp_threadpool_create
};
static const char *const kind_name[2] = { "Pool", "ThreadPool" };

struct job {
	const char *word;
	long n;
};
struct res {
	long len;
	uint64_t hash;
};

static uint64_t fnv(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static int measure(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	(void)c;
	const struct job *j = arg;
	struct res *r = res;
	r->len = (long)strlen(j->word);
	r->hash = fnv(j->word);
	return 0;
}

enum { N = 2000 };

static void fill_words(struct job *jobs, int gen)
{
	for (int i = 0; i < N; i++) {
		char buf[64];
		snprintf(buf, sizeof buf, "word-%d-%0*d", gen, 1 + i % 40, i);
		jobs[i].word = shmp_strdup(buf);
		T_CHECK(jobs[i].word);
		jobs[i].n = i;
	}
}

static void check(shmp_pool_t *p, struct job *jobs)
{
	struct res *out = calloc(N, sizeof *out);
	T_CHECK(out);
	struct shmp_call_opts o = SHMP_OPTS(shmp_call_opts, .chunksize = 37);
	T_EQ(shmp_pool_map(p, measure, jobs, sizeof *jobs, N, out, sizeof *out, &o, NULL), 0);
	for (int i = 0; i < N; i++) {
		T_EQ(out[i].len, (long)strlen(jobs[i].word));
		T_EQ(out[i].hash, fnv(jobs[i].word));
	}
	free(out);
}

static void free_words(struct job *jobs)
{
	for (int i = 0; i < N; i++)
		shmp_free((void *)jobs[i].word);
}

int main(void)
{
	t_watchdog(60);
	for (int kind = 0; kind < 2; kind++) {
		shmp_pool_t *p = create[kind](2, NULL);
		T_CHECK(p);
		/* Everything below is allocated after the pool exists. */
		struct job *priv = malloc(N * sizeof *priv);
		struct job *shared = shmp_calloc(N, sizeof *shared);
		T_CHECK(priv && shared);
		fill_words(priv, 1);
		check(p, priv);
		fill_words(shared, 2);
		check(p, shared);
		/* Freed and allocated again: new strings at reused addresses. */
		free_words(priv);
		fill_words(priv, 3);
		check(p, priv);
		free_words(priv);
		free_words(shared);
		free(priv);
		shmp_free(shared);

		/* Plain malloc'd strings are not the workers' (a process
		 * Pool's): no crash, whatever they read. */
		struct job plain = { strdup("made after the pool"), 0 };
		struct res r;
		int rc = shmp_pool_apply(p, measure, &plain, sizeof plain, &r, sizeof r, NULL);
		if (kind == 1) {
			T_EQ(rc, 0);
			T_EQ(r.len, (long)strlen(plain.word));
		}
		free((void *)plain.word);
		T_EQ(shmp_pool_close(p), 0);
		T_EQ(shmp_pool_join(p, 10), 0);
		shmp_pool_destroy(p);
		printf("%s: ok\n", kind_name[kind]);
	}
	return 0;
}
