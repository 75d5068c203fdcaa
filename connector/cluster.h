/* cluster: the Redis Cluster client's connection side for a loop that must
 * never wait on a node — the slot map, one connection per master, AUTH and
 * TLS, reconnects with backoff.
 *
 * Everything that can block runs on short-lived helper threads: resolving,
 * connecting and the TLS handshake, AUTH (krib_conn_connect/krib_conn_auth),
 * and slot-map refreshes (CLUSTER SLOTS from the seeds, the address map
 * applied). The loop hears of their results through a pipe
 * (krib_cluster_wake_fd) and takes them in krib_cluster_step(), on its own
 * thread; a node that is slow to connect or answer never holds up another
 * node's traffic. A connection handed out is the loop's to use (pipelined
 * commands, krib_conn_recv/krib_conn_reply on readiness); krib_cluster_fail
 * gives it back broken.
 *
 * Standalone mode: one node owning every slot, no refresh.
 *
 * Owned by its user; the helper threads touch only their own job and
 * krib's read-only configuration. krib_cluster_destroy joins them (at most
 * a connect plus an AUTH timeout). Used by krib inspect; the writer, health
 * and sweeps still keep their own connections (docs/ARCHITECTURE.md).
 */
#ifndef KRIB_CLUSTER_H
#define KRIB_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "conn.h"
#include "topo.h"

typedef struct krib_cluster krib_cluster_t;

/* what: the module name for log lines. tls borrowed (NULL: plain TCP). */
krib_cluster_t *krib_cluster_new(const krib_conf_t *conf, krib_tls_t *tls, const char *what,
                                 char *errstr, size_t errstr_size);
void krib_cluster_destroy(krib_cluster_t *c);

/* Readable when a helper thread finished: call krib_cluster_step(). */
int krib_cluster_wake_fd(const krib_cluster_t *c);

typedef enum {
        KRIB_CLUSTER_SAME = 0,   /* nothing changed for the caller */
        KRIB_CLUSTER_NEW_MAP = 1 /* a new slot map: master indexes and connections changed */
} krib_cluster_change_t;

/* Takes what the helper threads finished. On KRIB_CLUSTER_NEW_MAP every
 * connection of the old map is closed (replies the caller waited for on
 * them will not come) and master indexes mean the new map's masters. */
krib_cluster_change_t krib_cluster_step(krib_cluster_t *c, int64_t now_us);

/* Whether a slot map is loaded. */
int krib_cluster_has_map(const krib_cluster_t *c);

/* The master owning slot (an index below krib_cluster_masters()), or -1:
 * unknown, and a refresh is asked for. */
int krib_cluster_owner(krib_cluster_t *c, unsigned slot);
size_t krib_cluster_masters(const krib_cluster_t *c);

/* "host:port" of master m, as announced. */
const char *krib_cluster_name(const krib_cluster_t *c, int m);

/* The ready connection to master m, or NULL: none yet (a connect is started
 * in the background unless one runs or the backoff waits). */
krib_conn_t *krib_cluster_conn(krib_cluster_t *c, int m, int64_t now_us);

/* The caller's connection to m broke or timed out: closed here; the next
 * connect waits the backoff (redis.retry_base_ms doubling to
 * redis.retry_max_ms), and a refresh is asked for. */
void krib_cluster_fail(krib_cluster_t *c, int m, int64_t now_us);

/* Asks for a new slot map (MOVED, ASK, an unowned slot): one refresh at a
 * time, at most one per redis.retry_base_ms. */
void krib_cluster_refresh(krib_cluster_t *c);

/* Blocking, for helper threads and start-up: a connection to the node
 * announced as announced (redis.address_map applied), AUTH done. */
krib_conn_t *krib_cluster_dial(const krib_conf_t *conf, krib_tls_t *tls,
                               const krib_addr_t *announced, char *err, size_t size);

/* Blocking: CLUSTER SLOTS on c into t (host: for entries that give none;
 * name: for the error). 0, or -1 with err set (a map without masters is
 * an error). */
int krib_cluster_fetch_slots(krib_conn_t *c, const char *name, const char *host, krib_topo_t *t,
                             char *err, size_t size);

#endif
