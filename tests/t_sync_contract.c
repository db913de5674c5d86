/* The contract of common.h over the whole sync layer and Value/Array:
 * - every function given a NULL handle (or a NULL pointer it needs) returns
 *   -EINVAL, or NULL with errno EINVAL, and never crashes; destroys accept
 *   NULL;
 * - a NaN timeout is -EINVAL even when the call could succeed at once (a
 *   free lock, a permit, a set event), and changes nothing;
 * - options with a size this library cannot read, or with bytes set past
 *   what it knows, are EINVAL; other bad arguments (typecodes, counts,
 *   limits) are EINVAL at create;
 * - the documented codes of the other errors (EPERM, ENOLCK, ERANGE,
 *   EOVERFLOW, EDEADLK). */
#include "t.h"

#include <math.h>

#define T_NULL_ERRNO(expr, want)                                                   \
	do {                                                                       \
		errno = 0;                                                         \
		T_CHECK((expr) == NULL);                                           \
		T_EQ(errno, (want));                                               \
	} while (0)

/* An options struct from a newer caller: one more field this library does
 * not know, set. And one too small to hold its own size. */
#define BAD_OPTS(type, call)                                                       \
	do {                                                                       \
		struct { struct type o; uint64_t newer; } big_;                    \
		memset(&big_, 0, sizeof big_);                                     \
		big_.o.sz = sizeof big_;                                           \
		big_.newer = 1;                                                    \
		const struct type *opts_ = &big_.o;                                \
		T_NULL_ERRNO(call, EINVAL);                                        \
		big_.newer = 0; /* zero past what we know: fine */                 \
		void *ok_ = (void *)(call);                                        \
		T_CHECK(ok_ != NULL);                                              \
		struct type small_;                                                \
		memset(&small_, 0, sizeof small_);                                 \
		small_.sz = 1;                                                     \
		opts_ = &small_;                                                   \
		T_NULL_ERRNO(call, EINVAL);                                        \
		(void)opts_;                                                       \
		free_any(ok_);                                                     \
	} while (0)

static int kind; /* which type free_any frees */
static void free_any(void *p)
{
	switch (kind) {
	case 0: shmp_lock_destroy(p); break;
	case 1: shmp_sem_destroy(p); break;
	case 2: shmp_cond_destroy(p); break;
	case 3: shmp_event_destroy(p); break;
	case 4: shmp_barrier_destroy(p); break;
	case 5: shmp_value_destroy(p); break;
	case 6: shmp_array_destroy(p); break;
	}
}

static int yes(void *arg)
{
	(void)arg;
	return 1;
}

static void test_lock(void)
{
	kind = 0;
	BAD_OPTS(shmp_lock_opts, shmp_lock_create(opts_));
	BAD_OPTS(shmp_lock_opts, shmp_rlock_create(opts_));
	shmp_lock_destroy(NULL);
	T_EQ(shmp_lock_acquire(NULL, 0), -EINVAL);
	T_EQ(shmp_lock_release(NULL), -EINVAL);
	T_EQ(shmp_lock_consistent(NULL), -EINVAL);
	T_EQ(shmp_lock_is_locked(NULL), -EINVAL);
	T_EQ(shmp_lock_owner(NULL, NULL, NULL), -EINVAL);
	T_EQ(shmp_lock_count(NULL), -EINVAL);
	T_EQ(shmp_lock_is_recursive(NULL), -EINVAL);

	shmp_lock_t *l = shmp_lock_create(NULL);
	T_CHECK(l);
	T_EQ(shmp_lock_acquire(l, NAN), -EINVAL); /* free, yet refused */
	T_EQ(shmp_lock_is_locked(l), 0);
	T_EQ(shmp_lock_release(l), -EPERM);
	T_EQ(shmp_lock_consistent(l), -EPERM);
	T_EQ(shmp_lock_acquire(l, 0), 0);
	T_EQ(shmp_lock_acquire(l, 0), -EDEADLK);
	T_EQ(shmp_lock_acquire(l, NAN), -EINVAL);
	T_EQ(shmp_lock_consistent(l), -EINVAL); /* not owner-dead */
	T_EQ(shmp_lock_owner(l, NULL, NULL), 1);
	T_EQ(shmp_lock_release(l), 0);
	shmp_lock_destroy(l);
}

static void test_sem(void)
{
	kind = 1;
	BAD_OPTS(shmp_sem_opts, shmp_sem_create(1, opts_));
	BAD_OPTS(shmp_sem_opts, shmp_bounded_sem_create(1, opts_));
	T_NULL_ERRNO(shmp_sem_create(SHMP_SEM_VALUE_MAX + 1u, NULL), EINVAL);
	T_NULL_ERRNO(shmp_bounded_sem_create(SHMP_SEM_VALUE_MAX + 1u, NULL), EINVAL);
	shmp_sem_destroy(NULL);
	T_EQ(shmp_sem_acquire(NULL, 0), -EINVAL);
	T_EQ(shmp_sem_release(NULL), -EINVAL);
	T_EQ(shmp_sem_value(NULL), -EINVAL);

	shmp_sem_t *s = shmp_bounded_sem_create(1, NULL);
	T_CHECK(s);
	T_EQ(shmp_sem_acquire(s, NAN), -EINVAL); /* a permit is free, yet refused */
	T_EQ(shmp_sem_value(s), 1);
	T_EQ(shmp_sem_release(s), -EOVERFLOW);
	shmp_sem_destroy(s);
}

static void test_cond(void)
{
	kind = 2;
	BAD_OPTS(shmp_cond_opts, shmp_cond_create(opts_));
	struct shmp_cond_opts o = SHMP_OPTS(shmp_cond_opts, .max_waiters = SHMP_COND_WAITERS_MAX + 1);
	T_NULL_ERRNO(shmp_cond_create(&o), EINVAL);
	shmp_cond_destroy(NULL);
	T_NULL_ERRNO(shmp_cond_lock(NULL), EINVAL);
	T_EQ(shmp_cond_wait(NULL, 0), -EINVAL);
	T_EQ(shmp_cond_wait_for(NULL, yes, NULL, 0), -EINVAL);
	T_EQ(shmp_cond_notify(NULL, 1), -EINVAL);
	T_EQ(shmp_cond_notify_all(NULL), -EINVAL);

	shmp_cond_t *c = shmp_cond_create(NULL);
	T_CHECK(c);
	shmp_lock_t *l = shmp_cond_lock(c);
	T_EQ(shmp_cond_wait(c, 0), -EPERM);
	T_EQ(shmp_cond_notify(c, 1), -EPERM);
	T_EQ(shmp_lock_acquire(l, 0), 0);
	T_EQ(shmp_cond_wait_for(c, NULL, NULL, 0), -EINVAL);
	T_EQ(shmp_cond_wait(c, NAN), -EINVAL);
	T_EQ(shmp_cond_wait_for(c, yes, NULL, NAN), -EINVAL);
	/* Nothing was left waiting, and the lock is still held once. */
	T_EQ(shmp_cond_notify_all(c), 0);
	T_EQ(shmp_lock_count(l), 1);
	T_EQ(shmp_cond_wait_for(c, yes, NULL, 0), 0);
	T_EQ(shmp_lock_release(l), 0);
	shmp_cond_destroy(c);
}

static void test_event(void)
{
	kind = 3;
	BAD_OPTS(shmp_event_opts, shmp_event_create(opts_));
	shmp_event_destroy(NULL);
	T_EQ(shmp_event_set(NULL), -EINVAL);
	T_EQ(shmp_event_clear(NULL), -EINVAL);
	T_EQ(shmp_event_is_set(NULL), -EINVAL);
	T_EQ(shmp_event_wait(NULL, 0), -EINVAL);
	shmp_event_t *e = shmp_event_create(NULL);
	T_CHECK(e);
	T_EQ(shmp_event_set(e), 0);
	T_EQ(shmp_event_wait(e, NAN), -EINVAL); /* set, yet refused */
	T_EQ(shmp_event_wait(e, 0), 0);
	shmp_event_destroy(e);
}

static void test_barrier(void)
{
	kind = 4;
	BAD_OPTS(shmp_barrier_opts, shmp_barrier_create(2, opts_));
	T_NULL_ERRNO(shmp_barrier_create(0, NULL), EINVAL);
	T_NULL_ERRNO(shmp_barrier_create(SHMP_BARRIER_PARTIES_MAX + 1, NULL), EINVAL);
	struct shmp_barrier_opts o = SHMP_OPTS(shmp_barrier_opts, .timeout = NAN);
	T_NULL_ERRNO(shmp_barrier_create(2, &o), EINVAL);
	shmp_barrier_destroy(NULL);
	T_EQ(shmp_barrier_wait(NULL, 0), -EINVAL);
	T_EQ(shmp_barrier_abort(NULL), -EINVAL);
	T_EQ(shmp_barrier_reset(NULL), -EINVAL);
	T_EQ(shmp_barrier_parties(NULL), -EINVAL);
	T_EQ(shmp_barrier_n_waiting(NULL), -EINVAL);
	T_EQ(shmp_barrier_is_broken(NULL), -EINVAL);
	shmp_barrier_t *b = shmp_barrier_create(1, NULL);
	T_CHECK(b);
	T_EQ(shmp_barrier_wait(b, NAN), -EINVAL); /* would pass, yet refused */
	T_EQ(shmp_barrier_wait(b, 0), 0);
	shmp_barrier_destroy(b);
}

static void test_value_array(void)
{
	int64_t x = 0;
	double y = 0;
	char buf[16];
	T_EQ(shmp_typecode_size('x'), -EINVAL);
	T_NULL_ERRNO(shmp_value_create('x', NULL, NULL), EINVAL);
	T_NULL_ERRNO(shmp_array_create('x', 3, NULL, NULL), EINVAL);
	T_NULL_ERRNO(shmp_array_create('i', 0, NULL, NULL), EINVAL);
	kind = 5;
	BAD_OPTS(shmp_value_opts, shmp_value_create('i', NULL, opts_));
	kind = 6;
	BAD_OPTS(shmp_value_opts, shmp_array_create('i', 2, NULL, opts_));
	shmp_lock_t *l = shmp_lock_create(NULL);
	T_CHECK(l);
	struct shmp_value_opts o = SHMP_OPTS(shmp_value_opts, .raw = 1, .lock = l);
	T_NULL_ERRNO(shmp_value_create('i', NULL, &o), EINVAL);

	shmp_value_destroy(NULL);
	shmp_array_destroy(NULL);
	T_EQ(shmp_value_get(NULL, buf), -EINVAL);
	T_EQ(shmp_value_set(NULL, buf), -EINVAL);
	T_EQ(shmp_value_get_i64(NULL, &x), -EINVAL);
	T_EQ(shmp_value_set_i64(NULL, 1), -EINVAL);
	T_EQ(shmp_value_get_f64(NULL, &y), -EINVAL);
	T_EQ(shmp_value_set_f64(NULL, 1), -EINVAL);
	T_EQ(shmp_value_load(NULL, &x), -EINVAL);
	T_EQ(shmp_value_store(NULL, 1), -EINVAL);
	T_EQ(shmp_value_add(NULL, 1, &x), -EINVAL);
	T_EQ(shmp_value_cas(NULL, &x, 1), -EINVAL);
	T_NULL_ERRNO(shmp_value_ptr(NULL), EINVAL);
	T_NULL_ERRNO(shmp_value_lock(NULL), EINVAL);
	T_EQ(shmp_value_typecode(NULL), 0);
	T_EQ(shmp_array_len(NULL), 0);
	T_EQ(shmp_array_typecode(NULL), 0);
	T_EQ(shmp_array_get(NULL, 0, buf), -EINVAL);
	T_EQ(shmp_array_set(NULL, 0, buf), -EINVAL);
	T_EQ(shmp_array_get_i64(NULL, 0, &x), -EINVAL);
	T_EQ(shmp_array_set_i64(NULL, 0, 1), -EINVAL);
	T_EQ(shmp_array_get_f64(NULL, 0, &y), -EINVAL);
	T_EQ(shmp_array_set_f64(NULL, 0, 1), -EINVAL);
	T_EQ(shmp_array_read(NULL, 0, 1, buf), -EINVAL);
	T_EQ(shmp_array_write(NULL, 0, 1, buf), -EINVAL);
	T_EQ(shmp_array_load(NULL, 0, &x), -EINVAL);
	T_EQ(shmp_array_store(NULL, 0, 1), -EINVAL);
	T_EQ(shmp_array_add(NULL, 0, 1, &x), -EINVAL);
	T_EQ(shmp_array_cas(NULL, 0, &x, 1), -EINVAL);
	T_NULL_ERRNO(shmp_array_ptr(NULL), EINVAL);
	T_NULL_ERRNO(shmp_array_lock(NULL), EINVAL);

	/* NULL results and inputs, ranges, kinds. */
	shmp_value_t *v = shmp_value_create('i', NULL, NULL);
	shmp_value_t *d = shmp_value_create('d', NULL, NULL);
	shmp_array_t *a = shmp_array_create('h', 4, NULL, NULL);
	T_CHECK(v && d && a);
	T_EQ(shmp_value_get(v, NULL), -EINVAL);
	T_EQ(shmp_value_set(v, NULL), -EINVAL);
	T_EQ(shmp_value_get_i64(v, NULL), -EINVAL);
	T_EQ(shmp_value_get_f64(v, NULL), -EINVAL);
	T_EQ(shmp_value_load(v, NULL), -EINVAL);
	T_EQ(shmp_value_cas(v, NULL, 1), -EINVAL);
	T_EQ(shmp_value_load(d, &x), -EINVAL);
	T_EQ(shmp_value_add(d, 1, NULL), -EINVAL);
	T_EQ(shmp_array_get(a, 4, buf), -ERANGE);
	T_EQ(shmp_array_set(a, 4, buf), -ERANGE);
	T_EQ(shmp_array_read(a, 3, 2, buf), -ERANGE);
	T_EQ(shmp_array_read(a, 0, 4, NULL), -EINVAL);
	T_EQ(shmp_array_load(a, 4, &x), -ERANGE);
	T_EQ(shmp_array_get_i64(a, 0, NULL), -EINVAL);
	/* Sharing a (non-reentrant) Lock that this thread holds. */
	struct shmp_value_opts lo = SHMP_OPTS(shmp_value_opts, .lock = l);
	shmp_value_t *vl = shmp_value_create('q', NULL, &lo);
	T_CHECK(vl);
	T_CHECK(shmp_value_lock(vl) == l);
	T_EQ(shmp_lock_acquire(l, 0), 0);
	T_EQ(shmp_value_get_i64(vl, &x), -EDEADLK);
	T_EQ(shmp_lock_release(l), 0);
	T_EQ(shmp_value_get_i64(vl, &x), 0);
	/* Raw: no lock. */
	shmp_value_t *raw = t_raw_value('i');
	T_NULL_ERRNO(shmp_value_lock(raw), ENOLCK);
	shmp_value_destroy(raw);
	shmp_value_destroy(vl);
	shmp_value_destroy(v);
	shmp_value_destroy(d);
	shmp_array_destroy(a);
	shmp_lock_destroy(l);
}

int main(void)
{
	t_watchdog(30);
	test_lock();
	test_sem();
	test_cond();
	test_event();
	test_barrier();
	test_value_array();
	return 0;
}
