/* krib: wires configuration, signals and the pipeline. Only this file exits. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "conf.h"
#include "inspect.h"
#include "log.h"
#include "pipeline.h"
#include "preflight.h"
#include "route.h"
#include "version.h"

extern char **environ;

static volatile sig_atomic_t stop_requested, end_requested;

static void on_usr1(int sig) {
        (void)sig;
        end_requested = 1; /* krib inspect: read to the end as of now, then stop */
}

static struct timespec first_signal;

static void on_signal(int sig) {
        (void)sig;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        /* A supervisor that forwards a signal to a process group that already
         * got it delivers it twice at once: only a later one counts. */
        long ms = (now.tv_sec - first_signal.tv_sec) * 1000 +
                  (now.tv_nsec - first_signal.tv_nsec) / 1000000;
        if (stop_requested && ms >= 300) {
                /* Second signal: leave now. Nothing unacknowledged was stored,
                 * so the next run re-reads it (at-least-once). */
                static const char msg[] = "krib: second signal, exiting without draining\n";
                ssize_t w = write(STDERR_FILENO, msg, sizeof(msg) - 1);
                (void)w;
                _exit(130);
        }
        if (!stop_requested)
                first_signal = now;
        stop_requested = 1;
}

static void usage(FILE *fp) {
        fprintf(fp, "usage: krib [-c FILE] [--check-config] [--print-config] [--help-config] "
                    "[--version]\n"
                    "       krib inspect [-c FILE] [--until-end] [--report]\n"
                    "  inspect             check krib's work in Redis after inspect.delays_ms "
                    "(docs/CONSISTENCY.md)\n"
                    "  --until-end         inspect: stop at the end of the topics as of the start "
                    "(SIGUSR1: as of then)\n"
                    "  --report            inspect: print one summary line; exit 1 if a key was "
                    "stale at the longest delay\n"
                    "  -c, --config FILE   libconfig file (default: $KRIB_CONFIG or "
                    "config/krib.conf)\n"
                    "  --check-config      validate the configuration and exit\n"
                    "  --print-config      print the effective configuration (secrets "
                    "redacted)\n"
                    "  --help-config       list every configuration key\n");
}

int main(int argc, char **argv) {
        const char *path = getenv("KRIB_CONFIG") ? getenv("KRIB_CONFIG") : "config/krib.conf";
        int check_only = 0, print = 0, inspect = 0;
        krib_inspect_opts_t iopts = {0, 0};
        if (argc > 1 && !strcmp(argv[1], "inspect")) {
                inspect = 1;
                argv[1] = argv[0];
                argv++;
                argc--;
        }
        static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                             {"check-config", no_argument, NULL, 'k'},
                                             {"print-config", no_argument, NULL, 'p'},
                                             {"help-config", no_argument, NULL, 'H'},
                                             {"version", no_argument, NULL, 'V'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"until-end", no_argument, NULL, 'U'},
                                             {"report", no_argument, NULL, 'R'},
                                             {NULL, 0, NULL, 0}};
        int o;
        while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
                switch (o) {
                case 'c':
                        path = optarg;
                        break;
                case 'k':
                        check_only = 1;
                        break;
                case 'p':
                        print = 1;
                        break;
                case 'H':
                        krib_conf_print_help(stdout);
                        return 0;
                case 'V':
                        printf("krib %s (librdkafka %s)\n", KRIB_VERSION, rd_kafka_version_str());
                        return 0;
                case 'h':
                        usage(stdout);
                        return 0;
                case 'U':
                case 'R':
                        if (!inspect) {
                                usage(stderr);
                                return 2;
                        }
                        *(o == 'U' ? &iopts.until_end : &iopts.report) = 1;
                        break;
                default:
                        usage(stderr);
                        return 2;
                }
        }

        krib_conf_t conf;
        char errstr[1024];
        if (krib_conf_init(&conf)) {
                fprintf(stderr, "krib: out of memory\n");
                return 1;
        }
        char unknown_env[512];
        if (krib_conf_load_file(&conf, path, errstr, sizeof(errstr)) ||
            krib_conf_load_env(&conf, environ, unknown_env, sizeof(unknown_env), errstr,
                               sizeof(errstr)) ||
            krib_conf_finalize(&conf, errstr, sizeof(errstr)) ||
            krib_preflight_check(&conf, errstr, sizeof(errstr))) {
                fprintf(stderr, "krib: configuration error: %s\n", errstr);
                krib_conf_destroy(&conf);
                return 2;
        }
        krib_log_set_level((krib_log_level_t)conf.log_level);
        krib_log_set_format((krib_log_format_t)conf.log_format);
        if (unknown_env[0])
                krib_log_warn("conf",
                              "msg=\"environment variables match no configuration key\" "
                              "names=\"%s\"",
                              unknown_env);
        for (size_t i = 0; i < conf.notes.n; i++)
                krib_log_info("conf", "msg=\"environment override\" change=\"%s\"",
                              krib_log_esc(conf.notes.v[i], strlen(conf.notes.v[i])));
        for (size_t i = 0; i < conf.warnings.n; i++) {
                krib_log_warn("conf", "msg=\"setting left out\" why=\"%s\"",
                              krib_log_esc(conf.warnings.v[i], strlen(conf.warnings.v[i])));
                if (check_only)
                        printf("warning: %s\n", conf.warnings.v[i]);
        }
        for (size_t i = 0; i < krib_routes_count(conf.routes); i++) {
                char vt[512];
                krib_routes_version_text(conf.routes, i, vt, sizeof(vt));
                krib_log_info("conf", "msg=\"%s\"", krib_log_esc(vt, strlen(vt)));
                if (check_only)
                        printf("%s\n", vt);
        }
        if (print)
                krib_conf_print(&conf, stdout);
        if (check_only || print) {
                if (check_only)
                        printf("%s: configuration OK\n", path);
                krib_conf_destroy(&conf);
                return 0;
        }

        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
        if (inspect) {
                struct sigaction su;
                memset(&su, 0, sizeof(su));
                su.sa_handler = on_usr1;
                sigemptyset(&su.sa_mask);
                sigaction(SIGUSR1, &su, NULL);
                krib_log_info("main", "msg=\"starting the inspector\" version=%s config=%s",
                              KRIB_VERSION, path);
                int irc = krib_inspect_run(&conf, &iopts, &stop_requested, &end_requested);
                krib_conf_destroy(&conf);
                return irc;
        }

        krib_log_info("main",
                      "msg=\"starting\" version=%s config=%s brokers=%s group=%s "
                      "redis_mode=%s",
                      KRIB_VERSION, path, conf.kafka_brokers, conf.kafka_group_id,
                      conf.redis_mode ? "standalone" : "cluster");
        krib_pipeline_t *p = krib_pipeline_new(&conf, &stop_requested, errstr, sizeof(errstr));
        if (!p) {
                krib_log_error("main", "msg=\"cannot start\" error=\"%s\"", errstr);
                krib_conf_destroy(&conf);
                return 1;
        }
        krib_pipeline_end_t rc = krib_pipeline_run(p);
        if (rc == KRIB_PIPELINE_STOPPED_ON_RECORD) { /* logged above */
                krib_pipeline_destroy(p);
                krib_log_error("main", "msg=\"stopped on a record krib cannot apply "
                                       "(errors.tolerance=none); exit 3\"");
                krib_conf_destroy(&conf);
                return 3;
        }
        /* Interrupted without a stop signal: the pipeline gave up (out of
         * memory). A supervisor must see a failure, not a clean exit. */
        int fatal = rc != KRIB_PIPELINE_DRAINED && !stop_requested;
        krib_pipeline_destroy(p);
        if (fatal)
                krib_log_error("main", "msg=\"stopped on an internal error (see above); exit 1\"");
        else
                krib_log_info("main", "msg=\"stopped\" drained=%s",
                              rc == KRIB_PIPELINE_DRAINED ? "yes" : "no");
        krib_conf_destroy(&conf);
        return fatal ? 1 : 0;
}
