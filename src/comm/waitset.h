/* private: one wait for fds and a timeout (io_uring or ppoll). */
#ifndef SHMP_WAITSET_H
#define SHMP_WAITSET_H

#include "internal.h"

struct shmp__waitset;
/* io_uring when shmp_io_uring_available(), ppoll() otherwise. NULL on ENOMEM. */
struct shmp__waitset *shmp__waitset_new(void);
void shmp__waitset_free(struct shmp__waitset *w);
bool shmp__waitset_uring(const struct shmp__waitset *w);
/* Arm fd (POLLIN) under tag; re-arms an entry already reported. */
int shmp__waitset_add(struct shmp__waitset *w, int fd, uint64_t tag);
void shmp__waitset_del(struct shmp__waitset *w, uint64_t tag);
/* Wait up to timeout_ns (< 0: forever): the tags of ready fds (each then
 * disarmed) in tags[0..max); their number, 0 on timeout, -errno. */
int shmp__waitset_wait(struct shmp__waitset *w, long timeout_ns, uint64_t *tags, int max);
#endif
