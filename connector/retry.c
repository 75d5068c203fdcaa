#include "retry.h"

#include <string.h>

void krib_retry_policies_default(krib_retry_policies_t *p) {
        memset(p, 0, sizeof(*p));
        /* A dead node answers nothing: few tries, then the breaker probes. */
        p->cls[KRIB_ERR_CONN] = (krib_retry_policy_t){10000, 1000000, 0, 3};
        /* A failover answers CLUSTERDOWN/TRYAGAIN for a few node timeouts. */
        p->cls[KRIB_ERR_BUSY] = (krib_retry_policy_t){10000, 1000000, 0, 20};
        /* A slot being migrated redirects keys every round for a while. */
        p->cls[KRIB_ERR_REDIRECT] = (krib_retry_policy_t){1000, 200000, 8, 64};
        /* A full Redis stays full until someone frees memory: open at once. */
        p->cls[KRIB_ERR_OOM] = (krib_retry_policy_t){100000, 2000000, 0, 1};
        p->cls[KRIB_ERR_AUTH] = (krib_retry_policy_t){100000, 2000000, 0, 3};
        p->open_base_us = 500000;
        p->open_cap_us = 10000000;
}

static int starts(const char *s, size_t len, const char *word) {
        size_t n = strlen(word);
        return len >= n && !memcmp(s, word, n) && (len == n || s[n] == ' ');
}

krib_err_class_t krib_retry_classify(const char *err, size_t len) {
        static const char *const busy[] = {"TRYAGAIN", "CLUSTERDOWN", "LOADING", "MASTERDOWN",
                                           "BUSY",     "READONLY",    "NOSCRIPT"};
        for (size_t i = 0; i < sizeof(busy) / sizeof(*busy); i++)
                if (starts(err, len, busy[i]))
                        return KRIB_ERR_BUSY;
        if (starts(err, len, "MOVED") || starts(err, len, "ASK"))
                return KRIB_ERR_REDIRECT;
        /* Inside a script the reply reads "OOM command not allowed ... script: ..." too. */
        if (starts(err, len, "OOM"))
                return KRIB_ERR_OOM;
        if (starts(err, len, "NOAUTH") || starts(err, len, "WRONGPASS"))
                return KRIB_ERR_AUTH;
        return KRIB_ERR_FINAL;
}

const char *krib_retry_class_name(krib_err_class_t c) {
        static const char *const names[] = {"conn", "busy", "redirect", "oom", "auth"};
        return c >= 0 && c < KRIB_ERR_CLASSES ? names[c] : "final";
}

int64_t krib_retry_backoff_us(unsigned attempt, int64_t base_us, int64_t cap_us, uint64_t rnd) {
        int64_t ceil = base_us;
        for (unsigned i = 0; i < attempt && ceil < cap_us; i++)
                ceil *= 2;
        if (ceil > cap_us)
                ceil = cap_us;
        if (ceil <= 0)
                return 0;
        return (int64_t)(rnd % (uint64_t)(ceil + 1));
}

int64_t krib_retry_delay_us(const krib_retry_policies_t *p, krib_err_class_t c, unsigned attempt,
                            uint64_t rnd) {
        if (c < 0 || c >= KRIB_ERR_CLASSES)
                return 0;
        const krib_retry_policy_t *k = &p->cls[c];
        if (attempt < k->free)
                return 0;
        return krib_retry_backoff_us(attempt - k->free, k->base_us, k->cap_us, rnd);
}

uint64_t krib_retry_rand(uint64_t *state) {
        uint64_t x = *state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *state = x;
        return x * 0x2545F4914F6CDD1DULL;
}
