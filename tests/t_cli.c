/* The real `shmp` command ($SHMP_CLI) against real segments this test makes;
 * stale segments and `shmp gc` are t_cli_gc's. Every run has a timeout; its
 * exit status, stdout and stderr are checked; --json output goes through a
 * strict JSON parser (and python3's json module where installed).
 *
 * Asserts:
 * - Usage: no command, an unknown one, missing or extra arguments, bad top
 *   options exit 2 with the usage on stderr; --help exits 0.
 * - Numbers: top -n and -i given NaN, infinities, empty, negative, zero
 *   (counts), hex, blanks, junk or out of range exit 2 at once, naming the
 *   value (escaped), with nothing on stdout; good ones still work.
 * - ls / --json ls: our registry with its size, used bytes, owner (name,
 *   uid, gid, mode 0600, trusted), creator pid (alive), attach count 1,
 *   users 1 (this process alone maps it), object count, state ok; a
 *   segment without a directory shows no object count.
 * - show / --json show: every object type with its current value, exactly:
 *   Values ('q' 42 then 43, 'd'), Arrays (length, preview), a Lock free, held
 *   by a child (its pid and tid), "owner dead" once the child is SIGKILLed,
 *   free again after recovery; an RLock's depth; semaphore values; Condition;
 *   Event clear then set; Barrier parties; Queue depth/capacity after 3 puts;
 *   JoinableQueue unfinished; Dict keys; a Pool made in the registry's
 *   segment: state, counters after a map and its workers, whose pids and
 *   tasks match shmp_pool_worker_info; closed and joined; gone once destroyed.
 * - Reading never disturbs: attach count, users and every object's handle
 *   count are the same before and after ls, show and top; a Lock held during
 *   show stays held by the same owner.
 * - top NAME -n 3 -i 0.1: three snapshots in about 0.2 s, exit 0 (three JSON
 *   lines with --json); top of a missing segment exits 1.
 * - rm: unlinks (file gone, exit 0, "removed NAME (owner USER (uid N))")
 *   while a process still mapping it keeps working; rm or show of a missing
 *   segment exits 1 with "no such segment"; rm of several names removes
 *   those that exist and exits 1; --json rm lists removed (with owner) and
 *   failed names.
 * - Garbage, empty and other-version files named shmp.*: ls shows them
 *   corrupt/version and exits 0, show exits 1 without crashing, gc does not
 *   list them.
 * - Floating Values and Arrays holding NaN or infinities: show prints nan,
 *   inf, -inf; --json show stays valid JSON (JSON has no such numbers: the
 *   CLI must print something else there, null or a string).
 * - A FIFO or a directory named shmp.*: ls, show and gc finish at once (no
 *   blocking open) and never call it a good segment. */
#include "t_cli.h"

#include <math.h>

static pid_t main_pid;
static const char *REG;      /* our registry */
static shmp_registry_t *reg;
static shmp_segment_t *seg;

#define REG_SIZE ((size_t)16 << 20)

/* ---- reading our registry's state through the library ------------------- */

static uint32_t attach_count(void)
{
	return t_seg_stats(seg).attach_count;
}

static struct shmp_segment_info inspect(const char *name)
{
	struct shmp_segment_info si;
	T_EQ(shmp_segment_inspect(name, &si), 0);
	return si;
}

static struct shmp_object_info lookup(const char *name)
{
	struct shmp_object_info o;
	T_EQ(shmp_registry_lookup(reg, name, &o), 0);
	return o;
}

/* Handle counts of every object, to compare before and after a command. */
struct snap {
	uint32_t attach, users;
	int n;
	char name[32][SHMP_REGISTRY_NAME_MAX + 1];
	uint32_t handles[32];
};

static struct snap snapshot(void)
{
	struct snap s;
	memset(&s, 0, sizeof s);
	s.attach = attach_count();
	s.users = inspect(REG).users;
	struct shmp_object_info o;
	for (unsigned i = 0;; i++) {
		int k = shmp_registry_info(reg, i, &o);
		if (k < 0)
			break;
		if (k == 1 && s.n < 32) {
			snprintf(s.name[s.n], sizeof s.name[0], "%s", o.name);
			s.handles[s.n++] = o.handles;
		}
	}
	T_CHECK(s.n > 0);
	return s;
}

static void same_snap(const struct snap *a, const char *what)
{
	struct snap b = snapshot();
	if (a->attach != b.attach || a->users != b.users || a->n != b.n) {
		fprintf(stderr, "after %s: attach %u -> %u, users %u -> %u, objects %d -> %d\n", what, a->attach,
			b.attach, a->users, b.users, a->n, b.n);
		exit(1);
	}
	for (int i = 0; i < a->n; i++)
		if (strcmp(a->name[i], b.name[i]) != 0 || a->handles[i] != b.handles[i]) {
			fprintf(stderr, "after %s: %s had %u handles, now %s %u\n", what, a->name[i],
				a->handles[i], b.name[i], b.handles[i]);
			exit(1);
		}
}

/* ---- parsing `shmp show` -------------------------------------------------- */

/* The text after an object's name and type in `shmp show` output (into buf),
 * or NULL if the object is not listed. */
static const char *obj_text(const char *out, const char *name, int type, char *buf, size_t cap)
{
	char prefix[128];
	snprintf(prefix, sizeof prefix, "  %-20s %-17s ", name, shmp_type_name(type));
	char line[1024];
	if (!line_starting(out, prefix, line, sizeof line))
		return NULL;
	snprintf(buf, cap, "%s", line + strlen(prefix));
	return buf;
}

/* The object's line in `shmp show REG` must read `want` exactly. */
#define SHOWS(out, name, type, ...)                                                \
	do {                                                                       \
		char s_want_[512], s_got_[1024];                                   \
		snprintf(s_want_, sizeof s_want_, __VA_ARGS__);                    \
		const char *s_g_ = obj_text(out, name, type, s_got_, sizeof s_got_); \
		if (!s_g_)                                                         \
			fprintf(stderr, "%s:%d: %s not in the output\n", __FILE__, __LINE__, name); \
		C_CHECK(s_g_);                                                     \
		C_STREQ(s_g_, s_want_);                                            \
	} while (0)

/* `shmp show REG` (exit 0, nothing on stderr) into r. */
static void show(struct run *r)
{
	C_EQ(cli(r, "show", REG, NULL), 0);
	C_EQ(r->errlen, 0);
}

/* `shmp --json show REG`, parsed into j; returns its objects array. */
static const struct jv *show_json(struct run *r, struct jv *j)
{
	C_EQ(cli(r, "--json", "show", REG, NULL), 0);
	C_EQ(r->errlen, 0);
	jparse(r->out, r->outlen, j);
	const struct jv *s = JOBJ(j, "segment");
	C_STREQ(JSTR(s, "name"), REG);
	return JARR(j, "objects");
}

/* Object `name` of a --json show, with its type, creator and handles
 * checked against the library's view. */
static const struct jv *jobj(const struct jv *objs, const char *name, int type)
{
	const struct jv *o = jfind(objs, "name", name);
	if (!o)
		fprintf(stderr, "%s not in the JSON output\n", name);
	C_CHECK(o);
	struct shmp_object_info li = lookup(name);
	C_STREQ(JSTR(o, "type"), shmp_type_name(type));
	C_EQ(li.type, type);
	C_EQ(JINT(o, "creator_pid"), li.creator_pid);
	C_EQ(JINT(o, "handles"), li.handles);
	C_EQ(JINT(o, "offset"), (long long)li.offset);
	C_EQ(JBOOL(o, "valid"), 1);
	return o;
}

/* JSON integer array a holds exactly the n values v. */
static void jints(const struct jv *a, const long long *v, int n)
{
	C_CHECK(a && a->t == J_ARR);
	C_EQ(a->n, n);
	for (int i = 0; i < n; i++) {
		C_CHECK(a->v[i].t == J_NUM && a->v[i].is_int);
		C_EQ(a->v[i].i, v[i]);
	}
}

/* ---- usage ------------------------------------------------------------------ */

static void test_usage(void)
{
	struct run r = { 0 };
	static const char *const bad[][6] = {
		{ NULL },
		{ "bogus", NULL },
		{ "show", NULL },
		{ "ls", "extra", NULL },
		{ "rm", NULL },
		{ "gc", "--bogus", NULL },
		{ "gc", "--force", "extra", NULL },
		{ "top", "x", "-n", "abc", NULL },
		{ "top", "x", "-i", "0", NULL },
		{ "top", "x", "-q", NULL },
		{ "top", "x", "-n", NULL },
		{ "--json", NULL },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		C_EQ(cli_v(&r, bad[i]), 2);
		C_CHECK(has(r.err, "usage: shmp"));
		C_EQ(r.outlen, 0);
	}
	/* Numbers: NaN, infinities, empty, negative, zero counts, hex, blanks,
	 * trailing junk, out of range are usage errors (exit 2), at once, for
	 * an existing segment too (REG): -i nan used to loop without sleeping
	 * and -n "" to mean forever. The bad value is named, escaped. */
	static const char *const bad_n[] = { "", "-1", "0", "-0", "nan", "inf", "1.5", "0x10", " 3", "3 ",
					     "+3", "3x", "99999999999999999999999" };
	static const char *const bad_i[] = { "", "nan", "NaN", "-nan", "inf", "-inf", "infinity", "-1", "-0.5",
					     "0", "0.001", "3601", "1e999", "1e-999", "0x1p-2", " 1", "1 ",
					     "+1", ".", "1e", "1.2.3", "abc", "\033]0;x\007" };
	for (int k = 0; k < 2; k++) {
		const char *const *v = k ? bad_i : bad_n;
		size_t nv = k ? sizeof bad_i / sizeof *bad_i : sizeof bad_n / sizeof *bad_n;
		for (size_t i = 0; i < nv; i++) {
			const char *args[] = { "top", REG, k ? "-i" : "-n", v[i], NULL };
			C_EQ(cli_v(&r, args), 2);
			C_CHECK(r.secs < 5);
			C_EQ(r.outlen, 0);
			C_CHECK(has(r.err, "usage: shmp"));
			C_CHECK(has(r.err, k ? "-i SECONDS must be" : "-n COUNT must be"));
			printable_only(r.err, r.errlen);
			const char *json_args[] = { "--json", "top", REG, k ? "-i" : "-n", v[i], "-n", "1", NULL };
			if (k) /* and with --json, and the other option good */
				C_EQ(cli_v(&r, json_args), 2);
		}
	}
	/* Good ones still work: a count, a decimal, an exponent. */
	C_EQ(cli(&r, "top", REG, "-n", "1", "-i", "0.5", NULL), 0);
	C_EQ(cli(&r, "top", REG, "-n", "2", "-i", "5e-2", NULL), 0);
	C_EQ(cli(&r, "top", REG, "-n", "01", "-i", "3600", NULL), 0);
	C_EQ(cli(&r, "top", REG, "-i", ".01", "-n", "1", NULL), 0);
	C_EQ(cli(&r, "gc", "--all-users", "--all-users", NULL), 0);
	C_EQ(cli(&r, "--help", NULL), 0);
	C_CHECK(has(r.out, "usage: shmp"));
	C_CHECK(has(r.out, "shmp [--json] gc [--force] [--all-users]"));
	C_EQ(r.errlen, 0);
	run_free(&r);
}

/* ---- the registry and its objects ----------------------------------------- */

static shmp_value_t *answer, *ratio;
static shmp_array_t *arr, *text;
static shmp_lock_t *lk, *rl;
static shmp_sem_t *sem, *bsem;
static shmp_cond_t *cond;
static shmp_event_t *ev;
static shmp_barrier_t *bar;
static shmp_queue_t *q, *jq;
static shmp_dict_t *dict;

static void make_objects(void)
{
	int64_t v42 = 42;
	double d = 2.5;
	int32_t ai[20];
	for (int i = 0; i < 20; i++)
		ai[i] = i * 3;
	T_CHECK((answer = shmp_registry_value(reg, "answer", 'q', &v42, SHMP_REG_CREATE_ONLY)));
	T_CHECK((ratio = shmp_registry_value(reg, "ratio", 'd', &d, SHMP_REG_CREATE_ONLY)));
	T_CHECK((arr = shmp_registry_array(reg, "arr", 'i', 20, ai, SHMP_REG_CREATE_ONLY)));
	T_CHECK((text = shmp_registry_array(reg, "text", 'c', 5, "hello", SHMP_REG_CREATE_ONLY)));
	T_CHECK((lk = shmp_registry_lock(reg, "L", SHMP_REG_CREATE_ONLY)));
	T_CHECK((rl = shmp_registry_rlock(reg, "R", SHMP_REG_CREATE_ONLY)));
	T_CHECK((sem = shmp_registry_sem(reg, "S", 3, SHMP_REG_CREATE_ONLY)));
	T_CHECK((bsem = shmp_registry_bounded_sem(reg, "BS", 2, SHMP_REG_CREATE_ONLY)));
	T_CHECK((cond = shmp_registry_cond(reg, "C", SHMP_REG_CREATE_ONLY)));
	T_CHECK((ev = shmp_registry_event(reg, "E", SHMP_REG_CREATE_ONLY)));
	T_CHECK((bar = shmp_registry_barrier(reg, "B", 3, SHMP_REG_CREATE_ONLY)));
	T_CHECK((q = shmp_registry_queue(reg, "Q", 10, SHMP_REG_CREATE_ONLY)));
	T_CHECK((jq = shmp_registry_joinable_queue(reg, "JQ", 8, SHMP_REG_CREATE_ONLY)));
	struct shmp_dict_opts dopt = SHMP_OPTS(shmp_dict_opts, .capacity = 64);
	T_CHECK((dict = shmp_registry_dict(reg, "D", &dopt, SHMP_REG_CREATE_ONLY)));
	/* Bring them into known states. */
	for (int i = 0; i < 3; i++)
		T_EQ(shmp_queue_put(q, "msg", 3, 1), 0);
	T_EQ(shmp_queue_put(jq, "a", 1, 1), 0);
	T_EQ(shmp_queue_put(jq, "b", 1, 1), 0);
	char b[8];
	size_t len;
	T_EQ(shmp_queue_get(jq, b, sizeof b, &len, 1), 0); /* got, not task_done */
	for (int i = 0; i < 5; i++) {
		char k[8];
		snprintf(k, sizeof k, "k%d", i);
		T_EQ(shmp_dict_set(dict, k, "v", 1), 0);
	}
	T_EQ(shmp_lock_acquire(rl, 1), 0);
	T_EQ(shmp_lock_acquire(rl, 1), 0); /* depth 2, held by this thread */
	T_EQ(shmp_sem_acquire(bsem, 1), 0);
	T_EQ(shmp_registry_count(reg), 14);
}

static void free_objects(void)
{
	T_EQ(shmp_lock_release(rl), 0);
	T_EQ(shmp_lock_release(rl), 0);
	shmp_value_destroy(answer);
	shmp_value_destroy(ratio);
	shmp_array_destroy(arr);
	shmp_array_destroy(text);
	shmp_lock_destroy(lk);
	shmp_lock_destroy(rl);
	shmp_sem_destroy(sem);
	shmp_sem_destroy(bsem);
	shmp_cond_destroy(cond);
	shmp_event_destroy(ev);
	shmp_barrier_destroy(bar);
	shmp_queue_destroy(q);
	shmp_queue_destroy(jq);
	shmp_dict_destroy(dict);
}

/* ---- ls ------------------------------------------------------------------- */

static void test_ls(void)
{
	struct run r = { 0 };
	struct shmp_segment_stats st = t_seg_stats(seg);
	int nobj = shmp_registry_count(reg);
	struct snap before = snapshot();
	C_EQ(before.attach, 1);
	C_EQ(before.users, 1); /* this process alone maps it */

	C_EQ(cli(&r, "ls", NULL), 0);
	C_EQ(r.errlen, 0);
	C_CHECK(!strncmp(r.out, "NAME ", 5));
	struct ls_row row;
	C_CHECK(ls_row(r.out, REG, &row));
	C_STREQ(row.size, "16.0M");
	C_EQ(row.creator, main_pid);
	C_STREQ(row.alive, "yes");
	C_EQ(row.attach, 1);
	C_EQ(row.users, 1);
	C_EQ(atoi(row.objects), nobj);
	C_STREQ(row.state, "ok");
	C_STREQ(row.owner, user_of(geteuid()));
	same_snap(&before, "ls");

	struct jv j;
	C_EQ(cli(&r, "--json", "ls", NULL), 0);
	C_EQ(r.errlen, 0);
	jparse(r.out, r.outlen, &j);
	const struct jv *s = jfind(JARR(&j, "segments"), "name", REG);
	C_CHECK(s);
	C_EQ(JINT(s, "size"), REG_SIZE);
	C_EQ(JINT(s, "used"), (long long)st.used_bytes);
	C_EQ(JBOOL(s, "valid"), 1);
	C_STREQ(JSTR(s, "state"), "ok");
	C_CHECK(!jget(s, "error"));
	C_EQ(JINT(s, "creator_pid"), main_pid);
	C_EQ(JBOOL(s, "creator_alive"), 1);
	C_EQ(JINT(s, "attach_count"), 1);
	C_EQ(JINT(s, "users"), 1);
	C_EQ(JINT(s, "objects"), nobj);
	C_EQ(JBOOL(s, "stale"), 0);
	C_STREQ(JSTR(s, "owner"), user_of(geteuid()));
	C_EQ(JINT(s, "owner_uid"), geteuid());
	C_EQ(JINT(s, "owner_gid"), getegid());
	C_STREQ(JSTR(s, "mode"), "0600");
	C_EQ(JBOOL(s, "trusted"), 1);
	C_EQ(JBOOL(s, "persistent"), 0);
	jfree(&j);
	/* --json may come after the command too. */
	C_EQ(cli(&r, "ls", "--json", NULL), 0);
	jparse(r.out, r.outlen, &j);
	C_CHECK(jfind(JARR(&j, "segments"), "name", REG));
	jfree(&j);
	same_snap(&before, "--json ls");

	/* A shmp segment without a directory: no object count. */
	const char *plain = track(t_segname("plain"));
	shmp_segment_t *ps = shmp_segment_create(plain, 1 << 20, NULL);
	T_CHECK(ps);
	C_EQ(cli(&r, "ls", NULL), 0);
	C_CHECK(ls_row(r.out, plain, &row));
	C_STREQ(row.size, "1.0M");
	C_EQ(row.creator, main_pid);
	C_EQ(row.attach, 1);
	C_STREQ(row.objects, "-");
	C_STREQ(row.state, "ok");
	C_EQ(cli(&r, "--json", "ls", NULL), 0);
	jparse(r.out, r.outlen, &j);
	s = jfind(JARR(&j, "segments"), "name", plain);
	C_CHECK(s);
	C_EQ(JINT(s, "objects"), -1);
	C_EQ(JINT(s, "size"), 1 << 20);
	jfree(&j);
	C_EQ(cli(&r, "show", plain, NULL), 0);
	C_CHECK(has(r.out, "(no objects: no directory)"));
	C_EQ(cli(&r, "--json", "show", plain, NULL), 0);
	jparse(r.out, r.outlen, &j);
	C_EQ(JARR(&j, "objects")->n, 0);
	jfree(&j);
	/* Inspecting it did not give it a directory. */
	C_EQ(inspect(plain).objects, -1);
	C_EQ(t_seg_stats(ps).attach_count, 1);
	shmp_segment_destroy(ps);
	T_CHECK(!seg_file_exists(plain));
	run_free(&r);
}

/* ---- show: every type ------------------------------------------------------ */

static void test_show_values(void)
{
	struct run r = { 0 };
	struct jv j;
	pid_t me = getpid();
	struct snap before = snapshot();
	long long qcap = (long long)lookup("Q").capacity, jqcap = (long long)lookup("JQ").capacity;
	long long dcap = shmp_dict_capacity(dict);
	C_EQ(dcap, (long long)lookup("D").capacity);
	C_CHECK(qcap >= 10 && jqcap >= 8);

	show(&r);
	char head[512];
	C_CHECK(line_starting(r.out, REG, head, sizeof head));
	unsigned att, users;
	int cpid;
	char sz[16], tail[64];
	C_EQ(sscanf(head + strlen(REG), ": ok, %15s (%*s used), creator pid %d (alive), %u attached, %u %63s", sz,
		    &cpid, &att, &users, tail),
	     5);
	C_STREQ(sz, "16.0M");
	C_EQ(cpid, me);
	C_EQ(att, 1);
	C_EQ(users, 1);
	C_STREQ(tail, "users,");
	char ownr[400];
	snprintf(ownr, sizeof ownr, " users, owner %s, mode 0600", owner_of(geteuid()));
	C_CHECK(has(head, ownr) && strlen(strstr(head, ownr)) == strlen(ownr)); /* at the end */
	SHOWS(r.out, "answer", SHMP_TYPE_VALUE, "'q' = 42  [lock free]");
	SHOWS(r.out, "ratio", SHMP_TYPE_VALUE, "'d' = 2.5  [lock free]");
	SHOWS(r.out, "arr", SHMP_TYPE_ARRAY, "'i' x 20 = [0, 3, 6, 9, 12, 15, 18, 21, ...]  [lock free]");
	SHOWS(r.out, "text", SHMP_TYPE_ARRAY, "'c' x 5 = ['h', 'e', 'l', 'l', 'o']  [lock free]");
	SHOWS(r.out, "L", SHMP_TYPE_LOCK, "free");
	SHOWS(r.out, "R", SHMP_TYPE_RLOCK, "held by pid %d (tid %d), depth 2", me, me);
	SHOWS(r.out, "S", SHMP_TYPE_SEM, "value 3, 0 waiting");
	SHOWS(r.out, "BS", SHMP_TYPE_BOUNDED_SEM, "value 1 of 2, 0 waiting");
	SHOWS(r.out, "C", SHMP_TYPE_COND, "0 waiting, lock free");
	SHOWS(r.out, "E", SHMP_TYPE_EVENT, "clear, 0 waiting");
	SHOWS(r.out, "B", SHMP_TYPE_BARRIER, "0 of 3 arrived");
	SHOWS(r.out, "Q", SHMP_TYPE_QUEUE, "3 of %lld queued", qcap);
	SHOWS(r.out, "JQ", SHMP_TYPE_JOINABLE_QUEUE, "1 of %lld queued, 2 unfinished", jqcap);
	SHOWS(r.out, "D", SHMP_TYPE_DICT, "5 keys of %lld", dcap);
	C_EQ(count_of(r.out, "\n  "), 14); /* one line per object */
	same_snap(&before, "show");

	const struct jv *objs = show_json(&r, &j);
	C_EQ(objs->n, 14);
	const struct jv *s = JOBJ(&j, "segment");
	C_EQ(JINT(s, "attach_count"), 1);
	C_EQ(JINT(s, "users"), 1);
	C_EQ(JINT(s, "objects"), 14);
	const struct jv *o = jobj(objs, "answer", SHMP_TYPE_VALUE);
	C_STREQ(JSTR(o, "typecode"), "q");
	C_EQ(JINT(o, "length"), 1);
	C_EQ(JINT(o, "value"), 42);
	C_EQ(JBOOL(o, "locked"), 0);
	o = jobj(objs, "ratio", SHMP_TYPE_VALUE);
	C_CHECK(jget(o, "value") && jget(o, "value")->t == J_NUM && jget(o, "value")->d == 2.5);
	o = jobj(objs, "arr", SHMP_TYPE_ARRAY);
	C_STREQ(JSTR(o, "typecode"), "i");
	C_EQ(JINT(o, "length"), 20);
	static const long long pv[] = { 0, 3, 6, 9, 12, 15, 18, 21 };
	jints(JARR(o, "preview"), pv, 8);
	o = jobj(objs, "text", SHMP_TYPE_ARRAY);
	C_EQ(JINT(o, "length"), 5);
	const struct jv *tp = JARR(o, "preview");
	C_EQ(tp->n, 5);
	for (int i = 0; i < 5; i++) {
		char c[2] = { "hello"[i], 0 };
		C_CHECK(tp->v[i].t == J_STR);
		C_STREQ(tp->v[i].s, c);
	}
	o = jobj(objs, "L", SHMP_TYPE_LOCK);
	C_EQ(JBOOL(o, "locked"), 0);
	C_EQ(JINT(o, "owner_pid"), 0);
	o = jobj(objs, "R", SHMP_TYPE_RLOCK);
	C_EQ(JBOOL(o, "locked"), 1);
	C_EQ(JINT(o, "owner_pid"), me);
	C_EQ(JINT(o, "owner_tid"), me);
	C_EQ(JBOOL(o, "owner_dead"), 0);
	C_EQ(JINT(o, "depth"), 2);
	o = jobj(objs, "S", SHMP_TYPE_SEM);
	C_EQ(JINT(o, "value"), 3);
	C_EQ(JINT(o, "waiters"), 0);
	o = jobj(objs, "BS", SHMP_TYPE_BOUNDED_SEM);
	C_EQ(JINT(o, "value"), 1);
	C_EQ(JINT(o, "max"), 2);
	o = jobj(objs, "C", SHMP_TYPE_COND);
	C_EQ(JINT(o, "waiters"), 0);
	C_EQ(JBOOL(o, "locked"), 0);
	o = jobj(objs, "E", SHMP_TYPE_EVENT);
	C_EQ(JBOOL(o, "is_set"), 0);
	o = jobj(objs, "B", SHMP_TYPE_BARRIER);
	C_EQ(JINT(o, "parties"), 3);
	C_EQ(JINT(o, "waiting"), 0);
	C_EQ(JBOOL(o, "broken"), 0);
	o = jobj(objs, "Q", SHMP_TYPE_QUEUE);
	C_EQ(JINT(o, "depth"), 3);
	C_EQ(JINT(o, "capacity"), qcap);
	C_EQ(JBOOL(o, "closed"), 0);
	o = jobj(objs, "JQ", SHMP_TYPE_JOINABLE_QUEUE);
	C_EQ(JINT(o, "depth"), 1);
	C_EQ(JINT(o, "capacity"), jqcap);
	C_EQ(JINT(o, "unfinished"), 2);
	o = jobj(objs, "D", SHMP_TYPE_DICT);
	C_EQ(JINT(o, "len"), 5);
	C_EQ(JINT(o, "capacity"), dcap);
	jfree(&j);
	same_snap(&before, "--json show");

	/* Change them; show follows. */
	T_EQ(shmp_value_set_i64(answer, 43), 0);
	T_EQ(shmp_array_set_i64(arr, 1, -7), 0);
	T_EQ(shmp_sem_acquire(sem, 1), 0);
	T_EQ(shmp_event_set(ev), 0);
	T_EQ(shmp_queue_task_done(jq), 0);
	T_EQ(shmp_queue_close(q), 0);
	T_EQ(shmp_dict_delete(dict, "k0"), 0);
	show(&r);
	SHOWS(r.out, "answer", SHMP_TYPE_VALUE, "'q' = 43  [lock free]");
	SHOWS(r.out, "arr", SHMP_TYPE_ARRAY, "'i' x 20 = [0, -7, 6, 9, 12, 15, 18, 21, ...]  [lock free]");
	SHOWS(r.out, "S", SHMP_TYPE_SEM, "value 2, 0 waiting");
	SHOWS(r.out, "E", SHMP_TYPE_EVENT, "set, 0 waiting");
	SHOWS(r.out, "Q", SHMP_TYPE_QUEUE, "3 of %lld queued, closed", qcap);
	SHOWS(r.out, "JQ", SHMP_TYPE_JOINABLE_QUEUE, "1 of %lld queued, 1 unfinished", jqcap);
	SHOWS(r.out, "D", SHMP_TYPE_DICT, "4 keys of %lld", dcap);
	objs = show_json(&r, &j);
	C_EQ(JINT(jobj(objs, "answer", SHMP_TYPE_VALUE), "value"), 43);
	C_EQ(JBOOL(jobj(objs, "E", SHMP_TYPE_EVENT), "is_set"), 1);
	C_EQ(JINT(jobj(objs, "S", SHMP_TYPE_SEM), "value"), 2);
	C_EQ(JBOOL(jobj(objs, "Q", SHMP_TYPE_QUEUE), "closed"), 1);
	C_EQ(JINT(jobj(objs, "D", SHMP_TYPE_DICT), "len"), 4);
	jfree(&j);
	same_snap(&before, "show after changes");
	run_free(&r);
}

/* ---- show: a lock held by another process, then its owner killed ------------ */

struct holder_arg {
	int wfd;
};

static int child_hold(void *arg)
{
	struct holder_arg *a = arg;
	if (shmp_lock_acquire(lk, 5) != 0)
		return 2;
	t_signal(a->wfd);
	return t_until_orphaned(main_pid);
}

/* The lock L's owner, through the library. */
static void lock_owner_is(pid_t pid)
{
	pid_t p = 0, t = 0;
	T_EQ(shmp_lock_owner(lk, &p, &t), 1);
	T_EQ(p, pid);
	T_EQ(t, pid);
}

static void test_show_lock_owner(void)
{
	struct run r = { 0 };
	struct jv j;
	int p[2];
	T_EQ(pipe2(p, O_CLOEXEC), 0);
	struct holder_arg a = { p[1] };
	pid_t c = t_spawn(child_hold, &a);
	close(p[1]);
	T_EQ(t_await(p[0], 20), 1);
	close(p[0]);
	lock_owner_is(c);
	struct snap before = snapshot(); /* users: this process and the child */
	C_EQ(before.users, 2);

	show(&r);
	SHOWS(r.out, "L", SHMP_TYPE_LOCK, "held by pid %d (tid %d)", c, c);
	/* Still held by the child: show took nothing, stole nothing. */
	lock_owner_is(c);
	T_EQ(shmp_lock_acquire(lk, 0.05), -ETIMEDOUT);
	const struct jv *objs = show_json(&r, &j);
	const struct jv *o = jobj(objs, "L", SHMP_TYPE_LOCK);
	C_EQ(JBOOL(o, "locked"), 1);
	C_EQ(JINT(o, "owner_pid"), c);
	C_EQ(JINT(o, "owner_tid"), c);
	C_EQ(JBOOL(o, "owner_dead"), 0);
	C_EQ(JINT(JOBJ(&j, "segment"), "users"), 2);
	jfree(&j);
	lock_owner_is(c);
	same_snap(&before, "show with a held lock");
	C_EQ(cli(&r, "top", REG, "-n", "2", "-i", "0.05", NULL), 0);
	lock_owner_is(c);
	same_snap(&before, "top with a held lock");

	/* Killed, not yet reaped: its pid is still known. */
	T_EQ(kill(c, SIGKILL), 0);
	double until = t_now() + 10;
	while (!t_dead_or_zombie(c)) {
		T_CHECK(t_now() < until);
		t_sleep_ms(1);
	}
	show(&r);
	SHOWS(r.out, "L", SHMP_TYPE_LOCK, "held by pid %d (tid %d), owner dead", c, c);
	t_wait_killed(c, 10);
	/* Reaped: the tid stays in the lock word; the pid may be unknown (0). */
	show(&r);
	char got[256];
	C_CHECK(obj_text(r.out, "L", SHMP_TYPE_LOCK, got, sizeof got));
	/* Either the pid is still known, or the line says the process is gone. */
	char want_pid[128], want_gone[128];
	snprintf(want_pid, sizeof want_pid, "held by pid %d (tid %d), owner dead", c, c);
	snprintf(want_gone, sizeof want_gone, "held by tid %d (process gone), owner dead", c);
	C_CHECK(!strcmp(got, want_pid) || !strcmp(got, want_gone));
	objs = show_json(&r, &j);
	o = jobj(objs, "L", SHMP_TYPE_LOCK);
	C_EQ(JBOOL(o, "locked"), 1);
	C_EQ(JINT(o, "owner_tid"), c);
	C_CHECK(JINT(o, "owner_pid") == c || JINT(o, "owner_pid") == 0);
	C_EQ(JBOOL(o, "owner_dead"), 1);
	C_EQ(JINT(JOBJ(&j, "segment"), "users"), 1);
	jfree(&j);

	/* Showing it did not recover it: the next acquirer does. */
	T_EQ(shmp_lock_acquire(lk, 5), -EOWNERDEAD);
	T_EQ(shmp_lock_consistent(lk), 0);
	show(&r);
	SHOWS(r.out, "L", SHMP_TYPE_LOCK, "held by pid %d (tid %d)", main_pid, main_pid);
	T_EQ(shmp_lock_release(lk), 0);
	show(&r);
	SHOWS(r.out, "L", SHMP_TYPE_LOCK, "free");
	run_free(&r);
}

/* ---- show: a Pool in the registry's segment --------------------------------- */

static int square(const void *arg, void *res, const struct shmp_task_ctx *ctx)
{
	(void)ctx;
	long x = *(const long *)arg;
	*(long *)res = x * x;
	return 0;
}

static const char *worker_state_name(int s)
{
	static const char *const n[] = { "starting", "idle", "busy", "exited" };
	return s >= 0 && s <= 3 ? n[s] : "?";
}

/* Pool stats and workers once nothing is in flight (a worker counts as
 * running a moment after its task completed). */
static int pool_at_rest(shmp_pool_t *p, struct shmp_pool_stats *st, struct shmp_worker_info *w, unsigned n,
			unsigned want_state)
{
	double until = t_now() + 10;
	for (;;) {
		*st = t_pool_stats(p);
		int nw = shmp_pool_worker_info(p, w, n);
		T_CHECK(nw > 0 && (unsigned)nw <= n);
		int ok = st->running == 0 && st->queued == 0 && st->completed == st->submitted;
		for (int i = 0; i < nw; i++)
			ok = ok && w[i].state == (int)want_state;
		if (ok)
			return nw;
		T_CHECK(t_now() < until);
		t_sleep_ms(2);
	}
}

/* The pool's part of `shmp show`: its header, counters, one line per worker
 * matching w. */
static void pool_shows(const char *out, const struct shmp_pool_stats *st, const struct shmp_worker_info *w,
		       int nw, const char *state)
{
	SHOWS(out, "workers", SHMP_TYPE_POOL, "%s, %u workers (%u alive), %s supervision", state, st->workers,
	      st->alive, st->supervision ? "io_uring" : "poll");
	char want[512], line[512];
	snprintf(want, sizeof want,
		 "    submitted %llu  completed %llu  failed %llu  queued %llu  running %llu  deaths %llu  started %llu",
		 (unsigned long long)st->submitted, (unsigned long long)st->completed,
		 (unsigned long long)st->failed, (unsigned long long)st->queued, (unsigned long long)st->running,
		 (unsigned long long)st->worker_deaths, (unsigned long long)st->workers_started);
	C_CHECK(line_starting(out, "    submitted ", line, sizeof line));
	C_STREQ(line, want);
	for (int i = 0; i < nw; i++) {
		char prefix[32];
		snprintf(prefix, sizeof prefix, "    worker %-3d ", i);
		C_CHECK(line_starting(out, prefix, line, sizeof line));
		snprintf(want, sizeof want, "    worker %-3d pid %-8d %-8s tasks %llu", i, (int)w[i].pid,
			 worker_state_name(w[i].state), (unsigned long long)w[i].tasks_done);
		C_STREQ(line, want);
	}
	char prefix[32];
	snprintf(prefix, sizeof prefix, "    worker %-3d ", nw);
	C_CHECK(!line_starting(out, prefix, line, sizeof line));
}

/* The same through --json. */
static void pool_json(const struct jv *objs, const struct shmp_pool_stats *st, const struct shmp_worker_info *w,
		      int nw, const char *state)
{
	const struct jv *o = jfind(objs, "name", "workers");
	C_CHECK(o);
	C_STREQ(JSTR(o, "type"), "pool");
	C_STREQ(JSTR(o, "state"), state);
	C_EQ(JINT(o, "workers"), st->workers);
	C_EQ(JINT(o, "alive"), st->alive);
	C_STREQ(JSTR(o, "supervision"), st->supervision ? "io_uring" : "poll");
	C_EQ(JINT(o, "submitted"), (long long)st->submitted);
	C_EQ(JINT(o, "completed"), (long long)st->completed);
	C_EQ(JINT(o, "failed"), (long long)st->failed);
	C_EQ(JINT(o, "queued"), (long long)st->queued);
	C_EQ(JINT(o, "running"), (long long)st->running);
	C_EQ(JINT(o, "worker_deaths"), (long long)st->worker_deaths);
	C_EQ(JINT(o, "workers_started"), (long long)st->workers_started);
	const struct jv *wl = JARR(o, "worker_list");
	C_EQ(wl->n, nw);
	for (int i = 0; i < nw; i++) {
		C_EQ(JINT(&wl->v[i], "pid"), w[i].pid);
		C_STREQ(JSTR(&wl->v[i], "state"), worker_state_name(w[i].state));
		C_EQ(JINT(&wl->v[i], "tasks_done"), (long long)w[i].tasks_done);
	}
}

static void test_show_pool(void)
{
	struct run r = { 0 };
	struct jv j;
	enum { N = 20, NW = 2 };
	struct shmp_pool_opts po = SHMP_OPTS(shmp_pool_opts, .registry = reg, .name = "workers",
					     .queue_capacity = 64, .max_task_bytes = 1 << 16);
	shmp_pool_t *p = shmp_pool_create(NW, &po);
	T_CHECK(p);
	int nobj = shmp_registry_count(reg);
	T_EQ(nobj, 15); /* the pool named itself */
	struct shmp_pool_stats st;
	struct shmp_worker_info w[NW + 1];
	int nw = pool_at_rest(p, &st, w, NW + 1, SHMP_WORKER_IDLE);
	T_EQ(nw, NW);
	T_EQ(st.alive, NW);

	long in[N], out[N];
	for (int i = 0; i < N; i++)
		in[i] = i;
	struct shmp_call_opts co = SHMP_OPTS(shmp_call_opts, .chunksize = 1);
	T_EQ(shmp_pool_map(p, square, in, sizeof(long), N, out, sizeof(long), &co, NULL), 0);
	for (int i = 0; i < N; i++)
		T_EQ(out[i], (long)i * i);
	nw = pool_at_rest(p, &st, w, NW + 1, SHMP_WORKER_IDLE);
	T_EQ(st.completed, N);
	T_EQ(st.submitted, N);
	T_EQ(w[0].tasks_done + w[1].tasks_done, N);
	T_CHECK(w[0].pid > 0 && w[1].pid > 0 && w[0].pid != w[1].pid);

	uint32_t att = attach_count();
	show(&r);
	pool_shows(r.out, &st, w, nw, "running");
	/* The pool's processes map the segment too (inherited). */
	struct shmp_segment_info si = inspect(REG);
	C_CHECK(si.users >= 1 + NW);
	struct jv *jp = &j;
	const struct jv *objs = show_json(&r, jp);
	C_EQ(objs->n, nobj);
	pool_json(objs, &st, w, nw, "running");
	C_EQ(JINT(JOBJ(jp, "segment"), "objects"), nobj);
	jfree(jp);
	C_EQ(attach_count(), att);
	/* And the library's own reader agrees. */
	struct shmp_pool_stats ist;
	struct shmp_worker_info iw[NW];
	T_EQ(shmp_pool_inspect(reg, "workers", &ist, iw, NW), NW);
	T_EQ(ist.completed, N);
	T_EQ(iw[0].pid, w[0].pid);
	T_EQ(iw[1].pid, w[1].pid);

	/* Closed and joined: the workers have exited. */
	T_EQ(shmp_pool_close(p), 0);
	T_EQ(shmp_pool_join(p, 10), 0);
	nw = pool_at_rest(p, &st, w, NW + 1, SHMP_WORKER_EXITED);
	T_EQ(st.alive, 0);
	show(&r);
	pool_shows(r.out, &st, w, nw, "closed");
	objs = show_json(&r, jp);
	pool_json(objs, &st, w, nw, "closed");
	jfree(jp);

	/* Destroyed: it is no longer listed. */
	shmp_pool_destroy(p);
	T_EQ(shmp_registry_count(reg), nobj - 1);
	show(&r);
	char buf[256];
	C_CHECK(!obj_text(r.out, "workers", SHMP_TYPE_POOL, buf, sizeof buf));
	C_CHECK(!has(r.out, "    worker 0 "));
	C_EQ(cli(&r, "--json", "ls", NULL), 0);
	jparse(r.out, r.outlen, jp);
	C_EQ(JINT(jfind(JARR(jp, "segments"), "name", REG), "objects"), nobj - 1);
	jfree(jp);
	run_free(&r);
}

/* ---- top -------------------------------------------------------------------- */

static void test_top(void)
{
	struct run r = { 0 };
	struct snap before = snapshot();
	char head[128];
	C_EQ(cli(&r, "top", REG, "-n", "3", "-i", "0.1", NULL), 0);
	C_EQ(r.errlen, 0);
	snprintf(head, sizeof head, "shmp top %s  ", REG);
	C_EQ(count_of(r.out, head), 3);
	snprintf(head, sizeof head, "\n%s: ok, ", REG);
	C_EQ(count_of(r.out, head), 3);
	C_EQ(count_of(r.out, "(every 0.1 s)"), 3);
	C_EQ(count_of(r.out, "\n  answer "), 3);
	C_CHECK(!has(r.out, "\033")); /* not a terminal: no screen clearing */
	/* Two pauses of 0.1 s between three snapshots. */
	C_CHECK(r.secs >= 0.19 && r.secs < 10);
	same_snap(&before, "top");

	C_EQ(cli(&r, "--json", "top", REG, "-n", "3", "-i", "0.1", NULL), 0);
	C_EQ(r.errlen, 0);
	C_EQ(count_of(r.out, "\n"), 3);
	const char *p = r.out;
	for (int i = 0; i < 3; i++) {
		const char *nl = strchr(p, '\n');
		C_CHECK(nl);
		struct jv j;
		jparse(p, (size_t)(nl - p + 1), &j);
		C_STREQ(JSTR(JOBJ(&j, "segment"), "name"), REG);
		C_EQ(JARR(&j, "objects")->n, shmp_registry_count(reg));
		jfree(&j);
		p = nl + 1;
	}
	same_snap(&before, "--json top");

	const char *missing = t_segname("nosuch");
	C_EQ(cli(&r, "top", missing, "-n", "2", "-i", "0.05", NULL), 1);
	C_CHECK(has(r.err, "no such segment"));
	run_free(&r);
}

/* ---- rm ----------------------------------------------------------------------- */

static void test_rm(void)
{
	struct run r = { 0 };
	struct shmp_registry_opts ro = SHMP_OPTS(shmp_registry_opts, .size = 1 << 20);
	const char *name = track(t_segname("rm"));
	shmp_registry_t *r1 = shmp_registry_create(name, &ro);
	T_CHECK(r1);
	int64_t seven = 7;
	shmp_value_t *v = shmp_registry_value(r1, "v", 'q', &seven, 0);
	T_CHECK(v);
	T_CHECK(seg_file_exists(name));

	C_EQ(cli(&r, "rm", name, NULL), 0);
	char want[700];
	snprintf(want, sizeof want, "removed %s (owner %s)\n", name, owner_of(geteuid()));
	C_STREQ(r.out, want);
	C_EQ(r.errlen, 0);
	C_CHECK(!seg_file_exists(name));
	/* Whoever still maps it goes on working. */
	int64_t x = 0;
	T_EQ(shmp_value_get_i64(v, &x), 0);
	T_EQ(x, 7);
	T_EQ(shmp_value_set_i64(v, 8), 0);
	T_EQ(shmp_value_get_i64(v, &x), 0);
	T_EQ(x, 8);
	errno = 0;
	T_CHECK(!shmp_registry_attach(name, NULL));
	T_EQ(errno, ENOENT);

	C_EQ(cli(&r, "rm", name, NULL), 1);
	snprintf(want, sizeof want, "shmp: rm %s: no such segment\n", name);
	C_STREQ(r.err, want);
	C_EQ(cli(&r, "show", name, NULL), 1);
	snprintf(want, sizeof want, "shmp: %s: no such segment\n", name);
	C_STREQ(r.err, want);
	C_EQ(r.outlen, 0);
	C_EQ(cli(&r, "--json", "show", name, NULL), 1);
	C_CHECK(has(r.err, "no such segment"));
	shmp_value_destroy(v);
	shmp_registry_destroy(r1); /* its unlink finds nothing: fine */

	/* Several names: those that exist go; one missing makes it exit 1. */
	const char *a = track(t_segname("rma")), *b = track(t_segname("rmb"));
	const char *missing = t_segname("rmmissing");
	shmp_segment_t *sa = shmp_segment_create(a, 1 << 16, NULL), *sb = shmp_segment_create(b, 1 << 16, NULL);
	T_CHECK(sa && sb);
	C_EQ(cli(&r, "rm", a, missing, b, NULL), 1);
	C_CHECK(!seg_file_exists(a));
	C_CHECK(!seg_file_exists(b));
	snprintf(want, sizeof want, "shmp: rm %s: no such segment\n", missing);
	C_STREQ(r.err, want);
	C_EQ(count_of(r.out, "removed "), 2);
	/* --json rm: what went, whose it was, and what failed. */
	shmp_segment_t *sa2 = shmp_segment_create(a, 1 << 16, NULL);
	T_CHECK(sa2);
	struct jv j;
	C_EQ(cli(&r, "--json", "rm", a, missing, NULL), 1);
	jparse(r.out, r.outlen, &j);
	const struct jv *rmd = JARR(&j, "removed"), *fl = JARR(&j, "failed");
	C_EQ(rmd->n, 1);
	C_STREQ(JSTR(&rmd->v[0], "name"), a);
	C_STREQ(JSTR(&rmd->v[0], "owner"), user_of(geteuid()));
	C_EQ(JINT(&rmd->v[0], "owner_uid"), geteuid());
	C_EQ(fl->n, 1);
	C_STREQ(JSTR(&fl->v[0], "name"), missing);
	C_STREQ(JSTR(&fl->v[0], "error"), "no such segment");
	C_CHECK(has(r.err, "no such segment"));
	jfree(&j);
	C_CHECK(!seg_file_exists(a));
	shmp_segment_detach(sa2);
	shmp_segment_detach(sa);
	shmp_segment_detach(sb);
	/* A name that cannot be a segment's. */
	C_EQ(cli(&r, "rm", "bad/name", NULL), 1);
	C_CHECK(has(r.err, "shmp: rm bad/name: "));
	C_EQ(cli(&r, "show", "bad/name", NULL), 1);
	C_CHECK(has(r.err, "shmp: bad/name: "));
	run_free(&r);
}

/* ---- corrupt and other-version files ------------------------------------------- */

static void test_corrupt(void)
{
	struct run r = { 0 };
	struct jv j;
	const char *bad = track(t_segname("garbage")), *ver = track(t_segname("version"));
	const char *empty = track(t_segname("empty"));
	unsigned char g[8192];
	t_fill(g, sizeof g, 12345);
	write_seg_file(bad, g, sizeof g, sizeof g);
	/* A shmp header from a future layout version. */
	unsigned char h[64] = "SHMPSEG";
	uint32_t version = 999;
	memcpy(h + 8, &version, 4);
	write_seg_file(ver, h, sizeof h, 1 << 16);
	write_seg_file(empty, NULL, 0, 0);

	C_EQ(cli(&r, "ls", NULL), 0);
	C_EQ(r.errlen, 0);
	struct ls_row row;
	C_CHECK(ls_row(r.out, bad, &row));
	C_STREQ(row.state, "corrupt");
	C_STREQ(row.size, "-");
	C_STREQ(row.alive, "-");
	C_STREQ(row.objects, "-");
	C_CHECK(ls_row(r.out, empty, &row));
	C_STREQ(row.state, "corrupt");
	C_CHECK(ls_row(r.out, ver, &row));
	C_STREQ(row.state, "version");
	C_CHECK(ls_row(r.out, REG, &row)); /* the good ones are still listed */
	C_STREQ(row.state, "ok");

	C_EQ(cli(&r, "--json", "ls", NULL), 0);
	jparse(r.out, r.outlen, &j);
	const struct jv *segs_j = JARR(&j, "segments");
	const char *names[3] = { bad, empty, ver };
	for (int i = 0; i < 3; i++) {
		const struct jv *s = jfind(segs_j, "name", names[i]);
		C_CHECK(s);
		C_EQ(JBOOL(s, "valid"), 0);
		C_STREQ(JSTR(s, "state"), i == 2 ? "version" : "corrupt");
		C_STREQ(JSTR(s, "error"), shmp_strerror(i == 2 ? -SHMP_EVERSION : -SHMP_ECORRUPT));
		C_EQ(JINT(s, "objects"), -1);
		C_EQ(JBOOL(s, "stale"), 0);
	}
	C_STREQ(JSTR(jfind(segs_j, "name", REG), "state"), "ok");
	jfree(&j);

	for (int i = 0; i < 3; i++) {
		C_EQ(cli(&r, "show", names[i], NULL), 1);
		char want[700];
		snprintf(want, sizeof want, "%s: %s (%s), owner %s, mode 0600\n", names[i],
			 i == 2 ? "version" : "corrupt", shmp_strerror(i == 2 ? -SHMP_EVERSION : -SHMP_ECORRUPT),
			 owner_of(geteuid()));
		C_STREQ(r.out, want);
		C_EQ(cli(&r, "--json", "show", names[i], NULL), 1);
		jparse(r.out, r.outlen, &j);
		C_EQ(JBOOL(JOBJ(&j, "segment"), "valid"), 0);
		C_EQ(JARR(&j, "objects")->n, 0);
		jfree(&j);
		C_EQ(cli(&r, "top", names[i], "-n", "2", "-i", "0.05", NULL), 1);
	}

	/* gc leaves them alone (only a dry run here: t_cli_gc runs --force). */
	C_EQ(cli(&r, "--json", "gc", NULL), 0);
	jparse(r.out, r.outlen, &j);
	C_EQ(JBOOL(&j, "dry_run"), 1);
	for (int i = 0; i < 3; i++)
		C_CHECK(!jfind(JARR(&j, "stale"), "name", names[i]));
	C_CHECK(!jfind(JARR(&j, "stale"), "name", REG));
	jfree(&j);
	C_EQ(cli(&r, "gc", NULL), 0);
	for (int i = 0; i < 3; i++) {
		C_CHECK(!has(r.out, names[i]));
		C_CHECK(seg_file_exists(names[i]));
	}
	C_CHECK(!has(r.out, REG));

	/* rm removes them like any other. */
	C_EQ(cli(&r, "rm", bad, ver, empty, NULL), 0);
	for (int i = 0; i < 3; i++)
		C_CHECK(!seg_file_exists(names[i]));
	run_free(&r);
}

/* ---- NaN and infinities ------------------------------------------------------ */

/* A JSON number must be finite: a bare nan or inf makes the whole output
 * unparseable for scripts. Accept null or a string in their place. */
static void nonfinite_ok(const struct jv *v)
{
	C_CHECK(v && (v->t == J_NULL || v->t == J_STR));
}

static void test_nonfinite(void)
{
	struct run r = { 0 };
	struct jv j;
	double d = NAN;
	float f[3] = { INFINITY, -INFINITY, NAN };
	shmp_value_t *v = shmp_registry_value(reg, "nan", 'd', &d, SHMP_REG_CREATE_ONLY);
	shmp_array_t *a = shmp_registry_array(reg, "infs", 'f', 3, f, SHMP_REG_CREATE_ONLY);
	T_CHECK(v && a);
	show(&r);
	SHOWS(r.out, "nan", SHMP_TYPE_VALUE, "'d' = nan  [lock free]");
	SHOWS(r.out, "infs", SHMP_TYPE_ARRAY, "'f' x 3 = [inf, -inf, nan]  [lock free]");
	const struct jv *objs = show_json(&r, &j);
	nonfinite_ok(jget(jobj(objs, "nan", SHMP_TYPE_VALUE), "value"));
	const struct jv *pv = JARR(jobj(objs, "infs", SHMP_TYPE_ARRAY), "preview");
	C_EQ(pv->n, 3);
	for (int i = 0; i < 3; i++)
		nonfinite_ok(&pv->v[i]);
	jfree(&j);
	shmp_value_destroy(v);
	shmp_array_destroy(a);
	T_EQ(shmp_registry_remove(reg, "nan"), 0);
	T_EQ(shmp_registry_remove(reg, "infs"), 0);
	run_free(&r);
}

/* ---- not regular files ------------------------------------------------------ */

/* Nothing but regular files can be segments: a FIFO must not block the
 * command in open() (a shm_open without O_NONBLOCK waits for a writer for
 * ever), a directory must not be mapped. Last: a command that blocks here
 * is killed by the runner's timeout and fails the test. */
static char dir_path[300];

static void dir_cleanup(void)
{
	if (getpid() == main_pid && dir_path[0])
		rmdir(dir_path);
}

static void test_not_files(void)
{
	struct run r = { 0 };
	struct jv j;
	char path[300];
	const char *fifo = track(t_segname("fifo")), *dir = t_segname("dir");
	snprintf(path, sizeof path, "/dev/shm/shmp.%s", fifo);
	T_EQ(mkfifo(path, 0600), 0);
	cli_timeout = 5;
	C_EQ(cli(&r, "--json", "ls", NULL), 0);
	jparse(r.out, r.outlen, &j);
	const struct jv *s = jfind(JARR(&j, "segments"), "name", fifo);
	if (s) { /* or left out: it is not a segment */
		C_EQ(JBOOL(s, "valid"), 0);
		C_STREQ(JSTR(s, "state"), "corrupt");
	}
	C_CHECK(jfind(JARR(&j, "segments"), "name", REG));
	jfree(&j);
	C_EQ(cli(&r, "show", fifo, NULL), 1);
	C_EQ(cli(&r, "--json", "gc", NULL), 0);
	jparse(r.out, r.outlen, &j);
	C_CHECK(!jfind(JARR(&j, "stale"), "name", fifo));
	jfree(&j);
	T_EQ(shmp_segment_unlink(fifo), 0);

	snprintf(dir_path, sizeof dir_path, "/dev/shm/shmp.%s", dir);
	atexit(dir_cleanup);
	T_EQ(mkdir(dir_path, 0700), 0);
	C_EQ(cli(&r, "--json", "ls", NULL), 0);
	int e = rmdir(dir_path); /* before any check can fail */
	jparse(r.out, r.outlen, &j);
	T_EQ(e, 0);
	dir_path[0] = 0;
	s = jfind(JARR(&j, "segments"), "name", dir);
	if (s) {
		C_EQ(JBOOL(s, "valid"), 0);
		C_STREQ(JSTR(s, "state"), "corrupt");
	}
	jfree(&j);
	cli_timeout = 15;
	run_free(&r);
}

int main(void)
{
	t_watchdog(90);
	cli_init();
	main_pid = getpid();
	atexit(t_reap_all);
	double t0 = t_now();
	REG = track(t_segname("reg"));
	struct shmp_registry_opts ro = SHMP_OPTS(shmp_registry_opts, .size = REG_SIZE);
	reg = shmp_registry_create(REG, &ro);
	T_CHECK(reg);
	seg = shmp_registry_segment(reg);
	T_CHECK(seg);

	test_usage();
	make_objects();
	test_ls();
	test_show_values();
	test_show_lock_owner();
	test_show_pool();
	test_top();
	test_rm();
	test_corrupt();
	test_nonfinite();
	test_not_files();

	free_objects();
	T_EQ(attach_count(), 1);
	shmp_registry_destroy(reg);
	T_CHECK(!seg_file_exists(REG));
	for (int i = 0; i < segs.n; i++)
		T_CHECK(!seg_file_exists(segs.name[i]));
	json_python_check();
	free(json_all);
	T_NO_CHILDREN();
	fprintf(stderr, "t_cli: ok in %.2f s\n", t_now() - t0);
	return 0;
}
