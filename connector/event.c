#include "event.h"

#include <stdlib.h>
#include <string.h>

struct krib_arena_block {
        krib_arena_block_t *next;
        size_t used, cap;
        /* Payload follows, 8-aligned. */
        max_align_t data[];
};

#define ARENA_MIN 1024

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
        /* Keep the oldest block: most events fit in one, and reusing it makes
         * steady-state decoding allocation-free. */
        while (b && b->next) {
                krib_arena_block_t *next = b->next;
                free(b);
                b = next;
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
