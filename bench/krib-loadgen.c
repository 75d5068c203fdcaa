/* krib-loadgen: makes invalidation traffic for krib's demo, tests and
 * benchmarks.
 *
 *   krib-loadgen create   --topic T --partitions P [--warm]  (--warm: one record
 *                         written to and deleted from every partition)
 *   krib-loadgen produce  --topic T --count N [--keys-per-event K] [--malformed M]
 *                         [--rate EVENTS_PER_S] [--single-object] [--tag-mod M]
 *                         [--linger-ms L]  (producer linger.ms, default 20)
 *                         [--series FILE]  ("produced_ms ack_ms partition" per event)
 *                         (warms up first: connected, producer id assigned; prints the
 *                         acknowledgement latency)
 *   krib-loadgen populate --count N [--keys-per-event K] [--upsert-mod U]
 *                                                            (SET the keys in Redis; a
 *                                                            write-through entity's key gets
 *                                                            value and fence of --version-base)
 *   krib-loadgen count    --count N [--keys-per-event K]     (how many still exist)
 *   krib-loadgen drain    --topic T --partitions P    (bare consumer: the Kafka limit)
 *                         [--expect N]   (follow until N arrived; message-timestamp latency)
 *                         [--series FILE]  (with --expect: "produced_ms latency_ms partition")
 *                         [--min-seconds S]  (read the topic again until S seconds passed)
 *   --property NAME=VALUE (repeatable): a librdkafka property for produce's producer
 *                         or drain's consumer, over the built-in ones
 *   krib-loadgen unlink   --count N [--keys-per-event K]  (pipelined UNLINK: the Redis limit)
 *   krib-loadgen lag      --topic T --partitions P --group G   ("committed end")
 *   krib-loadgen verify   --count N [--upsert-mod U] [--passes P] (the audit, below)
 *
 * Event i (0 <= i < N) is entity "<prefix>:<i>" with keys
 * "<prefix>:{<i>}:k<j>" (j < K), version {"db": B+i+1} (B: --version-base,
 * default 0; a later run needs a higher base to be newer); the Kafka key is
 * the entity, so one entity always lands in one partition. --malformed adds M
 * undecodable messages spread over the stream (they are extra, not in N).
 * --passes P repeats the N entities P times with rising versions (pass p
 * carries B+p*N+i+1). --upsert-mod U makes every entity with i % U == 0 a
 * write-through UPSERT whose keys get the value "v<version>"; the others are
 * DELETEs. `verify` audits the end state: a DELETE entity's key still present
 * or an UPSERT entity's key missing or not at its newest version counts as
 * lost; an UPSERT key holding an older version counts as a regression.
 * Brokers and Redis seed default to KRIB_KAFKA_BROKERS / first of
 * KRIB_REDIS_NODES (set by ci/lib.sh).
 */
#include <getopt.h>
#include <hiredis.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "encode.h"
#include "schemas.h"
#include "util.h"
#include "fence.h"
#include "slot.h"
#include "topo.h"

typedef struct {
        const char *brokers, *topic, *prefix, *schema, *redis, *group;
        long count, keys_per_event, malformed, partitions, rate, single_object;
        long long version_base;
        long tag_mod;
        long upsert_mod, passes;
        long linger_ms;     /* produce: the producer's linger.ms */
        long expect;        /* drain: follow the topic until this many arrived */
        double min_seconds; /* drain: read the topic again from the start until this long */
        /* --property k=v (repeatable): set on the producer (produce) or the
         * bare consumer (drain) after the built-in settings, so a run can
         * state every property it depends on. */
        const char *props[64];
        int nprops;
        const char *series; /* "produced_ms latency_ms partition" per message */
        int warm;           /* create: write and delete one record per partition */
} opts_t;

static void die(const char *fmt, const char *arg);

static void apply_props(const opts_t *o, rd_kafka_conf_t *c) {
        char err[512], kv[1024];
        for (int i = 0; i < o->nprops; i++) {
                snprintf(kv, sizeof(kv), "%s", o->props[i]);
                char *eq = strchr(kv, '=');
                if (!eq)
                        die("--property %s: expected name=value", o->props[i]);
                *eq = '\0';
                if (rd_kafka_conf_set(c, kv, eq + 1, err, sizeof(err)))
                        die("%s", err);
        }
}

static void die(const char *fmt, const char *arg) {
        fprintf(stderr, "krib-loadgen: ");
        fprintf(stderr, fmt, arg);
        fputc('\n', stderr);
        exit(1);
}

static int key_of(const opts_t *o, long i, long j, char *buf, size_t size) {
        /* --tag-mod M packs the keys into M hash slots: "<p>:{t<i%M>}:<i>:k<j>". */
        if (o->tag_mod > 0)
                return snprintf(buf, size, "%s:{t%ld}:%ld:k%ld", o->prefix, i % o->tag_mod, i, j);
        return snprintf(buf, size, "%s:{%ld}:k%ld", o->prefix, i, j);
}

/* linger.ms 20 by default: backlogs are produced fast; the latency runs
 * pass librdkafka's own default (5). */
static rd_kafka_conf_t *producer_conf(const opts_t *o) {
        char err[512], linger[32];
        snprintf(linger, sizeof(linger), "%ld", o->linger_ms);
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        if (rd_kafka_conf_set(c, "bootstrap.servers", o->brokers, err, sizeof(err)) ||
            rd_kafka_conf_set(c, "linger.ms", linger, err, sizeof(err)) ||
            rd_kafka_conf_set(c, "batch.num.messages", "10000", err, sizeof(err)) ||
            rd_kafka_conf_set(c, "queue.buffering.max.messages", "1000000", err, sizeof(err)) ||
            rd_kafka_conf_set(c, "compression.codec", "lz4", err, sizeof(err)) ||
            rd_kafka_conf_set(c, "enable.idempotence", "true", err, sizeof(err)))
                die("%s", err);
        apply_props(o, c);
        return c;
}

static rd_kafka_t *producer(const opts_t *o) {
        char err[512];
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, producer_conf(o), err, sizeof(err));
        if (!rk)
                die("%s", err);
        return rk;
}

/* Creates TOPIC (an existing one is fine); 0 on success. */
static int create_topic(rd_kafka_t *rk, const char *topic, long partitions) {
        char err[512];
        rd_kafka_NewTopic_t *nt =
                rd_kafka_NewTopic_new(topic, (int)partitions, 1, err, sizeof(err));
        if (!nt)
                die("%s", err);
        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
        int rc = 1;
        if (!ev)
                fprintf(stderr, "krib-loadgen: CreateTopics timed out\n");
        else {
                size_t n;
                const rd_kafka_topic_result_t **res = rd_kafka_CreateTopics_result_topics(
                        rd_kafka_event_CreateTopics_result(ev), &n);
                rd_kafka_resp_err_t e = rd_kafka_event_error(ev);
                if (!e && n == 1)
                        e = rd_kafka_topic_result_error(res[0]);
                if (!e || e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
                        rc = 0;
                else
                        fprintf(stderr, "krib-loadgen: create %s: %s\n", topic,
                                rd_kafka_err2str(e));
                rd_kafka_event_destroy(ev);
        }
        rd_kafka_NewTopic_destroy(nt);
        rd_kafka_queue_destroy(q);
        return rc;
}

/* create --warm: one record to every partition, then the records deleted
 * (DeleteRecords to the high watermark: consumers start after them). The
 * first append to a new partition is slow on this broker (Kafka writes the
 * partition's leader-epoch checkpoint then): produced at 80k msg/s into a
 * fresh topic, acknowledgements stalled up to ~500 ms in the first half
 * second in most runs, and never in a second pass over the same topic
 * (bench/README.md). A topic in production took its first write long ago;
 * a fresh topic per bench run should not measure that. */
static void warm_topic(rd_kafka_t *rk, const opts_t *o) {
        for (long p = 0; p < o->partitions; p++) {
                rd_kafka_resp_err_t e = rd_kafka_producev(
                        rk, RD_KAFKA_V_TOPIC(o->topic), RD_KAFKA_V_PARTITION((int32_t)p),
                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_VALUE("warmup", 6),
                        RD_KAFKA_V_END);
                if (e)
                        die("warm-up produce: %s", rd_kafka_err2str(e));
        }
        if (rd_kafka_flush(rk, 30000) || rd_kafka_outq_len(rk))
                die("warm-up of %s not delivered in 30 s", o->topic);
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)o->partitions);
        for (long p = 0; p < o->partitions; p++)
                rd_kafka_topic_partition_list_add(l, o->topic, (int32_t)p)->offset =
                        RD_KAFKA_OFFSET_END;
        rd_kafka_DeleteRecords_t *dr = rd_kafka_DeleteRecords_new(l);
        rd_kafka_topic_partition_list_destroy(l);
        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        rd_kafka_DeleteRecords(rk, &dr, 1, NULL, q);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
        if (!ev || rd_kafka_event_error(ev))
                die("DeleteRecords on %s failed", o->topic);
        const rd_kafka_topic_partition_list_t *res =
                rd_kafka_DeleteRecords_result_offsets(rd_kafka_event_DeleteRecords_result(ev));
        for (int i = 0; res && i < res->cnt; i++)
                if (res->elems[i].err)
                        die("DeleteRecords: %s", rd_kafka_err2str(res->elems[i].err));
        rd_kafka_event_destroy(ev);
        rd_kafka_DeleteRecords_destroy(dr);
        rd_kafka_queue_destroy(q);
}

static int cmd_create(const opts_t *o) {
        rd_kafka_t *rk = producer(o);
        int rc = create_topic(rk, o->topic, o->partitions);
        if (!rc && o->warm)
                warm_topic(rk, o);
        if (!rc)
                printf("topic %s ready (%ld partitions%s)\n", o->topic, o->partitions,
                       o->warm ? ", warmed" : "");
        rd_kafka_destroy(rk);
        return rc;
}

/* Brings a new producer to where a long-running one (Debezium's) already is
 * before the first measured event: connected, the topic's leaders known and,
 * with enable.idempotence, its producer id assigned. librdkafka 2.14 asks for
 * the id only on a 500 ms timer when no broker is up yet at start-up
 * ("Starting PID FSM timer: Coordinator not up" in debug=eos), and every
 * message produced meanwhile waits: that was the whole latency tail of the
 * first half second of every latency run (bench/README.md). One message to
 * "<topic>.warmup", flushed, passes through all three. */
static void producer_warm_up(rd_kafka_t *rk, const opts_t *o) {
        char topic[512];
        snprintf(topic, sizeof(topic), "%s.warmup", o->topic);
        if (create_topic(rk, topic, 1))
                die("cannot create %s", topic);
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, o->topic, NULL);
        const struct rd_kafka_metadata *md = NULL;
        if (!rkt || rd_kafka_metadata(rk, 0, rkt, &md, 10000))
                die("cannot read the metadata of %s", o->topic);
        rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
        rd_kafka_resp_err_t e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                                  RD_KAFKA_V_VALUE("warmup", 6), RD_KAFKA_V_END);
        if (e)
                die("warm-up produce: %s", rd_kafka_err2str(e));
        if (rd_kafka_flush(rk, 30000) || rd_kafka_outq_len(rk))
                die("%s", "warm-up message not delivered in 30 s");
}

static int cmp_i32(const void *a, const void *b) {
        int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
        return (x > y) - (x < y);
}

/* produce: delivery reports. The broker's acknowledgement time of every
 * message (produce() -> delivery report) tells the producer's share of an
 * end-to-end latency from the consumer's. */
typedef struct {
        long failed;
        int32_t *ack_ms;
        long acked, cap;
        FILE *series;
        int64_t first_ts;
        const char *topic; /* the measured topic (not the warm-up's) */
} delivery_t;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
        (void)rk;
        delivery_t *d = opaque;
        if (m->err) {
                d->failed++;
                fprintf(stderr, "krib-loadgen: delivery failed: %s\n", rd_kafka_err2str(m->err));
                return;
        }
        if (strcmp(rd_kafka_topic_name(m->rkt), d->topic))
                return;
        int64_t ts = rd_kafka_message_timestamp(m, NULL), ms = krib_clock_wall_ms() - ts;
        if (d->acked < d->cap)
                d->ack_ms[d->acked++] = (int32_t)(ms < 0 ? 0 : ms > INT32_MAX ? INT32_MAX : ms);
        if (d->series) {
                if (d->first_ts < 0)
                        d->first_ts = ts;
                fprintf(d->series, "%" PRId64 " %" PRId64 " %" PRId32 "\n", ts - d->first_ts, ms,
                        m->partition);
        }
}

static int cmd_produce(const opts_t *o) {
        char err[512];
        krib_encode_t *enc = krib_encode_new_file(o->schema, err, sizeof(err));
        if (!enc)
                die("%s", err);
        rd_kafka_t *rk;
        {
                rd_kafka_conf_t *c = producer_conf(o);
                static delivery_t dv = {.first_ts = -1};
                dv.cap = o->count * o->passes + o->malformed;
                dv.topic = o->topic;
                dv.ack_ms = malloc((size_t)(dv.cap ? dv.cap : 1) * sizeof(*dv.ack_ms));
                if (o->series && !(dv.series = fopen(o->series, "w")))
                        die("cannot write %s", o->series);
                rd_kafka_conf_set_dr_msg_cb(c, on_delivery);
                rd_kafka_conf_set_opaque(c, &dv);
                rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
                if (!rk)
                        die("%s", err);
        }
        delivery_t *dv = rd_kafka_opaque(rk);
        producer_warm_up(rk, o);
        /* --single-object: 0xC3 0x01 + CRC-64-AVRO of the schema's canonical form. */
        unsigned char header[10];
        size_t hlen = 0;
        if (o->single_object) {
                size_t jl;
                char *json = krib_util_slurp(o->schema, &jl, err, sizeof(err));
                static char canon[65536];
                int cl = json ? krib_schemas_canonical(json, jl, canon, sizeof(canon)) : -1;
                free(json);
                if (cl < 0)
                        die("cannot fingerprint %s", o->schema);
                uint64_t fp = krib_schemas_fingerprint(canon, (size_t)cl);
                header[0] = 0xC3;
                header[1] = 0x01;
                for (int i = 0; i < 8; i++)
                        header[2 + i] = (unsigned char)(fp >> (8 * i));
                hlen = 10;
        }
        long total = o->count * o->passes + o->malformed;
        long every = o->malformed ? total / (o->malformed + 1) : 0;
        long next_bad = every ? every : -1, bad = 0;
        int64_t t0 = krib_clock_mono_us();
        krib_event_t ev;
        memset(&ev, 0, sizeof(ev));
        krib_event_reset(&ev);
        char buf[8192], entity[256];
        long i = 0;
        for (long n = 0; n < total; n++) {
                const void *payload;
                size_t len;
                char key[256];
                if (n == next_bad && bad < o->malformed) {
                        /* Not Avro of our schema: a stray JSON document. */
                        len = (size_t)snprintf(buf, sizeof(buf), "{\"not\":\"avro\",\"n\":%ld}",
                                               bad);
                        snprintf(key, sizeof(key), "malformed-%ld", bad);
                        payload = buf;
                        bad++;
                        next_bad += every;
                } else {
                        krib_event_reset(&ev);
                        long pass = o->count ? i / o->count : 0, e = o->count ? i % o->count : 0;
                        long long version = o->version_base + pass * o->count + e + 1;
                        int el = snprintf(entity, sizeof(entity), "%s:%ld", o->prefix, e);
                        krib_event_strdup(&ev, &ev.entity, entity, (size_t)el);
                        ev.keys = krib_event_alloc(&ev,
                                                   (size_t)o->keys_per_event * sizeof(krib_str_t));
                        for (long j = 0; j < o->keys_per_event; j++) {
                                int kl = key_of(o, e, j, key, sizeof(key));
                                krib_event_strdup(&ev, &ev.keys[j], key, (size_t)kl);
                        }
                        ev.key_count = (size_t)o->keys_per_event;
                        ev.version = krib_event_alloc(&ev, sizeof(krib_vv_entry_t));
                        krib_event_strdup(&ev, &ev.version[0].origin, "db", 2);
                        ev.version[0].counter = version;
                        ev.version_count = 1;
                        ev.action = KRIB_ACTION_DELETE;
                        if (o->upsert_mod > 0 && e % o->upsert_mod == 0) {
                                char v[32];
                                int vl = snprintf(v, sizeof(v), "v%lld", version);
                                ev.action = KRIB_ACTION_UPSERT;
                                krib_event_strdup(&ev, &ev.value, v, (size_t)vl);
                        }
                        ev.ts_ms = krib_clock_wall_ms();
                        memcpy(buf, header, hlen);
                        if (krib_encode_event(enc, &ev, buf + hlen, sizeof(buf) - hlen, &len))
                                die("cannot encode event %s", entity);
                        len += hlen;
                        snprintf(key, sizeof(key), "%s", entity);
                        payload = buf;
                        i++;
                }
                for (;;) {
                        rd_kafka_resp_err_t e = rd_kafka_producev(
                                rk, RD_KAFKA_V_TOPIC(o->topic),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_KEY(key, strlen(key)),
                                RD_KAFKA_V_VALUE((void *)payload, len), RD_KAFKA_V_END);
                        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                                rd_kafka_poll(rk, 10);
                                continue;
                        }
                        if (e)
                                die("produce: %s", rd_kafka_err2str(e));
                        break;
                }
                if ((n & 1023) == 0)
                        rd_kafka_poll(rk, 0);
                /* --rate: hold the average to rate events/s (checked every
                 * 256 events, so short bursts stay cheap). */
                if (o->rate > 0 && (n & 255) == 255) {
                        int64_t due = t0 + (int64_t)((double)(n + 1) * 1e6 / (double)o->rate);
                        int64_t now = krib_clock_mono_us();
                        if (due > now) {
                                rd_kafka_poll(rk, 0);
                                struct timespec ts = {(due - now) / 1000000,
                                                      ((due - now) % 1000000) * 1000};
                                nanosleep(&ts, NULL);
                        }
                }
        }
        rd_kafka_flush(rk, 60000);
        long left = rd_kafka_outq_len(rk);
        double secs = (double)(krib_clock_mono_us() - t0) / 1e6;
        printf("produced %ld events + %ld malformed to %s in %.2fs (%.0f msg/s)\n", i, bad,
               o->topic, secs, secs > 0 ? (double)total / secs : 0.0);
        if (dv->acked) {
                qsort(dv->ack_ms, (size_t)dv->acked, sizeof(*dv->ack_ms), cmp_i32);
                printf("acked p50_ms=%" PRId32 " p99_ms=%" PRId32 " max_ms=%" PRId32 "\n",
                       dv->ack_ms[dv->acked / 2], dv->ack_ms[(dv->acked * 99) / 100],
                       dv->ack_ms[dv->acked - 1]);
        }
        if (dv->series)
                fclose(dv->series);
        free(dv->ack_ms);
        krib_event_destroy(&ev);
        krib_encode_destroy(enc);
        rd_kafka_destroy(rk);
        if (left || dv->failed) {
                fprintf(stderr, "krib-loadgen: %ld undelivered, %ld failed\n", left, dv->failed);
                return 1;
        }
        return 0;
}

/* Connections to every master of the cluster (or the one standalone node). */
typedef struct {
        krib_topo_t topo;
        redisContext **ctx;
        long *queued;
} redis_t;

static void redis_open(redis_t *r, const char *seed) {
        krib_addr_t a;
        if (krib_addr_parse(seed, &a))
                die("bad redis address %s", seed);
        redisContext *c = redisConnect(a.host, a.port);
        if (!c || c->err)
                die("cannot connect to redis %s", seed);
        krib_topo_init(&r->topo);
        redisReply *rep = redisCommand(c, "CLUSTER SLOTS");
        char err[256];
        if (rep && rep->type == REDIS_REPLY_ERROR) /* standalone */
                krib_topo_load_standalone(&r->topo, &a);
        else if (krib_topo_load_slots(&r->topo, rep, a.host, err, sizeof(err)))
                die("%s", err);
        if (rep)
                freeReplyObject(rep);
        redisFree(c);
        r->ctx = calloc(r->topo.master_count, sizeof(*r->ctx));
        r->queued = calloc(r->topo.master_count, sizeof(*r->queued));
        for (size_t m = 0; m < r->topo.master_count; m++) {
                r->ctx[m] = redisConnect(r->topo.masters[m].host, r->topo.masters[m].port);
                if (!r->ctx[m] || r->ctx[m]->err)
                        die("cannot connect to master %s", r->topo.masters[m].host);
        }
}

static long redis_drain(redis_t *r, int want_integer_sum) {
        long sum = 0;
        for (size_t m = 0; m < r->topo.master_count; m++) {
                for (; r->queued[m]; r->queued[m]--) {
                        redisReply *rep;
                        if (redisGetReply(r->ctx[m], (void **)&rep) != REDIS_OK)
                                die("redis: %s", r->ctx[m]->errstr);
                        if (rep->type == REDIS_REPLY_ERROR)
                                die("redis: %s", rep->str);
                        if (want_integer_sum && rep->type == REDIS_REPLY_INTEGER)
                                sum += rep->integer;
                        freeReplyObject(rep);
                }
        }
        return sum;
}

static long cmd_keys(const opts_t *o, int populate) {
        redis_t r;
        redis_open(&r, o->redis);
        long total = 0;
        char key[256];
        for (long i = 0; i < o->count; i++) {
                for (long j = 0; j < o->keys_per_event; j++) {
                        int kl = key_of(o, i, j, key, sizeof(key));
                        int m = r.topo.slot_owner[krib_slot_of(key, (size_t)kl)];
                        if (m < 0)
                                die("slot of %s has no owner", key);
                        if (populate && o->upsert_mod > 0 && i % o->upsert_mod == 0) {
                                /* A write-through entity's value, as a leased
                                 * fill leaves it: cached with its version (the
                                 * base, older than every event), so that
                                 * redis.fence=versioned writes the newer ones. */
                                char fk[300];
                                int fl = krib_fence_key(key, (size_t)kl, fk, sizeof(fk));
                                if (fl < 0)
                                        die("%s cannot carry a fence", key);
                                redisAppendCommand(r.ctx[m], "SET %b v%lld", key, (size_t)kl,
                                                   o->version_base);
                                redisAppendCommand(r.ctx[m], "SET %b db=%lld\n", fk, (size_t)fl,
                                                   o->version_base);
                                r.queued[m]++;
                        } else if (populate)
                                redisAppendCommand(r.ctx[m], "SET %b cached-%ld", key, (size_t)kl,
                                                   i);
                        else
                                redisAppendCommand(r.ctx[m], "EXISTS %b", key, (size_t)kl);
                        r.queued[m]++;
                }
                if ((i & 1023) == 1023)
                        total += redis_drain(&r, !populate);
        }
        total += redis_drain(&r, !populate);
        for (size_t m = 0; m < r.topo.master_count; m++)
                redisFree(r.ctx[m]);
        free(r.ctx);
        free(r.queued);
        krib_topo_destroy(&r.topo);
        return total;
}

/* verify: the resilience tests' audit (see the header comment). */
static int cmd_verify(const opts_t *o) {
        redis_t r;
        redis_open(&r, o->redis);
        long keys = 0, lost = 0, regressions = 0;
        long long last = o->version_base + (o->passes - 1) * o->count;
        char key[256];
        /* Replies come back per master in order: remember which entity each was. */
        size_t stride = 1024 * (size_t)o->keys_per_event;
        long *pending = malloc(sizeof(long) * stride * r.topo.master_count);
        if (!pending)
                die("%s", "out of memory");
        for (long i0 = 0; i0 < o->count; i0 += 1024) {
                long i1 = i0 + 1024 < o->count ? i0 + 1024 : o->count;
                for (long i = i0; i < i1; i++)
                        for (long j = 0; j < o->keys_per_event; j++) {
                                int kl = key_of(o, i, j, key, sizeof(key));
                                int m = r.topo.slot_owner[krib_slot_of(key, (size_t)kl)];
                                if (m < 0)
                                        die("slot of %s has no owner", key);
                                redisAppendCommand(r.ctx[m], "GET %b", key, (size_t)kl);
                                pending[(size_t)m * stride + (size_t)r.queued[m]++] = i;
                        }
                for (size_t m = 0; m < r.topo.master_count; m++) {
                        for (long q = 0; q < r.queued[m]; q++) {
                                long i = pending[m * stride + (size_t)q];
                                redisReply *rep;
                                if (redisGetReply(r.ctx[m], (void **)&rep) != REDIS_OK)
                                        die("redis: %s", r.ctx[m]->errstr);
                                if (rep->type == REDIS_REPLY_ERROR)
                                        die("redis: %s", rep->str);
                                keys++;
                                int upsert = o->upsert_mod > 0 && i % o->upsert_mod == 0;
                                if (!upsert) {
                                        lost += rep->type != REDIS_REPLY_NIL;
                                } else if (rep->type != REDIS_REPLY_STRING || rep->str[0] != 'v') {
                                        lost++;
                                } else {
                                        long long v = atoll(rep->str + 1);
                                        if (v < last + i + 1)
                                                regressions++;
                                        else if (v > last + i + 1)
                                                lost++; /* not a version this run wrote */
                                }
                                freeReplyObject(rep);
                        }
                        r.queued[m] = 0;
                }
        }
        printf("keys=%ld lost=%ld regressions=%ld\n", keys, lost, regressions);
        free(pending);
        for (size_t m = 0; m < r.topo.master_count; m++)
                redisFree(r.ctx[m]);
        free(r.ctx);
        free(r.queued);
        krib_topo_destroy(&r.topo);
        return 0;
}

/* drain: a bare librdkafka consumer (library defaults, fresh group) reading
 * the whole topic: the Kafka side's speed limit on this machine. */
static int cmd_drain(const opts_t *o) {
        char err[512], group[128];
        snprintf(group, sizeof(group), "krib-loadgen-drain-%d", (int)getpid());
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        if (rd_kafka_conf_set(c, "bootstrap.servers", o->brokers, err, sizeof(err)) ||
            rd_kafka_conf_set(c, "group.id", group, err, sizeof(err)) ||
            rd_kafka_conf_set(c, "auto.offset.reset", "earliest", err, sizeof(err)) ||
            rd_kafka_conf_set(c, "enable.auto.commit", "false", err, sizeof(err)))
                die("%s", err);
        apply_props(o, c);
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
        if (!rk)
                die("%s", err);
        rd_kafka_poll_set_consumer(rk);
        int64_t total = 0;
        for (int p = 0; o->expect <= 0 && p < o->partitions; p++) {
                int64_t lo, hi;
                if (rd_kafka_query_watermark_offsets(rk, o->topic, p, &lo, &hi, 10000))
                        die("cannot read watermarks of %s", o->topic);
                total += hi - lo;
        }
        rd_kafka_topic_partition_list_t *t = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(t, o->topic, RD_KAFKA_PARTITION_UA);
        rd_kafka_subscribe(rk, t);
        rd_kafka_topic_partition_list_destroy(t);
        if (o->expect > 0)
                total = o->expect;
        /* --expect: message timestamp (the producer's clock at produce())
         * -> received, per message: Kafka's own share of krib's latency. */
        int32_t *lat = o->expect > 0 ? malloc((size_t)total * sizeof(*lat)) : NULL;
        FILE *series = lat && o->series ? fopen(o->series, "w") : NULL;
        if (lat && o->series && !series)
                die("cannot write %s", o->series);
        int64_t first_ts = -1;
        int64_t got = 0, bytes = 0, t0 = 0, pass_total = total;
        int64_t give_up = krib_clock_mono_us() + 300 * 1000000LL;
        int ready = 0, passes = 1;
        for (;;) {
                /* --min-seconds: a topic drained in a fraction of a second
                 * measures start-up more than the rate: read it again from
                 * the start (same partitions, same broker cache) until the
                 * drain has lasted that long. */
                if (got == total && o->min_seconds > 0 && !lat && pass_total > 0 &&
                    (double)(krib_clock_mono_us() - t0) / 1e6 < o->min_seconds) {
                        rd_kafka_topic_partition_list_t *a = NULL;
                        if (rd_kafka_assignment(rk, &a) || !a->cnt)
                                die("%s", "no assignment to read again");
                        for (int i = 0; i < a->cnt; i++)
                                a->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING;
                        rd_kafka_error_t *se = rd_kafka_seek_partitions(rk, a, 10000);
                        if (se)
                                die("seek: %s", rd_kafka_error_string(se));
                        for (int i = 0; i < a->cnt; i++)
                                if (a->elems[i].err)
                                        die("seek: %s", rd_kafka_err2str(a->elems[i].err));
                        rd_kafka_topic_partition_list_destroy(a);
                        total += pass_total;
                        passes++;
                }
                if (got >= total || krib_clock_mono_us() >= give_up)
                        break;
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
                if (lat && !ready) { /* tells bench/run to start producing */
                        rd_kafka_topic_partition_list_t *a = NULL;
                        if (!rd_kafka_assignment(rk, &a) && a->cnt) {
                                printf("ready\n");
                                fflush(stdout);
                                ready = 1;
                        }
                        if (a)
                                rd_kafka_topic_partition_list_destroy(a);
                }
                if (!m)
                        continue;
                if (!m->err) {
                        if (!got)
                                t0 = krib_clock_mono_us();
                        if (lat) {
                                int64_t ts = rd_kafka_message_timestamp(m, NULL);
                                int64_t d = krib_clock_wall_ms() - ts;
                                if (series) {
                                        if (first_ts < 0)
                                                first_ts = ts;
                                        fprintf(series, "%" PRId64 " %" PRId64 " %" PRId32 "\n",
                                                ts - first_ts, d, m->partition);
                                }
                                lat[got] = (int32_t)(d < 0 ? 0 : d > INT32_MAX ? INT32_MAX : d);
                        }
                        got++;
                        bytes += (int64_t)m->len;
                }
                rd_kafka_message_destroy(m);
        }
        if (series)
                fclose(series);
        if (lat && got) {
                qsort(lat, (size_t)got, sizeof(*lat), cmp_i32);
                printf("latency p50_ms=%" PRId32 " p99_ms=%" PRId32 " max_ms=%" PRId32 "\n",
                       lat[got / 2], lat[(got * 99) / 100], lat[got - 1]);
        }
        free(lat);
        double secs = (double)(krib_clock_mono_us() - t0) / 1e6;
        printf("drained %" PRId64 " of %" PRId64 " messages (%" PRId64
               " bytes, %d pass%s) in %.3fs: %.0f msg/s\n",
               got, total, bytes, passes, passes > 1 ? "es" : "", secs,
               secs > 0 ? (double)got / secs : 0.0);
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        return got == total ? 0 : 1;
}

/* unlink: the Redis side's speed limit: the same keys, grouped by slot into
 * UNLINKs of up to 64 keys, pipelined to every master at once. */
static int cmd_unlink(const opts_t *o) {
        redis_t r;
        redis_open(&r, o->redis);
        long n = o->count * o->keys_per_event;
        char **keys = malloc((size_t)n * sizeof(*keys));
        uint32_t *order = malloc((size_t)n * sizeof(*order));
        uint32_t *count = calloc(KRIB_SLOT_COUNT + 1, sizeof(*count));
        uint16_t *slot = malloc((size_t)n * sizeof(*slot));
        if (!keys || !order || !count || !slot)
                die("%s", "out of memory");
        char key[256];
        long k = 0;
        for (long i = 0; i < o->count; i++)
                for (long j = 0; j < o->keys_per_event; j++, k++) {
                        key_of(o, i, j, key, sizeof(key));
                        keys[k] = strdup(key);
                        slot[k] = (uint16_t)krib_slot_of(key, strlen(key));
                        count[slot[k] + 1]++;
                }
        int64_t t0 = krib_clock_mono_us();
        for (int s = 0; s < KRIB_SLOT_COUNT; s++)
                count[s + 1] += count[s];
        for (long x = 0; x < n; x++)
                order[count[slot[x]]++] = (uint32_t)x;
        const char *argv[65];
        size_t argvlen[65];
        long commands = 0, removed = 0;
        for (long i = 0; i < n;) {
                long j = i;
                int m = r.topo.slot_owner[slot[order[i]]];
                int argc = 0;
                argv[argc] = "UNLINK";
                argvlen[argc++] = 6;
                while (j < n && j - i < 64 && slot[order[j]] == slot[order[i]]) {
                        argv[argc] = keys[order[j]];
                        argvlen[argc++] = strlen(keys[order[j]]);
                        j++;
                }
                redisAppendCommandArgv(r.ctx[m], argc, argv, argvlen);
                r.queued[m]++;
                commands++;
                i = j;
                /* Windows of ~2000 commands per master: write all, then read. */
                if (commands % 6000 == 0) {
                        for (size_t c = 0; c < r.topo.master_count; c++) {
                                int done = 0;
                                while (!done && redisBufferWrite(r.ctx[c], &done) == REDIS_OK)
                                        ;
                        }
                        removed += redis_drain(&r, 1);
                }
        }
        for (size_t c = 0; c < r.topo.master_count; c++) {
                int done = 0;
                while (!done && redisBufferWrite(r.ctx[c], &done) == REDIS_OK)
                        ;
        }
        removed += redis_drain(&r, 1);
        double secs = (double)(krib_clock_mono_us() - t0) / 1e6;
        printf("unlinked %ld of %ld keys with %ld commands (%.1f keys/command) in %.3fs: %.0f "
               "keys/s\n",
               removed, n, commands, (double)n / (double)commands, secs,
               secs > 0 ? (double)n / secs : 0.0);
        for (long x = 0; x < n; x++)
                free(keys[x]);
        free(keys);
        free(order);
        free(count);
        free(slot);
        for (size_t m = 0; m < r.topo.master_count; m++)
                redisFree(r.ctx[m]);
        free(r.ctx);
        free(r.queued);
        krib_topo_destroy(&r.topo);
        return removed == n ? 0 : 1;
}

/* lag: "<committed> <log end>" summed over the topic's partitions. */
static int cmd_lag(const opts_t *o, const char *group) {
        char err[512];
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        rd_kafka_conf_set(c, "bootstrap.servers", o->brokers, err, sizeof(err));
        rd_kafka_conf_set(c, "group.id", group, err, sizeof(err));
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
        if (!rk)
                die("%s", err);
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(o->partitions);
        int64_t end = 0, com = 0;
        for (int p = 0; p < o->partitions; p++) {
                int64_t lo, hi;
                if (rd_kafka_query_watermark_offsets(rk, o->topic, p, &lo, &hi, 10000))
                        die("cannot read watermarks of %s", o->topic);
                end += hi;
                rd_kafka_topic_partition_list_add(l, o->topic, p);
        }
        if (rd_kafka_committed(rk, l, 10000))
                die("%s", "cannot read committed offsets");
        for (int p = 0; p < l->cnt; p++)
                com += l->elems[p].offset > 0 ? l->elems[p].offset : 0;
        printf("%" PRId64 " %" PRId64 "\n", com, end);
        rd_kafka_topic_partition_list_destroy(l);
        rd_kafka_destroy(rk);
        return 0;
}

int main(int argc, char **argv) {
        if (argc < 2) {
                fprintf(stderr, "usage: krib-loadgen create|produce|populate|count [options]\n");
                return 2;
        }
        const char *cmd = argv[1];
        opts_t o = {.brokers = getenv("KRIB_KAFKA_BROKERS") ? getenv("KRIB_KAFKA_BROKERS")
                                                            : "127.0.0.1:19092",
                    .topic = "invalidations",
                    .prefix = "user",
                    .schema = "schemas/invalidation.avsc",
                    .redis = "127.0.0.1:19100",
                    .count = 100,
                    .keys_per_event = 1,
                    .partitions = 6,
                    .passes = 1,
                    .linger_ms = 20};
        static char seed[256];
        if (getenv("KRIB_REDIS_NODES")) {
                snprintf(seed, sizeof(seed), "%s", getenv("KRIB_REDIS_NODES"));
                char *c = strchr(seed, ',');
                if (c)
                        *c = '\0';
                o.redis = seed;
        }
        static const struct option lo[] = {{"brokers", required_argument, NULL, 'b'},
                                           {"topic", required_argument, NULL, 't'},
                                           {"prefix", required_argument, NULL, 'x'},
                                           {"schema", required_argument, NULL, 's'},
                                           {"redis", required_argument, NULL, 'r'},
                                           {"count", required_argument, NULL, 'n'},
                                           {"keys-per-event", required_argument, NULL, 'k'},
                                           {"malformed", required_argument, NULL, 'm'},
                                           {"partitions", required_argument, NULL, 'p'},
                                           {"rate", required_argument, NULL, 'R'},
                                           {"group", required_argument, NULL, 'g'},
                                           {"single-object", no_argument, NULL, 'S'},
                                           {"version-base", required_argument, NULL, 'V'},
                                           {"tag-mod", required_argument, NULL, 'T'},
                                           {"upsert-mod", required_argument, NULL, 'U'},
                                           {"passes", required_argument, NULL, 'P'},
                                           {"linger-ms", required_argument, NULL, 'L'},
                                           {"expect", required_argument, NULL, 'E'},
                                           {"property", required_argument, NULL, 'X'},
                                           {"series", required_argument, NULL, 'D'},
                                           {"warm", no_argument, NULL, 'W'},
                                           {"min-seconds", required_argument, NULL, 'M'},
                                           {NULL, 0, NULL, 0}};
        int c;
        optind = 2;
        while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
                switch (c) {
                case 'b':
                        o.brokers = optarg;
                        break;
                case 't':
                        o.topic = optarg;
                        break;
                case 'x':
                        o.prefix = optarg;
                        break;
                case 's':
                        o.schema = optarg;
                        break;
                case 'r':
                        o.redis = optarg;
                        break;
                case 'n':
                        o.count = atol(optarg);
                        break;
                case 'k':
                        o.keys_per_event = atol(optarg);
                        break;
                case 'm':
                        o.malformed = atol(optarg);
                        break;
                case 'p':
                        o.partitions = atol(optarg);
                        break;
                case 'R':
                        o.rate = atol(optarg);
                        break;
                case 'g':
                        o.group = optarg;
                        break;
                case 'S':
                        o.single_object = 1;
                        break;
                case 'V':
                        o.version_base = atoll(optarg);
                        break;
                case 'T':
                        o.tag_mod = atol(optarg);
                        break;
                case 'U':
                        o.upsert_mod = atol(optarg);
                        break;
                case 'P':
                        o.passes = atol(optarg);
                        break;
                case 'L':
                        o.linger_ms = atol(optarg);
                        break;
                case 'E':
                        o.expect = atol(optarg);
                        break;
                case 'M':
                        o.min_seconds = atof(optarg);
                        break;
                case 'W':
                        o.warm = 1;
                        break;
                case 'D':
                        o.series = optarg;
                        break;
                case 'X':
                        if (o.nprops == (int)(sizeof(o.props) / sizeof(o.props[0])))
                                die("%s", "too many --property options");
                        o.props[o.nprops++] = optarg;
                        break;
                default:
                        return 2;
                }
        }
        if (o.count < 0 || o.keys_per_event < 1 || o.keys_per_event > 64 || o.malformed < 0 ||
            o.partitions < 1 || o.passes < 1 || o.upsert_mod < 0)
                die("%s", "bad numeric option");
        if (!strcmp(cmd, "create"))
                return cmd_create(&o);
        if (!strcmp(cmd, "produce"))
                return cmd_produce(&o);
        if (!strcmp(cmd, "populate")) {
                cmd_keys(&o, 1);
                printf("populated %ld keys\n", o.count * o.keys_per_event);
                return 0;
        }
        if (!strcmp(cmd, "verify"))
                return cmd_verify(&o);
        if (!strcmp(cmd, "drain"))
                return cmd_drain(&o);
        if (!strcmp(cmd, "unlink"))
                return cmd_unlink(&o);
        if (!strcmp(cmd, "lag")) {
                if (!o.group)
                        die("%s", "lag needs --group");
                return cmd_lag(&o, o.group);
        }
        if (!strcmp(cmd, "count")) {
                printf("%ld\n", cmd_keys(&o, 0));
                return 0;
        }
        die("unknown command %s", cmd);
        return 2;
}
