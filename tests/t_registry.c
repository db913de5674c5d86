/* The registry (shmp/registry.h), Python's Manager without a server.
 *
 * Asserts: create-or-get of every type (Value, Array, Lock, RLock, Semaphore,
 * BoundedSemaphore, Condition, Event, Barrier, Queue, JoinableQueue, Dict):
 * a second get is the same object and ignores the creation parameters;
 * CREATE_ONLY / GET_ONLY; the wrong type (every pair of types, and Values and
 * Arrays of another typecode) is NULL with errno SHMP_ETYPE; invalid names
 * EINVAL, 64 bytes ENAMETOOLONG (63 fine); a full directory ENOSPC, a full
 * segment ENOMEM, neither leaving a name behind; NULL arguments; remove (the
 * name goes at once and is reusable, old handles keep working, the memory is
 * freed with the last handle); count, info and lookup (names, types, values,
 * lock owners alive and dead, semaphore, event, condition, barrier, queue and
 * dict state); the Namespace; registry_of on a plain segment (ENODATA before);
 * a read-only attach (EROFS for writes). And the point of it all: a process
 * that is NOT a child (this binary re-executed, nothing inherited) attaches
 * by name and works with every object together with this process. */
#include "t_reg.h"

#include <fcntl.h>
#include <sys/stat.h>

#define ETYPE_POS (SHMP_ETYPE)

static shmp_registry_t *reg_new(const char *tag, size_t size, unsigned capacity)
{
	const char *name = track(t_segname(tag));
	struct shmp_registry_opts o = ropts(size, capacity);
	return T_OK(shmp_registry_create(name, &o));
}

static struct shmp_object_info look(shmp_registry_t *r, const char *name)
{
	struct shmp_object_info in;
	memset(&in, 0x5a, sizeof in); /* garbage: lookup must fill what it reports */
	T_EQ(shmp_registry_lookup(r, name, &in), 0);
	T_CHECK(strcmp(in.name, name) == 0);
	T_EQ(in.valid, 1);
	return in;
}

static void path_of(const char *name, char *out, size_t len)
{
	snprintf(out, len, "/dev/shm/shmp.%s", name);
}

/* ---- type names ------------------------------------------------------- */

static void test_type_names(void)
{
	T_CHECK(strcmp(shmp_type_name(SHMP_TYPE_VALUE), "value") == 0);
	T_CHECK(strcmp(shmp_type_name(SHMP_TYPE_LOCK), "lock") == 0);
	T_CHECK(strcmp(shmp_type_name(SHMP_TYPE_JOINABLE_QUEUE), "joinable_queue") == 0);
	T_CHECK(strcmp(shmp_type_name(SHMP_TYPE_MAX), "unknown") == 0);
	T_CHECK(strcmp(shmp_type_name(-1), "unknown") == 0);
	T_CHECK(strcmp(shmp_type_name(1000), "unknown") == 0);
	/* Every real type has a name of its own. */
	for (int t = FIRST_TYPE; t < SHMP_TYPE_MAX; t++) {
		T_CHECK(shmp_type_name(t) && strcmp(shmp_type_name(t), "unknown") != 0);
		for (int u = t + 1; u < SHMP_TYPE_MAX; u++)
			T_CHECK(strcmp(shmp_type_name(t), shmp_type_name(u)) != 0);
	}
}

/* ---- create, attach, open: the segment ---------------------------------- */

static void test_create_attach(void)
{
	char path[300];
	struct stat st;
	const char *name = track(t_segname("ca"));
	path_of(name, path, sizeof path);

	T_FAILS(shmp_registry_attach(name, NULL), ENOENT);
	shmp_registry_t *r = T_OK(shmp_registry_create(name, NULL));
	/* Defaults: 64 MiB, mode 0600, 1024 directory entries. */
	T_EQ(shmp_segment_size(shmp_registry_segment(r)), 64u << 20);
	T_CHECK(strcmp(shmp_segment_name(shmp_registry_segment(r)), name) == 0);
	T_EQ(lstat(path, &st), 0);
	T_CHECK(S_ISREG(st.st_mode));
	T_EQ(st.st_mode & 0777, 0600);
	struct shmp_object_info in;
	T_EQ(shmp_registry_info(r, 1023, &in), 0);
	T_EQ(shmp_registry_info(r, 1024, &in), -ERANGE);
	T_EQ(shmp_registry_info(r, UINT32_MAX, &in), -ERANGE);
	T_EQ(shmp_registry_count(r), 0);

	/* O_EXCL: the name is taken, whoever asks. */
	T_FAILS(shmp_registry_create(name, NULL), EEXIST);
	shmp_segment_t *seg = shmp_segment_create(name, 1 << 20, NULL);
	T_CHECK(!seg && errno == EEXIST);

	/* open attaches to the existing one: same objects. */
	int64_t seven = 7;
	shmp_value_t *v = T_OK(shmp_registry_value(r, "seven", 'q', &seven, 0));
	shmp_registry_t *o = T_OK(shmp_registry_open(name, NULL));
	shmp_value_t *v2 = T_OK(shmp_registry_value(o, "seven", 'q', NULL, SHMP_REG_GET_ONLY));
	int64_t x = 0;
	T_EQ(shmp_value_get_i64(v2, &x), 0);
	T_EQ(x, 7);
	shmp_value_destroy(v2);
	shmp_registry_destroy(o); /* not the creator: no unlink */
	T_EQ(access(path, F_OK), 0);
	shmp_value_destroy(v);
	shmp_registry_destroy(r); /* the creator: unlinks */
	T_CHECK(access(path, F_OK) != 0 && errno == ENOENT);
	T_FAILS(shmp_registry_attach(name, NULL), ENOENT);

	/* open creates when there is none; size and mode options. */
	struct shmp_registry_opts oo = SHMP_OPTS(shmp_registry_opts, .size = 1000000, .mode = 0660);
	r = T_OK(shmp_registry_open(name, &oo));
	T_EQ(shmp_segment_size(shmp_registry_segment(r)), 1003520); /* rounded to pages */
	T_EQ(lstat(path, &st), 0);
	T_EQ(st.st_mode & 0777, 0660);
	shmp_registry_destroy(r); /* open created it: destroy unlinks */
	T_CHECK(access(path, F_OK) != 0);

	/* Segment names: the segment's rules. */
	T_FAILS(shmp_registry_create("a/b", NULL), EINVAL);
	T_FAILS(shmp_registry_create("", NULL), EINVAL);
	T_FAILS(shmp_registry_attach("a b", NULL), EINVAL);
	T_FAILS(shmp_registry_open("", NULL), EINVAL);
	char longname[260];
	memset(longname, 'n', sizeof longname - 1);
	longname[sizeof longname - 1] = 0;
	T_FAILS(shmp_registry_create(longname, NULL), ENAMETOOLONG);
	/* An options struct whose sz cannot even hold itself. */
	struct shmp_registry_opts bad = { .sz = 0 };
	T_FAILS(shmp_registry_create(name, &bad), EINVAL);
	T_CHECK(access(path, F_OK) != 0);
}

/* ---- every type: create, get the same object again ------------------------ */

static void test_create_get_all(void)
{
	shmp_registry_t *r = reg_new("all", 64 << 20, 0);
	T_EQ(shmp_segment_size(shmp_registry_segment(r)), 64 << 20);
	T_EQ(shmp_registry_count(r), 0);
	int64_t x = 0;

	/* Value: the second get ignores its init, and is the same memory. */
	int64_t init = 41, other = 99;
	shmp_value_t *v1 = T_OK(shmp_registry_value(r, "val", 'q', &init, 0));
	shmp_value_t *v2 = T_OK(shmp_registry_value(r, "val", 'q', &other, 0));
	T_EQ(shmp_value_get_i64(v2, &x), 0);
	T_EQ(x, 41);
	T_EQ(shmp_value_set_i64(v1, 42), 0);
	T_EQ(shmp_value_get_i64(v2, &x), 0);
	T_EQ(x, 42);
	T_CHECK(shmp_value_ptr(v1) == shmp_value_ptr(v2));
	T_EQ(shmp_value_typecode(v2), 'q');
	T_CHECK(shmp_value_lock(v1) != NULL); /* synchronized */
	{
		uint64_t off;
		T_EQ(shmp_segment_offset(shmp_registry_segment(r), shmp_value_ptr(v1), &off), 0);
	}

	/* Array: length and init come from the creation only. */
	int32_t ai[5] = { 1, 2, 3, 4, 5 };
	shmp_array_t *a1 = T_OK(shmp_registry_array(r, "arr", 'i', 5, ai, 0));
	shmp_array_t *a2 = T_OK(shmp_registry_array(r, "arr", 'i', 100, NULL, 0));
	shmp_array_t *a3 = T_OK(shmp_registry_array(r, "arr", 0, 0, NULL, SHMP_REG_GET_ONLY));
	T_EQ(shmp_array_len(a2), 5);
	T_EQ(shmp_array_len(a3), 5);
	T_EQ(shmp_array_typecode(a3), 'i');
	for (size_t i = 0; i < 5; i++) {
		T_EQ(shmp_array_get_i64(a2, i, &x), 0);
		T_EQ(x, (int64_t)i + 1);
	}
	T_EQ(shmp_array_set_i64(a1, 4, -7), 0);
	T_EQ(shmp_array_get_i64(a3, 4, &x), 0);
	T_EQ(x, -7);
	T_CHECK(shmp_array_lock(a1) != NULL);
	T_EQ(shmp_array_get_i64(a2, 5, &x), -ERANGE);

	/* Lock: two handles, one lock (not reentrant: the second handle sees
	 * this thread already holds it). */
	shmp_lock_t *l1 = T_OK(shmp_registry_lock(r, "lk", 0));
	shmp_lock_t *l2 = T_OK(shmp_registry_lock(r, "lk", SHMP_REG_GET_ONLY));
	T_EQ(shmp_lock_is_recursive(l1), 0);
	T_EQ(shmp_lock_acquire(l1, 0), 0);
	T_EQ(shmp_lock_acquire(l2, 0), -EDEADLK);
	T_EQ(shmp_lock_is_locked(l2), 1);
	T_EQ(shmp_lock_release(l2), 0);
	T_EQ(shmp_lock_is_locked(l1), 0);

	/* RLock. */
	shmp_lock_t *rl1 = T_OK(shmp_registry_rlock(r, "rlk", 0));
	shmp_lock_t *rl2 = T_OK(shmp_registry_rlock(r, "rlk", 0));
	T_EQ(shmp_lock_is_recursive(rl2), 1);
	T_EQ(shmp_lock_acquire(rl1, 0), 0);
	T_EQ(shmp_lock_acquire(rl1, 0), 0);
	T_EQ(shmp_lock_count(rl2), 2);
	T_EQ(shmp_lock_release(rl2), 0);
	T_EQ(shmp_lock_release(rl2), 0);
	T_EQ(shmp_lock_is_locked(rl1), 0);

	/* Semaphore: the value of the creation, not of the get. */
	shmp_sem_t *s1 = T_OK(shmp_registry_sem(r, "sem", 2, 0));
	shmp_sem_t *s2 = T_OK(shmp_registry_sem(r, "sem", 7, 0));
	T_EQ(shmp_sem_value(s2), 2);
	T_EQ(shmp_sem_acquire(s1, 0), 0);
	T_EQ(shmp_sem_value(s2), 1);
	T_EQ(shmp_sem_release(s2), 0);
	T_EQ(shmp_sem_value(s1), 2);
	T_EQ(shmp_sem_release(s1), 0); /* unbounded */
	T_EQ(shmp_sem_value(s2), 3);

	/* BoundedSemaphore. */
	shmp_sem_t *b1 = T_OK(shmp_registry_bounded_sem(r, "bsem", 1, 0));
	shmp_sem_t *b2 = T_OK(shmp_registry_bounded_sem(r, "bsem", 5, 0));
	T_EQ(shmp_sem_value(b2), 1);
	T_EQ(shmp_sem_release(b2), -EOVERFLOW);
	T_EQ(shmp_sem_acquire(b1, 0), 0);
	T_EQ(shmp_sem_acquire(b2, 0), -ETIMEDOUT);
	T_EQ(shmp_sem_release(b2), 0);

	/* Condition: its lock is shared through both handles. */
	shmp_cond_t *c1 = T_OK(shmp_registry_cond(r, "cond", 0));
	shmp_cond_t *c2 = T_OK(shmp_registry_cond(r, "cond", 0));
	T_EQ(shmp_lock_acquire(shmp_cond_lock(c1), 1), 0);
	T_EQ(shmp_lock_is_locked(shmp_cond_lock(c2)), 1);
	T_EQ(shmp_cond_notify(c2, 1), 0); /* no waiters; c2 sees us as the owner */
	T_ABOUT(shmp_cond_wait(c2, 0.2), -ETIMEDOUT);
	T_EQ(shmp_lock_release(shmp_cond_lock(c2)), 0);
	T_EQ(shmp_cond_notify(c1, 1), -EPERM);

	/* Event. */
	shmp_event_t *e1 = T_OK(shmp_registry_event(r, "ev", 0));
	shmp_event_t *e2 = T_OK(shmp_registry_event(r, "ev", 0));
	T_EQ(shmp_event_is_set(e2), 0);
	T_EQ(shmp_event_set(e1), 0);
	T_EQ(shmp_event_is_set(e2), 1);
	T_EQ(shmp_event_wait(e2, 0), 0);
	T_EQ(shmp_event_clear(e2), 0);
	T_EQ(shmp_event_is_set(e1), 0);

	/* Barrier: parties from the creation. */
	shmp_barrier_t *br1 = T_OK(shmp_registry_barrier(r, "bar", 3, 0));
	shmp_barrier_t *br2 = T_OK(shmp_registry_barrier(r, "bar", 5, 0));
	T_EQ(shmp_barrier_parties(br2), 3);
	/* Creation parameters are not even looked at on a get, so ones a
	 * creation would refuse are fine there. */
	shmp_barrier_t *br3 = T_OK(shmp_registry_barrier(r, "bar", 0, SHMP_REG_GET_ONLY));
	T_EQ(shmp_barrier_parties(br3), 3);
	shmp_barrier_destroy(br3);
	br3 = T_OK(shmp_registry_barrier(r, "bar", 0, 0));
	shmp_barrier_destroy(br3);
	T_EQ(shmp_barrier_n_waiting(br1), 0);
	T_EQ(shmp_barrier_is_broken(br2), 0);

	/* Queue: maxsize from the creation (4), FIFO through either handle. */
	shmp_queue_t *q1 = T_OK(shmp_registry_queue(r, "q", 4, 0));
	shmp_queue_t *q2 = T_OK(shmp_registry_queue(r, "q", 100, 0));
	for (int i = 0; i < 4; i++)
		T_EQ(shmp_queue_put(q1, &i, sizeof i, 0), 0);
	int i5 = 5;
	T_EQ(shmp_queue_put(q2, &i5, sizeof i5, 0), -ETIMEDOUT);
	T_EQ(shmp_queue_qsize(q2), 4);
	for (int i = 0; i < 4; i++) {
		int got = -1;
		size_t len = 0;
		T_EQ(shmp_queue_get(q2, &got, sizeof got, &len, 0), 0);
		T_EQ(len, sizeof got);
		T_EQ(got, i);
	}
	T_EQ(shmp_queue_task_done(q1), -ENOTSUP); /* a plain Queue */
	/* maxsize 0 means 65536. */
	shmp_queue_t *q0 = T_OK(shmp_registry_queue(r, "q0", 0, 0));
	T_EQ(look(r, "q0").capacity, 65536);
	shmp_queue_destroy(q0);

	/* JoinableQueue. */
	shmp_queue_t *j1 = T_OK(shmp_registry_joinable_queue(r, "jq", 8, 0));
	shmp_queue_t *j2 = T_OK(shmp_registry_joinable_queue(r, "jq", 8, SHMP_REG_GET_ONLY));
	T_EQ(shmp_queue_put(j1, "job", 3, 0), 0);
	T_EQ(shmp_queue_join(j2, 0), -ETIMEDOUT);
	char buf[16];
	size_t len = 0;
	T_EQ(shmp_queue_get(j2, buf, sizeof buf, &len, 0), 0);
	T_EQ(len, 3);
	T_EQ(shmp_queue_task_done(j2), 0);
	T_EQ(shmp_queue_join(j1, 0), 0);
	T_EQ(shmp_queue_task_done(j1), -EOVERFLOW);

	/* Dict. */
	shmp_dict_t *d1 = T_OK(shmp_registry_dict(r, "dict", NULL, 0));
	shmp_dict_t *d2 = T_OK(shmp_registry_dict(r, "dict", NULL, 0));
	T_EQ(shmp_dict_set(d1, "k", "v1", 2), 0);
	len = 0;
	T_EQ(shmp_dict_get(d2, "k", buf, sizeof buf, &len), 0);
	T_EQ(len, 2);
	T_CHECK(memcmp(buf, "v1", 2) == 0);
	T_EQ(shmp_dict_len(d2), 1);

	T_EQ(shmp_registry_count(r), 13);

	/* CREATE_ONLY on every taken name: EEXIST; GET_ONLY on a missing
	 * one: ENOENT, for every getter; neither creates anything. */
	static const char *names[] = { NULL, "val", "arr", "lk", "rlk", "sem", "bsem",
				       "cond", "ev", "bar", "q", "jq", "dict" };
	for (int t = FIRST_TYPE; t <= LAST_TYPE; t++) {
		T_FAILS(get_t(r, t, names[t], SHMP_REG_CREATE_ONLY), EEXIST);
		T_FAILS(get_t(r, t, "missing", SHMP_REG_GET_ONLY), ENOENT);
		void *h = get_t(r, t, names[t], SHMP_REG_GET_ONLY);
		T_CHECK(h);
		put_t(t, h);
	}
	T_EQ(shmp_registry_count(r), 13);
	struct shmp_object_info in;
	T_EQ(shmp_registry_lookup(r, "missing", &in), -ENOENT);
	/* CREATE_ONLY on a free name creates. */
	for (int t = FIRST_TYPE; t <= LAST_TYPE; t++) {
		char nm[16];
		snprintf(nm, sizeof nm, "new%d", t);
		void *h = get_t(r, t, nm, SHMP_REG_CREATE_ONLY);
		T_CHECK(h);
		T_EQ(look(r, nm).type, t);
		put_t(t, h);
		T_EQ(shmp_registry_remove(r, nm), 0);
	}

	/* Releasing every handle leaves the objects: a new get finds the
	 * state they were left in. */
	shmp_value_destroy(v1);
	shmp_value_destroy(v2);
	shmp_array_destroy(a1);
	shmp_array_destroy(a2);
	shmp_array_destroy(a3);
	shmp_lock_destroy(l1);
	shmp_lock_destroy(l2);
	shmp_lock_destroy(rl1);
	shmp_lock_destroy(rl2);
	shmp_sem_destroy(s1);
	shmp_sem_destroy(s2);
	shmp_sem_destroy(b1);
	shmp_sem_destroy(b2);
	shmp_cond_destroy(c1);
	shmp_cond_destroy(c2);
	shmp_event_destroy(e1);
	shmp_event_destroy(e2);
	shmp_barrier_destroy(br1);
	shmp_barrier_destroy(br2);
	shmp_queue_destroy(q1);
	shmp_queue_destroy(q2);
	shmp_queue_destroy(j1);
	shmp_queue_destroy(j2);
	shmp_dict_destroy(d1);
	shmp_dict_destroy(d2);
	T_EQ(shmp_registry_count(r), 13);

	v1 = T_OK(shmp_registry_value(r, "val", 'q', NULL, SHMP_REG_GET_ONLY));
	T_EQ(shmp_value_get_i64(v1, &x), 0);
	T_EQ(x, 42);
	shmp_value_destroy(v1);
	a1 = T_OK(shmp_registry_array(r, "arr", 'i', 5, NULL, SHMP_REG_GET_ONLY));
	T_EQ(shmp_array_get_i64(a1, 4, &x), 0);
	T_EQ(x, -7);
	shmp_array_destroy(a1);
	s1 = T_OK(shmp_registry_sem(r, "sem", 0, SHMP_REG_GET_ONLY));
	T_EQ(shmp_sem_value(s1), 3);
	shmp_sem_destroy(s1);
	d1 = T_OK(shmp_registry_dict(r, "dict", NULL, SHMP_REG_GET_ONLY));
	T_EQ(shmp_dict_len(d1), 1);
	shmp_dict_destroy(d1);
	shmp_registry_destroy(r);
}

/* ---- wrong types -------------------------------------------------------- */

static void test_wrong_types(void)
{
	shmp_registry_t *r = reg_new("wt", 4 << 20, 0);
	char nm[16];
	for (int t = FIRST_TYPE; t <= LAST_TYPE; t++) {
		snprintf(nm, sizeof nm, "w%d", t);
		void *h = get_t(r, t, nm, SHMP_REG_CREATE_ONLY);
		T_CHECK(h);
		put_t(t, h);
	}
	for (int t = FIRST_TYPE; t <= LAST_TYPE; t++) {
		snprintf(nm, sizeof nm, "w%d", t);
		for (int u = FIRST_TYPE; u <= LAST_TYPE; u++) {
			if (u == t)
				continue;
			T_FAILS(get_t(r, u, nm, 0), ETYPE_POS);
			T_FAILS(get_t(r, u, nm, SHMP_REG_GET_ONLY), ETYPE_POS);
			/* taken "by any type" */
			T_FAILS(get_t(r, u, nm, SHMP_REG_CREATE_ONLY), EEXIST);
		}
		T_EQ(look(r, nm).type, t);
	}
	/* errno holds SHMP_EBASE + 7, as documented. */
	errno = 0;
	T_CHECK(!shmp_registry_lock(r, "w1", 0));
	T_EQ(errno, SHMP_EBASE + 7);

	/* Another typecode is another type: Value "w1" is 'q'. */
	T_FAILS(shmp_registry_value(r, "w1", 'i', NULL, 0), ETYPE_POS);
	T_FAILS(shmp_registry_value(r, "w1", 'Q', NULL, 0), ETYPE_POS); /* same size */
	T_FAILS(shmp_registry_value(r, "w1", 'd', NULL, SHMP_REG_GET_ONLY), ETYPE_POS);
	/* Array "w2" is 'i'; typecode 0 accepts any on get. */
	T_FAILS(shmp_registry_array(r, "w2", 'I', 4, NULL, 0), ETYPE_POS);
	T_FAILS(shmp_registry_array(r, "w2", 'q', 4, NULL, SHMP_REG_GET_ONLY), ETYPE_POS);
	shmp_array_t *a = T_OK(shmp_registry_array(r, "w2", 0, 0, NULL, 0));
	T_EQ(shmp_array_typecode(a), 'i');
	T_EQ(shmp_array_len(a), 4);
	shmp_array_destroy(a);
	/* Nothing was created or replaced by the failures. */
	T_EQ(shmp_registry_count(r), LAST_TYPE - FIRST_TYPE + 1);
	T_EQ(look(r, "w1").typecode, 'q');
	T_EQ(look(r, "w2").typecode, 'i');
	shmp_registry_destroy(r);
}

/* ---- names -------------------------------------------------------------- */

static void test_names(void)
{
	shmp_registry_t *r = reg_new("nm", 4 << 20, 0);
	static const char nul_only[2] = { 0, 0 };
	const char *bad[] = { "", nul_only, "/", "a/b", "a b", " ", "x ", "a\tb", "a\nb",
			      "\xc3\xa9", "a*", "a#b", "\x01", "a\\b", "a,b", "(x)", "a\x7f" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		for (int t = FIRST_TYPE; t <= LAST_TYPE; t++) {
			T_FAILS(get_t(r, t, bad[i], 0), EINVAL);
			T_FAILS(get_t(r, t, bad[i], SHMP_REG_GET_ONLY), EINVAL);
			T_FAILS(get_t(r, t, bad[i], SHMP_REG_CREATE_ONLY), EINVAL);
		}
		T_EQ(shmp_registry_remove(r, bad[i]), -EINVAL);
		T_EQ(shmp_namespace_set_i64(r, bad[i], 1), -EINVAL);
		struct shmp_object_info in;
		T_CHECK(shmp_registry_lookup(r, bad[i], &in) < 0);
	}
	T_EQ(shmp_registry_count(r), 0);

	/* Every allowed character, and short odd-looking names. */
	const char *good[] = { "a:b.c-d_E9", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz",
			       "0123456789", "A", "0", "-", ":", "_", ".x", "x.", "a..b", "::" };
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		shmp_event_t *e = shmp_registry_event(r, good[i], SHMP_REG_CREATE_ONLY);
		if (!e) {
			fprintf(stderr, "name \"%s\" refused: %s\n", good[i], shmp_strerror(-errno));
			exit(1);
		}
		T_EQ(look(r, good[i]).type, SHMP_TYPE_EVENT);
		shmp_event_destroy(e);
	}
	T_EQ(shmp_registry_count(r), (int)(sizeof good / sizeof good[0]));

	/* 63 bytes: fine, and kept whole; 64 bytes and more: ENAMETOOLONG. */
	char n63[64], n64[65], n300[301];
	memset(n63, 'x', 63);
	n63[63] = 0;
	n63[0] = 'A';
	n63[62] = 'Z';
	memset(n64, 'y', 64);
	n64[64] = 0;
	memset(n300, 'z', 300);
	n300[300] = 0;
	T_EQ(strlen(n63), SHMP_REGISTRY_NAME_MAX);
	shmp_value_t *v = T_OK(shmp_registry_value(r, n63, 'q', NULL, 0));
	struct shmp_object_info in = look(r, n63);
	T_EQ(strlen(in.name), 63);
	shmp_value_t *v2 = T_OK(shmp_registry_value(r, n63, 'q', NULL, SHMP_REG_GET_ONLY));
	T_EQ(shmp_value_set_i64(v, 63), 0);
	int64_t x = 0;
	T_EQ(shmp_value_get_i64(v2, &x), 0);
	T_EQ(x, 63);
	shmp_value_destroy(v2);
	shmp_value_destroy(v);
	/* The 64th byte matters: a 63-byte prefix of a 64-byte name is not it. */
	for (int t = FIRST_TYPE; t <= LAST_TYPE; t++) {
		T_FAILS(get_t(r, t, n64, 0), ENAMETOOLONG);
		T_FAILS(get_t(r, t, n64, SHMP_REG_GET_ONLY), ENAMETOOLONG);
		T_FAILS(get_t(r, t, n300, 0), ENAMETOOLONG);
	}
	char n63b[65];
	memcpy(n63b, n63, 64); /* n63 plus one more byte */
	n63b[63] = 'x';
	n63b[64] = 0;
	T_FAILS(shmp_registry_value(r, n63b, 'q', NULL, SHMP_REG_GET_ONLY), ENAMETOOLONG);
	T_EQ(shmp_namespace_set_i64(r, n64, 1), -ENAMETOOLONG);
	int rr = shmp_registry_remove(r, n64);
	T_CHECK(rr == -ENAMETOOLONG || rr == -EINVAL);
	T_EQ(shmp_registry_remove(r, n63), 0);
	shmp_registry_destroy(r);
}

/* ---- flags, bad creation parameters -------------------------------------- */

static void test_flags_and_params(void)
{
	shmp_registry_t *r = reg_new("fp", 4 << 20, 0);
	struct shmp_object_info in;
	shmp_event_t *e = T_OK(shmp_registry_event(r, "e", 0));

	/* Both CREATE_ONLY and GET_ONLY: nothing can satisfy both. */
	unsigned both = SHMP_REG_CREATE_ONLY | SHMP_REG_GET_ONLY;
	errno = 0;
	T_CHECK(!shmp_registry_event(r, "e", both));
	T_CHECK(errno == EINVAL || errno == EEXIST);
	errno = 0;
	T_CHECK(!shmp_registry_event(r, "nope", both));
	T_CHECK(errno == EINVAL || errno == ENOENT);
	T_EQ(shmp_registry_lookup(r, "nope", &in), -ENOENT);

	/* Creation parameters the type refuses: EINVAL, and the name stays
	 * free (no half-made entry) and usable right after. */
	T_FAILS(shmp_registry_value(r, "p1", 'z', NULL, 0), EINVAL);
	T_FAILS(shmp_registry_array(r, "p2", 'i', 0, NULL, 0), EINVAL);
	T_FAILS(shmp_registry_array(r, "p3", 'z', 4, NULL, 0), EINVAL);
	T_FAILS(shmp_registry_barrier(r, "p4", 0, 0), EINVAL);
	T_FAILS(shmp_registry_barrier(r, "p5", SHMP_BARRIER_PARTIES_MAX + 1, 0), EINVAL);
	T_FAILS(shmp_registry_sem(r, "p6", SHMP_SEM_VALUE_MAX + 1u, 0), EINVAL);
	T_FAILS(shmp_registry_bounded_sem(r, "p7", SHMP_SEM_VALUE_MAX + 1u, 0), EINVAL);
	struct shmp_dict_opts dbad = SHMP_OPTS(shmp_dict_opts, .capacity = (1u << 24) + 1);
	T_FAILS(shmp_registry_dict(r, "p8", &dbad, 0), EINVAL);
	T_EQ(shmp_registry_count(r), 1);
	for (int i = 1; i <= 8; i++) {
		char nm[8];
		snprintf(nm, sizeof nm, "p%d", i);
		T_EQ(shmp_registry_lookup(r, nm, &in), -ENOENT);
		shmp_lock_t *l = T_OK(shmp_registry_lock(r, nm, SHMP_REG_CREATE_ONLY));
		shmp_lock_destroy(l);
		T_EQ(shmp_registry_remove(r, nm), 0);
	}
	shmp_event_destroy(e);
	shmp_registry_destroy(r);
}

/* ---- NULL arguments ------------------------------------------------------ */

static void test_null_args(void)
{
	shmp_registry_t *r = reg_new("na", 1 << 20, 0);
	struct shmp_object_info in;
	int64_t i64;
	double f64;
	for (int t = FIRST_TYPE; t <= LAST_TYPE; t++) {
		T_FAILS(get_t(NULL, t, "x", 0), EINVAL);
		T_FAILS(get_t(r, t, NULL, 0), EINVAL);
		T_FAILS(get_t(r, t, NULL, SHMP_REG_GET_ONLY), EINVAL);
	}
	T_EQ(shmp_registry_remove(NULL, "x"), -EINVAL);
	T_EQ(shmp_registry_remove(r, NULL), -EINVAL);
	T_EQ(shmp_registry_count(NULL), -EINVAL);
	T_EQ(shmp_registry_info(NULL, 0, &in), -EINVAL);
	T_EQ(shmp_registry_info(r, 0, NULL), -EINVAL);
	T_EQ(shmp_registry_lookup(NULL, "x", &in), -EINVAL);
	T_EQ(shmp_registry_lookup(r, NULL, &in), -EINVAL);
	T_EQ(shmp_registry_lookup(r, "x", NULL), -EINVAL);
	T_EQ(shmp_namespace_set_i64(NULL, "x", 1), -EINVAL);
	T_EQ(shmp_namespace_set_i64(r, NULL, 1), -EINVAL);
	T_EQ(shmp_namespace_set_f64(r, NULL, 1), -EINVAL);
	T_EQ(shmp_namespace_get_i64(r, NULL, &i64), -EINVAL);
	T_EQ(shmp_namespace_get_f64(NULL, "x", &f64), -EINVAL);
	T_EQ(shmp_namespace_set_i64(r, "x", 1), 0);
	T_EQ(shmp_namespace_get_i64(r, "x", NULL), -EINVAL);
	T_EQ(shmp_namespace_get_f64(r, "x", NULL), -EINVAL);
	T_FAILS(shmp_registry_create(NULL, NULL), EINVAL);
	T_FAILS(shmp_registry_attach(NULL, NULL), EINVAL);
	T_FAILS(shmp_registry_open(NULL, NULL), EINVAL);
	T_FAILS(shmp_registry_of(NULL), EINVAL);
	T_CHECK(shmp_registry_segment(NULL) == NULL);
	struct shmp_segment_info si;
	T_EQ(shmp_segment_inspect(NULL, &si), -EINVAL);
	T_EQ(shmp_segment_inspect(made[nmade - 1], NULL), -EINVAL);
	shmp_registry_detach(NULL);
	shmp_registry_destroy(NULL);
	T_EQ(shmp_registry_count(r), 1);
	shmp_registry_destroy(r);
}

/* ---- capacity: ENOSPC, and ENOMEM ---------------------------------------- */

static void test_capacity(void)
{
	shmp_registry_t *r = reg_new("cap", 1 << 20, 4);
	struct shmp_object_info in;
	/* Exactly 4 slots. */
	for (unsigned i = 0; i < 4; i++)
		T_EQ(shmp_registry_info(r, i, &in), 0);
	T_EQ(shmp_registry_info(r, 4, &in), -ERANGE);

	void *h[4];
	static const int types[4] = { SHMP_TYPE_VALUE, SHMP_TYPE_LOCK, SHMP_TYPE_QUEUE, SHMP_TYPE_EVENT };
	static const char *names[4] = { "c0", "c1", "c2", "c3" };
	for (int i = 0; i < 4; i++)
		h[i] = T_OK(get_t(r, types[i], names[i], 0));
	T_EQ(shmp_registry_count(r), 4);
	int used = 0;
	for (unsigned i = 0; i < 4; i++) {
		int k = shmp_registry_info(r, i, &in);
		T_CHECK(k == 0 || k == 1);
		used += k;
	}
	T_EQ(used, 4);

	/* Full: every new name is ENOSPC, every old one still gets. */
	for (int t = FIRST_TYPE; t <= LAST_TYPE; t++) {
		T_FAILS(get_t(r, t, "c4", 0), ENOSPC);
		T_FAILS(get_t(r, t, "c4", SHMP_REG_CREATE_ONLY), ENOSPC);
		T_FAILS(get_t(r, t, "c4", SHMP_REG_GET_ONLY), ENOENT);
	}
	T_EQ(shmp_namespace_set_i64(r, "attr", 1), -ENOSPC);
	for (int i = 0; i < 4; i++) {
		void *g = T_OK(get_t(r, types[i], names[i], SHMP_REG_GET_ONLY));
		put_t(types[i], g);
	}
	T_EQ(shmp_registry_count(r), 4);

	/* Removing a name whose handle is still open: the name can be
	 * reused right away, even in a full directory. */
	T_EQ(shmp_registry_remove(r, "c1"), 0);
	T_EQ(shmp_registry_count(r), 3);
	shmp_event_t *e = T_OK(shmp_registry_event(r, "c1", 0));
	T_EQ(shmp_registry_count(r), 4);
	T_EQ(look(r, "c1").type, SHMP_TYPE_EVENT);
	T_FAILS(shmp_registry_event(r, "c5", 0), ENOSPC);
	/* The removed lock still works through its old handle. */
	T_EQ(shmp_lock_acquire(h[1], 0), 0);
	T_EQ(shmp_lock_release(h[1]), 0);
	shmp_event_destroy(e);
	for (int i = 0; i < 4; i++)
		put_t(types[i], h[i]);
	shmp_registry_destroy(r);

	/* A segment too small for the object: ENOMEM, no name left behind,
	 * and smaller objects still fit afterwards. */
	r = reg_new("mem", SHMP_SEGMENT_MIN_SIZE, 16);
	T_FAILS(shmp_registry_array(r, "big", 'q', 1u << 20, NULL, 0), SHMP_ESEGFULL);
	T_FAILS(shmp_registry_queue(r, "bigq", 0, 0), SHMP_ESEGFULL);
	T_EQ(shmp_registry_count(r), 0);
	T_EQ(shmp_registry_lookup(r, "big", &in), -ENOENT);
	T_EQ(shmp_registry_lookup(r, "bigq", &in), -ENOENT);
	shmp_array_t *a = T_OK(shmp_registry_array(r, "big", 'q', 16, NULL, 0));
	T_EQ(shmp_array_len(a), 16);
	shmp_array_destroy(a);
	T_EQ(shmp_registry_count(r), 1);
	shmp_registry_destroy(r);
}

/* ---- remove --------------------------------------------------------------- */

static uint64_t live_blocks(shmp_registry_t *r)
{
	return t_live_blocks(shmp_registry_segment(r));
}

static int child_get_hold(void *arg)
{
	shmp_registry_t *r = arg;
	/* A handle this process will never release: it gets killed. */
	shmp_value_t *v = shmp_registry_value(r, "dead", 'q', NULL, SHMP_REG_GET_ONLY);
	if (!v)
		return 2;
	shmp_value_store(v, 5);
	return t_until_orphaned(main_pid);
}

static void test_remove(void)
{
	shmp_registry_t *r = reg_new("rm", 4 << 20, 0);
	struct shmp_object_info in;
	int64_t x = 0;

	/* One full cycle first: whatever the registry allocates once is
	 * allocated before the counts below. */
	shmp_value_destroy(T_OK(shmp_registry_value(r, "warm", 'q', NULL, 0)));
	T_EQ(shmp_registry_remove(r, "warm"), 0);

	uint64_t b0 = live_blocks(r);
	int64_t init = 11;
	shmp_value_t *h1 = T_OK(shmp_registry_value(r, "tmp", 'q', &init, 0));
	shmp_value_t *h2 = T_OK(shmp_registry_value(r, "tmp", 'q', NULL, 0));
	uint64_t b1 = live_blocks(r);
	T_CHECK(b1 > b0);
	T_EQ(look(r, "tmp").handles, 2);
	T_EQ(shmp_registry_count(r), 1);

	/* The name goes at once. */
	T_EQ(shmp_registry_remove(r, "tmp"), 0);
	T_EQ(shmp_registry_count(r), 0);
	T_EQ(shmp_registry_lookup(r, "tmp", &in), -ENOENT);
	T_FAILS(shmp_registry_value(r, "tmp", 'q', NULL, SHMP_REG_GET_ONLY), ENOENT);
	T_EQ(shmp_registry_remove(r, "tmp"), -ENOENT);
	/* The object stays while handles are open, and they work. */
	T_EQ(live_blocks(r), b1);
	T_EQ(shmp_value_get_i64(h1, &x), 0);
	T_EQ(x, 11);
	T_EQ(shmp_value_set_i64(h2, 12), 0);
	T_EQ(shmp_value_get_i64(h1, &x), 0);
	T_EQ(x, 12);

	/* The name is reusable at once, by another type, and separate. */
	shmp_lock_t *l = T_OK(shmp_registry_lock(r, "tmp", SHMP_REG_CREATE_ONLY));
	T_EQ(look(r, "tmp").type, SHMP_TYPE_LOCK);
	T_EQ(shmp_registry_count(r), 1);
	T_EQ(shmp_lock_acquire(l, 0), 0);
	T_EQ(shmp_lock_release(l), 0);
	shmp_lock_destroy(l);
	T_EQ(shmp_registry_remove(r, "tmp"), 0);
	/* and by the same type: a fresh Value, not the old one */
	shmp_value_t *h3 = T_OK(shmp_registry_value(r, "tmp", 'q', NULL, SHMP_REG_CREATE_ONLY));
	T_EQ(shmp_value_get_i64(h3, &x), 0);
	T_EQ(x, 0);
	T_EQ(shmp_value_set_i64(h3, 99), 0);
	T_EQ(shmp_value_get_i64(h1, &x), 0);
	T_EQ(x, 12);
	T_CHECK(shmp_value_ptr(h3) != shmp_value_ptr(h1));
	shmp_value_destroy(h3);
	T_EQ(shmp_registry_remove(r, "tmp"), 0);

	/* The memory goes with the last handle, not before. */
	T_EQ(live_blocks(r), b1);
	shmp_value_destroy(h1);
	T_EQ(live_blocks(r), b1);
	shmp_value_destroy(h2);
	T_EQ(live_blocks(r), b0);

	/* No handle open: remove frees at once. Every type. */
	for (int t = FIRST_TYPE; t <= LAST_TYPE; t++) {
		void *h = T_OK(get_t(r, t, "gone", 0));
		T_CHECK(live_blocks(r) > b0);
		put_t(t, h);
		T_EQ(shmp_registry_remove(r, "gone"), 0);
		if (live_blocks(r) != b0) {
			fprintf(stderr, "type %s: %llu blocks after remove, %llu before create\n",
				shmp_type_name(t), (unsigned long long)live_blocks(r),
				(unsigned long long)b0);
			exit(1);
		}
	}
	/* Removing with a handle open, then releasing it: every type. */
	for (int t = FIRST_TYPE; t <= LAST_TYPE; t++) {
		void *h = T_OK(get_t(r, t, "gone", 0));
		uint64_t bt = live_blocks(r);
		T_EQ(shmp_registry_remove(r, "gone"), 0);
		T_EQ(live_blocks(r), bt);
		put_t(t, h);
		T_EQ(live_blocks(r), b0);
	}

	/* A handle held by a process that died is never released: the
	 * object's memory stays after remove; lookup counted it. */
	shmp_value_t *dv = T_OK(shmp_registry_value(r, "dead", 'q', NULL, 0));
	shmp_value_destroy(dv);
	pid_t c = t_spawn(child_get_hold, r);
	/* the child stores 5 once it holds its handle */
	dv = T_OK(shmp_registry_value(r, "dead", 'q', NULL, SHMP_REG_GET_ONLY));
	double until = t_now() + 10;
	while (shmp_value_load(dv, &x) == 0 && x != 5) {
		T_CHECK(t_now() < until);
		t_sleep_ms(1);
	}
	t_kill_reap(c, 10);
	T_EQ(look(r, "dead").handles, 2); /* ours and the dead child's */
	shmp_value_destroy(dv);
	T_EQ(look(r, "dead").handles, 1);
	uint64_t bd = live_blocks(r);
	T_EQ(shmp_registry_remove(r, "dead"), 0);
	T_EQ(live_blocks(r), bd);
	T_EQ(shmp_registry_count(r), 0);

	/* Names whose objects dead processes still hold can be removed and
	 * reused again and again, whatever the directory's capacity (their
	 * memory stays, the name does not). */
	shmp_registry_t *r2 = reg_new("rm2", 4 << 20, 2);
	for (int round = 0; round < 5; round++) {
		shmp_value_t *hv = shmp_registry_value(r2, "dead", 'q', NULL, 0);
		if (!hv) {
			fprintf(stderr, "round %d: create \"dead\" again: %s\n", round, shmp_strerror(-errno));
			exit(1);
		}
		c = t_spawn(child_get_hold, r2);
		until = t_now() + 10;
		while (shmp_value_load(hv, &x) == 0 && x != 5) {
			T_CHECK(t_now() < until);
			t_sleep_ms(1);
		}
		shmp_value_destroy(hv);
		t_kill_reap(c, 10);
		T_EQ(look(r2, "dead").handles, 1);
		T_EQ(shmp_registry_remove(r2, "dead"), 0);
		T_EQ(shmp_registry_count(r2), 0);
	}
	shmp_registry_destroy(r2);

	/* Bad names. */
	T_EQ(shmp_registry_remove(r, "missing"), -ENOENT);
	T_EQ(shmp_registry_remove(r, ""), -EINVAL);
	T_EQ(shmp_registry_remove(r, "a/b"), -EINVAL);
	shmp_registry_destroy(r);
}

/* ---- info and lookup ------------------------------------------------------ */

struct holder {
	shmp_registry_t *r;
	int fd;        /* signal when ready */
	int what;
};

static int child_hold(void *arg)
{
	struct holder *h = arg;
	shmp_registry_t *r = h->r;
	switch (h->what) {
	case 0: { /* hold Lock "lk" until killed */
		shmp_lock_t *l = shmp_registry_lock(r, "lk", SHMP_REG_GET_ONLY);
		if (!l || shmp_lock_acquire(l, 5) != 0)
			return 2;
		t_signal(h->fd);
		return t_until_orphaned(main_pid);
	}
	case 1: { /* wait on Condition "cond" until notified */
		shmp_cond_t *c = shmp_registry_cond(r, "cond", SHMP_REG_GET_ONLY);
		if (!c || shmp_lock_acquire(shmp_cond_lock(c), 5) != 0)
			return 2;
		t_signal(h->fd);
		int rr = shmp_cond_wait(c, 10);
		shmp_lock_release(shmp_cond_lock(c));
		shmp_cond_destroy(c);
		return rr == 0 ? 0 : 3;
	}
	case 2: { /* wait at Barrier "bar" until it breaks */
		shmp_barrier_t *b = shmp_registry_barrier(r, "bar", 3, SHMP_REG_GET_ONLY);
		if (!b)
			return 2;
		t_signal(h->fd);
		int rr = shmp_barrier_wait(b, 10);
		shmp_barrier_destroy(b);
		return rr == -SHMP_EBROKEN ? 0 : 3;
	}
	case 3: { /* wait for Event "ev" */
		shmp_event_t *e = shmp_registry_event(r, "ev", SHMP_REG_GET_ONLY);
		if (!e)
			return 2;
		t_signal(h->fd);
		int rr = shmp_event_wait(e, 10);
		shmp_event_destroy(e);
		return rr == 0 ? 0 : 3;
	}
	case 4: { /* take Semaphore "sem0" */
		shmp_sem_t *s = shmp_registry_sem(r, "sem0", 0, SHMP_REG_GET_ONLY);
		if (!s)
			return 2;
		t_signal(h->fd);
		int rr = shmp_sem_acquire(s, 10);
		shmp_sem_destroy(s);
		return rr == 0 ? 0 : 3;
	}
	}
	return 4;
}

/* Poll lookup until `field` of name is want (10 s at most). */
#define WAIT_INFO(r, name, field, want)                                            \
	do {                                                                       \
		double t_until_ = t_now() + 10;                                    \
		while (look(r, name).field != (want)) {                            \
			T_CHECK(t_now() < t_until_);                               \
			t_sleep_ms(1);                                             \
		}                                                                  \
	} while (0)

static pid_t start_holder(shmp_registry_t *r, int what)
{
	int p[2];
	T_EQ(pipe(p), 0);
	struct holder h = { r, p[1], what };
	pid_t c = t_spawn(child_hold, &h);
	close(p[1]);
	T_EQ(t_await(p[0], 10), 1);
	close(p[0]);
	return c;
}

static void test_info(void)
{
	shmp_registry_t *r = reg_new("info", 8 << 20, 64);
	pid_t me = getpid();
	uint64_t size = shmp_segment_size(shmp_registry_segment(r));

	int64_t qv = 0x0102030405060708ll;
	shmp_value_t *v = T_OK(shmp_registry_value(r, "v", 'q', &qv, 0));
	double dv = 2.5;
	shmp_value_t *vd = T_OK(shmp_registry_value(r, "vd", 'd', &dv, 0));
	char cv = 'Z';
	shmp_value_t *vc = T_OK(shmp_registry_value(r, "vc", 'c', &cv, 0));
	double ad[20];
	for (int i = 0; i < 20; i++)
		ad[i] = i * 1.5;
	shmp_array_t *a = T_OK(shmp_registry_array(r, "ad", 'd', 20, ad, 0));
	int8_t ab[3] = { -1, 2, -3 };
	shmp_array_t *a3 = T_OK(shmp_registry_array(r, "ab", 'b', 3, ab, 0));
	shmp_lock_t *l = T_OK(shmp_registry_lock(r, "lk", 0));
	shmp_lock_t *rl = T_OK(shmp_registry_rlock(r, "rlk", 0));
	shmp_sem_t *s = T_OK(shmp_registry_sem(r, "sem", 3, 0));
	shmp_sem_t *bs = T_OK(shmp_registry_bounded_sem(r, "bsem", 2, 0));
	shmp_cond_t *c = T_OK(shmp_registry_cond(r, "cond", 0));
	shmp_event_t *e = T_OK(shmp_registry_event(r, "ev", 0));
	shmp_barrier_t *b = T_OK(shmp_registry_barrier(r, "bar", 3, 0));
	shmp_queue_t *q = T_OK(shmp_registry_queue(r, "q", 16, 0));
	shmp_queue_t *jq = T_OK(shmp_registry_joinable_queue(r, "jq", 8, 0));
	struct shmp_dict_opts dop = SHMP_OPTS(shmp_dict_opts, .capacity = 100);
	shmp_dict_t *d = T_OK(shmp_registry_dict(r, "d", &dop, 0));
	static const struct {
		const char *name;
		int type;
	} all[] = {
		{ "v", SHMP_TYPE_VALUE }, { "vd", SHMP_TYPE_VALUE }, { "vc", SHMP_TYPE_VALUE },
		{ "ad", SHMP_TYPE_ARRAY }, { "ab", SHMP_TYPE_ARRAY }, { "lk", SHMP_TYPE_LOCK },
		{ "rlk", SHMP_TYPE_RLOCK }, { "sem", SHMP_TYPE_SEM },
		{ "bsem", SHMP_TYPE_BOUNDED_SEM }, { "cond", SHMP_TYPE_COND },
		{ "ev", SHMP_TYPE_EVENT }, { "bar", SHMP_TYPE_BARRIER }, { "q", SHMP_TYPE_QUEUE },
		{ "jq", SHMP_TYPE_JOINABLE_QUEUE }, { "d", SHMP_TYPE_DICT },
	};
	enum { NALL = sizeof all / sizeof all[0] };
	T_EQ(shmp_registry_count(r), NALL);

	/* Common fields. */
	for (int i = 0; i < NALL; i++) {
		struct shmp_object_info in = look(r, all[i].name);
		T_EQ(in.type, all[i].type);
		T_EQ(in.creator_pid, me);
		T_EQ(in.handles, 1);
		T_CHECK(in.offset > 0 && in.offset < size);
	}
	/* The directory by slot: each name exactly once, as lookup says. */
	int seen[NALL] = { 0 };
	int used = 0;
	unsigned idx;
	for (idx = 0;; idx++) {
		struct shmp_object_info in;
		int k = shmp_registry_info(r, idx, &in);
		if (k == -ERANGE)
			break;
		T_CHECK(k == 0 || k == 1);
		if (!k)
			continue;
		used++;
		int found = 0;
		for (int i = 0; i < NALL; i++) {
			if (strcmp(in.name, all[i].name) == 0) {
				seen[i]++;
				found = 1;
				struct shmp_object_info li = look(r, in.name);
				T_EQ(in.type, li.type);
				T_EQ(in.offset, li.offset);
			}
		}
		T_CHECK(found);
	}
	T_EQ(idx, 64);
	T_EQ(used, NALL);
	for (int i = 0; i < NALL; i++)
		T_EQ(seen[i], 1);

	/* Value previews: the raw item bytes. */
	struct shmp_object_info in = look(r, "v");
	T_EQ(in.typecode, 'q');
	T_EQ(in.length, 1);
	T_EQ(in.preview_bytes, 8);
	T_CHECK(memcmp(in.preview, &qv, 8) == 0);
	T_EQ(in.locked, 0);
	T_EQ(shmp_value_set_i64(v, -5), 0);
	in = look(r, "v");
	qv = -5;
	T_CHECK(memcmp(in.preview, &qv, 8) == 0);
	/* The lock of a Value: held by us. */
	T_EQ(shmp_lock_acquire(shmp_value_lock(v), 0), 0);
	in = look(r, "v");
	T_EQ(in.locked, 1);
	T_EQ(in.owner_pid, me);
	T_EQ(shmp_lock_release(shmp_value_lock(v)), 0);
	T_EQ(look(r, "v").locked, 0);
	in = look(r, "vd");
	T_EQ(in.typecode, 'd');
	T_EQ(in.preview_bytes, 8);
	T_CHECK(memcmp(in.preview, &dv, 8) == 0);
	in = look(r, "vc");
	T_EQ(in.typecode, 'c');
	T_EQ(in.preview_bytes, 1);
	T_EQ(in.preview[0], 'Z');
	/* Array previews: the first items, up to 64 bytes. */
	in = look(r, "ad");
	T_EQ(in.typecode, 'd');
	T_EQ(in.length, 20);
	T_EQ(in.preview_bytes, 64);
	T_CHECK(memcmp(in.preview, ad, 64) == 0);
	in = look(r, "ab");
	T_EQ(in.typecode, 'b');
	T_EQ(in.length, 3);
	T_EQ(in.preview_bytes, 3);
	T_CHECK(memcmp(in.preview, ab, 3) == 0);

	/* Lock: free; held by a child; the child killed while holding it. */
	in = look(r, "lk");
	T_EQ(in.locked, 0);
	T_EQ(in.owner_pid, 0);
	pid_t ch = start_holder(r, 0);
	in = look(r, "lk");
	T_EQ(in.locked, 1);
	T_EQ(in.owner_pid, ch);
	T_EQ(in.owner_tid, ch);
	T_EQ(in.owner_dead, 0);
	T_EQ(in.handles, 2);
	T_EQ(shmp_lock_acquire(l, 0), -ETIMEDOUT);
	t_kill_reap(ch, 10);
	in = look(r, "lk");
	T_EQ(in.locked, 1);
	T_EQ(in.owner_tid, ch);
	T_CHECK(in.owner_pid == ch || in.owner_pid == 0); /* gone from /proc: may be unknown */
	T_EQ(in.owner_dead, 1);
	T_EQ(in.handles, 2); /* the dead child's handle is never released */
	T_EQ(shmp_lock_acquire(l, 5), -EOWNERDEAD);
	T_EQ(shmp_lock_consistent(l), 0);
	in = look(r, "lk");
	T_EQ(in.owner_pid, me);
	T_EQ(in.owner_dead, 0);
	T_EQ(shmp_lock_release(l), 0);
	T_EQ(look(r, "lk").locked, 0);

	/* RLock depth. */
	T_EQ(shmp_lock_acquire(rl, 0), 0);
	T_EQ(shmp_lock_acquire(rl, 0), 0);
	in = look(r, "rlk");
	T_EQ(in.locked, 1);
	T_EQ(in.owner_pid, me);
	T_EQ(in.lock_depth, 2);
	T_EQ(shmp_lock_release(rl), 0);
	T_EQ(look(r, "rlk").lock_depth, 1);
	T_EQ(shmp_lock_release(rl), 0);
	T_EQ(look(r, "rlk").locked, 0);

	/* Semaphores. */
	T_EQ(look(r, "sem").value, 3);
	T_EQ(shmp_sem_acquire(s, 0), 0);
	T_EQ(look(r, "sem").value, 2);
	in = look(r, "bsem");
	T_EQ(in.value, 2);
	T_EQ(in.max, 2);
	T_EQ(shmp_sem_acquire(bs, 0), 0);
	T_EQ(look(r, "bsem").value, 1);

	/* A sleeper on a Semaphore. */
	shmp_sem_t *s0 = T_OK(shmp_registry_sem(r, "sem0", 0, 0));
	in = look(r, "sem0");
	T_EQ(in.value, 0);
	T_EQ(in.waiters, 0);
	ch = start_holder(r, 4);
	WAIT_INFO(r, "sem0", waiters, 1);
	T_EQ(shmp_sem_release(s0), 0);
	t_wait_ok(ch, 10);
	in = look(r, "sem0");
	T_EQ(in.value, 0);
	T_EQ(in.waiters, 0);
	shmp_sem_destroy(s0);
	T_EQ(shmp_registry_remove(r, "sem0"), 0);

	/* Event, and a sleeper on it. */
	in = look(r, "ev");
	T_EQ(in.is_set, 0);
	T_EQ(in.waiters, 0);
	ch = start_holder(r, 3);
	WAIT_INFO(r, "ev", waiters, 1);
	T_EQ(shmp_event_set(e), 0);
	t_wait_ok(ch, 10);
	in = look(r, "ev");
	T_EQ(in.is_set, 1);
	T_EQ(in.waiters, 0);

	/* Condition: a child waiting. */
	T_EQ(look(r, "cond").waiters, 0);
	ch = start_holder(r, 1);
	WAIT_INFO(r, "cond", waiters, 1);
	T_EQ(shmp_lock_acquire(shmp_cond_lock(c), 5), 0);
	T_EQ(shmp_cond_notify_all(c), 1);
	T_EQ(shmp_lock_release(shmp_cond_lock(c)), 0);
	t_wait_ok(ch, 10);
	T_EQ(look(r, "cond").waiters, 0);

	/* Barrier: parties, one waiting, broken. */
	in = look(r, "bar");
	T_EQ(in.parties, 3);
	T_EQ(in.waiters, 0); /* waiting parties */
	T_EQ(in.broken, 0);
	ch = start_holder(r, 2);
	t_wait_n_waiting(b, 1);
	T_EQ(look(r, "bar").waiters, 1);
	T_EQ(shmp_barrier_abort(b), 0);
	t_wait_ok(ch, 10);
	T_EQ(look(r, "bar").broken, 1);

	/* Queue: depth, capacity, closed. */
	in = look(r, "q");
	T_EQ(in.depth, 0);
	T_EQ(in.capacity, 16);
	T_EQ(in.closed, 0);
	for (int i = 0; i < 3; i++)
		T_EQ(shmp_queue_put(q, "abc", 3, 0), 0);
	T_EQ(look(r, "q").depth, 3);
	T_EQ(shmp_queue_close(q), 0);
	in = look(r, "q");
	T_EQ(in.closed, 1);
	T_EQ(in.depth, 3);

	/* JoinableQueue: unfinished tasks. */
	T_EQ(shmp_queue_put(jq, "a", 1, 0), 0);
	T_EQ(shmp_queue_put(jq, "b", 1, 0), 0);
	in = look(r, "jq");
	T_EQ(in.depth, 2);
	T_EQ(in.capacity, 8);
	T_EQ(in.unfinished, 2);
	char buf[8];
	size_t len;
	T_EQ(shmp_queue_get(jq, buf, sizeof buf, &len, 0), 0);
	T_EQ(shmp_queue_task_done(jq), 0);
	in = look(r, "jq");
	T_EQ(in.depth, 1);
	T_EQ(in.unfinished, 1);

	/* Dict: keys and key capacity. */
	T_EQ(look(r, "d").depth, 0);
	T_EQ(shmp_dict_set(d, "a", "1", 1), 0);
	T_EQ(shmp_dict_set(d, "b", "2", 1), 0);
	T_EQ(shmp_dict_set(d, "c", "3", 1), 0);
	in = look(r, "d");
	T_EQ(in.depth, 3);
	T_EQ(in.capacity, (uint64_t)shmp_dict_capacity(d));
	T_CHECK(in.capacity >= 100);

	/* A second handle counts; its release uncounts. */
	shmp_sem_t *s2 = T_OK(shmp_registry_sem(r, "sem", 0, 0));
	T_EQ(look(r, "sem").handles, 2);
	shmp_sem_destroy(s2);
	T_EQ(look(r, "sem").handles, 1);

	shmp_value_destroy(v);
	shmp_value_destroy(vd);
	shmp_value_destroy(vc);
	shmp_array_destroy(a);
	shmp_array_destroy(a3);
	shmp_lock_destroy(l);
	shmp_lock_destroy(rl);
	shmp_sem_destroy(s);
	shmp_sem_destroy(bs);
	shmp_cond_destroy(c);
	shmp_event_destroy(e);
	shmp_barrier_destroy(b);
	shmp_queue_destroy(q);
	shmp_queue_destroy(jq);
	shmp_dict_destroy(d);
	T_EQ(look(r, "sem").handles, 0);
	shmp_registry_destroy(r);
}

/* ---- Namespace ------------------------------------------------------------ */

static void test_namespace(void)
{
	shmp_registry_t *r = reg_new("ns", 1 << 20, 0);
	int64_t i = 0;
	double f = 0;

	T_EQ(shmp_namespace_get_i64(r, "x", &i), -ENOENT);
	T_EQ(shmp_namespace_get_f64(r, "x", &f), -ENOENT);
	T_EQ(shmp_registry_count(r), 0); /* a get creates nothing */

	/* set creates a 'q' or a 'd' Value. */
	T_EQ(shmp_namespace_set_i64(r, "x", 3), 0);
	T_EQ(shmp_namespace_get_i64(r, "x", &i), 0);
	T_EQ(i, 3);
	T_EQ(shmp_namespace_get_f64(r, "x", &f), 0);
	T_CHECK(f == 3.0);
	struct shmp_object_info in = look(r, "x");
	T_EQ(in.type, SHMP_TYPE_VALUE);
	T_EQ(in.typecode, 'q');
	T_EQ(shmp_namespace_set_f64(r, "y", 2.5), 0);
	T_EQ(shmp_namespace_get_f64(r, "y", &f), 0);
	T_CHECK(f == 2.5);
	T_EQ(shmp_namespace_get_i64(r, "y", &i), 0);
	T_EQ(i, 2);
	T_EQ(look(r, "y").typecode, 'd');

	/* Setting an existing attribute keeps its type and converts. */
	T_EQ(shmp_namespace_set_i64(r, "y", 7), 0);
	T_EQ(look(r, "y").typecode, 'd');
	T_EQ(shmp_namespace_get_f64(r, "y", &f), 0);
	T_CHECK(f == 7.0);
	T_EQ(shmp_namespace_set_f64(r, "x", 9.75), 0);
	T_EQ(look(r, "x").typecode, 'q');
	T_EQ(shmp_namespace_get_i64(r, "x", &i), 0);
	T_EQ(i, 9);
	T_EQ(shmp_namespace_set_i64(r, "big", INT64_MIN), 0);
	T_EQ(shmp_namespace_get_i64(r, "big", &i), 0);
	T_CHECK(i == INT64_MIN);

	/* Attributes are Values: the same object through registry_value. */
	shmp_value_t *v = T_OK(shmp_registry_value(r, "x", 'q', NULL, SHMP_REG_GET_ONLY));
	T_EQ(shmp_value_set_i64(v, 123), 0);
	T_EQ(shmp_namespace_get_i64(r, "x", &i), 0);
	T_EQ(i, 123);
	shmp_value_destroy(v);
	/* and a Value made another way is an attribute */
	int16_t h = -300;
	v = T_OK(shmp_registry_value(r, "h", 'h', &h, 0));
	T_EQ(shmp_namespace_get_i64(r, "h", &i), 0);
	T_EQ(i, -300);
	T_EQ(shmp_namespace_set_i64(r, "h", 70000), 0); /* wraps as C does */
	T_EQ(shmp_value_get_i64(v, &i), 0);
	T_EQ(i, (int16_t)70000);
	shmp_value_destroy(v);

	/* A name of another type is not an attribute. */
	shmp_lock_t *l = T_OK(shmp_registry_lock(r, "lk", 0));
	T_EQ(shmp_namespace_get_i64(r, "lk", &i), -SHMP_ETYPE);
	T_EQ(shmp_namespace_set_i64(r, "lk", 1), -SHMP_ETYPE);
	T_EQ(shmp_namespace_set_f64(r, "lk", 1), -SHMP_ETYPE);
	T_EQ(look(r, "lk").type, SHMP_TYPE_LOCK);
	shmp_lock_destroy(l);
	T_EQ(shmp_registry_count(r), 5);
	/* Removing an attribute is del ns.x. */
	T_EQ(shmp_registry_remove(r, "x"), 0);
	T_EQ(shmp_namespace_get_i64(r, "x", &i), -ENOENT);
	shmp_registry_destroy(r);
}

/* ---- registry_of, ENODATA ------------------------------------------------- */

static void test_registry_of(void)
{
	const char *name = track(t_segname("of"));
	shmp_segment_t *seg = T_OK(shmp_segment_create(name, 1 << 20, NULL));
	struct shmp_segment_info si;
	T_EQ(shmp_segment_inspect(name, &si), 0);
	T_EQ(si.valid, 1);
	T_EQ(si.objects, -1); /* no directory */
	T_FAILS(shmp_registry_attach(name, NULL), ENODATA);
	T_FAILS(shmp_registry_open(name, NULL), ENODATA);

	shmp_registry_t *r = T_OK(shmp_registry_of(seg));
	T_CHECK(shmp_registry_segment(r) == seg);
	T_EQ(shmp_registry_count(r), 0);
	int64_t seven = 7;
	shmp_value_t *v = T_OK(shmp_registry_value(r, "v", 'q', &seven, 0));
	T_EQ(shmp_segment_inspect(name, &si), 0);
	T_EQ(si.objects, 1);
	/* The same directory by name, and again through registry_of. */
	shmp_registry_t *r2 = T_OK(shmp_registry_attach(name, NULL));
	shmp_registry_t *r3 = T_OK(shmp_registry_of(seg));
	shmp_value_t *v2 = T_OK(shmp_registry_value(r2, "v", 'q', NULL, SHMP_REG_GET_ONLY));
	shmp_value_t *v3 = T_OK(shmp_registry_value(r3, "v", 'q', NULL, SHMP_REG_GET_ONLY));
	int64_t x = 0;
	T_EQ(shmp_value_get_i64(v2, &x), 0);
	T_EQ(x, 7);
	T_EQ(shmp_value_set_i64(v3, 8), 0);
	T_EQ(shmp_value_get_i64(v, &x), 0);
	T_EQ(x, 8);
	shmp_value_destroy(v);
	shmp_value_destroy(v2);
	shmp_value_destroy(v3);
	shmp_registry_detach(r3);
	shmp_registry_destroy(r2); /* not the creator */
	shmp_registry_destroy(r);  /* does not own seg: seg stays usable */
	uint64_t off;
	T_EQ(shmp_segment_alloc(seg, 64, 0, &off), 0);
	T_EQ(shmp_segment_free(seg, off), 0);
	shmp_segment_destroy(seg);
	T_EQ(shmp_segment_inspect(name, &si), -ENOENT);

	/* An anonymous segment takes a directory too. */
	seg = T_OK(shmp_segment_create(NULL, 1 << 20, NULL));
	r = T_OK(shmp_registry_of(seg));
	shmp_event_t *e = T_OK(shmp_registry_event(r, "e", 0));
	T_EQ(shmp_registry_count(r), 1);
	shmp_event_destroy(e);
	shmp_registry_detach(r);
	r = T_OK(shmp_registry_of(seg));
	T_EQ(shmp_registry_count(r), 1);
	shmp_registry_detach(r);
	shmp_segment_destroy(seg);
}

/* ---- read-only attach ----------------------------------------------------- */

static void test_readonly(void)
{
	shmp_registry_t *r = reg_new("ro", 1 << 20, 0);
	const char *name = shmp_segment_name(shmp_registry_segment(r));
	int64_t five = 5;
	shmp_value_t *v = T_OK(shmp_registry_value(r, "v", 'q', &five, 0));
	shmp_lock_t *l = T_OK(shmp_registry_lock(r, "lk", 0));
	T_EQ(shmp_namespace_set_f64(r, "f", 1.5), 0);
	struct shmp_segment_info si;
	T_EQ(shmp_segment_inspect(name, &si), 0);
	uint32_t attaches = si.attach_count;

	struct shmp_registry_opts o = SHMP_OPTS(shmp_registry_opts, .flags = SHMP_REGISTRY_READ_ONLY);
	shmp_registry_t *ro = T_OK(shmp_registry_attach(name, &o));
	T_EQ(shmp_segment_inspect(name, &si), 0);
	T_EQ(si.attach_count, attaches); /* not counted */

	/* Reading works. */
	T_EQ(shmp_registry_count(ro), 3);
	struct shmp_object_info in = look(ro, "v");
	T_EQ(in.type, SHMP_TYPE_VALUE);
	T_CHECK(memcmp(in.preview, &five, 8) == 0);
	double f = 0;
	T_EQ(shmp_namespace_get_f64(ro, "f", &f), 0);
	T_CHECK(f == 1.5);
	int k = 0, rr;
	for (unsigned i = 0; (rr = shmp_registry_info(ro, i, &in)) != -ERANGE; i++) {
		T_CHECK(rr == 0 || rr == 1);
		k += rr;
	}
	T_EQ(k, 3);

	/* Writing is EROFS: new objects, gets (a handle is a write: it is
	 * counted), remove, namespace set. */
	for (int t = FIRST_TYPE; t <= LAST_TYPE; t++)
		T_FAILS(get_t(ro, t, "new", 0), EROFS);
	T_FAILS(shmp_registry_value(ro, "v", 'q', NULL, 0), EROFS);
	T_FAILS(shmp_registry_lock(ro, "lk", SHMP_REG_GET_ONLY), EROFS);
	T_EQ(shmp_registry_remove(ro, "v"), -EROFS);
	T_EQ(shmp_namespace_set_i64(ro, "f", 1), -EROFS);
	T_EQ(shmp_namespace_set_i64(ro, "g", 1), -EROFS);
	/* Checks that come before the access mode still say what they say. */
	T_FAILS(shmp_registry_value(ro, "a b", 'q', NULL, 0), EINVAL);
	shmp_registry_detach(ro);
	T_EQ(shmp_segment_inspect(name, &si), 0);
	T_EQ(si.attach_count, attaches);
	T_EQ(shmp_registry_count(r), 3);
	shmp_value_destroy(v);
	shmp_lock_destroy(l);
	shmp_registry_destroy(r);
}

/* ---- a process that is not a child ---------------------------------------- */

/* Objects of the cross-process test and what the peer does with them. */
#define PEER_INCS 1000

static int flag_set(void *arg)
{
	int64_t x = 0;
	shmp_value_get_i64(arg, &x);
	return x != 0;
}

static void hits_inc(shmp_value_t *v, int n)
{
	shmp_lock_t *l = shmp_value_lock(v);
	T_CHECK(l);
	for (int i = 0; i < n; i++) {
		int64_t x;
		T_EQ(shmp_lock_acquire(l, 10), 0);
		T_EQ(shmp_value_get_i64(v, &x), 0);
		T_EQ(shmp_value_set_i64(v, x + 1), 0);
		T_EQ(shmp_lock_release(l), 0);
	}
}

static int peer_main(const char *name)
{
	t_watchdog(40);
	pid_t me = getpid();
	shmp_registry_t *r = T_OK(shmp_registry_attach(name, NULL));
	T_EQ(shmp_registry_count(r), 15);
	/* Found by name and type; the wrong type is an error here too. */
	T_FAILS(shmp_registry_lock(r, "hits", SHMP_REG_GET_ONLY), ETYPE_POS);
	T_FAILS(shmp_registry_lock(r, "hits", 0), ETYPE_POS);
	T_FAILS(shmp_registry_value(r, "hits", 'i', NULL, SHMP_REG_GET_ONLY), ETYPE_POS);
	T_FAILS(shmp_registry_value(r, "nope", 'q', NULL, SHMP_REG_GET_ONLY), ENOENT);
	unsigned g = SHMP_REG_GET_ONLY;
	shmp_value_t *hits = T_OK(shmp_registry_value(r, "hits", 'q', NULL, g));
	shmp_value_t *flag = T_OK(shmp_registry_value(r, "flag", 'i', NULL, g));
	shmp_array_t *arr = T_OK(shmp_registry_array(r, "arr", 'i', 10, NULL, g));
	shmp_lock_t *L = T_OK(shmp_registry_lock(r, "L", g));
	shmp_lock_t *RL = T_OK(shmp_registry_rlock(r, "RL", g));
	shmp_sem_t *S = T_OK(shmp_registry_sem(r, "S", 0, g));
	shmp_sem_t *BS = T_OK(shmp_registry_bounded_sem(r, "BS", 0, g));
	shmp_cond_t *C = T_OK(shmp_registry_cond(r, "C", g));
	shmp_event_t *E = T_OK(shmp_registry_event(r, "E", g));
	shmp_barrier_t *B = T_OK(shmp_registry_barrier(r, "B", 2, g));
	shmp_queue_t *q = T_OK(shmp_registry_queue(r, "q", 0, g));
	shmp_queue_t *jq = T_OK(shmp_registry_joinable_queue(r, "jq", 0, g));
	shmp_dict_t *d = T_OK(shmp_registry_dict(r, "d", NULL, g));
	/* Made by the peer: its pid is the creator. */
	shmp_event_t *mine = T_OK(shmp_registry_event(r, "peer_made", SHMP_REG_CREATE_ONLY));

	/* The Array the parent wrote. */
	T_EQ(shmp_array_len(arr), 10);
	int32_t got[10];
	T_EQ(shmp_array_read(arr, 0, 10, got), 0);
	for (int i = 0; i < 10; i++)
		T_EQ(got[i], i == 3 ? 777 : i * i);
	/* The Namespace attribute the parent set; one for the parent. */
	int64_t x = 0;
	T_EQ(shmp_namespace_get_i64(r, "x", &x), 0);
	T_EQ(x, 42);
	T_EQ(shmp_namespace_set_f64(r, "y", 2.5), 0);
	/* The parent holds L. */
	T_EQ(shmp_lock_acquire(L, 0), -ETIMEDOUT);
	hits_inc(hits, PEER_INCS);
	int k = shmp_barrier_wait(B, 10); /* round 1 */
	T_CHECK(k == 0 || k == 1);

	/* Round 1 done: both incremented. */
	T_EQ(shmp_value_get_i64(hits, &x), 0);
	T_EQ(x, 2 * PEER_INCS);
	T_EQ(shmp_lock_acquire(L, 10), 0); /* the parent releases it */
	T_EQ(shmp_lock_acquire(RL, 0), 0);
	T_EQ(shmp_lock_acquire(RL, 0), 0);
	T_EQ(shmp_sem_release(S), 0);
	T_EQ(shmp_sem_release(S), 0);
	T_EQ(shmp_sem_release(BS), -EOVERFLOW); /* bounded at 1 */
	T_EQ(shmp_sem_acquire(BS, 0), 0);
	for (int i = 0; i < 3; i++) {
		char buf[16];
		size_t len = 0;
		T_EQ(shmp_queue_get(jq, buf, sizeof buf, &len, 10), 0);
		T_EQ(len, 4);
		T_CHECK(memcmp(buf, "job", 3) == 0 && buf[3] == '0' + i);
		T_EQ(shmp_queue_task_done(jq), 0);
	}
	T_EQ(shmp_queue_task_done(jq), -EOVERFLOW);
	char msg[32];
	int n = snprintf(msg, sizeof msg, "peer:%d", (int)me);
	T_EQ(shmp_queue_put(q, msg, (size_t)n, 10), 0);
	T_EQ(shmp_dict_set(d, "from_peer", "hello", 5), 0);
	T_EQ(shmp_event_set(E), 0); /* last: the parent checks the above after it */
	k = shmp_barrier_wait(B, 10); /* round 2 */
	T_CHECK(k == 0 || k == 1);

	/* Round 2: hand L back, wait on the Condition for the flag. */
	T_EQ(shmp_lock_release(RL), 0);
	T_EQ(shmp_lock_release(RL), 0);
	T_EQ(shmp_lock_release(L), 0);
	T_EQ(shmp_lock_acquire(shmp_cond_lock(C), 10), 0);
	T_EQ(shmp_cond_wait_for(C, flag_set, flag, 10), 0);
	T_EQ(shmp_lock_release(shmp_cond_lock(C)), 0);
	T_EQ(shmp_queue_put(q, "cond-ok", 7, 10), 0);
	k = shmp_barrier_wait(B, 10); /* round 3 */
	T_CHECK(k == 0 || k == 1);

	shmp_value_destroy(hits);
	shmp_value_destroy(flag);
	shmp_array_destroy(arr);
	shmp_lock_destroy(L);
	shmp_lock_destroy(RL);
	shmp_sem_destroy(S);
	shmp_sem_destroy(BS);
	shmp_cond_destroy(C);
	shmp_event_destroy(E);
	shmp_barrier_destroy(B);
	shmp_queue_destroy(q);
	shmp_queue_destroy(jq);
	shmp_dict_destroy(d);
	shmp_event_destroy(mine);
	shmp_registry_detach(r);
	return 0;
}

/* Run this binary again as "--peer NAME": a process with nothing of ours. */
static pid_t spawn_peer(const char *name)
{
	T_CHECK(npeers < 8);
	pid_t parent = getpid();
	fflush(NULL);
	pid_t p = fork();
	T_CHECK(p >= 0);
	if (p == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* kept across execv */
		if (getppid() != parent)
			_exit(99);
		char *argv[] = { (char *)"t_registry", (char *)"--peer", (char *)name, NULL };
		execv("/proc/self/exe", argv);
		_exit(98);
	}
	peers[npeers++] = p;
	return p;
}

static void test_peer(void)
{
	shmp_registry_t *r = reg_new("peer", 16 << 20, 0);
	const char *name = shmp_segment_name(shmp_registry_segment(r));
	pid_t me = getpid();
	int64_t x = 0;

	shmp_value_t *hits = T_OK(shmp_registry_value(r, "hits", 'q', NULL, 0));
	shmp_value_t *flag = T_OK(shmp_registry_value(r, "flag", 'i', NULL, 0));
	int32_t sq[10];
	for (int i = 0; i < 10; i++)
		sq[i] = i * i;
	shmp_array_t *arr = T_OK(shmp_registry_array(r, "arr", 'i', 10, sq, 0));
	T_EQ(shmp_array_set_i64(arr, 3, 777), 0);
	shmp_lock_t *L = T_OK(shmp_registry_lock(r, "L", 0));
	shmp_lock_t *RL = T_OK(shmp_registry_rlock(r, "RL", 0));
	shmp_sem_t *S = T_OK(shmp_registry_sem(r, "S", 0, 0));
	shmp_sem_t *BS = T_OK(shmp_registry_bounded_sem(r, "BS", 1, 0));
	shmp_cond_t *C = T_OK(shmp_registry_cond(r, "C", 0));
	shmp_event_t *E = T_OK(shmp_registry_event(r, "E", 0));
	shmp_barrier_t *B = T_OK(shmp_registry_barrier(r, "B", 2, 0));
	shmp_queue_t *q = T_OK(shmp_registry_queue(r, "q", 16, 0));
	shmp_queue_t *jq = T_OK(shmp_registry_joinable_queue(r, "jq", 16, 0));
	shmp_dict_t *d = T_OK(shmp_registry_dict(r, "d", NULL, 0));
	T_EQ(shmp_namespace_set_i64(r, "x", 42), 0);
	T_EQ(shmp_namespace_set_f64(r, "y", 0), 0);
	T_EQ(shmp_registry_count(r), 15);
	for (int i = 0; i < 3; i++) {
		char job[5] = { 'j', 'o', 'b', (char)('0' + i), 0 };
		T_EQ(shmp_queue_put(jq, job, 4, 0), 0);
	}
	T_EQ(shmp_lock_acquire(L, 0), 0);

	pid_t peer = spawn_peer(name);
	hits_inc(hits, PEER_INCS);
	int k = shmp_barrier_wait(B, 10); /* round 1 */
	T_CHECK(k == 0 || k == 1);

	T_EQ(shmp_value_get_i64(hits, &x), 0);
	T_EQ(x, 2 * PEER_INCS);
	struct shmp_object_info in = look(r, "peer_made");
	T_EQ(in.type, SHMP_TYPE_EVENT);
	T_EQ(in.creator_pid, peer);
	T_EQ(shmp_registry_count(r), 16);
	double f = 0;
	T_EQ(shmp_namespace_get_f64(r, "y", &f), 0);
	T_CHECK(f == 2.5);
	T_EQ(shmp_lock_release(L), 0);

	/* What the peer did between rounds 1 and 2 (E is set last). */
	T_EQ(shmp_event_wait(E, 10), 0);
	T_EQ(shmp_sem_acquire(S, 10), 0);
	T_EQ(shmp_sem_acquire(S, 10), 0);
	T_EQ(shmp_sem_value(S), 0);
	T_EQ(shmp_queue_join(jq, 10), 0);
	char buf[32];
	size_t len = 0;
	T_EQ(shmp_queue_get(q, buf, sizeof buf, &len, 10), 0);
	char want[32];
	int n = snprintf(want, sizeof want, "peer:%d", (int)peer);
	T_EQ(len, (size_t)n);
	T_CHECK(memcmp(buf, want, len) == 0);
	T_EQ(shmp_dict_get(d, "from_peer", buf, sizeof buf, &len), 0);
	T_EQ(len, 5);
	T_CHECK(memcmp(buf, "hello", 5) == 0);
	/* Seen through info, and through the objects. */
	in = look(r, "L");
	T_EQ(in.locked, 1);
	T_EQ(in.owner_pid, peer);
	T_EQ(in.owner_dead, 0);
	T_EQ(in.handles, 2);
	T_EQ(shmp_lock_acquire(L, 0), -ETIMEDOUT);
	pid_t op = 0;
	T_EQ(shmp_lock_owner(L, &op, NULL), 1);
	T_EQ(op, peer);
	in = look(r, "RL");
	T_EQ(in.owner_pid, peer);
	T_EQ(in.lock_depth, 2);
	in = look(r, "BS");
	T_EQ(in.value, 0);
	T_EQ(in.max, 1);
	T_EQ(look(r, "S").value, 0);
	T_EQ(look(r, "E").is_set, 1);
	in = look(r, "jq");
	T_EQ(in.depth, 0);
	T_EQ(in.unfinished, 0);
	T_EQ(look(r, "q").depth, 0);
	T_EQ(look(r, "d").depth, 1);
	T_EQ(look(r, "hits").creator_pid, me);
	k = shmp_barrier_wait(B, 10); /* round 2 */
	T_CHECK(k == 0 || k == 1);

	/* The peer releases L, then waits on C for the flag. */
	T_EQ(shmp_lock_acquire(L, 10), 0);
	T_EQ(shmp_lock_release(L), 0);
	double until = t_now() + 10;
	while (look(r, "C").waiters != 1) {
		T_CHECK(t_now() < until);
		t_sleep_ms(1);
	}
	T_EQ(shmp_lock_acquire(shmp_cond_lock(C), 10), 0);
	T_EQ(shmp_value_set_i64(flag, 1), 0);
	T_EQ(shmp_cond_notify_all(C), 1);
	T_EQ(shmp_lock_release(shmp_cond_lock(C)), 0);
	T_EQ(shmp_queue_get(q, buf, sizeof buf, &len, 10), 0);
	T_EQ(len, 7);
	T_CHECK(memcmp(buf, "cond-ok", 7) == 0);
	k = shmp_barrier_wait(B, 10); /* round 3 */
	T_CHECK(k == 0 || k == 1);
	t_wait_ok(peer, 20);

	/* The peer's handles are gone with it (released cleanly). */
	T_EQ(look(r, "L").handles, 1);
	T_EQ(shmp_registry_count(r), 16);
	shmp_value_destroy(hits);
	shmp_value_destroy(flag);
	shmp_array_destroy(arr);
	shmp_lock_destroy(L);
	shmp_lock_destroy(RL);
	shmp_sem_destroy(S);
	shmp_sem_destroy(BS);
	shmp_cond_destroy(C);
	shmp_event_destroy(E);
	shmp_barrier_destroy(B);
	shmp_queue_destroy(q);
	shmp_queue_destroy(jq);
	shmp_dict_destroy(d);
	shmp_registry_destroy(r);
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--peer") == 0)
		return peer_main(argv[2]);
	t_watchdog(90);
	main_pid = getpid();
	atexit(cleanup);
	double t0 = t_now();

	test_type_names();
	test_create_attach();
	test_create_get_all();
	test_wrong_types();
	test_names();
	test_flags_and_params();
	test_null_args();
	test_capacity();
	test_remove();
	test_info();
	test_namespace();
	test_registry_of();
	test_readonly();
	test_peer();
	T_NO_CHILDREN();
	printf("registry tests done in %.2f s\n", t_now() - t0);
	return 0;
}
