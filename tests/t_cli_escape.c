/* Hostile bytes in a segment reach nobody's terminal, and --json stays JSON:
 * the real `shmp` command ($SHMP_CLI) against a registry whose entry names
 * and a pipeline's stage name this test rewrites in the segment file, as
 * anyone who may write the segment can (the library validates names on the
 * way in, so the bytes are planted directly).
 *
 * Asserts, for entry names holding ESC ] 0 ; ... BEL ESC [ 2 J (retitle,
 * clear screen), a 63-byte name (the longest) that starts a colour and ends
 * with BEL, invalid UTF-8 (stray continuations, overlong forms, a
 * surrogate, past U+10FFFF, a cut sequence) beside valid UTF-8 and a C1
 * control (U+009B, CSI), quote, backslash, blanks, DEL and printf
 * directives; a stage name with ESC, BEL, C1, 0xff and a newline; a 'c'
 * Array of control bytes:
 * - show, top and ls print only printable ASCII and newlines; each hostile
 *   name prints as the documented escape (\xNN for every byte outside
 *   0x21..0x7e, a backslash doubled), on its own object's line, whole (the
 *   63-byte one untruncated), next to the right value.
 * - --json show / top / ls parse as JSON (this test's strict parser, which
 *   also requires UTF-8, and python3's json module where installed); each
 *   name decodes to its bytes, with every byte of invalid UTF-8 replaced by
 *   U+FFFD; controls and C1 are \u escapes in the raw text, never raw bytes. */
#include "t_cli.h"

static const char *REG;
static shmp_registry_t *reg;

/* The escape the command documents for people, written out independently. */
static const char *human(const char *s, size_t n)
{
	static char b[8][1024];
	static int k;
	char *o = b[k++ % 8];
	size_t w = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\\')
			w += (size_t)sprintf(o + w, "\\\\");
		else if (c >= 0x21 && c <= 0x7e)
			o[w++] = (char)c;
		else
			w += (size_t)sprintf(o + w, "\\x%02x", c);
	}
	o[w] = 0;
	return o;
}

#define FFFD "\xef\xbf\xbd"

struct hostile {
	const char *marker; /* its name as created, then rewritten */
	const char *bytes;  /* what is planted */
	size_t len;
	const char *json;   /* what --json's string decodes to */
	int64_t value;
	shmp_value_t *v;
};

#define B(s) s, sizeof(s) - 1

static char long_name[64], long_json[64];

static struct hostile H[] = {
	{ "mark_osc", B("\x1b]0;pwned\x07\x1b[2J"), "\x1b]0;pwned\x07\x1b[2J", 101, NULL },
	{ "mark_long", long_name, 63, long_json, 102, NULL },
	{ "mark_utf8",
	  B("bad\xff\xfe|\xc0\xaf|\xed\xa0\x80|\xf4\x90\x80\x80|\x80|\xe2\x82|ok\xc3\xa9|\xc2\x9b"),
	  "bad" FFFD FFFD "|" FFFD FFFD "|" FFFD FFFD FFFD "|" FFFD FFFD FFFD FFFD "|" FFFD "|" FFFD FFFD
	  "|ok\xc3\xa9|\xc2\x9b",
	  103, NULL },
	{ "mark_punct", B("q\"b\\s p\tt\nn\x7f%s%n"), "q\"b\\s p\tt\nn\x7f%s%n", 104, NULL },
};
#define NH (int)(sizeof H / sizeof H[0])

/* A legitimate name of the longest length: must print whole. */
static char max_name[64];

static const char STAGE_MARK[] = "stagemark";
static const char STAGE[] = "\x1b]2;st\x07\x1b[2J\xc2\x9b" "1m\xff\n";
static const char STAGE_JSON[] = "\x1b]2;st\x07\x1b[2J\xc2\x9b" "1m" FFFD "\n";

static int sink_fn(const struct shmp_msg *in, shmp_stage_ctx_t *ctx, void *arg)
{
	(void)in, (void)ctx, (void)arg;
	return 0;
}

/* Every check on one `show` / `top` snapshot for people. */
static void check_human(const struct run *r, int snapshots)
{
	printable_only(r->out, r->outlen);
	printable_only(r->err, r->errlen);
	char prefix[512], want[1024];
	for (int i = 0; i < NH; i++) {
		snprintf(prefix, sizeof prefix, "  %-20s %-17s ", human(H[i].bytes, H[i].len), "value");
		snprintf(want, sizeof want, "%s'q' = %lld  [lock free]\n", prefix, (long long)H[i].value);
		C_EQ(count_of(r->out, want), snapshots);
	}
	snprintf(want, sizeof want, "  %-20s %-17s 'q' = 105  [lock free]\n", max_name, "value");
	C_EQ(count_of(r->out, want), snapshots);
	snprintf(want, sizeof want, "    stage 1 %-14s workers 1 ", human(STAGE, sizeof STAGE - 1));
	C_EQ(count_of(r->out, want), snapshots);
	C_EQ(count_of(r->out, "'c' x 6 = ['\\x1b', '[', '2', 'J', '\\x07', '\\\\']"), snapshots);
}

/* Every check on one --json snapshot. */
static void check_json(const char *s, size_t n)
{
	struct jv j;
	/* Raw: no control or C1 byte anywhere (the parser refuses raw controls
	 * inside strings only), and the escapes are there. */
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		C_CHECK(c >= 0x20 || c == '\n');
		C_CHECK(c != 0x7f);
		C_CHECK(!(c == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] >= 0x80 && (unsigned char)s[i + 1] < 0xa0));
	}
	static const char *const escapes[] = { "\\u001b]0;pwned\\u0007\\u001b[2J", "\\u009b", "\\ufffd",
					       "q\\\"b\\\\s p\\tt\\nn\\u007f%s%n" };
	for (int i = 0; i < 4; i++)
		C_CHECK(memmem(s, n, escapes[i], strlen(escapes[i])));
	jparse(s, n, &j);
	const struct jv *objs = JARR(&j, "objects");
	for (int i = 0; i < NH; i++) {
		const struct jv *o = jfind(objs, "name", H[i].json);
		if (!o)
			fprintf(stderr, "hostile name %d (%s) not found decoded\n", i, human(H[i].json, strlen(H[i].json)));
		C_CHECK(o);
		C_STREQ(JSTR(o, "type"), "value");
		C_EQ(JINT(o, "value"), H[i].value);
	}
	const struct jv *o = jfind(objs, "name", max_name);
	C_CHECK(o);
	C_EQ(JINT(o, "value"), 105);
	o = jfind(objs, "name", "plmark");
	C_CHECK(o);
	const struct jv *stages = JARR(o, "stages");
	C_EQ(stages->n, 1);
	C_STREQ(JSTR(&stages->v[0], "name"), STAGE_JSON);
	o = jfind(objs, "name", "ctl");
	C_CHECK(o);
	const struct jv *pv = JARR(o, "preview");
	C_EQ(pv->n, 6);
	C_STREQ(pv->v[0].s, "\x1b");
	C_STREQ(pv->v[4].s, "\x07");
	C_STREQ(pv->v[5].s, "\\");
	jfree(&j);
}

int main(void)
{
	t_watchdog(90);
	cli_init();
	atexit(t_reap_all);
	double t0 = t_now();
	/* 63 bytes: a colour, filler, BEL last (a cut would lose it). */
	memset(long_name, 'x', 63);
	memcpy(long_name, "\x1b[31m", 5);
	long_name[62] = '\x07';
	memcpy(long_json, long_name, 64);
	memset(max_name, 'N', 63);
	max_name[61] = '.';

	REG = track(t_segname("esc"));
	reg = shmp_registry_create(REG, &SHMP_OPTS(shmp_registry_opts, .size = 16u << 20));
	T_CHECK(reg);
	for (int i = 0; i < NH; i++)
		T_CHECK((H[i].v = shmp_registry_value(reg, H[i].marker, 'q', &H[i].value, SHMP_REG_CREATE_ONLY)));
	int64_t v105 = 105;
	shmp_value_t *vmax = shmp_registry_value(reg, max_name, 'q', &v105, SHMP_REG_CREATE_ONLY);
	T_CHECK(vmax);
	shmp_array_t *ctl = shmp_registry_array(reg, "ctl", 'c', 6, "\x1b[2J\x07\\", SHMP_REG_CREATE_ONLY);
	T_CHECK(ctl);
	/* A pipeline in the registry, with one stage (threads: no process to
	 * reap), started so that its stage name is in the segment. */
	struct shmp_pipeline_opts po = SHMP_OPTS(shmp_pipeline_opts, .registry = reg,
						 .name = "plmark", .threads = 1, .capacity = 8);
	shmp_pipeline_t *pl = shmp_pipeline_create(&po);
	T_CHECK(pl);
	T_EQ(shmp_pipeline_add_stage(pl, STAGE_MARK, sink_fn, NULL, 1), 1);
	T_EQ(shmp_pipeline_start(pl), 0);

	/* The hostile writer. */
	for (int i = 0; i < NH; i++)
		seg_rename(REG, H[i].marker, SHMP_REGISTRY_NAME_MAX + 1, H[i].bytes, H[i].len);
	seg_rename(REG, STAGE_MARK, 32, STAGE, sizeof STAGE - 1);
	/* The library hands the bytes on as they are (so the command must
	 * escape them): the rewrite took. */
	struct shmp_object_info oi;
	int seen = 0;
	for (unsigned i = 0; shmp_registry_info(reg, i, &oi) >= 0; i++)
		seen += memcmp(oi.name, H[0].bytes, H[0].len + 1) == 0;
	T_EQ(seen, 1);
	struct shmp_pipeline_stats pst;
	T_EQ(shmp_pipeline_stats(pl, &pst), 0);
	T_EQ(memcmp(pst.stage[0].name, STAGE, sizeof STAGE), 0);

	struct run r = { 0 };
	C_EQ(cli(&r, "show", REG, NULL), 0);
	C_EQ(r.errlen, 0);
	check_human(&r, 1);
	C_EQ(cli(&r, "top", REG, "-n", "2", "-i", "0.05", NULL), 0);
	check_human(&r, 2);
	C_EQ(cli(&r, "ls", NULL), 0);
	printable_only(r.out, r.outlen);
	C_CHECK(has(r.out, REG));

	C_EQ(cli(&r, "--json", "show", REG, NULL), 0);
	C_EQ(r.errlen, 0);
	check_json(r.out, r.outlen);
	C_EQ(cli(&r, "--json", "top", REG, "-n", "2", "-i", "0.05", NULL), 0);
	C_EQ(count_of(r.out, "\n"), 2);
	const char *nl = strchr(r.out, '\n');
	check_json(r.out, (size_t)(nl - r.out + 1));
	check_json(nl + 1, r.outlen - (size_t)(nl + 1 - r.out));
	C_EQ(cli(&r, "--json", "ls", NULL), 0);
	struct jv j;
	jparse(r.out, r.outlen, &j);
	C_CHECK(jfind(JARR(&j, "segments"), "name", REG));
	jfree(&j);
	run_free(&r);

	T_EQ(shmp_pipeline_close(pl), 0);
	T_EQ(shmp_pipeline_join(pl, 10), 0);
	shmp_pipeline_destroy(pl);
	for (int i = 0; i < NH; i++)
		shmp_value_destroy(H[i].v);
	shmp_value_destroy(vmax);
	shmp_array_destroy(ctl);
	shmp_registry_destroy(reg);
	T_CHECK(!seg_file_exists(REG));
	json_python_check();
	free(json_all);
	T_NO_CHILDREN();
	fprintf(stderr, "t_cli_escape: ok in %.2f s\n", t_now() - t0);
	return 0;
}
