/* tour — every example of the five multiprocessing tutorials shmp comes from
 * (the .txt files in shared/seeds/), redone in C with shmp, in the tutorials' order.
 *
 *   tour              run every section
 *   tour N|NAME ...   run the sections given (number or name)
 *   tour --list       list the sections
 *
 * Each section prints what the Python prints (which worker ran what) under a
 * header naming the tutorial and the Python it mirrors, and checks its own
 * results (map against the sequential loop, who ran where, error codes...).
 * The exit status is 1 if any check failed, so the test suite runs the tour.
 *
 * Adding a section: write its function in a file of its own (the build picks
 * up every .c here), declare it in tour.h, and add one line to the table. */
#include "tour.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct tour_section sections[] = {
	/* 000 (Japanese): Pool, apply_async, get(timeout), no with-statement */
	{ SEED_000, "apply_async", "apply_async and get, in a with-block",
	  "with multiprocessing.Pool(5) as p:\n"
	  "    p1 = p.apply_async(worker1, (100,)); logging.debug(p1.get())\n",
	  sec_apply_async },
	{ SEED_000, "get_timeout", "get(timeout=1) on a task that sleeps 5: TimeoutError",
	  "with multiprocessing.Pool(1) as p:\n"
	  "    p1 = p.apply_async(worker1, (100,)); logging.debug(p1.get(timeout=1))\n",
	  sec_get_timeout },
	{ SEED_000, "close_join", "without the with-statement: close() (and join()) yourself",
	  "p = multiprocessing.Pool(3); p1 = p.apply_async(worker1, (100,))\n"
	  "logging.debug(p1.get()); p.close()\n",
	  sec_close_join },
	/* 001 (Chinese): map, map_async, apply_async, errors, callbacks */
	{ SEED_001, "map", "Pool(4).map: four processes share ten tasks",
	  "pool = Pool(4); pool_outputs = pool.map(main_map, inputs); print(pool_outputs)\n",
	  sec_map },
	{ SEED_001, "map_blocking", "pool.map blocks the main process until every task is done",
	  "pool_outputs = pool.map(main_map, inputs); print('will block ...')\n",
	  sec_map_blocking },
	{ SEED_001, "map_async", "pool.map_async does not block; close() and join() wait",
	  "pool_outputs = pool.map_async(main_async, inputs); print('will not block ...')\n"
	  "pool.close(); pool.join()\n",
	  sec_map_async },
	{ SEED_001, "apply_async_list", "one apply_async per name, results collected with get()",
	  "tasks = [pool.apply_async(say_hello_to, (name,)) for name in names]\n"
	  "pool.close(); pool.join(); for result in tasks: print(result.get())\n",
	  sec_apply_async_list },
	{ SEED_001, "apply_async_error", "one task fails: the others do not; get() reports it",
	  "if name == 'Bill': raise ValueError(f'Name Error : {name}')\n"
	  "try: print(result.get())  except Exception as err: print(err)\n",
	  sec_apply_async_error },
	{ SEED_001, "callback", "the callback runs in the main process",
	  "pool.apply_async(func, args=(10,), callback=mycallback)\n",
	  sec_callback },
	/* 002 (Chinese): initializer, maxtasksperchild, chunksize, imap,
	 * imap_unordered, starmap, apply, terminate, ThreadPool vs Pool */
	{ SEED_002, "initializer", "initializer, apply_async, map, map_async with a callback",
	  "pool = Pool(processes=2, initializer=subprocess_initializer)\n"
	  "result = pool.map_async(foo, range(3), callback=bar); print(result.get())\n",
	  sec_initializer },
	{ SEED_002, "maxtasksperchild", "a worker retires after N tasks and is replaced",
	  "pool = Pool(2, maxtasksperchild=2); pool.map(foo, range(8), chunksize=1)\n",
	  sec_maxtasksperchild },
	{ SEED_002, "chunksize", "chunksize: how many items one worker takes at a time",
	  "pool.map(foo, range(12), chunksize=4)\n",
	  sec_chunksize },
	{ SEED_002, "imap", "imap: results one at a time, in input order",
	  "for r in pool.imap(foo, [1, 2, 3]): print(r)\n",
	  sec_imap },
	{ SEED_002, "imap_unordered", "imap_unordered: results in the order they finish",
	  "for r in pool.imap_unordered(foo, [1, 2, 3]): print(r)\n",
	  sec_imap_unordered },
	{ SEED_002, "starmap", "starmap: several arguments per call",
	  "pool.starmap(foo, [(1, 2), (3, 4)])\n",
	  sec_starmap },
	{ SEED_002, "apply", "apply blocks (0, 1, 2 in turn); apply_async does not",
	  "for x in range(3): pool.apply(foo, (x,))\n"
	  "for x in range(3): pool.apply_async(foo, (x,))\n",
	  sec_apply },
	{ SEED_002, "terminate", "terminate(): stop the workers without finishing the work",
	  "pool.terminate(); pool.join()\n",
	  sec_terminate },
	{ SEED_002, "threadpool", "ThreadPool vs Pool, on I/O-bound and on CPU-bound work",
	  "ppool = Pool(workers)\n"
	  "from multiprocessing.pool import ThreadPool; tpool = ThreadPool(workers)\n",
	  sec_threadpool },
	/* 003 (Korean): Pool and Process */
	{ SEED_003, "doubler", "Pool(3).map(doubler, range(0, 10))",
	  "p = Pool(3); p.map(doubler, range(0,10))\n",
	  sec_doubler },
	{ SEED_003, "process", "one Process per number",
	  "proc = Process(target=doubler, args=(number,)); proc.start(); proc.join()\n",
	  sec_process },
	/* 004 (Chinese): map and starmap in a class, sharing state, locks */
	{ SEED_004, "class_map", "MyProcessPool1(10).start(): map over 30 items, timed",
	  "process_pool.map(self._process, [i for i in range(self.processes * 3)])\n",
	  sec_class_map },
	{ SEED_004, "class_starmap", "MyProcessPool2(10).start(): starmap over zip(i, i ** 2)",
	  "process_pool.starmap(self._process, zip([i ...], [i ** 2 ...]))\n",
	  sec_class_starmap },
	{ SEED_004, "value_array", "Value and Array shared with a Process",
	  "num = Value('d', 0.0); arr = Array('i', range(10))\n"
	  "p = Process(target=f, args=(num, arr)); p.start(); p.join()\n",
	  sec_value_array },
	/* Manager: the shmp registry takes its place, with no server. */
	{ SEED_004, "manager", "Manager: the shmp registry (dict, list, Namespace) shared by name",
	  "with Manager() as manager: d = manager.dict(); l = manager.list(range(10))\n"
	  "p = Process(target=f, args=(d, l)); p.start(); p.join(); print(d); print(l)\n",
	  sec_manager },
	{ SEED_004, "ctypes", "shared ctypes: Value, Array('c'), an Array of structs",
	  "n = Value('i', 7); x = Value(c_double, 1.0/3.0, lock=False)\n"
	  "s = Array('c', b'hello world', lock=lock); A = Array(Point, [...], lock=lock)\n",
	  sec_ctypes },
	{ SEED_004, "lock", "Lock: one process at a time",
	  "def f(l, i): l.acquire(); print('hello world', i); l.release()\n",
	  sec_lock },
	{ SEED_004, "rlock", "RLock: the owner may take it again",
	  "with rlock: with rlock: ...   # a Lock would deadlock here\n",
	  sec_rlock },
};

#define NSECTIONS (sizeof sections / sizeof sections[0])

static void usage(FILE *f)
{
	fprintf(f, "usage: tour [--list] [SECTION...]   (SECTION: a number 1-%zu or a name)\n",
		NSECTIONS);
}

static void list(void)
{
	for (size_t i = 0; i < NSECTIONS; i++)
		printf("%2zu  %-18s %.3s  %s\n", i + 1, sections[i].name, sections[i].seed,
		       sections[i].title);
}

static int find(const char *arg)
{
	char *end;
	long n = strtol(arg, &end, 10);
	if (*arg && !*end)
		return n >= 1 && (size_t)n <= NSECTIONS ? (int)n - 1 : -1;
	for (size_t i = 0; i < NSECTIONS; i++)
		if (!strcmp(arg, sections[i].name))
			return (int)i;
	return -1;
}

static void header(size_t i)
{
	const struct tour_section *s = &sections[i];
	say_raw("\n== %zu/%zu %s: %s", i + 1, NSECTIONS, s->name, s->title);
	say_raw("   seeds/%s", s->seed);
	for (const char *l = s->python; *l;) {
		const char *nl = strchr(l, '\n');
		int len = nl ? (int)(nl - l) : (int)strlen(l);
		say_raw("   # %.*s", len, l);
		l += len + (nl != NULL);
	}
}

/* The shmp.* names in /dev/shm, to say at the end that none is new. */
static int shm_names(char names[][256], int max)
{
	DIR *d = opendir("/dev/shm");
	if (!d)
		return 0;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) && n < max)
		if (!strncmp(de->d_name, "shmp.", 5))
			snprintf(names[n++], 256, "%s", de->d_name);
	closedir(d);
	return n;
}

#define MAX_SHM 256
static char shm_before[MAX_SHM][256], shm_after[MAX_SHM][256];

static void report_shm(int nbefore)
{
	int nafter = shm_names(shm_after, MAX_SHM), fresh = 0;
	for (int i = 0; i < nafter; i++) {
		int seen = 0;
		for (int j = 0; j < nbefore && !seen; j++)
			seen = !strcmp(shm_after[i], shm_before[j]);
		if (!seen) {
			/* Another program may have made it (the test suite runs in
			 * parallel): said, but not counted as the tour's failure. */
			say_raw("note: /dev/shm/%s appeared during the tour", shm_after[i]);
			fresh++;
		}
	}
	if (!fresh)
		say_raw("/dev/shm: nothing left behind (the registry was destroyed, the rest is anonymous)");
}

int main(int argc, char **argv)
{
	int chosen[NSECTIONS * 4], nchosen = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--list") || !strcmp(argv[i], "-l")) {
			list();
			return 0;
		}
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			list();
			return 0;
		}
		int k = find(argv[i]);
		if (k < 0 || nchosen == (int)(sizeof chosen / sizeof chosen[0])) {
			fprintf(stderr, "tour: no section '%s'\n", argv[i]);
			usage(stderr);
			return 2;
		}
		chosen[nchosen++] = k;
	}
	if (!nchosen)
		for (size_t i = 0; i < NSECTIONS; i++)
			chosen[nchosen++] = (int)i;

	/* Everything below writes with say(); stdio stays unbuffered anyway,
	 * so that nothing sits in a buffer when a pool forks its workers. */
	setvbuf(stdout, NULL, _IONBF, 0);
	/* The default segment exists before any pool, so whatever a section
	 * puts in it is mapped in every worker at the same address. */
	if (!shmp_segment_default()) {
		fprintf(stderr, "tour: no default segment: %s\n", shmp_strerror(errno));
		return 1;
	}
	int nshm = shm_names(shm_before, MAX_SHM);

	say_raw("shmp %s tour: %d example%s of the tutorials in shared/seeds/, redone in C.",
		shmp_version_string(), nchosen, nchosen == 1 ? "" : "s");
	say_raw("time.sleep(1) in a tutorial lasts %d ms here; pool supervision: %s.",
		TOUR_SECOND_MS, shmp_io_uring_available() ? "io_uring" : "poll");

	double t0 = tour_now();
	int failed[NSECTIONS * 4], nfailed = 0;
	for (int c = 0; c < nchosen; c++) {
		size_t i = (size_t)chosen[c];
		unsigned checks = tour_checks, failures = tour_failures;
		double ts = tour_now();
		header(i);
		int rc = sections[i].run();
		if (rc < 0 && tour_failures == failures) {
			tour_failures++;
			say("!! the section could not run");
		}
		unsigned nf = tour_failures - failures;
		say_raw("   -> %s (%u check%s, %.2f s)", nf ? "FAILED" : "ok", tour_checks - checks,
			tour_checks - checks == 1 ? "" : "s", tour_now() - ts);
		if (nf)
			failed[nfailed++] = (int)i;
	}

	say_raw("%s", "");
	report_shm(nshm);
	if (nfailed) {
		char names[1024] = "";
		size_t len = 0;
		for (int k = 0; k < nfailed && len < sizeof names; k++)
			len += (size_t)snprintf(names + len, sizeof names - len, " %s",
						sections[failed[k]].name);
		say_raw("tour: %d section%s, %u checks, %u FAILED, in:%s (%.1f s)", nchosen,
			nchosen == 1 ? "" : "s", tour_checks, tour_failures, names, tour_now() - t0);
		return 1;
	}
	say_raw("tour: %d section%s, %u checks, all passed (%.1f s)", nchosen, nchosen == 1 ? "" : "s",
		tour_checks, tour_now() - t0);
	return 0;
}
