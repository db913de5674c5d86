/* Pipelines (include/shmp/pipeline.h): the source in this process (put and
 * reserve/commit/cancel) -> 1, 2 or 3 stages of 1 or 2 workers -> the sink
 * in this process (next/done), for worker processes and opts.threads:
 * - every message arrives exactly once (or once per copy a stage emits:
 *   stages emit 0, 1 or 2 messages per input), with its bytes, seq (the
 *   source numbers from 0; a cancelled reservation takes no number), tag,
 *   offset 0 and flags 0; in source order when every stage has one worker;
 *   messages both inline and far beyond inline_size (blocks);
 * - stages emit with shmp_stage_emit and shmp_stage_reserve/commit, see
 *   their index and worker number; a stage fn returning < 0 counts in
 *   stats.stage[].failed and the stage goes on;
 * - stats after join: messages/bytes in and out, processed per stage,
 *   latency count == messages out, p50 <= p99 <= p99.9 <= max, state DONE;
 * - backpressure (capacity 4): puts stop at a full ring (put -ETIMEDOUT
 *   after its timeout), stats.stage[].queued never exceeds the capacity, a
 *   blocked put goes through once room appears;
 * - close drains: put/reserve after close are -SHMP_ECLOSED, next returns
 *   every remaining message then -SHMP_ECLOSED, join returns 0;
 * - spin mode carries the same traffic;
 * - errors: NULLs -EINVAL, start with no stage -EINVAL, start twice and
 *   add_stage after start -EBUSY, the 17th stage -ENOSPC (16 stages run),
 *   messages over max_message -EMSGSIZE at the source and in a stage;
 * - a pipeline in a registry (opts.registry) lives in its segment, is
 *   named there (a second one of the same name: NULL, EEXIST, nothing left
 *   allocated), and is seen by shmp_pipeline_inspect from a
 *   child that attaches to the segment by name; its name goes at destroy.
 * Every worker process is reaped by destroy (no child left). */
#include "t.h"

#include <pthread.h>

#define MAXN 4000

/* Every message starts with this; the rest is t_fill(.., id). */
struct mh {
	uint64_t id;
	uint32_t copy;
	uint32_t len;
};

enum { K_EMIT, K_ZC, K_FAN, K_FAIL, K_GATE, K_SLOW, K_BIG };

struct stage_arg {
	int kind;
	int index;        /* the stage's expected index (1..) */
	unsigned workers;
};
static struct stage_arg SA[SHMP_PIPELINE_MAX_STAGES + 1];

/* Shared counters (a raw 'q' Array, inherited by the workers). */
enum { C_BAD, C_WHY, C_BIG_EMIT, C_BIG_RES, C_BIG_ERRNO, C_PROC, C_N = C_PROC + SHMP_PIPELINE_MAX_STAGES + 1 };
static _Atomic int64_t *C;
static shmp_event_t *gate;

static uint32_t tag_of(uint64_t id)
{
	return (uint32_t)(id * 2654435761u) ^ 0x5a5a5a5au;
}

static size_t len_of(uint64_t id)
{
	static const size_t lens[] = { 16, 17, 40, 63, 64, 65, 200, 255, 256, 257, 1000, 4096 };
	if (id % 500 == 499)
		return 300000;
	if (id % 97 == 13)
		return 70000;
	return lens[id % 12];
}

static void make_msg(void *buf, uint64_t id)
{
	size_t len = len_of(id);
	struct mh h = { .id = id, .copy = 0, .len = (uint32_t)len };
	memcpy(buf, &h, sizeof h);
	t_fill((unsigned char *)buf + sizeof h, len - sizeof h, (uint32_t)id);
}

/* What is wrong with message m (copy `copy` expected or any if -1): 0 if
 * nothing. */
static int msg_bad(const struct shmp_msg *m)
{
	struct mh h;
	if (m->len < sizeof h)
		return 1;
	memcpy(&h, m->data, sizeof h);
	if (h.len != m->len)
		return 2;
	if (h.id != m->seq)
		return 3;
	if (m->tag != tag_of(h.id))
		return 4;
	if (m->offset != 0 || m->flags != 0)
		return 5;
	if (h.len != len_of(h.id))
		return 6;
	if (!t_filled((const unsigned char *)m->data + sizeof h, m->len - sizeof h, (uint32_t)h.id))
		return 7;
	if (h.copy > 1)
		return 8;
	if (m->t0_ns == 0)
		return 9;
	return 0;
}

static void bad(int why)
{
	atomic_fetch_add(&C[C_BAD], 1);
	int64_t z = 0;
	atomic_compare_exchange_strong(&C[C_WHY], &z, why);
}

static int stage_fn(const struct shmp_msg *in, shmp_stage_ctx_t *ctx, void *arg)
{
	const struct stage_arg *a = arg;
	/* K_BIG also gets a 1000-byte message of another shape. */
	int why = a->kind == K_BIG && in->len == 1000 ? 0 : msg_bad(in);
	if (why)
		bad(why);
	if (shmp_stage_index(ctx) != a->index)
		bad(20);
	int w = shmp_stage_worker(ctx);
	if (w < 0 || (unsigned)w >= a->workers)
		bad(21);
	atomic_fetch_add(&C[C_PROC + a->index], 1);
	struct mh h;
	memcpy(&h, in->data, sizeof h);
	switch (a->kind) {
	case K_EMIT:
		if (shmp_stage_emit(ctx, in->data, in->len) != 0)
			bad(22);
		return 0;
	case K_ZC: {
		/* Reserve more than needed, commit the exact length. */
		void *p = shmp_stage_reserve(ctx, in->len + 32);
		if (!p) {
			bad(23);
			return -1;
		}
		memcpy(p, in->data, in->len);
		if (shmp_stage_commit(ctx, in->len) != 0)
			bad(24);
		return 0;
	}
	case K_FAN: {
		/* id % 3 copies: 0, 1 or 2; copy 0 zero-copy, copy 1 by emit. */
		unsigned n = (unsigned)(h.id % 3);
		for (unsigned j = 0; j < n; j++) {
			if (j == 0) {
				char *p = shmp_stage_reserve(ctx, in->len);
				if (!p) {
					bad(25);
					return -1;
				}
				memcpy(p, in->data, in->len);
				if (shmp_stage_commit(ctx, in->len) != 0)
					bad(26);
			} else {
				char *b = malloc(in->len);
				if (!b) {
					bad(27);
					return -1;
				}
				memcpy(b, in->data, in->len);
				h.copy = j;
				memcpy(b, &h, sizeof h);
				if (shmp_stage_emit(ctx, b, in->len) != 0)
					bad(28);
				free(b);
			}
		}
		return 0;
	}
	case K_FAIL:
		if (h.id % 7 == 3)
			return -EIO; /* failed: emits nothing */
		if (shmp_stage_emit(ctx, in->data, in->len) != 0)
			bad(29);
		return 0;
	case K_GATE:
		/* Hold each message until the test opens the gate. */
		if (shmp_event_wait(gate, 30) != 0)
			bad(30);
		if (shmp_stage_emit(ctx, in->data, in->len) != 0)
			bad(31);
		return 0;
	case K_SLOW:
		t_sleep_ms(2);
		if (shmp_stage_emit(ctx, in->data, in->len) != 0)
			bad(32);
		return 0;
	case K_BIG: {
		/* Over max_message (1000 here): refused, nothing sent. */
		atomic_store(&C[C_BIG_EMIT], shmp_stage_emit(ctx, in->data, 1001));
		errno = 0;
		void *p = shmp_stage_reserve(ctx, 1001);
		atomic_store(&C[C_BIG_RES], p == NULL);
		atomic_store(&C[C_BIG_ERRNO], errno);
		if (shmp_stage_emit(ctx, in->data, in->len) != 0)
			bad(33);
		return 0;
	}
	}
	return -1;
}

static void reset_counters(void)
{
	for (int i = 0; i < C_N; i++)
		atomic_store(&C[i], 0);
}

static void check_no_bad(void)
{
	if (atomic_load(&C[C_BAD])) {
		fprintf(stderr, "stages saw %lld bad messages, first reason %lld\n",
			(long long)atomic_load(&C[C_BAD]), (long long)atomic_load(&C[C_WHY]));
		T_CHECK(!"bad message in a stage");
	}
}

static shmp_pipeline_t *new_pl(int threads, unsigned capacity, unsigned inline_size, int spin)
{
	struct shmp_pipeline_opts o = SHMP_OPTS(shmp_pipeline_opts, .capacity = capacity,
						.inline_size = inline_size, .threads = threads, .spin = spin,
						.segment_size = 64u << 20);
	shmp_pipeline_t *pl = shmp_pipeline_create(&o);
	T_CHECK(pl);
	return pl;
}

static int add(shmp_pipeline_t *pl, int kind, int index, unsigned workers)
{
	char name[32];
	snprintf(name, sizeof name, "s%d-k%d", index, kind);
	SA[index] = (struct stage_arg){ kind, index, workers };
	int r = shmp_pipeline_add_stage(pl, name, stage_fn, &SA[index], workers);
	T_EQ(r, index);
	return r;
}

/* ---- the sink ------------------------------------------------------------ */

struct sink {
	unsigned char cnt[MAXN][2];
	uint64_t msgs, bytes;
	int ordered;               /* check source order */
	uint64_t last_key;         /* (id << 1 | copy) + 1 of the last one */
};

static struct sink S;

/* A message's bytes (up to 300000). */
static unsigned char BUF[300000];

static void sink_take(const struct shmp_msg *m)
{
	int why = msg_bad(m);
	if (why) {
		fprintf(stderr, "sink: bad message (reason %d) seq %llu len %zu\n", why,
			(unsigned long long)m->seq, m->len);
		T_CHECK(!"bad message at the sink");
	}
	struct mh h;
	memcpy(&h, m->data, sizeof h);
	T_CHECK(h.id < MAXN);
	T_CHECK(S.cnt[h.id][h.copy] < 255);
	S.cnt[h.id][h.copy]++;
	uint64_t key = (h.id << 1 | h.copy) + 1;
	if (S.ordered && key <= S.last_key) {
		fprintf(stderr, "out of order: id %llu copy %u after key %llu\n", (unsigned long long)h.id,
			h.copy, (unsigned long long)S.last_key);
		T_CHECK(!"out of order");
	}
	S.last_key = key;
	S.msgs++;
	S.bytes += m->len;
}

/* Take one message if there is one within `timeout`: 1, or 0. */
static int drain_one(shmp_pipeline_t *pl, double timeout)
{
	struct shmp_msg m;
	int r = shmp_pipeline_next(pl, &m, timeout);
	if (r == -ETIMEDOUT)
		return 0;
	T_EQ(r, 0);
	sink_take(&m);
	T_EQ(shmp_pipeline_done(pl), 0);
	return 1;
}

/* Send id: even ids by put, odd ones by reserve/commit (reserving more
 * than needed, committing the exact length). Never blocks: while the
 * input is full, take output. */
static void send(shmp_pipeline_t *pl, uint64_t id, unsigned char *buf)
{
	size_t len = len_of(id);
	for (;;) {
		int r;
		if (id % 2 == 0) {
			make_msg(buf, id);
			r = shmp_pipeline_put(pl, buf, len, tag_of(id), 0);
		} else {
			struct shmp_pipeline_ticket t;
			r = shmp_pipeline_reserve(pl, len + 7, &t, 0);
			if (r == 0) {
				T_CHECK(t.data != NULL);
				T_CHECK(t.len >= len + 7);
				make_msg(t.data, id);
				r = shmp_pipeline_commit(pl, &t, len, tag_of(id));
				T_EQ(r, 0);
			}
		}
		if (r == 0)
			return;
		T_EQ(r, -ETIMEDOUT);
		drain_one(pl, 0.002);
	}
}

/* How many messages for id leave a stage of this kind per input. */
static unsigned factor(int kind, uint64_t id)
{
	if (kind == K_FAN)
		return (unsigned)(id % 3);
	if (kind == K_FAIL)
		return id % 7 == 3 ? 0 : 1;
	return 1;
}

/* Run n messages through stages kinds[0..nst-1] with `workers` each. */
static void run_flow(int threads, const int *kinds, int nst, unsigned workers, unsigned inline_size, int spin,
		     unsigned n)
{
	double t0 = t_now();
	reset_counters();
	memset(&S, 0, sizeof S);
	S.ordered = workers == 1;
	shmp_pipeline_t *pl = new_pl(threads, 0, inline_size, spin);
	for (int i = 0; i < nst; i++)
		add(pl, kinds[i], i + 1, workers);
	T_EQ(shmp_pipeline_start(pl), 0);
	struct shmp_pipeline_stats st;
	T_EQ(shmp_pipeline_stats(pl, &st), 0);
	T_EQ(st.state, SHMP_PIPELINE_RUNNING);
	T_EQ(st.nstages, nst);

	unsigned char *buf = malloc(300000);
	T_CHECK(buf);
	uint64_t bytes_in = 0;
	for (uint64_t id = 0; id < n; id++) {
		send(pl, id, buf);
		bytes_in += len_of(id);
		while (drain_one(pl, 0))
			;
	}
	free(buf);
	T_EQ(shmp_pipeline_close(pl), 0);
	T_EQ(shmp_pipeline_close(pl), 0); /* twice is fine */
	/* Drain: every message, then -SHMP_ECLOSED. */
	for (;;) {
		struct shmp_msg m;
		int r = shmp_pipeline_next(pl, &m, 10);
		if (r == -SHMP_ECLOSED)
			break;
		T_EQ(r, 0);
		sink_take(&m);
		T_EQ(shmp_pipeline_done(pl), 0);
	}
	T_FAST(shmp_pipeline_next(pl, &(struct shmp_msg){ 0 }, 1), -SHMP_ECLOSED);
	T_EQ(shmp_pipeline_join(pl, 10), 0);
	check_no_bad();

	/* Exactly the expected copies of every id; per-stage inputs. */
	uint64_t in_k[SHMP_PIPELINE_MAX_STAGES + 1] = { 0 }, failed[SHMP_PIPELINE_MAX_STAGES + 1] = { 0 };
	uint64_t out_msgs = 0;
	for (uint64_t id = 0; id < n; id++) {
		uint64_t cur = 1;
		for (int i = 0; i < nst; i++) {
			in_k[i] += cur;
			if (kinds[i] == K_FAIL && id % 7 == 3)
				failed[i] += cur;
			cur *= factor(kinds[i], id);
		}
		out_msgs += cur;
		for (unsigned c = 0; c < 2; c++) {
			unsigned want = c < cur ? 1 : 0;
			if (S.cnt[id][c] != want) {
				fprintf(stderr, "id %llu copy %u arrived %u times, want %u\n",
					(unsigned long long)id, c, S.cnt[id][c], want);
				T_CHECK(!"wrong delivery count");
			}
		}
	}
	T_EQ(S.msgs, out_msgs);

	T_EQ(shmp_pipeline_stats(pl, &st), 0);
	T_EQ(st.state, SHMP_PIPELINE_DONE);
	T_EQ(st.nstages, nst);
	T_EQ(st.messages_in, n);
	T_EQ(st.bytes_in, bytes_in);
	T_EQ(st.messages_out, out_msgs);
	T_EQ(st.bytes_out, S.bytes);
	T_EQ(st.lost, 0);
	T_EQ(st.source_errors, 0);
	T_CHECK(st.elapsed > 0 && st.elapsed < 60);
	T_EQ(st.lat_count, out_msgs);
	if (out_msgs) {
		T_CHECK(st.lat_p50 <= st.lat_p99);
		T_CHECK(st.lat_p99 <= st.lat_p999);
		/* p999 is a bucket's middle (3% wide); max is exact. */
		T_CHECK((double)st.lat_p999 <= (double)st.lat_max * 1.04 + 1);
		T_CHECK(st.lat_max > 0);
		T_CHECK(st.lat_mean > 0 && st.lat_mean <= (double)st.lat_max);
	}
	for (int i = 0; i < nst; i++) {
		T_EQ(st.stage[i].workers, workers);
		T_EQ(st.stage[i].processed, in_k[i]);
		T_EQ(atomic_load(&C[C_PROC + i + 1]), in_k[i]);
		T_EQ(st.stage[i].failed, failed[i]);
		T_EQ(st.stage[i].deaths, 0);
		T_EQ(st.stage[i].restarts, 0);
		T_EQ(st.stage[i].queued, 0);
		char name[32];
		snprintf(name, sizeof name, "s%d-k%d", i + 1, kinds[i]);
		T_CHECK(strcmp(st.stage[i].name, name) == 0);
	}
	/* Finished: the input is closed for good. */
	T_FAST(shmp_pipeline_put(pl, "x", 1, 0, 1), -SHMP_ECLOSED);
	shmp_pipeline_destroy(pl);
	if (!threads)
		T_NO_CHILDREN();
	printf("flow %s stages %d workers %u inline %u spin %d: %u in, %llu out, %.2f s, p50 %llu ns p99 %llu ns\n",
	       threads ? "threads" : "procs", nst, workers, inline_size, spin, n, (unsigned long long)out_msgs,
	       t_now() - t0, (unsigned long long)st.lat_p50, (unsigned long long)st.lat_p99);
}

/* ---- errors ---------------------------------------------------------------- */

static void test_errors(void)
{
	struct shmp_msg m;
	struct shmp_pipeline_stats st;
	struct shmp_pipeline_ticket t;
	shmp_pipeline_destroy(NULL);

	/* NULL pipeline everywhere. */
	T_EQ(shmp_pipeline_add_stage(NULL, "a", stage_fn, &SA[1], 1), -EINVAL);
	T_EQ(shmp_pipeline_start(NULL), -EINVAL);
	T_EQ(shmp_pipeline_put(NULL, "x", 1, 0, 0), -EINVAL);
	T_EQ(shmp_pipeline_reserve(NULL, 1, &t, 0), -EINVAL);
	T_EQ(shmp_pipeline_commit(NULL, &t, 1, 0), -EINVAL);
	T_EQ(shmp_pipeline_cancel(NULL, &t), -EINVAL);
	T_EQ(shmp_pipeline_close(NULL), -EINVAL);
	T_EQ(shmp_pipeline_next(NULL, &m, 0), -EINVAL);
	T_EQ(shmp_pipeline_done(NULL), -EINVAL);
	T_EQ(shmp_pipeline_join(NULL, 0), -EINVAL);
	T_EQ(shmp_pipeline_stats(NULL, &st), -EINVAL);
	T_EQ(shmp_pipeline_reset_latency(NULL), -EINVAL);
	T_EQ(shmp_pipeline_inspect(NULL, "pipeline", &st), -EINVAL);
	T_EQ(shmp_stage_worker(NULL), -EINVAL);
	T_EQ(shmp_stage_index(NULL), -EINVAL);
	T_EQ(shmp_stage_emit(NULL, "x", 1), -EINVAL);
	T_EQ(shmp_stage_commit(NULL, 1), -EINVAL);
	errno = 0;
	T_CHECK(shmp_stage_reserve(NULL, 1) == NULL);
	T_EQ(errno, EINVAL);

	/* Default options (NULL opts). */
	shmp_pipeline_t *pl = shmp_pipeline_create(NULL);
	T_CHECK(pl);
	T_EQ(shmp_pipeline_start(pl), -EINVAL); /* no stage */
	T_EQ(shmp_pipeline_add_stage(pl, "a", NULL, NULL, 1), -EINVAL);
	T_EQ(shmp_pipeline_add_stage(pl, "a", stage_fn, &SA[1], 0), -EINVAL);
	T_EQ(shmp_pipeline_stats(pl, NULL), -EINVAL);
	T_EQ(shmp_pipeline_stats(pl, &st), 0);
	T_EQ(st.state, SHMP_PIPELINE_NEW);
	T_EQ(st.messages_in, 0);
	shmp_pipeline_destroy(pl); /* never started */

	/* 16 stages, then -ENOSPC; the 16 run (processes). */
	reset_counters();
	memset(&S, 0, sizeof S);
	S.ordered = 1;
	pl = new_pl(0, 0, 0, 0);
	for (int i = 1; i <= SHMP_PIPELINE_MAX_STAGES; i++)
		add(pl, i % 2 ? K_EMIT : K_ZC, i, 1);
	T_EQ(shmp_pipeline_add_stage(pl, "x", stage_fn, &SA[1], 1), -ENOSPC);
	T_EQ(shmp_pipeline_start(pl), 0);
	T_EQ(shmp_pipeline_start(pl), -EBUSY);
	T_EQ(shmp_pipeline_add_stage(pl, "late", stage_fn, &SA[1], 1), -EBUSY);
	T_EQ(shmp_pipeline_put(pl, NULL, 4, 0, 0), -EINVAL);
	T_EQ(shmp_pipeline_reserve(pl, 4, NULL, 0), -EINVAL);
	T_EQ(shmp_pipeline_commit(pl, NULL, 4, 0), -EINVAL);
	T_EQ(shmp_pipeline_cancel(pl, NULL), -EINVAL);
	T_EQ(shmp_pipeline_next(pl, NULL, 0), -EINVAL);
	/* Nothing out yet: next times out after its timeout. */
	T_FAST(shmp_pipeline_next(pl, &m, 0), -ETIMEDOUT);
	T_ABOUT(shmp_pipeline_next(pl, &m, 0.2), -ETIMEDOUT);
	T_ABOUT(shmp_pipeline_join(pl, 0.2), -ETIMEDOUT);
	unsigned char *buf = malloc(300000);
	T_CHECK(buf);
	for (uint64_t id = 0; id < 200; id++)
		send(pl, id, buf);
	free(buf);
	T_EQ(shmp_pipeline_close(pl), 0);
	for (int k = 0; k < 200; k++)
		T_EQ(drain_one(pl, 10), 1);
	T_FAST(shmp_pipeline_next(pl, &m, 5), -SHMP_ECLOSED);
	T_EQ(shmp_pipeline_join(pl, 10), 0);
	check_no_bad();
	T_EQ(shmp_pipeline_stats(pl, &st), 0);
	T_EQ(st.nstages, SHMP_PIPELINE_MAX_STAGES);
	for (int i = 0; i < SHMP_PIPELINE_MAX_STAGES; i++)
		T_EQ(st.stage[i].processed, 200);
	T_EQ(st.messages_out, 200);
	for (uint64_t id = 0; id < 200; id++)
		T_EQ(S.cnt[id][0], 1);
	shmp_pipeline_destroy(pl);
	T_NO_CHILDREN();

	/* max_message 1000: the source and a stage refuse 1001 bytes. */
	reset_counters();
	struct shmp_pipeline_opts o = SHMP_OPTS(shmp_pipeline_opts, .max_message = 1000,
						.segment_size = 64u << 20);
	pl = shmp_pipeline_create(&o);
	T_CHECK(pl);
	SA[1] = (struct stage_arg){ K_BIG, 1, 1 };
	T_EQ(shmp_pipeline_add_stage(pl, "big", stage_fn, &SA[1], 1), 1);
	T_EQ(shmp_pipeline_start(pl), 0);
	char big[1001];
	memset(big, 'b', sizeof big);
	T_EQ(shmp_pipeline_put(pl, big, 1001, 0, 0), -EMSGSIZE);
	T_EQ(shmp_pipeline_reserve(pl, 1001, &t, 0), -EMSGSIZE);
	/* Commit more than reserved: refused; the ticket can be cancelled. */
	T_EQ(shmp_pipeline_reserve(pl, 10, &t, 1), 0);
	T_EQ(shmp_pipeline_commit(pl, &t, 11, 0), -EINVAL);
	T_EQ(shmp_pipeline_cancel(pl, &t), 0);
	make_msg(big, 0);
	T_EQ(len_of(0), 16);
	T_EQ(shmp_pipeline_put(pl, big, 16, tag_of(0), 1), 0);
	T_EQ(shmp_pipeline_next(pl, &m, 10), 0);
	T_EQ(msg_bad(&m), 0);
	T_EQ(m.len, 16);
	T_EQ(shmp_pipeline_done(pl), 0);
	T_EQ(atomic_load(&C[C_BIG_EMIT]), -EMSGSIZE);
	T_EQ(atomic_load(&C[C_BIG_RES]), 1);
	T_EQ(atomic_load(&C[C_BIG_ERRNO]), EMSGSIZE);
	/* 1000 bytes exactly is fine. */
	memset(big, 'b', sizeof big);
	T_EQ(shmp_pipeline_put(pl, big, 1000, 0, 1), 0);
	T_EQ(shmp_pipeline_close(pl), 0);
	T_EQ(shmp_pipeline_next(pl, &m, 10), 0);
	T_EQ(m.len, 1000);
	T_EQ(m.seq, 1);
	T_EQ(shmp_pipeline_done(pl), 0);
	T_EQ(shmp_pipeline_next(pl, &m, 10), -SHMP_ECLOSED);
	T_EQ(shmp_pipeline_join(pl, 10), 0);
	check_no_bad();
	shmp_pipeline_destroy(pl);
	T_NO_CHILDREN();
}

/* ---- backpressure ------------------------------------------------------- */

static void *open_gate_later(void *arg)
{
	(void)arg;
	t_sleep_ms(300);
	shmp_event_set(gate);
	return NULL;
}

static void test_backpressure(int threads)
{
	enum { CAP = 4 };
	reset_counters();
	memset(&S, 0, sizeof S);
	S.ordered = 1;
	T_EQ(shmp_event_clear(gate), 0);
	shmp_pipeline_t *pl = new_pl(threads, CAP, 0, 0);
	add(pl, K_GATE, 1, 1);
	T_EQ(shmp_pipeline_start(pl), 0);
	unsigned char *buf = BUF;
	struct shmp_pipeline_stats st;
	/* The stage holds the first message at the gate: the input ring
	 * fills; then put waits for room and times out. */
	uint64_t id = 0;
	for (;;) {
		make_msg(buf, id);
		double t0 = t_now();
		int r = shmp_pipeline_put(pl, buf, len_of(id), tag_of(id), 0.2);
		double dt = t_now() - t0;
		if (r == -ETIMEDOUT) {
			T_CHECK(dt >= 0.19 && dt < 2);
			break;
		}
		T_EQ(r, 0);
		id++;
		T_CHECK(id <= CAP + 1);
	}
	T_CHECK(id >= CAP);
	uint64_t first = id;
	T_EQ(shmp_pipeline_stats(pl, &st), 0);
	T_CHECK(st.stage[0].queued <= CAP);
	T_CHECK(st.stage[0].queued >= CAP - 1);
	T_EQ(st.messages_in, id);
	T_CHECK(st.stage[0].processed <= 1);
	/* The same with reserve. */
	struct shmp_pipeline_ticket t;
	T_ABOUT(shmp_pipeline_reserve(pl, 16, &t, 0.2), -ETIMEDOUT);

	/* A put blocked on the full ring goes through once the gate opens. */
	pthread_t th;
	T_EQ(pthread_create(&th, NULL, open_gate_later, NULL), 0);
	make_msg(buf, id);
	double t0 = t_now();
	T_EQ(shmp_pipeline_put(pl, buf, len_of(id), tag_of(id), 10), 0);
	double dt = t_now() - t0;
	T_CHECK(dt >= 0.25 && dt < 5);
	T_EQ(pthread_join(th, NULL), 0);
	id++;
	/* Now the stage runs until its output (capacity 4, nobody reading)
	 * is full, and the input fills again. */
	for (;;) {
		make_msg(buf, id);
		int r = shmp_pipeline_put(pl, buf, len_of(id), tag_of(id), 0.2);
		if (r == -ETIMEDOUT)
			break;
		T_EQ(r, 0);
		id++;
		T_CHECK(id <= 3 * CAP + 1);
		T_EQ(shmp_pipeline_stats(pl, &st), 0);
		T_CHECK(st.stage[0].queued <= CAP);
	}
	/* Input ring, output ring, one held by the worker. */
	T_CHECK(id >= 2 * CAP && id <= 2 * CAP + 2);
	T_EQ(shmp_pipeline_stats(pl, &st), 0);
	T_CHECK(st.stage[0].queued <= CAP);
	T_CHECK(st.stage[0].queued >= CAP - 1);
	T_EQ(st.messages_out, 0);
	printf("backpressure %s: %llu puts fill the input, %llu the pipeline, queued %llu\n",
	       threads ? "threads" : "procs", (unsigned long long)first, (unsigned long long)id,
	       (unsigned long long)st.stage[0].queued);
	/* Drain everything, in order. */
	T_EQ(shmp_pipeline_close(pl), 0);
	for (uint64_t k = 0; k < id; k++)
		T_EQ(drain_one(pl, 10), 1);
	struct shmp_msg m;
	T_FAST(shmp_pipeline_next(pl, &m, 5), -SHMP_ECLOSED);
	T_EQ(shmp_pipeline_join(pl, 10), 0);
	check_no_bad();
	for (uint64_t k = 0; k < id; k++)
		T_EQ(S.cnt[k][0], 1);
	T_EQ(shmp_pipeline_stats(pl, &st), 0);
	T_EQ(st.messages_out, id);
	T_EQ(st.stage[0].processed, id);
	shmp_pipeline_destroy(pl);
	if (!threads)
		T_NO_CHILDREN();
}

/* ---- close drains; cancel takes no seq ------------------------------------- */

static void test_close_drains(int threads)
{
	reset_counters();
	memset(&S, 0, sizeof S);
	S.ordered = 1;
	shmp_pipeline_t *pl = new_pl(threads, 0, 0, 0);
	add(pl, K_SLOW, 1, 1);
	add(pl, K_EMIT, 2, 1);
	T_EQ(shmp_pipeline_start(pl), 0);
	unsigned char *buf = BUF;
	struct shmp_pipeline_ticket t;
	for (uint64_t id = 0; id < 50; id++) {
		/* A cancelled reservation before each: no message, no seq. */
		T_EQ(shmp_pipeline_reserve(pl, 100, &t, 1), 0);
		memset(t.data, 0xee, 100);
		T_EQ(shmp_pipeline_cancel(pl, &t), 0);
		make_msg(buf, id);
		T_EQ(shmp_pipeline_put(pl, buf, len_of(id), tag_of(id), 1), 0);
	}
	T_EQ(shmp_pipeline_close(pl), 0);
	struct shmp_pipeline_stats st;
	T_EQ(shmp_pipeline_stats(pl, &st), 0);
	/* 50 messages at 2 ms each are still being worked on. */
	T_EQ(st.state, SHMP_PIPELINE_DRAINING);
	T_EQ(st.messages_in, 50);
	T_FAST(shmp_pipeline_put(pl, buf, 16, 0, 1), -SHMP_ECLOSED);
	T_FAST(shmp_pipeline_reserve(pl, 16, &t, 1), -SHMP_ECLOSED);
	T_EQ(shmp_pipeline_close(pl), 0);
	for (int k = 0; k < 50; k++)
		T_EQ(drain_one(pl, 10), 1);
	struct shmp_msg m;
	T_FAST(shmp_pipeline_next(pl, &m, 5), -SHMP_ECLOSED);
	T_FAST(shmp_pipeline_next(pl, &m, 5), -SHMP_ECLOSED);
	T_EQ(shmp_pipeline_join(pl, 10), 0);
	T_EQ(shmp_pipeline_join(pl, 0), 0);
	check_no_bad();
	for (int k = 0; k < 50; k++)
		T_EQ(S.cnt[k][0], 1);
	T_EQ(shmp_pipeline_stats(pl, &st), 0);
	T_EQ(st.state, SHMP_PIPELINE_DONE);
	T_EQ(st.messages_in, 50);
	T_EQ(st.messages_out, 50);
	T_EQ(st.lat_count, 50);
	/* 50 * 2 ms of work before the last ones came out. */
	T_CHECK(st.lat_max >= 50000000ull);
	T_CHECK(st.lat_p50 <= st.lat_p99 && st.lat_p99 <= st.lat_p999);
	T_EQ(shmp_pipeline_reset_latency(pl), 0);
	T_EQ(shmp_pipeline_stats(pl, &st), 0);
	T_EQ(st.lat_count, 0);
	T_EQ(st.lat_max, 0);
	T_EQ(st.messages_out, 50);
	shmp_pipeline_destroy(pl);
	if (!threads)
		T_NO_CHILDREN();
}

/* ---- a pipeline in a named segment, inspected by name from a child -------- */

struct named {
	int go[2];
	const char *seg;
};

static int inspector(void *arg)
{
	struct named *nm = arg;
	close(nm->go[1]);
	if (t_await(nm->go[0], 20) != 1)
		return 2;
	shmp_registry_t *r = shmp_registry_attach(nm->seg, NULL);
	if (!r)
		return 3;
	struct shmp_pipeline_stats st;
	int rc = 0;
	int e = shmp_pipeline_inspect(r, "plx", &st);
	if (e != 0)
		rc = 4;
	else if (st.nstages != 2 || st.state != SHMP_PIPELINE_RUNNING)
		rc = 5;
	else if (st.messages_in != 10 || st.messages_out != 10 || st.lat_count != 10)
		rc = 6;
	else if (strcmp(st.stage[0].name, "alpha") || strcmp(st.stage[1].name, "beta"))
		rc = 7;
	else if (st.stage[0].workers != 1 || st.stage[1].workers != 2 || st.stage[0].alive != 1 ||
		 st.stage[1].alive != 2)
		rc = 8;
	else if (st.stage[0].processed != 10 || st.stage[1].processed != 10)
		rc = 9;
	else if (shmp_pipeline_inspect(r, "nope", &st) != -ENOENT)
		rc = 10;
	else if (shmp_pipeline_inspect(r, "val", &st) != -SHMP_ETYPE)
		rc = 11;
	if (rc)
		fprintf(stderr, "inspector: rc %d (inspect %d, nstages %u state %d in %llu out %llu)\n", rc, e,
			st.nstages, st.state, (unsigned long long)st.messages_in,
			(unsigned long long)st.messages_out);
	shmp_registry_detach(r);
	return rc;
}

static void test_named(void)
{
	struct named nm;
	nm.seg = t_segname("pl");
	T_EQ(pipe(nm.go), 0);
	pid_t kid = t_spawn(inspector, &nm);
	close(nm.go[0]);
	shmp_segment_t *seg = shmp_segment_create(nm.seg, 64u << 20, NULL);
	T_CHECK(seg);
	reset_counters();
	memset(&S, 0, sizeof S);
	S.ordered = 0;
	shmp_registry_t *r = shmp_registry_of(seg);
	T_CHECK(r);
	uint64_t blocks = t_live_blocks(seg);
	struct shmp_pipeline_opts o = SHMP_OPTS(shmp_pipeline_opts, .registry = r, .name = "plx");
	shmp_pipeline_t *pl = shmp_pipeline_create(&o);
	T_CHECK(pl);
	/* Its state is in the registry's segment. */
	T_CHECK(t_live_blocks(seg) > blocks);
	/* The name is taken now: a second one is refused, leaving nothing. */
	blocks = t_live_blocks(seg);
	errno = 0;
	T_CHECK(!shmp_pipeline_create(&o));
	T_EQ(errno, EEXIST);
	T_EQ(t_live_blocks(seg), blocks);
	SA[1] = (struct stage_arg){ K_EMIT, 1, 1 };
	SA[2] = (struct stage_arg){ K_ZC, 2, 2 };
	T_EQ(shmp_pipeline_add_stage(pl, "alpha", stage_fn, &SA[1], 1), 1);
	T_EQ(shmp_pipeline_add_stage(pl, "beta", stage_fn, &SA[2], 2), 2);
	T_EQ(shmp_pipeline_start(pl), 0);
	shmp_value_t *v = shmp_registry_value(r, "val", 'q', NULL, 0);
	T_CHECK(v);
	unsigned char *buf = BUF;
	for (uint64_t id = 0; id < 10; id++)
		send(pl, id, buf);
	for (int k = 0; k < 10; k++)
		T_EQ(drain_one(pl, 10), 1);
	/* Workers have a pid once running; wait for stage 2's two. */
	struct shmp_pipeline_stats st;
	double until = t_now() + 10;
	do {
		T_EQ(shmp_pipeline_stats(pl, &st), 0);
		T_CHECK(t_now() < until);
	} while (st.stage[1].alive != 2 || st.stage[0].alive != 1);
	T_EQ(shmp_pipeline_inspect(r, "plx", &st), 0);
	T_EQ(st.messages_in, 10);
	t_signal(nm.go[1]);
	t_wait_ok(kid, 20);
	close(nm.go[1]);
	T_EQ(shmp_pipeline_close(pl), 0);
	struct shmp_msg m;
	T_FAST(shmp_pipeline_next(pl, &m, 5), -SHMP_ECLOSED);
	T_EQ(shmp_pipeline_join(pl, 10), 0);
	check_no_bad();
	T_EQ(shmp_pipeline_inspect(r, "plx", &st), 0);
	T_EQ(st.state, SHMP_PIPELINE_DONE);
	shmp_pipeline_destroy(pl);
	/* Its name went with it. */
	T_EQ(shmp_pipeline_inspect(r, "plx", &st), -ENOENT);
	shmp_value_destroy(v);
	shmp_registry_detach(r);
	shmp_segment_destroy(seg);
	T_NO_CHILDREN();
}

int main(void)
{
	t_watchdog(150);
	atexit(t_reap_all);
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("seed %llu\n", (unsigned long long)t_seed());
	shmp_array_t *counters = t_counters(C_N);
	C = shmp_array_ptr(counters);
	T_CHECK(C);
	gate = shmp_event_create(NULL);
	T_CHECK(gate);

	test_errors();

	static const int k1[] = { K_EMIT };
	static const int k2[] = { K_ZC, K_FAN };
	static const int k3[] = { K_FAIL, K_EMIT, K_ZC };
	static const int k3b[] = { K_FAN, K_ZC, K_FAIL };
	for (int threads = 0; threads < 2; threads++) {
		for (unsigned w = 1; w <= 2; w++) {
			run_flow(threads, k1, 1, w, w == 1 ? 0 : 64, 0, 1500);
			run_flow(threads, k2, 2, w, w == 1 ? 64 : 0, 0, 1500);
			run_flow(threads, k3, 3, w, w == 1 ? 0 : 64, 0, 1500);
			run_flow(threads, k3b, 3, w, 100, 0, 1000);
		}
	}
	/* Spinning workers (one busy core each: keep it small). */
	run_flow(0, k2, 2, 1, 0, 1, 1000);
	run_flow(1, k1, 1, 2, 0, 1, 1000);

	test_backpressure(0);
	test_backpressure(1);
	test_close_drains(0);
	test_close_drains(1);
	test_named();

	shmp_event_destroy(gate);
	T_NO_CHILDREN();
	shmp_array_destroy(counters);
	printf("ok\n");
	return 0;
}
