/* topo: which master owns which hash slot (pure: parses replies, no I/O).
 *
 * Built from a CLUSTER SLOTS reply, patched by MOVED redirections between
 * refreshes, or set to one server for standalone mode. Masters are addressed
 * by index; indexes stay valid until the next krib_topo_reset().
 */
#ifndef KRIB_TOPO_H
#define KRIB_TOPO_H

#include <hiredis.h>
#include <stddef.h>
#include <stdint.h>

#include "slot.h"

#define KRIB_TOPO_HOST_MAX 256

typedef struct {
        char host[KRIB_TOPO_HOST_MAX];
        int port;
} krib_addr_t;

typedef struct krib_topo {
        krib_addr_t *masters;
        size_t master_count, master_cap;
        int32_t slot_owner[KRIB_SLOT_COUNT]; /* index into masters; -1: unassigned */
} krib_topo_t;

void krib_topo_init(krib_topo_t *t);
void krib_topo_reset(krib_topo_t *t); /* forget every master and slot */
void krib_topo_destroy(krib_topo_t *t);

/* "host:port" -> addr (last ':' splits, so bare IPv6 needs [brackets] off). */
int krib_addr_parse(const char *s, krib_addr_t *addr);

/* "from_host:port=to_host:port" (redis.address_map) -> from, to. */
int krib_addr_map_parse(const char *s, krib_addr_t *from, krib_addr_t *to);

/* Translates host:port through map entries ("from=to" strings, already
 * validated); out = the input when no entry names it. */
void krib_addr_map_apply(char *const *map, size_t n, const char *host, int port, krib_addr_t *out);

/* Index of the master at addr, added if new; -1 on allocation failure. */
int krib_topo_master(krib_topo_t *t, const char *host, int port);

/* Replaces the map with a CLUSTER SLOTS reply (borrowed). An empty host in the
 * reply means "the node you asked", which is seed_host. Returns 0, or -1 with
 * errstr for a reply that is not a slot table. */
int krib_topo_load_slots(krib_topo_t *t, const redisReply *reply, const char *seed_host,
                         char *errstr, size_t errstr_size);

/* Every slot owned by one server. */
int krib_topo_load_standalone(krib_topo_t *t, const krib_addr_t *addr);

/* Number of slots with no owner. */
size_t krib_topo_unassigned(const krib_topo_t *t);

typedef enum { KRIB_REDIRECT_NONE = 0, KRIB_REDIRECT_MOVED, KRIB_REDIRECT_ASK } krib_redirect_t;

/* Parses "MOVED 3999 127.0.0.1:6381" / "ASK ..." error text. */
krib_redirect_t krib_topo_parse_redirect(const char *err, size_t len, int *slot, krib_addr_t *addr);

#endif
