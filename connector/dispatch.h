/* dispatch: when the pipeline's open batch goes to Redis (pure).
 *
 * The loop sends the open batch at once when nothing is being written,
 * when it is full, at the in-flight bound, or when no batch slot is free;
 * otherwise after it lingered. How long it lingers depends on the free
 * batch slots: at least half free, pipeline.linger_ms; fewer, the linger
 * doubles for each halving (from 1 ms when linger_ms is 0), up to
 * KRIB_DISPATCH_SCARCE_MAX_US unless linger_ms itself is longer. Batches
 * waiting for one frozen master keep their slots (each batch has keys on
 * every master): lingering longer makes the slots left last for seconds of
 * the healthy masters' work instead of a fraction of one. The loop waits
 * for exactly this deadline, so a deadline the dispatch refuses can never
 * turn the wait into a busy loop.
 */
#ifndef KRIB_DISPATCH_H
#define KRIB_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

#define KRIB_DISPATCH_SCARCE_MAX_US 100000

/* The moment (µs, same clock as opened_us) the open batch may go on
 * lingering alone; INT64_MAX with no free slot (then only a full batch,
 * the in-flight bound or the end of the writing sends it). */
int64_t krib_dispatch_linger_due_us(int64_t opened_us, int64_t linger_ms, size_t free_slots,
                                    size_t slots);

#endif
