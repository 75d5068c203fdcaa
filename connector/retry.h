/* retry: the one place that decides how Redis failures are retried (pure).
 *
 * Every failure falls in a class with its own policy: capped exponential
 * backoff with full jitter, plus a budget of consecutive failures after which
 * the circuit breaker (breaker.h) opens. Full jitter spreads the retries of
 * many clients after a shared failure (a failover, a restart), so they do not
 * arrive at a recovering node in one wave.
 *
 * Retrying is safe because every write krib sends is idempotent: UNLINK is,
 * and fenced writes are gated by version, so a repeat is refused as stale.
 */
#ifndef KRIB_RETRY_H
#define KRIB_RETRY_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
        KRIB_ERR_CONN = 0,     /* connect, read or write failed; timeout */
        KRIB_ERR_BUSY = 1,     /* TRYAGAIN CLUSTERDOWN LOADING MASTERDOWN BUSY READONLY NOSCRIPT */
        KRIB_ERR_REDIRECT = 2, /* MOVED/ASK rounds (a slot map in flux) */
        KRIB_ERR_OOM = 3,      /* maxmemory reached with noeviction */
        KRIB_ERR_AUTH = 4,     /* NOAUTH/WRONGPASS: credentials being rotated */
        KRIB_ERR_CLASSES = 5,
        KRIB_ERR_FINAL = -1, /* not retried: the reply is final for its keys */
} krib_err_class_t;

typedef struct {
        int64_t base_us, cap_us;
        unsigned free;   /* first attempts retried at once (redirects patch the map first) */
        unsigned budget; /* consecutive failures before the breaker opens (0: never) */
} krib_retry_policy_t;

typedef struct {
        krib_retry_policy_t cls[KRIB_ERR_CLASSES];
        /* An open breaker waits min(open_cap, open_base * 2^reopens), half of
         * it jittered, before it probes. */
        int64_t open_base_us, open_cap_us;
} krib_retry_policies_t;

/* Defaults for a node-local Redis; the writer overrides them from config. */
void krib_retry_policies_default(krib_retry_policies_t *p);

/* Class of an error reply ("-ERR ..." text without the dash). */
krib_err_class_t krib_retry_classify(const char *err, size_t len);

const char *krib_retry_class_name(krib_err_class_t c);

/* delay = uniform(0, min(cap, base * 2^attempt)). rnd: any uniformly
 * distributed 64-bit value (the caller's PRNG). */
int64_t krib_retry_backoff_us(unsigned attempt, int64_t base_us, int64_t cap_us, uint64_t rnd);

/* The wait before retry number attempt (0-based) of class c: 0 while
 * attempt < free, then the class's jittered backoff. */
int64_t krib_retry_delay_us(const krib_retry_policies_t *p, krib_err_class_t c, unsigned attempt,
                            uint64_t rnd);

/* xorshift64*: a small PRNG for jitter; state must start non-zero. */
uint64_t krib_retry_rand(uint64_t *state);

#endif
