#!/usr/bin/env bash
# Every port ci/services listens on (cluster bus ports included) stays below
# Linux's ephemeral range (32768) and is distinct, for the port bases the
# scripts accept; a base beyond that is refused (issue 10, item 18).
set -euo pipefail
root=$1
fail=0
ports_for() { # BASE -> every listening port, one per line
  (
    export KRIB_PORT_BASE=$1 KRIB_RUN=/nonexistent
    . "$root/ci/lib.sh"
    for p in "${REDIS_CLUSTER_PORTS[@]}" $TLS_CLUSTER_PLAIN_PORTS; do echo "$p"; bus_port "$p"; done
    echo $TLS_CLUSTER_PORTS | tr ' ' '\n'
    echo "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$KAFKA_PROXY_PORT" "$KAFKA_PROXIED_PORT" \
      "$KAFKA_SASL_PORT" "$REDIS_STANDALONE_PORT" "$KRIB_METRICS_PORT" "$METRICS_TEST_PORT" \
      "$PROMETHEUS_PORT" "$PG_PORT" "$CONNECT_PORT" "$TOXIPROXY_PORT" | tr ' ' '\n'
    seq "$TOXI_REDIS_BASE" $((TOXI_REDIS_BASE + 5))
    echo $((KRIB_PORT_BASE + 143)) $((KRIB_PORT_BASE + 106)) $((KRIB_PORT_BASE + 306)) | tr ' ' '\n'
  )
}
for base in 10000 19000 23000 32454; do
  ports=$(ports_for "$base")
  max=$(sort -n <<<"$ports" | tail -n1)
  dups=$(sort -n <<<"$ports" | uniq -d | tr '\n' ' ')
  if ((max >= 32768)); then echo "base $base: port $max is in the ephemeral range"; fail=1; fi
  if [ -n "$dups" ]; then echo "base $base: ports used twice: $dups"; fail=1; fi
done
if (export KRIB_PORT_BASE=32455; . "$root/ci/lib.sh") 2>/dev/null; then
  echo "KRIB_PORT_BASE=32455 was accepted"; fail=1
fi
[ "$fail" = 0 ] && echo "ports: all below 32768 and distinct"
exit "$fail"
