#include "breaker.h"

#include <string.h>

void krib_breaker_init(krib_breaker_t *b) {
        memset(b, 0, sizeof(*b));
        b->reason = KRIB_ERR_FINAL;
}

static void open_for(krib_breaker_t *b, const krib_retry_policies_t *p, int64_t now_us,
                     uint64_t rnd) {
        int64_t wait = p->open_base_us;
        for (unsigned i = 0; i < b->reopens && wait < p->open_cap_us; i++)
                wait *= 2;
        if (wait > p->open_cap_us)
                wait = p->open_cap_us;
        /* Half fixed, half jittered: a probe never comes right back. */
        int64_t half = wait / 2;
        b->probe_at_us = now_us + half + (half > 0 ? (int64_t)(rnd % (uint64_t)(half + 1)) : 0);
        b->reopens++;
        b->state = KRIB_BREAKER_OPEN;
        b->entered[KRIB_BREAKER_OPEN]++;
}

int krib_breaker_failure(krib_breaker_t *b, const krib_retry_policies_t *p, krib_err_class_t c,
                         int64_t now_us, uint64_t rnd) {
        if (c < 0 || c >= KRIB_ERR_CLASSES)
                return 0;
        b->streak[c]++;
        unsigned budget = p->cls[c].budget;
        /* A redirect is news about the slot map, not about the node's health. */
        int trip = (b->state == KRIB_BREAKER_HALF_OPEN && c != KRIB_ERR_REDIRECT) ||
                   (budget && b->streak[c] >= budget);
        if (!trip || b->state == KRIB_BREAKER_OPEN)
                return 0;
        b->reason = (int8_t)c;
        open_for(b, p, now_us, rnd);
        return 1;
}

int krib_breaker_success(krib_breaker_t *b) {
        memset(b->streak, 0, sizeof(b->streak));
        if (b->state != KRIB_BREAKER_HALF_OPEN)
                return 0;
        b->state = KRIB_BREAKER_CLOSED;
        b->entered[KRIB_BREAKER_CLOSED]++;
        b->reopens = 0;
        return 1;
}

int krib_breaker_allows(const krib_breaker_t *b, int fenced) {
        if (b->state != KRIB_BREAKER_OPEN)
                return 1;
        return b->reason == KRIB_ERR_OOM && !fenced;
}

int krib_breaker_probe_due(const krib_breaker_t *b, int64_t now_us) {
        return b->state == KRIB_BREAKER_OPEN && now_us >= b->probe_at_us;
}

int krib_breaker_probed(krib_breaker_t *b, const krib_retry_policies_t *p, int ok, int64_t now_us,
                        uint64_t rnd) {
        if (b->state != KRIB_BREAKER_OPEN)
                return 0;
        if (!ok) {
                b->entered[KRIB_BREAKER_OPEN]--; /* still the same open spell */
                open_for(b, p, now_us, rnd);
                return 0;
        }
        memset(b->streak, 0, sizeof(b->streak));
        b->state = KRIB_BREAKER_HALF_OPEN;
        b->entered[KRIB_BREAKER_HALF_OPEN]++;
        return 1;
}

const char *krib_breaker_state_name(krib_breaker_state_t s) {
        return s == KRIB_BREAKER_OPEN        ? "open"
               : s == KRIB_BREAKER_HALF_OPEN ? "half_open"
                                             : "closed";
}
