#include "log.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static krib_log_level_t log_level = KRIB_LOG_INFO;
static krib_log_format_t log_format = KRIB_LOG_LOGFMT;

void krib_log_set_format(krib_log_format_t format) {
        log_format = format;
}

/* logfmt tail -> JSON fields: key=value or key="quoted \" value"; text that
 * is not key=value is kept under "text". */
static void tail_to_json(json_t *obj, const char *t) {
        while (*t) {
                while (*t == ' ')
                        t++;
                const char *k = t;
                while (*t && *t != '=' && *t != ' ')
                        t++;
                if (*t != '=') {
                        json_object_set_new(obj, "text", json_stringn(k, strlen(k)));
                        return;
                }
                char key[64];
                snprintf(key, sizeof(key), "%.*s", (int)(t - k), k);
                t++;
                char val[2048];
                size_t n = 0;
                if (*t == '"') {
                        for (t++; *t && *t != '"'; t++) {
                                if (*t == '\\' && t[1])
                                        t++;
                                if (n + 1 < sizeof(val))
                                        val[n++] = *t;
                        }
                        if (*t == '"')
                                t++;
                } else {
                        for (; *t && *t != ' '; t++)
                                if (n + 1 < sizeof(val))
                                        val[n++] = *t;
                }
                json_object_set_new(obj, key, json_stringn(val, n));
        }
}

void krib_log_render(krib_log_format_t format, const char *ts, const char *level,
                     const char *module, const char *tail, char *out, size_t size) {
        if (format == KRIB_LOG_LOGFMT) {
                snprintf(out, size, "ts=%s level=%s module=%s %s", ts, level, module, tail);
                return;
        }
        json_t *obj = json_object();
        json_object_set_new(obj, "ts", json_string(ts));
        json_object_set_new(obj, "level", json_string(level));
        json_object_set_new(obj, "module", json_string(module));
        tail_to_json(obj, tail);
        char *s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
        snprintf(out, size, "%s", s ? s : "{}");
        free(s);
        json_decref(obj);
}
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *level_names[] = {"error", "warn", "info", "debug"};

void krib_log_set_level(krib_log_level_t level) {
        log_level = level;
}

krib_log_level_t krib_log_get_level(void) {
        return log_level;
}

int krib_log_level_parse(const char *name) {
        for (int i = 0; i < 4; i++)
                if (!strcmp(name, level_names[i]))
                        return i;
        return -1;
}

#define ESC_BUFS   8
#define ESC_IN_MAX 200

const char *krib_log_esc(const char *s, size_t len) {
        static _Thread_local char bufs[ESC_BUFS][ESC_IN_MAX * 4 + 8];
        static _Thread_local unsigned next;
        char *out = bufs[next++ % ESC_BUFS], *o = out;
        if (!s)
                s = "", len = 0;
        size_t n = len > ESC_IN_MAX ? ESC_IN_MAX : len;
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s[i];
                if (c == '"' || c == '\\') {
                        *o++ = '\\';
                        *o++ = (char)c;
                } else if (c < 0x20 || c >= 0x7f) {
                        o += sprintf(o, "\\x%02x", c);
                } else {
                        *o++ = (char)c;
                }
        }
        if (n < len)
                o += sprintf(o, "...");
        *o = '\0';
        return out;
}

/* Rewrites control characters in place-safe fashion into dst. */
static void strip_controls(const char *src, char *dst, size_t size) {
        size_t o = 0;
        for (const unsigned char *p = (const unsigned char *)src; *p && o + 5 < size; p++) {
                if (*p < 0x20 || *p == 0x7f)
                        o += (size_t)snprintf(dst + o, size - o, "\\x%02x", *p);
                else
                        dst[o++] = (char)*p;
        }
        dst[o] = '\0';
}

void krib_log_write(krib_log_level_t level, const char *module, const char *fmt, ...) {
        if (level > log_level)
                return;
        char ts[96], raw[2048], tail[2048 * 2], line[4096 + 2048];
        struct timeval tv;
        struct tm tm;
        gettimeofday(&tv, NULL);
        gmtime_r(&tv.tv_sec, &tm);
        snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (int)(tv.tv_usec / 1000));
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(raw, sizeof(raw), fmt, ap);
        va_end(ap);
        strip_controls(raw, tail, sizeof(tail));
        krib_log_render(log_format, ts, level_names[level], module, tail, line, sizeof(line));
        /* One fputs under a lock keeps lines from librdkafka threads whole. */
        pthread_mutex_lock(&log_lock);
        fputs(line, stderr);
        fputc('\n', stderr);
        fflush(stderr);
        pthread_mutex_unlock(&log_lock);
}
