/* A registry left on purpose for later readers (SHMP_REGISTRY_PERSISTENT):
 * its creator killed and nobody mapping it, shmp_segment_inspect reports it
 * persistent and not stale (an ordinary one is stale in the same state), a
 * later process attaches and reads what was left, and the creator's
 * destroy or an unlink still removes it. */
#include "t.h"

static int make_and_die(void *arg)
{
	const char **a = arg;
	unsigned flags = a[1] ? SHMP_REGISTRY_PERSISTENT : 0;
	shmp_registry_t *r = shmp_registry_create(a[0], &SHMP_OPTS(shmp_registry_opts, .flags = flags,
								  .size = 1 << 20));
	if (!r || shmp_namespace_set_i64(r, "answer", 42) < 0)
		return 2;
	raise(SIGKILL); /* no detach, no destroy: as a crash would */
	return 3;
}

int main(void)
{
	t_watchdog(60);
	const char *keep = t_segname("keep"), *plain = t_segname("plain");
	const char *a1[2] = { keep, "p" }, *a2[2] = { plain, NULL };
	t_wait_killed(t_fork(make_and_die, a1), 20);
	t_wait_killed(t_fork(make_and_die, a2), 20);

	struct shmp_segment_info info;
	T_EQ(shmp_segment_inspect(keep, &info), 0);
	T_EQ(info.creator_alive, 0);
	T_EQ(info.users, 0);
	T_EQ(info.persistent, 1);
	T_EQ(info.stale, 0);
	T_EQ(shmp_segment_inspect(plain, &info), 0);
	T_EQ(info.persistent, 0);
	T_EQ(info.stale, 1);

	/* A later reader finds what was left. */
	shmp_registry_t *r = shmp_registry_attach(keep, NULL);
	T_CHECK(r);
	int64_t x;
	T_EQ(shmp_namespace_get_i64(r, "answer", &x), 0);
	T_EQ(x, 42);
	shmp_registry_detach(r);
	T_EQ(shmp_segment_inspect(keep, &info), 0);
	T_EQ(info.stale, 0);

	/* Creating with PERSISTENT through open works too; attach ignores it. */
	const char *third = t_segname("third");
	struct shmp_registry_opts po = SHMP_OPTS(shmp_registry_opts, .flags = SHMP_REGISTRY_PERSISTENT);
	shmp_registry_t *o1 = shmp_registry_open(third, &po), *o2 = shmp_registry_open(third, &po);
	T_CHECK(o1 && o2);
	T_EQ(shmp_segment_inspect(third, &info), 0);
	T_EQ(info.persistent, 1);
	shmp_registry_detach(o2);
	shmp_registry_destroy(o1); /* the creator's destroy removes it all the same */
	T_EQ(shmp_segment_inspect(third, &info), -ENOENT);

	/* Bad flags. */
	errno = 0;
	T_CHECK(!shmp_registry_create(third, &SHMP_OPTS(shmp_registry_opts, .flags = 1u << 7)) && errno == EINVAL);
	T_CHECK(!shmp_segment_create(NULL, 1 << 20, &SHMP_OPTS(shmp_segment_opts, .flags = SHMP_SEGMENT_PERSISTENT)) &&
		errno == EINVAL); /* an anonymous segment cannot outlive its users */

	T_EQ(shmp_segment_unlink(keep), 0);
	T_EQ(shmp_segment_unlink(plain), 0);
	return 0;
}
