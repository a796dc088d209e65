"""Trace context (shared/tracing.py): the header every published record carries, a span per
handled message as the child of the record's header, and traces derived from the
correlation id when a producer sends none."""

from __future__ import annotations

import json
from pathlib import Path

from shared.contracts import messages as m
from shared.outbox import Outbox
from shared.tracing import Tracing, derived_trace_id, parse, traceparent_for

PARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_a_traceparent_is_read_only_when_well_formed() -> None:
    assert parse(PARENT) == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    for bad in (None, b"", b"00-xyz", b"00-" + b"0" * 32 + b"-b7ad6b7169203331-01", b"\xff"):
        assert parse(bad) is None


def _payment() -> m.Message:
    return m.new_event(m.DayClosed, source="t", pool_id="CE-1/S-1", business_date="2026-01-05")


def test_records_caused_by_a_handled_message_carry_its_span_in_its_trace(tmp_path: Path) -> None:
    tracing = Tracing.configure("credit", f"file:{tmp_path}")
    cause = _payment()
    outbox = Outbox()
    with tracing.handling([("traceparent", PARENT)], cause):
        outbox.emit("credit.decisions.v1", _payment())
    tracing.shutdown()
    header = outbox.rows[0][3]
    trace_id, span_id = parse(header.encode()) or ("", "")
    assert trace_id == "0af7651916cd43dd8448eb211c80319c"  # the producer's trace goes on
    [span] = [
        json.loads(line)
        for f in tmp_path.glob("*.jsonl")
        for line in f.read_text().split("\n")
        if line
    ]
    assert span["name"] == "credit handle DayClosed"
    assert (span["trace_id"], span["parent_id"], span["span_id"]) == (
        trace_id,
        "b7ad6b7169203331",
        span_id,
    )
    assert span["attributes"]["poolfin.event_id"] == cause.event_id


def test_without_a_header_the_trace_is_the_correlations_even_with_tracing_off() -> None:
    tracing = Tracing.configure("intake", None)
    cause = _payment()
    with tracing.handling([], cause):
        inside = traceparent_for(_payment())
    assert inside.split("-")[1] == derived_trace_id(cause.event_id)
    later = m.new_event(
        m.DayClosed, source="t", pool_id="p", cause=cause, business_date="2026-01-05"
    )
    assert traceparent_for(later).split("-")[1] == derived_trace_id(cause.event_id)


def test_an_unknown_traces_setting_is_refused_with_the_choices() -> None:
    import pytest

    with pytest.raises(ValueError, match="use otlp or file:DIR"):
        Tracing.configure("credit", "jaeger")
