/* tour.h — what the tour's sections share.
 *
 * A section is one example of the tutorials in shared/seeds/, redone in C.
 * It prints what the Python prints (which worker ran what) and checks its
 * own results with CHECK*, so that the tour doubles as a test. */
#ifndef TOUR_H
#define TOUR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <shmp.h>

struct tour_section {
	const char *seed;   /* the tutorial: a file name under shared/seeds/ */
	const char *name;   /* what `tour NAME` takes */
	const char *title;
	const char *python; /* the Python it mirrors; lines end with '\n' */
	int (*run)(void);   /* 0; -1 when it could not even start (a check failed) */
};

#define SEED_000 "000_73a0c0d64405bdde.txt (Japanese)"
#define SEED_001 "001_ac688e6e7d01281e.txt (Chinese)"
#define SEED_002 "002_91077d497bc4fc99.txt (Chinese)"
#define SEED_003 "003_10ec99a3576242bf.txt (Korean)"
#define SEED_004 "004_90947c0e0a9fe8e6.txt (Chinese)"

/*
 * One second of a tutorial's time.sleep() lasts this long in the tour:
 * the examples keep their shape (who waits for whom) and the whole tour
 * stays within a few seconds.
 */
#define TOUR_SECOND_MS 50
#define TOUR_SECOND (TOUR_SECOND_MS / 1000.0)

/* Every wait of the tour is bounded: a broken example fails, never hangs. */
#define TOUR_WAIT 30.0

/*
 * say() writes one whole line with a single write(2) to stdout. Workers are
 * other processes: stdio buffers would be duplicated by fork or lost by a
 * worker's _exit, and lines of different processes would be cut into each
 * other. One write per line keeps them whole and in the order they happened.
 * Lines are indented by two spaces under the section's header.
 */
void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Like say(), without the indent. */
void say_raw(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* time.sleep(tutorial_seconds), scaled by TOUR_SECOND_MS. */
void nap(double tutorial_seconds);
/* A sleep of ms milliseconds, for the rare wait that is not the tutorial's. */
void nap_ms(long ms);
/* CLOCK_MONOTONIC in seconds. */
double tour_now(void);
/* The calling thread's id (a ThreadPool's workers share the pid). */
pid_t tour_tid(void);
/* A small pseudo-random number in [lo, hi), the same sequence on every run
 * for a given seed: random.uniform() without making the output differ. */
double tour_uniform(uint64_t seed, double lo, double hi);

/* A return code as C code spells it ("-ETIMEDOUT", "-SHMP_ECLOSED", ...). */
const char *rcname(int rc);
/* A double as Python prints it (3.515625, 4.0, 0.1111111111111111). */
const char *pyfloat(double x, char *buf, size_t size);

/* Python's process names: "ForkPoolWorker-N" with N = ctx->worker + 1. */
const char *worker_name(const struct shmp_task_ctx *c);

/*
 * Checks. They count in the tour's own process only: a section checks what
 * came back from the workers (results carry the worker's pid where that
 * matters), never inside a worker.
 */
extern unsigned tour_checks, tour_failures;
int tour_check(int ok, const char *what, const char *file, int line);
int tour_check_eq(long long a, long long b, const char *what, const char *file, int line);
#define CHECK(cond) tour_check(!!(cond), #cond, __FILE__, __LINE__)
#define CHECK_EQ(a, b) \
	tour_check_eq((long long)(a), (long long)(b), #a " == " #b, __FILE__, __LINE__)

/* Pool helpers: create (NULL after saying why), and Python's close(); join()
 * followed by the free C needs. Both count as checks. */
shmp_pool_t *tour_pool(int workers, const struct shmp_pool_opts *opts);
shmp_pool_t *tour_threadpool(int workers, const struct shmp_pool_opts *opts);
void tour_pool_close_join(shmp_pool_t *p);
/* Wait until every worker runs. Python's Pool() returns with its workers
 * started; shmp's forks them in the background, and a first worker could
 * take every short task before the others are up. */
void tour_pool_ready(shmp_pool_t *p);

/*
 * Wait for an async call, showing a progress line of the pool's completed
 * tasks (total: the tasks the call made) when it takes a while.
 */
int tour_wait_progress(shmp_pool_t *p, shmp_async_t *a, const char *label, uint64_t total);

/* ---- the sections, in the order of the tutorials ---- */
/* s000_pool.c */
int sec_apply_async(void);
int sec_get_timeout(void);
int sec_close_join(void);
/* s001_map.c */
int sec_map(void);
int sec_map_blocking(void);
int sec_map_async(void);
/* s001_apply_async.c */
int sec_apply_async_list(void);
int sec_apply_async_error(void);
int sec_callback(void);
/* s002_options.c */
int sec_initializer(void);
int sec_maxtasksperchild(void);
int sec_chunksize(void);
/* s002_iter.c */
int sec_imap(void);
int sec_imap_unordered(void);
int sec_starmap(void);
int sec_apply(void);
/* s002_threadpool.c */
int sec_terminate(void);
int sec_threadpool(void);
/* s003_process.c */
int sec_doubler(void);
int sec_process(void);
/* s004_class_pool.c */
int sec_class_map(void);
int sec_class_starmap(void);
/* s004_shared.c */
int sec_value_array(void);
/* s004_manager.c: Manager, as the shmp registry */
int sec_manager(void);
int sec_ctypes(void);
/* s004_lock.c */
int sec_lock(void);
int sec_rlock(void);

#endif
