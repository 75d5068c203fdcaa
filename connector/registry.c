#include "registry.h"

#include <avro.h>
#include <curl/curl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "avrojson.h"
#include "bg.h"
#include "clock.h"
#include "decode.h"
#include "log.h"

typedef struct {
        int32_t id;
        avro_schema_t schema;
        avro_value_iface_t *iface;
        avro_value_t value;
        krib_avrojson_decimals_t *decimals; /* logical types avro-c does not keep */
} entry_t;

typedef struct {
        char *buf;
        size_t len;
} body_t;

/* One GET of a schema, on a helper thread with its own curl handle. */
typedef struct {
        krib_bg_job_t bg; /* first */
        char url[1200];
        int64_t timeout_ms;
        int32_t id;
        long status; /* HTTP status, or -1 (transport error, in why) */
        body_t body;
        char why[CURL_ERROR_SIZE + 64];
} fetch_t;

struct krib_registry {
        char *url;
        int64_t timeout_ms;
        krib_bg_t *bg;
        fetch_t *fetching; /* the GET in flight (one at a time), or NULL */
        entry_t *v;
        size_t n, cap;
        avro_reader_t reader;
        /* While the registry is down: the next fetch attempt, backoff. */
        int64_t retry_at_us, warned_at_us;
        unsigned attempt;
        krib_registry_stats_t stats;
};

krib_registry_t *krib_registry_new(const char *url, int64_t timeout_ms, char *errstr,
                                   size_t errstr_size) {
        static int curl_ready;
        if (!curl_ready && curl_global_init(CURL_GLOBAL_DEFAULT) == 0)
                curl_ready = 1;
        krib_registry_t *r = calloc(1, sizeof(*r));
        if (!r || !(r->url = strdup(url)) || !(r->bg = krib_bg_new(0)) ||
            !(r->reader = avro_reader_memory(NULL, 0))) {
                snprintf(errstr, errstr_size, "schema registry client: out of memory");
                krib_registry_destroy(r);
                return NULL;
        }
        size_t l = strlen(r->url);
        while (l && r->url[l - 1] == '/')
                r->url[--l] = '\0';
        r->timeout_ms = timeout_ms;
        return r;
}

int64_t krib_registry_due_us(const krib_registry_t *r) {
        if (r->fetching) /* its end wakes the loop (krib_registry_wake_fd) */
                return krib_bg_ready(r->bg) ? 0 : INT64_MAX;
        return r->retry_at_us;
}

int krib_registry_wake_fd(const krib_registry_t *r) {
        return r->fetching ? krib_bg_wake_fd(r->bg) : -1;
}

int krib_registry_fetching(const krib_registry_t *r) {
        return r->fetching != NULL;
}

static size_t on_body(char *p, size_t size, size_t n, void *opaque) {
        body_t *b = opaque;
        size_t add = size * n;
        if (b->len + add > 4 << 20) /* a schema is never this big */
                return 0;
        char *nb = realloc(b->buf, b->len + add + 1);
        if (!nb)
                return 0;
        memcpy(nb + b->len, p, add);
        b->buf = nb;
        b->len += add;
        b->buf[b->len] = '\0';
        return add;
}

/* One GET (helper thread). Returns the HTTP status, or -1 (transport
 * error, in why). */
static long http_get(int64_t timeout_ms, const char *url, body_t *body, char *why, size_t size) {
        CURL *c = curl_easy_init();
        if (!c) {
                snprintf(why, size, "out of memory");
                return -1;
        }
        char cerr[CURL_ERROR_SIZE] = "";
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
        struct curl_slist *h = curl_slist_append(
                NULL, "Accept: application/vnd.schemaregistry.v1+json, application/json");
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        CURLcode rc = curl_easy_perform(c);
        curl_slist_free_all(h);
        long status = -1;
        if (rc != CURLE_OK)
                snprintf(why, size, "%s", *cerr ? cerr : curl_easy_strerror(rc));
        else
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(c);
        return status;
}

static void fetch_run(krib_bg_job_t *b) {
        fetch_t *f = (fetch_t *)b;
        f->status = http_get(f->timeout_ms, f->url, &f->body, f->why, sizeof(f->why));
}

static void fetch_free(fetch_t *f) {
        free(f->body.buf);
        free(f);
}

/* Applies a finished GET: the cache entry of id, or NULL as schema_of. */
static entry_t *fetched(krib_registry_t *r, fetch_t *f, int32_t id, int *bad, char *errstr,
                        size_t size) {
        const char *url = f->url, *why = f->why;
        body_t body = f->body;
        f->body.buf = NULL; /* freed below, on every path */
        long st = f->status;
        r->stats.fetches++;
        if (st == 200) {
                json_error_t je;
                json_t *doc = json_loadb(body.buf, body.len, 0, &je);
                const char *text = json_string_value(json_object_get(doc, "schema"));
                const char *type = json_string_value(json_object_get(doc, "schemaType"));
                avro_schema_t s = NULL;
                int ok = text && (!type || !strcmp(type, "AVRO")) &&
                         !avro_schema_from_json_length(text, strlen(text), &s);
                krib_avrojson_decimals_t *decimals = ok ? krib_avrojson_scan(text) : NULL;
                if (!ok)
                        snprintf(errstr, size, "schema id %" PRId32 ": %s", id,
                                 !text ? "no schema in the registry's answer"
                                 : type && strcmp(type, "AVRO") ? "not an Avro schema"
                                                                : avro_strerror());
                json_decref(doc);
                free(body.buf);
                if (!ok) {
                        *bad = 1;
                        r->stats.unknown++;
                        return NULL;
                }
                if (r->n == r->cap) {
                        size_t cap = r->cap ? r->cap * 2 : 16;
                        entry_t *v = realloc(r->v, cap * sizeof(*v));
                        if (!v) {
                                krib_avrojson_free(decimals);
                                avro_schema_decref(s);
                                *bad = 1;
                                snprintf(errstr, size, "out of memory");
                                return NULL;
                        }
                        r->v = v;
                        r->cap = cap;
                }
                entry_t *e = &r->v[r->n];
                e->id = id;
                e->schema = s;
                e->decimals = decimals;
                e->iface = avro_generic_class_from_schema(s);
                if (!e->iface || avro_generic_value_new(e->iface, &e->value)) {
                        if (e->iface)
                                avro_value_iface_decref(e->iface);
                        krib_avrojson_free(decimals);
                        avro_schema_decref(s);
                        *bad = 1;
                        snprintf(errstr, size, "schema id %" PRId32 ": %s", id, avro_strerror());
                        return NULL;
                }
                r->n++;
                r->attempt = 0;
                r->retry_at_us = 0;
                krib_log_info("registry", "msg=\"writer schema fetched\" id=%" PRId32, id);
                return e;
        }
        free(body.buf);
        if (st == 404 || st == 422) {
                *bad = 1;
                r->stats.unknown++;
                snprintf(errstr, size,
                         "schema id %" PRId32 " is unknown to the registry (HTTP %ld)", id, st);
                return NULL;
        }
        /* Down, slow or failing: wait for it, never dead-letter. */
        r->stats.unavailable++;
        int64_t now = krib_clock_mono_us();
        if (now - r->warned_at_us > 10000000) {
                r->warned_at_us = now;
                if (st < 0)
                        krib_log_warn("registry",
                                      "msg=\"schema registry unreachable, consumption "
                                      "waits\" url=%s error=\"%s\" attempt=%u",
                                      url, why, r->attempt + 1);
                else
                        krib_log_warn("registry",
                                      "msg=\"schema registry failing, consumption "
                                      "waits\" url=%s status=%ld attempt=%u",
                                      url, st, r->attempt + 1);
        }
        int64_t wait_ms = 100LL << (r->attempt < 5 ? r->attempt : 5);
        r->attempt++;
        r->retry_at_us = now + wait_ms * 1000;
        snprintf(errstr, size, "schema registry unavailable");
        return NULL;
}

/* The cache entry of id, fetching it when new. NULL with *bad set (unknown
 * id, unusable schema) or clear (the registry is unavailable: try again at
 * krib_registry_due_us()). */
static entry_t *schema_of(krib_registry_t *r, int32_t id, int *bad, char *errstr, size_t size) {
        *bad = 0;
        for (size_t i = 0; i < r->n; i++)
                if (r->v[i].id == id) {
                        r->stats.cached++;
                        return &r->v[i];
                }
        /* The GET runs on a helper thread (the loop never waits on the
         * registry): its end wakes the loop, and the event asks again. */
        fetch_t *f = NULL;
        if (r->fetching) {
                krib_bg_job_t *b = krib_bg_take(r->bg);
                if (!b) {
                        snprintf(errstr, size, "fetching schema id %" PRId32, r->fetching->id);
                        return NULL;
                }
                f = (fetch_t *)b;
                r->fetching = NULL;
                if (f->id != id) { /* its event was given up meanwhile: ask for this one */
                        fetch_free(f);
                        f = NULL;
                }
        }
        if (!f) {
                if (krib_clock_mono_us() < r->retry_at_us) {
                        snprintf(errstr, size, "schema registry unavailable (waiting to retry)");
                        return NULL;
                }
                if (!(f = calloc(1, sizeof(*f)))) {
                        snprintf(errstr, size, "out of memory");
                        return NULL;
                }
                f->bg.run = fetch_run;
                f->id = id;
                f->timeout_ms = r->timeout_ms;
                snprintf(f->url, sizeof(f->url), "%s/schemas/ids/%" PRId32, r->url, id);
                if (krib_bg_start(r->bg, &f->bg)) {
                        fetch_free(f);
                        snprintf(errstr, size, "out of memory");
                        return NULL;
                }
                r->fetching = f;
                snprintf(errstr, size, "fetching schema id %" PRId32, id);
                return NULL;
        }
        entry_t *e = fetched(r, f, id, bad, errstr, size);
        fetch_free(f);
        return e;
}

krib_reg_result_t krib_registry_decode(krib_registry_t *r, const void *buf, size_t len,
                                       json_t **out, char *errstr, size_t errstr_size) {
        const uint8_t *b = buf;
        *out = NULL;
        if (len < 5 || b[0] != 0) {
                snprintf(errstr, errstr_size,
                         "not Confluent framing (magic byte 0x00 + 4-byte schema id expected)");
                return KRIB_REG_BAD;
        }
        int32_t id = (int32_t)((uint32_t)b[1] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 8 |
                               (uint32_t)b[4]);
        int bad;
        entry_t *e = schema_of(r, id, &bad, errstr, errstr_size);
        if (!e)
                return bad ? KRIB_REG_BAD : KRIB_REG_UNAVAILABLE;
        if (krib_avro_check(e->schema, b + 5, len - 5, errstr, errstr_size))
                return KRIB_REG_BAD;
        avro_value_reset(&e->value);
        avro_reader_memory_set_source(r->reader, (const char *)b + 5, (int64_t)(len - 5));
        if (avro_value_read(r->reader, &e->value)) {
                snprintf(errstr, errstr_size, "malformed Avro (schema id %" PRId32 "): %s", id,
                         avro_strerror());
                return KRIB_REG_BAD;
        }
        if (!(*out = krib_avrojson_value(&e->value, e->decimals))) {
                snprintf(errstr, errstr_size, "Avro value (schema id %" PRId32 ") has no JSON form",
                         id);
                return KRIB_REG_BAD;
        }
        return KRIB_REG_OK;
}

const krib_registry_stats_t *krib_registry_stats(const krib_registry_t *r) {
        return &r->stats;
}

void krib_registry_destroy(krib_registry_t *r) {
        if (!r)
                return;
        for (size_t i = 0; i < r->n; i++) {
                avro_value_decref(&r->v[i].value);
                avro_value_iface_decref(r->v[i].iface);
                avro_schema_decref(r->v[i].schema);
                krib_avrojson_free(r->v[i].decimals);
        }
        free(r->v);
        if (r->reader)
                avro_reader_free(r->reader);
        if (r->bg) {
                krib_bg_wait_all(r->bg); /* a GET in flight: at most registry.timeout_ms */
                krib_bg_job_t *b;
                while ((b = krib_bg_take(r->bg)))
                        fetch_free((fetch_t *)b);
                krib_bg_destroy(r->bg);
        }
        free(r->url);
        free(r);
}
