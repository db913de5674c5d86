/* The library loads, reports its version, names every error code, probes
 * io_uring (and can be forced not to), and a Value made in the parent is
 * written by a child. */
#include "t.h"
#include <limits.h>

static int child(void *arg)
{
	return shmp_value_store(arg, 42) == 0 ? 0 : 1;
}

int main(void)
{
	t_watchdog(30);
	T_EQ(shmp_version(), SHMP_VERSION_NUMBER);
	T_CHECK(strcmp(shmp_version_string(), SHMP_VERSION_STRING) == 0);
	shmp_value_t *v = shmp_value_create('q', NULL, NULL);
	T_CHECK(v);
	t_wait_ok(t_fork(child, v), 10);
	int64_t x = 0;
	T_EQ(shmp_value_load(v, &x), 0);
	T_EQ(x, 42);
	shmp_value_destroy(v);

	/* Every error code has its own name, given with either sign; codes
	 * are positive and distinct from errno values; any int is accepted. */
	for (int e = SHMP_ECORRUPT; e <= SHMP_ELAST; e++) {
		T_CHECK(e > 0 && strerrordesc_np(e) == NULL);
		T_CHECK(strcmp(shmp_strerror(e), "unknown error") != 0);
		T_CHECK(strcmp(shmp_strerror(e), shmp_strerror(-e)) == 0);
		for (int f = e + 1; f <= SHMP_ELAST; f++)
			T_CHECK(strcmp(shmp_strerror(e), shmp_strerror(f)) != 0);
	}
	T_CHECK(strcmp(shmp_strerror(-ETIMEDOUT), shmp_strerror(ETIMEDOUT)) == 0);
	T_CHECK(strcmp(shmp_strerror(SHMP_ELAST + 1), "unknown error") == 0);
	T_CHECK(strcmp(shmp_strerror(SHMP_EBASE), "unknown error") == 0);
	T_CHECK(strcmp(shmp_strerror(INT_MIN), "unknown error") == 0);
	T_CHECK(strcmp(shmp_strerror(INT_MAX), "unknown error") == 0);
	T_CHECK(strcmp(shmp_strerror(0), "success") == 0);
	/* What a constructor leaves in errno is named by strerror as is. */
	errno = 0;
	T_CHECK(shmp_value_create('Z', NULL, NULL) == NULL);
	T_EQ(errno, EINVAL);

	/* SHMP_NO_IO_URING forces the fallback. The answer is cached per
	 * process and inherited by fork, so the child asks before we do. */
	pid_t c = fork();
	if (c == 0) {
		setenv("SHMP_NO_IO_URING", "1", 1);
		_exit(shmp_io_uring_available() == 0 ? 0 : 1);
	}
	t_wait_ok(c, 10);
	int have = shmp_io_uring_available();
	T_CHECK(have == 0 || have == 1);
	printf("io_uring available: %d\n", have);
	return 0;
}
