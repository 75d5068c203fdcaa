#include "topo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void krib_topo_init(krib_topo_t *t) {
        memset(t, 0, sizeof(*t));
        for (size_t i = 0; i < KRIB_SLOT_COUNT; i++)
                t->slot_owner[i] = -1;
}

void krib_topo_reset(krib_topo_t *t) {
        t->master_count = 0;
        for (size_t i = 0; i < KRIB_SLOT_COUNT; i++)
                t->slot_owner[i] = -1;
}

void krib_topo_destroy(krib_topo_t *t) {
        free(t->masters);
        t->masters = NULL;
        t->master_count = t->master_cap = 0;
}

int krib_addr_parse(const char *s, krib_addr_t *addr) {
        const char *c = strrchr(s, ':');
        if (!c || c == s || (size_t)(c - s) >= sizeof(addr->host))
                return -1;
        char *end;
        long port = strtol(c + 1, &end, 10);
        if (end == c + 1 || (*end && *end != '@') || port < 1 || port > 65535)
                return -1;
        memcpy(addr->host, s, (size_t)(c - s));
        addr->host[c - s] = '\0';
        addr->port = (int)port;
        return 0;
}

int krib_addr_map_parse(const char *s, krib_addr_t *from, krib_addr_t *to) {
        const char *eq = strchr(s, '=');
        char left[KRIB_TOPO_HOST_MAX + 8];
        if (!eq || (size_t)(eq - s) >= sizeof(left))
                return -1;
        memcpy(left, s, (size_t)(eq - s));
        left[eq - s] = '\0';
        return krib_addr_parse(left, from) || krib_addr_parse(eq + 1, to) ? -1 : 0;
}

void krib_addr_map_apply(char *const *map, size_t n, const char *host, int port, krib_addr_t *out) {
        for (size_t i = 0; i < n; i++) {
                krib_addr_t from, to;
                if (!krib_addr_map_parse(map[i], &from, &to) && from.port == port &&
                    !strcmp(from.host, host)) {
                        *out = to;
                        return;
                }
        }
        snprintf(out->host, sizeof(out->host), "%s", host);
        out->port = port;
}

int krib_topo_master(krib_topo_t *t, const char *host, int port) {
        for (size_t i = 0; i < t->master_count; i++)
                if (t->masters[i].port == port && !strcmp(t->masters[i].host, host))
                        return (int)i;
        if (strlen(host) >= KRIB_TOPO_HOST_MAX)
                return -1;
        if (t->master_count == t->master_cap) {
                size_t cap = t->master_cap ? t->master_cap * 2 : 8;
                krib_addr_t *m = realloc(t->masters, cap * sizeof(*m));
                if (!m)
                        return -1;
                t->masters = m;
                t->master_cap = cap;
        }
        krib_addr_t *a = &t->masters[t->master_count];
        snprintf(a->host, sizeof(a->host), "%s", host);
        a->port = port;
        return (int)t->master_count++;
}

int krib_topo_load_slots(krib_topo_t *t, const redisReply *r, const char *seed_host, char *errstr,
                         size_t errstr_size) {
        if (!r || r->type != REDIS_REPLY_ARRAY) {
                snprintf(errstr, errstr_size, "CLUSTER SLOTS: expected an array, got %s",
                         r && r->type == REDIS_REPLY_ERROR ? r->str : "something else");
                return -1;
        }
        krib_topo_reset(t);
        for (size_t i = 0; i < r->elements; i++) {
                const redisReply *e = r->element[i];
                if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
                    e->element[0]->type != REDIS_REPLY_INTEGER ||
                    e->element[1]->type != REDIS_REPLY_INTEGER ||
                    e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2 ||
                    e->element[2]->element[0]->type != REDIS_REPLY_STRING ||
                    e->element[2]->element[1]->type != REDIS_REPLY_INTEGER) {
                        snprintf(errstr, errstr_size, "CLUSTER SLOTS: malformed entry %zu", i);
                        return -1;
                }
                long long lo = e->element[0]->integer, hi = e->element[1]->integer;
                const char *host = e->element[2]->element[0]->str;
                long long port = e->element[2]->element[1]->integer;
                if (lo < 0 || hi >= KRIB_SLOT_COUNT || lo > hi || port < 1 || port > 65535) {
                        snprintf(errstr, errstr_size, "CLUSTER SLOTS: bad range %lld-%lld", lo, hi);
                        return -1;
                }
                /* Redis answers "" (or "?") when it does not know its own
                 * address; the address we asked is the one that works. */
                if (!*host || !strcmp(host, "?"))
                        host = seed_host;
                int m = krib_topo_master(t, host, (int)port);
                if (m < 0) {
                        snprintf(errstr, errstr_size, "CLUSTER SLOTS: out of memory");
                        return -1;
                }
                for (long long s = lo; s <= hi; s++)
                        t->slot_owner[s] = m;
        }
        return 0;
}

int krib_topo_load_standalone(krib_topo_t *t, const krib_addr_t *addr) {
        krib_topo_reset(t);
        int m = krib_topo_master(t, addr->host, addr->port);
        if (m < 0)
                return -1;
        for (size_t s = 0; s < KRIB_SLOT_COUNT; s++)
                t->slot_owner[s] = m;
        return 0;
}

size_t krib_topo_unassigned(const krib_topo_t *t) {
        size_t n = 0;
        for (size_t s = 0; s < KRIB_SLOT_COUNT; s++)
                n += t->slot_owner[s] < 0;
        return n;
}

krib_redirect_t krib_topo_parse_redirect(const char *err, size_t len, int *slot,
                                         krib_addr_t *addr) {
        krib_redirect_t kind;
        size_t skip;
        if (len > 6 && !strncmp(err, "MOVED ", 6)) {
                kind = KRIB_REDIRECT_MOVED;
                skip = 6;
        } else if (len > 4 && !strncmp(err, "ASK ", 4)) {
                kind = KRIB_REDIRECT_ASK;
                skip = 4;
        } else
                return KRIB_REDIRECT_NONE;
        char buf[KRIB_TOPO_HOST_MAX + 32];
        size_t n = len - skip < sizeof(buf) - 1 ? len - skip : sizeof(buf) - 1;
        memcpy(buf, err + skip, n);
        buf[n] = '\0';
        char *end;
        long s = strtol(buf, &end, 10);
        if (end == buf || *end != ' ' || s < 0 || s >= KRIB_SLOT_COUNT)
                return KRIB_REDIRECT_NONE;
        /* Redis 7 may leave the host out (":6381") when it has no
         * announced endpoint; the caller then keeps the replying node's host. */
        if (end[1] == ':') {
                long port = strtol(end + 2, NULL, 10);
                if (port < 1 || port > 65535)
                        return KRIB_REDIRECT_NONE;
                addr->host[0] = '\0';
                addr->port = (int)port;
        } else if (krib_addr_parse(end + 1, addr))
                return KRIB_REDIRECT_NONE;
        *slot = (int)s;
        return kind;
}
