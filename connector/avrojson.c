#include "avrojson.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
        char *record; /* full name: namespace.name */
        char *field;
        int scale;
} decimal_t;

struct krib_avrojson_decimals {
        decimal_t *v;
        size_t n, cap;
};

#define DECIMAL_MAX_BYTES 64

/* Scale of a decimal type node ({"type": "bytes", "logicalType": "decimal",
 * "scale": 2} or Connect's Decimal), -1 for anything else. */
static int decimal_scale(const json_t *t) {
        if (!json_is_object(t))
                return -1;
        const char *type = json_string_value(json_object_get(t, "type"));
        if (!type || (strcmp(type, "bytes") && strcmp(type, "fixed")))
                return -1;
        const char *lt = json_string_value(json_object_get(t, "logicalType"));
        const char *cn = json_string_value(json_object_get(t, "connect.name"));
        if (lt && !strcmp(lt, "decimal")) {
                json_t *sc = json_object_get(t, "scale");
                return json_is_integer(sc) ? (int)json_integer_value(sc) : 0;
        }
        if (cn && !strcmp(cn, "org.apache.kafka.connect.data.Decimal")) {
                const char *sc = json_string_value(
                        json_object_get(json_object_get(t, "connect.parameters"), "scale"));
                return sc ? atoi(sc) : 0;
        }
        return -1;
}

static int add(krib_avrojson_decimals_t *d, const char *record, const char *field, int scale) {
        if (d->n == d->cap) {
                size_t cap = d->cap ? d->cap * 2 : 8;
                decimal_t *v = realloc(d->v, cap * sizeof(*v));
                if (!v)
                        return -1;
                d->v = v;
                d->cap = cap;
        }
        decimal_t *e = &d->v[d->n];
        e->record = strdup(record);
        e->field = strdup(field);
        e->scale = scale;
        if (!e->record || !e->field) {
                free(e->record);
                free(e->field);
                return -1;
        }
        d->n++;
        return 0;
}

static int walk(krib_avrojson_decimals_t *d, const json_t *node, const char *ns, int depth) {
        if (depth > 64)
                return 0;
        if (json_is_array(node)) { /* a union */
                size_t i;
                json_t *b;
                json_array_foreach(node, i, b) if (walk(d, b, ns, depth + 1)) return -1;
                return 0;
        }
        if (!json_is_object(node))
                return 0;
        const json_t *type = json_object_get(node, "type");
        if (!json_is_string(type))
                return walk(d, type, ns, depth + 1);
        const char *t = json_string_value(type);
        if (!strcmp(t, "array"))
                return walk(d, json_object_get(node, "items"), ns, depth + 1);
        if (!strcmp(t, "map"))
                return walk(d, json_object_get(node, "values"), ns, depth + 1);
        if (strcmp(t, "record") && strcmp(t, "error"))
                return 0;
        const char *name = json_string_value(json_object_get(node, "name"));
        const char *own = json_string_value(json_object_get(node, "namespace"));
        if (!name)
                return 0;
        char full[1024];
        if (strchr(name, '.'))
                snprintf(full, sizeof(full), "%s", name);
        else if (own ? *own : ns && *ns)
                snprintf(full, sizeof(full), "%s.%s", own ? own : ns, name);
        else
                snprintf(full, sizeof(full), "%s", name);
        /* Nested names default to this record's namespace. */
        char inner[1024];
        const char *dot = strrchr(full, '.');
        snprintf(inner, sizeof(inner), "%.*s", dot ? (int)(dot - full) : 0, full);
        size_t i;
        json_t *f;
        json_array_foreach(json_object_get(node, "fields"), i, f) {
                const char *fname = json_string_value(json_object_get(f, "name"));
                const json_t *ft = json_object_get(f, "type");
                int scale = decimal_scale(ft);
                if (scale < 0 && json_is_array(ft)) {
                        size_t k;
                        json_t *b;
                        json_array_foreach(ft, k, b) if (scale < 0) scale = decimal_scale(b);
                }
                if (fname && scale >= 0 && add(d, full, fname, scale))
                        return -1;
                if (walk(d, ft, inner, depth + 1))
                        return -1;
        }
        return 0;
}

krib_avrojson_decimals_t *krib_avrojson_scan(const char *schema_json) {
        json_error_t je;
        json_t *root = json_loads(schema_json, JSON_DECODE_ANY, &je);
        if (!root)
                return NULL;
        krib_avrojson_decimals_t *d = calloc(1, sizeof(*d));
        if (d && walk(d, root, "", 0)) {
                krib_avrojson_free(d);
                d = NULL;
        }
        json_decref(root);
        return d;
}

size_t krib_avrojson_count(const krib_avrojson_decimals_t *d) {
        return d ? d->n : 0;
}

void krib_avrojson_free(krib_avrojson_decimals_t *d) {
        if (!d)
                return;
        for (size_t i = 0; i < d->n; i++) {
                free(d->v[i].record);
                free(d->v[i].field);
        }
        free(d->v);
        free(d);
}

int krib_avrojson_decimal(const unsigned char *b, size_t n, int scale, char *out, size_t cap) {
        if (n > DECIMAL_MAX_BYTES || scale < 0 || scale > 1000)
                return -1;
        unsigned char mag[DECIMAL_MAX_BYTES];
        int neg = n && (b[0] & 0x80);
        if (n)
                memcpy(mag, b, n);
        if (neg) { /* two's complement: invert, add one */
                for (size_t i = 0; i < n; i++)
                        mag[i] = (unsigned char)~mag[i];
                for (size_t i = n; i-- > 0;)
                        if (++mag[i])
                                break;
        }
        /* Decimal digits, least significant first, by repeated division. */
        char digits[DECIMAL_MAX_BYTES * 3 + 2];
        size_t nd = 0, start = 0;
        while (start < n && !mag[start])
                start++;
        while (start < n) {
                unsigned rem = 0;
                for (size_t i = start; i < n; i++) {
                        unsigned cur = (rem << 8) | mag[i];
                        mag[i] = (unsigned char)(cur / 10);
                        rem = cur % 10;
                }
                digits[nd++] = (char)('0' + rem);
                while (start < n && !mag[start])
                        start++;
        }
        if (!nd)
                digits[nd++] = '0';
        size_t s = (size_t)scale;
        size_t intd = nd > s ? nd - s : 0;
        size_t need = (size_t)neg + (intd ? intd : 1) + (s ? 1 + s : 0) + 1;
        if (need > cap)
                return -1;
        size_t o = 0;
        if (neg)
                out[o++] = '-';
        if (!intd)
                out[o++] = '0';
        for (size_t i = 0; i < intd; i++)
                out[o++] = digits[nd - 1 - i];
        if (s) {
                out[o++] = '.';
                for (size_t i = 0; i < s; i++) {
                        size_t pos = s - 1 - i; /* digit index of this place */
                        out[o++] = pos < nd ? digits[pos] : '0';
                }
        }
        out[o] = '\0';
        return (int)o;
}

static json_t *base64(const unsigned char *b, size_t n) {
        static const char tbl[] =
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        size_t len = 4 * ((n + 2) / 3);
        char *out = malloc(len + 1);
        if (!out)
                return NULL;
        size_t o = 0;
        for (size_t i = 0; i < n; i += 3) {
                uint32_t v = (uint32_t)b[i] << 16;
                if (i + 1 < n)
                        v |= (uint32_t)b[i + 1] << 8;
                if (i + 2 < n)
                        v |= b[i + 2];
                out[o++] = tbl[(v >> 18) & 63];
                out[o++] = tbl[(v >> 12) & 63];
                out[o++] = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
                out[o++] = i + 2 < n ? tbl[v & 63] : '=';
        }
        json_t *j = json_stringn(out, o);
        free(out);
        return j;
}

static int field_scale(const krib_avrojson_decimals_t *d, avro_value_t *rec, const char *field) {
        if (!d || !d->n || !field)
                return -1;
        avro_schema_t s = avro_value_get_schema(rec);
        const char *name = avro_schema_name(s), *ns = avro_schema_namespace(s);
        char full[1024];
        if (ns && *ns)
                snprintf(full, sizeof(full), "%s.%s", ns, name ? name : "");
        else
                snprintf(full, sizeof(full), "%s", name ? name : "");
        for (size_t i = 0; i < d->n; i++)
                if (!strcmp(d->v[i].field, field) && !strcmp(d->v[i].record, full))
                        return d->v[i].scale;
        return -1;
}

static json_t *to_json(avro_value_t *v, const krib_avrojson_decimals_t *d, int scale, int depth) {
        if (depth > 64)
                return NULL;
        switch (avro_value_get_type(v)) {
        case AVRO_STRING: {
                const char *s;
                size_t n;
                avro_value_get_string(v, &s, &n);
                return json_stringn(s, n ? n - 1 : 0); /* n counts the NUL */
        }
        case AVRO_BYTES:
        case AVRO_FIXED: {
                const void *b;
                size_t n;
                if (avro_value_get_type(v) == AVRO_BYTES)
                        avro_value_get_bytes(v, &b, &n);
                else
                        avro_value_get_fixed(v, &b, &n);
                if (scale < 0)
                        return base64(b, n);
                char text[DECIMAL_MAX_BYTES * 3 + 1100];
                int l = krib_avrojson_decimal(b, n, scale, text, sizeof(text));
                return l < 0 ? NULL : json_stringn(text, (size_t)l);
        }
        case AVRO_INT32: {
                int32_t x;
                avro_value_get_int(v, &x);
                return json_integer(x);
        }
        case AVRO_INT64: {
                int64_t x;
                avro_value_get_long(v, &x);
                return json_integer(x);
        }
        case AVRO_FLOAT: {
                float x;
                avro_value_get_float(v, &x);
                return json_real(x);
        }
        case AVRO_DOUBLE: {
                double x;
                avro_value_get_double(v, &x);
                return json_real(x);
        }
        case AVRO_BOOLEAN: {
                int x;
                avro_value_get_boolean(v, &x);
                return json_boolean(x);
        }
        case AVRO_NULL:
                return json_null();
        case AVRO_ENUM: {
                int x;
                avro_value_get_enum(v, &x);
                const char *sym = avro_schema_enum_get(avro_value_get_schema(v), x);
                return sym ? json_string(sym) : json_integer(x);
        }
        case AVRO_UNION: {
                avro_value_t b;
                if (avro_value_get_current_branch(v, &b))
                        return NULL;
                return to_json(&b, d, scale, depth + 1);
        }
        case AVRO_RECORD: {
                json_t *o = json_object();
                size_t n = 0;
                avro_value_get_size(v, &n);
                for (size_t i = 0; i < n; i++) {
                        avro_value_t f;
                        const char *name;
                        if (avro_value_get_by_index(v, i, &f, &name))
                                continue;
                        json_t *j = to_json(&f, d, field_scale(d, v, name), depth + 1);
                        if (!j) {
                                json_decref(o);
                                return NULL;
                        }
                        json_object_set_new(o, name, j);
                }
                return o;
        }
        case AVRO_ARRAY:
        case AVRO_MAP: {
                int map = avro_value_get_type(v) == AVRO_MAP;
                json_t *c = map ? json_object() : json_array();
                size_t n = 0;
                avro_value_get_size(v, &n);
                for (size_t i = 0; i < n; i++) {
                        avro_value_t e;
                        const char *key = NULL;
                        if (avro_value_get_by_index(v, i, &e, map ? &key : NULL))
                                continue;
                        json_t *j = to_json(&e, d, -1, depth + 1);
                        if (!j) {
                                json_decref(c);
                                return NULL;
                        }
                        if (map)
                                json_object_set_new(c, key, j);
                        else
                                json_array_append_new(c, j);
                }
                return c;
        }
        default:
                return NULL;
        }
}

json_t *krib_avrojson_value(avro_value_t *v, const krib_avrojson_decimals_t *d) {
        return to_json(v, d, -1, 0);
}
