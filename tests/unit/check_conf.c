#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "conf.h"
#include "preflight.h"

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
                 "kafka.properties (environment KRIB_KAFKA_PROPERTIES): no.such.property: "},
                {"KRIB_KAFKA_PROPERTIES=fetch.wait.max.ms=soon", "fetch.wait.max.ms: "},
                {"KRIB_KAFKA_PROPERTIES=group.id=other", "group.id is set by krib"},
                {"KRIB_KAFKA_PROPERTIES=enable.auto.commit=false",
                 "enable.auto.commit is set by krib"},
                {"KRIB_KAFKA_PROPERTIES=ssl.ca.location=/no/such/ca.pem",
                 "ssl.ca.location: cannot read /no/such/ca.pem"},
                {"KRIB_KAFKA_PROPERTIES=ssl.ca.location=probe", NULL},
                {"KRIB_KAFKA_PROPERTIES=fetch.wait.max.ms=50", NULL},
                /* KIP-848: the broker owns the session, heartbeats and the
                 * assignor (librdkafka >= 2.10; rd_kafka_new() refuses these). */
                {"KRIB_KAFKA_PROPERTIES=group.protocol=consumer,session.timeout.ms=30000", NULL},
                {"KRIB_KAFKA_PROPERTIES=partition.assignment.strategy=range,group.protocol="
                 "consumer",
                 NULL},
                {"KRIB_KAFKA_PROPERTIES=group.protocol=consumer,group.remote.assignor=uniform",
                 NULL},
                {"KRIB_KAFKA_PROPERTIES=group.protocol=classic,session.timeout.ms=30000", NULL},
        };
        for (size_t i = 0; i < sizeof(props) / sizeof(props[0]); i++) {
                if (strstr(props[i].env, "group.protocol") && rd_kafka_version() < 0x020a0000) {
                        printf("skipped %s: librdkafka %s predates KIP-848\n", props[i].env,
                               rd_kafka_version_str());
                        continue;
                }
                char *envp[] = {(char *)props[i].env, "KRIB_KAFKA_PROPERTIES_REPLACE=true", NULL};
                krib_conf_load_env(&conf, envp, NULL, 0, err, sizeof(err));
                int rc = krib_conf_finalize(&conf, err, sizeof(err));
                if (props[i].refusal)
                        ck_assert_msg(rc == -1 && strstr(err, props[i].refusal), "%s: %s",
                                      props[i].env, err);
                else
                        ck_assert_msg(rc == 0, "%s: %s", props[i].env, err);
                /* The consumer leaves out the classic-only defaults under KIP-848. */
                int kip848 = strstr(props[i].env, "protocol=consumer") != NULL;
                ck_assert_int_eq(krib_conf_kafka_consumer_protocol(&conf), kip848);
                ck_assert_int_eq(
                        krib_conf_kafka_property_applies(&conf, "partition.assignment.strategy"),
                        !kip848);
                ck_assert_int_eq(krib_conf_kafka_property_applies(&conf, "client.id"), 1);
                ck_assert_int_eq(krib_conf_kafka_property_applies(&conf, "session.timeout.ms"),
                                 !kip848);
                /* What was left out is said, with where it came from. */
                int warned = 0;
                for (size_t k = 0; k < conf.warnings.n; k++)
                        warned |= strstr(conf.warnings.v[k], "is left out") &&
                                  strstr(conf.warnings.v[k], "environment KRIB_KAFKA_PROPERTIES");
                ck_assert_int_eq(warned, kip848 && strstr(props[i].env, "assignor") == NULL);
        }
        /* metrics.address: IPv4 or IPv6 ("::" too), never a name. */
        char *env4[] = {"KRIB_KAFKA_PROPERTIES=", "KRIB_KAFKA_PROPERTIES_REPLACE=1",
                        "KRIB_METRICS_ADDRESS=localhost", NULL};
        krib_conf_load_env(&conf, env4, NULL, 0, err, sizeof(err));
        ck_assert_int_eq(krib_conf_finalize(&conf, err, sizeof(err)), -1);
        ck_assert_msg(
                strstr(err, "metrics.address (environment KRIB_METRICS_ADDRESS): 'localhost'"),
                "%s", err);
        char *env5[] = {"KRIB_METRICS_ADDRESS=::", "KRIB_KAFKA_TOPICS=t", NULL};
        krib_conf_load_env(&conf, env5, NULL, 0, err, sizeof(err));
        ck_assert_msg(krib_conf_finalize(&conf, err, sizeof(err)) == 0, "%s", err);
        /* Topic regexes compile; avro routes have a registry. */
        char *env6[] = {"KRIB_KAFKA_TOPICS=ok,^bad((", NULL};
        krib_conf_load_env(&conf, env6, NULL, 0, err, sizeof(err));
        ck_assert_int_eq(krib_conf_finalize(&conf, err, sizeof(err)), -1);
        ck_assert_msg(strstr(err, "'^bad((' is not a valid regex"), "%s", err);
}
END_TEST

/* A file's key names its line; the environment names its variable. */
START_TEST(errors_name_their_source) {
        ck_assert_int_eq(load("kafka = { topics = [\"a\"];\n"
                              "  brokers = \"\"; };\n"),
                         0);
        ck_assert_int_eq(krib_conf_finalize(&conf, err, sizeof(err)), -1);
        char want[128];
        snprintf(want, sizeof(want), "kafka.brokers (%s:2): must not be empty", path);
        ck_assert_msg(!strcmp(err, want), "%s", err);
        char *env[] = {"KRIB_KAFKA_BROKERS=b:1", "KRIB_REDIS_RETRY_CAP_MS=1",
                       "KRIB_REDIS_RETRY_BASE_MS=5", NULL};
        ck_assert_int_eq(krib_conf_load_env(&conf, env, NULL, 0, err, sizeof(err)), 0);
        ck_assert_int_eq(krib_conf_finalize(&conf, err, sizeof(err)), -1);
        ck_assert_str_eq(err, "redis.retry_cap_ms (environment KRIB_REDIS_RETRY_CAP_MS): must not "
                              "be below redis.retry_base_ms");
}
END_TEST

/* KRIB_KAFKA_PROPERTIES (set by the StatefulSet) merges with the file's
 * list per name, each change noted; _REPLACE=true replaces the list. */
START_TEST(env_merges_keyed_lists) {
        ck_assert_int_eq(load("kafka = { topics = [\"a\"];\n"
                              "  properties = [\"security.protocol=SASL_SSL\", "
                              "\"client.id=file\", \"sasl.jaas.config=secret\"]; };\n"),
                         0);
        char *env[] = {"KRIB_KAFKA_PROPERTIES=client.id=env,ssl.cipher.suites=A\\,B,"
                       "sasl.jaas.config=other",
                       NULL};
        ck_assert_int_eq(krib_conf_load_env(&conf, env, NULL, 0, err, sizeof(err)), 0);
        ck_assert_uint_eq(conf.kafka_properties.n, 4);
        ck_assert_str_eq(conf.kafka_properties.v[0], "security.protocol=SASL_SSL");
        ck_assert_str_eq(conf.kafka_properties.v[1], "client.id=env");
        ck_assert_str_eq(conf.kafka_properties.v[2], "sasl.jaas.config=other");
        ck_assert_str_eq(conf.kafka_properties.v[3], "ssl.cipher.suites=A,B");
        ck_assert_uint_eq(conf.notes.n, 3);
        ck_assert_msg(strstr(conf.notes.v[0], "client.id=file (") &&
                              strstr(conf.notes.v[0], ") replaced by client.id=env"),
                      "%s", conf.notes.v[0]);
        ck_assert_msg(strstr(conf.notes.v[1], "ssl.cipher.suites=A,B added"), "%s",
                      conf.notes.v[1]);
        ck_assert_msg(strstr(conf.notes.v[2], "sasl.jaas.config=<redacted>") &&
                              !strstr(conf.notes.v[2], "secret") &&
                              !strstr(conf.notes.v[2], "other"),
                      "%s", conf.notes.v[2]);
        char *env2[] = {"KRIB_KAFKA_PROPERTIES=fetch.wait.max.ms=7",
                        "KRIB_KAFKA_PROPERTIES_REPLACE=true", "KRIB_LOG_LEVEL=debug", NULL};
        char warn[128];
        ck_assert_int_eq(krib_conf_load_env(&conf, env2, warn, sizeof(warn), err, sizeof(err)), 0);
        ck_assert_str_eq(warn, "");
        ck_assert_uint_eq(conf.kafka_properties.n, 1);
        ck_assert_str_eq(conf.kafka_properties.v[0], "fetch.wait.max.ms=7");
        ck_assert_msg(strstr(conf.notes.v[conf.notes.n - 1],
                             "KRIB_LOG_LEVEL: log.level = \"debug\" (default was \"info\")"),
                      "%s", conf.notes.v[conf.notes.n - 1]);
        char *env3[] = {"KRIB_KAFKA_PROPERTIES_REPLACE=maybe", NULL};
        ck_assert_int_eq(krib_conf_load_env(&conf, env3, NULL, 0, err, sizeof(err)), -1);
}
END_TEST

/* Replaces %F (the config file), %B (a file that is neither Avro nor PEM),
 * %C/%K (a certificate and its key) and %L (another key) in in. */
static void expand(const char *in, const char *cfg, char *out, size_t size) {
        const char *dir = "/tmp/krib-preflight";
        size_t n = 0;
        for (; *in && n + 1 < size; in++) {
                char sub[128] = "";
                if (in[0] == '%' && in[1]) {
                        switch (in[1]) {
                        case 'F':
                                snprintf(sub, sizeof(sub), "%s", cfg);
                                break;
                        case 'B':
                                snprintf(sub, sizeof(sub), "%s/broken", dir);
                                break;
                        case 'C':
                                snprintf(sub, sizeof(sub), "%s/c.pem", dir);
                                break;
                        case 'K':
                                snprintf(sub, sizeof(sub), "%s/k.pem", dir);
                                break;
                        case 'L':
                                snprintf(sub, sizeof(sub), "%s/l.pem", dir);
                                break;
                        }
                }
                if (sub[0]) {
                        n += (size_t)snprintf(out + n, size - n, "%s", sub);
                        in++;
                } else
                        out[n++] = *in;
        }
        out[n < size ? n : size - 1] = '\0';
}

/* What start-up refuses without a network, the check refuses too, and
 * names the key and where its value came from (issue 25). */
START_TEST(preflight_names_key_and_source) {
        ck_assert_int_eq(system("mkdir -p /tmp/krib-preflight && cd /tmp/krib-preflight && "
                                "printf '{ \"type\": \"record\", \"name\": ' > broken && "
                                "for k in k l; do openssl req -x509 -newkey ec -pkeyopt "
                                "ec_paramgen_curve:P-256 -nodes -keyout $k.pem -out c$k.pem "
                                "-days 2 -subj /CN=krib 2>/dev/null || exit 1; done && "
                                "cp ck.pem c.pem"),
                         0);
        static const struct {
                const char *file; /* config lines from line 2 (line 1 names the topic) */
                const char *env[4];
                const char *want; /* NULL: passes */
        } cases[] = {
                {"", {NULL}, NULL},
                {"",
                 {"KRIB_DECODE_SCHEMA_FILE=/no/such.avsc"},
                 "decode.schema_file (environment KRIB_DECODE_SCHEMA_FILE): /no/such.avsc: "},
                {"",
                 {"KRIB_DECODE_SCHEMA_FILE="},
                 "decode.schema_file (environment KRIB_DECODE_SCHEMA_FILE): "},
                {"decode = {\n schema_file = \"%B\"; };\n",
                 {NULL},
                 "decode.schema_file (%F:3): %B"},
                {"",
                 {"KRIB_DECODE_SCHEMA_DIR=/no/such"},
                 "decode.schema_dir (environment KRIB_DECODE_SCHEMA_DIR): /no/such: cannot open"},
                {"redis = { tls = true;\n  tls_ca_file = \"/no/ca.pem\"; };\n",
                 {NULL},
                 "redis.tls_ca_file (%F:3): /no/ca.pem: "},
                {"",
                 {"KRIB_REDIS_TLS=true", "KRIB_REDIS_TLS_CA_FILE=%B"},
                 "redis.tls_ca_file (environment KRIB_REDIS_TLS_CA_FILE): %B: "},
                {"redis = { tls = true; };\n",
                 {"KRIB_REDIS_TLS_CERT_FILE=/no/c.pem"},
                 "redis.tls_cert_file (environment KRIB_REDIS_TLS_CERT_FILE): /no/c.pem: "},
                {"",
                 {"KRIB_REDIS_TLS=true", "KRIB_REDIS_TLS_CERT_FILE=%C"},
                 "redis.tls_cert_file (environment KRIB_REDIS_TLS_CERT_FILE): %C: "},
                {"redis = {\n tls = true;\n tls_cert_file = \"%C\";\n tls_key_file = \"/no/k\"; "
                 "};\n",
                 {NULL},
                 "redis.tls_key_file (%F:5): /no/k: "},
                {"",
                 {"KRIB_REDIS_TLS=true", "KRIB_REDIS_TLS_CERT_FILE=%C",
                  "KRIB_REDIS_TLS_KEY_FILE=%L"},
                 "redis.tls_key_file (environment KRIB_REDIS_TLS_KEY_FILE): %L: "},
                {"",
                 {"KRIB_REDIS_TLS=true", "KRIB_REDIS_TLS_CERT_FILE=%C",
                  "KRIB_REDIS_TLS_KEY_FILE=%K"},
                 NULL},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char text[512], vars[4][160], want[512];
                char *env[6] = {"KRIB_DECODE_SCHEMA_FILE=" KRIB_SOURCE_DIR
                                "/schemas/invalidation.avsc"};
                int n = strstr(cases[i].file, "schema_file") ? 0 : 1;
                snprintf(text, sizeof(text), "kafka = { topics = [\"t\"]; };\n%s", cases[i].file);
                char expanded[512];
                expand(text, "", expanded, sizeof(expanded));
                write_conf(expanded);
                for (int v = 0; cases[i].env[v]; v++) {
                        expand(cases[i].env[v], path, vars[v], sizeof(vars[v]));
                        env[n++] = vars[v];
                }
                env[n] = NULL;
                krib_conf_t c;
                ck_assert_int_eq(krib_conf_init(&c), 0);
                ck_assert_msg(krib_conf_load_file(&c, path, err, sizeof(err)) == 0, "%zu: %s", i,
                              err);
                ck_assert_msg(krib_conf_load_env(&c, env, NULL, 0, err, sizeof(err)) == 0,
                              "%zu: %s", i, err);
                ck_assert_msg(krib_conf_finalize(&c, err, sizeof(err)) == 0, "%zu: %s", i, err);
                int rc = krib_preflight_check(&c, err, sizeof(err));
                if (!cases[i].want) {
                        ck_assert_msg(rc == 0, "case %zu: %s", i, err);
                } else {
                        expand(cases[i].want, path, want, sizeof(want));
                        ck_assert_msg(rc == -1 && strncmp(err, want, strlen(want)) == 0,
                                      "case %zu: want '%s...', got '%s'", i, want, err);
                }
                krib_conf_destroy(&c);
                unlink(path);
                path[0] = '\0';
        }
}
END_TEST

START_TEST(avro_routes_need_a_registry) {
        ck_assert_int_eq(load("routes = ( { name = \"r\"; topics = [\"t\"]; keys = [\"${id}\"];\n"
                              "  format = \"debezium-avro\"; } );\n"),
                         0);
        ck_assert_int_eq(krib_conf_finalize(&conf, err, sizeof(err)), -1);
        ck_assert_msg(strstr(err, "registry.url: a route reads debezium-avro (route r)"), "%s",
                      err);
        char *env[] = {"KRIB_REGISTRY_URL=registry:8081", NULL};
        ck_assert_int_eq(krib_conf_load_env(&conf, env, NULL, 0, err, sizeof(err)), 0);
        ck_assert_int_eq(krib_conf_finalize(&conf, err, sizeof(err)), -1);
        ck_assert_msg(strstr(err, "is not an http:// or https:// URL"), "%s", err);
        char *env2[] = {"KRIB_REGISTRY_URL=http://registry:8081", NULL};
        ck_assert_int_eq(krib_conf_load_env(&conf, env2, NULL, 0, err, sizeof(err)), 0);
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
        tcase_add_test(tc, errors_name_their_source);
        tcase_add_test(tc, env_merges_keyed_lists);
        tcase_add_test(tc, preflight_names_key_and_source);
        tcase_add_test(tc, avro_routes_need_a_registry);
        tcase_add_test(tc, every_row_round_trips_through_env);
        tcase_add_test(tc, secrets_are_redacted);
        suite_add_tcase(s, tc);
        return s;
}
