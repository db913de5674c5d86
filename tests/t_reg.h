/* t_reg.h: what the registry tests share — segments and peers cleaned up
 * at exit, checks for calls returning a handle, and create-or-get/release
 * of any object type by its SHMP_TYPE_*. */
#ifndef T_REG_H
#define T_REG_H

#include "t.h"
#include "shmp/registry.h"

#define FIRST_TYPE SHMP_TYPE_VALUE
#define LAST_TYPE SHMP_TYPE_DICT

/* The key capacity of Dicts get_t makes. */
static unsigned t_reg_dict_capacity = 64;

static pid_t main_pid;
static char made[256][128]; /* segments made by the test, unlinked at exit */
static int nmade;
static pid_t peers[16];    /* re-executed peers, killed at exit */
static int npeers;

static inline void cleanup(void)
{
	if (getpid() != main_pid)
		return;
	for (int i = 0; i < npeers; i++) {
		if (waitpid(peers[i], NULL, WNOHANG) == 0) {
			kill(peers[i], SIGKILL);
			waitpid(peers[i], NULL, 0);
		}
	}
	t_reap_all();
	for (int i = 0; i < nmade; i++)
		shmp_segment_unlink(made[i]);
}

static inline const char *track(const char *name)
{
	T_CHECK(nmade < 256 && strlen(name) < 128);
	strcpy(made[nmade], name);
	return made[nmade++];
}

/* A call returning a pointer must fail with exactly errno `want`. */
#define T_FAILS(call, want)                                                        \
	do {                                                                       \
		errno = 0;                                                         \
		void *t_p_ = (void *)(call);                                       \
		int t_e_ = errno, t_w_ = (want);                                   \
		if (t_p_ || t_e_ != t_w_) {                                        \
			fprintf(stderr, "%s:%d: %s: %s errno %d (%s), want NULL errno %d (%s)\n", \
				__FILE__, __LINE__, #call, t_p_ ? "returned a handle," : "NULL,", \
				t_e_, shmp_strerror(-t_e_), t_w_, shmp_strerror(-t_w_)); \
			exit(1);                                                   \
		}                                                                  \
	} while (0)

/* A call returning a pointer must succeed. */
#define T_OK(call)                                                                 \
	({                                                                         \
		errno = 0;                                                         \
		__typeof__(call) t_h_ = (call);                                    \
		if (!t_h_) {                                                       \
			fprintf(stderr, "%s:%d: %s failed: errno %d (%s)\n", __FILE__, \
				__LINE__, #call, errno, shmp_strerror(-errno));    \
			exit(1);                                                   \
		}                                                                  \
		t_h_;                                                              \
	})

static inline struct shmp_registry_opts ropts(size_t size, unsigned capacity)
{
	return SHMP_OPTS(shmp_registry_opts, .size = size, .capacity = capacity);
}


/* Create-or-get an object of any type, with fixed creation parameters. */
static inline void *get_t(shmp_registry_t *r, int type, const char *name, unsigned flags)
{
	switch (type) {
	case SHMP_TYPE_VALUE: return shmp_registry_value(r, name, 'q', NULL, flags);
	case SHMP_TYPE_ARRAY: return shmp_registry_array(r, name, 'i', 4, NULL, flags);
	case SHMP_TYPE_LOCK: return shmp_registry_lock(r, name, flags);
	case SHMP_TYPE_RLOCK: return shmp_registry_rlock(r, name, flags);
	case SHMP_TYPE_SEM: return shmp_registry_sem(r, name, 1, flags);
	case SHMP_TYPE_BOUNDED_SEM: return shmp_registry_bounded_sem(r, name, 1, flags);
	case SHMP_TYPE_COND: return shmp_registry_cond(r, name, flags);
	case SHMP_TYPE_EVENT: return shmp_registry_event(r, name, flags);
	case SHMP_TYPE_BARRIER: return shmp_registry_barrier(r, name, 2, flags);
	case SHMP_TYPE_QUEUE: return shmp_registry_queue(r, name, 8, flags);
	case SHMP_TYPE_JOINABLE_QUEUE: return shmp_registry_joinable_queue(r, name, 8, flags);
	case SHMP_TYPE_DICT: {
		struct shmp_dict_opts o = SHMP_OPTS(shmp_dict_opts, .capacity = t_reg_dict_capacity);
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
