#include "cdcver.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

/* Decimal digits s[0..n) into *out without overflow past max. */
static int digits(const char *s, size_t n, uint64_t max, uint64_t *out) {
        uint64_t v = 0;
        if (!n || n > 20)
                return -1;
        for (size_t i = 0; i < n; i++) {
                if (!isdigit((unsigned char)s[i]))
                        return -1;
                unsigned d = (unsigned)(s[i] - '0');
                if (v > (max - d) / 10)
                        return -1;
                v = v * 10 + d;
        }
        *out = v;
        return 0;
}

int krib_cdcver_binlog(const char *file, int64_t pos, int64_t row, int64_t *out, char *err,
                       size_t err_size) {
        const char *dot = file ? strrchr(file, '.') : NULL;
        uint64_t seq;
        if (!dot || digits(dot + 1, strlen(dot + 1), UINT64_MAX, &seq)) {
                snprintf(err, err_size, "binlog file '%s' does not end in .<sequence number>",
                         file ? file : "(none)");
                return -1;
        }
        const uint64_t seq_max = (UINT64_C(1) << KRIB_CDCVER_FILE_BITS) - 1,
                       pos_max = (UINT64_C(1) << KRIB_CDCVER_POS_BITS) - 1,
                       row_max = (UINT64_C(1) << KRIB_CDCVER_ROW_BITS) - 1;
        if (seq > seq_max) {
                snprintf(err, err_size,
                         "binlog file %s: sequence %llu is past the %llu the version packs "
                         "(use version source.gtid)",
                         file, (unsigned long long)seq, (unsigned long long)seq_max);
                return -1;
        }
        if (pos < 0 || (uint64_t)pos > pos_max) {
                snprintf(err, err_size,
                         "binlog position %lld in %s is outside 0..%llu the version packs",
                         (long long)pos, file, (unsigned long long)pos_max);
                return -1;
        }
        uint64_t r = row < 0 ? 0 : (uint64_t)row > row_max ? row_max : (uint64_t)row;
        *out = (int64_t)((seq << (KRIB_CDCVER_POS_BITS + KRIB_CDCVER_ROW_BITS)) |
                         ((uint64_t)pos << KRIB_CDCVER_ROW_BITS) | r);
        return 0;
}

int krib_cdcver_gtid(const char *gtid, char *domain, size_t domain_size, int64_t *seq, char *err,
                     size_t err_size) {
        size_t n = gtid ? strlen(gtid) : 0;
        uint64_t v, part;
        const char *colon = gtid ? strchr(gtid, ':') : NULL;
        if (colon) { /* MySQL: uuid:seq */
                size_t ul = (size_t)(colon - gtid);
                int uuid_ok = ul == 36;
                for (size_t i = 0; uuid_ok && i < ul; i++)
                        uuid_ok = (i == 8 || i == 13 || i == 18 || i == 23)
                                          ? gtid[i] == '-'
                                          : isxdigit((unsigned char)gtid[i]) != 0;
                if (!uuid_ok || digits(colon + 1, strlen(colon + 1), INT64_MAX, &v) ||
                    ul >= domain_size) {
                        snprintf(err, err_size, "GTID '%s' is not uuid:sequence", gtid);
                        return -1;
                }
                for (size_t i = 0; i < ul; i++)
                        domain[i] = (char)tolower((unsigned char)gtid[i]);
                domain[ul] = '\0';
                *seq = (int64_t)v;
                return 0;
        }
        /* MariaDB: domain-server-seq */
        const char *d1 = gtid ? memchr(gtid, '-', n) : NULL;
        const char *d2 = d1 ? memchr(d1 + 1, '-', n - (size_t)(d1 + 1 - gtid)) : NULL;
        if (!d1 || !d2 || digits(gtid, (size_t)(d1 - gtid), UINT32_MAX, &part) ||
            digits(d1 + 1, (size_t)(d2 - d1 - 1), UINT32_MAX, &part) ||
            digits(d2 + 1, strlen(d2 + 1), INT64_MAX, &v) || (size_t)(d1 - gtid) >= domain_size) {
                snprintf(err, err_size, "GTID '%s' is not domain-server-sequence or uuid:sequence",
                         gtid ? gtid : "(none)");
                return -1;
        }
        memcpy(domain, gtid, (size_t)(d1 - gtid));
        domain[d1 - gtid] = '\0';
        *seq = (int64_t)v;
        return 0;
}
