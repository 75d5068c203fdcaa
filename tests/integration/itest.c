#include "itest.h"

#include <check.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
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

pid_t itest_krib_start(const char *const *env, const char *log_path) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
                dup2(fd, 1);
                dup2(fd, 2);
                for (; env && *env; env++)
                        putenv((char *)*env);
                execl(KRIB_BIN, "krib", "-c", KRIB_SOURCE_DIR "/config/krib.conf", (char *)NULL);
                _exit(127);
        }
        return pid;
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
                        while (p < nparts && com[p] == end[p])
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
