/* Lifetime of a registry segment, as registry.h writes it down.
 *
 * Asserts: shmp_segment_inspect's attach_count, users, creator_alive, stale
 * and objects as processes (this binary re-executed, so nothing is inherited)
 * attach, detach and get killed; a read-only attach is not counted; destroy
 * by the creating handle unlinks, detach and a non-creator's destroy do not;
 * a process still mapping an unlinked registry keeps using it, new attaches
 * get ENOENT, and a new registry under the same name is separate; processes
 * racing shmp_registry_open on one name all succeed, one of them creates, and
 * all see the same objects; a segment is stale exactly when its creator is
 * dead and no live process maps it (creator and attacher killed with
 * SIGKILL); processes killed with SIGKILL at random points while creating,
 * getting and removing objects (and while creating the registry itself)
 * never leave the directory wedged: afterwards every name can be created and
 * got, each exactly once in the directory. Every segment is removed. */
#include "t_reg.h"

#include <fcntl.h>
#include <sys/stat.h>

#define NTYPES (LAST_TYPE - FIRST_TYPE + 1)


static struct shmp_segment_info insp(const char *name)
{
	struct shmp_segment_info si;
	memset(&si, 0x5a, sizeof si);
	int r = shmp_segment_inspect(name, &si);
	if (r != 0) {
		fprintf(stderr, "inspect %s: %d (%s)\n", name, r, shmp_strerror(r));
		exit(1);
	}
	return si;
}

static int file_exists(const char *name)
{
	char p[300];
	struct stat st;
	snprintf(p, sizeof p, "/dev/shm/shmp.%s", name);
	return lstat(p, &st) == 0;
}

/* Print the counts on a mismatch: they are the point of this test. */
#define T_INSP(name, attaches, nusers, alive, is_stale)                            \
	do {                                                                       \
		struct shmp_segment_info t_si_ = insp(name);                       \
		if (t_si_.attach_count != (uint32_t)(attaches) ||                  \
		    t_si_.users != (uint32_t)(nusers) ||                           \
		    t_si_.creator_alive != (alive) || t_si_.stale != (is_stale) || \
		    t_si_.valid != 1) {                                            \
			fprintf(stderr, "%s:%d: inspect: attach_count %u users %u creator_alive %d " \
				"stale %d valid %d; want %u %u %d %d 1\n", __FILE__, __LINE__, \
				t_si_.attach_count, t_si_.users, t_si_.creator_alive, \
				t_si_.stale, t_si_.valid, (unsigned)(attaches),    \
				(unsigned)(nusers), (alive), (is_stale));          \
			exit(1);                                                   \
		}                                                                  \
	} while (0)

/* ---- a peer with nothing inherited: this binary run again ---------------- */

/* "--hold NAME WFD RFD": attach, report, on command detach and report,
 * then wait for the end of the pipe. */
static int peer_hold(const char *name, int wfd, int rfd)
{
	t_watchdog(40);
	shmp_registry_t *r = shmp_registry_attach(name, NULL);
	if (!r)
		return 2;
	shmp_event_t *e = shmp_registry_event(r, "peer_ev", 0);
	if (!e)
		return 3;
	shmp_event_destroy(e);
	t_signal(wfd);
	if (t_await(rfd, 30) != 1)
		return 4;
	shmp_registry_detach(r);
	t_signal(wfd);
	t_await(rfd, 30);
	return 0;
}

struct peer {
	pid_t pid;
	int to, from; /* our ends */
};

static struct peer spawn_peer(const char *name)
{
	int down[2], up[2];
	T_EQ(pipe(down), 0);
	T_EQ(pipe(up), 0);
	T_CHECK(npeers < 16);
	pid_t parent = getpid();
	fflush(NULL);
	pid_t p = fork();
	T_CHECK(p >= 0);
	if (p == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(99);
		close(down[1]);
		close(up[0]);
		char w[16], rd[16];
		snprintf(w, sizeof w, "%d", up[1]);
		snprintf(rd, sizeof rd, "%d", down[0]);
		char *argv[] = { (char *)"t_registry_life", (char *)"--hold", (char *)name, w, rd, NULL };
		execv("/proc/self/exe", argv);
		_exit(98);
	}
	peers[npeers++] = p;
	close(down[0]);
	close(up[1]);
	return (struct peer){ p, down[1], up[0] };
}

static void peer_close(struct peer *p)
{
	close(p->to);
	close(p->from);
}

/* ---- attach counts, who unlinks ------------------------------------------- */

static void test_counts(void)
{
	const char *name = track(t_segname("cnt"));
	pid_t me = getpid();
	struct shmp_registry_opts o = ropts(1 << 20, 0);
	shmp_registry_t *r = T_OK(shmp_registry_create(name, &o));

	struct shmp_segment_info si = insp(name);
	T_CHECK(strcmp(si.name, name) == 0);
	T_EQ(si.size, 1 << 20);
	T_EQ(si.valid, 1);
	T_EQ(si.error, 0);
	T_EQ(si.creator_pid, me);
	T_EQ(si.objects, 0);
	T_CHECK(si.used_bytes > 0 && si.used_bytes < si.size);
	T_INSP(name, 1, 1, 1, 0);

	shmp_event_t *e = T_OK(shmp_registry_event(r, "a", 0));
	shmp_lock_t *l = T_OK(shmp_registry_lock(r, "b", 0));
	T_EQ(shmp_namespace_set_i64(r, "c", 3), 0);
	T_EQ(insp(name).objects, 3);

	/* Attaches from this process count; users counts processes. */
	shmp_registry_t *r2 = T_OK(shmp_registry_attach(name, NULL));
	T_INSP(name, 2, 1, 1, 0);
	struct shmp_registry_opts roo = SHMP_OPTS(shmp_registry_opts, .flags = SHMP_REGISTRY_READ_ONLY);
	shmp_registry_t *ro = T_OK(shmp_registry_attach(name, &roo));
	T_INSP(name, 2, 1, 1, 0);
	T_EQ(shmp_registry_count(ro), 3);
	shmp_registry_detach(ro);
	T_INSP(name, 2, 1, 1, 0);
	shmp_registry_detach(r2);
	T_INSP(name, 1, 1, 1, 0);

	/* Another process attaches, then detaches while still alive. */
	struct peer p = spawn_peer(name);
	T_EQ(t_await(p.from, 20), 1);
	T_INSP(name, 2, 2, 1, 0);
	T_EQ(insp(name).objects, 4); /* it made peer_ev */
	t_signal(p.to);
	T_EQ(t_await(p.from, 20), 1);
	T_INSP(name, 1, 1, 1, 0);
	peer_close(&p);
	t_wait_ok(p.pid, 20);
	T_INSP(name, 1, 1, 1, 0);

	/* One killed while attached never detaches: its count stays. */
	p = spawn_peer(name);
	T_EQ(t_await(p.from, 20), 1);
	T_INSP(name, 2, 2, 1, 0);
	t_kill_reap(p.pid, 10);
	peer_close(&p);
	T_INSP(name, 2, 1, 1, 0);

	/* The creator's detach does not unlink; the creator alive keeps it
	 * from being stale though nobody maps it. */
	shmp_event_destroy(e);
	shmp_lock_destroy(l);
	shmp_registry_detach(r);
	T_CHECK(file_exists(name));
	T_INSP(name, 1, 0, 1, 0);
	T_EQ(insp(name).objects, 4);

	/* A non-creator's destroy does not unlink either. */
	r2 = T_OK(shmp_registry_attach(name, NULL));
	T_INSP(name, 2, 1, 1, 0);
	T_EQ(shmp_registry_count(r2), 4);
	shmp_registry_destroy(r2);
	T_CHECK(file_exists(name));
	T_INSP(name, 1, 0, 1, 0);
	T_EQ(shmp_segment_unlink(name), 0);
	T_CHECK(!file_exists(name));
	struct shmp_segment_info gone;
	T_EQ(shmp_segment_inspect(name, &gone), -ENOENT);
	T_FAILS(shmp_registry_attach(name, NULL), ENOENT);

	/* The creator's destroy unlinks, with other handles still open. */
	r = T_OK(shmp_registry_create(name, &o));
	r2 = T_OK(shmp_registry_attach(name, NULL));
	shmp_registry_destroy(r);
	T_CHECK(!file_exists(name));
	T_EQ(shmp_registry_count(r2), 0); /* still mapped, still works */
	shmp_registry_detach(r2);
}

/* ---- an unlinked registry still mapped ------------------------------------ */

struct unl {
	const char *name;
	int wfd, rfd;
};

static int child_unlinked(void *arg)
{
	struct unl *u = arg;
	shmp_registry_t *r1 = shmp_registry_attach(u->name, NULL);
	if (!r1)
		return 2;
	shmp_value_t *v = shmp_registry_value(r1, "v", 'q', NULL, SHMP_REG_GET_ONLY);
	if (!v)
		return 3;
	t_signal(u->wfd);
	if (t_await(u->rfd, 20) != 1)
		return 4;
	/* The parent destroyed r1 (unlinked it) and made a new one. */
	int64_t x = 0;
	T_EQ(shmp_value_get_i64(v, &x), 0);
	T_EQ(x, 1);
	T_EQ(shmp_value_set_i64(v, 2), 0);
	shmp_value_t *v1 = T_OK(shmp_registry_value(r1, "v", 'q', NULL, SHMP_REG_GET_ONLY));
	T_EQ(shmp_value_get_i64(v1, &x), 0);
	T_EQ(x, 2);
	shmp_value_destroy(v1);
	T_EQ(shmp_registry_count(r1), 1);
	struct shmp_object_info in;
	T_EQ(shmp_registry_lookup(r1, "only2", &in), -ENOENT);
	/* New objects still go into the old one. */
	shmp_event_t *e = T_OK(shmp_registry_event(r1, "old_ev", 0));
	T_EQ(shmp_registry_count(r1), 2);
	/* By name: the new one. */
	shmp_registry_t *r2 = T_OK(shmp_registry_attach(u->name, NULL));
	T_EQ(shmp_registry_count(r2), 2);
	T_EQ(shmp_registry_lookup(r2, "only2", &in), 0);
	T_EQ(shmp_registry_lookup(r2, "old_ev", &in), -ENOENT);
	shmp_value_t *v2 = T_OK(shmp_registry_value(r2, "v", 'q', NULL, SHMP_REG_GET_ONLY));
	T_EQ(shmp_value_get_i64(v2, &x), 0);
	T_EQ(x, 100);
	T_EQ(shmp_value_set_i64(v2, 101), 0);
	T_EQ(shmp_value_get_i64(v, &x), 0);
	T_EQ(x, 2);
	shmp_value_destroy(v2);
	shmp_value_destroy(v);
	shmp_event_destroy(e);
	shmp_registry_detach(r2);
	shmp_registry_detach(r1);
	return 0;
}

static void test_unlinked(void)
{
	const char *name = track(t_segname("unl"));
	struct shmp_registry_opts o = ropts(1 << 20, 0);
	shmp_registry_t *r = T_OK(shmp_registry_create(name, &o));
	int64_t one = 1;
	shmp_value_destroy(T_OK(shmp_registry_value(r, "v", 'q', &one, 0)));

	int down[2], up[2];
	T_EQ(pipe(down), 0);
	T_EQ(pipe(up), 0);
	struct unl u = { name, up[1], down[0] };
	pid_t c = t_spawn(child_unlinked, &u);
	close(up[1]);
	close(down[0]);
	T_EQ(t_await(up[0], 20), 1);

	shmp_registry_destroy(r); /* unlinks; the child still maps it */
	T_CHECK(!file_exists(name));
	T_FAILS(shmp_registry_attach(name, NULL), ENOENT);
	struct shmp_segment_info si;
	T_EQ(shmp_segment_inspect(name, &si), -ENOENT);

	r = T_OK(shmp_registry_create(name, &o));
	int64_t hundred = 100;
	shmp_value_t *v = T_OK(shmp_registry_value(r, "v", 'q', &hundred, 0));
	shmp_lock_destroy(T_OK(shmp_registry_lock(r, "only2", 0)));
	t_signal(down[1]);
	t_wait_ok(c, 20);
	close(up[0]);
	close(down[1]);
	int64_t x = 0;
	T_EQ(shmp_value_get_i64(v, &x), 0);
	T_EQ(x, 101);
	T_EQ(shmp_registry_count(r), 2);
	T_INSP(name, 1, 1, 1, 0);
	shmp_value_destroy(v);
	shmp_registry_destroy(r);
	T_CHECK(!file_exists(name));
}

/* ---- open races ------------------------------------------------------------ */

#define RACERS 6
#define RACE_VALUES 10

struct race {
	const char *name;
	int gate;   /* read end: EOF is the start signal */
	int gate_w; /* its write end, closed in the racers */
};

static int child_race(void *arg)
{
	struct race *ra = arg;
	close(ra->gate_w);
	if (t_await(ra->gate, 20) != -1)
		return 2;
	struct shmp_registry_opts o = ropts(4 << 20, 64);
	shmp_registry_t *r = shmp_registry_open(ra->name, &o);
	if (!r) {
		fprintf(stderr, "racer %d: open: %s\n", (int)getpid(), shmp_strerror(-errno));
		return 3;
	}
	for (int k = 0; k < RACE_VALUES; k++) {
		char nm[8];
		snprintf(nm, sizeof nm, "v%d", k);
		shmp_value_t *v = shmp_registry_value(r, nm, 'q', NULL, 0);
		if (!v) {
			fprintf(stderr, "racer %d: %s: %s\n", (int)getpid(), nm, shmp_strerror(-errno));
			return 4;
		}
		T_EQ(shmp_value_add(v, 1, NULL), 0);
		shmp_value_destroy(v);
	}
	shmp_lock_t *l = T_OK(shmp_registry_lock(r, "L", 0));
	T_EQ(shmp_lock_acquire(l, 10), 0);
	T_EQ(shmp_lock_release(l), 0);
	shmp_lock_destroy(l);
	shmp_queue_t *q = T_OK(shmp_registry_queue(r, "q", 64, 0));
	int32_t me = getpid();
	T_EQ(shmp_queue_put(q, &me, sizeof me, 10), 0);
	shmp_queue_destroy(q);
	shmp_registry_detach(r); /* detach: a racer that created must not unlink */
	return 0;
}

static void test_open_race(int rounds)
{
	for (int round = 0; round < rounds; round++) {
		char tag[32];
		snprintf(tag, sizeof tag, "race%d", round);
		const char *name = track(t_segname(tag));
		int gate[2];
		T_EQ(pipe(gate), 0);
		struct race ra = { name, gate[0], gate[1] };
		pid_t pids[RACERS];
		for (int i = 0; i < RACERS; i++)
			pids[i] = t_spawn(child_race, &ra);
		close(gate[0]);
		close(gate[1]); /* go */
		for (int i = 0; i < RACERS; i++)
			t_wait_ok(pids[i], 20);

		/* One racer created it; all detached; all have exited. */
		struct shmp_segment_info si = insp(name);
		int creators = 0;
		for (int i = 0; i < RACERS; i++)
			creators += si.creator_pid == pids[i];
		T_EQ(creators, 1);
		T_EQ(si.objects, RACE_VALUES + 2);
		T_INSP(name, 0, 0, 0, 1);

		shmp_registry_t *r = T_OK(shmp_registry_attach(name, NULL));
		T_EQ(shmp_registry_count(r), RACE_VALUES + 2);
		for (int k = 0; k < RACE_VALUES; k++) {
			char nm[8];
			snprintf(nm, sizeof nm, "v%d", k);
			shmp_value_t *v = T_OK(shmp_registry_value(r, nm, 'q', NULL, SHMP_REG_GET_ONLY));
			int64_t x = 0;
			T_EQ(shmp_value_load(v, &x), 0);
			T_EQ(x, RACERS); /* one object, every racer's increment */
			shmp_value_destroy(v);
		}
		/* Every name once in the directory. */
		int used = 0;
		struct shmp_object_info in;
		char seen[RACE_VALUES + 2] = { 0 };
		for (unsigned i = 0;; i++) {
			int k = shmp_registry_info(r, i, &in);
			if (k == -ERANGE)
				break;
			T_CHECK(k == 0 || k == 1);
			if (!k)
				continue;
			used++;
			int at = -1;
			if (strcmp(in.name, "L") == 0)
				at = RACE_VALUES;
			else if (strcmp(in.name, "q") == 0)
				at = RACE_VALUES + 1;
			else if (in.name[0] == 'v')
				at = atoi(in.name + 1);
			T_CHECK(at >= 0 && at < RACE_VALUES + 2);
			T_EQ(seen[at]++, 0);
		}
		T_EQ(used, RACE_VALUES + 2);
		shmp_queue_t *q = T_OK(shmp_registry_queue(r, "q", 0, SHMP_REG_GET_ONLY));
		int got[RACERS] = { 0 };
		for (int i = 0; i < RACERS; i++) {
			int32_t pid = 0;
			size_t len = 0;
			T_EQ(shmp_queue_get(q, &pid, sizeof pid, &len, 0), 0);
			int j;
			for (j = 0; j < RACERS && pids[j] != pid; j++)
				;
			T_CHECK(j < RACERS);
			T_EQ(got[j]++, 0);
		}
		T_EQ(shmp_queue_qsize(q), 0);
		shmp_queue_destroy(q);
		shmp_registry_destroy(r); /* not the creator: stays */
		T_CHECK(file_exists(name));
		T_EQ(shmp_segment_unlink(name), 0);
	}
}

/* ---- stale segments --------------------------------------------------------- */

struct st_arg {
	const char *name;
	int wfd;
	int create;
};

static int child_stale(void *arg)
{
	struct st_arg *a = arg;
	shmp_registry_t *r;
	if (a->create) {
		struct shmp_registry_opts o = ropts(1 << 20, 0);
		r = shmp_registry_create(a->name, &o);
		if (!r)
			return 2;
		int64_t seven = 7;
		shmp_value_t *v = shmp_registry_value(r, "v", 'q', &seven, 0);
		shmp_lock_t *l = shmp_registry_lock(r, "L", 0);
		if (!v || !l || shmp_lock_acquire(l, 5) != 0)
			return 3; /* dies holding L */
	} else {
		r = shmp_registry_attach(a->name, NULL);
		if (!r || !shmp_registry_value(r, "v", 'q', NULL, SHMP_REG_GET_ONLY))
			return 4;
	}
	t_signal(a->wfd);
	return t_until_orphaned(main_pid);
}

static pid_t start_stale(const char *name, int create)
{
	int p[2];
	T_EQ(pipe(p), 0);
	struct st_arg a = { name, p[1], create };
	pid_t c = t_spawn(child_stale, &a);
	close(p[1]);
	T_EQ(t_await(p[0], 20), 1);
	close(p[0]);
	return c;
}

static void test_stale(void)
{
	/* This process never maps these registries (but for the end), so the
	 * users counted are the children. */
	const char *name = track(t_segname("stale"));
	pid_t c = start_stale(name, 1);
	pid_t a = start_stale(name, 0);
	struct shmp_segment_info si = insp(name);
	T_EQ(si.creator_pid, c);
	T_EQ(si.objects, 2);
	T_INSP(name, 2, 2, 1, 0);

	t_kill_reap(c, 10);
	T_INSP(name, 2, 1, 0, 0); /* the attacher still maps it */
	t_kill_reap(a, 10);
	T_INSP(name, 2, 0, 0, 1);
	si = insp(name);
	T_EQ(si.creator_pid, c);
	T_EQ(si.objects, 2);
	T_EQ(si.error, 0);

	/* A stale segment is still a good one: attach and use it. */
	shmp_registry_t *r = T_OK(shmp_registry_attach(name, NULL));
	T_INSP(name, 3, 1, 0, 0);
	shmp_value_t *v = T_OK(shmp_registry_value(r, "v", 'q', NULL, SHMP_REG_GET_ONLY));
	int64_t x = 0;
	T_EQ(shmp_value_get_i64(v, &x), 0);
	T_EQ(x, 7);
	shmp_lock_t *l = T_OK(shmp_registry_lock(r, "L", SHMP_REG_GET_ONLY));
	T_EQ(shmp_lock_acquire(l, 5), -EOWNERDEAD); /* the creator died holding it */
	T_EQ(shmp_lock_consistent(l), 0);
	T_EQ(shmp_lock_release(l), 0);
	shmp_lock_destroy(l);
	shmp_value_destroy(v);
	shmp_registry_detach(r);
	T_INSP(name, 2, 0, 0, 1);
	/* Collectable by name. */
	T_EQ(shmp_segment_unlink(name), 0);
	T_EQ(shmp_segment_inspect(name, &si), -ENOENT);

	/* Creator dead, the attacher alive but detached: stale, since
	 * nobody maps it any more. */
	name = track(t_segname("stale2"));
	c = start_stale(name, 1);
	struct peer p = spawn_peer(name);
	T_EQ(t_await(p.from, 20), 1);
	T_INSP(name, 2, 2, 1, 0);
	t_kill_reap(c, 10);
	T_INSP(name, 2, 1, 0, 0);
	t_signal(p.to);
	T_EQ(t_await(p.from, 20), 1); /* detached, and alive until we close */
	T_INSP(name, 1, 0, 0, 1);
	peer_close(&p);
	t_wait_ok(p.pid, 20);
	T_EQ(shmp_segment_unlink(name), 0);

	/* Creator alive, nobody mapping: not stale. */
	name = track(t_segname("stale3"));
	struct shmp_registry_opts o = ropts(1 << 20, 0);
	r = T_OK(shmp_registry_create(name, &o));
	shmp_value_destroy(T_OK(shmp_registry_value(r, "v", 'q', NULL, 0)));
	shmp_registry_detach(r);
	T_INSP(name, 0, 0, 1, 0);
	/* An attacher killed: counted for ever, mapping no more. */
	a = start_stale(name, 0);
	T_INSP(name, 1, 1, 1, 0);
	t_kill_reap(a, 10);
	T_INSP(name, 1, 0, 1, 0);
	T_EQ(shmp_segment_unlink(name), 0);
}

/* ---- killed while creating ---------------------------------------------------- */

#define KNAMES 3 /* names per type */

static void kname(char *buf, size_t len, int type, int j)
{
	snprintf(buf, len, "k%d_%d", type, j);
}

struct churn {
	const char *name;
	int create; /* 1: create the registry itself */
	int wfd;    /* signal once the registry is there */
};

static int child_churn(void *arg)
{
	struct churn *ch = arg;
	shmp_registry_t *r;
	if (ch->create) {
		struct shmp_registry_opts o = ropts(16 << 20, 256);
		r = shmp_registry_create(ch->name, &o);
	} else {
		r = shmp_registry_attach(ch->name, NULL);
	}
	if (!r) {
		fprintf(stderr, "churn child: %s: %s\n", ch->create ? "create" : "attach", shmp_strerror(-errno));
		return 2;
	}
	t_signal(ch->wfd);
	t_seed();
	for (;;) {
		int type = FIRST_TYPE + (int)t_rnd(NTYPES);
		char nm[16];
		kname(nm, sizeof nm, type, (int)t_rnd(KNAMES));
		if (t_rnd(4) == 0) {
			int rr = shmp_registry_remove(r, nm);
			if (rr != 0 && rr != -ENOENT) {
				fprintf(stderr, "churn child: remove %s: %s\n", nm, shmp_strerror(rr));
				return 3;
			}
			continue;
		}
		void *h = get_t(r, type, nm, 0);
		if (!h) {
			fprintf(stderr, "churn child: get %s: %s\n", nm, shmp_strerror(-errno));
			return 4;
		}
		if (type == SHMP_TYPE_VALUE)
			shmp_value_add(h, 1, NULL);
		put_t(type, h);
	}
}

/* Every name gets and is the only one of its name; nothing else is there. */
static void check_directory(shmp_registry_t *r)
{
	for (int t = FIRST_TYPE; t <= LAST_TYPE; t++) {
		for (int j = 0; j < KNAMES; j++) {
			char nm[16];
			kname(nm, sizeof nm, t, j);
			double t0 = t_now();
			errno = 0;
			void *h = get_t(r, t, nm, 0);
			if (!h) {
				fprintf(stderr, "get %s (%s) after a kill: %s\n", nm, shmp_type_name(t),
					shmp_strerror(-errno));
				exit(1);
			}
			T_CHECK(t_now() - t0 < 2.0); /* not wedged, not slow to recover */
			put_t(t, h);
			struct shmp_object_info in;
			T_EQ(shmp_registry_lookup(r, nm, &in), 0);
			T_EQ(in.type, t);
			T_EQ(in.valid, 1);
		}
	}
	T_EQ(shmp_registry_count(r), NTYPES * KNAMES);
	int used = 0;
	char seen[LAST_TYPE + 1][KNAMES];
	memset(seen, 0, sizeof seen);
	for (unsigned i = 0;; i++) {
		struct shmp_object_info in;
		int k = shmp_registry_info(r, i, &in);
		if (k == -ERANGE)
			break;
		T_CHECK(k == 0 || k == 1);
		if (!k)
			continue;
		used++;
		int t = -1, j = -1;
		T_EQ(sscanf(in.name, "k%d_%d", &t, &j), 2);
		T_CHECK(t >= FIRST_TYPE && t <= LAST_TYPE && j >= 0 && j < KNAMES);
		T_EQ(in.type, t);
		T_EQ(seen[t][j]++, 0);
	}
	T_EQ(used, NTYPES * KNAMES);
}

static void test_kill_churn(double budget)
{
	const char *shared = track(t_segname("churn"));
	struct shmp_registry_opts o = ropts(64 << 20, 0);
	shmp_registry_t *r = T_OK(shmp_registry_create(shared, &o));
	double until = t_now() + budget;
	int trials = 0, early = 0, half_made = 0;
	t_seed();
	while (trials < 600 && (trials < 20 || t_now() < until)) {
		int create = trials % 3 == 2;
		char tag[32];
		snprintf(tag, sizeof tag, "churn%d", trials);
		const char *name = create ? track(t_segname(tag)) : shared;
		int p[2];
		T_EQ(pipe(p), 0);
		struct churn ch = { name, create, p[1] };
		pid_t c = t_spawn(child_churn, &ch);
		close(p[1]);
		/* Kill at a random point: mostly in the loop, sometimes (when it
		 * creates the registry) while the registry is being made. */
		int kill_early = create && t_rnd(2) == 0;
		if (kill_early) {
			struct timespec ts = { 0, (long)t_rnd(1500) * 1000 };
			nanosleep(&ts, NULL);
		} else {
			T_EQ(t_await(p[0], 20), 1);
			struct timespec ts = { 0, (long)t_rnd(5000) * 1000 };
			nanosleep(&ts, NULL);
		}
		kill(c, SIGKILL);
		int st = t_wait(c, 10);
		close(p[0]);
		if (!WIFSIGNALED(st)) {
			fprintf(stderr, "churn child ended with %d before the kill\n",
				WIFEXITED(st) ? WEXITSTATUS(st) : -1);
			exit(1);
		}
		shmp_registry_t *rr = r;
		if (create) {
			errno = 0;
			rr = shmp_registry_attach(name, NULL);
			if (!rr) {
				/* Only a kill before create returned may leave no
				 * registry: no file, a header not finished, or a
				 * segment without its directory yet. */
				int e = errno;
				if (!kill_early || (e != ENOENT && e != SHMP_ECORRUPT && e != ENODATA)) {
					fprintf(stderr, "attach after killing the creator: %s\n",
						shmp_strerror(-e));
					exit(1);
				}
				early++;
				if (e != ENOENT)
					half_made++;
				shmp_segment_unlink(name);
				trials++;
				continue;
			}
		}
		check_directory(rr);
		if (create) {
			shmp_registry_detach(rr);
			T_EQ(shmp_segment_unlink(name), 0);
		}
		trials++;
	}
	printf("kill churn: %d trials, %d killed before the registry existed (%d half made)\n",
	       trials, early, half_made);
	shmp_registry_destroy(r);
}

int main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "--hold") == 0)
		return peer_hold(argv[2], atoi(argv[3]), atoi(argv[4]));
	t_watchdog(120);
	main_pid = getpid();
	atexit(cleanup);
	t_make.dict_capacity = 16;
	double t0 = t_now();

	test_counts();
	test_unlinked();
	test_open_race(24);
	test_stale();
	test_kill_churn(4.0);
	T_NO_CHILDREN();
	printf("registry lifetime tests done in %.2f s\n", t_now() - t0);
	return 0;
}
