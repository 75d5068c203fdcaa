/* log: one logfmt line per event of interest, to stderr.
 *
 * Every line carries ts, level and module; the rest is the caller's
 * "key=value ..." text. The sink is process-wide and thread-safe (librdkafka
 * logs from its own threads through krib_log_rdkafka()).
 */
#ifndef KRIB_LOG_H
#define KRIB_LOG_H

#include <stdarg.h>
#include <stddef.h>

typedef enum {
        KRIB_LOG_ERROR = 0,
        KRIB_LOG_WARN = 1,
        KRIB_LOG_INFO = 2,
        KRIB_LOG_DEBUG = 3,
} krib_log_level_t;

typedef enum { KRIB_LOG_LOGFMT = 0, KRIB_LOG_JSON = 1 } krib_log_format_t;

/* logfmt (default) or one JSON object per line, the tail's key=value pairs
 * becoming fields. */
void krib_log_set_format(krib_log_format_t format);

/* Renders one line (without newline) into out: exposed for tests. */
void krib_log_render(krib_log_format_t format, const char *ts, const char *level,
                     const char *module, const char *tail, char *out, size_t size);

/* Lines above this level are discarded. Default KRIB_LOG_INFO. */
void krib_log_set_level(krib_log_level_t level);
krib_log_level_t krib_log_get_level(void);

/* Parses "error|warn|info|debug"; returns -1 for anything else. */
int krib_log_level_parse(const char *name);

#if defined(__GNUC__)
#define KRIB_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define KRIB_PRINTF(a, b)
#endif

/* Untrusted text (a key, an entity, a Redis error) made safe inside a
 * quoted logfmt value: '"' and '\\' are escaped, control and non-ASCII bytes
 * become \xNN, and more than 200 input bytes are cut with "...". Returns
 * one of a few thread-local buffers, valid for the next few calls. */
const char *krib_log_esc(const char *s, size_t len);

/* fmt produces the tail of the line, conventionally `msg="..." k=v ...`. */
/* Control characters in the rendered tail are escaped, whatever the caller
 * passed: one call is one line. */
void krib_log_write(krib_log_level_t level, const char *module, const char *fmt, ...)
        KRIB_PRINTF(3, 4);

#define krib_log_error(mod, ...) krib_log_write(KRIB_LOG_ERROR, mod, __VA_ARGS__)
#define krib_log_warn(mod, ...)  krib_log_write(KRIB_LOG_WARN, mod, __VA_ARGS__)
#define krib_log_info(mod, ...)  krib_log_write(KRIB_LOG_INFO, mod, __VA_ARGS__)
#define krib_log_debug(mod, ...)                                                                   \
        do {                                                                                       \
                if (krib_log_get_level() >= KRIB_LOG_DEBUG)                                        \
                        krib_log_write(KRIB_LOG_DEBUG, mod, __VA_ARGS__);                          \
        } while (0)

#endif
