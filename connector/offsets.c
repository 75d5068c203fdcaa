#include "offsets.h"

#include <stdlib.h>
#include <string.h>

/* In-flight offsets of one partition form a ring in increasing order; the
 * head advances over finished entries, so finishing is O(log n) (binary
 * search) and advancing is amortised O(1). */
typedef struct {
        char *topic;
        int32_t partition;
        int64_t *off;
        uint8_t *done;
        size_t head, len, cap;
        int64_t last_tracked;
        int64_t committable; /* -1: nothing finished yet */
        int dirty;
} part_t;

struct krib_offsets {
        part_t *parts;
        size_t count, cap;
        size_t in_flight;
        size_t held; /* tracked, not yet committable: every ring's len */
};

krib_offsets_t *krib_offsets_new(void) {
        return calloc(1, sizeof(krib_offsets_t));
}

static void part_free(part_t *p) {
        free(p->topic);
        free(p->off);
        free(p->done);
}

void krib_offsets_destroy(krib_offsets_t *o) {
        if (!o)
                return;
        for (size_t i = 0; i < o->count; i++)
                part_free(&o->parts[i]);
        free(o->parts);
        free(o);
}

static part_t *find(const krib_offsets_t *o, const char *topic, int32_t partition) {
        for (size_t i = 0; i < o->count; i++)
                if (o->parts[i].partition == partition && !strcmp(o->parts[i].topic, topic))
                        return &o->parts[i];
        return NULL;
}

static part_t *find_or_add(krib_offsets_t *o, const char *topic, int32_t partition) {
        part_t *p = find(o, topic, partition);
        if (p)
                return p;
        if (o->count == o->cap) {
                size_t cap = o->cap ? o->cap * 2 : 16;
                part_t *np = realloc(o->parts, cap * sizeof(*np));
                if (!np)
                        return NULL;
                o->parts = np;
                o->cap = cap;
        }
        p = &o->parts[o->count];
        memset(p, 0, sizeof(*p));
        if (!(p->topic = strdup(topic)))
                return NULL;
        p->partition = partition;
        p->last_tracked = -1;
        p->committable = -1;
        o->count++;
        return p;
}

static int64_t *at(part_t *p, size_t i) {
        return &p->off[(p->head + i) % p->cap];
}

int krib_offsets_track(krib_offsets_t *o, const char *topic, int32_t partition, int64_t offset) {
        part_t *p = find_or_add(o, topic, partition);
        if (!p)
                return -1;
        if (offset < 0 || offset <= p->last_tracked)
                return -2;
        if (p->len == p->cap) {
                size_t cap = p->cap ? p->cap * 2 : 64;
                int64_t *off = malloc(cap * sizeof(*off));
                uint8_t *done = malloc(cap);
                if (!off || !done) {
                        free(off);
                        free(done);
                        return -1;
                }
                for (size_t i = 0; i < p->len; i++) {
                        off[i] = p->off[(p->head + i) % p->cap];
                        done[i] = p->done[(p->head + i) % p->cap];
                }
                free(p->off);
                free(p->done);
                p->off = off;
                p->done = done;
                p->head = 0;
                p->cap = cap;
        }
        size_t slot = (p->head + p->len) % p->cap;
        p->off[slot] = offset;
        p->done[slot] = 0;
        p->len++;
        p->last_tracked = offset;
        o->in_flight++;
        o->held++;
        return 0;
}

int krib_offsets_finish(krib_offsets_t *o, const char *topic, int32_t partition, int64_t offset) {
        part_t *p = find(o, topic, partition);
        if (!p || !p->len)
                return -1;
        size_t lo = 0, hi = p->len;
        while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (*at(p, mid) < offset)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        if (lo == p->len || *at(p, lo) != offset)
                return -1;
        size_t slot = (p->head + lo) % p->cap;
        if (p->done[slot])
                return -1;
        p->done[slot] = 1;
        o->in_flight--;
        while (p->len && p->done[p->head]) {
                p->committable = p->off[p->head] + 1;
                p->dirty = 1;
                p->head = (p->head + 1) % p->cap;
                p->len--;
                o->held--;
        }
        return 0;
}

int64_t krib_offsets_committable(const krib_offsets_t *o, const char *topic, int32_t partition) {
        const part_t *p = find(o, topic, partition);
        return p ? p->committable : -1;
}

size_t krib_offsets_in_flight(const krib_offsets_t *o) {
        return o->in_flight;
}

size_t krib_offsets_held(const krib_offsets_t *o) {
        return o->held;
}

void krib_offsets_forget(krib_offsets_t *o, const char *topic, int32_t partition) {
        part_t *p = find(o, topic, partition);
        if (!p)
                return;
        for (size_t i = 0; i < p->len; i++)
                o->in_flight -= !p->done[(p->head + i) % p->cap];
        o->held -= p->len;
        part_free(p);
        *p = o->parts[--o->count];
}

int krib_offsets_take_dirty(krib_offsets_t *o, size_t *cursor, const char **topic,
                            int32_t *partition, int64_t *offset) {
        for (; *cursor < o->count; (*cursor)++) {
                part_t *p = &o->parts[*cursor];
                if (p->dirty) {
                        p->dirty = 0;
                        *topic = p->topic;
                        *partition = p->partition;
                        *offset = p->committable;
                        (*cursor)++;
                        return 1;
                }
        }
        return 0;
}
