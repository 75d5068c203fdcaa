#!/usr/bin/env bash
# faults.sh VERB [ARGS] — the faults the resilience tests inject into the real
# Redis Cluster, Kafka broker and Toxiproxy that ci/services started. Every
# wait is bounded; a verb that cannot do its job exits non-zero with a reason.
#
#   master-port             a master's port (not the first seed's, when it can)
#   replica-of PORT         a replica's port of master PORT
#   kill PORT               kill -9 the node on PORT; prints its pid
#   stop PORT | cont PORT   SIGSTOP / SIGCONT the node on PORT (a frozen replica:
#                           its socket buffers fill, its master keeps the rest)
#   node-timeout MS         cluster-node-timeout on every node (none frozen):
#                           a longer one keeps a frozen master from failing over
#   wait-master PORT        wait until PORT is a master and cluster_state is ok
#                           on every live node (a replica promoted after a kill)
#   failover PORT           CLUSTER FAILOVER on replica PORT; waits until it is
#                           master and the cluster is ok
#   toxic NAME TYPE JSON    add a toxic to every Redis proxy (JSON: attributes)
#   untoxic NAME            remove it again
#   toxic-on PORT NAME TYPE JSON  the same on the proxy of one node only
#   full                    maxmemory = 90 % of used_memory, noeviction, on every
#                           master: every write that needs memory gets OOM
#   unfull                  maxmemory 0 everywhere
#   kafka-link down|up      disable/enable the Toxiproxy proxy of the Kafka listener
#                           (clients of port 19094 lose the broker; others do not)
#   heal                    restart killed nodes, drop every toxic, maxmemory 0,
#                           and wait for 3 masters, 3 linked replicas, state ok
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../ci/lib.sh"

api=http://127.0.0.1:$TOXIPROXY_PORT
rc() { redis-cli -p "$1" "${@:2}" 2>/dev/null | tr -d '\r'; }
field() { sed -n "s/^$1:\\(.*\\)\$/\\1/p"; }
alive() { [ "$(rc "$1" ping)" = PONG ]; }
role() { rc "$1" info replication | field role; }
masters() { local p; for p in "${REDIS_CLUSTER_PORTS[@]}"; do alive "$p" && [ "$(role "$p")" = master ] && echo "$p"; done; }

# cluster_ok: every live node says ok and every slot has a live master.
cluster_ok() {
  local p
  for p in "${REDIS_CLUSTER_PORTS[@]}"; do
    alive "$p" || continue
    [ "$(rc "$p" cluster info | field cluster_state)" = ok ] || return 1
  done
}

wait_until() { # SECONDS DESC CMD...
  local t=$1 desc=$2; shift 2
  local end=$((SECONDS + t))
  until "$@"; do
    ((SECONDS < end)) || { echo "faults.sh: $desc not reached in ${t}s" >&2; return 1; }
    sleep 0.1
  done
}

case "${1:-}" in
  master-port)
    avoid=${REDIS_CLUSTER_PORTS[0]}
    for p in $(masters); do [ "$p" != "$avoid" ] && { echo "$p"; exit 0; }; done
    masters | head -n1 ;;
  replica-of)
    id=$(rc "$2" cluster myid)
    for p in "${REDIS_CLUSTER_PORTS[@]}"; do
      alive "$p" && [ "$(rc "$p" info replication | field master_port)" = "$2" ] && { echo "$p"; exit 0; }
    done
    echo "faults.sh: no replica of $2 ($id)" >&2; exit 1 ;;
  kill)
    pid=$(rc "$2" info server | field process_id)
    [ -n "$pid" ] || { echo "faults.sh: nothing on port $2" >&2; exit 1; }
    kill -9 "$pid"; echo "$pid" ;;
  stop)
    pid=$(rc "$2" info server | field process_id)
    [ -n "$pid" ] || { echo "faults.sh: nothing on port $2" >&2; exit 1; }
    echo "$pid" >"$KRIB_RUN/stopped-$2"
    kill -STOP "$pid"; echo "$pid" ;;
  cont)
    [ -f "$KRIB_RUN/stopped-$2" ] && kill -CONT "$(cat "$KRIB_RUN/stopped-$2")" 2>/dev/null || true
    rm -f "$KRIB_RUN/stopped-$2" ;;
  wait-master)
    target=$2
    is_master() { [ "$(role "$target")" = master ] && cluster_ok; }
    wait_until 60 "$target serving as master" is_master ;;
  failover)
    target=$2
    rc "$target" cluster failover >/dev/null
    is_master() { [ "$(role "$target")" = master ] && cluster_ok; }
    wait_until 30 "failover to $target" is_master ;;
  toxic)
    for i in 0 1 2 3 4 5; do
      curl -sf -X POST "$api/proxies/redis-${REDIS_CLUSTER_PORTS[$i]}/toxics" \
        -d "{\"name\":\"$2\",\"type\":\"$3\",\"stream\":\"downstream\",\"attributes\":$4}" >/dev/null
    done ;;
  toxic-on)
    curl -sf -X POST "$api/proxies/redis-$2/toxics" \
      -d "{\"name\":\"$3\",\"type\":\"$4\",\"stream\":\"downstream\",\"attributes\":$5}" >/dev/null ;;
  node-timeout) # cluster-node-timeout on every node (heal sets 2000 back)
    for p in "${REDIS_CLUSTER_PORTS[@]}"; do
      alive "$p" && rc "$p" config set cluster-node-timeout "$2" >/dev/null
    done ;;
  untoxic)
    for i in 0 1 2 3 4 5; do
      curl -sf -X DELETE "$api/proxies/redis-${REDIS_CLUSTER_PORTS[$i]}/toxics/$2" >/dev/null || true
    done ;;
  kafka-link)
    enabled=true; [ "$2" = down ] && enabled=false
    curl -sf -X POST "$api/proxies/kafka" -d "{\"enabled\":$enabled}" >/dev/null ;;
  full)
    for p in $(masters); do
      used=$(rc "$p" info memory | field used_memory)
      rc "$p" config set maxmemory-policy noeviction >/dev/null
      rc "$p" config set maxmemory $((used * 9 / 10)) >/dev/null
    done ;;
  unfull)
    for p in "${REDIS_CLUSTER_PORTS[@]}"; do alive "$p" && rc "$p" config set maxmemory 0 >/dev/null; done ;;
  heal)
    for f in "$KRIB_RUN"/stopped-*; do
      [ -f "$f" ] && { kill -CONT "$(cat "$f")" 2>/dev/null || true; rm -f "$f"; }
    done
    for p in "${REDIS_CLUSTER_PORTS[@]}"; do
      alive "$p" || "$here/../../ci/services" redis-restart "$p" >/dev/null
      rc "$p" config set maxmemory 0 >/dev/null
      rc "$p" config set cluster-node-timeout 2000 >/dev/null
    done
    curl -sf "$api/reset" -X POST >/dev/null || true
    healthy() {
      local p m=0 r=0
      for p in "${REDIS_CLUSTER_PORTS[@]}"; do
        alive "$p" || return 1
        [ "$(rc "$p" cluster info | field cluster_state)" = ok ] || return 1
        if [ "$(role "$p")" = master ]; then m=$((m + 1))
        elif [ "$(rc "$p" info replication | field master_link_status)" = up ]; then r=$((r + 1)); fi
      done
      [ "$m" = 3 ] && [ "$r" = 3 ]
    }
    wait_until 60 "a healthy 3+3 cluster" healthy ;;
  *) sed -n '2,24p' "$0" >&2; exit 2 ;;
esac
