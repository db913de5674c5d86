/* shmp — Python's multiprocessing for C, on shared memory. Umbrella header. */
#ifndef SHMP_H
#define SHMP_H

#include "shmp/common.h"
#include "shmp/segment.h"
#include "shmp/sync.h"
#include "shmp/value.h"
#include "shmp/process.h"
#include "shmp/ring.h"
#include "shmp/queue.h"
#include "shmp/registry.h"
#include "shmp/pool.h"
#include "shmp/pipeline.h"

#endif
