#include "schemas.h"

#include <avro.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define FP_EMPTY 0xc15d213aa4d7a795ULL

typedef struct {
        uint64_t fp;
        char *path;
        krib_decode_t *dec;
} entry_t;

struct krib_schemas {
        krib_wire_t wire;
        krib_decode_t *raw;
        entry_t *e;
        size_t n;
};

uint64_t krib_schemas_fingerprint(const void *buf, size_t len) {
        static uint64_t table[256];
        static int ready;
        if (!ready) {
                for (int i = 0; i < 256; i++) {
                        uint64_t fp = (uint64_t)i;
                        for (int j = 0; j < 8; j++)
                                fp = (fp >> 1) ^ (FP_EMPTY & -(fp & 1));
                        table[i] = fp;
                }
                ready = 1;
        }
        uint64_t fp = FP_EMPTY;
        for (size_t i = 0; i < len; i++)
                fp = (fp >> 8) ^ table[(fp ^ ((const uint8_t *)buf)[i]) & 0xff];
        return fp;
}

typedef struct {
        char *out;
        size_t cap, len;
        const char *seen[64]; /* named types already written: later uses are names */
        int nseen;
} pcf_t;

static void put(pcf_t *p, const char *s) {
        size_t n = strlen(s);
        if (p->len + n < p->cap)
                memcpy(p->out + p->len, s, n);
        p->len += n;
}

static void put_str(pcf_t *p, const char *s) {
        put(p, "\"");
        put(p, s); /* names and symbols are [A-Za-z_][A-Za-z0-9_.]*: no escaping */
        put(p, "\"");
}

static void fullname(avro_schema_t s, char *buf, size_t size) {
        const char *ns = avro_schema_namespace(s);
        if (ns && *ns)
                snprintf(buf, size, "%s.%s", ns, avro_schema_name(s));
        else
                snprintf(buf, size, "%s", avro_schema_name(s));
}

/* 1 when the named type was written before (then its name was written). */
static int named_again(pcf_t *p, avro_schema_t s, char *name, size_t size) {
        fullname(s, name, size);
        for (int i = 0; i < p->nseen; i++)
                if (!strcmp(p->seen[i], avro_schema_name(s)) && p->seen[i] == avro_schema_name(s)) {
                        put_str(p, name);
                        return 1;
                }
        if (p->nseen < 64)
                p->seen[p->nseen++] = avro_schema_name(s);
        return 0;
}

static int pcf(pcf_t *p, avro_schema_t s) {
        char name[512], num[32];
        switch (avro_typeof(s)) {
        case AVRO_NULL:
        case AVRO_BOOLEAN:
        case AVRO_INT32:
        case AVRO_INT64:
        case AVRO_FLOAT:
        case AVRO_DOUBLE:
        case AVRO_BYTES:
        case AVRO_STRING:
                put_str(p, avro_schema_type_name(s));
                return 0;
        case AVRO_RECORD:
                if (named_again(p, s, name, sizeof(name)))
                        return 0;
                put(p, "{\"name\":");
                put_str(p, name);
                put(p, ",\"type\":\"record\",\"fields\":[");
                for (size_t i = 0; i < avro_schema_record_size(s); i++) {
                        put(p, i ? ",{\"name\":" : "{\"name\":");
                        put_str(p, avro_schema_record_field_name(s, (int)i));
                        put(p, ",\"type\":");
                        if (pcf(p, avro_schema_record_field_get_by_index(s, (int)i)))
                                return -1;
                        put(p, "}");
                }
                put(p, "]}");
                return 0;
        case AVRO_ENUM:
                if (named_again(p, s, name, sizeof(name)))
                        return 0;
                put(p, "{\"name\":");
                put_str(p, name);
                put(p, ",\"type\":\"enum\",\"symbols\":[");
                for (int i = 0; i < avro_schema_enum_number_of_symbols(s); i++) {
                        if (i)
                                put(p, ",");
                        put_str(p, avro_schema_enum_get(s, i));
                }
                put(p, "]}");
                return 0;
        case AVRO_FIXED:
                if (named_again(p, s, name, sizeof(name)))
                        return 0;
                put(p, "{\"name\":");
                put_str(p, name);
                snprintf(num, sizeof(num), "%lld", (long long)avro_schema_fixed_size(s));
                put(p, ",\"type\":\"fixed\",\"size\":");
                put(p, num);
                put(p, "}");
                return 0;
        case AVRO_ARRAY:
                put(p, "{\"type\":\"array\",\"items\":");
                if (pcf(p, avro_schema_array_items(s)))
                        return -1;
                put(p, "}");
                return 0;
        case AVRO_MAP:
                put(p, "{\"type\":\"map\",\"values\":");
                if (pcf(p, avro_schema_map_values(s)))
                        return -1;
                put(p, "}");
                return 0;
        case AVRO_UNION:
                put(p, "[");
                for (size_t i = 0; i < avro_schema_union_size(s); i++) {
                        if (i)
                                put(p, ",");
                        if (pcf(p, avro_schema_union_branch(s, (int)i)))
                                return -1;
                }
                put(p, "]");
                return 0;
        case AVRO_LINK:
                fullname(avro_schema_link_target(s), name, sizeof(name));
                put_str(p, name);
                return 0;
        default:
                return -1;
        }
}

int krib_schemas_canonical(const char *json, size_t len, char *out, size_t cap) {
        avro_schema_t s;
        if (avro_schema_from_json_length(json, len, &s))
                return -1;
        pcf_t p = {out, cap, 0, {0}, 0};
        int rc = pcf(&p, s);
        avro_schema_decref(s);
        if (rc || p.len >= cap)
                return -1;
        out[p.len] = '\0';
        return (int)p.len;
}

void krib_schemas_destroy(krib_schemas_t *s) {
        if (!s)
                return;
        krib_decode_destroy(s->raw);
        for (size_t i = 0; i < s->n; i++) {
                free(s->e[i].path);
                krib_decode_destroy(s->e[i].dec);
        }
        free(s->e);
        free(s);
}

static int add_file(krib_schemas_t *s, const char *path, char *errstr, size_t size) {
        size_t len;
        char *json = krib_util_slurp(path, &len, errstr, size);
        if (!json)
                return -1;
        char sub[256];
        static char canon[65536];
        int clen = krib_schemas_canonical(json, len, canon, sizeof(canon));
        krib_decode_t *dec = clen < 0 ? NULL : krib_decode_new_json(json, len, sub, sizeof(sub));
        free(json);
        if (!dec) {
                snprintf(errstr, size, "%s: %s", path,
                         clen < 0 ? "not a schema krib can fingerprint" : sub);
                return -1;
        }
        entry_t *e = realloc(s->e, (s->n + 1) * sizeof(*e));
        if (!e) {
                krib_decode_destroy(dec);
                snprintf(errstr, size, "out of memory");
                return -1;
        }
        s->e = e;
        e[s->n].fp = krib_schemas_fingerprint(canon, (size_t)clen);
        e[s->n].path = strdup(path);
        e[s->n].dec = dec;
        for (size_t i = 0; i < s->n; i++)
                if (e[i].fp == e[s->n].fp) { /* the same schema twice: keep one */
                        free(e[s->n].path);
                        krib_decode_destroy(dec);
                        return 0;
                }
        s->n++;
        return 0;
}

krib_schemas_t *krib_schemas_new(krib_wire_t wire, const char *raw_schema_path, const char *dir,
                                 char *errstr, size_t errstr_size) {
        krib_schemas_t *s = calloc(1, sizeof(*s));
        if (!s) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        s->wire = wire;
        if (wire != KRIB_WIRE_SINGLE_OBJECT && raw_schema_path &&
            !(s->raw = krib_decode_new_file(raw_schema_path, errstr, errstr_size)))
                goto fail;
        if (raw_schema_path && add_file(s, raw_schema_path, errstr, errstr_size))
                goto fail;
        if (dir && *dir) {
                DIR *d = opendir(dir);
                if (!d) {
                        snprintf(errstr, errstr_size, "%s: cannot open schema directory", dir);
                        goto fail;
                }
                struct dirent *de;
                while ((de = readdir(d))) {
                        size_t l = strlen(de->d_name);
                        if (l < 6 || strcmp(de->d_name + l - 5, ".avsc"))
                                continue;
                        char path[4096];
                        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
                        if (add_file(s, path, errstr, errstr_size)) {
                                closedir(d);
                                goto fail;
                        }
                }
                closedir(d);
        }
        if (wire != KRIB_WIRE_RAW && !s->n) {
                snprintf(errstr, errstr_size, "no writer schemas for single-object encoding");
                goto fail;
        }
        return s;
fail:
        krib_schemas_destroy(s);
        return NULL;
}

size_t krib_schemas_count(const krib_schemas_t *s) {
        return s->n;
}

int krib_schemas_decode(krib_schemas_t *s, const void *buf, size_t len, krib_event_t *ev,
                        char *errstr, size_t errstr_size) {
        const uint8_t *b = buf;
        int framed = len >= 2 && b[0] == 0xC3 && b[1] == 0x01;
        if (framed && s->wire != KRIB_WIRE_RAW) {
                if (len < 10) {
                        snprintf(errstr, errstr_size, "single-object header truncated");
                        return -1;
                }
                uint64_t fp = 0;
                for (int i = 0; i < 8; i++)
                        fp |= (uint64_t)b[2 + i] << (8 * i);
                for (size_t i = 0; i < s->n; i++)
                        if (s->e[i].fp == fp)
                                return krib_decode_event(s->e[i].dec, b + 10, len - 10, ev, errstr,
                                                         errstr_size);
                snprintf(errstr, errstr_size,
                         "unknown writer schema fingerprint %016llx (not among decode.schema_dir)",
                         (unsigned long long)fp);
                return -1;
        }
        if (s->wire == KRIB_WIRE_SINGLE_OBJECT || !s->raw) {
                snprintf(errstr, errstr_size, "not Avro single-object encoded (no 0xC3 0x01)");
                return -1;
        }
        return krib_decode_event(s->raw, buf, len, ev, errstr, errstr_size);
}
