#include "consistency.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reorder.h"

int krib_consistency_parse_fence(const char *text, size_t len, krib_vv_entry_t *out, size_t max) {
        if (len >= 2 && text[0] == 'L' && text[1] == ':')
                return 0;
        size_t n = 0;
        for (const char *p = text, *end = text + len; p < end;) {
                const char *eol = memchr(p, '\n', (size_t)(end - p));
                const char *le = eol ? eol : end;
                const char *eq = memchr(p, '=', (size_t)(le - p));
                if (le == p) { /* an empty line (the trailing newline) */
                        p = le + 1;
                        continue;
                }
                if (!eq || eq == p || eq + 1 == le || n == max || le - eq - 1 > 19)
                        return -1;
                int64_t c = 0;
                for (const char *d = eq + 1; d < le; d++) {
                        if (*d < '0' || *d > '9')
                                return -1;
                        c = c * 10 + (*d - '0');
                }
                out[n].origin.s = p;
                out[n].origin.len = (size_t)(eq - p);
                out[n].counter = c;
                n++;
                p = eol ? eol + 1 : end;
        }
        return (int)n;
}

static void vv_text(const krib_vv_entry_t *v, size_t n, char *out, size_t size) {
        size_t k = 0;
        out[0] = '\0';
        for (size_t i = 0; i < n && k < size; i++) {
                int w = snprintf(out + k, size - k, "%s%.*s=%lld", i ? "," : "",
                                 (int)v[i].origin.len, v[i].origin.s, (long long)v[i].counter);
                if (w < 0)
                        break;
                k += (size_t)w;
        }
}

krib_check_verdict_t krib_consistency_judge(krib_action_t action, const krib_vv_entry_t *v,
                                            size_t n, const krib_check_state_t *st,
                                            int guarded_fills, char *why, size_t why_size) {
        (void)action; /* the same rule serves both: see consistency.h */
        if (!st->present) {
                snprintf(why, why_size, "absent");
                return KRIB_CHECK_FRESH;
        }
        krib_vv_entry_t known[64];
        int nk = st->fence ? krib_consistency_parse_fence(st->fence, st->fence_len, known, 64) : 0;
        if (nk <= 0) {
                snprintf(why, why_size, "present, no known version%s",
                         !st->fence ? ""
                         : nk == 0  ? " (a fill's lease)"
                                    : " (unreadable fence)");
                if (!n)
                        return KRIB_CHECK_UNVERIFIABLE;
                return guarded_fills ? KRIB_CHECK_STALE : KRIB_CHECK_UNVERIFIABLE;
        }
        char held[256];
        vv_text(known, (size_t)nk, held, sizeof(held));
        if (!n) {
                snprintf(why, why_size, "present at %s; the event has no version", held);
                return KRIB_CHECK_UNVERIFIABLE;
        }
        krib_vv_order_t o = krib_vv_compare(known, (size_t)nk, v, n);
        snprintf(why, why_size, "present at %s", held);
        return o == KRIB_VV_EQUAL || o == KRIB_VV_NEWER ? KRIB_CHECK_FRESH : KRIB_CHECK_STALE;
}

int krib_nines_init(krib_nines_t *n, size_t window_s) {
        memset(n, 0, sizeof(*n));
        n->w = window_s ? window_s : 1;
        n->checked = calloc(n->w, sizeof(*n->checked));
        n->stale = calloc(n->w, sizeof(*n->stale));
        n->second = calloc(n->w, sizeof(*n->second));
        if (!n->checked || !n->stale || !n->second) {
                krib_nines_free(n);
                return -1;
        }
        for (size_t i = 0; i < n->w; i++)
                n->second[i] = -1;
        return 0;
}

void krib_nines_free(krib_nines_t *n) {
        free(n->checked);
        free(n->stale);
        free(n->second);
        memset(n, 0, sizeof(*n));
}

void krib_nines_add(krib_nines_t *n, int64_t now_s, int stale) {
        size_t i = (size_t)(now_s % (int64_t)n->w);
        if (n->second[i] != now_s) {
                n->second[i] = now_s;
                n->checked[i] = n->stale[i] = 0;
        }
        n->checked[i]++;
        n->stale[i] += stale != 0;
}

double krib_nines_value(const krib_nines_t *n, int64_t now_s, uint64_t *checked, uint64_t *stale) {
        uint64_t c = 0, s = 0;
        for (size_t i = 0; i < n->w; i++)
                if (n->second[i] >= 0 && n->second[i] > now_s - (int64_t)n->w &&
                    n->second[i] <= now_s) {
                        c += n->checked[i];
                        s += n->stale[i];
                }
        if (checked)
                *checked = c;
        if (stale)
                *stale = s;
        if (!c)
                return NAN;
        if (!s)
                return INFINITY;
        return -log10((double)s / (double)c);
}
