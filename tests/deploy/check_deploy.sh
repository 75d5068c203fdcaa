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
# The librdkafka ci/librdkafka builds (no Debian package owns it): the build
# stage must build it the same way, the runtime stage must carry it.
rdkafka_prefix=$(sed -n 's/^KRIB_RDKAFKA_PREFIX:PATH=//p' "$(dirname "$krib")/CMakeCache.txt" 2>/dev/null || true)
for m in $(sed -n 's/^pkg_check_modules([A-Z]* REQUIRED IMPORTED_TARGET \([^)]*\))/\1/p' "$src/CMakeLists.txt"); do
  [ "$m" = check ] && continue # tests only (KRIB_TESTS=OFF in the image)
  pcdir=$(PKG_CONFIG_PATH=${rdkafka_prefix:+$rdkafka_prefix/lib/pkgconfig} pkg-config --variable=pcfiledir "$m")
  if [ -n "$rdkafka_prefix" ] && [ "$pcdir" = "$rdkafka_prefix/lib/pkgconfig" ]; then
    grep -q '^RUN ci/librdkafka /usr/local' <<<"$build_stage" ||
      { echo "Dockerfile build stage does not build librdkafka with ci/librdkafka"; fail=1; }
    continue
  fi
  pkg=$(dpkg -S "$pcdir/$m.pc" | cut -d: -f1)
  grep -qw -- "$pkg" <<<"$build_stage" || { echo "Dockerfile build stage lacks $pkg (pkg-config $m)"; fail=1; }
done
# Runtime stage: the package of every shared library the binary names
# (NEEDED), and of those the built librdkafka names in turn.
needed() { objdump -p "$1" | awk '$1 == "NEEDED" {print $2}'; }
check_needed() {
  local bin=$1 so path pkg
  for so in $(needed "$bin"); do
    path=$(ldd "$bin" | awk -v so="$so" '$1 == so {print $3}')
    if [ -n "$rdkafka_prefix" ] && [ "${path#"$rdkafka_prefix"/}" != "$path" ]; then
      grep -q "^COPY --from=build /usr/local/lib/$so /usr/local/lib/" <<<"$runtime_stage" ||
        { echo "Dockerfile runtime stage does not copy the built $so"; fail=1; }
      check_needed "$path"
      continue
    fi
    pkg=$({ dpkg -S "$path" 2>/dev/null || dpkg -S "$(readlink -f "$path")" 2>/dev/null || true; } |
          cut -d: -f1 | head -n1)
    # The C library is in the base image; sanitizer runtimes only in test builds.
    case "$pkg" in libc6 | libasan* | libubsan* | liblsan* | libtsan* | libgcc-s1 | "") continue ;; esac
    grep -qw -- "${pkg%%:*}" <<<"$runtime_stage" || { echo "Dockerfile runtime stage lacks $pkg ($so, needed by $(basename "$bin"))"; fail=1; }
  done
}
check_needed "$krib"
# The image's librdkafka is the one CI tests with.
if [ -n "$rdkafka_prefix" ]; then
  lib=$(ldd "$krib" | awk '$1 == "librdkafka.so.1" {print $3}')
  [ "${lib#"$rdkafka_prefix"/}" != "$lib" ] ||
    { echo "krib links $lib, not the librdkafka of ci/librdkafka.pin ($rdkafka_prefix)"; fail=1; }
fi

step "docker-compose config"
(cd "$src" && docker-compose -f docker-compose.yml config -q) || fail=1

step "docker-compose works as shipped: topics, healthchecks, job order, demo traffic, scrape job"
python3 - "$src" <<'PY' || fail=1
import os, sys, yaml
src = sys.argv[1]
dc = yaml.safe_load(open(os.path.join(src, "docker-compose.yml")))["services"]
krib = dc["krib"]
topics = krib["environment"]["KRIB_KAFKA_TOPICS"].split(",")
create = " ".join(dc["kafka-topics-create"]["command"])
for t in topics + [krib["environment"]["KRIB_DLQ_TOPIC"]]:
    assert "--topic %s " % t in create, "topic %s is not created" % t
assert "healthcheck" in dc["kafka"], "kafka has no healthcheck"
for n in range(1, 7):
    assert "healthcheck" in dc["redis-%d" % n], "redis-%d has no healthcheck" % n
    assert dc["redis-cluster-create"]["depends_on"]["redis-%d" % n]["condition"] == "service_healthy"
assert dc["kafka-topics-create"]["depends_on"]["kafka"]["condition"] == "service_healthy"
for job in ("kafka-topics-create", "redis-cluster-create"):
    assert krib["depends_on"][job]["condition"] == "service_completed_successfully", job
demo = " ".join(dc["demo-producer"]["command"])
assert "--topic %s " % topics[0] in demo, "the demo producer does not feed krib's topic"
assert dc["demo-producer"]["image"] == krib["image"]
insp = dc["krib-inspect"]
assert insp["image"] == krib["image"] and insp["command"][0] == "inspect", "no inspector beside krib"
assert insp["environment"]["KRIB_KAFKA_TOPICS"] == krib["environment"]["KRIB_KAFKA_TOPICS"]
cmake = open(os.path.join(src, "CMakeLists.txt")).read()
assert "install(TARGETS krib krib-loadgen" in cmake, "the image lacks krib-loadgen"
prom = yaml.safe_load(open(os.path.join(src, "deploy", "prometheus", "prometheus-compose.yml")))
jobs = [j["job_name"] for j in prom["scrape_configs"]]
rules = yaml.safe_load(open(os.path.join(src, "deploy", "prometheus", "alerts.yml")))
exprs = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
assert 'job="%s"' % jobs[0] in exprs["KribDown"], "KribDown does not match the scrape job"
assert "krib-inspect" in jobs, "Prometheus does not scrape the inspector"
assert "absent(" in exprs["KribAbsent"], "no alert for krib disappearing"
print("docker-compose OK")
PY

step "kubernetes-validate --strict"
out=$(python3 -m kubernetes_validate --strict "$src"/deploy/kubernetes/*.yaml 2>&1) || fail=1
printf '%s\n' "$out"
# Every built-in kind must have passed; only the CRD may lack a schema.
if printf '%s\n' "$out" | grep -vE 'kind (ScaledObject|TriggerAuthentication)' | grep -qE '^(WARN|ERROR)'; then fail=1; fi

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
pdb = yaml.safe_load(open(os.path.join(k8s, "pdb.yaml")))
ta = yaml.safe_load(open(os.path.join(k8s, "keda-triggerauthentication.yaml")))
secrets = {d["metadata"]["name"]: d for d in yaml.safe_load_all(open(os.path.join(k8s, "secret.yaml")))}
pod = sts["spec"]["template"]["spec"]
c = pod["containers"][0]
# The inspector beside krib: same image, `inspect`, same configuration and
# Kafka/Redis environment, its own port (docs/CONSISTENCY.md).
ic = [x for x in pod["containers"] if x["name"] == "krib-inspect"]
assert ic and ic[0]["image"] == c["image"] and ic[0]["args"][0] == "inspect", "no inspector container"
names = lambda x: {e["name"] for e in x["env"]}
assert {"KRIB_KAFKA_BROKERS", "KRIB_KAFKA_PROPERTIES", "KRIB_REDIS_NODES", "KRIB_REDIS_PASSWORD"} <= names(ic[0])
assert ic[0]["ports"][0]["containerPort"] != c["ports"][0]["containerPort"]
# Consistency between the manifests, as an operator would check by hand.
trig = so["spec"]["triggers"][0]
assert sts["spec"]["replicas"] == so["spec"]["minReplicaCount"], "StatefulSet replicas != KEDA min"
assert "topic" not in trig["metadata"], "a fixed KEDA topic misses the other topics krib reads"
assert trig["metadata"]["offsetResetPolicy"] == "earliest", "KEDA must count lag as krib resets"
assert trig["authenticationRef"]["name"] == ta["metadata"]["name"]
for ref in ta["spec"]["secretTargetRef"]:
    assert ref["key"] in secrets[ref["name"]]["stringData"], ref
assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
assert pod["automountServiceAccountToken"] is False
for e in c["env"]:
    ref = e.get("valueFrom", {}).get("secretKeyRef")
    if ref:
        assert ref["key"] in secrets[ref["name"]]["stringData"], ref
pod_env = {}
env = {k: v for k, v in os.environ.items() if not k.startswith("KRIB_")}
for e in c["env"]:
    if "value" in e:
        v = e["value"]
        for k, x in pod_env.items():
            v = v.replace("$(%s)" % k, x)
        pod_env[e["name"]] = v
    else:
        pod_env[e["name"]] = "krib-0" if e["name"] == "POD_NAME" else "from-secret"
env.update({k: v for k, v in pod_env.items() if k.startswith("KRIB_")})
with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "krib.conf")
    open(path, "w").write(cm["data"]["krib.conf"])
    # Paths of the image and the mounted secret do not exist here: point
    # them at the source tree and a stand-in CA file (merged per name).
    env["KRIB_DECODE_SCHEMA_FILE"] = os.path.join(src, "schemas", "invalidation.avsc")
    env["KRIB_DECODE_SCHEMA_DIR"] = os.path.join(src, "schemas")
    ca = os.path.join(d, "ca.crt")
    open(ca, "w").write("stand-in\n")
    env["KRIB_KAFKA_PROPERTIES"] += ",ssl.ca.location=" + ca
    r = subprocess.run([krib, "--check-config", "-c", path], env=env, capture_output=True, text=True)
    print(r.stdout, r.stderr, sep="")
    assert r.returncode == 0 and "configuration OK" in r.stdout, "krib --check-config rejected the Kubernetes configuration"
    r = subprocess.run([krib, "--print-config", "-c", path], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    want = ('kafka.properties = ["security.protocol=SASL_SSL", "sasl.mechanisms=SCRAM-SHA-512", '
            '"ssl.ca.location=%s", "group.instance.id=krib-0", "session.timeout.ms=30000", '
            '"sasl.username=from-secret"];' % ca)
    assert want in r.stdout, r.stdout
    # The StatefulSet's variable merged with the ConfigMap, and said so.
    assert "KRIB_KAFKA_PROPERTIES: kafka.properties: group.instance.id=krib-0 added" in r.stderr, r.stderr
    assert "from-secret" not in r.stdout.replace('redis.username = "from-secret"', "").replace("sasl.username=from-secret", ""), "secret printed"
    probe = c["livenessProbe"]["httpGet"]["path"], c["readinessProbe"]["httpGet"]["path"]
    assert probe == ("/healthz", "/readyz"), probe
print("kubernetes configuration OK")
PY

step "promtool check rules"
promtool check rules "$src/deploy/prometheus/alerts.yml" || fail=1

[ "$fail" = 0 ] && echo "deploy checks passed" || { echo "deploy checks FAILED"; exit 1; }
