"""The `poolfin` command."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from poolfin.book_cli import (
    balance_command,
    holds_app,
    loan_investors_command,
    reconcile_command,
    statement_command,
)
from poolfin.contract_cli import contract_app
from poolfin.deadletters_cli import dead_letters_app
from poolfin.keys_cli import keys_app
from poolfin.keys_cli import token as keys_token
from poolfin.options import NO_WAIT
from poolfin.programme_cli import iso20022_app, programme_app
from poolfin.split_rules_cli import split_rules_app
from shared.settings import Settings

if TYPE_CHECKING:
    from poolfin.stack import Stack

app = typer.Typer(
    help="poolfin: receivables-pool financing and settlement splitting.",
    no_args_is_help=True,
    add_completion=False,
)
facility_app = typer.Typer(help="Credit facilities.", no_args_is_help=True)
ledger_app = typer.Typer(help="The settlement ledger.", no_args_is_help=True)
contracts_app = typer.Typer(help="Message contracts for integrators.", no_args_is_help=True)
app.add_typer(facility_app, name="facility")
app.add_typer(ledger_app, name="ledger")
app.add_typer(contracts_app, name="contracts")
pool_app = typer.Typer(help="Pools: positions and certificates.", no_args_is_help=True)
day_app = typer.Typer(help="Loan servicing: business day closes.", no_args_is_help=True)
credit_app = typer.Typer(help="The credit model's suggestions.", no_args_is_help=True)
loan_app = typer.Typer(help="Loans: the loan ledger.", no_args_is_help=True)
app.add_typer(pool_app, name="pool")
app.add_typer(day_app, name="day")
app.add_typer(credit_app, name="credit")
app.add_typer(loan_app, name="loan")
app.add_typer(keys_app, name="keys")
app.add_typer(contract_app, name="contract")
app.add_typer(holds_app, name="holds")
app.add_typer(programme_app, name="programme")
app.add_typer(iso20022_app, name="iso20022")
app.command("statement")(statement_command)
app.command("reconcile")(reconcile_command)
ledger_app.command("balance")(balance_command)
loan_app.command("investors")(loan_investors_command)
app.add_typer(split_rules_app, name="split-rules")
app.add_typer(dead_letters_app, name="dead-letters")
app.command("token", help="A bearer token for credit's HTTP front (same as `keys token`).")(
    keys_token
)


@app.callback()
def _find_the_stack(
    bootstrap: Annotated[
        str | None,
        typer.Option(
            "--bootstrap",
            help="Kafka bootstrap servers (default: POOLFIN_KAFKA_BOOTSTRAP, else the stack "
            "`poolfin up` runs, from <data_dir>/stack.json).",
        ),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="PostgreSQL DSN (default: POOLFIN_DATABASE_URL, else the running stack's).",
        ),
    ] = None,
) -> None:
    """Every command talks to the stack `poolfin up` runs, found from its stack.json, unless
    the environment or --bootstrap/--database-url say otherwise (they win)."""
    import os

    from poolfin.stack import running_stack

    if bootstrap:
        os.environ["POOLFIN_KAFKA_BOOTSTRAP"] = bootstrap
    if database_url:
        os.environ["POOLFIN_DATABASE_URL"] = database_url
    state = running_stack(Settings().data_dir)
    if state is None:
        return
    for variable, key in (
        ("POOLFIN_KAFKA_BOOTSTRAP", "kafka_bootstrap"),
        ("POOLFIN_DATABASE_URL", "database_url"),
        ("POOLFIN_KEYS_DIR", "keys_dir"),
    ):
        if not os.environ.get(variable) and state.get(key):
            os.environ[variable] = str(state[key])


def _keyring(settings: Settings) -> Any:
    """The keys the CLI signs with: POOLFIN_KEYS_DIR, else the running stack's, else
    <data_dir>/keys (provisioned on first use)."""
    from poolfin.keys import Keyring
    from poolfin.stack import running_stack

    if settings.keys_dir:
        return Keyring.provision(Path(settings.keys_dir))
    state = running_stack(settings.data_dir)
    if state is not None and state.get("keys_dir"):
        return Keyring.provision(Path(str(state["keys_dir"])))
    return Keyring.provision(Path(settings.data_dir) / "keys")


def _settings() -> Settings:
    from shared.logging import configure_logging

    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)
    return settings


@contextlib.contextmanager
def _unreachable_is_an_error(what: str, where: str, variable: str) -> Iterator[None]:
    """A command that cannot reach the broker or the database says so in one line, exit 1."""
    from aiokafka.errors import KafkaConnectionError

    try:
        yield
    except (KafkaConnectionError, OSError) as exc:
        shown = re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", where)  # never print a password
        typer.echo(
            f"error: cannot reach {what} at {shown} ({exc}). Set {variable}; "
            "`poolfin up` prints the value to use.",
            err=True,
        )
        raise typer.Exit(1) from exc


def _exit_on_sigterm() -> None:
    """SIGTERM (and SIGHUP) end a command as Ctrl-C does: through its `finally` blocks, so
    the broker, database and services it started are stopped, not orphaned."""

    def stop(signum: int, _: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)


def _start(stack: Stack) -> Stack:
    """Start an embedded stack, or say in one line why it could not start (exit 1). Whatever
    had been started is stopped by then (Stack.start cleans up on failure)."""
    try:
        return stack.start()
    except Exception as exc:
        typer.echo(
            f"error: could not start the embedded stack: {type(exc).__name__}: {exc}"
            f" (logs in {stack.work_dir})",
            err=True,
        )
        raise typer.Exit(1) from exc


@app.command()
def run(
    service: Annotated[
        str, typer.Argument(help="intake | credit | funding-gateway | settlement-splitter")
    ],
) -> None:
    """Run one service until SIGINT/SIGTERM (settings from POOLFIN_* variables)."""
    from poolfin.registry import SERVICES
    from shared.runtime import run_service

    if service not in SERVICES:
        typer.echo(f"unknown service {service!r}; choose one of {', '.join(SERVICES)}", err=True)
        raise typer.Exit(2)
    settings = _settings()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_service(SERVICES[service](settings), settings, stop)

    asyncio.run(main())


def _business_yesterday() -> Any:
    from datetime import timedelta

    from shared.calendar import business_date

    return business_date() - timedelta(days=1)


def _close_days_after_midnight(stack: Stack, closed_through: Any) -> Any:
    """The maturity job of `poolfin up`: after each midnight (Asia/Shanghai), close the day
    that ended for every pool. A failure is told and retried on the next round."""
    from poolfin.servicing import close_day

    yesterday = _business_yesterday()
    if yesterday <= closed_through:
        return closed_through
    try:
        count = asyncio.run(
            close_day(
                stack.bootstrap,
                stack.database_url,
                yesterday,
                source="poolfin-up",
                keyring=stack.keyring,
            )
        )
    except Exception as exc:  # noqa: BLE001 - told, and tried again next round
        typer.echo(f"day close of {yesterday} failed ({exc}); retrying", err=True)
        return closed_through
    typer.echo(f"closed business day {yesterday} for {count} pool(s)", err=True)
    return yesterday


@app.command()
def up(
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh", help="Wipe the database kept from earlier runs and start from nothing."
        ),
    ] = False,
) -> None:
    """Start the embedded broker, PostgreSQL and the four services, and serve the operators'
    dashboard; stay up until Ctrl-C. The database is kept in <data_dir>/pgdata between runs
    (--fresh wipes it); the embedded broker keeps its topics in memory only."""
    import shutil

    from poolfin.dashboard import Sampler, dashboard_app, serve_in_thread
    from poolfin.stack import Stack, free_port, new_work_dir, running_stack, state_file

    settings = Settings()
    if running_stack(settings.data_dir) is not None:
        typer.echo(
            f"error: a stack is already up (see {state_file(settings.data_dir)}); "
            "stop it first (Ctrl-C where it runs)",
            err=True,
        )
        raise typer.Exit(1)
    pg_dir = Path(settings.data_dir).resolve() / "pgdata"
    if fresh and pg_dir.exists():
        shutil.rmtree(pg_dir)
        typer.echo(f"--fresh: wiped the database in {pg_dir}")
    kept = (pg_dir / "pg").exists()
    work_dir = new_work_dir(settings.data_dir)
    typer.echo("starting embedded Kafka (Tansu), PostgreSQL and the four services …")
    stack = Stack(work_dir, keys_dir=Path(settings.data_dir) / "keys", pg_dir=pg_dir)
    if settings.http_port:
        stack.http_port = settings.http_port
    stack = _start(stack)
    stop_dashboard = None
    try:
        sampler = Sampler(
            settings.model_copy(
                update={
                    "kafka_bootstrap": stack.bootstrap,
                    "database_url": stack.database_url,
                }
            ),
            lambda: {name: stack.ops_url(name) for name in list(stack.ops_ports)},
        )
        port = settings.dashboard_port
        try:
            stop_dashboard = serve_in_thread(dashboard_app(sampler), settings.http_host, port)
        except RuntimeError:  # the port is taken (another stack, another program): any free one
            port = free_port()
            typer.echo(f"port {settings.dashboard_port} is taken; the dashboard is on {port}")
            stop_dashboard = serve_in_thread(dashboard_app(sampler), settings.http_host, port)
        stack.dashboard_url = f"http://{settings.http_host}:{port}"
        state = stack.describe()
        state_file(settings.data_dir).write_text(json.dumps(state, indent=2))
        typer.echo(f"kafka bootstrap : {stack.bootstrap}")
        typer.echo(f"database url    : {stack.database_url}")
        typer.echo(
            f"database        : {pg_dir} ("
            + ("kept from the last run" if kept else "new")
            + "; `poolfin up --fresh` wipes it)"
        )
        typer.echo(
            f"credit http     : {stack.http_url}  (GET /pools/<pool_id>, "
            "POST /pools/<pool_id>/applications)"
        )
        typer.echo(f"dashboard       : {stack.dashboard_url}")
        for name, service in dict(state["services"]).items():  # type: ignore[call-overload]
            typer.echo(
                f"service         : {name} (pid {service['pid']}, metrics "
                f"{service['metrics_url']}, health {service['health_url']}, log {service['log']})"
            )
        typer.echo(
            "survives a restart: the database (pools, loans, the ledger, dead letters) and the"
            " keys. Lost: the embedded broker's topics and consumer offsets (memory only);"
            " outbox rows not yet sent are sent again at the next start. --fresh wipes all."
        )
        typer.echo(
            f"keys            : {stack.keyring.directory} (trust file, service secrets, the"
            " keys local tools sign with; `poolfin keys list`)"
        )
        typer.echo("topics          : " + ", ".join(state["topics"]))  # type: ignore[arg-type]
        typer.echo("poolfin is up; `poolfin demo` plays the seed examples. Ctrl-C stops.")
        stopping = False
        closed_through = _business_yesterday()

        def _stop(*_: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        while not stopping:
            # The broker, PostgreSQL and the services are all supervised (defect 5).
            for line in stack.supervise():
                typer.echo(line, err=True)
            closed_through = _close_days_after_midnight(stack, closed_through)
            time.sleep(0.5)
    finally:
        typer.echo("stopping …")
        state_file(settings.data_dir).unlink(missing_ok=True)
        if stop_dashboard is not None:
            stop_dashboard()
        stack.stop()
        typer.echo(f"the database is kept in {pg_dir}; `poolfin up --fresh` wipes it")
        typer.echo("stopped.")


@app.command()
def demo(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Reproduce the seed paper's worked examples against the running stack (starting one if
    none is up). Exits non-zero if any figure differs."""
    from poolfin.demo import run_demo

    _exit_on_sigterm()
    from poolfin.stack import Stack, new_work_dir, running_stack

    settings = Settings()
    say = (lambda *_: None) if as_json else typer.echo
    state = running_stack(settings.data_dir)
    stack = None
    if state is None:
        say("no running stack found; starting one (embedded Kafka + PostgreSQL) …")
        stack = _start(
            Stack(new_work_dir(settings.data_dir), keys_dir=Path(settings.data_dir) / "keys")
        )
        bootstrap = stack.bootstrap
        keyring = stack.keyring
    else:
        bootstrap = str(state["kafka_bootstrap"])
        keyring = _keyring(settings)
        say(f"using the running stack at {bootstrap}")
    try:
        result = asyncio.run(run_demo(bootstrap, keyring, say))
    finally:
        if stack is not None:
            stack.stop()
    if as_json:
        typer.echo(json.dumps(result.as_json()))
    else:
        for problem in result.problems():
            typer.echo(f"MISMATCH: {problem}", err=True)
        typer.echo("all figures match the paper." if not result.problems() else "FAILED")
    raise typer.Exit(0 if not result.problems() else 1)


@facility_app.command("set")
def facility_set(
    pool: Annotated[str, typer.Option(help="pool_id")],
    credit_line: Annotated[str, typer.Option(help="CNY, e.g. 1000000.00")],
    discount_rate: Annotated[str, typer.Option(help="e.g. 0.8")],
    annual_interest_rate: Annotated[str, typer.Option(help="e.g. 0.0435")],
    funder: Annotated[str, typer.Option(help="funder id, e.g. bank-icbc")],
    day_count: Annotated[str, typer.Option(help="ACT/360 or ACT/365")] = "ACT/360",
    tenor_days: Annotated[int, typer.Option(help="loan term")] = 180,
    no_wait: NO_WAIT = False,
) -> None:
    """Publish a FacilitySet for a pool on admin.facilities.v1, checked first by credit's own
    rules, and wait for credit to take it (or say why it refused it, exit 1)."""
    from poolfin.clients import Publisher

    settings = Settings()
    topic, event = _checked_facility(
        pool,
        line=credit_line,
        rate=discount_rate,
        interest=annual_interest_rate,
        funder=funder,
        day_count=day_count,
        tenor_days=tenor_days,
    )
    keyring = _keyring(settings)

    async def send() -> None:
        async with Publisher(settings.kafka_bootstrap, keyring) as publisher:
            await publisher.send(topic, event, key=pool)

    with _unreachable_is_an_error("Kafka", settings.kafka_bootstrap, "POOLFIN_KAFKA_BOOTSTRAP"):
        asyncio.run(send())
    said = (
        "published (not waiting for its outcome: --no-wait)"
        if no_wait
        else _told(settings, topic, [event["event_id"]])
    )
    typer.echo(f"facility for {pool} {said} (event {event['event_id']})")


def _checked_facility(pool: str, **terms: Any) -> tuple[str, dict[str, Any]]:
    """An operator's FacilitySet, refused here (exit 2, with credit's reason) when credit
    would dead-letter it: the contract's bounds, then credit's own rules."""
    from poolfin import scenario
    from services.credit.domain import facility_refusal
    from shared.contracts import decode
    from shared.contracts.codec import Rejected
    from shared.contracts.messages import FacilitySet, Reason

    topic, event = scenario.facility(pool, source="operator-cli", **terms)
    try:
        message = decode(topic, json.dumps(event).encode())
        assert isinstance(message, FacilitySet)
        if why := facility_refusal(message.discount_rate, message.annual_interest_rate):
            raise Rejected(Reason.INVALID_FACILITY, why)
    except Rejected as refusal:
        typer.echo(
            f"error: facility not published ({refusal.reason.value}): {refusal.detail}", err=True
        )
        raise typer.Exit(2) from refusal
    return topic, event


def _publish_operator(
    topic: str,
    messages: list[Any],
    settings: Settings,
    operator: str | None = None,
    *,
    wait: bool = True,
) -> str:
    """Publish operator messages (models), keyed by pool, signed by `operator` (default: the
    local stack's first operator), waiting for the broker's ack; one line, exit 1, when the
    broker is not there. Then (unless not `wait`) wait for what the services made of them
    (poolfin/outcome.py): a refusal is told with its reason, exit 1. Returns what to say."""
    from poolfin.clients import Publisher
    from shared.contracts.codec import encode
    from shared.contracts.messages import PartyRole

    keyring = _keyring(settings)
    signer = (operator, PartyRole.OPERATOR) if operator is not None else None

    async def send() -> None:
        async with Publisher(settings.kafka_bootstrap, keyring) as publisher:
            for message in messages:
                await publisher.send(
                    topic, json.loads(encode(message)), key=message.pool_id, signer=signer
                )

    with _unreachable_is_an_error("Kafka", settings.kafka_bootstrap, "POOLFIN_KAFKA_BOOTSTRAP"):
        asyncio.run(send())
    if not wait:
        return "published (not waiting for its outcome: --no-wait)"
    return _told(settings, topic, [message.event_id for message in messages])


def _told(settings: Settings, topic: str, event_ids: list[str]) -> str:
    """Wait for the outcome of published events; exit 1 with the reason when one is refused
    or nobody answered in time; else what to say ("accepted by credit")."""
    from poolfin.outcome import wait_for_outcomes

    with _unreachable_is_an_error("PostgreSQL", settings.database_url, "POOLFIN_DATABASE_URL"):
        outcomes = asyncio.run(wait_for_outcomes(settings, topic, event_ids, settings.cli_wait_s))
    for outcome in outcomes:
        if outcome.refused:
            typer.echo(f"error: {outcome.said()} (event {outcome.event_id})", err=True)
            raise typer.Exit(1)
        if outcome.waiting_for:
            typer.echo(
                f"error: {outcome.said()} within {settings.cli_wait_s:g} s (event "
                f"{outcome.event_id}, published: it may still be taken; is the service up? "
                "`poolfin status`)",
                err=True,
            )
            raise typer.Exit(1)
    return "published and " + outcomes[-1].said()


async def _credit_rows(settings: Settings, query: str, *args: Any) -> list[Any]:
    from shared.db import create_pool

    pool = await create_pool(settings.database_url, "credit", 1)
    try:
        async with pool.acquire() as conn:
            return list(await conn.fetch(query, *args))
    finally:
        await pool.close()


@pool_app.command("seed")
def pool_seed(
    pool: Annotated[str, typer.Argument(help="CORE/SUPPLIER, e.g. CE-1/SUP-1")],
    level: Annotated[str, typer.Option(help="one open slip of this amount, CNY")] = "1000000.00",
    credit_line: Annotated[str, typer.Option(help="CNY")] = "10000000.00",
    discount_rate: Annotated[str, typer.Option(help="e.g. 0.8")] = "0.8",
    annual_interest_rate: Annotated[str, typer.Option(help="e.g. 0.0435")] = "0.0435",
    funder: Annotated[str, typer.Option(help="the facility's funder")] = "bank-demo",
) -> None:
    """A pool to try things on, as the ERP and an operator would make one: the supplier
    onboarded by its core enterprise, a facility, and one open slip; waits until credit
    shows the pool (signed with the local stack's keys)."""
    from datetime import date

    from poolfin import scenario
    from poolfin.clients import Publisher
    from shared.contracts.messages import PartyRole

    core, _, supplier = pool.partition("/")
    if not core or not supplier or "/" in supplier:
        typer.echo(f"error: {pool!r} is not CORE/SUPPLIER (e.g. CE-1/SUP-1)", err=True)
        raise typer.Exit(2)
    settings = Settings()
    keyring = _keyring(settings)
    keyring.key(supplier, PartyRole.SUPPLIER)  # the supplier signs its own requests (tokens)
    steps = [
        scenario.onboarding(pool, core, supplier, f"Supplier {supplier}"),
        _checked_facility(
            pool, line=credit_line, rate=discount_rate, interest=annual_interest_rate, funder=funder
        ),
        scenario.slip(pool, f"{supplier}-SLIP-1", level, date.today()),
    ]

    async def send(topic: str, event: dict[str, Any]) -> None:
        async with Publisher(settings.kafka_bootstrap, keyring) as publisher:
            await publisher.send(topic, event, key=pool)

    for topic, event in steps:  # each taken before the next: a slip needs its pool
        with _unreachable_is_an_error("Kafka", settings.kafka_bootstrap, "POOLFIN_KAFKA_BOOTSTRAP"):
            asyncio.run(send(topic, event))
        said = _told(settings, topic, [event["event_id"]])
        typer.echo(f"{event['type']} {said}")

    async def shown() -> Any:
        deadline = time.monotonic() + settings.cli_wait_s
        while time.monotonic() < deadline:
            rows = await _credit_rows(
                settings, "SELECT water_level FROM pools WHERE pool_id = $1", pool
            )
            if rows and rows[0]["water_level"] > 0:
                return rows[0]["water_level"]
            await asyncio.sleep(0.2)
        return None

    level_now = asyncio.run(shown())
    if level_now is None:
        typer.echo(f"error: credit does not show {pool} yet (`poolfin status`)", err=True)
        raise typer.Exit(1)
    typer.echo(
        f"pool {pool} is open: water level {level_now}; local keys sign for {supplier} and "
        f"{core} (`poolfin token {supplier}`)"
    )


@app.command("stack")
def stack_command(
    get: Annotated[
        str | None,
        typer.Option(help="one value only, e.g. http, dashboard_url, kafka_bootstrap"),
    ] = None,
) -> None:
    """Where the running stack is (its stack.json): the broker, the database, credit's HTTP
    front, the dashboard, and each service's metrics and health URLs."""
    from poolfin.stack import running_stack, state_file

    settings = Settings()
    state = running_stack(settings.data_dir)
    if state is None:
        typer.echo(
            f"error: no stack is up ({state_file(settings.data_dir)} is missing or its "
            "services are gone): start one with `poolfin up`",
            err=True,
        )
        raise typer.Exit(1)
    if get is None:
        typer.echo(json.dumps(state, indent=2))
        return
    if get not in state:
        typer.echo(f"error: stack.json has no {get!r}; it has {', '.join(state)}", err=True)
        raise typer.Exit(2)
    value = state[get]
    typer.echo(value if isinstance(value, str) else json.dumps(value))


@pool_app.command("position")
def pool_position(
    pool: Annotated[str, typer.Argument(help="pool_id, e.g. CE-1/SUP-1")],
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="ISO instant or date (its end); default: now"),
    ] = None,
) -> None:
    """The borrowing-base certificate: the position credit published for the pool last at or
    before --as-of (level, ineligible by reason, base, loans, in flight, standing)."""
    from datetime import UTC, date, datetime, time

    from shared.calendar import timezone

    settings = Settings()
    try:
        if as_of is None:
            instant = datetime.now(UTC)
        elif len(as_of) == 10:
            instant = datetime.combine(date.fromisoformat(as_of), time.max, tzinfo=timezone())
        else:
            instant = datetime.fromisoformat(as_of)
            instant = instant if instant.tzinfo else instant.replace(tzinfo=timezone())
    except ValueError as exc:
        typer.echo(f"error: --as-of {as_of!r} is not an ISO date or instant", err=True)
        raise typer.Exit(2) from exc
    with _unreachable_is_an_error("PostgreSQL", settings.database_url, "POOLFIN_DATABASE_URL"):
        rows = asyncio.run(
            _credit_rows(
                settings,
                "SELECT body FROM positions WHERE pool_id = $1 AND occurred_at <= $2"
                " ORDER BY occurred_at DESC, event_id DESC LIMIT 1",
                pool,
                instant,
            )
        )
    if not rows:
        typer.echo(f"error: pool {pool} had no position at {instant.isoformat()}", err=True)
        raise typer.Exit(1)
    body = rows[0]["body"]
    typer.echo(json.dumps(json.loads(body) if isinstance(body, str) else body, indent=2))


@day_app.command("close")
def day_close(
    day: Annotated[
        str | None, typer.Option("--date", help="business day to close; default: yesterday")
    ] = None,
    pool: Annotated[
        str | None, typer.Option("--pool", help="one pool; default: every pool credit knows")
    ] = None,
) -> None:
    """Close a business day (the maturity job): interest accrues, charged periods end, unpaid
    matured loans fall overdue and penalty accrues. Run it daily after midnight (cron)."""
    from datetime import date, timedelta

    from poolfin.servicing import close_day
    from shared.calendar import business_date

    settings = Settings()
    try:
        closing = date.fromisoformat(day) if day else business_date() - timedelta(days=1)
    except ValueError as exc:
        typer.echo(f"error: --date {day!r} is not an ISO date such as 2026-11-22", err=True)
        raise typer.Exit(2) from exc
    with _unreachable_is_an_error("the stack", settings.database_url, "POOLFIN_DATABASE_URL"):
        count = asyncio.run(
            close_day(
                settings.kafka_bootstrap,
                settings.database_url,
                closing,
                pool,
                keyring=_keyring(settings),
            )
        )
    typer.echo(f"closing {closing} for {count} pool(s) (admin.servicing.v1)")


@loan_app.command("history")
def loan_history(
    loan: Annotated[str, typer.Argument(help="loan id (= the request id)")],
) -> None:
    """Every step of a loan in order — disbursal, daily accruals, charges, overdue, each part
    repaid — from credit's loan ledger, and where it stands now (JSON)."""
    from shared.money import json_default

    settings = Settings()
    with _unreachable_is_an_error("PostgreSQL", settings.database_url, "POOLFIN_DATABASE_URL"):
        state = asyncio.run(
            _credit_rows(
                settings,
                "SELECT loan_id, pool_id, funder_id, principal, outstanding, annual_interest_rate,"
                " penalty_rate, day_count, disbursed_on, maturity_on, interest_from, accrued,"
                " interest_due, penalty_due, fees_due, overdue FROM loans WHERE loan_id = $1",
                loan,
            )
        )
        steps = asyncio.run(
            _credit_rows(
                settings,
                "SELECT business_date, kind, amount, reference FROM loan_entries"
                " WHERE loan_id = $1 ORDER BY id",
                loan,
            )
        )
    if not state:
        typer.echo(f"error: loan {loan} is not known to credit", err=True)
        raise typer.Exit(1)
    report = {"loan": dict(state[0]), "entries": [dict(step) for step in steps]}
    typer.echo(json.dumps(report, indent=2, default=json_default))


@credit_app.command("approve")
def credit_approve(
    suggestion: Annotated[str, typer.Argument(help="suggestion id (from credit.suggestions.v1)")],
    pool: Annotated[str, typer.Option(help="pool_id of the suggestion")],
    reject: Annotated[bool, typer.Option("--reject", help="reject instead")] = False,
    note: Annotated[str | None, typer.Option(help="free text")] = None,
    no_wait: NO_WAIT = False,
) -> None:
    """Approve (or reject) a suggestion of the credit model; credit applies it to the
    facility."""
    from shared.contracts import messages as m
    from shared.contracts import topics

    settings = Settings()
    message = m.new_event(
        m.CreditSuggestionApproved,
        source="operator-cli",
        pool_id=pool,
        suggestion_id=suggestion,
        approved=not reject,
        note=note,
    )
    said = _publish_operator(topics.ADMIN_FACILITIES, [message], settings, wait=not no_wait)
    typer.echo(f"suggestion {suggestion} {'rejected' if reject else 'approved'}: {said}")


@credit_app.command("suggestions")
def credit_suggestions(
    pool: Annotated[str, typer.Argument(help="pool_id")],
) -> None:
    """The credit model's suggestions for a pool, newest first, with their explanation."""
    settings = Settings()
    with _unreachable_is_an_error("PostgreSQL", settings.database_url, "POOLFIN_DATABASE_URL"):
        rows = asyncio.run(
            _credit_rows(
                settings,
                "SELECT body FROM suggestions WHERE pool_id = $1 ORDER BY created_at DESC",
                pool,
            )
        )
    bodies = [json.loads(r["body"]) if isinstance(r["body"], str) else r["body"] for r in rows]
    typer.echo(json.dumps(bodies, indent=2))


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    partitions: Annotated[
        bool, typer.Option("--partitions", help="Every partition, not only those that lag.")
    ] = False,
) -> None:
    """Per service: liveness (each instance's /health; exit 1 when one is down), consumer lag
    per partition, outbox backlog and dead letters (latest reason and when)."""
    from poolfin.stack import running_stack
    from poolfin.status import render
    from poolfin.status import status as gather

    settings = Settings()
    state = running_stack(settings.data_dir) or {}
    health_urls = {
        name: str(service["health_url"])
        for name, service in dict(state.get("services", {})).items()  # type: ignore[call-overload]
        if isinstance(service, dict) and service.get("health_url")
    }

    async def database_answers() -> None:
        import asyncpg

        conn = await asyncpg.connect(settings.database_url, timeout=5)
        await conn.close()

    # Each part checked on its own, so the one that is down is the one named.
    with _unreachable_is_an_error("PostgreSQL", settings.database_url, "POOLFIN_DATABASE_URL"):
        asyncio.run(database_answers())
    with _unreachable_is_an_error("Kafka", settings.kafka_bootstrap, "POOLFIN_KAFKA_BOOTSTRAP"):
        rows = asyncio.run(gather(settings, health_urls))
    typer.echo(json.dumps(rows, indent=2) if as_json else render(rows, partitions))
    if any(row["live"] == "down" for row in rows):
        raise typer.Exit(1)


@ledger_app.command("verify")
def ledger_verify(
    anchors: Annotated[
        bool,
        typer.Option(
            "--anchors",
            help="also replay settlement.ledger-anchors.v1 (the chain heads published, signed, "
            "outside the database) and check every anchored hash is still in the database",
        ),
    ] = False,
) -> None:
    """Walk every pool's hash chain and the balances, and check credit's exposure (loans within
    the borrowing base, or the sweep rule applied); exit 1 on any problem."""
    from services.credit.exposure_audit import audit_exposure
    from services.settlement_splitter.ledger_audit import audit
    from shared.money import json_default

    settings = Settings()

    async def both() -> dict[str, Any]:
        report = await audit(settings.database_url)
        exposure = await audit_exposure(settings.database_url)
        report["pools_with_loans"] = exposure["pools_with_loans"]
        report["problems"] = [*report["problems"], *exposure["problems"]]
        return report

    with _unreachable_is_an_error("PostgreSQL", settings.database_url, "POOLFIN_DATABASE_URL"):
        report = asyncio.run(both())
    if anchors:
        from poolfin.anchors import audit_anchors, read_topic
        from shared.contracts.topics import SETTLEMENT_LEDGER_ANCHORS
        from shared.trust import parse_trust_file

        trust_file = Path(settings.trust_file or _keyring(settings).trust_file)
        with _unreachable_is_an_error("Kafka", settings.kafka_bootstrap, "POOLFIN_KAFKA_BOOTSTRAP"):
            raw = asyncio.run(
                read_topic(
                    settings.kafka_bootstrap,
                    SETTLEMENT_LEDGER_ANCHORS,
                    say=lambda line: typer.echo(line, err=True),
                )
            )
        with _unreachable_is_an_error("PostgreSQL", settings.database_url, "POOLFIN_DATABASE_URL"):
            anchored = asyncio.run(
                audit_anchors(
                    raw, settings.database_url, parse_trust_file(json.loads(trust_file.read_text()))
                )
            )
        report["anchors"] = {k: v for k, v in anchored.items() if k != "problems"}
        report["problems"] = [*report["problems"], *anchored["problems"]]
    typer.echo(json.dumps(report, indent=2, default=json_default))
    raise typer.Exit(0 if not report["problems"] else 1)


@contracts_app.command("export")
def contracts_export(
    out: Annotated[Path, typer.Option(help="directory")] = Path("docs/contracts"),
    check: Annotated[bool, typer.Option(help="fail if files differ from the code")] = False,
) -> None:
    """Write JSON Schema per message and the AsyncAPI document (or check they are current)."""
    from poolfin.contracts import contract_files

    stale = []
    for name, text in contract_files().items():
        path = out / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        typer.echo(
            "out of date: " + ", ".join(stale) + " (run `poolfin contracts export`)", err=True
        )
        raise typer.Exit(1)
    typer.echo("contracts are current." if check else f"contracts written to {out}")


@app.command()
def bench(
    payments: Annotated[int, typer.Option(help="payments to push")] = 2000,
    pools: Annotated[int, typer.Option(help="pools to spread them over")] = 20,
    rate: Annotated[
        float, typer.Option(min=0, help="payments per second to offer; 0 sends them all at once")
    ] = 0,
    open_receivables: Annotated[
        int, typer.Option(min=0, help="open receivables preloaded into the pools first")
    ] = 0,
    ceiling: Annotated[
        bool, typer.Option(help="also measure a bare consume → PostgreSQL → produce loop")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON line.")] = False,
) -> None:
    """Push N payments through a fresh embedded stack on the real path (a facility and a loan
    in every pool); print settlements/s, latencies, CPU per settlement and memory."""
    from poolfin.bench import run_bench

    _exit_on_sigterm()

    if payments < 1 or pools < 1:
        typer.echo("error: --payments and --pools must be at least 1", err=True)
        raise typer.Exit(2)
    pools = min(pools, payments)  # every pool gets at least one slip to borrow against
    with contextlib.suppress(KeyboardInterrupt):
        run_bench(
            payments,
            pools,
            rate,
            open_receivables=open_receivables,
            ceiling=ceiling,
            as_json=as_json,
        )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
