#include "pipeline.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "consumer.h"
#include "decode.h"
#include "event.h"
#include "log.h"
#include "offsets.h"
#include "writer.h"

struct krib_pipeline {
        const krib_conf_t *conf;
        volatile sig_atomic_t *stop;
        krib_consumer_t *consumer;
        krib_decode_t *decode;
        krib_writer_t *writer;
        krib_offsets_t *offsets;

        size_t cap, n;
        rd_kafka_message_t **msgs;
        krib_event_t *events;
        uint8_t *live; /* 1: decoded and waiting for Redis */

        krib_wkey_t *keys;
        uint32_t *key_owner;
        uint8_t *key_status;
        size_t key_cap;

        int interrupted;
        krib_pipeline_stats_t stats;
        int64_t stats_at_us;
};

static int process_batch(krib_pipeline_t *p);

static void on_revoke(void *opaque, const rd_kafka_topic_partition_list_t *parts, int lost) {
        krib_pipeline_t *p = opaque;
        /* Finish what was read from these partitions while they are still
         * ours, so their offsets can be committed before another member
         * starts from them. */
        if (p->n && process_batch(p))
                p->interrupted = 1;
        (void)lost;
        for (int i = 0; i < parts->cnt; i++)
                krib_offsets_forget(p->offsets, parts->elems[i].topic, parts->elems[i].partition);
}

krib_pipeline_t *krib_pipeline_new(const krib_conf_t *conf, volatile sig_atomic_t *stop,
                                   char *errstr, size_t errstr_size) {
        krib_pipeline_t *p = calloc(1, sizeof(*p));
        if (!p) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        p->conf = conf;
        p->stop = stop;
        p->cap = (size_t)conf->pipeline_batch_max_events;
        p->msgs = calloc(p->cap, sizeof(*p->msgs));
        p->events = calloc(p->cap, sizeof(*p->events));
        p->live = calloc(p->cap, 1);
        p->offsets = krib_offsets_new();
        if (!p->msgs || !p->events || !p->live || !p->offsets) {
                snprintf(errstr, errstr_size, "out of memory");
                goto fail;
        }
        for (size_t i = 0; i < p->cap; i++)
                krib_event_reset(&p->events[i]);
        if (!(p->decode = krib_decode_new_file(conf->decode_schema_file, errstr, errstr_size)))
                goto fail;
        if (!(p->writer = krib_writer_new(conf, errstr, errstr_size)))
                goto fail;
        krib_writer_set_stop(p->writer, stop, conf->pipeline_shutdown_timeout_ms);
        char sub[256];
        if (krib_writer_refresh(p->writer, sub, sizeof(sub)))
                krib_log_warn("pipeline",
                              "msg=\"redis not reachable yet, will retry\" "
                              "error=\"%s\"",
                              sub);
        krib_consumer_hooks_t hooks = {.on_revoke = on_revoke, .opaque = p};
        if (!(p->consumer = krib_consumer_new(conf, &hooks, errstr, errstr_size)))
                goto fail;
        p->stats_at_us = krib_clock_mono_us();
        return p;
fail:
        krib_pipeline_destroy(p);
        return NULL;
}

static int reserve_keys(krib_pipeline_t *p, size_t n) {
        if (n <= p->key_cap)
                return 0;
        size_t cap = n > p->key_cap * 2 ? n : p->key_cap * 2;
        krib_wkey_t *k = realloc(p->keys, cap * sizeof(*k));
        if (!k)
                return -1;
        p->keys = k;
        uint32_t *o = realloc(p->key_owner, cap * sizeof(*o));
        if (!o)
                return -1;
        p->key_owner = o;
        uint8_t *s = realloc(p->key_status, cap);
        if (!s)
                return -1;
        p->key_status = s;
        p->key_cap = cap;
        return 0;
}

#define MSG_FMT     "topic=%s partition=%" PRId32 " offset=%" PRId64
#define MSG_ARGS(m) rd_kafka_topic_name((m)->rkt), (m)->partition, (m)->offset

static void finish(krib_pipeline_t *p, rd_kafka_message_t *m) {
        if (krib_offsets_finish(p->offsets, rd_kafka_topic_name(m->rkt), m->partition, m->offset))
                krib_log_debug("pipeline", "msg=\"offset was not tracked\" " MSG_FMT, MSG_ARGS(m));
}

static void store_offsets(krib_pipeline_t *p) {
        rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(8);
        size_t cursor = 0;
        const char *topic;
        int32_t part;
        int64_t off;
        while (krib_offsets_take_dirty(p->offsets, &cursor, &topic, &part, &off))
                rd_kafka_topic_partition_list_add(list, topic, part)->offset = off;
        if (list->cnt)
                krib_consumer_store(p->consumer, list);
        rd_kafka_topic_partition_list_destroy(list);
}

/* Decodes, writes and finishes p->msgs[0..n). Returns -1 when shutdown cut
 * the Redis work short (finished events were still stored). */
static int process_batch(krib_pipeline_t *p) {
        size_t nkeys = 0;
        char err[512];
        for (size_t i = 0; i < p->n; i++) {
                rd_kafka_message_t *m = p->msgs[i];
                krib_event_t *ev = &p->events[i];
                p->live[i] = 0;
                if (krib_offsets_track(p->offsets, rd_kafka_topic_name(m->rkt), m->partition,
                                       m->offset))
                        krib_log_warn("pipeline",
                                      "msg=\"offset below one already tracked\" " MSG_FMT,
                                      MSG_ARGS(m));
                if (krib_decode_event(p->decode, m->payload, m->len, ev, err, sizeof(err))) {
                        krib_log_error("pipeline",
                                       "msg=\"rejected event\" stage=decode " MSG_FMT
                                       " error=\"%s\"",
                                       MSG_ARGS(m), err);
                        p->stats.rejected++;
                        finish(p, m);
                        continue;
                }
                if (ev->action == KRIB_ACTION_TAG) {
                        krib_log_error("pipeline",
                                       "msg=\"rejected event\" stage=route " MSG_FMT
                                       " entity=\"%s\" error=\"TAG sweeps are not supported by "
                                       "this version\"",
                                       MSG_ARGS(m), ev->entity.s);
                        p->stats.rejected++;
                        finish(p, m);
                        continue;
                }
                /* UPSERT is applied as an invalidation until version-gated
                 * write-through exists: the next read refills from the
                 * database, which is never stale. */
                if (reserve_keys(p, nkeys + ev->key_count)) {
                        krib_log_error("pipeline", "msg=\"out of memory\"");
                        return -1;
                }
                for (size_t k = 0; k < ev->key_count; k++) {
                        p->keys[nkeys].key = ev->keys[k].s;
                        p->keys[nkeys].len = ev->keys[k].len;
                        p->key_owner[nkeys++] = (uint32_t)i;
                }
                p->live[i] = 1;
        }

        int rc = nkeys ? krib_writer_unlink(p->writer, p->keys, nkeys, p->key_status) : 0;

        /* An event is done when all its keys are; keys come grouped by event. */
        for (size_t k = 0; k < nkeys;) {
                uint32_t e = p->key_owner[k];
                int ok = 1, failed = 0;
                size_t count = 0;
                for (; k < nkeys && p->key_owner[k] == e; k++, count++) {
                        ok &= p->key_status[k] == KRIB_WKEY_OK;
                        failed |= p->key_status[k] == KRIB_WKEY_FAILED;
                }
                rd_kafka_message_t *m = p->msgs[e];
                if (ok) {
                        p->stats.applied++;
                        p->stats.keys_unlinked += count;
                        finish(p, m);
                } else if (failed) {
                        krib_log_error("pipeline",
                                       "msg=\"redis refused event\" stage=write " MSG_FMT
                                       " entity=\"%s\"",
                                       MSG_ARGS(m), p->events[e].entity.s);
                        p->stats.failed++;
                        finish(p, m);
                }
                /* else: interrupted before Redis answered; not finished. */
        }
        store_offsets(p);
        for (size_t i = 0; i < p->n; i++) {
                rd_kafka_message_destroy(p->msgs[i]);
                p->msgs[i] = NULL;
        }
        p->n = 0;
        p->stats.batches++;
        return rc;
}

static void log_stats(krib_pipeline_t *p, int force) {
        int64_t now = krib_clock_mono_us();
        int64_t every = p->conf->log_stats_interval_ms * 1000;
        if (!force && (!every || now - p->stats_at_us < every))
                return;
        p->stats_at_us = now;
        const krib_writer_stats_t *w = krib_writer_stats(p->writer);
        krib_log_info(
                "stats",
                "consumed=%" PRIu64 " applied=%" PRIu64 " rejected=%" PRIu64 " failed=%" PRIu64
                " in_flight=%zu keys_unlinked=%" PRIu64 " redis_round_trips=%" PRIu64
                " redis_commands=%" PRIu64 " keys_per_round_trip=%.1f moved=%" PRIu64
                " ask=%" PRIu64 " retries=%" PRIu64 " reconnects=%" PRIu64 " rebalances=%lu",
                p->stats.consumed, p->stats.applied, p->stats.rejected, p->stats.failed,
                krib_offsets_in_flight(p->offsets), p->stats.keys_unlinked, w->round_trips,
                w->commands, w->round_trips ? (double)w->keys / (double)w->round_trips : 0.0,
                w->moved, w->ask, w->retries, w->reconnects, krib_consumer_rebalances(p->consumer));
}

int krib_pipeline_run(krib_pipeline_t *p) {
        while (!*p->stop && !p->interrupted) {
                int64_t deadline = krib_clock_mono_us() + p->conf->pipeline_linger_ms * 1000;
                /* Gather a batch. A rebalance inside poll may process and
                 * empty it (on_revoke), so p->n is re-read every time. */
                while (p->n < p->cap && !*p->stop) {
                        int64_t left = p->n ? (deadline - krib_clock_mono_us()) / 1000 : 100;
                        if (left < 0)
                                break;
                        rd_kafka_message_t *m = krib_consumer_poll(p->consumer, (int)left);
                        if (!m) {
                                if (p->n)
                                        break;
                                log_stats(p, 0);
                                continue;
                        }
                        if (m->err) {
                                if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                                        krib_log_warn("consumer",
                                                      "msg=\"consume error\" "
                                                      "error=\"%s\"",
                                                      rd_kafka_message_errstr(m));
                                rd_kafka_message_destroy(m);
                                continue;
                        }
                        if (!p->n)
                                deadline =
                                        krib_clock_mono_us() + p->conf->pipeline_linger_ms * 1000;
                        p->msgs[p->n++] = m;
                        p->stats.consumed++;
                }
                if (p->n && process_batch(p))
                        p->interrupted = 1;
                log_stats(p, 0);
        }
        /* Events polled after the stop signal still get their drain window. */
        if (p->n && !p->interrupted && process_batch(p))
                p->interrupted = 1;
        log_stats(p, 1);
        if (p->interrupted)
                krib_log_warn("pipeline",
                              "msg=\"shutdown deadline passed with unacknowledged "
                              "work; its offsets were not stored\" in_flight=%zu",
                              krib_offsets_in_flight(p->offsets));
        return p->interrupted ? -1 : 0;
}

const krib_pipeline_stats_t *krib_pipeline_stats(const krib_pipeline_t *p) {
        return &p->stats;
}

void krib_pipeline_destroy(krib_pipeline_t *p) {
        if (!p)
                return;
        /* Nothing is left in the batch here: krib_pipeline_run() drained it,
         * and an unfinished remainder must not be stored, only released. */
        for (size_t i = 0; i < p->n; i++)
                rd_kafka_message_destroy(p->msgs[i]);
        p->n = 0;
        krib_consumer_close(p->consumer);
        krib_writer_destroy(p->writer);
        krib_decode_destroy(p->decode);
        krib_offsets_destroy(p->offsets);
        if (p->events)
                for (size_t i = 0; i < p->cap; i++)
                        krib_event_destroy(&p->events[i]);
        free(p->events);
        free(p->msgs);
        free(p->live);
        free(p->keys);
        free(p->key_owner);
        free(p->key_status);
        free(p);
}
