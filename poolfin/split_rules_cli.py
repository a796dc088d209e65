"""`poolfin split-rules set/show/history`: a programme's (or one pool's) split rules, validated
here as the splitter validates them, published signed by an operator on admin.split-rules.v1."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from poolfin.options import NO_WAIT
from shared.contracts import messages as m
from shared.contracts import topics
from shared.contracts.split_rules import RuleSet
from shared.settings import Settings

split_rules_app = typer.Typer(
    help="Split rules of a programme or a pool: set (validated, versioned), show, history.",
    no_args_is_help=True,
)


def _scope(programme: str | None, pool: str | None) -> tuple[m.SplitScope, str]:
    if (programme is None) == (pool is None):
        typer.echo("error: give --programme CORE_ENTERPRISE or --pool POOL_ID (one)", err=True)
        raise typer.Exit(2)
    if programme is not None:
        return m.SplitScope.PROGRAMME, programme
    assert pool is not None
    return m.SplitScope.POOL, pool


@split_rules_app.command("set")
def set_rules(
    rules_file: Annotated[Path, typer.Argument(help='JSON: {"receivers": [...]} (README §4c)')],
    programme: Annotated[str | None, typer.Option(help="core enterprise id")] = None,
    pool: Annotated[str | None, typer.Option(help="pool id (overrides its programme)")] = None,
    operator: Annotated[str, typer.Option("--as", help="the operator who sets them")] = "op-1",
    note: Annotated[str | None, typer.Option(help="why")] = None,
    no_wait: NO_WAIT = False,
) -> None:
    """Validate a rule set and publish it, and wait for the splitter to take it (it makes it
    the scope's next version)."""
    from poolfin.cli import _publish_operator
    from services.settlement_splitter.rules import refusal

    settings = Settings()
    scope, key = _scope(programme, pool)
    try:
        rules = RuleSet.model_validate(json.loads(rules_file.read_text()))
    except (OSError, ValueError, ValidationError) as exc:
        typer.echo(f"error: {rules_file} is not a rule set: {exc}", err=True)
        raise typer.Exit(2) from exc
    if why := refusal(rules):
        typer.echo(f"error: rules refused (invalid_split_rules): {why}", err=True)
        raise typer.Exit(2)
    message = m.new_event(
        m.SplitRulesSet,
        source=operator,
        pool_id=key,
        scope=scope,
        core_enterprise_id=key if scope is m.SplitScope.PROGRAMME else None,
        rules=rules,
        note=note,
    )
    said = _publish_operator(
        topics.ADMIN_SPLIT_RULES, [message], settings, operator, wait=not no_wait
    )
    typer.echo(f"split rules for {scope.value} {key} {said} (event {message.event_id})")


async def _versions(settings: Settings, scope_key: str) -> list[dict[str, Any]]:
    from shared.db import create_pool

    pool = await create_pool(settings.database_url, "settlement", 1)
    try:
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT version, rules, event_id, set_at FROM split_rules WHERE scope_key = $1"
                " ORDER BY version",
                scope_key,
            )
    finally:
        await pool.close()
    return [
        {
            "version": r["version"],
            "rules": r["rules"],
            "event_id": r["event_id"],
            "set_at": r["set_at"].isoformat(),
        }
        for r in rows
    ]


def _print_versions(programme: str | None, pool: str | None, latest: bool) -> None:
    from poolfin.cli import _unreachable_is_an_error

    settings = Settings()
    scope, key = _scope(programme, pool)
    with _unreachable_is_an_error("PostgreSQL", settings.database_url, "POOLFIN_DATABASE_URL"):
        versions = asyncio.run(_versions(settings, f"{scope.value}:{key}"))
    if not versions:
        typer.echo(f"no split rules for {scope.value} {key} (the platform fee rule applies)")
        raise typer.Exit(1)
    typer.echo(json.dumps(versions[-1] if latest else versions, indent=2, default=str))


@split_rules_app.command("show")
def show(
    programme: Annotated[str | None, typer.Option(help="core enterprise id")] = None,
    pool: Annotated[str | None, typer.Option(help="pool id")] = None,
) -> None:
    """The version in force for a programme or a pool, as JSON."""
    _print_versions(programme, pool, latest=True)


@split_rules_app.command("history")
def history(
    programme: Annotated[str | None, typer.Option(help="core enterprise id")] = None,
    pool: Annotated[str | None, typer.Option(help="pool id")] = None,
) -> None:
    """Every version of a programme's or a pool's rules, oldest first."""
    _print_versions(programme, pool, latest=False)
