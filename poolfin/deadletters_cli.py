"""`poolfin dead-letters list/show/replay`: the inputs each service refused, kept in its
schema's `dead_letters` table, looked at and re-published once their cause is fixed.

poolfin dead-letters list [--service S] [--reason R] [--since ISO] [--until ISO] [--limit N]
poolfin dead-letters show SERVICE:ID
poolfin dead-letters replay SERVICE:ID… | --reason R / --since / --until [--service S]
                           [--operator OP] [--note TEXT] [--dry-run]

A dead letter is named `SERVICE:ID` (its service and its id in that service's table), or
`ID` with `--service SERVICE`. A replay publishes the stored bytes, key and headers to the
source topic (acks=all, default partitioner: the same key lands on the same partition) and
records who replayed it in `dead_letter_replays`, in the same schema. A dead letter is replayed
at most once: replaying it again publishes nothing and says so.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer

from shared.settings import Settings

T = TypeVar("T")

dead_letters_app = typer.Typer(
    help="Dead letters of every service: list, show, replay (once) to the source topic.",
    no_args_is_help=True,
)

_SUMMARY = (
    "d.id, d.source_topic, d.source_partition, d.source_offset, d.event_id, d.pool_id,"
    " d.reason, d.rejected_at, r.id AS replay_id, r.replayed_by, r.replayed_at"
)


class NotMigrated(Exception):
    """A service schema without the replay tables: its service has not run since the upgrade."""


class Unreachable(Exception):
    """PostgreSQL or Kafka could not be reached (`what`); `__cause__` says how."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


@dataclass(frozen=True, slots=True)
class Filter:
    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @property
    def empty(self) -> bool:
        return self.reason is None and self.since is None and self.until is None

    def sql(self, first: int) -> tuple[str, list[Any]]:
        """The WHERE conditions on `d` (numbered from `$first`) and their arguments."""
        conditions, args = ["true"], []
        for clause, value in (
            ("d.reason = ${}", self.reason),
            ("d.rejected_at >= ${}", self.since),
            ("d.rejected_at < ${}", self.until),
        ):
            if value is not None:
                args.append(value)
                conditions.append(clause.format(first + len(args) - 1))
        return " AND ".join(conditions), args


@dataclass(slots=True)
class Outcome:
    replayed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _schemas(settings: Settings, service: str | None) -> dict[str, str]:
    """Service name → schema, of `service` or of all four."""
    from poolfin.registry import SERVICES

    if service is not None and service not in SERVICES:
        raise _fail(f"unknown service {service!r}; choose one of {', '.join(SERVICES)}")
    return {
        name: make(settings).schema
        for name, make in SERVICES.items()
        if service is None or name == service
    }


def _instant(text: str | None, option: str) -> datetime | None:
    """An ISO date or instant; without a zone it is the platform's business time zone."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise _fail(f"{option} {text!r} is not an ISO 8601 date or instant") from exc
    if value.tzinfo is None:
        from shared.calendar import timezone

        value = value.replace(tzinfo=timezone())
    return value


def _filter(reason: str | None, since: str | None, until: str | None) -> Filter:
    chosen = Filter(reason, _instant(since, "--since"), _instant(until, "--until"))
    if chosen.since and chosen.until and chosen.until <= chosen.since:
        raise _fail("--until is not after --since")
    return chosen


def _refs(
    refs: Sequence[str], service: str | None, schemas: dict[str, str]
) -> list[tuple[str, int]]:
    """`SERVICE:ID` or `ID` (with --service) → (service, id)."""
    found = []
    for ref in refs:
        name, colon, number = ref.rpartition(":")
        if not colon:
            if service is None:
                raise _fail(f"{ref!r}: name a dead letter as SERVICE:ID, or give --service")
            name = service
        elif service is not None and name != service:
            raise _fail(f"{ref!r} is not a dead letter of --service {service}")
        if name not in schemas:
            raise _fail(f"{ref!r}: unknown service {name!r}; one of {', '.join(schemas)}")
        if not number.isdigit() or int(number) <= 0:
            raise _fail(f"{ref!r}: the id is not a positive number")
        found.append((name, int(number)))
    return found


def _operator_default() -> str:
    return os.environ.get("USER") or "operator"


def _shown(raw: bytes | None) -> tuple[str | None, str | None]:
    """Bytes as (text, "utf-8") when they are UTF-8, else (base64, "base64")."""
    if raw is None:
        return None, None
    try:
        return raw.decode(), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode(), "base64"


def _headers(stored: str | None) -> list[tuple[str, bytes | None]] | None:
    """The record's headers from `source_headers` (None: not recorded)."""
    if stored is None:
        return None
    return [
        (str(name), base64.b64decode(value) if value is not None else None)
        for name, value in json.loads(stored)
    ]


def _when(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


async def _connect(settings: Settings) -> Any:
    import asyncpg

    try:
        return await asyncpg.connect(settings.database_url)
    except OSError as exc:
        raise Unreachable("PostgreSQL") from exc


def _run(settings: Settings, work: Coroutine[Any, Any, T]) -> T:
    """Run `work`; a schema not migrated yet, or PostgreSQL or Kafka out of reach, is one
    `error:` line on stderr and exit 1 (the house's wording for the latter)."""
    from poolfin.cli import _unreachable_is_an_error

    try:
        return asyncio.run(work)
    except NotMigrated as exc:
        raise _fail(str(exc), 1) from exc
    except Unreachable as down:
        where, variable = (
            (settings.database_url, "POOLFIN_DATABASE_URL")
            if down.what == "PostgreSQL"
            else (settings.kafka_bootstrap, "POOLFIN_KAFKA_BOOTSTRAP")
        )
        with _unreachable_is_an_error(down.what, where, variable):
            raise (down.__cause__ or OSError(down.what)) from None
        raise  # not reached: the context manager turns it into an exit


async def _ready(conn: Any, schema: str) -> bool:
    """False when the schema has no dead letters table (its service never ran); NotMigrated
    when it predates the replay tables."""
    row = await conn.fetchrow(
        "SELECT to_regclass($1) IS NOT NULL AS letters, to_regclass($2) IS NOT NULL AS replays",
        f'"{schema}".dead_letters',
        f'"{schema}".dead_letter_replays',
    )
    if not row["letters"]:
        return False
    if not row["replays"]:
        raise NotMigrated(
            f"schema {schema} has no dead_letter_replays table yet (shared/0004_replay.sql):"
            " start its service once to migrate it"
        )
    return True


def _summary(service: str, row: Any) -> dict[str, Any]:
    return {
        "ref": f"{service}:{row['id']}",
        "service": service,
        "id": row["id"],
        "reason": row["reason"],
        "source_topic": row["source_topic"],
        "source_partition": row["source_partition"],
        "source_offset": row["source_offset"],
        "pool_id": row["pool_id"],
        "event_id": row["event_id"],
        "rejected_at": _when(row["rejected_at"]),
        "replayed": row["replay_id"] is not None,
        "replayed_by": row["replayed_by"],
        "replayed_at": _when(row["replayed_at"]),
    }


async def _list(
    settings: Settings, schemas: dict[str, str], chosen: Filter, limit: int
) -> list[dict[str, Any]]:
    conn = await _connect(settings)
    try:
        found: list[tuple[datetime, str, int, dict[str, Any]]] = []
        for service, schema in schemas.items():
            if not await _ready(conn, schema):
                continue
            where, args = chosen.sql(2)
            rows = await conn.fetch(
                f'SELECT {_SUMMARY} FROM "{schema}".dead_letters d'  # schema names are ours
                f' LEFT JOIN "{schema}".dead_letter_replays r ON r.dead_letter_id = d.id'
                f" WHERE {where} ORDER BY d.rejected_at DESC, d.id DESC LIMIT $1",
                limit,
                *args,
            )
            found += [(r["rejected_at"], service, r["id"], _summary(service, r)) for r in rows]
    finally:
        await conn.close()
    found.sort(key=lambda item: (item[0], item[1], item[2]), reverse=True)
    return [summary for *_, summary in found[:limit]]


@dead_letters_app.command("list")
def list_command(
    service: Annotated[
        str | None, typer.Option(help="intake | credit | funding-gateway | settlement-splitter")
    ] = None,
    reason: Annotated[
        str | None, typer.Option(help="a reason code, e.g. unknown_receivable")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="rejected at or after (ISO date or instant)")
    ] = None,
    until: Annotated[str | None, typer.Option(help="rejected before (ISO date or instant)")] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many, newest first")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON array")] = False,
) -> None:
    """Dead letters of every service (or one), newest first: where each came from, why it was
    refused, and whether it was replayed."""
    settings = Settings()
    schemas = _schemas(settings, service)
    chosen = _filter(reason, since, until)
    letters = _run(settings, _list(settings, schemas, chosen, limit))
    if as_json:
        typer.echo(json.dumps(letters, indent=2))
        return
    if not letters:
        typer.echo("no dead letters")
        return
    table = [
        ["REF", "REJECTED AT (UTC)", "REASON", "SOURCE", "POOL", "EVENT", "REPLAYED"],
        *(
            [
                d["ref"],
                d["rejected_at"][:19],
                d["reason"],
                f"{d['source_topic']}[{d['source_partition']}]@{d['source_offset']}",
                d["pool_id"] or "-",
                d["event_id"] or "-",
                f"by {d['replayed_by']} at {d['replayed_at'][:19]}" if d["replayed"] else "no",
            ]
            for d in letters
        ),
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + row[-1])


async def _show(settings: Settings, service: str, schema: str, ident: int) -> dict[str, Any] | None:
    conn = await _connect(settings)
    try:
        if not await _ready(conn, schema):
            return None
        row = await conn.fetchrow(
            "SELECT id, source_topic, source_partition, source_offset, event_id, pool_id, reason,"
            " detail, raw_payload, rejected_at, record_id, source_key,"
            f' source_headers::text AS source_headers FROM "{schema}".dead_letters WHERE id = $1',
            ident,
        )
        if row is None:
            return None
        replays = await conn.fetch(
            "SELECT id, replayed_by, replayed_at, target_topic, target_partition, target_offset,"
            f' note FROM "{schema}".dead_letter_replays WHERE dead_letter_id = $1 ORDER BY id',
            ident,
        )
    finally:
        await conn.close()
    payload, payload_encoding = _shown(row["raw_payload"])
    key, key_encoding = _shown(row["source_key"])
    headers = _headers(row["source_headers"])
    recorded = headers is not None
    return {
        "ref": f"{service}:{ident}",
        "service": service,
        "schema": schema,
        **{
            name: row[name]
            for name in (
                "id",
                "reason",
                "detail",
                "source_topic",
                "source_partition",
                "source_offset",
                "event_id",
                "pool_id",
                "record_id",
            )
        },
        "rejected_at": _when(row["rejected_at"]),
        "key_and_headers_recorded": recorded,
        "key": key,
        "key_encoding": key_encoding,
        "headers": [
            dict(zip(("name", "value", "encoding"), (name, *_shown(value)), strict=True))
            for name, value in headers or []
        ],
        "raw_size": len(row["raw_payload"]),
        "raw_payload": payload,
        "raw_payload_encoding": payload_encoding,
        "replays": [
            {
                "id": r["id"],
                "replayed_by": r["replayed_by"],
                "replayed_at": _when(r["replayed_at"]),
                "target_topic": r["target_topic"],
                "target_partition": r["target_partition"],
                "target_offset": r["target_offset"],
                "note": r["note"],
            }
            for r in replays
        ],
    }


def _bytes_line(text: str | None, encoding: str | None) -> str:
    if text is None:
        return "(none)"
    return text if encoding == "utf-8" else f"base64:{text}"


@dead_letters_app.command("show")
def show_command(
    ref: Annotated[str, typer.Argument(help="SERVICE:ID (as `list` prints it), or ID")],
    service: Annotated[str | None, typer.Option(help="the service, when REF is a bare ID")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
) -> None:
    """Everything about one dead letter: every column, the detail, the raw payload (as text
    when it is UTF-8, else base64), the record's key and headers, and its replays."""
    settings = Settings()
    schemas = _schemas(settings, None)
    [(name, ident)] = _refs([ref], service, schemas)
    letter = _run(settings, _show(settings, name, schemas[name], ident))
    if letter is None:
        raise _fail(f"no dead letter {name}:{ident}", 1)
    if as_json:
        typer.echo(json.dumps(letter, indent=2))
        return
    lines = [f"dead letter {letter['ref']} (schema {letter['schema']})"]
    for label, name in (
        ("reason", "reason"),
        ("detail", "detail"),
        ("source topic", "source_topic"),
        ("partition", "source_partition"),
        ("offset", "source_offset"),
        ("event id", "event_id"),
        ("pool id", "pool_id"),
        ("rejected at", "rejected_at"),
        ("record id", "record_id"),
    ):
        value = letter[name]
        lines.append(f"{label + ':':<14}{value if value is not None else '-'}")
    if letter["key_and_headers_recorded"]:
        lines.append(f"{'key:':<14}{_bytes_line(letter['key'], letter['key_encoding'])}")
        lines.append(f"{'headers:':<14}{len(letter['headers'])}")
        lines += [
            f"  {h['name']}: {_bytes_line(h['value'], h['encoding'])}" for h in letter["headers"]
        ]
    else:
        lines.append(f"{'key:':<14}(not recorded: dead-lettered before keys were kept)")
        lines.append(f"{'headers:':<14}(not recorded)")
    encoding = "UTF-8" if letter["raw_payload_encoding"] == "utf-8" else "not UTF-8, base64"
    lines.append(f"payload ({letter['raw_size']} bytes, {encoding}):")
    lines.append(letter["raw_payload"])
    if letter["replays"]:
        lines.append("replays:")
        lines += [
            f"  {r['replayed_at']} by {r['replayed_by']} to {r['target_topic']}"
            f" [{r['target_partition']}]@{r['target_offset']}"
            + (f" ({r['note']})" if r["note"] else "")
            for r in letter["replays"]
        ]
    else:
        lines.append("replays:      none")
    typer.echo("\n".join(lines))


_REPLAYABLE = (
    "d.id, d.source_topic, d.event_id, d.pool_id, d.record_id, d.rejected_at, d.raw_payload,"
    " d.source_key, d.source_headers::text AS source_headers,"
    " r.id AS replay_id, r.replayed_by, r.replayed_at"
)


async def _candidates(
    conn: Any,
    schemas: dict[str, str],
    refs: list[tuple[str, int]],
    chosen: Filter,
    outcome: Outcome,
) -> list[tuple[str, Any]]:
    """The dead letters to replay, oldest first (a pool's order is kept)."""
    found: list[tuple[str, Any]] = []
    for service, schema in schemas.items():
        wanted = sorted({ident for name, ident in refs if name == service})
        if refs and not wanted:
            continue
        if not await _ready(conn, schema):
            outcome.failed += [f"{service}:{i}: no such dead letter" for i in wanted]
            continue
        if refs:
            where, args = "d.id = ANY($1::bigint[])", [wanted]
        else:
            where, args = chosen.sql(1)
        rows = await conn.fetch(
            f'SELECT {_REPLAYABLE} FROM "{schema}".dead_letters d'
            f' LEFT JOIN "{schema}".dead_letter_replays r ON r.dead_letter_id = d.id'
            f" WHERE {where} ORDER BY d.id",
            *args,
        )
        missing = set(wanted) - {r["id"] for r in rows}
        outcome.failed += [f"{service}:{i}: no such dead letter" for i in sorted(missing)]
        found += [(service, r) for r in rows]
    found.sort(key=lambda item: (item[1]["rejected_at"], item[1]["id"]))
    return found


def _record(row: Any) -> tuple[bytes | None, list[tuple[str, bytes | None]]] | str:
    """The key and headers to publish with, or why the dead letter cannot be replayed."""
    from shared.contracts.topics import is_external

    headers = _headers(row["source_headers"])
    if headers is not None:
        return row["source_key"], headers
    # Dead-lettered before keys and headers were kept: an external record needs neither (its
    # signature is in the payload; producers key by pool), an internal one needs its MAC.
    if is_external(row["source_topic"]) and row["pool_id"]:
        return row["pool_id"].encode(), []
    return (
        "dead-lettered before its key and headers were kept, and an internal record cannot be "
        "re-published without its poolfin-mac header"
    )


async def _replay(
    settings: Settings,
    schemas: dict[str, str],
    refs: list[tuple[str, int]],
    chosen: Filter,
    operator: str,
    note: str | None,
    dry_run: bool,
) -> Outcome:
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaConnectionError, KafkaError
    from asyncpg import InterfaceError, PostgresError

    outcome = Outcome()
    conn = await _connect(settings)
    producer: AIOKafkaProducer | None = None
    try:
        for service, row in await _candidates(conn, schemas, refs, chosen, outcome):
            ref, schema, topic = f"{service}:{row['id']}", schemas[service], row["source_topic"]
            if row["replay_id"] is not None:
                outcome.skipped.append(
                    f"{ref}: already replayed at {_when(row['replayed_at'])}"
                    f" by {row['replayed_by']}"
                )
                continue
            record = _record(row)
            if isinstance(record, str):
                outcome.failed.append(f"{ref}: {record}")
                continue
            key, headers = record
            what = (
                f"{ref} -> {topic} (key {_bytes_line(*_shown(key))}, {len(headers)} header(s),"
                f" {len(row['raw_payload'])} bytes, event {row['event_id'] or '-'})"
            )
            if dry_run:
                outcome.replayed.append(what)
                continue
            if producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=settings.kafka_bootstrap,
                    acks="all",
                    enable_idempotence=settings.kafka_idempotence,
                )
                try:
                    await producer.start()
                except BaseException as exc:
                    await producer.stop()
                    if isinstance(exc, KafkaConnectionError | OSError):
                        raise Unreachable("Kafka") from exc
                    raise
            try:
                async with conn.transaction():
                    # One replay at a time per dead letter: a concurrent one waits here, then
                    # finds the audit row and skips.
                    await conn.execute(
                        f'SELECT 1 FROM "{schema}".dead_letters WHERE id = $1 FOR UPDATE',
                        row["id"],
                    )
                    earlier = await conn.fetchrow(
                        f'SELECT replayed_by, replayed_at FROM "{schema}".dead_letter_replays'
                        " WHERE dead_letter_id = $1",
                        row["id"],
                    )
                    if earlier is not None:
                        outcome.skipped.append(
                            f"{ref}: already replayed at {_when(earlier['replayed_at'])}"
                            f" by {earlier['replayed_by']}"
                        )
                        continue
                    # The refusal took the event id in the refusing service's inbox
                    # (`processed`, with this record's identity): free it, so the replayed
                    # copy is decided afresh. An id taken by another record (an effect, or
                    # the first of a conflict) is left alone: it cannot take effect twice.
                    if row["event_id"] is not None:
                        await conn.execute(
                            f'DELETE FROM "{schema}".processed'
                            " WHERE consumer = $1 AND event_id = $2 AND record_id = $3",
                            service,
                            row["event_id"],
                            row["record_id"],
                        )
                    sent = await producer.send_and_wait(
                        topic, row["raw_payload"], key=key, headers=headers
                    )
                    await conn.execute(
                        f'INSERT INTO "{schema}".dead_letter_replays(dead_letter_id, replayed_by,'
                        " target_topic, target_partition, target_offset, note)"
                        " VALUES ($1, $2, $3, $4, $5, $6)",
                        row["id"],
                        operator,
                        topic,
                        sent.partition,
                        sent.offset,
                        note,
                    )
                    outcome.replayed.append(
                        f"{what} [{sent.partition}]@{sent.offset} by {operator}"
                    )
            except (KafkaError, PostgresError, InterfaceError, OSError, TimeoutError) as exc:
                # this one failed; the others are still tried
                outcome.failed.append(f"{ref}: {type(exc).__name__}: {exc}")
    finally:
        if producer is not None:
            await producer.stop()
        await conn.close()
    return outcome


@dead_letters_app.command("replay")
def replay_command(
    refs: Annotated[
        list[str] | None,
        typer.Argument(help="SERVICE:ID… (as `list` prints them), or IDs with --service"),
    ] = None,
    service: Annotated[
        str | None, typer.Option(help="the service of bare IDs; with a filter, only its letters")
    ] = None,
    reason: Annotated[
        str | None, typer.Option(help="replay every dead letter of this reason")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="…rejected at or after (ISO date or instant)")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="…rejected before (ISO date or instant)")
    ] = None,
    operator: Annotated[
        str | None, typer.Option(help="who replays (default: $USER, else 'operator')")
    ] = None,
    note: Annotated[str | None, typer.Option(help="why, kept in the audit row")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="say what would be replayed; publish nothing")
    ] = False,
) -> None:
    """Re-publish dead letters to their source topic, exactly as they were sent (bytes, key,
    headers), once each, and record who did it. Exit 0 when every one was replayed or had been
    already, 1 when any could not be, 2 on bad arguments."""
    settings = Settings()
    chosen = _filter(reason, since, until)
    if refs and not chosen.empty:
        raise _fail("give dead letters by id or by --reason/--since/--until, not both")
    if not refs and chosen.empty:
        raise _fail("give SERVICE:ID…, or a filter: --reason, --since, --until")
    all_schemas = _schemas(settings, None)
    found = _refs(refs or [], service, all_schemas)
    schemas = _schemas(settings, service) if not refs else all_schemas
    who = operator or _operator_default()
    outcome = _run(settings, _replay(settings, schemas, found, chosen, who, note, dry_run))
    verb = "would replay" if dry_run else "replayed"
    for line in outcome.replayed:
        typer.echo(f"{verb} {line}")
    for line in outcome.skipped:
        typer.echo(f"skipped {line}")
    for line in outcome.failed:
        typer.echo(f"error: not replayed {line}", err=True)
    typer.echo(
        f"{len(outcome.replayed)} {verb}, {len(outcome.skipped)} skipped (already replayed),"
        f" {len(outcome.failed)} failed"
    )
    if outcome.failed:
        raise typer.Exit(1)
