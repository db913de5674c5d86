/* Every object type behind the one table, and its layout version.
 *
 * Asserts:
 * - every type a registry makes (Value ... Dict) is reported valid with
 *   error 0; its layout version (the word after its magic, at the object's
 *   offset + 4: object.h's rule, pinned in each type's file) changed makes
 *   lookup report it invalid with -SHMP_EVERSION and the getter fail with
 *   SHMP_EVERSION; its magic changed, -SHMP_ECORRUPT and SHMP_ECORRUPT; put
 *   back, it is valid and gets again;
 * - a Queue whose ring has another layout version is SHMP_EVERSION too (the
 *   ring is found by its magic and version in the segment);
 * - a Pool made in a registry is reported by lookup and by info over the
 *   slots like any other object: valid, its workers, its task capacity, its
 *   state, and as depth the tasks queued behind two busy workers (3 of 5),
 *   then none; with another version, -SHMP_EVERSION;
 * - a pipeline in a registry likewise: its stages and workers, RUNNING, as
 *   depth the messages waiting in its rings (3, then none once taken), and
 *   -SHMP_EVERSION with another version.
 * Every registry is destroyed (unlinked). */
#include "t_reg.h"

#define POOL_CAPACITY 64u

static shmp_registry_t *new_registry(const char *tag)
{
	struct shmp_registry_opts o = ropts(32 << 20, 64);
	return T_OK(shmp_registry_create(track(t_segname(tag)), &o));
}

static uint32_t *word_at(shmp_registry_t *r, uint64_t off)
{
	uint32_t *w = shmp_segment_ptr(shmp_registry_segment(r), off, 8);
	T_CHECK(w);
	return w;
}

static struct shmp_object_info look(shmp_registry_t *r, const char *name)
{
	struct shmp_object_info in;
	memset(&in, 0x5a, sizeof in);
	T_EQ(shmp_registry_lookup(r, name, &in), 0);
	return in;
}

/* Lookup says the object is valid, or invalid for `err`. */
static void expect(shmp_registry_t *r, const char *name, int err)
{
	struct shmp_object_info in = look(r, name);
	if (in.valid != (err == 0) || in.error != err) {
		fprintf(stderr, "%s: valid %d error %d (%s), want error %d (%s)\n", name, in.valid, in.error,
			shmp_strerror(in.error), err, shmp_strerror(err));
		exit(1);
	}
}

static void test_every_type(void)
{
	shmp_registry_t *r = new_registry("types");
	char name[32];
	for (int t = FIRST_TYPE; t <= LAST_TYPE; t++) {
		snprintf(name, sizeof name, "o%d", t);
		put_t(t, T_OK(get_t(r, t, name, SHMP_REG_CREATE_ONLY)));
		expect(r, name, 0);
		uint32_t *w = word_at(r, look(r, name).offset);
		uint32_t magic = w[0], version = w[1];
		T_CHECK(version >= 1);

		w[1] = version + 1;
		expect(r, name, -SHMP_EVERSION);
		T_FAILS(get_t(r, t, name, SHMP_REG_GET_ONLY), SHMP_EVERSION);
		w[1] = 0; /* what an older build's reserved word holds */
		expect(r, name, -SHMP_EVERSION);
		T_FAILS(get_t(r, t, name, SHMP_REG_GET_ONLY), SHMP_EVERSION);
		w[1] = version;

		w[0] = magic ^ 1;
		expect(r, name, -SHMP_ECORRUPT);
		T_FAILS(get_t(r, t, name, SHMP_REG_GET_ONLY), SHMP_ECORRUPT);
		w[0] = magic;

		expect(r, name, 0);
		put_t(t, T_OK(get_t(r, t, name, SHMP_REG_GET_ONLY)));
	}
	shmp_registry_destroy(r);
}

#define RING_MAGIC 0x52494e47u

static void test_queue_ring(void)
{
	shmp_registry_t *r = new_registry("ring");
	shmp_queue_t *q = T_OK(shmp_registry_queue(r, "q", 4, 0));
	T_EQ(shmp_queue_put(q, "x", 1, 0), 0);
	shmp_queue_destroy(q);
	expect(r, "q", 0);
	/* The queue's ring: the one block of the segment that starts with the
	 * ring's magic and version 1, on a cache line. */
	shmp_segment_t *seg = shmp_registry_segment(r);
	unsigned char *b = shmp_segment_base(seg);
	uint32_t *ring = NULL;
	for (size_t off = 64; off + 8 <= shmp_segment_size(seg); off += 64) {
		uint32_t *w = (uint32_t *)(b + off);
		if (w[0] == RING_MAGIC && w[1] == 1) {
			T_CHECK(!ring);
			ring = w;
		}
	}
	T_CHECK(ring);
	ring[1] = 2;
	expect(r, "q", -SHMP_EVERSION);
	T_FAILS(shmp_registry_queue(r, "q", 0, SHMP_REG_GET_ONLY), SHMP_EVERSION);
	ring[1] = 1;
	q = T_OK(shmp_registry_queue(r, "q", 0, SHMP_REG_GET_ONLY));
	T_EQ(shmp_queue_qsize(q), 1);
	shmp_queue_destroy(q);
	struct shmp_object_info in = look(r, "q");
	T_EQ(in.depth, 1);
	shmp_registry_destroy(r);
}

/* ---- Pool ------------------------------------------------------------------ */

static shmp_sem_t *gate; /* in the default segment: workers see it */

static int blocked_task(const void *arg, void *res, const struct shmp_task_ctx *ctx)
{
	(void)arg, (void)res, (void)ctx;
	return shmp_sem_acquire(gate, 30);
}

/* The pool's entry, found by going over the slots as `shmp ls` does. */
static struct shmp_object_info pool_by_slots(shmp_registry_t *r)
{
	struct shmp_object_info in, found = { .type = 0 };
	int n = 0;
	for (unsigned i = 0; shmp_registry_info(r, i, &in) != -ERANGE; i++)
		if (shmp_registry_info(r, i, &in) == 1 && in.type == SHMP_TYPE_POOL) {
			found = in;
			n++;
		}
	T_EQ(n, 1);
	return found;
}

static void test_pool(void)
{
	gate = T_OK(shmp_sem_create(0, NULL));
	shmp_registry_t *r = new_registry("pool");
	struct shmp_pool_opts o = SHMP_OPTS(shmp_pool_opts, .registry = r, .name = "p",
					    .queue_capacity = POOL_CAPACITY);
	shmp_pool_t *p = shmp_pool_create(2, &o);
	T_CHECK(p);
	struct shmp_object_info in = pool_by_slots(r);
	T_EQ(strcmp(in.name, "p"), 0);
	T_EQ(in.valid, 1);
	T_EQ(in.error, 0);
	T_EQ(in.workers, 2);
	T_EQ(in.capacity, POOL_CAPACITY);
	T_EQ(in.state, SHMP_POOL_RUNNING);
	T_EQ(in.depth, 0);

	shmp_async_t *a[5];
	for (int i = 0; i < 5; i++)
		a[i] = T_OK(shmp_pool_apply_async(p, blocked_task, NULL, 0, NULL, 0, NULL));
	/* Both workers take one and block: three stay queued. */
	double until = t_now() + 20;
	while (t_pool_stats(p).running < 2 && t_now() < until)
		t_sleep_ms(5);
	T_EQ(t_pool_stats(p).running, 2);
	in = look(r, "p");
	T_EQ(in.valid, 1);
	T_CHECK(in.depth >= 3 && in.depth <= 5);

	uint32_t *w = word_at(r, in.offset);
	uint32_t version = w[1];
	w[1] = version + 1;
	expect(r, "p", -SHMP_EVERSION);
	w[1] = version;
	expect(r, "p", 0);

	for (int i = 0; i < 5; i++)
		T_EQ(shmp_sem_release(gate), 0);
	for (int i = 0; i < 5; i++) {
		T_EQ(shmp_async_get(a[i], 30, NULL), 0);
		shmp_async_destroy(a[i]);
	}
	in = look(r, "p");
	T_EQ(in.depth, 0);
	T_EQ(shmp_pool_close(p), 0);
	T_EQ(shmp_pool_join(p, 30), 0);
	shmp_pool_destroy(p);
	T_EQ(shmp_registry_lookup(r, "p", &in), -ENOENT);
	shmp_registry_destroy(r);
	shmp_sem_destroy(gate);
}

/* ---- pipeline --------------------------------------------------------------- */

static int pass_on(const struct shmp_msg *in, shmp_stage_ctx_t *ctx, void *arg)
{
	(void)arg;
	return shmp_stage_emit(ctx, in->data, in->len);
}

static void test_pipeline(void)
{
	shmp_registry_t *r = new_registry("pipeline");
	struct shmp_pipeline_opts o = SHMP_OPTS(shmp_pipeline_opts, .registry = r, .name = "pl", .capacity = 8);
	shmp_pipeline_t *pl = shmp_pipeline_create(&o);
	T_CHECK(pl);
	T_CHECK(shmp_pipeline_add_stage(pl, "a", pass_on, NULL, 1) > 0);
	T_CHECK(shmp_pipeline_add_stage(pl, "b", pass_on, NULL, 2) > 0);
	T_EQ(shmp_pipeline_start(pl), 0);
	struct shmp_object_info in = look(r, "pl");
	T_EQ(in.type, SHMP_TYPE_PIPELINE);
	T_EQ(in.valid, 1);
	T_EQ(in.error, 0);
	T_EQ(in.stages, 2);
	T_EQ(in.workers, 3);
	T_EQ(in.state, SHMP_PIPELINE_RUNNING);

	for (int i = 0; i < 3; i++)
		T_EQ(shmp_pipeline_put(pl, "m", 1, 0, 10), 0);
	/* Nobody takes them: all three end up waiting in the rings. */
	double until = t_now() + 20;
	while (look(r, "pl").depth != 3 && t_now() < until)
		t_sleep_ms(5);
	T_EQ(look(r, "pl").depth, 3);

	uint32_t *w = word_at(r, in.offset);
	uint32_t version = w[1];
	w[1] = version + 1;
	expect(r, "pl", -SHMP_EVERSION);
	w[1] = version;
	expect(r, "pl", 0);

	for (int i = 0; i < 3; i++) {
		struct shmp_msg m;
		T_EQ(shmp_pipeline_next(pl, &m, 10), 0);
		T_EQ(m.len, 1);
		T_EQ(shmp_pipeline_done(pl), 0);
	}
	T_EQ(look(r, "pl").depth, 0);
	T_EQ(shmp_pipeline_close(pl), 0);
	struct shmp_msg m;
	T_EQ(shmp_pipeline_next(pl, &m, 10), -SHMP_ECLOSED);
	T_EQ(shmp_pipeline_join(pl, 10), 0);
	shmp_pipeline_destroy(pl);
	shmp_registry_destroy(r);
}

int main(void)
{
	t_watchdog(120);
	main_pid = getpid();
	atexit(cleanup);
	test_every_type();
	test_queue_ring();
	test_pool();
	test_pipeline();
	printf("every type valid, versions and magics checked, pool and pipeline reported\n");
	return 0;
}
