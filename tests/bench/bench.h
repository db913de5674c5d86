/* Benchmark machinery, one copy for every bench_*.c: clocks, shared scratch
 * memory, medians, the run header, the load generator, variants measured
 * in turns in a quiet and a loaded state, and one report line per figure:
 * shmp beside its peer from the same run, quiet and loaded.
 *
 * States. Every figure is measured twice: "quiet" (nothing of ours running
 * beside it) and "loaded": one busy-looping process per online CPU, at the
 * priority and scheduling policy this process has (they inherit it), so
 * the machine looks like one running a Pool with a worker per CPU. The
 * loaders are started and stopped here; they die with us whatever ends us
 * (PR_SET_PDEATHSIG, checked against a parent already gone), an exit()
 * stops them (atexit), and they close every inherited descriptor first so
 * that no pipe a benchmark made waits on them for its end of file.
 *
 * Runs. bench_run() takes a group of variants (shmp and its peers) and
 * measures them in turns, a b c a b c ..., BENCH_REPS rounds (default 5)
 * quiet, then as many loaded; each figure is the median of its rounds.
 * The load on a shared machine drifts: blocks of runs one after the other
 * would measure the drift instead of shmp against its peer.
 *
 * Environment:
 *   BENCH_REPS=n     rounds per state (default 5)
 *   BENCH_QUICK=1    a smoke test: 1 round, small sizes (bench_n), the
 *                    Python anchor skipped; figures are meaningless
 *   BENCH_STATES=quiet|loaded   only one of the two states
 *   SHMP_ANCHORS_DIR where py_pool.py (Python's multiprocessing) lives */
#ifndef SHMP_BENCH_H
#define SHMP_BENCH_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "shmp.h"

#ifndef SHMP_ANCHORS_DEFAULT
#define SHMP_ANCHORS_DEFAULT "../shared/anchors"
#endif

#define BENCH_MAXREPS 100
#define BENCH_MAXLOAD 256
#define BENCH_MAXX 8 /* extra figures a measurement may return */
#define BENCH_MAXVARS 32

enum { BENCH_QUIET, BENCH_LOADED, BENCH_NSTATES };
static const char *const bench_state_name[BENCH_NSTATES] = { "quiet", "loaded" };

static inline double bench_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static inline void *bench_shm(size_t n)
{
	void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	memset(p, 0, n);
	return p;
}

static inline int bench_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Sorts v. */
static inline double bench_median(double *v, int n)
{
	if (n <= 0)
		return 0;
	qsort(v, (size_t)n, sizeof *v, bench_cmp);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- configuration ------------------------------------------------------- */

static inline int bench_quick(void)
{
	const char *s = getenv("BENCH_QUICK");
	return s && *s && strcmp(s, "0") != 0;
}

/* Rounds per state: BENCH_REPS, default 5; 1 with BENCH_QUICK. */
static inline int bench_reps(void)
{
	const char *s = getenv("BENCH_REPS");
	int r = s ? atoi(s) : 0;
	if (r > 0 && r <= BENCH_MAXREPS)
		return r;
	return bench_quick() ? 1 : 5;
}

/* A count: `full` normally, `quick` with BENCH_QUICK. */
static inline long bench_n(long full, long quick)
{
	return bench_quick() ? quick : full;
}

/* Seconds a measurement that could crawl under load (a spinning ping-pong
 * whose peer is descheduled for a time slice per trip) may take before it
 * stops and reports the rate of what it did: 2 s, 0.2 s with BENCH_QUICK. */
static inline double bench_budget(void)
{
	return bench_quick() ? 0.2 : 2.0;
}

/* Whether state s is measured (BENCH_STATES=quiet or loaded limits it). */
static inline int bench_state_on(int s)
{
	const char *e = getenv("BENCH_STATES");
	if (!e || !*e || !strcmp(e, "both"))
		return 1;
	return strstr(e, bench_state_name[s]) != NULL;
}

static inline int bench_ncpu(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > BENCH_MAXLOAD ? BENCH_MAXLOAD : (int)n;
}

static inline const char *bench_anchor_dir(void)
{
	const char *dir = getenv("SHMP_ANCHORS_DIR");
	return dir && *dir ? dir : SHMP_ANCHORS_DEFAULT;
}

/* python3 runs, and the anchor script is there. */
static inline int bench_have_python_anchor(void)
{
	static int have = -1;
	if (have < 0) {
		char path[1024];
		snprintf(path, sizeof path, "%s/py_pool.py", bench_anchor_dir());
		fflush(NULL);
		have = access(path, R_OK) == 0 && system("python3 -c '' >/dev/null 2>&1") == 0;
	}
	return have;
}

/* ---- the header ---------------------------------------------------------- */

static inline void bench_loadavg(char *buf, size_t n)
{
	FILE *f = fopen("/proc/loadavg", "r");
	snprintf(buf, n, "?");
	if (f) {
		if (fgets(buf, (int)n, f))
			buf[strcspn(buf, "\n")] = 0;
		fclose(f);
	}
}

/* What the figures below were taken on: date, load (uptime's three
 * figures and /proc/loadavg's running/total), CPUs, the optional peers,
 * the mode. */
static inline void bench_header(const char *prog, const char *what)
{
	char date[64], la[128];
	time_t t = time(NULL);
	strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S %z", localtime(&t));
	bench_loadavg(la, sizeof la);
	printf("\n######## %s: %s\n", prog, what);
	printf("# date %s; load average (1, 5, 15 min, running/total) %s; %d CPUs online\n", date, la,
	       bench_ncpu());
	printf("# peers: Python anchor %s; ZeroMQ %s; ck %s\n",
	       bench_quick() ? "skipped (BENCH_QUICK)" : bench_have_python_anchor() ? "yes" : "no (python3 or py_pool.py missing; SHMP_ANCHORS_DIR)",
#ifdef BENCH_HAVE_ZMQ
	       "yes",
#else
	       "no (libzmq3-dev not found at build)",
#endif
#ifdef BENCH_HAVE_CK
	       "yes"
#else
	       "no (libck-dev not found at build)"
#endif
	);
	printf("# %s: medians of %d rounds per state, variants in turns; states: %s%s%s (loaded = %d busy-looping "
	       "processes, one per CPU, same priority)\n",
	       bench_quick() ? "QUICK SMOKE RUN, figures meaningless" : "full run", bench_reps(),
	       bench_state_on(BENCH_QUIET) ? "quiet" : "",
	       bench_state_on(BENCH_QUIET) && bench_state_on(BENCH_LOADED) ? ", " : "",
	       bench_state_on(BENCH_LOADED) ? "loaded" : "", bench_ncpu());
	fflush(stdout);
}

/* ---- the load ------------------------------------------------------------- */

static struct {
	pid_t pid[BENCH_MAXLOAD];
	int n;
	pid_t owner; /* the process that started them: a forked child's exit must not stop them */
	int atexit_set;
} bench_load_;

static inline void bench_load_stop(void)
{
	if (bench_load_.owner != getpid())
		return;
	for (int i = 0; i < bench_load_.n; i++)
		kill(bench_load_.pid[i], SIGKILL);
	for (int i = 0; i < bench_load_.n; i++)
		while (waitpid(bench_load_.pid[i], NULL, 0) < 0 && errno == EINTR)
			;
	bench_load_.n = 0;
}

static inline void bench_load_atexit(void)
{
	bench_load_stop();
}

static inline void bench_loader_main(pid_t parent)
{
	/* Die with the benchmark, also if it died before this line. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(0);
	/* Hold nothing of the benchmark's open: its pipes must see their
	 * end of file when it closes them. */
#ifdef SYS_close_range
	if (syscall(SYS_close_range, 0u, ~0u, 0u) != 0)
#endif
		for (int fd = 0; fd < 65536; fd++)
			close(fd);
	signal(SIGINT, SIG_IGN); /* Ctrl-C ends the benchmark, which ends us */
	volatile unsigned long x = 0;
	for (;;)
		x++;
}

/* Start one busy-looping process per online CPU. */
static inline void bench_load_start(void)
{
	if (bench_load_.n)
		return;
	if (!bench_load_.atexit_set) {
		atexit(bench_load_atexit);
		bench_load_.atexit_set = 1;
	}
	bench_load_.owner = getpid();
	fflush(NULL); /* the loaders never flush, but be sure nothing is printed twice */
	int n = bench_ncpu();
	pid_t me = getpid();
	for (int i = 0; i < n; i++) {
		pid_t p = fork();
		if (p < 0) {
			perror("bench: fork of a loader");
			bench_load_stop();
			exit(1);
		}
		if (p == 0)
			bench_loader_main(me);
		bench_load_.pid[bench_load_.n++] = p;
	}
	/* Let them get onto the CPUs before anything is timed. */
	usleep(50 * 1000);
}

static inline void bench_state_enter(int s)
{
	if (s == BENCH_LOADED)
		bench_load_start();
	else
		bench_load_stop();
}

/* ---- variants measured in turns, in both states -------------------------- */

/* One measurement: returns the figure; extra[0..BENCH_MAXX-1] (zeroed
 * before the call) may receive more figures of the same run (e.g. the
 * first call on a fresh pool beside the warm one, latency percentiles
 * beside the throughput). */
typedef double (*bench_fn)(void *arg, int k, double *extra);

struct bench_var {
	bench_fn fn;
	void *arg;
	int k;
	/* results: medians per state, NAN where a state was not measured */
	double med[BENCH_NSTATES], xmed[BENCH_NSTATES][BENCH_MAXX];
};

#define BENCH_VAR(fn_, arg_, k_) ((struct bench_var){ .fn = (fn_), .arg = (arg_), .k = (k_) })

/* A figure: its value quiet and loaded. */
struct bench_fig {
	double v[BENCH_NSTATES];
};

static inline struct bench_fig bench_fig(const struct bench_var *v)
{
	return (struct bench_fig){ { v->med[0], v->med[1] } };
}

static inline struct bench_fig bench_xfig(const struct bench_var *v)
{
	return (struct bench_fig){ { v->xmed[0][0], v->xmed[1][0] } };
}

/* Extra figure i. */
static inline struct bench_fig bench_xfig_n(const struct bench_var *v, int i)
{
	return (struct bench_fig){ { v->xmed[0][i], v->xmed[1][i] } };
}

static inline struct bench_fig bench_fig2(double quiet, double loaded)
{
	return (struct bench_fig){ { quiet, loaded } };
}

static inline struct bench_fig bench_fig_scale(struct bench_fig f, double by)
{
	return (struct bench_fig){ { f.v[0] * by, f.v[1] * by } };
}

static inline struct bench_fig bench_fig_div(struct bench_fig a, struct bench_fig b)
{
	return (struct bench_fig){ { a.v[0] / b.v[0], a.v[1] / b.v[1] } };
}

static inline struct bench_fig bench_fig_add(struct bench_fig a, double c)
{
	return (struct bench_fig){ { a.v[0] + c, a.v[1] + c } };
}

/* The rounds of state s for n variants: every variant once per round. */
static inline void bench_rounds(struct bench_var *vs, int n, int s)
{
	static double v[BENCH_MAXVARS][BENCH_MAXREPS], x[BENCH_MAXVARS][BENCH_MAXX][BENCH_MAXREPS];
	int reps = bench_reps();
	if (n > BENCH_MAXVARS) {
		fprintf(stderr, "bench: more than %d variants in a group\n", BENCH_MAXVARS);
		exit(1);
	}
	for (int r = 0; r < reps; r++)
		for (int j = 0; j < n; j++) {
			double e[BENCH_MAXX] = { 0 };
			v[j][r] = vs[j].fn(vs[j].arg, vs[j].k, e);
			for (int i = 0; i < BENCH_MAXX; i++)
				x[j][i][r] = e[i];
		}
	for (int j = 0; j < n; j++) {
		vs[j].med[s] = bench_median(v[j], reps);
		for (int i = 0; i < BENCH_MAXX; i++)
			vs[j].xmed[s][i] = bench_median(x[j][i], reps);
	}
}

/* Quiet rounds, then loaded rounds, each state entered by enter(state)
 * (bench_state_enter, or a wrapper that keeps other processes in step). */
static inline void bench_run_states(struct bench_var *vs, int n, void (*enter)(int))
{
	for (int s = 0; s < BENCH_NSTATES; s++) {
		for (int j = 0; j < n; j++) {
			vs[j].med[s] = NAN;
			for (int i = 0; i < BENCH_MAXX; i++)
				vs[j].xmed[s][i] = NAN;
		}
		if (!bench_state_on(s))
			continue;
		enter(s);
		bench_rounds(vs, n, s);
	}
}

/* Measure a group: quiet rounds, then loaded rounds. Loaders are stopped
 * again on return. */
static inline void bench_run(struct bench_var *vs, int n)
{
	bench_run_states(vs, n, bench_state_enter);
	bench_load_stop();
}

/* ---- report lines ----------------------------------------------------------- */

/* A goal on shmp/peer: ">= r" or "<= r" (an optional trailing "x" and a
 * comment after ';' allowed) is judged, MET or MISSED per state; anything
 * else ("info", prose) is printed as it is. Returns -1 (no verdict), 0, 1. */
static inline int bench_goal_met(const char *goal, double ratio)
{
	int ge = !strncmp(goal, ">=", 2), le = !strncmp(goal, "<=", 2);
	if (!(ge || le) || isnan(ratio) || isinf(ratio))
		return -1;
	char *end;
	double r = strtod(goal + 2, &end);
	if (end == goal + 2)
		return -1;
	while (*end == ' ' || *end == 'x')
		end++;
	if (*end && *end != ';' && *end != ',')
		return -1;
	return ge ? ratio >= r : ratio <= r;
}

static inline void bench_columns(void)
{
	printf("%-44s %-7s | %-30s | %10s %10s %7s | %10s %10s %7s | %s\n", "figure", "unit", "peer (same run)",
	       "shmp", "peer", "ratio", "shmp", "peer", "ratio", "goal (on shmp/peer): quiet, loaded");
	printf("%-44s %-7s | %-30s | %29s | %29s |\n", "", "", "", "------------ quiet ------------",
	       "----------- loaded ------------");
}

static inline void bench_section(const char *title)
{
	printf("\n== %s ==\n", title);
	bench_columns();
	fflush(stdout);
}

static inline void bench_num(char *b, size_t n, double v)
{
	if (isnan(v) || v <= 0)
		snprintf(b, n, "n/a");
	else if (v >= 1e5 || v < 1e-2)
		snprintf(b, n, "%.3e", v);
	else
		snprintf(b, n, "%.4g", v);
}

/* One line: the figure quiet and loaded, its peer from the same rounds,
 * shmp/peer, and the goal with its verdict in each state. A peer value of
 * 0 or NAN prints n/a (peer missing, state not measured). */
static inline void bench_line(const char *name, const char *unit, struct bench_fig shmp, const char *peer_name,
			      struct bench_fig peer, const char *goal)
{
	char cols[BENCH_NSTATES][3][24], verdict[BENCH_NSTATES][16];
	for (int s = 0; s < BENCH_NSTATES; s++) {
		double a = shmp.v[s], b = peer.v[s];
		int ok = !isnan(a) && a > 0 && !isnan(b) && b > 0;
		bench_num(cols[s][0], sizeof cols[s][0], a);
		bench_num(cols[s][1], sizeof cols[s][1], b);
		if (ok)
			snprintf(cols[s][2], sizeof cols[s][2], "%.3f", a / b);
		else
			snprintf(cols[s][2], sizeof cols[s][2], "n/a");
		int m = ok ? bench_goal_met(goal, a / b) : -1;
		snprintf(verdict[s], sizeof verdict[s], "%s", m < 0 ? "-" : m ? "MET" : "MISSED");
	}
	int judged = strcmp(verdict[0], "-") || strcmp(verdict[1], "-");
	printf("%-44s %-7s | %-30s | %10s %10s %7s | %10s %10s %7s | %s", name, unit, peer_name, cols[0][0],
	       cols[0][1], cols[0][2], cols[1][0], cols[1][1], cols[1][2], goal);
	if (judged)
		printf(": %s, %s", verdict[0], verdict[1]);
	printf("\n");
	fflush(stdout);
}

/* A figure with no peer (printed for the record). */
static inline void bench_info(const char *name, const char *unit, struct bench_fig v, const char *note)
{
	char a[24], b[24];
	bench_num(a, sizeof a, v.v[0]);
	bench_num(b, sizeof b, v.v[1]);
	printf("%-44s %-7s | %-30s | %10s %10s %7s | %10s %10s %7s | %s\n", name, unit, "-", a, "", "", b, "", "",
	       note);
	fflush(stdout);
}

/* ---- Python's multiprocessing anchor ---------------------------------------- */

/* A figure from py_pool.py (Python's multiprocessing), run once per state
 * per benchmark program, in that state (loaders running or not); 0 if
 * Python or the anchor is not there, and with BENCH_QUICK. One run, not a
 * median: Python is 2-3 orders of magnitude away, the goals are too. */
static inline double bench_python_state(int state, const char *key)
{
	static char out[BENCH_NSTATES][8192];
	static int ran[BENCH_NSTATES];
	if (state < 0 || state >= BENCH_NSTATES || bench_quick() || !bench_state_on(state) ||
	    !bench_have_python_anchor())
		return 0;
	if (!ran[state]) {
		ran[state] = 1;
		char cmd[1200];
		snprintf(cmd, sizeof cmd, "python3 '%s/py_pool.py' 2>/dev/null", bench_anchor_dir());
		fprintf(stderr, "running Python's multiprocessing anchor, %s (%s)...\n", bench_state_name[state], cmd);
		bench_state_enter(state);
		fflush(NULL);
		FILE *f = popen(cmd, "r");
		if (f) {
			size_t n = fread(out[state], 1, sizeof out[state] - 1, f);
			out[state][n] = 0;
			pclose(f);
		}
		bench_load_stop();
	}
	const char *p = strstr(out[state], key);
	return p ? atof(p + strlen(key)) : 0;
}

/* Both states' figure for `key`, scaled. */
static inline struct bench_fig bench_python_fig(const char *key, double scale)
{
	return bench_fig2(bench_python_state(BENCH_QUIET, key) * scale, bench_python_state(BENCH_LOADED, key) * scale);
}

/* ---- the one-state API of earlier benchmarks ------------------------------------ */

/* For a benchmark not yet converted to bench_run/bench_line: one figure,
 * measured in whatever state the caller set up (bench_state_enter). New
 * code uses bench_run and bench_line, which print both states. */
static inline double bench_python(const char *key)
{
	return bench_python_state(BENCH_QUIET, key);
}

#define BENCH_MEDIAN(expr)                                        \
	({                                                        \
		double v_[BENCH_MAXREPS];                         \
		int n_ = bench_reps();                            \
		for (int i_ = 0; i_ < n_; i_++)                   \
			v_[i_] = (expr);                          \
		bench_median(v_, n_);                             \
	})

/* Medians of two measurements taken in turns (a, b, a, b, ...). */
#define BENCH_PAIR(a_expr, b_expr, a_out, b_out)                  \
	do {                                                      \
		double av_[BENCH_MAXREPS], bv_[BENCH_MAXREPS];    \
		int n_ = bench_reps();                            \
		for (int i_ = 0; i_ < n_; i_++) {                 \
			av_[i_] = (a_expr);                       \
			bv_[i_] = (b_expr);                       \
		}                                                 \
		*(a_out) = bench_median(av_, n_);                 \
		*(b_out) = bench_median(bv_, n_);                 \
	} while (0)

/* One line, one state: the figure, its peer from the same run, shmp/peer. */
static inline void bench_report(const char *name, double shmp, const char *peer_name, double peer,
				const char *unit, const char *goal)
{
	if (peer > 0)
		printf("%-34s shmp %12.2f %-8s | %-30s %12.2f %-8s | shmp/peer %8.3f  (goal %s)\n", name, shmp, unit,
		       peer_name, peer, unit, shmp / peer, goal);
	else
		printf("%-34s shmp %12.2f %-8s | %-30s %12s %-8s | shmp/peer %8s  (goal %s)\n", name, shmp, unit,
		       peer_name, "n/a", unit, "n/a", goal);
	fflush(stdout);
}

/* ---- processes -------------------------------------------------------------- */

/* Fork `nproc` children running fn(i, arg), released together; returns the
 * seconds from release until all have exited. */
static inline double bench_run_procs(int nproc, void (*fn)(int, void *), void *arg)
{
	atomic_int *go = bench_shm(sizeof *go);
	pid_t pids[64];
	if (nproc > 64)
		nproc = 64;
	fflush(NULL);
	for (int i = 0; i < nproc; i++) {
		pids[i] = fork();
		if (pids[i] < 0) {
			perror("fork");
			exit(1);
		}
		if (pids[i] == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			while (!atomic_load(go))
				sched_yield(); /* the parent needs a CPU to say go */
			fn(i, arg);
			_exit(0);
		}
	}
	double t = bench_now();
	atomic_store(go, 1);
	for (int i = 0; i < nproc; i++)
		waitpid(pids[i], NULL, 0);
	t = bench_now() - t;
	munmap(go, sizeof *go);
	return t;
}

#endif
