/* fence: where a key's version fence lives, and the script that keeps it.
 *
 * The fence of a key holds the newest version vector krib applied to it, so
 * a late or replayed older event is refused inside Redis, even after a krib
 * restart or across partitions. It must share the key's hash slot, because
 * one script call reads the fence and writes the key atomically.
 */
#ifndef KRIB_FENCE_H
#define KRIB_FENCE_H

#include <stddef.h>

/* Lua source of connector/fence.lua (NUL-terminated). */
extern const char krib_fence_script[];

/* Writes the fence key of key into out: "krib:f:" + key when key has a hash
 * tag (the tag still decides the slot), else "krib:f:{" + key + "}". Returns
 * its length, or -1 when no slot-preserving name exists (a key without a
 * valid tag that contains '}') or out is too small. */
int krib_fence_key(const char *key, size_t len, char *out, size_t cap);

#endif
