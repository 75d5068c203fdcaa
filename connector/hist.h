/* hist: latency histogram with 1 ms resolution up to 60 s (pure).
 * Values above the range are counted in an overflow bucket; quantiles that
 * fall there report the range's bound. max and sum are exact. Not
 * thread-safe. */
#ifndef KRIB_HIST_H
#define KRIB_HIST_H

#include <stdint.h>

#define KRIB_HIST_MAX_MS 60000

typedef struct {
        uint32_t bucket[KRIB_HIST_MAX_MS + 2]; /* last: overflow */
        uint64_t count;
        int64_t max;
        int64_t sum;
} krib_hist_t;

void krib_hist_reset(krib_hist_t *h);

/* Negative values (clock skew between producer and krib) count as 0. */
void krib_hist_add(krib_hist_t *h, int64_t ms);

/* Adds now_ms - since_ms without overflow, whatever since_ms holds (an
 * event's ts_ms comes from the producer): a difference beyond int64 counts
 * as INT64_MAX (far past) or 0 (far future). */
void krib_hist_add_since(krib_hist_t *h, int64_t now_ms, int64_t since_ms);

/* Smallest value v such that at least q (0..1] of the samples are <= v;
 * -1 when empty. */
int64_t krib_hist_quantile(const krib_hist_t *h, double q);

#endif
