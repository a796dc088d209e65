"""credit's small HTTP front, for suppliers and buyers checking a pool online.

    GET  /health                                      are PostgreSQL and Kafka answering
    GET  /pools/{pool_id}                             the pool's position, facility and loans
    GET  /pools/{pool_id}/position?as_of=…            the borrowing-base certificate in force
                                                      at that instant (default: now)
    POST /pools/{pool_id}/applications                apply to borrow: {"amount": "50000.00"}
    GET  /pools/{pool_id}/applications/{application}  where an application stands
    POST /pools/{pool_id}/prepayments                 repay early from the free balance:
                                                      {"amount": "10000.00", "loan_id": …}
    GET  /pools/{pool_id}/prepayments/{prepayment}    where a prepayment stands
    POST /pools/{pool_id}/applications/{application}/confirmation
                                                      the buyer confirms or declines:
                                                      {"confirmed": true, "note": …}
    POST /pools/{pool_id}/payouts                     have the free balance paid out:
                                                      {"amount": "…", "bank_account": "…"}
    GET  /pools/{pool_id}/payouts/{payout}            where a payout stands
    GET  /loans/{loan_id}/investors                   a platform loan's raise and investors
    GET  /statements/{party_id}?from=…&to=…&format=json|pdf
                                                      a party's statement from the ledger of
                                                      record: opening balance, every movement
                                                      with its cause, closing balance (issue 10)

Every route but /health needs `Authorization: Bearer <token>` (services/credit/auth.py): 401
without a valid token, 403 when the caller's party may not do this on this pool. What the
front publishes for a party carries credit's MAC and `source` = that party.

Reads come from credit's own schema in one snapshot. An application is not decided here: it is
published on supplier.financing-applications.v1 like any other (202 Accepted once the broker
has it), and credit decides it in order with everything else of the pool. Pool ids contain a
slash (``CE-1/SUP-1``); they go into the path as they are.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.credit import repository as repo
from services.credit.auth import Action, authenticate, authorize
from services.credit.domain import available_to_borrow, borrowing_base
from shared.calendar import timezone
from shared.contracts import messages as m
from shared.contracts import topics
from shared.contracts.codec import Rejected, decode
from shared.db import Connection
from shared.money import json_default, rate_text
from shared.ops import broker_reachable, database_reachable
from shared.settings import Settings
from shared.trust import Trust

SOURCE = "credit-http"
log = structlog.get_logger(__name__)
MAX_BODY = 16 * 1024
ID = re.compile(r"^[A-Za-z0-9._:/-]{1,128}$")


def _json(data: Mapping[str, Any], status: int = 200) -> Response:
    return Response(
        json.dumps(data, default=json_default), status_code=status, media_type="application/json"
    )


def _period_end(text: str | None, default: datetime) -> datetime:
    """A period's bound: an ISO instant, or a date (its midnight in Asia/Shanghai)."""
    if text is None:
        return default
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{text[:40]!r} is not an ISO 8601 date or instant") from exc
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone())


def _error(status: int, reason: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": reason, "detail": detail}, status_code=status)


async def _position(conn: Connection, pool_id: str) -> dict[str, Any] | None:
    pool = await conn.fetchrow(
        "SELECT core_enterprise_id, supplier_id, water_level, held, held_pending FROM pools"
        " WHERE pool_id = $1",
        pool_id,
    )
    if pool is None:
        return None
    facility = await repo.facility(conn, pool_id)
    loans, in_flight = await repo.loan_balance_and_in_flight(conn, pool_id)
    level = Decimal(pool["water_level"])
    open_loans = await conn.fetch(
        "SELECT loan_id, funder_id, principal, outstanding, annual_interest_rate, disbursed_on,"
        " maturity_on, interest_due, penalty_due, overdue FROM loans WHERE pool_id = $1"
        " AND (outstanding > 0 OR interest_due > 0 OR penalty_due > 0)"
        " ORDER BY disbursed_on, loan_id",
        pool_id,
    )
    published = await repo.position_as_of(conn, pool_id, datetime.now(UTC))
    months = await conn.fetch(
        "SELECT month, slips, paid, paid_late, diluted FROM trade_months WHERE pool_id = $1"
        " ORDER BY month",
        pool_id,
    )
    certificate = _body(published) if published is not None else {}
    eligible = Decimal(certificate.get("eligible_level") or level)
    return {
        "pool_id": pool_id,
        "core_enterprise_id": pool["core_enterprise_id"],
        "supplier_id": pool["supplier_id"],
        "currency": "CNY",
        "water_level": level,
        "ineligible": certificate.get("ineligible", {}),
        "eligible_level": eligible,
        "borrowing_base": borrowing_base(eligible, facility),
        "loan_balance": loans,
        "in_flight": in_flight,
        "held": Decimal(pool["held"]) + Decimal(pool["held_pending"]),
        "available": available_to_borrow(eligible, facility, loans, in_flight)
        if certificate.get("standing", "good") == "good"
        else Decimal("0.00"),
        "standing": certificate.get("standing", "good"),
        "facility": None
        if facility is None
        else {
            "credit_line": facility.credit_line,
            "discount_rate": rate_text(facility.discount_rate),
            "annual_interest_rate": rate_text(facility.annual_interest_rate),
            "funder_id": facility.funder_id,
            "day_count": facility.day_count.value,
            "tenor_days": facility.tenor_days,
            "penalty_rate": rate_text(facility.penalty),
            "interest_period": facility.interest_period.value,
            "interest_collection": facility.interest_collection.value,
            "max_days_past_due": facility.max_days_past_due,
            "max_tenor_days": facility.max_tenor_days,
            "cross_age_percent": facility.cross_age_percent,
            "concentration_limit": facility.concentration_limit,
        },
        "loans": [
            {**row, "annual_interest_rate": rate_text(row["annual_interest_rate"])}
            for row in open_loans
        ],
        # Dilution (credit notes, cancellations, amendments down) and trade, month by month.
        "dilution": sum((row["diluted"] for row in months), Decimal("0.00")),
        "trade_months": [dict(row) for row in months],
    }


def _body(stored: Any) -> dict[str, Any]:
    """A jsonb column as asyncpg returns it (text unless a codec is set)."""
    return dict(json.loads(stored) if isinstance(stored, str) else stored)


def _instant(text: str | None) -> datetime | None:
    """An ISO 8601 instant (a date alone means its end, in the platform's time zone), or None
    when it cannot be read."""
    if text is None:
        return datetime.now(UTC)
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime.combine(day, time.max, tzinfo=timezone())
        instant = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return instant if instant.tzinfo else instant.replace(tzinfo=timezone())


def _bad_id(what: str, value: str) -> Response | None:
    """A path id that cannot be valid (a NUL, a space, too long) is a 400, never a 500."""
    if ID.fullmatch(value):
        return None
    shown = value[:40].encode("unicode_escape").decode()
    return _error(
        400,
        m.Reason.INVALID_MESSAGE.value,
        f"{shown!r} is not a {what} id: 1-128 of A-Z a-z 0-9 . _ : / -",
    )


async def _json_body(request: Request) -> dict[str, Any] | Response:
    """The request's JSON object, or the 4xx that says what is wrong with it."""
    body = await request.body()
    if len(body) > MAX_BODY:
        return _error(413, m.Reason.INVALID_MESSAGE.value, "body over 16 KiB")
    try:
        fields = json.loads(body)
    except (ValueError, RecursionError):
        return _error(
            400, m.Reason.NOT_JSON.value, 'body must be JSON such as {"amount": "50000.00"}'
        )
    if not isinstance(fields, dict):
        return _error(400, m.Reason.INVALID_MESSAGE.value, "body must be a JSON object")
    return fields


def _supplier_message(
    topic: str,
    kind: str,
    pool_id: str,
    id_field: str,
    new_id: str,
    fields: dict[str, Any],
    source: str = SOURCE,
) -> tuple[bytes, m.Message] | Response:
    """A party's message from an HTTP body (`source`: the party the token proved), checked
    exactly as its consumer checks the topic (so the answers agree): its bytes and model, or
    the 422 with the reason."""
    event = {
        "event_id": str(uuid.uuid4()),
        "type": kind,
        "occurred_at": datetime.now(UTC).isoformat(),
        "source": source,
        "pool_id": pool_id,
        **fields,
        id_field: fields.get(id_field) or new_id,
        "currency": fields.get("currency", "CNY"),
    }
    raw = json.dumps(event).encode()
    try:
        return raw, decode(topic, raw)
    except Rejected as refusal:
        return _error(422, refusal.reason.value, refusal.detail)


async def _unavailable(_: Request, exc: Exception) -> Response:
    """The database went away mid-request: say so (503), not a bare 500."""
    return _error(503, "unavailable", f"PostgreSQL: {type(exc).__name__}: {exc}")


def make_app(
    pool: asyncpg.Pool, producer: AIOKafkaProducer, settings: Settings, trust: Trust
) -> Starlette:
    publish_timeout = settings.http_publish_timeout_ms / 1000

    async def health(_: Request) -> Response:
        """200 only when both PostgreSQL and Kafka answer; 503 with what is wrong otherwise."""
        database, kafka = await asyncio.gather(
            database_reachable(pool, publish_timeout), broker_reachable(producer, publish_timeout)
        )
        checks = {"database": database or "ok", "kafka": kafka or "ok"}
        if database or kafka:
            return _json({"service": "credit", "status": "unavailable", **checks}, 503)
        return _json({"service": "credit", "status": "ok", **checks})

    async def position(request: Request) -> Response:
        pool_id = request.path_params["pool_id"]
        if bad := _bad_id("pool", pool_id):
            return bad
        async with (
            pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            found = await _position(conn, pool_id)
        if found is None:
            return _error(404, m.Reason.UNKNOWN_POOL.value, f"pool {pool_id} is not known")
        return _json(found)

    async def certificate(request: Request) -> Response:
        """The PoolPosition credit published last at or before `as_of`, exactly as published."""
        pool_id = request.path_params["pool_id"]
        if bad := _bad_id("pool", pool_id):
            return bad
        as_of = request.query_params.get("as_of")
        instant = _instant(as_of)
        if instant is None:
            return _error(
                400,
                m.Reason.INVALID_MESSAGE.value,
                f"as_of {as_of!r} is not an ISO 8601 instant or date (2026-11-23T10:00:00+08:00)",
            )
        async with pool.acquire() as conn:
            found = await repo.position_as_of(conn, pool_id, instant)
        if found is None:
            return _error(
                404,
                m.Reason.UNKNOWN_POOL.value,
                f"pool {pool_id} had no position at {instant.isoformat()}",
            )
        return _json({"as_of": instant.isoformat(), "position": _body(found)})

    async def prepayment(request: Request) -> Response:
        pool_id, prepayment_id = (
            request.path_params["pool_id"],
            request.path_params["prepayment_id"],
        )
        if bad := _bad_id("pool", pool_id) or _bad_id("prepayment", prepayment_id):
            return bad
        async with pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT payment_id AS prepayment_id, pool_id, amount, principal, interest,"
                " state, instruction FROM repayments"
                " WHERE payment_id = $1 AND pool_id = $2 AND kind = 'prepayment'",
                prepayment_id,
                pool_id,
            )
        if row is None:
            return _json(
                {
                    "prepayment_id": prepayment_id,
                    "pool_id": pool_id,
                    "state": "submitted",
                    "detail": "not decided yet; the splitter freezes it from the free balance "
                    "(or dead-letters it as insufficient_funds on settlement.rejected.v1)",
                }
            )
        found = dict(row)
        instruction = _body(found.pop("instruction"))
        found["repayments"] = instruction.get("repayments", [])
        found["state"] = "repaid" if found["state"] == "confirmed" else "decided"
        return _json(found)

    async def submit(
        request: Request,
        topic: str,
        kind: str,
        id_field: str,
        prefix: str,
        allowed: tuple[str, ...],
        collection: str,
    ) -> Response:
        """A supplier's request from its HTTP body, checked as its consumer checks the topic,
        for a pool credit knows, published for its consumer: 202 with where it stands."""
        pool_id = request.path_params["pool_id"]
        fields = await _json_body(request)
        if isinstance(fields, Response):
            return fields
        checked = _supplier_message(
            topic,
            kind,
            pool_id,
            id_field,
            f"{prefix}-{uuid.uuid4().hex[:16]}",
            {k: fields[k] for k in allowed if k in fields},
            source=request.state.caller.party_id,
        )
        if isinstance(checked, Response):
            return checked
        raw, message = checked
        submitted_id = getattr(message, id_field)
        async with pool.acquire() as conn:
            if not await conn.fetchval("SELECT true FROM pools WHERE pool_id = $1", pool_id):
                return _error(404, m.Reason.UNKNOWN_POOL.value, f"pool {pool_id} is not known")
        status_url = f"/pools/{pool_id}/{collection}/{submitted_id}"
        if failed := await _publish(topic, raw, pool_id, status_url):
            return failed
        return JSONResponse(
            {id_field: submitted_id, "status": "submitted", "status_url": status_url},
            status_code=202,
            headers={"Location": status_url},
        )

    async def prepay(request: Request) -> Response:
        return await submit(
            request,
            topics.SUPPLIER_PREPAYMENTS,
            "PrepaymentRequested",
            "prepayment_id",
            "PRE",
            ("prepayment_id", "amount", "loan_id", "currency"),
            "prepayments",
        )

    async def payout(request: Request) -> Response:
        """The supplier has part of its free balance paid to its bank account (issue 10):
        published on supplier.payouts.v1 for the splitter, which instructs the bank."""
        return await submit(
            request,
            topics.SUPPLIER_PAYOUTS,
            "PayoutRequested",
            "payout_id",
            "PO",
            ("payout_id", "amount", "bank_account", "currency"),
            "payouts",
        )

    async def payout_status(request: Request) -> Response:
        """Where a payout stands, from the splitter's book (read-only)."""
        pool_id, payout_id = request.path_params["pool_id"], request.path_params["payout_id"]
        async with pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT payout_id, pool_id, amount, bank_account, state, bank_reference,"
                " updated_at FROM settlement.payouts WHERE payout_id = $1 AND pool_id = $2",
                payout_id,
                pool_id,
            )
        if row is None:
            return _json(
                {
                    "payout_id": payout_id,
                    "pool_id": pool_id,
                    "state": "submitted",
                    "detail": "not instructed yet; the splitter pays it from the free balance "
                    "(or dead-letters it as insufficient_funds on settlement.rejected.v1)",
                }
            )
        return _json({**dict(row), "updated_at": row["updated_at"].isoformat()})

    async def _publish(topic: str, raw: bytes, pool_id: str, status_url: str) -> Response | None:
        """None once the broker has acknowledged it; else the 503 that says what to do."""
        try:
            await asyncio.wait_for(
                producer.send_and_wait(
                    topic,
                    raw,
                    key=pool_id.encode(),
                    # credit's MAC: the front vouches for the party it authenticated
                    headers=trust.seal(topic, pool_id.encode(), raw),
                ),
                publish_timeout,
            )
        except Exception as exc:  # noqa: BLE001 - any publish failure is a 503 with its name
            return _error(
                503,
                "unavailable",
                f"Kafka did not acknowledge it within {publish_timeout:g} s "
                f"({type(exc).__name__}); it may still arrive: check {status_url} or retry "
                "with the same id",
            )
        return None

    async def application(request: Request) -> Response:
        pool_id, application_id = (
            request.path_params["pool_id"],
            request.path_params["application_id"],
        )
        if bad := _bad_id("pool", pool_id) or _bad_id("application", application_id):
            return bad
        async with pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT application_id, pool_id, amount, state, reason, funder_id, updated_at"
                " FROM applications WHERE application_id = $1 AND pool_id = $2",
                application_id,
                pool_id,
            )
            claimed = row is None and await conn.fetchval(
                "SELECT true FROM application_claims WHERE application_id = $1 AND pool_id = $2",
                application_id,
                pool_id,
            )
        if row is None:
            if claimed:
                return _json(
                    {
                        "application_id": application_id,
                        "pool_id": pool_id,
                        "state": "submitted",
                        "detail": "published; credit decides it within moments",
                    }
                )
            return _error(
                404,
                m.Reason.UNKNOWN_APPLICATION.value,
                f"application {application_id} of pool {pool_id} is not known",
            )
        return _json(dict(row))

    async def apply(request: Request) -> Response:
        pool_id = request.path_params["pool_id"]
        if bad := _bad_id("pool", pool_id):
            return bad
        fields = await _json_body(request)
        if isinstance(fields, Response):
            return fields
        # A body's id is checked with the rest of the body (422).
        checked = _supplier_message(
            topics.SUPPLIER_FINANCING_APPLICATIONS,
            "FinancingApplied",
            pool_id,
            "application_id",
            f"A-{uuid.uuid4().hex[:16]}",
            {k: fields[k] for k in ("application_id", "amount", "currency") if k in fields},
            source=request.state.caller.party_id,
        )
        if isinstance(checked, Response):
            return checked
        raw, applied = checked
        assert isinstance(applied, m.FinancingApplied)
        application_id = applied.application_id
        async with pool.acquire() as conn:
            known = await conn.fetchval("SELECT true FROM pools WHERE pool_id = $1", pool_id)
            if not known:
                return _error(404, m.Reason.UNKNOWN_POOL.value, f"pool {pool_id} is not known")
            # Claimed for this pool before it is published: an id another pool holds, or an
            # application already decided, is refused now rather than lost later (defect 7).
            if not await repo.claim_application_id(conn, pool_id, application_id):
                return _error(
                    409,
                    m.Reason.DUPLICATE_APPLICATION.value,
                    f"application id {application_id} is already taken; "
                    "omit application_id to have one assigned",
                )
        status_url = f"/pools/{pool_id}/applications/{application_id}"
        if failed := await _publish(
            topics.SUPPLIER_FINANCING_APPLICATIONS, raw, pool_id, status_url
        ):
            return failed
        return JSONResponse(
            {
                "application_id": application_id,
                "event_id": applied.event_id,
                "status": "submitted",
                "status_url": status_url,
            },
            status_code=202,
            headers={"Location": status_url},
        )

    async def confirm(request: Request) -> Response:
        """The buyer confirms (or declines) its supplier's application, as its ERP would on
        erp.financing-confirmations.v1: published there, for intake to take in order."""
        pool_id, application_id = (
            request.path_params["pool_id"],
            request.path_params["application_id"],
        )
        if bad := _bad_id("application", application_id):
            return bad
        fields = await _json_body(request)
        if isinstance(fields, Response):
            return fields
        if not isinstance(fields.get("confirmed"), bool):
            return _error(422, m.Reason.INVALID_MESSAGE.value, 'give {"confirmed": true} or false')
        buyer = request.state.caller.party_id
        checked = _supplier_message(
            topics.ERP_FINANCING_CONFIRMATIONS,
            "FinancingConfirmation",
            pool_id,
            "application_id",
            application_id,
            {
                "application_id": application_id,
                "confirmed": fields["confirmed"],
                "note": fields.get("note"),
                "core_enterprise_id": buyer,
            },
            source=buyer,
        )
        if isinstance(checked, Response):
            return checked
        raw, confirmation = checked
        status_url = f"/pools/{pool_id}/applications/{application_id}"
        if failed := await _publish(topics.ERP_FINANCING_CONFIRMATIONS, raw, pool_id, status_url):
            return failed
        return JSONResponse(
            {
                "application_id": application_id,
                "confirmed": fields["confirmed"],
                "event_id": confirmation.event_id,
                "status": "submitted",
                "status_url": status_url,
            },
            status_code=202,
            headers={"Location": status_url},
        )

    def guarded(action: Action, endpoint: Any) -> Any:
        """The endpoint behind authentication (401) and authorization on its pool (403)."""

        async def checked(request: Request) -> Response:
            pool_id = request.path_params["pool_id"]
            async with pool.acquire() as conn:
                caller = await authenticate(request, conn, trust, settings.token_max_ttl_s)
                if isinstance(caller, Response):
                    return caller
                for name, value in request.path_params.items():  # ids first: 400, not 403
                    if bad := _bad_id(name.removesuffix("_id"), value):
                        return bad
                if denied := await authorize(request, conn, caller, pool_id, action):
                    return denied
            request.state.caller = caller
            response: Response = await endpoint(request)
            return response

        return checked

    async def party_statement(request: Request) -> Response:
        """A supplier's, funder's or buyer's statement, read from the splitter's ledger of
        record (schema `settlement`, read-only, one snapshot). A party reads its own; an
        operator any."""
        from services.settlement_splitter.statements import render_pdf, statement

        party_id = request.path_params["party_id"]
        if bad := _bad_id("party", party_id):
            return bad
        async with pool.acquire() as conn:
            caller = await authenticate(request, conn, trust, settings.token_max_ttl_s)
            if isinstance(caller, Response):
                return caller
            if caller.party_id != party_id and caller.role != m.PartyRole.OPERATOR.value:
                log.warning(
                    "access denied", path=request.url.path, party=caller.party_id, status=403
                )
                return _error(
                    403, "forbidden", f"{caller.party_id} may read its own statement only"
                )
            try:
                now = datetime.now(UTC)
                start = _period_end(
                    request.query_params.get("from"), datetime(2000, 1, 1, tzinfo=UTC)
                )
                end = _period_end(request.query_params.get("to"), now)
                found = await statement(conn, party_id, start, end)
            except ValueError as exc:
                return _error(422, m.Reason.INVALID_MESSAGE.value, str(exc))
        if found is None:
            return _error(404, "unknown_party", f"the ledger knows no party {party_id}")
        if request.query_params.get("format") == "pdf" or "application/pdf" in request.headers.get(
            "accept", ""
        ):
            return Response(
                render_pdf(found),
                media_type="application/pdf",
                headers={"Content-Disposition": f'inline; filename="statement-{party_id}.pdf"'},
            )
        return _json(found.to_json())

    async def investors(request: Request) -> Response:
        """A platform loan's investors (issue 11): the supplier of its pool, the buyer, or
        an operator may read them."""
        from services.settlement_splitter.statements import loan_investors

        loan_id = request.path_params["loan_id"]
        if bad := _bad_id("loan", loan_id):
            return bad
        async with pool.acquire() as conn:
            caller = await authenticate(request, conn, trust, settings.token_max_ttl_s)
            if isinstance(caller, Response):
                return caller
            found = await loan_investors(conn, loan_id)
            if found is None:
                return _error(404, m.Reason.UNKNOWN_LOAN.value, f"no loan request {loan_id}")
            if denied := await authorize(request, conn, caller, found["pool_id"], Action.READ):
                return denied
        return _json(found)

    read, act = Action.READ, Action.APPLY
    return Starlette(
        routes=[
            Route("/loans/{loan_id}/investors", investors, methods=["GET"]),
            Route("/statements/{party_id}", party_statement, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route(
                "/pools/{pool_id:path}/applications/{application_id}/confirmation",
                guarded(Action.CONFIRM, confirm),
                methods=["POST"],
            ),
            Route(
                "/pools/{pool_id:path}/applications/{application_id}",
                guarded(read, application),
                methods=["GET"],
            ),
            Route("/pools/{pool_id:path}/applications", guarded(act, apply), methods=["POST"]),
            Route(
                "/pools/{pool_id:path}/prepayments/{prepayment_id}",
                guarded(read, prepayment),
                methods=["GET"],
            ),
            Route("/pools/{pool_id:path}/prepayments", guarded(act, prepay), methods=["POST"]),
            Route(
                "/pools/{pool_id:path}/payouts/{payout_id}",
                guarded(read, payout_status),
                methods=["GET"],
            ),
            Route("/pools/{pool_id:path}/payouts", guarded(act, payout), methods=["POST"]),
            Route("/pools/{pool_id:path}/position", guarded(read, certificate), methods=["GET"]),
            Route("/pools/{pool_id:path}", guarded(read, position), methods=["GET"]),
        ],
        exception_handlers={
            OSError: _unavailable,
            asyncpg.InterfaceError: _unavailable,
            asyncpg.InternalClientError: _unavailable,
            asyncpg.PostgresConnectionError: _unavailable,
            asyncpg.exceptions.CannotConnectNowError: _unavailable,
        },
    )
