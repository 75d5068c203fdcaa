/* util: the two helpers several modules share. */
#ifndef KRIB_UTIL_H
#define KRIB_UTIL_H

#include <stddef.h>

/* Grows the array *pp (elements of elem bytes, capacity *cap) to hold at
 * least need elements, at least doubling. 0, or -1 with *pp untouched. */
int krib_util_grow(void *pp, size_t *cap, size_t need, size_t elem);

/* Reads a whole file into a malloc'd NUL-terminated buffer (caller frees).
 * NULL + errstr naming the file. */
char *krib_util_slurp(const char *path, size_t *len, char *errstr, size_t errstr_size);

#endif
