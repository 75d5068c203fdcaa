# Shared by the ci/ scripts: paths, ports and small helpers. Sourced, not run.
# Ports derive from one base so two checkouts can run side by side:
#   KRIB_PORT_BASE=19000 (default) -> Kafka 19092, controller 19093,
#   Redis Cluster 19100-19105 (cluster bus ports +200: 19300-19305, and
#   19311-19313 for the TLS cluster), standalone Redis 19110, a one-node
#   cluster the LOADING test starts itself 19106 (bus 19306), the tests'
#   schema registry 19143,
#   krib metrics 19120 (demo) and 19121 (tests), Prometheus 19130 (demo),
#   Kafka SASL_SSL/SCRAM listener 19096, PostgreSQL 19054 and Kafka Connect
#   REST 19083 (Debezium, `ci/services cdc-up`), MariaDB 19033 (cdc-up too), TLS Redis Cluster 19161-19163 (plain 19111-19113),
#   Toxiproxy API 19140 with proxies for Redis nodes 19200-19205 and for a
#   second Kafka listener (proxy 19094 -> broker listener 19095, which
#   advertises the proxy's port so that clients stay behind the proxy).
# The broker line: KAFKA_VERSION=4.4.0 ci/services up runs Kafka 4 (log4j2
# instead of reload4j); ci/test runs the plain build's tests on the newest
# 4.x line and the sanitizer build's on 3.9.1. Connect (CDC) keeps 3.9.1
# jars on its own classpath whatever the broker.
KAFKA_LINES=(3.9.1 4.4.0)
KRIB_ROOT=${KRIB_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
export KRIB_RUN=${KRIB_RUN:-$KRIB_ROOT/.run}
# Unset: the line of the broker `ci/services up` formatted last (a restart
# or a test must not start other jars on its data); a new broker: 3.9.1.
KAFKA_VERSION_ASKED=${KAFKA_VERSION:-}
export KAFKA_VERSION=${KAFKA_VERSION:-$(cat "$KRIB_RUN/kafka/version" 2>/dev/null || echo 3.9.1)}
kafka_libs() { echo "$KRIB_ROOT/.cache/kafka-$1/libs"; }
KAFKA_LIBS=${KRIB_KAFKA_LIBS:-$(kafka_libs "$KAFKA_VERSION")}
CONNECT_KAFKA_LIBS=$(kafka_libs 3.9.1)
# A librdkafka newer than Debian 12's 2.0.2, built from Debian's source
# package (ci/librdkafka.pin says which and why in docs/OPERATIONS.md).
read -r LIBRDKAFKA_VERSION LIBRDKAFKA_DEBVER _ < <(grep -v '^#' "$KRIB_ROOT/ci/librdkafka.pin")
LIBRDKAFKA_PREFIX=$KRIB_ROOT/.cache/librdkafka-$LIBRDKAFKA_VERSION
export KRIB_TLS_DIR=$KRIB_RUN/tls
KRIB_BUILD=${KRIB_BUILD:-$KRIB_ROOT/build}
export KRIB_PORT_BASE=${KRIB_PORT_BASE:-19000}
KAFKA_PORT=$((KRIB_PORT_BASE + 92))
KAFKA_CONTROLLER_PORT=$((KRIB_PORT_BASE + 93))
REDIS_CLUSTER_PORTS=($((KRIB_PORT_BASE + 100)) $((KRIB_PORT_BASE + 101)) $((KRIB_PORT_BASE + 102))
                     $((KRIB_PORT_BASE + 103)) $((KRIB_PORT_BASE + 104)) $((KRIB_PORT_BASE + 105)))
REDIS_STANDALONE_PORT=$((KRIB_PORT_BASE + 110))
# A 3-master TLS cluster (tls-cluster yes, client certificates required): TLS
# ports 19161-19163, plain ports 19111-19113 for test fixtures; certificates
# (a test CA, server and client) in $KRIB_RUN/tls.
export TLS_CLUSTER_PORTS="$((KRIB_PORT_BASE + 161)) $((KRIB_PORT_BASE + 162)) $((KRIB_PORT_BASE + 163))"
export TLS_CLUSTER_PLAIN_PORTS="$((KRIB_PORT_BASE + 111)) $((KRIB_PORT_BASE + 112)) $((KRIB_PORT_BASE + 113))"
# krib's /metrics for the demo, and a second port the tests use.
export KRIB_METRICS_PORT=$((KRIB_PORT_BASE + 120))
export METRICS_TEST_PORT=$((KRIB_PORT_BASE + 121))
PROMETHEUS_PORT=$((KRIB_PORT_BASE + 130))
CDC_LIBS=${KRIB_CDC_LIBS:-$KRIB_ROOT/.cache/cdc/connect-libs}
export PG_PORT=$((KRIB_PORT_BASE + 54)) CONNECT_PORT=$((KRIB_PORT_BASE + 83))
# MariaDB for the MySQL/MariaDB CDC tests (ci/services cdc-up); Debezium's
# MariaDB connector lives on Connect's plugin.path with its own Debezium.
export MARIADB_PORT=$((KRIB_PORT_BASE + 33)) MARIADB_CDC_PASSWORD=krib-dbz-test-pw
CDC_PLUGINS=${KRIB_CDC_PLUGINS:-$KRIB_ROOT/.cache/cdc/plugins}
CONNECT_VERSION=3.9.1 DEBEZIUM_POSTGRES_VERSION=3.6.1.Final DEBEZIUM_MARIADB_VERSION=3.5.0.Final
TOXIPROXY_BIN=$KRIB_ROOT/.cache/bin/toxiproxy-server
TOXIPROXY_VERSION=v2.12.0
export TOXIPROXY_PORT=$((KRIB_PORT_BASE + 140))
# A SASL_SSL listener (SCRAM-SHA-512, broker certificate from $KRIB_TLS_DIR)
# with a SCRAM user created when the storage is formatted.
export KAFKA_SASL_PORT=$((KRIB_PORT_BASE + 96)) KAFKA_SCRAM_USER=krib KAFKA_SCRAM_PASSWORD=krib-scram-test-pw
export KAFKA_PROXY_PORT=$((KRIB_PORT_BASE + 94)) KAFKA_PROXIED_PORT=$((KRIB_PORT_BASE + 95))
export TOXI_REDIS_BASE=$((KRIB_PORT_BASE + 200))
export KAFKA_PORT REDIS_STANDALONE_PORT
export KRIB_KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT"
export KRIB_REDIS_NODES="127.0.0.1:${REDIS_CLUSTER_PORTS[0]},127.0.0.1:${REDIS_CLUSTER_PORTS[1]},127.0.0.1:${REDIS_CLUSTER_PORTS[2]}"

# Every listening port stays below 32768 (Linux's ephemeral range starts
# there) for KRIB_PORT_BASE up to 32454.
bus_port() { echo $(($1 + 200)); }
((KRIB_PORT_BASE + 313 < 32768)) || { echo "KRIB_PORT_BASE=$KRIB_PORT_BASE puts ports in the ephemeral range (max 32454)" >&2; exit 1; }

say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
