/* retry: capped exponential backoff with full jitter (pure).
 *
 * delay = uniform(0, min(cap, base * 2^attempt)). Full jitter spreads the
 * retries of many clients after a shared failure (a failover, a restart), so
 * they do not arrive at a recovering node in one wave.
 */
#ifndef KRIB_RETRY_H
#define KRIB_RETRY_H

#include <stdint.h>

/* rnd: any uniformly distributed 64-bit value (the caller's PRNG). */
int64_t krib_retry_backoff_us(unsigned attempt, int64_t base_us, int64_t cap_us, uint64_t rnd);

/* xorshift64*: a small PRNG for jitter; state must start non-zero. */
uint64_t krib_retry_rand(uint64_t *state);

#endif
