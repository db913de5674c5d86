/* Pipeline workers that die (include/shmp/pipeline.h: "A worker that dies
 * ... either stops the pipeline (every ring closes; next() and join()
 * return -SHMP_EWORKERDIED) or is replaced by a new worker for its stage,
 * what it held counted in stats.lost. Nothing ever hangs."). Worker processes record their pid (from inside the stage fn)
 * in a shared Array, so the test can kill them and check they are gone.
 * - on_crash = STOP: a worker that abort()s, exit(3)s, or is SIGKILLed by
 *   the test at a random moment (12 trials): next() returns only intact,
 *   never repeated messages, then -SHMP_EWORKERDIED within a few seconds;
 *   join() is -SHMP_EWORKERDIED at once; put is -SHMP_ECLOSED; stats say
 *   STOPPED and one death; destroy leaves no worker and no child. A put
 *   blocked on a full ring and a next() blocked on an empty one both
 *   return (-SHMP_ECLOSED / -SHMP_EWORKERDIED) when a worker is killed.
 * - on_crash = RESTART: 60 trials, 1 to 3 SIGKILLs each at random moments
 *   while 600 messages stream through two stages: the pipeline goes on
 *   and closes normally (next ends with -SHMP_ECLOSED, join 0), deaths ==
 *   restarts == the kills, every stage is back to its worker count, no
 *   message arrives twice or damaged, and every message that did not
 *   come out is counted lost (messages_in <= messages_out + lost <=
 *   messages_in + kills).
 * - a worker killed in the middle of a batch (RESTART): lost is exactly 1
 *   (the message it was working on), everything else arrives once; and
 *   one killed at its batch's last message while the sink sleeps in
 *   next() without a time limit: the outputs it committed (not yet told
 *   to the sink) arrive within seconds;
 * - destroy without close, while a worker is stuck inside its stage fn,
 *   while messages stream, and (threads) while a stage waits on a full
 *   ring: returns promptly, every worker is killed and reaped. */
#include "t.h"

#include <pthread.h>
#include <sys/resource.h>

#define N 600
#define MAXN 200000
#define MAXSLOT 16

enum { C_BAD, C_WHY, C_BAD_SEQ, C_BAD_LEN, C_BAD_STAGE, C_CRASH_STAGE, C_CRASH_SEQ, C_CRASH_HOW, C_SPIN, C_GATE_SEQ, C_PID, C_N = C_PID + MAXSLOT };
enum { HOW_NONE, HOW_ABORT, HOW_EXIT3, HOW_GATE };
static _Atomic int64_t *C;

/* A failed check that lets the rest of the test run (to see every
 * problem in one run); main() fails at the end if any did. */
static int soft_failures;
#define SOFT(cond, ...)                                                            \
	do {                                                                       \
		if (!(cond)) {                                                     \
			fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                              \
			fputc('\n', stderr);                                      \
			soft_failures++;                                           \
		}                                                                  \
	} while (0)
static shmp_event_t *gate;
static pid_t seen_pids[4096];
static int nseen;

static size_t len_of(uint64_t seq)
{
	return 8 + (seq * 37) % 300;
}

static int put_seq(shmp_pipeline_t *pl, uint64_t seq, double timeout);

static int slot_of(int stage, int worker)
{
	return (stage - 1) * 4 + worker;
}

static void bad(int why)
{
	atomic_fetch_add(&C[C_BAD], 1);
	int64_t z = 0;
	atomic_compare_exchange_strong(&C[C_WHY], &z, why);
}

static int msg_bad(const struct shmp_msg *m)
{
	uint64_t id;
	if (m->len != len_of(m->seq))
		return 1;
	memcpy(&id, m->data, 8);
	if (id != m->seq)
		return 2;
	if (m->tag != (uint32_t)(m->seq * 7))
		return 3;
	if (!t_filled((const unsigned char *)m->data + 8, m->len - 8, (uint32_t)m->seq))
		return 4;
	return 0;
}

static int stage_fn(const struct shmp_msg *in, shmp_stage_ctx_t *ctx, void *arg)
{
	(void)arg;
	int st = shmp_stage_index(ctx), w = shmp_stage_worker(ctx);
	int slot = slot_of(st, w);
	if (slot < 0 || slot >= MAXSLOT)
		bad(10);
	else if (atomic_load(&C[C_PID + slot]) != getpid())
		atomic_store(&C[C_PID + slot], getpid());
	int why = msg_bad(in);
	if (why) {
		if (!atomic_load(&C[C_BAD])) {
			atomic_store(&C[C_BAD_SEQ], (int64_t)in->seq);
			atomic_store(&C[C_BAD_LEN], (int64_t)in->len);
			atomic_store(&C[C_BAD_STAGE], st);
		}
		bad(why);
	}
	if (st == atomic_load(&C[C_CRASH_STAGE]) && (int64_t)in->seq == atomic_load(&C[C_GATE_SEQ]))
		shmp_event_wait(gate, 60);
	if (st == atomic_load(&C[C_CRASH_STAGE]) && (int64_t)in->seq == atomic_load(&C[C_CRASH_SEQ])) {
		switch (atomic_load(&C[C_CRASH_HOW])) {
		case HOW_ABORT: abort();
		case HOW_EXIT3: exit(3);
		case HOW_GATE: shmp_event_wait(gate, 60); break;
		}
	}
	/* A little work, so kills land inside fn as well as between. */
	volatile unsigned x = 0;
	for (int64_t i = 0, n = atomic_load(&C[C_SPIN]); i < n; i++)
		x += (unsigned)i;
	int r = shmp_stage_emit(ctx, in->data, in->len);
	if (r != 0 && r != -SHMP_ECLOSED)
		bad(11);
	return 0;
}

/* What the sink took: each sequence number once, and how many. */
static unsigned char seen[MAXN];
static uint64_t got;

/* Every counter, crash setting and the sink's record back to none. */
static void reset(void)
{
	memset(seen, 0, sizeof seen);
	got = 0;
	for (int i = 0; i < C_N; i++)
		atomic_store(&C[i], 0);
	atomic_store(&C[C_CRASH_SEQ], -1);
	atomic_store(&C[C_GATE_SEQ], -1);
	atomic_store(&C[C_SPIN], 2000);
}

static void check_no_bad(void)
{
	if (atomic_load(&C[C_BAD])) {
		fprintf(stderr, "stages saw %lld bad messages, first reason %lld (stage %lld: seq %lld, len %lld)\n",
			(long long)atomic_load(&C[C_BAD]), (long long)atomic_load(&C[C_WHY]),
			(long long)atomic_load(&C[C_BAD_STAGE]), (long long)atomic_load(&C[C_BAD_SEQ]),
			(long long)atomic_load(&C[C_BAD_LEN]));
		T_CHECK(!"bad message in a stage");
	}
}

/* Remember every worker pid seen (to check they are gone at the end). */
static void note_pids(void)
{
	for (int s = 0; s < MAXSLOT; s++) {
		pid_t p = (pid_t)atomic_load(&C[C_PID + s]);
		if (p <= 0)
			continue;
		int known = 0;
		for (int i = 0; i < nseen && !known; i++)
			known = seen_pids[i] == p;
		if (!known && nseen < (int)(sizeof seen_pids / sizeof seen_pids[0]))
			seen_pids[nseen++] = p;
	}
}

/* Every worker ever seen is gone (killed and reaped), and we have no
 * child at all. */
static void check_all_gone(void)
{
	note_pids();
	for (int i = 0; i < nseen; i++) {
		errno = 0;
		if (kill(seen_pids[i], 0) == 0 || errno != ESRCH) {
			fprintf(stderr, "worker %d still exists\n", (int)seen_pids[i]);
			T_CHECK(!"worker left behind");
		}
	}
	nseen = 0;
	T_NO_CHILDREN();
}

static shmp_pipeline_t *new_pl(int on_crash, unsigned cap, unsigned w1, unsigned w2, int threads)
{
	struct shmp_pipeline_opts o = SHMP_OPTS(shmp_pipeline_opts, .on_crash = on_crash, .capacity = cap,
						.threads = threads, .segment_size = 32u << 20);
	shmp_pipeline_t *pl = shmp_pipeline_create(&o);
	T_CHECK(pl);
	T_EQ(shmp_pipeline_add_stage(pl, "one", stage_fn, NULL, w1), 1);
	if (w2)
		T_EQ(shmp_pipeline_add_stage(pl, "two", stage_fn, NULL, w2), 2);
	T_EQ(shmp_pipeline_start(pl), 0);
	return pl;
}

/* ---- the sink ------------------------------------------------------------ */

/* Take one message: 1; or the call's error (< 0), -ETIMEDOUT included. */
static int take(shmp_pipeline_t *pl, double timeout)
{
	struct shmp_msg m;
	int r = shmp_pipeline_next(pl, &m, timeout);
	if (r < 0)
		return r;
	T_EQ(r, 0);
	int why = msg_bad(&m);
	if (why) {
		fprintf(stderr, "sink: bad message %d seq %llu\n", why, (unsigned long long)m.seq);
		T_CHECK(!"bad message at the sink");
	}
	T_CHECK(m.seq < MAXN);
	if (seen[m.seq]) {
		fprintf(stderr, "seq %llu delivered twice\n", (unsigned long long)m.seq);
		T_CHECK(!"duplicate");
	}
	seen[m.seq] = 1;
	got++;
	T_EQ(shmp_pipeline_done(pl), 0);
	return 1;
}

static unsigned char msgbuf[512];

/* Put message seq with put's timeout: put's result. */
static int put_seq(shmp_pipeline_t *pl, uint64_t seq, double timeout)
{
	size_t len = len_of(seq);
	memcpy(msgbuf, &seq, 8);
	t_fill(msgbuf + 8, len - 8, (uint32_t)seq);
	return shmp_pipeline_put(pl, msgbuf, len, (uint32_t)(seq * 7), timeout);
}

/* Put seq without blocking the pipeline on us: while the input is full,
 * take output. 0, or the first error other than -ETIMEDOUT (put's or
 * next's). */
static int send(shmp_pipeline_t *pl, uint64_t seq)
{
	for (;;) {
		int r = put_seq(pl, seq, 0);
		if (r != -ETIMEDOUT)
			return r;
		r = take(pl, 0.002);
		if (r < 0 && r != -ETIMEDOUT)
			return r;
	}
}

/* Pids the killer has killed (a dying process is not a zombie yet). */
static pid_t killed[8];
static int nkilled;

/* The pid of a worker in slot `slot` that is alive now, or 0. */
static pid_t live_worker(int slot)
{
	pid_t p = (pid_t)atomic_load(&C[C_PID + slot]);
	for (int i = 0; i < nkilled; i++)
		if (killed[i] == p)
			return 0;
	return p > 0 && !t_dead_or_zombie(p) ? p : 0;
}

static void wait_stage_workers(shmp_pipeline_t *pl, int nst, const unsigned *want)
{
	struct shmp_pipeline_stats st;
	double until = t_now() + 10;
	for (;;) {
		T_EQ(shmp_pipeline_stats(pl, &st), 0);
		int ok = 1;
		for (int i = 0; i < nst; i++)
			ok &= st.stage[i].alive == want[i];
		if (ok)
			return;
		if (t_now() > until) {
			fprintf(stderr, "alive %u %u, want %u %u\n", st.stage[0].alive, st.stage[1].alive, want[0],
				nst > 1 ? want[1] : 0);
			T_CHECK(!"workers not back");
		}
		t_sleep_ms(2);
	}
}

/* ---- STOP ------------------------------------------------------------------ */

/* After a worker died: the sink gets intact messages, then
 * -SHMP_EWORKERDIED within `limit` s; everything after says so too. */
static void expect_stopped(shmp_pipeline_t *pl, double limit, int dead_stage)
{
	double t0 = t_now();
	int r;
	while ((r = take(pl, limit)) == 1)
		T_CHECK(t_now() - t0 < limit);
	T_EQ(r, -SHMP_EWORKERDIED);
	T_CHECK(t_now() - t0 < limit);
	struct shmp_msg m;
	T_FAST(shmp_pipeline_next(pl, &m, 5), -SHMP_EWORKERDIED);
	T_FAST(shmp_pipeline_join(pl, 5), -SHMP_EWORKERDIED);
	/* Stopped: the input is closed (see SOFT). */
	struct shmp_pipeline_stats st;
	T_EQ(shmp_pipeline_stats(pl, &st), 0);
	/* (A well-formed message, should a stage get it after all.) */
	int pr = put_seq(pl, st.messages_in, 5);
	SOFT(pr == -SHMP_ECLOSED, "put after -SHMP_EWORKERDIED returned %d (%s)", pr, shmp_strerror(pr));
	T_EQ(shmp_pipeline_stats(pl, &st), 0);
	T_EQ(st.state, SHMP_PIPELINE_STOPPED);
	uint64_t deaths = 0;
	for (unsigned i = 0; i < st.nstages; i++)
		deaths += st.stage[i].deaths;
	T_EQ(deaths, 1);
	if (dead_stage)
		T_EQ(st.stage[dead_stage - 1].deaths, 1);
	T_EQ(st.messages_out, got);
	check_no_bad();
}

/* A stage fn that abort()s or exit(3)s at message `at`. */
static void stop_on_crash(int how, int stage, uint64_t at)
{
	double t0 = t_now();
	reset();
	atomic_store(&C[C_CRASH_STAGE], stage);
	atomic_store(&C[C_CRASH_SEQ], (int64_t)at);
	atomic_store(&C[C_CRASH_HOW], how);
	shmp_pipeline_t *pl = new_pl(SHMP_PIPELINE_STOP, 16, 1, 2, 0);
	int r = 0;
	for (uint64_t s = 0; s < N && r == 0; s++)
		r = send(pl, s);
	/* The crash may stop us while sending, or later. */
	T_CHECK(r == 0 || r == -SHMP_ECLOSED || r == -SHMP_EWORKERDIED);
	expect_stopped(pl, 10, stage);
	note_pids();
	double t1 = t_now();
	shmp_pipeline_destroy(pl);
	T_CHECK(t_now() - t1 < 2);
	check_all_gone();
	/* Stage 1 has one worker: nothing after its crash got through. */
	if (stage == 1)
		for (uint64_t s = at; s < N; s++)
			T_EQ(seen[s], 0);
	printf("stop %s at %llu: %llu out, %.2f s\n", how == HOW_ABORT ? "abort" : "exit(3)",
	       (unsigned long long)at, (unsigned long long)got, t_now() - t0);
}

struct killer {
	pthread_t th;
	int nkill;
	int slots[3];
	long delay_us[3];
	int hits;
	atomic_int finished;
};

static void *killer_main(void *p)
{
	struct killer *k = p;
	for (int i = 0; i < k->nkill; i++) {
		usleep((useconds_t)k->delay_us[i]);
		/* Wait for a live worker in that slot (a replacement gets its
		 * pid once it takes a message). */
		double t0 = t_now();
		pid_t pid;
		while (!(pid = live_worker(k->slots[i])) && t_now() < t0 + 5) {
			/* A worker that gets no message never names itself:
			 * after 0.5 s take any live one. */
			for (int s = 0; s < MAXSLOT && !pid && t_now() > t0 + 0.5; s++)
				pid = live_worker(s);
			if (!pid)
				usleep(200);
		}
		if (pid && kill(pid, SIGKILL) == 0) {
			k->hits++;
			killed[nkilled++ & 7] = pid;
		}
	}
	atomic_store(&k->finished, 1);
	return NULL;
}

/* SIGKILL one worker at a random moment while 600 messages stream. */
static void stop_on_kill(int trial)
{
	reset();
	static const unsigned caps[] = { 4, 16, 256 };
	shmp_pipeline_t *pl = new_pl(SHMP_PIPELINE_STOP, caps[t_rnd(3)], 1, 2, 0);
	struct killer k = { .nkill = 1 };
	nkilled = 0;
	unsigned which = t_rnd(3);
	k.slots[0] = which == 0 ? slot_of(1, 0) : slot_of(2, (int)which - 1);
	k.delay_us[0] = (long)t_rnd(30000);
	T_EQ(pthread_create(&k.th, NULL, killer_main, &k), 0);
	int r = 0;
	for (uint64_t s = 0; r == 0 && (s < N || !atomic_load(&k.finished)); s++) {
		T_CHECK(s < MAXN);
		r = send(pl, s);
	}
	T_CHECK(r == 0 || r == -SHMP_ECLOSED || r == -SHMP_EWORKERDIED);
	T_EQ(pthread_join(k.th, NULL), 0);
	T_EQ(k.hits, 1);
	/* (The killer may have fallen back on another stage's worker.) */
	expect_stopped(pl, 10, 0);
	note_pids();
	double t1 = t_now();
	shmp_pipeline_destroy(pl);
	T_CHECK(t_now() - t1 < 2);
	check_all_gone();
	(void)trial;
}

static void *kill_later(void *p)
{
	int slot = *(int *)p;
	t_sleep_ms(200);
	pid_t pid = live_worker(slot);
	if (pid)
		kill(pid, SIGKILL);
	return NULL;
}

/* A put blocked on a full ring, and a next() blocked on an empty one,
 * return when a worker dies. */
static void stop_while_blocked(void)
{
	for (int which = 0; which < 2; which++) {
		reset();
		T_EQ(shmp_event_clear(gate), 0);
		/* Stage 1 holds message 0 at the gate. */
		atomic_store(&C[C_CRASH_STAGE], 1);
		atomic_store(&C[C_CRASH_SEQ], 0);
		atomic_store(&C[C_CRASH_HOW], HOW_GATE);
		shmp_pipeline_t *pl = new_pl(SHMP_PIPELINE_STOP, 4, 1, 0, 0);
		uint64_t s = 0;
		if (which == 0) {
			/* Fill the input ring; then a put waits. */
			while (put_seq(pl, s, 0) == 0) {
				s++;
				T_CHECK(s <= 5);
			}
		} else {
			T_EQ(put_seq(pl, 0, 5), 0);
			s = 1;
		}
		/* The gate holder records its pid before waiting. */
		double until = t_now() + 10;
		while (!live_worker(slot_of(1, 0)))
			T_CHECK(t_now() < until);
		int slot = slot_of(1, 0);
		pthread_t th;
		T_EQ(pthread_create(&th, NULL, kill_later, &slot), 0);
		double t0 = t_now();
		if (which == 0) {
			T_EQ(put_seq(pl, s, 20), -SHMP_ECLOSED);
		} else {
			struct shmp_msg m;
			T_EQ(shmp_pipeline_next(pl, &m, 20), -SHMP_EWORKERDIED);
		}
		double dt = t_now() - t0;
		T_CHECK(dt >= 0.15 && dt < 5);
		T_EQ(pthread_join(th, NULL), 0);
		T_FAST(shmp_pipeline_join(pl, 5), -SHMP_EWORKERDIED);
		note_pids();
		shmp_pipeline_destroy(pl);
		check_all_gone();
		printf("stop while blocked in %s: returned after %.2f s\n", which ? "next" : "put", dt);
	}
	T_EQ(shmp_event_set(gate), 0);
}

/* ---- RESTART ------------------------------------------------------------ */

struct tally {
	uint64_t kills, lost, out, in;
};

static void restart_trial(struct tally *ty)
{
	reset();
	static const unsigned caps[] = { 4, 16, 256 };
	unsigned w[2] = { 2, 1 + t_rnd(2) };
	shmp_pipeline_t *pl = new_pl(SHMP_PIPELINE_RESTART, caps[t_rnd(3)], w[0], w[1], 0);
	struct killer k = { .nkill = 1 + (int)t_rnd(3) };
	nkilled = 0;
	for (int i = 0; i < k.nkill; i++) {
		unsigned which = t_rnd(w[0] + w[1]);
		k.slots[i] = which < w[0] ? slot_of(1, (int)which) : slot_of(2, (int)(which - w[0]));
		k.delay_us[i] = (long)t_rnd(15000);
	}
	T_EQ(pthread_create(&k.th, NULL, killer_main, &k), 0);
	/* Stream until the killer is done (replacements name themselves
	 * only when they take a message): at least 600 messages. */
	uint64_t sent = 0;
	while (sent < N || !atomic_load(&k.finished)) {
		T_CHECK(sent < MAXN);
		T_EQ(send(pl, sent), 0);
		sent++;
	}
	T_EQ(pthread_join(k.th, NULL), 0);
	T_EQ(k.hits, k.nkill);
	/* Every death is seen and replaced before we close. */
	struct shmp_pipeline_stats st;
	double until = t_now() + 10;
	for (;;) {
		T_EQ(shmp_pipeline_stats(pl, &st), 0);
		if (st.stage[0].restarts + st.stage[1].restarts == (uint64_t)k.hits)
			break;
		if (t_now() > until) {
			fprintf(stderr, "kills %d; deaths %llu %llu, restarts %llu %llu, alive %u %u, state %d\n", k.hits,
				(unsigned long long)st.stage[0].deaths, (unsigned long long)st.stage[1].deaths,
				(unsigned long long)st.stage[0].restarts, (unsigned long long)st.stage[1].restarts,
				st.stage[0].alive, st.stage[1].alive, st.state);
			T_CHECK(!"deaths not all restarted");
		}
		t_sleep_ms(1);
	}
	wait_stage_workers(pl, 2, w);
	note_pids();
	T_EQ(shmp_pipeline_close(pl), 0);
	int r;
	while ((r = take(pl, 10)) == 1)
		;
	T_EQ(r, -SHMP_ECLOSED);
	T_EQ(shmp_pipeline_join(pl, 10), 0);
	check_no_bad();
	T_EQ(shmp_pipeline_stats(pl, &st), 0);
	T_EQ(st.state, SHMP_PIPELINE_DONE);
	T_EQ(st.stage[0].deaths + st.stage[1].deaths, k.hits);
	T_EQ(st.stage[0].restarts, st.stage[0].deaths);
	T_EQ(st.stage[1].restarts, st.stage[1].deaths);
	T_EQ(st.messages_in, sent);
	T_EQ(st.messages_out, got);
	/* lost counts the slots dead workers held (pipeline.h): every message
	 * that did not come out is among them, and each kill over-counts by at
	 * most one (an input released late, or an output half written). */
	SOFT(st.messages_out + st.lost >= st.messages_in &&
	     st.messages_out + st.lost <= st.messages_in + (uint64_t)k.hits,
	     "in %llu, out %llu, lost %llu, kills %d (deaths %llu + %llu)",
	     (unsigned long long)st.messages_in, (unsigned long long)st.messages_out,
	     (unsigned long long)st.lost, k.hits, (unsigned long long)st.stage[0].deaths,
	     (unsigned long long)st.stage[1].deaths);
	/* A death holds at most one input and one output slot. */
	SOFT(st.lost <= 2 * (uint64_t)k.hits, "lost %llu, kills %d", (unsigned long long)st.lost, k.hits);
	ty->kills += (uint64_t)k.hits;
	ty->lost += st.lost;
	ty->out += st.messages_out;
	ty->in += st.messages_in;
	shmp_pipeline_destroy(pl);
	check_all_gone();
}

/* ---- a worker killed mid-batch ---------------------------------------------- */

/* A one-stage pipeline (restarted on a crash) whose one worker is held at
 * the gate on message 0 while 1..m-1 queue up behind it; it will abort at
 * message `at` once the gate opens. */
static shmp_pipeline_t *gated_stage(int m, uint64_t at, int spin)
{
	reset();
	T_EQ(shmp_event_clear(gate), 0);
	atomic_store(&C[C_CRASH_STAGE], 1);
	atomic_store(&C[C_GATE_SEQ], 0);
	atomic_store(&C[C_CRASH_SEQ], (int64_t)at);
	atomic_store(&C[C_CRASH_HOW], HOW_ABORT);
	atomic_store(&C[C_SPIN], 0);
	struct shmp_pipeline_opts o = SHMP_OPTS(shmp_pipeline_opts, .on_crash = SHMP_PIPELINE_RESTART,
						.capacity = 64, .spin = spin, .segment_size = 32u << 20);
	shmp_pipeline_t *pl = shmp_pipeline_create(&o);
	T_CHECK(pl);
	T_EQ(shmp_pipeline_add_stage(pl, "one", stage_fn, NULL, 1), 1);
	T_EQ(shmp_pipeline_start(pl), 0);
	for (uint64_t q = 0; q < (uint64_t)m; q++)
		T_EQ(put_seq(pl, q, 10), 0);
	struct shmp_pipeline_stats st;
	double until = t_now() + 10;
	for (;;) {
		T_EQ(shmp_pipeline_stats(pl, &st), 0);
		if (st.stage[0].processed == 1 && st.stage[0].queued == (uint64_t)m - 1)
			break;
		T_CHECK(t_now() < until);
		t_sleep_ms(1);
	}
	return pl;
}

/* After a gated_stage() run: close, drain, join; one death cost exactly
 * one message of m. Its stats in *st. */
static void closed_after_one_death(shmp_pipeline_t *pl, int m, struct shmp_pipeline_stats *st)
{
	T_EQ(shmp_pipeline_close(pl), 0);
	T_EQ(take(pl, 10), -SHMP_ECLOSED);
	T_EQ(shmp_pipeline_join(pl, 10), 0);
	check_no_bad();
	T_EQ(shmp_pipeline_stats(pl, st), 0);
	T_EQ(st->stage[0].deaths, 1);
	T_EQ(st->lost, 1);
	T_EQ(st->messages_out, (uint64_t)m - 1);
}

/* The stage's one worker is held at the gate on message 0 while 1..59
 * queue up behind it; the gate opens and the worker goes through them as
 * one batch, dying (abort) at message `at` in the middle of it. Batches
 * claim each message only when its turn comes: the death costs exactly
 * the input it was working on (lost 1), the outputs it had committed
 * before it (not yet woken) come out, the replacement does the rest; no
 * message twice, none but `at` missing. */
static void kill_mid_batch(uint64_t at, int spin)
{
	enum { M = 60 };
	shmp_pipeline_t *pl = gated_stage(M, at, spin);
	struct shmp_pipeline_stats st;
	T_EQ(shmp_event_set(gate), 0);
	while (got < M - 1)
		T_EQ(take(pl, 10), 1);
	closed_after_one_death(pl, M, &st);
	T_EQ(st.stage[0].restarts, 1);
	T_EQ(st.messages_in, M);
	for (uint64_t q = 0; q < M; q++)
		T_EQ(seen[q], q != at);
	note_pids();
	shmp_pipeline_destroy(pl);
	check_all_gone();
	printf("killed mid-batch at message %llu (%s): lost 1, the rest arrived once\n", (unsigned long long)at,
	       spin ? "spinning" : "sleeping");
}

/* The worker dies at the last message of a batch whose outputs it
 * committed without a wake-up yet (a batch's commits wake once, at its
 * end), while the sink sleeps in next() without a time limit (a wait the
 * pipeline makes with no timer): the supervisor's wake-up after the death
 * is all that brings those outputs to the sink, and it must within
 * seconds. */
static void *open_gate_later(void *p)
{
	(void)p;
	t_sleep_ms(100);
	T_EQ(shmp_event_set(gate), 0);
	return NULL;
}

static void kill_end_of_batch_sink_asleep(void)
{
	enum { M = 20 };
	shmp_pipeline_t *pl = gated_stage(M, M - 1, 0);
	struct shmp_pipeline_stats st;
	pthread_t th;
	T_EQ(pthread_create(&th, NULL, open_gate_later, NULL), 0);
	double t0 = t_now();
	T_EQ(take(pl, SHMP_FOREVER), 1); /* asleep when the gate opens */
	double dt = t_now() - t0;
	T_EQ(pthread_join(th, NULL), 0);
	T_CHECK(dt < 5);
	while (got < M - 1)
		T_EQ(take(pl, SHMP_FOREVER), 1);
	closed_after_one_death(pl, M, &st);
	note_pids();
	shmp_pipeline_destroy(pl);
	check_all_gone();
	printf("killed at the end of a batch, the sink asleep without a limit: woken after %.3f s\n", dt);
}

/* ---- destroy while running ------------------------------------------------- */

static void destroy_running(void)
{
	/* A worker stuck in its fn (gate closed), messages queued. */
	reset();
	T_EQ(shmp_event_clear(gate), 0);
	atomic_store(&C[C_CRASH_STAGE], 2);
	atomic_store(&C[C_CRASH_SEQ], 3);
	atomic_store(&C[C_CRASH_HOW], HOW_GATE);
	shmp_pipeline_t *pl = new_pl(SHMP_PIPELINE_STOP, 16, 2, 1, 0);
	for (uint64_t s = 0; s < 10; s++)
		T_EQ(put_seq(pl, s, 5), 0);
	double until = t_now() + 10;
	while (!live_worker(slot_of(2, 0)))
		T_CHECK(t_now() < until);
	t_sleep_ms(50);
	note_pids();
	double t0 = t_now();
	shmp_pipeline_destroy(pl);
	T_CHECK(t_now() - t0 < 2);
	check_all_gone();
	T_EQ(shmp_event_set(gate), 0);

	/* Mid-stream. */
	reset();
	pl = new_pl(SHMP_PIPELINE_RESTART, 8, 2, 2, 0);
	for (uint64_t s = 0; s < 200; s++)
		T_EQ(send(pl, s), 0);
	note_pids();
	t0 = t_now();
	shmp_pipeline_destroy(pl);
	T_CHECK(t_now() - t0 < 2);
	check_all_gone();

	/* Threads: a stage waits for room in the full output ring. */
	reset();
	pl = new_pl(SHMP_PIPELINE_STOP, 4, 1, 1, 1);
	for (uint64_t s = 0; s < 12; s++)
		T_EQ(put_seq(pl, s, 5), 0);
	t_sleep_ms(50);
	t0 = t_now();
	shmp_pipeline_destroy(pl);
	T_CHECK(t_now() - t0 < 2);
	T_NO_CHILDREN();
	printf("destroy while running: ok\n");
}

int main(void)
{
	t_watchdog(150);
	setvbuf(stdout, NULL, _IOLBF, 0);
	/* abort() must not spend time writing cores. */
	struct rlimit rl = { 0, 0 };
	setrlimit(RLIMIT_CORE, &rl);
	printf("seed %llu\n", (unsigned long long)t_seed());
	shmp_array_t *counters = t_counters(C_N);
	C = shmp_array_ptr(counters);
	T_CHECK(C);
	gate = shmp_event_create(NULL);
	T_CHECK(gate);
	double t0 = t_now();

	stop_on_crash(HOW_ABORT, 2, 100);
	stop_on_crash(HOW_EXIT3, 1, 50);
	stop_on_crash(HOW_ABORT, 1, 0);
	for (int i = 0; i < 12; i++)
		stop_on_kill(i);
	printf("stop: 12 kill trials, %.2f s\n", t_now() - t0);
	stop_while_blocked();

	t0 = t_now();
	struct tally ty = { 0 };
	for (int i = 0; i < 60; i++)
		restart_trial(&ty);
	printf("restart: 60 trials, %llu kills, %llu in, %llu out, %llu lost, %.2f s\n",
	       (unsigned long long)ty.kills, (unsigned long long)ty.in, (unsigned long long)ty.out,
	       (unsigned long long)ty.lost, t_now() - t0);

	kill_mid_batch(10, 0);
	kill_mid_batch(1, 1);
	kill_mid_batch(30, 0);
	kill_end_of_batch_sink_asleep();
	destroy_running();
	shmp_event_destroy(gate);
	T_NO_CHILDREN();
	shmp_array_destroy(counters);
	if (soft_failures) {
		fprintf(stderr, "%d checks failed\n", soft_failures);
		return 1;
	}
	printf("ok\n");
	return 0;
}
