#include <stdint.h>
#include <string.h>

#include "cdcver.h"
#include "check_main.h"

static char err[256];

static int64_t binlog(const char *file, int64_t pos, int64_t row) {
        int64_t v = -1;
        ck_assert_msg(krib_cdcver_binlog(file, pos, row, &v, err, sizeof(err)) == 0, "%s", err);
        return v;
}

/* Later in the binlog is a larger counter: row, then position, then file. */
START_TEST(binlog_counter_follows_binlog_order) {
        ck_assert_int_lt(binlog("binlog.000001", 1316, 0), binlog("binlog.000001", 1316, 1));
        ck_assert_int_lt(binlog("binlog.000001", 1316, 2047), binlog("binlog.000001", 1317, 0));
        ck_assert_int_lt(binlog("binlog.000001", 4294967295LL, 2047),
                         binlog("binlog.000002", 4, 0));
        ck_assert_int_lt(binlog("mysql-bin.999999", 0, 0), binlog("mysql-bin.1000000", 0, 0));
        /* The packing: sequence, position, row. */
        ck_assert_int_eq(binlog("binlog.000003", 7, 5),
                         (int64_t)((3ULL << (KRIB_CDCVER_POS_BITS + KRIB_CDCVER_ROW_BITS)) |
                                   (7ULL << KRIB_CDCVER_ROW_BITS) | 5));
        /* No row: row 0. Past the row field: saturated, still below the next position. */
        ck_assert_int_eq(binlog("b.000001", 9, -1), binlog("b.000001", 9, 0));
        ck_assert_int_eq(binlog("b.000001", 9, 100000), binlog("b.000001", 9, 2047));
        ck_assert_int_lt(binlog("b.000001", 9, 100000), binlog("b.000001", 10, 0));
        /* The largest that fits stays positive. */
        ck_assert_int_gt(binlog("b.1048575", 4294967295LL, 2047), 0);
}
END_TEST

START_TEST(binlog_overflow_is_an_error) {
        int64_t v = 42;
        static const struct {
                const char *file;
                int64_t pos;
                const char *why;
        } bad[] = {
                {"binlog.1048576", 4, "sequence 1048576 is past the 1048575"},
                {"binlog.000001", 4294967296LL, "position 4294967296 in binlog.000001 is outside"},
                {"binlog.000001", -1, "position -1"},
                {"binlog", 4, "does not end in .<sequence number>"},
                {"binlog.", 4, "does not end"},
                {"binlog.00x1", 4, "does not end"},
                {"binlog.99999999999999999999999", 4, "does not end"},
                {NULL, 4, "(none)"},
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                ck_assert_int_eq(
                        krib_cdcver_binlog(bad[i].file, bad[i].pos, 0, &v, err, sizeof(err)), -1);
                ck_assert_msg(strstr(err, bad[i].why), "%s: %s", bad[i].file, err);
        }
        ck_assert_int_eq(v, 42);
}
END_TEST

START_TEST(gtids_of_both_servers) {
        char d[64];
        int64_t seq;
        ck_assert_int_eq(krib_cdcver_gtid("0-1-42", d, sizeof(d), &seq, err, sizeof(err)), 0);
        ck_assert_str_eq(d, "0");
        ck_assert_int_eq(seq, 42);
        ck_assert_int_eq(krib_cdcver_gtid("17-3000-9223372036854775807", d, sizeof(d), &seq, err,
                                          sizeof(err)),
                         0);
        ck_assert_str_eq(d, "17");
        ck_assert_int_eq(seq, INT64_MAX);
        ck_assert_int_eq(krib_cdcver_gtid("3E11FA47-71CA-11E1-9E33-C80AA9429562:23", d, sizeof(d),
                                          &seq, err, sizeof(err)),
                         0);
        ck_assert_str_eq(d, "3e11fa47-71ca-11e1-9e33-c80aa9429562");
        ck_assert_int_eq(seq, 23);
        static const char *const bad[] = {
                "",
                "0-1",
                "0-1-",
                "a-1-2",
                "0-1-9223372036854775808",
                "4294967296-1-2",
                "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-23",
                "3e11fa47-71ca-11e1-9e33-c80aa9429562:1,3e11fa47-71ca-11e1-9e33-c80aa9429563:2",
                "not-a-uuid:5",
                NULL,
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                ck_assert_msg(krib_cdcver_gtid(bad[i], d, sizeof(d), &seq, err, sizeof(err)) == -1,
                              "accepted '%s'", bad[i] ? bad[i] : "(null)");
                ck_assert_ptr_nonnull(strstr(err, "GTID"));
        }
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("cdcver");
        TCase *tc = tcase_create("versions");
        tcase_add_test(tc, binlog_counter_follows_binlog_order);
        tcase_add_test(tc, binlog_overflow_is_an_error);
        tcase_add_test(tc, gtids_of_both_servers);
        suite_add_tcase(s, tc);
        return s;
}
