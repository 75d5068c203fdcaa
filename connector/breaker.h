/* breaker: a circuit breaker for one Redis node or the whole cluster (pure).
 *
 *   CLOSED --(a class's failure budget spent, see retry.h)--> OPEN
 *   OPEN --(wait elapsed; the caller's probe answered well)--> HALF_OPEN
 *   HALF_OPEN --(next real reply good)--> CLOSED, --(any failure)--> OPEN
 *
 * While open, nothing is sent through it, so a dead or full node costs one
 * probe per open period instead of a retry loop; every reopen doubles the
 * period up to a cap. An OOM breaker still lets plain UNLINKs through:
 * they free memory and keep the cache from serving what was invalidated.
 * The owner (writer.c) probes, logs transitions and exports the counters.
 */
#ifndef KRIB_BREAKER_H
#define KRIB_BREAKER_H

#include <stdint.h>

#include "retry.h"

typedef enum {
        KRIB_BREAKER_CLOSED = 0,
        KRIB_BREAKER_OPEN = 1,
        KRIB_BREAKER_HALF_OPEN = 2,
} krib_breaker_state_t;

typedef struct {
        uint8_t state;                     /* krib_breaker_state_t */
        int8_t reason;                     /* class that opened it last */
        unsigned streak[KRIB_ERR_CLASSES]; /* consecutive failures per class */
        unsigned reopens;                  /* opens since it last closed */
        int64_t probe_at_us;
        uint64_t entered[3]; /* transitions into each state */
} krib_breaker_t;

void krib_breaker_init(krib_breaker_t *b);

/* Records a failure of class c at now. Returns 1 when the state changed. */
int krib_breaker_failure(krib_breaker_t *b, const krib_retry_policies_t *p, krib_err_class_t c,
                         int64_t now_us, uint64_t rnd);

/* Records a good reply. Returns 1 when the state changed (half-open: closed). */
int krib_breaker_success(krib_breaker_t *b);

/* Whether a command may go through now; fenced: a write (not a plain UNLINK). */
int krib_breaker_allows(const krib_breaker_t *b, int fenced);

/* Open and its wait is over: the owner should probe. */
int krib_breaker_probe_due(const krib_breaker_t *b, int64_t now_us);

/* Probe outcome: ok goes half-open, else open again for longer. Returns 1
 * when the state changed. */
int krib_breaker_probed(krib_breaker_t *b, const krib_retry_policies_t *p, int ok, int64_t now_us,
                        uint64_t rnd);

const char *krib_breaker_state_name(krib_breaker_state_t s);

#endif
