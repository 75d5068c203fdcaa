/* consistency: what "stale" means, decided per key (docs/CONSISTENCY.md),
 * and the consistency figure in nines over a sliding window. Pure: the
 * inspector (inspect.h) feeds it what Redis holds.
 *
 * After a DELETE of version v a key is fresh when it is absent, or present
 * with a known version >= v (a guarded fill, a write-through, a fence);
 * present with an older, concurrent or no known version it is stale — or,
 * where applications fill without the guarded-fill library, unverifiable
 * when no version is known (counted apart, never as fresh). After an UPSERT
 * of version v: present with a version >= v, or absent (invalidated again
 * or never cached: krib's default fence mode updates cached values only).
 * Without a version in the event, a present key is unverifiable.
 */
#ifndef KRIB_CONSISTENCY_H
#define KRIB_CONSISTENCY_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"

typedef enum {
        KRIB_CHECK_FRESH = 0,
        KRIB_CHECK_STALE = 1,
        KRIB_CHECK_UNVERIFIABLE = 2,
} krib_check_verdict_t;

/* What Redis holds for one key: whether it exists, and its fence key's text
 * (NULL: no fence; "origin=counter" lines, or a fill's lease "L:<token>"). */
typedef struct {
        int present;
        const char *fence;
        size_t fence_len;
} krib_check_state_t;

/* Parses fence text into at most max entries pointing into it. Returns how
 * many, 0 for a lease, or -1 when it is not a version. */
int krib_consistency_parse_fence(const char *text, size_t len, krib_vv_entry_t *out, size_t max);

/* The verdict for a key after an event (action, version v of n entries).
 * guarded_fills: applications fill through krib_fill/krib_fill_leased.
 * why gets what Redis holds, for the log line of a stale key. */
krib_check_verdict_t krib_consistency_judge(krib_action_t action, const krib_vv_entry_t *v,
                                            size_t n, const krib_check_state_t *st,
                                            int guarded_fills, char *why, size_t why_size);

/* Checks and stale ones per second over a sliding window of w seconds. */
typedef struct {
        uint64_t *checked, *stale; /* rings of w slots */
        int64_t *second;           /* the second each slot holds */
        size_t w;
} krib_nines_t;

int krib_nines_init(krib_nines_t *n, size_t window_s);
void krib_nines_free(krib_nines_t *n);
void krib_nines_add(krib_nines_t *n, int64_t now_s, int stale);

/* Consistency over the window in nines: -log10(stale / checked); +inf
 * with checks and none stale; NaN without checks. */
double krib_nines_value(const krib_nines_t *n, int64_t now_s, uint64_t *checked, uint64_t *stale);

#endif
