#!/usr/bin/env python3
"""Produces Debezium-shaped change events (envelope: before, after, source,
op, ts_ms) in Avro with Confluent framing, through the official client:
confluent-kafka's SchemaRegistryClient and AvroSerializer (which register
the key and value schemas). --evolve adds a column with a default to the
row schema (a compatible change: a new schema id mid-stream).

usage: produce_debezium_avro.py --brokers B --registry URL --topic T
                                --first N --count C --lsn L [--evolve]"""
import argparse
import json
import sys

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext


def row_schema(evolve):
    fields = [{"name": "id", "type": "long"},
              {"name": "name", "type": "string"},
              {"name": "version", "type": "long"}]
    if evolve:
        fields.append({"name": "tier", "type": "string", "default": "basic"})
    return {"type": "record", "name": "Value", "namespace": "pgavro.public.users",
            "fields": fields}


def envelope_schema(evolve):
    source = {"type": "record", "name": "Source", "namespace": "io.debezium.connector.postgresql",
              "fields": [{"name": "version", "type": "string"},
                         {"name": "connector", "type": "string"},
                         {"name": "name", "type": "string"},
                         {"name": "ts_ms", "type": "long"},
                         {"name": "db", "type": "string"},
                         {"name": "schema", "type": "string"},
                         {"name": "table", "type": "string"},
                         {"name": "lsn", "type": ["null", "long"], "default": None}]}
    row = row_schema(evolve)
    return {"type": "record", "name": "Envelope", "namespace": "pgavro.public.users",
            "fields": [{"name": "before", "type": ["null", row], "default": None},
                       {"name": "after", "type": ["null", "pgavro.public.users.Value"],
                        "default": None},
                       {"name": "source", "type": source},
                       {"name": "op", "type": "string"},
                       {"name": "ts_ms", "type": ["null", "long"], "default": None}]}


KEY_SCHEMA = {"type": "record", "name": "Key", "namespace": "pgavro.public.users",
              "fields": [{"name": "id", "type": "long"}]}


def main():
    ap = argparse.ArgumentParser()
    for o in ("--brokers", "--registry", "--topic"):
        ap.add_argument(o, required=True)
    ap.add_argument("--first", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--lsn", type=int, required=True)
    ap.add_argument("--evolve", action="store_true")
    a = ap.parse_args()
    sr = SchemaRegistryClient({"url": a.registry})
    vser = AvroSerializer(sr, json.dumps(envelope_schema(a.evolve)))
    kser = AvroSerializer(sr, json.dumps(KEY_SCHEMA))
    p = Producer({"bootstrap.servers": a.brokers, "enable.idempotence": True})
    failed = []
    for n in range(a.count):
        i = a.first + n
        row = {"id": i, "name": f"user{i}", "version": 2}
        if a.evolve:
            row["tier"] = "gold"
        ev = {"before": None, "after": row, "op": "u", "ts_ms": 1700000000000,
              "source": {"version": "3.6.1.Final", "connector": "postgresql", "name": "pgavro",
                         "ts_ms": 1700000000000, "db": "krib", "schema": "public",
                         "table": "users", "lsn": a.lsn + n}}
        p.produce(a.topic,
                  key=kser({"id": i}, SerializationContext(a.topic, MessageField.KEY)),
                  value=vser(ev, SerializationContext(a.topic, MessageField.VALUE)),
                  on_delivery=lambda err, msg: failed.append(err) if err else None)
        p.poll(0)
    p.flush(30)
    if failed:
        print(f"{len(failed)} deliveries failed: {failed[0]}", file=sys.stderr)
        return 1
    print(json.dumps({"produced": a.count,
                      "subjects": sr.get_subjects()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
