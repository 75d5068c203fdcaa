#include "preflight.h"

#include <stdio.h>

#include "conn.h"
#include "schemas.h"

/* The schema settings one at a time, then together, so that a refusal
 * names the key whose file it is (and where that key was set). The same
 * constructor start-up uses, so the verdict cannot drift. */
static int check_schemas(const krib_conf_t *conf, char *errstr, size_t errstr_size) {
        char sub[768], w1[300], w2[300], w3[300];
        const char *file = conf->decode_schema_file, *dir = conf->decode_schema_dir;
        krib_schemas_t *s;
        if (file) {
                if (!(s = krib_schemas_new((krib_wire_t)conf->decode_format, file, NULL, sub,
                                           sizeof(sub)))) {
                        snprintf(errstr, errstr_size, "%s: %s",
                                 krib_conf_where(conf, "decode.schema_file", w1, sizeof(w1)), sub);
                        return -1;
                }
                krib_schemas_destroy(s);
        }
        if (dir && *dir) {
                if (!(s = krib_schemas_new(KRIB_WIRE_RAW, NULL, dir, sub, sizeof(sub)))) {
                        snprintf(errstr, errstr_size, "%s: %s",
                                 krib_conf_where(conf, "decode.schema_dir", w1, sizeof(w1)), sub);
                        return -1;
                }
                krib_schemas_destroy(s);
        }
        if (!(s = krib_schemas_new((krib_wire_t)conf->decode_format, file, dir, sub,
                                   sizeof(sub)))) {
                snprintf(errstr, errstr_size, "%s with %s and %s: %s",
                         krib_conf_where(conf, "decode.format", w1, sizeof(w1)),
                         krib_conf_where(conf, "decode.schema_file", w2, sizeof(w2)),
                         krib_conf_where(conf, "decode.schema_dir", w3, sizeof(w3)), sub);
                return -1;
        }
        krib_schemas_destroy(s);
        return 0;
}

int krib_preflight_check(const krib_conf_t *conf, char *errstr, size_t errstr_size) {
        if (check_schemas(conf, errstr, errstr_size))
                return -1;
        if (conf->redis_tls) {
                char sub[768], w[300];
                krib_tls_opts_t o = {conf->redis_tls_ca_file, conf->redis_tls_cert_file,
                                     conf->redis_tls_key_file, conf->redis_tls_server_name,
                                     (int)conf->redis_tls_verify};
                static const char *const keys[] = {
                        [KRIB_TLS_FILE_CA] = "redis.tls_ca_file",
                        [KRIB_TLS_FILE_CERT] = "redis.tls_cert_file",
                        [KRIB_TLS_FILE_KEY] = "redis.tls_key_file",
                        [KRIB_TLS_FILE_CONTEXT] = "redis.tls",
                };
                krib_tls_file_t bad = krib_tls_check(&o, sub, sizeof(sub));
                if (bad != KRIB_TLS_FILE_NONE) {
                        snprintf(errstr, errstr_size, "%s: %s",
                                 krib_conf_where(conf, keys[bad], w, sizeof(w)), sub);
                        return -1;
                }
        }
        return 0;
}
