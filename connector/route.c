#include "route.h"

#include "cdcver.h"

#include "registry.h"
#include "validate.h"

#include <inttypes.h>
#include <jansson.h>
#include <libconfig.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { SRC_ROW = 0, SRC_KEY = 1, SRC_SOURCE = 2 } field_src_t;

typedef struct {
        char *text; /* literal text, or the field name */
        size_t len;
        int8_t field; /* -1 literal, else field_src_t */
} part_t;

typedef struct {
        part_t *parts;
        size_t n;
        char *spec;
} tmpl_t;

typedef enum {
        VER_LSN = 0,
        VER_TS = 1,
        VER_SOURCE_TS = 2,
        VER_COLUMN = 3,
        VER_NONE = 4,
        VER_AUTO = 5, /* by source.connector: postgresql lsn, mysql/mariadb binlog */
        VER_GTID = 6,
        VER_BINLOG = 7,
} ver_t;
typedef enum { ACT_INVALIDATE = 0, ACT_WRITE_THROUGH = 1, ACT_SWEEP = 2 } act_t;

struct krib_route {
        char *name;
        char **topics;
        size_t ntopics;
        regex_t *res; /* one per ^topic, compiled; NULL slots for plain names */
        tmpl_t *keys;
        size_t nkeys;
        ver_t ver;
        char *ver_column;
        char *origin; /* NULL: source.name */
        act_t act;
        char **columns;
        size_t ncolumns;
        int64_t ttl_ms;
        tmpl_t *publish, *stream; /* fan-out; NULL: none */
        int64_t stream_maxlen;
        int avro; /* format debezium-avro */
        int hash; /* write-through as a Redis hash (write_as = "hash") */
};

struct krib_routes {
        krib_route_t *r;
        size_t n;
};

/* ---- templates ---------------------------------------------------------- */

static int tmpl_add(tmpl_t *t, const char *s, size_t len, int field) {
        part_t *p = realloc(t->parts, (t->n + 1) * sizeof(*p));
        if (!p)
                return -1;
        t->parts = p;
        if (!(p[t->n].text = strndup(s, len)))
                return -1;
        p[t->n].len = len;
        p[t->n].field = (int8_t)field;
        t->n++;
        return 0;
}

/* Compiles "a${col}b${key.id}$$c". Returns 0, or -1 with why. */
static int tmpl_compile(tmpl_t *t, const char *spec, char *why, size_t size) {
        memset(t, 0, sizeof(*t));
        if (!(t->spec = strdup(spec)))
                goto oom;
        char lit[1024];
        size_t ll = 0;
        for (const char *p = spec; *p;) {
                if (p[0] == '$' && p[1] == '$') {
                        if (ll + 1 >= sizeof(lit))
                                goto too_long;
                        lit[ll++] = '$';
                        p += 2;
                        continue;
                }
                if (p[0] == '$' && p[1] == '{') {
                        const char *end = strchr(p + 2, '}');
                        if (!end) {
                                snprintf(why, size, "unterminated ${ at offset %zu",
                                         (size_t)(p - spec));
                                return -1;
                        }
                        const char *name = p + 2;
                        size_t nl = (size_t)(end - name);
                        int src = SRC_ROW;
                        if (nl > 4 && !strncmp(name, "key.", 4)) {
                                src = SRC_KEY;
                                name += 4;
                                nl -= 4;
                        } else if (nl > 7 && !strncmp(name, "source.", 7)) {
                                src = SRC_SOURCE;
                                name += 7;
                                nl -= 7;
                        }
                        if (!nl || memchr(name, '$', nl) || memchr(name, '{', nl)) {
                                snprintf(why, size, "bad field name '%.*s'", (int)(end - p - 2),
                                         p + 2);
                                return -1;
                        }
                        if ((ll && tmpl_add(t, lit, ll, -1)) || tmpl_add(t, name, nl, src))
                                goto oom;
                        ll = 0;
                        p = end + 1;
                        continue;
                }
                if (p[0] == '$') {
                        snprintf(why, size, "'$' at offset %zu starts neither ${field} nor $$",
                                 (size_t)(p - spec));
                        return -1;
                }
                if (ll + 1 >= sizeof(lit))
                        goto too_long;
                lit[ll++] = *p++;
        }
        if (ll && tmpl_add(t, lit, ll, -1))
                goto oom;
        for (size_t i = 0; i < t->n; i++)
                if (t->parts[i].field >= 0)
                        return 0;
        snprintf(why, size, "names no field: every event would hit the same key");
        return -1;
too_long:
        snprintf(why, size, "literal text too long");
        return -1;
oom:
        snprintf(why, size, "out of memory");
        return -1;
}

static void tmpl_free(tmpl_t *t) {
        for (size_t i = 0; i < t->n; i++)
                free(t->parts[i].text);
        free(t->parts);
        free(t->spec);
}

/* Appends a scalar JSON value as text. Returns bytes written or -1. */
static int scalar_text(const json_t *v, char *out, size_t size) {
        switch (json_typeof(v)) {
        case JSON_STRING:
                if (json_string_length(v) >= size)
                        return -1;
                memcpy(out, json_string_value(v), json_string_length(v));
                return (int)json_string_length(v);
        case JSON_INTEGER:
                return snprintf(out, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        case JSON_REAL:
                return snprintf(out, size, "%.17g", json_real_value(v));
        case JSON_TRUE:
                return snprintf(out, size, "true");
        case JSON_FALSE:
                return snprintf(out, size, "false");
        default:
                return -1;
        }
}

typedef struct {
        const json_t *row, *key, *source;
} scope_t;

static int tmpl_render(const tmpl_t *t, const scope_t *sc, char *out, size_t size, size_t *len,
                       char *why, size_t wsize) {
        static const char *const src_name[] = {"", "key.", "source."};
        size_t at = 0;
        for (size_t i = 0; i < t->n; i++) {
                const part_t *p = &t->parts[i];
                if (p->field < 0) {
                        if (at + p->len >= size)
                                goto too_long;
                        memcpy(out + at, p->text, p->len);
                        at += p->len;
                        continue;
                }
                const json_t *obj = p->field == SRC_ROW   ? sc->row
                                    : p->field == SRC_KEY ? sc->key
                                                          : sc->source;
                const json_t *v = json_is_object(obj) ? json_object_get(obj, p->text) : NULL;
                if (!v || json_is_null(v)) {
                        snprintf(why, wsize, "template '%s': field %s%s is %s", t->spec,
                                 src_name[p->field], p->text, v ? "null" : "missing");
                        return -1;
                }
                int l = scalar_text(v, out + at, size - at);
                if (l < 0 && !json_is_string(v)) {
                        snprintf(why, wsize, "template '%s': field %s%s is not a scalar", t->spec,
                                 src_name[p->field], p->text);
                        return -1;
                }
                if (l < 0 || at + (size_t)l >= size)
                        goto too_long;
                at += (size_t)l;
        }
        out[at] = '\0';
        *len = at;
        return 0;
too_long:
        snprintf(why, wsize, "template '%s': key longer than %zu bytes", t->spec, size - 1);
        return -1;
}

/* ---- configuration ------------------------------------------------------ */

static int strlist(const config_setting_t *s, char ***out, size_t *n, const char *file,
                   const char *what, char *errstr, size_t size) {
        int line = config_setting_source_line(s);
        if (!config_setting_is_aggregate(s) || config_setting_is_group(s)) {
                snprintf(errstr, size, "%s:%d: %s must be a list of strings", file, line, what);
                return -1;
        }
        int len = config_setting_length(s);
        *out = calloc((size_t)len + 1, sizeof(**out));
        if (!*out) {
                snprintf(errstr, size, "out of memory");
                return -1;
        }
        for (int i = 0; i < len; i++) {
                const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
                if (config_setting_type(e) != CONFIG_TYPE_STRING) {
                        snprintf(errstr, size, "%s:%d: %s: element %d is not a string", file, line,
                                 what, i);
                        return -1;
                }
                if (!((*out)[i] = strdup(config_setting_get_string(e)))) {
                        snprintf(errstr, size, "out of memory");
                        return -1;
                }
                (*n)++;
        }
        return 0;
}

static void strv_free(char **v, size_t n) {
        for (size_t i = 0; v && i < n; i++)
                free(v[i]);
        free(v);
}

static void route_free(krib_route_t *r) {
        for (size_t i = 0; r->res && i < r->ntopics; i++)
                if (r->topics[i] && r->topics[i][0] == '^')
                        regfree(&r->res[i]);
        free(r->res);
        strv_free(r->topics, r->ntopics);
        for (size_t i = 0; i < r->nkeys; i++)
                tmpl_free(&r->keys[i]);
        free(r->keys);
        strv_free(r->columns, r->ncolumns);
        tmpl_t *fan[] = {r->publish, r->stream};
        for (int i = 0; i < 2; i++)
                if (fan[i]) {
                        tmpl_free(fan[i]);
                        free(fan[i]);
                }
        free(r->name);
        free(r->ver_column);
        free(r->origin);
}

/* The keys of one route, with what they mean (--help-config prints them). */
static const char *const route_keys[][3] = {
        {"name", "string", "Name in logs, metrics and dead letters (default: routes[i])."},
        {"topics", "list",
         "Topics of this route; an entry starting with '^' is a regex. The first "
         "route that matches a topic takes it."},
        {"format", "string",
         "debezium-json (default; with or without schemas.enable) or "
         "debezium-avro (needs registry.url)."},
        {"keys", "list", "Key templates over the row: ${col}, ${key.col}, ${source.x}, $$."},
        {"version", "string",
         "auto (default: source.lsn for PostgreSQL, source.binlog for MySQL and MariaDB, "
         "by the record's source.connector), source.lsn, source.binlog (file sequence, "
         "position and row, per server), source.gtid (per GTID domain or server uuid, "
         "ordered within a transaction by the binlog), source.ts_ms or ts_ms (in "
         "microseconds where the record has ts_us; ties broken by the lsn or binlog "
         "position), column:<name> or none (no version: plain UNLINK; not with "
         "write-through). docs/CDC.md says which is safe where."},
        {"origin", "string", "Version vector origin (default: the record's source.name)."},
        {"action", "string",
         "invalidate (default), write-through (SET the row as the value, "
         "version-gated) or sweep (the templates are patterns to unlink)."},
        {"columns", "list", "write-through: the columns written (default: all)."},
        {"ttl_ms", "integer", "write-through: expiry of the value (0: none)."},
        {"publish", "string", "Pub/Sub channel template: a message per change (fan-out)."},
        {"stream", "string", "Stream key template: an XADD per change (fan-out)."},
        {"stream_maxlen", "integer", "Approximate MAXLEN of those streams (default 100000)."},
        {"write_as", "string", "write-through: json (default, one string) or hash (HSET)."},
        {NULL, NULL, NULL},
};

static int route_parse(krib_route_t *r, const config_setting_t *g, size_t index, const char *file,
                       char *errstr, size_t size) {
        int gline = config_setting_source_line(g);
        if (!config_setting_is_group(g)) {
                snprintf(errstr, size, "%s:%d: routes[%zu] must be a group { ... }", file, gline,
                         index);
                return -1;
        }
        for (int i = 0; i < config_setting_length(g); i++) {
                const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
                int ok = 0;
                for (int k = 0; route_keys[k][0] && !ok; k++)
                        ok = !strcmp(route_keys[k][0], config_setting_name(s));
                if (!ok) {
                        snprintf(errstr, size, "%s:%d: routes[%zu]: unknown key '%s'", file,
                                 config_setting_source_line(s), index, config_setting_name(s));
                        return -1;
                }
        }
        const char *str;
        char label[64];
        snprintf(label, sizeof(label), "routes[%zu]", index);
        r->name = strdup(config_setting_lookup_string(g, "name", &str) ? str : label);
        const config_setting_t *s = config_setting_get_member(g, "topics");
        if (!s || !r->name) {
                snprintf(errstr, size, "%s:%d: %s: topics is required", file, gline, r->name);
                return -1;
        }
        if (strlist(s, &r->topics, &r->ntopics, file, "topics", errstr, size))
                return -1;
        if (!r->ntopics) {
                snprintf(errstr, size, "%s:%d: %s: topics is empty", file,
                         config_setting_source_line(s), r->name);
                return -1;
        }
        if (!(r->res = calloc(r->ntopics, sizeof(*r->res))))
                return -1;
        for (size_t i = 0; i < r->ntopics; i++)
                if (r->topics[i][0] == '^' &&
                    regcomp(&r->res[i], r->topics[i], REG_EXTENDED | REG_NOSUB)) {
                        r->topics[i][0] = '~'; /* not compiled: do not regfree */
                        snprintf(errstr, size, "%s:%d: %s: bad topic regex '%s'", file,
                                 config_setting_source_line(s), r->name, r->topics[i] + 1);
                        return -1;
                }
        if (config_setting_lookup_string(g, "format", &str) && !strcmp(str, "debezium-avro"))
                r->avro = 1;
        else if (config_setting_lookup_string(g, "format", &str) && strcmp(str, "debezium-json")) {
                snprintf(errstr, size,
                         "%s:%d: %s: format '%s' is not supported (debezium-json, debezium-avro)",
                         file, config_setting_source_line(config_setting_get_member(g, "format")),
                         r->name, str);
                return -1;
        }
        s = config_setting_get_member(g, "keys");
        if (!s) {
                snprintf(errstr, size, "%s:%d: %s: keys (templates) is required", file, gline,
                         r->name);
                return -1;
        }
        char **specs = NULL;
        size_t nspecs = 0;
        if (strlist(s, &specs, &nspecs, file, "keys", errstr, size)) {
                strv_free(specs, nspecs);
                return -1;
        }
        if (!nspecs || !(r->keys = calloc(nspecs, sizeof(*r->keys)))) {
                snprintf(errstr, size, "%s:%d: %s: keys is empty", file,
                         config_setting_source_line(s), r->name);
                strv_free(specs, nspecs);
                return -1;
        }
        for (size_t i = 0; i < nspecs; i++) {
                char why[256];
                int rc = tmpl_compile(&r->keys[i], specs[i], why, sizeof(why));
                r->nkeys = i + 1;
                if (rc) {
                        snprintf(errstr, size, "%s:%d: %s: keys[%zu] '%s': %s", file,
                                 config_setting_source_line(s), r->name, i, specs[i], why);
                        strv_free(specs, nspecs);
                        return -1;
                }
        }
        strv_free(specs, nspecs);
        r->ver = VER_AUTO;
        if (config_setting_lookup_string(g, "version", &str)) {
                if (!strcmp(str, "source.lsn"))
                        r->ver = VER_LSN;
                else if (!strcmp(str, "auto"))
                        r->ver = VER_AUTO;
                else if (!strcmp(str, "source.gtid"))
                        r->ver = VER_GTID;
                else if (!strcmp(str, "source.binlog"))
                        r->ver = VER_BINLOG;
                else if (!strcmp(str, "ts_ms"))
                        r->ver = VER_TS;
                else if (!strcmp(str, "source.ts_ms"))
                        r->ver = VER_SOURCE_TS;
                else if (!strcmp(str, "none"))
                        r->ver = VER_NONE;
                else if (!strncmp(str, "column:", 7) && str[7]) {
                        r->ver = VER_COLUMN;
                        r->ver_column = strdup(str + 7);
                } else {
                        snprintf(
                                errstr, size,
                                "%s:%d: %s: version '%s' is not auto, source.lsn, source.binlog, "
                                "source.gtid, source.ts_ms, ts_ms, column:<name> or none",
                                file,
                                config_setting_source_line(config_setting_get_member(g, "version")),
                                r->name, str);
                        return -1;
                }
        }
        if (config_setting_lookup_string(g, "origin", &str) && !(r->origin = strdup(str)))
                return -1;
        r->act = ACT_INVALIDATE;
        if (config_setting_lookup_string(g, "action", &str)) {
                if (!strcmp(str, "write-through"))
                        r->act = ACT_WRITE_THROUGH;
                else if (!strcmp(str, "sweep"))
                        r->act = ACT_SWEEP;
                else if (strcmp(str, "invalidate")) {
                        snprintf(errstr, size,
                                 "%s:%d: %s: action '%s' is not invalidate, write-through or sweep",
                                 file,
                                 config_setting_source_line(config_setting_get_member(g, "action")),
                                 r->name, str);
                        return -1;
                }
        }
        if (r->act == ACT_WRITE_THROUGH && r->ver == VER_NONE) {
                snprintf(errstr, size,
                         "%s:%d: %s: write-through needs a version (the value in Redis must never "
                         "go "
                         "back to an older row); version = \"none\" is for invalidate and sweep "
                         "only",
                         file, config_setting_source_line(config_setting_get_member(g, "version")),
                         r->name);
                return -1;
        }
        s = config_setting_get_member(g, "columns");
        if (s && strlist(s, &r->columns, &r->ncolumns, file, "columns", errstr, size))
                return -1;
        long long ttl = 0;
        if (config_setting_lookup_int64(g, "ttl_ms", &ttl) && ttl < 0) {
                snprintf(errstr, size, "%s:%d: %s: ttl_ms must be >= 0", file, gline, r->name);
                return -1;
        }
        r->ttl_ms = ttl;
        /* Fan-out targets are templates too, but may be constant. */
        const char *fan_names[] = {"publish", "stream"};
        tmpl_t **fan[] = {&r->publish, &r->stream};
        for (int i = 0; i < 2; i++) {
                if (!config_setting_lookup_string(g, fan_names[i], &str))
                        continue;
                char why[256];
                if (!(*fan[i] = calloc(1, sizeof(tmpl_t))))
                        return -1;
                if (tmpl_compile(*fan[i], str, why, sizeof(why)) &&
                    !strstr(why, "names no field")) {
                        snprintf(errstr, size, "%s:%d: %s: %s '%s': %s", file,
                                 config_setting_source_line(
                                         config_setting_get_member(g, fan_names[i])),
                                 r->name, fan_names[i], str, why);
                        return -1;
                }
        }
        if (config_setting_lookup_string(g, "write_as", &str)) {
                if (!strcmp(str, "hash"))
                        r->hash = 1;
                else if (strcmp(str, "json")) {
                        snprintf(errstr, size, "%s:%d: %s: write_as '%s' is not json or hash", file,
                                 config_setting_source_line(
                                         config_setting_get_member(g, "write_as")),
                                 r->name, str);
                        return -1;
                }
        }
        long long maxlen = 100000;
        if (config_setting_lookup_int64(g, "stream_maxlen", &maxlen) && maxlen < 1) {
                snprintf(errstr, size, "%s:%d: %s: stream_maxlen must be >= 1", file, gline,
                         r->name);
                return -1;
        }
        r->stream_maxlen = maxlen;
        return 0;
}

krib_routes_t *krib_routes_empty(void) {
        return calloc(1, sizeof(krib_routes_t));
}

krib_routes_t *krib_routes_parse(const config_setting_t *list, const char *file, char *errstr,
                                 size_t errstr_size) {
        krib_routes_t *rs = krib_routes_empty();
        if (!rs) {
                snprintf(errstr, errstr_size, "out of memory");
                return NULL;
        }
        if (!list)
                return rs;
        if (!config_setting_is_list(list) && !config_setting_is_array(list)) {
                snprintf(errstr, errstr_size, "%s:%d: routes must be a list ( { ... }, ... )", file,
                         config_setting_source_line(list));
                goto fail;
        }
        size_t n = (size_t)config_setting_length(list);
        if (n && !(rs->r = calloc(n, sizeof(*rs->r)))) {
                snprintf(errstr, errstr_size, "out of memory");
                goto fail;
        }
        for (size_t i = 0; i < n; i++) {
                rs->n = i + 1;
                if (route_parse(&rs->r[i], config_setting_get_elem(list, (unsigned)i), i, file,
                                errstr, errstr_size))
                        goto fail;
                /* The first matching route takes a topic: a later route that
                 * names one an earlier route already claims would never see
                 * it. (Two regexes that overlap cannot be told apart here.) */
                krib_routes_t earlier = {rs->r, i};
                for (size_t t = 0; t < rs->r[i].ntopics; t++) {
                        const char *topic = rs->r[i].topics[t];
                        const krib_route_t *m =
                                topic[0] == '^' ? NULL : krib_routes_match(&earlier, topic);
                        if (m) {
                                snprintf(errstr, errstr_size,
                                         "%s:%d: %s: topic %s is already claimed by route %s (the "
                                         "first matching route takes a topic, so this one would "
                                         "never see it)",
                                         file,
                                         config_setting_source_line(
                                                 config_setting_get_elem(list, (unsigned)i)),
                                         rs->r[i].name, topic, m->name);
                                goto fail;
                        }
                }
        }
        return rs;
fail:
        krib_routes_destroy(rs);
        return NULL;
}

size_t krib_routes_count(const krib_routes_t *rs) {
        return rs ? rs->n : 0;
}

int krib_routes_topics(const krib_routes_t *rs, char ***out, size_t *n) {
        for (size_t i = 0; rs && i < rs->n; i++)
                for (size_t t = 0; t < rs->r[i].ntopics; t++) {
                        char **v = realloc(*out, (*n + 1) * sizeof(*v));
                        if (!v)
                                return -1;
                        *out = v;
                        if (!(v[*n] = strdup(rs->r[i].topics[t])))
                                return -1;
                        (*n)++;
                }
        return 0;
}

const krib_route_t *krib_routes_match(const krib_routes_t *rs, const char *topic) {
        for (size_t i = 0; rs && i < rs->n; i++)
                for (size_t t = 0; t < rs->r[i].ntopics; t++) {
                        const char *p = rs->r[i].topics[t];
                        if (p[0] == '^' ? regexec(&rs->r[i].res[t], topic, 0, NULL, 0) == 0
                                        : !strcmp(p, topic))
                                return &rs->r[i];
                }
        return NULL;
}

const char *krib_routes_need_registry_name(const krib_routes_t *rs) {
        for (size_t i = 0; rs && i < rs->n; i++)
                if (rs->r[i].avro)
                        return rs->r[i].name;
        return NULL;
}

static const char *ver_name(const krib_route_t *r) {
        static const char *const n[] = {"source.lsn", "ts_ms", "source.ts_ms", "column:",
                                        "none",       "auto",  "source.gtid",  "source.binlog"};
        return n[r->ver];
}

const char *krib_routes_version_text(const krib_routes_t *rs, size_t i, char *buf, size_t size) {
        const krib_route_t *r = &rs->r[i];
        static const char *const what[] = {
                [VER_LSN] = "PostgreSQL's commit order",
                [VER_TS] = "Debezium's read time, ties broken by the lsn or binlog position",
                [VER_SOURCE_TS] = "the commit time, ties broken by the lsn or binlog position",
                [VER_COLUMN] = "the row's own counter",
                [VER_NONE] = "unversioned: every event applied",
                [VER_AUTO] = "by source.connector: postgresql source.lsn, mysql and mariadb "
                             "source.binlog",
                [VER_GTID] = "per GTID domain or server uuid, then the binlog position",
                [VER_BINLOG] = "binlog file, position and row, per server",
        };
        snprintf(buf, size, "route %s: version %s%s (%s)", r->name, ver_name(r),
                 r->ver == VER_COLUMN ? r->ver_column : "", what[r->ver]);
        return buf;
}

static void print_list(FILE *fp, const char *key, char *const *v, size_t n) {
        fprintf(fp, "    %s = [", key);
        for (size_t i = 0; i < n; i++)
                fprintf(fp, "%s\"%s\"", i ? ", " : "", v[i]);
        fprintf(fp, "];\n");
}

void krib_routes_print(const krib_routes_t *rs, FILE *fp) {
        static const char *const acts[] = {"invalidate", "write-through", "sweep"};
        fprintf(fp, "routes = (");
        for (size_t i = 0; rs && i < rs->n; i++) {
                const krib_route_t *r = &rs->r[i];
                fprintf(fp, "%s\n  {\n    name = \"%s\";\n", i ? "," : "", r->name);
                print_list(fp, "topics", r->topics, r->ntopics);
                fprintf(fp, "    format = \"%s\";\n", r->avro ? "debezium-avro" : "debezium-json");
                fprintf(fp, "    keys = [");
                for (size_t k = 0; k < r->nkeys; k++)
                        fprintf(fp, "%s\"%s\"", k ? ", " : "", r->keys[k].spec);
                fprintf(fp, "];\n    version = \"%s%s\";\n", ver_name(r),
                        r->ver == VER_COLUMN ? r->ver_column : "");
                if (r->origin)
                        fprintf(fp, "    origin = \"%s\";\n", r->origin);
                fprintf(fp, "    action = \"%s\";\n", acts[r->act]);
                if (r->ncolumns)
                        print_list(fp, "columns", r->columns, r->ncolumns);
                if (r->act == ACT_WRITE_THROUGH)
                        fprintf(fp, "    ttl_ms = %lld;\n    write_as = \"%s\";\n",
                                (long long)r->ttl_ms, r->hash ? "hash" : "json");
                if (r->publish)
                        fprintf(fp, "    publish = \"%s\";\n", r->publish->spec);
                if (r->stream)
                        fprintf(fp, "    stream = \"%s\";\n    stream_maxlen = %lld;\n",
                                r->stream->spec, (long long)r->stream_maxlen);
                fprintf(fp, "  }");
        }
        fprintf(fp, "%s);\n", rs && rs->n ? "\n" : "");
}

void krib_routes_print_help(FILE *fp) {
        fprintf(fp,
                "%-30s %-8s (a list of groups; docs/CDC.md)\n    CDC records to cache work, "
                "one group per route; each group takes these keys:\n",
                "routes", "list");
        for (int i = 0; route_keys[i][0]; i++)
                fprintf(fp, "routes[].%-21s %-8s\n    %s\n", route_keys[i][0], route_keys[i][1],
                        route_keys[i][2]);
}

int krib_routes_need_registry(const krib_routes_t *rs) {
        for (size_t i = 0; rs && i < rs->n; i++)
                if (rs->r[i].avro)
                        return 1;
        return 0;
}

const char *krib_route_name(const krib_route_t *r) {
        return r->name;
}

void krib_routes_destroy(krib_routes_t *rs) {
        if (!rs)
                return;
        for (size_t i = 0; i < rs->n; i++)
                route_free(&rs->r[i]);
        free(rs->r);
        free(rs);
}

/* ---- Debezium JSON ------------------------------------------------------ */

/* Converter output with schemas.enable=true wraps the record. */
static json_t *unwrap(json_t *root) {
        json_t *payload = json_object_get(root, "payload");
        if (json_is_object(root) && json_object_get(root, "schema") && payload)
                return payload;
        return root;
}

/* A version counter or timestamp: a JSON integer, or a decimal string (some
 * converters), never negative, never clamped. */
static int int_of(const json_t *v, int64_t *out) {
        if (json_is_integer(v)) {
                if (json_integer_value(v) < 0)
                        return -1;
                *out = json_integer_value(v);
                return 0;
        }
        if (json_is_string(v))
                return krib_validate_counter(json_string_value(v), json_string_length(v), out);
        return -1;
}

/* Which position a change carries: the connector's own word when it gives
 * one, else what the source block holds. */
typedef enum { POS_NONE, POS_LSN, POS_BINLOG } pos_kind_t;

static pos_kind_t position_kind(const json_t *source) {
        const char *c = json_string_value(json_object_get(source, "connector"));
        if (c && !strcmp(c, "postgresql"))
                return POS_LSN;
        if (c && (!strcmp(c, "mysql") || !strcmp(c, "mariadb")))
                return POS_BINLOG;
        if (json_object_get(source, "lsn"))
                return POS_LSN;
        if (json_object_get(source, "file") && json_object_get(source, "pos"))
                return POS_BINLOG;
        return POS_NONE;
}

/* One vector entry: origin "<prefix><suffix>" -> counter. */
static int vv_add(krib_event_t *ev, size_t cap, const char *prefix, const char *suffix,
                  int64_t counter) {
        if (!ev->version) {
                ev->version = krib_event_alloc(ev, cap * sizeof(krib_vv_entry_t));
                if (!ev->version)
                        return -2;
        }
        char o[512];
        int n = snprintf(o, sizeof(o), "%s%s", prefix, suffix);
        if (n < 0 || (size_t)n >= sizeof(o))
                n = (int)sizeof(o) - 1;
        krib_vv_entry_t *e = &ev->version[ev->version_count];
        if (krib_event_strdup(ev, &e->origin, o, (size_t)n))
                return -2;
        e->counter = counter;
        ev->version_count++;
        return 0;
}

/* The binlog counter of a MySQL/MariaDB change (cdcver.h), per server. */
static int binlog_entry(const json_t *source, krib_event_t *ev, size_t cap, const char *prefix,
                        char *why, size_t size) {
        int64_t pos, row = -1, server, counter;
        const char *file = json_string_value(json_object_get(source, "file"));
        if (int_of(json_object_get(source, "pos"), &pos)) {
                snprintf(why, size, "version source.binlog: no binlog position (source.pos)");
                return -1;
        }
        if (json_object_get(source, "row") && int_of(json_object_get(source, "row"), &row)) {
                snprintf(why, size, "version source.binlog: source.row is not a row number");
                return -1;
        }
        char err[200];
        if (krib_cdcver_binlog(file, pos, row, &counter, err, sizeof(err))) {
                snprintf(why, size, "version source.binlog: %s", err);
                return -1;
        }
        char suffix[48] = "/binlog";
        if (!int_of(json_object_get(source, "server_id"), &server))
                snprintf(suffix, sizeof(suffix), "/server-%lld", (long long)server);
        return vv_add(ev, cap, prefix, suffix, counter);
}

/* The event's version vector by the route's version source. Two entries
 * where one alone could tie: a GTID (shared by a transaction's changes) or
 * a timestamp (one-second resolution on MySQL/MariaDB) is paired with the
 * change's position, so an equal GTID or timestamp never makes a real
 * change look stale. 0, -1 with why, -2 out of memory. */
static int event_version(const krib_route_t *r, const json_t *env, const json_t *source,
                         const json_t *row, char op, const char *topic, krib_event_t *ev, char *why,
                         size_t size) {
        ver_t ver = r->ver;
        pos_kind_t pk = position_kind(source);
        if (ver == VER_NONE)
                return 0;
        if (ver == VER_AUTO) {
                if (pk == POS_NONE) {
                        const char *c = json_string_value(json_object_get(source, "connector"));
                        snprintf(why, size,
                                 "version auto: connector '%s' gives no lsn or binlog position; "
                                 "set this route's version",
                                 c ? c : "(none)");
                        return -1;
                }
                ver = pk == POS_LSN ? VER_LSN : VER_BINLOG;
        }
        const char *prefix =
                r->origin ? r->origin : json_string_value(json_object_get(source, "name"));
        if (!prefix)
                prefix = topic;
        int64_t counter = 0;
        switch (ver) {
        case VER_LSN:
                if (int_of(json_object_get(source, "lsn"), &counter)) {
                        snprintf(why, size, "version source.lsn: no integer in 0..2^63-1 there%s",
                                 pk == POS_BINLOG ? " (a MySQL/MariaDB record: use version "
                                                    "auto or source.binlog)"
                                                  : "");
                        return -1;
                }
                return vv_add(ev, 1, prefix, "", counter);
        case VER_BINLOG:
                return binlog_entry(source, ev, 1, prefix, why, size);
        case VER_GTID: {
                const char *g = json_string_value(json_object_get(source, "gtid"));
                char domain[64], err[200], suffix[80];
                if (!g) {
                        snprintf(why, size,
                                 "version source.gtid: the record has no GTID (a snapshot read, "
                                 "or gtid_mode off on MySQL): use version auto or source.binlog");
                        return -1;
                }
                if (krib_cdcver_gtid(g, domain, sizeof(domain), &counter, err, sizeof(err))) {
                        snprintf(why, size, "version source.gtid: %s", err);
                        return -1;
                }
                snprintf(suffix, sizeof(suffix), "/gtid-%s", domain);
                int rc = vv_add(ev, 2, prefix, suffix, counter);
                if (rc)
                        return rc;
                /* A transaction's changes share its GTID: the binlog
                 * position orders them. */
                return binlog_entry(source, ev, 2, prefix, why, size);
        }
        case VER_TS:
        case VER_SOURCE_TS: {
                /* Microseconds where the record has ts_us, so that one
                 * origin never mixes units. */
                const json_t *blk = ver == VER_TS ? env : source;
                const char *name = ver == VER_TS ? "ts_ms" : "source.ts_ms";
                int64_t us;
                if (!int_of(json_object_get(blk, "ts_us"), &us))
                        counter = us;
                else if (!int_of(json_object_get(blk, "ts_ms"), &counter) &&
                         counter <= INT64_MAX / 1000)
                        counter *= 1000;
                else {
                        snprintf(why, size, "version %s: no integer in 0..2^63-1 there", name);
                        return -1;
                }
                int rc = vv_add(ev, 2, prefix, "", counter);
                if (rc || pk == POS_NONE)
                        return rc;
                /* Ties (same second on MySQL/MariaDB, same microsecond
                 * elsewhere) go to the later position. */
                if (pk == POS_LSN) {
                        int64_t lsn;
                        if (int_of(json_object_get(source, "lsn"), &lsn))
                                return 0;
                        return vv_add(ev, 2, prefix, "/lsn", lsn);
                }
                return binlog_entry(source, ev, 2, prefix, why, size);
        }
        case VER_COLUMN:
                if (int_of(json_object_get(row, r->ver_column), &counter)) {
                        snprintf(why, size, "version %s: no integer in 0..2^63-1 there",
                                 r->ver_column);
                        return -1;
                }
                /* A delete carries the version of the last write, yet comes
                 * after it: order it just past that write. */
                if (op == 'd') {
                        if (counter == INT64_MAX) {
                                snprintf(why, size,
                                         "version %s: %lld leaves no room to order the delete "
                                         "after it",
                                         r->ver_column, (long long)counter);
                                return -1;
                        }
                        counter++;
                }
                return vv_add(ev, 1, prefix, "", counter);
        default:
                return 0;
        }
}

/* When the change was committed, in ms, for end-to-end latency: the
 * source's finest clock (ts_ns, ts_us, ts_ms). MySQL and MariaDB stamp
 * whole seconds; then Debezium's own read time (the envelope's ts_ms, at
 * most a second later and never before the commit) is the closer bound. */
static int64_t commit_ms(const json_t *env, const json_t *source) {
        int64_t t = 0, ns, us, ms, env_ms;
        if (!int_of(json_object_get(source, "ts_ns"), &ns))
                t = ns / 1000000;
        else if (!int_of(json_object_get(source, "ts_us"), &us))
                t = us / 1000;
        else if (!int_of(json_object_get(source, "ts_ms"), &ms))
                t = ms;
        else if (!int_of(json_object_get(env, "ts_ms"), &env_ms))
                return env_ms;
        else
                return 0;
        if (t % 1000 == 0 && position_kind(source) == POS_BINLOG &&
            !int_of(json_object_get(env, "ts_ms"), &env_ms) && env_ms >= t && env_ms < t + 1000)
                return env_ms;
        return t;
}

/* The write-through value of row: the selected columns (or the whole row)
 * as compact JSON, or a flat object of strings for write_as = "hash".
 * 0, -1 with the reason in why (a column missing or not representable), or
 * -2 out of memory. */
static int build_value(const krib_route_t *r, const json_t *row, krib_event_t *ev, char *why,
                       size_t why_size) {
        json_t *out = json_object();
        if (!out)
                return -2;
        if (r->ncolumns) {
                for (size_t i = 0; i < r->ncolumns; i++) {
                        json_t *v = json_object_get(row, r->columns[i]);
                        if (!v) {
                                json_decref(out);
                                snprintf(why, why_size, "column %s is missing", r->columns[i]);
                                return -1;
                        }
                        json_object_set(out, r->columns[i], v);
                }
        } else {
                json_object_update(out, (json_t *)row);
        }
        if (r->hash) {
                /* Hash fields are strings; nulls become absent fields. */
                const char *f;
                json_t *v, *flat = json_object();
                json_object_foreach(out, f, v) {
                        char text[4096];
                        int l = json_is_null(v) ? -1 : scalar_text(v, text, sizeof(text));
                        if (l >= 0)
                                json_object_set_new(flat, f, json_stringn(text, (size_t)l));
                        else if (!json_is_null(v)) {
                                snprintf(why, why_size,
                                         json_is_string(v)
                                                 ? "column %s is longer than %zu bytes: too long "
                                                   "for "
                                                   "a hash field"
                                                 : "column %s is not a scalar: it cannot be a hash "
                                                   "field",
                                         f, sizeof(text) - 1);
                                json_decref(flat);
                                json_decref(out);
                                return -1;
                        }
                }
                json_decref(out);
                out = flat;
                ev->value_hash = 1;
        }
        char *text = json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(out);
        if (!text || krib_event_strdup(ev, &ev->value, text, strlen(text))) {
                free(text);
                return -2;
        }
        free(text);
        ev->action = KRIB_ACTION_UPSERT;
        ev->ttl_ms = r->ttl_ms > 0 ? r->ttl_ms : -1;
        return 0;
}

/* Channel, stream and the note they carry: what changed, at which version. */
static int fanout(const krib_route_t *r, const scope_t *sc, char op, krib_event_t *ev, char *errstr,
                  size_t errstr_size) {
        char buf[1024];
        size_t len;
        const tmpl_t *t[] = {r->publish, r->stream};
        krib_str_t *dst[] = {&ev->channel, &ev->stream};
        for (int i = 0; i < 2; i++)
                if (t[i] && (tmpl_render(t[i], sc, buf, sizeof(buf), &len, errstr, errstr_size) ||
                             krib_event_strdup(ev, dst[i], buf, len)))
                        return -1;
        ev->stream_maxlen = r->stream_maxlen;
        json_t *note = json_object(), *keys = json_array(), *ver = json_object();
        char ops[2] = {op, 0};
        json_object_set_new(note, "entity", json_stringn(ev->entity.s, ev->entity.len));
        json_object_set_new(note, "op", json_string(ops));
        for (size_t v = 0; v < ev->version_count; v++)
                json_object_set_new(ver, ev->version[v].origin.s,
                                    json_integer(ev->version[v].counter));
        json_object_set_new(note, "version", ver);
        for (size_t k = 0; k < ev->key_count; k++)
                json_array_append_new(keys, json_stringn(ev->keys[k].s, ev->keys[k].len));
        json_object_set_new(note, "keys", keys);
        char *text = json_dumps(note, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(note);
        int rc = !text || krib_event_strdup(ev, &ev->note, text, strlen(text));
        free(text);
        if (rc)
                snprintf(errstr, errstr_size, "out of memory");
        return rc ? -1 : 0;
}

krib_route_result_t krib_route_decode(const krib_route_t *r, struct krib_registry *reg,
                                      const char *topic, const void *key, size_t key_len,
                                      const void *value, size_t value_len, krib_event_t *ev,
                                      krib_route_info_t *info, char *errstr, size_t errstr_size) {
        info->op = 0;
        /* The pipeline reuses its event slots: nothing of the record decoded
         * there before (a defect, a value, a vector) may carry over, and the
         * arena starts over (krib_decode_event() does the same). */
        krib_event_reset(ev);
        if (!value || !value_len)
                return KRIB_ROUTE_SKIP; /* tombstone after a delete */
        json_error_t je;
        json_t *root = NULL, *kroot = NULL;
        krib_route_result_t rc = KRIB_ROUTE_ERROR;
        if (r->avro) {
                if (!reg) {
                        snprintf(errstr, errstr_size, "debezium-avro needs registry.url");
                        return KRIB_ROUTE_ERROR;
                }
                krib_reg_result_t rr =
                        krib_registry_decode(reg, value, value_len, &root, errstr, errstr_size);
                if (rr != KRIB_REG_OK)
                        return rr == KRIB_REG_UNAVAILABLE ? KRIB_ROUTE_UNAVAILABLE
                                                          : KRIB_ROUTE_ERROR;
        } else if (!(root = json_loadb(value, value_len, JSON_REJECT_DUPLICATES, &je))) {
                snprintf(errstr, errstr_size, "value is not JSON: %s (column %d)", je.text,
                         je.column);
                return KRIB_ROUTE_ERROR;
        }
        json_t *env = unwrap(root);
        const char *op = json_string_value(json_object_get(env, "op"));
        json_t *source = json_object_get(env, "source");
        if (!json_is_object(env) || !op || !op[0] || op[1]) {
                snprintf(errstr, errstr_size, "not a Debezium change event (no op)");
                goto done;
        }
        info->op = op[0];
        json_t *row;
        switch (op[0]) {
        case 'c':
        case 'u':
        case 'r':
                row = json_object_get(env, "after");
                break;
        case 'd':
                row = json_object_get(env, "before");
                break;
        case 't':
        case 'm':
                rc = KRIB_ROUTE_SKIP;
                goto done;
        default:
                snprintf(errstr, errstr_size, "unknown Debezium op '%s'", op);
                goto done;
        }
        if (!json_is_object(row)) {
                snprintf(errstr, errstr_size, "op '%c' without a%s row", op[0],
                         op[0] == 'd' ? " before" : "n after");
                goto done;
        }
        /* A key that is neither framed Avro nor JSON (a plain string key)
         * leaves ${key.x} unset. */
        if (key && key_len && r->avro && key_len >= 5 && ((const uint8_t *)key)[0] == 0) {
                char kerr[256];
                krib_reg_result_t kr =
                        krib_registry_decode(reg, key, key_len, &kroot, kerr, sizeof(kerr));
                if (kr == KRIB_REG_UNAVAILABLE) {
                        rc = KRIB_ROUTE_UNAVAILABLE;
                        goto done;
                }
        } else if (key && key_len) {
                kroot = json_loadb(key, key_len, 0, &je);
        }
        json_t *kobj = kroot ? unwrap(kroot) : NULL;
        scope_t sc = {row, kobj, source};

        /* Keys from the templates. */
        char buf[4096];
        ev->keys = krib_event_alloc(ev, r->nkeys * sizeof(krib_str_t));
        if (!ev->keys)
                goto oom;
        for (size_t i = 0; i < r->nkeys; i++) {
                size_t len;
                if (tmpl_render(&r->keys[i], &sc, buf, sizeof(buf), &len, errstr, errstr_size))
                        goto done;
                if (krib_event_strdup(ev, &ev->keys[i], buf, len))
                        goto oom;
        }
        ev->key_count = r->nkeys;

        /* Entity: the table and the primary key (the Kafka key), else the first key. */
        /* PostgreSQL names a schema; MySQL and MariaDB a database. */
        const char *schema = json_string_value(json_object_get(source, "schema"));
        if (!schema)
                schema = json_string_value(json_object_get(source, "db"));
        const char *table = json_string_value(json_object_get(source, "table"));
        char *kjson = kobj ? json_dumps(kobj, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        int el = kjson ? snprintf(buf, sizeof(buf), "%s.%s/%s", schema ? schema : "",
                                  table ? table : topic, kjson)
                       : snprintf(buf, sizeof(buf), "%s", ev->keys[0].s);
        free(kjson);
        if (el < 0 || (size_t)el >= sizeof(buf) ||
            krib_event_strdup(ev, &ev->entity, buf, (size_t)el))
                goto oom;

        /* Version. */
        {
                char why[300];
                int vr = event_version(r, env, source, row, op[0], topic, ev, why, sizeof(why));
                if (vr == -2)
                        goto oom;
                if (vr && r->act == ACT_SWEEP) {
                        snprintf(errstr, errstr_size, "%s", why);
                        goto done;
                }
                if (vr) {
                        /* Fail safe: the keys are known, so they are still
                         * invalidated; then the record is dead-lettered
                         * with the reason. */
                        ev->ts_ms = commit_ms(env, source);
                        if (krib_event_degrade(ev, why, "krib.RouteError"))
                                goto oom;
                        if (krib_validate_event(ev, errstr, errstr_size))
                                goto done;
                        rc = KRIB_ROUTE_OK;
                        goto done;
                }
        }
        ev->ts_ms = commit_ms(env, source);

        ev->action = KRIB_ACTION_DELETE;
        ev->ttl_ms = -1;
        if (r->act == ACT_SWEEP) { /* the templates are patterns: sweep them */
                ev->tags = ev->keys;
                ev->tag_count = ev->key_count;
                ev->keys = NULL;
                ev->key_count = 0;
                ev->action = KRIB_ACTION_TAG;
        }
        if (r->act == ACT_WRITE_THROUGH && op[0] != 'd') {
                char why[300];
                int b = build_value(r, row, ev, why, sizeof(why));
                if (b == -2)
                        goto oom;
                /* No value, but the row did change: the keys are still
                 * invalidated (the event stays a DELETE), then the record
                 * is dead-lettered with the reason. */
                if (b == -1 && krib_event_strdup(ev, &ev->defect, why, strlen(why)))
                        goto oom;
        }
        if ((r->publish || r->stream) && fanout(r, &sc, op[0], ev, errstr, errstr_size))
                goto done;
        /* The same rules as krib's own events (validate.h). */
        if (krib_validate_event(ev, errstr, errstr_size))
                goto done;
        rc = KRIB_ROUTE_OK;
        goto done;
oom:
        snprintf(errstr, errstr_size, "out of memory");
        rc = KRIB_ROUTE_ERROR;
done:
        json_decref(root);
        if (kroot)
                json_decref(kroot);
        return rc;
}
