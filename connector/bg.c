#include "bg.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

struct krib_bg {
        int inline_mode;
        int wake[2];
        pthread_mutex_t lock;
        pthread_cond_t cond;
        krib_bg_job_t *done; /* finished, newest first (under the lock) */
        size_t pending;      /* the loop's */
        size_t finishing;    /* under the lock: threads still to link themselves */
};

static void finished(krib_bg_t *b, krib_bg_job_t *j) {
        pthread_mutex_lock(&b->lock);
        j->next_done = b->done;
        b->done = j;
        b->finishing--;
        pthread_cond_broadcast(&b->cond);
        pthread_mutex_unlock(&b->lock);
        char c = 1;
        ssize_t w = write(b->wake[1], &c, 1);
        (void)w; /* a full pipe wakes the loop already */
}

typedef struct {
        krib_bg_t *b;
        krib_bg_job_t *j;
} start_t;

static void *thread_main(void *arg) {
        start_t s = *(start_t *)arg;
        free(arg);
        s.j->run(s.j);
        finished(s.b, s.j);
        return NULL;
}

krib_bg_t *krib_bg_new(int inline_mode) {
        krib_bg_t *b = calloc(1, sizeof(*b));
        if (!b)
                return NULL;
        b->inline_mode = inline_mode;
        if (pipe2(b->wake, O_NONBLOCK | O_CLOEXEC)) {
                free(b);
                return NULL;
        }
        pthread_mutex_init(&b->lock, NULL);
        pthread_cond_init(&b->cond, NULL);
        return b;
}

void krib_bg_wait_all(krib_bg_t *b) {
        pthread_mutex_lock(&b->lock);
        while (b->finishing)
                pthread_cond_wait(&b->cond, &b->lock);
        pthread_mutex_unlock(&b->lock);
}

void krib_bg_destroy(krib_bg_t *b) {
        if (!b)
                return;
        krib_bg_wait_all(b);
        krib_bg_job_t *j;
        while ((j = krib_bg_take(b))) /* joins the threads; the records are the caller's */
                ;
        close(b->wake[0]);
        close(b->wake[1]);
        pthread_cond_destroy(&b->cond);
        pthread_mutex_destroy(&b->lock);
        free(b);
}

int krib_bg_start(krib_bg_t *b, krib_bg_job_t *j) {
        j->next_done = NULL;
        j->threaded = 0;
        pthread_mutex_lock(&b->lock);
        b->finishing++;
        pthread_mutex_unlock(&b->lock);
        b->pending++;
        if (b->inline_mode) {
                j->run(j);
                finished(b, j);
                return 0;
        }
        start_t *s = malloc(sizeof(*s));
        if (s) {
                *s = (start_t){b, j};
                if (pthread_create(&j->thread, NULL, thread_main, s) == 0) {
                        j->threaded = 1;
                        return 0;
                }
                free(s);
        }
        pthread_mutex_lock(&b->lock);
        b->finishing--;
        pthread_mutex_unlock(&b->lock);
        b->pending--;
        return -1;
}

krib_bg_job_t *krib_bg_take(krib_bg_t *b) {
        /* Drained before looking: a job linked after the look writes its
         * byte after, so poll() still wakes for it. */
        char buf[64];
        while (read(b->wake[0], buf, sizeof(buf)) > 0)
                ;
        pthread_mutex_lock(&b->lock);
        krib_bg_job_t *j = b->done;
        if (j)
                b->done = j->next_done;
        pthread_mutex_unlock(&b->lock);
        if (!j)
                return NULL;
        if (j->threaded)
                pthread_join(j->thread, NULL);
        b->pending--;
        return j;
}

size_t krib_bg_pending(const krib_bg_t *b) {
        return b->pending;
}

int krib_bg_ready(krib_bg_t *b) {
        pthread_mutex_lock(&b->lock);
        int r = b->done != NULL;
        pthread_mutex_unlock(&b->lock);
        return r;
}

int krib_bg_wake_fd(const krib_bg_t *b) {
        return b->wake[0];
}
