#include "decode.h"

#include <avro.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"
#include "validate.h"

enum { F_ENTITY, F_KEYS, F_VERSION, F_ACTION, F_TS, F_ORIGIN, F_VALUE, F_TTL, F_TAGS, F__N };

static const char *const field_names[F__N] = {"entity", "keys",  "version", "action", "ts_ms",
                                              "origin", "value", "ttl_ms",  "tags"};

/* One step of a decode plan: what to do with the writer schema's next
 * field. Compiled once per writer schema, so the hot path never looks a
 * field up by name or asks avro-c for a type. */
typedef struct {
        avro_schema_t schema; /* the writer's field type: walked when skipped */
        int8_t field;         /* F_*, or -1: not krib's, skipped */
        int8_t null_branch;   /* ["null", T] / [T, "null"]: index of "null"; -1: no union */
        uint8_t int32;        /* the value (version: the map's values) is an Avro int */
        uint8_t is_enum;      /* action: an enum (else a string) */
} step_t;

struct krib_decode {
        avro_schema_t schema;
        step_t *steps;
        size_t nsteps;
        int field_index[F__N]; /* -1: absent from the writer schema */
        avro_schema_t action_schema;
        int8_t *sym_action; /* per symbol of the action enum: krib_action_t, -1 unknown */
        size_t nsym;
        /* Scratch reused across events: arrays arrive in blocks whose total
         * is only known at the end. */
        krib_str_t *strs;
        size_t strs_cap;
        krib_vv_entry_t *vv;
        size_t vv_cap;
};

void krib_decode_destroy(krib_decode_t *dec) {
        if (!dec)
                return;
        if (dec->schema)
                avro_schema_decref(dec->schema);
        free(dec->steps);
        free(dec->sym_action);
        free(dec->strs);
        free(dec->vv);
        free(dec);
}

/* Strips a ["null", T] union down to T, for type checks. */
static avro_schema_t unnull(avro_schema_t s) {
        if (!is_avro_union(s) || avro_schema_union_size(s) != 2)
                return s;
        avro_schema_t a = avro_schema_union_branch(s, 0), b = avro_schema_union_branch(s, 1);
        return is_avro_null(a) ? b : is_avro_null(b) ? a : s;
}

static int check_field(krib_decode_t *dec, int f, char *errstr, size_t size) {
        avro_schema_t s = avro_schema_record_field_get_by_index(dec->schema, dec->field_index[f]);
        avro_schema_t t = unnull(s);
        int ok = 0;
        switch (f) {
        case F_ENTITY:
        case F_ORIGIN:
                ok = is_avro_string(t);
                break;
        case F_KEYS:
        case F_TAGS:
                ok = is_avro_array(t) && is_avro_string(avro_schema_array_items(t));
                break;
        case F_VERSION:
                ok = is_avro_map(t) && (is_avro_int64(avro_schema_map_values(t)) ||
                                        is_avro_int32(avro_schema_map_values(t)));
                break;
        case F_ACTION:
                ok = is_avro_enum(t) || is_avro_string(t);
                break;
        case F_TS:
        case F_TTL:
                ok = is_avro_int64(t) || is_avro_int32(t);
                break;
        case F_VALUE:
                ok = is_avro_bytes(t) || is_avro_string(t);
                break;
        }
        if (!ok)
                snprintf(errstr, size, "schema field '%s' has type %s, which krib cannot read",
                         field_names[f], avro_schema_type_name(s));
        return ok ? 0 : -1;
}

static const char *const action_names[] = {"DELETE", "UPSERT", "TAG"};

static int action_of(const char *s, size_t len) {
        for (int i = 0; i < 3; i++)
                if (strlen(action_names[i]) == len && !memcmp(s, action_names[i], len))
                        return i;
        return -1;
}

/* The plan: one step per writer field, in wire order. Fields krib knows
 * are matched by name (their types were checked by check_field); the
 * others are walked and dropped; fields the writer lacks keep the defaults
 * krib_event_reset() gives. */
static int compile(krib_decode_t *dec, char *errstr, size_t size) {
        size_t n = avro_schema_record_size(dec->schema);
        if (!(dec->steps = calloc(n ? n : 1, sizeof(*dec->steps)))) {
                snprintf(errstr, size, "out of memory");
                return -1;
        }
        dec->nsteps = n;
        for (size_t i = 0; i < n; i++) {
                step_t *st = &dec->steps[i];
                st->schema = avro_schema_record_field_get_by_index(dec->schema, (int)i);
                st->field = -1;
                st->null_branch = -1;
                for (int f = 0; f < F__N; f++)
                        if (dec->field_index[f] == (int)i)
                                st->field = (int8_t)f;
                if (st->field < 0)
                        continue;
                avro_schema_t t = unnull(st->schema);
                if (t != st->schema)
                        st->null_branch =
                                is_avro_null(avro_schema_union_branch(st->schema, 0)) ? 0 : 1;
                if (st->field == F_VERSION)
                        t = avro_schema_map_values(t);
                st->int32 = is_avro_int32(t);
                if (st->field == F_ACTION && is_avro_enum(t)) {
                        st->is_enum = 1;
                        dec->action_schema = t;
                        dec->nsym = (size_t)avro_schema_enum_number_of_symbols(t);
                        if (!(dec->sym_action = malloc(dec->nsym ? dec->nsym : 1))) {
                                snprintf(errstr, size, "out of memory");
                                return -1;
                        }
                        for (size_t s = 0; s < dec->nsym; s++) {
                                const char *name = avro_schema_enum_get(t, (int)s);
                                dec->sym_action[s] = (int8_t)action_of(name, strlen(name));
                        }
                }
        }
        return 0;
}

krib_decode_t *krib_decode_new_json(const char *json, size_t len, char *errstr,
                                    size_t errstr_size) {
        krib_decode_t *dec = calloc(1, sizeof(*dec));
        if (!dec) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        if (avro_schema_from_json_length(json, len, &dec->schema)) {
                snprintf(errstr, errstr_size, "invalid Avro schema: %s", avro_strerror());
                goto fail;
        }
        if (!is_avro_record(dec->schema)) {
                snprintf(errstr, errstr_size, "schema must be a record, not %s",
                         avro_schema_type_name(dec->schema));
                goto fail;
        }
        /* Only the index look-up is safe for a missing name: avro-c's
         * avro_schema_record_field_get() reads an uninitialised pointer then. */
        for (int f = 0; f < F__N; f++) {
                dec->field_index[f] =
                        avro_schema_record_field_get_index(dec->schema, field_names[f]);
                if (dec->field_index[f] >= 0 && check_field(dec, f, errstr, errstr_size))
                        goto fail;
        }
        if (dec->field_index[F_ENTITY] < 0 || dec->field_index[F_TS] < 0) {
                snprintf(errstr, errstr_size,
                         "schema lacks the required fields 'entity' and 'ts_ms'");
                goto fail;
        }
        if (compile(dec, errstr, errstr_size))
                goto fail;
        return dec;
fail:
        krib_decode_destroy(dec);
        return NULL;
}

krib_decode_t *krib_decode_new_file(const char *path, char *errstr, size_t errstr_size) {
        size_t len;
        char *json = krib_util_slurp(path, &len, errstr, errstr_size);
        if (!json)
                return NULL;
        char sub[256];
        krib_decode_t *dec = krib_decode_new_json(json, len, sub, sizeof(sub));
        if (!dec)
                snprintf(errstr, errstr_size, "%s: %s", path, sub);
        free(json);
        return dec;
}

/* Walks Avro binary against the writer schema without allocating, so a
 * hostile length or block count is refused before avro-c sizes a buffer by
 * it. Returns bytes consumed, or -1 (reason in *why). */
typedef struct {
        const uint8_t *p;
        size_t left;
        const char *why;
} cursor_t;

#define MAX_DEPTH           32
#define MAX_ZERO_SIZE_ITEMS 100000

static int read_varint(cursor_t *c, int64_t *out) {
        uint64_t v = 0;
        for (int shift = 0; shift < 64; shift += 7) {
                if (!c->left) {
                        c->why = "truncated";
                        return -1;
                }
                uint8_t b = *c->p++;
                c->left--;
                v |= (uint64_t)(b & 0x7f) << shift;
                if (!(b & 0x80)) {
                        *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
                        return 0;
                }
        }
        c->why = "varint longer than 10 bytes";
        return -1;
}

static int take(cursor_t *c, int64_t n) {
        if (n < 0 || (uint64_t)n > c->left) {
                c->why = n < 0 ? "negative length" : "length past the end of the message";
                return -1;
        }
        c->p += n;
        c->left -= (size_t)n;
        return 0;
}

static int skip(cursor_t *c, avro_schema_t s, int depth);

/* Arrays and maps: blocks of items until a zero count. */
static int skip_blocks(cursor_t *c, avro_schema_t item, int is_map, int depth) {
        size_t zero_size_items = 0;
        for (;;) {
                int64_t n;
                if (read_varint(c, &n))
                        return -1;
                if (!n)
                        return 0;
                if (n < 0) { /* negative count: a byte size follows */
                        int64_t bytes;
                        if (read_varint(c, &bytes))
                                return -1;
                        if (n == INT64_MIN) {
                                c->why = "bad block count";
                                return -1;
                        }
                        n = -n;
                }
                for (int64_t i = 0; i < n; i++) {
                        size_t before = c->left;
                        if (is_map) {
                                int64_t klen;
                                if (read_varint(c, &klen) || take(c, klen))
                                        return -1;
                        }
                        if (skip(c, item, depth + 1))
                                return -1;
                        /* Items that occupy no bytes (null) could make a tiny
                         * message claim billions of them. */
                        if (c->left == before && ++zero_size_items > MAX_ZERO_SIZE_ITEMS) {
                                c->why = "too many empty items";
                                return -1;
                        }
                }
        }
}

static int skip(cursor_t *c, avro_schema_t s, int depth) {
        int64_t v;
        if (depth > MAX_DEPTH) {
                c->why = "nesting too deep";
                return -1;
        }
        switch (avro_typeof(s)) {
        case AVRO_NULL:
                return 0;
        case AVRO_BOOLEAN:
                return take(c, 1);
        case AVRO_INT32:
                if (read_varint(c, &v))
                        return -1;
                if (v < INT32_MIN || v > INT32_MAX) {
                        c->why = "int out of range";
                        return -1;
                }
                return 0;
        case AVRO_INT64:
                return read_varint(c, &v);
        case AVRO_FLOAT:
                return take(c, 4);
        case AVRO_DOUBLE:
                return take(c, 8);
        case AVRO_STRING:
        case AVRO_BYTES:
                return read_varint(c, &v) || take(c, v) ? -1 : 0;
        case AVRO_FIXED:
                return take(c, avro_schema_fixed_size(s));
        case AVRO_ENUM:
                if (read_varint(c, &v))
                        return -1;
                if (v < 0 || v >= avro_schema_enum_number_of_symbols(s)) {
                        c->why = "enum index out of range";
                        return -1;
                }
                return 0;
        case AVRO_ARRAY:
                return skip_blocks(c, avro_schema_array_items(s), 0, depth);
        case AVRO_MAP:
                return skip_blocks(c, avro_schema_map_values(s), 1, depth);
        case AVRO_UNION:
                if (read_varint(c, &v))
                        return -1;
                if (v < 0 || (uint64_t)v >= avro_schema_union_size(s)) {
                        c->why = "union branch out of range";
                        return -1;
                }
                return skip(c, avro_schema_union_branch(s, (int)v), depth + 1);
        case AVRO_RECORD:
                for (size_t i = 0; i < avro_schema_record_size(s); i++)
                        if (skip(c, avro_schema_record_field_get_by_index(s, (int)i), depth + 1))
                                return -1;
                return 0;
        case AVRO_LINK:
                return skip(c, avro_schema_link_target(s), depth + 1);
        default:
                c->why = "unsupported schema type";
                return -1;
        }
}

int krib_avro_check(avro_schema_t schema, const void *buf, size_t len, char *errstr,
                    size_t errstr_size) {
        cursor_t cur = {buf, len, NULL};
        if (skip(&cur, schema, 0)) {
                snprintf(errstr, errstr_size, "malformed Avro: %s", cur.why);
                return -1;
        }
        if (cur.left) {
                snprintf(errstr, errstr_size, "malformed Avro: %zu trailing bytes after the record",
                         cur.left);
                return -1;
        }
        return 0;
}

/* The hot path: one bounds-checked pass over the message, straight into
 * the event's arena. Each reader returns 0, or -1 with cursor->why set
 * (malformed Avro) or *bad set (the event breaks a rule). */

#define VV_MAX_ENTRIES 1024 /* the largest limits.max_origins */

typedef struct {
        cursor_t c;
        char *errstr;
        size_t errstr_size;
        int bad; /* errstr holds the reason already */
} dctx_t;

static int oom(dctx_t *x) {
        snprintf(x->errstr, x->errstr_size, "out of memory");
        x->bad = 1;
        return -1;
}

/* Zero-copy view of a string or bytes value. */
static int rd_bytes(cursor_t *c, const char **p, size_t *len) {
        int64_t n;
        if (read_varint(c, &n))
                return -1;
        const char *s = (const char *)c->p;
        if (take(c, n))
                return -1;
        *p = s;
        *len = (size_t)n;
        return 0;
}

static int rd_long(cursor_t *c, int int32, int64_t *out) {
        if (read_varint(c, out))
                return -1;
        if (int32 && (*out < INT32_MIN || *out > INT32_MAX)) {
                c->why = "int out of range";
                return -1;
        }
        return 0;
}

/* Items in the next block of an array or map (0: the end). Every item
 * takes at least min_item bytes, so a count the rest of the message cannot
 * hold is refused before any buffer is sized by it. */
static int rd_block(cursor_t *c, size_t min_item, size_t *n) {
        int64_t count;
        if (read_varint(c, &count))
                return -1;
        if (count < 0) { /* a byte size follows */
                int64_t bytes;
                if (read_varint(c, &bytes))
                        return -1;
                if (count == INT64_MIN) {
                        c->why = "bad block count";
                        return -1;
                }
                count = -count;
        }
        if ((uint64_t)count > c->left / min_item) {
                c->why = "block count past the end of the message";
                return -1;
        }
        *n = (size_t)count;
        return 0;
}

static int grow(void **a, size_t *cap, size_t need, size_t item) {
        if (need <= *cap)
                return 0;
        size_t n = *cap ? *cap : 16;
        while (n < need)
                n *= 2;
        void *p = realloc(*a, n * item);
        if (!p)
                return -1;
        *a = p;
        *cap = n;
        return 0;
}

static int rd_strs(krib_decode_t *d, dctx_t *x, krib_event_t *ev, krib_str_t **out, size_t *count) {
        size_t n = 0, b;
        for (;;) {
                if (rd_block(&x->c, 1, &b))
                        return -1;
                if (!b)
                        break;
                if (grow((void **)&d->strs, &d->strs_cap, n + b, sizeof(*d->strs)))
                        return oom(x);
                for (size_t i = 0; i < b; i++, n++) {
                        const char *p;
                        size_t len;
                        if (rd_bytes(&x->c, &p, &len))
                                return -1;
                        if (krib_event_strdup(ev, &d->strs[n], p, len))
                                return oom(x);
                }
        }
        if (!n)
                return 0;
        krib_str_t *a = krib_event_alloc(ev, n * sizeof(*a));
        if (!a)
                return oom(x);
        memcpy(a, d->strs, n * sizeof(*a));
        *out = a;
        *count = n;
        return 0;
}

/* A key written twice keeps its first place and its last value, as Avro
 * maps read into any language's map do. Past VV_MAX_ENTRIES entries the
 * search stops (it is quadratic): the vector is then longer than any
 * limits.max_origins allows and is refused by the limits check. */
static int rd_version(krib_decode_t *d, dctx_t *x, krib_event_t *ev, int int32) {
        size_t n = 0, entries = 0, b;
        for (;;) {
                if (rd_block(&x->c, 2, &b))
                        return -1;
                if (!b)
                        break;
                for (size_t i = 0; i < b; i++) {
                        const char *p;
                        size_t len, j;
                        int64_t v;
                        if (rd_bytes(&x->c, &p, &len) || rd_long(&x->c, int32, &v))
                                return -1;
                        j = ++entries > VV_MAX_ENTRIES ? n : 0;
                        for (; j < n; j++)
                                if (d->vv[j].origin.len == len &&
                                    !memcmp(d->vv[j].origin.s, p, len))
                                        break;
                        if (j == n) {
                                if (grow((void **)&d->vv, &d->vv_cap, n + 1, sizeof(*d->vv)) ||
                                    krib_event_strdup(ev, &d->vv[n].origin, p, len))
                                        return oom(x);
                                n++;
                        }
                        d->vv[j].counter = v;
                }
        }
        if (!n)
                return 0;
        krib_vv_entry_t *a = krib_event_alloc(ev, n * sizeof(*a));
        if (!a)
                return oom(x);
        memcpy(a, d->vv, n * sizeof(*a));
        ev->version = a;
        ev->version_count = n;
        return 0;
}

static int rd_action(krib_decode_t *d, dctx_t *x, const step_t *st, krib_action_t *out) {
        int a;
        const char *name;
        size_t len;
        if (st->is_enum) {
                int64_t i;
                if (read_varint(&x->c, &i))
                        return -1;
                if (i < 0 || (uint64_t)i >= d->nsym) {
                        x->c.why = "enum index out of range";
                        return -1;
                }
                a = d->sym_action[i];
                name = avro_schema_enum_get(d->action_schema, (int)i);
                len = strlen(name);
        } else {
                if (rd_bytes(&x->c, &name, &len))
                        return -1;
                a = action_of(name, len);
        }
        if (a < 0) {
                snprintf(x->errstr, x->errstr_size, "unknown action '%s'", krib_log_esc(name, len));
                x->bad = 1;
                return -1;
        }
        *out = (krib_action_t)a;
        return 0;
}

static int rd_str(dctx_t *x, krib_event_t *ev, krib_str_t *dst) {
        const char *p;
        size_t len;
        if (rd_bytes(&x->c, &p, &len))
                return -1;
        return krib_event_strdup(ev, dst, p, len) ? oom(x) : 0;
}

static int rd_field(krib_decode_t *d, dctx_t *x, const step_t *st, krib_event_t *ev) {
        if (st->field < 0)
                return skip(&x->c, st->schema, 1);
        if (st->null_branch >= 0) {
                int64_t br;
                if (read_varint(&x->c, &br))
                        return -1;
                if (br != 0 && br != 1) {
                        x->c.why = "union branch out of range";
                        return -1;
                }
                if (br == st->null_branch)
                        return 0; /* null: the field's default */
        }
        int64_t v;
        switch (st->field) {
        case F_ENTITY:
                return rd_str(x, ev, &ev->entity);
        case F_ORIGIN:
                return rd_str(x, ev, &ev->origin);
        case F_VALUE:
                return rd_str(x, ev, &ev->value);
        case F_KEYS:
                return rd_strs(d, x, ev, &ev->keys, &ev->key_count);
        case F_TAGS:
                return rd_strs(d, x, ev, &ev->tags, &ev->tag_count);
        case F_VERSION:
                return rd_version(d, x, ev, st->int32);
        case F_ACTION:
                return rd_action(d, x, st, &ev->action);
        case F_TS:
                return rd_long(&x->c, st->int32, &ev->ts_ms);
        case F_TTL:
                if (rd_long(&x->c, st->int32, &v))
                        return -1;
                if (v <= 0) { /* -1 is "absent" only inside krib */
                        snprintf(x->errstr, x->errstr_size,
                                 "invalid event: ttl_ms %lld must be positive", (long long)v);
                        x->bad = 1;
                        return -1;
                }
                ev->ttl_ms = v;
                return 0;
        }
        return 0;
}

int krib_decode_event(krib_decode_t *dec, const void *buf, size_t len, krib_event_t *ev,
                      char *errstr, size_t errstr_size) {
        krib_event_reset(ev);
        if (!buf || !len) {
                snprintf(errstr, errstr_size, "empty message value (tombstone)");
                return -1;
        }
        dctx_t x = {{buf, len, NULL}, errstr, errstr_size, 0};
        for (size_t i = 0; i < dec->nsteps; i++)
                if (rd_field(dec, &x, &dec->steps[i], ev)) {
                        if (!x.bad)
                                snprintf(errstr, errstr_size, "malformed Avro: %s", x.c.why);
                        return -1;
                }
        if (x.c.left) {
                snprintf(errstr, errstr_size, "malformed Avro: %zu trailing bytes after the record",
                         x.c.left);
                return -1;
        }
        /* The rules of schemas/README.md that Avro cannot express. */
        return krib_validate_event(ev, errstr, errstr_size);
}
