#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int krib_util_grow(void *pp, size_t *cap, size_t need, size_t elem) {
        if (need <= *cap)
                return 0;
        size_t n = need > *cap * 2 ? need : *cap * 2;
        void *p = realloc(*(void **)pp, n * elem);
        if (!p)
                return -1;
        *(void **)pp = p;
        *cap = n;
        return 0;
}

char *krib_util_slurp(const char *path, size_t *len, char *errstr, size_t errstr_size) {
        FILE *fp = fopen(path, "rb");
        if (!fp) {
                snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
                return NULL;
        }
        char *buf = NULL;
        size_t n = 0, cap = 0, got;
        char chunk[4096];
        while ((got = fread(chunk, 1, sizeof(chunk), fp)) > 0) {
                if (krib_util_grow(&buf, &cap, n + got + 1, 1)) {
                        free(buf);
                        fclose(fp);
                        snprintf(errstr, errstr_size, "%s: out of memory", path);
                        return NULL;
                }
                memcpy(buf + n, chunk, got);
                n += got;
        }
        int failed = ferror(fp);
        fclose(fp);
        if (failed) {
                free(buf);
                snprintf(errstr, errstr_size, "%s: read error", path);
                return NULL;
        }
        if (!buf && !(buf = malloc(1))) {
                snprintf(errstr, errstr_size, "%s: out of memory", path);
                return NULL;
        }
        buf[n] = '\0';
        *len = n;
        return buf;
}
