#!/usr/bin/env python3
"""Writes docs/CONFIGURATION.md from `krib --help-config` (conf.c's table is
the one description). usage: gen_config_doc.py KRIB_BINARY SOURCE_DIR"""
import re, subprocess, sys

krib, src = sys.argv[1], sys.argv[2]
lines = subprocess.run([krib, "--help-config"], capture_output=True, text=True, check=True).stdout.splitlines()
rows, cur = [], None
for l in lines:
    if l and l[0] != " ":
        cur = {"head": l, "doc": ""}
        rows.append(cur)
    else:
        cur["doc"] += (" " if cur["doc"] else "") + l.strip()
out = ["""# Configuration reference

Every key krib reads, as `krib --help-config` prints it (that table in
`connector/conf.c` is the one description: defaults, bounds, parsing and
this page follow it; `tests/deploy/check_docs.sh` fails when a key is
missing here or its default differs; `tests/deploy/gen_config_doc.py`
rewrites this page from it). `config/krib.conf` shows each key in context.
Environment: `KRIB_<GROUP>_<KEY>`; lists comma-separated (`\\,` for a comma
in a value); `kafka.properties` and `redis.address_map` merge with the
file's per name (docs/OPERATIONS.md, "Configure").

| Key | Type | Default | Environment | Meaning |
|---|---|---|---|---|"""]
route = []
for r in rows:
    h = r["head"]
    name = h.split()[0]
    if name == "routes":
        continue
    typ = h.split()[1]
    if name.startswith("routes[]."):
        route.append((name, typ, r["doc"]))
        continue
    d = re.search(r'default="([^"]*)"', h).group(1)
    rng = re.search(r"range=\[([^\]]*)\]", h)
    vals = re.search(r"values=(\S+)", h)
    env = re.search(r"env=(\S+)", h).group(1)
    extra = ""
    if rng:
        extra = " Range [%s]." % rng.group(1).replace(",", ", ")
    if vals:
        extra = " One of %s." % ", ".join("`%s`" % v for v in vals.group(1).split("|"))
    sec = " (secret)" if "(secret)" in h else ""
    doc = (r["doc"] + extra).replace("|", "\\|")
    out.append("| `%s` | %s | `%s` | `%s`%s | %s |" % (name, typ, d, env, sec, doc))
out.append("""
## Routes

`routes` is a list of groups, one per CDC route (docs/CDC.md); each takes
these keys:

| Key | Type | Meaning |
|---|---|---|""")
for n, t, d in route:
    out.append("| `%s` | %s | %s |" % (n, t, d.replace("|", "\\|")))
# krib's librdkafka consumer defaults, with their reasons, as --print-config
# lists them (conf.c's krib_conf_kafka_defaults).
printed = subprocess.run([krib, "--print-config", "-c", src + "/config/krib.conf"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
out.append("""
## librdkafka consumer defaults

krib sets these on its consumer before `kafka.properties`, which overrides
any of them (`krib --print-config` lists them; a property the linked
librdkafka does not know is skipped with an info line):

| Property | krib's value | Why |
|---|---|---|""")
for l in printed:
    m = re.match(r"^#   ([a-z.]+)=(\S*)  \((.*)\)$", l)
    if m:
        out.append("| `%s` | `%s` | %s |" % (m.group(1), m.group(2), m.group(3).replace("|", "\\|")))
open(src + "/docs/CONFIGURATION.md", "w").write("\n".join(out) + "\n")
