/* offsets: per-partition commit watermark (pure, no I/O).
 *
 * Every consumed offset is tracked until it is finished (its Redis work was
 * acknowledged, it was dropped as stale, or it was dead-lettered / rejected
 * with a logged error). The committable offset of a partition is one past
 * the longest finished prefix: it never moves backwards and never passes an
 * unfinished offset, whatever order offsets finish in.
 *
 * Partitions are identified by (topic, partition); topic strings are copied.
 */
#ifndef KRIB_OFFSETS_H
#define KRIB_OFFSETS_H

#include <stddef.h>
#include <stdint.h>

typedef struct krib_offsets krib_offsets_t;

/* Caller frees with krib_offsets_destroy(). NULL on allocation failure. */
krib_offsets_t *krib_offsets_new(void);
void krib_offsets_destroy(krib_offsets_t *o);

/* Starts tracking offset. Offsets of one partition must be tracked in
 * increasing order; a lower or repeated offset (a redelivery: an earlier
 * delivery of it was tracked already) is refused with -2 until the
 * partition is forgotten; -1 when out of memory. */
int krib_offsets_track(krib_offsets_t *o, const char *topic, int32_t partition, int64_t offset);

/* Marks a tracked offset finished. Returns -1 if it was not in flight. */
int krib_offsets_finish(krib_offsets_t *o, const char *topic, int32_t partition, int64_t offset);

/* The offset to commit (next to consume) or -1 when no offset finished yet
 * since the partition was first tracked. */
int64_t krib_offsets_committable(const krib_offsets_t *o, const char *topic, int32_t partition);

/* Offsets tracked and not yet finished, over all partitions. */
size_t krib_offsets_in_flight(const krib_offsets_t *o);

/* Offsets tracked and not yet committable, over all partitions: the
 * unfinished ones and the finished ones behind an unfinished one (what the
 * tracker holds in memory, and what a restart would read again). */
size_t krib_offsets_held(const krib_offsets_t *o);

/* Drops all state of a partition (revoked or lost). */
void krib_offsets_forget(krib_offsets_t *o, const char *topic, int32_t partition);

/* Iterates partitions whose committable offset changed since the last call
 * to krib_offsets_take_dirty() returned them. Returns 0 at the end. */
int krib_offsets_take_dirty(krib_offsets_t *o, size_t *cursor, const char **topic,
                            int32_t *partition, int64_t *offset);

#endif
