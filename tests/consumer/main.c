/* Built against an installed shmp: the headers, the library and its
 * dependencies all come from the install tree. */
#include <stdio.h>
#include <shmp.h>

int main(void)
{
	shmp_value_t *v = shmp_value_create('i', NULL, NULL);
	if (!v || shmp_value_add(v, 5, NULL) != 0)
		return 1;
	int64_t x = 0;
	shmp_value_load(v, &x);
	shmp_value_destroy(v);
	printf("shmp %s from the install tree: %lld\n", shmp_version_string(), (long long)x);
	return x == 5 && shmp_version() == SHMP_VERSION_NUMBER ? 0 : 1;
}
