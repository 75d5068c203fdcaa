#include "sweep.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "slot.h"

typedef struct {
        char **patterns;
        size_t npatterns, pattern;    /* current pattern */
        char (*nodes)[KRIB_ADDR_MAX]; /* masters of the current pattern; NULL: resolve */
        int nnodes, node;
        char cursor[32];
        char *topic;
        int32_t partition;
        int64_t offset;
        unsigned failures, refusals;
        int64_t retry_at_us;
        uint64_t keys;
        uint64_t keys_failed;   /* keys Redis refused to unlink */
        unsigned nodes_skipped; /* (pattern, node) pairs whose SCAN was refused for good */
        /* The UNLINKs of the last SCAN page, in flight: the writer job, its
         * ops (pointing into keys), their status, and the next cursor. */
        int job;
        redisReply *page;
        krib_wop_t *ops;
        uint8_t *status;
        size_t nops;
        char next[32];
} sweep_t;

/* Final SCAN refusals of one node before its part of a pattern is given up. */
#define SWEEP_MAX_REFUSALS 3

struct krib_sweeps {
        krib_writer_t *w;
        long count;
        int fences;
        sweep_t *v;
        size_t n, cap;
        uint64_t keys, finished, keys_failed, incomplete;
};

krib_sweeps_t *krib_sweeps_new(krib_writer_t *w, long scan_count, int fences) {
        krib_sweeps_t *s = calloc(1, sizeof(*s));
        if (s) {
                s->w = w;
                s->count = scan_count;
                s->fences = fences;
        }
        return s;
}

/* Adds pattern (len bytes, prefix/suffix around it) to w's patterns. */
static int add_pattern(sweep_t *w, const char *prefix, const char *p, size_t len,
                       const char *suffix) {
        size_t pl = strlen(prefix), sl = strlen(suffix);
        char *s = malloc(pl + len + sl + 1);
        if (!s)
                return -1;
        memcpy(s, prefix, pl);
        memcpy(s + pl, p, len);
        memcpy(s + pl + len, suffix, sl + 1);
        w->patterns[w->npatterns++] = s;
        return 0;
}

static int is_glob(char c) {
        return c == '*' || c == '?' || c == '[' || c == '\\';
}

int krib_sweep_pattern_slot(const char *pattern, size_t len) {
        const char *open = memchr(pattern, '{', len);
        if (!open)
                return -1;
        const char *close = memchr(open + 1, '}', len - (size_t)(open + 1 - pattern));
        if (!close || close == open + 1)
                return -1;
        for (const char *p = pattern; p < close; p++)
                if (is_glob(*p))
                        return -1;
        return (int)krib_slot_of(pattern, len);
}

/* Gives up the page in flight (if any); the writer forgets it. */
static void page_drop(krib_sweeps_t *s, sweep_t *w) {
        if (w->job >= 0)
                krib_writer_job_cancel(s->w, w->job);
        w->job = -1;
        if (w->page)
                freeReplyObject(w->page);
        w->page = NULL;
        free(w->ops);
        free(w->status);
        w->ops = NULL;
        w->status = NULL;
        w->nops = 0;
}

static void sweep_free(krib_sweeps_t *s, sweep_t *w) {
        page_drop(s, w);
        for (size_t i = 0; i < w->npatterns; i++)
                free(w->patterns[i]);
        free(w->patterns);
        free(w->nodes);
        free(w->topic);
}

int krib_sweeps_add(krib_sweeps_t *s, const krib_str_t *patterns, size_t n, const char *topic,
                    int32_t partition, int64_t offset) {
        if (s->n == s->cap) {
                size_t cap = s->cap ? s->cap * 2 : 8;
                sweep_t *v = realloc(s->v, cap * sizeof(*v));
                if (!v)
                        return -1;
                s->v = v;
                s->cap = cap;
        }
        sweep_t *w = &s->v[s->n];
        memset(w, 0, sizeof(*w));
        w->job = -1;
        if (!(w->patterns = calloc(3 * n, sizeof(*w->patterns))) || !(w->topic = strdup(topic)))
                goto oom;
        for (size_t i = 0; i < n; i++) {
                const char *p = patterns[i].s;
                size_t len = patterns[i].len;
                if (add_pattern(w, "", p, len, ""))
                        goto oom;
                /* The fence names krib_fence_key() gives: "krib:f:<key>" for a
                 * key with a hash tag (same slot), "krib:f:{<key>}" else. */
                if (s->fences &&
                    (add_pattern(w, "krib:f:", p, len, "") ||
                     (!memchr(p, '{', len) && add_pattern(w, "krib:f:{", p, len, "}"))))
                        goto oom;
        }
        w->partition = partition;
        w->offset = offset;
        snprintf(w->cursor, sizeof(w->cursor), "0");
        s->n++;
        krib_log_info("sweep",
                      "msg=\"tag sweep started\" topic=%s partition=%d offset=%lld "
                      "patterns=%zu first=\"%s\"",
                      topic, (int)partition, (long long)offset, n, n ? w->patterns[0] : "");
        return 0;
oom:
        sweep_free(s, w);
        return -1;
}

size_t krib_sweeps_active(const krib_sweeps_t *s) {
        return s ? s->n : 0;
}

/* Restarts the current pattern from scratch after a failure, later. */
static void sweep_failed(sweep_t *w, const char *why) {
        w->failures++;
        int64_t backoff = 100000LL << (w->failures < 6 ? w->failures : 6);
        w->retry_at_us = krib_clock_mono_us() + backoff;
        free(w->nodes);
        w->nodes = NULL;
        w->node = 0;
        snprintf(w->cursor, sizeof(w->cursor), "0");
        if (w->failures == 1 || w->failures % 10 == 0)
                krib_log_warn("sweep",
                              "msg=\"tag sweep step failed, pattern restarts\" pattern=\"%s\" "
                              "error=\"%s\" attempt=%u",
                              w->patterns[w->pattern], why, w->failures);
}

/* The current node's part of the pattern is done. 1 when the sweep is. */
static int node_done(sweep_t *w) {
        snprintf(w->cursor, sizeof(w->cursor), "0");
        if (++w->node < w->nnodes)
                return 0;
        free(w->nodes);
        w->nodes = NULL;
        w->node = 0;
        return ++w->pattern == w->npatterns;
}

/* Once the page's UNLINKs are answered: counts them and moves the cursor.
 * Returns what sweep_step() returns. */
static int page_done(krib_sweeps_t *s, sweep_t *w) {
        if (w->job >= 0 && krib_writer_job_left(s->w, w->job))
                return 0;
        size_t refused = 0;
        for (size_t i = 0; i < w->nops; i++)
                refused += w->status[i] == KRIB_WOP_FAILED;
        w->keys += w->nops - refused;
        s->keys += w->nops - refused;
        w->keys_failed += refused;
        s->keys_failed += refused;
        w->failures = 0;
        if (w->job >= 0)
                krib_writer_job_release(s->w, w->job);
        w->job = -1;
        char next[32];
        snprintf(next, sizeof(next), "%s", w->next);
        page_drop(s, w);
        if (strcmp(next, "0")) {
                snprintf(w->cursor, sizeof(w->cursor), "%s", next);
                return 0;
        }
        return node_done(w);
}

/* One SCAN + UNLINK of sweep w. Returns 1 when the sweep is complete, -1 on
 * shutdown, else 0. */
static int sweep_step(krib_sweeps_t *s, sweep_t *w) {
        if (w->page)
                return page_done(s, w); /* its UNLINKs are in flight */
        if (krib_clock_mono_us() < w->retry_at_us)
                return 0;
        /* Sweeps take at most half of the writer's jobs: batches go first. */
        if (krib_writer_jobs_live(s->w) >= KRIB_WRITER_JOBS / 2)
                return 0;
        const char *pat = w->patterns[w->pattern];
        if (!w->nodes) {
                int slot = krib_sweep_pattern_slot(pat, strlen(pat));
                /* Every master, however many: none may be left unswept. */
                int all = krib_writer_masters(s->w, -1, NULL, 0);
                if (all > 0 && !(w->nodes = calloc((size_t)all, sizeof(*w->nodes))))
                        return 0;
                w->nnodes = all > 0 ? krib_writer_masters(s->w, slot, w->nodes, all) : all;
                if (w->nnodes <= 0) {
                        sweep_failed(w, "no slot map");
                        return 0;
                }
        }
        char next[32];
        redisReply *keys = NULL;
        krib_scan_result_t sc = krib_writer_scan(s->w, w->nodes[w->node], w->cursor, pat, s->count,
                                                 next, sizeof(next), &keys);
        if (sc == KRIB_SCAN_PENDING)
                return 0; /* the page comes in the background: the next turn asks again */
        if (sc == KRIB_SCAN_REFUSED && ++w->refusals >= SWEEP_MAX_REFUSALS) {
                /* Refused for good (an ACL without SCAN, say): retrying would
                 * pin the partition forever. Skip this node's part, count it,
                 * and report the sweep incomplete when it ends. */
                krib_log_error("sweep",
                               "msg=\"SCAN refused for good: this node's part of the pattern is "
                               "skipped\" pattern=\"%s\" node=%s topic=%s partition=%d "
                               "offset=%lld",
                               krib_log_esc(pat, strlen(pat)), w->nodes[w->node], w->topic,
                               (int)w->partition, (long long)w->offset);
                w->nodes_skipped++;
                w->refusals = 0;
                return node_done(w);
        }
        if (sc == KRIB_SCAN_REFUSED) { /* again on the same node, cursor kept, after a pause */
                w->retry_at_us = krib_clock_mono_us() + (200000LL << w->refusals);
                return 0;
        }
        if (sc != KRIB_SCAN_OK) {
                sweep_failed(w, "SCAN failed");
                return 0;
        }
        w->refusals = 0;
        size_t n = keys->elements;
        w->ops = calloc(n ? n : 1, sizeof(*w->ops));
        w->status = calloc(n ? n : 1, 1);
        w->page = keys;
        snprintf(w->next, sizeof(w->next), "%s", next);
        if (!w->ops || !w->status) {
                page_drop(s, w);
                sweep_failed(w, "out of memory");
                return 0;
        }
        for (size_t i = 0; i < n; i++)
                if (keys->element[i]->type == REDIS_REPLY_STRING)
                        w->ops[w->nops++] =
                                (krib_wop_t){keys->element[i]->str, keys->element[i]->len,
                                             KRIB_WOP_UNLINK, NULL};
        if (w->nops && (w->job = krib_writer_submit(s->w, w->ops, w->nops, w->status)) < 0) {
                page_drop(s, w);
                sweep_failed(w, "writer busy");
                return 0;
        }
        return page_done(s, w);
        return node_done(w);
}

int krib_sweeps_step(krib_sweeps_t *s, krib_sweep_done_cb *done, void *opaque) {
        for (size_t i = 0; i < s->n;) {
                sweep_t *w = &s->v[i];
                int rc = sweep_step(s, w);
                if (rc < 0)
                        return -1;
                if (rc == 0) {
                        i++;
                        continue;
                }
                if (w->keys_failed || w->nodes_skipped) {
                        krib_log_error("sweep",
                                       "msg=\"tag sweep incomplete: some keys may still be "
                                       "cached\" topic=%s partition=%d offset=%lld keys=%llu "
                                       "keys_refused=%llu nodes_skipped=%u",
                                       w->topic, (int)w->partition, (long long)w->offset,
                                       (unsigned long long)w->keys,
                                       (unsigned long long)w->keys_failed, w->nodes_skipped);
                        s->incomplete++;
                } else
                        krib_log_info("sweep",
                                      "msg=\"tag sweep done\" topic=%s partition=%d offset=%lld "
                                      "keys=%llu",
                                      w->topic, (int)w->partition, (long long)w->offset,
                                      (unsigned long long)w->keys);
                s->finished++;
                done(opaque, w->topic, w->partition, w->offset);
                sweep_free(s, w);
                s->v[i] = s->v[--s->n];
        }
        return 0;
}

void krib_sweeps_drop(krib_sweeps_t *s, const char *topic, int32_t partition) {
        for (size_t i = 0; s && i < s->n;) {
                if (s->v[i].partition == partition && !strcmp(s->v[i].topic, topic)) {
                        sweep_free(s, &s->v[i]);
                        s->v[i] = s->v[--s->n];
                } else
                        i++;
        }
}

uint64_t krib_sweeps_keys(const krib_sweeps_t *s) {
        return s ? s->keys : 0;
}

uint64_t krib_sweeps_finished(const krib_sweeps_t *s) {
        return s ? s->finished : 0;
}

uint64_t krib_sweeps_keys_failed(const krib_sweeps_t *s) {
        return s ? s->keys_failed : 0;
}

uint64_t krib_sweeps_incomplete(const krib_sweeps_t *s) {
        return s ? s->incomplete : 0;
}

void krib_sweeps_destroy(krib_sweeps_t *s) {
        if (!s)
                return;
        for (size_t i = 0; i < s->n; i++)
                sweep_free(s, &s->v[i]);
        free(s->v);
        free(s);
}
