#include "hist.h"

#include <string.h>

void krib_hist_reset(krib_hist_t *h) {
        memset(h, 0, sizeof(*h));
}

void krib_hist_add(krib_hist_t *h, int64_t ms) {
        if (ms < 0)
                ms = 0;
        if (ms > h->max)
                h->max = ms;
        h->bucket[ms > KRIB_HIST_MAX_MS ? KRIB_HIST_MAX_MS + 1 : ms]++;
        h->count++;
        h->sum = h->sum > INT64_MAX - ms ? INT64_MAX : h->sum + ms; /* hostile ts_ms saturates */
}

void krib_hist_add_since(krib_hist_t *h, int64_t now_ms, int64_t since_ms) {
        int64_t d;
        if (__builtin_sub_overflow(now_ms, since_ms, &d))
                d = since_ms < 0 ? INT64_MAX : 0;
        krib_hist_add(h, d);
}

int64_t krib_hist_quantile(const krib_hist_t *h, double q) {
        if (!h->count)
                return -1;
        uint64_t want = (uint64_t)(q * (double)h->count + 0.999999);
        if (want < 1)
                want = 1;
        uint64_t seen = 0;
        for (int64_t v = 0; v <= KRIB_HIST_MAX_MS; v++) {
                seen += h->bucket[v];
                if (seen >= want)
                        return v;
        }
        return KRIB_HIST_MAX_MS;
}
