#include <string.h>

#include "check_main.h"
#include "log.h"

START_TEST(logfmt_line) {
        char out[512];
        krib_log_render(KRIB_LOG_LOGFMT, "T", "info", "m", "msg=\"hi there\" n=3", out,
                        sizeof(out));
        ck_assert_str_eq(out, "ts=T level=info module=m msg=\"hi there\" n=3");
}
END_TEST

START_TEST(json_line_turns_pairs_into_fields) {
        char out[512];
        krib_log_render(KRIB_LOG_JSON, "T", "error", "pipeline",
                        "msg=\"rejected event\" topic=t partition=3 error=\"bad \\\"x\\\"\"", out,
                        sizeof(out));
        ck_assert_str_eq(out, "{\"ts\":\"T\",\"level\":\"error\",\"module\":\"pipeline\","
                              "\"msg\":\"rejected event\",\"topic\":\"t\",\"partition\":\"3\","
                              "\"error\":\"bad \\\"x\\\"\"}");
        /* Text that is not key=value is kept, and control bytes are escaped. */
        krib_log_render(KRIB_LOG_JSON, "T", "warn", "rdkafka", "plain words\n", out, sizeof(out));
        ck_assert_str_eq(out, "{\"ts\":\"T\",\"level\":\"warn\",\"module\":\"rdkafka\","
                              "\"text\":\"plain words\\n\"}");
}
END_TEST

/* A key with a newline or a quote cannot forge a line or a field. */
START_TEST(untrusted_text_is_escaped) {
        const char key[] = "k\nts=2026 level=error msg=\"forged\"\\\x01\xff";
        const char *e = krib_log_esc(key, sizeof(key) - 1);
        ck_assert_str_eq(e, "k\\x0ats=2026 level=error msg=\\\"forged\\\"\\\\\\x01\\xff");
        char big[300];
        memset(big, 'a', sizeof(big));
        ck_assert_int_eq(strlen(krib_log_esc(big, sizeof(big))), 203); /* cut, "..." */
        ck_assert_str_eq(krib_log_esc(NULL, 0), "");
        /* Rendering keeps one line whatever the caller passed. */
        char line[512];
        krib_log_render(KRIB_LOG_JSON, "t", "info", "m", "msg=\"a\\\"b\"", line, sizeof(line));
        ck_assert_ptr_null(strchr(line, '\n'));
}
END_TEST

START_TEST(levels_parse) {
        ck_assert_int_eq(krib_log_level_parse("debug"), KRIB_LOG_DEBUG);
        ck_assert_int_eq(krib_log_level_parse("loud"), -1);
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("log");
        TCase *tc = tcase_create("render");
        tcase_add_test(tc, logfmt_line);
        tcase_add_test(tc, json_line_turns_pairs_into_fields);
        tcase_add_test(tc, levels_parse);
        tcase_add_test(tc, untrusted_text_is_escaped);
        suite_add_tcase(s, tc);
        return s;
}
