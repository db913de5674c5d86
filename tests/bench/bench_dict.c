/* Dict get and set throughput with 2 processes, beside Python's
 * multiprocessing Manager().dict() doing the same in this run, quiet and
 * loaded (bench.h) (goal: shmp >= 1000x Python).
 *
 *   - each process on its own 256 keys, and both on the same 256 keys;
 *   - 16-byte values (inline in the entry), keys of 6-8 bytes;
 *   - ops/s = both processes' ops / the time from their release until both
 *     are done. Python's figure is taken the same way, with a Barrier and
 *     each worker's own clock.
 *
 * The repetitions alternate shmp and Python (as BENCH_PAIR does) and each
 * figure is the median. Every get checks its result and every set's value
 * is checked afterwards: a broken Dict must fail here, not post a great
 * number. python3 is optional: without it the peer prints as n/a. */
#include "bench.h"
#include "shmp/registry.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>

#define NPROC 2
#define NKEYS 256
#define VLEN 16
/* BENCH_QUICK makes them small (main). */
static long N_GET = 4000000L; /* per process: ~0.1-0.5 s a run */
static long N_SET = 2000000L;
static long PY_N = 5000;      /* per process: Manager().dict() does ~25k ops/s */

enum { GET_OWN, SET_OWN, GET_SHARED, SET_SHARED, NVAR };
static const char *var_name[NVAR] = { "get_own", "set_own", "get_shared", "set_shared" };

static shmp_dict_t *d;
static char keys[NPROC + 1][NKEYS][16]; /* [proc][key]: "p0-k0"...; [NPROC]: shared "k0"... */
static atomic_long *errors;         /* in shared memory */

struct job {
	int op_set;
	int shared;
	long n;
};

static void work(int i, void *arg)
{
	struct job *j = arg;
	char (*ks)[16] = keys[j->shared ? NPROC : i];
	unsigned char v[VLEN];
	size_t len;
	long bad = 0;
	memset(v, 'a' + i, VLEN);
	if (j->op_set) {
		for (long k = 0; k < j->n; k++) {
			memcpy(v, &k, sizeof k);
			bad += shmp_dict_set(d, ks[k & (NKEYS - 1)], v, VLEN) != 0;
		}
	} else {
		for (long k = 0; k < j->n; k++)
			bad += shmp_dict_get(d, ks[k & (NKEYS - 1)], v, VLEN, &len) != 0 || len != VLEN;
	}
	if (bad)
		atomic_fetch_add(errors, bad);
}

static void fill_keys(int shared)
{
	unsigned char v[VLEN];
	memset(v, 'x', VLEN);
	for (int p = shared ? NPROC : 0; p < (shared ? NPROC + 1 : NPROC); p++)
		for (int k = 0; k < NKEYS; k++)
			if (shmp_dict_set(d, keys[p][k], v, VLEN) != 0) {
				fprintf(stderr, "set failed\n");
				exit(1);
			}
}

/* After a set run: every key holds a value one of the processes wrote. */
static void check_sets(int shared, long n)
{
	for (int p = shared ? NPROC : 0; p < (shared ? NPROC + 1 : NPROC); p++)
		for (int k = 0; k < NKEYS; k++) {
			unsigned char v[VLEN];
			size_t len = 0;
			long seq;
			if (shmp_dict_get(d, keys[p][k], v, VLEN, &len) != 0 || len != VLEN) {
				fprintf(stderr, "get %s failed after sets\n", keys[p][k]);
				exit(1);
			}
			memcpy(&seq, v, sizeof seq);
			int who = v[sizeof seq] - 'a';
			if (seq < 0 || seq >= n || (seq & (NKEYS - 1)) != k || who < 0 || who >= NPROC ||
			    (!shared && who != p)) {
				fprintf(stderr, "%s holds a value nobody wrote (seq %ld, writer %d)\n",
					keys[p][k], seq, who);
				exit(1);
			}
		}
}

static double run(int var)
{
	struct job j = { .op_set = var == SET_OWN || var == SET_SHARED,
			 .shared = var >= GET_SHARED,
			 .n = var == SET_OWN || var == SET_SHARED ? N_SET : N_GET };
	fill_keys(j.shared);
	atomic_store(errors, 0);
	double t = bench_run_procs(NPROC, work, &j);
	if (atomic_load(errors)) {
		fprintf(stderr, "%s: %ld failed calls\n", var_name[var], atomic_load(errors));
		exit(1);
	}
	if (j.op_set)
		check_sets(j.shared, j.n);
	return NPROC * j.n / t;
}

/* ---- Python's Manager().dict() ------------------------------------------- */

static const char py_script[] =
	"import multiprocessing as mp, sys, time\n"
	"def worker(d, keys, n, op, bar, q):\n"
	"    v = b'x' * 16\n"
	"    m = len(keys)\n"
	"    bar.wait()\n"
	"    t0 = time.perf_counter()\n"
	"    if op == 'set':\n"
	"        for i in range(n):\n"
	"            d[keys[i % m]] = v\n"
	"    else:\n"
	"        for i in range(n):\n"
	"            if len(d[keys[i % m]]) != 16:\n"
	"                raise SystemExit(3)\n"
	"    q.put((t0, time.perf_counter()))\n"
	"def main():\n"
	"    n, nkeys = int(sys.argv[1]), int(sys.argv[2])\n"
	"    ctx = mp.get_context('fork')\n"
	"    with ctx.Manager() as man:\n"
	"        d = man.dict()\n"
	"        for shared in (0, 1):\n"
	"            ks = [[('k%d' % j) if shared else ('p%d-k%d' % (i, j)) for j in range(nkeys)]\n"
	"                  for i in range(2)]\n"
	"            for k in ks[0] + ks[1]:\n"
	"                d[k] = b'x' * 16\n"
	"            for op in ('get', 'set'):\n"
	"                bar, q = ctx.Barrier(2), ctx.Queue()\n"
	"                ps = [ctx.Process(target=worker, args=(d, ks[i], n, op, bar, q))\n"
	"                      for i in range(2)]\n"
	"                for p in ps:\n"
	"                    p.start()\n"
	"                ts = [q.get(timeout=600) for _ in ps]\n"
	"                for p in ps:\n"
	"                    p.join()\n"
	"                    if p.exitcode:\n"
	"                        raise SystemExit(p.exitcode)\n"
	"                dt = max(t[1] for t in ts) - min(t[0] for t in ts)\n"
	"                print('%s_%s %.0f' % (op, 'shared' if shared else 'own', 2 * n / dt),\n"
	"                      flush=True)\n"
	"main()\n";

static int have_python = 1;

/* One run of the script: out[var] = ops/s, 0 if Python failed or is
 * missing. */
static void run_python(double out[NVAR])
{
	for (int v = 0; v < NVAR; v++)
		out[v] = 0;
	if (!have_python)
		return;
	int fd[2];
	if (pipe(fd) != 0) {
		perror("pipe");
		exit(1);
	}
	char n[32], nk[32];
	snprintf(n, sizeof n, "%ld", PY_N);
	snprintf(nk, sizeof nk, "%d", NKEYS);
	fflush(NULL);
	pid_t p = fork();
	if (p == 0) {
		dup2(fd[1], 1);
		close(fd[0]);
		close(fd[1]);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execlp("python3", "python3", "-c", py_script, n, nk, (char *)NULL);
		_exit(127);
	}
	close(fd[1]);
	char buf[1024];
	size_t got = 0;
	ssize_t r;
	while (got < sizeof buf - 1 && ((r = read(fd[0], buf + got, sizeof buf - 1 - got)) > 0 ||
					 (r < 0 && errno == EINTR)))
		if (r > 0)
			got += (size_t)r;
	buf[got] = 0;
	close(fd[0]);
	int st = 0;
	waitpid(p, &st, 0);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 127) {
		printf("# python3 not found: the Python Manager().dict() peer is skipped\n");
		have_python = 0;
		return;
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		printf("# the Python peer failed (status %d): its figures are skipped\n", st);
		have_python = 0;
		return;
	}
	for (int v = 0; v < NVAR; v++) {
		const char *s = strstr(buf, var_name[v]);
		if (s)
			out[v] = atof(s + strlen(var_name[v]));
	}
}

/* shmp's variant k, or (k >= NVAR) Python's variant k - NVAR: the first
 * of those runs the script for all four, in this round and state. */
static double measure(void *unused, int k, double *extra)
{
	(void)unused, (void)extra;
	static double py[NVAR];
	if (k < NVAR)
		return run(k);
	if (k == NVAR)
		run_python(py);
	return py[k - NVAR];
}

int main(void)
{
	if (bench_quick()) {
		N_GET = 20000;
		N_SET = 10000;
		PY_N = 200;
	}
	errors = bench_shm(sizeof *errors);
	d = shmp_dict_create(NULL);
	if (!d) {
		fprintf(stderr, "shmp_dict_create: %s\n", shmp_strerror(errno));
		return 1;
	}
	for (int p = 0; p <= NPROC; p++)
		for (int k = 0; k < NKEYS; k++) {
			if (p < NPROC)
				snprintf(keys[p][k], sizeof keys[p][k], "p%d-k%d", p, k);
			else
				snprintf(keys[p][k], sizeof keys[p][k], "k%d", k);
		}

	bench_header("bench_dict", "Dict get/set, 2 processes, beside Python's Manager().dict()");
	printf("# %d processes, %d keys, %d-byte values (shmp %ld gets / %ld sets, Python %ld ops per process a run)\n",
	       NPROC, NKEYS, VLEN, N_GET, N_SET, PY_N);
	struct bench_var v[2 * NVAR];
	for (int k = 0; k < 2 * NVAR; k++)
		v[k] = BENCH_VAR(measure, NULL, k);
	double t0 = bench_now();
	bench_run(v, 2 * NVAR);
	static const char *label[NVAR] = { "Dict get, own keys, 2 processes", "Dict set, own keys, 2 processes",
					    "Dict get, shared keys, 2 processes", "Dict set, shared keys, 2 processes" };
	bench_section("Dict (M ops/s, higher is better)");
	for (int k = 0; k < NVAR; k++)
		bench_line(label[k], "M/s", bench_fig_scale(bench_fig(&v[k]), 1e-6), "Python Manager().dict()",
			   bench_fig_scale(bench_fig(&v[NVAR + k]), 1e-6), ">= 1000");
	printf("# %.1f s in all\n", bench_now() - t0);
	shmp_dict_destroy(d);
	return 0;
}
