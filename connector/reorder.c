#include "reorder.h"

#include <stdlib.h>
#include <string.h>

/* The entity name lives in the entry's own allocation; the vector in a
 * separate block, so a vector that gains origins reallocates alone. */
typedef struct entry {
        struct entry *hnext;
        struct entry *prev, *next; /* LRU within the partition, head = newest */
        uint64_t hash;
        uint32_t part;
        size_t vv_count;
        krib_vv_entry_t *vv; /* origins point into vv_text */
        char *vv_text;
        size_t entity_len;
        char entity[];
} entry_t;

typedef struct {
        char *topic;
        const char *seen; /* the caller's pointer for topic: compared first */
        int32_t partition;
        entry_t *head, *tail;
        size_t count;
        int live;
} part_t;

struct krib_reorder {
        size_t capacity;
        entry_t **buckets;
        size_t nbuckets; /* power of two */
        part_t *parts;
        size_t nparts, parts_cap;
        size_t evict_cursor;
        krib_reorder_stats_t stats;
};

krib_vv_order_t krib_vv_compare(const krib_vv_entry_t *a, size_t na, const krib_vv_entry_t *b,
                                size_t nb) {
        int a_ahead = 0, b_ahead = 0;
        for (size_t i = 0; i < na; i++) {
                int64_t bv = 0;
                for (size_t j = 0; j < nb; j++)
                        if (a[i].origin.len == b[j].origin.len &&
                            !memcmp(a[i].origin.s, b[j].origin.s, a[i].origin.len)) {
                                bv = b[j].counter;
                                break;
                        }
                a_ahead |= a[i].counter > bv;
                b_ahead |= a[i].counter < bv;
        }
        /* Origins only b has: b is ahead there unless its counter is 0. */
        for (size_t j = 0; j < nb && !b_ahead; j++) {
                int found = 0;
                for (size_t i = 0; i < na && !found; i++)
                        found = a[i].origin.len == b[j].origin.len &&
                                !memcmp(a[i].origin.s, b[j].origin.s, b[j].origin.len);
                b_ahead |= !found && b[j].counter > 0;
        }
        if (a_ahead && b_ahead)
                return KRIB_VV_CONCURRENT;
        if (a_ahead)
                return KRIB_VV_NEWER;
        if (b_ahead)
                return KRIB_VV_OLDER;
        return KRIB_VV_EQUAL;
}

krib_reorder_t *krib_reorder_new(size_t capacity) {
        krib_reorder_t *r = calloc(1, sizeof(*r));
        if (!r)
                return NULL;
        r->capacity = capacity ? capacity : 1;
        r->nbuckets = 1024;
        r->buckets = calloc(r->nbuckets, sizeof(*r->buckets));
        if (!r->buckets) {
                free(r);
                return NULL;
        }
        return r;
}

static void entry_free(entry_t *e) {
        free(e->vv);
        free(e->vv_text);
        free(e);
}

void krib_reorder_destroy(krib_reorder_t *r) {
        if (!r)
                return;
        for (size_t p = 0; p < r->nparts; p++) {
                for (entry_t *e = r->parts[p].head, *n; e; e = n) {
                        n = e->next;
                        entry_free(e);
                }
                free(r->parts[p].topic);
        }
        free(r->parts);
        free(r->buckets);
        free(r);
}

static uint64_t hash_of(uint32_t part, const char *s, size_t len) {
        uint64_t h = 1469598103934665603ULL ^ part;
        for (size_t i = 0; i < len; i++) {
                h ^= (uint8_t)s[i];
                h *= 1099511628211ULL;
        }
        return h;
}

static int part_index(krib_reorder_t *r, const char *topic, int32_t partition, int create) {
        int free_slot = -1;
        /* The pipeline passes librdkafka's topic name, the same pointer for
         * every message of a topic: found without comparing strings. */
        for (size_t i = 0; i < r->nparts; i++)
                if (r->parts[i].live && r->parts[i].partition == partition &&
                    r->parts[i].seen == topic)
                        return (int)i;
        for (size_t i = 0; i < r->nparts; i++) {
                if (r->parts[i].live && r->parts[i].partition == partition &&
                    !strcmp(r->parts[i].topic, topic)) {
                        r->parts[i].seen = topic;
                        return (int)i;
                }
                if (!r->parts[i].live && free_slot < 0)
                        free_slot = (int)i;
        }
        if (!create)
                return -1;
        if (free_slot < 0) {
                if (r->nparts == r->parts_cap) {
                        size_t cap = r->parts_cap ? r->parts_cap * 2 : 16;
                        part_t *np = realloc(r->parts, cap * sizeof(*np));
                        if (!np)
                                return -1;
                        r->parts = np;
                        r->parts_cap = cap;
                }
                free_slot = (int)r->nparts++;
        } else
                free(r->parts[free_slot].topic);
        part_t *p = &r->parts[free_slot];
        memset(p, 0, sizeof(*p));
        if (!(p->topic = strdup(topic)))
                return -1;
        p->seen = topic;
        p->partition = partition;
        p->live = 1;
        return free_slot;
}

static void lru_unlink(part_t *p, entry_t *e) {
        if (e->prev)
                e->prev->next = e->next;
        else
                p->head = e->next;
        if (e->next)
                e->next->prev = e->prev;
        else
                p->tail = e->prev;
        e->prev = e->next = NULL;
}

static void lru_push(part_t *p, entry_t *e) {
        e->prev = NULL;
        e->next = p->head;
        if (p->head)
                p->head->prev = e;
        p->head = e;
        if (!p->tail)
                p->tail = e;
}

static void remove_entry(krib_reorder_t *r, entry_t *e) {
        entry_t **pp = &r->buckets[e->hash & (r->nbuckets - 1)];
        while (*pp != e)
                pp = &(*pp)->hnext;
        *pp = e->hnext;
        part_t *p = &r->parts[e->part];
        lru_unlink(p, e);
        p->count--;
        r->stats.entities--;
        entry_free(e);
}

static void grow(krib_reorder_t *r) {
        size_t n = r->nbuckets * 2;
        entry_t **b = calloc(n, sizeof(*b));
        if (!b)
                return; /* longer chains, still correct */
        for (size_t i = 0; i < r->nbuckets; i++)
                for (entry_t *e = r->buckets[i], *next; e; e = next) {
                        next = e->hnext;
                        e->hnext = b[e->hash & (n - 1)];
                        b[e->hash & (n - 1)] = e;
                }
        free(r->buckets);
        r->buckets = b;
        r->nbuckets = n;
}

/* Evicts the least recently used entity, preferring the partition being
 * written so a busy partition does not flush the state of quiet ones. */
static void evict_one(krib_reorder_t *r, uint32_t prefer) {
        part_t *p = &r->parts[prefer];
        if (!p->tail || p->count < 2) {
                for (size_t k = 0; k < r->nparts; k++) {
                        size_t i = (r->evict_cursor + k) % r->nparts;
                        if (r->parts[i].live && r->parts[i].tail) {
                                p = &r->parts[i];
                                r->evict_cursor = i + 1;
                                break;
                        }
                }
        }
        if (p->tail) {
                remove_entry(r, p->tail);
                r->stats.evictions++;
        }
}

/* Copies vector v into e (origins included). The same origins as before
 * (the usual case: an entity's versions come from one source) only update
 * the counters: no allocation. */
static int set_vv(entry_t *e, const krib_vv_entry_t *v, size_t n) {
        int same = n == e->vv_count;
        for (size_t i = 0; i < n && same; i++)
                same = v[i].origin.len == e->vv[i].origin.len &&
                       !memcmp(v[i].origin.s, e->vv[i].origin.s, v[i].origin.len);
        if (same) {
                for (size_t i = 0; i < n; i++)
                        e->vv[i].counter = v[i].counter;
                return 0;
        }
        size_t text = 0;
        for (size_t i = 0; i < n; i++)
                text += v[i].origin.len + 1;
        krib_vv_entry_t *vv = malloc(n * sizeof(*vv));
        char *t = malloc(text ? text : 1);
        if (!vv || !t) {
                free(vv);
                free(t);
                return -1;
        }
        char *w = t;
        for (size_t i = 0; i < n; i++) {
                memcpy(w, v[i].origin.s, v[i].origin.len);
                w[v[i].origin.len] = '\0';
                vv[i].origin.s = w;
                vv[i].origin.len = v[i].origin.len;
                vv[i].counter = v[i].counter;
                w += v[i].origin.len + 1;
        }
        free(e->vv);
        free(e->vv_text);
        e->vv = vv;
        e->vv_text = t;
        e->vv_count = n;
        return 0;
}

/* Per-origin maximum of a and b, in ev's arena. */
int krib_vv_merge(krib_event_t *arena, const krib_vv_entry_t *a, size_t na,
                  const krib_vv_entry_t *b, size_t nb, krib_vv_entry_t **out, size_t *nout) {
        krib_vv_entry_t *m = krib_event_alloc(arena, (na + nb) * sizeof(*m));
        if (!m)
                return -1;
        size_t n = 0;
        for (size_t i = 0; i < na; i++)
                m[n++] = a[i];
        for (size_t j = 0; j < nb; j++) {
                size_t i = 0;
                while (i < na && !(m[i].origin.len == b[j].origin.len &&
                                   !memcmp(m[i].origin.s, b[j].origin.s, b[j].origin.len)))
                        i++;
                if (i < na) {
                        if (b[j].counter > m[i].counter)
                                m[i].counter = b[j].counter;
                } else {
                        if (krib_event_strdup(arena, &m[n].origin, b[j].origin.s, b[j].origin.len))
                                return -1;
                        m[n++].counter = b[j].counter;
                }
        }
        *out = m;
        *nout = n;
        return 0;
}

static int merge_into_event(krib_event_t *ev, const krib_vv_entry_t *b, size_t nb) {
        return krib_vv_merge(ev, ev->version, ev->version_count, b, nb, &ev->version,
                             &ev->version_count);
}

krib_reorder_verdict_t krib_reorder_decide(krib_reorder_t *r, const char *topic, int32_t partition,
                                           krib_event_t *ev) {
        if (!ev->version_count)
                return KRIB_REORDER_APPLY;
        int pi = part_index(r, topic, partition, 1);
        if (pi < 0)
                return KRIB_REORDER_APPLY; /* out of memory: applying is the safe side */
        uint64_t h = hash_of((uint32_t)pi, ev->entity.s, ev->entity.len);
        entry_t *e = r->buckets[h & (r->nbuckets - 1)];
        while (e && !(e->hash == h && e->part == (uint32_t)pi && e->entity_len == ev->entity.len &&
                      !memcmp(e->entity, ev->entity.s, ev->entity.len)))
                e = e->hnext;
        part_t *p = &r->parts[pi];
        if (!e) {
                while (r->stats.entities >= r->capacity)
                        evict_one(r, (uint32_t)pi);
                e = calloc(1, sizeof(*e) + ev->entity.len + 1);
                if (!e)
                        return KRIB_REORDER_APPLY;
                memcpy(e->entity, ev->entity.s, ev->entity.len);
                e->entity_len = ev->entity.len;
                e->hash = h;
                e->part = (uint32_t)pi;
                if (set_vv(e, ev->version, ev->version_count)) {
                        free(e);
                        return KRIB_REORDER_APPLY;
                }
                e->hnext = r->buckets[h & (r->nbuckets - 1)];
                r->buckets[h & (r->nbuckets - 1)] = e;
                lru_push(p, e);
                p->count++;
                if (++r->stats.entities > r->nbuckets)
                        grow(r);
                return KRIB_REORDER_APPLY;
        }
        lru_unlink(p, e);
        lru_push(p, e);
        switch (krib_vv_compare(ev->version, ev->version_count, e->vv, e->vv_count)) {
        case KRIB_VV_EQUAL:
        case KRIB_VV_OLDER:
                r->stats.stale++;
                return KRIB_REORDER_STALE;
        case KRIB_VV_NEWER:
                set_vv(e, ev->version, ev->version_count);
                return KRIB_REORDER_APPLY;
        case KRIB_VV_CONCURRENT:
                break;
        }
        r->stats.concurrent++;
        if (merge_into_event(ev, e->vv, e->vv_count) == 0)
                set_vv(e, ev->version, ev->version_count);
        return ev->action == KRIB_ACTION_UPSERT ? KRIB_REORDER_INVALIDATE : KRIB_REORDER_APPLY;
}

void krib_reorder_forget(krib_reorder_t *r, const char *topic, int32_t partition) {
        int pi = part_index(r, topic, partition, 0);
        if (pi < 0)
                return;
        part_t *p = &r->parts[pi];
        while (p->head)
                remove_entry(r, p->head);
        p->live = 0;
}

const krib_reorder_stats_t *krib_reorder_stats(const krib_reorder_t *r) {
        return &r->stats;
}
