/* private: the pipeline's file stages.
 *
 * The source reserves a ring slot per block and has the kernel read the
 * file straight into it: io_uring READ_FIXED when the ring's slot array
 * could be registered (pinned) as a buffer, READ otherwise, and pread(2)
 * where io_uring is unavailable. `depth` reads are in flight at once; each
 * is committed when it completes (the ring keeps reservation order).
 *
 * The sink takes up to `depth` messages, writes them in order with linked
 * io_uring writes (WRITE_FIXED from registered slots where possible), and
 * releases them once written; write(2) without io_uring. A write that
 * fails (or makes no progress) is counted, per message not written, in the
 * pipeline's sink_errors with the first error code, which join() returns;
 * nothing is written after it. As a worker process the sink ignores
 * SIGPIPE, so that a reader gone is EPIPE, not a death. */
#include "pipeline_internal.h"

#include <fcntl.h>
#include <liburing.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/uio.h>

#define HDR sizeof(struct pl_hdr)

struct uring {
	struct io_uring ring;
	bool on;       /* io_uring in use */
	bool fixed;    /* the ring's slots are registered as buffer 0 */
	char *base;
	size_t len;
};

static void uring_init(struct uring *u, shmp_ring_t *r, unsigned depth)
{
	memset(u, 0, sizeof *u);
	if (!shmp_io_uring_available() || io_uring_queue_init(depth, &u->ring, 0) < 0)
		return;
	u->on = true;
	void *base;
	shmp__ring_slots(r, &base, &u->len);
	u->base = base;
	struct iovec iov = { base, u->len };
	/* Pins the pages: refused over RLIMIT_MEMLOCK or above 1 GiB. */
	u->fixed = u->len <= (1u << 30) && io_uring_register_buffers(&u->ring, &iov, 1) == 0;
}

static void uring_exit(struct uring *u)
{
	if (u->on)
		io_uring_queue_exit(&u->ring);
}

static bool in_fixed(const struct uring *u, const void *p, size_t n)
{
	const char *c = p;
	return u->fixed && c >= u->base && n <= u->len && (size_t)(c - u->base) <= u->len - n;
}

/* Wait for one completion: its user_data and result. */
static int reap(struct uring *u, uint64_t *tag, int *res)
{
	struct io_uring_cqe *cqe;
	int r;
	do
		r = io_uring_wait_cqe(&u->ring, &cqe);
	while (r == -EINTR);
	if (r < 0)
		return r;
	*tag = io_uring_cqe_get_data64(cqe);
	*res = cqe->res;
	io_uring_cqe_seen(&u->ring, cqe);
	return 0;
}

/* ---- source ------------------------------------------------------------- */

struct read_slot {
	struct shmp_ring_ticket t;
	struct pl_hdr h;
	size_t want;
	bool busy;
};

static void commit_block(shmp_pipeline_t *pl, shmp_ring_t *r, struct read_slot *s, ssize_t got)
{
	size_t n = got > 0 ? (size_t)got : 0;
	s->h.t0 = shmp__now_ns();
	memcpy(s->t.data, &s->h, HDR);
	atomic_fetch_add_explicit(&pl->sh->msgs_in, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&pl->sh->bytes_in, n, memory_order_relaxed);
	atomic_fetch_add_explicit(&pl->sh->stage[0].processed, 1, memory_order_relaxed);
	shmp_ring_commit(r, &s->t, HDR + n);
	s->busy = false;
}

/* Read one file into the ring: 0, or < 0 if the ring closed under us. */
static int read_file(shmp_pipeline_t *pl, shmp_ring_t *r, struct uring *u, struct read_slot *slots, int fd,
		     uint32_t file, uint64_t size)
{
	size_t bs = pl->block_size;
	uint64_t nblocks = size ? (size + bs - 1) / bs : 1; /* an empty file still sends its EOF */
	uint64_t next = 0, done = 0;
	int inflight = 0, err = 0;
	while (done < nblocks) {
		/* Fill the window. */
		while (!err && next < nblocks && inflight < (int)pl->depth) {
			int i = 0;
			while (slots[i].busy)
				i++;
			struct read_slot *s = &slots[i];
			uint64_t off = next * bs;
			s->want = size - off < bs ? (size_t)(size - off) : bs;
			if (size == 0)
				s->want = 0;
			/* While reads are out, never wait for room: the room may be
			 * behind our own uncommitted reservations. Submit and reap
			 * one instead. */
			int e = shmp_ring_reserve(r, HDR + bs, &s->t, inflight ? 0 : SHMP_FOREVER);
			if (e == -EINTR)
				continue; /* interruptible (inherited): try again */
			if (e == -ETIMEDOUT && inflight)
				break;
			if (e < 0) {
				err = e;
				break;
			}
			s->busy = true;
			s->h = (struct pl_hdr){ .seq = atomic_fetch_add(&pl->sh->seq_next, 1), .offset = off,
						.tag = file, .flags = next + 1 == nblocks ? SHMP_MSG_EOF : 0 };
			next++;
			char *dst = (char *)s->t.data + HDR;
			if (!u->on || s->want == 0) {
				ssize_t got = 0;
				while (s->want && (got = pread(fd, dst, s->want, (off_t)off)) < 0 && errno == EINTR)
					;
				commit_block(pl, r, s, got);
				done++;
				continue;
			}
			struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
			if (in_fixed(u, dst, s->want))
				io_uring_prep_read_fixed(sqe, fd, dst, (unsigned)s->want, off, 0);
			else
				io_uring_prep_read(sqe, fd, dst, (unsigned)s->want, off);
			io_uring_sqe_set_data64(sqe, (uint64_t)i);
			inflight++;
		}
		if (!inflight)
			break;
		io_uring_submit(&u->ring);
		uint64_t tag;
		int res;
		if (reap(u, &tag, &res) < 0 || tag >= pl->depth)
			return -EIO;
		inflight--;
		if (res < 0) /* the block goes on empty, and the failure is counted */
			atomic_fetch_add(&pl->sh->source_errors, 1);
		commit_block(pl, r, &slots[tag], res);
		done++;
	}
	return err;
}

int shmp__pl_file_source(shmp_pipeline_t *pl, int stage)
{
	shmp_ring_t *r = pl->ring[pl->st[stage].out_ring];
	struct uring u;
	uring_init(&u, r, pl->depth);
	struct read_slot *slots = calloc(pl->depth, sizeof *slots);
	if (!slots) {
		uring_exit(&u);
		return -ENOMEM;
	}
	int err = 0;
	for (unsigned f = 0; f < pl->npaths && !err; f++) {
		int fd = open(pl->paths[f], O_RDONLY | O_CLOEXEC);
		struct stat st;
		if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
			atomic_fetch_add(&pl->sh->source_errors, 1);
			if (fd >= 0)
				close(fd);
			continue;
		}
		err = read_file(pl, r, &u, slots, fd, f, (uint64_t)st.st_size);
		close(fd);
	}
	free(slots);
	uring_exit(&u);
	return err;
}

/* ---- sink --------------------------------------------------------------- */

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		if (w == 0)
			return -EIO; /* no progress and no errno to tell why */
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int shmp__pl_file_sink(shmp_pipeline_t *pl, int stage)
{
	struct pl_stage_sh *ss = &pl->sh->stage[stage];
	shmp_ring_t *r = pl->ring[pl->st[stage].in_ring];
	unsigned depth = 8;
	if (!pl->o.threads)
		signal(SIGPIPE, SIG_IGN); /* its own process: EPIPE instead */
	struct uring u;
	uring_init(&u, r, depth);
	struct shmp_ring_ticket t[8];
	int err = 0;
	for (;;) {
		unsigned n = 0;
		/* Wait for one, then take what else is there, up to depth. */
		int e = shmp_ring_peek(r, &t[n], SHMP_FOREVER);
		if (e == -EINTR)
			continue; /* interruptible (inherited): the sink goes on */
		if (e < 0)
			break;
		do {
			if (t[n].len >= HDR) {
				struct pl_hdr h;
				memcpy(&h, t[n].data, HDR);
				shmp__pl_record(pl->sh, h.t0, t[n].len - HDR);
			}
			atomic_fetch_add_explicit(&ss->processed, 1, memory_order_relaxed);
			n++;
		} while (n < depth && shmp_ring_peek(r, &t[n], 0) == 0);
		/* Messages whose bytes did not all reach the file: counted in
		 * stats.sink_errors, the first error kept for join(). After an
		 * error nothing more is written (the file would have a hole),
		 * but every message is still taken and counted. */
		unsigned bad = 0;
		if (err) {
			for (unsigned i = 0; i < n; i++)
				bad += t[i].len > HDR;
		} else if (u.on) {
			unsigned queued = 0;
			for (unsigned i = 0; i < n; i++) {
				if (t[i].len <= HDR)
					continue;
				struct io_uring_sqe *sqe = io_uring_get_sqe(&u.ring);
				char *src = (char *)t[i].data + HDR;
				unsigned len = (unsigned)(t[i].len - HDR);
				/* Offset -1: at the file position, in order (linked). */
				if (in_fixed(&u, src, len))
					io_uring_prep_write_fixed(sqe, pl->sink_fd, src, len, (uint64_t)-1, 0);
				else
					io_uring_prep_write(sqe, pl->sink_fd, src, len, (uint64_t)-1);
				io_uring_sqe_set_data64(sqe, i);
				sqe->flags |= IOSQE_IO_LINK;
				queued++;
			}
			if (queued)
				io_uring_submit(&u.ring);
			for (unsigned i = 0; i < queued; i++) {
				uint64_t tag;
				int res, e = 0;
				if (reap(&u, &tag, &res) < 0) {
					bad += queued - i;
					err = err ? err : -EIO;
					break;
				}
				if (tag >= n)
					continue;
				/* A short write breaks the link: finish by hand. */
				if (res >= 0 && (size_t)res < t[tag].len - HDR)
					e = err ? err : write_all(pl->sink_fd, (char *)t[tag].data + HDR + res,
								  t[tag].len - HDR - (size_t)res);
				else if (res == -ECANCELED) /* after a broken link: in order, by hand */
					e = err ? err : write_all(pl->sink_fd, (char *)t[tag].data + HDR, t[tag].len - HDR);
				else if (res < 0)
					e = res;
				if (e) {
					bad++;
					err = err ? err : e;
				}
			}
		} else {
			for (unsigned i = 0; i < n; i++) {
				if (t[i].len <= HDR)
					continue;
				int e = err ? err : write_all(pl->sink_fd, (char *)t[i].data + HDR, t[i].len - HDR);
				if (e) {
					bad++;
					err = err ? err : e;
				}
			}
		}
		if (bad) {
			int32_t none = 0;
			atomic_compare_exchange_strong(&pl->sh->sink_err, &none, -err);
			atomic_fetch_add_explicit(&pl->sh->sink_errors, bad, memory_order_relaxed);
		}
		for (unsigned i = 0; i < n; i++)
			shmp_ring_release(r, &t[i]);
	}
	uring_exit(&u);
	return err;
}
