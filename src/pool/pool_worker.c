/* private: the loop every worker runs, process or thread: claim a task,
 * check it, run it, report it (the task table's side of each step is in
 * tasktab.c; the two kinds of workers are started in pool_zygote.c and
 * pool_threads.c).
 *
 * Crash safety: a worker killed anywhere in here leaves its task QUEUED,
 * RUNNING under its name or DONE: tasktab.c says what becomes of each. A
 * forged task is never run: its tag is checked first; a function or a data
 * reference that does not resolve in this worker fails the task instead. */
#include "pool_internal.h"

#include <stdio.h>

/* ---- task functions: offsets back to addresses, checked ------------- */

static _Atomic uintptr_t fn_ok[16];

/* Is a in an executable mapping of this process? A corrupted record must
 * not make a worker jump anywhere. Checked once per distinct function. */
bool shmp__code_address(uintptr_t a)
{
	for (unsigned i = 0; i < 16; i++)
		if (atomic_load_explicit(&fn_ok[i], memory_order_relaxed) == a)
			return true;
	FILE *f = fopen("/proc/self/maps", "re");
	if (!f)
		return false;
	char line[512];
	bool ok = false;
	while (!ok && fgets(line, sizeof line, f)) {
		unsigned long lo, hi;
		char perms[8];
		if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3 && perms[2] == 'x' && a >= lo && a < hi)
			ok = true;
	}
	fclose(f);
	if (ok)
		atomic_store_explicit(&fn_ok[(a >> 4) % 16], a, memory_order_relaxed);
	return ok;
}

static shmp_task_fn fn_at(uint64_t off)
{
	uintptr_t a = (uintptr_t)&shmp_pool_create + (uintptr_t)off;
	return shmp__code_address(a) ? (shmp_task_fn)a : NULL;
}

/* ---- task data ------------------------------------------------------- */

static char empty_item[64] __attribute__((aligned(64)));

static char *resolve(struct shmp_pool *p, uint64_t seq, const struct shmp__task *t, const struct shmp__desc *d,
		     size_t len, bool input)
{
	switch (d->kind) {
	case SHMP__DESC_NONE:
		return len == 0 ? empty_item : NULL;
	case SHMP__DESC_INLINE:
		return shmp__tt_inline(&p->tt, seq, d->a, len);
	case SHMP__DESC_SEG:
		return arena_ptr(p, d->a, len);
	case SHMP__DESC_REF:
		return shmp__maps_resolve(d->a, d->b, len);
	case SHMP__DESC_LOCAL: {
		if (!p->wops->shares_memory)
			return NULL; /* only a thread shares the caller's memory */
		struct shmp_async *c = shmp__call_lookup(p, t->call, t->call_gen);
		if (!c)
			return NULL;
		size_t total = input ? c->n * c->in_size : (c->kind == CALL_APPLY ? c->out_size : c->n * c->out_size);
		char *base = input ? (char *)c->in : c->out;
		if (!base || d->b > total || len > total - d->b)
			return NULL;
		return base + d->b;
	}
	default:
		return NULL;
	}
}

static void run_task(struct shmp_pool *p, unsigned w, uint64_t seq, void *user)
{
	struct shmp__wk *wk = &p->wk[w];
	/* One copy of what was submitted, checked against its tag: from here
	 * on nothing of the task is read from shared memory again. */
	struct shmp__task t;
	bool genuine = shmp__tt_take(&p->tt, seq, &t);
	atomic_store_explicit(&wk->cur_index, t.first, memory_order_relaxed);
	atomic_store_explicit(&wk->state, SHMP_WORKER_BUSY, memory_order_relaxed);
	size_t in_size = t.in_size, out_size = t.out_size, count = t.count;
	shmp_task_fn fn = genuine ? fn_at(t.fn) : NULL;
	bool sizes_ok = genuine && count <= (1u << 30);
	char *in = sizes_ok ? resolve(p, seq, &t, &t.in, count * in_size, true) : NULL;
	char *out = sizes_ok ? resolve(p, seq, &t, &t.out, count * out_size, false) : NULL;
	/* (A process worker is its process's one thread: its tid is its pid.) */
	struct shmp__tt_result res = { .pid = shmp__tid(), .fail_index = t.first };
	if (!genuine) {
		/* Not what the pool submitted: never run it. */
		res.status = -SHMP_ECORRUPT;
	} else if (!fn) {
		/* The caller checked it too: a function not in an executable
		 * mapping of this worker (a library loaded after the pool). */
		res.status = -SHMP_EBADFN;
	} else if (!in || !out) {
		res.status = -SHMP_ECORRUPT;
	} else {
		struct shmp_task_ctx ctx = { .arg_size = in_size, .result_size = out_size, .worker = w,
					     .user = user };
		for (size_t i = 0; i < count; i++) {
			ctx.index = t.first + i;
			int rc = fn(in + i * in_size, out + i * out_size, &ctx);
			if (rc) {
				res.status = -SHMP_ETASK;
				res.code = rc;
				res.fail_index = t.first + i;
				break;
			}
		}
	}
	/* Idle before DONE: whoever sees the task finished sees the worker
	 * free (the progress counters add up). */
	atomic_fetch_add_explicit(&wk->tasks_done, 1, memory_order_relaxed);
	atomic_store_explicit(&wk->state, SHMP_WORKER_IDLE, memory_order_relaxed);
	shmp__tt_done(&p->tt, seq, w, &t, &res);
}

/* The loop every worker runs, until told to stop or retired by
 * max_tasks_per_child (a planned exit). */
static void work(struct shmp_pool *p, unsigned w, void *user)
{
	struct shmp__wk *wk = &p->wk[w];
	uint64_t done = 0, seq;
	atomic_store_explicit(&wk->tasks_done, 0, memory_order_relaxed);
	atomic_store_explicit(&wk->state, SHMP_WORKER_IDLE, memory_order_relaxed);
	while (shmp__tt_claim(&p->tt, w, &seq)) {
		run_task(p, w, seq, user);
		if (p->max_tasks > 0 && ++done >= (uint64_t)p->max_tasks)
			break;
	}
	atomic_store_explicit(&wk->retired, 1, memory_order_relaxed);
	atomic_store_explicit(&wk->state, SHMP_WORKER_EXITED, memory_order_release);
}

/* Runs the initializer: 0, or what it returned (the pool is then broken). */
static int init_worker(struct shmp_pool *p, unsigned w, void **user)
{
	*user = NULL;
	atomic_store_explicit(&p->wk[w].retired, 0, memory_order_relaxed);
	atomic_store_explicit(&p->wk[w].init_failed, 0, memory_order_relaxed);
	int rc = p->init ? p->init(p->initarg, user) : 0;
	if (rc == 0)
		return 0;
	atomic_store_explicit(&p->wk[w].init_code, rc, memory_order_relaxed);
	atomic_store_explicit(&p->wk[w].init_failed, 1, memory_order_release);
	atomic_store_explicit(&p->wk[w].state, SHMP_WORKER_EXITED, memory_order_release);
	return rc;
}

int shmp__worker_loop(struct shmp_pool *p, unsigned w)
{
	void *user;
	int rc = init_worker(p, w, &user);
	if (rc == 0)
		work(p, w, user);
	return rc;
}
