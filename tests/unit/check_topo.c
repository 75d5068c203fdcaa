#include <string.h>

#include "check_main.h"
#include "topo.h"

/* Parses raw RESP with hiredis' reader, as the writer receives it. */
static redisReply *resp(const char *text) {
        redisReader *r = redisReaderCreate();
        redisReaderFeed(r, text, strlen(text));
        void *reply = NULL;
        ck_assert_int_eq(redisReaderGetReply(r, &reply), REDIS_OK);
        ck_assert_ptr_nonnull(reply);
        redisReaderFree(r);
        return reply;
}

static const char three_masters[] =
        "*3\r\n"
        "*4\r\n:0\r\n:5460\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$2\r\nid\r\n"
        "*3\r\n$9\r\n127.0.0.1\r\n:7003\r\n$2\r\nid\r\n"
        "*3\r\n:5461\r\n:10922\r\n*3\r\n$0\r\n\r\n:7001\r\n$2\r\nid\r\n"
        "*3\r\n:10923\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:7002\r\n$2\r\nid\r\n";

START_TEST(loads_cluster_slots) {
        krib_topo_t t;
        krib_topo_init(&t);
        redisReply *r = resp(three_masters);
        char err[128];
        ck_assert_int_eq(krib_topo_load_slots(&t, r, "10.9.9.9", err, sizeof(err)), 0);
        ck_assert_uint_eq(t.master_count, 3);
        ck_assert_uint_eq(krib_topo_unassigned(&t), 0);
        krib_addr_t *a = &t.masters[t.slot_owner[0]];
        ck_assert_str_eq(a->host, "127.0.0.1");
        ck_assert_int_eq(a->port, 7000);
        ck_assert_int_eq(t.slot_owner[5460], t.slot_owner[0]);
        /* Empty host: the address we asked. */
        a = &t.masters[t.slot_owner[5461]];
        ck_assert_str_eq(a->host, "10.9.9.9");
        ck_assert_int_eq(a->port, 7001);
        ck_assert_int_eq(t.masters[t.slot_owner[16383]].port, 7002);
        freeReplyObject(r);
        krib_topo_destroy(&t);
}
END_TEST

START_TEST(partial_coverage_and_errors) {
        krib_topo_t t;
        krib_topo_init(&t);
        char err[128];
        redisReply *r = resp("*1\r\n*3\r\n:0\r\n:99\r\n*2\r\n$1\r\nh\r\n:1\r\n");
        ck_assert_int_eq(krib_topo_load_slots(&t, r, "x", err, sizeof(err)), 0);
        ck_assert_uint_eq(krib_topo_unassigned(&t), 16384 - 100);
        ck_assert_int_eq(t.slot_owner[100], -1);
        freeReplyObject(r);
        r = resp("-ERR This instance has cluster support disabled\r\n");
        ck_assert_int_eq(krib_topo_load_slots(&t, r, "x", err, sizeof(err)), -1);
        ck_assert_ptr_nonnull(strstr(err, "cluster support disabled"));
        freeReplyObject(r);
        r = resp("*1\r\n*3\r\n:10\r\n:20000\r\n*2\r\n$1\r\nh\r\n:1\r\n");
        ck_assert_int_eq(krib_topo_load_slots(&t, r, "x", err, sizeof(err)), -1);
        freeReplyObject(r);
        r = resp("*1\r\n*2\r\n:10\r\n:20\r\n");
        ck_assert_int_eq(krib_topo_load_slots(&t, r, "x", err, sizeof(err)), -1);
        ck_assert_ptr_nonnull(strstr(err, "malformed entry 0"));
        freeReplyObject(r);
        krib_topo_destroy(&t);
}
END_TEST

START_TEST(standalone_owns_everything) {
        krib_topo_t t;
        krib_topo_init(&t);
        krib_addr_t a;
        ck_assert_int_eq(krib_addr_parse("localhost:6379", &a), 0);
        ck_assert_int_eq(krib_topo_load_standalone(&t, &a), 0);
        ck_assert_uint_eq(krib_topo_unassigned(&t), 0);
        ck_assert_int_eq(t.slot_owner[123], 0);
        krib_topo_destroy(&t);
}
END_TEST

START_TEST(parses_redirects) {
        int slot;
        krib_addr_t a;
        const char *m = "MOVED 3999 127.0.0.1:6381";
        ck_assert_int_eq(krib_topo_parse_redirect(m, strlen(m), &slot, &a), KRIB_REDIRECT_MOVED);
        ck_assert_int_eq(slot, 3999);
        ck_assert_str_eq(a.host, "127.0.0.1");
        ck_assert_int_eq(a.port, 6381);
        const char *k = "ASK 16383 redis-2.internal:7002";
        ck_assert_int_eq(krib_topo_parse_redirect(k, strlen(k), &slot, &a), KRIB_REDIRECT_ASK);
        ck_assert_int_eq(slot, 16383);
        ck_assert_str_eq(a.host, "redis-2.internal");
        const char *e = "MOVED 12 :7005";
        ck_assert_int_eq(krib_topo_parse_redirect(e, strlen(e), &slot, &a), KRIB_REDIRECT_MOVED);
        ck_assert_str_eq(a.host, "");
        ck_assert_int_eq(a.port, 7005);
        const char *bad[] = {"MOVED", "MOVED x h:1", "MOVED 99999 h:1", "MOVED 1 h",
                             "ERR x", "ASK 1 h:0",   "TRYAGAIN"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                ck_assert_int_eq(krib_topo_parse_redirect(bad[i], strlen(bad[i]), &slot, &a),
                                 KRIB_REDIRECT_NONE);
}
END_TEST

START_TEST(addr_parse) {
        krib_addr_t a;
        ck_assert_int_eq(krib_addr_parse("h:1", &a), 0);
        ck_assert_int_eq(krib_addr_parse("h:65535", &a), 0);
        ck_assert_int_eq(krib_addr_parse("127.0.0.1:7000@17000", &a), 0); /* CLUSTER NODES form */
        ck_assert_int_eq(a.port, 7000);
        ck_assert_int_eq(krib_addr_parse(":1", &a), -1);
        ck_assert_int_eq(krib_addr_parse("h:", &a), -1);
        ck_assert_int_eq(krib_addr_parse("h:70000", &a), -1);
        ck_assert_int_eq(krib_addr_parse("h", &a), -1);
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("topo");
        TCase *tc = tcase_create("cluster_slots");
        tcase_add_test(tc, loads_cluster_slots);
        tcase_add_test(tc, partial_coverage_and_errors);
        tcase_add_test(tc, standalone_owns_everything);
        suite_add_tcase(s, tc);
        tc = tcase_create("redirects");
        tcase_add_test(tc, parses_redirects);
        tcase_add_test(tc, addr_parse);
        suite_add_tcase(s, tc);
        return s;
}
