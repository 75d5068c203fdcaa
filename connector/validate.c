#include "validate.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

static int fail(char *errstr, size_t size, const char *fmt, ...) KRIB_PRINTF(3, 4);
static int fail(char *errstr, size_t size, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, size, fmt, ap);
        va_end(ap);
        return -1;
}

#define ENT(ev) krib_log_esc((ev)->entity.s, (ev)->entity.len)

static int bad_origin(const krib_str_t *o) {
        if (!o->s || !o->len || o->len > KRIB_ORIGIN_MAX_BYTES)
                return 1;
        for (size_t i = 0; i < o->len; i++)
                if (o->s[i] == '=' || (unsigned char)o->s[i] < 0x20 || o->s[i] == 0x7f)
                        return 1;
        return 0;
}

int krib_validate_event(const krib_event_t *ev, char *errstr, size_t errstr_size) {
        if (!ev->entity.s || !ev->entity.len)
                return fail(errstr, errstr_size, "invalid event: empty entity");
        for (size_t i = 0; i < ev->key_count; i++) {
                const krib_str_t *k = &ev->keys[i];
                if (!k->len)
                        return fail(errstr, errstr_size, "invalid event %s: key %zu is empty",
                                    ENT(ev), i);
                if (k->len >= KRIB_FENCE_PREFIX_LEN &&
                    !memcmp(k->s, KRIB_FENCE_PREFIX, KRIB_FENCE_PREFIX_LEN))
                        return fail(errstr, errstr_size,
                                    "invalid event %s: key %zu (%s) is in krib's fence namespace "
                                    "'" KRIB_FENCE_PREFIX "'",
                                    ENT(ev), i, krib_log_esc(k->s, k->len));
        }
        if (ev->version_count && !ev->version)
                return fail(errstr, errstr_size, "invalid event %s: version missing", ENT(ev));
        for (size_t i = 0; i < ev->version_count; i++) {
                const krib_vv_entry_t *e = &ev->version[i];
                if (bad_origin(&e->origin))
                        return fail(errstr, errstr_size,
                                    "invalid event %s: version origin '%s' is empty, longer than "
                                    "%d bytes, or contains '=' or a control character",
                                    ENT(ev), krib_log_esc(e->origin.s, e->origin.len),
                                    KRIB_ORIGIN_MAX_BYTES);
                if (e->counter < 0)
                        return fail(errstr, errstr_size,
                                    "invalid event %s: version counter for '%s' is negative",
                                    ENT(ev), krib_log_esc(e->origin.s, e->origin.len));
        }
        switch (ev->action) {
        case KRIB_ACTION_DELETE:
                if (!ev->key_count)
                        return fail(errstr, errstr_size, "invalid event %s: DELETE without keys",
                                    ENT(ev));
                break;
        case KRIB_ACTION_UPSERT:
                if (!ev->key_count || !ev->value.s || !ev->version_count)
                        return fail(errstr, errstr_size,
                                    "invalid event %s: UPSERT needs keys, a value and a version",
                                    ENT(ev));
                if (ev->ttl_ms != -1 && (ev->ttl_ms <= 0 || ev->ttl_ms > KRIB_TTL_MAX_MS))
                        return fail(errstr, errstr_size,
                                    "invalid event %s: ttl_ms %lld must be positive and at most "
                                    "%lld",
                                    ENT(ev), (long long)ev->ttl_ms, (long long)KRIB_TTL_MAX_MS);
                break;
        case KRIB_ACTION_TAG:
                if (!ev->tag_count)
                        return fail(errstr, errstr_size, "invalid event %s: TAG without tags",
                                    ENT(ev));
                for (size_t i = 0; i < ev->tag_count; i++)
                        if (!ev->tags[i].len)
                                return fail(errstr, errstr_size,
                                            "invalid event %s: tag %zu is empty", ENT(ev), i);
                break;
        default:
                return fail(errstr, errstr_size, "invalid event %s: unknown action %d", ENT(ev),
                            (int)ev->action);
        }
        return 0;
}

/* Keys or tags: how many, and how long each (what: "key" or "tag"). */
static int check_strs(const krib_event_t *ev, const krib_str_t *v, size_t n, const char *what,
                      const krib_limits_t *lim, char *errstr, size_t errstr_size) {
        if (n > lim->max_keys)
                return fail(errstr, errstr_size,
                            "event %s names %zu %ss, more than limits.max_keys_per_event (%zu)",
                            ENT(ev), n, what, lim->max_keys);
        size_t max =
                lim->max_key_bytes < KRIB_KEY_MAX_BYTES ? lim->max_key_bytes : KRIB_KEY_MAX_BYTES;
        for (size_t i = 0; i < n; i++)
                if (v[i].len > max)
                        return fail(errstr, errstr_size,
                                    "event %s: %s %zu has %zu bytes, more than "
                                    "limits.max_key_bytes (%zu)",
                                    ENT(ev), what, i, v[i].len, max);
        return 0;
}

int krib_validate_limits(const krib_event_t *ev, const krib_limits_t *lim, char *errstr,
                         size_t errstr_size) {
        if (check_strs(ev, ev->keys, ev->key_count, "key", lim, errstr, errstr_size) ||
            check_strs(ev, ev->tags, ev->tag_count, "tag", lim, errstr, errstr_size))
                return -1;
        if (ev->version_count > lim->max_origins)
                return fail(errstr, errstr_size,
                            "event %s has %zu version origins, more than limits.max_origins (%zu)",
                            ENT(ev), ev->version_count, lim->max_origins);
        /* Unique origins: the comparison and the fence assume them. The
         * vector is short here (limits.max_origins <= 1024), so pairs are
         * cheap. */
        for (size_t i = 0; i < ev->version_count; i++)
                for (size_t j = i + 1; j < ev->version_count; j++)
                        if (ev->version[i].origin.len == ev->version[j].origin.len &&
                            !memcmp(ev->version[i].origin.s, ev->version[j].origin.s,
                                    ev->version[i].origin.len))
                                return fail(errstr, errstr_size,
                                            "invalid event %s: version origin '%s' appears twice",
                                            ENT(ev),
                                            krib_log_esc(ev->version[i].origin.s,
                                                         ev->version[i].origin.len));
        return 0;
}

int krib_validate_counter(const char *s, size_t len, int64_t *out) {
        if (!s || !len || len > 64)
                return -1;
        int64_t v = 0;
        for (size_t i = 0; i < len; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -1;
                int d = s[i] - '0';
                if (v > (INT64_MAX - d) / 10)
                        return -1;
                v = v * 10 + d;
        }
        *out = v;
        return 0;
}

int krib_validate_canonical(const char *s, size_t len) {
        int64_t v;
        if (!len || len > 19 || (len > 1 && s[0] == '0'))
                return 0;
        return krib_validate_counter(s, len, &v) == 0;
}
