/* preflight: what start-up would refuse and can be known without a
 * connection — schema files that do not parse, TLS files that do not load.
 * --check-config runs it after krib_conf_finalize(), so a configuration the
 * check passes fails at start-up only on the network. A refusal names the
 * key whose file it is and where that key was set ("redis.tls_ca_file
 * (environment KRIB_REDIS_TLS_CA_FILE): <path>: ..."). Owns nothing. */
#ifndef KRIB_PREFLIGHT_H
#define KRIB_PREFLIGHT_H

#include <stddef.h>

#include "conf.h"

int krib_preflight_check(const krib_conf_t *conf, char *errstr, size_t errstr_size);

#endif
