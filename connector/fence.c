#include "fence.h"

#include <string.h>

#include "fence_script.h"

#define PREFIX     "krib:f:"
#define PREFIX_LEN 7

/* 1 when key's slot comes from a non-empty {tag}. */
static int has_tag(const char *key, size_t len) {
        const char *o = memchr(key, '{', len);
        if (!o)
                return 0;
        size_t rest = len - (size_t)(o - key) - 1;
        const char *c = memchr(o + 1, '}', rest);
        return c && c > o + 1;
}

int krib_fence_key(const char *key, size_t len, char *out, size_t cap) {
        if (has_tag(key, len)) {
                /* The prefix has no braces, so the key's tag stays the first. */
                if (PREFIX_LEN + len > cap)
                        return -1;
                memcpy(out, PREFIX, PREFIX_LEN);
                memcpy(out + PREFIX_LEN, key, len);
                return (int)(PREFIX_LEN + len);
        }
        /* Wrapping in braces hashes exactly the key, unless a '}' inside it
         * would close the tag early. */
        if (memchr(key, '}', len) || PREFIX_LEN + len + 2 > cap)
                return -1;
        memcpy(out, PREFIX "{", PREFIX_LEN + 1);
        memcpy(out + PREFIX_LEN + 1, key, len);
        out[PREFIX_LEN + 1 + len] = '}';
        return (int)(PREFIX_LEN + len + 2);
}
