/* The demo tour (demos/tour) as a test:
 *  - `tour` runs every section and exits 0; its output holds no failed
 *    section, one "-> ok" per section and the summary "tour: N sections,
 *    ... all passed" with that same N;
 *  - it leaves no new shmp.* segment in /dev/shm (segments of other tests
 *    running in parallel, "shmp.t<test>-<their pid>-...", are not the
 *    tour's) and no child of ours behind;
 *  - `tour --list` prints N lines and exits 0; `tour 1` runs one section;
 *    an unknown section exits 2.
 * The binary: $SHMP_TOUR, else ../demos/tour beside this test's build
 * directory; skipped (77) when the demos were not built (a $SHMP_TOUR that
 * is not there fails). */
#include "t.h"

#include <fcntl.h>
#include <libgen.h>
#include <limits.h>

static char tour[PATH_MAX];

static int find_tour(void)
{
	const char *env = getenv("SHMP_TOUR");
	if (env && *env) {
		snprintf(tour, sizeof tour, "%s", env);
	} else {
		char self[PATH_MAX];
		ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
		if (n <= 0)
			return 0;
		self[n] = 0;
		snprintf(tour, sizeof tour, "%s/../demos/tour", dirname(self));
	}
	return access(tour, X_OK) == 0;
}



static int count(const char *s, const char *what)
{
	int n = 0;
	for (const char *p = s; (p = strstr(p, what)); p += strlen(what))
		n++;
	return n;
}

/* A name another test of the suite made: "shmp.t<name>-<pid>-..." with a
 * pid that is not the tour's. */
static int other_tests(const char *name, pid_t tour_pid)
{
	if (strncmp(name, "shmp.t", 6))
		return 0;
	const char *dash = strchr(name + 6, '-');
	if (!dash)
		return 0;
	char *end;
	long pid = strtol(dash + 1, &end, 10);
	return end != dash + 1 && *end == '-' && pid != tour_pid;
}

int main(void)
{
	t_watchdog(170);
	if (!find_tour()) {
		/* Asked for by name: its absence is a failure, not a skip. */
		if (getenv("SHMP_TOUR") && *getenv("SHMP_TOUR")) {
			fprintf(stderr, "SHMP_TOUR=%s is not an executable\n", tour);
			return 1;
		}
		printf("skip: no tour binary at %s (demos not built?)\n", tour);
		return T_SKIP;
	}
	char *before[512], *after[512];
	int nbefore = t_shm_list(before, 512);

	char *out;
	pid_t tour_pid = 0;
	double t0 = t_now();
	int st = t_run_capture(tour, (const char *const[]){ NULL }, &out, 120, &tour_pid);
	double took = t_now() - t0;
	int sections = -1;
	const char *summary = strstr(out, "\ntour: ");
	if (summary)
		sscanf(summary, "\ntour: %d section", &sections);
	int ok_lines = count(out, "   -> ok (");
	if (t_exit_code(st) != 0 || !summary || !strstr(summary, "all passed") ||
	    count(out, "-> FAILED") != 0 || ok_lines != sections || sections < 1) {
		fprintf(stderr, "%s\n-- tour exited %d; %d sections, %d ok\n", out, t_exit_code(st),
			sections, ok_lines);
		exit(1);
	}
	printf("tour: %d sections ok in %.1f s\n", sections, took);
	free(out);

	/* Nothing of the tour's in /dev/shm. */
	int nafter = t_shm_list(after, 512), fresh = 0;
	for (int i = 0; i < nafter; i++) {
		int seen = 0;
		for (int j = 0; j < nbefore && !seen; j++)
			seen = !strcmp(after[i], before[j]);
		if (!seen && !strncmp(after[i], "shmp.", 5) && !other_tests(after[i], tour_pid)) {
			fprintf(stderr, "left in /dev/shm: %s\n", after[i]);
			fresh++;
		}
	}
	T_EQ(fresh, 0);
	for (int i = 0; i < nbefore; i++)
		free(before[i]);
	for (int i = 0; i < nafter; i++)
		free(after[i]);

	/* The command line. */
	st = t_run_capture(tour, (const char *const[]){ "--list", NULL }, &out, 120, NULL);
	T_EQ(t_exit_code(st), 0);
	T_EQ(count(out, "\n"), sections);
	T_CHECK(strstr(out, " apply_async ") && strstr(out, " rlock "));
	free(out);

	st = t_run_capture(tour, (const char *const[]){ "1", NULL }, &out, 120, NULL);
	T_EQ(t_exit_code(st), 0);
	T_EQ(count(out, "   -> ok ("), 1);
	T_CHECK(strstr(out, "tour: 1 section, "));
	free(out);

	st = t_run_capture(tour, (const char *const[]){ "no_such_section", NULL }, &out, 120, NULL);
	T_EQ(t_exit_code(st), 2);
	T_CHECK(strstr(out, "no section 'no_such_section'"));
	free(out);

	T_NO_CHILDREN();
	return 0;
}
