/* private: the pool's side of the task table (tasktab.c) — what a task
 * carries for its worker (its function; where each side of its data is:
 * in place, by reference, copied inline or through the arena) and what its
 * collection delivers (results copied back to the call, an imap chunk
 * made ready, the call told that one more of its tasks is over).
 *
 * Crash safety: whatever the shared record says, a task is delivered once
 * (the table claims its collection on the private shadow), and what is
 * delivered — to which call, which items, from which block — comes from
 * the shadow; only the outcome and the results themselves come from shared
 * memory, validated (results outside the arena or the call's array are
 * reported -SHMP_ECORRUPT). A block is freed by its shadow, once. */
#include "pool_internal.h"

#include <stdlib.h>

#define ALIGN16(x) (((x) + 15) & ~(size_t)15)

static uint64_t fn_offset(shmp_task_fn fn)
{
	/* A distance between two code addresses, not a pointer: it means the
	 * same thing in every process forked from this one. */
	return (uint64_t)((uintptr_t)fn - (uintptr_t)&shmp_pool_create);
}

/* ---- what a task carries ---------------------------------------------- */

void shmp__place_call(struct shmp_pool *p, struct shmp_async *c, bool refs, struct shmp__place *pl)
{
	memset(pl, 0, sizeof *pl);
	bool local = p->wops->shares_memory;
	pl->in = !c->in_size ? PLACE_NONE : local ? PLACE_LOCAL : PLACE_COPY;
	pl->out = !c->out_size ? PLACE_NONE : local ? PLACE_LOCAL : PLACE_COPY;
	if (!refs || local)
		return;
	if (c->in && c->in_size && c->n != SIZE_MAX &&
	    shmp__maps_find(c->in, c->n * c->in_size, p->map_serial, &pl->in_ser, &pl->in_off))
		pl->in = PLACE_REF;
	if (c->out && c->out_size && c->kind == CALL_MAP &&
	    shmp__maps_find(c->out, c->n * c->out_size, p->map_serial, &pl->out_ser, &pl->out_off))
		pl->out = PLACE_REF;
}

int shmp__check_item_room(struct shmp_pool *p, size_t in_copy, size_t out_copy)
{
	size_t need = ALIGN16(in_copy) + out_copy;
	if (need <= p->tt.inline_size)
		return 0;
	return ((need + 63) & ~(size_t)63) <= p->arena.size ? 0 : -SHMP_ESEGFULL;
}

int shmp__task_submit(struct shmp_pool *p, struct shmp_async *c, const struct shmp__place *pl, uint64_t first,
		      size_t count, uint32_t flags, struct shmp__imap_slot *slot, const char *gen,
		      const struct shmp__deadline *d, uint64_t *seq_out)
{
	struct shmp__desc in = { 0 }, out = { 0 };
	size_t in_copy = 0, out_copy = 0;
	const char *in_src = NULL;
	if (pl->in == PLACE_NONE) {
		in.kind = SHMP__DESC_NONE;
	} else if (gen) {
		in_copy = count * c->in_size;
		in_src = gen;
	} else if (pl->in == PLACE_LOCAL) {
		in = (struct shmp__desc){ .kind = SHMP__DESC_LOCAL, .b = first * c->in_size };
	} else if (pl->in == PLACE_REF) {
		in = (struct shmp__desc){ .kind = SHMP__DESC_REF, .a = pl->in_ser, .b = pl->in_off + first * c->in_size };
	} else {
		in_copy = count * c->in_size;
		in_src = c->in + first * c->in_size;
	}
	if (pl->out == PLACE_NONE) {
		out.kind = SHMP__DESC_NONE;
	} else if (slot) {
		out = (struct shmp__desc){ .kind = SHMP__DESC_SEG, .a = slot->buf_off };
	} else if (pl->out == PLACE_LOCAL) {
		out = (struct shmp__desc){ .kind = SHMP__DESC_LOCAL,
					   .b = c->kind == CALL_APPLY ? 0 : first * c->out_size };
	} else if (pl->out == PLACE_REF) {
		out = (struct shmp__desc){ .kind = SHMP__DESC_REF, .a = pl->out_ser,
					   .b = pl->out_off + first * c->out_size };
	} else {
		out_copy = count * c->out_size;
	}
	/* Copied bytes go inline in the record when they fit, else in a block
	 * of the arena, filled before the record is taken. */
	size_t need = ALIGN16(in_copy) + out_copy;
	uint64_t block = 0;
	bool inline_ok = need <= p->tt.inline_size;
	if (need && !inline_ok) {
		int r = shmp__arena_alloc_wait(p, need, true, d, &block);
		if (r < 0)
			return r;
		if (in_copy)
			memcpy(p->dseg->base + block, in_src, in_copy);
	}
	uint32_t desc_kind = inline_ok ? SHMP__DESC_INLINE : SHMP__DESC_SEG;
	if (in_copy)
		in = (struct shmp__desc){ .kind = desc_kind, .a = block };
	if (out_copy)
		out = (struct shmp__desc){ .kind = desc_kind, .a = block + ALIGN16(in_copy) };
	struct shmp__task t = { .call = c->slot, .call_gen = c->gen, .first = first, .count = (uint32_t)count,
				.flags = flags, .fn = fn_offset(c->fn), .in_size = (uint32_t)c->in_size,
				.out_size = (uint32_t)c->out_size, .in = in, .out = out,
				.notify_off = slot ? c->it->notify_off : 0 };
	struct shmp__task_priv priv = {
		.call = c->slot, .call_gen = c->gen, .block = block, .block_len = block ? need : 0,
		.out_at = (uint32_t)ALIGN16(in_copy),
		.out_where = !out_copy ? SHMP__OUT_INPLACE : inline_ok ? SHMP__OUT_INLINE : SHMP__OUT_BLOCK
	};
	pthread_mutex_lock(&p->submit_mu);
	uint64_t seq;
	int r = shmp__tt_reserve(&p->tt, d, shmp__pool_on_supervisor(p), &seq);
	if (r < 0) {
		pthread_mutex_unlock(&p->submit_mu);
		if (block)
			shmp__arena_free(&p->arena, block, need, true);
		return r;
	}
	atomic_fetch_add_explicit(&c->pending, 1, memory_order_relaxed);
	shmp__tt_publish(&p->tt, seq, &t, &priv, in_src, in_copy && inline_ok ? in_copy : 0);
	pthread_mutex_unlock(&p->submit_mu);
	shmp__tt_wake_workers(&p->tt);
	if (seq_out)
		*seq_out = seq;
	return 0;
}

/* ---- what its collection delivers (the table's ops) ---------------------- */

static void deliver_to(struct shmp_pool *p, struct shmp_async *c, const struct shmp__shadow *s,
		       const char *payload, const struct shmp_task_error *e)
{
	if (c->kind == CALL_IMAP) {
		struct shmp_imap *it = c->it;
		uint64_t chunk = c->chunksize ? s->first / c->chunksize : 0;
		struct shmp__imap_slot *sl = &it->slots[chunk % it->window];
		if (sl->chunk == chunk && atomic_load_explicit(&sl->state, memory_order_relaxed) == SLOT_BUSY) {
			sl->err = e->error ? *e : (struct shmp_task_error){ 0 };
			atomic_store_explicit(&sl->state, SLOT_READY, memory_order_release);
		}
		return;
	}
	if (e->error) {
		shmp__call_note_error(c, e);
		return;
	}
	if (!c->out || s->priv.out_where == SHMP__OUT_INPLACE)
		return; /* written in place */
	size_t bytes = (size_t)s->count * c->out_size;
	const char *src = s->priv.out_where == SHMP__OUT_INLINE ? payload + s->priv.out_at
								: arena_ptr(p, s->priv.block + s->priv.out_at, bytes);
	if (src && s->first <= c->n && s->count <= c->n - s->first)
		memcpy(c->out + s->first * c->out_size, src, bytes);
	else
		shmp__call_note_error(c, &(struct shmp_task_error){ .error = -SHMP_ECORRUPT, .index = s->first,
								     .exit_status = -1 });
}

static void *tt_deliver(void *owner, struct shmp__shadow *s, const char *payload, const struct shmp_task_error *e)
{
	struct shmp_pool *p = owner;
	struct shmp_async *c = shmp__call_lookup(p, s->priv.call, s->priv.call_gen);
	if (c)
		deliver_to(p, c, s, payload, e);
	if (s->priv.block) {
		shmp__arena_free(&p->arena, s->priv.block, s->priv.block_len, true);
		s->priv.block = 0;
	}
	return c;
}

static void tt_collected(void *owner, void *call, bool supervisor)
{
	(void)owner;
	shmp__call_task_done(call, supervisor);
}

static bool tt_caller_left(void *owner, const struct shmp__shadow *s)
{
	struct shmp_async *c = shmp__call_lookup(owner, s->priv.call, s->priv.call_gen);
	return !c || atomic_load_explicit(&c->abandoned, memory_order_acquire);
}

static pid_t tt_worker_pid(void *owner, unsigned w)
{
	struct shmp_pool *p = owner;
	return w < (unsigned)p->nworkers ? atomic_load_explicit(&p->wp[w].pid, memory_order_relaxed) : 0;
}

static int tt_wait_error(void *owner)
{
	return shmp__pool_wait_error(owner);
}

const struct shmp__tt_ops shmp__pool_tt_ops = {
	.deliver = tt_deliver,
	.collected = tt_collected,
	.caller_left = tt_caller_left,
	.worker_pid = tt_worker_pid,
	.wait_error = tt_wait_error,
};
