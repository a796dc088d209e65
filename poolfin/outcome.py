"""What became of a message a command published (issue 12: commands that tell the truth).

A command that publishes a request waits, by default, until every service that reads the
topic has taken it or refused it, and says which: the service's `processed` table holds the
event once it was taken; its `dead_letters` table holds it, with the reason, when it was
refused (by the trust gate or by the domain). Reading both tables is the same for every
command and every service, so no service needs a reply topic for the CLI."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from poolfin.registry import SERVICES
from shared.settings import Settings


@dataclass
class Outcome:
    event_id: str
    accepted_by: list[str] = field(default_factory=list)
    refused_by: list[tuple[str, str, str]] = field(default_factory=list)  # service, reason, why
    waiting_for: list[str] = field(default_factory=list)

    @property
    def refused(self) -> bool:
        return bool(self.refused_by)

    def said(self) -> str:
        if self.refused_by:
            return "; ".join(
                f"refused by {service} ({reason}): {why}"
                for service, reason, why in self.refused_by
            )
        if self.waiting_for:
            return f"no answer yet from {', '.join(self.waiting_for)}"
        return f"accepted by {', '.join(self.accepted_by)}"


async def wait_for_outcomes(
    settings: Settings, topic: str, event_ids: Sequence[str], timeout: float
) -> list[Outcome]:
    """Each event's outcome at every reader of `topic`, once all have answered or `timeout`
    has passed (then `waiting_for` names who has not)."""
    readers = [s for s in (make(settings) for make in SERVICES.values()) if topic in s.topics]
    if not readers:  # e.g. the registry: every service applies it
        readers = [make(settings) for make in SERVICES.values()]
    deadline = time.monotonic() + timeout
    conn = await asyncpg.connect(settings.database_url, timeout=10)
    try:
        while True:
            outcomes = {e: Outcome(e) for e in event_ids}
            for spec in readers:
                refused = {
                    r["event_id"]: (r["reason"], r["detail"])
                    for r in await conn.fetch(
                        f"SELECT event_id, reason, detail FROM {spec.schema}.dead_letters"
                        " WHERE event_id = ANY($1::text[])",
                        list(event_ids),
                    )
                }
                taken = {
                    r["event_id"]
                    for r in await conn.fetch(
                        f"SELECT event_id FROM {spec.schema}.processed"
                        " WHERE consumer = $1 AND event_id = ANY($2::text[])",
                        spec.name,
                        list(event_ids),
                    )
                }
                for event_id, outcome in outcomes.items():
                    if event_id in refused:
                        outcome.refused_by.append((spec.name, *refused[event_id]))
                    elif event_id in taken:
                        outcome.accepted_by.append(spec.name)
                    else:
                        outcome.waiting_for.append(spec.name)
            if all(not o.waiting_for for o in outcomes.values()) or time.monotonic() > deadline:
                return list(outcomes.values())
            await asyncio.sleep(0.2)
    finally:
        await conn.close()
