#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "conf.h"

static char path[64];
static krib_conf_t conf;
static char err[512];

static void write_conf(const char *text) {
        snprintf(path, sizeof(path), "/tmp/krib-conf-XXXXXX");
        int fd = mkstemp(path);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
        close(fd);
}

static void setup(void) {
        ck_assert_int_eq(krib_conf_init(&conf), 0);
        err[0] = '\0';
        path[0] = '\0';
}

static void teardown(void) {
        krib_conf_destroy(&conf);
        if (path[0])
                unlink(path);
}

static int load(const char *text) {
        write_conf(text);
        return krib_conf_load_file(&conf, path, err, sizeof(err));
}

/* err must start with "<path>:<line>: " and mention needle. */
static void assert_err_at(int line, const char *needle) {
        char prefix[128];
        snprintf(prefix, sizeof(prefix), "%s:%d: ", path, line);
        ck_assert_msg(!strncmp(err, prefix, strlen(prefix)), "error '%s' lacks '%s'", err, prefix);
        ck_assert_msg(strstr(err, needle) != NULL, "error '%s' lacks '%s'", err, needle);
}

START_TEST(defaults) {
        ck_assert_str_eq(conf.kafka_brokers, "127.0.0.1:19092");
        ck_assert_str_eq(conf.kafka_group_id, "krib");
        ck_assert_int_eq(conf.redis_mode, KRIB_REDIS_CLUSTER);
        ck_assert_int_eq(conf.redis_max_keys_per_command, 64);
        ck_assert_uint_eq(conf.redis_nodes.n, 1);
        ck_assert_uint_eq(conf.kafka_topics.n, 0);
}
END_TEST

START_TEST(loads_file) {
        ck_assert_int_eq(
                load("kafka = { brokers = \"b1:9092,b2:9092\"; topics = [\"a\", \"^b.*\"];\n"
                     "  properties = [\"fetch.wait.max.ms=10\"]; };\n"
                     "redis = { mode = \"standalone\"; nodes = [\"h:1\"];\n"
                     "  max_keys_per_command = 16; };\n"
                     "log = { level = \"debug\"; };\n"),
                0);
        ck_assert_str_eq(conf.kafka_brokers, "b1:9092,b2:9092");
        ck_assert_uint_eq(conf.kafka_topics.n, 2);
        ck_assert_str_eq(conf.kafka_topics.v[1], "^b.*");
        ck_assert_int_eq(conf.redis_mode, KRIB_REDIS_STANDALONE);
        ck_assert_int_eq(conf.redis_max_keys_per_command, 16);
        ck_assert_int_eq(conf.log_level, 3);
        ck_assert_int_eq(krib_conf_finalize(&conf, err, sizeof(err)), 0);
}
END_TEST

START_TEST(syntax_error_has_line) {
        ck_assert_int_eq(load("kafka = {\n  brokers = \"x\";\n  topics = [\"a\";\n};\n"), -1);
        assert_err_at(3, "syntax error");
}
END_TEST

START_TEST(unknown_key_has_line) {
        ck_assert_int_eq(load("kafka = {\n  topics = [\"a\"];\n  brokerz = \"x\";\n};\n"), -1);
        assert_err_at(3, "unknown key 'kafka.brokerz'");
}
END_TEST

START_TEST(unknown_group_has_line) {
        ck_assert_int_eq(load("\n\ntracing = { port = 1; };\n"), -1);
        assert_err_at(3, "unknown key 'tracing'");
}
END_TEST

START_TEST(wrong_type_has_line) {
        ck_assert_int_eq(load("redis = {\n  max_keys_per_command = \"many\";\n};\n"), -1);
        assert_err_at(2, "must be an integer");
}
END_TEST

START_TEST(out_of_range_has_line) {
        ck_assert_int_eq(load("redis = {\n\n  max_keys_per_command = 0;\n};\n"), -1);
        assert_err_at(3, "outside [1, 100000]");
}
END_TEST

/* libconfig 1.5 wraps integer literals beyond 32 bits (9999999999 reads as
 * 1410065407, 99999999999999999999 as -1): the message must name the value
 * written (issue 12, item 1). */
START_TEST(big_numbers_are_read_exactly) {
        ck_assert_int_eq(load("redis = {\n  command_timeout_ms = 9999999999;\n};\n"), -1);
        assert_err_at(2, "redis.command_timeout_ms: 9999999999 is outside [1, 600000]");
        ck_assert_int_eq(load("redis = {\n  command_timeout_ms = 99999999999999999999;\n};\n"), -1);
        assert_err_at(2, "99999999999999999999 does not fit in 64 bits");
        ck_assert_int_eq(
                load("redis = { fence_ttl_ms = 5000000000; command_timeout_ms = 0x10; };\n"), 0);
        ck_assert_int_eq(conf.redis_fence_ttl_ms, 5000000000LL);
        ck_assert_int_eq(conf.redis_command_timeout_ms, 16);
        char *env[] = {"KRIB_REDIS_FENCE_TTL_MS=99999999999999999999", NULL};
        ck_assert_int_eq(krib_conf_load_env(&conf, env, NULL, 0, err, sizeof(err)), -1);
        ck_assert_ptr_nonnull(strstr(err, "does not fit in 64 bits"));
}
END_TEST

START_TEST(bad_enum_has_line) {
        ck_assert_int_eq(load("redis = { mode = \"sentinel\"; };\n"), -1);
        assert_err_at(1, "not one of cluster, standalone");
}
END_TEST

START_TEST(list_of_non_strings) {
        ck_assert_int_eq(load("kafka = { topics = [1, 2]; };\n"), -1);
        assert_err_at(1, "element 0 is not a string");
}
END_TEST

START_TEST(missing_file) {
        ck_assert_int_eq(krib_conf_load_file(&conf, "/nonexistent/krib.conf", err, sizeof(err)),
                         -1);
        ck_assert_ptr_nonnull(strstr(err, "/nonexistent/krib.conf: cannot read file"));
}
END_TEST

START_TEST(env_overrides_file) {
        ck_assert_int_eq(load("kafka = { topics = [\"a\"]; group_id = \"file\"; };\n"), 0);
        char *env[] = {"KRIB_KAFKA_GROUP_ID=env", "KRIB_REDIS_NODES=h1:1,h2:2", "PATH=/bin",
                       "KRIB_PORT_BASE=1", NULL};
        ck_assert_int_eq(krib_conf_load_env(&conf, env, NULL, 0, err, sizeof(err)), 0);
        ck_assert_str_eq(conf.kafka_group_id, "env");
        ck_assert_uint_eq(conf.redis_nodes.n, 2);
        ck_assert_str_eq(conf.redis_nodes.v[1], "h2:2");
}
END_TEST

START_TEST(env_unknown_and_bad_values) {
        char warn[256];
        char *env1[] = {"KRIB_KAFKA_BROKER=x", "KRIB_PORT=tcp://10.0.0.1:80", "KRIB_LOG_LEVEL=warn",
                        NULL};
        ck_assert_int_eq(krib_conf_load_env(&conf, env1, warn, sizeof(warn), err, sizeof(err)), 0);
        ck_assert_str_eq(warn, "KRIB_KAFKA_BROKER, KRIB_PORT");
        ck_assert_int_eq(conf.log_level, 1);
        char *env2[] = {"KRIB_PIPELINE_LINGER_MS=soon", NULL};
        ck_assert_int_eq(krib_conf_load_env(&conf, env2, warn, sizeof(warn), err, sizeof(err)), -1);
        ck_assert_ptr_nonnull(strstr(err, "KRIB_PIPELINE_LINGER_MS"));
        ck_assert_str_eq(warn, "");
}
END_TEST

START_TEST(finalize_checks) {
        ck_assert_int_eq(krib_conf_finalize(&conf, err, sizeof(err)), -1);
        ck_assert_ptr_nonnull(strstr(err, "kafka.topics"));
        char *env[] = {"KRIB_KAFKA_TOPICS=t", "KRIB_REDIS_NODES=nohost", NULL};
        krib_conf_load_env(&conf, env, NULL, 0, err, sizeof(err));
        ck_assert_int_eq(krib_conf_finalize(&conf, err, sizeof(err)), -1);
        ck_assert_ptr_nonnull(strstr(err, "'nohost' is not host:port"));
        char *env2[] = {"KRIB_REDIS_NODES=a:1,b:2", "KRIB_REDIS_MODE=standalone", NULL};
        krib_conf_load_env(&conf, env2, NULL, 0, err, sizeof(err));
        ck_assert_int_eq(krib_conf_finalize(&conf, err, sizeof(err)), -1);
        ck_assert_ptr_nonnull(strstr(err, "exactly one node"));
        char *env3[] = {"KRIB_REDIS_NODES=a:1", "KRIB_KAFKA_PROPERTIES=novalue", NULL};
        krib_conf_load_env(&conf, env3, NULL, 0, err, sizeof(err));
        ck_assert_int_eq(krib_conf_finalize(&conf, err, sizeof(err)), -1);
        ck_assert_ptr_nonnull(strstr(err, "'novalue' is not name=value"));
        /* librdkafka's own verdict, before start-up: unknown names, bad
         * values, and the properties krib owns. */
        static const struct {
                const char *env, *refusal; /* NULL: accepted */
        } props[] = {
                {"KRIB_KAFKA_PROPERTIES=no.such.property=1",
                 "kafka.properties: no.such.property: "},
                {"KRIB_KAFKA_PROPERTIES=fetch.wait.max.ms=soon",
                 "kafka.properties: fetch.wait.max.ms: "},
                {"KRIB_KAFKA_PROPERTIES=group.id=other", "group.id is set by krib"},
                {"KRIB_KAFKA_PROPERTIES=fetch.wait.max.ms=50", NULL},
        };
        for (size_t i = 0; i < sizeof(props) / sizeof(props[0]); i++) {
                char *envp[] = {(char *)props[i].env, NULL};
                krib_conf_load_env(&conf, envp, NULL, 0, err, sizeof(err));
                int rc = krib_conf_finalize(&conf, err, sizeof(err));
                if (props[i].refusal)
                        ck_assert_msg(rc == -1 && strstr(err, props[i].refusal), "%s: %s",
                                      props[i].env, err);
                else
                        ck_assert_msg(rc == 0, "%s: %s", props[i].env, err);
        }
        /* metrics.address: IPv4 or IPv6 ("::" too), never a name. */
        char *env4[] = {"KRIB_KAFKA_PROPERTIES=", "KRIB_METRICS_ADDRESS=localhost", NULL};
        krib_conf_load_env(&conf, env4, NULL, 0, err, sizeof(err));
        ck_assert_int_eq(krib_conf_finalize(&conf, err, sizeof(err)), -1);
        ck_assert_ptr_nonnull(strstr(err, "metrics.address: 'localhost'"));
        char *env5[] = {"KRIB_METRICS_ADDRESS=::", NULL};
        krib_conf_load_env(&conf, env5, NULL, 0, err, sizeof(err));
        ck_assert_msg(krib_conf_finalize(&conf, err, sizeof(err)) == 0, "%s", err);
}
END_TEST

START_TEST(schema_path_relative_to_config) {
        ck_assert_int_eq(load("kafka = { topics = [\"a\"]; };\n"
                              "decode = { schema_file = \"s.avsc\"; };\n"),
                         0);
        ck_assert_int_eq(krib_conf_finalize(&conf, err, sizeof(err)), 0);
        ck_assert_str_eq(conf.decode_schema_file, "/tmp/s.avsc");
}
END_TEST

START_TEST(every_row_round_trips_through_env) {
        /* Each row's env name is accepted and its printed default parses. */
        ck_assert_uint_gt(krib_conf_row_count(), 10);
        for (size_t i = 0; i < krib_conf_row_count(); i++) {
                const char *name = krib_conf_row_name(i);
                char var[256];
                size_t n = (size_t)snprintf(var, sizeof(var), "KRIB_");
                for (const char *c = name; *c; c++)
                        var[n++] = *c == '.' ? '_' : (char)(*c >= 'a' && *c <= 'z' ? *c - 32 : *c);
                var[n] = '\0';
                FILE *fp = tmpfile();
                krib_conf_print(&conf, fp);
                rewind(fp);
                char line[1024], *val = NULL;
                while (fgets(line, sizeof(line), fp))
                        if (!strncmp(line, name, strlen(name)) && line[strlen(name)] == ' ') {
                                val = strchr(line, '=') + 2;
                                val[strcspn(val, ";\n")] = '\0';
                                break;
                        }
                fclose(fp);
                ck_assert_msg(val != NULL, "%s not printed", name);
                /* Strip quotes / brackets of the printed form. */
                char clean[512];
                size_t k = 0;
                for (char *c = val; *c && k + 1 < sizeof(clean); c++)
                        if (*c != '"' && *c != '[' && *c != ']' && *c != ' ')
                                clean[k++] = *c;
                clean[k] = '\0';
                char entry[800];
                snprintf(entry, sizeof(entry), "%s=%s", var, clean);
                char *env[] = {entry, NULL};
                ck_assert_msg(krib_conf_load_env(&conf, env, NULL, 0, err, sizeof(err)) == 0,
                              "%s: %s", entry, err);
        }
}
END_TEST

START_TEST(secrets_are_redacted) {
        char *env[] = {"KRIB_REDIS_PASSWORD=hunter2", NULL};
        ck_assert_int_eq(krib_conf_load_env(&conf, env, NULL, 0, err, sizeof(err)), 0);
        char buf[8192] = {0};
        FILE *fp = fmemopen(buf, sizeof(buf) - 1, "w");
        krib_conf_print(&conf, fp);
        fclose(fp);
        ck_assert_ptr_null(strstr(buf, "hunter2"));
        ck_assert_ptr_nonnull(strstr(buf, "redis.password = \"<redacted>\""));
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("conf");
        TCase *tc = tcase_create("file");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, defaults);
        tcase_add_test(tc, loads_file);
        tcase_add_test(tc, syntax_error_has_line);
        tcase_add_test(tc, unknown_key_has_line);
        tcase_add_test(tc, unknown_group_has_line);
        tcase_add_test(tc, wrong_type_has_line);
        tcase_add_test(tc, out_of_range_has_line);
        tcase_add_test(tc, big_numbers_are_read_exactly);
        tcase_add_test(tc, bad_enum_has_line);
        tcase_add_test(tc, list_of_non_strings);
        tcase_add_test(tc, missing_file);
        tcase_add_test(tc, schema_path_relative_to_config);
        suite_add_tcase(s, tc);
        tc = tcase_create("env_and_finalize");
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, env_overrides_file);
        tcase_add_test(tc, env_unknown_and_bad_values);
        tcase_add_test(tc, finalize_checks);
        tcase_add_test(tc, every_row_round_trips_through_env);
        tcase_add_test(tc, secrets_are_redacted);
        suite_add_tcase(s, tc);
        return s;
}
