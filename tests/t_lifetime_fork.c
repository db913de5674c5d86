/* The one lifetime rule, for every object type: a forked child destroying a
 * handle it inherited releases its copy only. The parent's object stays
 * whole and usable (no block of the segment is freed, nothing is
 * scribbled), and a registry handle's reference count is not dropped. Then
 * the creating process's destroy does free everything. */
#include "t.h"

enum { T_LOCK, T_RLOCK, T_SEM, T_BSEM, T_COND, T_EVENT, T_BARRIER, T_VALUE, T_ARRAY, T_QUEUE,
       T_SQUEUE, T_JQUEUE, T_RING, T_DICT, T_N };
static const char *const names[T_N] = { "lock", "rlock", "sem", "bounded_sem", "cond", "event",
					"barrier", "value", "array", "queue", "simple_queue",
					"joinable_queue", "ring", "dict" };

static void *make(int t, shmp_segment_t *seg)
{
	switch (t) {
	case T_LOCK: return shmp_lock_create(&SHMP_OPTS(shmp_lock_opts, .segment = seg));
	case T_RLOCK: return shmp_rlock_create(&SHMP_OPTS(shmp_lock_opts, .segment = seg));
	case T_SEM: return shmp_sem_create(2, &SHMP_OPTS(shmp_sem_opts, .segment = seg));
	case T_BSEM: return shmp_bounded_sem_create(2, &SHMP_OPTS(shmp_sem_opts, .segment = seg));
	case T_COND: return shmp_cond_create(&SHMP_OPTS(shmp_cond_opts, .segment = seg));
	case T_EVENT: return shmp_event_create(&SHMP_OPTS(shmp_event_opts, .segment = seg));
	case T_BARRIER: return shmp_barrier_create(1, &SHMP_OPTS(shmp_barrier_opts, .segment = seg));
	case T_VALUE: return shmp_value_create('q', NULL, &SHMP_OPTS(shmp_value_opts, .segment = seg));
	case T_ARRAY: return shmp_array_create('d', 100, NULL, &SHMP_OPTS(shmp_value_opts, .segment = seg));
	case T_QUEUE: return shmp_queue_create(&SHMP_OPTS(shmp_queue_opts, .segment = seg, .maxsize = 8));
	case T_SQUEUE: return shmp_simple_queue_create(&SHMP_OPTS(shmp_queue_opts, .segment = seg, .maxsize = 8));
	case T_JQUEUE: return shmp_joinable_queue_create(&SHMP_OPTS(shmp_queue_opts, .segment = seg, .maxsize = 8));
	case T_RING: return shmp_ring_create(&SHMP_OPTS(shmp_ring_opts, .segment = seg, .capacity = 8));
	case T_DICT: return shmp_dict_create(&SHMP_OPTS(shmp_dict_opts, .segment = seg, .capacity = 16));
	}
	return NULL;
}

static void *from_registry(int t, shmp_registry_t *r)
{
	const char *n = names[t];
	switch (t) {
	case T_LOCK: return shmp_registry_lock(r, n, 0);
	case T_RLOCK: return shmp_registry_rlock(r, n, 0);
	case T_SEM: return shmp_registry_sem(r, n, 2, 0);
	case T_BSEM: return shmp_registry_bounded_sem(r, n, 2, 0);
	case T_COND: return shmp_registry_cond(r, n, 0);
	case T_EVENT: return shmp_registry_event(r, n, 0);
	case T_BARRIER: return shmp_registry_barrier(r, n, 1, 0);
	case T_VALUE: return shmp_registry_value(r, n, 'q', NULL, 0);
	case T_ARRAY: return shmp_registry_array(r, n, 'd', 100, NULL, 0);
	case T_QUEUE: case T_SQUEUE: return shmp_registry_queue(r, n, 8, 0);
	case T_JQUEUE: return shmp_registry_joinable_queue(r, n, 8, 0);
	case T_DICT: return shmp_registry_dict(r, n, NULL, 0);
	}
	return NULL; /* rings are not registry objects */
}

static void destroy(int t, void *o)
{
	switch (t) {
	case T_LOCK: case T_RLOCK: shmp_lock_destroy(o); break;
	case T_SEM: case T_BSEM: shmp_sem_destroy(o); break;
	case T_COND: shmp_cond_destroy(o); break;
	case T_EVENT: shmp_event_destroy(o); break;
	case T_BARRIER: shmp_barrier_destroy(o); break;
	case T_VALUE: shmp_value_destroy(o); break;
	case T_ARRAY: shmp_array_destroy(o); break;
	case T_QUEUE: case T_SQUEUE: case T_JQUEUE: shmp_queue_destroy(o); break;
	case T_RING: shmp_ring_destroy(o); break;
	case T_DICT: shmp_dict_destroy(o); break;
	}
}

/* The object works: a full round of its main operations. */
static void use(int t, void *o)
{
	char buf[16];
	size_t len;
	switch (t) {
	case T_LOCK: case T_RLOCK:
		T_EQ(shmp_lock_acquire(o, 1), 0);
		T_EQ(shmp_lock_release(o), 0);
		break;
	case T_SEM: case T_BSEM:
		T_EQ(shmp_sem_acquire(o, 1), 0);
		T_EQ(shmp_sem_release(o), 0);
		T_EQ(shmp_sem_value(o), 2);
		break;
	case T_COND:
		T_EQ(shmp_lock_acquire(shmp_cond_lock(o), 1), 0);
		T_EQ(shmp_cond_wait(o, 0.01), -ETIMEDOUT);
		T_EQ(shmp_cond_notify(o, 1), 0);
		T_EQ(shmp_lock_release(shmp_cond_lock(o)), 0);
		break;
	case T_EVENT:
		T_EQ(shmp_event_set(o), 0);
		T_EQ(shmp_event_wait(o, 0), 0);
		T_EQ(shmp_event_clear(o), 0);
		break;
	case T_BARRIER:
		T_EQ(shmp_barrier_wait(o, 1), 0);
		break;
	case T_VALUE: {
		int64_t x;
		T_EQ(shmp_value_set_i64(o, 41), 0);
		T_EQ(shmp_value_add(o, 1, NULL), 0);
		T_EQ(shmp_value_get_i64(o, &x), 0);
		T_EQ(x, 42);
		break;
	}
	case T_ARRAY: {
		double d;
		T_EQ(shmp_array_set_f64(o, 99, 2.5), 0);
		T_EQ(shmp_array_get_f64(o, 99, &d), 0);
		T_CHECK(d == 2.5);
		break;
	}
	case T_QUEUE: case T_SQUEUE: case T_JQUEUE:
		T_EQ(shmp_queue_put(o, "hello", 5, 1), 0);
		T_EQ(shmp_queue_get(o, buf, sizeof buf, &len, 1), 0);
		T_EQ(len, 5);
		if (t == T_JQUEUE)
			T_EQ(shmp_queue_task_done(o), 0);
		break;
	case T_RING:
		T_EQ(shmp_ring_put(o, "hello", 5, 1), 0);
		T_EQ(shmp_ring_get(o, buf, sizeof buf, &len, 1), 0);
		T_EQ(len, 5);
		break;
	case T_DICT:
		T_EQ(shmp_dict_set(o, "k", "v1", 2), 0);
		T_EQ(shmp_dict_get(o, "k", buf, sizeof buf, &len), 0);
		T_EQ(len, 2);
		break;
	}
}

struct child_arg {
	int type;
	void *obj;
	shmp_segment_t *seg;
};

/* The child destroys its copy, then allocates and scribbles over what it
 * can get from the segment: had the destroy freed the object, this would
 * overwrite it. */
static int child(void *p)
{
	struct child_arg *a = p;
	destroy(a->type, a->obj);
	uint64_t off;
	for (size_t sz = 1u << 16; sz >= 16; sz /= 2)
		while (shmp_segment_alloc(a->seg, sz, 16, &off) == 0)
			memset(shmp_segment_ptr(a->seg, off, sz), 0xa5, sz);
	return 0;
}

static void one(int t, shmp_segment_t *seg, void *o)
{
	use(t, o);
	uint64_t blocks = t_live_blocks(seg);
	struct child_arg a = { t, o, seg };
	t_wait_ok(t_fork(child, &a), 30);
	/* The child filled the segment: give its scribbles back first. */
	T_CHECK(t_live_blocks(seg) >= blocks);
	use(t, o);
	use(t, o);
}

int main(void)
{
	t_watchdog(120);
	for (int t = 0; t < T_N; t++) {
		/* A small segment of its own per type, so the child can fill it. */
		shmp_segment_t *seg = shmp_segment_create(NULL, 1 << 20, NULL);
		T_CHECK(seg);
		uint64_t empty = t_live_blocks(seg);
		void *o = make(t, seg);
		if (!o)
			fprintf(stderr, "%s: %s\n", names[t], shmp_strerror(errno));
		T_CHECK(o);
		uint64_t with = t_live_blocks(seg);
		one(t, seg, o);
		/* The creating process's destroy frees every block it made
		 * (the child's scribble blocks aside). */
		uint64_t before = t_live_blocks(seg);
		destroy(t, o);
		T_EQ(t_live_blocks(seg), before - (with - empty));
		shmp_segment_destroy(seg);
	}

	/* Registry handles: the child's destroy of its copy does not drop the
	 * parent's reference (info.handles stays), and the object stays. */
	shmp_registry_t *r = shmp_registry_create(t_segname("reg"), NULL);
	T_CHECK(r);
	for (int t = 0; t < T_N; t++) {
		void *o = from_registry(t, r);
		if (t == T_RING) {
			T_CHECK(!o);
			continue;
		}
		T_CHECK(o);
		struct shmp_object_info info;
		T_EQ(shmp_registry_lookup(r, names[t], &info), 0);
		uint32_t handles = info.handles;
		use(t, o);
		pid_t c = fork();
		if (c == 0) {
			destroy(t, o);
			_exit(0);
		}
		t_wait_ok(c, 30);
		T_EQ(shmp_registry_lookup(r, names[t], &info), 0);
		T_EQ(info.handles, handles);
		use(t, o);
		/* Removed while we hold it: it stays until our destroy. */
		T_EQ(shmp_registry_remove(r, names[t]), 0);
		use(t, o);
		destroy(t, o);
	}
	shmp_registry_destroy(r);
	return 0;
}
