/* The one lifetime rule for pipelines (include/shmp/pipeline.h): a process
 * forked from the creator that calls shmp_pipeline_destroy on the handle it
 * inherited releases its copy only. For a pipeline in its own segment and
 * one in a named registry, with worker processes and with worker threads,
 * and before and after start:
 * - the child's destroy returns, the child exits 0;
 * - then the creator's pipeline is whole: its workers alive (stats), it
 *   carries messages before and after (every one arrives once), close
 *   and join end it normally (DONE, join 0), the registry still names it
 *   (shmp_pipeline_inspect) until the creator's destroy, which unnames it;
 * - nothing is left: no child, no segment (the registry is destroyed).
 * A child that closed rings or signalled the workers through the pidfds it
 * inherited (what destroy did before) fails every check after the fork. */
#include "t.h"

static int fwd(const struct shmp_msg *in, shmp_stage_ctx_t *ctx, void *arg)
{
	(void)arg;
	return shmp_stage_emit(ctx, in->data, in->len);
}

static shmp_pipeline_t *g_pl;

static int child_destroys(void *arg)
{
	(void)arg;
	shmp_pipeline_destroy(g_pl);
	return 0;
}

static void send_take8(shmp_pipeline_t *pl, uint64_t from)
{
	for (uint64_t i = from; i < from + 8; i++)
		T_EQ(shmp_pipeline_put(pl, &i, sizeof i, (uint32_t)i, 10), 0);
	unsigned seen = 0; /* stage b's two workers may reorder: each once */
	for (uint64_t i = from; i < from + 8; i++) {
		struct shmp_msg m;
		T_EQ(shmp_pipeline_next(pl, &m, 10), 0);
		uint64_t v;
		T_EQ(m.len, sizeof v);
		memcpy(&v, m.data, sizeof v);
		T_CHECK(v >= from && v < from + 8 && !(seen & 1u << (v - from)));
		seen |= 1u << (v - from);
		T_EQ(shmp_pipeline_done(pl), 0);
	}
}

/* n messages, 8 in flight at a time (the rings hold 16). */
static void send_take(shmp_pipeline_t *pl, uint64_t from, uint64_t n)
{
	for (uint64_t k = from; k < from + n; k += 8)
		send_take8(pl, k);
}

static void trial(int threads, int named, int fork_before_start)
{
	shmp_registry_t *reg = NULL;
	const char *segname = t_segname(named ? "reg" : "none");
	if (named) {
		reg = shmp_registry_create(segname, NULL);
		T_CHECK(reg);
	}
	struct shmp_pipeline_opts o = SHMP_OPTS(shmp_pipeline_opts, .threads = threads, .registry = reg,
						.name = "plf", .capacity = 16, .segment_size = 16u << 20);
	shmp_pipeline_t *pl = shmp_pipeline_create(&o);
	T_CHECK(pl);
	T_EQ(shmp_pipeline_add_stage(pl, "a", fwd, NULL, 1), 1);
	T_EQ(shmp_pipeline_add_stage(pl, "b", fwd, NULL, 2), 2);
	g_pl = pl;
	if (fork_before_start)
		t_wait_ok(t_fork(child_destroys, NULL), 20);
	T_EQ(shmp_pipeline_start(pl), 0);
	send_take(pl, 0, 96);
	if (!fork_before_start)
		t_wait_ok(t_fork(child_destroys, NULL), 20);
	/* Every worker alive (a thread worker counts once it has run: give a
	 * loaded machine time to schedule it). */
	struct shmp_pipeline_stats st;
	double until = t_now() + 10;
	for (;;) {
		T_EQ(shmp_pipeline_stats(pl, &st), 0);
		T_EQ(st.state, SHMP_PIPELINE_RUNNING);
		if (st.stage[0].alive == 1 && st.stage[1].alive == 2)
			break;
		T_CHECK(t_now() < until);
		t_sleep_ms(2);
	}
	T_EQ(st.stage[0].deaths + st.stage[1].deaths, 0);
	if (named) {
		struct shmp_pipeline_stats is;
		T_EQ(shmp_pipeline_inspect(reg, "plf", &is), 0);
		T_EQ(is.nstages, 2);
	}
	send_take(pl, 96, 104);
	T_EQ(shmp_pipeline_close(pl), 0);
	struct shmp_msg m;
	T_EQ(shmp_pipeline_next(pl, &m, 10), -SHMP_ECLOSED);
	T_EQ(shmp_pipeline_join(pl, 10), 0);
	T_EQ(shmp_pipeline_stats(pl, &st), 0);
	T_EQ(st.state, SHMP_PIPELINE_DONE);
	T_EQ(st.messages_in, 200);
	T_EQ(st.messages_out, 200);
	T_EQ(st.lost, 0);
	shmp_pipeline_destroy(pl);
	if (named) {
		struct shmp_pipeline_stats is;
		T_EQ(shmp_pipeline_inspect(reg, "plf", &is), -ENOENT);
		shmp_registry_destroy(reg);
	}
	T_NO_CHILDREN();
	printf("%s, %s, child's destroy %s start: ok\n", threads ? "threads" : "processes",
	       named ? "in a registry" : "own segment", fork_before_start ? "before" : "after");
}

int main(void)
{
	t_watchdog(120);
	for (int threads = 0; threads < 2; threads++)
		for (int named = 0; named < 2; named++)
			for (int before = 0; before < 2; before++)
				trial(threads, named, before);
	printf("ok\n");
	return 0;
}
