#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "consumer.h"

/* Shape of librdkafka 2.0 statistics (trimmed to what krib reads). */
static const char stats[] =
        "{\"name\":\"krib#consumer-1\",\"type\":\"consumer\",\"topics\":{"
        "\"inv\":{\"topic\":\"inv\",\"partitions\":{"
        "\"0\":{\"partition\":0,\"fetch_state\":\"active\",\"consumer_lag\":42,"
        "\"committed_offset\":1000,\"hi_offset\":1042},"
        "\"1\":{\"partition\":1,\"fetch_state\":\"none\",\"consumer_lag\":-1,"
        "\"committed_offset\":-1001,\"hi_offset\":-1},"
        "\"-1\":{\"partition\":-1,\"fetch_state\":\"none\",\"consumer_lag\":-1}}},"
        "\"other\":{\"topic\":\"other\",\"partitions\":{"
        "\"3\":{\"partition\":3,\"fetch_state\":\"active\",\"consumer_lag\":0,"
        "\"committed_offset\":7,\"hi_offset\":7}}}}}";

START_TEST(lag_of_assigned_partitions_only) {
        krib_partition_lag_t *l = NULL;
        size_t cap = 0;
        int n = krib_consumer_parse_stats(stats, sizeof(stats) - 1, &l, &cap);
        ck_assert_int_eq(n, 2);
        int inv = strcmp(l[0].topic, "inv") ? 1 : 0;
        ck_assert_str_eq(l[inv].topic, "inv");
        ck_assert_int_eq(l[inv].partition, 0);
        ck_assert_int_eq(l[inv].lag, 42);
        ck_assert_int_eq(l[inv].committed, 1000);
        ck_assert_int_eq(l[inv].log_end, 1042);
        ck_assert_str_eq(l[1 - inv].topic, "other");
        ck_assert_int_eq(l[1 - inv].lag, 0);
        ck_assert_int_eq(krib_consumer_parse_stats("{", 1, &l, &cap), -1);
        ck_assert_int_eq(krib_consumer_parse_stats("{}", 2, &l, &cap), 0);
        free(l);
}
END_TEST

/* No partition is left out: 300 assigned partitions (the earlier fixed
 * table kept 64, then 256, silently), with a topic name of Kafka's 249
 * characters. */
START_TEST(every_partition_is_kept) {
        char topic[250];
        memset(topic, 't', 249);
        topic[249] = '\0';
        size_t size = 64 + 300 * 400;
        char *doc = malloc(size), *w = doc;
        w += sprintf(w, "{\"topics\":{\"%s\":{\"partitions\":{", topic);
        for (int i = 0; i < 300; i++)
                w += sprintf(w,
                             "%s\"%d\":{\"partition\":%d,\"fetch_state\":\"active\","
                             "\"consumer_lag\":%d,\"committed_offset\":1,\"hi_offset\":2}",
                             i ? "," : "", i, i, i);
        w += sprintf(w, "}}}}");
        krib_partition_lag_t *l = NULL;
        size_t cap = 0;
        ck_assert_int_eq(krib_consumer_parse_stats(doc, (size_t)(w - doc), &l, &cap), 300);
        int seen_last = 0;
        for (int i = 0; i < 300; i++) {
                ck_assert_str_eq(l[i].topic, topic);
                seen_last |= l[i].partition == 299 && l[i].lag == 299;
        }
        ck_assert(seen_last);
        free(l);
        free(doc);
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("consumer");
        TCase *tc = tcase_create("stats");
        tcase_add_test(tc, lag_of_assigned_partitions_only);
        tcase_add_test(tc, every_partition_is_kept);
        suite_add_tcase(s, tc);
        return s;
}
