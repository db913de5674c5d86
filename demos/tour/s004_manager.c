/* Seed 004 (Chinese), 状态共享 (sharing state): "Manager". The tutorial links
 * Python's documentation, whose example is
 *
 *     with Manager() as manager:
 *         d = manager.dict(); l = manager.list(range(10))
 *         p = Process(target=f, args=(d, l)); p.start(); p.join()
 *         print(d); print(l)
 *
 * with f setting d[1] = '1', d['2'] = 2, d[0.25] = None and reversing l.
 * shmp has no server process: the registry is a named segment with a
 * directory of named objects, and the Process finds them by name — it is
 * handed nothing but the registry's name, as an unrelated program would be.
 * A Namespace's attributes are named Values. */
#include "tour.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct names {
	char registry[64];
};

/* def f(d, l): d[1] = '1'; d['2'] = 2; d[0.25] = None; l.reverse() */
static int f(void *arg)
{
	const struct names *n = arg;
	shmp_registry_t *r = shmp_registry_attach(n->registry, NULL);
	if (!r)
		return 1;
	int rc = 1;
	shmp_dict_t *d = shmp_registry_dict(r, "d", NULL, SHMP_REG_GET_ONLY);
	shmp_array_t *l = shmp_registry_array(r, "l", 'i', 0, NULL, SHMP_REG_GET_ONLY);
	if (d && l) {
		say("f runs in process %d, found d and l by name in registry '%s'", (int)getpid(), n->registry);
		int32_t v[10];
		/* Values are bytes: the C side chooses how to spell 2 and None. */
		rc = shmp_dict_set(d, "1", "'1'", 3) || shmp_dict_set(d, "'2'", "2", 1) ||
		     shmp_dict_set(d, "0.25", "None", 4);
		/* l.reverse() under the Array's lock, as one step. */
		shmp_lock_t *lk = shmp_array_lock(l);
		if (!rc && shmp_lock_acquire(lk, TOUR_WAIT) >= 0) {
			int32_t *p = shmp_array_ptr(l);
			memcpy(v, p, sizeof v);
			for (int i = 0; i < 10; i++)
				p[i] = v[9 - i];
			shmp_lock_release(lk);
		} else {
			rc = 1;
		}
		/* ns.x += 1, on the Namespace the parent made. */
		int64_t x = 0;
		if (!rc && (shmp_namespace_get_i64(r, "ns.x", &x) < 0 || shmp_namespace_set_i64(r, "ns.x", x + 1) < 0))
			rc = 1;
	}
	shmp_dict_destroy(d);
	shmp_array_destroy(l);
	shmp_registry_detach(r);
	return rc;
}

int sec_manager(void)
{
	struct names n;
	snprintf(n.registry, sizeof n.registry, "tour.manager.%d", (int)getpid());
	/* with Manager() as manager: — a registry nobody else has yet */
	shmp_registry_t *r = shmp_registry_create(n.registry, NULL);
	if (!CHECK(r != NULL))
		return -1;
	int32_t init[10];
	for (int i = 0; i < 10; i++)
		init[i] = i;
	shmp_dict_t *d = shmp_registry_dict(r, "d", NULL, 0);               /* manager.dict() */
	shmp_array_t *l = shmp_registry_array(r, "l", 'i', 10, init, 0);   /* manager.list(range(10)) */
	int ok = CHECK(d && l) && CHECK_EQ(shmp_namespace_set_i64(r, "ns.x", 41), 0);
	if (ok) {
		say("main process %d made registry '%s' with %d objects", (int)getpid(), n.registry,
		    shmp_registry_count(r));
		shmp_process_t *p = shmp_process_create(f, &n, NULL);
		int code = -1;
		if (CHECK(p != NULL) && CHECK_EQ(shmp_process_start(p), 0)) {
			CHECK_EQ(shmp_process_join(p, TOUR_WAIT), 0);
			CHECK_EQ(shmp_process_exitcode(p, &code), 1);
			CHECK_EQ(code, 0);
		}
		shmp_process_destroy(p);

		/* print(d) */
		char line[256], key[64], val[64];
		size_t len = (size_t)snprintf(line, sizeof line, "{");
		uint64_t cur = 0;
		size_t vlen;
		int items = 0;
		while (shmp_dict_next(d, &cur, key, sizeof key, val, sizeof val - 1, &vlen) == 1) {
			val[vlen] = 0;
			len += (size_t)snprintf(line + len, sizeof line - len, "%s%s: %s", items++ ? ", " : "", key, val);
		}
		snprintf(line + len, sizeof line - len, "}");
		say("%s", line);
		CHECK_EQ(items, 3);
		CHECK_EQ(shmp_dict_get(d, "0.25", val, sizeof val, &vlen), 0);
		CHECK(vlen == 4 && memcmp(val, "None", 4) == 0);
		/* print(l) */
		int32_t v[10];
		CHECK_EQ(shmp_array_read(l, 0, 10, v), 0);
		len = (size_t)snprintf(line, sizeof line, "[");
		int reversed = 1;
		for (int i = 0; i < 10; i++) {
			len += (size_t)snprintf(line + len, sizeof line - len, "%s%d", i ? ", " : "", v[i]);
			reversed &= v[i] == 9 - i;
		}
		snprintf(line + len, sizeof line - len, "]");
		say("%s", line);
		CHECK(reversed);
		int64_t x = 0;
		CHECK_EQ(shmp_namespace_get_i64(r, "ns.x", &x), 0);
		say("ns.x = %lld (41, plus one from the child)", (long long)x);
		CHECK_EQ(x, 42);
		say("(while it runs, `shmp show %s` lists d, l and ns.x with their values)", n.registry);
	}
	shmp_dict_destroy(d);
	shmp_array_destroy(l);
	/* Leaving the with-block: the registry's segment goes. */
	shmp_registry_destroy(r);
	return 0;
}
