#!/usr/bin/env bash
# The README's test command from a home directory: as root, a checkout under
# a 0700 directory (root's home, mktemp -d) must still start PostgreSQL,
# whose server runs as the postgres user and cannot traverse that parent.
# ci/ is copied into such a directory and started from there, on its own
# ports, exactly as a clone would start it.
# usage: check_private_checkout.sh SOURCE_DIR
set -euo pipefail
src=$1
if [ "$(id -u)" != 0 ]; then
  echo "not root: PostgreSQL runs as this user, nothing to traverse; skipped"
  exit 0
fi
base=$(( ${KRIB_PORT_BASE:-19000} + 2000 ))
d=$(mktemp -d)
home=$d/home/krib
mkdir -p "$home"
chmod 0700 "$d" "$d/home" "$home"
cleanup() {
  KRIB_PORT_BASE=$base KRIB_RUN=$home/.run "$home/ci/services" pg-down >/dev/null 2>&1 || true
  rm -rf "$d"
}
trap cleanup EXIT
cp -r "$src/ci" "$home/ci"
# The postgres user indeed cannot reach the checkout.
if runuser -u postgres -- test -x "$home"; then
  echo "FAIL: the postgres user can traverse $home; the test proves nothing"; exit 1
fi
env -u KRIB_RUN KRIB_PORT_BASE=$base "$home/ci/services" pg-up
port=$((base + 54))
out=$(psql -h 127.0.0.1 -p "$port" -U postgres -d krib -tAc 'SELECT count(*) FROM users')
[ "$out" = 0 ] || { echo "FAIL: unexpected answer '$out'"; exit 1; }
echo "postgres started from a checkout under a 0700 directory and answered on $port"
