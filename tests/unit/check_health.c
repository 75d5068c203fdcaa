#include <stdio.h>
#include <string.h>

#include "check_main.h"
#include "health.h"

/* Excerpts of a Redis 7.0 INFO reply (CRLF line ends, section headers). */
static const char INFO[] = "# Server\r\nredis_version:7.0.15\r\n\r\n"
                           "# Clients\r\nconnected_clients:12\r\nblocked_clients:2\r\n"
                           "tracking_clients:3\r\n\r\n"
                           "# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\n"
                           "maxmemory:2097152\r\nmaxmemory_policy:volatile-lru\r\n\r\n"
                           "# Stats\r\ninstantaneous_ops_per_sec:4500\r\n"
                           "rejected_connections:7\r\nexpired_keys:11\r\nevicted_keys:5\r\n"
                           "pubsub_channels:4\r\ntracking_total_keys:900\r\n\r\n"
                           "# Keyspace\r\ndb0:keys=100,expires=3,avg_ttl=0\r\n"
                           "db3:keys=20,expires=0,avg_ttl=0\r\n";

START_TEST(info_fields_are_read) {
        krib_health_master_t m;
        memset(&m, 0, sizeof(m));
        ck_assert_int_eq(krib_health_parse_info(INFO, strlen(INFO), &m), 0);
        ck_assert_uint_eq(m.used_memory, 1048576);
        ck_assert_uint_eq(m.maxmemory, 2097152);
        ck_assert_str_eq(m.policy, "volatile-lru");
        ck_assert_uint_eq(m.connected_clients, 12);
        ck_assert_uint_eq(m.blocked_clients, 2);
        ck_assert_uint_eq(m.tracking_clients, 3);
        ck_assert_uint_eq(m.tracking_total_keys, 900);
        ck_assert_uint_eq(m.ops_per_sec, 4500);
        ck_assert_uint_eq(m.rejected_connections, 7);
        ck_assert_uint_eq(m.expired_keys, 11);
        ck_assert_uint_eq(m.evicted_keys, 5);
        ck_assert_uint_eq(m.pubsub_channels, 4);
        ck_assert_uint_eq(m.keys, 120);
        /* used_memory_human must not be taken for used_memory, nor a
         * reply without used_memory for INFO. */
        static const char odd[] = "used_memory_human:9M\r\nmaxmemory:5\r\n";
        ck_assert_int_eq(krib_health_parse_info(odd, strlen(odd), &m), -1);
        static const char neg[] = "used_memory:-5\r\n";
        ck_assert_int_eq(krib_health_parse_info(neg, strlen(neg), &m), -1);
        static const char last[] = "used_memory:42"; /* no line end at all */
        ck_assert_int_eq(krib_health_parse_info(last, strlen(last), &m), 0);
        ck_assert_uint_eq(m.used_memory, 42);
        ck_assert_uint_eq(m.keys, 0);
}
END_TEST

START_TEST(skew_is_max_over_mean) {
        krib_health_master_t m[3];
        memset(m, 0, sizeof(m));
        for (int i = 0; i < 3; i++) {
                m[i].up = 1;
                m[i].slots = 5461 + (i == 1);
        }
        m[0].used_memory = 100, m[1].used_memory = 100, m[2].used_memory = 130;
        m[0].ops_per_sec = 10, m[1].ops_per_sec = 10, m[2].ops_per_sec = 10;
        krib_health_skew_t s;
        krib_health_skew(m, 3, &s);
        ck_assert_double_eq_tol(s.memory, 130.0 / 110.0 - 1, 1e-9);
        ck_assert_double_eq_tol(s.ops, 0, 1e-9);
        ck_assert_double_eq_tol(s.slots, 5462.0 / (16384.0 / 3) - 1, 1e-9);
        ck_assert_double_eq_tol(s.keys, 0, 1e-9); /* all zero: no skew */
        /* A master that does not answer is left out, not counted as 0. */
        m[2].up = 0;
        krib_health_skew(m, 3, &s);
        ck_assert_double_eq_tol(s.memory, 0, 1e-9);
        krib_health_skew(m, 1, &s);
        ck_assert_double_eq_tol(s.memory, 0, 1e-9);
}
END_TEST

START_TEST(guard_follows_policy_and_percent) {
        krib_health_master_t m[2];
        memset(m, 0, sizeof(m));
        m[0].up = m[1].up = 1;
        m[0].maxmemory = m[1].maxmemory = 1000;
        m[0].used_memory = 500;
        m[1].used_memory = 950;
        snprintf(m[0].policy, sizeof(m[0].policy), "noeviction");
        snprintf(m[1].policy, sizeof(m[1].policy), "allkeys-lru");
        ck_assert_int_eq(krib_health_guard(m, 2, 90), -1); /* evicts: never OOM */
        snprintf(m[1].policy, sizeof(m[1].policy), "volatile-ttl");
        ck_assert_int_eq(krib_health_guard(m, 2, 90), 1);
        ck_assert_int_eq(krib_health_guard(m, 2, 95), -1); /* 950 is not above 95% */
        ck_assert_int_eq(krib_health_guard(m, 2, 0), -1);  /* off */
        ck_assert_int_eq(krib_health_guard(m, 2, 40), 0);
        m[0].maxmemory = 0; /* no limit: nothing to guard */
        ck_assert_int_eq(krib_health_guard(m, 1, 1), -1);
        m[1].up = 0; /* stale figures do not hold consumption */
        ck_assert_int_eq(krib_health_guard(m, 2, 90), -1);
        ck_assert(krib_health_policy_can_oom("noeviction"));
        ck_assert(krib_health_policy_can_oom("volatile-lfu"));
        ck_assert(!krib_health_policy_can_oom("allkeys-random"));
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("health");
        TCase *tc = tcase_create("pure");
        tcase_add_test(tc, info_fields_are_read);
        tcase_add_test(tc, skew_is_max_over_mean);
        tcase_add_test(tc, guard_follows_policy_and_percent);
        suite_add_tcase(s, tc);
        return s;
}
