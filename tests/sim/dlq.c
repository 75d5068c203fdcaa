/* dlq: dlq.h over a simulated dead-letter topic. A copy is acknowledged
 * 1-20 ms of sim time after it was added; now and then a produce attempt
 * fails and is retried after a backoff, as the real one retries. The
 * scheduler sees every copy added (sim_on_dead_letter). */
#include <stdint.h>
#include <stdlib.h>

#include "dlq.h"
#include "sim.h"
#include "sim_dlq.h"

sim_dead_letter_hook_t *sim_on_dead_letter;

typedef struct {
        uint64_t tag;
        int64_t at_us;
        int forgotten;
} copy_t;

struct krib_dlq {
        copy_t *q;
        size_t n, cap;
        unsigned long acked, failures;
};

krib_dlq_t *krib_dlq_new(const krib_conf_t *conf, char *errstr, size_t errstr_size) {
        (void)conf;
        (void)errstr;
        (void)errstr_size;
        krib_dlq_t *d = calloc(1, sizeof(*d));
        if (!d)
                abort();
        return d;
}

int krib_dlq_add(krib_dlq_t *d, const rd_kafka_message_t *m, const char *stage,
                 const char *error_class, const char *message, uint64_t tag) {
        if (d->n == d->cap) {
                d->cap = d->cap ? 2 * d->cap : 64;
                d->q = realloc(d->q, d->cap * sizeof(*d->q));
                if (!d->q)
                        abort();
        }
        d->q[d->n++] = (copy_t){tag, krib_sim_now_us + 1000 + (int64_t)sim_below(19000), 0};
        if (sim_on_dead_letter)
                sim_on_dead_letter(m->partition, m->offset, stage, error_class, message);
        return 0;
}

size_t krib_dlq_poll(krib_dlq_t *d, krib_dlq_acked_cb *acked, void *opaque) {
        size_t keep = 0;
        for (size_t i = 0; i < d->n; i++) {
                copy_t c = d->q[i];
                if (c.at_us > krib_sim_now_us) {
                        d->q[keep++] = c;
                        continue;
                }
                if (sim_chance(50000)) { /* the broker refused it: again later */
                        d->failures++;
                        c.at_us = krib_sim_now_us + 5000 + (int64_t)sim_below(50000);
                        d->q[keep++] = c;
                        continue;
                }
                d->acked++;
                if (!c.forgotten)
                        acked(opaque, c.tag);
        }
        d->n = keep;
        return d->n;
}

int64_t krib_dlq_due_us(const krib_dlq_t *d) {
        int64_t due = INT64_MAX;
        for (size_t i = 0; i < d->n; i++)
                if (d->q[i].at_us < due)
                        due = d->q[i].at_us;
        return due;
}

void krib_dlq_forget(krib_dlq_t *d) {
        for (size_t i = 0; i < d->n; i++)
                d->q[i].forgotten = 1;
}

unsigned long krib_dlq_acked(const krib_dlq_t *d) {
        return d->acked;
}

unsigned long krib_dlq_failures(const krib_dlq_t *d) {
        return d ? d->failures : 0;
}

void krib_dlq_destroy(krib_dlq_t *d) {
        if (!d)
                return;
        free(d->q);
        free(d);
}
