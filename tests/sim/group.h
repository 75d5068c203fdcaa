/* group: a simulated Kafka topic and consumer group (group.c implements
 * consumer.h over it). One topic of SIM_PARTS partitions whose logs the
 * scheduler appends to; members are the krib pipelines of the simulation,
 * in the order they were created. The scheduler moves partitions between
 * members as the group coordinator does: a cooperative revoke (the member
 * releases the partition with krib_consumer_revoke_done(), committing its
 * stored offset, then the next owner is assigned it), an eager rebalance
 * (every partition revoked, then assigned again), and a lost assignment
 * (the next owner is assigned at once; the old member's commits of those
 * partitions are fenced, as a stale generation's are). */
#ifndef KRIB_SIM_GROUP_H
#define KRIB_SIM_GROUP_H

#include <stddef.h>
#include <stdint.h>

#define SIM_TOPIC   "sim.events"
#define SIM_PARTS   4
#define SIM_MEMBERS 2

typedef struct {
        char *payload;
        size_t len;
        uint32_t rec; /* the scheduler's record id */
} sim_msg_t;

typedef struct {
        sim_msg_t *log;
        size_t n, cap;
        int owner;         /* member, or -1 while moving */
        int next_owner;    /* assigned once the owner released it; -1 none */
        int64_t committed; /* the group's committed offset; 0 at start */
} sim_part_t;

extern sim_part_t sim_parts[SIM_PARTS];

/* Called for every commit that moves a partition's committed offset (from
 * the old value to the new one), before it is recorded. */
typedef void(sim_commit_hook_t)(int part, int64_t from, int64_t to, int member);
extern sim_commit_hook_t *sim_on_commit;
extern int sim_group_verbose; /* every message handed out goes to the trace */

void sim_group_reset(void);
void sim_group_free(void);
void sim_group_append(int part, const void *payload, size_t len, uint32_t rec);

/* Partition moves. Each returns 0, or -1 when it does not apply now (the
 * partition is being moved already, say). */
int sim_group_move(int part, int to);
int sim_group_eager(void);
int sim_group_lose(int member);

/* The background auto-commit of every member (its stored offsets of the
 * partitions it owns). */
void sim_group_autocommit(void);

/* Whether member m could be handed a message now (what its wake-up fd
 * would say), and whether every partition is owned and committed to the
 * end of its log with no move in progress. */
int sim_group_has_messages(int m);
/* Messages member m was handed and has not stored as finished, on the
 * partitions it is not giving up (what it reads of those it drops). */
size_t sim_group_outstanding(int m);
int sim_group_settled(void);
/* Whether member m gave partition p up (its revoke done) and has not been
 * assigned it again. */
int sim_group_released(int m, int p);

#endif
