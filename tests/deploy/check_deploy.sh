#!/usr/bin/env bash
# Deployment artefacts, checked offline: docker-compose.yml (docker-compose
# config), Kubernetes manifests (kubernetes-validate --strict; KEDA's
# ScaledObject against deploy/kubernetes/schemas), Prometheus alert rules
# (promtool check rules), and that the krib configuration the ConfigMap and
# the StatefulSet's environment give passes `krib --check-config`.
# usage: check_deploy.sh SOURCE_DIR KRIB_BINARY
set -euo pipefail
src=$1 krib=$2
fail=0
step() { printf '== %s\n' "$*"; }

step "Dockerfile installs every library krib builds with and links to"
# Build stage: the -dev package of every pkg-config module in CMakeLists.txt.
build_stage=$(sed -n '/^FROM .* AS build/,/^FROM /p' "$src/Dockerfile")
runtime_stage=$(sed -n '/^FROM debian:12-slim$/,$p' "$src/Dockerfile")
for m in $(sed -n 's/^pkg_check_modules([A-Z]* REQUIRED IMPORTED_TARGET \([^)]*\))/\1/p' "$src/CMakeLists.txt"); do
  [ "$m" = check ] && continue # tests only (KRIB_TESTS=OFF in the image)
  pkg=$(dpkg -S "$(pkg-config --variable=pcfiledir "$m")/$m.pc" | cut -d: -f1)
  grep -qw -- "$pkg" <<<"$build_stage" || { echo "Dockerfile build stage lacks $pkg (pkg-config $m)"; fail=1; }
done
# Runtime stage: the package of every shared library the binary names (NEEDED).
for so in $(objdump -p "$krib" | awk '$1 == "NEEDED" {print $2}'); do
  path=$(ldd "$krib" | awk -v so="$so" '$1 == so {print $3}')
  pkg=$({ dpkg -S "$path" 2>/dev/null || dpkg -S "$(readlink -f "$path")" 2>/dev/null || true; } |
        cut -d: -f1 | head -n1)
  # The C library is in the base image; sanitizer runtimes only in test builds.
  case "$pkg" in libc6 | libasan* | libubsan* | liblsan* | libtsan* | libgcc-s1 | "") continue ;; esac
  grep -qw -- "$pkg" <<<"$runtime_stage" || { echo "Dockerfile runtime stage lacks $pkg ($so)"; fail=1; }
done

step "docker-compose config"
(cd "$src" && docker-compose -f docker-compose.yml config -q) || fail=1

step "kubernetes-validate --strict"
out=$(python3 -m kubernetes_validate --strict "$src"/deploy/kubernetes/*.yaml 2>&1) || fail=1
printf '%s\n' "$out"
# Every built-in kind must have passed; only the CRD may lack a schema.
if printf '%s\n' "$out" | grep -v 'kind ScaledObject' | grep -qE '^(WARN|ERROR)'; then fail=1; fi

step "ScaledObject against its schema; krib config from ConfigMap + StatefulSet env"
python3 - "$src" "$krib" <<'PY' || fail=1
import json, os, subprocess, sys, tempfile
import jsonschema, yaml
src, krib = sys.argv[1], sys.argv[2]
k8s = os.path.join(src, "deploy", "kubernetes")
so = yaml.safe_load(open(os.path.join(k8s, "keda-scaledobject.yaml")))
jsonschema.validate(so, json.load(open(os.path.join(k8s, "schemas", "keda-scaledobject-v1alpha1.json"))))
assert so["spec"]["scaleTargetRef"]["name"] == "krib"
cm = yaml.safe_load(open(os.path.join(k8s, "configmap.yaml")))
sts = yaml.safe_load(open(os.path.join(k8s, "statefulset.yaml")))
c = sts["spec"]["template"]["spec"]["containers"][0]
env = {k: v for k, v in os.environ.items() if not k.startswith("KRIB_")}
for e in c["env"]:
    if "value" in e:
        env[e["name"]] = e["value"].replace("$(POD_NAME)", "krib-0")
    elif e["name"].startswith("KRIB_"):
        env[e["name"]] = "from-secret"
with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "krib.conf")
    open(path, "w").write(cm["data"]["krib.conf"])
    # The image's schema paths do not exist here: point them at the source tree.
    env["KRIB_DECODE_SCHEMA_FILE"] = os.path.join(src, "schemas", "invalidation.avsc")
    env["KRIB_DECODE_SCHEMA_DIR"] = os.path.join(src, "schemas")
    r = subprocess.run([krib, "--print-config", "-c", path], env=env, capture_output=True, text=True)
    print(r.stdout, r.stderr, sep="")
    assert r.returncode == 0, "krib rejected the Kubernetes configuration"
    assert 'kafka.properties = ["group.instance.id=krib-0", "session.timeout.ms=30000"];' in r.stdout
    assert "from-secret" not in r.stdout.replace('redis.username = "from-secret"', ""), "secret printed"
    probe = c["livenessProbe"]["httpGet"]["path"], c["readinessProbe"]["httpGet"]["path"]
    assert probe == ("/healthz", "/readyz"), probe
print("kubernetes configuration OK")
PY

step "promtool check rules"
promtool check rules "$src/deploy/prometheus/alerts.yml" || fail=1

[ "$fail" = 0 ] && echo "deploy checks passed" || { echo "deploy checks FAILED"; exit 1; }
