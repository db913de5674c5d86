/* t_reg.h: what the registry tests share — segments and peers cleaned up
 * at exit, checks for calls returning a handle, and (t_types.h)
 * create-or-get/release of any object type by its SHMP_TYPE_*. */
#ifndef T_REG_H
#define T_REG_H

#include "t_types.h"

static pid_t main_pid;
static char made[256][128]; /* segments made by the test, unlinked at exit */
static int nmade;
static pid_t peers[16];    /* re-executed peers, killed at exit */
static int npeers;

static inline void cleanup(void)
{
	if (getpid() != main_pid)
		return;
	for (int i = 0; i < npeers; i++) {
		if (waitpid(peers[i], NULL, WNOHANG) == 0) {
			kill(peers[i], SIGKILL);
			waitpid(peers[i], NULL, 0);
		}
	}
	t_reap_all();
	for (int i = 0; i < nmade; i++)
		shmp_segment_unlink(made[i]);
}

static inline const char *track(const char *name)
{
	T_CHECK(nmade < 256 && strlen(name) < 128);
	strcpy(made[nmade], name);
	return made[nmade++];
}

/* A call returning a pointer must fail with exactly errno `want`. */
#define T_FAILS(call, want)                                                        \
	do {                                                                       \
		errno = 0;                                                         \
		void *t_p_ = (void *)(call);                                       \
		int t_e_ = errno, t_w_ = (want);                                   \
		if (t_p_ || t_e_ != t_w_) {                                        \
			fprintf(stderr, "%s:%d: %s: %s errno %d (%s), want NULL errno %d (%s)\n", \
				__FILE__, __LINE__, #call, t_p_ ? "returned a handle," : "NULL,", \
				t_e_, shmp_strerror(-t_e_), t_w_, shmp_strerror(-t_w_)); \
			exit(1);                                                   \
		}                                                                  \
	} while (0)

/* A call returning a pointer must succeed. */
#define T_OK(call)                                                                 \
	({                                                                         \
		errno = 0;                                                         \
		__typeof__(call) t_h_ = (call);                                    \
		if (!t_h_) {                                                       \
			fprintf(stderr, "%s:%d: %s failed: errno %d (%s)\n", __FILE__, \
				__LINE__, #call, errno, shmp_strerror(-errno));    \
			exit(1);                                                   \
		}                                                                  \
		t_h_;                                                              \
	})

static inline struct shmp_registry_opts ropts(size_t size, unsigned capacity)
{
	return SHMP_OPTS(shmp_registry_opts, .size = size, .capacity = capacity);
}

#endif
