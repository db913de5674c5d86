/* private: the table of object types (see types.h). The per-type glue
 * below adapts each module's constructor to the registry's parameters; the
 * rest of the table points at the modules' own functions. */
#include "types.h"

static void *value_create(shmp_segment_t *seg, const struct shmp__params *p)
{
	return shmp_value_create(p->tc, p->init, &SHMP_OPTS(shmp_value_opts, .segment = seg));
}

static void *array_create(shmp_segment_t *seg, const struct shmp__params *p)
{
	return shmp_array_create(p->tc, p->length, p->init, &SHMP_OPTS(shmp_value_opts, .segment = seg));
}

/* Types made with no parameter but their segment. */
#define CREATE_IN_SEGMENT(name, fn, opts_type)                                     \
	static void *name(shmp_segment_t *seg, const struct shmp__params *p)       \
	{                                                                          \
		(void)p;                                                           \
		return fn(&SHMP_OPTS(opts_type, .segment = seg));                  \
	}
CREATE_IN_SEGMENT(lock_create, shmp_lock_create, shmp_lock_opts)
CREATE_IN_SEGMENT(rlock_create, shmp_rlock_create, shmp_lock_opts)
CREATE_IN_SEGMENT(cond_create, shmp_cond_create, shmp_cond_opts)
CREATE_IN_SEGMENT(event_create, shmp_event_create, shmp_event_opts)

static void *sem_create(shmp_segment_t *seg, const struct shmp__params *p)
{
	return shmp_sem_create(p->n, &SHMP_OPTS(shmp_sem_opts, .segment = seg));
}

static void *bounded_sem_create(shmp_segment_t *seg, const struct shmp__params *p)
{
	/* A bounded semaphore of SHMP_SEM_VALUE_MAX could not be told from a
	 * plain one when opened. */
	if (p->n >= SHMP_SEM_VALUE_MAX) {
		errno = EINVAL;
		return NULL;
	}
	return shmp_bounded_sem_create(p->n, &SHMP_OPTS(shmp_sem_opts, .segment = seg));
}

static void *barrier_create(shmp_segment_t *seg, const struct shmp__params *p)
{
	return shmp_barrier_create(p->n, &SHMP_OPTS(shmp_barrier_opts, .segment = seg));
}

static void *queue_create(shmp_segment_t *seg, const struct shmp__params *p)
{
	return shmp_queue_create(&SHMP_OPTS(shmp_queue_opts, .segment = seg, .maxsize = p->n));
}

static void *joinable_queue_create(shmp_segment_t *seg, const struct shmp__params *p)
{
	return shmp_joinable_queue_create(&SHMP_OPTS(shmp_queue_opts, .segment = seg, .maxsize = p->n));
}

static void *dict_create(shmp_segment_t *seg, const struct shmp__params *p)
{
	struct shmp_dict_opts o = { .sz = sizeof o };
	if (p->dict && SHMP__OPTS(o, p->dict) < 0) {
		errno = EINVAL;
		return NULL;
	}
	o.segment = seg;
	return shmp_dict_create(&o);
}

/* Opens and inspects of the types that share a module differ by a kind. */
static void *value_open(shmp_segment_t *s, uint64_t o, _Atomic uint32_t *r) { return shmp__value_open(s, o, r); }
static void *array_open(shmp_segment_t *s, uint64_t o, _Atomic uint32_t *r) { return shmp__array_open(s, o, r); }
static void *lock_open(shmp_segment_t *s, uint64_t o, _Atomic uint32_t *r) { return shmp__lock_open(s, o, SHMP__KIND_LOCK, r); }
static void *rlock_open(shmp_segment_t *s, uint64_t o, _Atomic uint32_t *r) { return shmp__lock_open(s, o, SHMP__KIND_RLOCK, r); }
static void *sem_open(shmp_segment_t *s, uint64_t o, _Atomic uint32_t *r) { return shmp__sem_open(s, o, false, r); }
static void *bounded_sem_open(shmp_segment_t *s, uint64_t o, _Atomic uint32_t *r) { return shmp__sem_open(s, o, true, r); }
static void *cond_open(shmp_segment_t *s, uint64_t o, _Atomic uint32_t *r) { return shmp__cond_open(s, o, r); }
static void *event_open(shmp_segment_t *s, uint64_t o, _Atomic uint32_t *r) { return shmp__event_open(s, o, r); }
static void *barrier_open(shmp_segment_t *s, uint64_t o, _Atomic uint32_t *r) { return shmp__barrier_open(s, o, r); }
static void *queue_open(shmp_segment_t *s, uint64_t o, _Atomic uint32_t *r) { return shmp__queue_open(s, o, false, r); }
static void *joinable_queue_open(shmp_segment_t *s, uint64_t o, _Atomic uint32_t *r) { return shmp__queue_open(s, o, true, r); }
static void *dict_open(shmp_segment_t *s, uint64_t o, _Atomic uint32_t *r) { return shmp__dict_open(s, o, r); }

static void value_destroy(void *h) { shmp_value_destroy(h); }
static void array_destroy(void *h) { shmp_array_destroy(h); }
static void lock_destroy(void *h) { shmp_lock_destroy(h); }
static void sem_destroy(void *h) { shmp_sem_destroy(h); }
static void cond_destroy(void *h) { shmp_cond_destroy(h); }
static void event_destroy(void *h) { shmp_event_destroy(h); }
static void barrier_destroy(void *h) { shmp_barrier_destroy(h); }
static void queue_destroy(void *h) { shmp_queue_destroy(h); }
static void dict_destroy(void *h) { shmp_dict_destroy(h); }

#define LAYOUT(l, want) &shmp__##l##_layout, (want)
static const struct shmp__type_ops types[SHMP_TYPE_MAX] = {
	[SHMP_TYPE_VALUE] = { "value", value_create, value_open, LAYOUT(typed, 1), shmp__typed_inspect, value_destroy },
	[SHMP_TYPE_ARRAY] = { "array", array_create, array_open, LAYOUT(typed, 2), shmp__typed_inspect, array_destroy },
	[SHMP_TYPE_LOCK] = { "lock", lock_create, lock_open, LAYOUT(lock, 0), shmp__lock_inspect, lock_destroy },
	[SHMP_TYPE_RLOCK] = { "rlock", rlock_create, rlock_open, LAYOUT(lock, 0), shmp__lock_inspect, lock_destroy },
	[SHMP_TYPE_SEM] = { "sem", sem_create, sem_open, LAYOUT(sem, 0), shmp__sem_inspect, sem_destroy },
	[SHMP_TYPE_BOUNDED_SEM] = { "bounded_sem", bounded_sem_create, bounded_sem_open, LAYOUT(sem, 0),
				    shmp__sem_inspect, sem_destroy },
	[SHMP_TYPE_COND] = { "cond", cond_create, cond_open, LAYOUT(cond, 0), shmp__cond_inspect, cond_destroy },
	[SHMP_TYPE_EVENT] = { "event", event_create, event_open, LAYOUT(event, 0), shmp__event_inspect, event_destroy },
	[SHMP_TYPE_BARRIER] = { "barrier", barrier_create, barrier_open, LAYOUT(barrier, 0), shmp__barrier_inspect,
				barrier_destroy },
	[SHMP_TYPE_QUEUE] = { "queue", queue_create, queue_open, LAYOUT(queue, 0), shmp__queue_inspect, queue_destroy },
	[SHMP_TYPE_JOINABLE_QUEUE] = { "joinable_queue", joinable_queue_create, joinable_queue_open, LAYOUT(queue, 0),
				       shmp__queue_inspect, queue_destroy },
	[SHMP_TYPE_DICT] = { "dict", dict_create, dict_open, LAYOUT(dict, 0), shmp__dict_inspect, dict_destroy },
	/* Made, owned and freed by their own layer, never lent by the
	 * registry; named in a directory so that tools find and inspect them. */
	[SHMP_TYPE_POOL] = { "pool", NULL, NULL, LAYOUT(pool, 0), shmp__pool_inspect, NULL },
	[SHMP_TYPE_PIPELINE] = { "pipeline", NULL, NULL, LAYOUT(pipeline, 0), shmp__pipeline_inspect, NULL },
};

const struct shmp__type_ops *shmp__type(int type)
{
	return type > 0 && type < SHMP_TYPE_MAX ? &types[type] : NULL;
}

void shmp__type_inspect(const shmp_segment_t *seg, int type, uint64_t off, struct shmp_object_info *info)
{
	const struct shmp__type_ops *t = shmp__type(type);
	if (!t || !t->inspect)
		return; /* not a type this library knows: neither valid nor checked */
	int e;
	const void *sh = shmp__obj_at(seg, off, t->layout, t->want, &e);
	if (sh)
		e = t->inspect(seg, sh, info);
	info->valid = e == 0;
	info->error = e;
}

const char *shmp_type_name(int type)
{
	const struct shmp__type_ops *t = shmp__type(type);
	return t && t->name ? t->name : "unknown";
}
