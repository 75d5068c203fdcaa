#include "event.h"

#include <stdlib.h>
#include <string.h>

struct krib_arena_block {
        krib_arena_block_t *next;
        size_t used, cap;
        /* Payload follows, 8-aligned. */
        max_align_t data[];
};

/* A small first block: an event in flight costs its arena, and the
 * in-flight bound counts events, not bytes. */
#define ARENA_MIN 256

/* Largest block kept across resets (a 1 MB value is not kept per slot). */
#define ARENA_KEEP_MAX 65536

void *krib_event_alloc(krib_event_t *ev, size_t n) {
        n = (n + 7) & ~(size_t)7;
        krib_arena_block_t *b = ev->arena;
        if (!b || b->cap - b->used < n) {
                size_t cap = n > ARENA_MIN ? n : ARENA_MIN;
                krib_arena_block_t *nb = malloc(sizeof(*nb) + cap);
                if (!nb)
                        return NULL;
                nb->next = b;
                nb->used = 0;
                nb->cap = cap;
                ev->arena = b = nb;
        }
        void *p = (char *)b->data + b->used;
        b->used += n;
        return p;
}

int krib_event_strdup(krib_event_t *ev, krib_str_t *dst, const char *s, size_t len) {
        char *p = krib_event_alloc(ev, len + 1);
        if (!p)
                return -1;
        memcpy(p, s, len);
        p[len] = '\0';
        dst->s = p;
        dst->len = len;
        return 0;
}

void krib_event_reset(krib_event_t *ev) {
        krib_arena_block_t *b = ev->arena;
        /* One block is kept for the next event. An event that needed more
         * leaves one block of its whole size, so an event stream of that
         * size decodes without allocating (and a large one-off costs one
         * block until the next reset). */
        if (b && (b->next || b->cap > ARENA_KEEP_MAX)) {
                size_t total = 0;
                while (b) {
                        krib_arena_block_t *next = b->next;
                        total += b->used;
                        free(b);
                        b = next;
                }
                if (total < ARENA_MIN)
                        total = ARENA_MIN;
                if (total <= ARENA_KEEP_MAX && (b = malloc(sizeof(*b) + total))) {
                        b->next = NULL;
                        b->cap = total;
                }
        }
        if (b)
                b->used = 0;
        memset(ev, 0, sizeof(*ev));
        ev->arena = b;
        ev->ttl_ms = -1;
}

void krib_event_destroy(krib_event_t *ev) {
        if (!ev)
                return;
        krib_event_reset(ev);
        free(ev->arena);
        ev->arena = NULL;
}

int krib_event_degrade(krib_event_t *ev, const char *why, const char *cls) {
        if (krib_event_strdup(ev, &ev->defect, why, strlen(why)))
                return -1;
        ev->defect_class = cls;
        ev->action = KRIB_ACTION_DELETE;
        ev->version_count = 0;
        ev->value = (krib_str_t){NULL, 0};
        ev->value_hash = 0;
        ev->ttl_ms = -1;
        ev->tags = NULL;
        ev->tag_count = 0;
        ev->channel = ev->stream = ev->note = (krib_str_t){NULL, 0};
        return 0;
}

const char *krib_action_name(krib_action_t a) {
        switch (a) {
        case KRIB_ACTION_DELETE:
                return "DELETE";
        case KRIB_ACTION_UPSERT:
                return "UPSERT";
        case KRIB_ACTION_TAG:
                return "TAG";
        }
        return "?";
}
