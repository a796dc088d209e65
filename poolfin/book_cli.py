"""The ledger of record from the command line (issue 10):

poolfin statement PARTY --from … --to … [--pdf FILE]   a party's statement (JSON or PDF)
poolfin reconcile CAMT_FILE --pool POOL                 the bank statement against the book
poolfin holds void|release PAYMENT --pool POOL --note … an operator resolves a frozen payment
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from poolfin.options import NO_WAIT
from shared.contracts import messages as m
from shared.contracts import topics
from shared.settings import Settings

holds_app = typer.Typer(
    help="Payments frozen with no instruction: void (back to the buyer) or release.",
    no_args_is_help=True,
)


def _instant(text: str | None, default: datetime) -> datetime:
    if text is None:
        return default
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        typer.echo(f"error: {text!r} is not an ISO 8601 date or instant", err=True)
        raise typer.Exit(2) from exc
    if value.tzinfo is None:  # a date or a local time: Asia/Shanghai, as the business day
        from shared.calendar import timezone

        value = value.replace(tzinfo=timezone())
    return value


async def _read(settings: Settings, work: Any) -> Any:
    from shared.db import create_pool

    pool = await create_pool(settings.database_url, "settlement", 1)
    try:
        async with pool.acquire() as conn:
            return await work(conn)
    finally:
        await pool.close()


def statement_command(
    party: Annotated[str, typer.Argument(help="supplier, funder or core enterprise id")],
    start: Annotated[
        str | None, typer.Option("--from", help="ISO date or instant (default: the beginning)")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="ISO date or instant (default: now)")
    ] = None,
    pdf: Annotated[Path | None, typer.Option(help="write the statement as PDF here")] = None,
) -> None:
    """A party's statement: per account, the opening balance, every movement with its cause,
    the closing balance. JSON on stdout; `--pdf FILE` also writes it for a person."""
    from poolfin.cli import _unreachable_is_an_error
    from services.settlement_splitter.statements import render_pdf, statement

    settings = Settings()
    begin = _instant(start, datetime(2000, 1, 1, tzinfo=UTC))
    finish = _instant(end, datetime.now(UTC))
    if finish < begin:
        typer.echo("error: --to is before --from", err=True)
        raise typer.Exit(2)
    with _unreachable_is_an_error("PostgreSQL", settings.database_url, "POOLFIN_DATABASE_URL"):
        found = asyncio.run(_read(settings, lambda conn: statement(conn, party, begin, finish)))
    if found is None:
        typer.echo(f"error: the ledger knows no party {party}", err=True)
        raise typer.Exit(1)
    if pdf is not None:
        pdf.write_bytes(render_pdf(found))
        typer.echo(f"statement written to {pdf}", err=True)
    typer.echo(json.dumps(found.to_json(), indent=2))


def reconcile_command(
    camt_file: Annotated[Path, typer.Argument(help="an ISO 20022 camt.053 or camt.054 file")],
    pool: Annotated[str, typer.Option(help="the pool whose controlled account it reports")],
) -> None:
    """Match every booked bank line to the ledger (direction, amount, end-to-end reference)
    for the days the file covers; report the lines missing on either side, with amounts.
    Exit 0 when clean, 1 when anything is unmatched."""
    from poolfin.cli import _unreachable_is_an_error
    from services.settlement_splitter.reconcile import NotCamt, ledger_lines, match, parse_camt

    settings = Settings()
    try:
        account, bank = parse_camt(camt_file.read_bytes())
    except (OSError, NotCamt) as exc:
        typer.echo(f"error: {camt_file}: {exc}", err=True)
        raise typer.Exit(2) from exc
    days = sorted({ln.booked_on for ln in bank if ln.booked_on})
    if not days:
        typer.echo(f"error: {camt_file} has no booked entries with a booking date", err=True)
        raise typer.Exit(2)
    with _unreachable_is_an_error("PostgreSQL", settings.database_url, "POOLFIN_DATABASE_URL"):
        book = asyncio.run(
            _read(settings, lambda conn: ledger_lines(conn, pool, days[0], days[-1]))
        )
    report = match(book, bank)
    typer.echo(
        json.dumps(
            {
                "pool_id": pool,
                "bank_account": account,
                "from": days[0].isoformat(),
                "to": days[-1].isoformat(),
                "bank_lines": len(bank),
                "ledger_lines": len(book),
                **report.to_json(),
            },
            indent=2,
        )
    )
    if not report.clean:
        raise typer.Exit(1)


def _resolve(
    action: m.HoldAction, payment: str, pool: str, note: str, operator: str, wait: bool = True
) -> None:
    from poolfin.cli import _publish_operator

    message = m.new_event(
        m.HoldResolved, source=operator, pool_id=pool, payment_id=payment, action=action, note=note
    )
    said = _publish_operator(topics.ADMIN_HOLDS, [message], Settings(), operator, wait=wait)
    typer.echo(f"{action.value} of {payment} in {pool} {said} (event {message.event_id})")


@holds_app.command("void")
def void(
    payment: Annotated[str, typer.Argument(help="the frozen payment")],
    pool: Annotated[str, typer.Option(help="its pool")],
    note: Annotated[str, typer.Option(help="why (kept in the ledger)")],
    operator: Annotated[str, typer.Option("--as", help="the operator")] = "op-1",
    no_wait: NO_WAIT = False,
) -> None:
    """Send a frozen payment back to the buyer (a prepayment back to the free balance), and
    wait for the splitter to do it (or say why not, exit 1)."""
    _resolve(m.HoldAction.VOID, payment, pool, note, operator, wait=not no_wait)


@holds_app.command("release")
def release(
    payment: Annotated[str, typer.Argument(help="the frozen payment")],
    pool: Annotated[str, typer.Option(help="its pool")],
    note: Annotated[str, typer.Option(help="why (kept in the ledger)")],
    operator: Annotated[str, typer.Option("--as", help="the operator")] = "op-1",
    no_wait: NO_WAIT = False,
) -> None:
    """Release a frozen payment to the supplier's free balance, repaying no loan (and wait
    for the splitter to do it, or say why not, exit 1)."""
    _resolve(m.HoldAction.RELEASE, payment, pool, note, operator, wait=not no_wait)


def balance_command(
    account: Annotated[str, typer.Argument(help="a ledger account, e.g. free:CE-1/SUP-1")],
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="ISO date or instant (default: now)")
    ] = None,
) -> None:
    """An account's balance now, or as it stood at an instant (one indexed read)."""
    from poolfin.cli import _unreachable_is_an_error
    from services.settlement_splitter.statements import balance_as_of

    settings = Settings()
    instant = _instant(as_of, datetime.now(UTC))
    with _unreachable_is_an_error("PostgreSQL", settings.database_url, "POOLFIN_DATABASE_URL"):
        found = asyncio.run(_read(settings, lambda conn: balance_as_of(conn, account, instant)))
    typer.echo(
        json.dumps({"account": account, "as_of": instant.isoformat(), "balance": str(found)})
    )


def loan_investors_command(
    loan_id: Annotated[str, typer.Argument(help="the loan (= its request id)")],
) -> None:
    """A platform loan's raise and investors: committed, when, and repaid so far."""
    from poolfin.cli import _unreachable_is_an_error
    from services.settlement_splitter.statements import loan_investors

    settings = Settings()
    with _unreachable_is_an_error("PostgreSQL", settings.database_url, "POOLFIN_DATABASE_URL"):
        found = asyncio.run(_read(settings, lambda conn: loan_investors(conn, loan_id)))
    if found is None:
        typer.echo(f"error: no loan request {loan_id}", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps(found, indent=2))
