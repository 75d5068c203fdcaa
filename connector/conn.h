/* conn: one connection to a Redis node, over TCP or TLS (OpenSSL), speaking
 * RESP through hiredis's protocol layer only.
 *
 * hiredis 0.14 formats commands and parses replies well but does its own
 * socket I/O and has no TLS; krib keeps hiredis's formatter
 * (redisFormatCommandArgv) and reader (redisReader) and does the I/O here,
 * so plain and TLS connections share one code path. The socket is
 * non-blocking throughout. The loop's calls never wait: krib_conn_send
 * writes what the socket takes and keeps the rest (poll for POLLOUT while
 * krib_conn_unsent() > 0), krib_conn_recv takes what has arrived (a TLS
 * record that has only begun to arrive waits for the next call). The
 * synchronous calls (connect with its TLS handshake, krib_conn_command,
 * krib_conn_auth, krib_conn_flush, krib_conn_read) wait in poll() up to one
 * deadline per call, however the peer trickles its bytes: they are for
 * helper threads and control paths.
 *
 * Owned by its user (the writer: one per node; the health poller: its own);
 * not thread-safe.
 */
#ifndef KRIB_CONN_H
#define KRIB_CONN_H

#include <hiredis.h>
#include <stddef.h>
#include <stdint.h>

typedef struct krib_conn krib_conn_t;
typedef struct krib_tls krib_tls_t;

/* TLS client settings; NULL files mean "not set". verify: check the
 * server's certificate chain against ca_file (or the system store) and its
 * name against server_name (or the host connected to). */
typedef struct {
        const char *ca_file, *cert_file, *key_file, *server_name;
        int verify;
} krib_tls_opts_t;

/* A TLS client context shared by all connections; NULL with errstr on a
 * bad file or key. */
krib_tls_t *krib_tls_new(const krib_tls_opts_t *o, char *errstr, size_t errstr_size);

/* What krib_tls_check found wrong: the file that does not load (its key
 * for messages that name the setting), or the context itself. */
typedef enum {
        KRIB_TLS_FILE_NONE,
        KRIB_TLS_FILE_CA,   /* ca_file, or the system store without one */
        KRIB_TLS_FILE_CERT, /* cert_file (or the key inside it) */
        KRIB_TLS_FILE_KEY,  /* key_file */
        KRIB_TLS_FILE_CONTEXT
} krib_tls_file_t;

/* krib_tls_new's verdict on o, naming the file it refuses. */
krib_tls_file_t krib_tls_check(const krib_tls_opts_t *o, char *errstr, size_t errstr_size);
void krib_tls_destroy(krib_tls_t *t);

/* Connects (and handshakes when tls != NULL) within connect_timeout_ms.
 * Returns NULL with errstr on failure. */
krib_conn_t *krib_conn_connect(const char *host, int port, int64_t connect_timeout_ms,
                               int64_t io_timeout_ms, krib_tls_t *tls, char *errstr,
                               size_t errstr_size);

/* AUTH [username] password when password is non-empty (a synchronous
 * command). 0, or -1 with Redis' refusal (or the I/O error) in errstr. */
int krib_conn_auth(krib_conn_t *c, const char *username, const char *password, char *errstr,
                   size_t errstr_size);

/* Queues one command (RESP array of bulk strings); nothing is sent yet. */
int krib_conn_append(krib_conn_t *c, int argc, const char **argv, const size_t *lens);
int krib_conn_append_fmt(krib_conn_t *c, const char *fmt, ...);

/* Sends everything queued, waiting up to the I/O timeout in all. 0, or -1
 * with the connection unusable. */
int krib_conn_flush(krib_conn_t *c);

/* Sends what the socket takes now, without waiting. Returns the bytes still
 * unsent (poll for POLLOUT and call again), or -1 with the connection
 * unusable. */
int64_t krib_conn_send(krib_conn_t *c);

/* Bytes appended and not written yet. */
size_t krib_conn_unsent(const krib_conn_t *c);

/* Reads the next reply (waiting up to the I/O timeout in all). 0 and
 * *out (free with freeReplyObject), or -1 with the connection unusable. */
int krib_conn_read(krib_conn_t *c, redisReply **out);

/* Append + flush + read: a synchronous command. NULL on I/O failure, and
 * (without touching the connection) while earlier pipelined commands still
 * await their replies. */
redisReply *krib_conn_command(krib_conn_t *c, const char *fmt, ...);

/* The socket, for poll(). */
int krib_conn_fd(const krib_conn_t *c);

/* Reads what has arrived, without waiting. Returns the bytes read, 0 when
 * nothing (or only part of a TLS record) was there, -1 with the connection
 * unusable. */
int krib_conn_recv(krib_conn_t *c);

/* The next complete reply among the bytes received so far, without I/O:
 * 1 and *out (free with freeReplyObject), 0 when none is complete yet, -1
 * on a protocol error. */
int krib_conn_reply(krib_conn_t *c, redisReply **out);

/* Commands appended whose replies were not read yet. */
uint64_t krib_conn_inflight(const krib_conn_t *c);

/* Why the connection failed ("" while it is fine). */
const char *krib_conn_errstr(const krib_conn_t *c);

void krib_conn_free(krib_conn_t *c);

#endif
