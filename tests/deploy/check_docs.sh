#!/usr/bin/env bash
# Docs that agree with the code, checked offline:
# - every key of `krib --help-config` (and every key of a route) is in
#   config/krib.conf (the example that shows them all) and in
#   docs/CONFIGURATION.md with the default the code has;
# - every metric family krib serves (connector/metrics.c, inspect.c) is in
#   docs/OPERATIONS.md, and so is every alert of deploy/prometheus/alerts.yml;
# - every metric the alerts and the Grafana dashboard use exists (krib's or
#   a named exporter's), and every dashboard query parses (promtool);
# - no doc calls a built feature "not supported yet" / "planned";
# - every Redis command krib's sources send (connector/*.c, fence.lua) is on
#   OPERATIONS.md's ACL line or named in the paragraph after it, every
#   command on the line is sent, and check_ops.c uses the same line;
# - ARCHITECTURE.md lists exactly the modules that have no unit suite.
# usage: check_docs.sh SOURCE_DIR KRIB_BINARY
set -euo pipefail
src=$1 krib=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$krib" --help-config >"$tmp/help"
"$krib" --print-config -c "$src/config/krib.conf" >"$tmp/printed" 2>/dev/null
python3 - "$src" "$tmp" <<'PY'
import glob, json, os, re, subprocess, sys
import yaml
src, tmp = sys.argv[1], sys.argv[2]
fail = []
help_lines = open(os.path.join(tmp, "help")).read().splitlines()
keys, route_keys, defaults = [], [], {}
for line in help_lines:
    if not line or line[0] == " ":
        continue
    name = line.split()[0]
    if name.startswith("routes[]."):
        route_keys.append(name[len("routes[]."):])
    elif name != "routes":
        keys.append(name)
        m = re.search(r'default="([^"]*)"', line)
        defaults[name] = m.group(1) if m else None
assert len(keys) > 50 and len(route_keys) > 10, "could not read --help-config"

conf = open(os.path.join(src, "config", "krib.conf")).read()
def in_group(group, leaf, text):
    # The leaf as a setting (maybe commented out) inside `group = { ... };`.
    m = re.search(r"(?ms)^%s\s*=\s*\{(.*?)^\};" % re.escape(group), text)
    return bool(m and re.search(r"(?m)^\s*#?\s*%s\s*=" % re.escape(leaf), m.group(1)))
for k in keys:
    group, leaf = k.split(".", 1)
    if not in_group(group, leaf, conf):
        fail.append("config/krib.conf does not show %s" % k)
m = re.search(r"(?ms)^#?\s*routes\s*=\s*\((.*?)\);", conf)
for rk in route_keys:
    if not m or not re.search(r"\b%s\s*=" % re.escape(rk), m.group(1)):
        fail.append("config/krib.conf's routes example does not show %s" % rk)

ref = open(os.path.join(src, "docs", "CONFIGURATION.md")).read()
for k in keys:
    row = re.search(r"(?m)^\| `%s` \| [^|]* \| `([^`]*)` \|" % re.escape(k), ref)
    if not row:
        fail.append("docs/CONFIGURATION.md has no row for %s" % k)
    elif row.group(1) != defaults[k]:
        fail.append("docs/CONFIGURATION.md: %s defaults to '%s', the code to '%s'" % (k, row.group(1), defaults[k]))
for rk in route_keys:
    if not re.search(r"(?m)^\| `routes\[\]\.%s` \|" % re.escape(rk), ref):
        fail.append("docs/CONFIGURATION.md has no row for routes[].%s" % rk)

printed = open(os.path.join(tmp, "printed")).read()
assert "fetch.wait.max.ms=" in printed, "could not read krib's librdkafka defaults"
for name, value in re.findall(r"(?m)^#   ([a-z.]+)=(\S*)  \(", printed):
    if not re.search(r"(?m)^\| `%s` \| `%s` \|" % (re.escape(name), re.escape(value)), ref):
        fail.append("docs/CONFIGURATION.md does not give krib's librdkafka default %s=%s" % (name, value))

mc = open(os.path.join(src, "connector", "metrics.c")).read() + open(os.path.join(src, "connector", "inspect.c")).read()
families = set(re.sub(r"_(bucket|sum|count)$", "", n) for n in re.findall(r'"((?:krib|process)_[a-z0-9_]+)', mc))
ops = open(os.path.join(src, "docs", "OPERATIONS.md")).read()
for f in sorted(families):
    if not re.search(r"`%s[`{]" % re.escape(f), ops):
        fail.append("docs/OPERATIONS.md does not list the metric %s" % f)

external = {"up", "kafka_consumergroup_lag_sum"}
def metric_names(expr):
    expr = re.sub(r'"[^"]*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    words = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", expr))
    fn = {"sum", "max", "min", "avg", "count", "rate", "increase", "by", "without", "and", "or",
          "unless", "histogram_quantile", "absent", "le", "on", "ignoring", "group_left"}
    return {w for w in words if w not in fn and not re.fullmatch(r"[0-9.e]+", w)
            and (w.startswith("krib_") or w.startswith("process_") or w in external or "_" in w)}
def known(name):
    base = re.sub(r"_(bucket|sum|count)$", "", name)
    return name in external or name in families or base in families

rules = yaml.safe_load(open(os.path.join(src, "deploy", "prometheus", "alerts.yml")))
for g in rules["groups"]:
    for r in g["rules"]:
        if not re.search(r"(?m)^\| %s \|" % re.escape(r["alert"]), ops):
            fail.append("docs/OPERATIONS.md's alert table lacks %s" % r["alert"])
        for n in metric_names(r["expr"]):
            if not known(n):
                fail.append("alert %s uses %s, which krib does not serve" % (r["alert"], n))

dash = json.load(open(os.path.join(src, "deploy", "grafana", "krib-dashboard.json")))
for k in ("uid", "title", "panels", "schemaVersion", "templating"):
    if k not in dash:
        fail.append("dashboard lacks %s" % k)
ids, exprs = set(), []
variables = {v["name"] for v in dash["templating"]["list"]}
# krib inspect serves krib_build_info too (role="inspect"): $instance lists krib only.
inst = [v for v in dash["templating"]["list"] if v["name"] == "instance"]
if not inst or 'role="bridge"' not in json.dumps(inst[0].get("query", "")).replace('\\"', '"'):
    fail.append("dashboard: $instance must list krib_build_info{role=\"bridge\"} instances only")
for p in dash["panels"]:
    if p["id"] in ids:
        fail.append("dashboard: panel id %s twice" % p["id"])
    ids.add(p["id"])
    gp = p.get("gridPos", {})
    if not all(k in gp for k in "xywh") or gp["x"] + gp["w"] > 24:
        fail.append("dashboard: panel %r has a bad gridPos" % p["title"])
    if not p.get("targets"):
        fail.append("dashboard: panel %r has no query" % p["title"])
    for t in p.get("targets", []):
        for v in re.findall(r"\$(\w+)", t["expr"]):
            if v not in variables and not v.startswith("__"):
                fail.append("dashboard: panel %r uses undefined variable $%s" % (p["title"], v))
        exprs.append((p["title"], t["expr"]))
        for n in metric_names(t["expr"]):
            if not known(n):
                fail.append("dashboard panel %r uses %s, which krib does not serve" % (p["title"], n))
wanted = {"krib_consumer_lag", "krib_events_total", "krib_end_to_end_latency_seconds_bucket",
          "krib_redis_node_round_trips_total", "krib_redis_node_error_replies_total", "krib_redis_skew_ratio"}
used = set().union(*(metric_names(e) for _, e in exprs))
for w in sorted(wanted - used):
    fail.append("dashboard shows no %s" % w)
if not any(p["type"] == "heatmap" for p in dash["panels"]):
    fail.append("dashboard has no latency heatmap")
# promtool parses PromQL offline: every query as a recording rule.
rec = {"groups": [{"name": "dashboard", "rules": [
    {"record": "dashboard:q%d" % i,
     "expr": e.replace("$__rate_interval", "5m").replace("$instance", ".*").replace("$group", "krib")}
    for i, (_, e) in enumerate(exprs)]}]}
path = os.path.join(tmp, "dashboard-rules.yml")
yaml.safe_dump(rec, open(path, "w"))
r = subprocess.run(["promtool", "check", "rules", path], capture_output=True, text=True)
if r.returncode:
    fail.append("dashboard queries do not parse:\n" + r.stdout + r.stderr)

stale = [r"not supported yet", r"\bplanned\b", r"not built yet", r"not exported"]
for f in [os.path.join(src, "README.md")] + glob.glob(os.path.join(src, "docs", "*.md")):
    text = open(f).read()
    for pat in stale:
        for m in re.finditer(pat, text):
            line = text.count("\n", 0, m.start()) + 1
            fail.append("%s:%d says '%s'" % (os.path.relpath(f, src), line, m.group(0)))
    for m in re.finditer(r"(?m)^#+ [^\n]*#+ ", text):
        line = text.count("\n", 0, m.start()) + 1
        fail.append("%s:%d has a doubled heading" % (os.path.relpath(f, src), line))
# The ACL line: commands found where the sources send them.
sent = {}
def sends(cmd, where):
    sent.setdefault(cmd, set()).add(where)
for f in sorted(glob.glob(os.path.join(src, "connector", "*.c"))):
    t = re.sub(r"/\*.*?\*/", "", open(f).read(), flags=re.S)
    b = os.path.basename(f)
    for m in re.finditer(r'(?:krib_conn_command|krib_conn_append_fmt)\(\s*[^,]+,\s*"([A-Z]+(?: [A-Z]+\b)?)', t):
        sends(m.group(1), b)
    for m in re.finditer(r'\bARG\("([A-Z]+)"', t):
        sends(m.group(1), b)
    for m in re.finditer(r'\b(?:argv|a\d)\[\] = \{"([A-Z]+)"', t):
        sends(m.group(1), b)
    for m in re.finditer(r"_cmds\[\] = \{([^}]*)\}", t):
        for c in re.findall(r'"([A-Z]+(?: [A-Z]+\b)?)', m.group(1)):
            sends(c, b)
for m in re.finditer(r"redis\.call\('([A-Z]+)'", open(os.path.join(src, "connector", "fence.lua")).read()):
    sends(m.group(1), "fence.lua")
if len(sent) < 15:
    fail.append("found only %d Redis commands in connector/: the patterns no longer match the code" % len(sent))
ops = open(os.path.join(src, "docs", "OPERATIONS.md")).read()
m = re.search(r"(?s)```\nACL SETUSER krib on >PASSWORD (.*?)\n```\n(.*?)\n\n", ops)
if not m:
    fail.append("OPERATIONS.md: no ACL SETUSER krib line")
else:
    rule = " ".join(m.group(1).replace("\\", " ").split())
    line_cmds = set(re.findall(r"\+([a-z|]+)", rule))
    named = {c for span in re.findall(r"`([^`]*)`", m.group(2)) for c in re.findall(r"\+([a-z|]+)", span)}
    def acl_name(c):
        w = c.lower().split()
        return w[0] + "|" + w[1] if w[0] in ("cluster", "script") and len(w) > 1 else w[0]
    need = {acl_name(c): sorted(w) for c, w in sent.items() if c != "AUTH"}  # AUTH: always allowed
    for c, w in sorted(need.items()):
        if c not in line_cmds and c not in named:
            fail.append("OPERATIONS.md ACL: %s (sent by %s) is neither on the line nor named after it" % (c, ", ".join(w)))
    for c in sorted(line_cmds - set(need)):
        fail.append("OPERATIONS.md ACL line grants +%s, which krib never sends" % c)
    ops_c = open(os.path.join(src, "tests", "integration", "check_ops.c")).read()
    r2 = re.search(r'#define ACL_RULE\s*\\\s*((?:"[^"]*"\s*\\?\s*)+)', ops_c)
    got = " ".join("".join(re.findall(r'"([^"]*)"', r2.group(1))).split()) if r2 else ""
    if got.replace("on ", "", 1) != rule:
        fail.append("check_ops.c ACL_RULE differs from OPERATIONS.md's line:\n  %s\n  %s" % (got, rule))
# Modules without a unit suite: exactly those ARCHITECTURE.md lists.
arch = open(os.path.join(src, "docs", "ARCHITECTURE.md")).read()
m = re.search(r"(?s)Modules without a unit suite of their own, and what tests them: (.*?)\n\n", arch)
listed = set(re.findall(r"`(\w+)`\s+\(", m.group(1))) if m else set()
bare = {os.path.basename(f)[:-2] for f in glob.glob(os.path.join(src, "connector", "*.c"))
        if not os.path.exists(os.path.join(src, "tests", "unit", "check_" + os.path.basename(f)))}
for mod in sorted(bare - listed):
    fail.append("ARCHITECTURE.md: %s has no unit suite and is not listed as such" % mod)
for mod in sorted(listed - bare):
    fail.append("ARCHITECTURE.md lists %s as without a unit suite, but tests/unit/check_%s.c exists" % (mod, mod))
for line in fail:
    print("FAIL:", line)
print("%d config keys, %d route keys, %d metric families, %d alerts, %d dashboard queries, %d Redis commands checked"
      % (len(keys), len(route_keys), len(families), sum(len(g["rules"]) for g in rules["groups"]), len(exprs), len(sent)))
sys.exit(1 if fail else 0)
PY
