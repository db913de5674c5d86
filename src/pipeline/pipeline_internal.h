/* private: the pipeline's shared state and what its files share. */
#ifndef SHMP_PIPELINE_INTERNAL_H
#define SHMP_PIPELINE_INTERNAL_H

#include "object.h"

#include <pthread.h>
#include <signal.h>

#define PL_MAGIC 0x50495045u /* "PIPE" */
#define PL_VERSION 1u
#define PL_MAX SHMP_PIPELINE_MAX_STAGES
/* Latency histogram: values below 64 ns exactly, then 32 buckets per power
 * of two (about 3% wide). */
#define PL_HIST (64 + 58 * 32)

enum { KIND_FN, KIND_FILE_SOURCE, KIND_FILE_SINK };

/* ---- ring calls only the pipeline makes (ring.c) ---- */
/* How a wait spins before it sleeps. */
struct shmp__ring_spin {
	uint64_t max_ns;                /* spin up to this long; 0: never spin */
	const _Atomic uint32_t *peer_idle; /* stop spinning once *peer_idle >= peer_n */
	uint32_t peer_n;
	const _Atomic uint32_t *peer_cpu; /* the producer's last CPU + 1 (0: unknown):
					   * no spin while it is ours */
	_Atomic uint32_t *self_idle;    /* +1 while this waiter sleeps */
	/* The ring's producers are supervised: one that dies has its slots
	 * recovered and the consumers woken by someone else (the pipeline's
	 * supervisor), and every wake-up owed is made before a producer
	 * blocks. A consumer's wait without limit, in a process that did not
	 * ask for interrupts, then sleeps with no time limit instead of in
	 * checking slices: a timer armed and cancelled per sleep cost a hop
	 * ~0.1 us at p50 and ~9 us at p99 on a virtual machine (timer
	 * programming traps to the hypervisor). Producers waiting for room
	 * keep their slices: the sink's done() defers its wake-ups. */
	bool supervised;
	bool slept;                     /* out: the wait went to sleep */
};
/* Claim up to n messages (tickets as peek's), waiting up to timeout only
 * for the first, with sp's spin (NULL: the ring's own short spin). The
 * number claimed, or the first one's error. */
int shmp__ring_peek_batch(shmp_ring_t *r, struct shmp_ring_ticket *t, unsigned n, double timeout,
			  struct shmp__ring_spin *sp);
/* The oldest message if one is ready now (0), else -ETIMEDOUT (closed or
 * not), without peek(0)'s look for a stuck holder: for a caller that
 * waits properly next when nothing is there. */
int shmp__ring_take_ready(shmp_ring_t *r, struct shmp_ring_ticket *t);
/* release and commit without the wake check: the caller makes it once per
 * batch (shmp__ring_wake_*), and always before it blocks. */
int shmp__ring_release_quiet(shmp_ring_t *r, struct shmp_ring_ticket *t);
int shmp__ring_commit_quiet(shmp_ring_t *r, struct shmp_ring_ticket *t, size_t len);
void shmp__ring_wake_consumers(shmp_ring_t *r);
void shmp__ring_wake_producers(shmp_ring_t *r);
/* Wake every sleeper of both sides, armed or not: after a peer died. */
void shmp__ring_wake_all(shmp_ring_t *r);


/* Every ring message starts with this; the payload follows. */
struct pl_hdr {
	uint64_t seq;
	uint64_t t0;
	uint64_t offset;
	uint32_t tag;
	uint32_t flags;
};

struct pl_stage_sh {
	char name[32];
	uint32_t kind;
	uint32_t workers;
	int32_t in_ring, out_ring;     /* -1: none */
	uint32_t first_worker;         /* index into the worker table */
	_Atomic uint32_t finished;     /* workers that ended normally */
	_Atomic uint64_t processed, failed, deaths, restarts;
	_Atomic uint32_t idle;         /* workers asleep on their input, and */
	_Atomic uint32_t cpu;          /* the last CPU + 1 a worker ran on: spin
					* hints for the next stage (in former
					* padding) */
} __attribute__((aligned(64)));

struct pl_worker_sh {
	_Atomic int32_t pid;           /* process id or thread id */
	_Atomic uint32_t done;         /* set by the worker when it ends normally */
	uint32_t stage, index;
};

struct shmp__pl_sh {
	uint32_t magic, version;
	uint32_t nstages, nrings, nworkers;
	uint32_t on_crash;
	_Atomic uint32_t state;        /* SHMP_PIPELINE_*; futex for join */
	uint32_t threads;
	uint64_t ring_off[PL_MAX + 1];
	uint64_t workers_off;
	/* The file sink's write failures (messages not written) and the
	 * first one's errno: in fields that were reserved (zero) before. */
	_Atomic uint64_t sink_errors;
	_Atomic int32_t sink_err;
	_Atomic uint32_t src_cpu;      /* the source's last CPU + 1: a spin hint */
	uint64_t reserved[2];          /* zero, for later versions */
	SHMP__ALIGNED _Atomic uint64_t seq_next;
	_Atomic uint64_t msgs_in, bytes_in;
	SHMP__ALIGNED _Atomic uint64_t msgs_out, bytes_out, t_last_out;
	_Atomic uint64_t source_errors;
	_Atomic uint64_t t_start;
	_Atomic uint64_t lat_count, lat_sum, lat_max;
	_Atomic uint64_t hist[PL_HIST];
	struct pl_stage_sh stage[PL_MAX];
};
/* Pinned: inspection (shmp_pipeline_inspect, the `shmp` command) may read
 * a pipeline of another build. PL_VERSION covers every struct above: the
 * message header, the stage and worker tables, the header. */
SHMP__PIN(struct shmp__pl_sh, 17920);
_Static_assert(offsetof(struct shmp__pl_sh, ring_off) == 32 && offsetof(struct shmp__pl_sh, workers_off) == 168 &&
	       offsetof(struct shmp__pl_sh, sink_errors) == 176 && offsetof(struct shmp__pl_sh, sink_err) == 184 &&
	       offsetof(struct shmp__pl_sh, seq_next) == 256 && offsetof(struct shmp__pl_sh, msgs_out) == 320 &&
	       offsetof(struct shmp__pl_sh, hist) == 496 && offsetof(struct shmp__pl_sh, stage) == 15872,
	       "pipeline fields");
_Static_assert(sizeof(struct pl_stage_sh) == 128 && offsetof(struct pl_stage_sh, processed) == 56 &&
	       offsetof(struct pl_stage_sh, idle) == 88 && offsetof(struct pl_stage_sh, cpu) == 92, "pipeline stage");
_Static_assert(sizeof(struct pl_worker_sh) == 16 && offsetof(struct pl_worker_sh, stage) == 8, "pipeline worker");
_Static_assert(sizeof(struct pl_hdr) == 32 && offsetof(struct pl_hdr, tag) == 24, "pipeline message header");

/* What the creating process (and every worker, which has a copy) trusts:
 * shared copies are for display and may be scribbled on, these may not. */
struct pl_stage {
	char name[32];
	int kind;
	shmp_stage_fn fn;
	void *arg;
	unsigned workers;
	int in_ring, out_ring;         /* -1: none */
	unsigned first_worker;         /* index into the worker table */
	_Atomic unsigned finished;     /* workers that ended normally */
};

struct pl_worker {
	pid_t pid;                     /* from fork(); unreaped while running */
	int pidfd;
	pthread_t thread;
	bool running;
	int stage;
	unsigned index;                /* within its stage */
};

struct shmp_pipeline {
	shmp_segment_t *seg;           /* its own, or opts.registry's */
	bool own_seg, registered;
	struct shmp__pl_sh *sh;
	struct pl_worker_sh *wsh;
	struct shmp_pipeline_opts o;
	struct pl_stage st[PL_MAX];
	int nst;
	shmp_ring_t *ring[PL_MAX + 1];
	int nrings;
	int src_ring, sink_ring;       /* this process's ends, -1 if a stage has them */
	struct pl_worker *wk;
	int nwk;
	/* file source */
	char **paths;
	unsigned npaths;
	size_t block_size;
	unsigned depth;
	int sink_fd;
	/* The signal mask of the thread that started it: forked workers get
	 * it back (the supervisor, which forks replacements, blocks signals). */
	sigset_t sigmask;
	/* supervision (processes) */
	pthread_t sup;
	bool sup_started;
	int efd;
	_Atomic bool quit;
	pthread_mutex_t mu;            /* the worker table */
	bool started, closed;
	pid_t pid;                     /* the creating process (the lifetime rule) */
	/* The sink's, written per message: on lines of their own, apart
	 * from the fields the source's thread reads per message (started,
	 * src_ring, ring[]...). Sharing a line made every put miss on it
	 * while another thread took messages (the handle is allocated
	 * cache-line aligned for this). */
	/* the sink's held message */
	SHMP__ALIGNED struct shmp_ring_ticket held;
	bool holding;
	unsigned unwoken;              /* sink: releases not yet told to the producers */
	struct shmp__ring_spin sink_spin;
	SHMP__ALIGNED char end_[1];    /* nothing after the sink's lines shares them */
};

struct shmp_stage_ctx {
	shmp_pipeline_t *pl;
	int stage, worker;
	shmp_ring_t *out;
	shmp_ring_t *inr;              /* its input ring (batches: see fn_loop) */
	const struct pl_hdr *in;
	struct shmp_ring_ticket t;
	bool reserved;
	bool quiet;                    /* in a batch: commits wake at its end */
	unsigned unwoken_out;          /* commits not yet told to the consumers */
	unsigned unwoken_in;           /* releases not yet told to the producers */
};

/* Up to this many messages a stage worker takes at once. */
#define PL_BATCH 32u
/* Adaptive spin of spinning stages: the bound, and the least it shrinks to. */
#define PL_SPIN_MAX_NS 50000u
#define PL_SPIN_MIN_NS 500u
/* The wake-ups a stage or the sink owes, made before it can block. */
void shmp__pl_flush(shmp_stage_ctx_t *ctx);
/* Whether more than one CPU is usable by this thread. */
bool shmp__pl_multi_cpu(void);
/* Publish this thread's CPU (+ 1) in *w if it changed: a spin hint. */
void shmp__pl_note_cpu(_Atomic uint32_t *w);

/* A message of `bytes` taken by the sink: its latency (now - t0) into the
 * histogram, and the out counters. Only the sink calls it, one thread
 * (next() is not for concurrent callers; a file sink is one worker): the
 * counters are written with plain stores. */
void shmp__pl_record(struct shmp__pl_sh *sh, uint64_t t0, uint64_t bytes);
/* The file stages' bodies (pipeline_files.c): run in their worker. */
int shmp__pl_file_source(shmp_pipeline_t *pl, int stage);
int shmp__pl_file_sink(shmp_pipeline_t *pl, int stage);


#endif
