/* group: consumer.h over the simulated topic and group (group.h). */
#include "group.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consumer.h"
#include "offsets.h"
#include "sim.h"

sim_part_t sim_parts[SIM_PARTS];
sim_commit_hook_t *sim_on_commit;
int sim_group_verbose;

struct rd_kafka_topic_s {
        const char *name;
};
static struct rd_kafka_topic_s topic = {SIM_TOPIC};

struct krib_consumer {
        int id;
        krib_consumer_hooks_t hooks;
        int assigned[SIM_PARTS], paused[SIM_PARTS], to_assign[SIM_PARTS];
        int64_t pos[SIM_PARTS], stored[SIM_PARTS];
        rd_kafka_topic_partition_list_t *revoking; /* recorded, not yet released */
        int revoke_pending[SIM_PARTS];             /* to record at the next poll */
        int lost_part[SIM_PARTS];                  /* already someone else's */
        int released[SIM_PARTS];                   /* given up (revoke done), not assigned again */
        int lost, lost_pending;
        unsigned long rebalances;
};

static krib_consumer_t *members[SIM_MEMBERS];
static int nmembers;

/* ---- messages ---- */

typedef struct {
        rd_kafka_message_t m;
} sim_kmsg_t;

const char *sim_topic_name(const rd_kafka_topic_t *rkt) {
        return rkt->name;
}

void sim_message_destroy(rd_kafka_message_t *m) {
        if (!m)
                return;
        free(m->payload);
        free(m);
}

int64_t sim_message_timestamp(const rd_kafka_message_t *m, rd_kafka_timestamp_type_t *tstype) {
        (void)m;
        if (tstype)
                *tstype = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        return -1; /* the latency figures read the wall clock: not simulated */
}

const char *sim_message_errstr(const rd_kafka_message_t *m) {
        return rd_kafka_err2str(m->err);
}

/* ---- the group ---- */

void sim_group_reset(void) {
        sim_group_free();
        for (int p = 0; p < SIM_PARTS; p++) {
                sim_parts[p].owner = -1;
                sim_parts[p].next_owner = p * SIM_MEMBERS / SIM_PARTS; /* assigned at join */
        }
}

void sim_group_free(void) {
        for (int p = 0; p < SIM_PARTS; p++) {
                for (size_t i = 0; i < sim_parts[p].n; i++)
                        free(sim_parts[p].log[i].payload);
                free(sim_parts[p].log);
                memset(&sim_parts[p], 0, sizeof(sim_parts[p]));
        }
}

void sim_group_append(int part, const void *payload, size_t len, uint32_t rec) {
        sim_part_t *sp = &sim_parts[part];
        if (sp->n == sp->cap) {
                sp->cap = sp->cap ? 2 * sp->cap : 1024;
                sp->log = realloc(sp->log, sp->cap * sizeof(*sp->log));
                if (!sp->log)
                        abort();
        }
        sim_msg_t *m = &sp->log[sp->n++];
        m->payload = malloc(len ? len : 1);
        memcpy(m->payload, payload, len);
        m->len = len;
        m->rec = rec;
}

static void commit_one(krib_consumer_t *c, int p) {
        sim_part_t *sp = &sim_parts[p];
        if (c->stored[p] < 0 || sp->owner != c->id || c->stored[p] == sp->committed)
                return; /* nothing stored, or not its partition (a stale generation) */
        if (sim_on_commit)
                sim_on_commit(p, sp->committed, c->stored[p], c->id);
        sim_note("commit member=%d partition=%d %lld -> %lld", c->id, p, (long long)sp->committed,
                 (long long)c->stored[p]);
        sp->committed = c->stored[p];
}

void sim_group_autocommit(void) {
        for (int i = 0; i < nmembers; i++)
                for (int p = 0; p < SIM_PARTS; p++)
                        if (members[i]->assigned[p])
                                commit_one(members[i], p);
}

/* Whether p is between owners: being revoked, lost and not yet released
 * by its old member, or not yet taken by its new one. */
static int moving(int p) {
        const sim_part_t *sp = &sim_parts[p];
        if (sp->owner < 0 || sp->next_owner >= 0 || members[sp->owner]->to_assign[p])
                return 1;
        for (int i = 0; i < nmembers; i++)
                if (members[i]->revoke_pending[p] || members[i]->lost_part[p])
                        return 1;
        return 0;
}

/* The owner is asked to give p up; next: who gets it after. */
static int revoke(int p, int next) {
        sim_part_t *sp = &sim_parts[p];
        if (moving(p))
                return -1;
        krib_consumer_t *c = members[sp->owner];
        c->revoke_pending[p] = 1;
        sp->next_owner = next;
        return 0;
}

int sim_group_move(int part, int to) {
        if (to == sim_parts[part].owner)
                return -1;
        int rc = revoke(part, to);
        if (!rc)
                sim_note("group: move partition=%d %d -> %d", part, sim_parts[part].owner, to);
        return rc;
}

int sim_group_eager(void) {
        for (int p = 0; p < SIM_PARTS; p++)
                if (moving(p))
                        return -1;
        for (int p = 0; p < SIM_PARTS; p++)
                revoke(p, (int)sim_below((uint64_t)nmembers));
        sim_note("group: eager rebalance");
        return 0;
}

int sim_group_lose(int m) {
        if (m >= nmembers || nmembers < 2)
                return -1;
        int other = (m + 1) % nmembers, any = 0;
        for (int p = 0; p < SIM_PARTS; p++) {
                sim_part_t *sp = &sim_parts[p];
                if (sp->owner != m || moving(p))
                        continue;
                /* The coordinator gave up on m: the next owner starts from
                 * the committed offset now, m learns it later. */
                members[m]->revoke_pending[p] = 1;
                members[m]->lost_part[p] = 1;
                members[m]->stored[p] = -1;
                sp->owner = other;
                members[other]->to_assign[p] = 1;
                any = 1;
        }
        if (!any)
                return -1;
        members[m]->lost_pending = 1;
        sim_note("group: member %d lost its partitions", m);
        return 0;
}

int sim_group_has_messages(int m) {
        krib_consumer_t *c = members[m];
        for (int p = 0; p < SIM_PARTS; p++)
                if (c->to_assign[p] || c->revoke_pending[p] ||
                    (c->assigned[p] && !c->paused[p] && c->pos[p] < (int64_t)sim_parts[p].n))
                        return 1;
        return 0;
}

int sim_group_settled(void) {
        for (int p = 0; p < SIM_PARTS; p++) {
                const sim_part_t *sp = &sim_parts[p];
                if (sp->owner < 0 || sp->next_owner >= 0 || sp->committed != (int64_t)sp->n ||
                    !members[sp->owner]->assigned[p])
                        return 0;
        }
        for (int i = 0; i < nmembers; i++)
                if (members[i]->revoking)
                        return 0;
        return 1;
}

/* ---- consumer.h ---- */

krib_consumer_t *krib_consumer_new(const krib_conf_t *conf, const krib_consumer_hooks_t *hooks,
                                   char *errstr, size_t errstr_size) {
        (void)conf;
        if (nmembers == SIM_MEMBERS) {
                snprintf(errstr, errstr_size, "sim: too many members");
                return NULL;
        }
        krib_consumer_t *c = calloc(1, sizeof(*c));
        c->id = nmembers;
        c->hooks = *hooks;
        for (int p = 0; p < SIM_PARTS; p++) {
                c->stored[p] = -1;
                if (sim_parts[p].next_owner == c->id) {
                        c->to_assign[p] = 1;
                        sim_parts[p].next_owner = -1;
                        sim_parts[p].owner = c->id;
                }
        }
        members[nmembers++] = c;
        return c;
}

static rd_kafka_topic_partition_list_t *list_of(const int *set) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(SIM_PARTS);
        for (int p = 0; p < SIM_PARTS; p++)
                if (set[p])
                        rd_kafka_topic_partition_list_add(l, SIM_TOPIC, p);
        return l;
}

/* The rebalance events due, as the callback records them. */
static void rebalance(krib_consumer_t *c) {
        int any = 0;
        for (int p = 0; p < SIM_PARTS; p++)
                any |= c->revoke_pending[p];
        if (any) {
                if (!c->revoking)
                        c->revoking = rd_kafka_topic_partition_list_new(SIM_PARTS);
                for (int p = 0; p < SIM_PARTS; p++)
                        if (c->revoke_pending[p] &&
                            !rd_kafka_topic_partition_list_find(c->revoking, SIM_TOPIC, p))
                                rd_kafka_topic_partition_list_add(c->revoking, SIM_TOPIC, p);
                memset(c->revoke_pending, 0, sizeof(c->revoke_pending));
                c->lost |= c->lost_pending;
                c->lost_pending = 0;
                c->rebalances++;
                sim_note("member %d: revoke recorded (%d partitions, lost=%d)", c->id,
                         c->revoking->cnt, c->lost);
        }
        /* The next generation's assignment comes after the revoke was
         * released (a cooperative rebalance waits for it). */
        any = 0;
        for (int p = 0; p < SIM_PARTS; p++)
                any |= c->to_assign[p];
        if (any && !c->revoking) {
                rd_kafka_topic_partition_list_t *l = list_of(c->to_assign);
                for (int p = 0; p < SIM_PARTS; p++)
                        if (c->to_assign[p]) {
                                c->assigned[p] = 1;
                                c->released[p] = 0;
                                c->paused[p] = 0;
                                c->pos[p] = sim_parts[p].committed;
                                c->stored[p] = -1;
                                c->to_assign[p] = 0;
                        }
                c->rebalances++;
                sim_note("member %d: assigned %d partitions", c->id, l->cnt);
                c->hooks.on_assign(c->hooks.opaque, l);
                rd_kafka_topic_partition_list_destroy(l);
        }
}

rd_kafka_message_t *krib_consumer_poll(krib_consumer_t *c, int timeout_ms) {
        (void)timeout_ms;
        rebalance(c);
        int ready[SIM_PARTS], n = 0;
        for (int p = 0; p < SIM_PARTS; p++)
                if (c->assigned[p] && !c->paused[p] && c->pos[p] < (int64_t)sim_parts[p].n)
                        ready[n++] = p;
        if (!n)
                return NULL;
        int p = ready[sim_below((uint64_t)n)];
        const sim_msg_t *sm = &sim_parts[p].log[c->pos[p]];
        rd_kafka_message_t *m = calloc(1, sizeof(*m));
        m->rkt = &topic;
        m->partition = p;
        m->offset = c->pos[p]++;
        m->payload = malloc(sm->len ? sm->len : 1);
        memcpy(m->payload, sm->payload, sm->len);
        m->len = sm->len;
        if (sim_group_verbose)
                sim_note("member %d: polled partition=%d offset=%lld", c->id, p,
                         (long long)m->offset);
        return m;
}

int krib_consumer_wakeup_fd(const krib_consumer_t *c) {
        (void)c;
        return -1;
}

void krib_consumer_wakeup_clear(krib_consumer_t *c) {
        (void)c;
}

const rd_kafka_topic_partition_list_t *krib_consumer_revoking(const krib_consumer_t *c, int *lost) {
        if (lost)
                *lost = c->lost;
        return c->revoking;
}

void krib_consumer_revoke_done(krib_consumer_t *c) {
        if (!c->revoking)
                return;
        for (int i = 0; i < c->revoking->cnt; i++) {
                int p = c->revoking->elems[i].partition;
                sim_part_t *sp = &sim_parts[p];
                if (!c->lost)
                        commit_one(c, p);
                c->assigned[p] = 0;
                c->released[p] = 1;
                c->stored[p] = -1;
                if (c->lost_part[p]) {
                        c->lost_part[p] = 0; /* its next owner has it already */
                        continue;
                }
                sp->owner = sp->next_owner;
                sp->next_owner = -1;
                if (sp->owner >= 0)
                        members[sp->owner]->to_assign[p] = 1;
        }
        sim_note("member %d: revoke done (%d partitions, lost=%d)", c->id, c->revoking->cnt,
                 c->lost);
        rd_kafka_topic_partition_list_destroy(c->revoking);
        c->revoking = NULL;
        c->lost = 0;
}

int krib_consumer_store(krib_consumer_t *c, rd_kafka_topic_partition_list_t *offsets) {
        for (int i = 0; i < offsets->cnt; i++) {
                int p = offsets->elems[i].partition;
                if (p >= 0 && p < SIM_PARTS && c->assigned[p])
                        c->stored[p] = offsets->elems[i].offset;
        }
        return 0;
}

void krib_consumer_store_finished(krib_consumer_t *c, struct krib_offsets *o) {
        size_t cursor = 0;
        const char *t;
        int32_t p;
        int64_t off;
        while (krib_offsets_take_dirty(o, &cursor, &t, &p, &off))
                if (p >= 0 && p < SIM_PARTS && c->assigned[p])
                        c->stored[p] = off;
}

int krib_consumer_commit(krib_consumer_t *c) {
        for (int p = 0; p < SIM_PARTS; p++)
                if (c->assigned[p])
                        commit_one(c, p);
        return 0;
}

void krib_consumer_close(krib_consumer_t *c) {
        if (!c)
                return;
        if (c->revoking)
                rd_kafka_topic_partition_list_destroy(c->revoking);
        for (int i = 0; i < nmembers; i++)
                if (members[i] == c)
                        members[i] = NULL;
        free(c);
        int left = 0;
        for (int i = 0; i < nmembers; i++)
                left |= members[i] != NULL;
        if (!left)
                nmembers = 0;
}

void krib_consumer_pause(krib_consumer_t *c, const rd_kafka_topic_partition_list_t *only,
                         int pause) {
        for (int p = 0; p < SIM_PARTS; p++)
                if (c->assigned[p] &&
                    (!only || rd_kafka_topic_partition_list_find(only, SIM_TOPIC, p)))
                        c->paused[p] = pause;
}

rd_kafka_t *krib_consumer_handle(krib_consumer_t *c) {
        (void)c;
        return NULL;
}

int krib_consumer_lag(const krib_consumer_t *c, const krib_partition_lag_t **out) {
        (void)c;
        *out = NULL;
        return 0;
}

unsigned long krib_consumer_rebalances(const krib_consumer_t *c) {
        return c->rebalances;
}

size_t sim_group_outstanding(int m) {
        const krib_consumer_t *c = members[m];
        size_t n = 0;
        for (int p = 0; p < SIM_PARTS; p++)
                if (c->assigned[p] && !c->revoke_pending[p] &&
                    !(c->revoking &&
                      rd_kafka_topic_partition_list_find(c->revoking, SIM_TOPIC, p))) {
                        int64_t done = c->stored[p] >= 0 ? c->stored[p] : sim_parts[p].committed;
                        if (c->pos[p] > done)
                                n += (size_t)(c->pos[p] - done);
                }
        return n;
}

int sim_group_released(int m, int p) {
        return members[m] && members[m]->released[p];
}
