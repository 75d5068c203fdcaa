/* clock: monotonic and wall time in one place. */
#ifndef KRIB_CLOCK_H
#define KRIB_CLOCK_H

#include <stdint.h>
#include <time.h>

#ifdef KRIB_SIM
/* The deterministic simulation (tests/sim) owns time. */
extern int64_t krib_sim_now_us;
static inline int64_t krib_clock_mono_us(void) {
        return krib_sim_now_us;
}
#else
static inline int64_t krib_clock_mono_us(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
#endif

static inline int64_t krib_clock_wall_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
