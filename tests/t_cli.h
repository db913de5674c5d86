/* Helpers for the tests of the real `shmp` command (t_cli, t_cli_gc): run a
 * command with a timeout and capture its stdout, stderr and exit status; a
 * strict little JSON parser to read --json output (and, where python3 is
 * installed, a second opinion from Python's json module); the segments a
 * test made, unlinked on every path. */
#ifndef SHMP_T_CLI_H
#define SHMP_T_CLI_H

#include "t.h"

#include <fcntl.h>
#include <pwd.h>
#include <sched.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>

/* ---- running a command ---------------------------------------------------- */

struct run {
	int code;          /* exit status (a command killed by a signal fails the test) */
	char *out, *err;   /* NUL-terminated */
	size_t outlen, errlen;
	double secs;       /* wall time */
	int noexec;        /* argv[0] could not be executed (then code is 127) */
	char cmd[512];     /* the command line, for messages */
};

static const char *cli_path;    /* $SHMP_CLI */
/* Seconds a run of the command may take (it takes well under one). */
static double cli_timeout = 15;
/* Printed if a command times out. A FIFO named shmp.* (the fuzz tests make
 * some) blocks a command that opens it without O_NONBLOCK. */
static const char *hang_hint = "is there a FIFO named shmp.* in /dev/shm? opening one without O_NONBLOCK blocks";
static const struct run *last;  /* dumped when a check fails */

static inline void run_dump(const struct run *r)
{
	if (!r)
		return;
	fprintf(stderr, "--- last command: %s\n--- exit %d after %.3f s; stdout:\n%s--- stderr:\n%s---\n",
		r->cmd, r->code, r->secs, r->out ? r->out : "", r->err ? r->err : "");
}

/* A check about a command's output: on failure show what it printed. */
#define C_CHECK(cond)                                                              \
	do {                                                                       \
		if (!(cond)) {                                                     \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			run_dump(last);                                            \
			exit(1);                                                   \
		}                                                                  \
	} while (0)

#define C_EQ(a, b)                                                                 \
	do {                                                                       \
		long long c_a_ = (long long)(a), c_b_ = (long long)(b);            \
		if (c_a_ != c_b_) {                                                \
			fprintf(stderr, "%s:%d: %s == %s failed: %lld vs %lld\n", __FILE__, \
				__LINE__, #a, #b, c_a_, c_b_);                     \
			run_dump(last);                                            \
			exit(1);                                                   \
		}                                                                  \
	} while (0)

#define C_STREQ(a, b)                                                              \
	do {                                                                       \
		const char *c_a_ = (a), *c_b_ = (b);                               \
		if (!c_a_ || !c_b_ || strcmp(c_a_, c_b_) != 0) {                   \
			fprintf(stderr, "%s:%d: %s == %s failed:\n  got  \"%s\"\n  want \"%s\"\n", \
				__FILE__, __LINE__, #a, #b, c_a_ ? c_a_ : "(null)", \
				c_b_ ? c_b_ : "(null)");                           \
			run_dump(last);                                            \
			exit(1);                                                   \
		}                                                                  \
	} while (0)

static inline void buf_add(char **b, size_t *len, size_t *cap, const char *p, size_t n)
{
	if (*len + n + 1 > *cap) {
		size_t c = *cap ? *cap : 4096;
		while (*len + n + 1 > c)
			c *= 2;
		char *nb = realloc(*b, c);
		T_CHECK(nb);
		*b = nb;
		*cap = c;
	}
	memcpy(*b + *len, p, n);
	*len += n;
	(*b)[*len] = 0;
}

static inline void run_free(struct run *r)
{
	if (last == r)
		last = NULL;
	free(r->out);
	free(r->err);
	memset(r, 0, sizeof *r);
}

/* Run argv (argv[0] found through PATH) with `in` (may be NULL) on its stdin,
 * and wait for it at most `timeout` seconds: past that it is SIGKILLed and
 * the test fails. Frees what r held. */
static inline void run_argv(struct run *r, char *const argv[], const char *in, size_t inlen, double timeout)
{
	run_free(r);
	size_t pos = 0;
	for (int i = 0; argv[i] && pos + 2 < sizeof r->cmd; i++)
		pos += (size_t)snprintf(r->cmd + pos, sizeof r->cmd - pos, "%s%s", i ? " " : "", argv[i]);
	int po[2], pe[2], pi[2], px[2]; /* stdout, stderr, stdin, exec failure */
	T_EQ(pipe2(po, O_CLOEXEC), 0);
	T_EQ(pipe2(pe, O_CLOEXEC), 0);
	T_EQ(pipe2(pi, O_CLOEXEC), 0);
	T_EQ(pipe2(px, O_CLOEXEC), 0);
	fflush(NULL);
	double t0 = t_now();
	pid_t pid = fork();
	T_CHECK(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (dup2(pi[0], 0) < 0 || dup2(po[1], 1) < 0 || dup2(pe[1], 2) < 0)
			_exit(126);
		execvp(argv[0], argv);
		int e = errno;
		if (write(px[1], &e, sizeof e) < 0)
			_exit(126);
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	close(pi[0]);
	close(px[1]);
	/* A command that exits without reading all its input must not kill us. */
	void (*old_pipe)(int) = signal(SIGPIPE, SIG_IGN);
	if (!in || !inlen) {
		close(pi[1]);
		pi[1] = -1;
	} else {
		fcntl(pi[1], F_SETFL, O_NONBLOCK);
	}
	size_t ocap = 0, ecap = 0, inpos = 0;
	buf_add(&r->out, &r->outlen, &ocap, "", 0);
	buf_add(&r->err, &r->errlen, &ecap, "", 0);
	int open_fds = 2;
	double until = t0 + timeout;
	while (open_fds > 0) {
		struct pollfd p[3] = { { po[0], POLLIN, 0 }, { pe[0], POLLIN, 0 }, { pi[1], POLLOUT, 0 } };
		int ms = (int)((until - t_now()) * 1000);
		if (ms <= 0) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			r->code = -1;
			r->secs = t_now() - t0;
			fprintf(stderr, "command did not finish in %.1f s (killed): %s\n", timeout, r->cmd);
			if (hang_hint)
				fprintf(stderr, "(%s)\n", hang_hint);
			run_dump(r);
			exit(1);
		}
		int n = poll(p, pi[1] >= 0 ? 3 : 2, ms);
		if (n < 0 && errno == EINTR)
			continue;
		T_CHECK(n >= 0);
		char b[4096];
		for (int k = 0; k < 2; k++) {
			if (p[k].fd < 0 || !(p[k].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			ssize_t got = read(p[k].fd, b, sizeof b);
			if (got < 0 && errno == EINTR)
				continue;
			if (got <= 0) {
				close(p[k].fd);
				*(k ? &pe[0] : &po[0]) = -1;
				open_fds--;
			} else if (k == 0) {
				buf_add(&r->out, &r->outlen, &ocap, b, (size_t)got);
			} else {
				buf_add(&r->err, &r->errlen, &ecap, b, (size_t)got);
			}
		}
		if (pi[1] >= 0 && (p[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
			ssize_t w = write(pi[1], in + inpos, inlen - inpos);
			if (w > 0)
				inpos += (size_t)w;
			if ((w < 0 && errno != EAGAIN && errno != EINTR) || inpos == inlen) {
				close(pi[1]);
				pi[1] = -1;
			}
		}
	}
	if (pi[1] >= 0)
		close(pi[1]);
	signal(SIGPIPE, old_pipe);
	int st = t_wait(pid, until - t_now() > 1 ? until - t_now() : 1);
	r->secs = t_now() - t0;
	int e = 0;
	r->noexec = read(px[0], &e, sizeof e) == (ssize_t)sizeof e;
	close(px[0]);
	last = r;
	if (!WIFEXITED(st)) {
		fprintf(stderr, "command killed by signal %d: %s\n", WTERMSIG(st), r->cmd);
		run_dump(r);
		exit(1);
	}
	r->code = WEXITSTATUS(st);
}

/* Run the shmp command with the arguments in args (NULL-terminated); return
 * its exit status. */
static inline int cli_v(struct run *r, const char *const *args)
{
	char *argv[16];
	int n = 0;
	argv[n++] = (char *)cli_path;
	for (; *args; args++) {
		T_CHECK(n < 15);
		argv[n++] = (char *)*args;
	}
	argv[n] = NULL;
	run_argv(r, argv, NULL, 0, cli_timeout);
	C_CHECK(!r->noexec);
	return r->code;
}

/* The same with the arguments listed (NULL-terminated). */
static inline int cli(struct run *r, ...)
{
	const char *args[16];
	int n = 0;
	va_list ap;
	va_start(ap, r);
	for (const char *a; (a = va_arg(ap, const char *)) != NULL;) {
		T_CHECK(n < 15);
		args[n++] = a;
	}
	va_end(ap);
	args[n] = NULL;
	return cli_v(r, args);
}

/* $SHMP_CLI, or skip the test (77) if it is not there. */
static inline void cli_init(void)
{
	cli_path = getenv("SHMP_CLI");
	if (!cli_path || !*cli_path || access(cli_path, X_OK) != 0) {
		fprintf(stderr, "SHMP_CLI is not set to the shmp command (run through ctest): skipped\n");
		exit(T_SKIP);
	}
}

/* Is `needle` somewhere in s? */
static inline int has(const char *s, const char *needle)
{
	return s && strstr(s, needle) != NULL;
}

/* Occurrences of needle in s. */
static inline int count_of(const char *s, const char *needle)
{
	int n = 0;
	for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

/* The line of s that starts with `prefix` (copied into buf without its
 * newline), or NULL. */
static inline const char *line_starting(const char *s, const char *prefix, char *buf, size_t cap)
{
	size_t pl = strlen(prefix);
	for (const char *p = s; p && *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		if (len >= pl && memcmp(p, prefix, pl) == 0) {
			if (len >= cap)
				len = cap - 1;
			memcpy(buf, p, len);
			buf[len] = 0;
			return buf;
		}
		p = nl ? nl + 1 : NULL;
	}
	return NULL;
}

/* ---- a strict JSON parser (RFC 8259, enough for the command's output) ----- */

enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

struct jv {
	int t;
	int b;           /* J_BOOL */
	long long i;     /* J_NUM, when is_int */
	int is_int;
	double d;        /* J_NUM */
	char *s;         /* J_STR (decoded) */
	int n;           /* J_ARR, J_OBJ: items */
	struct jv *v;    /* items */
	char **k;        /* J_OBJ: keys */
};

struct jp {
	const char *p, *end;
	int depth;
};

static inline void jskip(struct jp *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

static inline int jhex(struct jp *j, unsigned *u)
{
	*u = 0;
	for (int i = 0; i < 4; i++, j->p++) {
		if (j->p >= j->end)
			return -1;
		char c = *j->p;
		unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0') :
			     c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10) :
			     c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10) : 99u;
		if (d > 15)
			return -1;
		*u = *u * 16 + d;
	}
	return 0;
}

static inline int jstring(struct jp *j, char **out)
{
	char *b = NULL;
	size_t len = 0, cap = 0;
	if (j->p >= j->end || *j->p != '"')
		return -1;
	j->p++;
	for (;;) {
		if (j->p >= j->end)
			goto bad;
		unsigned char c = (unsigned char)*j->p++;
		if (c == '"')
			break;
		if (c < 0x20)
			goto bad; /* raw control characters are not allowed */
		if (c != '\\') {
			buf_add(&b, &len, &cap, (const char *)&c, 1);
			continue;
		}
		if (j->p >= j->end)
			goto bad;
		char e = *j->p++, o;
		switch (e) {
		case '"': o = '"'; break;
		case '\\': o = '\\'; break;
		case '/': o = '/'; break;
		case 'b': o = '\b'; break;
		case 'f': o = '\f'; break;
		case 'n': o = '\n'; break;
		case 'r': o = '\r'; break;
		case 't': o = '\t'; break;
		case 'u': {
			unsigned u;
			if (jhex(j, &u) < 0)
				goto bad;
			char enc[3];
			size_t n;
			if (u < 0x80) {
				enc[0] = (char)u;
				n = 1;
			} else if (u < 0x800) {
				enc[0] = (char)(0xc0 | (u >> 6));
				enc[1] = (char)(0x80 | (u & 0x3f));
				n = 2;
			} else {
				enc[0] = (char)(0xe0 | (u >> 12));
				enc[1] = (char)(0x80 | ((u >> 6) & 0x3f));
				enc[2] = (char)(0x80 | (u & 0x3f));
				n = 3;
			}
			buf_add(&b, &len, &cap, enc, n);
			continue;
		}
		default:
			goto bad;
		}
		buf_add(&b, &len, &cap, &o, 1);
	}
	buf_add(&b, &len, &cap, "", 0);
	*out = b;
	return 0;
bad:
	free(b);
	return -1;
}

static inline int jdigits(struct jp *j)
{
	const char *s = j->p;
	while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
		j->p++;
	return j->p > s ? 0 : -1;
}

static inline int jnumber(struct jp *j, struct jv *v)
{
	const char *s = j->p;
	int is_int = 1;
	if (j->p < j->end && *j->p == '-')
		j->p++;
	if (j->p < j->end && *j->p == '0')
		j->p++;
	else if (jdigits(j) < 0)
		return -1;
	if (j->p < j->end && *j->p == '.') {
		j->p++;
		is_int = 0;
		if (jdigits(j) < 0)
			return -1;
	}
	if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
		j->p++;
		is_int = 0;
		if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
			j->p++;
		if (jdigits(j) < 0)
			return -1;
	}
	char tmp[64];
	size_t n = (size_t)(j->p - s);
	if (n >= sizeof tmp)
		return -1;
	memcpy(tmp, s, n);
	tmp[n] = 0;
	v->t = J_NUM;
	v->is_int = is_int;
	v->d = strtod(tmp, NULL);
	v->i = is_int ? strtoll(tmp, NULL, 10) : (long long)v->d;
	return 0;
}

static inline void jfree(struct jv *v);

static inline int jvalue(struct jp *j, struct jv *v)
{
	memset(v, 0, sizeof *v);
	jskip(j);
	if (j->p >= j->end || ++j->depth > 64)
		return -1;
	int r = -1;
	char c = *j->p;
	if (c == '{' || c == '[') {
		int obj = c == '{';
		char close_c = obj ? '}' : ']';
		v->t = obj ? J_OBJ : J_ARR;
		j->p++;
		jskip(j);
		if (j->p < j->end && *j->p == close_c) {
			j->p++;
			r = 0;
			goto out;
		}
		for (;;) {
			char *key = NULL;
			if (obj) {
				jskip(j);
				if (jstring(j, &key) < 0)
					goto out;
				jskip(j);
				if (j->p >= j->end || *j->p != ':') {
					free(key);
					goto out;
				}
				j->p++;
			}
			struct jv *nv = realloc(v->v, (size_t)(v->n + 1) * sizeof *nv);
			char **nk = obj ? realloc(v->k, (size_t)(v->n + 1) * sizeof *nk) : NULL;
			T_CHECK(nv && (!obj || nk));
			v->v = nv;
			if (obj) {
				v->k = nk;
				v->k[v->n] = key;
			}
			v->n++;
			if (jvalue(j, &v->v[v->n - 1]) < 0)
				goto out;
			jskip(j);
			if (j->p < j->end && *j->p == ',') {
				j->p++;
				continue;
			}
			if (j->p < j->end && *j->p == close_c) {
				j->p++;
				r = 0;
			}
			goto out;
		}
	} else if (c == '"') {
		v->t = J_STR;
		r = jstring(j, &v->s);
	} else if (c == '-' || (c >= '0' && c <= '9')) {
		r = jnumber(j, v);
	} else {
		static const struct { const char *w; int t, b; } lit[] = {
			{ "true", J_BOOL, 1 }, { "false", J_BOOL, 0 }, { "null", J_NULL, 0 } };
		for (size_t i = 0; i < 3; i++) {
			size_t n = strlen(lit[i].w);
			if ((size_t)(j->end - j->p) >= n && memcmp(j->p, lit[i].w, n) == 0) {
				j->p += n;
				v->t = lit[i].t;
				v->b = lit[i].b;
				r = 0;
				break;
			}
		}
	}
out:
	j->depth--;
	return r;
}

static inline void jfree(struct jv *v)
{
	if (!v)
		return;
	for (int i = 0; i < v->n; i++) {
		jfree(&v->v[i]);
		if (v->k)
			free(v->k[i]);
	}
	free(v->v);
	free(v->k);
	free(v->s);
	memset(v, 0, sizeof *v);
}

/* Is s[0..n) well-formed UTF-8 (RFC 3629: no overlong forms, surrogates or
 * code points past U+10FFFF)? JSON text must be (RFC 8259 section 8.1).
 * Written apart from the command's own decoder, on purpose. */
static inline int utf8_ok(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s, *e = p + n;
	while (p < e) {
		unsigned c = *p;
		size_t len;
		unsigned min, cp;
		if (c < 0x80) {
			p++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			len = 2, min = 0x80, cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			len = 3, min = 0x800, cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			len = 4, min = 0x10000, cp = c & 0x07;
		} else {
			return 0;
		}
		if ((size_t)(e - p) < len)
			return 0;
		for (size_t i = 1; i < len; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (p[i] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		p += len;
	}
	return 1;
}

/* Every JSON text the tests parsed, one per line, for python3 at the end. */
static char *json_all;
static size_t json_all_len, json_all_cap;

/* Parse exactly one JSON value filling s[0..n) (whitespace around allowed);
 * any syntax error fails the test, and so do duplicate keys and text that
 * is not UTF-8. */
static inline void jparse(const char *s, size_t n, struct jv *out)
{
	if (!utf8_ok(s, n)) {
		fprintf(stderr, "JSON text is not valid UTF-8:\n%.*s\n", (int)n, s);
		run_dump(last);
		exit(1);
	}
	struct jp j = { s, s + n, 0 };
	int r = jvalue(&j, out);
	if (r == 0) {
		jskip(&j);
		r = j.p == j.end ? 0 : -1;
	}
	if (r < 0) {
		fprintf(stderr, "invalid JSON at byte %ld of:\n%.*s\n", (long)(j.p - s), (int)n, s);
		run_dump(last);
		exit(1);
	}
	if (out->t == J_OBJ)
		for (int a = 0; a < out->n; a++)
			for (int b = a + 1; b < out->n; b++)
				C_CHECK(strcmp(out->k[a], out->k[b]) != 0);
	/* One document per line for python3 (the command prints one line). */
	const char *nl = memchr(s, '\n', n);
	C_CHECK(!nl || nl == s + n - 1);
	buf_add(&json_all, &json_all_len, &json_all_cap, s, n);
	if (!n || s[n - 1] != '\n')
		buf_add(&json_all, &json_all_len, &json_all_cap, "\n", 1);
}

/* Member `key` of object o, or NULL. */
static inline const struct jv *jget(const struct jv *o, const char *key)
{
	if (!o || o->t != J_OBJ)
		return NULL;
	for (int i = 0; i < o->n; i++)
		if (strcmp(o->k[i], key) == 0)
			return &o->v[i];
	return NULL;
}

static inline const struct jv *jget_t(const struct jv *o, const char *key, int t, const char *file, int line)
{
	const struct jv *v = jget(o, key);
	if (!v || v->t != t) {
		fprintf(stderr, "%s:%d: JSON member \"%s\" %s\n", file, line, key,
			v ? "has the wrong type" : "is missing");
		run_dump(last);
		exit(1);
	}
	return v;
}

/* Members that must be there, of the right type. */
#define JINT(o, key) (jget_int(o, key, __FILE__, __LINE__))
#define JSTR(o, key) (jget_t(o, key, J_STR, __FILE__, __LINE__)->s)
#define JBOOL(o, key) (jget_t(o, key, J_BOOL, __FILE__, __LINE__)->b)
#define JARR(o, key) (jget_t(o, key, J_ARR, __FILE__, __LINE__))
#define JOBJ(o, key) (jget_t(o, key, J_OBJ, __FILE__, __LINE__))

static inline long long jget_int(const struct jv *o, const char *key, const char *file, int line)
{
	const struct jv *v = jget_t(o, key, J_NUM, file, line);
	if (!v->is_int) {
		fprintf(stderr, "%s:%d: JSON member \"%s\" is not an integer\n", file, line, key);
		run_dump(last);
		exit(1);
	}
	return v->i;
}

/* The object of array a whose string member `key` is `val`, or NULL (more
 * than one fails the test). */
static inline const struct jv *jfind(const struct jv *a, const char *key, const char *val)
{
	const struct jv *hit = NULL;
	C_CHECK(a && a->t == J_ARR);
	for (int i = 0; i < a->n; i++) {
		const struct jv *s = jget(&a->v[i], key);
		if (s && s->t == J_STR && strcmp(s->s, val) == 0) {
			C_CHECK(!hit);
			hit = &a->v[i];
		}
	}
	return hit;
}

/* Every JSON text parsed so far, through Python's json module too; skipped
 * (with a note) where python3 is not installed. */
static inline void json_python_check(void)
{
	if (!json_all_len)
		return;
	char *argv[] = { "python3", "-c",
			 "import json,sys\n"
			 "n=0\n"
			 "for l in sys.stdin.buffer:\n"
			 "    json.loads(l.decode('utf-8', 'strict')); n+=1\n"
			 "print(n)\n",
			 NULL };
	struct run r = { 0 };
	hang_hint = NULL;
	run_argv(&r, argv, json_all, json_all_len, 60);
	if (r.noexec || r.code == 127) {
		fprintf(stderr, "python3 not available: JSON checked by the test's own parser only\n");
		run_free(&r);
		return;
	}
	C_EQ(r.code, 0);
	C_EQ(atoi(r.out), count_of(json_all, "\n"));
	run_free(&r);
}

/* ---- segments made by the test -------------------------------------------- */

#define CLI_MAX_SEGS 32

static struct {
	pid_t owner;
	int n;
	char name[CLI_MAX_SEGS][128];
} segs;

/* Unlink every tracked name (at exit, in the process that tracked them). */
static inline void segs_cleanup(void)
{
	if (segs.owner != getpid())
		return;
	for (int i = 0; i < segs.n; i++)
		shmp_segment_unlink(segs.name[i]);
	segs.n = 0;
}

/* Remember a segment name to unlink at exit, whatever happens. */
static inline const char *track(const char *name)
{
	if (segs.owner != getpid()) { /* inherited: not ours */
		segs.owner = getpid();
		segs.n = 0;
		atexit(segs_cleanup);
	}
	T_CHECK(segs.n < CLI_MAX_SEGS);
	snprintf(segs.name[segs.n], sizeof segs.name[0], "%s", name);
	return segs.name[segs.n++];
}

/* Does /dev/shm/shmp.<name> exist? */
static inline int seg_file_exists(const char *name)
{
	char p[300];
	struct stat st;
	snprintf(p, sizeof p, "/dev/shm/shmp.%s", name);
	return lstat(p, &st) == 0;
}

/* Write /dev/shm/shmp.<name> holding `size` bytes: the first n from b, the
 * rest zero (a segment file that no shmp process made). */
static inline void write_seg_file(const char *name, const void *b, size_t n, size_t size)
{
	char p[300];
	snprintf(p, sizeof p, "/dev/shm/shmp.%s", name);
	int fd = open(p, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600);
	T_CHECK(fd >= 0);
	T_EQ(ftruncate(fd, (off_t)size), 0);
	if (n)
		T_EQ(pwrite(fd, b, n, 0), (ssize_t)n);
	close(fd);
}

/* The columns of `shmp ls` for one segment. */
struct ls_row {
	char name[256], size[16], used[16], owner[64], alive[8], objects[16], state[16];
	int creator;
	unsigned attach, users;
};

/* Find name's row in `shmp ls` output; 1 if found. */
static inline int ls_row(const char *out, const char *name, struct ls_row *row)
{
	char line[1024];
	for (const char *p = out; p && *p;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);
		if (len < sizeof line) {
			memcpy(line, p, len);
			line[len] = 0;
			if (sscanf(line, "%255s %15s %15s %63s %d %7s %u %u %15s %15s", row->name, row->size,
				   row->used, row->owner, &row->creator, row->alive, &row->attach, &row->users,
				   row->objects, row->state) == 10 &&
			    strcmp(row->name, name) == 0)
				return 1;
		}
		p = nl ? nl + 1 : NULL;
	}
	return 0;
}

/* ---- a private /dev/shm ------------------------------------------------------ */

static inline int write_proc_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, s, strlen(s));
	int e = n == (ssize_t)strlen(s) ? 0 : -errno;
	close(fd);
	return e;
}

/* Move this (single-threaded) process into a mount namespace of its own,
 * with a fresh tmpfs on /dev/shm that no other process sees (a user
 * namespace too where that is what allows it, if allow_userns: there no
 * other uid exists). 0 or -errno. */
static inline int private_shm_ex(int allow_userns)
{
	uid_t uid = geteuid();
	gid_t gid = getegid();
	if (unshare(CLONE_NEWNS) != 0) {
		if (errno != EPERM || !allow_userns)
			return -errno;
		if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0)
			return -errno;
		char map[64];
		int e = write_proc_file("/proc/self/setgroups", "deny");
		if (e < 0 && e != -ENOENT)
			return e;
		snprintf(map, sizeof map, "0 %u 1", (unsigned)uid);
		if ((e = write_proc_file("/proc/self/uid_map", map)) < 0)
			return e;
		snprintf(map, sizeof map, "0 %u 1", (unsigned)gid);
		if ((e = write_proc_file("/proc/self/gid_map", map)) < 0)
			return e;
	}
	/* Private propagation first: the tmpfs must not show up outside. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
		return -errno;
	if (mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") != 0)
		return -errno;
	return 0;
}

static inline int private_shm(void)
{
	return private_shm_ex(1);
}

/* ---- owners ---------------------------------------------------------------- */

/* How the command names an owner: "root (uid 0)", the uid alone when the
 * user has no name. */
static inline const char *owner_of(uid_t uid)
{
	static char b[300];
	struct passwd *pw = getpwuid(uid);
	if (pw && pw->pw_name && *pw->pw_name)
		snprintf(b, sizeof b, "%s (uid %u)", pw->pw_name, (unsigned)uid);
	else
		snprintf(b, sizeof b, "%u (uid %u)", (unsigned)uid, (unsigned)uid);
	return b;
}

/* The same, the name alone (the OWNER column of ls, JSON's "owner"). */
static inline const char *user_of(uid_t uid)
{
	static char b[300];
	struct passwd *pw = getpwuid(uid);
	snprintf(b, sizeof b, "%s", pw && pw->pw_name && *pw->pw_name ? pw->pw_name : "");
	if (!*b)
		snprintf(b, sizeof b, "%u", (unsigned)uid);
	return b;
}

/* ---- output a terminal can take --------------------------------------------- */

/* Every byte of s[0..n) is printable ASCII or a newline: no ESC, BEL, DEL,
 * no byte from 0x80 (what would reach the terminal of whoever looks). */
static inline void printable_only(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c != '\n' && (c < 0x20 || c > 0x7e)) {
			fprintf(stderr, "byte 0x%02x at offset %zu of the output is not printable\n", c, i);
			run_dump(last);
			exit(1);
		}
	}
}

/* ---- a hostile writer ----------------------------------------------------------- */

/* Rewrite a name field in segment `seg`'s file, as anyone who may write
 * the segment can: the one place holding `old` (with its NUL) gets the n
 * bytes of `bytes`, zero-filled to `field` bytes. Registry names are
 * validated on the way in, so this is the only way to plant such bytes. */
static inline void seg_rename(const char *seg, const char *old, size_t field, const void *bytes, size_t n)
{
	char p[300];
	snprintf(p, sizeof p, "/dev/shm/shmp.%s", seg);
	int fd = open(p, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	T_CHECK(fd >= 0);
	struct stat st;
	T_EQ(fstat(fd, &st), 0);
	unsigned char *m = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	T_CHECK(m != MAP_FAILED);
	close(fd);
	size_t ol = strlen(old) + 1;
	T_CHECK(n < field && ol <= field);
	unsigned char *hit = NULL;
	for (unsigned char *q = m; (q = memmem(q, (size_t)st.st_size - (size_t)(q - m), old, ol)); q++) {
		T_CHECK(!hit); /* exactly one */
		hit = q;
	}
	T_CHECK(hit && hit + field <= m + st.st_size);
	memset(hit, 0, field);
	memcpy(hit, bytes, n);
	munmap(m, (size_t)st.st_size);
}

#endif
