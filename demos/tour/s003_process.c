/* Seed 003 (Korean): doubler over Pool(3).map, then one Process per
 * number. The tutorial prints '{0} doubled to {1} by process id: {2}'. */
#include "tour.h"

#include <unistd.h>

struct dres {
	long result;
	pid_t pid;
};

/* def doubler(number): result = number * 2; print(...) */
static int doubler(const void *arg, void *res, const struct shmp_task_ctx *c)
{
	long number = *(const long *)arg;
	(void)c;
	long result = number * 2;
	say("%ld doubled to %ld by process id: %d", number, result, (int)getpid());
	/* Python's doubler returns nothing; the tour keeps the result to check. */
	*(struct dres *)res = (struct dres){ result, getpid() };
	return 0;
}

int sec_doubler(void)
{
	enum { N = 10 };
	long in[N];
	struct dres out[N];
	for (int i = 0; i < N; i++) {
		in[i] = i;
		out[i] = (struct dres){ -1, 0 };
	}
	/* p = Pool(3); p.map(doubler, range(0,10)) */
	shmp_pool_t *p = tour_pool(3, NULL);
	if (!p)
		return -1;
	tour_pool_ready(p);
	CHECK_EQ(shmp_pool_map(p, doubler, in, sizeof in[0], N, out, sizeof out[0], NULL, NULL), 0);
	pid_t pids[N];
	int npids = 0, ok = 1;
	for (int i = 0; i < N; i++) {
		ok &= out[i].result == 2 * in[i] && out[i].pid != getpid();
		int k = 0;
		while (k < npids && pids[k] != out[i].pid)
			k++;
		if (k == npids)
			pids[npids++] = out[i].pid;
	}
	CHECK(ok);
	/* "PID 3개의 프로세스들이 처리하는 하고 있다": at most three did it. */
	say("%d process%s did the work", npids, npids == 1 ? "" : "es");
	CHECK(npids >= 1 && npids <= 3);
	tour_pool_close_join(p);
	return 0;
}

/* Process(target=doubler, args=(number,)) */
static int doubler_proc(void *arg)
{
	long number = *(const long *)arg;
	long result = number * 2;
	say("%ld doubled to %ld by process id: %d", number, result, (int)getpid());
	/* The exit status carries the result back, for the tour's check. */
	return (int)result;
}

int sec_process(void)
{
	static long numbers[3] = { 0, 1, 2 };
	shmp_process_t *procs[3] = { NULL, NULL, NULL };
	/* for index, number in enumerate(numbers): proc = Process(...); proc.start() */
	for (int i = 0; i < 3; i++) {
		procs[i] = shmp_process_create(doubler_proc, &numbers[i], NULL);
		if (CHECK(procs[i] != NULL))
			CHECK_EQ(shmp_process_start(procs[i]), 0);
	}
	/* for proc in procs: proc.join() */
	pid_t pids[3] = { 0, 0, 0 };
	for (int i = 0; i < 3; i++) {
		if (!procs[i])
			continue;
		int code = -1;
		CHECK_EQ(shmp_process_join(procs[i], TOUR_WAIT), 0);
		CHECK_EQ(shmp_process_exitcode(procs[i], &code), 1);
		CHECK_EQ(code, 2 * numbers[i]);
		pids[i] = shmp_process_pid(procs[i]);
		shmp_process_destroy(procs[i]);
	}
	/* Three processes, none of them this one. */
	CHECK(pids[0] != pids[1] && pids[1] != pids[2] && pids[0] != pids[2]);
	CHECK(pids[0] != getpid() && pids[1] != getpid() && pids[2] != getpid());
	return 0;
}
