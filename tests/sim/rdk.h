/* rdk: the few librdkafka calls the pipeline makes on a message, pointed
 * at the simulated consumer's messages (group.c). Force-included
 * (-include) into the pipeline simulation's sources only: the real
 * functions read librdkafka's private message state. */
#ifndef KRIB_SIM_RDK_H
#define KRIB_SIM_RDK_H

#include <librdkafka/rdkafka.h>

const char *sim_topic_name(const rd_kafka_topic_t *rkt);
void sim_message_destroy(rd_kafka_message_t *m);
int64_t sim_message_timestamp(const rd_kafka_message_t *m, rd_kafka_timestamp_type_t *tstype);
const char *sim_message_errstr(const rd_kafka_message_t *m);

#define rd_kafka_topic_name        sim_topic_name
#define rd_kafka_message_destroy   sim_message_destroy
#define rd_kafka_message_timestamp sim_message_timestamp
#define rd_kafka_message_errstr    sim_message_errstr

#endif
