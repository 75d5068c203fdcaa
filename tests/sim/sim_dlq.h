/* sim_dlq: what the simulated dead-letter topic (dlq.c) tells the
 * scheduler: every copy krib produces, with the record it copies. */
#ifndef KRIB_SIM_DLQ_H
#define KRIB_SIM_DLQ_H

#include <stdint.h>

typedef void(sim_dead_letter_hook_t)(int32_t partition, int64_t offset, const char *stage,
                                     const char *error_class, const char *message);
extern sim_dead_letter_hook_t *sim_on_dead_letter;

#endif
