#!/usr/bin/env python3
"""A small Confluent Schema Registry for krib's tests (no real registry can
be installed here). It implements what the official client's
SchemaRegistryClient and AvroSerializer use, and what krib reads:

  POST /subjects/<subject>/versions     register (same schema -> same id)
  POST /subjects/<subject>              look a schema up
  GET  /subjects, /subjects/<s>/versions, /subjects/<s>/versions/<v|latest>
  GET  /schemas/ids/<id>                krib's only call
  GET  /config, /config/<subject>

State survives restarts (--store FILE), so a test can stop the registry and
start it again. The tests drive it with confluent-kafka's own client, which
is what validates it."""
import argparse
import json
import os
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CT = "application/vnd.schemaregistry.v1+json"


class Store:
    def __init__(self, path):
        self.path = path
        self.schemas = {}   # id -> {"schema": str, "schemaType": str}
        self.subjects = {}  # subject -> [id, ...] (version = index + 1)
        if path and os.path.exists(path):
            with open(path) as f:
                d = json.load(f)
            self.schemas = {int(k): v for k, v in d["schemas"].items()}
            self.subjects = d["subjects"]

    def save(self):
        if not self.path:
            return
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"schemas": self.schemas, "subjects": self.subjects}, f)
        os.replace(tmp, self.path)

    @staticmethod
    def canon(schema):
        try:
            return json.dumps(json.loads(schema), sort_keys=True, separators=(",", ":"))
        except ValueError:
            return schema

    def find(self, schema, stype):
        c = self.canon(schema)
        for i, s in self.schemas.items():
            if self.canon(s["schema"]) == c and s.get("schemaType", "AVRO") == stype:
                return i
        return None

    def register(self, subject, schema, stype):
        i = self.find(schema, stype)
        if i is None:
            i = max(self.schemas, default=0) + 1
            self.schemas[i] = {"schema": schema, "schemaType": stype}
        ids = self.subjects.setdefault(subject, [])
        if i not in ids:
            ids.append(i)
        self.save()
        return i


class Handler(BaseHTTPRequestHandler):
    store = None
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("registry: " + fmt % args + "\n")

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", CT)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def not_found(self, code=40401, msg="Subject not found"):
        self.reply(404, {"error_code": code, "message": msg})

    def version_body(self, subject, version, i):
        s = self.store.schemas[i]
        body = {"subject": subject, "version": version, "id": i, "schema": s["schema"]}
        if s.get("schemaType", "AVRO") != "AVRO":
            body["schemaType"] = s["schemaType"]
        return body

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"{}")

    def do_GET(self):
        path = self.path.split("?")[0].rstrip("/")
        m = re.fullmatch(r"/schemas/ids/(\d+)", path)
        if m:
            s = self.store.schemas.get(int(m.group(1)))
            if not s:
                return self.not_found(40403, "Schema not found")
            body = {"schema": s["schema"]}
            if s.get("schemaType", "AVRO") != "AVRO":
                body["schemaType"] = s["schemaType"]
            return self.reply(200, body)
        if path == "/subjects":
            return self.reply(200, sorted(self.store.subjects))
        m = re.fullmatch(r"/subjects/([^/]+)/versions", path)
        if m:
            ids = self.store.subjects.get(m.group(1))
            return self.reply(200, list(range(1, len(ids) + 1))) if ids else self.not_found()
        m = re.fullmatch(r"/subjects/([^/]+)/versions/(latest|\d+)", path)
        if m:
            ids = self.store.subjects.get(m.group(1))
            if not ids:
                return self.not_found()
            v = len(ids) if m.group(2) == "latest" else int(m.group(2))
            if not 1 <= v <= len(ids):
                return self.not_found(40402, "Version not found")
            return self.reply(200, self.version_body(m.group(1), v, ids[v - 1]))
        if re.fullmatch(r"/config(/[^/]+)?", path):
            return self.reply(200, {"compatibilityLevel": "BACKWARD"})
        return self.not_found(404, "no such endpoint")

    def do_POST(self):
        path = self.path.split("?")[0].rstrip("/")
        m = re.fullmatch(r"/subjects/([^/]+)/versions", path)
        if m:
            b = self.body()
            i = self.store.register(m.group(1), b["schema"], b.get("schemaType", "AVRO"))
            return self.reply(200, {"id": i})
        m = re.fullmatch(r"/subjects/([^/]+)", path)
        if m:
            b = self.body()
            ids = self.store.subjects.get(m.group(1), [])
            i = self.store.find(b["schema"], b.get("schemaType", "AVRO"))
            if i is None or i not in ids:
                return self.not_found(40403, "Schema not found")
            return self.reply(200, self.version_body(m.group(1), ids.index(i) + 1, i))
        return self.not_found(404, "no such endpoint")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--store")
    a = ap.parse_args()
    Handler.store = Store(a.store)
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.serve_forever()


if __name__ == "__main__":
    main()
