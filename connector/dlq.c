#include "dlq.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "log.h"

/* One queued record: what to (re)produce until the broker takes it. */
typedef struct {
        void *key, *value;
        size_t key_len, value_len;
        rd_kafka_headers_t *hdrs;
        int state;    /* 0 in flight, 1 acked, -1 failed (produce again) */
        int too_big;  /* the last attempt failed for its size */
        int degraded; /* 0 whole copy, 1 truncated, 2 headers only */
        unsigned attempt;
        int64_t retry_at_us;
        uint64_t tag;
        char err[160];
} rec_t;

/* What a truncated dead letter keeps of the original value and key. */
#define DLQ_KEEP_VALUE 65536
#define DLQ_KEEP_KEY   4096

struct krib_dlq {
        rd_kafka_t *rk;
        char *topic;
        rec_t **recs; /* each record allocated alone: delivery reports point at it */
        size_t n, cap;
        unsigned long acked;
        unsigned long failures; /* attempts refused or timed out */
        int64_t warned_at_us;
};

static int size_error(rd_kafka_resp_err_t e) {
        return e == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
               e == RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE ||
               e == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
        (void)rk;
        (void)opaque;
        rec_t *r = m->_private;
        if (!r)
                return;
        if (m->err) {
                r->state = -1;
                r->too_big = size_error(m->err);
                snprintf(r->err, sizeof(r->err), "%s", rd_kafka_err2str(m->err));
        } else
                r->state = 1;
}

/* librdkafka properties that also make sense for a producer (security). */
static int shared_property(const char *name) {
        static const char *const prefixes[] = {"security.", "sasl.",   "ssl.", "client.",
                                               "socket.",   "broker.", "api.", NULL};
        for (int i = 0; prefixes[i]; i++)
                if (!strncmp(name, prefixes[i], strlen(prefixes[i])))
                        return 1;
        return 0;
}

krib_dlq_t *krib_dlq_new(const krib_conf_t *conf, char *errstr, size_t errstr_size) {
        krib_dlq_t *d = calloc(1, sizeof(*d));
        if (!d || !(d->topic = strdup(conf->dlq_topic))) {
                snprintf(errstr, errstr_size, "out of memory");
                free(d);
                return NULL;
        }
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        char sub[512];
#define SET(k, v)                                                                                  \
        do {                                                                                       \
                if (rd_kafka_conf_set(c, (k), (v), sub, sizeof(sub)) != RD_KAFKA_CONF_OK) {        \
                        snprintf(errstr, errstr_size, "dlq producer %s: %s", (k), sub);            \
                        goto fail;                                                                 \
                }                                                                                  \
        } while (0)
        SET("bootstrap.servers", conf->kafka_brokers);
        SET("enable.idempotence", "true"); /* acks=all, no duplicates from retries */
        SET("linger.ms", "5");
        SET("message.timeout.ms", "30000");
        for (size_t i = 0; i < conf->kafka_properties.n; i++) {
                char name[256];
                const char *p = conf->kafka_properties.v[i], *eq = strchr(p, '=');
                snprintf(name, sizeof(name), "%.*s", (int)(eq - p), p);
                if (shared_property(name))
                        SET(name, eq + 1);
        }
        if (*conf->kafka_sasl_password)
                SET("sasl.password", conf->kafka_sasl_password);
#undef SET
        rd_kafka_conf_set_dr_msg_cb(c, on_delivery);
        if (!(d->rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, sub, sizeof(sub)))) {
                snprintf(errstr, errstr_size, "dlq producer: %s", sub);
                goto fail;
        }
        return d;
fail:
        if (c)
                rd_kafka_conf_destroy(c);
        krib_dlq_destroy(d);
        return NULL;
}

static void rec_free(rec_t *r) {
        if (!r)
                return;
        free(r->key);
        free(r->value);
        if (r->hdrs)
                rd_kafka_headers_destroy(r->hdrs);
        free(r);
}

/* A copy the broker (or librdkafka's message.max.bytes) refuses for its
 * size must not hold the partition: first the value and key are cut (a
 * header says so), then only headers are kept. Logged each time. */
static void degrade(rec_t *r, const char *topic) {
        char note[200];
        if (r->degraded == 0) {
                size_t v = r->value_len, k = r->key_len;
                if (r->value_len > DLQ_KEEP_VALUE)
                        r->value_len = DLQ_KEEP_VALUE;
                if (r->key_len > DLQ_KEEP_KEY)
                        r->key_len = DLQ_KEEP_KEY;
                snprintf(note, sizeof(note), "value %zu -> %zu bytes, key %zu -> %zu bytes", v,
                         r->value_len, k, r->key_len);
                r->degraded = 1;
        } else {
                free(r->key);
                free(r->value);
                r->key = r->value = NULL;
                r->key_len = r->value_len = 0;
                /* The original headers may be what is too big: keep ours. */
                rd_kafka_headers_t *mine = rd_kafka_headers_new(10);
                size_t idx = 0;
                const char *name;
                const void *val;
                size_t len;
                while (!rd_kafka_header_get_all(r->hdrs, idx++, &name, &val, &len))
                        if (!strncmp(name, "__connect.errors.", 17))
                                rd_kafka_header_add(mine, name, -1, val, (ssize_t)len);
                rd_kafka_headers_destroy(r->hdrs);
                r->hdrs = mine;
                snprintf(note, sizeof(note), "key, value and original headers dropped");
                r->degraded = 2;
        }
        rd_kafka_header_remove(r->hdrs, "__krib.dlq.truncated");
        rd_kafka_header_add(r->hdrs, "__krib.dlq.truncated", -1, note, (ssize_t)strlen(note));
        r->too_big = 0;
        krib_log_warn("dlq",
                      "msg=\"dead letter too large for the broker: truncated\" topic=%s "
                      "what=\"%s\"",
                      topic, note);
}

static int produce(krib_dlq_t *d, rec_t *r) {
        if (r->too_big && r->degraded < 2)
                degrade(r, d->topic);
        r->state = 0;
        rd_kafka_headers_t *h = rd_kafka_headers_copy(r->hdrs); /* librdkafka takes it */
        rd_kafka_resp_err_t e = rd_kafka_producev(
                d->rk, RD_KAFKA_V_TOPIC(d->topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_KEY(r->key, r->key_len), RD_KAFKA_V_VALUE(r->value, r->value_len),
                RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(r), RD_KAFKA_V_END);
        if (e) {
                rd_kafka_headers_destroy(h);
                r->state = -1;
                r->too_big = size_error(e);
                snprintf(r->err, sizeof(r->err), "%s", rd_kafka_err2str(e));
                /* Refused locally for its size: try the smaller copy now. */
                if (r->too_big && r->degraded < 2)
                        return produce(d, r);
                return -1;
        }
        return 0;
}

int krib_dlq_add(krib_dlq_t *d, const rd_kafka_message_t *m, const char *stage,
                 const char *error_class, const char *message, uint64_t tag) {
        if (d->n == d->cap) {
                size_t cap = d->cap ? d->cap * 2 : 64;
                rec_t **n = realloc(d->recs, cap * sizeof(*n));
                if (!n)
                        return -1;
                d->recs = n;
                d->cap = cap;
        }
        rec_t *r = calloc(1, sizeof(*r));
        if (!r || (m->key_len && !(r->key = malloc(m->key_len))) ||
            (m->len && !(r->value = malloc(m->len)))) {
                rec_free(r);
                return -1;
        }
        if (m->key_len)
                memcpy(r->key, m->key, m->key_len);
        if (m->len)
                memcpy(r->value, m->payload, m->len);
        r->key_len = m->key_len;
        r->value_len = m->len;
        r->tag = tag;
        rd_kafka_headers_t *orig = NULL;
        if (rd_kafka_message_headers(m, &orig) == RD_KAFKA_RESP_ERR_NO_ERROR && orig)
                r->hdrs = rd_kafka_headers_copy(orig);
        else
                r->hdrs = rd_kafka_headers_new(8);
        char part[16], off[24];
        snprintf(part, sizeof(part), "%" PRId32, m->partition);
        snprintf(off, sizeof(off), "%" PRId64, m->offset);
        const char *topic = rd_kafka_topic_name(m->rkt);
        struct {
                const char *k, *v;
        } h[] = {{"__connect.errors.topic", topic},
                 {"__connect.errors.partition", part},
                 {"__connect.errors.offset", off},
                 {"__connect.errors.connector.name", "krib"},
                 {"__connect.errors.task.id", "0"},
                 {"__connect.errors.stage", stage},
                 {"__connect.errors.class.name", error_class},
                 {"__connect.errors.exception.message", message}};
        for (size_t i = 0; i < sizeof(h) / sizeof(*h); i++)
                rd_kafka_header_add(r->hdrs, h[i].k, -1, h[i].v, (ssize_t)strlen(h[i].v));
        d->recs[d->n++] = r;
        produce(d, r); /* a local refusal is retried by krib_dlq_poll() */
        return 0;
}

size_t krib_dlq_poll(krib_dlq_t *d, krib_dlq_acked_cb *acked, void *opaque) {
        if (!d || !d->n)
                return 0;
        rd_kafka_poll(d->rk, 0);
        int64_t now = krib_clock_mono_us();
        size_t keep = 0;
        for (size_t i = 0; i < d->n; i++) {
                rec_t *r = d->recs[i];
                if (r->state == 1) {
                        d->acked++;
                        if (acked)
                                acked(opaque, r->tag);
                        rec_free(r);
                        continue;
                }
                if (r->state == -1 && r->retry_at_us == 0) {
                        d->failures++;
                        /* Just failed: a smaller copy goes out at once, others
                         * after a backoff. */
                        int64_t wait_ms = 100LL << (r->attempt < 5 ? r->attempt : 5);
                        r->attempt++;
                        r->retry_at_us = r->too_big && r->degraded < 2 ? now : now + wait_ms * 1000;
                        if (now - d->warned_at_us > 10000000) {
                                d->warned_at_us = now;
                                krib_log_warn("dlq",
                                              "msg=\"dead-letter write failed, retrying\" "
                                              "topic=%s error=\"%s\"",
                                              d->topic, r->err);
                        }
                }
                if (r->state == -1 && now >= r->retry_at_us) {
                        r->retry_at_us = 0;
                        produce(d, r);
                }
                d->recs[keep++] = r;
        }
        d->n = keep;
        return keep;
}

int64_t krib_dlq_due_us(const krib_dlq_t *d) {
        if (!d || !d->n)
                return INT64_MAX;
        /* Delivery reports are served by polling: look again soon. */
        return krib_clock_mono_us() + 10000;
}

void krib_dlq_forget(krib_dlq_t *d) {
        if (!d)
                return;
        for (size_t i = 0; i < d->n; i++)
                d->recs[i]->tag = UINT64_MAX;
}

unsigned long krib_dlq_acked(const krib_dlq_t *d) {
        return d ? d->acked : 0;
}

unsigned long krib_dlq_failures(const krib_dlq_t *d) {
        return d ? d->failures : 0;
}

void krib_dlq_destroy(krib_dlq_t *d) {
        if (!d)
                return;
        if (d->rk) {
                rd_kafka_flush(d->rk, 5000);
                rd_kafka_destroy(d->rk);
        }
        for (size_t i = 0; i < d->n; i++)
                rec_free(d->recs[i]);
        free(d->recs);
        free(d->topic);
        free(d);
}
