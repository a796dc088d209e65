"""`poolfin programme set/show`: a core enterprise's programme (issue 11): its funders with
their agreements, the routing rule and the intercreditor rule, validated here as credit
validates it and published signed by an operator on admin.programmes.v1."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from poolfin.options import NO_WAIT
from shared.contracts import messages as m
from shared.contracts import topics
from shared.settings import Settings

programme_app = typer.Typer(
    help="Programmes: a core enterprise's funders, routing and intercreditor rules.",
    no_args_is_help=True,
)


@programme_app.command("set")
def set_programme(
    programme_file: Annotated[
        Path,
        typer.Argument(help='JSON: {"funders": [...], "routing": …, "intercreditor": …}'),
    ],
    core: Annotated[str, typer.Option(help="the core enterprise")],
    operator: Annotated[str, typer.Option("--as", help="the operator who sets it")] = "op-1",
    no_wait: NO_WAIT = False,
) -> None:
    """Validate a programme and publish it, and wait for credit to take it; credit routes
    the core enterprise's next applications by it."""
    from poolfin.cli import _publish_operator

    try:
        body = json.loads(programme_file.read_text())
        message = m.new_event(
            m.ProgrammeSet, source=operator, pool_id=core, core_enterprise_id=core, **body
        )
    except (OSError, ValueError, ValidationError, TypeError) as exc:
        typer.echo(f"error: {programme_file} is not a programme: {exc}", err=True)
        raise typer.Exit(2) from exc
    said = _publish_operator(
        topics.ADMIN_PROGRAMMES, [message], Settings(), operator, wait=not no_wait
    )
    typer.echo(f"programme of {core} {said} (event {message.event_id})")


@programme_app.command("show")
def show(core: Annotated[str, typer.Option(help="the core enterprise")]) -> None:
    """The programme in force, as credit holds it."""
    from poolfin.cli import _unreachable_is_an_error
    from shared.db import create_pool

    settings = Settings()

    async def read() -> dict[str, object] | None:
        pool = await create_pool(settings.database_url, "credit", 1)
        try:
            row = await pool.fetchrow(
                "SELECT routing, intercreditor, funders, event_id, set_at FROM programmes"
                " WHERE core_enterprise_id = $1",
                core,
            )
        finally:
            await pool.close()
        if row is None:
            return None
        funders = row["funders"]
        return {
            "core_enterprise_id": core,
            "routing": row["routing"],
            "intercreditor": row["intercreditor"],
            "funders": json.loads(funders) if isinstance(funders, str) else funders,
            "event_id": row["event_id"],
            "set_at": row["set_at"].isoformat(),
        }

    with _unreachable_is_an_error("PostgreSQL", settings.database_url, "POOLFIN_DATABASE_URL"):
        found = asyncio.run(read())
    if found is None:
        typer.echo(f"no programme for {core} (its pools' facilities name their funder)", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps(found, indent=2))


iso20022_app = typer.Typer(
    help="ISO 20022 invoice financing (tsin.001/tsin.002) for banks that speak it.",
    no_args_is_help=True,
)


@iso20022_app.command("bridge")
def iso20022_bridge(
    funder: Annotated[str, typer.Option(help="the bank's funder id")],
) -> None:
    """Run the bank-side adapter: poolfin's requests out as tsin.001 on
    funding.iso20022.requests.FUNDER.v1, the bank's tsin.002 answers from
    funding.iso20022.responses.FUNDER.v1 back as FunderResponses signed with its key."""
    from poolfin.cli import _keyring, _unreachable_is_an_error
    from poolfin.iso20022 import bridge

    settings = Settings()
    keyring = _keyring(settings)

    def sign(document: dict[str, object]) -> dict[str, object]:
        signed: dict[str, object] = keyring.sign(document, funder, m.PartyRole.FUNDER)
        return signed

    async def run() -> None:
        stop = asyncio.Event()
        typer.echo(f"bridging {funder} (Ctrl-C stops)", err=True)
        await bridge(settings.kafka_bootstrap, funder, sign, stop, settings.topic_partitions)

    with _unreachable_is_an_error("Kafka", settings.kafka_bootstrap, "POOLFIN_KAFKA_BOOTSTRAP"):
        try:
            asyncio.run(run())
        except KeyboardInterrupt:
            typer.echo("stopped", err=True)
