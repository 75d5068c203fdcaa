#include "consumer.h"

#include "offsets.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "route.h"
#include "util.h"

#include <jansson.h>

struct krib_consumer {
        rd_kafka_t *rk;
        krib_partition_lag_t *lag, *lag_next; /* the last statistics; the next being parsed */
        size_t lag_cap, lag_next_cap;
        int nlag;
        const krib_conf_t *conf;
        krib_consumer_hooks_t hooks;
        unsigned long rebalances;
        /* A revoke waiting for the pipeline loop (krib_consumer_revoking). */
        rd_kafka_topic_partition_list_t *revoking;
        int revoke_lost;
        int closing;
        rd_kafka_queue_t *queue; /* the consumer queue, for its wake-up pipe */
        int wake[2];
};

int krib_consumer_parse_stats(const char *json, size_t len, krib_partition_lag_t **out,
                              size_t *cap) {
        json_error_t err;
        json_t *root = json_loadb(json, len, 0, &err);
        if (!root)
                return -1;
        json_t *topics = json_object_get(root, "topics");
        int n = 0;
        const char *tname;
        json_t *t;
        json_object_foreach(topics, tname, t) {
                const char *pname;
                json_t *p;
                json_object_foreach(json_object_get(t, "partitions"), pname, p) {
                        json_int_t id = json_integer_value(json_object_get(p, "partition"));
                        const char *state = json_string_value(json_object_get(p, "fetch_state"));
                        /* -1 is librdkafka's internal UA partition. */
                        if (id < 0 || !state || !strcmp(state, "none"))
                                continue;
                        if (krib_util_grow(out, cap, (size_t)n + 1, sizeof(**out))) {
                                json_decref(root);
                                return -1;
                        }
                        krib_partition_lag_t *l = &(*out)[n++];
                        snprintf(l->topic, sizeof(l->topic), "%s", tname);
                        l->partition = (int32_t)id;
                        l->lag = json_integer_value(json_object_get(p, "consumer_lag"));
                        l->committed = json_integer_value(json_object_get(p, "committed_offset"));
                        l->log_end = json_integer_value(json_object_get(p, "hi_offset"));
                }
        }
        json_decref(root);
        return n;
}

/* Runs on the pipeline thread inside poll (the main queue is redirected to
 * the consumer queue), so no lock is needed for c->lag. */
static int stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque) {
        (void)rk;
        krib_consumer_t *c = opaque;
        int n = krib_consumer_parse_stats(json, len, &c->lag_next, &c->lag_next_cap);
        if (n >= 0) { /* a document that cannot be read keeps the last one */
                krib_partition_lag_t *t = c->lag;
                size_t tc = c->lag_cap;
                c->lag = c->lag_next;
                c->lag_cap = c->lag_next_cap;
                c->lag_next = t;
                c->lag_next_cap = tc;
                c->nlag = n;
        }
        return 0; /* librdkafka frees json */
}

int krib_consumer_lag(const krib_consumer_t *c, const krib_partition_lag_t **out) {
        *out = c->lag;
        return c->nlag;
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
        (void)rk;
        /* syslog levels: 0-3 error, 4 warning, 5-6 info, 7 debug */
        krib_log_level_t l = level <= 3   ? KRIB_LOG_ERROR
                             : level == 4 ? KRIB_LOG_WARN
                             : level <= 6 ? KRIB_LOG_INFO
                                          : KRIB_LOG_DEBUG;
        krib_log_write(l, "rdkafka", "facility=%s msg=\"%s\"", fac, buf);
}

static void part_list(const rd_kafka_topic_partition_list_t *parts, char *out, size_t size) {
        size_t n = 0;
        out[0] = '\0';
        for (int i = 0; i < parts->cnt && n + 1 < size; i++)
                n += (size_t)snprintf(out + n, size - n, "%s%s[%d]", i ? "," : "",
                                      parts->elems[i].topic, (int)parts->elems[i].partition);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
        krib_consumer_t *c = opaque;
        int cooperative = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
        char list[512];
        part_list(parts, list, sizeof(list));
        c->rebalances++;
        rd_kafka_error_t *error = NULL;
        rd_kafka_resp_err_t aerr = RD_KAFKA_RESP_ERR_NO_ERROR;
        if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
                krib_log_info("consumer", "msg=\"partitions assigned\" count=%d partitions=%s",
                              parts->cnt, list);
                if (cooperative)
                        error = rd_kafka_incremental_assign(rk, parts);
                else
                        aerr = rd_kafka_assign(rk, parts);
                if (!error && !aerr && c->hooks.on_assign)
                        c->hooks.on_assign(c->hooks.opaque, parts);
        } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
                int lost = rd_kafka_assignment_lost(rk);
                krib_log_info("consumer",
                              "msg=\"partitions revoked\" lost=%d count=%d "
                              "partitions=%s",
                              lost, parts->cnt, list);
                if (!c->closing) {
                        /* Only recorded: the pipeline loop finishes or gives
                         * up these partitions' work between its steps, then
                         * krib_consumer_revoke_done() commits and releases
                         * them (librdkafka holds the rebalance until then). */
                        if (!c->revoking)
                                c->revoking = rd_kafka_topic_partition_list_copy(parts);
                        else
                                for (int i = 0; i < parts->cnt; i++)
                                        /* Once each: a duplicate in the list given to
                                         * incremental_unassign trips librdkafka. */
                                        if (!rd_kafka_topic_partition_list_find(
                                                    c->revoking, parts->elems[i].topic,
                                                    parts->elems[i].partition))
                                                rd_kafka_topic_partition_list_add(
                                                        c->revoking, parts->elems[i].topic,
                                                        parts->elems[i].partition);
                        c->revoke_lost |= lost;
                        return;
                }
                if (c->hooks.on_revoke)
                        c->hooks.on_revoke(c->hooks.opaque, parts, lost);
                if (!lost)
                        krib_consumer_commit(c);
                if (cooperative)
                        error = rd_kafka_incremental_unassign(rk, parts);
                else
                        aerr = rd_kafka_assign(rk, NULL);
        } else {
                krib_log_error("consumer", "msg=\"rebalance failed\" error=\"%s\"",
                               rd_kafka_err2str(err));
                aerr = rd_kafka_assign(rk, NULL);
        }
        if (error) {
                krib_log_error("consumer", "msg=\"incremental (un)assign failed\" error=\"%s\"",
                               rd_kafka_error_string(error));
                rd_kafka_error_destroy(error);
        } else if (aerr) {
                krib_log_error("consumer", "msg=\"assign failed\" error=\"%s\"",
                               rd_kafka_err2str(aerr));
        }
}

static int set(rd_kafka_conf_t *kc, const char *name, const char *value, char *errstr,
               size_t size) {
        char sub[512];
        if (rd_kafka_conf_set(kc, name, value, sub, sizeof(sub)) != RD_KAFKA_CONF_OK) {
                snprintf(errstr, size, "kafka property %s: %s", name, sub);
                return -1;
        }
        return 0;
}

krib_consumer_t *krib_consumer_new(const krib_conf_t *conf, const krib_consumer_hooks_t *hooks,
                                   char *errstr, size_t errstr_size) {
        krib_consumer_t *c = calloc(1, sizeof(*c));
        if (!c) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        c->conf = conf;
        if (hooks)
                c->hooks = *hooks;
        rd_kafka_conf_t *kc = rd_kafka_conf_new();
        /* krib's defaults first (conf.c lists them with the reasons), then
         * kafka.properties over them. */
        for (int i = 0; krib_conf_kafka_defaults[i][0]; i++) {
                const char *name = krib_conf_kafka_defaults[i][0];
                if (!krib_conf_kafka_property_applies(conf, name))
                        continue;
                /* A default newer than the linked librdkafka (Debian 12's
                 * 2.0.2 lacks fetch.queue.backoff.ms) is only a tuning the
                 * library does not have: skipped, said once. */
                char sub[512];
                rd_kafka_conf_res_t res = rd_kafka_conf_set(
                        kc, name, krib_conf_kafka_defaults[i][1], sub, sizeof(sub));
                if (res == RD_KAFKA_CONF_UNKNOWN) {
                        krib_log_info("consumer",
                                      "msg=\"librdkafka %s has no %s: krib's default for it is "
                                      "skipped\"",
                                      rd_kafka_version_str(), name);
                        continue;
                }
                if (res != RD_KAFKA_CONF_OK) {
                        snprintf(errstr, errstr_size, "kafka property %s: %s", name, sub);
                        goto fail;
                }
        }
        /* krib_conf_finalize() has checked these (librdkafka's verdict,
         * krib-owned names refused); krib's own values are set after them
         * in any case. */
        for (size_t i = 0; i < conf->kafka_properties.n; i++) {
                char name[256];
                const char *p = conf->kafka_properties.v[i], *eq = strchr(p, '=');
                snprintf(name, sizeof(name), "%.*s", (int)(eq - p), p);
                if (krib_conf_kafka_property_applies(conf, name) &&
                    set(kc, name, eq + 1, errstr, errstr_size))
                        goto fail;
        }
        if (*conf->kafka_sasl_password &&
            set(kc, "sasl.password", conf->kafka_sasl_password, errstr, errstr_size))
                goto fail;
        if (set(kc, "bootstrap.servers", conf->kafka_brokers, errstr, errstr_size) ||
            set(kc, "group.id", conf->kafka_group_id, errstr, errstr_size) ||
            set(kc, "enable.auto.commit", "true", errstr, errstr_size) ||
            set(kc, "enable.auto.offset.store", "false", errstr, errstr_size))
                goto fail;
        rd_kafka_conf_set_log_cb(kc, log_cb);
        rd_kafka_conf_set_stats_cb(kc, stats_cb);
        rd_kafka_conf_set_rebalance_cb(kc, rebalance_cb);
        rd_kafka_conf_set_opaque(kc, c);
        char sub[512];
        c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, sub, sizeof(sub));
        if (!c->rk) {
                snprintf(errstr, errstr_size, "cannot create Kafka consumer: %s", sub);
                goto fail; /* kc is still ours */
        }
        kc = NULL;
        rd_kafka_poll_set_consumer(c->rk);
        /* The pipeline loop waits in poll(): librdkafka writes to this pipe
         * when the consumer queue gets something (messages, rebalances). */
        c->wake[0] = c->wake[1] = -1;
        if (pipe2(c->wake, O_NONBLOCK | O_CLOEXEC) ||
            !(c->queue = rd_kafka_queue_get_consumer(c->rk))) {
                snprintf(errstr, errstr_size, "cannot set up the consumer's wake-up pipe");
                goto fail;
        }
        rd_kafka_queue_io_event_enable(c->queue, c->wake[1], "1", 1);
        /* kafka.topics and every route's topics. */
        char **rt = NULL;
        size_t nrt = 0;
        int oom = krib_routes_topics(conf->routes, &rt, &nrt);
        rd_kafka_topic_partition_list_t *topics =
                rd_kafka_topic_partition_list_new((int)(conf->kafka_topics.n + nrt));
        for (size_t i = 0; i < conf->kafka_topics.n; i++)
                rd_kafka_topic_partition_list_add(topics, conf->kafka_topics.v[i],
                                                  RD_KAFKA_PARTITION_UA);
        for (size_t i = 0; i < nrt; i++) {
                rd_kafka_topic_partition_list_add(topics, rt[i], RD_KAFKA_PARTITION_UA);
                free(rt[i]);
        }
        free(rt);
        rd_kafka_resp_err_t err =
                oom ? RD_KAFKA_RESP_ERR__NOENT : rd_kafka_subscribe(c->rk, topics);
        rd_kafka_topic_partition_list_destroy(topics);
        if (err) {
                snprintf(errstr, errstr_size, "subscribe failed: %s", rd_kafka_err2str(err));
                goto fail;
        }
        return c;
fail:
        if (kc)
                rd_kafka_conf_destroy(kc);
        if (c->queue)
                rd_kafka_queue_destroy(c->queue);
        if (c->rk)
                rd_kafka_destroy(c->rk);
        for (int i = 0; i < 2; i++)
                if (c->wake[i] > 0)
                        close(c->wake[i]);
        free(c);
        return NULL;
}

int krib_consumer_wakeup_fd(const krib_consumer_t *c) {
        return c->wake[0];
}

void krib_consumer_wakeup_clear(krib_consumer_t *c) {
        char buf[64];
        while (read(c->wake[0], buf, sizeof(buf)) > 0)
                ;
}

const rd_kafka_topic_partition_list_t *krib_consumer_revoking(const krib_consumer_t *c, int *lost) {
        if (lost)
                *lost = c->revoke_lost;
        return c->revoking;
}

void krib_consumer_revoke_done(krib_consumer_t *c) {
        if (!c->revoking)
                return;
        if (!c->revoke_lost)
                krib_consumer_commit(c);
        rd_kafka_error_t *error = NULL;
        rd_kafka_resp_err_t aerr = RD_KAFKA_RESP_ERR_NO_ERROR;
        if (!strcmp(rd_kafka_rebalance_protocol(c->rk), "COOPERATIVE"))
                error = rd_kafka_incremental_unassign(c->rk, c->revoking);
        else
                aerr = rd_kafka_assign(c->rk, NULL);
        if (error) {
                krib_log_error("consumer", "msg=\"incremental unassign failed\" error=\"%s\"",
                               rd_kafka_error_string(error));
                rd_kafka_error_destroy(error);
        } else if (aerr) {
                krib_log_error("consumer", "msg=\"unassign failed\" error=\"%s\"",
                               rd_kafka_err2str(aerr));
        }
        rd_kafka_topic_partition_list_destroy(c->revoking);
        c->revoking = NULL;
        c->revoke_lost = 0;
}

rd_kafka_message_t *krib_consumer_poll(krib_consumer_t *c, int timeout_ms) {
        return rd_kafka_consumer_poll(c->rk, timeout_ms);
}

int krib_consumer_store(krib_consumer_t *c, rd_kafka_topic_partition_list_t *offsets) {
        rd_kafka_resp_err_t err = rd_kafka_offsets_store(c->rk, offsets);
        if (err && err != RD_KAFKA_RESP_ERR__STATE) {
                krib_log_warn("consumer", "msg=\"offsets store failed\" error=\"%s\"",
                              rd_kafka_err2str(err));
                return -1;
        }
        /* _STATE: some partitions are no longer assigned; the rest were stored. */
        return 0;
}

int krib_consumer_commit(krib_consumer_t *c) {
        rd_kafka_resp_err_t err = rd_kafka_commit(c->rk, NULL, 0);
        if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
                krib_log_warn("consumer", "msg=\"offset commit failed\" error=\"%s\"",
                              rd_kafka_err2str(err));
                return -1;
        }
        return 0;
}

void krib_consumer_close(krib_consumer_t *c) {
        if (!c)
                return;
        c->closing = 1;
        if (c->revoking) {
                if (c->hooks.on_revoke)
                        c->hooks.on_revoke(c->hooks.opaque, c->revoking, c->revoke_lost);
                krib_consumer_revoke_done(c);
        }
        krib_consumer_commit(c);
        rd_kafka_resp_err_t err = rd_kafka_consumer_close(c->rk);
        if (err)
                krib_log_warn("consumer", "msg=\"consumer close\" error=\"%s\"",
                              rd_kafka_err2str(err));
        rd_kafka_queue_destroy(c->queue);
        rd_kafka_destroy(c->rk);
        close(c->wake[0]);
        close(c->wake[1]);
        free(c->lag);
        free(c->lag_next);
        free(c);
}

void krib_consumer_store_finished(krib_consumer_t *c, krib_offsets_t *o) {
        rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(8);
        size_t cursor = 0;
        const char *topic;
        int32_t part;
        int64_t off;
        while (krib_offsets_take_dirty(o, &cursor, &topic, &part, &off))
                rd_kafka_topic_partition_list_add(list, topic, part)->offset = off;
        if (list->cnt)
                krib_consumer_store(c, list);
        rd_kafka_topic_partition_list_destroy(list);
}

void krib_consumer_pause(krib_consumer_t *c, const rd_kafka_topic_partition_list_t *only,
                         int pause) {
        rd_kafka_topic_partition_list_t *list = NULL;
        if (!only && rd_kafka_assignment(c->rk, &list))
                return;
        const rd_kafka_topic_partition_list_t *l = only ? only : list;
        if (l->cnt) {
                /* librdkafka takes the list non-const but only reads it */
                rd_kafka_topic_partition_list_t *rw = (rd_kafka_topic_partition_list_t *)l;
                rd_kafka_resp_err_t err = pause ? rd_kafka_pause_partitions(c->rk, rw)
                                                : rd_kafka_resume_partitions(c->rk, rw);
                if (err)
                        krib_log_warn("consumer", "msg=\"%s failed\" error=\"%s\"",
                                      pause ? "pause" : "resume", rd_kafka_err2str(err));
        }
        if (list)
                rd_kafka_topic_partition_list_destroy(list);
}

rd_kafka_t *krib_consumer_handle(krib_consumer_t *c) {
        return c->rk;
}

unsigned long krib_consumer_rebalances(const krib_consumer_t *c) {
        return c->rebalances;
}
