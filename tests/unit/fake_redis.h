/* A scripted fake Redis node on 127.0.0.1 for writer tests: provokes MOVED,
 * ASK, TRYAGAIN, refusals and dropped connections deterministically. */
#ifndef KRIB_FAKE_REDIS_H
#define KRIB_FAKE_REDIS_H

#include <pthread.h>
#include <stddef.h>

typedef struct fake_redis fake_redis_t;

/* Returns the RESP reply for one request (argv[0..argc)), or NULL to close
 * the connection instead. The string must stay valid until the next call. */
typedef const char *(fake_handler_t)(fake_redis_t *f, int argc, char **argv, size_t *lens);

struct fake_redis {
        int port;
        int listen_fd;
        pthread_t thread;
        fake_handler_t *handler;
        void *opaque;
        int stop;
        /* Every request seen, "CMD arg1 arg2 ...", newline-separated. */
        char log[65536];
        size_t log_len;
        pthread_mutex_t lock;
};

void fake_start(fake_redis_t *f, fake_handler_t *handler, void *opaque);
void fake_stop(fake_redis_t *f);
/* Occurrences of needle in the request log. */
int fake_seen(fake_redis_t *f, const char *needle);

#endif
