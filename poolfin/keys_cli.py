"""`poolfin keys`: the registry of parties and keys, maker-checker.

An operator proposes a key change (register a party's key, or revoke one); a second operator
approves or rejects it. Both are signed messages on admin.parties.v1 that every service
applies to its own registry; the same operator cannot approve its own proposal
(`same_operator`)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime
from typing import Annotated, Any

import typer

from shared.contracts import messages as m
from shared.contracts import topics
from shared.settings import Settings

keys_app = typer.Typer(
    help="Parties and their keys: propose, approve (a second operator), revoke, list.",
    no_args_is_help=True,
)


def _publish(message: m.Message, operator: str, settings: Settings) -> None:
    """Publish on the registry and wait for every service to take it (a refusal, such as
    the maker approving its own change, is told with its reason: exit 1)."""
    from poolfin.cli import _publish_operator

    _publish_operator(topics.ADMIN_PARTIES, [message], settings, operator)


def _when(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@keys_app.command("propose")
def propose(
    party: Annotated[str, typer.Argument(help="party id, e.g. CE-1 or bank-icbc")],
    role: Annotated[m.PartyRole, typer.Option(help="the party's role")],
    public_key: Annotated[
        str | None,
        typer.Option(help="the party's Ed25519 public key, base64url (raw 32 bytes)"),
    ] = None,
    new: Annotated[
        bool, typer.Option("--new", help="make a key pair here and keep its private half")
    ] = False,
    key_id: Annotated[str | None, typer.Option(help="default: PARTY.<random>")] = None,
    valid_from: Annotated[
        str | None, typer.Option(help="ISO instant; default: at approval")
    ] = None,
    valid_to: Annotated[
        str | None, typer.Option(help="ISO instant; default: until revoked")
    ] = None,
    operator: Annotated[str, typer.Option("--as", help="the proposing operator")] = "op-1",
    note: Annotated[str | None, typer.Option(help="why")] = None,
) -> None:
    """Propose registering a key for a party (the maker's half of maker-checker)."""
    from poolfin.cli import _keyring
    from shared.trust import b64url

    settings = Settings()
    if (public_key is None) == (not new):
        typer.echo("error: give --public-key or --new (exactly one)", err=True)
        raise typer.Exit(2)
    private: bytes | None = None
    if new:
        kid, private, public = _keyring(settings).new_key(party, role)
        key_id = key_id or kid
        public_key = b64url(public)
    message = m.new_event(
        m.KeyChangeProposed,
        source=operator,
        pool_id=m.REGISTRY_KEY,
        change_id=f"KC-{uuid.uuid4().hex[:12]}",
        action=m.KeyAction.REGISTER,
        party_id=party,
        role=role,
        key_id=key_id or f"{party}.{uuid.uuid4().hex[:8]}",
        public_key=public_key,
        valid_from=_when(valid_from),
        valid_to=_when(valid_to),
        note=note,
    )
    if private is not None:  # kept aside; signs for the party once approved
        _keyring(settings).keep_pending(message.change_id, message.key_id, party, role, private)
    _publish(message, operator, settings)
    typer.echo(
        f"proposed {message.change_id}: register key {message.key_id} of {party} ({role.value});"
        f" a second operator approves it: poolfin keys approve {message.change_id} --as op-2"
    )


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="the key to revoke")],
    party: Annotated[str, typer.Option(help="its party")],
    role: Annotated[m.PartyRole, typer.Option(help="the party's role")],
    at: Annotated[str | None, typer.Option(help="ISO instant; default: at approval")] = None,
    operator: Annotated[str, typer.Option("--as", help="the proposing operator")] = "op-1",
    note: Annotated[str | None, typer.Option(help="why")] = None,
) -> None:
    """Propose revoking a key (effective once a second operator approves)."""
    settings = Settings()
    message = m.new_event(
        m.KeyChangeProposed,
        source=operator,
        pool_id=m.REGISTRY_KEY,
        change_id=f"KC-{uuid.uuid4().hex[:12]}",
        action=m.KeyAction.REVOKE,
        party_id=party,
        role=role,
        key_id=key_id,
        valid_to=_when(at),
        note=note,
    )
    _publish(message, operator, settings)
    typer.echo(
        f"proposed {message.change_id}: revoke key {key_id} of {party}; "
        f"poolfin keys approve {message.change_id} --as op-2"
    )


@keys_app.command("approve")
def approve(
    change: Annotated[str, typer.Argument(help="the change id")],
    operator: Annotated[str, typer.Option("--as", help="the approving operator")] = "op-2",
    reject: Annotated[bool, typer.Option("--reject", help="reject instead")] = False,
    note: Annotated[str | None, typer.Option(help="why")] = None,
) -> None:
    """Approve (or reject) a key change proposed by another operator (the checker's half)."""
    from poolfin.cli import _keyring

    settings = Settings()
    message = m.new_event(
        m.KeyChangeApproved,
        source=operator,
        pool_id=m.REGISTRY_KEY,
        change_id=change,
        approved=not reject,
        note=note,
    )
    _publish(message, operator, settings)
    typer.echo(f"{'rejection' if reject else 'approval'} of {change} by {operator} published")
    state = asyncio.run(_decided(settings, change, message.event_id))
    typer.echo(f"{change} is {state or 'not decided yet (see poolfin keys list)'}")
    if state == "approved" and _keyring(settings).adopt_pending_for(change):
        typer.echo("the new key signs for its party on this machine from now on")


async def _decided(
    settings: Settings, change: str, event_id: str, timeout: float = 15
) -> str | None:
    """The change's state once a service applied the decision (credit's registry), or why the
    decision was refused (e.g. same_operator: the maker approving its own change)."""
    import time

    from shared.db import create_pool

    pool = await create_pool(settings.database_url, "credit", 1)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            async with pool.acquire() as conn:
                state = await conn.fetchval(
                    "SELECT state FROM key_changes WHERE change_id = $1", change
                )
                refused = await conn.fetchrow(
                    "SELECT reason, detail FROM dead_letters WHERE event_id = $1", event_id
                )
            if refused is not None:
                return (
                    f"unchanged: the decision was refused ({refused['reason']}: "
                    f"{refused['detail']})"
                )
            if state is not None and state != "proposed":
                return str(state)
            await asyncio.sleep(0.2)
        return None
    finally:
        await pool.close()


@keys_app.command("token")
def token(
    party: Annotated[str, typer.Argument(help="the party the token speaks for")],
    ttl: Annotated[int, typer.Option(help="lifetime in seconds")] = 900,
) -> None:
    """A bearer token for credit's HTTP front, signed with the local key of PARTY."""
    import json as _json

    from poolfin.cli import _keyring
    from poolfin.tokens import token_for

    settings = Settings()
    keyring = _keyring(settings)
    known = _json.loads(keyring.parties_file.read_text())["parties"].get(party)
    if known is None:
        typer.echo(
            f"error: no local key for {party}; the local tools make one the first time they "
            f"sign for it, or register one: poolfin keys propose {party} --role ROLE --new",
            err=True,
        )
        raise typer.Exit(2)
    typer.echo(token_for(keyring, party, m.PartyRole(known["role"]), ttl))


@keys_app.command("provision")
def provision(
    directory: Annotated[str, typer.Argument(help="where to write the three files")],
) -> None:
    """Write a trust file (two operators, the platform's signing keys), the services' secrets
    and the local parties' private keys, when missing (idempotent); print the settings."""
    from pathlib import Path

    from poolfin.keys import Keyring

    ring = Keyring.provision(Path(directory))
    for name, value in ring.env().items():
        typer.echo(f"{name}={value}")


@keys_app.command("list")
def list_keys(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every key the registry holds: the trust file's, then those operators registered (as
    credit's registry has them), with pending changes."""
    from poolfin.cli import _keyring, _unreachable_is_an_error
    from shared.db import create_pool

    settings = Settings()
    trust = json.loads(_keyring(settings).trust_file.read_text())
    rows: list[dict[str, Any]] = [
        {
            "key_id": key["key_id"],
            "party_id": party["party_id"],
            "role": party["role"],
            "source": "trust file",
            "valid_from": key.get("valid_from"),
            "valid_to": key.get("valid_to"),
        }
        for party in trust["parties"]
        for key in party["keys"]
    ]

    async def registered() -> list[dict[str, Any]]:
        pool = await create_pool(settings.database_url, "credit", 1)
        try:
            async with pool.acquire() as conn:
                found = await conn.fetch(
                    "SELECT c.change_id, c.action, c.party_id, c.role, c.key_id, c.state,"
                    " c.proposed_by, c.decided_by, c.valid_from, c.valid_to, r.revoked_at"
                    " FROM key_changes c LEFT JOIN key_revocations r USING (key_id)"
                    " ORDER BY c.proposed_at"
                )
        finally:
            await pool.close()
        return [
            {**dict(row), "source": "admin.parties.v1"}
            | {k: row[k].isoformat() for k in ("valid_from", "valid_to", "revoked_at") if row[k]}
            for row in found
        ]

    with _unreachable_is_an_error("PostgreSQL", settings.database_url, "POOLFIN_DATABASE_URL"):
        rows += asyncio.run(registered())
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    for row in rows:
        state = row.get("state", "trusted")
        typer.echo(
            f"{row['key_id']:<32} {row['party_id']:<20} {row['role']:<18} {state:<9}"
            f" {row['source']}"
            + (
                f" maker={row['proposed_by']} checker={row.get('decided_by')}"
                if "state" in row
                else ""
            )
        )
