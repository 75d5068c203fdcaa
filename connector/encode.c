#include "encode.h"

#include "util.h"

#include <avro.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct krib_encode {
        avro_schema_t schema;
        avro_value_iface_t *iface;
        avro_value_t value;
        avro_writer_t writer;
};

void krib_encode_destroy(krib_encode_t *enc) {
        if (!enc)
                return;
        if (enc->writer)
                avro_writer_free(enc->writer);
        if (enc->iface) {
                avro_value_decref(&enc->value);
                avro_value_iface_decref(enc->iface);
        }
        if (enc->schema)
                avro_schema_decref(enc->schema);
        free(enc);
}

krib_encode_t *krib_encode_new_json(const char *json, size_t len, char *errstr,
                                    size_t errstr_size) {
        krib_encode_t *enc = calloc(1, sizeof(*enc));
        if (!enc) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        if (avro_schema_from_json_length(json, len, &enc->schema)) {
                snprintf(errstr, errstr_size, "invalid Avro schema: %s", avro_strerror());
                goto fail;
        }
        static const char *const need[] = {"entity", "keys",  "version", "action", "ts_ms",
                                           "origin", "value", "ttl_ms",  "tags"};
        for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++)
                if (!is_avro_record(enc->schema) ||
                    avro_schema_record_field_get_index(enc->schema, need[i]) < 0) {
                        snprintf(errstr, errstr_size, "schema lacks field '%s'", need[i]);
                        goto fail;
                }
        if (!(enc->iface = avro_generic_class_from_schema(enc->schema)) ||
            avro_generic_value_new(enc->iface, &enc->value)) {
                snprintf(errstr, errstr_size, "cannot build Avro value: %s", avro_strerror());
                if (enc->iface) {
                        avro_value_iface_decref(enc->iface);
                        enc->iface = NULL;
                }
                goto fail;
        }
        static char empty[1];
        if (!(enc->writer = avro_writer_memory(empty, 0)))
                goto fail;
        return enc;
fail:
        krib_encode_destroy(enc);
        return NULL;
}

krib_encode_t *krib_encode_new_file(const char *path, char *errstr, size_t errstr_size) {
        size_t len;
        char *json = krib_util_slurp(path, &len, errstr, errstr_size);
        if (!json)
                return NULL;
        krib_encode_t *enc = krib_encode_new_json(json, len, errstr, errstr_size);
        free(json);
        return enc;
}

static int set_str(avro_value_t *v, const krib_str_t *s) {
        /* avro-c string sizes count the NUL terminator. */
        return avro_value_set_string_len(v, s->s, s->len + 1);
}

/* For ["null", T]: branch 0 is null, branch 1 the value. */
static int set_opt(avro_value_t *u, int present, avro_value_t *out) {
        avro_value_t b;
        if (avro_value_set_branch(u, present ? 1 : 0, present ? out : &b))
                return -1;
        return present ? 0 : avro_value_set_null(&b);
}

int krib_encode_event(krib_encode_t *enc, const krib_event_t *ev, void *buf, size_t cap,
                      size_t *len) {
        avro_value_t *r = &enc->value, f, e;
        avro_value_reset(r);
        if (avro_value_get_by_name(r, "entity", &f, NULL) || set_str(&f, &ev->entity))
                return -1;
        if (avro_value_get_by_name(r, "keys", &f, NULL))
                return -1;
        for (size_t i = 0; i < ev->key_count; i++)
                if (avro_value_append(&f, &e, NULL) || set_str(&e, &ev->keys[i]))
                        return -1;
        if (avro_value_get_by_name(r, "version", &f, NULL))
                return -1;
        for (size_t i = 0; i < ev->version_count; i++)
                if (avro_value_add(&f, ev->version[i].origin.s, &e, NULL, NULL) ||
                    avro_value_set_long(&e, ev->version[i].counter))
                        return -1;
        if (avro_value_get_by_name(r, "action", &f, NULL) ||
            avro_value_set_enum(&f, (int)ev->action))
                return -1;
        if (avro_value_get_by_name(r, "ts_ms", &f, NULL) || avro_value_set_long(&f, ev->ts_ms))
                return -1;
        if (avro_value_get_by_name(r, "origin", &f, NULL) || set_opt(&f, !!ev->origin.s, &e) ||
            (ev->origin.s && set_str(&e, &ev->origin)))
                return -1;
        if (avro_value_get_by_name(r, "value", &f, NULL) || set_opt(&f, !!ev->value.s, &e) ||
            (ev->value.s && avro_value_set_bytes(&e, (void *)ev->value.s, ev->value.len)))
                return -1;
        if (avro_value_get_by_name(r, "ttl_ms", &f, NULL) || set_opt(&f, ev->ttl_ms >= 0, &e) ||
            (ev->ttl_ms >= 0 && avro_value_set_long(&e, ev->ttl_ms)))
                return -1;
        if (avro_value_get_by_name(r, "tags", &f, NULL))
                return -1;
        for (size_t i = 0; i < ev->tag_count; i++)
                if (avro_value_append(&f, &e, NULL) || set_str(&e, &ev->tags[i]))
                        return -1;
        avro_writer_memory_set_dest(enc->writer, buf, (int64_t)cap);
        if (avro_value_write(enc->writer, r))
                return -1;
        *len = (size_t)avro_writer_tell(enc->writer);
        return 0;
}
