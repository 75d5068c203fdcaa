#include "reorder.h"

#include <stdlib.h>
#include <string.h>

/* The entity name lives in the entry's own allocation (entity_cap bytes,
 * rounded up so an evicted entry can carry the next entity); the vector in
 * a separate block, so a vector that gains origins reallocates alone. At
 * capacity a new entity takes over the evicted entry with its vector block:
 * with the usual single source the origins match and nothing is
 * allocated. */
typedef struct entry {
        struct entry *prev, *next; /* LRU within the partition, head = newest */
        uint64_t hash;
        uint32_t part;
        size_t vv_count;
        krib_vv_entry_t *vv; /* origins point into vv_text */
        char *vv_text;
        size_t entity_len, entity_cap;
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

/* The index: open addressing with linear probing over (hash, entry), so a
 * look-up compares hashes in one array and touches an entry only on a
 * likely match (a chained table cost a cache miss per link). */
typedef struct {
        uint64_t hash;
        entry_t *e; /* NULL: empty */
} slot_t;

struct krib_reorder {
        size_t capacity;
        slot_t *slots;
        size_t nslots; /* power of two, at most half full */
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
        r->nslots = 1024;
        r->slots = calloc(r->nslots, sizeof(*r->slots));
        if (!r->slots) {
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
        free(r->slots);
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

/* Removes e's slot, shifting later slots of its probe run back so no
 * look-up stops early at the hole. */
static void unindex(krib_reorder_t *r, entry_t *e) {
        size_t mask = r->nslots - 1, i = e->hash & mask;
        while (r->slots[i].e != e)
                i = (i + 1) & mask;
        for (size_t j = (i + 1) & mask; r->slots[j].e; j = (j + 1) & mask) {
                size_t home = r->slots[j].hash & mask;
                /* j's entry may move to i when its home is not in (i, j]. */
                int stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
                if (!stays) {
                        r->slots[i] = r->slots[j];
                        i = j;
                }
        }
        r->slots[i].e = NULL;
}

static void index_put(slot_t *slots, size_t nslots, uint64_t hash, entry_t *e) {
        size_t mask = nslots - 1, i = hash & mask;
        while (slots[i].e)
                i = (i + 1) & mask;
        slots[i].hash = hash;
        slots[i].e = e;
}

static void detach(krib_reorder_t *r, entry_t *e) {
        unindex(r, e);
        part_t *p = &r->parts[e->part];
        lru_unlink(p, e);
        p->count--;
        r->stats.entities--;
}

static void remove_entry(krib_reorder_t *r, entry_t *e) {
        detach(r, e);
        entry_free(e);
}

/* Doubles the index; -1 when out of memory (the caller then applies
 * without remembering: the safe side). */
static int grow(krib_reorder_t *r) {
        size_t n = r->nslots * 2;
        slot_t *b = calloc(n, sizeof(*b));
        if (!b)
                return -1;
        for (size_t i = 0; i < r->nslots; i++)
                if (r->slots[i].e)
                        index_put(b, n, r->slots[i].hash, r->slots[i].e);
        free(r->slots);
        r->slots = b;
        r->nslots = n;
        return 0;
}

/* Evicts the least recently used entity, preferring the partition being
 * written so a busy partition does not flush the state of quiet ones.
 * Returns the detached entry (the caller reuses or frees it), or NULL. */
static entry_t *evict_one(krib_reorder_t *r, uint32_t prefer) {
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
        entry_t *e = p->tail;
        if (e) {
                detach(r, e);
                r->stats.evictions++;
        }
        return e;
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
        entry_t *e = NULL;
        for (size_t mask = r->nslots - 1, i = h & mask; r->slots[i].e; i = (i + 1) & mask) {
                entry_t *c = r->slots[i].e;
                if (r->slots[i].hash == h && c->part == (uint32_t)pi &&
                    c->entity_len == ev->entity.len &&
                    !memcmp(c->entity, ev->entity.s, ev->entity.len)) {
                        e = c;
                        break;
                }
        }
        part_t *p = &r->parts[pi];
        if (!e) {
                while (r->stats.entities >= r->capacity) {
                        entry_t *old = evict_one(r, (uint32_t)pi);
                        if (!old)
                                break;
                        if (!e && old->entity_cap > ev->entity.len)
                                e = old;
                        else
                                entry_free(old);
                }
                if (!e) {
                        size_t cap = (ev->entity.len + 32) & ~(size_t)31;
                        if (!(e = calloc(1, sizeof(*e) + cap)))
                                return KRIB_REORDER_APPLY;
                        e->entity_cap = cap;
                }
                memcpy(e->entity, ev->entity.s, ev->entity.len);
                e->entity[ev->entity.len] = '\0';
                e->entity_len = ev->entity.len;
                e->hash = h;
                e->part = (uint32_t)pi;
                if (set_vv(e, ev->version, ev->version_count)) {
                        entry_free(e);
                        return KRIB_REORDER_APPLY;
                }
                if (2 * (r->stats.entities + 1) > r->nslots && grow(r)) {
                        entry_free(e);
                        return KRIB_REORDER_APPLY;
                }
                index_put(r->slots, r->nslots, h, e);
                lru_push(p, e);
                p->count++;
                r->stats.entities++;
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
