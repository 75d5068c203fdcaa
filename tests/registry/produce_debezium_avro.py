#!/usr/bin/env python3
"""Produces Debezium-shaped change events (envelope: before, after, source,
op, ts_ms) in Avro with Confluent framing, through the official client:
confluent-kafka's SchemaRegistryClient and AvroSerializer (which register
the key and value schemas). --evolve adds a column with a default to the
row schema (a compatible change: a new schema id mid-stream). --numeric
makes the primary key a NUMERIC(10,0) and adds a NUMERIC(10,2) price and a
bytea photo, as Debezium's AvroConverter writes them with its default
decimal.handling.mode=precise: Avro bytes with the decimal logical type and
Connect's Decimal attributes, and plain bytes.

usage: produce_debezium_avro.py --brokers B --registry URL --topic T
                                --first N --count C --lsn L [--evolve] [--numeric]"""
import argparse
import decimal
import json
import sys

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext


def connect_decimal(scale, precision):
    return {"type": "bytes", "scale": scale, "precision": precision, "connect.version": 1,
            "connect.parameters": {"scale": str(scale),
                                   "connect.decimal.precision": str(precision)},
            "connect.name": "org.apache.kafka.connect.data.Decimal", "logicalType": "decimal"}


def row_schema(evolve, numeric=False):
    fields = [{"name": "id", "type": connect_decimal(0, 10) if numeric else "long"},
              {"name": "name", "type": "string"},
              {"name": "version", "type": "long"}]
    if numeric:
        fields.append({"name": "price", "type": ["null", connect_decimal(2, 10)],
                       "default": None})
        fields.append({"name": "photo", "type": ["null", "bytes"], "default": None})
    if evolve:
        fields.append({"name": "tier", "type": "string", "default": "basic"})
    return {"type": "record", "name": "Value", "namespace": "pgavro.public.users",
            "fields": fields}


def envelope_schema(evolve, numeric=False):
    source = {"type": "record", "name": "Source", "namespace": "io.debezium.connector.postgresql",
              "fields": [{"name": "version", "type": "string"},
                         {"name": "connector", "type": "string"},
                         {"name": "name", "type": "string"},
                         {"name": "ts_ms", "type": "long"},
                         {"name": "db", "type": "string"},
                         {"name": "schema", "type": "string"},
                         {"name": "table", "type": "string"},
                         {"name": "lsn", "type": ["null", "long"], "default": None}]}
    row = row_schema(evolve, numeric)
    return {"type": "record", "name": "Envelope", "namespace": "pgavro.public.users",
            "fields": [{"name": "before", "type": ["null", row], "default": None},
                       {"name": "after", "type": ["null", "pgavro.public.users.Value"],
                        "default": None},
                       {"name": "source", "type": source},
                       {"name": "op", "type": "string"},
                       {"name": "ts_ms", "type": ["null", "long"], "default": None}]}


KEY_SCHEMA = {"type": "record", "name": "Key", "namespace": "pgavro.public.users",
              "fields": [{"name": "id", "type": "long"}]}
NUMERIC_KEY_SCHEMA = {"type": "record", "name": "Key", "namespace": "pgavro.public.users",
                      "fields": [{"name": "id", "type": connect_decimal(0, 10)}]}


def main():
    ap = argparse.ArgumentParser()
    for o in ("--brokers", "--registry", "--topic"):
        ap.add_argument(o, required=True)
    ap.add_argument("--first", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--lsn", type=int, required=True)
    ap.add_argument("--evolve", action="store_true")
    ap.add_argument("--numeric", action="store_true")
    a = ap.parse_args()
    sr = SchemaRegistryClient({"url": a.registry})
    vser = AvroSerializer(sr, json.dumps(envelope_schema(a.evolve, a.numeric)))
    kser = AvroSerializer(sr, json.dumps(NUMERIC_KEY_SCHEMA if a.numeric else KEY_SCHEMA))
    p = Producer({"bootstrap.servers": a.brokers, "enable.idempotence": True})
    failed = []
    for n in range(a.count):
        i = a.first + n
        key_id = decimal.Decimal(i) if a.numeric else i
        row = {"id": key_id, "name": f"user{i}", "version": 2}
        if a.evolve:
            row["tier"] = "gold"
        if a.numeric:
            row["price"] = decimal.Decimal(i) / 100
            row["photo"] = bytes([0xff, 0x00, i % 256])
        ev = {"before": None, "after": row, "op": "u", "ts_ms": 1700000000000,
              "source": {"version": "3.6.1.Final", "connector": "postgresql", "name": "pgavro",
                         "ts_ms": 1700000000000, "db": "krib", "schema": "public",
                         "table": "users", "lsn": a.lsn + n}}
        p.produce(a.topic,
                  key=kser({"id": key_id}, SerializationContext(a.topic, MessageField.KEY)),
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
