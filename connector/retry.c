#include "retry.h"

int64_t krib_retry_backoff_us(unsigned attempt, int64_t base_us, int64_t cap_us, uint64_t rnd) {
        int64_t ceil = base_us;
        for (unsigned i = 0; i < attempt && ceil < cap_us; i++)
                ceil *= 2;
        if (ceil > cap_us)
                ceil = cap_us;
        if (ceil <= 0)
                return 0;
        return (int64_t)(rnd % (uint64_t)(ceil + 1));
}

uint64_t krib_retry_rand(uint64_t *state) {
        uint64_t x = *state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *state = x;
        return x * 0x2545F4914F6CDD1DULL;
}
