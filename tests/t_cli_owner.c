/* Owners and the `shmp` command ($SHMP_CLI): a second uid (`nobody`) beside
 * root, in a private /dev/shm (a mount namespace with a tmpfs of its own:
 * gc --force never runs on the real one). Needs root for the second uid
 * and the namespace: skipped (77) otherwise.
 *
 * Asserts:
 * - ls (root) marks each segment with its owner: OWNER "nobody" for the one
 *   nobody made, the caller's name for its own; --json gives owner,
 *   owner_uid, owner_gid, mode and trusted (false for another user's).
 * - gc (root, dry run and --force, human and --json) acts on root's stale
 *   segment only: nobody's stale segment is listed as kept ("not yours",
 *   JSON other_users) and its file survives gc --force; with --all-users
 *   the dry run lists it and gc --force --all-users removes it.
 * - rm names the owner of what it removes: "removed NAME (owner nobody (uid
 *   65534))", and --json rm gives owner_uid 65534.
 * - As nobody (through setpriv, or runuser): ls lists root's 0644 segment
 *   it can read (state ok, owner root) and root's 0600 one it cannot
 *   (state denied, owner root); gc (dry run) calls nobody's own stale
 *   segments its own and root's stale (0644) one kept. */
#include "t_cli.h"

#include <grp.h>

#define NOBODY 65534
#define SEG_SIZE ((size_t)1 << 20)

/* As nobody: create a registry with a Value in it and exit (its creator
 * gone, nobody maps it: stale). */
static int make_as_nobody(void *arg)
{
	const char *name = arg;
	if (setgroups(0, NULL) != 0 || setresgid(NOBODY, NOBODY, NOBODY) != 0 ||
	    setresuid(NOBODY, NOBODY, NOBODY) != 0)
		return 2;
	shmp_registry_t *r = shmp_registry_create(name, &SHMP_OPTS(shmp_registry_opts, .size = SEG_SIZE));
	int64_t x = 1;
	if (!r || !shmp_registry_value(r, "x", 'q', &x, 0))
		return 3;
	shmp_registry_detach(r);
	return 0;
}

/* The same as this uid (root), readable by others (0644: so nobody can
 * judge it stale too). */
static int make_as_me(void *arg)
{
	umask(0);
	shmp_registry_t *r = shmp_registry_create(arg, &SHMP_OPTS(shmp_registry_opts, .size = SEG_SIZE,
								  .mode = 0644));
	if (!r)
		return 3;
	shmp_registry_detach(r);
	return 0;
}

/* How to run the command as nobody: setpriv, else runuser; NULL if neither
 * works here. */
static const char *const *as_nobody(void)
{
	static const char *const sp[] = { "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", NULL };
	static const char *const ru[] = { "runuser", "-u", "nobody", "--", NULL };
	struct run r = { 0 };
	char *probe_sp[] = { "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", "true", NULL };
	run_argv(&r, probe_sp, NULL, 0, 10);
	if (!r.noexec && r.code == 0) {
		run_free(&r);
		return sp;
	}
	char *probe_ru[] = { "runuser", "-u", "nobody", "--", "true", NULL };
	run_argv(&r, probe_ru, NULL, 0, 10);
	int ok = !r.noexec && r.code == 0;
	run_free(&r);
	return ok ? ru : NULL;
}

/* Run the command as nobody with args (NULL-terminated); its exit status. */
static int cli_nobody(struct run *r, const char *const *wrap, const char *const *args)
{
	char *argv[24];
	int n = 0;
	for (; *wrap; wrap++)
		argv[n++] = (char *)*wrap;
	argv[n++] = (char *)cli_path;
	for (; *args; args++) {
		T_CHECK(n < 23);
		argv[n++] = (char *)*args;
	}
	argv[n] = NULL;
	run_argv(r, argv, NULL, 0, cli_timeout);
	C_CHECK(!r->noexec);
	return r->code;
}

static struct shmp_segment_info inspect(const char *name)
{
	struct shmp_segment_info si;
	T_EQ(shmp_segment_inspect(name, &si), 0);
	return si;
}

static void scenario(void)
{
	struct run r = { 0 };
	struct jv j;
	struct ls_row row;
	char want[700];
	uid_t me = geteuid();
	char me_user[300], me_owner[300], nb_user[300], nb_owner[300];
	snprintf(me_user, sizeof me_user, "%s", user_of(me));
	snprintf(me_owner, sizeof me_owner, "%s", owner_of(me));
	snprintf(nb_user, sizeof nb_user, "%s", user_of(NOBODY));
	snprintf(nb_owner, sizeof nb_owner, "%s", owner_of(NOBODY));

	const char *theirs = track(t_segname("theirs")), *theirs2 = track(t_segname("theirs2"));
	const char *mine = track(t_segname("mine"));
	pid_t ct = t_fork(make_as_nobody, (void *)theirs);
	t_wait_ok(ct, 20);
	pid_t ct2 = t_fork(make_as_nobody, (void *)theirs2);
	t_wait_ok(ct2, 20);
	pid_t cm = t_fork(make_as_me, (void *)mine);
	t_wait_ok(cm, 20);
	/* Ours and alive: readable by others (0644), and private (0600). */
	const char *pub = track(t_segname("pub")), *priv = track(t_segname("priv"));
	mode_t old = umask(0);
	shmp_registry_t *rp = shmp_registry_create(pub, &SHMP_OPTS(shmp_registry_opts, .size = SEG_SIZE,
								   .mode = 0644));
	umask(old);
	shmp_registry_t *rq = shmp_registry_create(priv, &SHMP_OPTS(shmp_registry_opts, .size = SEG_SIZE));
	T_CHECK(rp && rq);

	struct shmp_segment_info si = inspect(theirs);
	T_CHECK(si.valid && si.stale && !si.trusted);
	T_EQ(si.owner_uid, NOBODY);
	T_EQ(si.creator_pid, ct);
	si = inspect(mine);
	T_CHECK(si.valid && si.stale && si.trusted);
	T_EQ(si.owner_uid, me);
	T_EQ(inspect(pub).mode, 0644);

	/* ls as root: everyone's, marked with the owner. */
	C_EQ(cli(&r, "ls", NULL), 0);
	C_EQ(r.errlen, 0);
	C_CHECK(ls_row(r.out, theirs, &row));
	C_STREQ(row.owner, nb_user);
	C_STREQ(row.state, "stale");
	C_EQ(row.creator, ct);
	C_CHECK(ls_row(r.out, mine, &row));
	C_STREQ(row.owner, me_user);
	C_STREQ(row.state, "stale");
	C_CHECK(ls_row(r.out, pub, &row));
	C_STREQ(row.owner, me_user);
	C_STREQ(row.state, "ok");
	C_EQ(cli(&r, "--json", "ls", NULL), 0);
	jparse(r.out, r.outlen, &j);
	const struct jv *s = jfind(JARR(&j, "segments"), "name", theirs);
	C_CHECK(s);
	C_STREQ(JSTR(s, "owner"), nb_user);
	C_EQ(JINT(s, "owner_uid"), NOBODY);
	C_EQ(JINT(s, "owner_gid"), NOBODY);
	C_STREQ(JSTR(s, "mode"), "0600");
	C_EQ(JBOOL(s, "trusted"), 0);
	C_EQ(JBOOL(s, "stale"), 1);
	s = jfind(JARR(&j, "segments"), "name", pub);
	C_CHECK(s);
	C_EQ(JINT(s, "owner_uid"), me);
	C_STREQ(JSTR(s, "mode"), "0644");
	C_EQ(JARR(&j, "segments")->n, 5); /* a private /dev/shm: nothing else */
	jfree(&j);
	/* show names the owner too. */
	C_EQ(cli(&r, "show", theirs, NULL), 0);
	snprintf(want, sizeof want, ", owner %s, mode 0600\n", nb_owner);
	C_CHECK(has(r.out, want));

	/* As nobody: root's readable segment listed with its owner, the
	 * private one too (denied); gc's view is nobody's own. */
	const char *const *wrap = as_nobody();
	if (!wrap) {
		fprintf(stderr, "note: neither setpriv nor runuser works here: the command is not run as nobody\n");
	} else {
		static const char *const ls_args[] = { "ls", NULL }, *const ls_json[] = { "--json", "ls", NULL };
		static const char *const gc_json[] = { "--json", "gc", NULL };
		C_EQ(cli_nobody(&r, wrap, ls_args), 0);
		C_CHECK(ls_row(r.out, pub, &row));
		C_STREQ(row.owner, me_user);
		C_STREQ(row.state, "ok");
		C_CHECK(ls_row(r.out, priv, &row));
		C_STREQ(row.owner, me_user);
		C_STREQ(row.state, "denied");
		C_CHECK(ls_row(r.out, theirs, &row));
		C_STREQ(row.owner, nb_user);
		C_EQ(cli_nobody(&r, wrap, ls_json), 0);
		jparse(r.out, r.outlen, &j);
		s = jfind(JARR(&j, "segments"), "name", priv);
		C_CHECK(s);
		C_STREQ(JSTR(s, "state"), "denied");
		C_EQ(JBOOL(s, "valid"), 0);
		C_EQ(JINT(s, "owner_uid"), me);
		s = jfind(JARR(&j, "segments"), "name", pub);
		C_CHECK(s);
		C_EQ(JBOOL(s, "valid"), 1);
		C_EQ(JINT(s, "owner_uid"), me);
		jfree(&j);
		C_EQ(cli_nobody(&r, wrap, gc_json), 0);
		jparse(r.out, r.outlen, &j);
		const struct jv *st = JARR(&j, "stale"), *ot = JARR(&j, "other_users");
		C_EQ(st->n, 2);
		C_CHECK(jfind(st, "name", theirs) && jfind(st, "name", theirs2));
		C_EQ(ot->n, 1);
		C_EQ(JINT(jfind(ot, "name", mine), "owner_uid"), me);
		jfree(&j);
	}

	/* gc as root, dry run: root's stale one; nobody's kept. */
	C_EQ(cli(&r, "gc", NULL), 0);
	C_EQ(r.errlen, 0);
	snprintf(want, sizeof want, "stale %s (creator pid %d dead, no users, 1.0M, owner %s)\n", mine, (int)cm,
		 me_owner);
	C_CHECK(has(r.out, want));
	snprintf(want, sizeof want,
		 "kept %s (creator pid %d dead, no users, 1.0M, owner %s): not yours, --all-users includes it\n",
		 theirs, (int)ct, nb_owner);
	C_CHECK(has(r.out, want));
	C_CHECK(has(r.out, "(dry run: shmp gc --force removes it)\n"));
	C_EQ(count_of(r.out, "\n"), 4);
	C_EQ(cli(&r, "--json", "gc", NULL), 0);
	jparse(r.out, r.outlen, &j);
	C_EQ(JBOOL(&j, "all_users"), 0);
	C_EQ(JARR(&j, "stale")->n, 1);
	C_CHECK(jfind(JARR(&j, "stale"), "name", mine));
	const struct jv *ot = JARR(&j, "other_users");
	C_EQ(ot->n, 2);
	const struct jv *o = jfind(ot, "name", theirs);
	C_CHECK(o);
	C_EQ(JINT(o, "owner_uid"), NOBODY);
	C_STREQ(JSTR(o, "owner"), nb_user);
	C_EQ(JINT(o, "creator_pid"), ct);
	C_EQ(JBOOL(o, "removed"), 0);
	jfree(&j);

	/* gc --force as root: its own goes, nobody's stays. */
	C_EQ(cli(&r, "gc", "--force", NULL), 0);
	snprintf(want, sizeof want, "removed %s (creator pid %d dead, no users, 1.0M, owner %s)\n", mine, (int)cm,
		 me_owner);
	C_CHECK(has(r.out, want));
	C_CHECK(has(r.out, "kept "));
	C_CHECK(!seg_file_exists(mine));
	C_CHECK(seg_file_exists(theirs) && seg_file_exists(theirs2));
	C_EQ(cli(&r, "--json", "gc", "--force", NULL), 0);
	jparse(r.out, r.outlen, &j);
	C_EQ(JBOOL(&j, "dry_run"), 0);
	C_EQ(JARR(&j, "stale")->n, 0);
	C_EQ(JARR(&j, "other_users")->n, 2);
	jfree(&j);
	C_CHECK(seg_file_exists(theirs) && seg_file_exists(theirs2));
	C_EQ(cli(&r, "gc", "--force", NULL), 0);
	C_CHECK(has(r.out, "no stale segments of yours\n"));

	/* rm names whose file it removed. */
	C_EQ(cli(&r, "rm", theirs2, NULL), 0);
	snprintf(want, sizeof want, "removed %s (owner %s)\n", theirs2, nb_owner);
	C_STREQ(r.out, want);
	C_CHECK(!seg_file_exists(theirs2));
	T_EQ(t_wait(t_fork(make_as_nobody, (void *)theirs2), 20), 0);
	C_EQ(cli(&r, "--json", "rm", theirs2, NULL), 0);
	jparse(r.out, r.outlen, &j);
	C_EQ(JINT(&JARR(&j, "removed")->v[0], "owner_uid"), NOBODY);
	C_STREQ(JSTR(&JARR(&j, "removed")->v[0], "owner"), nb_user);
	jfree(&j);

	/* --all-users: nobody's stale segment is listed, then removed. */
	C_EQ(cli(&r, "gc", "--all-users", NULL), 0);
	snprintf(want, sizeof want, "stale %s (creator pid %d dead, no users, 1.0M, owner %s)\n", theirs, (int)ct,
		 nb_owner);
	C_CHECK(has(r.out, want));
	C_CHECK(has(r.out, "(dry run: shmp gc --force --all-users removes it)\n"));
	C_CHECK(seg_file_exists(theirs));
	C_EQ(cli(&r, "--json", "gc", "--all-users", NULL), 0);
	jparse(r.out, r.outlen, &j);
	C_EQ(JBOOL(&j, "all_users"), 1);
	C_EQ(JARR(&j, "stale")->n, 1);
	C_EQ(JINT(jfind(JARR(&j, "stale"), "name", theirs), "owner_uid"), NOBODY);
	C_EQ(JARR(&j, "other_users")->n, 0);
	jfree(&j);
	C_EQ(cli(&r, "gc", "--force", "--all-users", NULL), 0);
	snprintf(want, sizeof want, "removed %s (creator pid %d dead, no users, 1.0M, owner %s)\n", theirs, (int)ct,
		 nb_owner);
	C_STREQ(r.out, want);
	C_CHECK(!seg_file_exists(theirs));

	/* Ours, alive, were never touched. */
	C_CHECK(seg_file_exists(pub) && seg_file_exists(priv));
	shmp_registry_destroy(rp);
	shmp_registry_destroy(rq);
	C_EQ(cli(&r, "ls", NULL), 0);
	C_STREQ(strchr(r.out, '\n') + 1, "(no shmp segments in /dev/shm)\n");
	run_free(&r);
	T_NO_CHILDREN();
}

#define NO_PRIVATE_SHM 3

static int child_private(void *arg)
{
	(void)arg;
	/* Only a real mount namespace: in a user namespace there is no
	 * second uid. */
	int e = private_shm_ex(0);
	if (e < 0) {
		fprintf(stderr, "no private /dev/shm (%s): skipped\n", strerror(-e));
		return NO_PRIVATE_SHM;
	}
	scenario();
	json_python_check();
	free(json_all);
	return 0;
}

int main(void)
{
	t_watchdog(90);
	cli_init();
	if (geteuid() != 0) {
		fprintf(stderr, "not root: no second uid to test with: skipped\n");
		return T_SKIP;
	}
	double t0 = t_now();
	/* Not t_spawn: it makes children of its own. */
	pid_t c = t_fork(child_private, NULL);
	int st = t_wait(c, 80);
	T_CHECK(WIFEXITED(st));
	if (WEXITSTATUS(st) == NO_PRIVATE_SHM)
		return T_SKIP;
	T_EQ(WEXITSTATUS(st), 0);
	T_NO_CHILDREN();
	fprintf(stderr, "t_cli_owner: ok in %.2f s\n", t_now() - t0);
	return 0;
}
