/* slot: Redis Cluster key -> hash slot (pure, no I/O).
 *
 * slot = CRC16-XMODEM(hashed part) mod 16384, where the hashed part is the
 * text between the first '{' and the next '}' when that is non-empty, else the
 * whole key. Same rule as Redis' keyHashSlot(), so krib routes every key to
 * the node the server expects.
 */
#ifndef KRIB_SLOT_H
#define KRIB_SLOT_H

#include <stddef.h>
#include <stdint.h>

#define KRIB_SLOT_COUNT 16384

uint16_t krib_slot_crc16(const char *buf, size_t len);

/* key is borrowed; it need not be NUL-terminated. */
unsigned krib_slot_of(const char *key, size_t len);

#endif
