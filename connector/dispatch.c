#include "dispatch.h"

int64_t krib_dispatch_linger_due_us(int64_t opened_us, int64_t linger_ms, size_t free_slots,
                                    size_t slots) {
        if (!free_slots)
                return INT64_MAX;
        int64_t base = linger_ms * 1000, linger = base;
        if (free_slots >= slots / 2)
                return opened_us + linger;
        if (linger < 1000)
                linger = 1000;
        for (size_t f = free_slots; f < slots / 2 && linger < KRIB_DISPATCH_SCARCE_MAX_US; f *= 2)
                linger *= 2;
        if (linger > KRIB_DISPATCH_SCARCE_MAX_US && base < KRIB_DISPATCH_SCARCE_MAX_US)
                linger = KRIB_DISPATCH_SCARCE_MAX_US;
        if (linger < base)
                linger = base;
        return opened_us + linger;
}
