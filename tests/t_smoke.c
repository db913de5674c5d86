/* The library loads, reports its version, names its errors, and a Value made
 * in the parent is written by a child. */
#include "t.h"

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
	return 0;
}
