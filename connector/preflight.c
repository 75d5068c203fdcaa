#include "preflight.h"

#include <stdio.h>

#include "conn.h"
#include "schemas.h"

int krib_preflight_check(const krib_conf_t *conf, char *errstr, size_t errstr_size) {
        char sub[768];
        /* The same constructors start-up uses, so the verdict cannot drift. */
        krib_schemas_t *s =
                krib_schemas_new((krib_wire_t)conf->decode_format, conf->decode_schema_file,
                                 conf->decode_schema_dir, sub, sizeof(sub));
        if (!s) {
                snprintf(errstr, errstr_size, "decode.schema_file/decode.schema_dir: %s", sub);
                return -1;
        }
        krib_schemas_destroy(s);
        if (conf->redis_tls) {
                krib_tls_opts_t o = {conf->redis_tls_ca_file, conf->redis_tls_cert_file,
                                     conf->redis_tls_key_file, conf->redis_tls_server_name,
                                     (int)conf->redis_tls_verify};
                krib_tls_t *t = krib_tls_new(&o, sub, sizeof(sub));
                if (!t) {
                        snprintf(errstr, errstr_size, "redis.tls: %s", sub);
                        return -1;
                }
                krib_tls_destroy(t);
        }
        return 0;
}
