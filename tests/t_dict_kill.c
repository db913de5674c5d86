/* Dict writers killed at random moments (include/shmp/registry.h, Dict: "A
 * writer killed at any instruction leaves every key with its old or new
 * value, never a torn one, ... and never wedges the others").
 *
 * Three writer processes replace values of 64 fixed keys (inline and block
 * values, 12 bytes to 16 KiB), set/delete/pop/setdefault 32 churn keys, add
 * to a counter with add_i64 and bump a counter by cas. Every value is
 * self-checking: key id, sequence, length, then bytes derived from them.
 * Two reader processes run beside them: one only calls shmp_dict_get in a
 * loop, the other also contains, len and full next() passes. About 120
 * times the parent SIGKILLs a random writer after a random delay and starts
 * a new one in its place. After each kill, while the others run:
 * - every fixed key reads back intact (never -ENOENT, never torn), churn keys
 *   are intact or absent (parent, and both readers all along);
 * - every surviving writer and both readers make progress within 3 s (a
 *   dead writer's stripe lock or half-done write never wedges anyone).
 * At the end, with everyone stopped cleanly: no op of a writer or get of a
 * reader took 2 s or more; len equals the keys present, which next() visits
 * exactly once; the add_i64 and cas counters are at least the increments
 * their writers saw succeed and at most one more per kill; the Dict still
 * takes exactly `capacity` keys (kills leaked no slot); the segment's used
 * bytes grew by at most the live values' growth plus one block per kill. T_SEED=<seed> replays the
 * choices (as far as timing allows). */
#include "t.h"
#include "shmp/registry.h"

#include <stdatomic.h>
#include <sys/mman.h>

#define NFIX 64
#define NCHURN 32
#define NW 3
#define NR 2
#define CAP 1024
#define MAXV 16384
#define HDR 12
#define CASLEN 100
#define ID_CHURN 100
#define ID_CAS 200

struct shared {
	atomic_int stop;
	atomic_llong ctr_rec;  /* add_i64 calls that returned 0 */
	atomic_llong cas_rec;  /* cas calls that returned 1 */
	atomic_llong ops[NW];  /* per writer slot */
	atomic_llong reads[NR];
	atomic_llong max_us[NW + NR]; /* slowest call */
	atomic_llong passes;   /* next() passes of reader 1 */
};

static struct shared *sh;
static shmp_dict_t *d;

/* ---- self-checking values ------------------------------------------------- */

static uint32_t vseed(uint32_t id, uint32_t seq)
{
	return id * 1000003u ^ seq;
}

static void mkval(unsigned char *b, uint32_t id, uint32_t seq, size_t n)
{
	uint32_t h[3] = { id, seq, (uint32_t)n };
	memcpy(b, h, HDR);
	t_fill(b + HDR, n - HDR, vseed(id, seq));
}

/* 1 if b[0..n) is a complete value written for key id. */
static int intact(const unsigned char *b, size_t n, uint32_t id)
{
	uint32_t h[3];
	if (n < HDR)
		return 0;
	memcpy(h, b, HDR);
	return h[0] == id && h[2] == n && t_filled(b + HDR, n - HDR, vseed(id, h[1]));
}

static uint32_t seqof(const unsigned char *b)
{
	uint32_t s;
	memcpy(&s, b + 4, 4);
	return s;
}

static size_t rndsize(void)
{
	unsigned r = t_rnd(10);
	if (r < 4)
		return HDR + t_rnd(48 - HDR + 1); /* inline: 12..48 */
	if (r < 8)
		return 49 + t_rnd(2000);
	return 2049 + t_rnd(MAXV - 2049 + 1);
}

static void keyof(char *k, uint32_t id)
{
	if (id < NFIX)
		sprintf(k, "fix%u", id);
	else
		sprintf(k, "churn%u", id - ID_CHURN);
}

static void slowest(int slot, double t0)
{
	long long us = (long long)((t_now() - t0) * 1e6);
	long long m = atomic_load(&sh->max_us[slot]);
	while (us > m && !atomic_compare_exchange_weak(&sh->max_us[slot], &m, us))
		;
}

#define FAIL(...)                                                                  \
	do {                                                                       \
		fprintf(stderr, __VA_ARGS__);                                      \
		_exit(1);                                                          \
	} while (0)

/* Check one key's value as any reader may see it. */
static void check_key(uint32_t id, unsigned char *buf, const char *who)
{
	char k[32];
	size_t len = 0;
	keyof(k, id);
	int r = shmp_dict_get(d, k, buf, MAXV, &len);
	if (id < NFIX) {
		if (r != 0)
			FAIL("%s: get(%s) = %s\n", who, k, shmp_strerror(r));
	} else if (r == -ENOENT) {
		return;
	} else if (r != 0) {
		FAIL("%s: get(%s) = %s\n", who, k, shmp_strerror(r));
	}
	if (!intact(buf, len, id))
		FAIL("%s: get(%s) returned a torn value of %zu bytes\n", who, k, len);
}

static void check_counters(unsigned char *buf, const char *who)
{
	size_t len = 0;
	int64_t x;
	int r = shmp_dict_get(d, "ctr", &x, sizeof x, &len);
	if (r != 0 || len != 8)
		FAIL("%s: get(ctr) = %s, len %zu\n", who, shmp_strerror(r), len);
	r = shmp_dict_get(d, "cas", buf, MAXV, &len);
	if (r != 0 || len != CASLEN || !intact(buf, len, ID_CAS))
		FAIL("%s: get(cas) = %s, len %zu, torn?\n", who, shmp_strerror(r), len);
}

/* ---- writers and readers -------------------------------------------------- */

static int writer(void *arg)
{
	int slot = (int)(intptr_t)arg;
	static unsigned char buf[MAXV], out[MAXV];
	char k[32];
	size_t len;
	t_seed();
	while (!atomic_load(&sh->stop)) {
		unsigned op = t_rnd(100);
		double t0 = t_now();
		int r;
		if (op < 55) { /* replace a fixed key */
			uint32_t id = t_rnd(NFIX);
			size_t n = rndsize();
			keyof(k, id);
			mkval(buf, id, (uint32_t)t_rnd(~0u), n);
			if ((r = shmp_dict_set(d, k, buf, n)) != 0)
				FAIL("writer: set(%s) = %s\n", k, shmp_strerror(r));
		} else if (op < 80) { /* churn keys come and go */
			uint32_t id = ID_CHURN + t_rnd(NCHURN);
			size_t n = rndsize();
			keyof(k, id);
			mkval(buf, id, (uint32_t)t_rnd(~0u), n);
			unsigned how = t_rnd(4);
			if (how == 0) {
				r = shmp_dict_set(d, k, buf, n);
			} else if (how == 1) {
				r = shmp_dict_delete(d, k);
				if (r == -ENOENT)
					r = 0;
			} else if (how == 2) {
				len = 0;
				r = shmp_dict_pop(d, k, out, sizeof out, &len);
				if (r == 0 && !intact(out, len, id))
					FAIL("writer: pop(%s) returned a torn value\n", k);
				if (r == -ENOENT)
					r = 0;
			} else {
				len = 0;
				r = shmp_dict_setdefault(d, k, buf, n, out, sizeof out, &len);
				if ((r == 0 || r == 1) && !intact(out, len, id))
					FAIL("writer: setdefault(%s) returned a torn value\n", k);
				if (r == 1 && (len != n || memcmp(out, buf, n) != 0))
					FAIL("writer: setdefault(%s) inserted but returned another value\n", k);
				if (r == 1)
					r = 0;
			}
			if (r != 0)
				FAIL("writer: churn op %u on %s = %s\n", how, k, shmp_strerror(r));
		} else if (op < 90) { /* counter */
			if ((r = shmp_dict_add_i64(d, "ctr", 1, NULL)) != 0)
				FAIL("writer: add_i64 = %s\n", shmp_strerror(r));
			atomic_fetch_add(&sh->ctr_rec, 1);
		} else { /* cas increment, retried until it lands */
			for (;;) {
				len = 0;
				if ((r = shmp_dict_get(d, "cas", out, sizeof out, &len)) != 0)
					FAIL("writer: get(cas) = %s\n", shmp_strerror(r));
				if (len != CASLEN || !intact(out, len, ID_CAS))
					FAIL("writer: get(cas) returned a torn value\n");
				mkval(buf, ID_CAS, seqof(out) + 1, CASLEN);
				r = shmp_dict_cas(d, "cas", out, CASLEN, buf, CASLEN);
				if (r == 1)
					break;
				if (r != 0)
					FAIL("writer: cas = %s\n", shmp_strerror(r));
			}
			atomic_fetch_add(&sh->cas_rec, 1);
		}
		slowest(slot, t0);
		atomic_fetch_add(&sh->ops[slot], 1);
	}
	return 0;
}

/* Reader 0: shmp_dict_get only. Reader 1: gets, contains, len, next(). */
static int reader(void *arg)
{
	int me = (int)(intptr_t)arg;
	static unsigned char buf[MAXV];
	const char *who = me ? "reader 1" : "reader 0";
	t_seed();
	while (!atomic_load(&sh->stop)) {
		double t0 = t_now();
		unsigned op = t_rnd(1000);
		if (op < 700) {
			check_key(t_rnd(NFIX), buf, who);
		} else if (op < 950) {
			check_key(ID_CHURN + t_rnd(NCHURN), buf, who);
		} else if (op < 990 || me == 0) {
			check_counters(buf, who);
		} else if (op < 995) {
			char k[32];
			keyof(k, t_rnd(NFIX));
			int r = shmp_dict_contains(d, k);
			if (r != 1)
				FAIL("%s: contains(%s) = %d\n", who, k, r);
			long n = shmp_dict_len(d);
			if (n < NFIX + 2 || n > NFIX + 2 + NCHURN)
				FAIL("%s: len = %ld\n", who, n);
		} else {
			/* A full pass: every value seen is intact. */
			uint64_t cur = 0;
			char key[64];
			size_t vlen;
			int r, n = 0;
			while ((r = shmp_dict_next(d, &cur, key, sizeof key, buf, MAXV, &vlen)) == 1) {
				uint32_t id;
				if (!strncmp(key, "fix", 3))
					id = (uint32_t)atoi(key + 3);
				else if (!strncmp(key, "churn", 5))
					id = ID_CHURN + (uint32_t)atoi(key + 5);
				else if (!strcmp(key, "cas"))
					id = ID_CAS;
				else if (!strcmp(key, "ctr"))
					id = ~0u;
				else
					FAIL("%s: next() gave key '%s'\n", who, key);
				if (id == ~0u ? vlen != 8 : !intact(buf, vlen, id))
					FAIL("%s: next() gave a torn value for %s\n", who, key);
				if (++n > CAP)
					FAIL("%s: next() never ends\n", who);
			}
			if (r != 0)
				FAIL("%s: next() = %s\n", who, shmp_strerror(r));
			atomic_fetch_add(&sh->passes, 1);
		}
		slowest(NW + me, t0);
		atomic_fetch_add(&sh->reads[me], 1);
	}
	return 0;
}

/* ---- the parent ------------------------------------------------------------ */

static void sleep_us(long us)
{
	struct timespec t = { us / 1000000, (us % 1000000) * 1000 };
	while (nanosleep(&t, &t) != 0 && errno == EINTR)
		;
}

/* Everyone still running makes progress within 3 s. */
static void progress(pid_t *w, pid_t *rd)
{
	long long w0[NW], r0[NR];
	for (int i = 0; i < NW; i++)
		w0[i] = atomic_load(&sh->ops[i]);
	for (int i = 0; i < NR; i++)
		r0[i] = atomic_load(&sh->reads[i]);
	double until = t_now() + 3;
	for (;;) {
		int done = 1;
		for (int i = 0; i < NW; i++)
			done &= w[i] <= 0 || atomic_load(&sh->ops[i]) >= w0[i] + 3;
		for (int i = 0; i < NR; i++)
			done &= atomic_load(&sh->reads[i]) >= r0[i] + 3;
		if (done)
			return;
		if (t_now() > until) {
			for (int i = 0; i < NW; i++)
				fprintf(stderr, "writer %d (pid %d): %lld ops, was %lld\n", i, (int)w[i],
					atomic_load(&sh->ops[i]), w0[i]);
			for (int i = 0; i < NR; i++)
				fprintf(stderr, "reader %d (pid %d): %lld gets, was %lld\n", i, (int)rd[i],
					atomic_load(&sh->reads[i]), r0[i]);
			T_CHECK(!"a process made no progress for 3 s after a kill");
		}
		sleep_us(200);
	}
}

int main(void)
{
	t_watchdog(90);
	atexit(t_reap_all);
	uint64_t seed = t_seed();
	printf("seed %#llx\n", (unsigned long long)seed);
	double start = t_now();

	sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	T_CHECK(sh != MAP_FAILED);
	memset(sh, 0, sizeof *sh);
	shmp_segment_t *seg = shmp_segment_create(NULL, 64 << 20, NULL);
	T_CHECK(seg);
	d = shmp_dict_create(&SHMP_OPTS(shmp_dict_opts, .segment = seg, .capacity = CAP));
	T_CHECK(d);
	static unsigned char buf[MAXV];
	char k[32];
	for (uint32_t id = 0; id < NFIX; id++) {
		size_t n = rndsize();
		keyof(k, id);
		mkval(buf, id, 0, n);
		T_EQ(shmp_dict_set(d, k, buf, n), 0);
	}
	T_EQ(shmp_dict_add_i64(d, "ctr", 0, NULL), 0);
	mkval(buf, ID_CAS, 0, CASLEN);
	T_EQ(shmp_dict_set(d, "cas", buf, CASLEN), 0);
	uint64_t used0 = t_seg_stats(seg).used_bytes;

	pid_t w[NW], rd[NR];
	for (int i = 0; i < NR; i++)
		rd[i] = t_spawn(reader, (void *)(intptr_t)i);
	for (int i = 0; i < NW; i++)
		w[i] = t_spawn(writer, (void *)(intptr_t)i);

	int trials = 0;
	while (trials < 120 && t_now() - start < 12) {
		int s = (int)t_rnd(NW);
		/* Let the victim get going, then a random moment. */
		long long o = atomic_load(&sh->ops[s]);
		double until = t_now() + 5;
		while (atomic_load(&sh->ops[s]) == o) {
			T_CHECK(t_now() < until);
			sleep_us(50);
		}
		sleep_us((long)t_rnd(15000));
		t_kill_reap(w[s], 5);
		w[s] = -1;
		trials++;
		/* While the others run: all keys intact. */
		for (uint32_t id = 0; id < NFIX; id++)
			check_key(id, buf, "parent");
		for (uint32_t id = ID_CHURN; id < ID_CHURN + NCHURN; id++)
			check_key(id, buf, "parent");
		check_counters(buf, "parent");
		progress(w, rd);
		w[s] = t_spawn(writer, (void *)(intptr_t)s);
	}
	double t_kills = t_now() - start;

	/* Everyone stops cleanly. */
	atomic_store(&sh->stop, 1);
	for (int i = 0; i < NW; i++)
		t_wait_ok(w[i], 10);
	for (int i = 0; i < NR; i++)
		t_wait_ok(rd[i], 10);
	T_NO_CHILDREN();

	long long slow = 0;
	for (int i = 0; i < NW + NR; i++)
		slow = atomic_load(&sh->max_us[i]) > slow ? atomic_load(&sh->max_us[i]) : slow;
	long long wops = 0;
	for (int i = 0; i < NW; i++)
		wops += atomic_load(&sh->ops[i]);
	printf("%d kills in %.1f s; writers %lld ops, readers %lld + %lld calls (%lld next passes); "
	       "slowest call %.1f ms\n", trials, t_kills, wops, atomic_load(&sh->reads[0]),
	       atomic_load(&sh->reads[1]), atomic_load(&sh->passes), slow / 1000.0);
	T_CHECK(trials >= 30);
	T_CHECK(slow < 2000000);

	/* Quiet now: every key intact, len exact, next() visits each once. */
	int present = 0;
	static int visits[ID_CHURN + NCHURN];
	for (uint32_t id = 0; id < NFIX; id++)
		check_key(id, buf, "parent");
	for (uint32_t id = ID_CHURN; id < ID_CHURN + NCHURN; id++) {
		check_key(id, buf, "parent");
		keyof(k, id);
		int r = shmp_dict_contains(d, k);
		T_CHECK(r == 0 || r == 1);
		present += r;
	}
	T_EQ(shmp_dict_len(d), NFIX + 2 + present);
	uint64_t cur = 0;
	char key[64];
	size_t vlen;
	int r, n = 0;
	while ((r = shmp_dict_next(d, &cur, key, sizeof key, buf, MAXV, &vlen)) == 1) {
		n++;
		if (!strncmp(key, "fix", 3))
			visits[atoi(key + 3)]++;
		else if (!strncmp(key, "churn", 5))
			visits[ID_CHURN + atoi(key + 5)]++;
		else
			T_CHECK(!strcmp(key, "cas") || !strcmp(key, "ctr"));
		T_CHECK(n <= CAP);
	}
	T_EQ(r, 0);
	T_EQ(n, NFIX + 2 + present);
	for (uint32_t id = 0; id < NFIX; id++)
		T_EQ(visits[id], 1);
	for (uint32_t id = ID_CHURN; id < ID_CHURN + NCHURN; id++) {
		keyof(k, id);
		T_EQ(visits[id], shmp_dict_contains(d, k));
	}

	/* Counters: every increment a writer saw succeed is there, plus at
	 * most one per kill (done, but its writer died before counting it). */
	int64_t ctr = 0;
	size_t len = 0;
	T_EQ(shmp_dict_get(d, "ctr", &ctr, sizeof ctr, &len), 0);
	T_EQ(len, 8);
	long long crec = atomic_load(&sh->ctr_rec), casrec = atomic_load(&sh->cas_rec);
	T_EQ(shmp_dict_get(d, "cas", buf, MAXV, &len), 0);
	T_CHECK(len == CASLEN && intact(buf, len, ID_CAS));
	long long casv = seqof(buf);
	printf("add_i64 counter %lld (writers saw %lld), cas counter %lld (writers saw %lld)\n",
	       (long long)ctr, crec, casv, casrec);
	T_CHECK(ctr >= crec && ctr <= crec + trials);
	T_CHECK(casv >= casrec && casv <= casrec + trials);

	/* Memory: the live values (each key may have grown to MAXV) plus at
	 * most one lost block per kill. */
	uint64_t used = t_seg_stats(seg).used_bytes;
	printf("segment used bytes: %llu after setup, %llu now\n", (unsigned long long)used0,
	       (unsigned long long)used);
	T_CHECK(used <= used0 + (uint64_t)(NFIX + NCHURN + trials) * (MAXV + 256));

	/* No slot was lost: exactly CAP keys fit. */
	int added = 0;
	for (int i = 0; i < 2 * CAP; i++) {
		sprintf(k, "fill%d", i);
		r = shmp_dict_set(d, k, "v", 1);
		if (r == -ENOSPC)
			break;
		T_EQ(r, 0);
		added++;
	}
	T_EQ(added, CAP - (NFIX + 2 + present));
	T_EQ(shmp_dict_len(d), CAP);
	T_EQ(shmp_dict_clear(d), 0);
	T_EQ(shmp_dict_len(d), 0);

	shmp_dict_destroy(d);
	shmp_segment_destroy(seg);
	munmap(sh, sizeof *sh);
	printf("total %.1f s\n", t_now() - start);
	return 0;
}
