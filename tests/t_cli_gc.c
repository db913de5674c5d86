/* Stale segments and `shmp gc`, with the real command ($SHMP_CLI) against
 * registries made by processes this test SIGKILLs.
 *
 * Asserts:
 * - A registry whose creator was SIGKILLed and that no live process maps is
 *   stale: ls shows it so (creator alive "no", users 0, its attach count and
 *   objects, state "stale"; the same with --json); show still reads it (a
 *   Value, the dead creator's Lock "owner dead") and reading it does not make
 *   it any less stale.
 * - gc (dry run, human and --json) lists it with its creator and removes
 *   nothing; gc --force removes it (file gone, "removed", JSON removed:true).
 * - gc never lists nor removes: the test's own live registry; one whose
 *   creator is alive though nobody maps it; one whose creator is dead but a
 *   live process still maps (not stale: users 1) — until that process is
 *   killed too, after which gc lists it and --force removes it; garbage and
 *   other-version files.
 * - A persistent registry (SHMP_REGISTRY_PERSISTENT) whose creator was
 *   SIGKILLed and that nobody maps is never called stale: ls shows state
 *   "persistent" (JSON persistent true, stale false), show says so, gc does
 *   not list it and gc --force keeps it; rm removes it.
 * - ls names the owner of each segment (OWNER column, JSON owner, owner_uid,
 *   mode "0600", trusted); gc's lines name it too.
 * - After --force nothing of ours is stale; the rest is removed by rm.
 *
 * Safety: gc --force removes every stale segment of the caller's uid (the
 * tests' uid), and other tests make stale-looking segments of their own
 * for a while. So --force
 * runs in a private /dev/shm (a mount namespace with a tmpfs of its own,
 * where the kernel allows; there the stale list must be exactly ours). The
 * same scenario also runs in the real /dev/shm with the dry runs only (rm
 * cleans up); where no private /dev/shm can be had, --force runs there only
 * if a dry run just before lists no stale segment but ours, else that step
 * is skipped with a note and rm cleans up. SHMP_T_CLI_NO_NS=1 forces that. */
#include "t_cli.h"

enum mode {
	FORCE_PRIVATE, /* a private /dev/shm: --force, and the stale list is exactly ours */
	FORCE_GUARDED, /* the real /dev/shm: --force only if nothing foreign is stale */
	FORCE_NONE,    /* the real /dev/shm: dry runs only, rm cleans up */
};

#define SEG_SIZE ((size_t)1 << 20)

/* ---- the processes that make and map the segments ---------------------------- */

struct kid_arg {
	const char *name;
	int wfd;
	unsigned flags; /* registry_opts.flags */
};

/* Create a registry with three objects, hold its Lock, report, and stay
 * until killed (never detaching, as a crash would). */
static int child_create(void *arg)
{
	struct kid_arg *a = arg;
	pid_t parent = getppid();
	struct shmp_registry_opts ro = SHMP_OPTS(shmp_registry_opts, .size = SEG_SIZE, .flags = a->flags);
	shmp_registry_t *r = shmp_registry_create(a->name, &ro);
	if (!r)
		return 2;
	int64_t seven = 7;
	shmp_value_t *v = shmp_registry_value(r, "v", 'q', &seven, 0);
	shmp_lock_t *l = shmp_registry_lock(r, "L", 0);
	shmp_queue_t *q = shmp_registry_queue(r, "Q", 4, 0);
	if (!v || !l || !q || shmp_lock_acquire(l, 5) != 0 || shmp_queue_put(q, "x", 1, 1) != 0)
		return 3;
	t_signal(a->wfd);
	return t_until_orphaned(parent);
}

/* Attach to a registry by name (a process of its own, nothing inherited
 * from the creator), report, stay until killed. */
static int child_attach(void *arg)
{
	struct kid_arg *a = arg;
	pid_t parent = getppid();
	shmp_registry_t *r = shmp_registry_attach(a->name, NULL);
	if (!r || !shmp_registry_value(r, "v", 'q', NULL, SHMP_REG_GET_ONLY))
		return 2;
	t_signal(a->wfd);
	return t_until_orphaned(parent);
}

/* Start fn(name) and return once it reported. */
static pid_t start_flags(int (*fn)(void *), const char *name, unsigned flags)
{
	int p[2];
	T_EQ(pipe2(p, O_CLOEXEC), 0);
	struct kid_arg a = { name, p[1], flags };
	pid_t c = t_spawn(fn, &a);
	close(p[1]);
	T_EQ(t_await(p[0], 20), 1);
	close(p[0]);
	return c;
}

static pid_t start(int (*fn)(void *), const char *name)
{
	return start_flags(fn, name, 0);
}

static struct shmp_segment_info inspect(const char *name)
{
	struct shmp_segment_info si;
	T_EQ(shmp_segment_inspect(name, &si), 0);
	return si;
}

/* ---- gc ------------------------------------------------------------------------ */

/* The human dry-run line gc prints for a stale segment. */
static void gc_line(char *buf, size_t n, const char *verb, const char *name, pid_t creator)
{
	snprintf(buf, n, "%s %s (creator pid %d dead, no users, 1.0M, owner %s)\n", verb, name, (int)creator,
		 owner_of(geteuid()));
}

/* `shmp --json gc` (dry run): parsed into j, its stale list returned. */
static const struct jv *gc_dry_json(struct run *r, struct jv *j)
{
	C_EQ(cli(r, "--json", "gc", NULL), 0);
	C_EQ(r->errlen, 0);
	jparse(r->out, r->outlen, j);
	C_EQ(JBOOL(j, "dry_run"), 1);
	const struct jv *st = JARR(j, "stale");
	for (int i = 0; i < st->n; i++)
		C_EQ(JBOOL(&st->v[i], "removed"), 0);
	return st;
}

/* Is every name in stale list st one of ours (names[0..n))? */
static int only_ours(const struct jv *st, const char *const *names, int n)
{
	for (int i = 0; i < st->n; i++) {
		const char *s = JSTR(&st->v[i], "name");
		int ours = 0;
		for (int k = 0; k < n; k++)
			ours |= strcmp(s, names[k]) == 0;
		if (!ours) {
			fprintf(stderr, "note: a stale segment not made by this test: %s\n", s);
			return 0;
		}
	}
	return 1;
}

/* Remove `name` (stale, created by `creator`) with gc --force as the mode
 * allows, else with rm. keep[0..nkeep) must survive either way. */
static void collect(enum mode mode, const char *name, pid_t creator, const char *const *keep, int nkeep,
		    int json)
{
	struct run r = { 0 };
	struct jv j;
	int force = mode == FORCE_PRIVATE;
	if (mode == FORCE_GUARDED) {
		/* Just before: nothing foreign is stale, so --force cannot touch
		 * another test's segments (bar one made stale in between). */
		force = only_ours(gc_dry_json(&r, &j), &name, 1);
		jfree(&j);
		if (!force)
			fprintf(stderr, "note: gc --force skipped: a stale segment of another test is there\n");
	}
	if (!force) {
		C_EQ(cli(&r, "rm", name, NULL), 0);
	} else if (json) {
		C_EQ(cli(&r, "--json", "gc", "--force", NULL), 0);
		C_EQ(r.errlen, 0);
		jparse(r.out, r.outlen, &j);
		C_EQ(JBOOL(&j, "dry_run"), 0);
		const struct jv *st = JARR(&j, "stale");
		const struct jv *o = jfind(st, "name", name);
		C_CHECK(o);
		C_EQ(JINT(o, "creator_pid"), creator);
		C_EQ(JBOOL(o, "removed"), 1);
		if (mode == FORCE_PRIVATE)
			C_EQ(st->n, 1);
		else if (st->n != 1)
			fprintf(stderr, "note: gc --force removed %d stale segments, one of them ours\n", st->n);
		for (int k = 0; k < nkeep; k++)
			C_CHECK(!jfind(st, "name", keep[k]));
		jfree(&j);
	} else {
		C_EQ(cli(&r, "gc", "--force", NULL), 0);
		C_EQ(r.errlen, 0);
		char want[400];
		gc_line(want, sizeof want, "removed", name, creator);
		if (mode == FORCE_PRIVATE)
			C_STREQ(r.out, want);
		else
			C_CHECK(has(r.out, want));
		C_CHECK(!has(r.out, "dry run"));
		for (int k = 0; k < nkeep; k++)
			C_CHECK(!has(r.out, keep[k]));
	}
	C_CHECK(!seg_file_exists(name));
	for (int k = 0; k < nkeep; k++)
		C_CHECK(seg_file_exists(keep[k]));
	run_free(&r);
}

static void scenario(enum mode mode)
{
	struct run r = { 0 };
	struct jv j;
	struct ls_row row;
	char want[400], line[512];
	pid_t me = getpid();
	static const char *const mode_name[] = { "private /dev/shm", "real /dev/shm, guarded --force",
						 "real /dev/shm, dry runs" };
	double t0 = t_now();

	/* Creator killed, nobody maps it: stale. (The children come first, so
	 * that they do not inherit mappings of the segments below.) */
	const char *stale = track(t_segname("stale"));
	pid_t cs = start(child_create, stale);
	t_kill_reap(cs, 10);
	/* The same, persistent: left on purpose, never stale. */
	const char *pers = track(t_segname("persist"));
	pid_t cp = start_flags(child_create, pers, SHMP_REGISTRY_PERSISTENT);
	t_kill_reap(cp, 10);
	/* Creator killed, but a live process maps it: not stale (yet). */
	const char *inuse = track(t_segname("inuse"));
	pid_t ci = start(child_create, inuse);
	pid_t ai = start(child_attach, inuse);
	t_kill_reap(ci, 10);
	/* Ours and alive: this process created and maps it. */
	const char *live = track(t_segname("live"));
	struct shmp_registry_opts ro = SHMP_OPTS(shmp_registry_opts, .size = SEG_SIZE);
	shmp_registry_t *lr = shmp_registry_create(live, &ro);
	T_CHECK(lr);
	shmp_value_t *lv = shmp_registry_value(lr, "x", 'q', NULL, 0);
	T_CHECK(lv);
	/* Creator alive, mapped by nobody: not stale either. */
	const char *idle = track(t_segname("idle"));
	shmp_registry_t *ir = shmp_registry_create(idle, &ro);
	T_CHECK(ir);
	shmp_registry_detach(ir);
	/* Not segments at all. */
	const char *bad = track(t_segname("garbage")), *ver = track(t_segname("version"));
	unsigned char g[4096];
	t_fill(g, sizeof g, 99);
	write_seg_file(bad, g, sizeof g, sizeof g);
	unsigned char h[64] = "SHMPSEG";
	uint32_t version = 999;
	memcpy(h + 8, &version, 4);
	write_seg_file(ver, h, sizeof h, 1 << 16);
	const char *const ours_stale[] = { stale, inuse };

	/* The library agrees on what is stale. */
	struct shmp_segment_info si = inspect(stale);
	T_CHECK(si.valid && si.stale && !si.creator_alive && si.users == 0);
	T_EQ(si.creator_pid, cs);
	si = inspect(inuse);
	T_CHECK(si.valid && !si.stale && !si.creator_alive && si.users == 1);
	si = inspect(idle);
	T_CHECK(si.valid && !si.stale && si.creator_alive && si.users == 0);
	si = inspect(pers);
	T_CHECK(si.valid && !si.stale && si.persistent && !si.creator_alive && si.users == 0);

	/* ls */
	C_EQ(cli(&r, "ls", NULL), 0);
	C_EQ(r.errlen, 0);
	C_CHECK(ls_row(r.out, stale, &row));
	C_STREQ(row.size, "1.0M");
	C_EQ(row.creator, cs);
	C_STREQ(row.alive, "no");
	C_EQ(row.attach, 1); /* the creator never detached */
	C_EQ(row.users, 0);
	C_STREQ(row.objects, "3");
	C_STREQ(row.state, "stale");
	C_STREQ(row.owner, user_of(geteuid()));
	C_CHECK(ls_row(r.out, pers, &row));
	C_EQ(row.creator, cp);
	C_STREQ(row.alive, "no");
	C_EQ(row.users, 0);
	C_STREQ(row.objects, "3");
	C_STREQ(row.state, "persistent");
	C_CHECK(ls_row(r.out, inuse, &row));
	C_EQ(row.creator, ci);
	C_STREQ(row.alive, "no");
	C_EQ(row.attach, 2);
	C_EQ(row.users, 1);
	C_STREQ(row.state, "ok");
	C_CHECK(ls_row(r.out, idle, &row));
	C_STREQ(row.alive, "yes");
	C_EQ(row.users, 0);
	C_EQ(row.attach, 0);
	C_STREQ(row.state, "ok");
	C_CHECK(ls_row(r.out, live, &row));
	C_EQ(row.creator, me);
	C_STREQ(row.alive, "yes");
	C_EQ(row.users, 1);
	C_STREQ(row.state, "ok");
	C_CHECK(ls_row(r.out, bad, &row));
	C_STREQ(row.state, "corrupt");
	C_CHECK(ls_row(r.out, ver, &row));
	C_STREQ(row.state, "version");

	C_EQ(cli(&r, "--json", "ls", NULL), 0);
	jparse(r.out, r.outlen, &j);
	const struct jv *segs_j = JARR(&j, "segments");
	const struct jv *s = jfind(segs_j, "name", stale);
	C_CHECK(s);
	C_STREQ(JSTR(s, "state"), "stale");
	C_EQ(JBOOL(s, "stale"), 1);
	C_EQ(JBOOL(s, "valid"), 1);
	C_EQ(JINT(s, "creator_pid"), cs);
	C_EQ(JBOOL(s, "creator_alive"), 0);
	C_EQ(JINT(s, "attach_count"), 1);
	C_EQ(JINT(s, "users"), 0);
	C_EQ(JINT(s, "objects"), 3);
	C_EQ(JINT(s, "size"), SEG_SIZE);
	C_EQ(JBOOL(s, "persistent"), 0);
	C_STREQ(JSTR(s, "owner"), user_of(geteuid()));
	C_EQ(JINT(s, "owner_uid"), geteuid());
	C_EQ(JINT(s, "owner_gid"), getegid());
	C_STREQ(JSTR(s, "mode"), "0600");
	C_EQ(JBOOL(s, "trusted"), 1);
	s = jfind(segs_j, "name", pers);
	C_CHECK(s);
	C_STREQ(JSTR(s, "state"), "persistent");
	C_EQ(JBOOL(s, "persistent"), 1);
	C_EQ(JBOOL(s, "stale"), 0);
	C_EQ(JBOOL(s, "valid"), 1);
	C_EQ(JBOOL(s, "creator_alive"), 0);
	C_EQ(JINT(s, "users"), 0);
	s = jfind(segs_j, "name", inuse);
	C_CHECK(s);
	C_STREQ(JSTR(s, "state"), "ok");
	C_EQ(JBOOL(s, "stale"), 0);
	C_EQ(JBOOL(s, "creator_alive"), 0);
	C_EQ(JINT(s, "users"), 1);
	C_EQ(JINT(s, "attach_count"), 2);
	s = jfind(segs_j, "name", live);
	C_CHECK(s);
	C_EQ(JBOOL(s, "stale"), 0);
	C_EQ(JBOOL(s, "creator_alive"), 1);
	C_EQ(JINT(s, "users"), 1);
	if (mode == FORCE_PRIVATE) /* nothing else is there */
		C_EQ(segs_j->n, 7);
	jfree(&j);

	/* show reads a stale segment, and leaves it stale. */
	C_EQ(cli(&r, "show", stale, NULL), 0);
	C_EQ(r.errlen, 0);
	snprintf(want, sizeof want, "%s: stale, 1.0M (", stale);
	C_CHECK(line_starting(r.out, want, line, sizeof line));
	snprintf(want, sizeof want, "used), creator pid %d (dead), 1 attached, 0 users, owner %s, mode 0600",
		 (int)cs, owner_of(geteuid()));
	C_CHECK(has(line, want));
	snprintf(want, sizeof want, "  %-20s %-17s 'q' = 7  [lock free]", "v", "value");
	C_CHECK(line_starting(r.out, want, line, sizeof line));
	snprintf(want, sizeof want, "  %-20s %-17s 1 of ", "Q", "queue");
	C_CHECK(line_starting(r.out, want, line, sizeof line));
	/* The creator is reaped: the lock's state still names its pid and tid. */
	snprintf(want, sizeof want, "  %-20s %-17s held by pid %d (tid %d), owner dead", "L", "lock", (int)cs,
		 (int)cs);
	C_CHECK(line_starting(r.out, want, line, sizeof line));
	C_EQ(cli(&r, "--json", "show", stale, NULL), 0);
	jparse(r.out, r.outlen, &j);
	C_STREQ(JSTR(JOBJ(&j, "segment"), "state"), "stale");
	const struct jv *lo = jfind(JARR(&j, "objects"), "name", "L");
	C_CHECK(lo);
	C_EQ(JBOOL(lo, "owner_dead"), 1);
	C_EQ(JINT(lo, "owner_tid"), cs);
	jfree(&j);
	C_EQ(cli(&r, "show", pers, NULL), 0);
	snprintf(want, sizeof want, "%s: persistent, 1.0M (", pers);
	C_CHECK(line_starting(r.out, want, line, sizeof line));
	C_EQ(cli(&r, "--json", "show", pers, NULL), 0);
	jparse(r.out, r.outlen, &j);
	C_STREQ(JSTR(JOBJ(&j, "segment"), "state"), "persistent");
	C_EQ(JBOOL(JOBJ(&j, "segment"), "persistent"), 1);
	jfree(&j);
	C_EQ(cli(&r, "top", stale, "-n", "2", "-i", "0.05", NULL), 0);
	si = inspect(stale);
	T_CHECK(si.stale && si.users == 0);
	T_EQ(si.attach_count, 1);

	/* gc, dry run: lists the stale one alone, removes nothing. */
	C_EQ(cli(&r, "gc", NULL), 0);
	C_EQ(r.errlen, 0);
	gc_line(want, sizeof want, "stale", stale, cs);
	C_CHECK(has(r.out, want));
	if (mode == FORCE_PRIVATE) {
		char all[600];
		snprintf(all, sizeof all, "%s(dry run: shmp gc --force removes it)\n", want);
		C_STREQ(r.out, all);
	} else {
		C_CHECK(has(r.out, "(dry run: shmp gc --force removes "));
	}
	const char *keep[] = { live, idle, inuse, bad, ver, pers };
	for (int k = 0; k < 6; k++)
		C_CHECK(!has(r.out, keep[k]));
	const struct jv *st = gc_dry_json(&r, &j);
	const struct jv *o = jfind(st, "name", stale);
	C_CHECK(o);
	C_EQ(JINT(o, "creator_pid"), cs);
	C_EQ(JINT(o, "owner_uid"), geteuid());
	C_STREQ(JSTR(o, "owner"), user_of(geteuid()));
	C_EQ(JINT(o, "size"), SEG_SIZE);
	for (int k = 0; k < 6; k++)
		C_CHECK(!jfind(st, "name", keep[k]));
	C_EQ(JARR(&j, "other_users")->n, 0);
	if (mode == FORCE_PRIVATE)
		C_EQ(st->n, 1);
	jfree(&j);
	C_CHECK(seg_file_exists(stale));
	T_CHECK(inspect(stale).stale);

	/* --force (as the mode allows): the stale one goes, nothing else. */
	collect(mode, stale, cs, keep, 6, 0);

	/* The last process mapping `inuse` dies: now it is stale. */
	t_kill_reap(ai, 10);
	si = inspect(inuse);
	T_CHECK(si.stale && si.users == 0);
	T_EQ(si.attach_count, 2); /* a killed attacher never detaches */
	C_EQ(cli(&r, "gc", NULL), 0);
	gc_line(want, sizeof want, "stale", inuse, ci);
	C_CHECK(has(r.out, want));
	st = gc_dry_json(&r, &j);
	C_CHECK(jfind(st, "name", inuse));
	C_CHECK(!jfind(st, "name", live));
	C_CHECK(!jfind(st, "name", idle));
	if (mode == FORCE_PRIVATE)
		C_EQ(st->n, 1);
	jfree(&j);
	const char *keep2[] = { live, idle, bad, ver, pers };
	collect(mode, inuse, ci, keep2, 5, 1);

	/* Nothing of ours is stale any more. */
	C_EQ(cli(&r, "gc", NULL), 0);
	if (mode == FORCE_PRIVATE)
		C_STREQ(r.out, "no stale segments\n");
	for (int k = 0; k < 2; k++)
		C_CHECK(!has(r.out, ours_stale[k]));

	/* The live registry was never disturbed: still ours, still usable. */
	T_EQ(shmp_value_set_i64(lv, 5), 0);
	si = inspect(live);
	T_CHECK(si.creator_alive && !si.stale);
	T_EQ(si.attach_count, 1);
	/* The persistent one outlived every gc; rm removes it like any other. */
	T_CHECK(inspect(pers).persistent);
	C_EQ(cli(&r, "rm", bad, ver, idle, pers, NULL), 0);
	shmp_value_destroy(lv);
	shmp_registry_destroy(lr);
	const char *all[] = { live, idle, stale, inuse, bad, ver, pers };
	for (int k = 0; k < 7; k++)
		C_CHECK(!seg_file_exists(all[k]));
	T_NO_CHILDREN();
	if (mode == FORCE_PRIVATE) { /* nothing at all is left */
		C_EQ(cli(&r, "ls", NULL), 0);
		C_CHECK(has(r.out, "\n(no shmp segments in /dev/shm)\n"));
		C_EQ(count_of(r.out, "\n"), 2); /* the header and that */
	}
	run_free(&r);
	fprintf(stderr, "t_cli_gc: %s: ok in %.2f s\n", mode_name[mode], t_now() - t0);
}

#define NO_PRIVATE_SHM 3

static int child_private(void *arg)
{
	(void)arg;
	int e = private_shm();
	if (e < 0) {
		fprintf(stderr, "note: no private /dev/shm (%s): gc --force runs guarded\n", strerror(-e));
		return NO_PRIVATE_SHM;
	}
	scenario(FORCE_PRIVATE);
	json_python_check();
	return 0;
}

int main(void)
{
	t_watchdog(120);
	cli_init();
	atexit(t_reap_all);
	double t0 = t_now();
	int private_ok = 0;
	const char *no_ns = getenv("SHMP_T_CLI_NO_NS");
	if (!(no_ns && *no_ns == '1')) {
		/* Not t_spawn: its children die with it, and it makes its own. */
		pid_t c = t_fork(child_private, NULL);
		int st = t_wait(c, 100);
		T_CHECK(WIFEXITED(st));
		if (WEXITSTATUS(st) != NO_PRIVATE_SHM) {
			T_EQ(WEXITSTATUS(st), 0);
			private_ok = 1;
		}
	}
	scenario(private_ok ? FORCE_NONE : FORCE_GUARDED);
	for (int i = 0; i < segs.n; i++)
		T_CHECK(!seg_file_exists(segs.name[i]));
	json_python_check();
	free(json_all);
	T_NO_CHILDREN();
	fprintf(stderr, "t_cli_gc: ok in %.2f s\n", t_now() - t0);
	return 0;
}
