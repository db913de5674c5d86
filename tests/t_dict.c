/* Dict (include/shmp/registry.h, the Dict section): every call, its error
 * codes, and its behaviour across real processes.
 *
 * One process:
 * - set/get/contains/len/delete/pop on values of 0, 1, value_inline,
 *   value_inline + 1 ... 1 MiB bytes (inline and block), a small value
 *   replaced by a large one and back; get/pop into a too-small buffer is
 *   -EMSGSIZE with *len = the value's length and nothing copied (pop then
 *   leaves the key in place);
 * - errors: a missing key -ENOENT; a NULL or empty key -EINVAL; a key over
 *   key_max -ENAMETOOLONG (default 63, and 8 and 1024); a value over
 *   max_value -EMSGSIZE; a new key beyond the capacity -ENOSPC from set,
 *   setdefault and add_i64, while replacing a key still works and a set works
 *   again after a delete; options out of range are refused;
 * - 10000 set + delete of fresh keys in an almost full Dict never hit ENOSPC
 *   (deleted slots are reused), and thousands of block values replaced or
 *   cleared keep the segment's used bytes bounded (old blocks are freed);
 * - clear empties it; setdefault inserts (1) or hands back the stored value
 *   (0); cas replaces only a byte-equal value (not a prefix of it), 0
 *   otherwise, -ENOENT if missing; add_i64 creates, adds, refuses a value
 *   that is not 8 bytes;
 * - next visits each of 2000 keys exactly once with its value, then 0 for
 *   good; after -EMSGSIZE a retry with bigger buffers gets the same key and
 *   the pass goes on as if nothing had failed.
 * Several processes (fork):
 * - keys set by a child are seen by the parent and the other way round;
 * - 4 processes add_i64 on shared keys: exact totals;
 * - 4 processes setdefault the same 300 keys: one insert per key, made by the
 *   process whose value stays, and every process got that value back;
 * - 4 processes increment counters by cas loops (an inline and a block
 *   value): exact totals, as many successful cas as increments;
 * - a process iterates while another sets and deletes other keys: the keys
 *   left alone are visited exactly once per pass;
 * - a Dict in a registry (shmp_registry_create + shmp_registry_dict) is
 *   opened by name in a fresh program (fork + exec of this test: no handle
 *   inherited) with shmp_registry_attach and SHMP_REG_GET_ONLY; it reads the
 *   parent's keys and the parent sees its writes. Registry errors: GET_ONLY
 *   on a missing name ENOENT, CREATE_ONLY on a taken one EEXIST, a Value's
 *   name SHMP_ETYPE; shmp_registry_lookup reports the keys and capacity;
 *   the segment is gone after shmp_registry_destroy. */
#include "t.h"
#include "shmp/registry.h"

#include <stdatomic.h>

static char *kname(char *b, const char *pfx, long i)
{
	sprintf(b, "%s%ld", pfx, i);
	return b;
}

static shmp_dict_t *mkdict(unsigned capacity, unsigned key_max, unsigned value_inline,
			   size_t max_value, shmp_segment_t *seg)
{
	struct shmp_dict_opts o = SHMP_OPTS(shmp_dict_opts, .segment = seg, .capacity = capacity,
					    .key_max = key_max, .value_inline = value_inline,
					    .max_value = max_value);
	shmp_dict_t *d = shmp_dict_create(&o);
	if (!d)
		fprintf(stderr, "shmp_dict_create: %s\n", shmp_strerror(errno));
	T_CHECK(d);
	return d;
}

/* key holds exactly n bytes t_fill(seed) writes. */
static void expect(shmp_dict_t *d, const char *key, size_t n, uint32_t seed)
{
	static unsigned char buf[(1 << 20) + 64];
	size_t len = 12345;
	T_EQ(shmp_dict_get(d, key, buf, sizeof buf, &len), 0);
	T_EQ(len, n);
	T_CHECK(t_filled(buf, n, seed));
}

static void put(shmp_dict_t *d, const char *key, size_t n, uint32_t seed)
{
	static unsigned char buf[(1 << 20) + 64];
	t_fill(buf, n, seed);
	T_EQ(shmp_dict_set(d, key, buf, n), 0);
}

static int64_t get_i64(shmp_dict_t *d, const char *key)
{
	int64_t x = 0;
	size_t len = 0;
	T_EQ(shmp_dict_get(d, key, &x, sizeof x, &len), 0);
	T_EQ(len, 8);
	return x;
}

/* ---- one process ---------------------------------------------------------- */

static void basics(void)
{
	shmp_dict_t *d = mkdict(0, 0, 0, 0, NULL);
	char buf[64];
	size_t len;

	T_EQ(shmp_dict_capacity(d), 4096);
	T_EQ(shmp_dict_len(d), 0);
	T_EQ(shmp_dict_contains(d, "a"), 0);

	T_EQ(shmp_dict_set(d, "a", "hello", 5), 0);
	T_EQ(shmp_dict_len(d), 1);
	T_EQ(shmp_dict_contains(d, "a"), 1);
	len = 0;
	T_EQ(shmp_dict_get(d, "a", buf, sizeof buf, &len), 0);
	T_EQ(len, 5);
	T_CHECK(memcmp(buf, "hello", 5) == 0);
	T_EQ(shmp_dict_get(d, "a", buf, 5, NULL), 0); /* exactly big enough, len NULL */

	/* Too small: -EMSGSIZE, the length, nothing copied. */
	memset(buf, 0x5a, sizeof buf);
	len = 0;
	T_EQ(shmp_dict_get(d, "a", buf, 4, &len), -EMSGSIZE);
	T_EQ(len, 5);
	for (size_t i = 0; i < sizeof buf; i++)
		T_EQ(buf[i], 0x5a);
	len = 0;
	T_EQ(shmp_dict_get(d, "a", NULL, 0, &len), -EMSGSIZE); /* asking the length */
	T_EQ(len, 5);
	T_EQ(shmp_dict_get(d, "a", buf, 4, NULL), -EMSGSIZE);

	/* Replace: same key, new value, still one key. */
	T_EQ(shmp_dict_set(d, "a", "hi", 2), 0);
	T_EQ(shmp_dict_len(d), 1);
	T_EQ(shmp_dict_get(d, "a", buf, sizeof buf, &len), 0);
	T_EQ(len, 2);
	T_CHECK(memcmp(buf, "hi", 2) == 0);

	/* An empty value is a value. */
	T_EQ(shmp_dict_set(d, "empty", "", 0), 0);
	len = 99;
	T_EQ(shmp_dict_get(d, "empty", buf, sizeof buf, &len), 0);
	T_EQ(len, 0);
	T_EQ(shmp_dict_contains(d, "empty"), 1);
	T_EQ(shmp_dict_len(d), 2);

	/* Missing keys. */
	len = 77;
	T_EQ(shmp_dict_get(d, "b", buf, sizeof buf, &len), -ENOENT);
	T_EQ(shmp_dict_delete(d, "b"), -ENOENT);
	T_EQ(shmp_dict_pop(d, "b", buf, sizeof buf, &len), -ENOENT);
	T_EQ(shmp_dict_cas(d, "b", "x", 1, "y", 1), -ENOENT);
	T_EQ(shmp_dict_contains(d, "b"), 0);
	T_EQ(shmp_dict_contains(d, "A"), 0); /* keys are case-sensitive */
	T_EQ(shmp_dict_contains(d, "a "), 0);

	/* Keys are NUL-terminated strings: "a" and "ab" differ. */
	T_EQ(shmp_dict_set(d, "ab", "2", 1), 0);
	T_EQ(shmp_dict_get(d, "a", buf, sizeof buf, &len), 0);
	T_EQ(len, 2);
	T_EQ(shmp_dict_get(d, "ab", buf, sizeof buf, &len), 0);
	T_EQ(len, 1);
	T_EQ(shmp_dict_len(d), 3);

	/* Delete. */
	T_EQ(shmp_dict_delete(d, "ab"), 0);
	T_EQ(shmp_dict_delete(d, "ab"), -ENOENT);
	T_EQ(shmp_dict_contains(d, "ab"), 0);
	T_EQ(shmp_dict_contains(d, "a"), 1);
	T_EQ(shmp_dict_len(d), 2);

	/* Pop: too small leaves the key; then value out and key gone. */
	T_EQ(shmp_dict_set(d, "p", "xyz", 3), 0);
	len = 0;
	T_EQ(shmp_dict_pop(d, "p", buf, 2, &len), -EMSGSIZE);
	T_EQ(len, 3);
	T_EQ(shmp_dict_contains(d, "p"), 1);
	len = 0;
	memset(buf, 0, sizeof buf);
	T_EQ(shmp_dict_pop(d, "p", buf, sizeof buf, &len), 0);
	T_EQ(len, 3);
	T_CHECK(memcmp(buf, "xyz", 3) == 0);
	T_EQ(shmp_dict_contains(d, "p"), 0);
	T_EQ(shmp_dict_pop(d, "p", buf, sizeof buf, &len), -ENOENT);
	T_EQ(shmp_dict_len(d), 2);

	/* Bad keys. */
	char longkey[200];
	memset(longkey, 'k', sizeof longkey);
	longkey[63] = 0;
	T_EQ(shmp_dict_set(d, longkey, "v", 1), 0); /* 63 bytes: the default key_max */
	T_EQ(shmp_dict_get(d, longkey, buf, sizeof buf, &len), 0);
	T_EQ(len, 1);
	longkey[63] = 'k';
	longkey[64] = 0;
	T_EQ(shmp_dict_set(d, longkey, "v", 1), -ENAMETOOLONG);
	int r = shmp_dict_get(d, longkey, buf, sizeof buf, &len);
	T_CHECK(r == -ENAMETOOLONG || r == -ENOENT);
	r = shmp_dict_contains(d, longkey);
	T_CHECK(r == -ENAMETOOLONG || r == 0);
	T_EQ(shmp_dict_setdefault(d, longkey, "v", 1, NULL, 0, NULL), -ENAMETOOLONG);
	T_EQ(shmp_dict_add_i64(d, longkey, 1, NULL), -ENAMETOOLONG);
	T_EQ(shmp_dict_set(d, "", "v", 1), -EINVAL);
	T_EQ(shmp_dict_set(d, NULL, "v", 1), -EINVAL);
	T_EQ(shmp_dict_setdefault(d, "", "v", 1, NULL, 0, NULL), -EINVAL);
	T_EQ(shmp_dict_add_i64(d, "", 1, NULL), -EINVAL);
	r = shmp_dict_get(d, "", buf, sizeof buf, &len);
	T_CHECK(r == -EINVAL || r == -ENOENT);
	r = shmp_dict_get(d, NULL, buf, sizeof buf, &len);
	T_CHECK(r == -EINVAL || r == -ENOENT);
	T_EQ(shmp_dict_len(d), 3);

	/* Value over max_value (default 1 MiB): refused; exactly 1 MiB fits. */
	static unsigned char big[(1 << 20) + 1];
	T_EQ(shmp_dict_set(d, "big", big, sizeof big), -EMSGSIZE);
	T_EQ(shmp_dict_contains(d, "big"), 0);
	T_EQ(shmp_dict_setdefault(d, "big", big, sizeof big, NULL, 0, NULL), -EMSGSIZE);
	T_EQ(shmp_dict_contains(d, "big"), 0);
	put(d, "big", 1 << 20, 7);
	expect(d, "big", 1 << 20, 7);
	T_EQ(shmp_dict_delete(d, "big"), 0);
	T_EQ(shmp_dict_len(d), 3);

	shmp_dict_destroy(d);

	/* A smaller max_value, and the key_max bounds. */
	d = mkdict(0, 8, 0, 1000, NULL);
	T_EQ(shmp_dict_set(d, "k", big, 1000), 0);
	T_EQ(shmp_dict_set(d, "k", big, 1001), -EMSGSIZE);
	T_EQ(shmp_dict_get(d, "k", NULL, 0, &len), -EMSGSIZE);
	T_EQ(len, 1000); /* the refused set changed nothing */
	T_EQ(shmp_dict_set(d, "12345678", "v", 1), 0);
	T_EQ(shmp_dict_set(d, "123456789", "v", 1), -ENAMETOOLONG);
	T_EQ(shmp_dict_len(d), 2);
	shmp_dict_destroy(d);

	d = mkdict(0, 1024, 0, 0, NULL);
	char *k1024 = malloc(1026);
	T_CHECK(k1024);
	memset(k1024, 'q', 1025);
	k1024[1024] = 0;
	T_EQ(shmp_dict_set(d, k1024, "v", 1), 0);
	T_EQ(shmp_dict_contains(d, k1024), 1);
	k1024[1023] = 0; /* a prefix is another key */
	T_EQ(shmp_dict_contains(d, k1024), 0);
	k1024[1023] = 'q';
	k1024[1024] = 'q';
	k1024[1025] = 0;
	T_EQ(shmp_dict_set(d, k1024, "v", 1), -ENAMETOOLONG);
	free(k1024);
	shmp_dict_destroy(d);

	/* Options out of range. */
	struct shmp_dict_opts bad[] = {
		SHMP_OPTS(shmp_dict_opts, .capacity = (1u << 24) + 1),
		SHMP_OPTS(shmp_dict_opts, .key_max = 1025),
		SHMP_OPTS(shmp_dict_opts, .value_inline = 4097),
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		errno = 0;
		T_CHECK(shmp_dict_create(&bad[i]) == NULL);
		T_EQ(errno, EINVAL);
	}
}

/* Inline and block values, replaced by each other; value_inline 48 and 16. */
static void sizes(void)
{
	unsigned inl[] = { 0, 16 };
	for (int t = 0; t < 2; t++) {
		shmp_dict_t *d = mkdict(0, 0, inl[t], 0, NULL);
		size_t vi = inl[t] ? inl[t] : 48;
		size_t ns[] = { 0, 1, 7, 8, vi - 1, vi, vi + 1, 100, 4095, 4096, 4097, 65536, 300000 };
		size_t nn = sizeof ns / sizeof ns[0];
		char k[32];
		for (size_t i = 0; i < nn; i++)
			put(d, kname(k, "s", (long)i), ns[i], (uint32_t)i);
		T_EQ(shmp_dict_len(d), nn);
		for (size_t i = 0; i < nn; i++)
			expect(d, kname(k, "s", (long)i), ns[i], (uint32_t)i);
		/* One key through every size, up and down, twice. */
		for (int round = 0; round < 2; round++) {
			for (size_t i = 0; i < nn; i++) {
				put(d, "walk", ns[i], (uint32_t)(100 + i));
				expect(d, "walk", ns[i], (uint32_t)(100 + i));
			}
			for (size_t i = nn; i-- > 0;) {
				put(d, "walk", ns[i], (uint32_t)(200 + i));
				expect(d, "walk", ns[i], (uint32_t)(200 + i));
			}
		}
		/* small -> large -> small */
		put(d, "x", 8, 1);
		put(d, "x", 10000, 2);
		expect(d, "x", 10000, 2);
		put(d, "x", 8, 3);
		expect(d, "x", 8, 3);
		T_EQ(shmp_dict_len(d), nn + 2);
		/* The others never moved. */
		for (size_t i = 0; i < nn; i++)
			expect(d, kname(k, "s", (long)i), ns[i], (uint32_t)i);
		shmp_dict_destroy(d);
	}
}

/* Capacity: -ENOSPC for a new key only; deleted slots are reused. */
static void capacity(void)
{
	unsigned caps[] = { 16, 100 };
	char k[32], buf[16];
	size_t len;
	for (int c = 0; c < 2; c++) {
		unsigned cap = caps[c];
		shmp_dict_t *d = mkdict(cap, 0, 0, 0, NULL);
		T_EQ(shmp_dict_capacity(d), cap);
		for (unsigned i = 0; i < cap; i++)
			T_EQ(shmp_dict_set(d, kname(k, "c", i), "v", 1), 0);
		T_EQ(shmp_dict_len(d), cap);
		T_EQ(shmp_dict_set(d, "new", "v", 1), -ENOSPC);
		T_EQ(shmp_dict_setdefault(d, "new", "v", 1, buf, sizeof buf, &len), -ENOSPC);
		T_EQ(shmp_dict_add_i64(d, "new", 1, NULL), -ENOSPC);
		T_EQ(shmp_dict_contains(d, "new"), 0);
		T_EQ(shmp_dict_len(d), cap);
		/* Full, but replacing works, with a block value too. */
		T_EQ(shmp_dict_set(d, "c0", "replaced", 8), 0);
		put(d, "c1", 5000, 9);
		expect(d, "c1", 5000, 9);
		T_EQ(shmp_dict_setdefault(d, "c2", "zz", 2, buf, sizeof buf, &len), 0);
		T_EQ(len, 1);
		/* After a delete a set works again, once. */
		T_EQ(shmp_dict_delete(d, kname(k, "c", cap - 1)), 0);
		T_EQ(shmp_dict_set(d, "new", "v", 1), 0);
		T_EQ(shmp_dict_set(d, "new2", "v", 1), -ENOSPC);
		T_EQ(shmp_dict_pop(d, "new", buf, sizeof buf, &len), 0);
		T_EQ(shmp_dict_add_i64(d, "new2", 5, NULL), 0);
		T_EQ(shmp_dict_len(d), cap);
		shmp_dict_destroy(d);
	}

	/* Almost full: 10000 fresh keys set and deleted, never -ENOSPC. */
	shmp_dict_t *d = mkdict(16, 0, 0, 0, NULL);
	for (int i = 0; i < 15; i++)
		T_EQ(shmp_dict_set(d, kname(k, "keep", i), "v", 1), 0);
	for (long i = 0; i < 10000; i++) {
		kname(k, "fresh", i);
		T_EQ(shmp_dict_set(d, k, &i, sizeof i), 0);
		if (i % 3 == 0) {
			T_EQ(shmp_dict_delete(d, k), 0);
		} else {
			long x = 0;
			T_EQ(shmp_dict_pop(d, k, &x, sizeof x, &len), 0);
			T_EQ(x, i);
		}
	}
	T_EQ(shmp_dict_len(d), 15);
	for (int i = 0; i < 15; i++)
		T_EQ(shmp_dict_contains(d, kname(k, "keep", i)), 1);
	T_EQ(shmp_dict_contains(d, "fresh9999"), 0);
	shmp_dict_destroy(d);
}

/* Block values replaced, popped, deleted or cleared are freed: the
 * segment's used bytes stay bounded (a leak of one 64 KiB block per
 * replacement would need 300 MiB here, in a 32 MiB segment). */
static void memory(void)
{
	shmp_segment_t *seg = shmp_segment_create(NULL, 32 << 20, NULL);
	T_CHECK(seg);
	shmp_dict_t *d = mkdict(256, 0, 0, 0, seg);
	put(d, "big", 65536, 0);
	uint64_t base = t_seg_stats(seg).used_bytes;
	char k[32];
	size_t len;
	static unsigned char buf[70000];
	for (int i = 1; i <= 5000; i++) {
		size_t n = 60000 + (size_t)i % 5000;
		put(d, "big", n, (uint32_t)i);
		if (i % 500 == 0)
			expect(d, "big", n, (uint32_t)i);
		/* A second key made, then dropped by delete or pop. */
		put(d, "tmp", 3000, (uint32_t)i);
		if (i & 1)
			T_EQ(shmp_dict_delete(d, "tmp"), 0);
		else
			T_EQ(shmp_dict_pop(d, "tmp", buf, sizeof buf, &len), 0);
	}
	T_CHECK(t_seg_stats(seg).used_bytes < base + (2u << 20));
	for (int round = 0; round < 30; round++) {
		for (int i = 0; i < 100; i++)
			put(d, kname(k, "m", i), 10000, (uint32_t)(round * 100 + i));
		expect(d, "m42", 10000, (uint32_t)(round * 100 + 42));
		T_EQ(shmp_dict_len(d), round ? 100 : 101); /* "big" until the first clear */
		T_EQ(shmp_dict_clear(d), 0);
		T_EQ(shmp_dict_len(d), 0);
	}
	T_CHECK(t_seg_stats(seg).used_bytes < base + (2u << 20));
	shmp_dict_destroy(d);
	shmp_segment_destroy(seg);
}

static void clear(void)
{
	shmp_dict_t *d = mkdict(0, 0, 0, 0, NULL);
	char k[32], key[64];
	uint64_t cur = 0;
	T_EQ(shmp_dict_clear(d), 0); /* empty: fine */
	for (int i = 0; i < 50; i++)
		put(d, kname(k, "c", i), (size_t)i * 40, (uint32_t)i);
	T_EQ(shmp_dict_len(d), 50);
	T_EQ(shmp_dict_clear(d), 0);
	T_EQ(shmp_dict_len(d), 0);
	for (int i = 0; i < 50; i++)
		T_EQ(shmp_dict_contains(d, kname(k, "c", i)), 0);
	T_EQ(shmp_dict_next(d, &cur, key, sizeof key, NULL, 0, NULL), 0);
	/* Usable again, to the full capacity. */
	for (int i = 0; i < 4096; i++)
		T_EQ(shmp_dict_set(d, kname(k, "n", i), &i, sizeof i), 0);
	T_EQ(shmp_dict_set(d, "one_more", "v", 1), -ENOSPC);
	T_EQ(shmp_dict_clear(d), 0);
	T_EQ(shmp_dict_len(d), 0);
	T_EQ(shmp_dict_set(d, "one_more", "v", 1), 0);
	T_EQ(shmp_dict_len(d), 1);
	shmp_dict_destroy(d);
}

static void setdefault(void)
{
	shmp_dict_t *d = mkdict(0, 0, 0, 0, NULL);
	char buf[64];
	size_t len = 0;

	memset(buf, 0, sizeof buf);
	T_EQ(shmp_dict_setdefault(d, "k", "first", 5, buf, sizeof buf, &len), 1);
	T_EQ(len, 5);
	T_CHECK(memcmp(buf, "first", 5) == 0);
	memset(buf, 0, sizeof buf);
	len = 0;
	T_EQ(shmp_dict_setdefault(d, "k", "second!", 7, buf, sizeof buf, &len), 0);
	T_EQ(len, 5);
	T_CHECK(memcmp(buf, "first", 5) == 0); /* the stored one, not ours */
	T_EQ(shmp_dict_setdefault(d, "k", "third", 5, NULL, 0, NULL), 0);
	/* Present, buffer too small: as get. */
	len = 0;
	T_EQ(shmp_dict_setdefault(d, "k", "x", 1, buf, 3, &len), -EMSGSIZE);
	T_EQ(len, 5);
	T_EQ(shmp_dict_get(d, "k", buf, sizeof buf, &len), 0);
	T_EQ(len, 5);
	T_CHECK(memcmp(buf, "first", 5) == 0);
	/* NULL buf on insert. */
	T_EQ(shmp_dict_setdefault(d, "j", "jj", 2, NULL, 0, NULL), 1);
	T_EQ(shmp_dict_get(d, "j", buf, sizeof buf, &len), 0);
	T_EQ(len, 2);
	/* A block value. */
	static unsigned char v[5000], out[6000];
	t_fill(v, sizeof v, 5);
	T_EQ(shmp_dict_setdefault(d, "blk", v, sizeof v, out, sizeof out, &len), 1);
	T_EQ(len, sizeof v);
	T_CHECK(t_filled(out, len, 5));
	t_fill(v, sizeof v, 6);
	memset(out, 0, sizeof out);
	T_EQ(shmp_dict_setdefault(d, "blk", v, 100, out, sizeof out, &len), 0);
	T_EQ(len, sizeof v);
	T_CHECK(t_filled(out, len, 5));
	T_EQ(shmp_dict_len(d), 3);
	shmp_dict_destroy(d);
}

static void cas(void)
{
	shmp_dict_t *d = mkdict(0, 0, 0, 0, NULL);
	char buf[64];
	size_t len;
	T_EQ(shmp_dict_cas(d, "k", "", 0, "v", 1), -ENOENT);
	T_EQ(shmp_dict_contains(d, "k"), 0);
	T_EQ(shmp_dict_set(d, "k", "abc", 3), 0);
	T_EQ(shmp_dict_cas(d, "k", "abd", 3, "new", 3), 0);  /* differs */
	T_EQ(shmp_dict_cas(d, "k", "ab", 2, "new", 3), 0);   /* a prefix */
	T_EQ(shmp_dict_cas(d, "k", "abcd", 4, "new", 3), 0); /* longer */
	T_EQ(shmp_dict_cas(d, "k", "", 0, "new", 3), 0);
	T_EQ(shmp_dict_get(d, "k", buf, sizeof buf, &len), 0);
	T_EQ(len, 3);
	T_CHECK(memcmp(buf, "abc", 3) == 0);
	T_EQ(shmp_dict_cas(d, "k", "abc", 3, "xyzw", 4), 1);
	T_EQ(shmp_dict_get(d, "k", buf, sizeof buf, &len), 0);
	T_EQ(len, 4);
	T_CHECK(memcmp(buf, "xyzw", 4) == 0);
	T_EQ(shmp_dict_cas(d, "k", "abc", 3, "again", 5), 0); /* stale expected */
	/* To and from an empty value. */
	T_EQ(shmp_dict_cas(d, "k", "xyzw", 4, "", 0), 1);
	T_EQ(shmp_dict_get(d, "k", buf, sizeof buf, &len), 0);
	T_EQ(len, 0);
	T_EQ(shmp_dict_cas(d, "k", "", 0, "e", 1), 1);
	/* Inline -> block -> block -> inline, with a near miss on the block. */
	static unsigned char a[3000], b[3000];
	t_fill(a, sizeof a, 1);
	T_EQ(shmp_dict_cas(d, "k", "e", 1, a, sizeof a), 1);
	expect(d, "k", sizeof a, 1);
	memcpy(b, a, sizeof b);
	b[2999] ^= 1;
	T_EQ(shmp_dict_cas(d, "k", b, sizeof b, "no", 2), 0);
	t_fill(b, sizeof b, 2);
	T_EQ(shmp_dict_cas(d, "k", a, sizeof a, b, 2000), 1);
	expect(d, "k", 2000, 2);
	T_EQ(shmp_dict_cas(d, "k", b, 2000, "small", 5), 1);
	T_EQ(shmp_dict_get(d, "k", buf, sizeof buf, &len), 0);
	T_EQ(len, 5);
	T_CHECK(memcmp(buf, "small", 5) == 0);
	/* A desired value over max_value. */
	static unsigned char huge[(1 << 20) + 1];
	T_EQ(shmp_dict_cas(d, "k", "small", 5, huge, sizeof huge), -EMSGSIZE);
	T_EQ(shmp_dict_len(d), 1);
	shmp_dict_destroy(d);
}

static void add_i64(void)
{
	shmp_dict_t *d = mkdict(0, 0, 0, 0, NULL);
	int64_t out = 0;
	T_EQ(shmp_dict_add_i64(d, "n", 5, &out), 0);
	T_EQ(out, 5);
	T_EQ(get_i64(d, "n"), 5);
	T_EQ(shmp_dict_add_i64(d, "n", -12, &out), 0);
	T_EQ(out, -7);
	T_EQ(shmp_dict_add_i64(d, "n", 0, NULL), 0);
	T_EQ(get_i64(d, "n"), -7);
	T_EQ(shmp_dict_add_i64(d, "zero", 0, &out), 0); /* missing counts as 0, created */
	T_EQ(out, 0);
	T_EQ(shmp_dict_contains(d, "zero"), 1);
	int64_t x = INT64_C(1) << 40;
	T_EQ(shmp_dict_set(d, "m", &x, sizeof x), 0);
	T_EQ(shmp_dict_add_i64(d, "m", 1, &out), 0);
	T_EQ(out, (INT64_C(1) << 40) + 1);
	T_EQ(shmp_dict_set(d, "s", "1234567", 7), 0);
	T_EQ(shmp_dict_add_i64(d, "s", 1, &out), -EINVAL);
	T_EQ(shmp_dict_set(d, "s", "123456789", 9), 0);
	T_EQ(shmp_dict_add_i64(d, "s", 1, &out), -EINVAL);
	char buf[16];
	size_t len;
	T_EQ(shmp_dict_get(d, "s", buf, sizeof buf, &len), 0);
	T_EQ(len, 9);
	T_CHECK(memcmp(buf, "123456789", 9) == 0);
	T_EQ(shmp_dict_len(d), 4);
	shmp_dict_destroy(d);
}

/* 2000 keys, some inline, some in blocks: each visited once. */
static void iterate(void)
{
	shmp_dict_t *d = mkdict(0, 0, 0, 0, NULL);
	char key[64], k[32];
	static unsigned char val[4096];
	static unsigned char seen[2000];
	uint64_t cur = 0;
	size_t vlen;
	T_EQ(shmp_dict_next(d, &cur, key, sizeof key, val, sizeof val, &vlen), 0);
	for (int i = 0; i < 2000; i++)
		put(d, kname(k, "it", i), (size_t)(i % 7) * 20, (uint32_t)i); /* 0..120 bytes */
	cur = 0;
	int n = 0, r;
	while ((r = shmp_dict_next(d, &cur, key, sizeof key, val, sizeof val, &vlen)) == 1) {
		T_CHECK(strncmp(key, "it", 2) == 0);
		int i = atoi(key + 2);
		T_CHECK(i >= 0 && i < 2000);
		T_EQ(seen[i], 0);
		seen[i] = 1;
		T_EQ(vlen, (size_t)(i % 7) * 20);
		T_CHECK(t_filled(val, vlen, (uint32_t)i));
		T_CHECK(++n <= 2000);
	}
	T_EQ(r, 0);
	T_EQ(n, 2000);
	T_EQ(shmp_dict_next(d, &cur, key, sizeof key, val, sizeof val, &vlen), 0); /* stays at the end */

	/* Keys only. */
	cur = 0;
	n = 0;
	while ((r = shmp_dict_next(d, &cur, key, sizeof key, NULL, 0, NULL)) == 1)
		n++;
	T_EQ(r, 0);
	T_EQ(n, 2000);

	/* -EMSGSIZE: a retry with bigger buffers gets the key that did not
	 * fit, and goes on from there as if nothing had failed. (The cursor
	 * itself may move past empty buckets meanwhile: it is opaque.) */
	char want[64];
	uint64_t c2;
	cur = 0;
	T_EQ(shmp_dict_next(d, &cur, key, sizeof key, NULL, 0, NULL), 1);
	c2 = cur;
	T_EQ(shmp_dict_next(d, &c2, want, sizeof want, NULL, 0, NULL), 1); /* the one after */
	T_EQ(shmp_dict_next(d, &cur, key, 2, NULL, 0, NULL), -EMSGSIZE);
	T_EQ(shmp_dict_next(d, &cur, key, strlen(want), NULL, 0, NULL), -EMSGSIZE); /* no room for NUL */
	T_EQ(shmp_dict_next(d, &cur, key, strlen(want) + 1, NULL, 0, NULL), 1);
	T_CHECK(strcmp(key, want) == 0);
	T_EQ(cur, c2);
	/* Value too small: the same, then a big enough buffer. */
	put(d, "it5", 3000, 55);
	cur = 0;
	n = 0;
	int hit = 0;
	for (;;) {
		r = shmp_dict_next(d, &cur, key, sizeof key, val, 200, &vlen);
		if (r == -EMSGSIZE) {
			hit++;
			r = shmp_dict_next(d, &cur, key, sizeof key, val, sizeof val, &vlen);
			T_EQ(r, 1);
			T_CHECK(strcmp(key, "it5") == 0);
			T_EQ(vlen, 3000);
			T_CHECK(t_filled(val, vlen, 55));
		}
		if (r == 0)
			break;
		T_EQ(r, 1);
		n++;
	}
	T_EQ(hit, 1);
	T_EQ(n, 2000);
	shmp_dict_destroy(d);
}

/* ---- several processes ---------------------------------------------------- */

static shmp_dict_t *gd;

static int child_sets(void *arg)
{
	(void)arg;
	size_t len = 0;
	char buf[16];
	/* The parent's key is here. */
	if (shmp_dict_get(gd, "from_parent", buf, sizeof buf, &len) != 0 || len != 3 ||
	    memcmp(buf, "par", 3) != 0)
		return 2;
	char k[32];
	for (int i = 0; i < 100; i++)
		put(gd, kname(k, "child", i), (size_t)i * 10, (uint32_t)i);
	T_EQ(shmp_dict_delete(gd, "from_parent"), 0);
	return 0;
}

static void visibility(void)
{
	gd = mkdict(0, 0, 0, 0, NULL);
	T_EQ(shmp_dict_set(gd, "from_parent", "par", 3), 0);
	t_wait_ok(t_spawn(child_sets, NULL), 20);
	char k[32];
	for (int i = 0; i < 100; i++)
		expect(gd, kname(k, "child", i), (size_t)i * 10, (uint32_t)i);
	T_EQ(shmp_dict_contains(gd, "from_parent"), 0);
	T_EQ(shmp_dict_len(gd), 100);
	shmp_dict_destroy(gd);
}

#define NPROC 4
#define NADD 20000

static int adder(void *arg)
{
	int me = (int)(intptr_t)arg;
	char own[16];
	kname(own, "own", me);
	for (int i = 0; i < NADD; i++) {
		char k[8];
		int64_t out = 0;
		T_EQ(shmp_dict_add_i64(gd, kname(k, "s", i & 3), 1, &out), 0);
		T_CHECK(out >= 1);
		T_EQ(shmp_dict_add_i64(gd, "weighted", me + 1, NULL), 0);
		T_EQ(shmp_dict_add_i64(gd, own, 1, &out), 0);
		T_EQ(out, i + 1); /* nobody else touches it */
	}
	return 0;
}

static void adders(void)
{
	gd = mkdict(0, 0, 0, 0, NULL);
	pid_t p[NPROC];
	for (int i = 0; i < NPROC; i++)
		p[i] = t_spawn(adder, (void *)(intptr_t)i);
	for (int i = 0; i < NPROC; i++)
		t_wait_ok(p[i], 60);
	char k[16];
	for (int i = 0; i < 4; i++)
		T_EQ(get_i64(gd, kname(k, "s", i)), NPROC * NADD / 4);
	T_EQ(get_i64(gd, "weighted"), (int64_t)NADD * (1 + 2 + 3 + 4));
	for (int i = 0; i < NPROC; i++)
		T_EQ(get_i64(gd, kname(k, "own", i)), NADD);
	T_EQ(shmp_dict_len(gd), 4 + 1 + NPROC);
	shmp_dict_destroy(gd);
}

#define NSD 300
static shmp_array_t *seen;    /* [proc * NSD + key]: value the proc got back */
static shmp_array_t *inserts; /* [proc]: setdefault returned 1 */

static int defaulter(void *arg)
{
	int me = (int)(intptr_t)arg;
	char k[16];
	int64_t mine = me + 1, got;
	size_t len;
	for (int i = 0; i < NSD; i++) {
		got = 0;
		len = 0;
		int r = shmp_dict_setdefault(gd, kname(k, "sd", i), &mine, sizeof mine, &got, sizeof got, &len);
		T_CHECK(r == 0 || r == 1);
		T_EQ(len, 8);
		if (r == 1) {
			T_EQ(got, mine);
			T_EQ(shmp_array_add(inserts, (size_t)me, 1, NULL), 0);
		}
		T_EQ(shmp_array_store(seen, (size_t)(me * NSD + i), got), 0);
	}
	return 0;
}

static void defaulters(void)
{
	gd = mkdict(0, 0, 0, 0, NULL);
	seen = t_counters(NPROC * NSD);
	inserts = t_counters(NPROC);
	pid_t p[NPROC];
	for (int i = 0; i < NPROC; i++)
		p[i] = t_spawn(defaulter, (void *)(intptr_t)i);
	for (int i = 0; i < NPROC; i++)
		t_wait_ok(p[i], 60);
	int64_t won[NPROC] = { 0 }, total = 0;
	char k[16];
	for (int i = 0; i < NSD; i++) {
		int64_t v = get_i64(gd, kname(k, "sd", i));
		T_CHECK(v >= 1 && v <= NPROC);
		won[v - 1]++;
		for (int j = 0; j < NPROC; j++)
			T_EQ(t_load(seen, (size_t)(j * NSD + i)), v);
	}
	for (int j = 0; j < NPROC; j++) {
		T_EQ(t_load(inserts, (size_t)j), won[j]);
		total += won[j];
	}
	T_EQ(total, NSD);
	T_EQ(shmp_dict_len(gd), NSD);
	shmp_array_destroy(seen);
	shmp_array_destroy(inserts);
	shmp_dict_destroy(gd);
}

#define NCAS 3000
#define CASBLK 200

/* A block value: the counter, then bytes derived from it. */
static void casblk(unsigned char *b, int64_t n)
{
	memcpy(b, &n, 8);
	t_fill(b + 8, CASBLK - 8, (uint32_t)n);
}

static int caser(void *arg)
{
	int me = (int)(intptr_t)arg;
	int64_t ok = 0;
	for (int i = 0; i < NCAS; i++) {
		for (;;) { /* inline */
			int64_t cur = get_i64(gd, "ci"), nx = cur + 1;
			int r = shmp_dict_cas(gd, "ci", &cur, 8, &nx, 8);
			if (r == 1)
				break;
			T_EQ(r, 0);
		}
		ok++;
		for (;;) { /* block */
			unsigned char cur[CASBLK], nx[CASBLK];
			size_t len = 0;
			T_EQ(shmp_dict_get(gd, "cb", cur, sizeof cur, &len), 0);
			T_EQ(len, CASBLK);
			int64_t n;
			memcpy(&n, cur, 8);
			T_CHECK(t_filled(cur + 8, CASBLK - 8, (uint32_t)n));
			casblk(nx, n + 1);
			int r = shmp_dict_cas(gd, "cb", cur, CASBLK, nx, CASBLK);
			if (r == 1)
				break;
			T_EQ(r, 0);
		}
		ok++;
	}
	T_EQ(shmp_array_add(inserts, (size_t)me, ok, NULL), 0);
	return 0;
}

static void casers(void)
{
	gd = mkdict(0, 0, 0, 0, NULL);
	inserts = t_counters(NPROC);
	int64_t zero = 0;
	unsigned char b[CASBLK];
	T_EQ(shmp_dict_set(gd, "ci", &zero, 8), 0);
	casblk(b, 0);
	T_EQ(shmp_dict_set(gd, "cb", b, CASBLK), 0);
	pid_t p[NPROC];
	for (int i = 0; i < NPROC; i++)
		p[i] = t_spawn(caser, (void *)(intptr_t)i);
	for (int i = 0; i < NPROC; i++)
		t_wait_ok(p[i], 60);
	int64_t ci = 0, cb = 0;
	size_t len;
	T_EQ(shmp_dict_get(gd, "ci", &ci, 8, &len), 0);
	T_EQ(ci, NPROC * NCAS);
	unsigned char cur[CASBLK];
	T_EQ(shmp_dict_get(gd, "cb", cur, sizeof cur, &len), 0);
	T_EQ(len, CASBLK);
	memcpy(&cb, cur, 8);
	T_EQ(cb, NPROC * NCAS);
	T_CHECK(t_filled(cur + 8, CASBLK - 8, (uint32_t)cb));
	for (int j = 0; j < NPROC; j++)
		T_EQ(t_load(inserts, (size_t)j), 2 * NCAS);
	shmp_array_destroy(inserts);
	shmp_dict_destroy(gd);
}

static shmp_value_t *stop, *churned;

static int churner(void *arg)
{
	(void)arg;
	char k[16];
	int64_t s = 0;
	long i = 0;
	while (shmp_value_load(stop, &s) == 0 && !s) {
		kname(k, "churn", i % 500);
		if ((i / 500) % 2 == 0)
			put(gd, k, (size_t)(i % 3) * 40, (uint32_t)i);
		else
			T_EQ(shmp_dict_delete(gd, k), 0);
		i++;
		shmp_value_add(churned, 1, NULL);
	}
	return 0;
}

static int64_t load(shmp_value_t *v)
{
	int64_t x = 0;
	T_EQ(shmp_value_load(v, &x), 0);
	return x;
}

static void iterate_churn(void)
{
	gd = mkdict(0, 0, 0, 0, NULL);
	stop = t_raw_value('q');
	churned = t_raw_value('q');
	char k[16], key[64];
	for (int i = 0; i < 1000; i++)
		put(gd, kname(k, "st", i), (size_t)(i % 4) * 30, (uint32_t)i);
	pid_t p = t_spawn(churner, NULL);
	static unsigned char val[256];
	static int count[1000];
	/* Passes go on until the churner has really run beside them. */
	double until = t_now() + 10;
	while (load(churned) < 1000)
		T_CHECK(t_now() < until);
	int64_t c0 = load(churned);
	int pass;
	for (pass = 0; pass < 30 || load(churned) < c0 + 5000; pass++) {
		T_CHECK(t_now() < until);
		memset(count, 0, sizeof count);
		uint64_t cur = 0;
		size_t vlen;
		int r;
		while ((r = shmp_dict_next(gd, &cur, key, sizeof key, val, sizeof val, &vlen)) == 1) {
			if (strncmp(key, "st", 2) == 0) {
				int i = atoi(key + 2);
				T_CHECK(i >= 0 && i < 1000);
				count[i]++;
				T_EQ(vlen, (size_t)(i % 4) * 30);
				T_CHECK(t_filled(val, vlen, (uint32_t)i));
			} else {
				T_CHECK(strncmp(key, "churn", 5) == 0);
			}
		}
		T_EQ(r, 0);
		for (int i = 0; i < 1000; i++)
			T_EQ(count[i], 1);
	}
	T_EQ(shmp_value_store(stop, 1), 0);
	t_wait_ok(p, 20);
	printf("iteration: %d passes beside %lld sets and deletes\n", pass, (long long)(load(churned) - c0));
	shmp_value_destroy(stop);
	shmp_value_destroy(churned);
	shmp_dict_destroy(gd);
}

/* ---- a registry's Dict, opened by name in another program ---------------- */

static const char *self_exe;

/* Run as `t_dict --registry-child NAME`: a fresh program, nothing inherited
 * but the name. */
static int registry_child(const char *name)
{
	t_watchdog(30);
	shmp_registry_t *r = shmp_registry_attach(name, NULL);
	if (!r)
		fprintf(stderr, "registry_attach(%s): %s\n", name, shmp_strerror(errno));
	T_CHECK(r);
	errno = 0;
	T_CHECK(shmp_registry_dict(r, "nope", NULL, SHMP_REG_GET_ONLY) == NULL);
	T_EQ(errno, ENOENT);
	shmp_dict_t *d = shmp_registry_dict(r, "cfg", NULL, SHMP_REG_GET_ONLY);
	T_CHECK(d);
	T_EQ(shmp_dict_capacity(d), 64);
	T_EQ(shmp_dict_len(d), 3);
	char buf[64];
	size_t len = 0;
	T_EQ(shmp_dict_get(d, "greeting", buf, sizeof buf, &len), 0);
	T_EQ(len, 12);
	T_CHECK(memcmp(buf, "hello, child", 12) == 0);
	expect(d, "blob", 5000, 77);
	int64_t out = 0;
	T_EQ(shmp_dict_add_i64(d, "visits", 5, &out), 0);
	T_EQ(out, 6);
	T_EQ(shmp_dict_set(d, "reply", "hello, parent", 13), 0);
	T_EQ(shmp_dict_delete(d, "blob"), 0);
	shmp_dict_destroy(d);
	shmp_registry_detach(r);
	return 0;
}

static void registry(void)
{
	const char *name = t_segname("reg");
	shmp_registry_t *r = shmp_registry_create(name, NULL);
	if (!r)
		fprintf(stderr, "registry_create(%s): %s\n", name, shmp_strerror(errno));
	T_CHECK(r);
	shmp_dict_t *d = shmp_registry_dict(r, "cfg", &SHMP_OPTS(shmp_dict_opts, .capacity = 64),
					    SHMP_REG_CREATE_ONLY);
	T_CHECK(d);
	T_EQ(shmp_dict_capacity(d), 64);
	T_EQ(shmp_dict_set(d, "greeting", "hello, child", 12), 0);
	put(d, "blob", 5000, 77);
	T_EQ(shmp_dict_add_i64(d, "visits", 1, NULL), 0);

	/* Registry errors about the Dict. */
	errno = 0;
	T_CHECK(shmp_registry_dict(r, "cfg", NULL, SHMP_REG_CREATE_ONLY) == NULL);
	T_EQ(errno, EEXIST);
	errno = 0;
	T_CHECK(shmp_registry_dict(r, "missing", NULL, SHMP_REG_GET_ONLY) == NULL);
	T_EQ(errno, ENOENT);
	shmp_value_t *v = shmp_registry_value(r, "num", 'q', NULL, 0);
	T_CHECK(v);
	errno = 0;
	T_CHECK(shmp_registry_dict(r, "num", NULL, 0) == NULL);
	T_EQ(-errno, -SHMP_ETYPE);
	errno = 0;
	T_CHECK(shmp_registry_value(r, "cfg", 'q', NULL, 0) == NULL);
	T_EQ(-errno, -SHMP_ETYPE);
	shmp_value_destroy(v);

	/* A second handle in this process: the same Dict. */
	shmp_dict_t *d2 = shmp_registry_dict(r, "cfg", NULL, 0);
	T_CHECK(d2);
	T_EQ(shmp_dict_len(d2), 3);
	T_EQ(shmp_dict_set(d2, "via2", "x", 1), 0);
	T_EQ(shmp_dict_contains(d, "via2"), 1);
	T_EQ(shmp_dict_delete(d, "via2"), 0);
	shmp_dict_destroy(d2);

	/* A fresh program opens it by name. */
	fflush(NULL);
	pid_t p = fork();
	T_CHECK(p >= 0);
	if (p == 0) {
		execl(self_exe, self_exe, "--registry-child", name, (char *)NULL);
		perror("execl");
		_exit(3);
	}
	t_wait_ok(p, 30);

	char buf[64];
	size_t len = 0;
	T_EQ(shmp_dict_get(d, "reply", buf, sizeof buf, &len), 0);
	T_EQ(len, 13);
	T_CHECK(memcmp(buf, "hello, parent", 13) == 0);
	T_EQ(get_i64(d, "visits"), 6);
	T_EQ(shmp_dict_contains(d, "blob"), 0);
	T_EQ(shmp_dict_len(d), 3);

	struct shmp_object_info info;
	memset(&info, 0, sizeof info);
	T_EQ(shmp_registry_lookup(r, "cfg", &info), 0);
	T_EQ(info.type, SHMP_TYPE_DICT);
	T_CHECK(strcmp(info.name, "cfg") == 0);
	T_EQ(info.valid, 1);
	T_EQ(info.depth, 3);
	T_EQ(info.capacity, 64);
	T_CHECK(strcmp(shmp_type_name(SHMP_TYPE_DICT), "dict") == 0);

	shmp_dict_destroy(d);
	shmp_registry_destroy(r);
	char path[300];
	snprintf(path, sizeof path, "/dev/shm/shmp.%s", name);
	T_EQ(access(path, F_OK), -1);
	T_EQ(errno, ENOENT);
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--registry-child") == 0)
		return registry_child(argv[2]);
	self_exe = "/proc/self/exe";
	t_watchdog(120);
	atexit(t_reap_all);

	double t0 = t_now();
	basics();
	sizes();
	capacity();
	memory();
	clear();
	setdefault();
	cas();
	add_i64();
	iterate();
	printf("one process: %.2f s\n", t_now() - t0);

	t0 = t_now();
	visibility();
	adders();
	defaulters();
	casers();
	iterate_churn();
	printf("processes: %.2f s\n", t_now() - t0);

	registry();
	T_NO_CHILDREN();
	return 0;
}
