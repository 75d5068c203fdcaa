/* sim: what the simulations share (sim.h): the seeded generator, the
 * simulated clock, byte buffers, the trace of recent actions and the
 * cluster/network faults. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

int64_t krib_sim_now_us = 1000000;
uint64_t sim_step_no;
int sim_failovers;
static uint64_t rng_state;

void sim_seed(uint64_t seed) {
        rng_state = seed * 0x9E3779B97F4A7C15ULL + 0x2545F4914F6CDD1DULL;
        if (!rng_state)
                rng_state = 1;
}

uint64_t sim_rand(void) {
        uint64_t x = rng_state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        rng_state = x;
        return x * 0x2545F4914F6CDD1DULL;
}

void sim_buf_put(sim_buf_t *b, const void *p, size_t n) {
        if (b->n + n + 1 > b->cap) {
                b->cap = (b->n + n + 1) * 2;
                b->p = realloc(b->p, b->cap);
                if (!b->p)
                        abort();
        }
        memcpy(b->p + b->n, p, n);
        b->n += n;
        b->p[b->n] = 0;
}

void sim_buf_printf(sim_buf_t *b, const char *fmt, ...) {
        char tmp[512];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
        va_end(ap);
        sim_buf_put(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* ---- the trace: the last actions, printed when an invariant breaks ---- */

#define TRACE_LINES 4096
static char trace[TRACE_LINES][160];
static uint64_t trace_n;

void sim_note(const char *fmt, ...) {
        char *l = trace[trace_n++ % TRACE_LINES];
        int o = snprintf(l, 160, "%8" PRIu64 " t=%.3fms ", sim_step_no,
                         (double)krib_sim_now_us / 1000.0);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(l + o, 160 - (size_t)o, fmt, ap);
        va_end(ap);
}

void sim_trace_reset(void) {
        trace_n = 0;
}

void sim_trace_print(uint64_t last) {
        uint64_t from = trace_n > last ? trace_n - last : 0;
        printf("  last %" PRIu64 " actions:\n", trace_n - from);
        for (uint64_t i = from; i < trace_n; i++)
                printf("  %s\n", trace[i % TRACE_LINES]);
}

/* ---- faults ---- */

void sim_faults_reset(void) {
        memset(&sim_faults, 0, sizeof(sim_faults));
        sim_faults.script_refused_node = -1;
        sim_faults_off();
}

void sim_faults_off(void) {
        sim_faults.err_ppm = 0;
        for (int n = 0; n < SIM_NODES; n++)
                sim_node[n] = (sim_node_state_t){0, 0};
        sim_net_delay_min_us = 50;
        sim_net_delay_max_us = 2000;
}

void sim_fault(void) {
        switch (sim_below(sim_failovers ? 8 : 7)) {
        case 7: {
                /* Not during a migration: its state is the masters'. */
                if (sim_cluster_migrating())
                        break;
                int n = (int)sim_below(SIM_NODES);
                sim_cluster_failover(n);
                sim_net_break_node(n);
                sim_node[n].down_until_us = krib_sim_now_us + (int64_t)sim_below(1000000);
                sim_note("fault failover node=%d (its replica takes over)", n);
                break;
        }
        case 0:
                sim_faults.err_ppm = sim_chance(500000) ? 0 : (unsigned)(10000 + sim_below(200000));
                sim_note("fault err_ppm=%u", sim_faults.err_ppm);
                break;
        case 1: {
                int n = (int)sim_below(SIM_NODES);
                sim_node[n].frozen_until_us = krib_sim_now_us + (int64_t)sim_below(3000000);
                sim_note("fault freeze node=%d for %.1fms", n,
                         (double)(sim_node[n].frozen_until_us - krib_sim_now_us) / 1000);
                break;
        }
        case 2: {
                int n = (int)sim_below(SIM_NODES);
                sim_node[n].down_until_us = krib_sim_now_us + (int64_t)sim_below(2000000);
                sim_note("fault refuse connects node=%d", n);
                break;
        }
        case 3:
                sim_note("fault cut connection node=%d", sim_net_break_one());
                break;
        case 4:
        case 5:
                sim_cluster_migrate_step();
                sim_note("fault migrate step (migrating=%d)", sim_cluster_migrating());
                break;
        default:
                sim_net_delay_min_us = 20 + (int64_t)sim_below(500);
                sim_net_delay_max_us = sim_net_delay_min_us +
                                       (int64_t)sim_below(sim_chance(200000) ? 300000 : 5000);
                sim_note("fault delay %" PRId64 "..%" PRId64 "us", sim_net_delay_min_us,
                         sim_net_delay_max_us);
                break;
        }
}
