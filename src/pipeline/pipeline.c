/* private: pipelines — stages of workers joined by rings.
 *
 * Stages are numbered in chain order: the file source (if any) first, the
 * file sink (if any) last. Ring k joins node k and node k+1, where this
 * process is node 0 when it is the source and the last node when it is the
 * sink. Every ring message is a pl_hdr followed by the payload.
 *
 * Worker processes are supervised by one thread of the creating process,
 * which waits on their pidfds (io_uring or ppoll, src/comm/waitset.c). When a
 * worker ends it tells whether it ended on purpose (its `done` flag, set
 * after its input closed and drained). When every worker of a stage has
 * ended so, the supervisor closes the stage's output ring: end of input
 * travels down the chain and each stage drains first. A worker that died
 * is either replaced (RESTART) or stops everything (STOP). Deciding this in
 * the supervisor rather than in the workers means a worker killed at any
 * instruction cannot leave a ring open forever. */
#include "pipeline_internal.h"
#include "registry_internal.h"
#include "types.h"
#include "waitset.h"

#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#define DEFAULT_CAPACITY 256u
#define DEFAULT_INLINE 256u
#define DEFAULT_MAX_MESSAGE ((size_t)1 << 20)
#define DEFAULT_SEGMENT ((size_t)256 << 20)
#define HDR sizeof(struct pl_hdr)

static int checked(shmp_pipeline_t *pl)
{
	return pl && pl->sh && pl->sh->magic == PL_MAGIC ? 0 : -EINVAL;
}

shmp_pipeline_t *shmp_pipeline_create(const struct shmp_pipeline_opts *opts)
{
	struct shmp_pipeline_opts o;
	if (SHMP__OPTS(o, opts) < 0 || (o.on_crash != SHMP_PIPELINE_STOP && o.on_crash != SHMP_PIPELINE_RESTART) ||
	    o.max_message > SHMP_RING_MAX_MESSAGE - HDR || o.capacity > (1u << 20) || o.inline_size > (1u << 20)) {
		errno = EINVAL;
		return NULL;
	}
	if (!o.capacity)
		o.capacity = DEFAULT_CAPACITY;
	if (!o.inline_size)
		o.inline_size = DEFAULT_INLINE;
	if (!o.max_message)
		o.max_message = DEFAULT_MAX_MESSAGE;
	shmp_pipeline_t *pl = aligned_alloc(SHMP__CACHELINE, sizeof *pl); /* see its `held` */
	if (!pl)
		return NULL;
	memset(pl, 0, sizeof *pl);
	pl->o = o;
	pl->o.name = NULL; /* the caller's string is used at create only */
	pl->o.registry = NULL; /* nor is the registry handle kept: its segment is */
	pl->efd = -1;
	pl->sink_fd = -1;
	pl->pid = getpid();
	pthread_mutex_init(&pl->mu, NULL);
	if (o.registry) {
		if (!(pl->seg = shmp_registry_segment(o.registry)))
			errno = EINVAL;
	} else if ((pl->seg = shmp_segment_create(NULL, o.segment_size ? o.segment_size : DEFAULT_SEGMENT, NULL))) {
		pl->own_seg = true;
	}
	uint64_t off;
	if (!pl->seg || !(pl->sh = shmp__alloc_ptr(pl->seg, sizeof *pl->sh, SHMP__CACHELINE, &off)))
		goto fail;
	pl->sh->version = PL_VERSION;
	pl->sh->on_crash = (uint32_t)o.on_crash;
	pl->sh->threads = o.threads != 0;
	atomic_store(&pl->sh->state, SHMP_PIPELINE_NEW);
	__atomic_store_n(&pl->sh->magic, PL_MAGIC, __ATOMIC_RELEASE);
	if (o.registry) {
		/* Named in the registry's directory, for `shmp show` and
		 * shmp_pipeline_inspect: a name taken is the caller's error. */
		int e = shmp__registry_add(pl->seg, o.name ? o.name : "pipeline", SHMP_TYPE_PIPELINE, off);
		if (e < 0) {
			shmp__free_ptr(pl->seg, pl->sh);
			errno = -e;
			goto fail;
		}
		pl->registered = true;
	}
	return pl;
fail:;
	int e = errno;
	if (pl->own_seg)
		shmp_segment_destroy(pl->seg);
	pthread_mutex_destroy(&pl->mu);
	free(pl);
	errno = e;
	return NULL;
}

static int add(shmp_pipeline_t *pl, const char *name, int kind, shmp_stage_fn fn, void *arg, unsigned workers)
{
	if (checked(pl) < 0 || !workers || workers > 1024 || (kind == KIND_FN && !fn))
		return -EINVAL;
	if (pl->started)
		return -EBUSY;
	if (pl->nst >= PL_MAX)
		return -ENOSPC;
	for (int i = 0; i < pl->nst; i++)
		if (kind != KIND_FN && pl->st[i].kind == kind)
			return -EBUSY; /* one file source, one file sink */
	/* Keep chain order: source first, sink last. */
	int at = pl->nst;
	if (kind == KIND_FILE_SOURCE)
		at = 0;
	else if (kind == KIND_FN && pl->nst && pl->st[pl->nst - 1].kind == KIND_FILE_SINK)
		at = pl->nst - 1;
	memmove(&pl->st[at + 1], &pl->st[at], (size_t)(pl->nst - at) * sizeof pl->st[0]);
	struct pl_stage *s = &pl->st[at];
	memset(s, 0, sizeof *s);
	snprintf(s->name, sizeof s->name, "%s", name ? name : kind == KIND_FILE_SOURCE ? "file-source" :
						      kind == KIND_FILE_SINK ? "file-sink" : "stage");
	s->kind = kind;
	s->fn = fn;
	s->arg = arg;
	s->workers = workers;
	pl->nst++;
	return at + 1;
}

int shmp_pipeline_add_stage(shmp_pipeline_t *pl, const char *name, shmp_stage_fn fn, void *arg, unsigned workers)
{
	return add(pl, name, KIND_FN, fn, arg, workers);
}

int shmp_pipeline_add_file_source(shmp_pipeline_t *pl, const char *const *paths, unsigned n,
				  const struct shmp_file_source_opts *opts)
{
	struct shmp_file_source_opts o;
	if (checked(pl) < 0 || (!paths && n) || SHMP__OPTS(o, opts) < 0 || o.block_size > ((size_t)64 << 20) ||
	    o.depth > 256)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++)
		if (!paths[i])
			return -EINVAL;
	if (pl->paths || pl->started)
		return -EBUSY;
	char **copy = calloc(n ? n : 1, sizeof *copy);
	for (unsigned i = 0; copy && i < n; i++)
		if (!(copy[i] = strdup(paths[i]))) {
			while (i--)
				free(copy[i]);
			free(copy);
			copy = NULL;
		}
	if (!copy)
		return -ENOMEM;
	int r = add(pl, NULL, KIND_FILE_SOURCE, NULL, NULL, 1);
	if (r < 0) {
		for (unsigned i = 0; i < n; i++)
			free(copy[i]);
		free(copy);
		return r;
	}
	pl->paths = copy;
	pl->npaths = n;
	pl->block_size = o.block_size ? o.block_size : 65536;
	pl->depth = o.depth ? o.depth : 8;
	return r;
}

int shmp_pipeline_add_file_sink(shmp_pipeline_t *pl, int fd)
{
	if (fd < 0)
		return -EBADF;
	int r = add(pl, NULL, KIND_FILE_SINK, NULL, NULL, 1);
	if (r >= 0)
		pl->sink_fd = fd;
	return r;
}

/* ---- latency ------------------------------------------------------------ */

static unsigned hist_bucket(uint64_t v)
{
	if (v < 64)
		return (unsigned)v;
	unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= 6 */
	return 64 + (e - 6) * 32 + (unsigned)((v >> (e - 5)) & 31);
}

static uint64_t hist_value(unsigned b)
{
	if (b < 64)
		return b;
	unsigned e = (b - 64) / 32 + 6, sub = (b - 64) % 32;
	uint64_t lo = (32ull + sub) << (e - 5);
	return lo + (1ull << (e - 5)) / 2; /* the bucket's middle */
}

/* A counter only one thread writes: a plain add, not a locked one. A
 * locked add waits for every store before it to reach the cache, and the
 * sink's stores before it are to slot lines the other CPU holds: one
 * locked add per message cost a cross-core round trip each. */
static inline void add1(_Atomic uint64_t *c, uint64_t v)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v, memory_order_relaxed);
}

void shmp__pl_record(struct shmp__pl_sh *sh, uint64_t t0, uint64_t bytes)
{
	uint64_t now = shmp__now_ns(), v = now > t0 ? now - t0 : 0;
	add1(&sh->hist[hist_bucket(v)], 1);
	add1(&sh->lat_count, 1);
	add1(&sh->lat_sum, v);
	if (v > atomic_load_explicit(&sh->lat_max, memory_order_relaxed))
		atomic_store_explicit(&sh->lat_max, v, memory_order_relaxed);
	atomic_store_explicit(&sh->t_last_out, now, memory_order_relaxed);
	add1(&sh->msgs_out, 1);
	add1(&sh->bytes_out, bytes);
}

/* ---- workers ------------------------------------------------------------ */

static void set_state(struct shmp__pl_sh *sh, uint32_t s)
{
	atomic_store_explicit(&sh->state, s, memory_order_release);
	shmp__futex_wake(&sh->state, INT_MAX);
}

static void close_all(shmp_pipeline_t *pl)
{
	for (int i = 0; i < pl->nrings; i++)
		shmp_ring_close(pl->ring[i]);
}

bool shmp__pl_multi_cpu(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof set, &set) < 0)
		return true; /* more CPUs than a cpu_set_t holds */
	return CPU_COUNT(&set) > 1;
}

void shmp__pl_note_cpu(_Atomic uint32_t *w)
{
	int c = sched_getcpu(); /* rseq or the vDSO: no system call */
	uint32_t v = c < 0 ? 0 : (uint32_t)c + 1;
	if (atomic_load_explicit(w, memory_order_relaxed) != v)
		atomic_store_explicit(w, v, memory_order_relaxed);
}

void shmp__pl_flush(shmp_stage_ctx_t *ctx)
{
	if (ctx->unwoken_out) {
		shmp__ring_wake_consumers(ctx->out);
		ctx->unwoken_out = 0;
	}
	if (ctx->unwoken_in) {
		shmp__ring_wake_producers(ctx->inr);
		ctx->unwoken_in = 0;
	}
}

/* A spinning stage's budget, learned from how long its recent waits took:
 * a wait the spin caught, or one a longer spin would have caught (woken
 * within the bound), keeps room for twice that; one that slept longer
 * than the bound (the producer idle, or descheduled on a busy machine)
 * halves it. Bounded by PL_SPIN_MAX_NS whatever happens. */
static uint64_t spin_adapt(uint64_t budget, bool slept, uint64_t waited)
{
	if (!slept || waited < PL_SPIN_MAX_NS) {
		uint64_t want = 2 * waited;
		if (slept && want < 2 * budget)
			want = 2 * budget;
		if (want > budget)
			budget = want;
	} else {
		budget /= 2;
	}
	return budget > PL_SPIN_MAX_NS ? PL_SPIN_MAX_NS : budget < PL_SPIN_MIN_NS ? PL_SPIN_MIN_NS : budget;
}

/* The spin policy of a wait on the input of stage `stage` (or of the sink
 * when stage == nst): spinning pipelines spin (adaptively) unless this
 * thread has only one CPU, and stop as soon as every worker of the
 * stage before is asleep. Sleeping pipelines do not spin at all: on a busy
 * machine a spin before a sleep only delays the peer that shares our CPU. */
static void spin_init(shmp_pipeline_t *pl, int stage, struct shmp__ring_spin *sp, _Atomic uint32_t *self_idle)
{
	*sp = (struct shmp__ring_spin){ .self_idle = self_idle, .supervised = true };
	if (pl->o.spin && shmp__pl_multi_cpu())
		sp->max_ns = PL_SPIN_MAX_NS;
	if (stage > 0 && pl->st[stage - 1].kind == KIND_FN) {
		sp->peer_idle = &pl->sh->stage[stage - 1].idle;
		sp->peer_n = pl->st[stage - 1].workers;
		sp->peer_cpu = &pl->sh->stage[stage - 1].cpu;
	} else if (stage == 0) {
		sp->peer_cpu = &pl->sh->src_cpu;
	}
}

/* The loop of a stage function's worker: until its input is closed and
 * drained. It works in batches: it waits for one message, then takes, one
 * by one, up to PL_BATCH - 1 more that are ready, without waiting; it runs
 * fn on each, releasing each input as soon as fn returns and committing
 * each output without a wake check. After the batch (or before it would
 * block on a full output) it makes one wake check per ring. Each message is
 * claimed only when its turn comes, not as a range up front: a worker
 * killed mid-batch holds, as before batches, only the input it was working
 * on and the output it was writing (the supervisor frees and counts them:
 * pipeline.h's rule), never inputs it had not started. The claim costs the
 * same either way, since every slot must name its holder. */
static void fn_loop(shmp_pipeline_t *pl, int stage, int worker)
{
	struct pl_stage_sh *ss = &pl->sh->stage[stage]; /* counters only */
	struct pl_stage *s = &pl->st[stage];
	shmp_ring_t *in = pl->ring[s->in_ring];
	shmp_stage_ctx_t ctx = { .pl = pl, .stage = stage, .worker = worker, .inr = in,
				 .out = s->out_ring >= 0 ? pl->ring[s->out_ring] : NULL };
	struct shmp__ring_spin sp;
	spin_init(pl, stage, &sp, &ss->idle);
	bool spin = sp.max_ns != 0;
	/* The stage's only worker writes its count alone (a replacement
	 * starts after the dead one was reaped). */
	bool single = s->workers == 1;
	for (;;) {
		struct shmp_ring_ticket t;
		uint64_t t0 = spin ? shmp__now_ns() : 0;
		int r = shmp__ring_peek_batch(in, &t, 1, SHMP_FOREVER, &sp);
		if (r == -EINTR)
			continue; /* interruptible (inherited): the worker goes on */
		if (r < 0)
			break; /* closed and drained, or corrupt */
		if (spin) {
			sp.max_ns = spin_adapt(sp.max_ns, sp.slept, shmp__now_ns() - t0);
			shmp__pl_note_cpu(&ss->cpu);
		}
		ctx.quiet = true;
		unsigned n = 0;
		do {
			n++;
			if (single)
				add1(&ss->processed, 1);
			else
				atomic_fetch_add_explicit(&ss->processed, 1, memory_order_relaxed);
			if (t.len >= HDR) {
				struct pl_hdr h;
				memcpy(&h, t.data, sizeof h);
				struct shmp_msg m = { .data = (char *)t.data + HDR, .len = t.len - HDR, .seq = h.seq,
						      .t0_ns = h.t0, .offset = h.offset, .tag = h.tag,
						      .flags = h.flags };
				ctx.in = &h;
				ctx.reserved = false;
				if (s->fn(&m, &ctx, s->arg) < 0)
					atomic_fetch_add_explicit(&ss->failed, 1, memory_order_relaxed);
				if (ctx.reserved) /* reserved and never committed: give it back */
					shmp_ring_cancel(ctx.out, &ctx.t);
				ctx.in = NULL;
			}
			shmp__ring_release_quiet(in, &t);
			ctx.unwoken_in++;
		} while (n < PL_BATCH && shmp__ring_take_ready(in, &t) == 0);
		ctx.quiet = false;
		shmp__pl_flush(&ctx);
	}
	shmp__pl_flush(&ctx);
}

static void worker_body(shmp_pipeline_t *pl, int stage, int worker)
{
	switch (pl->st[stage].kind) {
	case KIND_FN: fn_loop(pl, stage, worker); break;
	case KIND_FILE_SOURCE: shmp__pl_file_source(pl, stage); break;
	case KIND_FILE_SINK: shmp__pl_file_sink(pl, stage); break;
	}
}

/* A worker of stage s ended on purpose. The last of its stage closes the
 * stage's output; the last stage's end ends the pipeline. Counted in
 * private memory (the shared count is for display). */
static void stage_finished(shmp_pipeline_t *pl, int s)
{
	struct pl_stage *st = &pl->st[s];
	atomic_fetch_add(&pl->sh->stage[s].finished, 1);
	if (atomic_fetch_add(&st->finished, 1) + 1 != st->workers)
		return;
	if (st->out_ring >= 0)
		shmp_ring_close(pl->ring[st->out_ring]);
	if (s == pl->nst - 1 && atomic_load(&pl->sh->state) != SHMP_PIPELINE_STOPPED)
		set_state(pl->sh, SHMP_PIPELINE_DONE);
}

/* Threads: each worker is a thread of this process. */
struct thread_arg {
	shmp_pipeline_t *pl;
	int stage, worker;
};

static void *thread_main(void *p)
{
	struct thread_arg a = *(struct thread_arg *)p;
	free(p);
	shmp_pipeline_t *pl = a.pl;
	struct pl_stage *s = &pl->st[a.stage];
	uint32_t slot = s->first_worker + (uint32_t)a.worker;
	atomic_store(&pl->wsh[slot].pid, (int32_t)shmp__tid()); /* display */
	worker_body(pl, a.stage, a.worker);
	atomic_store(&pl->wsh[slot].done, 1);
	stage_finished(pl, a.stage);
	return NULL;
}

/* A thread of the pipeline's own (the supervisor, thread workers) with
 * every asynchronous signal blocked: a signal sent to the process (Ctrl-C)
 * goes to the caller's threads, where an interruptible wait hears of it,
 * not to a helper that would swallow it. Faults stay deliverable. */
static int thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	sigfillset(&all);
	static const int sync_sigs[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT };
	for (size_t i = 0; i < sizeof sync_sigs / sizeof sync_sigs[0]; i++)
		sigdelset(&all, sync_sigs[i]);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int r = pthread_create(t, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return r;
}

/* Start worker w (its slot in the table) of stage s; caller holds mu. */
static int spawn(shmp_pipeline_t *pl, int s, int w)
{
	uint32_t slot = pl->st[s].first_worker + (uint32_t)w;
	struct pl_worker *wk = &pl->wk[slot];
	atomic_store(&pl->wsh[slot].done, 0);
	if (pl->o.threads) {
		struct thread_arg *a = malloc(sizeof *a);
		if (!a)
			return -ENOMEM;
		*a = (struct thread_arg){ pl, s, w };
		int r = thread_start(&wk->thread, thread_main, a);
		if (r) {
			free(a);
			return -r;
		}
		wk->running = true;
		return 0;
	}
	pid_t parent = getpid();
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		signal(SIGINT, SIG_IGN); /* the parent decides */
		pthread_sigmask(SIG_SETMASK, &pl->sigmask, NULL);
		shmp__self_init();
		atomic_store(&pl->wsh[slot].pid, (int32_t)getpid());
		worker_body(pl, s, w);
		atomic_store(&pl->wsh[slot].done, 1);
		fflush(NULL);
		_exit(0);
	}
	wk->pid = pid;
	wk->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	wk->running = true;
	atomic_store(&pl->wsh[slot].pid, (int32_t)pid); /* for display only */
	return 0;
}

/* Supervisor: a worker process ended. */
static void worker_ended(shmp_pipeline_t *pl, uint32_t slot, struct shmp__waitset *ws)
{
	pthread_mutex_lock(&pl->mu);
	struct pl_worker *wk = &pl->wk[slot];
	shmp__waitset_del(ws, slot);
	int status = 0;
	waitpid(wk->pid, &status, 0);
	close(wk->pidfd);
	wk->pidfd = -1;
	wk->running = false;
	int s = wk->stage;
	struct pl_stage *st = &pl->st[s];
	struct pl_stage_sh *ss = &pl->sh->stage[s]; /* counters only */
	/* Its `done` flag is the worker's word that it ended on purpose (a
	 * forged one can only make this pipeline stop or finish early). */
	bool ok = atomic_load(&pl->wsh[slot].done) && WIFEXITED(status) && WEXITSTATUS(status) == 0;
	if (ok) {
		stage_finished(pl, s);
	} else if (!atomic_load(&pl->quit)) {
		atomic_fetch_add(&ss->deaths, 1);
		pid_t dead = wk->pid;
		bool restart = pl->o.on_crash == SHMP_PIPELINE_RESTART;
		if (!restart) {
			/* Closed before its slots are freed: room made by the
			 * recovery must not let a blocked put slip in. */
			set_state(pl->sh, SHMP_PIPELINE_STOPPED);
			close_all(pl);
		}
		/* What it held is lost now, not when a producer laps round to
		 * it: counted at once, and its large blocks freed. */
		if (st->in_ring >= 0)
			shmp__ring_recover_tid(pl->ring[st->in_ring], dead);
		if (st->out_ring >= 0)
			shmp__ring_recover_tid(pl->ring[st->out_ring], dead);
		/* It may have died mid-batch with outputs committed (or
		 * inputs released) but its wake-up not yet made, or between
		 * clearing a futex word's armed bit and its FUTEX_WAKE: every
		 * sleeper of both its rings looks again. Consumers waiting
		 * without limit (shmp__ring_spin's `supervised`) rely on it. */
		if (st->in_ring >= 0)
			shmp__ring_wake_all(pl->ring[st->in_ring]);
		if (st->out_ring >= 0)
			shmp__ring_wake_all(pl->ring[st->out_ring]);
		if (restart) {
			if (spawn(pl, s, (int)wk->index) == 0) {
				atomic_fetch_add(&ss->restarts, 1);
				shmp__waitset_add(ws, pl->wk[slot].pidfd, slot);
			} else {
				set_state(pl->sh, SHMP_PIPELINE_STOPPED);
				close_all(pl);
			}
		}
	}
	pthread_mutex_unlock(&pl->mu);
}

#define TAG_KICK UINT64_MAX

static void *supervisor_main(void *p)
{
	shmp_pipeline_t *pl = p;
	struct shmp__waitset *ws = shmp__waitset_new();
	if (!ws)
		return NULL;
	pthread_mutex_lock(&pl->mu);
	for (int i = 0; i < pl->nwk; i++)
		if (pl->wk[i].running && pl->wk[i].pidfd >= 0)
			shmp__waitset_add(ws, pl->wk[i].pidfd, (uint64_t)i);
	pthread_mutex_unlock(&pl->mu);
	shmp__waitset_add(ws, pl->efd, TAG_KICK);
	while (!atomic_load(&pl->quit)) {
		uint64_t tags[16];
		int n = shmp__waitset_wait(ws, -1, tags, 16);
		for (int i = 0; i < n; i++) {
			if (tags[i] == TAG_KICK) {
				uint64_t v;
				ssize_t r = read(pl->efd, &v, sizeof v);
				(void)r;
				shmp__waitset_add(ws, pl->efd, TAG_KICK);
				continue;
			}
			worker_ended(pl, (uint32_t)tags[i], ws);
		}
		bool any = false;
		pthread_mutex_lock(&pl->mu);
		for (int i = 0; i < pl->nwk; i++)
			any |= pl->wk[i].running;
		pthread_mutex_unlock(&pl->mu);
		if (!any)
			break; /* everyone ended: nothing left to watch */
	}
	shmp__waitset_free(ws);
	return NULL;
}

/* ---- start -------------------------------------------------------------- */

/* Ring k joins node k and node k + 1 (node 0 is this process when it is
 * the source). A side that is one thread claims its slots with plain
 * stores instead of compare-and-swaps (ring.h's SINGLE flags; the slot
 * still names its holder, so a death is recovered as before): a stage of
 * one worker (its replacement starts after the dead one was reaped and its
 * slots recovered; a file stage is one worker) and the sink (next() is
 * not for concurrent callers). The source may be several threads of this
 * process: its side stays multi-producer. */
static unsigned ring_flags(const shmp_pipeline_t *pl, int k, bool src_here, bool sink_here, int nrings)
{
	unsigned f = 0;
	int prod = k - src_here, cons = k + 1 - src_here; /* stage indices */
	if (prod >= 0 && pl->st[prod].workers == 1)
		f |= SHMP_RING_SINGLE_PRODUCER;
	if ((sink_here && k == nrings - 1) || (cons < pl->nst && pl->st[cons].workers == 1))
		f |= SHMP_RING_SINGLE_CONSUMER;
	return f;
}

int shmp_pipeline_start(shmp_pipeline_t *pl)
{
	if (checked(pl) < 0)
		return -EINVAL;
	if (pl->started)
		return -EBUSY;
	if (pl->nst == 0)
		return -EINVAL;
	struct shmp__pl_sh *sh = pl->sh;
	bool src_here = pl->st[0].kind != KIND_FILE_SOURCE;
	bool sink_here = pl->st[pl->nst - 1].kind != KIND_FILE_SINK;
	int nrings = pl->nst - 1 + src_here + sink_here;
	/* Rings. The file source's ring holds whole blocks in its slots, so
	 * reads land in (registrable) slot memory. */
	for (int k = 0; k < nrings; k++) {
		unsigned inl = pl->o.inline_size;
		if (k == 0 && !src_here && pl->block_size + HDR > inl)
			inl = (unsigned)(pl->block_size + HDR);
		size_t maxm = pl->o.max_message + HDR;
		if (!src_here && k == 0 && maxm < pl->block_size + HDR)
			maxm = pl->block_size + HDR;
		struct shmp_ring_opts ro = { .sz = sizeof ro, .segment = pl->seg, .capacity = pl->o.capacity,
					     .inline_size = inl, .max_message = maxm,
					     .flags = ring_flags(pl, k, src_here, sink_here, nrings) };
		if (!(pl->ring[k] = shmp_ring_create(&ro)))
			return -errno;
		pl->nrings = k + 1;
		sh->ring_off[k] = shmp__ring_offset(pl->ring[k]);
	}
	sh->nrings = (uint32_t)nrings;
	pl->src_ring = src_here ? 0 : -1;
	pl->sink_ring = sink_here ? nrings - 1 : -1;
	/* The layout, decided here and kept here: the shared copy is what
	 * `shmp show` displays. */
	unsigned nwk = 0;
	for (int s = 0; s < pl->nst; s++) {
		struct pl_stage *st = &pl->st[s];
		st->in_ring = st->kind == KIND_FILE_SOURCE ? -1 : s - 1 + src_here;
		st->out_ring = st->kind == KIND_FILE_SINK ? -1 : s + src_here;
		st->first_worker = nwk;
		nwk += st->workers;
		struct pl_stage_sh *ss = &sh->stage[s];
		memcpy(ss->name, st->name, sizeof ss->name);
		ss->kind = (uint32_t)st->kind;
		ss->workers = st->workers;
		ss->in_ring = st->in_ring;
		ss->out_ring = st->out_ring;
		ss->first_worker = st->first_worker;
		atomic_store(&ss->idle, 0);
		atomic_store(&ss->cpu, 0);
	}
	spin_init(pl, pl->nst, &pl->sink_spin, NULL);
	sh->nstages = (uint32_t)pl->nst;
	sh->nworkers = nwk;
	pl->wsh = shmp__alloc_ptr(pl->seg, nwk * sizeof *pl->wsh, SHMP__CACHELINE, &sh->workers_off);
	pl->wk = calloc(nwk, sizeof *pl->wk);
	if (!pl->wsh || !pl->wk)
		return -ENOMEM;
	for (int s = 0; s < pl->nst; s++)
		for (unsigned w = 0; w < pl->st[s].workers; w++) {
			unsigned i = pl->st[s].first_worker + w;
			pl->wk[i].stage = s;
			pl->wk[i].index = w;
			pl->wsh[i].stage = (uint32_t)s;
			pl->wsh[i].index = w;
		}
	pl->nwk = (int)nwk;
	for (uint32_t i = 0; i < nwk; i++)
		pl->wk[i].pidfd = -1;
	if (!pl->o.threads && (pl->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
		return -errno;
	pthread_sigmask(SIG_SETMASK, NULL, &pl->sigmask);
	atomic_store(&sh->t_start, shmp__now_ns());
	set_state(sh, SHMP_PIPELINE_RUNNING);
	pl->started = true;
	int r = 0;
	pthread_mutex_lock(&pl->mu);
	for (int s = 0; s < pl->nst && r == 0; s++)
		for (unsigned w = 0; w < pl->st[s].workers && r == 0; w++)
			r = spawn(pl, s, (int)w);
	pthread_mutex_unlock(&pl->mu);
	if (r == 0 && !pl->o.threads) {
		r = -thread_start(&pl->sup, supervisor_main, pl);
		pl->sup_started = r == 0;
	}
	if (r < 0) {
		set_state(sh, SHMP_PIPELINE_STOPPED);
		close_all(pl);
	}
	return r;
}

/* ---- the source --------------------------------------------------------- */

static int src_check(shmp_pipeline_t *pl)
{
	if (checked(pl) < 0)
		return -EINVAL;
	if (!pl->started)
		return -EINVAL;
	if (pl->src_ring < 0)
		return -EBUSY;
	return 0;
}

int shmp_pipeline_reserve(shmp_pipeline_t *pl, size_t len, struct shmp_pipeline_ticket *t, double timeout)
{
	int r = src_check(pl);
	if (r < 0 || !t)
		return r < 0 ? r : -EINVAL;
	if (len > pl->o.max_message)
		return -EMSGSIZE;
	if (atomic_load(&pl->sh->state) == SHMP_PIPELINE_STOPPED)
		return -SHMP_ECLOSED; /* a crash stopped it; the ring closes just after */
	if ((r = shmp_ring_reserve(pl->ring[pl->src_ring], len + HDR, &t->rt_, timeout)) < 0)
		return r;
	t->data = (char *)t->rt_.data + HDR;
	t->len = len;
	return 0;
}

/* The source's count of a message, and its number. Locked adds (the
 * source may be several threads), made where put() has no store pending
 * to a line the other CPU holds (see add1). */
static uint64_t src_count(shmp_pipeline_t *pl, size_t len)
{
	uint64_t seq = atomic_fetch_add(&pl->sh->seq_next, 1);
	atomic_fetch_add_explicit(&pl->sh->msgs_in, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&pl->sh->bytes_in, len, memory_order_relaxed);
	return seq;
}

static int src_commit(shmp_pipeline_t *pl, struct shmp_pipeline_ticket *t, size_t len, uint32_t tag, uint64_t seq)
{
	struct pl_hdr h = { .seq = seq, .tag = tag };
	if (pl->o.spin)
		shmp__pl_note_cpu(&pl->sh->src_cpu);
	h.t0 = shmp__now_ns();
	memcpy(t->rt_.data, &h, sizeof h);
	return shmp_ring_commit(pl->ring[pl->src_ring], &t->rt_, len + HDR);
}

int shmp_pipeline_commit(shmp_pipeline_t *pl, struct shmp_pipeline_ticket *t, size_t len, uint32_t tag)
{
	int r = src_check(pl);
	if (r < 0 || !t || len > t->len)
		return r < 0 ? r : -EINVAL;
	return src_commit(pl, t, len, tag, src_count(pl, len));
}

int shmp_pipeline_cancel(shmp_pipeline_t *pl, struct shmp_pipeline_ticket *t)
{
	int r = src_check(pl);
	return r < 0 ? r : t ? shmp_ring_cancel(pl->ring[pl->src_ring], &t->rt_) : -EINVAL;
}

int shmp_pipeline_put(shmp_pipeline_t *pl, const void *data, size_t len, uint32_t tag, double timeout)
{
	if (!data && len)
		return -EINVAL;
	struct shmp_pipeline_ticket t;
	int r = shmp_pipeline_reserve(pl, len, &t, timeout);
	if (r < 0)
		return r;
	/* Counted before the copy: the slot's lines are the consumer's until
	 * written, and a locked add after the copy would wait for them. */
	uint64_t seq = src_count(pl, len);
	if (len)
		memcpy(t.data, data, len);
	return src_commit(pl, &t, len, tag, seq);
}

int shmp_pipeline_close(shmp_pipeline_t *pl)
{
	if (checked(pl) < 0 || !pl->started)
		return -EINVAL;
	if (pl->src_ring >= 0)
		shmp_ring_close(pl->ring[pl->src_ring]);
	uint32_t s = SHMP_PIPELINE_RUNNING;
	atomic_compare_exchange_strong(&pl->sh->state, &s, SHMP_PIPELINE_DRAINING);
	pl->closed = true;
	return 0;
}

/* ---- the sink ----------------------------------------------------------- */

static void sink_flush(shmp_pipeline_t *pl)
{
	if (pl->unwoken && pl->sink_ring >= 0) {
		shmp__ring_wake_producers(pl->ring[pl->sink_ring]);
		pl->unwoken = 0;
	}
}

static int stopped_or(shmp_pipeline_t *pl, int r)
{
	if (r == -SHMP_ECLOSED && atomic_load(&pl->sh->state) == SHMP_PIPELINE_STOPPED)
		return -SHMP_EWORKERDIED;
	return r;
}

int shmp_pipeline_next(shmp_pipeline_t *pl, struct shmp_msg *out, double timeout)
{
	if (checked(pl) < 0 || !out || !pl->started)
		return -EINVAL;
	if (pl->sink_ring < 0)
		return -EBUSY;
	if (pl->holding)
		return -EINVAL; /* done() first */
	if (atomic_load(&pl->sh->state) == SHMP_PIPELINE_STOPPED)
		return -SHMP_EWORKERDIED;
	shmp_ring_t *r = pl->ring[pl->sink_ring];
	for (;;) {
		/* Releases not yet told to the producer are told before this
		 * waits: it may be waiting for that room. */
		int e = pl->unwoken ? shmp__ring_take_ready(r, &pl->held) : -ETIMEDOUT;
		if (e == -ETIMEDOUT) {
			sink_flush(pl);
			bool spin = pl->sink_spin.max_ns != 0;
			uint64_t t0 = spin ? shmp__now_ns() : 0;
			e = shmp__ring_peek_batch(r, &pl->held, 1, timeout, &pl->sink_spin);
			if (spin && e > 0)
				pl->sink_spin.max_ns = spin_adapt(pl->sink_spin.max_ns, pl->sink_spin.slept,
								  shmp__now_ns() - t0);
			e = e > 0 ? 0 : e;
		}
		if (e < 0)
			return stopped_or(pl, e);
		if (pl->held.len < HDR) { /* not ours: drop it */
			shmp_ring_release(r, &pl->held);
			continue;
		}
		struct pl_hdr h;
		memcpy(&h, pl->held.data, sizeof h);
		shmp__pl_record(pl->sh, h.t0, pl->held.len - HDR);
		*out = (struct shmp_msg){ .data = (char *)pl->held.data + HDR, .len = pl->held.len - HDR,
					  .seq = h.seq, .t0_ns = h.t0, .offset = h.offset, .tag = h.tag,
					  .flags = h.flags };
		pl->holding = true;
		return 0;
	}
}

/* done() releases without waking; the producer hears of the room once a
 * batch of it is free, or when next() is about to wait, or at join: a
 * producer waiting on a full ring gets room by the batch, not a wake per
 * slot (and never waits longer than its 50 ms check for room not told). */
int shmp_pipeline_done(shmp_pipeline_t *pl)
{
	if (checked(pl) < 0 || !pl->holding)
		return -EINVAL;
	pl->holding = false;
	int e = shmp__ring_release_quiet(pl->ring[pl->sink_ring], &pl->held);
	if (e == 0 && ++pl->unwoken >= PL_BATCH)
		sink_flush(pl);
	return e;
}

/* ---- inside stages ------------------------------------------------------ */

void *shmp_stage_reserve(shmp_stage_ctx_t *ctx, size_t len)
{
	if (!ctx || !ctx->in || ctx->reserved || !ctx->out) {
		errno = EINVAL;
		return NULL;
	}
	if (len > ctx->pl->o.max_message) {
		errno = EMSGSIZE;
		return NULL;
	}
	/* In a batch: room now, or first tell the consumers what this batch
	 * committed (and the producers what it freed) — they may be what we
	 * are about to wait for. */
	int r = ctx->quiet ? shmp_ring_reserve(ctx->out, len + HDR, &ctx->t, 0) : -ETIMEDOUT;
	if (r == -ETIMEDOUT) {
		shmp__pl_flush(ctx);
		r = shmp_ring_reserve(ctx->out, len + HDR, &ctx->t, SHMP_FOREVER);
	}
	if (r < 0) {
		errno = -r;
		return NULL;
	}
	ctx->reserved = true;
	return (char *)ctx->t.data + HDR;
}

int shmp_stage_commit(shmp_stage_ctx_t *ctx, size_t len)
{
	if (!ctx || !ctx->reserved || len + HDR > ctx->t.len)
		return -EINVAL;
	ctx->reserved = false;
	memcpy(ctx->t.data, ctx->in, HDR); /* seq, t0, tag, offset, flags travel on */
	if (!ctx->quiet)
		return shmp_ring_commit(ctx->out, &ctx->t, len + HDR);
	int r = shmp__ring_commit_quiet(ctx->out, &ctx->t, len + HDR);
	ctx->unwoken_out += r == 0;
	return r;
}

int shmp_stage_emit(shmp_stage_ctx_t *ctx, const void *data, size_t len)
{
	if (!data && len)
		return -EINVAL;
	void *p = shmp_stage_reserve(ctx, len);
	if (!p)
		return -errno;
	if (len)
		memcpy(p, data, len);
	return shmp_stage_commit(ctx, len);
}

int shmp_stage_worker(const shmp_stage_ctx_t *ctx) { return ctx ? ctx->worker : -EINVAL; }
int shmp_stage_index(const shmp_stage_ctx_t *ctx) { return ctx ? ctx->stage + 1 : -EINVAL; }

/* ---- join, destroy ------------------------------------------------------ */

int shmp_pipeline_join(shmp_pipeline_t *pl, double timeout)
{
	if (checked(pl) < 0 || !pl->started)
		return -EINVAL;
	struct shmp__deadline d;
	if (shmp__deadline_init(&d, timeout) < 0)
		return -EINVAL;
	sink_flush(pl);
	for (;;) {
		uint32_t s = atomic_load_explicit(&pl->sh->state, memory_order_acquire);
		if (s == SHMP_PIPELINE_DONE)
			break;
		if (s == SHMP_PIPELINE_STOPPED)
			return -SHMP_EWORKERDIED;
		if (shmp__deadline_passed(&d))
			return -ETIMEDOUT;
		struct timespec until = shmp__deadline_cap(&d, 100000000L);
		if (shmp__interrupted(shmp__futex_wait(&pl->sh->state, s, &until)))
			return -EINTR;
	}
	if (pl->o.threads) {
		for (int i = 0; i < pl->nwk; i++)
			if (pl->wk[i].running) {
				pthread_join(pl->wk[i].thread, NULL);
				pl->wk[i].running = false;
			}
	}
	if (atomic_load(&pl->sh->sink_errors)) {
		/* The file sink could not write everything: its first error,
		 * if it is one (shared memory: anything else is EIO). */
		int32_t e = atomic_load(&pl->sh->sink_err);
		return -(e > 0 && e < 4096 ? e : EIO);
	}
	return 0;
}

/* A forked copy of the handle (the one lifetime rule): let go of what this
 * process has — its mappings, descriptors and memory — and nothing of the
 * creator's: no ring is closed, no worker signalled, nothing shared freed
 * or unnamed. (Its mutex may have been copied locked: left alone.) */
static void release_copy(shmp_pipeline_t *pl)
{
	if (pl->efd >= 0)
		close(pl->efd);
	for (int i = 0; pl->wk && i < pl->nwk; i++)
		if (pl->wk[i].pidfd >= 0)
			close(pl->wk[i].pidfd);
	for (int k = 0; k < PL_MAX + 1; k++)
		if (pl->ring[k])
			shmp_ring_destroy(pl->ring[k]); /* a copy's: the handle only */
	if (pl->own_seg)
		shmp_segment_destroy(pl->seg); /* a copy's: unmapped, not freed */
	for (unsigned i = 0; i < pl->npaths; i++)
		free(pl->paths[i]);
	free(pl->paths);
	free(pl->wk);
	free(pl);
}

void shmp_pipeline_destroy(shmp_pipeline_t *pl)
{
	if (!pl)
		return;
	if (pl->pid != getpid()) {
		release_copy(pl);
		return;
	}
	if (pl->started) {
		atomic_store(&pl->quit, true);
		uint32_t s = atomic_load(&pl->sh->state);
		if (s != SHMP_PIPELINE_DONE)
			close_all(pl);
		if (pl->sup_started) {
			uint64_t one = 1;
			ssize_t w = write(pl->efd, &one, sizeof one);
			(void)w;
			pthread_join(pl->sup, NULL);
		}
		for (int i = 0; i < pl->nwk; i++) {
			struct pl_worker *wk = &pl->wk[i];
			if (!wk->running)
				continue;
			if (pl->o.threads) {
				pthread_join(wk->thread, NULL); /* rings are closed: it ends */
			} else {
				/* Unreaped (only the supervisor reaps, and it has
				 * ended): the pidfd, or else the pid, is still it. */
				if (wk->pidfd < 0 || syscall(SYS_pidfd_send_signal, wk->pidfd, SIGKILL, NULL, 0) < 0)
					kill(wk->pid, SIGKILL);
				while (waitpid(wk->pid, NULL, 0) < 0 && errno == EINTR)
					;
				if (wk->pidfd >= 0)
					close(wk->pidfd);
			}
		}
		if (pl->holding)
			shmp_ring_release(pl->ring[pl->sink_ring], &pl->held);
	}
	if (pl->efd >= 0)
		close(pl->efd);
	if (pl->registered)
		shmp__registry_forget(pl->seg, (uint64_t)((char *)pl->sh - pl->seg->base));
	if (pl->own_seg) {
		for (int k = 0; k < PL_MAX + 1; k++)
			free(pl->ring[k]); /* handles only: the segment goes whole */
		shmp_segment_destroy(pl->seg);
	} else {
		for (int k = 0; k < PL_MAX + 1; k++)
			shmp_ring_destroy(pl->ring[k]);
		shmp__free_ptr(pl->seg, pl->wsh);
		shmp__free_ptr(pl->seg, pl->sh);
	}
	for (unsigned i = 0; i < pl->npaths; i++)
		free(pl->paths[i]);
	free(pl->paths);
	free(pl->wk);
	pthread_mutex_destroy(&pl->mu);
	free(pl);
}

/* ---- stats -------------------------------------------------------------- */

static uint64_t percentile(const struct shmp__pl_sh *sh, uint64_t count, double q)
{
	if (!count)
		return 0;
	uint64_t want = (uint64_t)(q * (double)count), seen = 0;
	if (want >= count)
		want = count - 1;
	for (unsigned b = 0; b < PL_HIST; b++) {
		seen += atomic_load_explicit(&((struct shmp__pl_sh *)sh)->hist[b], memory_order_relaxed);
		if (seen > want)
			return hist_value(b);
	}
	return atomic_load(&((struct shmp__pl_sh *)sh)->lat_max);
}

/* Stats from shared memory (the owner and shmp_pipeline_inspect), for
 * display: everything read there is only copied out or bounded by the
 * counts the caller vouches for (nrings rings, nworkers entries in wsh).
 * rings[k] may be NULL: queue depths are then 0. */
static void stats_of(struct shmp__pl_sh *sh, struct pl_worker_sh *wsh, uint32_t nworkers,
		     shmp_ring_t *const *rings, uint32_t nrings, struct shmp_pipeline_stats *st)
{
	memset(st, 0, sizeof *st);
	st->nstages = sh->nstages < PL_MAX ? sh->nstages : PL_MAX;
	st->state = (int)atomic_load(&sh->state);
	st->messages_in = atomic_load(&sh->msgs_in);
	st->bytes_in = atomic_load(&sh->bytes_in);
	st->messages_out = atomic_load(&sh->msgs_out);
	st->bytes_out = atomic_load(&sh->bytes_out);
	st->source_errors = atomic_load(&sh->source_errors);
	st->sink_errors = atomic_load(&sh->sink_errors);
	uint64_t t0 = atomic_load(&sh->t_start), t1 = atomic_load(&sh->t_last_out);
	if (st->state == SHMP_PIPELINE_RUNNING || st->state == SHMP_PIPELINE_DRAINING || !t1)
		t1 = shmp__now_ns();
	st->elapsed = t0 && t1 > t0 ? (double)(t1 - t0) / 1e9 : 0;
	st->lat_count = atomic_load(&sh->lat_count);
	st->lat_max = atomic_load(&sh->lat_max);
	st->lat_mean = st->lat_count ? (double)atomic_load(&sh->lat_sum) / (double)st->lat_count : 0;
	st->lat_p50 = percentile(sh, st->lat_count, 0.50);
	st->lat_p99 = percentile(sh, st->lat_count, 0.99);
	st->lat_p999 = percentile(sh, st->lat_count, 0.999);
	for (uint32_t k = 0; k < nrings; k++) {
		struct shmp_ring_stats rs;
		if (rings[k] && shmp_ring_stats(rings[k], &rs) == 0)
			st->lost += rs.lost;
	}
	for (unsigned s = 0; s < st->nstages; s++) {
		struct pl_stage_sh *ss = &sh->stage[s];
		struct shmp_stage_stats *o = &st->stage[s];
		memcpy(o->name, ss->name, sizeof o->name);
		o->name[sizeof o->name - 1] = 0;
		o->workers = ss->workers;
		o->processed = atomic_load(&ss->processed);
		o->failed = atomic_load(&ss->failed);
		o->deaths = atomic_load(&ss->deaths);
		o->restarts = atomic_load(&ss->restarts);
		int32_t in = ss->in_ring;
		if (in >= 0 && (uint32_t)in < nrings && rings[in])
			o->queued = (uint64_t)shmp_ring_count(rings[in]);
		uint32_t first = ss->first_worker, n = ss->workers;
		for (uint32_t w = 0; wsh && w < n && first < nworkers && w < nworkers - first; w++) {
			/* A pid from shared memory: probed for display (signal 0,
			 * /proc), never signalled. */
			int32_t pid = atomic_load(&wsh[first + w].pid);
			o->alive += pid > 0 && !atomic_load(&wsh[first + w].done) && !shmp__tid_dead(pid);
		}
	}
}

int shmp_pipeline_stats(shmp_pipeline_t *pl, struct shmp_pipeline_stats *st)
{
	if (checked(pl) < 0 || !st)
		return -EINVAL;
	stats_of(pl->sh, pl->wsh, (uint32_t)pl->nwk, pl->ring, (uint32_t)pl->nrings, st);
	/* The owner knows its workers without asking shared memory. */
	pthread_mutex_lock(&pl->mu);
	for (int s = 0; s < pl->nst && s < PL_MAX; s++) {
		struct shmp_stage_stats *o = &st->stage[s];
		o->workers = pl->st[s].workers;
		o->alive = 0;
		for (unsigned w = 0; pl->wk && w < pl->st[s].workers; w++) {
			unsigned i = pl->st[s].first_worker + w;
			o->alive += pl->wk[i].running && (pl->o.threads ? !atomic_load(&pl->wsh[i].done) &&
						 atomic_load(&pl->wsh[i].pid) > 0 : true);
		}
	}
	pthread_mutex_unlock(&pl->mu);
	return 0;
}

int shmp_pipeline_reset_latency(shmp_pipeline_t *pl)
{
	if (checked(pl) < 0)
		return -EINVAL;
	for (unsigned b = 0; b < PL_HIST; b++)
		atomic_store_explicit(&pl->sh->hist[b], 0, memory_order_relaxed);
	atomic_store(&pl->sh->lat_count, 0);
	atomic_store(&pl->sh->lat_sum, 0);
	atomic_store(&pl->sh->lat_max, 0);
	return 0;
}

/* What inspection trusts of a pipeline's header: the counts that bound
 * the tables it reads (the stats read nothing else by index). */
static bool pl_check(const shmp_segment_t *seg, uint64_t off, const void *p, uint32_t want)
{
	(void)seg, (void)off, (void)want;
	const struct shmp__pl_sh *sh = p;
	return sh->nstages <= PL_MAX && sh->nrings <= PL_MAX + 1 && sh->nworkers <= PL_MAX * 1024;
}
const struct shmp__layout shmp__pipeline_layout = SHMP__LAYOUT(struct shmp__pl_sh, PL_MAGIC, PL_VERSION, pl_check);

/* The rings of a checked header, opened for reading (NULL where one fails
 * its checks); their number, read once: whoever writes the segment may
 * change the count after the check. Closed by rings_close. */
static uint32_t rings_open(const shmp_segment_t *seg, const struct shmp__pl_sh *sh, shmp_ring_t **rings)
{
	uint32_t n = __atomic_load_n(&sh->nrings, __ATOMIC_RELAXED);
	n = n < PL_MAX + 1 ? n : PL_MAX + 1;
	for (uint32_t k = 0; k < n; k++)
		rings[k] = shmp__ring_open((shmp_segment_t *)seg, sh->ring_off[k]);
	return n;
}

static void rings_close(shmp_ring_t **rings, uint32_t n)
{
	for (uint32_t k = 0; k < n; k++)
		free(rings[k]); /* handles of our own: nothing shared to let go */
}

int shmp_pipeline_inspect(shmp_registry_t *r, const char *name, struct shmp_pipeline_stats *st)
{
	shmp_segment_t *seg = shmp_registry_segment(r);
	uint64_t off;
	int e = seg && st ? shmp__registry_find(r, name, SHMP_TYPE_PIPELINE, &off) : -EINVAL;
	if (e < 0)
		return e;
	struct shmp__pl_sh *sh = shmp__obj_at(seg, off, &shmp__pipeline_layout, 0, &e);
	if (!sh)
		return -SHMP_ECORRUPT; /* as documented, whichever check failed */
	/* Counts read once, as rings_open does. */
	uint32_t nw = __atomic_load_n(&sh->nworkers, __ATOMIC_RELAXED);
	struct pl_worker_sh *wsh = nw && nw <= PL_MAX * 1024 ?
		shmp__sh_at(seg, sh->workers_off, nw * sizeof *wsh, __alignof__(*wsh)) : NULL;
	shmp_ring_t *rings[PL_MAX + 1] = { 0 };
	uint32_t nr = rings_open(seg, sh, rings);
	stats_of(sh, wsh, wsh ? nw : 0, rings, nr, st);
	rings_close(rings, nr);
	return 0;
}

/* The type table's inspect (registry info, `shmp ls`): the sizes, the
 * state and the messages in its rings, read as shmp_pipeline_inspect
 * reads them. */
int shmp__pipeline_inspect(const shmp_segment_t *seg, const void *p, struct shmp_object_info *info)
{
	const struct shmp__pl_sh *sh = p;
	info->stages = sh->nstages;
	info->workers = sh->nworkers;
	info->state = (int)atomic_load(&((struct shmp__pl_sh *)sh)->state);
	shmp_ring_t *rings[PL_MAX + 1] = { 0 };
	uint32_t nr = rings_open(seg, sh, rings);
	for (uint32_t k = 0; k < nr; k++)
		if (rings[k])
			info->depth += (uint64_t)shmp_ring_count(rings[k]);
	rings_close(rings, nr);
	return 0;
}
