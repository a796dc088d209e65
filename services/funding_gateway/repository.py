"""funding-gateway's state, set-based: `GatewayBatch` loads the requests a batch names in one
read, handlers decide in memory, `flush` writes the new requests, the answers and the new
states in one call. Storage is a port, `GatewayStore`: `PostgresGatewayStore` is SQL on the
gateway's own schema; `InMemoryGatewayStore` is the fake the handler tests run on."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Protocol

from shared.calendar import business_date
from shared.contracts import messages as m
from shared.db import Connection, columns, first_time


@dataclass(slots=True)
class InvestorContract:
    """One investor's contract for its share of a platform's loan, and its two signatures."""

    investor_id: str
    amount: Decimal
    contract: str
    contract_hash: str
    supplier_signature: dict[str, Any] | None = None
    investor_signature: dict[str, Any] | None = None

    @property
    def signed(self) -> bool:
        return self.supplier_signature is not None and self.investor_signature is not None


@dataclass(slots=True)
class Request:
    request_id: str
    pool_id: str
    funder_id: str
    supplier_id: str
    amount: Decimal
    state: str  # awaiting_supplier | sent | approved | rejected | disbursed
    requested_on: date | None = None  # the business day credit requested it on, when it said
    sent_at: datetime | None = None
    contract: str | None = None  # the loan contract (None: a request from before issue 9)
    contract_hash: str | None = None
    terms: dict[str, Any] | None = None  # the LoanRequested, as JSON
    supplier_signature: dict[str, Any] | None = None  # the signed ContractSigned, as received
    funder_signature: dict[str, Any] | None = None  # the signed approval/disbursal, as received
    raise_deadline: datetime | None = None  # a platform's raise closes unfunded then
    raised_amount: Decimal | None = None  # closed short at its deadline: what was raised
    commitments: dict[str, Decimal] = field(default_factory=dict)  # investor -> committed
    contracts: dict[str, InvestorContract] = field(default_factory=dict)  # investor -> its

    @property
    def platform(self) -> bool:
        return bool(self.terms and self.terms.get("funder_kind") == "platform")

    @property
    def committed(self) -> Decimal:
        return sum(self.commitments.values(), Decimal("0.00"))

    @property
    def lent(self) -> Decimal:
        """What the funder lends: the amount asked, or what a short raise raised."""
        return self.raised_amount if self.raised_amount is not None else self.amount

    @property
    def requested_day(self) -> date | None:
        """The business day of the request: as credit gave it, or, for a request sent without
        one (before issue 8), the day it was sent in the platform's time zone."""
        if self.requested_on is not None:
            return self.requested_on
        return business_date(self.sent_at) if self.sent_at is not None else None


@dataclass(slots=True)
class Answer:
    event_id: str
    request_id: str
    decision: str
    amount: Decimal | None
    value_date: date | None = None  # a disbursal's, as applied


@dataclass
class GatewayChanges:
    new_requests: list[Request] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    states: dict[str, str] = field(default_factory=dict)  # request id -> new state
    deadlines: dict[str, datetime] = field(default_factory=dict)  # request id -> raise deadline
    # (request id, investor id, amount, committed at, event id)
    commitments: list[tuple[str, str, Decimal, datetime, str]] = field(default_factory=list)
    new_contracts: list[tuple[str, InvestorContract]] = field(default_factory=list)
    # (request id, investor id, column, the signed message)
    contract_signatures: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)
    # request id -> (column, the signed message as received)
    signatures: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(
            self.new_requests
            or self.answers
            or self.states
            or self.signatures
            or self.deadlines
            or self.commitments
            or self.new_contracts
            or self.contract_signatures
        )


class GatewayStore(Protocol):
    async def requests(self, request_ids: Sequence[str]) -> list[Request]:
        """The requests with these ids, locked until commit."""
        ...

    async def write(self, changes: GatewayChanges) -> None: ...


class PostgresGatewayStore:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def requests(self, request_ids: Sequence[str]) -> list[Request]:
        rows = await self.conn.fetch(
            "SELECT request_id, pool_id, funder_id, supplier_id, amount, state, requested_on,"
            " sent_at, contract, contract_hash, terms, supplier_signature, funder_signature,"
            " raise_deadline, raised_amount FROM funding_requests"
            " WHERE request_id = ANY($1::text[])"
            " ORDER BY request_id FOR UPDATE",
            list(request_ids),
        )
        found = [Request(**dict(r)) for r in rows]
        platforms = [r.request_id for r in found if r.platform]
        if not platforms:  # a bank's requests: no raise to read
            return found
        for c in await self.conn.fetch(
            "SELECT request_id, investor_id, amount FROM investor_commitments"
            " WHERE request_id = ANY($1::text[]) ORDER BY request_id, committed_at, investor_id",
            platforms,
        ):
            next(r for r in found if r.request_id == c["request_id"]).commitments[
                c["investor_id"]
            ] = c["amount"]
        for c in await self.conn.fetch(
            "SELECT request_id, investor_id, amount, contract, contract_hash,"
            " supplier_signature, investor_signature FROM investor_contracts"
            " WHERE request_id = ANY($1::text[]) ORDER BY request_id, investor_id",
            platforms,
        ):
            fields = dict(c)
            request_id = fields.pop("request_id")
            for column in ("supplier_signature", "investor_signature"):
                if isinstance(fields[column], str):
                    fields[column] = json.loads(fields[column])
            next(r for r in found if r.request_id == request_id).contracts[
                fields["investor_id"]
            ] = InvestorContract(**fields)
        return found

    async def write(self, changes: GatewayChanges) -> None:
        if changes.new_requests:
            await self.conn.execute(
                "INSERT INTO funding_requests(request_id, pool_id, funder_id, supplier_id,"
                " amount, state, requested_on, sent_at, contract, contract_hash, terms)"
                " SELECT t.request_id, t.pool_id,"
                " t.funder_id, t.supplier_id, t.amount, t.state, t.requested_on,"
                " coalesce(t.sent_at, now()), t.contract, t.contract_hash, t.terms::jsonb"
                " FROM unnest($1::text[], $2::text[], $3::text[],"
                " $4::text[], $5::numeric[], $6::text[], $7::date[], $8::timestamptz[],"
                " $9::text[], $10::text[], $11::text[])"
                " AS t(request_id, pool_id, funder_id, supplier_id, amount, state, requested_on,"
                " sent_at, contract, contract_hash, terms)",
                *columns(
                    changes.new_requests,
                    "request_id",
                    "pool_id",
                    "funder_id",
                    "supplier_id",
                    "amount",
                    "state",
                    "requested_on",
                    "sent_at",
                    "contract",
                    "contract_hash",
                ),
                [
                    json.dumps(r.terms) if r.terms is not None else None
                    for r in changes.new_requests
                ],
            )
        if changes.answers:
            await self.conn.execute(
                "INSERT INTO funder_responses(event_id, request_id, decision, amount, value_date)"
                " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::numeric[],"
                " $5::date[])",
                *columns(
                    changes.answers, "event_id", "request_id", "decision", "amount", "value_date"
                ),
            )
        for request_id, signed in sorted(changes.signatures.items()):
            for column, document in signed.items():
                assert column in ("supplier_signature", "funder_signature")
                await self.conn.execute(
                    f"UPDATE funding_requests SET {column} = $2 WHERE request_id = $1",
                    request_id,
                    document,
                )
        if changes.deadlines:
            await self.conn.executemany(
                "UPDATE funding_requests SET raise_deadline = $2 WHERE request_id = $1",
                sorted(changes.deadlines.items()),
            )
        if changes.new_contracts:
            await self.conn.executemany(
                "INSERT INTO investor_contracts(request_id, investor_id, amount, contract,"
                " contract_hash) VALUES ($1, $2, $3, $4, $5)",
                [
                    (r, c.investor_id, c.amount, c.contract, c.contract_hash)
                    for r, c in changes.new_contracts
                ],
            )
        for request_id, investor_id, column, document in changes.contract_signatures:
            assert column in ("supplier_signature", "investor_signature")
            await self.conn.execute(
                f"UPDATE investor_contracts SET {column} = $3::jsonb"
                " WHERE request_id = $1 AND investor_id = $2",
                request_id,
                investor_id,
                json.dumps(document),
            )
        if changes.commitments:
            await self.conn.executemany(
                "INSERT INTO investor_commitments(request_id, investor_id, amount, committed_at,"
                " event_id) VALUES ($1, $2, $3, $4, $5)",
                changes.commitments,
            )
        if changes.states:
            ids = sorted(changes.states)
            await self.conn.execute(
                "UPDATE funding_requests SET state = t.state, updated_at = now()"
                " FROM unnest($1::text[], $2::text[]) AS t(request_id, state)"
                " WHERE funding_requests.request_id = t.request_id",
                ids,
                [changes.states[i] for i in ids],
            )


@dataclass
class InMemoryGatewayStore:
    """The fake: the gateway's tables as dicts, for handler tests without a database."""

    request_rows: dict[str, Request] = field(default_factory=dict)
    answers: list[Answer] = field(default_factory=list)

    async def requests(self, request_ids: Sequence[str]) -> list[Request]:
        return [
            dataclasses.replace(
                r,
                commitments=dict(r.commitments),
                contracts={i: dataclasses.replace(c) for i, c in r.contracts.items()},
            )
            for i in sorted(request_ids)
            if (r := self.request_rows.get(i)) is not None
        ]

    async def write(self, changes: GatewayChanges) -> None:
        for request in changes.new_requests:
            if request.request_id in self.request_rows:
                raise ValueError(f"duplicate request {request.request_id}")
            self.request_rows[request.request_id] = dataclasses.replace(
                request, sent_at=request.sent_at or datetime.now(UTC)
            )
        self.answers.extend(changes.answers)
        for request_id, signed in changes.signatures.items():
            for column, document in signed.items():
                setattr(self.request_rows[request_id], column, document)
        for request_id, deadline in changes.deadlines.items():
            self.request_rows[request_id].raise_deadline = deadline
        for request_id, investor_id, amount, _, _ in changes.commitments:
            self.request_rows[request_id].commitments[investor_id] = amount
        for request_id, contract in changes.new_contracts:
            self.request_rows[request_id].contracts[contract.investor_id] = dataclasses.replace(
                contract
            )
        for request_id, investor_id, column, document in changes.contract_signatures:
            setattr(self.request_rows[request_id].contracts[investor_id], column, document)
        for request_id, state in changes.states.items():
            self.request_rows[request_id].state = state


@dataclass
class GatewayBatch:
    store: GatewayStore | None = None  # None: PostgreSQL on the batch's connection
    today: date | None = None  # the business day (None: the calendar's, Asia/Shanghai)
    requests: dict[str, Request] = field(default_factory=dict)
    changes: GatewayChanges = field(default_factory=GatewayChanges)
    _looked_up: set[str] = field(default_factory=set)

    def _store(self, conn: Connection | None) -> GatewayStore:
        if self.store is not None:
            return self.store
        assert conn is not None, "a GatewayBatch without a store needs a connection"
        return PostgresGatewayStore(conn)

    async def prepare(self, conn: Connection | None, events: Sequence[m.Message]) -> None:
        await self._load(
            conn,
            [
                e.request_id
                for e in events
                if isinstance(
                    e,
                    m.LoanRequested
                    | m.FunderResponse
                    | m.ContractSigned
                    | m.InvestorCommitted
                    | m.InvestorContractSigned,
                )
            ],
        )

    async def _load(self, conn: Connection | None, request_ids: Iterable[str]) -> None:
        wanted = first_time(request_ids, self._looked_up)
        if wanted:
            for request in await self._store(conn).requests(wanted):
                self.requests[request.request_id] = request

    async def request(self, conn: Connection | None, request_id: str) -> Request | None:
        await self._load(conn, [request_id])
        return self.requests.get(request_id)

    def business_day(self) -> date:
        return self.today or business_date()

    def open(self, event: m.LoanRequested, contract: str, contract_hash: str) -> Request:
        """A new request, waiting for the supplier to sign its contract."""
        request = Request(
            event.request_id,
            event.pool_id,
            event.funder_id,
            event.supplier_id,
            event.amount,
            "awaiting_supplier",
            event.requested_on,
            datetime.now(UTC),
            contract,
            contract_hash,
            json.loads(event.model_dump_json()),
        )
        self.requests[request.request_id] = request
        self.changes.new_requests.append(request)
        return request

    def _set_state(self, request: Request, state: str) -> None:
        request.state = state  # a request new in this batch is inserted with it
        if request.request_id not in {r.request_id for r in self.changes.new_requests}:
            self.changes.states[request.request_id] = state

    def keep_signature(self, request: Request, column: str, document: dict[str, Any]) -> None:
        setattr(request, column, document)
        self.changes.signatures.setdefault(request.request_id, {})[column] = document

    def supplier_signed(
        self, request: Request, document: dict[str, Any] | None, raise_deadline: datetime | None
    ) -> None:
        """The supplier signed: its signature is kept and the request goes to the funder (a
        platform's opens its raise, until `raise_deadline`)."""
        if document is not None:
            self.keep_signature(request, "supplier_signature", document)
        if raise_deadline is not None:
            request.raise_deadline = raise_deadline
            self.changes.deadlines[request.request_id] = raise_deadline
        self._set_state(request, "raising" if raise_deadline is not None else "sent")

    def commit_investor(self, request: Request, event: m.InvestorCommitted) -> None:
        """An investor's commitment to the raise; fully committed, the raise closes."""
        request.commitments[event.investor_id] = event.amount
        self.changes.commitments.append(
            (
                request.request_id,
                event.investor_id,
                event.amount,
                event.committed_at,
                event.event_id,
            )
        )
        if request.committed == request.amount:
            self._set_state(request, "raised")

    def issue_contract(self, request: Request, contract: InvestorContract) -> None:
        request.contracts[contract.investor_id] = contract
        self.changes.new_contracts.append((request.request_id, contract))

    def sign_investor_contract(
        self, request: Request, investor_id: str, column: str, document: dict[str, Any]
    ) -> None:
        setattr(request.contracts[investor_id], column, document)
        self.changes.contract_signatures.append((request.request_id, investor_id, column, document))

    def answer(self, request: Request, response: m.FunderResponse, value_date: date | None) -> None:
        self._set_state(request, response.decision.value)
        self.changes.answers.append(
            Answer(
                response.event_id,
                request.request_id,
                response.decision.value,
                response.amount,
                value_date,
            )
        )

    async def flush(self, conn: Connection | None) -> None:
        if self.changes:
            await self._store(conn).write(self.changes)
        self.changes = GatewayChanges()
