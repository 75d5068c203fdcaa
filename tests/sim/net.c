/* net: conn.h over the simulated cluster.
 *
 * A pipelined command reaches its node after a random delay (in order per
 * connection) and runs there at that moment; its reply travels back the
 * same way and is parsed by hiredis' own reader. Commands of different
 * connections run in arrival order, so replies of different nodes
 * interleave in any way. A connection krib closes still delivers what it
 * sent (the node reads its socket to the end); a connection the network
 * cuts loses what had not arrived, and its replies. Synchronous commands
 * run at once, or cost a command timeout when the node is frozen. */
#include <hiredis.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "sim.h"

int64_t sim_net_delay_min_us = 50, sim_net_delay_max_us = 2000;
sim_send_hook_t *sim_on_send;

typedef struct {
        int argc;
        char **argv;
        size_t *lens;
        int64_t at_us; /* arrival at the node */
} cmd_t;

typedef struct {
        char *p;
        size_t n;
        int64_t at_us; /* arrival at krib */
} rep_t;

struct krib_conn {
        int node, alive, closed, asking;
        int64_t io_timeout_us;
        char err[128];
        cmd_t *q; /* appended, then flushed (on the wire from `sent`) */
        size_t qn, qcap, sent, head;
        rep_t *r;
        size_t rn, rcap, rhead;
        int64_t last_cmd_us, last_rep_us;
        int64_t blocked_until_us; /* a WAIT holds the connection */
        uint64_t inflight;
        redisReader *rd;
};

static krib_conn_t **conns;
static size_t nconns, cap_conns;

static int64_t delay(void) {
        int64_t span = sim_net_delay_max_us - sim_net_delay_min_us;
        return sim_net_delay_min_us + (int64_t)sim_below((uint64_t)(span > 0 ? span : 1));
}

static void cmd_free(cmd_t *c) {
        for (int i = 0; i < c->argc; i++)
                free(c->argv[i]);
        free(c->argv);
        free(c->lens);
}

static void conn_destroy(krib_conn_t *c) {
        for (size_t i = c->head; i < c->qn; i++)
                cmd_free(&c->q[i]);
        for (size_t i = c->rhead; i < c->rn; i++)
                free(c->r[i].p);
        free(c->q);
        free(c->r);
        redisReaderFree(c->rd);
        free(c);
}

/* ---- wire ---- */

static void queue_reply(krib_conn_t *c, sim_buf_t *b, int64_t ran_us) {
        if (c->closed || !c->alive) {
                free(b->p);
                return;
        }
        if (c->rn == c->rcap) {
                c->rcap = c->rcap ? 2 * c->rcap : 64;
                c->r = realloc(c->r, c->rcap * sizeof(*c->r));
                if (!c->r)
                        abort();
        }
        int64_t at = ran_us + delay();
        if (at < c->last_rep_us)
                at = c->last_rep_us;
        c->last_rep_us = at;
        c->r[c->rn++] = (rep_t){b->p, b->n, at};
}

static int64_t node_ready(int node, int64_t at) {
        return sim_node[node].frozen_until_us > at ? sim_node[node].frozen_until_us : at;
}

/* When c's next command (arrived at arrival) can run on its node. */
static int64_t ready(const krib_conn_t *c, int64_t arrival) {
        int64_t at = node_ready(c->node, arrival);
        return c->blocked_until_us > at ? c->blocked_until_us : at;
}

void sim_net_run(void) {
        for (;;) {
                krib_conn_t *best = NULL;
                int64_t best_at = INT64_MAX;
                int64_t best_arrival = INT64_MAX;
                for (size_t i = 0; i < nconns; i++) {
                        krib_conn_t *c = conns[i];
                        if (c->head < c->sent) {
                                int64_t arrival = c->q[c->head].at_us;
                                int64_t at = ready(c, arrival);
                                /* A node that was frozen serves what waited in
                                 * the order it arrived. */
                                if (at <= krib_sim_now_us &&
                                    (at < best_at || (at == best_at && arrival < best_arrival))) {
                                        best = c;
                                        best_at = at;
                                        best_arrival = arrival;
                                }
                        }
                }
                if (!best)
                        break;
                cmd_t *cmd = &best->q[best->head++];
                sim_buf_t b = {0};
                int64_t now = krib_sim_now_us;
                krib_sim_now_us = best_at; /* it runs when it is served */
                sim_cluster_reply_at_us = 0;
                int ask = sim_cluster_exec(best->node, best->asking, cmd->argc, cmd->argv,
                                           cmd->lens, &b);
                krib_sim_now_us = now;
                best->asking = ask;
                cmd_free(cmd);
                int64_t ran = best_at;
                if (sim_cluster_reply_at_us > ran) {
                        ran = sim_cluster_reply_at_us;
                        best->blocked_until_us = ran;
                }
                queue_reply(best, &b, ran);
        }
        /* Connections krib closed leave once their last command ran. */
        size_t keep = 0;
        for (size_t i = 0; i < nconns; i++) {
                krib_conn_t *c = conns[i];
                if (c->closed && c->head == c->sent)
                        conn_destroy(c);
                else
                        conns[keep++] = c;
        }
        nconns = keep;
}

int64_t sim_net_next_us(void) {
        int64_t next = INT64_MAX;
        for (size_t i = 0; i < nconns; i++) {
                krib_conn_t *c = conns[i];
                if (c->head < c->sent) {
                        int64_t at = ready(c, c->q[c->head].at_us);
                        if (at < next)
                                next = at;
                }
                if (c->alive && !c->closed && c->rhead < c->rn && c->r[c->rhead].at_us < next)
                        next = c->r[c->rhead].at_us;
        }
        return next;
}

size_t sim_net_on_wire(void) {
        size_t n = 0;
        for (size_t i = 0; i < nconns; i++)
                n += conns[i]->sent - conns[i]->head + (conns[i]->rn - conns[i]->rhead);
        return n;
}

/* What had not reached the node is lost, and the replies on their way. */
static void cut(krib_conn_t *c, const char *why) {
        c->alive = 0;
        snprintf(c->err, sizeof(c->err), "Connection reset by peer (%s)", why);
        for (size_t x = c->head; x < c->sent; x++)
                cmd_free(&c->q[x]);
        c->head = c->sent;
}

int sim_net_break_one(void) {
        size_t live = 0;
        for (size_t i = 0; i < nconns; i++)
                live += conns[i]->alive && !conns[i]->closed;
        if (!live)
                return -1;
        size_t pick = sim_below(live);
        for (size_t i = 0; i < nconns; i++) {
                krib_conn_t *c = conns[i];
                if (!c->alive || c->closed || pick--)
                        continue;
                cut(c, "simulated");
                return c->node;
        }
        return -1;
}

void sim_net_break_node(int n) {
        for (size_t i = 0; i < nconns; i++) {
                krib_conn_t *c = conns[i];
                if (c->alive && !c->closed && c->node == n)
                        cut(c, "failover");
        }
}

void sim_net_free(void) {
        for (size_t i = 0; i < nconns; i++)
                conn_destroy(conns[i]);
        free(conns);
        conns = NULL;
        nconns = cap_conns = 0;
}

/* ---- conn.h ---- */

krib_tls_t *krib_tls_new(const krib_tls_opts_t *o, char *errstr, size_t errstr_size) {
        (void)o;
        snprintf(errstr, errstr_size, "TLS is not simulated");
        return NULL;
}

void krib_tls_destroy(krib_tls_t *t) {
        (void)t;
}

krib_conn_t *krib_conn_connect(const char *host, int port, int64_t connect_timeout_ms,
                               int64_t io_timeout_ms, krib_tls_t *tls, char *errstr,
                               size_t errstr_size) {
        (void)tls;
        int node = port - SIM_BASE_PORT;
        if (strcmp(host, "127.0.0.1") || node < 0 || node >= SIM_NODES) {
                snprintf(errstr, errstr_size, "Connection refused (no such node)");
                return NULL;
        }
        if (sim_node[node].down_until_us > krib_sim_now_us) {
                snprintf(errstr, errstr_size, "Connection refused (node down)");
                return NULL;
        }
        if (sim_node[node].frozen_until_us > krib_sim_now_us) {
                /* The kernel still accepts: the handshake is not the node. */
                (void)connect_timeout_ms;
        }
        krib_conn_t *c = calloc(1, sizeof(*c));
        c->node = node;
        c->alive = 1;
        c->io_timeout_us = io_timeout_ms * 1000;
        c->rd = redisReaderCreate();
        if (nconns == cap_conns) {
                cap_conns = cap_conns ? 2 * cap_conns : 16;
                conns = realloc(conns, cap_conns * sizeof(*conns));
        }
        conns[nconns++] = c;
        return c;
}

int krib_conn_auth(krib_conn_t *c, const char *username, const char *password, char *errstr,
                   size_t errstr_size) {
        (void)c;
        (void)username;
        (void)password;
        (void)errstr;
        (void)errstr_size;
        return 0;
}

int krib_conn_append(krib_conn_t *c, int argc, const char **argv, const size_t *lens) {
        if (c->qn == c->qcap) {
                /* Slide the consumed prefix down first. */
                if (c->head) {
                        memmove(c->q, c->q + c->head, (c->qn - c->head) * sizeof(*c->q));
                        c->qn -= c->head;
                        c->sent -= c->head;
                        c->head = 0;
                }
                if (c->qn == c->qcap) {
                        c->qcap = c->qcap ? 2 * c->qcap : 64;
                        c->q = realloc(c->q, c->qcap * sizeof(*c->q));
                        if (!c->q)
                                abort();
                }
        }
        cmd_t *cmd = &c->q[c->qn++];
        cmd->argc = argc;
        cmd->argv = malloc((size_t)argc * sizeof(char *));
        cmd->lens = malloc((size_t)argc * sizeof(size_t));
        for (int i = 0; i < argc; i++) {
                cmd->argv[i] = malloc(lens[i] + 1);
                memcpy(cmd->argv[i], argv[i], lens[i]);
                cmd->argv[i][lens[i]] = 0;
                cmd->lens[i] = lens[i];
        }
        c->inflight++;
        if (sim_on_send)
                sim_on_send(c->node, argc, cmd->argv, cmd->lens);
        return 0;
}

/* Formats like hiredis, then reads the request back as an array. */
static int vappend(krib_conn_t *c, const char *fmt, va_list ap) {
        char *buf;
        int len = redisvFormatCommand(&buf, fmt, ap);
        if (len < 0)
                return -1;
        redisReader *rd = redisReaderCreate();
        redisReaderFeed(rd, buf, (size_t)len);
        void *r = NULL;
        int rc = redisReaderGetReply(rd, &r);
        free(buf);
        redisReaderFree(rd);
        redisReply *req = r;
        if (rc != REDIS_OK || !req || req->type != REDIS_REPLY_ARRAY) {
                if (req)
                        freeReplyObject(req);
                return -1;
        }
        const char **argv = malloc(req->elements * sizeof(char *));
        size_t *lens = malloc(req->elements * sizeof(size_t));
        for (size_t i = 0; i < req->elements; i++) {
                argv[i] = req->element[i]->str;
                lens[i] = req->element[i]->len;
        }
        rc = krib_conn_append(c, (int)req->elements, argv, lens);
        free(argv);
        free(lens);
        freeReplyObject(req);
        return rc;
}

int krib_conn_append_fmt(krib_conn_t *c, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        int rc = vappend(c, fmt, ap);
        va_end(ap);
        return rc;
}

int krib_conn_flush(krib_conn_t *c) {
        if (!c->alive)
                return -1;
        for (; c->sent < c->qn; c->sent++) {
                int64_t at = krib_sim_now_us + delay();
                if (at < c->last_cmd_us)
                        at = c->last_cmd_us;
                c->last_cmd_us = at;
                c->q[c->sent].at_us = at;
        }
        return 0;
}

/* The simulated socket takes everything at once. */
int64_t krib_conn_send(krib_conn_t *c) {
        return krib_conn_flush(c);
}

size_t krib_conn_unsent(const krib_conn_t *c) {
        (void)c;
        return 0;
}

int krib_conn_recv(krib_conn_t *c) {
        if (!c->alive)
                return -1;
        int got = 0;
        while (c->rhead < c->rn && c->r[c->rhead].at_us <= krib_sim_now_us) {
                rep_t *r = &c->r[c->rhead++];
                redisReaderFeed(c->rd, r->p, r->n);
                got += (int)r->n;
                free(r->p);
        }
        if (c->rhead == c->rn)
                c->rhead = c->rn = 0;
        return got;
}

int krib_conn_reply(krib_conn_t *c, redisReply **out) {
        void *r = NULL;
        if (redisReaderGetReply(c->rd, &r) != REDIS_OK) {
                snprintf(c->err, sizeof(c->err), "protocol error");
                return -1;
        }
        if (!r)
                return 0;
        c->inflight--;
        *out = r;
        return 1;
}

int krib_conn_read(krib_conn_t *c, redisReply **out) {
        /* Blocking: everything sent arrives and runs now (time moves). */
        for (int spins = 0; spins < 1000000; spins++) {
                int got = krib_conn_reply(c, out);
                if (got)
                        return got > 0 ? 0 : -1;
                if (!c->alive)
                        return -1;
                /* What this wait needs: a command to reach its node, or
                 * this connection's reply (others' replies wait for krib). */
                int64_t next = INT64_MAX;
                for (size_t i = 0; i < nconns; i++) {
                        krib_conn_t *o = conns[i];
                        if (o->head < o->sent) {
                                int64_t at = ready(o, o->q[o->head].at_us);
                                if (at < next)
                                        next = at;
                        }
                }
                if (c->rhead < c->rn && c->r[c->rhead].at_us < next)
                        next = c->r[c->rhead].at_us;
                if (next == INT64_MAX || next - krib_sim_now_us > c->io_timeout_us) {
                        krib_sim_now_us += c->io_timeout_us;
                        snprintf(c->err, sizeof(c->err), "read timed out (simulated)");
                        c->alive = 0;
                        return -1;
                }
                if (next > krib_sim_now_us)
                        krib_sim_now_us = next;
                sim_net_run();
                if (krib_conn_recv(c) < 0)
                        return -1;
        }
        return -1;
}

redisReply *krib_conn_command(krib_conn_t *c, const char *fmt, ...) {
        if (!c->alive)
                return NULL;
        if (c->inflight) {
                snprintf(c->err, sizeof(c->err), "synchronous command with %llu replies pending",
                         (unsigned long long)c->inflight);
                return NULL;
        }
        va_list ap;
        va_start(ap, fmt);
        int rc = vappend(c, fmt, ap);
        va_end(ap);
        redisReply *r = NULL;
        if (rc) {
                snprintf(c->err, sizeof(c->err), "cannot format the command");
                return NULL;
        }
        if (krib_conn_flush(c) || krib_conn_read(c, &r))
                return NULL;
        return r;
}

int krib_conn_fd(const krib_conn_t *c) {
        (void)c;
        return -1;
}

uint64_t krib_conn_inflight(const krib_conn_t *c) {
        return c->inflight;
}

const char *krib_conn_errstr(const krib_conn_t *c) {
        return c->err;
}

void krib_conn_free(krib_conn_t *c) {
        if (!c)
                return;
        /* What was sent still reaches the node, and at once: a new
         * connection's handshake (connect, AUTH, SCRIPT LOAD) takes longer
         * than bytes already in flight, so they cannot overtake them.
         * Nothing comes back. */
        c->closed = 1;
        for (size_t i = c->head; i < c->sent; i++)
                if (c->q[i].at_us > krib_sim_now_us)
                        c->q[i].at_us = krib_sim_now_us;
        for (size_t i = c->rhead; i < c->rn; i++)
                free(c->r[i].p);
        c->rhead = c->rn = 0;
        for (size_t i = c->sent; i < c->qn; i++)
                cmd_free(&c->q[i]);
        c->qn = c->sent;
        if (!c->alive)
                c->head = c->sent;
}
