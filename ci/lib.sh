# Shared by the ci/ scripts: paths, ports and small helpers. Sourced, not run.
# Ports derive from one base so two checkouts can run side by side:
#   KRIB_PORT_BASE=19000 (default) -> Kafka 19092, controller 19093,
#   Redis Cluster 19100-19105 (bus ports +10000), standalone Redis 19110,
#   krib metrics 19120 (demo) and 19121 (tests), Prometheus 19130 (demo),
#   Toxiproxy API 19140 with proxies for Redis nodes 19200-19205 and for a
#   second Kafka listener (proxy 19094 -> broker listener 19095, which
#   advertises the proxy's port so that clients stay behind the proxy).
KAFKA_VERSION=3.9.1
KRIB_ROOT=${KRIB_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
KAFKA_LIBS=${KRIB_KAFKA_LIBS:-$KRIB_ROOT/.cache/kafka-$KAFKA_VERSION/libs}
KRIB_RUN=${KRIB_RUN:-$KRIB_ROOT/.run}
KRIB_BUILD=${KRIB_BUILD:-$KRIB_ROOT/build}
export KRIB_PORT_BASE=${KRIB_PORT_BASE:-19000}
KAFKA_PORT=$((KRIB_PORT_BASE + 92))
KAFKA_CONTROLLER_PORT=$((KRIB_PORT_BASE + 93))
REDIS_CLUSTER_PORTS=($((KRIB_PORT_BASE + 100)) $((KRIB_PORT_BASE + 101)) $((KRIB_PORT_BASE + 102))
                     $((KRIB_PORT_BASE + 103)) $((KRIB_PORT_BASE + 104)) $((KRIB_PORT_BASE + 105)))
REDIS_STANDALONE_PORT=$((KRIB_PORT_BASE + 110))
# krib's /metrics for the demo, and a second port the tests use.
export KRIB_METRICS_PORT=$((KRIB_PORT_BASE + 120))
export METRICS_TEST_PORT=$((KRIB_PORT_BASE + 121))
PROMETHEUS_PORT=$((KRIB_PORT_BASE + 130))
TOXIPROXY_BIN=$KRIB_ROOT/.cache/bin/toxiproxy-server
TOXIPROXY_VERSION=v2.12.0
export TOXIPROXY_PORT=$((KRIB_PORT_BASE + 140))
export KAFKA_PROXY_PORT=$((KRIB_PORT_BASE + 94)) KAFKA_PROXIED_PORT=$((KRIB_PORT_BASE + 95))
export TOXI_REDIS_BASE=$((KRIB_PORT_BASE + 200))
export KAFKA_PORT REDIS_STANDALONE_PORT
export KRIB_KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT"
export KRIB_REDIS_NODES="127.0.0.1:${REDIS_CLUSTER_PORTS[0]},127.0.0.1:${REDIS_CLUSTER_PORTS[1]},127.0.0.1:${REDIS_CLUSTER_PORTS[2]}"

say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
