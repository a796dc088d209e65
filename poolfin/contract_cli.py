"""`poolfin contract verify LOAN_ID`: a loan's contract and both signatures, checked from the
records alone — the document re-rendered from the terms credit asked for, its SHA-256, the
supplier's signed ContractSigned and the funder's signed approval or disbursal, each against
the registry (trust file + keys operators registered)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from shared.settings import Settings

contract_app = typer.Typer(help="Loan contracts and their signatures.", no_args_is_help=True)


def check_signed(
    document: Mapping[str, Any] | None,
    party: str,
    expected_hash: str,
    keys: Mapping[str, Any],
    kinds: set[str],
) -> str | None:
    """None when `document` is a signed message of `party` of one of `kinds` carrying
    `expected_hash`; otherwise what is wrong."""
    from shared.signatures import unproven
    from shared.trust import key_id_of

    if document is None:
        return "no signed message on record"
    if document.get("type") not in kinds:
        return f"the signed message is a {document.get('type')}, not one of {sorted(kinds)}"
    if document.get("contract_hash") != expected_hash:
        return f"it signs contract_hash {document.get('contract_hash')}, not {expected_hash}"
    at = datetime.fromisoformat(str(document.get("occurred_at")))
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    failure = unproven(document, {k: v.key for k, v in keys.items()}, at)
    if failure is not None:
        return f"{failure[0].value}: {failure[1]}"
    signer = keys[key_id_of(document) or ""].party_id
    if signer != party:
        return f"signed by {signer}, not {party}"
    return None


def verify(row: Mapping[str, Any], keys: Mapping[str, Any]) -> dict[str, Any]:
    """The report for one loan's record (a funding_requests row of the gateway)."""
    from services.funding_gateway.domain import contract_hash, render_contract
    from shared.contracts import messages as m

    problems: list[str] = []
    contract, digest = row["contract"], row["contract_hash"]
    if contract is None:
        return {"loan_id": row["request_id"], "ok": False, "problems": ["no contract on record"]}
    if contract_hash(contract) != digest:
        problems.append(f"the contract's SHA-256 is {contract_hash(contract)}, recorded {digest}")
    terms = row["terms"]
    if terms is None or render_contract(m.LoanRequested.model_validate(terms)) != contract:
        problems.append("the contract is not the one the loan's terms render")
    for who, party, column, kinds in (
        ("supplier", row["supplier_id"], "supplier_signature", {"ContractSigned"}),
        ("funder", row["funder_id"], "funder_signature", {"FunderResponse"}),
    ):
        document = row[column]
        if isinstance(document, str):
            document = json.loads(document)
        if who == "funder" and document is not None and document.get("decision") == "rejected":
            problems.append("the funder's signed message is a rejection")
            continue
        wrong = check_signed(document, party, digest, keys, kinds)
        if wrong is not None:
            problems.append(f"{who} {party}: {wrong}")
    return {
        "loan_id": row["request_id"],
        "pool_id": row["pool_id"],
        "state": row["state"],
        "contract_hash": digest,
        "supplier": row["supplier_id"],
        "funder": row["funder_id"],
        "ok": not problems,
        "problems": problems,
    }


async def _registry(conn: Any, trust_file: str) -> dict[str, Any]:
    """Every key: the trust file's and those registered on admin.parties.v1 (as the gateway
    holds them), revocations applied."""
    from pathlib import Path

    from shared.signatures import PublicKey
    from shared.trust import RegisteredKey, parse_trust_file

    keys: dict[str, Any] = dict(parse_trust_file(json.loads(Path(trust_file).read_text())))
    for r in await conn.fetch("SELECT * FROM party_keys"):
        keys[r["key_id"]] = RegisteredKey(
            PublicKey(
                r["key_id"],
                r["party_id"],
                r["scheme"],
                bytes(r["public_key"]),
                r["valid_from"],
                r["valid_to"],
            ),
            r["role"],
        )
    return keys


@contract_app.command("verify")
def contract_verify(
    loan: Annotated[str, typer.Argument(help="the loan id (= its request id)")],
) -> None:
    """Check a loan's contract and both signatures; exit 1 when anything does not hold."""
    from poolfin.cli import _keyring, _unreachable_is_an_error
    from shared.db import create_pool

    settings = Settings()
    trust_file = settings.trust_file or str(_keyring(settings).trust_file)

    async def load() -> dict[str, Any] | None:
        pool = await create_pool(settings.database_url, "funding_gateway", 1)
        try:
            async with pool.acquire() as conn:
                row = await conn.fetchrow(
                    "SELECT * FROM funding_requests WHERE request_id = $1", loan
                )
                if row is None:
                    return None
                return verify(dict(row), await _registry(conn, trust_file))
        finally:
            await pool.close()

    with _unreachable_is_an_error("PostgreSQL", settings.database_url, "POOLFIN_DATABASE_URL"):
        report = asyncio.run(load())
    if report is None:
        typer.echo(f"error: no loan {loan} at the funding gateway", err=True)
        raise typer.Exit(2)
    typer.echo(json.dumps(report, indent=2))
    raise typer.Exit(0 if report["ok"] else 1)
