#include "log.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static krib_log_level_t log_level = KRIB_LOG_INFO;
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

void krib_log_write(krib_log_level_t level, const char *module, const char *fmt, ...) {
        if (level > log_level)
                return;
        char line[2048];
        struct timeval tv;
        struct tm tm;
        gettimeofday(&tv, NULL);
        gmtime_r(&tv.tv_sec, &tm);
        int n = snprintf(line, sizeof(line),
                         "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03dZ level=%s module=%s ",
                         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                         tm.tm_sec, (int)(tv.tv_usec / 1000), level_names[level], module);
        va_list ap;
        va_start(ap, fmt);
        if (n > 0 && (size_t)n < sizeof(line))
                vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
        va_end(ap);
        /* One fputs under a lock keeps lines from librdkafka threads whole. */
        pthread_mutex_lock(&log_lock);
        fputs(line, stderr);
        fputc('\n', stderr);
        fflush(stderr);
        pthread_mutex_unlock(&log_lock);
}
