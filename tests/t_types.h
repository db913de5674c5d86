/* t_types.h: create-or-get and release of a registry object of any type by
 * its SHMP_TYPE_*, for the tests that go over every type (t_reg.h and the
 * registry tests, the registry fuzzer, t_registry_types): the one copy in
 * the tests of the library's per-type table (src/core/types.c), which tests
 * cannot call (it is not exported). */
#ifndef T_TYPES_H
#define T_TYPES_H

#include "t.h"
#include "shmp/registry.h"

/* The types a registry getter makes (not Pool and Pipeline). */
#define FIRST_TYPE SHMP_TYPE_VALUE
#define LAST_TYPE SHMP_TYPE_DICT

/* What get_t creates objects with; a test may change it before use. */
static struct {
	size_t array_length;
	unsigned sem, bounded_sem, parties, maxsize;
	unsigned dict_capacity;
	size_t dict_max_value; /* 0: the default */
} t_make = { .array_length = 4, .sem = 1, .bounded_sem = 1, .parties = 2, .maxsize = 8, .dict_capacity = 64 };

/* Create-or-get an object of any type, with t_make's parameters. */
static inline void *get_t(shmp_registry_t *r, int type, const char *name, unsigned flags)
{
	switch (type) {
	case SHMP_TYPE_VALUE: return shmp_registry_value(r, name, 'q', NULL, flags);
	case SHMP_TYPE_ARRAY: return shmp_registry_array(r, name, 'i', t_make.array_length, NULL, flags);
	case SHMP_TYPE_LOCK: return shmp_registry_lock(r, name, flags);
	case SHMP_TYPE_RLOCK: return shmp_registry_rlock(r, name, flags);
	case SHMP_TYPE_SEM: return shmp_registry_sem(r, name, t_make.sem, flags);
	case SHMP_TYPE_BOUNDED_SEM: return shmp_registry_bounded_sem(r, name, t_make.bounded_sem, flags);
	case SHMP_TYPE_COND: return shmp_registry_cond(r, name, flags);
	case SHMP_TYPE_EVENT: return shmp_registry_event(r, name, flags);
	case SHMP_TYPE_BARRIER: return shmp_registry_barrier(r, name, t_make.parties, flags);
	case SHMP_TYPE_QUEUE: return shmp_registry_queue(r, name, t_make.maxsize, flags);
	case SHMP_TYPE_JOINABLE_QUEUE: return shmp_registry_joinable_queue(r, name, t_make.maxsize, flags);
	case SHMP_TYPE_DICT: {
		struct shmp_dict_opts o = SHMP_OPTS(shmp_dict_opts, .capacity = t_make.dict_capacity,
						    .max_value = t_make.dict_max_value);
		return shmp_registry_dict(r, name, &o, flags);
	}
	}
	T_CHECK(!"no such type");
	return NULL;
}

/* Release a handle of any type (the object stays in the registry). */
static inline void put_t(int type, void *h)
{
	switch (type) {
	case SHMP_TYPE_VALUE: shmp_value_destroy(h); break;
	case SHMP_TYPE_ARRAY: shmp_array_destroy(h); break;
	case SHMP_TYPE_LOCK:
	case SHMP_TYPE_RLOCK: shmp_lock_destroy(h); break;
	case SHMP_TYPE_SEM:
	case SHMP_TYPE_BOUNDED_SEM: shmp_sem_destroy(h); break;
	case SHMP_TYPE_COND: shmp_cond_destroy(h); break;
	case SHMP_TYPE_EVENT: shmp_event_destroy(h); break;
	case SHMP_TYPE_BARRIER: shmp_barrier_destroy(h); break;
	case SHMP_TYPE_QUEUE:
	case SHMP_TYPE_JOINABLE_QUEUE: shmp_queue_destroy(h); break;
	case SHMP_TYPE_DICT: shmp_dict_destroy(h); break;
	default: T_CHECK(!"no such type");
	}
}

#endif
