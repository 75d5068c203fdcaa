#include "itest.h"

#include "encode.h"
#include "slot.h"

#include <check.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef KRIB_BIN
#error KRIB_BIN must name the krib binary
#endif

static const char *env_or(const char *name, const char *def) {
        const char *v = getenv(name);
        return v && *v ? v : def;
}

const char *itest_brokers(void) {
        return env_or("KRIB_KAFKA_BROKERS", "127.0.0.1:19092");
}

int itest_kafka_major(void) {
        /* ci/services records the line it formatted the broker's data with. */
        char path[512], v[32] = "";
        const char *run = getenv("KRIB_RUN");
        snprintf(path, sizeof(path), "%s/kafka/version", run ? run : KRIB_SOURCE_DIR "/.run");
        FILE *fp = fopen(path, "r");
        if (fp) {
                if (!fgets(v, sizeof(v), fp))
                        v[0] = '\0';
                fclose(fp);
        }
        return atoi(v);
}

const char *itest_redis_nodes(void) {
        return env_or("KRIB_REDIS_NODES", "127.0.0.1:19100,127.0.0.1:19101,127.0.0.1:19102");
}

const char *itest_redis_seed(void) {
        static char seed[256];
        snprintf(seed, sizeof(seed), "%s", itest_redis_nodes());
        seed[strcspn(seed, ",")] = '\0';
        return seed;
}

int itest_standalone_port(void) {
        return atoi(env_or("REDIS_STANDALONE_PORT", "19110"));
}

void itest_unique(char *out, size_t size, const char *prefix) {
        static int n;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(out, size, "%s-%d-%ld-%d", prefix, (int)getpid(), (long)ts.tv_sec, n++);
}

static void sleep_ms(int ms) {
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
}

static int wait_timeout(pid_t pid, int timeout_ms) {
        int status;
        for (int waited = 0; waited <= timeout_ms; waited += 20) {
                pid_t r = waitpid(pid, &status, WNOHANG);
                if (r == pid)
                        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                sleep_ms(20);
        }
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return -1;
}

int itest_run(char *const argv[], int timeout_s, char *out, size_t out_size) {
        char tmpl[] = "/tmp/krib-itest-out-XXXXXX";
        int fd = mkstemp(tmpl);
        ck_assert_int_ge(fd, 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                dup2(fd, 1);
                execv(argv[0], argv);
                _exit(127);
        }
        int rc = wait_timeout(pid, timeout_s * 1000);
        if (out) {
                ssize_t n = pread(fd, out, out_size - 1, 0);
                out[n > 0 ? n : 0] = '\0';
        }
        close(fd);
        unlink(tmpl);
        return rc;
}

/* Children still running when a test fails (Check exits the test process)
 * are killed, so a failed test leaves no krib behind. */
static pid_t children[64];
static int nchildren;

static void kill_children(void) {
        for (int i = 0; i < nchildren; i++)
                if (children[i] > 0 && kill(children[i], 0) == 0) {
                        kill(children[i], SIGKILL);
                        waitpid(children[i], NULL, 0);
                }
}

static void remember(pid_t pid) {
        if (!nchildren)
                atexit(kill_children);
        if (nchildren < 64)
                children[nchildren++] = pid;
}

pid_t itest_krib_start(const char *const *env, const char *log_path) {
        return itest_krib_start_conf(KRIB_SOURCE_DIR "/config/krib.conf", env, log_path);
}

pid_t itest_krib_start_conf(const char *conf, const char *const *env, const char *log_path) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
                dup2(fd, 1);
                dup2(fd, 2);
                /* No HTTP endpoint unless a test asks: members run side by side. */
                putenv("KRIB_METRICS_PORT=0");
                for (; env && *env; env++)
                        putenv((char *)*env);
                execl(KRIB_BIN, "krib", "-c", conf, (char *)NULL);
                _exit(127);
        }
        remember(pid);
        return pid;
}

pid_t itest_inspect_start(const char *conf, const char *const *env, const char *log_path,
                          const char *out_path) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
                int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
                dup2(out, 1);
                dup2(fd, 2);
                putenv("KRIB_METRICS_PORT=0");
                putenv("KRIB_INSPECT_METRICS_PORT=0");
                for (; env && *env; env++)
                        putenv((char *)*env);
                execl(KRIB_BIN, "krib", "inspect", "-c",
                      conf ? conf : KRIB_SOURCE_DIR "/config/krib.conf", "--report", (char *)NULL);
                _exit(127);
        }
        remember(pid);
        return pid;
}

int itest_inspect_finish(pid_t pid, const char *out_path, int timeout_s, itest_inspect_t *d,
                         int nd) {
        kill(pid, SIGUSR1);
        int rc = wait_timeout(pid, timeout_s * 1000);
        memset(d, 0, sizeof(*d) * (size_t)nd);
        for (int i = 0; i < nd; i++)
                d[i].checked = d[i].stale = d[i].unverifiable = d[i].late = -1;
        FILE *fp = fopen(out_path, "r");
        char line[4096] = "";
        if (fp) {
                if (!fgets(line, sizeof(line), fp))
                        line[0] = '\0';
                fclose(fp);
        }
        const char *p = line;
        for (int i = 0; i < nd && (p = strstr(p, " delay=")); i++) {
                sscanf(p,
                       " delay=%15s checked=%ld stale=%ld unverifiable=%ld superseded=%*d late=%ld",
                       d[i].delay, &d[i].checked, &d[i].stale, &d[i].unverifiable, &d[i].late);
                p++;
        }
        return rc;
}

pid_t itest_inspect_beside(const itest_names_t *n, const char *sample_ratio, char *log,
                           size_t log_size, char *out, size_t out_size) {
        static char ratio[64];
        snprintf(log, log_size, "%s.inspect", n->log);
        snprintf(out, out_size, "%s.report", n->log);
        snprintf(ratio, sizeof(ratio), "KRIB_INSPECT_SAMPLE_RATIO=%s", sample_ratio);
        const char *env[] = {n->env_topic,
                             n->env_group,
                             n->env_brokers,
                             n->env_nodes,
                             "KRIB_INSPECT_DELAYS_MS=1000,60000",
                             "KRIB_INSPECT_FILLS=guarded",
                             "KRIB_INSPECT_BUDGET_PER_S=50000",
                             ratio,
                             NULL};
        return itest_inspect_start(NULL, env, log, out);
}

void itest_inspect_nothing_stale(pid_t pid, const char *log, const char *out, itest_inspect_t *d) {
        int rc = itest_inspect_finish(pid, out, 150, d, 2);
        ck_assert_msg(rc == 0 && d[1].checked > 0 && d[1].stale == 0,
                      "the inspector found %ld of %ld keys stale at %s (exit %d; see %s)",
                      d[1].stale, d[1].checked, d[1].delay, rc, log);
        fprintf(stderr, "inspector: at %s %ld of %ld keys stale, at %s %ld of %ld\n", d[0].delay,
                d[0].stale, d[0].checked, d[1].delay, d[1].stale, d[1].checked);
}

int itest_krib_stop(pid_t pid, int sig, int timeout_s) {
        kill(pid, sig);
        return wait_timeout(pid, timeout_s * 1000);
}

static rd_kafka_t *client(const char *group) {
        char err[256];
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        rd_kafka_conf_set(c, "bootstrap.servers", itest_brokers(), err, sizeof(err));
        rd_kafka_conf_set(c, "group.id", group ? group : "krib-itest-probe", err, sizeof(err));
        rd_kafka_conf_set(c, "log_level", "3", err, sizeof(err));
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
        ck_assert_msg(rk != NULL, "%s", err);
        return rk;
}

int itest_committed(const char *group, const char *topic, int nparts, int64_t *out) {
        rd_kafka_t *rk = client(group);
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(nparts);
        for (int p = 0; p < nparts; p++)
                rd_kafka_topic_partition_list_add(l, topic, p);
        rd_kafka_resp_err_t err = rd_kafka_committed(rk, l, 10000);
        for (int p = 0; p < nparts && !err; p++)
                out[p] = l->elems[p].offset < 0 ? -1 : l->elems[p].offset;
        rd_kafka_topic_partition_list_destroy(l);
        rd_kafka_destroy(rk);
        return err ? -1 : 0;
}

int itest_log_end(const char *topic, int nparts, int64_t *out) {
        rd_kafka_t *rk = client(NULL);
        int rc = 0;
        for (int p = 0; p < nparts && !rc; p++) {
                int64_t lo, hi;
                if (rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000))
                        rc = -1;
                out[p] = hi;
        }
        rd_kafka_destroy(rk);
        return rc;
}

int itest_wait_caught_up(const char *group, const char *topic, int nparts, int timeout_s) {
        int64_t end[256], com[256];
        ck_assert_int_le(nparts, 256);
        ck_assert_int_eq(itest_log_end(topic, nparts, end), 0);
        for (int waited = 0; waited <= timeout_s * 1000; waited += 500) {
                if (itest_committed(group, topic, nparts, com) == 0) {
                        int p = 0;
                        /* An empty partition has nothing to commit; records
                         * appended since the end was read may be committed too. */
                        while (p < nparts && (com[p] >= end[p] || (end[p] == 0 && com[p] < 0)))
                                p++;
                        if (p == nparts)
                                return 0;
                }
                sleep_ms(500);
        }
        return -1;
}

const char *itest_loadgen(const char *const *args) {
        static char out[4096];
        char *argv[32];
        int n = 0;
        argv[n++] = KRIB_LOADGEN_BIN;
        for (; *args && n < 30; args++)
                argv[n++] = (char *)*args;
        argv[n++] = "--schema";
        argv[n++] = KRIB_SOURCE_DIR "/schemas/invalidation.avsc";
        argv[n] = NULL;
        int rc = itest_run(argv, 120, out, sizeof(out));
        ck_assert_msg(rc == 0, "krib-loadgen %s exited %d: %s", argv[1], rc, out);
        return out;
}

int itest_log_count(const char *path, const char *const *needles) {
        FILE *fp = fopen(path, "r");
        if (!fp)
                return -1;
        char line[8192];
        int n = 0;
        while (fgets(line, sizeof(line), fp)) {
                int all = 1;
                for (const char *const *nd = needles; *nd && all; nd++)
                        all = strstr(line, *nd) != NULL;
                n += all;
        }
        fclose(fp);
        return n;
}

redisContext *itest_redis(int port) {
        redisContext *c = redisConnect("127.0.0.1", port);
        ck_assert_msg(c && !c->err, "cannot connect to redis on %d", port);
        return c;
}

pid_t itest_spawn(char *const argv[]) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                int fd = open("/dev/null", O_WRONLY);
                dup2(fd, 1);
                dup2(fd, 2);
                execv(argv[0], argv);
                _exit(127);
        }
        remember(pid);
        return pid;
}

int itest_wait(pid_t pid, int timeout_s) {
        return wait_timeout(pid, timeout_s * 1000);
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
        (void)rk;
        *(rd_kafka_resp_err_t *)opaque = m->err;
}

void itest_produce_raw(const char *topic, int partition, const void *key, size_t key_len,
                       const void *value, size_t value_len) {
        char err[512];
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        rd_kafka_conf_set(c, "bootstrap.servers", itest_brokers(), err, sizeof(err));
        rd_kafka_resp_err_t result = RD_KAFKA_RESP_ERR__IN_PROGRESS;
        rd_kafka_conf_set_dr_msg_cb(c, dr_cb);
        rd_kafka_conf_set_opaque(c, &result);
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
        ck_assert_msg(rk != NULL, "%s", err);
        ck_assert_int_eq(
                rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_KEY(key, key_len),
                                  RD_KAFKA_V_VALUE((void *)value, value_len), RD_KAFKA_V_END),
                0);
        rd_kafka_flush(rk, 30000);
        ck_assert_msg(result == 0, "produce failed: %s", rd_kafka_err2str(result));
        rd_kafka_destroy(rk);
}

void itest_produce_event(const char *topic, int partition, const char *entity,
                         const char *const *keys, krib_action_t action, const char *vv,
                         const char *value) {
        krib_event_t ev;
        memset(&ev, 0, sizeof(ev));
        krib_event_reset(&ev);
        krib_event_strdup(&ev, &ev.entity, entity, strlen(entity));
        size_t nk = 0;
        while (keys[nk])
                nk++;
        ev.keys = krib_event_alloc(&ev, (nk ? nk : 1) * sizeof(krib_str_t));
        for (size_t i = 0; i < nk; i++)
                krib_event_strdup(&ev, &ev.keys[i], keys[i], strlen(keys[i]));
        ev.key_count = nk;
        ev.version = krib_event_alloc(&ev, 8 * sizeof(krib_vv_entry_t));
        char buf[256];
        snprintf(buf, sizeof(buf), "%s", vv);
        char *save = NULL;
        for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                char *eq = strchr(tok, '=');
                *eq = '\0';
                krib_event_strdup(&ev, &ev.version[ev.version_count].origin, tok, strlen(tok));
                ev.version[ev.version_count++].counter = atoll(eq + 1);
        }
        ev.action = action;
        if (value)
                krib_event_strdup(&ev, &ev.value, value, strlen(value));
        itest_produce_ev(topic, partition, &ev);
        krib_event_destroy(&ev);
}

void itest_produce_ev(const char *topic, int partition, krib_event_t *ev) {
        char err[512];
        krib_encode_t *enc = krib_encode_new_file(KRIB_SOURCE_DIR "/schemas/invalidation.avsc", err,
                                                  sizeof(err));
        ck_assert_msg(enc != NULL, "%s", err);
        if (!ev->ts_ms) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ev->ts_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        }
        size_t cap = 4096 + ev->entity.len + ev->value.len + 32 * ev->version_count;
        for (size_t i = 0; i < ev->key_count; i++)
                cap += ev->keys[i].len + 8;
        for (size_t i = 0; i < ev->tag_count; i++)
                cap += ev->tags[i].len + 8;
        for (size_t i = 0; i < ev->version_count; i++)
                cap += ev->version[i].origin.len;
        char *payload = malloc(cap);
        ck_assert_ptr_nonnull(payload);
        size_t len;
        ck_assert_int_eq(krib_encode_event(enc, ev, payload, cap, &len), 0);
        itest_produce_raw(topic, partition, ev->entity.s, ev->entity.len, payload, len);
        free(payload);
        krib_encode_destroy(enc);
}

void itest_produce_tag(const char *topic, int partition, const char *entity, const char *pattern) {
        krib_event_t ev;
        memset(&ev, 0, sizeof(ev));
        krib_event_reset(&ev);
        krib_event_strdup(&ev, &ev.entity, entity, strlen(entity));
        ev.tags = krib_event_alloc(&ev, sizeof(krib_str_t));
        krib_event_strdup(&ev, &ev.tags[0], pattern, strlen(pattern));
        ev.tag_count = 1;
        ev.action = KRIB_ACTION_TAG;
        itest_produce_ev(topic, partition, &ev);
        krib_event_destroy(&ev);
}

int itest_cluster_cmd(const char *cmd, const char *key, const char *arg, char *out, size_t size) {
        char host[256];
        int port;
        snprintf(host, sizeof(host), "%s", itest_redis_seed());
        char *colon = strrchr(host, ':');
        *colon = '\0';
        port = atoi(colon + 1);
        for (int hop = 0; hop < 5; hop++) {
                redisContext *c = redisConnect(host, port);
                ck_assert_msg(c && !c->err, "cannot connect to %s:%d", host, port);
                redisReply *r = arg ? redisCommand(c, "%s %s %s", cmd, key, arg)
                                    : redisCommand(c, "%s %s", cmd, key);
                ck_assert_ptr_nonnull(r);
                if (r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "MOVED ", 6)) {
                        char *addr = strchr(r->str + 6, ' ') + 1;
                        char *pc = strrchr(addr, ':');
                        snprintf(host, sizeof(host), "%.*s", (int)(pc - addr), addr);
                        port = atoi(pc + 1);
                        freeReplyObject(r);
                        redisFree(c);
                        continue;
                }
                ck_assert_msg(r->type != REDIS_REPLY_ERROR, "%s %s: %s", cmd, key,
                              r->type == REDIS_REPLY_ERROR ? r->str : "");
                int found = r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS ||
                            (r->type == REDIS_REPLY_INTEGER && r->integer > 0);
                if (out && size) {
                        if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS)
                                snprintf(out, size, "%.*s", (int)r->len, r->str);
                        else
                                out[0] = '\0';
                }
                freeReplyObject(r);
                redisFree(c);
                return found;
        }
        ck_abort_msg("too many redirects for %s", key);
        return 0;
}

int itest_cluster_get(const char *key, char *out, size_t size) {
        return itest_cluster_cmd("GET", key, NULL, out, size);
}

long itest_rss_kb(pid_t pid, int peak) {
        char path[64], line[256];
        snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
        FILE *fp = fopen(path, "r");
        if (!fp)
                return -1;
        long kb = -1;
        const char *want = peak ? "VmHWM:" : "VmRSS:";
        while (fgets(line, sizeof(line), fp))
                if (!strncmp(line, want, strlen(want)))
                        kb = atol(line + strlen(want));
        fclose(fp);
        return kb;
}

int64_t itest_committed_sum(const char *group, const char *topic, int nparts) {
        int64_t com[256], sum = 0;
        if (itest_committed(group, topic, nparts, com))
                return -1;
        for (int p = 0; p < nparts; p++)
                sum += com[p] > 0 ? com[p] : 0;
        return sum;
}

void itest_names(itest_names_t *n, const char *what) {
        itest_unique(n->topic, sizeof(n->topic), what);
        snprintf(n->group, sizeof(n->group), "%s-g", n->topic);
        snprintf(n->prefix, sizeof(n->prefix), "%s-k", n->topic);
        snprintf(n->log, sizeof(n->log), "/tmp/%s.log", n->topic);
        snprintf(n->env_topic, sizeof(n->env_topic), "KRIB_KAFKA_TOPICS=%s", n->topic);
        snprintf(n->env_group, sizeof(n->env_group), "KRIB_KAFKA_GROUP_ID=%s", n->group);
        snprintf(n->env_brokers, sizeof(n->env_brokers), "KRIB_KAFKA_BROKERS=%s", itest_brokers());
        snprintf(n->env_nodes, sizeof(n->env_nodes), "KRIB_REDIS_NODES=%s", itest_redis_nodes());
}

long itest_count_keys(const itest_names_t *n, const char *redis, long count, long k) {
        char ns[32], ks[32];
        snprintf(ns, sizeof(ns), "%ld", count);
        snprintf(ks, sizeof(ks), "%ld", k);
        const char *args[] = {"count", "--redis",          redis, "--prefix", n->prefix, "--count",
                              ns,      "--keys-per-event", ks,    NULL};
        return atol(itest_loadgen(args));
}

void itest_create_and_fill(const itest_names_t *n, const char *redis, int nparts, long count,
                           long k, long malformed) {
        char ps[16], ns[32], ks[32], ms[32];
        snprintf(ps, sizeof(ps), "%d", nparts);
        snprintf(ns, sizeof(ns), "%ld", count);
        snprintf(ks, sizeof(ks), "%ld", k);
        snprintf(ms, sizeof(ms), "%ld", malformed);
        const char *create[] = {"create", "--topic", n->topic, "--partitions", ps, NULL};
        itest_loadgen(create);
        const char *populate[] = {"populate", "--redis", redis, "--prefix",
                                  n->prefix,  "--count", ns,    "--keys-per-event",
                                  ks,         NULL};
        itest_loadgen(populate);
        ck_assert_int_eq(itest_count_keys(n, redis, count, k), count * k);
        const char *produce[] = {"produce", "--topic",     n->topic, "--prefix",
                                 n->prefix, "--count",     ns,       "--keys-per-event",
                                 ks,        "--malformed", ms,       NULL};
        itest_loadgen(produce);
}

int itest_metrics_port(void) {
        return atoi(env_or("METRICS_TEST_PORT", "19121"));
}

int itest_http_get(int port, const char *path, const char *out_path) {
        char url[128], code[16];
        snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
        char *argv[] = {"/usr/bin/curl",
                        "-s",
                        "-o",
                        (char *)out_path,
                        "-w",
                        "%{http_code}",
                        "--max-time",
                        "5",
                        url,
                        NULL};
        if (itest_run(argv, 10, code, sizeof(code)) != 0)
                return -1;
        return atoi(code);
}

void itest_write_conf(const char *path, const char *group, const char *avro_topic,
                      const char *extra_fmt, ...) {
        FILE *fp = fopen(path, "w");
        ck_assert_msg(fp != NULL, "cannot write %s", path);
        fprintf(fp,
                "kafka = { brokers = \"%s\"; group_id = \"%s\"; topics = [ %s%s%s ]; };\n"
                "redis = { nodes = [ \"%s\" ]; };\n"
                "decode = { schema_file = \"%s/schemas/invalidation.avsc\";\n"
                "           schema_dir = \"%s/schemas\"; };\n",
                itest_brokers(), group, avro_topic ? "\"" : "", avro_topic ? avro_topic : "",
                avro_topic ? "\"" : "", itest_redis_seed(), KRIB_SOURCE_DIR, KRIB_SOURCE_DIR);
        va_list ap;
        va_start(ap, extra_fmt);
        vfprintf(fp, extra_fmt, ap);
        va_end(ap);
        fclose(fp);
}

double itest_metric(const char *path, const char *n1, const char *n2) {
        FILE *fp = fopen(path, "r");
        char line[512];
        double sum = 0;
        while (fp && fgets(line, sizeof(line), fp)) {
                if (line[0] == '#' || !strstr(line, n1) || (n2 && !strstr(line, n2)))
                        continue;
                const char *sp = strrchr(line, ' ');
                if (sp)
                        sum += atof(sp + 1);
        }
        if (fp)
                fclose(fp);
        return sum;
}

void itest_topic_with_dlq(const itest_names_t *n, int nparts, char *dlq, size_t dlq_size,
                          char *conf, size_t conf_size) {
        char parts[16];
        snprintf(parts, sizeof(parts), "%d", nparts);
        const char *create[] = {"create", "--topic", n->topic, "--partitions", parts, NULL};
        itest_loadgen(create);
        snprintf(dlq, dlq_size, "%s-dlq", n->topic);
        const char *create_dlq[] = {"create", "--topic", dlq, "--partitions", "1", NULL};
        itest_loadgen(create_dlq);
        snprintf(conf, conf_size, "/tmp/%s.conf", n->topic);
}

void itest_acl_all_nodes(const char *const *argv, int argc) {
        int base = getenv("KRIB_PORT_BASE") ? atoi(getenv("KRIB_PORT_BASE")) : 19000;
        for (int i = 0; i < 6; i++) {
                redisContext *c = itest_redis(base + 100 + i);
                redisReply *r = redisCommandArgv(c, argc, (const char **)argv, NULL);
                ck_assert_msg(r && r->type != REDIS_REPLY_ERROR, "%s on %d: %s", argv[0],
                              base + 100 + i, r ? r->str : c->errstr);
                freeReplyObject(r);
                redisFree(c);
        }
}

void itest_load_fill_library(void) {
        static char lib[16384], out[32768];
        FILE *fp = fopen(KRIB_SOURCE_DIR "/redis/krib.lua", "r");
        ck_assert_ptr_nonnull(fp);
        size_t n = fread(lib, 1, sizeof(lib) - 1, fp);
        fclose(fp);
        lib[n] = '\0';
        char *argv[] = {"/usr/bin/redis-cli",
                        "--cluster",
                        "call",
                        (char *)itest_redis_seed(),
                        "FUNCTION",
                        "LOAD",
                        "REPLACE",
                        lib,
                        "--cluster-only-masters",
                        NULL};
        ck_assert_int_eq(itest_run(argv, 30, out, sizeof(out)), 0);
        /* redis-cli echoes the library, then "host:port: krib" per master. */
        ck_assert_msg(strstr(out, ": krib") && !strstr(out, ": ERR"), "FUNCTION LOAD: %s", out);
}

void itest_migrate_tag_slots(int n) {
        char seed_port[16], out[1024], slots[4][16];
        snprintf(seed_port, sizeof(seed_port), "%s", strrchr(itest_redis_seed(), ':') + 1);
        char *mig[8] = {KRIB_SOURCE_DIR "/tests/integration/migrate_slots.sh", seed_port};
        for (int t = 0; t < n && t < 4; t++) {
                char tag[16];
                int l = snprintf(tag, sizeof(tag), "t%d", t);
                snprintf(slots[t], sizeof(slots[t]), "%u", krib_slot_of(tag, (size_t)l));
                mig[2 + t] = slots[t];
        }
        mig[2 + (n < 4 ? n : 4)] = NULL;
        ck_assert_msg(itest_run(mig, 240, out, sizeof(out)) == 0, "migration failed: %s", out);
}

int itest_master_slots(int port, unsigned char *owned) {
        const char *seed = itest_redis_seed();
        redisContext *c = redisConnect("127.0.0.1", atoi(strrchr(seed, ':') + 1));
        ck_assert_msg(c && !c->err, "cannot reach %s", seed);
        redisReply *r = redisCommand(c, "CLUSTER SLOTS");
        ck_assert_msg(r && r->type == REDIS_REPLY_ARRAY, "CLUSTER SLOTS failed on %s", seed);
        memset(owned, 0, KRIB_SLOT_COUNT);
        int n = 0;
        for (size_t i = 0; i < r->elements; i++) {
                redisReply *e = r->element[i];
                if (e->elements < 3 || e->element[2]->elements < 2 ||
                    e->element[2]->element[1]->integer != port)
                        continue;
                for (long long s = e->element[0]->integer; s <= e->element[1]->integer; s++, n++)
                        owned[s] = 1;
        }
        freeReplyObject(r);
        redisFree(c);
        return n;
}

static int cmp_int(const void *a, const void *b) {
        int x = *(const int *)a, y = *(const int *)b;
        return (x > y) - (x < y);
}

int itest_trace_p99(const char *path, int64_t from_ms, int64_t to_ms, const unsigned char *skip,
                    long *count) {
        FILE *fp = fopen(path, "r");
        ck_assert_msg(fp != NULL, "no latency trace at %s", path);
        size_t n = 0, cap = 4096;
        int *v = malloc(cap * sizeof(*v));
        long long at, lat;
        int slot;
        while (v && fscanf(fp, "%lld %lld %d", &at, &lat, &slot) == 3) {
                /* By when the event happened (its ts_ms = at - lat): one
                 * that waited out the fault counts however late it came. */
                if (at - lat < from_ms || at - lat > to_ms || slot < 0 || slot >= KRIB_SLOT_COUNT ||
                    skip[slot])
                        continue;
                if (n == cap) {
                        int *g = realloc(v, 2 * cap * sizeof(*v));
                        if (!g)
                                break;
                        v = g;
                        cap *= 2;
                }
                v[n++] = (int)lat;
        }
        fclose(fp);
        ck_assert_ptr_nonnull(v);
        /* p99: the smallest value at least 99 % of them do not exceed. */
        qsort(v, n, sizeof(*v), cmp_int);
        int p99 = n ? v[(n * 99 + 99) / 100 - 1] : -1;
        free(v);
        *count = (long)n;
        return p99;
}
