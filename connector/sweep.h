/* sweep: tag sweeps — invalidate every key matching a pattern, without KEYS.
 *
 * A TAG event (or a route with action "sweep") names glob patterns
 * (`user:{42}:*`, `session:*`). Each pattern is walked with SCAN MATCH: only
 * on the master owning the pattern's slot when the pattern carries a literal
 * hash tag (every matching key lives in that slot), else on every master. The
 * keys found are UNLINKed through the writer (batched per slot, redirects and
 * retries included).
 *
 * Work is bounded: krib_sweeps_step() does one SCAN (COUNT redis.sweep_count)
 * and its UNLINKs per active sweep, and the pipeline calls it between
 * batches, so a sweep of millions of keys never holds normal traffic back.
 * The TAG event's offset is finished only when its last pattern is done; a
 * transient failure restarts the pattern from cursor 0 (UNLINK is
 * idempotent), after a backoff. What cannot succeed does not pin the
 * partition: a node that refuses SCAN for good (NOPERM) three times in a row
 * has its part skipped, keys Redis refuses to unlink are counted, and such a
 * sweep ends "incomplete" (logged as an error, counted in metrics). Owned by
 * the pipeline thread.
 */
#ifndef KRIB_SWEEP_H
#define KRIB_SWEEP_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "writer.h"

typedef struct krib_sweeps krib_sweeps_t;

/* fences: also sweep the fence keys of matching keys (redis.fence =
 * versioned): a fill's lease lives in the fence key of a key that is not
 * cached, which no SCAN of the keys finds, and a sweep must void it as an
 * invalidation's UNLINK does. In the other modes fences outlive their
 * values on purpose and are left alone. */
krib_sweeps_t *krib_sweeps_new(krib_writer_t *w, long scan_count, int fences);

/* The slot every key matching pattern lives in, or -1 (no literal hash tag,
 * or glob characters before or inside it). Pure. */
int krib_sweep_pattern_slot(const char *pattern, size_t len);

/* Starts sweeping patterns[0..n) for the record at topic/partition/offset. */
int krib_sweeps_add(krib_sweeps_t *s, const krib_str_t *patterns, size_t n, const char *topic,
                    int32_t partition, int64_t offset);

size_t krib_sweeps_active(const krib_sweeps_t *s);

typedef void(krib_sweep_done_cb)(void *opaque, const char *topic, int32_t partition,
                                 int64_t offset);

/* One bounded step of every active sweep; done() for each that finished.
 * Returns -1 when the writer was interrupted by shutdown, else 0. */
int krib_sweeps_step(krib_sweeps_t *s, krib_sweep_done_cb *done, void *opaque);

/* Forgets sweeps of a revoked partition (the next owner re-reads them). */
void krib_sweeps_drop(krib_sweeps_t *s, const char *topic, int32_t partition);

/* Keys unlinked and sweeps finished, ever. */
uint64_t krib_sweeps_keys(const krib_sweeps_t *s);
uint64_t krib_sweeps_finished(const krib_sweeps_t *s);
/* Keys Redis refused to unlink, and sweeps that ended incomplete, ever. */
uint64_t krib_sweeps_keys_failed(const krib_sweeps_t *s);
uint64_t krib_sweeps_incomplete(const krib_sweeps_t *s);

void krib_sweeps_destroy(krib_sweeps_t *s);

#endif
