/* event: one decoded change event and where it came from in Kafka.
 *
 * Strings point into the event's own arena (krib_event_reset() frees them in
 * one go), so an event is recycled between batches without per-field mallocs.
 * Strings are NUL-terminated and carry their length, since keys may hold any
 * byte.
 */
#ifndef KRIB_EVENT_H
#define KRIB_EVENT_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
        KRIB_ACTION_DELETE = 0,
        KRIB_ACTION_UPSERT = 1,
        KRIB_ACTION_TAG = 2,
} krib_action_t;

typedef struct {
        const char *s;
        size_t len;
} krib_str_t;

typedef struct {
        krib_str_t origin;
        int64_t counter;
} krib_vv_entry_t;

typedef struct krib_arena_block krib_arena_block_t;

typedef struct krib_event {
        krib_str_t entity;
        krib_str_t *keys;
        size_t key_count;
        krib_vv_entry_t *version;
        size_t version_count;
        krib_action_t action;
        int64_t ts_ms;
        krib_str_t origin;  /* s == NULL: absent */
        krib_str_t value;   /* s == NULL: absent */
        uint8_t value_hash; /* UPSERT: value is a flat JSON object written as a hash */
        int64_t ttl_ms;     /* -1: absent */
        krib_str_t *tags;
        size_t tag_count;
        /* Fan-out after the keys are acknowledged (routes): PUBLISH to
         * channel and/or XADD to stream (MAXLEN ~ stream_maxlen), payload
         * note (JSON: entity, op, version, keys). s == NULL: none. */
        krib_str_t channel, stream, note;
        int64_t stream_maxlen;
        /* Set when the event could only partly be built (a write-through
         * whose value failed): its keys are still applied (invalidated),
         * then the record is dead-lettered with this reason. s == NULL: none. */
        krib_str_t defect;
        const char *defect_class; /* static; NULL: "krib.RouteError" */
        /* Set by the reorder stage: older than its entity's newest event, so
         * applied as an invalidation of its keys (counted stale). */
        uint8_t older;

        krib_arena_block_t *arena;
} krib_event_t;

/* Allocates n bytes (8-aligned) owned by ev; freed by krib_event_reset(). */
void *krib_event_alloc(krib_event_t *ev, size_t n);

/* Copies len bytes into the arena and NUL-terminates them. */
int krib_event_strdup(krib_event_t *ev, krib_str_t *dst, const char *s, size_t len);

/* Clears the fields and frees the arena (keeps the first block for reuse). */
void krib_event_reset(krib_event_t *ev);

/* Fail safe for a record that names keys but cannot be applied as it is
 * (a limit exceeded, a version that cannot order it): it becomes a plain
 * invalidation of those keys (no version, no value, no fan-out, no tags),
 * and carries why (copied) and cls ("krib.LimitExceeded" ...) as its
 * defect, so it is dead-lettered once the keys are unlinked. -1 on OOM. */
int krib_event_degrade(krib_event_t *ev, const char *why, const char *cls);

/* Frees everything ev owns. */
void krib_event_destroy(krib_event_t *ev);

const char *krib_action_name(krib_action_t a);

#endif
