/* progress.h — a progress line for the demos' longer parts.
 *
 * On a terminal: one line redrawn in place with '\r' (at most every 50 ms),
 * finished with a newline. Otherwise (a pipe, a file, a test log): a plain
 * line at each quarter, so a log says how far it got without filling up. */
#ifndef DEMO_PROGRESS_H
#define DEMO_PROGRESS_H

#include <stdint.h>

struct progress {
	const char *label;
	uint64_t total, done;
	int tty;
	int quarter;      /* plain mode: the last quarter printed */
	double t0, drawn; /* start, and when the line was last drawn */
};

void progress_begin(struct progress *pr, const char *label, uint64_t total);
void progress_update(struct progress *pr, uint64_t done);
void progress_end(struct progress *pr);

#endif
