#include <string.h>

#include "check_main.h"
#include "slot.h"

#define SLOT(s) krib_slot_of((s), strlen(s))

START_TEST(crc16_reference_vector) {
        /* CRC16-XMODEM check value from the Redis Cluster specification. */
        ck_assert_uint_eq(krib_slot_crc16("123456789", 9), 0x31C3);
}
END_TEST

START_TEST(slots_match_redis_server) {
        /* Expected values come from CLUSTER KEYSLOT on redis-server 7.0. */
        ck_assert_uint_eq(SLOT("foo"), 12182);
        ck_assert_uint_eq(SLOT("bar"), 5061);
        ck_assert_uint_eq(SLOT("123456789"), 12739);
        ck_assert_uint_eq(SLOT("a"), 15495);
        ck_assert_uint_eq(krib_slot_of("\x00\xff", 2), 7920);
}
END_TEST

START_TEST(hash_tag_rules) {
        ck_assert_uint_eq(SLOT("{user1000}.following"), 3443);
        ck_assert_uint_eq(SLOT("{user1000}.following"), SLOT("user1000"));
        ck_assert_uint_eq(SLOT("user:{1042}:profile"), SLOT("1042"));
        /* Empty tag: the whole key is hashed. */
        ck_assert_uint_eq(SLOT("foo{}{bar}"), 8363);
        ck_assert_uint_eq(SLOT("{}"), 15257);
        /* First '{' to the first '}' after it: the tag is "{bar". */
        ck_assert_uint_eq(SLOT("foo{{bar}}zap"), 4015);
        ck_assert_uint_eq(SLOT("foo{{bar}}zap"), SLOT("{bar"));
        /* Only the first tag counts. */
        ck_assert_uint_eq(SLOT("foo{bar}{zap}"), 5061);
        /* Unclosed brace: whole key. */
        ck_assert_uint_eq(SLOT("{bar"), krib_slot_crc16("{bar", 4) & 16383);
}
END_TEST

START_TEST(slot_in_range_for_any_bytes) {
        char key[64];
        unsigned seed = 7;
        for (int i = 0; i < 10000; i++) {
                size_t len = (size_t)(seed % sizeof(key));
                for (size_t j = 0; j < len; j++) {
                        seed = seed * 1103515245u + 12345u;
                        key[j] = (char)(seed >> 16);
                }
                ck_assert_uint_lt(krib_slot_of(key, len), KRIB_SLOT_COUNT);
        }
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("slot");
        TCase *tc = tcase_create("crc16");
        tcase_add_test(tc, crc16_reference_vector);
        tcase_add_test(tc, slots_match_redis_server);
        suite_add_tcase(s, tc);
        tc = tcase_create("hash_tags");
        tcase_add_test(tc, hash_tag_rules);
        tcase_add_test(tc, slot_in_range_for_any_bytes);
        suite_add_tcase(s, tc);
        return s;
}
