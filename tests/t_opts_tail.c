/* Options structs follow libbpf's rule in every module: a caller's struct
 * larger than the library's (a newer header) is accepted when the bytes
 * past what the library knows are zero, and refused with EINVAL when any
 * of them is not (an option the library cannot honour is never silently
 * ignored); a size too small to hold itself is EINVAL; NULL is all
 * defaults. */
#include "t.h"

/* A caller's options: the library's struct, then fields it does not know. */
#define BIGGER(type) struct { struct type known; uint64_t unknown[4]; }

#define CHECK_PTR_CALL(type, call_with)                                             \
	do {                                                                       \
		BIGGER(type) o;                                                    \
		memset(&o, 0, sizeof o);                                           \
		o.known.sz = sizeof o;                                             \
		const struct type *op = &o.known;                                  \
		void *h = (call_with);                                             \
		if (!h)                                                            \
			fprintf(stderr, "%s with a zero tail: %s\n", #type, shmp_strerror(errno)); \
		T_CHECK(h);                                                        \
		handles[nh++] = h;                                                 \
		o.unknown[2] = 1;                                                  \
		errno = 0;                                                         \
		T_CHECK((call_with) == NULL);                                      \
		T_EQ(errno, EINVAL);                                               \
		o.unknown[2] = 0;                                                  \
		o.known.sz = 4; /* cannot even hold itself */                      \
		errno = 0;                                                         \
		T_CHECK((call_with) == NULL);                                      \
		T_EQ(errno, EINVAL);                                               \
	} while (0)

static int copy(const void *arg, void *res, const struct shmp_task_ctx *ctx)
{
	(void)ctx;
	*(long *)res = *(const long *)arg;
	return 0;
}

int main(void)
{
	t_watchdog(60);
	void *handles[16];
	int nh = 0;
	CHECK_PTR_CALL(shmp_lock_opts, shmp_lock_create(op));
	CHECK_PTR_CALL(shmp_sem_opts, shmp_sem_create(1, op));
	CHECK_PTR_CALL(shmp_event_opts, shmp_event_create(op));
	CHECK_PTR_CALL(shmp_value_opts, shmp_value_create('q', NULL, op));
	CHECK_PTR_CALL(shmp_queue_opts, shmp_queue_create(op));
	CHECK_PTR_CALL(shmp_ring_opts, shmp_ring_create(op));
	CHECK_PTR_CALL(shmp_dict_opts, shmp_dict_create(op));
	CHECK_PTR_CALL(shmp_barrier_opts, shmp_barrier_create(2, op));
	CHECK_PTR_CALL(shmp_cond_opts, shmp_cond_create(op));
	CHECK_PTR_CALL(shmp_segment_opts, shmp_segment_create(NULL, 1 << 20, op));
	shmp_lock_destroy(handles[0]);
	shmp_sem_destroy(handles[1]);
	shmp_event_destroy(handles[2]);
	shmp_value_destroy(handles[3]);
	shmp_queue_destroy(handles[4]);
	shmp_ring_destroy(handles[5]);
	shmp_dict_destroy(handles[6]);
	shmp_barrier_destroy(handles[7]);
	shmp_cond_destroy(handles[8]);
	shmp_segment_destroy(handles[9]);

	/* The pool, and a per-call options struct. */
	BIGGER(shmp_pool_opts) po;
	memset(&po, 0, sizeof po);
	po.known.sz = sizeof po;
	shmp_pool_t *p = shmp_threadpool_create(1, &po.known);
	T_CHECK(p);
	po.unknown[0] = 7;
	errno = 0;
	T_CHECK(!shmp_pool_create(1, &po.known) && errno == EINVAL);
	BIGGER(shmp_call_opts) co;
	memset(&co, 0, sizeof co);
	co.known.sz = sizeof co;
	co.unknown[3] = 1;
	long in = 1, out = 0;
	errno = 0;
	T_CHECK(!shmp_pool_map_async(p, copy, &in, sizeof in, 1, &out, sizeof out, &co.known) && errno == EINVAL);
	co.unknown[3] = 0;
	T_EQ(shmp_pool_map(p, copy, &in, sizeof in, 1, &out, sizeof out, &co.known, NULL), 0);
	T_EQ(out, 1);
	shmp_pool_destroy(p);

	/* And an int-returning call: the pipe. */
	BIGGER(shmp_pipe_opts) pp;
	memset(&pp, 0, sizeof pp);
	pp.known.sz = sizeof pp;
	shmp_conn_t *a, *b;
	T_EQ(shmp_pipe_create(&a, &b, &pp.known), 0);
	shmp_conn_destroy(a);
	shmp_conn_destroy(b);
	pp.unknown[1] = 1;
	T_EQ(shmp_pipe_create(&a, &b, &pp.known), -EINVAL);
	return 0;
}
