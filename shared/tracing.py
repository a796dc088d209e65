"""Traces (issue 12): one trace per payment, or per financing, across the services that handle
it, through OpenTelemetry, with the W3C trace context in each record's `traceparent` header.

- Every record a service publishes carries `traceparent: 00-<trace id>-<span id>-01`. The
  span is the handling of the message that caused it, so the trace is a tree: the ERP's
  payment → intake → credit → the splitter.
- A record that arrives without one (an ERP or a funder that does not trace) starts a trace
  whose id is derived from its correlation id (else its event id). Every message of one
  payment carries the payment's correlation id, so even then the services agree on the trace.
- Each handled message is one span, `<service> handle <type>`, with the event, pool and
  correlation ids as attributes.

`POOLFIN_TRACES` chooses where the spans go: unset, nowhere (the headers are still written);
`otlp`, to an OpenTelemetry collector over OTLP/HTTP (`OTEL_EXPORTER_OTLP_ENDPOINT`, default
http://localhost:4318); `file:DIR`, one JSON line per span in `DIR/<service>-<pid>.jsonl`
(the tests use this).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

HEADER = "traceparent"
_TRACEPARENT = re.compile(rb"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")

# (trace id, span id) of the message being handled: what the records it causes carry.
CURRENT: ContextVar[tuple[str, str] | None] = ContextVar("poolfin_trace", default=None)


def derived_trace_id(correlation: str) -> str:
    return hashlib.sha256(b"trace:" + correlation.encode()).hexdigest()[:32]


def derived_span_id(event_id: str) -> str:
    return hashlib.sha256(b"span:" + event_id.encode()).hexdigest()[:16]


def parse(value: bytes | None) -> tuple[str, str] | None:
    """(trace id, parent span id) of a W3C traceparent, or None when absent or malformed."""
    if not value:
        return None
    found = _TRACEPARENT.match(value.strip())
    if found is None or set(found.group(1)) == {48} or set(found.group(2)) == {48}:
        return None  # all zeros: invalid by the spec
    return found.group(1).decode(), found.group(2).decode()


def traceparent_for(message: Any) -> str:
    """The header of a record a service publishes: inside a handler, the handling span;
    elsewhere (a background watch, the HTTP front), derived from the message's ids."""
    current = CURRENT.get()
    if current is None:
        correlation = getattr(message, "correlation_id", None) or getattr(message, "event_id", "")
        current = (
            derived_trace_id(str(correlation)),
            derived_span_id(str(getattr(message, "event_id", ""))),
        )
    return f"00-{current[0]}-{current[1]}-01"


class JsonLinesExporter(SpanExporter):
    """One JSON line per finished span, appended to a file of this process."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self.path.open("a", encoding="utf-8") as out:
            for span in spans:
                context = span.get_span_context()
                assert context is not None
                out.write(
                    json.dumps(
                        {
                            "name": span.name,
                            "trace_id": f"{context.trace_id:032x}",
                            "span_id": f"{context.span_id:016x}",
                            "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
                            "service": span.resource.attributes.get("service.name"),
                            "attributes": dict(span.attributes or {}),
                            "start_ns": span.start_time,
                            "end_ns": span.end_time,
                        }
                    )
                    + "\n"
                )
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


class Tracing:
    """A service's tracer (None: spans go nowhere, headers are still written)."""

    def __init__(self, service: str, provider: TracerProvider | None) -> None:
        self.service = service
        self.provider = provider
        self.tracer = provider.get_tracer("poolfin") if provider is not None else None

    @classmethod
    def configure(cls, service: str, where: str | None) -> Tracing:
        if not where:
            return cls(service, None)
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        if where == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        elif where.startswith("file:"):
            path = Path(where.removeprefix("file:")) / f"{service}-{os.getpid()}.jsonl"
            provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(path)))
        else:
            raise ValueError(f"POOLFIN_TRACES={where!r}: use otlp or file:DIR (or leave it unset)")
        return cls(service, provider)

    @contextlib.contextmanager
    def handling(self, headers: Sequence[tuple[str, bytes | None]], message: Any) -> Iterator[None]:
        """The handling of one message: its span (child of the record's traceparent), and
        the context the records it causes carry."""
        parent = next((parse(v) for k, v in headers if k == HEADER), None)
        if parent is None:
            correlation = message.correlation_id or message.event_id
            parent = (derived_trace_id(correlation), derived_span_id(message.event_id))
        if self.tracer is None:
            token = CURRENT.set((parent[0], derived_span_id(message.event_id)))
            try:
                yield
            finally:
                CURRENT.reset(token)
            return
        remote = SpanContext(
            trace_id=int(parent[0], 16),
            span_id=int(parent[1], 16),
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
        with self.tracer.start_as_current_span(
            f"{self.service} handle {message.type}",
            context=trace.set_span_in_context(NonRecordingSpan(remote)),
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "poolfin.event_id": message.event_id,
                "poolfin.pool_id": message.pool_id,
                "poolfin.correlation_id": message.correlation_id or message.event_id,
                "poolfin.type": message.type,
            },
        ) as span:
            token = CURRENT.set((parent[0], f"{span.get_span_context().span_id:016x}"))
            try:
                yield
            finally:
                CURRENT.reset(token)

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()
