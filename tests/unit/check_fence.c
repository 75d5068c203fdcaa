#include <string.h>

#include "check_main.h"
#include "fence.h"
#include "slot.h"

static void same_slot(const char *key) {
        char out[256];
        int n = krib_fence_key(key, strlen(key), out, sizeof(out));
        ck_assert_msg(n > 0, "no fence key for %s", key);
        ck_assert_msg(krib_slot_of(out, (size_t)n) == krib_slot_of(key, strlen(key)),
                      "fence of %s (%.*s) is in another slot", key, n, out);
        ck_assert_int_eq(strncmp(out, "krib:f:", 7), 0);
}

START_TEST(fence_shares_the_slot) {
        const char *keys[] = {"user:{42}:profile", "user:42", "{a}", "a{b", "plain", "{{a}}",
                              "\x01\xff",          NULL};
        for (int i = 0; keys[i]; i++)
                same_slot(keys[i]);
        char out[64];
        ck_assert_int_eq(krib_fence_key("user:42", 7, out, sizeof(out)), 16);
        ck_assert_int_eq(memcmp(out, "krib:f:{user:42}", 16), 0);
        ck_assert_int_eq(krib_fence_key("u:{1}", 5, out, sizeof(out)), 12);
        ck_assert_int_eq(memcmp(out, "krib:f:u:{1}", 12), 0);
}
END_TEST

START_TEST(no_fence_when_slot_cannot_be_kept) {
        char out[64];
        /* No valid tag, and a '}' that would close an added tag early. */
        ck_assert_int_eq(krib_fence_key("x{}y}", 5, out, sizeof(out)), -1);
        ck_assert_int_eq(krib_fence_key("a}b", 3, out, sizeof(out)), -1);
        ck_assert_int_eq(krib_fence_key("x{}y", 4, out, sizeof(out)), -1);
        ck_assert_int_eq(krib_fence_key("plain", 5, out, 8), -1); /* too small */
}
END_TEST

START_TEST(script_is_embedded) {
        ck_assert_ptr_nonnull(strstr(krib_fence_script, "redis.call('GET', fkey)"));
        ck_assert_ptr_nonnull(strstr(krib_fence_script, "return out"));
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("fence");
        TCase *tc = tcase_create("keys");
        tcase_add_test(tc, fence_shares_the_slot);
        tcase_add_test(tc, no_fence_when_slot_cannot_be_kept);
        tcase_add_test(tc, script_is_embedded);
        suite_add_tcase(s, tc);
        return s;
}
