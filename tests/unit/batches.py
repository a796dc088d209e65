"""Running handlers as the kernel does, on a fake store: prepare, handle each, end the batch,
flush."""

from __future__ import annotations

import json
from typing import Any, cast

from shared.contracts import messages as m
from shared.contracts.codec import Rejected
from shared.inbox import BatchState, EndsBatch, Handler, UnitOfWork
from shared.outbox import Outbox

Emitted = list[tuple[str, dict[str, Any]]]


async def run_batch(
    state: BatchState, handle: Handler, *events: m.Message
) -> tuple[Emitted, list[str | None]]:
    """What the batch emitted, and per event its refusal reason (None: taken)."""
    uow = UnitOfWork(conn=cast(Any, None), outbox=Outbox(), schema="test", state=state)
    await state.prepare(cast(Any, None), events)
    reasons: list[str | None] = []
    for event in events:
        try:
            refusal = await handle(uow, event)
        except Rejected as raised:  # the kernel takes a raised refusal too
            refusal = raised
        reasons.append(refusal.reason.value if refusal is not None else None)
    if isinstance(state, EndsBatch):
        state.end_batch(uow)
    await state.flush(cast(Any, None))
    return [(topic, json.loads(value)) for topic, _, value, _ in uow.outbox.rows], reasons
