/* inspect: `krib inspect`, krib measuring its own staleness (Uber's Cache
 * Inspector, Meta's Polaris, for a Kafka -> Redis bridge).
 *
 * A second consumer of the same topics (group "<kafka.group_id>.inspect")
 * holds each event until ts_ms + delay, for every inspect.delays_ms, then
 * reads its keys in Redis (EXISTS key, GET fence key; pipelined per master,
 * on connections of its own, within inspect.budget_per_s commands) and
 * judges them (consistency.h): fresh, stale or unverifiable. A key that a
 * later event, itself due at that delay, changed again is judged with that
 * later event. Counters, the nines per delay over inspect.window_s and a
 * log line per stale key are its output; its offsets are stored once an
 * event was checked at every delay.
 *
 * Owns its consumer, its Redis connections and its metrics server; runs on
 * the calling thread until *stop, or, with until_end, until it read to the
 * end of the topics as of its start (SIGUSR1 through *mark_end: as of then)
 * and checked everything at every delay.
 */
#ifndef KRIB_INSPECT_H
#define KRIB_INSPECT_H

#include <signal.h>

#include "conf.h"

typedef struct {
        int until_end; /* stop at the end of the topics as of the start */
        int report;    /* print the summary line on stdout at the end */
} krib_inspect_opts_t;

/* Returns the process exit status: 0, 1 when a key was stale at the longest
 * delay (report mode), 2 on a start-up error. mark_end: set by SIGUSR1. */
int krib_inspect_run(const krib_conf_t *conf, const krib_inspect_opts_t *o,
                     volatile sig_atomic_t *stop, volatile sig_atomic_t *mark_end);

#endif
