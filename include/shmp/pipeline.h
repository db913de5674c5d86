/* shmp — low-latency pipelines: stages of worker processes connected by
 * shared-memory rings. */
#ifndef SHMP_PIPELINE_H
#define SHMP_PIPELINE_H

#include "registry.h"
#include "ring.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A pipeline is a chain: source -> stage 1 -> ... -> stage N -> sink.
 * Between two neighbours is a ring in shared memory; a message is written
 * once into the ring (reserve/commit) and read in place (peek/release) by
 * the next stage: nothing is copied through the kernel.
 *
 * - The source is this process (shmp_pipeline_put / reserve+commit), or a
 *   file source stage (shmp_pipeline_add_file_source) that reads files with
 *   io_uring straight into the first ring's slots (registered buffers where
 *   the kernel allows, plain reads otherwise, pread without io_uring).
 * - A stage is run by one or more worker processes (threads with
 *   opts.threads), each calling fn for every message it takes.
 * - The sink is this process (shmp_pipeline_next / done), or a file sink
 *   stage (shmp_pipeline_add_file_sink) that writes every message out.
 *
 * Backpressure: rings are bounded; a full ring makes its producer wait, up
 * to the source. Shutdown: shmp_pipeline_close() ends the input; each stage
 * drains what is queued, and the next ring closes once every worker of the
 * stage has finished, so the sink sees every message, then -SHMP_ECLOSED.
 *
 * A worker that dies (crash, kill -9) is reported and, by opts.on_crash,
 * either stops the pipeline (every ring closes; next() and join() return
 * -SHMP_EWORKERDIED) or is replaced by a new worker for its stage. Nothing
 * ever hangs, nothing is delivered twice. stats.lost counts the ring slots
 * the dead worker held: the input message it was working on, and an output
 * it was writing. So for stages that emit one message per input,
 * messages_out + lost >= messages_in, and it can be more: a worker killed
 * after emitting its output but before releasing its input counts that
 * input lost although its output went on, one killed while writing an
 * output counts two.
 *
 * Latency is measured per message, from the source's commit to the sink's
 * take (CLOCK_MONOTONIC), into a histogram: stats give p50/p99/p99.9.
 *
 * Errors: int calls return 0 or -code (common.h), create returns NULL with
 * errno set. Timeouts are seconds (negative: no limit, 0: poll once). With
 * shmp_set_interruptible(1), put, reserve, next, join and a stage's emit
 * and reserve return -EINTR once a signal handler ran during the wait
 * (nothing is taken or left half-written); the pipeline's own threads block
 * asynchronous signals so that the caller's thread gets them, and workers
 * themselves never stop for an interrupted wait.
 *
 * Lifetime: the pipeline is its creator's. destroy() stops it, kills and
 * reaps its workers and frees its shared state (its own segment, or its
 * blocks and name in opts.registry). Only the creating process may call the
 * source, sink and join functions; workers use the stage ones. A process
 * forked from the creator that destroys the handle it inherited releases
 * its copy only (the one lifetime rule): nothing of the creator's pipeline
 * stops.
 *
 * Batches: a worker waits for one message, then takes up to 31 more that
 * are ready, one at a time, and makes one wake check per ring per batch
 * (a futex wake only when the other side sleeps). The sink's done() tells
 * a waiting producer of room by the batch too (or when next() would wait,
 * or at join).
 *
 * Trust: workers are processes this process forked: they are signalled
 * through pidfds and reaped by the pids fork() returned, both kept in this
 * process's memory. The worker pids and the layout in shared memory are for
 * `shmp show` only: rewriting them can make stats and inspect show garbage,
 * never make the pipeline signal, wait for or index anything by them.
 */
typedef struct shmp_pipeline shmp_pipeline_t;
typedef struct shmp_stage_ctx shmp_stage_ctx_t;

/* A message as a stage or the sink sees it: read-only, in shared memory,
 * valid until the stage function returns (or shmp_pipeline_done). */
struct shmp_msg {
	const void *data;
	size_t len;
	uint64_t seq;     /* numbered by the source from 0 */
	uint64_t t0_ns;   /* CLOCK_MONOTONIC at the source's commit */
	uint64_t offset;  /* file source: the block's offset in its file */
	uint32_t tag;     /* put's tag; file source: the file's index */
	uint32_t flags;   /* SHMP_MSG_* */
};
enum {
	SHMP_MSG_EOF = 1u << 0, /* file source: the last block of its file (may be empty) */
};

/* Called for each message. Emits 0..n messages downstream with
 * shmp_stage_emit or shmp_stage_reserve/commit (the last stage of a
 * pipeline whose sink is this process emits to the sink). Return 0, or a
 * negative code: the message counts as failed (stats) and the stage goes on. */
typedef int (*shmp_stage_fn)(const struct shmp_msg *in, shmp_stage_ctx_t *ctx, void *arg);

enum { SHMP_PIPELINE_STOP = 0, SHMP_PIPELINE_RESTART = 1 };

struct shmp_pipeline_opts {
	size_t sz;
	/* Where its shared state lives. NULL: an anonymous segment of its own
	 * (segment_size), gone with the pipeline. A registry: the pipeline
	 * lives in that registry's segment and is named in its directory, for
	 * `shmp show`/`top` and shmp_pipeline_inspect (a named registry makes
	 * it visible to other processes). Keep the registry attached while the
	 * pipeline lives. (Not `segment`: for other objects a NULL segment
	 * means the default segment, which a pipeline never uses.) */
	shmp_registry_t *registry;
	const char *name;        /* its name in the registry ("pipeline"); copied.
				  * -EEXIST from create if taken */
	unsigned capacity;       /* messages per ring; default 256 */
	unsigned inline_size;    /* bytes a slot holds (bigger messages use a block);
				  * default 256 */
	size_t max_message;      /* default 1 MiB */
	int on_crash;            /* SHMP_PIPELINE_STOP (default) or _RESTART */
	int spin;                /* 1: workers and next() spin before sleeping:
				  * at most 50 us, learned from recent waits,
				  * over when the stage before sleeps, never
				  * with one usable CPU. 0: no spin at all */
	int threads;             /* 1: workers are threads of this process */
	size_t segment_size;     /* of its own segment (no registry); default
				  * 256 MiB (address space, touched lazily) */
};

/* public */
/* A new pipeline, not started. NULL with errno: EINVAL (options), EEXIST
 * (opts.name taken in opts.registry), ENOSPC (registry directory full),
 * SHMP_ESEGFULL / ENOMEM (no room). */
SHMP_API shmp_pipeline_t *shmp_pipeline_create(const struct shmp_pipeline_opts *opts);
/* Add the next stage, run by `workers` workers (>= 1). Before start. The
 * stage's index (1, 2, ...) or -EINVAL, -EBUSY (started), -ENOSPC (16 max).
 * A file source added later becomes stage 1 and renumbers the others up by
 * one (shmp_stage_index and the stats give the final numbers). */
SHMP_API int shmp_pipeline_add_stage(shmp_pipeline_t *pl, const char *name, shmp_stage_fn fn, void *arg,
				     unsigned workers);

struct shmp_file_source_opts {
	size_t sz;
	size_t block_size; /* bytes per message; default 64 KiB */
	unsigned depth;    /* reads in flight; default 8 */
};
/* Make the source a stage of its own (one worker) that reads the files, in
 * order, in blocks of block_size, one message per block (tag = the file's
 * index in paths, offset = the block's offset; the last block of each file
 * has SHMP_MSG_EOF), then closes the input. The paths are copied. Before
 * start; at most one, and then put/reserve are -EBUSY. A file that cannot
 * be opened is skipped and counted in stats.source_errors. */
SHMP_API int shmp_pipeline_add_file_source(shmp_pipeline_t *pl, const char *const *paths, unsigned n,
					   const struct shmp_file_source_opts *opts);
/* Make the sink a stage of its own (one worker) that writes every message's
 * bytes to fd, in arrival order (io_uring writes where allowed, write(2)
 * otherwise). Latency is measured there. Before start; then next() is -EBUSY.
 * -EBADF for a negative fd. A failed write is not retried and nothing more
 * is written; the messages not written count in stats.sink_errors, and
 * join() returns the first error (-EPIPE, -ENOSPC...; -EIO for a write
 * that made no progress). A sink process ignores SIGPIPE. */
SHMP_API int shmp_pipeline_add_file_sink(shmp_pipeline_t *pl, int fd);

/* Fork the workers (or start the threads). 0, -EINVAL (no stage), -EBUSY. */
SHMP_API int shmp_pipeline_start(shmp_pipeline_t *pl);

/* ---- the source, in this process ---- */
/* Copy a message in, waiting up to timeout for room. 0, -ETIMEDOUT,
 * -EINTR, -EMSGSIZE, -SHMP_ECLOSED (closed, or stopped by a crash), -EBUSY
 * (file source), -EINVAL. */
SHMP_API int shmp_pipeline_put(shmp_pipeline_t *pl, const void *data, size_t len, uint32_t tag, double timeout);
/* Zero-copy: reserve len bytes at t->data (waiting as put does, same
 * errors), fill, commit (final length <= len) or cancel. */
struct shmp_pipeline_ticket {
	void *data;
	size_t len;
	struct shmp_ring_ticket rt_; /* private */
};
SHMP_API int shmp_pipeline_reserve(shmp_pipeline_t *pl, size_t len, struct shmp_pipeline_ticket *t, double timeout);
SHMP_API int shmp_pipeline_commit(shmp_pipeline_t *pl, struct shmp_pipeline_ticket *t, size_t len, uint32_t tag);
SHMP_API int shmp_pipeline_cancel(shmp_pipeline_t *pl, struct shmp_pipeline_ticket *t);
/* End of input: the stages drain and stop in order. Twice is fine. */
SHMP_API int shmp_pipeline_close(shmp_pipeline_t *pl);

/* ---- the sink, in this process ---- */
/* Take the next output message (zero-copy), waiting up to timeout, and
 * record its latency. Give it back with shmp_pipeline_done before the next
 * call. 0, -ETIMEDOUT, -EINTR, -SHMP_ECLOSED (everything drained),
 * -SHMP_EWORKERDIED (stopped by a crash), -EBUSY (file sink). */
SHMP_API int shmp_pipeline_next(shmp_pipeline_t *pl, struct shmp_msg *out, double timeout);
SHMP_API int shmp_pipeline_done(shmp_pipeline_t *pl);

/* ---- stage functions' side ---- */
/* Send a message downstream, carrying the input's seq, t0, tag, offset and
 * flags. Waits for room, without limit. 0, -SHMP_ECLOSED (pipeline
 * stopped), -EMSGSIZE, -EINTR (interruptible, see above). */
SHMP_API int shmp_stage_emit(shmp_stage_ctx_t *ctx, const void *data, size_t len);
/* Zero-copy: room for len bytes downstream (NULL with errno: emit's codes),
 * then commit. */
SHMP_API void *shmp_stage_reserve(shmp_stage_ctx_t *ctx, size_t len);
SHMP_API int shmp_stage_commit(shmp_stage_ctx_t *ctx, size_t len);
/* Which worker of its stage this is (0..workers-1), and the stage (1..). */
SHMP_API int shmp_stage_worker(const shmp_stage_ctx_t *ctx);
SHMP_API int shmp_stage_index(const shmp_stage_ctx_t *ctx);

/* Wait until every stage has finished (after close, or when a file source
 * ran out). 0, -ETIMEDOUT, -EINTR, -SHMP_EWORKERDIED (stopped by a crash),
 * or the file sink's first write error (see add_file_sink). */
SHMP_API int shmp_pipeline_join(shmp_pipeline_t *pl, double timeout);
/* Stop now: close every ring, kill the workers, reap them. Then free.
 * In a process forked from the creator: release this copy only. Accepts
 * NULL. */
SHMP_API void shmp_pipeline_destroy(shmp_pipeline_t *pl);

#define SHMP_PIPELINE_MAX_STAGES 16
struct shmp_stage_stats {
	char name[32];
	unsigned workers;       /* configured */
	unsigned alive;
	uint64_t processed;     /* messages taken */
	uint64_t failed;        /* fn returned < 0 */
	uint64_t deaths;        /* workers that died */
	uint64_t restarts;
	uint64_t queued;        /* messages waiting in its input ring now */
};
struct shmp_pipeline_stats {
	unsigned nstages;       /* including the file source and sink stages */
	int state;              /* SHMP_PIPELINE_NEW (created, not started),
				 * _RUNNING, _DRAINING, _DONE, _STOPPED */
	uint64_t messages_in;   /* committed by the source */
	uint64_t bytes_in;
	uint64_t messages_out;  /* taken by the sink */
	uint64_t bytes_out;
	uint64_t lost;          /* ring slots held by workers that died (see above) */
	uint64_t source_errors; /* file source: files that could not be read */
	uint64_t sink_errors;   /* file sink: messages it could not write (join
				 * then returns the first error) */
	double elapsed;         /* seconds from start to the last message out (or now) */
	/* latency, source commit -> sink take, in nanoseconds (about 3% resolution) */
	uint64_t lat_count, lat_p50, lat_p99, lat_p999, lat_max;
	double lat_mean;
	struct shmp_stage_stats stage[SHMP_PIPELINE_MAX_STAGES];
};
enum { SHMP_PIPELINE_NEW, SHMP_PIPELINE_RUNNING, SHMP_PIPELINE_DRAINING, SHMP_PIPELINE_DONE,
       SHMP_PIPELINE_STOPPED };
SHMP_API int shmp_pipeline_stats(shmp_pipeline_t *pl, struct shmp_pipeline_stats *st);
/* Start a new latency measurement (e.g. after a warm-up). */
SHMP_API int shmp_pipeline_reset_latency(shmp_pipeline_t *pl);
/* The same stats from any process that has the registry the pipeline was
 * created in (opts.registry; by name from another process). Read-only, for
 * display: -ENOENT, -SHMP_ETYPE (not a pipeline), -SHMP_ECORRUPT. */
SHMP_API int shmp_pipeline_inspect(shmp_registry_t *r, const char *name, struct shmp_pipeline_stats *st);

#ifdef __cplusplus
}
#endif
#endif
