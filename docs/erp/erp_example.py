#!/usr/bin/env python3
"""An ERP's side of poolfin, on a plain Kafka client: confluent-kafka (librdkafka).

It imports nothing of poolfin: everything a core enterprise's integrator needs is here and in
docs/erp/GUIDE.md. As the core enterprise's ERP it onboards a supplier (which opens the pool
`CORE/SUPPLIER`), books two settlement slips, publishes a payment that writes off the first,
and after each reads the pool's position on credit.positions.v1. Every message is signed by
the core enterprise's Ed25519 key and keyed by its pool_id.

    python docs/erp/erp_example.py --bootstrap localhost:9092 --core CE-1 --supplier S-1 \
        --key-id CE-1-k1 --private-key ce-1.key

The private key file holds the raw 32-byte Ed25519 seed as base64url (the public half is
registered with poolfin for the core enterprise: `poolfin keys propose --role core_enterprise`
+ `approve`, or the trust file).

It prints one JSON line per step; the last is the pool's position after the payment. Exit 0
once it is read, 1 when poolfin refused a message (its dead letter's reason is printed), 2 on
a timeout.

Four rules an integrator must get right (each is checked by poolfin):
1. Sign the canonical bytes: the whole message without `signature`, JSON with keys sorted,
   no whitespace, UTF-8; put `ed25519:<key_id>:<base64url signature>` in `signature`.
2. Key every record by its `pool_id` (UTF-8), with the murmur2 partitioner
   (`partitioner: murmur2_random` in librdkafka); any other key is dead-lettered
   `key_mismatch`.
3. Amounts are decimal strings with at most two decimals ("100000.00"), never JSON numbers.
4. Topics are not ordered against each other: wait for the pool to open (its first position)
   before booking slips on it.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import sys
import time
import uuid
from typing import Any
from zoneinfo import ZoneInfo

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

SUPPLIERS = "erp.suppliers.v1"
SLIPS = "erp.settlement-slips.v1"
PAYMENTS = "erp.payments.v1"
POSITIONS = "credit.positions.v1"  # the pool's position after each change (credit)
REJECTED = "intake.rejected.v1"  # where intake dead-letters what it refuses from an ERP
SHANGHAI = ZoneInfo("Asia/Shanghai")  # poolfin's business day


class Refused(Exception):
    """poolfin dead-lettered one of our messages."""

    def __init__(self, letter: dict[str, Any]) -> None:
        super().__init__(f"{letter.get('reason')}: {letter.get('detail')}")
        self.letter = letter


def canonical(document: dict[str, Any]) -> bytes:
    unsigned = {k: v for k, v in document.items() if k != "signature"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign(document: dict[str, Any], key_id: str, key: Ed25519PrivateKey) -> dict[str, Any]:
    raw = key.sign(canonical(document))
    value = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return {**document, "signature": f"ed25519:{key_id}:{value}"}


def envelope(kind: str, pool_id: str, source: str, **fields: Any) -> dict[str, Any]:
    """A message with its envelope: a new event_id (the dedupe key everywhere), when it
    happened (now, within a day of its arrival), who produced it and its pool."""
    return {
        "event_id": f"{source}:{uuid.uuid4()}",
        "type": kind,
        "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
        "source": source,
        "pool_id": pool_id,
        "schema_version": 1,
        **fields,
    }


class Erp:
    """Publishes as one core enterprise and reads what poolfin answers."""

    def __init__(self, bootstrap: str, core: str, key_id: str, key: Ed25519PrivateKey) -> None:
        self.core, self.key_id, self.key = core, key_id, key
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                # The Java client's murmur2, as poolfin's producers: one pool, one partition.
                "partitioner": "murmur2_random",
                "acks": "all",
            }
        )
        # Reads positions and dead letters from their current end: assigned partitions, not a
        # group subscription, so it reads at once (no group join; see the guide, section 6).
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"{core}-erp-example",
                "enable.auto.commit": False,
            }
        )
        assigned = []
        for topic in (POSITIONS, REJECTED):
            metadata = self.consumer.list_topics(topic, timeout=10)
            for partition in metadata.topics[topic].partitions:
                _, end = self.consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=10
                )
                assigned.append(TopicPartition(topic, partition, end))
        self.consumer.assign(assigned)
        self.positions: dict[str, dict[str, Any]] = {}  # correlation id -> first position
        self.refusals: dict[str, dict[str, Any]] = {}  # event id -> dead letter

    def publish(self, topic: str, document: dict[str, Any]) -> dict[str, Any]:
        """Sign, publish keyed by pool_id, and wait for the broker's acknowledgement."""
        signed = sign(document, self.key_id, self.key)
        failed: list[KafkaError] = []

        def delivered(error: KafkaError | None, _: Message) -> None:
            if error is not None:
                failed.append(error)

        self.producer.produce(
            topic,
            key=str(signed["pool_id"]).encode(),
            value=json.dumps(signed).encode(),
            on_delivery=delivered,
        )
        if self.producer.flush(30) != 0 or failed:
            raise RuntimeError(f"not acknowledged by the broker: {failed or 'timeout'}")
        return signed

    def position_after(self, event: dict[str, Any], deadline: float) -> dict[str, Any]:
        """The pool's first position caused by `event` (its correlation_id is the event's,
        when the event sets none); Refused when intake dead-lettered it instead."""
        wanted = event.get("correlation_id") or event["event_id"]
        while time.monotonic() < deadline:
            if wanted in self.positions:
                return self.positions[wanted]
            if event["event_id"] in self.refusals:
                raise Refused(self.refusals[event["event_id"]])
            record = self.consumer.poll(0.5)
            value = None if record is None or record.error() else record.value()
            if record is None or value is None:
                continue
            body = json.loads(value)
            if record.topic() == POSITIONS and body.get("pool_id") == event["pool_id"]:
                self.positions.setdefault(str(body.get("correlation_id")), body)
            elif record.topic() == REJECTED and body.get("reason") != "replayed":
                # `replayed`: a retry of a message already taken; its first effect stands.
                self.refusals.setdefault(str(body.get("event_id")), body)
        raise TimeoutError(f"no position for {event['type']} {event['event_id']}")

    def close(self) -> None:
        self.consumer.close()


FIGURES = ("water_level", "borrowing_base", "available", "loan_balance", "standing")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--core", required=True, help="the core enterprise (buyer) id")
    parser.add_argument("--supplier", required=True, help="the supplier id")
    parser.add_argument("--key-id", required=True, help="the core enterprise's key id")
    parser.add_argument("--private-key", required=True, help="file: base64url Ed25519 seed")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait in all")
    args = parser.parse_args()

    with open(args.private_key) as file:
        seed = file.read().strip()
    key = Ed25519PrivateKey.from_private_bytes(
        base64.urlsafe_b64decode(seed + "=" * (-len(seed) % 4))
    )
    core, supplier = args.core, args.supplier
    pool_id = f"{core}/{supplier}"
    today = dt.datetime.now(SHANGHAI).date()  # the business day the platform checks dates by
    run = uuid.uuid4().hex[:8]
    slips = {f"SS-{run}-1": "100000.00", f"SS-{run}-2": "50000.00"}
    deadline = time.monotonic() + args.timeout
    erp = Erp(args.bootstrap, core, args.key_id, key)

    def step(name: str, topic: str, document: dict[str, Any]) -> dict[str, Any]:
        event = erp.publish(topic, document)
        position = erp.position_after(event, deadline)
        figures = {k: position.get(k) for k in FIGURES}
        print(json.dumps({"step": name, "event_id": event["event_id"], **figures}), flush=True)
        return position

    try:
        # 1. Onboarding opens the pool; wait for it before anything else names the pool.
        step(
            "onboarded",
            SUPPLIERS,
            envelope(
                "SupplierOnboarded",
                pool_id,
                core,
                core_enterprise_id=core,
                supplier_id=supplier,
                supplier_name=f"Supplier {supplier}",
            ),
        )
        # 2. Confirmed payables (结算单) enter the pool: the water level rises.
        for receivable_id, amount in slips.items():
            step(
                f"slip {receivable_id}",
                SLIPS,
                envelope(
                    "SettlementSlipIssued",
                    pool_id,
                    core,
                    receivable_id=receivable_id,
                    amount=amount,
                    currency="CNY",
                    issued_on=today.isoformat(),
                    due_on=(today + dt.timedelta(days=60)).isoformat(),
                ),
            )
        # 3. The buyer pays into the controlled account and writes off the first slip (核销).
        first = next(iter(slips))
        position = step(
            "paid",
            PAYMENTS,
            envelope(
                "PaymentReceived",
                pool_id,
                core,
                payment_id=f"PAY-{run}-1",
                amount=slips[first],
                currency="CNY",
                receivable_ids=[first],
                paid_on=today.isoformat(),
            ),
        )
    except Refused as refused:
        print(json.dumps({"refused": refused.letter}), file=sys.stderr)
        return 1
    except TimeoutError as late:
        print(f"error: {late}", file=sys.stderr)
        return 2
    finally:
        erp.close()
    print(json.dumps({"pool_id": pool_id, **{k: position.get(k) for k in FIGURES}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
