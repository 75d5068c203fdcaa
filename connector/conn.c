#include "conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"

struct krib_tls {
        SSL_CTX *ctx;
        char *server_name;
        int verify;
};

struct krib_conn {
        int fd;
        SSL *ssl;
        int64_t io_timeout_ms;
        redisReader *reader;
        char *obuf;
        size_t ooff, olen, ocap; /* obuf[ooff, olen): appended, not written yet */
        /* Commands queued or sent whose replies were not read yet: a
         * synchronous command on top of them would read someone else's
         * reply. */
        uint64_t inflight;
        char err[160];
};

static void ssl_err(char *out, size_t size, const char *what) {
        unsigned long e = ERR_get_error();
        char buf[120];
        ERR_error_string_n(e, buf, sizeof(buf));
        snprintf(out, size, "%s: %s", what,
                 e       ? buf
                 : errno ? strerror(errno)
                         : "connection closed by the server");
        ERR_clear_error();
}

/* Loads o's files into ctx; returns which one failed (errstr says why). */
static krib_tls_file_t tls_load(SSL_CTX *ctx, const krib_tls_opts_t *o, char *errstr,
                                size_t errstr_size) {
        if (o->ca_file && *o->ca_file) {
                if (SSL_CTX_load_verify_locations(ctx, o->ca_file, NULL) != 1) {
                        ssl_err(errstr, errstr_size, o->ca_file);
                        return KRIB_TLS_FILE_CA;
                }
        } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
                ssl_err(errstr, errstr_size, "system CA store");
                return KRIB_TLS_FILE_CA;
        }
        if (o->cert_file && *o->cert_file) {
                if (SSL_CTX_use_certificate_chain_file(ctx, o->cert_file) != 1) {
                        ssl_err(errstr, errstr_size, o->cert_file);
                        return KRIB_TLS_FILE_CERT;
                }
                const char *key = o->key_file && *o->key_file ? o->key_file : o->cert_file;
                if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
                    SSL_CTX_check_private_key(ctx) != 1) {
                        ssl_err(errstr, errstr_size, key);
                        return key == o->cert_file ? KRIB_TLS_FILE_CERT : KRIB_TLS_FILE_KEY;
                }
        }
        return KRIB_TLS_FILE_NONE;
}

static krib_tls_t *tls_new(const krib_tls_opts_t *o, krib_tls_file_t *failed, char *errstr,
                           size_t errstr_size) {
        *failed = KRIB_TLS_FILE_NONE;
        krib_tls_t *t = calloc(1, sizeof(*t));
        if (!t || !(t->ctx = SSL_CTX_new(TLS_client_method()))) {
                snprintf(errstr, errstr_size, "cannot create a TLS context");
                free(t);
                return NULL;
        }
        SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
        t->verify = o->verify;
        if (o->server_name && *o->server_name && !(t->server_name = strdup(o->server_name))) {
                snprintf(errstr, errstr_size, "out of memory");
                krib_tls_destroy(t);
                return NULL;
        }
        if ((*failed = tls_load(t->ctx, o, errstr, errstr_size)) != KRIB_TLS_FILE_NONE) {
                krib_tls_destroy(t);
                return NULL;
        }
        SSL_CTX_set_verify(t->ctx, o->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
        return t;
}

krib_tls_t *krib_tls_new(const krib_tls_opts_t *o, char *errstr, size_t errstr_size) {
        krib_tls_file_t failed;
        return tls_new(o, &failed, errstr, errstr_size);
}

krib_tls_file_t krib_tls_check(const krib_tls_opts_t *o, char *errstr, size_t errstr_size) {
        krib_tls_file_t failed;
        krib_tls_t *t = tls_new(o, &failed, errstr, errstr_size);
        if (!t)
                return failed == KRIB_TLS_FILE_NONE ? KRIB_TLS_FILE_CONTEXT : failed;
        krib_tls_destroy(t);
        return KRIB_TLS_FILE_NONE;
}

void krib_tls_destroy(krib_tls_t *t) {
        if (!t)
                return;
        if (t->ctx)
                SSL_CTX_free(t->ctx);
        free(t->server_name);
        free(t);
}

/* Waits for events on the socket until deadline; 1 ready, 0 timeout, -1 error. */
static int wait_fd(int fd, short events, int64_t deadline_us) {
        for (;;) {
                int64_t left = deadline_us - krib_clock_mono_us();
                if (left <= 0)
                        return 0;
                struct pollfd p = {fd, events, 0};
                int r = poll(&p, 1, (int)((left + 999) / 1000));
                if (r < 0 && errno == EINTR)
                        continue;
                return r < 0 ? -1 : r > 0;
        }
}

static int tcp_connect(const char *host, int port, int64_t deadline_us, char *err, size_t size) {
        char ps[16];
        snprintf(ps, sizeof(ps), "%d", port);
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        int rc = getaddrinfo(host, ps, &hints, &res);
        if (rc) {
                snprintf(err, size, "%s: %s", host, gai_strerror(rc));
                return -1;
        }
        int fd = -1;
        snprintf(err, size, "no address for %s", host);
        for (struct addrinfo *a = res; a; a = a->ai_next) {
                fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                            a->ai_protocol);
                if (fd < 0)
                        continue;
                if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
                        break;
                if (errno == EINPROGRESS) {
                        int ready = wait_fd(fd, POLLOUT, deadline_us);
                        int soerr = 0;
                        socklen_t l = sizeof(soerr);
                        if (ready > 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &l) == 0 &&
                            soerr == 0)
                                break;
                        snprintf(err, size, "%s",
                                 ready == 0 ? "Connection timed out"
                                            : strerror(soerr ? soerr : errno));
                } else {
                        snprintf(err, size, "%s", strerror(errno));
                }
                close(fd);
                fd = -1;
        }
        freeaddrinfo(res);
        if (fd >= 0) {
                int one = 1;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
        return fd;
}

static int tls_handshake(krib_conn_t *c, krib_tls_t *t, const char *host, int64_t deadline_us) {
        if (!(c->ssl = SSL_new(t->ctx)) || SSL_set_fd(c->ssl, c->fd) != 1) {
                ssl_err(c->err, sizeof(c->err), "TLS");
                return -1;
        }
        /* The socket stays non-blocking: a write may take part of the
         * buffer, and is retried from a buffer that may have moved (grown). */
        SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        const char *name = t->server_name ? t->server_name : host;
        unsigned char ip[16];
        int is_ip = inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1;
        if (!is_ip)
                SSL_set_tlsext_host_name(c->ssl, name);
        if (t->verify) {
                X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
                if (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, name) != 1
                          : SSL_set1_host(c->ssl, name) != 1) {
                        ssl_err(c->err, sizeof(c->err), "TLS server name");
                        return -1;
                }
        }
        for (;;) {
                int r = SSL_connect(c->ssl);
                if (r == 1)
                        return 0;
                int e = SSL_get_error(c->ssl, r);
                short ev = e == SSL_ERROR_WANT_READ    ? POLLIN
                           : e == SSL_ERROR_WANT_WRITE ? POLLOUT
                                                       : 0;
                if (!ev) {
                        long v = SSL_get_verify_result(c->ssl);
                        if (v != X509_V_OK)
                                snprintf(c->err, sizeof(c->err), "TLS handshake: %s",
                                         X509_verify_cert_error_string(v));
                        else
                                ssl_err(c->err, sizeof(c->err), "TLS handshake");
                        return -1;
                }
                if (wait_fd(c->fd, ev, deadline_us) <= 0) {
                        snprintf(c->err, sizeof(c->err), "TLS handshake timed out");
                        return -1;
                }
        }
}

krib_conn_t *krib_conn_connect(const char *host, int port, int64_t connect_timeout_ms,
                               int64_t io_timeout_ms, krib_tls_t *tls, char *errstr,
                               size_t errstr_size) {
        krib_conn_t *c = calloc(1, sizeof(*c));
        if (!c || !(c->reader = redisReaderCreate())) {
                snprintf(errstr, errstr_size, "out of memory");
                free(c);
                return NULL;
        }
        c->io_timeout_ms = io_timeout_ms;
        int64_t deadline = krib_clock_mono_us() + connect_timeout_ms * 1000;
        c->fd = tcp_connect(host, port, deadline, errstr, errstr_size);
        if (c->fd < 0) {
                krib_conn_free(c);
                return NULL;
        }
        if (tls && tls_handshake(c, tls, host, deadline)) {
                snprintf(errstr, errstr_size, "%s", c->err);
                krib_conn_free(c);
                return NULL;
        }
        /* The socket stays non-blocking: the loop's I/O never waits
         * (krib_conn_send, krib_conn_recv), and the synchronous calls wait
         * in poll() up to one deadline per call. */
        return c;
}

static int grow_obuf(krib_conn_t *c, size_t more) {
        if (c->ooff && c->olen + more > c->ocap) {
                memmove(c->obuf, c->obuf + c->ooff, c->olen - c->ooff);
                c->olen -= c->ooff;
                c->ooff = 0;
        }
        if (c->olen + more <= c->ocap)
                return 0;
        size_t cap = c->ocap ? c->ocap : 16384;
        while (cap < c->olen + more)
                cap *= 2;
        char *b = realloc(c->obuf, cap);
        if (!b)
                return -1;
        c->obuf = b;
        c->ocap = cap;
        return 0;
}

static int append_raw(krib_conn_t *c, char *cmd, int len) {
        if (len < 0 || !cmd || grow_obuf(c, (size_t)len)) {
                free(cmd);
                snprintf(c->err, sizeof(c->err), "out of memory");
                return -1;
        }
        memcpy(c->obuf + c->olen, cmd, (size_t)len);
        c->olen += (size_t)len;
        c->inflight++;
        free(cmd); /* hiredis 0.14 formats into malloc()ed memory */
        return 0;
}

/* Writes n in decimal and CRLF at p; returns the end. (snprintf was a few
 * per cent of the hot path.) */
static char *put_dec(char *p, size_t n) {
        char tmp[24];
        int k = 0;
        do
                tmp[k++] = (char)('0' + n % 10);
        while ((n /= 10) != 0);
        while (k)
                *p++ = tmp[--k];
        *p++ = '\r';
        *p++ = '\n';
        return p;
}

/* RESP array of bulk strings, written straight into the output buffer (the
 * hot path: one command per slot chunk, no allocation per command). */
int krib_conn_append(krib_conn_t *c, int argc, const char **argv, const size_t *lens) {
        size_t need = 16;
        for (int i = 0; i < argc; i++)
                need += lens[i] + 32; /* "$" len CRLF data CRLF */
        if (grow_obuf(c, need)) {
                snprintf(c->err, sizeof(c->err), "out of memory");
                return -1;
        }
        char *p = c->obuf + c->olen;
        *p++ = '*';
        p = put_dec(p, (size_t)argc);
        for (int i = 0; i < argc; i++) {
                *p++ = '$';
                p = put_dec(p, lens[i]);
                memcpy(p, argv[i], lens[i]);
                p += lens[i];
                *p++ = '\r';
                *p++ = '\n';
        }
        c->olen = (size_t)(p - c->obuf);
        c->inflight++;
        return 0;
}

static int append_v(krib_conn_t *c, const char *fmt, va_list ap) {
        char *cmd = NULL;
        int len = redisvFormatCommand(&cmd, fmt, ap);
        return append_raw(c, cmd, len);
}

int krib_conn_append_fmt(krib_conn_t *c, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        int rc = append_v(c, fmt, ap);
        va_end(ap);
        return rc;
}

static void io_error(krib_conn_t *c, const char *what, int e) {
        if (!c->err[0])
                snprintf(c->err, sizeof(c->err), "%s: %s", what, e ? strerror(e) : "failed");
}

/* A TLS write or read failed with a reset or a bare syscall error. Under
 * TLS 1.3 a server that refuses the client (no certificate, say) sends its
 * alert after the handshake and closes: the alert may sit unread in the
 * socket. Read once more (waiting 20 ms at most) so the log names the real
 * cause instead of "Connection reset by peer". */
static void tls_failure(krib_conn_t *c, const char *what) {
        ssl_err(c->err, sizeof(c->err), what);
        char scratch[512];
        ERR_clear_error();
        wait_fd(c->fd, POLLIN, krib_clock_mono_us() + 20000);
        if (SSL_read(c->ssl, scratch, sizeof(scratch)) > 0)
                return;
        unsigned long e = ERR_get_error();
        if (e) {
                char buf[120];
                ERR_error_string_n(e, buf, sizeof(buf));
                if (strstr(buf, "alert"))
                        snprintf(c->err, sizeof(c->err), "%s: %s", what, buf);
        }
        ERR_clear_error();
}

/* Writes what it can of the pending output without waiting: 1 all
 * written, 0 the socket would block (*want: what to poll for), -1 failed. */
static int write_some(krib_conn_t *c, short *want) {
        while (c->ooff < c->olen) {
                ssize_t n;
                if (c->ssl) {
                        int r = SSL_write(c->ssl, c->obuf + c->ooff, (int)(c->olen - c->ooff));
                        if (r <= 0) {
                                int e = SSL_get_error(c->ssl, r);
                                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                                        *want = e == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN;
                                        return 0;
                                }
                                if (e == SSL_ERROR_SYSCALL)
                                        tls_failure(c, "TLS write");
                                else
                                        ssl_err(c->err, sizeof(c->err), "TLS write");
                                return -1;
                        }
                        n = r;
                } else {
                        n = send(c->fd, c->obuf + c->ooff, c->olen - c->ooff,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                                *want = POLLOUT;
                                return 0;
                        }
                        if (n < 0) {
                                io_error(c, "write", errno);
                                return -1;
                        }
                }
                c->ooff += (size_t)n;
        }
        c->ooff = c->olen = 0;
        return 1;
}

static int flush_until(krib_conn_t *c, int64_t deadline_us) {
        for (;;) {
                short want = POLLOUT;
                int r = write_some(c, &want);
                if (r)
                        return r > 0 ? 0 : -1;
                int ready = wait_fd(c->fd, want, deadline_us);
                if (ready <= 0) {
                        if (ready == 0)
                                snprintf(c->err, sizeof(c->err), "write timed out");
                        else
                                io_error(c, "poll", errno);
                        return -1;
                }
        }
}

int krib_conn_flush(krib_conn_t *c) {
        return flush_until(c, krib_clock_mono_us() + c->io_timeout_ms * 1000);
}

int64_t krib_conn_send(krib_conn_t *c) {
        short want = POLLOUT;
        if (write_some(c, &want) < 0)
                return -1;
        return (int64_t)(c->olen - c->ooff);
}

size_t krib_conn_unsent(const krib_conn_t *c) {
        return c->olen - c->ooff;
}

/* One read into the reply parser. deadline_us 0: take only what has
 * arrived (0 when nothing had; a TLS record that has only started to arrive
 * waits for the next call); else wait in poll() until something arrives or
 * the deadline passes ("read timed out"). Returns the bytes read, 0, or -1
 * with the connection unusable. */
static int read_some(krib_conn_t *c, int64_t deadline_us) {
        char buf[65536];
        for (;;) {
                ssize_t n;
                short want = POLLIN;
                if (c->ssl) {
                        int k = SSL_read(c->ssl, buf, sizeof(buf));
                        if (k > 0) {
                                n = k;
                        } else {
                                int e = SSL_get_error(c->ssl, k);
                                if (e == SSL_ERROR_ZERO_RETURN) {
                                        snprintf(c->err, sizeof(c->err),
                                                 "Server closed the connection");
                                        return -1;
                                }
                                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                                        if (e == SSL_ERROR_SYSCALL)
                                                tls_failure(c, "TLS read");
                                        else
                                                ssl_err(c->err, sizeof(c->err), "TLS read");
                                        return -1;
                                }
                                want = e == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN;
                                n = -1;
                        }
                } else {
                        do
                                n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
                        while (n < 0 && errno == EINTR);
                        if (n == 0) {
                                snprintf(c->err, sizeof(c->err), "Server closed the connection");
                                return -1;
                        }
                        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
                                io_error(c, "read", errno);
                                return -1;
                        }
                }
                if (n > 0) {
                        if (redisReaderFeed(c->reader, buf, (size_t)n) != REDIS_OK) {
                                snprintf(c->err, sizeof(c->err), "protocol error");
                                return -1;
                        }
                        return (int)n;
                }
                if (!deadline_us)
                        return 0;
                int ready = wait_fd(c->fd, want, deadline_us);
                if (ready <= 0) {
                        if (ready == 0)
                                snprintf(c->err, sizeof(c->err), "read timed out");
                        else
                                io_error(c, "poll", errno);
                        return -1;
                }
        }
}

static int read_until(krib_conn_t *c, redisReply **out, int64_t deadline_us) {
        for (;;) {
                int got = krib_conn_reply(c, out);
                if (got)
                        return got > 0 ? 0 : -1;
                if (read_some(c, deadline_us) < 0)
                        return -1;
        }
}

int krib_conn_read(krib_conn_t *c, redisReply **out) {
        return read_until(c, out, krib_clock_mono_us() + c->io_timeout_ms * 1000);
}

redisReply *krib_conn_command(krib_conn_t *c, const char *fmt, ...) {
        if (c->inflight) {
                /* A caller bug, refused rather than answered with the reply of
                 * an earlier pipelined command. */
                snprintf(c->err, sizeof(c->err), "command issued with %" PRIu64 " replies pending",
                         c->inflight);
                return NULL;
        }
        va_list ap;
        va_start(ap, fmt);
        int rc = append_v(c, fmt, ap);
        va_end(ap);
        /* One deadline for the whole command: a peer that trickles bytes
         * cannot stretch it. */
        int64_t deadline = krib_clock_mono_us() + c->io_timeout_ms * 1000;
        redisReply *r = NULL;
        if (rc || flush_until(c, deadline) || read_until(c, &r, deadline))
                return NULL;
        return r;
}

int krib_conn_fd(const krib_conn_t *c) {
        return c->fd;
}

int krib_conn_recv(krib_conn_t *c) {
        return read_some(c, 0);
}

int krib_conn_reply(krib_conn_t *c, redisReply **out) {
        void *r = NULL;
        if (redisReaderGetReply(c->reader, &r) != REDIS_OK) {
                snprintf(c->err, sizeof(c->err), "protocol error: %s", c->reader->errstr);
                return -1;
        }
        if (!r)
                return 0;
        *out = r;
        if (c->inflight)
                c->inflight--;
        return 1;
}

uint64_t krib_conn_inflight(const krib_conn_t *c) {
        return c->inflight;
}

const char *krib_conn_errstr(const krib_conn_t *c) {
        return c->err;
}

void krib_conn_free(krib_conn_t *c) {
        if (!c)
                return;
        if (c->ssl) {
                SSL_shutdown(c->ssl); /* best effort close_notify; never waits */
                SSL_free(c->ssl);
        }
        if (c->fd >= 0)
                close(c->fd);
        if (c->reader)
                redisReaderFree(c->reader);
        free(c->obuf);
        free(c);
}

int krib_conn_auth(krib_conn_t *c, const char *username, const char *password, char *errstr,
                   size_t errstr_size) {
        if (!password || !*password)
                return 0;
        redisReply *r = username && *username
                                ? krib_conn_command(c, "AUTH %s %s", username, password)
                                : krib_conn_command(c, "AUTH %s", password);
        int ok = r && r->type == REDIS_REPLY_STATUS;
        if (!ok)
                snprintf(errstr, errstr_size, "%s",
                         r && r->type == REDIS_REPLY_ERROR ? r->str : krib_conn_errstr(c));
        if (r)
                freeReplyObject(r);
        return ok ? 0 : -1;
}
