#!/usr/bin/env python3
"""A reference funder for poolfin, on a plain Kafka client: confluent-kafka (librdkafka).

It imports nothing of poolfin: everything a bank's integrator needs is here and in
docs/funders/GUIDE.md. It reads loan requests from its own topic, decides each (here: disburse
anything up to --max-amount, refuse the rest), and answers on funding.responses.v1 with a
FunderResponse signed by its Ed25519 key.

    python docs/funders/reference_funder.py --bootstrap localhost:9092 --funder bank-ref \
        --key-id bank-ref-k1 --private-key bank-ref.key [--max-amount 5000000.00] [--once]

The private key file holds the raw 32-byte Ed25519 seed as base64url (the public half is
registered with poolfin: `poolfin keys propose` + `approve`, or the trust file).

Three rules an integrator must get right (each is checked by poolfin):
1. Sign the canonical bytes: the whole message without `signature`, JSON with keys sorted,
   no whitespace, UTF-8; put `ed25519:<key_id>:<base64url signature>` in `signature`.
2. Key every record by its `pool_id`, with the murmur2 partitioner
   (`partitioner: murmur2_random` in librdkafka), as the Java client and poolfin do.
3. Echo the request's `contract_hash` when you approve or disburse: with your signature,
   that is your signature of the loan contract.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import sys
import uuid
from decimal import Decimal
from zoneinfo import ZoneInfo

from confluent_kafka import Consumer, Producer, TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

RESPONSES = "funding.responses.v1"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def canonical(document: dict[str, object]) -> bytes:
    unsigned = {k: v for k, v in document.items() if k != "signature"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign(document: dict[str, object], key_id: str, key: Ed25519PrivateKey) -> dict[str, object]:
    raw = key.sign(canonical(document))
    value = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return {**document, "signature": f"ed25519:{key_id}:{value}"}


def answer(request: dict[str, object], funder: str, max_amount: Decimal) -> dict[str, object]:
    """The bank's decision: disburse today (Shanghai) up to `max_amount`, else refuse."""
    disburse = Decimal(str(request["amount"])) <= max_amount
    response: dict[str, object] = {
        "event_id": str(uuid.uuid4()),
        "type": "FunderResponse",
        "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
        "source": funder,
        "pool_id": request["pool_id"],
        "schema_version": 1,
        "correlation_id": request.get("correlation_id"),
        "causation_id": request["event_id"],
        "request_id": request["request_id"],
        "funder_id": funder,
        "decision": "disbursed" if disburse else "rejected",
    }
    if disburse:
        response["amount"] = request["amount"]
        response["value_date"] = dt.datetime.now(SHANGHAI).date().isoformat()
        response["contract_hash"] = request.get("contract_hash")
    else:
        response["reason"] = f"above this bank's ticket size of {max_amount}"
    return response


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--funder", required=True)
    parser.add_argument("--key-id", required=True)
    parser.add_argument("--private-key", required=True, help="file: base64url Ed25519 seed")
    parser.add_argument("--max-amount", default="5000000.00")
    parser.add_argument("--once", action="store_true", help="stop after answering one request")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait in all")
    args = parser.parse_args()

    seed = open(args.private_key).read().strip()
    key = Ed25519PrivateKey.from_private_bytes(
        base64.urlsafe_b64decode(seed + "=" * (-len(seed) % 4))
    )
    topic = f"funding.requests.{args.funder}.v1"
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": f"{args.funder}-reference",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    # One instance reads every partition of its topic: assigned, not subscribed, so it starts
    # at once (a consumer group's join is for several instances; see the guide).
    metadata = consumer.list_topics(topic, timeout=10)
    partitions = [TopicPartition(topic, p) for p in metadata.topics[topic].partitions]
    consumer.assign(partitions)
    producer = Producer(
        {"bootstrap.servers": args.bootstrap, "partitioner": "murmur2_random", "acks": "all"}
    )
    deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=args.timeout)
    answered = 0
    try:
        while dt.datetime.now(dt.UTC) < deadline:
            record = consumer.poll(0.5)
            if record is None or record.error():
                continue
            value = record.value()
            if value is None:
                continue
            request = json.loads(value)
            if request.get("type") != "FundingRequest" or request.get("funder_id") != args.funder:
                continue
            response = sign(
                answer(request, args.funder, Decimal(args.max_amount)), args.key_id, key
            )
            producer.produce(
                RESPONSES, key=str(request["pool_id"]).encode(), value=json.dumps(response).encode()
            )
            if producer.flush(10) != 0:
                print("error: the answer was not acknowledged", file=sys.stderr)
                return 1
            consumer.commit(message=record, asynchronous=False)  # answered: done with this request
            answered += 1
            print(json.dumps({"answered": request["request_id"], "decision": response["decision"]}))
            if args.once:
                return 0
    finally:
        consumer.close()
    return 0 if answered else 2


if __name__ == "__main__":
    sys.exit(main())
