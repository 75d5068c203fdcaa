/* conn against a raw socket the test drives byte by byte: the loop's calls
 * (krib_conn_send, krib_conn_recv, krib_conn_reply) never wait, whatever the
 * peer does; the synchronous ones wait one deadline per call, however the
 * peer trickles. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_main.h"
#include "clock.h"
#include "conn.h"

static int lfd = -1, port, srv = -1;
static krib_conn_t *c;

/* A listening socket below the ephemeral range, a client connected to it
 * (io timeout io_ms), and the server's end accepted. */
static void open_pair(int64_t io_ms, krib_tls_t *tls, int accept_now) {
        lfd = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        struct sockaddr_in a = {0};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        for (port = 29520; port < 29600; port++) {
                a.sin_port = htons((uint16_t)port);
                if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) == 0)
                        break;
        }
        ck_assert_int_lt(port, 29600);
        ck_assert_int_eq(listen(lfd, 4), 0);
        if (!accept_now)
                return;
        char err[256];
        c = krib_conn_connect("127.0.0.1", port, 1000, io_ms, tls, err, sizeof(err));
        ck_assert_msg(c != NULL, "%s", err);
        srv = accept(lfd, NULL, NULL);
        ck_assert_int_ge(srv, 0);
}

static void close_pair(void) {
        krib_conn_free(c);
        c = NULL;
        if (srv >= 0)
                close(srv);
        close(lfd);
        srv = lfd = -1;
}

static int64_t since_us(int64_t t0) {
        return krib_clock_mono_us() - t0;
}

/* A peer that reads nothing: the socket fills, krib_conn_send returns at
 * once with bytes unsent (POLLOUT), and finishes once the peer reads. */
START_TEST(send_never_waits_for_a_peer_that_does_not_read) {
        open_pair(2000, NULL, 1);
        static char value[65536];
        memset(value, 'x', sizeof(value));
        const char *argv[] = {"SET", "k", value};
        size_t lens[] = {3, 1, sizeof(value)};
        for (int i = 0; i < 256; i++) /* 16 MB: far more than socket buffers hold */
                ck_assert_int_eq(krib_conn_append(c, 3, argv, lens), 0);
        int64_t t0 = krib_clock_mono_us();
        int64_t left = krib_conn_send(c);
        ck_assert_int_gt(left, 0);
        ck_assert_uint_eq(krib_conn_unsent(c), (size_t)left);
        ck_assert_int_lt(since_us(t0), 50000);
        /* The peer reads; the loop sends on POLLOUT until nothing is left. */
        char sink[65536];
        for (int i = 0; i < 100000 && krib_conn_unsent(c); i++) {
                struct pollfd p = {krib_conn_fd(c), POLLOUT, 0};
                poll(&p, 1, 0);
                t0 = krib_clock_mono_us();
                ck_assert_int_ge(krib_conn_send(c), 0);
                ck_assert_int_lt(since_us(t0), 50000);
                ssize_t n = recv(srv, sink, sizeof(sink), MSG_DONTWAIT);
                (void)n;
        }
        ck_assert_uint_eq(krib_conn_unsent(c), 0);
        close_pair();
}
END_TEST

/* A reply arriving a byte at a time is assembled; no call waits. */
START_TEST(byte_by_byte_reply_is_assembled_without_waiting) {
        open_pair(2000, NULL, 1);
        ck_assert_int_eq(krib_conn_append_fmt(c, "GET k"), 0);
        ck_assert_int_eq(krib_conn_send(c), 0);
        const char *resp = "$11\r\nhello world\r\n";
        redisReply *r = NULL;
        for (size_t i = 0; resp[i]; i++) {
                ck_assert_int_eq(krib_conn_reply(c, &r), 0);
                ck_assert_int_eq(send(srv, resp + i, 1, 0), 1);
                usleep(2000);
                int64_t t0 = krib_clock_mono_us();
                ck_assert_int_ge(krib_conn_recv(c), 0);
                ck_assert_int_lt(since_us(t0), 20000);
        }
        ck_assert_int_eq(krib_conn_reply(c, &r), 1);
        ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
        ck_assert_str_eq(r->str, "hello world");
        freeReplyObject(r);
        ck_assert_uint_eq(krib_conn_inflight(c), 0);
        close_pair();
}
END_TEST

/* Stalled mid-reply: recv returns at once with the reply incomplete; the
 * synchronous read gives up at its deadline. */
START_TEST(stall_mid_reply_never_holds_recv) {
        open_pair(300, NULL, 1);
        ck_assert_int_eq(krib_conn_append_fmt(c, "GET k"), 0);
        ck_assert_int_eq(krib_conn_send(c), 0);
        ck_assert_int_eq(send(srv, "$10\r\nabc", 8, 0), 8);
        usleep(10000);
        int64_t t0 = krib_clock_mono_us();
        ck_assert_int_gt(krib_conn_recv(c), 0);
        redisReply *r = NULL;
        ck_assert_int_eq(krib_conn_reply(c, &r), 0);
        ck_assert_int_eq(krib_conn_recv(c), 0); /* nothing more: no wait */
        ck_assert_int_lt(since_us(t0), 20000);
        t0 = krib_clock_mono_us();
        ck_assert_int_eq(krib_conn_read(c, &r), -1);
        int64_t took = since_us(t0);
        ck_assert_msg(took >= 250000 && took < 800000, "read gave up after %lld us",
                      (long long)took);
        ck_assert_str_eq(krib_conn_errstr(c), "read timed out");
        close_pair();
}
END_TEST

/* A peer that trickles a byte every 50 ms cannot stretch a synchronous
 * command past its one deadline. */
START_TEST(trickle_cannot_stretch_a_command) {
        open_pair(300, NULL, 1);
        int pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                char req[64];
                ssize_t n = recv(srv, req, sizeof(req), 0);
                (void)n;
                const char *resp = "$40\r\n0123456789012345678901234567890123456789\r\n";
                for (size_t i = 0; resp[i]; i++) {
                        if (send(srv, resp + i, 1, MSG_NOSIGNAL) != 1)
                                break;
                        usleep(50000);
                }
                _exit(0);
        }
        int64_t t0 = krib_clock_mono_us();
        redisReply *r = krib_conn_command(c, "SCRIPT LOAD x");
        int64_t took = since_us(t0);
        ck_assert_ptr_null(r);
        ck_assert_msg(took >= 250000 && took < 800000, "the command took %lld us", (long long)took);
        close_pair();
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
}
END_TEST

/* Closed mid-reply: recv reports the connection unusable. */
START_TEST(close_mid_reply_fails_the_connection) {
        open_pair(2000, NULL, 1);
        ck_assert_int_eq(krib_conn_append_fmt(c, "GET k"), 0);
        ck_assert_int_eq(krib_conn_send(c), 0);
        char req[64];
        usleep(10000);
        ck_assert_int_gt(recv(srv, req, sizeof(req), MSG_DONTWAIT), 0); /* a clean close */
        ck_assert_int_eq(send(srv, "$5\r\nab", 6, 0), 6);
        close(srv);
        srv = -1;
        usleep(10000);
        int rc = krib_conn_recv(c);
        if (rc > 0)
                rc = krib_conn_recv(c);
        ck_assert_int_eq(rc, -1);
        ck_assert_str_eq(krib_conn_errstr(c), "Server closed the connection");
        close_pair();
}
END_TEST

/* AUTH refused: the refusal is the error, the connection still usable. */
START_TEST(refused_auth_names_the_refusal) {
        open_pair(2000, NULL, 1);
        int pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
                char req[256];
                ssize_t n = recv(srv, req, sizeof(req), 0);
                (void)n;
                const char *resp =
                        "-WRONGPASS invalid username-password pair or user is disabled.\r\n";
                ssize_t w = send(srv, resp, strlen(resp), MSG_NOSIGNAL);
                (void)w;
                _exit(0);
        }
        char err[256];
        ck_assert_int_eq(krib_conn_auth(c, "krib", "secret", err, sizeof(err)), -1);
        ck_assert_msg(strstr(err, "WRONGPASS") && !strstr(err, "secret"), "%s", err);
        waitpid(pid, NULL, 0);
        close_pair();
}
END_TEST

/* A TLS server that accepts and never answers the ClientHello: connecting
 * gives up at the connect deadline (it runs on cluster.c's helper threads,
 * never on the loop). */
START_TEST(stalled_tls_handshake_gives_up_at_the_deadline) {
        open_pair(2000, NULL, 0);
        krib_tls_opts_t o = {NULL, NULL, NULL, NULL, 0};
        char err[256];
        krib_tls_t *tls = krib_tls_new(&o, err, sizeof(err));
        ck_assert_msg(tls != NULL, "%s", err);
        int64_t t0 = krib_clock_mono_us();
        krib_conn_t *x = krib_conn_connect("127.0.0.1", port, 300, 2000, tls, err, sizeof(err));
        int64_t took = since_us(t0);
        ck_assert_ptr_null(x);
        ck_assert_msg(strstr(err, "TLS handshake timed out"), "%s", err);
        ck_assert_msg(took >= 250000 && took < 800000, "gave up after %lld us", (long long)took);
        krib_tls_destroy(tls);
        close_pair();
}
END_TEST

Suite *make_suite(void) {
        Suite *s = suite_create("conn");
        TCase *tc = tcase_create("conn");
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, send_never_waits_for_a_peer_that_does_not_read);
        tcase_add_test(tc, byte_by_byte_reply_is_assembled_without_waiting);
        tcase_add_test(tc, stall_mid_reply_never_holds_recv);
        tcase_add_test(tc, trickle_cannot_stretch_a_command);
        tcase_add_test(tc, close_mid_reply_fails_the_connection);
        tcase_add_test(tc, refused_auth_names_the_refusal);
        tcase_add_test(tc, stalled_tls_handshake_gives_up_at_the_deadline);
        suite_add_tcase(s, tc);
        return s;
}
