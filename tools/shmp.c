/* shmp — look at shmp's shared-memory segments from the shell.
 *
 *   shmp [--json] ls                 every segment: size, owner, creator, users, objects, state
 *   shmp [--json] show NAME          the objects inside, with their current values
 *   shmp [--json] top NAME [-n COUNT] [-i SECONDS]
 *                                    show, refreshed (JSON: one line per refresh)
 *   shmp [--json] rm NAME...         unlink segments (mappings stay valid); names their owner
 *   shmp [--json] gc [--force] [--all-users]
 *                                    stale segments (creator and all users dead, not
 *                                    persistent) of the caller; --force removes them,
 *                                    --all-users takes other users' too
 *
 * Everything here reads: segments are mapped read-only, no attach is
 * counted, no lock is taken, so a running program never notices. Exit
 * status: 0 done, 1 failed (no such segment...), 2 bad usage.
 *
 * Trust: whoever can write a segment controls every byte we read from it
 * (names, stage names, values), and root's `shmp show` may be looking at
 * another user's segment. So no byte from a segment reaches the output
 * raw (see esc() and json_str()): a name holding ESC ] 0 ; ... BEL
 * ESC [ 2 J must print as text, not retitle and clear the terminal of
 * whoever inspects it, and --json must stay valid JSON whatever the bytes.
 * Numbers from a segment are only printed (pids included: nothing here
 * signals, opens or waits on what a segment says). gc removes only the
 * caller's own files unless told otherwise, and only the file it judged
 * (same inode, same owner, just before the unlink). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <pwd.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <shmp.h>

#define SHM_DIR "/dev/shm"
#define PREFIX "shmp."
#define MAX_WORKERS 256

static bool json;

/* ---- escaping: nothing from a segment reaches the output raw ------------ */

/* For people: ASCII graphic characters (0x21..0x7e) as they are, a
 * backslash doubled, every other byte -- controls, space, DEL, anything
 * from 0x80 (UTF-8 included: C1 controls are multi-byte there) -- as \xNN.
 * So the text is pure printable ASCII without blanks, and a name stays one
 * column. Returns one of a few rotating static buffers (enough for the
 * strings of one printf); past ~1000 bytes of output (only command-line
 * arguments are that long) it ends in "...". */
#define ESC_BUFS 8
#define ESC_CAP 1024

static const char *esc(const char *s)
{
	static char bufs[ESC_BUFS][ESC_CAP];
	static unsigned next;
	char *out = bufs[next++ % ESC_BUFS];
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (o + 8 > ESC_CAP) {
			memcpy(out + o, "...", 4);
			return out;
		}
		if (*p == '\\') {
			out[o++] = '\\';
			out[o++] = '\\';
		} else if (*p > 0x20 && *p < 0x7f) {
			out[o++] = (char)*p;
		} else {
			o += (size_t)snprintf(out + o, ESC_CAP - o, "\\x%02x", *p);
		}
	}
	out[o] = 0;
	return out;
}

/* Length of the well-formed UTF-8 sequence at p (1..4), or 0 if the byte
 * at p does not start one (a stray continuation byte, an overlong form, a
 * surrogate, past U+10FFFF, or cut short). p is NUL-terminated: a NUL
 * fails the continuation test, so nothing past it is read. */
static size_t utf8_seq(const unsigned char *p, unsigned *cp)
{
	unsigned c = p[0];
	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c < 0xc2 || c > 0xf4)
		return 0;
	size_t n = c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
	unsigned v = c & (0x7f >> n);
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		v = v << 6 | (p[i] & 0x3f);
	}
	if ((n == 3 && v < 0x800) || (n == 4 && (v < 0x10000 || v > 0x10ffff)) || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return n;
}

/* A JSON string (RFC 8259): always valid JSON and valid UTF-8. Quote and
 * backslash escaped; control characters (C0, DEL, the C1 range U+0080..
 * U+009F) and U+2028/U+2029 as \uXXXX; other well-formed UTF-8 as it is;
 * every byte that is not part of a well-formed UTF-8 sequence becomes
 * U+FFFD (one per byte: the bytes are lost, as they would be in any
 * decoder that replaces). */
static void json_str(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	putchar('"');
	while (*p) {
		unsigned cp;
		size_t n = utf8_seq(p, &cp);
		if (!n) {
			fputs("\\ufffd", stdout);
			p++;
			continue;
		}
		if (cp == '"' || cp == '\\')
			printf("\\%c", (char)cp);
		else if (cp == '\n')
			fputs("\\n", stdout);
		else if (cp == '\t')
			fputs("\\t", stdout);
		else if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0) || cp == 0x2028 || cp == 0x2029)
			printf("\\u%04x", cp);
		else
			fwrite(p, 1, n, stdout);
		p += n;
	}
	putchar('"');
}

/* ---- owners ------------------------------------------------------------------ */

/* The user's name, or the uid in decimal if it has none. */
static const char *user_name(uid_t uid)
{
	static uid_t cached_uid;
	static char cached[256];
	static bool have;
	if (have && cached_uid == uid)
		return cached;
	struct passwd pw, *res = NULL;
	char tmp[4096];
	if (getpwuid_r(uid, &pw, tmp, sizeof tmp, &res) == 0 && res && res->pw_name && *res->pw_name)
		snprintf(cached, sizeof cached, "%s", res->pw_name);
	else
		snprintf(cached, sizeof cached, "%u", (unsigned)uid);
	cached_uid = uid;
	have = true;
	return cached;
}

/* "alice (uid 1000)", escaped (a name from the passwd database, but we
 * print nothing raw). */
static const char *owner_text(uid_t uid)
{
	static char b[ESC_CAP + 32];
	snprintf(b, sizeof b, "%s (uid %u)", esc(user_name(uid)), (unsigned)uid);
	return b;
}

static void owner_json(uid_t uid)
{
	printf("\"owner\":");
	json_str(user_name(uid));
	printf(",\"owner_uid\":%u", (unsigned)uid);
}

/* ---- output: the same walk prints for people or as JSON ----------------- */

/* A persistent segment was left on purpose for later readers: never
 * "stale", whoever is alive. */
static const char *state_of(const struct shmp_segment_info *si)
{
	if (!si->valid)
		return si->error == -SHMP_EVERSION ? "version" : si->error == -EACCES ? "denied" : "corrupt";
	return si->persistent ? "persistent" : si->stale ? "stale" : "ok";
}

static void human_size(uint64_t b, char *out, size_t n)
{
	const char *u[] = { "B", "K", "M", "G", "T" };
	int i = 0;
	double v = (double)b;
	while (v >= 1024 && i < 4) {
		v /= 1024;
		i++;
	}
	snprintf(out, n, i ? "%.1f%s" : "%.0f%s", v, u[i]);
}

static void segment_json(const struct shmp_segment_info *si)
{
	printf("{\"name\":");
	json_str(si->name);
	printf(",\"size\":%" PRIu64 ",\"used\":%" PRIu64 ",\"valid\":%s,\"state\":\"%s\"", si->size,
	       si->used_bytes, si->valid ? "true" : "false", state_of(si));
	if (!si->valid) {
		printf(",\"error\":");
		json_str(shmp_strerror(si->error));
	}
	printf(",");
	owner_json(si->owner_uid);
	printf(",\"owner_gid\":%u,\"mode\":\"%04o\",\"trusted\":%s,\"persistent\":%s", (unsigned)si->owner_gid,
	       si->mode & 07777, si->trusted ? "true" : "false", si->persistent ? "true" : "false");
	printf(",\"creator_pid\":%d,\"creator_alive\":%s,\"attach_count\":%u,\"users\":%u,\"objects\":%d,"
	       "\"stale\":%s}",
	       (int)si->creator_pid, si->creator_alive ? "true" : "false", si->attach_count, si->users,
	       si->objects, si->stale ? "true" : "false");
}

/* Names of every shmp segment, sorted. */
static int list_names(char ***out)
{
	DIR *d = opendir(SHM_DIR);
	if (!d)
		return -errno;
	char **v = NULL;
	int n = 0, cap = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, PREFIX, strlen(PREFIX)) != 0)
			continue;
		const char *name = de->d_name + strlen(PREFIX);
		if (shmp_segment_name_check(name) < 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			char **nv = realloc(v, (size_t)cap * sizeof *v);
			if (!nv)
				break;
			v = nv;
		}
		if (!(v[n] = strdup(name)))
			break;
		n++;
	}
	closedir(d);
	for (int i = 1; i < n; i++) /* insertion sort: a handful of names */
		for (int j = i; j > 0 && strcmp(v[j - 1], v[j]) > 0; j--) {
			char *t = v[j];
			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	*out = v;
	return n;
}

static void free_names(char **v, int n)
{
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static int cmd_ls(void)
{
	char **names;
	int n = list_names(&names);
	if (n < 0) {
		fprintf(stderr, "shmp: %s: %s\n", SHM_DIR, strerror(-n));
		return 1;
	}
	if (json)
		printf("{\"segments\":[");
	else
		printf("%-24s %8s %8s %-8s %8s %6s %6s %5s %7s  %s\n", "NAME", "SIZE", "USED", "OWNER", "CREATOR",
		       "ALIVE", "ATTACH", "USERS", "OBJECTS", "STATE");
	int shown = 0;
	for (int i = 0; i < n; i++) {
		struct shmp_segment_info si;
		if (shmp_segment_inspect(names[i], &si) < 0)
			continue; /* gone meanwhile */
		if (json) {
			printf(shown ? "," : "");
			segment_json(&si);
		} else {
			char sz[16], used[16], obj[16];
			human_size(si.size, sz, sizeof sz);
			human_size(si.used_bytes, used, sizeof used);
			snprintf(obj, sizeof obj, si.objects < 0 ? "-" : "%d", si.objects);
			printf("%-24s %8s %8s %-8s %8d %6s %6u %5u %7s  %s\n", esc(si.name), si.valid ? sz : "-",
			       si.valid ? used : "-", esc(user_name(si.owner_uid)), (int)si.creator_pid,
			       si.valid ? (si.creator_alive ? "yes" : "no") : "-", si.attach_count, si.users, obj,
			       state_of(&si));
		}
		shown++;
	}
	if (json)
		printf("]}\n");
	else if (!shown)
		printf("(no shmp segments in %s)\n", SHM_DIR);
	free_names(names, n);
	return 0;
}

/* ---- show ----------------------------------------------------------------- */

/* A typecode as a string, to be escaped like any byte from a segment. */
static const char *tc_str(char c, char out[2])
{
	out[0] = c;
	out[1] = 0;
	return out;
}

/* One item of a Value/Array preview, as text (numbers, or a 'c' byte
 * escaped: \xNN for people, \uXXXX in JSON). */
static int item_text(char tc, const unsigned char *p, char *out, size_t n)
{
	union {
		int8_t b; uint8_t B; int16_t h; uint16_t H; int32_t i; uint32_t I;
		int64_t q; uint64_t Q; float f; double d; long l; unsigned long L;
	} u;
	int sz = shmp_typecode_size(tc);
	if (sz <= 0)
		return -1;
	memcpy(&u, p, (size_t)sz);
	switch (tc) {
	case 'b': return snprintf(out, n, "%d", u.b);
	case 'B': return snprintf(out, n, "%u", u.B);
	case 'h': return snprintf(out, n, "%d", u.h);
	case 'H': return snprintf(out, n, "%u", u.H);
	case 'i': return snprintf(out, n, "%d", u.i);
	case 'I': return snprintf(out, n, "%u", u.I);
	case 'l': return snprintf(out, n, "%ld", u.l);
	case 'L': return snprintf(out, n, "%lu", u.L);
	case 'q': return snprintf(out, n, "%" PRId64, u.q);
	case 'Q': return snprintf(out, n, "%" PRIu64, u.Q);
	case 'f':
	case 'd': {
		double x = tc == 'f' ? u.f : u.d;
		if (json && !isfinite(x))
			return snprintf(out, n, "null"); /* JSON has no NaN or infinity */
		return snprintf(out, n, tc == 'f' ? "%.9g" : "%.17g", x);
	}
	case '?': return snprintf(out, n, u.B ? "true" : "false");
	case 'c':
		if (json)
			return snprintf(out, n, "\"\\u%04x\"", u.B);
		if (u.B == '\\')
			return snprintf(out, n, "'\\\\'");
		return snprintf(out, n, u.B >= 0x20 && u.B < 0x7f ? "'%c'" : "'\\x%02x'", u.B);
	}
	return -1;
}

/* The items in a preview, comma-separated; "..." when there are more. */
static void preview_text(const struct shmp_object_info *o, char *out, size_t n)
{
	int sz = shmp_typecode_size(o->typecode);
	size_t pos = 0;
	out[0] = 0;
	if (sz <= 0)
		return;
	uint64_t shown = 0;
	for (uint32_t at = 0; at + (uint32_t)sz <= o->preview_bytes && shown < 8 && pos + 40 < n;
	     at += (uint32_t)sz, shown++) {
		if (shown)
			pos += (size_t)snprintf(out + pos, n - pos, ", ");
		int w = item_text(o->typecode, o->preview + at, out + pos, n - pos);
		if (w > 0)
			pos += (size_t)w;
	}
	if (shown < o->length && pos + 8 < n)
		snprintf(out + pos, n - pos, json ? "" : ", ...");
}

static void lock_text(const struct shmp_object_info *o, char *out, size_t n)
{
	if (!o->locked)
		snprintf(out, n, "free");
	else if (!o->owner_tid)
		snprintf(out, n, "not recoverable");
	else if (!o->owner_pid)
		snprintf(out, n, "held by tid %d (process gone)%s", (int)o->owner_tid,
			 o->owner_dead ? ", owner dead" : "");
	else
		snprintf(out, n, "held by pid %d (tid %d)%s", (int)o->owner_pid, (int)o->owner_tid,
			 o->owner_dead ? ", owner dead" : "");
}

static const char *pool_state(int s)
{
	static const char *const n[] = { "running", "closed", "terminated", "broken" };
	return s >= 0 && s <= 3 ? n[s] : "?";
}

static const char *worker_state(int s)
{
	static const char *const n[] = { "starting", "idle", "busy", "exited" };
	return s >= 0 && s <= 3 ? n[s] : "?";
}

static void show_pool_human(shmp_registry_t *r, const char *name)
{
	struct shmp_pool_stats st;
	struct shmp_worker_info w[MAX_WORKERS];
	int nw = shmp_pool_inspect(r, name, &st, w, MAX_WORKERS);
	if (nw < 0) {
		printf("  (%s)\n", shmp_strerror(nw));
		return;
	}
	printf("%s, %u workers (%u alive), %s supervision\n", pool_state(st.state), st.workers, st.alive,
	       st.supervision ? "io_uring" : "poll");
	printf("    submitted %" PRIu64 "  completed %" PRIu64 "  failed %" PRIu64 "  queued %" PRIu64
	       "  running %" PRIu64 "  deaths %" PRIu64 "  started %" PRIu64 "\n",
	       st.submitted, st.completed, st.failed, st.queued, st.running, st.worker_deaths, st.workers_started);
	for (int i = 0; i < nw && i < MAX_WORKERS; i++) {
		printf("    worker %-3d pid %-8d %-8s tasks %" PRIu64, i, (int)w[i].pid, worker_state(w[i].state),
		       w[i].tasks_done);
		if (w[i].state == SHMP_WORKER_BUSY)
			printf("  item %" PRIu64, w[i].task_index);
		printf("\n");
	}
}

static void show_pool_json(shmp_registry_t *r, const char *name)
{
	struct shmp_pool_stats st;
	struct shmp_worker_info w[MAX_WORKERS];
	int nw = shmp_pool_inspect(r, name, &st, w, MAX_WORKERS);
	if (nw < 0) {
		printf(",\"error\":");
		json_str(shmp_strerror(nw));
		return;
	}
	printf(",\"state\":\"%s\",\"workers\":%u,\"alive\":%u,\"supervision\":\"%s\",\"submitted\":%" PRIu64
	       ",\"completed\":%" PRIu64 ",\"failed\":%" PRIu64 ",\"queued\":%" PRIu64 ",\"running\":%" PRIu64
	       ",\"worker_deaths\":%" PRIu64 ",\"workers_started\":%" PRIu64 ",\"worker_list\":[",
	       pool_state(st.state), st.workers, st.alive, st.supervision ? "io_uring" : "poll", st.submitted,
	       st.completed, st.failed, st.queued, st.running, st.worker_deaths, st.workers_started);
	for (int i = 0; i < nw && i < MAX_WORKERS; i++)
		printf("%s{\"pid\":%d,\"state\":\"%s\",\"tasks_done\":%" PRIu64 ",\"task_index\":%" PRIu64 "}",
		       i ? "," : "", (int)w[i].pid, worker_state(w[i].state), w[i].tasks_done, w[i].task_index);
	printf("]");
}

static const char *pipeline_state(int s)
{
	static const char *const n[] = { "new", "running", "draining", "done", "stopped" };
	return s >= 0 && s <= 4 ? n[s] : "?";
}

static void show_pipeline_human(shmp_registry_t *r, const char *name)
{
	struct shmp_pipeline_stats st;
	int e = shmp_pipeline_inspect(r, name, &st);
	if (e < 0) {
		printf("  (%s)\n", shmp_strerror(e));
		return;
	}
	double secs = st.elapsed > 0 ? st.elapsed : 1e-9;
	printf("%s, %u stages, %" PRIu64 " in, %" PRIu64 " out (%.0f msg/s, %.1f MB/s), %" PRIu64 " lost\n",
	       pipeline_state(st.state), st.nstages, st.messages_in, st.messages_out, (double)st.messages_out / secs,
	       (double)st.bytes_out / secs / 1e6, st.lost);
	printf("    latency p50 %.1f us  p99 %.1f us  p99.9 %.1f us  max %.1f us  (%" PRIu64 " messages)\n",
	       st.lat_p50 / 1e3, st.lat_p99 / 1e3, st.lat_p999 / 1e3, st.lat_max / 1e3, st.lat_count);
	for (unsigned i = 0; i < st.nstages; i++) {
		const struct shmp_stage_stats *s = &st.stage[i];
		printf("    stage %u %-14s workers %u (%u alive)  processed %" PRIu64 "  failed %" PRIu64
		       "  queued %" PRIu64 "  deaths %" PRIu64 "  restarts %" PRIu64 "\n",
		       i + 1, esc(s->name), s->workers, s->alive, s->processed, s->failed, s->queued, s->deaths, s->restarts);
	}
}

static void show_pipeline_json(shmp_registry_t *r, const char *name)
{
	struct shmp_pipeline_stats st;
	int e = shmp_pipeline_inspect(r, name, &st);
	if (e < 0) {
		printf(",\"error\":");
		json_str(shmp_strerror(e));
		return;
	}
	printf(",\"state\":\"%s\",\"messages_in\":%" PRIu64 ",\"messages_out\":%" PRIu64 ",\"bytes_out\":%" PRIu64
	       ",\"lost\":%" PRIu64 ",\"elapsed\":%.6f,\"latency_ns\":{\"count\":%" PRIu64 ",\"p50\":%" PRIu64
	       ",\"p99\":%" PRIu64 ",\"p999\":%" PRIu64 ",\"max\":%" PRIu64 "},\"stages\":[",
	       pipeline_state(st.state), st.messages_in, st.messages_out, st.bytes_out, st.lost, st.elapsed,
	       st.lat_count, st.lat_p50, st.lat_p99, st.lat_p999, st.lat_max);
	for (unsigned i = 0; i < st.nstages; i++) {
		const struct shmp_stage_stats *s = &st.stage[i];
		printf("%s{\"name\":", i ? "," : "");
		json_str(s->name);
		printf(",\"workers\":%u,\"alive\":%u,\"processed\":%" PRIu64 ",\"failed\":%" PRIu64
		       ",\"queued\":%" PRIu64 ",\"deaths\":%" PRIu64 ",\"restarts\":%" PRIu64 "}",
		       s->workers, s->alive, s->processed, s->failed, s->queued, s->deaths, s->restarts);
	}
	printf("]");
}

static void object_human(shmp_registry_t *r, const struct shmp_object_info *o)
{
	char buf[512], lk[128], tc[2];
	printf("  %-20s %-17s ", esc(o->name), shmp_type_name(o->type));
	if (!o->valid && o->type != SHMP_TYPE_POOL && o->type != SHMP_TYPE_PIPELINE) {
		printf("(failed validation)\n");
		return;
	}
	lock_text(o, lk, sizeof lk);
	switch (o->type) {
	case SHMP_TYPE_VALUE:
		preview_text(o, buf, sizeof buf);
		printf("'%s' = %s  [lock %s]\n", esc(tc_str(o->typecode, tc)), buf, lk);
		break;
	case SHMP_TYPE_ARRAY:
		preview_text(o, buf, sizeof buf);
		printf("'%s' x %" PRIu64 " = [%s]  [lock %s]\n", esc(tc_str(o->typecode, tc)), o->length, buf, lk);
		break;
	case SHMP_TYPE_LOCK:
		printf("%s\n", lk);
		break;
	case SHMP_TYPE_RLOCK:
		printf("%s", lk);
		if (o->locked)
			printf(", depth %u", o->lock_depth);
		printf("\n");
		break;
	case SHMP_TYPE_SEM:
		printf("value %d, %u waiting\n", o->value, o->waiters);
		break;
	case SHMP_TYPE_BOUNDED_SEM:
		printf("value %d of %u, %u waiting\n", o->value, o->max, o->waiters);
		break;
	case SHMP_TYPE_COND:
		printf("%u waiting, lock %s\n", o->waiters, lk);
		break;
	case SHMP_TYPE_EVENT:
		printf("%s, %u waiting\n", o->is_set ? "set" : "clear", o->waiters);
		break;
	case SHMP_TYPE_BARRIER:
		printf("%u of %u arrived%s\n", o->waiters, o->parties, o->broken ? ", broken" : "");
		break;
	case SHMP_TYPE_QUEUE:
	case SHMP_TYPE_JOINABLE_QUEUE:
		printf("%" PRIu64 " of %" PRIu64 " queued", o->depth, o->capacity);
		if (o->type == SHMP_TYPE_JOINABLE_QUEUE)
			printf(", %" PRIu64 " unfinished", o->unfinished);
		printf("%s\n", o->closed ? ", closed" : "");
		break;
	case SHMP_TYPE_DICT:
		printf("%" PRIu64 " keys of %" PRIu64 "\n", o->depth, o->capacity);
		break;
	case SHMP_TYPE_POOL:
		show_pool_human(r, o->name);
		break;
	case SHMP_TYPE_PIPELINE:
		show_pipeline_human(r, o->name);
		break;
	default:
		printf("at offset %" PRIu64 "\n", o->offset);
	}
}

static void lock_json(const struct shmp_object_info *o)
{
	printf("\"locked\":%s,\"owner_pid\":%d,\"owner_tid\":%d,\"owner_dead\":%s", o->locked ? "true" : "false",
	       (int)o->owner_pid, (int)o->owner_tid, o->owner_dead ? "true" : "false");
}

/* The JSON twin of object_human: the same switch over the same fields on
 * purpose (`duplicates` pairs their cases), so that a field shown to a
 * person is also given to a script; keep the two in step. */
static void object_json(shmp_registry_t *r, const struct shmp_object_info *o)
{
	char buf[512], tc[2];
	printf("{\"name\":");
	json_str(o->name);
	printf(",\"type\":\"%s\",\"offset\":%" PRIu64 ",\"creator_pid\":%d,\"handles\":%u,\"valid\":%s",
	       shmp_type_name(o->type), o->offset, (int)o->creator_pid, o->handles, o->valid ? "true" : "false");
	switch (o->type == SHMP_TYPE_POOL || o->type == SHMP_TYPE_PIPELINE || o->valid ? o->type : 0) {
	case SHMP_TYPE_VALUE:
	case SHMP_TYPE_ARRAY:
		printf(",\"typecode\":");
		json_str(tc_str(o->typecode, tc));
		printf(",\"length\":%" PRIu64 ",", o->length);
		preview_text(o, buf, sizeof buf);
		printf(o->type == SHMP_TYPE_VALUE ? "\"value\":%s," : "\"preview\":[%s],", buf);
		lock_json(o);
		break;
	case SHMP_TYPE_LOCK:
	case SHMP_TYPE_RLOCK:
		printf(",");
		lock_json(o);
		printf(",\"depth\":%u", o->lock_depth);
		break;
	case SHMP_TYPE_SEM:
	case SHMP_TYPE_BOUNDED_SEM:
		printf(",\"value\":%d,\"max\":%u,\"waiters\":%u", o->value, o->max, o->waiters);
		break;
	case SHMP_TYPE_COND:
		printf(",\"waiters\":%u,", o->waiters);
		lock_json(o);
		break;
	case SHMP_TYPE_EVENT:
		printf(",\"is_set\":%s,\"waiters\":%u", o->is_set ? "true" : "false", o->waiters);
		break;
	case SHMP_TYPE_BARRIER:
		printf(",\"parties\":%u,\"waiting\":%u,\"broken\":%s", o->parties, o->waiters,
		       o->broken ? "true" : "false");
		break;
	case SHMP_TYPE_QUEUE:
	case SHMP_TYPE_JOINABLE_QUEUE:
		printf(",\"depth\":%" PRIu64 ",\"capacity\":%" PRIu64 ",\"closed\":%s,\"unfinished\":%" PRIu64,
		       o->depth, o->capacity, o->closed ? "true" : "false", o->unfinished);
		break;
	case SHMP_TYPE_DICT:
		printf(",\"len\":%" PRIu64 ",\"capacity\":%" PRIu64, o->depth, o->capacity);
		break;
	case SHMP_TYPE_POOL:
		show_pool_json(r, o->name);
		break;
	case SHMP_TYPE_PIPELINE:
		show_pipeline_json(r, o->name);
		break;
	}
	printf("}");
}

/* Print one snapshot of NAME. 0, or 1 if it cannot be read. */
static int show_once(const char *name)
{
	struct shmp_segment_info si;
	int e = shmp_segment_inspect(name, &si);
	if (e < 0) {
		fprintf(stderr, "shmp: %s: %s\n", esc(name), e == -ENOENT ? "no such segment" : shmp_strerror(e));
		return 1;
	}
	struct shmp_registry_opts ro = { .sz = sizeof ro, .flags = SHMP_REGISTRY_READ_ONLY };
	shmp_registry_t *r = si.valid ? shmp_registry_attach(name, &ro) : NULL;
	int rerr = r ? 0 : -errno;
	if (json) {
		printf("{\"segment\":");
		segment_json(&si);
		printf(",\"objects\":[");
	} else {
		char sz[16], used[16];
		human_size(si.size, sz, sizeof sz);
		human_size(si.used_bytes, used, sizeof used);
		printf("%s: %s", esc(si.name), state_of(&si));
		if (si.valid)
			printf(", %s (%s used), creator pid %d (%s), %u attached, %u users", sz, used,
			       (int)si.creator_pid, si.creator_alive ? "alive" : "dead", si.attach_count, si.users);
		else
			printf(" (%s)", shmp_strerror(si.error));
		printf(", owner %s, mode %04o\n", owner_text(si.owner_uid), si.mode & 07777);
		if (si.valid && !r)
			printf("  (no objects: %s)\n", rerr == -ENODATA ? "no directory" : shmp_strerror(rerr));
	}
	int n = 0;
	struct shmp_object_info o;
	for (unsigned i = 0; r; i++) {
		int k = shmp_registry_info(r, i, &o);
		if (k < 0)
			break;
		if (k != 1)
			continue;
		if (json) {
			printf(n ? "," : "");
			object_json(r, &o);
		} else {
			object_human(r, &o);
		}
		n++;
	}
	if (json)
		printf("]}\n");
	else if (r && !n)
		printf("  (no objects)\n");
	shmp_registry_detach(r);
	return si.valid ? 0 : 1;
}

static int cmd_top(const char *name, long count, double interval)
{
	bool tty = !json && isatty(STDOUT_FILENO);
	for (long i = 0; count <= 0 || i < count; i++) {
		if (i) {
			struct timespec ts = { (time_t)interval, (long)((interval - (double)(time_t)interval) * 1e9) };
			while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
				; /* the whole interval, whatever signal came */
		}
		if (tty)
			printf("\033[H\033[2J");
		if (!json) {
			time_t now = time(NULL);
			char tb[32];
			strftime(tb, sizeof tb, "%H:%M:%S", localtime(&now));
			printf("shmp top %s  %s  (every %.1f s)\n", esc(name), tb, interval);
		}
		int e = show_once(name);
		fflush(stdout);
		if (e)
			return e;
	}
	return 0;
}

/* Unlink each name, saying whose file it was (the owner as lstat saw it
 * just before the unlink: root may be removing another user's segment).
 * Failures go to stderr in both modes; --json lists them too. */
struct rm_result {
	int error;
	bool known; /* the owner: lstat found the file */
	uid_t uid;
};

static int cmd_rm(int argc, char **argv)
{
	struct rm_result *res = calloc((size_t)argc, sizeof *res);
	if (!res) {
		fprintf(stderr, "shmp: rm: %s\n", strerror(ENOMEM));
		return 1;
	}
	int rc = 0;
	for (int i = 0; i < argc; i++) {
		int e = shmp_segment_name_check(argv[i]);
		if (e == 0) {
			char path[sizeof SHM_DIR + sizeof PREFIX + SHMP_SEGMENT_NAME_MAX + 2];
			struct stat st;
			snprintf(path, sizeof path, SHM_DIR "/" PREFIX "%s", argv[i]);
			if (lstat(path, &st) == 0) {
				res[i].known = true;
				res[i].uid = st.st_uid;
			}
			e = shmp_segment_unlink(argv[i]);
		}
		res[i].error = e;
		if (e < 0) {
			fprintf(stderr, "shmp: rm %s: %s\n", esc(argv[i]),
				e == -ENOENT ? "no such segment" : shmp_strerror(e));
			rc = 1;
		} else if (!json) {
			printf("removed %s (owner %s)\n", esc(argv[i]),
			       res[i].known ? owner_text(res[i].uid) : "unknown");
		}
	}
	if (json) {
		int n = 0;
		printf("{\"removed\":[");
		for (int i = 0; i < argc; i++) {
			if (res[i].error < 0)
				continue;
			printf("%s{\"name\":", n++ ? "," : "");
			json_str(argv[i]);
			if (res[i].known) {
				printf(",");
				owner_json(res[i].uid);
			}
			printf("}");
		}
		printf("],\"failed\":[");
		n = 0;
		for (int i = 0; i < argc; i++) {
			if (res[i].error >= 0)
				continue;
			printf("%s{\"name\":", n++ ? "," : "");
			json_str(argv[i]);
			printf(",\"error\":");
			json_str(res[i].error == -ENOENT ? "no such segment" : shmp_strerror(res[i].error));
			printf("}");
		}
		printf("]}\n");
	}
	free(res);
	return rc;
}

/* One stale segment, as gc reports it. */
static void gc_item_json(const struct shmp_segment_info *si, uid_t uid, bool first, const char *extra)
{
	printf("%s{\"name\":", first ? "" : ",");
	json_str(si->name);
	printf(",\"creator_pid\":%d,\"size\":%" PRIu64 ",", (int)si->creator_pid, si->size);
	owner_json(uid);
	printf("%s}", extra);
}

/* Stale segments: the caller's own, or everyone's with --all-users (the
 * kernel still decides what the caller may unlink). Others' stale ones are
 * listed as kept, never touched. Persistent segments are never stale. */
static int cmd_gc(bool force, bool all_users)
{
	char **names;
	int n = list_names(&names);
	if (n < 0) {
		fprintf(stderr, "shmp: %s: %s\n", SHM_DIR, strerror(-n));
		return 1;
	}
	uid_t me = geteuid();
	int rc = 0, found = 0, kept = 0;
	/* JSON: what gc acts on in "stale", other users' in "other_users" (a
	 * second walk would judge again: keep them aside instead). */
	struct shmp_segment_info *others = NULL;
	uid_t *others_uid = NULL;
	if (json)
		printf("{\"dry_run\":%s,\"all_users\":%s,\"stale\":[", force ? "false" : "true",
		       all_users ? "true" : "false");
	for (int i = 0; i < n; i++) {
		struct shmp_segment_info si;
		struct stat before, after;
		char path[sizeof SHM_DIR + sizeof PREFIX + SHMP_SEGMENT_NAME_MAX + 2];
		snprintf(path, sizeof path, SHM_DIR "/" PREFIX "%s", names[i]);
		if (lstat(path, &before) < 0 || shmp_segment_inspect(names[i], &si) < 0 || !si.valid || !si.stale)
			continue;
		char sz[16];
		human_size(si.size, sz, sizeof sz);
		if (before.st_uid != me && !all_users) {
			if (json) {
				struct shmp_segment_info *no = realloc(others, (size_t)(kept + 1) * sizeof *no);
				uid_t *nu = no ? realloc(others_uid, (size_t)(kept + 1) * sizeof *nu) : NULL;
				if (no)
					others = no;
				if (!nu)
					continue; /* out of memory: left out of the list, and kept anyway */
				others_uid = nu;
				others[kept] = si;
				others_uid[kept] = before.st_uid;
			} else {
				printf("kept %s (creator pid %d dead, no users, %s, owner %s): not yours, "
				       "--all-users includes it\n",
				       esc(si.name), (int)si.creator_pid, sz, owner_text(before.st_uid));
			}
			kept++;
			continue;
		}
		int e = 0;
		/* Only the file that was judged stale: not one made since under
		 * its name, nor one that changed hands. */
		if (force && (lstat(path, &after) < 0 || after.st_ino != before.st_ino || after.st_dev != before.st_dev ||
			      after.st_uid != before.st_uid))
			continue;
		if (force)
			e = shmp_segment_unlink(si.name);
		if (e < 0)
			rc = 1;
		if (json) {
			gc_item_json(&si, before.st_uid, !found, force && !e ? ",\"removed\":true" : ",\"removed\":false");
		} else {
			printf("%s %s (creator pid %d dead, no users, %s, owner %s)%s%s\n",
			       force ? (e ? "failed" : "removed") : "stale", esc(si.name), (int)si.creator_pid, sz,
			       owner_text(before.st_uid), e ? ": " : "", e ? shmp_strerror(e) : "");
		}
		found++;
	}
	if (json) {
		printf("],\"other_users\":[");
		for (int k = 0; k < kept && others; k++)
			gc_item_json(&others[k], others_uid[k], !k, ",\"removed\":false");
		printf("]}\n");
	} else if (!found) {
		printf(kept ? "no stale segments of yours\n" : "no stale segments\n");
	} else if (!force) {
		printf("(dry run: shmp gc --force%s removes %s)\n", all_users ? " --all-users" : "",
		       found == 1 ? "it" : "them");
	}
	free(others);
	free(others_uid);
	free_names(names, n);
	return rc;
}

/* ---- arguments ------------------------------------------------------------------ */

/* COUNT: a whole number from 1, in decimal digits only: "", "-1", "0",
 * "0x10", " 5", "5s" and numbers past LONG_MAX are not counts. */
static bool parse_count(const char *s, long *out)
{
	if (!*s)
		return false;
	for (const char *p = s; *p; p++)
		if (*p < '0' || *p > '9')
			return false;
	errno = 0;
	char *end;
	long v = strtol(s, &end, 10);
	if (errno || *end || v < 1)
		return false;
	*out = v;
	return true;
}

/* SECONDS: a finite decimal number (digits, a point, an exponent: "0.5",
 * "2", "1e-1") from lo to hi. strtod alone would also take "nan", "inf",
 * "0x1p-4", leading blanks and signs. */
static bool parse_seconds(const char *s, double lo, double hi, double *out)
{
	if (!((*s >= '0' && *s <= '9') || *s == '.'))
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' || *p == 'E' || *p == '+' || *p == '-'))
			return false;
	errno = 0;
	char *end;
	double v = strtod(s, &end);
	if (errno || *end || !isfinite(v) || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

static int usage(FILE *f, int rc)
{
	fprintf(f, "usage: shmp [--json] ls\n"
		   "       shmp [--json] show NAME\n"
		   "       shmp [--json] top NAME [-n COUNT] [-i SECONDS]\n"
		   "       shmp [--json] rm NAME...\n"
		   "       shmp [--json] gc [--force] [--all-users]\n"
		   "COUNT is a whole number from 1 (default: until interrupted); SECONDS a\n"
		   "decimal number from 0.01 to 3600 (default 1).\n");
	return rc;
}

/* A bad argument: what was wrong, then the usage; exit status 2. */
static int bad_arg(const char *what, const char *arg)
{
	fprintf(stderr, "shmp: %s, not \"%s\"\n", what, esc(arg));
	return usage(stderr, 2);
}

int main(int argc, char **argv)
{
	/* --json may come anywhere; take it out first. */
	int n = 0;
	for (int i = 0; i < argc; i++) {
		if (i && strcmp(argv[i], "--json") == 0)
			json = true;
		else
			argv[n++] = argv[i];
	}
	argc = n;
	if (argc < 2)
		return usage(stderr, 2);
	const char *cmd = argv[1];
	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help"))
		return usage(stdout, 0);
	if (!strcmp(cmd, "ls") && argc == 2)
		return cmd_ls();
	if (!strcmp(cmd, "show") && argc == 3)
		return show_once(argv[2]);
	if (!strcmp(cmd, "rm") && argc >= 3)
		return cmd_rm(argc - 2, argv + 2);
	if (!strcmp(cmd, "gc")) {
		bool force = false, all_users = false;
		for (int i = 2; i < argc; i++) {
			if (!strcmp(argv[i], "--force"))
				force = true;
			else if (!strcmp(argv[i], "--all-users"))
				all_users = true;
			else
				return usage(stderr, 2);
		}
		return cmd_gc(force, all_users);
	}
	if (!strcmp(cmd, "top") && argc >= 3) {
		long count = 0; /* until interrupted */
		double interval = 1.0;
		int c;
		optind = 3;
		opterr = 1;
		while ((c = getopt(argc, argv, "n:i:")) != -1) {
			if (c == 'n' && !parse_count(optarg, &count))
				return bad_arg("top: -n COUNT must be a whole number from 1", optarg);
			if (c == 'i' && !parse_seconds(optarg, 0.01, 3600, &interval))
				return bad_arg("top: -i SECONDS must be a decimal number from 0.01 to 3600", optarg);
			if (c != 'n' && c != 'i')
				return usage(stderr, 2);
		}
		if (optind != argc)
			return usage(stderr, 2);
		return cmd_top(argv[2], count, interval);
	}
	return usage(stderr, 2);
}
