#include "fake_redis.h"

#include <arpa/inet.h>
#include <hiredis.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Serves what fd has sent; returns -1 when the connection should close. */
static int serve(fake_redis_t *f, int fd, redisReader *rd) {
        char buf[16384];
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n <= 0)
                return -1;
        redisReaderFeed(rd, buf, (size_t)n);
        void *req;
        while (redisReaderGetReply(rd, &req) == REDIS_OK && req) {
                redisReply *r = req;
                char *argv[512];
                size_t lens[512];
                int argc = 0;
                pthread_mutex_lock(&f->lock);
                for (size_t i = 0; i < r->elements && argc < 512; i++, argc++) {
                        argv[argc] = r->element[i]->str;
                        lens[argc] = r->element[i]->len;
                        int w = snprintf(f->log + f->log_len, sizeof(f->log) - f->log_len, "%s%.*s",
                                         i ? " " : "", (int)lens[argc], argv[argc]);
                        if (w > 0 && f->log_len + (size_t)w < sizeof(f->log))
                                f->log_len += (size_t)w;
                }
                if (f->log_len + 1 < sizeof(f->log))
                        f->log[f->log_len++] = '\n';
                f->log[f->log_len] = '\0';
                pthread_mutex_unlock(&f->lock);
                const char *reply = f->handler(f, argc, argv, lens);
                freeReplyObject(r);
                if (!reply || write(fd, reply, strlen(reply)) < 0)
                        return -1;
        }
        return 0;
}

/* Several clients at once (the writer keeps a data and a control
 * connection per node); requests are handled one at a time. */
#define FAKE_CLIENTS 16
static void *loop(void *arg) {
        fake_redis_t *f = arg;
        struct pollfd p[FAKE_CLIENTS + 1];
        redisReader *rd[FAKE_CLIENTS + 1] = {0};
        int n = 1;
        p[0] = (struct pollfd){f->listen_fd, POLLIN, 0};
        while (!f->stop) {
                if (poll(p, (nfds_t)n, 50) <= 0)
                        continue;
                for (int i = n - 1; i >= 1; i--) {
                        if (!p[i].revents)
                                continue;
                        if (serve(f, p[i].fd, rd[i]) < 0) {
                                close(p[i].fd);
                                redisReaderFree(rd[i]);
                                p[i] = p[n - 1];
                                rd[i] = rd[n - 1];
                                n--;
                        }
                }
                if (p[0].revents && n <= FAKE_CLIENTS) {
                        int fd = accept(f->listen_fd, NULL, NULL);
                        if (fd >= 0) {
                                p[n] = (struct pollfd){fd, POLLIN, 0};
                                rd[n++] = redisReaderCreate();
                        }
                }
        }
        for (int i = 1; i < n; i++) {
                close(p[i].fd);
                redisReaderFree(rd[i]);
        }
        return NULL;
}

void fake_start(fake_redis_t *f, fake_handler_t *handler, void *opaque) {
        memset(f, 0, sizeof(*f));
        pthread_mutex_init(&f->lock, NULL);
        f->handler = handler;
        f->opaque = opaque;
        f->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {0};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        /* A free port below the ephemeral range (32768+), where no
         * connection's local port can take it. */
        int one = 1;
        setsockopt(f->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        for (int p = 29600; p < 30000; p++) {
                a.sin_port = htons((uint16_t)p);
                if (bind(f->listen_fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
                        f->port = p;
                        break;
                }
        }
        listen(f->listen_fd, 8);
        pthread_create(&f->thread, NULL, loop, f);
}

void fake_stop(fake_redis_t *f) {
        f->stop = 1;
        pthread_join(f->thread, NULL);
        close(f->listen_fd);
        pthread_mutex_destroy(&f->lock);
}

int fake_seen(fake_redis_t *f, const char *needle) {
        pthread_mutex_lock(&f->lock);
        int n = 0;
        for (const char *p = f->log; (p = strstr(p, needle)); p += strlen(needle))
                n++;
        pthread_mutex_unlock(&f->lock);
        return n;
}
