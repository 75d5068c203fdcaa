/* reorder: drops events that are stale by entity version (pure, no I/O).
 *
 * Per (topic, partition) and entity, the version vector of the newest event
 * applied is remembered. A new event's vector compares to it as:
 *   dominated or equal -> STALE (dropped, counted; its offset still advances)
 *   dominates          -> APPLY
 *   concurrent         -> APPLY for DELETE/TAG; an UPSERT becomes INVALIDATE
 *                         (two concurrent writes cannot both be newest, so the
 *                         cache is emptied and fenced at the merged vector
 *                         instead of guessing a winner)
 * and the remembered vector becomes the merge (per-origin maximum).
 *
 * Memory is bounded by a capacity in entities; the least recently used entity
 * is forgotten first. Forgetting can only make a later stale event look new:
 * a DELETE then costs a needless invalidation, an UPSERT is still refused by
 * the version fence kept in Redis (see writer.h). It never drops a fresh event.
 * Events with an empty vector are unversioned: always applied, not recorded.
 */
#ifndef KRIB_REORDER_H
#define KRIB_REORDER_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"

typedef enum {
        KRIB_VV_EQUAL = 0,
        KRIB_VV_OLDER,     /* a is dominated by b */
        KRIB_VV_NEWER,     /* a dominates b */
        KRIB_VV_CONCURRENT /* each has an origin ahead of the other */
} krib_vv_order_t;

/* Compares vectors a and b; an origin missing from one side counts as 0.
 * Origins must be unique within each vector. */
krib_vv_order_t krib_vv_compare(const krib_vv_entry_t *a, size_t na, const krib_vv_entry_t *b,
                                size_t nb);

/* Per-origin maximum of a and b into *out, allocated in arena's arena (it
 * lives as long as that event's strings). -1 on allocation failure. */
int krib_vv_merge(krib_event_t *arena, const krib_vv_entry_t *a, size_t na,
                  const krib_vv_entry_t *b, size_t nb, krib_vv_entry_t **out, size_t *nout);

typedef enum {
        KRIB_REORDER_APPLY = 0,
        KRIB_REORDER_STALE,
        KRIB_REORDER_INVALIDATE,
} krib_reorder_verdict_t;

typedef struct krib_reorder krib_reorder_t;

typedef struct {
        uint64_t stale, concurrent, evictions;
        size_t entities;
} krib_reorder_stats_t;

/* capacity: most entities remembered over all partitions (>= 1). NULL on
 * allocation failure. Caller frees with krib_reorder_destroy(). */
krib_reorder_t *krib_reorder_new(size_t capacity);
void krib_reorder_destroy(krib_reorder_t *r);

/* Decides for ev, read from (topic, partition), and records its version
 * unless STALE. On CONCURRENT the merged vector replaces ev->version
 * (allocated in ev's arena), since that is the version to fence at. */
krib_reorder_verdict_t krib_reorder_decide(krib_reorder_t *r, const char *topic, int32_t partition,
                                           krib_event_t *ev);

/* Forgets every entity of a partition (revoked or lost). */
void krib_reorder_forget(krib_reorder_t *r, const char *topic, int32_t partition);

const krib_reorder_stats_t *krib_reorder_stats(const krib_reorder_t *r);

#endif
