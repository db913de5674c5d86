/* progress.c — see progress.h. Output goes out with one write(2) per update,
 * as the demos' other lines do, so it never sits in a stdio buffer while
 * worker processes write. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "progress.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double mono(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void put(const char *s, size_t n)
{
	while (n) {
		ssize_t w = write(STDOUT_FILENO, s, n);
		if (w <= 0)
			return; /* nowhere to say it: not worth failing a demo */
		s += w;
		n -= (size_t)w;
	}
}

static void draw(struct progress *pr, int final)
{
	char line[160], bar[31];
	unsigned width = sizeof bar - 1;
	uint64_t total = pr->total ? pr->total : 1;
	uint64_t done = pr->done > total ? total : pr->done;
	unsigned fill = (unsigned)(done * width / total);
	memset(bar, '#', fill);
	memset(bar + fill, '.', width - fill);
	bar[width] = 0;
	/* Trailing spaces wipe what a longer earlier line left behind. */
	int n = snprintf(line, sizeof line, "\r  %s [%s] %llu/%llu  %.1f s   %s", pr->label, bar,
			 (unsigned long long)done, (unsigned long long)pr->total,
			 mono() - pr->t0, final ? "\n" : "");
	if (n > 0)
		put(line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

void progress_begin(struct progress *pr, const char *label, uint64_t total)
{
	memset(pr, 0, sizeof *pr);
	pr->label = label;
	pr->total = total;
	pr->tty = isatty(STDOUT_FILENO);
	pr->t0 = mono();
	if (pr->tty) {
		draw(pr, 0);
		pr->drawn = pr->t0;
	}
}

void progress_update(struct progress *pr, uint64_t done)
{
	if (done == pr->done)
		return;
	pr->done = done;
	if (pr->tty) {
		double t = mono();
		if (t - pr->drawn >= 0.05) {
			draw(pr, 0);
			pr->drawn = t;
		}
		return;
	}
	int q = pr->total ? (int)(done * 4 / pr->total) : 4;
	if (q > 4)
		q = 4;
	/* The last quarter is progress_end's to print. */
	if (q > pr->quarter && q < 4) {
		char line[160];
		int n = snprintf(line, sizeof line, "  %s: %llu/%llu (%d%%)\n", pr->label,
				 (unsigned long long)done, (unsigned long long)pr->total, q * 25);
		pr->quarter = q;
		if (n > 0)
			put(line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
	}
}

void progress_end(struct progress *pr)
{
	if (pr->tty) {
		draw(pr, 1);
		return;
	}
	char line[160];
	int n = snprintf(line, sizeof line, "  %s: %llu/%llu done in %.2f s\n", pr->label,
			 (unsigned long long)pr->done, (unsigned long long)pr->total, mono() - pr->t0);
	if (n > 0)
		put(line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}
