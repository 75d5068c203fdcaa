#!/usr/bin/env bash
# migrate_slots.sh SEED_PORT SLOT... — moves each slot from its current master
# to another master the slow way (CLUSTER SETSLOT IMPORTING/MIGRATING, MIGRATE
# 10 keys at a time, SETSLOT NODE everywhere), so clients meet ASK while a
# slot is half moved and MOVED after. Prints "moved SLOT A -> B" per slot.
set -euo pipefail
seed=$1; shift
nodes() { redis-cli -p "$seed" cluster nodes; }
for slot in "$@"; do
  src_line=$(nodes | awk -v s="$slot" '$3 ~ /master/ { for (i = 9; i <= NF; i++) { split($i, r, "-"); hi = (r[2] == "" ? r[1] : r[2]); if (s >= r[1] && s <= hi) print } }' | head -n1)
  [ -n "$src_line" ] || { echo "slot $slot has no owner" >&2; exit 1; }
  src_id=$(awk '{print $1}' <<<"$src_line")
  src_port=$(awk '{split($2, a, "[:@]"); print a[2]}' <<<"$src_line")
  dst_line=$(nodes | awk -v id="$src_id" '$3 ~ /master/ && $1 != id' | head -n1)
  dst_id=$(awk '{print $1}' <<<"$dst_line")
  dst_port=$(awk '{split($2, a, "[:@]"); print a[2]}' <<<"$dst_line")
  redis-cli -p "$dst_port" cluster setslot "$slot" importing "$src_id" >/dev/null
  redis-cli -p "$src_port" cluster setslot "$slot" migrating "$dst_id" >/dev/null
  while :; do
    mapfile -t keys < <(redis-cli -p "$src_port" cluster getkeysinslot "$slot" 50)
    [ "${#keys[@]}" -gt 0 ] && [ -n "${keys[0]}" ] || break
    redis-cli -p "$src_port" migrate 127.0.0.1 "$dst_port" "" 0 5000 keys "${keys[@]}" >/dev/null
    sleep 0.005
  done
  for p in $(nodes | awk '$3 ~ /master/ {split($2, a, "[:@]"); print a[2]}'); do
    redis-cli -p "$p" cluster setslot "$slot" node "$dst_id" >/dev/null
  done
  echo "moved $slot $src_port -> $dst_port"
done
