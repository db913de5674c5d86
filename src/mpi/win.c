/* private: Value, Array and Lock on MPI one-sided windows.
 *
 * One window per object, allocated on the root rank (MPI_Win_allocate;
 * size 0 elsewhere), displacement unit 1. A Value's or Array's window
 * starts with its lock's owner word (8 bytes), then the items. Every rank
 * opens a shared passive-target epoch at create (MPI_Win_lock_all with
 * MPI_MODE_NOCHECK) and keeps it until destroy; each operation is
 * completed at the target (MPI_Win_flush) before the call returns, so
 * operations of one rank are ordered, and a release is seen only after
 * everything done under the lock.
 *
 * Items are read and written with accumulate operations (MPI_NO_OP,
 * MPI_REPLACE), which MPI makes atomic per element against the other
 * accumulates, MPI_Fetch_and_op and MPI_Compare_and_swap: a get never sees
 * half of a concurrent add, and raw objects are still element-wise atomic.
 *
 * The Lock: an owner word, 0 free or rank + 1, taken by compare-and-swap,
 * given back by an atomic replace. A waiter retries with a back-off from
 * 1 us doubling to 1 ms, sleeping (shmp's own sleep, so it honours
 * shmp_set_interruptible): no CPU is spun while another rank holds it.
 * Which thread of the owner rank holds it is process-local state.
 *
 * Handles belong to the process that made them: MPI allows no calls from
 * a forked child, so there every call is -ECHILD and destroy only frees
 * the child's copy of the handle.
 */
#include "mpi_internal.h"
#include "../core/typecode.h"

#include <stdlib.h>
#include <unistd.h>

#define DATA_OFF 8 /* the lock word (32 bits) comes first */

struct shmp_mpi_lock {
	pid_t creator;
	MPI_Win win;
	int rank, root;
	MPI_Aint disp;
	bool recursive, embedded;
	MPI_Comm comm; /* own window only */
	pthread_mutex_t mu;
	bool held;
	pthread_t owner;
	int count;
};

struct obj {
	pid_t creator;
	MPI_Comm comm;
	MPI_Win win;
	int rank, root;
	char typecode;
	size_t isz, len;
	MPI_Datatype dt;
	bool is_int, raw;
	shmp_mpi_lock_t *lock; /* own_lock, a caller's, or NULL (raw) */
	shmp_mpi_lock_t own_lock;
};

struct shmp_mpi_value {
	struct obj o;
};
struct shmp_mpi_array {
	struct obj o;
};

static MPI_Datatype dt_of(char tc)
{
	switch (tc) {
	case 'b': case 'c': return MPI_INT8_T;
	case 'B': case '?': return MPI_UINT8_T;
	case 'h': return MPI_INT16_T;
	case 'H': return MPI_UINT16_T;
	case 'i': return MPI_INT32_T;
	case 'I': return MPI_UINT32_T;
	case 'l': case 'q': return MPI_INT64_T;
	case 'L': case 'Q': return MPI_UINT64_T;
	case 'f': return MPI_FLOAT;
	case 'd': return MPI_DOUBLE;
	default: return MPI_DATATYPE_NULL;
	}
}

static bool tc_is_int(char tc)
{
	return tc != 'f' && tc != 'd' && tc != 'c' && tc != '?';
}

/* Collective: the worst error of all ranks (codes are positive). */
static int agree(MPI_Comm comm, int err)
{
	int e = -err, w = 0;
	MPI_Allreduce(&e, &w, 1, MPI_INT, MPI_MAX, comm);
	return -w;
}

static int comm_ok(MPI_Comm comm)
{
	int init = 0, inter = 0;
	MPI_Initialized(&init);
	if (!init || comm == MPI_COMM_NULL || MPI_Comm_test_inter(comm, &inter) != MPI_SUCCESS || inter)
		return -EINVAL;
	return 0;
}

/* 1 if every rank of comm shares this machine's memory. Collective. */
static int one_node(MPI_Comm comm)
{
	MPI_Comm node;
	int n = 0, size = 0;
	MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
	MPI_Comm_size(node, &n);
	MPI_Comm_size(comm, &size);
	MPI_Comm_free(&node);
	int mine = n == size, all = 0;
	MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, comm);
	return all;
}

/* Allocate the window (root: bytes, zeroed then init at DATA_OFF) and open
 * the epoch. Collective.
 *
 * On one machine the window is a shared-memory one (MPI_Win_allocate_shared,
 * the MPI library's shared-memory path): the fastest there, and Open MPI
 * 4.1's MPI_Win_allocate windows crash in 64-bit MPI_Compare_and_swap
 * between ranks of one node (its issue 7967; btl/vader's emulated
 * atomics). The lock word is 32 bits for the same reason. */
static void win_open(MPI_Comm comm, int root, size_t bytes, const void *init, size_t init_bytes, MPI_Win *win)
{
	int rank;
	MPI_Comm_rank(comm, &rank);
	void *base = NULL;
	MPI_Aint sz = rank == root ? (MPI_Aint)bytes : 0;
	if (one_node(comm))
		MPI_Win_allocate_shared(sz, 1, MPI_INFO_NULL, comm, &base, win);
	else
		MPI_Win_allocate(sz, 1, MPI_INFO_NULL, comm, &base, win);
	if (rank == root) {
		memset(base, 0, bytes);
		if (init && init_bytes)
			memcpy((char *)base + DATA_OFF, init, init_bytes);
	}
	MPI_Win_lock_all(MPI_MODE_NOCHECK, *win);
	MPI_Win_sync(*win); /* the root's stores into the public copy */
	MPI_Barrier(comm);
}

static void win_close(MPI_Win *win)
{
	MPI_Win_unlock_all(*win);
	MPI_Win_free(win);
}

/* ---- Lock ------------------------------------------------------------- */

static void lock_init(shmp_mpi_lock_t *l, MPI_Win win, int rank, int root, MPI_Aint disp, bool rec)
{
	*l = (shmp_mpi_lock_t){ .creator = getpid(), .win = win, .rank = rank, .root = root, .disp = disp,
				.recursive = rec, .comm = MPI_COMM_NULL };
	pthread_mutex_init(&l->mu, NULL);
}

static shmp_mpi_lock_t *lock_new(MPI_Comm comm, const struct shmp_mpi_lock_opts *opts, bool rec)
{
	struct shmp_mpi_lock_opts o;
	int r = comm_ok(comm);
	if (r < 0) {
		errno = -r;
		return NULL;
	}
	r = shmp__opts_load(&o, sizeof o, opts);
	int size;
	MPI_Comm_size(comm, &size);
	if (!r && (o.root < 0 || o.root >= size))
		r = -EINVAL;
	shmp_mpi_lock_t *l = calloc(1, sizeof *l);
	if (!l)
		r = -ENOMEM;
	if ((r = agree(comm, r)) < 0) {
		free(l);
		errno = -r;
		return NULL;
	}
	MPI_Comm dup;
	MPI_Comm_dup(comm, &dup);
	int rank;
	MPI_Comm_rank(dup, &rank);
	MPI_Win win;
	win_open(dup, o.root, 8, NULL, 0, &win);
	lock_init(l, win, rank, o.root, 0, rec);
	l->comm = dup;
	return l;
}

shmp_mpi_lock_t *shmp_mpi_lock_create(MPI_Comm comm, const struct shmp_mpi_lock_opts *opts)
{
	return lock_new(comm, opts, false);
}

shmp_mpi_lock_t *shmp_mpi_rlock_create(MPI_Comm comm, const struct shmp_mpi_lock_opts *opts)
{
	return lock_new(comm, opts, true);
}

void shmp_mpi_lock_destroy(shmp_mpi_lock_t *l)
{
	if (!l || l->embedded)
		return;
	if (!shmp__mpi_foreign(l->creator)) {
		win_close(&l->win);
		MPI_Comm_free(&l->comm);
		pthread_mutex_destroy(&l->mu);
	}
	free(l);
}

static int32_t word_op(shmp_mpi_lock_t *l, const int32_t *in, MPI_Op op)
{
	int32_t old = 0;
	MPI_Fetch_and_op(in, &old, MPI_INT32_T, l->root, l->disp, op, l->win);
	MPI_Win_flush(l->root, l->win);
	return old;
}

int shmp_mpi_lock_acquire(shmp_mpi_lock_t *l, double timeout)
{
	if (!l)
		return -EINVAL;
	double deadline;
	int r = shmp__mpi_wait_begin(l->creator, timeout, &deadline);
	if (r < 0)
		return r;
	pthread_t self = pthread_self();
	pthread_mutex_lock(&l->mu);
	if (l->held && pthread_equal(l->owner, self)) {
		r = l->recursive ? (l->count++, 0) : -EDEADLK;
		pthread_mutex_unlock(&l->mu);
		return r;
	}
	pthread_mutex_unlock(&l->mu);
	int32_t me = l->rank + 1, zero = 0, old = 0;
	double pause = 1e-6;
	for (;;) {
		MPI_Compare_and_swap(&me, &zero, &old, MPI_INT32_T, l->root, l->disp, l->win);
		MPI_Win_flush(l->root, l->win);
		if (old == 0)
			break;
		double left = shmp__mpi_left(deadline);
		if (left <= 0)
			return -ETIMEDOUT;
		if (shmp__mpi_sleep(pause < left ? pause : left) == -EINTR)
			return -EINTR;
		pause = pause * 2 < 1e-3 ? pause * 2 : 1e-3;
	}
	pthread_mutex_lock(&l->mu);
	l->held = true;
	l->owner = self;
	l->count = 1;
	pthread_mutex_unlock(&l->mu);
	return 0;
}

int shmp_mpi_lock_release(shmp_mpi_lock_t *l)
{
	if (!l)
		return -EINVAL;
	if (shmp__mpi_foreign(l->creator))
		return -ECHILD;
	pthread_mutex_lock(&l->mu);
	if (!l->held || !pthread_equal(l->owner, pthread_self())) {
		pthread_mutex_unlock(&l->mu);
		return -EPERM;
	}
	if (--l->count > 0) {
		pthread_mutex_unlock(&l->mu);
		return 0;
	}
	l->held = false;
	pthread_mutex_unlock(&l->mu);
	int32_t zero = 0;
	word_op(l, &zero, MPI_REPLACE);
	return 0;
}

int shmp_mpi_lock_is_locked(shmp_mpi_lock_t *l)
{
	if (!l)
		return -EINVAL;
	if (shmp__mpi_foreign(l->creator))
		return -ECHILD;
	return word_op(l, NULL, MPI_NO_OP) != 0;
}

int shmp_mpi_lock_owner(shmp_mpi_lock_t *l, int *rank)
{
	if (!l)
		return -EINVAL;
	if (shmp__mpi_foreign(l->creator))
		return -ECHILD;
	int32_t w = word_op(l, NULL, MPI_NO_OP);
	if (w == 0)
		return 0;
	if (rank)
		*rank = (int)(w - 1);
	return 1;
}

int shmp_mpi_lock_count(const shmp_mpi_lock_t *l)
{
	if (!l)
		return -EINVAL;
	shmp_mpi_lock_t *m = (shmp_mpi_lock_t *)l;
	pthread_mutex_lock(&m->mu);
	int c = m->held && pthread_equal(m->owner, pthread_self()) ? m->count : 0;
	pthread_mutex_unlock(&m->mu);
	return c;
}

int shmp_mpi_lock_is_recursive(const shmp_mpi_lock_t *l)
{
	return l ? l->recursive : -EINVAL;
}

/* ---- Value and Array --------------------------------------------------- */

static int obj_init(struct obj *o, MPI_Comm comm, char tc, size_t len, const void *init,
		    const struct shmp_mpi_value_opts *opts)
{
	struct shmp_mpi_value_opts vo;
	int r = comm_ok(comm);
	if (r < 0)
		return r;
	r = shmp__opts_load(&vo, sizeof vo, opts);
	int size, isz = shmp_typecode_size(tc);
	MPI_Comm_size(comm, &size);
	if (!r && (isz < 0 || dt_of(tc) == MPI_DATATYPE_NULL || len == 0 || vo.root < 0 || vo.root >= size ||
		   (vo.raw && vo.lock) || len > (SIZE_MAX - DATA_OFF) / (size_t)isz ||
		   (vo.lock && shmp__mpi_foreign(vo.lock->creator))))
		r = -EINVAL;
	if ((r = agree(comm, r)) < 0)
		return r;
	MPI_Comm_dup(comm, &o->comm);
	MPI_Comm_rank(o->comm, &o->rank);
	o->creator = getpid();
	o->root = vo.root;
	o->typecode = tc;
	o->isz = (size_t)isz;
	o->len = len;
	o->dt = dt_of(tc);
	o->is_int = tc_is_int(tc);
	o->raw = vo.raw;
	win_open(o->comm, o->root, DATA_OFF + len * o->isz, o->rank == o->root ? init : NULL, len * o->isz,
		 &o->win);
	if (vo.lock) {
		o->lock = vo.lock;
	} else if (!vo.raw) {
		lock_init(&o->own_lock, o->win, o->rank, o->root, 0, true);
		o->own_lock.embedded = true;
		o->lock = &o->own_lock;
	}
	return 0;
}

static void obj_fini(struct obj *o)
{
	if (!shmp__mpi_foreign(o->creator)) {
		win_close(&o->win);
		MPI_Comm_free(&o->comm);
		if (o->lock == &o->own_lock)
			pthread_mutex_destroy(&o->own_lock.mu);
	}
}

static int obj_check(const struct obj *o, size_t i, size_t count)
{
	if (!o)
		return -EINVAL;
	if (shmp__mpi_foreign(o->creator))
		return -ECHILD;
	if (i > o->len || count > o->len - i)
		return -ERANGE;
	return 0;
}

static MPI_Aint disp_of(const struct obj *o, size_t i)
{
	return (MPI_Aint)(DATA_OFF + i * o->isz);
}

static int sync_begin(struct obj *o)
{
	if (!o->lock)
		return 0;
	return shmp_mpi_lock_acquire(o->lock, SHMP_FOREVER);
}

static void sync_end(struct obj *o)
{
	if (o->lock)
		shmp_mpi_lock_release(o->lock);
}

/* Items [i, i+count) out (read) or in, element-wise atomic; MPI counts
 * are ints, so large ranges go in pieces. */
static void xfer(struct obj *o, size_t i, size_t count, void *buf, bool read)
{
	size_t step = (size_t)(INT32_MAX / 2) / o->isz;
	for (size_t done = 0; done < count;) {
		int n = (int)(count - done < step ? count - done : step);
		char *b = (char *)buf + done * o->isz;
		if (read)
			MPI_Get_accumulate(NULL, 0, o->dt, b, n, o->dt, o->root, disp_of(o, i + done), n, o->dt,
					   MPI_NO_OP, o->win);
		else
			MPI_Accumulate(b, n, o->dt, o->root, disp_of(o, i + done), n, o->dt, MPI_REPLACE, o->win);
		MPI_Win_flush(o->root, o->win);
		done += (size_t)n;
	}
}

static int obj_copy(struct obj *o, size_t i, size_t count, void *buf, bool read)
{
	int r = obj_check(o, i, count);
	if (r < 0)
		return r;
	if (!buf && count)
		return -EINVAL;
	if ((r = sync_begin(o)) < 0)
		return r;
	xfer(o, i, count, buf, read);
	sync_end(o);
	return 0;
}

static int obj_get_num(struct obj *o, size_t i, int64_t *iv, double *dv)
{
	unsigned char buf[8] = { 0 };
	int r = obj_copy(o, i, 1, buf, true);
	return r < 0 ? r : shmp__item_decode(o->typecode, buf, iv, dv);
}

static int obj_set_num(struct obj *o, size_t i, int64_t x, double y, bool from_double)
{
	unsigned char buf[8] = { 0 };
	if (!o)
		return -EINVAL;
	int r = shmp__item_encode(o->typecode, buf, x, y, from_double);
	return r < 0 ? r : obj_copy(o, i, 1, buf, false);
}

static int64_t from_int_item(char tc, const void *buf)
{
	switch (tc) {
	case 'b': return *(const int8_t *)buf;
	case 'B': return *(const uint8_t *)buf;
	case 'h': return *(const int16_t *)buf;
	case 'H': return *(const uint16_t *)buf;
	case 'i': return *(const int32_t *)buf;
	case 'I': return *(const uint32_t *)buf;
	default: return (int64_t) * (const uint64_t *)buf;
	}
}

enum aop { A_LOAD, A_STORE, A_ADD, A_CAS };

/* Lock-free: one MPI atomic, flushed. CAS returns 1/0. */
static int obj_atomic(struct obj *o, size_t i, enum aop op, int64_t arg, int64_t *io, int64_t desired)
{
	int r = obj_check(o, i, 1);
	if (r < 0)
		return r;
	if (!o->is_int)
		return -EINVAL;
	unsigned char a[8] = { 0 }, b[8] = { 0 }, old[8] = { 0 };
	MPI_Aint d = disp_of(o, i);
	switch (op) {
	case A_LOAD:
		MPI_Fetch_and_op(NULL, old, o->dt, o->root, d, MPI_NO_OP, o->win);
		break;
	case A_STORE:
		(void)shmp__item_encode(o->typecode, a, arg, 0, false); /* an integer item: no error */
		MPI_Accumulate(a, 1, o->dt, o->root, d, 1, o->dt, MPI_REPLACE, o->win);
		break;
	case A_ADD:
		(void)shmp__item_encode(o->typecode, a, arg, 0, false); /* an integer item: no error */
		MPI_Fetch_and_op(a, old, o->dt, o->root, d, MPI_SUM, o->win);
		break;
	case A_CAS:
		(void)shmp__item_encode(o->typecode, a, desired, 0, false);
		(void)shmp__item_encode(o->typecode, b, *io, 0, false);
		MPI_Compare_and_swap(a, b, old, o->dt, o->root, d, o->win);
		break;
	}
	MPI_Win_flush(o->root, o->win);
	int64_t v = from_int_item(o->typecode, old);
	switch (op) {
	case A_LOAD:
		*io = v;
		return 0;
	case A_ADD:
		if (io)
			*io = v;
		return 0;
	case A_CAS:
		if (memcmp(old, b, o->isz) == 0)
			return 1;
		*io = v;
		return 0;
	default:
		return 0;
	}
}

static shmp_mpi_lock_t *obj_lock(struct obj *o)
{
	if (!o) {
		errno = EINVAL;
		return NULL;
	}
	if (!o->lock)
		errno = ENOLCK;
	return o->lock;
}

/* A Value's or an Array's handle: its obj and nothing else. */
_Static_assert(sizeof(struct shmp_mpi_value) == sizeof(struct obj), "a Value is its obj");
_Static_assert(sizeof(struct shmp_mpi_array) == sizeof(struct obj), "an Array is its obj");

/* Collective, as obj_init: a rank that cannot allocate still votes, so
 * that the others fail with it instead of waiting. */
static struct obj *obj_new(MPI_Comm comm, char tc, size_t len, const void *init,
			   const struct shmp_mpi_value_opts *opts)
{
	struct obj *o = calloc(1, sizeof *o);
	if (!o) {
		if (comm_ok(comm) == 0)
			agree(comm, -ENOMEM);
		errno = ENOMEM;
		return NULL;
	}
	int r = obj_init(o, comm, tc, len, init, opts);
	if (r < 0) {
		free(o);
		errno = -r;
		return NULL;
	}
	return o;
}

static void obj_free(struct obj *o)
{
	if (!o)
		return;
	obj_fini(o);
	free(o);
}

shmp_mpi_value_t *shmp_mpi_value_create(MPI_Comm comm, char typecode, const void *init,
					const struct shmp_mpi_value_opts *opts)
{
	return (shmp_mpi_value_t *)obj_new(comm, typecode, 1, init, opts);
}

void shmp_mpi_value_destroy(shmp_mpi_value_t *v)
{
	obj_free(v ? &v->o : NULL);
}

int shmp_mpi_value_get(shmp_mpi_value_t *v, void *out)
{
	return v ? obj_copy(&v->o, 0, 1, out, true) : -EINVAL;
}
int shmp_mpi_value_set(shmp_mpi_value_t *v, const void *in)
{
	return v ? obj_copy(&v->o, 0, 1, (void *)in, false) : -EINVAL;
}
int shmp_mpi_value_get_i64(shmp_mpi_value_t *v, int64_t *out)
{
	return v && out ? obj_get_num(&v->o, 0, out, NULL) : -EINVAL;
}
int shmp_mpi_value_set_i64(shmp_mpi_value_t *v, int64_t x)
{
	return v ? obj_set_num(&v->o, 0, x, 0, false) : -EINVAL;
}
int shmp_mpi_value_get_f64(shmp_mpi_value_t *v, double *out)
{
	return v && out ? obj_get_num(&v->o, 0, NULL, out) : -EINVAL;
}
int shmp_mpi_value_set_f64(shmp_mpi_value_t *v, double x)
{
	return v ? obj_set_num(&v->o, 0, 0, x, true) : -EINVAL;
}
int shmp_mpi_value_load(shmp_mpi_value_t *v, int64_t *out)
{
	return v && out ? obj_atomic(&v->o, 0, A_LOAD, 0, out, 0) : -EINVAL;
}
int shmp_mpi_value_store(shmp_mpi_value_t *v, int64_t x)
{
	return v ? obj_atomic(&v->o, 0, A_STORE, x, NULL, 0) : -EINVAL;
}
int shmp_mpi_value_add(shmp_mpi_value_t *v, int64_t delta, int64_t *prev)
{
	return v ? obj_atomic(&v->o, 0, A_ADD, delta, prev, 0) : -EINVAL;
}
int shmp_mpi_value_cas(shmp_mpi_value_t *v, int64_t *expected, int64_t desired)
{
	return v && expected ? obj_atomic(&v->o, 0, A_CAS, 0, expected, desired) : -EINVAL;
}
shmp_mpi_lock_t *shmp_mpi_value_lock(shmp_mpi_value_t *v)
{
	return obj_lock(v ? &v->o : NULL);
}
char shmp_mpi_value_typecode(const shmp_mpi_value_t *v)
{
	return v ? v->o.typecode : 0;
}

shmp_mpi_array_t *shmp_mpi_array_create(MPI_Comm comm, char typecode, size_t length, const void *init,
					const struct shmp_mpi_value_opts *opts)
{
	return (shmp_mpi_array_t *)obj_new(comm, typecode, length, init, opts);
}

void shmp_mpi_array_destroy(shmp_mpi_array_t *a)
{
	obj_free(a ? &a->o : NULL);
}

size_t shmp_mpi_array_len(const shmp_mpi_array_t *a)
{
	return a ? a->o.len : 0;
}
char shmp_mpi_array_typecode(const shmp_mpi_array_t *a)
{
	return a ? a->o.typecode : 0;
}
int shmp_mpi_array_get(shmp_mpi_array_t *a, size_t i, void *out)
{
	if (a && i >= a->o.len)
		return -ERANGE;
	return a ? obj_copy(&a->o, i, 1, out, true) : -EINVAL;
}
int shmp_mpi_array_set(shmp_mpi_array_t *a, size_t i, const void *in)
{
	if (a && i >= a->o.len)
		return -ERANGE;
	return a ? obj_copy(&a->o, i, 1, (void *)in, false) : -EINVAL;
}
int shmp_mpi_array_get_i64(shmp_mpi_array_t *a, size_t i, int64_t *out)
{
	if (a && i >= a->o.len)
		return -ERANGE;
	return a && out ? obj_get_num(&a->o, i, out, NULL) : -EINVAL;
}
int shmp_mpi_array_set_i64(shmp_mpi_array_t *a, size_t i, int64_t x)
{
	if (a && i >= a->o.len)
		return -ERANGE;
	return a ? obj_set_num(&a->o, i, x, 0, false) : -EINVAL;
}
int shmp_mpi_array_get_f64(shmp_mpi_array_t *a, size_t i, double *out)
{
	if (a && i >= a->o.len)
		return -ERANGE;
	return a && out ? obj_get_num(&a->o, i, NULL, out) : -EINVAL;
}
int shmp_mpi_array_set_f64(shmp_mpi_array_t *a, size_t i, double x)
{
	if (a && i >= a->o.len)
		return -ERANGE;
	return a ? obj_set_num(&a->o, i, 0, x, true) : -EINVAL;
}
int shmp_mpi_array_read(shmp_mpi_array_t *a, size_t start, size_t count, void *out)
{
	return a ? obj_copy(&a->o, start, count, out, true) : -EINVAL;
}
int shmp_mpi_array_write(shmp_mpi_array_t *a, size_t start, size_t count, const void *in)
{
	return a ? obj_copy(&a->o, start, count, (void *)in, false) : -EINVAL;
}
int shmp_mpi_array_load(shmp_mpi_array_t *a, size_t i, int64_t *out)
{
	if (a && i >= a->o.len)
		return -ERANGE;
	return a && out ? obj_atomic(&a->o, i, A_LOAD, 0, out, 0) : -EINVAL;
}
int shmp_mpi_array_store(shmp_mpi_array_t *a, size_t i, int64_t x)
{
	if (a && i >= a->o.len)
		return -ERANGE;
	return a ? obj_atomic(&a->o, i, A_STORE, x, NULL, 0) : -EINVAL;
}
int shmp_mpi_array_add(shmp_mpi_array_t *a, size_t i, int64_t delta, int64_t *prev)
{
	if (a && i >= a->o.len)
		return -ERANGE;
	return a ? obj_atomic(&a->o, i, A_ADD, delta, prev, 0) : -EINVAL;
}
int shmp_mpi_array_cas(shmp_mpi_array_t *a, size_t i, int64_t *expected, int64_t desired)
{
	if (a && i >= a->o.len)
		return -ERANGE;
	return a && expected ? obj_atomic(&a->o, i, A_CAS, 0, expected, desired) : -EINVAL;
}
shmp_mpi_lock_t *shmp_mpi_array_lock(shmp_mpi_array_t *a)
{
	return obj_lock(a ? &a->o : NULL);
}
